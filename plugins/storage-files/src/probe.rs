//! Image format detection from the first bytes of a file: one buffer, no allocation
//! beyond the backing file name.

/// How many bytes [`probe`] wants (the qcow2 header, its extensions and, in practice, the
/// backing file name all fit).
pub const HEADER_LEN: usize = 4096;

/// Where ISO 9660's primary volume descriptor says `CD001`.
pub const ISO_MAGIC_OFFSET: u64 = 0x8001;

const QCOW_MAGIC: &[u8; 4] = b"QFI\xfb";
const QCOW2_EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const QCOW2_COMPAT_LAZY_REFCOUNTS: u64 = 1;

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Probe {
    /// libvirt's format name (`raw`, `qcow2`, `qcow`, `qed`, `vmdk`, `vpc`, `vdi`).
    pub format: &'static str,
    /// The virtual size when the format records one.
    pub capacity: Option<u64>,
    /// The backing file name as written in the image.
    pub backing: Option<String>,
    /// The backing file's format from the image (qcow2's header extension).
    pub backing_format: Option<String>,
    /// When the backing file name lies beyond the buffer: (offset, length).
    pub backing_beyond: Option<(u64, u32)>,
    /// qcow2: `0.10` (version 2) or `1.1` (version 3).
    pub compat: Option<&'static str>,
    /// qcow2: the cluster size.
    pub cluster_size: Option<u64>,
    /// qcow2 v3: lazy refcounts enabled.
    pub lazy_refcounts: bool,
    /// qcow/qcow2 built-in encryption (crypt_method != 0).
    pub encrypted: bool,
}

fn be32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn be64(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(o..o + 8)?.try_into().ok()?))
}
fn le32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Detects the format from the first bytes of a file (`buf` may be shorter than
/// [`HEADER_LEN`] for short files). Anything unrecognised is `raw`.
pub fn probe(buf: &[u8]) -> Probe {
    if buf.len() >= 32 && &buf[..4] == QCOW_MAGIC {
        match be32(buf, 4) {
            Some(2 | 3) => {
                if let Some(p) = probe_qcow2(buf) {
                    return p;
                }
            }
            Some(1) => {
                let mut p = Probe {
                    format: "qcow",
                    capacity: be64(buf, 24),
                    encrypted: be32(buf, 36).is_some_and(|m| m != 0),
                    ..Probe::default()
                };
                backing_name(buf, be64(buf, 8), be32(buf, 16), &mut p);
                return p;
            }
            _ => {}
        }
    }
    if buf.len() >= 56 && &buf[..4] == b"QED\0" {
        let mut p = Probe {
            format: "qed",
            capacity: le64(buf, 48),
            ..Probe::default()
        };
        // backing_filename_offset u32 at 56, size u32 at 60
        if let (Some(off), Some(len)) = (le32(buf, 56), le32(buf, 60)) {
            backing_name(buf, Some(u64::from(off)), Some(len), &mut p);
        }
        return p;
    }
    if buf.len() >= 20 && &buf[..4] == b"KDMV" {
        return Probe {
            format: "vmdk",
            capacity: le64(buf, 12).and_then(|s| s.checked_mul(512)),
            ..Probe::default()
        };
    }
    if buf.len() >= 56 && &buf[..8] == b"conectix" {
        return Probe {
            format: "vpc",
            capacity: be64(buf, 48),
            ..Probe::default()
        };
    }
    if buf.len() >= 0x178 && le32(buf, 0x40) == Some(0xbeda_107f) {
        return Probe {
            format: "vdi",
            capacity: le64(buf, 0x170),
            ..Probe::default()
        };
    }
    Probe {
        format: "raw",
        ..Probe::default()
    }
}

fn backing_name(buf: &[u8], off: Option<u64>, len: Option<u32>, p: &mut Probe) {
    let (Some(off), Some(len)) = (off, len) else {
        return;
    };
    if off == 0 || len == 0 {
        return;
    }
    let end = off.checked_add(u64::from(len));
    match end {
        Some(end) if end <= buf.len() as u64 => {
            let name = &buf[off as usize..end as usize];
            p.backing = Some(String::from_utf8_lossy(name).into_owned());
        }
        // names are at most 1023 bytes in qemu; a larger claim is garbage
        Some(_) if len < 4096 => p.backing_beyond = Some((off, len)),
        _ => {}
    }
}

fn probe_qcow2(buf: &[u8]) -> Option<Probe> {
    let version = be32(buf, 4)?;
    let mut p = Probe {
        format: "qcow2",
        capacity: be64(buf, 24),
        ..Probe::default()
    };
    let cluster_bits = be32(buf, 20)?;
    if (9..=21).contains(&cluster_bits) {
        p.cluster_size = Some(1u64 << cluster_bits);
    }
    p.encrypted = be32(buf, 32).is_some_and(|m| m != 0);
    backing_name(buf, be64(buf, 8), be32(buf, 16), &mut p);
    let ext_start = if version == 2 {
        p.compat = Some("0.10");
        72
    } else {
        p.compat = Some("1.1");
        p.lazy_refcounts = be64(buf, 80).is_some_and(|c| c & QCOW2_COMPAT_LAZY_REFCOUNTS != 0);
        be32(buf, 100).map_or(104, |h| h as usize)
    };
    // header extensions: (type u32, length u32, data padded to 8), type 0 ends
    let mut o = ext_start;
    let limit = be64(buf, 8)
        .filter(|&b| b != 0)
        .map_or(buf.len(), |b| (b as usize).min(buf.len()));
    while o + 8 <= limit {
        let ty = be32(buf, o)?;
        let len = be32(buf, o + 4)? as usize;
        if ty == 0 {
            break;
        }
        let data = o + 8;
        if ty == QCOW2_EXT_BACKING_FORMAT
            && let Some(f) = buf.get(data..data + len)
        {
            p.backing_format = Some(String::from_utf8_lossy(f).into_owned());
        }
        o = data + len.div_ceil(8) * 8;
    }
    Some(p)
}

/// Whether the bytes read at [`ISO_MAGIC_OFFSET`] are ISO 9660's `CD001`.
pub fn is_iso_magic(b: &[u8]) -> bool {
    b.starts_with(b"CD001")
}

/// Writes a minimal qcow2 (v3) header into `buf` (which must be at least 512 bytes):
/// enough for [`probe`] and for `qemu-img info`. For tests and benchmarks.
pub fn write_qcow2_header(buf: &mut [u8], virtual_size: u64, backing: Option<(&str, &str)>) {
    buf.fill(0);
    buf[..4].copy_from_slice(QCOW_MAGIC);
    buf[4..8].copy_from_slice(&3u32.to_be_bytes());
    buf[20..24].copy_from_slice(&16u32.to_be_bytes());
    buf[24..32].copy_from_slice(&virtual_size.to_be_bytes());
    buf[96..100].copy_from_slice(&4u32.to_be_bytes());
    buf[100..104].copy_from_slice(&104u32.to_be_bytes());
    let mut o = 104;
    if let Some((name, fmt)) = backing {
        buf[o..o + 4].copy_from_slice(&QCOW2_EXT_BACKING_FORMAT.to_be_bytes());
        buf[o + 4..o + 8].copy_from_slice(&(fmt.len() as u32).to_be_bytes());
        buf[o + 8..o + 8 + fmt.len()].copy_from_slice(fmt.as_bytes());
        o += 8 + fmt.len().div_ceil(8) * 8;
        o += 8; // end-of-extensions (zeros)
        buf[8..16].copy_from_slice(&(o as u64).to_be_bytes());
        buf[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
        buf[o..o + name.len()].copy_from_slice(name.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcow2_with_backing() {
        let mut b = vec![0u8; HEADER_LEN];
        write_qcow2_header(&mut b, 1 << 30, Some(("base.img", "raw")));
        let p = probe(&b);
        assert_eq!(p.format, "qcow2");
        assert_eq!(p.capacity, Some(1 << 30));
        assert_eq!(p.backing.as_deref(), Some("base.img"));
        assert_eq!(p.backing_format.as_deref(), Some("raw"));
        assert_eq!(p.compat, Some("1.1"));
        assert_eq!(p.cluster_size, Some(65536));
        assert!(!p.lazy_refcounts);
    }

    #[test]
    fn qcow2_short_and_beyond() {
        let mut b = vec![0u8; HEADER_LEN];
        write_qcow2_header(&mut b, 5, None);
        let p = probe(&b[..112]);
        assert_eq!((p.format, p.capacity, p.backing), ("qcow2", Some(5), None));
        // a backing name past the buffer is reported for a second read
        b[8..16].copy_from_slice(&8000u64.to_be_bytes());
        b[16..20].copy_from_slice(&10u32.to_be_bytes());
        assert_eq!(probe(&b).backing_beyond, Some((8000, 10)));
        // v2
        b[4..8].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(probe(&b).compat, Some("0.10"));
    }

    #[test]
    fn others() {
        assert_eq!(probe(b"").format, "raw");
        assert_eq!(probe(&[0u8; 512]).format, "raw");
        assert_eq!(probe(b"QFI\xfb").format, "raw");
        let mut v = vec![0u8; 512];
        v[..4].copy_from_slice(b"KDMV");
        v[12..20].copy_from_slice(&4u64.to_le_bytes());
        assert_eq!(probe(&v).capacity, Some(2048));
        let mut q = vec![0u8; 512];
        q[..4].copy_from_slice(b"QED\0");
        q[48..56].copy_from_slice(&77u64.to_le_bytes());
        assert_eq!((probe(&q).format, probe(&q).capacity), ("qed", Some(77)));
        assert!(is_iso_magic(b"CD001\x01"));
        assert!(!is_iso_magic(b"CD00"));
    }
}

//! The pool's target directory: a descriptor every volume operation goes through, name
//! checks, and reading a volume's facts.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use rvirt_xml::{Element, StoragePool, StorageVolume};

use crate::error::{Error, Result};
use crate::probe::{self, Probe};

/// `pool 'NAME'`.
pub(crate) fn pool_object(pool: &StoragePool) -> String {
    format!("pool '{}'", pool.name())
}

pub(crate) fn io_err(object: &str, action: &'static str, path: &Path, e: Errno) -> Error {
    Error::Io {
        object: object.to_string(),
        action,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// The pool's `<target><path>`, which must be an absolute path of a `dir` pool.
pub(crate) fn target_path(pool: &StoragePool) -> Result<&Path> {
    let obj = pool_object(pool);
    if pool.pool_type() != "dir" {
        return Err(Error::InvalidArg {
            object: obj,
            field: "pool/@type".into(),
            reason: format!("'{}' is not a dir pool", pool.pool_type()),
        });
    }
    let p = pool.target_path().ok_or_else(|| Error::InvalidArg {
        object: obj.clone(),
        field: "pool/target/path".into(),
        reason: "missing".into(),
    })?;
    if !p.starts_with('/') || p.contains('\0') {
        return Err(Error::InvalidArg {
            object: obj,
            field: "pool/target/path".into(),
            reason: format!("'{p}' is not an absolute path"),
        });
    }
    Ok(Path::new(p))
}

/// What one file in the target is.
pub(crate) struct Facts {
    pub st: Stat,
    pub kind: FileType,
    pub probe: Probe,
}

/// An open pool target.
pub(crate) struct Target {
    pub pool: StoragePool,
    pub object: String,
    pub path: PathBuf,
    pub dir: OwnedFd,
}

impl Target {
    /// Opens the target directory (following a symbolic link only for the target itself,
    /// as libvirt does).
    pub(crate) fn open_dir(pool: &StoragePool, path: &Path) -> Result<OwnedFd> {
        let obj = pool_object(pool);
        match rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOTDIR) => Err(Error::InvalidArg {
                object: obj,
                field: "pool/target/path".into(),
                reason: format!("'{}' is not a directory", path.display()),
            }),
            Err(e) => Err(io_err(&obj, "open target directory", path, e)),
        }
    }

    pub(crate) fn open(pool: &StoragePool) -> Result<Target> {
        let path = target_path(pool)?.to_path_buf();
        let dir = Target::open_dir(pool, &path)?;
        Ok(Target {
            pool: pool.clone(),
            object: pool_object(pool),
            path,
            dir,
        })
    }

    /// `volume 'NAME' in pool 'POOL'`.
    pub(crate) fn vol_object(&self, name: &str) -> String {
        format!("volume '{}' in pool '{}'", name, self.pool.name())
    }

    /// The file-system figures: (capacity, allocation, available) as libvirt computes them.
    pub(crate) fn fs_sizes(&self) -> Result<(u64, u64, u64)> {
        let s = rustix::fs::fstatvfs(&self.dir)
            .map_err(|e| io_err(&self.object, "statvfs", &self.path, e))?;
        let capacity = s.f_frsize.saturating_mul(s.f_blocks);
        let available = s.f_frsize.saturating_mul(s.f_bfree);
        Ok((capacity, capacity.saturating_sub(available), available))
    }

    /// Space an unprivileged writer may still use (`f_bavail`), for the space checks.
    pub(crate) fn fs_avail(&self) -> Result<u64> {
        let s = rustix::fs::fstatvfs(&self.dir)
            .map_err(|e| io_err(&self.object, "statvfs", &self.path, e))?;
        Ok(s.f_frsize.saturating_mul(s.f_bavail))
    }

    /// Checks a volume's name and `<target><path>`; returns the name (one path component
    /// directly in the target).
    pub(crate) fn vol_name<'v>(&self, vol: &'v StorageVolume) -> Result<&'v str> {
        let name = vol.name();
        self.check_name(name)?;
        if let Some(p) = vol.target_path() {
            let want = self.vol_path(name);
            if Path::new(p) != want {
                return Err(Error::InvalidArg {
                    object: self.vol_object(name),
                    field: "volume/target/path".into(),
                    reason: format!(
                        "'{p}' is not '{}': a volume of a dir pool is a file directly in the pool's target",
                        want.display()
                    ),
                });
            }
        }
        Ok(name)
    }

    pub(crate) fn check_name(&self, name: &str) -> Result<()> {
        let bad = |reason: &str| {
            Err(Error::InvalidArg {
                object: self.vol_object(name),
                field: "volume/name".into(),
                reason: reason.to_string(),
            })
        };
        if name.is_empty() {
            return bad("empty name");
        }
        if name.contains('\0') {
            return bad("name contains a NUL byte");
        }
        if name.starts_with('/') {
            return bad("name is an absolute path");
        }
        if name.contains('/') {
            return bad("name contains '/'");
        }
        if name == "." || name == ".." {
            return bad("name is '.' or '..'");
        }
        Ok(())
    }

    pub(crate) fn vol_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens an entry of the target without following a symbolic link.
    pub(crate) fn open_entry(
        &self,
        name: &str,
        flags: OFlags,
    ) -> std::result::Result<OwnedFd, Errno> {
        rustix::fs::openat(
            &self.dir,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
    }

    /// Opens an existing volume file for I/O: a missing one is `NoVolume`, a symbolic link
    /// or anything not a regular file is refused.
    pub(crate) fn open_volume_file(&self, name: &str, flags: OFlags) -> Result<(OwnedFd, Stat)> {
        let path = self.vol_path(name);
        let fd = match self.open_entry(name, flags | OFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                return Err(Error::NoVolume {
                    pool: self.pool.name().to_string(),
                    name: name.to_string(),
                });
            }
            Err(Errno::LOOP) => return Err(self.symlink_err(name)),
            Err(e) => return Err(io_err(&self.vol_object(name), "open", &path, e)),
        };
        let st =
            rustix::fs::fstat(&fd).map_err(|e| io_err(&self.vol_object(name), "stat", &path, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::OperationInvalid {
                object: self.vol_object(name),
                reason: format!("'{}' is not a regular file", path.display()),
            });
        }
        // back to blocking I/O
        rustix::fs::fcntl_setfl(&fd, OFlags::empty())
            .map_err(|e| io_err(&self.vol_object(name), "open", &path, e))?;
        Ok((fd, st))
    }

    pub(crate) fn symlink_err(&self, name: &str) -> Error {
        Error::OperationInvalid {
            object: self.vol_object(name),
            reason: format!(
                "'{}' is a symbolic link; dir pools do not follow links",
                self.vol_path(name).display()
            ),
        }
    }

    /// Reads one entry's facts: `None` when it is gone, a symbolic link or not a file or
    /// directory.
    pub(crate) fn facts(&self, name: &str, buf: &mut [u8]) -> Result<Option<Facts>> {
        let fd = match self.open_entry(name, OFlags::RDONLY | OFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::LOOP | Errno::NXIO | Errno::NODEV) => return Ok(None),
            Err(e) => {
                return Err(io_err(
                    &self.vol_object(name),
                    "open",
                    &self.vol_path(name),
                    e,
                ));
            }
        };
        let st = rustix::fs::fstat(&fd)
            .map_err(|e| io_err(&self.vol_object(name), "stat", &self.vol_path(name), e))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        let probe = match kind {
            FileType::RegularFile => self.probe_fd(name, &fd, &st, buf)?,
            FileType::Directory => Probe {
                format: "dir",
                ..Probe::default()
            },
            _ => return Ok(None),
        };
        Ok(Some(Facts { st, kind, probe }))
    }

    /// One `pread` of the header (plus, rarely, one for a far backing name and one for an
    /// ISO's descriptor when the size says it may be one).
    pub(crate) fn probe_fd(
        &self,
        name: &str,
        fd: &OwnedFd,
        st: &Stat,
        buf: &mut [u8],
    ) -> Result<Probe> {
        let rd = |buf: &mut [u8], off: u64| -> Result<usize> {
            let mut n = 0;
            while n < buf.len() {
                match rustix::io::pread(fd.as_fd(), &mut buf[n..], off + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(Errno::INTR) => {}
                    Err(e) => {
                        return Err(io_err(
                            &self.vol_object(name),
                            "read header of",
                            &self.vol_path(name),
                            e,
                        ));
                    }
                }
            }
            Ok(n)
        };
        let n = rd(buf, 0)?;
        let mut p = probe::probe(&buf[..n]);
        if let Some((off, len)) = p.backing_beyond.take() {
            let mut name_buf = vec![0u8; len as usize];
            let k = rd(&mut name_buf, off)?;
            name_buf.truncate(k);
            p.backing = Some(String::from_utf8_lossy(&name_buf).into_owned());
        }
        let size = st.st_size as u64;
        // ISO 9660 images are whole 2 KiB sectors and longer than the system area
        if p.format == "raw" && size >= probe::ISO_MAGIC_OFFSET + 5 && size.is_multiple_of(2048) {
            let all_zero_or_mbr = n < buf.len()
                || buf[..510].iter().all(|&b| b == 0)
                || buf[510..512] == [0x55, 0xaa];
            if all_zero_or_mbr {
                let mut m = [0u8; 5];
                if rd(&mut m, probe::ISO_MAGIC_OFFSET)? == 5 && probe::is_iso_magic(&m) {
                    p.format = "iso";
                }
            }
        }
        Ok(p)
    }

    /// The volume document for one entry (what refresh reports).
    pub(crate) fn scan(&self, name: &str, buf: &mut [u8]) -> Result<Option<StorageVolume>> {
        match self.facts(name, buf)? {
            Some(f) => self.volume_xml(name, &f).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn volume_xml(&self, name: &str, f: &Facts) -> Result<StorageVolume> {
        let path = self.vol_path(name);
        let path_s = path.to_string_lossy();
        let is_dir = f.kind == FileType::Directory;
        let size = f.st.st_size as u64;
        let capacity = f.probe.capacity.unwrap_or(size);
        let allocation = (f.st.st_blocks as u64).saturating_mul(512);
        let bytes = |n: &str, v: u64| {
            Element::new(n)
                .with_attr("unit", "bytes")
                .with_text(&v.to_string())
        };
        let mut root =
            Element::new("volume").with_attr("type", if is_dir { "dir" } else { "file" });
        root.push(Element::new("name").with_text(name));
        root.push(Element::new("key").with_text(&path_s));
        root.push(bytes("capacity", capacity));
        root.push(bytes("allocation", allocation));
        root.push(bytes("physical", size));
        let mut tgt = Element::new("target");
        tgt.push(Element::new("path").with_text(&path_s));
        tgt.push(Element::new("format").with_attr("type", f.probe.format));
        let mut perm = Element::new("permissions");
        perm.push(Element::new("mode").with_text(&format!("0{:o}", f.st.st_mode & 0o7777)));
        perm.push(Element::new("owner").with_text(&f.st.st_uid.to_string()));
        perm.push(Element::new("group").with_text(&f.st.st_gid.to_string()));
        tgt.push(perm);
        if let Some(c) = f.probe.compat {
            tgt.push(Element::new("compat").with_text(c));
        }
        if f.probe.cluster_size.is_some_and(|c| c != 65536) {
            let c = f.probe.cluster_size.unwrap_or_default();
            tgt.push(
                Element::new("clusterSize")
                    .with_attr("unit", "B")
                    .with_text(&c.to_string()),
            );
        }
        if f.probe.lazy_refcounts {
            let mut feats = Element::new("features");
            feats.push(Element::new("lazy_refcounts"));
            tgt.push(feats);
        }
        root.push(tgt);
        if let Some(b) = &f.probe.backing {
            let bp = if b.starts_with('/') || b.contains("://") {
                b.clone()
            } else {
                self.path.join(b).to_string_lossy().into_owned()
            };
            let mut bs = Element::new("backingStore");
            bs.push(Element::new("path").with_text(&bp));
            if let Some(bf) = &f.probe.backing_format {
                bs.push(Element::new("format").with_attr("type", bf));
            }
            root.push(bs);
        }
        StorageVolume::from_element(root, Some(&self.pool)).map_err(|source| Error::Xml {
            what: "volume",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(path: &Path) -> StoragePool {
        StoragePool::parse(&format!(
            "<pool type='dir'><name>t</name><target><path>{}</path></target></pool>",
            path.display()
        ))
        .expect("pool")
    }

    #[test]
    fn names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = Target::open(&pool(tmp.path())).expect("open");
        for bad in ["", "a\0b", "/abs", "a/b", ".", ".."] {
            let e = t.check_name(bad).expect_err(bad);
            assert_eq!(e.code(), 8, "{bad:?}");
            assert!(e.to_string().contains("volume/name"), "{e}");
            assert!(e.to_string().contains("pool 't'"), "{e}");
        }
        for good in ["a.img", "...", ".hidden", "with space", "ünï"] {
            t.check_name(good).expect(good);
        }
        assert_eq!(t.vol_path("a.img"), tmp.path().join("a.img"));
    }

    #[test]
    fn fs_sizes_add_up() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = Target::open(&pool(tmp.path())).expect("open");
        let (c, a, v) = t.fs_sizes().expect("sizes");
        assert_eq!(a + v, c);
        assert!(t.fs_avail().expect("avail") <= v);
    }

    #[test]
    fn not_a_dir_pool() {
        let p = StoragePool::parse(
            "<pool type='fs'><name>f</name><source><device path='/dev/x'/></source><target><path>/x</path></target></pool>",
        )
        .expect("pool");
        let e = target_path(&p).expect_err("fs pool");
        assert!(e.to_string().contains("pool/@type"), "{e}");
    }
}

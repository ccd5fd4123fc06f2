//! Volume operations: create, clone, delete, resize, wipe, refresh.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{FallocateFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use rvirt_xml::{StoragePool, StorageVolume};

use crate::error::{Error, Result};
use crate::flags;
use crate::probe;
use crate::qemu_img;
use crate::target::{Target, io_err};

/// libvirt's default mode for a new volume file.
const DEFAULT_VOL_MODE: u32 = 0o600;

/// Formats a new volume may have here.
const CREATE_FORMATS: &[&str] = &["raw", "qcow2"];

/// Formats `qemu-img convert` reads for a clone.
const CLONE_SOURCE_FORMATS: &[&str] = &["raw", "qcow2", "qcow", "qed", "vmdk", "vpc", "vdi", "iso"];

fn qemu_err(object: &str) -> impl FnOnce(crate::QemuImgError) -> Error + '_ {
    move |source| Error::QemuImg {
        object: object.to_string(),
        source,
    }
}

fn os(s: impl Into<OsString>) -> OsString {
    s.into()
}

/// A path by which `qemu-img` (our child, same uid) opens exactly the file we hold open:
/// it goes through `/proc`'s link to the open file, never through the pool directory
/// again, so nothing swapped into the directory meanwhile is written instead.
fn fd_path(fd: &OwnedFd) -> OsString {
    format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd()).into()
}

/// The format a new volume asks for (`raw` by default); only `raw` and `qcow2` are created,
/// and never encrypted (creating one unencrypted would silently drop `<encryption>`).
fn create_format<'v>(t: &Target, name: &str, vol: &'v StorageVolume) -> Result<&'v str> {
    let tgt = vol.element().child("target");
    if tgt.and_then(|t| t.child("encryption")).is_some() {
        return Err(Error::NoSupport {
            object: t.vol_object(name),
            what: "volume/target/encryption".into(),
        });
    }
    let f = vol.format_type().unwrap_or("raw");
    if !CREATE_FORMATS.contains(&f) {
        return Err(Error::NoSupport {
            object: t.vol_object(name),
            what: format!("volume/target/format '{f}' (this backend creates raw and qcow2)"),
        });
    }
    Ok(f)
}

/// Creates the file exclusively (never through a link), with the volume's permissions.
fn create_file(t: &Target, name: &str, vol: &StorageVolume) -> Result<OwnedFd> {
    let path = t.vol_path(name);
    let mode = vol.target_mode().unwrap_or(DEFAULT_VOL_MODE);
    let fd = match rustix::fs::openat(
        &t.dir,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    ) {
        Ok(fd) => fd,
        Err(Errno::EXIST) => {
            return Err(Error::VolumeExists {
                pool: t.pool.name().to_string(),
                name: name.to_string(),
                path,
            });
        }
        Err(e) => return Err(io_err(&t.vol_object(name), "create", &path, e)),
    };
    let fail = |e: Errno, action: &'static str| {
        let _ = rustix::fs::unlinkat(&t.dir, name, rustix::fs::AtFlags::empty());
        io_err(&t.vol_object(name), action, &path, e)
    };
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| fail(e, "set the mode of"))?;
    let (uid, gid) = (vol.target_owner(), vol.target_group());
    if uid.is_some() || gid.is_some() {
        let u = uid.map(rustix::fs::Uid::from_raw);
        let g = gid.map(rustix::fs::Gid::from_raw);
        rustix::fs::fchown(&fd, u, g).map_err(|e| fail(e, "set the owner of"))?;
    }
    Ok(fd)
}

fn remove_entry(t: &Target, name: &str) {
    let _ = rustix::fs::unlinkat(&t.dir, name, rustix::fs::AtFlags::empty());
}

/// Refuses to preallocate more than the file system has.
fn check_space(t: &Target, name: &str, field: &str, bytes: u64) -> Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    let avail = t.fs_avail()?;
    if bytes > avail {
        return Err(Error::NoSpace {
            object: t.vol_object(name),
            reason: format!(
                "not enough space left in storage pool: {field} needs {bytes} bytes, {avail} available"
            ),
        });
    }
    Ok(())
}

fn fallocate_range(fd: &OwnedFd, off: u64, len: u64) -> std::result::Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    rustix::fs::fallocate(fd, FallocateFlags::empty(), off, len)
}

/// Creates a volume: a raw file (sparse to `<capacity>`, with `<allocation>` bytes
/// preallocated) or a qcow2 image through `qemu-img create` (with `<backingStore>`,
/// `<compat>` (default 1.1), `lazy_refcounts`, and with `PREALLOC_METADATA` metadata or
/// full preallocation). Returns the refreshed volume.
pub fn create_volume(pool: &StoragePool, vol: &StorageVolume, flags: u32) -> Result<StorageVolume> {
    crate::check_flags("create_volume", flags, flags::VOL_CREATE_PREALLOC_METADATA)?;
    let t = Target::open(pool)?;
    let name = t.vol_name(vol)?;
    let obj = t.vol_object(name);
    let format = create_format(&t, name, vol)?;
    let capacity = vol.capacity_bytes();
    let allocation = vol.allocation_bytes().min(capacity);
    if format == "raw" {
        if vol.backing_store().is_some() {
            return Err(Error::NoSupport {
                object: obj,
                what: "volume/backingStore for a raw volume".into(),
            });
        }
        if flags & flags::VOL_CREATE_PREALLOC_METADATA != 0 {
            return Err(Error::NoSupport {
                object: obj,
                what: "metadata preallocation for a raw volume".into(),
            });
        }
        check_space(&t, name, "volume/allocation", allocation)?;
        let fd = create_file(&t, name, vol)?;
        let path = t.vol_path(name);
        let r = rustix::fs::ftruncate(&fd, capacity)
            .map_err(|e| io_err(&obj, "set the size of", &path, e))
            .and_then(|()| {
                fallocate_range(&fd, 0, allocation)
                    .map_err(|e| io_err(&obj, "preallocate", &path, e))
            });
        if let Err(e) = r {
            remove_entry(&t, name);
            return Err(e);
        }
        drop(fd);
        return refresh_in(&t, name);
    }
    // qcow2
    let mut opts = Vec::new();
    let mut args: Vec<OsString> = vec![os("create"), os("-f"), os("qcow2")];
    if let Some((bpath, bfmt)) = vol.backing_store() {
        let bpath = bpath.ok_or_else(|| Error::InvalidArg {
            object: obj.clone(),
            field: "volume/backingStore/path".into(),
            reason: "missing".into(),
        })?;
        if !bpath.starts_with('/') {
            return Err(Error::InvalidArg {
                object: obj,
                field: "volume/backingStore/path".into(),
                reason: format!("'{bpath}' is not an absolute path"),
            });
        }
        let bfmt = match bfmt {
            Some(f) => f.to_string(),
            None => probe_backing(&obj, bpath)?,
        };
        args.extend([os("-b"), os(bpath), os("-F"), os(bfmt)]);
    }
    let compat = vol
        .target_compat()
        .unwrap_or(rvirt_xml::tables::QCOW2_DEFAULT_COMPAT);
    if compat != "0.10" && compat != "1.1" {
        return Err(Error::InvalidArg {
            object: obj,
            field: "volume/target/compat".into(),
            reason: format!("unsupported qcow2 compat '{compat}'"),
        });
    }
    opts.push(format!("compat={compat}"));
    if let Some(cs) = vol
        .element()
        .child("target")
        .and_then(|t| t.child("clusterSize"))
    {
        opts.push(format!("cluster_size={}", cs.text().trim()));
    }
    if vol
        .element()
        .child("target")
        .is_some_and(|t| t.child("nocow").is_some())
    {
        opts.push("nocow=on".into());
    }
    if vol.has_target_feature("lazy_refcounts") {
        if compat == "0.10" {
            return Err(Error::InvalidArg {
                object: obj,
                field: "volume/target/features/lazy_refcounts".into(),
                reason: "lazy refcounts need compat 1.1".into(),
            });
        }
        opts.push("lazy_refcounts".into());
    }
    if flags & flags::VOL_CREATE_PREALLOC_METADATA != 0 {
        // as libvirt: full preallocation when the allocation covers the capacity
        if allocation >= capacity {
            check_space(&t, name, "volume/allocation", capacity)?;
            opts.push("preallocation=falloc".into());
        } else {
            opts.push("preallocation=metadata".into());
        }
    }
    args.extend([os("-o"), os(opts.join(","))]);
    let fd = create_file(&t, name, vol)?;
    args.push(fd_path(&fd));
    if capacity > 0 || vol.backing_store().is_none() {
        // libvirt passes KiB, rounded up
        args.push(os(format!("{}K", capacity.div_ceil(1024))));
    }
    let r = qemu_img::run(&args);
    drop(fd);
    if let Err(e) = r {
        remove_entry(&t, name);
        return Err(qemu_err(&obj)(e));
    }
    refresh_in(&t, name)
}

/// The format of a backing file given without one (read-only probe of its header).
fn probe_backing(obj: &str, path: &str) -> Result<String> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| io_err(obj, "open backing store", std::path::Path::new(path), e))?;
    let mut buf = vec![0u8; probe::HEADER_LEN];
    let n = rustix::io::pread(&fd, &mut buf, 0)
        .map_err(|e| io_err(obj, "read backing store", std::path::Path::new(path), e))?;
    Ok(probe::probe(&buf[..n]).format.to_string())
}

/// Clones `src` (a volume of `src_pool`, which may be `pool`) into the new volume `vol`:
/// a raw→raw clone is a sparse-aware copy; anything else is `qemu-img convert`. The new
/// volume's capacity is the larger of its `<capacity>` and the source's.
pub fn create_volume_from(
    pool: &StoragePool,
    vol: &StorageVolume,
    src_pool: &StoragePool,
    src: &StorageVolume,
    flags: u32,
) -> Result<StorageVolume> {
    crate::check_flags("create_volume_from", flags, 0)?;
    let t = Target::open(pool)?;
    let st = Target::open(src_pool)?;
    let name = t.vol_name(vol)?;
    let obj = t.vol_object(name);
    let src_name = st.vol_name(src)?;
    let dst_fmt = create_format(&t, name, vol)?;
    if vol.backing_store().is_some() {
        return Err(Error::NoSupport {
            object: obj,
            what: "volume/backingStore when cloning".into(),
        });
    }
    let (sfd, sst) = st.open_volume_file(src_name, OFlags::RDONLY)?;
    let mut buf = vec![0u8; probe::HEADER_LEN];
    let sprobe = st.probe_fd(src_name, &sfd, &sst, &mut buf)?;
    // A format the source's document names explicitly wins over what its bytes look like.
    // `raw` is what every volume document of a dir pool says by default, so there the
    // header decides, as libvirt's refresh does when it lists the volume.
    let src_fmt = match src.format_type() {
        Some(f) if f != "raw" => f,
        _ => sprobe.format,
    };
    if !CLONE_SOURCE_FORMATS.contains(&src_fmt) {
        return Err(Error::NoSupport {
            object: st.vol_object(src_name),
            what: format!("cloning from format '{src_fmt}'"),
        });
    }
    let src_cap = if src_fmt == sprobe.format {
        sprobe.capacity.unwrap_or(sst.st_size as u64)
    } else {
        sst.st_size as u64
    };
    let capacity = vol.capacity_bytes().max(src_cap);
    let path = t.vol_path(name);
    if src_fmt == "raw" && dst_fmt == "raw" {
        check_space(&t, name, "source allocation", (sst.st_blocks as u64) * 512)?;
        let dfd = create_file(&t, name, vol)?;
        let r = sparse_copy(&sfd, &dfd, sst.st_size as u64)
            .and_then(|()| rustix::fs::ftruncate(&dfd, capacity))
            .map_err(|e| io_err(&obj, "copy into", &path, e));
        if let Err(e) = r {
            remove_entry(&t, name);
            return Err(e);
        }
        drop(dfd);
        return refresh_in(&t, name);
    }
    drop(sfd);
    let mut args: Vec<OsString> = vec![os("convert"), os("-f"), os(src_fmt), os("-O"), os(dst_fmt)];
    if dst_fmt == "qcow2" {
        let compat = vol
            .target_compat()
            .unwrap_or(rvirt_xml::tables::QCOW2_DEFAULT_COMPAT);
        args.extend([os("-o"), os(format!("compat={compat}"))]);
    }
    // the source is only read, by its path (a qcow2 finds its relative backing file
    // next to it)
    args.push(st.vol_path(src_name).into_os_string());
    let dfd = create_file(&t, name, vol)?;
    args.push(fd_path(&dfd));
    let mut r = qemu_img::run(&args);
    if r.is_ok() && capacity > src_cap {
        r = qemu_img::run(&[
            os("resize"),
            os("-f"),
            os(dst_fmt),
            fd_path(&dfd),
            os(capacity.to_string()),
        ]);
    }
    drop(dfd);
    if let Err(e) = r {
        remove_entry(&t, name);
        return Err(qemu_err(&obj)(e));
    }
    refresh_in(&t, name)
}

/// Copies `len` bytes, skipping holes (`SEEK_DATA`/`SEEK_HOLE`) and using
/// `copy_file_range` for the data.
fn sparse_copy(src: &OwnedFd, dst: &OwnedFd, len: u64) -> std::result::Result<(), Errno> {
    use rustix::fs::SeekFrom;
    let mut pos = 0u64;
    while pos < len {
        let data = match rustix::fs::seek(src, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break,
            Err(e) => return Err(e),
        };
        let hole = rustix::fs::seek(src, SeekFrom::Hole(data))
            .unwrap_or(len)
            .min(len);
        let mut off_in = data;
        let mut off_out = data;
        while off_in < hole {
            let want = (hole - off_in).min(1 << 30) as usize;
            let n =
                rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want)?;
            if n == 0 {
                break;
            }
        }
        pos = hole;
    }
    rustix::fs::ftruncate(dst, len)
}

/// Deletes the volume's file (or empty directory) from the target.
pub fn delete_volume(pool: &StoragePool, vol: &StorageVolume, flags: u32) -> Result<()> {
    crate::check_flags("delete_volume", flags, 0)?;
    let t = Target::open(pool)?;
    let name = t.vol_name(vol)?;
    let path = t.vol_path(name);
    let st = match rustix::fs::statat(&t.dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => {
            return Err(Error::NoVolume {
                pool: t.pool.name().to_string(),
                name: name.to_string(),
            });
        }
        Err(e) => return Err(io_err(&t.vol_object(name), "stat", &path, e)),
    };
    let flags = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => rustix::fs::AtFlags::REMOVEDIR,
        FileType::RegularFile => rustix::fs::AtFlags::empty(),
        FileType::Symlink => return Err(t.symlink_err(name)),
        _ => {
            return Err(Error::OperationInvalid {
                object: t.vol_object(name),
                reason: format!("'{}' is not a file or directory", path.display()),
            });
        }
    };
    rustix::fs::unlinkat(&t.dir, name, flags)
        .map_err(|e| io_err(&t.vol_object(name), "remove", &path, e))
}

/// Changes the capacity: `DELTA` adds to (or with `SHRINK` subtracts from) the current
/// capacity; a smaller capacity needs `SHRINK`; `ALLOCATE` preallocates the new space
/// (raw only). Raw files are truncated/extended, qcow2 images go through `qemu-img
/// resize`.
pub fn resize_volume(
    pool: &StoragePool,
    vol: &StorageVolume,
    capacity: u64,
    flags: u32,
) -> Result<StorageVolume> {
    crate::check_flags(
        "resize_volume",
        flags,
        flags::VOL_RESIZE_ALLOCATE | flags::VOL_RESIZE_DELTA | flags::VOL_RESIZE_SHRINK,
    )?;
    let t = Target::open(pool)?;
    let name = t.vol_name(vol)?;
    let obj = t.vol_object(name);
    let path = t.vol_path(name);
    let (fd, st) = t.open_volume_file(name, OFlags::RDWR)?;
    let mut buf = vec![0u8; probe::HEADER_LEN];
    let p = t.probe_fd(name, &fd, &st, &mut buf)?;
    let cur = p.capacity.unwrap_or(st.st_size as u64);
    let shrink = flags & flags::VOL_RESIZE_SHRINK != 0;
    let allocation = (st.st_blocks as u64).saturating_mul(512);
    // libvirt's rules (storageVolResize): a delta shrink stops at zero
    let new = if flags & flags::VOL_RESIZE_DELTA != 0 {
        if shrink {
            cur - capacity.min(cur)
        } else {
            cur.checked_add(capacity).ok_or_else(|| Error::Overflow {
                object: obj.clone(),
                field: "capacity".into(),
                reason: format!("{cur} + {capacity} overflows"),
            })?
        }
    } else {
        capacity
    };
    if new < cur && !shrink {
        return Err(Error::InvalidArg {
            object: obj,
            field: "capacity".into(),
            reason: format!(
                "cannot shrink capacity from {cur} to {new} bytes without the SHRINK flag"
            ),
        });
    }
    if new < cur && new < allocation {
        return Err(Error::InvalidArg {
            object: obj,
            field: "capacity".into(),
            reason: format!(
                "cannot shrink capacity to {new} bytes, below the existing allocation ({allocation} bytes)"
            ),
        });
    }
    let allocate = flags & flags::VOL_RESIZE_ALLOCATE != 0;
    match p.format {
        "raw" => {
            if allocate {
                check_space(&t, name, "capacity", new.saturating_sub(allocation))?;
            }
            rustix::fs::ftruncate(&fd, new).map_err(|e| io_err(&obj, "resize", &path, e))?;
            if allocate && new > cur {
                fallocate_range(&fd, cur, new - cur)
                    .map_err(|e| io_err(&obj, "preallocate", &path, e))?;
            }
        }
        "qcow2" => {
            if allocate {
                return Err(Error::NoSupport {
                    object: obj,
                    what: "preallocating while resizing a qcow2 volume".into(),
                });
            }
            let mut args = vec![os("resize"), os("-f"), os("qcow2")];
            if new < cur {
                args.push(os("--shrink"));
            }
            args.push(fd_path(&fd));
            args.push(os(new.to_string()));
            qemu_img::run(&args).map_err(qemu_err(&obj))?;
            drop(fd);
        }
        other => {
            return Err(Error::NoSupport {
                object: obj,
                what: format!("resizing a '{other}' volume"),
            });
        }
    }
    refresh_in(&t, name)
}

/// How a wipe was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WipeMethod {
    /// The file system deallocated the range (`FALLOC_FL_PUNCH_HOLE`): reads give zeros.
    PunchHole,
    /// Zeros were written over the range.
    WroteZeros,
}

/// Wipes a raw volume with zeros (`ALG_ZERO`, libvirt's 0): punches a hole over the whole
/// file, or writes zeros where the file system cannot. Other algorithms, and non-raw
/// volumes (zeroing would destroy the image's metadata), are not supported.
pub fn wipe_volume(
    pool: &StoragePool,
    vol: &StorageVolume,
    algorithm: u32,
    flags: u32,
) -> Result<WipeMethod> {
    crate::check_flags("wipe_volume", flags, 0)?;
    let t = Target::open(pool)?;
    let name = t.vol_name(vol)?;
    let obj = t.vol_object(name);
    let Some(alg) = crate::WIPE_ALGORITHMS.get(algorithm as usize) else {
        return Err(Error::InvalidArg {
            object: obj,
            field: "algorithm".into(),
            reason: format!("unknown wipe algorithm {algorithm}"),
        });
    };
    if algorithm != flags::WIPE_ALG_ZERO {
        return Err(Error::NoSupport {
            object: obj,
            what: format!("wipe algorithm '{alg}' ({algorithm})"),
        });
    }
    let path = t.vol_path(name);
    let (fd, st) = t.open_volume_file(name, OFlags::RDWR)?;
    let mut buf = vec![0u8; probe::HEADER_LEN];
    let p = t.probe_fd(name, &fd, &st, &mut buf)?;
    if p.format != "raw" && p.format != "iso" {
        return Err(Error::NoSupport {
            object: obj,
            what: format!("wiping a '{}' volume", p.format),
        });
    }
    let size = st.st_size as u64;
    if size == 0 {
        return Ok(WipeMethod::PunchHole);
    }
    match rustix::fs::fallocate(
        &fd,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        0,
        size,
    ) {
        Ok(()) => return Ok(WipeMethod::PunchHole),
        Err(Errno::OPNOTSUPP | Errno::NOSYS) => {}
        Err(e) => return Err(io_err(&obj, "wipe", &path, e)),
    }
    let zeros = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        let n = ((size - off) as usize).min(zeros.len());
        match rustix::io::pwrite(fd.as_fd(), &zeros[..n], off) {
            Ok(k) => off += k as u64,
            Err(Errno::INTR) => {}
            Err(e) => return Err(io_err(&obj, "wipe", &path, e)),
        }
    }
    rustix::fs::fsync(&fd).map_err(|e| io_err(&obj, "sync", &path, e))?;
    Ok(WipeMethod::WroteZeros)
}

/// The volume's current document: format, sizes and backing store read from its header.
pub fn refresh_volume(pool: &StoragePool, vol: &StorageVolume) -> Result<StorageVolume> {
    let t = Target::open(pool)?;
    let name = t.vol_name(vol)?;
    refresh_in(&t, name)
}

pub(crate) fn refresh_in(t: &Target, name: &str) -> Result<StorageVolume> {
    let mut buf = vec![0u8; probe::HEADER_LEN];
    if let Ok(st) = rustix::fs::statat(&t.dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        && FileType::from_raw_mode(st.st_mode) == FileType::Symlink
    {
        return Err(t.symlink_err(name));
    }
    match t.facts(name, &mut buf)? {
        Some(f) => t.volume_xml(name, &f),
        None => Err(Error::NoVolume {
            pool: t.pool.name().to_string(),
            name: name.to_string(),
        }),
    }
}

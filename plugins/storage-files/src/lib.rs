//! The `dir` storage pool backend: a pool is a directory, its volumes are the image files
//! (and subdirectories) directly inside it.
//!
//! A plain library over [`rvirt_xml`]'s [`StoragePool`] and [`StorageVolume`]: the storage
//! plugin adapter parses the XML a client sends, calls these functions and formats what
//! they return. Every error carries libvirt's error number ([`Error::code`]).
//!
//! **Confinement.** Every file operation goes through a descriptor of the pool's target
//! directory (`openat` with `O_NOFOLLOW` on a single path component): a volume name is
//! never a path, and a symbolic link in the target is never followed, so nothing outside
//! the target is written. Symbolic links are not listed as volumes. `qemu-img` is given
//! `/proc/PID/fd/N` of the file this process opened, never a path it would resolve again.
//!
//! **Refresh** reads one 4 KiB header per file with a single `pread` (qcow2, qcow, qed,
//! vmdk, vpc, vdi; ISO 9660 by its descriptor; raw otherwise) and never runs `qemu-img`.
//!
//! **Where it differs from libvirt**: symbolic links are skipped rather than followed;
//! volumes with `<encryption>` are refused (not created in clear); wiping supports the
//! `zero` algorithm on raw volumes only; creating a volume whose preallocation exceeds
//! the free space fails before anything is written; qcow2 backing paths must be absolute.

mod error;
pub mod plugin;
pub mod probe;
mod qemu_img;
mod stream;
mod target;
mod volume;

pub use error::{Error, Result, code};
pub use qemu_img::QemuImgError;
pub use stream::{Download, Upload};
pub use volume::{
    WipeMethod, create_volume, create_volume_from, delete_volume, refresh_volume, resize_volume,
    wipe_volume,
};

pub use stream::{download, upload};

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FileType, Mode};
use rvirt_xml::{StoragePool, StorageVolume, VolumeParseOptions};

use target::{Target, io_err, pool_object};

/// libvirt's flag values.
pub mod flags {
    /// VIR_STORAGE_POOL_BUILD_NO_OVERWRITE
    pub const POOL_BUILD_NO_OVERWRITE: u32 = 4;
    /// VIR_STORAGE_POOL_BUILD_OVERWRITE
    pub const POOL_BUILD_OVERWRITE: u32 = 8;
    /// VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA
    pub const VOL_CREATE_PREALLOC_METADATA: u32 = 1;
    /// VIR_STORAGE_VOL_RESIZE_ALLOCATE
    pub const VOL_RESIZE_ALLOCATE: u32 = 1;
    /// VIR_STORAGE_VOL_RESIZE_DELTA
    pub const VOL_RESIZE_DELTA: u32 = 2;
    /// VIR_STORAGE_VOL_RESIZE_SHRINK
    pub const VOL_RESIZE_SHRINK: u32 = 4;
    /// VIR_STORAGE_VOL_WIPE_ALG_ZERO
    pub const WIPE_ALG_ZERO: u32 = 0;
}

/// libvirt's wipe algorithm names, by number.
pub const WIPE_ALGORITHMS: &[&str] = &[
    "zero",
    "nnsa",
    "dod",
    "bsi",
    "gutmann",
    "schneier",
    "pfitzner7",
    "pfitzner33",
    "random",
    "trim",
];

/// Rejects flags outside `known` as libvirt's `virCheckFlags` does.
pub(crate) fn check_flags(function: &'static str, flags: u32, known: u32) -> Result<()> {
    if flags & !known != 0 {
        return Err(Error::UnsupportedFlags {
            function,
            flags: flags & !known,
        });
    }
    Ok(())
}

/// Parses a pool document (XML in at the edge).
pub fn parse_pool(xml: &str) -> Result<StoragePool> {
    StoragePool::parse(xml).map_err(|source| Error::Xml {
        what: "pool",
        source,
    })
}

/// Parses a volume document in its pool's context (`allow_missing_capacity` for clones).
pub fn parse_volume(
    pool: &StoragePool,
    xml: &str,
    allow_missing_capacity: bool,
) -> Result<StorageVolume> {
    StorageVolume::parse_with(
        xml,
        Some(pool),
        &VolumeParseOptions {
            allow_missing_capacity,
        },
    )
    .map_err(|source| Error::Xml {
        what: "volume",
        source,
    })
}

/// Whether the pool's target exists and is a directory (libvirt's `checkPool`).
pub fn check_pool(pool: &StoragePool) -> Result<bool> {
    let path = target::target_path(pool)?;
    match rustix::fs::stat(path) {
        Ok(st) => Ok(FileType::from_raw_mode(st.st_mode) == FileType::Directory),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(false),
        Err(e) => Err(io_err(&pool_object(pool), "stat", path, e)),
    }
}

/// Creates the target directory (and its missing parents), applying the pool's
/// `<target><permissions>`: a new directory gets the mode given or libvirt's default
/// `0711`; an existing directory keeps its mode unless one is given.
///
/// `OVERWRITE` and `NO_OVERWRITE` are accepted (they concern formatting a file system,
/// which a `dir` pool has none of) but are mutually exclusive, as in libvirt.
pub fn build_pool(pool: &StoragePool, flags: u32) -> Result<()> {
    check_flags(
        "build_pool",
        flags,
        flags::POOL_BUILD_OVERWRITE | flags::POOL_BUILD_NO_OVERWRITE,
    )?;
    let obj = pool_object(pool);
    if flags & flags::POOL_BUILD_OVERWRITE != 0 && flags & flags::POOL_BUILD_NO_OVERWRITE != 0 {
        return Err(Error::InvalidArg {
            object: obj,
            field: "flags".into(),
            reason: "OVERWRITE and NO_OVERWRITE are mutually exclusive".into(),
        });
    }
    let path = target::target_path(pool)?;
    let mode = match pool.target_mode() {
        Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| Error::InvalidArg {
            object: obj.clone(),
            field: "pool/target/permissions/mode".into(),
            reason: format!("malformed octal mode '{m}'"),
        })?),
        None => None,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::Io {
            object: obj.clone(),
            action: "create parent directory of",
            path: path.to_path_buf(),
            source: e,
        })?;
    }
    let created = match rustix::fs::mkdir(path, Mode::from_raw_mode(mode.unwrap_or(0o711))) {
        Ok(()) => true,
        Err(rustix::io::Errno::EXIST) => false,
        Err(e) => return Err(io_err(&obj, "create directory", path, e)),
    };
    let dir = open_target_dir(pool, path)?;
    if let Some(m) = mode.or(created.then_some(0o711)) {
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(m))
            .map_err(|e| io_err(&obj, "set the mode of", path, e))?;
    }
    let (uid, gid) = (pool.target_owner(), pool.target_group());
    if uid.is_some() || gid.is_some() {
        let u = uid.map(rustix::fs::Uid::from_raw);
        let g = gid.map(rustix::fs::Gid::from_raw);
        rustix::fs::fchown(&dir, u, g).map_err(|e| io_err(&obj, "set the owner of", path, e))?;
    }
    Ok(())
}

fn open_target_dir(pool: &StoragePool, path: &Path) -> Result<OwnedFd> {
    Target::open_dir(pool, path)
}

/// Verifies that the target is a directory (a file or a missing target is an error naming
/// the pool and `pool/target/path`).
pub fn start_pool(pool: &StoragePool) -> Result<()> {
    Target::open(pool).map(|_| ())
}

/// Nothing to undo for a directory.
pub fn stop_pool(pool: &StoragePool) -> Result<()> {
    target::target_path(pool).map(|_| ())
}

/// Removes the (empty) target directory.
pub fn delete_pool(pool: &StoragePool, flags: u32) -> Result<()> {
    check_flags("delete_pool", flags, 0)?;
    let path = target::target_path(pool)?;
    let obj = pool_object(pool);
    match rustix::fs::rmdir(path) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::NOTEMPTY) => Err(Error::OperationInvalid {
            object: obj,
            reason: format!(
                "cannot delete pool: target '{}' still contains volumes",
                path.display()
            ),
        }),
        Err(e) => Err(io_err(&obj, "remove directory", path, e)),
    }
}

/// What a refresh finds.
#[derive(Debug, Clone)]
pub struct PoolRefresh {
    /// Size of the file system holding the target (bytes).
    pub capacity: u64,
    /// Bytes in use on it (`capacity - available`).
    pub allocation: u64,
    /// Bytes free on it (`f_bfree * f_frsize`, as libvirt).
    pub available: u64,
    /// One volume per regular file or directory in the target, sorted by name.
    pub volumes: Vec<StorageVolume>,
}

/// Lists the volumes and the file system's figures.
///
/// One `openat` + `fstat` + `pread` (4 KiB) per file; `qemu-img` is never run. Symbolic
/// links, sockets, FIFOs and devices are skipped. Large directories are read by up to
/// eight threads, one per 256 entries (`RVIRT_REFRESH_THREADS` overrides).
pub fn refresh_pool(pool: &StoragePool) -> Result<PoolRefresh> {
    let t = Target::open(pool)?;
    let (capacity, allocation, available) = t.fs_sizes()?;
    let volumes = scan_entries(&t, |name, buf| t.scan(name, buf))?;
    Ok(PoolRefresh {
        capacity,
        allocation,
        available,
        volumes,
    })
}

/// [`refresh_pool`] reporting each volume as its XML text, through a [`RefreshCache`]: an
/// entry whose `stat` (inode, size, blocks, modification and change times, mode, owner) is
/// what it was at the previous refresh of the same target keeps its text, with one
/// `fstatat` and no open or read. The change time cannot be set by users, so a file
/// rewritten in place is always read again.
pub fn refresh_pool_xml(pool: &StoragePool, cache: &RefreshCache) -> Result<PoolRefreshXml> {
    let t = Target::open(pool)?;
    let (capacity, allocation, available) = t.fs_sizes()?;
    let previous = cache
        .targets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&t.path)
        .unwrap_or_default();
    let found = scan_entries(&t, |name, buf| {
        let st = match rustix::fs::statat(&t.dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => {
                return Err(target::io_err(
                    &t.vol_object(name),
                    "stat",
                    &t.vol_path(name),
                    e,
                ));
            }
        };
        if !matches!(
            FileType::from_raw_mode(st.st_mode),
            FileType::RegularFile | FileType::Directory
        ) {
            return Ok(None);
        }
        let key = StatKey::of(&st);
        if let Some((k, xml)) = previous.get(name)
            && *k == key
        {
            return Ok(Some((name.to_string(), key, xml.clone())));
        }
        Ok(t.scan(name, buf)?
            .map(|v| (name.to_string(), key, v.to_xml(&xml_opts()))))
    })?;
    let mut next = std::collections::HashMap::with_capacity(found.len());
    let mut volumes = Vec::with_capacity(found.len());
    for (name, key, xml) in found {
        volumes.push(xml.clone());
        next.insert(name, (key, xml));
    }
    cache
        .targets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(t.path.clone(), next);
    Ok(PoolRefreshXml {
        capacity,
        allocation,
        available,
        volumes,
    })
}

/// What [`refresh_pool_xml`] reports.
#[derive(Debug, Clone)]
pub struct PoolRefreshXml {
    /// As [`PoolRefresh::capacity`].
    pub capacity: u64,
    /// As [`PoolRefresh::allocation`].
    pub allocation: u64,
    /// As [`PoolRefresh::available`].
    pub available: u64,
    /// One `<volume>` document per regular file or directory, sorted by name.
    pub volumes: Vec<String>,
}

/// The volume texts of the last refresh of each pool target, keyed by what `stat` said
/// of each entry (see [`refresh_pool_xml`]). Only the last refresh's entries are kept.
#[derive(Debug, Default)]
pub struct RefreshCache {
    targets: std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, TargetTexts>>,
}

/// One target's entries: name to (`stat` key, reported text).
type TargetTexts = std::collections::HashMap<String, (StatKey, String)>;

/// The `stat` fields a volume's reported text depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatKey([i128; 11]);

impl StatKey {
    fn of(st: &rustix::fs::Stat) -> Self {
        Self([
            st.st_dev as i128,
            st.st_ino as i128,
            st.st_size as i128,
            st.st_blocks as i128,
            st.st_mtime as i128,
            st.st_mtime_nsec as i128,
            st.st_ctime as i128,
            st.st_ctime_nsec as i128,
            st.st_mode as i128,
            st.st_uid as i128,
            st.st_gid as i128,
        ])
    }
}

fn xml_opts() -> rvirt_xml::FormatOptions {
    rvirt_xml::FormatOptions {
        inactive: false,
        secure: true,
    }
}

/// Reads the target's directory and runs `per_entry` on every regular file or directory
/// (or entry of unknown type), by name order, on up to eight threads.
fn scan_entries<T: Send>(
    t: &Target,
    per_entry: impl Fn(&str, &mut [u8]) -> Result<Option<T>> + Sync,
) -> Result<Vec<T>> {
    let mut entries: Vec<(String, FileType)> = Vec::new();
    let dup = rustix::io::fcntl_dupfd_cloexec(&t.dir, 0)
        .map_err(|e| io_err(&t.object, "read directory", &t.path, e))?;
    let dir =
        rustix::fs::Dir::new(dup).map_err(|e| io_err(&t.object, "read directory", &t.path, e))?;
    for ent in dir {
        let ent = ent.map_err(|e| io_err(&t.object, "read directory", &t.path, e))?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let Ok(name) = std::str::from_utf8(name) else {
            // not representable in XML
            continue;
        };
        match ent.file_type() {
            FileType::RegularFile | FileType::Directory | FileType::Unknown => {
                entries.push((name.to_string(), ent.file_type()))
            }
            _ => {}
        }
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let threads = match std::env::var("RVIRT_REFRESH_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(n) => n.clamp(1, 16),
        // threads mostly wait for the disk when the cache is cold (8 threads: 4x faster
        // than one on a 2-core virtio machine) and cost nothing measurable when it is warm
        None => (entries.len() / 256).clamp(1, 8),
    };
    let run = |part: &[(String, FileType)]| -> Result<Vec<T>> {
        let mut buf = vec![0u8; probe::HEADER_LEN];
        let mut out = Vec::with_capacity(part.len());
        for (name, _) in part {
            if let Some(v) = per_entry(name, &mut buf)? {
                out.push(v);
            }
        }
        Ok(out)
    };
    if threads <= 1 {
        return run(&entries);
    }
    let chunk = entries.len().div_ceil(threads);
    let results: Vec<Result<Vec<T>>> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                let run = &run;
                s.spawn(move || run(part))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Internal("refresh thread panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(entries.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// Returns `pool` with the refreshed figures set (what `pool-dumpxml` shows of a running
/// pool).
pub fn with_sizes(pool: &StoragePool, r: &PoolRefresh) -> StoragePool {
    let mut p = pool.clone();
    p.set_sizes(r.capacity, r.allocation, r.available);
    p
}

//! The pool's source: its `<format>`, its device (a block device, or an image file bound
//! to a loop device), what `blkid` finds on it, and `mkfs`.

use std::path::{Path, PathBuf};

use rustix::fs::FileType;
use rvirt_xml::StoragePool;

use crate::cmd;
use crate::error::{Error, Result};
use crate::mounts::{self, MountEntry};
use crate::pool_object;

/// libvirt's `fs` pool source formats (`virStoragePoolFormatFileSystem`).
pub const FORMATS: &[&str] = &[
    "auto", "ext2", "ext3", "ext4", "ufs", "iso9660", "udf", "gfs", "gfs2", "vfat", "hfs+", "xfs",
    "ocfs2", "vmfs",
];

/// The pool's `<source><format type>` (`auto` when absent), checked against [`FORMATS`].
pub fn format(pool: &StoragePool) -> Result<&str> {
    let f = pool.source_format().unwrap_or("auto");
    if !FORMATS.contains(&f) {
        return Err(Error::Xml {
            object: pool_object(pool),
            field: "pool/source/format/@type",
            reason: format!("unknown pool format type {f}"),
        });
    }
    Ok(f)
}

/// The name `blkid` and the kernel give a libvirt format.
fn kernel_name(format: &str) -> &str {
    match format {
        "hfs+" => "hfsplus",
        f => f,
    }
}

/// The pool's one `<source><device path>` (libvirt: exactly one).
pub fn device_path(pool: &StoragePool) -> Result<&Path> {
    let obj = pool_object(pool);
    let devs = pool.source_devices();
    match devs.as_slice() {
        [] => Err(Error::MissingDevice { object: obj }),
        [d] if d.starts_with('/') && !d.contains('\0') => Ok(Path::new(*d)),
        [d] => Err(Error::InvalidArg {
            object: obj,
            field: "pool/source/device/@path",
            reason: format!("'{d}' is not an absolute path"),
        }),
        _ => Err(Error::Xml {
            object: obj,
            field: "pool/source/device",
            reason: "expected exactly 1 device for the storage pool".into(),
        }),
    }
}

/// The source device as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A block device and its device number.
    Block {
        /// The path given.
        path: PathBuf,
        /// `major:minor`.
        rdev: (u32, u32),
    },
    /// A regular file (an image holding a file system), mounted through a loop device.
    File {
        /// Its canonical path (what `/sys/block/loopN/loop/backing_file` shows).
        path: PathBuf,
    },
}

impl Source {
    /// The path to probe and format.
    pub fn path(&self) -> &Path {
        match self {
            Source::Block { path, .. } | Source::File { path } => path,
        }
    }

    /// Whether a mounted file system with device number `dev` is this source.
    pub fn is_device(&self, dev: (u32, u32)) -> bool {
        match self {
            Source::Block { rdev, .. } => *rdev == dev,
            Source::File { path } => mounts::loop_backing_file(dev).is_some_and(|b| b == *path),
        }
    }

    /// The mounts of this source, anywhere.
    pub fn mounts(&self, all: &[MountEntry]) -> Vec<MountEntry> {
        all.iter()
            .filter(|m| self.is_device(m.dev))
            .cloned()
            .collect()
    }
}

/// Finds the source device: `Ok(None)` when it does not exist.
pub fn find(pool: &StoragePool) -> Result<Option<Source>> {
    let path = device_path(pool)?;
    let st = match rustix::fs::stat(path) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(None),
        Err(e) => {
            return Err(Error::Io {
                object: pool_object(pool),
                action: "stat source device",
                path: path.to_path_buf(),
                source: e.into(),
            });
        }
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::BlockDevice => Ok(Some(Source::Block {
            path: path.to_path_buf(),
            rdev: (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)),
        })),
        FileType::RegularFile => {
            let canon = std::fs::canonicalize(path).map_err(|source| Error::Io {
                object: pool_object(pool),
                action: "resolve source device",
                path: path.to_path_buf(),
                source,
            })?;
            Ok(Some(Source::File { path: canon }))
        }
        _ => Err(Error::InvalidArg {
            object: pool_object(pool),
            field: "pool/source/device/@path",
            reason: format!(
                "'{}' is neither a block device nor a regular file",
                path.display()
            ),
        }),
    }
}

/// The source device, which must exist (`doing`: "formatting", "starting").
pub fn require(pool: &StoragePool, doing: &str) -> Result<Source> {
    find(pool)?.ok_or_else(|| Error::OperationInvalid {
        object: pool_object(pool),
        reason: format!(
            "source device '{}' does not exist when {doing} the pool",
            device_path(pool)
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
    })
}

/// What `blkid` finds on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probed {
    /// No file system or partition table.
    Nothing,
    /// A file system of this type (blkid's name: `ext4`, `vfat`, `hfsplus`).
    Fs(String),
    /// A partition table of this type (`dos`, `gpt`).
    PartitionTable(String),
}

/// Probes the device's content with `blkid -p` (the superblocks themselves, no cache).
pub fn probe(pool: &StoragePool, device: &Path) -> Result<Probed> {
    let args = [
        "-p".as_ref(),
        "-o".as_ref(),
        "export".as_ref(),
        "--".as_ref(),
        device.as_os_str(),
    ];
    let action = || format!("probe '{}' for a file system", device.display());
    let (line, out) = cmd::output("blkid", &args).map_err(|source| Error::Command {
        object: pool_object(pool),
        action: action(),
        source: Box::new(source),
    })?;
    match out.status.code() {
        // nothing detected
        Some(2) => return Ok(Probed::Nothing),
        Some(0) => {}
        _ => {
            return Err(Error::ProbeFailed {
                object: pool_object(pool),
                reason: format!("{}: {}", action(), cmd::failed(line, &out)),
            });
        }
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    Ok(match (value("TYPE"), value("PTTYPE")) {
        (Some(t), _) => Probed::Fs(t),
        (None, Some(p)) => Probed::PartitionTable(p),
        (None, None) => Probed::Nothing,
    })
}

/// Whether blkid's type is the pool's format.
pub fn is_format(found: &str, format: &str) -> bool {
    found == kernel_name(format)
}

/// `mkfs -t FORMAT` with the option each tool needs to write over what is there (as
/// libvirt: `-F` for ext2/3/4, `-f` for xfs, `-I` for vfat).
pub fn mkfs(pool: &StoragePool, format: &str, device: &Path) -> Result<()> {
    let mut args: Vec<&std::ffi::OsStr> = vec!["-t".as_ref(), format.as_ref()];
    match format {
        "ext2" | "ext3" | "ext4" => args.push("-F".as_ref()),
        "xfs" => args.push("-f".as_ref()),
        "vfat" => args.push("-I".as_ref()),
        _ => {}
    }
    args.push(device.as_os_str());
    cmd::run("mkfs", &args)
        .map(|_| ())
        .map_err(|source| Error::Mkfs {
            object: pool_object(pool),
            format: format.to_string(),
            device: device.to_path_buf(),
            source: Box::new(source),
        })
}

/// A loop device bound to `file` and mounted nowhere (left by an interrupted start), or a
/// new one (`losetup --find --show`). Returns its path and whether it is new.
pub fn attach_loop(pool: &StoragePool, file: &Path, all: &[MountEntry]) -> Result<(PathBuf, bool)> {
    if let Some((dev, _)) = mounts::loops_backed_by(file)
        .into_iter()
        .find(|(_, num)| all.iter().all(|m| m.dev != *num))
    {
        return Ok((dev, false));
    }
    let out = cmd::run(
        "losetup",
        &["--find".as_ref(), "--show".as_ref(), file.as_os_str()],
    )
    .map_err(|source| Error::Command {
        object: pool_object(pool),
        action: format!("bind '{}' to a loop device", file.display()),
        source: Box::new(source),
    })?;
    Ok((PathBuf::from(out.trim()), true))
}

/// `losetup --detach DEVICE`.
pub fn detach_loop(pool: &StoragePool, dev: &Path) -> Result<()> {
    cmd::run("losetup", &["--detach".as_ref(), dev.as_os_str()])
        .map(|_| ())
        .map_err(|source| Error::Command {
            object: pool_object(pool),
            action: format!("detach loop device '{}'", dev.display()),
            source: Box::new(source),
        })
}

/// `/dev/loopN` for a loop device given by number; `None` for any other device.
pub fn loop_path(dev: (u32, u32)) -> Option<PathBuf> {
    let link = std::fs::read_link(format!("/sys/dev/block/{}:{}", dev.0, dev.1)).ok()?;
    let name = link.file_name()?.to_string_lossy().into_owned();
    name.starts_with("loop")
        .then(|| PathBuf::from("/dev").join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(src: &str) -> StoragePool {
        StoragePool::parse(&format!(
            "<pool type='fs'><name>f</name><source>{src}</source><target><path>/mnt/f</path></target></pool>"
        ))
        .expect("pool")
    }

    #[test]
    fn formats_and_devices() {
        assert_eq!(
            format(&pool("<device path='/dev/x'/>")).expect("auto"),
            "auto"
        );
        let p = pool("<device path='/dev/x'/><format type='ext4'/>");
        assert_eq!(format(&p).expect("ext4"), "ext4");
        let e = format(&pool("<device path='/dev/x'/><format type='zfs'/>")).expect_err("zfs");
        assert_eq!(e.code(), 27);
        assert!(
            e.to_string().contains("unknown pool format type zfs"),
            "{e}"
        );
        assert!(is_format("hfsplus", "hfs+") && is_format("ext4", "ext4"));
        assert!(!is_format("ext4", "ext3"));

        let e = device_path(&pool("")).expect_err("none");
        assert_eq!(e.code(), 1);
        assert!(e.to_string().contains("missing source device"), "{e}");
        let e = device_path(&pool("<device path='/a'/><device path='/b'/>")).expect_err("two");
        assert_eq!(e.code(), 27);
        let e = device_path(&pool("<device path='rel'/>")).expect_err("relative");
        assert_eq!(e.code(), 8);
    }

    #[test]
    fn sources_on_the_host() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let img = tmp.path().join("fs.img");
        std::fs::write(&img, b"").expect("write");
        let p = pool(&format!("<device path='{}'/>", img.display()));
        let s = find(&p).expect("find").expect("exists");
        assert_eq!(
            s,
            Source::File {
                path: std::fs::canonicalize(&img).expect("canon")
            }
        );
        let p = pool(&format!(
            "<device path='{}'/>",
            tmp.path().join("gone").display()
        ));
        assert_eq!(find(&p).expect("find"), None);
        let e = require(&p, "starting").expect_err("missing");
        assert_eq!(e.code(), 55);
        assert!(
            e.to_string().contains("does not exist when starting"),
            "{e}"
        );
        let p = pool(&format!("<device path='{}'/>", tmp.path().display()));
        let e = find(&p).expect_err("a directory");
        assert_eq!(e.code(), 8);
        assert!(
            e.to_string()
                .contains("neither a block device nor a regular file"),
            "{e}"
        );
    }
}

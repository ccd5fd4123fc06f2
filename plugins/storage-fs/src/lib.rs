//! The `fs` storage pool backend: a file system on a block device or an image file,
//! mounted at the pool's target directory; its volumes are the image files in it.
//!
//! The pool's life cycle is libvirt's `fs` backend:
//!
//! - **build** makes the target directory (as a `dir` pool); with `NO_OVERWRITE` it then
//!   probes the device (`blkid -p`) and runs `mkfs -t FORMAT` only if it holds nothing,
//!   with `OVERWRITE` it runs `mkfs` unconditionally; with neither it formats nothing
//!   (libvirt's rule). Building needs a format other than `auto`.
//! - **start** checks the target is a directory and the device holds a file system of the
//!   pool's `<format>` (any for `auto`), then `mount -o nodev,nosuid,noexec [-t FORMAT]
//!   DEVICE TARGET` (libvirt's default options on Linux).
//! - **check** (is the pool active without being started?): is the device mounted at the
//!   target, by `/proc/self/mountinfo` (device number against the source's).
//! - **stop** unmounts the target (`umount`); **delete** removes the (empty) target.
//! - **refresh** and every volume operation are the `dir` backend's
//!   ([`rvirt_storage_files`]) on the mounted target, refused while it is not mounted, so
//!   nothing is ever written into the bare mount point.
//!
//! **Image files.** libvirt takes only block devices; here a `<device path>` that is a
//! regular file is bound to a loop device (`losetup --find --show`) at start and detached
//! at stop. The backend keeps no state: the loop device is found again from
//! `/sys/block/loopN/loop/backing_file`, and a loop device left bound but unmounted (an
//! interrupted start) is reused.
//!
//! Every error carries libvirt's error number ([`Error::code`]; domain storage).

mod cmd;
mod error;
pub mod mounts;
pub mod plugin;
pub mod source;

pub use cmd::CommandError;
pub use error::{Error, Result, code};
pub use rvirt_storage_files::flags;
pub use source::{FORMATS, Probed, Source};

use std::path::{Path, PathBuf};

use rvirt_xml::{StoragePool, StorageVolume};

use mounts::MountEntry;

/// The pool type served.
pub const POOL_TYPE: &str = "fs";

/// Options every mount gets (libvirt's defaults for `fs` pools on Linux).
pub const MOUNT_OPTIONS: &str = "nodev,nosuid,noexec";

/// `pool 'NAME'`.
pub(crate) fn pool_object(pool: &StoragePool) -> String {
    format!("pool '{}'", pool.name())
}

/// Rejects flags outside `known` as libvirt's `virCheckFlags` does.
fn check_flags(function: &'static str, flags: u32, known: u32) -> Result<()> {
    if flags & !known != 0 {
        return Err(Error::UnsupportedFlags {
            function,
            flags: flags & !known,
        });
    }
    Ok(())
}

/// Parses a pool document.
pub fn parse_pool(xml: &str) -> Result<StoragePool> {
    Ok(rvirt_storage_files::parse_pool(xml)?)
}

/// Parses a volume document in its pool's context.
pub fn parse_volume(
    pool: &StoragePool,
    xml: &str,
    allow_missing_capacity: bool,
) -> Result<StorageVolume> {
    Ok(rvirt_storage_files::parse_volume(
        pool,
        xml,
        allow_missing_capacity,
    )?)
}

/// Checks what every operation needs: an `fs` pool with an absolute target, one source
/// device and a known format.
fn validate(pool: &StoragePool) -> Result<&Path> {
    let obj = pool_object(pool);
    if pool.pool_type() != POOL_TYPE {
        return Err(Error::InvalidArg {
            object: obj,
            field: "pool/@type",
            reason: format!("'{}' is not an fs pool", pool.pool_type()),
        });
    }
    source::device_path(pool)?;
    source::format(pool)?;
    match pool.target_path() {
        Some(p) if p.starts_with('/') && !p.contains('\0') => Ok(Path::new(p)),
        Some(p) => Err(Error::InvalidArg {
            object: obj,
            field: "pool/target/path",
            reason: format!("'{p}' is not an absolute path"),
        }),
        None => Err(Error::InvalidArg {
            object: obj,
            field: "pool/target/path",
            reason: "missing".into(),
        }),
    }
}

/// The same pool seen as a `dir` pool over its target (name, UUID, target and its
/// permissions; no source): what [`rvirt_storage_files`]'s functions are given.
pub fn dir_view(pool: &StoragePool) -> Result<StoragePool> {
    validate(pool)?;
    let mut root = pool.element().clone();
    root.set_attr("type", "dir");
    root.remove_children(|c| c.name() == "source");
    StoragePool::from_element(root).map_err(|source| {
        Error::Dir(rvirt_storage_files::Error::Xml {
            what: "pool",
            source,
        })
    })
}

fn io_err(pool: &StoragePool, action: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        object: pool_object(pool),
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn read_mounts(pool: &StoragePool) -> Result<Vec<MountEntry>> {
    mounts::mounts().map_err(|e| io_err(pool, "read", Path::new("/proc/self/mountinfo"), e))
}

/// The target's canonical path, `None` when it does not exist.
fn canonical_target(pool: &StoragePool, target: &Path) -> Result<Option<PathBuf>> {
    match std::fs::canonicalize(target) {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => Ok(None),
        Err(e) => Err(io_err(pool, "resolve target", target, e)),
    }
}

/// Where the pool stands on the host.
struct State {
    target: Option<PathBuf>,
    source: Option<Source>,
    all: Vec<MountEntry>,
}

impl State {
    fn read(pool: &StoragePool) -> Result<State> {
        let target = validate(pool)?;
        Ok(State {
            target: canonical_target(pool, target)?,
            source: source::find(pool)?,
            all: read_mounts(pool)?,
        })
    }

    /// The mounts at the target, in mount order.
    fn at_target(&self) -> impl Iterator<Item = &MountEntry> {
        self.all
            .iter()
            .filter(|m| Some(&m.mount_point) == self.target.as_ref())
    }

    /// The source's mount at the target, if any.
    fn ours(&self) -> Option<&MountEntry> {
        let src = self.source.as_ref()?;
        self.at_target().filter(|m| src.is_device(m.dev)).last()
    }
}

/// Whether the pool's device is mounted at its target (libvirt's `checkPool` for `fs`).
/// A missing device or target is simply not mounted.
pub fn check_pool(pool: &StoragePool) -> Result<bool> {
    Ok(State::read(pool)?.ours().is_some())
}

/// Makes the target directory, and with `NO_OVERWRITE` or `OVERWRITE` the file system
/// (see the crate documentation).
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
            field: "flags",
            reason: "OVERWRITE and NO_OVERWRITE are mutually exclusive".into(),
        });
    }
    rvirt_storage_files::build_pool(&dir_view(pool)?, 0)?;
    if flags == 0 {
        return Ok(());
    }
    let format = source::format(pool)?;
    if format == "auto" {
        return Err(Error::OperationInvalid {
            object: obj,
            reason:
                "cannot format the device: pool/source/format is 'auto'; name a file system type"
                    .into(),
        });
    }
    let src = source::require(pool, "formatting")?;
    let device = src.path();
    if let Some(m) = src.mounts(&read_mounts(pool)?).first() {
        return Err(Error::OperationInvalid {
            object: obj,
            reason: format!(
                "device '{}' is mounted at '{}': it cannot be formatted",
                device.display(),
                m.mount_point.display()
            ),
        });
    }
    if flags & flags::POOL_BUILD_NO_OVERWRITE != 0 {
        let refuse = |reason: String| {
            Err(Error::AlreadyBuilt {
                object: obj.clone(),
                reason,
            })
        };
        match source::probe(pool, device)? {
            Probed::Nothing => {}
            Probed::Fs(t) if source::is_format(&t, format) => {
                return refuse(format!(
                    "device '{}' already formatted using '{format}'",
                    device.display()
                ));
            }
            Probed::Fs(t) => {
                return refuse(format!(
                    "format of device '{}' ('{t}') does not match the expected format '{format}', forced overwrite is necessary",
                    device.display()
                ));
            }
            Probed::PartitionTable(t) => {
                return refuse(format!(
                    "device '{}' holds a partition table ('{t}'), forced overwrite is necessary",
                    device.display()
                ));
            }
        }
    }
    source::mkfs(pool, format, device)
}

/// Mounts the device at the target (binding an image file to a loop device first).
pub fn start_pool(pool: &StoragePool) -> Result<()> {
    let st = State::read(pool)?;
    let obj = pool_object(pool);
    let target = validate(pool)?;
    let src = source::require(pool, "starting")?;
    // a file, a missing target: the dir backend's clear errors
    rvirt_storage_files::start_pool(&dir_view(pool)?)?;
    if st.ours().is_some() {
        return Err(Error::OperationInvalid {
            object: obj,
            reason: format!("target '{}' is already mounted", target.display()),
        });
    }
    if let Some(m) = st.at_target().last() {
        return Err(Error::OperationInvalid {
            object: obj,
            reason: format!(
                "target '{}' is already a mount point (of '{}', {})",
                target.display(),
                m.source,
                m.fstype
            ),
        });
    }
    let format = source::format(pool)?;
    let device = src.path();
    match source::probe(pool, device)? {
        Probed::Fs(t) if format == "auto" || source::is_format(&t, format) => {}
        Probed::Fs(t) => {
            return Err(Error::OperationInvalid {
                object: obj,
                reason: format!(
                    "format of device '{}' ('{t}') does not match the expected format '{format}'",
                    device.display()
                ),
            });
        }
        Probed::Nothing | Probed::PartitionTable(_) => {
            return Err(Error::ProbeFailed {
                object: obj,
                reason: format!(
                    "device '{}' holds no file system; build the pool first",
                    device.display()
                ),
            });
        }
    }
    let (dev, new_loop) = match &src {
        Source::Block { path, .. } => (path.clone(), false),
        Source::File { path } => source::attach_loop(pool, path, &st.all)?,
    };
    let mut args: Vec<&std::ffi::OsStr> = vec!["-o".as_ref(), MOUNT_OPTIONS.as_ref()];
    if format != "auto" {
        args.push("-t".as_ref());
        args.push(format.as_ref());
    }
    args.push(dev.as_os_str());
    args.push(target.as_os_str());
    if let Err(source) = cmd::run("mount", &args) {
        if new_loop {
            let _ = source::detach_loop(pool, &dev);
        }
        return Err(Error::Command {
            object: obj,
            action: format!("mount '{}' on '{}'", dev.display(), target.display()),
            source: Box::new(source),
        });
    }
    Ok(())
}

/// Unmounts the target and detaches the loop device an image file was bound to. A pool
/// that is not mounted has nothing to stop.
pub fn stop_pool(pool: &StoragePool) -> Result<()> {
    let st = State::read(pool)?;
    let Some(m) = st.ours().cloned() else {
        return Ok(());
    };
    let target = validate(pool)?;
    cmd::run("umount", &[target.as_os_str()]).map_err(|source| Error::Command {
        object: pool_object(pool),
        action: format!("unmount '{}'", target.display()),
        source: Box::new(source),
    })?;
    if matches!(st.source, Some(Source::File { .. })) {
        let still_mounted = read_mounts(pool)?.iter().any(|e| e.dev == m.dev);
        if !still_mounted && let Some(dev) = source::loop_path(m.dev) {
            source::detach_loop(pool, &dev)?;
        }
    }
    Ok(())
}

/// Removes the (empty) target directory, as libvirt's `fs` backend; the device is left
/// as it is. Refused while mounted.
pub fn delete_pool(pool: &StoragePool, flags: u32) -> Result<()> {
    check_flags("delete_pool", flags, 0)?;
    if check_pool(pool)? {
        return Err(Error::OperationInvalid {
            object: pool_object(pool),
            reason: "cannot delete the pool while its device is mounted".into(),
        });
    }
    Ok(rvirt_storage_files::delete_pool(&dir_view(pool)?, 0)?)
}

/// The `dir` pool the volume operations run on: [`dir_view`], refused unless the device
/// is mounted at the target.
pub fn volume_pool(pool: &StoragePool) -> Result<StoragePool> {
    if !check_pool(pool)? {
        return Err(Error::OperationInvalid {
            object: pool_object(pool),
            reason: format!(
                "device '{}' is not mounted at '{}'",
                source::device_path(pool)?.display(),
                validate(pool)?.display()
            ),
        });
    }
    dir_view(pool)
}

/// Lists the volumes and the mounted file system's figures.
pub fn refresh_pool(pool: &StoragePool) -> Result<rvirt_storage_files::PoolRefresh> {
    Ok(rvirt_storage_files::refresh_pool(&volume_pool(pool)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_view_keeps_name_uuid_and_target() {
        let p = parse_pool(
            "<pool type='fs'><name>f</name><uuid>6f0c8f6a-3c5e-4d1e-9a59-3f4f3a3c7a11</uuid>\
             <source><device path='/dev/x'/><format type='ext4'/></source>\
             <target><path>/srv/f</path><permissions><mode>0750</mode></permissions></target></pool>",
        )
        .expect("pool");
        let d = dir_view(&p).expect("view");
        assert_eq!(d.pool_type(), "dir");
        assert_eq!((d.name(), d.uuid()), (p.name(), p.uuid()));
        assert_eq!(d.target_path(), Some("/srv/f"));
        assert_eq!(d.target_mode(), Some("0750"));
        assert!(d.source_devices().is_empty());

        let dir =
            parse_pool("<pool type='dir'><name>d</name><target><path>/d</path></target></pool>")
                .expect("pool");
        let e = dir_view(&dir).expect_err("not fs");
        assert!(e.to_string().contains("pool/@type"), "{e}");
        let rel = parse_pool(
            "<pool type='fs'><name>f</name><source><device path='/dev/x'/></source><target><path>rel</path></target></pool>",
        )
        .expect("pool");
        assert_eq!(dir_view(&rel).expect_err("relative").code(), 8);
    }

    #[test]
    fn flags_are_checked_first() {
        let p = parse_pool(
            "<pool type='fs'><name>f</name><source><device path='/nonexistent/dev'/></source><target><path>/nonexistent/t</path></target></pool>",
        )
        .expect("pool");
        assert_eq!(build_pool(&p, 1).expect_err("REPAIR").code(), 8);
        let e = build_pool(&p, 4 | 8).expect_err("both");
        assert!(e.to_string().contains("mutually exclusive"), "{e}");
        assert_eq!(delete_pool(&p, 1).expect_err("ZEROED").code(), 8);
        // a missing device and target: not mounted, nothing to stop
        assert!(!check_pool(&p).expect("check"));
        stop_pool(&p).expect("stop");
        let e = refresh_pool(&p).expect_err("not mounted");
        assert_eq!(e.code(), 55);
        assert!(
            e.to_string().contains("is not mounted at '/nonexistent/t'"),
            "{e}"
        );
    }
}

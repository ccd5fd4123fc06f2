//! The `logical` storage pool backend: a pool is an LVM volume group, its volumes are the
//! group's logical volumes. Everything goes through lvm2's tools; sizes and lists come
//! from their JSON reports (`--reportformat json --units b --nosuffix`).
//!
//! The pool's life cycle is libvirt's `logical` backend:
//!
//! - **build** (`pvcreate` on each source device, then `vgcreate`): without `OVERWRITE` a
//!   device that already holds a signature (`blkid -p`) is refused;
//! - **start** checks the group exists on the pool's devices (and that its physical
//!   volumes are among them), then activates it (`vgchange -aay`);
//! - **stop** deactivates it (`vgchange -aln`); **delete** is `vgremove` and `pvremove`;
//! - **refresh** reports the group's size and free space and one `<volume type='block'>`
//!   per logical volume (key: the LV's UUID; path: `/dev/VG/LV`);
//! - volumes: `lvcreate` (a `<backingStore>` makes a snapshot of that origin, which
//!   lvm2 does only through device-mapper), `lvremove`, `lvresize`.
//!
//! **Where device-mapper is missing** (this kernel: no `device-mapper` in `/proc/misc`),
//! logical volumes cannot be activated, so every command runs with activation off
//! (`--config global{activation=0}`, `lvcreate -an -Zn`): building, volume creation,
//! deletion, resizing and every size are real LVM metadata operations. Activation, which
//! libvirt runs at start, is then skipped and logged: the pool starts, its volumes exist
//! but have no device node. What needs an LV's data (upload, download, wipe) answers
//! `VIR_ERR_OPERATION_UNSUPPORTED` naming the inactive volume and the missing
//! device-mapper, and so do snapshots and clones.
//!
//! **Devices.** Every command passes the pool's `<source><device>`s with `--devices`, so
//! lvm2 never scans other disks of the host. A pool defined by its group's name alone
//! (no device) is looked up as libvirt does, on every device lvm2 sees.

pub mod cmd;
pub mod lvm;
pub mod plugin;

use cmd::CommandError;
use lvm::{LvRow, Lvm};
use rvirt_xml::{StoragePool, StorageVolume};

/// The pool type served.
pub const POOL_TYPE: &str = "logical";

/// libvirt's error numbers this backend answers.
pub mod code {
    /// VIR_ERR_INTERNAL_ERROR
    pub const INTERNAL_ERROR: i32 = 1;
    /// VIR_ERR_NO_SUPPORT
    pub const NO_SUPPORT: i32 = 3;
    /// VIR_ERR_INVALID_ARG
    pub const INVALID_ARG: i32 = 8;
    /// VIR_ERR_XML_ERROR
    pub const XML_ERROR: i32 = 27;
    /// VIR_ERR_NO_STORAGE_VOL
    pub const NO_STORAGE_VOL: i32 = 50;
    /// VIR_ERR_OPERATION_INVALID
    pub const OPERATION_INVALID: i32 = 55;
    /// VIR_ERR_STORAGE_POOL_BUILT
    pub const STORAGE_POOL_BUILT: i32 = 76;
    /// VIR_ERR_OPERATION_UNSUPPORTED
    pub const OPERATION_UNSUPPORTED: i32 = 84;
    /// VIR_ERR_STORAGE_VOL_EXIST
    pub const STORAGE_VOL_EXIST: i32 = 90;
}

/// libvirt's flag values this backend takes.
pub mod flags {
    /// VIR_STORAGE_POOL_BUILD_NO_OVERWRITE
    pub const POOL_BUILD_NO_OVERWRITE: u32 = 4;
    /// VIR_STORAGE_POOL_BUILD_OVERWRITE
    pub const POOL_BUILD_OVERWRITE: u32 = 8;
    /// VIR_STORAGE_VOL_RESIZE_ALLOCATE
    pub const RESIZE_ALLOCATE: u32 = 1;
    /// VIR_STORAGE_VOL_RESIZE_DELTA
    pub const RESIZE_DELTA: u32 = 2;
    /// VIR_STORAGE_VOL_RESIZE_SHRINK
    pub const RESIZE_SHRINK: u32 = 4;
}

/// Every failure of the `logical` backend; [`Error::code`] is libvirt's number.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A definition field is unusable.
    #[error("{object}: {field}: {reason}")]
    InvalidArg {
        /// `pool 'NAME'` or `volume 'NAME'`.
        object: String,
        /// The field, as an XML path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The document does not parse.
    #[error("{what}: {source}")]
    Xml {
        /// `pool` or `volume`.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: rvirt_xml::XmlError,
    },
    /// Flags the operation does not know.
    #[error("invalid argument: unsupported flags (0x{flags:x}) in function {function}")]
    Flags {
        /// libvirt's API.
        function: &'static str,
        /// The unknown bits.
        flags: u32,
    },
    /// Not valid now (the group is missing, a device holds something else).
    #[error("{0}")]
    OperationInvalid(String),
    /// Building would overwrite a device's contents (`NO_OVERWRITE`, or no flag).
    #[error("{0}")]
    AlreadyBuilt(String),
    /// The volume does not exist.
    #[error("{0}")]
    NoVolume(String),
    /// The volume exists already.
    #[error("{0}")]
    VolumeExists(String),
    /// Needs an active logical volume, and it cannot be activated here.
    #[error("{0}")]
    Unsupported(String),
    /// Not implemented by this backend.
    #[error("{0}")]
    NoSupport(String),
    /// An lvm2 tool failed.
    #[error("{object}: cannot {action}")]
    Command {
        /// `pool 'NAME'`.
        object: String,
        /// What was attempted.
        action: String,
        /// The tool's failure, with its stderr.
        #[source]
        source: Box<CommandError>,
    },
}

impl Error {
    /// libvirt's `virErrorNumber`.
    pub fn code(&self) -> i32 {
        match self {
            Error::InvalidArg { .. } | Error::Flags { .. } => code::INVALID_ARG,
            Error::Xml { .. } => code::XML_ERROR,
            Error::OperationInvalid(_) => code::OPERATION_INVALID,
            Error::AlreadyBuilt(_) => code::STORAGE_POOL_BUILT,
            Error::NoVolume(_) => code::NO_STORAGE_VOL,
            Error::VolumeExists(_) => code::STORAGE_VOL_EXIST,
            Error::Unsupported(_) => code::OPERATION_UNSUPPORTED,
            Error::NoSupport(_) => code::NO_SUPPORT,
            Error::Command { .. } => code::INTERNAL_ERROR,
        }
    }

    /// The message with its causes, `: `-separated.
    pub fn full_message(&self) -> String {
        rvirt_sdk::util::error_chain(self)
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn check_flags(function: &'static str, flags: u32, known: u32) -> Result<()> {
    if flags & !known != 0 {
        return Err(Error::Flags {
            function,
            flags: flags & !known,
        });
    }
    Ok(())
}

/// Parses a pool document.
pub fn parse_pool(xml: &str) -> Result<StoragePool> {
    StoragePool::parse(xml).map_err(|source| Error::Xml {
        what: "pool",
        source,
    })
}

/// Parses a volume document in its pool's context.
pub fn parse_volume(pool: &StoragePool, xml: &str) -> Result<StorageVolume> {
    StorageVolume::parse(xml, Some(pool)).map_err(|source| Error::Xml {
        what: "volume",
        source,
    })
}

/// Whether `name` is a name lvm2 takes for a volume group or logical volume (and never an
/// option or a path).
pub fn valid_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-'))
}

/// What a pool names on the host: its volume group, its devices, its target directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// `pool 'NAME'`, for messages.
    pub object: String,
    /// The volume group (`<source><name>`, by default the pool's name).
    pub vg: String,
    /// `<source><device path>`s.
    pub devices: Vec<String>,
    /// `<target><path>` (`/dev/VG` by default): where the LVs' nodes appear when active.
    pub target: String,
}

impl Group {
    /// Reads and checks the pool's definition.
    pub fn of(pool: &StoragePool) -> Result<Group> {
        let object = format!("pool '{}'", pool.name());
        if pool.pool_type() != POOL_TYPE {
            return Err(Error::InvalidArg {
                object,
                field: "pool/@type",
                reason: format!("'{}' is not a logical pool", pool.pool_type()),
            });
        }
        let vg = pool.source_name().unwrap_or(pool.name()).to_string();
        if !valid_lvm_name(&vg) {
            return Err(Error::InvalidArg {
                object,
                field: "pool/source/name",
                reason: format!("'{vg}' is not a valid volume group name"),
            });
        }
        if let Some(f) = pool.source_format()
            && f != "lvm2"
            && f != "unknown"
        {
            return Err(Error::InvalidArg {
                object,
                field: "pool/source/format/@type",
                reason: format!("unsupported pool format '{f}' (lvm2)"),
            });
        }
        let mut devices = Vec::new();
        for d in pool.source_devices() {
            if !d.starts_with('/') || d.contains(',') || d.contains('\0') {
                return Err(Error::InvalidArg {
                    object,
                    field: "pool/source/device/@path",
                    reason: format!("'{d}' is not an absolute device path"),
                });
            }
            devices.push(d.to_string());
        }
        let target = pool
            .target_path()
            .map(str::to_string)
            .unwrap_or_else(|| format!("/dev/{vg}"));
        Ok(Group {
            object,
            vg,
            devices,
            target,
        })
    }

    /// How lvm2 runs for this pool on this host.
    pub fn lvm(&self) -> Lvm {
        Lvm {
            devices: self.devices.clone(),
            activation: lvm::device_mapper_available(),
        }
    }

    fn command(&self, action: impl Into<String>) -> impl FnOnce(CommandError) -> Error + '_ {
        let action = action.into();
        move |source| Error::Command {
            object: self.object.clone(),
            action,
            source: Box::new(source),
        }
    }

    /// The group as lvm2 reports it; an error when it does not exist.
    fn require_vg(&self, lvm: &Lvm) -> Result<lvm::VgRow> {
        lvm.vg(&self.vg)
            .map_err(self.command(format!("read volume group '{}'", self.vg)))?
            .ok_or_else(|| self.vg_missing())
    }

    fn vg_missing(&self) -> Error {
        Error::OperationInvalid(format!(
            "{}: cannot find logical volume group name '{}'{}",
            self.object,
            self.vg,
            self.on_devices()
        ))
    }

    fn on_devices(&self) -> String {
        if self.devices.is_empty() {
            String::new()
        } else {
            format!(" on {}", self.devices.join(", "))
        }
    }

    /// The path of LV `name`'s device node.
    pub fn lv_path(&self, name: &str) -> String {
        format!("{}/{name}", self.target.trim_end_matches('/'))
    }
}

/// The canonical form of a device path (itself when it cannot be resolved).
fn canonical(p: &str) -> String {
    std::fs::canonicalize(p)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| p.to_string())
}

/// Whether the pool is active without being started (a restarted host asks this of a
/// pool it recorded active): the group exists on the pool's devices. libvirt looks for
/// the group's directory of device nodes instead, which never exists without
/// device-mapper, so here the group's presence is what an active pool means.
pub fn check_pool(pool: &StoragePool) -> Result<bool> {
    let g = Group::of(pool)?;
    let lvm = g.lvm();
    let found = lvm
        .vg(&g.vg)
        .map_err(g.command(format!("read volume group '{}'", g.vg)))?;
    if found.is_none() {
        return Ok(false);
    }
    if lvm.activation {
        return Ok(std::path::Path::new(&g.target).is_dir());
    }
    Ok(true)
}

/// `pvcreate` on each device, then `vgcreate` (see the crate documentation).
pub fn build_pool(pool: &StoragePool, flags: u32) -> Result<()> {
    check_flags(
        "virStoragePoolBuild",
        flags,
        flags::POOL_BUILD_NO_OVERWRITE | flags::POOL_BUILD_OVERWRITE,
    )?;
    let g = Group::of(pool)?;
    if flags & flags::POOL_BUILD_NO_OVERWRITE != 0 && flags & flags::POOL_BUILD_OVERWRITE != 0 {
        return Err(Error::InvalidArg {
            object: g.object,
            field: "flags",
            reason: "OVERWRITE and NO_OVERWRITE are mutually exclusive".into(),
        });
    }
    if g.devices.is_empty() {
        return Err(Error::InvalidArg {
            object: g.object,
            field: "pool/source/device",
            reason: "building a logical pool needs at least one source device".into(),
        });
    }
    let lvm = g.lvm();
    let overwrite = flags & flags::POOL_BUILD_OVERWRITE != 0;
    for d in &g.devices {
        if !overwrite && let Some(found) = probe(d).map_err(g.command(format!("probe '{d}'")))? {
            return Err(Error::AlreadyBuilt(format!(
                "{}: device '{d}' already holds {found}; use the overwrite flag to build over it",
                g.object
            )));
        }
    }
    for d in &g.devices {
        let args: &[&str] = if overwrite {
            &["-ff", "-y", d]
        } else {
            &["-y", d]
        };
        lvm.run("pvcreate", args)
            .map_err(g.command(format!("initialize physical volume '{d}'")))?;
    }
    let mut args = vec![g.vg.as_str()];
    args.extend(g.devices.iter().map(String::as_str));
    lvm.run("vgcreate", &args)
        .map_err(g.command(format!("create volume group '{}'", g.vg)))?;
    Ok(())
}

/// What `blkid -p` finds on a device (`None`: nothing).
fn probe(device: &str) -> Result<Option<String>, CommandError> {
    let args = ["-p", "-o", "export", device].map(std::ffi::OsString::from);
    match cmd::run("blkid", &args) {
        Ok(out) => {
            let get = |k: &str| {
                out.lines()
                    .find_map(|l| l.strip_prefix(k).map(str::to_string))
            };
            Ok(Some(match (get("TYPE="), get("PTTYPE=")) {
                (Some(t), _) => format!("a '{t}' signature"),
                (None, Some(t)) => format!("a '{t}' partition table"),
                _ => "data blkid recognizes".to_string(),
            }))
        }
        // blkid exits 2 when it finds nothing
        Err(CommandError::Failed { code: Some(2), .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks the group exists and its physical volumes are the pool's devices, then
/// activates it where device-mapper exists. Answers what to log when activation is
/// skipped.
pub fn start_pool(pool: &StoragePool) -> Result<Option<String>> {
    let g = Group::of(pool)?;
    let lvm = g.lvm();
    g.require_vg(&lvm)?;
    if !g.devices.is_empty() {
        let ours: Vec<String> = g.devices.iter().map(|d| canonical(d)).collect();
        let pvs = lvm.pvs().map_err(g.command("list physical volumes"))?;
        let in_vg: Vec<&lvm::PvRow> = pvs.iter().filter(|p| p.vg_name == g.vg).collect();
        if let Some(p) = in_vg
            .iter()
            .find(|p| !ours.contains(&canonical(&p.pv_name)))
        {
            return Err(Error::OperationInvalid(format!(
                "{}: volume group '{}' has physical volume '{}', which is not a source device of the pool",
                g.object, g.vg, p.pv_name
            )));
        }
    }
    if !lvm.activation {
        return Ok(Some(format!(
            "{}: logical volumes of volume group '{}' are not activated: this kernel has no device-mapper (no 'device-mapper' in /proc/misc); the pool runs with activation off (metadata only)",
            g.object, g.vg
        )));
    }
    lvm.run("vgchange", &["-aay", &g.vg])
        .map_err(g.command(format!("activate volume group '{}'", g.vg)))?;
    Ok(None)
}

/// Deactivates the group's logical volumes (nothing to do without device-mapper).
pub fn stop_pool(pool: &StoragePool) -> Result<()> {
    let g = Group::of(pool)?;
    let lvm = g.lvm();
    if !lvm.activation {
        return Ok(());
    }
    lvm.run("vgchange", &["-aln", &g.vg])
        .map_err(g.command(format!("deactivate volume group '{}'", g.vg)))?;
    Ok(())
}

/// `vgremove` the group, then `pvremove` each device.
pub fn delete_pool(pool: &StoragePool, flags: u32) -> Result<()> {
    check_flags("virStoragePoolDelete", flags, 0)?;
    let g = Group::of(pool)?;
    let lvm = g.lvm();
    lvm.run("vgremove", &["-f", "-y", &g.vg])
        .map_err(g.command(format!("remove volume group '{}'", g.vg)))?;
    for d in &g.devices {
        lvm.run("pvremove", &["-y", d])
            .map_err(g.command(format!("remove physical volume '{d}'")))?;
    }
    Ok(())
}

/// A pool's sizes and volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// The group's size.
    pub capacity: u64,
    /// Size less free space.
    pub allocation: u64,
    /// Free space.
    pub available: u64,
    /// One `<volume>` document per logical volume.
    pub volumes: Vec<String>,
}

/// The group's sizes and its logical volumes.
pub fn refresh_pool(pool: &StoragePool) -> Result<Refresh> {
    let g = Group::of(pool)?;
    let lvm = g.lvm();
    let (vg, lvs) = lvm
        .group(&g.vg)
        .map_err(g.command(format!("list the logical volumes of '{}'", g.vg)))?
        .ok_or_else(|| g.vg_missing())?;
    Ok(Refresh {
        capacity: vg.vg_size,
        allocation: vg.vg_size.saturating_sub(vg.vg_free),
        available: vg.vg_free,
        volumes: lvs
            .iter()
            .filter(|l| !l.is_internal())
            .map(|l| volume_xml(&g, l))
            .collect(),
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The `<volume>` document of a logical volume, as libvirt reports one: type `block`, the
/// LV's UUID as its key, `/dev/VG/LV` as its path, its origin as `<backingStore>`.
pub fn volume_xml(g: &Group, lv: &LvRow) -> String {
    let mut x = format!(
        "<volume type='block'><name>{}</name><key>{}</key>\
         <capacity unit='bytes'>{}</capacity><allocation unit='bytes'>{}</allocation>\
         <target><path>{}</path></target>",
        esc(&lv.lv_name),
        esc(&lv.lv_uuid),
        lv.lv_size,
        lv.lv_size,
        esc(&g.lv_path(&lv.lv_name)),
    );
    if !lv.origin.is_empty() {
        x.push_str(&format!(
            "<backingStore><path>{}</path></backingStore>",
            esc(&g.lv_path(&lv.origin))
        ));
    }
    x.push_str("</volume>");
    x
}

fn vol_name(g: &Group, vol: &StorageVolume) -> Result<String> {
    let n = vol.name();
    if !valid_lvm_name(n) {
        return Err(Error::InvalidArg {
            object: g.object.clone(),
            field: "volume/name",
            reason: format!("'{n}' is not a valid logical volume name"),
        });
    }
    Ok(n.to_string())
}

/// The LV `name` of the group, or `VIR_ERR_NO_STORAGE_VOL`.
fn lv(g: &Group, lvm: &Lvm, name: &str) -> Result<LvRow> {
    let missing = || {
        Error::NoVolume(format!(
            "storage vol not found: no logical volume '{name}' in volume group '{}'",
            g.vg
        ))
    };
    let rows = match lvm.lvs(&g.vg, Some(name)) {
        Ok(r) => r,
        Err(e) if not_found(&e) => return Err(missing()),
        Err(e) => return Err(g.command(format!("read logical volume '{name}'"))(e)),
    };
    rows.into_iter()
        .find(|l| l.lv_name == name)
        .ok_or_else(missing)
}

/// Whether lvm2 failed because the logical volume does not exist.
fn not_found(e: &CommandError) -> bool {
    matches!(e, CommandError::Failed { stderr, .. } if stderr.contains("Failed to find logical volume"))
}

/// `lvcreate` (a snapshot of the `<backingStore>` origin when there is one); answers the
/// new volume's document.
pub fn create_volume(pool: &StoragePool, vol: &StorageVolume, flags: u32) -> Result<String> {
    check_flags("virStorageVolCreateXML", flags, 0)?;
    let g = Group::of(pool)?;
    let name = vol_name(&g, vol)?;
    if vol.format_type().is_some_and(|f| f != "none" && f != "raw") {
        return Err(Error::InvalidArg {
            object: format!("volume '{name}'"),
            field: "volume/target/format/@type",
            reason: "logical volumes have no format".into(),
        });
    }
    let lvm = g.lvm();
    let capacity = vol.capacity_bytes();
    if capacity == 0 {
        return Err(Error::InvalidArg {
            object: format!("volume '{name}'"),
            field: "volume/capacity",
            reason: "a logical volume needs a capacity above 0".into(),
        });
    }
    let size = format!("{}b", capacity);
    let origin = match vol.backing_store() {
        Some((Some(path), _)) => Some(origin_of(&g, path)?),
        _ => None,
    };
    if let Some(o) = &origin
        && !lvm.activation
    {
        return Err(Error::Unsupported(format!(
            "Operation not supported: cannot create snapshot volume '{name}' of '{o}' in {}: lvm2 makes snapshots only through device-mapper, which this kernel lacks (no 'device-mapper' in /proc/misc)",
            g.object
        )));
    }
    let mut args: Vec<&str> = vec!["-y", "-n", &name, "-L", &size];
    if !lvm.activation {
        args.extend(["-an", "-Zn"]);
    }
    let origin_arg;
    match &origin {
        Some(o) => {
            origin_arg = format!("{}/{o}", g.vg);
            args.extend(["-s", origin_arg.as_str()]);
        }
        None => args.push(&g.vg),
    }
    // lvcreate itself refuses a name in use (one command less than asking first)
    match lvm.run("lvcreate", &args) {
        Ok(_) => {}
        Err(CommandError::Failed { stderr, .. }) if stderr.contains("already exists") => {
            return Err(Error::VolumeExists(format!(
                "storage volume '{name}' exists already in volume group '{}'",
                g.vg
            )));
        }
        Err(e) => return Err(g.command(format!("create logical volume '{name}'"))(e)),
    }
    Ok(volume_xml(&g, &lv(&g, &lvm, &name)?))
}

/// The origin LV a `<backingStore><path>` names: `/dev/VG/LV` (or the pool's target) of
/// this group.
fn origin_of(g: &Group, path: &str) -> Result<String> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let ok_dir = dir == g.target.trim_end_matches('/') || dir == format!("/dev/{}", g.vg);
    if !ok_dir || !valid_lvm_name(name) {
        return Err(Error::InvalidArg {
            object: g.object.clone(),
            field: "volume/backingStore/path",
            reason: format!(
                "'{path}' is not a logical volume of volume group '{}'",
                g.vg
            ),
        });
    }
    Ok(name.to_string())
}

/// `lvremove`.
pub fn delete_volume(pool: &StoragePool, vol: &StorageVolume, flags: u32) -> Result<()> {
    check_flags("virStorageVolDelete", flags, 0)?;
    let g = Group::of(pool)?;
    let name = vol_name(&g, vol)?;
    let lvm = g.lvm();
    match lvm.run("lvremove", &["-f", "-y", &format!("{}/{name}", g.vg)]) {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Err(Error::NoVolume(format!(
            "storage vol not found: no logical volume '{name}' in volume group '{}'",
            g.vg
        ))),
        Err(e) => Err(g.command(format!("remove logical volume '{name}'"))(e)),
    }
}

/// `lvresize` to `capacity` bytes (or by it, with `DELTA`); shrinking needs `SHRINK`.
pub fn resize_volume(
    pool: &StoragePool,
    vol: &StorageVolume,
    capacity: u64,
    flags: u32,
) -> Result<()> {
    check_flags(
        "virStorageVolResize",
        flags,
        flags::RESIZE_ALLOCATE | flags::RESIZE_DELTA | flags::RESIZE_SHRINK,
    )?;
    let g = Group::of(pool)?;
    let name = vol_name(&g, vol)?;
    let lvm = g.lvm();
    let cur = lv(&g, &lvm, &name)?.lv_size;
    let shrink = flags & flags::RESIZE_SHRINK != 0;
    let new = if flags & flags::RESIZE_DELTA != 0 {
        if shrink {
            cur.checked_sub(capacity)
        } else {
            cur.checked_add(capacity)
        }
        .ok_or_else(|| Error::InvalidArg {
            object: format!("volume '{name}'"),
            field: "capacity",
            reason: format!("cannot change {cur} bytes by {capacity}"),
        })?
    } else {
        capacity
    };
    if new < cur && !shrink {
        return Err(Error::InvalidArg {
            object: format!("volume '{name}'"),
            field: "capacity",
            reason: format!(
                "can't shrink capacity below current capacity unless shrink flag explicitly specified ({new} < {cur})"
            ),
        });
    }
    if new > cur && shrink {
        return Err(Error::InvalidArg {
            object: format!("volume '{name}'"),
            field: "capacity",
            reason: format!("the shrink flag cannot grow the volume ({new} > {cur})"),
        });
    }
    if new == 0 {
        return Err(Error::InvalidArg {
            object: format!("volume '{name}'"),
            field: "capacity",
            reason: "a logical volume cannot shrink to 0".into(),
        });
    }
    if new == cur {
        return Ok(());
    }
    let size = format!("{new}b");
    let target = format!("{}/{name}", g.vg);
    let mut args = vec!["-y", "-L", size.as_str()];
    if shrink {
        args.push("-f");
    }
    args.push(&target);
    lvm.run("lvresize", &args)
        .map_err(g.command(format!("resize logical volume '{name}'")))?;
    Ok(())
}

/// The volume's document as lvm2 reports it now.
pub fn refresh_volume(pool: &StoragePool, vol: &StorageVolume) -> Result<String> {
    let g = Group::of(pool)?;
    let name = vol_name(&g, vol)?;
    let lvm = g.lvm();
    Ok(volume_xml(&g, &lv(&g, &lvm, &name)?))
}

/// The refusal of an operation that needs the volume's data (`upload`, `download`,
/// `wipe`): an inactive LV here, whose reason is named.
pub fn needs_active(pool: &StoragePool, vol: &StorageVolume, operation: &str) -> Error {
    let g = match Group::of(pool) {
        Ok(g) => g,
        Err(e) => return e,
    };
    let name = vol.name();
    let lvm = g.lvm();
    let row = match lv(&g, &lvm, name) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if !row.active() {
        let why = if lvm.activation {
            "the logical volume is not active".to_string()
        } else {
            "the logical volume is not active, and it cannot be activated: this kernel has no device-mapper (no 'device-mapper' in /proc/misc)".to_string()
        };
        return Error::Unsupported(format!(
            "Operation not supported: cannot {operation} volume '{name}' of {}: {why}; '{}' has no device node",
            g.object,
            g.lv_path(name)
        ));
    }
    Error::NoSupport(format!(
        "this function is not supported by the connection driver: {operation} of an active logical volume (storage backend 'logical')"
    ))
}

/// The refusal of `virStorageVolCreateXMLFrom` (`vol-clone`): copying data needs the new
/// logical volume active.
pub fn cannot_copy_into(pool: &StoragePool, vol: &StorageVolume) -> Error {
    let object = match Group::of(pool) {
        Ok(g) => g.object,
        Err(e) => return e,
    };
    if lvm::device_mapper_available() {
        return Error::NoSupport(
            "this function is not supported by the connection driver: virStorageVolCreateXMLFrom (storage backend 'logical' does not copy volumes)"
                .to_string(),
        );
    }
    Error::Unsupported(format!(
        "Operation not supported: cannot copy data into new volume '{}' of {object}: logical volumes cannot be activated, this kernel has no device-mapper (no 'device-mapper' in /proc/misc)",
        vol.name()
    ))
}

/// Volume groups found on the devices of `spec` (a `<source>` document; all devices lvm2
/// sees when it names none), as libvirt's `<sources>` document.
pub fn find_pool_sources(spec: Option<&str>) -> Result<String> {
    let mut devices = Vec::new();
    if let Some(xml) = spec.filter(|s| !s.trim().is_empty()) {
        let e = rvirt_xml::Element::parse(xml).map_err(|source| Error::Xml {
            what: "source",
            source,
        })?;
        for d in e.children_named("device").filter_map(|d| d.attr("path")) {
            if !d.starts_with('/') || d.contains(',') {
                return Err(Error::InvalidArg {
                    object: "source".into(),
                    field: "source/device/@path",
                    reason: format!("'{d}' is not an absolute device path"),
                });
            }
            devices.push(d.to_string());
        }
    }
    let lvm = Lvm {
        devices,
        activation: lvm::device_mapper_available(),
    };
    let pvs = lvm.pvs().map_err(|source| Error::Command {
        object: "source discovery".into(),
        action: "list physical volumes".into(),
        source: Box::new(source),
    })?;
    Ok(sources_xml(&pvs))
}

/// libvirt's `<sources>` for logical pools: one `<source>` per volume group with its
/// devices, its name and format `lvm2`.
pub fn sources_xml(pvs: &[lvm::PvRow]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for p in pvs.iter().filter(|p| !p.vg_name.is_empty()) {
        match groups.iter_mut().find(|(v, _)| *v == p.vg_name) {
            Some((_, d)) => d.push(&p.pv_name),
            None => groups.push((&p.vg_name, vec![&p.pv_name])),
        }
    }
    let mut x = String::from("<sources>\n");
    for (vg, devs) in groups {
        x.push_str("  <source>\n");
        for d in devs {
            x.push_str(&format!("    <device path='{}'/>\n", esc(d)));
        }
        x.push_str(&format!(
            "    <name>{}</name>\n    <format type='lvm2'/>\n  </source>\n",
            esc(vg)
        ));
    }
    x.push_str("</sources>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(xml: &str) -> StoragePool {
        parse_pool(xml).expect("pool")
    }

    #[test]
    fn corpus_shapes_are_read() {
        let p = pool(
            "<pool type='logical'><name>HostVG</name><source><name>HostVG</name><format type='lvm2'/></source><target><path>/dev/HostVG</path></target></pool>",
        );
        let g = Group::of(&p).unwrap();
        assert_eq!(
            (g.vg.as_str(), g.target.as_str()),
            ("HostVG", "/dev/HostVG")
        );
        assert!(g.devices.is_empty());
        // no name: taken from the source; no target: /dev/VG
        let p = pool(
            "<pool type='logical'><source><name>zily</name><device path='/dev/sdb1'/><device path='/dev/sdb2'/></source></pool>",
        );
        let g = Group::of(&p).unwrap();
        assert_eq!(g.vg, "zily");
        assert_eq!(g.target, "/dev/zily");
        assert_eq!(g.devices, ["/dev/sdb1", "/dev/sdb2"]);
        assert_eq!(g.lv_path("a"), "/dev/zily/a");
        let bad =
            pool("<pool type='logical'><name>x</name><source><name>-rf</name></source></pool>");
        assert_eq!(Group::of(&bad).unwrap_err().code(), code::INVALID_ARG);
        let bad =
            pool("<pool type='logical'><name>x</name><source><device path='sdb'/></source></pool>");
        assert!(
            Group::of(&bad)
                .unwrap_err()
                .to_string()
                .contains("pool/source/device/@path")
        );
    }

    #[test]
    fn names_and_flags() {
        assert!(valid_lvm_name("lv_1.a+b-c"));
        for n in ["", "-x", ".", "..", "a/b", "a b", "a,b"] {
            assert!(!valid_lvm_name(n), "{n}");
        }
        let p = pool(
            "<pool type='logical'><name>v</name><source><device path='/dev/nonexistent-x'/></source></pool>",
        );
        let e = build_pool(&p, 1).unwrap_err();
        assert_eq!(e.code(), code::INVALID_ARG);
        assert!(e.to_string().contains("virStoragePoolBuild"), "{e}");
        assert!(
            build_pool(&p, 12)
                .unwrap_err()
                .to_string()
                .contains("mutually exclusive")
        );
        assert_eq!(delete_pool(&p, 1).unwrap_err().code(), code::INVALID_ARG);
    }

    #[test]
    fn volume_documents_are_libvirts() {
        let g = Group::of(&pool(
            "<pool type='logical'><name>v</name><source><device path='/dev/loop0'/></source></pool>",
        ))
        .unwrap();
        let row = LvRow {
            lv_name: "snap".into(),
            vg_name: "v".into(),
            lv_uuid: "h5hb-x".into(),
            lv_size: 16 << 20,
            lv_attr: "swi-XXs---".into(),
            lv_path: "/dev/v/snap".into(),
            origin: "lv1".into(),
            segtype: "snapshot".into(),
            devices: "/dev/loop0(5)".into(),
        };
        let x = volume_xml(&g, &row);
        assert_eq!(
            x,
            "<volume type='block'><name>snap</name><key>h5hb-x</key>\
             <capacity unit='bytes'>16777216</capacity><allocation unit='bytes'>16777216</allocation>\
             <target><path>/dev/v/snap</path></target>\
             <backingStore><path>/dev/v/lv1</path></backingStore></volume>"
        );
        let p = pool("<pool type='logical'><name>v</name></pool>");
        rvirt_xml::StorageVolume::parse(&x, Some(&p)).expect("parses");
        assert_eq!(origin_of(&g, "/dev/v/lv1").unwrap(), "lv1");
        assert!(origin_of(&g, "/dev/w/lv1").is_err());
    }

    #[test]
    fn sources_group_devices_by_volume_group() {
        let pv = |d: &str, v: &str| lvm::PvRow {
            pv_name: d.into(),
            vg_name: v.into(),
            pv_uuid: String::new(),
        };
        let x = sources_xml(&[
            pv("/dev/a", "v1"),
            pv("/dev/b", ""),
            pv("/dev/c", "v1"),
            pv("/dev/d", "v2"),
        ]);
        assert_eq!(
            x,
            "<sources>\n  <source>\n    <device path='/dev/a'/>\n    <device path='/dev/c'/>\n    <name>v1</name>\n    <format type='lvm2'/>\n  </source>\n  <source>\n    <device path='/dev/d'/>\n    <name>v2</name>\n    <format type='lvm2'/>\n  </source>\n</sources>\n"
        );
    }
}

//! The QEMU/KVM driver plugin.
//!
//! Serves `qemu:///system` (root paths under `/etc`, `/var/lib`, `/run`, `/var/log`),
//! `qemu:///session` (XDG directories) and `qemu:///embed?root=DIR` (everything under
//! `DIR`). A domain definition becomes a modern QEMU command line (`command`); QEMU runs
//! in its own session, supervised by threads of the plugin that talk QMP (`rvirt-qmp`);
//! a versioned status file per running domain lets a later process reattach (`driver`).
//! `<capabilities>` come from the host and from what each emulator reports (`caps`).

pub mod caps;
pub mod command;
pub mod driver;
pub mod paths;
pub use rvirt_netdev::tap;

use driver::{Driver, snapshot as snap};
use rvirt_sdk::{
    PluginInfo,
    abi::{
        DomainInfo, DomainRef, DriverConnection, ErrorCode, ErrorDomain, EventSinkBox,
        HostServicesBox, JobStats, MigrateFinish, MigrateStep, NodeInfo, PResult, PluginError,
        Screenshot, StateReason, TypedParam, TypedValue, Uuid,
        abi_stable::std_types::{RResult, RStr, RString, RVec},
        state,
    },
    util::{check_flags, from_abi_uuid, operation_invalid, read_only_denied},
};

/// The plugin's name (its manifest's): what rvirtd calls the driver.
pub(crate) const DRIVER_NAME: &str = "qemu";

rvirt_sdk::export_plugin! {
    manifest: PluginInfo {
        name: DRIVER_NAME,
        kind: "hypervisor",
        schemes: &["qemu"],
        // a test build may report another version (the live upgrade test of rvirtd)
        version: match option_env!("RVIRT_QEMU_PLUGIN_VERSION") {
            Some(v) => v,
            None => env!("CARGO_PKG_VERSION"),
        },
        description: "QEMU/KVM driver: qemu:///system, qemu:///session, qemu:///embed?root=DIR",
    },
    open_with_host: open,
}

/// Opens a `qemu://` connection. With the host's services (a host of plugin API 1.4 or
/// later), the directories come from the URI as the host parsed it and the host's system
/// root, and `<disk type='volume'>` resolves through the host's storage pools; without
/// them (an older host), from the URI text and the `RVIRT_SYSTEM_ROOT` side channel, and
/// volume disks cannot start.
pub fn open(
    uri: &str,
    read_only: bool,
    events: EventSinkBox,
    host: Option<HostServicesBox>,
) -> Result<QemuConnection, PluginError> {
    let open_failed = |e: paths::PathsError| {
        PluginError::new(ErrorCode::OpenFailed, ErrorDomain::Qemu, e.to_string())
    };
    let paths = match &host {
        Some(h) => match h.connection_uri() {
            RResult::ROk(u) => {
                let root = u
                    .params
                    .iter()
                    .find(|p| p.name.as_str() == "root")
                    .map(|p| p.value.to_string());
                paths::Paths::from_host(
                    u.original.as_str(),
                    u.driver.as_str(),
                    u.path.as_str(),
                    root,
                    std::path::Path::new(h.system_root().as_str()),
                )
            }
            RResult::RErr(_) => paths::Paths::from_uri(uri),
        },
        None => paths::Paths::from_uri(uri),
    }
    .map_err(open_failed)?;
    let driver = driver::driver_for(&paths, host).map_err(PluginError::from)?;
    let sink = driver.add_sink(events);
    Ok(QemuConnection {
        driver,
        read_only,
        sink,
    })
}

/// One connection to the QEMU driver of a root.
pub struct QemuConnection {
    driver: &'static Driver,
    read_only: bool,
    sink: u64,
}

impl Drop for QemuConnection {
    fn drop(&mut self) {
        self.driver.remove_sink(self.sink);
    }
}

fn res<T>(r: Result<T, driver::DriverError>) -> PResult<T> {
    r.map_err(PluginError::from).into()
}

impl QemuConnection {
    fn write<T>(
        &self,
        op: &str,
        f: impl FnOnce(&'static Driver) -> Result<T, driver::DriverError>,
    ) -> PResult<T> {
        if self.read_only {
            return RResult::RErr(read_only_denied(op));
        }
        res(f(self.driver))
    }
}

fn node_info() -> NodeInfo {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mhz = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u32;
    NodeInfo {
        model: std::env::consts::ARCH.into(),
        memory_kib: mem,
        cpus,
        mhz,
        nodes: 1,
        sockets: 1,
        cores: cpus,
        threads: 1,
    }
}

/// libvirt's flag values of the calls that take flags, and the ones this driver honours.
pub mod flags {
    /// `VIR_DOMAIN_DEFINE_VALIDATE`: definitions are always validated.
    pub const DEFINE_VALIDATE: u32 = 1;
    /// `VIR_DOMAIN_UNDEFINE_MANAGED_SAVE`: the managed save image goes with the domain.
    pub const UNDEFINE_MANAGED_SAVE: u32 = 1;
    /// `VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA`: a shut-off domain's snapshot metadata
    /// goes too (without it, a domain with snapshots is not undefined).
    pub const UNDEFINE_SNAPSHOTS_METADATA: u32 = 2;
    /// `VIR_DOMAIN_UNDEFINE_NVRAM`: the NVRAM file goes too.
    pub const UNDEFINE_NVRAM: u32 = 4;
    /// `VIR_DOMAIN_UNDEFINE_KEEP_NVRAM`: the NVRAM file stays (the default here).
    pub const UNDEFINE_KEEP_NVRAM: u32 = 8;
    /// `VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA`: the driver keeps no checkpoints.
    pub const UNDEFINE_CHECKPOINTS_METADATA: u32 = 16;
    /// `VIR_DOMAIN_UNDEFINE_TPM`: the driver runs no TPM emulator, so keeps no TPM state.
    pub const UNDEFINE_TPM: u32 = 32;
    /// `VIR_DOMAIN_UNDEFINE_KEEP_TPM`.
    pub const UNDEFINE_KEEP_TPM: u32 = 64;
    /// `VIR_DOMAIN_START_PAUSED`.
    pub const START_PAUSED: u32 = 1;
    /// `VIR_DOMAIN_START_BYPASS_CACHE`: only about restoring a managed save (none here).
    pub const START_BYPASS_CACHE: u32 = 4;
    /// `VIR_DOMAIN_START_FORCE_BOOT`: discard a managed save (none here); boots anyway.
    pub const START_FORCE_BOOT: u32 = 8;
    /// `VIR_DOMAIN_START_VALIDATE`: definitions are always validated.
    pub const START_VALIDATE: u32 = 16;
    /// `VIR_DOMAIN_XML_SECURE`.
    pub const XML_SECURE: u32 = 1;
    /// `VIR_DOMAIN_XML_INACTIVE`.
    pub const XML_INACTIVE: u32 = 2;
    /// `VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN` (and `VIR_DOMAIN_REBOOT_ACPI_POWER_BTN`).
    pub const POWER_ACPI_POWER_BTN: u32 = 1;
    /// `VIR_DOMAIN_VCPU_LIVE`.
    pub const VCPU_LIVE: u32 = 1;
    /// `VIR_DOMAIN_VCPU_CONFIG`.
    pub const VCPU_CONFIG: u32 = 2;
    /// `VIR_DOMAIN_VCPU_MAXIMUM`.
    pub const VCPU_MAXIMUM: u32 = 4;
    /// `VIR_CONNECT_LIST_DOMAINS_ACTIVE` .. `VIR_CONNECT_LIST_DOMAINS_NO_SNAPSHOT`.
    pub const LIST_FILTERS: u32 = 0x3fff;
    /// `VIR_CONNECT_LIST_DOMAINS_HAS_CHECKPOINT`: no domain has one here.
    pub const LIST_HAS_CHECKPOINT: u32 = 0x4000;
    /// `VIR_CONNECT_LIST_DOMAINS_NO_CHECKPOINT`.
    pub const LIST_NO_CHECKPOINT: u32 = 0x8000;
}

fn check(op: &str, flags: u32, allowed: u32) -> Result<(), PluginError> {
    check_flags(ErrorDomain::Qemu, op, flags, allowed)
}

/// [`check`] for the closures of [`QemuConnection::write`].
fn check_w(op: &str, flags: u32, allowed: u32) -> Result<(), driver::DriverError> {
    check(op, flags, allowed).map_err(driver::DriverError::Plugin)
}

fn capabilities() -> String {
    caps::capabilities().to_xml()
}

impl DriverConnection for QemuConnection {
    fn get_type(&self) -> PResult<RString> {
        RResult::ROk("QEMU".into())
    }

    fn get_version(&self) -> PResult<u64> {
        RResult::ROk(caps::qemu_version())
    }

    fn get_uri(&self) -> PResult<RString> {
        RResult::ROk(self.driver.paths.uri.as_str().into())
    }

    fn get_hostname(&self) -> PResult<RString> {
        RResult::ROk(
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
                .into(),
        )
    }

    fn get_capabilities(&self) -> PResult<RString> {
        RResult::ROk(capabilities().into())
    }

    fn node_get_info(&self) -> PResult<NodeInfo> {
        RResult::ROk(node_info())
    }

    fn list_all_domains(&self, flags: u32) -> PResult<RVec<DomainRef>> {
        use flags::{LIST_FILTERS, LIST_HAS_CHECKPOINT, LIST_NO_CHECKPOINT};
        let all = LIST_FILTERS | LIST_HAS_CHECKPOINT | LIST_NO_CHECKPOINT;
        if let Err(e) = check("virConnectListAllDomains", flags, all) {
            return RResult::RErr(e);
        }
        // No domain has a checkpoint: asking only for those with one lists none.
        if flags & (LIST_HAS_CHECKPOINT | LIST_NO_CHECKPOINT) == LIST_HAS_CHECKPOINT {
            return RResult::ROk(RVec::new());
        }
        RResult::ROk(self.driver.list(flags & LIST_FILTERS).into_iter().collect())
    }

    fn lookup_by_name(&self, name: RStr<'_>) -> PResult<DomainRef> {
        self.driver.by_name(name.as_str()).into()
    }

    fn lookup_by_uuid(&self, uuid: Uuid) -> PResult<DomainRef> {
        self.driver.by_uuid(from_abi_uuid(uuid)).into()
    }

    fn lookup_by_id(&self, id: i32) -> PResult<DomainRef> {
        self.driver.by_id(id).into()
    }

    fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        self.write("virDomainDefineXML", |d| {
            check_w("virDomainDefineXMLFlags", flags, flags::DEFINE_VALIDATE)?;
            d.define(xml.as_str())
        })
    }

    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        use flags::*;
        self.write("virDomainUndefine", |d| {
            check_w(
                "virDomainUndefineFlags",
                flags,
                UNDEFINE_MANAGED_SAVE
                    | UNDEFINE_SNAPSHOTS_METADATA
                    | UNDEFINE_NVRAM
                    | UNDEFINE_KEEP_NVRAM
                    | UNDEFINE_CHECKPOINTS_METADATA
                    | UNDEFINE_TPM
                    | UNDEFINE_KEEP_TPM,
            )?;
            if flags & UNDEFINE_NVRAM != 0 && flags & UNDEFINE_KEEP_NVRAM != 0 {
                return Err(driver::DriverError::Plugin(operation_invalid(
                    ErrorDomain::Qemu,
                    "cannot both keep and delete nvram",
                )));
            }
            if flags & UNDEFINE_TPM != 0 && flags & UNDEFINE_KEEP_TPM != 0 {
                return Err(driver::DriverError::Plugin(operation_invalid(
                    ErrorDomain::Qemu,
                    "cannot both keep and delete the TPM state",
                )));
            }
            d.undefine(
                from_abi_uuid(uuid),
                flags & (UNDEFINE_NVRAM | UNDEFINE_SNAPSHOTS_METADATA | UNDEFINE_MANAGED_SAVE),
            )
        })
    }

    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef> {
        use flags::{START_BYPASS_CACHE, START_FORCE_BOOT, START_PAUSED};
        self.write("virDomainCreate", |d| {
            check_w(
                "virDomainCreateWithFlags",
                flags,
                START_PAUSED | START_BYPASS_CACHE | START_FORCE_BOOT,
            )?;
            d.start(
                from_abi_uuid(uuid),
                flags & (START_PAUSED | START_FORCE_BOOT),
            )
        })
    }

    fn create_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        use flags::{START_PAUSED, START_VALIDATE};
        self.write("virDomainCreateXML", |d| {
            check_w("virDomainCreateXML", flags, START_PAUSED | START_VALIDATE)?;
            d.create_transient(xml.as_str(), flags & START_PAUSED)
        })
    }

    fn destroy(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        self.write("virDomainDestroy", |d| {
            check_w("virDomainDestroyFlags", flags, 0)?;
            d.destroy(from_abi_uuid(uuid))
        })
    }

    fn shutdown(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        self.write("virDomainShutdown", |d| {
            check_w("virDomainShutdownFlags", flags, flags::POWER_ACPI_POWER_BTN)?;
            d.shutdown(from_abi_uuid(uuid))
        })
    }

    fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        self.write("virDomainReboot", |d| {
            check_w("virDomainReboot", flags, flags::POWER_ACPI_POWER_BTN)?;
            d.reboot(from_abi_uuid(uuid))
        })
    }

    fn suspend(&self, uuid: Uuid) -> PResult<()> {
        self.write("virDomainSuspend", |d| d.suspend(from_abi_uuid(uuid)))
    }

    fn resume(&self, uuid: Uuid) -> PResult<()> {
        self.write("virDomainResume", |d| d.resume(from_abi_uuid(uuid)))
    }

    fn get_info(&self, uuid: Uuid) -> PResult<DomainInfo> {
        self.driver.info(from_abi_uuid(uuid)).into()
    }

    fn get_state(&self, uuid: Uuid) -> PResult<StateReason> {
        self.driver
            .state(from_abi_uuid(uuid))
            .map(|(state, reason)| StateReason { state, reason })
            .into()
    }

    fn get_xml_desc(&self, uuid: Uuid, flags: u32) -> PResult<RString> {
        if let Err(e) = check(
            "virDomainGetXMLDesc",
            flags,
            flags::XML_SECURE | flags::XML_INACTIVE,
        ) {
            return RResult::RErr(e);
        }
        self.driver
            .xml(from_abi_uuid(uuid), flags)
            .map(RString::from)
            .into()
    }

    fn is_persistent(&self, uuid: Uuid) -> PResult<bool> {
        self.driver.is_persistent(from_abi_uuid(uuid)).into()
    }

    fn get_autostart(&self, uuid: Uuid) -> PResult<bool> {
        self.driver.get_autostart(from_abi_uuid(uuid)).into()
    }

    fn set_autostart(&self, uuid: Uuid, autostart: bool) -> PResult<()> {
        self.write("virDomainSetAutostart", |d| {
            d.set_autostart(from_abi_uuid(uuid), autostart)
        })
    }

    fn get_vcpus_flags(&self, uuid: Uuid, flags: u32) -> PResult<i32> {
        use flags::{VCPU_CONFIG, VCPU_LIVE, VCPU_MAXIMUM};
        let uuid = from_abi_uuid(uuid);
        let checked = (|| {
            check(
                "virDomainGetVcpusFlags",
                flags,
                VCPU_LIVE | VCPU_CONFIG | VCPU_MAXIMUM,
            )?;
            if flags & VCPU_LIVE != 0 && flags & VCPU_CONFIG != 0 {
                return Err(PluginError::new(
                    ErrorCode::InvalidArg,
                    ErrorDomain::Qemu,
                    "invalid argument: flags 'VIR_DOMAIN_AFFECT_LIVE' and 'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive",
                ));
            }
            if flags & VCPU_LIVE != 0 && self.driver.state(uuid)?.0 == state::SHUTOFF {
                return Err(operation_invalid(
                    ErrorDomain::Qemu,
                    "domain is not running",
                ));
            }
            if flags & VCPU_CONFIG != 0 && !self.driver.is_persistent(uuid)? {
                return Err(operation_invalid(
                    ErrorDomain::Qemu,
                    "transient domains do not have any persistent config",
                ));
            }
            Ok(())
        })();
        if let Err(e) = checked {
            return RResult::RErr(e);
        }
        self.driver
            .vcpus(uuid, flags & (VCPU_CONFIG | VCPU_MAXIMUM))
            .into()
    }

    fn get_os_type(&self, uuid: Uuid) -> PResult<RString> {
        self.driver
            .os_type(from_abi_uuid(uuid))
            .map(RString::from)
            .into()
    }

    fn has_managed_save_image(&self, uuid: Uuid, flags: u32) -> PResult<bool> {
        if let Err(e) = check("virDomainHasManagedSaveImage", flags, 0) {
            return RResult::RErr(e);
        }
        self.driver.has_managed_save(from_abi_uuid(uuid)).into()
    }

    fn domain_xml_to_native(
        &self,
        format: RStr<'_>,
        xml: RStr<'_>,
        flags: u32,
    ) -> PResult<RString> {
        if let Err(e) = check("virConnectDomainXMLToNative", flags, 0) {
            return RResult::RErr(e);
        }
        if format.as_str() != "qemu-argv" {
            return RResult::RErr(PluginError::new(
                ErrorCode::InvalidArg,
                ErrorDomain::Qemu,
                format!("unsupported config type {}", format.as_str()),
            ));
        }
        res(self.driver.to_native(xml.as_str()).map(RString::from))
    }

    fn set_memory_flags(&self, uuid: Uuid, kib: u64, flags: u32) -> PResult<()> {
        self.write("virDomainSetMemoryFlags", |d| {
            // VIR_DOMAIN_AFFECT_LIVE | _CONFIG | VIR_DOMAIN_MEM_MAXIMUM
            check_w("virDomainSetMemoryFlags", flags, 1 | 2 | 4)?;
            d.set_memory(from_abi_uuid(uuid), kib, flags)
        })
    }

    fn attach_device_flags(&self, uuid: Uuid, xml: RStr<'_>, flags: u32) -> PResult<()> {
        self.write("virDomainAttachDeviceFlags", |d| {
            // VIR_DOMAIN_AFFECT_LIVE | _CONFIG
            check_w("virDomainAttachDeviceFlags", flags, 1 | 2)?;
            d.attach_device(from_abi_uuid(uuid), xml.as_str(), flags)
        })
    }

    fn detach_device_flags(&self, uuid: Uuid, xml: RStr<'_>, flags: u32) -> PResult<()> {
        self.write("virDomainDetachDeviceFlags", |d| {
            check_w("virDomainDetachDeviceFlags", flags, 1 | 2)?;
            d.detach_device(from_abi_uuid(uuid), xml.as_str(), flags)
        })
    }

    fn set_vcpus_flags(&self, uuid: Uuid, nvcpus: u32, flags: u32) -> PResult<()> {
        self.write("virDomainSetVcpusFlags", |d| {
            // VIR_DOMAIN_AFFECT_LIVE | _CONFIG | VIR_DOMAIN_VCPU_MAXIMUM
            check_w("virDomainSetVcpusFlags", flags, 1 | 2 | 4)?;
            d.set_vcpus(from_abi_uuid(uuid), nvcpus, flags)
        })
    }

    // ---- snapshots (driver::snapshot) ----

    fn snapshot_create_xml(&self, uuid: Uuid, xml: RStr<'_>, flags: u32) -> PResult<RString> {
        self.write("virDomainSnapshotCreateXML", |d| {
            check_w("virDomainSnapshotCreateXML", flags, snap::create::ALLOWED)?;
            d.snapshot_create(from_abi_uuid(uuid), xml.as_str(), flags)
                .map(RString::from)
        })
    }

    fn snapshot_list(&self, uuid: Uuid, flags: u32) -> PResult<RVec<RString>> {
        let names = check("virDomainListAllSnapshots", flags, snap::list::ALL).and_then(|()| {
            self.driver
                .with_snapshots(from_abi_uuid(uuid), |s| Ok(s.names(flags)))
        });
        names
            .map(|n| n.into_iter().map(RString::from).collect())
            .into()
    }

    fn snapshot_list_children(
        &self,
        uuid: Uuid,
        name: RStr<'_>,
        flags: u32,
    ) -> PResult<RVec<RString>> {
        let op = "virDomainSnapshotListAllChildren";
        let names = check(op, flags, snap::list::ALL).and_then(|()| {
            self.driver
                .with_snapshots(from_abi_uuid(uuid), |s| s.children(name.as_str(), flags))
        });
        names
            .map(|n| n.into_iter().map(RString::from).collect())
            .into()
    }

    fn snapshot_get_xml_desc(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<RString> {
        check("virDomainSnapshotGetXMLDesc", flags, snap::XML_SECURE)
            .and_then(|()| {
                self.driver.with_snapshots(from_abi_uuid(uuid), |s| {
                    s.xml(name.as_str(), flags & snap::XML_SECURE != 0)
                })
            })
            .map(RString::from)
            .into()
    }

    fn snapshot_current(&self, uuid: Uuid, flags: u32) -> PResult<RString> {
        check("virDomainSnapshotCurrent", flags, 0)
            .and_then(|()| {
                self.driver
                    .with_snapshots(from_abi_uuid(uuid), |s| s.current())
            })
            .map(RString::from)
            .into()
    }

    fn snapshot_get_parent(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<RString> {
        check("virDomainSnapshotGetParent", flags, 0)
            .and_then(|()| {
                self.driver
                    .with_snapshots(from_abi_uuid(uuid), |s| s.parent(name.as_str()))
            })
            .map(RString::from)
            .into()
    }

    fn snapshot_revert(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<()> {
        self.write("virDomainRevertToSnapshot", |d| {
            check_w("virDomainRevertToSnapshot", flags, snap::revert::ALLOWED)?;
            d.snapshot_revert(from_abi_uuid(uuid), name.as_str(), flags)
        })
    }

    fn snapshot_delete(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<()> {
        self.write("virDomainSnapshotDelete", |d| {
            check_w("virDomainSnapshotDelete", flags, snap::delete::ALLOWED)?;
            d.snapshot_delete(from_abi_uuid(uuid), name.as_str(), flags)
        })
    }

    fn save_flags(&self, uuid: Uuid, path: RStr<'_>, dxml: RStr<'_>, flags: u32) -> PResult<()> {
        self.write("virDomainSaveFlags", |d| {
            // VIR_DOMAIN_SAVE_BYPASS_CACHE (the page cache is not bypassed) | _RUNNING | _PAUSED
            check_w("virDomainSaveFlags", flags, 1 | 2 | 4)?;
            let dxml = Some(dxml.as_str()).filter(|x| !x.is_empty());
            d.save(
                from_abi_uuid(uuid),
                std::path::Path::new(path.as_str()),
                dxml,
                flags,
            )
        })
    }

    fn restore_flags(&self, path: RStr<'_>, dxml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        self.write("virDomainRestoreFlags", |d| {
            check_w("virDomainRestoreFlags", flags, 1 | 2 | 4)?;
            let dxml = Some(dxml.as_str()).filter(|x| !x.is_empty());
            d.restore(std::path::Path::new(path.as_str()), dxml, flags)
        })
    }

    fn save_image_get_xml_desc(&self, path: RStr<'_>, flags: u32) -> PResult<RString> {
        // VIR_DOMAIN_SAVE_IMAGE_XML_SECURE: the image holds the secure XML
        if let Err(e) = check("virDomainSaveImageGetXMLDesc", flags, 1) {
            return RResult::RErr(e);
        }
        res(self
            .driver
            .save_image_xml(std::path::Path::new(path.as_str()))
            .map(RString::from))
    }

    fn save_image_define_xml(&self, path: RStr<'_>, dxml: RStr<'_>, flags: u32) -> PResult<()> {
        self.write("virDomainSaveImageDefineXML", |d| {
            check_w("virDomainSaveImageDefineXML", flags, 2 | 4)?;
            d.save_image_define(std::path::Path::new(path.as_str()), dxml.as_str(), flags)
        })
    }

    fn managed_save(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        self.write("virDomainManagedSave", |d| {
            check_w("virDomainManagedSave", flags, 1 | 2 | 4)?;
            d.managed_save(from_abi_uuid(uuid), flags)
        })
    }

    fn managed_save_remove(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        self.write("virDomainManagedSaveRemove", |d| {
            check_w("virDomainManagedSaveRemove", flags, 0)?;
            d.managed_save_remove(from_abi_uuid(uuid))
        })
    }

    fn domain_stats(&self, uuid: Uuid, stats: u32, flags: u32) -> PResult<RVec<TypedParam>> {
        // VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT | _BACKING | _ENFORCE_STATS
        if let Err(e) = check(
            "virConnectGetAllDomainStats",
            flags,
            (1 << 29) | (1 << 30) | (1 << 31),
        ) {
            return RResult::RErr(e);
        }
        res(self
            .driver
            .domain_stats(from_abi_uuid(uuid), stats)
            .map(|v| v.into_iter().collect()))
    }

    fn block_stats_flags(
        &self,
        uuid: Uuid,
        disk: RStr<'_>,
        flags: u32,
    ) -> PResult<RVec<TypedParam>> {
        // VIR_TYPED_PARAM_STRING_OKAY
        if let Err(e) = check("virDomainBlockStatsFlags", flags, 4) {
            return RResult::RErr(e);
        }
        res(self
            .driver
            .block_stats(from_abi_uuid(uuid), disk.as_str())
            .map(|v| v.into_iter().collect()))
    }

    fn interface_stats(&self, uuid: Uuid, device: RStr<'_>) -> PResult<RVec<TypedParam>> {
        res(self
            .driver
            .interface_stats(from_abi_uuid(uuid), device.as_str())
            .map(|v| v.into_iter().collect()))
    }

    fn memory_stats(&self, uuid: Uuid, flags: u32) -> PResult<RVec<TypedParam>> {
        if let Err(e) = check("virDomainMemoryStats", flags, 0) {
            return RResult::RErr(e);
        }
        res(self
            .driver
            .memory_stats(from_abi_uuid(uuid))
            .map(|v| v.into_iter().collect()))
    }

    fn migrate_begin(
        &self,
        uuid: Uuid,
        params: RVec<TypedParam>,
        flags: u32,
    ) -> PResult<MigrateStep> {
        self.write("virDomainMigrateBegin3Params", |d| {
            check_w(
                "virDomainMigrateBegin3Params",
                flags,
                driver::migrate::ALLOWED_FLAGS,
            )?;
            d.migrate_begin(from_abi_uuid(uuid), &params)
                .map(|xml| MigrateStep {
                    cookie: RVec::new(),
                    text: xml.into(),
                })
        })
    }

    fn migrate_prepare(
        &self,
        params: RVec<TypedParam>,
        _cookie: RVec<u8>,
        flags: u32,
    ) -> PResult<MigrateStep> {
        self.write("virDomainMigratePrepare3Params", |d| {
            check_w(
                "virDomainMigratePrepare3Params",
                flags,
                driver::migrate::ALLOWED_FLAGS,
            )?;
            d.migrate_prepare(&params, flags)
                .map(|(uri, cookie)| MigrateStep {
                    cookie: cookie.into(),
                    text: uri.into(),
                })
        })
    }

    fn migrate_perform(
        &self,
        uuid: Uuid,
        params: RVec<TypedParam>,
        cookie: RVec<u8>,
        flags: u32,
    ) -> PResult<MigrateStep> {
        self.write("virDomainMigratePerform3Params", |d| {
            check_w(
                "virDomainMigratePerform3Params",
                flags,
                driver::migrate::ALLOWED_FLAGS,
            )?;
            d.migrate_perform(from_abi_uuid(uuid), &params, &cookie, flags)
                .map(|cookie| MigrateStep {
                    cookie: cookie.into(),
                    text: RString::new(),
                })
        })
    }

    fn migrate_finish(
        &self,
        params: RVec<TypedParam>,
        cookie: RVec<u8>,
        flags: u32,
        cancelled: bool,
    ) -> PResult<MigrateFinish> {
        self.write("virDomainMigrateFinish3Params", |d| {
            check_w(
                "virDomainMigrateFinish3Params",
                flags,
                driver::migrate::ALLOWED_FLAGS,
            )?;
            d.migrate_finish(&params, &cookie, flags, cancelled)
                .map(|domain| MigrateFinish {
                    domain,
                    cookie: RVec::new(),
                })
        })
    }

    fn migrate_confirm(
        &self,
        uuid: Uuid,
        _params: RVec<TypedParam>,
        _cookie: RVec<u8>,
        flags: u32,
        cancelled: bool,
    ) -> PResult<()> {
        self.write("virDomainMigrateConfirm3Params", |d| {
            check_w(
                "virDomainMigrateConfirm3Params",
                flags,
                driver::migrate::ALLOWED_FLAGS,
            )?;
            d.migrate_confirm(from_abi_uuid(uuid), flags, cancelled)
        })
    }

    fn screenshot(&self, uuid: Uuid, screen: u32, flags: u32) -> PResult<Screenshot> {
        self.write("virDomainScreenshot", |d| {
            check_w("virDomainScreenshot", flags, 0)?;
            d.screenshot(from_abi_uuid(uuid), screen)
                .map(|(mime, data)| Screenshot {
                    mime: mime.into(),
                    data: data.into(),
                })
        })
    }

    fn abort_job(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        self.write("virDomainAbortJob", |d| {
            check_w("virDomainAbortJob", flags, 0)?;
            d.abort_job(from_abi_uuid(uuid))
        })
    }

    fn get_job_stats(&self, uuid: Uuid, flags: u32) -> PResult<JobStats> {
        // VIR_DOMAIN_JOB_STATS_COMPLETED | _KEEP_COMPLETED
        if let Err(e) = check("virDomainGetJobStats", flags, 1 | 2) {
            return RResult::RErr(e);
        }
        self.driver
            .job_stats(from_abi_uuid(uuid), flags & 1 != 0)
            .map(|(kind, params)| JobStats {
                kind,
                params: params
                    .into_iter()
                    .map(|(n, v)| {
                        let value = if n == "operation" {
                            TypedValue::Int(i32::try_from(v).unwrap_or(0))
                        } else {
                            TypedValue::ULLong(v)
                        };
                        TypedParam::new(n, value)
                    })
                    .collect(),
            })
            .into()
    }

    fn get_cpu_stats(
        &self,
        uuid: Uuid,
        start_cpu: i32,
        ncpus: u32,
        flags: u32,
    ) -> PResult<RVec<RVec<TypedParam>>> {
        // VIR_TYPED_PARAM_STRING_OKAY: virsh sets it; the answer has no strings
        if let Err(e) = check("virDomainGetCPUStats", flags, 4) {
            return RResult::RErr(e);
        }
        res(self
            .driver
            .cpu_stats(from_abi_uuid(uuid), start_cpu, ncpus)
            .map(|v| v.into_iter().map(|s| s.into_iter().collect()).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use command::CommandError;
    use driver::DriverError;

    #[test]
    fn the_users_mistakes_stay_user_errors() {
        let e: PluginError =
            DriverError::Command(CommandError::Invalid("disk 'vda' has no source".into())).into();
        assert_eq!((e.code, e.domain), (ErrorCode::XmlError as i32, 10));
        let e: PluginError =
            DriverError::Command(CommandError::Unsupported("graphics type 'sdl'".into())).into();
        assert_eq!(e.code, ErrorCode::ConfigUnsupported as i32);
    }

    #[test]
    fn the_drivers_own_inconsistencies_are_internal_errors() {
        let e: PluginError = DriverError::Command(CommandError::Internal(
            "PCI address 0000:00:03.0 was assigned to both <rng> and <memballoon>".into(),
        ))
        .into();
        assert_eq!((e.code, e.domain), (ErrorCode::InternalError as i32, 10));
        assert_eq!(
            e.message.as_str(),
            "internal error of the qemu driver: PCI address 0000:00:03.0 was assigned to both <rng> and <memballoon>"
        );
    }

    #[test]
    fn libvirt_flag_values() {
        // virCheckFlags' answer: VIR_ERR_INVALID_ARG naming the function.
        let e = check("virDomainCreateWithFlags", 0x8000_0000, flags::START_PAUSED).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArg as i32);
        assert!(
            e.message
                .contains("(0x80000000) in function virDomainCreateWithFlags"),
            "{}",
            e.message
        );
        assert_eq!(flags::UNDEFINE_KEEP_NVRAM, 1 << 3);
        assert_eq!(flags::START_VALIDATE, 1 << 4);
        assert_eq!(flags::LIST_NO_CHECKPOINT, 1 << 15);
    }
}

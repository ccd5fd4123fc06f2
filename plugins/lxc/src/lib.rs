//! The LXC driver plugin: Linux containers from `<domain type='lxc'>` definitions.
//!
//! Serves `lxc:///system` (configs under `etc/rvirt/lxc`, run-time state under
//! `run/rvirt/lxc` of the host's system root) and `lxc:///embed?root=DIR` (everything
//! under `DIR`). Each running container has a controller process
//! (`rvirt-lxc-controller`, [`controller`]) that owns its namespaces, consoles and
//! cgroup and outlives the driver; [`driver`] keeps the books, talks to controllers and
//! reattaches to them; [`def`] reads definitions; [`cgroup`] handles cgroup v1 and v2.

pub use rvirt_cgroup as cgroup;
pub mod controller;
pub mod def;
pub mod driver;
pub mod paths;

use driver::{Driver, FROM_LXC};
use rvirt_sdk::{
    PluginInfo,
    abi::{
        DomainInfo, DomainRef, DriverConnection, ErrorCode, EventSinkBox, HostServicesBox,
        NodeInfo, PResult, PluginError, StateReason, TypedParam, Uuid,
        abi_stable::std_types::{RResult, RStr, RString, RVec},
    },
    util::{check_flags, from_abi_uuid, read_only_denied},
};

/// The plugin's name (its manifest's): what rvirtd calls the driver.
pub(crate) const DRIVER_NAME: &str = "lxc";

rvirt_sdk::export_plugin! {
    manifest: PluginInfo {
        name: DRIVER_NAME,
        kind: "hypervisor",
        schemes: &["lxc"],
        version: env!("CARGO_PKG_VERSION"),
        description: "LXC container driver: lxc:///system, lxc:///embed?root=DIR",
    },
    open_with_host: open,
}

/// Opens an `lxc://` connection.
pub fn open(
    uri: &str,
    read_only: bool,
    events: EventSinkBox,
    host: Option<HostServicesBox>,
) -> Result<LxcConnection, PluginError> {
    let open_failed = |e: paths::PathsError| PluginError {
        code: ErrorCode::OpenFailed as i32,
        domain: FROM_LXC,
        message: e.to_string().into(),
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
    Ok(LxcConnection::new(driver, read_only, events))
}

/// One connection to the LXC driver of a root.
pub struct LxcConnection {
    driver: &'static Driver,
    read_only: bool,
    sink: u64,
}

impl LxcConnection {
    /// A connection to `driver` (tests use it with [`Driver::load`] to play a restarted
    /// daemon).
    pub fn new(driver: &'static Driver, read_only: bool, events: EventSinkBox) -> Self {
        let sink = driver.add_sink(events);
        LxcConnection {
            driver,
            read_only,
            sink,
        }
    }

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

impl Drop for LxcConnection {
    fn drop(&mut self) {
        self.driver.remove_sink(self.sink);
    }
}

fn res<T>(r: Result<T, driver::DriverError>) -> PResult<T> {
    r.map_err(PluginError::from).into()
}

/// libvirt's flag values of the calls that take flags.
pub mod flags {
    /// `VIR_DOMAIN_DEFINE_VALIDATE`: definitions are always validated.
    pub const DEFINE_VALIDATE: u32 = 1;
    /// `VIR_DOMAIN_START_PAUSED`.
    pub const START_PAUSED: u32 = 1;
    /// `VIR_DOMAIN_START_AUTODESTROY`: not supported (refused as an unknown flag).
    pub const START_AUTODESTROY: u32 = 2;
    /// `VIR_DOMAIN_START_VALIDATE`.
    pub const START_VALIDATE: u32 = 16;
    /// `VIR_DOMAIN_XML_SECURE`.
    pub const XML_SECURE: u32 = 1;
    /// `VIR_DOMAIN_XML_INACTIVE`.
    pub const XML_INACTIVE: u32 = 2;
    /// `VIR_DOMAIN_SHUTDOWN_SIGNAL` (libvirt's LXC shutdown method).
    pub const SHUTDOWN_SIGNAL: u32 = 1 << 4;
    /// `VIR_DOMAIN_REBOOT_SIGNAL`.
    pub const REBOOT_SIGNAL: u32 = 1 << 4;
    /// `VIR_CONNECT_LIST_DOMAINS_*` filters (snapshots and checkpoints: none here).
    pub const LIST_FILTERS: u32 = 0xffff;
}

fn check(op: &str, flags: u32, allowed: u32) -> Result<(), PluginError> {
    check_flags(rvirt_sdk::abi::ErrorDomain::None, op, flags, allowed).map_err(|mut e| {
        e.domain = FROM_LXC;
        e
    })
}

fn check_w(op: &str, flags: u32, allowed: u32) -> Result<(), driver::DriverError> {
    check(op, flags, allowed).map_err(driver::DriverError::Plugin)
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
    NodeInfo {
        model: std::env::consts::ARCH.into(),
        memory_kib: mem,
        cpus,
        mhz: 0,
        nodes: 1,
        sockets: 1,
        cores: cpus,
        threads: 1,
    }
}

/// The kernel's version as libvirt's LXC driver reports it (major * 1000000 + minor *
/// 1000 + micro).
pub fn kernel_version() -> u64 {
    let rel = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut it = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().unwrap_or(0));
    let (a, b, c) = (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    );
    a * 1_000_000 + b * 1000 + c
}

/// `<capabilities>`: the host and one guest, `exe` containers of this architecture.
pub fn capabilities() -> String {
    let arch = std::env::consts::ARCH;
    let emulator = driver::controller_path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/usr/libexec/rvirt/rvirt-lxc-controller".into());
    let bits = if cfg!(target_pointer_width = "64") {
        64
    } else {
        32
    };
    format!(
        "<capabilities>\n  <host>\n    <cpu>\n      <arch>{arch}</arch>\n    </cpu>\n  </host>\n  <guest>\n    <os_type>exe</os_type>\n    <arch name='{arch}'>\n      <wordsize>{bits}</wordsize>\n      <emulator>{emulator}</emulator>\n      <domain type='lxc'/>\n    </arch>\n  </guest>\n</capabilities>\n"
    )
}

impl DriverConnection for LxcConnection {
    fn get_type(&self) -> PResult<RString> {
        RResult::ROk("LXC".into())
    }

    fn get_version(&self) -> PResult<u64> {
        RResult::ROk(kernel_version())
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
        if let Err(e) = check("virConnectListAllDomains", flags, flags::LIST_FILTERS) {
            return RResult::RErr(e);
        }
        RResult::ROk(self.driver.list(flags).into_iter().collect())
    }

    fn lookup_by_name(&self, name: RStr<'_>) -> PResult<DomainRef> {
        res(self.driver.by_name(name.as_str()))
    }

    fn lookup_by_uuid(&self, uuid: Uuid) -> PResult<DomainRef> {
        res(self.driver.by_uuid(from_abi_uuid(uuid)))
    }

    fn lookup_by_id(&self, id: i32) -> PResult<DomainRef> {
        res(self.driver.by_id(id))
    }

    fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        self.write("virDomainDefineXML", |d| {
            check_w("virDomainDefineXMLFlags", flags, flags::DEFINE_VALIDATE)?;
            d.define(xml.as_str())
        })
    }

    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        self.write("virDomainUndefine", |d| {
            check_w("virDomainUndefineFlags", flags, 0)?;
            d.undefine(from_abi_uuid(uuid))
        })
    }

    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef> {
        self.write("virDomainCreate", |d| {
            check_w("virDomainCreateWithFlags", flags, flags::START_PAUSED)?;
            d.start(from_abi_uuid(uuid), flags & flags::START_PAUSED)
        })
    }

    fn create_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        self.write("virDomainCreateXML", |d| {
            check_w(
                "virDomainCreateXML",
                flags,
                flags::START_PAUSED | flags::START_VALIDATE,
            )?;
            d.create_transient(xml.as_str(), flags & flags::START_PAUSED != 0)
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
            check_w("virDomainShutdownFlags", flags, flags::SHUTDOWN_SIGNAL)?;
            d.shutdown(from_abi_uuid(uuid))
        })
    }

    fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        self.write("virDomainReboot", |d| {
            check_w("virDomainReboot", flags, flags::REBOOT_SIGNAL)?;
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
        res(self.driver.info(from_abi_uuid(uuid)))
    }

    fn get_state(&self, uuid: Uuid) -> PResult<StateReason> {
        res(self
            .driver
            .state(from_abi_uuid(uuid))
            .map(|(state, reason)| StateReason { state, reason }))
    }

    fn get_xml_desc(&self, uuid: Uuid, flags: u32) -> PResult<RString> {
        if let Err(e) = check(
            "virDomainGetXMLDesc",
            flags,
            flags::XML_SECURE | flags::XML_INACTIVE,
        ) {
            return RResult::RErr(e);
        }
        res(self
            .driver
            .xml(
                from_abi_uuid(uuid),
                flags & flags::XML_INACTIVE != 0,
                flags & flags::XML_SECURE != 0,
            )
            .map(RString::from))
    }

    fn is_persistent(&self, uuid: Uuid) -> PResult<bool> {
        res(self.driver.is_persistent(from_abi_uuid(uuid)))
    }

    fn get_autostart(&self, uuid: Uuid) -> PResult<bool> {
        res(self.driver.get_autostart(from_abi_uuid(uuid)))
    }

    fn set_autostart(&self, uuid: Uuid, autostart: bool) -> PResult<()> {
        self.write("virDomainSetAutostart", |d| {
            d.set_autostart(from_abi_uuid(uuid), autostart)
        })
    }

    fn get_vcpus_flags(&self, uuid: Uuid, flags: u32) -> PResult<i32> {
        // VIR_DOMAIN_AFFECT_LIVE | _CONFIG | VIR_DOMAIN_VCPU_MAXIMUM
        if let Err(e) = check("virDomainGetVcpusFlags", flags, 1 | 2 | 4) {
            return RResult::RErr(e);
        }
        res(self.driver.vcpus(from_abi_uuid(uuid)))
    }

    fn get_os_type(&self, uuid: Uuid) -> PResult<RString> {
        res(self
            .driver
            .by_uuid(from_abi_uuid(uuid))
            .map(|_| "exe".into()))
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

    fn memory_stats(&self, uuid: Uuid, flags: u32) -> PResult<RVec<TypedParam>> {
        if let Err(e) = check("virDomainMemoryStats", flags, 0) {
            return RResult::RErr(e);
        }
        res(self
            .driver
            .memory_stats(from_abi_uuid(uuid))
            .map(|v| v.into_iter().collect()))
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

    fn has_managed_save_image(&self, uuid: Uuid, flags: u32) -> PResult<bool> {
        if let Err(e) = check("virDomainHasManagedSaveImage", flags, 0) {
            return RResult::RErr(e);
        }
        res(self.driver.by_uuid(from_abi_uuid(uuid)).map(|_| false))
    }
}

//! The QEMU/KVM driver plugin.
//!
//! Serves `qemu:///system` (root paths under `/etc`, `/var/lib`, `/run`, `/var/log`),
//! `qemu:///session` (XDG directories) and `qemu:///embed?root=DIR` (everything under
//! `DIR`). A domain definition becomes a modern QEMU command line (`command`); QEMU runs
//! in its own session, supervised by threads of the plugin that talk QMP (`rvirt-qmp`);
//! a versioned status file per running domain lets a later process reattach (`driver`).

pub mod command;
pub mod driver;
pub mod paths;

use driver::Driver;
use rvirt_sdk::{
    PluginInfo,
    abi::{
        DomainInfo, DomainRef, DriverConnection, ErrorCode, ErrorDomain, EventSinkBox, NodeInfo,
        PResult, PluginError, StateReason, Uuid,
        abi_stable::std_types::{RResult, RStr, RString, RVec},
    },
    util::{from_abi_uuid, read_only_denied},
};

rvirt_sdk::export_plugin! {
    manifest: PluginInfo {
        name: "qemu",
        kind: "hypervisor",
        schemes: &["qemu"],
        version: env!("CARGO_PKG_VERSION"),
        description: "QEMU/KVM driver: qemu:///system, qemu:///session, qemu:///embed?root=DIR",
    },
    open: open,
}

/// Opens a `qemu://` connection.
pub fn open(
    uri: &str,
    read_only: bool,
    events: EventSinkBox,
) -> Result<QemuConnection, PluginError> {
    let paths = paths::Paths::from_uri(uri)
        .map_err(|e| PluginError::new(ErrorCode::OpenFailed, ErrorDomain::Qemu, e.to_string()))?;
    let driver = driver::driver_for(&paths).map_err(PluginError::from)?;
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

fn qemu_version() -> u64 {
    static V: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        let out = std::process::Command::new("/usr/bin/qemu-system-x86_64")
            .arg("--version")
            .output()
            .ok();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let v = text
            .split_whitespace()
            .skip_while(|w| *w != "version")
            .nth(1)
            .unwrap_or("0.0.0");
        let mut it = v.split('.').map(|x| {
            x.trim_matches(|c: char| !c.is_ascii_digit())
                .parse::<u64>()
                .unwrap_or(0)
        });
        let (a, b, c) = (
            it.next().unwrap_or(0),
            it.next().unwrap_or(0),
            it.next().unwrap_or(0),
        );
        a * 1_000_000 + b * 1_000 + c
    })
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

fn capabilities() -> String {
    let kvm = command::kvm_usable().is_ok();
    let mut s = String::from(
        "<capabilities>\n  <host>\n    <cpu>\n      <arch>x86_64</arch>\n    </cpu>\n  </host>\n\n  <guest>\n    <os_type>hvm</os_type>\n    <arch name='x86_64'>\n      <wordsize>64</wordsize>\n      <emulator>/usr/bin/qemu-system-x86_64</emulator>\n      <machine>pc</machine>\n      <machine>q35</machine>\n      <domain type='qemu'/>\n",
    );
    if kvm {
        s.push_str("      <domain type='kvm'/>\n");
    }
    s.push_str("    </arch>\n    <features>\n      <acpi default='on' toggle='yes'/>\n    </features>\n  </guest>\n</capabilities>\n");
    s
}

impl DriverConnection for QemuConnection {
    fn get_type(&self) -> PResult<RString> {
        RResult::ROk("QEMU".into())
    }

    fn get_version(&self) -> PResult<u64> {
        RResult::ROk(qemu_version())
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
        RResult::ROk(self.driver.list(flags).into_iter().collect())
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

    fn define_xml(&self, xml: RStr<'_>, _flags: u32) -> PResult<DomainRef> {
        self.write("virDomainDefineXML", |d| d.define(xml.as_str()))
    }

    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        self.write("virDomainUndefine", |d| {
            d.undefine(from_abi_uuid(uuid), flags)
        })
    }

    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef> {
        self.write("virDomainCreate", |d| d.start(from_abi_uuid(uuid), flags))
    }

    fn create_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        self.write("virDomainCreateXML", |d| {
            d.create_transient(xml.as_str(), flags)
        })
    }

    fn destroy(&self, uuid: Uuid, _flags: u32) -> PResult<()> {
        self.write("virDomainDestroy", |d| d.destroy(from_abi_uuid(uuid)))
    }

    fn shutdown(&self, uuid: Uuid, _flags: u32) -> PResult<()> {
        self.write("virDomainShutdown", |d| d.shutdown(from_abi_uuid(uuid)))
    }

    fn reboot(&self, uuid: Uuid, _flags: u32) -> PResult<()> {
        self.write("virDomainReboot", |d| d.reboot(from_abi_uuid(uuid)))
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
        self.driver.vcpus(from_abi_uuid(uuid), flags).into()
    }

    fn get_os_type(&self, uuid: Uuid) -> PResult<RString> {
        self.driver
            .os_type(from_abi_uuid(uuid))
            .map(RString::from)
            .into()
    }

    fn has_managed_save_image(&self, uuid: Uuid, _flags: u32) -> PResult<bool> {
        self.driver
            .by_uuid(from_abi_uuid(uuid))
            .map(|_| false)
            .into()
    }

    fn domain_xml_to_native(
        &self,
        format: RStr<'_>,
        xml: RStr<'_>,
        _flags: u32,
    ) -> PResult<RString> {
        if format.as_str() != "qemu-argv" {
            return RResult::RErr(PluginError::new(
                ErrorCode::InvalidArg,
                ErrorDomain::Qemu,
                format!("unsupported config type {}", format.as_str()),
            ));
        }
        res(self.driver.to_native(xml.as_str()).map(RString::from))
    }
}

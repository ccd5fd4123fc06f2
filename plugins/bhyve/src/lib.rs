//! The FreeBSD bhyve driver: `bhyve:///system`, as libvirt's bhyve driver.
//!
//! * **Conversions work anywhere**: `domxml-to-native bhyve-argv` prints the loader's
//!   command line (`bhyveload`, `grub-bhyve` or a custom loader; none when bhyve boots
//!   UEFI firmware itself) and the `bhyve` command line, as libvirt prints them
//!   ([`command`]); `domxml-from-native bhyve-argv` reads them back ([`native`]).
//! * **Definitions** are kept as `NAME.xml` under `etc/rvirt/bhyve` of the host's system
//!   root (libvirt keeps them in `/usr/local/etc/libvirt/bhyve`): define, undefine, list,
//!   lookup, XML and info work on any host. Every definition is checked by building its
//!   command lines, so what cannot run on bhyve is refused when it is defined.
//! * **Lifecycle** (start, destroy, shutdown, reboot) needs a FreeBSD host with the vmm
//!   kernel module (`/dev/vmm`). Elsewhere each call answers no-support naming the
//!   operation, the driver, the missing `/dev/vmm` and the commands it would run. Running
//!   guests on a FreeBSD host is not implemented by this plugin yet: there the calls
//!   answer an operation error saying so, with the same commands. Suspend and resume are
//!   not supported by bhyve (as in libvirt).

pub mod caps;
pub mod command;
pub mod def;
pub mod native;

use caps::Options;
use rvirt_sdk::{
    PluginInfo,
    abi::{
        DomainInfo, DomainRef, DriverConnection, ErrorCode, ErrorDomain, EventSinkBox,
        HostServicesBox, NodeInfo, PResult, PluginError, StateReason, Uuid,
        abi_stable::std_types::{RResult, RStr, RString, RVec},
        state,
    },
    filter,
    util::{atomic_write, check_flags, from_abi_uuid, read_only_denied, to_abi_uuid},
};
use rvirt_xml::Element;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

rvirt_sdk::export_plugin! {
    manifest: PluginInfo {
        name: "bhyve",
        kind: "hypervisor",
        schemes: &["bhyve"],
        version: env!("CARGO_PKG_VERSION"),
        description: "FreeBSD bhyve driver (bhyve:///system): domain XML to bhyve, bhyveload and grub-bhyve command lines and back; running guests needs FreeBSD's /dev/vmm",
    },
    open_with_host: open,
}

/// libvirt's `VIR_FROM_BHYVE` error domain.
const FROM_BHYVE: i32 = 57;

/// The native format libvirt's bhyve driver converts.
pub const NATIVE_FORMAT: &str = "bhyve-argv";

/// The device of FreeBSD's vmm kernel module.
pub const VMM_DEVICE: &str = "/dev/vmm";

fn err(code: ErrorCode, message: impl Into<String>) -> PluginError {
    PluginError {
        code: code as i32,
        domain: FROM_BHYVE,
        message: message.into().into(),
    }
}

/// Serialises this process's changes to the definitions.
static LOCK: Mutex<()> = Mutex::new(());

/// Opens `bhyve:///system`.
pub fn open(
    uri: &str,
    read_only: bool,
    events: EventSinkBox,
    host: Option<HostServicesBox>,
) -> Result<BhyveConnection, PluginError> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| err(ErrorCode::InvalidArg, format!("'{uri}' is not a URI")))?;
    if scheme != "bhyve" {
        return Err(err(
            ErrorCode::InvalidArg,
            format!("scheme '{scheme}' is not served by the bhyve driver"),
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let path = path.split('?').next().unwrap_or("");
    if !authority.is_empty() {
        return Err(err(
            ErrorCode::InvalidArg,
            format!("'{uri}' names a remote host: the bhyve driver serves only 'bhyve:///system'"),
        ));
    }
    if path != "/system" {
        return Err(err(
            ErrorCode::InvalidArg,
            format!(
                "unexpected bhyve URI path '{path}', try bhyve:///system (the bhyve driver serves only 'bhyve:///system')"
            ),
        ));
    }
    let config = match &host {
        Some(h) => Path::new(h.system_root().as_str()).join("etc/rvirt/bhyve"),
        None => rvirt_sdk::util::system_path("etc/rvirt/bhyve"),
    };
    Ok(BhyveConnection {
        config,
        read_only,
        events,
        vmm: Path::new(VMM_DEVICE).exists(),
    })
}

/// One connection.
pub struct BhyveConnection {
    /// Where definitions are kept.
    config: PathBuf,
    read_only: bool,
    events: EventSinkBox,
    /// Whether `/dev/vmm` exists (a FreeBSD host with vmm.ko loaded).
    vmm: bool,
}

/// A defined domain.
#[derive(Debug, Clone)]
struct Dom {
    name: String,
    uuid: uuid::Uuid,
    xml: String,
    memory_kib: u64,
    vcpus: u32,
}

impl Dom {
    fn reference(&self) -> DomainRef {
        DomainRef {
            name: self.name.as_str().into(),
            uuid: to_abi_uuid(self.uuid),
            id: -1,
        }
    }
}

/// `VIR_DOMAIN_EVENT_*` numbers.
mod event {
    pub const DEFINED: i32 = 0;
    pub const UNDEFINED: i32 = 1;
}

fn conversion_err(e: command::CommandError) -> PluginError {
    let code = match &e {
        command::CommandError::Def(def::DefError::Xml(_))
        | command::CommandError::Def(def::DefError::Invalid { .. }) => ErrorCode::XmlError,
        _ => ErrorCode::ConfigUnsupported,
    };
    err(code, e.to_string())
}

fn check_format(format: &str) -> Result<(), PluginError> {
    if format != NATIVE_FORMAT {
        return Err(err(
            ErrorCode::InvalidArg,
            format!("invalid argument: unsupported config type {format} (only '{NATIVE_FORMAT}')"),
        ));
    }
    Ok(())
}

/// `domxml-to-native bhyve-argv`: the loader's line (when there is a loader) and the
/// bhyve line, as libvirt's dry run prints them: `tap0` for interfaces, `<device.map>`
/// for grub-bhyve's device map, a UEFI loader only as read-only pflash.
pub fn xml_to_native(format: &str, xml: &str, opts: &Options) -> Result<String, PluginError> {
    check_format(format)?;
    let mut d = def::Def::parse(xml, opts).map_err(|e| conversion_err(e.into()))?;
    d.fill_firmware(opts)
        .map_err(|e| conversion_err(e.into()))?;
    if d.bootloader.is_none() && d.loader.is_some() && !d.loader_readonly_pflash {
        return Err(err(
            ErrorCode::ConfigUnsupported,
            "unsupported configuration: Only read-only pflash is supported (domain/os/loader needs readonly='yes' type='pflash')",
        ));
    }
    let c = command::build_def(&mut d, opts).map_err(conversion_err)?;
    Ok(command::native_text(&c))
}

/// `domxml-from-native bhyve-argv`.
pub fn native_to_xml(format: &str, config: &str) -> Result<String, PluginError> {
    check_format(format)?;
    native::parse(config, caps::random_mac)
        .map(|e| e.to_xml_string())
        .map_err(|e| err(ErrorCode::ConfigUnsupported, e.to_string()))
}

/// A definition as libvirt keeps it: validated, defaults filled in (a UUID, MAC
/// addresses), formatted as libvirt formats an inactive definition, secrets included.
pub fn normalize(xml: &str) -> Result<String, PluginError> {
    let opts = rvirt_xml::ParseOptions {
        // bhyve has no boot order of its own: no implicit <boot dev='hd'/>
        no_default_boot: true,
        ..Default::default()
    };
    let mut root = Element::parse(xml)
        .map_err(|e| err(ErrorCode::XmlError, format!("invalid domain xml: {e}")))?;
    if root.child("uuid").is_none() {
        let u = uuid::Uuid::new_v4().to_string();
        root.push(Element::new("uuid").with_text(&u));
    }
    let dom = rvirt_xml::Domain::from_element_with(root, &opts)
        .map_err(|e| err(ErrorCode::XmlError, format!("invalid domain xml: {e}")))?;
    Ok(dom.to_xml(&rvirt_xml::FormatOptions {
        inactive: true,
        secure: true,
    }))
}

/// A kept definition as `virDomainGetXMLDesc` shows it: without secrets unless `secure`.
fn shown(xml: &str, secure: bool) -> Result<String, PluginError> {
    if secure {
        return Ok(xml.to_string());
    }
    let opts = rvirt_xml::ParseOptions {
        no_default_boot: true,
        ..Default::default()
    };
    let dom = rvirt_xml::Domain::parse_with(xml, &opts)
        .map_err(|e| err(ErrorCode::XmlError, format!("invalid domain xml: {e}")))?;
    Ok(dom.to_xml(&rvirt_xml::FormatOptions {
        inactive: true,
        secure: false,
    }))
}

fn capabilities() -> String {
    let mut caps = Element::new("capabilities");
    let mut host = Element::new("host");
    let mut cpu = Element::new("cpu");
    cpu.push(Element::new("arch").with_text(std::env::consts::ARCH));
    host.push(cpu);
    caps.push(host);
    let mut g = Element::new("guest");
    g.push(Element::new("os_type").with_text("hvm"));
    let mut a = Element::new("arch").with_attr("name", "x86_64");
    a.push(Element::new("wordsize").with_text("64"));
    a.push(Element::new("domain").with_attr("type", "bhyve"));
    g.push(a);
    caps.push(g);
    caps.to_xml_string()
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

impl BhyveConnection {
    fn file(&self, name: &str) -> PathBuf {
        self.config.join(format!("{name}.xml"))
    }

    fn read(&self, path: &Path) -> Result<Dom, PluginError> {
        let xml = std::fs::read_to_string(path).map_err(|e| {
            err(
                ErrorCode::OperationFailed,
                format!("cannot read '{}': {e}", path.display()),
            )
        })?;
        let d = def::Def::parse(&xml, &Options::default())
            .map_err(|e| err(ErrorCode::XmlError, format!("'{}': {e}", path.display())))?;
        let uuid = d
            .uuid
            .as_deref()
            .and_then(|u| uuid::Uuid::parse_str(u).ok())
            .ok_or_else(|| {
                err(
                    ErrorCode::XmlError,
                    format!("'{}' has no UUID", path.display()),
                )
            })?;
        Ok(Dom {
            name: d.name,
            uuid,
            xml,
            memory_kib: d.memory_kib,
            vcpus: d.vcpus,
        })
    }

    fn domains(&self) -> Result<Vec<Dom>, PluginError> {
        let rd = match std::fs::read_dir(&self.config) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(err(
                    ErrorCode::OperationFailed,
                    format!("cannot read '{}': {e}", self.config.display()),
                ));
            }
        };
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "xml"))
            .collect();
        paths.sort();
        paths.iter().map(|p| self.read(p)).collect()
    }

    fn find(&self, pred: impl Fn(&Dom) -> bool, what: &str) -> Result<Dom, PluginError> {
        self.domains()?
            .into_iter()
            .find(pred)
            .ok_or_else(|| err(ErrorCode::NoDomain, format!("domain not found: {what}")))
    }

    fn by_uuid(&self, u: Uuid) -> Result<Dom, PluginError> {
        let u = from_abi_uuid(u);
        self.find(
            |d| d.uuid == u,
            &format!("no domain with matching uuid '{u}'"),
        )
    }

    fn emit(&self, d: &Dom, ev: i32, detail: i32) {
        self.events.domain_lifecycle(d.reference(), ev, detail);
    }

    fn define(&self, xml: &str) -> Result<Dom, PluginError> {
        if self.read_only {
            return Err(read_only_denied("virDomainDefineXMLFlags"));
        }
        let text = normalize(xml)?;
        let root = Element::parse(&text)
            .map_err(|e| err(ErrorCode::XmlError, format!("invalid domain xml: {e}")))?;
        // what libvirt's parser and bhyve's validation reject is refused now, PCI slots
        // included (libvirt assigns them when it parses); what only fails when the command
        // line is built (a disk bus, a NIC model) fails when the domain starts
        let mut d = def::Def::from_element(&root, &Options::default())
            .map_err(|e| conversion_err(e.into()))?;
        d.assign_pci().map_err(|e| conversion_err(e.into()))?;
        let uuid = uuid::Uuid::parse_str(d.uuid.as_deref().unwrap_or_default())
            .map_err(|_| err(ErrorCode::XmlError, "domain/uuid: not a UUID"))?;
        if d.name.contains('/') || d.name.starts_with('.') {
            return Err(err(
                ErrorCode::XmlError,
                format!(
                    "domain/name: '{}' cannot name a bhyve virtual machine",
                    d.name
                ),
            ));
        }
        let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        for other in self.domains()? {
            if other.name == d.name && other.uuid != uuid {
                return Err(err(
                    ErrorCode::OperationFailed,
                    format!(
                        "operation failed: domain '{}' already exists with uuid {}",
                        d.name, other.uuid
                    ),
                ));
            }
            if other.uuid == uuid && other.name != d.name {
                return Err(err(
                    ErrorCode::OperationFailed,
                    format!(
                        "operation failed: domain '{}' is already defined with uuid {uuid}",
                        other.name
                    ),
                ));
            }
        }
        std::fs::create_dir_all(&self.config).map_err(|e| {
            err(
                ErrorCode::OperationFailed,
                format!("cannot create '{}': {e}", self.config.display()),
            )
        })?;
        atomic_write(&self.file(&d.name), text.as_bytes())
            .map_err(|e| err(ErrorCode::OperationFailed, e.to_string()))?;
        let dom = Dom {
            name: d.name,
            uuid,
            xml: text,
            memory_kib: d.memory_kib,
            vcpus: d.vcpus,
        };
        self.emit(&dom, event::DEFINED, 0);
        Ok(dom)
    }

    fn undefine(&self, u: Uuid) -> Result<(), PluginError> {
        if self.read_only {
            return Err(read_only_denied("virDomainUndefineFlags"));
        }
        let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let d = self.by_uuid(u)?;
        std::fs::remove_file(self.file(&d.name)).map_err(|e| {
            err(
                ErrorCode::OperationFailed,
                format!("cannot remove '{}': {e}", self.file(&d.name).display()),
            )
        })?;
        self.emit(&d, event::UNDEFINED, 0);
        Ok(())
    }

    /// The error of a lifecycle call: no bhyve here, or (on FreeBSD) not implemented;
    /// `would_run` says what the driver runs for it.
    fn lifecycle(&self, op: &str, would_run: &str) -> PluginError {
        if self.read_only {
            return read_only_denied(op);
        }
        if self.vmm {
            err(
                ErrorCode::OperationFailed,
                format!(
                    "operation failed: {op}: running bhyve guests is not implemented by rvirt's bhyve driver yet; it would run: {would_run}"
                ),
            )
        } else {
            err(
                ErrorCode::NoSupport,
                format!(
                    "this function is not supported by the connection driver: {op}: this is not a FreeBSD host with bhyve ({VMM_DEVICE} is missing); the bhyve driver would run: {would_run}"
                ),
            )
        }
    }

    fn start_commands(&self, xml: &str) -> String {
        match command::build(xml, &Options::default()) {
            Ok(c) => {
                let mut s = String::new();
                if let Some(l) = &c.loader {
                    s.push_str(&command::to_line(l));
                    s.push_str(", then ");
                }
                s.push_str(&command::to_line(&c.bhyve));
                s
            }
            Err(e) => format!("nothing ({e})"),
        }
    }
}

fn res<T>(r: Result<T, PluginError>) -> PResult<T> {
    r.into()
}

macro_rules! checked {
    ($op:literal, $flags:expr, $allowed:expr) => {
        if let Err(e) = check_flags(ErrorDomain::None, $op, $flags, $allowed) {
            return RResult::RErr(e);
        }
    };
}

impl DriverConnection for BhyveConnection {
    fn get_type(&self) -> PResult<RString> {
        RResult::ROk("BHYVE".into())
    }

    fn get_version(&self) -> PResult<u64> {
        RResult::ROk(0)
    }

    fn get_uri(&self) -> PResult<RString> {
        RResult::ROk("bhyve:///system".into())
    }

    fn get_hostname(&self) -> PResult<RString> {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        RResult::ROk(name.trim().into())
    }

    fn get_capabilities(&self) -> PResult<RString> {
        RResult::ROk(capabilities().into())
    }

    fn node_get_info(&self) -> PResult<NodeInfo> {
        RResult::ROk(node_info())
    }

    fn list_all_domains(&self, flags: u32) -> PResult<RVec<DomainRef>> {
        checked!("virConnectListAllDomains", flags, filter::FILTERS);
        res(self.domains().map(|ds| {
            ds.iter()
                .filter(|_| {
                    filter::matches(
                        flags,
                        &filter::DomainFacts {
                            state: state::SHUTOFF,
                            persistent: true,
                            ..Default::default()
                        },
                    )
                })
                .map(Dom::reference)
                .collect()
        }))
    }

    fn lookup_by_name(&self, name: RStr<'_>) -> PResult<DomainRef> {
        let n = name.as_str();
        res(self
            .find(
                |d| d.name == n,
                &format!("no domain with matching name '{n}'"),
            )
            .map(|d| d.reference()))
    }

    fn lookup_by_uuid(&self, uuid: Uuid) -> PResult<DomainRef> {
        res(self.by_uuid(uuid).map(|d| d.reference()))
    }

    fn lookup_by_id(&self, id: i32) -> PResult<DomainRef> {
        // no domain runs, so no domain has an id
        RResult::RErr(err(
            ErrorCode::NoDomain,
            format!("domain not found: no domain with matching id {id}"),
        ))
    }

    fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        // VIR_DOMAIN_DEFINE_VALIDATE: every definition is checked
        checked!("virDomainDefineXMLFlags", flags, 1);
        res(self.define(xml.as_str()).map(|d| d.reference()))
    }

    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainUndefineFlags", flags, 0);
        res(BhyveConnection::undefine(self, uuid))
    }

    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainCreateWithFlags", flags, 0);
        if self.read_only {
            return RResult::RErr(read_only_denied("virDomainCreateWithFlags"));
        }
        res(self.by_uuid(uuid).and_then(|d| {
            // the command lines are built first: a definition they cannot hold fails so
            command::build(&d.xml, &Options::default()).map_err(conversion_err)?;
            Err(self.lifecycle("virDomainCreateWithFlags", &self.start_commands(&d.xml)))
        }))
    }

    fn create_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainCreateXML", flags, 0);
        if self.read_only {
            return RResult::RErr(read_only_denied("virDomainCreateXML"));
        }
        // the definition is read and its command lines built before anything would run
        let r = command::build(xml.as_str(), &Options::default())
            .map_err(conversion_err)
            .and_then(|_| {
                Err(self.lifecycle("virDomainCreateXML", &self.start_commands(xml.as_str())))
            });
        res(r)
    }

    fn destroy(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainDestroyFlags", flags, 0);
        if self.read_only {
            return RResult::RErr(read_only_denied("virDomainDestroyFlags"));
        }
        res(self.by_uuid(uuid).and_then(|d| {
            Err(self.lifecycle(
                "virDomainDestroyFlags",
                &format!("/usr/sbin/bhyvectl --destroy --vm={}", d.name),
            ))
        }))
    }

    fn shutdown(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainShutdownFlags", flags, 0);
        if self.read_only {
            return RResult::RErr(read_only_denied("virDomainShutdownFlags"));
        }
        res(self.by_uuid(uuid).and_then(|d| {
            Err(self.lifecycle(
                "virDomainShutdownFlags",
                &format!(
                    "kill -TERM on the bhyve process of '{}' (an ACPI power button press)",
                    d.name
                ),
            ))
        }))
    }

    fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainReboot", flags, 0);
        if self.read_only {
            return RResult::RErr(read_only_denied("virDomainReboot"));
        }
        res(self.by_uuid(uuid).and_then(|d| {
            Err(self.lifecycle(
                "virDomainReboot",
                &format!("/usr/sbin/bhyvectl --force-reset --vm={}", d.name),
            ))
        }))
    }

    fn suspend(&self, uuid: Uuid) -> PResult<()> {
        if self.read_only {
            return RResult::RErr(read_only_denied("virDomainSuspend"));
        }
        res(self.by_uuid(uuid).and_then(|_| {
            Err(err(
                ErrorCode::NoSupport,
                "this function is not supported by the connection driver: virDomainSuspend: bhyve cannot pause a guest (driver 'bhyve')",
            ))
        }))
    }

    fn resume(&self, uuid: Uuid) -> PResult<()> {
        if self.read_only {
            return RResult::RErr(read_only_denied("virDomainResume"));
        }
        res(self.by_uuid(uuid).and_then(|_| {
            Err(err(
                ErrorCode::NoSupport,
                "this function is not supported by the connection driver: virDomainResume: bhyve cannot pause a guest (driver 'bhyve')",
            ))
        }))
    }

    fn get_info(&self, uuid: Uuid) -> PResult<DomainInfo> {
        res(self.by_uuid(uuid).map(|d| DomainInfo {
            state: state::SHUTOFF,
            max_mem_kib: d.memory_kib,
            memory_kib: d.memory_kib,
            nr_virt_cpu: d.vcpus,
            cpu_time_ns: 0,
        }))
    }

    fn get_state(&self, uuid: Uuid) -> PResult<StateReason> {
        // VIR_DOMAIN_SHUTOFF_UNKNOWN
        res(self.by_uuid(uuid).map(|_| StateReason {
            state: state::SHUTOFF,
            reason: 0,
        }))
    }

    fn get_xml_desc(&self, uuid: Uuid, flags: u32) -> PResult<RString> {
        // VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_INACTIVE: one definition, never running
        checked!("virDomainGetXMLDesc", flags, 1 | 2);
        res(self
            .by_uuid(uuid)
            .and_then(|d| shown(&d.xml, flags & 1 != 0))
            .map(RString::from))
    }

    fn is_persistent(&self, uuid: Uuid) -> PResult<bool> {
        res(self.by_uuid(uuid).map(|_| true))
    }

    fn get_autostart(&self, uuid: Uuid) -> PResult<bool> {
        res(self.by_uuid(uuid).map(|_| false))
    }

    fn set_autostart(&self, _uuid: Uuid, _autostart: bool) -> PResult<()> {
        if self.read_only {
            return RResult::RErr(read_only_denied("virDomainSetAutostart"));
        }
        RResult::RErr(err(
            ErrorCode::NoSupport,
            "this function is not supported by the connection driver: virDomainSetAutostart (driver 'bhyve')",
        ))
    }

    fn get_vcpus_flags(&self, uuid: Uuid, flags: u32) -> PResult<i32> {
        checked!("virDomainGetVcpusFlags", flags, 1 | 2 | 4);
        res(self.by_uuid(uuid).map(|d| d.vcpus as i32))
    }

    fn get_os_type(&self, uuid: Uuid) -> PResult<RString> {
        res(self.by_uuid(uuid).map(|_| "hvm".into()))
    }

    fn has_managed_save_image(&self, uuid: Uuid, flags: u32) -> PResult<bool> {
        checked!("virDomainHasManagedSaveImage", flags, 0);
        res(self.by_uuid(uuid).map(|_| false))
    }

    fn domain_xml_to_native(
        &self,
        format: RStr<'_>,
        xml: RStr<'_>,
        flags: u32,
    ) -> PResult<RString> {
        checked!("virConnectDomainXMLToNative", flags, 0);
        let opts = Options {
            devmap_file: "<device.map>".into(),
            ..Options::default()
        };
        res(xml_to_native(format.as_str(), xml.as_str(), &opts).map(RString::from))
    }

    fn domain_xml_from_native(
        &self,
        format: RStr<'_>,
        config: RStr<'_>,
        flags: u32,
    ) -> PResult<RString> {
        checked!("virConnectDomainXMLFromNative", flags, 0);
        res(native_to_xml(format.as_str(), config.as_str()).map(RString::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_normalized_and_keep_the_bhyve_namespace() {
        let xml = "<domain type='bhyve' xmlns:bhyve='http://libvirt.org/schemas/domain/bhyve/1.0'>\
                   <name>vm</name><memory>262144</memory><os><type>hvm</type></os><devices>\
                   <disk type='file'><source file='/a.img'/><target dev='hda' bus='sata'/></disk>\
                   <interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface>\
                   <graphics type='vnc' port='5900' passwd='pw'/></devices>\
                   <bhyve:commandline><bhyve:arg value='-W'/></bhyve:commandline></domain>";
        let n = normalize(xml).unwrap();
        assert!(n.contains("<uuid>"), "{n}");
        assert!(n.contains("<mac address='52:54:00:"), "{n}");
        let d = def::Def::parse(&n, &Options::for_tests()).unwrap();
        assert_eq!(d.cmdline, ["-W"]);
        assert!(shown(&n, true).unwrap().contains("passwd='pw'"));
        assert!(!shown(&n, false).unwrap().contains("passwd="));
        let e = normalize("<domain type='bhyve'><name>x</name></domain>").unwrap_err();
        assert_eq!(e.code, ErrorCode::XmlError as i32);
    }

    #[test]
    fn formats_are_checked() {
        let e = xml_to_native("qemu-argv", "<domain/>", &Options::for_tests()).unwrap_err();
        assert!(
            e.message.contains("unsupported config type qemu-argv"),
            "{}",
            e.message
        );
        let e = native_to_xml("vmware-vmx", "bhyve vm").unwrap_err();
        assert!(
            e.message.contains("unsupported config type vmware-vmx"),
            "{}",
            e.message
        );
    }

    #[test]
    fn native_text_has_loader_then_bhyve() {
        let xml = "<domain type='bhyve'><name>vm</name><memory>262144</memory><os><type>hvm</type></os><devices>\
                   <disk type='file'><source file='/a b.img'/><target dev='hda' bus='sata'/></disk>\
                   </devices></domain>";
        let t = xml_to_native(NATIVE_FORMAT, xml, &Options::default()).unwrap();
        assert_eq!(
            t,
            "/usr/sbin/bhyveload -m 256 -d '/a b.img' vm\n\
             /usr/sbin/bhyve -c 1 -m 256 -u -H -P -s 0:0,hostbridge -s '2:0,ahci,hd:/a b.img' vm\n"
        );
        let back = native_to_xml(NATIVE_FORMAT, &t).unwrap();
        assert!(back.contains("<source file='/a b.img'/>"), "{back}");
        assert!(back.contains("<boot order='1'/>"), "{back}");
    }
}

//! The Xen driver: `xen:///system` (and `xen:///`), with the semantics of libvirt's libxl
//! driver, built up to the boundary where libxl and the hypervisor take over.
//!
//! * **Conversions work anywhere.** The connection opens without a Xen hypervisor;
//!   `domxml-to-native` / `domxml-from-native` with libvirt's format name `xen-xl`
//!   convert domain XML to and from `xl.cfg(5)` ([`convert`]), and `domxml-to-native
//!   xen-libxl-json` writes libxl's JSON domain configuration, `libxl_domain_config` as
//!   `xl -N` prints it ([`json`]).
//! * **Definitions are kept on disk**, as libvirt's libxl driver keeps them (one domain
//!   XML file a domain in its configuration directory, `/etc/libvirt/libxl` there):
//!   here `$RVIRT_XEN_CONFIG_DIR`, else `etc/rvirt/libxl` of the host's system root (the
//!   daemon's `--root`, `/` by default), `NAME.xml`, owner-only. Define checks that the domain
//!   converts to xl.cfg (what libxl would be handed), so a definition the driver could not
//!   start is refused at define time. Define, undefine, listing, lookups, info, state and
//!   dumpxml of these inactive domains work without the hypervisor, and every connection
//!   sees the same definitions. libvirt's own driver does not load at all where
//!   `/proc/xen` is missing; keeping the inactive definitions is what it does with them
//!   once loaded, and what lets the conversions be used on the definitions anywhere.
//! * **Lifecycle calls** (create, create from XML, destroy, shutdown, reboot, suspend,
//!   resume) answer the no-support error naming the libvirt API, that no Xen hypervisor
//!   is present (`/dev/xen/privcmd` missing) and the libxl function the driver would call
//!   (`libxl_domain_create_new`, `libxl_domain_destroy`, `libxl_domain_shutdown`,
//!   `libxl_domain_reboot`, `libxl_domain_pause`, `libxl_domain_unpause`). On a Xen host
//!   the message says instead that this plugin does not drive libxl.

pub mod convert;
pub mod json;
pub mod xlcfg;

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
        name: "xen",
        kind: "hypervisor",
        schemes: &["xen"],
        version: env!("CARGO_PKG_VERSION"),
        description: "Xen through libxl semantics (xen:///system): domain XML to and from xl.cfg and libxl's JSON domain configuration; lifecycle needs a Xen hypervisor",
    },
    open_with_host: open,
}

/// libvirt's `VIR_FROM_LIBXL` error domain.
pub const FROM_LIBXL: i32 = 41;
/// libvirt's native format name for xl.cfg (`XEN_CONFIG_FORMAT_XL`).
pub const FORMAT_XL: &str = "xen-xl";
/// The device libxl opens first; its absence means no Xen hypervisor.
pub const PRIVCMD: &str = "/dev/xen/privcmd";

fn err(code: ErrorCode, message: impl Into<String>) -> PluginError {
    PluginError {
        code: code as i32,
        domain: FROM_LIBXL,
        message: message.into().into(),
    }
}

fn conv_err(e: convert::ConvertError) -> PluginError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    let code = match e {
        convert::ConvertError::Unsupported { .. } => ErrorCode::ConfigUnsupported,
        convert::ConvertError::BadKey { .. } | convert::ConvertError::Syntax(_) => {
            ErrorCode::ConfigUnsupported
        }
        _ => ErrorCode::XmlError,
    };
    err(code, msg)
}

/// Serialises this process's changes to the store.
static LOCK: Mutex<()> = Mutex::new(());

/// Opens `xen:///system` or `xen:///`.
pub fn open(
    uri: &str,
    read_only: bool,
    events: EventSinkBox,
    services: Option<HostServicesBox>,
) -> Result<XenConnection, PluginError> {
    let rest = uri.strip_prefix("xen://").ok_or_else(|| {
        err(
            ErrorCode::InvalidArg,
            format!("'{uri}' is not a xen:// URI"),
        )
    })?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    if !query.is_empty() {
        return Err(err(
            ErrorCode::InvalidArg,
            format!("invalid URI '{uri}': the Xen driver takes no URI parameters"),
        ));
    }
    if !host.is_empty() && host != "localhost" {
        return Err(err(
            ErrorCode::InvalidArg,
            format!("invalid URI '{uri}': the Xen driver is local (use xen:///system)"),
        ));
    }
    if !matches!(path, "" | "/" | "/system") {
        return Err(err(
            ErrorCode::InvalidArg,
            format!("unexpected Xen URI path '{path}', try xen:///system"),
        ));
    }
    let store = match std::env::var_os("RVIRT_XEN_CONFIG_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => match &services {
            Some(h) => Path::new(h.system_root().as_str()).join("etc/rvirt/libxl"),
            None => rvirt_sdk::util::system_path("etc/rvirt/libxl"),
        },
    };
    Ok(XenConnection {
        store,
        read_only,
        events,
    })
}

/// One connection.
pub struct XenConnection {
    store: PathBuf,
    read_only: bool,
    events: EventSinkBox,
}

/// A stored (inactive) domain.
#[derive(Debug, Clone)]
struct Dom {
    name: String,
    uuid: uuid::Uuid,
    xml: Element,
}

impl Dom {
    fn reference(&self) -> DomainRef {
        DomainRef {
            name: self.name.as_str().into(),
            uuid: to_abi_uuid(self.uuid),
            id: -1,
        }
    }

    fn kib(&self, name: &str) -> u64 {
        self.xml
            .child(name)
            .and_then(|e| {
                let v: u64 = e.text().trim().parse().ok()?;
                let mul = match e.attr("unit").unwrap_or("KiB") {
                    "b" | "bytes" => return Some(v / 1024),
                    "M" | "MiB" => 1024,
                    "G" | "GiB" => 1024 * 1024,
                    _ => 1,
                };
                Some(v * mul)
            })
            .unwrap_or(0)
    }

    fn vcpus(&self, current: bool) -> u32 {
        let v = self.xml.child("vcpu");
        let max = v.and_then(|v| v.text().trim().parse().ok()).unwrap_or(1);
        if current {
            v.and_then(|v| v.attr("current"))
                .and_then(|c| c.parse().ok())
                .unwrap_or(max)
        } else {
            max
        }
    }
}

/// `VIR_DOMAIN_EVENT_DEFINED` and `VIR_DOMAIN_EVENT_UNDEFINED`.
const EVENT_DEFINED: i32 = 0;
const EVENT_UNDEFINED: i32 = 1;

/// The libxl function each lifecycle API would call.
fn libxl_call(op: &str) -> &'static str {
    match op {
        "virDomainCreateWithFlags" | "virDomainCreateXML" => "libxl_domain_create_new",
        "virDomainDestroyFlags" => "libxl_domain_destroy",
        "virDomainShutdownFlags" => "libxl_domain_shutdown",
        "virDomainReboot" => "libxl_domain_reboot",
        "virDomainSuspend" => "libxl_domain_pause",
        "virDomainResume" => "libxl_domain_unpause",
        _ => "libxl",
    }
}

/// The error a lifecycle call answers: no hypervisor (or, on a Xen host, no libxl here).
pub fn lifecycle_error(op: &str) -> PluginError {
    let why = if Path::new(PRIVCMD).exists() {
        format!(
            "this plugin converts configurations only and does not drive libxl (it would call {})",
            libxl_call(op)
        )
    } else {
        format!(
            "no Xen hypervisor is present ({PRIVCMD} is missing); the Xen driver would call {}",
            libxl_call(op)
        )
    };
    err(
        ErrorCode::NoSupport,
        format!("this function is not supported by the connection driver: {op}: {why}"),
    )
}

impl XenConnection {
    fn write_guard(&self, op: &str) -> Result<std::sync::MutexGuard<'static, ()>, PluginError> {
        if self.read_only {
            return Err(read_only_denied(op));
        }
        Ok(LOCK.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn domains(&self) -> Result<Vec<Dom>, PluginError> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.store) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(err(
                    ErrorCode::OperationFailed,
                    format!("cannot read '{}': {e}", self.store.display()),
                ));
            }
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("xml") {
                continue;
            }
            let text = std::fs::read_to_string(&p).map_err(|e| {
                err(
                    ErrorCode::OperationFailed,
                    format!("cannot read '{}': {e}", p.display()),
                )
            })?;
            let xml = Element::parse(&text)
                .map_err(|e| err(ErrorCode::XmlError, format!("'{}': {e}", p.display())))?;
            let name = xml
                .child("name")
                .map(|n| n.text().trim().to_string())
                .unwrap_or_default();
            let uuid = xml
                .child("uuid")
                .and_then(|u| uuid::Uuid::parse_str(u.text().trim()).ok())
                .unwrap_or_default();
            out.push(Dom { name, uuid, xml });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn find(&self, pred: impl Fn(&Dom) -> bool, what: &str) -> Result<Dom, PluginError> {
        self.domains()?
            .into_iter()
            .find(|d| pred(d))
            .ok_or_else(|| err(ErrorCode::NoDomain, format!("domain not found: {what}")))
    }

    fn by_uuid(&self, u: Uuid) -> Result<Dom, PluginError> {
        let u = from_abi_uuid(u);
        self.find(
            |d| d.uuid == u,
            &format!("no domain with matching uuid '{u}'"),
        )
    }

    fn emit(&self, d: &Dom, ev: i32) {
        self.events.domain_lifecycle(d.reference(), ev, 0);
    }

    fn define(&self, xml: &str) -> Result<Dom, PluginError> {
        let _g = self.write_guard("virDomainDefineXML")?;
        let mut dom = Element::parse(xml).map_err(|e| err(ErrorCode::XmlError, e.to_string()))?;
        // what libxl would be handed must exist
        convert::domain_to_cfg(&dom).map_err(conv_err)?;
        let name = dom
            .child("name")
            .map(|n| n.text().trim().to_string())
            .unwrap_or_default();
        if name.contains('/') || name.starts_with('.') || name.is_empty() {
            return Err(err(
                ErrorCode::XmlError,
                format!("domain/name: '{name}' cannot name a definition file"),
            ));
        }
        if dom.child("uuid").is_none() {
            dom.push(
                Element::new("uuid").with_text(&uuid::Uuid::new_v4().hyphenated().to_string()),
            );
        }
        let uuid = dom
            .child("uuid")
            .and_then(|u| uuid::Uuid::parse_str(u.text().trim()).ok())
            .ok_or_else(|| err(ErrorCode::XmlError, "domain/uuid: not a UUID"))?;
        for d in self.domains()? {
            if d.name == name && d.uuid != uuid {
                return Err(err(
                    ErrorCode::DomExist,
                    format!(
                        "operation failed: domain '{name}' already exists with uuid {}",
                        d.uuid
                    ),
                ));
            }
            if d.uuid == uuid && d.name != name {
                return Err(err(
                    ErrorCode::DomExist,
                    format!(
                        "operation failed: domain '{}' is already defined with uuid {uuid}",
                        d.name
                    ),
                ));
            }
        }
        std::fs::create_dir_all(&self.store).map_err(|e| {
            err(
                ErrorCode::OperationFailed,
                format!("cannot create '{}': {e}", self.store.display()),
            )
        })?;
        let path = self.store.join(format!("{name}.xml"));
        atomic_write(&path, dom.to_xml_string().as_bytes()).map_err(|e| {
            err(
                ErrorCode::OperationFailed,
                format!("cannot write '{}': {e}", path.display()),
            )
        })?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        let d = Dom {
            name,
            uuid,
            xml: dom,
        };
        drop(_g);
        self.emit(&d, EVENT_DEFINED);
        Ok(d)
    }

    fn undefine(&self, u: Uuid) -> Result<(), PluginError> {
        let _g = self.write_guard("virDomainUndefineFlags")?;
        let d = self.by_uuid(u)?;
        let path = self.store.join(format!("{}.xml", d.name));
        std::fs::remove_file(&path).map_err(|e| {
            err(
                ErrorCode::OperationFailed,
                format!("cannot remove '{}': {e}", path.display()),
            )
        })?;
        drop(_g);
        self.emit(&d, EVENT_UNDEFINED);
        Ok(())
    }

    /// A lifecycle call: the domain must exist, then the no-hypervisor error.
    fn lifecycle(&self, u: Option<Uuid>, op: &str) -> Result<DomainRef, PluginError> {
        if self.read_only {
            return Err(read_only_denied(op));
        }
        if let Some(u) = u {
            self.by_uuid(u)?;
        }
        Err(lifecycle_error(op))
    }
}

fn res<T>(r: Result<T, PluginError>) -> PResult<T> {
    r.into()
}

/// Converts domain XML to a native format: `xen-xl` or `xen-libxl-json`.
pub fn xml_to_native(format: &str, xml: &str) -> Result<String, PluginError> {
    match format {
        FORMAT_XL => convert::xml_to_xl(xml).map_err(conv_err),
        json::NATIVE_FORMAT => json::xml_to_json(xml).map_err(conv_err),
        other => Err(err(
            ErrorCode::InvalidArg,
            format!(
                "invalid argument: unsupported config type {other} (the Xen driver writes '{FORMAT_XL}' and '{}')",
                json::NATIVE_FORMAT
            ),
        )),
    }
}

/// Converts a native configuration to domain XML: `xen-xl`.
pub fn native_to_xml(format: &str, config: &str) -> Result<String, PluginError> {
    match format {
        FORMAT_XL => convert::xl_to_xml(config).map_err(conv_err),
        other => Err(err(
            ErrorCode::InvalidArg,
            format!(
                "invalid argument: unsupported config type {other} (the Xen driver reads '{FORMAT_XL}')"
            ),
        )),
    }
}

fn capabilities() -> String {
    let mut caps = Element::new("capabilities");
    let mut host = Element::new("host");
    let mut cpu = Element::new("cpu");
    cpu.push(Element::new("arch").with_text(std::env::consts::ARCH));
    host.push(cpu);
    caps.push(host);
    for (os, arch, bits, machine) in [
        ("xen", "x86_64", "64", "xenpv"),
        ("xen", "i686", "32", "xenpv"),
        ("hvm", "i686", "32", "xenfv"),
        ("hvm", "x86_64", "64", "xenfv"),
        ("xenpvh", "x86_64", "64", "xenpvh"),
    ] {
        let mut g = Element::new("guest");
        g.push(Element::new("os_type").with_text(os));
        let mut a = Element::new("arch").with_attr("name", arch);
        a.push(Element::new("wordsize").with_text(bits));
        if os == "hvm" {
            a.push(Element::new("emulator").with_text("/usr/lib/xen/bin/qemu-system-i386"));
            a.push(Element::new("loader").with_text(convert::HVMLOADER));
        }
        a.push(Element::new("machine").with_text(machine));
        a.push(Element::new("domain").with_attr("type", "xen"));
        g.push(a);
        caps.push(g);
    }
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

macro_rules! checked {
    ($op:literal, $flags:expr, $allowed:expr) => {
        if let Err(e) = check_flags(ErrorDomain::None, $op, $flags, $allowed) {
            return RResult::RErr(e);
        }
    };
}

impl DriverConnection for XenConnection {
    fn get_type(&self) -> PResult<RString> {
        RResult::ROk("Xen".into())
    }

    fn get_version(&self) -> PResult<u64> {
        // libvirt reports the hypervisor's version; there is none here
        RResult::ROk(0)
    }

    fn get_uri(&self) -> PResult<RString> {
        RResult::ROk("xen:///system".into())
    }

    fn get_hostname(&self) -> PResult<RString> {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
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
        // no domain runs without the hypervisor
        RResult::RErr(err(
            ErrorCode::NoDomain,
            format!("domain not found: no domain with matching id {id}"),
        ))
    }

    fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        // VIR_DOMAIN_DEFINE_VALIDATE: the conversion always validates
        checked!("virDomainDefineXMLFlags", flags, 1);
        res(self.define(xml.as_str()).map(|d| d.reference()))
    }

    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainUndefineFlags", flags, 0);
        res(XenConnection::undefine(self, uuid))
    }

    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainCreateWithFlags", flags, 0);
        res(self.lifecycle(Some(uuid), "virDomainCreateWithFlags"))
    }

    fn create_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainCreateXML", flags, 0);
        let r = if self.read_only {
            Err(read_only_denied("virDomainCreateXML"))
        } else {
            convert::xml_to_xl(xml.as_str())
                .map_err(conv_err)
                .and_then(|_| self.lifecycle(None, "virDomainCreateXML"))
        };
        res(r)
    }

    fn destroy(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainDestroyFlags", flags, 0);
        res(self
            .lifecycle(Some(uuid), "virDomainDestroyFlags")
            .map(|_| ()))
    }

    fn shutdown(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainShutdownFlags", flags, 0);
        res(self
            .lifecycle(Some(uuid), "virDomainShutdownFlags")
            .map(|_| ()))
    }

    fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainReboot", flags, 0);
        res(self.lifecycle(Some(uuid), "virDomainReboot").map(|_| ()))
    }

    fn suspend(&self, uuid: Uuid) -> PResult<()> {
        res(self.lifecycle(Some(uuid), "virDomainSuspend").map(|_| ()))
    }

    fn resume(&self, uuid: Uuid) -> PResult<()> {
        res(self.lifecycle(Some(uuid), "virDomainResume").map(|_| ()))
    }

    fn get_info(&self, uuid: Uuid) -> PResult<DomainInfo> {
        res(self.by_uuid(uuid).map(|d| DomainInfo {
            state: state::SHUTOFF,
            max_mem_kib: d.kib("memory"),
            memory_kib: if d.xml.child("currentMemory").is_some() {
                d.kib("currentMemory")
            } else {
                d.kib("memory")
            },
            nr_virt_cpu: d.vcpus(true),
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
        // VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_INACTIVE: only inactive definitions exist
        checked!("virDomainGetXMLDesc", flags, 1 | 2);
        res(self.by_uuid(uuid).map(|d| d.xml.to_xml_string().into()))
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
        RResult::RErr(PluginError::no_support("virDomainSetAutostart"))
    }

    fn get_vcpus_flags(&self, uuid: Uuid, flags: u32) -> PResult<i32> {
        // VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG | VIR_DOMAIN_VCPU_MAXIMUM
        checked!("virDomainGetVcpusFlags", flags, 1 | 2 | 4);
        res(self.by_uuid(uuid).map(|d| d.vcpus(flags & 4 == 0) as i32))
    }

    fn get_os_type(&self, uuid: Uuid) -> PResult<RString> {
        res(self.by_uuid(uuid).and_then(|d| {
            let t = convert::guest_type(&d.xml).map_err(conv_err)?;
            Ok(match t {
                convert::GuestType::Hvm => "hvm",
                convert::GuestType::Pv => "linux",
                convert::GuestType::Pvh => "xenpvh",
            }
            .into())
        }))
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
        res(xml_to_native(format.as_str(), xml.as_str()).map(RString::from))
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
    fn lifecycle_error_names_api_device_and_libxl_call() {
        let e = lifecycle_error("virDomainCreateWithFlags");
        assert_eq!(e.code, ErrorCode::NoSupport as i32);
        let m = e.message.as_str();
        assert!(m.contains("virDomainCreateWithFlags"), "{m}");
        assert!(m.contains("libxl_domain_create_new"), "{m}");
        if !Path::new(PRIVCMD).exists() {
            assert!(
                m.contains("no Xen hypervisor is present (/dev/xen/privcmd is missing)"),
                "{m}"
            );
        }
        assert!(
            lifecycle_error("virDomainSuspend")
                .message
                .contains("libxl_domain_pause")
        );
    }

    #[test]
    fn native_formats() {
        let xml = "<domain type='xen'><name>a</name><memory unit='MiB'>256</memory>\
                   <os><type>hvm</type></os></domain>";
        let xl = xml_to_native("xen-xl", xml).unwrap();
        assert!(xl.contains("builder = \"hvm\"\n"), "{xl}");
        let j = xml_to_native("xen-libxl-json", xml).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["b_info"]["max_memkb"], 262144);
        let e = xml_to_native("xen-xm", xml).unwrap_err();
        assert!(e.message.contains("unsupported config type xen-xm"));
        let back = native_to_xml("xen-xl", &xl).unwrap();
        assert!(
            back.contains("<type arch='x86_64' machine='xenfv'>hvm</type>"),
            "{back}"
        );
        let e = native_to_xml("xen-xl", "name = ").unwrap_err();
        assert!(
            e.message.contains("invalid xl.cfg: xl.cfg line 1"),
            "{}",
            e.message
        );
    }
}

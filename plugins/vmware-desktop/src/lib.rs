//! The VMware Desktop driver: `vmwareplayer:///session`, `vmwarews:///session` and
//! `vmwarefusion:///session`, as libvirt's vmware driver: a domain is a `.vmx` file, and
//! its lifecycle is `vmrun -T TYPE start|stop|pause|unpause|reset PATH` commands.
//!
//! * **Define** converts the domain XML to `.vmx` (`rvirt-vmx`, virtual hardware 7, as
//!   libvirt's driver writes it) and writes it as `NAME.vmx` in the directory of the
//!   domain's first `.vmdk` disk, owner-only. The connection records the path in its
//!   registry (`$XDG_CONFIG_HOME/rvirt/vmware/SCHEME/NAME.vmxpath`), so that every later
//!   connection lists the domain; libvirt's driver forgets defined domains that are not
//!   running when its connection closes.
//! * **State** is read on each call: `vmrun list` names the running `.vmx` files; a domain
//!   this driver paused is marked in `run/NAME.paused`; the id of a running domain is the
//!   VM's process id from its `vmware.log`, as libvirt reports it. Running VMs that were not
//!   defined here are listed as transient domains.
//! * **Without `vmrun`** (no VMware installed) the connection still opens: conversions
//!   (`domxml-to-native` / `-from-native vmware-vmx`), define, undefine, listing and XML
//!   work, and every lifecycle call answers no-support naming the operation, the driver
//!   and the missing `vmrun`.

pub mod vmrun;

use rvirt_sdk::{
    PluginInfo,
    abi::{
        DomainInfo, DomainRef, DriverConnection, ErrorCode, ErrorDomain, EventSinkBox, NodeInfo,
        PResult, PluginError, StateReason, Uuid,
        abi_stable::std_types::{RResult, RStr, RString, RVec},
        state,
    },
    filter,
    util::{atomic_write, check_flags, from_abi_uuid, read_only_denied, to_abi_uuid},
};
use rvirt_vmx::{Context, Vmx};
use rvirt_xml::Element;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use vmrun::{Product, Vmrun};

rvirt_sdk::export_plugin! {
    manifest: PluginInfo {
        name: "vmware-desktop",
        kind: "hypervisor",
        schemes: &["vmwareplayer", "vmwarews", "vmwarefusion"],
        version: env!("CARGO_PKG_VERSION"),
        description: "VMware Player, Workstation and Fusion through vmrun and .vmx files, compatible with libvirt's vmware driver",
    },
    open: open,
}

/// libvirt's `VIR_FROM_VMWARE` error domain (not among the ABI's named domains).
const FROM_VMWARE: i32 = 39;

/// The virtual hardware version libvirt's vmware driver writes.
pub const VIRTUAL_HW_VERSION: u32 = 7;

fn err(code: ErrorCode, message: impl Into<String>) -> PluginError {
    PluginError {
        code: code as i32,
        domain: FROM_VMWARE,
        message: message.into().into(),
    }
}

/// Serialises this process's changes to the registry.
static LOCK: Mutex<()> = Mutex::new(());

/// Opens `vmwareplayer|vmwarews|vmwarefusion:///session`.
pub fn open(
    uri: &str,
    read_only: bool,
    events: EventSinkBox,
) -> Result<VmwareConnection, PluginError> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| err(ErrorCode::InvalidArg, format!("'{uri}' is not a URI")))?;
    let product = Product::from_scheme(scheme).ok_or_else(|| {
        err(
            ErrorCode::InvalidArg,
            format!("scheme '{scheme}' is not served by the VMware Desktop driver"),
        )
    })?;
    let path = rest.split('?').next().unwrap_or("");
    if path != "/session" {
        return Err(err(
            ErrorCode::InvalidArg,
            format!(
                "invalid path in URI '{uri}': the VMware Desktop driver serves only '{scheme}:///session'"
            ),
        ));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or_else(|| {
            err(
                ErrorCode::OpenFailed,
                "neither XDG_CONFIG_HOME nor HOME is set",
            )
        })?;
    let registry = config.join("rvirt").join("vmware").join(scheme);
    let vmrun = vmrun::find_in_path("vmrun").map(|path| Vmrun { path, product });
    let version = if vmrun.is_some() {
        vmrun::product_version(product)
    } else {
        0
    };
    Ok(VmwareConnection {
        product,
        vmrun,
        version,
        registry,
        read_only,
        events,
    })
}

/// One connection.
pub struct VmwareConnection {
    product: Product,
    /// `None` where `vmrun` is not on `PATH`.
    vmrun: Option<Vmrun>,
    version: u64,
    registry: PathBuf,
    read_only: bool,
    events: EventSinkBox,
}

/// A domain as read from its `.vmx` and `vmrun list`.
#[derive(Debug, Clone)]
struct Dom {
    name: String,
    uuid: uuid::Uuid,
    vmx: PathBuf,
    persistent: bool,
    state: i32,
    id: i32,
    memory_kib: u64,
    max_kib: u64,
    vcpus: u32,
}

impl Dom {
    fn reference(&self) -> DomainRef {
        DomainRef {
            name: self.name.as_str().into(),
            uuid: to_abi_uuid(self.uuid),
            id: self.id,
        }
    }
}

/// `VIR_DOMAIN_EVENT_*` numbers and details.
mod event {
    pub const DEFINED: i32 = 0;
    pub const UNDEFINED: i32 = 1;
    pub const STARTED: i32 = 2;
    pub const SUSPENDED: i32 = 3;
    pub const RESUMED: i32 = 4;
    pub const STOPPED: i32 = 5;
    pub const STOPPED_SHUTDOWN: i32 = 0;
    pub const STOPPED_DESTROYED: i32 = 1;
}

/// The `.vmx` conversion context for a file in `dir`.
fn context(dir: &Path) -> Context {
    let mut c = Context::local(&dir.to_string_lossy());
    c.virtual_hw_version = VIRTUAL_HW_VERSION;
    c.default_scsi_model = None;
    c
}

fn vmx_err(e: rvirt_vmx::VmxError) -> PluginError {
    let code = match e {
        rvirt_vmx::VmxError::Xml { .. } | rvirt_vmx::VmxError::Parse(_) => ErrorCode::XmlError,
        _ => ErrorCode::ConfigUnsupported,
    };
    err(code, e.to_string())
}

/// Reads a `.vmx` as domain XML.
fn read_domain(vmx: &Path) -> Result<Element, PluginError> {
    let text = std::fs::read_to_string(vmx).map_err(|e| {
        err(
            ErrorCode::OperationFailed,
            format!("cannot read '{}': {e}", vmx.display()),
        )
    })?;
    let dir = vmx.parent().unwrap_or(Path::new("/"));
    rvirt_vmx::vmx_to_domain(&Vmx::parse(&text).map_err(vmx_err)?, &context(dir)).map_err(vmx_err)
}

fn text_of(e: &Element, name: &str) -> Option<String> {
    e.child(name).map(|c| c.text().trim().to_string())
}

/// Where libvirt's vmware driver puts a domain's `.vmx`: `NAME.vmx` in the directory of
/// its first file-backed `.vmdk` hard disk.
fn vmx_path(dom: &Element, name: &str) -> Result<PathBuf, PluginError> {
    let disk = dom
        .child("devices")
        .into_iter()
        .flat_map(|d| d.children_named("disk"))
        .filter(|d| d.attr("device").unwrap_or("disk") == "disk")
        .find_map(|d| d.child("source").and_then(|s| s.attr("file")))
        .ok_or_else(|| {
            err(
                ErrorCode::ConfigUnsupported,
                "domain/devices/disk: the VMware Desktop driver places the .vmx beside the first hard disk, and this domain has no file-backed hard disk",
            )
        })?;
    let p = Path::new(disk);
    if !p.is_absolute() || !disk.to_ascii_lowercase().ends_with(".vmdk") {
        return Err(err(
            ErrorCode::ConfigUnsupported,
            format!(
                "domain/devices/disk/source/@file: '{disk}' must be an absolute path to a .vmdk"
            ),
        ));
    }
    if name.contains('/') || name.starts_with('.') || name.is_empty() {
        return Err(err(
            ErrorCode::XmlError,
            format!("domain/name: '{name}' cannot name a .vmx file"),
        ));
    }
    Ok(p.parent()
        .unwrap_or(Path::new("/"))
        .join(format!("{name}.vmx")))
}

impl VmwareConnection {
    fn driver_name(&self) -> String {
        format!("{} driver '{}'", self.product.name(), self.product.scheme())
    }

    /// `vmrun`, or the no-support error naming the operation where it is missing.
    fn vmrun(&self, op: &str) -> Result<&Vmrun, PluginError> {
        self.vmrun.as_ref().ok_or_else(|| {
            err(
                ErrorCode::NoSupport,
                format!(
                    "this function is not supported by the connection driver: {op}: vmrun is missing (not found on PATH; {} needs it for lifecycle operations)",
                    self.driver_name()
                ),
            )
        })
    }

    fn vmrun_call(&self, op: &str, args: &[&str]) -> Result<String, PluginError> {
        self.vmrun(op)?
            .run(args)
            .map_err(|e| err(ErrorCode::OperationFailed, format!("{op}: {e}")))
    }

    fn paused_marker(&self, name: &str) -> PathBuf {
        self.registry.join("run").join(format!("{name}.paused"))
    }

    fn registered(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.registry) else {
            return out;
        };
        for e in rd.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".vmxpath")
                && let Ok(p) = std::fs::read_to_string(e.path())
            {
                out.push((name.to_string(), PathBuf::from(p.trim_end_matches('\n'))));
            }
        }
        out.sort();
        out
    }

    fn facts(&self, vmx: &Path, persistent: bool, running: &[PathBuf]) -> Result<Dom, PluginError> {
        let dom = read_domain(vmx)?;
        let name = text_of(&dom, "name").unwrap_or_else(|| {
            vmx.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let uuid = text_of(&dom, "uuid")
            .and_then(|u| uuid::Uuid::parse_str(&u).ok())
            .unwrap_or_default();
        let num = |n: &str| {
            text_of(&dom, n)
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let is_running = running.iter().any(|r| r == vmx);
        let (st, id) = if is_running {
            let st = if self.paused_marker(&name).exists() {
                state::PAUSED
            } else {
                state::RUNNING
            };
            (st, vmrun::vm_pid(vmx).unwrap_or(0))
        } else {
            (state::SHUTOFF, -1)
        };
        Ok(Dom {
            name,
            uuid,
            vmx: vmx.to_path_buf(),
            persistent,
            state: st,
            id,
            memory_kib: num("currentMemory"),
            max_kib: num("memory"),
            vcpus: num("vcpu") as u32,
        })
    }

    fn domains(&self) -> Result<Vec<Dom>, PluginError> {
        let running = match &self.vmrun {
            Some(v) => v.list().map_err(|e| {
                err(
                    ErrorCode::OperationFailed,
                    format!("listing running VMs: {e}"),
                )
            })?,
            None => Vec::new(),
        };
        let mut out = Vec::new();
        let reg = self.registered();
        for (name, path) in &reg {
            if !path.exists() && !self.paused_marker(name).exists() {
                // The .vmx was removed behind the driver's back: still listed, shut off.
                out.push(Dom {
                    name: name.clone(),
                    uuid: uuid::Uuid::nil(),
                    vmx: path.clone(),
                    persistent: true,
                    state: state::SHUTOFF,
                    id: -1,
                    memory_kib: 0,
                    max_kib: 0,
                    vcpus: 0,
                });
                continue;
            }
            out.push(self.facts(path, true, &running)?);
        }
        for r in &running {
            if reg.iter().any(|(_, p)| p == r) {
                continue;
            }
            if let Ok(d) = self.facts(r, false, &running) {
                out.push(d);
            }
        }
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

    fn emit(&self, d: &Dom, ev: i32, detail: i32) {
        let mut r = d.reference();
        if ev == event::STOPPED || ev == event::UNDEFINED || ev == event::DEFINED {
            r.id = -1;
        }
        self.events.domain_lifecycle(r, ev, detail);
    }

    fn write_guard(&self, op: &str) -> Result<std::sync::MutexGuard<'static, ()>, PluginError> {
        if self.read_only {
            return Err(read_only_denied(op));
        }
        Ok(LOCK.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn define(&self, xml: &str) -> Result<Dom, PluginError> {
        let _g = self.write_guard("virDomainDefineXML")?;
        let dom = Element::parse(xml).map_err(|e| err(ErrorCode::XmlError, e.to_string()))?;
        let name = text_of(&dom, "name")
            .ok_or_else(|| err(ErrorCode::XmlError, "domain/name: missing"))?;
        let path = vmx_path(&dom, &name)?;
        let mut dom = dom;
        if dom.child("uuid").is_none() {
            let mut u = Element::new("uuid");
            u.set_text(&uuid::Uuid::new_v4().hyphenated().to_string());
            dom.push(u);
        }
        let uuid = text_of(&dom, "uuid").and_then(|u| uuid::Uuid::parse_str(&u).ok());
        // Names and UUIDs are unique, as in libvirt.
        for d in self.domains()? {
            if d.name == name && Some(d.uuid) != uuid && !d.uuid.is_nil() {
                return Err(err(
                    ErrorCode::DomExist,
                    format!(
                        "operation failed: domain '{name}' already exists with uuid {}",
                        d.uuid
                    ),
                ));
            }
            if Some(d.uuid) == uuid && d.name != name {
                return Err(err(
                    ErrorCode::DomExist,
                    format!(
                        "operation failed: domain '{}' is already defined with uuid {}",
                        d.name, d.uuid
                    ),
                ));
            }
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        let text = rvirt_vmx::domain_to_vmx(&dom, &context(dir))
            .map_err(vmx_err)?
            .to_text();
        write_private(&path, text.as_bytes())?;
        std::fs::create_dir_all(&self.registry).map_err(|e| {
            err(
                ErrorCode::OperationFailed,
                format!("cannot create '{}': {e}", self.registry.display()),
            )
        })?;
        write_private(
            &self.registry.join(format!("{name}.vmxpath")),
            format!("{}\n", path.display()).as_bytes(),
        )?;
        drop(_g);
        let d = self.find(|d| d.name == name, &name)?;
        self.emit(&d, event::DEFINED, 0);
        Ok(d)
    }

    fn undefine(&self, u: Uuid) -> Result<(), PluginError> {
        let _g = self.write_guard("virDomainUndefine")?;
        let d = self.by_uuid(u)?;
        if !d.persistent {
            return Err(err(
                ErrorCode::OperationInvalid,
                "requested operation is not valid: cannot undefine transient domain",
            ));
        }
        // The .vmx stays, as with libvirt's driver: VMware's files belong to the user.
        let reg = self.registry.join(format!("{}.vmxpath", d.name));
        std::fs::remove_file(&reg).map_err(|e| {
            err(
                ErrorCode::OperationFailed,
                format!("cannot remove '{}': {e}", reg.display()),
            )
        })?;
        self.emit(&d, event::UNDEFINED, 0);
        Ok(())
    }

    fn start(&self, u: Uuid) -> Result<Dom, PluginError> {
        let op = "virDomainCreateWithFlags";
        self.vmrun(op)?;
        let _g = self.write_guard(op)?;
        let d = self.by_uuid(u)?;
        if d.state != state::SHUTOFF {
            return Err(err(
                ErrorCode::OperationInvalid,
                "requested operation is not valid: domain is already running",
            ));
        }
        let path = d.vmx.to_string_lossy().into_owned();
        self.vmrun_call(op, &["start", &path])?;
        let _ = std::fs::remove_file(self.paused_marker(&d.name));
        let d = self.by_uuid(u)?;
        if d.state == state::SHUTOFF {
            return Err(err(
                ErrorCode::OperationFailed,
                format!("vmrun started '{path}', but vmrun list does not show it running"),
            ));
        }
        self.emit(&d, event::STARTED, 0);
        Ok(d)
    }

    fn stop(&self, u: Uuid, op: &str, detail: i32) -> Result<(), PluginError> {
        self.vmrun(op)?;
        let _g = self.write_guard(op)?;
        let d = self.by_uuid(u)?;
        if d.state == state::SHUTOFF {
            return Err(err(
                ErrorCode::OperationInvalid,
                "requested operation is not valid: domain is not running",
            ));
        }
        self.vmrun_call(op, &["stop", &d.vmx.to_string_lossy(), "soft"])?;
        let _ = std::fs::remove_file(self.paused_marker(&d.name));
        self.emit(&d, event::STOPPED, detail);
        Ok(())
    }

    fn pause(&self, u: Uuid, pause: bool) -> Result<(), PluginError> {
        let op = if pause {
            "virDomainSuspend"
        } else {
            "virDomainResume"
        };
        if self.product == Product::Player {
            return Err(err(
                ErrorCode::NoSupport,
                format!(
                    "this function is not supported by the connection driver: {op}: VMware Player has no pause/unpause"
                ),
            ));
        }
        self.vmrun(op)?;
        let _g = self.write_guard(op)?;
        let d = self.by_uuid(u)?;
        let want = if pause { state::RUNNING } else { state::PAUSED };
        if d.state != want {
            let why = if pause {
                "domain is not running"
            } else {
                "domain is not paused"
            };
            return Err(err(
                ErrorCode::OperationInvalid,
                format!("requested operation is not valid: {why}"),
            ));
        }
        let path = d.vmx.to_string_lossy().into_owned();
        self.vmrun_call(op, &[if pause { "pause" } else { "unpause" }, &path])?;
        let marker = self.paused_marker(&d.name);
        if pause {
            std::fs::create_dir_all(marker.parent().unwrap_or(Path::new("/")))
                .and_then(|()| std::fs::write(&marker, b""))
                .map_err(|e| {
                    err(
                        ErrorCode::OperationFailed,
                        format!("cannot write '{}': {e}", marker.display()),
                    )
                })?;
            self.emit(&d, event::SUSPENDED, 0);
        } else {
            let _ = std::fs::remove_file(&marker);
            self.emit(&d, event::RESUMED, 0);
        }
        Ok(())
    }

    fn reset(&self, u: Uuid) -> Result<(), PluginError> {
        let op = "virDomainReboot";
        self.vmrun(op)?;
        let _g = self.write_guard(op)?;
        let d = self.by_uuid(u)?;
        if d.state != state::RUNNING {
            return Err(err(
                ErrorCode::OperationInvalid,
                "requested operation is not valid: domain is not running",
            ));
        }
        self.vmrun_call(op, &["reset", &d.vmx.to_string_lossy(), "soft"])?;
        Ok(())
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), PluginError> {
    atomic_write(path, data).map_err(|e| {
        err(
            ErrorCode::OperationFailed,
            format!("cannot write '{}': {e}", path.display()),
        )
    })?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        err(
            ErrorCode::OperationFailed,
            format!("cannot set the mode of '{}': {e}", path.display()),
        )
    })
}

fn res<T>(r: Result<T, PluginError>) -> PResult<T> {
    r.into()
}

/// Converts domain XML to `.vmx` as this driver writes it (`domxml-to-native vmware-vmx`):
/// file names must be absolute paths.
pub fn xml_to_native(format: &str, xml: &str) -> Result<String, PluginError> {
    if format != rvirt_vmx::NATIVE_FORMAT {
        return Err(err(
            ErrorCode::InvalidArg,
            format!(
                "invalid argument: unsupported config type {format} (only '{}')",
                rvirt_vmx::NATIVE_FORMAT
            ),
        ));
    }
    let mut ctx = context(Path::new("/"));
    ctx.virtual_hw_version = VIRTUAL_HW_VERSION;
    rvirt_vmx::xml_to_vmx(xml, &ctx).map_err(vmx_err)
}

/// Converts `.vmx` text to domain XML (`domxml-from-native vmware-vmx`): relative file
/// names are taken relative to `vmx_dir`. Served as `domain_xml_from_native` (plugin API
/// 1.6) with `/`.
pub fn native_to_xml(format: &str, config: &str, vmx_dir: &Path) -> Result<String, PluginError> {
    if format != rvirt_vmx::NATIVE_FORMAT {
        return Err(err(
            ErrorCode::InvalidArg,
            format!(
                "invalid argument: unsupported config type {format} (only '{}')",
                rvirt_vmx::NATIVE_FORMAT
            ),
        ));
    }
    rvirt_vmx::vmx_text_to_xml(config, &context(vmx_dir)).map_err(vmx_err)
}

fn capabilities() -> String {
    let mut caps = Element::new("capabilities");
    let mut host = Element::new("host");
    let mut cpu = Element::new("cpu");
    cpu.push(Element::new("arch").with_text(std::env::consts::ARCH));
    host.push(cpu);
    caps.push(host);
    for (arch, bits) in [("i686", "32"), ("x86_64", "64")] {
        let mut g = Element::new("guest");
        g.push(Element::new("os_type").with_text("hvm"));
        let mut a = Element::new("arch").with_attr("name", arch);
        a.push(Element::new("wordsize").with_text(bits));
        a.push(Element::new("domain").with_attr("type", "vmware"));
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

impl DriverConnection for VmwareConnection {
    fn get_type(&self) -> PResult<RString> {
        RResult::ROk("VMware".into())
    }

    fn get_version(&self) -> PResult<u64> {
        RResult::ROk(self.version)
    }

    fn get_uri(&self) -> PResult<RString> {
        RResult::ROk(format!("{}:///session", self.product.scheme()).into())
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
                .filter(|d| {
                    filter::matches(
                        flags,
                        &filter::DomainFacts {
                            state: d.state,
                            persistent: d.persistent,
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
        res(self
            .find(
                |d| d.id == id && d.id >= 0,
                &format!("no domain with matching id {id}"),
            )
            .map(|d| d.reference()))
    }

    fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        // VIR_DOMAIN_DEFINE_VALIDATE: the conversion always validates.
        checked!("virDomainDefineXMLFlags", flags, 1);
        res(self.define(xml.as_str()).map(|d| d.reference()))
    }

    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainUndefineFlags", flags, 0);
        res(VmwareConnection::undefine(self, uuid))
    }

    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainCreateWithFlags", flags, 0);
        res(self.start(uuid).map(|d| d.reference()))
    }

    fn create_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainCreateXML", flags, 0);
        let r = (|| {
            self.vmrun("virDomainCreateXML")?;
            let d = self.define(xml.as_str())?;
            match self.start(to_abi_uuid(d.uuid)) {
                Ok(d) => {
                    // Transient: forget the definition, keep the running VM.
                    let _ = std::fs::remove_file(self.registry.join(format!("{}.vmxpath", d.name)));
                    Ok(d)
                }
                Err(e) => {
                    let _ = std::fs::remove_file(self.registry.join(format!("{}.vmxpath", d.name)));
                    Err(e)
                }
            }
        })();
        res(r.map(|d| d.reference()))
    }

    fn destroy(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainDestroyFlags", flags, 0);
        res(self.stop(uuid, "virDomainDestroyFlags", event::STOPPED_DESTROYED))
    }

    fn shutdown(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainShutdownFlags", flags, 0);
        res(self.stop(uuid, "virDomainShutdownFlags", event::STOPPED_SHUTDOWN))
    }

    fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainReboot", flags, 0);
        res(self.reset(uuid))
    }

    fn suspend(&self, uuid: Uuid) -> PResult<()> {
        res(self.pause(uuid, true))
    }

    fn resume(&self, uuid: Uuid) -> PResult<()> {
        res(self.pause(uuid, false))
    }

    fn get_info(&self, uuid: Uuid) -> PResult<DomainInfo> {
        res(self.by_uuid(uuid).map(|d| DomainInfo {
            state: d.state,
            max_mem_kib: d.max_kib,
            memory_kib: d.memory_kib,
            nr_virt_cpu: d.vcpus,
            cpu_time_ns: 0,
        }))
    }

    fn get_state(&self, uuid: Uuid) -> PResult<StateReason> {
        res(self.by_uuid(uuid).map(|d| StateReason {
            state: d.state,
            // VIR_DOMAIN_RUNNING_BOOTED, VIR_DOMAIN_PAUSED_USER, VIR_DOMAIN_SHUTOFF_UNKNOWN
            reason: match d.state {
                state::RUNNING => 1,
                state::PAUSED => 2,
                _ => 0,
            },
        }))
    }

    fn get_xml_desc(&self, uuid: Uuid, flags: u32) -> PResult<RString> {
        // VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_INACTIVE: the .vmx holds one definition.
        checked!("virDomainGetXMLDesc", flags, 1 | 2);
        res(self
            .by_uuid(uuid)
            .and_then(|d| read_domain(&d.vmx))
            .map(|e| e.to_xml_string().into()))
    }

    fn is_persistent(&self, uuid: Uuid) -> PResult<bool> {
        res(self.by_uuid(uuid).map(|d| d.persistent))
    }

    fn get_autostart(&self, uuid: Uuid) -> PResult<bool> {
        res(self.by_uuid(uuid).map(|_| false))
    }

    fn set_autostart(&self, _uuid: Uuid, _autostart: bool) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainSetAutostart"))
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
        res(xml_to_native(format.as_str(), xml.as_str()).map(RString::from))
    }

    fn domain_xml_from_native(
        &self,
        format: RStr<'_>,
        config: RStr<'_>,
        flags: u32,
    ) -> PResult<RString> {
        checked!("virConnectDomainXMLFromNative", flags, 0);
        // no .vmx file stands behind the text: file names are kept as written
        res(native_to_xml(format.as_str(), config.as_str(), Path::new("/")).map(RString::from))
    }
}

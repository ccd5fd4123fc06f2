//! The VMware vSphere driver: `esx://host/`, `gsx://host/` and
//! `vpx://vcenter/DATACENTER/COMPUTE[/HOST]`, as libvirt's esx driver, over the vSphere
//! SOAP API (`urn:vim25`, [`soap`] and [`vim`]) with one session per connection.
//!
//! * **Inventory** is read in batches: one `RetrievePropertiesEx` through a ContainerView
//!   of the datacenter's `vmFolder` lists every VM with the properties the driver needs
//!   (name, BIOS UUID, power state, memory, vCPUs, `.vmx` path). A lookup by UUID is one
//!   `SearchIndex.FindByUuid` plus the properties of that VM.
//! * **Ids** are the number of the VM's managed-object id (`vm-42` and `42` both give 42),
//!   as libvirt reports them, for powered-on and suspended VMs; shut-off VMs have none.
//!   `suspended` is libvirt's paused state.
//! * **XML** is the VM's `.vmx`, read from its datastore over HTTP
//!   (`/folder/PATH?dcPath=DC&dsName=DS`) and converted with `rvirt-vmx` in the datastore
//!   context (`[DS] dir/file` names). Where the file is empty or unreadable (vcsim, the
//!   simulator the tests run against, creates its VMs' `.vmx` files empty), the `.vmx` view
//!   is built from the VM's config properties instead (name, UUID, memory, vCPUs, guest
//!   OS, hardware version, and disks, ISO CD-ROMs and NICs from `config.hardware.device`).
//! * **Define** converts the XML to `.vmx`, uploads it beside the first disk
//!   (`[DS] dir/NAME.vmx`, HTTP PUT) and registers it (`RegisterVM_Task` in the vmFolder,
//!   the compute resource's pool); editing an existing domain is refused, as by libvirt.
//! * **Credentials** come from libvirt's `auth.conf` (the plugin API has no callback to
//!   ask the client; `rvirt` asks on the terminal and hands the answers over as a private
//!   `authfile=`): see [`uri::EsxUri::credentials`].
//! * **Storage pools and networks** are the connection's own (plugin API 1.10, [`owned`]):
//!   datastores, their `.vmdk` files, and the host's virtual switches.
//! * **Snapshots, memory and vCPU changes** have no methods in plugin API 1.6; they are
//!   offered as inherent methods of [`EsxConnection`] (tested in-process) until the API
//!   grows them.

pub mod owned;
pub mod soap;
pub mod uri;
pub mod vim;

use rvirt_sdk::{
    PluginInfo,
    abi::{
        ConnExtensionBox, DomainInfo, DomainRef, DriverConnection, ErrorCode, ErrorDomain,
        EventSinkBox, NodeInfo, PResult, PluginError, StateReason, Uuid,
        abi_stable::std_types::{RResult, RStr, RString, RVec},
        state,
    },
    filter,
    util::{check_flags, from_abi_uuid, read_only_denied, to_abi_uuid},
};
use rvirt_vmx::{Context, Vmx};
use rvirt_xml::Element;
use soap::{Client, MoRef, Node, Options};
use uri::{EsxUri, Scheme};
use vim::{ObjectContent, PropertySink, Session, VimError};

rvirt_sdk::export_plugin! {
    manifest: PluginInfo {
        name: "esx",
        kind: "hypervisor",
        schemes: &["esx", "gsx", "vpx"],
        version: env!("CARGO_PKG_VERSION"),
        description: "VMware ESX, GSX and vCenter over the vSphere SOAP API, compatible with libvirt's esx driver",
    },
    open: open,
}

/// libvirt's `VIR_FROM_ESX` error domain (not among the ABI's named domains).
const FROM_ESX: i32 = 28;

fn err(code: ErrorCode, message: impl Into<String>) -> PluginError {
    PluginError {
        code: code as i32,
        domain: FROM_ESX,
        message: message.into().into(),
    }
}

/// A vSphere error as a libvirt one: the fault decides the code.
fn vim_err(op: &str, e: VimError) -> PluginError {
    let code = match e.fault() {
        Some("InvalidPowerState") | Some("InvalidState") | Some("TaskInProgress") => {
            ErrorCode::OperationInvalid
        }
        Some("ManagedObjectNotFound") => ErrorCode::NoDomain,
        Some("InvalidLogin") | Some("NoPermission") | Some("NotAuthenticated") => {
            ErrorCode::OperationDenied
        }
        Some("NotImplemented") | Some("NotSupported") | Some("MethodNotFound") => {
            ErrorCode::NoSupport
        }
        _ => ErrorCode::OperationFailed,
    };
    err(code, format!("{op}: {e}"))
}

fn no_support(op: &str, why: &str) -> PluginError {
    err(
        ErrorCode::NoSupport,
        format!(
            "this function is not supported by the connection driver: {op} (esx driver: {why})"
        ),
    )
}

/// The properties of a VM the driver reads in one batch.
const VM_PROPS: &[&str] = &[
    "name",
    "config.uuid",
    "runtime.powerState",
    "config.hardware.memoryMB",
    "config.hardware.numCPU",
    "config.files.vmPathName",
];

/// The extra properties the `.vmx` view of a VM is built from.
const VMX_PROPS: &[&str] = &[
    "config.guestId",
    "config.version",
    "config.annotation",
    "config.hardware.device",
];

/// `/vmfs/volumes/DS/PATH`, the `.vmx` spelling of the datastore path `[DS] PATH`.
fn vmfs_path(ds_path: &str) -> Option<String> {
    let (ds, path) = rvirt_vmx::context::parse_datastore_path(ds_path)?;
    Some(format!("/vmfs/volumes/{ds}/{path}"))
}

/// The `.vmx` entries of a VM's `config.hardware.device` (`ArrayOfVirtualDevice`):
/// SCSI/IDE/SATA hard disks and ISO CD-ROMs on their controllers, and NICs, as ESX
/// writes them. Devices the domain XML does not show (PS/2, PCI, VMCI, video) and
/// host-device CD-ROMs are left out.
fn devices_to_vmx(x: &mut Vmx, devices: &Node) {
    // controller key -> (vmx bus prefix, bus number, SCSI model)
    let mut ctl: Vec<(String, &'static str, String, Option<&'static str>)> = Vec::new();
    for d in &devices.children {
        let (bus, model) = match d.xsi_type.as_deref().unwrap_or("") {
            "VirtualLsiLogicController" => ("scsi", Some("lsilogic")),
            "VirtualLsiLogicSASController" => ("scsi", Some("lsisas1068")),
            "ParaVirtualSCSIController" => ("scsi", Some("pvscsi")),
            "VirtualBusLogicController" => ("scsi", Some("buslogic")),
            "VirtualIDEController" => ("ide", None),
            "VirtualAHCIController" => ("sata", None),
            _ => continue,
        };
        if let (Some(k), Some(n)) = (d.text_of("key"), d.text_of("busNumber")) {
            ctl.push((k.to_string(), bus, n.to_string(), model));
        }
    }
    let slot = |d: &Node| -> Option<(String, &'static str, Option<&'static str>, String)> {
        let key = d.text_of("controllerKey")?;
        let (_, bus, n, model) = ctl.iter().find(|c| c.0 == key)?;
        Some((
            format!("{bus}{n}:{}", d.text_of("unitNumber")?),
            bus,
            *model,
            n.clone(),
        ))
    };
    let mut used = std::collections::BTreeSet::new();
    let mut nic = 0;
    for d in &devices.children {
        let ty = d.xsi_type.as_deref().unwrap_or("");
        let file = d
            .path("backing/fileName")
            .map(|f| f.text.trim().to_string());
        match ty {
            "VirtualDisk" | "VirtualCdrom" => {
                let Some((prefix, bus, model, n)) = slot(d) else {
                    continue;
                };
                let device_type = match (ty, bus) {
                    ("VirtualDisk", "scsi") => "scsi-hardDisk",
                    ("VirtualDisk", _) => "ata-hardDisk",
                    // only ISO images: a host device of the ESX host means nothing here
                    _ if d.path("backing").and_then(|b| b.xsi_type.as_deref())
                        == Some("VirtualCdromIsoBackingInfo") =>
                    {
                        "cdrom-image"
                    }
                    _ => continue,
                };
                // a unit holds one device (vcsim puts its CD-ROM and disk on one)
                if !used.insert(prefix.clone()) {
                    continue;
                }
                if bus == "scsi" {
                    x.set(&format!("scsi{n}.present"), "TRUE");
                    if let Some(m) = model {
                        x.set(&format!("scsi{n}.virtualDev"), m);
                    }
                } else if bus == "sata" {
                    x.set(&format!("sata{n}.present"), "TRUE");
                }
                x.set(&format!("{prefix}.present"), "TRUE");
                x.set(&format!("{prefix}.deviceType"), device_type);
                if let Some(f) = file.as_deref().and_then(vmfs_path) {
                    x.set(&format!("{prefix}.fileName"), &f);
                }
            }
            "VirtualE1000" | "VirtualE1000e" | "VirtualVmxnet3" | "VirtualVmxnet2"
            | "VirtualVmxnet" | "VirtualPCNet32" => {
                let p = format!("ethernet{nic}");
                nic += 1;
                let dev = match ty {
                    "VirtualE1000" => "e1000",
                    "VirtualE1000e" => "e1000e",
                    "VirtualVmxnet3" => "vmxnet3",
                    "VirtualPCNet32" => "vlance",
                    _ => "vmxnet",
                };
                x.set(&format!("{p}.present"), "TRUE");
                x.set(&format!("{p}.virtualDev"), dev);
                if ty == "VirtualVmxnet2" {
                    x.set(&format!("{p}.features"), "15");
                }
                if let Some(port) = d.path("backing/port") {
                    // a distributed switch port (vCenter)
                    for (key, field) in [
                        ("dvs.switchId", "switchUuid"),
                        ("dvs.portId", "portKey"),
                        ("dvs.portgroupId", "portgroupKey"),
                        ("dvs.connectionId", "connectionCookie"),
                    ] {
                        if let Some(v) = port.text_of(field).filter(|v| !v.is_empty()) {
                            x.set(&format!("{p}.{key}"), &rvirt_vmx::vmx::escape(v));
                        }
                    }
                } else if let Some(net) = d.path("backing/deviceName").map(|n| n.text.trim()) {
                    x.set(&format!("{p}.networkName"), &rvirt_vmx::vmx::escape(net));
                    x.set(&format!("{p}.connectionType"), "bridged");
                }
                if let Some(mac) = d.text_of("macAddress").filter(|m| !m.is_empty()) {
                    if d.text_of("addressType") == Some("manual") {
                        x.set(&format!("{p}.addressType"), "static");
                        x.set(&format!("{p}.address"), mac);
                    } else {
                        x.set(&format!("{p}.addressType"), "generated");
                        x.set(&format!("{p}.generatedAddress"), mac);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A VM as the driver sees it.
#[derive(Debug, Clone)]
pub struct Vm {
    pub obj: MoRef,
    pub name: String,
    pub uuid: uuid::Uuid,
    pub state: i32,
    pub id: i32,
    pub memory_mb: u64,
    pub vcpus: u32,
    pub vmx_path: String,
}

impl Vm {
    /// A VM with nothing read yet (shut off, no id).
    fn new(obj: MoRef) -> Vm {
        Vm {
            obj,
            name: String::new(),
            uuid: uuid::Uuid::nil(),
            state: state::SHUTOFF,
            id: -1,
            memory_mb: 0,
            vcpus: 0,
            vmx_path: String::new(),
        }
    }

    /// Takes the property `path` (one of [`VM_PROPS`]) with the (trimmed) text `v`;
    /// other paths are ignored.
    fn set(&mut self, path: &str, v: &str) {
        match path {
            "name" => self.name = v.to_string(),
            "config.uuid" => self.uuid = uuid::Uuid::parse_str(v).unwrap_or_default(),
            "runtime.powerState" => {
                self.state = match v {
                    "poweredOn" => state::RUNNING,
                    "suspended" => state::PAUSED,
                    _ => state::SHUTOFF,
                };
                // libvirt's ids: the number of the managed-object id, for VMs that run
                // or are suspended
                let num = self.obj.value.trim_start_matches("vm-");
                let digits = num.find(|c: char| !c.is_ascii_digit()).unwrap_or(num.len());
                self.id = if self.state == state::SHUTOFF {
                    -1
                } else {
                    num[..digits].parse().unwrap_or(-1)
                };
            }
            "config.hardware.memoryMB" => {
                self.memory_mb = v.parse::<i64>().unwrap_or(0).max(0) as u64
            }
            "config.hardware.numCPU" => self.vcpus = v.parse::<i64>().unwrap_or(0).max(0) as u32,
            "config.files.vmPathName" => self.vmx_path = v.to_string(),
            _ => {}
        }
    }

    fn from_content(o: &ObjectContent) -> Vm {
        let mut v = Vm::new(o.obj.clone());
        for (path, val) in &o.props {
            v.set(path, val.text.trim());
        }
        v
    }

    fn reference(&self) -> DomainRef {
        DomainRef {
            name: self.name.as_str().into(),
            uuid: to_abi_uuid(self.uuid),
            id: self.id,
        }
    }
}

/// Reads VMs straight off a retrieval's answer, without trees: the [`VM_PROPS`] that were
/// asked for (the listing's hot path: 500 VMs are 3,000 values).
#[derive(Debug, Default)]
struct VmSink {
    vms: Vec<Vm>,
    text: String,
}

impl PropertySink for VmSink {
    fn object(&mut self, obj: MoRef) {
        self.vms.push(Vm::new(obj));
    }

    fn property<R: std::io::BufRead>(
        &mut self,
        path: &str,
        p: &mut soap::Pull<R>,
        empty: bool,
    ) -> Result<(), soap::SoapError> {
        p.text_into(&mut self.text, empty)?;
        if let Some(v) = self.vms.last_mut() {
            v.set(path, &self.text);
        }
        Ok(())
    }
}

/// One snapshot of a VM (`snapshot.rootSnapshotList`, flattened depth first).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub obj: MoRef,
    pub name: String,
    pub description: String,
    /// The parent snapshot's name.
    pub parent: Option<String>,
    pub create_time: String,
    /// The VM's power state when taken.
    pub state: String,
    pub current: bool,
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

/// Where the connection's domains live.
#[derive(Debug, Clone)]
struct Inventory {
    datacenter: MoRef,
    dc_name: String,
    vm_folder: MoRef,
    datastores: Vec<String>,
    pool: MoRef,
    /// The host named by the URI (vpx with a host), else the compute resource's first.
    host: Option<MoRef>,
    /// Whether the URI named the host (passed on to RegisterVM_Task).
    host_named: bool,
}

/// One connection.
pub struct EsxConnection {
    uri: String,
    parsed: EsxUri,
    /// Shared with the connection's own storage and networks ([`owned`]); the session
    /// logs out when the last holder drops it.
    session: std::sync::Arc<Session>,
    inv: Inventory,
    read_only: bool,
    events: EventSinkBox,
    /// The ContainerView of the vmFolder's VMs, made once per session and kept (the
    /// server updates it; it ends with the session).
    vm_view: std::sync::Mutex<Option<MoRef>>,
    /// The last list of VMs (or the one VM a lookup by name read) and when it was read:
    /// state queries within [`RECENT`] of it answer from it (`virsh list` / `rvirt list`
    /// ask each listed domain's state, `dominfo` looks up and then asks), and every change
    /// this connection makes forgets it.
    recent: std::sync::Mutex<Option<(std::time::Instant, Vec<Vm>)>>,
    /// The host's autostart manager (`None` inside: the host has none).
    autostart_mgr: std::sync::OnceLock<Option<MoRef>>,
}

/// How long a list of VMs answers state queries (see `EsxConnection::recent`).
const RECENT: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens `esx://`, `gsx://` or `vpx://`.
pub fn open(
    uri: &str,
    read_only: bool,
    events: EventSinkBox,
) -> Result<EsxConnection, PluginError> {
    let parsed = EsxUri::parse(uri).map_err(|e| err(ErrorCode::InvalidArg, e.to_string()))?;
    let (user, password) = parsed
        .credentials()
        .map_err(|e| err(ErrorCode::OpenFailed, e.to_string()))?;
    let client = Client::new(
        &parsed.base(),
        &Options {
            no_verify: parsed.no_verify,
            proxy: parsed.proxy.clone(),
        },
    )
    .map_err(|e| err(ErrorCode::OpenFailed, e.to_string()))?;
    let session = Session::login(client, &user, &password).map_err(|e| {
        let code = if e.fault() == Some("InvalidLogin") {
            ErrorCode::OperationDenied
        } else {
            ErrorCode::OpenFailed
        };
        err(code, format!("cannot log in to {}: {e}", parsed.base()))
    })?;
    let c = &session.content;
    let expected: &[&str] = match parsed.scheme {
        Scheme::Esx => &["esx", "embeddedEsx"],
        Scheme::Gsx => &["gsx"],
        Scheme::Vpx => &["vpx"],
    };
    if !expected.contains(&c.product_line.as_str()) {
        return Err(err(
            ErrorCode::OpenFailed,
            format!(
                "{} is '{}' (product line '{}'), not what the {}:// scheme connects to ({})",
                parsed.host,
                c.full_name,
                c.product_line,
                parsed.scheme.name(),
                expected.join(" or ")
            ),
        ));
    }
    let inv = inventory(&session, &parsed)?;
    Ok(EsxConnection {
        uri: uri.to_string(),
        parsed,
        session: std::sync::Arc::new(session),
        inv,
        read_only,
        events,
        vm_view: std::sync::Mutex::new(None),
        recent: std::sync::Mutex::new(None),
        autostart_mgr: std::sync::OnceLock::new(),
    })
}

fn moref_list(n: Option<&Node>) -> Vec<MoRef> {
    n.map(|n| n.children.iter().filter_map(Node::moref).collect())
        .unwrap_or_default()
}

/// Finds the datacenter, the compute resource (its pool) and the host of the URI.
fn inventory(s: &Session, u: &EsxUri) -> Result<Inventory, PluginError> {
    let fail = |e| vim_err("reading the inventory", e);
    let root = s.content.root_folder.clone();
    let segs: Vec<&str> = u.path.split('/').filter(|p| !p.is_empty()).collect();
    let dcs = s
        .retrieve_all(&root, "Datacenter", &["name", "vmFolder"])
        .map_err(fail)?;
    let dc = match segs.first() {
        Some(want) => dcs.iter().find(|d| d.text("name") == Some(want)),
        None => dcs.first(),
    }
    .ok_or_else(|| {
        err(
            ErrorCode::OpenFailed,
            format!(
                "no datacenter '{}' on {}",
                segs.first().unwrap_or(&""),
                u.host
            ),
        )
    })?;
    let missing = |what: &str| err(ErrorCode::OpenFailed, format!("datacenter without {what}"));
    let vm_folder = dc
        .get("vmFolder")
        .and_then(Node::moref)
        .ok_or_else(|| missing("vmFolder"))?;
    // the datacenter's datastores and compute resources in one view and one retrieval
    let view = s
        .container_view_of(&dc.obj, &["Datastore", "ComputeResource"])
        .map_err(fail)?;
    let objs = s.retrieve_specs(
        &view,
        true,
        &[
            ("Datastore", &["name"]),
            ("ComputeResource", &["name", "resourcePool", "host"]),
        ],
    );
    s.destroy_view(&view);
    let objs = objs.map_err(fail)?;
    let datastores = objs
        .iter()
        .filter(|o| o.obj.kind == "Datastore")
        .filter_map(|d| d.text("name").map(str::to_string))
        .collect();
    // ClusterComputeResource is a ComputeResource
    let computes: Vec<&ObjectContent> = objs
        .iter()
        .filter(|o| o.obj.kind.ends_with("ComputeResource"))
        .collect();
    // vpx://vc/DC/[FOLDER/…]COMPUTE[/HOST]: the compute resource is the last segment, or
    // the one before it when the last names one of its hosts.
    let rest = segs.get(1..).unwrap_or_default();
    let mut host_name = None;
    let compute = if rest.is_empty() {
        computes.first().copied()
    } else {
        let last = rest[rest.len() - 1];
        match computes.iter().find(|c| c.text("name") == Some(last)) {
            Some(c) => Some(*c),
            None if rest.len() >= 2 => {
                host_name = Some(last);
                computes
                    .iter()
                    .find(|c| c.text("name") == Some(rest[rest.len() - 2]))
                    .copied()
            }
            None => None,
        }
    }
    .ok_or_else(|| {
        err(
            ErrorCode::OpenFailed,
            format!("no compute resource matches the path '{}'", u.path),
        )
    })?;
    let pool = compute
        .get("resourcePool")
        .and_then(Node::moref)
        .ok_or_else(|| missing("a resource pool"))?;
    let hosts = moref_list(compute.get("host"));
    let host = match host_name {
        Some(name) => {
            let mut found = None;
            for h in &hosts {
                let o = s.retrieve_one(h, &["name"]).map_err(fail)?;
                if o.text("name") == Some(name) {
                    found = Some(h.clone());
                }
            }
            Some(found.ok_or_else(|| {
                err(
                    ErrorCode::OpenFailed,
                    format!("no host '{name}' in the compute resource"),
                )
            })?)
        }
        None => hosts.first().cloned(),
    };
    Ok(Inventory {
        datacenter: dc.obj.clone(),
        dc_name: dc.text("name").unwrap_or("").to_string(),
        vm_folder,
        datastores,
        pool,
        host,
        host_named: host_name.is_some(),
    })
}

/// Percent-encodes a URL path (keeping `/`) or query value.
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn vmx_err(e: rvirt_vmx::VmxError) -> PluginError {
    let code = match e {
        rvirt_vmx::VmxError::Xml { .. } | rvirt_vmx::VmxError::Parse(_) => ErrorCode::XmlError,
        _ => ErrorCode::ConfigUnsupported,
    };
    err(code, e.to_string())
}

/// libvirt's error for a snapshot name the VM does not have.
fn no_snapshot(name: &str) -> PluginError {
    err(
        ErrorCode::NoDomainSnapshot,
        format!("Domain snapshot not found: no domain snapshot with matching name '{name}'"),
    )
}

/// Seconds since the epoch of an `xsd:dateTime` as vSphere writes it
/// (`2026-12-03T20:30:00.123456Z`).
fn epoch_seconds(t: &str) -> Option<u64> {
    humantime::parse_rfc3339_weak(t.trim())
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

fn text_of(e: &Element, name: &str) -> Option<String> {
    e.child(name).map(|c| c.text().trim().to_string())
}

/// `uuid.bios` text of a UUID (`56 4d 9b ef ac d9 b4 e0-c8 f0 ae a8 b9 10 35 15`).
fn bios_uuid(u: &uuid::Uuid) -> String {
    let b = u.as_bytes();
    let h = |r: &[u8]| {
        r.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!("{}-{}", h(&b[..8]), h(&b[8..]))
}

impl EsxConnection {
    /// The connection's vSphere session (for tools and tests).
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn datastore_url(&self, ds_path: &str) -> Result<(String, String, String), PluginError> {
        let (ds, path) = rvirt_vmx::context::parse_datastore_path(ds_path).ok_or_else(|| {
            err(
                ErrorCode::OperationFailed,
                format!("'{ds_path}' is not a datastore path ('[datastore] path')"),
            )
        })?;
        let url = format!(
            "/folder/{}?dcPath={}&dsName={}",
            encode(path, true),
            encode(&self.inv.dc_name, false),
            encode(ds, false)
        );
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        Ok((url, ds.to_string(), dir))
    }

    /// `paths` (of [`VM_PROPS`]) of every VM of the datacenter, in one retrieval through
    /// the VM view the connection keeps for its session, read straight into [`Vm`]s.
    fn retrieve_vms(&self, paths: &[&str]) -> Result<Vec<Vm>, PluginError> {
        let fail = |e| vim_err("listing virtual machines", e);
        let specs: &[(&str, &[&str])] = &[("VirtualMachine", paths)];
        let mut cached = self.vm_view.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(view) = cached.clone() {
            let mut sink = VmSink::default();
            match self.session.retrieve_into(&view, true, specs, &mut sink) {
                // the session was renewed since the view was made: make it again
                Err(e) if e.fault() == Some("ManagedObjectNotFound") => {}
                r => return r.map(|()| sink.vms).map_err(fail),
            }
        }
        let view = self
            .session
            .container_view(&self.inv.vm_folder, "VirtualMachine")
            .map_err(fail)?;
        *cached = Some(view.clone());
        let mut sink = VmSink::default();
        self.session
            .retrieve_into(&view, true, specs, &mut sink)
            .map_err(fail)?;
        Ok(sink.vms)
    }

    /// The VM named `name`: the names of every VM (not their other properties), then the
    /// one VM's properties; remembered as the recent list, for the state queries that
    /// follow a lookup (dominfo).
    fn vm_by_name(&self, name: &str) -> Result<Vm, PluginError> {
        let names = self.retrieve_vms(&["name"])?;
        let obj = names
            .into_iter()
            .find(|v| v.name == name)
            .map(|v| v.obj)
            .ok_or_else(|| {
                err(
                    ErrorCode::NoDomain,
                    format!("domain not found: no domain with matching name '{name}'"),
                )
            })?;
        let o = self
            .session
            .retrieve_one(&obj, VM_PROPS)
            .map_err(|e| vim_err("reading a virtual machine", e))?;
        let v = Vm::from_content(&o);
        *self.recent.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), vec![v.clone()]));
        Ok(v)
    }

    /// Every VM of the datacenter, in one batch.
    pub fn vms(&self) -> Result<Vec<Vm>, PluginError> {
        let mut v = self.retrieve_vms(VM_PROPS)?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        *self.recent.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), v.clone()));
        Ok(v)
    }

    /// A VM for a state query: from the list read less than [`RECENT`] ago, else fresh.
    fn vm_for_query(&self, u: Uuid) -> Result<Vm, PluginError> {
        let want = from_abi_uuid(u);
        if let Some((at, list)) = &*self.recent.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < RECENT
            && let Some(v) = list.iter().find(|v| v.uuid == want)
        {
            return Ok(v.clone());
        }
        self.vm_by_uuid(u)
    }

    /// Forgets the recent list (before any change).
    fn forget(&self) {
        *self.recent.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn vm_by_uuid(&self, u: Uuid) -> Result<Vm, PluginError> {
        let u = from_abi_uuid(u);
        let not_found = || {
            err(
                ErrorCode::NoDomain,
                format!("domain not found: no domain with matching uuid '{u}'"),
            )
        };
        let obj = self
            .session
            .find_vm_by_uuid(&self.inv.datacenter, &u.hyphenated().to_string())
            .map_err(|e| vim_err("looking up a virtual machine", e))?
            .ok_or_else(not_found)?;
        let o = self
            .session
            .retrieve_one(&obj, VM_PROPS)
            .map_err(|e| vim_err("reading a virtual machine", e))?;
        Ok(Vm::from_content(&o))
    }

    fn find(&self, pred: impl Fn(&Vm) -> bool, what: String) -> Result<Vm, PluginError> {
        self.vms()?
            .into_iter()
            .find(|v| pred(v))
            .ok_or_else(|| err(ErrorCode::NoDomain, format!("domain not found: {what}")))
    }

    /// Refuses changes on read-only connections; forgets the recent list otherwise.
    fn guard(&self, op: &str) -> Result<(), PluginError> {
        if self.read_only {
            return Err(read_only_denied(op));
        }
        self.forget();
        Ok(())
    }

    fn emit(&self, v: &Vm, ev: i32, detail: i32) {
        let mut r = v.reference();
        if ev == event::STOPPED || ev == event::UNDEFINED || ev == event::DEFINED {
            r.id = -1;
        }
        self.events.domain_lifecycle(r, ev, detail);
    }

    fn require(v: &Vm, states: &[i32], why: &str) -> Result<(), PluginError> {
        if states.contains(&v.state) {
            Ok(())
        } else {
            Err(err(
                ErrorCode::OperationInvalid,
                format!("requested operation is not valid: {why}"),
            ))
        }
    }

    /// The `.vmx` conversion context of a VM whose `.vmx` is `[ds] dir/…`.
    fn context(&self, ds: &str, dir: &str) -> Context {
        let known = self.inv.datastores.clone();
        let mut c = Context::datastores(ds, dir, move |s| known.iter().any(|k| k == s));
        c.virtual_hw_version = self.virtual_hw_version();
        c
    }

    /// The hardware version libvirt writes for the product version: 4 (ESX 3.x), 7 (4.x),
    /// 8 (5.0 and later).
    fn virtual_hw_version(&self) -> u32 {
        match self
            .session
            .content
            .version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
        {
            Some(0..=3) => 4,
            Some(4) => 7,
            _ => 8,
        }
    }

    /// The VM's `.vmx`, from its datastore; `None` where the file is empty.
    fn read_vmx(&self, v: &Vm) -> Result<Option<String>, PluginError> {
        let (url, _, _) = self.datastore_url(&v.vmx_path)?;
        match self.session.client.file("GET", &url, None) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(None),
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(soap::SoapError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(err(
                ErrorCode::OperationFailed,
                format!("cannot read '{}': {e}", v.vmx_path),
            )),
        }
    }

    /// The `.vmx` view of a VM built from its config properties, where its file cannot
    /// be read (see the crate documentation).
    fn vmx_from_config(&self, v: &Vm) -> Result<Vmx, PluginError> {
        let o = self
            .session
            .retrieve_one(&v.obj, VMX_PROPS)
            .map_err(|e| vim_err("reading a virtual machine", e))?;
        let mut x = Vmx::new();
        x.set("config.version", "8");
        let hw = o
            .text("config.version")
            .and_then(|s| s.strip_prefix("vmx-"))
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(self.virtual_hw_version());
        x.set("virtualHW.version", &hw.to_string());
        x.set("displayName", &rvirt_vmx::vmx::escape(&v.name));
        x.set("uuid.bios", &bios_uuid(&v.uuid));
        x.set("memsize", &v.memory_mb.to_string());
        x.set("numvcpus", &v.vcpus.max(1).to_string());
        if let Some(g) = o.text("config.guestId").filter(|g| !g.is_empty()) {
            x.set("guestOS", g.trim_end_matches("Guest"));
        }
        if let Some(a) = o.text("config.annotation").filter(|a| !a.is_empty()) {
            x.set("annotation", &rvirt_vmx::vmx::escape(a));
        }
        if let Some(devices) = o.get("config.hardware.device") {
            devices_to_vmx(&mut x, devices);
        }
        Ok(x)
    }

    /// The domain XML of a VM.
    pub fn domain_xml(&self, v: &Vm) -> Result<String, PluginError> {
        let (_, ds, dir) = self.datastore_url(&v.vmx_path)?;
        let ctx = self.context(&ds, &dir);
        let vmx = match self.read_vmx(v)? {
            Some(text) => Vmx::parse(&text).map_err(vmx_err)?,
            None => self.vmx_from_config(v)?,
        };
        let mut dom = rvirt_vmx::vmx_to_domain(&vmx, &ctx).map_err(vmx_err)?;
        dom.set_attr("type", "vmware");
        if v.state != state::SHUTOFF && v.id >= 0 {
            dom.set_attr("id", &v.id.to_string());
        }
        Ok(dom.to_xml_string())
    }

    fn define(&self, xml: &str) -> Result<Vm, PluginError> {
        let op = "virDomainDefineXML";
        self.guard(op)?;
        let mut dom = Element::parse(xml).map_err(|e| err(ErrorCode::XmlError, e.to_string()))?;
        if dom.name() != "domain" {
            return Err(err(
                ErrorCode::XmlError,
                format!("expected a <domain> document, not <{}>", dom.name()),
            ));
        }
        let name = text_of(&dom, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err(ErrorCode::XmlError, "domain/name: missing"))?;
        if name.contains('/') || name.starts_with('.') {
            return Err(err(
                ErrorCode::XmlError,
                format!("domain/name: '{name}' cannot name a .vmx file"),
            ));
        }
        if dom.child("uuid").is_none() {
            let mut u = Element::new("uuid");
            u.set_text(&uuid::Uuid::new_v4().hyphenated().to_string());
            dom.push(u);
        }
        let uuid = text_of(&dom, "uuid")
            .and_then(|u| uuid::Uuid::parse_str(&u).ok())
            .ok_or_else(|| err(ErrorCode::XmlError, "domain/uuid: not a uuid"))?;
        // Redefining a VM (same name and UUID) replaces its .vmx and registers it again,
        // which vSphere allows only while it is powered off; libvirt's driver refuses
        // every redefinition.
        let existing = self.vm_by_uuid(to_abi_uuid(uuid)).ok();
        if let Some(v) = &existing {
            if v.name != name {
                return Err(err(
                    ErrorCode::DomExist,
                    format!(
                        "operation failed: domain '{}' is already defined with uuid {uuid}",
                        v.name
                    ),
                ));
            }
            Self::require(
                v,
                &[state::SHUTOFF],
                "the esx driver redefines a domain only while it is powered off",
            )?;
        } else if self.vms()?.iter().any(|v| v.name == name) {
            return Err(err(
                ErrorCode::DomExist,
                format!("operation failed: domain '{name}' already exists"),
            ));
        }
        let vmx_ds_path = match &existing {
            Some(v) => v.vmx_path.clone(),
            None => {
                // As libvirt: the .vmx goes beside the first file-backed hard disk.
                let disk = dom
                    .child("devices")
                    .into_iter()
                    .flat_map(|d| d.children_named("disk"))
                    .filter(|d| d.attr("device").unwrap_or("disk") == "disk")
                    .find_map(|d| d.child("source").and_then(|s| s.attr("file")))
                    .ok_or_else(|| {
                        err(
                            ErrorCode::ConfigUnsupported,
                            "domain XML doesn't contain any file-based harddisks, cannot deduce datastore and path for the .vmx file",
                        )
                    })?;
                let (ds, path) = rvirt_vmx::context::parse_datastore_path(disk).ok_or_else(|| {
                    err(
                        ErrorCode::ConfigUnsupported,
                        format!("domain/devices/disk/source/@file: '{disk}' is not a datastore path ('[datastore] path')"),
                    )
                })?;
                match path.rsplit_once('/') {
                    Some((dir, _)) => format!("[{ds}] {dir}/{name}.vmx"),
                    None => format!("[{ds}] {name}.vmx"),
                }
            }
        };
        let (_, ds, dir) = self.datastore_url(&vmx_ds_path)?;
        let dir = dir.as_str();
        let ctx = self.context(&ds, dir);
        let vmx = rvirt_vmx::domain_to_vmx(&dom, &ctx).map_err(vmx_err)?;
        let (url, _, _) = self.datastore_url(&vmx_ds_path)?;
        let put = |url: &str, data: &[u8]| {
            self.session
                .client
                .file("PUT", url, Some(data))
                .map_err(|e| {
                    err(
                        ErrorCode::OperationFailed,
                        format!("cannot upload '{vmx_ds_path}': {e}"),
                    )
                })
        };
        put(&url, vmx.to_text().as_bytes())?;
        if let Some(v) = &existing {
            self.session
                .unregister_vm(&v.obj)
                .map_err(|e| vim_err(op, e))?;
        }
        let host = if self.inv.host_named {
            self.inv.host.as_ref()
        } else {
            None
        };
        let register = || {
            self.session.register_vm(
                &self.inv.vm_folder,
                &vmx_ds_path,
                &name,
                &self.inv.pool,
                host,
            )
        };
        let obj = match register() {
            Ok(o) => o,
            Err(e) if e.fault() == Some("NotFound") => {
                // vcsim (govmomi's simulator) registers a VM only where its NAME.nvram
                // and vmware.log exist too; real ESX creates them. Provide empty ones.
                let (base, _, _) = self.datastore_url(&vmx_ds_path)?;
                let (_, q) = base.split_once('?').unwrap_or((&base, ""));
                for f in [format!("{name}.nvram"), "vmware.log".to_string()] {
                    let p = if dir.is_empty() {
                        f
                    } else {
                        format!("{dir}/{f}")
                    };
                    put(&format!("/folder/{}?{q}", encode(&p, true)), b"")?;
                }
                register().map_err(|e| vim_err(op, e))?
            }
            Err(e) => return Err(vim_err(op, e)),
        };
        let o = self
            .session
            .retrieve_one(&obj, VM_PROPS)
            .map_err(|e| vim_err(op, e))?;
        let mut v = Vm::from_content(&o);
        // ESX reads the identity and size from the .vmx; vcsim does not read it. Where the
        // registered VM disagrees with its .vmx, reconfigure it to agree.
        let want_mb = vmx.get_u64("memsize").ok().flatten();
        let want_cpus = vmx.get_u64("numvcpus").ok().flatten().map(|n| n as u32);
        let fix_uuid = (v.uuid != uuid).then(|| uuid.hyphenated().to_string());
        let fix_mb = want_mb.filter(|m| *m != v.memory_mb);
        let fix_cpus = want_cpus.filter(|c| *c != v.vcpus);
        if fix_uuid.is_some() || fix_mb.is_some() || fix_cpus.is_some() {
            self.session
                .reconfigure(&obj, fix_uuid.as_deref(), fix_mb, fix_cpus)
                .map_err(|e| vim_err(op, e))?;
            let o = self
                .session
                .retrieve_one(&obj, VM_PROPS)
                .map_err(|e| vim_err(op, e))?;
            v = Vm::from_content(&o);
        }
        // the name check above read the list before the change
        self.forget();
        self.emit(&v, event::DEFINED, 0);
        Ok(v)
    }

    fn undefine(&self, u: Uuid) -> Result<(), PluginError> {
        let op = "virDomainUndefine";
        self.guard(op)?;
        let v = self.vm_by_uuid(u)?;
        Self::require(
            &v,
            &[state::SHUTOFF, state::PAUSED],
            "domain is not suspended or powered off",
        )?;
        // As libvirt's driver: the VM leaves the inventory, its files stay.
        self.session
            .unregister_vm(&v.obj)
            .map_err(|e| vim_err(op, e))?;
        self.emit(&v, event::UNDEFINED, 0);
        Ok(())
    }

    fn start(&self, u: Uuid) -> Result<Vm, PluginError> {
        let op = "virDomainCreateWithFlags";
        self.guard(op)?;
        let v = self.vm_by_uuid(u)?;
        Self::require(&v, &[state::SHUTOFF], "domain is not powered off")?;
        self.session
            .power_on(&v.obj, self.parsed.auto_answer)
            .map_err(|e| vim_err(op, e))?;
        let v = self.vm_by_uuid(u)?;
        self.emit(&v, event::STARTED, 0);
        Ok(v)
    }

    fn power_off(&self, u: Uuid) -> Result<(), PluginError> {
        let op = "virDomainDestroyFlags";
        self.guard(op)?;
        let v = self.vm_by_uuid(u)?;
        Self::require(
            &v,
            &[state::RUNNING, state::PAUSED],
            "domain is not powered on",
        )?;
        self.session
            .power_off(&v.obj, self.parsed.auto_answer)
            .map_err(|e| vim_err(op, e))?;
        self.emit(&v, event::STOPPED, event::STOPPED_DESTROYED);
        Ok(())
    }

    fn shutdown(&self, u: Uuid) -> Result<(), PluginError> {
        let op = "virDomainShutdownFlags";
        self.guard(op)?;
        let v = self.vm_by_uuid(u)?;
        Self::require(&v, &[state::RUNNING], "domain is not powered on")?;
        self.session
            .shutdown_guest(&v.obj)
            .map_err(|e| vim_err(op, e))?;
        self.emit(&v, event::STOPPED, event::STOPPED_SHUTDOWN);
        Ok(())
    }

    fn reboot(&self, u: Uuid) -> Result<(), PluginError> {
        let op = "virDomainReboot";
        self.guard(op)?;
        let v = self.vm_by_uuid(u)?;
        Self::require(&v, &[state::RUNNING], "domain is not powered on")?;
        self.session
            .reboot_guest(&v.obj)
            .map_err(|e| vim_err(op, e))
    }

    fn pause(&self, u: Uuid, pause: bool) -> Result<(), PluginError> {
        let op = if pause {
            "virDomainSuspend"
        } else {
            "virDomainResume"
        };
        self.guard(op)?;
        let v = self.vm_by_uuid(u)?;
        if pause {
            Self::require(&v, &[state::RUNNING], "domain is not powered on")?;
            self.session
                .suspend(&v.obj, self.parsed.auto_answer)
                .map_err(|e| vim_err(op, e))?;
            self.emit(&v, event::SUSPENDED, 0);
        } else {
            Self::require(&v, &[state::PAUSED], "domain is not suspended")?;
            self.session
                .power_on(&v.obj, self.parsed.auto_answer)
                .map_err(|e| vim_err(op, e))?;
            self.emit(&v, event::RESUMED, 0);
        }
        Ok(())
    }

    /// Sets the memory (KiB, rounded up to whole MiB) of a VM (`ReconfigVM_Task`), as
    /// `virDomainSetMemory` / `SetMaxMemory` do in libvirt's driver.
    pub fn set_memory(&self, u: Uuid, kib: u64) -> Result<(), PluginError> {
        let op = "virDomainSetMemory";
        self.guard(op)?;
        let v = self.vm_by_uuid(u)?;
        self.session
            .reconfigure(&v.obj, None, Some(kib.div_ceil(1024)), None)
            .map_err(|e| vim_err(op, e))
    }

    /// Sets the vCPU count of a VM (`ReconfigVM_Task`), as `virDomainSetVcpus`.
    pub fn set_vcpus(&self, u: Uuid, n: u32) -> Result<(), PluginError> {
        let op = "virDomainSetVcpus";
        self.guard(op)?;
        if n == 0 || (n != 1 && !n.is_multiple_of(2)) {
            return Err(err(
                ErrorCode::InvalidArg,
                format!("invalid argument: {n} vcpus: expected 1 or a multiple of 2"),
            ));
        }
        let v = self.vm_by_uuid(u)?;
        self.session
            .reconfigure(&v.obj, None, None, Some(n))
            .map_err(|e| vim_err(op, e))
    }

    /// The snapshots of a VM, depth first.
    pub fn snapshots(&self, u: Uuid) -> Result<Vec<Snapshot>, PluginError> {
        let v = self.vm_by_uuid(u)?;
        let o = self
            .session
            .retrieve_one(&v.obj, &["snapshot"])
            .map_err(|e| vim_err("virDomainListAllSnapshots", e))?;
        let mut out = Vec::new();
        let Some(info) = o.get("snapshot") else {
            return Ok(out);
        };
        let current = info.child("currentSnapshot").and_then(Node::moref);
        fn walk(n: &Node, parent: Option<&str>, current: &Option<MoRef>, out: &mut Vec<Snapshot>) {
            for t in n
                .children_named("rootSnapshotList")
                .chain(n.children_named("childSnapshotList"))
            {
                let Some(obj) = t.child("snapshot").and_then(Node::moref) else {
                    continue;
                };
                let name = t.text_of("name").unwrap_or("").to_string();
                out.push(Snapshot {
                    current: current.as_ref() == Some(&obj),
                    obj,
                    name: name.clone(),
                    description: t.text_of("description").unwrap_or("").to_string(),
                    parent: parent.map(str::to_string),
                    create_time: t.text_of("createTime").unwrap_or("").to_string(),
                    state: t.text_of("state").unwrap_or("").to_string(),
                });
                walk(t, Some(&name), current, out);
            }
        }
        walk(info, None, &current, &mut out);
        Ok(out)
    }

    fn snapshot_named(&self, u: Uuid, name: &str) -> Result<Snapshot, PluginError> {
        self.snapshots(u)?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| no_snapshot(name))
    }

    /// `CreateSnapshot_Task` (without memory, not quiesced; libvirt's driver refuses an
    /// existing name).
    pub fn snapshot_create(
        &self,
        u: Uuid,
        name: &str,
        description: &str,
    ) -> Result<(), PluginError> {
        let op = "virDomainSnapshotCreateXML";
        self.guard(op)?;
        if self.snapshots(u)?.iter().any(|s| s.name == name) {
            return Err(err(
                ErrorCode::OperationInvalid,
                format!("requested operation is not valid: snapshot '{name}' already exists"),
            ));
        }
        let v = self.vm_by_uuid(u)?;
        self.session
            .create_snapshot(&v.obj, name, description, false)
            .map(drop)
            .map_err(|e| vim_err(op, e))
    }

    /// `RevertToSnapshot_Task`.
    pub fn snapshot_revert(&self, u: Uuid, name: &str) -> Result<(), PluginError> {
        let op = "virDomainRevertToSnapshot";
        self.guard(op)?;
        let s = self.snapshot_named(u, name)?;
        self.session
            .revert_snapshot(&s.obj)
            .map_err(|e| vim_err(op, e))
    }

    /// `RemoveSnapshot_Task`.
    pub fn snapshot_delete(&self, u: Uuid, name: &str, children: bool) -> Result<(), PluginError> {
        let op = "virDomainSnapshotDelete";
        self.guard(op)?;
        let s = self.snapshot_named(u, name)?;
        self.session
            .remove_snapshot(&s.obj, children)
            .map_err(|e| vim_err(op, e))
    }

    /// The names `virDomainListAllSnapshots` answers: `ROOTS` (1), `LEAVES` (4) /
    /// `NO_LEAVES` (8), `METADATA` (2) / `NO_METADATA` (16: vSphere keeps every
    /// snapshot's metadata), `INACTIVE` (32) / `ACTIVE` (64) by the VM's state when
    /// taken, `INTERNAL` (256) / `DISK_ONLY` (128) / `EXTERNAL` (512: vSphere's are
    /// internal), `TOPOLOGICAL` (1024: the order is always parents first). With
    /// `of = Some(name)`: the children of that snapshot (`DESCENDANTS` (1): all below it).
    pub fn snapshot_names(
        &self,
        u: Uuid,
        of: Option<&str>,
        flags: u32,
    ) -> Result<Vec<String>, PluginError> {
        let all = self.snapshots(u)?;
        if let Some(n) = of
            && !all.iter().any(|s| s.name == n)
        {
            return Err(no_snapshot(n));
        }
        let below = |s: &Snapshot, root: &str| {
            let mut p = s.parent.clone();
            while let Some(name) = p {
                if name == root {
                    return true;
                }
                p = all
                    .iter()
                    .find(|x| x.name == name)
                    .and_then(|x| x.parent.clone());
            }
            false
        };
        let group = |bits: u32, ok: &dyn Fn(u32) -> bool| {
            let set = flags & bits;
            set == 0 || (0..11).any(|b| set & (1 << b) != 0 && ok(1 << b))
        };
        Ok(all
            .iter()
            .filter(|s| match of {
                None => flags & 1 == 0 || s.parent.is_none(),
                Some(root) if flags & 1 != 0 => below(s, root),
                Some(root) => s.parent.as_deref() == Some(root),
            })
            .filter(|s| {
                let leaf = !all
                    .iter()
                    .any(|c| c.parent.as_deref() == Some(s.name.as_str()));
                let active = s.state != "poweredOff";
                group(4 | 8, &|b| (b == 4) == leaf)
                    && group(2 | 16, &|b| b == 2)
                    && group(32 | 64, &|b| (b == 64) == active)
                    && group(128 | 256 | 512, &|b| b == 256)
            })
            .map(|s| s.name.clone())
            .collect())
    }

    /// The `<domainsnapshot>` document of a snapshot, as libvirt's esx driver writes it
    /// (name, description, state, parent, creation time; vSphere keeps no domain copy).
    pub fn snapshot_xml(&self, u: Uuid, name: &str) -> Result<String, PluginError> {
        let s = self.snapshot_named(u, name)?;
        let mut root = Element::new("domainsnapshot");
        root.push(Element::new("name").with_text(&s.name));
        if !s.description.is_empty() {
            root.push(Element::new("description").with_text(&s.description));
        }
        let st = match s.state.as_str() {
            "poweredOn" => "running",
            "suspended" => "paused",
            _ => "shutoff",
        };
        root.push(Element::new("state").with_text(st));
        if let Some(p) = &s.parent {
            let mut parent = Element::new("parent");
            parent.push(Element::new("name").with_text(p));
            root.push(parent);
        }
        if let Some(t) = epoch_seconds(&s.create_time) {
            root.push(Element::new("creationTime").with_text(&t.to_string()));
        }
        Ok(root.to_xml_string())
    }

    /// The host's `HostAutoStartManager`, where it has one (vcsim's hosts have none);
    /// looked up once per connection.
    fn autostart_manager(&self) -> Result<Option<MoRef>, PluginError> {
        if let Some(m) = self.autostart_mgr.get() {
            return Ok(m.clone());
        }
        let m = self.find_autostart_manager()?;
        Ok(self.autostart_mgr.get_or_init(|| m).clone())
    }

    fn find_autostart_manager(&self) -> Result<Option<MoRef>, PluginError> {
        let Some(h) = self.inv.host.as_ref() else {
            return Ok(None);
        };
        let o = self
            .session
            .retrieve_one(h, &["configManager.autoStartManager"])
            .map_err(|e| vim_err("reading the host's autostart manager", e))?;
        let Some(m) = o
            .get("configManager.autoStartManager")
            .and_then(Node::moref)
        else {
            return Ok(None);
        };
        // vcsim names a manager it does not serve
        match self.session.retrieve_one(&m, &["config"]) {
            Err(e) if e.fault() == Some("ManagedObjectNotFound") => Ok(None),
            Err(e) => Err(vim_err("reading the host's autostart manager", e)),
            Ok(_) => Ok(Some(m)),
        }
    }

    /// Whether the VM starts with the host (the host's autostart enabled and the VM's
    /// start action `powerOn`), as libvirt's driver reads it.
    fn autostart(&self, u: Uuid) -> Result<bool, PluginError> {
        let v = self.vm_for_query(u)?;
        let Some(m) = self.autostart_manager()? else {
            return Ok(false);
        };
        let (enabled, action) = self
            .session
            .autostart_of(&m, &v.obj)
            .map_err(|e| vim_err("virDomainGetAutostart", e))?;
        Ok(enabled && action.is_some_and(|a| a.eq_ignore_ascii_case("powerOn")))
    }

    fn set_autostart_of(&self, u: Uuid, on: bool) -> Result<(), PluginError> {
        let op = "virDomainSetAutostart";
        self.guard(op)?;
        let v = self.vm_by_uuid(u)?;
        let m = self
            .autostart_manager()?
            .ok_or_else(|| no_support(op, "the host has no HostAutoStartManager"))?;
        self.session
            .set_autostart(&m, &v.obj, on)
            .map_err(|e| vim_err(op, e))
    }

    fn host_props(&self) -> Result<ObjectContent, PluginError> {
        let h = self.inv.host.as_ref().ok_or_else(|| {
            err(
                ErrorCode::OperationFailed,
                "the compute resource has no host",
            )
        })?;
        self.session
            .retrieve_one(
                h,
                &[
                    "name",
                    "hardware.cpuInfo.numCpuPackages",
                    "hardware.cpuInfo.numCpuCores",
                    "hardware.cpuInfo.numCpuThreads",
                    "hardware.cpuInfo.hz",
                    "hardware.memorySize",
                    "summary.hardware.cpuModel",
                ],
            )
            .map_err(|e| vim_err("virNodeGetInfo", e))
    }

    fn node_info(&self) -> Result<NodeInfo, PluginError> {
        let h = self.host_props()?;
        let n = |p: &str| h.num(p).unwrap_or(0).max(0) as u64;
        let packages = n("hardware.cpuInfo.numCpuPackages").max(1);
        let cores = n("hardware.cpuInfo.numCpuCores").max(1);
        let threads = n("hardware.cpuInfo.numCpuThreads").max(1);
        // libvirt squeezes the model's runs of spaces and keeps 31 bytes.
        let model: String = h
            .text("summary.hardware.cpuModel")
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(31)
            .collect();
        Ok(NodeInfo {
            model: model.into(),
            memory_kib: n("hardware.memorySize") / 1024,
            cpus: threads as u32,
            mhz: (n("hardware.cpuInfo.hz") / 1_000_000) as u32,
            nodes: 1,
            sockets: packages as u32,
            cores: (cores / packages).max(1) as u32,
            threads: (threads / cores).max(1) as u32,
        })
    }

    /// The host's capabilities: its CPU (arch, model, topology) from the HostSystem, and
    /// the `vmware` guests of libvirt's esx driver.
    fn capabilities(&self) -> Result<String, PluginError> {
        let node = self.node_info()?;
        let mut caps = Element::new("capabilities");
        let mut host = Element::new("host");
        let mut cpu = Element::new("cpu");
        cpu.push(Element::new("arch").with_text("x86_64"));
        if !node.model.is_empty() {
            cpu.push(Element::new("model").with_text(node.model.as_str()));
        }
        let mut topology = Element::new("topology");
        topology.set_attr("sockets", &node.sockets.to_string());
        topology.set_attr("cores", &node.cores.to_string());
        topology.set_attr("threads", &node.threads.to_string());
        cpu.push(topology);
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
        Ok(caps.to_xml_string())
    }

    /// `VERSION` as libvirt encodes it (major * 1,000,000 + minor * 1,000 + micro).
    fn version(&self) -> u64 {
        let mut parts = self
            .session
            .content
            .version
            .split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0));
        let mut next = || parts.next().unwrap_or(0);
        next() * 1_000_000 + next() * 1_000 + next()
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

impl DriverConnection for EsxConnection {
    fn extension(&self) -> PResult<ConnExtensionBox> {
        RResult::ROk(rvirt_sdk::extension_box(
            "esx",
            owned::Extension(owned::Shared {
                session: std::sync::Arc::clone(&self.session),
                inv: self.inv.clone(),
                recent: Default::default(),
                read_only: self.read_only,
            }),
        ))
    }
    fn get_type(&self) -> PResult<RString> {
        RResult::ROk("ESX".into())
    }

    fn get_version(&self) -> PResult<u64> {
        RResult::ROk(self.version())
    }

    fn get_uri(&self) -> PResult<RString> {
        RResult::ROk(self.uri.as_str().into())
    }

    fn get_hostname(&self) -> PResult<RString> {
        if self.parsed.scheme == Scheme::Vpx {
            return RResult::ROk(self.parsed.host.as_str().into());
        }
        res(self
            .host_props()
            .map(|h| h.text("name").unwrap_or(&self.parsed.host).into()))
    }

    fn get_capabilities(&self) -> PResult<RString> {
        res(self.capabilities().map(RString::from))
    }

    fn node_get_info(&self) -> PResult<NodeInfo> {
        res(self.node_info())
    }

    fn list_all_domains(&self, flags: u32) -> PResult<RVec<DomainRef>> {
        checked!("virConnectListAllDomains", flags, filter::FILTERS);
        res(self.vms().map(|vs| {
            vs.iter()
                .filter(|v| {
                    filter::matches(
                        flags,
                        &filter::DomainFacts {
                            state: v.state,
                            persistent: true,
                            ..Default::default()
                        },
                    )
                })
                .map(Vm::reference)
                .collect()
        }))
    }

    fn lookup_by_name(&self, name: RStr<'_>) -> PResult<DomainRef> {
        res(self.vm_by_name(name.as_str()).map(|v| v.reference()))
    }

    fn lookup_by_uuid(&self, uuid: Uuid) -> PResult<DomainRef> {
        res(self.vm_by_uuid(uuid).map(|v| v.reference()))
    }

    fn lookup_by_id(&self, id: i32) -> PResult<DomainRef> {
        res(self
            .find(
                |v| v.id == id && v.id >= 0,
                format!("no domain with matching id {id}"),
            )
            .map(|v| v.reference()))
    }

    fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        // VIR_DOMAIN_DEFINE_VALIDATE: the conversion always validates.
        checked!("virDomainDefineXMLFlags", flags, 1);
        res(self.define(xml.as_str()).map(|v| v.reference()))
    }

    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainUndefineFlags", flags, 0);
        res(EsxConnection::undefine(self, uuid))
    }

    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainCreateWithFlags", flags, 0);
        res(self.start(uuid).map(|v| v.reference()))
    }

    fn create_xml(&self, xml: RStr<'_>, _flags: u32) -> PResult<DomainRef> {
        let op = "virDomainCreateXML";
        if let Err(e) = self.guard(op) {
            return RResult::RErr(e);
        }
        if let Err(e) = Element::parse(xml.as_str()) {
            return RResult::RErr(err(ErrorCode::XmlError, e.to_string()));
        }
        RResult::RErr(no_support(
            op,
            "vSphere has no transient VMs; define and start instead",
        ))
    }

    fn destroy(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainDestroyFlags", flags, 0);
        res(self.power_off(uuid))
    }

    fn shutdown(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainShutdownFlags", flags, 0);
        res(EsxConnection::shutdown(self, uuid))
    }

    fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainReboot", flags, 0);
        res(EsxConnection::reboot(self, uuid))
    }

    fn suspend(&self, uuid: Uuid) -> PResult<()> {
        res(self.pause(uuid, true))
    }

    fn resume(&self, uuid: Uuid) -> PResult<()> {
        res(self.pause(uuid, false))
    }

    fn get_info(&self, uuid: Uuid) -> PResult<DomainInfo> {
        res(self.vm_for_query(uuid).map(|v| DomainInfo {
            state: v.state,
            max_mem_kib: v.memory_mb * 1024,
            memory_kib: v.memory_mb * 1024,
            nr_virt_cpu: v.vcpus,
            cpu_time_ns: 0,
        }))
    }

    fn get_state(&self, uuid: Uuid) -> PResult<StateReason> {
        res(self.vm_for_query(uuid).map(|v| StateReason {
            state: v.state,
            // VIR_DOMAIN_RUNNING_BOOTED, VIR_DOMAIN_PAUSED_USER, VIR_DOMAIN_SHUTOFF_UNKNOWN
            reason: match v.state {
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
            .vm_by_uuid(uuid)
            .and_then(|v| self.domain_xml(&v))
            .map(RString::from))
    }

    fn is_persistent(&self, uuid: Uuid) -> PResult<bool> {
        res(self.vm_for_query(uuid).map(|_| true))
    }

    fn get_autostart(&self, uuid: Uuid) -> PResult<bool> {
        res(self.autostart(uuid))
    }

    fn set_autostart(&self, uuid: Uuid, autostart: bool) -> PResult<()> {
        res(self.set_autostart_of(uuid, autostart))
    }

    fn get_vcpus_flags(&self, uuid: Uuid, flags: u32) -> PResult<i32> {
        checked!("virDomainGetVcpusFlags", flags, 1 | 2 | 4);
        res(self.vm_for_query(uuid).map(|v| v.vcpus as i32))
    }

    fn get_os_type(&self, uuid: Uuid) -> PResult<RString> {
        res(self.vm_for_query(uuid).map(|_| "hvm".into()))
    }

    fn has_managed_save_image(&self, uuid: Uuid, flags: u32) -> PResult<bool> {
        checked!("virDomainHasManagedSaveImage", flags, 0);
        res(self.vm_for_query(uuid).map(|_| false))
    }

    fn domain_xml_to_native(
        &self,
        format: RStr<'_>,
        xml: RStr<'_>,
        flags: u32,
    ) -> PResult<RString> {
        checked!("virConnectDomainXMLToNative", flags, 0);
        if format.as_str() != rvirt_vmx::NATIVE_FORMAT {
            return RResult::RErr(err(
                ErrorCode::InvalidArg,
                format!(
                    "invalid argument: unsupported config type {format} (only '{}')",
                    rvirt_vmx::NATIVE_FORMAT
                ),
            ));
        }
        let ds = self.inv.datastores.first().cloned().unwrap_or_default();
        res(rvirt_vmx::xml_to_vmx(xml.as_str(), &self.context(&ds, ""))
            .map(RString::from)
            .map_err(vmx_err))
    }

    fn domain_xml_from_native(
        &self,
        format: RStr<'_>,
        config: RStr<'_>,
        flags: u32,
    ) -> PResult<RString> {
        checked!("virConnectDomainXMLFromNative", flags, 0);
        if format.as_str() != rvirt_vmx::NATIVE_FORMAT {
            return RResult::RErr(err(
                ErrorCode::InvalidArg,
                format!(
                    "invalid argument: unsupported config type {format} (only '{}')",
                    rvirt_vmx::NATIVE_FORMAT
                ),
            ));
        }
        let ds = self.inv.datastores.first().cloned().unwrap_or_default();
        res(
            rvirt_vmx::vmx_text_to_xml(config.as_str(), &self.context(&ds, ""))
                .map(RString::from)
                .map_err(vmx_err),
        )
    }

    fn set_memory_flags(&self, uuid: Uuid, kib: u64, flags: u32) -> PResult<()> {
        // LIVE | CONFIG | MEM_MAXIMUM: vSphere has one configuration, its memory size
        checked!("virDomainSetMemoryFlags", flags, 1 | 2 | 4);
        res(self.set_memory(uuid, kib))
    }

    fn set_vcpus_flags(&self, uuid: Uuid, nvcpus: u32, flags: u32) -> PResult<()> {
        // LIVE | CONFIG | VCPU_MAXIMUM: one vCPU count
        checked!("virDomainSetVcpusFlags", flags, 1 | 2 | 4);
        res(self.set_vcpus(uuid, nvcpus))
    }

    fn snapshot_create_xml(&self, uuid: Uuid, xml: RStr<'_>, flags: u32) -> PResult<RString> {
        checked!("virDomainSnapshotCreateXML", flags, 0);
        let parsed = Element::parse(xml.as_str())
            .map_err(|e| err(ErrorCode::XmlError, e.to_string()))
            .and_then(|root| {
                if root.name() != "domainsnapshot" {
                    return Err(err(
                        ErrorCode::XmlError,
                        format!("domainsnapshot: expected a <domainsnapshot> document, found <{}>", root.name()),
                    ));
                }
                if root.child("memory").and_then(|m| m.attr("snapshot")).is_some_and(|m| m != "no")
                    || root.child("disks").is_some()
                {
                    return Err(err(
                        ErrorCode::ConfigUnsupported,
                        "domainsnapshot: memory and disk choices are not supported by the esx driver",
                    ));
                }
                let name = root
                    .child("name")
                    .map(|n| n.text().trim().to_string())
                    .unwrap_or_else(|| {
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs().to_string())
                            .unwrap_or_default()
                    });
                if name.is_empty() || name.contains('/') {
                    return Err(err(
                        ErrorCode::XmlError,
                        format!("domainsnapshot/name: invalid snapshot name '{name}'"),
                    ));
                }
                let description = root
                    .child("description")
                    .map(|d| d.text().trim().to_string())
                    .unwrap_or_default();
                Ok((name, description))
            });
        res(parsed.and_then(|(name, description)| {
            self.snapshot_create(uuid, &name, &description)
                .map(|()| name.into())
        }))
    }

    fn snapshot_list(&self, uuid: Uuid, flags: u32) -> PResult<RVec<RString>> {
        checked!("virDomainListAllSnapshots", flags, (1 << 11) - 1);
        res(self
            .snapshot_names(uuid, None, flags)
            .map(|v| v.into_iter().map(Into::into).collect()))
    }

    fn snapshot_list_children(
        &self,
        uuid: Uuid,
        name: RStr<'_>,
        flags: u32,
    ) -> PResult<RVec<RString>> {
        checked!("virDomainSnapshotListAllChildren", flags, (1 << 11) - 1);
        res(self
            .snapshot_names(uuid, Some(name.as_str()), flags)
            .map(|v| v.into_iter().map(Into::into).collect()))
    }

    fn snapshot_get_xml_desc(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<RString> {
        // VIR_DOMAIN_SNAPSHOT_XML_SECURE: nothing secret in it
        checked!("virDomainSnapshotGetXMLDesc", flags, 1);
        res(self.snapshot_xml(uuid, name.as_str()).map(Into::into))
    }

    fn snapshot_current(&self, uuid: Uuid, flags: u32) -> PResult<RString> {
        checked!("virDomainSnapshotCurrent", flags, 0);
        res(self.snapshots(uuid).and_then(|all| {
            all.into_iter()
                .find(|s| s.current)
                .map(|s| s.name.into())
                .ok_or_else(|| {
                    err(
                        ErrorCode::NoDomainSnapshot,
                        "Domain snapshot not found: domain has no current snapshot",
                    )
                })
        }))
    }

    fn snapshot_get_parent(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<RString> {
        checked!("virDomainSnapshotGetParent", flags, 0);
        res(self.snapshot_named(uuid, name.as_str()).and_then(|s| {
            s.parent.map(Into::into).ok_or_else(|| {
                err(
                    ErrorCode::NoDomainSnapshot,
                    format!(
                        "Domain snapshot not found: snapshot '{}' does not have a parent",
                        s.name
                    ),
                )
            })
        }))
    }

    fn snapshot_revert(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<()> {
        checked!("virDomainRevertToSnapshot", flags, 0);
        res(EsxConnection::snapshot_revert(self, uuid, name.as_str()))
    }

    fn snapshot_delete(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<()> {
        // VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN; metadata-only deletion does not exist in
        // vSphere, as libvirt's driver says
        checked!("virDomainSnapshotDelete", flags, 1);
        res(EsxConnection::snapshot_delete(
            self,
            uuid,
            name.as_str(),
            flags & 1 != 0,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bios_uuid_is_vmx_text() {
        let u = uuid::Uuid::parse_str("564d9bef-acd9-b4e0-c8f0-aea8b9103515").unwrap();
        assert_eq!(
            bios_uuid(&u),
            "56 4d 9b ef ac d9 b4 e0-c8 f0 ae a8 b9 10 35 15"
        );
    }

    #[test]
    fn ids_and_states_as_libvirt_reports_them() {
        let vm = |moref: &str, power: &str| {
            let val = Node {
                text: power.to_string(),
                ..Node::default()
            };
            Vm::from_content(&ObjectContent {
                obj: MoRef::new("VirtualMachine", moref),
                props: vec![("runtime.powerState".to_string(), val)],
            })
        };
        let v = vm("vm-42", "poweredOn");
        assert_eq!((v.id, v.state), (42, state::RUNNING));
        let v = vm("7", "suspended");
        assert_eq!((v.id, v.state), (7, state::PAUSED));
        let v = vm("vm-42", "poweredOff");
        assert_eq!((v.id, v.state), (-1, state::SHUTOFF));
    }

    #[test]
    fn encodes_paths_and_queries() {
        assert_eq!(encode("a b/c.vmx", true), "a%20b/c.vmx");
        assert_eq!(encode("a/b&c", false), "a%2Fb%26c");
    }
}

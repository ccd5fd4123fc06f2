//! The Microsoft Hyper-V driver: `hyperv://[user@]host[:port]/[?transport=https|http]`,
//! as libvirt's hyperv driver, over WS-Management ([`wsman`]) to the WMI classes of
//! `root/virtualization/v2` ([`wmi`]).
//!
//! * **Domains** are the `Msvm_ComputerSystem` instances whose `Caption` is
//!   `Virtual Machine`: the name is `ElementName`, the UUID is `Name` (the VM's GUID), the
//!   id is the worker process's `ProcessID` while the VM runs, and the state is
//!   `EnabledState` ([`wmi::domain_state`]). A saved VM is shut off with a managed save
//!   image.
//! * **Settings** are the VM's `Msvm_VirtualSystemSettingData` (associated by
//!   `Msvm_SettingsDefineState`) and its `Msvm_ProcessorSettingData` and
//!   `Msvm_MemorySettingData` (associated by `Msvm_VirtualSystemSettingDataComponent`).
//! * **XML** is built from the settings: name, UUID, description (`Notes`), memory,
//!   vCPUs, UEFI for generation 2, and the disks, DVDs and NICs of [`devices`]. Devices in
//!   a defined document are not added to the VM (no `AddResourceSettings` yet).
//! * **Lifecycle** is `Msvm_ComputerSystem.RequestStateChange` (2 start and resume, 3
//!   turn off, 9 pause, 10 reboot) and `Msvm_ShutdownComponent.InitiateShutdown`; a
//!   method answering 4096 started an `Msvm_ConcreteJob`, polled until it ends.
//! * **Define** is `Msvm_VirtualSystemManagementService.DefineSystem` with an embedded
//!   `Msvm_VirtualSystemSettingData`, then `ModifyResourceSettings` for memory and vCPUs;
//!   undefine is `DestroySystem`. Hyper-V gives a new VM its own GUID (the document's
//!   UUID is not used). A document naming an existing domain (by UUID, or by name
//!   without a UUID) changes its name (`ModifySystemSettings`), memory and processors
//!   while it is off, where libvirt's driver refuses any change.
//! * **Credentials** come from libvirt's `auth.conf` ([`uri::HypervUri::credentials`]);
//!   the plugin API has no callback to ask the client.

pub mod devices;
pub mod uri;
pub mod wmi;
pub mod wsman;

use rvirt_sdk::{
    PluginInfo,
    abi::{
        DomainInfo, DomainRef, DriverConnection, ErrorCode, ErrorDomain, EventSinkBox, NodeInfo,
        PResult, PluginError, StateReason, Uuid,
        abi_stable::std_types::{RResult, RStr, RString, RVec},
        event, state,
    },
    filter,
    util::{check_flags, from_abi_uuid, read_only_denied, to_abi_uuid},
};
use rvirt_xml::Element;
use uri::HypervUri;
use wmi::{JobPolicy, NS_CIMV2, NS_VIRT, WmiError, class_uri, enabled, quote, requested};
use wsman::{Client, Epr, Node, Param, WsmanError};

rvirt_sdk::export_plugin! {
    manifest: PluginInfo {
        name: "hyperv",
        kind: "hypervisor",
        schemes: &["hyperv"],
        version: env!("CARGO_PKG_VERSION"),
        description: "Microsoft Hyper-V over WS-Management (WinRM), compatible with libvirt's hyperv driver",
    },
    open: open,
}

/// libvirt's `VIR_FROM_HYPERV` error domain (not among the ABI's named domains).
const FROM_HYPERV: i32 = 43;
/// libvirt's `VIR_ERR_AUTH_FAILED`.
const AUTH_FAILED: i32 = 45;

fn err(code: ErrorCode, message: impl Into<String>) -> PluginError {
    PluginError {
        code: code as i32,
        domain: FROM_HYPERV,
        message: message.into().into(),
    }
}

fn no_support(op: &str, why: &str) -> PluginError {
    err(
        ErrorCode::NoSupport,
        format!(
            "this function is not supported by the connection driver: {op} (hyperv driver: {why})"
        ),
    )
}

fn wsman_err(e: WsmanError) -> PluginError {
    let code = match &e {
        WsmanError::Auth { .. } => AUTH_FAILED,
        _ => ErrorCode::OperationFailed as i32,
    };
    PluginError {
        code,
        domain: FROM_HYPERV,
        message: e.to_string().into(),
    }
}

fn wmi_err(e: WmiError) -> PluginError {
    match e {
        WmiError::Wsman(w) => wsman_err(w),
        WmiError::Returned { code: 32769, .. } => err(ErrorCode::OperationDenied, e.to_string()),
        WmiError::Returned { code: 32775, .. } => err(ErrorCode::OperationInvalid, e.to_string()),
        WmiError::JobTimeout { .. } => err(ErrorCode::OperationTimeout, e.to_string()),
        _ => err(ErrorCode::OperationFailed, e.to_string()),
    }
}

fn invalid(why: &str) -> PluginError {
    err(
        ErrorCode::OperationInvalid,
        format!("requested operation is not valid: {why}"),
    )
}

/// A VM as the driver sees it.
#[derive(Debug, Clone)]
pub struct Vm {
    pub name: String,
    /// `Name` as the server spells it (the selector of the instance).
    pub guid: String,
    pub uuid: uuid::Uuid,
    pub enabled_state: u32,
    pub id: i32,
}

impl Vm {
    fn from_node(n: &Node) -> Result<Vm, PluginError> {
        let guid = n.text_of("Name").unwrap_or("").to_string();
        let uuid = uuid::Uuid::parse_str(&guid).map_err(|e| {
            err(
                ErrorCode::OperationFailed,
                format!("Msvm_ComputerSystem.Name '{guid}' is not a GUID: {e}"),
            )
        })?;
        let enabled_state = n
            .text_of("EnabledState")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let id = if wmi::is_active(enabled_state) {
            n.text_of("ProcessID")
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(-1)
        } else {
            -1
        };
        Ok(Vm {
            name: n.text_of("ElementName").unwrap_or("").to_string(),
            guid,
            uuid,
            enabled_state,
            id,
        })
    }

    fn state(&self) -> i32 {
        wmi::domain_state(self.enabled_state)
    }

    fn reference(&self) -> DomainRef {
        DomainRef {
            name: self.name.as_str().into(),
            uuid: to_abi_uuid(self.uuid),
            id: self.id,
        }
    }

    fn epr(&self) -> Epr {
        Epr {
            resource_uri: class_uri(NS_VIRT, "Msvm_ComputerSystem"),
            selectors: vec![
                ("CreationClassName".into(), "Msvm_ComputerSystem".into()),
                ("Name".into(), self.guid.clone()),
            ],
        }
    }
}

/// The settings of a VM dumpxml and dominfo read.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub vssd: Node,
    pub memory: Node,
    pub processor: Node,
}

impl Settings {
    fn num(n: &Node, prop: &str) -> u64 {
        n.text_of(prop).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// `VirtualQuantity` of the memory settings, in KiB.
    pub fn memory_kib(&self) -> u64 {
        Self::num(&self.memory, "VirtualQuantity") * 1024
    }

    /// `Limit` of the memory settings (the most the VM may have), in KiB, as libvirt
    /// reports its maximum.
    pub fn max_memory_kib(&self) -> u64 {
        let limit = Self::num(&self.memory, "Limit") * 1024;
        limit.max(self.memory_kib())
    }

    pub fn vcpus(&self) -> u32 {
        Self::num(&self.processor, "VirtualQuantity") as u32
    }
}

/// One connection.
pub struct HypervConnection {
    uri: String,
    client: Client,
    read_only: bool,
    events: EventSinkBox,
    jobs: JobPolicy,
    /// The host's `Msvm_VirtualSystemManagementService`.
    service: Epr,
    /// `Win32_ComputerSystem.DNSHostName` (else `Name`).
    hostname: String,
}

/// Opens `hyperv://host/`: parses the URI, reads the credentials, and asks the server for
/// its name and its virtual system management service (so a wrong password or a host
/// without Hyper-V fails here, clearly).
pub fn open(
    uri: &str,
    read_only: bool,
    events: EventSinkBox,
) -> Result<HypervConnection, PluginError> {
    let parsed = HypervUri::parse(uri).map_err(|e| err(ErrorCode::InvalidArg, e.to_string()))?;
    let (user, password) = parsed.credentials().map_err(|e| PluginError {
        code: AUTH_FAILED,
        domain: FROM_HYPERV,
        message: e.to_string().into(),
    })?;
    let client = Client::new(&parsed.endpoint(), &user, &password, parsed.no_verify);
    let cs = client
        .enumerate(NS_CIMV2, "SELECT * FROM Win32_ComputerSystem")
        .map_err(wsman_err)?;
    let hostname = cs
        .first()
        .and_then(|c| c.text_of("DNSHostName").or_else(|| c.text_of("Name")))
        .unwrap_or(&parsed.host)
        .to_string();
    let svc = client
        .enumerate(NS_VIRT, "SELECT * FROM Msvm_VirtualSystemManagementService")
        .map_err(wsman_err)?;
    let svc = svc.first().ok_or_else(|| {
        err(
            ErrorCode::OpenFailed,
            format!(
                "{} has no Msvm_VirtualSystemManagementService in root/virtualization/v2: is the Hyper-V role installed (Windows Server 2012 R2 or later)?",
                parsed.host
            ),
        )
    })?;
    let key = |k: &str| -> Result<(String, String), PluginError> {
        let v = svc.text_of(k).ok_or_else(|| {
            err(
                ErrorCode::OpenFailed,
                format!("Msvm_VirtualSystemManagementService has no {k}"),
            )
        })?;
        Ok((k.to_string(), v.to_string()))
    };
    let service = Epr {
        resource_uri: class_uri(NS_VIRT, "Msvm_VirtualSystemManagementService"),
        selectors: vec![
            key("CreationClassName")?,
            key("Name")?,
            key("SystemCreationClassName")?,
            key("SystemName")?,
        ],
    };
    Ok(HypervConnection {
        uri: uri.to_string(),
        client,
        read_only,
        events,
        jobs: JobPolicy::default(),
        service,
        hostname,
    })
}

const VM_QUERY: &str = "SELECT * FROM Msvm_ComputerSystem WHERE Caption = \"Virtual Machine\"";

/// The `Memory` of a domain XML element (`memory`, `currentMemory`) in MiB, rounded up.
fn mem_mib(dom: &Element, name: &str) -> Result<Option<u64>, PluginError> {
    let Some(e) = dom.child(name) else {
        return Ok(None);
    };
    let bad = |why: &str| err(ErrorCode::XmlError, format!("domain/{name}: {why}"));
    let v: u64 = e.text().trim().parse().map_err(|_| bad("not a number"))?;
    let mul: u64 = match e.attr("unit").unwrap_or("KiB") {
        "b" | "bytes" => 1,
        "KB" => 1000,
        "k" | "KiB" => 1024,
        "MB" => 1_000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "T" | "TiB" => 1 << 40,
        u => return Err(bad(&format!("unknown unit '{u}'"))),
    };
    let bytes = v.checked_mul(mul).ok_or_else(|| bad("too large"))?;
    Ok(Some(bytes.div_ceil(1 << 20)))
}

impl HypervConnection {
    /// Sets how long jobs may run and how often they are polled.
    pub fn set_job_policy(&mut self, p: JobPolicy) {
        self.jobs = p;
    }

    fn guard(&self, op: &str) -> Result<(), PluginError> {
        if self.read_only {
            return Err(read_only_denied(op));
        }
        Ok(())
    }

    fn query_vms(&self, cond: Option<String>) -> Result<Vec<Vm>, PluginError> {
        let q = match cond {
            Some(c) => format!("{VM_QUERY} AND {c}"),
            None => VM_QUERY.to_string(),
        };
        self.client
            .enumerate(NS_VIRT, &q)
            .map_err(wsman_err)?
            .iter()
            .map(Vm::from_node)
            .collect()
    }

    fn one(&self, cond: String, what: String) -> Result<Vm, PluginError> {
        self.query_vms(Some(cond))?
            .into_iter()
            .next()
            .ok_or_else(|| err(ErrorCode::NoDomain, format!("domain not found: {what}")))
    }

    fn by_uuid(&self, u: Uuid) -> Result<Vm, PluginError> {
        let u = from_abi_uuid(u);
        let guid = u.hyphenated().to_string().to_uppercase();
        self.one(
            format!("Name = {}", quote(&guid)),
            format!("no domain with matching uuid '{u}'"),
        )
    }

    fn by_name(&self, name: &str) -> Result<Vm, PluginError> {
        self.one(
            format!("ElementName = {}", quote(name)),
            format!("no domain with matching name '{name}'"),
        )
    }

    fn by_id(&self, id: i32) -> Result<Vm, PluginError> {
        if id < 0 {
            return Err(err(
                ErrorCode::NoDomain,
                format!("domain not found: no domain with matching id {id}"),
            ));
        }
        self.one(
            format!("ProcessID = {id}"),
            format!("no domain with matching id {id}"),
        )
    }

    /// The VM's realized `Msvm_VirtualSystemSettingData`.
    fn vssd(&self, vm: &Vm) -> Result<Node, PluginError> {
        let q = format!(
            "ASSOCIATORS OF {{Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name={}}} WHERE AssocClass = Msvm_SettingsDefineState ResultClass = Msvm_VirtualSystemSettingData",
            quote(&vm.guid)
        );
        let all = self.client.enumerate(NS_VIRT, &q).map_err(wsman_err)?;
        let pick = all
            .iter()
            .find(|s| s.text_of("VirtualSystemType") == Some("Microsoft:Hyper-V:System:Realized"))
            .or(all.first())
            .cloned();
        pick.ok_or_else(|| {
            err(
                ErrorCode::OperationFailed,
                format!(
                    "could not find the Msvm_VirtualSystemSettingData of domain '{}'",
                    vm.name
                ),
            )
        })
    }

    /// Every resource setting of class `class` that belongs to the settings `vssd`.
    fn components(&self, vssd: &Node, class: &str) -> Result<Vec<Node>, PluginError> {
        let id = vssd.text_of("InstanceID").unwrap_or("");
        let q = format!(
            "ASSOCIATORS OF {{Msvm_VirtualSystemSettingData.InstanceID={}}} WHERE AssocClass = Msvm_VirtualSystemSettingDataComponent ResultClass = {class}",
            quote(id)
        );
        self.client.enumerate(NS_VIRT, &q).map_err(wsman_err)
    }

    /// The `<disk>` and `<interface>` elements of the settings `vssd`.
    fn devices(&self, vssd: &Node) -> Result<Vec<Element>, PluginError> {
        let rasds = self.components(vssd, "Msvm_ResourceAllocationSettingData")?;
        let sasds = self.components(vssd, "Msvm_StorageAllocationSettingData")?;
        let mut out = devices::disks(&rasds, &sasds);
        let mut ports = self.components(vssd, "Msvm_SyntheticEthernetPortSettingData")?;
        ports.extend(self.components(vssd, "Msvm_EmulatedEthernetPortSettingData")?);
        if !ports.is_empty() {
            let conns = self.components(vssd, "Msvm_EthernetPortAllocationSettingData")?;
            let switches = if conns.is_empty() {
                Vec::new()
            } else {
                self.client
                    .enumerate(NS_VIRT, "SELECT * FROM Msvm_VirtualEthernetSwitch")
                    .map_err(wsman_err)?
            };
            out.extend(devices::interfaces(&ports, &conns, &switches));
        }
        Ok(out)
    }

    /// The resource settings of class `class` that belong to the settings `vssd`.
    fn component(&self, vssd: &Node, class: &str) -> Result<Node, PluginError> {
        let id = vssd.text_of("InstanceID").ok_or_else(|| {
            err(
                ErrorCode::OperationFailed,
                "Msvm_VirtualSystemSettingData has no InstanceID",
            )
        })?;
        let q = format!(
            "ASSOCIATORS OF {{Msvm_VirtualSystemSettingData.InstanceID={}}} WHERE AssocClass = Msvm_VirtualSystemSettingDataComponent ResultClass = {class}",
            quote(id)
        );
        self.client
            .enumerate(NS_VIRT, &q)
            .map_err(wsman_err)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                err(
                    ErrorCode::OperationFailed,
                    format!("could not find the {class} of the settings '{id}'"),
                )
            })
    }

    fn settings(&self, vm: &Vm) -> Result<Settings, PluginError> {
        let vssd = self.vssd(vm)?;
        let processor = self.component(&vssd, "Msvm_ProcessorSettingData")?;
        let memory = self.component(&vssd, "Msvm_MemorySettingData")?;
        Ok(Settings {
            vssd,
            memory,
            processor,
        })
    }

    /// The domains `VIR_CONNECT_LIST_DOMAINS_*` flags select; a VM's settings are read
    /// only when the flags ask about autostart.
    fn list(&self, flags: u32) -> Result<RVec<DomainRef>, PluginError> {
        let want_autostart = flags & (filter::AUTOSTART | filter::NO_AUTOSTART) != 0;
        let mut out = RVec::new();
        for v in self.query_vms(None)? {
            let autostart = if want_autostart {
                self.vssd(&v)?.text_of("AutomaticStartupAction") == Some("4")
            } else {
                false
            };
            let facts = filter::DomainFacts {
                state: v.state(),
                persistent: true,
                autostart,
                managed_save: wmi::is_saved(v.enabled_state),
                ..Default::default()
            };
            if filter::matches(flags, &facts) {
                out.push(v.reference());
            }
        }
        Ok(out)
    }

    fn emit(&self, vm: &Vm, ev: i32, detail: i32) {
        let mut r = vm.reference();
        if ev == event::STOPPED || ev == event::UNDEFINED || ev == event::DEFINED {
            r.id = -1;
        }
        self.events.domain_lifecycle(r, ev, detail);
    }

    /// `RequestStateChange(state)` on the VM, waiting for its job.
    fn request_state(&self, vm: &Vm, state: u16) -> Result<(), PluginError> {
        let call = format!(
            "Msvm_ComputerSystem.RequestStateChange({state}) of '{}'",
            vm.name
        );
        let out = self
            .client
            .invoke(
                &vm.epr(),
                "RequestStateChange",
                &[Param::Value("RequestedState".into(), state.to_string())],
            )
            .map_err(wsman_err)?;
        wmi::finish(&self.client, &call, &out, &self.jobs).map_err(wmi_err)
    }

    fn start(&self, u: Uuid) -> Result<Vm, PluginError> {
        self.guard("virDomainCreateWithFlags")?;
        let vm = self.by_uuid(u)?;
        if wmi::is_active(vm.enabled_state) {
            return Err(invalid(
                "domain is already active or is in state transition",
            ));
        }
        self.request_state(&vm, requested::ENABLED)?;
        let vm = self.by_uuid(u)?;
        self.emit(&vm, event::STARTED, 0);
        Ok(vm)
    }

    fn destroy_vm(&self, u: Uuid) -> Result<(), PluginError> {
        self.guard("virDomainDestroyFlags")?;
        let vm = self.by_uuid(u)?;
        if !wmi::is_active(vm.enabled_state) {
            return Err(invalid("domain is not active"));
        }
        self.request_state(&vm, requested::DISABLED)?;
        // VIR_DOMAIN_EVENT_STOPPED_DESTROYED
        self.emit(&vm, event::STOPPED, 1);
        Ok(())
    }

    fn shutdown_vm(&self, u: Uuid) -> Result<(), PluginError> {
        self.guard("virDomainShutdownFlags")?;
        let vm = self.by_uuid(u)?;
        if vm.enabled_state != enabled::ENABLED {
            return Err(invalid("domain is not running"));
        }
        let q = format!(
            "SELECT * FROM Msvm_ShutdownComponent WHERE SystemName = {}",
            quote(&vm.guid)
        );
        let comps = self.client.enumerate(NS_VIRT, &q).map_err(wsman_err)?;
        let c = comps.first().ok_or_else(|| {
            err(
                ErrorCode::OperationFailed,
                format!(
                    "domain '{}' has no Msvm_ShutdownComponent: the guest's shutdown integration service is not offered",
                    vm.name
                ),
            )
        })?;
        let mut selectors = Vec::new();
        for k in [
            "CreationClassName",
            "DeviceID",
            "SystemCreationClassName",
            "SystemName",
        ] {
            let v = c.text_of(k).ok_or_else(|| {
                err(
                    ErrorCode::OperationFailed,
                    format!("Msvm_ShutdownComponent of '{}' has no {k}", vm.name),
                )
            })?;
            selectors.push((k.to_string(), v.to_string()));
        }
        let epr = Epr {
            resource_uri: class_uri(NS_VIRT, "Msvm_ShutdownComponent"),
            selectors,
        };
        let call = format!("Msvm_ShutdownComponent.InitiateShutdown of '{}'", vm.name);
        let out = self
            .client
            .invoke(
                &epr,
                "InitiateShutdown",
                &[
                    Param::Value("Force".into(), "true".into()),
                    Param::Value("Reason".into(), "Planned shutdown via rvirt".into()),
                ],
            )
            .map_err(wsman_err)?;
        wmi::finish(&self.client, &call, &out, &self.jobs).map_err(wmi_err)?;
        // VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN
        self.emit(&vm, event::STOPPED, 0);
        Ok(())
    }

    fn pause(&self, u: Uuid, pause: bool) -> Result<(), PluginError> {
        let op = if pause {
            "virDomainSuspend"
        } else {
            "virDomainResume"
        };
        self.guard(op)?;
        let vm = self.by_uuid(u)?;
        if pause {
            if vm.enabled_state != enabled::ENABLED {
                return Err(invalid("domain is not active"));
            }
            self.request_state(&vm, requested::QUIESCE)?;
            self.emit(&vm, event::SUSPENDED, 0);
        } else {
            if vm.state() != state::PAUSED {
                return Err(invalid("domain is not paused"));
            }
            self.request_state(&vm, requested::ENABLED)?;
            self.emit(&vm, event::RESUMED, 0);
        }
        Ok(())
    }

    fn reboot_vm(&self, u: Uuid) -> Result<(), PluginError> {
        self.guard("virDomainReboot")?;
        let vm = self.by_uuid(u)?;
        if vm.enabled_state != enabled::ENABLED {
            return Err(invalid("domain is not running"));
        }
        self.request_state(&vm, requested::REBOOT)
    }

    fn define(&self, xml: &str) -> Result<Vm, PluginError> {
        self.guard("virDomainDefineXML")?;
        let dom = Element::parse(xml).map_err(|e| err(ErrorCode::XmlError, e.to_string()))?;
        if dom.name() != "domain" {
            return Err(err(
                ErrorCode::XmlError,
                format!("expected a <domain> document, got <{}>", dom.name()),
            ));
        }
        if let Some(t) = dom.attr("type")
            && t != "hyperv"
        {
            return Err(err(
                ErrorCode::ConfigUnsupported,
                format!(
                    "domain/@type: '{t}' is not served by the hyperv driver (expected 'hyperv')"
                ),
            ));
        }
        let name = dom
            .child("name")
            .map(|n| n.text().trim().to_string())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err(ErrorCode::XmlError, "domain/name: missing"))?;
        let uuid = match dom.child("uuid").map(|u| u.text().trim().to_string()) {
            Some(u) => Some(uuid::Uuid::parse_str(&u).map_err(|e| {
                err(
                    ErrorCode::XmlError,
                    format!("domain/uuid: '{u}' is not a UUID: {e}"),
                )
            })?),
            None => None,
        };
        let max_mib = mem_mib(&dom, "memory")?;
        let cur_mib = mem_mib(&dom, "currentMemory")?.or(max_mib);
        let vcpus = match dom.child("vcpu") {
            Some(v) => Some(
                v.text()
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        err(
                            ErrorCode::XmlError,
                            format!(
                                "domain/vcpu: '{}' is not a positive number",
                                v.text().trim()
                            ),
                        )
                    })?,
            ),
            None => None,
        };
        let by_name = maybe(self.by_name(&name))?;
        let by_uuid = match uuid {
            Some(u) => maybe(self.by_uuid(to_abi_uuid(u)))?,
            None => None,
        };
        if let Some(v) = &by_name
            && uuid.is_some_and(|u| u != v.uuid)
        {
            return Err(err(
                ErrorCode::DomExist,
                format!(
                    "operation failed: domain '{name}' already exists with uuid {}",
                    v.uuid
                ),
            ));
        }
        // the document names a domain that exists (by UUID, or by name without a UUID):
        // its definition is changed
        if let Some(v) = by_uuid.or(by_name) {
            return self.redefine(&v, &name, max_mib, cur_mib, vcpus);
        }
        let settings = wmi::embedded_instance(
            "Msvm_VirtualSystemSettingData",
            &[("ElementName", "string", &name)],
        );
        let call = format!("Msvm_VirtualSystemManagementService.DefineSystem of '{name}'");
        let out = self
            .client
            .invoke(
                &self.service,
                "DefineSystem",
                &[Param::Value("SystemSettings".into(), settings)],
            )
            .map_err(wsman_err)?;
        wmi::finish(&self.client, &call, &out, &self.jobs).map_err(wmi_err)?;
        let guid = out
            .child("ResultingSystem")
            .and_then(Epr::from_node)
            .and_then(|e| e.selector("Name").map(str::to_string));
        let vm = match guid {
            Some(g) => self.one(
                format!("Name = {}", quote(&g)),
                format!("the new domain '{name}' ({g})"),
            )?,
            None => self.by_name(&name)?,
        };
        if (max_mib.is_some() || vcpus.is_some())
            && let Err(e) = self.set_resources(&vm, max_mib, cur_mib, vcpus)
        {
            // do not leave a half-made VM behind
            let _ = self.destroy_system(&vm);
            return Err(e);
        }
        self.emit(&vm, event::DEFINED, 0);
        Ok(vm)
    }

    /// Changes the definition of an existing VM: its name (`ModifySystemSettings`), memory
    /// and processors (`ModifyResourceSettings`). Hyper-V changes these on a VM that is
    /// off; an active VM is refused.
    fn redefine(
        &self,
        vm: &Vm,
        name: &str,
        max_mib: Option<u64>,
        cur_mib: Option<u64>,
        vcpus: Option<u32>,
    ) -> Result<Vm, PluginError> {
        if wmi::is_active(vm.enabled_state) {
            return Err(invalid(&format!(
                "cannot change the definition of the active domain '{}': Hyper-V changes the settings of a VM that is off",
                vm.name
            )));
        }
        if vm.name != name {
            let id = self
                .vssd(vm)?
                .text_of("InstanceID")
                .unwrap_or("")
                .to_string();
            self.modify_system(
                vm,
                &[
                    ("InstanceID", "string", &id),
                    ("ElementName", "string", name),
                ],
            )?;
        }
        let s = self.settings(vm)?;
        let (old_max, old_cur) = (s.max_memory_kib() / 1024, s.memory_kib() / 1024);
        let mem_changed =
            max_mib.is_some_and(|m| m != old_max) || cur_mib.is_some_and(|c| c != old_cur);
        let cpu_changed = vcpus.is_some_and(|n| n != s.vcpus());
        if mem_changed || cpu_changed {
            self.set_resources(
                vm,
                if mem_changed { max_mib } else { None },
                if mem_changed { cur_mib } else { None },
                if cpu_changed { vcpus } else { None },
            )?;
        }
        let vm = self.by_uuid(to_abi_uuid(vm.uuid))?;
        // VIR_DOMAIN_EVENT_DEFINED_UPDATED
        self.emit(&vm, event::DEFINED, 1);
        Ok(vm)
    }

    /// `ModifySystemSettings` with an embedded `Msvm_VirtualSystemSettingData` of `props`.
    fn modify_system(&self, vm: &Vm, props: &[(&str, &str, &str)]) -> Result<(), PluginError> {
        let settings = wmi::embedded_instance("Msvm_VirtualSystemSettingData", props);
        let call = format!(
            "Msvm_VirtualSystemManagementService.ModifySystemSettings of '{}'",
            vm.name
        );
        let out = self
            .client
            .invoke(
                &self.service,
                "ModifySystemSettings",
                &[Param::Value("SystemSettings".into(), settings)],
            )
            .map_err(wsman_err)?;
        wmi::finish(&self.client, &call, &out, &self.jobs).map_err(wmi_err)
    }

    /// `virDomainSetMemoryFlags` / `virDomainSetVcpusFlags`: `ModifyResourceSettings` on
    /// a VM that is off (`VIR_DOMAIN_AFFECT_CONFIG`, or the current state when off). A
    /// running VM's memory and processors are not changed here.
    fn set_size(&self, op: &str, u: Uuid, flags: u32, change: Resize) -> Result<(), PluginError> {
        self.guard(op)?;
        let vm = self.by_uuid(u)?;
        let active = wmi::is_active(vm.enabled_state);
        let live = flags & 1 != 0 || (flags & 3 == 0 && active);
        if live {
            return Err(no_support(
                op,
                "Hyper-V's memory and processors are changed here only while the VM is off (VIR_DOMAIN_AFFECT_CONFIG)",
            ));
        }
        if active {
            return Err(invalid(&format!(
                "cannot change the definition of the active domain '{}': Hyper-V changes the settings of a VM that is off",
                vm.name
            )));
        }
        let s = self.settings(&vm)?;
        let (max, cur) = (s.max_memory_kib() / 1024, s.memory_kib() / 1024);
        match change {
            Resize::Memory { kib, maximum } => {
                let mib = kib.div_ceil(1024);
                if mib == 0 {
                    return Err(err(
                        ErrorCode::InvalidArg,
                        format!("{op}: memory of 0 KiB for domain '{}'", vm.name),
                    ));
                }
                let (max, cur) = if maximum {
                    (mib, cur.min(mib))
                } else if mib > max {
                    return Err(err(
                        ErrorCode::InvalidArg,
                        format!(
                            "{op}: {kib} KiB is more than the maximum {} KiB of domain '{}'",
                            max * 1024,
                            vm.name
                        ),
                    ));
                } else {
                    (max, mib)
                };
                self.set_resources(&vm, Some(max), Some(cur), None)
            }
            Resize::Vcpus(n) => {
                if n == 0 {
                    return Err(err(
                        ErrorCode::InvalidArg,
                        format!("{op}: 0 vcpus for domain '{}'", vm.name),
                    ));
                }
                self.set_resources(&vm, None, None, Some(n))
            }
        }
    }

    /// `ModifyResourceSettings` with the VM's memory and processor settings changed.
    fn set_resources(
        &self,
        vm: &Vm,
        max_mib: Option<u64>,
        cur_mib: Option<u64>,
        vcpus: Option<u32>,
    ) -> Result<(), PluginError> {
        let s = self.settings(vm)?;
        let mut items = Vec::new();
        if let (Some(max), Some(cur)) = (max_mib, cur_mib) {
            let id = s.memory.text_of("InstanceID").unwrap_or("").to_string();
            let (max, cur) = (max.to_string(), cur.min(max).to_string());
            let dynamic = if cur == max { "false" } else { "true" };
            items.push(wmi::embedded_instance(
                "Msvm_MemorySettingData",
                &[
                    ("InstanceID", "string", &id),
                    ("VirtualQuantity", "uint64", &cur),
                    ("Reservation", "uint64", &cur),
                    ("Limit", "uint64", &max),
                    ("DynamicMemoryEnabled", "boolean", dynamic),
                ],
            ));
        }
        if let Some(n) = vcpus {
            let id = s.processor.text_of("InstanceID").unwrap_or("").to_string();
            items.push(wmi::embedded_instance(
                "Msvm_ProcessorSettingData",
                &[
                    ("InstanceID", "string", &id),
                    ("VirtualQuantity", "uint64", &n.to_string()),
                ],
            ));
        }
        let call = format!(
            "Msvm_VirtualSystemManagementService.ModifyResourceSettings of '{}'",
            vm.name
        );
        let out = self
            .client
            .invoke(
                &self.service,
                "ModifyResourceSettings",
                &[Param::Array("ResourceSettings".into(), items)],
            )
            .map_err(wsman_err)?;
        wmi::finish(&self.client, &call, &out, &self.jobs).map_err(wmi_err)
    }

    fn destroy_system(&self, vm: &Vm) -> Result<(), PluginError> {
        let call = format!(
            "Msvm_VirtualSystemManagementService.DestroySystem of '{}'",
            vm.name
        );
        let out = self
            .client
            .invoke(
                &self.service,
                "DestroySystem",
                &[Param::Ref("AffectedSystem".into(), vm.epr())],
            )
            .map_err(wsman_err)?;
        wmi::finish(&self.client, &call, &out, &self.jobs).map_err(wmi_err)
    }

    fn undefine_vm(&self, u: Uuid) -> Result<(), PluginError> {
        self.guard("virDomainUndefineFlags")?;
        let vm = self.by_uuid(u)?;
        if wmi::is_active(vm.enabled_state) {
            return Err(invalid("cannot undefine an active domain"));
        }
        self.destroy_system(&vm)?;
        self.emit(&vm, event::UNDEFINED, 0);
        Ok(())
    }

    /// The domain XML of a VM, from its settings.
    fn domain_xml(&self, vm: &Vm) -> Result<String, PluginError> {
        let s = self.settings(vm)?;
        let mut d = Element::new("domain").with_attr("type", "hyperv");
        if vm.id >= 0 {
            d.set_attr("id", &vm.id.to_string());
        }
        d.push(Element::new("name").with_text(&vm.name));
        d.push(Element::new("uuid").with_text(&vm.uuid.hyphenated().to_string()));
        let notes: Vec<&str> = s
            .vssd
            .children_named("Notes")
            .filter(|n| !n.nil)
            .map(|n| n.text.trim())
            .filter(|n| !n.is_empty())
            .collect();
        if !notes.is_empty() {
            d.push(Element::new("description").with_text(&notes.join("\n")));
        }
        d.push(
            Element::new("memory")
                .with_attr("unit", "KiB")
                .with_text(&s.max_memory_kib().to_string()),
        );
        d.push(
            Element::new("currentMemory")
                .with_attr("unit", "KiB")
                .with_text(&s.memory_kib().to_string()),
        );
        d.push(
            Element::new("vcpu")
                .with_attr("placement", "static")
                .with_text(&s.vcpus().to_string()),
        );
        let mut os = Element::new("os");
        if s.vssd.text_of("VirtualSystemSubType") == Some("Microsoft:Hyper-V:SubType:2") {
            os.set_attr("firmware", "efi");
        }
        os.push(
            Element::new("type")
                .with_attr("arch", "x86_64")
                .with_text("hvm"),
        );
        d.push(os);
        d.push(Element::new("clock").with_attr("offset", "localtime"));
        d.push(Element::new("on_poweroff").with_text("destroy"));
        d.push(Element::new("on_reboot").with_text("restart"));
        d.push(Element::new("on_crash").with_text("restart"));
        let mut devs = Element::new("devices");
        for e in self.devices(&s.vssd)? {
            devs.push(e);
        }
        d.push(devs);
        Ok(d.to_xml_string())
    }

    fn autostart(&self, u: Uuid) -> Result<bool, PluginError> {
        let vm = self.by_uuid(u)?;
        let v = self.vssd(&vm)?;
        // 4: "always start automatically"
        Ok(v.text_of("AutomaticStartupAction") == Some("4"))
    }

    fn set_autostart_of(&self, u: Uuid, on: bool) -> Result<(), PluginError> {
        self.guard("virDomainSetAutostart")?;
        let vm = self.by_uuid(u)?;
        let v = self.vssd(&vm)?;
        let id = v.text_of("InstanceID").unwrap_or("").to_string();
        // 2: none, 4: always start
        let action = if on { "4" } else { "2" };
        self.modify_system(
            &vm,
            &[
                ("InstanceID", "string", &id),
                ("AutomaticStartupAction", "uint16", action),
            ],
        )
    }

    fn node_info(&self) -> Result<NodeInfo, PluginError> {
        let cs = self
            .client
            .enumerate(NS_CIMV2, "SELECT * FROM Win32_ComputerSystem")
            .map_err(wsman_err)?;
        let cs = cs.first().ok_or_else(|| {
            err(
                ErrorCode::OperationFailed,
                "the host has no Win32_ComputerSystem",
            )
        })?;
        let procs = self
            .client
            .enumerate(NS_CIMV2, "SELECT * FROM Win32_Processor")
            .map_err(wsman_err)?;
        let p = procs.first().ok_or_else(|| {
            err(
                ErrorCode::OperationFailed,
                "the host has no Win32_Processor",
            )
        })?;
        let num = |n: &Node, k: &str| {
            n.text_of(k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let sockets = procs.len().max(1) as u32;
        let cores = num(p, "NumberOfCores").max(1) as u32;
        let logical = num(p, "NumberOfLogicalProcessors").max(cores as u64) as u32;
        let threads = (logical / cores).max(1);
        // libvirt's model: the processor's name, runs of spaces squeezed, 31 bytes at most
        let model: String = p
            .text_of("Name")
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(31)
            .collect();
        Ok(NodeInfo {
            model: model.into(),
            memory_kib: num(cs, "TotalPhysicalMemory") / 1024,
            cpus: sockets * cores * threads,
            mhz: num(p, "MaxClockSpeed") as u32,
            nodes: 1,
            sockets,
            cores,
            threads,
        })
    }

    /// `Win32_OperatingSystem.Version` packed as libvirt's hyperv driver packs it
    /// (Windows build numbers pass 999): `(major * 100 + minor) * 1,000,000 + build`, so
    /// 10.0.17763 is 1000017763.
    fn version(&self) -> Result<u64, PluginError> {
        let os = self
            .client
            .enumerate(NS_CIMV2, "SELECT * FROM Win32_OperatingSystem")
            .map_err(wsman_err)?;
        let v = os
            .first()
            .and_then(|o| o.text_of("Version"))
            .ok_or_else(|| {
                err(
                    ErrorCode::InternalError,
                    "could not get version information for the host",
                )
            })?;
        pack_version(v).ok_or_else(|| {
            err(
                ErrorCode::InternalError,
                format!("could not parse version from '{v}'"),
            )
        })
    }

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
            a.push(Element::new("domain").with_attr("type", "hyperv"));
            g.push(a);
            caps.push(g);
        }
        Ok(caps.to_xml_string())
    }
}

/// What `set_size` changes.
#[derive(Debug, Clone, Copy)]
enum Resize {
    Memory { kib: u64, maximum: bool },
    Vcpus(u32),
}

/// A lookup's domain, `None` where there is none; other errors pass.
fn maybe(r: Result<Vm, PluginError>) -> Result<Option<Vm>, PluginError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code == ErrorCode::NoDomain as i32 => Ok(None),
        Err(e) => Err(e),
    }
}

fn pack_version(v: &str) -> Option<u64> {
    let mut it = v.trim().split('.');
    let major: u64 = it.next()?.parse().ok()?;
    let minor: u64 = it.next()?.parse().ok()?;
    let build: u64 = it.next().map(|b| b.parse().ok()).unwrap_or(Some(0))?;
    if minor > 99 || build > 999_999 {
        return None;
    }
    Some((major * 100 + minor) * 1_000_000 + build)
}

/// Why snapshots answer no-support.
const SNAPSHOTS: &str =
    "Hyper-V checkpoints (Msvm_VirtualSystemSnapshotService) are not implemented";

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

impl DriverConnection for HypervConnection {
    fn get_type(&self) -> PResult<RString> {
        RResult::ROk("Hyper-V".into())
    }

    fn get_version(&self) -> PResult<u64> {
        res(self.version())
    }

    fn get_uri(&self) -> PResult<RString> {
        RResult::ROk(self.uri.as_str().into())
    }

    fn get_hostname(&self) -> PResult<RString> {
        RResult::ROk(self.hostname.as_str().into())
    }

    fn get_capabilities(&self) -> PResult<RString> {
        res(self.capabilities().map(RString::from))
    }

    fn node_get_info(&self) -> PResult<NodeInfo> {
        res(self.node_info())
    }

    fn list_all_domains(&self, flags: u32) -> PResult<RVec<DomainRef>> {
        checked!("virConnectListAllDomains", flags, filter::FILTERS);
        res(self.list(flags))
    }

    fn lookup_by_name(&self, name: RStr<'_>) -> PResult<DomainRef> {
        res(self.by_name(name.as_str()).map(|v| v.reference()))
    }

    fn lookup_by_uuid(&self, uuid: Uuid) -> PResult<DomainRef> {
        res(self.by_uuid(uuid).map(|v| v.reference()))
    }

    fn lookup_by_id(&self, id: i32) -> PResult<DomainRef> {
        res(self.by_id(id).map(|v| v.reference()))
    }

    fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        // VIR_DOMAIN_DEFINE_VALIDATE: the document is always checked.
        checked!("virDomainDefineXMLFlags", flags, 1);
        res(self.define(xml.as_str()).map(|v| v.reference()))
    }

    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainUndefineFlags", flags, 0);
        res(self.undefine_vm(uuid))
    }

    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainCreateWithFlags", flags, 0);
        res(self.start(uuid).map(|v| v.reference()))
    }

    fn create_xml(&self, xml: RStr<'_>, _flags: u32) -> PResult<DomainRef> {
        if let Err(e) = self.guard("virDomainCreateXML") {
            return RResult::RErr(e);
        }
        if let Err(e) = Element::parse(xml.as_str()) {
            return RResult::RErr(err(ErrorCode::XmlError, e.to_string()));
        }
        RResult::RErr(no_support(
            "virDomainCreateXML",
            "Hyper-V has no transient domains; define and start instead",
        ))
    }

    fn destroy(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainDestroyFlags", flags, 0);
        res(self.destroy_vm(uuid))
    }

    fn shutdown(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainShutdownFlags", flags, 0);
        res(self.shutdown_vm(uuid))
    }

    fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainReboot", flags, 0);
        res(self.reboot_vm(uuid))
    }

    fn suspend(&self, uuid: Uuid) -> PResult<()> {
        res(self.pause(uuid, true))
    }

    fn resume(&self, uuid: Uuid) -> PResult<()> {
        res(self.pause(uuid, false))
    }

    fn get_info(&self, uuid: Uuid) -> PResult<DomainInfo> {
        res(self.by_uuid(uuid).and_then(|v| {
            let s = self.settings(&v)?;
            Ok(DomainInfo {
                state: v.state(),
                max_mem_kib: s.max_memory_kib(),
                memory_kib: s.memory_kib(),
                nr_virt_cpu: s.vcpus(),
                cpu_time_ns: 0,
            })
        }))
    }

    fn get_state(&self, uuid: Uuid) -> PResult<StateReason> {
        res(self.by_uuid(uuid).map(|v| StateReason {
            state: v.state(),
            // VIR_DOMAIN_RUNNING_BOOTED, VIR_DOMAIN_PAUSED_USER,
            // VIR_DOMAIN_SHUTOFF_SAVED / _UNKNOWN
            reason: match v.state() {
                state::RUNNING => 1,
                state::PAUSED => 2,
                state::SHUTOFF if wmi::is_saved(v.enabled_state) => 4,
                _ => 0,
            },
        }))
    }

    fn get_xml_desc(&self, uuid: Uuid, flags: u32) -> PResult<RString> {
        // VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_INACTIVE: one definition, no secrets.
        checked!("virDomainGetXMLDesc", flags, 1 | 2);
        res(self
            .by_uuid(uuid)
            .and_then(|v| self.domain_xml(&v))
            .map(RString::from))
    }

    fn is_persistent(&self, uuid: Uuid) -> PResult<bool> {
        res(self.by_uuid(uuid).map(|_| true))
    }

    fn get_autostart(&self, uuid: Uuid) -> PResult<bool> {
        res(self.autostart(uuid))
    }

    fn set_autostart(&self, uuid: Uuid, autostart: bool) -> PResult<()> {
        res(self.set_autostart_of(uuid, autostart))
    }

    fn get_vcpus_flags(&self, uuid: Uuid, flags: u32) -> PResult<i32> {
        checked!("virDomainGetVcpusFlags", flags, 1 | 2 | 4);
        res(self
            .by_uuid(uuid)
            .and_then(|v| self.settings(&v))
            .map(|s| s.vcpus() as i32))
    }

    fn get_os_type(&self, uuid: Uuid) -> PResult<RString> {
        res(self.by_uuid(uuid).map(|_| "hvm".into()))
    }

    fn has_managed_save_image(&self, uuid: Uuid, flags: u32) -> PResult<bool> {
        checked!("virDomainHasManagedSaveImage", flags, 0);
        res(self.by_uuid(uuid).map(|v| wmi::is_saved(v.enabled_state)))
    }

    fn domain_xml_to_native(
        &self,
        _format: RStr<'_>,
        _xml: RStr<'_>,
        _flags: u32,
    ) -> PResult<RString> {
        RResult::RErr(no_support(
            "virConnectDomainXMLToNative",
            "Hyper-V has no native configuration format to convert to",
        ))
    }

    fn domain_xml_from_native(
        &self,
        _format: RStr<'_>,
        _config: RStr<'_>,
        _flags: u32,
    ) -> PResult<RString> {
        RResult::RErr(no_support(
            "virConnectDomainXMLFromNative",
            "Hyper-V has no native configuration format to convert from",
        ))
    }

    fn set_memory_flags(&self, uuid: Uuid, kib: u64, flags: u32) -> PResult<()> {
        // VIR_DOMAIN_AFFECT_LIVE | _CONFIG | VIR_DOMAIN_MEM_MAXIMUM
        checked!("virDomainSetMemoryFlags", flags, 1 | 2 | 4);
        res(self.set_size(
            "virDomainSetMemoryFlags",
            uuid,
            flags,
            Resize::Memory {
                kib,
                maximum: flags & 4 != 0,
            },
        ))
    }

    fn set_vcpus_flags(&self, uuid: Uuid, nvcpus: u32, flags: u32) -> PResult<()> {
        // VIR_DOMAIN_AFFECT_LIVE | _CONFIG | VIR_DOMAIN_VCPU_MAXIMUM
        checked!("virDomainSetVcpusFlags", flags, 1 | 2 | 4);
        if flags & 4 != 0 {
            return RResult::RErr(no_support(
                "virDomainSetVcpusFlags",
                "Hyper-V has no maximum vCPU count apart from the count (VIR_DOMAIN_VCPU_MAXIMUM)",
            ));
        }
        res(self.set_size("virDomainSetVcpusFlags", uuid, flags, Resize::Vcpus(nvcpus)))
    }

    fn attach_device_flags(&self, _uuid: Uuid, _xml: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(no_support(
            "virDomainAttachDeviceFlags",
            "adding devices (AddResourceSettings) is not implemented",
        ))
    }

    fn detach_device_flags(&self, _uuid: Uuid, _xml: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(no_support(
            "virDomainDetachDeviceFlags",
            "removing devices (RemoveResourceSettings) is not implemented",
        ))
    }

    fn snapshot_create_xml(&self, _uuid: Uuid, _xml: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(no_support("virDomainSnapshotCreateXML", SNAPSHOTS))
    }

    fn snapshot_list(&self, _uuid: Uuid, _flags: u32) -> PResult<RVec<RString>> {
        RResult::RErr(no_support("virDomainListAllSnapshots", SNAPSHOTS))
    }

    fn snapshot_list_children(
        &self,
        _uuid: Uuid,
        _name: RStr<'_>,
        _flags: u32,
    ) -> PResult<RVec<RString>> {
        RResult::RErr(no_support("virDomainSnapshotListAllChildren", SNAPSHOTS))
    }

    fn snapshot_get_xml_desc(&self, _uuid: Uuid, _name: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(no_support("virDomainSnapshotGetXMLDesc", SNAPSHOTS))
    }

    fn snapshot_current(&self, _uuid: Uuid, _flags: u32) -> PResult<RString> {
        RResult::RErr(no_support("virDomainSnapshotCurrent", SNAPSHOTS))
    }

    fn snapshot_get_parent(&self, _uuid: Uuid, _name: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(no_support("virDomainSnapshotGetParent", SNAPSHOTS))
    }

    fn snapshot_revert(&self, _uuid: Uuid, _name: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(no_support("virDomainRevertToSnapshot", SNAPSHOTS))
    }

    fn snapshot_delete(&self, _uuid: Uuid, _name: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(no_support("virDomainSnapshotDelete", SNAPSHOTS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_packed_as_libvirt() {
        assert_eq!(pack_version("10.0.17763"), Some(1_000_017_763));
        assert_eq!(pack_version("6.3.9600"), Some(603_009_600));
        assert_eq!(pack_version("x"), None);
    }

    #[test]
    fn memory_units_round_up_to_mib() {
        let d = Element::parse(
            "<domain><memory unit='GiB'>2</memory><currentMemory>1025</currentMemory></domain>",
        )
        .unwrap();
        assert_eq!(mem_mib(&d, "memory").unwrap(), Some(2048));
        assert_eq!(mem_mib(&d, "currentMemory").unwrap(), Some(2));
        assert_eq!(mem_mib(&d, "vcpu").unwrap(), None);
        let bad = Element::parse("<domain><memory unit='parsec'>2</memory></domain>").unwrap();
        let e = mem_mib(&bad, "memory").unwrap_err();
        assert!(e.message.contains("domain/memory") && e.message.contains("parsec"));
    }
}

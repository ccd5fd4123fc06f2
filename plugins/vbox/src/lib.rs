//! The VirtualBox driver: `vbox:///session` (and `vbox:///system`, which libvirt accepts
//! as well) over VirtualBox's web service API (`vboxwebsrv`, SOAP over HTTP; [`soap`],
//! [`api`]), one websession per connection.
//!
//! * **Endpoint**: `http://localhost:18083/` (vboxwebsrv's default), or the URI's
//!   `?endpoint=URL`, or `$RVIRT_VBOX_ENDPOINT` ([`uri`]).
//! * **Credentials**: libvirt's `auth.conf` (`?authfile=`, `$LIBVIRT_AUTH_FILE`, the user's
//!   and the system's file), `[auth-vbox-HOST]` or `[auth-vbox-default]`; without one, the
//!   empty login vboxwebsrv accepts when its authentication library is `null`.
//! * **Domains** are the registered machines (`IVirtualBox_getMachines`); the id of a
//!   running or paused machine is its place in that list plus one, as libvirt's vbox driver
//!   numbers them; shut-off machines have none. Every machine is persistent.
//! * **States** map from `MachineState`: `PoweredOff`, `Saved`, `Aborted`, `AbortedSaved`,
//!   `Teleported` → shut off; `Running`, `Starting`, `LiveSnapshotting`,
//!   `OnlineSnapshotting`, `Teleporting`, `TeleportingIn`, `Restoring` → running; `Paused`,
//!   `TeleportingPausedVM`, `DeletingSnapshotPaused`, `Saving` → paused; `Stopping` →
//!   shutdown; `Stuck` (a guru meditation) → crashed.
//! * **Lifecycle**: start is `IMachine_launchVMProcess` (`headless`) and its progress;
//!   destroy `IConsole_powerDown`, shutdown `IConsole_powerButton`, suspend/resume
//!   `IConsole_pause`/`resume`, reboot `IConsole_reset`, each with the machine locked
//!   (`Shared`) in the websession's `ISession`.
//! * **Define** creates the machine (`IVirtualBox_createMachine` with the domain's UUID in
//!   `flags`, the OS type from the domain's metadata or `Other`/`Other_64`), sets memory,
//!   CPUs and description, saves and registers it. Defining a machine that exists (same
//!   name and UUID) changes its settings through the session machine of a `Write` lock.
//!   Disks (file-backed hard disks and CD-ROMs on IDE, SATA or SCSI) and interfaces (NAT,
//!   bridged, host-only, internal; [`devices`]) are attached after registration, in a
//!   `Write` lock (`addStorageController`, `IVirtualBox_openMedium`, `attachDevice`, the
//!   `INetworkAdapter` setters); a machine whose attachment fails is removed again. Other
//!   devices are refused naming the element; the devices of an existing machine do not
//!   change.
//!   **Undefine** is `IMachine_unregister` (`DetachAllReturnNone`) and
//!   `IMachine_deleteConfig`. **XML** is built from the machine's settings.
//! * **CreateXML**: VirtualBox has no transient machines; as libvirt's vbox driver, the
//!   domain is defined and started (and undefined again where the start fails).
//! * **Autostart** is the machine's `autostartEnabled`; **node info** comes from `IHost`.
//! * **Websessions** that vboxwebsrv expired (idle past its `--timeout`) are renewed: after
//!   60 s idle an operation probes the websession and logs on again.

pub mod api;
pub mod devices;
pub mod soap;
pub mod uri;

use api::{Api, ApiError};
use rvirt_sdk::{
    PluginInfo,
    abi::{
        DomainInfo, DomainRef, DriverConnection, ErrorCode, ErrorDomain, EventSinkBox, NodeInfo,
        PResult, PluginError, StateReason, Uuid,
        abi_stable::std_types::{RResult, RStr, RString, RVec},
        state,
    },
    filter,
    util::{check_flags, from_abi_uuid, read_only_denied, to_abi_uuid},
};
use rvirt_xml::{Domain, Element};
use std::sync::Mutex;
use std::time::Duration;
use uri::VboxUri;

rvirt_sdk::export_plugin! {
    manifest: PluginInfo {
        name: "vbox",
        kind: "hypervisor",
        schemes: &["vbox"],
        version: env!("CARGO_PKG_VERSION"),
        description: "VirtualBox over its SOAP web service (vboxwebsrv), compatible with libvirt's vbox driver",
    },
    open: open,
}

/// libvirt's `VIR_FROM_VBOX` error domain (not among the ABI's named domains).
const FROM_VBOX: i32 = 25;

/// The namespace of the metadata element that carries the VirtualBox OS type.
pub const METADATA_NS: &str = "http://www.virtualbox.org/";

fn err(code: ErrorCode, message: impl Into<String>) -> PluginError {
    PluginError {
        code: code as i32,
        domain: FROM_VBOX,
        message: message.into().into(),
    }
}

/// The no-support error naming the operation and the driver.
fn no_support(op: &str) -> PluginError {
    err(
        ErrorCode::NoSupport,
        format!("this function is not supported by the connection driver: {op} (vbox driver)"),
    )
}

/// A web service error as a libvirt one: the COM result code decides the code.
fn api_err(op: &str, e: ApiError) -> PluginError {
    let code = match (&e.source, e.code()) {
        (soap::SoapError::Connect { .. }, _) => ErrorCode::NoConnect,
        (_, Some(api::E_OBJECT_NOT_FOUND)) => ErrorCode::NoDomain,
        (_, Some(api::E_INVALID_VM_STATE)) | (_, Some(api::E_INVALID_OBJECT_STATE)) => {
            ErrorCode::OperationInvalid
        }
        (_, Some(api::E_NOT_SUPPORTED)) => ErrorCode::NoSupport,
        (_, Some(api::E_ACCESSDENIED)) => ErrorCode::OperationDenied,
        _ => ErrorCode::OperationFailed,
    };
    err(code, format!("{op}: {e}"))
}

/// Opens `vbox:///session` or `vbox:///system`: logs on to the web service.
pub fn open(
    uri: &str,
    read_only: bool,
    events: EventSinkBox,
) -> Result<VboxConnection, PluginError> {
    let env = std::env::var(uri::ENDPOINT_ENV).ok();
    let u = VboxUri::parse(uri, env.as_deref())
        .map_err(|e| err(ErrorCode::InvalidArg, e.to_string()))?;
    let (user, password) = u
        .credentials()
        .map_err(|e| err(ErrorCode::OpenFailed, e.to_string()))?;
    let api = Api::logon(&u.endpoint, &user, &password).map_err(|e| {
        let code = match (&e.source, e.code()) {
            (soap::SoapError::Connect { .. }, _) => ErrorCode::NoConnect,
            (_, Some(_)) | (soap::SoapError::Fault { .. }, _) => ErrorCode::OperationDenied,
            _ => ErrorCode::OpenFailed,
        };
        err(
            code,
            format!(
                "cannot open a session with the VirtualBox web service at {} {}: {e}",
                u.endpoint,
                if user.is_empty() {
                    "with the empty login (no [auth-vbox-…] credentials in auth.conf)".to_string()
                } else {
                    format!("as '{user}'")
                }
            ),
        )
    })?;
    let version = api
        .version()
        .map_err(|e| api_err("virConnectGetVersion", e))?;
    let (major, minor, micro) = api::parse_version(&version).ok_or_else(|| {
        err(
            ErrorCode::OpenFailed,
            format!("IVirtualBox_getVersion: '{version}' is not a VirtualBox version"),
        )
    })?;
    Ok(VboxConnection {
        uri: u,
        api,
        version: (major, minor, micro),
        read_only,
        events,
        lock: Mutex::new(()),
        idle: KEEP_ALIVE_IDLE,
    })
}

/// How long a websession may sit idle before an operation checks that vboxwebsrv still
/// knows it (and logs on again where it expired).
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);

/// One connection: one websession.
pub struct VboxConnection {
    uri: VboxUri,
    api: Api,
    version: (u32, u32, u32),
    read_only: bool,
    events: EventSinkBox,
    /// Serialises the uses of the websession's one `ISession`.
    lock: Mutex<()>,
    idle: Duration,
}

impl Drop for VboxConnection {
    fn drop(&mut self) {
        let _ = self.api.logoff();
    }
}

/// A machine as listed.
#[derive(Debug, Clone)]
struct Machine {
    mref: String,
    name: String,
    uuid: uuid::Uuid,
    vbox_state: String,
    state: i32,
    id: i32,
}

impl Machine {
    fn reference(&self) -> DomainRef {
        DomainRef {
            name: self.name.as_str().into(),
            uuid: to_abi_uuid(self.uuid),
            id: self.id,
        }
    }
}

/// libvirt's state of a `MachineState` name.
pub fn map_state(s: &str) -> i32 {
    match s {
        "Running" | "Starting" | "LiveSnapshotting" | "OnlineSnapshotting" | "Teleporting"
        | "TeleportingIn" | "Restoring" => state::RUNNING,
        "Paused" | "TeleportingPausedVM" | "DeletingSnapshotPaused" | "Saving" => state::PAUSED,
        "Stopping" => state::SHUTDOWN,
        "Stuck" => state::CRASHED,
        "PoweredOff" | "Saved" | "Aborted" | "AbortedSaved" | "Teleported" => state::SHUTOFF,
        _ => state::SHUTOFF,
    }
}

fn active(st: i32) -> bool {
    st != state::SHUTOFF
}

/// A UUID as VirtualBox prints it (braces optional).
fn parse_uuid(s: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(s.trim().trim_matches(|c| c == '{' || c == '}')).ok()
}

mod event {
    pub const DEFINED: i32 = 0;
    pub const UNDEFINED: i32 = 1;
    pub const STARTED: i32 = 2;
    pub const SUSPENDED: i32 = 3;
    pub const RESUMED: i32 = 4;
    pub const STOPPED: i32 = 5;
    pub const STOPPED_DESTROYED: i32 = 1;
}

impl VboxConnection {
    /// Sets how long the websession may sit idle before it is checked (tests shorten it).
    pub fn set_keep_alive_idle(&mut self, idle: Duration) {
        self.idle = idle;
    }

    /// Logs on again where the websession expired.
    fn alive(&self, op: &str) -> Result<(), PluginError> {
        self.api.keep_alive(self.idle).map_err(|e| api_err(op, e))
    }

    /// The machine's facts; `index` is its place in the machine list.
    fn machine(&self, mref: &str, index: Option<usize>) -> Result<Machine, ApiError> {
        let name = self.api.machine_name(mref)?;
        let id = self.api.machine_id(mref)?;
        let vbox_state = self.api.machine_state(mref)?;
        let st = map_state(&vbox_state);
        Ok(Machine {
            mref: mref.to_string(),
            name,
            uuid: parse_uuid(&id).unwrap_or_default(),
            vbox_state,
            state: st,
            id: match index {
                Some(i) if active(st) => i as i32 + 1,
                _ => -1,
            },
        })
    }

    fn machines(&self, op: &str) -> Result<Vec<Machine>, PluginError> {
        self.alive(op)?;
        let refs = self.api.machines().map_err(|e| api_err(op, e))?;
        refs.iter()
            .enumerate()
            .map(|(i, r)| self.machine(r, Some(i)).map_err(|e| api_err(op, e)))
            .collect()
    }

    /// The machine named (or with the UUID) `key`, with its id from the machine list.
    fn find(&self, op: &str, key: &str, what: &str) -> Result<Machine, PluginError> {
        self.alive(op)?;
        let mref = self.api.find_machine(key).map_err(|e| {
            if e.code() == Some(api::E_OBJECT_NOT_FOUND) {
                err(
                    ErrorCode::NoDomain,
                    format!("domain not found: {what} ({op}: {e})"),
                )
            } else {
                api_err(op, e)
            }
        })?;
        let mut m = self.machine(&mref, None).map_err(|e| api_err(op, e))?;
        if active(m.state) {
            // the id is the place in the list: read it where it matters
            let refs = self.api.machines().map_err(|e| api_err(op, e))?;
            if let Some(i) = refs.iter().position(|r| *r == mref) {
                m.id = i as i32 + 1;
            } else {
                for (i, r) in refs.iter().enumerate() {
                    if self.api.machine_id(r).ok().and_then(|u| parse_uuid(&u)) == Some(m.uuid) {
                        m.id = i as i32 + 1;
                    }
                }
            }
        }
        Ok(m)
    }

    fn by_uuid(&self, op: &str, u: Uuid) -> Result<Machine, PluginError> {
        let u = from_abi_uuid(u);
        self.find(
            op,
            &u.to_string(),
            &format!("no domain with matching uuid '{u}'"),
        )
    }

    fn emit(&self, m: &Machine, ev: i32, detail: i32) {
        let mut r = m.reference();
        if ev == event::STOPPED || ev == event::UNDEFINED || ev == event::DEFINED {
            r.id = -1;
        }
        self.events.domain_lifecycle(r, ev, detail);
    }

    fn write_guard(&self, op: &str) -> Result<std::sync::MutexGuard<'_, ()>, PluginError> {
        if self.read_only {
            return Err(read_only_denied(op));
        }
        Ok(self.lock.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits for `progress`; a failed one is an error naming `method` and its error text.
    fn finish(&self, op: &str, method: &str, progress: &str) -> Result<(), PluginError> {
        let o = self.api.wait(progress).map_err(|e| api_err(op, e))?;
        if o.code != 0 {
            let code = o.code as u32;
            return Err(err(
                ErrorCode::OperationFailed,
                format!(
                    "{op}: {method} failed: {} ({} {code:#010x})",
                    o.text.as_deref().unwrap_or("no error information"),
                    soap::result_name(code)
                ),
            ));
        }
        Ok(())
    }

    /// Runs `f` on the machine's console with the machine locked (`Shared`) in the
    /// websession's session; the machine is unlocked whatever `f` answers.
    fn with_console<T>(
        &self,
        op: &str,
        m: &Machine,
        f: impl FnOnce(&str) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        self.api
            .lock(&m.mref, "Shared")
            .map_err(|e| api_err(op, e))?;
        let r = self
            .api
            .console()
            .map_err(|e| api_err(op, e))
            .and_then(|c| f(&c));
        let u = self.api.unlock().map_err(|e| api_err(op, e));
        let v = r?;
        u?;
        Ok(v)
    }

    fn start(&self, u: Uuid) -> Result<Machine, PluginError> {
        let op = "virDomainCreateWithFlags";
        let _g = self.write_guard(op)?;
        let m = self.by_uuid(op, u)?;
        if active(m.state) {
            return Err(err(
                ErrorCode::OperationInvalid,
                format!(
                    "requested operation is not valid: domain '{}' is already running (machine state {})",
                    m.name, m.vbox_state
                ),
            ));
        }
        let progress = self
            .api
            .launch(&m.mref, "headless")
            .map_err(|e| api_err(op, e));
        let r = progress.and_then(|p| self.finish(op, "IMachine_launchVMProcess", &p));
        // the session was locked by the launch, success or failure
        let _ = self.api.unlock();
        r?;
        let m = self.by_uuid(op, u)?;
        self.emit(&m, event::STARTED, 0);
        Ok(m)
    }

    fn need(&self, m: &Machine, want: &[i32], why: &str) -> Result<(), PluginError> {
        if want.contains(&m.state) {
            Ok(())
        } else {
            Err(err(
                ErrorCode::OperationInvalid,
                format!(
                    "requested operation is not valid: domain '{}' {why} (machine state {})",
                    m.name, m.vbox_state
                ),
            ))
        }
    }

    fn destroy(&self, u: Uuid) -> Result<(), PluginError> {
        let op = "virDomainDestroyFlags";
        let _g = self.write_guard(op)?;
        let m = self.by_uuid(op, u)?;
        self.need(
            &m,
            &[
                state::RUNNING,
                state::PAUSED,
                state::SHUTDOWN,
                state::CRASHED,
            ],
            "is not running",
        )?;
        self.with_console(op, &m, |c| {
            let p = self.api.power_down(c).map_err(|e| api_err(op, e))?;
            self.finish(op, "IConsole_powerDown", &p)
        })?;
        self.emit(&m, event::STOPPED, event::STOPPED_DESTROYED);
        Ok(())
    }

    fn console_op(
        &self,
        u: Uuid,
        op: &str,
        method: &str,
        want: &[i32],
        why: &str,
    ) -> Result<Machine, PluginError> {
        let _g = self.write_guard(op)?;
        let m = self.by_uuid(op, u)?;
        self.need(&m, want, why)?;
        self.with_console(op, &m, |c| {
            self.api.console_call(c, method).map_err(|e| api_err(op, e))
        })?;
        Ok(m)
    }

    fn define(&self, xml: &str) -> Result<Machine, PluginError> {
        let op = "virDomainDefineXMLFlags";
        let _g = self.write_guard(op)?;
        let dom = Domain::parse(xml).map_err(|e| err(ErrorCode::XmlError, e.to_string()))?;
        self.alive(op)?;
        let name = dom.name().to_string();
        if name.is_empty() {
            return Err(err(ErrorCode::XmlError, "domain/name: missing"));
        }
        let (disks, nics) = devices::from_domain(dom.element().child("devices"))
            .map_err(|e| err(ErrorCode::ConfigUnsupported, e.to_string()))?;
        let uuid = dom.uuid();
        let os_type = dom
            .metadata_for(METADATA_NS)
            .and_then(|m| m.attr("type").map(str::to_string))
            .unwrap_or_else(|| {
                if dom.os_arch() == Some("i686") {
                    "Other".to_string()
                } else {
                    "Other_64".to_string()
                }
            });
        let memory_mb = dom.memory_kib().div_ceil(1024).max(4);
        let cpus = dom.current_vcpus().max(1);
        let description = dom.description().unwrap_or_default();
        let by_name = match self.api.find_machine(&name) {
            Ok(r) => Some(r),
            Err(e) if e.code() == Some(api::E_OBJECT_NOT_FOUND) => None,
            Err(e) => return Err(api_err(op, e)),
        };
        if let Some(r) = by_name {
            let other = self
                .api
                .machine_id(&r)
                .map_err(|e| api_err(op, e))
                .map(|u| parse_uuid(&u))?;
            if other != Some(uuid) {
                return Err(err(
                    ErrorCode::DomExist,
                    format!(
                        "operation failed: domain '{name}' already exists with uuid {}",
                        other.map(|u| u.to_string()).unwrap_or_default()
                    ),
                ));
            }
            // the same machine: its settings change, in a Write lock; its devices stay
            let m = self.machine(&r, None).map_err(|e| api_err(op, e))?;
            if self.read_devices(op, &r)? != (disks, nics) {
                return Err(err(
                    ErrorCode::ConfigUnsupported,
                    format!(
                        "domain/devices: the vbox driver does not change the disks or interfaces of the existing machine '{name}'"
                    ),
                ));
            }
            self.api.lock(&r, "Write").map_err(|e| api_err(op, e))?;
            let changed = self
                .api
                .session_machine()
                .map_err(|e| api_err(op, e))
                .and_then(|sm| {
                    self.settings(op, &sm, memory_mb, cpus, &description, Some(&os_type))?;
                    self.api.save_settings(&sm).map_err(|e| api_err(op, e))
                });
            let unlocked = self.api.unlock().map_err(|e| api_err(op, e));
            changed?;
            unlocked?;
            self.emit(&m, event::DEFINED, 1);
            return Ok(m);
        }
        if let Ok(r) = self.api.find_machine(&uuid.to_string()) {
            let other = self.api.machine_name(&r).unwrap_or_default();
            return Err(err(
                ErrorCode::DomExist,
                format!("operation failed: domain '{other}' is already defined with uuid {uuid}"),
            ));
        }
        let memory_mb = dom.memory_kib().div_ceil(1024).max(4);
        let cpus = dom.current_vcpus().max(1);
        let (maj, min, _) = self.version;
        let m = self
            .api
            .create_machine((maj, min), &name, &os_type, &format!("UUID={uuid}"))
            .map_err(|e| api_err(op, e))?;
        self.settings(op, &m, memory_mb, cpus, &description, None)?;
        self.api.save_settings(&m).map_err(|e| api_err(op, e))?;
        self.api.register(&m).map_err(|e| api_err(op, e))?;
        if !disks.is_empty() || !nics.is_empty() {
            // media and adapters change on a registered machine, in a Write lock
            let attached = self
                .api
                .lock(&m, "Write")
                .map_err(|e| api_err(op, e))
                .and_then(|()| {
                    let r = self
                        .api
                        .session_machine()
                        .map_err(|e| api_err(op, e))
                        .and_then(|sm| {
                            self.attach(op, &sm, &disks, &nics)?;
                            self.api.save_settings(&sm).map_err(|e| api_err(op, e))
                        });
                    let u = self.api.unlock().map_err(|e| api_err(op, e));
                    r.and(u)
                });
            if let Err(e) = attached {
                // no half-made machine stays behind
                if self.api.unregister(&m, "DetachAllReturnNone").is_ok()
                    && let Ok(p) = self.api.delete_config(&m, Vec::new())
                {
                    let _ = self.api.wait(&p);
                }
                return Err(e);
            }
        }
        let machine = self.machine(&m, None).map_err(|e| api_err(op, e))?;
        self.emit(&machine, event::DEFINED, 0);
        Ok(machine)
    }

    /// `IMachine_setAutostartEnabled` through the session machine: a `Write` lock on a
    /// machine that is off, a `Shared` one on a running machine.
    fn set_autostart_enabled(&self, u: Uuid, on: bool) -> Result<(), PluginError> {
        let op = "virDomainSetAutostart";
        let _g = self.write_guard(op)?;
        let m = self.by_uuid(op, u)?;
        let lock = if active(m.state) { "Shared" } else { "Write" };
        self.api.lock(&m.mref, lock).map_err(|e| api_err(op, e))?;
        let r = self
            .api
            .session_machine()
            .and_then(|sm| {
                self.api.set(
                    &sm,
                    "IMachine_setAutostartEnabled",
                    "autostartEnabled",
                    if on { "true" } else { "false" },
                )?;
                self.api.save_settings(&sm)
            })
            .map_err(|e| api_err(op, e));
        let unlocked = self.api.unlock().map_err(|e| api_err(op, e));
        r?;
        unlocked
    }

    /// Adds the controllers, media and adapters to the session machine `sm`.
    fn attach(
        &self,
        op: &str,
        sm: &str,
        disks: &[devices::Disk],
        nics: &[devices::Nic],
    ) -> Result<(), PluginError> {
        use api::arg;
        let call = |m: &str, this: &str, args: &[soap::Arg<'_>]| {
            self.api.call(m, this, args).map_err(|e| api_err(op, e))
        };
        let ret = |n: soap::Node| n.text_of("returnval").unwrap_or("").to_string();
        let mut buses: Vec<devices::Bus> = Vec::new();
        for d in disks {
            if !buses.contains(&d.bus) {
                buses.push(d.bus);
                call(
                    "IMachine_addStorageController",
                    sm,
                    &[
                        arg("name", d.bus.controller()),
                        arg("connectionType", d.bus.vbox()),
                    ],
                )?;
            }
            let medium = ret(call(
                "IVirtualBox_openMedium",
                &self.api.vbox_ref(),
                &[
                    arg("location", d.location.clone()),
                    arg("deviceType", d.kind),
                    arg(
                        "accessMode",
                        if d.kind == "DVD" {
                            "ReadOnly"
                        } else {
                            "ReadWrite"
                        },
                    ),
                    arg("forceNewUuid", "false"),
                ],
            )?);
            call(
                "IMachine_attachDevice",
                sm,
                &[
                    arg("name", d.bus.controller()),
                    arg("controllerPort", d.port.to_string()),
                    arg("device", d.device.to_string()),
                    arg("type", d.kind),
                    arg("medium", medium),
                ],
            )?;
        }
        for (slot, n) in nics.iter().enumerate() {
            let a = ret(call(
                "IMachine_getNetworkAdapter",
                sm,
                &[arg("slot", slot.to_string())],
            )?);
            call("INetworkAdapter_setEnabled", &a, &[arg("enabled", "true")])?;
            call(
                "INetworkAdapter_setAttachmentType",
                &a,
                &[arg("attachmentType", n.attachment.clone())],
            )?;
            let source = match n.attachment.as_str() {
                "Bridged" => Some(("INetworkAdapter_setBridgedInterface", "bridgedInterface")),
                "HostOnly" => Some(("INetworkAdapter_setHostOnlyInterface", "hostOnlyInterface")),
                "Internal" => Some(("INetworkAdapter_setInternalNetwork", "internalNetwork")),
                _ => None,
            };
            if let Some((m, p)) = source {
                call(m, &a, &[arg(p, n.source.clone())])?;
            }
            if !n.mac.is_empty() {
                call(
                    "INetworkAdapter_setMACAddress",
                    &a,
                    &[arg("MACAddress", n.mac.clone())],
                )?;
            }
            if !n.model.is_empty() {
                call(
                    "INetworkAdapter_setAdapterType",
                    &a,
                    &[arg("adapterType", n.model.clone())],
                )?;
            }
        }
        Ok(())
    }

    /// The media attachments and enabled adapters of machine `m`.
    fn read_devices(
        &self,
        op: &str,
        m: &str,
    ) -> Result<(Vec<devices::Disk>, Vec<devices::Nic>), PluginError> {
        use api::arg;
        let e = |e| api_err(op, e);
        let mut disks = Vec::new();
        let atts = self
            .api
            .call("IMachine_getMediumAttachments", m, &[])
            .map_err(e)?;
        for a in atts.children_named("returnval") {
            let medium = a.text_of("medium").unwrap_or("");
            let kind = match a.text_of("type") {
                Some("HardDisk") => "HardDisk",
                Some("DVD") => "DVD",
                _ => continue,
            };
            if medium.is_empty() {
                continue;
            }
            let controller = a.text_of("controller").unwrap_or("").to_string();
            let c = self
                .api
                .call(
                    "IMachine_getStorageControllerByName",
                    m,
                    &[arg("name", controller)],
                )
                .map_err(e)?;
            let c = c.text_of("returnval").unwrap_or("").to_string();
            let bus = self.api.get("IStorageController_getBus", &c).map_err(e)?;
            let Some(bus) = devices::Bus::from_vbox(&bus) else {
                continue;
            };
            let num = |n: &str| a.text_of(n).and_then(|v| v.parse().ok()).unwrap_or(0);
            disks.push(devices::Disk {
                bus,
                port: num("port"),
                device: num("device"),
                kind,
                location: self.api.get("IMedium_getLocation", medium).map_err(e)?,
            });
        }
        let mut nics = Vec::new();
        for slot in 0..devices::NIC_SLOTS {
            let n = self
                .api
                .call(
                    "IMachine_getNetworkAdapter",
                    m,
                    &[arg("slot", slot.to_string())],
                )
                .map_err(e)?;
            let a = n.text_of("returnval").unwrap_or("").to_string();
            if self.api.get("INetworkAdapter_getEnabled", &a).map_err(e)? != "true" {
                continue;
            }
            let attachment = self
                .api
                .get("INetworkAdapter_getAttachmentType", &a)
                .map_err(e)?;
            let getter = match attachment.as_str() {
                "Bridged" => Some("INetworkAdapter_getBridgedInterface"),
                "HostOnly" => Some("INetworkAdapter_getHostOnlyInterface"),
                "Internal" => Some("INetworkAdapter_getInternalNetwork"),
                _ => None,
            };
            let source = match getter {
                Some(g) => self.api.get(g, &a).map_err(e)?,
                None => String::new(),
            };
            nics.push(devices::Nic {
                attachment,
                source,
                mac: self
                    .api
                    .get("INetworkAdapter_getMACAddress", &a)
                    .map_err(e)?,
                model: self
                    .api
                    .get("INetworkAdapter_getAdapterType", &a)
                    .map_err(e)?,
            });
        }
        Ok((disks, nics))
    }

    /// Sets memory, CPUs, description (and the OS type) of a mutable machine.
    fn settings(
        &self,
        op: &str,
        m: &str,
        memory_mb: u64,
        cpus: u32,
        description: &str,
        os_type: Option<&str>,
    ) -> Result<(), PluginError> {
        let set = |method: &str, param: &'static str, v: &str| {
            self.api
                .set(m, method, param, v)
                .map_err(|e| api_err(op, e))
        };
        set(
            "IMachine_setMemorySize",
            "memorySize",
            &memory_mb.to_string(),
        )?;
        set("IMachine_setCPUCount", "CPUCount", &cpus.to_string())?;
        if let Some(t) = os_type {
            set("IMachine_setOSTypeId", "OSTypeId", t)?;
        }
        if os_type.is_some() || !description.is_empty() {
            set("IMachine_setDescription", "description", description)?;
        }
        Ok(())
    }

    fn undefine(&self, u: Uuid) -> Result<(), PluginError> {
        let op = "virDomainUndefineFlags";
        let _g = self.write_guard(op)?;
        let m = self.by_uuid(op, u)?;
        if active(m.state) {
            return Err(err(
                ErrorCode::OperationInvalid,
                format!(
                    "requested operation is not valid: domain '{}' is running (machine state {}); VirtualBox unregisters only machines that are not",
                    m.name, m.vbox_state
                ),
            ));
        }
        let media = self
            .api
            .unregister(&m.mref, "DetachAllReturnNone")
            .map_err(|e| api_err(op, e))?;
        let p = self
            .api
            .delete_config(&m.mref, media)
            .map_err(|e| api_err(op, e))?;
        self.finish(op, "IMachine_deleteConfig", &p)?;
        self.emit(&m, event::UNDEFINED, 0);
        Ok(())
    }

    fn info(&self, op: &str, u: Uuid) -> Result<(Machine, u64, u32), PluginError> {
        let m = self.by_uuid(op, u)?;
        let mem = self.api.memory_mb(&m.mref).map_err(|e| api_err(op, e))?;
        let cpus = self.api.cpu_count(&m.mref).map_err(|e| api_err(op, e))?;
        Ok((m, mem * 1024, cpus))
    }

    /// The domain XML of a machine, from its settings.
    fn xml(&self, u: Uuid, inactive: bool) -> Result<String, PluginError> {
        let op = "virDomainGetXMLDesc";
        let (m, kib, cpus) = self.info(op, u)?;
        let os = self.api.os_type(&m.mref).map_err(|e| api_err(op, e))?;
        let desc = self.api.description(&m.mref).map_err(|e| api_err(op, e))?;
        let mut d = Element::new("domain").with_attr("type", "vbox");
        if !inactive && m.id >= 0 {
            d.set_attr("id", &m.id.to_string());
        }
        d.push(Element::new("name").with_text(&m.name));
        d.push(Element::new("uuid").with_text(&m.uuid.to_string()));
        if !desc.is_empty() {
            d.push(Element::new("description").with_text(&desc));
        }
        let mut md = Element::new("metadata");
        md.push(
            Element::new("vbox:os")
                .with_attr("xmlns:vbox", METADATA_NS)
                .with_attr("type", &os),
        );
        d.push(md);
        let k = kib.to_string();
        d.push(
            Element::new("memory")
                .with_attr("unit", "KiB")
                .with_text(&k),
        );
        d.push(
            Element::new("currentMemory")
                .with_attr("unit", "KiB")
                .with_text(&k),
        );
        d.push(
            Element::new("vcpu")
                .with_attr("placement", "static")
                .with_text(&cpus.to_string()),
        );
        let arch = if os.ends_with("_64") {
            "x86_64"
        } else {
            "i686"
        };
        let mut o = Element::new("os");
        o.push(
            Element::new("type")
                .with_attr("arch", arch)
                .with_text("hvm"),
        );
        d.push(o);
        let (disks, nics) = self.read_devices(op, &m.mref)?;
        let nics: Vec<Element> = nics.iter().filter_map(devices::nic_element).collect();
        if !disks.is_empty() || !nics.is_empty() {
            let mut devs = Element::new("devices");
            for x in &disks {
                devs.push(devices::disk_element(x));
            }
            for n in nics {
                devs.push(n);
            }
            d.push(devs);
        }
        Ok(d.to_xml_string())
    }
}

fn res<T>(r: Result<T, PluginError>) -> PResult<T> {
    r.into()
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
        a.push(Element::new("domain").with_attr("type", "vbox"));
        g.push(a);
        caps.push(g);
    }
    caps.to_xml_string()
}

macro_rules! checked {
    ($op:literal, $flags:expr, $allowed:expr) => {
        if let Err(e) = check_flags(ErrorDomain::None, $op, $flags, $allowed) {
            return RResult::RErr(e);
        }
    };
}

impl DriverConnection for VboxConnection {
    fn get_type(&self) -> PResult<RString> {
        RResult::ROk("VBOX".into())
    }

    fn get_version(&self) -> PResult<u64> {
        let (a, b, c) = self.version;
        RResult::ROk(a as u64 * 1_000_000 + b as u64 * 1_000 + c as u64)
    }

    fn get_uri(&self) -> PResult<RString> {
        RResult::ROk(format!("vbox:///{}", self.uri.path).into())
    }

    fn get_hostname(&self) -> PResult<RString> {
        RResult::ROk(self.uri.host.as_str().into())
    }

    fn get_capabilities(&self) -> PResult<RString> {
        RResult::ROk(capabilities().into())
    }

    fn node_get_info(&self) -> PResult<NodeInfo> {
        let op = "virNodeGetInfo";
        let r = (|| {
            let h = self.api.host()?;
            let mem = self.api.host_num(&h, "IHost_getMemorySize")?;
            let online = self.api.host_num(&h, "IHost_getProcessorOnlineCount")?;
            let cores = self.api.host_num(&h, "IHost_getProcessorCoreCount")?.max(1);
            let count = self.api.host_num(&h, "IHost_getProcessorCount")?;
            let mhz = self.api.host_cpu_speed(&h)?;
            Ok(NodeInfo {
                model: "x86_64".into(),
                memory_kib: mem * 1024,
                cpus: online as u32,
                mhz,
                nodes: 1,
                sockets: 1,
                cores: cores as u32,
                threads: (count / cores).max(1) as u32,
            })
        })();
        res(r.map_err(|e| api_err(op, e)))
    }

    fn list_all_domains(&self, flags: u32) -> PResult<RVec<DomainRef>> {
        checked!("virConnectListAllDomains", flags, filter::FILTERS);
        res(self.machines("virConnectListAllDomains").map(|ms| {
            ms.iter()
                .filter(|m| {
                    filter::matches(
                        flags,
                        &filter::DomainFacts {
                            state: m.state,
                            persistent: true,
                            ..Default::default()
                        },
                    )
                })
                .map(Machine::reference)
                .collect()
        }))
    }

    fn lookup_by_name(&self, name: RStr<'_>) -> PResult<DomainRef> {
        let n = name.as_str();
        res(self
            .find(
                "virDomainLookupByName",
                n,
                &format!("no domain with matching name '{n}'"),
            )
            .map(|m| m.reference()))
    }

    fn lookup_by_uuid(&self, uuid: Uuid) -> PResult<DomainRef> {
        res(self
            .by_uuid("virDomainLookupByUUID", uuid)
            .map(|m| m.reference()))
    }

    fn lookup_by_id(&self, id: i32) -> PResult<DomainRef> {
        res(self.machines("virDomainLookupByID").and_then(|ms| {
            ms.into_iter()
                .find(|m| m.id >= 0 && m.id == id)
                .map(|m| m.reference())
                .ok_or_else(|| {
                    err(
                        ErrorCode::NoDomain,
                        format!("domain not found: no domain with matching id {id}"),
                    )
                })
        }))
    }

    fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        // VIR_DOMAIN_DEFINE_VALIDATE: the XML is always validated
        checked!("virDomainDefineXMLFlags", flags, 1);
        res(self.define(xml.as_str()).map(|m| m.reference()))
    }

    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainUndefineFlags", flags, 0);
        res(VboxConnection::undefine(self, uuid))
    }

    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainCreateWithFlags", flags, 0);
        res(self.start(uuid).map(|m| m.reference()))
    }

    fn create_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainCreateXML", flags, 0);
        // VirtualBox has no transient machines: as libvirt's vbox driver, define and start,
        // and undefine again where the start fails
        let r = (|| {
            if self.read_only {
                return Err(read_only_denied("virDomainCreateXML"));
            }
            let m = self.define(xml.as_str())?;
            let u = to_abi_uuid(m.uuid);
            self.start(u).inspect_err(|_| {
                let _ = VboxConnection::undefine(self, u);
            })
        })();
        res(r.map(|m| m.reference()))
    }

    fn destroy(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainDestroyFlags", flags, 0);
        res(VboxConnection::destroy(self, uuid))
    }

    fn shutdown(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainShutdownFlags", flags, 0);
        // the guest decides: the domain keeps running until it powers off
        res(self
            .console_op(
                uuid,
                "virDomainShutdownFlags",
                "IConsole_powerButton",
                &[state::RUNNING],
                "is not running",
            )
            .map(|_| ()))
    }

    fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainReboot", flags, 0);
        res(self
            .console_op(
                uuid,
                "virDomainReboot",
                "IConsole_reset",
                &[state::RUNNING],
                "is not running",
            )
            .map(|_| ()))
    }

    fn suspend(&self, uuid: Uuid) -> PResult<()> {
        res(self
            .console_op(
                uuid,
                "virDomainSuspend",
                "IConsole_pause",
                &[state::RUNNING],
                "is not running",
            )
            .map(|m| self.emit(&m, event::SUSPENDED, 0)))
    }

    fn resume(&self, uuid: Uuid) -> PResult<()> {
        res(self
            .console_op(
                uuid,
                "virDomainResume",
                "IConsole_resume",
                &[state::PAUSED],
                "is not paused",
            )
            .map(|m| self.emit(&m, event::RESUMED, 0)))
    }

    fn get_info(&self, uuid: Uuid) -> PResult<DomainInfo> {
        res(self
            .info("virDomainGetInfo", uuid)
            .map(|(m, kib, cpus)| DomainInfo {
                state: m.state,
                max_mem_kib: kib,
                memory_kib: kib,
                nr_virt_cpu: cpus,
                cpu_time_ns: 0,
            }))
    }

    fn get_state(&self, uuid: Uuid) -> PResult<StateReason> {
        res(self
            .by_uuid("virDomainGetState", uuid)
            .map(|m| StateReason {
                state: m.state,
                // VIR_DOMAIN_RUNNING_BOOTED, VIR_DOMAIN_PAUSED_USER, VIR_DOMAIN_SHUTOFF_UNKNOWN
                reason: match m.state {
                    state::RUNNING => 1,
                    state::PAUSED => 2,
                    _ => 0,
                },
            }))
    }

    fn get_xml_desc(&self, uuid: Uuid, flags: u32) -> PResult<RString> {
        // VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_INACTIVE
        checked!("virDomainGetXMLDesc", flags, 1 | 2);
        res(self.xml(uuid, flags & 2 != 0).map(RString::from))
    }

    fn is_persistent(&self, uuid: Uuid) -> PResult<bool> {
        res(self.by_uuid("virDomainIsPersistent", uuid).map(|_| true))
    }

    fn get_autostart(&self, uuid: Uuid) -> PResult<bool> {
        let op = "virDomainGetAutostart";
        res(self.by_uuid(op, uuid).and_then(|m| {
            self.api
                .get("IMachine_getAutostartEnabled", &m.mref)
                .map(|v| v == "true" || v == "1")
                .map_err(|e| api_err(op, e))
        }))
    }

    fn set_autostart(&self, uuid: Uuid, autostart: bool) -> PResult<()> {
        res(self.set_autostart_enabled(uuid, autostart))
    }

    fn get_vcpus_flags(&self, uuid: Uuid, flags: u32) -> PResult<i32> {
        checked!("virDomainGetVcpusFlags", flags, 1 | 2 | 4);
        res(self
            .info("virDomainGetVcpusFlags", uuid)
            .map(|(_, _, c)| c as i32))
    }

    fn get_os_type(&self, uuid: Uuid) -> PResult<RString> {
        res(self
            .by_uuid("virDomainGetOSType", uuid)
            .map(|_| "hvm".into()))
    }

    fn has_managed_save_image(&self, uuid: Uuid, flags: u32) -> PResult<bool> {
        checked!("virDomainHasManagedSaveImage", flags, 0);
        res(self
            .by_uuid("virDomainHasManagedSaveImage", uuid)
            .map(|m| m.vbox_state == "Saved" || m.vbox_state == "AbortedSaved"))
    }

    fn domain_xml_to_native(&self, _f: RStr<'_>, _x: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(no_support("virConnectDomainXMLToNative"))
    }

    fn domain_xml_from_native(&self, _f: RStr<'_>, _c: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(no_support("virConnectDomainXMLFromNative"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_states_map_as_documented() {
        for s in [
            "PoweredOff",
            "Aborted",
            "Saved",
            "AbortedSaved",
            "Teleported",
        ] {
            assert_eq!(map_state(s), state::SHUTOFF, "{s}");
        }
        assert_eq!(map_state("Running"), state::RUNNING);
        assert_eq!(map_state("Paused"), state::PAUSED);
        assert_eq!(map_state("Stopping"), state::SHUTDOWN);
        assert_eq!(map_state("Stuck"), state::CRASHED);
    }

    #[test]
    fn uuids_with_or_without_braces() {
        let u = "3c2a6c4e-0b0f-4e6e-9d55-1f0f3c7b0a11";
        assert_eq!(parse_uuid(&format!("{{{u}}}")), parse_uuid(u));
        assert!(parse_uuid(u).is_some());
    }
}

//! A fake `vboxwebsrv`: an HTTP server in the test process that keeps a machine inventory
//! and answers the web service methods the driver calls, with the request and response
//! shapes of the VirtualBox SDK reference (document/literal SOAP in the
//! `http://www.virtualbox.org/` namespace, `_this` managed object references of the form
//! `WEBSESSIONID-OBJECTID` in 16 hex digits each, `RuntimeFault` details carrying the COM
//! result code as an `xsd:int`).
//!
//! Every request is checked: HTTP `POST` with an XML content type, a SOAP 1.1 envelope
//! whose body holds exactly one element of the `vbox` namespace naming a known method, the
//! method's parameters (unqualified elements) in the order of the WSDL, and a `_this` that
//! is a live reference of the method's interface from a prior logon. A request that fails
//! a check is answered with a fault and recorded in [`Fake::violations`].

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const VBOX_NS: &str = "http://www.virtualbox.org/";

pub const VBOX_E_OBJECT_NOT_FOUND: u32 = 0x80BB_0001;
pub const VBOX_E_INVALID_VM_STATE: u32 = 0x80BB_0002;
pub const VBOX_E_VM_ERROR: u32 = 0x80BB_0003;
pub const VBOX_E_FILE_ERROR: u32 = 0x80BB_0004;
pub const VBOX_E_INVALID_OBJECT_STATE: u32 = 0x80BB_0007;
pub const VBOX_E_INVALID_SESSION_STATE: u32 = 0x80BB_000B;
pub const VBOX_E_OBJECT_IN_USE: u32 = 0x80BB_000C;
pub const E_ACCESSDENIED: u32 = 0x8007_0005;
pub const E_INVALIDARG: u32 = 0x8007_0057;

/// A machine of the inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct VM {
    pub uuid: String,
    pub name: String,
    pub state: String,
    pub memory_mb: u64,
    pub cpus: u32,
    pub os_type: String,
    pub description: String,
    pub registered: bool,
    pub saved: bool,
    pub autostart: bool,
    /// Storage controllers: (name, bus).
    pub controllers: Vec<(String, String)>,
    pub attachments: Vec<Attachment>,
    pub nics: Vec<Nic>,
}

/// A medium attachment.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub controller: String,
    pub port: u32,
    pub device: u32,
    pub kind: String,
    pub location: String,
}

/// A network adapter slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Nic {
    pub enabled: bool,
    pub attachment: String,
    pub bridged: String,
    pub host_only: String,
    pub internal: String,
    pub mac: String,
    pub model: String,
}

impl Default for Nic {
    fn default() -> Nic {
        Nic {
            enabled: false,
            attachment: "Null".into(),
            bridged: String::new(),
            host_only: String::new(),
            internal: "intnet".into(),
            mac: "080027000000".into(),
            model: "I82540EM".into(),
        }
    }
}

impl VM {
    pub fn new(uuid: &str, name: &str, state: &str, memory_mb: u64, cpus: u32) -> VM {
        VM {
            uuid: uuid.into(),
            name: name.into(),
            state: state.into(),
            memory_mb,
            cpus,
            os_type: "Ubuntu_64".into(),
            description: String::new(),
            registered: true,
            saved: true,
            autostart: false,
            controllers: Vec::new(),
            attachments: Vec::new(),
            nics: vec![Nic::default(); 8],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Obj {
    VirtualBox,
    Session,
    Machine(String),
    /// The mutable machine of a session's `Write` lock.
    SessionMachine(String),
    Console(String),
    Host,
    Medium(String),
    StorageController(String, String),
    /// (machine, slot, through a session machine)
    NetworkAdapter(String, usize, bool),
    Progress {
        code: u32,
        text: String,
    },
    ErrorInfo(String),
}

impl Obj {
    fn interface(&self) -> &'static str {
        match self {
            Obj::VirtualBox => "IVirtualBox",
            Obj::Session => "ISession",
            Obj::Machine(_) | Obj::SessionMachine(_) => "IMachine",
            Obj::Host => "IHost",
            Obj::Medium(_) => "IMedium",
            Obj::StorageController(..) => "IStorageController",
            Obj::NetworkAdapter(..) => "INetworkAdapter",
            Obj::Console(_) => "IConsole",
            Obj::Progress { .. } => "IProgress",
            Obj::ErrorInfo(_) => "IVirtualBoxErrorInfo",
        }
    }
}

#[derive(Debug, Default)]
struct Websession {
    objects: Vec<Obj>,
    /// The machine the session object holds locked.
    locked: Option<String>,
    /// Whether that lock is a `Write` lock (settings may change).
    write: bool,
}

#[derive(Debug, Default)]
struct State {
    version: String,
    credentials: Option<(String, String)>,
    vms: Vec<VM>,
    sessions: HashMap<u64, Websession>,
    next_session: u64,
    calls: Vec<String>,
    violations: Vec<String>,
    fail_launch: Option<(u32, String)>,
}

/// The running fake.
pub struct Fake {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl Fake {
    /// Starts a fake of VirtualBox `version` holding `vms`; `credentials` of `None` is the
    /// `null` authentication library (every login accepted).
    pub fn start(version: &str, credentials: Option<(&str, &str)>, vms: Vec<VM>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            version: version.into(),
            credentials: credentials.map(|(u, p)| (u.into(), p.into())),
            vms,
            next_session: 0x5eed_0000_0000_0001,
            ..State::default()
        }));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        Fake { port, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn uri(&self) -> String {
        format!("vbox:///session?endpoint=http://127.0.0.1:{}/", self.port)
    }

    pub fn vms(&self) -> Vec<VM> {
        self.state.lock().unwrap().vms.clone()
    }

    pub fn vm(&self, name: &str) -> Option<VM> {
        self.vms().into_iter().find(|v| v.name == name)
    }

    pub fn set_state(&self, name: &str, state: &str) {
        let mut s = self.state.lock().unwrap();
        if let Some(v) = s.vms.iter_mut().find(|v| v.name == name) {
            v.state = state.into();
        }
    }

    /// The methods called so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Requests that failed a check.
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    /// The number of live websessions.
    pub fn websessions(&self) -> usize {
        self.state.lock().unwrap().sessions.len()
    }

    /// Ends every websession, as vboxwebsrv does with idle ones.
    pub fn expire_websessions(&self) {
        self.state.lock().unwrap().sessions.clear();
    }

    /// The number of logons so far.
    pub fn logons(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| *c == "IWebsessionManager_logon")
            .count()
    }

    /// The next `launchVMProcess` gives a progress that fails with `code` and `text`.
    pub fn fail_next_launch(&self, code: u32, text: &str) {
        self.state.lock().unwrap().fail_launch = Some((code, text.into()));
    }

    /// Posts a raw request body (the SOAP envelope) and returns (status, body).
    pub fn post_raw(&self, body: &str) -> (u16, String) {
        let mut c = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            c,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_string();
        (status, body)
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

fn serve(conn: TcpStream, st: &Mutex<State>) {
    let _ = conn.set_nodelay(true);
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let request_line = line.trim_end().to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        let (status, answer) = {
            let mut s = st.lock().unwrap();
            let ctype = header("content-type").unwrap_or_default();
            if !request_line.starts_with("POST ") {
                s.violations.push(format!("not a POST: {request_line}"));
                (405, String::new())
            } else if !ctype.starts_with("text/xml") {
                s.violations.push(format!("content type '{ctype}'"));
                (415, String::new())
            } else {
                match handle(&mut s, &body) {
                    Ok(x) => (200, x),
                    Err(f) => (500, f),
                }
            }
        };
        let reason = if status == 200 { "OK" } else { "Error" };
        let close = header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        // one write: a response split over several would wait on the client's delayed ack
        let out = format!(
            "HTTP/1.1 {status} {reason}\r\nServer: gSOAP/2.8\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n{}\r\n{answer}",
            answer.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let _ = w.write_all(out.as_bytes());
        let _ = w.flush();
        if close {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The request

#[derive(Debug, Default)]
struct El {
    ns: Option<String>,
    name: String,
    text: String,
    children: Vec<El>,
}

fn parse(xml: &str) -> Result<El, String> {
    let mut r = quick_xml::NsReader::from_str(xml);
    let mut stack: Vec<El> = Vec::new();
    loop {
        let (res, ev) = r.read_resolved_event().map_err(|e| e.to_string())?;
        let ns = match res {
            ResolveResult::Bound(n) => Some(n.0.to_string()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => return Err(format!("unbound prefix '{p}'")),
        };
        match ev {
            Event::Start(e) => stack.push(El {
                ns,
                name: AsRef::<str>::as_ref(&e.local_name()).to_string(),
                ..El::default()
            }),
            Event::Empty(e) => {
                let el = El {
                    ns,
                    name: AsRef::<str>::as_ref(&e.local_name()).to_string(),
                    ..El::default()
                };
                match stack.last_mut() {
                    Some(p) => p.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unbalanced")?;
                match stack.last_mut() {
                    Some(p) => p.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::Text(t) => {
                if let Some(p) = stack.last_mut() {
                    p.text.push_str(&t);
                }
            }
            Event::GeneralRef(g) => {
                if let Some(p) = stack.last_mut() {
                    p.text.push_str(match &*g.xml10_content() {
                        "lt" => "<",
                        "gt" => ">",
                        "amp" => "&",
                        "quot" => "\"",
                        "apos" => "'",
                        other => return Err(format!("entity '{other}'")),
                    });
                }
            }
            Event::Eof => return Err("no document element".into()),
            _ => {}
        }
    }
}

/// The `_this` interface and the parameters (in WSDL order; `*` repeats 0..n times) of
/// each method, for the server's version.
fn signature(
    method: &str,
    version: (u32, u32),
) -> Option<(Option<&'static str>, Vec<&'static str>)> {
    let none = Vec::new();
    Some(match method {
        "IWebsessionManager_logon" => (None, vec!["username", "password"]),
        "IWebsessionManager_getSessionObject" | "IWebsessionManager_logoff" => {
            (None, vec!["refIVirtualBox"])
        }
        "IVirtualBox_getVersion" | "IVirtualBox_getMachines" | "IVirtualBox_getHost" => {
            (Some("IVirtualBox"), none)
        }
        "IHost_getMemorySize"
        | "IHost_getProcessorOnlineCount"
        | "IHost_getProcessorCoreCount"
        | "IHost_getProcessorCount" => (Some("IHost"), none),
        "IHost_getProcessorSpeed" => (Some("IHost"), vec!["cpuId"]),
        "ISession_getMachine" => (Some("ISession"), none),
        "IMachine_setOSTypeId" => (Some("IMachine"), vec!["OSTypeId"]),
        "IMachine_getAutostartEnabled" => (Some("IMachine"), none),
        "IMachine_addStorageController" => (Some("IMachine"), vec!["name", "connectionType"]),
        "IVirtualBox_openMedium" => (
            Some("IVirtualBox"),
            vec!["location", "deviceType", "accessMode", "forceNewUuid"],
        ),
        "IMachine_attachDevice" => (
            Some("IMachine"),
            vec!["name", "controllerPort", "device", "type", "medium"],
        ),
        "IMachine_getMediumAttachments" => (Some("IMachine"), none),
        "IMachine_getStorageControllerByName" => (Some("IMachine"), vec!["name"]),
        "IStorageController_getBus" => (Some("IStorageController"), none),
        "IMedium_getLocation" => (Some("IMedium"), none),
        "IMachine_getNetworkAdapter" => (Some("IMachine"), vec!["slot"]),
        "INetworkAdapter_getEnabled"
        | "INetworkAdapter_getAttachmentType"
        | "INetworkAdapter_getBridgedInterface"
        | "INetworkAdapter_getHostOnlyInterface"
        | "INetworkAdapter_getInternalNetwork"
        | "INetworkAdapter_getMACAddress"
        | "INetworkAdapter_getAdapterType" => (Some("INetworkAdapter"), none),
        "INetworkAdapter_setEnabled" => (Some("INetworkAdapter"), vec!["enabled"]),
        "INetworkAdapter_setAttachmentType" => (Some("INetworkAdapter"), vec!["attachmentType"]),
        "INetworkAdapter_setBridgedInterface" => {
            (Some("INetworkAdapter"), vec!["bridgedInterface"])
        }
        "INetworkAdapter_setHostOnlyInterface" => {
            (Some("INetworkAdapter"), vec!["hostOnlyInterface"])
        }
        "INetworkAdapter_setInternalNetwork" => (Some("INetworkAdapter"), vec!["internalNetwork"]),
        "INetworkAdapter_setMACAddress" => (Some("INetworkAdapter"), vec!["MACAddress"]),
        "INetworkAdapter_setAdapterType" => (Some("INetworkAdapter"), vec!["adapterType"]),
        "IMachine_setAutostartEnabled" => (Some("IMachine"), vec!["autostartEnabled"]),
        "IVirtualBox_findMachine" => (Some("IVirtualBox"), vec!["nameOrId"]),
        "IVirtualBox_registerMachine" => (Some("IVirtualBox"), vec!["machine"]),
        "IVirtualBox_createMachine" => {
            let mut p = vec!["settingsFile", "name"];
            if version >= (7, 1) {
                p.push("platform");
            }
            p.extend(["groups*", "osTypeId", "flags"]);
            if version >= (7, 0) {
                p.extend(["cipher", "passwordId", "password"]);
            }
            (Some("IVirtualBox"), p)
        }
        "IMachine_getName"
        | "IMachine_getId"
        | "IMachine_getState"
        | "IMachine_getMemorySize"
        | "IMachine_getCPUCount"
        | "IMachine_getOSTypeId"
        | "IMachine_getDescription"
        | "IMachine_saveSettings" => (Some("IMachine"), none),
        "IMachine_setMemorySize" => (Some("IMachine"), vec!["memorySize"]),
        "IMachine_setCPUCount" => (Some("IMachine"), vec!["CPUCount"]),
        "IMachine_setDescription" => (Some("IMachine"), vec!["description"]),
        "IMachine_lockMachine" => (Some("IMachine"), vec!["session", "lockType"]),
        "IMachine_launchVMProcess" => (
            Some("IMachine"),
            vec!["session", "name", "environmentChanges*"],
        ),
        "IMachine_unregister" => (Some("IMachine"), vec!["cleanupMode"]),
        "IMachine_deleteConfig" => (Some("IMachine"), vec!["media*"]),
        "ISession_getConsole" | "ISession_unlockMachine" => (Some("ISession"), none),
        "IConsole_powerDown"
        | "IConsole_pause"
        | "IConsole_resume"
        | "IConsole_powerButton"
        | "IConsole_reset" => (Some("IConsole"), none),
        "IProgress_waitForCompletion" => (Some("IProgress"), vec!["timeout"]),
        "IProgress_getResultCode" | "IProgress_getErrorInfo" => (Some("IProgress"), none),
        "IVirtualBoxErrorInfo_getText" => (Some("IVirtualBoxErrorInfo"), none),
        _ => return None,
    })
}

/// Whether the children's names follow `params`.
fn params_match(children: &[&El], params: &[&str]) -> bool {
    let mut i = 0;
    for p in params {
        if let Some(rep) = p.strip_suffix('*') {
            while i < children.len() && children[i].name == rep {
                i += 1;
            }
        } else {
            if i >= children.len() || children[i].name != *p {
                return false;
            }
            i += 1;
        }
    }
    i == children.len()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn envelope(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_NS}" xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:vbox="{VBOX_NS}"><SOAP-ENV:Body>{inner}</SOAP-ENV:Body></SOAP-ENV:Envelope>"#
    )
}

/// A `RuntimeFault` as vboxwebsrv raises it.
fn runtime_fault(code: u32, text: &str, errinfo: &str) -> String {
    envelope(&format!(
        "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>VirtualBox error: apirc={code:#x} {} ({code:#x})</faultstring><detail><vbox:RuntimeFault><resultCode>{}</resultCode><returnval>{errinfo}</returnval></vbox:RuntimeFault></detail></SOAP-ENV:Fault>",
        escape(text),
        code as i32
    ))
}

fn invalid_object(r: &str) -> String {
    envelope(&format!(
        "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>VirtualBox error: Invalid managed object reference \"{}\"</faultstring><detail><vbox:InvalidObjectFault><badObjectID>{}</badObjectID></vbox:InvalidObjectFault></detail></SOAP-ENV:Fault>",
        escape(r),
        escape(r)
    ))
}

fn client_fault(text: &str) -> String {
    envelope(&format!(
        "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>{}</faultstring></SOAP-ENV:Fault>",
        escape(text)
    ))
}

/// A response whose `returnval`s are structs (already written elements).
fn struct_response(method: &str, values: &[String]) -> String {
    let vals: String = values
        .iter()
        .map(|v| format!("<returnval>{v}</returnval>"))
        .collect();
    envelope(&format!(
        "<vbox:{method}Response>{vals}</vbox:{method}Response>"
    ))
}

fn response(method: &str, values: &[String]) -> String {
    let vals: String = values
        .iter()
        .map(|v| format!("<returnval>{}</returnval>", escape(v)))
        .collect();
    envelope(&format!(
        "<vbox:{method}Response>{vals}</vbox:{method}Response>"
    ))
}

fn split_ref(r: &str) -> Option<(u64, usize)> {
    if r.len() != 33 || r.as_bytes()[16] != b'-' {
        return None;
    }
    let s = u64::from_str_radix(&r[..16], 16).ok()?;
    let o = u64::from_str_radix(&r[17..], 16).ok()?;
    Some((s, o as usize))
}

fn same_uuid(a: &str, b: &str) -> bool {
    let t = |s: &str| {
        s.trim_matches(|c| c == '{' || c == '}')
            .to_ascii_lowercase()
    };
    t(a) == t(b)
}

fn is_off(state: &str) -> bool {
    matches!(
        state,
        "PoweredOff" | "Saved" | "Aborted" | "AbortedSaved" | "Teleported"
    )
}

fn handle(s: &mut State, body: &str) -> Result<String, String> {
    let violation = |s: &mut State, what: String| -> String {
        s.violations.push(what.clone());
        client_fault(&what)
    };
    let doc = match parse(body) {
        Ok(d) => d,
        Err(e) => return Err(violation(s, format!("malformed request: {e}"))),
    };
    if doc.name != "Envelope" || doc.ns.as_deref() != Some(SOAP_NS) {
        return Err(violation(
            s,
            format!(
                "the document element is {{{:?}}}{}, not a SOAP 1.1 Envelope",
                doc.ns, doc.name
            ),
        ));
    }
    let Some(b) = doc
        .children
        .iter()
        .find(|c| c.name == "Body" && c.ns.as_deref() == Some(SOAP_NS))
    else {
        return Err(violation(s, "the envelope has no SOAP Body".into()));
    };
    if b.children.len() != 1 {
        return Err(violation(
            s,
            format!("the body holds {} elements, not one", b.children.len()),
        ));
    }
    let call = &b.children[0];
    if call.ns.as_deref() != Some(VBOX_NS) {
        return Err(violation(
            s,
            format!(
                "method element {} in namespace {:?}, not {VBOX_NS}",
                call.name, call.ns
            ),
        ));
    }
    let method = call.name.clone();
    let version = {
        let mut it = s.version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    let Some((iface, params)) = signature(&method, version) else {
        return Err(violation(s, format!("unknown method {method}")));
    };
    s.calls.push(method.clone());
    if let Some(c) = call.children.iter().find(|c| c.ns.is_some()) {
        return Err(violation(
            s,
            format!("{method}: parameter {} is namespace-qualified", c.name),
        ));
    }
    let mut children: Vec<&El> = call.children.iter().collect();
    let this = if iface.is_some() {
        if children.first().map(|c| c.name.as_str()) != Some("_this") {
            return Err(violation(s, format!("{method}: no _this first")));
        }
        Some(children.remove(0).text.trim().to_string())
    } else {
        None
    };
    if !params_match(&children, &params) {
        let got: Vec<&str> = children.iter().map(|c| c.name.as_str()).collect();
        return Err(violation(
            s,
            format!("{method}: parameters {got:?}, the WSDL has {params:?}"),
        ));
    }
    let arg = |n: &str| -> String {
        children
            .iter()
            .find(|c| c.name == n)
            .map(|c| c.text.trim().to_string())
            .unwrap_or_default()
    };
    let args = |n: &str| -> Vec<String> {
        children
            .iter()
            .filter(|c| c.name == n)
            .map(|c| c.text.trim().to_string())
            .collect()
    };
    // the session-manager methods
    let resolve = |s: &State, r: &str| -> Option<(u64, Obj)> {
        let (sid, oid) = split_ref(r)?;
        let ws = s.sessions.get(&sid)?;
        Some((sid, ws.objects.get(oid)?.clone()))
    };
    let mkref = |s: &mut State, sid: u64, o: Obj| -> String {
        let ws = s.sessions.get_mut(&sid).unwrap();
        let oid = match ws.objects.iter().position(|x| *x == o) {
            Some(i) => i,
            None => {
                ws.objects.push(o);
                ws.objects.len() - 1
            }
        };
        format!("{sid:016x}-{oid:016x}")
    };
    match method.as_str() {
        "IWebsessionManager_logon" => {
            if let Some((u, p)) = &s.credentials
                && (arg("username") != *u || arg("password") != *p)
            {
                return Err(runtime_fault(
                    E_ACCESSDENIED,
                    "The object functionality is limited",
                    "",
                ));
            }
            let sid = s.next_session;
            s.next_session += 0x1_0001;
            s.sessions.insert(sid, Websession::default());
            // object 0 unused, as the real service starts at 1
            s.sessions
                .get_mut(&sid)
                .unwrap()
                .objects
                .push(Obj::ErrorInfo(String::new()));
            let r = mkref(s, sid, Obj::VirtualBox);
            return Ok(response(&method, &[r]));
        }
        "IWebsessionManager_getSessionObject" | "IWebsessionManager_logoff" => {
            let r = arg("refIVirtualBox");
            let Some((sid, Obj::VirtualBox)) = resolve(s, &r) else {
                s.violations.push(format!(
                    "{method}: refIVirtualBox '{r}' is not a live IVirtualBox"
                ));
                return Err(invalid_object(&r));
            };
            if method.ends_with("logoff") {
                s.sessions.remove(&sid);
                return Ok(response(&method, &[]));
            }
            let r = mkref(s, sid, Obj::Session);
            return Ok(response(&method, &[r]));
        }
        _ => {}
    }
    let this = this.unwrap_or_default();
    let Some((sid, obj)) = resolve(s, &this) else {
        s.violations.push(format!(
            "{method}: _this '{this}' is not a live managed object reference"
        ));
        return Err(invalid_object(&this));
    };
    if Some(obj.interface()) != iface {
        s.violations.push(format!(
            "{method}: _this '{this}' is an {}, not an {}",
            obj.interface(),
            iface.unwrap_or("")
        ));
        return Err(invalid_object(&this));
    }
    let ok = |v: Vec<String>| Ok(response(&method, &v));
    let vm_index = |s: &State, uuid: &str| s.vms.iter().position(|v| v.uuid == uuid);
    let fault = |code: u32, text: String| Err(runtime_fault(code, &text, ""));
    let session_ref_ok =
        |s: &State, r: &str| matches!(resolve(s, r), Some((x, Obj::Session)) if x == sid);
    match (&obj, method.as_str()) {
        (Obj::VirtualBox, "IVirtualBox_getVersion") => ok(vec![s.version.clone()]),
        (Obj::VirtualBox, "IVirtualBox_getMachines") => {
            let uuids: Vec<String> = s
                .vms
                .iter()
                .filter(|v| v.registered)
                .map(|v| v.uuid.clone())
                .collect();
            let refs = uuids
                .into_iter()
                .map(|u| mkref(s, sid, Obj::Machine(u)))
                .collect();
            ok(refs)
        }
        (Obj::VirtualBox, "IVirtualBox_findMachine") => {
            let key = arg("nameOrId");
            match s
                .vms
                .iter()
                .find(|v| v.registered && (v.name == key || same_uuid(&v.uuid, &key)))
            {
                Some(v) => {
                    let u = v.uuid.clone();
                    ok(vec![mkref(s, sid, Obj::Machine(u))])
                }
                None => fault(
                    VBOX_E_OBJECT_NOT_FOUND,
                    format!("Could not find a registered machine named '{key}'"),
                ),
            }
        }
        (Obj::VirtualBox, "IVirtualBox_createMachine") => {
            let name = arg("name");
            if name.is_empty() {
                return fault(E_INVALIDARG, "Machine name must not be empty".into());
            }
            if version >= (7, 1) && arg("platform") != "x86" {
                return fault(
                    E_INVALIDARG,
                    format!("unsupported platform '{}'", arg("platform")),
                );
            }
            if s.vms.iter().any(|v| v.name == name) {
                return fault(
                    VBOX_E_FILE_ERROR,
                    format!(
                        "Machine settings file '/home/u/VirtualBox VMs/{name}/{name}.vbox' already exists"
                    ),
                );
            }
            let mut uuid = String::new();
            for f in arg("flags").split(',').filter(|f| !f.is_empty()) {
                match f.split_once('=') {
                    Some(("UUID", u)) if uuid::Uuid::parse_str(u).is_ok() => uuid = u.to_string(),
                    _ => return fault(E_INVALIDARG, format!("Invalid flag '{f}'")),
                }
            }
            if uuid.is_empty() {
                uuid = uuid::Uuid::new_v4().to_string();
            }
            s.vms.push(VM {
                uuid: uuid.clone(),
                name,
                state: "PoweredOff".into(),
                memory_mb: 128,
                cpus: 1,
                os_type: arg("osTypeId"),
                description: String::new(),
                registered: false,
                saved: false,
                autostart: false,
                controllers: Vec::new(),
                attachments: Vec::new(),
                nics: vec![Nic::default(); 8],
            });
            ok(vec![mkref(s, sid, Obj::Machine(uuid))])
        }
        (Obj::VirtualBox, "IVirtualBox_registerMachine") => {
            let r = arg("machine");
            let Some((_, Obj::Machine(u))) = resolve(s, &r) else {
                s.violations
                    .push(format!("{method}: machine '{r}' is not a live IMachine"));
                return Err(invalid_object(&r));
            };
            let Some(i) = vm_index(s, &u) else {
                return fault(VBOX_E_OBJECT_NOT_FOUND, "machine deleted".into());
            };
            if s.vms[i].registered {
                return fault(
                    VBOX_E_INVALID_OBJECT_STATE,
                    "The machine is already registered".into(),
                );
            }
            if !s.vms[i].saved {
                return fault(
                    VBOX_E_FILE_ERROR,
                    "The machine settings were not saved".into(),
                );
            }
            s.vms[i].registered = true;
            ok(vec![])
        }
        (Obj::Machine(u), _) | (Obj::SessionMachine(u), _) => {
            let Some(i) = vm_index(s, u) else {
                return fault(
                    VBOX_E_OBJECT_NOT_FOUND,
                    format!("The machine {u} was deleted"),
                );
            };
            let v = s.vms[i].clone();
            // a new machine is mutable until it is registered; a registered one through
            // the session machine of a Write lock while it is not running
            let ws = &s.sessions[&sid];
            let mutable = !v.registered
                || (matches!(obj, Obj::SessionMachine(_))
                    && ws.locked.as_deref() == Some(u.as_str())
                    && ws.write
                    && is_off(&v.state));
            match method.as_str() {
                "IMachine_getName" => ok(vec![v.name]),
                "IMachine_getId" => ok(vec![v.uuid]),
                "IMachine_getState" => ok(vec![v.state]),
                "IMachine_getMemorySize" => ok(vec![v.memory_mb.to_string()]),
                "IMachine_getCPUCount" => ok(vec![v.cpus.to_string()]),
                "IMachine_getOSTypeId" => ok(vec![v.os_type]),
                "IMachine_getDescription" => ok(vec![v.description]),
                "IMachine_getAutostartEnabled" => ok(vec![v.autostart.to_string()]),
                "IMachine_getMediumAttachments" => {
                    let mut out = Vec::new();
                    for a in &v.attachments {
                        let m = mkref(s, sid, Obj::Medium(a.location.clone()));
                        out.push(format!(
                            "<medium>{m}</medium><controller>{}</controller><port>{}</port><device>{}</device><type>{}</type><passthrough>false</passthrough><temporaryEject>false</temporaryEject><isEjected>false</isEjected><nonRotational>false</nonRotational><discard>false</discard><hotPluggable>false</hotPluggable><bandwidthGroup></bandwidthGroup>",
                            escape(&a.controller), a.port, a.device, a.kind
                        ));
                    }
                    Ok(struct_response(&method, &out))
                }
                "IMachine_getStorageControllerByName" => {
                    let n = arg("name");
                    if !v.controllers.iter().any(|(c, _)| *c == n) {
                        return fault(
                            VBOX_E_OBJECT_NOT_FOUND,
                            format!("Could not find a storage controller named '{n}'"),
                        );
                    }
                    ok(vec![mkref(s, sid, Obj::StorageController(u.clone(), n))])
                }
                "IMachine_getNetworkAdapter" => match arg("slot").parse::<usize>() {
                    Ok(n) if n < v.nics.len() => {
                        let through = matches!(obj, Obj::SessionMachine(_));
                        ok(vec![mkref(
                            s,
                            sid,
                            Obj::NetworkAdapter(u.clone(), n, through),
                        )])
                    }
                    _ => fault(
                        E_INVALIDARG,
                        format!("Invalid slot number: {}", arg("slot")),
                    ),
                },
                "IMachine_addStorageController" | "IMachine_attachDevice" => {
                    // media attach to a registered machine, through a Write lock
                    if !(v.registered && mutable) {
                        return fault(
                            VBOX_E_INVALID_OBJECT_STATE,
                            "The machine is not mutable or not registered".into(),
                        );
                    }
                    if method == "IMachine_addStorageController" {
                        let (n, bus) = (arg("name"), arg("connectionType"));
                        if !matches!(
                            bus.as_str(),
                            "IDE"
                                | "SATA"
                                | "SCSI"
                                | "SAS"
                                | "Floppy"
                                | "USB"
                                | "PCIe"
                                | "VirtioSCSI"
                        ) {
                            return fault(E_INVALIDARG, format!("Invalid connection type '{bus}'"));
                        }
                        if v.controllers.iter().any(|(c, _)| *c == n) {
                            return fault(
                                VBOX_E_OBJECT_IN_USE,
                                format!("Storage controller named '{n}' already exists"),
                            );
                        }
                        s.vms[i].controllers.push((n.clone(), bus));
                        s.vms[i].saved = false;
                        return ok(vec![mkref(s, sid, Obj::StorageController(u.clone(), n))]);
                    }
                    let n = arg("name");
                    let Some((_, bus)) = v.controllers.iter().find(|(c, _)| *c == n) else {
                        return fault(
                            VBOX_E_OBJECT_NOT_FOUND,
                            format!("Could not find a storage controller named '{n}'"),
                        );
                    };
                    let (Ok(port), Ok(device)) = (
                        arg("controllerPort").parse::<u32>(),
                        arg("device").parse::<u32>(),
                    ) else {
                        return Err(violation(
                            s,
                            format!("{method}: port or device is not a number"),
                        ));
                    };
                    let fits = match bus.as_str() {
                        "IDE" => port < 2 && device < 2,
                        "SATA" => port < 30 && device == 0,
                        _ => port < 16 && device == 0,
                    };
                    if !fits {
                        return fault(
                            E_INVALIDARG,
                            format!(
                                "Invalid controller port {port} / device {device} for the {bus} controller '{n}'"
                            ),
                        );
                    }
                    if v.attachments
                        .iter()
                        .any(|a| a.controller == n && (a.port, a.device) == (port, device))
                    {
                        return fault(
                            VBOX_E_OBJECT_IN_USE,
                            format!(
                                "Medium already attached to port {port}, device {device} of controller '{n}'"
                            ),
                        );
                    }
                    let mr = arg("medium");
                    let Some((_, Obj::Medium(loc))) = resolve(s, &mr) else {
                        s.violations
                            .push(format!("{method}: medium '{mr}' is not a live IMedium"));
                        return Err(invalid_object(&mr));
                    };
                    let kind = arg("type");
                    if !matches!(kind.as_str(), "HardDisk" | "DVD" | "Floppy") {
                        return fault(E_INVALIDARG, format!("Invalid device type '{kind}'"));
                    }
                    s.vms[i].attachments.push(Attachment {
                        controller: n,
                        port,
                        device,
                        kind,
                        location: loc,
                    });
                    s.vms[i].saved = false;
                    ok(vec![])
                }
                "IMachine_setAutostartEnabled" => {
                    // a setting a running machine may change through a Shared lock
                    if !matches!(obj, Obj::SessionMachine(_))
                        || ws.locked.as_deref() != Some(u.as_str())
                    {
                        return fault(VBOX_E_INVALID_VM_STATE, "The machine is not mutable".into());
                    }
                    let on = match arg("autostartEnabled").as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        x => return fault(E_INVALIDARG, format!("not a boolean: '{x}'")),
                    };
                    s.vms[i].autostart = on;
                    s.vms[i].saved = false;
                    ok(vec![])
                }
                "IMachine_setMemorySize"
                | "IMachine_setCPUCount"
                | "IMachine_setDescription"
                | "IMachine_setOSTypeId" => {
                    if !mutable {
                        return fault(
                            VBOX_E_INVALID_VM_STATE,
                            "The machine is not mutable (state is PoweredOff)".into(),
                        );
                    }
                    let m = &mut s.vms[i];
                    match method.as_str() {
                        "IMachine_setMemorySize" => match arg("memorySize").parse() {
                            Ok(n) if n >= 4 => m.memory_mb = n,
                            _ => {
                                return fault(
                                    E_INVALIDARG,
                                    format!("Invalid RAM size: {}", arg("memorySize")),
                                );
                            }
                        },
                        "IMachine_setCPUCount" => match arg("CPUCount").parse() {
                            Ok(n) if (1..=64).contains(&n) => m.cpus = n,
                            _ => {
                                return fault(
                                    E_INVALIDARG,
                                    format!("Invalid virtual CPU count: {}", arg("CPUCount")),
                                );
                            }
                        },
                        "IMachine_setOSTypeId" => m.os_type = arg("OSTypeId"),
                        _ => m.description = arg("description"),
                    }
                    m.saved = false;
                    ok(vec![])
                }
                "IMachine_saveSettings" => {
                    if !mutable && !matches!(obj, Obj::SessionMachine(_)) {
                        return fault(VBOX_E_INVALID_VM_STATE, "The machine is not mutable".into());
                    }
                    s.vms[i].saved = true;
                    ok(vec![])
                }
                "IMachine_lockMachine" => {
                    let sr = arg("session");
                    if !session_ref_ok(s, &sr) {
                        s.violations.push(format!(
                            "{method}: session '{sr}' is not this websession's ISession"
                        ));
                        return Err(invalid_object(&sr));
                    }
                    if !matches!(arg("lockType").as_str(), "Shared" | "Write" | "VM") {
                        return fault(
                            E_INVALIDARG,
                            format!("Invalid lock type '{}'", arg("lockType")),
                        );
                    }
                    let write = arg("lockType") == "Write";
                    if write && !is_off(&v.state) {
                        return fault(
                            VBOX_E_INVALID_OBJECT_STATE,
                            format!("The machine '{}' is already locked by a session", v.name),
                        );
                    }
                    let ws = s.sessions.get_mut(&sid).unwrap();
                    if ws.locked.is_some() {
                        return fault(
                            VBOX_E_INVALID_OBJECT_STATE,
                            "The given session is busy".into(),
                        );
                    }
                    ws.locked = Some(u.clone());
                    ws.write = write;
                    ok(vec![])
                }
                "IMachine_launchVMProcess" => {
                    let sr = arg("session");
                    if !session_ref_ok(s, &sr) {
                        s.violations.push(format!(
                            "{method}: session '{sr}' is not this websession's ISession"
                        ));
                        return Err(invalid_object(&sr));
                    }
                    if !matches!(arg("name").as_str(), "headless" | "gui" | "sdl" | "") {
                        return fault(
                            E_INVALIDARG,
                            format!("Invalid frontend name: '{}'", arg("name")),
                        );
                    }
                    if !is_off(&v.state) {
                        return fault(
                            VBOX_E_INVALID_OBJECT_STATE,
                            format!(
                                "The machine '{}' is already locked by a session (or being locked or unlocked)",
                                v.name
                            ),
                        );
                    }
                    let ws = s.sessions.get_mut(&sid).unwrap();
                    if ws.locked.is_some() {
                        return fault(
                            VBOX_E_INVALID_OBJECT_STATE,
                            "The given session is busy".into(),
                        );
                    }
                    ws.locked = Some(u.clone());
                    let p = match s.fail_launch.take() {
                        Some((code, text)) => Obj::Progress { code, text },
                        None => {
                            s.vms[i].state = "Running".into();
                            Obj::Progress {
                                code: 0,
                                text: String::new(),
                            }
                        }
                    };
                    ok(vec![mkref(s, sid, p)])
                }
                "IMachine_unregister" => {
                    if !matches!(
                        arg("cleanupMode").as_str(),
                        "UnregisterOnly"
                            | "DetachAllReturnNone"
                            | "DetachAllReturnHardDisksOnly"
                            | "Full"
                    ) {
                        return fault(
                            E_INVALIDARG,
                            format!("Invalid cleanup mode '{}'", arg("cleanupMode")),
                        );
                    }
                    if !v.registered {
                        return fault(
                            VBOX_E_INVALID_OBJECT_STATE,
                            "The machine is not registered".into(),
                        );
                    }
                    if !is_off(&v.state) {
                        return fault(
                            VBOX_E_INVALID_OBJECT_STATE,
                            format!(
                                "Cannot unregister the machine '{}' while it is locked",
                                v.name
                            ),
                        );
                    }
                    s.vms[i].registered = false;
                    ok(vec![])
                }
                "IMachine_deleteConfig" => {
                    if v.registered {
                        return fault(
                            VBOX_E_INVALID_VM_STATE,
                            "Cannot delete settings of a registered machine".into(),
                        );
                    }
                    if !args("media").is_empty() {
                        return fault(E_INVALIDARG, "no media attached".into());
                    }
                    s.vms.remove(i);
                    ok(vec![mkref(
                        s,
                        sid,
                        Obj::Progress {
                            code: 0,
                            text: String::new(),
                        },
                    )])
                }
                _ => Err(violation(s, format!("{method} on an IMachine"))),
            }
        }
        (Obj::Session, "ISession_getConsole") => {
            let locked = s.sessions[&sid].locked.clone();
            match locked {
                Some(u) if vm_index(s, &u).is_some_and(|i| !is_off(&s.vms[i].state)) => {
                    ok(vec![mkref(s, sid, Obj::Console(u))])
                }
                // a session without a running VM has no console: a null reference
                Some(_) => ok(vec![String::new()]),
                None => fault(
                    VBOX_E_INVALID_SESSION_STATE,
                    "The session is not locked (session state: Unlocked)".into(),
                ),
            }
        }
        (Obj::Session, "ISession_getMachine") => match s.sessions[&sid].locked.clone() {
            Some(u) => ok(vec![mkref(s, sid, Obj::SessionMachine(u))]),
            None => fault(
                VBOX_E_INVALID_SESSION_STATE,
                "The session is not locked (session state: Unlocked)".into(),
            ),
        },
        (Obj::VirtualBox, "IVirtualBox_getHost") => ok(vec![mkref(s, sid, Obj::Host)]),
        (Obj::VirtualBox, "IVirtualBox_openMedium") => {
            let loc = arg("location");
            // the fake's file system: everything but /missing/ exists
            if !loc.starts_with('/') || loc.starts_with("/missing/") {
                return fault(
                    VBOX_E_FILE_ERROR,
                    format!("Could not find file for the medium '{loc}'"),
                );
            }
            if !matches!(arg("deviceType").as_str(), "HardDisk" | "DVD" | "Floppy")
                || !matches!(arg("accessMode").as_str(), "ReadOnly" | "ReadWrite")
                || !matches!(arg("forceNewUuid").as_str(), "true" | "false" | "0" | "1")
            {
                return fault(
                    E_INVALIDARG,
                    "Invalid device type, access mode or flag".into(),
                );
            }
            ok(vec![mkref(s, sid, Obj::Medium(loc))])
        }
        (Obj::Medium(loc), "IMedium_getLocation") => ok(vec![loc.clone()]),
        (Obj::StorageController(u, n), "IStorageController_getBus") => {
            let bus = vm_index(s, u).and_then(|i| {
                s.vms[i]
                    .controllers
                    .iter()
                    .find(|(c, _)| c == n)
                    .map(|(_, b)| b.clone())
            });
            match bus {
                Some(b) => ok(vec![b]),
                None => fault(VBOX_E_OBJECT_NOT_FOUND, format!("controller '{n}' gone")),
            }
        }
        (Obj::NetworkAdapter(u, slot, through), _) => {
            let Some(i) = vm_index(s, u) else {
                return fault(VBOX_E_OBJECT_NOT_FOUND, "machine gone".into());
            };
            let ws = &s.sessions[&sid];
            let mutable = *through
                && ws.locked.as_deref() == Some(u.as_str())
                && ws.write
                && s.vms[i].registered;
            let n = s.vms[i].nics[*slot].clone();
            if let Some(getter) = method.strip_prefix("INetworkAdapter_get") {
                return ok(vec![match getter {
                    "Enabled" => n.enabled.to_string(),
                    "AttachmentType" => n.attachment,
                    "BridgedInterface" => n.bridged,
                    "HostOnlyInterface" => n.host_only,
                    "InternalNetwork" => n.internal,
                    "MACAddress" => n.mac,
                    _ => n.model,
                }]);
            }
            if !mutable {
                return fault(
                    VBOX_E_INVALID_VM_STATE,
                    "The machine is not mutable (state is PoweredOff)".into(),
                );
            }
            let value = children
                .first()
                .map(|c| c.text.trim().to_string())
                .unwrap_or_default();
            let nic = &mut s.vms[i].nics[*slot];
            match method.as_str() {
                "INetworkAdapter_setEnabled" => match value.as_str() {
                    "true" | "1" => nic.enabled = true,
                    "false" | "0" => nic.enabled = false,
                    _ => return fault(E_INVALIDARG, format!("not a boolean: '{value}'")),
                },
                "INetworkAdapter_setAttachmentType" => {
                    if !matches!(
                        value.as_str(),
                        "Null"
                            | "NAT"
                            | "Bridged"
                            | "Internal"
                            | "HostOnly"
                            | "Generic"
                            | "NATNetwork"
                            | "Cloud"
                    ) {
                        return fault(E_INVALIDARG, format!("Invalid attachment type '{value}'"));
                    }
                    nic.attachment = value;
                }
                "INetworkAdapter_setBridgedInterface" => nic.bridged = value,
                "INetworkAdapter_setHostOnlyInterface" => nic.host_only = value,
                "INetworkAdapter_setInternalNetwork" => nic.internal = value,
                "INetworkAdapter_setMACAddress" => {
                    if value.len() != 12 || !value.chars().all(|c| c.is_ascii_hexdigit()) {
                        return fault(
                            E_INVALIDARG,
                            format!("Invalid MAC address format '{value}'"),
                        );
                    }
                    nic.mac = value;
                }
                _ => {
                    if !matches!(
                        value.as_str(),
                        "Am79C970A" | "Am79C973" | "I82540EM" | "I82543GC" | "I82545EM" | "Virtio"
                    ) {
                        return fault(E_INVALIDARG, format!("Invalid adapter type '{value}'"));
                    }
                    nic.model = value;
                }
            }
            s.vms[i].saved = false;
            ok(vec![])
        }
        (Obj::Host, _) => match method.as_str() {
            "IHost_getMemorySize" => ok(vec!["15872".into()]),
            "IHost_getProcessorOnlineCount" | "IHost_getProcessorCount" => ok(vec!["8".into()]),
            "IHost_getProcessorCoreCount" => ok(vec!["4".into()]),
            "IHost_getProcessorSpeed" => match arg("cpuId").parse::<u32>() {
                Ok(n) if n < 8 => ok(vec!["2400".into()]),
                _ => fault(E_INVALIDARG, format!("Invalid CPU id {}", arg("cpuId"))),
            },
            _ => Err(violation(s, format!("{method} on an IHost"))),
        },
        (Obj::Session, "ISession_unlockMachine") => {
            let ws = s.sessions.get_mut(&sid).unwrap();
            ws.write = false;
            if ws.locked.take().is_none() {
                return fault(
                    VBOX_E_INVALID_SESSION_STATE,
                    "The session is not locked (session state: Unlocked)".into(),
                );
            }
            ok(vec![])
        }
        (Obj::Console(u), _) => {
            let Some(i) = vm_index(s, u) else {
                return fault(VBOX_E_OBJECT_NOT_FOUND, "machine gone".into());
            };
            if s.sessions[&sid].locked.as_deref() != Some(u.as_str()) {
                return fault(
                    VBOX_E_INVALID_SESSION_STATE,
                    "The console's session is not locked".into(),
                );
            }
            let st = s.vms[i].state.clone();
            let bad = |st: &str| {
                fault(
                    VBOX_E_INVALID_VM_STATE,
                    format!("Invalid machine state: {st}"),
                )
            };
            match method.as_str() {
                "IConsole_powerDown" => {
                    if is_off(&st) {
                        return bad(&st);
                    }
                    s.vms[i].state = "PoweredOff".into();
                    ok(vec![mkref(
                        s,
                        sid,
                        Obj::Progress {
                            code: 0,
                            text: String::new(),
                        },
                    )])
                }
                "IConsole_pause" => {
                    if st != "Running" {
                        return bad(&st);
                    }
                    s.vms[i].state = "Paused".into();
                    ok(vec![])
                }
                "IConsole_resume" => {
                    if st != "Paused" {
                        return bad(&st);
                    }
                    s.vms[i].state = "Running".into();
                    ok(vec![])
                }
                "IConsole_powerButton" => {
                    if st != "Running" {
                        return bad(&st);
                    }
                    // the fake's guest obeys the ACPI button at once
                    s.vms[i].state = "PoweredOff".into();
                    ok(vec![])
                }
                "IConsole_reset" => {
                    if st != "Running" {
                        return bad(&st);
                    }
                    ok(vec![])
                }
                _ => Err(violation(s, format!("{method} on an IConsole"))),
            }
        }
        (Obj::Progress { code, text }, _) => match method.as_str() {
            "IProgress_waitForCompletion" => match arg("timeout").parse::<i32>() {
                Ok(_) => ok(vec![]),
                Err(_) => Err(violation(
                    s,
                    format!("{method}: timeout '{}' is not an int", arg("timeout")),
                )),
            },
            "IProgress_getResultCode" => ok(vec![(*code as i32).to_string()]),
            "IProgress_getErrorInfo" => {
                if *code == 0 {
                    ok(vec![String::new()])
                } else {
                    let t = text.clone();
                    ok(vec![mkref(s, sid, Obj::ErrorInfo(t))])
                }
            }
            _ => Err(violation(s, format!("{method} on an IProgress"))),
        },
        (Obj::ErrorInfo(t), "IVirtualBoxErrorInfo_getText") => ok(vec![t.clone()]),
        _ => Err(violation(s, format!("{method} on an {}", obj.interface()))),
    }
}

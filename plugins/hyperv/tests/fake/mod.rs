//! A fake Hyper-V WS-Management endpoint: an HTTP/1.1 server on 127.0.0.1 in the test
//! process that keeps a small VM inventory and answers as WinRM does, with WMI instances
//! written from Microsoft's published `Msvm_*` / `Win32_*` class documentation
//! (`root/virtualization/v2`, `root/cimv2`).
//!
//! Every request is CHECKED against the specifications before it is answered:
//! * HTTP: `POST /wsman`, `Content-Type: application/soap+xml;charset=UTF-8` (SOAP 1.2's
//!   media type, WS-Management DSP0226 R13.1-3), basic authentication;
//! * SOAP 1.2: the `http://www.w3.org/2003/05/soap-envelope` envelope with a header and a
//!   body;
//! * WS-Addressing / DSP0226 §5-6: `wsa:To` (the endpoint), `wsa:Action` (mustUnderstand),
//!   `wsa:MessageID` (a `uuid:` URI never used before), `wsa:ReplyTo/wsa:Address`
//!   (anonymous), `wsman:ResourceURI`, `wsman:MaxEnvelopeSize` (mustUnderstand, a
//!   positive number), `wsman:OperationTimeout` (an `xs:duration`), `wsman:SelectorSet`
//!   (named, unique selectors), `wsman:OptionSet` (named options);
//! * WS-Enumeration / DSP0226 §8: `Enumerate` with `wsman:Filter` in the WQL dialect on a
//!   `…/NAMESPACE/*` resource URI and no selectors, `wsman:MaxElements` only with
//!   `wsman:OptimizeEnumeration`; `Pull` with an `EnumerationContext` the server issued
//!   (and not yet ended) and a positive `MaxElements`; the WQL itself is parsed;
//! * WS-Transfer `Get` (DSP0226 §7): an empty body and the instance's selectors;
//! * custom actions (DSP0226 §6, WMI methods): `wsa:Action` = resource URI + `/` +
//!   method, the body a single `METHOD_INPUT` element in the class's namespace, the
//!   instance's key selectors, embedded instances as CIM-XML `<INSTANCE>`s.
//!
//! A request that breaks a rule is recorded as a violation (and answered with a SOAP
//! fault); every test ends with [`Fake::assert_clean`].

pub mod xml;

use base64::Engine;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use xml::X;

pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const WSA: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
pub const WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
pub const WSEN: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration";
pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
pub const CIM: &str = "http://schemas.dmtf.org/wbem/wscim/1/common";
pub const WMI: &str = "http://schemas.microsoft.com/wbem/wsman/1/wmi/";
pub const WQL: &str = "http://schemas.microsoft.com/wbem/wsman/1/WQL";
pub const ANON: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";
pub const ENUMERATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate";
pub const PULL: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull";
pub const RELEASE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release";
pub const GET: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get";
pub const V2: &str = "root/virtualization/v2";
pub const CIMV2: &str = "root/cimv2";

/// One VM of the inventory.
#[derive(Debug, Clone)]
pub struct FakeVm {
    pub guid: String,
    pub name: String,
    pub enabled: u32,
    pub pid: Option<u32>,
    pub mem_mb: u64,
    pub limit_mb: u64,
    pub vcpus: u32,
    pub notes: Vec<String>,
    /// 1 or 2 (generation)
    pub generation: u8,
    pub autostart: u16,
    /// While stopping (32774): how many more listings show it so.
    pub stopping_reads: u32,
    pub disks: Vec<FakeDisk>,
    /// (MAC as WMI writes it, connected to the switch)
    pub nics: Vec<(String, bool)>,
}

/// A disk image or ISO on a controller slot.
#[derive(Debug, Clone)]
pub struct FakeDisk {
    pub path: String,
    pub dvd: bool,
    /// `Some(n)`: IDE controller n (generation 1); `None`: the SCSI controller
    pub ide: Option<u8>,
    pub slot: u8,
}

pub const SWITCH: &str = "C08CB7B8-9B3C-408E-8E30-5E16A3AEB444";

impl FakeVm {
    pub fn new(guid: &str, name: &str, enabled: u32, pid: Option<u32>) -> FakeVm {
        FakeVm {
            guid: guid.to_string(),
            name: name.to_string(),
            enabled,
            pid,
            mem_mb: 2048,
            limit_mb: 2048,
            vcpus: 2,
            notes: Vec::new(),
            generation: 2,
            autostart: 3,
            stopping_reads: 0,
            disks: Vec::new(),
            nics: Vec::new(),
        }
    }

    fn proc_id(&self) -> String {
        format!(
            "Microsoft:{}\\B637F346-6A0E-4DEC-AF52-BD70CB80A21D\\0",
            self.guid
        )
    }

    fn mem_id(&self) -> String {
        format!(
            "Microsoft:{}\\4764334D-E001-4176-82EE-5594EC9B530E",
            self.guid
        )
    }
}

#[derive(Debug)]
struct Job {
    /// JobState of each successive Get; the last repeats
    states: Vec<u16>,
    reads: usize,
    code: u16,
    description: String,
    summary: String,
}

/// What the server knows and saw.
#[derive(Debug, Default)]
pub struct State {
    pub vms: Vec<FakeVm>,
    jobs: HashMap<String, Job>,
    /// context -> (resource URI, items still to send)
    enums: HashMap<String, (String, Vec<String>)>,
    message_ids: HashSet<String>,
    pub violations: Vec<String>,
    /// one line per request: `Enumerate <wql>`, `Pull`, `Get <class>`, `Invoke C.M(args)`
    pub log: Vec<String>,
    /// the next job ends in JobState 10 with this ErrorCode and ErrorDescription
    pub fail_next_job: Option<(u16, String)>,
    /// the next job never ends (JobState 4, running)
    pub hang_next_job: bool,
    /// invocations of this method answer a SOAP fault
    pub fault_on: Option<String>,
    /// most items per Enumerate/Pull answer (the client's MaxElements may be larger)
    pub page: usize,
    next_pid: u32,
}

/// A fault to answer: (HTTP status, SOAP code, subcode, reason, WMI message).
#[derive(Debug)]
struct Fault {
    code: &'static str,
    subcode: &'static str,
    reason: String,
    message: String,
}

type Answer = Result<(String, String), Fault>;

fn violation(why: impl Into<String>) -> Fault {
    Fault {
        code: "s:Sender",
        subcode: "w:InvalidMessageInformationHeader",
        reason: format!(
            "fake endpoint: request violates the specification: {}",
            why.into()
        ),
        message: String::new(),
    }
}

pub struct Fake {
    pub port: u16,
    pub scheme: &'static str,
    pub user: String,
    pub password: String,
    state: Arc<Mutex<State>>,
}

pub const VM_WEB: &str = "6E8B9F3A-1C2D-4E5F-8A9B-0C1D2E3F4A5B";
pub const VM_DB: &str = "0B6C6C35-7D4E-4D3A-9E1F-2A3B4C5D6E7F";
pub const VM_SAVED: &str = "A1B2C3D4-E5F6-4A5B-8C9D-0E1F2A3B4C5D";
pub const HOST_NAME: &str = "HV01";

fn inventory() -> Vec<FakeVm> {
    let mut web = FakeVm::new(VM_WEB, "web01", 2, Some(4242));
    web.notes = vec!["front end".into(), "tier 1".into()];
    web.vcpus = 4;
    web.mem_mb = 4096;
    web.limit_mb = 8192;
    web.disks = vec![
        FakeDisk {
            path: r"C:\ProgramData\Microsoft\Windows\Virtual Hard Disks\web01.vhdx".into(),
            dvd: false,
            ide: None,
            slot: 0,
        },
        FakeDisk {
            path: r"C:\iso\tools.iso".into(),
            dvd: true,
            ide: None,
            slot: 1,
        },
    ];
    web.nics = vec![
        ("00155D0A0B0C".into(), true),
        ("00155D0A0B0D".into(), false),
    ];
    let mut db = FakeVm::new(VM_DB, "db01", 3, None);
    db.generation = 1;
    db.autostart = 4;
    db.disks = vec![
        FakeDisk {
            path: r"D:\VMs\db01\db01.vhd".into(),
            dvd: false,
            ide: Some(0),
            slot: 0,
        },
        FakeDisk {
            path: r"D:\iso\install.iso".into(),
            dvd: true,
            ide: Some(1),
            slot: 0,
        },
    ];
    let saved = FakeVm::new(VM_SAVED, "build\"agent", 32769, None);
    vec![web, db, saved]
}

impl Fake {
    /// Over HTTP.
    pub fn start() -> Fake {
        Fake::start_with(None)
    }

    /// Over HTTPS with the self-signed certificate of `tests/fixtures`.
    pub fn start_tls() -> Fake {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let certs = vec![CertificateDer::from_pem_file(dir.join("winrm-cert.pem")).unwrap()];
        let key = PrivateKeyDer::from_pem_file(dir.join("winrm-key.pem")).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Fake::start_with(Some(Arc::new(cfg)))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            vms: inventory(),
            page: 2,
            next_pid: 5000,
            ..State::default()
        }));
        let fake = Fake {
            port,
            scheme: if tls.is_some() { "https" } else { "http" },
            user: "hvadmin".into(),
            password: "Pa$$w0rd:with colon".into(),
            state: state.clone(),
        };
        let creds = format!("{}:{}", fake.user, fake.password);
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                let st = state.clone();
                let creds = creds.clone();
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve(s, st, &creds, port, "http"),
                    Some(cfg) => {
                        let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(conn, s), st, &creds, port, "https")
                    }
                });
            }
        });
        fake
    }

    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}/wsman", self.scheme, self.port)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails the test if any request broke a rule.
    pub fn assert_clean(&self) {
        let s = self.lock();
        assert!(
            s.violations.is_empty(),
            "the plugin sent malformed WS-Management requests:\n{}",
            s.violations.join("\n")
        );
    }

    pub fn vm(&self, guid: &str) -> Option<FakeVm> {
        self.lock()
            .vms
            .iter()
            .find(|v| v.guid.eq_ignore_ascii_case(guid))
            .cloned()
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

fn serve<S: Read + Write>(s: S, state: Arc<Mutex<State>>, creds: &str, port: u16, scheme: &str) {
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
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
        let len: usize = header(&headers, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (status, extra, text) = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            handle(
                &mut st,
                &line,
                &headers,
                &body,
                creds,
                &format!("{scheme}://127.0.0.1:{port}/wsman"),
            )
        };
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            _ => "Internal Server Error",
        };
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\nServer: Microsoft-HTTPAPI/2.0\r\n{extra}Content-Type: application/soap+xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        let w = r.get_mut();
        if w.write_all(resp.as_bytes())
            .and_then(|()| w.flush())
            .is_err()
        {
            return;
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], k: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
}

fn handle(
    st: &mut State,
    line: &str,
    headers: &[(String, String)],
    body: &[u8],
    creds: &str,
    endpoint: &str,
) -> (u16, String, String) {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(creds)
    );
    if header(headers, "authorization") != Some(expected.as_str()) {
        st.log.push("401".into());
        return (
            401,
            "WWW-Authenticate: Basic realm=\"WSMAN\"\r\n".into(),
            String::new(),
        );
    }
    let mut parts = line.split_whitespace();
    if parts.next() != Some("POST") || parts.next() != Some("/wsman") {
        return fail(
            st,
            format!("HTTP: expected POST /wsman, got '{}'", line.trim()),
        );
    }
    let ct = header(headers, "content-type").unwrap_or("");
    let ct_l = ct.to_ascii_lowercase().replace(' ', "");
    if !ct_l.starts_with("application/soap+xml") || !ct_l.contains("charset=utf-8") {
        return fail(
            st,
            format!(
                "HTTP: Content-Type must be application/soap+xml;charset=UTF-8 (SOAP 1.2), got '{ct}'"
            ),
        );
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return fail(st, "body is not UTF-8".into());
    };
    let env = match xml::parse(text) {
        Ok(e) => e,
        Err(e) => return fail(st, format!("not well-formed XML: {e}")),
    };
    let req = match check_envelope(st, &env, endpoint) {
        Ok(r) => r,
        Err(e) => return fail(st, e),
    };
    let answer = dispatch(st, &req);
    match answer {
        Ok((action, body)) => (
            200,
            String::new(),
            envelope(&action, &req.message_id, &body),
        ),
        Err(f) => {
            if f.subcode == "w:InvalidMessageInformationHeader" {
                st.violations.push(f.reason.clone());
            }
            (
                500,
                String::new(),
                fault_envelope(&f, Some(&req.message_id)),
            )
        }
    }
}

fn fail(st: &mut State, why: String) -> (u16, String, String) {
    st.violations.push(why.clone());
    (500, String::new(), fault_envelope(&violation(why), None))
}

fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

fn envelope(action: &str, relates_to: &str, body: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"{SOAP12}\" xmlns:a=\"{WSA}\" xmlns:n=\"{WSEN}\" xmlns:w=\"{WSMAN}\" xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd\" xml:lang=\"en-US\"><s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{}</a:MessageID><a:To>{ANON}</a:To><a:RelatesTo>{}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>",
        uuid::Uuid::new_v4().hyphenated().to_string().to_uppercase(),
        esc(relates_to)
    )
}

fn fault_envelope(f: &Fault, relates_to: Option<&str>) -> String {
    let detail = if f.message.is_empty() {
        String::new()
    } else {
        format!(
            "<s:Detail><f:WSManFault xmlns:f=\"http://schemas.microsoft.com/wbem/wsman/1/wsmanfault\" Code=\"2147749889\" Machine=\"hv01\"><f:Message>{}</f:Message></f:WSManFault></s:Detail>",
            esc(&f.message)
        )
    };
    format!(
        "<s:Envelope xmlns:s=\"{SOAP12}\" xmlns:a=\"{WSA}\" xmlns:w=\"{WSMAN}\" xml:lang=\"en-US\"><s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action><a:MessageID>uuid:{}</a:MessageID><a:To>{ANON}</a:To>{}</s:Header><s:Body><s:Fault><s:Code><s:Value>{}</s:Value><s:Subcode><s:Value>{}</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang=\"en-US\">{}</s:Text></s:Reason>{detail}</s:Fault></s:Body></s:Envelope>",
        uuid::Uuid::new_v4().hyphenated().to_string().to_uppercase(),
        relates_to
            .map(|r| format!("<a:RelatesTo>{}</a:RelatesTo>", esc(r)))
            .unwrap_or_default(),
        f.code,
        f.subcode,
        esc(&f.reason)
    )
}

// ---------------------------------------------------------------------------------------
// The checks of the envelope and its headers

#[derive(Debug)]
pub struct Req {
    action: String,
    resource_uri: String,
    message_id: String,
    selectors: Vec<(String, String)>,
    body: X,
}

fn must_understand(x: &X) -> bool {
    matches!(x.attr(SOAP12, "mustUnderstand"), Some("true") | Some("1"))
}

fn is_duration(s: &str) -> bool {
    // the xs:duration forms WinRM takes: PTnS, PTn.nnnS, PTnMnS...
    let Some(rest) = s.strip_prefix("PT") else {
        return false;
    };
    let Some(num) = rest.strip_suffix('S') else {
        return false;
    };
    let num = num.rsplit('M').next().unwrap_or("");
    !num.is_empty()
        && num.split('.').count() <= 2
        && num
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn check_envelope(st: &mut State, env: &X, endpoint: &str) -> Result<Req, String> {
    if env.is(SOAP11, "Envelope") {
        return Err("SOAP 1.1 envelope: WS-Management over WinRM requires SOAP 1.2".into());
    }
    if !env.is(SOAP12, "Envelope") {
        return Err(format!(
            "root element is {{{}}}{}, not the SOAP 1.2 Envelope",
            env.ns, env.name
        ));
    }
    let header = env.find(SOAP12, "Header").ok_or("no soap Header")?;
    let body = env.find(SOAP12, "Body").ok_or("no soap Body")?;
    fn one<'a>(header: &'a X, ns: &str, name: &str) -> Result<&'a X, String> {
        let mut it = header.children.iter().filter(|c| c.is(ns, name));
        let q = if ns == WSA { "wsa" } else { "wsman" };
        let x = it.next().ok_or(format!("header {q}:{name} missing"))?;
        if it.next().is_some() {
            return Err(format!("header {q}:{name} appears twice"));
        }
        Ok(x)
    }
    let to = one(header, WSA, "To")?;
    if to.trimmed() != endpoint {
        return Err(format!(
            "wsa:To is '{}', expected '{endpoint}'",
            to.trimmed()
        ));
    }
    let action = one(header, WSA, "Action")?;
    if !must_understand(action) {
        return Err("wsa:Action without s:mustUnderstand=\"true\"".into());
    }
    let mid = one(header, WSA, "MessageID")?.trimmed().to_string();
    let Some(u) = mid.strip_prefix("uuid:") else {
        return Err(format!("wsa:MessageID '{mid}' is not a uuid: URI"));
    };
    if uuid::Uuid::parse_str(u).is_err() || u.len() != 36 {
        return Err(format!("wsa:MessageID '{mid}' is not a uuid: URI"));
    }
    if !st.message_ids.insert(mid.to_ascii_lowercase()) {
        return Err(format!("wsa:MessageID '{mid}' was used before"));
    }
    let reply = one(header, WSA, "ReplyTo")?;
    match reply.find(WSA, "Address") {
        Some(a) if a.trimmed() == ANON => {}
        _ => return Err("wsa:ReplyTo/wsa:Address is not the anonymous address".into()),
    }
    let ruri = one(header, WSMAN, "ResourceURI")?.trimmed().to_string();
    if ruri.is_empty() {
        return Err("empty wsman:ResourceURI".into());
    }
    let max = one(header, WSMAN, "MaxEnvelopeSize")?;
    if !must_understand(max) || max.trimmed().parse::<u32>().map_or(true, |n| n < 8192) {
        return Err(format!(
            "wsman:MaxEnvelopeSize must be mustUnderstand and a number of at least 8192, got '{}'",
            max.trimmed()
        ));
    }
    if let Some(t) = header.find(WSMAN, "OperationTimeout")
        && !is_duration(t.trimmed())
    {
        return Err(format!(
            "wsman:OperationTimeout '{}' is not an xs:duration",
            t.trimmed()
        ));
    }
    let mut selectors = Vec::new();
    if let Some(ss) = header.find(WSMAN, "SelectorSet") {
        for s in &ss.children {
            if !s.is(WSMAN, "Selector") {
                return Err(format!("{{{}}}{} inside wsman:SelectorSet", s.ns, s.name));
            }
            let name = s.attr("", "Name").ok_or("wsman:Selector without Name")?;
            if selectors.iter().any(|(n, _): &(String, String)| n == name) {
                return Err(format!("selector '{name}' given twice"));
            }
            selectors.push((name.to_string(), s.trimmed().to_string()));
        }
        if selectors.is_empty() {
            return Err("empty wsman:SelectorSet".into());
        }
    }
    if let Some(os) = header.find(WSMAN, "OptionSet") {
        for o in &os.children {
            if !o.is(WSMAN, "Option") || o.attr("", "Name").is_none() {
                return Err("wsman:OptionSet holds something other than named Options".into());
            }
        }
    }
    for h in &header.children {
        let known = [
            (WSA, "To"),
            (WSA, "Action"),
            (WSA, "MessageID"),
            (WSA, "ReplyTo"),
            (WSMAN, "ResourceURI"),
            (WSMAN, "MaxEnvelopeSize"),
            (WSMAN, "OperationTimeout"),
            (WSMAN, "SelectorSet"),
            (WSMAN, "OptionSet"),
            (WSMAN, "Locale"),
        ];
        if must_understand(h) && !known.iter().any(|(ns, n)| h.is(ns, n)) {
            return Err(format!(
                "mustUnderstand header {{{}}}{} the service does not know",
                h.ns, h.name
            ));
        }
    }
    Ok(Req {
        action: action.trimmed().to_string(),
        resource_uri: ruri,
        message_id: mid,
        selectors,
        body: body.clone(),
    })
}

// ---------------------------------------------------------------------------------------
// WQL

#[derive(Debug, PartialEq)]
pub enum Query {
    Select {
        class: String,
        conds: Vec<(String, String)>,
    },
    Associators {
        class: String,
        keys: Vec<(String, String)>,
        assoc: String,
        result: String,
    },
}

#[derive(Debug, PartialEq, Clone)]
enum Tok {
    Word(String),
    Str(String),
    Sym(char),
}

fn tokens(q: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut cs = q.chars().peekable();
    while let Some(&c) = cs.peek() {
        if c.is_whitespace() {
            cs.next();
        } else if c == '"' || c == '\'' {
            let quote = c;
            cs.next();
            let mut s = String::new();
            loop {
                match cs.next() {
                    None => return Err("unterminated string".into()),
                    Some('\\') => s.push(cs.next().ok_or("dangling backslash")?),
                    Some(x) if x == quote => break,
                    Some(x) => s.push(x),
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let mut s = String::new();
            while let Some(&x) = cs.peek() {
                if x.is_ascii_alphanumeric() || x == '_' {
                    s.push(x);
                    cs.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Word(s));
        } else if "=*{},.".contains(c) {
            out.push(Tok::Sym(c));
            cs.next();
        } else {
            return Err(format!("unexpected character '{c}'"));
        }
    }
    Ok(out)
}

pub fn parse_wql(q: &str) -> Result<Query, String> {
    let t = tokens(q)?;
    let mut i = 0;
    let word = |i: &mut usize, w: &str| -> Result<(), String> {
        match t.get(*i) {
            Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w) => {
                *i += 1;
                Ok(())
            }
            other => Err(format!("expected {w}, got {other:?}")),
        }
    };
    let ident = |i: &mut usize| -> Result<String, String> {
        match t.get(*i) {
            Some(Tok::Word(x)) => {
                *i += 1;
                Ok(x.clone())
            }
            other => Err(format!("expected a name, got {other:?}")),
        }
    };
    let sym = |i: &mut usize, c: char| -> Result<(), String> {
        match t.get(*i) {
            Some(Tok::Sym(x)) if *x == c => {
                *i += 1;
                Ok(())
            }
            other => Err(format!("expected '{c}', got {other:?}")),
        }
    };
    let value = |i: &mut usize| -> Result<String, String> {
        match t.get(*i) {
            Some(Tok::Str(s)) => {
                *i += 1;
                Ok(s.clone())
            }
            Some(Tok::Word(w)) if w.bytes().all(|b| b.is_ascii_digit()) => {
                *i += 1;
                Ok(w.clone())
            }
            other => Err(format!("expected a literal, got {other:?}")),
        }
    };
    match t.first() {
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("select") => {
            i += 1;
            sym(&mut i, '*')?;
            word(&mut i, "from")?;
            let class = ident(&mut i)?;
            let mut conds = Vec::new();
            if i < t.len() {
                word(&mut i, "where")?;
                loop {
                    let p = ident(&mut i)?;
                    sym(&mut i, '=')?;
                    conds.push((p, value(&mut i)?));
                    if i == t.len() {
                        break;
                    }
                    word(&mut i, "and")?;
                }
            }
            Ok(Query::Select { class, conds })
        }
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("associators") => {
            i += 1;
            word(&mut i, "of")?;
            sym(&mut i, '{')?;
            let class = ident(&mut i)?;
            sym(&mut i, '.')?;
            let mut keys = Vec::new();
            loop {
                let k = ident(&mut i)?;
                sym(&mut i, '=')?;
                keys.push((k, value(&mut i)?));
                if sym(&mut i, ',').is_err() {
                    break;
                }
            }
            sym(&mut i, '}')?;
            word(&mut i, "where")?;
            let (mut assoc, mut result) = (String::new(), String::new());
            while i < t.len() {
                let k = ident(&mut i)?;
                sym(&mut i, '=')?;
                let v = ident(&mut i)?;
                match k.to_ascii_lowercase().as_str() {
                    "assocclass" => assoc = v,
                    "resultclass" => result = v,
                    _ => return Err(format!("unknown associators clause {k}")),
                }
            }
            Ok(Query::Associators {
                class,
                keys,
                assoc,
                result,
            })
        }
        other => Err(format!(
            "a WQL query starts with SELECT or ASSOCIATORS, not {other:?}"
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Instances (properties from Microsoft's class documentation)

#[derive(Debug, Clone)]
enum V {
    S(String),
    Nil,
    A(Vec<String>),
    Dt(String),
}

struct Inst {
    class: &'static str,
    ns: &'static str,
    props: Vec<(&'static str, V)>,
}

impl Inst {
    fn get(&self, p: &str) -> Option<&str> {
        self.props.iter().find_map(|(k, v)| match v {
            V::S(s) if k.eq_ignore_ascii_case(p) => Some(s.as_str()),
            _ => None,
        })
    }

    fn xml(&self) -> String {
        let uri = format!("{WMI}{}/{}", self.ns, self.class);
        let mut s = format!(
            "<p:{c} xmlns:p=\"{uri}\" xmlns:xsi=\"{XSI}\" xmlns:cim=\"{CIM}\" xsi:type=\"p:{c}_Type\">",
            c = self.class
        );
        for (k, v) in &self.props {
            match v {
                V::S(x) => s.push_str(&format!("<p:{k}>{}</p:{k}>", esc(x))),
                V::Nil => s.push_str(&format!("<p:{k} xsi:nil=\"true\"/>")),
                V::A(xs) => {
                    for x in xs {
                        s.push_str(&format!("<p:{k}>{}</p:{k}>", esc(x)));
                    }
                }
                V::Dt(x) => s.push_str(&format!("<p:{k}><cim:Datetime>{x}</cim:Datetime></p:{k}>")),
            }
        }
        s.push_str(&format!("</p:{}>", self.class));
        s
    }
}

fn s(v: impl ToString) -> V {
    V::S(v.to_string())
}

fn cs_inst(vm: &FakeVm) -> Inst {
    Inst {
        class: "Msvm_ComputerSystem",
        ns: V2,
        props: vec![
            ("Caption", s("Virtual Machine")),
            ("Description", s("Microsoft Virtual Machine")),
            ("ElementName", s(&vm.name)),
            ("InstallDate", V::Dt("2024-03-01T10:00:00Z".into())),
            ("OperationalStatus", V::A(vec!["2".into()])),
            ("HealthState", s(5)),
            ("EnabledState", s(vm.enabled)),
            ("RequestedState", s(12)),
            ("EnabledDefault", s(2)),
            ("Name", s(&vm.guid)),
            ("CreationClassName", s("Msvm_ComputerSystem")),
            ("NumberOfNumaNodes", s(1)),
            ("ProcessID", vm.pid.map(s).unwrap_or(V::Nil)),
            (
                "OnTimeInMilliseconds",
                s(if vm.pid.is_some() { 123456 } else { 0 }),
            ),
        ],
    }
}

fn host_inst() -> Inst {
    Inst {
        class: "Msvm_ComputerSystem",
        ns: V2,
        props: vec![
            ("Caption", s("Hosting Computer System")),
            ("Description", s("Microsoft Hosting Computer System")),
            ("ElementName", s(HOST_NAME)),
            ("EnabledState", s(2)),
            ("Name", s(HOST_NAME)),
            ("CreationClassName", s("Msvm_ComputerSystem")),
            ("ProcessID", V::Nil),
        ],
    }
}

fn vssd_inst(vm: &FakeVm) -> Inst {
    Inst {
        class: "Msvm_VirtualSystemSettingData",
        ns: V2,
        props: vec![
            ("InstanceID", s(format!("Microsoft:{}", vm.guid))),
            ("Caption", s("Virtual Machine Settings")),
            ("ElementName", s(&vm.name)),
            ("VirtualSystemIdentifier", s(&vm.guid)),
            ("VirtualSystemType", s("Microsoft:Hyper-V:System:Realized")),
            (
                "VirtualSystemSubType",
                s(format!("Microsoft:Hyper-V:SubType:{}", vm.generation)),
            ),
            ("Notes", V::A(vm.notes.clone())),
            ("AutomaticStartupAction", s(vm.autostart)),
            ("AutomaticStopAction", s(3)),
            ("ConfigurationID", s(&vm.guid)),
            ("Version", s("9.0")),
        ],
    }
}

fn proc_inst(vm: &FakeVm) -> Inst {
    Inst {
        class: "Msvm_ProcessorSettingData",
        ns: V2,
        props: vec![
            ("InstanceID", s(vm.proc_id())),
            ("Caption", s("Processor")),
            ("ElementName", s("Processor")),
            ("ResourceType", s(3)),
            ("ResourceSubType", s("Microsoft:Hyper-V:Processor")),
            ("AllocationUnits", s("percent / 1000")),
            ("VirtualQuantity", s(vm.vcpus)),
            ("Reservation", s(0)),
            ("Limit", s(100000)),
            ("Weight", s(100)),
        ],
    }
}

fn mem_inst(vm: &FakeVm) -> Inst {
    Inst {
        class: "Msvm_MemorySettingData",
        ns: V2,
        props: vec![
            ("InstanceID", s(vm.mem_id())),
            ("Caption", s("Memory")),
            ("ElementName", s("Memory")),
            ("ResourceType", s(4)),
            ("ResourceSubType", s("Microsoft:Hyper-V:Memory")),
            ("AllocationUnits", s("byte * 2^20")),
            ("VirtualQuantity", s(vm.mem_mb)),
            ("Reservation", s(vm.mem_mb)),
            ("Limit", s(vm.limit_mb)),
            ("DynamicMemoryEnabled", s(vm.limit_mb != vm.mem_mb)),
        ],
    }
}

/// A WMI object path to an instance by its InstanceID (backslashes and quotes escaped).
fn object_path(class: &str, id: &str) -> String {
    format!(
        "\\\\{HOST_NAME}\\root\\virtualization\\v2:{class}.InstanceID=\"{}\"",
        id.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

fn switch_path() -> String {
    format!(
        "\\\\{HOST_NAME}\\root\\virtualization\\v2:Msvm_VirtualEthernetSwitch.CreationClassName=\"Msvm_VirtualEthernetSwitch\",Name=\"{SWITCH}\""
    )
}

fn switch_inst() -> Inst {
    Inst {
        class: "Msvm_VirtualEthernetSwitch",
        ns: V2,
        props: vec![
            ("Caption", s("Virtual Switch")),
            ("ElementName", s("External Switch")),
            ("CreationClassName", s("Msvm_VirtualEthernetSwitch")),
            ("Name", s(SWITCH)),
            ("EnabledState", s(2)),
        ],
    }
}

/// The controllers, drives, images, NICs and connections of a VM (classes
/// Msvm_ResourceAllocationSettingData, Msvm_StorageAllocationSettingData,
/// Msvm_SyntheticEthernetPortSettingData, Msvm_EthernetPortAllocationSettingData).
fn device_insts(vm: &FakeVm, class: &str) -> Vec<Inst> {
    let g = &vm.guid;
    let rasd = "Msvm_ResourceAllocationSettingData";
    let ctl_id = |d: &FakeDisk| match d.ide {
        Some(n) => format!("Microsoft:{g}\\83F8638B-8DCA-4152-9EDA-2CA8B33039B4\\{n}"),
        None => format!("Microsoft:{g}\\D422512D-2BF2-4752-809D-7B82B5FCB1B4\\0"),
    };
    let drive_id = |d: &FakeDisk| format!("{}\\{}\\D", ctl_id(d), d.slot);
    let mut out = Vec::new();
    match class {
        "Msvm_ResourceAllocationSettingData" => {
            let mut ctls: Vec<String> = Vec::new();
            for d in &vm.disks {
                let c = ctl_id(d);
                if !ctls.contains(&c) {
                    ctls.push(c.clone());
                    out.push(Inst {
                        class: "Msvm_ResourceAllocationSettingData",
                        ns: V2,
                        props: match d.ide {
                            Some(n) => vec![
                                ("InstanceID", s(&c)),
                                ("ElementName", s(format!("IDE Controller {n}"))),
                                ("ResourceType", s(5)),
                                (
                                    "ResourceSubType",
                                    s("Microsoft:Hyper-V:Emulated IDE Controller"),
                                ),
                                ("Address", s(n)),
                                ("Parent", V::Nil),
                                ("AddressOnParent", V::Nil),
                            ],
                            None => vec![
                                ("InstanceID", s(&c)),
                                ("ElementName", s("SCSI Controller")),
                                ("ResourceType", s(6)),
                                (
                                    "ResourceSubType",
                                    s("Microsoft:Hyper-V:Synthetic SCSI Controller"),
                                ),
                                ("Address", V::Nil),
                                ("Parent", V::Nil),
                                ("AddressOnParent", V::Nil),
                            ],
                        },
                    });
                }
                out.push(Inst {
                    class: "Msvm_ResourceAllocationSettingData",
                    ns: V2,
                    props: vec![
                        ("InstanceID", s(drive_id(d))),
                        (
                            "ElementName",
                            s(if d.dvd { "DVD Drive" } else { "Hard Drive" }),
                        ),
                        ("ResourceType", s(if d.dvd { 16 } else { 17 })),
                        (
                            "ResourceSubType",
                            s(if d.dvd {
                                "Microsoft:Hyper-V:Synthetic DVD Drive"
                            } else {
                                "Microsoft:Hyper-V:Synthetic Disk Drive"
                            }),
                        ),
                        ("Parent", s(object_path(rasd, &c))),
                        ("AddressOnParent", s(d.slot)),
                    ],
                });
            }
        }
        "Msvm_StorageAllocationSettingData" => {
            for d in &vm.disks {
                out.push(Inst {
                    class: "Msvm_StorageAllocationSettingData",
                    ns: V2,
                    props: vec![
                        ("InstanceID", s(format!("{}\\L", drive_id(d)))),
                        (
                            "ElementName",
                            s(if d.dvd {
                                "ISO Disk Image"
                            } else {
                                "Hard Disk Image"
                            }),
                        ),
                        ("ResourceType", s(if d.dvd { 16 } else { 31 })),
                        (
                            "ResourceSubType",
                            s(if d.dvd {
                                "Microsoft:Hyper-V:Virtual CD/DVD Disk"
                            } else {
                                "Microsoft:Hyper-V:Virtual Hard Disk"
                            }),
                        ),
                        ("HostResource", V::A(vec![d.path.clone()])),
                        ("Parent", s(object_path(rasd, &drive_id(d)))),
                    ],
                });
            }
        }
        "Msvm_SyntheticEthernetPortSettingData" => {
            for (i, (mac, _)) in vm.nics.iter().enumerate() {
                out.push(Inst {
                    class: "Msvm_SyntheticEthernetPortSettingData",
                    ns: V2,
                    props: vec![
                        ("InstanceID", s(format!("Microsoft:{g}\\NIC-{i}"))),
                        ("ElementName", s("Network Adapter")),
                        ("ResourceType", s(10)),
                        (
                            "ResourceSubType",
                            s("Microsoft:Hyper-V:Synthetic Ethernet Port"),
                        ),
                        ("Address", s(mac)),
                        ("StaticMacAddress", s(false)),
                    ],
                });
            }
        }
        "Msvm_EthernetPortAllocationSettingData" => {
            for (i, (_, connected)) in vm.nics.iter().enumerate() {
                if !connected {
                    continue;
                }
                let port = format!("Microsoft:{g}\\NIC-{i}");
                out.push(Inst {
                    class: "Msvm_EthernetPortAllocationSettingData",
                    ns: V2,
                    props: vec![
                        ("InstanceID", s(format!("{port}\\C"))),
                        ("ElementName", s("Dynamic Ethernet Switch Port")),
                        ("ResourceType", s(33)),
                        (
                            "ResourceSubType",
                            s("Microsoft:Hyper-V:Ethernet Connection"),
                        ),
                        (
                            "Parent",
                            s(object_path("Msvm_SyntheticEthernetPortSettingData", &port)),
                        ),
                        ("HostResource", V::A(vec![switch_path()])),
                        ("EnabledState", s(2)),
                    ],
                });
            }
        }
        _ => {}
    }
    out
}

fn shutdown_inst(vm: &FakeVm) -> Inst {
    Inst {
        class: "Msvm_ShutdownComponent",
        ns: V2,
        props: vec![
            ("Caption", s("Shutdown")),
            ("ElementName", s("Shutdown")),
            ("EnabledState", s(2)),
            ("SystemCreationClassName", s("Msvm_ComputerSystem")),
            ("SystemName", s(&vm.guid)),
            ("CreationClassName", s("Msvm_ShutdownComponent")),
            (
                "DeviceID",
                s(format!(
                    "Microsoft:{}\\9F8233AC-BE49-4C79-8EE3-E7E1985B2077",
                    vm.guid
                )),
            ),
        ],
    }
}

fn service_inst() -> Inst {
    Inst {
        class: "Msvm_VirtualSystemManagementService",
        ns: V2,
        props: vec![
            ("Caption", s("Virtual System Management Service")),
            ("ElementName", s("Virtual System Management Service")),
            ("EnabledState", s(2)),
            (
                "CreationClassName",
                s("Msvm_VirtualSystemManagementService"),
            ),
            ("Name", s("vmms")),
            ("SystemCreationClassName", s("Msvm_ComputerSystem")),
            ("SystemName", s(HOST_NAME)),
            ("Started", s(true)),
        ],
    }
}

fn win32(class: &str) -> Vec<Inst> {
    match class {
        "Win32_ComputerSystem" => vec![Inst {
            class: "Win32_ComputerSystem",
            ns: CIMV2,
            props: vec![
                ("Name", s(HOST_NAME)),
                ("DNSHostName", s("hv01")),
                ("Domain", s("lab.example")),
                ("Manufacturer", s("Contoso")),
                ("Model", s("R740")),
                ("NumberOfProcessors", s(2)),
                ("NumberOfLogicalProcessors", s(32)),
                ("TotalPhysicalMemory", s(68_602_523_648u64)),
            ],
        }],
        "Win32_Processor" => ["CPU0", "CPU1"]
            .into_iter()
            .map(|id| Inst {
                class: "Win32_Processor",
                ns: CIMV2,
                props: vec![
                    ("DeviceID", s(id)),
                    ("Name", s("Intel(R) Xeon(R) CPU E5-2640 v3 @ 2.60GHz")),
                    ("Manufacturer", s("GenuineIntel")),
                    ("Architecture", s(9)),
                    ("MaxClockSpeed", s(2600)),
                    ("NumberOfCores", s(8)),
                    ("NumberOfLogicalProcessors", s(16)),
                ],
            })
            .collect(),
        "Win32_OperatingSystem" => vec![Inst {
            class: "Win32_OperatingSystem",
            ns: CIMV2,
            props: vec![
                ("Caption", s("Microsoft Windows Server 2019 Datacenter")),
                ("Version", s("10.0.17763")),
                ("BuildNumber", s("17763")),
                ("CSName", s(HOST_NAME)),
            ],
        }],
        _ => Vec::new(),
    }
}

fn job_inst(id: &str, state: u16, j: &Job) -> Inst {
    Inst {
        class: "Msvm_ConcreteJob",
        ns: V2,
        props: vec![
            ("InstanceID", s(id)),
            ("Caption", s("Job")),
            ("JobState", s(state)),
            ("PercentComplete", s(if state == 7 { 100 } else { 50 })),
            ("ErrorCode", s(j.code)),
            ("ErrorDescription", s(&j.description)),
            ("ErrorSummaryDescription", s(&j.summary)),
            ("JobType", s(1)),
        ],
    }
}

// ---------------------------------------------------------------------------------------
// The actions

fn wmi_class<'a>(ruri: &'a str, ns: &str) -> Option<&'a str> {
    ruri.strip_prefix(WMI)?.strip_prefix(ns)?.strip_prefix('/')
}

fn dispatch(st: &mut State, r: &Req) -> Answer {
    match r.action.as_str() {
        ENUMERATE => enumerate(st, r),
        PULL => pull(st, r),
        RELEASE => {
            st.log.push("Release".into());
            Ok((format!("{RELEASE}Response"), String::new()))
        }
        GET => get(st, r),
        a if a.starts_with(WMI) => invoke(st, r),
        a => Err(violation(format!("unknown wsa:Action '{a}'"))),
    }
}

fn select(st: &mut State, ns: &str, q: &Query) -> Result<Vec<Inst>, Fault> {
    let (all, conds): (Vec<Inst>, &[(String, String)]) = match q {
        Query::Select { class, conds } => {
            let all = match (ns, class.as_str()) {
                (V2, "Msvm_ComputerSystem") => {
                    let mut v: Vec<Inst> = st.vms.iter().map(cs_inst).collect();
                    v.insert(0, host_inst());
                    v
                }
                (V2, "Msvm_VirtualSystemManagementService") => vec![service_inst()],
                (V2, "Msvm_ShutdownComponent") => st
                    .vms
                    .iter()
                    .filter(|v| v.enabled == 2)
                    .map(shutdown_inst)
                    .collect(),
                (V2, "Msvm_VirtualSystemSettingData") => st.vms.iter().map(vssd_inst).collect(),
                (V2, "Msvm_VirtualEthernetSwitch") => vec![switch_inst()],
                (CIMV2, c) if c.starts_with("Win32_") => win32(c),
                (_, c) => {
                    return Err(Fault {
                        code: "s:Sender",
                        subcode: "w:CannotProcessFilter",
                        reason: format!("invalid class '{c}' in namespace {ns}"),
                        message: "Invalid class".into(),
                    });
                }
            };
            (all, conds.as_slice())
        }
        Query::Associators {
            class,
            keys,
            assoc,
            result,
        } => {
            let key = |k: &str| {
                keys.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let out = match (class.as_str(), assoc.as_str(), result.as_str()) {
                (
                    "Msvm_ComputerSystem",
                    "Msvm_SettingsDefineState",
                    "Msvm_VirtualSystemSettingData",
                ) => {
                    if key("CreationClassName") != "Msvm_ComputerSystem" {
                        return Err(violation("object path without CreationClassName"));
                    }
                    let g = key("Name");
                    st.vms
                        .iter()
                        .filter(|v| v.guid.eq_ignore_ascii_case(&g))
                        .map(vssd_inst)
                        .collect()
                }
                (
                    "Msvm_VirtualSystemSettingData",
                    "Msvm_VirtualSystemSettingDataComponent",
                    rc @ ("Msvm_ProcessorSettingData"
                    | "Msvm_MemorySettingData"
                    | "Msvm_ResourceAllocationSettingData"
                    | "Msvm_StorageAllocationSettingData"
                    | "Msvm_SyntheticEthernetPortSettingData"
                    | "Msvm_EmulatedEthernetPortSettingData"
                    | "Msvm_EthernetPortAllocationSettingData"),
                ) => {
                    let id = key("InstanceID");
                    st.vms
                        .iter()
                        .filter(|v| format!("Microsoft:{}", v.guid).eq_ignore_ascii_case(&id))
                        .flat_map(|v| match rc {
                            "Msvm_ProcessorSettingData" => vec![proc_inst(v)],
                            "Msvm_MemorySettingData" => vec![mem_inst(v)],
                            other => device_insts(v, other),
                        })
                        .collect()
                }
                other => {
                    return Err(violation(format!(
                        "association the WMI provider does not define: {other:?}"
                    )));
                }
            };
            (out, &[])
        }
    };
    for (k, _) in conds {
        if !all.is_empty() && !all[0].props.iter().any(|(p, _)| p.eq_ignore_ascii_case(k)) {
            return Err(Fault {
                code: "s:Sender",
                subcode: "w:CannotProcessFilter",
                reason: format!("invalid query: no property {k}"),
                message: "Invalid query".into(),
            });
        }
    }
    let picked: Vec<Inst> = all
        .into_iter()
        .filter(|i| {
            conds
                .iter()
                .all(|(k, v)| i.get(k).is_some_and(|x| x.eq_ignore_ascii_case(v)))
        })
        .collect();
    // a stopping VM turns off after it was seen stopping
    if matches!(q, Query::Select { class, .. } if class == "Msvm_ComputerSystem") {
        for vm in st.vms.iter_mut().filter(|v| v.enabled == 32774) {
            if vm.stopping_reads == 0 {
                vm.enabled = 3;
                vm.pid = None;
            } else {
                vm.stopping_reads -= 1;
            }
        }
    }
    Ok(picked)
}

fn page(
    st: &mut State,
    ruri: &str,
    mut items: Vec<String>,
    max: usize,
) -> (Option<String>, Vec<String>) {
    let n = max.min(st.page).min(items.len());
    let rest = items.split_off(n);
    if rest.is_empty() {
        (None, items)
    } else {
        let ctx = format!(
            "uuid:{}",
            uuid::Uuid::new_v4().hyphenated().to_string().to_uppercase()
        );
        st.enums.insert(ctx.clone(), (ruri.to_string(), rest));
        (Some(ctx), items)
    }
}

fn enumerate(st: &mut State, r: &Req) -> Answer {
    if !r.selectors.is_empty() {
        return Err(violation("Enumerate with a SelectorSet and a WQL filter"));
    }
    let ns = [V2, CIMV2]
        .into_iter()
        .find(|ns| r.resource_uri == format!("{WMI}{ns}/*"))
        .ok_or_else(|| {
            violation(format!(
                "a WQL enumeration needs the resource URI {WMI}NAMESPACE/*, got '{}'",
                r.resource_uri
            ))
        })?;
    let e = r
        .body
        .find(WSEN, "Enumerate")
        .ok_or_else(|| violation("Enumerate action without a wsen:Enumerate body"))?;
    let optimize = e.find(WSMAN, "OptimizeEnumeration").is_some();
    let max = match e.find(WSMAN, "MaxElements") {
        Some(m) => {
            if !optimize {
                return Err(violation(
                    "wsman:MaxElements without wsman:OptimizeEnumeration",
                ));
            }
            m.trimmed()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| violation(format!("wsman:MaxElements '{}'", m.trimmed())))?
        }
        None => 1,
    };
    let f = e
        .find(WSMAN, "Filter")
        .ok_or_else(|| violation("Enumerate without a wsman:Filter"))?;
    if f.attr("", "Dialect") != Some(WQL) {
        return Err(violation(format!(
            "wsman:Filter Dialect is {:?}, expected {WQL}",
            f.attr("", "Dialect")
        )));
    }
    let wql = f.trimmed().to_string();
    let q = parse_wql(&wql).map_err(|e| violation(format!("malformed WQL '{wql}': {e}")))?;
    st.log.push(format!("Enumerate {wql}"));
    let items: Vec<String> = select(st, ns, &q)?.iter().map(Inst::xml).collect();
    let (ctx, first) = if optimize {
        page(st, &r.resource_uri, items, max)
    } else {
        // not optimized: everything comes with Pulls
        let ctx = format!(
            "uuid:{}",
            uuid::Uuid::new_v4().hyphenated().to_string().to_uppercase()
        );
        st.enums
            .insert(ctx.clone(), (r.resource_uri.clone(), items));
        (Some(ctx), Vec::new())
    };
    let mut body = String::from("<n:EnumerateResponse>");
    if let Some(c) = &ctx {
        body.push_str(&format!("<n:EnumerationContext>{c}</n:EnumerationContext>"));
    }
    if optimize {
        body.push_str("<w:Items>");
        body.push_str(&first.concat());
        body.push_str("</w:Items>");
        if ctx.is_none() {
            body.push_str("<w:EndOfSequence/>");
        }
    }
    body.push_str("</n:EnumerateResponse>");
    Ok((format!("{ENUMERATE}Response"), body))
}

fn pull(st: &mut State, r: &Req) -> Answer {
    let p = r
        .body
        .find(WSEN, "Pull")
        .ok_or_else(|| violation("Pull action without a wsen:Pull body"))?;
    let ctx = p
        .find(WSEN, "EnumerationContext")
        .map(|c| c.trimmed().to_string())
        .ok_or_else(|| violation("Pull without wsen:EnumerationContext"))?;
    let max = match p.find(WSEN, "MaxElements") {
        Some(m) => m
            .trimmed()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| violation(format!("wsen:MaxElements '{}'", m.trimmed())))?,
        None => 1,
    };
    let (ruri, items) = st.enums.remove(&ctx).ok_or_else(|| {
        violation(format!(
            "Pull with an EnumerationContext the server did not issue or already ended: '{ctx}'"
        ))
    })?;
    if ruri != r.resource_uri {
        return Err(violation(
            "Pull on a resource URI other than its Enumerate's",
        ));
    }
    st.log.push("Pull".into());
    let (next, items) = page(st, &ruri, items, max);
    let mut body = String::from("<n:PullResponse>");
    if let Some(c) = &next {
        body.push_str(&format!("<n:EnumerationContext>{c}</n:EnumerationContext>"));
    }
    body.push_str("<n:Items>");
    body.push_str(&items.concat());
    body.push_str("</n:Items>");
    if next.is_none() {
        body.push_str("<n:EndOfSequence/>");
    }
    body.push_str("</n:PullResponse>");
    Ok((format!("{PULL}Response"), body))
}

fn selector<'a>(r: &'a Req, k: &str) -> Option<&'a str> {
    r.selectors
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(k))
        .map(|(_, v)| v.as_str())
}

fn get(st: &mut State, r: &Req) -> Answer {
    if !r.body.children.is_empty() || !r.body.trimmed().is_empty() {
        return Err(violation("WS-Transfer Get with a non-empty body"));
    }
    if r.selectors.is_empty() {
        return Err(violation(
            "WS-Transfer Get of a WMI instance without selectors",
        ));
    }
    let class = wmi_class(&r.resource_uri, V2)
        .ok_or_else(|| violation(format!("Get of '{}'", r.resource_uri)))?;
    st.log.push(format!("Get {class}"));
    match class {
        "Msvm_ConcreteJob" => {
            let id = selector(r, "InstanceID")
                .ok_or_else(|| violation("Get of a job without its InstanceID selector"))?
                .to_string();
            let j = st.jobs.get_mut(&id).ok_or_else(|| Fault {
                code: "s:Sender",
                subcode: "w:InvalidSelectors",
                reason: "The WS-Management service cannot process the request because the request contained invalid selectors for the resource.".into(),
                message: String::new(),
            })?;
            let state = j.states[j.reads.min(j.states.len() - 1)];
            j.reads += 1;
            Ok((format!("{GET}Response"), job_inst(&id, state, j).xml()))
        }
        "Msvm_ComputerSystem" => {
            let g = selector(r, "Name").unwrap_or("");
            let vm = st
                .vms
                .iter()
                .find(|v| v.guid.eq_ignore_ascii_case(g))
                .ok_or_else(|| Fault {
                    code: "s:Sender",
                    subcode: "w:InvalidSelectors",
                    reason: "no such instance".into(),
                    message: String::new(),
                })?;
            Ok((format!("{GET}Response"), cs_inst(vm).xml()))
        }
        c => Err(violation(format!(
            "Get of class {c} the fake does not serve"
        ))),
    }
}

/// An embedded instance parameter: CIM-XML `<INSTANCE CLASSNAME=…>` with typed
/// `<PROPERTY NAME=… TYPE=…><VALUE>…</VALUE></PROPERTY>`s.
fn embedded(text: &str) -> Result<(String, HashMap<String, String>), Fault> {
    let x = xml::parse(text)
        .map_err(|e| violation(format!("embedded instance is not XML: {e}: {text}")))?;
    if x.name != "INSTANCE" {
        return Err(violation(format!("embedded instance root is <{}>", x.name)));
    }
    let class = x
        .attr("", "CLASSNAME")
        .ok_or_else(|| violation("INSTANCE without CLASSNAME"))?
        .to_string();
    let mut props = HashMap::new();
    for p in &x.children {
        if p.name != "PROPERTY" {
            return Err(violation(format!("<{}> inside INSTANCE", p.name)));
        }
        let name = p
            .attr("", "NAME")
            .ok_or_else(|| violation("PROPERTY without NAME"))?;
        let ty = p.attr("", "TYPE").unwrap_or("");
        if ![
            "string", "boolean", "uint8", "uint16", "uint32", "uint64", "sint8", "sint16",
            "sint32", "sint64", "datetime", "real32", "real64", "char16",
        ]
        .contains(&ty)
        {
            return Err(violation(format!("PROPERTY {name} has CIM type '{ty}'")));
        }
        let v = p
            .find("", "VALUE")
            .map(|v| v.text.clone())
            .unwrap_or_default();
        if ty.starts_with("uint") && v.parse::<u64>().is_err() {
            return Err(violation(format!("PROPERTY {name} ({ty}) has value '{v}'")));
        }
        if ty == "boolean" && v != "true" && v != "false" {
            return Err(violation(format!(
                "PROPERTY {name} (boolean) has value '{v}'"
            )));
        }
        props.insert(name.to_string(), v);
    }
    Ok((class, props))
}

fn job_ref(id: &str) -> String {
    format!(
        "<p:Job xmlns:a=\"{WSA}\" xmlns:w=\"{WSMAN}\"><a:Address>{ANON}</a:Address><a:ReferenceParameters><w:ResourceURI>{WMI}{V2}/Msvm_ConcreteJob</w:ResourceURI><w:SelectorSet><w:Selector Name=\"InstanceID\">{id}</w:Selector><w:Selector Name=\"__cimnamespace\">{V2}</w:Selector></w:SelectorSet></a:ReferenceParameters></p:Job>"
    )
}

/// Starts a job; `false` when the test asked it to fail (the change is then not made).
fn new_job(st: &mut State) -> (String, bool) {
    let id = uuid::Uuid::new_v4().hyphenated().to_string().to_uppercase();
    let (states, code, description, summary, ok) = match st.fail_next_job.take() {
        Some((code, d)) => (vec![4, 10], code, d.clone(), d, false),
        None if std::mem::take(&mut st.hang_next_job) => {
            (vec![4], 0, String::new(), String::new(), false)
        }
        None => (vec![4, 7], 0, String::new(), String::new(), true),
    };
    st.jobs.insert(
        id.clone(),
        Job {
            states,
            reads: 0,
            code,
            description,
            summary,
        },
    );
    (id, ok)
}

fn output(ruri: &str, method: &str, inner: &str, rv: u32) -> (String, String) {
    (
        format!("{ruri}/{method}Response"),
        format!(
            "<p:{method}_OUTPUT xmlns:p=\"{ruri}\">{inner}<p:ReturnValue>{rv}</p:ReturnValue></p:{method}_OUTPUT>"
        ),
    )
}

fn invoke(st: &mut State, r: &Req) -> Answer {
    let ruri = r.resource_uri.as_str();
    let method = r
        .action
        .strip_prefix(ruri)
        .and_then(|m| m.strip_prefix('/'))
        .filter(|m| !m.is_empty() && !m.contains('/'))
        .ok_or_else(|| {
            violation(format!(
                "custom action '{}' is not the resource URI '{ruri}' followed by /METHOD",
                r.action
            ))
        })?
        .to_string();
    let class = wmi_class(ruri, V2)
        .ok_or_else(|| violation(format!("invoke on '{ruri}'")))?
        .to_string();
    if r.body.children.len() != 1 {
        return Err(violation(
            "a method's body must be one METHOD_INPUT element",
        ));
    }
    let input = &r.body.children[0];
    if !input.is(ruri, &format!("{method}_INPUT")) {
        return Err(violation(format!(
            "body element {{{}}}{}, expected {{{ruri}}}{method}_INPUT",
            input.ns, input.name
        )));
    }
    let mut params: HashMap<String, Vec<&X>> = HashMap::new();
    for p in &input.children {
        if p.ns != ruri {
            return Err(violation(format!(
                "parameter {} outside the class namespace",
                p.name
            )));
        }
        params.entry(p.name.clone()).or_default().push(p);
    }
    let param = |k: &str| {
        params
            .get(k)
            .and_then(|v| v.first())
            .map(|x| x.trimmed().to_string())
    };
    if st.fault_on.as_deref() == Some(method.as_str()) {
        st.log.push(format!("Invoke {class}.{method} (fault)"));
        return Err(Fault {
            code: "s:Receiver",
            subcode: "w:InternalError",
            reason: "The WS-Management service cannot process the request. The WMI service or the WMI provider returned an unknown error: HRESULT 0x80041001".into(),
            message: "Generic failure".into(),
        });
    }
    let no_instance = || {
        Fault {
        code: "s:Sender",
        subcode: "w:InvalidSelectors",
        reason: "The WS-Management service cannot process the request because the request contained invalid selectors for the resource.".into(),
        message: String::new(),
    }
    };
    match (class.as_str(), method.as_str()) {
        ("Msvm_ComputerSystem", "RequestStateChange") => {
            if selector(r, "CreationClassName") != Some("Msvm_ComputerSystem") {
                return Err(violation(
                    "Msvm_ComputerSystem selectors need CreationClassName",
                ));
            }
            let g = selector(r, "Name").unwrap_or("").to_string();
            let req: u16 = param("RequestedState")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| violation("RequestedState is not a uint16"))?;
            st.log.push(format!("Invoke {class}.{method}({req})"));
            let idx = st
                .vms
                .iter()
                .position(|v| v.guid.eq_ignore_ascii_case(&g))
                .ok_or_else(no_instance)?;
            let cur = st.vms[idx].enabled;
            let next = match (req, cur) {
                (2, 3 | 32769 | 6) => 2,
                (2, 32768 | 9) => 2,
                (3, 2 | 32768 | 9 | 32769) => 3,
                (9, 2) => 32768,
                (10 | 11, 2) => 2,
                (6, 2 | 32768) => 32769,
                (2 | 3 | 6 | 9 | 10 | 11, _) => {
                    return Ok(output(ruri, &method, "", 32775));
                }
                _ => return Ok(output(ruri, &method, "", 32773)),
            };
            let (job, ok) = new_job(st);
            if ok {
                let pid = if next == 3 || next == 32769 {
                    None
                } else {
                    st.vms[idx].pid.or_else(|| {
                        st.next_pid += 1;
                        Some(st.next_pid)
                    })
                };
                let vm = &mut st.vms[idx];
                vm.enabled = next;
                vm.pid = pid;
            }
            Ok(output(ruri, &method, &job_ref(&job), 4096))
        }
        ("Msvm_ShutdownComponent", "InitiateShutdown") => {
            for k in [
                "CreationClassName",
                "DeviceID",
                "SystemCreationClassName",
                "SystemName",
            ] {
                if selector(r, k).is_none() {
                    return Err(violation(format!(
                        "Msvm_ShutdownComponent selector {k} missing"
                    )));
                }
            }
            let force = param("Force").unwrap_or_default();
            if force != "true" && force != "false" {
                return Err(violation(format!("Force '{force}' is not an xs:boolean")));
            }
            if param("Reason").is_none() {
                return Err(violation("InitiateShutdown without Reason"));
            }
            st.log.push(format!("Invoke {class}.{method}"));
            let g = selector(r, "SystemName").unwrap_or("").to_string();
            let vm = st
                .vms
                .iter_mut()
                .find(|v| v.guid.eq_ignore_ascii_case(&g))
                .ok_or_else(no_instance)?;
            if selector(r, "DeviceID") != shutdown_inst(vm).get("DeviceID") {
                return Err(no_instance());
            }
            if vm.enabled != 2 {
                return Ok(output(ruri, &method, "", 32775));
            }
            vm.enabled = 32774;
            vm.stopping_reads = 0;
            Ok(output(ruri, &method, "", 0))
        }
        ("Msvm_VirtualSystemManagementService", m) => {
            let svc = service_inst();
            for k in [
                "CreationClassName",
                "Name",
                "SystemCreationClassName",
                "SystemName",
            ] {
                if selector(r, k) != svc.get(k) {
                    return Err(violation(format!(
                        "Msvm_VirtualSystemManagementService selector {k} is {:?}, expected {:?}",
                        selector(r, k),
                        svc.get(k)
                    )));
                }
            }
            match m {
                "DefineSystem" => {
                    let text = param("SystemSettings")
                        .ok_or_else(|| violation("DefineSystem without SystemSettings"))?;
                    let (cl, props) = embedded(&text)?;
                    if cl != "Msvm_VirtualSystemSettingData" {
                        return Err(violation(format!("SystemSettings is a {cl}")));
                    }
                    let name = props
                        .get("ElementName")
                        .cloned()
                        .ok_or_else(|| violation("SystemSettings without ElementName"))?;
                    st.log.push(format!("Invoke {class}.{m}({name})"));
                    let guid = uuid::Uuid::new_v4().hyphenated().to_string().to_uppercase();
                    let (job, ok) = new_job(st);
                    if ok {
                        let mut vm = FakeVm::new(&guid, &name, 3, None);
                        vm.mem_mb = 1024;
                        vm.limit_mb = 1024;
                        vm.vcpus = 1;
                        st.vms.push(vm);
                    }
                    let resulting = format!(
                        "<p:ResultingSystem xmlns:a=\"{WSA}\" xmlns:w=\"{WSMAN}\"><a:Address>{ANON}</a:Address><a:ReferenceParameters><w:ResourceURI>{WMI}{V2}/Msvm_ComputerSystem</w:ResourceURI><w:SelectorSet><w:Selector Name=\"CreationClassName\">Msvm_ComputerSystem</w:Selector><w:Selector Name=\"Name\">{guid}</w:Selector></w:SelectorSet></a:ReferenceParameters></p:ResultingSystem>"
                    );
                    Ok(output(
                        ruri,
                        m,
                        &format!("{}{resulting}", job_ref(&job)),
                        4096,
                    ))
                }
                "ModifyResourceSettings" => {
                    let items = params.get("ResourceSettings").cloned().unwrap_or_default();
                    if items.is_empty() {
                        return Err(violation("ModifyResourceSettings without ResourceSettings"));
                    }
                    let mut changes = Vec::new();
                    for it in items {
                        let (cl, props) = embedded(it.trimmed())?;
                        let id = props.get("InstanceID").cloned().unwrap_or_default();
                        let idx = st
                            .vms
                            .iter()
                            .position(|v| match cl.as_str() {
                                "Msvm_MemorySettingData" => v.mem_id() == id,
                                "Msvm_ProcessorSettingData" => v.proc_id() == id,
                                _ => false,
                            })
                            .ok_or_else(|| violation(format!("{cl} '{id}' is not an instance")))?;
                        changes.push((idx, cl, props));
                    }
                    st.log.push(format!(
                        "Invoke {class}.{m}({})",
                        changes
                            .iter()
                            .map(|c| c.1.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    ));
                    let (job, ok) = new_job(st);
                    if ok {
                        for (idx, cl, props) in changes {
                            let vm = &mut st.vms[idx];
                            let num = |k: &str| props.get(k).and_then(|v| v.parse::<u64>().ok());
                            if cl == "Msvm_MemorySettingData" {
                                if let Some(q) = num("VirtualQuantity") {
                                    vm.mem_mb = q;
                                }
                                if let Some(l) = num("Limit") {
                                    vm.limit_mb = l;
                                }
                            } else if let Some(q) = num("VirtualQuantity") {
                                vm.vcpus = q as u32;
                            }
                        }
                    }
                    Ok(output(ruri, m, &job_ref(&job), 4096))
                }
                "ModifySystemSettings" => {
                    let text = param("SystemSettings")
                        .ok_or_else(|| violation("ModifySystemSettings without SystemSettings"))?;
                    let (cl, props) = embedded(&text)?;
                    if cl != "Msvm_VirtualSystemSettingData" {
                        return Err(violation(format!("SystemSettings is a {cl}")));
                    }
                    let id = props.get("InstanceID").cloned().unwrap_or_default();
                    st.log.push(format!("Invoke {class}.{m}"));
                    let vm = st
                        .vms
                        .iter_mut()
                        .find(|v| format!("Microsoft:{}", v.guid) == id)
                        .ok_or_else(|| violation(format!("no settings '{id}'")))?;
                    if let Some(a) = props
                        .get("AutomaticStartupAction")
                        .and_then(|a| a.parse().ok())
                    {
                        vm.autostart = a;
                    }
                    if let Some(n) = props.get("ElementName") {
                        vm.name = n.clone();
                    }
                    Ok(output(ruri, m, "", 0))
                }
                "DestroySystem" => {
                    let a = params
                        .get("AffectedSystem")
                        .and_then(|v| v.first())
                        .ok_or_else(|| violation("DestroySystem without AffectedSystem"))?;
                    if a.find(WSA, "Address").is_none() {
                        return Err(violation("AffectedSystem reference without wsa:Address"));
                    }
                    let rp = a.find(WSA, "ReferenceParameters").ok_or_else(|| {
                        violation("AffectedSystem without wsa:ReferenceParameters")
                    })?;
                    let ru = rp
                        .find(WSMAN, "ResourceURI")
                        .map(|x| x.trimmed().to_string());
                    if ru.as_deref() != Some(&format!("{WMI}{V2}/Msvm_ComputerSystem")) {
                        return Err(violation(format!("AffectedSystem ResourceURI {ru:?}")));
                    }
                    let g = rp
                        .find(WSMAN, "SelectorSet")
                        .into_iter()
                        .flat_map(|s| s.all(WSMAN, "Selector"))
                        .find(|s| s.attr("", "Name") == Some("Name"))
                        .map(|s| s.trimmed().to_string())
                        .ok_or_else(|| violation("AffectedSystem without a Name selector"))?;
                    st.log.push(format!("Invoke {class}.{m}"));
                    let idx = st
                        .vms
                        .iter()
                        .position(|v| v.guid.eq_ignore_ascii_case(&g))
                        .ok_or_else(no_instance)?;
                    if st.vms[idx].enabled != 3 && st.vms[idx].enabled != 32769 {
                        return Ok(output(ruri, m, "", 32775));
                    }
                    let (job, ok) = new_job(st);
                    if ok {
                        st.vms.remove(idx);
                    }
                    Ok(output(ruri, m, &job_ref(&job), 4096))
                }
                other => Err(violation(format!("method {other} the fake does not serve"))),
            }
        }
        (c, m) => Err(violation(format!("method {c}.{m} the fake does not serve"))),
    }
}

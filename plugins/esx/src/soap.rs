//! The SOAP transport of the vSphere API (`urn:vim25`): envelopes written with quick-xml,
//! responses parsed into a small namespace-stripped tree ([`Node`]), the session cookie
//! (`vmware_soap_session`) kept, faults turned into [`SoapError::Fault`].
//!
//! Parsing is tolerant: element names lose their prefixes, and the `xsi:type` of a value is
//! read whatever prefix the server bound the schema-instance namespace to (real ESX writes
//! `xsi:type`, vcsim `XMLSchema-instance:type`) and is absent where the server omits it.

use quick_xml::{
    Writer,
    events::{BytesEnd, BytesStart, BytesText, Event},
};
use std::sync::Mutex;
use std::time::Duration;

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
pub enum SoapError {
    #[error("http request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("http {status} from {url}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("malformed soap response: {0}")]
    Malformed(String),
    #[error("{fault}: {message}")]
    Fault { fault: String, message: String },
    #[error("writing a soap request: {0}")]
    Write(String),
}

impl SoapError {
    /// The vSphere fault type (`NotAuthenticated`, `InvalidPowerState`...), if a fault.
    pub fn fault(&self) -> Option<&str> {
        match self {
            SoapError::Fault { fault, .. } => Some(fault),
            _ => None,
        }
    }
}

/// One element of a response: local name, attributes by local name, `xsi:type`, text and
/// children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub xsi_type: Option<String>,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The text of the child `name`, trimmed.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// The descendant along `path` (`a/b/c`).
    pub fn path(&self, path: &str) -> Option<&Node> {
        path.split('/').try_fold(self, |n, p| n.child(p))
    }

    /// This node as a managed-object reference (`<x type="T">value</x>`).
    pub fn moref(&self) -> Option<MoRef> {
        Some(MoRef {
            kind: self.attr("type")?.to_string(),
            value: self.text.trim().to_string(),
        })
    }
}

fn local(name: &str) -> (Option<String>, String) {
    match name.split_once(':') {
        Some((p, l)) => (Some(p.to_string()), l.to_string()),
        None => (None, name.to_string()),
    }
}

/// The text of an entity reference (`lt`, `#xA`...); empty where unknown.
fn entity(name: &str) -> String {
    match name {
        "lt" => "<".into(),
        "gt" => ">".into(),
        "amp" => "&".into(),
        "quot" => "\"".into(),
        "apos" => "'".into(),
        other => other
            .strip_prefix("#x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .or_else(|| other.strip_prefix('#').and_then(|d| d.parse().ok()))
            .and_then(char::from_u32)
            .map(String::from)
            .unwrap_or_default(),
    }
}

/// Resolves the entity references of an attribute value.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(';') {
            Some(end) => {
                out.push_str(&entity(&after[..end]));
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses a response document into a tree (the root is the document element).
pub fn parse(xml: &str) -> Result<Node, SoapError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let open = |e: &BytesStart<'_>| -> Result<Node, SoapError> {
        let mut n = Node {
            name: local(e.name().as_ref()).1,
            ..Node::default()
        };
        for a in e.attributes() {
            let a = a.map_err(|e| SoapError::Malformed(e.to_string()))?;
            let (prefix, key) = local(a.key.as_ref());
            if prefix.as_deref() == Some("xmlns") || key == "xmlns" && prefix.is_none() {
                continue;
            }
            let raw: &str = &a.value;
            let v = unescape(raw);
            if prefix.is_some() && key == "type" {
                // xsi:type under whatever prefix; the value's own prefix (xsd:) goes
                n.xsi_type = Some(local(&v).1);
            } else {
                n.attrs.push((key, v));
            }
        }
        Ok(n)
    };
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| SoapError::Malformed(e.to_string()))?;
        match ev {
            Event::Start(e) => stack.push(open(&e)?),
            Event::Empty(e) => {
                let n = open(&e)?;
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None => root = Some(n),
                }
            }
            Event::End(_) => {
                let n = stack
                    .pop()
                    .ok_or_else(|| SoapError::Malformed("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None => root = Some(n),
                }
            }
            Event::Text(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&t.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&entity(&r.xml10_content()));
                }
            }
            Event::CData(c) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&c.xml10_content());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    root.ok_or_else(|| SoapError::Malformed("empty document".into()))
}

/// The error of a `<Fault>`: the vSphere fault type is the `xsi:type` of the detail's
/// element (`<NotAuthenticatedFault xsi:type="NotAuthenticated">`), or its name without
/// `Fault` where the server leaves the type out.
pub fn fault_of(fault: &Node) -> SoapError {
    let message = fault.text_of("faultstring").unwrap_or("").to_string();
    let kind = fault
        .child("detail")
        .and_then(|d| d.children.first())
        .map(|f| {
            f.xsi_type
                .clone()
                .unwrap_or_else(|| f.name.trim_end_matches("Fault").to_string())
        })
        .unwrap_or_else(|| "ServerFault".to_string());
    SoapError::Fault {
        fault: kind,
        message,
    }
}

/// A managed-object reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoRef {
    pub kind: String,
    pub value: String,
}

impl MoRef {
    pub fn new(kind: &str, value: &str) -> MoRef {
        MoRef {
            kind: kind.to_string(),
            value: value.to_string(),
        }
    }
}

/// Writes the body of one call: the method element and its typed arguments.
pub struct Body {
    w: Writer<Vec<u8>>,
    err: Option<String>,
}

impl Body {
    fn new() -> Body {
        Body {
            w: Writer::new(Vec::new()),
            err: None,
        }
    }

    fn note(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r
            && self.err.is_none()
        {
            self.err = Some(e.to_string());
        }
    }

    /// `<name>` … `</name>` around what `inner` writes.
    pub fn open(&mut self, name: &str, inner: impl FnOnce(&mut Body)) {
        self.open_typed(name, None, inner);
    }

    /// `<name xsi:type="T">` … `</name>`.
    pub fn open_typed(
        &mut self,
        name: &str,
        xsi_type: Option<&str>,
        inner: impl FnOnce(&mut Body),
    ) {
        let mut s = BytesStart::new(name);
        if let Some(t) = xsi_type {
            s.push_attribute(("xsi:type", t));
        }
        let r = self.w.write_event(Event::Start(s));
        self.note(r);
        inner(self);
        let r = self.w.write_event(Event::End(BytesEnd::new(name)));
        self.note(r);
    }

    /// `<name>text</name>`.
    pub fn text(&mut self, name: &str, text: &str) {
        self.open(name, |b| {
            let r = b.w.write_event(Event::Text(BytesText::new(text)));
            b.note(r);
        });
    }

    /// `<name xsi:type="T">text</name>`.
    pub fn typed_text(&mut self, name: &str, xsi_type: &str, text: &str) {
        self.open_typed(name, Some(xsi_type), |b| {
            let r = b.w.write_event(Event::Text(BytesText::new(text)));
            b.note(r);
        });
    }

    /// `<name type="T">value</name>`.
    pub fn moref(&mut self, name: &str, m: &MoRef) {
        let mut s = BytesStart::new(name);
        s.push_attribute(("type", m.kind.as_str()));
        let r = self
            .w
            .write_event(Event::Start(s))
            .and_then(|()| self.w.write_event(Event::Text(BytesText::new(&m.value))))
            .and_then(|()| self.w.write_event(Event::End(BytesEnd::new(name))));
        self.note(r);
    }
}

const ENVELOPE_START: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>"#;
const ENVELOPE_END: &str = "</soapenv:Body></soapenv:Envelope>";

/// Builds a full request document for `method` on `this`.
pub fn envelope(
    method: &str,
    this: &MoRef,
    args: impl FnOnce(&mut Body),
) -> Result<String, SoapError> {
    let mut b = Body::new();
    let mut s = BytesStart::new(method);
    s.push_attribute(("xmlns", "urn:vim25"));
    let r = b.w.write_event(Event::Start(s));
    b.note(r);
    b.moref("_this", this);
    args(&mut b);
    let r = b.w.write_event(Event::End(BytesEnd::new(method)));
    b.note(r);
    if let Some(e) = b.err {
        return Err(SoapError::Write(e));
    }
    let inner = String::from_utf8(b.w.into_inner()).map_err(|e| SoapError::Write(e.to_string()))?;
    Ok(format!("{ENVELOPE_START}{inner}{ENVELOPE_END}"))
}

/// Transport options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub no_verify: bool,
    pub proxy: Option<String>,
}

/// An HTTP(S) client bound to one server, holding the session cookie.
pub struct Client {
    agent: ureq::Agent,
    /// `https://host:port`
    pub base: String,
    cookie: Mutex<Option<String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

/// Whether `RVIRT_ESX_TRACE=1` asks for one line per call on stderr (method, object, time).
fn trace() -> bool {
    static T: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var("RVIRT_ESX_TRACE").as_deref() == Ok("1"))
}

const BODY_LIMIT: u64 = 256 * 1024 * 1024;

impl Client {
    pub fn new(base: &str, opts: &Options) -> Result<Client, SoapError> {
        let tls = ureq::tls::TlsConfig::builder()
            .disable_verification(opts.no_verify)
            .build();
        let proxy = match &opts.proxy {
            Some(p) => Some(ureq::Proxy::new(p).map_err(|e| SoapError::Http {
                url: p.clone(),
                source: Box::new(e),
            })?),
            None => None,
        };
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(proxy)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .new_agent();
        Ok(Client {
            agent,
            base: base.trim_end_matches('/').to_string(),
            cookie: Mutex::new(None),
        })
    }

    fn cookie(&self) -> Option<String> {
        self.cookie
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn keep_cookie(&self, resp: &ureq::http::Response<ureq::Body>) {
        for v in resp.headers().get_all("set-cookie") {
            if let Ok(v) = v.to_str()
                && let Some(pair) = v.split(';').next()
                && pair.trim_start().starts_with("vmware_soap_session=")
            {
                *self.cookie.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(pair.trim().to_string());
            }
        }
    }

    /// Forgets the session cookie.
    pub fn clear_cookie(&self) {
        *self.cookie.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Posts one call; returns the element inside `<Body>` (the `…Response`).
    pub fn call(
        &self,
        method: &str,
        this: &MoRef,
        args: impl FnOnce(&mut Body),
    ) -> Result<Node, SoapError> {
        let started = std::time::Instant::now();
        let r = self.call_inner(method, this, args);
        if trace() {
            eprintln!(
                "esx: {method} on {} {}: {:.1} ms{}",
                this.kind,
                this.value,
                started.elapsed().as_secs_f64() * 1000.0,
                r.as_ref()
                    .err()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
        r
    }

    fn call_inner(
        &self,
        method: &str,
        this: &MoRef,
        args: impl FnOnce(&mut Body),
    ) -> Result<Node, SoapError> {
        let doc = envelope(method, this, args)?;
        let url = format!("{}/sdk", self.base);
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "urn:vim25/6.5");
        if let Some(c) = self.cookie() {
            req = req.header("Cookie", &c);
        }
        let mut resp = req.send(doc.as_bytes()).map_err(|e| SoapError::Http {
            url: url.clone(),
            source: Box::new(e),
        })?;
        self.keep_cookie(&resp);
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
            .map_err(|e| SoapError::Http {
                url: url.clone(),
                source: Box::new(e),
            })?;
        let parse_started = std::time::Instant::now();
        let parsed = parse(&text);
        if trace() {
            eprintln!(
                "esx:   {method}: answer of {} bytes, parsed in {:.1} ms",
                text.len(),
                parse_started.elapsed().as_secs_f64() * 1000.0
            );
        }
        let root = match parsed {
            Ok(r) => r,
            Err(_) if status != 200 => {
                return Err(SoapError::Status {
                    url,
                    status,
                    body: text.chars().take(300).collect(),
                });
            }
            Err(e) => return Err(e),
        };
        let body = root
            .children
            .into_iter()
            .find(|c| c.name == "Body")
            .ok_or_else(|| {
                SoapError::Malformed(format!("no soap body in the answer to {method}"))
            })?;
        let first = body.children.into_iter().next().ok_or_else(|| {
            SoapError::Malformed(format!("empty soap body in the answer to {method}"))
        })?;
        if first.name == "Fault" {
            return Err(fault_of(&first));
        }
        if status != 200 {
            return Err(SoapError::Status {
                url,
                status,
                body: text.chars().take(300).collect(),
            });
        }
        Ok(first)
    }

    /// `GET` or `PUT` of a datastore file (`/folder/PATH?dcPath=DC&dsName=DS`).
    pub fn file(
        &self,
        method: &str,
        path_and_query: &str,
        data: Option<&[u8]>,
    ) -> Result<Vec<u8>, SoapError> {
        let url = format!("{}{path_and_query}", self.base);
        let wrap = |e: ureq::Error| SoapError::Http {
            url: url.clone(),
            source: Box::new(e),
        };
        let cookie = self.cookie();
        let mut resp = if method == "PUT" {
            let mut req = self
                .agent
                .put(&url)
                .header("Content-Type", "application/octet-stream");
            if let Some(c) = &cookie {
                req = req.header("Cookie", c);
            }
            req.send(data.unwrap_or_default()).map_err(wrap)?
        } else {
            let mut req = self.agent.get(&url);
            if let Some(c) = &cookie {
                req = req.header("Cookie", c);
            }
            req.call().map_err(wrap)?
        };
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_vec()
            .map_err(wrap)?;
        if !(200..300).contains(&status) {
            return Err(SoapError::Status {
                url,
                status,
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
            });
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_typed_and_escaped() {
        let doc = envelope(
            "Login",
            &MoRef::new("SessionManager", "ha-sessionmgr"),
            |b| {
                b.text("userName", "a<b");
                b.text("password", "p&q");
            },
        )
        .unwrap();
        assert!(doc.contains(r#"<Login xmlns="urn:vim25"><_this type="SessionManager">ha-sessionmgr</_this><userName>a&lt;b</userName><password>p&amp;q</password></Login></soapenv:Body>"#), "{doc}");
    }

    #[test]
    fn faults_as_esx_and_vcsim_write_them() {
        // ESX: xsi:type on the detail element
        let esx = parse(r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>The session is not authenticated.</faultstring><detail><NotAuthenticatedFault xmlns="urn:vim25" xsi:type="NotAuthenticated"><object type="Folder">ha-folder-root</object><privilegeId>System.View</privilegeId></NotAuthenticatedFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#).unwrap();
        let f = esx.path("Body/Fault").unwrap();
        let e = fault_of(f);
        assert_eq!(e.fault(), Some("NotAuthenticated"));
        assert!(e.to_string().contains("not authenticated"), "{e}");
        // without the type: the element's name
        let bare = parse(
            r#"<Fault><faultstring>x</faultstring><detail><InvalidLoginFault/></detail></Fault>"#,
        )
        .unwrap();
        assert_eq!(fault_of(&bare).fault(), Some("InvalidLogin"));
        // no detail at all
        let none = parse(r#"<Fault><faultstring>x</faultstring></Fault>"#).unwrap();
        assert_eq!(fault_of(&none).fault(), Some("ServerFault"));
    }

    #[test]
    fn xsi_type_under_any_prefix_or_none() {
        let a = parse(r#"<r xmlns:X="http://www.w3.org/2001/XMLSchema-instance"><val X:type="xsd:int">32</val><obj type="VirtualMachine">vm-9</obj><v>&#xA;x&amp;y</v></r>"#).unwrap();
        assert_eq!(a.child("val").unwrap().xsi_type.as_deref(), Some("int"));
        assert_eq!(
            a.child("obj").unwrap().moref(),
            Some(MoRef::new("VirtualMachine", "vm-9"))
        );
        assert_eq!(a.child("v").unwrap().text, "\nx&y");
        let b = parse(r#"<r><val>32</val></r>"#).unwrap();
        assert_eq!(b.child("val").unwrap().xsi_type, None);
    }
}

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

/// What [`Pull`] read: an element's start (whether empty: `<x/>` has no end), an end,
/// text, or the document's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Open(bool),
    Close,
    Text,
    Eof,
}

/// A pull parser over a response as it arrives (quick-xml over a buffered reader): the
/// caller walks the envelope by element names and reads the parts it wants straight into
/// its own types, building [`Node`] trees only for the values it keeps. The current
/// element's name and attributes are kept in reused buffers, so walking allocates
/// nothing.
pub struct Pull<R: std::io::BufRead> {
    reader: quick_xml::Reader<R>,
    buf: Vec<u8>,
    /// The current element: local name, attributes by local name, `xsi:type`.
    name: String,
    attrs: Vec<(String, String)>,
    xsi_type: Option<String>,
}

fn malformed(e: impl std::fmt::Display) -> SoapError {
    SoapError::Malformed(e.to_string())
}

fn ends_inside() -> SoapError {
    malformed("document ends inside an element")
}

/// A name without its prefix.
fn local(name: &str) -> &str {
    name.split_once(':').map_or(name, |(_, l)| l)
}

/// The first attribute of a start tag's attribute text (` a="1" b='2'`): its name, its
/// raw value and the rest; `None` when only whitespace is left. (Hand-read rather than
/// with quick-xml's attribute iterator: every value of a vSphere answer carries a
/// namespace declaration and a type, and this is the hot path of a listing.)
fn next_attribute(s: &str) -> Result<Option<(&str, &str, &str)>, SoapError> {
    let s = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || malformed(format!("malformed attribute in '{s}'"));
    let eq = s.find('=').ok_or_else(bad)?;
    let key = s[..eq].trim_end_matches(|c: char| c.is_ascii_whitespace());
    if key.is_empty() || key.contains(|c: char| c.is_ascii_whitespace()) {
        return Err(bad());
    }
    let v = s[eq + 1..].trim_start_matches(|c: char| c.is_ascii_whitespace());
    let quote = v
        .chars()
        .next()
        .filter(|c| *c == '"' || *c == '\'')
        .ok_or_else(bad)?;
    let end = v[1..].find(quote).ok_or_else(bad)?;
    Ok(Some((key, &v[1..1 + end], &v[end + 2..])))
}

impl<R: std::io::BufRead> Pull<R> {
    pub fn new(r: R) -> Pull<R> {
        Pull {
            reader: quick_xml::Reader::from_reader(r),
            buf: Vec::with_capacity(4096),
            name: String::new(),
            attrs: Vec::new(),
            xsi_type: None,
        }
    }

    /// The next start, end or text; text (entity and character references resolved,
    /// CDATA as is) is appended to `text` where given. Declarations, comments and
    /// processing instructions are skipped.
    fn read(&mut self, mut text: Option<&mut String>) -> Result<Ev, SoapError> {
        loop {
            self.buf.clear();
            let ev = self
                .reader
                .read_event_into(&mut self.buf)
                .map_err(malformed)?;
            let (e, empty) = match ev {
                Event::Start(e) => (e, false),
                Event::Empty(e) => (e, true),
                Event::End(_) => return Ok(Ev::Close),
                Event::Eof => return Ok(Ev::Eof),
                Event::Text(t) => {
                    if let Some(out) = text.as_deref_mut() {
                        out.push_str(&t.into_inner());
                    }
                    return Ok(Ev::Text);
                }
                Event::GeneralRef(r) => {
                    if let Some(out) = text.as_deref_mut() {
                        out.push_str(&entity(&r.xml10_content()));
                    }
                    return Ok(Ev::Text);
                }
                Event::CData(c) => {
                    if let Some(out) = text.as_deref_mut() {
                        out.push_str(&c.xml10_content());
                    }
                    return Ok(Ev::Text);
                }
                _ => continue,
            };
            self.name.clear();
            self.name.push_str(local(e.name().as_ref()));
            self.attrs.clear();
            self.xsi_type = None;
            let mut rest = e.attributes_raw();
            while let Some((key, value, after)) = next_attribute(rest)? {
                rest = after;
                let (prefix, name) = match key.split_once(':') {
                    Some((p, l)) => (Some(p), l),
                    None => (None, key),
                };
                if prefix == Some("xmlns") || (prefix.is_none() && name == "xmlns") {
                    continue;
                }
                let v = |value: &str| {
                    if value.contains('&') {
                        unescape(value)
                    } else {
                        value.to_string()
                    }
                };
                if prefix.is_some() && name == "type" {
                    // xsi:type under whatever prefix; the value's own prefix goes
                    self.xsi_type = Some(v(local(value)));
                } else {
                    self.attrs.push((name.to_string(), v(value)));
                }
            }
            return Ok(Ev::Open(empty));
        }
    }

    /// The current element's local name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An attribute of the current element, by local name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next child start inside the current element (`Some(empty)`; its name and
    /// attributes are then current), or `None` at the element's end. Text between
    /// children is skipped.
    pub fn child(&mut self) -> Result<Option<bool>, SoapError> {
        loop {
            match self.read(None)? {
                Ev::Open(e) => return Ok(Some(e)),
                Ev::Text => {}
                Ev::Close => return Ok(None),
                Ev::Eof => return Err(ends_inside()),
            }
        }
    }

    /// The rest of the current element (`empty` as [`Pull::child`] said) as a tree.
    pub fn subtree(&mut self, empty: bool) -> Result<Node, SoapError> {
        let mut n = Node {
            name: self.name.clone(),
            attrs: self.attrs.clone(),
            xsi_type: self.xsi_type.take(),
            ..Node::default()
        };
        if empty {
            return Ok(n);
        }
        loop {
            match self.read(Some(&mut n.text))? {
                Ev::Open(e) => {
                    let c = self.subtree(e)?;
                    n.children.push(c);
                }
                Ev::Text => {}
                Ev::Close => return Ok(n),
                Ev::Eof => return Err(ends_inside()),
            }
        }
    }

    /// The text of the current element (its children's texts too), trimmed, up to its
    /// end.
    pub fn text(&mut self, empty: bool) -> Result<String, SoapError> {
        let mut out = String::new();
        self.text_into(&mut out, empty)?;
        Ok(out)
    }

    /// [`Pull::text`] into `out` (cleared first; its allocation reused).
    pub fn text_into(&mut self, out: &mut String, empty: bool) -> Result<(), SoapError> {
        out.clear();
        if empty {
            return Ok(());
        }
        let mut depth = 0usize;
        loop {
            match self.read(Some(out))? {
                Ev::Open(true) | Ev::Text => {}
                Ev::Open(false) => depth += 1,
                Ev::Close if depth == 0 => break,
                Ev::Close => depth -= 1,
                Ev::Eof => return Err(ends_inside()),
            }
        }
        let end = out.trim_end().len();
        out.truncate(end);
        let start = out.len() - out.trim_start().len();
        out.drain(..start);
        Ok(())
    }

    /// Skips the rest of the current element.
    pub fn skip(&mut self, empty: bool) -> Result<(), SoapError> {
        if empty {
            return Ok(());
        }
        let mut depth = 0usize;
        loop {
            self.buf.clear();
            match self
                .reader
                .read_event_into(&mut self.buf)
                .map_err(malformed)?
            {
                Event::Start(_) => depth += 1,
                Event::End(_) if depth == 0 => return Ok(()),
                Event::End(_) => depth -= 1,
                Event::Eof => return Err(ends_inside()),
                _ => {}
            }
        }
    }

    /// Opens the document element and the SOAP `Body` (skipping a `Header`); the first
    /// element inside the body is then current (`empty` returned).
    pub fn body(&mut self) -> Result<bool, SoapError> {
        let root_empty = loop {
            match self.read(None)? {
                Ev::Open(e) => break e,
                Ev::Text => {}
                Ev::Close | Ev::Eof => return Err(malformed("empty document")),
            }
        };
        if self.name != "Envelope" || root_empty {
            return Err(malformed(format!("'{}' is not a soap envelope", self.name)));
        }
        while let Some(e) = self.child()? {
            if self.name == "Body" {
                return match e {
                    true => Err(malformed("empty soap body")),
                    false => self.child()?.ok_or_else(|| malformed("empty soap body")),
                };
            }
            self.skip(e)?;
        }
        Err(malformed("no soap body"))
    }
}

/// Parses a response document into a tree (the root is the document element).
pub fn parse(xml: &str) -> Result<Node, SoapError> {
    let mut p = Pull::new(xml.as_bytes());
    loop {
        match p.read(None)? {
            Ev::Open(e) => return p.subtree(e),
            Ev::Text => {}
            Ev::Close => return Err(malformed("unbalanced end tag")),
            Ev::Eof => return Err(malformed("empty document")),
        }
    }
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
    /// SOAP calls posted so far (see [`Client::calls`]).
    calls: std::sync::atomic::AtomicU64,
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

/// A reader counting the bytes it gave (the answer's size, for the trace).
pub struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// The answer of a call as [`Client::call_with`] hands it on.
pub type Answer = Pull<std::io::BufReader<Counted<ureq::BodyReader<'static>>>>;

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
            calls: std::sync::atomic::AtomicU64::new(0),
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

    /// How many SOAP calls this client has posted (what an operation costs in round
    /// trips; the benchmark checks it against its floor).
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets the session cookie.
    pub fn clear_cookie(&self) {
        *self.cookie.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Posts one call; returns the element inside `<Body>` (the `…Response`) as a tree.
    pub fn call(
        &self,
        method: &str,
        this: &MoRef,
        args: impl FnOnce(&mut Body),
    ) -> Result<Node, SoapError> {
        self.call_with(method, this, args, |p, e| p.subtree(e))
    }

    /// Posts one call and hands the parser, positioned on the start of the element inside
    /// `<Body>` (the `…Response`, whether empty), to `read`, which reads it from the
    /// network as it arrives; a `<Fault>` is an error instead.
    pub fn call_with<T>(
        &self,
        method: &str,
        this: &MoRef,
        args: impl FnOnce(&mut Body),
        read: impl FnOnce(&mut Answer, bool) -> Result<T, SoapError>,
    ) -> Result<T, SoapError> {
        let started = std::time::Instant::now();
        let mut size = 0;
        let r = self.call_inner(method, this, args, read, &mut size);
        if trace() {
            eprintln!(
                "esx: {method} on {} {}: {:.1} ms, answer of {size} bytes{}",
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

    fn call_inner<T>(
        &self,
        method: &str,
        this: &MoRef,
        args: impl FnOnce(&mut Body),
        read: impl FnOnce(&mut Answer, bool) -> Result<T, SoapError>,
        size: &mut u64,
    ) -> Result<T, SoapError> {
        let doc = envelope(method, this, args)?;
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = format!("{}/sdk", self.base);
        let http = |e: ureq::Error| SoapError::Http {
            url: url.clone(),
            source: Box::new(e),
        };
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "urn:vim25/6.5");
        if let Some(c) = self.cookie() {
            req = req.header("Cookie", &c);
        }
        let mut resp = req.send(doc.as_bytes()).map_err(http)?;
        self.keep_cookie(&resp);
        let status = resp.status().as_u16();
        if status != 200 {
            // a fault (500) or an error page: read whole, so that a page that is no soap
            // document can be shown
            let text = resp
                .body_mut()
                .with_config()
                .limit(BODY_LIMIT)
                .lossy_utf8(true)
                .read_to_string()
                .map_err(http)?;
            *size = text.len() as u64;
            let status_err = || SoapError::Status {
                url: url.clone(),
                status,
                body: text.chars().take(300).collect(),
            };
            let mut p = Pull::new(text.as_bytes());
            return match p.body() {
                Ok(e) if p.name() == "Fault" => Err(fault_of(&p.subtree(e)?)),
                _ => Err(status_err()),
            };
        }
        let body = resp
            .into_body()
            .into_with_config()
            .limit(BODY_LIMIT)
            .reader();
        let mut p = Pull::new(std::io::BufReader::with_capacity(
            64 * 1024,
            Counted { inner: body, n: 0 },
        ));
        let e = p.body()?;
        let r = if p.name() == "Fault" {
            Err(fault_of(&p.subtree(e)?))
        } else {
            read(&mut p, e)
        };
        // the rest (the closing tags), so that the connection goes back to the pool
        let inner = p.reader.get_mut();
        let drained = std::io::copy(inner, &mut std::io::sink());
        *size = inner.get_ref().n;
        drained.map_err(|e| SoapError::Malformed(format!("reading the answer: {e}")))?;
        r
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
    fn attributes_read_by_hand() {
        assert_eq!(
            next_attribute(r#" a="1"  b = '2"x' "#).unwrap(),
            Some(("a", "1", r#"  b = '2"x' "#))
        );
        assert_eq!(
            next_attribute(r#"  b = '2"x' "#).unwrap(),
            Some(("b", r#"2"x"#, " "))
        );
        assert_eq!(next_attribute("  ").unwrap(), None);
        assert!(next_attribute(" a=1").is_err());
        assert!(next_attribute(r#" a="1"#).is_err());
        assert!(next_attribute(r#" a b="1""#).is_err());
        let n =
            parse(r#"<v X:type = 'xsd:string' t="a&amp;b" xmlns:X="u" xmlns="v">x</v>"#).unwrap();
        assert_eq!(n.xsi_type.as_deref(), Some("string"));
        assert_eq!(n.attrs, vec![("t".to_string(), "a&b".to_string())]);
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

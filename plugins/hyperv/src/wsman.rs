//! WS-Management (DMTF DSP0226) over HTTP(S), as Windows Remote Management serves it: SOAP
//! 1.2 envelopes with WS-Addressing headers, WS-Enumeration (`Enumerate`/`Pull` with a
//! WQL filter), WS-Transfer `Get`, and the invocation of a WMI class's methods (the
//! action is the class's resource URI and the method name).
//!
//! Requests are written with quick-xml's escaping; answers are parsed into a small
//! namespace-stripped tree ([`Node`]). Basic authentication, as libvirt's hyperv driver
//! uses it.

use base64::Engine;
use quick_xml::escape::escape;
use quick_xml::events::Event;
use std::time::Duration;

pub const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
pub const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
pub const NS_ENUMERATION: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration";
pub const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
pub const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";
pub const ACTION_ENUMERATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate";
pub const ACTION_PULL: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull";
pub const ACTION_RELEASE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release";
pub const ACTION_GET: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get";
/// The filter dialect of WMI Query Language.
pub const DIALECT_WQL: &str = "http://schemas.microsoft.com/wbem/wsman/1/WQL";
/// The resource URIs of WMI classes: this, the namespace path and the class name.
pub const WMI_BASE: &str = "http://schemas.microsoft.com/wbem/wsman/1/wmi/";

/// The largest envelope the client accepts, announced in `wsman:MaxEnvelopeSize`.
pub const MAX_ENVELOPE: u32 = 512_000;
/// How many items one `Enumerate` or `Pull` asks for.
pub const MAX_ELEMENTS: u32 = 100;

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
pub enum WsmanError {
    #[error("{call}: http request to {url} failed: {source}{}", cert_hint(source))]
    Http {
        call: String,
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error(
        "authentication failed: {url} refused user '{user}' (http 401; the hyperv driver uses basic authentication, which WinRM must allow)"
    )]
    Auth { url: String, user: String },
    #[error("{call}: http {status} from {url}: {body}")]
    Status {
        call: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{call}: malformed ws-management answer: {why}")]
    Malformed { call: String, why: String },
    #[error("{call}: soap fault {code}: {reason}")]
    Fault {
        call: String,
        /// The subcode where the server gave one (`w:InvalidSelectors`), else the code.
        code: String,
        reason: String,
    },
}

/// What to do about a refused server certificate.
fn cert_hint(e: &ureq::Error) -> &'static str {
    if e.to_string().contains("certificate") {
        " (the server's certificate is not trusted: install its CA, or add no_verify=1 to the uri to skip the check)"
    } else {
        ""
    }
}

/// One element of an answer: local name, attributes by local name, text, children, and
/// whether it is `xsi:nil`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Node>,
    pub nil: bool,
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

    /// The trimmed text of the child `name`, unless it is absent or nil.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).filter(|c| !c.nil).map(|c| c.text.trim())
    }

    /// The descendant along `path` (`a/b/c`).
    pub fn path(&self, path: &str) -> Option<&Node> {
        path.split('/').try_fold(self, |n, p| n.child(p))
    }
}

fn local(name: &str) -> String {
    match name.split_once(':') {
        Some((_, l)) => l.to_string(),
        None => name.to_string(),
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

/// Parses an answer into a namespace-stripped tree.
pub fn parse(text: &str) -> Result<Node, String> {
    let mut r = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root = None;
    let open = |e: &quick_xml::events::BytesStart<'_>| -> Result<Node, String> {
        let mut n = Node {
            name: local(e.name().as_ref()),
            ..Node::default()
        };
        for a in e.attributes() {
            let a = a.map_err(|e| e.to_string())?;
            let key = local(a.key.as_ref());
            let raw: &str = &a.value;
            let val = unescape(raw);
            if key == "nil" && val == "true" {
                n.nil = true;
            }
            n.attrs.push((key, val));
        }
        Ok(n)
    };
    loop {
        match r.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => stack.push(open(&e)?),
            Event::Empty(e) => {
                let n = open(&e)?;
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None => root = Some(n),
                }
            }
            Event::End(_) => {
                let n = stack.pop().ok_or("unbalanced end tag")?;
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
            Event::GeneralRef(g) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&entity(&g.xml10_content()));
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
    if !stack.is_empty() {
        return Err("unclosed element".into());
    }
    root.ok_or_else(|| "empty document".into())
}

/// A reference to one instance (`wsa:EndpointReference`): its class's resource URI and
/// its key properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epr {
    pub resource_uri: String,
    pub selectors: Vec<(String, String)>,
}

impl Epr {
    /// The reference an answer carries (`<Address/><ReferenceParameters><ResourceURI/>
    /// <SelectorSet><Selector Name=…/>…`).
    pub fn from_node(n: &Node) -> Option<Epr> {
        let rp = n.child("ReferenceParameters")?;
        Some(Epr {
            resource_uri: rp.text_of("ResourceURI")?.to_string(),
            selectors: rp
                .child("SelectorSet")
                .map(|s| {
                    s.children_named("Selector")
                        .filter_map(|x| Some((x.attr("Name")?.to_string(), x.text.trim().into())))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    pub fn selector(&self, name: &str) -> Option<&str> {
        self.selectors
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The class name (the last segment of the resource URI).
    pub fn class(&self) -> &str {
        self.resource_uri.rsplit('/').next().unwrap_or("")
    }

    fn write(&self, out: &mut String) {
        out.push_str(&format!(
            "<a:Address>{ANONYMOUS}</a:Address><a:ReferenceParameters><w:ResourceURI>{}</w:ResourceURI>",
            escape(&self.resource_uri)
        ));
        write_selectors(out, &self.selectors);
        out.push_str("</a:ReferenceParameters>");
    }
}

fn write_selectors(out: &mut String, selectors: &[(String, String)]) {
    if selectors.is_empty() {
        return;
    }
    out.push_str("<w:SelectorSet>");
    for (k, v) in selectors {
        out.push_str(&format!(
            "<w:Selector Name=\"{}\">{}</w:Selector>",
            escape(k),
            escape(v)
        ));
    }
    out.push_str("</w:SelectorSet>");
}

/// One input parameter of a method.
#[derive(Debug, Clone)]
pub enum Param {
    /// A scalar (`uint16`, `boolean`, `string`, `datetime` text).
    Value(String, String),
    /// A reference to an instance.
    Ref(String, Epr),
    /// An array of strings (embedded instances), one element per item.
    Array(String, Vec<String>),
}

/// An HTTP(S) client of one WS-Management endpoint.
pub struct Client {
    agent: ureq::Agent,
    /// `https://host:5986/wsman`: where requests go and their `wsa:To`.
    pub endpoint: String,
    user: String,
    authorization: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .finish()
    }
}

const BODY_LIMIT: u64 = 64 * 1024 * 1024;

impl Client {
    pub fn new(endpoint: &str, user: &str, password: &str, no_verify: bool) -> Client {
        let tls = ureq::tls::TlsConfig::builder()
            .disable_verification(no_verify)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .new_agent();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Client {
            agent,
            endpoint: endpoint.to_string(),
            user: user.to_string(),
            authorization: format!("Basic {token}"),
        }
    }

    /// The full envelope of one request.
    fn envelope(
        &self,
        action: &str,
        resource_uri: &str,
        selectors: &[(String, String)],
        body: &str,
    ) -> String {
        let mut s = String::with_capacity(1024 + body.len());
        s.push_str(&format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:w=\"{NS_WSMAN}\" xmlns:n=\"{NS_ENUMERATION}\"><s:Header>"
        ));
        s.push_str(&format!(
            "<a:To>{}</a:To><w:ResourceURI s:mustUnderstand=\"true\">{}</w:ResourceURI>\
             <a:ReplyTo><a:Address s:mustUnderstand=\"true\">{ANONYMOUS}</a:Address></a:ReplyTo>\
             <a:Action s:mustUnderstand=\"true\">{}</a:Action>\
             <w:MaxEnvelopeSize s:mustUnderstand=\"true\">{MAX_ENVELOPE}</w:MaxEnvelopeSize>\
             <a:MessageID>uuid:{}</a:MessageID>\
             <w:Locale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/>",
            escape(&self.endpoint),
            escape(resource_uri),
            escape(action),
            uuid::Uuid::new_v4().hyphenated().to_string().to_uppercase()
        ));
        write_selectors(&mut s, selectors);
        s.push_str("<w:OperationTimeout>PT60.000S</w:OperationTimeout></s:Header><s:Body>");
        s.push_str(body);
        s.push_str("</s:Body></s:Envelope>");
        s
    }

    /// Posts one request; answers the element inside `<s:Body>` (`None` for an empty one).
    fn send(
        &self,
        call: &str,
        action: &str,
        resource_uri: &str,
        selectors: &[(String, String)],
        body: &str,
    ) -> Result<Option<Node>, WsmanError> {
        let doc = self.envelope(action, resource_uri, selectors, body);
        let http = |e: ureq::Error| WsmanError::Http {
            call: call.to_string(),
            url: self.endpoint.clone(),
            source: Box::new(e),
        };
        let mut resp = self
            .agent
            .post(&self.endpoint)
            .header("Content-Type", "application/soap+xml;charset=UTF-8")
            .header("Authorization", &self.authorization)
            .send(doc.as_bytes())
            .map_err(http)?;
        let status = resp.status().as_u16();
        if status == 401 {
            return Err(WsmanError::Auth {
                url: self.endpoint.clone(),
                user: self.user.clone(),
            });
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
            .map_err(http)?;
        let malformed = |why: String| WsmanError::Malformed {
            call: call.to_string(),
            why,
        };
        let root = match parse(&text) {
            Ok(r) => r,
            Err(_) if status != 200 => {
                return Err(WsmanError::Status {
                    call: call.into(),
                    url: self.endpoint.clone(),
                    status,
                    body: text.chars().take(300).collect(),
                });
            }
            Err(e) => return Err(malformed(e)),
        };
        let body = root
            .children
            .into_iter()
            .find(|c| c.name == "Body")
            .ok_or_else(|| malformed("no soap body".into()))?;
        let first = body.children.into_iter().next();
        if let Some(f) = first.as_ref().filter(|f| f.name == "Fault") {
            return Err(fault_of(call, f));
        }
        if status != 200 {
            return Err(WsmanError::Status {
                call: call.into(),
                url: self.endpoint.clone(),
                status,
                body: text.chars().take(300).collect(),
            });
        }
        Ok(first)
    }

    /// Every instance a WQL query selects in the WMI namespace `namespace`
    /// (`root/virtualization/v2`): one `Enumerate` (optimized, so the first items come
    /// with it) and as many `Pull`s as the server's enumeration context needs.
    pub fn enumerate(&self, namespace: &str, wql: &str) -> Result<Vec<Node>, WsmanError> {
        let call = format!("enumerating '{wql}'");
        let resource = format!("{WMI_BASE}{namespace}/*");
        let body = format!(
            "<n:Enumerate><w:OptimizeEnumeration/><w:MaxElements>{MAX_ELEMENTS}</w:MaxElements>\
             <w:Filter Dialect=\"{DIALECT_WQL}\">{}</w:Filter></n:Enumerate>",
            escape(wql)
        );
        let malformed = |why: &str| WsmanError::Malformed {
            call: call.clone(),
            why: why.to_string(),
        };
        let resp = self
            .send(&call, ACTION_ENUMERATE, &resource, &[], &body)?
            .filter(|r| r.name == "EnumerateResponse")
            .ok_or_else(|| malformed("no EnumerateResponse"))?;
        let mut out = Vec::new();
        let mut page = resp;
        // a server that never ends the sequence must not keep the client forever
        for _ in 0..100_000 {
            if let Some(items) = page.child("Items") {
                out.extend(items.children.iter().cloned());
            }
            if page.child("EndOfSequence").is_some() {
                return Ok(out);
            }
            let ctx = page
                .text_of("EnumerationContext")
                .filter(|c| !c.is_empty())
                .ok_or_else(|| malformed("neither EndOfSequence nor an EnumerationContext"))?
                .to_string();
            let body = format!(
                "<n:Pull><n:EnumerationContext>{}</n:EnumerationContext>\
                 <n:MaxElements>{MAX_ELEMENTS}</n:MaxElements></n:Pull>",
                escape(&ctx)
            );
            page = self
                .send(&call, ACTION_PULL, &resource, &[], &body)?
                .filter(|r| r.name == "PullResponse")
                .ok_or_else(|| malformed("no PullResponse"))?;
        }
        Err(malformed("the enumeration does not end"))
    }

    /// One instance by its reference (WS-Transfer `Get`).
    pub fn get(&self, epr: &Epr) -> Result<Node, WsmanError> {
        let call = format!("getting {}", epr.class());
        self.send(&call, ACTION_GET, &epr.resource_uri, &epr.selectors, "")?
            .ok_or_else(|| WsmanError::Malformed {
                call,
                why: "empty soap body".into(),
            })
    }

    /// Invokes `method` of the instance `epr`; answers its `METHOD_OUTPUT` element.
    pub fn invoke(&self, epr: &Epr, method: &str, params: &[Param]) -> Result<Node, WsmanError> {
        let call = format!("{}.{method}", epr.class());
        let ns = &epr.resource_uri;
        let mut body = format!("<p:{method}_INPUT xmlns:p=\"{}\">", escape(ns));
        for p in params {
            match p {
                Param::Value(k, v) => {
                    body.push_str(&format!("<p:{k}>{}</p:{k}>", escape(v)));
                }
                Param::Ref(k, e) => {
                    body.push_str(&format!("<p:{k}>"));
                    e.write(&mut body);
                    body.push_str(&format!("</p:{k}>"));
                }
                Param::Array(k, items) => {
                    for v in items {
                        body.push_str(&format!("<p:{k}>{}</p:{k}>", escape(v)));
                    }
                }
            }
        }
        body.push_str(&format!("</p:{method}_INPUT>"));
        let action = format!("{ns}/{method}");
        let out = self
            .send(&call, &action, ns, &epr.selectors, &body)?
            .ok_or_else(|| WsmanError::Malformed {
                call: call.clone(),
                why: "empty soap body".into(),
            })?;
        if out.name != format!("{method}_OUTPUT") {
            return Err(WsmanError::Malformed {
                call,
                why: format!("expected {method}_OUTPUT, got {}", out.name),
            });
        }
        Ok(out)
    }
}

/// The error of a SOAP 1.2 `<s:Fault>`: its subcode (or code) and reason, with the WMI
/// message of a `WSManFault` detail where the server gave one.
pub fn fault_of(call: &str, f: &Node) -> WsmanError {
    let code = f
        .path("Code/Subcode/Value")
        .or_else(|| f.path("Code/Value"))
        .map(|v| v.text.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mut reason = f
        .path("Reason/Text")
        .map(|t| t.text.trim().to_string())
        .unwrap_or_default();
    if let Some(m) = f
        .path("Detail/WSManFault/Message")
        .map(|m| m.text.trim())
        .filter(|m| !m.is_empty() && !reason.contains(*m))
    {
        reason = if reason.is_empty() {
            m.to_string()
        } else {
            format!("{reason} ({m})")
        };
    }
    WsmanError::Fault {
        call: call.to_string(),
        code,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_the_ws_management_headers() {
        let c = Client::new("http://h:5985/wsman", "u", "p", false);
        let epr = Epr {
            resource_uri: format!("{WMI_BASE}root/virtualization/v2/Msvm_ComputerSystem"),
            selectors: vec![("Name".into(), "A&B".into())],
        };
        let doc = c.envelope(ACTION_GET, &epr.resource_uri, &epr.selectors, "");
        let root = parse(&doc).unwrap();
        let h = root.child("Header").unwrap();
        assert_eq!(h.text_of("To"), Some("http://h:5985/wsman"));
        assert_eq!(h.text_of("Action"), Some(ACTION_GET));
        assert_eq!(h.path("SelectorSet/Selector").unwrap().text, "A&B", "{doc}");
        let id = h.text_of("MessageID").unwrap();
        assert!(uuid::Uuid::parse_str(id.strip_prefix("uuid:").unwrap()).is_ok());
        assert_eq!(h.path("ReplyTo/Address").unwrap().text, ANONYMOUS);
    }

    #[test]
    fn faults_name_the_call_and_the_reason() {
        let f = parse(r#"<s:Fault xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>w:InvalidSelectors</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">The selectors are invalid.</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="2150858843"><f:Message>No such VM</f:Message></f:WSManFault></s:Detail></s:Fault>"#).unwrap();
        let e = fault_of("Msvm_ComputerSystem.RequestStateChange", &f).to_string();
        assert_eq!(
            e,
            "Msvm_ComputerSystem.RequestStateChange: soap fault w:InvalidSelectors: The selectors are invalid. (No such VM)"
        );
    }

    #[test]
    fn nil_and_references_parse() {
        let n = parse(r#"<r xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><p:ProcessID xmlns:p="x" xsi:nil="true"/><Job><a:Address>anon</a:Address><a:ReferenceParameters><w:ResourceURI>http://x/Msvm_ConcreteJob</w:ResourceURI><w:SelectorSet><w:Selector Name="InstanceID">J1</w:Selector></w:SelectorSet></a:ReferenceParameters></Job></r>"#).unwrap();
        assert_eq!(n.text_of("ProcessID"), None);
        let e = Epr::from_node(n.child("Job").unwrap()).unwrap();
        assert_eq!(e.class(), "Msvm_ConcreteJob");
        assert_eq!(e.selector("instanceid"), Some("J1"));
    }
}

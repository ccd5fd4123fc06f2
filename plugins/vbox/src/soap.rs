//! The SOAP transport of VirtualBox's web service (`vboxwebsrv`): document/literal calls in
//! the `http://www.virtualbox.org/` namespace, one element per method
//! (`IMachine_getName`), the managed object reference as `_this`, the answer as
//! `METHODResponse` with `returnval` children, and faults turned into
//! [`SoapError::Fault`] carrying the COM result code of a `RuntimeFault`.

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use std::time::Duration;

/// The namespace of the web service's elements.
pub const VBOX_NS: &str = "http://www.virtualbox.org/";

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
pub enum SoapError {
    #[error("cannot reach the VirtualBox web service at {url}: {source}")]
    Connect {
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
    /// A `<Fault>`: `code` is the COM result code of a `RuntimeFault` (`0x80BB0001` is
    /// `VBOX_E_OBJECT_NOT_FOUND`), `kind` the detail's element (`RuntimeFault`,
    /// `InvalidObjectFault`).
    #[error("{}", fault_text(.kind, .code, .message))]
    Fault {
        kind: String,
        code: Option<u32>,
        message: String,
    },
    #[error("writing a soap request: {0}")]
    Write(String),
}

fn fault_text(kind: &str, code: &Option<u32>, message: &str) -> String {
    match code {
        Some(c) => format!("{message} ({kind}, {} {c:#010x})", result_name(*c)),
        None => format!("{message} ({kind})"),
    }
}

/// The name of a VirtualBox or COM result code, as the SDK reference spells it.
pub fn result_name(code: u32) -> &'static str {
    match code {
        0x80BB_0001 => "VBOX_E_OBJECT_NOT_FOUND",
        0x80BB_0002 => "VBOX_E_INVALID_VM_STATE",
        0x80BB_0003 => "VBOX_E_VM_ERROR",
        0x80BB_0004 => "VBOX_E_FILE_ERROR",
        0x80BB_0005 => "VBOX_E_IPRT_ERROR",
        0x80BB_0006 => "VBOX_E_PDM_ERROR",
        0x80BB_0007 => "VBOX_E_INVALID_OBJECT_STATE",
        0x80BB_0008 => "VBOX_E_HOST_ERROR",
        0x80BB_0009 => "VBOX_E_NOT_SUPPORTED",
        0x80BB_000A => "VBOX_E_XML_ERROR",
        0x80BB_000B => "VBOX_E_INVALID_SESSION_STATE",
        0x80BB_000C => "VBOX_E_OBJECT_IN_USE",
        0x8007_0005 => "E_ACCESSDENIED",
        0x8007_0057 => "E_INVALIDARG",
        0x8000_4001 => "E_NOTIMPL",
        0x8000_4005 => "E_FAIL",
        0x8000_FFFF => "E_UNEXPECTED",
        _ => "result code",
    }
}

impl SoapError {
    /// The COM result code of a fault.
    pub fn code(&self) -> Option<u32> {
        match self {
            SoapError::Fault { code, .. } => *code,
            _ => None,
        }
    }
}

/// One element of a response: local name, text and children (namespace prefixes dropped).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub name: String,
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

    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

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

/// Parses a document into a tree whose root is the document element.
pub fn parse(xml: &str) -> Result<Node, SoapError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root = None;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| SoapError::Malformed(e.to_string()))?;
        let done = match ev {
            Event::Start(e) => {
                stack.push(Node {
                    name: local(e.name().as_ref()),
                    ..Node::default()
                });
                None
            }
            Event::Empty(e) => Some(Node {
                name: local(e.name().as_ref()),
                ..Node::default()
            }),
            Event::End(_) => Some(
                stack
                    .pop()
                    .ok_or_else(|| SoapError::Malformed("unbalanced end tag".into()))?,
            ),
            Event::Text(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&t.into_inner());
                }
                None
            }
            Event::GeneralRef(r) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&entity(&r.xml10_content()));
                }
                None
            }
            Event::CData(c) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&c.xml10_content());
                }
                None
            }
            Event::Eof => break,
            _ => None,
        };
        if let Some(n) = done {
            match stack.last_mut() {
                Some(p) => p.children.push(n),
                None => root = Some(n),
            }
        }
    }
    root.ok_or_else(|| SoapError::Malformed("empty document".into()))
}

/// The error of a `<Fault>`: `RuntimeFault` details carry `resultCode` (an `xsd:int`, so
/// negative for failure codes).
pub fn fault_of(fault: &Node) -> SoapError {
    let message = fault.text_of("faultstring").unwrap_or("").to_string();
    let detail = fault.child("detail").and_then(|d| d.children.first());
    let kind = detail
        .map(|d| d.name.clone())
        .unwrap_or_else(|| "Fault".to_string());
    let code = detail
        .and_then(|d| d.text_of("resultCode"))
        .and_then(|c| {
            c.parse::<i64>().ok().or_else(|| {
                c.strip_prefix("0x")
                    .and_then(|h| i64::from_str_radix(h, 16).ok())
            })
        })
        .map(|c| c as u32);
    SoapError::Fault {
        kind,
        code,
        message,
    }
}

/// One argument of a call.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    /// `<name>text</name>`
    Text(&'a str, String),
    /// one `<name>` per item (a safe array; none for an empty one)
    Array(&'a str, Vec<String>),
}

/// Builds the request document of `method` on `this` (`None` for the session manager's
/// methods, which take no `_this`).
pub fn envelope(method: &str, this: Option<&str>, args: &[Arg<'_>]) -> Result<String, SoapError> {
    let mut w = quick_xml::Writer::new(Vec::new());
    let text = |w: &mut quick_xml::Writer<Vec<u8>>, name: &str, value: &str| {
        w.write_event(Event::Start(BytesStart::new(name)))?;
        w.write_event(Event::Text(BytesText::new(value)))?;
        w.write_event(Event::End(BytesEnd::new(name)))
    };
    let body = (|| -> std::io::Result<()> {
        let tag = format!("vbox:{method}");
        w.write_event(Event::Start(BytesStart::new(tag.as_str())))?;
        if let Some(t) = this {
            text(&mut w, "_this", t)?;
        }
        for a in args {
            match a {
                Arg::Text(n, v) => text(&mut w, n, v)?,
                Arg::Array(n, vs) => {
                    for v in vs {
                        text(&mut w, n, v)?;
                    }
                }
            }
        }
        w.write_event(Event::End(BytesEnd::new(tag.as_str())))
    })();
    body.map_err(|e| SoapError::Write(e.to_string()))?;
    let inner = String::from_utf8(w.into_inner()).map_err(|e| SoapError::Write(e.to_string()))?;
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vbox="{VBOX_NS}"><SOAP-ENV:Body>{inner}</SOAP-ENV:Body></SOAP-ENV:Envelope>"#
    ))
}

/// An HTTP client bound to one endpoint.
pub struct Client {
    agent: ureq::Agent,
    /// The endpoint's URL, as posted to (`http://localhost:18083/`).
    pub url: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url).finish()
    }
}

impl Client {
    pub fn new(url: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .new_agent();
        Client {
            agent,
            url: url.to_string(),
        }
    }

    /// Posts one call; returns the `…Response` element.
    pub fn call(
        &self,
        method: &str,
        this: Option<&str>,
        args: &[Arg<'_>],
    ) -> Result<Node, SoapError> {
        let doc = envelope(method, this, args)?;
        let mut resp = self
            .agent
            .post(&self.url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"\"")
            .send(doc.as_bytes())
            .map_err(|e| SoapError::Connect {
                url: self.url.clone(),
                source: Box::new(e),
            })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| SoapError::Connect {
                url: self.url.clone(),
                source: Box::new(e),
            })?;
        // a fault comes with http 500: parse the document first
        let tree = parse(&text);
        if let Ok(t) = &tree
            && let Some(f) = t.path("Body/Fault")
        {
            return Err(fault_of(f));
        }
        if !(200..300).contains(&status) {
            return Err(SoapError::Status {
                url: self.url.clone(),
                status,
                body: text.chars().take(300).collect(),
            });
        }
        let tree = tree?;
        let body = tree
            .child("Body")
            .ok_or_else(|| SoapError::Malformed(format!("{method}: no soap body")))?;
        let want = format!("{method}Response");
        body.child(&want)
            .cloned()
            .ok_or_else(|| SoapError::Malformed(format!("{method}: the body holds no <{want}>")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_names_method_this_and_escapes() {
        let doc = envelope(
            "IVirtualBox_findMachine",
            Some("a-1"),
            &[
                Arg::Text("nameOrId", "a<b&c".into()),
                Arg::Array("groups", vec![]),
                Arg::Array("media", vec!["m1".into(), "m2".into()]),
            ],
        )
        .unwrap();
        assert!(
            doc.contains(r#"<SOAP-ENV:Body><vbox:IVirtualBox_findMachine><_this>a-1</_this><nameOrId>a&lt;b&amp;c</nameOrId><media>m1</media><media>m2</media></vbox:IVirtualBox_findMachine></SOAP-ENV:Body>"#),
            "{doc}"
        );
        assert!(doc.contains(r#"xmlns:vbox="http://www.virtualbox.org/""#));
        let logon = envelope("IWebsessionManager_logon", None, &[]).unwrap();
        assert!(!logon.contains("_this"));
    }

    #[test]
    fn runtime_fault_code_is_read_as_unsigned() {
        let t = parse(r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>VirtualBox error: Could not find a registered machine named 'x' (0x80bb0001)</faultstring><detail><vbox:RuntimeFault xmlns:vbox="http://www.virtualbox.org/"><resultCode>-2135228415</resultCode><returnval>1-2</returnval></vbox:RuntimeFault></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"#).unwrap();
        let e = fault_of(t.path("Body/Fault").unwrap());
        assert_eq!(e.code(), Some(0x80BB_0001));
        let s = e.to_string();
        assert!(
            s.contains("VBOX_E_OBJECT_NOT_FOUND") && s.contains("named 'x'"),
            "{s}"
        );
        let bare = parse("<Fault><faultstring>Invalid managed object reference</faultstring><detail><vbox:InvalidObjectFault/></detail></Fault>").unwrap();
        let e = fault_of(&bare);
        assert_eq!(e.code(), None);
        assert!(e.to_string().contains("InvalidObjectFault"), "{e}");
    }

    #[test]
    fn text_and_entities() {
        let t = parse("<r><a>x &amp; y&#x41;</a><b/></r>").unwrap();
        assert_eq!(t.text_of("a"), Some("x & yA"));
        assert_eq!(t.text_of("b"), Some(""));
    }
}

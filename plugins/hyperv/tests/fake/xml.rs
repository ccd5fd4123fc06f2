//! A namespace-resolving XML reader for the fake endpoint: each element carries its
//! namespace URI (from the `xmlns` declarations in scope), so the checks compare
//! namespaces, not prefixes. Written independently of the plugin's own parser.

use quick_xml::events::{BytesStart, Event};
use std::collections::HashMap;

pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

#[derive(Debug, Clone, Default)]
pub struct X {
    pub ns: String,
    pub name: String,
    /// (namespace, local name, value); unprefixed attributes have no namespace
    pub attrs: Vec<(String, String, String)>,
    pub text: String,
    pub children: Vec<X>,
}

impl X {
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    pub fn find(&self, ns: &str, name: &str) -> Option<&X> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    pub fn all<'a>(&'a self, ns: &'a str, name: &'a str) -> impl Iterator<Item = &'a X> + 'a {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    pub fn attr(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, l, _)| n == ns && l == name)
            .map(|(_, _, v)| v.as_str())
    }

    pub fn trimmed(&self) -> &str {
        self.text.trim()
    }
}

fn entity(name: &str) -> Result<String, String> {
    Ok(match name {
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
            .ok_or_else(|| format!("unknown entity &{other};"))?,
    })
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or("unterminated entity")?;
        out.push_str(&entity(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

type Scope = HashMap<String, String>;

fn split(q: &str) -> (&str, &str) {
    match q.split_once(':') {
        Some((p, l)) => (p, l),
        None => ("", q),
    }
}

fn open(e: &BytesStart<'_>, parent: &Scope) -> Result<(X, Scope), String> {
    let mut scope = parent.clone();
    let mut raw = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        let key: &str = a.key.as_ref();
        let val: &str = &a.value;
        let val = unescape(val)?;
        if key == "xmlns" {
            scope.insert(String::new(), val);
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            scope.insert(p.to_string(), val);
        } else {
            raw.push((key.to_string(), val));
        }
    }
    let qn = e.name();
    let qname: &str = qn.as_ref();
    let (p, l) = split(qname);
    let ns = scope
        .get(p)
        .cloned()
        .ok_or_else(|| format!("undeclared prefix '{p}' on <{qname}>"))
        .or_else(|e| {
            if p.is_empty() {
                Ok(String::new())
            } else {
                Err(e)
            }
        })?;
    let mut x = X {
        ns,
        name: l.to_string(),
        ..X::default()
    };
    for (k, v) in raw {
        let (p, l) = split(&k);
        let ans = if p.is_empty() {
            String::new()
        } else if p == "xml" {
            NS_XML.to_string()
        } else {
            scope
                .get(p)
                .cloned()
                .ok_or_else(|| format!("undeclared prefix '{p}' on attribute {k}"))?
        };
        x.attrs.push((ans, l.to_string(), v));
    }
    Ok((x, scope))
}

/// Parses a document; errors name what is malformed.
pub fn parse(text: &str) -> Result<X, String> {
    let mut r = quick_xml::Reader::from_str(text);
    let mut stack: Vec<(X, Scope)> = Vec::new();
    let root_scope = Scope::new();
    let mut root = None;
    loop {
        let ev = r.read_event().map_err(|e| e.to_string())?;
        match ev {
            Event::Start(e) => {
                let parent = stack.last().map(|(_, s)| s).unwrap_or(&root_scope);
                let opened = open(&e, parent)?;
                stack.push(opened);
            }
            Event::Empty(e) => {
                let parent = stack.last().map(|(_, s)| s).unwrap_or(&root_scope);
                let (x, _) = open(&e, parent)?;
                match stack.last_mut() {
                    Some((p, _)) => p.children.push(x),
                    None => root = Some(x),
                }
            }
            Event::End(_) => {
                let (x, _) = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some((p, _)) => p.children.push(x),
                    None => root = Some(x),
                }
            }
            Event::Text(t) => {
                if let Some((x, _)) = stack.last_mut() {
                    x.text.push_str(&t.into_inner());
                }
            }
            Event::GeneralRef(g) => {
                if let Some((x, _)) = stack.last_mut() {
                    x.text.push_str(&entity(&g.xml10_content())?);
                }
            }
            Event::CData(c) => {
                if let Some((x, _)) = stack.last_mut() {
                    x.text.push_str(&c.xml10_content());
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

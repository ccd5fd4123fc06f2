//! A lossless generic XML tree: element names (with prefixes), attributes in
//! document order, and every child node (elements, text, comments, CDATA,
//! processing instructions).  Formatting follows libvirt's conventions:
//! 2-space indentation, single-quoted attributes, `<empty/>` elements.

use crate::error::XmlError;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// Deepest element nesting accepted (libxml2's default limit too); keeps
/// the recursive algorithms on the tree far from the stack limit.
pub const MAX_DEPTH: usize = 256;

/// One child node of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
    Comment(String),
    CData(String),
    /// Processing instruction, content without `<?` and `?>`.
    Pi(String),
}

/// A generic XML element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

/// An XML name: starts with a letter, `_` or `:` (or any non-ASCII
/// character), continues with those, digits, `-` and `.`.
fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_alphabetic() || first == '_' || first == ':' || !first.is_ascii())
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.') || !c.is_ascii())
}

/// Puts back whitespace seen right before text that follows it.
fn flush_ws(parent: &mut Element, ws: Option<&mut Vec<(usize, std::borrow::Cow<'_, str>)>>) {
    if let Some(ws) = ws
        && ws.last().is_some_and(|(i, _)| *i == parent.children.len())
        && let Some((_, w)) = ws.pop()
    {
        parent.push_text(&w);
    }
}

/// Errors of the tree module are reported as [`XmlError::Syntax`].
fn syntax(reader_pos: u64, xml: &str, problem: impl Into<String>) -> XmlError {
    let pos = usize::try_from(reader_pos)
        .unwrap_or(usize::MAX)
        .min(xml.len());
    let upto = xml.get(..pos).unwrap_or(xml);
    let line = upto.matches('\n').count() + 1;
    let col = upto
        .rsplit('\n')
        .next()
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    XmlError::Syntax {
        path: format!("line {line} column {col}"),
        problem: problem.into(),
    }
}

fn resolve_entity(name: &str) -> Option<String> {
    let s = match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        _ => {
            let num = name.strip_prefix('#')?;
            let code = if let Some(hex) = num.strip_prefix('x').or_else(|| num.strip_prefix('X')) {
                u32::from_str_radix(hex, 16).ok()?
            } else {
                num.parse::<u32>().ok()?
            };
            if code == 0 {
                return None;
            }
            return char::from_u32(code).map(|c| c.to_string());
        }
    };
    Some(s.to_string())
}

/// Unescapes an attribute value or text: predefined and character entities.
fn unescape(raw: &str) -> Option<String> {
    if !raw.contains('&') {
        return Some(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';')?;
        out.push_str(&resolve_entity(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Attribute-value normalisation of XML 1.0: literal tab, CR and LF become spaces.
fn normalize_attr_ws(raw: &str) -> std::borrow::Cow<'_, str> {
    if raw.contains(['\t', '\n', '\r']) {
        std::borrow::Cow::Owned(raw.replace("\r\n", " ").replace(['\t', '\n', '\r'], " "))
    } else {
        std::borrow::Cow::Borrowed(raw)
    }
}

impl Element {
    /// A new element without attributes or children.
    pub fn new(name: impl Into<String>) -> Element {
        Element {
            name: name.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Parses a document and returns its root element.  The XML declaration,
    /// DOCTYPE and anything outside the root element except whitespace,
    /// comments and processing instructions is rejected or skipped.
    pub fn parse(xml: &str) -> Result<Element, XmlError> {
        // XML 1.0 allows no C0 control characters other than tab, LF and CR
        if let Some(p) = xml
            .bytes()
            .position(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
        {
            return Err(syntax(
                p as u64,
                xml,
                "control character not allowed in XML",
            ));
        }
        let mut reader = Reader::from_str(xml);
        reader.config_mut().check_end_names = true;
        reader.config_mut().check_comments = true;
        let mut stack: Vec<Element> = Vec::new();
        // whitespace-only text seen in each open element, kept borrowed until
        // the element closes: layout whitespace in element-only content is
        // dropped, in mixed or text-only content it is put back in place
        let mut ws_stack: Vec<Vec<(usize, std::borrow::Cow<'_, str>)>> = Vec::new();
        let mut root: Option<Element> = None;
        loop {
            let pos = reader.buffer_position();
            let ev = match reader.read_event() {
                Ok(ev) => ev,
                Err(e) => {
                    let p = reader.error_position();
                    return Err(syntax(p, xml, e.to_string()));
                }
            };
            match ev {
                Event::Start(s) | Event::Empty(s) if root.is_some() && stack.is_empty() => {
                    let _ = s;
                    return Err(syntax(pos, xml, "extra content after the root element"));
                }
                Event::Start(s) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(syntax(
                            pos,
                            xml,
                            format!("elements nested deeper than {MAX_DEPTH}"),
                        ));
                    }
                    stack.push(Self::from_start(&s, pos, xml)?);
                    ws_stack.push(Vec::new());
                }
                Event::Empty(s) => {
                    let el = Self::from_start(&s, pos, xml)?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(Node::Element(el)),
                        None => root = Some(el),
                    }
                }
                Event::End(_) => {
                    let Some(mut el) = stack.pop() else {
                        return Err(syntax(pos, xml, "unexpected closing tag"));
                    };
                    let ws = ws_stack.pop().unwrap_or_default();
                    if !ws.is_empty() && el.keeps_whitespace() {
                        for (i, w) in ws.into_iter().rev() {
                            let i = i.min(el.children.len());
                            el.children.insert(i, Node::Text(w.into_owned()));
                        }
                    }
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(Node::Element(el)),
                        None => root = Some(el),
                    }
                }
                Event::Text(t) => {
                    let s = t.into_inner();
                    let s = if s.contains('\r') {
                        std::borrow::Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
                    } else {
                        s
                    };
                    match stack.last_mut() {
                        Some(parent) => {
                            let last_is_text =
                                matches!(parent.children.last(), Some(Node::Text(_)));
                            if s.trim().is_empty() && !last_is_text {
                                if let Some(ws) = ws_stack.last_mut() {
                                    ws.push((parent.children.len(), s));
                                }
                            } else {
                                flush_ws(parent, ws_stack.last_mut());
                                parent.push_text(&s);
                            }
                        }
                        None => {
                            if !s.trim().is_empty() {
                                return Err(syntax(pos, xml, "text outside the root element"));
                            }
                        }
                    }
                }
                Event::GeneralRef(r) => {
                    let name = r.xml10_content();
                    let Some(val) = resolve_entity(&name) else {
                        return Err(syntax(pos, xml, format!("unknown entity '&{name};'")));
                    };
                    match stack.last_mut() {
                        Some(parent) => {
                            flush_ws(parent, ws_stack.last_mut());
                            parent.push_text(&val);
                        }
                        None => return Err(syntax(pos, xml, "text outside the root element")),
                    }
                }
                Event::CData(c) => {
                    let s = c.xml10_content().into_owned();
                    match stack.last_mut() {
                        Some(parent) => {
                            flush_ws(parent, ws_stack.last_mut());
                            parent.children.push(Node::CData(s));
                        }
                        None => return Err(syntax(pos, xml, "cdata outside the root element")),
                    }
                }
                Event::Comment(c) => {
                    if let Some(parent) = stack.last_mut() {
                        parent
                            .children
                            .push(Node::Comment(c.xml10_content().into_owned()));
                    }
                }
                Event::PI(p) => {
                    if let Some(parent) = stack.last_mut() {
                        parent.children.push(Node::Pi(p.into_inner().into_owned()));
                    }
                }
                Event::Decl(_) | Event::DocType(_) => {}
                Event::Eof => break,
            }
        }
        if let Some(open) = stack.last() {
            return Err(syntax(
                xml.len() as u64,
                xml,
                format!("element '{}' is not closed", open.name),
            ));
        }
        root.ok_or_else(|| syntax(0, xml, "document has no root element"))
    }

    fn from_start(
        s: &quick_xml::events::BytesStart<'_>,
        pos: u64,
        xml: &str,
    ) -> Result<Element, XmlError> {
        let name = s.name().as_ref().to_string();
        if !valid_name(&name) {
            return Err(syntax(pos, xml, format!("invalid element name '{name}'")));
        }
        let mut el = Element::new(name);
        for a in s.attributes() {
            let a = a.map_err(|e| syntax(pos, xml, format!("in element '{}': {e}", el.name)))?;
            let key = a.key.as_ref().to_string();
            if !valid_name(&key) {
                return Err(syntax(pos, xml, format!("invalid attribute name '{key}'")));
            }
            let raw: &str = &a.value;
            if raw.contains('<') {
                return Err(syntax(
                    pos,
                    xml,
                    format!("'<' in value of attribute '{key}'"),
                ));
            }
            let norm = normalize_attr_ws(raw);
            let Some(val) = unescape(&norm) else {
                return Err(syntax(
                    pos,
                    xml,
                    format!("bad entity in value of attribute '{key}'"),
                ));
            };
            el.attrs.push((key, val));
        }
        Ok(el)
    }

    /// Whether whitespace-only text is content here: mixed content, or no
    /// child elements at all.
    fn keeps_whitespace(&self) -> bool {
        let mut has_elem = false;
        for n in &self.children {
            match n {
                Node::Element(_) => has_elem = true,
                Node::Text(t) if !t.trim().is_empty() => return true,
                Node::CData(_) => return true,
                _ => {}
            }
        }
        !has_elem
    }

    fn push_text(&mut self, s: &str) {
        if let Some(Node::Text(t)) = self.children.last_mut() {
            t.push_str(s);
        } else {
            self.children.push(Node::Text(s.to_string()));
        }
    }

    /// Qualified element name (`qemu:commandline`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the element.
    pub fn set_name(&mut self, name: &str) {
        self.name = name.to_string();
    }

    /// Local part of the name (after any prefix).
    pub fn local_name(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }

    /// Value of an attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets an attribute, keeping its position when it already exists.
    pub fn set_attr(&mut self, name: &str, value: &str) {
        if let Some(slot) = self.attrs.iter_mut().find(|(k, _)| k == name) {
            slot.1 = value.to_string();
        } else {
            self.attrs.push((name.to_string(), value.to_string()));
        }
    }

    /// Sets an attribute, inserting a new one at `index` (clamped).
    pub fn insert_attr(&mut self, index: usize, name: &str, value: &str) {
        if let Some(slot) = self.attrs.iter_mut().find(|(k, _)| k == name) {
            slot.1 = value.to_string();
        } else {
            let i = index.min(self.attrs.len());
            self.attrs.insert(i, (name.to_string(), value.to_string()));
        }
    }

    /// Removes an attribute if present.
    pub fn remove_attr(&mut self, name: &str) {
        self.attrs.retain(|(k, _)| k != name);
    }

    /// All attributes in order.
    pub fn attrs(&self) -> &[(String, String)] {
        &self.attrs
    }

    /// Mutable access to the attribute list.
    pub fn attrs_mut(&mut self) -> &mut Vec<(String, String)> {
        &mut self.attrs
    }

    /// First child element with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }

    /// First child element with this name, mutably.
    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.name == name)
    }

    /// First child element with this name, appended when absent.
    #[allow(clippy::unreachable)]
    pub fn child_or_insert(&mut self, name: &str) -> &mut Element {
        let idx = match self
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(c) if c.name == name))
        {
            Some(i) => i,
            None => {
                self.children.push(Node::Element(Element::new(name)));
                self.children.len() - 1
            }
        };
        match &mut self.children[idx] {
            Node::Element(e) => e,
            // the index was chosen to point at an element
            _ => unreachable!(),
        }
    }

    /// Child elements with this name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements().filter(move |e| e.name == name)
    }

    /// Child elements with this name, mutably.
    pub fn children_named_mut<'a>(
        &'a mut self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a mut Element> + 'a {
        self.elements_mut().filter(move |e| e.name == name)
    }

    /// All child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// All child elements, mutably.
    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// All child nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.children
    }

    /// All child nodes, mutably.
    pub fn nodes_mut(&mut self) -> &mut Vec<Node> {
        &mut self.children
    }

    /// Concatenated text and CDATA content of the direct children.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            match n {
                Node::Text(t) | Node::CData(t) => s.push_str(t),
                _ => {}
            }
        }
        s
    }

    /// The text content when it is a single text node (borrowed).
    pub fn text_ref(&self) -> Option<&str> {
        let mut found = None;
        for n in &self.children {
            match n {
                Node::Text(t) | Node::CData(t) => {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(t.as_str());
                }
                Node::Element(_) => return None,
                _ => {}
            }
        }
        found
    }

    /// Replaces all text/CDATA children by one text node (keeps elements/comments).
    pub fn set_text(&mut self, text: &str) {
        self.children
            .retain(|n| !matches!(n, Node::Text(_) | Node::CData(_)));
        if !text.is_empty() {
            self.children.insert(0, Node::Text(text.to_string()));
        }
    }

    /// Appends a child element.
    pub fn push(&mut self, e: Element) {
        self.children.push(Node::Element(e));
    }

    /// Builder: adds an attribute.
    pub fn with_attr(mut self, name: &str, value: &str) -> Element {
        self.set_attr(name, value);
        self
    }

    /// Builder: sets the text.
    pub fn with_text(mut self, text: &str) -> Element {
        self.set_text(text);
        self
    }

    /// Drops text and CDATA from every element below this one that has
    /// child elements (element-only content), except inside the named
    /// subtrees (free-form XML such as `<metadata>`).
    pub fn drop_stray_text(&mut self, keep_subtrees: &[&str]) {
        if keep_subtrees.contains(&self.name.as_str()) {
            return;
        }
        if self.children.iter().any(|n| matches!(n, Node::Element(_))) {
            self.children
                .retain(|n| !matches!(n, Node::Text(_) | Node::CData(_)));
        }
        for c in self.elements_mut() {
            c.drop_stray_text(keep_subtrees);
        }
    }

    /// Removes child elements matching a predicate.
    pub fn remove_children(&mut self, mut pred: impl FnMut(&Element) -> bool) {
        self.children.retain(|n| match n {
            Node::Element(e) => !pred(e),
            _ => true,
        });
    }

    /// True when the element has neither attributes nor meaningful children.
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
            && self.children.iter().all(|n| match n {
                Node::Text(t) => t.trim().is_empty(),
                _ => false,
            })
    }

    /// Serialises the element with libvirt's conventions (ends with a newline).
    pub fn to_xml_string(&self) -> String {
        let mut out = String::with_capacity(1024);
        self.write(&mut out, 0);
        out
    }

    /// Writes the element at the given indentation depth.
    pub fn write(&self, out: &mut String, depth: usize) {
        indent(out, depth);
        self.write_open(out);
        self.write_body(out, depth);
    }

    /// Serialises the element as [`Element::to_xml_string`] would with `attrs` as its own
    /// attributes (its children unchanged): a variant of the root without copying the tree.
    pub fn to_xml_string_with_attrs(&self, attrs: &[(&str, &str)]) -> String {
        let mut out = String::with_capacity(1024);
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in attrs {
            write_attr(k, v, &mut out);
        }
        self.write_body(&mut out, 0);
        out
    }

    /// What follows the attributes of the opening tag: content and the closing tag.
    fn write_body(&self, out: &mut String, depth: usize) {
        // one pass over the children says which layout applies
        let (mut has_elem, mut has_other, mut has_text, mut only_layout_ws) =
            (false, false, false, true);
        for n in &self.children {
            match n {
                Node::Element(_) => has_elem = true,
                Node::Comment(_) | Node::Pi(_) => has_other = true,
                Node::Text(t) => {
                    let blank = t.trim().is_empty();
                    has_text |= !blank;
                    only_layout_ws &= blank && (t.is_empty() || t.contains('\n'));
                }
                Node::CData(_) => {
                    has_text = true;
                    only_layout_ws = false;
                }
            }
        }
        if !has_elem && !has_other {
            // leaf: text content, or empty
            if only_layout_ws {
                out.push_str("/>\n");
            } else {
                out.push('>');
                for n in &self.children {
                    write_inline(n, out);
                }
                out.push_str("</");
                out.push_str(&self.name);
                out.push_str(">\n");
            }
        } else if has_text {
            // mixed content: reproduce inline, exactly
            out.push('>');
            for n in &self.children {
                write_inline(n, out);
            }
            out.push_str("</");
            out.push_str(&self.name);
            out.push_str(">\n");
        } else {
            out.push_str(">\n");
            for n in &self.children {
                match n {
                    Node::Element(e) => e.write(out, depth + 1),
                    Node::Comment(c) => {
                        indent(out, depth + 1);
                        out.push_str("<!--");
                        out.push_str(c);
                        out.push_str("-->\n");
                    }
                    Node::Pi(p) => {
                        indent(out, depth + 1);
                        out.push_str("<?");
                        out.push_str(p);
                        out.push_str("?>\n");
                    }
                    Node::Text(_) | Node::CData(_) => {}
                }
            }
            indent(out, depth);
            out.push_str("</");
            out.push_str(&self.name);
            out.push_str(">\n");
        }
    }

    fn write_open(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            write_attr(k, v, out);
        }
    }

    /// Writes the element without any added whitespace.
    fn write_compact(&self, out: &mut String) {
        self.write_open(out);
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for n in &self.children {
            write_inline(n, out);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

fn write_attr(k: &str, v: &str, out: &mut String) {
    out.push(' ');
    out.push_str(k);
    out.push_str("='");
    escape_into(v, out, true);
    out.push('\'');
}

fn write_inline(n: &Node, out: &mut String) {
    match n {
        Node::Element(e) => e.write_compact(out),
        Node::Text(t) => escape_into(t, out, false),
        Node::CData(c) => {
            out.push_str("<![CDATA[");
            out.push_str(c);
            out.push_str("]]>");
        }
        Node::Comment(c) => {
            out.push_str("<!--");
            out.push_str(c);
            out.push_str("-->");
        }
        Node::Pi(p) => {
            out.push_str("<?");
            out.push_str(p);
            out.push_str("?>");
        }
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Escapes `<`, `>`, `&` and, in attributes, quotes and layout whitespace.
pub(crate) fn escape_into(s: &str, out: &mut String, attr: bool) {
    let special = |b: u8| {
        matches!(b, b'<' | b'>' | b'&' | b'\r')
            || (attr && matches!(b, b'\'' | b'"' | b'\n' | b'\t'))
    };
    if !s.bytes().any(special) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' if attr => out.push_str("&apos;"),
            '"' if attr => out.push_str("&quot;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#9;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_roundtrip() {
        let x = "<?xml version=\"1.0\"?>\n<a x=\"1\" y='&lt;2&apos;'><!-- c --><b>t&amp;u</b><c/>\n<d><e/></d></a>";
        let e = Element::parse(x).expect("parse");
        assert_eq!(e.name(), "a");
        assert_eq!(e.attr("y"), Some("<2'"));
        assert_eq!(e.child("b").map(|b| b.text()), Some("t&u".to_string()));
        let out = e.to_xml_string();
        assert_eq!(
            out,
            "<a x='1' y='&lt;2&apos;'>\n  <!-- c -->\n  <b>t&amp;u</b>\n  <c/>\n  <d>\n    <e/>\n  </d>\n</a>\n"
        );
        let again = Element::parse(&out).expect("reparse");
        assert_eq!(again.to_xml_string(), out);
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(Element::parse(&deep).is_err());
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(Element::parse(&ok).is_ok());
    }

    #[test]
    fn malformed_is_error() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a x='1' x='2'/>",
            "<a>&foo;</a>",
            "<a/><b/>",
            "text",
            "< />",
            "<1a/>",
            "<a><-b/></a>",
        ] {
            assert!(Element::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn attrs_and_children() {
        let mut e = Element::parse("<r a='1'><k>1</k><k>2</k><j/></r>").expect("parse");
        e.set_attr("b", "2");
        e.set_attr("a", "3");
        assert_eq!(e.attrs()[0], ("a".to_string(), "3".to_string()));
        e.remove_attr("a");
        assert_eq!(e.attr("a"), None);
        assert_eq!(e.children_named("k").count(), 2);
        assert_eq!(e.elements().count(), 3);
    }

    #[test]
    fn mixed_content_kept_inline() {
        let e = Element::parse("<p>a <b>b</b> c</p>").expect("parse");
        assert_eq!(e.to_xml_string(), "<p>a <b>b</b> c</p>\n");
        let e = Element::parse("<p><b>x</b> <i>y</i> tail &amp; <![CDATA[z]]></p>").expect("parse");
        assert_eq!(
            e.to_xml_string(),
            "<p><b>x</b> <i>y</i> tail &amp; <![CDATA[z]]></p>\n"
        );
        let e = Element::parse("<r>\n  <c> </c>\n  <d>\n  </d>\n</r>").expect("parse");
        assert_eq!(e.to_xml_string(), "<r>\n  <c> </c>\n  <d/>\n</r>\n");
        assert_eq!(e.nodes().len(), 2);
    }
}

//! The `.vmx` file: `key = "value"` lines, kept in order with their comments and blank
//! lines, so that a file read and written again changes only what was changed.
//!
//! Keys are case-insensitive, as VMware reads them; the spelling of the file is kept.
//! Values are stored as the file holds them (VMware's own `|XX` escapes included): use
//! [`unescape`] and [`escape`] for free text such as `displayName` and `annotation`.

use crate::error::VmxError;

/// One line of a `.vmx` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `key = "value"`.
    Entry { key: String, value: String },
    /// A comment (`# ...`, kept whole) or a blank line (empty string).
    Other(String),
}

/// A `.vmx` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vmx {
    lines: Vec<Line>,
}

impl Vmx {
    /// An empty file.
    pub fn new() -> Vmx {
        Vmx::default()
    }

    /// Reads a file's text. Values may be quoted (`"..."`) or bare; a later entry with the
    /// same key wins on lookup, as in VMware.
    pub fn parse(text: &str) -> Result<Vmx, VmxError> {
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                lines.push(Line::Other(raw.trim_end().to_string()));
                continue;
            }
            let Some((k, v)) = t.split_once('=') else {
                return Err(VmxError::Syntax {
                    line: i + 1,
                    text: raw.to_string(),
                });
            };
            let key = k.trim();
            let v = v.trim();
            let value = if let Some(inner) = v.strip_prefix('"') {
                match inner.strip_suffix('"') {
                    Some(s) => s,
                    None => {
                        return Err(VmxError::Syntax {
                            line: i + 1,
                            text: raw.to_string(),
                        });
                    }
                }
            } else {
                v
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(VmxError::Syntax {
                    line: i + 1,
                    text: raw.to_string(),
                });
            }
            lines.push(Line::Entry {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        Ok(Vmx { lines })
    }

    /// Every line in order.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The entries in order, `(key, value)`.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry { key, value } => Some((key.as_str(), value.as_str())),
            Line::Other(_) => None,
        })
    }

    /// The value of `key` (case-insensitive; the last entry wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines.iter().rev().find_map(|l| match l {
            Line::Entry { key: k, value } if k.eq_ignore_ascii_case(key) => Some(value.as_str()),
            _ => None,
        })
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key`: the existing entry keeps its place and spelling, a new one is appended.
    pub fn set(&mut self, key: &str, value: &str) {
        for l in self.lines.iter_mut().rev() {
            if let Line::Entry { key: k, value: v } = l
                && k.eq_ignore_ascii_case(key)
            {
                *v = value.to_string();
                return;
            }
        }
        self.lines.push(Line::Entry {
            key: key.to_string(),
            value: value.to_string(),
        });
    }

    /// Removes every entry of `key`.
    pub fn remove(&mut self, key: &str) {
        self.lines
            .retain(|l| !matches!(l, Line::Entry { key: k, .. } if k.eq_ignore_ascii_case(key)));
    }

    /// A boolean entry (`true`/`false`, any case); `None` when absent.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, VmxError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(VmxError::bad(key, v, "expected 'true' or 'false'")),
        }
    }

    /// An unsigned integer entry; `None` when absent. The value `-1` reads as absent too,
    /// as VMware writes it for "unset".
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, VmxError> {
        match self.get(key) {
            None => Ok(None),
            Some("-1") => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| VmxError::bad(key, v, "expected an unsigned integer")),
        }
    }

    /// The file's text: `key = "value"` lines, comments and blank lines as read.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            match l {
                Line::Entry { key, value } => {
                    out.push_str(key);
                    out.push_str(" = \"");
                    out.push_str(value);
                    out.push_str("\"\n");
                }
                Line::Other(t) => {
                    out.push_str(t);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Decodes VMware's `|XX` escapes (two hex digits, a byte of UTF-8).
pub fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'|'
            && let Some(h) = value.get(i + 1..i + 3)
            && h.bytes().all(|c| c.is_ascii_hexdigit())
            && let Ok(b) = u8::from_str_radix(h, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes text for a `.vmx` value: `"` as `|22`, `|` as `|7c`, newlines as `|0a`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("|22"),
            '|' => out.push_str("|7c"),
            '\n' => out.push_str("|0a"),
            '\r' => out.push_str("|0d"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_comments_order_and_case() {
        let text =
            "#!/usr/bin/vmware\nconfig.version = \"8\"\n\nDisplayName = \"a b\"\nmemsize = 512\n";
        let mut v = Vmx::parse(text).unwrap();
        assert_eq!(v.get("displayname"), Some("a b"));
        assert_eq!(v.get_u64("memsize").unwrap(), Some(512));
        v.set("displayName", "c");
        v.set("numvcpus", "2");
        assert_eq!(
            v.to_text(),
            "#!/usr/bin/vmware\nconfig.version = \"8\"\n\nDisplayName = \"c\"\nmemsize = \"512\"\nnumvcpus = \"2\"\n"
        );
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = Vmx::parse("a = \"1\"\nnonsense\n").unwrap_err();
        assert_eq!(e.to_string(), "malformed .vmx line 2: 'nonsense'");
        let v = Vmx::parse("memsize = \"lots\"").unwrap();
        assert_eq!(
            v.get_u64("memsize").unwrap_err().to_string(),
            "VMX entry 'memsize' has invalid value 'lots': expected an unsigned integer"
        );
    }

    #[test]
    fn escapes_round_trip() {
        let t = "Some |text| \"q\"";
        assert_eq!(escape(t), "Some |7ctext|7c |22q|22");
        assert_eq!(unescape(&escape(t)), t);
        assert_eq!(unescape("|45|73c"), "Esc");
    }
}

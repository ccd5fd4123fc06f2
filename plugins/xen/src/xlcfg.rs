//! The `xl.cfg(5)` file syntax: `KEY = VALUE` settings, one a line or separated by `;`,
//! `#` comments; a value is a number, a string in double or single quotes (backslash
//! escapes decoded as libxlutil decodes them) or a list `[ VALUE, ... ]` (nested lists
//! for `vnuma`). `KEY += LIST` appends. Settings keep their order; a repeated key
//! replaces the earlier value, as in libxlutil.

use std::fmt::Write;

/// A setting's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A number as written (xl reads numbers as C `long`).
    Num(i64),
    /// A string, escapes decoded.
    Str(String),
    /// A list of strings (or, for `vnuma`, of lists).
    List(Vec<Value>),
}

impl Value {
    /// A list of strings.
    pub fn strings<S: AsRef<str>>(items: &[S]) -> Value {
        Value::List(
            items
                .iter()
                .map(|s| Value::Str(s.as_ref().to_string()))
                .collect(),
        )
    }
}

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SyntaxError {
    /// The text does not follow the xl.cfg syntax.
    #[error("xl.cfg line {line}: {what}")]
    Syntax { line: usize, what: String },
}

/// A parsed or built `xl.cfg`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cfg {
    entries: Vec<(String, Value)>,
}

impl Cfg {
    /// An empty configuration.
    pub fn new() -> Cfg {
        Cfg::default()
    }

    /// The settings in order.
    pub fn entries(&self) -> &[(String, Value)] {
        &self.entries
    }

    /// A setting's value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets (or replaces, in place) a setting.
    pub fn set(&mut self, key: &str, value: Value) {
        if let Some(e) = self.entries.iter_mut().find(|(k, _)| k == key) {
            e.1 = value;
        } else {
            self.entries.push((key.to_string(), value));
        }
    }

    /// Sets a string setting.
    pub fn set_str(&mut self, key: &str, value: &str) {
        self.set(key, Value::Str(value.to_string()));
    }

    /// Sets a number setting.
    pub fn set_num(&mut self, key: &str, value: i64) {
        self.set(key, Value::Num(value));
    }

    /// Removes a setting.
    pub fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _)| k != key);
    }

    /// Parses xl.cfg text.
    pub fn parse(text: &str) -> Result<Cfg, SyntaxError> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
            line: 1,
        };
        let mut cfg = Cfg::new();
        loop {
            p.skip_blank(true);
            if p.i >= p.s.len() {
                break;
            }
            if p.peek() == Some(b';') {
                p.i += 1;
                continue;
            }
            let key = p.ident()?;
            p.skip_blank(false);
            let append = if p.s[p.i..].starts_with(b"+=") {
                p.i += 2;
                true
            } else if p.peek() == Some(b'=') {
                p.i += 1;
                false
            } else {
                return Err(p.err(format!("expected '=' after '{key}'")));
            };
            p.skip_blank(false);
            let v = p.value()?;
            p.skip_blank(false);
            match p.peek() {
                None | Some(b'\n') | Some(b';') => {}
                Some(c) => {
                    return Err(p.err(format!(
                        "unexpected '{}' after the value of '{key}'",
                        c as char
                    )));
                }
            }
            if append {
                match (cfg.get(&key).cloned(), v) {
                    (Some(Value::List(mut a)), Value::List(b)) => {
                        a.extend(b);
                        cfg.set(&key, Value::List(a));
                    }
                    (None, v @ Value::List(_)) => cfg.set(&key, v),
                    _ => {
                        return Err(p.err(format!("'{key} +=' needs a list on both sides")));
                    }
                }
            } else {
                cfg.set(&key, v);
            }
        }
        Ok(cfg)
    }

    /// Writes the settings as libvirt writes xl.cfg: `key = value` lines, strings in
    /// double quotes, lists as `[ "a", "b" ]`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.entries {
            let _ = write!(out, "{k} = ");
            write_value(&mut out, v);
            out.push('\n');
        }
        out
    }
}

/// Quotes a string for xl.cfg: backslash and double quote escaped, control characters
/// as `\n`, `\t` or octal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Num(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Str(s) => out.push_str(&quote(s)),
        Value::List(items) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                out.push_str(if i == 0 { " " } else { ", " });
                write_value(out, it);
            }
            out.push_str(" ]");
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
}

impl Parser<'_> {
    fn err(&self, what: String) -> SyntaxError {
        SyntaxError::Syntax {
            line: self.line,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips spaces and comments; newlines too where `newlines`.
    fn skip_blank(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' => self.i += 1,
                b'\n' if newlines => {
                    self.line += 1;
                    self.i += 1;
                }
                b'#' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn ident(&mut self) -> Result<String, SyntaxError> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'_' {
                self.i += 1;
            } else {
                break;
            }
        }
        if start == self.i || self.s[start].is_ascii_digit() {
            let c = self
                .peek()
                .map_or("end of file".to_string(), |c| format!("'{}'", c as char));
            return Err(self.err(format!("expected a setting name, found {c}")));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn value(&mut self) -> Result<Value, SyntaxError> {
        match self.peek() {
            Some(b'"') | Some(b'\'') => self.string().map(Value::Str),
            Some(b'[') => self.list(),
            Some(c) if c.is_ascii_digit() || c == b'-' => self.number(),
            Some(c) => Err(self.err(format!("unexpected '{}' where a value belongs", c as char))),
            None => Err(self.err("missing value at end of file".into())),
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() {
                self.i += 1;
            } else {
                break;
            }
        }
        let t = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        let parsed = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            i64::from_str_radix(h, 16).ok()
        } else {
            t.parse::<i64>().ok()
        };
        parsed
            .map(Value::Num)
            .ok_or_else(|| self.err(format!("'{t}' is not a number")))
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let q = self.s[self.i];
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("unterminated string".into()));
            };
            self.i += 1;
            match c {
                b'\n' => return Err(self.err("newline inside a string".into())),
                c if c == q => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.err("unterminated string".into()));
                    };
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'x' => {
                            let start = self.i;
                            while self.i < start + 2
                                && self.peek().is_some_and(|c| c.is_ascii_hexdigit())
                            {
                                self.i += 1;
                            }
                            let h = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                            let v = u8::from_str_radix(h, 16)
                                .map_err(|_| self.err("bad \\x escape".into()))?;
                            out.push(v);
                        }
                        b'0'..=b'7' => {
                            let start = self.i - 1;
                            while self.i < start + 3
                                && self.peek().is_some_and(|c| (b'0'..=b'7').contains(&c))
                            {
                                self.i += 1;
                            }
                            let o = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("0");
                            out.push(u8::from_str_radix(o, 8).unwrap_or(0));
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("a string is not UTF-8".into()))
    }

    fn list(&mut self) -> Result<Value, SyntaxError> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.skip_blank(true);
            match self.peek() {
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::List(items));
                }
                None => return Err(self.err("unterminated list".into())),
                _ => {}
            }
            items.push(self.value()?);
            self.skip_blank(true);
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {}
                Some(c) => {
                    return Err(self.err(format!(
                        "expected ',' or ']' in a list, found '{}'",
                        c as char
                    )));
                }
                None => return Err(self.err("unterminated list".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_lists_comments_and_escapes() {
        let c = Cfg::parse(
            "# c\nname = \"a b\" # x\nmemory=512; vcpus = 2\ndisk = [ 'x,y' ,\n \"z\", ]\n\
             s = \"a\\\\:b\\\"q\\x41\\101\"\nv = [ [ \"p=0\" ], [ \"p=1\" ] ]\ndisk += [ \"w\" ]\n",
        )
        .unwrap();
        assert_eq!(c.get("name"), Some(&Value::Str("a b".into())));
        assert_eq!(c.get("memory"), Some(&Value::Num(512)));
        assert_eq!(c.get("vcpus"), Some(&Value::Num(2)));
        assert_eq!(c.get("disk"), Some(&Value::strings(&["x,y", "z", "w"])));
        assert_eq!(c.get("s"), Some(&Value::Str("a\\:b\"qAA".into())));
        assert_eq!(
            c.get("v"),
            Some(&Value::List(vec![
                Value::strings(&["p=0"]),
                Value::strings(&["p=1"])
            ]))
        );
    }

    #[test]
    fn writes_what_it_reads() {
        let mut c = Cfg::new();
        c.set_str("name", "g\\1\"");
        c.set_num("memory", 394);
        c.set("disk", Value::strings(&["a", "b"]));
        let t = c.to_text();
        assert_eq!(
            t,
            "name = \"g\\\\1\\\"\"\nmemory = 394\ndisk = [ \"a\", \"b\" ]\n"
        );
        assert_eq!(Cfg::parse(&t).unwrap(), c);
    }

    #[test]
    fn reports_bad_syntax_with_line() {
        assert_eq!(
            Cfg::parse("a = 1\nb 2\n").unwrap_err(),
            SyntaxError::Syntax {
                line: 2,
                what: "expected '=' after 'b'".into()
            }
        );
        assert!(Cfg::parse("a = \"x").is_err());
        assert!(Cfg::parse("a = [ \"x\"").is_err());
        assert!(Cfg::parse("a = 1 2").is_err());
    }
}

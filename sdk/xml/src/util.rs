//! Small helpers shared by the document models: UUIDs, scaled units, MAC
//! addresses and error paths.

use crate::error::XmlError;
use crate::tree::Element;

/// Parses a UUID the way libvirt accepts it: 32 hex digits, dashes anywhere,
/// surrounding whitespace ignored.
pub fn parse_uuid(s: &str) -> Option<uuid::Uuid> {
    let s = s.trim();
    let mut bytes = [0u8; 16];
    let mut n = 0usize;
    let mut hi: Option<u8> = None;
    for c in s.chars() {
        if c == '-' {
            continue;
        }
        let d = c.to_digit(16)? as u8;
        match hi.take() {
            None => hi = Some(d),
            Some(h) => {
                *bytes.get_mut(n)? = (h << 4) | d;
                n += 1;
            }
        }
    }
    if n != 16 || hi.is_some() {
        return None;
    }
    Some(uuid::Uuid::from_bytes(bytes))
}

/// Multiplier for a libvirt unit suffix (`KiB`, `k`, `MB`, `bytes`, ...).
pub fn unit_multiplier(unit: &str) -> Option<u64> {
    let u = unit.trim();
    if u.is_empty() {
        return None;
    }
    if u.eq_ignore_ascii_case("b") || u.eq_ignore_ascii_case("bytes") {
        return Some(1);
    }
    let mut chars = u.chars();
    let first = chars.next()?.to_ascii_lowercase();
    let rest = chars.as_str();
    let power = match first {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        'e' => 6,
        _ => return None,
    };
    let base: u64 = match rest {
        "" | "iB" | "ib" => 1024,
        "B" | "b" => 1000,
        _ => return None,
    };
    base.checked_pow(power)
}

/// Parses an unsigned integer the way libvirt's strtoul wrappers do
/// (decimal, optional surrounding whitespace, optional `0x` prefix).
pub fn parse_u64(s: &str) -> Option<u64> {
    let t = s.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    t.parse::<u64>().ok()
}

/// Scales `value unit` to bytes.  `default_unit_bytes` applies without a unit.
pub fn scale_to_bytes(
    value: &str,
    unit: Option<&str>,
    default_unit_bytes: u64,
) -> Result<u64, String> {
    let v = parse_u64(value).ok_or_else(|| format!("invalid number '{}'", value.trim()))?;
    let mult = match unit {
        None => default_unit_bytes,
        Some(u) => unit_multiplier(u).ok_or_else(|| format!("unknown unit '{u}'"))?,
    };
    v.checked_mul(mult)
        .ok_or_else(|| "value too large".to_string())
}

/// A random locally administered MAC in libvirt's QEMU prefix 52:54:00.
pub fn generate_mac() -> String {
    let b: [u8; 3] = rand::random();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// Canonical MAC spelling (lower case, two digits per byte) or `None`.
pub fn canonical_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = String::with_capacity(17);
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        let v = u8::from_str_radix(p, 16).ok()?;
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{v:02x}"));
    }
    Some(out)
}

/// Path of the `k`th (0-based) child named `name` of `parent` (at `parent_path`):
/// `parent/name` when unique, `parent/name[k+1]` otherwise.
pub fn child_path(parent_path: &str, parent: &Element, name: &str, k: usize) -> String {
    if parent.children_named(name).nth(1).is_some() {
        format!("{parent_path}/{name}[{}]", k + 1)
    } else {
        format!("{parent_path}/{name}")
    }
}

/// Sibling counts of an element, for building indexed paths without
/// keeping a copy of the element around.
#[derive(Debug, Default)]
pub struct Siblings(Vec<(String, usize)>);

impl Siblings {
    /// Counts the child element names of `e`.
    pub fn of(e: &Element) -> Siblings {
        let mut v: Vec<(String, usize)> = Vec::new();
        for c in e.elements() {
            match v.iter_mut().find(|(n, _)| n == c.name()) {
                Some(x) => x.1 += 1,
                None => v.push((c.name().to_string(), 1)),
            }
        }
        Siblings(v)
    }

    /// Path of the `k`th (0-based) child named `name`, like [`child_path`].
    pub fn path(&self, base: &str, name: &str, k: usize) -> String {
        let total = self.0.iter().find(|(n, _)| n == name).map_or(0, |x| x.1);
        if total > 1 {
            format!("{base}/{name}[{}]", k + 1)
        } else {
            format!("{base}/{name}")
        }
    }
}

/// Requires an attribute.
pub fn req_attr<'a>(e: &'a Element, path: &str, name: &str) -> Result<&'a str, XmlError> {
    e.attr(name)
        .ok_or_else(|| XmlError::missing_attr(format!("{path}/@{name}")))
}

/// Requires a child element.
pub fn req_child<'a>(e: &'a Element, path: &str, name: &str) -> Result<&'a Element, XmlError> {
    e.child(name)
        .ok_or_else(|| XmlError::missing_element(format!("{path}/{name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_forms() {
        let u = parse_uuid("c7a5fdbd-edaf-9455-926a-d65c16db1809").expect("uuid");
        assert_eq!(u.to_string(), "c7a5fdbd-edaf-9455-926a-d65c16db1809");
        assert_eq!(parse_uuid(" c7a5fdbdedaf9455926ad65c16db1809 "), Some(u));
        assert_eq!(parse_uuid("nope"), None);
        assert_eq!(parse_uuid("c7a5fdbdedaf9455926ad65c16db180"), None);
    }

    #[test]
    fn units() {
        assert_eq!(unit_multiplier("KiB"), Some(1024));
        assert_eq!(unit_multiplier("k"), Some(1024));
        assert_eq!(unit_multiplier("KB"), Some(1000));
        assert_eq!(unit_multiplier("G"), Some(1 << 30));
        assert_eq!(unit_multiplier("bytes"), Some(1));
        assert_eq!(unit_multiplier("xyz"), None);
        assert_eq!(scale_to_bytes("2", Some("MiB"), 1024), Ok(2 << 20));
        assert!(scale_to_bytes("99999999999999999999", None, 1).is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(
            canonical_mac("52:54:0:AB:cd:1").as_deref(),
            Some("52:54:00:ab:cd:01")
        );
        assert!(canonical_mac("52:54:00").is_none());
        assert!(canonical_mac(&generate_mac()).is_some());
    }
}

//! The secret document (`<secret ephemeral='no' private='yes'>`), as libvirt's secret
//! driver reads it: a UUID, an optional description and a usage naming what the secret is
//! for (a volume path, a Ceph or iSCSI name, a TLS or vTPM name).

use crate::FormatOptions;
use crate::error::XmlError;
use crate::tree::Element;
use crate::util::parse_uuid;

/// `VIR_SECRET_USAGE_TYPE_*`: the usage element and the name of its identifying child.
pub const USAGE_TYPES: &[(&str, i32, &str)] = &[
    ("none", 0, ""),
    ("volume", 1, "volume"),
    ("ceph", 2, "name"),
    ("iscsi", 3, "target"),
    ("tls", 4, "name"),
    ("vtpm", 5, "name"),
];

/// A validated secret definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Secret {
    root: Element,
}

fn yes_no(root: &Element, attr: &str) -> Result<bool, XmlError> {
    match root.attr(attr) {
        None | Some("no") => Ok(false),
        Some("yes") => Ok(true),
        Some(other) => Err(XmlError::invalid(
            format!("secret/@{attr}"),
            format!("invalid value '{other}': expected 'yes' or 'no'"),
        )),
    }
}

impl Secret {
    /// Parses and validates a secret document.
    pub fn parse(xml: &str) -> Result<Secret, XmlError> {
        Secret::from_element(Element::parse(xml)?)
    }

    /// Validates a parsed tree.
    pub fn from_element(root: Element) -> Result<Secret, XmlError> {
        if root.name() != "secret" {
            return Err(XmlError::invalid(
                root.name().to_string(),
                "unexpected root element, expected 'secret'",
            ));
        }
        yes_no(&root, "ephemeral")?;
        yes_no(&root, "private")?;
        if let Some(u) = root.child("uuid") {
            let text = u.text();
            if parse_uuid(&text).is_none() {
                return Err(XmlError::invalid(
                    "secret/uuid",
                    format!("malformed uuid '{}'", text.trim()),
                ));
            }
        }
        if let Some(usage) = root.child("usage") {
            let ty = usage
                .attr("type")
                .ok_or_else(|| XmlError::missing_attr("secret/usage/@type"))?;
            let Some((_, _, child)) = USAGE_TYPES.iter().find(|(t, _, _)| *t == ty) else {
                return Err(XmlError::invalid(
                    "secret/usage/@type",
                    format!("unknown secret usage type '{ty}'"),
                ));
            };
            if !child.is_empty()
                && usage
                    .child(child)
                    .map(|c| c.text())
                    .is_none_or(|t| t.trim().is_empty())
            {
                return Err(XmlError::missing_element(format!("secret/usage/{child}")));
            }
        }
        Ok(Secret { root })
    }

    /// The UUID; nil when the document has none (the driver then makes one).
    pub fn uuid(&self) -> uuid::Uuid {
        self.root
            .child("uuid")
            .and_then(|u| parse_uuid(&u.text()))
            .unwrap_or_else(uuid::Uuid::nil)
    }

    /// Sets (or adds) the UUID.
    pub fn set_uuid(&mut self, u: uuid::Uuid) {
        self.root.child_or_insert("uuid").set_text(&u.to_string());
    }

    /// `ephemeral='yes'`: never written to disk.
    pub fn ephemeral(&self) -> bool {
        self.root.attr("ephemeral") == Some("yes")
    }

    /// `private='yes'`: the value is never returned to a client.
    pub fn private(&self) -> bool {
        self.root.attr("private") == Some("yes")
    }

    /// The usage type number (`VIR_SECRET_USAGE_TYPE_*`), 0 without a usage.
    pub fn usage_type(&self) -> i32 {
        self.root
            .child("usage")
            .and_then(|u| u.attr("type"))
            .and_then(|t| USAGE_TYPES.iter().find(|(n, _, _)| *n == t))
            .map_or(0, |(_, n, _)| *n)
    }

    /// What the usage names (a volume path, a Ceph name, an iSCSI target...), if any.
    pub fn usage_id(&self) -> Option<String> {
        let usage = self.root.child("usage")?;
        let ty = usage.attr("type")?;
        let (_, _, child) = USAGE_TYPES.iter().find(|(n, _, _)| *n == ty)?;
        usage
            .child(child)
            .map(|c| c.text().trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Formats like libvirt (the value itself is never part of the document).
    pub fn to_xml(&self, _opts: &FormatOptions) -> String {
        self.root.to_xml_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usages_and_flags() {
        let s = Secret::parse(
            "<secret ephemeral='no' private='yes'><uuid>0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f</uuid>\
             <usage type='ceph'><name>client.admin secret</name></usage></secret>",
        )
        .unwrap();
        assert_eq!(s.usage_type(), 2);
        assert_eq!(s.usage_id().as_deref(), Some("client.admin secret"));
        assert!(s.private() && !s.ephemeral());
        assert_eq!(s.uuid().to_string(), "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f");
        let v = Secret::parse(
            "<secret><usage type='volume'><volume>/var/lib/x.img</volume></usage></secret>",
        )
        .unwrap();
        assert_eq!((v.usage_type(), v.uuid().is_nil()), (1, true));
        let mut v = v;
        let u = uuid::Uuid::new_v4();
        v.set_uuid(u);
        assert_eq!(
            Secret::parse(&v.to_xml(&FormatOptions::default()))
                .unwrap()
                .uuid(),
            u
        );
        assert_eq!(Secret::parse("<secret/>").unwrap().usage_type(), 0);
    }

    #[test]
    fn errors_name_the_field() {
        for (xml, want) in [
            ("<secret ephemeral='maybe'/>", "secret/@ephemeral"),
            ("<secret><uuid>nope</uuid></secret>", "secret/uuid"),
            ("<secret><usage/></secret>", "secret/usage/@type"),
            (
                "<secret><usage type='bogus'/></secret>",
                "secret/usage/@type",
            ),
            (
                "<secret><usage type='iscsi'/></secret>",
                "secret/usage/target",
            ),
            ("<pool/>", "pool"),
        ] {
            let e = Secret::parse(xml).unwrap_err();
            assert_eq!(e.path(), want, "{xml}: {e}");
        }
    }
}

//! The virtual network document (`<network>`).

use crate::error::XmlError;
use crate::tree::Element;
use crate::util::parse_uuid;
use crate::FormatOptions;

/// A validated virtual network definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    root: Element,
}

impl Network {
    /// Parses, validates and applies generic defaults.
    pub fn parse(xml: &str) -> Result<Network, XmlError> {
        Network::from_element(Element::parse(xml)?)
    }

    /// Validates a parsed tree.
    pub fn from_element(mut root: Element) -> Result<Network, XmlError> {
        if root.name() != "network" {
            return Err(XmlError::invalid(
                root.name().to_string(),
                "unexpected root element, expected 'network'",
            ));
        }
        crate::netnorm::normalize_network(&mut root)?;
        Ok(Network { root })
    }

    /// The normalised tree.
    pub fn element(&self) -> &Element {
        &self.root
    }

    /// `<name>`.
    pub fn name(&self) -> &str {
        self.root.child("name").and_then(|n| n.text_ref()).unwrap_or("")
    }

    /// `<uuid>`.
    pub fn uuid(&self) -> uuid::Uuid {
        self.root.child("uuid").and_then(|n| parse_uuid(&n.text())).unwrap_or_else(uuid::Uuid::nil)
    }

    /// Replaces the UUID.
    pub fn set_uuid(&mut self, u: uuid::Uuid) {
        crate::domain::set_child_text(&mut self.root, "uuid", &u.to_string());
        crate::normalize::sort_children(&mut self.root, crate::tables::NETWORK_TOP_ORDER);
    }

    /// `<forward mode=...>` when present.
    pub fn forward_mode(&self) -> Option<&str> {
        self.root.child("forward").map(|f| f.attr("mode").unwrap_or("nat"))
    }

    /// `<bridge name=...>`.
    pub fn bridge_name(&self) -> Option<&str> {
        self.root.child("bridge").and_then(|b| b.attr("name"))
    }

    /// Formats like libvirt.
    pub fn to_xml(&self, opts: &FormatOptions) -> String {
        let mut root = self.root.clone();
        if opts.inactive {
            root.remove_attr("connections");
        }
        root.to_xml_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_network() {
        let n = Network::parse("<network><name>default</name><bridge name='virbr0'/><forward/></network>")
            .expect("parse");
        assert_eq!(n.name(), "default");
        assert!(!n.uuid().is_nil());
        assert_eq!(n.bridge_name(), Some("virbr0"));
        assert_eq!(n.forward_mode(), Some("nat"));
        let e = Network::parse("<network/>").expect_err("no name");
        assert_eq!(e.to_string(), "network/name: missing required element");
    }
}

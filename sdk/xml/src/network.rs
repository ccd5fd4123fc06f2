//! The virtual network document (`<network>`).

use crate::FormatOptions;
use crate::error::XmlError;
use crate::tree::Element;
use crate::util::parse_uuid;

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
        self.root
            .child("name")
            .and_then(|n| n.text_ref())
            .unwrap_or("")
    }

    /// `<uuid>`.
    pub fn uuid(&self) -> uuid::Uuid {
        self.root
            .child("uuid")
            .and_then(|n| parse_uuid(&n.text()))
            .unwrap_or_else(uuid::Uuid::nil)
    }

    /// Replaces the UUID.
    pub fn set_uuid(&mut self, u: uuid::Uuid) {
        crate::domain::set_child_text(&mut self.root, "uuid", &u.to_string());
        crate::normalize::sort_children(&mut self.root, crate::tables::NETWORK_TOP_ORDER);
    }

    /// `<forward mode=...>` when present.
    pub fn forward_mode(&self) -> Option<&str> {
        self.root
            .child("forward")
            .map(|f| f.attr("mode").unwrap_or("nat"))
    }

    /// `<bridge name=...>`.
    pub fn bridge_name(&self) -> Option<&str> {
        self.root.child("bridge").and_then(|b| b.attr("name"))
    }

    /// `<network connections=...>` (live form only).
    pub fn connections(&self) -> Option<u32> {
        self.root
            .attr("connections")
            .and_then(|c| c.trim().parse().ok())
    }

    /// Sets or clears the live `connections` count.
    pub fn set_connections(&mut self, n: Option<u32>) {
        match n {
            Some(v) => self.root.set_attr("connections", &v.to_string()),
            None => self.root.remove_attr("connections"),
        }
    }

    /// `<forward dev=...>` or the first `<forward><interface dev=...>`.
    pub fn forward_dev(&self) -> Option<&str> {
        let f = self.root.child("forward")?;
        f.attr("dev")
            .or_else(|| f.child("interface").and_then(|i| i.attr("dev")))
    }

    /// `<mac address=...>` of the bridge.
    pub fn mac(&self) -> Option<&str> {
        self.root.child("mac").and_then(|m| m.attr("address"))
    }

    /// `<domain name=...>`.
    pub fn domain_name(&self) -> Option<&str> {
        self.root.child("domain").and_then(|d| d.attr("name"))
    }

    /// `<mtu size=...>`.
    pub fn mtu(&self) -> Option<u32> {
        self.root
            .child("mtu")
            .and_then(|m| m.attr("size"))
            .and_then(|s| s.trim().parse().ok())
    }

    /// `<ip>` entries as `(family, address, prefix or netmask)`.
    pub fn ips(&self) -> Vec<(&str, Option<&str>, Option<&str>)> {
        self.root
            .children_named("ip")
            .map(|ip| {
                let fam = ip.attr("family").unwrap_or(
                    if ip.attr("address").is_some_and(|a| a.contains(':')) {
                        "ipv6"
                    } else {
                        "ipv4"
                    },
                );
                (
                    fam,
                    ip.attr("address"),
                    ip.attr("prefix").or_else(|| ip.attr("netmask")),
                )
            })
            .collect()
    }

    /// DHCP ranges `(start, end)` over all `<ip>` elements.
    pub fn dhcp_ranges(&self) -> Vec<(&str, &str)> {
        self.root
            .children_named("ip")
            .filter_map(|ip| ip.child("dhcp"))
            .flat_map(|d| d.children_named("range"))
            .filter_map(|r| Some((r.attr("start")?, r.attr("end")?)))
            .collect()
    }

    /// DHCP static hosts `(mac or id, name, ip)`.
    pub fn dhcp_hosts(&self) -> Vec<(Option<&str>, Option<&str>, Option<&str>)> {
        self.root
            .children_named("ip")
            .filter_map(|ip| ip.child("dhcp"))
            .flat_map(|d| d.children_named("host"))
            .map(|h| {
                (
                    h.attr("mac").or_else(|| h.attr("id")),
                    h.attr("name"),
                    h.attr("ip"),
                )
            })
            .collect()
    }

    /// `<portgroup>` names, the default one first when marked.
    pub fn portgroups(&self) -> Vec<(&str, bool)> {
        self.root
            .children_named("portgroup")
            .filter_map(|p| Some((p.attr("name")?, p.attr("default") == Some("yes"))))
            .collect()
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
        let n = Network::parse(
            "<network><name>default</name><bridge name='virbr0'/><forward/></network>",
        )
        .expect("parse");
        assert_eq!(n.name(), "default");
        assert!(!n.uuid().is_nil());
        assert_eq!(n.bridge_name(), Some("virbr0"));
        assert_eq!(n.forward_mode(), Some("nat"));
        let n = Network::parse(
            "<network><name>n</name><forward mode='nat'><interface dev='eth0'/></forward><mtu size='9000'/>\
             <ip address='10.0.0.1' netmask='255.255.255.0'><dhcp><range start='10.0.0.2' end='10.0.0.9'/>\
             <host mac='52:54:00:00:00:01' name='a' ip='10.0.0.5'/></dhcp></ip><portgroup name='p' default='yes'/></network>",
        )
        .expect("parse");
        assert_eq!(n.forward_dev(), Some("eth0"));
        assert_eq!(n.mtu(), Some(9000));
        assert_eq!(
            n.ips(),
            vec![("ipv4", Some("10.0.0.1"), Some("255.255.255.0"))]
        );
        assert_eq!(n.dhcp_ranges(), vec![("10.0.0.2", "10.0.0.9")]);
        assert_eq!(n.dhcp_hosts()[0].2, Some("10.0.0.5"));
        assert_eq!(n.portgroups(), vec![("p", true)]);
        let mut n = n;
        n.set_connections(Some(3));
        assert!(
            n.to_xml(&FormatOptions::default())
                .contains("connections='3'")
        );
        assert!(
            !n.to_xml(&FormatOptions {
                inactive: true,
                secure: false
            })
            .contains("connections")
        );
        let e = Network::parse("<network/>").expect_err("no name");
        assert_eq!(e.to_string(), "network/name: missing required element");
    }
}

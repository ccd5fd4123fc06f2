//! Normalisation and validation of `<network>` documents.

use crate::error::XmlError;
use crate::normalize::{check_name, ensure_uuid, sort_tree};
use crate::tables;
use crate::tree::Element;
use crate::util::{canonical_mac, child_path};

/// Validates and applies generic defaults to a network tree.
pub fn normalize_network(root: &mut Element) -> Result<(), XmlError> {
    check_name(root, "network")?;
    ensure_uuid(root, "network")?;
    if root.attr("ipv6") == Some("no") {
        root.remove_attr("ipv6");
    }
    if let Some(m) = root.child_mut("mac") {
        let a = m.attr("address").unwrap_or("").to_string();
        let c = canonical_mac(&a).ok_or_else(|| {
            XmlError::invalid("network/mac/@address", format!("invalid mac address '{a}'"))
        })?;
        m.set_attr("address", &c);
    }
    let mut mode = None;
    if let Some(f) = root.child_mut("forward") {
        if f.attr("mode").is_none() {
            f.set_attr("mode", "nat");
        }
        let m = f.attr("mode").unwrap_or("nat").to_string();
        if !tables::NETWORK_FORWARD_MODES.contains(&m.as_str()) {
            return Err(XmlError::invalid(
                "network/forward/@mode",
                format!("unknown forward mode '{m}'"),
            ));
        }
        let dev = f.attr("dev").map(str::to_string);
        if m == "open" && dev.is_some() {
            return Err(XmlError::invalid(
                "network/forward/@dev",
                "forward dev not allowed for a network with forward mode 'open'",
            ));
        }
        let mut seen: Vec<String> = Vec::new();
        for (k, i) in f.children_named("interface").enumerate() {
            let d = i.attr("dev").unwrap_or("").to_string();
            if seen.contains(&d) {
                return Err(XmlError::invalid(
                    format!("{}/@dev", child_path("network/forward", f, "interface", k)),
                    format!("forward interface '{d}' listed more than once"),
                ));
            }
            seen.push(d);
        }
        match (&dev, seen.first()) {
            (Some(d), None) if !tables::NETWORK_FORWARD_NO_DEV_IFACE.contains(&m.as_str()) => {
                f.push(Element::new("interface").with_attr("dev", d));
            }
            (None, Some(first)) if !tables::NETWORK_FORWARD_NO_DEV_IFACE.contains(&m.as_str()) => {
                f.insert_attr(0, "dev", first);
            }
            _ => {}
        }
        mode = Some(m);
    }
    // libvirt manages the bridge itself for these modes: spanning tree defaults
    let managed_bridge = match &mode {
        None => true,
        Some(m) => tables::NETWORK_MANAGED_BRIDGE_MODES.contains(&m.as_str()),
    };
    if managed_bridge && let Some(b) = root.child_mut("bridge") {
        if b.attr("stp").is_none() {
            b.set_attr("stp", "on");
        }
        if b.attr("delay").is_none() {
            b.set_attr("delay", "0");
        }
    }
    if let Some(dns) = root.child("dns")
        && dns.attr("enable") == Some("no")
        && dns.elements().next().is_some()
    {
        return Err(XmlError::invalid(
            "network/dns",
            "extra data in disabled network dns element",
        ));
    }
    sort_tree(root, "network", tables::NETWORK_ORDER);
    Ok(())
}

//! Normalisation and validation of `<network>` documents.

use crate::error::XmlError;
use crate::normalize::{check_name, ensure_uuid, sort_tree};
use crate::tables;
use crate::tree::Element;
use crate::util::{canonical_mac, child_path};

/// Validates and applies generic defaults to a network tree.
pub fn normalize_network(root: &mut Element) -> Result<(), XmlError> {
    root.drop_stray_text(tables::FREE_FORM_ELEMENTS);
    check_name(root, "network")?;
    ensure_uuid(root, "network")?;
    validate_network(root)?;
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
    // defaults may have added elements next to text: that text is stray too
    root.drop_stray_text(tables::FREE_FORM_ELEMENTS);
    sort_tree(root, "network", tables::NETWORK_ORDER);
    Ok(())
}

fn inv(path: impl Into<String>, msg: impl Into<String>) -> XmlError {
    XmlError::invalid(path, msg)
}

fn parse_v4(s: &str) -> Option<u32> {
    s.trim().parse::<std::net::Ipv4Addr>().ok().map(u32::from)
}

fn prefix_of(ip: &Element) -> Option<u32> {
    if let Some(p) = ip.attr("prefix") {
        return p.trim().parse().ok();
    }
    let m = parse_v4(ip.attr("netmask")?)?;
    Some(m.leading_ones())
}

/// The documented constraints of network.rng and the network docs.
fn validate_network(root: &Element) -> Result<(), XmlError> {
    let mode = root
        .child("forward")
        .map(|f| f.attr("mode").unwrap_or("nat"));
    if let Some(m) = mode
        && tables::NETWORK_FORWARD_NO_IP_MODES.contains(&m)
    {
        for el in ["ip", "dns", "domain", "mac", "route"] {
            if root.child(el).is_some() {
                return Err(inv(
                    format!("network/{el}"),
                    format!("unsupported <{el}> element in network with forward mode='{m}'"),
                ));
            }
        }
        if m != "bridge" && root.child("bridge").is_some() {
            return Err(inv(
                "network/bridge",
                format!("unsupported <bridge> element in network with forward mode='{m}'"),
            ));
        }
    }
    if let Some(f) = root.child("forward") {
        if let (Some(dev), Some(first)) = (
            f.attr("dev"),
            f.child("interface").and_then(|i| i.attr("dev")),
        ) && dev != first
        {
            return Err(inv(
                "network/forward/@dev",
                format!("forward dev '{dev}' must match first interface element dev '{first}'"),
            ));
        }
        let mut addrs: Vec<String> = Vec::new();
        for (k, a) in f.children_named("address").enumerate() {
            let key = format!(
                "{:?}",
                a.attrs()
                    .iter()
                    .filter(|(n, _)| n != "type")
                    .collect::<Vec<_>>()
            );
            if addrs.contains(&key) {
                return Err(inv(
                    child_path("network/forward", f, "address", k),
                    "forward address listed more than once",
                ));
            }
            addrs.push(key);
        }
    }
    if let Some(m) = root.child("mtu")
        && m.attr("size")
            .and_then(|s| s.trim().parse::<u32>().ok())
            .is_none_or(|v| v == 0)
    {
        return Err(inv("network/mtu/@size", "invalid mtu size"));
    }
    let mut v4_dhcp = 0;
    let mut v6_dhcp = 0;
    for (k, ip) in root.children_named("ip").enumerate() {
        let p = child_path("network", root, "ip", k);
        let v6 = ip.attr("family") == Some("ipv6")
            || ip.attr("address").is_some_and(|a| a.contains(':'));
        if ip.attr("netmask").is_some() && ip.attr("prefix").is_some() {
            return Err(inv(
                format!("{p}/@prefix"),
                "network has both netmask and prefix",
            ));
        }
        if v6 && ip.attr("netmask").is_some() {
            return Err(inv(
                format!("{p}/@netmask"),
                "netmask not supported for ipv6 addresses",
            ));
        }
        let Some(dhcp) = ip.child("dhcp") else {
            continue;
        };
        if v6 {
            v6_dhcp += 1;
        } else {
            v4_dhcp += 1;
        }
        if v4_dhcp > 1 {
            return Err(inv(
                format!("{p}/dhcp"),
                "multiple IPv4 dhcp sections found -- dhcp is supported only for a single IPv4 address on each network",
            ));
        }
        if v6_dhcp > 1 {
            return Err(inv(
                format!("{p}/dhcp"),
                "multiple IPv6 dhcp sections found -- dhcp is supported only for a single IPv6 address on each network",
            ));
        }
        if !v6
            && let (Some(addr), Some(pre)) = (ip.attr("address").and_then(parse_v4), prefix_of(ip))
            && pre <= 32
        {
            let mask = if pre == 0 { 0 } else { u32::MAX << (32 - pre) };
            for (j, r) in dhcp.children_named("range").enumerate() {
                let rp = child_path(&format!("{p}/dhcp"), dhcp, "range", j);
                let (Some(s), Some(e)) = (
                    r.attr("start").and_then(parse_v4),
                    r.attr("end").and_then(parse_v4),
                ) else {
                    return Err(inv(rp, "invalid dhcp range addresses"));
                };
                if s > e {
                    return Err(inv(
                        format!("{rp}/@start"),
                        "dhcp range start is after its end",
                    ));
                }
                if s & mask != addr & mask || e & mask != addr & mask {
                    return Err(inv(rp, "dhcp range is not entirely within the network"));
                }
            }
            for (j, h) in dhcp.children_named("host").enumerate() {
                let hp = child_path(&format!("{p}/dhcp"), dhcp, "host", j);
                if h.attr("mac").is_none() && h.attr("name").is_none() {
                    return Err(XmlError::missing_attr(format!("{hp}/@mac")));
                }
            }
        }
    }
    let mut pg_names: Vec<&str> = Vec::new();
    let mut defaults = 0;
    for (k, pg) in root.children_named("portgroup").enumerate() {
        let p = child_path("network", root, "portgroup", k);
        let n = pg
            .attr("name")
            .ok_or_else(|| XmlError::missing_attr(format!("{p}/@name")))?;
        if pg_names.contains(&n) {
            return Err(inv(
                format!("{p}/@name"),
                format!("multiple <portgroup> elements with the same name '{n}'"),
            ));
        }
        pg_names.push(n);
        if pg.attr("default") == Some("yes") {
            defaults += 1;
            if defaults > 1 {
                return Err(inv(
                    format!("{p}/@default"),
                    "network has multiple default <portgroup> elements",
                ));
            }
        }
    }
    for (k, r) in root.children_named("route").enumerate() {
        let p = child_path("network", root, "route", k);
        for a in ["address", "gateway"] {
            if r.attr(a).is_none() {
                return Err(XmlError::missing_attr(format!("{p}/@{a}")));
            }
        }
    }
    if let Some(dns) = root.child("dns") {
        for (k, t) in dns.children_named("txt").enumerate() {
            if t.attr("name").is_none() {
                return Err(XmlError::missing_attr(format!(
                    "{}/@name",
                    child_path("network/dns", dns, "txt", k)
                )));
            }
        }
        for (k, h) in dns.children_named("host").enumerate() {
            if h.attr("ip").is_none() {
                return Err(XmlError::missing_attr(format!(
                    "{}/@ip",
                    child_path("network/dns", dns, "host", k)
                )));
            }
        }
        for (k, srv) in dns.children_named("srv").enumerate() {
            let p = child_path("network/dns", dns, "srv", k);
            for a in ["service", "protocol"] {
                if srv.attr(a).is_none() {
                    return Err(XmlError::missing_attr(format!("{p}/@{a}")));
                }
            }
        }
    }
    Ok(())
}

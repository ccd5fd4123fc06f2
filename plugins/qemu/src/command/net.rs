//! Network interfaces: MAC addresses assigned at define time, the TAP devices the
//! driver makes (bridge and network interfaces) and what a live definition shows of
//! them (link state, network ports), and the `-netdev`/`-device` pair of each
//! `<interface>`.
//!
//! Architecture invariant: nothing here makes devices or talks to QEMU; the TAPs come
//! made, as descriptors, in [`super::BuildOptions::taps`].

use super::address::{place, with_pci};
use super::{CommandError, Ctx, attr, json_arg, parse_num, push_device, set_alias};
use rvirt_xml::{Domain, Element};
use serde_json::json;

/// A TAP device the driver made for an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapInfo {
    /// The descriptor QEMU inherits.
    pub fd: i32,
    /// The device's name (`vnet0`).
    pub dev: String,
    /// For `<interface type='network'>`: the network port plugged for it and the bridge
    /// the network answered, shown in the live `<source portid bridge>`.
    pub port: Option<(String, String)>,
}

/// Gives every `<interface>` without a `<mac address>` one, as libvirt does when it parses
/// a definition: `52:54:00` (QEMU's prefix) and three random bytes. Returns how many.
pub fn assign_macs(def: &mut Domain) -> usize {
    let Some(devs) = def.element_mut().child_mut("devices") else {
        return 0;
    };
    let mut n = 0;
    for i in devs.children_named_mut("interface") {
        if i.child("mac").and_then(|m| m.attr("address")).is_some() {
            continue;
        }
        let mac = random_mac();
        i.remove_children(|c| c.name() == "mac");
        i.nodes_mut().insert(
            0,
            rvirt_xml::Node::Element(Element::new("mac").with_attr("address", &mac)),
        );
        n += 1;
    }
    n
}

/// An interface that needs a TAP device made by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapInterface {
    /// Its position among the `<interface>` elements.
    pub index: usize,
    /// `<source bridge>` of a bridge interface.
    pub bridge: Option<String>,
    /// `<source network>` of a network interface.
    pub network: Option<String>,
    /// The guest's MAC address.
    pub mac: String,
    /// A virtio model (the TAP gets a virtio-net header).
    pub virtio: bool,
    /// `<bandwidth>`: limits the driver sets on the TAP (and records in the port).
    pub bandwidth: Result<Option<rvirt_xml::bandwidth::Bandwidth>, rvirt_xml::XmlError>,
}

/// The bridge and network interfaces of `def`.
pub fn tap_interfaces(def: &Domain) -> Vec<TapInterface> {
    let Some(devs) = def.element().child("devices") else {
        return Vec::new();
    };
    devs.children_named("interface")
        .enumerate()
        .filter_map(|(index, i)| tap_interface(i, index))
        .collect()
}

/// What the driver makes for the `<interface>` `i` (the `index`th of its domain), if it
/// is a bridge or network interface.
pub fn tap_interface(i: &Element, index: usize) -> Option<TapInterface> {
    let (bridge, network) = match i.attr("type") {
        Some("bridge") => (Some(attr(i, &["source"], "bridge")?.to_string()), None),
        Some("network") => (None, Some(attr(i, &["source"], "network")?.to_string())),
        _ => return None,
    };
    Some(TapInterface {
        index,
        bridge,
        network,
        mac: attr(i, &["mac"], "address").unwrap_or_default().to_string(),
        virtio: attr(i, &["model"], "type") == Some("virtio"),
        bandwidth: rvirt_xml::bandwidth::Bandwidth::of(
            i,
            &format!("domain/devices/interface[{}]", index + 1),
        ),
    })
}

/// A MAC address as libvirt makes one: QEMU's `52:54:00` prefix and three random bytes.
pub fn random_mac() -> String {
    let r = uuid::Uuid::new_v4();
    let b = r.as_bytes();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// The device aliases (`net0`) of the interfaces with `<link state='down'/>`.
pub fn links_down(live: &Domain) -> Vec<String> {
    let Some(devs) = live.element().child("devices") else {
        return Vec::new();
    };
    devs.children_named("interface")
        .filter(|i| attr(i, &["link"], "state") == Some("down"))
        .filter_map(|i| {
            i.child("alias")
                .and_then(|a| a.attr("name"))
                .map(str::to_string)
        })
        .collect()
}

/// The network ports a live definition holds: (network, port UUID) of each
/// `<interface type='network'>` with a `<source portid>`.
pub fn network_ports(live: &Domain) -> Vec<(String, String)> {
    let Some(devs) = live.element().child("devices") else {
        return Vec::new();
    };
    devs.children_named("interface")
        .filter(|i| i.attr("type") == Some("network"))
        .filter_map(|i| {
            Some((
                attr(i, &["source"], "network")?.to_string(),
                attr(i, &["source"], "portid")?.to_string(),
            ))
        })
        .collect()
}

/// The `-netdev` and `-device` arguments of the interfaces.
pub(super) fn interfaces(
    cx: &mut Ctx<'_>,
    devs: &mut Element,
    net_args: &mut Vec<String>,
) -> Result<(), CommandError> {
    let opts = cx.opts;
    let boot_for = &cx.boot_for;
    let pci = &mut cx.pci;
    for (k, i) in devs.children_named_mut("interface").enumerate() {
        let ni = k;
        let ty = i.attr("type").unwrap_or("user").to_string();
        let id = format!("hostnet{k}");
        let netdev = match ty.as_str() {
            "user" => obj! {"type": "user", "id": id},
            "ethernet" => {
                let mut v = obj! {"type": "tap", "id": id, "script": "no", "downscript": "no"};
                if let Some(t) = attr(i, &["target"], "dev") {
                    v["ifname"] = json!(t);
                }
                v
            }
            "bridge" | "network" => {
                let br = if ty == "bridge" {
                    attr(i, &["source"], "bridge").ok_or_else(|| {
                        CommandError::Invalid(
                            "interface of type 'bridge' needs <source bridge=...>".into(),
                        )
                    })?
                } else {
                    attr(i, &["source"], "network").ok_or_else(|| {
                        CommandError::Invalid(
                            "interface of type 'network' needs <source network=...>".into(),
                        )
                    })?
                }
                .to_string();
                match opts.taps.get(&k) {
                    // the TAP the driver made: QEMU inherits its descriptor
                    Some(TapInfo { fd, dev, port }) => {
                        if let (Some((portid, bridge)), Some(src)) = (port, i.child_mut("source")) {
                            src.set_attr("portid", portid);
                            src.set_attr("bridge", bridge);
                        }
                        i.remove_children(|c| c.name() == "target");
                        let at = i
                            .nodes()
                            .iter()
                            .position(|n| {
                                matches!(n, rvirt_xml::Node::Element(c) if c.name() == "model" || c.name() == "alias" || c.name() == "address")
                            })
                            .unwrap_or(i.nodes().len());
                        i.nodes_mut().insert(
                            at,
                            rvirt_xml::Node::Element(Element::new("target").with_attr("dev", dev)),
                        );
                        obj! {"type": "tap", "fd": fd.to_string(), "id": id}
                    }
                    // domxml-to-native: no device is made
                    None if ty == "bridge" => obj! {"type": "bridge", "br": br, "id": id},
                    // the network's bridge is known only once a port is plugged at start
                    None => obj! {"type": "tap", "fd": "-1", "id": id},
                }
            }
            other => {
                return Err(CommandError::Unsupported(format!(
                    "interface type '{other}' is not supported by the qemu driver (user, ethernet, bridge, network)"
                )));
            }
        };
        let model = attr(i, &["model"], "type").unwrap_or("rtl8139").to_string();
        let driver = match model.as_str() {
            "virtio" => "virtio-net-pci",
            "e1000" => "e1000",
            "e1000e" => "e1000e",
            "rtl8139" => "rtl8139",
            other => {
                return Err(CommandError::Unsupported(format!(
                    "interface model '{other}' is not supported"
                )));
            }
        };
        let alias = format!("net{k}");
        set_alias(i, &alias);
        let mac = attr(i, &["mac"], "address").map(str::to_string);
        let bootindex = match i
            .child("boot")
            .and_then(|b| b.attr("order"))
            .and_then(parse_num)
        {
            Some(o) => Some(o),
            None => boot_for.get(&("interface", ni)).copied(),
        };
        let mut v = obj! {"driver": driver, "netdev": id, "id": alias};
        if let Some(m) = mac {
            v["mac"] = json!(m);
        }
        if let Some(b) = bootindex {
            v["bootindex"] = json!(b);
        }
        let on_root = driver != "virtio-net-pci" && driver != "e1000e";
        let b = place(pci, i, on_root)?;
        net_args.push("-netdev".into());
        net_args.push(json_arg(&netdev));
        push_device(net_args, &with_pci(v, b));
    }
    Ok(())
}

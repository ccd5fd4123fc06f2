//! What a running domain needs to take one more disk (plugin API 1.7's device attach): a
//! PCI address that is free in its live definition, the `blockdev-add` nodes and the
//! `device_add` arguments, and the disk element the live definition gains. The same node
//! and device shapes as the start's command line ([`super::disk`]), so a disk looks the
//! same to QEMU whether it was there at start or attached later.
//!
//! Hot-plug is offered where it is plain on this machine: virtio disks (file or block,
//! raw or qcow2) on `pci.0` of a pc machine, or on a free `pcie-root-port` of a q35
//! machine. Anything else is refused naming what was asked.
//!
//! Network interfaces ([`hotplug_nic`]) take the same addresses: `user`, `bridge` and
//! `network` interfaces, the last two on a TAP the driver made and passes to QEMU under
//! a descriptor name (`getfd`), with libvirt's `hostnetN`/`netN` names, `N` one past the
//! highest in use.

use super::address::{addr_str, pci_address_element};
use super::disk::target_index;
use super::net::TapInfo;
use super::{CommandError, attr, parse_num, set_alias};
use rvirt_xml::{Domain, Element};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// A disk ready to be plugged: the nodes to add in order, the device, and the element for
/// the live definition (with its alias and address).
#[derive(Debug, Clone, PartialEq)]
pub struct HotplugDisk {
    pub target: String,
    pub alias: String,
    pub blockdevs: Vec<Value>,
    pub device: Value,
    pub live: Element,
}

fn unsupported(msg: String) -> CommandError {
    CommandError::Unsupported(msg)
}

/// `(bus, slot, function)` of every `<address type='pci'>` in `devs`.
fn pci_addresses(devs: &Element) -> BTreeSet<(u32, u32, u32)> {
    let mut out = BTreeSet::new();
    for d in devs.elements() {
        if let Some(a) = d.child("address").filter(|a| a.attr("type") == Some("pci")) {
            let n = |k: &str| a.attr(k).and_then(parse_num).map(|v| v as u32);
            if let (Some(b), Some(s), f) = (n("bus"), n("slot"), n("function").unwrap_or(0)) {
                out.insert((b, s, f));
            }
        }
    }
    out
}

/// A free address for one more PCI endpoint of the running `live` domain.
fn free_address(live: &Domain) -> Result<(String, u32, u32, u32), CommandError> {
    let machine = live.os_machine().unwrap_or("pc");
    let q35 = machine == "q35" || machine.starts_with("pc-q35");
    let devs = live
        .element()
        .child("devices")
        .ok_or_else(|| CommandError::Invalid("the live definition has no <devices>".into()))?;
    let used = pci_addresses(devs);
    if q35 {
        let port = devs
            .children_named("controller")
            .filter(|c| {
                c.attr("type") == Some("pci") && c.attr("model") == Some("pcie-root-port")
            })
            .filter_map(|c| c.attr("index").and_then(parse_num).map(|i| i as u32))
            .find(|i| !used.iter().any(|(b, _, _)| b == i))
            .ok_or_else(|| {
                unsupported(
                    "no free pcie-root-port for hot-plug: add a <controller type='pci' model='pcie-root-port'/> to the definition (it takes effect at the next start)".into(),
                )
            })?;
        return Ok((format!("pci.{port}"), port, 0, 0));
    }
    // pc: slot 0 is the host bridge, slot 1 the PIIX3 functions
    let slot = (2..=0x1f)
        .find(|s| !used.iter().any(|(b, us, _)| *b == 0 && us == s))
        .ok_or_else(|| unsupported("no free PCI slot left on pci.0 for hot-plug".into()))?;
    Ok(("pci.0".into(), 0, slot, 0))
}

/// Plans plugging `disk` (a `<disk>` element) into the running `live` domain, with block
/// nodes named `libvirt-{node}-storage` / `libvirt-{node}-format`.
pub fn hotplug_disk(live: &Domain, disk: &Element, node: u32) -> Result<HotplugDisk, CommandError> {
    if disk.name() != "disk" {
        return Err(unsupported(format!(
            "hot-plug of <{}> is not supported by the qemu driver (disks only)",
            disk.name()
        )));
    }
    let target = disk
        .child("target")
        .and_then(|t| t.attr("dev"))
        .ok_or_else(|| CommandError::Invalid("disk/target/@dev is missing".into()))?
        .to_string();
    let bus =
        disk.child("target")
            .and_then(|t| t.attr("bus"))
            .unwrap_or(if target.starts_with("vd") {
                "virtio"
            } else {
                ""
            });
    if bus != "virtio" {
        return Err(unsupported(format!(
            "disk '{target}': hot-plug on bus '{bus}' is not supported by the qemu driver (virtio disks only)"
        )));
    }
    let device = disk.attr("device").unwrap_or("disk");
    if device != "disk" {
        return Err(unsupported(format!(
            "disk '{target}': hot-plug of a '{device}' is not supported (device='disk' only)"
        )));
    }
    let ty = disk.attr("type").unwrap_or("file");
    let (driver, source) = match ty {
        "file" => ("file", disk.child("source").and_then(|s| s.attr("file"))),
        "block" => (
            "host_device",
            disk.child("source").and_then(|s| s.attr("dev")),
        ),
        other => {
            return Err(unsupported(format!(
                "disk '{target}': hot-plug of a disk of type '{other}' is not supported (file and block)"
            )));
        }
    };
    let source = source
        .ok_or_else(|| CommandError::Invalid(format!("disk '{target}' has no source")))?
        .to_string();
    let idx = target_index(&target)
        .ok_or_else(|| CommandError::Invalid(format!("invalid disk target '{target}'")))?;
    let taken = live
        .devices_of("disk")
        .any(|d| d.child("target").and_then(|t| t.attr("dev")) == Some(target.as_str()));
    if taken {
        return Err(CommandError::Invalid(format!(
            "target '{target}' already exists"
        )));
    }
    let readonly = disk.child("readonly").is_some();
    let format = disk
        .child("driver")
        .and_then(|d| d.attr("type"))
        .unwrap_or("raw");
    let storage = format!("libvirt-{node}-storage");
    let (blockdevs, drive) = match format {
        "raw" => (
            vec![
                json!({"driver": driver, "filename": source, "node-name": storage, "read-only": readonly}),
            ],
            storage,
        ),
        "qcow2" => {
            let fmt = format!("libvirt-{node}-format");
            (
                vec![
                    json!({"driver": driver, "filename": source, "node-name": storage,
                           "auto-read-only": true, "discard": "unmap"}),
                    json!({"node-name": fmt, "read-only": readonly, "driver": "qcow2", "file": storage}),
                ],
                fmt,
            )
        }
        other => {
            return Err(unsupported(format!(
                "disk format '{other}' is not supported (raw and qcow2)"
            )));
        }
    };
    let (bus_name, b, s, f) = free_address(live)?;
    let alias = format!("virtio-disk{idx}");
    let device = json!({"driver": "virtio-blk-pci", "bus": bus_name, "addr": addr_str(s, f),
                        "drive": drive, "id": alias});
    let mut elem = disk.clone();
    elem.remove_children(|c| c.name() == "address" || c.name() == "alias");
    set_alias(&mut elem, &alias);
    elem.push(pci_address_element(b, s, f));
    Ok(HotplugDisk {
        target,
        alias,
        blockdevs,
        device,
        live: elem,
    })
}

/// A network interface ready to be plugged: the `netdev_add` and `device_add`
/// arguments, the descriptor name the TAP is passed under (`getfd`) and the element for
/// the live definition.
#[derive(Debug, Clone, PartialEq)]
pub struct HotplugNic {
    pub alias: String,
    pub netdev: Value,
    pub device: Value,
    pub fdname: Option<String>,
    pub live: Element,
}

/// The `N` of the next `netN` alias: one past the highest among the live interfaces.
pub fn next_net_index(live: &Domain) -> u32 {
    live.devices_of("interface")
        .filter_map(|i| i.child("alias").and_then(|a| a.attr("name")))
        .filter_map(|a| a.strip_prefix("net")?.parse::<u32>().ok())
        .max()
        .map_or(0, |m| m + 1)
}

/// The QEMU device of an interface model, and whether it is a PCI Express device (one a
/// `pcie-root-port` takes).
fn nic_driver(model: &str) -> Result<(&'static str, bool), CommandError> {
    Ok(match model {
        "virtio" => ("virtio-net-pci", true),
        "e1000e" => ("e1000e", true),
        "e1000" => ("e1000", false),
        "rtl8139" => ("rtl8139", false),
        other => {
            return Err(unsupported(format!(
                "interface model '{other}' is not supported"
            )));
        }
    })
}

/// Plans plugging `iface` (an `<interface>` element with its `<mac address>`) into the
/// running `live` domain; `tap` is the TAP made for a bridge or network interface.
pub fn hotplug_nic(
    live: &Domain,
    iface: &Element,
    tap: Option<&TapInfo>,
) -> Result<HotplugNic, CommandError> {
    if iface.name() != "interface" {
        return Err(unsupported(format!(
            "hot-plug of <{}> is not supported by the qemu driver here (interfaces)",
            iface.name()
        )));
    }
    let mac = attr(iface, &["mac"], "address")
        .ok_or_else(|| CommandError::Invalid("interface/mac/@address is missing".into()))?
        .to_string();
    if live
        .devices_of("interface")
        .any(|i| attr(i, &["mac"], "address").is_some_and(|m| m.eq_ignore_ascii_case(&mac)))
    {
        return Err(CommandError::Invalid(format!(
            "an interface with MAC address '{mac}' already exists"
        )));
    }
    let n = next_net_index(live);
    let id = format!("hostnet{n}");
    let alias = format!("net{n}");
    let ty = iface.attr("type").unwrap_or("user");
    let (netdev, fdname) = match (ty, tap) {
        ("user", _) => (json!({"type": "user", "id": id}), None),
        ("bridge" | "network", Some(_)) => {
            let fdname = format!("{id}-fd");
            (json!({"type": "tap", "fd": fdname, "id": id}), Some(fdname))
        }
        ("bridge" | "network", None) => {
            return Err(CommandError::Invalid(format!(
                "interface of type '{ty}' needs a TAP device to be plugged"
            )));
        }
        (other, _) => {
            return Err(unsupported(format!(
                "hot-plug of an interface of type '{other}' is not supported by the qemu driver (user, bridge, network)"
            )));
        }
    };
    let model = attr(iface, &["model"], "type")
        .unwrap_or("rtl8139")
        .to_string();
    let (driver, express) = nic_driver(&model)?;
    let machine = live.os_machine().unwrap_or("pc");
    if (machine == "q35" || machine.starts_with("pc-q35")) && !express {
        return Err(unsupported(format!(
            "hot-plug of interface model '{model}' (conventional PCI) on a q35 machine is not supported: use model 'virtio' or 'e1000e', which a pcie-root-port takes"
        )));
    }
    let (bus_name, b, s, f) = free_address(live)?;
    let device = json!({"driver": driver, "netdev": id, "id": alias, "mac": mac,
                        "bus": bus_name, "addr": addr_str(s, f)});
    let mut elem = iface.clone();
    elem.remove_children(|c| matches!(c.name(), "address" | "alias" | "target"));
    if elem.child("model").is_none() {
        elem.push(Element::new("model").with_attr("type", &model));
    }
    if let Some(t) = tap {
        if let (Some((portid, bridge)), Some(src)) = (&t.port, elem.child_mut("source")) {
            src.set_attr("portid", portid);
            src.set_attr("bridge", bridge);
        }
        let at = elem
            .nodes()
            .iter()
            .position(|n| matches!(n, rvirt_xml::Node::Element(c) if c.name() == "model"))
            .unwrap_or(elem.nodes().len());
        elem.nodes_mut().insert(
            at,
            rvirt_xml::Node::Element(Element::new("target").with_attr("dev", &t.dev)),
        );
    }
    set_alias(&mut elem, &alias);
    elem.push(pci_address_element(b, s, f));
    Ok(HotplugNic {
        alias,
        netdev,
        device,
        fdname,
        live: elem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(machine: &str, devices: &str) -> Domain {
        Domain::parse(&format!(
            "<domain type='qemu'><name>h</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>\
             <memory>65536</memory><os><type arch='x86_64' machine='{machine}'>hvm</type></os>\
             <devices>{devices}</devices></domain>"
        ))
        .unwrap()
    }

    fn disk(xml: &str) -> Element {
        Element::parse(xml).unwrap()
    }

    #[test]
    fn a_qcow2_disk_gets_the_next_free_slot_and_the_start_s_node_shapes() {
        let l = live(
            "pc",
            "<disk type='file' device='disk'><target dev='vda' bus='virtio'/>\
             <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/></disk>\
             <memballoon model='virtio'><address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></memballoon>",
        );
        let h = hotplug_disk(
            &l,
            &disk("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/b.qcow2'/><target dev='vdb' bus='virtio'/></disk>"),
            7,
        )
        .unwrap();
        assert_eq!(h.alias, "virtio-disk1");
        assert_eq!(h.blockdevs.len(), 2);
        assert_eq!(h.blockdevs[0]["node-name"], "libvirt-7-storage");
        assert_eq!(h.blockdevs[1]["file"], "libvirt-7-storage");
        assert_eq!(
            h.device,
            json!({"driver": "virtio-blk-pci", "bus": "pci.0", "addr": "0x4", "drive": "libvirt-7-format", "id": "virtio-disk1"})
        );
        let x = h.live.to_xml_string();
        assert!(
            x.contains("<alias name=\"virtio-disk1\"/>")
                || x.contains("<alias name='virtio-disk1'/>"),
            "{x}"
        );
        assert!(
            x.contains("slot=\"0x04\"") || x.contains("slot='0x04'"),
            "{x}"
        );
    }

    #[test]
    fn q35_takes_a_free_root_port_and_refuses_without_one() {
        let devs = "<controller type='pci' index='1' model='pcie-root-port'/>\
                    <controller type='pci' index='2' model='pcie-root-port'/>\
                    <disk type='file' device='disk'><target dev='vda' bus='virtio'/>\
                    <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></disk>";
        let d = disk(
            "<disk type='file'><source file='/i/c.img'/><target dev='vdc' bus='virtio'/></disk>",
        );
        let h = hotplug_disk(&live("q35", devs), &d, 3).unwrap();
        assert_eq!(h.device["bus"], "pci.2");
        assert_eq!(h.device["addr"], "0x0");
        assert_eq!(
            h.blockdevs,
            vec![
                json!({"driver": "file", "filename": "/i/c.img", "node-name": "libvirt-3-storage", "read-only": false})
            ]
        );
        let full = devs.replace("index='2' model='pcie-root-port'/>", "index='2' model='pcie-root-port'/><disk type='file'><target dev='vdb'/><address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/></disk>");
        let e = hotplug_disk(&live("q35", &full), &d, 3).unwrap_err();
        assert!(e.to_string().contains("no free pcie-root-port"), "{e}");
    }

    #[test]
    fn a_nic_takes_the_next_net_names_a_free_slot_and_its_tap() {
        let l = live(
            "pc",
            "<interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/><alias name='net0'/>\
             <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/></interface>\
             <interface type='user'><mac address='52:54:00:00:00:02'/><alias name='net3'/>\
             <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></interface>",
        );
        let iface = disk(
            "<interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/><model type='virtio'/></interface>",
        );
        let tap = TapInfo {
            fd: 9,
            dev: "vnet7".into(),
            port: Some((
                "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
                "virbr0".into(),
            )),
        };
        let h = hotplug_nic(&l, &iface, Some(&tap)).unwrap();
        assert_eq!(h.alias, "net4");
        assert_eq!(
            h.netdev,
            json!({"type": "tap", "fd": "hostnet4-fd", "id": "hostnet4"})
        );
        assert_eq!(h.fdname.as_deref(), Some("hostnet4-fd"));
        assert_eq!(
            h.device,
            json!({"driver": "virtio-net-pci", "netdev": "hostnet4", "id": "net4",
                   "mac": "52:54:00:aa:bb:cc", "bus": "pci.0", "addr": "0x4"})
        );
        let x = h.live.to_xml_string().replace('"', "'");
        for want in [
            "portid='1b4e28ba-2fa1-11d2-883f-0016d3cca427'",
            "bridge='virbr0'",
            "<target dev='vnet7'/>",
            "<alias name='net4'/>",
            "slot='0x04'",
        ] {
            assert!(x.contains(want), "{want}: {x}");
        }
        assert!(
            x.find("<target").unwrap() < x.find("<model").unwrap(),
            "{x}"
        );
        // the same MAC twice is refused; a user NIC without a model gets rtl8139
        let e = hotplug_nic(
            &l,
            &disk("<interface type='user'><mac address='52:54:00:00:00:02'/></interface>"),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        let h = hotplug_nic(
            &l,
            &disk("<interface type='user'><mac address='52:54:00:00:00:09'/></interface>"),
            None,
        )
        .unwrap();
        assert_eq!(h.device["driver"], "rtl8139");
        assert_eq!(h.netdev, json!({"type": "user", "id": "hostnet4"}));
        assert!(h.live.to_xml_string().contains("rtl8139"));
        assert_eq!(next_net_index(&live("pc", "")), 0);
    }

    #[test]
    fn q35_nics_need_a_pcie_model_and_a_free_root_port() {
        let devs = "<controller type='pci' index='1' model='pcie-root-port'/>";
        let l = live("q35", devs);
        let ok = hotplug_nic(
            &l,
            &disk("<interface type='user'><mac address='52:54:00:00:00:01'/><model type='e1000e'/></interface>"),
            None,
        )
        .unwrap();
        assert_eq!(ok.device["bus"], "pci.1");
        assert_eq!(ok.device["driver"], "e1000e");
        let e = hotplug_nic(
            &l,
            &disk("<interface type='user'><mac address='52:54:00:00:00:01'/><model type='rtl8139'/></interface>"),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("conventional PCI"), "{e}");
        let e = hotplug_nic(
            &l,
            &disk("<interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='br0'/></interface>"),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("needs a TAP"), "{e}");
        let e = hotplug_nic(
            &l,
            &disk("<interface type='vhostuser'><mac address='52:54:00:00:00:01'/></interface>"),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("type 'vhostuser'"), "{e}");
    }

    #[test]
    fn what_cannot_be_plugged_is_named() {
        let l = live(
            "pc",
            "<disk type='file'><target dev='vda' bus='virtio'/></disk>",
        );
        for (xml, want) in [
            ("<interface type='user'/>", "<interface>"),
            (
                "<disk type='file'><source file='/x'/><target dev='sdb' bus='scsi'/></disk>",
                "bus 'scsi'",
            ),
            (
                "<disk type='network'><target dev='vdb' bus='virtio'/></disk>",
                "type 'network'",
            ),
            (
                "<disk type='file' device='cdrom'><source file='/x'/><target dev='vdb' bus='virtio'/></disk>",
                "'cdrom'",
            ),
            (
                "<disk type='file'><source file='/x'/><target dev='vda' bus='virtio'/></disk>",
                "already exists",
            ),
            (
                "<disk type='file'><driver type='vmdk'/><source file='/x'/><target dev='vdb' bus='virtio'/></disk>",
                "'vmdk'",
            ),
        ] {
            let e = hotplug_disk(&l, &disk(xml), 1).unwrap_err().to_string();
            assert!(e.contains(want), "{xml}: {e}");
        }
    }
}

//! PCI placement: the allocator of the machine's PCI topology ([`Pci`]: `pci.0` on
//! i440fx, `pcie.0` plus a root port per endpoint on q35), explicit user addresses
//! (checked, reserved, honoured), the slots of built-in devices, the ICH9 USB
//! companions that share one slot, drive addresses of IDE/SATA/SCSI disks, and the
//! final check that no two devices of the live definition share an address.
//!
//! On q35 it does what libvirt does with a definition such as virt-install writes
//! (`pcie-root-port`s without address, target or model name): [`user_root_ports`] gives
//! them the defaults, [`assign_in_libvirt_order`] puts each PCIe endpoint alone on a free
//! root port (adding ports when none is left, plus one spare for hotplug) and
//! conventional PCI devices on a `pcie-pci-bridge`, in libvirt's order of assignment.
//!
//! Architecture invariant: this module decides addresses only; it never builds a device's
//! `-device` argument (except the root ports and bridge it creates itself) and never
//! touches QEMU or the filesystem.

use super::{CommandError, Obj, attr, json_arg, parse_num};
use rvirt_xml::Element;
use serde_json::json;
use std::collections::BTreeSet;

/// A `pcie-root-port` on `pcie.0` (q35): one the user declared or one the allocator added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RootPort {
    /// Controller index, the `N` of bus `pci.N`.
    pub(super) idx: u32,
    /// Its slot and function on `pcie.0`.
    pub(super) slot: u32,
    pub(super) func: u32,
    /// `<target chassis>` (default: the index).
    pub(super) chassis: u32,
    /// `<target port>` (default: `slot << 3 | function`).
    pub(super) port: u32,
    /// The QEMU device (`<model name>`: `pcie-root-port` or `ioh3420`).
    pub(super) driver: String,
    /// Declared in the XML (else added by the allocator, shown in the live XML).
    pub(super) user: bool,
    /// `multifunction` as the XML address gives it (else on for function 0 of a slot
    /// shared with other ports).
    pub(super) multifunction: Option<bool>,
}

/// PCI slot allocation on `pci.0` (pc) or `pcie.0` + root ports (q35).
pub(super) struct Pci {
    q35: bool,
    /// (bus, slot, function) in use.
    pub(super) used: BTreeSet<(u32, u32, u32)>,
    /// Root ports (q35), the user's first, then those added, each in index order.
    pub(super) root_ports: Vec<RootPort>,
    /// Bus indexes that exist (0, plus root ports and user controllers).
    pub(super) buses: BTreeSet<u32>,
    /// The user's root ports nothing is plugged into yet.
    pub(super) free_ports: BTreeSet<u32>,
    /// Whether the allocator added a root port.
    pub(super) auto_added: bool,
    /// The `pcie-pci-bridge` conventional PCI devices go on (q35): (its index, the
    /// root port it sits on).
    pub(super) legacy_bridge: Option<(u32, u32)>,
}

impl Pci {
    pub(super) fn new(q35: bool) -> Self {
        let mut used = BTreeSet::new();
        used.insert((0, 0, 0));
        if q35 {
            for f in 0..8 {
                used.insert((0, 0x1f, f));
            }
        } else {
            for f in 0..8 {
                used.insert((0, 1, f));
            }
        }
        Pci {
            q35,
            used,
            root_ports: Vec::new(),
            buses: BTreeSet::from([0]),
            free_ports: BTreeSet::new(),
            auto_added: false,
            legacy_bridge: None,
        }
    }

    pub(super) fn bus_name(&self, bus: u32) -> String {
        match (bus, self.q35) {
            (0, true) => "pcie.0".into(),
            (b, _) => format!("pci.{b}"),
        }
    }

    /// Reserves an explicit address from the XML.
    pub(super) fn reserve(&mut self, bus: u32, slot: u32, func: u32) {
        self.used.insert((bus, slot, func));
    }

    fn free_slot_on_root(&self, from: u32) -> u32 {
        let mut s = from;
        while (0..8).any(|f| self.used.contains(&(0, s, f))) {
            s += 1;
        }
        s
    }

    /// A new address for a device: pc → next slot on pci.0; q35 → the first free root
    /// port the user declared, else a new root port.
    pub(super) fn alloc(
        &mut self,
        endpoint_on_root: bool,
    ) -> Result<(u32, u32, u32), CommandError> {
        if self.q35
            && endpoint_on_root
            && let Some((bridge, _)) = self.legacy_bridge
            && let Some(s) = (1..=0x1f).find(|s| !self.used.contains(&(bridge, *s, 0)))
        {
            self.used.insert((bridge, s, 0));
            return Ok((bridge, s, 0));
        }
        if !self.q35 || endpoint_on_root {
            let s = self.free_slot_on_root(1);
            if s > 0x1f {
                return Err(CommandError::Unsupported("no free PCI slot left".into()));
            }
            self.used.insert((0, s, 0));
            return Ok((0, s, 0));
        }
        let idx = match self.free_ports.pop_first() {
            Some(i) => i,
            None => {
                self.auto_added = true;
                self.add_root_port()?
            }
        };
        self.used.insert((idx, 0, 0));
        Ok((idx, 0, 0))
    }

    /// The address of the next root port, packed as libvirt packs them: the first free
    /// function of the first slot of `pcie.0` that is free or holds only root ports
    /// (00:01.0-00:01.7, then 00:02.0..., slot 1 being the primary video's when there
    /// is one).
    fn next_root_port_address(&self) -> Result<(u32, u32), CommandError> {
        for slot in 1..=0x1f {
            let ports_only = (0..8).all(|f| {
                !self.used.contains(&(0, slot, f))
                    || self
                        .root_ports
                        .iter()
                        .any(|p| (p.slot, p.func) == (slot, f))
            });
            if !ports_only {
                continue;
            }
            if let Some(func) = (0..8).find(|f| !self.used.contains(&(0, slot, *f))) {
                return Ok((slot, func));
            }
        }
        Err(CommandError::Unsupported("no free PCI slot left".into()))
    }

    fn add_root_port(&mut self) -> Result<u32, CommandError> {
        let idx = self.buses.iter().max().copied().unwrap_or(0) + 1;
        let (slot, func) = self.next_root_port_address()?;
        self.used.insert((0, slot, func));
        self.root_ports.push(RootPort {
            idx,
            slot,
            func,
            chassis: idx,
            port: (slot << 3) | func,
            driver: "pcie-root-port".into(),
            user: false,
            multifunction: None,
        });
        self.buses.insert(idx);
        Ok(idx)
    }

    /// libvirt leaves one free root port for hotplug when it had to add ports.
    pub(super) fn add_hotplug_spare(&mut self) -> Result<(), CommandError> {
        if self.q35 && self.auto_added && self.free_ports.is_empty() {
            let idx = self.add_root_port()?;
            self.free_ports.insert(idx);
        }
        Ok(())
    }

    /// The conventional PCI bridge (q35) for devices that are not PCIe: on a root port
    /// of its own, as libvirt adds it when such a device needs a slot.
    pub(super) fn add_legacy_bridge(&mut self) -> Result<u32, CommandError> {
        if let Some((b, _)) = self.legacy_bridge {
            return Ok(b);
        }
        let (port, _, _) = self.alloc(false)?;
        let idx = self.buses.iter().max().copied().unwrap_or(0) + 1;
        self.buses.insert(idx);
        // slot 0 of a pcie-pci-bridge is its own (SHPC)
        self.used.insert((idx, 0, 0));
        self.legacy_bridge = Some((idx, port));
        Ok(idx)
    }

    pub(super) fn root_port_args(&self) -> Vec<String> {
        let mut ports: Vec<&RootPort> = self.root_ports.iter().collect();
        ports.sort_by_key(|p| p.idx);
        let mut out = Vec::new();
        let mut bridge = self.legacy_bridge;
        for p in ports {
            if let Some((b, port)) = bridge
                && b < p.idx
            {
                out.push("-device".into());
                out.push(json_arg(&bridge_obj(b, port)));
                bridge = None;
            }
            let shared = p.func == 0
                && self
                    .root_ports
                    .iter()
                    .any(|q| q.slot == p.slot && q.func > 0);
            let mut v = obj! {"driver": p.driver, "port": p.port,
            "chassis": p.chassis, "id": format!("pci.{}", p.idx), "bus": "pcie.0"};
            match p.multifunction {
                Some(m) => v["multifunction"] = json!(m),
                None if shared => v["multifunction"] = json!(true),
                None => {}
            }
            v["addr"] = json!(addr_str(p.slot, p.func));
            out.push("-device".into());
            out.push(json_arg(&v));
        }
        if let Some((b, port)) = bridge {
            out.push("-device".into());
            out.push(json_arg(&bridge_obj(b, port)));
        }
        out
    }
}

fn bridge_obj(idx: u32, port: u32) -> Obj {
    obj! {"driver": "pcie-pci-bridge", "id": format!("pci.{idx}"), "bus": format!("pci.{port}"), "addr": "0x0"}
}

pub(super) fn addr_str(slot: u32, func: u32) -> String {
    if func == 0 {
        format!("0x{slot:x}")
    } else {
        format!("0x{slot:x}.0x{func:x}")
    }
}

pub(super) fn pci_address_element(bus: u32, slot: u32, func: u32) -> Element {
    Element::new("address")
        .with_attr("type", "pci")
        .with_attr("domain", "0x0000")
        .with_attr("bus", &format!("0x{bus:02x}"))
        .with_attr("slot", &format!("0x{slot:02x}"))
        .with_attr("function", &format!("0x{func:x}"))
}

pub(super) fn explicit_pci(e: &Element) -> Option<(u32, u32, u32)> {
    let a = e.child("address")?;
    if a.attr("type") != Some("pci") {
        return None;
    }
    let n = |k| {
        a.attr(k)
            .and_then(parse_num)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };
    Some((n("bus"), n("slot"), n("function")))
}

/// `0000:00:03.0`, as libvirt writes a PCI address in messages.
pub(super) fn pci_addr_text((bus, slot, func): (u32, u32, u32)) -> String {
    format!("0000:{bus:02x}:{slot:02x}.{func:x}")
}

/// The addresses the XML gives: two devices at one address, or a device in a slot of the
/// machine's built-in devices (host bridge; PIIX3 on pc, ICH9 LPC/SMBus on q35), are the
/// user's mistakes.
pub(super) fn check_user_addresses(devs: &Element, q35: bool) -> Result<(), CommandError> {
    let mut seen = std::collections::BTreeMap::new();
    let builtin_slot = if q35 { 0x1f } else { 1 };
    for e in devs.elements() {
        let Some(a) = explicit_pci(e) else { continue };
        if let Some(prev) = seen.insert(a, e.name().to_string()) {
            return Err(CommandError::Invalid(format!(
                "attempted double use of PCI address {} (<{prev}> and <{}>)",
                pci_addr_text(a),
                e.name()
            )));
        }
        // The built-in IDE/USB functions of PIIX3 and the AHCI function of ICH9 are
        // described by controllers.
        let owner = matches!((q35, a), (false, (0, 1, 1 | 2)) | (true, (0, 0x1f, 2)))
            && e.name() == "controller";
        if a.0 == 0 && (a.1 == 0 || a.1 == builtin_slot) && !owner {
            return Err(CommandError::Invalid(format!(
                "PCI address {} of <{}> belongs to a built-in device of the {} machine",
                pci_addr_text(a),
                e.name(),
                if q35 { "q35" } else { "pc" }
            )));
        }
    }
    Ok(())
}

/// Every PCI address of the live definition is distinct. The user's own addresses were
/// checked before placement ([`check_user_addresses`]), so a clash found here was made by
/// the driver.
pub(super) fn check_assigned_addresses(devs: &Element) -> Result<(), CommandError> {
    let mut seen = std::collections::BTreeMap::new();
    for e in devs.elements() {
        let Some(a) = explicit_pci(e) else { continue };
        if let Some(prev) = seen.insert(a, e.name().to_string()) {
            return Err(CommandError::Internal(format!(
                "PCI address {} was assigned to both <{prev}> and <{}>",
                pci_addr_text(a),
                e.name()
            )));
        }
    }
    Ok(())
}

/// Places `e` on the PCI bus (explicit address or a new one) and returns the JSON
/// `bus`/`addr` members.
pub(super) fn place(
    pci: &mut Pci,
    e: &mut Element,
    on_root: bool,
) -> Result<(String, String), CommandError> {
    let (bus, slot, func) = match explicit_pci(e) {
        Some(a) => a,
        None => {
            let a = pci.alloc(on_root)?;
            e.remove_children(|c| c.name() == "address");
            e.push(pci_address_element(a.0, a.1, a.2));
            a
        }
    };
    Ok((pci.bus_name(bus), addr_str(slot, func)))
}

/// The USB 1 companions of an `ich9-ehci1` controller (`ich9-uhci1`..`3`, as
/// virt-install writes them for `pc` machines) share its PCI slot: the EHCI function at 7,
/// the companions at 0-2 with `multifunction` on function 0, as libvirt assigns them.
/// Controllers with an address of their own keep it.
pub(super) fn place_ich9_companions(pci: &mut Pci, devs: &mut Element) -> Result<(), CommandError> {
    let usb = |c: &Element| c.attr("type") == Some("usb");
    let indexes: std::collections::BTreeSet<String> = devs
        .children_named("controller")
        .filter(|c| usb(c) && c.attr("model") == Some("ich9-ehci1"))
        .map(|c| c.attr("index").unwrap_or("0").to_string())
        .collect();
    for index in indexes {
        let group = |c: &Element| {
            usb(c)
                && c.attr("index").unwrap_or("0") == index
                && c.attr("model").is_some_and(|m| m.starts_with("ich9-"))
        };
        if devs
            .children_named("controller")
            .filter(|c| group(c))
            .any(|c| explicit_pci(c).is_some())
        {
            continue;
        }
        let (bus, slot, _) = pci.alloc(true)?;
        for c in devs.children_named_mut("controller").filter(|c| group(c)) {
            let func = match c.attr("model").unwrap_or_default() {
                "ich9-ehci1" => 7,
                "ich9-uhci1" => 0,
                "ich9-uhci2" => 1,
                "ich9-uhci3" => 2,
                // an unknown model is reported by the controller loop
                _ => continue,
            };
            pci.reserve(bus, slot, func);
            let mut a = pci_address_element(bus, slot, func);
            if func == 0 {
                a.set_attr("multifunction", "on");
            }
            c.remove_children(|e| e.name() == "address");
            c.push(a);
        }
    }
    Ok(())
}

pub(super) fn with_pci(mut v: Obj, bus: (String, String)) -> Obj {
    v["bus"] = json!(bus.0);
    v["addr"] = json!(bus.1);
    v
}

pub(super) fn set_drive_address(
    d: &mut Element,
    controller: u32,
    bus: u32,
    target: u32,
    unit: u32,
) {
    if d.child("address").is_some() {
        return;
    }
    d.push(
        Element::new("address")
            .with_attr("type", "drive")
            .with_attr("controller", &controller.to_string())
            .with_attr("bus", &bus.to_string())
            .with_attr("target", &target.to_string())
            .with_attr("unit", &unit.to_string()),
    );
}

/// Checks the user's explicit addresses, reserves them, and gives the primary video
/// device the slot QEMU's built-in VGA has (slot 2 on pc, 1 on q35) unless taken.
pub(super) fn reserve_explicit(
    pci: &mut Pci,
    devs: &mut Element,
    q35: bool,
) -> Result<(), CommandError> {
    // Explicit PCI addresses are checked and reserved first.
    check_user_addresses(devs, q35)?;
    for e in devs.elements() {
        if let Some((b, s, f)) = explicit_pci(e) {
            pci.reserve(b, s, f);
            if q35 && b > 0 && !pci.buses.contains(&b) {
                pci.buses.insert(b);
            }
        }
    }
    // The primary video device owns slot 2 on pc, 1 on q35.
    let primary_video = devs
        .children_named("video")
        .position(|v| attr(v, &["model"], "type") != Some("none"));
    if let Some(vi) = primary_video {
        let slot = if q35 { 1 } else { 2 };
        if let Some(v) = devs.children_named_mut("video").nth(vi)
            && explicit_pci(v).is_none()
            && !pci.used.contains(&(0, slot, 0))
        {
            pci.reserve(0, slot, 0);
            v.push(pci_address_element(0, slot, 0));
        }
    }
    Ok(())
}

/// The root ports the user declared (q35): each becomes a bus `pci.N`, gets libvirt's
/// defaults where the XML leaves them out (an address packing the functions of slot 2,
/// then 3..., `<model name>`, `<target chassis>` = index and `port` = `slot << 3 |
/// function`), written into the live XML, and is free for an endpoint unless a device
/// of the XML already names its bus.
pub(super) fn user_root_ports(pci: &mut Pci, devs: &mut Element) -> Result<(), CommandError> {
    if !pci.q35 {
        return Ok(());
    }
    let is_port = |c: &Element| {
        c.attr("type") == Some("pci")
            && matches!(c.attr("model"), Some("pcie-root-port") | None)
            && c.attr("index").and_then(parse_num).is_some_and(|i| i > 0)
    };
    // the ports with an address first: the others pack around them
    let mut order: Vec<(bool, u32, usize)> = devs
        .children_named("controller")
        .enumerate()
        .filter(|(_, c)| is_port(c))
        .filter_map(|(k, c)| {
            let i = c.attr("index").and_then(parse_num)?;
            Some((explicit_pci(c).is_none(), u32::try_from(i).ok()?, k))
        })
        .collect();
    order.sort();
    // buses of the user's explicit addresses that are root ports: not free
    let taken: BTreeSet<u32> = pci.used.iter().map(|&(b, _, _)| b).collect();
    for (_, idx, k) in order {
        let Some(c) = devs.children_named_mut("controller").nth(k) else {
            continue;
        };
        if c.attr("model").is_none() {
            c.set_attr("model", "pcie-root-port");
        }
        let (slot, func, multifunction) = match explicit_pci(c) {
            Some((b, s, f)) => {
                if b != 0 {
                    return Err(CommandError::Unsupported(format!(
                        "pcie-root-port {idx} must sit on pcie.0 (bus 0)"
                    )));
                }
                let m = match attr(c, &["address"], "multifunction") {
                    Some("on") => Some(true),
                    Some("off") => Some(false),
                    _ => None,
                };
                (s, f, m)
            }
            None => {
                let (s, f) = pci.next_root_port_address()?;
                pci.reserve(0, s, f);
                let mut a = pci_address_element(0, s, f);
                if f == 0 {
                    a.set_attr("multifunction", "on");
                }
                c.push(a);
                (s, f, None)
            }
        };
        if c.child("model").is_none() {
            let m = Element::new("model").with_attr("name", "pcie-root-port");
            c.nodes_mut().insert(0, rvirt_xml::Node::Element(m));
        }
        let driver = attr(c, &["model"], "name")
            .unwrap_or("pcie-root-port")
            .to_string();
        if !matches!(driver.as_str(), "pcie-root-port" | "ioh3420") {
            return Err(CommandError::Unsupported(format!(
                "pcie-root-port model name '{driver}' is not supported"
            )));
        }
        let num = |k: &str, d: u32| {
            attr(c, &["target"], k)
                .and_then(parse_num)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(d)
        };
        let (chassis, port) = (num("chassis", idx), num("port", (slot << 3) | func));
        let target = match c.child_mut("target") {
            Some(t) => t,
            None => {
                let at = c
                    .nodes()
                    .iter()
                    .position(|n| matches!(n, rvirt_xml::Node::Element(e) if e.name() == "model"))
                    .map_or(0, |p| p + 1);
                c.nodes_mut()
                    .insert(at, rvirt_xml::Node::Element(Element::new("target")));
                c.child_mut("target").expect("just inserted")
            }
        };
        target.set_attr("chassis", &chassis.to_string());
        target.set_attr("port", &format!("0x{port:x}"));
        pci.buses.insert(idx);
        if !taken.contains(&idx) {
            pci.free_ports.insert(idx);
        }
        pci.root_ports.push(RootPort {
            idx,
            slot,
            func,
            chassis,
            port,
            driver,
            user: true,
            multifunction,
        });
    }
    Ok(())
}

/// Where a device without a PCI address goes: `None` (not a PCI device, or placed
/// elsewhere), `Some(false)` a PCIe endpoint (a root port of its own on q35),
/// `Some(true)` a conventional PCI device (a slot of the root bus).
fn pci_kind(e: &Element, q35: bool) -> Option<bool> {
    let model = || attr(e, &["model"], "type");
    match e.name() {
        "interface" => match model().unwrap_or("rtl8139") {
            "virtio" | "e1000e" => Some(false),
            "e1000" | "rtl8139" => Some(true),
            _ => None,
        },
        "controller" => match (e.attr("type")?, e.attr("model")) {
            ("usb", Some("qemu-xhci" | "nec-xhci")) => Some(false),
            ("usb", Some("piix3-uhci") | None) if q35 => Some(true),
            ("scsi", Some("virtio-scsi") | None) => Some(false),
            ("scsi", Some("lsilogic" | "megasas" | "mptsas1068" | "vmpvscsi")) => Some(true),
            ("virtio-serial", _) => Some(false),
            _ => None,
        },
        "disk" => (attr(e, &["target"], "bus") == Some("virtio")).then_some(false),
        "memballoon" => (e.attr("model").unwrap_or("virtio") == "virtio").then_some(false),
        "rng" => (e.attr("model").unwrap_or("virtio") == "virtio").then_some(false),
        "watchdog" => (e.attr("model").unwrap_or("i6300esb") == "i6300esb").then_some(true),
        "input" => (e.attr("bus") == Some("virtio")).then_some(false),
        _ => None,
    }
}

/// Gives every PCI device without an address one, in libvirt's order of assignment
/// (interfaces, then controllers, disks, the balloon, RNGs, watchdogs and virtio
/// inputs, each family in document order), so that the same definition gets the same
/// addresses as under libvirt. The device builders then find the addresses in the XML.
pub(super) fn assign_in_libvirt_order(
    pci: &mut Pci,
    devs: &mut Element,
) -> Result<(), CommandError> {
    let q35 = pci.q35;
    // a conventional PCI device on q35 goes on a pcie-pci-bridge, made first
    if q35
        && pci.legacy_bridge.is_none()
        && devs
            .elements()
            .any(|e| e.child("address").is_none() && pci_kind(e, q35) == Some(true))
    {
        pci.add_legacy_bridge()?;
    }
    for family in [
        "interface",
        "controller",
        "disk",
        "memballoon",
        "rng",
        "watchdog",
        "input",
    ] {
        for e in devs.children_named_mut(family) {
            if e.child("address").is_some() {
                continue;
            }
            if let Some(on_root) = pci_kind(e, q35) {
                place(pci, e, on_root)?;
            }
        }
    }
    Ok(())
}

/// Root ports created on the way (q35) become controllers in the live XML, and so does
/// the conventional PCI bridge.
pub(super) fn add_root_port_controllers(pci: &Pci, devs: &mut Element) {
    if let Some((idx, port)) = pci.legacy_bridge {
        let mut c = Element::new("controller")
            .with_attr("type", "pci")
            .with_attr("index", &idx.to_string())
            .with_attr("model", "pcie-to-pci-bridge");
        c.push(Element::new("model").with_attr("name", "pcie-pci-bridge"));
        c.push(Element::new("alias").with_attr("name", &format!("pci.{idx}")));
        c.push(pci_address_element(port, 0, 0));
        let pos = devs
            .nodes()
            .iter()
            .rposition(|n| matches!(n, rvirt_xml::Node::Element(e) if e.name() == "controller"))
            .map_or(devs.nodes().len(), |p| p + 1);
        devs.nodes_mut().insert(pos, rvirt_xml::Node::Element(c));
    }
    let mut added: Vec<&RootPort> = pci.root_ports.iter().filter(|p| !p.user).collect();
    added.sort_by_key(|p| p.idx);
    for p in added {
        let idx = p.idx;
        let mut c = Element::new("controller")
            .with_attr("type", "pci")
            .with_attr("index", &idx.to_string())
            .with_attr("model", "pcie-root-port");
        c.push(Element::new("model").with_attr("name", "pcie-root-port"));
        c.push(
            Element::new("target")
                .with_attr("chassis", &p.chassis.to_string())
                .with_attr("port", &format!("0x{:x}", p.port)),
        );
        c.push(Element::new("alias").with_attr("name", &format!("pci.{idx}")));
        c.push(pci_address_element(0, p.slot, p.func));
        let pos = devs
            .nodes()
            .iter()
            .rposition(|n| matches!(n, rvirt_xml::Node::Element(e) if e.name() == "controller"))
            .map_or(devs.nodes().len(), |p| p + 1);
        devs.nodes_mut().insert(pos, rvirt_xml::Node::Element(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        Element::parse(xml).unwrap()
    }

    #[test]
    fn i440fx_slots_fill_in_order_on_pci_0_after_the_builtin_ones() {
        let mut pci = Pci::new(false);
        // host bridge at 0, PIIX3 at 1: endpoints start at slot 2, whatever they ask
        assert_eq!(pci.alloc(false).unwrap(), (0, 2, 0));
        assert_eq!(pci.alloc(true).unwrap(), (0, 3, 0));
        assert_eq!(pci.alloc(false).unwrap(), (0, 4, 0));
        assert_eq!(pci.bus_name(0), "pci.0");
        assert!(pci.root_port_args().is_empty());
    }

    #[test]
    fn explicit_addresses_are_honoured_and_skipped_by_the_allocator() {
        let mut pci = Pci::new(false);
        pci.reserve(0, 2, 0);
        pci.reserve(0, 4, 3);
        assert_eq!(pci.alloc(false).unwrap(), (0, 3, 0));
        // a slot with any function taken is not free
        assert_eq!(pci.alloc(false).unwrap(), (0, 5, 0));
        let mut e = el(
            "<rng><address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x2'/></rng>",
        );
        assert_eq!(
            place(&mut pci, &mut e, false).unwrap(),
            ("pci.0".to_string(), "0x7.0x2".to_string())
        );
        // an element without an address gets the one allocated, written into the XML
        let mut e = el("<rng/>");
        assert_eq!(
            place(&mut pci, &mut e, false).unwrap(),
            ("pci.0".to_string(), "0x6".to_string())
        );
        assert_eq!(explicit_pci(&e), Some((0, 6, 0)));
    }

    #[test]
    fn the_root_bus_runs_out_at_slot_31() {
        let mut pci = Pci::new(false);
        for s in 2..=0x1f {
            assert_eq!(pci.alloc(false).unwrap(), (0, s, 0));
        }
        assert!(matches!(
            pci.alloc(false),
            Err(CommandError::Unsupported(_))
        ));
    }

    #[test]
    fn q35_endpoints_get_a_root_port_each_filling_the_functions_of_a_slot() {
        let mut pci = Pci::new(true);
        assert_eq!(pci.bus_name(0), "pcie.0");
        // PCIe endpoints: a new root port (bus 1, 2, ...) each, the device at 00.0 on it
        assert_eq!(pci.alloc(false).unwrap(), (1, 0, 0));
        assert_eq!(pci.alloc(false).unwrap(), (2, 0, 0));
        assert_eq!(pci.bus_name(2), "pci.2");
        // legacy endpoints sit on pcie.0 itself, in the first free slot (0x1f is ICH9's)
        assert_eq!(pci.alloc(true).unwrap(), (0, 2, 0));
        let at: Vec<_> = pci
            .root_ports
            .iter()
            .map(|p| (p.idx, p.slot, p.func, p.port))
            .collect();
        assert_eq!(at, vec![(1, 1, 0, 8), (2, 1, 1, 9)]);
        let args = pci.root_port_args();
        assert_eq!(args.len(), 4);
        assert_eq!(
            args[1],
            r#"{"driver":"pcie-root-port","port":8,"chassis":1,"id":"pci.1","bus":"pcie.0","multifunction":true,"addr":"0x1"}"#
        );
        assert_eq!(
            args[3],
            r#"{"driver":"pcie-root-port","port":9,"chassis":2,"id":"pci.2","bus":"pcie.0","addr":"0x1.0x1"}"#
        );
    }

    #[test]
    fn root_ports_number_after_the_users_buses() {
        let mut pci = Pci::new(true);
        pci.buses.insert(4);
        assert_eq!(pci.alloc(false).unwrap(), (5, 0, 0));
    }

    #[test]
    fn user_address_collisions_and_builtin_slots_are_refused() {
        let dup = el(
            "<devices><rng><address type='pci' bus='0x00' slot='0x05' function='0x0'/></rng>\
             <watchdog><address type='pci' bus='0x00' slot='0x05' function='0x0'/></watchdog></devices>",
        );
        let e = check_user_addresses(&dup, false).unwrap_err();
        assert!(matches!(e, CommandError::Invalid(_)), "{e}");
        assert!(
            e.to_string()
                .contains("0000:00:05.0 (<rng> and <watchdog>)"),
            "{e}"
        );
        // slot 1 is PIIX3's on pc, free on q35; 0x1f is ICH9's on q35
        let s1 = el(
            "<devices><rng><address type='pci' bus='0x00' slot='0x01' function='0x0'/></rng></devices>",
        );
        assert!(check_user_addresses(&s1, false).is_err());
        assert!(check_user_addresses(&s1, true).is_ok());
        let s1f = el(
            "<devices><rng><address type='pci' bus='0x00' slot='0x1f' function='0x0'/></rng></devices>",
        );
        assert!(check_user_addresses(&s1f, true).is_err());
        assert!(check_user_addresses(&s1f, false).is_ok());
        // the controllers that describe built-in functions may name them
        let ide = el(
            "<devices><controller type='ide'><address type='pci' bus='0x00' slot='0x01' function='0x1'/></controller></devices>",
        );
        assert!(check_user_addresses(&ide, false).is_ok());
    }

    #[test]
    fn ich9_companions_share_one_slot_with_ehci_at_function_7() {
        let mut pci = Pci::new(false);
        let mut devs = el(
            "<devices><controller type='usb' index='0' model='ich9-ehci1'/>\
             <controller type='usb' index='0' model='ich9-uhci1'/>\
             <controller type='usb' index='0' model='ich9-uhci2'/></devices>",
        );
        place_ich9_companions(&mut pci, &mut devs).unwrap();
        let addrs: Vec<_> = devs
            .children_named("controller")
            .map(|c| explicit_pci(c).unwrap())
            .collect();
        assert_eq!(addrs, vec![(0, 2, 7), (0, 2, 0), (0, 2, 1)]);
        let uhci1 = devs.children_named("controller").nth(1).unwrap();
        assert_eq!(attr(uhci1, &["address"], "multifunction"), Some("on"));
        assert_eq!(pci.alloc(false).unwrap(), (0, 3, 0));
    }

    #[test]
    fn drive_addresses_are_assigned_once() {
        let mut d = el("<disk/>");
        set_drive_address(&mut d, 0, 1, 0, 1);
        set_drive_address(&mut d, 0, 0, 0, 0);
        let a = d.child("address").unwrap();
        assert_eq!(
            (a.attr("type"), a.attr("bus"), a.attr("unit")),
            (Some("drive"), Some("1"), Some("1"))
        );
        assert_eq!(d.children_named("address").count(), 1);
    }

    #[test]
    fn user_root_ports_without_index_details_get_libvirts_defaults_and_take_endpoints() {
        let mut pci = Pci::new(true);
        // as virt-install writes them, after post-parse gave them indexes
        let mut devs = el(
            "<devices><controller type='pci' index='0' model='pcie-root'/>\
             <controller type='pci' index='1' model='pcie-root-port'/>\
             <controller type='pci' index='2' model='pcie-root-port'/>\
             <controller type='pci' index='3' model='pcie-root-port'>\
             <model name='ioh3420'/><target chassis='40' port='0x1a'/></controller>\
             <disk><target dev='vda' bus='virtio'/></disk>\
             <rng model='virtio'/><video><model type='vga'/></video></devices>",
        );
        // the primary video owns slot 1: the ports pack from slot 2
        reserve_explicit(&mut pci, &mut devs, true).unwrap();
        user_root_ports(&mut pci, &mut devs).unwrap();
        let ports: Vec<_> = devs.children_named("controller").skip(1).collect();
        assert_eq!(explicit_pci(ports[0]), Some((0, 2, 0)));
        assert_eq!(attr(ports[0], &["address"], "multifunction"), Some("on"));
        assert_eq!(attr(ports[0], &["model"], "name"), Some("pcie-root-port"));
        assert_eq!(attr(ports[0], &["target"], "chassis"), Some("1"));
        assert_eq!(attr(ports[0], &["target"], "port"), Some("0x10"));
        assert_eq!(explicit_pci(ports[1]), Some((0, 2, 1)));
        assert_eq!(attr(ports[1], &["target"], "port"), Some("0x11"));
        assert_eq!(attr(ports[2], &["target"], "chassis"), Some("40"));
        assert_eq!(attr(ports[2], &["target"], "port"), Some("0x1a"));
        assert_eq!(pci.free_ports, BTreeSet::from([1, 2, 3]));
        assign_in_libvirt_order(&mut pci, &mut devs).unwrap();
        // endpoints fill the declared ports in index order; no port added, no spare
        assert_eq!(explicit_pci(devs.child("disk").unwrap()), Some((1, 0, 0)));
        assert_eq!(explicit_pci(devs.child("rng").unwrap()), Some((2, 0, 0)));
        pci.add_hotplug_spare().unwrap();
        assert_eq!(pci.root_ports.len(), 3);
        let args = pci.root_port_args();
        assert_eq!(
            args[5],
            r#"{"driver":"ioh3420","port":26,"chassis":40,"id":"pci.3","bus":"pcie.0","addr":"0x2.0x2"}"#
        );
        // a fourth endpoint gets a new port (index 4, 00:02.3), plus a spare for hotplug
        assert_eq!(pci.alloc(false).unwrap(), (3, 0, 0));
        assert_eq!(pci.alloc(false).unwrap(), (4, 0, 0));
        pci.add_hotplug_spare().unwrap();
        let last = pci.root_ports.last().unwrap();
        assert_eq!((last.idx, last.slot, last.func), (5, 2, 4));
        add_root_port_controllers(&pci, &mut devs);
        assert_eq!(devs.children_named("controller").count(), 6);
    }

    #[test]
    fn auto_root_ports_fill_slots_holding_only_root_ports() {
        // libvirt's q35-multifunction: ports at 00:02.0-2 and 00:03.0-1 by address,
        // then one at 00:04.0; the others fill slot 1, then the rest of slot 2
        let mut pci = Pci::new(true);
        let mut xml = String::from("<devices>");
        for (i, (s, f)) in [(2, 0), (2, 1), (2, 2), (3, 0), (3, 1)].iter().enumerate() {
            xml.push_str(&format!(
                "<controller type='pci' index='{}' model='pcie-root-port'>\
                 <address type='pci' bus='0' slot='{s}' function='{f}'/></controller>",
                i + 1
            ));
        }
        xml.push_str(
            "<controller type='pci' index='6' model='pcie-root-port'>\
             <address type='pci' bus='0' slot='4' function='0' multifunction='off'/></controller>\
             <rng><address type='pci' bus='0' slot='5' function='0'/></rng>",
        );
        for i in 7..=16 {
            xml.push_str(&format!(
                "<controller type='pci' index='{i}' model='pcie-root-port'/>"
            ));
        }
        xml.push_str("</devices>");
        let mut devs = el(&xml);
        reserve_explicit(&mut pci, &mut devs, true).unwrap();
        user_root_ports(&mut pci, &mut devs).unwrap();
        let at = |i: u32| {
            let p = pci.root_ports.iter().find(|p| p.idx == i).unwrap();
            (p.slot, p.func)
        };
        assert_eq!(at(7), (1, 0));
        assert_eq!(at(14), (1, 7));
        assert_eq!(at(15), (2, 3));
        assert_eq!(at(16), (2, 4));
        let args = pci.root_port_args();
        assert!(
            args[11].contains(r#""multifunction":false,"addr":"0x4""#),
            "{}",
            args[11]
        );
        assert!(
            args[7].contains(r#""multifunction":true,"addr":"0x3""#),
            "{}",
            args[7]
        );
    }

    #[test]
    fn libvirt_order_is_interfaces_then_controllers_then_disks() {
        let mut pci = Pci::new(true);
        let mut devs = el("<devices><disk><target dev='vda' bus='virtio'/></disk>\
             <controller type='usb' index='0' model='qemu-xhci'/>\
             <controller type='virtio-serial' index='0'/>\
             <interface type='user'><model type='virtio'/></interface>\
             <memballoon model='virtio'/></devices>");
        assign_in_libvirt_order(&mut pci, &mut devs).unwrap();
        let bus = |n: &str, k: usize| {
            explicit_pci(devs.children_named(n).nth(k).unwrap())
                .unwrap()
                .0
        };
        assert_eq!(bus("interface", 0), 1);
        assert_eq!(bus("controller", 0), 2);
        assert_eq!(bus("controller", 1), 3);
        assert_eq!(bus("disk", 0), 4);
        assert_eq!(bus("memballoon", 0), 5);
        pci.add_hotplug_spare().unwrap();
        assert_eq!(pci.root_ports.len(), 6);
    }
    #[test]
    fn q35_conventional_pci_devices_go_on_a_pcie_pci_bridge() {
        // as libvirt's x86_64-q35-default-models: a root port (pci.1) with the bridge
        // (pci.2) on it, the devices in its slots from 1, a spare port (pci.3)
        let mut pci = Pci::new(true);
        let mut devs = el(
            "<devices><controller type='usb' index='0' model='piix3-uhci'/>\
             <controller type='scsi' index='0' model='lsilogic'/>\
             <interface type='user'><model type='rtl8139'/></interface>\
             <disk><target dev='vda' bus='virtio'/></disk>\
             <video><model type='cirrus'/></video></devices>",
        );
        reserve_explicit(&mut pci, &mut devs, true).unwrap();
        assign_in_libvirt_order(&mut pci, &mut devs).unwrap();
        assert_eq!(pci.legacy_bridge, Some((2, 1)));
        let at = |n: &str, k: usize| explicit_pci(devs.children_named(n).nth(k).unwrap()).unwrap();
        assert_eq!(at("interface", 0), (2, 1, 0));
        assert_eq!(at("controller", 0), (2, 2, 0));
        assert_eq!(at("controller", 1), (2, 3, 0));
        assert_eq!(at("disk", 0), (3, 0, 0));
        pci.add_hotplug_spare().unwrap();
        let args = pci.root_port_args();
        assert_eq!(args.len(), 8);
        assert_eq!(
            args[1],
            r#"{"driver":"pcie-root-port","port":16,"chassis":1,"id":"pci.1","bus":"pcie.0","multifunction":true,"addr":"0x2"}"#
        );
        assert_eq!(
            args[3],
            r#"{"driver":"pcie-pci-bridge","id":"pci.2","bus":"pci.1","addr":"0x0"}"#
        );
        assert_eq!(
            args[5],
            r#"{"driver":"pcie-root-port","port":17,"chassis":3,"id":"pci.3","bus":"pcie.0","addr":"0x2.0x1"}"#
        );
        add_root_port_controllers(&pci, &mut devs);
        assert!(
            devs.children_named("controller")
                .any(|c| c.attr("model") == Some("pcie-to-pci-bridge"))
        );
    }
}

//! PCI placement: the allocator of the machine's PCI topology ([`Pci`]: `pci.0` on
//! i440fx, `pcie.0` plus a root port per endpoint on q35), explicit user addresses
//! (checked, reserved, honoured), the slots of built-in devices, the ICH9 USB
//! companions that share one slot, drive addresses of IDE/SATA/SCSI disks, and the
//! final check that no two devices of the live definition share an address.
//!
//! Architecture invariant: this module decides addresses only; it never builds a device's
//! `-device` argument (except the root ports it creates itself) and never touches QEMU or
//! the filesystem.

use super::{CommandError, Obj, attr, json_arg, parse_num};
use rvirt_xml::Element;
use serde_json::json;
use std::collections::BTreeSet;

/// PCI slot allocation on `pci.0` (pc) or `pcie.0` + root ports (q35).
pub(super) struct Pci {
    q35: bool,
    /// (bus, slot, function) in use.
    pub(super) used: BTreeSet<(u32, u32, u32)>,
    /// Root ports created (q35): (index, slot, function on pcie.0).
    pub(super) root_ports: Vec<(u32, u32, u32)>,
    /// Bus indexes that exist (0, plus root ports and user controllers).
    pub(super) buses: BTreeSet<u32>,
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

    fn free_slot_on_root(&mut self, from: u32) -> u32 {
        let mut s = from;
        while (0..8).any(|f| self.used.contains(&(0, s, f))) {
            s += 1;
        }
        s
    }

    /// A new address for a device: pc → next slot on pci.0; q35 → a new root port.
    pub(super) fn alloc(
        &mut self,
        endpoint_on_root: bool,
    ) -> Result<(u32, u32, u32), CommandError> {
        if !self.q35 || endpoint_on_root {
            let s = self.free_slot_on_root(2);
            if s > 0x1f {
                return Err(CommandError::Unsupported("no free PCI slot left".into()));
            }
            self.used.insert((0, s, 0));
            return Ok((0, s, 0));
        }
        let idx = self.add_root_port()?;
        self.used.insert((idx, 0, 0));
        Ok((idx, 0, 0))
    }

    fn add_root_port(&mut self) -> Result<u32, CommandError> {
        let idx = self.buses.iter().max().copied().unwrap_or(0) + 1;
        // Root ports fill the functions of a slot on pcie.0, from slot 2.
        let (slot, func) = match self.root_ports.last() {
            Some(&(_, s, f)) if f < 7 => (s, f + 1),
            _ => (self.free_slot_on_root(2), 0),
        };
        if slot > 0x1f {
            return Err(CommandError::Unsupported("no free PCI slot left".into()));
        }
        self.used.insert((0, slot, func));
        self.root_ports.push((idx, slot, func));
        self.buses.insert(idx);
        Ok(idx)
    }

    pub(super) fn root_port_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for &(idx, slot, func) in &self.root_ports {
            let multi = func == 0 && self.root_ports.iter().any(|&(_, s, f)| s == slot && f > 0);
            let mut v = obj! {"driver": "pcie-root-port", "port": (slot << 3) | func,
            "chassis": idx, "id": format!("pci.{idx}"), "bus": "pcie.0"};
            if multi {
                v["multifunction"] = json!(true);
            }
            v["addr"] = json!(addr_str(slot, func));
            out.push("-device".into());
            out.push(json_arg(&v));
        }
        out
    }
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

/// Root ports created on the way (q35) become controllers in the live XML.
pub(super) fn add_root_port_controllers(pci: &Pci, devs: &mut Element) {
    for &(idx, slot, func) in &pci.root_ports {
        let mut c = Element::new("controller")
            .with_attr("type", "pci")
            .with_attr("index", &idx.to_string())
            .with_attr("model", "pcie-root-port");
        c.push(Element::new("model").with_attr("name", "pcie-root-port"));
        c.push(
            Element::new("target")
                .with_attr("chassis", &idx.to_string())
                .with_attr("port", &format!("0x{:x}", (slot << 3) | func)),
        );
        c.push(Element::new("alias").with_attr("name", &format!("pci.{idx}")));
        c.push(pci_address_element(0, slot, func));
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
        // legacy endpoints sit on pcie.0 itself, from slot 2 on (slot 1 is VGA's, 0x1f ICH9's)
        assert_eq!(pci.alloc(true).unwrap(), (0, 3, 0));
        assert_eq!(pci.root_ports, vec![(1, 2, 0), (2, 2, 1)]);
        let args = pci.root_port_args();
        assert_eq!(args.len(), 4);
        assert_eq!(
            args[1],
            r#"{"driver":"pcie-root-port","port":16,"chassis":1,"id":"pci.1","bus":"pcie.0","multifunction":true,"addr":"0x2"}"#
        );
        assert_eq!(
            args[3],
            r#"{"driver":"pcie-root-port","port":17,"chassis":2,"id":"pci.2","bus":"pcie.0","addr":"0x2.0x1"}"#
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
}

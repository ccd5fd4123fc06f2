//! Controllers: PCI (root and user root ports), USB (UHCI, xHCI, EHCI and its ICH9
//! UHCI companions), IDE, SATA (AHCI), SCSI and virtio-serial, each aliased in the live
//! definition and placed on the PCI bus.
//!
//! Architecture invariant: nothing here talks to QEMU or the filesystem.

use super::address::{Pci, explicit_pci, pci_address_element, place, with_pci};
use super::{CommandError, Ctx, Obj, parse_num, push_device, set_alias};
use rvirt_xml::Element;
use serde_json::json;

/// The `-device` of an `ich9-uhciN` companion controller of the EHCI controller `alias`.
pub(super) fn ich9_companion(
    c: &mut Element,
    n: &str,
    alias: &str,
    pci: &mut Pci,
) -> Result<Obj, CommandError> {
    if !matches!(n, "1" | "2" | "3") {
        return Err(CommandError::Unsupported(format!(
            "USB controller model 'ich9-uhci{n}' is not supported"
        )));
    }
    let start = c
        .child("master")
        .and_then(|m| m.attr("startport"))
        .and_then(parse_num)
        .ok_or_else(|| {
            CommandError::Invalid(format!(
                "USB companion controller 'ich9-uhci{n}' needs <master startport=...>"
            ))
        })?;
    let multifunction = c.child("address").and_then(|a| a.attr("multifunction")) == Some("on");
    let (bus, addr) = place(pci, c, true)?;
    let mut v = obj! {"driver": format!("ich9-usb-uhci{n}"), "masterbus": format!("{alias}.0"),
    "firstport": start, "bus": bus};
    if multifunction {
        v["multifunction"] = json!(true);
    }
    v["addr"] = json!(addr);
    Ok(v)
}

/// The `-device` arguments of the controllers. Returns whether a SATA controller other
/// than q35's built-in one exists (disks on SATA then name its bus `sata0`).
pub(super) fn controllers(
    cx: &mut Ctx<'_>,
    devs: &mut Element,
    ctrl_args: &mut Vec<String>,
) -> Result<bool, CommandError> {
    let q35 = cx.q35;
    let pci = &mut cx.pci;
    let mut scsi_models = std::collections::BTreeMap::new();
    let mut sata_pc = false;
    for c in devs.children_named_mut("controller") {
        let ty = c.attr("type").unwrap_or("").to_string();
        let idx = c.attr("index").and_then(parse_num).unwrap_or(0);
        match ty.as_str() {
            "pci" => {
                let model = c.attr("model").unwrap_or("").to_string();
                if idx == 0 {
                    set_alias(c, if q35 { "pcie.0" } else { "pci.0" });
                } else if q35 && model == "pcie-root-port" {
                    // placed, defaulted and emitted by the allocator (address.rs)
                    set_alias(c, &format!("pci.{idx}"));
                } else {
                    return Err(CommandError::Unsupported(format!(
                        "PCI controller model '{model}' is not supported"
                    )));
                }
            }
            "usb" => {
                // a USB controller the XML names without a model is PIIX3's UHCI on
                // both machines, as libvirt keeps it (the implicit one of q35 is xHCI,
                // see defaults.rs)
                let model = c.attr("model").unwrap_or("piix3-uhci").to_string();
                if model == "none" {
                    continue;
                }
                let alias = if idx == 0 {
                    "usb".to_string()
                } else {
                    format!("usb{idx}")
                };
                set_alias(c, &alias);
                if let Some(n) = model.strip_prefix("ich9-uhci") {
                    push_device(ctrl_args, &ich9_companion(c, n, &alias, pci)?);
                    continue;
                }
                let driver = match model.as_str() {
                    "piix3-uhci" => "piix3-usb-uhci",
                    "qemu-xhci" => "qemu-xhci",
                    "nec-xhci" => "nec-usb-xhci",
                    "ich9-ehci1" => "ich9-usb-ehci1",
                    other => {
                        return Err(CommandError::Unsupported(format!(
                            "USB controller model '{other}' is not supported"
                        )));
                    }
                };
                let bus = if driver == "piix3-usb-uhci" && !q35 && explicit_pci(c).is_none() {
                    pci.reserve(0, 1, 2);
                    c.push(pci_address_element(0, 1, 2));
                    ("pci.0".to_string(), "0x1.0x2".to_string())
                } else {
                    // UHCI and EHCI are conventional PCI devices
                    place(pci, c, !driver.contains("xhci"))?
                };
                let mut v = obj! {"driver": driver};
                if let Some(ports) = c.attr("ports").and_then(parse_num)
                    && matches!(driver, "qemu-xhci" | "nec-usb-xhci")
                {
                    // xHCI: as many USB 2 as USB 3 ports
                    v["p2"] = json!(ports);
                    v["p3"] = json!(ports);
                }
                v["id"] = json!(alias);
                push_device(ctrl_args, &with_pci(v, bus));
            }
            "ide" => {
                if q35 {
                    return Err(CommandError::Unsupported(
                        "IDE controllers are unsupported for this QEMU binary or machine type"
                            .into(),
                    ));
                }
                set_alias(c, "ide");
                if explicit_pci(c).is_none() {
                    c.push(pci_address_element(0, 1, 1));
                }
            }
            "sata" => {
                set_alias(
                    c,
                    &format!(
                        "ide{}",
                        if q35 && idx == 0 {
                            String::new()
                        } else {
                            idx.to_string()
                        }
                    ),
                );
                if q35 && idx == 0 {
                    if explicit_pci(c).is_none() {
                        c.push(pci_address_element(0, 0x1f, 2));
                    }
                } else {
                    sata_pc = true;
                    set_alias(c, &format!("sata{idx}"));
                    let bus = place(pci, c, true)?;
                    push_device(
                        ctrl_args,
                        &with_pci(
                            obj! {"driver": "ich9-ahci", "id": format!("sata{idx}")},
                            bus,
                        ),
                    );
                }
            }
            "scsi" => {
                let model = c.attr("model").unwrap_or("virtio-scsi").to_string();
                let driver = match model.as_str() {
                    "virtio-scsi" => "virtio-scsi-pci",
                    "lsilogic" => "lsi",
                    "megasas" => "megasas",
                    "mptsas1068" => "mptsas1068",
                    "vmpvscsi" => "pvscsi",
                    other => {
                        return Err(CommandError::Unsupported(format!(
                            "SCSI controller model '{other}' is not supported"
                        )));
                    }
                };
                if c.attr("model").is_none() {
                    c.set_attr("model", &model);
                }
                scsi_models.insert(idx, model.clone());
                set_alias(c, &format!("scsi{idx}"));
                // only virtio-scsi is a PCIe device
                let bus = place(pci, c, model != "virtio-scsi")?;
                push_device(
                    ctrl_args,
                    &with_pci(obj! {"driver": driver, "id": format!("scsi{idx}")}, bus),
                );
            }
            "virtio-serial" => {
                set_alias(c, &format!("virtio-serial{idx}"));
                let bus = place(pci, c, false)?;
                push_device(
                    ctrl_args,
                    &with_pci(
                        obj! {"driver": "virtio-serial-pci", "id": format!("virtio-serial{idx}")},
                        bus,
                    ),
                );
            }
            other => {
                return Err(CommandError::Unsupported(format!(
                    "controller type '{other}' is not supported"
                )));
            }
        }
    }
    Ok(sata_pc)
}

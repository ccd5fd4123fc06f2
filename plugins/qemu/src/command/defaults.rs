//! The devices a domain gets without asking, as libvirt adds them when it parses a
//! definition: the root PCI controller, a USB controller, IDE (pc) or SATA (q35), a
//! virtio-scsi controller for SCSI disks, a virtio-serial controller for virtio
//! channels, the memory balloon, PS/2 mouse and keyboard, and a VGA for graphics.
//!
//! Architecture invariant: this only edits the live definition; it emits no arguments.

use super::attr;
use rvirt_xml::Element;

/// Appends the implicit controllers and devices to `devs`.
pub(super) fn add_implicit(devs: &mut Element, q35: bool, has_graphics: bool) {
    let has_ctrl = |d: &Element, ty: &str| {
        d.children_named("controller")
            .any(|c| c.attr("type") == Some(ty))
    };
    let mut implicit = Vec::new();
    if !devs
        .children_named("controller")
        .any(|c| c.attr("type") == Some("pci") && c.attr("index") == Some("0"))
    {
        implicit.push(
            Element::new("controller")
                .with_attr("type", "pci")
                .with_attr("index", "0")
                .with_attr("model", if q35 { "pcie-root" } else { "pci-root" }),
        );
    }
    if !has_ctrl(devs, "usb") {
        implicit.push(
            Element::new("controller")
                .with_attr("type", "usb")
                .with_attr("index", "0")
                .with_attr("model", if q35 { "qemu-xhci" } else { "piix3-uhci" }),
        );
    }
    let needs = |d: &Element, bus: &str| {
        d.children_named("disk")
            .any(|k| attr(k, &["target"], "bus") == Some(bus))
    };
    if !q35 && !has_ctrl(devs, "ide") {
        implicit.push(
            Element::new("controller")
                .with_attr("type", "ide")
                .with_attr("index", "0"),
        );
    }
    if (q35 || needs(devs, "sata")) && !has_ctrl(devs, "sata") {
        implicit.push(
            Element::new("controller")
                .with_attr("type", "sata")
                .with_attr("index", "0"),
        );
    }
    if needs(devs, "scsi") && !has_ctrl(devs, "scsi") {
        implicit.push(
            Element::new("controller")
                .with_attr("type", "scsi")
                .with_attr("index", "0")
                .with_attr("model", "virtio-scsi"),
        );
    }
    let has_virtio_channel = devs
        .children_named("channel")
        .any(|c| attr(c, &["target"], "type") == Some("virtio"));
    if has_virtio_channel && !has_ctrl(devs, "virtio-serial") {
        implicit.push(
            Element::new("controller")
                .with_attr("type", "virtio-serial")
                .with_attr("index", "0"),
        );
    }
    if devs.child("memballoon").is_none() {
        implicit.push(Element::new("memballoon").with_attr("model", "virtio"));
    }
    if !devs
        .children_named("input")
        .any(|i| i.attr("bus") == Some("ps2"))
    {
        implicit.push(
            Element::new("input")
                .with_attr("type", "mouse")
                .with_attr("bus", "ps2"),
        );
        implicit.push(
            Element::new("input")
                .with_attr("type", "keyboard")
                .with_attr("bus", "ps2"),
        );
    }
    if has_graphics && devs.child("video").is_none() {
        let mut v = Element::new("video");
        v.push(
            Element::new("model")
                .with_attr("type", "vga")
                .with_attr("vram", "16384")
                .with_attr("heads", "1")
                .with_attr("primary", "yes"),
        );
        implicit.push(v);
    }
    for e in implicit {
        devs.push(e);
    }
}

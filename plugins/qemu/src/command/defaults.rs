//! The devices a domain gets without asking, as libvirt adds them when it parses a
//! definition: the root PCI controller, a USB controller, IDE (pc) or SATA (q35), a
//! virtio-scsi controller for SCSI disks, a virtio-serial controller for virtio
//! channels, the memory balloon, PS/2 mouse and keyboard, and a Cirrus VGA for graphics (libvirt's x86 default).
//!
//! Architecture invariant: this only edits the live definition; it emits no arguments
//! (and [`check_device_kinds`] only looks for the `swtpm` binary).

use super::{CommandError, attr};
use rvirt_xml::Element;

/// The `<devices>` children the command builders turn into arguments.
const HANDLED: &[&str] = &[
    "emulator",
    "disk",
    "controller",
    "interface",
    "serial",
    "console",
    "channel",
    "input",
    "graphics",
    "video",
    "sound",
    "audio",
    "redirdev",
    "memballoon",
    "watchdog",
    "rng",
];

/// Whether `prog` is an executable file on `PATH`.
fn in_path(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.join(prog))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// A device the driver does not turn into arguments is refused, not silently dropped:
/// a guest must not start without a device its definition names. A TPM emulator
/// names the program it needs (`swtpm`).
pub(super) fn check_device_kinds(devs: &Element) -> Result<(), CommandError> {
    for e in devs.elements() {
        let kind = e.name();
        if HANDLED.contains(&kind) {
            continue;
        }
        if kind == "tpm" {
            let backend = attr(e, &["backend"], "type").unwrap_or("passthrough");
            if backend == "emulator" && !in_path("swtpm") {
                return Err(CommandError::Unsupported(
                    "TPM emulator needs swtpm, which is not installed \
                     (apt-get install swtpm swtpm-tools)"
                        .into(),
                ));
            }
            return Err(CommandError::Unsupported(format!(
                "TPM backend '{backend}' is not supported by the qemu driver"
            )));
        }
        return Err(CommandError::Unsupported(format!(
            "device <{kind}> is not supported by the qemu driver"
        )));
    }
    for a in devs.children_named("audio") {
        let ty = a.attr("type").unwrap_or("none");
        if !matches!(ty, "none" | "spice") {
            return Err(CommandError::Unsupported(format!(
                "audio backend '{ty}' is not supported (none, spice)"
            )));
        }
    }
    Ok(())
}

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
        // libvirt's default model for x86 guests with a display
        v.push(
            Element::new("model")
                .with_attr("type", "cirrus")
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

//! The remaining devices: input (PS/2, USB, virtio), sound cards, USB redirection, the
//! memory balloon, watchdogs and random number generators.
//!
//! Architecture invariant: nothing here talks to QEMU or the filesystem.

use super::address::{Pci, explicit_pci, pci_address_element, place, with_pci};
use super::{CommandError, attr, json_arg, push_device, set_alias};
use rvirt_xml::Element;

/// The USB ports (of the first bus) the XML's USB devices name already.
fn used_usb_ports(devs: &Element) -> std::collections::BTreeSet<String> {
    devs.elements()
        .filter(|e| matches!(e.name(), "input" | "redirdev"))
        .filter_map(|e| {
            let a = e.child("address")?;
            (a.attr("type") == Some("usb") && a.attr("bus").unwrap_or("0") == "0")
                .then(|| a.attr("port").map(str::to_string))
                .flatten()
        })
        .collect()
}

/// The USB port of `e`: its address's, else the first free one (written into the XML).
fn usb_port(e: &mut Element, used: &mut std::collections::BTreeSet<String>) -> String {
    if let Some(p) = attr(e, &["address"], "port") {
        return p.to_string();
    }
    let p = (1..)
        .map(|n: u32| n.to_string())
        .find(|p| !used.contains(p))
        .expect("a free port");
    used.insert(p.clone());
    e.push(
        Element::new("address")
            .with_attr("type", "usb")
            .with_attr("bus", "0")
            .with_attr("port", &p),
    );
    p
}

/// Input devices.
pub(super) fn inputs(
    pci: &mut Pci,
    devs: &mut Element,
    tail_args: &mut Vec<String>,
) -> Result<(), CommandError> {
    let mut used = used_usb_ports(devs);
    for (k, i) in devs.children_named_mut("input").enumerate() {
        let ty = i.attr("type").unwrap_or("mouse").to_string();
        let bus = i.attr("bus").unwrap_or("ps2").to_string();
        match bus.as_str() {
            "ps2" => {
                set_alias(i, &format!("input{k}"));
            }
            "usb" => {
                let driver = match ty.as_str() {
                    "tablet" => "usb-tablet",
                    "mouse" => "usb-mouse",
                    "keyboard" => "usb-kbd",
                    other => {
                        return Err(CommandError::Unsupported(format!(
                            "input type '{other}' is not supported"
                        )));
                    }
                };
                let alias = format!("input{k}");
                set_alias(i, &alias);
                let port = usb_port(i, &mut used);
                push_device(
                    tail_args,
                    &obj! {"driver": driver, "id": alias, "bus": "usb.0", "port": port},
                );
            }
            "virtio" => {
                let driver = match ty.as_str() {
                    "tablet" => "virtio-tablet-pci",
                    "mouse" => "virtio-mouse-pci",
                    "keyboard" => "virtio-keyboard-pci",
                    other => {
                        return Err(CommandError::Unsupported(format!(
                            "input type '{other}' is not supported"
                        )));
                    }
                };
                let alias = format!("input{k}");
                set_alias(i, &alias);
                let b = place(pci, i, false)?;
                push_device(
                    tail_args,
                    &with_pci(obj! {"driver": driver, "id": alias}, b),
                );
            }
            other => {
                return Err(CommandError::Unsupported(format!(
                    "input bus '{other}' is not supported"
                )));
            }
        }
    }
    Ok(())
}

/// The guest statistics polling period (s) of the virtio balloon of `live`
/// (`<memballoon><stats period>`), when it asks for one.
pub fn balloon_period(live: &rvirt_xml::Domain) -> Option<u64> {
    live.devices_of("memballoon")
        .filter(|b| b.attr("model").unwrap_or("virtio") == "virtio")
        .find_map(|b| b.child("stats")?.attr("period")?.trim().parse::<u64>().ok())
        .filter(|p| *p > 0)
}

/// The memory balloon.
pub(super) fn memballoon(
    pci: &mut Pci,
    devs: &mut Element,
    tail_args: &mut Vec<String>,
) -> Result<(), CommandError> {
    for b in devs.children_named_mut("memballoon") {
        match b.attr("model").unwrap_or("virtio") {
            "none" => {}
            "virtio" => {
                set_alias(b, "balloon0");
                let bus = place(pci, b, false)?;
                push_device(
                    tail_args,
                    &with_pci(obj! {"driver": "virtio-balloon-pci", "id": "balloon0"}, bus),
                );
            }
            other => {
                return Err(CommandError::Unsupported(format!(
                    "memballoon model '{other}' is not supported"
                )));
            }
        }
    }
    Ok(())
}

/// Watchdogs and their action.
pub(super) fn watchdogs(
    pci: &mut Pci,
    devs: &mut Element,
    tail_args: &mut Vec<String>,
) -> Result<(), CommandError> {
    for (k, w) in devs.children_named_mut("watchdog").enumerate() {
        let model = w.attr("model").unwrap_or("i6300esb").to_string();
        let alias = format!("watchdog{k}");
        set_alias(w, &alias);
        match model.as_str() {
            "i6300esb" => {
                let b = place(pci, w, true)?;
                push_device(
                    tail_args,
                    &with_pci(obj! {"driver": "i6300esb", "id": alias}, b),
                );
            }
            "ib700" => push_device(tail_args, &obj! {"driver": "ib700", "id": alias}),
            other => {
                return Err(CommandError::Unsupported(format!(
                    "watchdog model '{other}' is not supported"
                )));
            }
        }
        let action = w.attr("action").unwrap_or("reset").to_string();
        let qaction = match action.as_str() {
            "reset" | "shutdown" | "poweroff" | "pause" | "none" => action.clone(),
            "inject-nmi" => "inject-nmi".into(),
            "dump" => "pause".into(),
            other => {
                return Err(CommandError::Unsupported(format!(
                    "watchdog action '{other}' is not supported"
                )));
            }
        };
        tail_args.push("-watchdog-action".into());
        tail_args.push(qaction);
    }
    Ok(())
}

/// Random number generators (virtio-rng and its backend object).
pub(super) fn rngs(
    pci: &mut Pci,
    devs: &mut Element,
    tail_args: &mut Vec<String>,
) -> Result<(), CommandError> {
    for (k, r) in devs.children_named_mut("rng").enumerate() {
        if r.attr("model").unwrap_or("virtio") != "virtio" {
            return Err(CommandError::Unsupported(
                "rng model must be 'virtio'".into(),
            ));
        }
        let backend = r.child("backend");
        let obj = format!("objrng{k}");
        let o = match backend.and_then(|b| b.attr("model")).unwrap_or("random") {
            "random" => {
                let f = backend
                    .map(|b| b.text().trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "/dev/urandom".into());
                obj! {"qom-type": "rng-random", "id": obj, "filename": f}
            }
            "builtin" => obj! {"qom-type": "rng-builtin", "id": obj},
            other => {
                return Err(CommandError::Unsupported(format!(
                    "rng backend '{other}' is not supported"
                )));
            }
        };
        let alias = format!("rng{k}");
        set_alias(r, &alias);
        let b = place(pci, r, false)?;
        tail_args.push("-object".into());
        tail_args.push(json_arg(&o));
        push_device(
            tail_args,
            &with_pci(
                obj! {"driver": "virtio-rng-pci", "rng": obj, "id": alias},
                b,
            ),
        );
    }
    Ok(())
}

/// Sound cards (`ich9`, `ich6`, `ac97`) and the codecs of the HDA ones, playing through
/// the `audio1` backend. On q35 the ICH9 HDA function has its slot, 00:1b.0.
pub(super) fn sounds(
    pci: &mut Pci,
    devs: &mut Element,
    q35: bool,
    tail_args: &mut Vec<String>,
) -> Result<(), CommandError> {
    for (k, snd) in devs.children_named_mut("sound").enumerate() {
        let model = snd.attr("model").unwrap_or("").to_string();
        let driver = match model.as_str() {
            "ich9" => "ich9-intel-hda",
            "ich6" => "intel-hda",
            "ac97" => "AC97",
            other => {
                return Err(CommandError::Unsupported(format!(
                    "sound model '{other}' is not supported (ich9, ich6, ac97)"
                )));
            }
        };
        let alias = format!("sound{k}");
        set_alias(snd, &alias);
        if q35
            && model == "ich9"
            && explicit_pci(snd).is_none()
            && !pci.used.contains(&(0, 0x1b, 0))
        {
            pci.reserve(0, 0x1b, 0);
            snd.push(pci_address_element(0, 0x1b, 0));
        }
        let b = place(pci, snd, true)?;
        let mut v = obj! {"driver": driver, "id": alias};
        if model == "ac97" {
            v["audiodev"] = serde_json::json!("audio1");
        }
        push_device(tail_args, &with_pci(v, b));
        if model == "ac97" {
            continue;
        }
        let codecs: Vec<String> = snd
            .children_named("codec")
            .map(|c| c.attr("type").unwrap_or("duplex").to_string())
            .collect();
        let codecs = if codecs.is_empty() {
            vec!["duplex".to_string()]
        } else {
            codecs
        };
        for (n, c) in codecs.iter().enumerate() {
            let cdriver = match c.as_str() {
                "duplex" => "hda-duplex",
                "micro" => "hda-micro",
                "output" => "hda-output",
                other => {
                    return Err(CommandError::Unsupported(format!(
                        "sound codec '{other}' is not supported"
                    )));
                }
            };
            push_device(
                tail_args,
                &obj! {"driver": cdriver, "id": format!("{alias}-codec{n}"),
                "bus": format!("{alias}.0"), "cad": n, "audiodev": "audio1"},
            );
        }
    }
    Ok(())
}

/// USB redirection over SPICE (`<redirdev bus='usb' type='spicevmc'>`): a `spicevmc`
/// chardev and a `usb-redir` device on the first USB bus, in the first ports the USB
/// input devices left free.
pub(super) fn redirdevs(
    devs: &mut Element,
    tail_args: &mut Vec<String>,
) -> Result<(), CommandError> {
    let mut used = used_usb_ports(devs);
    for (k, r) in devs.children_named_mut("redirdev").enumerate() {
        if r.attr("bus").unwrap_or("usb") != "usb" {
            return Err(CommandError::Unsupported(
                "redirdev bus must be 'usb'".into(),
            ));
        }
        let ty = r.attr("type").unwrap_or("").to_string();
        if ty != "spicevmc" {
            return Err(CommandError::Unsupported(format!(
                "redirdev type '{ty}' is not supported (spicevmc only)"
            )));
        }
        let alias = format!("redir{k}");
        set_alias(r, &alias);
        let chr = format!("charredir{k}");
        tail_args.push("-chardev".into());
        tail_args.push(super::chardev::chardev(r, &chr, None)?);
        let p = usb_port(r, &mut used);
        push_device(
            tail_args,
            &obj! {"driver": "usb-redir", "chardev": chr, "id": alias, "bus": "usb.0", "port": p},
        );
    }
    Ok(())
}

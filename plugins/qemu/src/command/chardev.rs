//! Character devices: the chardev backends (pty, null, file, unix socket) and the
//! devices on them: serial ports, the console (the first serial port, as libvirt shows
//! it) and virtio-serial channels such as the guest agent's.
//!
//! Architecture invariant: nothing here talks to QEMU or the filesystem (socket paths
//! are only named).

use super::{BuildOptions, CommandError, attr, parse_num, push_device, set_alias};
use rvirt_xml::Element;
use serde_json::json;
use std::path::PathBuf;

/// The chardev backend of a `<serial>`/`<console>`/`<channel>` element.
pub(super) fn chardev(
    e: &mut Element,
    id: &str,
    default_unix: Option<PathBuf>,
) -> Result<String, CommandError> {
    let ty = e.attr("type").unwrap_or("pty").to_string();
    let src_path = |e: &Element| {
        e.child("source")
            .and_then(|s| s.attr("path"))
            .map(str::to_string)
    };
    Ok(match ty.as_str() {
        "pty" => format!("pty,id={id}"),
        "null" => format!("null,id={id}"),
        // the SPICE agent channel (com.redhat.spice.0) and USB redirection
        "spicevmc" => {
            let name = match e.name() {
                "redirdev" => "usbredir",
                _ => "vdagent",
            };
            format!("spicevmc,id={id},name={name}")
        }
        "file" => {
            let p = src_path(e).ok_or_else(|| {
                CommandError::Invalid(format!(
                    "{} of type 'file' needs <source path=...>",
                    e.name()
                ))
            })?;
            let append = e.child("source").and_then(|s| s.attr("append")) == Some("on");
            format!(
                "file,id={id},path={}{}",
                p.replace(',', ",,"),
                if append { ",append=on" } else { "" }
            )
        }
        "unix" => {
            let p = match src_path(e) {
                Some(p) => p,
                None => {
                    let p = default_unix.ok_or_else(|| {
                        CommandError::Invalid(format!(
                            "{} of type 'unix' needs <source path=...>",
                            e.name()
                        ))
                    })?;
                    let s = e.child_or_insert("source");
                    s.set_attr("mode", "bind");
                    s.set_attr("path", &p.to_string_lossy());
                    p.to_string_lossy().into_owned()
                }
            };
            let bind = e
                .child("source")
                .and_then(|s| s.attr("mode"))
                .unwrap_or("bind")
                == "bind";
            format!(
                "socket,id={id},path={}{}",
                p.replace(',', ",,"),
                if bind { ",server=on,wait=off" } else { "" }
            )
        }
        other => {
            return Err(CommandError::Unsupported(format!(
                "character device type '{other}' is not supported"
            )));
        }
    })
}

/// Serial ports and consoles.
pub(super) fn serials_and_consoles(
    devs: &mut Element,
    char_args: &mut Vec<String>,
) -> Result<(), CommandError> {
    let nserial = devs.children_named("serial").count();
    for (k, s) in devs.children_named_mut("serial").enumerate() {
        let port = attr(s, &["target"], "port")
            .and_then(parse_num)
            .unwrap_or(k as u64);
        let id = format!("charserial{k}");
        char_args.push("-chardev".into());
        char_args.push(chardev(s, &id, None)?);
        set_alias(s, &format!("serial{k}"));
        push_device(
            char_args,
            &obj! {"driver": "isa-serial", "chardev": id, "id": format!("serial{k}"), "index": port},
        );
    }
    let mut console_serial = false;
    let nconsole = devs.children_named("console").count();
    for c in devs.children_named_mut("console") {
        let tt = attr(c, &["target"], "type").unwrap_or("serial").to_string();
        if tt != "serial" {
            return Err(CommandError::Unsupported(format!(
                "console target type '{tt}' is not supported (serial only)"
            )));
        }
        set_alias(c, "serial0");
        if nserial == 0 && !console_serial {
            // A console with no serial is the first serial port.
            char_args.push("-chardev".into());
            char_args.push(chardev(c, "charserial0", None)?);
            push_device(
                char_args,
                &obj! {"driver": "isa-serial", "chardev": "charserial0", "id": "serial0", "index": 0},
            );
            console_serial = true;
        }
    }
    if nconsole == 0 && nserial > 0 {
        // libvirt shows the first serial port as the console too.
        let s0 = devs.children_named("serial").next().cloned();
        if let Some(s0) = s0 {
            let mut c = Element::new("console").with_attr("type", s0.attr("type").unwrap_or("pty"));
            if let Some(src) = s0.child("source") {
                c.push(src.clone());
            }
            c.push(
                Element::new("target")
                    .with_attr("type", "serial")
                    .with_attr("port", "0"),
            );
            c.push(Element::new("alias").with_attr("name", "serial0"));
            let pos = devs
                .nodes()
                .iter()
                .rposition(|n| matches!(n, rvirt_xml::Node::Element(e) if e.name() == "serial"))
                .map_or(devs.nodes().len(), |p| p + 1);
            devs.nodes_mut().insert(pos, rvirt_xml::Node::Element(c));
        }
    }
    Ok(())
}

/// Channels (virtio-serial ports; the guest agent).
pub(super) fn channels(
    devs: &mut Element,
    opts: &BuildOptions,
    name: &str,
    char_args: &mut Vec<String>,
) -> Result<(), CommandError> {
    for (k, c) in devs.children_named_mut("channel").enumerate() {
        let tt = attr(c, &["target"], "type").unwrap_or("").to_string();
        if tt != "virtio" {
            return Err(CommandError::Unsupported(format!(
                "channel target type '{tt}' is not supported (virtio only)"
            )));
        }
        let tname = attr(c, &["target"], "name").unwrap_or("").to_string();
        let id = format!("charchannel{k}");
        let default = (!tname.is_empty()).then(|| opts.channel_dir.join(format!("{name}.{tname}")));
        char_args.push("-chardev".into());
        char_args.push(chardev(c, &id, default)?);
        let alias = format!("channel{k}");
        set_alias(c, &alias);
        let mut v = obj! {"driver": "virtserialport", "bus": "virtio-serial0.0", "nr": k + 1, "chardev": id, "id": alias};
        if !tname.is_empty() {
            v["name"] = json!(tname);
        }
        if c.child("address").is_none() {
            c.push(
                Element::new("address")
                    .with_attr("type", "virtio-serial")
                    .with_attr("controller", "0")
                    .with_attr("bus", "0")
                    .with_attr("port", &(k + 1).to_string()),
            );
        }
        push_device(char_args, &v);
    }
    Ok(())
}

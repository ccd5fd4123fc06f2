//! Disks: the definitions' storage volumes and network disk secrets the driver resolves
//! before start, transient disks, and the `-blockdev` graph (storage and format nodes,
//! `netdisk` for network protocols) plus the guest device of each `<disk>` on its bus.
//!
//! Architecture invariant: nothing here talks to QEMU; the filesystem is only asked
//! whether a disk's source exists.

use super::address::{place, set_drive_address};
use super::netdisk::{self, NetAuth, NetSource, auth_of};
use super::{CommandError, Ctx, attr, check_exists, json_arg, parse_num, push_device, set_alias};
use rvirt_xml::{Domain, Element};
use serde_json::{Value, json};
use std::path::PathBuf;

/// The `<disk type='network'>` disks of `def` with an `<auth>`, by target device: whose
/// keys the driver fetches (host services' `secret_value`) before QEMU starts.
/// Volume disks on network pools (in `volumes`) count with their pool's `<auth>`.
pub fn network_auths(
    def: &Domain,
    volumes: &std::collections::HashMap<String, ResolvedVolume>,
) -> Result<Vec<(String, NetAuth)>, CommandError> {
    let mut out = Vec::new();
    let Some(devs) = def.element().child("devices") else {
        return Ok(out);
    };
    for d in devs.children_named("disk") {
        let dev = attr(d, &["target"], "dev").unwrap_or("").to_string();
        let auth = match d.attr("type") {
            Some("network") => auth_of(&dev, d)?,
            Some("volume") => match volumes.get(&dev) {
                Some(v) if v.disk_type == "network" => v.net_source(&dev)?.auth,
                _ => None,
            },
            _ => None,
        };
        if let Some(a) = auth {
            out.push((dev, a));
        }
    }
    Ok(out)
}

/// A `<disk type='volume'>` resolved to what QEMU opens (libvirt's "actual" source of a
/// volume disk): the host's answer to the driver's question, kept in the status file of
/// a running domain so that a later process knows what its QEMU opened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedVolume {
    /// The pool named by the disk.
    pub pool: String,
    /// The volume named by the disk.
    pub volume: String,
    /// `file`, `block`, `dir` or `network`.
    pub disk_type: String,
    /// The volume's path on the host.
    pub path: String,
    /// The volume's format (`raw`, `qcow2`); empty when the pool reports none.
    pub format: String,
    /// The pool's type (`dir`, `logical`, ...).
    pub pool_type: String,
    /// The pool reports a backing file for the volume (from its header).
    #[serde(default)]
    pub backing: bool,
    /// For a volume of a network pool (`disk_type` `network`): the pool's definition,
    /// whose `<source>` names the servers and the auth (host services 1.6).
    #[serde(default)]
    pub pool_xml: String,
}

impl ResolvedVolume {
    /// The network source of a volume of a network pool.
    pub fn net_source(&self, dev: &str) -> Result<NetSource, CommandError> {
        NetSource::from_pool_volume(dev, &self.pool_type, &self.pool_xml, &self.path)
    }
}

/// A `<disk type='volume'>` with a source: its target device, pool and volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDisk {
    /// The target device (`vda`).
    pub target: String,
    /// The pool's name.
    pub pool: String,
    /// The volume's name.
    pub volume: String,
    /// `<source mode>` (`host` or `direct`, iSCSI pools only).
    pub mode: Option<String>,
}

/// Checks a storage pool or volume name as libvirt does: not empty, no `/`.
fn check_storage_name(
    target: &str,
    field: &str,
    name: Option<&str>,
) -> Result<String, CommandError> {
    match name {
        None | Some("") => Err(CommandError::Invalid(format!(
            "disk '{target}': the <source> of a volume disk needs the '{field}' attribute"
        ))),
        Some(n) if n.contains('/') => Err(CommandError::Invalid(format!(
            "disk '{target}': invalid {field} name '{n}' in <source> (a storage {field} name contains no '/')"
        ))),
        Some(n) => Ok(n.to_string()),
    }
}

/// The `<disk type='volume'>` disks of `def` that have a `<source>` (a volume cdrom may
/// be empty), checked for syntax only: `pool` and `volume` present and valid names,
/// `mode` (iSCSI pools) `host` or `direct`. What they name is resolved at start.
pub fn volume_disks(def: &Domain) -> Result<Vec<VolumeDisk>, CommandError> {
    let mut out = Vec::new();
    let Some(devs) = def.element().child("devices") else {
        return Ok(out);
    };
    for d in devs.children_named("disk") {
        if d.attr("type") != Some("volume") {
            continue;
        }
        let target = attr(d, &["target"], "dev").unwrap_or("").to_string();
        let Some(src) = d.child("source") else {
            continue;
        };
        let pool = check_storage_name(&target, "pool", src.attr("pool"))?;
        let volume = check_storage_name(&target, "volume", src.attr("volume"))?;
        if let Some(m) = src.attr("mode")
            && m != "host"
            && m != "direct"
        {
            return Err(CommandError::Invalid(format!(
                "disk '{target}': unknown source mode '{m}' of a volume disk (host or direct)"
            )));
        }
        out.push(VolumeDisk {
            target,
            pool,
            volume,
            mode: src.attr("mode").map(str::to_string),
        });
    }
    Ok(out)
}

/// A `<transient/>` disk: QEMU gets a qcow2 overlay over the original, deleted at stop.
#[derive(Debug, Clone)]
pub struct TransientDisk {
    /// The original image.
    pub source: PathBuf,
    /// Its format (`raw`, `qcow2`).
    pub format: String,
    /// The target name (`vda`), to name the overlay.
    pub target: String,
    /// Index in `Native::args` of the `-blockdev` argument whose filename is the overlay.
    pub arg_index: usize,
}

/// Index of a disk target name: `vda` → 0, `hdc` → 2, `sdaa` → 26.
pub(super) fn target_index(dev: &str) -> Option<u32> {
    let suffix = dev.get(2..)?;
    if suffix.is_empty() || !suffix.chars().all(|c| c.is_ascii_lowercase()) {
        return None;
    }
    let mut n: u32 = 0;
    for c in suffix.chars() {
        n = n.checked_mul(26)?.checked_add(c as u32 - 'a' as u32 + 1)?;
    }
    Some(n - 1)
}

/// The `-blockdev` nodes and guest devices of the disks. Returns the transient disks,
/// with `arg_index` relative to `disk_args`.
pub(super) fn disks(
    cx: &mut Ctx<'_>,
    devs: &mut Element,
    disk_args: &mut Vec<String>,
) -> Result<Vec<TransientDisk>, CommandError> {
    let (opts, q35, sata_pc) = (cx.opts, cx.q35, cx.sata_pc);
    let boot_for = &cx.boot_for;
    let pci = &mut cx.pci;
    let mut transient = Vec::new();
    let ndisks = devs.children_named("disk").count();
    let mut kind_seen: std::collections::HashMap<&'static str, usize> = Default::default();
    for (di, d) in devs.children_named_mut("disk").enumerate() {
        let n = ndisks - di;
        let ty = d.attr("type").unwrap_or("file").to_string();
        let device = d.attr("device").unwrap_or("disk").to_string();
        let dev = attr(d, &["target"], "dev").unwrap_or("").to_string();
        let bus = attr(d, &["target"], "bus")
            .map(str::to_string)
            .unwrap_or_else(|| {
                if dev.starts_with("vd") {
                    "virtio".into()
                } else if dev.starts_with("sd") {
                    if q35 { "sata".into() } else { "scsi".into() }
                } else {
                    "ide".into()
                }
            });
        // A volume disk opens what its volume resolved to (libvirt's actual type and
        // path); its format defaults to the volume's.
        let volume = if ty == "volume" && d.child("source").is_some() {
            let Some(v) = opts.volumes.get(&dev) else {
                let (pool, vol) = (
                    attr(d, &["source"], "pool").unwrap_or(""),
                    attr(d, &["source"], "volume").unwrap_or(""),
                );
                return Err(CommandError::Unsupported(format!(
                    "disk '{dev}': volume '{vol}' of storage pool '{pool}' was not resolved (volume disks need the host's storage services, plugin API 1.4)"
                )));
            };
            Some(v)
        } else {
            None
        };
        let actual = volume.map_or(ty.as_str(), |v| v.disk_type.as_str());
        let explicit_format = attr(d, &["driver"], "type").map(str::to_string);
        // A format taken from the volume comes from the pool's look at the image header,
        // which the guest can write: QEMU never follows a backing file named there
        // (`"backing": null`), and a volume reported with one needs its format declared.
        let format_from_volume = volume.is_some() && explicit_format.is_none();
        if format_from_volume && volume.is_some_and(|v| v.backing) {
            let v = volume.expect("checked");
            return Err(CommandError::Unsupported(format!(
                "disk '{dev}': volume '{}' of storage pool '{}' has a backing file: declare its format in <driver type> (a format read from a volume never opens backing files)",
                v.volume, v.pool
            )));
        }
        let format = explicit_format
            .clone()
            .or_else(|| volume.map(|v| v.format.clone()).filter(|f| !f.is_empty()))
            .unwrap_or_else(|| "raw".to_string());
        let readonly = device == "cdrom" || d.child("readonly").is_some();
        let net = match (ty.as_str(), volume) {
            ("network", _) => Some(NetSource::from_disk(&dev, d)?),
            ("volume", Some(v)) if v.disk_type == "network" => Some(v.net_source(&dev)?),
            _ => None,
        };
        let source = match (ty.as_str(), actual) {
            ("network", _) | ("volume", "network") => None,
            ("file", _) => attr(d, &["source"], "file").map(str::to_string),
            ("block", _) => attr(d, &["source"], "dev").map(str::to_string),
            ("volume", "file" | "block") => volume.map(|v| v.path.clone()),
            ("volume", _) if volume.is_none() => None,
            ("volume", other) => {
                return Err(CommandError::Unsupported(format!(
                    "disk '{dev}': storage volume of type '{other}' is not supported (file, block and network volumes only)"
                )));
            }
            (other, _) => {
                return Err(CommandError::Unsupported(format!(
                    "disk type '{other}' is not supported (file, block, network and volume only)"
                )));
            }
        };
        let actual = actual.to_string();
        if volume.is_some() && explicit_format.is_none() {
            // The live definition shows the format the volume resolved to, as libvirt's.
            match d.child_mut("driver") {
                Some(drv) => drv.set_attr("type", &format),
                None => d.nodes_mut().insert(
                    0,
                    rvirt_xml::Node::Element(
                        Element::new("driver")
                            .with_attr("name", "qemu")
                            .with_attr("type", &format),
                    ),
                ),
            }
        }
        let kind: &'static str = if device == "cdrom" { "cdrom" } else { "disk" };
        let nth = *kind_seen.entry(kind).and_modify(|v| *v += 1).or_insert(0);
        let bootindex = match d
            .child("boot")
            .and_then(|b| b.attr("order"))
            .and_then(parse_num)
        {
            Some(o) => Some(o),
            None => boot_for.get(&(kind, nth)).copied(),
        };
        let mut drive = None;
        if let Some(src) = &source {
            check_exists(opts.check_files, "storage file", src)?;
            let is_transient = d.child("transient").is_some();
            if is_transient && readonly {
                return Err(CommandError::Unsupported(format!(
                    "transient disk '{dev}' cannot be read-only"
                )));
            }
            let driver = match (actual.as_str(), kind) {
                ("block", "cdrom") => "host_cdrom",
                ("block", _) => "host_device",
                _ => "file",
            };
            let storage = format!("libvirt-{n}-storage");
            match (format.as_str(), is_transient) {
                ("raw", false) => {
                    disk_args.push("-blockdev".into());
                    disk_args.push(json_arg(&obj! {"driver": driver, "filename": src, "node-name": storage, "read-only": readonly}));
                    drive = Some(storage);
                }
                ("raw" | "qcow2", _) => {
                    let fmt_node = format!("libvirt-{n}-format");
                    disk_args.push("-blockdev".into());
                    if is_transient {
                        transient.push(TransientDisk {
                            source: PathBuf::from(src),
                            format: format.clone(),
                            target: dev.clone(),
                            arg_index: disk_args.len(),
                        });
                    }
                    disk_args.push(json_arg(
                        &obj! {"driver": driver, "filename": src, "node-name": storage,
                        "auto-read-only": true, "discard": "unmap"},
                    ));
                    disk_args.push("-blockdev".into());
                    let mut fmt = obj! {"node-name": fmt_node, "read-only": readonly,
                    "driver": if is_transient { "qcow2" } else { format.as_str() }, "file": storage};
                    if format_from_volume && !is_transient && format == "qcow2" {
                        fmt["backing"] = Value::Null;
                    }
                    disk_args.push(json_arg(&fmt));
                    drive = Some(fmt_node);
                }
                (other, _) => {
                    return Err(CommandError::Unsupported(format!(
                        "disk format '{other}' is not supported (raw and qcow2)"
                    )));
                }
            }
        } else if let Some(ns) = &net {
            let storage = format!("libvirt-{n}-storage");
            let secret_id = ns.auth.as_ref().map(|_| format!("{storage}-auth-secret0"));
            if let Some(id) = &secret_id {
                // the key reaches QEMU through a descriptor it inherits, never on argv
                let file = opts
                    .secrets
                    .get(&dev)
                    .cloned()
                    .unwrap_or_else(|| "/proc/self/fd/-1".to_string());
                disk_args.push("-object".into());
                disk_args.push(json_arg(
                    &obj! {"qom-type": "secret", "id": id, "format": "raw", "file": file},
                ));
            }
            let mut node = netdisk::storage_node(&dev, ns, secret_id.as_deref())?;
            node["node-name"] = json!(storage);
            match format.as_str() {
                "raw" => {
                    node["read-only"] = json!(readonly);
                    disk_args.push("-blockdev".into());
                    disk_args.push(json_arg(&node));
                    drive = Some(storage);
                }
                "qcow2" => {
                    node["auto-read-only"] = json!(true);
                    node["discard"] = json!("unmap");
                    disk_args.push("-blockdev".into());
                    disk_args.push(json_arg(&node));
                    let fmt_node = format!("libvirt-{n}-format");
                    disk_args.push("-blockdev".into());
                    disk_args.push(json_arg(
                        &obj! {"node-name": fmt_node, "read-only": readonly,
                        "driver": "qcow2", "file": storage},
                    ));
                    drive = Some(fmt_node);
                }
                other => {
                    return Err(CommandError::Unsupported(format!(
                        "disk format '{other}' is not supported (raw and qcow2)"
                    )));
                }
            }
        } else if kind == "disk" {
            return Err(CommandError::Invalid(format!("disk '{dev}' has no source")));
        }
        let idx = target_index(&dev)
            .ok_or_else(|| CommandError::Invalid(format!("invalid disk target '{dev}'")))?;
        let mut v = match bus.as_str() {
            "virtio" => {
                let alias = format!("virtio-disk{idx}");
                set_alias(d, &alias);
                let b = place(pci, d, false)?;
                let mut v = obj! {"driver": "virtio-blk-pci"};
                v["bus"] = json!(b.0);
                v["addr"] = json!(b.1);
                v["drive"] = json!(drive);
                v["id"] = json!(alias);
                v
            }
            "ide" => {
                if q35 {
                    return Err(CommandError::Unsupported(
                        "IDE controllers are unsupported for this QEMU binary or machine type"
                            .into(),
                    ));
                }
                let (b, u) = (idx / 2, idx % 2);
                let alias = format!("ide0-{b}-{u}");
                set_alias(d, &alias);
                set_drive_address(d, 0, b, 0, u);
                obj! {"driver": if kind == "cdrom" { "ide-cd" } else { "ide-hd" }, "bus": format!("ide.{b}"), "unit": u, "drive": drive, "id": alias}
            }
            "sata" => {
                let alias = format!("sata0-0-{idx}");
                set_alias(d, &alias);
                set_drive_address(d, 0, 0, 0, idx);
                let busname = if q35 && !sata_pc {
                    format!("ide.{idx}")
                } else {
                    format!("sata0.{idx}")
                };
                obj! {"driver": if kind == "cdrom" { "ide-cd" } else { "ide-hd" }, "bus": busname, "drive": drive, "id": alias}
            }
            "scsi" => {
                let alias = format!("scsi0-0-0-{idx}");
                set_alias(d, &alias);
                set_drive_address(d, 0, 0, 0, idx);
                obj! {"driver": if kind == "cdrom" { "scsi-cd" } else { "scsi-hd" }, "bus": "scsi0.0", "channel": 0,
                "scsi-id": 0, "lun": idx, "device_id": format!("drive-{alias}"), "drive": drive, "id": alias}
            }
            other => {
                return Err(CommandError::Unsupported(format!(
                    "disk bus '{other}' is not supported"
                )));
            }
        };
        if drive.is_none() {
            v.remove("drive");
        }
        if let Some(b) = bootindex {
            v["bootindex"] = json!(b);
        }
        if let Some(cache) = attr(d, &["driver"], "cache") {
            // The guest-visible write cache follows libvirt's cache modes.
            let wc = matches!(cache, "none" | "writeback" | "unsafe");
            v["write-cache"] = json!(if wc { "on" } else { "off" });
        }
        push_device(disk_args, &v);
    }
    Ok(transient)
}

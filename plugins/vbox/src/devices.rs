//! Disks and network interfaces between domain XML and VirtualBox's settings, as libvirt's
//! vbox driver places them: `hdX` targets on the IDE controller (port = index / 2, device
//! = index % 2), `sdX` on SATA (or SCSI with `bus='scsi'`, port = index, device 0); NICs
//! in adapter slots in order, NAT as `type='user'`, bridged as `type='bridge'`, host-only as
//! `type='network'` naming the host-only interface, internal networks as
//! `type='internal'`. Pure conversions; the driver makes the calls.

use rvirt_xml::Element;

/// Errors of the conversion: the element and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{path}: {why}")]
    Unsupported { path: String, why: String },
}

fn unsupported(path: impl Into<String>, why: impl Into<String>) -> DeviceError {
    DeviceError::Unsupported {
        path: path.into(),
        why: why.into(),
    }
}

/// A storage bus: VirtualBox's `StorageBus` name and the controller name libvirt uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    Ide,
    Sata,
    Scsi,
}

impl Bus {
    pub fn vbox(self) -> &'static str {
        match self {
            Bus::Ide => "IDE",
            Bus::Sata => "SATA",
            Bus::Scsi => "SCSI",
        }
    }

    pub fn controller(self) -> &'static str {
        match self {
            Bus::Ide => "IDE Controller",
            Bus::Sata => "SATA Controller",
            Bus::Scsi => "SCSI Controller",
        }
    }

    pub fn from_vbox(s: &str) -> Option<Bus> {
        match s {
            "IDE" => Some(Bus::Ide),
            "SATA" => Some(Bus::Sata),
            "SCSI" => Some(Bus::Scsi),
            _ => None,
        }
    }

    fn xml(self) -> &'static str {
        match self {
            Bus::Ide => "ide",
            Bus::Sata => "sata",
            Bus::Scsi => "scsi",
        }
    }

    /// The controller port and device of target index `i`.
    fn slot(self, i: u32) -> Option<(u32, u32)> {
        match self {
            Bus::Ide if i < 4 => Some((i / 2, i % 2)),
            Bus::Sata if i < 30 => Some((i, 0)),
            Bus::Scsi if i < 16 => Some((i, 0)),
            _ => None,
        }
    }

    /// The target name of a port and device.
    fn target(self, port: u32, device: u32) -> String {
        let (prefix, i) = match self {
            Bus::Ide => ("hd", port * 2 + device),
            Bus::Sata | Bus::Scsi => ("sd", port),
        };
        format!("{prefix}{}", index_name(i))
    }
}

/// `a`, `b`, … `z`, `aa`, … as disk names count.
fn index_name(mut i: u32) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'a' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// The index of a disk name's letters (`hdc` → 2, `sdaa` → 26).
fn name_index(letters: &str) -> Option<u32> {
    if letters.is_empty() || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut n: u32 = 0;
    for b in letters.bytes() {
        n = n.checked_mul(26)?.checked_add(u32::from(b - b'a') + 1)?;
    }
    Some(n - 1)
}

/// One medium attachment.
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    pub bus: Bus,
    pub port: u32,
    pub device: u32,
    /// `HardDisk` or `DVD`.
    pub kind: &'static str,
    pub location: String,
}

/// One network adapter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Nic {
    /// `NAT`, `Bridged`, `HostOnly`, `Internal`.
    pub attachment: String,
    /// The bridged or host-only interface, or the internal network.
    pub source: String,
    /// 12 hex digits, as VirtualBox keeps it; empty for a generated one.
    pub mac: String,
    /// `AdapterType` (`I82540EM`, `Virtio`…); empty for the default.
    pub model: String,
}

/// The network adapter slots the driver uses (the PIIX3 chipset's count).
pub const NIC_SLOTS: usize = 8;

const MODELS: &[(&str, &str)] = &[
    ("am79c970a", "Am79C970A"),
    ("am79c973", "Am79C973"),
    ("82540EM", "I82540EM"),
    ("82543GC", "I82543GC"),
    ("82545EM", "I82545EM"),
    ("virtio", "Virtio"),
];

/// The disks and NICs of a domain's `<devices>`; any other device is refused, naming it.
pub fn from_domain(devices: Option<&Element>) -> Result<(Vec<Disk>, Vec<Nic>), DeviceError> {
    let mut disks: Vec<Disk> = Vec::new();
    let mut nics = Vec::new();
    let Some(devices) = devices else {
        return Ok((disks, nics));
    };
    let (mut nd, mut nn) = (0, 0);
    for d in devices.elements() {
        match d.name() {
            "disk" => {
                nd += 1;
                let path = format!("domain/devices/disk[{nd}]");
                let kind = match d.attr("device").unwrap_or("disk") {
                    "disk" => "HardDisk",
                    "cdrom" => "DVD",
                    other => {
                        return Err(unsupported(
                            format!("{path}/@device"),
                            format!("'{other}' disks are not supported by the vbox driver"),
                        ));
                    }
                };
                if d.attr("type").unwrap_or("file") != "file" {
                    return Err(unsupported(
                        format!("{path}/@type"),
                        "the vbox driver attaches only file-backed media",
                    ));
                }
                let location = d
                    .child("source")
                    .and_then(|s| s.attr("file"))
                    .filter(|f| f.starts_with('/'))
                    .ok_or_else(|| {
                        unsupported(
                            format!("{path}/source/@file"),
                            "an absolute file name is needed (VirtualBox opens the medium)",
                        )
                    })?
                    .to_string();
                let target = d.child("target");
                let dev = target.and_then(|t| t.attr("dev")).unwrap_or("");
                let (prefix, letters) = dev.split_at(dev.len().min(2));
                let bus = match (target.and_then(|t| t.attr("bus")), prefix) {
                    (Some("ide"), _) | (None, "hd") => Bus::Ide,
                    (Some("sata"), _) | (None, "sd") => Bus::Sata,
                    (Some("scsi"), _) => Bus::Scsi,
                    (b, _) => {
                        return Err(unsupported(
                            format!("{path}/target"),
                            format!(
                                "bus '{}' of target '{dev}': the vbox driver places disks on ide, sata or scsi",
                                b.unwrap_or("")
                            ),
                        ));
                    }
                };
                let slot = name_index(letters)
                    .and_then(|i| bus.slot(i))
                    .ok_or_else(|| {
                        unsupported(
                            format!("{path}/target/@dev"),
                            format!("'{dev}' names no slot of the {} controller", bus.vbox()),
                        )
                    })?;
                if disks
                    .iter()
                    .any(|o| o.bus == bus && (o.port, o.device) == slot)
                {
                    return Err(unsupported(
                        format!("{path}/target/@dev"),
                        format!("target '{dev}' is used twice"),
                    ));
                }
                disks.push(Disk {
                    bus,
                    port: slot.0,
                    device: slot.1,
                    kind,
                    location,
                });
            }
            "interface" => {
                nn += 1;
                let path = format!("domain/devices/interface[{nn}]");
                if nn > NIC_SLOTS {
                    return Err(unsupported(
                        path,
                        format!("VirtualBox machines have {NIC_SLOTS} network adapters"),
                    ));
                }
                let src = d.child("source");
                let (attachment, source) = match d.attr("type").unwrap_or("") {
                    "user" => ("NAT", String::new()),
                    "bridge" => (
                        "Bridged",
                        src.and_then(|s| s.attr("bridge")).unwrap_or("").to_string(),
                    ),
                    "network" => (
                        "HostOnly",
                        src.and_then(|s| s.attr("network"))
                            .unwrap_or("")
                            .to_string(),
                    ),
                    "internal" => (
                        "Internal",
                        src.and_then(|s| s.attr("name")).unwrap_or("").to_string(),
                    ),
                    other => {
                        return Err(unsupported(
                            format!("{path}/@type"),
                            format!(
                                "'{other}' interfaces are not supported by the vbox driver (user, bridge, network, internal)"
                            ),
                        ));
                    }
                };
                if attachment != "NAT" && source.is_empty() {
                    return Err(unsupported(format!("{path}/source"), "missing"));
                }
                let mac = match d.child("mac").and_then(|m| m.attr("address")) {
                    Some(m) => {
                        let hex: String = m.chars().filter(|c| *c != ':').collect();
                        if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                            return Err(unsupported(
                                format!("{path}/mac/@address"),
                                format!("'{m}' is not a MAC address"),
                            ));
                        }
                        hex.to_ascii_uppercase()
                    }
                    None => String::new(),
                };
                let model = match d.child("model").and_then(|m| m.attr("type")) {
                    Some(t) => MODELS
                        .iter()
                        .find(|(x, _)| x.eq_ignore_ascii_case(t))
                        .map(|(_, v)| v.to_string())
                        .ok_or_else(|| {
                            unsupported(
                                format!("{path}/model/@type"),
                                format!("'{t}' is not a VirtualBox adapter type"),
                            )
                        })?,
                    None => String::new(),
                };
                nics.push(Nic {
                    attachment: attachment.to_string(),
                    source,
                    mac,
                    model,
                });
            }
            other => {
                return Err(unsupported(
                    format!("domain/devices/{other}"),
                    "the vbox driver converts disks and interfaces only",
                ));
            }
        }
    }
    Ok((disks, nics))
}

/// The `<disk>` of an attachment.
pub fn disk_element(d: &Disk) -> Element {
    let device = if d.kind == "DVD" { "cdrom" } else { "disk" };
    let mut e = Element::new("disk")
        .with_attr("type", "file")
        .with_attr("device", device);
    e.push(Element::new("source").with_attr("file", &d.location));
    e.push(
        Element::new("target")
            .with_attr("dev", &d.bus.target(d.port, d.device))
            .with_attr("bus", d.bus.xml()),
    );
    if d.kind == "DVD" {
        e.push(Element::new("readonly"));
    }
    e
}

/// The `<interface>` of an enabled adapter; `None` for attachment types the XML cannot
/// show (`Null`, `Generic`, `NATNetwork`, `Cloud`).
pub fn nic_element(n: &Nic) -> Option<Element> {
    let (ty, attr) = match n.attachment.as_str() {
        "NAT" => ("user", None),
        "Bridged" => ("bridge", Some("bridge")),
        "HostOnly" => ("network", Some("network")),
        "Internal" => ("internal", Some("name")),
        _ => return None,
    };
    let mut e = Element::new("interface").with_attr("type", ty);
    if n.mac.len() == 12 {
        let m = n.mac.to_ascii_lowercase();
        let pairs: Vec<&str> = (0..6).map(|i| &m[i * 2..i * 2 + 2]).collect();
        e.push(Element::new("mac").with_attr("address", &pairs.join(":")));
    }
    if let Some(a) = attr {
        e.push(Element::new("source").with_attr(a, &n.source));
    }
    if let Some((x, _)) = MODELS.iter().find(|(_, v)| *v == n.model) {
        e.push(Element::new("model").with_attr("type", x));
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_slots_both_ways() {
        for (dev, bus, slot) in [
            ("hda", Bus::Ide, (0, 0)),
            ("hdb", Bus::Ide, (0, 1)),
            ("hdd", Bus::Ide, (1, 1)),
            ("sda", Bus::Sata, (0, 0)),
            ("sdc", Bus::Sata, (2, 0)),
        ] {
            let i = name_index(&dev[2..]).unwrap();
            assert_eq!(bus.slot(i), Some(slot), "{dev}");
            assert_eq!(bus.target(slot.0, slot.1), dev);
        }
        assert_eq!(name_index("aa"), Some(26));
        assert_eq!(index_name(26), "aa");
        assert_eq!(Bus::Ide.slot(4), None);
    }

    #[test]
    fn devices_convert_and_refuse_naming_the_element() {
        let dom = Element::parse(
            "<devices><disk type='file' device='disk'><source file='/v/a.vdi'/><target dev='sda' bus='sata'/></disk>\
             <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc'/></disk>\
             <interface type='bridge'><mac address='08:00:27:AA:bb:01'/><source bridge='eth0'/><model type='virtio'/></interface>\
             <interface type='user'/></devices>",
        )
        .unwrap();
        let (disks, nics) = from_domain(Some(&dom)).unwrap();
        assert_eq!(
            disks[1],
            Disk {
                bus: Bus::Ide,
                port: 1,
                device: 0,
                kind: "DVD",
                location: "/iso/x.iso".into()
            }
        );
        assert_eq!(nics[0].mac, "080027AABB01");
        assert_eq!(
            (nics[0].attachment.as_str(), nics[0].model.as_str()),
            ("Bridged", "Virtio")
        );
        let back = nic_element(&nics[0]).unwrap().to_xml_string();
        assert!(
            back.contains("08:00:27:aa:bb:01") && back.contains("eth0"),
            "{back}"
        );
        for (xml, path) in [
            (
                "<devices><graphics type='vnc'/></devices>",
                "domain/devices/graphics",
            ),
            (
                "<devices><disk type='file'><source file='rel.vdi'/><target dev='sda'/></disk></devices>",
                "domain/devices/disk[1]/source/@file",
            ),
            (
                "<devices><disk type='file'><source file='/a'/><target dev='hde'/></disk></devices>",
                "domain/devices/disk[1]/target/@dev",
            ),
            (
                "<devices><interface type='direct'/></devices>",
                "domain/devices/interface[1]/@type",
            ),
        ] {
            let e = from_domain(Some(&Element::parse(xml).unwrap())).unwrap_err();
            assert!(e.to_string().starts_with(path), "{e}");
        }
    }
}

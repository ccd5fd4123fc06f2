//! The disks and network interfaces of a VM's settings as domain XML devices.
//!
//! A disk is an `Msvm_StorageAllocationSettingData` (the image: `HostResource`) whose
//! `Parent` is a drive (`Msvm_ResourceAllocationSettingData`, `AddressOnParent` its slot)
//! whose `Parent` is an IDE (`ResourceType` 5, `Address` its number) or SCSI (6)
//! controller. A NIC is an `Msvm_SyntheticEthernetPortSettingData` (or the legacy
//! `Msvm_EmulatedEthernetPortSettingData`; `Address` is the MAC without separators)
//! connected by the `Msvm_EthernetPortAllocationSettingData` whose `Parent` names it to
//! the switch its `HostResource` names (`Msvm_VirtualEthernetSwitch`).

use crate::wsman::Node;
use rvirt_xml::Element;

/// The value of `key` in a WMI object path
/// (`\\HOST\root\virtualization\v2:Class.InstanceID="Microsoft:…\\0\\D"`): the quoted
/// string with WMI's backslash escapes resolved.
pub fn path_key(path: &str, key: &str) -> Option<String> {
    let after_class = path.split_once(':').map_or(path, |(_, r)| r);
    let start = after_class
        .match_indices(key)
        .map(|(i, _)| i + key.len())
        .find(|i| {
            let before = after_class[..*i - key.len()].chars().last();
            matches!(before, Some('.') | Some(',')) && after_class[*i..].starts_with("=\"")
        })?;
    let mut out = String::new();
    let mut chars = after_class[start + 2..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// libvirt's disk names: `hda`… `hdz`, `hdaa`….
fn disk_name(prefix: &str, mut idx: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'a' + (idx % 26) as u8);
        if idx < 26 {
            break;
        }
        idx = idx / 26 - 1;
    }
    s.reverse();
    format!("{prefix}{}", String::from_utf8_lossy(&s))
}

fn instance_id(n: &Node) -> &str {
    n.text_of("InstanceID").unwrap_or("")
}

fn parent_id(n: &Node) -> Option<String> {
    n.text_of("Parent").and_then(|p| path_key(p, "InstanceID"))
}

/// `<disk>` elements, in controller and slot order.
pub fn disks(rasds: &[Node], sasds: &[Node]) -> Vec<Element> {
    let by_id = |id: &str| rasds.iter().find(|r| instance_id(r) == id);
    let controllers = |ty: &str| -> Vec<&Node> {
        rasds
            .iter()
            .filter(|r| r.text_of("ResourceType") == Some(ty))
            .collect()
    };
    let (ide, scsi) = (controllers("5"), controllers("6"));
    let mut out: Vec<(String, usize, usize, Element)> = Vec::new();
    for s in sasds {
        let Some(file) = s.children_named("HostResource").find(|h| !h.nil) else {
            continue;
        };
        let Some(drive) = parent_id(s).and_then(|id| by_id(&id)) else {
            continue;
        };
        let Some(ctl) = parent_id(drive).and_then(|id| by_id(&id)) else {
            continue;
        };
        let unit: usize = drive
            .text_of("AddressOnParent")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let cdrom = s
            .text_of("ResourceSubType")
            .is_some_and(|t| t.contains("CD/DVD"))
            || drive
                .text_of("ResourceSubType")
                .is_some_and(|t| t.contains("DVD"));
        let (bus, idx, name, address) = if ctl.text_of("ResourceType") == Some("5") {
            // two IDE controllers of two slots: libvirt's bus and unit
            let c: usize = ctl
                .text_of("Address")
                .and_then(|a| a.parse().ok())
                .or_else(|| ide.iter().position(|x| instance_id(x) == instance_id(ctl)))
                .unwrap_or(0);
            let a = Element::new("address")
                .with_attr("type", "drive")
                .with_attr("controller", "0")
                .with_attr("bus", &c.to_string())
                .with_attr("target", "0")
                .with_attr("unit", &unit.to_string());
            ("ide", c, disk_name("hd", c * 2 + unit), a)
        } else {
            let c = scsi
                .iter()
                .position(|x| instance_id(x) == instance_id(ctl))
                .unwrap_or(0);
            let a = Element::new("address")
                .with_attr("type", "drive")
                .with_attr("controller", &c.to_string())
                .with_attr("bus", "0")
                .with_attr("target", "0")
                .with_attr("unit", &unit.to_string());
            ("scsi", c, disk_name("sd", c * 64 + unit), a)
        };
        let mut d = Element::new("disk")
            .with_attr("type", "file")
            .with_attr("device", if cdrom { "cdrom" } else { "disk" });
        d.push(Element::new("source").with_attr("file", file.text.trim()));
        d.push(
            Element::new("target")
                .with_attr("dev", &name)
                .with_attr("bus", bus),
        );
        if cdrom {
            d.push(Element::new("readonly"));
        }
        d.push(address);
        out.push((bus.to_string(), idx, unit, d));
    }
    out.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    out.into_iter().map(|(_, _, _, d)| d).collect()
}

/// `aa:bb:cc:dd:ee:ff` from WMI's `AABBCCDDEEFF`.
pub fn mac(address: &str) -> Option<String> {
    let a = address.trim();
    if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(
        a.as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// `<interface type='bridge'>` elements: the NIC's MAC and the switch it is connected to.
pub fn interfaces(ports: &[Node], connections: &[Node], switches: &[Node]) -> Vec<Element> {
    let mut out = Vec::new();
    for p in ports {
        let id = instance_id(p);
        let switch = connections
            .iter()
            .find(|c| parent_id(c).as_deref() == Some(id))
            .and_then(|c| c.children_named("HostResource").find(|h| !h.nil))
            .and_then(|h| path_key(h.text.trim(), "Name"))
            .and_then(|name| {
                switches.iter().find(|s| {
                    s.text_of("Name")
                        .is_some_and(|n| n.eq_ignore_ascii_case(&name))
                })
            })
            .and_then(|s| s.text_of("ElementName"));
        let mut i = Element::new("interface").with_attr("type", "bridge");
        if let Some(m) = p.text_of("Address").and_then(mac) {
            i.push(Element::new("mac").with_attr("address", &m));
        }
        if let Some(sw) = switch {
            i.push(Element::new("source").with_attr("bridge", sw));
        }
        out.push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wsman::parse;

    #[test]
    fn object_path_keys_unescape() {
        let p = r#"\\HV01\root\virtualization\v2:Msvm_ResourceAllocationSettingData.InstanceID="Microsoft:ABC\\83F8638B\\0\\0\\D""#;
        assert_eq!(
            path_key(p, "InstanceID").as_deref(),
            Some(r"Microsoft:ABC\83F8638B\0\0\D")
        );
        let s = r#"\\HV01\root\virtualization\v2:Msvm_VirtualEthernetSwitch.CreationClassName="Msvm_VirtualEthernetSwitch",Name="5F3A""#;
        assert_eq!(path_key(s, "Name").as_deref(), Some("5F3A"));
        assert_eq!(path_key(s, "Nope"), None);
    }

    #[test]
    fn names_macs() {
        assert_eq!(disk_name("hd", 0), "hda");
        assert_eq!(disk_name("sd", 27), "sdab");
        assert_eq!(mac("00155D0A0B0C").as_deref(), Some("00:15:5d:0a:0b:0c"));
        assert_eq!(mac("xyz"), None);
    }

    #[test]
    fn a_scsi_disk_and_an_ide_dvd() {
        let n = |x: &str| parse(x).unwrap();
        let rasds = [
            n(r#"<r><InstanceID>C0</InstanceID><ResourceType>6</ResourceType></r>"#),
            n(
                r#"<r><InstanceID>D0</InstanceID><ResourceType>17</ResourceType><Parent>x:R.InstanceID="C0"</Parent><AddressOnParent>1</AddressOnParent></r>"#,
            ),
            n(
                r#"<r><InstanceID>I1</InstanceID><ResourceType>5</ResourceType><Address>1</Address></r>"#,
            ),
            n(
                r#"<r><InstanceID>D1</InstanceID><ResourceType>16</ResourceType><ResourceSubType>Microsoft:Hyper-V:Synthetic DVD Drive</ResourceSubType><Parent>x:R.InstanceID="I1"</Parent><AddressOnParent>0</AddressOnParent></r>"#,
            ),
        ];
        let sasds = [
            n(
                r#"<s><HostResource>C:\VMs\a.vhdx</HostResource><Parent>x:R.InstanceID="D0"</Parent></s>"#,
            ),
            n(
                r#"<s><HostResource>C:\iso\b.iso</HostResource><Parent>x:R.InstanceID="D1"</Parent></s>"#,
            ),
        ];
        let d: Vec<String> = disks(&rasds, &sasds)
            .iter()
            .map(Element::to_xml_string)
            .collect();
        assert_eq!(d.len(), 2);
        assert!(
            d[0].contains("device='cdrom'") && d[0].contains("dev='hdc'"),
            "{}",
            d[0]
        );
        assert!(
            d[1].contains(r"file='C:\VMs\a.vhdx'") && d[1].contains("dev='sdb'"),
            "{}",
            d[1]
        );
    }
}

//! The storage pool document (`<pool type=...>`).

use crate::FormatOptions;
use crate::error::XmlError;
use crate::tree::Element;
use crate::util::{parse_u64, parse_uuid};

/// Pool types of storagepool.rng.
pub const POOL_TYPES: &[&str] = &[
    "dir",
    "fs",
    "netfs",
    "logical",
    "disk",
    "iscsi",
    "iscsi-direct",
    "scsi",
    "mpath",
    "rbd",
    "sheepdog",
    "gluster",
    "zfs",
    "vstorage",
];

/// Volume formats of file-based pools, in libvirt's order.
const FILE_VOLUME_FORMATS: &[&str] = &[
    "none", "raw", "dir", "bochs", "cloop", "dmg", "iso", "vpc", "vdi", "fat", "vhd", "ploop",
    "cow", "qcow", "qcow2", "qed", "vmdk",
];

/// What `<poolOptions>` and `<volOptions>` a pool type offers in the storage pool
/// capabilities document: (default, enum values) for the pool source format and for the
/// volume target format.
type CapsOptions = (
    Option<(&'static str, &'static [&'static str])>,
    Option<(&'static str, &'static [&'static str])>,
);

fn caps_options(pool_type: &str) -> CapsOptions {
    const FS: &[&str] = &[
        "auto", "ext2", "ext3", "ext4", "ufs", "iso9660", "udf", "gfs", "gfs2", "vfat", "hfs+",
        "xfs", "ocfs2", "vmfs",
    ];
    const NETFS: &[&str] = &["auto", "nfs", "glusterfs", "cifs"];
    const LOGICAL: &[&str] = &["unknown", "lvm2"];
    const DISK: &[&str] = &[
        "unknown", "dos", "dvh", "gpt", "mac", "bsd", "pc98", "sun", "lvm2",
    ];
    const PARTITIONS: &[&str] = &[
        "none",
        "linux",
        "fat16",
        "fat32",
        "linux-swap",
        "linux-lvm",
        "linux-raid",
        "extended",
    ];
    let files = Some(("raw", FILE_VOLUME_FORMATS));
    match pool_type {
        "dir" | "rbd" | "gluster" | "vstorage" => (None, files),
        "fs" => (Some(("auto", FS)), files),
        "netfs" => (Some(("auto", NETFS)), files),
        "logical" => (Some(("lvm2", LOGICAL)), None),
        "disk" => (Some(("unknown", DISK)), Some(("none", PARTITIONS))),
        _ => (None, None),
    }
}

/// The storage pool capabilities document (`virConnectGetStoragePoolCapabilities`,
/// storagepoolcaps.rng): every pool type libvirt knows, `supported` where `served` says a
/// backend is installed, with the source and volume formats of each type.
pub fn capabilities_xml(served: &dyn Fn(&str) -> bool) -> String {
    use std::fmt::Write;
    let options =
        |out: &mut String, tag: &str, enum_name: &str, (default, values): (&str, &[&str])| {
            let _ = writeln!(out, "    <{tag}>\n      <defaultFormat type='{default}'/>");
            let _ = writeln!(out, "      <enum name='{enum_name}'>");
            for v in values {
                let _ = writeln!(out, "        <value>{v}</value>");
            }
            let _ = writeln!(out, "      </enum>\n    </{tag}>");
        };
    let mut out = String::from("<storagepoolCapabilities>\n");
    // sheepdog left libvirt in 8.8
    for t in POOL_TYPES.iter().filter(|t| **t != "sheepdog") {
        let yes = if served(t) { "yes" } else { "no" };
        let _ = writeln!(out, "  <pool type='{t}' supported='{yes}'>");
        let (pool, vol) = caps_options(t);
        if let Some(p) = pool {
            options(&mut out, "poolOptions", "sourceFormatType", p);
        }
        if let Some(v) = vol {
            options(&mut out, "volOptions", "targetFormatType", v);
        }
        out.push_str("  </pool>\n");
    }
    out.push_str("</storagepoolCapabilities>\n");
    out
}

/// A validated storage pool definition.
#[derive(Debug, Clone, PartialEq)]
pub struct StoragePool {
    root: Element,
}

impl StoragePool {
    /// Parses, validates and applies generic defaults.
    pub fn parse(xml: &str) -> Result<StoragePool, XmlError> {
        StoragePool::from_element(Element::parse(xml)?)
    }

    /// Validates a parsed tree.
    pub fn from_element(mut root: Element) -> Result<StoragePool, XmlError> {
        if root.name() != "pool" {
            return Err(XmlError::invalid(
                root.name().to_string(),
                "unexpected root element, expected 'pool'",
            ));
        }
        crate::storagenorm::normalize_pool(&mut root)?;
        Ok(StoragePool { root })
    }

    /// The normalised tree.
    pub fn element(&self) -> &Element {
        &self.root
    }

    /// `<name>`.
    pub fn name(&self) -> &str {
        self.root
            .child("name")
            .and_then(|n| n.text_ref())
            .unwrap_or("")
    }

    /// `<uuid>`.
    pub fn uuid(&self) -> uuid::Uuid {
        self.root
            .child("uuid")
            .and_then(|n| parse_uuid(&n.text()))
            .unwrap_or_else(uuid::Uuid::nil)
    }

    /// Replaces the UUID.
    pub fn set_uuid(&mut self, u: uuid::Uuid) {
        crate::domain::set_child_text(&mut self.root, "uuid", &u.to_string());
        crate::normalize::sort_children(&mut self.root, crate::tables::POOL_TOP_ORDER);
    }

    /// `<pool type=...>`.
    pub fn pool_type(&self) -> &str {
        self.root.attr("type").unwrap_or("")
    }

    /// `<target><path>` when present.
    pub fn target_path(&self) -> Option<&str> {
        self.root
            .child("target")
            .and_then(|t| t.child("path"))
            .and_then(|p| p.text_ref())
    }

    /// `<capacity>` in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.root
            .child("capacity")
            .and_then(|c| parse_u64(&c.text()))
            .unwrap_or(0)
    }

    /// Sets the runtime figures (bytes) a running pool reports.
    pub fn set_sizes(&mut self, capacity: u64, allocation: u64, available: u64) {
        for (name, v) in [
            ("capacity", capacity),
            ("allocation", allocation),
            ("available", available),
        ] {
            let e = self.root.child_or_insert(name);
            e.set_attr("unit", "bytes");
            e.set_text(&v.to_string());
        }
        crate::normalize::sort_tree(&mut self.root, "pool", crate::tables::POOL_ORDER);
    }

    /// `<allocation>` in bytes.
    pub fn allocation_bytes(&self) -> u64 {
        self.root
            .child("allocation")
            .and_then(|c| parse_u64(&c.text()))
            .unwrap_or(0)
    }

    /// `<available>` in bytes.
    pub fn available_bytes(&self) -> u64 {
        self.root
            .child("available")
            .and_then(|c| parse_u64(&c.text()))
            .unwrap_or(0)
    }

    /// `<source><name>`.
    pub fn source_name(&self) -> Option<&str> {
        self.root
            .child("source")
            .and_then(|s| s.child("name"))
            .and_then(|n| n.text_ref())
    }

    /// `<source><host name=... port=...>` entries.
    pub fn source_hosts(&self) -> Vec<(&str, Option<&str>)> {
        self.root
            .child("source")
            .into_iter()
            .flat_map(|s| s.children_named("host"))
            .filter_map(|h| Some((h.attr("name")?, h.attr("port"))))
            .collect()
    }

    /// `<source><device path=...>` entries.
    pub fn source_devices(&self) -> Vec<&str> {
        self.root
            .child("source")
            .into_iter()
            .flat_map(|s| s.children_named("device"))
            .filter_map(|d| d.attr("path"))
            .collect()
    }

    /// `<source><dir path=...>`.
    pub fn source_dir(&self) -> Option<&str> {
        self.root
            .child("source")
            .and_then(|s| s.child("dir"))
            .and_then(|d| d.attr("path"))
    }

    /// `<source><format type=...>`.
    pub fn source_format(&self) -> Option<&str> {
        self.root
            .child("source")
            .and_then(|s| s.child("format"))
            .and_then(|f| f.attr("type"))
    }

    /// `<target><permissions><mode>` (octal text).
    pub fn target_mode(&self) -> Option<&str> {
        self.root
            .child("target")
            .and_then(|t| t.child("permissions"))
            .and_then(|p| p.child("mode"))
            .and_then(|m| m.text_ref())
    }

    /// `<target><permissions><owner>` (numeric uid; absent or `-1` is `None`).
    pub fn target_owner(&self) -> Option<u32> {
        perm_id(self.root.child("target"), "owner")
    }

    /// `<target><permissions><group>` (numeric gid; absent or `-1` is `None`).
    pub fn target_group(&self) -> Option<u32> {
        perm_id(self.root.child("target"), "group")
    }

    /// Formats like libvirt.
    pub fn to_xml(&self, _opts: &FormatOptions) -> String {
        self.root.to_xml_string()
    }
}

/// A numeric id under `<permissions>` of `parent`.
pub(crate) fn perm_id(parent: Option<&Element>, id: &str) -> Option<u32> {
    parent?
        .child("permissions")?
        .child(id)?
        .text()
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {

    #[test]
    fn capabilities_list_every_type_and_mark_the_served_ones() {
        let xml = capabilities_xml(&|t| t == "dir" || t == "fs");
        let doc = crate::tree::Element::parse(&xml).expect("well-formed");
        let pools: Vec<_> = doc.children_named("pool").collect();
        assert_eq!(pools.len(), POOL_TYPES.len() - 1);
        let supported: Vec<_> = pools
            .iter()
            .filter(|p| p.attr("supported") == Some("yes"))
            .map(|p| p.attr("type").unwrap())
            .collect();
        assert_eq!(supported, ["dir", "fs"]);
        let fs = pools.iter().find(|p| p.attr("type") == Some("fs")).unwrap();
        let pool_opts = fs.child("poolOptions").expect("fs has pool options");
        assert_eq!(
            pool_opts.child("defaultFormat").unwrap().attr("type"),
            Some("auto")
        );
        let vol_opts = fs.child("volOptions").expect("fs has volume options");
        let formats: Vec<String> = vol_opts
            .child("enum")
            .unwrap()
            .children_named("value")
            .map(|v| v.text())
            .collect();
        assert!(formats.iter().any(|f| f == "qcow2") && formats[0] == "none");
        let iscsi = pools
            .iter()
            .find(|p| p.attr("type") == Some("iscsi"))
            .unwrap();
        assert!(iscsi.child("poolOptions").is_none() && iscsi.child("volOptions").is_none());
    }
    use super::*;

    #[test]
    fn basic_pool() {
        let p = StoragePool::parse(
            "<pool type='dir'><name>p</name><capacity unit='G'>1</capacity><target><path>/x</path></target></pool>",
        )
        .expect("parse");
        assert_eq!(p.pool_type(), "dir");
        // capacity is runtime data: a definition always says 0
        assert_eq!(p.capacity_bytes(), 0);
        assert_eq!(p.target_path(), Some("/x"));
        assert_eq!((p.target_owner(), p.target_group()), (None, None));
        let perm = StoragePool::parse(
            "<pool type='dir'><name>p</name><target><path>/x</path><permissions><mode>0750</mode><owner>107</owner><group>-1</group></permissions></target></pool>",
        )
        .expect("parse");
        assert_eq!(perm.target_mode(), Some("0750"));
        assert_eq!(
            (perm.target_owner(), perm.target_group()),
            (Some(107), None)
        );
        let mut p = p;
        p.set_sizes(10, 4, 6);
        assert_eq!(
            (
                p.capacity_bytes(),
                p.allocation_bytes(),
                p.available_bytes()
            ),
            (10, 4, 6)
        );
        let again = StoragePool::parse(&p.to_xml(&FormatOptions::default())).expect("reparse");
        assert_eq!(again.capacity_bytes(), 0);
        let l = StoragePool::parse(
            "<pool type='logical'><name>vg</name><source><device path='/dev/sdb'/></source></pool>",
        )
        .expect("parse");
        assert_eq!(l.source_name(), Some("vg"));
        assert_eq!(l.source_format(), Some("lvm2"));
        assert_eq!(l.source_devices(), vec!["/dev/sdb"]);
        assert_eq!(l.target_path(), Some("/dev/vg"));
        let e = StoragePool::parse("<pool><name>p</name></pool>").expect_err("no type");
        assert_eq!(e.to_string(), "pool/@type: missing required attribute");
    }
}

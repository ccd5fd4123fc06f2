//! The storage pool document (`<pool type=...>`).

use crate::error::XmlError;
use crate::tree::Element;
use crate::util::{parse_u64, parse_uuid};
use crate::FormatOptions;

/// Pool types of storagepool.rng.
pub const POOL_TYPES: &[&str] = &[
    "dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath", "rbd",
    "sheepdog", "gluster", "zfs", "vstorage",
];

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
        self.root.child("name").and_then(|n| n.text_ref()).unwrap_or("")
    }

    /// `<uuid>`.
    pub fn uuid(&self) -> uuid::Uuid {
        self.root.child("uuid").and_then(|n| parse_uuid(&n.text())).unwrap_or_else(uuid::Uuid::nil)
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
        self.root.child("target").and_then(|t| t.child("path")).and_then(|p| p.text_ref())
    }

    /// `<capacity>` in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.root.child("capacity").and_then(|c| parse_u64(&c.text())).unwrap_or(0)
    }

    /// Formats like libvirt.
    pub fn to_xml(&self, _opts: &FormatOptions) -> String {
        self.root.to_xml_string()
    }
}

#[cfg(test)]
mod tests {
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
        let e = StoragePool::parse("<pool><name>p</name></pool>").expect_err("no type");
        assert_eq!(e.to_string(), "pool/@type: missing required attribute");
    }
}

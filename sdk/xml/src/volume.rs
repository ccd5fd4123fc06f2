//! The storage volume document (`<volume>`), parsed in its pool's context.

use crate::FormatOptions;
use crate::error::XmlError;
use crate::pool::StoragePool;
use crate::tree::Element;
use crate::util::parse_u64;

/// Options for parsing a volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VolumeParseOptions {
    /// Accept a volume without `<capacity>` (e.g. when cloning or
    /// uploading, where the size comes from elsewhere).
    pub allow_missing_capacity: bool,
}

/// A validated storage volume definition.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageVolume {
    root: Element,
}

impl StorageVolume {
    /// Parses and validates a volume, using the pool's type for defaults.
    pub fn parse(xml: &str, pool: Option<&StoragePool>) -> Result<StorageVolume, XmlError> {
        StorageVolume::from_element(Element::parse(xml)?, pool)
    }

    /// [`StorageVolume::parse`] with explicit options.
    pub fn parse_with(
        xml: &str,
        pool: Option<&StoragePool>,
        opts: &VolumeParseOptions,
    ) -> Result<StorageVolume, XmlError> {
        StorageVolume::from_element_with(Element::parse(xml)?, pool, opts)
    }

    /// Validates a parsed tree in the pool's context.
    pub fn from_element(
        root: Element,
        pool: Option<&StoragePool>,
    ) -> Result<StorageVolume, XmlError> {
        StorageVolume::from_element_with(root, pool, &VolumeParseOptions::default())
    }

    /// [`StorageVolume::from_element`] with explicit options.
    pub fn from_element_with(
        mut root: Element,
        pool: Option<&StoragePool>,
        opts: &VolumeParseOptions,
    ) -> Result<StorageVolume, XmlError> {
        if root.name() != "volume" {
            return Err(XmlError::invalid(
                root.name().to_string(),
                "unexpected root element, expected 'volume'",
            ));
        }
        crate::storagenorm::normalize_volume(&mut root, pool, opts)?;
        Ok(StorageVolume { root })
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

    /// `<key>` when present.
    pub fn key(&self) -> Option<&str> {
        self.root.child("key").and_then(|n| n.text_ref())
    }

    /// `<capacity>` in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.root
            .child("capacity")
            .and_then(|c| parse_u64(&c.text()))
            .unwrap_or(0)
    }

    /// `<allocation>` in bytes (defaults to the capacity).
    pub fn allocation_bytes(&self) -> u64 {
        self.root
            .child("allocation")
            .and_then(|c| parse_u64(&c.text()))
            .unwrap_or_else(|| self.capacity_bytes())
    }

    /// `<target><format type=...>` when present.
    pub fn format_type(&self) -> Option<&str> {
        self.root
            .child("target")
            .and_then(|t| t.child("format"))
            .and_then(|f| f.attr("type"))
    }

    /// Sets `<capacity>` and `<allocation>` (bytes).
    pub fn set_sizes(&mut self, capacity: u64, allocation: u64) {
        for (name, v) in [("capacity", capacity), ("allocation", allocation)] {
            let e = self.root.child_or_insert(name);
            e.set_attr("unit", "bytes");
            e.set_text(&v.to_string());
        }
        crate::normalize::sort_tree(&mut self.root, "volume", crate::tables::VOLUME_ORDER);
    }

    /// Sets `<key>` (drivers derive it, e.g. from the path).
    pub fn set_key(&mut self, key: &str) {
        self.root.child_or_insert("key").set_text(key);
        crate::normalize::sort_tree(&mut self.root, "volume", crate::tables::VOLUME_ORDER);
    }

    /// `<volume type=...>`.
    pub fn volume_type(&self) -> Option<&str> {
        self.root.attr("type")
    }

    /// `<target><path>`.
    pub fn target_path(&self) -> Option<&str> {
        self.root
            .child("target")
            .and_then(|t| t.child("path"))
            .and_then(|p| p.text_ref())
    }

    /// `<backingStore><path>` and its format.
    pub fn backing_store(&self) -> Option<(Option<&str>, Option<&str>)> {
        let b = self.root.child("backingStore")?;
        Some((
            b.child("path").and_then(|p| p.text_ref()),
            b.child("format").and_then(|f| f.attr("type")),
        ))
    }

    /// `<physical>` in bytes when present.
    pub fn physical_bytes(&self) -> Option<u64> {
        self.root
            .child("physical")
            .and_then(|c| parse_u64(&c.text()))
    }

    /// `<target><permissions><mode>` as a number (the text is octal).
    pub fn target_mode(&self) -> Option<u32> {
        let t = self
            .root
            .child("target")?
            .child("permissions")?
            .child("mode")?
            .text();
        u32::from_str_radix(t.trim(), 8).ok()
    }

    /// `<target><permissions><owner>` (numeric uid; absent or `-1` is `None`).
    pub fn target_owner(&self) -> Option<u32> {
        crate::pool::perm_id(self.root.child("target"), "owner")
    }

    /// `<target><permissions><group>` (numeric gid; absent or `-1` is `None`).
    pub fn target_group(&self) -> Option<u32> {
        crate::pool::perm_id(self.root.child("target"), "group")
    }

    /// `<target><compat>` (qcow2's compatibility level) when present.
    pub fn target_compat(&self) -> Option<&str> {
        self.root
            .child("target")
            .and_then(|t| t.child("compat"))
            .and_then(|c| c.text_ref())
    }

    /// Whether `<target><features>` lists `name` (e.g. `lazy_refcounts`).
    pub fn has_target_feature(&self, name: &str) -> bool {
        self.root
            .child("target")
            .and_then(|t| t.child("features"))
            .is_some_and(|f| f.child(name).is_some())
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
    fn basic_volume() {
        let v = StorageVolume::parse(
            "<volume><name>v</name><capacity unit='M'>1</capacity><target><format type='qcow2'/></target></volume>",
            None,
        )
        .expect("parse");
        assert_eq!(v.name(), "v");
        assert_eq!(v.capacity_bytes(), 1 << 20);
        assert_eq!(v.format_type(), Some("qcow2"));
        let pool = StoragePool::parse(
            "<pool type='dir'><name>d</name><target><path>/p</path></target></pool>",
        )
        .expect("pool");
        let v = StorageVolume::parse(
            "<volume><name>v.img</name><capacity>10</capacity><backingStore><path>/b</path><format type='raw'/></backingStore></volume>",
            Some(&pool),
        )
        .expect("parse");
        assert_eq!(v.volume_type(), Some("file"));
        assert_eq!(v.target_path(), Some("/p/v.img"));
        assert_eq!(v.format_type(), Some("raw"));
        assert_eq!(v.backing_store(), Some((Some("/b"), Some("raw"))));
        assert_eq!(
            (v.target_mode(), v.target_owner(), v.target_compat()),
            (None, None, None)
        );
        let q = StorageVolume::parse(
            "<volume><name>q</name><capacity>1</capacity><target><format type='qcow2'/><permissions><mode>0640</mode><owner>0</owner><group>-1</group></permissions><features><lazy_refcounts/></features></target></volume>",
            Some(&pool),
        )
        .expect("parse");
        assert_eq!(
            (q.target_mode(), q.target_owner(), q.target_group()),
            (Some(0o640), Some(0), None)
        );
        assert_eq!(q.target_compat(), Some("1.1"));
        assert!(q.has_target_feature("lazy_refcounts"));
        assert!(!q.has_target_feature("extended_l2"));
        let mut v = v;
        v.set_key("/p/v.img");
        v.set_sizes(20, 5);
        assert_eq!(
            (v.key(), v.capacity_bytes(), v.allocation_bytes()),
            (Some("/p/v.img"), 20, 5)
        );
        assert!(
            v.to_xml(&FormatOptions::default())
                .starts_with("<volume type='file'>\n  <name>v.img</name>\n  <key>")
        );
        let e =
            StorageVolume::parse("<volume><name>v</name></volume>", None).expect_err("no capacity");
        assert_eq!(e.to_string(), "volume/capacity: missing required element");
    }
}

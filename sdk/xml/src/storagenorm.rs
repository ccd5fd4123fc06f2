//! Normalisation and validation of `<pool>` and `<volume>` documents.
//! Type-specific defaults come from the tables in [`crate::tables`].

use crate::error::XmlError;
use crate::normalize::{check_name, ensure_uuid, sort_tree};
use crate::pool::{POOL_TYPES, StoragePool};
use crate::tables;
use crate::tree::{Element, Node};
use crate::util::{req_attr, scale_to_bytes};

/// Scales a size element to bytes (`unit='bytes'`).
pub(crate) fn scale_bytes_element(e: &mut Element, path: &str) -> Result<u64, XmlError> {
    let bytes = scale_to_bytes(&e.text(), e.attr("unit"), 1)
        .map_err(|p| XmlError::invalid(path.to_string(), p))?;
    e.set_attr("unit", "bytes");
    e.set_text(&bytes.to_string());
    Ok(bytes)
}

/// Collapses repeated slashes and drops a trailing one (keeps `/`).
pub(crate) fn sanitize_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut prev_slash = false;
    for c in p.chars() {
        if c == '/' {
            if prev_slash {
                continue;
            }
            prev_slash = true;
        } else {
            prev_slash = false;
        }
        out.push(c);
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

/// Normalises `<permissions>`: octal mode as libvirt writes it, numeric
/// owner/group with `-1` (unset) dropped.
fn normalize_permissions(perm: &mut Element, path: &str) -> Result<(), XmlError> {
    if let Some(m) = perm.child_mut("mode") {
        let t = m.text();
        let v = u32::from_str_radix(t.trim(), 8).map_err(|_| {
            XmlError::invalid(
                format!("{path}/mode"),
                format!("malformed octal mode '{}'", t.trim()),
            )
        })?;
        m.set_text(&format!("0{v:o}"));
    }
    for id in ["owner", "group"] {
        let mut drop = false;
        if let Some(o) = perm.child_mut(id) {
            let t = o.text();
            let t = t.trim();
            let v: i64 = t.parse().map_err(|_| {
                XmlError::invalid(format!("{path}/{id}"), format!("malformed {id} '{t}'"))
            })?;
            if v == -1 || v == i64::from(u32::MAX) {
                drop = true;
            } else {
                o.set_text(&v.to_string());
            }
        }
        if drop {
            perm.remove_children(|c| c.name() == id);
        }
    }
    Ok(())
}

/// Validates and applies generic defaults to a pool tree.
pub fn normalize_pool(root: &mut Element) -> Result<(), XmlError> {
    root.drop_stray_text(tables::FREE_FORM_ELEMENTS);
    let ty = req_attr(root, "pool", "type")?.to_string();
    if !POOL_TYPES.contains(&ty.as_str()) {
        return Err(XmlError::invalid(
            "pool/@type",
            format!("unknown storage pool type '{ty}'"),
        ));
    }
    let src_name = root
        .child("source")
        .and_then(|s| s.child("name"))
        .map(|n| n.text());
    if root.child("name").is_none()
        && let Some(sn) = &src_name
        && tables::POOL_NAME_FROM_SOURCE.contains(&ty.as_str())
    {
        root.nodes_mut()
            .insert(0, Node::Element(Element::new("name").with_text(sn)));
    }
    check_name(root, "pool")?;
    ensure_uuid(root, "pool")?;
    let pool_name = root.child("name").map(|n| n.text()).unwrap_or_default();
    // capacity, allocation and available are runtime figures: always 0 in a definition
    root.remove_children(|c| matches!(c.name(), "capacity" | "allocation" | "available"));
    for name in ["capacity", "allocation", "available"] {
        root.push(Element::new(name).with_attr("unit", "bytes").with_text("0"));
    }
    let src = root.child_or_insert("source");
    for dev in src.children_named_mut("device") {
        dev.remove_children(|c| c.name() == "freeExtent");
    }
    for dir in src.children_named_mut("dir") {
        if let Some(p) = dir.attr("path") {
            let s = sanitize_path(p);
            dir.set_attr("path", &s);
        }
    }
    if let Some(ad) = src.child_mut("adapter")
        && ad.attr("type").is_none()
    {
        let t = if ad.attr("wwnn").is_some() || ad.attr("wwpn").is_some() {
            "fc_host"
        } else {
            "scsi_host"
        };
        ad.insert_attr(0, "type", t);
    }
    let defaults = tables::POOL_DEFAULTS.iter().find(|d| d.pool_type == ty);
    let mut src_name = src.child("name").map(|n| n.text());
    if let Some(d) = defaults {
        if d.source_name_from_pool && src_name.is_none() {
            src.push(Element::new("name").with_text(&pool_name));
            src_name = Some(pool_name.clone());
        }
        if let Some(f) = d.source_format
            && src.child("format").is_none()
        {
            src.push(Element::new("format").with_attr("type", f));
        }
        if let Some(dir) = d.source_dir
            && src.child("dir").is_none()
        {
            src.push(Element::new("dir").with_attr("path", dir));
        }
    }
    if let Some(d) = defaults
        && let Some(tmpl) = d.target_path
    {
        let tgt = root.child_or_insert("target");
        if tgt.child("path").is_none() {
            let p = tmpl.replace("{source_name}", src_name.as_deref().unwrap_or(""));
            tgt.nodes_mut()
                .insert(0, Node::Element(Element::new("path").with_text(&p)));
        }
    }
    if let Some(tgt) = root.child_mut("target") {
        if let Some(p) = tgt.child_mut("path") {
            let s = sanitize_path(&p.text());
            p.set_text(&s);
        }
        if let Some(perm) = tgt.child_mut("permissions") {
            normalize_permissions(perm, "pool/target/permissions")?;
        }
    }
    root.drop_stray_text(tables::FREE_FORM_ELEMENTS);
    sort_tree(root, "pool", tables::POOL_ORDER);
    Ok(())
}

/// Validates and applies generic defaults to a volume tree.
pub fn normalize_volume(
    root: &mut Element,
    pool: Option<&StoragePool>,
    opts: &crate::volume::VolumeParseOptions,
) -> Result<(), XmlError> {
    root.drop_stray_text(tables::FREE_FORM_ELEMENTS);
    check_name(root, "volume")?;
    let pool_type = pool.map(|p| p.pool_type().to_string());
    let defaults = pool_type
        .as_deref()
        .and_then(|t| tables::VOLUME_DEFAULTS.iter().find(|d| d.pool_type == t));
    if root.attr("type").is_none()
        && let Some(d) = defaults
        && let Some(vt) = d.volume_type
    {
        root.insert_attr(0, "type", vt);
    }
    // runtime-only data
    root.remove_children(|c| c.name() == "source");
    let has_backing = root.child("backingStore").is_some();
    let cap = match root.child_mut("capacity") {
        Some(c) => scale_bytes_element(c, "volume/capacity")?,
        None if has_backing || opts.allow_missing_capacity => {
            root.push(
                Element::new("capacity")
                    .with_attr("unit", "bytes")
                    .with_text("0"),
            );
            0
        }
        None => return Err(XmlError::missing_element("volume/capacity")),
    };
    match root.child_mut("allocation") {
        Some(a) => {
            scale_bytes_element(a, "volume/allocation")?;
        }
        None => root.push(
            Element::new("allocation")
                .with_attr("unit", "bytes")
                .with_text(&cap.to_string()),
        ),
    }
    if let Some(p) = root.child_mut("physical") {
        scale_bytes_element(p, "volume/physical")?;
    }
    let name = root.child("name").map(|n| n.text()).unwrap_or_default();
    let tgt = root.child_or_insert("target");
    tgt.remove_children(|c| c.name() == "timestamps");
    if tgt.child("path").is_none()
        && let Some(p) = pool
        && let Some(tp) = p.target_path()
        && defaults.is_some_and(|d| d.path_from_pool)
    {
        tgt.nodes_mut().insert(
            0,
            Node::Element(Element::new("path").with_text(&format!("{tp}/{name}"))),
        );
    }
    if tgt.child("format").is_none()
        && let Some(d) = defaults
        && let Some(f) = d.default_format
    {
        tgt.push(Element::new("format").with_attr("type", f));
    }
    if let Some(perm) = tgt.child_mut("permissions") {
        normalize_permissions(perm, "volume/target/permissions")?;
    }
    if let Some(cs) = tgt.child_mut("clusterSize") {
        let b = scale_to_bytes(&cs.text(), cs.attr("unit"), 1)
            .map_err(|p| XmlError::invalid("volume/target/clusterSize", p))?;
        cs.set_attr("unit", "B");
        cs.set_text(&b.to_string());
    }
    if tgt.child("compat").is_none()
        && (tgt.child("features").is_some() || tgt.child("clusterSize").is_some())
    {
        tgt.push(Element::new("compat").with_text(tables::QCOW2_DEFAULT_COMPAT));
    }
    if tgt.is_empty() {
        root.remove_children(|c| c.name() == "target");
    }
    if let Some(b) = root.child_mut("backingStore") {
        if let Some(perm) = b.child_mut("permissions") {
            normalize_permissions(perm, "volume/backingStore/permissions")?;
        }
        b.remove_children(|c| c.name() == "timestamps");
    }
    root.drop_stray_text(tables::FREE_FORM_ELEMENTS);
    sort_tree(root, "volume", tables::VOLUME_ORDER);
    Ok(())
}

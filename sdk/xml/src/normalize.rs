//! The normaliser: validation of the documented core, generic post-parse
//! defaults, and reordering of children into libvirt's order.  The rules are
//! data in [`crate::tables`]; this module only interprets them.

use crate::FormatOptions;
use crate::domain::{ensure_macs, scale_mem_element};
use crate::error::XmlError;
use crate::tree::{Element, Node};
use crate::util::{parse_uuid, req_attr};

/// Errors of the normaliser are reported as [`XmlError`].
pub fn normalize_domain(
    root: &mut Element,
    opts: &crate::domain::ParseOptions,
) -> Result<(), XmlError> {
    // text between the elements of element-only content means nothing (libvirt ignores it)
    root.drop_stray_text(crate::tables::FREE_FORM_ELEMENTS);
    let ty = req_attr(root, "domain", "type")?;
    if !crate::domain::DOMAIN_TYPES.contains(&ty) {
        return Err(XmlError::invalid(
            "domain/@type",
            format!("unknown domain type '{ty}'"),
        ));
    }
    check_name(root, "domain")?;
    ensure_uuid(root, "domain")?;

    // memory
    let mut mem_kib = None;
    if let Some(m) = root.child_mut("memory") {
        mem_kib = Some(scale_mem_element(m, "domain/memory")?);
    }
    if mem_kib.is_none() {
        // the size may come from the NUMA cells
        let mut total = 0u64;
        let mut any = false;
        for c in root
            .child("cpu")
            .and_then(|c| c.child("numa"))
            .into_iter()
            .flat_map(|n| n.children_named("cell"))
        {
            if let Some(m) = c.attr("memory") {
                let b = crate::util::scale_to_bytes(m, c.attr("unit"), 1024)
                    .map_err(|p| XmlError::invalid("domain/cpu/numa/cell/@memory", p))?;
                total = total.saturating_add(b.div_ceil(1024));
                any = true;
            }
        }
        if !any {
            return Err(XmlError::invalid(
                "domain/memory",
                "memory size must be specified via <memory> or in the <numa> configuration",
            ));
        }
        root.push(
            Element::new("memory")
                .with_attr("unit", "KiB")
                .with_text(&total.to_string()),
        );
        mem_kib = Some(total);
    }
    let mem = mem_kib.unwrap_or(0);
    match root.child_mut("currentMemory") {
        Some(c) => {
            let cur = scale_mem_element(c, "domain/currentMemory")?;
            if cur == 0 || cur > mem {
                c.set_text(&mem.to_string());
            }
        }
        None => {
            root.push(
                Element::new("currentMemory")
                    .with_attr("unit", "KiB")
                    .with_text(&mem.to_string()),
            );
        }
    }
    if let Some(m) = root.child_mut("maxMemory") {
        scale_mem_element(m, "domain/maxMemory")?;
    }

    // vcpu
    match root.child_mut("vcpu") {
        Some(v) => {
            let t = v.text();
            let n: u32 = t.trim().parse().map_err(|_| {
                XmlError::invalid("domain/vcpu", format!("invalid vcpu count '{}'", t.trim()))
            })?;
            if n == 0 {
                return Err(XmlError::invalid(
                    "domain/vcpu",
                    "vcpu count must be at least 1",
                ));
            }
            v.set_text(&n.to_string());
            if let Some(cur) = v.attr("current") {
                let c: u32 = cur.trim().parse().map_err(|_| {
                    XmlError::invalid(
                        "domain/vcpu/@current",
                        format!("invalid vcpu count '{cur}'"),
                    )
                })?;
                if c > n {
                    return Err(XmlError::invalid(
                        "domain/vcpu/@current",
                        "current vcpus must not exceed maximum vcpus",
                    ));
                }
                if c == n {
                    v.remove_attr("current");
                }
            }
        }
        None => {
            root.push(
                Element::new("vcpu")
                    .with_attr("placement", "static")
                    .with_text("1"),
            );
        }
    }

    // os
    let os = root
        .child("os")
        .ok_or_else(|| XmlError::missing_element("domain/os"))?;
    let ty = os
        .child("type")
        .ok_or_else(|| XmlError::missing_element("domain/os/type"))?;
    if ty.text().trim().is_empty() {
        return Err(XmlError::invalid("domain/os/type", "empty os type"));
    }
    if let Some(os) = root.child_mut("os")
        && let Some(t) = os.child_mut("type")
    {
        let v = t.text().trim().to_string();
        t.set_text(&v);
    }

    domain_defaults(root, opts);
    ensure_macs(root, opts)?;
    crate::domrules::apply(root)?;
    // validated after the defaults are in: the output must be valid too
    crate::validate::validate_domain(root)?;
    // defaults may have added elements next to text: that text is stray too
    root.drop_stray_text(crate::tables::FREE_FORM_ELEMENTS);
    order_domain(root);
    Ok(())
}

/// Host architecture name as libvirt spells it.
pub fn host_arch() -> &'static str {
    let a = std::env::consts::ARCH;
    crate::tables::ARCH_NAMES
        .iter()
        .find(|(rust, _)| *rust == a)
        .map_or(a, |(_, l)| l)
}

fn has_device_boot(e: &Element) -> bool {
    e.elements()
        .any(|c| c.elements().any(|b| b.name() == "boot"))
}

/// Generic defaults every formatted domain carries.
fn domain_defaults(root: &mut Element, opts: &crate::domain::ParseOptions) {
    let devices_boot = root.child("devices").is_some_and(has_device_boot);
    if let Some(os) = root.child_mut("os") {
        let is_hvm = os.child("type").is_some_and(|t| t.text() == "hvm");
        if let Some(t) = os.child_mut("type")
            && t.attr("arch").is_none()
        {
            t.insert_attr(0, "arch", host_arch());
        }
        let direct = os.child("kernel").is_some();
        if is_hvm && os.child("boot").is_none() && !direct && !devices_boot && !opts.no_default_boot
        {
            let pos = os
                .nodes()
                .iter()
                .rposition(|n| matches!(n, Node::Element(e) if matches!(e.name(), "type" | "firmware" | "loader" | "nvram" | "kernel" | "initrd" | "cmdline" | "dtb" | "acpi")))
                .map_or(0, |p| p + 1);
            os.nodes_mut().insert(
                pos,
                Node::Element(Element::new("boot").with_attr("dev", "hd")),
            );
        }
    }
    if root.child("clock").is_none() {
        root.push(Element::new("clock").with_attr("offset", "utc"));
    }
    for (name, value) in crate::tables::LIFECYCLE_DEFAULTS {
        if root.child(name).is_none() {
            root.push(Element::new(*name).with_text(value));
        }
    }
}

/// Validates `<name>`: present, non-empty, no `/`.
pub(crate) fn check_name(root: &mut Element, kind: &str) -> Result<(), XmlError> {
    let path = format!("{kind}/name");
    let n = root
        .child_mut("name")
        .ok_or_else(|| XmlError::missing_element(path.clone()))?;
    let text = n.text();
    if text.is_empty() {
        return Err(XmlError::invalid(path, "empty name"));
    }
    if text.contains('/') {
        return Err(XmlError::invalid(
            path,
            format!("name '{text}' cannot contain '/'"),
        ));
    }
    n.set_text(&text);
    Ok(())
}

/// Validates `<uuid>` or generates one; canonical spelling afterwards.
pub(crate) fn ensure_uuid(root: &mut Element, kind: &str) -> Result<(), XmlError> {
    let path = format!("{kind}/uuid");
    match root.child_mut("uuid") {
        Some(u) => {
            let t = u.text();
            let parsed = parse_uuid(&t)
                .ok_or_else(|| XmlError::invalid(path, format!("invalid uuid '{}'", t.trim())))?;
            u.set_text(&parsed.to_string());
        }
        None => {
            let u = uuid::Uuid::new_v4();
            let pos = root
                .nodes()
                .iter()
                .position(|n| matches!(n, Node::Element(e) if e.name() == "name"))
                .map_or(0, |p| p + 1);
            root.nodes_mut().insert(
                pos,
                Node::Element(Element::new("uuid").with_text(&u.to_string())),
            );
        }
    }
    Ok(())
}

/// Orders the top-level children of `<domain>`.
pub fn order_domain_top(root: &mut Element) {
    sort_children(root, crate::tables::DOMAIN_TOP_ORDER);
}

/// Orders the whole domain tree.
pub fn order_domain(root: &mut Element) {
    sort_tree(root, "domain", crate::tables::DOMAIN_ORDER);
}

/// Stable reorder by a name list; names not in the list keep their place
/// after the preceding known sibling.
pub fn sort_children(e: &mut Element, order: &[&str]) {
    let rank_of = |n: &str| order.iter().position(|o| *o == n);
    // ranks in document order; unknown nodes take the rank of the element before them
    let mut ranks: Vec<usize> = Vec::with_capacity(e.nodes().len());
    let mut last_rank = 0usize;
    let mut sorted = true;
    for n in e.nodes() {
        if let Node::Element(el) = n
            && let Some(r) = rank_of(el.name())
        {
            last_rank = r;
        }
        if ranks.last().is_some_and(|p| *p > last_rank) {
            sorted = false;
        }
        ranks.push(last_rank);
    }
    if sorted {
        return;
    }
    let nodes = std::mem::take(e.nodes_mut());
    let mut keyed: Vec<(usize, usize, Node)> = nodes
        .into_iter()
        .enumerate()
        .map(|(i, n)| (ranks.get(i).copied().unwrap_or(0), i, n))
        .collect();
    keyed.sort_by_key(|(r, i, _)| (*r, *i));
    *e.nodes_mut() = keyed.into_iter().map(|(_, _, n)| n).collect();
}

/// Recursively orders children by a table of `parent path -> child order`.
pub fn sort_tree(e: &mut Element, path: &str, table: &[(&str, &[&str])]) {
    let mut buf = String::with_capacity(128);
    buf.push_str(path);
    sort_tree_buf(e, &mut buf, table);
}

fn sort_tree_buf(e: &mut Element, path: &mut String, table: &[(&str, &[&str])]) {
    if let Some((_, order)) = table.iter().find(|(p, _)| *p == path.as_str()) {
        sort_children(e, order);
    }
    let prefix_match = table.iter().any(|(p, _)| {
        p.len() > path.len()
            && p.starts_with(path.as_str())
            && p.as_bytes().get(path.len()) == Some(&b'/')
    });
    if !prefix_match {
        return;
    }
    let own = e.name().to_string();
    for c in e.elements_mut() {
        if c.name() == own {
            sort_tree_buf(c, path, table);
        } else {
            let len = path.len();
            path.push('/');
            path.push_str(c.name());
            sort_tree_buf(c, path, table);
            path.truncate(len);
        }
    }
}

/// Applies the output flags to a copy of the tree before formatting.
pub fn format_filter_domain(root: &mut Element, opts: &FormatOptions) {
    if opts.inactive {
        root.remove_attr("id");
        for (path, attr) in crate::tables::LIVE_ONLY {
            match attr {
                Some(a) => crate::domrules::for_each_path(root, path, &mut |e| e.remove_attr(a)),
                None => {
                    let (parent, leaf) = path.rsplit_once('/').unwrap_or(("", path));
                    if parent.is_empty() {
                        root.remove_children(|c| c.name() == leaf);
                    } else {
                        crate::domrules::for_each_path(root, parent, &mut |e| {
                            e.remove_children(|c| c.name() == leaf)
                        });
                    }
                }
            }
        }
        strip_backing_index(root);
        crate::domrules::for_each_path(root, "devices/disk/source", &mut |s| {
            s.remove_children(|c| c.name() == "seclabel" && c.attr("labelskip").is_some())
        });
    }
    if !opts.secure {
        strip_secure(root);
    }
}

fn strip_backing_index(e: &mut Element) {
    if e.name() == "backingStore" {
        e.remove_attr("index");
        if let Some(s) = e.child_mut("source") {
            s.remove_attr("index");
        }
    }
    for c in e.elements_mut() {
        strip_backing_index(c);
    }
}

fn strip_secure(e: &mut Element) {
    if e.name() == "graphics" {
        e.remove_attr("passwd");
    }
    for c in e.elements_mut() {
        strip_secure(c);
    }
}

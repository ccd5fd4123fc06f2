//! Generic (driver-agnostic) domain post-parse rules: canonical spellings,
//! defaults and live-only data.  Value tables live in [`crate::tables`].

use crate::error::XmlError;
use crate::tables;
use crate::tree::{Element, Node};
use crate::util::{parse_u64, scale_to_bytes};

/// Calls `f` on every element reached by the `/`-separated `path` below `e`.
pub fn for_each_path(e: &mut Element, path: &str, f: &mut dyn FnMut(&mut Element)) {
    match path.split_once('/') {
        None => {
            for c in e.children_named_mut(path) {
                f(c);
            }
        }
        Some((head, rest)) => {
            for c in e.children_named_mut(head) {
                for_each_path(c, rest, f);
            }
        }
    }
}

/// Whether any element reached by `path` below `e` satisfies `pred`.
pub fn any_path(e: &Element, path: &str, pred: &dyn Fn(&Element) -> bool) -> bool {
    match path.split_once('/') {
        None => e.children_named(path).any(pred),
        Some((head, rest)) => e.children_named(head).any(|c| any_path(c, rest, pred)),
    }
}

fn any_element(e: &Element, pred: &dyn Fn(&Element) -> bool) -> bool {
    pred(e) || e.elements().any(|c| any_element(c, pred))
}

/// Whether formatting with these options removes anything (so the tree
/// must be copied and filtered first).
pub fn format_changes(root: &Element, inactive: bool, secure: bool) -> bool {
    if inactive {
        if root.attr("id").is_some() {
            return true;
        }
        for (path, attr) in tables::LIVE_ONLY {
            let hit = match attr {
                Some(a) => any_path(root, path, &|e| e.attr(a).is_some()),
                None => any_path(root, path, &|_| true),
            };
            if hit {
                return true;
            }
        }
        if any_element(root, &|e| {
            (e.name() == "backingStore"
                && (e.attr("index").is_some()
                    || e.child("source").is_some_and(|s| s.attr("index").is_some())))
                || (e.name() == "seclabel" && e.attr("labelskip").is_some())
        }) {
            return true;
        }
    }
    !secure
        && any_element(root, &|e| {
            e.name() == "graphics" && e.attr("passwd").is_some()
        })
}

/// Parses a libvirt bitmap (`0-3,^2,8`) into a sorted list of bits.
pub fn parse_bitmap(s: &str) -> Option<Vec<u32>> {
    let mut set = std::collections::BTreeSet::new();
    let mut neg = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return None;
        }
        let (exclude, body) = match part.strip_prefix('^') {
            Some(b) => (true, b),
            None => (false, part),
        };
        let (lo, hi) = match body.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let v = body.parse::<u32>().ok()?;
                (v, v)
            }
        };
        // libvirt bitmaps are bounded; refuse absurd ranges instead of looping over them
        if lo > hi || hi > tables::BITMAP_MAX_BIT {
            return None;
        }
        for b in lo..=hi {
            if exclude {
                neg.push(b);
            } else {
                set.insert(b);
            }
        }
    }
    for b in neg {
        set.remove(&b);
    }
    Some(set.into_iter().collect())
}

/// Formats bits as libvirt does: ranges joined by commas.
pub fn format_bitmap(bits: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bits.len() {
        let start = bits[i];
        let mut end = start;
        while i + 1 < bits.len() && bits[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

fn parse_num(s: &str) -> Option<u64> {
    let t = s.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        t.parse().ok()
    }
}

/// Canonical spelling of `<address>` attributes (hex widths per type).
fn canon_address(e: &mut Element) {
    let ty = e.attr("type").unwrap_or("pci").to_string();
    let Some((_, fields)) = tables::ADDRESS_FORMATS.iter().find(|(t, _)| *t == ty) else {
        return;
    };
    for (name, width) in fields.iter() {
        if let Some(v) = e.attr(name)
            && let Some(n) = parse_num(v)
        {
            let s = match width {
                0 => n.to_string(),
                w => format!("0x{:0w$x}", n, w = *w),
            };
            e.set_attr(name, &s);
        }
    }
}

fn walk_mut(e: &mut Element, f: &mut dyn FnMut(&mut Element)) {
    f(e);
    for c in e.elements_mut() {
        walk_mut(c, f);
    }
}

/// Disk target name to index (`sda` -> 0, `sdaa` -> 26), as in the docs.
fn disk_index(dev: &str) -> Option<u64> {
    let letters = tables::DISK_PREFIXES
        .iter()
        .filter_map(|(p, _)| dev.strip_prefix(p))
        .find(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase()))?;
    let mut idx: u64 = 0;
    for (i, b) in letters.bytes().enumerate() {
        let v = u64::from(b - b'a');
        idx = if i == 0 {
            v
        } else {
            (idx + 1).checked_mul(26)?.checked_add(v)?
        };
    }
    Some(idx)
}

fn disk_bus(disk: &Element) -> String {
    let t = disk.child("target");
    if let Some(b) = t.and_then(|t| t.attr("bus")) {
        return b.to_string();
    }
    let dev = t.and_then(|t| t.attr("dev")).unwrap_or("");
    tables::DISK_PREFIXES
        .iter()
        .find(|(p, _)| dev.starts_with(p))
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Re-inserts disks the way libvirt keeps them: grouped by bus, sorted by
/// target name within a bus.
fn order_disks(devices: &mut Element) {
    let nodes = std::mem::take(devices.nodes_mut());
    let mut disks: Vec<Element> = Vec::new();
    let mut rest: Vec<Node> = Vec::new();
    let mut first_disk_pos = None;
    for n in nodes {
        match n {
            Node::Element(e) if e.name() == "disk" => {
                if first_disk_pos.is_none() {
                    first_disk_pos = Some(rest.len());
                }
                let bus = disk_bus(&e);
                let idx = e
                    .child("target")
                    .and_then(|t| t.attr("dev"))
                    .and_then(disk_index);
                let mut at = None;
                let mut last_same = None;
                for (i, d) in disks.iter().enumerate() {
                    if disk_bus(d) == bus {
                        last_same = Some(i);
                        let di = d
                            .child("target")
                            .and_then(|t| t.attr("dev"))
                            .and_then(disk_index);
                        if at.is_none()
                            && let (Some(a), Some(b)) = (di, idx)
                            && a > b
                        {
                            at = Some(i);
                        }
                    }
                }
                let pos = at.or(last_same.map(|l| l + 1)).unwrap_or(disks.len());
                disks.insert(pos, e);
            }
            other => rest.push(other),
        }
    }
    let pos = first_disk_pos.unwrap_or(rest.len());
    let mut out: Vec<Node> = Vec::with_capacity(rest.len() + disks.len());
    let mut rest_iter = rest.into_iter();
    for _ in 0..pos {
        if let Some(n) = rest_iter.next() {
            out.push(n);
        }
    }
    out.extend(disks.into_iter().map(Node::Element));
    out.extend(rest_iter);
    *devices.nodes_mut() = out;
}

fn resolve_ns<'a>(
    e: &'a Element,
    root_decls: &'a [(String, String)],
    prefix: &str,
) -> Option<&'a str> {
    let key = format!("xmlns:{prefix}");
    e.attr(&key).or_else(|| {
        root_decls
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    })
}

fn rename_prefix(e: &mut Element, from: &str, to: &str, uri: &str) {
    if let Some((p, local)) = e.name().split_once(':')
        && p == from
    {
        let n = format!("{to}:{local}");
        e.set_name(&n);
    }
    e.attrs_mut()
        .retain(|(k, v)| !(k.starts_with("xmlns:") && v == uri));
    for c in e.elements_mut() {
        // nested elements may declare their own prefix for the same namespace
        let own: Option<(String, String)> = c.name().split_once(':').and_then(|(p, _)| {
            c.attr(&format!("xmlns:{p}"))
                .filter(|u| *u == uri)
                .map(|_| (p.to_string(), uri.to_string()))
        });
        match own {
            Some((p, u)) => rename_prefix(c, &p, to, &u),
            None => rename_prefix(c, from, to, uri),
        }
    }
}

/// Canonical prefixes for libvirt's driver namespaces, declared on the root.
fn canon_namespaces(root: &mut Element) {
    let root_decls: Vec<(String, String)> = root
        .attrs()
        .iter()
        .filter(|(k, _)| k.starts_with("xmlns:"))
        .cloned()
        .collect();
    let mut needed: Vec<(&str, &str)> = Vec::new();
    for c in root.elements_mut() {
        let Some((p, _)) = c.name().split_once(':') else {
            continue;
        };
        let p = p.to_string();
        let Some(uri) = resolve_ns(c, &root_decls, &p).map(str::to_string) else {
            continue;
        };
        let Some((canon, curi)) = tables::DOMAIN_NAMESPACES.iter().find(|(_, u)| *u == uri) else {
            continue;
        };
        rename_prefix(c, &p, canon, curi);
        if !needed.iter().any(|(c2, _)| c2 == canon) {
            needed.push((canon, curi));
        }
    }
    for (canon, uri) in needed {
        root.attrs_mut()
            .retain(|(k, v)| !(k.starts_with("xmlns:") && v == uri));
        root.set_attr(&format!("xmlns:{canon}"), uri);
    }
}

/// `<metadata>`: only namespaced elements, one per namespace, each carrying
/// its own declaration.
fn sanitize_metadata(root: &mut Element) {
    let root_decls: Vec<(String, String)> = root
        .attrs()
        .iter()
        .filter(|(k, _)| k.starts_with("xmlns:"))
        .cloned()
        .collect();
    let Some(md) = root.child_mut("metadata") else {
        return;
    };
    let md_decls: Vec<(String, String)> = md
        .attrs()
        .iter()
        .filter(|(k, _)| k.starts_with("xmlns:"))
        .cloned()
        .collect();
    let mut seen: Vec<String> = Vec::new();
    let nodes = std::mem::take(md.nodes_mut());
    let mut out = Vec::new();
    for n in nodes {
        match n {
            Node::Element(mut e) => {
                let Some((p, _)) = e.name().split_once(':') else {
                    continue;
                };
                let p = p.to_string();
                let key = format!("xmlns:{p}");
                let uri = e.attr(&key).map(str::to_string).or_else(|| {
                    md_decls
                        .iter()
                        .chain(root_decls.iter())
                        .find(|(k, _)| *k == key)
                        .map(|(_, v)| v.clone())
                });
                let Some(uri) = uri else { continue };
                if seen.contains(&uri) {
                    continue;
                }
                seen.push(uri.clone());
                if e.attr(&key).is_none() {
                    e.insert_attr(0, &key, &uri);
                }
                out.push(Node::Element(e));
            }
            Node::Comment(c) => out.push(Node::Comment(c)),
            _ => {}
        }
    }
    *md.nodes_mut() = out;
}

fn scale_kib_attr(e: &mut Element, attr: &str, unit_attr: &str) {
    if let Some(v) = e.attr(attr)
        && let Ok(b) = scale_to_bytes(v, e.attr(unit_attr), 1024)
    {
        let kib = b.div_ceil(1024);
        e.set_attr(attr, &kib.to_string());
        e.set_attr(unit_attr, "KiB");
    }
}

/// Applies the generic rules.  `path` style errors are produced for
/// documented constraints.
pub fn apply(root: &mut Element) -> Result<(), XmlError> {
    canon_namespaces(root);
    sanitize_metadata(root);

    // bitmaps
    for (path, attr) in tables::BITMAP_ATTRS {
        let mut err = None;
        for_each_path(root, path, &mut |e| {
            if let Some(v) = e.attr(attr) {
                match parse_bitmap(v) {
                    Some(bits) => {
                        let s = format_bitmap(&bits);
                        e.set_attr(attr, &s);
                    }
                    None => {
                        if err.is_none() {
                            err = Some(XmlError::invalid(
                                format!("domain/{path}/@{attr}"),
                                format!("invalid bitmap '{v}'"),
                            ));
                        }
                    }
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
    }

    // addresses anywhere
    walk_mut(root, &mut |e| {
        if e.name() == "address" && e.attr("type").is_some() {
            canon_address(e);
        }
    });
    for_each_path(root, "devices/hostdev/source/address", &mut |e| {
        if e.attr("type").is_none() && e.attr("slot").is_some() {
            canon_address(e);
        }
    });

    // attribute values dropped because they are the default
    for (path, attr, value) in tables::DEFAULT_ATTR_VALUES {
        for_each_path(root, path, &mut |e| {
            if e.attr(attr) == Some(value) {
                e.remove_attr(attr);
            }
        });
    }
    // canonical lower-case enum spellings
    for (path, attr, known) in tables::CASE_INSENSITIVE_ENUMS {
        for_each_path(root, path, &mut |e| {
            if let Some(v) = e.attr(attr) {
                let l = v.to_ascii_lowercase();
                if l != v && known.contains(&l.as_str()) {
                    e.set_attr(attr, &l);
                }
            }
        });
    }
    // octal permission attributes
    for (path, attr) in tables::OCTAL_ATTRS {
        for_each_path(root, path, &mut |e| {
            if let Some(v) = e.attr(attr)
                && let Ok(n) = u32::from_str_radix(v.trim(), 8)
            {
                e.set_attr(attr, &format!("{n:04o}"));
            }
        });
    }

    memory_rules(root)?;
    cpu_rules(root)?;
    os_rules(root);
    if let Some(devs) = root.child_mut("devices") {
        order_disks(devs);
        device_rules(devs)?;
    }
    Ok(())
}

fn memory_rules(root: &mut Element) -> Result<(), XmlError> {
    if let Some(mt) = root.child_mut("memtune") {
        let mut bad = None;
        for c in mt.elements_mut() {
            let t = c.text();
            match scale_to_bytes(&t, c.attr("unit"), 1024) {
                Ok(b) => {
                    c.set_attr("unit", "KiB");
                    c.set_text(&b.div_ceil(1024).to_string());
                }
                Err(p) => bad = Some(XmlError::invalid(format!("domain/memtune/{}", c.name()), p)),
            }
        }
        if let Some(b) = bad {
            return Err(b);
        }
        mt.remove_children(|c| {
            parse_u64(&c.text()).is_some_and(|v| v >= tables::MEMORY_PARAM_UNLIMITED_KIB)
        });
        if mt.elements().next().is_none() {
            root.remove_children(|c| c.name() == "memtune");
        }
    }
    for_each_path(root, "memoryBacking/hugepages/page", &mut |e| {
        scale_kib_attr(e, "size", "unit")
    });
    let mut tseg_err = None;
    for_each_path(root, "features/smm/tseg", &mut |e| match scale_to_bytes(
        &e.text(),
        e.attr("unit"),
        1 << 20,
    ) {
        Ok(b) if b % (1 << 20) == 0 => {
            e.set_attr("unit", "MiB");
            e.set_text(&(b >> 20).to_string());
        }
        Ok(_) => {
            tseg_err = Some(XmlError::invalid(
                "domain/features/smm/tseg",
                "SMM TSEG size must be divisible by 1 MiB",
            ))
        }
        Err(p) => tseg_err = Some(XmlError::invalid("domain/features/smm/tseg", p)),
    });
    if let Some(e) = tseg_err {
        return Err(e);
    }
    for_each_path(root, "features/hpt/maxpagesize", &mut |e| {
        if let Ok(b) = scale_to_bytes(&e.text(), e.attr("unit"), 1024) {
            e.set_attr("unit", "KiB");
            e.set_text(&b.div_ceil(1024).to_string());
        }
    });
    for_each_path(root, "devices/memory/source/pagesize", &mut |e| {
        if let Ok(b) = scale_to_bytes(&e.text(), e.attr("unit"), 1024) {
            e.set_attr("unit", "KiB");
            e.set_text(&b.div_ceil(1024).to_string());
        }
    });
    for_each_path(
        root,
        "devices/disk/driver/metadata_cache/max_size",
        &mut |e| to_bytes(e),
    );
    walk_mut(root, &mut |e| {
        if e.name() == "backingStore" || e.name() == "disk" {
            for_each_path(e, "format/metadata_cache/max_size", &mut |m| to_bytes(m));
            for_each_path(e, "driver/metadata_cache/max_size", &mut |m| to_bytes(m));
        }
    });
    Ok(())
}

fn to_bytes(e: &mut Element) {
    if let Ok(b) = scale_to_bytes(&e.text(), e.attr("unit"), 1) {
        e.set_attr("unit", "bytes");
        e.set_text(&b.to_string());
    }
}

/// Cache and memory-bandwidth tunes: vCPU sets clipped to existing vCPUs,
/// no overlaps, no duplicate allocations, monitors inside their tune.
fn resctrl_rules(ct: &mut Element, maxv: u32) -> Result<(), XmlError> {
    let snapshot = crate::util::Siblings::of(ct);
    let ct_ro: &Element = ct;
    let mut taken: Vec<(String, Vec<u32>)> = Vec::new();
    let mut drop_idx: Vec<(String, usize)> = Vec::new();
    for kind in ["cachetune", "memorytune"] {
        for (k, t) in ct_ro.children_named(kind).enumerate() {
            let p = snapshot.path("domain/cputune", kind, k);
            let bits: Vec<u32> = t
                .attr("vcpus")
                .and_then(parse_bitmap)
                .ok_or_else(|| XmlError::missing_attr(format!("{p}/@vcpus")))?
                .into_iter()
                .filter(|b| *b < maxv)
                .collect();
            if bits.is_empty() {
                drop_idx.push((kind.to_string(), k));
                continue;
            }
            for (other_kind, ob) in &taken {
                let overlap = ob.iter().any(|b| bits.contains(b));
                if other_kind == kind && overlap {
                    return Err(XmlError::invalid(
                        format!("{p}/@vcpus"),
                        format!("overlapping vcpus in {kind}s"),
                    ));
                }
                // a memory tune shares a cache tune's group only with exactly its vCPUs
                if other_kind != kind && overlap && *ob != bits {
                    return Err(XmlError::invalid(
                        format!("{p}/@vcpus"),
                        "vcpus of memorytune and cachetune must either match or not overlap",
                    ));
                }
            }
            taken.push((kind.to_string(), bits.clone()));
            let item = if kind == "cachetune" { "cache" } else { "node" };
            let mut seen: Vec<(Option<&str>, Option<&str>, Option<&str>)> = Vec::new();
            for c in t.children_named(item) {
                let key = (
                    c.attr("id"),
                    c.attr("level"),
                    if kind == "cachetune" {
                        c.attr("type")
                    } else {
                        None
                    },
                );
                // a 'both' allocation collides with any other of the same cache
                let collides = seen.iter().any(|s| {
                    s.0 == key.0
                        && s.1 == key.1
                        && (s.2 == key.2 || s.2 == Some("both") || key.2 == Some("both"))
                });
                if collides {
                    return Err(XmlError::invalid(
                        format!("{p}/{item}"),
                        format!(
                            "duplicate {item} allocation for id '{}'",
                            c.attr("id").unwrap_or("")
                        ),
                    ));
                }
                seen.push(key);
            }
            for m in t.children_named("monitor") {
                let mb = m.attr("vcpus").and_then(parse_bitmap).unwrap_or_default();
                if mb.iter().any(|b| !bits.contains(b)) {
                    return Err(XmlError::invalid(
                        format!("{p}/monitor/@vcpus"),
                        "monitor vcpus must be a subset of the tune's vcpus",
                    ));
                }
            }
        }
    }
    let mut counters: Vec<(String, usize)> = Vec::new();
    let nodes = std::mem::take(ct.nodes_mut());
    let mut out = Vec::new();
    for n in nodes {
        if let Node::Element(mut e) = n {
            let name = e.name().to_string();
            if name == "cachetune" || name == "memorytune" {
                let i = match counters.iter_mut().find(|(k, _)| *k == name) {
                    Some(c) => {
                        c.1 += 1;
                        c.1
                    }
                    None => {
                        counters.push((name.clone(), 0));
                        0
                    }
                };
                if drop_idx.contains(&(name.clone(), i)) {
                    continue;
                }
                if let Some(bits) = e.attr("vcpus").and_then(parse_bitmap) {
                    let clipped: Vec<u32> = bits.into_iter().filter(|b| *b < maxv).collect();
                    e.set_attr("vcpus", &format_bitmap(&clipped));
                }
            }
            out.push(Node::Element(e));
        } else {
            out.push(n);
        }
    }
    *ct.nodes_mut() = out;
    Ok(())
}

fn cpu_rules(root: &mut Element) -> Result<(), XmlError> {
    if let Some(cpu) = root.child_mut("cpu") {
        let host_mode = matches!(
            cpu.attr("mode"),
            Some("host-model" | "host-passthrough" | "maximum")
        );
        cpu.remove_children(|m| {
            m.name() == "model"
                && m.text().trim().is_empty()
                && (host_mode || m.attr("fallback").is_none_or(|f| f == "allow"))
                && m.attr("vendor_id").is_none()
        });
        if let Some(numa) = cpu.child_mut("numa") {
            let nodes = std::mem::take(numa.nodes_mut());
            let (mut cells, others): (Vec<Node>, Vec<Node>) = nodes
                .into_iter()
                .partition(|n| matches!(n, Node::Element(e) if e.name() == "cell"));
            cells.sort_by_key(|n| match n {
                Node::Element(e) => e
                    .attr("id")
                    .and_then(|i| i.trim().parse::<u64>().ok())
                    .unwrap_or(u64::MAX),
                _ => u64::MAX,
            });
            let mut v = cells;
            v.extend(others);
            *numa.nodes_mut() = v;
            for c in numa.children_named_mut("cell") {
                scale_kib_attr(c, "memory", "unit");
            }
        }
    }
    let maxv: u32 = root
        .child("vcpu")
        .and_then(|v| v.text().trim().parse().ok())
        .unwrap_or(1);
    if let Some(ct) = root.child_mut("cputune") {
        resctrl_rules(ct, maxv)?;
        split_sched(ct, "vcpusched", "vcpus");
        split_sched(ct, "iothreadsched", "iothreads");
    }
    for_each_path(root, "cputune/vcpusched", &mut |e| {
        if !matches!(e.attr("scheduler"), Some("fifo" | "rr")) {
            e.remove_attr("priority");
        }
    });
    for_each_path(root, "cputune/iothreadsched", &mut |e| {
        if !matches!(e.attr("scheduler"), Some("fifo" | "rr")) {
            e.remove_attr("priority");
        }
    });
    // numatune placement
    let mut auto = false;
    if let Some(m) = root
        .child_mut("numatune")
        .and_then(|n| n.child_mut("memory"))
    {
        if m.attr("placement").is_none() {
            // placement follows from the presence of a nodeset
        }
        if m.attr("placement") == Some("auto") {
            m.remove_attr("nodeset");
            auto = true;
        }
    }
    // automatic NUMA placement makes vCPU placement automatic too, unless
    // the vCPUs or emulator are pinned explicitly
    let pinned = root.child("cputune").is_some_and(|c| {
        c.elements()
            .any(|e| matches!(e.name(), "vcpupin" | "emulatorpin" | "iothreadpin"))
    });
    if let Some(v) = root.child_mut("vcpu") {
        let unpinned_auto = auto && v.attr("cpuset").is_none() && !pinned;
        match v.attr("placement") {
            None => v.insert_attr(
                0,
                "placement",
                if unpinned_auto { "auto" } else { "static" },
            ),
            Some("static") if unpinned_auto => v.set_attr("placement", "auto"),
            _ => {}
        }
    }
    Ok(())
}

/// One scheduler entry per vCPU/iothread, sorted by id, as libvirt stores them.
fn split_sched(ct: &mut Element, name: &str, attr: &str) {
    if ct.children_named(name).next().is_none() {
        return;
    }
    let mut entries: Vec<(u32, Element)> = Vec::new();
    let nodes = std::mem::take(ct.nodes_mut());
    let mut out = Vec::new();
    let mut first_pos = None;
    for n in nodes {
        match n {
            Node::Element(e) if e.name() == name => {
                if first_pos.is_none() {
                    first_pos = Some(out.len());
                }
                match e.attr(attr).and_then(parse_bitmap) {
                    Some(bits) => {
                        for b in bits {
                            let mut c = e.clone();
                            c.set_attr(attr, &b.to_string());
                            entries.push((b, c));
                        }
                    }
                    None => entries.push((u32::MAX, e)),
                }
            }
            other => out.push(other),
        }
    }
    entries.sort_by_key(|(b, _)| *b);
    let pos = first_pos.unwrap_or(out.len());
    let tail = out.split_off(pos);
    out.extend(entries.into_iter().map(|(_, e)| Node::Element(e)));
    out.extend(tail);
    *ct.nodes_mut() = out;
}

fn os_rules(root: &mut Element) {
    if let Some(bm) = root.child_mut("os").and_then(|o| o.child_mut("bootmenu"))
        && bm.attr("enable") == Some("no")
    {
        bm.remove_attr("timeout");
    }
}

const CHARDEVS: &[&str] = &[
    "serial",
    "parallel",
    "console",
    "channel",
    "smartcard",
    "redirdev",
];

fn device_rules(devs: &mut Element) -> Result<(), XmlError> {
    console_compat(devs);
    // consoles other than the serial one are numbered by position
    for (i, c) in devs.children_named_mut("console").enumerate() {
        if let Some(t) = c.child_mut("target")
            && t.attr("type").is_some_and(|ty| ty != "serial")
        {
            t.set_attr("port", &i.to_string());
        }
    }
    // boot load parameters are upper case
    for d in devs.elements_mut() {
        if let Some(b) = d.child_mut("boot")
            && let Some(lp) = b.attr("loadparm")
        {
            let up = lp.to_ascii_uppercase();
            b.set_attr("loadparm", &up);
        }
    }
    // disks
    for d in devs.children_named_mut("disk") {
        if let Some(t) = d.child_mut("target") {
            if t.attr("tray") == Some("closed") {
                t.remove_attr("tray");
            }
            if t.attr("removable").is_some() && t.attr("bus") != Some("usb") {
                t.remove_attr("removable");
            }
        }
        if d.attr("type") == Some("network") && d.child("source").is_none() {
            d.set_attr("type", "file");
        }
        iscsi_lun(d.child_mut("source"));
    }
    for h in devs.children_named_mut("hostdev") {
        iscsi_lun(h.child_mut("source"));
    }
    // chardevs
    let snapshot = crate::util::Siblings::of(devs);
    for name in CHARDEVS {
        for (k, c) in devs.children_named_mut(name).enumerate() {
            let cpath = snapshot.path("domain/devices", name, k);
            let ty = c.attr("type").unwrap_or("pty").to_string();
            let virtio_channel = *name == "channel"
                && c.child("target").and_then(|t| t.attr("type")) == Some("virtio");
            check_chardev_source(c, &ty, &cpath, virtio_channel)?;
            if ty == "udp" {
                // libvirt keeps the bind source first
                let nodes = std::mem::take(c.nodes_mut());
                let (mut binds, rest): (Vec<Node>, Vec<Node>) = nodes.into_iter().partition(
                    |n| matches!(n, Node::Element(e) if e.name() == "source" && e.attr("mode") == Some("bind")),
                );
                let at = rest
                    .iter()
                    .position(|n| matches!(n, Node::Element(e) if e.name() == "source"))
                    .unwrap_or(0);
                let mut out = rest;
                for (i, b) in binds.drain(..).enumerate() {
                    out.insert(at + i, b);
                }
                *c.nodes_mut() = out;
            }
            if ty == "unix" {
                c.remove_children(|s| s.name() == "source" && s.attr("path").is_none());
                for s in c.children_named_mut("source") {
                    if s.attr("mode").is_none() {
                        s.insert_attr(0, "mode", "connect");
                    }
                }
            }
            if ty != "tcp" {
                c.remove_children(|s| s.name() == "protocol");
            }
            if ty == "tcp" || ty == "udp" {
                for s in c.children_named_mut("source") {
                    if s.attr("mode").is_none() {
                        s.insert_attr(0, "mode", "connect");
                    }
                }
            }
            if ty == "tcp"
                && c.child("protocol").is_none()
                && *name != "smartcard"
                && *name != "redirdev"
            {
                c.push(Element::new("protocol").with_attr("type", "raw"));
            }
        }
    }
    for (k, r) in devs.children_named("rng").enumerate() {
        if let Some(b) = r.child("backend")
            && b.attr("model") == Some("egd")
        {
            let ty = b.attr("type").unwrap_or("").to_string();
            let p = format!("{}/backend", snapshot.path("domain/devices", "rng", k));
            check_chardev_source(b, &ty, &p, false)?;
        }
    }
    for b in devs
        .children_named_mut("rng")
        .filter_map(|r| r.child_mut("backend"))
    {
        if matches!(b.attr("type"), Some("unix" | "tcp" | "udp")) {
            for s in b.children_named_mut("source") {
                if s.attr("mode").is_none() {
                    s.insert_attr(0, "mode", "connect");
                }
            }
        }
    }
    smartcard_addresses(devs);
    // filesystems
    for f in devs.children_named_mut("filesystem") {
        if f.attr("type") == Some("ram")
            && let Some(src) = f.child_mut("source")
        {
            scale_kib_attr(src, "usage", "units");
        }
        if f.attr("accessmode").is_none() {
            let pos = f
                .attrs()
                .iter()
                .position(|(k, _)| k == "type")
                .map_or(0, |p| p + 1);
            f.insert_attr(pos, "accessmode", "passthrough");
        }
    }
    controller_indexes(devs);
    // video: the primary one first, marked
    let mut videos: Vec<usize> = Vec::new();
    for (i, n) in devs.nodes().iter().enumerate() {
        if matches!(n, Node::Element(e) if e.name() == "video") {
            videos.push(i);
        }
    }
    if let Some(&first) = videos.first() {
        let primary = videos
            .iter()
            .copied()
            .find(|&i| {
                matches!(devs.nodes().get(i), Some(Node::Element(e))
                    if e.child("model").and_then(|m| m.attr("primary")) == Some("yes"))
            })
            .unwrap_or(first);
        if primary != first {
            let n = devs.nodes_mut().remove(primary);
            devs.nodes_mut().insert(first, n);
        }
        for (idx, v) in devs.children_named_mut("video").enumerate() {
            if let Some(m) = v.child_mut("model") {
                if idx == 0 && m.attr("type") != Some("none") {
                    m.set_attr("primary", "yes");
                } else if m.attr("primary") == Some("no") {
                    m.remove_attr("primary");
                }
            }
        }
    }
    // graphics
    let snapshot = crate::util::Siblings::of(devs);
    for (k, g) in devs.children_named_mut("graphics").enumerate() {
        let path = snapshot.path("domain/devices", "graphics", k);
        graphics_rules(g, &path)?;
    }
    // interfaces
    for i in devs.children_named_mut("interface") {
        let virtio = i
            .child("model")
            .and_then(|m| m.attr("type"))
            .is_some_and(|m| tables::VIRTIO_NET_MODELS.contains(&m));
        let hostdev = i.attr("type") == Some("hostdev");
        if !virtio {
            // the <driver> tunables and vhost backend only exist for virtio NICs
            if hostdev {
                if let Some(d) = i.child_mut("driver") {
                    d.attrs_mut().retain(|(k, _)| k == "name");
                }
                i.remove_children(|d| {
                    d.name() == "driver"
                        && d.attr("name").is_none()
                        && d.elements().next().is_none()
                });
            } else {
                i.remove_children(|d| d.name() == "driver");
            }
            if let Some(b) = i.child_mut("backend") {
                b.remove_attr("vhost");
            }
        }
        if hostdev {
            // no packet filtering on a passed-through NIC
            i.remove_children(|f| f.name() == "filterref");
        }
        if let Some(c) = i.child_mut("coalesce") {
            for_each_path(c, "rx/frames", &mut |f| {
                if f.attr("max") == Some("0") {
                    f.remove_attr("max");
                }
            });
            for_each_path(c, "rx", &mut |rx| rx.remove_children(|f| f.is_empty()));
            c.remove_children(|rx| rx.is_empty());
        }
        i.remove_children(|c| c.name() == "coalesce" && c.is_empty());
    }
    // redirfilter
    for_each_path(devs, "redirfilter/usbdev", &mut |u| {
        for a in ["class", "vendor", "product", "version"] {
            if u.attr(a) == Some("-1") {
                u.remove_attr(a);
            }
        }
        if let Some(v) = u.attr("version")
            && let Some((maj, min)) = v.split_once('.')
            && let (Ok(a), Ok(b)) = (u32::from_str_radix(maj, 16), u32::from_str_radix(min, 16))
        {
            let bcd_min = if min.len() == 1 { b << 4 } else { b };
            u.set_attr("version", &format!("{a:x}.{bcd_min:02x}"));
        }
    });
    Ok(())
}

fn check_chardev_source(
    c: &Element,
    ty: &str,
    path: &str,
    virtio_channel: bool,
) -> Result<(), XmlError> {
    let sources: Vec<&Element> = c.children_named("source").collect();
    let max = match ty {
        "udp" => 2,
        _ => 1,
    };
    if sources.len() > max {
        return Err(XmlError::invalid(
            format!("{path}/source"),
            format!("only {max} <source> element(s) allowed for a '{ty}' character device"),
        ));
    }
    for s in &sources {
        let mode = s.attr("mode").unwrap_or("connect");
        match ty {
            "tcp" => {
                if s.attr("host").is_none() {
                    return Err(XmlError::missing_attr(format!("{path}/source/@host")));
                }
                if s.attr("service").is_none() {
                    return Err(XmlError::missing_attr(format!("{path}/source/@service")));
                }
            }
            "unix" if s.attr("path").is_none() && !virtio_channel => {
                return Err(XmlError::missing_attr(format!("{path}/source/@path")));
            }
            _ => {}
        }
        if let Some(r) = s.child("reconnect")
            && r.attr("enabled") == Some("yes")
        {
            if mode != "connect" {
                return Err(XmlError::invalid(
                    format!("{path}/source/reconnect"),
                    "chardev reconnect is possible only for connect mode",
                ));
            }
            if r.attr("timeout").is_none() {
                return Err(XmlError::missing_attr(format!(
                    "{path}/source/reconnect/@timeout"
                )));
            }
        }
    }
    if ty == "unix" && sources.is_empty() && !virtio_channel && c.name() != "channel" {
        return Err(XmlError::missing_element(format!("{path}/source")));
    }
    Ok(())
}

/// With a serial port, the first console is the serial port's console: when
/// the first console is of another kind, a console for the first serial
/// port is put in front of it.
fn console_compat(devs: &mut Element) {
    let first_console_kind = devs
        .children_named("console")
        .next()
        .map(|c| c.child("target").and_then(|t| t.attr("type")));
    let Some(Some(kind)) = first_console_kind else {
        return;
    };
    if kind == "serial" {
        return;
    }
    let Some(serial) = devs.children_named("serial").next() else {
        return;
    };
    let mut con = Element::new("console");
    for (k, v) in serial.attrs() {
        if k == "type" {
            con.set_attr(k, v);
        }
    }
    if let Some(src) = serial.child("source") {
        con.push(src.clone());
    }
    let port = serial
        .child("target")
        .and_then(|t| t.attr("port"))
        .unwrap_or("0")
        .to_string();
    con.push(
        Element::new("target")
            .with_attr("type", "serial")
            .with_attr("port", &port),
    );
    let pos = devs
        .nodes()
        .iter()
        .position(|n| matches!(n, Node::Element(e) if e.name() == "console"))
        .unwrap_or(devs.nodes().len());
    devs.nodes_mut().insert(pos, Node::Element(con));
}

/// Smartcards without an address sit on a CCID controller, one slot each.
fn smartcard_addresses(devs: &mut Element) {
    let need = devs
        .children_named("smartcard")
        .any(|s| s.child("address").is_none());
    if !need {
        return;
    }
    if !devs
        .children_named("controller")
        .any(|c| c.attr("type") == Some("ccid"))
    {
        let ctl = Element::new("controller")
            .with_attr("type", "ccid")
            .with_attr("index", "0");
        let pos = devs
            .nodes()
            .iter()
            .rposition(|n| matches!(n, Node::Element(e) if e.name() == "controller"))
            .map_or(devs.nodes().len(), |p| p + 1);
        devs.nodes_mut().insert(pos, Node::Element(ctl));
    }
    let mut used: Vec<u64> = devs
        .children_named("smartcard")
        .filter_map(|s| s.child("address")?.attr("slot")?.trim().parse().ok())
        .collect();
    for s in devs.children_named_mut("smartcard") {
        if s.child("address").is_some() {
            continue;
        }
        let mut slot = 0;
        while used.contains(&slot) {
            slot += 1;
        }
        used.push(slot);
        s.push(
            Element::new("address")
                .with_attr("type", "ccid")
                .with_attr("controller", "0")
                .with_attr("slot", &slot.to_string()),
        );
    }
}

/// Controllers without an index get one: USB companions join the group of
/// the controller before them when it has no controller of their model yet,
/// everything else takes the lowest unused index of its type.  Companions
/// get their default `<master startport>`; controllers are then kept sorted
/// by type (first appearance) and index, masters before companions.
fn controller_indexes(devs: &mut Element) {
    let mut used: Vec<(String, u64, String)> = devs
        .children_named("controller")
        .filter_map(|c| {
            Some((
                c.attr("type")?.to_string(),
                c.attr("index")?.trim().parse().ok()?,
                c.attr("model").unwrap_or("").to_string(),
            ))
        })
        .collect();
    let family = |m: &str| {
        tables::USB_MASTERS.contains(&m) || tables::USB_COMPANIONS.iter().any(|(c, _)| *c == m)
    };
    let mut prev_usb: Option<(u64, String)> = None;
    for c in devs.children_named_mut("controller") {
        let ty = c.attr("type").unwrap_or("").to_string();
        let model = c.attr("model").unwrap_or("").to_string();
        if let Some(raw) = c.attr("index") {
            // an unparsable index is left for validation to report
            if let Ok(idx) = raw.trim().parse::<u64>()
                && ty == "usb"
            {
                prev_usb = Some((idx, model));
            }
            continue;
        }
        let mut chosen = None;
        if ty == "usb"
            && family(&model)
            && let Some((pidx, pmodel)) = &prev_usb
            && family(pmodel)
            && !used
                .iter()
                .any(|(t, n, m)| t == "usb" && n == pidx && *m == model)
        {
            chosen = Some(*pidx);
        }
        let i = chosen.unwrap_or_else(|| {
            let mut i = 0u64;
            while used.iter().any(|(t, n, _)| *t == ty && *n == i) {
                i += 1;
            }
            i
        });
        used.push((ty.clone(), i, model.clone()));
        if ty == "usb" {
            prev_usb = Some((i, model));
        }
        let pos = c
            .attrs()
            .iter()
            .position(|(k, _)| k == "type")
            .map_or(0, |p| p + 1);
        c.insert_attr(pos, "index", &i.to_string());
    }
    // companion master ports
    let masters: Vec<u64> = used
        .iter()
        .filter(|(t, _, m)| t == "usb" && tables::USB_MASTERS.contains(&m.as_str()))
        .map(|(_, n, _)| *n)
        .collect();
    for c in devs.children_named_mut("controller") {
        if c.attr("type") != Some("usb") || c.child("master").is_some() {
            continue;
        }
        let model = c.attr("model").unwrap_or("");
        let Some((_, port)) = tables::USB_COMPANIONS.iter().find(|(m, _)| *m == model) else {
            continue;
        };
        let idx = c.attr("index").and_then(|i| i.trim().parse::<u64>().ok());
        if idx.is_some_and(|i| masters.contains(&i)) {
            c.nodes_mut().insert(
                0,
                Node::Element(Element::new("master").with_attr("startport", &port.to_string())),
            );
        }
    }
    // keep controllers sorted
    let nodes = std::mem::take(devs.nodes_mut());
    let mut types: Vec<String> = Vec::new();
    let mut ctls: Vec<(usize, u64, bool, usize, Node)> = Vec::new();
    let mut rest: Vec<Node> = Vec::new();
    let mut first = None;
    for (seq, n) in nodes.into_iter().enumerate() {
        match n {
            Node::Element(e) if e.name() == "controller" => {
                if first.is_none() {
                    first = Some(rest.len());
                }
                let ty = e.attr("type").unwrap_or("").to_string();
                let tpos = match types.iter().position(|t| *t == ty) {
                    Some(p) => p,
                    None => {
                        types.push(ty);
                        types.len() - 1
                    }
                };
                let idx = e
                    .attr("index")
                    .and_then(|i| i.trim().parse::<u64>().ok())
                    .unwrap_or(u64::MAX);
                let companion = e.child("master").is_some();
                ctls.push((tpos, idx, companion, seq, Node::Element(e)));
            }
            other => rest.push(other),
        }
    }
    ctls.sort_by_key(|(t, i, c, s, _)| (*t, *i, *c, *s));
    let at = first.unwrap_or(rest.len());
    let tail = rest.split_off(at);
    rest.extend(ctls.into_iter().map(|(_, _, _, _, n)| n));
    rest.extend(tail);
    *devs.nodes_mut() = rest;
}

fn iscsi_lun(src: Option<&mut Element>) {
    if let Some(s) = src
        && s.attr("protocol") == Some("iscsi")
        && let Some(n) = s.attr("name")
        && !n.contains('/')
    {
        let v = format!("{n}/0");
        s.set_attr("name", &v);
    }
}

fn graphics_rules(g: &mut Element, path: &str) -> Result<(), XmlError> {
    let ty = g.attr("type").unwrap_or("").to_string();
    if ty != "vnc" && ty != "spice" && ty != "rdp" {
        return Ok(());
    }
    // listen attribute vs <listen> elements
    let attr_listen = g.attr("listen").map(str::to_string);
    let first_addr = g
        .children_named("listen")
        .find(|l| l.attr("type") == Some("address"))
        .map(|l| l.attr("address").map(str::to_string));
    match (&attr_listen, &first_addr) {
        (Some(a), Some(Some(b))) if a != b => {
            return Err(XmlError::invalid(
                format!("{path}/@listen"),
                format!(
                    "graphics 'listen' attribute '{a}' must match 'address' attribute of first listen element (found '{b}')"
                ),
            ));
        }
        (Some(a), Some(None)) => {
            if let Some(l) = g
                .children_named_mut("listen")
                .find(|l| l.attr("type") == Some("address"))
            {
                l.set_attr("address", a);
            }
        }
        (None, Some(Some(b))) => {
            let b = b.clone();
            g.set_attr("listen", &b);
        }
        _ => {}
    }
    if ty == "vnc"
        && let Some(sock) = g.attr("socket").map(str::to_string)
    {
        if let Some(fs) = g.child("listen")
            && fs.attr("type") == Some("socket")
            && let Some(s2) = fs.attr("socket")
            && s2 != sock
        {
            return Err(XmlError::invalid(
                format!("{path}/@socket"),
                format!(
                    "graphics 'socket' attribute '{sock}' must match 'socket' attribute of first listen element (found '{s2}')"
                ),
            ));
        }
        g.remove_children(|l| l.name() == "listen");
        g.remove_attr("listen");
        g.nodes_mut().insert(
            0,
            Node::Element(
                Element::new("listen")
                    .with_attr("type", "socket")
                    .with_attr("socket", &sock),
            ),
        );
    }
    let attr_listen = g.attr("listen").map(str::to_string);
    let has_listen = g.child("listen").is_some();
    if !has_listen
        && ty == "spice"
        && attr_listen.is_none()
        && g.attr("port").is_none()
        && g.attr("tlsPort").is_none()
        && g.attr("autoport") != Some("yes")
    {
        g.nodes_mut().insert(
            0,
            Node::Element(Element::new("listen").with_attr("type", "none")),
        );
    } else if !has_listen {
        let mut l = Element::new("listen").with_attr("type", "address");
        if let Some(a) = &attr_listen {
            l.set_attr("address", a);
        }
        g.nodes_mut().insert(0, Node::Element(l));
    }
    let first_type = g
        .child("listen")
        .and_then(|l| l.attr("type"))
        .unwrap_or("address")
        .to_string();
    if ty == "vnc" {
        if first_type == "address" || first_type == "network" {
            // any negative port means "pick one", as -1 does
            let port = g
                .attr("port")
                .and_then(|p| p.trim().parse::<i64>().ok())
                .map(|p| p.max(-1));
            let explicit_no = g.attr("autoport") == Some("no");
            let auto = g.attr("autoport") == Some("yes")
                || (!explicit_no && (port.is_none() || port == Some(-1)));
            if explicit_no && port.is_none_or(|p| p < 0) {
                g.remove_attr("port");
            } else if auto {
                let pos = g
                    .attrs()
                    .iter()
                    .position(|(k, _)| k == "type")
                    .map_or(0, |p| p + 1);
                g.insert_attr(pos, "port", "-1");
                g.insert_attr(pos + 1, "autoport", "yes");
                g.set_attr("port", "-1");
                g.set_attr("autoport", "yes");
            } else {
                g.set_attr("autoport", "no");
            }
        } else {
            g.remove_attr("port");
            g.remove_attr("autoport");
        }
    } else if ty == "spice"
        && g.attr("autoport") == Some("no")
        && g.attr("port").is_none()
        && g.attr("tlsPort").is_none()
    {
        g.remove_attr("autoport");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps() {
        assert_eq!(
            parse_bitmap("0-2,^1").map(|b| format_bitmap(&b)).as_deref(),
            Some("0,2")
        );
        assert_eq!(
            parse_bitmap("1-4,8-20,525")
                .map(|b| format_bitmap(&b))
                .as_deref(),
            Some("1-4,8-20,525")
        );
        assert!(parse_bitmap("a").is_none());
        assert!(parse_bitmap("5-1").is_none());
    }

    #[test]
    fn disk_indexes() {
        assert_eq!(disk_index("sda"), Some(0));
        assert_eq!(disk_index("vdz"), Some(25));
        assert_eq!(disk_index("sdaa"), Some(26));
        assert_eq!(disk_index("hdc"), Some(2));
        assert_eq!(disk_index("xvdb"), Some(1));
    }
}

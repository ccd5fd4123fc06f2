//! Driver-agnostic validation of domain definitions: the documented
//! constraints libvirt enforces when it parses a domain.  Every error names
//! the path of the offending element or attribute.

use crate::domrules::{any_path, parse_bitmap};
use crate::error::XmlError;
use crate::tables;
use crate::tree::Element;
use crate::util::{child_path, parse_uuid};

type R = Result<(), XmlError>;

fn inv(path: impl Into<String>, msg: impl Into<String>) -> XmlError {
    XmlError::invalid(path, msg)
}

fn num(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else {
        t.parse().ok()
    }
}

/// Runs every check on a parsed (not yet normalised) domain.
pub fn validate_domain(root: &Element) -> R {
    required(root, "domain", tables::DOMAIN_REQUIRED_ATTRS)?;
    enums(root, "domain", tables::DOMAIN_ENUMS)?;
    non_negative(root)?;
    boot(root)?;
    numa(root)?;
    numatune(root)?;
    sched_overlap(root)?;
    vcpus(root)?;
    misc(root)?;
    cpu_cache(root)?;
    seclabels(root)?;
    sysinfo(root)?;
    firmware(root)?;
    memory_devices(root)?;
    if let Some(devs) = root.child("devices") {
        device_addresses(devs)?;
        boot_loadparm(devs)?;
        mdevs(root, devs)?;
        disks(devs)?;
        hostdevs(devs)?;
        let os_type = root.child("os").and_then(|o| o.child("type"));
        let pseries = os_type
            .and_then(|t| t.attr("machine"))
            .is_some_and(|m| m.starts_with("pseries"))
            || os_type
                .and_then(|t| t.attr("arch"))
                .is_some_and(|a| a.starts_with("ppc64"));
        controllers(devs, pseries)?;
        videos(devs)?;
        addresses(root)?;
        chardev_reconnect(devs)?;
        usb_hubs(devs)?;
        inputs(root, devs)?;
    }
    Ok(())
}

/// Enumerated attribute values from the schema.
pub(crate) fn enums(root: &Element, root_name: &str, table: &[(&str, &str, &[&str])]) -> R {
    for (path, attr, allowed) in table {
        // cheap scan first: paths are only built for a violation
        if !any_path(root, path, &|e| {
            e.attr(attr).is_some_and(|v| !allowed.contains(&v))
        }) {
            continue;
        }
        let mut err = None;
        visit(root, root_name, path, &mut |e, p| {
            if err.is_none()
                && let Some(v) = e.attr(attr)
                && !allowed.contains(&v)
            {
                err = Some(inv(
                    format!("{p}/@{attr}"),
                    format!(
                        "invalid value '{v}' for attribute '{attr}' in element '{}'",
                        e.name()
                    ),
                ));
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
    }
    Ok(())
}

/// Attributes the schema requires.
pub(crate) fn required(root: &Element, root_name: &str, table: &[(&str, &str)]) -> R {
    for (path, attr) in table {
        if !any_path(root, path, &|e| e.attr(attr).is_none()) {
            continue;
        }
        let mut err = None;
        visit(root, root_name, path, &mut |e, p| {
            if err.is_none() && e.attr(attr).is_none() {
                err = Some(XmlError::missing_attr(format!("{p}/@{attr}")));
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
    }
    Ok(())
}

/// Visits elements at a relative path, passing their full path (with indexes).
pub(crate) fn visit(e: &Element, base: &str, path: &str, f: &mut dyn FnMut(&Element, &str)) {
    let (head, rest) = match path.split_once('/') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    for (k, c) in e.children_named(head).enumerate() {
        let p = child_path(base, e, head, k);
        match rest {
            None => f(c, &p),
            Some(r) => visit(c, &p, r, f),
        }
    }
}

fn non_negative(root: &Element) -> R {
    for (path, attr) in tables::NON_NEGATIVE_ATTRS {
        if !any_path(root, path, &|e| {
            e.attr(attr).is_some_and(|v| num(v).is_none_or(|n| n < 0))
        }) {
            continue;
        }
        let mut err = None;
        visit(root, "domain", path, &mut |e, p| {
            if err.is_none()
                && let Some(v) = e.attr(attr)
                && num(v).is_none_or(|n| n < 0)
            {
                err = Some(inv(
                    format!("{p}/@{attr}"),
                    format!(
                        "invalid value '{v}' for attribute '{attr}': expected a non-negative integer"
                    ),
                ));
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
    }
    Ok(())
}

fn has_device_boot(devs: Option<&Element>) -> bool {
    devs.is_some_and(|d| d.elements().any(|dev| dev.child("boot").is_some()))
}

fn boot(root: &Element) -> R {
    let Some(os) = root.child("os") else {
        return Ok(());
    };
    if os.child("boot").is_some() && has_device_boot(root.child("devices")) {
        return Err(inv(
            "domain/os/boot",
            "per-device boot elements cannot be used together with os/boot elements",
        ));
    }
    if let Some(bm) = os.child("bootmenu")
        && bm.attr("enable") != Some("no")
        && let Some(t) = bm.attr("timeout")
        && num(t).is_none_or(|v| !(0..=65535).contains(&v))
    {
        return Err(inv(
            "domain/os/bootmenu/@timeout",
            "invalid value for boot menu timeout, must be in range [0,65535]",
        ));
    }
    Ok(())
}

fn cells(root: &Element) -> Vec<&Element> {
    root.child("cpu")
        .and_then(|c| c.child("numa"))
        .map(|n| n.children_named("cell").collect())
        .unwrap_or_default()
}

fn numa(root: &Element) -> R {
    let cells = cells(root);
    if cells.is_empty() {
        return Ok(());
    }
    let n = cells.len() as i64;
    let mut seen = vec![false; cells.len()];
    for (k, c) in cells.iter().enumerate() {
        let id = match c.attr("id") {
            Some(v) => num(v),
            None => Some(k as i64),
        };
        match id {
            Some(i) if (0..n).contains(&i) && !seen[i as usize] => seen[i as usize] = true,
            _ => {
                return Err(inv(
                    format!("domain/cpu/numa/cell[{}]/@id", k + 1),
                    "exactly one 'cell' element per guest NUMA cell allowed, non-contiguous ranges or ranges not starting from 0 are not allowed",
                ));
            }
        }
    }
    for (k, c) in cells.iter().enumerate() {
        if let Some(d) = c.child("distances") {
            for s in d.children_named("sibling") {
                if let Some(id) = s.attr("id")
                    && num(id).is_none_or(|i| !(0..n).contains(&i))
                {
                    return Err(inv(
                        format!("domain/cpu/numa/cell[{}]/distances/sibling/@id", k + 1),
                        format!("'sibling_id {id}' does not refer to a valid cell"),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn numatune(root: &Element) -> R {
    let ncells = cells(root).len();
    let nodes = ncells.max(1) as u32;
    if let Some(hp) = root
        .child("memoryBacking")
        .and_then(|m| m.child("hugepages"))
    {
        for p in hp.children_named("page") {
            if let Some(ns) = p.attr("nodeset") {
                let bits = parse_bitmap(ns).ok_or_else(|| {
                    inv(
                        "domain/memoryBacking/hugepages/page/@nodeset",
                        format!("invalid bitmap '{ns}'"),
                    )
                })?;
                if let Some(b) = bits.iter().find(|b| **b >= nodes) {
                    return Err(inv(
                        "domain/memoryBacking/hugepages/page/@nodeset",
                        format!("hugepages: node {b} not found"),
                    ));
                }
            }
        }
    }
    let Some(nt) = root.child("numatune") else {
        return Ok(());
    };
    let mem = nt.child("memory");
    if let Some(m) = mem {
        if let Some(ns) = m.attr("nodeset") {
            match parse_bitmap(ns) {
                Some(b) if !b.is_empty() => {}
                _ => {
                    return Err(inv(
                        "domain/numatune/memory/@nodeset",
                        format!("invalid value of 'nodeset': {ns}"),
                    ));
                }
            }
        }
        if m.attr("placement") == Some("static") && m.attr("nodeset").is_none() {
            return Err(inv(
                "domain/numatune/memory/@nodeset",
                "nodeset for NUMA memory tuning must be set if 'placement' is 'static'",
            ));
        }
    }
    let memnodes: Vec<&Element> = nt.children_named("memnode").collect();
    if !memnodes.is_empty() {
        if ncells == 0 {
            return Err(inv(
                "domain/numatune/memnode",
                "element 'memnode' is invalid without any guest NUMA cells",
            ));
        }
        if mem.and_then(|m| m.attr("placement")) == Some("auto") {
            return Err(inv(
                "domain/numatune/memnode",
                "per-node binding is not compatible with automatic NUMA placement",
            ));
        }
        let mem_restrictive = mem.and_then(|m| m.attr("mode")) == Some("restrictive");
        for (k, mn) in memnodes.iter().enumerate() {
            let p = child_path("domain/numatune", nt, "memnode", k);
            let restrictive = mn.attr("mode") == Some("restrictive");
            if mem_restrictive && !restrictive {
                return Err(inv(
                    format!("{p}/@mode"),
                    "'restrictive' mode is required in memnode element when mode is 'restrictive' in memory element",
                ));
            }
            if restrictive && mem.is_some() && !mem_restrictive {
                return Err(inv(
                    format!("{p}/@mode"),
                    "'restrictive' mode is required in memory element when mode is 'restrictive' in memnode element",
                ));
            }
            if let Some(c) = mn.attr("cellid")
                && num(c).is_none_or(|c| c < 0 || c as usize >= ncells)
            {
                return Err(inv(
                    format!("{p}/@cellid"),
                    format!("cell id {c} does not exist"),
                ));
            }
        }
    }
    Ok(())
}

fn sched_overlap(root: &Element) -> R {
    let Some(ct) = root.child("cputune") else {
        return Ok(());
    };
    for (name, attr) in [("vcpusched", "vcpus"), ("iothreadsched", "iothreads")] {
        let mut seen: Vec<u32> = Vec::new();
        for (k, s) in ct.children_named(name).enumerate() {
            let p = child_path("domain/cputune", ct, name, k);
            let Some(v) = s.attr(attr) else {
                return Err(XmlError::missing_attr(format!("{p}/@{attr}")));
            };
            let bits = parse_bitmap(v)
                .ok_or_else(|| inv(format!("{p}/@{attr}"), format!("invalid bitmap '{v}'")))?;
            if bits.iter().any(|b| seen.contains(b)) {
                return Err(inv(
                    format!("{p}/@{attr}"),
                    format!("'{name}' attributes '{attr}' must not overlap"),
                ));
            }
            seen.extend(bits);
        }
    }
    Ok(())
}

fn vcpus(root: &Element) -> R {
    let Some(vs) = root.child("vcpus") else {
        return Ok(());
    };
    let max: i64 = root.child("vcpu").and_then(|v| num(&v.text())).unwrap_or(1);
    let mut ids: Vec<i64> = Vec::new();
    let mut orders: Vec<i64> = Vec::new();
    for (k, v) in vs.children_named("vcpu").enumerate() {
        let p = child_path("domain/vcpus", vs, "vcpu", k);
        let id = v
            .attr("id")
            .ok_or_else(|| XmlError::missing_attr(format!("{p}/@id")))?;
        let Some(id) = num(id).filter(|i| (0..max).contains(i)) else {
            return Err(inv(
                format!("{p}/@id"),
                format!("vcpu id '{id}' out of range"),
            ));
        };
        if ids.contains(&id) {
            return Err(inv(format!("{p}/@id"), format!("duplicate vcpu id '{id}'")));
        }
        ids.push(id);
        if let Some(o) = v.attr("order").and_then(num) {
            if orders.contains(&o) {
                return Err(inv(
                    format!("{p}/@order"),
                    format!("duplicate vcpu order '{o}'"),
                ));
            }
            orders.push(o);
        }
    }
    Ok(())
}

fn misc(root: &Element) -> R {
    if let Some(t) = root.child("title")
        && t.text().contains('\n')
    {
        return Err(inv("domain/title", "title can't contain newlines"));
    }
    for (name, allowed) in tables::LIFECYCLE_VALUES {
        if let Some(e) = root.child(name) {
            let v = e.text();
            if !allowed.contains(&v.trim()) {
                return Err(inv(
                    format!("domain/{name}"),
                    format!("invalid {name} value '{}'", v.trim()),
                ));
            }
        }
    }
    let max: i64 = root.child("vcpu").and_then(|v| num(&v.text())).unwrap_or(1);
    if let Some(ct) = root.child("cputune") {
        let mut seen: Vec<i64> = Vec::new();
        for (k, pin) in ct.children_named("vcpupin").enumerate() {
            let p = child_path("domain/cputune", ct, "vcpupin", k);
            let v = pin
                .attr("vcpu")
                .ok_or_else(|| XmlError::missing_attr(format!("{p}/@vcpu")))?;
            let Some(id) = num(v).filter(|i| (0..max).contains(i)) else {
                return Err(inv(
                    format!("{p}/@vcpu"),
                    format!("vcpupin vcpu '{v}' does not exist"),
                ));
            };
            if seen.contains(&id) {
                return Err(inv(
                    format!("{p}/@vcpu"),
                    format!("duplicate vcpupin for vcpu '{id}'"),
                ));
            }
            seen.push(id);
        }
    }
    if let Some(ids) = root.child("iothreadids") {
        let mut seen: Vec<i64> = Vec::new();
        for (k, t) in ids.children_named("iothread").enumerate() {
            let p = child_path("domain/iothreadids", ids, "iothread", k);
            let v = t
                .attr("id")
                .ok_or_else(|| XmlError::missing_attr(format!("{p}/@id")))?;
            let Some(id) = num(v).filter(|i| *i > 0) else {
                return Err(inv(
                    format!("{p}/@id"),
                    format!("invalid iothread id '{v}'"),
                ));
            };
            if seen.contains(&id) {
                return Err(inv(
                    format!("{p}/@id"),
                    format!("duplicate iothread id '{id}'"),
                ));
            }
            seen.push(id);
        }
    }
    if let Some(devs) = root.child("devices") {
        let mut orders: Vec<i64> = Vec::new();
        let mut err = None;
        walk(devs, "domain/devices", &mut |e, p| {
            if err.is_some() || e.name() != "boot" {
                return;
            }
            if let Some(o) = e.attr("order") {
                match num(o).filter(|n| *n > 0) {
                    None => {
                        err = Some(inv(
                            format!("{}/@order", p()),
                            format!("invalid boot order '{o}'"),
                        ))
                    }
                    Some(n) if orders.contains(&n) => {
                        err = Some(inv(
                            format!("{}/@order", p()),
                            format!("boot order '{n}' used for more than one device"),
                        ))
                    }
                    Some(n) => orders.push(n),
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
    }
    Ok(())
}

fn cpu_cache(root: &Element) -> R {
    let Some(cpu) = root.child("cpu") else {
        return Ok(());
    };
    let mode = cpu.attr("mode").unwrap_or("custom");
    if let Some(c) = cpu.child("cache") {
        match c.attr("mode") {
            Some("emulate") if c.attr("level") != Some("3") => {
                return Err(inv(
                    "domain/cpu/cache/@level",
                    "CPU cache mode 'emulate' can only be used with level='3'",
                ));
            }
            Some("passthrough") => {
                if c.attr("level").is_some() {
                    return Err(inv(
                        "domain/cpu/cache/@level",
                        "unsupported CPU cache level for mode 'passthrough'",
                    ));
                }
                if mode != "host-passthrough" && mode != "maximum" {
                    return Err(inv(
                        "domain/cpu/cache/@mode",
                        "CPU cache mode 'passthrough' can only be used with 'host-passthrough' / 'maximum' CPUs",
                    ));
                }
            }
            _ => {}
        }
    }
    if let Some(m) = cpu.child("maxphysaddr")
        && m.attr("mode") == Some("passthrough")
        && m.attr("bits").is_some()
    {
        return Err(inv(
            "domain/cpu/maxphysaddr/@bits",
            "CPU maximum physical address bits number specification cannot be used with mode='passthrough'",
        ));
    }
    Ok(())
}

fn seclabels(root: &Element) -> R {
    let labels: Vec<&Element> = root.children_named("seclabel").collect();
    if labels.len() > 1 {
        for (k, l) in labels.iter().enumerate() {
            if l.attr("model").is_none() {
                return Err(XmlError::invalid(
                    format!("domain/seclabel[{}]/@model", k + 1),
                    "missing security model when using multiple labels",
                ));
            }
        }
    }
    let mut err = None;
    walk(root, "domain", &mut |e, p| {
        if err.is_some() || e.name() != "source" {
            return;
        }
        let p = p();
        let sl: Vec<&Element> = e.children_named("seclabel").collect();
        let mut models: Vec<&str> = Vec::new();
        for l in &sl {
            if l.attr("relabel") == Some("yes")
                && l.child("label").is_none()
                && l.attr("model") != Some("dac")
            {
                err = Some(inv(
                    format!("{p}/seclabel/@relabel"),
                    "cannot specify relabel if label is missing",
                ));
            }
            match l.attr("model") {
                Some(m) if models.contains(&m) => {
                    err = Some(inv(
                        format!("{p}/seclabel"),
                        format!("duplicate seclabel for model '{m}'"),
                    ));
                }
                Some(m) => models.push(m),
                None if sl.len() > 1 => {
                    err = Some(inv(
                        format!("{p}/seclabel/@model"),
                        "missing security model when using multiple labels",
                    ))
                }
                None => {}
            }
        }
    });
    err.map_or(Ok(()), Err)
}

/// Walks every element; the callback gets a function rendering the
/// element's path, so paths are only built when an error is reported.
fn walk(e: &Element, path: &str, f: &mut dyn FnMut(&Element, &dyn Fn() -> String)) {
    let mut stack: Vec<(&str, usize, bool)> = Vec::new();
    walk_rec(e, path, &mut stack, f);
}

fn walk_rec<'a>(
    e: &'a Element,
    base: &str,
    stack: &mut Vec<(&'a str, usize, bool)>,
    f: &mut dyn FnMut(&Element, &dyn Fn() -> String),
) {
    {
        let st: &Vec<(&str, usize, bool)> = stack;
        let render = || {
            let mut p = base.to_string();
            for (n, k, multi) in st {
                p.push('/');
                p.push_str(n);
                if *multi {
                    p.push_str(&format!("[{}]", k + 1));
                }
            }
            p
        };
        f(e, &render);
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for c in e.elements() {
        match counts.iter_mut().find(|(n, _)| *n == c.name()) {
            Some(x) => x.1 += 1,
            None => counts.push((c.name(), 1)),
        }
    }
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for c in e.elements() {
        let k = match seen.iter_mut().find(|(n, _)| *n == c.name()) {
            Some(x) => {
                x.1 += 1;
                x.1
            }
            None => {
                seen.push((c.name(), 0));
                0
            }
        };
        let multi = counts
            .iter()
            .find(|(n, _)| *n == c.name())
            .is_some_and(|x| x.1 > 1);
        stack.push((c.name(), k, multi));
        walk_rec(c, base, stack, f);
        stack.pop();
    }
}

fn sysinfo(root: &Element) -> R {
    for (k, si) in root.children_named("sysinfo").enumerate() {
        if si.attr("type") != Some("smbios") {
            continue;
        }
        let p = child_path("domain", root, "sysinfo", k);
        if let Some(bios) = si.child("bios") {
            for e in bios
                .children_named("entry")
                .filter(|e| e.attr("name") == Some("date"))
            {
                let t = e.text();
                if !smbios_date_ok(t.trim()) {
                    return Err(inv(
                        format!("{p}/bios/entry"),
                        format!("invalid BIOS 'date' format: '{}'", t.trim()),
                    ));
                }
            }
        }
        if let Some(sys) = si.child("system")
            && let Some(dom_uuid) = root.child("uuid").and_then(|u| parse_uuid(&u.text()))
        {
            for e in sys
                .children_named("entry")
                .filter(|e| e.attr("name") == Some("uuid"))
            {
                if parse_uuid(&e.text()) != Some(dom_uuid) {
                    return Err(inv(
                        format!("{p}/system/entry"),
                        "UUID mismatch between <uuid> and <sysinfo>",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `mm/dd/yy` or `mm/dd/yyyy`, as the SMBIOS spec wants.
fn smbios_date_ok(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() != 3
        || !parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    let (m, d, y) = (parts[0], parts[1], parts[2]);
    m.len() <= 2
        && d.len() <= 2
        && (y.len() == 2 || y.len() == 4)
        && m.parse::<u32>().is_ok_and(|v| (1..=12).contains(&v))
        && d.parse::<u32>().is_ok_and(|v| (1..=31).contains(&v))
}

fn firmware(root: &Element) -> R {
    let Some(os) = root.child("os") else {
        return Ok(());
    };
    let loader = os.child("loader");
    let nvram = os.child("nvram");
    let wants_nvram = nvram.is_some() || loader.and_then(|l| l.attr("stateless")) == Some("no");
    if let Some(l) = loader
        && l.attr("stateless") == Some("yes")
        && nvram.is_some()
    {
        return Err(inv(
            "domain/os/nvram",
            "NVRAM is not permitted when loader is stateless",
        ));
    }
    if wants_nvram {
        match os.attr("firmware") {
            Some("efi") => {}
            Some(_) => {
                return Err(inv(
                    "domain/os/@firmware",
                    "only EFI firmware permits NVRAM",
                ));
            }
            None => {
                if loader.is_some_and(|l| l.attr("type") != Some("pflash")) && nvram.is_none() {
                    return Err(inv(
                        "domain/os/loader/@type",
                        "only pflash loader type permits NVRAM",
                    ));
                }
            }
        }
    }
    if let (Some(a), Some(b)) = (
        loader.and_then(|l| l.attr("format")),
        nvram.and_then(|n| n.attr("format")),
    ) && a != b
    {
        return Err(inv(
            "domain/os/nvram/@format",
            format!("format mismatch: loader.format='{a}' nvram.format='{b}'"),
        ));
    }
    if let Some(fw) = os.child("firmware") {
        let feat = |n: &str| {
            fw.children_named("feature")
                .find(|f| f.attr("name") == Some(n))
                .and_then(|f| f.attr("enabled"))
        };
        if feat("enrolled-keys") == Some("yes") && feat("secure-boot") == Some("no") {
            return Err(inv(
                "domain/os/firmware/feature",
                "firmware feature 'enrolled-keys' cannot be enabled when firmware feature 'secure-boot' is disabled",
            ));
        }
    }
    Ok(())
}

fn memory_devices(root: &Element) -> R {
    let ncells = cells(root).len();
    // pSeries guests hotplug memory without NUMA cells
    let ppc = root
        .child("os")
        .and_then(|o| o.child("type"))
        .and_then(|t| t.attr("arch"))
        .is_some_and(|a| a.starts_with("ppc"));
    if root.child("maxMemory").is_some() && ncells == 0 && !ppc {
        return Err(inv(
            "domain/maxMemory",
            "at least one numa node has to be configured when enabling memory hotplug",
        ));
    }
    let Some(devs) = root.child("devices") else {
        return Ok(());
    };
    for (k, m) in devs.children_named("memory").enumerate() {
        if let Some(n) = m.child("target").and_then(|t| t.child("node"))
            && num(&n.text()).is_none_or(|v| v < 0 || v as usize >= ncells.max(1))
        {
            return Err(inv(
                format!(
                    "{}/target/node",
                    child_path("domain/devices", devs, "memory", k)
                ),
                format!(
                    "memory device target node '{}' does not exist",
                    n.text().trim()
                ),
            ));
        }
    }
    Ok(())
}

/// Address types each device (or disk bus) may use.
fn device_addresses(devs: &Element) -> R {
    for (k, d) in devs.children_named("disk").enumerate() {
        let Some(bus) = d.child("target").and_then(|t| t.attr("bus")) else {
            continue;
        };
        let Some(at) = d.child("address").and_then(|a| a.attr("type")) else {
            continue;
        };
        if let Some((_, allowed)) = tables::DISK_BUS_ADDRESS_TYPES
            .iter()
            .find(|(b, _)| *b == bus)
            && !allowed.contains(&at)
        {
            let dev = d.child("target").and_then(|t| t.attr("dev")).unwrap_or("");
            return Err(inv(
                format!(
                    "{}/address/@type",
                    child_path("domain/devices", devs, "disk", k)
                ),
                format!(
                    "invalid address type '{at}' for the disk '{dev}' with the bus type '{bus}'"
                ),
            ));
        }
    }
    for (k, v) in devs.children_named("video").enumerate() {
        if v.child("model").and_then(|m| m.attr("type")) == Some("ramfb")
            && v.child("address").is_some()
        {
            return Err(inv(
                format!("{}/address", child_path("domain/devices", devs, "video", k)),
                "address not supported for video type ramfb",
            ));
        }
    }
    // drive addresses are unique across disks and SCSI host devices
    let mut drives: Vec<(String, i64, i64, i64, i64)> = Vec::new();
    for name in ["disk", "hostdev"] {
        for (k, d) in devs.children_named(name).enumerate() {
            let Some(a) = d
                .child("address")
                .filter(|a| a.attr("type") == Some("drive"))
            else {
                continue;
            };
            let bus_kind = if name == "disk" {
                match d.child("target").and_then(|t| t.attr("bus")) {
                    Some("ide") => "ide",
                    Some("sata") => "sata",
                    Some("fdc") => "fdc",
                    _ => "scsi",
                }
            } else {
                "scsi"
            };
            let g = |n: &str| a.attr(n).and_then(num).unwrap_or(0);
            let key = (
                bus_kind.to_string(),
                g("controller"),
                g("bus"),
                g("target"),
                g("unit"),
            );
            if drives.contains(&key) {
                return Err(inv(
                    format!("{}/address", child_path("domain/devices", devs, name, k)),
                    format!(
                        "duplicate drive address controller='{}' bus='{}' target='{}' unit='{}'",
                        key.1, key.2, key.3, key.4
                    ),
                ));
            }
            drives.push(key);
        }
    }
    for (k, h) in devs.children_named("hostdev").enumerate() {
        if h.attr("type") != Some("mdev") {
            continue;
        }
        let model = h.attr("model").unwrap_or("");
        if let Some(at) = h.child("address").and_then(|a| a.attr("type"))
            && let Some((_, allowed)) = tables::MDEV_MODEL_ADDRESS_TYPES
                .iter()
                .find(|(m, _)| *m == model)
            && !allowed.contains(&at)
        {
            return Err(inv(
                format!(
                    "{}/address/@type",
                    child_path("domain/devices", devs, "hostdev", k)
                ),
                format!("unsupported address type '{at}' with mediated device model '{model}'"),
            ));
        }
    }
    for (k, i) in devs.children_named("interface").enumerate() {
        if i.child("portForward").is_some()
            && (i.attr("type") != Some("user")
                || i.child("backend").and_then(|b| b.attr("type")) != Some("passt"))
        {
            return Err(inv(
                format!(
                    "{}/portForward",
                    child_path("domain/devices", devs, "interface", k)
                ),
                "the <portForward> element can only be used with <interface type='user'> and its 'passt' backend",
            ));
        }
    }
    Ok(())
}

fn boot_loadparm(devs: &Element) -> R {
    for d in devs.elements() {
        if let Some(lp) = d.child("boot").and_then(|b| b.attr("loadparm")) {
            let ok = (1..=8).contains(&lp.chars().count())
                && lp
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == ' ');
            if !ok {
                return Err(inv(
                    format!("domain/devices/{}/boot/@loadparm", d.name()),
                    format!(
                        "invalid loadparm value '{lp}', expecting 1 to 8 characters of [a-zA-Z0-9.] and blanks"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn mdevs(root: &Element, devs: &Element) -> R {
    let mdevs: Vec<&Element> = devs
        .children_named("hostdev")
        .filter(|h| h.attr("type") == Some("mdev"))
        .collect();
    if mdevs.iter().any(|h| h.attr("display") == Some("on")) && devs.child("graphics").is_none() {
        return Err(inv(
            "domain/devices/hostdev/@display",
            "graphics device is needed for attribute value 'display=on' in <hostdev>",
        ));
    }
    if mdevs
        .iter()
        .filter(|h| h.attr("ramfb") == Some("on"))
        .count()
        > 1
    {
        return Err(inv(
            "domain/devices/hostdev/@ramfb",
            "only one vgpu device can have 'ramfb' enabled",
        ));
    }
    let _ = root;
    Ok(())
}

fn disks(devs: &Element) -> R {
    let mut targets: Vec<(String, String)> = Vec::new();
    for (k, d) in devs.children_named("disk").enumerate() {
        let p = child_path("domain/devices", devs, "disk", k);
        let t = d
            .child("target")
            .ok_or_else(|| XmlError::missing_element(format!("{p}/target")))?;
        let dev = t
            .attr("dev")
            .ok_or_else(|| XmlError::missing_attr(format!("{p}/target/@dev")))?;
        if let Some((_, other)) = targets.iter().find(|(t2, _)| t2 == dev) {
            return Err(inv(
                format!("{p}/target/@dev"),
                format!("target '{dev}' duplicated (also used by {other})"),
            ));
        }
        targets.push((dev.to_string(), p.clone()));
        if let Some(src) = d.child("source") {
            if d.child("auth").is_some() && src.child("auth").is_some() {
                return Err(inv(
                    format!("{p}/source/auth"),
                    "an <auth> definition already found for disk source",
                ));
            }
            if d.child("encryption").is_some() && src.child("encryption").is_some() {
                return Err(inv(
                    format!("{p}/source/encryption"),
                    "an <encryption> definition already found for disk source",
                ));
            }
        }
        if d.child("encryption")
            .or_else(|| d.child("source").and_then(|s| s.child("encryption")))
            .is_some_and(|e| e.child("cipher").is_some())
        {
            return Err(inv(
                format!("{p}/encryption/cipher"),
                "supplying <cipher> for domain disk definition is unnecessary",
            ));
        }
        let bus = t.attr("bus");
        if (d.child("vendor").is_some() || d.child("product").is_some())
            && bus.is_some_and(|b| b != "scsi")
        {
            return Err(inv(
                format!("{p}/vendor"),
                "only scsi disk supports vendor and product",
            ));
        }
    }
    Ok(())
}

fn hostdev_key(h: &Element) -> Option<String> {
    let src = h.child("source")?;
    let ty = h.attr("type").unwrap_or("");
    let a = src.child("address");
    let key = match ty {
        "pci" => {
            let a = a?;
            format!(
                "pci:{:?}:{:?}:{:?}:{:?}",
                a.attr("domain").and_then(num).unwrap_or(0),
                a.attr("bus").and_then(num),
                a.attr("slot").and_then(num),
                a.attr("function").and_then(num)
            )
        }
        "scsi" => {
            let a = a?;
            format!(
                "scsi:{}:{}:{:?}:{:?}:{:?}",
                src.child("adapter")
                    .and_then(|x| x.attr("name"))
                    .unwrap_or(""),
                src.attr("protocol").unwrap_or(""),
                a.attr("bus").and_then(num),
                a.attr("target").and_then(num),
                a.attr("unit").and_then(num)
            )
        }
        "mdev" => format!("mdev:{}", parse_uuid(a?.attr("uuid")?)?),
        _ => return None,
    };
    Some(key)
}

fn hostdevs(devs: &Element) -> R {
    let mut seen: Vec<String> = Vec::new();
    for (k, h) in devs.children_named("hostdev").enumerate() {
        let p = child_path("domain/devices", devs, "hostdev", k);
        let ty = h.attr("type").unwrap_or("");
        if ty == "mdev"
            && let Some(a) = h.child("source").and_then(|s| s.child("address"))
            && a.attr("uuid").is_none()
        {
            return Err(XmlError::missing_attr(format!("{p}/source/address/@uuid")));
        }
        for a in ["rawio", "sgio"] {
            if h.attr(a).is_some() && ty != "scsi" {
                return Err(inv(
                    format!("{p}/@{a}"),
                    format!("{a} is only supported for scsi host device"),
                ));
            }
        }
        if let Some(z) = h.child("address").and_then(|a| a.child("zpci")) {
            for a in ["uid", "fid"] {
                if let Some(v) = z.attr(a) {
                    let n = num(v);
                    let ok = match a {
                        "uid" => n.is_some_and(|n| (1..=0xffff).contains(&n)),
                        _ => n.is_some_and(|n| (0..=0xffff_ffff).contains(&n)),
                    };
                    if !ok {
                        return Err(inv(
                            format!("{p}/address/zpci/@{a}"),
                            format!("invalid PCI address {a}='{v}'"),
                        ));
                    }
                }
            }
        }
        if let Some(key) = hostdev_key(h) {
            if seen.contains(&key) {
                return Err(inv(p, "hostdev already exists in the domain configuration"));
            }
            seen.push(key);
        }
    }
    Ok(())
}

fn controllers(devs: &Element, multi_root: bool) -> R {
    let mut seen: Vec<(String, i64)> = Vec::new();
    for (k, c) in devs.children_named("controller").enumerate() {
        let p = child_path("domain/devices", devs, "controller", k);
        let ty = c.attr("type").unwrap_or("").to_string();
        let Some(idx) = c.attr("index") else { continue };
        let Some(i) = num(idx).filter(|i| *i >= 0) else {
            return Err(inv(
                format!("{p}/@index"),
                format!(
                    "invalid value '{idx}' for attribute 'index': expected a non-negative value"
                ),
            ));
        };
        // pSeries guests have one pci-root per PHB
        let root_model = match c.attr("model") {
            Some("pcie-root") => true,
            Some("pci-root") => !multi_root,
            _ => false,
        };
        if root_model && i != 0 {
            return Err(inv(
                format!("{p}/@index"),
                "pci-root and pcie-root controllers should have index 0",
            ));
        }
        if ty != "usb" {
            if seen.iter().any(|(t, n)| *t == ty && *n == i) {
                return Err(inv(
                    format!("{p}/@index"),
                    format!("multiple '{ty}' controllers with index '{i}'"),
                ));
            }
            seen.push((ty, i));
        }
    }
    Ok(())
}

fn videos(devs: &Element) -> R {
    let vids: Vec<&Element> = devs.children_named("video").collect();
    let models: Vec<Option<&Element>> = vids.iter().map(|v| v.child("model")).collect();
    if vids.len() > 1
        && models
            .iter()
            .any(|m| m.and_then(|m| m.attr("type")) == Some("none"))
    {
        return Err(inv(
            "domain/devices/video",
            "a 'none' video type must be the only video device defined for the domain",
        ));
    }
    if models
        .iter()
        .filter(|m| m.and_then(|m| m.attr("primary")) == Some("yes"))
        .count()
        > 1
    {
        return Err(inv(
            "domain/devices/video",
            "only one primary video device is supported",
        ));
    }
    Ok(())
}

fn addresses(root: &Element) -> R {
    let mut pci: Vec<(i64, i64, i64, i64)> = Vec::new();
    let mut usb: Vec<(String, String)> = Vec::new();
    let mut err = None;
    walk(root, "domain", &mut |e, pf| {
        if err.is_some() || e.name() != "address" {
            return;
        }
        let pci_source = false;
        let _ = pci_source;
        match e.attr("type") {
            Some("pci") => {
                for (a, max) in [
                    ("domain", 0xffff),
                    ("bus", 0xff),
                    ("slot", 0x1f),
                    ("function", 7),
                ] {
                    if let Some(v) = e.attr(a)
                        && num(v).is_none_or(|n| n < 0 || n > max)
                    {
                        err = Some(inv(
                            format!("{}/@{a}", pf()),
                            format!("invalid PCI address {a}='{v}', must be <= {max:#x}"),
                        ));
                        return;
                    }
                }
                // only device addresses (not host sources) must be unique
                if !pf().contains("/source/") && e.attr("slot").is_some() {
                    let k = (
                        e.attr("domain").and_then(num).unwrap_or(0),
                        e.attr("bus").and_then(num).unwrap_or(0),
                        e.attr("slot").and_then(num).unwrap_or(0),
                        e.attr("function").and_then(num).unwrap_or(0),
                    );
                    if pci.contains(&k) {
                        err = Some(inv(
                            pf(),
                            format!(
                                "attempted double use of PCI address {:04x}:{:02x}:{:02x}.{:x}",
                                k.0, k.1, k.2, k.3
                            ),
                        ));
                        return;
                    }
                    pci.push(k);
                }
            }
            Some("usb") if !pf().contains("/source/") => {
                if let (Some(b), Some(port)) = (e.attr("bus"), e.attr("port")) {
                    let k = (b.trim().to_string(), port.trim().to_string());
                    if usb.contains(&k) {
                        err = Some(inv(
                            pf(),
                            format!("duplicate USB address bus {} port {}", k.0, k.1),
                        ));
                        return;
                    }
                    usb.push(k);
                }
            }
            _ => {}
        }
    });
    err.map_or(Ok(()), Err)
}

/// A USB port below another (`1.2.3`) needs hubs at the ports above it.
fn usb_hubs(devs: &Element) -> R {
    let hubs: Vec<(String, String)> = devs
        .children_named("hub")
        .filter_map(|h| h.child("address"))
        .filter(|a| a.attr("type") == Some("usb"))
        .filter_map(|a| {
            Some((
                a.attr("bus").unwrap_or("0").trim().to_string(),
                a.attr("port")?.trim().to_string(),
            ))
        })
        .collect();
    let mut err = None;
    walk(devs, "domain/devices", &mut |e, p| {
        if err.is_some()
            || e.name() != "address"
            || e.attr("type") != Some("usb")
            || p().contains("/source")
        {
            return;
        }
        let bus = e.attr("bus").unwrap_or("0").trim().to_string();
        let Some(port) = e.attr("port").map(str::trim) else {
            return;
        };
        let parts: Vec<&str> = port.split('.').collect();
        for n in 1..parts.len() {
            let parent = parts[..n].join(".");
            if !hubs.iter().any(|(b, hp)| *b == bus && *hp == parent) {
                err = Some(inv(
                    p(),
                    format!(
                        "there is no hub at port {parent} in USB address bus: {bus} port: {port}"
                    ),
                ));
                return;
            }
        }
    });
    err.map_or(Ok(()), Err)
}

fn chardev_reconnect(devs: &Element) -> R {
    let mut err = None;
    walk(devs, "domain/devices", &mut |e, p| {
        if err.is_none()
            && e.name() == "reconnect"
            && e.attr("enabled") == Some("yes")
            && e.attr("timeout").and_then(num) == Some(0)
        {
            err = Some(inv(
                format!("{}/@timeout", p()),
                "chardev reconnect source timeout cannot be '0'",
            ));
        }
    });
    err.map_or(Ok(()), Err)
}

fn inputs(root: &Element, devs: &Element) -> R {
    let ps2_off = root
        .child("features")
        .and_then(|f| f.child("ps2"))
        .and_then(|p| p.attr("state"))
        == Some("off");
    if ps2_off {
        if devs
            .children_named("input")
            .any(|i| i.attr("bus") == Some("ps2"))
        {
            return Err(inv(
                "domain/devices/input/@bus",
                "ps2 bus inputs require the ps2 feature not to be disabled",
            ));
        }
        if root
            .child("features")
            .and_then(|f| f.child("vmport"))
            .and_then(|v| v.attr("state"))
            == Some("on")
        {
            return Err(inv(
                "domain/features/vmport",
                "vmport feature requires the ps2 feature not to be disabled",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(devices: &str) -> Element {
        Element::parse(&format!(
            "<domain type='kvm'><name>x</name><memory>1</memory><os><type>hvm</type></os><devices>{devices}</devices></domain>"
        ))
        .expect("parse")
    }

    #[test]
    fn disk_target_paths() {
        let d = dom(
            "<disk type='file'><target dev='sda'/></disk><disk type='file'><target bus='ide'/></disk>",
        );
        let e = validate_domain(&d).expect_err("missing dev");
        assert_eq!(
            e.to_string(),
            "domain/devices/disk[2]/target/@dev: missing required attribute"
        );
        let d = dom(
            "<disk type='file'><target dev='sda'/></disk><disk type='file'><target dev='sda'/></disk>",
        );
        assert_eq!(
            validate_domain(&d).expect_err("dup").path(),
            "domain/devices/disk[2]/target/@dev"
        );
    }

    #[test]
    fn pci_limits() {
        let d = dom(
            "<disk type='file'><target dev='vda'/><address type='pci' bus='0x100' slot='1'/></disk>",
        );
        assert!(validate_domain(&d).is_err());
    }

    #[test]
    fn smbios_dates() {
        assert!(smbios_date_ok("01/02/2020"));
        assert!(smbios_date_ok("1/2/20"));
        assert!(!smbios_date_ok("999/999/123"));
    }
}

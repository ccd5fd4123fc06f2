//! Domain XML → `.vmx`, following libvirt's rules for VMware (`domxml-to-native
//! vmware-vmx`, and what the ESX and VMware drivers write when a domain is defined).

use crate::context::Context;
use crate::error::VmxError;
use crate::vmx::{Vmx, escape};
use rvirt_xml::Element;
use std::collections::BTreeMap;

/// Converts domain XML text to `.vmx` text.
pub fn xml_to_vmx(xml: &str, ctx: &Context) -> Result<String, VmxError> {
    let dom = Element::parse(xml).map_err(|e| VmxError::Parse(e.to_string()))?;
    Ok(domain_to_vmx(&dom, ctx)?.to_text())
}

/// Maps a `<source>` through the context, the error naming the attribute at `path`.
fn file_name(ctx: &Context, path: String, src: &str) -> Result<String, VmxError> {
    (ctx.format_file_name)(src).map_err(|e| match e {
        VmxError::Xml { reason, .. } => VmxError::Xml { path, reason },
        other => other,
    })
}

/// A disk's place: bus, controller (IDE: bus), unit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Slot {
    Scsi(u32, u32),
    Ide(u32, u32),
    Sata(u32, u32),
    Fdc(u32),
}

/// libvirt's index of a disk name (`sda` 0, `sdz` 25, `sdaa` 26).
fn disk_index(dev: &str, prefix: &str) -> Option<u32> {
    let s = dev.strip_prefix(prefix)?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut idx: u32 = 0;
    for b in s.bytes() {
        idx = idx.checked_mul(26)?.checked_add(u32::from(b - b'a') + 1)?;
    }
    Some(idx - 1)
}

fn attr_u32(e: &Element, name: &str, path: &str) -> Result<Option<u32>, VmxError> {
    match e.attr(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            VmxError::xml(format!("{path}/@{name}"), format!("'{v}' is not a number"))
        }),
    }
}

/// Memory in KiB from a `<memory>`-like element with its unit.
fn kib(e: &Element, path: &str) -> Result<u64, VmxError> {
    let text = e.text();
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|_| VmxError::xml(path, format!("'{}' is not a number", text.trim())))?;
    let unit = e.attr("unit").unwrap_or("KiB");
    let mult: u64 = match unit {
        "b" | "bytes" => return Ok(n.div_ceil(1024)),
        "KB" => return Ok((n * 1000).div_ceil(1024)),
        "k" | "KiB" => 1,
        "MB" => return Ok((n * 1_000_000).div_ceil(1024)),
        "M" | "MiB" => 1024,
        "GB" => return Ok((n * 1_000_000_000).div_ceil(1024)),
        "G" | "GiB" => 1024 * 1024,
        "T" | "TiB" => 1024 * 1024 * 1024,
        other => {
            return Err(VmxError::xml(
                format!("{path}/@unit"),
                format!("unknown unit '{other}'"),
            ));
        }
    };
    Ok(n * mult)
}

fn parse_cpuset(s: &str, path: &str) -> Result<Vec<u32>, VmxError> {
    let mut out = std::collections::BTreeSet::new();
    let bad = || VmxError::xml(path, format!("'{s}' is not a CPU set"));
    for part in s.split(',') {
        let part = part.trim();
        if let Some(neg) = part.strip_prefix('^') {
            let n: u32 = neg.parse().map_err(|_| bad())?;
            out.remove(&n);
        } else if let Some((a, b)) = part.split_once('-') {
            let a: u32 = a.trim().parse().map_err(|_| bad())?;
            let b: u32 = b.trim().parse().map_err(|_| bad())?;
            if a > b {
                return Err(bad());
            }
            out.extend(a..=b);
        } else {
            out.insert(part.parse().map_err(|_| bad())?);
        }
    }
    Ok(out.into_iter().collect())
}

fn bytes_uuid(u: &str) -> Result<String, VmxError> {
    let id = uuid::Uuid::try_parse(u.trim())
        .map_err(|_| VmxError::xml("domain/uuid", format!("'{u}' is not a UUID")))?;
    let b = id.as_bytes();
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}", h[..8].join(" "), h[8..].join(" ")))
}

/// Converts a parsed domain (`<domain type='vmware'>`) to a `.vmx` file.
pub fn domain_to_vmx(dom: &Element, ctx: &Context) -> Result<Vmx, VmxError> {
    if dom.name() != "domain" {
        return Err(VmxError::xml(dom.name(), "expected a <domain> document"));
    }
    match dom.attr("type") {
        Some("vmware") => {}
        other => {
            return Err(VmxError::xml(
                "domain/@type",
                format!("'{}' is not 'vmware'", other.unwrap_or("")),
            ));
        }
    }
    let hw = ctx.virtual_hw_version;
    let mut v = Vmx::new();
    v.set(".encoding", "UTF-8");
    v.set("config.version", "8");
    v.set("virtualHW.version", &hw.to_string());

    let os = dom.child("os");
    let arch = os
        .and_then(|o| o.child("type"))
        .and_then(|t| t.attr("arch"));
    let guest = match arch {
        None | Some("i686") => "other",
        Some("x86_64") => "other-64",
        Some(a) => {
            return Err(VmxError::xml(
                "domain/os/type/@arch",
                format!("'{a}' is not supported by VMware (i686 or x86_64)"),
            ));
        }
    };
    v.set("guestOS", guest);
    if let Some(sm) = os.and_then(|o| o.child("smbios")) {
        match sm.attr("mode") {
            Some("host") => v.set("smbios.reflecthost", "true"),
            m => {
                return Err(VmxError::xml(
                    "domain/os/smbios/@mode",
                    format!("'{}' is not supported (only 'host')", m.unwrap_or("")),
                ));
            }
        }
    }
    if let Some(u) = dom.child("uuid") {
        v.set("uuid.bios", &bytes_uuid(&u.text())?);
    }
    let name = dom
        .child("name")
        .map(|n| n.text())
        .ok_or_else(|| VmxError::xml("domain/name", "missing"))?;
    v.set("displayName", &escape(&name));
    if let Some(d) = dom.child("description") {
        v.set("annotation", &escape(&d.text()));
    }

    // Memory, in MiB; memsize is a multiple of 4.
    let memory = dom
        .child("memory")
        .map(|m| kib(m, "domain/memory"))
        .transpose()?
        .ok_or_else(|| VmxError::xml("domain/memory", "missing"))?;
    let mem_mib = memory.div_ceil(1024).div_ceil(4) * 4;
    v.set("memsize", &mem_mib.to_string());
    if let Some(c) = dom.child("currentMemory") {
        let cur = kib(c, "domain/currentMemory")?;
        let cur_mib = cur.div_ceil(1024);
        if cur_mib < mem_mib {
            v.set("sched.mem.max", &cur_mib.to_string());
        }
    }
    if let Some(min) = dom.child("memtune").and_then(|m| m.child("min_guarantee")) {
        let k = kib(min, "domain/memtune/min_guarantee")?;
        if k > 0 {
            v.set("sched.mem.minsize", &k.div_ceil(1024).to_string());
        }
    }

    // vCPUs.
    let vcpu_el = dom.child("vcpu");
    let vcpus: u64 = match vcpu_el {
        None => 1,
        Some(e) => e.text().trim().parse().map_err(|_| {
            VmxError::xml(
                "domain/vcpu",
                format!("'{}' is not a number", e.text().trim()),
            )
        })?,
    };
    if vcpus == 0 || (vcpus != 1 && !vcpus.is_multiple_of(2)) {
        return Err(VmxError::xml(
            "domain/vcpu",
            format!("{vcpus} vCPUs: VMware needs 1 or an even number"),
        ));
    }
    if let Some(cur) = vcpu_el.and_then(|e| e.attr("current"))
        && cur.parse::<u64>().ok() != Some(vcpus)
    {
        return Err(VmxError::xml(
            "domain/vcpu/@current",
            format!("'{cur}': VMware has no offline vCPUs"),
        ));
    }
    v.set("numvcpus", &vcpus.to_string());
    if let Some(topo) = dom.child("cpu").and_then(|c| c.child("topology")) {
        let p = "domain/cpu/topology";
        let sockets = attr_u32(topo, "sockets", p)?.unwrap_or(1) as u64;
        let dies = attr_u32(topo, "dies", p)?.unwrap_or(1) as u64;
        let clusters = attr_u32(topo, "clusters", p)?.unwrap_or(1) as u64;
        let cores = attr_u32(topo, "cores", p)?.unwrap_or(1) as u64;
        let threads = attr_u32(topo, "threads", p)?.unwrap_or(1) as u64;
        if threads != 1 {
            return Err(VmxError::xml(
                format!("{p}/@threads"),
                format!("'{threads}': VMware supports only 1 thread per core"),
            ));
        }
        if dies != 1 || clusters != 1 {
            return Err(VmxError::xml(p, "VMware supports only 1 die and 1 cluster"));
        }
        if sockets * cores != vcpus {
            return Err(VmxError::xml(
                p,
                format!("{sockets} sockets x {cores} cores is not the {vcpus} vCPUs"),
            ));
        }
        v.set("cpuid.coresPerSocket", &cores.to_string());
    }
    if let Some(set) = vcpu_el.and_then(|e| e.attr("cpuset")) {
        let cpus = parse_cpuset(set, "domain/vcpu/@cpuset")?;
        if (cpus.len() as u64) < vcpus {
            return Err(VmxError::xml(
                "domain/vcpu/@cpuset",
                format!("'{set}' holds fewer CPUs than the {vcpus} vCPUs"),
            ));
        }
        let list: Vec<String> = cpus.iter().map(u32::to_string).collect();
        v.set("sched.cpu.affinity", &list.join(","));
    }
    if let Some(sh) = dom.child("cputune").and_then(|c| c.child("shares")) {
        let n: u64 = sh.text().trim().parse().map_err(|_| {
            VmxError::xml(
                "domain/cputune/shares",
                format!("'{}' is not a number", sh.text()),
            )
        })?;
        let text = if n == 500 * vcpus {
            "low".to_string()
        } else if n == 1000 * vcpus {
            "normal".to_string()
        } else if n == 2000 * vcpus {
            "high".to_string()
        } else {
            n.to_string()
        };
        v.set("sched.cpu.shares", &text);
    }

    let empty_devs = Element::new("devices");
    for (n, g) in dom
        .child("devices")
        .unwrap_or(&empty_devs)
        .children_named("graphics")
        .enumerate()
    {
        vnc(&mut v, g, n)?;
    }

    let empty = Element::new("devices");
    let devs = dom.child("devices").unwrap_or(&empty);
    disks(&mut v, devs, ctx)?;
    filesystems(&mut v, devs)?;
    let mut pci = devs.children_named("interface").next().is_some()
        || devs.children_named("video").next().is_some()
        || v.get("scsi0.present").is_some();
    for (n, i) in devs.children_named("interface").enumerate() {
        ethernet(&mut v, i, n)?;
    }
    for (n, s) in devs.children_named("serial").enumerate() {
        char_device(&mut v, s, "serial", n, ctx)?;
    }
    for (n, p) in devs.children_named("parallel").enumerate() {
        char_device(&mut v, p, "parallel", n, ctx)?;
    }
    let videos: Vec<&Element> = devs.children_named("video").collect();
    if videos.len() > 1 {
        return Err(VmxError::xml(
            "domain/devices/video[2]",
            "VMware supports one video device",
        ));
    }
    if let Some(model) = videos.first().and_then(|vd| vd.child("model")) {
        match model.attr("type") {
            Some("vmvga") | None => {}
            Some(t) => {
                return Err(VmxError::xml(
                    "domain/devices/video/model/@type",
                    format!("'{t}' is not supported (only 'vmvga')"),
                ));
            }
        }
        if let Some(vram) = attr_u32(model, "vram", "domain/devices/video/model")? {
            v.set("svga.vramSize", &(u64::from(vram) * 1024).to_string());
        }
    }
    pci &= hw >= 7;
    if pci {
        v.set("pciBridge0.present", "true");
        for n in 4..8 {
            v.set(&format!("pciBridge{n}.present"), "true");
            v.set(&format!("pciBridge{n}.virtualDev"), "pcieRootPort");
            v.set(&format!("pciBridge{n}.functions"), "8");
        }
    }
    if hw >= 7 {
        v.set("vmci0.present", "true");
    }
    if let Some(fw) = os.and_then(|o| o.attr("firmware")) {
        match fw {
            "efi" => v.set("firmware", "efi"),
            "bios" => {}
            other => {
                return Err(VmxError::xml(
                    "domain/os/@firmware",
                    format!("'{other}' is not supported (bios or efi)"),
                ));
            }
        }
    }
    Ok(v)
}

fn disks(v: &mut Vmx, devs: &Element, ctx: &Context) -> Result<(), VmxError> {
    // SCSI controller models from <controller> elements.
    let mut scsi_models: BTreeMap<u32, Option<String>> = BTreeMap::new();
    let mut declared: BTreeMap<u32, String> = BTreeMap::new();
    for (i, c) in devs.children_named("controller").enumerate() {
        if c.attr("type") == Some("scsi") {
            let p = format!("domain/devices/controller[{}]", i + 1);
            let idx = attr_u32(c, "index", &p)?.unwrap_or(0);
            if let Some(m) = c.attr("model") {
                declared.insert(idx, m.to_string());
            }
        }
    }
    let mut slots: BTreeMap<Slot, (usize, &Element)> = BTreeMap::new();
    for (i, d) in devs.children_named("disk").enumerate() {
        let p = format!("domain/devices/disk[{}]", i + 1);
        let target = d
            .child("target")
            .ok_or_else(|| VmxError::xml(format!("{p}/target"), "missing"))?;
        let dev = target
            .attr("dev")
            .ok_or_else(|| VmxError::xml(format!("{p}/target/@dev"), "missing"))?;
        let device = d.attr("device").unwrap_or("disk");
        let bus = target.attr("bus").unwrap_or(match device {
            "floppy" => "fdc",
            _ if dev.starts_with("hd") => "ide",
            _ => "scsi",
        });
        let bad_dev = || {
            VmxError::xml(
                format!("{p}/target/@dev"),
                format!("'{dev}' does not fit bus '{bus}'"),
            )
        };
        let addr = d
            .child("address")
            .filter(|a| a.attr("type") == Some("drive"));
        let slot = match bus {
            "scsi" => {
                let idx = disk_index(dev, "sd").ok_or_else(bad_dev)?;
                let (c, u) = match addr {
                    Some(a) => (
                        attr_u32(a, "controller", &format!("{p}/address"))?.unwrap_or(0),
                        attr_u32(a, "unit", &format!("{p}/address"))?.unwrap_or(0),
                    ),
                    None => {
                        let u = idx % 15;
                        (idx / 15, if u >= 7 { u + 1 } else { u })
                    }
                };
                if c > 3 || u > 15 || u == 7 {
                    return Err(VmxError::xml(
                        format!("{p}/target/@dev"),
                        format!(
                            "'{dev}' is outside VMware's SCSI slots (controller 0-3, unit 0-15 but 7)"
                        ),
                    ));
                }
                let model = d.child("driver").and_then(|dr| dr.attr("name"));
                let entry = scsi_models.entry(c).or_insert(None);
                if let Some(m) = model {
                    match entry {
                        Some(prev) if prev != m => {
                            return Err(VmxError::xml(
                                format!("{p}/driver/@name"),
                                format!(
                                    "'{m}' conflicts with SCSI controller {c}'s model '{prev}'"
                                ),
                            ));
                        }
                        _ => *entry = Some(m.to_string()),
                    }
                }
                Slot::Scsi(c, u)
            }
            "ide" => {
                let idx = disk_index(dev, "hd").ok_or_else(bad_dev)?;
                let (b, u) = match addr {
                    Some(a) => (
                        attr_u32(a, "bus", &format!("{p}/address"))?.unwrap_or(0),
                        attr_u32(a, "unit", &format!("{p}/address"))?.unwrap_or(0),
                    ),
                    None => (idx / 2, idx % 2),
                };
                if b > 1 || u > 1 {
                    return Err(VmxError::xml(
                        format!("{p}/target/@dev"),
                        format!("'{dev}' is outside IDE's 2 buses x 2 units"),
                    ));
                }
                Slot::Ide(b, u)
            }
            "sata" => {
                let idx = disk_index(dev, "sd").ok_or_else(bad_dev)?;
                let (c, u) = match addr {
                    Some(a) => (
                        attr_u32(a, "controller", &format!("{p}/address"))?.unwrap_or(0),
                        attr_u32(a, "unit", &format!("{p}/address"))?.unwrap_or(0),
                    ),
                    None => (idx / 30, idx % 30),
                };
                if c > 3 || u > 29 {
                    return Err(VmxError::xml(
                        format!("{p}/target/@dev"),
                        format!("'{dev}' is outside SATA's 4 controllers x 30 units"),
                    ));
                }
                Slot::Sata(c, u)
            }
            "fdc" => {
                let idx = disk_index(dev, "fd").ok_or_else(bad_dev)?;
                if idx > 1 {
                    return Err(VmxError::xml(
                        format!("{p}/target/@dev"),
                        format!("'{dev}': VMware has 2 floppy drives"),
                    ));
                }
                Slot::Fdc(idx)
            }
            other => {
                return Err(VmxError::xml(
                    format!("{p}/target/@bus"),
                    format!("'{other}' is not supported by VMware (scsi, ide, sata, fdc)"),
                ));
            }
        };
        if slots.insert(slot, (i, d)).is_some() {
            return Err(VmxError::xml(
                format!("{p}/target/@dev"),
                format!("'{dev}' is used twice"),
            ));
        }
    }
    for (c, m) in &declared {
        let e = scsi_models.entry(*c).or_insert(None);
        if e.is_none() {
            *e = Some(m.clone());
        }
    }
    // Controllers of the disks (and declared ones with a model).
    let used: Vec<u32> = slots
        .keys()
        .filter_map(|s| {
            if let Slot::Scsi(c, _) = s {
                Some(*c)
            } else {
                None
            }
        })
        .collect();
    for (c, model) in &scsi_models {
        if !used.contains(c) && !declared.contains_key(c) {
            continue;
        }
        v.set(&format!("scsi{c}.present"), "true");
        let model = model.clone().or_else(|| {
            let has_disk = slots.iter().any(|(s, (_, d))| {
                matches!(s, Slot::Scsi(cc, _) if cc == c)
                    && d.attr("device").unwrap_or("disk") == "disk"
            });
            if has_disk {
                ctx.default_scsi_model.clone()
            } else {
                None
            }
        });
        if let Some(m) = model {
            let vmx_model = match m.as_str() {
                "buslogic" => "buslogic",
                "lsilogic" => "lsilogic",
                "lsisas1068" => "lsisas1068",
                "vmpvscsi" => "pvscsi",
                other => {
                    return Err(VmxError::xml(
                        "domain/devices/controller[@type='scsi']/@model",
                        format!(
                            "'{other}' is not a VMware SCSI model (buslogic, lsilogic, lsisas1068, vmpvscsi)"
                        ),
                    ));
                }
            };
            v.set(&format!("scsi{c}.virtualDev"), vmx_model);
        }
    }
    let sata_used: std::collections::BTreeSet<u32> = slots
        .keys()
        .filter_map(|s| {
            if let Slot::Sata(c, _) = s {
                Some(*c)
            } else {
                None
            }
        })
        .collect();
    for c in &sata_used {
        v.set(&format!("sata{c}.present"), "true");
    }
    for (slot, (i, d)) in &slots {
        if matches!(slot, Slot::Fdc(_)) {
            continue;
        }
        let p = format!("domain/devices/disk[{}]", i + 1);
        let prefix = match slot {
            Slot::Scsi(c, u) => format!("scsi{c}:{u}"),
            Slot::Ide(b, u) => format!("ide{b}:{u}"),
            Slot::Sata(c, u) => format!("sata{c}:{u}"),
            Slot::Fdc(_) => unreachable!(),
        };
        let device = d.attr("device").unwrap_or("disk");
        let dtype = d.attr("type").unwrap_or("file");
        let source = d.child("source");
        v.set(&format!("{prefix}.present"), "true");
        match (device, dtype) {
            ("disk", "file") => {
                let kind = if matches!(slot, Slot::Scsi(..)) {
                    "scsi-hardDisk"
                } else {
                    "ata-hardDisk"
                };
                v.set(&format!("{prefix}.deviceType"), kind);
                let file = source.and_then(|s| s.attr("file")).ok_or_else(|| {
                    VmxError::xml(format!("{p}/source/@file"), "a hard disk needs a file")
                })?;
                if !file.to_ascii_lowercase().ends_with(".vmdk") {
                    return Err(VmxError::xml(
                        format!("{p}/source/@file"),
                        format!("'{file}' is not a VMDK image ('.vmdk')"),
                    ));
                }
                v.set(
                    &format!("{prefix}.fileName"),
                    &file_name(ctx, format!("{p}/source/@file"), file)?,
                );
            }
            ("cdrom", "file") => {
                v.set(&format!("{prefix}.deviceType"), "cdrom-image");
                match source.and_then(|s| s.attr("file")) {
                    Some(f) => v.set(
                        &format!("{prefix}.fileName"),
                        &file_name(ctx, format!("{p}/source/@file"), f)?,
                    ),
                    None => v.set(&format!("{prefix}.fileName"), "emptyBackingString"),
                }
            }
            ("cdrom", "block") | ("lun", "block") => {
                // A SCSI LUN that is one of an ESX host's devices is passed through.
                let host_device = source
                    .and_then(|s| s.attr("dev"))
                    .is_some_and(|d| d.starts_with("/vmfs/devices/"));
                let kind = match (device, slot) {
                    ("cdrom", _) => "atapi-cdrom",
                    (_, Slot::Scsi(..)) if host_device => "scsi-passthru",
                    _ => "cdrom-raw",
                };
                v.set(&format!("{prefix}.deviceType"), kind);
                match source.and_then(|s| s.attr("dev")) {
                    Some(dev) => v.set(&format!("{prefix}.fileName"), dev),
                    None => {
                        v.set(&format!("{prefix}.autodetect"), "true");
                        v.set(&format!("{prefix}.fileName"), "auto detect");
                    }
                }
            }
            (dev, t) => {
                return Err(VmxError::xml(
                    p,
                    format!("a {dev} disk of type '{t}' is not supported by VMware"),
                ));
            }
        }
        if let Some(cache) = d.child("driver").and_then(|dr| dr.attr("cache")) {
            match cache {
                "writethrough" => v.set(&format!("{prefix}.writeThrough"), "true"),
                "default" => {}
                other => {
                    return Err(VmxError::xml(
                        format!("{p}/driver/@cache"),
                        format!("'{other}' is not supported (default or writethrough)"),
                    ));
                }
            }
        }
        if d.child("transient").is_some() {
            v.set(&format!("{prefix}.mode"), "independent-nonpersistent");
        }
    }
    // Floppy drives that exist first, then the absent ones, as libvirt writes them.
    for u in 0..2u32 {
        match slots.get(&Slot::Fdc(u)) {
            None => {}
            Some((i, d)) => {
                let p = format!("domain/devices/disk[{}]", i + 1);
                v.set(&format!("floppy{u}.present"), "true");
                let source = d.child("source");
                match d.attr("type").unwrap_or("file") {
                    "file" => {
                        v.set(&format!("floppy{u}.fileType"), "file");
                        if let Some(f) = source.and_then(|s| s.attr("file")) {
                            v.set(
                                &format!("floppy{u}.fileName"),
                                &file_name(ctx, format!("{p}/source/@file"), f)?,
                            );
                        }
                    }
                    "block" => {
                        v.set(&format!("floppy{u}.fileType"), "device");
                        if let Some(dev) = source.and_then(|s| s.attr("dev")) {
                            v.set(&format!("floppy{u}.fileName"), dev);
                        }
                    }
                    t => {
                        return Err(VmxError::xml(
                            format!("{p}/@type"),
                            format!("a floppy of type '{t}' is not supported by VMware"),
                        ));
                    }
                }
            }
        }
    }
    for u in 0..2u32 {
        if !slots.contains_key(&Slot::Fdc(u)) {
            v.set(&format!("floppy{u}.present"), "false");
        }
    }
    Ok(())
}

/// `<graphics type='vnc'>` as VMware's built-in VNC server (`RemoteDisplay.vnc.*`).
fn vnc(v: &mut Vmx, g: &Element, n: usize) -> Result<(), VmxError> {
    let p = format!("domain/devices/graphics[{}]", n + 1);
    if n > 0 {
        return Err(VmxError::xml(p, "VMware supports one graphics device"));
    }
    match g.attr("type") {
        Some("vnc") => {}
        other => {
            return Err(VmxError::xml(
                format!("{p}/@type"),
                format!(
                    "'{}' is not supported by VMware (only 'vnc')",
                    other.unwrap_or("")
                ),
            ));
        }
    }
    v.set("RemoteDisplay.vnc.enabled", "true");
    let autoport = g.attr("autoport") == Some("yes");
    if !autoport
        && let Some(port) = g.attr("port")
        && port != "-1"
    {
        let n: u16 = port
            .parse()
            .map_err(|_| VmxError::xml(format!("{p}/@port"), format!("'{port}' is not a port")))?;
        v.set("RemoteDisplay.vnc.port", &n.to_string());
    }
    let listen = g.attr("listen").or_else(|| {
        g.children_named("listen")
            .find(|l| l.attr("type").unwrap_or("address") == "address")
            .and_then(|l| l.attr("address"))
    });
    if let Some(ip) = listen {
        v.set("RemoteDisplay.vnc.ip", ip);
    }
    if let Some(k) = g.attr("keymap") {
        v.set("RemoteDisplay.vnc.keymap", k);
    }
    if let Some(pw) = g.attr("passwd") {
        v.set("RemoteDisplay.vnc.password", pw);
    }
    Ok(())
}

fn filesystems(v: &mut Vmx, devs: &Element) -> Result<(), VmxError> {
    let list: Vec<&Element> = devs.children_named("filesystem").collect();
    if list.is_empty() {
        return Ok(());
    }
    v.set("isolation.tools.hgfs.disable", "false");
    v.set("sharedFolder.maxNum", &list.len().to_string());
    for (n, fs) in list.iter().enumerate() {
        let p = format!("domain/devices/filesystem[{}]", n + 1);
        if fs.attr("type").unwrap_or("mount") != "mount" {
            return Err(VmxError::xml(
                format!("{p}/@type"),
                "only 'mount' is supported by VMware",
            ));
        }
        let src = fs
            .child("source")
            .and_then(|s| s.attr("dir"))
            .ok_or_else(|| VmxError::xml(format!("{p}/source/@dir"), "missing"))?;
        let tgt = fs
            .child("target")
            .and_then(|s| s.attr("dir"))
            .ok_or_else(|| VmxError::xml(format!("{p}/target/@dir"), "missing"))?;
        let k = format!("sharedFolder{n}");
        v.set(&format!("{k}.present"), "true");
        v.set(&format!("{k}.enabled"), "true");
        v.set(&format!("{k}.readAccess"), "true");
        v.set(
            &format!("{k}.writeAccess"),
            if fs.child("readonly").is_some() {
                "false"
            } else {
                "true"
            },
        );
        v.set(&format!("{k}.hostPath"), src);
        v.set(&format!("{k}.guestName"), tgt);
    }
    Ok(())
}

fn ethernet(v: &mut Vmx, i: &Element, n: usize) -> Result<(), VmxError> {
    let p = format!("domain/devices/interface[{}]", n + 1);
    let k = |s: &str| format!("ethernet{n}.{s}");
    if n > 9 {
        return Err(VmxError::xml(p, "VMware supports 10 interfaces"));
    }
    v.set(&k("present"), "true");
    if let Some(model) = i.child("model").and_then(|m| m.attr("type")) {
        match model {
            "vlance" | "vmxnet" | "vmxnet3" | "e1000" | "e1000e" => v.set(&k("virtualDev"), model),
            "vmxnet2" => {
                v.set(&k("virtualDev"), "vmxnet");
                v.set(&k("features"), "15");
            }
            other => {
                return Err(VmxError::xml(
                    format!("{p}/model/@type"),
                    format!(
                        "'{other}' is not a VMware NIC (vlance, vmxnet, vmxnet2, vmxnet3, e1000, e1000e)"
                    ),
                ));
            }
        }
    }
    let src = i.child("source");
    match i.attr("type").unwrap_or("") {
        "bridge" => {
            let br = src
                .and_then(|s| s.attr("bridge"))
                .ok_or_else(|| VmxError::xml(format!("{p}/source/@bridge"), "missing"))?;
            v.set(&k("networkName"), br);
            match i.child("target").and_then(|t| t.attr("dev")) {
                Some(dev) => {
                    v.set(&k("connectionType"), "custom");
                    v.set(&k("vnet"), dev);
                }
                None => v.set(&k("connectionType"), "bridged"),
            }
        }
        "user" => v.set(&k("connectionType"), "nat"),
        "null" => {}
        "vds" => {
            let s = src.ok_or_else(|| VmxError::xml(format!("{p}/source"), "missing"))?;
            let sw = s
                .attr("switchid")
                .ok_or_else(|| VmxError::xml(format!("{p}/source/@switchid"), "missing"))?;
            let u = uuid::Uuid::try_parse(sw).map_err(|_| {
                VmxError::xml(
                    format!("{p}/source/@switchid"),
                    format!("'{sw}' is not a UUID"),
                )
            })?;
            let h: Vec<String> = u.as_bytes().iter().map(|x| format!("{x:02x}")).collect();
            v.set(
                &k("dvs.switchId"),
                &format!("{}-{}", h[..8].join(" "), h[8..].join(" ")),
            );
            for (attr, key) in [
                ("portid", "dvs.portId"),
                ("portgroupid", "dvs.portgroupId"),
                ("connectionid", "dvs.connectionId"),
            ] {
                if let Some(val) = s.attr(attr) {
                    v.set(&k(key), val);
                }
            }
        }
        other => {
            return Err(VmxError::xml(
                format!("{p}/@type"),
                format!("'{other}' is not supported by VMware (bridge, user, null, vds)"),
            ));
        }
    }
    let mac_el = i.child("mac");
    if let Some(m) = mac_el {
        let addr = m
            .attr("address")
            .ok_or_else(|| VmxError::xml(format!("{p}/mac/@address"), "missing"))?
            .to_ascii_lowercase();
        let bytes: Vec<u8> = addr
            .split(':')
            .map(|b| u8::from_str_radix(b, 16))
            .collect::<Result<_, _>>()
            .ok()
            .filter(|b: &Vec<u8>| b.len() == 6)
            .ok_or_else(|| {
                VmxError::xml(
                    format!("{p}/mac/@address"),
                    format!("'{addr}' is not a MAC address"),
                )
            })?;
        let vmware_oui = bytes[..3] == [0x00, 0x50, 0x56];
        let vpx = vmware_oui && (0x80..=0xbf).contains(&bytes[3]);
        let static_range = vmware_oui && bytes[3] <= 0x3f;
        let generated_oui = bytes[..3] == [0x00, 0x0c, 0x29];
        let mut check = m.attr("check").map(|c| c == "yes");
        match m.attr("type") {
            Some("generated") => {
                if vpx {
                    v.set(&k("addressType"), "vpx");
                    v.set(&k("generatedAddress"), &addr);
                } else {
                    v.set(&k("addressType"), "generated");
                    v.set(&k("generatedAddress"), &addr);
                    v.set(&k("generatedAddressOffset"), "0");
                }
            }
            Some("static") => {
                v.set(&k("addressType"), "static");
                v.set(&k("address"), &addr);
            }
            None => {
                if generated_oui {
                    v.set(&k("addressType"), "generated");
                    v.set(&k("generatedAddress"), &addr);
                    v.set(&k("generatedAddressOffset"), "0");
                } else if vpx {
                    v.set(&k("addressType"), "vpx");
                    v.set(&k("generatedAddress"), &addr);
                } else {
                    v.set(&k("addressType"), "static");
                    v.set(&k("address"), &addr);
                    if !static_range && check.is_none() {
                        check = Some(false);
                    }
                }
            }
            Some(t) => {
                return Err(VmxError::xml(
                    format!("{p}/mac/@type"),
                    format!("'{t}' is not 'generated' or 'static'"),
                ));
            }
        }
        if let Some(c) = check {
            v.set(&k("checkMACAddress"), if c { "true" } else { "false" });
        }
    } else {
        v.set(&k("addressType"), "generated");
    }
    Ok(())
}

fn char_device(
    v: &mut Vmx,
    e: &Element,
    kind: &str,
    n: usize,
    ctx: &Context,
) -> Result<(), VmxError> {
    let p = format!("domain/devices/{kind}[{}]", n + 1);
    let port = e
        .child("target")
        .map(|t| attr_u32(t, "port", &format!("{p}/target")))
        .transpose()?
        .flatten()
        .unwrap_or(n as u32);
    let max = if kind == "serial" { 3 } else { 2 };
    if port > max {
        return Err(VmxError::xml(
            format!("{p}/target/@port"),
            format!("'{port}': VMware has {kind} ports 0 to {max}"),
        ));
    }
    let k = |s: &str| format!("{kind}{port}.{s}");
    let src = e.child("source");
    let path = || {
        src.and_then(|s| s.attr("path"))
            .ok_or_else(|| VmxError::xml(format!("{p}/source/@path"), "missing"))
    };
    v.set(&k("present"), "true");
    match e.attr("type").unwrap_or("") {
        "dev" => {
            v.set(&k("fileType"), "device");
            v.set(&k("fileName"), path()?);
        }
        "file" => {
            v.set(&k("fileType"), "file");
            v.set(
                &k("fileName"),
                &file_name(ctx, format!("{p}/source/@path"), path()?)?,
            );
        }
        "pipe" if kind == "serial" => {
            v.set(&k("fileType"), "pipe");
            v.set(&k("pipe.endPoint"), "client");
            v.set(&k("tryNoRxLoss"), "false");
            v.set(&k("fileName"), path()?);
        }
        "tcp" if kind == "serial" => {
            let s = src.ok_or_else(|| VmxError::xml(format!("{p}/source"), "missing"))?;
            let host = s.attr("host").unwrap_or("");
            let service = s
                .attr("service")
                .ok_or_else(|| VmxError::xml(format!("{p}/source/@service"), "missing"))?;
            let proto = e
                .child("protocol")
                .and_then(|pr| pr.attr("type"))
                .unwrap_or("raw");
            let scheme = match proto {
                "raw" => "tcp",
                "telnet" => "telnet",
                "telnets" => "telnets",
                "tls" => "ssl",
                other => {
                    return Err(VmxError::xml(
                        format!("{p}/protocol/@type"),
                        format!("'{other}' is not supported (raw, telnet, telnets, tls)"),
                    ));
                }
            };
            let end = match s.attr("mode").unwrap_or("connect") {
                "bind" => "server",
                "connect" => "client",
                other => {
                    return Err(VmxError::xml(
                        format!("{p}/source/@mode"),
                        format!("'{other}' is not 'bind' or 'connect'"),
                    ));
                }
            };
            v.set(&k("fileType"), "network");
            v.set(&k("fileName"), &format!("{scheme}://{host}:{service}"));
            v.set(&k("network.endPoint"), end);
        }
        other => {
            return Err(VmxError::xml(
                format!("{p}/@type"),
                format!("a {kind} port of type '{other}' is not supported by VMware"),
            ));
        }
    }
    if kind == "serial" {
        v.set(&k("yieldOnMsrRead"), "true");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::to_xml::disk_name;

    #[test]
    fn indexes() {
        assert_eq!(disk_index("sda", "sd"), Some(0));
        assert_eq!(disk_index("sdp", "sd"), Some(15));
        assert_eq!(disk_index("sdaa", "sd"), Some(26));
        assert_eq!(disk_index("hdx1", "hd"), None);
        assert_eq!(disk_name("sd", disk_index("sdab", "sd").unwrap()), "sdab");
    }
}

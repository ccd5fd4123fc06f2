//! `.vmx` → domain XML, following libvirt's rules for VMware (`domxml-from-native
//! vmware-vmx`, and what the ESX and VMware drivers show as a VM's definition).

use crate::context::Context;
use crate::error::VmxError;
use crate::vmx::{Vmx, unescape};
use rvirt_xml::Element;
use std::collections::BTreeSet;

/// Converts a `.vmx` file to libvirt's domain XML text.
pub fn vmx_to_xml(vmx: &Vmx, ctx: &Context) -> Result<String, VmxError> {
    Ok(vmx_to_domain(vmx, ctx)?.to_xml_string())
}

/// Converts a `.vmx` file's text to libvirt's domain XML text.
pub fn vmx_text_to_xml(text: &str, ctx: &Context) -> Result<String, VmxError> {
    vmx_to_xml(&Vmx::parse(text)?, ctx)
}

fn el(name: &str) -> Element {
    Element::new(name)
}

fn text_el(name: &str, text: &str) -> Element {
    Element::new(name).with_text(text)
}

/// The domain as an element tree, in libvirt's element order.
pub fn vmx_to_domain(vmx: &Vmx, ctx: &Context) -> Result<Element, VmxError> {
    match vmx.get("config.version") {
        Some("8") => {}
        Some(v) => {
            return Err(VmxError::bad("config.version", v, "expected 8"));
        }
        None => {
            return Err(VmxError::Missing {
                key: "config.version".into(),
            });
        }
    }
    let hw = vmx
        .get_u64("virtualHW.version")?
        .ok_or_else(|| VmxError::Missing {
            key: "virtualHW.version".into(),
        })?;
    if hw < 4 {
        return Err(VmxError::bad(
            "virtualHW.version",
            &hw.to_string(),
            "expected 4 or later",
        ));
    }

    let mut dom = el("domain").with_attr("type", "vmware");
    if let Some(name) = vmx.get("displayName") {
        dom.push(text_el("name", &unescape(name)));
    }
    dom.push(text_el("uuid", &parse_uuid(vmx)?));
    if let Some(a) = vmx.get("annotation") {
        dom.push(text_el("description", &unescape(a)));
    }

    // Memory: memsize and sched.mem.max are MiB.
    let memsize = vmx.get_u64("memsize")?.unwrap_or(32);
    let memory = memsize * 1024;
    let mut current = memory;
    if let Some(max) = vmx.get_u64("sched.mem.max")?
        && max * 1024 < memory
    {
        current = max * 1024;
    }
    dom.push(text_el("memory", &memory.to_string()).with_attr("unit", "KiB"));
    dom.push(text_el("currentMemory", &current.to_string()).with_attr("unit", "KiB"));
    if let Some(min) = vmx.get_u64("sched.mem.minsize")?
        && min > 0
    {
        let mut tune = el("memtune");
        tune.push(text_el("min_guarantee", &(min * 1024).to_string()).with_attr("unit", "KiB"));
        dom.push(tune);
    }

    // vCPUs.
    let vcpus = vmx.get_u64("numvcpus")?.unwrap_or(1);
    if vcpus == 0 || (vcpus != 1 && !vcpus.is_multiple_of(2)) {
        return Err(VmxError::bad(
            "numvcpus",
            &vcpus.to_string(),
            "expected 1 or a multiple of 2",
        ));
    }
    let mut vcpu = el("vcpu").with_attr("placement", "static");
    if let Some(aff) = vmx.get("sched.cpu.affinity")
        && !aff.eq_ignore_ascii_case("all")
        && !aff.trim().is_empty()
    {
        let mut set = BTreeSet::new();
        for part in aff.split(',') {
            let n: u32 = part.trim().parse().map_err(|_| {
                VmxError::bad(
                    "sched.cpu.affinity",
                    aff,
                    "expected 'all' or a list of CPU numbers",
                )
            })?;
            set.insert(n);
        }
        if (set.len() as u64) < vcpus {
            return Err(VmxError::bad(
                "sched.cpu.affinity",
                aff,
                format!("names fewer CPUs than numvcpus ({vcpus})"),
            ));
        }
        vcpu.set_attr("cpuset", &format_cpuset(&set));
    }
    vcpu.set_text(&vcpus.to_string());
    dom.push(vcpu);

    if let Some(shares) = vmx.get("sched.cpu.shares") {
        let n = match shares.to_ascii_lowercase().as_str() {
            "low" => 500 * vcpus,
            "normal" => 1000 * vcpus,
            "high" => 2000 * vcpus,
            other => other.parse().map_err(|_| {
                VmxError::bad(
                    "sched.cpu.shares",
                    shares,
                    "expected 'low', 'normal', 'high' or a number",
                )
            })?,
        };
        let mut tune = el("cputune");
        tune.push(text_el("shares", &n.to_string()));
        dom.push(tune);
    }

    // OS.
    let mut os = el("os");
    if let Some(fw) = vmx.get("firmware") {
        match fw.to_ascii_lowercase().as_str() {
            "efi" => os.set_attr("firmware", "efi"),
            "bios" => {}
            _ => return Err(VmxError::bad("firmware", fw, "expected 'bios' or 'efi'")),
        }
    }
    let arch = match vmx.get("guestOS") {
        Some(g) if g.to_ascii_lowercase().ends_with("-64") => "x86_64",
        _ => "i686",
    };
    os.push(text_el("type", "hvm").with_attr("arch", arch));
    if vmx.get_bool("smbios.reflecthost")? == Some(true) {
        os.push(el("smbios").with_attr("mode", "host"));
    }
    dom.push(os);

    if let Some(cores) = vmx.get_u64("cpuid.coresPerSocket")? {
        if cores == 0 || !vcpus.is_multiple_of(cores) {
            return Err(VmxError::bad(
                "cpuid.coresPerSocket",
                &cores.to_string(),
                format!("does not divide numvcpus {vcpus}"),
            ));
        }
        let mut cpu = el("cpu");
        cpu.push(
            el("topology")
                .with_attr("sockets", &(vcpus / cores).to_string())
                .with_attr("dies", "1")
                .with_attr("clusters", "1")
                .with_attr("cores", &cores.to_string())
                .with_attr("threads", "1"),
        );
        dom.push(cpu);
    }

    dom.push(el("clock").with_attr("offset", "utc"));
    dom.push(text_el("on_poweroff", "destroy"));
    dom.push(text_el("on_reboot", "restart"));
    dom.push(text_el("on_crash", "destroy"));

    dom.push(devices(vmx, ctx)?);
    Ok(dom)
}

fn parse_uuid(vmx: &Vmx) -> Result<String, VmxError> {
    let Some(raw) = vmx.get("uuid.bios") else {
        return Ok("00000000-0000-0000-0000-000000000000".into());
    };
    let hex: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let u = uuid::Uuid::try_parse(&hex)
        .map_err(|_| VmxError::bad("uuid.bios", raw, "expected 16 hex bytes"))?;
    Ok(u.hyphenated().to_string())
}

/// libvirt's cpuset text: sorted, runs of three or more as ranges... libvirt writes any
/// run of two or more consecutive numbers as `a-b`.
pub(crate) fn format_cpuset(set: &BTreeSet<u32>) -> String {
    let v: Vec<u32> = set.iter().copied().collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if end == start {
            parts.push(start.to_string());
        } else {
            parts.push(format!("{start}-{end}"));
        }
        i += 1;
    }
    parts.join(",")
}

/// A disk bus as `.vmx` numbers them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bus {
    Scsi,
    Ide,
    Sata,
    Fdc,
}

/// libvirt's disk name for an index (`sda`, ..., `sdz`, `sdaa`).
pub(crate) fn disk_name(prefix: &str, mut idx: u32) -> String {
    let mut suffix = Vec::new();
    loop {
        suffix.push(b'a' + (idx % 26) as u8);
        if idx < 26 {
            break;
        }
        idx = idx / 26 - 1;
    }
    suffix.reverse();
    format!("{prefix}{}", String::from_utf8_lossy(&suffix))
}

struct Controllers(Vec<(u8, u32, Option<String>)>);

impl Controllers {
    fn add(&mut self, kind: u8, index: u32, model: Option<String>) {
        if let Some(c) = self.0.iter_mut().find(|c| c.0 == kind && c.1 == index) {
            if c.2.is_none() {
                c.2 = model;
            }
            return;
        }
        self.0.push((kind, index, model));
    }
}

/// Controller kinds in the order libvirt lists them after parsing a `.vmx`.
const CONTROLLER_TYPES: [&str; 4] = ["scsi", "fdc", "ide", "sata"];

fn devices(vmx: &Vmx, ctx: &Context) -> Result<Element, VmxError> {
    let mut devs = el("devices");
    let mut ctrls = Controllers(Vec::new());

    // SCSI controllers and their disks.
    let mut disks = Vec::new();
    for c in 0..4u32 {
        let prefix = format!("scsi{c}");
        if vmx.get_bool(&format!("{prefix}.present"))? != Some(true) {
            continue;
        }
        let model = match vmx.get(&format!("{prefix}.virtualDev")) {
            None => None,
            Some(m) => Some(
                match m.to_ascii_lowercase().as_str() {
                    "buslogic" => "buslogic",
                    "lsilogic" => "lsilogic",
                    "lsisas1068" => "lsisas1068",
                    "pvscsi" => "vmpvscsi",
                    _ => {
                        return Err(VmxError::bad(
                            &format!("{prefix}.virtualDev"),
                            m,
                            "expected 'buslogic', 'lsilogic', 'lsisas1068' or 'pvscsi'",
                        ));
                    }
                }
                .to_string(),
            ),
        };
        // A controller is listed only when a disk is on it.
        for u in 0..64u32 {
            if u == 7 {
                continue;
            }
            if let Some(d) = disk(vmx, ctx, Bus::Scsi, c, u)? {
                ctrls.add(0, c, model.clone());
                disks.push(d);
            }
        }
    }
    for b in 0..2u32 {
        for u in 0..2u32 {
            if let Some(d) = disk(vmx, ctx, Bus::Ide, b, u)? {
                ctrls.add(2, 0, None);
                disks.push(d);
            }
        }
    }
    for c in 0..4u32 {
        if vmx.get_bool(&format!("sata{c}.present"))? != Some(true) {
            continue;
        }
        for u in 0..30u32 {
            if let Some(d) = disk(vmx, ctx, Bus::Sata, c, u)? {
                ctrls.add(3, c, None);
                disks.push(d);
            }
        }
    }
    for u in 0..2u32 {
        if let Some(d) = disk(vmx, ctx, Bus::Fdc, 0, u)? {
            ctrls.add(1, 0, None);
            disks.push(d);
        }
    }
    for d in disks {
        devs.push(d);
    }
    let mut list = ctrls.0;
    list.sort_by_key(|c| (c.0, c.1));
    for (kind, index, model) in list {
        let mut c = el("controller")
            .with_attr("type", CONTROLLER_TYPES[kind as usize])
            .with_attr("index", &index.to_string());
        if let Some(m) = model {
            c.set_attr("model", &m);
        }
        devs.push(c);
    }

    // Shared folders.
    if vmx.get_bool("isolation.tools.hgfs.disable")? != Some(true) {
        let max = vmx.get_u64("sharedFolder.maxNum")?.unwrap_or(0);
        for n in 0..max {
            let p = format!("sharedFolder{n}");
            if vmx.get_bool(&format!("{p}.present"))? != Some(true)
                || vmx.get_bool(&format!("{p}.enabled"))? == Some(false)
            {
                continue;
            }
            let host = vmx
                .get(&format!("{p}.hostPath"))
                .ok_or_else(|| VmxError::Missing {
                    key: format!("{p}.hostPath"),
                })?;
            let guest = vmx
                .get(&format!("{p}.guestName"))
                .ok_or_else(|| VmxError::Missing {
                    key: format!("{p}.guestName"),
                })?;
            let mut fs = el("filesystem").with_attr("type", "mount");
            fs.push(el("source").with_attr("dir", host));
            fs.push(el("target").with_attr("dir", guest));
            if vmx.get_bool(&format!("{p}.writeAccess"))? != Some(true) {
                fs.push(el("readonly"));
            }
            devs.push(fs);
        }
    }

    for n in 0..10u32 {
        if let Some(i) = ethernet(vmx, n)? {
            devs.push(i);
        }
    }

    let mut first_serial = None;
    for n in 0..4u32 {
        if let Some(s) = char_device(vmx, ctx, "serial", n)? {
            if first_serial.is_none() {
                first_serial = Some(s.clone());
            }
            devs.push(s);
        }
    }
    for n in 0..3u32 {
        if let Some(p) = char_device(vmx, ctx, "parallel", n)? {
            devs.push(p);
        }
    }
    if let Some(mut con) = first_serial {
        con.set_name("console");
        if let Some(t) = con.child_mut("target") {
            t.insert_attr(0, "type", "serial");
            t.set_attr("port", "0");
        }
        devs.push(con);
    }

    if vmx.get_bool("RemoteDisplay.vnc.enabled")? == Some(true) {
        let mut g = el("graphics").with_attr("type", "vnc");
        match vmx.get_u64("RemoteDisplay.vnc.port")? {
            Some(port) => {
                g.set_attr("port", &port.to_string());
                g.set_attr("autoport", "no");
            }
            None => {
                g.set_attr("port", "-1");
                g.set_attr("autoport", "yes");
            }
        }
        let ip = vmx.get("RemoteDisplay.vnc.ip");
        if let Some(ip) = ip {
            g.set_attr("listen", ip);
        }
        if let Some(k) = vmx.get("RemoteDisplay.vnc.keymap") {
            g.set_attr("keymap", k);
        }
        if let Some(pw) = vmx.get("RemoteDisplay.vnc.password") {
            g.set_attr("passwd", pw);
        }
        if let Some(ip) = ip {
            g.push(
                el("listen")
                    .with_attr("type", "address")
                    .with_attr("address", ip),
            );
        }
        devs.push(g);
    }

    let vram = match vmx.get_u64("svga.vramSize")? {
        Some(bytes) => bytes / 1024,
        None => 4096,
    };
    let mut video = el("video");
    video.push(
        el("model")
            .with_attr("type", "vmvga")
            .with_attr("vram", &vram.to_string())
            .with_attr("primary", "yes"),
    );
    devs.push(video);
    Ok(devs)
}

fn disk(vmx: &Vmx, ctx: &Context, bus: Bus, c: u32, u: u32) -> Result<Option<Element>, VmxError> {
    let prefix = match bus {
        Bus::Scsi => format!("scsi{c}:{u}"),
        Bus::Ide => format!("ide{c}:{u}"),
        Bus::Sata => format!("sata{c}:{u}"),
        Bus::Fdc => format!("floppy{u}"),
    };
    let key = |k: &str| format!("{prefix}.{k}");
    if vmx.get_bool(&key("present"))? != Some(true) {
        return Ok(None);
    }
    if vmx.get_bool(&key("clientDevice"))? == Some(true) {
        return Ok(None);
    }
    let file_name = vmx.get(&key("fileName"));
    let dev_type = vmx.get(&key("deviceType")).map(str::to_ascii_lowercase);
    // (device, type, source kind)
    enum Src {
        File,
        Block,
    }
    let (device, src_kind) = if bus == Bus::Fdc {
        let ft = vmx.get(&key("fileType")).map(str::to_ascii_lowercase);
        match ft.as_deref() {
            Some("file") => ("floppy", Src::File),
            Some("device") | None => ("floppy", Src::Block),
            Some(other) => {
                return Err(VmxError::bad(
                    &key("fileType"),
                    other,
                    "expected 'file' or 'device'",
                ));
            }
        }
    } else {
        match dev_type.as_deref() {
            None | Some("scsi-harddisk") | Some("ata-harddisk") | Some("disk") => {
                ("disk", Src::File)
            }
            Some("cdrom-image") => ("cdrom", Src::File),
            Some("atapi-cdrom") => ("cdrom", Src::Block),
            Some("cdrom-raw") | Some("scsi-passthru") => ("lun", Src::Block),
            Some(other) => {
                return Err(VmxError::bad(
                    &key("deviceType"),
                    other,
                    "unknown device type",
                ));
            }
        }
    };
    let mut d = el("disk")
        .with_attr(
            "type",
            match src_kind {
                Src::File => "file",
                Src::Block => "block",
            },
        )
        .with_attr("device", device);
    let name = file_name.unwrap_or("");
    match src_kind {
        Src::File => {
            if device == "disk" && !name.to_ascii_lowercase().ends_with(".vmdk") {
                return Err(VmxError::bad(
                    &key("fileName"),
                    name,
                    "a hard disk's file name must end in '.vmdk'",
                ));
            }
            let empty = name.is_empty() || name == "emptyBackingString";
            if !empty && let Some(src) = (ctx.parse_file_name)(name)? {
                d.push(el("source").with_attr("file", &src));
            }
        }
        Src::Block => {
            if name.eq_ignore_ascii_case("auto detect") {
                d.push(el("source").with_attr("startupPolicy", "optional"));
            } else if name.starts_with('/') || (!name.is_empty() && bus == Bus::Fdc) {
                d.push(el("source").with_attr("dev", name));
            } else if name.is_empty() && device != "floppy" {
                // no host device: an empty drive
            } else if device != "floppy" {
                // a client-side device name such as "CD/DVD drive 0": nothing on the host
                return Ok(None);
            }
        }
    }
    let (tdev, tbus, abus, actl) = match bus {
        Bus::Scsi => (
            disk_name("sd", c * 15 + if u < 7 { u } else { u - 1 }),
            "scsi",
            0,
            c,
        ),
        Bus::Ide => (disk_name("hd", c * 2 + u), "ide", c, 0),
        Bus::Sata => (disk_name("sd", c * 30 + u), "sata", 0, c),
        Bus::Fdc => (disk_name("fd", u), "fdc", 0, 0),
    };
    d.push(el("target").with_attr("dev", &tdev).with_attr("bus", tbus));
    if device == "cdrom" || device == "lun" {
        d.push(el("readonly"));
    }
    if let Some(mode) = vmx.get(&key("mode"))
        && matches!(
            mode.to_ascii_lowercase().as_str(),
            "independent-nonpersistent" | "nonpersistent"
        )
    {
        d.push(el("transient"));
    }
    d.push(
        el("address")
            .with_attr("type", "drive")
            .with_attr("controller", &actl.to_string())
            .with_attr("bus", &abus.to_string())
            .with_attr("target", "0")
            .with_attr("unit", &u.to_string()),
    );
    Ok(Some(d))
}

fn ethernet(vmx: &Vmx, n: u32) -> Result<Option<Element>, VmxError> {
    let p = format!("ethernet{n}");
    let key = |k: &str| format!("{p}.{k}");
    if vmx.get_bool(&key("present"))? != Some(true) {
        return Ok(None);
    }
    let address_type = vmx
        .get(&key("addressType"))
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "generated".into());
    let (mac, mac_type) = match address_type.as_str() {
        "generated" | "vpx" => (vmx.get(&key("generatedAddress")), "generated"),
        "static" => (vmx.get(&key("address")), "static"),
        other => {
            return Err(VmxError::bad(
                &key("addressType"),
                other,
                "expected 'generated', 'static' or 'vpx'",
            ));
        }
    };
    let check = vmx.get_bool(&key("checkMACAddress"))?;
    let network = vmx.get(&key("networkName"));
    let conn = vmx.get(&key("connectionType")).map(str::to_ascii_lowercase);
    let switch = vmx.get(&key("dvs.switchId"));
    let model = match vmx.get(&key("virtualDev")) {
        None => None,
        Some(m) => {
            let m = m.to_ascii_lowercase();
            match m.as_str() {
                "vlance" | "vmxnet3" | "e1000" | "e1000e" => Some(m),
                "vmxnet" => {
                    if vmx.get_u64(&key("features"))? == Some(15) {
                        Some("vmxnet2".into())
                    } else {
                        Some(m)
                    }
                }
                other => {
                    return Err(VmxError::bad(
                        &key("virtualDev"),
                        other,
                        "expected 'vlance', 'vmxnet', 'vmxnet3', 'e1000' or 'e1000e'",
                    ));
                }
            }
        }
    };

    let mut source = None;
    let mut target = None;
    let itype = if let Some(sw) = switch {
        let hex: String = sw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let u = uuid::Uuid::try_parse(&hex)
            .map_err(|_| VmxError::bad(&key("dvs.switchId"), sw, "expected 16 hex bytes"))?;
        let mut s = el("source").with_attr("switchid", &u.hyphenated().to_string());
        for (attr, k) in [
            ("portid", "dvs.portId"),
            ("portgroupid", "dvs.portgroupId"),
            ("connectionid", "dvs.connectionId"),
        ] {
            if let Some(v) = vmx.get(&key(k)) {
                s.set_attr(attr, v);
            }
        }
        source = Some(s);
        "vds"
    } else {
        match conn.as_deref() {
            None | Some("bridged") => match network {
                Some(net) => {
                    source = Some(el("source").with_attr("bridge", net));
                    "bridge"
                }
                None => "null",
            },
            Some("custom") => {
                if let Some(net) = network {
                    source = Some(el("source").with_attr("bridge", net));
                }
                let vnet = vmx
                    .get(&key("vnet"))
                    .ok_or_else(|| VmxError::Missing { key: key("vnet") })?;
                target = Some(el("target").with_attr("dev", vnet));
                "bridge"
            }
            Some("nat") => "user",
            Some(other) => {
                return Err(VmxError::bad(
                    &key("connectionType"),
                    other,
                    "expected 'bridged', 'custom' or 'nat'",
                ));
            }
        }
    };
    let mut i = el("interface").with_attr("type", itype);
    if let Some(mac) = mac {
        let mut m = el("mac")
            .with_attr("address", &mac.to_ascii_lowercase())
            .with_attr("type", mac_type);
        if let Some(c) = check {
            m.set_attr("check", if c { "yes" } else { "no" });
        }
        i.push(m);
    }
    if let Some(s) = source {
        i.push(s);
    }
    if let Some(t) = target {
        i.push(t);
    }
    if let Some(m) = model {
        i.push(el("model").with_attr("type", &m));
    }
    Ok(Some(i))
}

fn char_device(vmx: &Vmx, ctx: &Context, kind: &str, n: u32) -> Result<Option<Element>, VmxError> {
    let p = format!("{kind}{n}");
    let key = |k: &str| format!("{p}.{k}");
    if vmx.get_bool(&key("present"))? != Some(true) {
        return Ok(None);
    }
    let file_type = vmx.get(&key("fileType")).map(str::to_ascii_lowercase);
    let name = vmx.get(&key("fileName")).unwrap_or("");
    let mut e = el(kind);
    match file_type.as_deref() {
        Some("device") | None => {
            e.set_attr("type", "dev");
            e.push(el("source").with_attr("path", name));
        }
        Some("file") => {
            e.set_attr("type", "file");
            if let Some(src) = (ctx.parse_file_name)(name)? {
                e.push(el("source").with_attr("path", &src));
            }
        }
        Some("pipe") if kind == "serial" => {
            e.set_attr("type", "pipe");
            e.push(el("source").with_attr("path", name));
        }
        Some("network") if kind == "serial" => {
            e.set_attr("type", "tcp");
            let (scheme, rest) = name.split_once("://").ok_or_else(|| {
                VmxError::bad(
                    &key("fileName"),
                    name,
                    "expected a URI such as 'tcp://host:port'",
                )
            })?;
            let protocol = match scheme.to_ascii_lowercase().as_str() {
                "tcp" | "tcp4" | "tcp6" => "raw",
                "telnet" => "telnet",
                "telnets" => "telnets",
                "ssl" | "tls" | "tcp+ssl" | "tcp4+ssl" | "tcp6+ssl" => "tls",
                "telnet+ssl" => "telnets",
                _ => {
                    return Err(VmxError::bad(&key("fileName"), name, "unknown URI scheme"));
                }
            };
            let hostport = rest.trim_end_matches('/');
            let (host, port) = hostport
                .rsplit_once(':')
                .ok_or_else(|| VmxError::bad(&key("fileName"), name, "the URI names no port"))?;
            let mode = match vmx
                .get(&key("network.endPoint"))
                .map(str::to_ascii_lowercase)
            {
                Some(ep) if ep == "server" => "bind",
                _ => "connect",
            };
            e.push(
                el("source")
                    .with_attr("mode", mode)
                    .with_attr("host", host)
                    .with_attr("service", port),
            );
            e.push(el("protocol").with_attr("type", protocol));
        }
        other => {
            return Err(VmxError::bad(
                &key("fileType"),
                other.unwrap_or(""),
                format!("not a supported {kind} port type"),
            ));
        }
    }
    e.push(el("target").with_attr("port", &n.to_string()));
    Ok(Some(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_cpusets() {
        assert_eq!(disk_name("sd", 0), "sda");
        assert_eq!(disk_name("sd", 25), "sdz");
        assert_eq!(disk_name("sd", 26), "sdaa");
        let s: BTreeSet<u32> = [5, 4, 3, 0].into_iter().collect();
        assert_eq!(format_cpuset(&s), "0,3-5");
    }
}

//! Domain XML to and from `xl.cfg(5)`, as libvirt's libxl driver converts them
//! (`domxml-to-native xen-xl` / `domxml-from-native xen-xl`).
//!
//! * **XML → xl.cfg** ([`domain_to_cfg`]) writes the keys libvirt writes: `name`, `uuid`,
//!   `maxmem`/`memory` (MiB), `maxvcpus`/`vcpus`/`cpus`, the HVM features (`pae`, `acpi`,
//!   `apic`, `hap`, `viridian`, `passthrough`, `e820_host`), timers (`tsc_mode`, `hpet`),
//!   `rtc_timeoffset`/`localtime`, the `on_*` actions, the device model, graphics (VNC,
//!   SDL, SPICE; `vfb` for PV guests), `vif`, `parallel`/`serial`, `builder`/`type`,
//!   firmware (`bios`, `bios_path_override`, `acpi_firmware`), `kernel`/`ramdisk`/`cmdline`
//!   or `bootloader`, `boot`, `nestedhvm`/`cpuid`, `vnuma`, `max_event_channels`,
//!   key=value `disk` specs, `pci`, `channel`, `usbctrl`, `usbdev`, `usbdevice` and
//!   `device_model_args` (from `<xen:commandline>`).
//! * **xl.cfg → XML** ([`cfg_to_domain`]) reads those keys and also the older forms xl
//!   accepts: positional disk specs (`target,format,vdev,access`), `phy:`/`file:`/`tap:`
//!   target prefixes, `extra`/`root` kernel command lines, `stdvga`, `vfb` specs; and
//!   formats the domain as libvirt does after its post-parse step: the `xenbus`
//!   controller, IDE/SCSI controllers and drive addresses, implicit mouse and keyboard,
//!   the PV console, the default video device and the Xen balloon.

use crate::xlcfg::{Cfg, SyntaxError, Value};
use rvirt_xml::Element;

/// The XML namespace of `<xen:commandline>`.
pub const XEN_NS: &str = "http://libvirt.org/schemas/domain/xen/1.0";
/// The firmware libvirt names for HVM guests without `bios = "ovmf"`.
pub const HVMLOADER: &str = "/usr/lib/xen/boot/hvmloader";

/// Errors of the conversion.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The domain XML is not well-formed.
    #[error("invalid domain XML")]
    Xml(#[source] rvirt_xml::XmlError),
    /// The xl.cfg text does not parse.
    #[error("invalid xl.cfg")]
    Syntax(#[source] SyntaxError),
    /// A value in the domain XML is wrong or missing.
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
    /// The domain XML asks for what xl.cfg cannot express.
    #[error("{path}: {what} cannot be expressed in xl.cfg")]
    Unsupported { path: String, what: String },
    /// An xl.cfg setting holds a value that cannot be read.
    #[error("xl.cfg setting '{key}': {what}")]
    BadKey { key: String, what: String },
}

fn invalid(path: &str, what: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        path: path.to_string(),
        what: what.into(),
    }
}

fn unsupported(path: &str, what: impl Into<String>) -> ConvertError {
    ConvertError::Unsupported {
        path: path.to_string(),
        what: what.into(),
    }
}

fn bad_key(key: &str, what: impl Into<String>) -> ConvertError {
    ConvertError::BadKey {
        key: key.to_string(),
        what: what.into(),
    }
}

/// The three Xen guest types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestType {
    /// Paravirtualised (`<type>linux</type>`, `machine='xenpv'`).
    Pv,
    /// PVH (`<type>xenpvh</type>`, xl `type = "pvh"`).
    Pvh,
    /// Fully virtualised (`<type>hvm</type>`, xl `builder = "hvm"`).
    Hvm,
}

// ---------------------------------------------------------------- helpers

fn text_of(e: &Element, name: &str) -> Option<String> {
    e.child(name).map(|c| c.text().trim().to_string())
}

fn parse_u64(path: &str, s: &str) -> Result<u64, ConvertError> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| invalid(path, format!("'{s}' is not a non-negative integer")))
}

/// An amount with libvirt's `unit` attribute, in KiB.
fn kib(e: &Element, path: &str) -> Result<u64, ConvertError> {
    let v = parse_u64(path, &e.text())?;
    let unit = e.attr("unit").unwrap_or("KiB");
    let bytes_per: u64 = match unit {
        "b" | "bytes" => 1,
        "KB" => 1000,
        "k" | "K" | "KiB" => 1024,
        "MB" => 1_000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "T" | "TiB" => 1 << 40,
        _ => {
            return Err(invalid(
                &format!("{path}/@unit"),
                format!("unknown unit '{unit}'"),
            ));
        }
    };
    Ok(v.saturating_mul(bytes_per) / 1024)
}

fn devices(dom: &Element) -> impl Iterator<Item = &Element> {
    dom.child("devices").into_iter().flat_map(|d| d.elements())
}

fn kib_element(name: &str, kib: u64) -> Element {
    Element::new(name)
        .with_attr("unit", "KiB")
        .with_text(&kib.to_string())
}

/// The index of a disk name whose prefix may include letters of the index
/// (`hda`, `sdb`, `xvdc`).
fn disk_bus_index(name: &str) -> Option<(&'static str, u32)> {
    for (prefix, bus) in [
        ("xvd", "xen"),
        ("hd", "ide"),
        ("sd", "scsi"),
        ("vd", "virtio"),
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let letters: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase())
                .collect();
            if letters.is_empty() {
                return None;
            }
            let mut idx: u32 = 0;
            for c in letters.chars() {
                idx = idx * 26 + (c as u32 - 'a' as u32 + 1);
            }
            return Some((bus, idx - 1));
        }
    }
    None
}

// ------------------------------------------------------- cpuid name table

/// libvirt's CPU feature names where libxl's `cpuid` names differ.
const CPUID_NAMES: &[(&str, &str)] = &[
    ("pni", "sse3"),
    ("pclmuldq", "pclmulqdq"),
    ("ds_cpl", "dscpl"),
    ("cid", "cntxid"),
    ("cx16", "cmpxchg16b"),
    ("sse4.1", "sse4_1"),
    ("sse4.2", "sse4_2"),
    ("lahf_lm", "lahfsahf"),
    ("cmp_legacy", "cmplegacy"),
    ("cr8legacy", "altmovcr8"),
    ("nodeid_msr", "nodeid"),
    ("fxsr_opt", "ffxsr"),
    ("pdpe1gb", "page1gb"),
];

fn cpuid_from_libvirt(name: &str) -> &str {
    CPUID_NAMES
        .iter()
        .find(|(l, _)| *l == name)
        .map_or(name, |(_, x)| x)
}

fn cpuid_to_libvirt(name: &str) -> &str {
    CPUID_NAMES
        .iter()
        .find(|(_, x)| *x == name)
        .map_or(name, |(l, _)| l)
}

// ------------------------------------------------------------ XML -> cfg

/// Converts domain XML text to xl.cfg text.
pub fn xml_to_xl(xml: &str) -> Result<String, ConvertError> {
    let dom = Element::parse(xml).map_err(ConvertError::Xml)?;
    Ok(domain_to_cfg(&dom)?.to_text())
}

/// The guest type of a domain XML.
pub fn guest_type(dom: &Element) -> Result<GuestType, ConvertError> {
    let os = dom.child("os");
    let ty = os.and_then(|o| o.child("type"));
    let text = ty.map(|t| t.text().trim().to_string()).unwrap_or_default();
    match text.as_str() {
        "hvm" => Ok(GuestType::Hvm),
        "xenpvh" => Ok(GuestType::Pvh),
        "linux" | "xen" => {
            if ty.and_then(|t| t.attr("machine")) == Some("xenpvh") {
                Ok(GuestType::Pvh)
            } else {
                Ok(GuestType::Pv)
            }
        }
        "" if dom.child("bootloader").is_some() => Ok(GuestType::Pv),
        "" => Err(invalid("domain/os/type", "missing")),
        other => Err(unsupported(
            "domain/os/type",
            format!("OS type '{other}' (the Xen driver runs 'hvm', 'linux'/'xen' and 'xenpvh')"),
        )),
    }
}

/// Converts a domain XML tree to xl.cfg settings.
pub fn domain_to_cfg(dom: &Element) -> Result<Cfg, ConvertError> {
    if dom.name() != "domain" {
        return Err(invalid(dom.name(), "the root element must be <domain>"));
    }
    match dom.attr("type") {
        Some("xen") => {}
        Some(t) => {
            return Err(unsupported(
                "domain/@type",
                format!("domain type '{t}' (the Xen driver runs type 'xen')"),
            ));
        }
        None => return Err(invalid("domain/@type", "missing")),
    }
    let gt = guest_type(dom)?;
    let hvm = gt == GuestType::Hvm;
    let mut c = Cfg::new();
    let name = text_of(dom, "name").ok_or_else(|| invalid("domain/name", "missing"))?;
    if name.is_empty() {
        return Err(invalid("domain/name", "empty"));
    }
    c.set_str("name", &name);
    if let Some(u) = text_of(dom, "uuid") {
        let parsed = uuid::Uuid::parse_str(&u)
            .map_err(|_| invalid("domain/uuid", format!("'{u}' is not a UUID")))?;
        c.set_str("uuid", &parsed.hyphenated().to_string());
    }
    // memory
    let mem = dom
        .child("memory")
        .ok_or_else(|| invalid("domain/memory", "missing"))?;
    let max_kib = kib(mem, "domain/memory")?;
    let cur_kib = match dom.child("currentMemory") {
        Some(e) => kib(e, "domain/currentMemory")?,
        None => max_kib,
    };
    c.set_num("maxmem", (max_kib / 1024) as i64);
    c.set_num("memory", (cur_kib.min(max_kib) / 1024) as i64);
    // vcpus
    let vcpu = dom.child("vcpu");
    let maxv = match vcpu {
        Some(v) => parse_u64("domain/vcpu", &v.text())?,
        None => 1,
    };
    if maxv == 0 {
        return Err(invalid("domain/vcpu", "needs at least one vCPU"));
    }
    let curv = match vcpu.and_then(|v| v.attr("current")) {
        Some(s) => parse_u64("domain/vcpu/@current", s)?,
        None => maxv,
    };
    if curv > maxv {
        return Err(invalid(
            "domain/vcpu/@current",
            format!("{curv} is more than the maximum {maxv}"),
        ));
    }
    if curv != maxv {
        c.set_num("maxvcpus", maxv as i64);
    }
    c.set_num("vcpus", curv as i64);
    if let Some(set) = vcpu.and_then(|v| v.attr("cpuset")) {
        c.set_str("cpus", set);
    }
    // features
    let features = dom.child("features");
    let has = |n: &str| features.and_then(|f| f.child(n));
    let on = |n: &str| has(n).is_some_and(|e| e.attr("state").unwrap_or("on") == "on");
    if hvm {
        c.set_num("pae", on("pae") as i64);
        c.set_num("acpi", on("acpi") as i64);
        c.set_num("apic", on("apic") as i64);
        if let Some(h) = has("hap") {
            c.set_num("hap", (h.attr("state").unwrap_or("on") == "on") as i64);
        }
        c.set_num("viridian", on("viridian") as i64);
    }
    if let Some(x) = has("xen") {
        if let Some(e) = x.child("e820_host") {
            c.set_num(
                "e820_host",
                (e.attr("state").unwrap_or("on") == "on") as i64,
            );
        }
        if let Some(p) = x.child("passthrough") {
            let v = match (p.attr("state").unwrap_or("on"), p.attr("mode")) {
                ("on", Some(m)) => m.to_string(),
                ("on", None) => "enabled".to_string(),
                _ => "disabled".to_string(),
            };
            c.set_str("passthrough", &v);
        }
    }
    // clock and timers
    let clock = dom.child("clock");
    if let Some(cl) = clock {
        for t in cl.children_named("timer") {
            let tname = t.attr("name").unwrap_or("");
            let present = t.attr("present").map(|p| p == "yes");
            match tname {
                "tsc" => {
                    let mode = match t.attr("mode") {
                        Some("native") => "native",
                        Some("emulate") => "always_emulate",
                        Some("paravirt") => "native_paravirt",
                        Some("auto") | None => "default",
                        Some(m) => {
                            return Err(unsupported(
                                "domain/clock/timer[@name='tsc']/@mode",
                                format!("mode '{m}'"),
                            ));
                        }
                    };
                    c.set_str("tsc_mode", mode);
                }
                "hpet" if hvm => c.set_num("hpet", present.unwrap_or(true) as i64),
                _ => {}
            }
        }
    }
    let offset = clock.and_then(|c| c.attr("offset")).unwrap_or("utc");
    if hvm {
        match offset {
            "variable" => {
                let adj = clock.and_then(|c| c.attr("adjustment")).unwrap_or("0");
                let n: i64 = adj.parse().map_err(|_| {
                    invalid(
                        "domain/clock/@adjustment",
                        format!("'{adj}' is not a number"),
                    )
                })?;
                c.set_num("rtc_timeoffset", n);
                let basis = clock.and_then(|c| c.attr("basis")).unwrap_or("utc");
                c.set_num("localtime", (basis == "localtime") as i64);
            }
            "localtime" => c.set_num("localtime", 1),
            "utc" => c.set_num("localtime", 0),
            o => return Err(unsupported("domain/clock/@offset", format!("offset '{o}'"))),
        }
    } else {
        match offset {
            "localtime" => c.set_num("localtime", 1),
            "utc" | "variable" => c.set_num("localtime", 0),
            o => return Err(unsupported("domain/clock/@offset", format!("offset '{o}'"))),
        }
    }
    // actions
    for (key, default) in [
        ("on_poweroff", "destroy"),
        ("on_reboot", "restart"),
        ("on_crash", "restart"),
    ] {
        let v = text_of(dom, key).unwrap_or_else(|| default.to_string());
        match v.as_str() {
            "destroy" | "restart" | "preserve" | "rename-restart" | "coredump-destroy"
            | "coredump-restart" => c.set_str(key, &v),
            other => {
                return Err(unsupported(
                    &format!("domain/{key}"),
                    format!("action '{other}'"),
                ));
            }
        }
    }
    if hvm && let Some(em) = dom.child("devices").and_then(|d| text_of(d, "emulator")) {
        c.set_str("device_model_override", &em);
    }
    graphics_to_cfg(dom, gt, &mut c)?;
    if hvm {
        video_to_cfg(dom, &mut c)?;
    }
    let vifs = interfaces_to_cfg(dom, hvm)?;
    if !vifs.is_empty() {
        c.set("vif", Value::strings(&vifs));
    }
    if hvm {
        chardevs_to_cfg(dom, &mut c)?;
    }
    os_to_cfg(dom, gt, &mut c)?;
    cpu_to_cfg(dom, hvm, &mut c)?;
    if let Some(xb) =
        devices(dom).find(|d| d.name() == "controller" && d.attr("type") == Some("xenbus"))
    {
        if let Some(m) = xb.attr("maxEventChannels") {
            c.set_num(
                "max_event_channels",
                parse_u64(
                    "domain/devices/controller[@type='xenbus']/@maxEventChannels",
                    m,
                )? as i64,
            );
        }
        if let Some(m) = xb.attr("maxGrantFrames") {
            c.set_num(
                "max_grant_frames",
                parse_u64(
                    "domain/devices/controller[@type='xenbus']/@maxGrantFrames",
                    m,
                )? as i64,
            );
        }
    }
    let disks = disks_to_cfg(dom)?;
    if !disks.is_empty() {
        c.set("disk", Value::strings(&disks));
    }
    hostdevs_to_cfg(dom, &mut c)?;
    spice_to_cfg(dom, hvm, &mut c)?;
    channels_to_cfg(dom, &mut c)?;
    usb_to_cfg(dom, &mut c)?;
    let args: Vec<String> = dom
        .elements()
        .filter(|e| e.local_name() == "commandline" && e.name().contains(':'))
        .flat_map(|e| e.elements().filter(|a| a.local_name() == "arg"))
        .filter_map(|a| a.attr("value").map(str::to_string))
        .collect();
    if !args.is_empty() {
        c.set("device_model_args", Value::strings(&args));
    }
    Ok(c)
}

fn os_to_cfg(dom: &Element, gt: GuestType, c: &mut Cfg) -> Result<(), ConvertError> {
    let os = dom.child("os");
    let os_text = |n: &str| os.and_then(|o| text_of(o, n)).filter(|s| !s.is_empty());
    match gt {
        GuestType::Hvm => {
            c.set_str("builder", "hvm");
            if let Some(o) = os {
                if let Some(acpi) = o.child("acpi") {
                    for t in acpi.children_named("table") {
                        match t.attr("type") {
                            Some("slic") => c.set_str("acpi_firmware", t.text().trim()),
                            other => {
                                return Err(unsupported(
                                    "domain/os/acpi/table/@type",
                                    format!("ACPI table type '{}'", other.unwrap_or("")),
                                ));
                            }
                        }
                    }
                }
                let loader = o.child("loader");
                let efi = o.attr("firmware") == Some("efi")
                    || loader.is_some_and(|l| l.attr("type") == Some("pflash"));
                if efi {
                    c.set_str("bios", "ovmf");
                    if let Some(l) = loader {
                        let p = l.text().trim().to_string();
                        if !p.is_empty() {
                            c.set_str("bios_path_override", &p);
                        }
                    }
                }
            }
            if let Some(k) = os_text("kernel") {
                c.set_str("kernel", &k);
            }
            if let Some(k) = os_text("initrd") {
                c.set_str("ramdisk", &k);
            }
            if let Some(k) = os_text("cmdline") {
                c.set_str("cmdline", &k);
            }
            let mut boot = String::new();
            for b in os.into_iter().flat_map(|o| o.children_named("boot")) {
                let letter = match b.attr("dev").unwrap_or("") {
                    "fd" => 'a',
                    "hd" => 'c',
                    "cdrom" => 'd',
                    "network" => 'n',
                    other => {
                        return Err(invalid(
                            "domain/os/boot/@dev",
                            format!("unknown boot device '{other}'"),
                        ));
                    }
                };
                boot.push(letter);
            }
            if boot.is_empty() {
                boot.push('c');
            }
            c.set_str("boot", &boot);
        }
        GuestType::Pv | GuestType::Pvh => {
            if gt == GuestType::Pvh {
                c.set_str("type", "pvh");
            }
            if let Some(b) = text_of(dom, "bootloader").filter(|s| !s.is_empty()) {
                c.set_str("bootloader", &b);
                if let Some(a) = text_of(dom, "bootloader_args").filter(|s| !s.is_empty()) {
                    c.set_str("bootloader_args", &a);
                }
            }
            if let Some(k) = os_text("kernel") {
                c.set_str("kernel", &k);
            }
            if let Some(k) = os_text("initrd") {
                c.set_str("ramdisk", &k);
            }
            if let Some(k) = os_text("cmdline") {
                c.set_str("cmdline", &k);
            }
        }
    }
    Ok(())
}

fn cpu_to_cfg(dom: &Element, hvm: bool, c: &mut Cfg) -> Result<(), ConvertError> {
    let Some(cpu) = dom.child("cpu") else {
        return Ok(());
    };
    if hvm && cpu.attr("mode") == Some("host-passthrough") {
        let mut nested = true;
        let mut parts = vec!["host".to_string()];
        for f in cpu.children_named("feature") {
            let name = f
                .attr("name")
                .ok_or_else(|| invalid("domain/cpu/feature/@name", "missing"))?;
            let policy = f.attr("policy").unwrap_or("require");
            if name == "vmx" || name == "svm" {
                if matches!(policy, "disable" | "forbid") {
                    nested = false;
                }
                continue;
            }
            let v = match policy {
                "force" | "require" => "1",
                "disable" | "forbid" => "0",
                "optional" => "x",
                other => {
                    return Err(invalid(
                        "domain/cpu/feature/@policy",
                        format!("unknown policy '{other}'"),
                    ));
                }
            };
            parts.push(format!("{}={v}", cpuid_from_libvirt(name)));
        }
        c.set_num("nestedhvm", nested as i64);
        if parts.len() > 1 {
            c.set_str("cpuid", &parts.join(","));
        }
    } else if let Some(mode) = cpu.attr("mode")
        && mode != "custom"
    {
        return Err(unsupported(
            "domain/cpu/@mode",
            format!("CPU mode '{mode}' (xl knows host-passthrough for HVM guests)"),
        ));
    }
    if let Some(numa) = cpu.child("numa") {
        let cells: Vec<&Element> = numa.children_named("cell").collect();
        let n = cells.len();
        let mut dist = vec![vec![None::<u64>; n]; n];
        let mut ids = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            let path = format!("domain/cpu/numa/cell[{}]", i + 1);
            let id = match cell.attr("id") {
                Some(s) => parse_u64(&format!("{path}/@id"), s)? as usize,
                None => i,
            };
            if id != i {
                return Err(invalid(
                    &format!("{path}/@id"),
                    "cell ids must be 0, 1, ... in order",
                ));
            }
            ids.push(id);
            for s in cell
                .child("distances")
                .into_iter()
                .flat_map(|d| d.children_named("sibling"))
            {
                let sid = parse_u64(
                    &format!("{path}/distances/sibling/@id"),
                    s.attr("id").unwrap_or(""),
                )? as usize;
                let v = parse_u64(
                    &format!("{path}/distances/sibling/@value"),
                    s.attr("value").unwrap_or(""),
                )?;
                if sid >= n {
                    return Err(invalid(
                        &format!("{path}/distances/sibling/@id"),
                        format!("no cell {sid}"),
                    ));
                }
                dist[i][sid] = Some(v);
            }
        }
        let mut out = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            let path = format!("domain/cpu/numa/cell[{}]", i + 1);
            let mem_kib = {
                let v = parse_u64(
                    &format!("{path}/@memory"),
                    cell.attr("memory").unwrap_or(""),
                )?;
                let mut e = Element::new("m").with_text(&v.to_string());
                e.set_attr("unit", cell.attr("unit").unwrap_or("KiB"));
                kib(&e, &format!("{path}/@memory"))?
            };
            let cpus = cell
                .attr("cpus")
                .ok_or_else(|| invalid(&format!("{path}/@cpus"), "missing"))?;
            let row: Vec<String> = (0..n)
                .map(|j| {
                    dist[i][j]
                        .or(dist[j][i])
                        .unwrap_or(if i == j { 10 } else { 20 })
                        .to_string()
                })
                .collect();
            out.push(Value::strings(&[
                format!("pnode={}", ids[i]),
                format!("size={}", mem_kib / 1024),
                format!("vcpus={cpus}"),
                format!("vdistances={}", row.join(",")),
            ]));
        }
        c.set("vnuma", Value::List(out));
    }
    Ok(())
}

fn listen_address(g: &Element) -> Option<String> {
    g.attr("listen").map(str::to_string).or_else(|| {
        g.children_named("listen")
            .find(|l| l.attr("type") == Some("address"))
            .and_then(|l| l.attr("address").map(str::to_string))
    })
}

fn graphics_to_cfg(dom: &Element, gt: GuestType, c: &mut Cfg) -> Result<(), ConvertError> {
    let graphics: Vec<&Element> = devices(dom).filter(|d| d.name() == "graphics").collect();
    if graphics.is_empty() {
        return Ok(());
    }
    for t in ["vnc", "sdl", "spice"] {
        if graphics
            .iter()
            .filter(|g| g.attr("type") == Some(t))
            .count()
            > 1
        {
            return Err(unsupported(
                "domain/devices/graphics",
                format!("more than one '{t}' graphics device"),
            ));
        }
    }
    for g in &graphics {
        let t = g.attr("type").unwrap_or("");
        if !matches!(t, "vnc" | "sdl" | "spice") {
            return Err(unsupported(
                "domain/devices/graphics/@type",
                format!("graphics type '{t}'"),
            ));
        }
    }
    let vnc = graphics.iter().find(|g| g.attr("type") == Some("vnc"));
    let sdl = graphics.iter().find(|g| g.attr("type") == Some("sdl"));
    if gt == GuestType::Hvm {
        c.set_num("sdl", sdl.is_some() as i64);
        if let Some(s) = sdl {
            if let Some(d) = s.attr("display") {
                c.set_str("display", d);
            }
            if let Some(x) = s.attr("xauth") {
                c.set_str("xauthority", x);
            }
        }
        c.set_num("vnc", vnc.is_some() as i64);
        if let Some(v) = vnc {
            let autoport =
                v.attr("autoport") == Some("yes") || v.attr("port").is_none_or(|p| p == "-1");
            c.set_num("vncunused", autoport as i64);
            if !autoport {
                let port = parse_u64(
                    "domain/devices/graphics[@type='vnc']/@port",
                    v.attr("port").unwrap_or(""),
                )?;
                if port >= 5900 {
                    c.set_num("vncdisplay", (port - 5900) as i64);
                }
            }
            if let Some(l) = listen_address(v) {
                c.set_str("vnclisten", &l);
            }
            if let Some(p) = v.attr("passwd") {
                c.set_str("vncpasswd", p);
            }
            if let Some(k) = v.attr("keymap") {
                c.set_str("keymap", k);
            }
        }
    } else {
        if graphics.iter().any(|g| g.attr("type") == Some("spice")) {
            return Err(unsupported(
                "domain/devices/graphics[@type='spice']",
                "SPICE for a PV or PVH guest",
            ));
        }
        let mut vfbs = Vec::new();
        if let Some(v) = vnc {
            let mut parts = vec!["vnc=1".to_string()];
            let autoport =
                v.attr("autoport") == Some("yes") || v.attr("port").is_none_or(|p| p == "-1");
            parts.push(format!("vncunused={}", autoport as u8));
            if !autoport {
                let port = parse_u64(
                    "domain/devices/graphics[@type='vnc']/@port",
                    v.attr("port").unwrap_or(""),
                )?;
                if port >= 5900 {
                    parts.push(format!("vncdisplay={}", port - 5900));
                }
            }
            if let Some(l) = listen_address(v) {
                parts.push(format!("vnclisten={l}"));
            }
            if let Some(p) = v.attr("passwd") {
                parts.push(format!("vncpasswd={p}"));
            }
            if let Some(k) = v.attr("keymap") {
                parts.push(format!("keymap={k}"));
            }
            vfbs.push(parts.join(","));
        }
        if let Some(s) = sdl {
            let mut parts = vec!["sdl=1".to_string()];
            if let Some(d) = s.attr("display") {
                parts.push(format!("display={d}"));
            }
            if let Some(x) = s.attr("xauth") {
                parts.push(format!("xauthority={x}"));
            }
            vfbs.push(parts.join(","));
        }
        c.set("vfb", Value::strings(&vfbs));
    }
    Ok(())
}

fn video_to_cfg(dom: &Element, c: &mut Cfg) -> Result<(), ConvertError> {
    let Some(model) = devices(dom)
        .find(|d| d.name() == "video")
        .and_then(|v| v.child("model"))
    else {
        return Ok(());
    };
    let path = "domain/devices/video/model";
    let (vga, default_vram) = match model.attr("type").unwrap_or("cirrus") {
        "cirrus" => (None, 8192),
        "vga" => (Some("stdvga"), 16384),
        "qxl" => (Some("qxl"), 65536),
        "none" => (Some("none"), 0),
        other => {
            return Err(unsupported(
                &format!("{path}/@type"),
                format!("video model '{other}'"),
            ));
        }
    };
    if let Some(v) = vga {
        c.set_str("vga", v);
    }
    if let Some(vram) = model.attr("vram") {
        let kib = parse_u64(&format!("{path}/@vram"), vram)?;
        if kib != default_vram && kib > 0 {
            c.set_num("videoram", (kib / 1024) as i64);
        }
    }
    Ok(())
}

fn spice_to_cfg(dom: &Element, hvm: bool, c: &mut Cfg) -> Result<(), ConvertError> {
    let Some(s) = devices(dom).find(|d| d.name() == "graphics" && d.attr("type") == Some("spice"))
    else {
        return Ok(());
    };
    if !hvm {
        return Ok(());
    }
    let path = "domain/devices/graphics[@type='spice']";
    c.set_num("spice", 1);
    if let Some(l) = listen_address(s) {
        c.set_str("spicehost", &l);
    }
    let autoport = s.attr("autoport") == Some("yes");
    if !autoport {
        if let Some(p) = s.attr("port").filter(|p| *p != "-1") {
            c.set_num("spiceport", parse_u64(&format!("{path}/@port"), p)? as i64);
        }
        if let Some(p) = s.attr("tlsPort").filter(|p| *p != "-1") {
            c.set_num(
                "spicetls_port",
                parse_u64(&format!("{path}/@tlsPort"), p)? as i64,
            );
        }
    }
    match s.attr("passwd") {
        Some(p) => {
            c.set_num("spicedisable_ticketing", 0);
            c.set_str("spicepasswd", p);
        }
        None => c.set_num("spicedisable_ticketing", 1),
    }
    let mouse_client = s.child("mouse").and_then(|m| m.attr("mode")) == Some("client");
    let clipboard = s.child("clipboard").and_then(|m| m.attr("copypaste")) == Some("yes");
    c.set_num("spiceagent_mouse", mouse_client as i64);
    if mouse_client || clipboard {
        c.set_num("spicevdagent", 1);
        c.set_num("spice_clipboard_sharing", clipboard as i64);
    }
    Ok(())
}

/// A bandwidth in KB/s as xl's `rate` writes it.
fn vif_rate(iface: &Element) -> Option<String> {
    let avg = iface
        .child("bandwidth")?
        .child("outbound")?
        .attr("average")?;
    Some(format!("{avg}KB/s"))
}

fn interfaces_to_cfg(dom: &Element, hvm: bool) -> Result<Vec<String>, ConvertError> {
    let mut out = Vec::new();
    for (i, n) in devices(dom).filter(|d| d.name() == "interface").enumerate() {
        let path = format!("domain/devices/interface[{}]", i + 1);
        let ty = n.attr("type").unwrap_or("");
        let mut parts = Vec::new();
        if let Some(mac) = n.child("mac").and_then(|m| m.attr("address")) {
            parts.push(format!("mac={}", mac.to_ascii_lowercase()));
        }
        match ty {
            "bridge" => {
                let br = n
                    .child("source")
                    .and_then(|s| s.attr("bridge"))
                    .ok_or_else(|| invalid(&format!("{path}/source/@bridge"), "missing"))?;
                let mut b = br.to_string();
                if let Some(vlan) = n.child("vlan") {
                    let tags: Vec<&str> = vlan
                        .children_named("tag")
                        .filter_map(|t| t.attr("id"))
                        .collect();
                    if vlan.attr("trunk") == Some("yes") || tags.len() > 1 {
                        for t in &tags {
                            b.push(':');
                            b.push_str(t);
                        }
                    } else if let Some(t) = tags.first() {
                        b.push('.');
                        b.push_str(t);
                    }
                }
                parts.push(format!("bridge={b}"));
            }
            "ethernet" => {}
            "network" => {
                return Err(unsupported(
                    &format!("{path}/@type"),
                    "an interface on a libvirt network (needs the network driver to name the bridge)",
                ));
            }
            other => {
                return Err(unsupported(
                    &format!("{path}/@type"),
                    format!("interface type '{other}'"),
                ));
            }
        }
        let ips: Vec<&str> = n
            .children_named("ip")
            .filter_map(|i| i.attr("address"))
            .collect();
        if !ips.is_empty() {
            parts.push(format!("ip={}", ips.join(" ")));
        }
        if let Some(s) = n.child("script").and_then(|s| s.attr("path")) {
            parts.push(format!("script={s}"));
        }
        if let Some(m) = n.child("model").and_then(|m| m.attr("type")) {
            if m == "netfront" {
                parts.push("type=vif".to_string());
            } else if hvm {
                parts.push(format!("model={m}"));
            } else {
                return Err(unsupported(
                    &format!("{path}/model/@type"),
                    format!("NIC model '{m}' for a PV guest (only 'netfront')"),
                ));
            }
        }
        if let Some(t) = n.child("target").and_then(|t| t.attr("dev")) {
            parts.push(format!("vifname={t}"));
        }
        if let Some(b) = n.child("backenddomain").and_then(|b| b.attr("name")) {
            parts.push(format!("backend={b}"));
        }
        if let Some(r) = vif_rate(n) {
            parts.push(format!("rate={r}"));
        }
        out.push(parts.join(","));
    }
    Ok(out)
}

fn chardev_spec(e: &Element, path: &str) -> Result<String, ConvertError> {
    let src = e.child("source");
    let sattr = |a: &str| src.and_then(|s| s.attr(a));
    Ok(match e.attr("type").unwrap_or("pty") {
        "pty" => "pty".to_string(),
        "null" => "null".to_string(),
        "vc" => "vc".to_string(),
        "stdio" => "stdio".to_string(),
        "file" => format!(
            "file:{}",
            sattr("path").ok_or_else(|| invalid(&format!("{path}/source/@path"), "missing"))?
        ),
        "dev" => sattr("path")
            .ok_or_else(|| invalid(&format!("{path}/source/@path"), "missing"))?
            .to_string(),
        "pipe" => format!(
            "pipe:{}",
            sattr("path").ok_or_else(|| invalid(&format!("{path}/source/@path"), "missing"))?
        ),
        "tcp" => {
            let host = sattr("host").unwrap_or("");
            let port = sattr("service").unwrap_or("");
            let server = if sattr("mode") == Some("bind") {
                ",server,nowait"
            } else {
                ""
            };
            format!("tcp:{host}:{port}{server}")
        }
        "udp" => format!(
            "udp:{}:{}",
            sattr("host").unwrap_or(""),
            sattr("service").unwrap_or("")
        ),
        "unix" => {
            let server = if sattr("mode") == Some("bind") {
                ",server,nowait"
            } else {
                ""
            };
            format!("unix:{}{server}", sattr("path").unwrap_or(""))
        }
        other => {
            return Err(unsupported(
                &format!("{path}/@type"),
                format!("character device type '{other}'"),
            ));
        }
    })
}

fn chardevs_to_cfg(dom: &Element, c: &mut Cfg) -> Result<(), ConvertError> {
    let parallels: Vec<&Element> = devices(dom).filter(|d| d.name() == "parallel").collect();
    match parallels.as_slice() {
        [] => c.set_str("parallel", "none"),
        [p] => c.set_str("parallel", &chardev_spec(p, "domain/devices/parallel")?),
        _ => {
            return Err(unsupported(
                "domain/devices/parallel",
                "more than one parallel port",
            ));
        }
    }
    let serials: Vec<&Element> = devices(dom).filter(|d| d.name() == "serial").collect();
    match serials.as_slice() {
        [] => c.set_str("serial", "none"),
        [s] => c.set_str("serial", &chardev_spec(s, "domain/devices/serial")?),
        many => {
            let mut v = Vec::new();
            for (i, s) in many.iter().enumerate() {
                v.push(chardev_spec(
                    s,
                    &format!("domain/devices/serial[{}]", i + 1),
                )?);
            }
            c.set("serial", Value::strings(&v));
        }
    }
    Ok(())
}

/// The qemu-style RBD source string libxl hands to qemu: `rbd:POOL/IMAGE`, then
/// `:auth_supported=none` and `:mon_host=H\:P\;H\:P` (host separators escaped).
fn rbd_target(src: &Element, path: &str) -> Result<String, ConvertError> {
    let name = src
        .attr("name")
        .ok_or_else(|| invalid(&format!("{path}/source/@name"), "missing"))?;
    let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    let mut t = format!("rbd:{}", esc(name));
    if let Some(snap) = src.child("snapshot").and_then(|s| s.attr("name")) {
        t.push('@');
        t.push_str(&esc(snap));
    }
    match src.child("auth").and_then(|a| a.attr("username")) {
        Some(u) => t.push_str(&format!(":id={}", esc(u))),
        None => t.push_str(":auth_supported=none"),
    }
    let hosts: Vec<String> = src
        .children_named("host")
        .map(|h| {
            let mut s = esc(h.attr("name").unwrap_or(""));
            if let Some(p) = h.attr("port") {
                s.push_str("\\:");
                s.push_str(p);
            }
            s
        })
        .collect();
    if !hosts.is_empty() {
        t.push_str(":mon_host=");
        t.push_str(&hosts.join("\\;"));
    }
    if let Some(cfg) = src.child("config").and_then(|c| c.attr("file")) {
        t.push_str(&format!(":conf={}", esc(cfg)));
    }
    Ok(t)
}

fn disks_to_cfg(dom: &Element) -> Result<Vec<String>, ConvertError> {
    let mut out = Vec::new();
    for (i, d) in devices(dom).filter(|d| d.name() == "disk").enumerate() {
        let path = format!("domain/devices/disk[{}]", i + 1);
        let dev = d
            .child("target")
            .and_then(|t| t.attr("dev"))
            .ok_or_else(|| invalid(&format!("{path}/target/@dev"), "missing"))?;
        let device = d.attr("device").unwrap_or("disk");
        if !matches!(device, "disk" | "cdrom") {
            return Err(unsupported(
                &format!("{path}/@device"),
                format!("disk device '{device}'"),
            ));
        }
        let ty = d.attr("type").unwrap_or("file");
        let driver = d.child("driver");
        let format = driver.and_then(|x| x.attr("type")).unwrap_or("raw");
        let backend = match driver.and_then(|x| x.attr("name")) {
            Some("phy") => "phy",
            Some("qemu") => "qdisk",
            Some("tap") | Some("tap2") => "tap",
            Some("file") => "qdisk",
            None if ty == "block" => "phy",
            None => "qdisk",
            Some(other) => {
                return Err(unsupported(
                    &format!("{path}/driver/@name"),
                    format!("disk driver '{other}'"),
                ));
            }
        };
        let src = d.child("source");
        let target = match (ty, src) {
            (_, None) => None,
            ("file", Some(s)) => s.attr("file").map(str::to_string),
            ("block", Some(s)) => s.attr("dev").map(str::to_string),
            ("network", Some(s)) => match s.attr("protocol") {
                Some("rbd") => Some(rbd_target(s, &path)?),
                other => {
                    return Err(unsupported(
                        &format!("{path}/source/@protocol"),
                        format!("network disk protocol '{}'", other.unwrap_or("")),
                    ));
                }
            },
            (other, Some(_)) => {
                return Err(unsupported(
                    &format!("{path}/@type"),
                    format!("disk type '{other}'"),
                ));
            }
        };
        let ro = d.child("readonly").is_some() || device == "cdrom";
        let mut spec = format!(
            "format={format},vdev={dev},access={},backendtype={backend}",
            if ro { "ro" } else { "rw" }
        );
        if device == "cdrom" {
            spec.push_str(",devtype=cdrom");
        }
        if let Some(t) = target {
            spec.push_str(",target=");
            spec.push_str(&t);
        } else if device != "cdrom" {
            return Err(invalid(
                &format!("{path}/source"),
                "a hard disk needs a source",
            ));
        }
        out.push(spec);
    }
    Ok(out)
}

fn hex_field(s: &str, path: &str) -> Result<u32, ConvertError> {
    let t = s.trim();
    let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u32::from_str_radix(h, 16)
    } else {
        t.parse::<u32>()
    };
    r.map_err(|_| invalid(path, format!("'{s}' is not a number")))
}

fn hostdevs_to_cfg(dom: &Element, c: &mut Cfg) -> Result<(), ConvertError> {
    let mut pci = Vec::new();
    let mut usb = Vec::new();
    for (i, h) in devices(dom).filter(|d| d.name() == "hostdev").enumerate() {
        let path = format!("domain/devices/hostdev[{}]", i + 1);
        if h.attr("mode").unwrap_or("subsystem") != "subsystem" {
            return Err(unsupported(
                &format!("{path}/@mode"),
                "capabilities host devices",
            ));
        }
        let src = h
            .child("source")
            .ok_or_else(|| invalid(&format!("{path}/source"), "missing"))?;
        match h.attr("type") {
            Some("pci") => {
                let a = src
                    .child("address")
                    .ok_or_else(|| invalid(&format!("{path}/source/address"), "missing"))?;
                let f = |n: &str| -> Result<u32, ConvertError> {
                    hex_field(
                        a.attr(n).unwrap_or("0"),
                        &format!("{path}/source/address/@{n}"),
                    )
                };
                let mut s = format!(
                    "{:04x}:{:02x}:{:02x}.{:x}",
                    f("domain")?,
                    f("bus")?,
                    f("slot")?,
                    f("function")?
                );
                if src.attr("writeFiltering") == Some("no") {
                    s.push_str(",permissive=1");
                }
                if h.attr("managed") == Some("yes") {
                    s.push_str(",seize=1");
                }
                pci.push(s);
            }
            Some("usb") => {
                let a = src.child("address").ok_or_else(|| {
                    unsupported(
                        &format!("{path}/source/vendor"),
                        "a USB device chosen by vendor and product (xl needs hostbus and hostaddr)",
                    )
                })?;
                let bus = hex_field(
                    a.attr("bus").unwrap_or(""),
                    &format!("{path}/source/address/@bus"),
                )?;
                let dev = hex_field(
                    a.attr("device").unwrap_or(""),
                    &format!("{path}/source/address/@device"),
                )?;
                usb.push(format!("hostbus={bus},hostaddr={dev}"));
            }
            other => {
                return Err(unsupported(
                    &format!("{path}/@type"),
                    format!("host device type '{}'", other.unwrap_or("")),
                ));
            }
        }
    }
    if !pci.is_empty() {
        c.set("pci", Value::strings(&pci));
    }
    if !usb.is_empty() {
        c.set("usbdev", Value::strings(&usb));
    }
    Ok(())
}

fn channels_to_cfg(dom: &Element, c: &mut Cfg) -> Result<(), ConvertError> {
    let mut out = Vec::new();
    for (i, ch) in devices(dom).filter(|d| d.name() == "channel").enumerate() {
        let path = format!("domain/devices/channel[{}]", i + 1);
        let target = ch.child("target");
        if target.and_then(|t| t.attr("type")) != Some("xen") {
            return Err(unsupported(
                &format!("{path}/target/@type"),
                "a channel other than type 'xen'",
            ));
        }
        let name = target.and_then(|t| t.attr("name"));
        let spec = match ch.attr("type").unwrap_or("pty") {
            "pty" => "connection=pty".to_string(),
            "unix" => {
                let p = ch
                    .child("source")
                    .and_then(|s| s.attr("path"))
                    .ok_or_else(|| invalid(&format!("{path}/source/@path"), "missing"))?;
                format!("connection=socket,path={p}")
            }
            other => {
                return Err(unsupported(
                    &format!("{path}/@type"),
                    format!("channel type '{other}'"),
                ));
            }
        };
        out.push(match name {
            Some(n) => format!("{spec},name={n}"),
            None => spec,
        });
    }
    if !out.is_empty() {
        c.set("channel", Value::strings(&out));
    }
    Ok(())
}

fn usb_to_cfg(dom: &Element, c: &mut Cfg) -> Result<(), ConvertError> {
    let mut ctrls = Vec::new();
    for (i, u) in devices(dom)
        .filter(|d| d.name() == "controller" && d.attr("type") == Some("usb"))
        .enumerate()
    {
        let path = format!("domain/devices/controller[@type='usb'][{}]", i + 1);
        let version = match u.attr("model") {
            Some("qusb1") => 1,
            Some("qusb2") => 2,
            None | Some("none") => continue,
            Some(m) => {
                return Err(unsupported(
                    &format!("{path}/@model"),
                    format!("USB controller model '{m}' (xl has qusb1 and qusb2)"),
                ));
            }
        };
        let mut s = format!("type=qusb,version={version}");
        if let Some(p) = u.attr("ports") {
            s.push_str(&format!(
                ",ports={}",
                parse_u64(&format!("{path}/@ports"), p)?
            ));
        }
        ctrls.push(s);
    }
    if !ctrls.is_empty() {
        c.set("usbctrl", Value::strings(&ctrls));
    }
    let tablets: Vec<&str> = devices(dom)
        .filter(|d| d.name() == "input" && d.attr("bus") == Some("usb"))
        .filter_map(|d| match d.attr("type") {
            Some("tablet") => Some("tablet"),
            Some("mouse") => Some("mouse"),
            _ => None,
        })
        .collect();
    if !tablets.is_empty() {
        c.set("usbdevice", Value::strings(&tablets));
    }
    Ok(())
}

// ------------------------------------------------------------ cfg -> XML

/// Converts xl.cfg text to domain XML text.
pub fn xl_to_xml(text: &str) -> Result<String, ConvertError> {
    let cfg = Cfg::parse(text).map_err(ConvertError::Syntax)?;
    Ok(cfg_to_domain(&cfg)?.to_xml_string())
}

fn get_str(c: &Cfg, key: &str) -> Result<Option<String>, ConvertError> {
    match c.get(key) {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.clone())),
        Some(Value::Num(n)) => Ok(Some(n.to_string())),
        Some(Value::List(_)) => Err(bad_key(key, "a list where a string belongs")),
    }
}

fn get_num(c: &Cfg, key: &str) -> Result<Option<i64>, ConvertError> {
    match c.get(key) {
        None => Ok(None),
        Some(Value::Num(n)) => Ok(Some(*n)),
        Some(Value::Str(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| bad_key(key, format!("'{s}' is not a number"))),
        Some(Value::List(_)) => Err(bad_key(key, "a list where a number belongs")),
    }
}

fn get_bool(c: &Cfg, key: &str) -> Result<Option<bool>, ConvertError> {
    Ok(get_num(c, key)?.map(|n| n != 0))
}

/// A string or a list of strings, as a list.
fn get_list(c: &Cfg, key: &str) -> Result<Vec<String>, ConvertError> {
    match c.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Str(s)) => Ok(vec![s.clone()]),
        Some(Value::Num(n)) => Ok(vec![n.to_string()]),
        Some(Value::List(items)) => items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.clone()),
                Value::Num(n) => Ok(n.to_string()),
                Value::List(_) => Err(bad_key(key, "a nested list where strings belong")),
            })
            .collect(),
    }
}

/// `key=value` options of a comma-separated spec.
fn spec_opts(spec: &str) -> Vec<(String, String)> {
    spec.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (p.trim().to_string(), String::new()),
        })
        .collect()
}

fn opt<'a>(opts: &'a [(String, String)], k: &str) -> Option<&'a str> {
    opts.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

/// A parsed xl disk spec (xl-disk-configuration(5)).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub target: Option<String>,
    pub format: Option<String>,
    pub vdev: Option<String>,
    pub access: Option<String>,
    pub devtype: Option<String>,
    pub backendtype: Option<String>,
    pub backend: Option<String>,
    pub script: Option<String>,
}

/// The image formats a positional disk spec may name.
const KNOWN_FORMATS: &[&str] = &["raw", "qcow", "qcow2", "vhd", "qed"];

/// Parses a disk spec: positional `target,format,vdev,access` and/or `key=value`
/// parameters; `target=` takes the rest of the spec, commas included.
pub fn parse_disk_spec(spec: &str) -> Result<DiskSpec, ConvertError> {
    let mut d = DiskSpec::default();
    let mut pos = 0;
    let mut rest = spec;
    loop {
        if let Some(t) = rest.strip_prefix("target=") {
            d.target = Some(t.to_string());
            break;
        }
        let (tok, next) = match rest.find(',') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let tok = tok.trim();
        match tok.split_once('=') {
            Some((k, v)) if pos >= 1 || !tok.starts_with('/') => {
                let v = v.to_string();
                match k {
                    "format" => d.format = Some(v),
                    "vdev" => d.vdev = Some(v),
                    "access" => d.access = Some(v),
                    "devtype" => d.devtype = Some(v),
                    "backendtype" => d.backendtype = Some(v),
                    "backend" => d.backend = Some(v),
                    "script" => d.script = Some(v),
                    _ => {}
                }
            }
            _ => {
                if tok == "cdrom" && pos >= 4 {
                    d.devtype = Some("cdrom".into());
                } else if !tok.is_empty() || pos < 4 {
                    // the legacy `target,vdev,access` form leaves out the format
                    if pos == 1 && !tok.is_empty() && !KNOWN_FORMATS.contains(&tok) {
                        pos = 2;
                    }
                    let v = (!tok.is_empty()).then(|| tok.to_string());
                    match pos {
                        0 => d.target = v,
                        1 => d.format = v,
                        2 => d.vdev = v,
                        3 => d.access = v,
                        _ if tok == "cdrom" => d.devtype = Some("cdrom".into()),
                        _ => {}
                    }
                    pos += 1;
                }
            }
        }
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    // legacy prefixes on the target
    if let Some(t) = d.target.clone() {
        let mut t = t.as_str();
        while let Some((p, r)) = t.split_once(':') {
            match p {
                "phy" => d.backendtype = Some("phy".into()),
                "file" | "aio" => {
                    d.format.get_or_insert_with(|| "raw".into());
                }
                "tap" | "tap2" => d.backendtype = Some("tap".into()),
                "qcow" | "qcow2" | "vhd" | "raw" | "qed" => d.format = Some(p.to_string()),
                _ => break,
            }
            t = r;
        }
        d.target = Some(t.to_string());
    }
    if let Some(v) = d.vdev.clone()
        && let Some(base) = v.strip_suffix(":cdrom")
    {
        d.vdev = Some(base.to_string());
        d.devtype = Some("cdrom".into());
    }
    if d.vdev.is_none() {
        return Err(bad_key(
            "disk",
            format!("'{spec}' names no virtual device (vdev)"),
        ));
    }
    Ok(d)
}

/// Splits on `sep` where it is not escaped by a backslash; the pieces keep their escapes.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            out.last_mut().unwrap_or(&mut String::new()).push(c);
            if let Some(n) = it.next()
                && let Some(l) = out.last_mut()
            {
                l.push(n);
            }
        } else if c == sep {
            out.push(String::new());
        } else if let Some(l) = out.last_mut() {
            l.push(c);
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn rbd_source(target: &str) -> Result<Element, ConvertError> {
    let body = target.strip_prefix("rbd:").unwrap_or(target);
    let parts = split_unescaped(body, ':');
    let mut src = Element::new("source").with_attr("protocol", "rbd");
    let mut name = unescape(&parts[0]);
    let mut snap = None;
    if let Some((n, s)) = name.clone().split_once('@') {
        name = n.to_string();
        snap = Some(s.to_string());
    }
    src.set_attr("name", &name);
    let mut auth_user = None;
    let mut conf = None;
    for p in &parts[1..] {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        match k {
            "mon_host" => {
                for h in v.split("\\;") {
                    let (name, port) = match h.rsplit_once("\\:") {
                        Some((n, p)) => (n, Some(p)),
                        None => (h, None),
                    };
                    let mut he = Element::new("host").with_attr("name", &unescape(name));
                    if let Some(port) = port {
                        he.set_attr("port", &unescape(port));
                    }
                    src.push(he);
                }
            }
            "id" => auth_user = Some(unescape(v)),
            "conf" => conf = Some(unescape(v)),
            _ => {}
        }
    }
    if let Some(s) = snap {
        src.push(Element::new("snapshot").with_attr("name", &s));
    }
    if let Some(c) = conf {
        src.push(Element::new("config").with_attr("file", &c));
    }
    if let Some(u) = auth_user {
        src.push(Element::new("auth").with_attr("username", &u));
    }
    Ok(src)
}

fn drive_address(bus: &str, idx: u32) -> Option<Element> {
    let (controller, b, unit) = match bus {
        "ide" => (idx / 4, (idx % 4) / 2, idx % 2),
        "scsi" => (idx / 7, 0, idx % 7),
        _ => return None,
    };
    Some(
        Element::new("address")
            .with_attr("type", "drive")
            .with_attr("controller", &controller.to_string())
            .with_attr("bus", &b.to_string())
            .with_attr("target", "0")
            .with_attr("unit", &unit.to_string()),
    )
}

fn disk_element(spec: &str, ctrls: &mut Vec<(String, u32)>) -> Result<Element, ConvertError> {
    let d = parse_disk_spec(spec)?;
    let vdev = d.vdev.clone().unwrap_or_default();
    let cdrom = d.devtype.as_deref() == Some("cdrom");
    let target = d.target.filter(|t| !t.is_empty());
    let backend = d.backendtype.as_deref();
    let network = target.as_deref().is_some_and(|t| t.starts_with("rbd:"));
    let (ty, driver_name) = if network {
        ("network", "qemu")
    } else {
        match backend {
            Some("phy") => ("block", "phy"),
            Some("tap") => ("file", "tap"),
            _ => ("file", "qemu"),
        }
    };
    let format = match d.format.as_deref() {
        None | Some("") => "raw",
        Some(f) => f,
    };
    let mut e = Element::new("disk")
        .with_attr("type", ty)
        .with_attr("device", if cdrom { "cdrom" } else { "disk" });
    e.push(
        Element::new("driver")
            .with_attr("name", driver_name)
            .with_attr("type", format),
    );
    if let Some(t) = &target {
        e.push(match ty {
            "network" => rbd_source(t)?,
            "block" => Element::new("source").with_attr("dev", t),
            _ => Element::new("source").with_attr("file", t),
        });
    }
    let (bus, idx) = disk_bus_index(&vdev).unwrap_or(("xen", 0));
    e.push(
        Element::new("target")
            .with_attr("dev", &vdev)
            .with_attr("bus", bus),
    );
    let ro = cdrom || matches!(d.access.as_deref(), Some("r") | Some("ro"));
    if ro {
        e.push(Element::new("readonly"));
    }
    if let Some(a) = drive_address(bus, idx) {
        let c: u32 = a
            .attr("controller")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if !ctrls.iter().any(|(b, i)| b == bus && *i == c) {
            ctrls.push((bus.to_string(), c));
        }
        e.push(a);
    }
    Ok(e)
}

/// Reads a vif `rate`: `NUM{B,KB,MB,GB}/s` or `NUM{b,Kb,Mb,Gb}/s`, optionally
/// `@INTERVAL`; returns KB/s.
fn parse_rate(r: &str) -> Result<u64, ConvertError> {
    let r = r.split('@').next().unwrap_or("");
    let r = r.strip_suffix("/s").unwrap_or(r);
    let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
    let unit = &r[digits.len()..];
    let n: u64 = digits
        .parse()
        .map_err(|_| bad_key("vif", format!("rate '{r}' has no number")))?;
    let bytes: u64 = match unit {
        "B" | "" => n,
        "KB" => n * 1024,
        "MB" => n * 1024 * 1024,
        "GB" => n * 1024 * 1024 * 1024,
        "b" => n / 8,
        "Kb" => n * 1024 / 8,
        "Mb" => n * 1024 * 1024 / 8,
        "Gb" => n * 1024 * 1024 * 1024 / 8,
        _ => return Err(bad_key("vif", format!("rate unit '{unit}' is unknown"))),
    };
    Ok(bytes / 1024)
}

fn vif_element(spec: &str, hvm: bool) -> Result<Element, ConvertError> {
    let opts = spec_opts(spec);
    let bridge = opt(&opts, "bridge").filter(|b| !b.is_empty());
    let script = opt(&opts, "script").filter(|b| !b.is_empty());
    let mut e = Element::new("interface").with_attr(
        "type",
        if bridge.is_some() {
            "bridge"
        } else {
            "ethernet"
        },
    );
    if let Some(m) = opt(&opts, "mac") {
        e.push(Element::new("mac").with_attr("address", &m.to_ascii_lowercase()));
    }
    let ovs = script.is_some_and(|s| s.contains("openvswitch"));
    if let Some(b) = bridge {
        let (name, vlan) = if ovs {
            if let Some((n, tags)) = b.split_once(':') {
                (
                    n,
                    Some((
                        true,
                        tags.split(':').map(str::to_string).collect::<Vec<_>>(),
                    )),
                )
            } else if let Some((n, tag)) = b.split_once('.') {
                (n, Some((false, vec![tag.to_string()])))
            } else {
                (b, None)
            }
        } else {
            (b, None)
        };
        e.push(Element::new("source").with_attr("bridge", name));
        if let Some(ip) = opt(&opts, "ip") {
            push_ips(&mut e, ip);
        }
        if let Some((trunk, tags)) = vlan {
            let mut v = Element::new("vlan");
            if trunk {
                v.set_attr("trunk", "yes");
            }
            for t in tags {
                v.push(Element::new("tag").with_attr("id", &t));
            }
            e.push(v);
        }
        if ovs {
            e.push(Element::new("virtualport").with_attr("type", "openvswitch"));
        }
    } else if let Some(ip) = opt(&opts, "ip") {
        push_ips(&mut e, ip);
    }
    if let Some(r) = opt(&opts, "rate") {
        let kb = parse_rate(r)?;
        let mut bw = Element::new("bandwidth");
        bw.push(Element::new("outbound").with_attr("average", &kb.to_string()));
        e.push(bw);
    }
    if let Some(s) = script {
        e.push(Element::new("script").with_attr("path", s));
    }
    if let Some(b) = opt(&opts, "backend") {
        e.push(Element::new("backenddomain").with_attr("name", b));
    }
    if let Some(v) = opt(&opts, "vifname") {
        e.push(Element::new("target").with_attr("dev", v));
    }
    let model = opt(&opts, "model").filter(|m| !m.is_empty());
    match (model, opt(&opts, "type")) {
        (Some(m), _) if hvm => e.push(Element::new("model").with_attr("type", m)),
        (_, Some("vif")) | (_, Some("netfront")) => {
            e.push(Element::new("model").with_attr("type", "netfront"))
        }
        _ => {}
    }
    Ok(e)
}

fn push_ips(e: &mut Element, ips: &str) {
    for ip in ips.split_whitespace() {
        let fam = if ip.contains(':') { "ipv6" } else { "ipv4" };
        e.push(
            Element::new("ip")
                .with_attr("address", ip)
                .with_attr("family", fam),
        );
    }
}

/// A character device from an xl `serial`/`parallel` value.
fn chardev_element(name: &str, spec: &str, port: usize) -> Option<Element> {
    let mut e = Element::new(name);
    let (ty, src): (&str, Option<Element>) = if spec == "pty" {
        ("pty", None)
    } else if spec == "null" {
        ("null", None)
    } else if spec == "vc" {
        ("vc", None)
    } else if spec == "stdio" {
        ("stdio", None)
    } else if let Some(p) = spec.strip_prefix("file:") {
        ("file", Some(Element::new("source").with_attr("path", p)))
    } else if let Some(p) = spec.strip_prefix("pipe:") {
        ("pipe", Some(Element::new("source").with_attr("path", p)))
    } else if let Some(rest) = spec.strip_prefix("unix:") {
        let (p, server) = match rest.split_once(',') {
            Some((p, o)) => (p, o.contains("server")),
            None => (rest, false),
        };
        (
            "unix",
            Some(
                Element::new("source")
                    .with_attr("mode", if server { "bind" } else { "connect" })
                    .with_attr("path", p),
            ),
        )
    } else if let Some(rest) = spec.strip_prefix("tcp:") {
        let (hp, server) = match rest.split_once(',') {
            Some((p, o)) => (p, o.contains("server")),
            None => (rest, false),
        };
        let (h, p) = hp.rsplit_once(':').unwrap_or((hp, ""));
        (
            "tcp",
            Some(
                Element::new("source")
                    .with_attr("mode", if server { "bind" } else { "connect" })
                    .with_attr("host", h)
                    .with_attr("service", p),
            ),
        )
    } else if spec.starts_with('/') {
        ("dev", Some(Element::new("source").with_attr("path", spec)))
    } else {
        return None;
    };
    e.set_attr("type", ty);
    if let Some(s) = src {
        e.push(s);
    }
    e.push(Element::new("target").with_attr("port", &port.to_string()));
    Some(e)
}

/// Converts xl.cfg settings to a domain XML tree, with libvirt's post-parse defaults.
pub fn cfg_to_domain(c: &Cfg) -> Result<Element, ConvertError> {
    let gt = match (
        get_str(c, "type")?.as_deref(),
        get_str(c, "builder")?.as_deref(),
    ) {
        (Some("pv"), _) => GuestType::Pv,
        (Some("pvh"), _) => GuestType::Pvh,
        (Some("hvm"), _) => GuestType::Hvm,
        (Some(other), _) => return Err(bad_key("type", format!("unknown guest type '{other}'"))),
        (None, Some("hvm")) => GuestType::Hvm,
        (None, Some("generic")) | (None, None) => GuestType::Pv,
        (None, Some(other)) => {
            return Err(bad_key("builder", format!("unknown builder '{other}'")));
        }
    };
    let hvm = gt == GuestType::Hvm;
    let mut dom = Element::new("domain").with_attr("type", "xen");
    let name = get_str(c, "name")?.ok_or_else(|| bad_key("name", "missing"))?;
    dom.push(Element::new("name").with_text(&name));
    if let Some(u) = get_str(c, "uuid")? {
        let parsed = uuid::Uuid::parse_str(&u)
            .map_err(|_| bad_key("uuid", format!("'{u}' is not a UUID")))?;
        dom.push(Element::new("uuid").with_text(&parsed.hyphenated().to_string()));
    }
    let memory = get_num(c, "memory")?.unwrap_or(128);
    let maxmem = get_num(c, "maxmem")?.unwrap_or(memory).max(memory);
    if memory < 0 {
        return Err(bad_key("memory", "negative"));
    }
    dom.push(kib_element("memory", maxmem as u64 * 1024));
    dom.push(kib_element("currentMemory", memory as u64 * 1024));
    let vcpus = get_num(c, "vcpus")?.unwrap_or(1);
    let maxvcpus = get_num(c, "maxvcpus")?.unwrap_or(vcpus);
    if vcpus < 1 || maxvcpus < vcpus {
        return Err(bad_key(
            "vcpus",
            format!("{vcpus} vCPUs with a maximum of {maxvcpus}"),
        ));
    }
    let mut v = Element::new("vcpu").with_attr("placement", "static");
    if let Some(cpus) = get_str(c, "cpus")? {
        v.set_attr("cpuset", &cpus);
    }
    if maxvcpus != vcpus {
        v.set_attr("current", &vcpus.to_string());
    }
    v.set_text(&maxvcpus.to_string());
    dom.push(v);
    if !hvm && let Some(b) = get_str(c, "bootloader")? {
        dom.push(Element::new("bootloader").with_text(&b));
        if let Some(a) = get_list(c, "bootloader_args")
            .ok()
            .filter(|a| !a.is_empty())
        {
            dom.push(Element::new("bootloader_args").with_text(&a.join(" ")));
        }
    }
    dom.push(os_element(c, gt)?);
    if let Some(f) = features_element(c, hvm)? {
        dom.push(f);
    }
    if let Some(cpu) = cpu_element(c, hvm)? {
        dom.push(cpu);
    }
    dom.push(clock_element(c, hvm)?);
    for (key, default) in [
        ("on_poweroff", "destroy"),
        ("on_reboot", "restart"),
        ("on_crash", "restart"),
    ] {
        let v = get_str(c, key)?.unwrap_or_else(|| default.to_string());
        let v = v.replace('_', "-");
        if !matches!(
            v.as_str(),
            "destroy"
                | "restart"
                | "preserve"
                | "rename-restart"
                | "coredump-destroy"
                | "coredump-restart"
        ) {
            return Err(bad_key(key, format!("unknown action '{v}'")));
        }
        dom.push(Element::new(key).with_text(&v));
    }
    dom.push(devices_element(c, gt)?);
    let args = get_list(c, "device_model_args")?;
    if !args.is_empty() {
        dom.set_attr("xmlns:xen", XEN_NS);
        let mut cl = Element::new("xen:commandline");
        for a in args {
            cl.push(Element::new("xen:arg").with_attr("value", &a));
        }
        dom.push(cl);
    }
    Ok(dom)
}

fn os_element(c: &Cfg, gt: GuestType) -> Result<Element, ConvertError> {
    let mut os = Element::new("os");
    let (machine, text) = match gt {
        GuestType::Hvm => ("xenfv", "hvm"),
        GuestType::Pv => ("xenpv", "linux"),
        GuestType::Pvh => ("xenpvh", "xenpvh"),
    };
    os.push(
        Element::new("type")
            .with_attr("arch", "x86_64")
            .with_attr("machine", machine)
            .with_text(text),
    );
    if gt == GuestType::Hvm {
        match get_str(c, "bios")?.as_deref() {
            Some("ovmf") => {
                let path = get_str(c, "bios_path_override")?
                    .unwrap_or_else(|| "/usr/lib/xen/boot/ovmf.bin".to_string());
                os.push(
                    Element::new("loader")
                        .with_attr("readonly", "yes")
                        .with_attr("type", "pflash")
                        .with_text(&path),
                );
            }
            _ => os.push(
                Element::new("loader")
                    .with_attr("type", "rom")
                    .with_text(HVMLOADER),
            ),
        }
    }
    if let Some(k) = get_str(c, "kernel")? {
        os.push(Element::new("kernel").with_text(&k));
    }
    if let Some(r) = get_str(c, "ramdisk")? {
        os.push(Element::new("initrd").with_text(&r));
    }
    let cmdline = match get_str(c, "cmdline")? {
        Some(cl) => Some(cl),
        None => {
            let root = get_str(c, "root")?;
            let extra = get_str(c, "extra")?;
            match (root, extra) {
                (Some(r), Some(e)) => Some(format!("root={r} {e}")),
                (Some(r), None) => Some(format!("root={r}")),
                (None, e) => e,
            }
        }
    };
    if let Some(cl) = cmdline {
        os.push(Element::new("cmdline").with_text(&cl));
    }
    if gt == GuestType::Hvm {
        if let Some(slic) = get_str(c, "acpi_firmware")? {
            let mut acpi = Element::new("acpi");
            acpi.push(
                Element::new("table")
                    .with_attr("type", "slic")
                    .with_text(&slic),
            );
            os.push(acpi);
        }
        let boot = get_str(c, "boot")?.unwrap_or_else(|| "c".to_string());
        for ch in boot.chars() {
            let dev = match ch {
                'a' => "fd",
                'c' => "hd",
                'd' => "cdrom",
                'n' => "network",
                other => return Err(bad_key("boot", format!("unknown boot device '{other}'"))),
            };
            os.push(Element::new("boot").with_attr("dev", dev));
        }
    }
    Ok(os)
}

fn features_element(c: &Cfg, hvm: bool) -> Result<Option<Element>, ConvertError> {
    let mut f = Element::new("features");
    if hvm {
        for (key, default) in [("acpi", true), ("apic", true), ("pae", true)] {
            if get_bool(c, key)?.unwrap_or(default) {
                f.push(Element::new(key));
            }
        }
        if let Some(h) = get_bool(c, "hap")? {
            f.push(Element::new("hap").with_attr("state", if h { "on" } else { "off" }));
        }
        if get_bool(c, "viridian")?.unwrap_or(false) {
            f.push(Element::new("viridian"));
        }
    }
    let mut xen = Element::new("xen");
    if let Some(e) = get_bool(c, "e820_host")? {
        xen.push(Element::new("e820_host").with_attr("state", if e { "on" } else { "off" }));
    }
    if let Some(p) = get_str(c, "passthrough")? {
        let e = match p.as_str() {
            "disabled" => Element::new("passthrough").with_attr("state", "off"),
            "enabled" => Element::new("passthrough").with_attr("state", "on"),
            "sync_pt" | "share_pt" => Element::new("passthrough")
                .with_attr("state", "on")
                .with_attr("mode", &p),
            other => return Err(bad_key("passthrough", format!("unknown mode '{other}'"))),
        };
        xen.push(e);
    }
    if !xen.is_empty() {
        f.push(xen);
    }
    Ok((!f.is_empty()).then_some(f))
}

fn cpu_element(c: &Cfg, hvm: bool) -> Result<Option<Element>, ConvertError> {
    let mut cpu = Element::new("cpu");
    let nested = if hvm { get_bool(c, "nestedhvm")? } else { None };
    let cpuid = get_str(c, "cpuid").map_err(|_| {
        bad_key(
            "cpuid",
            "the list form of cpuid is not supported; use the string form",
        )
    })?;
    if nested.is_some() || cpuid.is_some() {
        cpu.set_attr("mode", "host-passthrough");
    }
    if nested == Some(false) {
        cpu.push(
            Element::new("feature")
                .with_attr("policy", "disable")
                .with_attr("name", "vmx"),
        );
    }
    if let Some(id) = cpuid {
        let mut parts = id.split(',');
        if parts.next() != Some("host") {
            return Err(bad_key("cpuid", format!("'{id}' must start with 'host'")));
        }
        for p in parts {
            let (name, val) = p
                .split_once('=')
                .ok_or_else(|| bad_key("cpuid", format!("'{p}' is not NAME=VALUE")))?;
            let policy = match val {
                "0" => "disable",
                "1" => "force",
                "x" => "optional",
                "k" | "s" => "require",
                other => return Err(bad_key("cpuid", format!("value '{other}' of '{name}'"))),
            };
            cpu.push(
                Element::new("feature")
                    .with_attr("policy", policy)
                    .with_attr("name", cpuid_to_libvirt(name)),
            );
        }
    }
    if let Some(Value::List(nodes)) = c.get("vnuma") {
        let mut numa = Element::new("numa");
        let mut rows: Vec<Vec<String>> = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let Value::List(items) = node else {
                return Err(bad_key("vnuma", "each virtual node must be a list"));
            };
            let kv: Vec<(String, String)> = items
                .iter()
                .filter_map(|v| match v {
                    Value::Str(s) => s
                        .split_once('=')
                        .map(|(a, b)| (a.to_string(), b.to_string())),
                    _ => None,
                })
                .collect();
            let size: u64 = opt(&kv, "size")
                .ok_or_else(|| bad_key("vnuma", format!("node {i} has no size")))?
                .parse()
                .map_err(|_| bad_key("vnuma", format!("node {i}: size is not a number")))?;
            let cpus = opt(&kv, "vcpus")
                .ok_or_else(|| bad_key("vnuma", format!("node {i} has no vcpus")))?;
            let mut cell = Element::new("cell")
                .with_attr("id", &i.to_string())
                .with_attr("cpus", cpus)
                .with_attr("memory", &(size * 1024).to_string())
                .with_attr("unit", "KiB");
            if let Some(d) = opt(&kv, "vdistances") {
                let row: Vec<String> = d.split(',').map(str::to_string).collect();
                let mut dist = Element::new("distances");
                for (j, v) in row.iter().enumerate() {
                    dist.push(
                        Element::new("sibling")
                            .with_attr("id", &j.to_string())
                            .with_attr("value", v),
                    );
                }
                cell.push(dist);
                rows.push(row);
            }
            numa.push(cell);
        }
        cpu.push(numa);
    }
    Ok((!cpu.is_empty() || cpu.attr("mode").is_some()).then_some(cpu))
}

fn clock_element(c: &Cfg, hvm: bool) -> Result<Element, ConvertError> {
    let local = get_bool(c, "localtime")?.unwrap_or(false);
    let mut clock = Element::new("clock");
    match (hvm, get_num(c, "rtc_timeoffset")?) {
        (true, Some(off)) => {
            clock.set_attr("offset", "variable");
            clock.set_attr("adjustment", &off.to_string());
            clock.set_attr("basis", if local { "localtime" } else { "utc" });
        }
        _ => {
            clock.set_attr("offset", if local { "localtime" } else { "utc" });
            clock.set_attr("adjustment", "reset");
        }
    }
    if let Some(t) = get_str(c, "tsc_mode")? {
        let mode = match t.as_str() {
            "native" => "native",
            "always_emulate" => "emulate",
            "native_paravirt" => "paravirt",
            "default" => "auto",
            other => return Err(bad_key("tsc_mode", format!("unknown mode '{other}'"))),
        };
        clock.push(
            Element::new("timer")
                .with_attr("name", "tsc")
                .with_attr("present", "yes")
                .with_attr("mode", mode),
        );
    }
    if hvm && let Some(h) = get_bool(c, "hpet")? {
        clock.push(
            Element::new("timer")
                .with_attr("name", "hpet")
                .with_attr("present", if h { "yes" } else { "no" }),
        );
    }
    Ok(clock)
}

fn graphics_elements(c: &Cfg, gt: GuestType) -> Result<Vec<Element>, ConvertError> {
    let mut out = Vec::new();
    let vnc_el = |display: Option<i64>,
                  unused: bool,
                  listen: Option<String>,
                  passwd: Option<String>,
                  keymap: Option<String>| {
        let mut g = Element::new("graphics").with_attr("type", "vnc");
        match display {
            Some(d) if !unused => {
                g.set_attr("port", &(5900 + d).to_string());
                g.set_attr("autoport", "no");
            }
            _ => {
                g.set_attr("port", "-1");
                g.set_attr("autoport", "yes");
            }
        }
        if let Some(l) = &listen {
            g.set_attr("listen", l);
        }
        if let Some(p) = passwd {
            g.set_attr("passwd", &p);
        }
        if let Some(k) = keymap {
            g.set_attr("keymap", &k);
        }
        if let Some(l) = listen {
            g.push(
                Element::new("listen")
                    .with_attr("type", "address")
                    .with_attr("address", &l),
            );
        }
        g
    };
    if gt == GuestType::Hvm {
        if get_bool(c, "vnc")?.unwrap_or(false) {
            out.push(vnc_el(
                get_num(c, "vncdisplay")?,
                get_bool(c, "vncunused")?.unwrap_or(true) && get_num(c, "vncdisplay")?.is_none(),
                get_str(c, "vnclisten")?,
                get_str(c, "vncpasswd")?,
                get_str(c, "keymap")?,
            ));
        }
        if get_bool(c, "sdl")?.unwrap_or(false) {
            let mut g = Element::new("graphics").with_attr("type", "sdl");
            if let Some(d) = get_str(c, "display")? {
                g.set_attr("display", &d);
            }
            if let Some(x) = get_str(c, "xauthority")? {
                g.set_attr("xauth", &x);
            }
            out.push(g);
        }
        if get_bool(c, "spice")?.unwrap_or(false) {
            let mut g = Element::new("graphics").with_attr("type", "spice");
            let port = get_num(c, "spiceport")?;
            let tls = get_num(c, "spicetls_port")?;
            match port {
                Some(p) => g.set_attr("port", &p.to_string()),
                None => g.set_attr("port", "-1"),
            }
            if let Some(t) = tls {
                g.set_attr("tlsPort", &t.to_string());
            }
            g.set_attr(
                "autoport",
                if port.is_some() || tls.is_some() {
                    "no"
                } else {
                    "yes"
                },
            );
            let host = get_str(c, "spicehost")?;
            if let Some(h) = &host {
                g.set_attr("listen", h);
            }
            if !get_bool(c, "spicedisable_ticketing")?.unwrap_or(false)
                && let Some(p) = get_str(c, "spicepasswd")?
            {
                g.set_attr("passwd", &p);
            }
            if let Some(h) = host {
                g.push(
                    Element::new("listen")
                        .with_attr("type", "address")
                        .with_attr("address", &h),
                );
            }
            let mouse = get_bool(c, "spiceagent_mouse")?.unwrap_or(false);
            g.push(
                Element::new("mouse").with_attr("mode", if mouse { "client" } else { "server" }),
            );
            let clip = get_bool(c, "spicevdagent")?.unwrap_or(false)
                && get_bool(c, "spice_clipboard_sharing")?.unwrap_or(false);
            g.push(
                Element::new("clipboard").with_attr("copypaste", if clip { "yes" } else { "no" }),
            );
            out.push(g);
        }
    } else {
        for spec in get_list(c, "vfb")? {
            let o = spec_opts(&spec);
            let flag = |k: &str| opt(&o, k).is_some_and(|v| v == "1");
            let ty = opt(&o, "type");
            if flag("vnc") || ty == Some("vnc") {
                let num = |k: &str| opt(&o, k).and_then(|v| v.parse::<i64>().ok());
                let display = num("vncdisplay");
                out.push(vnc_el(
                    display,
                    opt(&o, "vncunused").is_none_or(|v| v != "0") && display.is_none(),
                    opt(&o, "vnclisten").map(str::to_string),
                    opt(&o, "vncpasswd").map(str::to_string),
                    opt(&o, "keymap").map(str::to_string),
                ));
            }
            if flag("sdl") || ty == Some("sdl") {
                let mut g = Element::new("graphics").with_attr("type", "sdl");
                if let Some(d) = opt(&o, "display") {
                    g.set_attr("display", d);
                }
                if let Some(x) = opt(&o, "xauthority") {
                    g.set_attr("xauth", x);
                }
                out.push(g);
            }
        }
    }
    Ok(out)
}

fn devices_element(c: &Cfg, gt: GuestType) -> Result<Element, ConvertError> {
    let hvm = gt == GuestType::Hvm;
    let mut devs = Element::new("devices");
    if hvm && let Some(em) = get_str(c, "device_model_override")? {
        devs.push(Element::new("emulator").with_text(&em));
    }
    let mut ctrls: Vec<(String, u32)> = Vec::new();
    for spec in get_list(c, "disk")? {
        devs.push(disk_element(&spec, &mut ctrls)?);
    }
    let mut xenbus = Element::new("controller")
        .with_attr("type", "xenbus")
        .with_attr("index", "0");
    if let Some(m) = get_num(c, "max_event_channels")? {
        xenbus.set_attr("maxEventChannels", &m.to_string());
    }
    if let Some(m) = get_num(c, "max_grant_frames")? {
        xenbus.set_attr("maxGrantFrames", &m.to_string());
    }
    devs.push(xenbus);
    ctrls.sort();
    for (bus, idx) in &ctrls {
        devs.push(
            Element::new("controller")
                .with_attr("type", bus)
                .with_attr("index", &idx.to_string()),
        );
    }
    for (i, spec) in get_list(c, "usbctrl")?.iter().enumerate() {
        let o = spec_opts(spec);
        let version = opt(&o, "version").unwrap_or("2");
        let model = match (opt(&o, "type").unwrap_or("auto"), version) {
            (_, "1") => "qusb1",
            (_, "2") => "qusb2",
            (_, v) => {
                return Err(bad_key(
                    "usbctrl",
                    format!("USB version '{v}' is not supported"),
                ));
            }
        };
        let mut e = Element::new("controller")
            .with_attr("type", "usb")
            .with_attr("index", &i.to_string())
            .with_attr("model", model);
        if let Some(p) = opt(&o, "ports") {
            e.set_attr("ports", p);
        }
        devs.push(e);
    }
    for spec in get_list(c, "vif")? {
        devs.push(vif_element(&spec, hvm)?);
    }
    if hvm {
        let serials = get_list(c, "serial")?;
        let mut first_serial = None;
        for (i, s) in serials.iter().enumerate() {
            if s == "none" {
                continue;
            }
            let e = chardev_element("serial", s, i)
                .ok_or_else(|| bad_key("serial", format!("'{s}' is not a character device")))?;
            if first_serial.is_none() {
                first_serial = Some(e.attr("type").unwrap_or("pty").to_string());
            }
            devs.push(e);
        }
        if let Some(p) = get_str(c, "parallel")?.filter(|p| p != "none") {
            devs.push(
                chardev_element("parallel", &p, 0).ok_or_else(|| {
                    bad_key("parallel", format!("'{p}' is not a character device"))
                })?,
            );
        }
        if let Some(t) = first_serial {
            let mut con = Element::new("console").with_attr("type", &t);
            con.push(
                Element::new("target")
                    .with_attr("type", "serial")
                    .with_attr("port", "0"),
            );
            devs.push(con);
        }
    } else {
        let mut con = Element::new("console").with_attr("type", "pty");
        con.push(
            Element::new("target")
                .with_attr("type", "xen")
                .with_attr("port", "0"),
        );
        devs.push(con);
    }
    for spec in get_list(c, "channel")? {
        let o = spec_opts(&spec);
        let mut ch = match opt(&o, "connection") {
            Some("pty") => Element::new("channel").with_attr("type", "pty"),
            Some("socket") => {
                let mut ch = Element::new("channel").with_attr("type", "unix");
                let p = opt(&o, "path").ok_or_else(|| {
                    bad_key("channel", format!("'{spec}': a socket needs a path"))
                })?;
                ch.push(
                    Element::new("source")
                        .with_attr("mode", "bind")
                        .with_attr("path", p),
                );
                ch
            }
            other => {
                return Err(bad_key(
                    "channel",
                    format!("connection '{}' is not supported", other.unwrap_or("")),
                ));
            }
        };
        let mut t = Element::new("target").with_attr("type", "xen");
        if let Some(n) = opt(&o, "name") {
            t.set_attr("name", n);
        }
        ch.push(t);
        devs.push(ch);
    }
    for u in get_list(c, "usbdevice")? {
        if matches!(u.as_str(), "tablet" | "mouse") {
            devs.push(
                Element::new("input")
                    .with_attr("type", &u)
                    .with_attr("bus", "usb"),
            );
        }
    }
    let bus = if hvm { "ps2" } else { "xen" };
    devs.push(
        Element::new("input")
            .with_attr("type", "mouse")
            .with_attr("bus", bus),
    );
    devs.push(
        Element::new("input")
            .with_attr("type", "keyboard")
            .with_attr("bus", bus),
    );
    let graphics = graphics_elements(c, gt)?;
    let any_graphics = !graphics.is_empty();
    for g in graphics {
        devs.push(g);
    }
    if hvm && any_graphics {
        let stdvga = get_bool(c, "stdvga")?.unwrap_or(false);
        let (model, default_vram) = match get_str(c, "vga")?.as_deref() {
            Some("stdvga") => ("vga", 16384),
            Some("qxl") => ("qxl", 65536),
            Some("none") => ("none", 0),
            Some("cirrus") | None if stdvga => ("vga", 16384),
            Some("cirrus") | None => ("cirrus", 8192),
            Some(other) => return Err(bad_key("vga", format!("unknown video card '{other}'"))),
        };
        let vram = get_num(c, "videoram")?.map_or(default_vram, |m| m as u64 * 1024);
        let mut v = Element::new("video");
        v.push(
            Element::new("model")
                .with_attr("type", model)
                .with_attr("vram", &vram.to_string())
                .with_attr("heads", "1")
                .with_attr("primary", "yes"),
        );
        devs.push(v);
    }
    for spec in get_list(c, "pci")? {
        devs.push(pci_element(&spec)?);
    }
    for spec in get_list(c, "usbdev")? {
        let o = spec_opts(&spec);
        let (Some(b), Some(a)) = (opt(&o, "hostbus"), opt(&o, "hostaddr")) else {
            return Err(bad_key(
                "usbdev",
                format!("'{spec}' needs hostbus and hostaddr"),
            ));
        };
        let mut h = Element::new("hostdev")
            .with_attr("mode", "subsystem")
            .with_attr("type", "usb")
            .with_attr("managed", "no");
        let mut s = Element::new("source");
        s.push(
            Element::new("address")
                .with_attr("bus", b)
                .with_attr("device", a),
        );
        h.push(s);
        devs.push(h);
    }
    devs.push(Element::new("memballoon").with_attr("model", "xen"));
    Ok(devs)
}

fn pci_element(spec: &str) -> Result<Element, ConvertError> {
    let (bdf, opts) = match spec.split_once(',') {
        Some((b, o)) => (b, spec_opts(o)),
        None => (spec, Vec::new()),
    };
    let bdf = bdf.split('@').next().unwrap_or(bdf);
    let parts: Vec<&str> = bdf.split(':').collect();
    let (dom, bus, slotfn) = match parts.as_slice() {
        [d, b, sf] => (*d, *b, *sf),
        [b, sf] => ("0", *b, *sf),
        _ => return Err(bad_key("pci", format!("'{spec}' is not DDDD:BB:SS.F"))),
    };
    let (slot, func) = slotfn
        .split_once('.')
        .ok_or_else(|| bad_key("pci", format!("'{spec}' is not DDDD:BB:SS.F")))?;
    let hex = |s: &str| {
        u32::from_str_radix(s, 16)
            .map_err(|_| bad_key("pci", format!("'{spec}': '{s}' is not hexadecimal")))
    };
    let (d, b, s, f) = (hex(dom)?, hex(bus)?, hex(slot)?, hex(func)?);
    let seize = opt(&opts, "seize") == Some("1");
    let mut h = Element::new("hostdev")
        .with_attr("mode", "subsystem")
        .with_attr("type", "pci")
        .with_attr("managed", if seize { "yes" } else { "no" });
    let mut src = Element::new("source");
    if opt(&opts, "permissive") == Some("1") {
        src.set_attr("writeFiltering", "no");
    }
    src.push(
        Element::new("address")
            .with_attr("domain", &format!("0x{d:04x}"))
            .with_attr("bus", &format!("0x{b:02x}"))
            .with_attr("slot", &format!("0x{s:02x}"))
            .with_attr("function", &format!("0x{f:x}")),
    );
    h.push(src);
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PV: &str = "<domain type='xen'><name>g</name><uuid>45b60f51-88a9-47a8-a3b3-5e66d71b2283</uuid>\
        <memory unit='MiB'>512</memory><vcpu current='2'>4</vcpu>\
        <os><type>linux</type><kernel>/k</kernel><initrd>/i</initrd><cmdline>root=/dev/xvda1</cmdline></os>\
        <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/d.qcow2'/>\
        <target dev='xvda' bus='xen'/></disk><interface type='bridge'><mac address='00:16:3E:00:00:01'/>\
        <source bridge='xenbr0'/><bandwidth><outbound average='1024'/></bandwidth></interface>\
        <graphics type='vnc' port='5901' listen='0.0.0.0'/></devices></domain>";

    #[test]
    fn pv_to_cfg() {
        let c = domain_to_cfg(&Element::parse(PV).unwrap()).unwrap();
        assert_eq!(c.get("maxmem"), Some(&Value::Num(512)));
        assert_eq!(c.get("memory"), Some(&Value::Num(512)));
        assert_eq!(c.get("maxvcpus"), Some(&Value::Num(4)));
        assert_eq!(c.get("vcpus"), Some(&Value::Num(2)));
        assert_eq!(c.get("builder"), None);
        assert_eq!(c.get("kernel"), Some(&Value::Str("/k".into())));
        assert_eq!(
            c.get("disk"),
            Some(&Value::strings(&[
                "format=qcow2,vdev=xvda,access=rw,backendtype=qdisk,target=/d.qcow2"
            ]))
        );
        assert_eq!(
            c.get("vif"),
            Some(&Value::strings(&[
                "mac=00:16:3e:00:00:01,bridge=xenbr0,rate=1024KB/s"
            ]))
        );
        assert_eq!(
            c.get("vfb"),
            Some(&Value::strings(&[
                "vnc=1,vncunused=0,vncdisplay=1,vnclisten=0.0.0.0"
            ]))
        );
        assert_eq!(c.get("pae"), None);
    }

    #[test]
    fn pv_round_trip_keeps_what_xl_can_hold() {
        let c = domain_to_cfg(&Element::parse(PV).unwrap()).unwrap();
        let back = cfg_to_domain(&Cfg::parse(&c.to_text()).unwrap()).unwrap();
        let c2 = domain_to_cfg(&back).unwrap();
        assert_eq!(c, c2);
        let g = back.child("devices").unwrap().child("graphics").unwrap();
        assert_eq!(g.attr("port"), Some("5901"));
        assert_eq!(g.attr("autoport"), Some("no"));
    }

    #[test]
    fn positional_and_legacy_disk_specs() {
        let d = parse_disk_spec("/dev/vg/x,,hda,,backendtype=phy").unwrap();
        assert_eq!(d.target.as_deref(), Some("/dev/vg/x"));
        assert_eq!(d.format, None);
        assert_eq!(d.vdev.as_deref(), Some("hda"));
        assert_eq!(d.backendtype.as_deref(), Some("phy"));
        let d = parse_disk_spec("phy:/dev/vg/y,xvdb,w").unwrap();
        assert_eq!(d.target.as_deref(), Some("/dev/vg/y"));
        assert_eq!(d.backendtype.as_deref(), Some("phy"));
        let d = parse_disk_spec("file:/i.iso,hdc:cdrom,r").unwrap();
        assert_eq!(d.devtype.as_deref(), Some("cdrom"));
        assert_eq!(d.vdev.as_deref(), Some("hdc"));
        let d = parse_disk_spec("vdev=xvda,target=/a,b=c").unwrap();
        assert_eq!(d.target.as_deref(), Some("/a,b=c"));
        assert!(parse_disk_spec("/x").is_err());
    }

    #[test]
    fn rbd_source_round_trips() {
        let t = "rbd:pool/image:auth_supported=none:mon_host=m1\\:6321\\;m2\\:6322";
        let s = rbd_source(t).unwrap();
        assert_eq!(s.attr("name"), Some("pool/image"));
        let hosts: Vec<_> = s
            .children_named("host")
            .map(|h| (h.attr("name").unwrap(), h.attr("port").unwrap()))
            .collect();
        assert_eq!(hosts, vec![("m1", "6321"), ("m2", "6322")]);
        assert_eq!(rbd_target(&s, "d").unwrap(), t);
    }

    #[test]
    fn rates_in_units() {
        assert_eq!(parse_rate("10240KB/s").unwrap(), 10240);
        assert_eq!(parse_rate("10MB/s@20ms").unwrap(), 10240);
        assert_eq!(parse_rate("8Mb/s").unwrap(), 1024);
        assert!(parse_rate("fastKB/s").is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let e =
            domain_to_cfg(&Element::parse("<domain type='kvm'><name>a</name></domain>").unwrap())
                .unwrap_err();
        assert!(e.to_string().contains("domain/@type"), "{e}");
        let e = domain_to_cfg(&Element::parse("<domain type='xen'><name>a</name><memory>x</memory><os><type>hvm</type></os></domain>").unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "domain/memory: 'x' is not a non-negative integer"
        );
        let e = cfg_to_domain(&Cfg::parse("name=\"a\"\nbuilder=\"weird\"").unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "xl.cfg setting 'builder': unknown builder 'weird'"
        );
        let e = domain_to_cfg(&Element::parse("<domain type='xen'><name>a</name><memory>1024</memory><os><type>hvm</type></os><devices><interface type='network'><source network='default'/></interface></devices></domain>").unwrap()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("domain/devices/interface[1]/@type"),
            "{e}"
        );
    }

    const RICH_HVM: &str = "<domain type='xen'><name>h</name><uuid>c7a5fdb2-cdaf-9455-926a-d65c16db1809</uuid>\
        <memory unit='GiB'>2</memory><currentMemory unit='MiB'>1024</currentMemory><vcpu cpuset='0-3'>2</vcpu>\
        <os><type>hvm</type><boot dev='hd'/><boot dev='network'/></os>\
        <features><acpi/><apic/><pae/><viridian/><hap state='on'/><xen><e820_host state='on'/>\
        <passthrough state='on' mode='sync_pt'/></xen></features>\
        <clock offset='localtime'><timer name='tsc' present='yes' mode='emulate'/><timer name='hpet' present='no'/></clock>\
        <on_crash>coredump-destroy</on_crash>\
        <devices><disk type='file' device='disk'><driver name='qemu' type='vhd'/><source file='/s.vhd'/>\
        <target dev='sdb' bus='scsi'/></disk>\
        <interface type='ethernet'><mac address='00:16:3e:00:00:02'/><ip address='10.0.0.2'/>\
        <script path='/etc/xen/scripts/vif-route'/><target dev='vif-h'/><backenddomain name='netdom'/></interface>\
        <serial type='pty'><target port='0'/></serial><parallel type='file'><source path='/tmp/lp'/></parallel>\
        <input type='tablet' bus='usb'/>\
        <graphics type='vnc' port='5905' autoport='no' keymap='de'/><graphics type='sdl' display=':0'/>\
        <video><model type='vga' vram='16384'/></video>\
        <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x03' slot='0x00' function='0x1'/></source></hostdev>\
        </devices></domain>";

    #[test]
    fn rich_hvm_is_a_fixpoint() {
        let c = domain_to_cfg(&Element::parse(RICH_HVM).unwrap()).unwrap();
        let num = |k: &str| c.get(k).cloned();
        assert_eq!(num("maxmem"), Some(Value::Num(2048)));
        assert_eq!(num("memory"), Some(Value::Num(1024)));
        assert_eq!(num("cpus"), Some(Value::Str("0-3".into())));
        assert_eq!(num("viridian"), Some(Value::Num(1)));
        assert_eq!(num("hap"), Some(Value::Num(1)));
        assert_eq!(num("e820_host"), Some(Value::Num(1)));
        assert_eq!(num("passthrough"), Some(Value::Str("sync_pt".into())));
        assert_eq!(num("tsc_mode"), Some(Value::Str("always_emulate".into())));
        assert_eq!(num("hpet"), Some(Value::Num(0)));
        assert_eq!(num("localtime"), Some(Value::Num(1)));
        assert_eq!(num("boot"), Some(Value::Str("cn".into())));
        assert_eq!(num("serial"), Some(Value::Str("pty".into())));
        assert_eq!(num("parallel"), Some(Value::Str("file:/tmp/lp".into())));
        assert_eq!(num("usbdevice"), Some(Value::strings(&["tablet"])));
        assert_eq!(num("vncdisplay"), Some(Value::Num(5)));
        assert_eq!(num("vncunused"), Some(Value::Num(0)));
        assert_eq!(num("keymap"), Some(Value::Str("de".into())));
        assert_eq!(num("sdl"), Some(Value::Num(1)));
        assert_eq!(num("display"), Some(Value::Str(":0".into())));
        assert_eq!(num("on_crash"), Some(Value::Str("coredump-destroy".into())));
        assert_eq!(num("pci"), Some(Value::strings(&["0000:03:00.1,seize=1"])));
        assert_eq!(
            num("disk"),
            Some(Value::strings(&[
                "format=vhd,vdev=sdb,access=rw,backendtype=qdisk,target=/s.vhd"
            ]))
        );
        assert_eq!(
            num("vif"),
            Some(Value::strings(&[
                "mac=00:16:3e:00:00:02,ip=10.0.0.2,script=/etc/xen/scripts/vif-route,vifname=vif-h,backend=netdom"
            ]))
        );
        let back = cfg_to_domain(&Cfg::parse(&c.to_text()).unwrap()).unwrap();
        let text = back.to_xml_string();
        for part in [
            "<serial type='pty'>",
            "<console type='pty'>",
            "<target type='serial' port='0'/>",
            "<input type='tablet' bus='usb'/>",
            "<controller type='scsi' index='0'/>",
            "<address type='drive' controller='0' bus='0' target='0' unit='1'/>",
            "<graphics type='sdl' display=':0'/>",
            "<timer name='hpet' present='no'/>",
            "<hostdev mode='subsystem' type='pci' managed='yes'>",
        ] {
            assert!(text.contains(part), "missing {part} in\n{text}");
        }
        let again = domain_to_cfg(&back).unwrap();
        assert_eq!(num("vga"), Some(Value::Str("stdvga".into())));
        assert!(
            text.contains("<model type='vga' vram='16384' heads='1' primary='yes'/>"),
            "{text}"
        );
        assert_eq!(as_sorted(&again), as_sorted(&c));
    }

    fn as_sorted(c: &Cfg) -> Vec<(String, Value)> {
        let mut v = c.entries().to_vec();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn cpuid_names_map_both_ways() {
        assert_eq!(cpuid_from_libvirt("pni"), "sse3");
        assert_eq!(cpuid_to_libvirt("page1gb"), "pdpe1gb");
        assert_eq!(cpuid_to_libvirt("tm"), "tm");
    }
}

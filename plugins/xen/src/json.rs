//! libxl's JSON domain configuration (`libxl_domain_config` as `xl -N` / `xl create
//! --dryrun` prints it), served as the native format [`NATIVE_FORMAT`]
//! (`domxml-to-native xen-libxl-json`).
//!
//! The JSON is made from the xl.cfg settings the way `xl` fills `libxl_domain_config`
//! from a cfg file, for the common keys: `c_info` (type, name, uuid, hap, passthrough),
//! `b_info` (vCPUs, memory, tsc_mode, localtime, rtc_timeoffset, vNUMA nodes, event
//! channels, device model and its extra arguments, kernel/ramdisk/cmdline, bootloader,
//! nested_hvm, and the `type.hvm` / `type.pv` / `type.pvh` parts: firmware, pae, acpi,
//! apic, viridian, hpet, boot order, VNC/SDL/SPICE, serial, vga), `disks`, `nics`,
//! `pcidevs`, `vfbs` (with their `vkbs`), `channels`, `usbctrls`, `usbdevs` and the
//! `on_*` actions. Conventions of libxl's JSON generator: enumerations as their lower-case
//! names, `libxl_defbool` as `"True"`/`"False"`, bitmaps as arrays of the set bits, keyed
//! unions as the key plus a `"KEY.VALUE"` object; fields left at their default are left
//! out. Field names are those of `libxl_types.idl` (Xen 4.17).
//!
//! Debian's `xl` cannot print this JSON here: it needs `/dev/xen/privcmd` even for
//! `-N`/`--dryrun` (`libxl_ctx_alloc: cannot open libxc handle`), so the tests check the
//! output against the IDL's field names and types instead.

use crate::convert::{ConvertError, domain_to_cfg, parse_disk_spec};
use crate::xlcfg::{Cfg, Value};
use rvirt_xml::Element;
use serde_json::{Map, Value as J, json};

/// The native format name of libxl's JSON domain configuration.
pub const NATIVE_FORMAT: &str = "xen-libxl-json";

fn defbool(b: bool) -> J {
    J::String(if b { "True" } else { "False" }.to_string())
}

fn s(c: &Cfg, k: &str) -> Option<String> {
    match c.get(k)? {
        Value::Str(s) => Some(s.clone()),
        Value::Num(n) => Some(n.to_string()),
        Value::List(_) => None,
    }
}

fn n(c: &Cfg, k: &str) -> Option<i64> {
    match c.get(k)? {
        Value::Num(n) => Some(*n),
        Value::Str(s) => s.parse().ok(),
        Value::List(_) => None,
    }
}

fn list(c: &Cfg, k: &str) -> Vec<String> {
    match c.get(k) {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        Some(Value::Str(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn opts(spec: &str) -> Vec<(String, String)> {
    spec.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

fn get<'a>(o: &'a [(String, String)], k: &str) -> Option<&'a str> {
    o.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

/// Converts domain XML text to libxl's JSON domain configuration.
pub fn xml_to_json(xml: &str) -> Result<String, ConvertError> {
    let dom = Element::parse(xml).map_err(ConvertError::Xml)?;
    let cfg = domain_to_cfg(&dom)?;
    let j = cfg_to_json(&cfg)?;
    Ok(serde_json::to_string_pretty(&j).unwrap_or_default() + "\n")
}

/// The bitmap `0..count` as libxl writes a bitmap: the set bits.
fn bits(count: i64) -> J {
    J::Array((0..count.max(0)).map(|i| json!(i)).collect())
}

/// Parses a vCPU list such as `0-1,4` into its bits.
fn cpu_bits(list: &str) -> Result<J, ConvertError> {
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let bad = || ConvertError::BadKey {
            key: "vnuma".into(),
            what: format!("'{list}' is not a CPU list"),
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                out.extend((a..=b).map(|i| json!(i)));
            }
            None => out.push(json!(part.parse::<u32>().map_err(|_| bad())?)),
        }
    }
    Ok(J::Array(out))
}

/// `rate=` as libxl's NIC fields: bytes per interval and the interval (xl's default
/// interval is 50 ms), as `xlu_vif_parse_rate` computes them.
fn rate_fields(rate: &str) -> Option<(u64, u64)> {
    let (r, interval) = match rate.split_once('@') {
        Some((r, i)) => (r, i),
        None => (rate, "50ms"),
    };
    let r = r.strip_suffix("/s").unwrap_or(r);
    let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
    let v: u64 = digits.parse().ok()?;
    // libxl counts K, M and G in thousands (10240KB/s is 10,240,000 bytes a second)
    let per_sec = match &r[digits.len()..] {
        "B" | "" => v,
        "KB" => v * 1000,
        "MB" => v * 1_000_000,
        "GB" => v * 1_000_000_000,
        "b" => v / 8,
        "Kb" => v * 1000 / 8,
        "Mb" => v * 1_000_000 / 8,
        "Gb" => v * 1_000_000_000 / 8,
        _ => return None,
    };
    let idigits: String = interval
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let iv: u64 = idigits.parse().ok()?;
    let usecs = match &interval[idigits.len()..] {
        "s" => iv * 1_000_000,
        "ms" => iv * 1000,
        "us" | "" => iv,
        _ => return None,
    };
    Some((per_sec * usecs / 1_000_000, usecs))
}

fn action(c: &Cfg, key: &str, default: &str) -> J {
    J::String(
        s(c, key)
            .unwrap_or_else(|| default.to_string())
            .replace('-', "_")
            .replace("rename_restart", "restart_rename"),
    )
}

/// Builds the `libxl_domain_config` JSON of xl.cfg settings.
pub fn cfg_to_json(c: &Cfg) -> Result<J, ConvertError> {
    let ty = match (s(c, "type").as_deref(), s(c, "builder").as_deref()) {
        (Some(t), _) => t.to_string(),
        (None, Some("hvm")) => "hvm".to_string(),
        _ => "pv".to_string(),
    };
    let hvm = ty == "hvm";
    // c_info
    let mut ci = Map::new();
    ci.insert("type".into(), json!(ty));
    if let Some(v) = s(c, "name") {
        ci.insert("name".into(), json!(v));
    }
    if let Some(v) = s(c, "uuid") {
        ci.insert("uuid".into(), json!(v));
    }
    if let Some(h) = n(c, "hap") {
        ci.insert("hap".into(), defbool(h != 0));
    }
    if let Some(p) = s(c, "passthrough") {
        ci.insert("passthrough".into(), json!(p));
    }
    // b_info
    let mut bi = Map::new();
    let vcpus = n(c, "vcpus").unwrap_or(1);
    bi.insert("max_vcpus".into(), json!(n(c, "maxvcpus").unwrap_or(vcpus)));
    bi.insert("avail_vcpus".into(), bits(vcpus));
    let memory = n(c, "memory").unwrap_or(128);
    bi.insert(
        "max_memkb".into(),
        json!(n(c, "maxmem").unwrap_or(memory) * 1024),
    );
    bi.insert("target_memkb".into(), json!(memory * 1024));
    if let Some(t) = s(c, "tsc_mode") {
        bi.insert("tsc_mode".into(), json!(t));
    }
    if let Some(l) = n(c, "localtime") {
        bi.insert("localtime".into(), defbool(l != 0));
    }
    if let Some(r) = n(c, "rtc_timeoffset") {
        bi.insert("rtc_timeoffset".into(), json!(r));
    }
    if let Some(Value::List(nodes)) = c.get("vnuma") {
        let mut out = Vec::new();
        for node in nodes {
            let Value::List(items) = node else { continue };
            let kv: Vec<(String, String)> = items
                .iter()
                .filter_map(|v| match v {
                    Value::Str(s) => s
                        .split_once('=')
                        .map(|(a, b)| (a.to_string(), b.to_string())),
                    _ => None,
                })
                .collect();
            let mut m = Map::new();
            if let Some(size) = get(&kv, "size").and_then(|v| v.parse::<u64>().ok()) {
                m.insert("memkb".into(), json!(size * 1024));
            }
            if let Some(d) = get(&kv, "vdistances") {
                let ds: Vec<J> = d
                    .split(',')
                    .filter_map(|x| x.parse::<u32>().ok())
                    .map(|x| json!(x))
                    .collect();
                m.insert("distances".into(), J::Array(ds));
            }
            if let Some(p) = get(&kv, "pnode").and_then(|v| v.parse::<u32>().ok()) {
                m.insert("pnode".into(), json!(p));
            }
            if let Some(v) = get(&kv, "vcpus") {
                m.insert("vcpus".into(), cpu_bits(v)?);
            }
            out.push(J::Object(m));
        }
        bi.insert("vnuma_nodes".into(), J::Array(out));
    }
    if let Some(e) = n(c, "max_event_channels") {
        bi.insert("event_channels".into(), json!(e));
    }
    if let Some(g) = n(c, "max_grant_frames") {
        bi.insert("max_grant_frames".into(), json!(g));
    }
    if let Some(d) = s(c, "device_model_override") {
        bi.insert("device_model".into(), json!(d));
    }
    let extra = list(c, "device_model_args");
    if !extra.is_empty() {
        bi.insert("extra".into(), json!(extra));
    }
    for (k, key) in [
        ("kernel", "kernel"),
        ("ramdisk", "ramdisk"),
        ("cmdline", "cmdline"),
        ("bootloader", "bootloader"),
    ] {
        if let Some(v) = s(c, k) {
            bi.insert(key.into(), json!(v));
        }
    }
    if let Some(a) = s(c, "bootloader_args") {
        bi.insert(
            "bootloader_args".into(),
            json!(a.split_whitespace().collect::<Vec<_>>()),
        );
    }
    if let Some(nh) = n(c, "nestedhvm") {
        bi.insert("nested_hvm".into(), defbool(nh != 0));
    }
    if let Some(a) = n(c, "acpi") {
        bi.insert("acpi".into(), defbool(a != 0));
    }
    if let Some(a) = n(c, "apic") {
        bi.insert("apic".into(), defbool(a != 0));
    }
    let mut u = Map::new();
    if hvm {
        if let Some(b) = s(c, "bios") {
            u.insert("bios".into(), json!(b));
        }
        if let Some(p) = s(c, "bios_path_override") {
            u.insert("system_firmware".into(), json!(p));
        }
        // acpi and apic live in b_info itself (the type.hvm fields are deprecated)
        for (k, key) in [("pae", "pae"), ("viridian", "viridian"), ("hpet", "hpet")] {
            if let Some(v) = n(c, k) {
                u.insert(key.into(), defbool(v != 0));
            }
        }
        if let Some(a) = s(c, "acpi_firmware") {
            u.insert("acpi_firmware".into(), json!(a));
        }
        if let Some(b) = s(c, "boot") {
            u.insert("boot".into(), json!(b));
        }
        if let Some(v) = n(c, "vnc") {
            let mut m = Map::new();
            m.insert("enable".into(), defbool(v != 0));
            if v != 0 {
                if let Some(l) = s(c, "vnclisten") {
                    m.insert("listen".into(), json!(l));
                }
                if let Some(p) = s(c, "vncpasswd") {
                    m.insert("passwd".into(), json!(p));
                }
                if let Some(d) = n(c, "vncdisplay") {
                    m.insert("display".into(), json!(d));
                }
                if let Some(f) = n(c, "vncunused") {
                    m.insert("findunused".into(), defbool(f != 0));
                }
            }
            u.insert("vnc".into(), J::Object(m));
        }
        if let Some(k) = s(c, "keymap") {
            u.insert("keymap".into(), json!(k));
        }
        if let Some(v) = n(c, "sdl") {
            let mut m = Map::new();
            m.insert("enable".into(), defbool(v != 0));
            if let Some(d) = s(c, "display") {
                m.insert("display".into(), json!(d));
            }
            if let Some(x) = s(c, "xauthority") {
                m.insert("xauthority".into(), json!(x));
            }
            u.insert("sdl".into(), J::Object(m));
        }
        if let Some(v) = n(c, "spice") {
            let mut m = Map::new();
            m.insert("enable".into(), defbool(v != 0));
            for (k, key) in [("spiceport", "port"), ("spicetls_port", "tls_port")] {
                if let Some(p) = n(c, k) {
                    m.insert(key.into(), json!(p));
                }
            }
            if let Some(h) = s(c, "spicehost") {
                m.insert("host".into(), json!(h));
            }
            if let Some(p) = s(c, "spicepasswd") {
                m.insert("passwd".into(), json!(p));
            }
            for (k, key) in [
                ("spicedisable_ticketing", "disable_ticketing"),
                ("spiceagent_mouse", "agent_mouse"),
                ("spicevdagent", "vdagent"),
                ("spice_clipboard_sharing", "clipboard_sharing"),
            ] {
                if let Some(b) = n(c, k) {
                    m.insert(key.into(), defbool(b != 0));
                }
            }
            u.insert("spice".into(), J::Object(m));
        }
        match c.get("serial") {
            Some(Value::Str(v)) => {
                u.insert("serial".into(), json!(v));
            }
            Some(Value::List(_)) => {
                u.insert("serial_list".into(), json!(list(c, "serial")));
            }
            _ => {}
        }
        let usbdevs = list(c, "usbdevice");
        if !usbdevs.is_empty() {
            u.insert("usbdevice_list".into(), json!(usbdevs));
        }
        let kind = match s(c, "vga").as_deref() {
            Some("stdvga") => Some("std"),
            Some("qxl") => Some("qxl"),
            Some("none") => Some("none"),
            Some("cirrus") => Some("cirrus"),
            _ if n(c, "stdvga") == Some(1) => Some("std"),
            _ => None,
        };
        if let Some(k) = kind {
            u.insert("vga".into(), json!({ "kind": k }));
        }
        if let Some(v) = n(c, "videoram") {
            bi.insert("video_memkb".into(), json!(v * 1024));
        }
    } else if ty == "pv"
        && let Some(e) = n(c, "e820_host")
    {
        u.insert("e820_host".into(), defbool(e != 0));
    }
    bi.insert("type".into(), json!(ty));
    bi.insert(format!("type.{ty}"), J::Object(u));
    let mut root = Map::new();
    root.insert("c_info".into(), J::Object(ci));
    root.insert("b_info".into(), J::Object(bi));
    // disks
    let mut disks = Vec::new();
    for spec in list(c, "disk") {
        let d = parse_disk_spec(&spec)?;
        let cdrom = d.devtype.as_deref() == Some("cdrom");
        let mut m = Map::new();
        if let Some(t) = d.target.filter(|t| !t.is_empty()) {
            m.insert("pdev_path".into(), json!(t));
        }
        m.insert("vdev".into(), json!(d.vdev.unwrap_or_default()));
        if let Some(b) = d.backendtype {
            m.insert("backend".into(), json!(b));
        }
        let format = if m.contains_key("pdev_path") {
            d.format
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| "raw".into())
        } else {
            "empty".into()
        };
        m.insert("format".into(), json!(format));
        if let Some(sc) = d.script {
            m.insert("script".into(), json!(sc));
        }
        let ro = cdrom || matches!(d.access.as_deref(), Some("r") | Some("ro"));
        m.insert("removable".into(), json!(cdrom as u8));
        m.insert("readwrite".into(), json!(!ro as u8));
        m.insert("is_cdrom".into(), json!(cdrom as u8));
        disks.push(J::Object(m));
    }
    if !disks.is_empty() {
        root.insert("disks".into(), J::Array(disks));
    }
    // nics
    let mut nics = Vec::new();
    for (i, spec) in list(c, "vif").iter().enumerate() {
        let o = opts(spec);
        let mut m = Map::new();
        m.insert("devid".into(), json!(i));
        for (k, key) in [
            ("mac", "mac"),
            ("bridge", "bridge"),
            ("ip", "ip"),
            ("script", "script"),
            ("vifname", "ifname"),
            ("backend", "backend_domname"),
        ] {
            if let Some(v) = get(&o, k) {
                m.insert(key.into(), json!(v));
            }
        }
        if let Some(model) = get(&o, "model") {
            m.insert("model".into(), json!(model));
        }
        let nictype = match get(&o, "type") {
            Some("vif") => "vif",
            Some("ioemu") => "vif_ioemu",
            _ if hvm => "vif_ioemu",
            _ => "vif",
        };
        m.insert("nictype".into(), json!(nictype));
        if let Some((bytes, usecs)) = get(&o, "rate").and_then(rate_fields) {
            m.insert("rate_bytes_per_interval".into(), json!(bytes));
            m.insert("rate_interval_usecs".into(), json!(usecs));
        }
        nics.push(J::Object(m));
    }
    if !nics.is_empty() {
        root.insert("nics".into(), J::Array(nics));
    }
    // pci
    let mut pcis = Vec::new();
    for spec in list(c, "pci") {
        let (bdf, rest) = spec.split_once(',').unwrap_or((spec.as_str(), ""));
        let o = opts(rest);
        let parts: Vec<&str> = bdf.split([':', '.']).collect();
        let hex = |x: &str| u32::from_str_radix(x, 16).ok();
        let (d, b, sl, f) = match parts.as_slice() {
            [d, b, s, f] => (hex(d), hex(b), hex(s), hex(f)),
            [b, s, f] => (Some(0), hex(b), hex(s), hex(f)),
            _ => (None, None, None, None),
        };
        let (Some(d), Some(b), Some(sl), Some(f)) = (d, b, sl, f) else {
            return Err(ConvertError::BadKey {
                key: "pci".into(),
                what: format!("'{spec}' is not DDDD:BB:SS.F"),
            });
        };
        let mut m = Map::new();
        m.insert("domain".into(), json!(d));
        m.insert("bus".into(), json!(b));
        m.insert("dev".into(), json!(sl));
        m.insert("func".into(), json!(f));
        if get(&o, "permissive") == Some("1") {
            m.insert("permissive".into(), json!(true));
        }
        if get(&o, "seize") == Some("1") {
            m.insert("seize".into(), json!(true));
        }
        pcis.push(J::Object(m));
    }
    if !pcis.is_empty() {
        root.insert("pcidevs".into(), J::Array(pcis));
    }
    // vfbs (PV graphics) and their keyboards
    let mut vfbs = Vec::new();
    for (i, spec) in list(c, "vfb").iter().enumerate() {
        let o = opts(spec);
        let mut m = Map::new();
        m.insert("devid".into(), json!(i));
        let mut vnc = Map::new();
        vnc.insert(
            "enable".into(),
            defbool(get(&o, "vnc") == Some("1") || get(&o, "type") == Some("vnc")),
        );
        if let Some(l) = get(&o, "vnclisten") {
            vnc.insert("listen".into(), json!(l));
        }
        if let Some(p) = get(&o, "vncpasswd") {
            vnc.insert("passwd".into(), json!(p));
        }
        if let Some(d) = get(&o, "vncdisplay").and_then(|d| d.parse::<i64>().ok()) {
            vnc.insert("display".into(), json!(d));
        }
        if let Some(f) = get(&o, "vncunused") {
            vnc.insert("findunused".into(), defbool(f != "0"));
        }
        m.insert("vnc".into(), J::Object(vnc));
        let mut sdl = Map::new();
        sdl.insert(
            "enable".into(),
            defbool(get(&o, "sdl") == Some("1") || get(&o, "type") == Some("sdl")),
        );
        if let Some(d) = get(&o, "display") {
            sdl.insert("display".into(), json!(d));
        }
        if let Some(x) = get(&o, "xauthority") {
            sdl.insert("xauthority".into(), json!(x));
        }
        m.insert("sdl".into(), J::Object(sdl));
        if let Some(k) = get(&o, "keymap") {
            m.insert("keymap".into(), json!(k));
        }
        vfbs.push(J::Object(m));
    }
    if !vfbs.is_empty() {
        let vkbs: Vec<J> = (0..vfbs.len()).map(|i| json!({"devid": i})).collect();
        root.insert("vfbs".into(), J::Array(vfbs));
        root.insert("vkbs".into(), J::Array(vkbs));
    }
    // channels
    let mut chans = Vec::new();
    for (i, spec) in list(c, "channel").iter().enumerate() {
        let o = opts(spec);
        let mut m = Map::new();
        m.insert("devid".into(), json!(i));
        if let Some(nm) = get(&o, "name") {
            m.insert("name".into(), json!(nm));
        }
        let conn = get(&o, "connection").unwrap_or("pty");
        m.insert("connection".into(), json!(conn));
        if conn == "socket" {
            m.insert(
                "connection.socket".into(),
                json!({"path": get(&o, "path").unwrap_or("")}),
            );
        }
        chans.push(J::Object(m));
    }
    if !chans.is_empty() {
        root.insert("channels".into(), J::Array(chans));
    }
    let mut ctrls = Vec::new();
    for (i, spec) in list(c, "usbctrl").iter().enumerate() {
        let o = opts(spec);
        let mut m = Map::new();
        m.insert("devid".into(), json!(i));
        m.insert("type".into(), json!(get(&o, "type").unwrap_or("auto")));
        if let Some(v) = get(&o, "version").and_then(|v| v.parse::<i64>().ok()) {
            m.insert("version".into(), json!(v));
        }
        if let Some(p) = get(&o, "ports").and_then(|v| v.parse::<i64>().ok()) {
            m.insert("ports".into(), json!(p));
        }
        ctrls.push(J::Object(m));
    }
    if !ctrls.is_empty() {
        root.insert("usbctrls".into(), J::Array(ctrls));
    }
    let mut usbdevs = Vec::new();
    for spec in list(c, "usbdev") {
        let o = opts(&spec);
        let num = |k: &str| get(&o, k).and_then(|v| v.parse::<u32>().ok());
        usbdevs.push(json!({
            "type": "hostdev",
            "type.hostdev": {"hostbus": num("hostbus").unwrap_or(0), "hostaddr": num("hostaddr").unwrap_or(0)},
        }));
    }
    if !usbdevs.is_empty() {
        root.insert("usbdevs".into(), J::Array(usbdevs));
    }
    root.insert("on_poweroff".into(), action(c, "on_poweroff", "destroy"));
    root.insert("on_reboot".into(), action(c, "on_reboot", "restart"));
    root.insert("on_crash".into(), action(c, "on_crash", "destroy"));
    Ok(J::Object(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hvm_guest_as_libxl_json() {
        let cfg = Cfg::parse(
            "name = \"g\"\nuuid = \"c7a5fdb2-cdaf-9455-926a-d65c16db1809\"\nmaxmem = 579\nmemory = 394\n\
             vcpus = 2\nbuilder = \"hvm\"\npae = 1\nboot = \"d\"\nvnc = 1\nvncunused = 1\n\
             on_crash = \"coredump-restart\"\n\
             vif = [ \"mac=00:16:3e:66:92:9c,bridge=xenbr1,model=e1000,rate=10240KB/s\" ]\n\
             disk = [ \"format=raw,vdev=hdc,access=ro,backendtype=qdisk,devtype=cdrom,target=/i.iso\" ]\n\
             pci = [ \"0000:02:00.0,permissive=1\" ]\n",
        )
        .unwrap();
        let j = cfg_to_json(&cfg).unwrap();
        assert_eq!(j["c_info"]["type"], "hvm");
        assert_eq!(j["b_info"]["max_memkb"], 579 * 1024);
        assert_eq!(j["b_info"]["target_memkb"], 394 * 1024);
        assert_eq!(j["b_info"]["avail_vcpus"], json!([0, 1]));
        assert_eq!(j["b_info"]["type.hvm"]["pae"], "True");
        assert_eq!(j["b_info"]["type.hvm"]["vnc"]["findunused"], "True");
        assert_eq!(j["nics"][0]["nictype"], "vif_ioemu");
        assert_eq!(j["nics"][0]["rate_bytes_per_interval"], 512000);
        assert_eq!(j["nics"][0]["rate_interval_usecs"], 50000);
        assert_eq!(j["disks"][0]["is_cdrom"], 1);
        assert_eq!(j["disks"][0]["readwrite"], 0);
        assert_eq!(j["disks"][0]["backend"], "qdisk");
        assert_eq!(j["pcidevs"][0]["bus"], 2);
        assert_eq!(j["pcidevs"][0]["permissive"], true);
        assert_eq!(j["on_crash"], "coredump_restart");
    }

    #[test]
    fn pv_vfb_gets_a_keyboard() {
        let cfg =
            Cfg::parse("name = \"p\"\nkernel = \"/k\"\nvfb = [ \"vnc=1,vnclisten=0.0.0.0\" ]\n")
                .unwrap();
        let j = cfg_to_json(&cfg).unwrap();
        assert_eq!(j["c_info"]["type"], "pv");
        assert_eq!(j["b_info"]["kernel"], "/k");
        assert_eq!(j["vfbs"][0]["vnc"]["listen"], "0.0.0.0");
        assert_eq!(j["vkbs"], json!([{"devid": 0}]));
    }
}

//! `domxml-from-native bhyve-argv`: a `bhyve` command line, optionally with its loader's
//! (`bhyveload`, `grub-bhyve` or a custom loader) on another line, back to domain XML, as
//! libvirt's bhyve argv parser does. It understands every option and device the command
//! line generator writes; anything else is refused with an error naming it.

use crate::def::{disk_name, normalize_mac};
use rvirt_xml::Element;
use thiserror::Error;

/// Why a command line cannot be read.
#[derive(Debug, Error)]
pub enum NativeError {
    /// Quoting is unbalanced.
    #[error("cannot split the command line: {0}")]
    Split(String),
    /// No line runs bhyve.
    #[error("no bhyve command line found (a line whose program is 'bhyve')")]
    NoBhyve,
    /// More than one loader or bhyve line.
    #[error("unexpected extra command line '{0}' (one loader line and one bhyve line at most)")]
    ExtraLine(String),
    /// An option bhyve or its loader takes that has no domain XML equivalent here.
    #[error("unsupported {program} option '{option}'{detail}")]
    Option {
        program: &'static str,
        option: String,
        detail: String,
    },
    /// A device (`-s`) emulation this parser does not know.
    #[error("unsupported bhyve device '{emulation}' in '-s {arg}'")]
    Device { emulation: String, arg: String },
    /// A value that cannot be read.
    #[error("cannot parse {what} '{value}'{detail}")]
    Value {
        what: &'static str,
        value: String,
        detail: String,
    },
    /// The lines disagree or miss what they need.
    #[error("{0}")]
    Mismatch(String),
}

fn value(what: &'static str, v: &str, detail: impl Into<String>) -> NativeError {
    NativeError::Value {
        what,
        value: v.to_string(),
        detail: detail.into(),
    }
}

fn bhyve_opt(option: &str, detail: impl Into<String>) -> NativeError {
    NativeError::Option {
        program: "bhyve",
        option: option.to_string(),
        detail: detail.into(),
    }
}

/// Splits shell text into command lines and words: backslash-newline continues a line,
/// single and double quotes and backslash escapes work as in a POSIX shell.
pub fn split_commands(text: &str) -> Result<Vec<Vec<String>>, NativeError> {
    let mut cmds = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(n) => {
                    cur.push(n);
                    in_word = true;
                }
                None => return Err(NativeError::Split("trailing backslash".into())),
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err(NativeError::Split("unterminated single quote".into())),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => cur.push(n),
                            Some('\n') => {}
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => {
                                return Err(NativeError::Split("unterminated double quote".into()));
                            }
                        },
                        Some(n) => cur.push(n),
                        None => return Err(NativeError::Split("unterminated double quote".into())),
                    }
                }
            }
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                if c == '\n' && !words.is_empty() {
                    cmds.push(std::mem::take(&mut words));
                }
            }
            _ => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    if !words.is_empty() {
        cmds.push(words);
    }
    Ok(cmds)
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// A size as bhyve reads it: a number with an optional k/m/g/t suffix (bytes), a plain
/// number being MiB. Answers KiB.
fn memsize(v: &str) -> Result<u64, NativeError> {
    let bad = || value("memory size", v, "");
    let (num, mult): (&str, u64) = match v.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_lowercase() {
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                _ => return Err(bad()),
            };
            (&v[..v.len() - 1], m)
        }
        _ => (v, 1 << 20),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(mult).ok_or_else(bad)?;
    Ok(bytes.div_ceil(1024))
}

#[derive(Debug, Default)]
struct Parsed {
    name: Option<String>,
    uuid: Option<String>,
    memory_kib: Option<u64>,
    vcpus: u32,
    topology: Option<(u32, u32, u32)>,
    acpi: bool,
    apic: bool,
    utc: bool,
    wired: bool,
    msrs_ignore: bool,
    loader: Option<String>,
    bootloader: Option<String>,
    bootloader_args: Option<String>,
    disks: Vec<Element>,
    controllers: Vec<Element>,
    nets: Vec<Element>,
    serials: Vec<Element>,
    channels: Vec<Element>,
    inputs: Vec<Element>,
    graphics: Vec<Element>,
    sounds: Vec<Element>,
    audios: Vec<Element>,
    videos: Vec<Element>,
    fss: Vec<Element>,
    rngs: Vec<Element>,
    cmdline: Vec<String>,
    nsata: u32,
    nsata_disks: u32,
    nvirtio_disks: u32,
    nserial_ctl: u32,
    /// Disk sources in order, with their device (`disk`/`cdrom`).
    disk_sources: Vec<(String, String)>,
}

fn pci_address(slot: u32, function: u32) -> Element {
    Element::new("address")
        .with_attr("type", "pci")
        .with_attr("domain", "0x0000")
        .with_attr("bus", "0x00")
        .with_attr("slot", &format!("0x{slot:02x}"))
        .with_attr("function", &format!("0x{function:x}"))
}

/// `slot[:function]` or `bus:slot:function`.
fn pci_slot(s: &str) -> Result<(u32, u32), NativeError> {
    let parts: Vec<&str> = s.split(':').collect();
    let nums: Vec<u32> = parts
        .iter()
        .map(|p| p.parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| value("PCI slot", s, ""))?;
    let (bus, slot, func) = match nums.as_slice() {
        [s] => (0, *s, 0),
        [s, f] => (0, *s, *f),
        [b, s, f] => (*b, *s, *f),
        _ => return Err(value("PCI slot", s, "")),
    };
    if bus != 0 {
        return Err(value("PCI slot", s, ": only bus 0 is supported"));
    }
    if slot > 31 || func > 7 {
        return Err(value("PCI slot", s, ": out of range"));
    }
    Ok((slot, func))
}

impl Parsed {
    fn disk(
        &mut self,
        path: &str,
        device: &str,
        bus: &str,
        addr: Element,
    ) -> Result<(), NativeError> {
        let dst = if bus == "virtio" {
            self.nvirtio_disks += 1;
            disk_name("vd", self.nvirtio_disks - 1)
        } else {
            self.nsata_disks += 1;
            disk_name("sd", self.nsata_disks - 1)
        };
        let mut d = Element::new("disk")
            .with_attr("type", "file")
            .with_attr("device", device);
        d.push(
            Element::new("driver")
                .with_attr("name", "file")
                .with_attr("type", "raw"),
        );
        d.push(Element::new("source").with_attr("file", path));
        d.push(
            Element::new("target")
                .with_attr("dev", &dst)
                .with_attr("bus", bus),
        );
        d.push(addr);
        self.disks.push(d);
        self.disk_sources
            .push((path.to_string(), device.to_string()));
        Ok(())
    }

    fn sata_controller(&mut self, slot: u32, func: u32) -> u32 {
        let idx = self.nsata;
        self.nsata += 1;
        let mut c = Element::new("controller")
            .with_attr("type", "sata")
            .with_attr("index", &idx.to_string());
        c.push(pci_address(slot, func));
        self.controllers.push(c);
        idx
    }

    fn drive(controller: u32, unit: u32) -> Element {
        Element::new("address")
            .with_attr("type", "drive")
            .with_attr("controller", &controller.to_string())
            .with_attr("bus", "0")
            .with_attr("target", "0")
            .with_attr("unit", &unit.to_string())
    }

    fn pci_device(&mut self, arg: &str, mac: fn() -> String) -> Result<(), NativeError> {
        let (slotdef, rest) = arg
            .split_once(',')
            .ok_or_else(|| value("PCI device", arg, ": expected 'slot,emulation[,config]'"))?;
        let (slot, func) = pci_slot(slotdef)?;
        let (emulation, conf) = match rest.split_once(',') {
            Some((e, c)) => (e, Some(c)),
            None => (rest, None),
        };
        let need_conf = |what: &'static str| {
            conf.filter(|c| !c.is_empty())
                .ok_or_else(|| value(what, arg, ": missing configuration"))
        };
        match emulation {
            "hostbridge" | "amd_hostbridge" => {
                if slot != 0 {
                    return Err(value(
                        "host bridge",
                        arg,
                        ": bhyve's host bridge is at slot 0",
                    ));
                }
            }
            "lpc" => {
                let mut c = Element::new("controller")
                    .with_attr("type", "isa")
                    .with_attr("index", "0");
                c.push(pci_address(slot, func));
                self.controllers.push(c);
            }
            "ahci" => {
                let ctl = self.sata_controller(slot, func);
                for (unit, item) in need_conf("AHCI drives")?.split(',').enumerate() {
                    let (kind, path) = item.split_once(':').ok_or_else(|| {
                        value("AHCI drive", item, ": expected 'hd:PATH' or 'cd:PATH'")
                    })?;
                    let device = match kind {
                        "hd" => "disk",
                        "cd" => "cdrom",
                        _ => {
                            return Err(value(
                                "AHCI drive",
                                item,
                                ": expected 'hd:PATH' or 'cd:PATH'",
                            ));
                        }
                    };
                    self.disk(path, device, "sata", Parsed::drive(ctl, unit as u32))?;
                }
            }
            "ahci-hd" | "ahci-cd" => {
                let path = need_conf("AHCI drive")?;
                if path.contains(',') {
                    return Err(value(
                        "AHCI drive",
                        path,
                        ": drive options are not supported",
                    ));
                }
                let ctl = self.sata_controller(slot, func);
                let device = if emulation == "ahci-hd" {
                    "disk"
                } else {
                    "cdrom"
                };
                self.disk(path, device, "sata", Parsed::drive(ctl, 0))?;
            }
            "virtio-blk" => {
                let path = need_conf("virtio-blk disk")?;
                if path.contains(',') {
                    return Err(value(
                        "virtio-blk disk",
                        path,
                        ": drive options are not supported",
                    ));
                }
                self.disk(path, "disk", "virtio", pci_address(slot, func))?;
            }
            "virtio-net" | "e1000" => {
                let conf = need_conf("network interface")?;
                let mut parts = conf.split(',');
                let _tap = parts.next().unwrap_or_default();
                let mut address = None;
                for p in parts {
                    match p.strip_prefix("mac=") {
                        Some(m) => {
                            address =
                                Some(normalize_mac(m).ok_or_else(|| value("MAC address", m, ""))?)
                        }
                        None => {
                            return Err(value(
                                "network interface option",
                                p,
                                " (only mac= is supported)",
                            ));
                        }
                    }
                }
                let mut n = Element::new("interface").with_attr("type", "bridge");
                n.push(Element::new("mac").with_attr("address", &address.unwrap_or_else(mac)));
                // the bridge cannot be known from the command line: libvirt's default
                n.push(Element::new("source").with_attr("bridge", "virbr0"));
                n.push(Element::new("model").with_attr(
                    "type",
                    if emulation == "e1000" {
                        "e1000"
                    } else {
                        "virtio"
                    },
                ));
                n.push(pci_address(slot, func));
                self.nets.push(n);
            }
            "fbuf" => self.fbuf(arg, need_conf("framebuffer")?, slot, func)?,
            "xhci" => {
                if conf != Some("tablet") {
                    return Err(value(
                        "xhci device",
                        arg,
                        ": only 'xhci,tablet' is supported",
                    ));
                }
                let mut c = Element::new("controller")
                    .with_attr("type", "usb")
                    .with_attr("index", "0")
                    .with_attr("model", "nec-xhci");
                c.push(pci_address(slot, func));
                self.controllers.push(c);
                self.inputs.push(
                    Element::new("input")
                        .with_attr("type", "tablet")
                        .with_attr("bus", "usb"),
                );
            }
            "hda" => {
                let mut s = Element::new("sound").with_attr("model", "ich7");
                let mut play = None;
                let mut rec = None;
                for p in conf
                    .unwrap_or_default()
                    .split(',')
                    .filter(|p| !p.is_empty())
                {
                    match p.split_once('=') {
                        Some(("play", v)) => play = Some(v),
                        Some(("rec", v)) => rec = Some(v),
                        _ => return Err(value("hda option", p, " (only play= and rec=)")),
                    }
                }
                if play.is_some() || rec.is_some() {
                    let id = (self.audios.len() + 1).to_string();
                    s.push(Element::new("audio").with_attr("id", &id));
                    let mut a = Element::new("audio")
                        .with_attr("id", &id)
                        .with_attr("type", "oss");
                    // the generator writes the input device as play=, the output as rec=
                    if let Some(p) = play {
                        a.push(Element::new("input").with_attr("dev", p));
                    }
                    if let Some(r) = rec {
                        a.push(Element::new("output").with_attr("dev", r));
                    }
                    self.audios.push(a);
                }
                s.push(pci_address(slot, func));
                self.sounds.push(s);
            }
            "virtio-9p" => {
                let conf = need_conf("virtio-9p share")?;
                let mut parts = conf.split(',');
                let share = parts.next().unwrap_or_default();
                let (target, source) = share
                    .split_once('=')
                    .ok_or_else(|| value("virtio-9p share", share, ": expected 'NAME=PATH'"))?;
                let mut f = Element::new("filesystem")
                    .with_attr("type", "mount")
                    .with_attr("accessmode", "passthrough");
                f.push(Element::new("source").with_attr("dir", source));
                f.push(Element::new("target").with_attr("dir", target));
                for p in parts {
                    match p {
                        "ro" => f.push(Element::new("readonly")),
                        _ => return Err(value("virtio-9p option", p, " (only ro)")),
                    }
                }
                f.push(pci_address(slot, func));
                self.fss.push(f);
            }
            "virtio-rnd" => {
                if conf.is_some_and(|c| !c.is_empty()) {
                    return Err(value("virtio-rnd device", arg, ": it takes no options"));
                }
                let mut r = Element::new("rng").with_attr("model", "virtio");
                r.push(
                    Element::new("backend")
                        .with_attr("model", "random")
                        .with_text("/dev/random"),
                );
                r.push(pci_address(slot, func));
                self.rngs.push(r);
            }
            "virtio-console" => {
                let idx = self.nserial_ctl;
                self.nserial_ctl += 1;
                let mut c = Element::new("controller")
                    .with_attr("type", "virtio-serial")
                    .with_attr("index", &idx.to_string());
                c.push(pci_address(slot, func));
                self.controllers.push(c);
                for p in need_conf("virtio-console ports")?.split(',') {
                    let (name, path) = p
                        .split_once('=')
                        .ok_or_else(|| value("virtio-console port", p, ": expected 'NAME=PATH'"))?;
                    let mut ch = Element::new("channel").with_attr("type", "unix");
                    ch.push(
                        Element::new("source")
                            .with_attr("mode", "bind")
                            .with_attr("path", path),
                    );
                    ch.push(
                        Element::new("target")
                            .with_attr("type", "virtio")
                            .with_attr("name", name),
                    );
                    self.channels.push(ch);
                }
            }
            other => {
                return Err(NativeError::Device {
                    emulation: other.to_string(),
                    arg: arg.to_string(),
                });
            }
        }
        Ok(())
    }

    fn fbuf(&mut self, arg: &str, conf: &str, slot: u32, func: u32) -> Result<(), NativeError> {
        let mut g = Element::new("graphics").with_attr("type", "vnc");
        let mut listen_addr = None;
        let mut port = None;
        let mut res = (None, None);
        let mut vga = None;
        let mut passwd = None;
        for p in conf.split(',') {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k {
                "tcp" | "rfb" => {
                    let (host, prt) = v
                        .rsplit_once(':')
                        .ok_or_else(|| value("fbuf address", v, ": expected 'HOST:PORT'"))?;
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    if !host.is_empty() {
                        listen_addr = Some(host.to_string());
                    }
                    port = Some(
                        prt.parse::<u16>()
                            .map_err(|_| value("fbuf port", prt, ""))?,
                    );
                }
                "w" => res.0 = Some(v.parse::<u32>().map_err(|_| value("fbuf width", v, ""))?),
                "h" => res.1 = Some(v.parse::<u32>().map_err(|_| value("fbuf height", v, ""))?),
                "vga" => vga = Some(v.to_string()),
                "password" => passwd = Some(v.to_string()),
                _ => return Err(value("fbuf option", p, format!(" in '-s {arg}'"))),
            }
        }
        let port = port.ok_or_else(|| value("fbuf device", arg, ": no tcp=HOST:PORT"))?;
        g.set_attr("port", &port.to_string());
        g.set_attr("autoport", "no");
        if let Some(p) = passwd {
            g.set_attr("passwd", &p);
        }
        let mut l = Element::new("listen").with_attr("type", "address");
        if let Some(a) = listen_addr {
            l.set_attr("address", &a);
        }
        g.push(l);
        self.graphics.push(g);
        let mut v = Element::new("video");
        if let Some(vga) = vga {
            v.push(Element::new("driver").with_attr("vgaconf", &vga));
        }
        let mut m = Element::new("model")
            .with_attr("type", "gop")
            .with_attr("heads", "1")
            .with_attr("primary", "yes");
        match res {
            (Some(w), Some(h)) => m.push(
                Element::new("resolution")
                    .with_attr("x", &w.to_string())
                    .with_attr("y", &h.to_string()),
            ),
            (None, None) => {}
            _ => return Err(value("fbuf device", arg, ": w= and h= go together")),
        }
        v.push(m);
        v.push(pci_address(slot, func));
        self.videos.push(v);
        Ok(())
    }

    fn lpc(&mut self, arg: &str) -> Result<(), NativeError> {
        let (dev, conf) = arg
            .split_once(',')
            .ok_or_else(|| value("LPC device", arg, ": expected 'DEVICE,CONFIG'"))?;
        if dev == "bootrom" {
            if conf.contains(',') {
                return Err(value(
                    "bootrom",
                    conf,
                    ": a UEFI variable file is not supported",
                ));
            }
            self.loader = Some(conf.to_string());
            return Ok(());
        }
        let port = match dev {
            "com1" => 0,
            "com2" => 1,
            "com3" => 2,
            "com4" => 3,
            _ => {
                return Err(value(
                    "LPC device",
                    arg,
                    " (bootrom and com1 to com4 are supported)",
                ));
            }
        };
        let mut s;
        if let Some(hp) = conf.strip_prefix("tcp=") {
            let (host, service) = hp
                .rsplit_once(':')
                .ok_or_else(|| value("serial tcp address", hp, ": expected 'HOST:PORT'"))?;
            s = Element::new("serial").with_attr("type", "tcp");
            s.push(
                Element::new("source")
                    .with_attr("mode", "bind")
                    .with_attr("host", host)
                    .with_attr("service", service),
            );
            s.push(Element::new("protocol").with_attr("type", "raw"));
        } else if conf.starts_with("/dev/nmdm") {
            let slave = match conf.chars().last() {
                Some('A') => format!("{}B", &conf[..conf.len() - 1]),
                Some('B') => format!("{}A", &conf[..conf.len() - 1]),
                _ => {
                    return Err(value(
                        "nmdm device",
                        conf,
                        ": the last letter must be 'A' or 'B'",
                    ));
                }
            };
            s = Element::new("serial").with_attr("type", "nmdm");
            s.push(
                Element::new("source")
                    .with_attr("master", conf)
                    .with_attr("slave", &slave),
            );
        } else {
            return Err(value(
                "serial port",
                arg,
                " (nmdm devices /dev/nmdm* and tcp=HOST:PORT are supported)",
            ));
        }
        s.push(Element::new("target").with_attr("port", &port.to_string()));
        self.serials.push(s);
        Ok(())
    }

    fn bhyve(&mut self, argv: &[String], mac: fn() -> String) -> Result<(), NativeError> {
        let mut i = 1;
        self.vcpus = 1;
        while i < argv.len() {
            let a = &argv[i];
            if a == "--" {
                i += 1;
                break;
            }
            if !a.starts_with('-') || a == "-" {
                break;
            }
            let mut flags = a[1..].chars();
            while let Some(f) = flags.next() {
                match f {
                    'A' => self.acpi = true,
                    'I' => self.apic = true,
                    'u' => self.utc = true,
                    'S' => self.wired = true,
                    'w' => self.msrs_ignore = true,
                    'H' | 'P' => {}
                    'c' | 'm' | 's' | 'l' | 'U' => {
                        let rest: String = flags.by_ref().collect();
                        let v = if rest.is_empty() {
                            i += 1;
                            argv.get(i)
                                .cloned()
                                .ok_or_else(|| bhyve_opt(&format!("-{f}"), ": missing argument"))?
                        } else {
                            rest
                        };
                        match f {
                            'c' => self.cpus(&v)?,
                            'm' => {
                                let m = memsize(&v)?;
                                self.memory_kib = Some(m);
                            }
                            's' => self.pci_device(&v, mac)?,
                            'l' => self.lpc(&v)?,
                            _ => {
                                uuid::Uuid::parse_str(&v).map_err(|_| value("UUID", &v, ""))?;
                                self.uuid = Some(v.to_lowercase());
                            }
                        }
                        break;
                    }
                    other => {
                        return Err(bhyve_opt(
                            &format!("-{other}"),
                            " (it has no domain XML equivalent)",
                        ));
                    }
                }
            }
            i += 1;
        }
        let rest = &argv[i.min(argv.len())..];
        let Some((name, extra)) = rest.split_last() else {
            return Err(NativeError::Mismatch(
                "the bhyve command line names no virtual machine (its last argument)".into(),
            ));
        };
        self.cmdline = extra.to_vec();
        self.name = Some(name.clone());
        Ok(())
    }

    fn cpus(&mut self, v: &str) -> Result<(), NativeError> {
        if let Ok(n) = v.parse::<u32>() {
            if n == 0 {
                return Err(value("number of vCPUs", v, ""));
            }
            self.vcpus = n;
            return Ok(());
        }
        let (mut cpus, mut sockets, mut cores, mut threads) = (None, None, None, None);
        for p in v.split(',') {
            let (k, n) = p
                .split_once('=')
                .ok_or_else(|| value("CPU topology", v, ""))?;
            let n: u32 = n.parse().map_err(|_| value("CPU topology", v, ""))?;
            match k {
                "cpus" => cpus = Some(n),
                "sockets" => sockets = Some(n),
                "cores" => cores = Some(n),
                "threads" => threads = Some(n),
                _ => return Err(value("CPU topology", v, format!(": unknown key '{k}'"))),
            }
        }
        let (s, c, t) = (
            sockets.unwrap_or(1),
            cores.unwrap_or(1),
            threads.unwrap_or(1),
        );
        self.vcpus = cpus.unwrap_or(s * c * t);
        self.topology = Some((s, c, t));
        Ok(())
    }

    fn check_memory(&mut self, program: &str, v: &str) -> Result<(), NativeError> {
        let m = memsize(v)?;
        match self.memory_kib {
            Some(b) if b != m => Err(NativeError::Mismatch(format!(
                "memory size mismatch: {program} has {v}, bhyve {} KiB",
                b
            ))),
            _ => {
                self.memory_kib = Some(m);
                Ok(())
            }
        }
    }

    fn check_name(&self, program: &str, name: Option<&String>) -> Result<(), NativeError> {
        match (name, &self.name) {
            (Some(n), Some(b)) if n != b => Err(NativeError::Mismatch(format!(
                "VM name mismatch: {program} names '{n}', bhyve '{b}'"
            ))),
            (None, _) => Err(NativeError::Mismatch(format!(
                "the {program} command line names no virtual machine"
            ))),
            _ => Ok(()),
        }
    }

    fn set_boot(&mut self, path: &str, program: &str) -> Result<(), NativeError> {
        let d = self
            .disks
            .iter_mut()
            .find(|d| d.child("source").and_then(|s| s.attr("file")) == Some(path))
            .ok_or_else(|| {
                NativeError::Mismatch(format!(
                    "{program} boots '{path}', which is no disk of the bhyve command line"
                ))
            })?;
        let addr_pos = d.elements().position(|e| e.name() == "address");
        let boot = Element::new("boot").with_attr("order", "1");
        match addr_pos {
            Some(_) => {
                // keep <address> last, as libvirt formats it
                let addr = d.child("address").cloned();
                d.remove_children(|e| e.name() == "address");
                d.push(boot);
                if let Some(a) = addr {
                    d.push(a);
                }
            }
            None => d.push(boot),
        }
        Ok(())
    }

    fn loader_line(&mut self, argv: &[String]) -> Result<(), NativeError> {
        let prog = basename(&argv[0]);
        if prog == "bhyveload" {
            self.bhyveload(argv)
        } else if prog.contains("grub-bhyve") {
            self.grub(argv)
        } else {
            self.bootloader = Some(argv[0].clone());
            self.bootloader_args = Some(argv[1..].join(" "));
            Ok(())
        }
    }

    fn bhyveload(&mut self, argv: &[String]) -> Result<(), NativeError> {
        // Default arguments are exactly -m SIZE -d PATH NAME; anything else is kept as
        // bootloader_args.
        let mut mem = None;
        let mut disk = None;
        let mut other = false;
        let mut i = 1;
        while i < argv.len() && argv[i].starts_with('-') {
            match argv[i].as_str() {
                "-m" if mem.is_none() => {
                    mem = argv.get(i + 1).cloned();
                    i += 1;
                }
                "-d" if disk.is_none() => {
                    disk = argv.get(i + 1).cloned();
                    i += 1;
                }
                "-c" | "-e" | "-h" | "-l" | "-m" | "-d" => {
                    other = true;
                    i += 1;
                }
                "-C" | "-S" => other = true,
                o => {
                    return Err(NativeError::Option {
                        program: "bhyveload",
                        option: o.to_string(),
                        detail: String::new(),
                    });
                }
            }
            i += 1;
        }
        let positional = &argv[i.min(argv.len())..];
        if positional.len() != 1 {
            return Err(NativeError::Mismatch(
                "the bhyveload command line must end with the virtual machine's name".into(),
            ));
        }
        self.check_name("bhyveload", positional.first())?;
        match (mem, disk, other) {
            (Some(m), Some(d), false) => {
                self.check_memory("bhyveload", &m)?;
                self.set_boot(&d, "bhyveload")
            }
            _ => {
                self.bootloader_args = Some(argv[1..].join(" "));
                Ok(())
            }
        }
    }

    fn grub(&mut self, argv: &[String]) -> Result<(), NativeError> {
        let mut root = None;
        let mut mem = None;
        let mut map = false;
        let mut cons = None;
        let mut other = false;
        let mut i = 1;
        while i + 1 < argv.len() {
            let v = argv[i + 1].clone();
            match argv[i].as_str() {
                "--root" | "-r" => root = Some(v),
                "--memory" | "-M" => mem = Some(v),
                "--device-map" | "-m" => map = true,
                "--cons-dev" | "-c" => cons = Some(v),
                _ => {
                    other = true;
                    break;
                }
            }
            i += 2;
        }
        let name = argv.get(i);
        if other || i + 1 != argv.len() || !map || mem.is_none() {
            self.bootloader = Some(argv[0].clone());
            self.bootloader_args = Some(argv[1..].join(" "));
            return Ok(());
        }
        self.check_name("grub-bhyve", name)?;
        self.check_memory("grub-bhyve", mem.as_deref().unwrap_or_default())?;
        if let Some(c) = cons {
            let first = self
                .serials
                .first()
                .and_then(|s| s.child("source"))
                .and_then(|s| s.attr("master"));
            if first != Some(c.as_str()) {
                return Err(NativeError::Mismatch(format!(
                    "grub-bhyve's console '{c}' is not bhyve's com1"
                )));
            }
        }
        self.bootloader = Some(argv[0].clone());
        let has_cd = self.disk_sources.iter().any(|(_, d)| d == "cdrom");
        match root.as_deref() {
            Some("cd") if !has_cd => {
                return Err(NativeError::Mismatch(
                    "grub-bhyve boots from a CD-ROM, but bhyve has none".into(),
                ));
            }
            Some("cd") => {}
            Some(r) if r.starts_with("hd0") => {
                if has_cd
                    && let Some((p, _)) =
                        self.disk_sources.iter().find(|(_, d)| d == "disk").cloned()
                {
                    self.set_boot(&p, "grub-bhyve")?;
                }
            }
            Some(r) => {
                return Err(value(
                    "grub-bhyve root",
                    r,
                    " (cd or hd0,... are supported)",
                ));
            }
            None => {}
        }
        Ok(())
    }

    fn into_xml(self) -> Element {
        let mut d = Element::new("domain").with_attr("type", "bhyve");
        if !self.cmdline.is_empty() {
            d.set_attr("xmlns:bhyve", "http://libvirt.org/schemas/domain/bhyve/1.0");
        }
        d.push(Element::new("name").with_text(self.name.as_deref().unwrap_or_default()));
        let uuid = self
            .uuid
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        d.push(Element::new("uuid").with_text(&uuid));
        let mem = self.memory_kib.unwrap_or(256 << 10).to_string();
        d.push(
            Element::new("memory")
                .with_attr("unit", "KiB")
                .with_text(&mem),
        );
        d.push(
            Element::new("currentMemory")
                .with_attr("unit", "KiB")
                .with_text(&mem),
        );
        if self.wired {
            let mut mb = Element::new("memoryBacking");
            mb.push(Element::new("locked"));
            d.push(mb);
        }
        d.push(
            Element::new("vcpu")
                .with_attr("placement", "static")
                .with_text(&self.vcpus.to_string()),
        );
        if let Some(b) = &self.bootloader {
            d.push(Element::new("bootloader").with_text(b));
        }
        if let Some(a) = &self.bootloader_args {
            d.push(Element::new("bootloader_args").with_text(a));
        }
        let mut os = Element::new("os");
        os.push(Element::new("type").with_text("hvm"));
        if let Some(l) = &self.loader {
            os.push(
                Element::new("loader")
                    .with_attr("readonly", "yes")
                    .with_attr("type", "pflash")
                    .with_text(l),
            );
        }
        d.push(os);
        if self.acpi || self.apic || self.msrs_ignore {
            let mut f = Element::new("features");
            if self.acpi {
                f.push(Element::new("acpi"));
            }
            if self.apic {
                f.push(Element::new("apic"));
            }
            if self.msrs_ignore {
                f.push(Element::new("msrs").with_attr("unknown", "ignore"));
            }
            d.push(f);
        }
        if let Some((s, c, t)) = self.topology {
            let mut cpu = Element::new("cpu");
            cpu.push(
                Element::new("topology")
                    .with_attr("sockets", &s.to_string())
                    .with_attr("dies", "1")
                    .with_attr("cores", &c.to_string())
                    .with_attr("threads", &t.to_string()),
            );
            d.push(cpu);
        }
        d.push(
            Element::new("clock").with_attr("offset", if self.utc { "utc" } else { "localtime" }),
        );
        d.push(Element::new("on_poweroff").with_text("destroy"));
        d.push(Element::new("on_reboot").with_text("destroy"));
        d.push(Element::new("on_crash").with_text("destroy"));
        let mut devs = Element::new("devices");
        for group in [
            self.disks,
            self.controllers,
            self.fss,
            self.nets,
            self.serials,
            self.channels,
            self.inputs,
            self.graphics,
            self.sounds,
            self.audios,
            self.videos,
            self.rngs,
        ] {
            for e in group {
                devs.push(e);
            }
        }
        d.push(devs);
        if !self.cmdline.is_empty() {
            let mut cl = Element::new("bhyve:commandline");
            for a in &self.cmdline {
                cl.push(Element::new("bhyve:arg").with_attr("value", a));
            }
            d.push(cl);
        }
        d
    }
}

/// Parses bhyve (and loader) command lines into a domain document. `mac` makes the MAC
/// address of an interface whose `mac=` is absent.
pub fn parse(text: &str, mac: fn() -> String) -> Result<Element, NativeError> {
    let cmds = split_commands(text)?;
    let mut bhyve = None;
    let mut loader = None;
    for c in cmds {
        if basename(&c[0]) == "bhyve" {
            if bhyve.is_some() {
                return Err(NativeError::ExtraLine(c.join(" ")));
            }
            bhyve = Some(c);
        } else if loader.is_none() {
            loader = Some(c);
        } else {
            return Err(NativeError::ExtraLine(c.join(" ")));
        }
    }
    let bhyve = bhyve.ok_or(NativeError::NoBhyve)?;
    let mut p = Parsed::default();
    p.bhyve(&bhyve, mac)?;
    if let Some(l) = loader {
        p.loader_line(&l)?;
    }
    Ok(p.into_xml())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac() -> String {
        "52:54:00:00:00:00".into()
    }

    fn xml(text: &str) -> String {
        parse(text, mac).unwrap().to_xml_string()
    }

    #[test]
    fn splits_shell_text() {
        let c =
            split_commands("grub-bhyve \\\n--device-map '<device.map>' \"a b\" x\\ y\nbhyve vm\n")
                .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0],
            ["grub-bhyve", "--device-map", "<device.map>", "a b", "x y"]
        );
        assert_eq!(c[1], ["bhyve", "vm"]);
        assert!(split_commands("bhyve 'x").is_err());
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(memsize("214").unwrap(), 214 * 1024);
        assert_eq!(memsize("2G").unwrap(), 2 << 20);
        assert_eq!(memsize("512k").unwrap(), 512);
        assert!(memsize("12q").is_err());
    }

    #[test]
    fn options_and_devices() {
        let x = xml(
            "/usr/sbin/bhyve -c cpus=4,sockets=2,cores=2,threads=1 -m 1G -S -AI -w -u -H -P -U DF3BE7E7-A104-11E3-AEB0-50E5492BD3DC \
             -s 0:0,hostbridge -l bootrom,/fw.fd -s 1,lpc -s 2:0,ahci,hd:/a.img,cd:/b.iso \
             -s 3:0,e1000,tap1,mac=52:54:00:AA:bb:cc -s 4:0,virtio-blk,/c.img -s 5:0,fbuf,tcp=[::1]:5901,w=800,h=600,vga=io,password=pw \
             -s 6:0,hda,play=/dev/dsp0 -s 7:0,virtio-9p,share=/srv,ro -s 8:0,virtio-rnd -s 9:0,xhci,tablet \
             -s 10:0,virtio-console,org.qemu.guest_agent.0=/tmp/ga -l com1,/dev/nmdm0B -l com2,tcp=127.0.0.1:4444 EXTRA vm",
        );
        for want in [
            "<uuid>df3be7e7-a104-11e3-aeb0-50e5492bd3dc</uuid>",
            "<memory unit='KiB'>1048576</memory>",
            "<memoryBacking>",
            "<vcpu placement='static'>4</vcpu>",
            "<topology sockets='2' dies='1' cores='2' threads='1'/>",
            "<loader readonly='yes' type='pflash'>/fw.fd</loader>",
            "<acpi/>",
            "<apic/>",
            "<msrs unknown='ignore'/>",
            "<clock offset='utc'/>",
            "<source file='/a.img'/>",
            "<target dev='sdb' bus='sata'/>",
            "<target dev='vda' bus='virtio'/>",
            "<mac address='52:54:00:aa:bb:cc'/>",
            "<model type='e1000'/>",
            "<graphics type='vnc' port='5901' autoport='no' passwd='pw'>",
            "<listen type='address' address='::1'/>",
            "<resolution x='800' y='600'/>",
            "<driver vgaconf='io'/>",
            "<input dev='/dev/dsp0'/>",
            "<target dir='share'/>",
            "<readonly/>",
            "<backend model='random'>/dev/random</backend>",
            "<controller type='usb' index='0' model='nec-xhci'>",
            "<target type='virtio' name='org.qemu.guest_agent.0'/>",
            "<source master='/dev/nmdm0B' slave='/dev/nmdm0A'/>",
            "<source mode='bind' host='127.0.0.1' service='4444'/>",
            "<bhyve:arg value='EXTRA'/>",
            "<name>vm</name>",
        ] {
            assert!(x.contains(want), "{want} missing from\n{x}");
        }
    }

    #[test]
    fn unknown_options_and_devices_are_named() {
        let e = parse("bhyve -x -m 1 vm", mac).unwrap_err().to_string();
        assert_eq!(
            e,
            "unsupported bhyve option '-x' (it has no domain XML equivalent)"
        );
        let e = parse("bhyve -s 3,passthru,1/0/0 vm", mac)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "unsupported bhyve device 'passthru' in '-s 3,passthru,1/0/0'"
        );
        let e = parse("bhyve -l com1,stdio vm", mac)
            .unwrap_err()
            .to_string();
        assert!(e.contains("serial port 'com1,stdio'"), "{e}");
        let e = parse("bhyveload -m 1 -d /x vm", mac)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "no bhyve command line found (a line whose program is 'bhyve')"
        );
        let e = parse("bhyveload -q vm\nbhyve vm", mac)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "unsupported bhyveload option '-q'");
        let e = parse(
            "bhyveload -m 2 -d /x vm\nbhyve -m 1 -s 2,ahci-hd,/x vm",
            mac,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("memory size mismatch"), "{e}");
        let e = parse(
            "bhyveload -m 1 -d /x other\nbhyve -m 1 -s 2,ahci-hd,/x vm",
            mac,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("VM name mismatch"), "{e}");
        let e = parse("bhyve -m 1", mac).unwrap_err().to_string();
        assert!(e.contains("names no virtual machine"), "{e}");
    }

    #[test]
    fn loaders() {
        let x = xml("bhyveload -m 256 -d /b vm\nbhyve -m 256 -s 2,ahci,hd:/a,hd:/b vm");
        assert!(x.contains("<boot order='1'/>"), "{x}");
        assert!(!x.contains("bootloader"), "{x}");
        let x = xml("bhyveload -e a=b -m 256 -d /a vm\nbhyve -m 256 -s 2,ahci,hd:/a vm");
        assert!(
            x.contains("<bootloader_args>-e a=b -m 256 -d /a vm</bootloader_args>"),
            "{x}"
        );
        let x = xml(
            "grub-bhyve --root hd0,msdos1 --device-map /m --memory 256 vm\nbhyve -m 256 -s 2,ahci,hd:/a vm",
        );
        assert!(x.contains("<bootloader>grub-bhyve</bootloader>"), "{x}");
        assert!(!x.contains("bootloader_args"), "{x}");
        let x = xml("/my/loader -X -Y\nbhyve -m 256 vm");
        assert!(x.contains("<bootloader>/my/loader</bootloader>"), "{x}");
        assert!(
            x.contains("<bootloader_args>-X -Y</bootloader_args>"),
            "{x}"
        );
    }
}

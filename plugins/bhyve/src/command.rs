//! Domain XML to the `bhyve` command line and the loader's (`bhyveload`, `grub-bhyve` with
//! its device map, or a custom loader), following libvirt's bhyve driver: the same option
//! order, PCI slots and errors.

use crate::caps::Options;
use crate::def::{Addr, Clock, Def, DefError, Disk};
use thiserror::Error;

/// Why no command line can be built.
#[derive(Debug, Error)]
pub enum CommandError {
    /// The definition could not be read or completed.
    #[error(transparent)]
    Def(#[from] DefError),
    /// The definition asks for what this bhyve cannot do.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
}

fn unsupported<T>(msg: impl Into<String>) -> Result<T, CommandError> {
    Err(CommandError::Unsupported(msg.into()))
}

/// The command lines that start a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commands {
    /// The loader, or `None` where bhyve boots UEFI firmware itself (`-l bootrom`).
    pub loader: Option<Vec<String>>,
    /// grub-bhyve's device map, when the loader is grub-bhyve with default arguments.
    pub devmap: Option<String>,
    /// The `bhyve` command.
    pub bhyve: Vec<String>,
}

/// Reads the domain XML, completes it (firmware, PCI slots) and builds both command lines.
pub fn build(xml: &str, opts: &Options) -> Result<Commands, CommandError> {
    let mut def = Def::parse(xml, opts)?;
    build_def(&mut def, opts)
}

/// Builds both command lines of a read definition.
pub fn build_def(def: &mut Def, opts: &Options) -> Result<Commands, CommandError> {
    def.fill_firmware(opts)?;
    def.assign_pci()?;
    let bhyve = bhyve_argv(def, opts)?;
    let (loader, devmap) = if def.loader.is_some() && def.bootloader.is_none() {
        (None, None)
    } else {
        let (l, d) = loader_argv(def, opts)?;
        (Some(l), d)
    };
    Ok(Commands {
        loader,
        devmap,
        bhyve,
    })
}

fn mib(kib: u64) -> String {
    kib.div_ceil(1024).to_string()
}

fn slot(a: &Addr) -> (u32, u32) {
    let p = a.pci();
    (p.slot, p.function)
}

/// The `bhyve` argv.
pub fn bhyve_argv(def: &Def, opts: &Options) -> Result<Vec<String>, CommandError> {
    let caps = &opts.caps;
    let mut a: Vec<String> = vec![opts.bhyve.clone()];
    let push = |a: &mut Vec<String>, s: &str| a.push(s.to_string());

    // CPUs
    push(&mut a, "-c");
    match &def.topology {
        Some(t) => {
            if t.dies != 1 {
                return unsupported("Only 1 die per socket is supported");
            }
            if u64::from(def.vcpus)
                != u64::from(t.sockets) * u64::from(t.cores) * u64::from(t.threads)
            {
                return unsupported(
                    "Invalid CPU topology: total number of vCPUs must equal the product of sockets, cores, and threads",
                );
            }
            if !caps.cputopology {
                return unsupported(
                    "Installed bhyve binary does not support defining CPU topology",
                );
            }
            a.push(format!(
                "cpus={},sockets={},cores={},threads={}",
                def.vcpus, t.sockets, t.cores, t.threads
            ));
        }
        None => a.push(def.vcpus.to_string()),
    }
    // Memory
    push(&mut a, "-m");
    a.push(mib(def.memory_kib));
    if def.locked {
        push(&mut a, "-S");
    }
    if def.acpi {
        push(&mut a, "-A");
    }
    if def.apic {
        push(&mut a, "-I");
    }
    if def.msrs_ignore {
        push(&mut a, "-w");
    }
    match &def.clock {
        Clock::Localtime => {}
        Clock::Utc => {
            if !caps.rtc_utc {
                return unsupported("Installed bhyve binary does not support UTC clock");
            }
            push(&mut a, "-u");
        }
        Clock::Other(o) => return unsupported(format!("unsupported clock offset '{o}'")),
    }
    push(&mut a, "-H");
    push(&mut a, "-P");
    push(&mut a, "-s");
    push(&mut a, "0:0,hostbridge");

    if def.bootloader.is_none()
        && let Some(l) = &def.loader
    {
        if !caps.lpc_bootrom {
            return unsupported("Installed bhyve binary does not support UEFI loader");
        }
        push(&mut a, "-l");
        a.push(format!("bootrom,{l}"));
    }

    // Controllers
    let mut nusb = 0;
    let mut nisa = 0;
    for c in &def.controllers {
        let (s, f) = slot(&c.addr);
        match c.kind.as_str() {
            "pci" => {
                if c.model.as_deref() != Some("pci-root") {
                    return unsupported(
                        "unsupported PCI controller model: only PCI root supported",
                    );
                }
            }
            "sata" => {
                let mut devs = String::new();
                for d in &def.disks {
                    if d.bus != "sata" {
                        continue;
                    }
                    match d.addr {
                        Addr::Drive(dr) if dr.controller == c.index => {}
                        _ => continue,
                    }
                    let src = usable_source(d)?;
                    let sep = if caps.ahci32slot { "," } else { "-" };
                    let colon = if caps.ahci32slot { ":" } else { "," };
                    let kind = match d.device.as_str() {
                        "disk" => "hd",
                        "cdrom" => "cd",
                        _ => return unsupported("unsupported disk device"),
                    };
                    devs.push_str(&format!("{sep}{kind}{colon}{src}"));
                }
                push(&mut a, "-s");
                a.push(format!("{s}:0,ahci{devs}"));
            }
            "usb" => {
                nusb += 1;
                if nusb > 1 {
                    return unsupported("only single USB controller is supported");
                }
                if !caps.xhci {
                    return unsupported("xHCI controller is not supported by given bhyve binary");
                }
                let mut n = 0;
                for i in &def.inputs {
                    if i.bus != "usb" {
                        return unsupported("only USB input devices are supported");
                    }
                    if i.kind != "tablet" {
                        return unsupported("only tablet input devices are supported");
                    }
                    n += 1;
                }
                if n != 1 {
                    return unsupported("only single input device is supported");
                }
                push(&mut a, "-s");
                a.push(format!("{s}:{f},xhci,tablet"));
            }
            "isa" => {
                nisa += 1;
                if nisa > 1 {
                    return unsupported("only single ISA controller is supported");
                }
                push(&mut a, "-s");
                a.push(format!("{s}:0,lpc"));
            }
            "virtio-serial" => {
                let first = (c.index as usize) * 16;
                let ports: Vec<String> = def
                    .channels
                    .iter()
                    .filter(|ch| ch.target_type == "virtio")
                    .skip(first)
                    .take(16)
                    .map(|ch| {
                        if ch.source_type != "unix" {
                            return unsupported(format!(
                                "only 'unix' channels are supported, not '{}'",
                                ch.source_type
                            ));
                        }
                        let name = ch.name.clone().unwrap_or_default();
                        let path = ch.path.clone().unwrap_or_default();
                        if name.contains(',') {
                            return unsupported("Commas (',') are not allowed in channel names");
                        }
                        if path.contains(',') {
                            return unsupported(
                                "Commas (',') are not allowed in UNIX socket paths",
                            );
                        }
                        Ok(format!("{name}={path}"))
                    })
                    .collect::<Result<_, _>>()?;
                push(&mut a, "-s");
                let mut arg = format!("{s}:{f},virtio-console");
                for p in ports {
                    arg.push(',');
                    arg.push_str(&p);
                }
                a.push(arg);
            }
            other => {
                return unsupported(format!("unsupported controller type '{other}'"));
            }
        }
    }

    // Network interfaces
    for n in &def.nets {
        let model = match n.model.as_deref() {
            Some("virtio") => "virtio-net",
            Some("e1000") => {
                if !caps.net_e1000 {
                    return unsupported("NIC model 'e1000' is not supported by given bhyve binary");
                }
                "e1000"
            }
            _ => return unsupported("NIC model is not supported"),
        };
        if n.kind != "bridge" {
            return unsupported(format!(
                "Network type '{}' is not supported (bhyve takes type='bridge')",
                n.kind
            ));
        }
        push(&mut a, "-s");
        a.push(format!(
            "{}:0,{model},{},mac={}",
            n.addr.pci().slot,
            opts.tap,
            n.mac
        ));
    }

    // Disks
    for d in &def.disks {
        match d.bus.as_str() {
            "sata" => {}
            "virtio" => {
                if d.device != "disk" {
                    return unsupported("unsupported disk device");
                }
                let src = usable_source(d)?;
                push(&mut a, "-s");
                a.push(format!("{}:0,virtio-blk,{src}", d.addr.pci().slot));
            }
            _ => return unsupported("unsupported disk device"),
        }
    }

    // Graphics
    if !def.graphics.is_empty() && !def.videos.is_empty() {
        if def.graphics.len() != 1 || def.videos.len() != 1 {
            return unsupported("Multiple graphics devices are not supported");
        }
        a.push("-s".into());
        a.push(graphics_arg(def, opts)?);
    }

    // Sound
    for s in &def.sounds {
        if !caps.sound_hda {
            return unsupported("Sound devices emulation is not supported by given bhyve binary");
        }
        if s.model != "ich7" {
            return unsupported("Sound device model is not supported");
        }
        let audio = if s.audio_id != 0 {
            def.audios.iter().find(|x| x.id == s.audio_id)
        } else {
            def.audios.first()
        };
        let mut params = String::new();
        if let Some(au) = audio {
            if au.kind != "oss" {
                return unsupported(format!("unsupported audio backend '{}'", au.kind));
            }
            if au.common_settings {
                return unsupported("cannot set common audio backend settings");
            }
            // libvirt's bhyve driver names the input device play= and the output rec=
            if let Some(d) = &au.input_dev {
                params.push_str(&format!(",play={d}"));
            }
            if let Some(d) = &au.output_dev {
                params.push_str(&format!(",rec={d}"));
            }
        }
        let (sl, f) = slot(&s.addr);
        push(&mut a, "-s");
        a.push(format!("{sl}:{f},hda{params}"));
    }

    // File system shares
    for fs in &def.fss {
        if !caps.virtio_9p {
            return unsupported("virtio-9p is not supported by given bhyve binary");
        }
        if fs.kind != "mount" {
            return unsupported(format!("unsupported filesystem type '{}'", fs.kind));
        }
        if let Some(d) = &fs.driver
            && d != "default"
        {
            return unsupported(format!("unsupported filesystem driver '{d}'"));
        }
        if fs.accessmode != "passthrough" {
            return unsupported(format!(
                "unsupported filesystem accessmode '{}'",
                fs.accessmode
            ));
        }
        let (sl, f) = slot(&fs.addr);
        push(&mut a, "-s");
        a.push(format!(
            "{sl}:{f},virtio-9p,{}={}{}",
            fs.target,
            fs.source,
            if fs.readonly { ",ro" } else { "" }
        ));
    }

    // Entropy
    for r in &def.rngs {
        if !caps.virtio_rnd {
            return unsupported("virtio-rnd is not supported by given bhyve binary");
        }
        if r.model != "virtio" {
            return unsupported("Only 'virtio' RNG device model is supported");
        }
        if r.backend != "random" {
            return unsupported("Only 'random' backend model is supported");
        }
        if r.source != "/dev/random" {
            return unsupported("Only /dev/random source is supported");
        }
        let (sl, f) = slot(&r.addr);
        push(&mut a, "-s");
        a.push(format!("{sl}:{f},virtio-rnd"));
    }

    // Serial ports
    for s in &def.serials {
        if s.port > 3 {
            return unsupported("Only four serial ports are supported");
        }
        let com = s.port + 1;
        let arg = match s.kind.as_str() {
            "nmdm" => format!("com{com},{}", s.master.as_deref().unwrap_or_default()),
            "tcp" => {
                if !s.listen {
                    return unsupported("Only listening TCP sockets are supported");
                }
                if s.protocol != "raw" {
                    return unsupported("Only 'raw' protocol is supported for TCP sockets");
                }
                format!(
                    "com{com},tcp={}:{}",
                    s.host.as_deref().unwrap_or("127.0.0.1"),
                    s.service.as_deref().unwrap_or_default()
                )
            }
            _ => return unsupported("only nmdm and tcp console types are supported"),
        };
        push(&mut a, "-l");
        a.push(arg);
    }

    a.extend(def.cmdline.iter().cloned());
    a.push(def.name.clone());
    Ok(a)
}

fn graphics_arg(def: &Def, opts: &Options) -> Result<String, CommandError> {
    let caps = &opts.caps;
    let g = &def.graphics[0];
    let v = &def.videos[0];
    if !caps.lpc_bootrom || def.bootloader.is_some() || def.loader.is_none() {
        return unsupported("Graphics are only supported when booting using UEFI");
    }
    if !caps.fbuf {
        return unsupported("Bhyve version does not support framebuffer");
    }
    if g.kind != "vnc" {
        return unsupported("Only VNC supported");
    }
    let Some(listen) = &g.listen else {
        return unsupported("Missing listen element");
    };
    let (s, f) = slot(&v.addr);
    let mut opt = format!("{s}:{f},fbuf");
    match listen.kind.as_str() {
        "address" | "network" => {
            opt.push_str(",tcp=");
            if !g.autoport && !(5900..=65535).contains(&g.port) {
                return unsupported("vnc port must be in range [5900,65535]");
            }
            if let Some(addr) = &listen.address {
                if addr.contains(':') {
                    opt.push_str(&format!("[{addr}]"));
                } else {
                    opt.push_str(addr);
                }
            }
            let port = if g.autoport {
                i64::from(opts.vnc_autoport)
            } else {
                g.port
            };
            opt.push_str(&format!(":{port}"));
        }
        _ => return unsupported("Unsupported listen type"),
    }
    if let Some(p) = &g.passwd {
        if !caps.vnc_password {
            return unsupported("VNC Password authentication not supported by bhyve");
        }
        if p.contains(',') {
            return unsupported("Password may not contain ',' character");
        }
        opt.push_str(&format!(",password={p}"));
    }
    if let Some((x, y)) = v.resolution {
        opt.push_str(&format!(",w={x},h={y}"));
    }
    if let Some(vga) = &v.vgaconf {
        opt.push_str(&format!(",vga={vga}"));
    }
    Ok(opt)
}

/// A disk's source when bhyve can use the disk: a file (or volume) disk or CD-ROM.
fn usable_source(d: &Disk) -> Result<&str, CommandError> {
    if d.device != "disk" && d.device != "cdrom" {
        return unsupported("unsupported disk device");
    }
    if d.kind != "file" {
        return unsupported(format!(
            "unsupported disk type '{}' (bhyve takes type='file')",
            d.kind
        ));
    }
    match d.source.as_deref() {
        Some(s) => Ok(s),
        None if d.device == "cdrom" => {
            unsupported("cdrom device without source path not supported")
        }
        None => unsupported(format!("disk '{}' has no source file", d.dst)),
    }
}

fn usable(d: &Disk) -> bool {
    usable_source(d).is_ok()
}

/// The disk bhyveload boots from.
fn boot_disk(def: &Def) -> Result<&Disk, CommandError> {
    if def.disks.is_empty() {
        return unsupported("Domain should have at least one disk defined");
    }
    if def.boot_devs.len() > 1 {
        return unsupported("Only one boot device is supported");
    }
    if let Some(dev) = def.boot_devs.first() {
        let want = match dev.as_str() {
            "cdrom" => "cdrom",
            "hd" => "disk",
            other => return unsupported(format!("Cannot boot from device {other}")),
        };
        return def
            .disks
            .iter()
            .find(|d| usable(d) && d.device == want)
            .map_or_else(
                || unsupported(format!("Cannot find boot device of requested type {dev}")),
                Ok,
            );
    }
    let mut chosen = None;
    let mut first_usable = None;
    for d in &def.disks {
        if !usable(d) {
            continue;
        }
        first_usable = first_usable.or(Some(d));
        if d.boot_order.is_some() {
            if chosen.is_some() {
                return unsupported("Only one boot device is supported");
            }
            chosen = Some(d);
        }
    }
    match chosen.or(first_usable) {
        Some(d) => Ok(d),
        None => unsupported("Domain has no usable disk to boot from"),
    }
}

fn split_args(args: &str) -> Vec<String> {
    args.split(' ').map(str::to_string).collect()
}

/// The loader's argv and, for grub-bhyve with default arguments, its device map.
pub fn loader_argv(
    def: &Def,
    opts: &Options,
) -> Result<(Vec<String>, Option<String>), CommandError> {
    match def.bootloader.as_deref() {
        None => {
            let mut a = vec![opts.bhyveload.clone()];
            match &def.bootloader_args {
                Some(args) => a.extend(split_args(args)),
                None => {
                    let disk = boot_disk(def)?;
                    a.push("-m".into());
                    a.push(mib(def.memory_kib));
                    a.push("-d".into());
                    a.push(disk.source.clone().unwrap_or_default());
                    a.push(def.name.clone());
                }
            }
            Ok((a, None))
        }
        Some(bl) if bl.contains("grub-bhyve") && def.bootloader_args.is_none() => {
            grub_argv(def, bl, opts)
        }
        Some(bl) => match &def.bootloader_args {
            Some(args) => {
                let mut a = vec![bl.to_string()];
                a.extend(split_args(args));
                Ok((a, None))
            }
            None => unsupported("Custom loader requires explicit bootloader_args configuration"),
        },
    }
}

fn grub_argv(
    def: &Def,
    bl: &str,
    opts: &Options,
) -> Result<(Vec<String>, Option<String>), CommandError> {
    let mut cd = None;
    let mut hdd = None;
    let mut user: Option<&Disk> = None;
    let mut best = u32::MAX;
    for d in def.disks.iter().filter(|d| usable(d)) {
        if let Some(o) = d.boot_order
            && o < best
        {
            user = Some(d);
            best = o;
            continue;
        }
        if cd.is_none() && d.device == "cdrom" {
            cd = Some(d);
        }
        if hdd.is_none() && d.device == "disk" {
            hdd = Some(d);
        }
    }
    let line = |d: &Disk| {
        let src = d.source.as_deref().unwrap_or_default();
        if d.device == "cdrom" {
            format!("(cd) {src}\n")
        } else {
            format!("(hd0) {src}\n")
        }
    };
    let mut map = String::new();
    match user {
        Some(u) => map.push_str(&line(u)),
        None => {
            if let Some(h) = hdd {
                map.push_str(&line(h));
            }
            if let Some(c) = cd {
                map.push_str(&line(c));
            }
        }
    }
    let root = match (user, cd) {
        (Some(u), _) if u.device == "cdrom" => "cd",
        (Some(_), _) => "hd0,msdos1",
        (None, Some(_)) => "cd",
        (None, None) => "hd0,msdos1",
    };
    let mut a = vec![
        bl.to_string(),
        "--root".into(),
        root.into(),
        "--device-map".into(),
        opts.devmap_file.clone(),
        "--memory".into(),
        mib(def.memory_kib),
    ];
    if opts.caps.grub_consdev
        && let Some(s) = def.serials.first()
    {
        if s.kind != "nmdm" {
            return unsupported("only nmdm console types are supported");
        }
        a.push("--cons-dev".into());
        a.push(s.master.clone().unwrap_or_default());
    }
    a.push(def.name.clone());
    Ok((a, Some(map)))
}

/// Quotes one argument for a shell as libvirt's command printer does.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:,=@%+^".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// An argv as one shell line.
pub fn to_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `domxml-to-native bhyve-argv`: the loader's line (if any), then bhyve's.
pub fn native_text(c: &Commands) -> String {
    let mut out = String::new();
    if let Some(l) = &c.loader {
        out.push_str(&to_line(l));
        out.push('\n');
    }
    out.push_str(&to_line(&c.bhyve));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::{Caps, Firmwares};

    fn base(devices: &str) -> String {
        format!(
            "<domain type='bhyve'><name>vm</name><uuid>df3be7e7-a104-11e3-aeb0-50e5492bd3dc</uuid>\
             <memory>219136</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices>{devices}</devices></domain>"
        )
    }

    const DISK: &str =
        "<disk type='file'><source file='/img'/><target dev='hda' bus='sata'/></disk>";

    fn args(xml: &str) -> Vec<String> {
        build(xml, &Options::for_tests()).unwrap().bhyve
    }

    fn err(xml: &str, opts: &Options) -> String {
        build(xml, opts).unwrap_err().to_string()
    }

    fn joined(xml: &str) -> String {
        args(xml)[1..].join(" ")
    }

    #[test]
    fn base_command_line() {
        let c = build(
            &base(&format!(
                "{DISK}<interface type='bridge'><mac address='52:54:00:00:00:01'/><model type='virtio'/><source bridge='br0'/></interface>"
            )),
            &Options::for_tests(),
        )
        .unwrap();
        assert_eq!(
            c.bhyve.join(" "),
            "/usr/sbin/bhyve -c 1 -m 214 -u -H -P -s 0:0,hostbridge -s 2:0,ahci,hd:/img \
             -s 3:0,virtio-net,faketapdev,mac=52:54:00:00:00:01 vm"
        );
        assert_eq!(
            c.loader.unwrap().join(" "),
            "/usr/sbin/bhyveload -m 214 -d /img vm"
        );
        assert_eq!(c.devmap, None);
    }

    #[test]
    fn wired_memory_msrs_acpi_apic_localtime() {
        let xml = base(DISK).replace(
            "<os>",
            "<memoryBacking><locked/></memoryBacking><features><acpi/><apic/><msrs unknown='ignore'/></features>\
             <clock offset='localtime'/><os>",
        );
        assert_eq!(
            joined(&xml),
            "-c 1 -m 214 -S -A -I -w -H -P -s 0:0,hostbridge -s 2:0,ahci,hd:/img vm"
        );
        let xml = base(DISK).replace("<os>", "<clock offset='variable'/><os>");
        assert!(err(&xml, &Options::for_tests()).contains("unsupported clock offset 'variable'"));
    }

    #[test]
    fn rtc_utc_falls_back_to_localtime_without_the_capability() {
        let mut o = Options::for_tests();
        o.caps.rtc_utc = false;
        let c = build(&base(DISK), &o).unwrap();
        assert!(!c.bhyve.contains(&"-u".to_string()));
    }

    #[test]
    fn topology_rules() {
        let xml = base(DISK).replace(
            "<vcpu>1</vcpu>",
            "<vcpu>4</vcpu><cpu><topology sockets='2' cores='2' threads='1'/></cpu>",
        );
        assert!(joined(&xml).starts_with("-c cpus=4,sockets=2,cores=2,threads=1 "));
        let bad = xml.replace("<vcpu>4</vcpu>", "<vcpu>3</vcpu>");
        assert!(err(&bad, &Options::for_tests()).contains("product of sockets"));
        let mut o = Options::for_tests();
        o.caps.cputopology = false;
        assert!(err(&xml, &o).contains("does not support defining CPU topology"));
    }

    #[test]
    fn pci_slots_explicit_and_allocated() {
        // explicit slot 1 for a NIC: the LPC bridge takes the next free slot
        let xml = base(&format!(
            "{DISK}<serial type='nmdm'><source master='/dev/nmdm0A' slave='/dev/nmdm0B'/></serial>\
             <interface type='bridge'><mac address='52:54:00:00:00:01'/><model type='e1000'/>\
             <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/></interface>\
             <disk type='file'><source file='/v'/><target dev='vda' bus='virtio'/></disk>\
             <rng model='virtio'><backend model='random'>/dev/random</backend></rng>"
        ));
        assert_eq!(
            joined(&xml),
            "-c 1 -m 214 -u -H -P -s 0:0,hostbridge -s 2:0,lpc -s 3:0,ahci,hd:/img \
             -s 1:0,e1000,faketapdev,mac=52:54:00:00:00:01 -s 4:0,virtio-blk,/v -s 5:0,virtio-rnd \
             -l com1,/dev/nmdm0A vm"
        );
        let dup = base(
            "<interface type='bridge'><model type='virtio'/><address type='pci' slot='3'/></interface>\
             <interface type='bridge'><model type='virtio'/><address type='pci' slot='3'/></interface>",
        );
        assert!(err(&dup, &Options::for_tests()).contains("double use of PCI slot 0000:00:03.0"));
    }

    #[test]
    fn no32slot_ahci_and_slot_exhaustion() {
        let mut o = Options::for_tests();
        o.caps.ahci32slot = false;
        let xml = base(
            "<disk type='file'><source file='/a'/><target dev='hda' bus='sata'/></disk>\
             <disk type='file' device='cdrom'><source file='/c'/><target dev='hdb' bus='sata'/></disk>",
        );
        let c = build(&xml, &o).unwrap();
        assert_eq!(
            c.bhyve[10..14].join(" "),
            "-s 2:0,ahci-hd,/a -s 3:0,ahci-cd,/c"
        );
        let many: String = (0..31)
            .map(|i| {
                format!(
                    "<disk type='file'><source file='/d{i}'/><target dev='{}' bus='sata'/></disk>",
                    crate::def::disk_name("hd", i)
                )
            })
            .collect();
        assert!(err(&base(&many), &o).contains("no more free PCI slots"));
    }

    #[test]
    fn graphics_rules() {
        let uefi = |dev: &str| {
            base(dev).replace(
                "<os><type>hvm</type></os>",
                "<os><type>hvm</type><loader readonly='yes' type='pflash'>/fw.fd</loader></os>",
            )
        };
        let g = "<graphics type='vnc' port='5904' passwd='secret'><listen type='address' address='::1'/></graphics>\
                 <video><model type='gop'><resolution x='800' y='600'/></model><driver vgaconf='off'/></video>";
        assert_eq!(
            joined(&uefi(g)),
            "-c 1 -m 214 -u -H -P -s 0:0,hostbridge -l bootrom,/fw.fd -s 1:0,lpc \
             -s 2:0,fbuf,tcp=[::1]:5904,password=secret,w=800,h=600,vga=off vm"
        );
        assert!(
            err(&base(g), &Options::for_tests()).contains("only supported when booting using UEFI")
        );
        let mut o = Options::for_tests();
        o.caps.vnc_password = false;
        assert!(err(&uefi(g), &o).contains("VNC Password authentication not supported"));
        let low =
            "<graphics type='vnc' port='80'><listen type='address' address='0.0.0.0'/></graphics>";
        assert!(err(&uefi(low), &Options::for_tests()).contains("[5900,65535]"));
        let spice = "<graphics type='spice' port='5900'/>";
        assert!(err(&uefi(spice), &Options::for_tests()).contains("Only VNC supported"));
    }

    #[test]
    fn loaders() {
        let grub = base(
            "<disk type='file'><source file='/a'/><target dev='hda' bus='sata'/></disk>\
             <disk type='file' device='cdrom'><source file='/c'/><target dev='hdb' bus='sata'/></disk>",
        )
        .replace("<os>", "<bootloader>/usr/local/sbin/grub-bhyve</bootloader><os>");
        let c = build(&grub, &Options::for_tests()).unwrap();
        assert_eq!(
            c.loader.unwrap().join(" "),
            "/usr/local/sbin/grub-bhyve --root cd --device-map <device.map> --memory 214 vm"
        );
        assert_eq!(c.devmap.as_deref(), Some("(hd0) /a\n(cd) /c\n"));

        let args = base(DISK).replace(
            "<os>",
            "<bootloader_args>-e a=b -m 1G -d /img vm</bootloader_args><os>",
        );
        let c = build(&args, &Options::for_tests()).unwrap();
        assert_eq!(
            c.loader.unwrap().join(" "),
            "/usr/sbin/bhyveload -e a=b -m 1G -d /img vm"
        );
        let custom = base(DISK).replace("<os>", "<bootloader>/bin/ld</bootloader><os>");
        assert!(err(&custom, &Options::for_tests()).contains("requires explicit bootloader_args"));
        assert!(err(&base(""), &Options::for_tests()).contains("at least one disk"));
    }

    #[test]
    fn uefi_firmware_from_directory() {
        let xml = base(DISK).replace("<os>", "<os firmware='efi'>");
        let mut o = Options::for_tests();
        o.firmwares = Firmwares::Listed(vec![".hidden".into(), "OTHER.fd".into()]);
        let c = build(&xml, &o).unwrap();
        assert_eq!(c.loader, None);
        assert!(
            c.bhyve
                .contains(&"bootrom,fakefirmwaredir/OTHER.fd".to_string())
        );
        o.firmwares = Firmwares::Listed(vec![]);
        assert_eq!(
            err(&xml, &o),
            "unsupported configuration: no firmwares found in fakefirmwaredir"
        );
        let mut o = Options::for_tests();
        o.caps = Caps {
            lpc_bootrom: false,
            ..Caps::all()
        };
        assert!(err(&xml, &o).contains("does not support UEFI loader"));
    }

    #[test]
    fn channels_and_tcp_serial() {
        let xml = base(
            "<channel type='unix'><source mode='bind' path='/tmp/ga.sock'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\
             <serial type='tcp'><source mode='bind' host='127.0.0.1' service='4444'/><protocol type='raw'/><target port='1'/></serial>",
        )
        .replace("<os>", "<bootloader_args>x</bootloader_args><os>");
        assert_eq!(
            joined(&xml),
            "-c 1 -m 214 -u -H -P -s 0:0,hostbridge -s 1:0,lpc \
             -s 2:0,virtio-console,org.qemu.guest_agent.0=/tmp/ga.sock -l com2,tcp=127.0.0.1:4444 vm"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("<device.map>"), "'<device.map>'");
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
        assert_eq!(shell_quote("hd:/tmp/x.img,cd:/y"), "hd:/tmp/x.img,cd:/y");
        assert_eq!(shell_quote(""), "''");
    }
}

//! The head of the command line: domain and machine type, accelerator, emulator,
//! firmware (OVMF pflash and the per-domain NVRAM), CPU model and features, memory,
//! SMP topology, UUID, monitor, clock, reboot policy, boot menu and order, and direct
//! kernel boot.
//!
//! Architecture invariant: nothing here talks to QEMU; the filesystem is only asked
//! whether files exist (firmware, NVRAM, kernel, initrd) and `/dev/kvm` opens.

use super::{BuildOptions, CommandError, Monitor, attr, check_exists, json_arg, parse_num};
use rvirt_xml::{Domain, Element};
use std::path::{Path, PathBuf};

/// The OVMF firmware of Debian's `ovmf` package: (code, vars template).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The NVRAM template matching [`OVMF_CODE`].
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Whether KVM is usable: a vendor module is loaded and `/dev/kvm` opens.
pub fn kvm_usable() -> Result<(), String> {
    if !Path::new("/sys/module/kvm_intel").exists() && !Path::new("/sys/module/kvm_amd").exists() {
        return Err(
            "neither /sys/module/kvm_intel nor /sys/module/kvm_amd exists (no hardware virtualization module is loaded)"
                .into(),
        );
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(|_| ())
        .map_err(|e| format!("cannot open /dev/kvm: {e}"))
}

/// The QEMU binary that runs guests of `arch` when the XML names none.
pub fn default_emulator(arch: &str) -> String {
    let target = match arch {
        "i686" => "i386",
        other => other,
    };
    format!("/usr/bin/qemu-system-{target}")
}

/// What the head of the command line tells the device builders.
pub(super) struct Head {
    /// The emulator binary.
    pub(super) emulator: String,
    /// The arguments before any device.
    pub(super) args: Vec<String>,
    /// NVRAM file to create from a template: (template, nvram).
    pub(super) nvram: Option<(PathBuf, PathBuf)>,
    /// A q35 machine (else i440fx).
    pub(super) q35: bool,
    /// The `<os>` element as the user wrote it.
    pub(super) os: Element,
    /// The definition has `<graphics>`.
    pub(super) has_graphics: bool,
}

/// Validates the domain and machine type and builds everything before the devices.
pub(super) fn head(
    def: &Domain,
    root: &mut Element,
    opts: &BuildOptions,
) -> Result<Head, CommandError> {
    let dtype = root.attr("type").unwrap_or("qemu").to_string();
    let accel = match dtype.as_str() {
        "qemu" => "tcg",
        "kvm" => {
            opts.kvm.clone().map_err(CommandError::NoKvm)?;
            "kvm"
        }
        other => {
            return Err(CommandError::Unsupported(format!(
                "domain type '{other}' is not served by the qemu driver (use 'qemu' or 'kvm')"
            )));
        }
    };
    let name = def.name().to_string();
    let arch = def.os_arch().unwrap_or("x86_64").to_string();
    if arch != "x86_64" && arch != "i686" {
        return Err(CommandError::Unsupported(format!(
            "architecture '{arch}' is not supported (x86_64 and i686 only)"
        )));
    }
    if def.os_type() != "hvm" {
        return Err(CommandError::Unsupported(format!(
            "os type '{}' is not supported (hvm only)",
            def.os_type()
        )));
    }
    let machine = def.os_machine().unwrap_or("pc").to_string();
    let q35 = machine == "q35" || machine.starts_with("pc-q35");
    if !(q35 || machine == "pc" || machine.starts_with("pc-i440fx") || machine.starts_with("pc-")) {
        return Err(CommandError::Unsupported(format!(
            "machine type '{machine}' is not supported (pc and q35 families only)"
        )));
    }
    if let Some(t) = root.child_mut("os").and_then(|o| o.child_mut("type")) {
        if t.attr("arch").is_none() {
            t.set_attr("arch", &arch);
        }
        if t.attr("machine").is_none() {
            t.set_attr("machine", &machine);
        }
    }
    let emulator = root
        .child("devices")
        .and_then(|d| d.child("emulator"))
        .map(|e| e.text().trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default_emulator(&arch));
    let devices_has_emulator = root
        .child("devices")
        .and_then(|d| d.child("emulator"))
        .is_some();
    if !devices_has_emulator {
        let devs = root.child_or_insert("devices");
        devs.nodes_mut().insert(
            0,
            rvirt_xml::Node::Element(Element::new("emulator").with_text(&emulator)),
        );
    }

    let mut head: Vec<String> = vec![
        "-name".into(),
        format!("guest={},debug-threads=on", name.replace(',', ",,")),
        "-S".into(),
    ];

    // Firmware.
    let os = root
        .child("os")
        .cloned()
        .unwrap_or_else(|| Element::new("os"));
    let Firmware {
        nvram,
        mut machine_opts,
        fw_args,
    } = firmware(root, &os, &machine, &name, opts)?;
    // <features><vmport state>: after usb=off, as libvirt orders them
    if let Some(st @ ("on" | "off")) = root
        .child("features")
        .and_then(|f| f.child("vmport"))
        .and_then(|v| v.attr("state"))
    {
        machine_opts.insert(2, format!("vmport={st}"));
    }
    let cells = numa_cells(root)?;
    // with NUMA cells each node has its own RAM backend instead
    if cells.is_empty() {
        machine_opts.push("memory-backend=pc.ram".into());
    }
    // <clock><timer name='hpet' present>
    if let Some(present) = root
        .child("clock")
        .and_then(|c| {
            c.children_named("timer")
                .find(|t| t.attr("name") == Some("hpet"))
        })
        .and_then(|t| t.attr("present"))
    {
        machine_opts.push(format!(
            "hpet={}",
            if present == "yes" { "on" } else { "off" }
        ));
    }
    let acpi = root
        .child("features")
        .and_then(|f| f.child("acpi"))
        .is_some();
    machine_opts.push(format!("acpi={}", if acpi { "on" } else { "off" }));
    head.extend(fw_args);
    head.push("-machine".into());
    head.push(machine_opts.join(","));
    head.push("-accel".into());
    head.push(accel.into());

    // CPU.
    let cpu = root.child("cpu").cloned();
    head.push("-cpu".into());
    head.push(cpu_arg(&cpu, accel)?);
    memory(def, &cells, &mut head)?;
    head.push("-smp".into());
    head.push(smp(def, &cpu)?);
    numa(&cells, &mut head);
    head.push("-uuid".into());
    head.push(def.uuid().to_string());

    let graphics: Vec<Element> = def.devices_of("graphics").cloned().collect();
    if graphics.is_empty() {
        head.push("-display".into());
        head.push("none".into());
    }
    head.push("-no-user-config".into());
    head.push("-nodefaults".into());
    head.push("-chardev".into());
    head.push(match &opts.monitor {
        Monitor::Fd(fd) => format!("socket,id=charmonitor,fd={fd},server=on,wait=off"),
        Monitor::Path(p) => format!(
            "socket,id=charmonitor,path={},server=on,wait=off",
            p.to_string_lossy().replace(',', ",,")
        ),
    });
    head.push("-mon".into());
    head.push("chardev=charmonitor,id=monitor,mode=control".into());
    let offset = attr(root, &["clock"], "offset").unwrap_or("utc");
    head.push("-rtc".into());
    head.push(format!(
        "base={}",
        if offset == "localtime" {
            "localtime"
        } else {
            "utc"
        }
    ));
    head.push("-no-shutdown".into());
    if root
        .child("on_reboot")
        .map(|e| e.text())
        .as_deref()
        .map(str::trim)
        == Some("destroy")
    {
        head.push("-no-reboot".into());
    }
    let bootmenu = attr(root, &["os", "bootmenu"], "enable") == Some("yes");
    head.push("-boot".into());
    head.push(if bootmenu {
        "menu=on,strict=on".into()
    } else {
        "strict=on".into()
    });

    kernel(&os, opts, &mut head)?;
    Ok(Head {
        emulator,
        args: head,
        nvram,
        q35,
        os,
        has_graphics: !graphics.is_empty(),
    })
}

/// What the firmware adds to the command line.
struct Firmware {
    /// NVRAM file to create from a template: (template, nvram).
    nvram: Option<(PathBuf, PathBuf)>,
    /// `-machine` options so far (type, pflash drives).
    machine_opts: Vec<String>,
    /// The pflash `-blockdev`s.
    fw_args: Vec<String>,
}

/// The `-machine` options, pflash `-blockdev`s and NVRAM of UEFI firmware; the live
/// `<os>` shows the loader and NVRAM chosen.
fn firmware(
    root: &mut Element,
    os: &Element,
    machine: &str,
    name: &str,
    opts: &BuildOptions,
) -> Result<Firmware, CommandError> {
    let efi = os.attr("firmware") == Some("efi")
        || os.child("loader").and_then(|l| l.attr("type")) == Some("pflash");
    let mut nvram = None;
    let mut machine_opts = vec![
        machine.to_string(),
        "usb=off".into(),
        "dump-guest-core=off".into(),
    ];
    let mut fw_args = Vec::new();
    if efi {
        let loader = os
            .child("loader")
            .map(|l| l.text().trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| OVMF_CODE.to_string());
        let template = os
            .child("nvram")
            .and_then(|n| n.attr("template"))
            .map(str::to_string)
            .unwrap_or_else(|| OVMF_VARS.to_string());
        let vars = os
            .child("nvram")
            .map(|n| n.text().trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                opts.nvram_dir
                    .join(format!("{name}_VARS.fd"))
                    .to_string_lossy()
                    .into_owned()
            });
        check_exists(opts.check_files, "firmware", &loader)?;
        if !Path::new(&vars).exists() {
            check_exists(opts.check_files, "nvram template", &template)?;
            nvram = Some((PathBuf::from(&template), PathBuf::from(&vars)));
        }
        fw_args.push("-blockdev".into());
        fw_args.push(json_arg(&obj! {"driver": "file", "filename": loader,
        "node-name": "libvirt-pflash0-storage", "auto-read-only": true, "discard": "unmap"}));
        fw_args.push("-blockdev".into());
        fw_args.push(json_arg(
            &obj! {"node-name": "libvirt-pflash0-format", "read-only": true,
            "driver": "raw", "file": "libvirt-pflash0-storage"},
        ));
        fw_args.push("-blockdev".into());
        fw_args.push(json_arg(&obj! {"driver": "file", "filename": vars,
        "node-name": "libvirt-pflash1-storage", "read-only": false}));
        machine_opts.push("pflash0=libvirt-pflash0-format".into());
        machine_opts.push("pflash1=libvirt-pflash1-storage".into());
        let o = root.child_or_insert("os");
        o.remove_children(|c| c.name() == "loader" || c.name() == "nvram");
        o.push(
            Element::new("loader")
                .with_attr("readonly", "yes")
                .with_attr("type", "pflash")
                .with_text(&loader),
        );
        o.push(
            Element::new("nvram")
                .with_attr("template", &template)
                .with_text(&vars),
        );
    }
    Ok(Firmware {
        nvram,
        machine_opts,
        fw_args,
    })
}

/// The `-cpu` argument.
fn cpu_arg(cpu: &Option<Element>, accel: &str) -> Result<String, CommandError> {
    let cpu_arg = match cpu
        .as_ref()
        .and_then(|c| c.attr("mode"))
        .unwrap_or("custom")
    {
        "host-passthrough" | "maximum" if accel == "kvm" => "host,migratable=on".to_string(),
        "host-passthrough" => {
            return Err(CommandError::Unsupported(
                "CPU mode 'host-passthrough' needs KVM (domain type 'kvm')".into(),
            ));
        }
        "maximum" => "max".to_string(),
        "host-model" => if accel == "kvm" { "host" } else { "max" }.to_string(),
        _ => {
            let c = cpu.as_ref();
            let model = c
                .and_then(|c| c.child("model"))
                .map(|m| m.text().trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "qemu64".into());
            let mut s = model;
            for f in c.into_iter().flat_map(|c| c.children_named("feature")) {
                let Some(n) = f.attr("name") else { continue };
                let on = matches!(
                    f.attr("policy").unwrap_or("require"),
                    "require" | "force" | "optional"
                );
                s.push_str(&format!(",{n}={}", if on { "on" } else { "off" }));
            }
            s
        }
    };
    Ok(cpu_arg)
}

/// A guest NUMA node (`<cpu><numa><cell>`): id, vCPU ranges, memory in KiB rounded up to
/// whole MiB (as QEMU wants on x86).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NumaCell {
    id: u32,
    cpus: Vec<String>,
    kib: u64,
}

/// The NUMA cells of `<cpu><numa>`, by id. The plain form only: per-cell memory access
/// modes, discard, distances, caches and a `<memoryBacking>` with NUMA are refused.
pub(super) fn numa_cells(root: &Element) -> Result<Vec<NumaCell>, CommandError> {
    let Some(numa) = root.child("cpu").and_then(|c| c.child("numa")) else {
        return Ok(Vec::new());
    };
    if let Some(c) = numa.elements().find(|c| c.name() != "cell") {
        return Err(CommandError::Unsupported(format!(
            "<numa><{}> is not supported by the qemu driver",
            c.name()
        )));
    }
    if root.child("memoryBacking").is_some() {
        return Err(CommandError::Unsupported(
            "<memoryBacking> with guest NUMA cells is not supported by the qemu driver".into(),
        ));
    }
    if root
        .child("numatune")
        .is_some_and(|t| t.child("memnode").is_some())
    {
        return Err(CommandError::Unsupported(
            "<numatune><memnode> (host nodes per guest NUMA cell) is not supported by the qemu driver".into(),
        ));
    }
    let mut out = Vec::new();
    for (k, c) in numa.children_named("cell").enumerate() {
        if let Some(a) = ["memAccess", "discard"]
            .iter()
            .find(|a| c.attr(a).is_some())
        {
            return Err(CommandError::Unsupported(format!(
                "NUMA cell attribute '{a}' is not supported by the qemu driver"
            )));
        }
        if let Some(x) = c.elements().next() {
            return Err(CommandError::Unsupported(format!(
                "NUMA cell <{}> is not supported by the qemu driver",
                x.name()
            )));
        }
        let id = match c.attr("id") {
            Some(v) => parse_num(v)
                .map(|v| v as u32)
                .ok_or_else(|| CommandError::Invalid(format!("invalid NUMA cell id '{v}'")))?,
            None => k as u32,
        };
        let cpus = c
            .attr("cpus")
            .ok_or_else(|| CommandError::Invalid(format!("NUMA cell {id} has no cpus")))?;
        let mem = c
            .attr("memory")
            .ok_or_else(|| CommandError::Invalid(format!("NUMA cell {id} has no memory")))?;
        let kib = rvirt_xml::util::scale_to_bytes(mem, c.attr("unit"), 1024)
            .map_err(|e| CommandError::Invalid(format!("NUMA cell {id} memory: {e}")))?
            / 1024;
        out.push(NumaCell {
            id,
            cpus: cpus.split(',').map(|r| r.trim().to_string()).collect(),
            kib: kib.div_ceil(1024) * 1024,
        });
    }
    out.sort_by_key(|c| c.id);
    if out.windows(2).any(|w| w[0].id == w[1].id) {
        return Err(CommandError::Invalid("duplicate NUMA cell id".into()));
    }
    Ok(out)
}

/// A RAM backend and a `-numa node` per cell.
fn numa(cells: &[NumaCell], head: &mut Vec<String>) {
    for c in cells {
        let mem = format!("ram-node{}", c.id);
        head.push("-object".into());
        head.push(json_arg(
            &obj! {"qom-type": "memory-backend-ram", "id": mem, "size": c.kib * 1024},
        ));
        let mut node = format!("node,nodeid={}", c.id);
        for r in &c.cpus {
            node.push_str(&format!(",cpus={r}"));
        }
        node.push_str(&format!(",memdev={mem}"));
        head.push("-numa".into());
        head.push(node);
    }
}

/// `-m` and the RAM backend (the NUMA cells' together when there are cells). QEMU
/// wants whole MiB on x86.
fn memory(def: &Domain, cells: &[NumaCell], head: &mut Vec<String>) -> Result<(), CommandError> {
    if !cells.is_empty() {
        head.push("-m".into());
        head.push(format!(
            "size={}k",
            cells.iter().map(|c| c.kib).sum::<u64>()
        ));
        head.push("-overcommit".into());
        head.push("mem-lock=off".into());
        return Ok(());
    }
    let mem_kib = def.memory_kib().div_ceil(1024) * 1024;
    if mem_kib == 0 {
        return Err(CommandError::Invalid(
            "memory size must be greater than zero".into(),
        ));
    }
    head.push("-m".into());
    head.push(format!("size={mem_kib}k"));
    head.push("-object".into());
    head.push(json_arg(
        &obj! {"qom-type": "memory-backend-ram", "id": "pc.ram", "size": mem_kib * 1024},
    ));
    head.push("-overcommit".into());
    head.push("mem-lock=off".into());
    Ok(())
}

/// The `-smp` argument.
fn smp(def: &Domain, cpu: &Option<Element>) -> Result<String, CommandError> {
    let maxv = def.max_vcpus().max(1);
    let cur = def.current_vcpus().clamp(1, maxv);
    let topo = cpu.as_ref().and_then(|c| c.child("topology"));
    let t = |k: &str| {
        topo.and_then(|t| t.attr(k))
            .and_then(parse_num)
            .map(|v| v as u32)
    };
    let (sockets, dies, cores, threads) = match topo {
        Some(_) => (
            t("sockets").unwrap_or(1),
            t("dies").unwrap_or(1),
            t("cores").unwrap_or(1),
            t("threads").unwrap_or(1),
        ),
        None => (maxv, 1, 1, 1),
    };
    let clusters = t("clusters").unwrap_or(1);
    if sockets * dies * clusters * cores * threads != maxv {
        return Err(CommandError::Invalid(format!(
            "CPU topology sockets={sockets} dies={dies} clusters={clusters} cores={cores} threads={threads} does not match {maxv} vcpus"
        )));
    }
    let mut smp = format!("{cur}");
    if cur != maxv {
        smp.push_str(&format!(",maxcpus={maxv}"));
    }
    smp.push_str(&format!(",sockets={sockets}"));
    // an explicit <topology> names every level QEMU has (dies since 4.1, clusters
    // since 7.0), as libvirt does
    if topo.is_some() {
        smp.push_str(&format!(",dies={dies},clusters={clusters}"));
    }
    smp.push_str(&format!(",cores={cores},threads={threads}"));
    Ok(smp)
}

/// Direct kernel boot: `-kernel`, `-initrd`, `-append`.
fn kernel(os: &Element, opts: &BuildOptions, head: &mut Vec<String>) -> Result<(), CommandError> {
    if let Some(k) = os
        .child("kernel")
        .map(|k| k.text().trim().to_string())
        .filter(|s| !s.is_empty())
    {
        check_exists(opts.check_files, "kernel", &k)?;
        head.push("-kernel".into());
        head.push(k);
        if let Some(i) = os
            .child("initrd")
            .map(|k| k.text().trim().to_string())
            .filter(|s| !s.is_empty())
        {
            check_exists(opts.check_files, "initrd", &i)?;
            head.push("-initrd".into());
            head.push(i);
        }
        if let Some(c) = os.child("cmdline").map(|k| k.text()) {
            head.push("-append".into());
            head.push(c);
        }
    }
    Ok(())
}

/// The boot index of each device kind's first device from `<os><boot dev>`, by
/// (kind, position); empty when any device has its own `<boot order>` or the kernel
/// boots directly.
pub(super) type BootOrder = std::collections::HashMap<(&'static str, usize), u64>;

/// Boot order: per-device <boot order>, else <os><boot dev> in order.
pub(super) fn boot_order(devs: &Element, os: &Element) -> BootOrder {
    let any_boot = devs.elements().any(|e| e.child("boot").is_some());
    let mut boot_for: std::collections::HashMap<(&'static str, usize), u64> = Default::default();
    if !any_boot && os.child("kernel").is_none() {
        let mut n = 1;
        for b in os.children_named("boot") {
            let key: (&'static str, usize) = match b.attr("dev") {
                Some("hd") => ("disk", 0),
                Some("cdrom") => ("cdrom", 0),
                Some("network") => ("interface", 0),
                _ => continue,
            };
            boot_for.insert(key, n);
            n += 1;
        }
    }
    boot_for
}

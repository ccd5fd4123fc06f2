//! The part of a domain definition the bhyve driver reads, taken from the domain XML, and
//! the defaults libvirt's parser and bhyve driver fill in before a command line is built:
//! nmdm device names, the implicit video of a graphics device, SATA drive addresses, the
//! implicit PCI root, ISA (LPC), SATA and virtio-serial controllers, the UEFI firmware of
//! `<os firmware='efi'>`, and the PCI slots of every device that has none.

use crate::caps::Options;
use rvirt_xml::Element;
use thiserror::Error;

/// Why a domain definition cannot be read or completed.
#[derive(Debug, Error)]
pub enum DefError {
    /// The document is not XML.
    #[error("invalid domain xml")]
    Xml(#[source] rvirt_xml::XmlError),
    /// A field is missing or has a bad value.
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
    /// The definition asks for what bhyve cannot do.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
}

fn invalid(path: &str, problem: impl Into<String>) -> DefError {
    DefError::Invalid {
        path: path.to_string(),
        problem: problem.into(),
    }
}

/// A PCI address on the single bhyve bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pci {
    pub bus: u32,
    pub slot: u32,
    pub function: u32,
}

/// A SATA drive address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drive {
    pub controller: u32,
    pub bus: u32,
    pub target: u32,
    pub unit: u32,
}

/// How a device's address is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Addr {
    #[default]
    None,
    Pci(Pci),
    Drive(Drive),
}

impl Addr {
    /// libvirt's "PCI address wanted": no address, or an all-zero PCI address.
    pub fn wants_pci(&self) -> bool {
        match self {
            Addr::None => true,
            Addr::Pci(p) => p.bus == 0 && p.slot == 0 && p.function == 0,
            Addr::Drive(_) => false,
        }
    }

    pub fn pci(&self) -> Pci {
        match self {
            Addr::Pci(p) => *p,
            _ => Pci::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    pub sockets: u32,
    pub dies: u32,
    pub cores: u32,
    pub threads: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub kind: String,
    pub index: u32,
    pub model: Option<String>,
    pub addr: Addr,
}

#[derive(Debug, Clone)]
pub struct Disk {
    pub kind: String,
    pub device: String,
    pub source: Option<String>,
    pub dst: String,
    pub bus: String,
    pub addr: Addr,
    pub boot_order: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Net {
    pub kind: String,
    pub bridge: Option<String>,
    pub model: Option<String>,
    pub mac: String,
    pub addr: Addr,
}

#[derive(Debug, Clone)]
pub struct Listen {
    pub kind: String,
    pub address: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Graphics {
    pub kind: String,
    pub port: i64,
    pub autoport: bool,
    pub listen: Option<Listen>,
    pub passwd: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Video {
    pub model: String,
    pub resolution: Option<(u32, u32)>,
    pub vgaconf: Option<String>,
    pub addr: Addr,
}

#[derive(Debug, Clone)]
pub struct Sound {
    pub model: String,
    pub audio_id: u32,
    pub addr: Addr,
}

#[derive(Debug, Clone)]
pub struct Audio {
    pub id: u32,
    pub kind: String,
    pub input_dev: Option<String>,
    pub output_dev: Option<String>,
    /// Whether `<input>`/`<output>` carry backend-independent settings.
    pub common_settings: bool,
}

#[derive(Debug, Clone)]
pub struct Fs {
    pub kind: String,
    pub driver: Option<String>,
    pub accessmode: String,
    pub source: String,
    pub target: String,
    pub readonly: bool,
    pub addr: Addr,
}

#[derive(Debug, Clone)]
pub struct Rng {
    pub model: String,
    pub backend: String,
    pub source: String,
    pub addr: Addr,
}

/// A serial port: `nmdm` (master and slave device) or a listening raw `tcp` socket.
#[derive(Debug, Clone)]
pub struct Serial {
    pub kind: String,
    pub port: u32,
    pub master: Option<String>,
    pub slave: Option<String>,
    pub host: Option<String>,
    pub service: Option<String>,
    pub listen: bool,
    pub protocol: String,
}

/// A virtio channel on a UNIX socket (bhyve's virtio-console port).
#[derive(Debug, Clone)]
pub struct Channel {
    pub source_type: String,
    pub path: Option<String>,
    pub target_type: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Input {
    pub kind: String,
    pub bus: String,
}

/// The clock offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clock {
    Utc,
    Localtime,
    Other(String),
}

/// A domain definition as the bhyve driver sees it.
#[derive(Debug, Clone)]
pub struct Def {
    pub name: String,
    pub uuid: Option<String>,
    pub memory_kib: u64,
    pub vcpus: u32,
    pub topology: Option<Topology>,
    pub locked: bool,
    pub acpi: bool,
    pub apic: bool,
    pub msrs_ignore: bool,
    pub clock: Clock,
    pub bootloader: Option<String>,
    pub bootloader_args: Option<String>,
    pub loader: Option<String>,
    /// Whether the loader is a read-only pflash image (what bhyve's bootrom is).
    pub loader_readonly_pflash: bool,
    pub firmware_efi: bool,
    pub boot_devs: Vec<String>,
    pub controllers: Vec<Controller>,
    pub disks: Vec<Disk>,
    pub nets: Vec<Net>,
    pub graphics: Vec<Graphics>,
    pub videos: Vec<Video>,
    pub sounds: Vec<Sound>,
    pub audios: Vec<Audio>,
    pub fss: Vec<Fs>,
    pub rngs: Vec<Rng>,
    pub serials: Vec<Serial>,
    pub channels: Vec<Channel>,
    pub inputs: Vec<Input>,
    pub cmdline: Vec<String>,
}

/// A number as libvirt reads attributes: decimal, or hexadecimal with `0x`.
fn number(path: &str, v: &str) -> Result<u64, DefError> {
    let v = v.trim();
    let r = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        v.parse()
    };
    r.map_err(|_| invalid(path, format!("'{v}' is not a number")))
}

fn attr_num(e: &Element, path: &str, name: &str) -> Result<Option<u32>, DefError> {
    e.attr(name)
        .map(|v| {
            number(&format!("{path}/@{name}"), v).and_then(|n| {
                u32::try_from(n)
                    .map_err(|_| invalid(&format!("{path}/@{name}"), "value out of range"))
            })
        })
        .transpose()
}

fn address(dev: &Element, path: &str) -> Result<Addr, DefError> {
    let Some(a) = dev.child("address") else {
        return Ok(Addr::None);
    };
    let p = format!("{path}/address");
    match a.attr("type") {
        Some("pci") => {
            let domain = attr_num(a, &p, "domain")?.unwrap_or(0);
            if domain != 0 {
                return Err(invalid(&p, "only PCI domain 0 is supported"));
            }
            Ok(Addr::Pci(Pci {
                bus: attr_num(a, &p, "bus")?.unwrap_or(0),
                slot: attr_num(a, &p, "slot")?.unwrap_or(0),
                function: attr_num(a, &p, "function")?.unwrap_or(0),
            }))
        }
        Some("drive") => Ok(Addr::Drive(Drive {
            controller: attr_num(a, &p, "controller")?.unwrap_or(0),
            bus: attr_num(a, &p, "bus")?.unwrap_or(0),
            target: attr_num(a, &p, "target")?.unwrap_or(0),
            unit: attr_num(a, &p, "unit")?.unwrap_or(0),
        })),
        Some(t) => Err(DefError::Unsupported(format!(
            "unsupported address type '{t}' in {path} (bhyve takes 'pci' and 'drive')"
        ))),
        None => Err(invalid(&format!("{p}/@type"), "missing required attribute")),
    }
}

/// A memory size element (`<memory unit='...'>N</memory>`) in KiB.
fn memory_kib(e: &Element, path: &str) -> Result<u64, DefError> {
    let n = number(path, &e.text())?;
    let unit = e.attr("unit").unwrap_or("KiB");
    let mult: u128 = match unit {
        "b" | "bytes" => 1,
        "KB" => 1000,
        "k" | "KiB" => 1024,
        "MB" => 1_000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "T" | "TiB" => 1 << 40,
        "PB" => 1_000_000_000_000_000,
        "P" | "PiB" => 1 << 50,
        "EB" => 1_000_000_000_000_000_000,
        "E" | "EiB" => 1 << 60,
        u => {
            return Err(invalid(
                &format!("{path}/@unit"),
                format!("unknown unit '{u}'"),
            ));
        }
    };
    let bytes = n as u128 * mult;
    Ok(bytes.div_ceil(1024) as u64)
}

fn text(e: &Element, name: &str) -> Option<String> {
    e.child(name).map(|c| c.text().trim().to_string())
}

/// The index of a disk name (`hda` 0, `sdb` 1, `vdaa` 26), as libvirt's `virDiskNameParse`.
pub fn disk_index(name: &str) -> Option<u32> {
    let rest = ["xvd", "ubd", "hd", "sd", "vd", "fd"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    let letters: String = rest
        .chars()
        .take_while(|c| c.is_ascii_lowercase())
        .collect();
    let digits = &rest[letters.len()..];
    if letters.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut idx: u64 = 0;
    for c in letters.chars() {
        idx = idx * 26 + (c as u64 - 'a' as u64 + 1);
        if idx > u32::MAX as u64 {
            return None;
        }
    }
    Some((idx - 1) as u32)
}

/// The disk name of an index, the inverse of [`disk_index`] (`prefix` `sd`, 27: `sdab`).
pub fn disk_name(prefix: &str, mut idx: u32) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push((b'a' + (idx % 26) as u8) as char);
        if idx < 26 {
            break;
        }
        idx = idx / 26 - 1;
    }
    letters.reverse();
    format!("{prefix}{}", letters.into_iter().collect::<String>())
}

impl Def {
    /// Reads the domain XML.
    pub fn parse(xml: &str, opts: &Options) -> Result<Def, DefError> {
        let root = Element::parse(xml).map_err(DefError::Xml)?;
        Def::from_element(&root, opts)
    }

    /// Reads a parsed domain document.
    pub fn from_element(root: &Element, opts: &Options) -> Result<Def, DefError> {
        if root.name() != "domain" {
            return Err(invalid(root.name(), "the root element is not <domain>"));
        }
        match root.attr("type") {
            Some("bhyve") => {}
            Some(t) => {
                return Err(DefError::Unsupported(format!(
                    "domain/@type: the bhyve driver runs domains of type 'bhyve', not '{t}'"
                )));
            }
            None => return Err(invalid("domain/@type", "missing required attribute")),
        }
        let name = text(root, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("domain/name", "missing required element"))?;
        let uuid = text(root, "uuid");
        if let Some(u) = &uuid
            && uuid::Uuid::parse_str(u).is_err()
        {
            return Err(invalid("domain/uuid", format!("'{u}' is not a UUID")));
        }
        let memory_kib = match root.child("memory") {
            Some(m) => memory_kib(m, "domain/memory")?,
            None => match root.child("currentMemory") {
                Some(m) => memory_kib(m, "domain/currentMemory")?,
                None => return Err(invalid("domain/memory", "missing required element")),
            },
        };
        let vcpus = match root.child("vcpu") {
            Some(v) => {
                let max = number("domain/vcpu", &v.text())?;
                let cur = match v.attr("current") {
                    Some(c) => number("domain/vcpu/@current", c)?,
                    None => max,
                };
                if max == 0 || cur == 0 || cur > max {
                    return Err(invalid("domain/vcpu", "invalid number of vCPUs"));
                }
                u32::try_from(cur).map_err(|_| invalid("domain/vcpu", "value out of range"))?
            }
            None => 1,
        };
        let topology = match root.child("cpu").and_then(|c| c.child("topology")) {
            Some(t) => {
                let p = "domain/cpu/topology";
                let get = |n: &str| -> Result<u32, DefError> {
                    let v = attr_num(t, p, n)?.ok_or_else(|| {
                        invalid(&format!("{p}/@{n}"), "missing required attribute")
                    })?;
                    if v == 0 {
                        return Err(invalid(&format!("{p}/@{n}"), "must be positive"));
                    }
                    Ok(v)
                };
                Some(Topology {
                    sockets: get("sockets")?,
                    dies: attr_num(t, p, "dies")?.unwrap_or(1),
                    cores: get("cores")?,
                    threads: get("threads")?,
                })
            }
            None => None,
        };
        let locked = root
            .child("memoryBacking")
            .is_some_and(|m| m.child("locked").is_some());
        let features = root.child("features");
        let feature_on = |n: &str| {
            features
                .and_then(|f| f.child(n))
                .is_some_and(|e| e.attr("state").is_none_or(|s| s == "on"))
        };
        let acpi = feature_on("acpi");
        let apic = feature_on("apic");
        let msrs_ignore = features
            .and_then(|f| f.child("msrs"))
            .is_some_and(|m| m.attr("unknown") == Some("ignore"));
        let clock = match root.child("clock").and_then(|c| c.attr("offset")) {
            None | Some("utc") => Clock::Utc,
            Some("localtime") => Clock::Localtime,
            Some(o) => Clock::Other(o.to_string()),
        };
        let os = root.child("os");
        let bootloader = text(root, "bootloader").filter(|s| !s.is_empty());
        let bootloader_args = text(root, "bootloader_args");
        let loader = os
            .and_then(|o| o.child("loader"))
            .map(|l| l.text().trim().to_string())
            .filter(|s| !s.is_empty());
        let loader_readonly_pflash = os
            .and_then(|o| o.child("loader"))
            .is_some_and(|l| l.attr("readonly") == Some("yes") && l.attr("type") == Some("pflash"));
        let firmware_efi = os.and_then(|o| o.attr("firmware")) == Some("efi");
        let boot_devs: Vec<String> = os
            .map(|o| {
                o.children_named("boot")
                    .filter_map(|b| b.attr("dev").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();

        let mut def = Def {
            name,
            uuid,
            memory_kib,
            vcpus,
            topology,
            locked,
            acpi,
            apic,
            msrs_ignore,
            clock,
            bootloader,
            bootloader_args,
            loader: None,
            loader_readonly_pflash,
            firmware_efi,
            boot_devs,
            controllers: Vec::new(),
            disks: Vec::new(),
            nets: Vec::new(),
            graphics: Vec::new(),
            videos: Vec::new(),
            sounds: Vec::new(),
            audios: Vec::new(),
            fss: Vec::new(),
            rngs: Vec::new(),
            serials: Vec::new(),
            channels: Vec::new(),
            inputs: Vec::new(),
            cmdline: Vec::new(),
        };
        def.loader = loader;

        let mut consoles = Vec::new();
        if let Some(devices) = root.child("devices") {
            let mut counts = std::collections::HashMap::<String, usize>::new();
            for dev in devices.elements() {
                let n = counts.entry(dev.name().to_string()).or_default();
                *n += 1;
                let path = format!("domain/devices/{}[{}]", dev.name(), n);
                def.read_device(dev, &path, opts, &mut consoles)?;
            }
        }
        // A console with no serial port is the first serial port (libvirt's console
        // compatibility rule).
        if def.serials.is_empty()
            && let Some(c) = consoles.into_iter().next()
        {
            def.serials.push(c);
        }
        if let Some(cl) = root.child("bhyve:commandline") {
            for a in cl.children_named("bhyve:arg") {
                def.cmdline
                    .push(a.attr("value").unwrap_or_default().to_string());
            }
        }
        let mut orders: Vec<u32> = def.disks.iter().filter_map(|d| d.boot_order).collect();
        orders.sort_unstable();
        if let Some(w) = orders.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(
                "domain/devices/disk/boot/@order",
                format!("boot order '{}' used for more than one device", w[0]),
            ));
        }
        if !def.boot_devs.is_empty() && def.disks.iter().any(|d| d.boot_order.is_some()) {
            return Err(invalid(
                "domain/os/boot",
                "per-device boot elements cannot be used together with os/boot elements",
            ));
        }
        def.post_parse(opts)?;
        Ok(def)
    }

    fn read_device(
        &mut self,
        dev: &Element,
        path: &str,
        opts: &Options,
        consoles: &mut Vec<Serial>,
    ) -> Result<(), DefError> {
        let addr = || address(dev, path);
        match dev.name() {
            "disk" => {
                let target = dev.child("target").ok_or_else(|| {
                    invalid(&format!("{path}/target"), "missing required element")
                })?;
                let dst = target
                    .attr("dev")
                    .ok_or_else(|| {
                        invalid(&format!("{path}/target/@dev"), "missing required attribute")
                    })?
                    .to_string();
                let bus = target.attr("bus").map(str::to_string).unwrap_or_else(|| {
                    if dst.starts_with("vd") {
                        "virtio".into()
                    } else if dst.starts_with("sd") {
                        "scsi".into()
                    } else if dst.starts_with("hd") {
                        "ide".into()
                    } else {
                        "none".into()
                    }
                });
                let source = dev.child("source").and_then(|s| {
                    s.attr("file")
                        .or_else(|| s.attr("dev"))
                        .or_else(|| s.attr("dir"))
                        .or_else(|| s.attr("volume"))
                        .map(str::to_string)
                });
                let boot_order = match dev.child("boot") {
                    Some(b) => Some(
                        attr_num(b, &format!("{path}/boot"), "order")?
                            .filter(|o| *o > 0)
                            .ok_or_else(|| {
                                invalid(&format!("{path}/boot/@order"), "must be a positive number")
                            })?,
                    ),
                    None => None,
                };
                self.disks.push(Disk {
                    kind: dev.attr("type").unwrap_or("file").to_string(),
                    device: dev.attr("device").unwrap_or("disk").to_string(),
                    source,
                    dst,
                    bus,
                    addr: addr()?,
                    boot_order,
                });
            }
            "controller" => {
                let kind = dev
                    .attr("type")
                    .ok_or_else(|| invalid(&format!("{path}/@type"), "missing required attribute"))?
                    .to_string();
                let index = attr_num(dev, path, "index")?.unwrap_or(0);
                self.insert_controller(Controller {
                    kind,
                    index,
                    model: dev.attr("model").map(str::to_string),
                    addr: addr()?,
                });
            }
            "interface" => {
                let mac = match dev.child("mac").and_then(|m| m.attr("address")) {
                    Some(m) => normalize_mac(m).ok_or_else(|| {
                        invalid(
                            &format!("{path}/mac/@address"),
                            format!("'{m}' is not a MAC address"),
                        )
                    })?,
                    None => (opts.mac)(),
                };
                self.nets.push(Net {
                    kind: dev.attr("type").unwrap_or("").to_string(),
                    bridge: dev
                        .child("source")
                        .and_then(|s| s.attr("bridge"))
                        .map(str::to_string),
                    model: dev
                        .child("model")
                        .and_then(|m| m.attr("type"))
                        .map(str::to_string),
                    mac,
                    addr: addr()?,
                });
            }
            "graphics" => {
                let port = match dev.attr("port") {
                    Some(p) => p.trim().parse::<i64>().map_err(|_| {
                        invalid(&format!("{path}/@port"), format!("'{p}' is not a port"))
                    })?,
                    None => -1,
                };
                let autoport = dev.attr("autoport") == Some("yes") || port == -1;
                let listen = match dev.child("listen") {
                    Some(l) => Some(Listen {
                        kind: l.attr("type").unwrap_or("address").to_string(),
                        address: l.attr("address").map(str::to_string),
                    }),
                    None => match dev.attr("listen") {
                        Some(a) => Some(Listen {
                            kind: "address".into(),
                            address: Some(a.to_string()),
                        }),
                        // libvirt gives a VNC display without <listen> an address listen
                        None if dev.attr("type") == Some("vnc") && dev.attr("socket").is_none() => {
                            Some(Listen {
                                kind: "address".into(),
                                address: None,
                            })
                        }
                        None => None,
                    },
                };
                self.graphics.push(Graphics {
                    kind: dev.attr("type").unwrap_or("").to_string(),
                    port,
                    autoport,
                    listen,
                    passwd: dev.attr("passwd").map(str::to_string),
                });
            }
            "video" => {
                let model = dev.child("model");
                let resolution = match model.and_then(|m| m.child("resolution")) {
                    Some(r) => {
                        let p = format!("{path}/model/resolution");
                        let x = attr_num(r, &p, "x")?;
                        let y = attr_num(r, &p, "y")?;
                        match (x, y) {
                            (Some(x), Some(y)) => Some((x, y)),
                            _ => return Err(invalid(&p, "both x and y are required")),
                        }
                    }
                    None => None,
                };
                self.videos.push(Video {
                    model: model
                        .and_then(|m| m.attr("type"))
                        .unwrap_or("gop")
                        .to_string(),
                    resolution,
                    vgaconf: dev
                        .child("driver")
                        .and_then(|d| d.attr("vgaconf"))
                        .map(str::to_string),
                    addr: addr()?,
                });
            }
            "sound" => {
                let audio_id = match dev.child("audio") {
                    Some(a) => attr_num(a, &format!("{path}/audio"), "id")?.unwrap_or(0),
                    None => 0,
                };
                self.sounds.push(Sound {
                    model: dev.attr("model").unwrap_or("").to_string(),
                    audio_id,
                    addr: addr()?,
                });
            }
            "audio" => {
                let id = attr_num(dev, path, "id")?.unwrap_or(0);
                let io = |n: &str| dev.child(n);
                let common = ["mixingEngine", "fixedSettings", "voices", "bufferLength"];
                let common_settings = ["input", "output"].iter().any(|n| {
                    io(n).is_some_and(|e| {
                        common.iter().any(|a| e.attr(a).is_some()) || e.child("settings").is_some()
                    })
                });
                self.audios.push(Audio {
                    id,
                    kind: dev.attr("type").unwrap_or("none").to_string(),
                    input_dev: io("input").and_then(|e| e.attr("dev")).map(str::to_string),
                    output_dev: io("output").and_then(|e| e.attr("dev")).map(str::to_string),
                    common_settings,
                });
            }
            "filesystem" => {
                let source = dev
                    .child("source")
                    .and_then(|s| {
                        s.attr("dir")
                            .or_else(|| s.attr("file"))
                            .or_else(|| s.attr("dev"))
                            .or_else(|| s.attr("name"))
                    })
                    .ok_or_else(|| invalid(&format!("{path}/source"), "missing source"))?
                    .to_string();
                let target = dev
                    .child("target")
                    .and_then(|t| t.attr("dir"))
                    .ok_or_else(|| {
                        invalid(&format!("{path}/target/@dir"), "missing required attribute")
                    })?
                    .to_string();
                self.fss.push(Fs {
                    kind: dev.attr("type").unwrap_or("mount").to_string(),
                    driver: dev
                        .child("driver")
                        .and_then(|d| d.attr("type"))
                        .map(str::to_string),
                    accessmode: dev.attr("accessmode").unwrap_or("passthrough").to_string(),
                    source,
                    target,
                    readonly: dev.child("readonly").is_some(),
                    addr: addr()?,
                });
            }
            "rng" => {
                let backend = dev.child("backend");
                self.rngs.push(Rng {
                    model: dev.attr("model").unwrap_or("").to_string(),
                    backend: backend
                        .and_then(|b| b.attr("model"))
                        .unwrap_or("")
                        .to_string(),
                    source: backend
                        .map(|b| b.text().trim().to_string())
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "/dev/random".into()),
                    addr: addr()?,
                });
            }
            "serial" | "console" => {
                let s = self.serial(dev, path)?;
                if dev.name() == "serial" {
                    self.serials.push(s);
                } else {
                    consoles.push(s);
                }
            }
            "channel" => {
                let source = dev.child("source");
                let target = dev.child("target");
                self.channels.push(Channel {
                    source_type: dev.attr("type").unwrap_or("").to_string(),
                    path: source.and_then(|s| s.attr("path")).map(str::to_string),
                    target_type: target
                        .and_then(|t| t.attr("type"))
                        .unwrap_or("")
                        .to_string(),
                    name: target.and_then(|t| t.attr("name")).map(str::to_string),
                });
            }
            "input" => self.inputs.push(Input {
                kind: dev.attr("type").unwrap_or("").to_string(),
                bus: dev.attr("bus").unwrap_or("usb").to_string(),
            }),
            "emulator" | "memballoon" => {}
            other => {
                return Err(DefError::Unsupported(format!(
                    "unsupported device <{other}> in {path}: the bhyve driver has no emulation for it"
                )));
            }
        }
        Ok(())
    }

    fn serial(&self, dev: &Element, path: &str) -> Result<Serial, DefError> {
        let kind = dev.attr("type").unwrap_or("pty").to_string();
        let source = dev.child("source");
        let port = match dev.child("target") {
            Some(t) => attr_num(t, &format!("{path}/target"), "port")?.unwrap_or(0),
            None => 0,
        };
        Ok(Serial {
            kind,
            port,
            master: source.and_then(|s| s.attr("master")).map(str::to_string),
            slave: source.and_then(|s| s.attr("slave")).map(str::to_string),
            host: source.and_then(|s| s.attr("host")).map(str::to_string),
            service: source.and_then(|s| s.attr("service")).map(str::to_string),
            listen: source.and_then(|s| s.attr("mode")) == Some("bind"),
            protocol: dev
                .child("protocol")
                .and_then(|p| p.attr("type"))
                .unwrap_or("raw")
                .to_string(),
        })
    }

    /// Inserts a controller as libvirt does: after the last one of its type with a lower
    /// index, before the first with a higher one, at the end when its type is new.
    pub fn insert_controller(&mut self, c: Controller) {
        let mut at = None;
        for (i, cur) in self.controllers.iter().enumerate().rev() {
            if cur.kind == c.kind {
                if cur.index > c.index {
                    at = Some(i);
                } else {
                    if at.is_none() {
                        at = Some(i + 1);
                    }
                    break;
                }
            }
        }
        match at {
            Some(i) => self.controllers.insert(i, c),
            None => self.controllers.push(c),
        }
    }

    fn has_controller(&self, kind: &str, index: u32) -> bool {
        self.controllers
            .iter()
            .any(|c| c.kind == kind && c.index == index)
    }

    fn maybe_add_controller(&mut self, kind: &str, index: u32, model: Option<&str>) {
        if !self.has_controller(kind, index) {
            self.insert_controller(Controller {
                kind: kind.into(),
                index,
                model: model.map(str::to_string),
                addr: Addr::None,
            });
        }
    }

    fn needs_isa(&self) -> bool {
        (self.bootloader.is_none() && self.loader.is_some())
            || self.firmware_efi
            || !self.serials.is_empty()
            || (!self.graphics.is_empty() && !self.videos.is_empty())
    }

    /// The defaults libvirt's parser and the bhyve driver's post-parse callbacks add.
    fn post_parse(&mut self, opts: &Options) -> Result<(), DefError> {
        let uuid = self.uuid.clone().unwrap_or_default();
        for s in &mut self.serials {
            if s.kind == "nmdm" && s.master.is_none() {
                s.master = Some(format!("/dev/nmdm{uuid}A"));
                s.slave = Some(format!("/dev/nmdm{uuid}B"));
            }
        }
        // A graphics device without a video device gets the default video (GOP on bhyve).
        if !self.graphics.is_empty() && self.videos.is_empty() {
            self.videos.push(Video {
                model: "gop".into(),
                resolution: None,
                vgaconf: None,
                addr: Addr::None,
            });
        }
        // SATA drive addresses from the disk names.
        for d in &mut self.disks {
            if d.addr != Addr::None || d.bus != "sata" {
                continue;
            }
            let idx = disk_index(&d.dst).ok_or_else(|| DefError::Invalid {
                path: "domain/devices/disk/target/@dev".into(),
                problem: format!("unknown disk name '{}' and no address specified", d.dst),
            })?;
            d.addr = Addr::Drive(if opts.caps.ahci32slot {
                Drive {
                    controller: idx / 32,
                    bus: 0,
                    target: 0,
                    unit: idx % 32,
                }
            } else {
                Drive {
                    controller: idx,
                    bus: 0,
                    target: 0,
                    unit: 0,
                }
            });
        }
        for c in &self.controllers {
            if c.kind == "pci"
                && matches!(c.model.as_deref(), Some("pci-root") | Some("pcie-root"))
                && c.index != 0
            {
                return Err(invalid(
                    "domain/devices/controller",
                    "pci-root and pcie-root controllers should have index 0",
                ));
            }
            if c.kind == "isa" && c.index != 0 {
                return Err(DefError::Unsupported(
                    "Bhyve ISA controller can only have index '0'".into(),
                ));
            }
        }
        self.maybe_add_controller("pci", 0, Some("pci-root"));
        if self.needs_isa() {
            self.maybe_add_controller("isa", 0, None);
        }
        if !opts.caps.rtc_utc && self.clock == Clock::Utc {
            self.clock = Clock::Localtime;
        }
        // Implicit SATA controllers: every index up to the highest a disk uses.
        let max = self
            .disks
            .iter()
            .filter(|d| d.bus == "sata")
            .filter_map(|d| match d.addr {
                Addr::Drive(dr) => Some(dr.controller),
                _ => None,
            })
            .max();
        if let Some(max) = max {
            for i in 0..=max {
                self.maybe_add_controller("sata", i, None);
            }
        }
        // bhyve's virtio-console takes 16 ports.
        let virtio_channels = self
            .channels
            .iter()
            .filter(|c| c.target_type == "virtio")
            .count();
        let needed = virtio_channels.div_ceil(16);
        let existing = self
            .controllers
            .iter()
            .filter(|c| c.kind == "virtio-serial")
            .count();
        for _ in existing..needed {
            let index = self
                .controllers
                .iter()
                .filter(|c| c.kind == "virtio-serial")
                .map(|c| c.index + 1)
                .max()
                .unwrap_or(0);
            self.insert_controller(Controller {
                kind: "virtio-serial".into(),
                index,
                model: None,
                addr: Addr::None,
            });
        }
        Ok(())
    }

    /// Fills the loader of `<os firmware='efi'>` from the firmware directory (libvirt's
    /// `bhyveFirmwareFillDomain`): `BHYVE_UEFI.fd` if present, else the first file.
    pub fn fill_firmware(&mut self, opts: &Options) -> Result<(), DefError> {
        if !self.firmware_efi {
            return Ok(());
        }
        let files = opts.firmware_files();
        let chosen = files
            .iter()
            .find(|f| f.as_str() == "BHYVE_UEFI.fd")
            .or_else(|| files.first())
            .ok_or_else(|| {
                DefError::Unsupported(format!("no firmwares found in {}", opts.firmware_dir))
            })?;
        self.loader_readonly_pflash = true;
        self.loader = Some(format!(
            "{}/{}",
            opts.firmware_dir.trim_end_matches('/'),
            chosen
        ));
        Ok(())
    }

    /// Assigns PCI slots as libvirt's bhyve driver does (`bhyveAssignDevicePCISlots`).
    pub fn assign_pci(&mut self) -> Result<(), DefError> {
        let mut used = [false; 32];
        used[0] = true; // the host bridge
        let reserve = |p: Pci, what: &str, used: &mut [bool; 32]| -> Result<(), DefError> {
            if p.bus != 0 {
                return Err(DefError::Unsupported(format!(
                    "{what}: PCI bus {} does not exist (bhyve has one bus, 0)",
                    p.bus
                )));
            }
            if p.slot > 31 {
                return Err(DefError::Unsupported(format!(
                    "{what}: PCI slot {} is out of range (0 to 31)",
                    p.slot
                )));
            }
            if p.function > 7 {
                return Err(DefError::Unsupported(format!(
                    "{what}: PCI function {} is out of range (0 to 7)",
                    p.function
                )));
            }
            if p.slot == 0 && p.function == 0 {
                return Ok(());
            }
            if used[p.slot as usize] && p.function == 0 {
                return Err(DefError::Unsupported(format!(
                    "{what}: attempted double use of PCI slot 0000:00:{:02x}.{}",
                    p.slot, p.function
                )));
            }
            used[p.slot as usize] = true;
            Ok(())
        };
        // Collect the explicit addresses.
        let mut explicit: Vec<(Pci, String)> = Vec::new();
        let mut collect = |a: &Addr, what: String| {
            if let Addr::Pci(p) = a
                && !a.wants_pci()
            {
                explicit.push((*p, what));
            }
        };
        for c in &self.controllers {
            collect(
                &c.addr,
                format!("controller type='{}' index='{}'", c.kind, c.index),
            );
        }
        for d in &self.disks {
            collect(&d.addr, format!("disk '{}'", d.dst));
        }
        for n in &self.nets {
            collect(&n.addr, format!("interface {}", n.mac));
        }
        for v in &self.videos {
            collect(&v.addr, "video".into());
        }
        for s in &self.sounds {
            collect(&s.addr, "sound".into());
        }
        for f in &self.fss {
            collect(&f.addr, format!("filesystem '{}'", f.target));
        }
        for r in &self.rngs {
            collect(&r.addr, "rng".into());
        }
        for (p, what) in explicit {
            reserve(p, &what, &mut used)?;
        }
        let next = |used: &mut [bool; 32]| -> Result<Addr, DefError> {
            let slot = (1..32)
                .find(|s| !used[*s])
                .ok_or_else(|| DefError::Unsupported("no more free PCI slots on bus 0".into()))?;
            used[slot] = true;
            Ok(Addr::Pci(Pci {
                bus: 0,
                slot: slot as u32,
                function: 0,
            }))
        };
        // Slot 1 goes to the LPC bridge unless a device asked for it.
        if !used[1] {
            used[1] = true;
            if let Some(c) = self
                .controllers
                .iter_mut()
                .find(|c| c.kind == "isa" && c.addr.wants_pci())
            {
                c.addr = Addr::Pci(Pci {
                    bus: 0,
                    slot: 1,
                    function: 0,
                });
            }
        }
        for c in &mut self.controllers {
            let takes = matches!(c.kind.as_str(), "pci" | "sata" | "isa" | "virtio-serial")
                || (c.kind == "usb" && c.model.as_deref().is_none_or(|m| m == "nec-xhci"));
            if !takes || c.model.as_deref() == Some("pci-root") || !c.addr.wants_pci() {
                continue;
            }
            c.addr = next(&mut used)?;
        }
        for n in &mut self.nets {
            if n.addr.wants_pci() {
                n.addr = next(&mut used)?;
            }
        }
        for d in &mut self.disks {
            if d.bus == "virtio" && d.addr.wants_pci() {
                d.addr = next(&mut used)?;
            }
        }
        for v in &mut self.videos {
            if v.addr.wants_pci() {
                v.addr = next(&mut used)?;
            }
        }
        for s in &mut self.sounds {
            if s.addr.wants_pci() {
                s.addr = next(&mut used)?;
            }
        }
        for f in &mut self.fss {
            if f.addr.wants_pci() {
                f.addr = next(&mut used)?;
            }
        }
        for r in &mut self.rngs {
            if r.addr.wants_pci() {
                r.addr = next(&mut used)?;
            }
        }
        Ok(())
    }
}

/// A MAC address in libvirt's form (lower case, colon-separated), or `None`.
pub fn normalize_mac(m: &str) -> Option<String> {
    let parts: Vec<&str> = m.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = Vec::with_capacity(6);
    for p in parts {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        out.push(format!("{:02x}", u8::from_str_radix(p, 16).ok()?));
    }
    Some(out.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_names_and_indexes() {
        assert_eq!(disk_index("hda"), Some(0));
        assert_eq!(disk_index("sdb"), Some(1));
        assert_eq!(disk_index("hdz"), Some(25));
        assert_eq!(disk_index("hdaa"), Some(26));
        assert_eq!(disk_index("hdak"), Some(36));
        assert_eq!(disk_index("vda1"), Some(0));
        assert_eq!(disk_index("nope"), None);
        assert_eq!(disk_index("hd"), None);
        for i in [0, 1, 25, 26, 27, 51, 52, 700] {
            assert_eq!(disk_index(&disk_name("sd", i)), Some(i), "{i}");
        }
    }

    #[test]
    fn mac_addresses() {
        assert_eq!(
            normalize_mac("52:54:00:22:EE:11").as_deref(),
            Some("52:54:00:22:ee:11")
        );
        assert_eq!(normalize_mac("52:54:00:22:ee").as_deref(), None);
        assert_eq!(normalize_mac("52:54:00:22:ee:1g").as_deref(), None);
    }

    #[test]
    fn controllers_are_grouped_by_type() {
        let mut d = Def::parse(
            "<domain type='bhyve'><name>x</name><memory>1024</memory><devices>\
             <controller type='usb' model='nec-xhci'/><controller type='sata' index='2'/>\
             </devices></domain>",
            &Options::for_tests(),
        )
        .unwrap();
        d.insert_controller(Controller {
            kind: "sata".into(),
            index: 1,
            model: None,
            addr: Addr::None,
        });
        let order: Vec<(String, u32)> = d
            .controllers
            .iter()
            .map(|c| (c.kind.clone(), c.index))
            .collect();
        assert_eq!(
            order,
            [
                ("usb".into(), 0),
                ("sata".into(), 1),
                ("sata".into(), 2),
                ("pci".into(), 0)
            ]
        );
    }

    #[test]
    fn boot_order_rules() {
        let disk = |dev: &str, order: u32| {
            format!(
                "<disk type='file'><source file='/{dev}'/><target dev='{dev}' bus='sata'/><boot order='{order}'/></disk>"
            )
        };
        let dom = |os: &str, devs: String| {
            format!(
                "<domain type='bhyve'><name>x</name><memory>1024</memory><os>{os}</os><devices>{devs}</devices></domain>"
            )
        };
        let e = Def::parse(
            &dom("", disk("hda", 1) + &disk("hdb", 1)),
            &Options::for_tests(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "domain/devices/disk/boot/@order: boot order '1' used for more than one device"
        );
        let e = Def::parse(
            &dom("<boot dev='hd'/>", disk("hda", 1)),
            &Options::for_tests(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot be used together"), "{e}");
        assert!(
            Def::parse(
                &dom("", disk("hda", 2) + &disk("hdb", 1)),
                &Options::for_tests()
            )
            .is_ok()
        );
    }

    #[test]
    fn memory_units_round_up_to_kib() {
        let d = Def::parse(
            "<domain type='bhyve'><name>x</name><memory unit='b'>1025</memory></domain>",
            &Options::for_tests(),
        )
        .unwrap();
        assert_eq!(d.memory_kib, 2);
        let d = Def::parse(
            "<domain type='bhyve'><name>x</name><memory unit='GiB'>2</memory></domain>",
            &Options::for_tests(),
        )
        .unwrap();
        assert_eq!(d.memory_kib, 2 << 20);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = Def::parse(
            "<domain type='bhyve'><name>x</name><memory>1x</memory></domain>",
            &Options::for_tests(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "domain/memory: '1x' is not a number");
        let e = Def::parse(
            "<domain type='kvm'><name>x</name><memory>1</memory></domain>",
            &Options::for_tests(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not 'kvm'"), "{e}");
        let e = Def::parse(
            "<domain type='bhyve'><name>x</name><memory>1</memory><devices><hostdev/></devices></domain>",
            &Options::for_tests(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("<hostdev> in domain/devices/hostdev[1]"),
            "{e}"
        );
    }
}

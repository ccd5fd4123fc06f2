//! Domain XML → QEMU command line (modern syntax: `-blockdev`, `-netdev` + `-device`,
//! `-chardev`, JSON where QEMU takes it), and the live definition: implicit controllers,
//! PCI addresses and aliases the driver assigns, shown in the live XML.

use rvirt_xml::{Domain, Element};
use serde_json::{Value, json};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// Errors of turning a definition into a command line.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The definition asks for something this driver does not do.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    /// The definition is inconsistent (the user's XML is wrong).
    #[error("invalid domain definition: {0}")]
    Invalid(String),
    /// The driver contradicted itself (an address it assigned clashes, the live
    /// definition it produced does not validate): a bug of the driver, not of the XML.
    #[error("internal error of the qemu driver: {0}")]
    Internal(String),
    /// A graphics password could not be set: the domain must not run without it.
    #[error("cannot set the password of a graphics display ({command})")]
    Password {
        /// The QMP command that failed.
        command: &'static str,
        /// Why.
        #[source]
        source: rvirt_qmp::QmpError,
    },
    /// KVM was asked for and is not usable.
    #[error("unsupported configuration: domain requires KVM, but it is not available: {0}")]
    NoKvm(String),
    /// A file the domain needs is missing.
    #[error("cannot access {what} '{}'", path.display())]
    Missing {
        /// Which file (storage file, kernel, ...).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// How the monitor socket reaches QEMU.
#[derive(Debug, Clone)]
pub enum Monitor {
    /// A listening socket the driver made, passed as this descriptor.
    Fd(i32),
    /// A socket path QEMU creates itself.
    Path(PathBuf),
}

/// Inputs of [`build`] that do not come from the XML.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The monitor socket.
    pub monitor: Monitor,
    /// Whether KVM is usable on this host (see [`kvm_usable`]).
    pub kvm: Result<(), String>,
    /// Check that files the domain needs exist (false for `domxml-to-native`).
    pub check_files: bool,
    /// Where per-domain NVRAM files live by default.
    pub nvram_dir: PathBuf,
    /// Where per-domain channel sockets live by default.
    pub channel_dir: PathBuf,
    /// Pick a free VNC port for `autoport` graphics.
    pub allocate_vnc: bool,
    /// The storage volumes of the `<disk type='volume'>` disks, resolved through the
    /// host's storage pools, by target device (`vda`); see [`volume_disks`].
    pub volumes: std::collections::HashMap<String, ResolvedVolume>,
    /// The TAP devices made for the bridge and network interfaces, by the interface's
    /// position among the `<interface>` elements.
    pub taps: std::collections::HashMap<usize, TapInfo>,
    /// Where QEMU reads the key of each network disk's `<auth>` from, by target device:
    /// a descriptor it inherits (`/proc/self/fd/N`), never the key itself; see
    /// [`network_auths`]. A disk missing here gets a placeholder (`domxml-to-native`).
    pub secrets: std::collections::HashMap<String, String>,
}

/// The `<disk type='network'>` disks of `def` with an `<auth>`, by target device: whose
/// keys the driver fetches (host services' `secret_value`) before QEMU starts.
/// Volume disks on network pools (in `volumes`) count with their pool's `<auth>`.
pub fn network_auths(
    def: &Domain,
    volumes: &std::collections::HashMap<String, ResolvedVolume>,
) -> Result<Vec<(String, NetAuth)>, CommandError> {
    let mut out = Vec::new();
    let Some(devs) = def.element().child("devices") else {
        return Ok(out);
    };
    for d in devs.children_named("disk") {
        let dev = attr(d, &["target"], "dev").unwrap_or("").to_string();
        let auth = match d.attr("type") {
            Some("network") => auth_of(&dev, d)?,
            Some("volume") => match volumes.get(&dev) {
                Some(v) if v.disk_type == "network" => v.net_source(&dev)?.auth,
                _ => None,
            },
            _ => None,
        };
        if let Some(a) = auth {
            out.push((dev, a));
        }
    }
    Ok(out)
}

/// A TAP device the driver made for an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapInfo {
    /// The descriptor QEMU inherits.
    pub fd: i32,
    /// The device's name (`vnet0`).
    pub dev: String,
    /// For `<interface type='network'>`: the network port plugged for it and the bridge
    /// the network answered, shown in the live `<source portid bridge>`.
    pub port: Option<(String, String)>,
}

/// A `<disk type='volume'>` resolved to what QEMU opens (libvirt's "actual" source of a
/// volume disk): the host's answer to the driver's question, kept in the status file of
/// a running domain so that a later process knows what its QEMU opened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedVolume {
    /// The pool named by the disk.
    pub pool: String,
    /// The volume named by the disk.
    pub volume: String,
    /// `file`, `block`, `dir` or `network`.
    pub disk_type: String,
    /// The volume's path on the host.
    pub path: String,
    /// The volume's format (`raw`, `qcow2`); empty when the pool reports none.
    pub format: String,
    /// The pool's type (`dir`, `logical`, ...).
    pub pool_type: String,
    /// The pool reports a backing file for the volume (from its header).
    #[serde(default)]
    pub backing: bool,
    /// For a volume of a network pool (`disk_type` `network`): the pool's definition,
    /// whose `<source>` names the servers and the auth (host services 1.6).
    #[serde(default)]
    pub pool_xml: String,
}

impl ResolvedVolume {
    /// The network source of a volume of a network pool.
    pub fn net_source(&self, dev: &str) -> Result<NetSource, CommandError> {
        NetSource::from_pool_volume(dev, &self.pool_type, &self.pool_xml, &self.path)
    }
}

/// A `<disk type='volume'>` with a source: its target device, pool and volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDisk {
    /// The target device (`vda`).
    pub target: String,
    /// The pool's name.
    pub pool: String,
    /// The volume's name.
    pub volume: String,
    /// `<source mode>` (`host` or `direct`, iSCSI pools only).
    pub mode: Option<String>,
}

/// Checks a storage pool or volume name as libvirt does: not empty, no `/`.
fn check_storage_name(
    target: &str,
    field: &str,
    name: Option<&str>,
) -> Result<String, CommandError> {
    match name {
        None | Some("") => Err(CommandError::Invalid(format!(
            "disk '{target}': the <source> of a volume disk needs the '{field}' attribute"
        ))),
        Some(n) if n.contains('/') => Err(CommandError::Invalid(format!(
            "disk '{target}': invalid {field} name '{n}' in <source> (a storage {field} name contains no '/')"
        ))),
        Some(n) => Ok(n.to_string()),
    }
}

/// The `<disk type='volume'>` disks of `def` that have a `<source>` (a volume cdrom may
/// be empty), checked for syntax only: `pool` and `volume` present and valid names,
/// `mode` (iSCSI pools) `host` or `direct`. What they name is resolved at start.
pub fn volume_disks(def: &Domain) -> Result<Vec<VolumeDisk>, CommandError> {
    let mut out = Vec::new();
    let Some(devs) = def.element().child("devices") else {
        return Ok(out);
    };
    for d in devs.children_named("disk") {
        if d.attr("type") != Some("volume") {
            continue;
        }
        let target = attr(d, &["target"], "dev").unwrap_or("").to_string();
        let Some(src) = d.child("source") else {
            continue;
        };
        let pool = check_storage_name(&target, "pool", src.attr("pool"))?;
        let volume = check_storage_name(&target, "volume", src.attr("volume"))?;
        if let Some(m) = src.attr("mode")
            && m != "host"
            && m != "direct"
        {
            return Err(CommandError::Invalid(format!(
                "disk '{target}': unknown source mode '{m}' of a volume disk (host or direct)"
            )));
        }
        out.push(VolumeDisk {
            target,
            pool,
            volume,
            mode: src.attr("mode").map(str::to_string),
        });
    }
    Ok(out)
}

/// The result of [`build`].
#[derive(Debug, Clone)]
pub struct Native {
    /// The emulator binary.
    pub emulator: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The live definition (implicit devices, addresses, aliases, allocated ports).
    pub live: Domain,
    /// NVRAM file to create from a template before start: (template, nvram).
    pub nvram: Option<(PathBuf, PathBuf)>,
    /// Transient disks: (original source, format, overlay path placeholder index).
    pub transient: Vec<TransientDisk>,
    /// Graphics passwords, set over QMP before the guest runs (never on the command line).
    pub passwords: Vec<GraphicsPassword>,
}

/// The password of a graphics display (`<graphics passwd=...>`). QEMU starts with
/// `password=on` and no password, so nobody gets in until the driver sets it over QMP
/// ([`password_commands`]); the password itself is never on QEMU's command line.
#[derive(Clone, PartialEq, Eq)]
pub struct GraphicsPassword {
    /// The QMP protocol name (`vnc`).
    pub protocol: &'static str,
    /// The password.
    pub password: String,
    /// `passwdValidTo`, in seconds since the epoch (UTC).
    pub valid_to: Option<i64>,
}

impl std::fmt::Debug for GraphicsPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphicsPassword")
            .field("protocol", &self.protocol)
            .field("password", &"<redacted>")
            .field("valid_to", &self.valid_to)
            .finish()
    }
}

/// The QMP commands that give each display its password, in order: `set_password`, then
/// `expire_password` (`now` if `passwdValidTo` has passed, its time if it has not,
/// `never` without one), as libvirt does. `now` is the current time in seconds since
/// the epoch.
pub fn password_commands(passwords: &[GraphicsPassword], now: i64) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    for p in passwords {
        out.push((
            "set_password",
            json!({"protocol": p.protocol, "password": p.password}),
        ));
        let time = match p.valid_to {
            None => "never".to_string(),
            Some(t) if t <= now => "now".to_string(),
            Some(t) => t.to_string(),
        };
        out.push((
            "expire_password",
            json!({"protocol": p.protocol, "time": time}),
        ));
    }
    out
}

/// Sets every password of [`password_commands`] over the monitor of a QEMU that has not
/// run its guest yet.
pub fn set_passwords(
    qmp: &rvirt_qmp::Qmp,
    passwords: &[GraphicsPassword],
) -> Result<(), CommandError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for (command, args) in password_commands(passwords, now) {
        qmp.execute(command, Some(args))
            .map_err(|source| CommandError::Password { command, source })?;
    }
    Ok(())
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `passwdValidTo` (`YYYY-MM-DDTHH:MM:SS`, UTC) in seconds since the epoch.
fn parse_valid_to(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once('T')?;
    let num = |t: &str, max: i64| {
        (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
            .then(|| t.parse::<i64>().ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    let mut d = date.split('-');
    let (y, mo, da) = (
        num(d.next()?, 9999)?,
        num(d.next()?, 12)?,
        num(d.next()?, 31)?,
    );
    let mut t = time.split(':');
    let (h, mi, se) = (
        num(t.next()?, 23)?,
        num(t.next()?, 59)?,
        num(t.next()?, 60)?,
    );
    if d.next().is_some() || t.next().is_some() || mo == 0 || da == 0 {
        return None;
    }
    Some(days_from_civil(y, mo, da) * 86_400 + h * 3_600 + mi * 60 + se)
}

/// A `<transient/>` disk: QEMU gets a qcow2 overlay over the original, deleted at stop.
#[derive(Debug, Clone)]
pub struct TransientDisk {
    /// The original image.
    pub source: PathBuf,
    /// Its format (`raw`, `qcow2`).
    pub format: String,
    /// The target name (`vda`), to name the overlay.
    pub target: String,
    /// Index in `Native::args` of the `-blockdev` argument whose filename is the overlay.
    pub arg_index: usize,
}

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

fn attr<'a>(e: &'a Element, path: &[&str], name: &str) -> Option<&'a str> {
    let mut cur = e;
    for p in path {
        cur = cur.child(p)?;
    }
    cur.attr(name)
}

fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A JSON object that keeps its members in insertion order, as QEMU's documentation and
/// libvirt's `.args` files show them.
#[derive(Debug, Clone, Default)]
struct Obj(Vec<(String, Value)>);

macro_rules! obj {
    ($($k:literal : $v:expr),* $(,)?) => {
        Obj(vec![$(($k.to_string(), serde_json::json!($v))),*])
    };
}

mod netdisk;
pub use netdisk::{NetAuth, NetHost, NetSource, auth_of};

impl Obj {
    fn remove(&mut self, k: &str) {
        self.0.retain(|(n, _)| n != k);
    }
}

impl std::ops::Index<&str> for Obj {
    type Output = Value;
    fn index(&self, k: &str) -> &Value {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map_or(&Value::Null, |(_, v)| v)
    }
}

impl std::ops::IndexMut<&str> for Obj {
    fn index_mut(&mut self, k: &str) -> &mut Value {
        let i = match self.0.iter().position(|(n, _)| n == k) {
            Some(i) => i,
            None => {
                self.0.push((k.to_string(), Value::Null));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }
}

impl std::fmt::Display for Obj {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", Value::from(k.as_str()), v)?;
        }
        f.write_str("}")
    }
}

fn json_arg(v: &Obj) -> String {
    v.to_string()
}

/// PCI slot allocation on `pci.0` (pc) or `pcie.0` + root ports (q35).
struct Pci {
    q35: bool,
    /// (bus, slot, function) in use.
    used: BTreeSet<(u32, u32, u32)>,
    /// Root ports created (q35): (index, slot, function on pcie.0).
    root_ports: Vec<(u32, u32, u32)>,
    /// Bus indexes that exist (0, plus root ports and user controllers).
    buses: BTreeSet<u32>,
}

impl Pci {
    fn new(q35: bool) -> Self {
        let mut used = BTreeSet::new();
        used.insert((0, 0, 0));
        if q35 {
            for f in 0..8 {
                used.insert((0, 0x1f, f));
            }
        } else {
            for f in 0..8 {
                used.insert((0, 1, f));
            }
        }
        Pci {
            q35,
            used,
            root_ports: Vec::new(),
            buses: BTreeSet::from([0]),
        }
    }

    fn bus_name(&self, bus: u32) -> String {
        match (bus, self.q35) {
            (0, true) => "pcie.0".into(),
            (b, _) => format!("pci.{b}"),
        }
    }

    /// Reserves an explicit address from the XML.
    fn reserve(&mut self, bus: u32, slot: u32, func: u32) {
        self.used.insert((bus, slot, func));
    }

    fn free_slot_on_root(&mut self, from: u32) -> u32 {
        let mut s = from;
        while (0..8).any(|f| self.used.contains(&(0, s, f))) {
            s += 1;
        }
        s
    }

    /// A new address for a device: pc → next slot on pci.0; q35 → a new root port.
    fn alloc(&mut self, endpoint_on_root: bool) -> Result<(u32, u32, u32), CommandError> {
        if !self.q35 || endpoint_on_root {
            let s = self.free_slot_on_root(2);
            if s > 0x1f {
                return Err(CommandError::Unsupported("no free PCI slot left".into()));
            }
            self.used.insert((0, s, 0));
            return Ok((0, s, 0));
        }
        let idx = self.add_root_port()?;
        self.used.insert((idx, 0, 0));
        Ok((idx, 0, 0))
    }

    fn add_root_port(&mut self) -> Result<u32, CommandError> {
        let idx = self.buses.iter().max().copied().unwrap_or(0) + 1;
        // Root ports fill the functions of a slot on pcie.0, from slot 2.
        let (slot, func) = match self.root_ports.last() {
            Some(&(_, s, f)) if f < 7 => (s, f + 1),
            _ => (self.free_slot_on_root(2), 0),
        };
        if slot > 0x1f {
            return Err(CommandError::Unsupported("no free PCI slot left".into()));
        }
        self.used.insert((0, slot, func));
        self.root_ports.push((idx, slot, func));
        self.buses.insert(idx);
        Ok(idx)
    }

    fn root_port_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for &(idx, slot, func) in &self.root_ports {
            let multi = func == 0 && self.root_ports.iter().any(|&(_, s, f)| s == slot && f > 0);
            let mut v = obj! {"driver": "pcie-root-port", "port": (slot << 3) | func,
            "chassis": idx, "id": format!("pci.{idx}"), "bus": "pcie.0"};
            if multi {
                v["multifunction"] = json!(true);
            }
            v["addr"] = json!(addr_str(slot, func));
            out.push("-device".into());
            out.push(json_arg(&v));
        }
        out
    }
}

fn addr_str(slot: u32, func: u32) -> String {
    if func == 0 {
        format!("0x{slot:x}")
    } else {
        format!("0x{slot:x}.0x{func:x}")
    }
}

fn pci_address_element(bus: u32, slot: u32, func: u32) -> Element {
    Element::new("address")
        .with_attr("type", "pci")
        .with_attr("domain", "0x0000")
        .with_attr("bus", &format!("0x{bus:02x}"))
        .with_attr("slot", &format!("0x{slot:02x}"))
        .with_attr("function", &format!("0x{func:x}"))
}

fn explicit_pci(e: &Element) -> Option<(u32, u32, u32)> {
    let a = e.child("address")?;
    if a.attr("type") != Some("pci") {
        return None;
    }
    let n = |k| {
        a.attr(k)
            .and_then(parse_num)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };
    Some((n("bus"), n("slot"), n("function")))
}

/// `0000:00:03.0`, as libvirt writes a PCI address in messages.
fn pci_addr_text((bus, slot, func): (u32, u32, u32)) -> String {
    format!("0000:{bus:02x}:{slot:02x}.{func:x}")
}

/// The addresses the XML gives: two devices at one address, or a device in a slot of the
/// machine's built-in devices (host bridge; PIIX3 on pc, ICH9 LPC/SMBus on q35), are the
/// user's mistakes.
fn check_user_addresses(devs: &Element, q35: bool) -> Result<(), CommandError> {
    let mut seen = std::collections::BTreeMap::new();
    let builtin_slot = if q35 { 0x1f } else { 1 };
    for e in devs.elements() {
        let Some(a) = explicit_pci(e) else { continue };
        if let Some(prev) = seen.insert(a, e.name().to_string()) {
            return Err(CommandError::Invalid(format!(
                "attempted double use of PCI address {} (<{prev}> and <{}>)",
                pci_addr_text(a),
                e.name()
            )));
        }
        // The built-in IDE/USB functions of PIIX3 and the AHCI function of ICH9 are
        // described by controllers.
        let owner = matches!((q35, a), (false, (0, 1, 1 | 2)) | (true, (0, 0x1f, 2)))
            && e.name() == "controller";
        if a.0 == 0 && (a.1 == 0 || a.1 == builtin_slot) && !owner {
            return Err(CommandError::Invalid(format!(
                "PCI address {} of <{}> belongs to a built-in device of the {} machine",
                pci_addr_text(a),
                e.name(),
                if q35 { "q35" } else { "pc" }
            )));
        }
    }
    Ok(())
}

/// Every PCI address of the live definition is distinct. The user's own addresses were
/// checked before placement ([`check_user_addresses`]), so a clash found here was made by
/// the driver.
fn check_assigned_addresses(devs: &Element) -> Result<(), CommandError> {
    let mut seen = std::collections::BTreeMap::new();
    for e in devs.elements() {
        let Some(a) = explicit_pci(e) else { continue };
        if let Some(prev) = seen.insert(a, e.name().to_string()) {
            return Err(CommandError::Internal(format!(
                "PCI address {} was assigned to both <{prev}> and <{}>",
                pci_addr_text(a),
                e.name()
            )));
        }
    }
    Ok(())
}

fn set_alias(e: &mut Element, alias: &str) {
    e.remove_children(|c| c.name() == "alias");
    let at = e
        .nodes()
        .iter()
        .position(|n| matches!(n, rvirt_xml::Node::Element(c) if c.name() == "address"));
    let al = rvirt_xml::Node::Element(Element::new("alias").with_attr("name", alias));
    match at {
        Some(i) => e.nodes_mut().insert(i, al),
        None => e.push(Element::new("alias").with_attr("name", alias)),
    }
}

/// Places `e` on the PCI bus (explicit address or a new one) and returns the JSON
/// `bus`/`addr` members.
fn place(pci: &mut Pci, e: &mut Element, on_root: bool) -> Result<(String, String), CommandError> {
    let (bus, slot, func) = match explicit_pci(e) {
        Some(a) => a,
        None => {
            let a = pci.alloc(on_root)?;
            e.remove_children(|c| c.name() == "address");
            e.push(pci_address_element(a.0, a.1, a.2));
            a
        }
    };
    Ok((pci.bus_name(bus), addr_str(slot, func)))
}

/// The USB 1 companions of an `ich9-ehci1` controller (`ich9-uhci1`..`3`, as
/// virt-install writes them for `pc` machines) share its PCI slot: the EHCI function at 7,
/// the companions at 0-2 with `multifunction` on function 0, as libvirt assigns them.
/// Controllers with an address of their own keep it.
fn place_ich9_companions(pci: &mut Pci, devs: &mut Element) -> Result<(), CommandError> {
    let usb = |c: &Element| c.attr("type") == Some("usb");
    let indexes: std::collections::BTreeSet<String> = devs
        .children_named("controller")
        .filter(|c| usb(c) && c.attr("model") == Some("ich9-ehci1"))
        .map(|c| c.attr("index").unwrap_or("0").to_string())
        .collect();
    for index in indexes {
        let group = |c: &Element| {
            usb(c)
                && c.attr("index").unwrap_or("0") == index
                && c.attr("model").is_some_and(|m| m.starts_with("ich9-"))
        };
        if devs
            .children_named("controller")
            .filter(|c| group(c))
            .any(|c| explicit_pci(c).is_some())
        {
            continue;
        }
        let (bus, slot, _) = pci.alloc(true)?;
        for c in devs.children_named_mut("controller").filter(|c| group(c)) {
            let func = match c.attr("model").unwrap_or_default() {
                "ich9-ehci1" => 7,
                "ich9-uhci1" => 0,
                "ich9-uhci2" => 1,
                "ich9-uhci3" => 2,
                // an unknown model is reported by the controller loop
                _ => continue,
            };
            pci.reserve(bus, slot, func);
            let mut a = pci_address_element(bus, slot, func);
            if func == 0 {
                a.set_attr("multifunction", "on");
            }
            c.remove_children(|e| e.name() == "address");
            c.push(a);
        }
    }
    Ok(())
}

/// The `-device` of an `ich9-uhciN` companion controller of the EHCI controller `alias`.
fn ich9_companion(
    c: &mut Element,
    n: &str,
    alias: &str,
    pci: &mut Pci,
) -> Result<Obj, CommandError> {
    if !matches!(n, "1" | "2" | "3") {
        return Err(CommandError::Unsupported(format!(
            "USB controller model 'ich9-uhci{n}' is not supported"
        )));
    }
    let start = c
        .child("master")
        .and_then(|m| m.attr("startport"))
        .and_then(parse_num)
        .ok_or_else(|| {
            CommandError::Invalid(format!(
                "USB companion controller 'ich9-uhci{n}' needs <master startport=...>"
            ))
        })?;
    let multifunction = c.child("address").and_then(|a| a.attr("multifunction")) == Some("on");
    let (bus, addr) = place(pci, c, true)?;
    let mut v = obj! {"driver": format!("ich9-usb-uhci{n}"), "masterbus": format!("{alias}.0"),
    "firstport": start, "bus": bus};
    if multifunction {
        v["multifunction"] = json!(true);
    }
    v["addr"] = json!(addr);
    Ok(v)
}

fn with_pci(mut v: Obj, bus: (String, String)) -> Obj {
    v["bus"] = json!(bus.0);
    v["addr"] = json!(bus.1);
    v
}

fn push_device(args: &mut Vec<String>, v: &Obj) {
    args.push("-device".into());
    args.push(json_arg(v));
}

/// Gives every `<interface>` without a `<mac address>` one, as libvirt does when it parses
/// a definition: `52:54:00` (QEMU's prefix) and three random bytes. Returns how many.
pub fn assign_macs(def: &mut Domain) -> usize {
    let Some(devs) = def.element_mut().child_mut("devices") else {
        return 0;
    };
    let mut n = 0;
    for i in devs.children_named_mut("interface") {
        if i.child("mac").and_then(|m| m.attr("address")).is_some() {
            continue;
        }
        let r = uuid::Uuid::new_v4();
        let b = r.as_bytes();
        let mac = format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2]);
        i.remove_children(|c| c.name() == "mac");
        i.nodes_mut().insert(
            0,
            rvirt_xml::Node::Element(Element::new("mac").with_attr("address", &mac)),
        );
        n += 1;
    }
    n
}

/// An interface that needs a TAP device made by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapInterface {
    /// Its position among the `<interface>` elements.
    pub index: usize,
    /// `<source bridge>` of a bridge interface.
    pub bridge: Option<String>,
    /// `<source network>` of a network interface.
    pub network: Option<String>,
    /// The guest's MAC address.
    pub mac: String,
    /// A virtio model (the TAP gets a virtio-net header).
    pub virtio: bool,
    /// `<bandwidth>`: limits the driver sets on the TAP (and records in the port).
    pub bandwidth: Result<Option<rvirt_xml::bandwidth::Bandwidth>, rvirt_xml::XmlError>,
}

/// The bridge and network interfaces of `def`.
pub fn tap_interfaces(def: &Domain) -> Vec<TapInterface> {
    let Some(devs) = def.element().child("devices") else {
        return Vec::new();
    };
    devs.children_named("interface")
        .enumerate()
        .filter_map(|(index, i)| {
            let (bridge, network) = match i.attr("type") {
                Some("bridge") => (Some(attr(i, &["source"], "bridge")?.to_string()), None),
                Some("network") => (None, Some(attr(i, &["source"], "network")?.to_string())),
                _ => return None,
            };
            Some(TapInterface {
                index,
                bridge,
                network,
                mac: attr(i, &["mac"], "address").unwrap_or_default().to_string(),
                virtio: attr(i, &["model"], "type") == Some("virtio"),
                bandwidth: rvirt_xml::bandwidth::Bandwidth::of(
                    i,
                    &format!("domain/devices/interface[{}]", index + 1),
                ),
            })
        })
        .collect()
}

/// The device aliases (`net0`) of the interfaces with `<link state='down'/>`.
pub fn links_down(live: &Domain) -> Vec<String> {
    let Some(devs) = live.element().child("devices") else {
        return Vec::new();
    };
    devs.children_named("interface")
        .filter(|i| attr(i, &["link"], "state") == Some("down"))
        .filter_map(|i| {
            i.child("alias")
                .and_then(|a| a.attr("name"))
                .map(str::to_string)
        })
        .collect()
}

/// The network ports a live definition holds: (network, port UUID) of each
/// `<interface type='network'>` with a `<source portid>`.
pub fn network_ports(live: &Domain) -> Vec<(String, String)> {
    let Some(devs) = live.element().child("devices") else {
        return Vec::new();
    };
    devs.children_named("interface")
        .filter(|i| i.attr("type") == Some("network"))
        .filter_map(|i| {
            Some((
                attr(i, &["source"], "network")?.to_string(),
                attr(i, &["source"], "portid")?.to_string(),
            ))
        })
        .collect()
}

/// Index of a disk target name: `vda` → 0, `hdc` → 2, `sdaa` → 26.
fn target_index(dev: &str) -> Option<u32> {
    let suffix = dev.get(2..)?;
    if suffix.is_empty() || !suffix.chars().all(|c| c.is_ascii_lowercase()) {
        return None;
    }
    let mut n: u32 = 0;
    for c in suffix.chars() {
        n = n.checked_mul(26)?.checked_add(c as u32 - 'a' as u32 + 1)?;
    }
    Some(n - 1)
}

fn check_exists(check: bool, what: &'static str, p: &str) -> Result<(), CommandError> {
    if check {
        std::fs::metadata(p).map_err(|source| CommandError::Missing {
            what,
            path: PathBuf::from(p),
            source,
        })?;
    }
    Ok(())
}

fn free_vnc_port() -> Option<u16> {
    (5900..6900u16).find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
}

/// The chardev backend of a `<serial>`/`<console>`/`<channel>` element.
fn chardev(
    e: &mut Element,
    id: &str,
    default_unix: Option<PathBuf>,
) -> Result<String, CommandError> {
    let ty = e.attr("type").unwrap_or("pty").to_string();
    let src_path = |e: &Element| {
        e.child("source")
            .and_then(|s| s.attr("path"))
            .map(str::to_string)
    };
    Ok(match ty.as_str() {
        "pty" => format!("pty,id={id}"),
        "null" => format!("null,id={id}"),
        "file" => {
            let p = src_path(e).ok_or_else(|| {
                CommandError::Invalid(format!(
                    "{} of type 'file' needs <source path=...>",
                    e.name()
                ))
            })?;
            let append = e.child("source").and_then(|s| s.attr("append")) == Some("on");
            format!(
                "file,id={id},path={}{}",
                p.replace(',', ",,"),
                if append { ",append=on" } else { "" }
            )
        }
        "unix" => {
            let p = match src_path(e) {
                Some(p) => p,
                None => {
                    let p = default_unix.ok_or_else(|| {
                        CommandError::Invalid(format!(
                            "{} of type 'unix' needs <source path=...>",
                            e.name()
                        ))
                    })?;
                    let s = e.child_or_insert("source");
                    s.set_attr("mode", "bind");
                    s.set_attr("path", &p.to_string_lossy());
                    p.to_string_lossy().into_owned()
                }
            };
            let bind = e
                .child("source")
                .and_then(|s| s.attr("mode"))
                .unwrap_or("bind")
                == "bind";
            format!(
                "socket,id={id},path={}{}",
                p.replace(',', ",,"),
                if bind { ",server=on,wait=off" } else { "" }
            )
        }
        other => {
            return Err(CommandError::Unsupported(format!(
                "character device type '{other}' is not supported"
            )));
        }
    })
}

/// Builds the command line and the live definition of `def`.
pub fn build(def: &Domain, opts: &BuildOptions) -> Result<Native, CommandError> {
    let mut live = def.clone();
    let root = live.element_mut();
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
    let efi = os.attr("firmware") == Some("efi")
        || os.child("loader").and_then(|l| l.attr("type")) == Some("pflash");
    let mut nvram = None;
    let mut machine_opts = vec![
        machine.clone(),
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
    machine_opts.push("memory-backend=pc.ram".into());
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
    head.push("-cpu".into());
    head.push(cpu_arg);

    // Memory: QEMU wants whole MiB on x86.
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

    // SMP.
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
    if sockets * dies * cores * threads != maxv {
        return Err(CommandError::Invalid(format!(
            "CPU topology sockets={sockets} dies={dies} cores={cores} threads={threads} does not match {maxv} vcpus"
        )));
    }
    let mut smp = format!("{cur}");
    if cur != maxv {
        smp.push_str(&format!(",maxcpus={maxv}"));
    }
    smp.push_str(&format!(",sockets={sockets}"));
    if dies != 1 {
        smp.push_str(&format!(",dies={dies}"));
    }
    smp.push_str(&format!(",cores={cores},threads={threads}"));
    head.push("-smp".into());
    head.push(smp);
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

    // Direct kernel boot.
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

    // ---- devices ----
    let mut pci = Pci::new(q35);
    let devs = root.child_or_insert("devices");

    // Implicit controllers.
    let has_ctrl = |d: &Element, ty: &str| {
        d.children_named("controller")
            .any(|c| c.attr("type") == Some(ty))
    };
    let mut implicit = Vec::new();
    if !devs
        .children_named("controller")
        .any(|c| c.attr("type") == Some("pci") && c.attr("index") == Some("0"))
    {
        implicit.push(
            Element::new("controller")
                .with_attr("type", "pci")
                .with_attr("index", "0")
                .with_attr("model", if q35 { "pcie-root" } else { "pci-root" }),
        );
    }
    if !has_ctrl(devs, "usb") {
        implicit.push(
            Element::new("controller")
                .with_attr("type", "usb")
                .with_attr("index", "0")
                .with_attr("model", if q35 { "qemu-xhci" } else { "piix3-uhci" }),
        );
    }
    let needs = |d: &Element, bus: &str| {
        d.children_named("disk")
            .any(|k| attr(k, &["target"], "bus") == Some(bus))
    };
    if !q35 && !has_ctrl(devs, "ide") {
        implicit.push(
            Element::new("controller")
                .with_attr("type", "ide")
                .with_attr("index", "0"),
        );
    }
    if (q35 || needs(devs, "sata")) && !has_ctrl(devs, "sata") {
        implicit.push(
            Element::new("controller")
                .with_attr("type", "sata")
                .with_attr("index", "0"),
        );
    }
    if needs(devs, "scsi") && !has_ctrl(devs, "scsi") {
        implicit.push(
            Element::new("controller")
                .with_attr("type", "scsi")
                .with_attr("index", "0")
                .with_attr("model", "virtio-scsi"),
        );
    }
    let has_virtio_channel = devs
        .children_named("channel")
        .any(|c| attr(c, &["target"], "type") == Some("virtio"));
    if has_virtio_channel && !has_ctrl(devs, "virtio-serial") {
        implicit.push(
            Element::new("controller")
                .with_attr("type", "virtio-serial")
                .with_attr("index", "0"),
        );
    }
    if devs.child("memballoon").is_none() {
        implicit.push(Element::new("memballoon").with_attr("model", "virtio"));
    }
    if !devs
        .children_named("input")
        .any(|i| i.attr("bus") == Some("ps2"))
    {
        implicit.push(
            Element::new("input")
                .with_attr("type", "mouse")
                .with_attr("bus", "ps2"),
        );
        implicit.push(
            Element::new("input")
                .with_attr("type", "keyboard")
                .with_attr("bus", "ps2"),
        );
    }
    if !graphics.is_empty() && devs.child("video").is_none() {
        let mut v = Element::new("video");
        v.push(
            Element::new("model")
                .with_attr("type", "vga")
                .with_attr("vram", "16384")
                .with_attr("heads", "1")
                .with_attr("primary", "yes"),
        );
        implicit.push(v);
    }
    for e in implicit {
        devs.push(e);
    }

    // Explicit PCI addresses are checked and reserved first.
    check_user_addresses(devs, q35)?;
    for e in devs.elements() {
        if let Some((b, s, f)) = explicit_pci(e) {
            pci.reserve(b, s, f);
            if q35 && b > 0 && !pci.buses.contains(&b) {
                pci.buses.insert(b);
            }
        }
    }
    // The primary video device owns slot 2 on pc, 1 on q35.
    let primary_video = devs
        .children_named("video")
        .position(|v| attr(v, &["model"], "type") != Some("none"));
    if let Some(vi) = primary_video {
        let slot = if q35 { 1 } else { 2 };
        if let Some(v) = devs.children_named_mut("video").nth(vi)
            && explicit_pci(v).is_none()
            && !pci.used.contains(&(0, slot, 0))
        {
            pci.reserve(0, slot, 0);
            v.push(pci_address_element(0, slot, 0));
        }
    }

    place_ich9_companions(&mut pci, devs)?;

    let mut ctrl_args: Vec<String> = Vec::new();
    let mut disk_args: Vec<String> = Vec::new();
    let mut net_args: Vec<String> = Vec::new();
    let mut char_args: Vec<String> = Vec::new();
    let mut tail_args: Vec<String> = Vec::new();
    let mut transient = Vec::new();

    // Controllers.
    let mut scsi_models = std::collections::BTreeMap::new();
    let mut sata_pc = false;
    for c in devs.children_named_mut("controller") {
        let ty = c.attr("type").unwrap_or("").to_string();
        let idx = c.attr("index").and_then(parse_num).unwrap_or(0);
        match ty.as_str() {
            "pci" => {
                let model = c.attr("model").unwrap_or("").to_string();
                if idx == 0 {
                    set_alias(c, if q35 { "pcie.0" } else { "pci.0" });
                } else if model == "pcie-root-port" || model.is_empty() {
                    // A user-defined root port: keep its index as a bus.
                    let (bus, addr) = place(&mut pci, c, true)?;
                    let v = obj! {"driver": "pcie-root-port", "port": 8 + idx, "chassis": idx,
                    "id": format!("pci.{idx}"), "bus": bus, "addr": addr};
                    set_alias(c, &format!("pci.{idx}"));
                    push_device(&mut ctrl_args, &v);
                } else {
                    return Err(CommandError::Unsupported(format!(
                        "PCI controller model '{model}' is not supported"
                    )));
                }
            }
            "usb" => {
                let model = c
                    .attr("model")
                    .unwrap_or(if q35 { "qemu-xhci" } else { "piix3-uhci" })
                    .to_string();
                if model == "none" {
                    continue;
                }
                let alias = if idx == 0 {
                    "usb".to_string()
                } else {
                    format!("usb{idx}")
                };
                set_alias(c, &alias);
                if let Some(n) = model.strip_prefix("ich9-uhci") {
                    push_device(&mut ctrl_args, &ich9_companion(c, n, &alias, &mut pci)?);
                    continue;
                }
                let driver = match model.as_str() {
                    "piix3-uhci" => "piix3-usb-uhci",
                    "qemu-xhci" => "qemu-xhci",
                    "nec-xhci" => "nec-usb-xhci",
                    "ich9-ehci1" => "ich9-usb-ehci1",
                    other => {
                        return Err(CommandError::Unsupported(format!(
                            "USB controller model '{other}' is not supported"
                        )));
                    }
                };
                let bus = if driver == "piix3-usb-uhci" && !q35 && explicit_pci(c).is_none() {
                    pci.reserve(0, 1, 2);
                    c.push(pci_address_element(0, 1, 2));
                    ("pci.0".to_string(), "0x1.0x2".to_string())
                } else {
                    place(&mut pci, c, false)?
                };
                push_device(
                    &mut ctrl_args,
                    &with_pci(obj! {"driver": driver, "id": alias}, bus),
                );
            }
            "ide" => {
                if q35 {
                    return Err(CommandError::Unsupported(
                        "IDE controllers are unsupported for this QEMU binary or machine type"
                            .into(),
                    ));
                }
                set_alias(c, "ide");
                if explicit_pci(c).is_none() {
                    c.push(pci_address_element(0, 1, 1));
                }
            }
            "sata" => {
                set_alias(
                    c,
                    &format!(
                        "ide{}",
                        if q35 && idx == 0 {
                            String::new()
                        } else {
                            idx.to_string()
                        }
                    ),
                );
                if q35 && idx == 0 {
                    if explicit_pci(c).is_none() {
                        c.push(pci_address_element(0, 0x1f, 2));
                    }
                } else {
                    sata_pc = true;
                    set_alias(c, &format!("sata{idx}"));
                    let bus = place(&mut pci, c, true)?;
                    push_device(
                        &mut ctrl_args,
                        &with_pci(
                            obj! {"driver": "ich9-ahci", "id": format!("sata{idx}")},
                            bus,
                        ),
                    );
                }
            }
            "scsi" => {
                let model = c.attr("model").unwrap_or("virtio-scsi").to_string();
                let driver = match model.as_str() {
                    "virtio-scsi" => "virtio-scsi-pci",
                    "lsilogic" => "lsi",
                    "megasas" => "megasas",
                    "mptsas1068" => "mptsas1068",
                    "vmpvscsi" => "pvscsi",
                    other => {
                        return Err(CommandError::Unsupported(format!(
                            "SCSI controller model '{other}' is not supported"
                        )));
                    }
                };
                if c.attr("model").is_none() {
                    c.set_attr("model", &model);
                }
                scsi_models.insert(idx, model.clone());
                set_alias(c, &format!("scsi{idx}"));
                let bus = place(&mut pci, c, false)?;
                push_device(
                    &mut ctrl_args,
                    &with_pci(obj! {"driver": driver, "id": format!("scsi{idx}")}, bus),
                );
            }
            "virtio-serial" => {
                set_alias(c, &format!("virtio-serial{idx}"));
                let bus = place(&mut pci, c, false)?;
                push_device(
                    &mut ctrl_args,
                    &with_pci(
                        obj! {"driver": "virtio-serial-pci", "id": format!("virtio-serial{idx}")},
                        bus,
                    ),
                );
            }
            other => {
                return Err(CommandError::Unsupported(format!(
                    "controller type '{other}' is not supported"
                )));
            }
        }
    }

    // Boot order: per-device <boot order>, else <os><boot dev> in order.
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

    // Disks.
    let ndisks = devs.children_named("disk").count();
    let mut kind_seen: std::collections::HashMap<&'static str, usize> = Default::default();
    for (di, d) in devs.children_named_mut("disk").enumerate() {
        let n = ndisks - di;
        let ty = d.attr("type").unwrap_or("file").to_string();
        let device = d.attr("device").unwrap_or("disk").to_string();
        let dev = attr(d, &["target"], "dev").unwrap_or("").to_string();
        let bus = attr(d, &["target"], "bus")
            .map(str::to_string)
            .unwrap_or_else(|| {
                if dev.starts_with("vd") {
                    "virtio".into()
                } else if dev.starts_with("sd") {
                    if q35 { "sata".into() } else { "scsi".into() }
                } else {
                    "ide".into()
                }
            });
        // A volume disk opens what its volume resolved to (libvirt's actual type and
        // path); its format defaults to the volume's.
        let volume = if ty == "volume" && d.child("source").is_some() {
            let Some(v) = opts.volumes.get(&dev) else {
                let (pool, vol) = (
                    attr(d, &["source"], "pool").unwrap_or(""),
                    attr(d, &["source"], "volume").unwrap_or(""),
                );
                return Err(CommandError::Unsupported(format!(
                    "disk '{dev}': volume '{vol}' of storage pool '{pool}' was not resolved (volume disks need the host's storage services, plugin API 1.4)"
                )));
            };
            Some(v)
        } else {
            None
        };
        let actual = volume.map_or(ty.as_str(), |v| v.disk_type.as_str());
        let explicit_format = attr(d, &["driver"], "type").map(str::to_string);
        // A format taken from the volume comes from the pool's look at the image header,
        // which the guest can write: QEMU never follows a backing file named there
        // (`"backing": null`), and a volume reported with one needs its format declared.
        let format_from_volume = volume.is_some() && explicit_format.is_none();
        if format_from_volume && volume.is_some_and(|v| v.backing) {
            let v = volume.expect("checked");
            return Err(CommandError::Unsupported(format!(
                "disk '{dev}': volume '{}' of storage pool '{}' has a backing file: declare its format in <driver type> (a format read from a volume never opens backing files)",
                v.volume, v.pool
            )));
        }
        let format = explicit_format
            .clone()
            .or_else(|| volume.map(|v| v.format.clone()).filter(|f| !f.is_empty()))
            .unwrap_or_else(|| "raw".to_string());
        let readonly = device == "cdrom" || d.child("readonly").is_some();
        let net = match (ty.as_str(), volume) {
            ("network", _) => Some(NetSource::from_disk(&dev, d)?),
            ("volume", Some(v)) if v.disk_type == "network" => Some(v.net_source(&dev)?),
            _ => None,
        };
        let source = match (ty.as_str(), actual) {
            ("network", _) | ("volume", "network") => None,
            ("file", _) => attr(d, &["source"], "file").map(str::to_string),
            ("block", _) => attr(d, &["source"], "dev").map(str::to_string),
            ("volume", "file" | "block") => volume.map(|v| v.path.clone()),
            ("volume", _) if volume.is_none() => None,
            ("volume", other) => {
                return Err(CommandError::Unsupported(format!(
                    "disk '{dev}': storage volume of type '{other}' is not supported (file, block and network volumes only)"
                )));
            }
            (other, _) => {
                return Err(CommandError::Unsupported(format!(
                    "disk type '{other}' is not supported (file, block, network and volume only)"
                )));
            }
        };
        let actual = actual.to_string();
        if volume.is_some() && explicit_format.is_none() {
            // The live definition shows the format the volume resolved to, as libvirt's.
            match d.child_mut("driver") {
                Some(drv) => drv.set_attr("type", &format),
                None => d.nodes_mut().insert(
                    0,
                    rvirt_xml::Node::Element(
                        Element::new("driver")
                            .with_attr("name", "qemu")
                            .with_attr("type", &format),
                    ),
                ),
            }
        }
        let kind: &'static str = if device == "cdrom" { "cdrom" } else { "disk" };
        let nth = *kind_seen.entry(kind).and_modify(|v| *v += 1).or_insert(0);
        let bootindex = match d
            .child("boot")
            .and_then(|b| b.attr("order"))
            .and_then(parse_num)
        {
            Some(o) => Some(o),
            None => boot_for.get(&(kind, nth)).copied(),
        };
        let mut drive = None;
        if let Some(src) = &source {
            check_exists(opts.check_files, "storage file", src)?;
            let is_transient = d.child("transient").is_some();
            if is_transient && readonly {
                return Err(CommandError::Unsupported(format!(
                    "transient disk '{dev}' cannot be read-only"
                )));
            }
            let driver = match (actual.as_str(), kind) {
                ("block", "cdrom") => "host_cdrom",
                ("block", _) => "host_device",
                _ => "file",
            };
            let storage = format!("libvirt-{n}-storage");
            match (format.as_str(), is_transient) {
                ("raw", false) => {
                    disk_args.push("-blockdev".into());
                    disk_args.push(json_arg(&obj! {"driver": driver, "filename": src, "node-name": storage, "read-only": readonly}));
                    drive = Some(storage);
                }
                ("raw" | "qcow2", _) => {
                    let fmt_node = format!("libvirt-{n}-format");
                    disk_args.push("-blockdev".into());
                    if is_transient {
                        transient.push(TransientDisk {
                            source: PathBuf::from(src),
                            format: format.clone(),
                            target: dev.clone(),
                            arg_index: disk_args.len(),
                        });
                    }
                    disk_args.push(json_arg(
                        &obj! {"driver": driver, "filename": src, "node-name": storage,
                        "auto-read-only": true, "discard": "unmap"},
                    ));
                    disk_args.push("-blockdev".into());
                    let mut fmt = obj! {"node-name": fmt_node, "read-only": readonly,
                    "driver": if is_transient { "qcow2" } else { format.as_str() }, "file": storage};
                    if format_from_volume && !is_transient && format == "qcow2" {
                        fmt["backing"] = Value::Null;
                    }
                    disk_args.push(json_arg(&fmt));
                    drive = Some(fmt_node);
                }
                (other, _) => {
                    return Err(CommandError::Unsupported(format!(
                        "disk format '{other}' is not supported (raw and qcow2)"
                    )));
                }
            }
        } else if let Some(ns) = &net {
            let storage = format!("libvirt-{n}-storage");
            let secret_id = ns.auth.as_ref().map(|_| format!("{storage}-auth-secret0"));
            if let Some(id) = &secret_id {
                // the key reaches QEMU through a descriptor it inherits, never on argv
                let file = opts
                    .secrets
                    .get(&dev)
                    .cloned()
                    .unwrap_or_else(|| "/proc/self/fd/-1".to_string());
                disk_args.push("-object".into());
                disk_args.push(json_arg(
                    &obj! {"qom-type": "secret", "id": id, "format": "raw", "file": file},
                ));
            }
            let mut node = netdisk::storage_node(&dev, ns, secret_id.as_deref())?;
            node["node-name"] = json!(storage);
            match format.as_str() {
                "raw" => {
                    node["read-only"] = json!(readonly);
                    disk_args.push("-blockdev".into());
                    disk_args.push(json_arg(&node));
                    drive = Some(storage);
                }
                "qcow2" => {
                    node["auto-read-only"] = json!(true);
                    node["discard"] = json!("unmap");
                    disk_args.push("-blockdev".into());
                    disk_args.push(json_arg(&node));
                    let fmt_node = format!("libvirt-{n}-format");
                    disk_args.push("-blockdev".into());
                    disk_args.push(json_arg(
                        &obj! {"node-name": fmt_node, "read-only": readonly,
                        "driver": "qcow2", "file": storage},
                    ));
                    drive = Some(fmt_node);
                }
                other => {
                    return Err(CommandError::Unsupported(format!(
                        "disk format '{other}' is not supported (raw and qcow2)"
                    )));
                }
            }
        } else if kind == "disk" {
            return Err(CommandError::Invalid(format!("disk '{dev}' has no source")));
        }
        let idx = target_index(&dev)
            .ok_or_else(|| CommandError::Invalid(format!("invalid disk target '{dev}'")))?;
        let mut v = match bus.as_str() {
            "virtio" => {
                let alias = format!("virtio-disk{idx}");
                set_alias(d, &alias);
                let b = place(&mut pci, d, false)?;
                let mut v = obj! {"driver": "virtio-blk-pci"};
                v["bus"] = json!(b.0);
                v["addr"] = json!(b.1);
                v["drive"] = json!(drive);
                v["id"] = json!(alias);
                v
            }
            "ide" => {
                if q35 {
                    return Err(CommandError::Unsupported(
                        "IDE controllers are unsupported for this QEMU binary or machine type"
                            .into(),
                    ));
                }
                let (b, u) = (idx / 2, idx % 2);
                let alias = format!("ide0-{b}-{u}");
                set_alias(d, &alias);
                set_drive_address(d, 0, b, 0, u);
                obj! {"driver": if kind == "cdrom" { "ide-cd" } else { "ide-hd" }, "bus": format!("ide.{b}"), "unit": u, "drive": drive, "id": alias}
            }
            "sata" => {
                let alias = format!("sata0-0-{idx}");
                set_alias(d, &alias);
                set_drive_address(d, 0, 0, 0, idx);
                let busname = if q35 && !sata_pc {
                    format!("ide.{idx}")
                } else {
                    format!("sata0.{idx}")
                };
                obj! {"driver": if kind == "cdrom" { "ide-cd" } else { "ide-hd" }, "bus": busname, "drive": drive, "id": alias}
            }
            "scsi" => {
                let alias = format!("scsi0-0-0-{idx}");
                set_alias(d, &alias);
                set_drive_address(d, 0, 0, 0, idx);
                obj! {"driver": if kind == "cdrom" { "scsi-cd" } else { "scsi-hd" }, "bus": "scsi0.0", "channel": 0,
                "scsi-id": 0, "lun": idx, "device_id": format!("drive-{alias}"), "drive": drive, "id": alias}
            }
            other => {
                return Err(CommandError::Unsupported(format!(
                    "disk bus '{other}' is not supported"
                )));
            }
        };
        if drive.is_none() {
            v.remove("drive");
        }
        if let Some(b) = bootindex {
            v["bootindex"] = json!(b);
        }
        if let Some(cache) = attr(d, &["driver"], "cache") {
            // The guest-visible write cache follows libvirt's cache modes.
            let wc = matches!(cache, "none" | "writeback" | "unsafe");
            v["write-cache"] = json!(if wc { "on" } else { "off" });
        }
        push_device(&mut disk_args, &v);
    }

    // Interfaces.
    for (k, i) in devs.children_named_mut("interface").enumerate() {
        let ni = k;
        let ty = i.attr("type").unwrap_or("user").to_string();
        let id = format!("hostnet{k}");
        let netdev = match ty.as_str() {
            "user" => obj! {"type": "user", "id": id},
            "ethernet" => {
                let mut v = obj! {"type": "tap", "id": id, "script": "no", "downscript": "no"};
                if let Some(t) = attr(i, &["target"], "dev") {
                    v["ifname"] = json!(t);
                }
                v
            }
            "bridge" | "network" => {
                let br = if ty == "bridge" {
                    attr(i, &["source"], "bridge").ok_or_else(|| {
                        CommandError::Invalid(
                            "interface of type 'bridge' needs <source bridge=...>".into(),
                        )
                    })?
                } else {
                    attr(i, &["source"], "network").ok_or_else(|| {
                        CommandError::Invalid(
                            "interface of type 'network' needs <source network=...>".into(),
                        )
                    })?
                }
                .to_string();
                match opts.taps.get(&k) {
                    // the TAP the driver made: QEMU inherits its descriptor
                    Some(TapInfo { fd, dev, port }) => {
                        if let (Some((portid, bridge)), Some(src)) = (port, i.child_mut("source")) {
                            src.set_attr("portid", portid);
                            src.set_attr("bridge", bridge);
                        }
                        i.remove_children(|c| c.name() == "target");
                        let at = i
                            .nodes()
                            .iter()
                            .position(|n| {
                                matches!(n, rvirt_xml::Node::Element(c) if c.name() == "model" || c.name() == "alias" || c.name() == "address")
                            })
                            .unwrap_or(i.nodes().len());
                        i.nodes_mut().insert(
                            at,
                            rvirt_xml::Node::Element(Element::new("target").with_attr("dev", dev)),
                        );
                        obj! {"type": "tap", "fd": fd.to_string(), "id": id}
                    }
                    // domxml-to-native: no device is made
                    None if ty == "bridge" => obj! {"type": "bridge", "br": br, "id": id},
                    // the network's bridge is known only once a port is plugged at start
                    None => obj! {"type": "tap", "fd": "-1", "id": id},
                }
            }
            other => {
                return Err(CommandError::Unsupported(format!(
                    "interface type '{other}' is not supported by the qemu driver (user, ethernet, bridge, network)"
                )));
            }
        };
        let model = attr(i, &["model"], "type").unwrap_or("rtl8139").to_string();
        let driver = match model.as_str() {
            "virtio" => "virtio-net-pci",
            "e1000" => "e1000",
            "e1000e" => "e1000e",
            "rtl8139" => "rtl8139",
            other => {
                return Err(CommandError::Unsupported(format!(
                    "interface model '{other}' is not supported"
                )));
            }
        };
        let alias = format!("net{k}");
        set_alias(i, &alias);
        let mac = attr(i, &["mac"], "address").map(str::to_string);
        let bootindex = match i
            .child("boot")
            .and_then(|b| b.attr("order"))
            .and_then(parse_num)
        {
            Some(o) => Some(o),
            None => boot_for.get(&("interface", ni)).copied(),
        };
        let mut v = obj! {"driver": driver, "netdev": id, "id": alias};
        if let Some(m) = mac {
            v["mac"] = json!(m);
        }
        if let Some(b) = bootindex {
            v["bootindex"] = json!(b);
        }
        let on_root = driver != "virtio-net-pci" && driver != "e1000e";
        let b = place(&mut pci, i, on_root)?;
        net_args.push("-netdev".into());
        net_args.push(json_arg(&netdev));
        push_device(&mut net_args, &with_pci(v, b));
    }

    // Serial ports and consoles.
    let nserial = devs.children_named("serial").count();
    for (k, s) in devs.children_named_mut("serial").enumerate() {
        let port = attr(s, &["target"], "port")
            .and_then(parse_num)
            .unwrap_or(k as u64);
        let id = format!("charserial{k}");
        char_args.push("-chardev".into());
        char_args.push(chardev(s, &id, None)?);
        set_alias(s, &format!("serial{k}"));
        push_device(
            &mut char_args,
            &obj! {"driver": "isa-serial", "chardev": id, "id": format!("serial{k}"), "index": port},
        );
    }
    let mut console_serial = false;
    let nconsole = devs.children_named("console").count();
    for c in devs.children_named_mut("console") {
        let tt = attr(c, &["target"], "type").unwrap_or("serial").to_string();
        if tt != "serial" {
            return Err(CommandError::Unsupported(format!(
                "console target type '{tt}' is not supported (serial only)"
            )));
        }
        set_alias(c, "serial0");
        if nserial == 0 && !console_serial {
            // A console with no serial is the first serial port.
            char_args.push("-chardev".into());
            char_args.push(chardev(c, "charserial0", None)?);
            push_device(
                &mut char_args,
                &obj! {"driver": "isa-serial", "chardev": "charserial0", "id": "serial0", "index": 0},
            );
            console_serial = true;
        }
    }
    if nconsole == 0 && nserial > 0 {
        // libvirt shows the first serial port as the console too.
        let s0 = devs.children_named("serial").next().cloned();
        if let Some(s0) = s0 {
            let mut c = Element::new("console").with_attr("type", s0.attr("type").unwrap_or("pty"));
            if let Some(src) = s0.child("source") {
                c.push(src.clone());
            }
            c.push(
                Element::new("target")
                    .with_attr("type", "serial")
                    .with_attr("port", "0"),
            );
            c.push(Element::new("alias").with_attr("name", "serial0"));
            let pos = devs
                .nodes()
                .iter()
                .rposition(|n| matches!(n, rvirt_xml::Node::Element(e) if e.name() == "serial"))
                .map_or(devs.nodes().len(), |p| p + 1);
            devs.nodes_mut().insert(pos, rvirt_xml::Node::Element(c));
        }
    }

    // Channels (virtio-serial ports; the guest agent).
    for (k, c) in devs.children_named_mut("channel").enumerate() {
        let tt = attr(c, &["target"], "type").unwrap_or("").to_string();
        if tt != "virtio" {
            return Err(CommandError::Unsupported(format!(
                "channel target type '{tt}' is not supported (virtio only)"
            )));
        }
        let tname = attr(c, &["target"], "name").unwrap_or("").to_string();
        let id = format!("charchannel{k}");
        let default = (!tname.is_empty()).then(|| opts.channel_dir.join(format!("{name}.{tname}")));
        char_args.push("-chardev".into());
        char_args.push(chardev(c, &id, default)?);
        let alias = format!("channel{k}");
        set_alias(c, &alias);
        let mut v = obj! {"driver": "virtserialport", "bus": "virtio-serial0.0", "nr": k + 1, "chardev": id, "id": alias};
        if !tname.is_empty() {
            v["name"] = json!(tname);
        }
        if c.child("address").is_none() {
            c.push(
                Element::new("address")
                    .with_attr("type", "virtio-serial")
                    .with_attr("controller", "0")
                    .with_attr("bus", "0")
                    .with_attr("port", &(k + 1).to_string()),
            );
        }
        push_device(&mut char_args, &v);
    }

    // Inputs.
    let mut usb_port = 1;
    for (k, i) in devs.children_named_mut("input").enumerate() {
        let ty = i.attr("type").unwrap_or("mouse").to_string();
        let bus = i.attr("bus").unwrap_or("ps2").to_string();
        match bus.as_str() {
            "ps2" => {
                set_alias(i, &format!("input{k}"));
            }
            "usb" => {
                let driver = match ty.as_str() {
                    "tablet" => "usb-tablet",
                    "mouse" => "usb-mouse",
                    "keyboard" => "usb-kbd",
                    other => {
                        return Err(CommandError::Unsupported(format!(
                            "input type '{other}' is not supported"
                        )));
                    }
                };
                let alias = format!("input{k}");
                set_alias(i, &alias);
                push_device(
                    &mut tail_args,
                    &obj! {"driver": driver, "id": alias, "bus": "usb.0", "port": usb_port.to_string()},
                );
                if i.child("address").is_none() {
                    i.push(
                        Element::new("address")
                            .with_attr("type", "usb")
                            .with_attr("bus", "0")
                            .with_attr("port", &usb_port.to_string()),
                    );
                }
                usb_port += 1;
            }
            "virtio" => {
                let driver = match ty.as_str() {
                    "tablet" => "virtio-tablet-pci",
                    "mouse" => "virtio-mouse-pci",
                    "keyboard" => "virtio-keyboard-pci",
                    other => {
                        return Err(CommandError::Unsupported(format!(
                            "input type '{other}' is not supported"
                        )));
                    }
                };
                let alias = format!("input{k}");
                set_alias(i, &alias);
                let b = place(&mut pci, i, false)?;
                push_device(
                    &mut tail_args,
                    &with_pci(obj! {"driver": driver, "id": alias}, b),
                );
            }
            other => {
                return Err(CommandError::Unsupported(format!(
                    "input bus '{other}' is not supported"
                )));
            }
        }
    }

    // Graphics.
    let mut gfx_args = Vec::new();
    // The port of each VNC display, in order: put back into the live definition after
    // validation (post-parse rules turn an autoport's port into -1).
    let mut vnc_ports = Vec::new();
    let mut passwords = Vec::new();
    if !graphics.is_empty() {
        gfx_args.push("-audiodev".into());
        gfx_args.push("id=audio1,driver=none".into());
    }
    for g in devs.children_named_mut("graphics") {
        let ty = g.attr("type").unwrap_or("").to_string();
        if ty != "vnc" {
            return Err(CommandError::Unsupported(format!(
                "graphics type '{ty}' is not supported (vnc only)"
            )));
        }
        let listen = g
            .attr("listen")
            .or_else(|| attr(g, &["listen"], "address"))
            .unwrap_or("127.0.0.1")
            .to_string();
        let auto = g.attr("autoport") == Some("yes") || g.attr("port").is_none_or(|p| p == "-1");
        let port: u16 = if auto {
            if opts.allocate_vnc {
                free_vnc_port().ok_or_else(|| {
                    CommandError::Unsupported("no free VNC port between 5900 and 6899".into())
                })?
            } else {
                5900
            }
        } else {
            g.attr("port")
                .and_then(parse_num)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p >= 5900)
                .ok_or_else(|| {
                    CommandError::Invalid("VNC port must be -1 or at least 5900".into())
                })?
        };
        if auto {
            g.set_attr("autoport", "yes");
            g.set_attr("port", &port.to_string());
        }
        if g.attr("listen").is_none() {
            g.set_attr("listen", &listen);
        }
        vnc_ports.push(port);
        let host = if listen.contains(':') {
            format!("[{listen}]")
        } else {
            listen
        };
        let mut vnc = format!("{host}:{}", port - 5900);
        if let Some(pw) = g.attr("passwd") {
            let valid_to = match g.attr("passwdValidTo") {
                Some(v) => Some(parse_valid_to(v).ok_or_else(|| {
                    CommandError::Invalid(format!(
                        "graphics passwdValidTo '{v}' is not a time of the form YYYY-MM-DDTHH:MM:SS"
                    ))
                })?),
                None => None,
            };
            passwords.push(GraphicsPassword {
                protocol: "vnc",
                password: pw.to_string(),
                valid_to,
            });
            vnc.push_str(",password=on");
        }
        vnc.push_str(",audiodev=audio1");
        gfx_args.push("-vnc".into());
        gfx_args.push(vnc);
    }

    // Video.
    let mut primary_done = false;
    for (k, v) in devs.children_named_mut("video").enumerate() {
        let model = attr(v, &["model"], "type").unwrap_or("vga").to_string();
        if model == "none" {
            continue;
        }
        let primary = !primary_done;
        primary_done = true;
        let alias = format!("video{k}");
        set_alias(v, &alias);
        let vga_mem = attr(v, &["model"], "vgamem")
            .and_then(parse_num)
            .unwrap_or(16384);
        let dev = match (model.as_str(), primary) {
            ("virtio", true) => obj! {"driver": "virtio-vga", "id": alias, "max_outputs": 1},
            ("virtio", false) => obj! {"driver": "virtio-gpu-pci", "id": alias, "max_outputs": 1},
            ("qxl", p) => {
                obj! {"driver": if p { "qxl-vga" } else { "qxl" }, "id": alias, "max_outputs": 1,
                "ram_size": attr(v, &["model"], "ram").and_then(parse_num).unwrap_or(65536) * 1024,
                "vram_size": attr(v, &["model"], "vram").and_then(parse_num).unwrap_or(65536) * 1024,
                "vram64_size_mb": 0, "vgamem_mb": vga_mem / 1024}
            }
            ("vga", _) => obj! {"driver": "VGA", "id": alias, "vgamem_mb": vga_mem / 1024},
            ("cirrus", _) => obj! {"driver": "cirrus-vga", "id": alias},
            ("bochs", _) => obj! {"driver": "bochs-display", "id": alias},
            (other, _) => {
                return Err(CommandError::Unsupported(format!(
                    "video model '{other}' is not supported"
                )));
            }
        };
        let b = place(&mut pci, v, true)?;
        push_device(&mut gfx_args, &with_pci(dev, b));
    }

    // Memory balloon.
    for b in devs.children_named_mut("memballoon") {
        match b.attr("model").unwrap_or("virtio") {
            "none" => {}
            "virtio" => {
                set_alias(b, "balloon0");
                let bus = place(&mut pci, b, false)?;
                push_device(
                    &mut tail_args,
                    &with_pci(obj! {"driver": "virtio-balloon-pci", "id": "balloon0"}, bus),
                );
            }
            other => {
                return Err(CommandError::Unsupported(format!(
                    "memballoon model '{other}' is not supported"
                )));
            }
        }
    }

    // Watchdog.
    for (k, w) in devs.children_named_mut("watchdog").enumerate() {
        let model = w.attr("model").unwrap_or("i6300esb").to_string();
        let alias = format!("watchdog{k}");
        set_alias(w, &alias);
        match model.as_str() {
            "i6300esb" => {
                let b = place(&mut pci, w, true)?;
                push_device(
                    &mut tail_args,
                    &with_pci(obj! {"driver": "i6300esb", "id": alias}, b),
                );
            }
            "ib700" => push_device(&mut tail_args, &obj! {"driver": "ib700", "id": alias}),
            other => {
                return Err(CommandError::Unsupported(format!(
                    "watchdog model '{other}' is not supported"
                )));
            }
        }
        let action = w.attr("action").unwrap_or("reset").to_string();
        let qaction = match action.as_str() {
            "reset" | "shutdown" | "poweroff" | "pause" | "none" => action.clone(),
            "inject-nmi" => "inject-nmi".into(),
            "dump" => "pause".into(),
            other => {
                return Err(CommandError::Unsupported(format!(
                    "watchdog action '{other}' is not supported"
                )));
            }
        };
        tail_args.push("-watchdog-action".into());
        tail_args.push(qaction);
    }

    // RNG.
    for (k, r) in devs.children_named_mut("rng").enumerate() {
        if r.attr("model").unwrap_or("virtio") != "virtio" {
            return Err(CommandError::Unsupported(
                "rng model must be 'virtio'".into(),
            ));
        }
        let backend = r.child("backend");
        let obj = format!("objrng{k}");
        let o = match backend.and_then(|b| b.attr("model")).unwrap_or("random") {
            "random" => {
                let f = backend
                    .map(|b| b.text().trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "/dev/urandom".into());
                obj! {"qom-type": "rng-random", "id": obj, "filename": f}
            }
            "builtin" => obj! {"qom-type": "rng-builtin", "id": obj},
            other => {
                return Err(CommandError::Unsupported(format!(
                    "rng backend '{other}' is not supported"
                )));
            }
        };
        let alias = format!("rng{k}");
        set_alias(r, &alias);
        let b = place(&mut pci, r, false)?;
        tail_args.push("-object".into());
        tail_args.push(json_arg(&o));
        push_device(
            &mut tail_args,
            &with_pci(
                obj! {"driver": "virtio-rng-pci", "rng": obj, "id": alias},
                b,
            ),
        );
    }

    // Root ports created on the way (q35) become controllers in the live XML.
    for &(idx, slot, func) in &pci.root_ports {
        let mut c = Element::new("controller")
            .with_attr("type", "pci")
            .with_attr("index", &idx.to_string())
            .with_attr("model", "pcie-root-port");
        c.push(Element::new("model").with_attr("name", "pcie-root-port"));
        c.push(
            Element::new("target")
                .with_attr("chassis", &idx.to_string())
                .with_attr("port", &format!("0x{:x}", (slot << 3) | func)),
        );
        c.push(Element::new("alias").with_attr("name", &format!("pci.{idx}")));
        c.push(pci_address_element(0, slot, func));
        let pos = devs
            .nodes()
            .iter()
            .rposition(|n| matches!(n, rvirt_xml::Node::Element(e) if e.name() == "controller"))
            .map_or(devs.nodes().len(), |p| p + 1);
        devs.nodes_mut().insert(pos, rvirt_xml::Node::Element(c));
    }

    check_assigned_addresses(devs)?;

    let mut args = head;
    args.extend(pci.root_port_args());
    args.extend(ctrl_args);
    for t in &mut transient {
        t.arg_index += args.len();
    }
    args.extend(disk_args);
    args.extend(net_args);
    args.extend(char_args);
    args.extend(gfx_args);
    args.extend(tail_args);
    args.push("-msg".into());
    args.push("timestamp=on".into());
    let mut live = Domain::from_element(live.into_element()).map_err(|e| {
        CommandError::Internal(format!("the live definition does not validate: {e}"))
    })?;
    if let Some(devs) = live.element_mut().child_mut("devices") {
        for (g, port) in devs.children_named_mut("graphics").zip(&vnc_ports) {
            g.set_attr("port", &port.to_string());
        }
    }
    Ok(Native {
        emulator,
        args,
        live,
        nvram,
        transient,
        passwords,
    })
}

fn set_drive_address(d: &mut Element, controller: u32, bus: u32, target: u32, unit: u32) {
    if d.child("address").is_some() {
        return;
    }
    d.push(
        Element::new("address")
            .with_attr("type", "drive")
            .with_attr("controller", &controller.to_string())
            .with_attr("bus", &bus.to_string())
            .with_attr("target", &target.to_string())
            .with_attr("unit", &unit.to_string()),
    );
}

/// Quotes an argument the way libvirt's `.args` files show it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The `qemu-argv` native format: environment and command, one argument pair per line.
pub fn to_argv_text(n: &Native) -> String {
    let mut out =
        String::from("LC_ALL=C \\\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin \\\n");
    out.push_str(&shell_quote(&n.emulator));
    let mut i = 0;
    while i < n.args.len() {
        out.push_str(" \\\n");
        out.push_str(&shell_quote(&n.args[i]));
        if n.args[i].starts_with('-') && i + 1 < n.args.len() && !n.args[i + 1].starts_with('-') {
            out.push(' ');
            out.push_str(&shell_quote(&n.args[i + 1]));
            i += 1;
        }
        i += 1;
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> BuildOptions {
        BuildOptions {
            monitor: Monitor::Path("/run/m.sock".into()),
            kvm: Err("no kvm in unit tests".into()),
            check_files: false,
            nvram_dir: "/var/lib/nv".into(),
            channel_dir: "/run/ch".into(),
            allocate_vnc: false,
            volumes: Default::default(),
            taps: Default::default(),
            secrets: Default::default(),
        }
    }

    /// libvirt's `disk-network-iscsi` case (qemuxmlconfdata): the iscsi storage nodes
    /// match its `.args` member for member (portal, target, LUN, CHAP user and password
    /// secret, initiator name).
    #[test]
    fn iscsi_network_disks_match_libvirts_blockdev_nodes() {
        let dir = rvirt_tests::shared_dir().join("corpus/qemuxmlconfdata");
        let xml = std::fs::read_to_string(dir.join("disk-network-iscsi.xml")).expect("case");
        let args = std::fs::read_to_string(dir.join("disk-network-iscsi.x86_64-latest.args"))
            .expect("args");
        let want: Vec<&str> = args
            .lines()
            .filter(|l| l.starts_with("-blockdev '{\"driver\":\"iscsi\""))
            .map(|l| {
                l.trim_start_matches("-blockdev '")
                    .trim_end_matches(" \\")
                    .trim_end_matches('\'')
            })
            .collect();
        assert_eq!(want.len(), 7);
        let mut o = opts();
        for dev in ["vdc", "vdd", "sdc"] {
            o.secrets.insert(dev.into(), "/proc/self/fd/7".into());
        }
        let n = build(&Domain::parse(&xml).expect("parse"), &o).expect("build");
        let got: Vec<&String> = n
            .args
            .iter()
            .filter(|a| a.starts_with("{\"driver\":\"iscsi\""))
            .collect();
        assert_eq!(got.len(), 7, "{:?}", n.args);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.as_str(), *w);
        }
    }

    /// libvirt's `disk-network-rbd` case (qemuxmlconfdata): the rbd storage nodes match
    /// its `.args` member for member; the disk with cephx auth names a secret object read
    /// from an inherited descriptor, and no key is on the command line.
    #[test]
    fn rbd_network_disks_match_libvirts_blockdev_nodes() {
        let dir = rvirt_tests::shared_dir().join("corpus/qemuxmlconfdata");
        let xml = std::fs::read_to_string(dir.join("disk-network-rbd.xml")).expect("case");
        let args =
            std::fs::read_to_string(dir.join("disk-network-rbd.x86_64-latest.args")).expect("args");
        let want: Vec<&str> = args
            .lines()
            .filter(|l| l.starts_with("-blockdev '{\"driver\":\"rbd\""))
            .map(|l| {
                l.trim_start_matches("-blockdev '")
                    .trim_end_matches(" \\")
                    .trim_end_matches('\'')
            })
            .collect();
        assert_eq!(want.len(), 6);
        let mut o = opts();
        o.secrets.insert("vde".into(), "/proc/self/fd/7".into());
        let n = build(&Domain::parse(&xml).expect("parse"), &o).expect("build");
        let got: Vec<&String> = n
            .args
            .iter()
            .filter(|a| a.starts_with("{\"driver\":\"rbd\""))
            .collect();
        assert_eq!(got.len(), 6, "{:?}", n.args);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.as_str(), *w);
        }
        let secret = n
            .args
            .iter()
            .find(|a| a.contains("\"qom-type\":\"secret\""))
            .expect("secret object");
        assert_eq!(
            secret,
            "{\"qom-type\":\"secret\",\"id\":\"libvirt-2-storage-auth-secret0\",\"format\":\"raw\",\"file\":\"/proc/self/fd/7\"}"
        );
        // a protocol not served yet names itself
        let e = build_xml(
            "<domain type='qemu'><name>n</name><memory>65536</memory><os><type>hvm</type></os><devices>\
             <disk type='network'><source protocol='sheepdog' name='x'/><target dev='vda'/></disk></devices></domain>",
        )
        .expect_err("sheepdog");
        assert!(e.to_string().contains("protocol 'sheepdog'"), "{e}");
        let e = build_xml(
            "<domain type='qemu'><name>n</name><memory>65536</memory><os><type>hvm</type></os><devices>\
             <disk type='network'><source protocol='rbd' name='noslash'/><target dev='vda'/></disk></devices></domain>",
        )
        .expect_err("name");
        assert!(e.to_string().contains("'pool/image'"), "{e}");
    }

    fn build_xml(xml: &str) -> Result<Native, CommandError> {
        build(&Domain::parse(xml).expect("parse"), &opts())
    }

    const BASE: &str = "<domain type='qemu'><name>t</name><uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid><memory unit='KiB'>219100</memory><vcpu>2</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>";

    fn has_pair(n: &Native, flag: &str, val: &str) -> bool {
        n.args.windows(2).any(|w| w[0] == flag && w[1] == val)
    }

    #[test]
    fn target_indexes() {
        assert_eq!(target_index("vda"), Some(0));
        assert_eq!(target_index("hdc"), Some(2));
        assert_eq!(target_index("sdaa"), Some(26));
        assert_eq!(target_index("x"), None);
    }

    #[test]
    fn basic_machine_memory_and_smp() {
        let n = build_xml(&format!("{BASE}<devices/></domain>")).unwrap();
        assert!(has_pair(
            &n,
            "-machine",
            "pc,usb=off,dump-guest-core=off,memory-backend=pc.ram,acpi=off"
        ));
        assert!(has_pair(&n, "-accel", "tcg"));
        assert!(has_pair(&n, "-m", "size=219136k"));
        assert!(has_pair(&n, "-smp", "2,sockets=2,cores=1,threads=1"));
        assert!(has_pair(&n, "-cpu", "qemu64"));
        assert!(has_pair(&n, "-display", "none"));
        // Implicit USB controller and balloon get PCI addresses, visible in the live XML.
        assert!(
            n.args
                .iter()
                .any(|a| a.contains("\"piix3-usb-uhci\"") && a.contains("0x1.0x2"))
        );
        assert!(
            n.args
                .iter()
                .any(|a| a.contains("virtio-balloon-pci") && a.contains("\"addr\":\"0x2\""))
        );
        let live = n.live.to_xml(&Default::default());
        assert!(live.contains("<alias name='balloon0'/>"), "{live}");
        assert!(live.contains("model='pci-root'"), "{live}");
    }

    #[test]
    fn kvm_requires_usable_kvm() {
        let e = build_xml("<domain type='kvm'><name>t</name><memory>1024</memory><os><type>hvm</type></os></domain>").unwrap_err();
        assert!(e.to_string().contains("domain requires KVM"), "{e}");
    }

    #[test]
    fn cpu_modes_topology_kernel_and_acpi() {
        let n = build_xml(&format!("{BASE}<features><acpi/></features><cpu mode='custom'><model>Haswell</model><feature policy='require' name='vmx'/><feature policy='disable' name='avx'/><topology sockets='1' dies='1' cores='2' threads='1'/></cpu><devices/></domain>").replace("<os><type arch='x86_64' machine='pc'>hvm</type></os>", "<os><type arch='x86_64' machine='q35'>hvm</type><kernel>/k</kernel><initrd>/i</initrd><cmdline>console=ttyS0</cmdline></os>")).unwrap();
        assert!(has_pair(&n, "-cpu", "Haswell,vmx=on,avx=off"));
        assert!(has_pair(&n, "-smp", "2,sockets=1,cores=2,threads=1"));
        assert!(
            has_pair(&n, "-kernel", "/k")
                && has_pair(&n, "-initrd", "/i")
                && has_pair(&n, "-append", "console=ttyS0")
        );
        assert!(
            n.args
                .iter()
                .any(|a| a.starts_with("q35,") && a.ends_with("acpi=on"))
        );
        // q35: devices sit behind PCIe root ports.
        assert!(n.args.iter().any(|a| a.contains("pcie-root-port")));
        assert!(
            n.args
                .iter()
                .any(|a| a.contains("qemu-xhci") && a.contains("\"bus\":\"pci."))
        );
        let e = build_xml(&format!(
            "{BASE}<cpu mode='host-passthrough'/><devices/></domain>"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("host-passthrough"));
        let n = build_xml(&format!(
            "{BASE}<cpu mode='host-model'/><devices/></domain>"
        ))
        .unwrap();
        assert!(has_pair(&n, "-cpu", "max"));
    }

    #[test]
    fn disks_nics_serial_and_friends() {
        let n = build_xml(&format!("{BASE}<devices>\
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/a.qcow2'/><target dev='vda' bus='virtio'/></disk>\
            <disk type='file' device='cdrom'><source file='/b.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>\
            <disk type='file' device='disk'><source file='/c.raw'/><target dev='sda' bus='scsi'/></disk>\
            <interface type='user'><mac address='52:54:00:11:22:33'/><model type='virtio'/></interface>\
            <interface type='ethernet'><target dev='tap7'/><model type='e1000'/></interface>\
            <serial type='file'><source path='/tmp/s.log'/></serial>\
            <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\
            <graphics type='vnc' port='5905'/><video><model type='virtio'/></video>\
            <input type='tablet' bus='usb'/><rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\
            <watchdog model='i6300esb' action='poweroff'/></devices></domain>")).unwrap();
        let a = n.args.join("\n");
        assert!(a.contains(r#"{"driver":"file","filename":"/a.qcow2","node-name":"libvirt-3-storage","auto-read-only":true,"discard":"unmap"}"#), "{a}");
        assert!(
            a.contains(r#""driver":"qcow2","file":"libvirt-3-storage""#),
            "{a}"
        );
        assert!(
            a.contains(r#""driver":"virtio-blk-pci""#)
                && a.contains(r#""drive":"libvirt-3-format""#)
        );
        assert!(a.contains(r#"{"driver":"file","filename":"/b.iso","node-name":"libvirt-2-storage","read-only":true}"#));
        assert!(a.contains(r#"{"driver":"ide-cd","bus":"ide.1","unit":0,"drive":"libvirt-2-storage","id":"ide0-1-0"}"#), "{a}");
        assert!(a.contains("virtio-scsi-pci") && a.contains(r#""driver":"scsi-hd""#));
        assert!(a.contains(r#"{"type":"user","id":"hostnet0"}"#));
        assert!(a.contains(r#""mac":"52:54:00:11:22:33""#));
        assert!(
            a.contains(r#""type":"tap""#)
                && a.contains(r#""ifname":"tap7""#)
                && a.contains(r#""driver":"e1000""#)
        );
        assert!(a.contains("file,id=charserial0,path=/tmp/s.log"));
        assert!(a.contains(
            "socket,id=charchannel0,path=/run/ch/t.org.qemu.guest_agent.0,server=on,wait=off"
        ));
        assert!(
            a.contains("virtio-serial-pci") && a.contains(r#""name":"org.qemu.guest_agent.0""#)
        );
        assert!(a.contains("127.0.0.1:5,audiodev=audio1"));
        assert!(a.contains(r#""driver":"virtio-vga""#) && a.contains(r#""addr":"0x2""#));
        assert!(a.contains("usb-tablet") && a.contains("virtio-rng-pci") && a.contains("i6300esb"));
        assert!(has_pair(&n, "-watchdog-action", "poweroff"));
        // A console mirrors the first serial port in the live XML.
        let live = n.live.to_xml(&Default::default());
        assert!(live.contains("<console type='file'>"), "{live}");
    }

    #[test]
    fn transient_disk_and_missing_source() {
        let xml = format!(
            "{BASE}<devices><disk type='file' device='disk'><source file='/nonexistent/x.raw'/><target dev='vda' bus='virtio'/><transient/></disk></devices></domain>"
        );
        let n = build_xml(&xml).unwrap();
        assert_eq!(n.transient.len(), 1);
        assert!(
            n.args[n.transient[0].arg_index].contains("/nonexistent/x.raw"),
            "{:?}",
            n.args
        );
        let mut o = opts();
        o.check_files = true;
        let e = build(&Domain::parse(&xml).unwrap(), &o).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot access storage file '/nonexistent/x.raw'"
        );
    }

    #[test]
    fn uefi_uses_ovmf_and_a_per_domain_nvram() {
        let n =
            build_xml(&format!("{BASE}<devices/></domain>").replace("<os>", "<os firmware='efi'>"))
                .unwrap();
        let a = n.args.join(" ");
        assert!(
            a.contains(OVMF_CODE) && a.contains("pflash0=libvirt-pflash0-format"),
            "{a}"
        );
        assert_eq!(
            n.nvram.as_ref().unwrap().1,
            PathBuf::from("/var/lib/nv/t_VARS.fd")
        );
    }

    #[test]
    fn vnc_password_is_set_over_qmp_and_never_on_the_command_line() {
        let n = build_xml(&format!(
            "{BASE}<devices><graphics type='vnc' port='5901' listen='127.0.0.1' passwd='s3cr3t' \
             passwdValidTo='2010-04-09T15:51:00'/><graphics type='vnc' port='5902'/></devices></domain>"
        ))
        .unwrap();
        assert!(
            has_pair(&n, "-vnc", "127.0.0.1:1,password=on,audiodev=audio1"),
            "{:?}",
            n.args
        );
        assert!(
            has_pair(&n, "-vnc", "127.0.0.1:2,audiodev=audio1"),
            "{:?}",
            n.args
        );
        assert!(!n.args.iter().any(|a| a.contains("s3cr3t")), "{:?}", n.args);
        assert!(!to_argv_text(&n).contains("s3cr3t"));
        assert!(
            !format!("{:?}", n.passwords).contains("s3cr3t"),
            "Debug redacts the password"
        );
        assert_eq!(
            n.passwords,
            vec![GraphicsPassword {
                protocol: "vnc",
                password: "s3cr3t".into(),
                valid_to: Some(1_270_828_260),
            }]
        );
        let cmds = password_commands(&n.passwords, 1_000_000_000);
        assert_eq!(
            cmds,
            vec![
                (
                    "set_password",
                    json!({"protocol": "vnc", "password": "s3cr3t"})
                ),
                (
                    "expire_password",
                    json!({"protocol": "vnc", "time": "1270828260"})
                ),
            ]
        );
        // Expired already: `now`; no passwdValidTo: `never`.
        assert_eq!(
            password_commands(&n.passwords, 2_000_000_000)[1].1["time"],
            "now"
        );
        let never = GraphicsPassword {
            valid_to: None,
            ..n.passwords[0].clone()
        };
        assert_eq!(password_commands(&[never], 0)[1].1["time"], "never");
        let e = build_xml(&format!(
            "{BASE}<devices><graphics type='vnc' port='5901' passwd='x' passwdValidTo='tomorrow'/></devices></domain>"
        ))
        .unwrap_err();
        assert!(matches!(e, CommandError::Invalid(_)), "{e}");
    }

    #[test]
    fn valid_to_times() {
        assert_eq!(parse_valid_to("1970-01-01T00:00:00"), Some(0));
        assert_eq!(parse_valid_to("2000-03-01T00:00:01"), Some(951_868_801));
        assert_eq!(parse_valid_to("2024-02-29T23:59:59"), Some(1_709_251_199));
        for bad in [
            "",
            "2010-04-09",
            "2010-13-01T00:00:00",
            "2010-04-09T24:00:00",
            "2010-04-09T1:2:3:4",
            "a-b-cTd:e:f",
        ] {
            assert_eq!(parse_valid_to(bad), None, "{bad}");
        }
    }

    #[test]
    fn graphics_that_cannot_get_a_password_do_not_build() {
        let e = build_xml(&format!(
            "{BASE}<devices><graphics type='spice' autoport='yes' passwd='s3cr3t'/></devices></domain>"
        ))
        .unwrap_err();
        assert!(matches!(e, CommandError::Unsupported(_)), "{e}");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn clashing_user_addresses_are_the_users_error() {
        let addr = |slot: u32, func: u32| {
            format!(
                "<address type='pci' domain='0x0000' bus='0x00' slot='0x{slot:02x}' function='0x{func:x}'/>"
            )
        };
        // Two devices at one address: rvirt-xml rejects the XML, and so does the driver
        // for a definition that skipped validation.
        let devs = Element::parse(&format!(
            "<devices><rng model='virtio'>{}</rng><memballoon model='virtio'>{}</memballoon></devices>",
            addr(5, 0),
            addr(5, 0)
        ))
        .unwrap();
        let e = check_user_addresses(&devs, false).unwrap_err();
        assert!(matches!(e, CommandError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("0000:00:05.0"), "{e}");
        // A device in the PIIX3 slot of pc; the IDE controller there is fine.
        let e = build_xml(&format!(
            "{BASE}<devices><memballoon model='virtio'>{}</memballoon></devices></domain>",
            addr(1, 3)
        ))
        .unwrap_err();
        assert!(matches!(e, CommandError::Invalid(_)), "{e}");
        build_xml(&format!(
            "{BASE}<devices><controller type='ide' index='0'>{}</controller>\
             <memballoon model='virtio'>{}</memballoon></devices></domain>",
            addr(1, 1),
            addr(6, 0)
        ))
        .unwrap();
    }

    #[test]
    fn clashing_driver_addresses_are_internal_errors() {
        let devs = Element::parse(
            "<devices><memballoon model='virtio'><address type='pci' bus='0x00' slot='0x03' function='0x0'/></memballoon>\
             <rng model='virtio'><address type='pci' bus='0x00' slot='0x03' function='0x0'/></rng></devices>",
        )
        .unwrap();
        let e = check_assigned_addresses(&devs).unwrap_err();
        assert!(matches!(e, CommandError::Internal(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("internal error of the qemu driver: PCI address 0000:00:03.0"),
            "{e}"
        );
        // Everything the driver places itself is distinct.
        let n = build_xml(&format!(
            "{BASE}<devices><disk type='file' device='disk'><source file='/a.img'/><target dev='vda' bus='virtio'/></disk>\
             <interface type='user'><model type='virtio'/></interface><graphics type='vnc' port='5901'/>\
             <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng></devices></domain>"
        ))
        .unwrap();
        check_assigned_addresses(n.live.element().child("devices").unwrap()).unwrap();
    }

    fn resolved(
        pool: &str,
        volume: &str,
        disk_type: &str,
        path: &str,
        format: &str,
    ) -> ResolvedVolume {
        ResolvedVolume {
            pool: pool.into(),
            volume: volume.into(),
            disk_type: disk_type.into(),
            path: path.into(),
            format: format.into(),
            pool_type: "dir".into(),
            backing: false,
            pool_xml: String::new(),
        }
    }

    fn build_with_volumes(
        xml: &str,
        volumes: &[(&str, ResolvedVolume)],
    ) -> Result<Native, CommandError> {
        let mut o = opts();
        o.volumes = volumes
            .iter()
            .map(|(t, v)| (t.to_string(), v.clone()))
            .collect();
        build(&Domain::parse(xml).expect("parse"), &o)
    }

    #[test]
    fn a_resolved_volume_disk_opens_the_volume_path_with_the_volume_format() {
        let xml = format!(
            "{BASE}<devices><disk type='volume' device='disk'><source pool='p1' volume='v1.qcow2'/><target dev='vda' bus='virtio'/></disk>\
             <disk type='volume' device='disk'><driver name='qemu' type='raw'/><source pool='p1' volume='v2' mode='host'/><target dev='vdb' bus='virtio'/></disk>\
             <disk type='volume' device='disk'><source pool='p2' volume='lv'/><target dev='vdc' bus='virtio'/></disk></devices></domain>"
        );
        let n = build_with_volumes(
            &xml,
            &[
                (
                    "vda",
                    resolved("p1", "v1.qcow2", "file", "/pool/v1.qcow2", "qcow2"),
                ),
                ("vdb", resolved("p1", "v2", "file", "/pool/v2", "qcow2")),
                ("vdc", resolved("p2", "lv", "block", "/dev/vg/lv", "")),
            ],
        )
        .unwrap();
        let a = n.args.join(" ");
        // No <driver type>: the volume's format (qcow2), over a file node.
        assert!(
            a.contains(r#"{"driver":"file","filename":"/pool/v1.qcow2","node-name":"libvirt-3-storage","auto-read-only":true,"discard":"unmap"}"#),
            "{a}"
        );
        // A format read from the volume never opens a backing file named in its header.
        assert!(
            a.contains(r#"{"node-name":"libvirt-3-format","read-only":false,"driver":"qcow2","file":"libvirt-3-storage","backing":null}"#),
            "{a}"
        );
        // An explicit <driver type> wins over the volume's format.
        assert!(
            a.contains(r#"{"driver":"file","filename":"/pool/v2","node-name":"libvirt-2-storage","read-only":false}"#),
            "{a}"
        );
        // A block volume opens as a host device; no format reported means raw.
        assert!(
            a.contains(r#"{"driver":"host_device","filename":"/dev/vg/lv","node-name":"libvirt-1-storage","read-only":false}"#),
            "{a}"
        );
        // The live XML keeps the volume form, with the format it resolved to.
        let live = n.live.to_xml(&rvirt_xml::FormatOptions::default());
        assert!(
            live.contains("<source pool='p1' volume='v1.qcow2'/>"),
            "{live}"
        );
        assert!(
            live.contains("<source pool='p1' volume='v2' mode='host'/>"),
            "{live}"
        );
        assert!(!live.contains("/pool/v1.qcow2"), "{live}");
        let vda = n
            .live
            .element()
            .child("devices")
            .unwrap()
            .children_named("disk")
            .find(|d| attr(d, &["target"], "dev") == Some("vda"))
            .unwrap();
        assert_eq!(vda.attr("type"), Some("volume"));
        assert_eq!(attr(vda, &["driver"], "type"), Some("qcow2"));
        assert_eq!(attr(vda, &["driver"], "name"), Some("qemu"));
        let vdb = n
            .live
            .element()
            .child("devices")
            .unwrap()
            .children_named("disk")
            .find(|d| attr(d, &["target"], "dev") == Some("vdb"))
            .unwrap();
        assert_eq!(attr(vdb, &["driver"], "type"), Some("raw"));
    }

    #[test]
    fn a_volume_with_a_backing_file_needs_its_format_declared() {
        let disk = |driver: &str| {
            format!(
                "{BASE}<devices><disk type='volume' device='disk'>{driver}<source pool='p' volume='o.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>"
            )
        };
        let mut v = resolved("p", "o.qcow2", "file", "/pool/o.qcow2", "qcow2");
        v.backing = true;
        let e = build_with_volumes(&disk(""), &[("vda", v.clone())]).unwrap_err();
        assert!(matches!(e, CommandError::Unsupported(_)), "{e}");
        assert!(
            e.to_string().contains(
                "disk 'vda': volume 'o.qcow2' of storage pool 'p' has a backing file: declare its format in <driver type>"
            ),
            "{e}"
        );
        // Declared, QEMU opens the image's backing chain as for a file disk.
        let n =
            build_with_volumes(&disk("<driver name='qemu' type='qcow2'/>"), &[("vda", v)]).unwrap();
        let a = n.args.join(" ");
        assert!(
            a.contains(r#"{"node-name":"libvirt-1-format","read-only":false,"driver":"qcow2","file":"libvirt-1-storage"}"#),
            "{a}"
        );
    }

    #[test]
    fn an_unresolved_or_unsupported_volume_disk_is_refused() {
        let xml = format!(
            "{BASE}<devices><disk type='volume' device='disk'><source pool='p1' volume='v1'/><target dev='vda' bus='virtio'/></disk></devices></domain>"
        );
        let e = build_with_volumes(&xml, &[]).unwrap_err();
        assert!(matches!(e, CommandError::Unsupported(_)), "{e}");
        assert!(
            e.to_string()
                .contains("disk 'vda': volume 'v1' of storage pool 'p1' was not resolved"),
            "{e}"
        );
        // a network volume opens as a network disk of its pool's protocol: rbd only
        let e = build_with_volumes(
            &xml,
            &[("vda", resolved("p1", "v1", "network", "rbd/v1", "raw"))],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("disk 'vda': volumes of 'dir' pools are not supported as network disks"),
            "{e}"
        );
        let mut v = resolved("p1", "v1", "network", "rbd/v1", "raw");
        v.pool_type = "rbd".into();
        v.pool_xml = "<pool type='rbd'><name>p1</name><source><name>rbd</name>\
            <host name='mon1' port='6789'/><host name='mon2'/>\
            <auth type='ceph' username='admin'><secret usage='ceph-admin'/></auth></source></pool>"
            .into();
        let n = build_with_volumes(&xml, &[("vda", v)]).expect("rbd volume");
        assert!(
            n.args.iter().any(|a| a == "{\"driver\":\"rbd\",\"pool\":\"rbd\",\"image\":\"v1\",\"server\":[{\"host\":\"mon1\",\"port\":\"6789\"},{\"host\":\"mon2\",\"port\":\"6789\"}],\"user\":\"admin\",\"auth-client-required\":[\"cephx\",\"none\"],\"key-secret\":\"libvirt-1-storage-auth-secret0\",\"node-name\":\"libvirt-1-storage\",\"read-only\":false}"),
            "{:?}",
            n.args
        );
        // An empty volume cdrom needs nothing resolved.
        let n = build_with_volumes(
            &format!(
                "{BASE}<devices><disk type='volume' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk></devices></domain>"
            ),
            &[],
        )
        .unwrap();
        assert!(!n.args.join(" ").contains("libvirt-1-storage"));
    }

    #[test]
    fn volume_disks_need_a_pool_and_a_volume_named_validly() {
        let disk = |src: &str| {
            Domain::parse(&format!(
                "{BASE}<devices><disk type='volume' device='disk'>{src}<target dev='vdb' bus='virtio'/></disk></devices></domain>"
            ))
            .unwrap()
        };
        let e = volume_disks(&disk("<source volume='v'/>")).unwrap_err();
        assert!(matches!(e, CommandError::Invalid(_)), "{e}");
        assert_eq!(
            e.to_string(),
            "invalid domain definition: disk 'vdb': the <source> of a volume disk needs the 'pool' attribute"
        );
        let e = volume_disks(&disk("<source pool='p' volume=''/>")).unwrap_err();
        assert!(
            e.to_string().ends_with(
                "disk 'vdb': the <source> of a volume disk needs the 'volume' attribute"
            ),
            "{e}"
        );
        let e = volume_disks(&disk("<source pool='a/b' volume='v'/>")).unwrap_err();
        assert!(e.to_string().contains("invalid pool name 'a/b'"), "{e}");
        let e = volume_disks(&disk("<source pool='p' volume='v' mode='odd'/>")).unwrap_err();
        assert!(e.to_string().contains("unknown source mode 'odd'"), "{e}");
        assert_eq!(
            volume_disks(&disk("<source pool='p' volume='v' mode='direct'/>")).unwrap(),
            vec![VolumeDisk {
                target: "vdb".into(),
                pool: "p".into(),
                volume: "v".into(),
                mode: Some("direct".into()),
            }]
        );
        assert!(volume_disks(&disk("")).unwrap().is_empty());
    }

    #[test]
    fn volume_disks_round_trip_with_pool_volume_and_mode() {
        let xml = format!(
            "{BASE}<devices><disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='pool-disk' volume='dir+vol1' mode='direct'/><target dev='vda' bus='virtio'/></disk>\
             <disk device='cdrom' type='volume'><readonly/><target bus='ide' dev='hda'/><source volume='block+cdrom' pool='pool-disk'/></disk></devices></domain>"
        );
        let def = Domain::parse(&xml).unwrap();
        let out = def.to_xml(&rvirt_xml::FormatOptions::default());
        let again = Domain::parse(&out).unwrap();
        let sources: Vec<(String, String, Option<String>)> = again
            .element()
            .child("devices")
            .unwrap()
            .children_named("disk")
            .map(|d| {
                assert_eq!(d.attr("type"), Some("volume"), "{out}");
                let s = d.child("source").unwrap();
                (
                    s.attr("pool").unwrap().to_string(),
                    s.attr("volume").unwrap().to_string(),
                    s.attr("mode").map(str::to_string),
                )
            })
            .collect();
        assert_eq!(
            sources,
            vec![
                ("pool-disk".into(), "dir+vol1".into(), Some("direct".into())),
                ("pool-disk".into(), "block+cdrom".into(), None),
            ]
        );
        assert_eq!(volume_disks(&again).unwrap().len(), 2);
    }

    #[test]
    fn i686_runs_on_qemu_system_i386() {
        assert_eq!(default_emulator("i686"), "/usr/bin/qemu-system-i386");
        assert_eq!(default_emulator("x86_64"), "/usr/bin/qemu-system-x86_64");
    }
}

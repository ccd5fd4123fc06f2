//! Domain XML → QEMU command line (modern syntax: `-blockdev`, `-netdev` + `-device`,
//! `-chardev`, JSON where QEMU takes it), and the live definition: implicit controllers,
//! PCI addresses and aliases the driver assigns, shown in the live XML.
//!
//! [`build`] is an orchestrator: [`machine`] builds the head of the command line,
//! [`defaults`] adds the implicit devices, [`address`] reserves the user's PCI addresses,
//! then one builder per device family (`controller`, `disk`, `net`, `chardev`, `misc`,
//! `graphics`) emits its arguments in a fixed order and places its devices through the
//! shared allocator ([`Ctx`]). The order of the calls is the order of PCI allocation:
//! changing it changes every guest's addresses.
//!
//! Architecture invariant: nothing in `command/` talks to QEMU or the host except
//! existence checks of the files a domain names, the probe for a free VNC port and
//! [`kvm_usable`] (and [`set_passwords`], which the driver calls on a QEMU that has not
//! run its guest yet); spawning and supervision live in `crate::driver`.

use rvirt_xml::{Domain, Element};
use serde_json::Value;
use std::path::PathBuf;

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
        $crate::command::Obj(vec![$(($k.to_string(), serde_json::json!($v))),*])
    };
}

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

mod address;
mod chardev;
mod controller;
mod defaults;
mod disk;
mod graphics;
mod hotplug;
mod machine;
mod misc;
mod net;
mod netdisk;
#[cfg(test)]
mod tests;

pub use disk::{ResolvedVolume, TransientDisk, VolumeDisk, network_auths, volume_disks};
pub use graphics::{GraphicsPassword, password_commands, set_passwords};
pub use hotplug::{HotplugDisk, HotplugNic, hotplug_disk, hotplug_nic, next_net_index};
pub use machine::{OVMF_CODE, OVMF_VARS, default_emulator, kvm_usable};
pub use misc::balloon_period;
pub use net::{
    TapInfo, TapInterface, assign_macs, links_down, network_ports, random_mac, tap_interface,
    tap_interfaces,
};
pub use netdisk::{NetAuth, NetHost, NetSource, auth_of};

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

fn push_device(args: &mut Vec<String>, v: &Obj) {
    args.push("-device".into());
    args.push(json_arg(v));
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

/// What the device builders share: the inputs, the PCI allocator and what earlier
/// builders found out for later ones.
struct Ctx<'a> {
    /// The inputs that do not come from the XML.
    opts: &'a BuildOptions,
    /// A q35 machine (else i440fx).
    q35: bool,
    /// The PCI allocator.
    pci: address::Pci,
    /// The boot index of devices from `<os><boot dev>`.
    boot_for: machine::BootOrder,
    /// A SATA controller other than q35's built-in one exists.
    sata_pc: bool,
}

/// Builds the command line and the live definition of `def`.
pub fn build(def: &Domain, opts: &BuildOptions) -> Result<Native, CommandError> {
    let mut live = def.clone();
    let root = live.element_mut();
    let name = def.name().to_string();
    let machine::Head {
        emulator,
        args: head,
        nvram,
        q35,
        os,
        has_graphics,
    } = machine::head(def, root, opts)?;

    // ---- devices ----
    let devs = root.child_or_insert("devices");
    defaults::check_device_kinds(devs)?;
    defaults::add_implicit(devs, q35, has_graphics);
    let mut pci = address::Pci::new(q35);
    address::reserve_explicit(&mut pci, devs, q35)?;
    address::user_root_ports(&mut pci, devs)?;
    address::place_ich9_companions(&mut pci, devs)?;
    address::assign_in_libvirt_order(&mut pci, devs)?;

    let mut ctrl_args: Vec<String> = Vec::new();
    let mut disk_args: Vec<String> = Vec::new();
    let mut net_args: Vec<String> = Vec::new();
    let mut char_args: Vec<String> = Vec::new();
    let mut gfx_args: Vec<String> = Vec::new();
    let mut tail_args: Vec<String> = Vec::new();

    let mut cx = Ctx {
        opts,
        q35,
        pci,
        boot_for: Default::default(),
        sata_pc: false,
    };
    cx.sata_pc = controller::controllers(&mut cx, devs, &mut ctrl_args)?;
    cx.boot_for = machine::boot_order(devs, &os);
    let mut transient = disk::disks(&mut cx, devs, &mut disk_args)?;
    net::interfaces(&mut cx, devs, &mut net_args)?;
    chardev::serials_and_consoles(devs, &mut char_args)?;
    chardev::channels(devs, opts, &name, &mut char_args)?;
    misc::inputs(&mut cx.pci, devs, &mut tail_args)?;
    let (vnc_ports, passwords) =
        graphics::graphics(devs, opts, has_graphics, &name, &mut gfx_args)?;
    graphics::video(&mut cx.pci, devs, &mut gfx_args)?;
    misc::sounds(&mut cx.pci, devs, q35, &mut tail_args)?;
    misc::redirdevs(devs, &mut tail_args)?;
    misc::memballoon(&mut cx.pci, devs, &mut tail_args)?;
    misc::watchdogs(&mut cx.pci, devs, &mut tail_args)?;
    misc::rngs(&mut cx.pci, devs, &mut tail_args)?;
    let mut pci = cx.pci;
    pci.add_hotplug_spare()?;
    address::add_root_port_controllers(&pci, devs);

    address::check_assigned_addresses(devs)?;

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
        // 0: a display without a TCP port (SPICE on a socket or none)
        for (g, port) in devs.children_named_mut("graphics").zip(&vnc_ports) {
            if *port != 0 {
                g.set_attr("port", &port.to_string());
            }
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

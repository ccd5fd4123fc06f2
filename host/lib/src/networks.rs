//! The host's virtual networks (libvirt's network driver, `virNetwork*` and
//! `virNetworkPort*`): the host owns network objects — definitions written atomically and
//! owner-only, a state file per active network so that a restarted process finds it
//! active, autostart once per boot, lookups, list filters, ports, events — and calls a
//! [`NetBackend`] for the host-side work, resolved by the network's forward mode
//! (`isolated` for a network without `<forward>`), passing networks and ports as libvirt
//! XML.
//!
//! Each network has an operation lock held across its backend calls and a snapshot that
//! queries clone without waiting, as storage pools do.

pub mod plugin;
#[cfg(test)]
mod tests;

use crate::snapshot::Snapshot;
use crate::{Error, Result};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use rvirt_xml::{FormatOptions, bandwidth::Bandwidth, network::Network, tree::Element};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where a guest interface was plugged ([`NetBackend::plug_port`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortPlug {
    /// `network`, `bridge`, `direct` or `hostdev-pci`.
    pub plug_type: String,
    /// The bridge joined, or empty.
    pub bridge: String,
    /// A host device the backend made, or empty.
    pub tap: String,
    /// The MTU to use; 0 for the default.
    pub mtu: u32,
    /// The port document as the backend completed it, or empty.
    pub port_xml: String,
}

/// One DHCP lease (`virNetworkDHCPLease`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    /// The network's interface.
    pub iface: String,
    /// Seconds since the epoch; 0 for never.
    pub expiry_time: i64,
    /// 0 IPv4, 1 IPv6.
    pub ip_type: i32,
    /// MAC address.
    pub mac: String,
    /// IAID (IPv6).
    pub iaid: String,
    /// Address.
    pub ipaddr: String,
    /// Prefix length.
    pub prefix: u32,
    /// Host name.
    pub hostname: String,
    /// Client id.
    pub clientid: String,
}

/// The host-side work for networks of one forward mode. Networks and ports cross as
/// libvirt XML; the backend keeps nothing the host relies on. Methods a backend lacks
/// answer no-support.
#[allow(missing_docs)]
pub trait NetBackend: Send + Sync {
    /// Makes the network exist; answers live additions (a `<network>` document) or "".
    fn start_network(&self, net: &str, state_dir: &str) -> Result<String>;
    fn stop_network(&self, net: &str, state_dir: &str) -> Result<()>;
    /// Whether a network the host believes active still runs.
    fn check_network(&self, net: &str, state_dir: &str) -> Result<bool>;
    fn plug_port(&self, net: &str, port: &str) -> Result<PortPlug>;
    fn unplug_port(&self, net: &str, port: &str) -> Result<()>;
    fn dhcp_leases(&self, net: &str, mac: &str) -> Result<Vec<Lease>>;
    fn update(
        &self,
        net: &str,
        command: u32,
        section: u32,
        parent_index: i32,
        xml: &str,
        flags: u32,
    ) -> Result<()>;
}

/// Finds the backend serving a forward mode (the plugin registry, or a test's table).
pub trait NetBackendResolver: Send + Sync {
    /// The backend for `mode`, or a clear error naming it.
    fn backend(&self, mode: &str) -> Result<Arc<dyn NetBackend>>;
}

/// `VIR_NETWORK_EVENT_*` lifecycle events.
pub mod net_event {
    /// Defined.
    pub const DEFINED: i32 = 0;
    /// Undefined.
    pub const UNDEFINED: i32 = 1;
    /// Started.
    pub const STARTED: i32 = 2;
    /// Stopped.
    pub const STOPPED: i32 = 3;
}

/// `VIR_CONNECT_LIST_NETWORKS_*` filters.
pub mod list_flags {
    /// Inactive networks.
    pub const INACTIVE: u32 = 1;
    /// Active networks.
    pub const ACTIVE: u32 = 2;
    /// Persistent networks.
    pub const PERSISTENT: u32 = 4;
    /// Transient networks.
    pub const TRANSIENT: u32 = 8;
    /// Autostarting networks.
    pub const AUTOSTART: u32 = 16;
    /// Networks that do not autostart.
    pub const NO_AUTOSTART: u32 = 32;
    /// Every bit above.
    pub const ALL: u32 = 63;
}

/// `VIR_NETWORK_XML_INACTIVE`.
pub const XML_INACTIVE: u32 = 1;

/// `virNetworkUpdate` commands and flags.
pub mod update {
    /// `VIR_NETWORK_UPDATE_COMMAND_MODIFY`.
    pub const MODIFY: u32 = 1;
    /// `VIR_NETWORK_UPDATE_COMMAND_DELETE`.
    pub const DELETE: u32 = 2;
    /// `VIR_NETWORK_UPDATE_COMMAND_ADD_LAST`.
    pub const ADD_LAST: u32 = 3;
    /// `VIR_NETWORK_UPDATE_COMMAND_ADD_FIRST`.
    pub const ADD_FIRST: u32 = 4;
    /// `VIR_NETWORK_SECTION_IP_DHCP_HOST`.
    pub const SECTION_IP_DHCP_HOST: u32 = 4;
    /// `VIR_NETWORK_SECTION_IP_DHCP_RANGE`.
    pub const SECTION_IP_DHCP_RANGE: u32 = 5;
    /// `VIR_NETWORK_SECTION_FORWARD_INTERFACE`.
    pub const SECTION_FORWARD_INTERFACE: u32 = 7;
    /// `VIR_NETWORK_SECTION_PORTGROUP`.
    pub const SECTION_PORTGROUP: u32 = 9;
    /// `VIR_NETWORK_SECTION_DNS_HOST`.
    pub const SECTION_DNS_HOST: u32 = 10;
    /// `VIR_NETWORK_SECTION_DNS_TXT`.
    pub const SECTION_DNS_TXT: u32 = 11;
    /// `VIR_NETWORK_SECTION_DNS_SRV`.
    pub const SECTION_DNS_SRV: u32 = 12;
    /// `VIR_NETWORK_UPDATE_AFFECT_LIVE`.
    pub const AFFECT_LIVE: u32 = 1;
    /// `VIR_NETWORK_UPDATE_AFFECT_CONFIG`.
    pub const AFFECT_CONFIG: u32 = 2;
}

/// A network event: its name and UUID and a [`net_event`] number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEvent {
    /// The network's name.
    pub name: String,
    /// Its UUID.
    pub uuid: uuid::Uuid,
    /// A [`net_event`] number.
    pub event: i32,
}

/// A subscriber to network events; runs after the network's lock is released.
pub type NetworkEventCallback = Arc<dyn Fn(&NetworkEvent) + Send + Sync>;

/// Where a network root keeps its files; `None` keeps everything in memory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkDirs {
    /// Persistent definitions (`NAME.xml`) and `autostart/`.
    pub config: PathBuf,
    /// Active networks' state files (`NAME.xml`), their ports (`NAME.ports/UUID.xml`) and
    /// the backends' run directories (`NAME.run/`), volatile.
    pub state: PathBuf,
}

/// A handle on a network, as the wire's `remote_nonnull_network`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkId {
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: uuid::Uuid,
}

/// A handle on a network port, as `remote_nonnull_network_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortId {
    /// The network.
    pub net: NetworkId,
    /// The port's UUID.
    pub uuid: uuid::Uuid,
}

#[derive(Clone)]
struct Port {
    xml: String,
}

#[derive(Clone)]
struct Live {
    /// The running definition, with what the backend added.
    def: Network,
    ports: BTreeMap<uuid::Uuid, Port>,
}

#[derive(Clone)]
struct NetObj {
    def: Network,
    new_def: Option<Network>,
    persistent: bool,
    autostart: bool,
    live: Option<Live>,
    /// Ports of guests that were plugged when the network stopped (their guests still
    /// run): kept, with their files, and plugged again when the network starts.
    dormant: BTreeMap<uuid::Uuid, Port>,
}

/// One network: its snapshot and operation lock.
type Slot = Arc<Snapshot<NetObj>>;

fn new_slot(o: NetObj) -> Slot {
    Arc::new(Snapshot::new(o))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `VIR_ERR_NETWORK_EXIST`.
const NETWORK_EXIST: i32 = 89;
/// `VIR_ERR_NO_NETWORK_PORT`.
const NO_NETWORK_PORT: i32 = 107;
/// `VIR_ERR_NETWORK_PORT_EXIST`.
const NETWORK_PORT_EXIST: i32 = 106;

fn net_err(code: i32, message: impl Into<String>) -> Error {
    Error::Driver {
        code,
        domain: ErrorDomain::Network as i32,
        message: message.into(),
    }
}

fn no_net(what: &str) -> Error {
    net_err(
        ErrorCode::NoNetwork as i32,
        format!("network not found: {what}"),
    )
}

fn invalid(why: String) -> Error {
    net_err(
        ErrorCode::OperationInvalid as i32,
        format!("requested operation is not valid: {why}"),
    )
}

fn xml_err(what: &str, e: impl std::fmt::Display) -> Error {
    net_err(
        ErrorCode::XmlError as i32,
        format!("invalid {what} XML: {e}"),
    )
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    net_err(
        ErrorCode::SystemError as i32,
        format!("cannot {what} '{}': {e}", path.display()),
    )
}

fn fmt_opts(inactive: bool) -> FormatOptions {
    FormatOptions {
        inactive,
        secure: true,
    }
}

fn to_xml(def: &Network) -> String {
    def.to_xml(&fmt_opts(false))
}

/// Network names become file names: no separators, no dot-dot, nothing empty.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Err(net_err(
            ErrorCode::XmlError as i32,
            format!(
                "invalid network name '{name}': network/name must not be empty, '.', '..' or contain '/'"
            ),
        ));
    }
    Ok(())
}

/// The forward mode a network's backend is resolved by: `<forward mode>` (`nat` when the
/// element has no mode), [`rvirt_plugin_api::ISOLATED_MODE`] without `<forward>`.
pub fn backend_mode(def: &Network) -> &str {
    def.forward_mode()
        .unwrap_or(rvirt_plugin_api::ISOLATED_MODE)
}

/// Whether networks of this mode get a host bridge named by the host when they have
/// none (libvirt names them `virbrN` at define time).
fn uses_host_bridge(def: &Network) -> bool {
    matches!(backend_mode(def), "nat" | "route" | "open" | "isolated")
}

/// The subnets of a network's `<ip>` elements.
fn subnets(def: &Network) -> Vec<(IpAddr, u32)> {
    def.ips()
        .into_iter()
        .filter_map(|(_, addr, prefix)| {
            let addr: IpAddr = addr?.parse().ok()?;
            let bits = match prefix {
                None => match addr {
                    IpAddr::V4(a) => match a.octets()[0] {
                        0..=127 => 8,
                        128..=191 => 16,
                        _ => 24,
                    },
                    IpAddr::V6(_) => 64,
                },
                Some(p) => match p.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => match p.parse::<std::net::Ipv4Addr>() {
                        Ok(mask) => u32::from(mask).count_ones(),
                        Err(_) => return None,
                    },
                },
            };
            Some((addr, bits))
        })
        .collect()
}

fn masked(a: IpAddr, bits: u32) -> u128 {
    match a {
        IpAddr::V4(v) => {
            let x = u32::from(v);
            let m = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits.min(32))
            };
            u128::from(x & m)
        }
        IpAddr::V6(v) => {
            let x = u128::from(v);
            let m = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits.min(128))
            };
            x & m
        }
    }
}

/// Whether two subnets share addresses.
fn overlap(a: (IpAddr, u32), b: (IpAddr, u32)) -> bool {
    if a.0.is_ipv4() != b.0.is_ipv4() {
        return false;
    }
    let bits = a.1.min(b.1);
    masked(a.0, bits) == masked(b.0, bits)
}

/// A port document: `<networkport>` with a UUID (made when absent) and a MAC address.
fn parse_port(xml: &str) -> Result<(uuid::Uuid, Element)> {
    let mut root = Element::parse(xml).map_err(|e| xml_err("network port", e))?;
    if root.name() != "networkport" {
        return Err(xml_err(
            "network port",
            format!(
                "unexpected root element '{}', expected 'networkport'",
                root.name()
            ),
        ));
    }
    if root.child("mac").and_then(|m| m.attr("address")).is_none() {
        return Err(xml_err(
            "network port",
            "networkport/mac/@address: missing required attribute",
        ));
    }
    Bandwidth::of(&root, "networkport").map_err(|e| xml_err("network port", e))?;
    let uuid = match root.child("uuid").map(|u| u.text()) {
        Some(t) => uuid::Uuid::parse_str(t.trim())
            .map_err(|e| xml_err("network port", format!("networkport/uuid: {e}")))?,
        None => {
            let u = uuid::Uuid::new_v4();
            let e = Element::new("uuid").with_text(&u.to_string());
            root.nodes_mut()
                .insert(0, rvirt_xml::tree::Node::Element(e));
            u
        }
    };
    Ok((uuid, root))
}

/// Adds what a backend reported at start (a `<network>` document) to the definition:
/// each top-level element's attributes replace or join the definition's.
fn merge_live(def: &Network, additions: &str) -> Result<Network> {
    if additions.trim().is_empty() {
        return Ok(def.clone());
    }
    let add = Element::parse(additions).map_err(|e| xml_err("network backend's live", e))?;
    let mut root = def.element().clone();
    for child in add.elements() {
        if matches!(child.name(), "name" | "uuid") {
            continue;
        }
        match root.child_mut(child.name()) {
            Some(mine) => {
                for (k, v) in child.attrs() {
                    mine.set_attr(k, v);
                }
            }
            None => root.push(child.clone()),
        }
    }
    Network::from_element(root).map_err(|e| xml_err("network backend's live", e))
}

/// The pair filter of libvirt's list flags: neither bit, or the bit matching `x`.
fn pair(flags: u32, a: u32, b: u32, x: bool) -> bool {
    let (fa, fb) = (flags & a != 0, flags & b != 0);
    !(fa || fb) || (fa && x) || (fb && !x)
}

/// The networks of one root.
pub struct Networks {
    dirs: Option<NetworkDirs>,
    backends: Arc<dyn NetBackendResolver>,
    nets: Mutex<BTreeMap<String, Slot>>,
    subscribers: Mutex<Vec<(u64, NetworkEventCallback)>>,
    next_subscriber: Mutex<u64>,
}

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Networks")
            .field("dirs", &self.dirs)
            .finish_non_exhaustive()
    }
}

impl Networks {
    /// The networks of a root: loads the definitions and active-network states under
    /// `dirs`, reattaches the networks that were active (restarting those the backend no
    /// longer finds running, as libvirt does), and starts autostart networks once per
    /// boot. `None` keeps everything in memory.
    pub fn open(
        dirs: Option<NetworkDirs>,
        backends: Arc<dyn NetBackendResolver>,
    ) -> Result<Networks> {
        let nets = Networks {
            dirs,
            backends,
            nets: Mutex::default(),
            subscribers: Mutex::default(),
            next_subscriber: Mutex::new(0),
        };
        nets.load()?;
        Ok(nets)
    }

    fn load(&self) -> Result<()> {
        let Some(dirs) = &self.dirs else {
            return Ok(());
        };
        for d in [&dirs.config, &dirs.state, &dirs.config.join("autostart")] {
            std::fs::create_dir_all(d).map_err(|e| io_err("create directory", d, e))?;
        }
        let read_defs = |dir: &Path| -> Vec<Network> {
            let mut out = Vec::new();
            let Ok(rd) = std::fs::read_dir(dir) else {
                return out;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "xml") || !p.is_file() {
                    continue;
                }
                match std::fs::read_to_string(&p).map(|t| Network::parse(&t)) {
                    Ok(Ok(def)) if check_name(def.name()).is_ok() => out.push(def),
                    Ok(Ok(_)) => tracing::warn!("ignoring network definition {}", p.display()),
                    Ok(Err(e)) => {
                        tracing::warn!("ignoring network definition {}: {e}", p.display())
                    }
                    Err(e) => tracing::warn!("cannot read {}: {e}", p.display()),
                }
            }
            out
        };
        let mut map = BTreeMap::new();
        for def in read_defs(&dirs.config) {
            let autostart = dirs
                .config
                .join("autostart")
                .join(format!("{}.xml", def.name()))
                .exists();
            let dormant = self.read_ports(def.name());
            map.insert(
                def.name().to_string(),
                NetObj {
                    def,
                    new_def: None,
                    persistent: true,
                    autostart,
                    live: None,
                    dormant,
                },
            );
        }
        for live_def in read_defs(&dirs.state) {
            let name = live_def.name().to_string();
            let obj = map.entry(name.clone()).or_insert_with(|| NetObj {
                def: live_def.clone(),
                new_def: None,
                persistent: false,
                autostart: false,
                live: None,
                dormant: BTreeMap::new(),
            });
            obj.dormant.clear();
            let ports = self.read_ports(&name);
            let xml = to_xml(&live_def);
            let state_dir = self.run_dir(&name);
            // Without its backend (a plugin not installed now) the network is kept as the
            // state file says: nothing shows it stopped, and forgetting it would leave
            // its bridge and rules behind with nobody to stop them.
            let b = match self.backends.backend(backend_mode(&live_def)) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(
                        "network '{name}' was active; its backend is missing ({e}): kept active as its state file says"
                    );
                    if obj.persistent && obj.def.element() != live_def.element() {
                        obj.new_def = Some(obj.def.clone());
                    }
                    obj.def = live_def.clone();
                    obj.live = Some(Live {
                        def: live_def,
                        ports,
                    });
                    continue;
                }
            };
            let revived = (|| {
                if b.check_network(&xml, &state_dir)? {
                    return Ok(live_def.clone());
                }
                // Gone (a host reboot kept the state directory, someone removed the
                // bridge): libvirt starts it again.
                tracing::info!("network '{name}' was active and is not running: restarting it");
                let added = b.start_network(&xml, &state_dir)?;
                merge_live(&live_def, &added)
            })();
            match revived {
                Ok(def) => {
                    if obj.persistent && obj.def.element() != live_def.element() {
                        obj.new_def = Some(obj.def.clone());
                    }
                    obj.def = live_def;
                    obj.live = Some(Live { def, ports });
                }
                Err(e) => {
                    tracing::warn!("network '{name}' was active and cannot run again: {e}");
                    self.remove_state(&name);
                    if !obj.persistent {
                        map.remove(&name);
                    }
                }
            }
        }
        let marker = dirs.state.join("autostarted");
        let first = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
        {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                tracing::warn!(
                    "not autostarting networks: cannot create {}: {e}",
                    marker.display()
                );
                false
            }
        };
        let autostart: Vec<String> = map
            .iter()
            .filter(|(_, o)| first && o.autostart && o.live.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        *lock(&self.nets) = map.into_iter().map(|(n, o)| (n, new_slot(o))).collect();
        for name in autostart {
            if let Err(e) = self.create(&name) {
                tracing::warn!("cannot autostart network '{name}': {e}");
            }
        }
        Ok(())
    }

    // ---- files ----

    fn config_file(&self, name: &str) -> Option<PathBuf> {
        self.dirs
            .as_ref()
            .map(|d| d.config.join(format!("{name}.xml")))
    }

    fn state_file(&self, name: &str) -> Option<PathBuf> {
        self.dirs
            .as_ref()
            .map(|d| d.state.join(format!("{name}.xml")))
    }

    fn ports_dir(&self, name: &str) -> Option<PathBuf> {
        self.dirs
            .as_ref()
            .map(|d| d.state.join(format!("{name}.ports")))
    }

    fn autostart_link(&self, name: &str) -> Option<PathBuf> {
        self.dirs
            .as_ref()
            .map(|d| d.config.join("autostart").join(format!("{name}.xml")))
    }

    /// The directory a backend may keep the network's run files in ("" in memory).
    fn run_dir(&self, name: &str) -> String {
        self.dirs
            .as_ref()
            .map(|d| d.state.join(format!("{name}.run")).display().to_string())
            .unwrap_or_default()
    }

    fn make_run_dir(&self, name: &str) -> Result<()> {
        if let Some(d) = &self.dirs {
            let p = d.state.join(format!("{name}.run"));
            std::fs::create_dir_all(&p).map_err(|e| io_err("create directory", &p, e))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700));
        }
        Ok(())
    }

    fn read_ports(&self, name: &str) -> BTreeMap<uuid::Uuid, Port> {
        let mut out = BTreeMap::new();
        let Some(dir) = self.ports_dir(name) else {
            return out;
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return out;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            match parse_port(&text) {
                Ok((u, _)) => {
                    out.insert(u, Port { xml: text });
                }
                Err(e) => tracing::warn!("ignoring network port {}: {e}", p.display()),
            }
        }
        out
    }

    /// Removes the active network's state file only (its ports and run directory stay).
    fn remove_state_file(&self, name: &str) {
        if let Some(p) = self.state_file(name) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Removes everything the network keeps in the state directory.
    fn remove_state(&self, name: &str) {
        if let Some(p) = self.state_file(name) {
            let _ = std::fs::remove_file(p);
        }
        if let Some(p) = self.ports_dir(name) {
            let _ = std::fs::remove_dir_all(p);
        }
        if let Some(d) = &self.dirs {
            let _ = std::fs::remove_dir_all(d.state.join(format!("{name}.run")));
        }
    }

    fn write(&self, path: Option<PathBuf>, data: &str) -> Result<()> {
        match path {
            Some(p) => {
                crate::files::write_private(&p, data.as_bytes(), ErrorDomain::Network as i32)
            }
            None => Ok(()),
        }
    }

    // ---- events ----

    /// Subscribes to network events; returns the id for [`Networks::unsubscribe`].
    pub fn subscribe(&self, cb: NetworkEventCallback) -> u64 {
        let mut n = lock(&self.next_subscriber);
        *n += 1;
        lock(&self.subscribers).push((*n, cb));
        *n
    }

    /// Drops a subscription.
    pub fn unsubscribe(&self, id: u64) {
        lock(&self.subscribers).retain(|(i, _)| *i != id);
    }

    fn emit(&self, def: &Network, event: i32) {
        let ev = NetworkEvent {
            name: def.name().to_string(),
            uuid: def.uuid(),
            event,
        };
        let subs: Vec<NetworkEventCallback> = lock(&self.subscribers)
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        for cb in subs {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&ev))).is_err() {
                tracing::warn!("a network event callback panicked");
            }
        }
    }

    // ---- lookups ----

    fn slot(&self, name: &str) -> Result<Slot> {
        lock(&self.nets)
            .get(name)
            .cloned()
            .ok_or_else(|| no_net(&format!("no network with matching name '{name}'")))
    }

    fn slots(&self) -> Vec<Slot> {
        lock(&self.nets).values().cloned().collect()
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&NetObj) -> T) -> Result<T> {
        Ok(f(&self.slot(name)?.view()))
    }

    fn id(o: &NetObj) -> NetworkId {
        NetworkId {
            name: o.def.name().to_string(),
            uuid: o.def.uuid(),
        }
    }

    /// Every network matching `VIR_CONNECT_LIST_NETWORKS_*` flags (0: all).
    pub fn list(&self, flags: u32) -> Result<Vec<NetworkId>> {
        crate::files::check_flags(
            ErrorDomain::Network as i32,
            "virConnectListAllNetworks",
            flags,
            list_flags::ALL,
        )?;
        Ok(self
            .slots()
            .iter()
            .map(|s| s.view())
            .filter(|o| {
                pair(
                    flags,
                    list_flags::INACTIVE,
                    list_flags::ACTIVE,
                    o.live.is_none(),
                ) && pair(
                    flags,
                    list_flags::PERSISTENT,
                    list_flags::TRANSIENT,
                    o.persistent,
                ) && pair(
                    flags,
                    list_flags::AUTOSTART,
                    list_flags::NO_AUTOSTART,
                    o.autostart,
                )
            })
            .map(|o| Self::id(&o))
            .collect())
    }

    /// `virNetworkLookupByName`.
    pub fn lookup_by_name(&self, name: &str) -> Result<NetworkId> {
        self.with(name, Self::id)
    }

    /// `virNetworkLookupByUUID`.
    pub fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<NetworkId> {
        self.slots()
            .iter()
            .map(|s| Self::id(&s.view()))
            .find(|n| n.uuid == uuid)
            .ok_or_else(|| no_net(&format!("no network with matching uuid '{uuid}'")))
    }

    /// `virNetworkGetXMLDesc` (`VIR_NETWORK_XML_INACTIVE`: the definition that applies at
    /// the next start).
    pub fn xml(&self, name: &str, flags: u32) -> Result<String> {
        crate::files::check_flags(
            ErrorDomain::Network as i32,
            "virNetworkGetXMLDesc",
            flags,
            XML_INACTIVE,
        )?;
        let o = self.slot(name)?.view();
        if flags & XML_INACTIVE != 0 {
            return Ok(o.new_def.as_ref().unwrap_or(&o.def).to_xml(&fmt_opts(true)));
        }
        Ok(match &o.live {
            Some(l) => {
                let mut def = l.def.clone();
                def.set_connections(Some(l.ports.len() as u32).filter(|n| *n > 0));
                to_xml(&def)
            }
            None => to_xml(&o.def),
        })
    }

    /// `virNetworkGetBridgeName`.
    pub fn bridge_name(&self, name: &str) -> Result<String> {
        let o = self.slot(name)?.view();
        let def = o.live.as_ref().map_or(&o.def, |l| &l.def);
        def.bridge_name().map(str::to_string).ok_or_else(|| {
            net_err(
                ErrorCode::InternalError as i32,
                format!("internal error: network '{name}' does not have a bridge name."),
            )
        })
    }

    /// Whether the network is active.
    pub fn is_active(&self, name: &str) -> Result<bool> {
        self.with(name, |o| o.live.is_some())
    }

    /// Whether the network has a persistent definition.
    pub fn is_persistent(&self, name: &str) -> Result<bool> {
        self.with(name, |o| o.persistent)
    }

    /// Whether the network starts with the host.
    pub fn autostart(&self, name: &str) -> Result<bool> {
        self.with(name, |o| o.autostart)
    }

    // ---- definitions ----

    /// Parses a definition and checks it against the other networks (a name or UUID
    /// taken by another network is refused); names a bridge and a MAC for modes that use
    /// a host bridge, as libvirt does at define time.
    fn parse_new(&self, xml: &str) -> Result<Network> {
        let def = Network::parse(xml).map_err(|e| xml_err("network", e))?;
        check_name(def.name())?;
        let mut root = def.element().clone();
        if def.uuid().is_nil() {
            root.child_or_insert("uuid")
                .set_text(&uuid::Uuid::new_v4().to_string());
        }
        let others: Vec<Arc<NetObj>> = self.slots().iter().map(|s| s.view()).collect();
        if uses_host_bridge(&def) {
            let taken = |b: &str| {
                others.iter().any(|o| {
                    o.def.name() != def.name()
                        && (o.def.bridge_name() == Some(b)
                            || o.live.as_ref().and_then(|l| l.def.bridge_name()) == Some(b))
                })
            };
            let template = def.bridge_name().unwrap_or("virbr%d").to_string();
            if template.contains("%d") {
                let chosen = (0..4096)
                    .map(|n| template.replace("%d", &n.to_string()))
                    .find(|b| !taken(b))
                    .ok_or_else(|| {
                        net_err(
                            ErrorCode::InternalError as i32,
                            format!(
                                "internal error: bridge name template '{template}' is exhausted"
                            ),
                        )
                    })?;
                root.child_or_insert("bridge").set_attr("name", &chosen);
                if root.child("bridge").and_then(|b| b.attr("stp")).is_none() {
                    root.child_or_insert("bridge").set_attr("stp", "on");
                }
                if root.child("bridge").and_then(|b| b.attr("delay")).is_none() {
                    root.child_or_insert("bridge").set_attr("delay", "0");
                }
            } else if taken(&template) {
                return Err(net_err(
                    ErrorCode::InternalError as i32,
                    format!("internal error: bridge name '{template}' already in use."),
                ));
            }
            if def.mac().is_none() {
                let r = uuid::Uuid::new_v4();
                let b = r.as_bytes();
                let mac = format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2]);
                root.child_or_insert("mac").set_attr("address", &mac);
            }
        }
        let def = Network::from_element(root).map_err(|e| xml_err("network", e))?;
        for o in &others {
            let (name, uuid) = (o.def.name(), o.def.uuid());
            if name == def.name() && uuid != def.uuid() {
                return Err(net_err(
                    ErrorCode::OperationFailed as i32,
                    format!(
                        "operation failed: network '{name}' is already defined with uuid {uuid}"
                    ),
                ));
            }
            if uuid == def.uuid() && name != def.name() {
                return Err(net_err(
                    ErrorCode::OperationFailed as i32,
                    format!("operation failed: network '{name}' already exists with uuid {uuid}"),
                ));
            }
        }
        self.backends.backend(backend_mode(&def))?;
        Ok(def)
    }

    /// `virNetworkDefineXMLFlags` (`VIR_NETWORK_DEFINE_VALIDATE`: the checks always run).
    pub fn define(&self, xml: &str, flags: u32) -> Result<NetworkId> {
        crate::files::check_flags(
            ErrorDomain::Network as i32,
            "virNetworkDefineXMLFlags",
            flags,
            1,
        )?;
        let mut def = self.parse_new(xml)?;
        let name = def.name().to_string();
        let existing = lock(&self.nets).get(&name).cloned();
        // A redefinition keeps the bridge and MAC the host chose before.
        if let Some(s) = &existing {
            let old = s.view();
            def = keep_assigned(&def, &old.def, xml)?;
        }
        self.write(self.config_file(&name), &to_xml(&def))?;
        let id = NetworkId {
            name: name.clone(),
            uuid: def.uuid(),
        };
        match existing {
            Some(s) => {
                let mut o = s.edit();
                if o.live.is_some() {
                    o.new_def = Some(def.clone());
                } else {
                    o.def = def.clone();
                }
                o.persistent = true;
            }
            None => {
                lock(&self.nets).entry(name).or_insert_with(|| {
                    new_slot(NetObj {
                        def: def.clone(),
                        new_def: None,
                        persistent: true,
                        autostart: false,
                        live: None,
                        dormant: BTreeMap::new(),
                    })
                });
            }
        }
        self.emit(&def, net_event::DEFINED);
        Ok(id)
    }

    /// `virNetworkCreateXMLFlags`: a transient network, started.
    pub fn create_xml(&self, xml: &str, flags: u32) -> Result<NetworkId> {
        crate::files::check_flags(
            ErrorDomain::Network as i32,
            "virNetworkCreateXMLFlags",
            flags,
            1,
        )?;
        let def = self.parse_new(xml)?;
        let name = def.name().to_string();
        let slot = new_slot(NetObj {
            def: def.clone(),
            new_def: None,
            persistent: false,
            autostart: false,
            live: None,
            dormant: BTreeMap::new(),
        });
        {
            let mut nets = lock(&self.nets);
            if nets.contains_key(&name) {
                return Err(net_err(
                    NETWORK_EXIST,
                    format!("operation failed: network '{name}' already exists"),
                ));
            }
            nets.insert(name.clone(), slot.clone());
        }
        let mut o = slot.edit();
        if let Err(e) = self.start_locked(&mut o) {
            drop(o);
            lock(&self.nets).remove(&name);
            return Err(e);
        }
        let id = Self::id(&o);
        drop(o);
        self.emit(&def, net_event::STARTED);
        Ok(id)
    }

    /// `virNetworkUndefine`: an active network stays, transient, until destroyed (as
    /// libvirt's).
    pub fn undefine(&self, name: &str) -> Result<()> {
        let s = self.slot(name)?;
        let mut o = s.edit();
        if !o.persistent {
            return Err(invalid(format!("network '{name}' is not persistent")));
        }
        if let Some(p) = self.config_file(name) {
            std::fs::remove_file(&p).map_err(|e| io_err("remove", &p, e))?;
        }
        if let Some(l) = self.autostart_link(name) {
            let _ = std::fs::remove_file(l);
        }
        o.persistent = false;
        o.autostart = false;
        o.new_def = None;
        let active = o.live.is_some();
        if !active {
            // ports kept for a restart and the leases go with the definition
            o.dormant.clear();
            self.remove_state(name);
        }
        let def = o.def.clone();
        drop(o);
        if !active {
            lock(&self.nets).remove(name);
        }
        self.emit(&def, net_event::UNDEFINED);
        Ok(())
    }

    /// `virNetworkSetAutostart`.
    pub fn set_autostart(&self, name: &str, on: bool) -> Result<()> {
        let s = self.slot(name)?;
        let mut o = s.edit();
        if !o.persistent {
            return Err(invalid(format!(
                "cannot set autostart for transient network '{name}'"
            )));
        }
        if let (Some(link), Some(cfg)) = (self.autostart_link(name), self.config_file(name)) {
            let _ = std::fs::remove_file(&link);
            if on {
                std::os::unix::fs::symlink(&cfg, &link)
                    .map_err(|e| io_err("create link", &link, e))?;
            }
        }
        o.autostart = on;
        Ok(())
    }

    // ---- lifecycle ----

    fn start_locked(&self, o: &mut NetObj) -> Result<()> {
        let name = o.def.name().to_string();
        if o.live.is_some() {
            return Err(invalid(format!("network '{name}' is already active")));
        }
        // Overlapping subnets with another active network would route the same addresses
        // to two bridges.
        let mine = subnets(&o.def);
        for s in self.slots() {
            let other = s.view();
            let Some(l) = &other.live else { continue };
            if other.def.name() == name {
                continue;
            }
            for a in &mine {
                if let Some(b) = subnets(&l.def).into_iter().find(|b| overlap(*a, *b)) {
                    return Err(net_err(
                        ErrorCode::OperationInvalid as i32,
                        format!(
                            "requested operation is not valid: network '{name}' ({}/{}) overlaps active network '{}' ({}/{})",
                            a.0,
                            a.1,
                            other.def.name(),
                            b.0,
                            b.1
                        ),
                    ));
                }
            }
        }
        let b = self.backends.backend(backend_mode(&o.def))?;
        self.make_run_dir(&name)?;
        let xml = to_xml(&o.def);
        let state_dir = self.run_dir(&name);
        let added = b.start_network(&xml, &state_dir)?;
        let live = match merge_live(&o.def, &added).and_then(|def| {
            self.write(self.state_file(&name), &to_xml(&def))
                .map(|()| def)
        }) {
            Ok(def) => def,
            Err(e) => {
                let _ = b.stop_network(&xml, &state_dir);
                self.remove_state_file(&name);
                return Err(e);
            }
        };
        let live_xml = to_xml(&live);
        let mut ports = BTreeMap::new();
        for (uuid, port) in std::mem::take(&mut o.dormant) {
            let text = match Element::parse(&port.xml)
                .map_err(|e| xml_err("network port", e))
                .and_then(|p| {
                    let plug = b.plug_port(&live_xml, &port.xml)?;
                    Ok(plugged_text(p, &plug))
                }) {
                Ok(t) => {
                    tracing::info!("network '{name}': port {uuid} plugged again");
                    t
                }
                Err(e) => {
                    tracing::warn!("network '{name}': cannot plug port {uuid} again: {e}");
                    port.xml
                }
            };
            if let Err(e) = self.write(self.port_file(&name, uuid), &text) {
                tracing::warn!("network '{name}': {e}");
            }
            ports.insert(uuid, Port { xml: text });
        }
        o.live = Some(Live { def: live, ports });
        Ok(())
    }

    /// `virNetworkCreate`: starts a defined network.
    pub fn create(&self, name: &str) -> Result<()> {
        let s = self.slot(name)?;
        let mut o = s.edit();
        self.start_locked(&mut o)?;
        let def = o.def.clone();
        drop(o);
        self.emit(&def, net_event::STARTED);
        Ok(())
    }

    /// `virNetworkDestroy`: stops the network (ports plugged into it are dropped, as
    /// libvirt allows); a transient one is gone after.
    pub fn destroy(&self, name: &str) -> Result<()> {
        let s = self.slot(name)?;
        let mut o = s.edit();
        let Some(live) = o.live.clone() else {
            return Err(invalid(format!("network '{name}' is not active")));
        };
        let b = self.backends.backend(backend_mode(&live.def))?;
        b.stop_network(&to_xml(&live.def), &self.run_dir(name))?;
        if o.persistent {
            // guests still plugged keep their ports (and the run directory its leases)
            // until the network starts again or they stop
            self.remove_state_file(name);
            if !live.ports.is_empty() {
                tracing::warn!(
                    "network '{name}' stopped with {} port(s) in use: their guests are cut off until it starts again",
                    live.ports.len()
                );
            }
            o.dormant = live.ports;
        } else {
            self.remove_state(name);
        }
        o.live = None;
        if let Some(d) = o.new_def.take() {
            o.def = d;
        }
        let def = o.def.clone();
        let persistent = o.persistent;
        drop(o);
        if !persistent {
            lock(&self.nets).remove(name);
        }
        self.emit(&def, net_event::STOPPED);
        Ok(())
    }

    /// `virNetworkGetDHCPLeases`: the leases of an active network, of `mac` when given.
    pub fn dhcp_leases(&self, name: &str, mac: Option<&str>, flags: u32) -> Result<Vec<Lease>> {
        crate::files::check_flags(
            ErrorDomain::Network as i32,
            "virNetworkGetDHCPLeases",
            flags,
            0,
        )?;
        let o = self.slot(name)?.view();
        let Some(live) = &o.live else {
            return Err(invalid(format!("network '{name}' is not active")));
        };
        let b = self.backends.backend(backend_mode(&live.def))?;
        b.dhcp_leases(&to_xml(&live.def), mac.unwrap_or(""))
    }

    /// `virNetworkUpdate`: edits a section of the definition (the persistent one with
    /// `AFFECT_CONFIG`, the running one with `AFFECT_LIVE`, the current one with neither)
    /// and hands a live change to the backend. The sections served are `ip-dhcp-host` and
    /// `ip-dhcp-range`; others answer no-support.
    pub fn update(
        &self,
        name: &str,
        command: u32,
        section: u32,
        parent_index: i32,
        xml: &str,
        flags: u32,
    ) -> Result<()> {
        crate::files::check_flags(
            ErrorDomain::Network as i32,
            "virNetworkUpdate",
            flags,
            update::AFFECT_LIVE | update::AFFECT_CONFIG,
        )?;
        let s = self.slot(name)?;
        let mut o = s.edit();
        let (mut live, mut config) = (
            flags & update::AFFECT_LIVE != 0,
            flags & update::AFFECT_CONFIG != 0,
        );
        if !live && !config {
            if o.live.is_some() {
                live = true;
            } else {
                config = true;
            }
        }
        if live && o.live.is_none() {
            return Err(invalid(format!("network '{name}' is not active")));
        }
        if config && !o.persistent {
            return Err(invalid(format!(
                "cannot change persistent config of a transient network '{name}'"
            )));
        }
        if config {
            let base = o.new_def.clone().unwrap_or_else(|| o.def.clone());
            let new = apply_update(&base, command, section, parent_index, xml)?;
            self.write(self.config_file(name), &to_xml(&new))?;
            if o.live.is_some() {
                o.new_def = Some(new);
            } else {
                o.def = new;
            }
        }
        if live {
            let cur = o.live.clone().expect("checked above");
            let new = apply_update(&cur.def, command, section, parent_index, xml)?;
            let b = self.backends.backend(backend_mode(&new))?;
            b.update(&to_xml(&new), command, section, parent_index, xml, flags)?;
            self.write(self.state_file(name), &to_xml(&new))?;
            if let Some(l) = o.live.as_mut() {
                l.def = new;
            }
        }
        Ok(())
    }

    // ---- ports ----

    fn port_file(&self, name: &str, port: uuid::Uuid) -> Option<PathBuf> {
        self.ports_dir(name).map(|d| d.join(format!("{port}.xml")))
    }

    /// `virNetworkPortCreateXML`: plugs a port into an active network.
    pub fn port_create(&self, name: &str, xml: &str, flags: u32) -> Result<PortId> {
        // VIR_NETWORK_PORT_CREATE_RECLAIM (1), VIR_NETWORK_PORT_CREATE_VALIDATE (2)
        crate::files::check_flags(
            ErrorDomain::Network as i32,
            "virNetworkPortCreateXML",
            flags,
            1 | 2,
        )?;
        let (uuid, port) = parse_port(xml)?;
        let s = self.slot(name)?;
        let mut o = s.edit();
        let Some(live) = o.live.clone() else {
            return Err(invalid(format!("network '{name}' is not active")));
        };
        if live.ports.contains_key(&uuid) {
            return Err(net_err(
                NETWORK_PORT_EXIST,
                format!("network port already exists: with uuid '{uuid}'"),
            ));
        }
        let b = self.backends.backend(backend_mode(&live.def))?;
        let net_xml = to_xml(&live.def);
        let plug = b.plug_port(&net_xml, &port.to_xml_string())?;
        let text = plugged_text(port, &plug);
        if let Some(dir) = self.ports_dir(name)
            && let Err(e) = std::fs::create_dir_all(&dir)
                .map_err(|e| io_err("create directory", &dir, e))
                .and_then(|()| self.write(self.port_file(name, uuid), &text))
        {
            let _ = b.unplug_port(&net_xml, &text);
            return Err(e);
        }
        if let Some(l) = o.live.as_mut() {
            l.ports.insert(uuid, Port { xml: text });
        }
        Ok(PortId {
            net: Self::id(&o),
            uuid,
        })
    }

    fn port_of(&self, name: &str, port: uuid::Uuid) -> Result<(Arc<NetObj>, String)> {
        let o = self.slot(name)?.view();
        let xml = o
            .live
            .as_ref()
            .and_then(|l| l.ports.get(&port))
            .map(|p| p.xml.clone())
            .ok_or_else(|| {
                net_err(
                    NO_NETWORK_PORT,
                    format!("network port not found: no network port with matching uuid '{port}'"),
                )
            })?;
        Ok((o, xml))
    }

    /// `virNetworkPortLookupByUUID`.
    pub fn port_lookup(&self, name: &str, port: uuid::Uuid) -> Result<PortId> {
        let (o, _) = self.port_of(name, port)?;
        Ok(PortId {
            net: Self::id(&o),
            uuid: port,
        })
    }

    /// `virNetworkListAllPorts`.
    pub fn port_list(&self, name: &str, flags: u32) -> Result<Vec<PortId>> {
        crate::files::check_flags(
            ErrorDomain::Network as i32,
            "virNetworkListAllPorts",
            flags,
            0,
        )?;
        let o = self.slot(name)?.view();
        let Some(live) = &o.live else {
            return Err(invalid(format!("network '{name}' is not active")));
        };
        Ok(live
            .ports
            .keys()
            .map(|u| PortId {
                net: Self::id(&o),
                uuid: *u,
            })
            .collect())
    }

    /// `virNetworkPortGetXMLDesc`.
    pub fn port_xml(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<String> {
        crate::files::check_flags(
            ErrorDomain::Network as i32,
            "virNetworkPortGetXMLDesc",
            flags,
            0,
        )?;
        let (_, xml) = self.port_of(name, port)?;
        let e = Element::parse(&xml).map_err(|e| xml_err("network port", e))?;
        Ok(e.to_xml_string())
    }

    /// `virNetworkPortGetParameters`: the port's bandwidth as libvirt's seven typed
    /// parameters (`inbound.average`, ...), 0 where unset.
    pub fn port_parameters(
        &self,
        name: &str,
        port: uuid::Uuid,
        flags: u32,
    ) -> Result<Vec<(String, u64)>> {
        // VIR_TYPED_PARAM_STRING_OKAY (4): clients may say they take strings; none come
        crate::files::check_flags(
            ErrorDomain::Network as i32,
            "virNetworkPortGetParameters",
            flags,
            4,
        )?;
        let (_, xml) = self.port_of(name, port)?;
        let e = Element::parse(&xml).map_err(|e| xml_err("network port", e))?;
        let bw = Bandwidth::of(&e, "networkport")
            .map_err(|e| xml_err("network port", e))?
            .unwrap_or_default();
        Ok(rvirt_xml::bandwidth::PARAMS
            .iter()
            .map(|p| (p.to_string(), bw.get(p).unwrap_or(0)))
            .collect())
    }

    /// `virNetworkPortSetParameters`: changes the port's bandwidth (the parameters given;
    /// 0 clears one) and has the backend apply it by plugging the port again; the port
    /// is unchanged when the backend refuses.
    pub fn port_set_parameters(
        &self,
        name: &str,
        port: uuid::Uuid,
        params: &[(String, u64)],
        flags: u32,
    ) -> Result<()> {
        crate::files::check_flags(
            ErrorDomain::Network as i32,
            "virNetworkPortSetParameters",
            flags,
            0,
        )?;
        let s = self.slot(name)?;
        let mut o = s.edit();
        let (_, xml) = self.port_of(name, port)?;
        let mut e = Element::parse(&xml).map_err(|e| xml_err("network port", e))?;
        let mut bw = Bandwidth::of(&e, "networkport")
            .map_err(|e| xml_err("network port", e))?
            .unwrap_or_default();
        let bad = |e: rvirt_xml::XmlError| {
            net_err(
                ErrorCode::InvalidArg as i32,
                format!("invalid argument: network port {port}: {e}"),
            )
        };
        for (k, v) in params {
            bw.set(k, *v).map_err(bad)?;
        }
        bw.validate("networkport/bandwidth").map_err(bad)?;
        bw.store_in(&mut e);
        let live = o.live.clone().expect("a port means an active network");
        let b = self.backends.backend(backend_mode(&live.def))?;
        let net_xml = to_xml(&live.def);
        let plug = match b.plug_port(&net_xml, &e.to_xml_string()) {
            Ok(p) => p,
            Err(err) => {
                // the device may be left without limits: plug the port as it was
                if let Err(e) = b.plug_port(&net_xml, &xml) {
                    tracing::warn!("network '{name}': port {port}: cannot restore its limits: {e}");
                }
                return Err(err);
            }
        };
        let text = plugged_text(e, &plug);
        self.write(self.port_file(name, port), &text)?;
        if let Some(l) = o.live.as_mut() {
            l.ports.insert(port, Port { xml: text });
        }
        Ok(())
    }

    /// `virNetworkPortDelete`: unplugs the port.
    pub fn port_delete(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<()> {
        crate::files::check_flags(
            ErrorDomain::Network as i32,
            "virNetworkPortDelete",
            flags,
            0,
        )?;
        let s = self.slot(name)?;
        let mut o = s.edit();
        if o.live.is_none() && o.dormant.remove(&port).is_some() {
            // its network is stopped: nothing is plugged, only the record goes
            if let Some(p) = self.port_file(name, port) {
                let _ = std::fs::remove_file(p);
            }
            return Ok(());
        }
        let (_, xml) = self.port_of(name, port)?;
        let live = o.live.clone().expect("a port means an active network");
        let b = self.backends.backend(backend_mode(&live.def))?;
        b.unplug_port(&to_xml(&live.def), &xml)?;
        if let Some(p) = self.port_file(name, port) {
            let _ = std::fs::remove_file(p);
        }
        if let Some(l) = o.live.as_mut() {
            l.ports.remove(&port);
        }
        Ok(())
    }
}

/// The port's text once plugged: the backend's own text, or the port completed with
/// `<plug type bridge>` from what the backend answered.
fn plugged_text(mut port: Element, plug: &PortPlug) -> String {
    if !plug.port_xml.trim().is_empty() {
        return plug.port_xml.clone();
    }
    if !plug.plug_type.is_empty() {
        port.remove_children(|c| c.name() == "plug");
        let mut p = Element::new("plug").with_attr("type", &plug.plug_type);
        if !plug.bridge.is_empty() {
            p.set_attr("bridge", &plug.bridge);
        }
        port.push(p);
    }
    port.to_xml_string()
}

/// A redefinition keeps the bridge name and MAC the host chose for the old definition
/// when the new text names none.
fn keep_assigned(new: &Network, old: &Network, text: &str) -> Result<Network> {
    let given = Network::parse(text).map_err(|e| xml_err("network", e))?;
    let mut root = new.element().clone();
    if given.bridge_name().is_none()
        && let Some(b) = old.bridge_name()
    {
        root.child_or_insert("bridge").set_attr("name", b);
    }
    if given.mac().is_none()
        && let Some(m) = old.mac()
    {
        root.child_or_insert("mac").set_attr("address", m);
    }
    Network::from_element(root).map_err(|e| xml_err("network", e))
}

/// What a `virNetworkUpdate` section edits: the element expected, its container, and
/// how an entry matches the one sent.
struct Section {
    /// The element the client sends (`host`, `range`, `txt`, ...).
    item: &'static str,
    /// Words for messages (`dhcp host`, `dns txt`).
    what: &'static str,
}

fn section(section: u32) -> Result<Section> {
    let (item, what) = match section {
        update::SECTION_IP_DHCP_HOST => ("host", "dhcp host"),
        update::SECTION_IP_DHCP_RANGE => ("range", "dhcp range"),
        update::SECTION_FORWARD_INTERFACE => ("interface", "forward interface"),
        update::SECTION_PORTGROUP => ("portgroup", "portgroup"),
        update::SECTION_DNS_HOST => ("host", "dns host"),
        update::SECTION_DNS_TXT => ("txt", "dns txt"),
        update::SECTION_DNS_SRV => ("srv", "dns srv"),
        _ => {
            return Err(net_err(
                ErrorCode::NoSupport as i32,
                format!(
                    "this function is not supported by the connection driver: virNetworkUpdate (section {section})"
                ),
            ));
        }
    };
    Ok(Section { item, what })
}

/// Whether existing entry `e` is the one `item` names, per section (libvirt's rules:
/// a DHCP host by MAC, id, name or IP; a range by its bounds; a DNS host by IP or any of
/// its names; TXT by name; SRV by service and protocol, and domain and target when
/// given; a port group by name; a forward interface by device).
fn same_entry(section: u32, e: &Element, item: &Element) -> bool {
    let same = |k: &str| item.attr(k).is_some() && e.attr(k) == item.attr(k);
    match section {
        update::SECTION_IP_DHCP_RANGE => {
            e.attr("start") == item.attr("start") && e.attr("end") == item.attr("end")
        }
        update::SECTION_IP_DHCP_HOST => {
            same("mac") || same("id") || (item.attr("mac").is_none() && same("name")) || same("ip")
        }
        update::SECTION_DNS_HOST => {
            let names = |x: &Element| -> Vec<String> {
                x.children_named("hostname")
                    .map(|h| h.text().trim().to_string())
                    .collect()
            };
            let mine = names(item);
            same("ip") || names(e).iter().any(|n| mine.contains(n))
        }
        update::SECTION_DNS_TXT | update::SECTION_PORTGROUP => same("name"),
        update::SECTION_DNS_SRV => {
            let opt = |k: &str| item.attr(k).is_none() || e.attr(k) == item.attr(k);
            same("service") && same("protocol") && opt("domain") && opt("target")
        }
        update::SECTION_FORWARD_INTERFACE => same("dev"),
        _ => false,
    }
}

/// The element a section's entries live in: an `<ip>`'s `<dhcp>` (the `parent_index`th
/// `<ip>`, or with -1 the first IPv4 one), `<dns>`, `<forward>` or the network itself.
fn container(root: &mut Element, section: u32, parent_index: i32) -> Result<&mut Element> {
    match section {
        update::SECTION_IP_DHCP_HOST | update::SECTION_IP_DHCP_RANGE => {
            let ips: Vec<usize> = root
                .nodes()
                .iter()
                .enumerate()
                .filter_map(|(i, n)| match n {
                    rvirt_xml::tree::Node::Element(e) if e.name() == "ip" => Some(i),
                    _ => None,
                })
                .collect();
            let pick = if parent_index >= 0 {
                ips.get(parent_index as usize).copied()
            } else {
                ips.iter().copied().find(|i| match &root.nodes()[*i] {
                    rvirt_xml::tree::Node::Element(e) => {
                        e.attr("family").is_none_or(|f| f == "ipv4")
                            && !e.attr("address").is_some_and(|a| a.contains(':'))
                    }
                    _ => false,
                })
            };
            let Some(ip_index) = pick else {
                return Err(net_err(
                    ErrorCode::OperationInvalid as i32,
                    "requested operation is not valid: couldn't locate a matching <ip> element in network",
                ));
            };
            let rvirt_xml::tree::Node::Element(ip) = &mut root.nodes_mut()[ip_index] else {
                unreachable!("indexes of elements")
            };
            Ok(ip.child_or_insert("dhcp"))
        }
        update::SECTION_DNS_HOST | update::SECTION_DNS_TXT | update::SECTION_DNS_SRV => {
            Ok(root.child_or_insert("dns"))
        }
        update::SECTION_FORWARD_INTERFACE => {
            if root.child("forward").is_none() {
                return Err(net_err(
                    ErrorCode::OperationInvalid as i32,
                    "requested operation is not valid: can't add or delete a forward interface of a network without <forward>",
                ));
            }
            Ok(root.child_or_insert("forward"))
        }
        _ => Ok(root),
    }
}

/// Applies one `virNetworkUpdate` edit to a definition; the result is validated as a
/// whole network.
fn apply_update(
    def: &Network,
    command: u32,
    section_id: u32,
    parent_index: i32,
    xml: &str,
) -> Result<Network> {
    let sec = section(section_id)?;
    let item = Element::parse(xml).map_err(|e| xml_err("network update", e))?;
    if item.name() != sec.item {
        return Err(net_err(
            ErrorCode::XmlError as i32,
            format!(
                "invalid network update XML: unexpected element '{}', expecting '{}'",
                item.name(),
                sec.item
            ),
        ));
    }
    let what = sec.what;
    let mut root = def.element().clone();
    let parent = container(&mut root, section_id, parent_index)?;
    let matches = |e: &Element| e.name() == sec.item && same_entry(section_id, e, &item);
    let found = parent.elements().position(matches);
    let node = rvirt_xml::tree::Node::Element(item.clone());
    match command {
        update::ADD_FIRST | update::ADD_LAST => {
            if found.is_some() {
                return Err(net_err(
                    ErrorCode::OperationInvalid as i32,
                    format!(
                        "requested operation is not valid: there is an existing {what} entry in network that matches \"{xml}\""
                    ),
                ));
            }
            let first_of_kind = parent.nodes().iter().position(
                |n| matches!(n, rvirt_xml::tree::Node::Element(e) if e.name() == sec.item),
            );
            if command == update::ADD_FIRST
                && let Some(at) = first_of_kind
            {
                parent.nodes_mut().insert(at, node);
            } else if command == update::ADD_FIRST {
                parent.nodes_mut().insert(0, node);
            } else {
                parent.push(item.clone());
            }
        }
        update::DELETE | update::MODIFY => {
            if found.is_none() {
                return Err(net_err(
                    ErrorCode::OperationInvalid as i32,
                    format!(
                        "requested operation is not valid: couldn't locate a matching {what} entry in network"
                    ),
                ));
            }
            let mut done = false;
            let nodes = std::mem::take(parent.nodes_mut());
            for n in nodes {
                match &n {
                    rvirt_xml::tree::Node::Element(e) if !done && matches(e) => {
                        done = true;
                        if command == update::MODIFY {
                            parent.nodes_mut().push(node.clone());
                        }
                    }
                    _ => parent.nodes_mut().push(n),
                }
            }
        }
        c => {
            return Err(net_err(
                ErrorCode::NoSupport as i32,
                format!(
                    "this function is not supported by the connection driver: virNetworkUpdate (command {c})"
                ),
            ));
        }
    }
    Network::from_element(root).map_err(|e| xml_err("network", e))
}

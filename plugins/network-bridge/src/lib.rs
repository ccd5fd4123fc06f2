//! The `bridge` network backend: a virtual network is a Linux bridge with the network's
//! addresses, a dnsmasq serving DHCP and DNS on it, and one nftables table for its
//! forwarding rules.
//!
//! A plain library over [`rvirt_xml::Network`]: the network plugin adapter parses the XML
//! a client sends, calls these functions and reports what they return. Every error
//! carries libvirt's error number ([`Error::code`]).
//!
//! **What it owns.** Links, addresses and bridges go through rtnetlink ([`netlink`]),
//! never through `ip`. The firewall is the table `inet rvirt_NAME` and nothing else
//! ([`nft::table_name`]): it is loaded in one `nft -f -` batch that replaces any stale
//! copy, and removed by deleting the table in one batch. Every file (dnsmasq's
//! configuration, pid, leases, host files, and `NAME.state`, the record of what `start`
//! created) lives in the state directory the caller gives.
//!
//! **Rollback.** `start` records each step as it completes; when a later step fails it
//! undoes the earlier ones in reverse order (dnsmasq, table, bridge), so a failed start
//! leaves nothing behind. `stop` undoes what `NAME.state` lists, carrying on past a
//! failing step and reporting the first failure.
//!
//! **Ports.** The hypervisor makes each guest's TAP; [`port_device`] finds it by the
//! host-side MAC rule and puts it back on the bridge when the network was started anew
//! under a running guest (libvirt leaves that to a daemon restart), and the plugin applies
//! the port's `<bandwidth>` to it (`rvirt_netdev::bandwidth`).
//!
//! **Where it differs from libvirt**: there is no `virbrN-nic` dummy device (the bridge
//! gets its `<mac>` directly); `stop` also deletes the TAP devices [`plug`] created that are
//! still present; IPv6 leases carry no MAC (dnsmasq does not record it); per-host
//! `<dhcp><host>` options beyond mac/id/name/ip/lease are not passed to dnsmasq yet;
//! forward modes `private`, `vepa`, `passthrough` and `hostdev` are refused. Live updates:
//! DHCP hosts and DNS hosts reload dnsmasq, DHCP ranges and DNS TXT/SRV records restart
//! it (leases kept), port groups need nothing; forward interfaces change only the
//! persistent definition.

pub mod config;
pub mod dnsmasq;
mod error;
pub mod leases;
pub mod netlink;
pub mod nft;
pub mod plugin;
pub mod state;

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

pub use config::{Mode, Plan};
pub use error::{Error, Result, code};
pub use leases::Lease;

use config::{check_ifname, format_mac, parse_mac};
use error::object;
use netlink::{BridgeSpec, Netlink};
use rvirt_xml::Network;
use state::{Files, State};

rvirt_sdk::export_plugin! {
    manifest: rvirt_sdk::PluginInfo {
        name: "network-bridge",
        kind: "network",
        schemes: &[],
        version: env!("CARGO_PKG_VERSION"),
        description: "virtual networks on Linux bridges: nat, route, open, isolated and host bridges (netlink, dnsmasq, nftables)",
    },
    network: { forward_modes: plugin::FORWARD_MODES, open: plugin::open },
}

/// What [`start`] set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The bridge (created, or the host's for forward mode `bridge`).
    pub bridge: String,
    /// dnsmasq's pid, when it runs.
    pub dnsmasq_pid: Option<u32>,
    /// The nftables table (`inet rvirt_NAME`), when rules were loaded.
    pub table: Option<String>,
    /// Whether IP forwarding was switched on (nat and route modes; never switched off).
    pub ip_forward: bool,
}

/// A guest interface to plug into the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSpec {
    /// The guest's MAC address; the TAP device gets it with the first byte `fe`, so the
    /// bridge never takes the guest's address as its own.
    pub mac: Option<String>,
    /// The TAP name wanted (`<target dev>`); `vnet%d` (first free) when none. A name
    /// holding `%d` is a template.
    pub ifname: Option<String>,
}

/// A plugged TAP device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugged {
    /// The TAP device's name.
    pub tap: String,
    /// The bridge it is a port of.
    pub bridge: String,
}

fn nl_err(net: &str, action: String) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Netlink {
        object: object(net),
        action,
        source,
    }
}

fn open_netlink(net: &str) -> Result<Netlink> {
    Netlink::open().map_err(nl_err(net, "open a netlink socket".into()))
}

/// The first free name from `template` (`virbr%d`), among `taken`.
fn pick_name(template: &str, taken: &[String]) -> Option<String> {
    (0..4096)
        .map(|i| template.replacen("%d", &i.to_string(), 1))
        .find(|n| n.len() <= config::IFNAME_MAX && !taken.iter().any(|t| t == n))
}

/// The steps of a start, undone in reverse when a later one fails.
enum Undo {
    Bridge(String),
    Table(String),
    Dnsmasq,
}

fn rollback(net: &str, files: &Files, nl: &mut Netlink, done: Vec<Undo>) {
    for step in done.into_iter().rev() {
        let _ = match step {
            Undo::Dnsmasq => dnsmasq::kill(net, files),
            Undo::Table(t) => nft::remove(net, &t),
            Undo::Bridge(b) => delete_link(net, nl, &b),
        };
    }
    remove_files(files);
}

fn remove_files(files: &Files) {
    for p in [
        &files.state,
        &files.conf,
        &files.pid,
        &files.hostsfile,
        &files.addnhosts,
    ] {
        let _ = std::fs::remove_file(p);
    }
}

fn enable_forwarding(net: &str, plan: &Plan) -> Result<bool> {
    if !matches!(plan.mode, Mode::Nat | Mode::Route) {
        return Ok(false);
    }
    let mut paths = Vec::new();
    if plan.ips.iter().any(|i| i.addr.is_ipv4()) {
        paths.push("/proc/sys/net/ipv4/ip_forward");
    }
    if plan.ips.iter().any(|i| i.addr.is_ipv6()) {
        paths.push("/proc/sys/net/ipv6/conf/all/forwarding");
    }
    for p in &paths {
        std::fs::write(p, "1\n").map_err(|e| Error::Io {
            object: object(net),
            action: "enable forwarding in",
            path: p.into(),
            source: e,
        })?;
    }
    Ok(!paths.is_empty())
}

/// Starts the network: creates the bridge with its addresses, loads the firewall table,
/// starts dnsmasq. Forward mode `bridge` only checks the host bridge exists.
pub fn start(net: &Network, state_dir: &Path) -> Result<Started> {
    let plan = Plan::from_network(net)?;
    let name = plan.name.as_str();
    std::fs::create_dir_all(state_dir).map_err(|e| Error::Io {
        object: object(name),
        action: "create",
        path: state_dir.to_path_buf(),
        source: e,
    })?;
    let files = Files::new(state_dir, name);
    if State::load(name, &files)?.is_some() {
        if is_running(net, state_dir)? {
            return Err(Error::OperationInvalid {
                object: object(name),
                reason: "network is already active".into(),
            });
        }
        // leftovers of a process that died: clear them first
        let _ = stop(net, state_dir);
    }
    let mut nl = open_netlink(name)?;
    if plan.mode == Mode::Bridge {
        let br = plan.bridge.clone().unwrap_or_default();
        let link = nl
            .link(&br)
            .map_err(nl_err(name, format!("look up bridge '{br}'")))?;
        if link.as_ref().and_then(|l| l.kind.as_deref()) != Some("bridge") {
            return Err(Error::OperationInvalid {
                object: object(name),
                reason: format!("host bridge '{br}' does not exist"),
            });
        }
        State {
            bridge: br.clone(),
            ..State::default()
        }
        .save(name, &files)?;
        return Ok(Started {
            bridge: br,
            dnsmasq_pid: None,
            table: None,
            ip_forward: false,
        });
    }
    let spec = BridgeSpec {
        mac: plan.mac,
        mtu: plan.mtu,
        stp: plan.stp,
        delay: plan.delay,
    };
    let bridge = create_bridge(name, &mut nl, plan.bridge.as_deref(), &spec)?;
    let mut st = State {
        bridge: bridge.clone(),
        created_bridge: true,
        ..State::default()
    };
    let mut done = vec![Undo::Bridge(bridge.clone())];
    let r = (|| -> Result<Started> {
        let idx = nl
            .link(&bridge)
            .map_err(nl_err(name, format!("look up bridge '{bridge}'")))?
            .ok_or_else(|| Error::Netlink {
                object: object(name),
                action: format!("find bridge '{bridge}' after creating it"),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })?
            .index;
        st.save(name, &files)?;
        for ip in &plan.ips {
            nl.add_addr(idx, ip.addr, ip.prefix).map_err(nl_err(
                name,
                format!("add address {}/{} to bridge '{bridge}'", ip.addr, ip.prefix),
            ))?;
        }
        nl.set_link(idx, Some(true), None, None, None)
            .map_err(nl_err(name, format!("set bridge '{bridge}' up")))?;
        let ip_forward = enable_forwarding(name, &plan)?;
        // the table is loaded in a thread while dnsmasq starts: neither needs the other
        let rules = nft::ruleset(&plan, &bridge);
        let table = rules.as_ref().map(|_| nft::table_name(name));
        if let Some(t) = &table {
            // recorded first, so a stop after a crash removes it (removal is idempotent)
            st.table = Some(t.clone());
        }
        st.dnsmasq = plan.needs_dnsmasq();
        st.save(name, &files)?;
        let (nft_r, dnsmasq_r) = std::thread::scope(|s| {
            let nft = s.spawn(|| match &rules {
                Some(r) => nft::apply(name, r),
                None => Ok(()),
            });
            let dm = if st.dnsmasq {
                dnsmasq::write_files(&plan, &bridge, &files)
                    .and_then(|()| dnsmasq::spawn(name, &files))
                    .map(Some)
            } else {
                Ok(None)
            };
            let nft = nft.join().unwrap_or_else(|_| {
                Err(Error::Program {
                    object: object(name),
                    program: "nft",
                    detail: "the thread loading the table panicked".into(),
                })
            });
            (nft, dm)
        });
        if let (Ok(()), Some(t)) = (&nft_r, &table) {
            done.push(Undo::Table(t.clone()));
        }
        if st.dnsmasq {
            // also after a failed spawn: a daemon may be up without its pid reported
            done.push(Undo::Dnsmasq);
        }
        nft_r?;
        let pid = dnsmasq_r?;
        Ok(Started {
            bridge: bridge.clone(),
            dnsmasq_pid: pid,
            table: st.table.clone(),
            ip_forward,
        })
    })();
    if r.is_err() {
        rollback(name, &files, &mut nl, done);
    }
    r
}

/// Creates the bridge: `wanted` as is, or the first free name from a template (`virbr%d`
/// when none), trying the next one when another process took the name meanwhile.
fn create_bridge(
    name: &str,
    nl: &mut Netlink,
    wanted: Option<&str>,
    spec: &BridgeSpec,
) -> Result<String> {
    let in_use = |bridge: &str| Error::BridgeInUse {
        network: name.into(),
        bridge: bridge.into(),
    };
    if let Some(b) = wanted.filter(|b| !b.contains("%d")) {
        if nl
            .link(b)
            .map_err(nl_err(name, format!("look up link '{b}'")))?
            .is_some()
        {
            return Err(in_use(b));
        }
        return match nl.add_bridge(b, spec) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Err(in_use(b)),
            r => r
                .map(|()| b.to_string())
                .map_err(nl_err(name, format!("create bridge '{b}'"))),
        };
    }
    let t = wanted.unwrap_or("virbr%d");
    let mut taken: Vec<String> = nl
        .links()
        .map_err(nl_err(name, "list links".into()))?
        .into_iter()
        .map(|l| l.name)
        .collect();
    loop {
        let b = pick_name(t, &taken).ok_or_else(|| Error::Config {
            object: object(name),
            field: "network/bridge/@name".into(),
            reason: format!("no free bridge name from '{t}'"),
        })?;
        match nl.add_bridge(&b, spec) {
            Ok(()) => return Ok(b),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => taken.push(b),
            Err(e) => return Err(nl_err(name, format!("create bridge '{b}'"))(e)),
        }
    }
}

/// Stops the network: dnsmasq, the TAP devices plugged through [`plug`], the firewall
/// table and the bridge this backend created. Goes on past a failing step and reports
/// the first failure.
pub fn stop(net: &Network, state_dir: &Path) -> Result<()> {
    let name = net.name();
    let files = Files::new(state_dir, name);
    let Some(st) = State::load(name, &files)? else {
        return Err(Error::OperationInvalid {
            object: object(name),
            reason: "network is not active".into(),
        });
    };
    let mut first: Option<Error> = None;
    let mut keep = |r: Result<()>| {
        if let Err(e) = r
            && first.is_none()
        {
            first = Some(e);
        }
    };
    if st.dnsmasq {
        keep(dnsmasq::kill(name, &files));
    }
    // the table goes in a thread while the kernel deletes the links (unregistering a
    // device waits for RCU grace periods): the two waits overlap
    let (table_r, links_r) = std::thread::scope(|s| {
        let table = s.spawn(|| match &st.table {
            Some(t) => nft::remove(name, t),
            None => Ok(()),
        });
        let mut links = Vec::new();
        match open_netlink(name) {
            Ok(mut nl) => {
                for t in &st.taps {
                    links.push(delete_link(name, &mut nl, t));
                }
                if st.created_bridge {
                    links.push(delete_link(name, &mut nl, &st.bridge));
                }
            }
            Err(e) => links.push(Err(e)),
        }
        let table = table.join().unwrap_or_else(|_| {
            Err(Error::Program {
                object: object(name),
                program: "nft",
                detail: "the thread removing the table panicked".into(),
            })
        });
        (table, links)
    });
    links_r.into_iter().for_each(&mut keep);
    keep(table_r);
    if let Some(e) = first {
        return Err(e);
    }
    remove_files(&files);
    Ok(())
}

fn delete_link(net: &str, nl: &mut Netlink, ifname: &str) -> Result<()> {
    let link = nl
        .link(ifname)
        .map_err(nl_err(net, format!("look up link '{ifname}'")))?;
    match link {
        None => Ok(()),
        Some(l) => match nl.del_link(l.index) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            r => r.map_err(nl_err(net, format!("delete link '{ifname}'"))),
        },
    }
}

/// Whether the network is running: its state file exists, its bridge exists, and, when
/// it has one, its dnsmasq is alive (the pid file names a live `dnsmasq`). A restarted
/// daemon reattaches to a network for which this answers `true`.
pub fn is_running(net: &Network, state_dir: &Path) -> Result<bool> {
    let name = net.name();
    let files = Files::new(state_dir, name);
    let Some(st) = State::load(name, &files)? else {
        return Ok(false);
    };
    let mut nl = open_netlink(name)?;
    let bridge = nl
        .link(&st.bridge)
        .map_err(nl_err(name, format!("look up bridge '{}'", st.bridge)))?;
    if bridge.is_none() {
        return Ok(false);
    }
    if st.dnsmasq {
        return Ok(dnsmasq::read_pid(&files.pid).is_some_and(dnsmasq::is_dnsmasq));
    }
    Ok(true)
}

fn running_state(name: &str, files: &Files) -> Result<State> {
    State::load(name, files)?.ok_or_else(|| Error::OperationInvalid {
        object: object(name),
        reason: "network is not active".into(),
    })
}

/// Holds an exclusive `flock` on `state_dir/taps.lock` while TAP names are picked and
/// created, so two plugs never pick the same name.
struct TapLock {
    _file: std::fs::File,
}

impl TapLock {
    fn take(net: &str, state_dir: &Path) -> Result<TapLock> {
        let path = state_dir.join("taps.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::Io {
                object: object(net),
                action: "open",
                path: path.clone(),
                source: e,
            })?;
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::Io {
                object: object(net),
                action: "lock",
                path,
                source: io::Error::last_os_error(),
            });
        }
        Ok(TapLock { _file: f })
    }
}

/// Creates a persistent TAP device owned by root, attached to the network's bridge, up,
/// with the bridge's MTU.
pub fn plug(net: &Network, state_dir: &Path, port: &PortSpec) -> Result<Plugged> {
    let name = net.name();
    let files = Files::new(state_dir, name);
    let _lock = TapLock::take(name, state_dir)?;
    let mut st = running_state(name, &files)?;
    let mac = match &port.mac {
        None => None,
        Some(m) => {
            let mut b = parse_mac(m).ok_or_else(|| Error::Config {
                object: object(name),
                field: "interface/mac/@address".into(),
                reason: format!("'{m}' is not a MAC address"),
            })?;
            b[0] = 0xfe;
            Some(b)
        }
    };
    let mut nl = open_netlink(name)?;
    let bridge = nl
        .link(&st.bridge)
        .map_err(nl_err(name, format!("look up bridge '{}'", st.bridge)))?
        .ok_or_else(|| Error::OperationInvalid {
            object: object(name),
            reason: format!("bridge '{}' does not exist", st.bridge),
        })?;
    let tap = match port.ifname.as_deref() {
        Some(t) if !t.contains("%d") => {
            check_ifname(name, "interface/target/@dev", t)?;
            if nl
                .link(t)
                .map_err(nl_err(name, format!("look up link '{t}'")))?
                .is_some()
            {
                return Err(Error::OperationInvalid {
                    object: object(name),
                    reason: format!("interface '{t}' already exists"),
                });
            }
            t.to_string()
        }
        template => {
            let taken: Vec<String> = nl
                .links()
                .map_err(nl_err(name, "list links".into()))?
                .into_iter()
                .map(|l| l.name)
                .collect();
            let t = template.unwrap_or("vnet%d");
            pick_name(t, &taken).ok_or_else(|| Error::Config {
                object: object(name),
                field: "interface/target/@dev".into(),
                reason: format!("no free interface name from '{t}'"),
            })?
        }
    };
    rvirt_netdev::tap::create_persistent(&tap).map_err(|e| Error::Program {
        object: object(name),
        program: "tun",
        detail: rvirt_sdk::util::error_chain(&e),
    })?;
    let r = (|| -> Result<()> {
        let idx = nl
            .link(&tap)
            .map_err(nl_err(name, format!("look up tap device '{tap}'")))?
            .ok_or_else(|| Error::Netlink {
                object: object(name),
                action: format!("find tap device '{tap}' after creating it"),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })?
            .index;
        nl.set_link(idx, None, None, bridge.mtu, mac)
            .map_err(nl_err(name, format!("set mtu and mac of '{tap}'")))?;
        nl.set_link(idx, Some(true), Some(bridge.index), None, None)
            .map_err(nl_err(
                name,
                format!("attach '{tap}' to bridge '{}'", st.bridge),
            ))?;
        if !st.taps.contains(&tap) {
            st.taps.push(tap.clone());
        }
        st.save(name, &files)
    })();
    if let Err(e) = r {
        let _ = delete_link(name, &mut nl, &tap);
        return Err(e);
    }
    Ok(Plugged {
        tap,
        bridge: st.bridge,
    })
}

/// A guest's TAP device found on (or put back on) the network's bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDevice {
    /// The TAP device's name.
    pub tap: String,
    /// It had fallen off the bridge and was attached again.
    pub reattached: bool,
}

/// Finds the guest TAP device of port MAC `mac` and makes sure it is a port of the
/// network's bridge: the device whose MAC is `mac` with the first byte `fe` (the rule
/// every TAP maker here follows, as libvirt's), of kind `tun`, on this bridge or on none
/// (its bridge was deleted by a stop and made again by a start: it is attached again).
/// `None` when no such device exists (the hypervisor has not made it yet). Devices on
/// another bridge are never moved.
pub fn port_device(net: &Network, state_dir: &Path, mac: &str) -> Result<Option<PortDevice>> {
    let name = net.name();
    let files = Files::new(state_dir, name);
    let st = running_state(name, &files)?;
    let mut want = parse_mac(mac).ok_or_else(|| Error::Config {
        object: object(name),
        field: "networkport/mac/@address".into(),
        reason: format!("'{mac}' is not a MAC address"),
    })?;
    want[0] = 0xfe;
    let mut nl = open_netlink(name)?;
    let bridge = nl
        .link(&st.bridge)
        .map_err(nl_err(name, format!("look up bridge '{}'", st.bridge)))?
        .ok_or_else(|| Error::OperationInvalid {
            object: object(name),
            reason: format!("bridge '{}' does not exist", st.bridge),
        })?;
    let links = nl.links().map_err(nl_err(name, "list links".into()))?;
    let candidates: Vec<_> = links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("tun") && l.mac.as_deref() == Some(&want[..]))
        .collect();
    if let Some(on) = candidates.iter().find(|l| l.master == Some(bridge.index)) {
        return Ok(Some(PortDevice {
            tap: on.name.clone(),
            reattached: false,
        }));
    }
    let loose: Vec<_> = candidates.iter().filter(|l| l.master.is_none()).collect();
    let [tap] = loose.as_slice() else {
        if loose.len() > 1 {
            return Err(Error::OperationInvalid {
                object: object(name),
                reason: format!(
                    "{} tap devices carry the address {} of port MAC {mac}: cannot tell which to attach",
                    loose.len(),
                    format_mac(&want)
                ),
            });
        }
        return Ok(None);
    };
    nl.set_link(tap.index, None, None, bridge.mtu, None)
        .map_err(nl_err(name, format!("set mtu of '{}'", tap.name)))?;
    nl.set_link(tap.index, Some(true), Some(bridge.index), None, None)
        .map_err(nl_err(
            name,
            format!("attach '{}' to bridge '{}'", tap.name, st.bridge),
        ))?;
    Ok(Some(PortDevice {
        tap: tap.name.clone(),
        reattached: true,
    }))
}

/// Deletes a TAP device [`plug`] created for this network.
pub fn unplug(net: &Network, state_dir: &Path, tap: &str) -> Result<()> {
    let name = net.name();
    let files = Files::new(state_dir, name);
    let _lock = TapLock::take(name, state_dir)?;
    let mut st = running_state(name, &files)?;
    if !st.taps.iter().any(|t| t == tap) {
        return Err(Error::OperationInvalid {
            object: object(name),
            reason: format!("interface '{tap}' is not plugged into this network"),
        });
    }
    let mut nl = open_netlink(name)?;
    delete_link(name, &mut nl, tap)?;
    st.taps.retain(|t| t != tap);
    st.save(name, &files)
}

/// The DHCP leases dnsmasq has handed out, those of `mac` only when given. A network
/// without DHCP (or never started) has none.
pub fn leases(net: &Network, state_dir: &Path, mac: Option<&str>) -> Result<Vec<Lease>> {
    let plan = Plan::from_network(net)?;
    let files = Files::new(state_dir, &plan.name);
    let text = match std::fs::read_to_string(&files.leases) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                object: object(&plan.name),
                action: "read",
                path: files.leases,
                source: e,
            });
        }
    };
    let mut out = leases::parse(&text, mac);
    for l in &mut out {
        l.prefix = plan.ips.iter().find(|i| i.contains(l.ip)).map(|i| i.prefix);
    }
    Ok(out)
}

fn running_dnsmasq(plan: &Plan, files: &Files, option: &str) -> Result<()> {
    let st = running_state(&plan.name, files)?;
    let conf = std::fs::read_to_string(&files.conf).unwrap_or_default();
    if !st.dnsmasq || !conf.lines().any(|l| l.starts_with(option)) {
        return Err(Error::OperationInvalid {
            object: object(&plan.name),
            reason: format!(
                "the running network was started without {option} (restart it to apply this change)"
            ),
        });
    }
    Ok(())
}

/// Applies a change of the DHCP ranges to the running network: dnsmasq's configuration
/// is rewritten and dnsmasq restarted (its leases file stays).
pub fn update_dhcp_ranges(net: &Network, state_dir: &Path) -> Result<()> {
    restart_dnsmasq(net, state_dir)
}

/// Applies a change of the DNS TXT or SRV records (they live in dnsmasq's configuration):
/// rewritten, dnsmasq restarted.
pub fn update_dns_records(net: &Network, state_dir: &Path) -> Result<()> {
    restart_dnsmasq(net, state_dir)
}

fn restart_dnsmasq(net: &Network, state_dir: &Path) -> Result<()> {
    let plan = Plan::from_network(net)?;
    let files = Files::new(state_dir, &plan.name);
    let st = running_state(&plan.name, &files)?;
    if !st.dnsmasq {
        return Err(Error::OperationInvalid {
            object: object(&plan.name),
            reason: "the running network has no dnsmasq (restart it to add one)".into(),
        });
    }
    let bridge = plan.bridge.clone().ok_or_else(|| Error::OperationInvalid {
        object: object(&plan.name),
        reason: "the running network has no bridge name".into(),
    })?;
    dnsmasq::write_files(&plan, &bridge, &files)?;
    dnsmasq::kill(&plan.name, &files)?;
    dnsmasq::spawn(&plan.name, &files).map(|_| ())
}

/// Applies the `<dhcp><host>` entries of `net` (the updated definition) to the running
/// network: rewrites dnsmasq's hosts file and makes it read it again (SIGHUP).
pub fn update_dhcp_hosts(net: &Network, state_dir: &Path) -> Result<()> {
    let plan = Plan::from_network(net)?;
    let files = Files::new(state_dir, &plan.name);
    running_dnsmasq(&plan, &files, "dhcp-hostsfile=")?;
    state::write_file(&plan.name, &files.hostsfile, &dnsmasq::hostsfile(&plan))?;
    dnsmasq::reload(&plan.name, &files)
}

/// Applies the `<dns><host>` entries of `net` (the updated definition) to the running
/// network: rewrites dnsmasq's additional hosts file and makes it read it again.
pub fn update_dns_hosts(net: &Network, state_dir: &Path) -> Result<()> {
    let plan = Plan::from_network(net)?;
    let files = Files::new(state_dir, &plan.name);
    running_dnsmasq(&plan, &files, "addn-hosts=")?;
    state::write_file(&plan.name, &files.addnhosts, &dnsmasq::addnhosts(&plan))?;
    dnsmasq::reload(&plan.name, &files)
}

/// The dnsmasq configuration [`start`] would write for `net` on `bridge` (for inspection
/// and tests).
pub fn dnsmasq_config(net: &Network, bridge: &str, state_dir: &Path) -> Result<String> {
    let plan = Plan::from_network(net)?;
    Ok(dnsmasq::config(
        &plan,
        bridge,
        &Files::new(state_dir, &plan.name),
    ))
}

/// The `nft -f` batch [`start`] would load for `net` on `bridge`; `None` when the mode
/// has no rules.
pub fn nft_ruleset(net: &Network, bridge: &str) -> Result<Option<String>> {
    Ok(nft::ruleset(&Plan::from_network(net)?, bridge))
}

/// `fe:..` MAC of a TAP for guest MAC `mac` (what [`plug`] sets).
pub fn tap_mac(mac: &str) -> Option<String> {
    let mut b = parse_mac(mac)?;
    b[0] = 0xfe;
    Some(format_mac(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let taken = vec!["virbr0".to_string(), "virbr1".to_string()];
        assert_eq!(pick_name("virbr%d", &taken).as_deref(), Some("virbr2"));
        assert_eq!(pick_name("vnet%d", &[]).as_deref(), Some("vnet0"));
        assert_eq!(
            tap_mac("52:54:00:01:02:03").as_deref(),
            Some("fe:54:00:01:02:03")
        );
    }
}

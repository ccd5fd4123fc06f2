//! The test plugin's network facet: a bookkeeping backend for the pseudo forward mode
//! `test`, which the host resolves every network of `test:///default` to (libvirt's test
//! driver runs networks without touching the host).
//!
//! "Running" networks are a process-wide set of names. Every call is appended, one line
//! each (`start NAME`, `stop NAME`, ...), to `test-network-calls.log` under the system
//! root the host lends the backend, unless that root is `/`: the daemon's tests read it to
//! see what the host asked. Start answers the bridge name as a live addition; ports plug
//! into the network's bridge; leases are one made-up lease per `<host>` of the `<dhcp>`.

use rvirt_sdk::abi::{
    HostServicesBox, Lease, NetworkBackend, PResult, PluginError, PortPlug,
    abi_stable::std_types::{RResult, RStr, RString, RVec},
};
use rvirt_xml::Network;
use std::{
    collections::BTreeSet,
    io::Write,
    path::PathBuf,
    sync::{Mutex, MutexGuard, OnceLock},
};

/// The forward mode this backend serves.
pub const FORWARD_MODE: &str = "test";

fn running() -> MutexGuard<'static, BTreeSet<String>> {
    static SET: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    SET.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The backend: where it records calls.
pub struct TestNetworks {
    log: Option<PathBuf>,
}

/// Opens the backend (the facet's `open`).
pub fn open(_mode: &str, host: HostServicesBox) -> Result<TestNetworks, PluginError> {
    let root = host.system_root().to_string();
    Ok(TestNetworks {
        log: (root != "/" && !root.is_empty())
            .then(|| PathBuf::from(root).join("test-network-calls.log")),
    })
}

fn parse(xml: RStr<'_>) -> Result<Network, PluginError> {
    Network::parse(xml.as_str()).map_err(|e| {
        PluginError::new(
            rvirt_sdk::abi::ErrorCode::XmlError,
            rvirt_sdk::abi::ErrorDomain::Network,
            format!("invalid network XML: {e}"),
        )
    })
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return RResult::RErr(e),
        }
    };
}

impl TestNetworks {
    fn record(&self, line: String) {
        if let Some(p) = &self.log
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

impl NetworkBackend for TestNetworks {
    fn forward_mode(&self) -> RString {
        FORWARD_MODE.into()
    }

    fn start_network(&self, net_xml: RStr<'_>, _state_dir: RStr<'_>) -> PResult<RString> {
        let net = tri!(parse(net_xml));
        self.record(format!("start {}", net.name()));
        running().insert(net.name().to_string());
        let bridge = net.bridge_name().unwrap_or("testbr0");
        RResult::ROk(format!("<network><bridge name='{bridge}'/></network>").into())
    }

    fn stop_network(&self, net_xml: RStr<'_>, _state_dir: RStr<'_>) -> PResult<()> {
        let net = tri!(parse(net_xml));
        self.record(format!("stop {}", net.name()));
        running().remove(net.name());
        RResult::ROk(())
    }

    fn check_network(&self, net_xml: RStr<'_>, _state_dir: RStr<'_>) -> PResult<bool> {
        let net = tri!(parse(net_xml));
        self.record(format!("check {}", net.name()));
        RResult::ROk(running().contains(net.name()))
    }

    fn plug_port(&self, net_xml: RStr<'_>, _port_xml: RStr<'_>) -> PResult<PortPlug> {
        let net = tri!(parse(net_xml));
        self.record(format!("plug {}", net.name()));
        RResult::ROk(PortPlug {
            plug_type: "network".into(),
            bridge: net.bridge_name().unwrap_or("").into(),
            tap: "".into(),
            mtu: net.mtu().unwrap_or(0),
            port_xml: "".into(),
        })
    }

    fn unplug_port(&self, net_xml: RStr<'_>, _port_xml: RStr<'_>) -> PResult<()> {
        let net = tri!(parse(net_xml));
        self.record(format!("unplug {}", net.name()));
        RResult::ROk(())
    }

    fn dhcp_leases(&self, net_xml: RStr<'_>, mac: RStr<'_>) -> PResult<RVec<Lease>> {
        let net = tri!(parse(net_xml));
        let iface = net.bridge_name().unwrap_or("").to_string();
        let prefix = 24;
        RResult::ROk(
            net.dhcp_hosts()
                .into_iter()
                .filter_map(|(m, name, ip)| Some((m?, name, ip?)))
                .filter(|(m, _, _)| mac.is_empty() || m.eq_ignore_ascii_case(mac.as_str()))
                .map(|(m, name, ip)| Lease {
                    iface: iface.as_str().into(),
                    expiry_time: 0,
                    ip_type: 0,
                    mac: m.into(),
                    iaid: "".into(),
                    ipaddr: ip.into(),
                    prefix,
                    hostname: name.unwrap_or("").into(),
                    clientid: "".into(),
                })
                .collect(),
        )
    }

    fn update(
        &self,
        net_xml: RStr<'_>,
        command: u32,
        section: u32,
        _parent_index: i32,
        _xml: RStr<'_>,
        _flags: u32,
    ) -> PResult<()> {
        let net = tri!(parse(net_xml));
        self.record(format!("update {} {command} {section}", net.name()));
        RResult::ROk(())
    }
}

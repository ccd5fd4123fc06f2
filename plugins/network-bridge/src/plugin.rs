//! The plugin edge: this crate's functions behind the plugin API's network facet
//! (plugin API 1.5). Networks arrive as libvirt XML and are parsed here; what the library
//! returns goes back as ABI types; errors keep their libvirt numbers. The backend is
//! stateless: every call carries the network and the run directory the host gave it.

use crate::Error;
use rvirt_sdk::abi::{
    ErrorDomain, HostServicesBox, Lease, NetworkBackend, PResult, PluginError, PortPlug,
    abi_stable::std_types::{RResult, RStr, RString, RVec},
    log_level,
};
use rvirt_xml::Network;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The forward modes served: `<forward mode>` values, and `isolated` for no `<forward>`.
pub const FORWARD_MODES: &[&str] = &["nat", "route", "open", "isolated", "bridge"];

/// `VIR_NETWORK_SECTION_IP_DHCP_HOST`.
const SECTION_IP_DHCP_HOST: u32 = 4;
/// `VIR_NETWORK_SECTION_IP_DHCP_RANGE`.
const SECTION_IP_DHCP_RANGE: u32 = 5;
/// `VIR_NETWORK_SECTION_PORTGROUP`.
const SECTION_PORTGROUP: u32 = 9;
/// `VIR_NETWORK_SECTION_DNS_HOST`.
const SECTION_DNS_HOST: u32 = 10;
/// `VIR_NETWORK_SECTION_DNS_TXT`.
const SECTION_DNS_TXT: u32 = 11;
/// `VIR_NETWORK_SECTION_DNS_SRV`.
const SECTION_DNS_SRV: u32 = 12;

/// One backend per forward mode. It keeps only the run directory the host gave each
/// network at start (or at the reattach check after a host restart), for the calls whose
/// ABI does not carry it (leases, updates).
pub struct BridgeBackend {
    mode: String,
    host: HostServicesBox,
    run_dirs: Mutex<HashMap<String, PathBuf>>,
}

impl BridgeBackend {
    fn info(&self, msg: &str) {
        self.host.log(log_level::INFO, RStr::from_str(msg));
    }

    fn remember(&self, n: &Network, dir: &Path) {
        self.run_dirs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(n.name().to_string(), dir.to_path_buf());
    }

    fn forget(&self, n: &Network) {
        self.run_dirs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(n.name());
    }

    fn lease_dir(&self, n: &Network) -> Result<PathBuf, PluginError> {
        self.run_dirs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(n.name())
            .cloned()
            .ok_or_else(|| PluginError {
                code: rvirt_sdk::abi::ErrorCode::OperationInvalid as i32,
                domain: ErrorDomain::Network as i32,
                message: format!("network '{}' is not running on this backend", n.name()).into(),
            })
    }
}

/// Opens the backend of `mode`.
pub fn open(mode: &str, host: HostServicesBox) -> Result<BridgeBackend, PluginError> {
    host.log(
        log_level::DEBUG,
        RStr::from_str("bridge network backend opened"),
    );
    Ok(BridgeBackend {
        mode: mode.to_string(),
        host,
        run_dirs: Mutex::default(),
    })
}

fn perr(e: Error) -> PluginError {
    PluginError {
        code: e.code(),
        domain: ErrorDomain::Network as i32,
        message: e.full_message().into(),
    }
}

fn net(xml: RStr<'_>) -> Result<Network, PluginError> {
    Network::parse(xml.as_str()).map_err(|e| PluginError {
        code: rvirt_sdk::abi::ErrorCode::XmlError as i32,
        domain: ErrorDomain::Network as i32,
        message: format!("network definition from the host: {e}").into(),
    })
}

fn dir(state_dir: RStr<'_>) -> Result<&Path, PluginError> {
    if state_dir.is_empty() {
        return Err(PluginError {
            code: rvirt_sdk::abi::ErrorCode::OperationInvalid as i32,
            domain: ErrorDomain::Network as i32,
            message: "the bridge backend needs a run directory (networks of a host root kept in memory cannot be started)".into(),
        });
    }
    Ok(Path::new(state_dir.as_str()))
}

fn res<T>(r: Result<T, PluginError>) -> PResult<T> {
    match r {
        Ok(v) => RResult::ROk(v),
        Err(e) => RResult::RErr(e),
    }
}

/// `<network><bridge name='X'/></network>`: what the host adds to the live definition.
fn live_additions(bridge: &str) -> String {
    let mut n = rvirt_xml::Element::new("network");
    n.push(rvirt_xml::Element::new("bridge").with_attr("name", bridge));
    n.to_xml_string()
}

impl NetworkBackend for BridgeBackend {
    fn forward_mode(&self) -> RString {
        self.mode.as_str().into()
    }

    fn start_network(&self, net_xml: RStr<'_>, state_dir: RStr<'_>) -> PResult<RString> {
        res((|| {
            let n = net(net_xml)?;
            let d = dir(state_dir)?;
            let started = crate::start(&n, d).map_err(perr)?;
            self.remember(&n, d);
            Ok(live_additions(&started.bridge).into())
        })())
    }

    fn stop_network(&self, net_xml: RStr<'_>, state_dir: RStr<'_>) -> PResult<()> {
        res((|| {
            let n = net(net_xml)?;
            crate::stop(&n, dir(state_dir)?).map_err(perr)?;
            self.forget(&n);
            Ok(())
        })())
    }

    fn check_network(&self, net_xml: RStr<'_>, state_dir: RStr<'_>) -> PResult<bool> {
        res((|| {
            let n = net(net_xml)?;
            let d = dir(state_dir)?;
            let running = crate::is_running(&n, d).map_err(perr)?;
            if running {
                self.remember(&n, d);
            }
            Ok(running)
        })())
    }

    fn plug_port(&self, net_xml: RStr<'_>, port_xml: RStr<'_>) -> PResult<PortPlug> {
        // The hypervisor makes the guest's TAP (QEMU inherits its descriptor); the network
        // answers which bridge it joins and with what MTU. Plugging is idempotent: when
        // the host plugs a port again after the network started anew, the guest's TAP,
        // which fell off with the old bridge, is put back on the new one.
        res((|| {
            let n = net(net_xml)?;
            let port = rvirt_xml::Element::parse(port_xml.as_str()).map_err(|e| PluginError {
                code: rvirt_sdk::abi::ErrorCode::XmlError as i32,
                domain: ErrorDomain::Network as i32,
                message: format!("network port from the host: {e}").into(),
            })?;
            let bandwidth = rvirt_xml::bandwidth::Bandwidth::of(&port, "networkport")
                .map_err(|e| PluginError {
                    code: rvirt_sdk::abi::ErrorCode::XmlError as i32,
                    domain: ErrorDomain::Network as i32,
                    message: e.to_string().into(),
                })?
                .unwrap_or_default();
            let bridge = n.bridge_name().unwrap_or_default().to_string();
            if bridge.is_empty() {
                return Err(PluginError {
                    code: rvirt_sdk::abi::ErrorCode::OperationInvalid as i32,
                    domain: ErrorDomain::Network as i32,
                    message: format!("network '{}' has no bridge (is it active?)", n.name()).into(),
                });
            }
            let mac = port.child("mac").and_then(|m| m.attr("address"));
            if let (Some(mac), Ok(d)) = (mac, self.lease_dir(&n))
                && let Some(dev) = crate::port_device(&n, &d, mac).map_err(perr)?
            {
                if dev.reattached {
                    self.info(&format!(
                        "network '{}': tap '{}' of port {mac} attached to bridge '{bridge}' again",
                        n.name(),
                        dev.tap
                    ));
                }
                rvirt_netdev::bandwidth::apply(&dev.tap, &bandwidth).map_err(|e| PluginError {
                    code: rvirt_sdk::abi::ErrorCode::OperationFailed as i32,
                    domain: ErrorDomain::Network as i32,
                    message: format!(
                        "network '{}': {}",
                        n.name(),
                        rvirt_sdk::util::error_chain(&e)
                    )
                    .into(),
                })?;
            }
            Ok(PortPlug {
                plug_type: if self.mode == "bridge" {
                    "bridge"
                } else {
                    "network"
                }
                .into(),
                bridge: bridge.into(),
                tap: RString::new(),
                mtu: n.mtu().unwrap_or(0),
                // the host completes the port with `<plug type bridge>` from the above
                port_xml: RString::new(),
            })
        })())
    }

    fn unplug_port(&self, _net_xml: RStr<'_>, _port_xml: RStr<'_>) -> PResult<()> {
        // nothing was taken: the hypervisor's TAP goes with the guest
        RResult::ROk(())
    }

    fn dhcp_leases(&self, net_xml: RStr<'_>, mac: RStr<'_>) -> PResult<RVec<Lease>> {
        res((|| {
            let n = net(net_xml)?;
            let iface = n.bridge_name().unwrap_or_default().to_string();
            let mac = (!mac.is_empty()).then_some(mac.as_str());
            let found = crate::leases(&n, &self.lease_dir(&n)?, mac).map_err(perr)?;
            Ok(found
                .into_iter()
                .map(|l| Lease {
                    iface: iface.as_str().into(),
                    expiry_time: i64::try_from(l.expiry).unwrap_or(i64::MAX),
                    ip_type: i32::from(l.ip.is_ipv6()),
                    mac: l.mac.unwrap_or_default().into(),
                    iaid: l.iaid.unwrap_or_default().into(),
                    ipaddr: l.ip.to_string().into(),
                    prefix: u32::from(l.prefix.unwrap_or(0)),
                    hostname: l.hostname.unwrap_or_default().into(),
                    clientid: l.client_id.unwrap_or_default().into(),
                })
                .collect())
        })())
    }

    fn update(
        &self,
        net_xml: RStr<'_>,
        _command: u32,
        section: u32,
        _parent_index: i32,
        _xml: RStr<'_>,
        _flags: u32,
    ) -> PResult<()> {
        res((|| {
            let n = net(net_xml)?;
            let d = self.lease_dir(&n)?;
            match section {
                SECTION_IP_DHCP_HOST => crate::update_dhcp_hosts(&n, &d).map_err(perr),
                SECTION_IP_DHCP_RANGE => crate::update_dhcp_ranges(&n, &d).map_err(perr),
                SECTION_DNS_HOST => crate::update_dns_hosts(&n, &d).map_err(perr),
                // TXT and SRV records are in dnsmasq's configuration: rewritten, restarted
                SECTION_DNS_TXT | SECTION_DNS_SRV => crate::update_dns_records(&n, &d).map_err(perr),
                // port groups only shape ports plugged later: nothing runs to change
                SECTION_PORTGROUP => Ok(()),
                other => Err(PluginError {
                    code: rvirt_sdk::abi::ErrorCode::NoSupport as i32,
                    domain: ErrorDomain::Network as i32,
                    message: format!(
                        "this function is not supported by the connection driver: virNetworkUpdate of section {other} on a running network (network backend '{}')",
                        self.mode
                    )
                    .into(),
                }),
            }
        })())
    }
}

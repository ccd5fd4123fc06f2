//! The host's handle of a plugin's network backend ([`PluginNetBackend`]): every call
//! crosses the plugin boundary under `catch_unwind`, and its errors become the host
//! [`Error`](crate::Error) with libvirt's numbers.
//!
//! Architecture invariant: with `plugin.rs`, the only module of the network subsystem
//! that touches ABI types; everything public here is a plain host type.

use super::{Lease, NetBackend, PortPlug};
use crate::{Error, Result, plugin::call};
use rvirt_plugin_api::{ErrorCode, NetworkBackendBox, PResult, abi_stable::std_types::RStr};
use std::sync::Arc;

/// A plugin's network backend for one forward mode. Cheap to clone.
#[derive(Clone)]
pub struct PluginNetBackend {
    plugin: String,
    api_version: String,
    mode: String,
    inner: Arc<NetworkBackendBox>,
}

impl std::fmt::Debug for PluginNetBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginNetBackend")
            .field("plugin", &self.plugin)
            .field("mode", &self.mode)
            .finish()
    }
}

fn s(x: &str) -> RStr<'_> {
    RStr::from_str(x)
}

impl PluginNetBackend {
    pub(crate) fn new(
        plugin: &str,
        api_version: &str,
        mode: &str,
        inner: NetworkBackendBox,
    ) -> Self {
        Self {
            plugin: plugin.to_string(),
            api_version: api_version.to_string(),
            mode: mode.to_string(),
            inner: Arc::new(inner),
        }
    }

    /// The forward mode served.
    pub fn mode(&self) -> &str {
        &self.mode
    }

    /// The plugin serving it.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Calls into the plugin; a no-support answer names the plugin and its API version.
    fn call<T>(&self, operation: &'static str, f: impl FnOnce() -> PResult<T>) -> Result<T> {
        call(&self.plugin, operation, f).map_err(|e| match e {
            Error::Driver {
                code,
                domain,
                message,
            } if code == ErrorCode::NoSupport as i32
                && !message.contains(&format!("plugin '{}'", self.plugin)) =>
            {
                Error::Driver {
                    code,
                    domain,
                    message: format!(
                        "{message} (plugin '{}', plugin API {})",
                        self.plugin, self.api_version
                    ),
                }
            }
            e => e,
        })
    }
}

impl NetBackend for PluginNetBackend {
    fn start_network(&self, net: &str, state_dir: &str) -> Result<String> {
        self.call("virNetworkCreate", || {
            self.inner.start_network(s(net), s(state_dir))
        })
        .map(|r| r.to_string())
    }
    fn stop_network(&self, net: &str, state_dir: &str) -> Result<()> {
        self.call("virNetworkDestroy", || {
            self.inner.stop_network(s(net), s(state_dir))
        })
    }
    fn check_network(&self, net: &str, state_dir: &str) -> Result<bool> {
        self.call("virNetworkIsActive", || {
            self.inner.check_network(s(net), s(state_dir))
        })
    }
    fn plug_port(&self, net: &str, port: &str) -> Result<PortPlug> {
        self.call("virNetworkPortCreateXML", || {
            self.inner.plug_port(s(net), s(port))
        })
        .map(|p| PortPlug {
            plug_type: p.plug_type.to_string(),
            bridge: p.bridge.to_string(),
            tap: p.tap.to_string(),
            mtu: p.mtu,
            port_xml: p.port_xml.to_string(),
        })
    }
    fn unplug_port(&self, net: &str, port: &str) -> Result<()> {
        self.call("virNetworkPortDelete", || {
            self.inner.unplug_port(s(net), s(port))
        })
    }
    fn dhcp_leases(&self, net: &str, mac: &str) -> Result<Vec<Lease>> {
        self.call("virNetworkGetDHCPLeases", || {
            self.inner.dhcp_leases(s(net), s(mac))
        })
        .map(|v| {
            v.into_iter()
                .map(|l| Lease {
                    iface: l.iface.to_string(),
                    expiry_time: l.expiry_time,
                    ip_type: l.ip_type,
                    mac: l.mac.to_string(),
                    iaid: l.iaid.to_string(),
                    ipaddr: l.ipaddr.to_string(),
                    prefix: l.prefix,
                    hostname: l.hostname.to_string(),
                    clientid: l.clientid.to_string(),
                })
                .collect()
        })
    }
    fn update(
        &self,
        net: &str,
        command: u32,
        section: u32,
        parent_index: i32,
        xml: &str,
        flags: u32,
    ) -> Result<()> {
        self.call("virNetworkUpdate", || {
            self.inner
                .update(s(net), command, section, parent_index, s(xml), flags)
        })
    }
}

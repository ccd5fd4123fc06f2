//! The embedder's network API: [`Connection::networks`] answers a [`NetworkService`], the
//! networks bound to the connection's URI (`network_bind`) seen through the connection's
//! access (a read-only connection is refused every change, `VIR_ERR_OPERATION_DENIED`).
//! Remote connections do not carry networks yet: the daemon serves them to libvirt's
//! clients, and the remote driver answers no-support naming the call.

use crate::networks::{Lease, NetworkEventCallback, NetworkId, Networks, PortId};
use crate::{Connection, Error, Result};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use std::sync::Arc;

/// How a connection finds its networks (opened on first use).
pub(crate) type NetworksLookup = Arc<dyn Fn() -> Result<Arc<Networks>> + Send + Sync>;

/// The lookup of a remote connection: no-support.
pub(crate) fn remote_lookup() -> NetworksLookup {
    Arc::new(|| {
        Err(Error::driver(
            ErrorCode::NoSupport,
            ErrorDomain::Network,
            "this function is not supported by the connection driver: virConnectListAllNetworks (the remote driver does not carry networks yet)",
        ))
    })
}

/// The networks of a connection.
#[derive(Clone)]
pub struct NetworkService {
    nets: Arc<Networks>,
    read_only: bool,
}

impl std::fmt::Debug for NetworkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkService")
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The networks bound to this connection's URI (`qemu:///system`, `qemu:///session`,
    /// `qemu:///embed?root=DIR`, `test:///default`).
    pub fn networks(&self) -> Result<NetworkService> {
        Ok(NetworkService {
            nets: (self.networks)()?,
            read_only: self.is_read_only(),
        })
    }
}

impl NetworkService {
    fn writable(&self, op: &'static str) -> Result<&Networks> {
        if self.read_only {
            Err(Error::ReadOnly(op))
        } else {
            Ok(&self.nets)
        }
    }

    /// `virConnectListAllNetworks`.
    pub fn list(&self, flags: u32) -> Result<Vec<NetworkId>> {
        self.nets.list(flags)
    }
    /// `virNetworkLookupByName`.
    pub fn lookup_by_name(&self, name: &str) -> Result<NetworkId> {
        self.nets.lookup_by_name(name)
    }
    /// `virNetworkLookupByUUID`.
    pub fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<NetworkId> {
        self.nets.lookup_by_uuid(uuid)
    }
    /// `virNetworkGetXMLDesc`.
    pub fn xml(&self, name: &str, flags: u32) -> Result<String> {
        self.nets.xml(name, flags)
    }
    /// `virNetworkGetBridgeName`.
    pub fn bridge_name(&self, name: &str) -> Result<String> {
        self.nets.bridge_name(name)
    }
    /// `virNetworkIsActive`.
    pub fn is_active(&self, name: &str) -> Result<bool> {
        self.nets.is_active(name)
    }
    /// `virNetworkIsPersistent`.
    pub fn is_persistent(&self, name: &str) -> Result<bool> {
        self.nets.is_persistent(name)
    }
    /// `virNetworkGetAutostart`.
    pub fn autostart(&self, name: &str) -> Result<bool> {
        self.nets.autostart(name)
    }
    /// `virNetworkGetDHCPLeases`.
    pub fn dhcp_leases(&self, name: &str, mac: Option<&str>, flags: u32) -> Result<Vec<Lease>> {
        self.nets.dhcp_leases(name, mac, flags)
    }
    /// `virNetworkDefineXMLFlags`.
    pub fn define(&self, xml: &str, flags: u32) -> Result<NetworkId> {
        self.writable("virNetworkDefineXML")?.define(xml, flags)
    }
    /// `virNetworkCreateXMLFlags`.
    pub fn create_xml(&self, xml: &str, flags: u32) -> Result<NetworkId> {
        self.writable("virNetworkCreateXML")?.create_xml(xml, flags)
    }
    /// `virNetworkUndefine`.
    pub fn undefine(&self, name: &str) -> Result<()> {
        self.writable("virNetworkUndefine")?.undefine(name)
    }
    /// `virNetworkCreate`.
    pub fn create(&self, name: &str) -> Result<()> {
        self.writable("virNetworkCreate")?.create(name)
    }
    /// `virNetworkDestroy`.
    pub fn destroy(&self, name: &str) -> Result<()> {
        self.writable("virNetworkDestroy")?.destroy(name)
    }
    /// `virNetworkSetAutostart`.
    pub fn set_autostart(&self, name: &str, on: bool) -> Result<()> {
        self.writable("virNetworkSetAutostart")?
            .set_autostart(name, on)
    }
    /// `virNetworkUpdate`.
    pub fn update(
        &self,
        name: &str,
        command: u32,
        section: u32,
        parent_index: i32,
        xml: &str,
        flags: u32,
    ) -> Result<()> {
        self.writable("virNetworkUpdate")?
            .update(name, command, section, parent_index, xml, flags)
    }
    /// `virNetworkPortCreateXML`.
    pub fn port_create(&self, name: &str, xml: &str, flags: u32) -> Result<PortId> {
        self.writable("virNetworkPortCreateXML")?
            .port_create(name, xml, flags)
    }
    /// `virNetworkPortLookupByUUID`.
    pub fn port_lookup(&self, name: &str, port: uuid::Uuid) -> Result<PortId> {
        self.nets.port_lookup(name, port)
    }
    /// `virNetworkListAllPorts`.
    pub fn port_list(&self, name: &str, flags: u32) -> Result<Vec<PortId>> {
        self.nets.port_list(name, flags)
    }
    /// `virNetworkPortGetXMLDesc`.
    pub fn port_xml(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<String> {
        self.nets.port_xml(name, port, flags)
    }
    /// `virNetworkPortDelete`.
    pub fn port_delete(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<()> {
        self.writable("virNetworkPortDelete")?
            .port_delete(name, port, flags)
    }
    /// Subscribes to network lifecycle events.
    pub fn subscribe(&self, cb: NetworkEventCallback) -> u64 {
        self.nets.subscribe(cb)
    }
    /// Drops a subscription.
    pub fn unsubscribe(&self, id: u64) {
        self.nets.unsubscribe(id)
    }
}

//! The embedder's network API: [`Connection::networks`] answers a [`NetworkService`], the
//! networks of the connection seen through the connection's access (a read-only
//! connection is refused every change, `VIR_ERR_OPERATION_DENIED`). A local connection's
//! networks are those bound to its URI (`network_bind`); a remote connection's are the
//! daemon's, reached over the remote driver (`remote/networks.rs`).

use crate::networks::{Lease, NetworkEvent, NetworkEventCallback, NetworkId, Networks, PortId};
use crate::{Connection, Error, Result};
use std::sync::Arc;

/// How a local connection finds its networks (opened on first use).
pub(crate) type NetworksLookup = Arc<dyn Fn() -> Result<Arc<Networks>> + Send + Sync>;

/// How a connection finds its network operations: the local [`Networks`] or the remote
/// driver.
pub(crate) type NetworkOpsLookup = Arc<dyn Fn() -> Result<Arc<dyn NetworkOps>> + Send + Sync>;

/// A lookup without networks (no-support): what a plugin's host services see in tests.
#[cfg(test)]
pub(crate) fn remote_lookup() -> NetworksLookup {
    Arc::new(|| {
        Err(Error::driver(
            rvirt_plugin_api::ErrorCode::NoSupport,
            rvirt_plugin_api::ErrorDomain::Network,
            "this function is not supported by the connection driver: virConnectListAllNetworks (the remote driver carries networks through the daemon)",
        ))
    })
}

/// The operations of a local connection's networks.
pub(crate) fn local_ops(lookup: NetworksLookup) -> NetworkOpsLookup {
    Arc::new(move || Ok(lookup()? as Arc<dyn NetworkOps>))
}

/// The network operations of one connection, addressed by network name, as
/// [`Networks`] answers them.
#[allow(missing_docs)]
pub trait NetworkOps: Send + Sync {
    fn list(&self, flags: u32) -> Result<Vec<NetworkId>>;
    fn lookup_by_name(&self, name: &str) -> Result<NetworkId>;
    fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<NetworkId>;
    fn xml(&self, name: &str, flags: u32) -> Result<String>;
    fn bridge_name(&self, name: &str) -> Result<String>;
    fn is_active(&self, name: &str) -> Result<bool>;
    fn is_persistent(&self, name: &str) -> Result<bool>;
    fn autostart(&self, name: &str) -> Result<bool>;
    fn dhcp_leases(&self, name: &str, mac: Option<&str>, flags: u32) -> Result<Vec<Lease>>;
    fn define(&self, xml: &str, flags: u32) -> Result<NetworkId>;
    fn create_xml(&self, xml: &str, flags: u32) -> Result<NetworkId>;
    fn undefine(&self, name: &str) -> Result<()>;
    fn create(&self, name: &str) -> Result<()>;
    fn destroy(&self, name: &str) -> Result<()>;
    fn set_autostart(&self, name: &str, on: bool) -> Result<()>;
    fn update(
        &self,
        name: &str,
        command: u32,
        section: u32,
        parent_index: i32,
        xml: &str,
        flags: u32,
    ) -> Result<()>;
    fn port_create(&self, name: &str, xml: &str, flags: u32) -> Result<PortId>;
    fn port_lookup(&self, name: &str, port: uuid::Uuid) -> Result<PortId>;
    fn port_list(&self, name: &str, flags: u32) -> Result<Vec<PortId>>;
    fn port_xml(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<String>;
    fn port_delete(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<()>;
    fn port_parameters(
        &self,
        name: &str,
        port: uuid::Uuid,
        flags: u32,
    ) -> Result<Vec<(String, u64)>>;
    fn port_set_parameters(
        &self,
        name: &str,
        port: uuid::Uuid,
        params: &[(String, u64)],
        flags: u32,
    ) -> Result<()>;
    fn subscribe(&self, cb: NetworkEventCallback) -> Result<u64>;
    fn unsubscribe(&self, id: u64) -> Result<()>;
}

impl NetworkOps for Networks {
    fn list(&self, flags: u32) -> Result<Vec<NetworkId>> {
        Networks::list(self, flags)
    }
    fn lookup_by_name(&self, name: &str) -> Result<NetworkId> {
        Networks::lookup_by_name(self, name)
    }
    fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<NetworkId> {
        Networks::lookup_by_uuid(self, uuid)
    }
    fn xml(&self, name: &str, flags: u32) -> Result<String> {
        Networks::xml(self, name, flags)
    }
    fn bridge_name(&self, name: &str) -> Result<String> {
        Networks::bridge_name(self, name)
    }
    fn is_active(&self, name: &str) -> Result<bool> {
        Networks::is_active(self, name)
    }
    fn is_persistent(&self, name: &str) -> Result<bool> {
        Networks::is_persistent(self, name)
    }
    fn autostart(&self, name: &str) -> Result<bool> {
        Networks::autostart(self, name)
    }
    fn dhcp_leases(&self, name: &str, mac: Option<&str>, flags: u32) -> Result<Vec<Lease>> {
        Networks::dhcp_leases(self, name, mac, flags)
    }
    fn define(&self, xml: &str, flags: u32) -> Result<NetworkId> {
        Networks::define(self, xml, flags)
    }
    fn create_xml(&self, xml: &str, flags: u32) -> Result<NetworkId> {
        Networks::create_xml(self, xml, flags)
    }
    fn undefine(&self, name: &str) -> Result<()> {
        Networks::undefine(self, name)
    }
    fn create(&self, name: &str) -> Result<()> {
        Networks::create(self, name)
    }
    fn destroy(&self, name: &str) -> Result<()> {
        Networks::destroy(self, name)
    }
    fn set_autostart(&self, name: &str, on: bool) -> Result<()> {
        Networks::set_autostart(self, name, on)
    }
    fn update(
        &self,
        name: &str,
        command: u32,
        section: u32,
        parent_index: i32,
        xml: &str,
        flags: u32,
    ) -> Result<()> {
        Networks::update(self, name, command, section, parent_index, xml, flags)
    }
    fn port_create(&self, name: &str, xml: &str, flags: u32) -> Result<PortId> {
        Networks::port_create(self, name, xml, flags)
    }
    fn port_lookup(&self, name: &str, port: uuid::Uuid) -> Result<PortId> {
        Networks::port_lookup(self, name, port)
    }
    fn port_list(&self, name: &str, flags: u32) -> Result<Vec<PortId>> {
        Networks::port_list(self, name, flags)
    }
    fn port_xml(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<String> {
        Networks::port_xml(self, name, port, flags)
    }
    fn port_delete(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<()> {
        Networks::port_delete(self, name, port, flags)
    }
    fn port_parameters(
        &self,
        name: &str,
        port: uuid::Uuid,
        flags: u32,
    ) -> Result<Vec<(String, u64)>> {
        Networks::port_parameters(self, name, port, flags)
    }
    fn port_set_parameters(
        &self,
        name: &str,
        port: uuid::Uuid,
        params: &[(String, u64)],
        flags: u32,
    ) -> Result<()> {
        Networks::port_set_parameters(self, name, port, params, flags)
    }
    fn subscribe(&self, cb: NetworkEventCallback) -> Result<u64> {
        Ok(Networks::subscribe(self, cb))
    }
    fn unsubscribe(&self, id: u64) -> Result<()> {
        Networks::unsubscribe(self, id);
        Ok(())
    }
}

/// The networks of a connection.
#[derive(Clone)]
pub struct NetworkService {
    nets: Arc<dyn NetworkOps>,
    read_only: bool,
    acl: crate::acl::Checker,
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
    /// `qemu:///embed?root=DIR`, `test:///default`), or the daemon's for a remote URI.
    pub fn networks(&self) -> Result<NetworkService> {
        Ok(NetworkService {
            nets: (self.networks)()?,
            read_only: self.is_read_only(),
            acl: self.acl.clone(),
        })
    }
}

use crate::acl::{Object, P};

/// The check object of a network named `name` (its UUID unknown).
fn net(name: &str) -> crate::acl::Object<'_> {
    crate::acl::Object::Network { name, uuid: None }
}

fn net_id(n: &NetworkId) -> crate::acl::Object<'_> {
    crate::acl::Object::Network {
        name: &n.name,
        uuid: Some(n.uuid),
    }
}

fn port_obj(name: &str, port: uuid::Uuid) -> crate::acl::Object<'_> {
    crate::acl::Object::Port {
        network: name,
        uuid: Some(port),
    }
}

impl NetworkService {
    fn writable(&self, op: &'static str) -> Result<&dyn NetworkOps> {
        if self.read_only {
            Err(Error::ReadOnly(op))
        } else {
            Ok(&*self.nets)
        }
    }

    /// `virConnectListAllNetworks`.
    pub fn list(&self, flags: u32) -> Result<Vec<NetworkId>> {
        self.acl
            .require(P::ConnectListAllNetworks, Object::Connect)?;
        let mut list = self.nets.list(flags)?;
        list.retain(|n| self.acl.visible("network:getattr", net_id(n)));
        Ok(list)
    }
    /// `virNetworkLookupByName`.
    pub fn lookup_by_name(&self, name: &str) -> Result<NetworkId> {
        let n = self.nets.lookup_by_name(name)?;
        self.acl.require(P::NetworkLookupByName, net_id(&n))?;
        Ok(n)
    }
    /// `virNetworkLookupByUUID`.
    pub fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<NetworkId> {
        let n = self.nets.lookup_by_uuid(uuid)?;
        self.acl.require(P::NetworkLookupByUuid, net_id(&n))?;
        Ok(n)
    }
    /// `virNetworkGetXMLDesc`.
    pub fn xml(&self, name: &str, flags: u32) -> Result<String> {
        self.acl.require(P::NetworkGetXmlDesc, net(name))?;
        self.nets.xml(name, flags)
    }
    /// `virNetworkGetBridgeName`.
    pub fn bridge_name(&self, name: &str) -> Result<String> {
        self.acl.require(P::NetworkGetBridgeName, net(name))?;
        self.nets.bridge_name(name)
    }
    /// `virNetworkIsActive`.
    pub fn is_active(&self, name: &str) -> Result<bool> {
        self.acl.require(P::NetworkIsActive, net(name))?;
        self.nets.is_active(name)
    }
    /// `virNetworkIsPersistent`.
    pub fn is_persistent(&self, name: &str) -> Result<bool> {
        self.acl.require(P::NetworkIsPersistent, net(name))?;
        self.nets.is_persistent(name)
    }
    /// `virNetworkGetAutostart`.
    pub fn autostart(&self, name: &str) -> Result<bool> {
        self.acl.require(P::NetworkGetAutostart, net(name))?;
        self.nets.autostart(name)
    }
    /// `virNetworkGetDHCPLeases`.
    pub fn dhcp_leases(&self, name: &str, mac: Option<&str>, flags: u32) -> Result<Vec<Lease>> {
        self.acl.require(P::NetworkGetDhcpLeases, net(name))?;
        self.nets.dhcp_leases(name, mac, flags)
    }
    /// `virNetworkDefineXMLFlags`.
    pub fn define(&self, xml: &str, flags: u32) -> Result<NetworkId> {
        let ops = self.writable("virNetworkDefineXML")?;
        let (name, uuid) = crate::acl::xml_identity(xml);
        self.acl.require(
            P::NetworkDefineXmlFlags,
            Object::Network { name: &name, uuid },
        )?;
        ops.define(xml, flags)
    }
    /// `virNetworkCreateXMLFlags`.
    pub fn create_xml(&self, xml: &str, flags: u32) -> Result<NetworkId> {
        let ops = self.writable("virNetworkCreateXML")?;
        let (name, uuid) = crate::acl::xml_identity(xml);
        self.acl.require(
            P::NetworkCreateXmlFlags,
            Object::Network { name: &name, uuid },
        )?;
        ops.create_xml(xml, flags)
    }
    /// `virNetworkUndefine`.
    pub fn undefine(&self, name: &str) -> Result<()> {
        let ops = self.writable("virNetworkUndefine")?;
        self.acl.require(P::NetworkUndefine, net(name))?;
        ops.undefine(name)
    }
    /// `virNetworkCreate`.
    pub fn create(&self, name: &str) -> Result<()> {
        let ops = self.writable("virNetworkCreate")?;
        self.acl.require(P::NetworkCreate, net(name))?;
        ops.create(name)
    }
    /// `virNetworkDestroy`.
    pub fn destroy(&self, name: &str) -> Result<()> {
        let ops = self.writable("virNetworkDestroy")?;
        self.acl.require(P::NetworkDestroy, net(name))?;
        ops.destroy(name)
    }
    /// `virNetworkSetAutostart`.
    pub fn set_autostart(&self, name: &str, on: bool) -> Result<()> {
        let ops = self.writable("virNetworkSetAutostart")?;
        self.acl.require(P::NetworkSetAutostart, net(name))?;
        ops.set_autostart(name, on)
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
        let ops = self.writable("virNetworkUpdate")?;
        self.acl.require(P::NetworkUpdate, net(name))?;
        /// `VIR_NETWORK_UPDATE_AFFECT_CONFIG`
        const AFFECT_CONFIG: u32 = 2;
        if flags & AFFECT_CONFIG != 0 {
            self.acl.require_perm("network:save", net(name))?;
        }
        ops.update(name, command, section, parent_index, xml, flags)
    }
    /// `virNetworkPortCreateXML`.
    pub fn port_create(&self, name: &str, xml: &str, flags: u32) -> Result<PortId> {
        let ops = self.writable("virNetworkPortCreateXML")?;
        let (_, uuid) = crate::acl::xml_identity(xml);
        self.acl.require(
            P::NetworkPortCreateXml,
            Object::Port {
                network: name,
                uuid,
            },
        )?;
        ops.port_create(name, xml, flags)
    }
    /// `virNetworkPortLookupByUUID`.
    pub fn port_lookup(&self, name: &str, port: uuid::Uuid) -> Result<PortId> {
        let p = self.nets.port_lookup(name, port)?;
        self.acl
            .require(P::NetworkPortLookupByUuid, port_obj(&p.net.name, p.uuid))?;
        Ok(p)
    }
    /// `virNetworkListAllPorts`.
    pub fn port_list(&self, name: &str, flags: u32) -> Result<Vec<PortId>> {
        self.acl.require(P::NetworkListAllPorts, net(name))?;
        let mut list = self.nets.port_list(name, flags)?;
        list.retain(|p| {
            self.acl
                .visible("network_port:getattr", port_obj(&p.net.name, p.uuid))
        });
        Ok(list)
    }
    /// `virNetworkPortGetXMLDesc`.
    pub fn port_xml(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<String> {
        self.acl
            .require(P::NetworkPortGetXmlDesc, port_obj(name, port))?;
        self.nets.port_xml(name, port, flags)
    }
    /// `virNetworkPortGetParameters`: the port's bandwidth parameters.
    pub fn port_parameters(
        &self,
        name: &str,
        port: uuid::Uuid,
        flags: u32,
    ) -> Result<Vec<(String, u64)>> {
        self.acl
            .require(P::NetworkPortGetParameters, port_obj(name, port))?;
        self.nets.port_parameters(name, port, flags)
    }
    /// `virNetworkPortSetParameters`.
    pub fn port_set_parameters(
        &self,
        name: &str,
        port: uuid::Uuid,
        params: &[(String, u64)],
        flags: u32,
    ) -> Result<()> {
        let ops = self.writable("virNetworkPortSetParameters")?;
        self.acl
            .require(P::NetworkPortSetParameters, port_obj(name, port))?;
        ops.port_set_parameters(name, port, params, flags)
    }
    /// `virNetworkPortDelete`.
    pub fn port_delete(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<()> {
        let ops = self.writable("virNetworkPortDelete")?;
        self.acl
            .require(P::NetworkPortDelete, port_obj(name, port))?;
        ops.port_delete(name, port, flags)
    }
    /// Subscribes to network lifecycle events; returns the subscription's id. Over a
    /// remote connection the first subscription registers with the daemon, which may fail.
    pub fn subscribe(&self, cb: NetworkEventCallback) -> Result<u64> {
        self.acl
            .require(P::ConnectNetworkEventRegisterAny, Object::Connect)?;
        let acl = self.acl.clone();
        self.nets.subscribe(Arc::new(move |e: &NetworkEvent| {
            let net = Object::Network {
                name: &e.name,
                uuid: Some(e.uuid),
            };
            if acl.visible("network:getattr", net) {
                cb(e)
            }
        }))
    }
    /// Drops a subscription.
    pub fn unsubscribe(&self, id: u64) -> Result<()> {
        self.nets.unsubscribe(id)
    }
}

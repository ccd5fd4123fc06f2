//! The network procedures of the remote driver: networks, their ports, DHCP leases and
//! network lifecycle events over the daemon connection.
//!
//! The service addresses networks by name; the daemon resolves handles by UUID, so each
//! call on a named network looks the name up first (as virsh does before acting).

use super::{RemoteBackend, lock};
use crate::Result;
use crate::network_api::NetworkOps;
use crate::networks::{Lease, NetworkEvent, NetworkEventCallback, NetworkId, PortId};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use rvirt_wire::protocol::{
    NETWORK_PORT_PARAMETERS_MAX, NonnullNetwork, NonnullNetworkPort, TypedParam, TypedParamValue,
};
use rvirt_wire::remote::*;
use rvirt_wire::{Frame, Procedure, procs};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// `VIR_NETWORK_EVENT_ID_LIFECYCLE`.
const NETWORK_EVENT_LIFECYCLE: i32 = 0;

fn net_id(n: NonnullNetwork) -> NetworkId {
    NetworkId {
        name: n.name,
        uuid: uuid::Uuid::from_bytes(n.uuid),
    }
}

fn port_id(p: NonnullNetworkPort) -> PortId {
    PortId {
        net: net_id(p.net),
        uuid: uuid::Uuid::from_bytes(p.uuid),
    }
}

fn lease(l: NetworkDhcpLease) -> Lease {
    Lease {
        iface: l.iface,
        expiry_time: l.expirytime,
        ip_type: l.r#type,
        mac: l.mac.unwrap_or_default(),
        iaid: l.iaid.unwrap_or_default(),
        ipaddr: l.ipaddr,
        prefix: l.prefix,
        hostname: l.hostname.unwrap_or_default(),
        clientid: l.clientid.unwrap_or_default(),
    }
}

impl super::Link {
    /// Runs the network event callbacks for an event message (called by the reader
    /// thread); events of a registration this connection no longer holds are dropped.
    pub(super) fn network_event(&self, f: &Frame) {
        let m = match f.body::<NetworkEventLifecycleMsg>() {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("undecodable network event: {e}");
                return;
            }
        };
        let callbacks = lock(&self.network_subscribers).callbacks_if(|r| r == m.callback_id);
        let ev = NetworkEvent {
            name: m.net.name,
            uuid: uuid::Uuid::from_bytes(m.net.uuid),
            event: m.event,
        };
        for cb in callbacks {
            if catch_unwind(AssertUnwindSafe(|| cb(&ev))).is_err() {
                tracing::warn!("a network event callback panicked");
            }
        }
    }
}

impl RemoteBackend {
    /// The daemon's handle on the network named `name`.
    fn net_handle(&self, name: &str) -> Result<NonnullNetwork> {
        Ok(self
            .call::<procs::NetworkLookupByName>(&NameArgs { name: name.into() })?
            .net)
    }

    fn net_call<P: Procedure<Args = NetworkArgs>>(&self, name: &str) -> Result<P::Ret> {
        let net = self.net_handle(name)?;
        self.call::<P>(&NetworkArgs { net })
    }

    fn port_handle(&self, name: &str, port: uuid::Uuid) -> Result<NonnullNetworkPort> {
        Ok(NonnullNetworkPort {
            net: self.net_handle(name)?,
            uuid: *port.as_bytes(),
        })
    }
}

impl NetworkOps for RemoteBackend {
    fn list(&self, flags: u32) -> Result<Vec<NetworkId>> {
        let ret = self.call::<procs::ConnectListAllNetworks>(&ListAllArgs {
            need_results: 1,
            flags,
        })?;
        Ok(ret.nets.into_iter().map(net_id).collect())
    }
    fn lookup_by_name(&self, name: &str) -> Result<NetworkId> {
        self.net_handle(name).map(net_id)
    }
    fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<NetworkId> {
        let a = UuidArgs {
            uuid: *uuid.as_bytes(),
        };
        Ok(net_id(self.call::<procs::NetworkLookupByUuid>(&a)?.net))
    }
    fn xml(&self, name: &str, flags: u32) -> Result<String> {
        let net = self.net_handle(name)?;
        Ok(self
            .call::<procs::NetworkGetXmlDesc>(&NetworkFlagsArgs { net, flags })?
            .xml)
    }
    fn bridge_name(&self, name: &str) -> Result<String> {
        Ok(self.net_call::<procs::NetworkGetBridgeName>(name)?.name)
    }
    fn is_active(&self, name: &str) -> Result<bool> {
        Ok(self.net_call::<procs::NetworkIsActive>(name)?.active != 0)
    }
    fn is_persistent(&self, name: &str) -> Result<bool> {
        Ok(self
            .net_call::<procs::NetworkIsPersistent>(name)?
            .persistent
            != 0)
    }
    fn autostart(&self, name: &str) -> Result<bool> {
        Ok(self.net_call::<procs::NetworkGetAutostart>(name)?.autostart != 0)
    }
    fn dhcp_leases(&self, name: &str, mac: Option<&str>, flags: u32) -> Result<Vec<Lease>> {
        let a = NetworkGetDhcpLeasesArgs {
            net: self.net_handle(name)?,
            mac: mac.map(str::to_string),
            need_results: 1,
            flags,
        };
        let ret = self.call::<procs::NetworkGetDhcpLeases>(&a)?;
        Ok(ret.leases.into_iter().map(lease).collect())
    }
    fn define(&self, xml: &str, flags: u32) -> Result<NetworkId> {
        let net = if flags == 0 {
            self.call::<procs::NetworkDefineXml>(&NetworkXmlArgs { xml: xml.into() })?
                .net
        } else {
            self.call::<procs::NetworkDefineXmlFlags>(&XmlFlagsArgs {
                xml: xml.into(),
                flags,
            })?
            .net
        };
        Ok(net_id(net))
    }
    fn create_xml(&self, xml: &str, flags: u32) -> Result<NetworkId> {
        let net = if flags == 0 {
            self.call::<procs::NetworkCreateXml>(&NetworkXmlArgs { xml: xml.into() })?
                .net
        } else {
            self.call::<procs::NetworkCreateXmlFlags>(&XmlFlagsArgs {
                xml: xml.into(),
                flags,
            })?
            .net
        };
        Ok(net_id(net))
    }
    fn undefine(&self, name: &str) -> Result<()> {
        self.net_call::<procs::NetworkUndefine>(name)
    }
    fn create(&self, name: &str) -> Result<()> {
        self.net_call::<procs::NetworkCreate>(name)
    }
    fn destroy(&self, name: &str) -> Result<()> {
        self.net_call::<procs::NetworkDestroy>(name)
    }
    fn set_autostart(&self, name: &str, on: bool) -> Result<()> {
        let a = NetworkSetAutostartArgs {
            net: self.net_handle(name)?,
            autostart: i32::from(on),
        };
        self.call::<procs::NetworkSetAutostart>(&a)
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
        // as libvirt's client: the section travels in `command` and the command in
        // `section` (the daemon swaps them back)
        let a = NetworkUpdateArgs {
            net: self.net_handle(name)?,
            command: section,
            section: command,
            parent_index,
            xml: xml.into(),
            flags,
        };
        self.call::<procs::NetworkUpdate>(&a)
    }
    fn port_create(&self, name: &str, xml: &str, flags: u32) -> Result<PortId> {
        let a = NetworkPortCreateXmlArgs {
            network: self.net_handle(name)?,
            xml: xml.into(),
            flags,
        };
        Ok(port_id(self.call::<procs::NetworkPortCreateXml>(&a)?.port))
    }
    fn port_lookup(&self, name: &str, port: uuid::Uuid) -> Result<PortId> {
        let a = NetworkPortLookupByUuidArgs {
            network: self.net_handle(name)?,
            uuid: *port.as_bytes(),
        };
        Ok(port_id(
            self.call::<procs::NetworkPortLookupByUuid>(&a)?.port,
        ))
    }
    fn port_list(&self, name: &str, flags: u32) -> Result<Vec<PortId>> {
        let a = NetworkListAllPortsArgs {
            network: self.net_handle(name)?,
            need_results: 1,
            flags,
        };
        let ret = self.call::<procs::NetworkListAllPorts>(&a)?;
        Ok(ret.ports.into_iter().map(port_id).collect())
    }
    fn port_xml(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<String> {
        let a = NetworkPortFlagsArgs {
            port: self.port_handle(name, port)?,
            flags,
        };
        Ok(self.call::<procs::NetworkPortGetXmlDesc>(&a)?.xml)
    }
    fn port_delete(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<()> {
        let a = NetworkPortFlagsArgs {
            port: self.port_handle(name, port)?,
            flags,
        };
        self.call::<procs::NetworkPortDelete>(&a)
    }
    fn port_parameters(
        &self,
        name: &str,
        port: uuid::Uuid,
        flags: u32,
    ) -> Result<Vec<(String, u64)>> {
        let a = NetworkPortGetParametersArgs {
            port: self.port_handle(name, port)?,
            nparams: NETWORK_PORT_PARAMETERS_MAX as i32,
            flags,
        };
        let ret = self.call::<procs::NetworkPortGetParameters>(&a)?;
        Ok(ret
            .params
            .into_iter()
            .filter_map(|p| p.value.as_u64().map(|v| (p.field, v)))
            .collect())
    }
    fn port_set_parameters(
        &self,
        name: &str,
        port: uuid::Uuid,
        params: &[(String, u64)],
        flags: u32,
    ) -> Result<()> {
        let mut out = Vec::new();
        for (k, v) in params {
            let v = u32::try_from(*v).map_err(|_| {
                crate::Error::driver(
                    ErrorCode::InvalidArg,
                    ErrorDomain::Network,
                    format!(
                        "invalid argument: network port parameter '{k}': {v} exceeds the protocol's unsigned int"
                    ),
                )
            })?;
            out.push(TypedParam {
                field: k.clone(),
                value: TypedParamValue::UInt(v),
            });
        }
        let a = NetworkPortSetParametersArgs {
            port: self.port_handle(name, port)?,
            params: out,
            flags,
        };
        self.call::<procs::NetworkPortSetParameters>(&a)
    }
    fn subscribe(&self, cb: NetworkEventCallback) -> Result<u64> {
        let _serial = lock(&self.link.registration);
        let (id, needs_remote) = lock(&self.link.network_subscribers).add(cb);
        if needs_remote {
            let registered = self.call::<procs::ConnectNetworkEventRegisterAny>(
                &ConnectNetworkEventRegisterAnyArgs {
                    event_id: NETWORK_EVENT_LIFECYCLE,
                    net: None,
                },
            );
            match registered {
                Ok(r) => lock(&self.link.network_subscribers).remote = Some(r.callback_id),
                Err(e) => {
                    lock(&self.link.network_subscribers).forget(id);
                    return Err(e);
                }
            }
        }
        Ok(id)
    }
    fn unsubscribe(&self, id: u64) -> Result<()> {
        let _serial = lock(&self.link.registration);
        let remote = lock(&self.link.network_subscribers).remove(id, "network event")?;
        if let Some(callback_id) = remote {
            self.call::<procs::ConnectNetworkEventDeregisterAny>(&CallbackIdArgs { callback_id })?;
        }
        Ok(())
    }
}

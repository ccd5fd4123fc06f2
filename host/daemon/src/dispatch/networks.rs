//! The network and network port procedures, and network lifecycle events, served from
//! the networks bound to the connection's URI (`rvirt_host::network_bind`).

use super::storage::{list_all, names_max};
use super::{CallResult, Failure, call, err, host_error, int};
use crate::client::{Client, NETWORK_EVENT_LIFECYCLE};
use rvirt_host::networks::{NetworkId, PortId, list_flags};
use rvirt_host::{Connection, NetworkService};
use rvirt_wire::RemoteProcedure as P;
use rvirt_wire::procs;
use rvirt_wire::protocol::{
    self, NonnullNetwork, NonnullNetworkPort, TypedParam, TypedParamValue, error_code, error_domain,
};
use rvirt_wire::remote::*;

fn nets(c: &Connection) -> Result<NetworkService, Failure> {
    c.networks().map_err(host_error)
}

/// The network a handle names: by UUID, as libvirt's daemon looks it up (a handle
/// whose name no longer matches still finds the network its UUID names).
fn name_of(n: &NetworkService, net: &NonnullNetwork) -> Result<String, Failure> {
    n.lookup_by_uuid(uuid::Uuid::from_bytes(net.uuid))
        .map(|i| i.name)
        .map_err(host_error)
}

fn wire_net(i: &NetworkId) -> NonnullNetwork {
    NonnullNetwork {
        name: i.name.clone(),
        uuid: *i.uuid.as_bytes(),
    }
}

fn wire_port(p: &PortId) -> NonnullNetworkPort {
    NonnullNetworkPort {
        net: wire_net(&p.net),
        uuid: *p.uuid.as_bytes(),
    }
}

fn net_ret(r: rvirt_host::Result<NetworkId>) -> Result<NetworkRet, Failure> {
    r.map(|i| NetworkRet { net: wire_net(&i) })
        .map_err(host_error)
}

fn names(c: &Connection, flags: u32, maxnames: i32) -> Result<NetworkNamesRet, Failure> {
    let max = names_max(maxnames, protocol::NETWORK_LIST_MAX, "networks")?;
    Ok(NetworkNamesRet {
        names: nets(c)?
            .list(flags)
            .map_err(host_error)?
            .into_iter()
            .map(|i| i.name)
            .take(max)
            .collect(),
    })
}

fn count(c: &Connection, flags: u32) -> Result<NumRet, Failure> {
    let n = nets(c)?.list(flags).map_err(host_error)?.len();
    Ok(NumRet {
        num: i32::try_from(n).unwrap_or(i32::MAX),
    })
}

/// Answers a network procedure; `None` if `procedure` is not one.
pub(super) fn dispatch(
    client: &Client,
    c: &Connection,
    procedure: P,
    payload: &[u8],
) -> Option<CallResult> {
    Some(match procedure {
        P::ConnectNumOfNetworks => {
            call::<procs::ConnectNumOfNetworks>(payload, |()| count(c, list_flags::ACTIVE))
        }
        P::ConnectNumOfDefinedNetworks => {
            call::<procs::ConnectNumOfDefinedNetworks>(payload, |()| count(c, list_flags::INACTIVE))
        }
        P::ConnectListNetworks => call::<procs::ConnectListNetworks>(payload, |a| {
            names(c, list_flags::ACTIVE, a.maxnames)
        }),
        P::ConnectListDefinedNetworks => call::<procs::ConnectListDefinedNetworks>(payload, |a| {
            names(c, list_flags::INACTIVE, a.maxnames)
        }),
        P::ConnectListAllNetworks => call::<procs::ConnectListAllNetworks>(payload, |a| {
            let all = nets(c)?.list(a.flags).map_err(host_error)?;
            let (nets, ret) = list_all(
                all,
                a.need_results,
                protocol::NETWORK_LIST_MAX,
                "networks",
                wire_net,
            )?;
            Ok(ConnectListAllNetworksRet { nets, ret })
        }),
        P::NetworkLookupByName => call::<procs::NetworkLookupByName>(payload, |a| {
            net_ret(nets(c)?.lookup_by_name(&a.name))
        }),
        P::NetworkLookupByUuid => call::<procs::NetworkLookupByUuid>(payload, |a| {
            net_ret(nets(c)?.lookup_by_uuid(uuid::Uuid::from_bytes(a.uuid)))
        }),
        P::NetworkCreateXml => {
            call::<procs::NetworkCreateXml>(payload, |a| net_ret(nets(c)?.create_xml(&a.xml, 0)))
        }
        P::NetworkCreateXmlFlags => call::<procs::NetworkCreateXmlFlags>(payload, |a| {
            net_ret(nets(c)?.create_xml(&a.xml, a.flags))
        }),
        P::NetworkDefineXml => {
            call::<procs::NetworkDefineXml>(payload, |a| net_ret(nets(c)?.define(&a.xml, 0)))
        }
        P::NetworkDefineXmlFlags => call::<procs::NetworkDefineXmlFlags>(payload, |a| {
            net_ret(nets(c)?.define(&a.xml, a.flags))
        }),
        P::NetworkUndefine => call::<procs::NetworkUndefine>(payload, |a| {
            let n = nets(c)?;
            n.undefine(&name_of(&n, &a.net)?).map_err(host_error)
        }),
        P::NetworkCreate => call::<procs::NetworkCreate>(payload, |a| {
            let n = nets(c)?;
            n.create(&name_of(&n, &a.net)?).map_err(host_error)
        }),
        P::NetworkDestroy => call::<procs::NetworkDestroy>(payload, |a| {
            let n = nets(c)?;
            n.destroy(&name_of(&n, &a.net)?).map_err(host_error)
        }),
        P::NetworkGetXmlDesc => call::<procs::NetworkGetXmlDesc>(payload, |a| {
            let n = nets(c)?;
            Ok(XmlRet {
                xml: n.xml(&name_of(&n, &a.net)?, a.flags).map_err(host_error)?,
            })
        }),
        P::NetworkGetBridgeName => call::<procs::NetworkGetBridgeName>(payload, |a| {
            let n = nets(c)?;
            Ok(NetworkGetBridgeNameRet {
                name: n.bridge_name(&name_of(&n, &a.net)?).map_err(host_error)?,
            })
        }),
        P::NetworkGetAutostart => call::<procs::NetworkGetAutostart>(payload, |a| {
            let n = nets(c)?;
            Ok(NetworkGetAutostartRet {
                autostart: int(n.autostart(&name_of(&n, &a.net)?).map_err(host_error)?),
            })
        }),
        P::NetworkSetAutostart => call::<procs::NetworkSetAutostart>(payload, |a| {
            let n = nets(c)?;
            n.set_autostart(&name_of(&n, &a.net)?, a.autostart != 0)
                .map_err(host_error)
        }),
        P::NetworkIsActive => call::<procs::NetworkIsActive>(payload, |a| {
            let n = nets(c)?;
            Ok(NetworkIsActiveRet {
                active: int(n.is_active(&name_of(&n, &a.net)?).map_err(host_error)?),
            })
        }),
        P::NetworkIsPersistent => call::<procs::NetworkIsPersistent>(payload, |a| {
            let n = nets(c)?;
            Ok(NetworkIsPersistentRet {
                persistent: int(n.is_persistent(&name_of(&n, &a.net)?).map_err(host_error)?),
            })
        }),
        P::NetworkUpdate => call::<procs::NetworkUpdate>(payload, |a| {
            let n = nets(c)?;
            // libvirt's clients put the section in the field named `command` and the
            // command in `section` (the public API's argument order, kept on the wire
            // since libvirt 1.0 for compatibility): read them the way virsh sends them.
            n.update(
                &name_of(&n, &a.net)?,
                a.section,
                a.command,
                a.parent_index,
                &a.xml,
                a.flags,
            )
            .map_err(host_error)
        }),
        P::NetworkGetDhcpLeases => call::<procs::NetworkGetDhcpLeases>(payload, |a| {
            let n = nets(c)?;
            let leases = n
                .dhcp_leases(&name_of(&n, &a.net)?, a.mac.as_deref(), a.flags)
                .map_err(host_error)?;
            let (leases, ret) = list_all(
                leases,
                a.need_results,
                protocol::NETWORK_DHCP_LEASES_MAX,
                "leases",
                |l| NetworkDhcpLease {
                    iface: l.iface.clone(),
                    expirytime: l.expiry_time,
                    r#type: l.ip_type,
                    mac: Some(l.mac.clone()).filter(|s| !s.is_empty()),
                    iaid: Some(l.iaid.clone()).filter(|s| !s.is_empty()),
                    ipaddr: l.ipaddr.clone(),
                    prefix: l.prefix,
                    hostname: Some(l.hostname.clone()).filter(|s| !s.is_empty()),
                    clientid: Some(l.clientid.clone()).filter(|s| !s.is_empty()),
                },
            )?;
            Ok(NetworkGetDhcpLeasesRet { leases, ret })
        }),
        P::NetworkListAllPorts => call::<procs::NetworkListAllPorts>(payload, |a| {
            let n = nets(c)?;
            let ports = n
                .port_list(&name_of(&n, &a.network)?, a.flags)
                .map_err(host_error)?;
            let (ports, ret) = list_all(
                ports,
                a.need_results,
                protocol::NETWORK_PORT_LIST_MAX,
                "network ports",
                wire_port,
            )?;
            Ok(NetworkListAllPortsRet { ports, ret })
        }),
        P::NetworkPortLookupByUuid => call::<procs::NetworkPortLookupByUuid>(payload, |a| {
            let n = nets(c)?;
            let p = n
                .port_lookup(&name_of(&n, &a.network)?, uuid::Uuid::from_bytes(a.uuid))
                .map_err(host_error)?;
            Ok(NetworkPortRet {
                port: wire_port(&p),
            })
        }),
        P::NetworkPortCreateXml => call::<procs::NetworkPortCreateXml>(payload, |a| {
            let n = nets(c)?;
            let p = n
                .port_create(&name_of(&n, &a.network)?, &a.xml, a.flags)
                .map_err(host_error)?;
            Ok(NetworkPortRet {
                port: wire_port(&p),
            })
        }),
        P::NetworkPortGetXmlDesc => call::<procs::NetworkPortGetXmlDesc>(payload, |a| {
            let n = nets(c)?;
            Ok(XmlRet {
                xml: n
                    .port_xml(
                        &name_of(&n, &a.port.net)?,
                        uuid::Uuid::from_bytes(a.port.uuid),
                        a.flags,
                    )
                    .map_err(host_error)?,
            })
        }),
        P::NetworkPortGetParameters => call::<procs::NetworkPortGetParameters>(payload, |a| {
            let n = nets(c)?;
            let params = n
                .port_parameters(
                    &name_of(&n, &a.port.net)?,
                    uuid::Uuid::from_bytes(a.port.uuid),
                    a.flags,
                )
                .map_err(host_error)?;
            let nparams = i32::try_from(params.len()).unwrap_or(i32::MAX);
            // nparams 0 asks how many there are (libvirt's two-step typed-parameter call)
            let params = if a.nparams == 0 {
                Vec::new()
            } else {
                params
                    .into_iter()
                    .take(usize::try_from(a.nparams).unwrap_or(0))
                    .map(|(field, v)| TypedParam {
                        field,
                        value: TypedParamValue::UInt(u32::try_from(v).unwrap_or(u32::MAX)),
                    })
                    .collect()
            };
            Ok(NetworkPortGetParametersRet { params, nparams })
        }),
        P::NetworkPortSetParameters => call::<procs::NetworkPortSetParameters>(payload, |a| {
            let n = nets(c)?;
            let mut params = Vec::new();
            for p in a.params {
                // libvirt's bandwidth parameters are unsigned ints
                let TypedParamValue::UInt(v) = p.value else {
                    return Err(err(
                        error_code::INVALID_ARG,
                        error_domain::NETWORK,
                        format!(
                            "invalid argument: parameter '{}' has unexpected type, expected unsigned int",
                            p.field
                        ),
                    ));
                };
                params.push((p.field, u64::from(v)));
            }
            n.port_set_parameters(
                &name_of(&n, &a.port.net)?,
                uuid::Uuid::from_bytes(a.port.uuid),
                &params,
                a.flags,
            )
            .map_err(host_error)
        }),
        P::NetworkPortDelete => call::<procs::NetworkPortDelete>(payload, |a| {
            let n = nets(c)?;
            n.port_delete(
                &name_of(&n, &a.port.net)?,
                uuid::Uuid::from_bytes(a.port.uuid),
                a.flags,
            )
            .map_err(host_error)
        }),
        P::ConnectNetworkEventRegisterAny => {
            call::<procs::ConnectNetworkEventRegisterAny>(payload, |a| {
                if a.event_id != NETWORK_EVENT_LIFECYCLE {
                    return Err(err(
                        error_code::INVALID_ARG,
                        error_domain::RPC,
                        format!(
                            "invalid argument: unsupported network event ID {}",
                            a.event_id
                        ),
                    ));
                }
                let callback_id = client.with_events(|ev| ev.add_network(a.net.map(|n| n.uuid)));
                if let Err(e) = client.ensure_network_subscribed() {
                    client.with_events(|ev| ev.remove_network(callback_id));
                    return Err(host_error(e));
                }
                Ok(CallbackIdRet { callback_id })
            })
        }
        P::ConnectNetworkEventDeregisterAny => {
            call::<procs::ConnectNetworkEventDeregisterAny>(payload, |a| {
                if client.with_events(|ev| ev.remove_network(a.callback_id)) {
                    Ok(())
                } else {
                    Err(err(
                        error_code::INVALID_ARG,
                        error_domain::RPC,
                        format!("network event callback {} not registered", a.callback_id),
                    ))
                }
            })
        }
        _ => return None,
    })
}

//! Argument and return types of the network and network port procedures (and the
//! network lifecycle event), from `remote_protocol.x`.
//!
//! One Rust type stands for every libvirt struct of the same layout (its doc comment
//! names them).

use crate::protocol::{
    NETWORK_DHCP_LEASES_MAX, NETWORK_LIST_MAX, NETWORK_PORT_LIST_MAX, NETWORK_PORT_PARAMETERS_MAX,
    NonnullNetwork, NonnullNetworkPort, TypedParam, Uuid,
};
use serde::{Deserialize, Serialize};

xdr_structs! {
    /// `connect_list_networks_ret` and `connect_list_defined_networks_ret`:
    /// `remote_nonnull_string names<REMOTE_NETWORK_LIST_MAX>`.
    NetworkNamesRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<NETWORK_LIST_MAX, _, _>")]
        names: Vec<String>,
    }
    /// `{remote_nonnull_string xml}`: `network_create_xml_args`, `network_define_xml_args`.
    NetworkXmlArgs { xml: String }
    /// `{remote_nonnull_network net}`: `network_{undefine, create, destroy,
    /// get_bridge_name, get_autostart, is_active, is_persistent}_args`.
    NetworkArgs { net: NonnullNetwork }
    /// `{remote_nonnull_network net; unsigned int flags}`: `network_get_xml_desc_args`.
    NetworkFlagsArgs { net: NonnullNetwork, flags: u32 }
    /// `{remote_nonnull_network net}` returned: `network_lookup_by_{name, uuid}_ret`,
    /// `network_{create, define}_xml{,_flags}_ret`.
    NetworkRet { net: NonnullNetwork }
    /// `remote_network_get_bridge_name_ret`.
    NetworkGetBridgeNameRet { name: String }
    /// `remote_network_get_autostart_ret`.
    NetworkGetAutostartRet { autostart: i32 }
    /// `remote_network_set_autostart_args`.
    NetworkSetAutostartArgs { net: NonnullNetwork, autostart: i32 }
    /// `remote_network_is_active_ret`.
    NetworkIsActiveRet { active: i32 }
    /// `remote_network_is_persistent_ret`.
    NetworkIsPersistentRet { persistent: i32 }
    /// `remote_network_update_args`. libvirt's clients send the update's section in
    /// `command` and its command in `section` (virsh's `net-update add ip-dhcp-host`
    /// arrives as `command = 4, section = 3`); the daemon swaps them back.
    NetworkUpdateArgs {
        net: NonnullNetwork,
        command: u32,
        section: u32,
        parent_index: i32,
        xml: String,
        flags: u32,
    }
    /// `remote_connect_list_all_networks_ret`.
    ConnectListAllNetworksRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<NETWORK_LIST_MAX, _, _>")]
        nets: Vec<NonnullNetwork>,
        ret: u32,
    }
    /// `remote_network_dhcp_lease`.
    NetworkDhcpLease {
        iface: String,
        expirytime: i64,
        r#type: i32,
        mac: Option<String>,
        iaid: Option<String>,
        ipaddr: String,
        prefix: u32,
        hostname: Option<String>,
        clientid: Option<String>,
    }
    /// `remote_network_get_dhcp_leases_args`.
    NetworkGetDhcpLeasesArgs { net: NonnullNetwork, mac: Option<String>, need_results: i32, flags: u32 }
    /// `remote_network_get_dhcp_leases_ret`.
    NetworkGetDhcpLeasesRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<NETWORK_DHCP_LEASES_MAX, _, _>")]
        leases: Vec<NetworkDhcpLease>,
        ret: u32,
    }
    /// `remote_connect_network_event_register_any_args`: `net` filters to one network.
    ConnectNetworkEventRegisterAnyArgs { event_id: i32, net: Option<NonnullNetwork> }
    /// `remote_network_event_lifecycle_msg`.
    NetworkEventLifecycleMsg { callback_id: i32, net: NonnullNetwork, event: i32, detail: i32 }

    // ----- network ports -----

    /// `remote_network_list_all_ports_args`.
    NetworkListAllPortsArgs { network: NonnullNetwork, need_results: i32, flags: u32 }
    /// `remote_network_list_all_ports_ret`.
    NetworkListAllPortsRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<NETWORK_PORT_LIST_MAX, _, _>")]
        ports: Vec<NonnullNetworkPort>,
        ret: u32,
    }
    /// `remote_network_port_lookup_by_uuid_args`.
    NetworkPortLookupByUuidArgs { network: NonnullNetwork, uuid: Uuid }
    /// `{remote_nonnull_network_port port}` returned: `network_port_lookup_by_uuid_ret`,
    /// `network_port_create_xml_ret`.
    NetworkPortRet { port: NonnullNetworkPort }
    /// `remote_network_port_create_xml_args`.
    NetworkPortCreateXmlArgs { network: NonnullNetwork, xml: String, flags: u32 }
    /// `{remote_nonnull_network_port port; unsigned int flags}`:
    /// `network_port_{get_xml_desc, delete}_args`.
    NetworkPortFlagsArgs { port: NonnullNetworkPort, flags: u32 }
    /// `remote_network_port_get_parameters_args`.
    NetworkPortGetParametersArgs { port: NonnullNetworkPort, nparams: i32, flags: u32 }
    /// `remote_network_port_get_parameters_ret`.
    NetworkPortGetParametersRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<NETWORK_PORT_PARAMETERS_MAX, _, _>")]
        params: Vec<TypedParam>,
        nparams: i32,
    }
    /// `remote_network_port_set_parameters_args`.
    NetworkPortSetParametersArgs {
        port: NonnullNetworkPort,
        #[serde(deserialize_with = "crate::xdr::bounded::<NETWORK_PORT_PARAMETERS_MAX, _, _>")]
        params: Vec<TypedParam>,
        flags: u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr;

    fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
        let bytes = xdr::to_vec(v).unwrap();
        let back: T = xdr::from_bytes(&bytes).unwrap();
        assert_eq!(&back, v);
    }

    fn net() -> NonnullNetwork {
        NonnullNetwork {
            name: "default".into(),
            uuid: [7; 16],
        }
    }

    #[test]
    fn network_types_round_trip() {
        round_trip(&NetworkUpdateArgs {
            net: net(),
            command: 3,
            section: 4,
            parent_index: -1,
            xml: "<host/>".into(),
            flags: 3,
        });
        round_trip(&NetworkGetDhcpLeasesRet {
            leases: vec![NetworkDhcpLease {
                iface: "virbr0".into(),
                expirytime: 1_700_000_000,
                r#type: 0,
                mac: Some("52:54:00:00:00:01".into()),
                iaid: None,
                ipaddr: "192.168.122.10".into(),
                prefix: 24,
                hostname: Some("vm".into()),
                clientid: None,
            }],
            ret: 1,
        });
        round_trip(&NetworkListAllPortsRet {
            ports: vec![NonnullNetworkPort {
                net: net(),
                uuid: [1; 16],
            }],
            ret: 1,
        });
        round_trip(&ConnectNetworkEventRegisterAnyArgs {
            event_id: 0,
            net: Some(net()),
        });
    }

    #[test]
    fn the_update_args_are_laid_out_as_libvirt_s() {
        // net (name: len 7 + "default" + 1 pad = 12, uuid 16), command, section,
        // parentIndex, xml (len 7 + "<host/>" + pad 1), flags.
        let bytes = xdr::to_vec(&NetworkUpdateArgs {
            net: net(),
            command: 1,
            section: 4,
            parent_index: -1,
            xml: "<host/>".into(),
            flags: 2,
        })
        .unwrap();
        assert_eq!(bytes.len(), 12 + 16 + 4 + 4 + 4 + 12 + 4);
        assert_eq!(&bytes[36..40], &(-1i32).to_be_bytes());
    }
}

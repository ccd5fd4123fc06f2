//! API 1.5, frozen. 1.5 appended the network facet to the root module: `NetworkFacet`
//! (facet 1.0), the `NetworkBackend` trait object and the values it answers, `PortPlug`
//! and `Lease`, copied here; and `network_port_create`/`network_port_delete` to
//! `HostServices`, so `HostServices` and the facets whose `open` takes it (`StorageFacet`)
//! are copied too. Everything else is 1.4's, reused from [`super::v1_4`]. Nothing
//! here refers to a type outside `frozen/` (abi_stable and std types excepted).
//!
//! 1.5 is the current minor: this copy is what the host checks a 1.5 plugin against once
//! a later minor exists.

pub use super::v1_4::{
    ConnectionUri, DomainInfo, DomainRef, DriverConnection, DriverConnection_TO,
    DriverConnectionBox, EventSink, EventSink_TO, EventSinkBox, FacetVersion, Manifest, NodeInfo,
    PResult, PluginError, PoolRefresh, StateReason, StorageBackend, StorageBackend_TO,
    StorageBackendBox, Stream, Stream_TO, StreamBox, UriParam, Uuid, VolumeSource,
};
use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RStr, RString, RVec},
};

fn host_lacks(operation: &str, domain: i32) -> PluginError {
    PluginError {
        code: 3,
        domain,
        message: RString::from(format!(
            "this function is not supported by the connection driver: {operation} (the host's services predate it)"
        )),
    }
}

#[sabi_trait]
pub trait HostServices: Send + Sync {
    fn system_root(&self) -> RString;
    fn secret_value(&self, usage_type: i32, usage_id: RStr<'_>) -> PResult<RVec<u8>>;
    #[sabi(last_prefix_field)]
    fn log(&self, level: u32, message: RStr<'_>);
    fn connection_uri(&self) -> PResult<ConnectionUri> {
        RResult::RErr(host_lacks("virConnectGetURI", 0))
    }
    fn volume_source(&self, _pool: RStr<'_>, _volume: RStr<'_>) -> PResult<VolumeSource> {
        RResult::RErr(host_lacks("virStorageVolGetPath", 18))
    }
    fn network_port_create(&self, _network: RStr<'_>, _port_xml: RStr<'_>) -> PResult<RString> {
        RResult::RErr(host_lacks("virNetworkPortCreateXML", 19))
    }
    fn network_port_delete(&self, _network: RStr<'_>, _port_uuid: RStr<'_>) -> PResult<()> {
        RResult::RErr(host_lacks("virNetworkPortDelete", 19))
    }
}

pub type HostServicesBox = HostServices_TO<'static, RBox<()>>;

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = StorageFacet_Ref)))]
pub struct StorageFacet {
    pub api: FacetVersion,
    pub pool_types: extern "C" fn() -> RVec<RString>,
    #[sabi(last_prefix_field)]
    pub open:
        extern "C" fn(pool_type: RStr<'_>, host: HostServicesBox) -> PResult<StorageBackendBox>,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PortPlug {
    pub plug_type: RString,
    pub bridge: RString,
    pub tap: RString,
    pub mtu: u32,
    pub port_xml: RString,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub iface: RString,
    pub expiry_time: i64,
    pub ip_type: i32,
    pub mac: RString,
    pub iaid: RString,
    pub ipaddr: RString,
    pub prefix: u32,
    pub hostname: RString,
    pub clientid: RString,
}

/// The no-support answer of the network backend's default bodies, as 1.5 wrote it.
fn no_support(operation: &str, mode: &str) -> PluginError {
    PluginError {
        code: 3,
        domain: 19,
        message: RString::from(format!(
            "this function is not supported by the connection driver: {operation} (network backend '{mode}')"
        )),
    }
}

#[sabi_trait]
pub trait NetworkBackend: Send + Sync {
    fn forward_mode(&self) -> RString;
    fn start_network(&self, _net_xml: RStr<'_>, _state_dir: RStr<'_>) -> PResult<RString> {
        RResult::RErr(no_support("virNetworkCreate", &self.forward_mode()))
    }
    fn stop_network(&self, _net_xml: RStr<'_>, _state_dir: RStr<'_>) -> PResult<()> {
        RResult::RErr(no_support("virNetworkDestroy", &self.forward_mode()))
    }
    fn check_network(&self, _net_xml: RStr<'_>, _state_dir: RStr<'_>) -> PResult<bool> {
        RResult::RErr(no_support("virNetworkIsActive", &self.forward_mode()))
    }
    fn plug_port(&self, _net_xml: RStr<'_>, _port_xml: RStr<'_>) -> PResult<PortPlug> {
        RResult::RErr(no_support("virNetworkPortCreateXML", &self.forward_mode()))
    }
    fn unplug_port(&self, _net_xml: RStr<'_>, _port_xml: RStr<'_>) -> PResult<()> {
        RResult::RErr(no_support("virNetworkPortDelete", &self.forward_mode()))
    }
    fn dhcp_leases(&self, _net_xml: RStr<'_>, _mac: RStr<'_>) -> PResult<RVec<Lease>> {
        RResult::RErr(no_support("virNetworkGetDHCPLeases", &self.forward_mode()))
    }
    #[sabi(last_prefix_field)]
    fn update(
        &self,
        _net_xml: RStr<'_>,
        _command: u32,
        _section: u32,
        _parent_index: i32,
        _xml: RStr<'_>,
        _flags: u32,
    ) -> PResult<()> {
        RResult::RErr(no_support("virNetworkUpdate", &self.forward_mode()))
    }
}

pub type NetworkBackendBox = NetworkBackend_TO<'static, RBox<()>>;

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = NetworkFacet_Ref)))]
pub struct NetworkFacet {
    pub api: FacetVersion,
    pub forward_modes: extern "C" fn() -> RVec<RString>,
    #[sabi(last_prefix_field)]
    pub open: extern "C" fn(mode: RStr<'_>, host: HostServicesBox) -> PResult<NetworkBackendBox>,
}

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginMod_Ref)))]
pub struct PluginMod {
    pub manifest: extern "C" fn() -> Manifest,
    #[sabi(last_prefix_field)]
    pub open: extern "C" fn(
        uri: RStr<'_>,
        read_only: bool,
        events: EventSinkBox,
    ) -> PResult<DriverConnectionBox>,
    pub storage: Option<StorageFacet_Ref>,
    pub open_with_host: Option<
        extern "C" fn(
            uri: RStr<'_>,
            read_only: bool,
            events: EventSinkBox,
            host: HostServicesBox,
        ) -> PResult<DriverConnectionBox>,
    >,
    pub network: Option<NetworkFacet_Ref>,
}

impl RootModule for PluginMod_Ref {
    declare_root_module_statics! {PluginMod_Ref}
    const BASE_NAME: &'static str = "rvirt_plugin";
    const NAME: &'static str = "rvirt_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

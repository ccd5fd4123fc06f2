//! API 1.6, frozen. 1.6 appended `storage_pool_xml` to `HostServices` and
//! `domain_xml_from_native` to `DriverConnection`, so both traits, the facets whose `open`
//! takes the host services (`StorageFacet`, `NetworkFacet`) and the root module are
//! copied here. Everything else is 1.5's, reused
//! from [`super::v1_5`] (which reuses 1.4's). Nothing here refers to a type outside
//! `frozen/` (abi_stable and std types excepted).
//!
//! 1.6 is the current minor: this copy is what the host checks a 1.6 plugin against once
//! a later minor exists.

pub use super::v1_5::{
    ConnectionUri, DomainInfo, DomainRef, EventSink, EventSink_TO, EventSinkBox, FacetVersion,
    Lease, Manifest, NetworkBackend, NetworkBackend_TO, NetworkBackendBox, NodeInfo, PResult,
    PluginError, PoolRefresh, PortPlug, StateReason, StorageBackend, StorageBackend_TO,
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
    fn storage_pool_xml(&self, _pool: RStr<'_>) -> PResult<RString> {
        RResult::RErr(host_lacks("virStoragePoolGetXMLDesc", 18))
    }
}

pub type HostServicesBox = HostServices_TO<'static, RBox<()>>;

#[sabi_trait]
pub trait DriverConnection: Send + Sync {
    fn get_type(&self) -> PResult<RString>;
    fn get_version(&self) -> PResult<u64>;
    fn get_uri(&self) -> PResult<RString>;
    fn get_hostname(&self) -> PResult<RString>;
    fn get_capabilities(&self) -> PResult<RString>;
    fn node_get_info(&self) -> PResult<NodeInfo>;
    fn list_all_domains(&self, flags: u32) -> PResult<RVec<DomainRef>>;
    fn lookup_by_name(&self, name: RStr<'_>) -> PResult<DomainRef>;
    fn lookup_by_uuid(&self, uuid: Uuid) -> PResult<DomainRef>;
    fn lookup_by_id(&self, id: i32) -> PResult<DomainRef>;
    fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef>;
    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()>;
    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef>;
    fn create_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef>;
    fn destroy(&self, uuid: Uuid, flags: u32) -> PResult<()>;
    fn shutdown(&self, uuid: Uuid, flags: u32) -> PResult<()>;
    fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()>;
    fn suspend(&self, uuid: Uuid) -> PResult<()>;
    fn resume(&self, uuid: Uuid) -> PResult<()>;
    fn get_info(&self, uuid: Uuid) -> PResult<DomainInfo>;
    fn get_state(&self, uuid: Uuid) -> PResult<StateReason>;
    fn get_xml_desc(&self, uuid: Uuid, flags: u32) -> PResult<RString>;
    fn is_persistent(&self, uuid: Uuid) -> PResult<bool>;
    fn get_autostart(&self, uuid: Uuid) -> PResult<bool>;
    #[sabi(last_prefix_field)]
    fn set_autostart(&self, uuid: Uuid, autostart: bool) -> PResult<()>;

    // ---- API 1.1 ----
    fn get_vcpus_flags(&self, _uuid: Uuid, _flags: u32) -> PResult<i32> {
        RResult::RErr(PluginError::no_support("virDomainGetVcpusFlags"))
    }
    fn get_os_type(&self, _uuid: Uuid) -> PResult<RString> {
        RResult::RErr(PluginError::no_support("virDomainGetOSType"))
    }
    fn has_managed_save_image(&self, _uuid: Uuid, _flags: u32) -> PResult<bool> {
        RResult::RErr(PluginError::no_support("virDomainHasManagedSaveImage"))
    }

    // ---- API 1.2 ----
    fn domain_xml_to_native(
        &self,
        _format: RStr<'_>,
        _xml: RStr<'_>,
        _flags: u32,
    ) -> PResult<RString> {
        RResult::RErr(PluginError::no_support("virConnectDomainXMLToNative"))
    }

    // ---- API 1.6 ----
    fn domain_xml_from_native(
        &self,
        _format: RStr<'_>,
        _config: RStr<'_>,
        _flags: u32,
    ) -> PResult<RString> {
        RResult::RErr(PluginError::no_support("virConnectDomainXMLFromNative"))
    }
}

pub type DriverConnectionBox = DriverConnection_TO<'static, RBox<()>>;

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

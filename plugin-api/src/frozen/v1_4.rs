//! API 1.4, frozen. 1.4 appended `connection_uri` and `volume_source` to `HostServices`
//! (with the values they answer, `ConnectionUri`, `UriParam` and `VolumeSource`) and
//! `open_with_host` to the root module: hypervisor connections are opened with the host's
//! services. `StorageFacet` is copied because its `open` takes the grown `HostServices`;
//! the connection, the event sink, the values, the storage backend, the stream,
//! `PoolRefresh` and `FacetVersion` are 1.3's, reused from [`super::v1_3`]. Nothing here
//! refers to a type outside `frozen/` (abi_stable and std types excepted).
//!
//! 1.4 is the current minor: this copy is what the host checks a 1.4 plugin against once
//! a later minor exists.

pub use super::v1_3::{
    DomainInfo, DomainRef, DriverConnection, DriverConnection_TO, DriverConnectionBox, EventSink,
    EventSink_TO, EventSinkBox, FacetVersion, Manifest, NodeInfo, PResult, PluginError,
    PoolRefresh, StateReason, StorageBackend, StorageBackend_TO, StorageBackendBox, Stream,
    Stream_TO, StreamBox, Uuid,
};
use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RStr, RString, RVec},
};

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct VolumeSource {
    pub disk_type: RString,
    pub path: RString,
    pub format: RString,
    pub pool_type: RString,
    pub volume_xml: RString,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct UriParam {
    pub name: RString,
    pub value: RString,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ConnectionUri {
    pub original: RString,
    pub driver: RString,
    pub path: RString,
    pub params: RVec<UriParam>,
}

/// The no-support answer of the appended host-services methods, as 1.4 wrote it.
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
}

impl RootModule for PluginMod_Ref {
    declare_root_module_statics! {PluginMod_Ref}
    const BASE_NAME: &'static str = "rvirt_plugin";
    const NAME: &'static str = "rvirt_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

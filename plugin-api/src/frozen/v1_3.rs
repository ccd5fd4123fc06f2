//! API 1.3, frozen. 1.3 appended the storage facet to the root module: `StorageFacet`
//! (facet 1.0), the `StorageBackend`, `Stream` and `HostServices` trait objects and
//! `PoolRefresh`, copied here. The connection, the event sink and the values are 1.2's
//! (themselves 1.0's and 1.2's), reused from [`super::v1_2`]. Nothing here refers to a type
//! outside `frozen/` (abi_stable and std types excepted).
//!
//! 1.3 is the current minor: this copy is what the host checks a 1.3 plugin against once
//! a later minor exists.

pub use super::v1_2::{
    DomainInfo, DomainRef, DriverConnection, DriverConnection_TO, DriverConnectionBox, EventSink,
    EventSink_TO, EventSinkBox, Manifest, NodeInfo, PResult, PluginError, StateReason, Uuid,
};
use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RSlice, RStr, RString, RVec},
};

#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FacetVersion {
    pub major: u32,
    pub minor: u32,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PoolRefresh {
    pub capacity: u64,
    pub allocation: u64,
    pub available: u64,
    pub volumes: RVec<RString>,
}

#[sabi_trait]
pub trait HostServices: Send + Sync {
    fn system_root(&self) -> RString;
    fn secret_value(&self, usage_type: i32, usage_id: RStr<'_>) -> PResult<RVec<u8>>;
    #[sabi(last_prefix_field)]
    fn log(&self, level: u32, message: RStr<'_>);
}

pub type HostServicesBox = HostServices_TO<'static, RBox<()>>;

#[sabi_trait]
pub trait Stream: Send {
    fn send(&mut self, data: RSlice<'_, u8>) -> PResult<()>;
    fn recv(&mut self, max: u64) -> PResult<RVec<u8>>;
    fn finish(&mut self) -> PResult<()>;
    #[sabi(last_prefix_field)]
    fn abort(&mut self) -> PResult<()>;
}

pub type StreamBox = Stream_TO<'static, RBox<()>>;

/// The no-support answer of the storage backend's default bodies, as 1.3 wrote it.
fn no_support(operation: &str, pool_type: &str) -> PluginError {
    PluginError {
        code: 3,
        domain: 18,
        message: RString::from(format!(
            "this function is not supported by the connection driver: {operation} (storage backend '{pool_type}')"
        )),
    }
}

#[sabi_trait]
pub trait StorageBackend: Send + Sync {
    fn pool_type(&self) -> RString;
    fn check_pool(&self, _pool_xml: RStr<'_>) -> PResult<bool> {
        RResult::RErr(no_support("virStoragePoolIsActive", &self.pool_type()))
    }
    fn build_pool(&self, _pool_xml: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(no_support("virStoragePoolBuild", &self.pool_type()))
    }
    fn start_pool(&self, _pool_xml: RStr<'_>) -> PResult<()> {
        RResult::RErr(no_support("virStoragePoolCreate", &self.pool_type()))
    }
    fn stop_pool(&self, _pool_xml: RStr<'_>) -> PResult<()> {
        RResult::RErr(no_support("virStoragePoolDestroy", &self.pool_type()))
    }
    fn delete_pool(&self, _pool_xml: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(no_support("virStoragePoolDelete", &self.pool_type()))
    }
    fn refresh_pool(&self, _pool_xml: RStr<'_>) -> PResult<PoolRefresh> {
        RResult::RErr(no_support("virStoragePoolRefresh", &self.pool_type()))
    }
    fn create_volume(
        &self,
        _pool_xml: RStr<'_>,
        _vol_xml: RStr<'_>,
        _flags: u32,
    ) -> PResult<RString> {
        RResult::RErr(no_support("virStorageVolCreateXML", &self.pool_type()))
    }
    fn create_volume_from(
        &self,
        _pool_xml: RStr<'_>,
        _vol_xml: RStr<'_>,
        _src_pool_xml: RStr<'_>,
        _src_vol_xml: RStr<'_>,
        _flags: u32,
    ) -> PResult<RString> {
        RResult::RErr(no_support("virStorageVolCreateXMLFrom", &self.pool_type()))
    }
    fn delete_volume(&self, _pool_xml: RStr<'_>, _vol_xml: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(no_support("virStorageVolDelete", &self.pool_type()))
    }
    fn resize_volume(
        &self,
        _pool_xml: RStr<'_>,
        _vol_xml: RStr<'_>,
        _capacity: u64,
        _flags: u32,
    ) -> PResult<()> {
        RResult::RErr(no_support("virStorageVolResize", &self.pool_type()))
    }
    fn wipe_volume(
        &self,
        _pool_xml: RStr<'_>,
        _vol_xml: RStr<'_>,
        _algorithm: u32,
        _flags: u32,
    ) -> PResult<()> {
        RResult::RErr(no_support("virStorageVolWipePattern", &self.pool_type()))
    }
    fn refresh_volume(&self, _pool_xml: RStr<'_>, _vol_xml: RStr<'_>) -> PResult<RString> {
        RResult::RErr(no_support("virStorageVolGetXMLDesc", &self.pool_type()))
    }
    fn upload(
        &self,
        _pool_xml: RStr<'_>,
        _vol_xml: RStr<'_>,
        _offset: u64,
        _length: u64,
        _flags: u32,
    ) -> PResult<StreamBox> {
        RResult::RErr(no_support("virStorageVolUpload", &self.pool_type()))
    }
    fn download(
        &self,
        _pool_xml: RStr<'_>,
        _vol_xml: RStr<'_>,
        _offset: u64,
        _length: u64,
        _flags: u32,
    ) -> PResult<StreamBox> {
        RResult::RErr(no_support("virStorageVolDownload", &self.pool_type()))
    }
    #[sabi(last_prefix_field)]
    fn find_pool_sources(&self, _source_spec_xml: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(no_support(
            "virConnectFindStoragePoolSources",
            &self.pool_type(),
        ))
    }
}

pub type StorageBackendBox = StorageBackend_TO<'static, RBox<()>>;

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
}

impl RootModule for PluginMod_Ref {
    declare_root_module_statics! {PluginMod_Ref}
    const BASE_NAME: &'static str = "rvirt_plugin";
    const NAME: &'static str = "rvirt_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

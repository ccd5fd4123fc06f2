//! API 1.10, frozen. 1.10 appended connection-owned storage pools and networks to
//! `DriverConnection` (`extension`, the 64th and last slot of its vtable, returning the
//! second vtable `ConnExtension` with `conn_storage`, `conn_network` and
//! `set_memory_stats_period`) and added the
//! objects and values they return (`ConnExtension`, `ConnStorage`, `ConnNetwork`, `OwnedPool`, `OwnedPoolInfo`, `OwnedVol`,
//! `OwnedVolInfo`, `OwnedNetwork`), and appended `domain_device_removed` to the host's
//! `EventSink`, so those, the traits and the root module whose `open` takes and returns
//! them are copied here. Everything else is 1.9's, reused from [`super::v1_9`].
//! Nothing here refers to a type outside `frozen/` (abi_stable and std types excepted).
//!
//! 1.10 is the current minor: this copy is what the host checks a 1.10 plugin against
//! once a later minor exists.

pub use super::v1_9::{
    ConnectionUri, DomainInfo, DomainRef, FacetVersion, HostServices, HostServices_TO,
    HostServicesBox, JobStats, Lease, Manifest, MigrateFinish, MigrateStep, NetworkBackend,
    NetworkBackend_TO, NetworkBackendBox, NetworkFacet, NetworkFacet_Ref, NodeInfo, PResult,
    PluginError, PoolRefresh, PortPlug, Screenshot, StateReason, StorageBackend, StorageBackend_TO,
    StorageBackendBox, StorageFacet, StorageFacet_Ref, Stream, Stream_TO, StreamBox, TypedParam,
    TypedValue, UriParam, Uuid, VolumeSource,
};

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec},
};

// ---- API 1.10: the event sink's device removals ----

#[sabi_trait]
pub trait EventSink: Send + Sync {
    #[sabi(last_prefix_field)]
    fn domain_lifecycle(&self, dom: DomainRef, event: i32, detail: i32);

    fn domain_device_removed(&self, _dom: DomainRef, _alias: RStr<'_>) {}
}

pub type EventSinkBox = EventSink_TO<'static, RBox<()>>;

// ---- API 1.10: connection-owned storage pools and networks ----

#[repr(C)]
#[derive(StableAbi)]
pub struct OwnedPool {
    pub name: RString,
    pub uuid: Uuid,
    pub active: bool,
    pub persistent: bool,
    pub autostart: bool,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct OwnedPoolInfo {
    pub state: i32,
    pub capacity: u64,
    pub allocation: u64,
    pub available: u64,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct OwnedVol {
    pub pool: RString,
    pub name: RString,
    pub key: RString,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct OwnedVolInfo {
    pub kind: i32,
    pub capacity: u64,
    pub allocation: u64,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct OwnedNetwork {
    pub name: RString,
    pub uuid: Uuid,
    pub active: bool,
    pub persistent: bool,
    pub autostart: bool,
}

#[sabi_trait]
pub trait ConnStorage: Send + Sync {
    fn list_pools(&self, _flags: u32) -> PResult<RVec<OwnedPool>> {
        RResult::RErr(PluginError::no_support("virConnectListAllStoragePools"))
    }
    fn pool_by_name(&self, _name: RStr<'_>) -> PResult<OwnedPool> {
        RResult::RErr(PluginError::no_support("virStoragePoolLookupByName"))
    }
    fn pool_by_uuid(&self, _uuid: Uuid) -> PResult<OwnedPool> {
        RResult::RErr(PluginError::no_support("virStoragePoolLookupByUUID"))
    }
    fn pool_info(&self, _pool: RStr<'_>) -> PResult<OwnedPoolInfo> {
        RResult::RErr(PluginError::no_support("virStoragePoolGetInfo"))
    }
    fn pool_xml(&self, _pool: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(PluginError::no_support("virStoragePoolGetXMLDesc"))
    }
    fn pool_refresh(&self, _pool: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virStoragePoolRefresh"))
    }
    fn list_volumes(&self, _pool: RStr<'_>, _flags: u32) -> PResult<RVec<OwnedVol>> {
        RResult::RErr(PluginError::no_support("virStoragePoolListAllVolumes"))
    }
    fn volume_by_name(&self, _pool: RStr<'_>, _name: RStr<'_>) -> PResult<OwnedVol> {
        RResult::RErr(PluginError::no_support("virStorageVolLookupByName"))
    }
    fn volume_by_key(&self, _key: RStr<'_>) -> PResult<OwnedVol> {
        RResult::RErr(PluginError::no_support("virStorageVolLookupByKey"))
    }
    fn volume_by_path(&self, _path: RStr<'_>) -> PResult<OwnedVol> {
        RResult::RErr(PluginError::no_support("virStorageVolLookupByPath"))
    }
    fn volume_info(&self, _pool: RStr<'_>, _name: RStr<'_>, _flags: u32) -> PResult<OwnedVolInfo> {
        RResult::RErr(PluginError::no_support("virStorageVolGetInfoFlags"))
    }
    fn volume_xml(&self, _pool: RStr<'_>, _name: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(PluginError::no_support("virStorageVolGetXMLDesc"))
    }
    fn volume_path(&self, _pool: RStr<'_>, _name: RStr<'_>) -> PResult<RString> {
        RResult::RErr(PluginError::no_support("virStorageVolGetPath"))
    }
    fn create_volume(&self, _pool: RStr<'_>, _xml: RStr<'_>, _flags: u32) -> PResult<OwnedVol> {
        RResult::RErr(PluginError::no_support("virStorageVolCreateXML"))
    }
    fn create_volume_from(
        &self,
        _pool: RStr<'_>,
        _xml: RStr<'_>,
        _from_pool: RStr<'_>,
        _from_name: RStr<'_>,
        _flags: u32,
    ) -> PResult<OwnedVol> {
        RResult::RErr(PluginError::no_support("virStorageVolCreateXMLFrom"))
    }
    #[sabi(last_prefix_field)]
    fn delete_volume(&self, _pool: RStr<'_>, _name: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virStorageVolDelete"))
    }
}

pub type ConnStorageBox = ConnStorage_TO<'static, RBox<()>>;

#[sabi_trait]
pub trait ConnNetwork: Send + Sync {
    fn list_networks(&self, _flags: u32) -> PResult<RVec<OwnedNetwork>> {
        RResult::RErr(PluginError::no_support("virConnectListAllNetworks"))
    }
    fn network_by_name(&self, _name: RStr<'_>) -> PResult<OwnedNetwork> {
        RResult::RErr(PluginError::no_support("virNetworkLookupByName"))
    }
    fn network_by_uuid(&self, _uuid: Uuid) -> PResult<OwnedNetwork> {
        RResult::RErr(PluginError::no_support("virNetworkLookupByUUID"))
    }
    #[sabi(last_prefix_field)]
    fn network_xml(&self, _name: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(PluginError::no_support("virNetworkGetXMLDesc"))
    }
}

pub type ConnNetworkBox = ConnNetwork_TO<'static, RBox<()>>;

#[sabi_trait]
pub trait ConnExtension: Send + Sync {
    fn conn_storage(&self) -> PResult<ROption<ConnStorageBox>> {
        RResult::RErr(PluginError::no_support("virConnectListAllStoragePools"))
    }
    fn conn_network(&self) -> PResult<ROption<ConnNetworkBox>> {
        RResult::RErr(PluginError::no_support("virConnectListAllNetworks"))
    }
    #[sabi(last_prefix_field)]
    fn set_memory_stats_period(&self, _uuid: Uuid, _period: i32, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainSetMemoryStatsPeriod"))
    }
}

pub type ConnExtensionBox = ConnExtension_TO<'static, RBox<()>>;

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

    // ---- API 1.7 ----
    fn set_memory_flags(&self, _uuid: Uuid, _kib: u64, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainSetMemoryFlags"))
    }
    fn set_vcpus_flags(&self, _uuid: Uuid, _nvcpus: u32, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainSetVcpusFlags"))
    }
    fn attach_device_flags(&self, _uuid: Uuid, _xml: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainAttachDeviceFlags"))
    }
    fn detach_device_flags(&self, _uuid: Uuid, _xml: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainDetachDeviceFlags"))
    }
    fn snapshot_create_xml(&self, _uuid: Uuid, _xml: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(PluginError::no_support("virDomainSnapshotCreateXML"))
    }
    fn snapshot_list(&self, _uuid: Uuid, _flags: u32) -> PResult<RVec<RString>> {
        RResult::RErr(PluginError::no_support("virDomainListAllSnapshots"))
    }
    fn snapshot_list_children(
        &self,
        _uuid: Uuid,
        _name: RStr<'_>,
        _flags: u32,
    ) -> PResult<RVec<RString>> {
        RResult::RErr(PluginError::no_support("virDomainSnapshotListAllChildren"))
    }
    fn snapshot_get_xml_desc(&self, _uuid: Uuid, _name: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(PluginError::no_support("virDomainSnapshotGetXMLDesc"))
    }
    fn snapshot_current(&self, _uuid: Uuid, _flags: u32) -> PResult<RString> {
        RResult::RErr(PluginError::no_support("virDomainSnapshotCurrent"))
    }
    fn snapshot_get_parent(&self, _uuid: Uuid, _name: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(PluginError::no_support("virDomainSnapshotGetParent"))
    }
    fn snapshot_revert(&self, _uuid: Uuid, _name: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainRevertToSnapshot"))
    }
    fn snapshot_delete(&self, _uuid: Uuid, _name: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainSnapshotDelete"))
    }

    // ---- API 1.8 ----
    fn save_flags(
        &self,
        _uuid: Uuid,
        _path: RStr<'_>,
        _dxml: RStr<'_>,
        _flags: u32,
    ) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainSaveFlags"))
    }
    fn restore_flags(&self, _path: RStr<'_>, _dxml: RStr<'_>, _flags: u32) -> PResult<DomainRef> {
        RResult::RErr(PluginError::no_support("virDomainRestoreFlags"))
    }
    fn save_image_get_xml_desc(&self, _path: RStr<'_>, _flags: u32) -> PResult<RString> {
        RResult::RErr(PluginError::no_support("virDomainSaveImageGetXMLDesc"))
    }
    fn save_image_define_xml(&self, _path: RStr<'_>, _dxml: RStr<'_>, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainSaveImageDefineXML"))
    }
    fn managed_save(&self, _uuid: Uuid, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainManagedSave"))
    }
    fn managed_save_remove(&self, _uuid: Uuid, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainManagedSaveRemove"))
    }
    fn domain_stats(&self, _uuid: Uuid, _stats: u32, _flags: u32) -> PResult<RVec<TypedParam>> {
        RResult::RErr(PluginError::no_support("virConnectGetAllDomainStats"))
    }
    fn block_stats_flags(
        &self,
        _uuid: Uuid,
        _disk: RStr<'_>,
        _flags: u32,
    ) -> PResult<RVec<TypedParam>> {
        RResult::RErr(PluginError::no_support("virDomainBlockStatsFlags"))
    }
    fn interface_stats(&self, _uuid: Uuid, _device: RStr<'_>) -> PResult<RVec<TypedParam>> {
        RResult::RErr(PluginError::no_support("virDomainInterfaceStats"))
    }
    fn memory_stats(&self, _uuid: Uuid, _flags: u32) -> PResult<RVec<TypedParam>> {
        RResult::RErr(PluginError::no_support("virDomainMemoryStats"))
    }
    fn get_job_stats(&self, _uuid: Uuid, _flags: u32) -> PResult<JobStats> {
        RResult::RErr(PluginError::no_support("virDomainGetJobStats"))
    }
    fn get_cpu_stats(
        &self,
        _uuid: Uuid,
        _start_cpu: i32,
        _ncpus: u32,
        _flags: u32,
    ) -> PResult<RVec<RVec<TypedParam>>> {
        RResult::RErr(PluginError::no_support("virDomainGetCPUStats"))
    }

    // ---- API 1.9 ----
    fn migrate_begin(
        &self,
        _uuid: Uuid,
        _params: RVec<TypedParam>,
        _flags: u32,
    ) -> PResult<MigrateStep> {
        RResult::RErr(PluginError::no_support("virDomainMigrateBegin3Params"))
    }
    fn migrate_prepare(
        &self,
        _params: RVec<TypedParam>,
        _cookie: RVec<u8>,
        _flags: u32,
    ) -> PResult<MigrateStep> {
        RResult::RErr(PluginError::no_support("virDomainMigratePrepare3Params"))
    }
    fn migrate_perform(
        &self,
        _uuid: Uuid,
        _params: RVec<TypedParam>,
        _cookie: RVec<u8>,
        _flags: u32,
    ) -> PResult<MigrateStep> {
        RResult::RErr(PluginError::no_support("virDomainMigratePerform3Params"))
    }
    fn migrate_finish(
        &self,
        _params: RVec<TypedParam>,
        _cookie: RVec<u8>,
        _flags: u32,
        _cancelled: bool,
    ) -> PResult<MigrateFinish> {
        RResult::RErr(PluginError::no_support("virDomainMigrateFinish3Params"))
    }
    fn migrate_confirm(
        &self,
        _uuid: Uuid,
        _params: RVec<TypedParam>,
        _cookie: RVec<u8>,
        _flags: u32,
        _cancelled: bool,
    ) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainMigrateConfirm3Params"))
    }
    fn abort_job(&self, _uuid: Uuid, _flags: u32) -> PResult<()> {
        RResult::RErr(PluginError::no_support("virDomainAbortJob"))
    }
    fn screenshot(&self, _uuid: Uuid, _screen: u32, _flags: u32) -> PResult<Screenshot> {
        RResult::RErr(PluginError::no_support("virDomainScreenshot"))
    }

    // ---- API 1.10: connection-owned storage pools and networks ----
    fn extension(&self) -> PResult<ConnExtensionBox> {
        RResult::RErr(PluginError::no_support(
            "virConnectOpen (connection extensions)",
        ))
    }
}

pub type DriverConnectionBox = DriverConnection_TO<'static, RBox<()>>;

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

//! Connection-owned storage pools and networks (plugin API 1.10) of an isolated plugin:
//! when the plugin host process says the connection owns them (rvirt's own
//! `virConnectSupportsFeature` numbers, [`rvirt_host::backend::feature`]), the daemon's
//! connection sends every storage (network) call to that process, through the same link
//! and with the same hang and crash handling as the domain calls.

use super::Inner;
use rvirt_host::networks::{Lease, NetworkEventCallback, NetworkId, PortId};
use rvirt_host::storage::{PoolEventCallback, PoolId, PoolInfo, VolumeId, VolumeInfo};
use rvirt_host::{NetworkOps, Result, StorageService, StreamIo};
use std::sync::Arc;

/// The storage of an isolated connection that owns it.
pub(crate) struct IsolatedStorage(pub(crate) Arc<Inner>);

/// The networks of an isolated connection that owns them.
pub(crate) struct IsolatedNetworks(pub(crate) Arc<Inner>);

impl StorageService for IsolatedStorage {
    fn list_pools(&self, flags: u32) -> Result<Vec<PoolId>> {
        self.0
            .call("virConnectListAllStoragePools", |r| r.list_pools(flags))
    }
    fn pool_by_name(&self, name: &str) -> Result<PoolId> {
        self.0
            .call("virStoragePoolLookupByName", |r| r.pool_by_name(name))
    }
    fn pool_by_uuid(&self, uuid: uuid::Uuid) -> Result<PoolId> {
        self.0
            .call("virStoragePoolLookupByUUID", |r| r.pool_by_uuid(uuid))
    }
    fn pool_by_target_path(&self, path: &str) -> Result<PoolId> {
        self.0.call("virStoragePoolLookupByTargetPath", |r| {
            r.pool_by_target_path(path)
        })
    }
    fn pool_by_volume(&self, vol: &VolumeId) -> Result<PoolId> {
        self.0
            .call("virStoragePoolLookupByVolume", |r| r.pool_by_volume(vol))
    }
    fn define_pool(&self, xml: &str, flags: u32) -> Result<PoolId> {
        self.0
            .call("virStoragePoolDefineXML", |r| r.define_pool(xml, flags))
    }
    fn create_pool_xml(&self, xml: &str, flags: u32) -> Result<PoolId> {
        self.0
            .call("virStoragePoolCreateXML", |r| r.create_pool_xml(xml, flags))
    }
    fn find_pool_sources(&self, pool_type: &str, spec: Option<&str>, flags: u32) -> Result<String> {
        self.0.call("virConnectFindStoragePoolSources", |r| {
            r.find_pool_sources(pool_type, spec, flags)
        })
    }
    fn pool_capabilities(&self, flags: u32) -> Result<String> {
        self.0.call("virConnectGetStoragePoolCapabilities", |r| {
            r.pool_capabilities(flags)
        })
    }
    fn create_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.0
            .call("virStoragePoolCreate", |r| r.create_pool(pool, flags))
    }
    fn build_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.0
            .call("virStoragePoolBuild", |r| r.build_pool(pool, flags))
    }
    fn destroy_pool(&self, pool: &PoolId) -> Result<()> {
        self.0
            .call("virStoragePoolDestroy", |r| r.destroy_pool(pool))
    }
    fn delete_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.0
            .call("virStoragePoolDelete", |r| r.delete_pool(pool, flags))
    }
    fn undefine_pool(&self, pool: &PoolId) -> Result<()> {
        self.0
            .call("virStoragePoolUndefine", |r| r.undefine_pool(pool))
    }
    fn refresh_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.0
            .call("virStoragePoolRefresh", |r| r.refresh_pool(pool, flags))
    }
    fn pool_info(&self, pool: &PoolId) -> Result<PoolInfo> {
        self.0.call("virStoragePoolGetInfo", |r| r.pool_info(pool))
    }
    fn pool_xml(&self, pool: &PoolId, flags: u32) -> Result<String> {
        self.0
            .call("virStoragePoolGetXMLDesc", |r| r.pool_xml(pool, flags))
    }
    fn pool_autostart(&self, pool: &PoolId) -> Result<bool> {
        self.0
            .call("virStoragePoolGetAutostart", |r| r.pool_autostart(pool))
    }
    fn set_pool_autostart(&self, pool: &PoolId, on: bool) -> Result<()> {
        self.0.call("virStoragePoolSetAutostart", |r| {
            r.set_pool_autostart(pool, on)
        })
    }
    fn pool_is_active(&self, pool: &PoolId) -> Result<bool> {
        self.0
            .call("virStoragePoolIsActive", |r| r.pool_is_active(pool))
    }
    fn pool_is_persistent(&self, pool: &PoolId) -> Result<bool> {
        self.0
            .call("virStoragePoolIsPersistent", |r| r.pool_is_persistent(pool))
    }
    fn list_volumes(&self, pool: &PoolId, flags: u32) -> Result<Vec<VolumeId>> {
        self.0.call("virStoragePoolListAllVolumes", |r| {
            r.list_volumes(pool, flags)
        })
    }
    fn volume_by_name(&self, pool: &PoolId, name: &str) -> Result<VolumeId> {
        self.0.call("virStorageVolLookupByName", |r| {
            r.volume_by_name(pool, name)
        })
    }
    fn volume_by_key(&self, key: &str) -> Result<VolumeId> {
        self.0
            .call("virStorageVolLookupByKey", |r| r.volume_by_key(key))
    }
    fn volume_by_path(&self, path: &str) -> Result<VolumeId> {
        self.0
            .call("virStorageVolLookupByPath", |r| r.volume_by_path(path))
    }
    fn create_volume(&self, pool: &PoolId, xml: &str, flags: u32) -> Result<VolumeId> {
        self.0.call("virStorageVolCreateXML", |r| {
            r.create_volume(pool, xml, flags)
        })
    }
    fn create_volume_from(
        &self,
        pool: &PoolId,
        xml: &str,
        from: &VolumeId,
        flags: u32,
    ) -> Result<VolumeId> {
        self.0.call("virStorageVolCreateXMLFrom", |r| {
            r.create_volume_from(pool, xml, from, flags)
        })
    }
    fn delete_volume(&self, vol: &VolumeId, flags: u32) -> Result<()> {
        self.0
            .call("virStorageVolDelete", |r| r.delete_volume(vol, flags))
    }
    fn wipe_volume(&self, vol: &VolumeId, algorithm: u32, flags: u32) -> Result<()> {
        self.0.call("virStorageVolWipePattern", |r| {
            r.wipe_volume(vol, algorithm, flags)
        })
    }
    fn resize_volume(&self, vol: &VolumeId, capacity: u64, flags: u32) -> Result<()> {
        self.0.call("virStorageVolResize", |r| {
            r.resize_volume(vol, capacity, flags)
        })
    }
    fn volume_info(&self, vol: &VolumeId, flags: u32) -> Result<VolumeInfo> {
        self.0
            .call("virStorageVolGetInfoFlags", |r| r.volume_info(vol, flags))
    }
    fn volume_xml(&self, vol: &VolumeId, flags: u32) -> Result<String> {
        self.0
            .call("virStorageVolGetXMLDesc", |r| r.volume_xml(vol, flags))
    }
    fn volume_path(&self, vol: &VolumeId) -> Result<String> {
        self.0.call("virStorageVolGetPath", |r| r.volume_path(vol))
    }
    fn upload_volume(
        &self,
        vol: &VolumeId,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn StreamIo>> {
        self.0.call("virStorageVolUpload", |r| {
            r.upload_volume(vol, offset, length, flags)
        })
    }
    fn download_volume(
        &self,
        vol: &VolumeId,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn StreamIo>> {
        self.0.call("virStorageVolDownload", |r| {
            r.download_volume(vol, offset, length, flags)
        })
    }
    fn subscribe_pool_events(&self, callback: PoolEventCallback) -> Result<u64> {
        self.0.call("virConnectStoragePoolEventRegisterAny", |r| {
            r.subscribe_pool_events(callback)
        })
    }
    fn unsubscribe_pool_events(&self, id: u64) -> Result<()> {
        self.0.call("virConnectStoragePoolEventDeregisterAny", |r| {
            r.unsubscribe_pool_events(id)
        })
    }
}

impl NetworkOps for IsolatedNetworks {
    fn list(&self, flags: u32) -> Result<Vec<NetworkId>> {
        self.0
            .call("virConnectListAllNetworks", |r| NetworkOps::list(r, flags))
    }
    fn lookup_by_name(&self, name: &str) -> Result<NetworkId> {
        self.0.call("virNetworkLookupByName", |r| {
            NetworkOps::lookup_by_name(r, name)
        })
    }
    fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<NetworkId> {
        self.0.call("virNetworkLookupByUUID", |r| {
            NetworkOps::lookup_by_uuid(r, uuid)
        })
    }
    fn xml(&self, name: &str, flags: u32) -> Result<String> {
        self.0
            .call("virNetworkGetXMLDesc", |r| NetworkOps::xml(r, name, flags))
    }
    fn bridge_name(&self, name: &str) -> Result<String> {
        self.0.call("virNetworkGetBridgeName", |r| {
            NetworkOps::bridge_name(r, name)
        })
    }
    fn is_active(&self, name: &str) -> Result<bool> {
        self.0
            .call("virNetworkIsActive", |r| NetworkOps::is_active(r, name))
    }
    fn is_persistent(&self, name: &str) -> Result<bool> {
        self.0.call("virNetworkIsPersistent", |r| {
            NetworkOps::is_persistent(r, name)
        })
    }
    fn autostart(&self, name: &str) -> Result<bool> {
        self.0
            .call("virNetworkGetAutostart", |r| NetworkOps::autostart(r, name))
    }
    fn dhcp_leases(&self, name: &str, mac: Option<&str>, flags: u32) -> Result<Vec<Lease>> {
        self.0.call("virNetworkGetDHCPLeases", |r| {
            NetworkOps::dhcp_leases(r, name, mac, flags)
        })
    }
    fn define(&self, xml: &str, flags: u32) -> Result<NetworkId> {
        self.0
            .call("virNetworkDefineXML", |r| NetworkOps::define(r, xml, flags))
    }
    fn create_xml(&self, xml: &str, flags: u32) -> Result<NetworkId> {
        self.0.call("virNetworkCreateXML", |r| {
            NetworkOps::create_xml(r, xml, flags)
        })
    }
    fn undefine(&self, name: &str) -> Result<()> {
        self.0
            .call("virNetworkUndefine", |r| NetworkOps::undefine(r, name))
    }
    fn create(&self, name: &str) -> Result<()> {
        self.0
            .call("virNetworkCreate", |r| NetworkOps::create(r, name))
    }
    fn destroy(&self, name: &str) -> Result<()> {
        self.0
            .call("virNetworkDestroy", |r| NetworkOps::destroy(r, name))
    }
    fn set_autostart(&self, name: &str, on: bool) -> Result<()> {
        self.0.call("virNetworkSetAutostart", |r| {
            NetworkOps::set_autostart(r, name, on)
        })
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
        self.0.call("virNetworkUpdate", |r| {
            NetworkOps::update(r, name, command, section, parent_index, xml, flags)
        })
    }
    fn port_create(&self, name: &str, xml: &str, flags: u32) -> Result<PortId> {
        self.0.call("virNetworkPortCreateXML", |r| {
            NetworkOps::port_create(r, name, xml, flags)
        })
    }
    fn port_lookup(&self, name: &str, port: uuid::Uuid) -> Result<PortId> {
        self.0.call("virNetworkPortLookupByUUID", |r| {
            NetworkOps::port_lookup(r, name, port)
        })
    }
    fn port_list(&self, name: &str, flags: u32) -> Result<Vec<PortId>> {
        self.0.call("virNetworkListAllPorts", |r| {
            NetworkOps::port_list(r, name, flags)
        })
    }
    fn port_xml(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<String> {
        self.0.call("virNetworkPortGetXMLDesc", |r| {
            NetworkOps::port_xml(r, name, port, flags)
        })
    }
    fn port_delete(&self, name: &str, port: uuid::Uuid, flags: u32) -> Result<()> {
        self.0.call("virNetworkPortDelete", |r| {
            NetworkOps::port_delete(r, name, port, flags)
        })
    }
    fn port_parameters(
        &self,
        name: &str,
        port: uuid::Uuid,
        flags: u32,
    ) -> Result<Vec<(String, u64)>> {
        self.0.call("virNetworkPortGetParameters", |r| {
            NetworkOps::port_parameters(r, name, port, flags)
        })
    }
    fn port_set_parameters(
        &self,
        name: &str,
        port: uuid::Uuid,
        params: &[(String, u64)],
        flags: u32,
    ) -> Result<()> {
        self.0.call("virNetworkPortSetParameters", |r| {
            NetworkOps::port_set_parameters(r, name, port, params, flags)
        })
    }
    fn subscribe(&self, cb: NetworkEventCallback) -> Result<u64> {
        self.0.call("virConnectNetworkEventRegisterAny", |r| {
            NetworkOps::subscribe(r, cb)
        })
    }
    fn unsubscribe(&self, id: u64) -> Result<()> {
        self.0.call("virConnectNetworkEventDeregisterAny", |r| {
            NetworkOps::unsubscribe(r, id)
        })
    }
}

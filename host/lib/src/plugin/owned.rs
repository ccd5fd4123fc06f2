//! Connection-owned storage pools and networks (plugin API 1.10): a plugin connection
//! whose extension object answers `conn_storage` / `conn_network` serves every storage
//! (network) call of that connection itself, in place of the host's registries. The host
//! keeps nothing for such objects: every list and lookup asks the plugin. What the API of
//! 1.10 does not carry (pool define, build, start, delete, wipe, resize, uploads, network
//! changes, ports…) answers libvirt's no-support error naming the API and the driver.

use super::{LoadedPlugin, abi_uuid, call};
use crate::{
    Error, Result,
    network_api::NetworkOps,
    networks::{Lease, NetworkEventCallback, NetworkId, PortId},
    storage::{PoolEventCallback, PoolId, PoolInfo, VolumeId, VolumeInfo},
    storage_api::{StorageService, StreamIo},
};
use rvirt_plugin_api::{
    ConnExtensionBox, ConnNetworkBox, ConnStorageBox, DriverConnectionBox, ErrorCode, ErrorDomain,
    OwnedNetwork, OwnedPool, OwnedVol, PResult,
    abi_stable::std_types::{ROption, RStr},
};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// What a connection owns: its storage and its networks (`None`: server-owned).
pub(super) type Owned = (Option<Arc<dyn StorageService>>, Option<Arc<dyn NetworkOps>>);

/// The extension object of a plugin connection (plugin API 1.10), asked once when it
/// opens; `None` when the plugin offers none.
pub(super) fn extension(
    plugin: &Arc<LoadedPlugin>,
    conn: &DriverConnectionBox,
) -> Option<ConnExtensionBox> {
    let name = &plugin.manifest.name;
    match call(name, "virConnectOpen", || conn.extension()) {
        Ok(e) => Some(e),
        Err(e) => {
            if !is_no_support(&e) {
                tracing::warn!("plugin '{name}': connection extensions: {e}");
            }
            None
        }
    }
}

/// The connection-owned storage and networks a plugin connection offers through its
/// extension object (`None` for each it does not own: server-owned).
pub(super) fn discover(plugin: &Arc<LoadedPlugin>, ext: Option<&ConnExtensionBox>) -> Owned {
    let name = plugin.manifest.name.clone();
    let Some(ext) = ext else {
        return (None, None);
    };
    let storage = match call(&name, "virConnectListAllStoragePools", || {
        ext.conn_storage()
    }) {
        Ok(ROption::RSome(obj)) => Some(Arc::new(OwnedStorage {
            owner: Owner::new(plugin),
            obj,
        }) as Arc<dyn StorageService>),
        Ok(ROption::RNone) => None,
        Err(e) => {
            if !is_no_support(&e) {
                tracing::warn!("plugin '{name}': connection-owned storage: {e}");
            }
            None
        }
    };
    let networks = match call(&name, "virConnectListAllNetworks", || ext.conn_network()) {
        Ok(ROption::RSome(obj)) => Some(Arc::new(OwnedNetworks {
            owner: Owner::new(plugin),
            obj,
        }) as Arc<dyn NetworkOps>),
        Ok(ROption::RNone) => None,
        Err(e) => {
            if !is_no_support(&e) {
                tracing::warn!("plugin '{name}': connection-owned networks: {e}");
            }
            None
        }
    };
    (storage, networks)
}

fn is_no_support(e: &Error) -> bool {
    matches!(e, Error::Driver { code, .. } if *code == ErrorCode::NoSupport as i32)
}

/// The plugin behind an owned object: kept loaded while the object lives, named in errors.
struct Owner {
    plugin: Arc<LoadedPlugin>,
    /// Event subscriptions handed out: owned objects raise no events of their own
    /// (libvirt's esx driver raises none), but a subscription is accepted.
    next_sub: AtomicU64,
}

impl Owner {
    fn new(plugin: &Arc<LoadedPlugin>) -> Owner {
        Owner {
            plugin: Arc::clone(plugin),
            next_sub: AtomicU64::new(1),
        }
    }

    fn name(&self) -> &str {
        &self.plugin.manifest.name
    }

    fn call<T>(&self, api: &'static str, f: impl FnOnce() -> PResult<T>) -> Result<T> {
        call(self.name(), api, f)
    }

    /// libvirt's no-support error for an API the connection's own objects do not offer.
    fn no_support(&self, domain: ErrorDomain, api: &str) -> Error {
        Error::driver(
            ErrorCode::NoSupport,
            domain,
            format!(
                "this function is not supported by the connection driver: {api} (driver '{}' owns the connection's {}, not carried by plugin API 1.10)",
                self.name(),
                if domain == ErrorDomain::Network {
                    "networks"
                } else {
                    "storage pools"
                }
            ),
        )
    }

    fn subscribe(&self) -> u64 {
        self.next_sub.fetch_add(1, Ordering::Relaxed)
    }
}

/// `VIR_CONNECT_LIST_*` state bits (the same numbers for pools and networks): whether
/// an object with these answers passes them.
fn state_filter(flags: u32, active: bool, persistent: bool, autostart: bool) -> bool {
    let pick = |on: u32, off: u32, v: bool| {
        let mask = flags & (on | off);
        mask == 0 || mask == (on | off) || (v && mask == on) || (!v && mask == off)
    };
    pick(2, 1, active) && pick(4, 8, persistent) && pick(16, 32, autostart)
}

fn pool_id(p: &OwnedPool) -> PoolId {
    PoolId {
        name: p.name.to_string(),
        uuid: uuid::Uuid::from_bytes(p.uuid.0),
    }
}

fn vol_id(v: &OwnedVol) -> VolumeId {
    VolumeId {
        pool: v.pool.to_string(),
        name: v.name.to_string(),
        key: v.key.to_string(),
    }
}

fn net_id(n: &OwnedNetwork) -> NetworkId {
    NetworkId {
        name: n.name.to_string(),
        uuid: uuid::Uuid::from_bytes(n.uuid.0),
    }
}

fn s(v: &str) -> RStr<'_> {
    RStr::from_str(v)
}

/// A connection's own storage, served by its plugin.
struct OwnedStorage {
    owner: Owner,
    obj: ConnStorageBox,
}

impl OwnedStorage {
    fn pool(&self, name: &str) -> Result<OwnedPool> {
        self.owner.call("virStoragePoolLookupByName", || {
            self.obj.pool_by_name(s(name))
        })
    }
    fn unsupported<T>(&self, api: &str) -> Result<T> {
        Err(self.owner.no_support(ErrorDomain::Storage, api))
    }
}

impl StorageService for OwnedStorage {
    fn list_pools(&self, flags: u32) -> Result<Vec<PoolId>> {
        let pools = self.owner.call("virConnectListAllStoragePools", || {
            self.obj.list_pools(flags)
        })?;
        Ok(pools
            .iter()
            .filter(|p| state_filter(flags, p.active, p.persistent, p.autostart))
            .map(pool_id)
            .collect())
    }
    fn pool_by_name(&self, name: &str) -> Result<PoolId> {
        self.pool(name).map(|p| pool_id(&p))
    }
    fn pool_by_uuid(&self, uuid: uuid::Uuid) -> Result<PoolId> {
        self.owner
            .call("virStoragePoolLookupByUUID", || {
                self.obj.pool_by_uuid(abi_uuid(uuid))
            })
            .map(|p| pool_id(&p))
    }
    fn pool_by_target_path(&self, _path: &str) -> Result<PoolId> {
        self.unsupported("virStoragePoolLookupByTargetPath")
    }
    fn pool_by_volume(&self, vol: &VolumeId) -> Result<PoolId> {
        self.pool_by_name(&vol.pool)
    }
    fn define_pool(&self, _xml: &str, _flags: u32) -> Result<PoolId> {
        self.unsupported("virStoragePoolDefineXML")
    }
    fn create_pool_xml(&self, _xml: &str, _flags: u32) -> Result<PoolId> {
        self.unsupported("virStoragePoolCreateXML")
    }
    fn find_pool_sources(&self, _t: &str, _spec: Option<&str>, _flags: u32) -> Result<String> {
        self.unsupported("virConnectFindStoragePoolSources")
    }
    fn pool_capabilities(&self, _flags: u32) -> Result<String> {
        self.unsupported("virConnectGetStoragePoolCapabilities")
    }
    fn create_pool(&self, _pool: &PoolId, _flags: u32) -> Result<()> {
        self.unsupported("virStoragePoolCreate")
    }
    fn build_pool(&self, _pool: &PoolId, _flags: u32) -> Result<()> {
        self.unsupported("virStoragePoolBuild")
    }
    fn destroy_pool(&self, _pool: &PoolId) -> Result<()> {
        self.unsupported("virStoragePoolDestroy")
    }
    fn delete_pool(&self, _pool: &PoolId, _flags: u32) -> Result<()> {
        self.unsupported("virStoragePoolDelete")
    }
    fn undefine_pool(&self, _pool: &PoolId) -> Result<()> {
        self.unsupported("virStoragePoolUndefine")
    }
    fn refresh_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.owner.call("virStoragePoolRefresh", || {
            self.obj.pool_refresh(s(&pool.name), flags)
        })
    }
    fn pool_info(&self, pool: &PoolId) -> Result<PoolInfo> {
        let i = self.owner.call("virStoragePoolGetInfo", || {
            self.obj.pool_info(s(&pool.name))
        })?;
        Ok(PoolInfo {
            state: i.state,
            capacity: i.capacity,
            allocation: i.allocation,
            available: i.available,
        })
    }
    fn pool_xml(&self, pool: &PoolId, flags: u32) -> Result<String> {
        self.owner
            .call("virStoragePoolGetXMLDesc", || {
                self.obj.pool_xml(s(&pool.name), flags)
            })
            .map(Into::into)
    }
    fn pool_autostart(&self, pool: &PoolId) -> Result<bool> {
        self.pool(&pool.name).map(|p| p.autostart)
    }
    fn set_pool_autostart(&self, _pool: &PoolId, _on: bool) -> Result<()> {
        self.unsupported("virStoragePoolSetAutostart")
    }
    fn pool_is_active(&self, pool: &PoolId) -> Result<bool> {
        self.pool(&pool.name).map(|p| p.active)
    }
    fn pool_is_persistent(&self, pool: &PoolId) -> Result<bool> {
        self.pool(&pool.name).map(|p| p.persistent)
    }
    fn list_volumes(&self, pool: &PoolId, flags: u32) -> Result<Vec<VolumeId>> {
        let v = self.owner.call("virStoragePoolListAllVolumes", || {
            self.obj.list_volumes(s(&pool.name), flags)
        })?;
        Ok(v.iter().map(vol_id).collect())
    }
    fn volume_by_name(&self, pool: &PoolId, name: &str) -> Result<VolumeId> {
        self.owner
            .call("virStorageVolLookupByName", || {
                self.obj.volume_by_name(s(&pool.name), s(name))
            })
            .map(|v| vol_id(&v))
    }
    fn volume_by_key(&self, key: &str) -> Result<VolumeId> {
        self.owner
            .call("virStorageVolLookupByKey", || {
                self.obj.volume_by_key(s(key))
            })
            .map(|v| vol_id(&v))
    }
    fn volume_by_path(&self, path: &str) -> Result<VolumeId> {
        self.owner
            .call("virStorageVolLookupByPath", || {
                self.obj.volume_by_path(s(path))
            })
            .map(|v| vol_id(&v))
    }
    fn create_volume(&self, pool: &PoolId, xml: &str, flags: u32) -> Result<VolumeId> {
        self.owner
            .call("virStorageVolCreateXML", || {
                self.obj.create_volume(s(&pool.name), s(xml), flags)
            })
            .map(|v| vol_id(&v))
    }
    fn create_volume_from(
        &self,
        pool: &PoolId,
        xml: &str,
        from: &VolumeId,
        flags: u32,
    ) -> Result<VolumeId> {
        self.owner
            .call("virStorageVolCreateXMLFrom", || {
                self.obj.create_volume_from(
                    s(&pool.name),
                    s(xml),
                    s(&from.pool),
                    s(&from.name),
                    flags,
                )
            })
            .map(|v| vol_id(&v))
    }
    fn delete_volume(&self, vol: &VolumeId, flags: u32) -> Result<()> {
        self.owner.call("virStorageVolDelete", || {
            self.obj.delete_volume(s(&vol.pool), s(&vol.name), flags)
        })
    }
    fn wipe_volume(&self, _vol: &VolumeId, _algorithm: u32, _flags: u32) -> Result<()> {
        self.unsupported("virStorageVolWipePattern")
    }
    fn resize_volume(&self, _vol: &VolumeId, _capacity: u64, _flags: u32) -> Result<()> {
        self.unsupported("virStorageVolResize")
    }
    fn volume_info(&self, vol: &VolumeId, flags: u32) -> Result<VolumeInfo> {
        let i = self.owner.call("virStorageVolGetInfoFlags", || {
            self.obj.volume_info(s(&vol.pool), s(&vol.name), flags)
        })?;
        Ok(VolumeInfo {
            kind: i.kind,
            capacity: i.capacity,
            allocation: i.allocation,
        })
    }
    fn volume_xml(&self, vol: &VolumeId, flags: u32) -> Result<String> {
        self.owner
            .call("virStorageVolGetXMLDesc", || {
                self.obj.volume_xml(s(&vol.pool), s(&vol.name), flags)
            })
            .map(Into::into)
    }
    fn volume_path(&self, vol: &VolumeId) -> Result<String> {
        self.owner
            .call("virStorageVolGetPath", || {
                self.obj.volume_path(s(&vol.pool), s(&vol.name))
            })
            .map(Into::into)
    }
    fn upload_volume(
        &self,
        _vol: &VolumeId,
        _offset: u64,
        _length: u64,
        _flags: u32,
    ) -> Result<Box<dyn StreamIo>> {
        self.unsupported("virStorageVolUpload")
    }
    fn download_volume(
        &self,
        _vol: &VolumeId,
        _offset: u64,
        _length: u64,
        _flags: u32,
    ) -> Result<Box<dyn StreamIo>> {
        self.unsupported("virStorageVolDownload")
    }
    fn subscribe_pool_events(&self, _callback: PoolEventCallback) -> Result<u64> {
        Ok(self.owner.subscribe())
    }
    fn unsubscribe_pool_events(&self, _id: u64) -> Result<()> {
        Ok(())
    }
}

/// A connection's own networks, served by its plugin.
struct OwnedNetworks {
    owner: Owner,
    obj: ConnNetworkBox,
}

impl OwnedNetworks {
    fn net(&self, name: &str) -> Result<OwnedNetwork> {
        self.owner.call("virNetworkLookupByName", || {
            self.obj.network_by_name(s(name))
        })
    }
    fn unsupported<T>(&self, api: &str) -> Result<T> {
        Err(self.owner.no_support(ErrorDomain::Network, api))
    }
}

impl NetworkOps for OwnedNetworks {
    fn list(&self, flags: u32) -> Result<Vec<NetworkId>> {
        let nets = self.owner.call("virConnectListAllNetworks", || {
            self.obj.list_networks(flags)
        })?;
        Ok(nets
            .iter()
            .filter(|n| state_filter(flags, n.active, n.persistent, n.autostart))
            .map(net_id)
            .collect())
    }
    fn lookup_by_name(&self, name: &str) -> Result<NetworkId> {
        self.net(name).map(|n| net_id(&n))
    }
    fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<NetworkId> {
        self.owner
            .call("virNetworkLookupByUUID", || {
                self.obj.network_by_uuid(abi_uuid(uuid))
            })
            .map(|n| net_id(&n))
    }
    fn xml(&self, name: &str, flags: u32) -> Result<String> {
        self.owner
            .call("virNetworkGetXMLDesc", || {
                self.obj.network_xml(s(name), flags)
            })
            .map(Into::into)
    }
    fn bridge_name(&self, _name: &str) -> Result<String> {
        self.unsupported("virNetworkGetBridgeName")
    }
    fn is_active(&self, name: &str) -> Result<bool> {
        self.net(name).map(|n| n.active)
    }
    fn is_persistent(&self, name: &str) -> Result<bool> {
        self.net(name).map(|n| n.persistent)
    }
    fn autostart(&self, name: &str) -> Result<bool> {
        self.net(name).map(|n| n.autostart)
    }
    fn dhcp_leases(&self, _name: &str, _mac: Option<&str>, _flags: u32) -> Result<Vec<Lease>> {
        self.unsupported("virNetworkGetDHCPLeases")
    }
    fn define(&self, _xml: &str, _flags: u32) -> Result<NetworkId> {
        self.unsupported("virNetworkDefineXML")
    }
    fn create_xml(&self, _xml: &str, _flags: u32) -> Result<NetworkId> {
        self.unsupported("virNetworkCreateXML")
    }
    fn undefine(&self, _name: &str) -> Result<()> {
        self.unsupported("virNetworkUndefine")
    }
    fn create(&self, _name: &str) -> Result<()> {
        self.unsupported("virNetworkCreate")
    }
    fn destroy(&self, _name: &str) -> Result<()> {
        self.unsupported("virNetworkDestroy")
    }
    fn set_autostart(&self, _name: &str, _on: bool) -> Result<()> {
        self.unsupported("virNetworkSetAutostart")
    }
    fn update(
        &self,
        _name: &str,
        _command: u32,
        _section: u32,
        _parent_index: i32,
        _xml: &str,
        _flags: u32,
    ) -> Result<()> {
        self.unsupported("virNetworkUpdate")
    }
    fn port_create(&self, _name: &str, _xml: &str, _flags: u32) -> Result<PortId> {
        self.unsupported("virNetworkPortCreateXML")
    }
    fn port_lookup(&self, _name: &str, _port: uuid::Uuid) -> Result<PortId> {
        self.unsupported("virNetworkPortLookupByUUID")
    }
    fn port_list(&self, _name: &str, _flags: u32) -> Result<Vec<PortId>> {
        self.unsupported("virNetworkListAllPorts")
    }
    fn port_xml(&self, _name: &str, _port: uuid::Uuid, _flags: u32) -> Result<String> {
        self.unsupported("virNetworkPortGetXMLDesc")
    }
    fn port_delete(&self, _name: &str, _port: uuid::Uuid, _flags: u32) -> Result<()> {
        self.unsupported("virNetworkPortDelete")
    }
    fn port_parameters(
        &self,
        _name: &str,
        _port: uuid::Uuid,
        _flags: u32,
    ) -> Result<Vec<(String, u64)>> {
        self.unsupported("virNetworkPortGetParameters")
    }
    fn port_set_parameters(
        &self,
        _name: &str,
        _port: uuid::Uuid,
        _params: &[(String, u64)],
        _flags: u32,
    ) -> Result<()> {
        self.unsupported("virNetworkPortSetParameters")
    }
    fn subscribe(&self, _cb: NetworkEventCallback) -> Result<u64> {
        Ok(self.owner.subscribe())
    }
    fn unsubscribe(&self, _id: u64) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::state_filter;

    #[test]
    fn state_bits_select_as_libvirt_lists() {
        // no bits, or both of a pair: everything
        assert!(state_filter(0, false, false, false));
        assert!(state_filter(1 | 2, true, true, true));
        // ACTIVE / INACTIVE
        assert!(state_filter(2, true, true, true));
        assert!(!state_filter(1, true, true, true));
        // PERSISTENT / TRANSIENT
        assert!(!state_filter(8, true, true, true));
        assert!(state_filter(4, true, true, true));
        // AUTOSTART / NO_AUTOSTART
        assert!(!state_filter(32, true, true, true));
        assert!(state_filter(16 | 2 | 4, true, true, true));
    }
}

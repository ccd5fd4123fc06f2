//! Storage pools and volumes of a [`Connection`](crate::Connection): the [`StoragePool`]
//! and [`StorageVol`] handles, and the [`StorageService`] behind them (the root's
//! [`Pools`] for a local connection, the daemon for a remote one).

use crate::storage::{
    BackendResolver, PoolEvent, PoolEventCallback, PoolId, PoolInfo, Pools, VolumeId, VolumeInfo,
};
use crate::storage_bind::{self, StorageRoot};
use crate::{Connection, Error, Result};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use std::sync::Arc;

/// The storage operations of one connection. Pools are addressed by [`PoolId`] (the name
/// decides), volumes by [`VolumeId`] (pool and name decide).
#[allow(missing_docs)]
pub trait StorageService: Send + Sync {
    fn list_pools(&self, flags: u32) -> Result<Vec<PoolId>>;
    fn pool_by_name(&self, name: &str) -> Result<PoolId>;
    fn pool_by_uuid(&self, uuid: uuid::Uuid) -> Result<PoolId>;
    fn pool_by_target_path(&self, path: &str) -> Result<PoolId>;
    fn pool_by_volume(&self, vol: &VolumeId) -> Result<PoolId>;
    fn define_pool(&self, xml: &str, flags: u32) -> Result<PoolId>;
    fn create_pool_xml(&self, xml: &str, flags: u32) -> Result<PoolId>;
    fn find_pool_sources(&self, pool_type: &str, spec: Option<&str>, flags: u32) -> Result<String>;
    fn pool_capabilities(&self, flags: u32) -> Result<String>;
    fn create_pool(&self, pool: &PoolId, flags: u32) -> Result<()>;
    fn build_pool(&self, pool: &PoolId, flags: u32) -> Result<()>;
    fn destroy_pool(&self, pool: &PoolId) -> Result<()>;
    fn delete_pool(&self, pool: &PoolId, flags: u32) -> Result<()>;
    fn undefine_pool(&self, pool: &PoolId) -> Result<()>;
    fn refresh_pool(&self, pool: &PoolId, flags: u32) -> Result<()>;
    fn pool_info(&self, pool: &PoolId) -> Result<PoolInfo>;
    fn pool_xml(&self, pool: &PoolId, flags: u32) -> Result<String>;
    fn pool_autostart(&self, pool: &PoolId) -> Result<bool>;
    fn set_pool_autostart(&self, pool: &PoolId, on: bool) -> Result<()>;
    fn pool_is_active(&self, pool: &PoolId) -> Result<bool>;
    fn pool_is_persistent(&self, pool: &PoolId) -> Result<bool>;
    fn list_volumes(&self, pool: &PoolId, flags: u32) -> Result<Vec<VolumeId>>;
    fn volume_by_name(&self, pool: &PoolId, name: &str) -> Result<VolumeId>;
    fn volume_by_key(&self, key: &str) -> Result<VolumeId>;
    fn volume_by_path(&self, path: &str) -> Result<VolumeId>;
    fn create_volume(&self, pool: &PoolId, xml: &str, flags: u32) -> Result<VolumeId>;
    fn create_volume_from(
        &self,
        pool: &PoolId,
        xml: &str,
        from: &VolumeId,
        flags: u32,
    ) -> Result<VolumeId>;
    fn delete_volume(&self, vol: &VolumeId, flags: u32) -> Result<()>;
    fn wipe_volume(&self, vol: &VolumeId, algorithm: u32, flags: u32) -> Result<()>;
    fn resize_volume(&self, vol: &VolumeId, capacity: u64, flags: u32) -> Result<()>;
    fn volume_info(&self, vol: &VolumeId, flags: u32) -> Result<VolumeInfo>;
    fn volume_xml(&self, vol: &VolumeId, flags: u32) -> Result<String>;
    fn volume_path(&self, vol: &VolumeId) -> Result<String>;
    /// `virStorageVolUpload`: an open upload stream.
    fn upload_volume(
        &self,
        vol: &VolumeId,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn StreamIo>>;
    /// `virStorageVolDownload`: an open download stream.
    fn download_volume(
        &self,
        vol: &VolumeId,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn StreamIo>>;
    /// Registers a callback for pool lifecycle and refresh events; returns its id.
    fn subscribe_pool_events(&self, callback: PoolEventCallback) -> Result<u64>;
    /// Removes a callback registered with [`StorageService::subscribe_pool_events`].
    fn unsubscribe_pool_events(&self, id: u64) -> Result<()>;
}

/// The transport under a [`VolStream`]: the local pools' stream, or packets on a daemon
/// connection. Dropped unfinished, it aborts.
pub trait StreamIo: Send {
    /// Writes the next chunk of an upload.
    fn send(&mut self, data: &[u8]) -> Result<()>;
    /// Reads at most `max` bytes of a download; empty at the end.
    fn recv(&mut self, max: usize) -> Result<Vec<u8>>;
    /// [`StreamIo::recv`] appending to `out`; returns the bytes appended, 0 at the end.
    fn recv_into(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize> {
        let chunk = self.recv(max)?;
        out.extend_from_slice(&chunk);
        Ok(chunk.len())
    }
    /// Ends the stream; an upload is committed when this returns.
    fn finish(&mut self) -> Result<()>;
    /// Abandons the stream.
    fn abort(&mut self) -> Result<()>;
}

impl StreamIo for crate::storage::PoolStream {
    fn send(&mut self, data: &[u8]) -> Result<()> {
        crate::storage::PoolStream::send(self, data)
    }
    fn recv(&mut self, max: usize) -> Result<Vec<u8>> {
        crate::storage::PoolStream::recv(self, max)
    }
    fn recv_into(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize> {
        crate::storage::PoolStream::recv_into(self, out, max)
    }
    fn finish(&mut self) -> Result<()> {
        crate::storage::PoolStream::finish(self)
    }
    fn abort(&mut self) -> Result<()> {
        crate::storage::PoolStream::abort(self)
    }
}

/// A volume upload or download stream (`virStreamPtr` of `virStorageVolUpload` and
/// `virStorageVolDownload`), local or remote alike. Dropped before [`VolStream::finish`]
/// or [`VolStream::abort`], it aborts: an unfinished upload is not committed.
///
/// Over a remote connection the daemon's packets wait in a small queue per stream; when
/// it is full the connection stops reading (flow control back to the daemon). Read a
/// download on, or finish or drop it, rather than waiting on other calls of the same
/// connection while it has data pending.
pub struct VolStream {
    io: Box<dyn StreamIo>,
    done: bool,
}

impl std::fmt::Debug for VolStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl VolStream {
    /// Wraps a transport.
    pub fn new(io: Box<dyn StreamIo>) -> VolStream {
        VolStream { io, done: false }
    }

    fn closed() -> Error {
        Error::driver(
            ErrorCode::OperationInvalid,
            ErrorDomain::Storage,
            "requested operation is not valid: the stream is closed",
        )
    }

    /// `virStreamSend`: writes all of `data` (an upload).
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        if self.done {
            return Err(Self::closed());
        }
        let r = self.io.send(data);
        if r.is_err() {
            self.done = true;
        }
        r
    }

    /// `virStreamRecv`: at most `max` bytes of a download; empty at the end.
    pub fn recv(&mut self, max: usize) -> Result<Vec<u8>> {
        if self.done {
            return Err(Self::closed());
        }
        let r = self.io.recv(max);
        if r.is_err() {
            self.done = true;
        }
        r
    }

    /// [`VolStream::recv`] appending to `out` (a buffer the caller reuses); returns the
    /// bytes appended, 0 at the end.
    pub fn recv_into(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize> {
        if self.done {
            return Err(Self::closed());
        }
        let r = self.io.recv_into(out, max);
        if r.is_err() {
            self.done = true;
        }
        r
    }

    /// `virStreamFinish`: ends the stream; an upload is committed when it returns.
    pub fn finish(&mut self) -> Result<()> {
        if self.done {
            return Err(Self::closed());
        }
        self.done = true;
        self.io.finish()
    }

    /// `virStreamAbort`.
    pub fn abort(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        self.io.abort()
    }
}

impl Drop for VolStream {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = self.io.abort()
        {
            tracing::debug!("aborting a dropped volume stream: {e}");
        }
    }
}

fn no_support(what: String) -> Error {
    Error::driver(
        ErrorCode::NoSupport,
        ErrorDomain::Storage,
        format!("this function is not supported by the connection driver: {what}"),
    )
}

/// `virStoragePoolListAllVolumes` takes no flags yet.
fn check_no_flags(op: &str, flags: u32) -> Result<()> {
    if flags == 0 {
        Ok(())
    } else {
        Err(Error::driver(
            ErrorCode::InvalidArg,
            ErrorDomain::Storage,
            format!("invalid argument: unsupported flags (0x{flags:x}) in function {op}"),
        ))
    }
}

/// A local connection's storage: the pools of its root, bound on first use.
pub(crate) struct LocalStorage {
    binding: std::result::Result<StorageRoot, String>,
    backends: Arc<dyn BackendResolver>,
}

impl LocalStorage {
    /// The storage of a local connection to `uri`; a URI without storage, or whose root
    /// cannot be found, answers every call with no-support naming why.
    pub(crate) fn new(
        uri: &crate::ConnectUri,
        system_root: &std::path::Path,
        backends: Arc<dyn BackendResolver>,
    ) -> Self {
        let binding = match storage_bind::root_for(uri, system_root, |k| std::env::var(k).ok()) {
            Ok(Some(root)) => Ok(root),
            Ok(None) => Err(format!(
                "the '{}' driver has no storage pools (use qemu:///system, qemu:///session, qemu:///embed?root=DIR or test:///default)",
                uri.driver
            )),
            Err(e) => Err(e.to_string()),
        };
        LocalStorage { binding, backends }
    }

    fn pools(&self) -> Result<Arc<Pools>> {
        match &self.binding {
            Ok(root) => storage_bind::pools_for(root, Arc::clone(&self.backends)),
            Err(why) => Err(no_support(why.clone())),
        }
    }
}

impl StorageService for LocalStorage {
    fn list_pools(&self, flags: u32) -> Result<Vec<PoolId>> {
        self.pools()?.list(flags)
    }
    fn pool_by_name(&self, name: &str) -> Result<PoolId> {
        self.pools()?.lookup_by_name(name)
    }
    fn pool_by_uuid(&self, uuid: uuid::Uuid) -> Result<PoolId> {
        self.pools()?.lookup_by_uuid(uuid)
    }
    fn pool_by_target_path(&self, path: &str) -> Result<PoolId> {
        self.pools()?.lookup_by_target_path(path)
    }
    fn pool_by_volume(&self, vol: &VolumeId) -> Result<PoolId> {
        self.pools()?.lookup_by_name(&vol.pool)
    }
    fn define_pool(&self, xml: &str, flags: u32) -> Result<PoolId> {
        self.pools()?.define(xml, flags)
    }
    fn create_pool_xml(&self, xml: &str, flags: u32) -> Result<PoolId> {
        self.pools()?.create_xml(xml, flags)
    }
    fn find_pool_sources(&self, pool_type: &str, spec: Option<&str>, flags: u32) -> Result<String> {
        self.backends
            .backend(pool_type)?
            .find_pool_sources(spec.unwrap_or(""), flags)
    }
    fn pool_capabilities(&self, flags: u32) -> Result<String> {
        crate::files::check_flags(
            rvirt_plugin_api::ErrorDomain::Storage as i32,
            "virConnectGetStoragePoolCapabilities",
            flags,
            0,
        )?;
        Ok(rvirt_xml::pool::capabilities_xml(&|t| {
            self.backends.backend(t).is_ok()
        }))
    }
    fn create_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.pools()?.create(&pool.name, flags)
    }
    fn build_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.pools()?.build(&pool.name, flags)
    }
    fn destroy_pool(&self, pool: &PoolId) -> Result<()> {
        self.pools()?.destroy(&pool.name)
    }
    fn delete_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.pools()?.delete(&pool.name, flags)
    }
    fn undefine_pool(&self, pool: &PoolId) -> Result<()> {
        self.pools()?.undefine(&pool.name)
    }
    fn refresh_pool(&self, pool: &PoolId, flags: u32) -> Result<()> {
        self.pools()?.refresh(&pool.name, flags)
    }
    fn pool_info(&self, pool: &PoolId) -> Result<PoolInfo> {
        self.pools()?.info(&pool.name)
    }
    fn pool_xml(&self, pool: &PoolId, flags: u32) -> Result<String> {
        self.pools()?.xml(&pool.name, flags)
    }
    fn pool_autostart(&self, pool: &PoolId) -> Result<bool> {
        self.pools()?.autostart(&pool.name)
    }
    fn set_pool_autostart(&self, pool: &PoolId, on: bool) -> Result<()> {
        self.pools()?.set_autostart(&pool.name, on)
    }
    fn pool_is_active(&self, pool: &PoolId) -> Result<bool> {
        self.pools()?.is_active(&pool.name)
    }
    fn pool_is_persistent(&self, pool: &PoolId) -> Result<bool> {
        self.pools()?.is_persistent(&pool.name)
    }
    fn list_volumes(&self, pool: &PoolId, flags: u32) -> Result<Vec<VolumeId>> {
        check_no_flags("virStoragePoolListAllVolumes", flags)?;
        self.pools()?.list_volumes(&pool.name)
    }
    fn volume_by_name(&self, pool: &PoolId, name: &str) -> Result<VolumeId> {
        self.pools()?.volume_by_name(&pool.name, name)
    }
    fn volume_by_key(&self, key: &str) -> Result<VolumeId> {
        self.pools()?.volume_by_key(key)
    }
    fn volume_by_path(&self, path: &str) -> Result<VolumeId> {
        self.pools()?.volume_by_path(path)
    }
    fn create_volume(&self, pool: &PoolId, xml: &str, flags: u32) -> Result<VolumeId> {
        self.pools()?.create_volume(&pool.name, xml, None, flags)
    }
    fn create_volume_from(
        &self,
        pool: &PoolId,
        xml: &str,
        from: &VolumeId,
        flags: u32,
    ) -> Result<VolumeId> {
        self.pools()?
            .create_volume(&pool.name, xml, Some((&from.pool, &from.name)), flags)
    }
    fn delete_volume(&self, vol: &VolumeId, flags: u32) -> Result<()> {
        self.pools()?.delete_volume(&vol.pool, &vol.name, flags)
    }
    fn wipe_volume(&self, vol: &VolumeId, algorithm: u32, flags: u32) -> Result<()> {
        self.pools()?
            .wipe_volume(&vol.pool, &vol.name, algorithm, flags)
    }
    fn resize_volume(&self, vol: &VolumeId, capacity: u64, flags: u32) -> Result<()> {
        self.pools()?
            .resize_volume(&vol.pool, &vol.name, capacity, flags)
    }
    fn volume_info(&self, vol: &VolumeId, flags: u32) -> Result<VolumeInfo> {
        // VIR_STORAGE_VOL_GET_PHYSICAL is not honoured yet
        check_no_flags("virStorageVolGetInfoFlags", flags)?;
        self.pools()?.volume_info(&vol.pool, &vol.name)
    }
    fn volume_xml(&self, vol: &VolumeId, flags: u32) -> Result<String> {
        self.pools()?.volume_xml(&vol.pool, &vol.name, flags)
    }
    fn volume_path(&self, vol: &VolumeId) -> Result<String> {
        self.pools()?.volume_path(&vol.pool, &vol.name)
    }
    fn upload_volume(
        &self,
        vol: &VolumeId,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn StreamIo>> {
        Ok(Box::new(self.pools()?.upload_volume(
            &vol.pool, &vol.name, offset, length, flags,
        )?))
    }
    fn download_volume(
        &self,
        vol: &VolumeId,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn StreamIo>> {
        Ok(Box::new(self.pools()?.download_volume(
            &vol.pool, &vol.name, offset, length, flags,
        )?))
    }
    fn subscribe_pool_events(&self, callback: PoolEventCallback) -> Result<u64> {
        Ok(self.pools()?.subscribe(callback))
    }
    fn unsubscribe_pool_events(&self, id: u64) -> Result<()> {
        self.pools()?.unsubscribe(id);
        Ok(())
    }
}

/// A handle on a storage pool of a connection (`virStoragePoolPtr`).
#[derive(Clone, Debug)]
pub struct StoragePool {
    conn: Connection,
    id: PoolId,
}

/// A handle on a storage volume of a connection (`virStorageVolPtr`).
#[derive(Clone, Debug)]
pub struct StorageVol {
    conn: Connection,
    id: VolumeId,
}

use crate::acl::{Object, P};

fn pool_obj(p: &PoolId) -> Object<'_> {
    Object::Pool {
        name: &p.name,
        uuid: Some(p.uuid),
    }
}

fn vol_obj(v: &VolumeId) -> Object<'_> {
    Object::Vol {
        pool: &v.pool,
        name: &v.name,
    }
}

impl Connection {
    fn storage(&self) -> &dyn StorageService {
        &*self.storage
    }

    fn pool(&self, id: PoolId) -> StoragePool {
        StoragePool {
            conn: self.clone(),
            id,
        }
    }

    fn vol(&self, id: VolumeId) -> StorageVol {
        StorageVol {
            conn: self.clone(),
            id,
        }
    }

    /// A handle on a pool the caller already identified (a remote client's handle),
    /// made without asking the driver.
    pub fn storage_pool_handle(&self, id: PoolId) -> StoragePool {
        self.pool(id)
    }

    /// A handle on a volume the caller already identified, made without asking.
    pub fn storage_vol_handle(&self, id: VolumeId) -> StorageVol {
        self.vol(id)
    }

    /// `virConnectListAllStoragePools` with `VIR_CONNECT_LIST_STORAGE_POOLS_*` flags
    /// ([`crate::storage::list_flags`]).
    pub fn list_all_storage_pools(&self, flags: u32) -> Result<Vec<StoragePool>> {
        self.check_connect(P::ConnectListAllStoragePools)?;
        Ok(self
            .storage()
            .list_pools(flags)?
            .into_iter()
            .filter(|p| self.acl.visible("storage_pool:getattr", pool_obj(p)))
            .map(|p| self.pool(p))
            .collect())
    }

    /// `virStoragePoolLookupByName`.
    pub fn lookup_storage_pool_by_name(&self, name: &str) -> Result<StoragePool> {
        let p = self.storage().pool_by_name(name)?;
        self.acl.require(P::StoragePoolLookupByName, pool_obj(&p))?;
        Ok(self.pool(p))
    }

    /// `virStoragePoolLookupByUUID`.
    pub fn lookup_storage_pool_by_uuid(&self, uuid: uuid::Uuid) -> Result<StoragePool> {
        let p = self.storage().pool_by_uuid(uuid)?;
        self.acl.require(P::StoragePoolLookupByUuid, pool_obj(&p))?;
        Ok(self.pool(p))
    }

    /// `virStoragePoolLookupByTargetPath`.
    pub fn lookup_storage_pool_by_target_path(&self, path: &str) -> Result<StoragePool> {
        let p = self.storage().pool_by_target_path(path)?;
        self.acl
            .require(P::StoragePoolLookupByTargetPath, pool_obj(&p))?;
        Ok(self.pool(p))
    }

    /// `virStoragePoolDefineXML`.
    pub fn storage_pool_define_xml(&self, xml: &str, flags: u32) -> Result<StoragePool> {
        self.writable("virStoragePoolDefineXML")?;
        let (name, uuid) = crate::acl::xml_identity(xml);
        self.acl
            .require(P::StoragePoolDefineXml, Object::Pool { name: &name, uuid })?;
        self.storage().define_pool(xml, flags).map(|p| self.pool(p))
    }

    /// `virStoragePoolCreateXML`: a transient pool, started.
    pub fn storage_pool_create_xml(&self, xml: &str, flags: u32) -> Result<StoragePool> {
        self.writable("virStoragePoolCreateXML")?;
        let (name, uuid) = crate::acl::xml_identity(xml);
        self.acl
            .require(P::StoragePoolCreateXml, Object::Pool { name: &name, uuid })?;
        self.storage()
            .create_pool_xml(xml, flags)
            .map(|p| self.pool(p))
    }

    /// `virConnectFindStoragePoolSources`.
    pub fn find_storage_pool_sources(
        &self,
        pool_type: &str,
        spec: Option<&str>,
        flags: u32,
    ) -> Result<String> {
        self.writable("virConnectFindStoragePoolSources")?;
        self.check_connect(P::ConnectFindStoragePoolSources)?;
        self.storage().find_pool_sources(pool_type, spec, flags)
    }

    /// `virConnectGetStoragePoolCapabilities`.
    pub fn storage_pool_capabilities(&self, flags: u32) -> Result<String> {
        self.check_connect(P::ConnectGetStoragePoolCapabilities)?;
        self.storage().pool_capabilities(flags)
    }

    /// `virStorageVolLookupByKey`.
    pub fn lookup_storage_vol_by_key(&self, key: &str) -> Result<StorageVol> {
        let v = self.storage().volume_by_key(key)?;
        self.acl.require(P::StorageVolLookupByKey, vol_obj(&v))?;
        Ok(self.vol(v))
    }

    /// `virStorageVolLookupByPath`.
    pub fn lookup_storage_vol_by_path(&self, path: &str) -> Result<StorageVol> {
        let v = self.storage().volume_by_path(path)?;
        self.acl.require(P::StorageVolLookupByPath, vol_obj(&v))?;
        Ok(self.vol(v))
    }

    /// Registers `callback` for storage pool lifecycle and refresh events. It runs on
    /// the thread that made the change (or the remote reader): keep it quick.
    pub fn subscribe_storage_pool_events(
        &self,
        callback: impl Fn(&PoolEvent) + Send + Sync + 'static,
    ) -> Result<u64> {
        self.check_connect(P::ConnectStoragePoolEventRegisterAny)?;
        let acl = self.acl.clone();
        self.storage()
            .subscribe_pool_events(Arc::new(move |e: &PoolEvent| {
                let pool = Object::Pool {
                    name: &e.name,
                    uuid: Some(e.uuid),
                };
                if acl.visible("storage_pool:getattr", pool) {
                    callback(e)
                }
            }))
    }

    /// Removes a callback registered with [`Connection::subscribe_storage_pool_events`].
    pub fn unsubscribe_storage_pool_events(&self, id: u64) -> Result<()> {
        self.storage().unsubscribe_pool_events(id)
    }
}

impl StoragePool {
    /// Name.
    pub fn name(&self) -> &str {
        &self.id.name
    }

    /// UUID.
    pub fn uuid(&self) -> uuid::Uuid {
        self.id.uuid
    }

    /// Name and UUID.
    pub fn identity(&self) -> &PoolId {
        &self.id
    }

    /// The connection this handle belongs to.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn s(&self) -> &dyn StorageService {
        self.conn.storage()
    }

    #[inline]
    fn check(&self, p: P) -> Result<()> {
        self.conn.acl.require(p, pool_obj(&self.id))
    }

    /// `virStoragePoolCreate`: starts the pool (`VIR_STORAGE_POOL_CREATE_WITH_BUILD*`).
    pub fn create(&self, flags: u32) -> Result<()> {
        self.conn.writable("virStoragePoolCreate")?;
        self.check(P::StoragePoolCreate)?;
        self.s().create_pool(&self.id, flags)
    }

    /// `virStoragePoolBuild`.
    pub fn build(&self, flags: u32) -> Result<()> {
        self.conn.writable("virStoragePoolBuild")?;
        self.check(P::StoragePoolBuild)?;
        self.s().build_pool(&self.id, flags)
    }

    /// `virStoragePoolDestroy`.
    pub fn destroy(&self) -> Result<()> {
        self.conn.writable("virStoragePoolDestroy")?;
        self.check(P::StoragePoolDestroy)?;
        self.s().destroy_pool(&self.id)
    }

    /// `virStoragePoolDelete`.
    pub fn delete(&self, flags: u32) -> Result<()> {
        self.conn.writable("virStoragePoolDelete")?;
        self.check(P::StoragePoolDelete)?;
        self.s().delete_pool(&self.id, flags)
    }

    /// `virStoragePoolUndefine`.
    pub fn undefine(&self) -> Result<()> {
        self.conn.writable("virStoragePoolUndefine")?;
        self.check(P::StoragePoolUndefine)?;
        self.s().undefine_pool(&self.id)
    }

    /// `virStoragePoolRefresh`.
    pub fn refresh(&self, flags: u32) -> Result<()> {
        self.conn.writable("virStoragePoolRefresh")?;
        self.check(P::StoragePoolRefresh)?;
        self.s().refresh_pool(&self.id, flags)
    }

    /// `virStoragePoolGetInfo`.
    pub fn get_info(&self) -> Result<PoolInfo> {
        self.check(P::StoragePoolGetInfo)?;
        self.s().pool_info(&self.id)
    }

    /// `virStoragePoolGetXMLDesc` (`VIR_STORAGE_XML_INACTIVE` = 1).
    pub fn get_xml_desc(&self, flags: u32) -> Result<String> {
        self.check(P::StoragePoolGetXmlDesc)?;
        self.s().pool_xml(&self.id, flags)
    }

    /// `virStoragePoolGetAutostart`.
    pub fn get_autostart(&self) -> Result<bool> {
        self.check(P::StoragePoolGetAutostart)?;
        self.s().pool_autostart(&self.id)
    }

    /// `virStoragePoolSetAutostart`.
    pub fn set_autostart(&self, autostart: bool) -> Result<()> {
        self.conn.writable("virStoragePoolSetAutostart")?;
        self.check(P::StoragePoolSetAutostart)?;
        self.s().set_pool_autostart(&self.id, autostart)
    }

    /// `virStoragePoolIsActive`.
    pub fn is_active(&self) -> Result<bool> {
        self.check(P::StoragePoolIsActive)?;
        self.s().pool_is_active(&self.id)
    }

    /// `virStoragePoolIsPersistent`.
    pub fn is_persistent(&self) -> Result<bool> {
        self.check(P::StoragePoolIsPersistent)?;
        self.s().pool_is_persistent(&self.id)
    }

    /// `virStoragePoolListAllVolumes`.
    pub fn list_all_volumes(&self, flags: u32) -> Result<Vec<StorageVol>> {
        self.check(P::StoragePoolListAllVolumes)?;
        Ok(self
            .s()
            .list_volumes(&self.id, flags)?
            .into_iter()
            .filter(|v| self.conn.acl.visible("storage_vol:getattr", vol_obj(v)))
            .map(|v| self.conn.vol(v))
            .collect())
    }

    /// `virStorageVolLookupByName`.
    pub fn lookup_vol_by_name(&self, name: &str) -> Result<StorageVol> {
        let v = self.s().volume_by_name(&self.id, name)?;
        self.conn
            .acl
            .require(P::StorageVolLookupByName, vol_obj(&v))?;
        Ok(self.conn.vol(v))
    }

    /// `virStorageVolCreateXML`.
    pub fn create_vol_xml(&self, xml: &str, flags: u32) -> Result<StorageVol> {
        self.conn.writable("virStorageVolCreateXML")?;
        let (name, _) = crate::acl::xml_identity(xml);
        self.conn.acl.require(
            P::StorageVolCreateXml,
            Object::Vol {
                pool: &self.id.name,
                name: &name,
            },
        )?;
        self.s()
            .create_volume(&self.id, xml, flags)
            .map(|v| self.conn.vol(v))
    }

    /// `virStorageVolCreateXMLFrom`: a new volume in this pool with `from`'s contents.
    pub fn create_vol_xml_from(
        &self,
        xml: &str,
        from: &StorageVol,
        flags: u32,
    ) -> Result<StorageVol> {
        self.conn.writable("virStorageVolCreateXMLFrom")?;
        let (name, _) = crate::acl::xml_identity(xml);
        self.conn.acl.require(
            P::StorageVolCreateXmlFrom,
            Object::Vol {
                pool: &self.id.name,
                name: &name,
            },
        )?;
        self.s()
            .create_volume_from(&self.id, xml, &from.id, flags)
            .map(|v| self.conn.vol(v))
    }
}

impl StorageVol {
    /// Name.
    pub fn name(&self) -> &str {
        &self.id.name
    }

    /// Key (the path, for file-based pools).
    pub fn key(&self) -> &str {
        &self.id.key
    }

    /// The name of the pool holding it.
    pub fn pool_name(&self) -> &str {
        &self.id.pool
    }

    /// Pool, name and key.
    pub fn identity(&self) -> &VolumeId {
        &self.id
    }

    fn s(&self) -> &dyn StorageService {
        self.conn.storage()
    }

    #[inline]
    fn check(&self, p: P) -> Result<()> {
        self.conn.acl.require(p, vol_obj(&self.id))
    }

    /// `virStoragePoolLookupByVolume`.
    pub fn pool(&self) -> Result<StoragePool> {
        let p = self.s().pool_by_volume(&self.id)?;
        self.conn
            .acl
            .require(P::StoragePoolLookupByVolume, pool_obj(&p))?;
        Ok(self.conn.pool(p))
    }

    /// `virStorageVolDelete`.
    pub fn delete(&self, flags: u32) -> Result<()> {
        self.conn.writable("virStorageVolDelete")?;
        self.check(P::StorageVolDelete)?;
        self.s().delete_volume(&self.id, flags)
    }

    /// `virStorageVolWipe`.
    pub fn wipe(&self, flags: u32) -> Result<()> {
        self.wipe_pattern(0, flags)
    }

    /// `virStorageVolWipePattern` (`VIR_STORAGE_VOL_WIPE_ALG_*`).
    pub fn wipe_pattern(&self, algorithm: u32, flags: u32) -> Result<()> {
        self.conn.writable("virStorageVolWipePattern")?;
        self.check(P::StorageVolWipePattern)?;
        self.s().wipe_volume(&self.id, algorithm, flags)
    }

    /// `virStorageVolResize` (`VIR_STORAGE_VOL_RESIZE_*`).
    pub fn resize(&self, capacity: u64, flags: u32) -> Result<()> {
        self.conn.writable("virStorageVolResize")?;
        self.check(P::StorageVolResize)?;
        self.s().resize_volume(&self.id, capacity, flags)
    }

    /// `virStorageVolGetInfo`.
    pub fn get_info(&self) -> Result<VolumeInfo> {
        self.check(P::StorageVolGetInfo)?;
        self.s().volume_info(&self.id, 0)
    }

    /// `virStorageVolGetInfoFlags`.
    pub fn get_info_flags(&self, flags: u32) -> Result<VolumeInfo> {
        self.check(P::StorageVolGetInfoFlags)?;
        self.s().volume_info(&self.id, flags)
    }

    /// `virStorageVolGetXMLDesc`.
    pub fn get_xml_desc(&self, flags: u32) -> Result<String> {
        self.check(P::StorageVolGetXmlDesc)?;
        self.s().volume_xml(&self.id, flags)
    }

    /// `virStorageVolGetPath`.
    pub fn get_path(&self) -> Result<String> {
        self.check(P::StorageVolGetPath)?;
        self.s().volume_path(&self.id)
    }

    /// `virStorageVolUpload`: a stream to [`VolStream::send`] `length` bytes (0: up to
    /// the end of the volume) to write from `offset`, then [`VolStream::finish`].
    /// `flags`: `VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM` is refused (no holes).
    pub fn upload(&self, offset: u64, length: u64, flags: u32) -> Result<VolStream> {
        self.conn.writable("virStorageVolUpload")?;
        self.check(P::StorageVolUpload)?;
        self.s()
            .upload_volume(&self.id, offset, length, flags)
            .map(VolStream::new)
    }

    /// `virStorageVolDownload`: a stream to [`VolStream::recv`] `length` bytes (0: to
    /// the end) from `offset` until an empty chunk, then [`VolStream::finish`].
    pub fn download(&self, offset: u64, length: u64, flags: u32) -> Result<VolStream> {
        // refused on read-only connections, as libvirt's procedure table does
        self.conn.writable("virStorageVolDownload")?;
        self.check(P::StorageVolDownload)?;
        self.s()
            .download_volume(&self.id, offset, length, flags)
            .map(VolStream::new)
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::tests::MemBackend;
    use crate::{Error, Runtime};
    use std::sync::Arc;

    fn runtime() -> Runtime {
        let rt = Runtime::with_search_path(vec![rvirt_tests::profile_dir()]);
        rt.add_pool_backend("dir", Arc::new(MemBackend::default()));
        rt
    }

    #[test]
    fn a_local_connection_drives_its_roots_pools() {
        let rt = runtime();
        let conn = rt.open("test:///default", false).unwrap();
        let p = conn
            .storage_pool_define_xml(
                "<pool type='dir'><name>emb</name><target><path>/t/emb</path></target></pool>",
                0,
            )
            .unwrap();
        p.build(0).unwrap();
        p.create(0).unwrap();
        let v = p
            .create_vol_xml(
                "<volume><name>v</name><capacity unit='bytes'>512</capacity></volume>",
                0,
            )
            .unwrap();
        assert_eq!(v.get_info().unwrap().capacity, 512);
        assert_eq!(conn.lookup_storage_vol_by_key(v.key()).unwrap().name(), "v");
        assert_eq!(v.pool().unwrap().name(), "emb");
        // another connection of the process sees the same in-memory root
        let other = rt.open("test:///default", true).unwrap();
        let seen = other.lookup_storage_pool_by_name("emb").unwrap();
        assert!(seen.is_active().unwrap());
        assert_eq!(seen.list_all_volumes(0).unwrap().len(), 1);
        assert!(seen.list_all_volumes(1).is_err(), "no flags yet");
        // ... read-only: queries only
        for e in [
            seen.destroy().unwrap_err(),
            other.storage_pool_define_xml("<pool/>", 0).unwrap_err(),
            other
                .lookup_storage_vol_by_key(v.key())
                .unwrap()
                .delete(0)
                .unwrap_err(),
        ] {
            assert!(matches!(e, Error::ReadOnly(_)), "{e}");
            assert_eq!(e.code(), 29);
        }
        // a backend without streams says so, naming the API and the pool's type
        let e = v.upload(0, 0, 0).unwrap_err();
        assert!(e.is_no_support(), "{e}");
        assert!(
            e.to_string().contains("virStorageVolUpload") && e.to_string().contains("type 'dir'"),
            "{e}"
        );
        let e = v.download(0, 0, 0).unwrap_err();
        assert!(e.to_string().contains("virStorageVolDownload"), "{e}");
        // read-only connections stream nothing
        let ro_vol = other.lookup_storage_vol_by_key(v.key()).unwrap();
        assert_eq!(ro_vol.upload(0, 0, 0).unwrap_err().code(), 29);
        assert_eq!(ro_vol.download(0, 0, 0).unwrap_err().code(), 29);
        v.delete(0).unwrap();
        p.destroy().unwrap();
        p.undefine().unwrap();
    }

    #[test]
    fn roots_are_shared_per_process_and_uris_without_storage_say_so() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("qemu:///embed?root={}", dir.path().display());
        let a = rt.storage_pools(&uri).unwrap();
        let b = Runtime::with_search_path(vec![])
            .storage_pools(&uri)
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one Pools per root per process");
        assert!(dir.path().join("etc/storage/autostart").is_dir());
        assert!(dir.path().join("run/storage").is_dir());
        let e = rt.storage_pools("test:///tmp/node.xml").unwrap_err();
        assert!(e.is_no_support(), "{e}");
    }
}

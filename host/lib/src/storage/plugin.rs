//! The host's handle of a plugin's storage backend ([`StorageBackend`]), the streams it
//! opens ([`VolumeStream`]) and the services the host lends a storage plugin.
//!
//! The host owns pool and volume objects; a backend does the type-specific work and
//! reports what exists. Every call crosses the plugin boundary under `catch_unwind`, and
//! its errors become the host [`Error`](crate::Error) with libvirt's numbers.
//!
//! Architecture invariant: with `plugin.rs`, the only module that touches ABI types;
//! everything public here is a plain host type.

use super::PoolRefresh;
use crate::{Error, Result, plugin::call};
use rvirt_plugin_api::{
    self as api, ErrorCode, PResult, StorageBackendBox, StreamBox,
    abi_stable::std_types::{RSlice, RStr, RString, RVec},
    log_level,
};
use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    sync::Arc,
};

/// Which plugin a call goes to, for messages.
#[derive(Debug)]
struct Origin {
    plugin: String,
    api_version: String,
}

impl Origin {
    /// Calls into the plugin; a no-support answer is completed with the plugin's name and
    /// API version (as connections do), so an older plugin's gap is easy to place.
    fn call<T>(&self, operation: &'static str, f: impl FnOnce() -> PResult<T>) -> Result<T> {
        call(&self.plugin, operation, f).map_err(|e| match e {
            Error::Driver {
                code,
                domain,
                message,
            } if code == ErrorCode::NoSupport as i32
                && !message.contains(&format!("plugin '{}'", self.plugin)) =>
            {
                Error::Driver {
                    code,
                    domain,
                    message: format!(
                        "{message} (plugin '{}', plugin API {})",
                        self.plugin, self.api_version
                    ),
                }
            }
            e => e,
        })
    }
}

/// A plugin's storage backend for one pool type. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct StorageBackend {
    origin: Arc<Origin>,
    pool_type: String,
    inner: Arc<StorageBackendBox>,
}

impl std::fmt::Debug for StorageBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageBackend")
            .field("plugin", &self.origin.plugin)
            .field("pool_type", &self.pool_type)
            .finish()
    }
}

fn s(x: &str) -> RStr<'_> {
    RStr::from_str(x)
}

impl StorageBackend {
    pub(crate) fn new(
        plugin: &str,
        api_version: &str,
        pool_type: &str,
        inner: StorageBackendBox,
    ) -> Self {
        Self {
            origin: Arc::new(Origin {
                plugin: plugin.to_string(),
                api_version: api_version.to_string(),
            }),
            pool_type: pool_type.to_string(),
            inner: Arc::new(inner),
        }
    }

    /// The pool type this backend serves.
    pub fn pool_type(&self) -> &str {
        &self.pool_type
    }

    /// The name of the plugin serving it.
    pub fn plugin(&self) -> &str {
        &self.origin.plugin
    }

    /// Whether the pool is already active (e.g. mounted).
    pub fn check_pool(&self, pool_xml: &str) -> Result<bool> {
        self.origin.call("virStoragePoolIsActive", || {
            self.inner.check_pool(s(pool_xml))
        })
    }

    /// Builds the pool's underlying storage.
    pub fn build_pool(&self, pool_xml: &str, flags: u32) -> Result<()> {
        self.origin.call("virStoragePoolBuild", || {
            self.inner.build_pool(s(pool_xml), flags)
        })
    }

    /// Makes the pool usable.
    pub fn start_pool(&self, pool_xml: &str) -> Result<()> {
        self.origin.call("virStoragePoolCreate", || {
            self.inner.start_pool(s(pool_xml))
        })
    }

    /// Releases the pool.
    pub fn stop_pool(&self, pool_xml: &str) -> Result<()> {
        self.origin.call("virStoragePoolDestroy", || {
            self.inner.stop_pool(s(pool_xml))
        })
    }

    /// Deletes the pool's underlying storage.
    pub fn delete_pool(&self, pool_xml: &str, flags: u32) -> Result<()> {
        self.origin.call("virStoragePoolDelete", || {
            self.inner.delete_pool(s(pool_xml), flags)
        })
    }

    /// Sizes of the pool and the volumes it holds.
    pub fn refresh_pool(&self, pool_xml: &str) -> Result<PoolRefresh> {
        let r = self.origin.call("virStoragePoolRefresh", || {
            self.inner.refresh_pool(s(pool_xml))
        })?;
        Ok(PoolRefresh {
            capacity: r.capacity,
            allocation: r.allocation,
            available: r.available,
            volumes: r.volumes.into_iter().map(RString::into_string).collect(),
        })
    }

    /// Creates a volume; answers its XML as created.
    pub fn create_volume(&self, pool_xml: &str, vol_xml: &str, flags: u32) -> Result<String> {
        self.origin
            .call("virStorageVolCreateXML", || {
                self.inner.create_volume(s(pool_xml), s(vol_xml), flags)
            })
            .map(RString::into_string)
    }

    /// Creates a volume holding a copy of another; answers its XML.
    pub fn create_volume_from(
        &self,
        pool_xml: &str,
        vol_xml: &str,
        src_pool_xml: &str,
        src_vol_xml: &str,
        flags: u32,
    ) -> Result<String> {
        self.origin
            .call("virStorageVolCreateXMLFrom", || {
                self.inner.create_volume_from(
                    s(pool_xml),
                    s(vol_xml),
                    s(src_pool_xml),
                    s(src_vol_xml),
                    flags,
                )
            })
            .map(RString::into_string)
    }

    /// Deletes a volume.
    pub fn delete_volume(&self, pool_xml: &str, vol_xml: &str, flags: u32) -> Result<()> {
        self.origin.call("virStorageVolDelete", || {
            self.inner.delete_volume(s(pool_xml), s(vol_xml), flags)
        })
    }

    /// Changes a volume's capacity (bytes).
    pub fn resize_volume(
        &self,
        pool_xml: &str,
        vol_xml: &str,
        capacity: u64,
        flags: u32,
    ) -> Result<()> {
        self.origin.call("virStorageVolResize", || {
            self.inner
                .resize_volume(s(pool_xml), s(vol_xml), capacity, flags)
        })
    }

    /// Overwrites a volume's data with a `VIR_STORAGE_VOL_WIPE_ALG_*` algorithm.
    pub fn wipe_volume(
        &self,
        pool_xml: &str,
        vol_xml: &str,
        algorithm: u32,
        flags: u32,
    ) -> Result<()> {
        self.origin.call("virStorageVolWipePattern", || {
            self.inner
                .wipe_volume(s(pool_xml), s(vol_xml), algorithm, flags)
        })
    }

    /// The volume's XML as it is now.
    pub fn refresh_volume(&self, pool_xml: &str, vol_xml: &str) -> Result<String> {
        self.origin
            .call("virStorageVolGetXMLDesc", || {
                self.inner.refresh_volume(s(pool_xml), s(vol_xml))
            })
            .map(RString::into_string)
    }

    /// A stream to `send` a volume's new contents to, then `finish`.
    pub fn upload(
        &self,
        pool_xml: &str,
        vol_xml: &str,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<VolumeStream> {
        let inner = self.origin.call("virStorageVolUpload", || {
            self.inner
                .upload(s(pool_xml), s(vol_xml), offset, length, flags)
        })?;
        Ok(VolumeStream::new(self.origin.clone(), inner))
    }

    /// A stream to `recv` a volume's contents from, until an empty chunk.
    pub fn download(
        &self,
        pool_xml: &str,
        vol_xml: &str,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<VolumeStream> {
        let inner = self.origin.call("virStorageVolDownload", || {
            self.inner
                .download(s(pool_xml), s(vol_xml), offset, length, flags)
        })?;
        Ok(VolumeStream::new(self.origin.clone(), inner))
    }

    /// Pool sources the backend finds from a `<source>` spec (a `<sources>` document).
    pub fn find_pool_sources(&self, source_spec_xml: &str, flags: u32) -> Result<String> {
        self.origin
            .call("virConnectFindStoragePoolSources", || {
                self.inner.find_pool_sources(s(source_spec_xml), flags)
            })
            .map(RString::into_string)
    }
}

/// A stream opened by a storage backend: an upload (`send` then `finish`) or a download
/// (`recv` until an empty chunk). Dropped before `finish` or `abort`, it is aborted.
pub struct VolumeStream {
    origin: Arc<Origin>,
    inner: StreamBox,
    closed: bool,
}

impl std::fmt::Debug for VolumeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeStream")
            .field("plugin", &self.origin.plugin)
            .field("closed", &self.closed)
            .finish()
    }
}

impl VolumeStream {
    fn new(origin: Arc<Origin>, inner: StreamBox) -> Self {
        Self {
            origin,
            inner,
            closed: false,
        }
    }

    /// Writes the next chunk.
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        let inner = &mut self.inner;
        self.origin
            .call("virStreamSend", || inner.send(RSlice::from_slice(data)))
    }

    /// Reads the next chunk of at most `max` bytes; empty at the end of the stream.
    pub fn recv(&mut self, max: usize) -> Result<Vec<u8>> {
        let inner = &mut self.inner;
        self.origin
            .call("virStreamRecv", || inner.recv(max as u64))
            .map(RVec::into_vec)
    }

    /// [`VolumeStream::recv`] appending to `out` straight from the plugin's buffer (no
    /// host-side copy of its own); returns the bytes appended, 0 at the end.
    pub fn recv_into(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize> {
        let inner = &mut self.inner;
        let chunk = self
            .origin
            .call("virStreamRecv", || inner.recv(max as u64))?;
        out.extend_from_slice(chunk.as_slice());
        Ok(chunk.len())
    }

    /// Reads everything left, in chunks of `chunk` bytes, then finishes the stream.
    pub fn recv_all(&mut self, chunk: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let c = self.recv(chunk.max(1))?;
            if c.is_empty() {
                break;
            }
            out.extend_from_slice(&c);
        }
        self.finish()?;
        Ok(out)
    }

    /// Ends the stream, committing an upload.
    pub fn finish(&mut self) -> Result<()> {
        self.closed = true;
        let inner = &mut self.inner;
        self.origin.call("virStreamFinish", || inner.finish())
    }

    /// Abandons the stream.
    pub fn abort(&mut self) -> Result<()> {
        self.closed = true;
        let inner = &mut self.inner;
        self.origin.call("virStreamAbort", || inner.abort())
    }
}

impl Drop for VolumeStream {
    fn drop(&mut self) {
        if !self.closed
            && let Err(e) = self.abort()
        {
            tracing::warn!("aborting a dropped stream failed: {e}");
        }
    }
}

/// The services the host lends a plugin's storage facet.
pub(crate) struct HostServicesImpl {
    plugin: String,
    system_root: String,
    /// The secrets of the root whose pools the backend serves (`None`: no secrets).
    secrets: Option<crate::secrets_api::SecretsRoot>,
}

impl HostServicesImpl {
    pub(crate) fn new(
        plugin: &str,
        system_root: &Path,
        secrets: Option<crate::secrets_api::SecretsRoot>,
    ) -> Self {
        Self {
            plugin: plugin.to_string(),
            system_root: system_root.display().to_string(),
            secrets,
        }
    }
}

impl api::HostServices for HostServicesImpl {
    fn system_root(&self) -> RString {
        self.system_root.as_str().into()
    }

    fn secret_value(&self, usage_type: i32, usage_id: RStr<'_>) -> PResult<RVec<u8>> {
        crate::plugin::secret_for_plugin(self.secrets.as_ref(), usage_type, usage_id.as_str())
    }

    fn log(&self, level: u32, message: RStr<'_>) {
        // Runs on the plugin's side of the boundary: a panicking subscriber of `tracing`
        // must not unwind into the plugin's extern "C" frame.
        let plugin = self.plugin.as_str();
        let message = message.as_str();
        let logged = catch_unwind(AssertUnwindSafe(|| match level {
            log_level::ERROR => tracing::error!(plugin, "{message}"),
            log_level::WARN => tracing::warn!(plugin, "{message}"),
            log_level::INFO => tracing::info!(plugin, "{message}"),
            _ => tracing::debug!(plugin, "{message}"),
        }));
        if logged.is_err() {
            eprintln!("rvirt: logging a message of plugin '{plugin}' panicked");
        }
    }
}

/// A plugin's backend serves the host's storage subsystem directly.
impl super::PoolBackend for StorageBackend {
    fn find_pool_sources(&self, spec: &str, flags: u32) -> Result<String> {
        StorageBackend::find_pool_sources(self, spec, flags)
    }
    fn check_pool(&self, pool: &str) -> Result<bool> {
        StorageBackend::check_pool(self, pool)
    }
    fn build_pool(&self, pool: &str, flags: u32) -> Result<()> {
        StorageBackend::build_pool(self, pool, flags)
    }
    fn start_pool(&self, pool: &str) -> Result<()> {
        StorageBackend::start_pool(self, pool)
    }
    fn stop_pool(&self, pool: &str) -> Result<()> {
        StorageBackend::stop_pool(self, pool)
    }
    fn delete_pool(&self, pool: &str, flags: u32) -> Result<()> {
        StorageBackend::delete_pool(self, pool, flags)
    }
    fn refresh_pool(&self, pool: &str) -> Result<PoolRefresh> {
        StorageBackend::refresh_pool(self, pool)
    }
    fn create_volume(&self, pool: &str, vol: &str, flags: u32) -> Result<String> {
        StorageBackend::create_volume(self, pool, vol, flags)
    }
    fn create_volume_from(
        &self,
        pool: &str,
        vol: &str,
        src_pool: &str,
        src_vol: &str,
        flags: u32,
    ) -> Result<String> {
        StorageBackend::create_volume_from(self, pool, vol, src_pool, src_vol, flags)
    }
    fn delete_volume(&self, pool: &str, vol: &str, flags: u32) -> Result<()> {
        StorageBackend::delete_volume(self, pool, vol, flags)
    }
    fn resize_volume(&self, pool: &str, vol: &str, capacity: u64, flags: u32) -> Result<()> {
        StorageBackend::resize_volume(self, pool, vol, capacity, flags)
    }
    fn wipe_volume(&self, pool: &str, vol: &str, algorithm: u32, flags: u32) -> Result<()> {
        StorageBackend::wipe_volume(self, pool, vol, algorithm, flags)
    }
    fn refresh_volume(&self, pool: &str, vol: &str) -> Result<String> {
        StorageBackend::refresh_volume(self, pool, vol)
    }
    fn upload_volume(
        &self,
        pool: &str,
        vol: &str,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn super::BackendStream>> {
        Ok(Box::new(StorageBackend::upload(
            self, pool, vol, offset, length, flags,
        )?))
    }
    fn download_volume(
        &self,
        pool: &str,
        vol: &str,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn super::BackendStream>> {
        Ok(Box::new(StorageBackend::download(
            self, pool, vol, offset, length, flags,
        )?))
    }
}

//! The host's storage subsystem: storage pools and their volumes.
//!
//! The host owns the objects, as libvirt's storage driver does: pool definitions (written
//! atomically, owner-only), which pools are active (a state file per active pool, so a
//! restarted daemon finds them active again), autostart, the volume lists, lookups and
//! events. A [`PoolBackend`] (a storage plugin, through the ABI edge) does the
//! type-specific work and reports what exists; it keeps no state of its own.
//!
//! One [`Pools`] serves one storage root (the directories of `qemu:///system`, of an embed
//! root, or nothing at all for an in-memory root). Each pool has its own lock, held across
//! the backend calls of an operation on that pool, so a long volume operation in one pool
//! blocks neither the others nor the listing of pools.

pub mod plugin;

pub use plugin::{StorageBackend, VolumeStream};

use crate::snapshot::{Edit, Snapshot};
use crate::{Error, Result};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use rvirt_xml::{FormatOptions, StoragePool, StorageVolume};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What a backend reports about an active pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolRefresh {
    /// Bytes the pool can hold.
    pub capacity: u64,
    /// Bytes in use.
    pub allocation: u64,
    /// Bytes free.
    pub available: u64,
    /// One volume XML per volume found.
    pub volumes: Vec<String>,
}

/// The type-specific work on pools of one type. Pools and volumes cross as libvirt XML;
/// the backend is stateless between calls. Methods a backend lacks answer no-support.
#[allow(missing_docs)]
pub trait PoolBackend: Send + Sync {
    /// Whether the pool is already active (e.g. mounted) without being started.
    fn check_pool(&self, pool: &str) -> Result<bool>;
    fn build_pool(&self, pool: &str, flags: u32) -> Result<()>;
    fn start_pool(&self, pool: &str) -> Result<()>;
    fn stop_pool(&self, pool: &str) -> Result<()>;
    fn delete_pool(&self, pool: &str, flags: u32) -> Result<()>;
    fn refresh_pool(&self, pool: &str) -> Result<PoolRefresh>;
    /// Creates the volume; returns its XML as created (key, path, sizes).
    fn create_volume(&self, pool: &str, vol: &str, flags: u32) -> Result<String>;
    fn create_volume_from(
        &self,
        pool: &str,
        vol: &str,
        src_pool: &str,
        src_vol: &str,
        flags: u32,
    ) -> Result<String>;
    fn delete_volume(&self, pool: &str, vol: &str, flags: u32) -> Result<()>;
    fn resize_volume(&self, pool: &str, vol: &str, capacity: u64, flags: u32) -> Result<()>;
    fn wipe_volume(&self, pool: &str, vol: &str, algorithm: u32, flags: u32) -> Result<()>;
    /// The volume's XML as it is now.
    fn refresh_volume(&self, pool: &str, vol: &str) -> Result<String>;
    /// `virStorageVolUpload`: a stream to `send` the volume's new bytes to (`length` 0:
    /// up to the end). Backends that cannot upload answer no-support.
    fn upload_volume(
        &self,
        pool: &str,
        vol: &str,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn BackendStream>> {
        let _ = (pool, vol, offset, length, flags);
        Err(storage_err(
            ErrorCode::NoSupport as i32,
            "this function is not supported by the connection driver: virStorageVolUpload",
        ))
    }
    /// `virStorageVolDownload`: a stream to `recv` the volume's bytes from.
    fn download_volume(
        &self,
        pool: &str,
        vol: &str,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn BackendStream>> {
        let _ = (pool, vol, offset, length, flags);
        Err(storage_err(
            ErrorCode::NoSupport as i32,
            "this function is not supported by the connection driver: virStorageVolDownload",
        ))
    }
    /// `virConnectFindStoragePoolSources`: the sources found from a `<source>` spec, as a
    /// `<sources>` document. Backends that cannot discover answer no-support.
    fn find_pool_sources(&self, spec: &str, _flags: u32) -> Result<String> {
        let _ = spec;
        Err(storage_err(
            ErrorCode::NoSupport as i32,
            "this function is not supported by the connection driver: virConnectFindStoragePoolSources",
        ))
    }
}

/// A volume stream a backend opened: an upload (`send`, then `finish` commits) or a
/// download (`recv` until an empty chunk, then `finish`). Dropped unfinished, it must
/// abort.
pub trait BackendStream: Send {
    /// Writes the next chunk of an upload.
    fn send(&mut self, data: &[u8]) -> Result<()>;
    /// Reads at most `max` bytes of a download; empty at the end.
    fn recv(&mut self, max: usize) -> Result<Vec<u8>>;
    /// [`BackendStream::recv`] appending to `out` (no buffer of its own); returns the
    /// bytes appended, 0 at the end.
    fn recv_into(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize> {
        let chunk = self.recv(max)?;
        out.extend_from_slice(&chunk);
        Ok(chunk.len())
    }
    /// Ends the stream (an upload is committed).
    fn finish(&mut self) -> Result<()>;
    /// Abandons the stream.
    fn abort(&mut self) -> Result<()>;
}

impl BackendStream for VolumeStream {
    fn send(&mut self, data: &[u8]) -> Result<()> {
        VolumeStream::send(self, data)
    }
    fn recv(&mut self, max: usize) -> Result<Vec<u8>> {
        VolumeStream::recv(self, max)
    }
    fn recv_into(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize> {
        VolumeStream::recv_into(self, out, max)
    }
    fn finish(&mut self) -> Result<()> {
        VolumeStream::finish(self)
    }
    fn abort(&mut self) -> Result<()> {
        VolumeStream::abort(self)
    }
}

/// `VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM` / `VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM`: not
/// honoured (no holes), so refused.
pub const STREAM_SPARSE: u32 = 1;

/// Finds the backend serving a pool type (the plugin registry, or a test's table).
pub trait BackendResolver: Send + Sync {
    /// The backend for `pool_type`, or a clear error naming it.
    fn backend(&self, pool_type: &str) -> Result<Arc<dyn PoolBackend>>;
}

/// `VIR_STORAGE_POOL_*` states.
pub mod pool_state {
    /// Not running.
    pub const INACTIVE: i32 = 0;
    /// Running.
    pub const RUNNING: i32 = 2;
}

/// `VIR_STORAGE_POOL_EVENT_*` lifecycle events, and the refresh event.
pub mod pool_event {
    /// Defined.
    pub const DEFINED: i32 = 0;
    /// Undefined.
    pub const UNDEFINED: i32 = 1;
    /// Started.
    pub const STARTED: i32 = 2;
    /// Stopped.
    pub const STOPPED: i32 = 3;
    /// Built.
    pub const CREATED: i32 = 4;
    /// Deleted.
    pub const DELETED: i32 = 5;
}

/// `VIR_CONNECT_LIST_STORAGE_POOLS_*` filters.
pub mod list_flags {
    /// Inactive pools.
    pub const INACTIVE: u32 = 1;
    /// Active pools.
    pub const ACTIVE: u32 = 2;
    /// Persistent pools.
    pub const PERSISTENT: u32 = 4;
    /// Transient pools.
    pub const TRANSIENT: u32 = 8;
    /// Autostarting pools.
    pub const AUTOSTART: u32 = 16;
    /// Pools that do not autostart.
    pub const NO_AUTOSTART: u32 = 32;
    /// The pool type bits, in libvirt's order from 64 (`dir`) up.
    pub const TYPES: &[(&str, u32)] = &[
        ("dir", 1 << 6),
        ("fs", 1 << 7),
        ("netfs", 1 << 8),
        ("logical", 1 << 9),
        ("disk", 1 << 10),
        ("iscsi", 1 << 11),
        ("scsi", 1 << 12),
        ("mpath", 1 << 13),
        ("rbd", 1 << 14),
        ("sheepdog", 1 << 15),
        ("gluster", 1 << 16),
        ("zfs", 1 << 17),
        ("vstorage", 1 << 18),
        ("iscsi-direct", 1 << 19),
    ];
    /// Every bit above.
    pub const ALL: u32 = (1 << 20) - 1;
}

/// `VIR_STORAGE_XML_INACTIVE`.
pub const XML_INACTIVE: u32 = 1;
/// `VIR_STORAGE_POOL_CREATE_WITH_BUILD`, `_OVERWRITE`, `_NO_OVERWRITE`.
const CREATE_WITH_BUILD: u32 = 1 | 2 | 4;

/// A pool event: the pool's name and UUID, the event (a [`pool_event`] number, or `None`
/// for a refresh) and its detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolEvent {
    /// The pool's name.
    pub name: String,
    /// The pool's UUID.
    pub uuid: uuid::Uuid,
    /// A lifecycle event, or `None` for `VIR_STORAGE_POOL_EVENT_ID_REFRESH`.
    pub event: Option<i32>,
}

/// A subscriber to pool events. Runs on the caller's thread after the pool lock is
/// released; it must be quick.
pub type PoolEventCallback = Arc<dyn Fn(&PoolEvent) + Send + Sync>;

/// Where a storage root keeps its files; `None` keeps everything in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageDirs {
    /// Persistent definitions (`NAME.xml`) and `autostart/`.
    pub config: PathBuf,
    /// Active pools' state files (`NAME.xml`), volatile.
    pub state: PathBuf,
}

/// A handle on a pool: name and UUID, as the wire's `remote_nonnull_storage_pool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolId {
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: uuid::Uuid,
}

/// A handle on a volume: its pool, name and key, as `remote_nonnull_storage_vol`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeId {
    /// The pool's name.
    pub pool: String,
    /// The volume's name.
    pub name: String,
    /// The volume's key (its path for file-based pools).
    pub key: String,
}

/// `virStoragePoolGetInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolInfo {
    /// A [`pool_state`] number.
    pub state: i32,
    /// Bytes.
    pub capacity: u64,
    /// Bytes.
    pub allocation: u64,
    /// Bytes.
    pub available: u64,
}

/// `virStorageVolGetInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeInfo {
    /// `VIR_STORAGE_VOL_*` type (0 file, 1 block, 2 dir, 3 network, 4 netdir, 5 ploop).
    pub kind: i32,
    /// Bytes.
    pub capacity: u64,
    /// Bytes.
    pub allocation: u64,
}

#[derive(Clone)]
struct Live {
    capacity: u64,
    allocation: u64,
    available: u64,
    volumes: BTreeMap<String, Arc<LiveVol>>,
}

/// A volume of an active pool, shared between snapshots of the pool (an edit copies the
/// map, not the volumes), with the text the backend reported it as at the last pool
/// refresh: a refresh reporting the same text keeps the volume without parsing it again.
struct LiveVol {
    vol: StorageVolume,
    reported: Option<String>,
}

impl LiveVol {
    fn new(vol: StorageVolume) -> Arc<Self> {
        Arc::new(Self {
            vol,
            reported: None,
        })
    }
}

impl std::ops::Deref for LiveVol {
    type Target = StorageVolume;
    fn deref(&self) -> &StorageVolume {
        &self.vol
    }
}

#[derive(Clone)]
struct PoolObj {
    /// The definition in force (for an active pool, the one it was started with).
    def: StoragePool,
    /// A redefinition made while active, applied when the pool stops.
    new_def: Option<StoragePool>,
    persistent: bool,
    autostart: bool,
    live: Option<Live>,
}

/// One pool: its snapshot and operation lock ([`Snapshot`]), and the streams open on its
/// volumes.
struct PoolSlot {
    snapshot: Snapshot<PoolObj>,
    /// Volumes with open streams: name -> (an upload is open, open streams).
    streams: Mutex<BTreeMap<String, (bool, u32)>>,
}

impl PoolSlot {
    fn new(o: PoolObj) -> Slot {
        Arc::new(PoolSlot {
            snapshot: Snapshot::new(o),
            streams: Mutex::default(),
        })
    }

    /// Fails when a stream is open on volume `name` (any stream, or only an upload when
    /// `uploads_only`).
    fn check_idle(&self, pool: &str, name: &str, uploads_only: bool) -> Result<()> {
        match lock(&self.streams).get(name) {
            Some(&(upload, _)) if upload || !uploads_only => Err(in_use(pool, name)),
            _ => Ok(()),
        }
    }

    /// Whether any volume of the pool has an open stream.
    fn has_streams(&self) -> bool {
        !lock(&self.streams).is_empty()
    }

    fn view(&self) -> Arc<PoolObj> {
        self.snapshot.view()
    }

    fn edit(&self) -> Edit<'_, PoolObj> {
        self.snapshot.edit()
    }
}

type Slot = Arc<PoolSlot>;

/// The pools of one storage root.
pub struct Pools {
    dirs: Option<StorageDirs>,
    backends: Arc<dyn BackendResolver>,
    pools: Mutex<BTreeMap<String, Slot>>,
    subscribers: Mutex<Vec<(u64, PoolEventCallback)>>,
    next_subscriber: Mutex<u64>,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pools")
            .field("dirs", &self.dirs)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `VIR_ERR_NO_STORAGE_VOL`.
const NO_STORAGE_VOL: i32 = 50;
/// `VIR_ERR_STORAGE_VOL_EXIST`.
const STORAGE_VOL_EXIST: i32 = 90;

fn storage_err(code: i32, message: impl Into<String>) -> Error {
    Error::Driver {
        code,
        domain: ErrorDomain::Storage as i32,
        message: message.into(),
    }
}

/// `VIR_ERR_OPERATION_INVALID`: a volume with an open stream.
fn in_use(pool: &str, name: &str) -> Error {
    invalid(format!(
        "volume '{name}' in pool '{pool}' is in use by a stream"
    ))
}

fn invalid_arg(message: String) -> Error {
    storage_err(
        ErrorCode::InvalidArg as i32,
        format!("invalid argument: {message}"),
    )
}

fn no_pool(what: &str) -> Error {
    storage_err(
        ErrorCode::NoStoragePool as i32,
        format!("storage pool not found: {what}"),
    )
}

fn no_vol(what: &str) -> Error {
    storage_err(NO_STORAGE_VOL, format!("storage volume not found: {what}"))
}

fn invalid(why: String) -> Error {
    storage_err(
        ErrorCode::OperationInvalid as i32,
        format!("requested operation is not valid: {why}"),
    )
}

fn xml_err(what: &str, e: rvirt_xml::XmlError) -> Error {
    storage_err(
        ErrorCode::XmlError as i32,
        format!("invalid {what} XML: {e}"),
    )
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    storage_err(
        ErrorCode::SystemError as i32,
        format!("cannot {what} '{}': {e}", path.display()),
    )
}

fn fmt_opts() -> FormatOptions {
    FormatOptions {
        inactive: false,
        secure: true,
    }
}

/// Whether `e` says that no backend serves a pool type (its plugin is not installed).
fn is_missing_backend(e: &Error) -> bool {
    match e {
        Error::NoStorageBackend { .. } => true,
        Error::Driver { message, .. } => {
            message.starts_with("no storage backend serves pool type")
                || message.starts_with("no installed plugin serves storage pool type")
        }
        _ => false,
    }
}

/// Pool names become file names: no separators, no dot-dot, nothing empty.
fn check_pool_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Err(storage_err(
            ErrorCode::XmlError as i32,
            format!(
                "invalid storage pool name '{name}': pool/name must not be empty, '.', '..' or contain '/'"
            ),
        ));
    }
    Ok(())
}

impl Pools {
    /// The pools of a root: loads the definitions and active-pool states under `dirs`,
    /// re-activates the pools that were active (those the backend still finds), and starts
    /// autostart pools. `None` keeps everything in memory.
    pub fn open(dirs: Option<StorageDirs>, backends: Arc<dyn BackendResolver>) -> Result<Pools> {
        let pools = Pools {
            dirs,
            backends,
            pools: Mutex::default(),
            subscribers: Mutex::default(),
            next_subscriber: Mutex::new(0),
        };
        pools.load()?;
        Ok(pools)
    }

    fn load(&self) -> Result<()> {
        let Some(dirs) = &self.dirs else {
            return Ok(());
        };
        for d in [&dirs.config, &dirs.state, &dirs.config.join("autostart")] {
            std::fs::create_dir_all(d).map_err(|e| io_err("create directory", d, e))?;
        }
        let read_defs = |dir: &Path| -> Vec<StoragePool> {
            let mut out = Vec::new();
            let Ok(rd) = std::fs::read_dir(dir) else {
                return out;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "xml") {
                    continue;
                }
                match std::fs::read_to_string(&p).map(|t| StoragePool::parse(&t)) {
                    Ok(Ok(def)) => out.push(def),
                    Ok(Err(e)) => tracing::warn!("ignoring pool definition {}: {e}", p.display()),
                    Err(e) => tracing::warn!("cannot read {}: {e}", p.display()),
                }
            }
            out
        };
        let mut map = BTreeMap::new();
        for def in read_defs(&dirs.config) {
            let autostart = dirs
                .config
                .join("autostart")
                .join(format!("{}.xml", def.name()))
                .exists();
            map.insert(
                def.name().to_string(),
                PoolObj {
                    def,
                    new_def: None,
                    persistent: true,
                    autostart,
                    live: None,
                },
            );
        }
        // Pools that were active when the last process stopped: active again if the
        // backend still finds them (a dir pool's directory, a mounted fs), else inactive.
        for def in read_defs(&dirs.state) {
            let name = def.name().to_string();
            let obj = map.entry(name.clone()).or_insert_with(|| PoolObj {
                def: def.clone(),
                new_def: None,
                persistent: false,
                autostart: false,
                live: None,
            });
            if obj.persistent && obj.def != def {
                obj.new_def = Some(std::mem::replace(&mut obj.def, def));
            }
            let xml = obj.def.to_xml(&fmt_opts());
            let revived = self
                .backends
                .backend(obj.def.pool_type())
                .and_then(|b| {
                    if b.check_pool(&xml)? {
                        b.refresh_pool(&xml)
                    } else {
                        Err(invalid(format!(
                            "storage pool '{name}' is no longer active"
                        )))
                    }
                })
                .and_then(|r| live_of(&obj.def, r, None));
            match revived {
                Ok(live) => obj.live = Some(live),
                Err(e) if is_missing_backend(&e) => {
                    // No plugin serves the pool's type now (one was removed): the pool is
                    // inactive until it returns, and its state file stays, so a process
                    // started with the plugin back finds the pool active again.
                    tracing::warn!(
                        "storage pool '{name}' was active but stays inactive while no backend serves pool type '{}': {e}",
                        obj.def.pool_type()
                    );
                    if !obj.persistent {
                        map.remove(&name);
                    } else if let Some(d) = obj.new_def.take() {
                        obj.def = d;
                    }
                }
                Err(e) => {
                    tracing::info!("storage pool '{name}' was active and is not any more: {e}");
                    let _ = std::fs::remove_file(dirs.state.join(format!("{name}.xml")));
                    if !obj.persistent {
                        map.remove(&name);
                    } else if let Some(d) = obj.new_def.take() {
                        obj.def = d;
                    }
                }
            }
        }
        // Autostart runs once per root and host boot, as libvirt's storage driver does
        // (an `autostarted` marker in the volatile state directory): a later process
        // opening the root leaves the pools a user stopped stopped.
        let marker = dirs.state.join("autostarted");
        let first = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
        {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                tracing::warn!(
                    "not autostarting storage pools: cannot create {}: {e}",
                    marker.display()
                );
                false
            }
        };
        let autostart: Vec<String> = map
            .iter()
            .filter(|(_, o)| first && o.autostart && o.live.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        *lock(&self.pools) = map
            .into_iter()
            .map(|(n, o)| (n, PoolSlot::new(o)))
            .collect();
        for name in autostart {
            if let Err(e) = self.create(&name, 0) {
                tracing::warn!("cannot autostart storage pool '{name}': {e}");
            }
        }
        Ok(())
    }

    // ---- events ----

    /// Subscribes to pool events; returns the id for [`Pools::unsubscribe`].
    pub fn subscribe(&self, cb: PoolEventCallback) -> u64 {
        let mut n = lock(&self.next_subscriber);
        *n += 1;
        lock(&self.subscribers).push((*n, cb));
        *n
    }

    /// Drops a subscription.
    pub fn unsubscribe(&self, id: u64) {
        lock(&self.subscribers).retain(|(i, _)| *i != id);
    }

    fn emit(&self, def: &StoragePool, event: Option<i32>) {
        let ev = PoolEvent {
            name: def.name().to_string(),
            uuid: def.uuid(),
            event,
        };
        let subs: Vec<PoolEventCallback> = lock(&self.subscribers)
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        for cb in subs {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&ev))).is_err() {
                tracing::warn!("a storage pool event callback panicked");
            }
        }
    }

    // ---- lookups ----

    fn slot(&self, name: &str) -> Result<Slot> {
        lock(&self.pools)
            .get(name)
            .cloned()
            .ok_or_else(|| no_pool(&format!("no storage pool with matching name '{name}'")))
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&PoolObj) -> T) -> Result<T> {
        Ok(f(&self.slot(name)?.view()))
    }

    fn slots(&self) -> Vec<Slot> {
        lock(&self.pools).values().cloned().collect()
    }

    fn id(obj: &PoolObj) -> PoolId {
        PoolId {
            name: obj.def.name().to_string(),
            uuid: obj.def.uuid(),
        }
    }

    /// Every pool matching `VIR_CONNECT_LIST_STORAGE_POOLS_*` flags (0: all).
    pub fn list(&self, flags: u32) -> Result<Vec<PoolId>> {
        if flags & !list_flags::ALL != 0 {
            return Err(storage_err(
                ErrorCode::InvalidArg as i32,
                format!(
                    "invalid argument: unsupported flags (0x{:x}) in function virConnectListAllStoragePools",
                    flags & !list_flags::ALL
                ),
            ));
        }
        let pair = |a: u32, b: u32, x: bool| {
            let (fa, fb) = (flags & a != 0, flags & b != 0);
            !(fa || fb) || (fa && x) || (fb && !x)
        };
        let type_bits = flags & list_flags::TYPES.iter().fold(0, |m, (_, b)| m | b);
        let mut out = Vec::new();
        for s in self.slots() {
            let o = s.view();
            let ty = list_flags::TYPES
                .iter()
                .find(|(t, _)| *t == o.def.pool_type())
                .map_or(0, |(_, b)| *b);
            if pair(list_flags::INACTIVE, list_flags::ACTIVE, o.live.is_none())
                && pair(list_flags::PERSISTENT, list_flags::TRANSIENT, o.persistent)
                && pair(list_flags::AUTOSTART, list_flags::NO_AUTOSTART, o.autostart)
                && (type_bits == 0 || type_bits & ty != 0)
            {
                out.push(Self::id(&o));
            }
        }
        Ok(out)
    }

    /// `virStoragePoolLookupByName`.
    pub fn lookup_by_name(&self, name: &str) -> Result<PoolId> {
        self.with(name, Self::id)
    }

    /// `virStoragePoolLookupByUUID`.
    pub fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<PoolId> {
        self.slots()
            .iter()
            .map(|s| Self::id(&s.view()))
            .find(|p| p.uuid == uuid)
            .ok_or_else(|| no_pool(&format!("no storage pool with matching uuid '{uuid}'")))
    }

    /// `virStoragePoolLookupByTargetPath`: the active pool whose target is `path`.
    pub fn lookup_by_target_path(&self, path: &str) -> Result<PoolId> {
        let want = Path::new(path);
        self.slots()
            .iter()
            .find_map(|s| {
                let o = s.view();
                (o.live.is_some() && o.def.target_path().map(Path::new) == Some(want))
                    .then(|| Self::id(&o))
            })
            .ok_or_else(|| {
                no_pool(&format!(
                    "no storage pool with matching target path '{path}'"
                ))
            })
    }

    /// `virStoragePoolGetInfo`.
    pub fn info(&self, name: &str) -> Result<PoolInfo> {
        let s = self.slot(name)?;
        let o = s.view();
        Ok(match &o.live {
            Some(l) => PoolInfo {
                state: pool_state::RUNNING,
                capacity: l.capacity,
                allocation: l.allocation,
                available: l.available,
            },
            None => PoolInfo {
                state: pool_state::INACTIVE,
                capacity: 0,
                allocation: 0,
                available: 0,
            },
        })
    }

    /// `virStoragePoolGetXMLDesc` (`VIR_STORAGE_XML_INACTIVE` = 1: the definition that
    /// applies at the next start).
    pub fn xml(&self, name: &str, flags: u32) -> Result<String> {
        crate::files::check_flags(
            ErrorDomain::Storage as i32,
            "virStoragePoolGetXMLDesc",
            flags,
            XML_INACTIVE,
        )?;
        let s = self.slot(name)?;
        let o = s.view();
        if flags & XML_INACTIVE != 0 {
            return Ok(o.new_def.as_ref().unwrap_or(&o.def).to_xml(&fmt_opts()));
        }
        let mut def = o.def.clone();
        if let Some(l) = &o.live {
            def.set_sizes(l.capacity, l.allocation, l.available);
        }
        Ok(def.to_xml(&fmt_opts()))
    }

    /// Whether the pool is active.
    pub fn is_active(&self, name: &str) -> Result<bool> {
        self.with(name, |o| o.live.is_some())
    }

    /// Whether the pool has a persistent definition.
    pub fn is_persistent(&self, name: &str) -> Result<bool> {
        self.with(name, |o| o.persistent)
    }

    /// Whether the pool starts with the daemon.
    pub fn autostart(&self, name: &str) -> Result<bool> {
        self.with(name, |o| o.autostart)
    }

    // ---- definitions ----

    fn config_file(&self, name: &str) -> Option<PathBuf> {
        self.dirs
            .as_ref()
            .map(|d| d.config.join(format!("{name}.xml")))
    }

    fn state_file(&self, name: &str) -> Option<PathBuf> {
        self.dirs
            .as_ref()
            .map(|d| d.state.join(format!("{name}.xml")))
    }

    fn autostart_link(&self, name: &str) -> Option<PathBuf> {
        self.dirs
            .as_ref()
            .map(|d| d.config.join("autostart").join(format!("{name}.xml")))
    }

    /// Parses a definition and checks it against the other pools: a name or UUID taken
    /// by another pool, or another pool on the same target, is refused.
    fn parse_new(&self, xml: &str) -> Result<StoragePool> {
        let mut def = StoragePool::parse(xml).map_err(|e| xml_err("storage pool", e))?;
        check_pool_name(def.name())?;
        if def.uuid().is_nil() {
            def.set_uuid(uuid::Uuid::new_v4());
        }
        self.backends.backend(def.pool_type())?;
        for s in self.slots() {
            let o = s.view();
            let (name, uuid) = (o.def.name(), o.def.uuid());
            if name == def.name() && uuid != def.uuid() {
                return Err(storage_err(
                    ErrorCode::OperationFailed as i32,
                    format!("pool '{name}' is already defined with uuid {uuid}"),
                ));
            }
            if uuid == def.uuid() && name != def.name() {
                return Err(storage_err(
                    ErrorCode::OperationFailed as i32,
                    format!("pool '{name}' already exists with uuid {uuid}"),
                ));
            }
            if name != def.name()
                && def.target_path().is_some()
                && def.pool_type() == o.def.pool_type()
                && def.target_path() == o.def.target_path()
            {
                return Err(storage_err(
                    ErrorCode::OperationFailed as i32,
                    format!(
                        "storage source conflict with pool: '{name}' (target {})",
                        def.target_path().unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(def)
    }

    /// `virStoragePoolDefineXML`.
    pub fn define(&self, xml: &str, flags: u32) -> Result<PoolId> {
        // VIR_STORAGE_POOL_DEFINE_VALIDATE: the schema check always happens
        crate::files::check_flags(
            ErrorDomain::Storage as i32,
            "virStoragePoolDefineXML",
            flags,
            1,
        )?;
        let def = self.parse_new(xml)?;
        let name = def.name().to_string();
        if let Some(p) = self.config_file(&name) {
            crate::files::write_private(
                &p,
                def.to_xml(&fmt_opts()).as_bytes(),
                ErrorDomain::Storage as i32,
            )?;
        }
        let id = PoolId {
            name: name.clone(),
            uuid: def.uuid(),
        };
        let existing = lock(&self.pools).get(&name).cloned();
        match existing {
            Some(s) => {
                let mut o = s.edit();
                if o.live.is_some() {
                    o.new_def = Some(def.clone());
                } else {
                    o.def = def.clone();
                }
                o.persistent = true;
            }
            None => {
                lock(&self.pools).entry(name).or_insert_with(|| {
                    PoolSlot::new(PoolObj {
                        def: def.clone(),
                        new_def: None,
                        persistent: true,
                        autostart: false,
                        live: None,
                    })
                });
            }
        }
        self.emit(&def, Some(pool_event::DEFINED));
        Ok(id)
    }

    /// `virStoragePoolCreateXML`: a transient pool, started.
    pub fn create_xml(&self, xml: &str, flags: u32) -> Result<PoolId> {
        crate::files::check_flags(
            ErrorDomain::Storage as i32,
            "virStoragePoolCreateXML",
            flags,
            CREATE_WITH_BUILD,
        )?;
        let def = self.parse_new(xml)?;
        let name = def.name().to_string();
        let slot = PoolSlot::new(PoolObj {
            def: def.clone(),
            new_def: None,
            persistent: false,
            autostart: false,
            live: None,
        });
        {
            let mut pools = lock(&self.pools);
            if pools.contains_key(&name) {
                return Err(storage_err(
                    ErrorCode::OperationFailed as i32,
                    format!("pool '{name}' already exists"),
                ));
            }
            pools.insert(name.clone(), slot.clone());
        }
        let mut o = slot.edit();
        if let Err(e) = self.start_locked(&mut o, flags) {
            drop(o);
            lock(&self.pools).remove(&name);
            return Err(e);
        }
        let id = Self::id(&o);
        drop(o);
        self.emit(&def, Some(pool_event::STARTED));
        Ok(id)
    }

    /// `virStoragePoolUndefine`.
    pub fn undefine(&self, name: &str) -> Result<()> {
        let s = self.slot(name)?;
        let mut o = s.edit();
        if !o.persistent {
            return Err(invalid(format!("storage pool '{name}' is not persistent")));
        }
        if o.live.is_some() {
            return Err(invalid(format!("storage pool '{name}' is still active")));
        }
        if let Some(p) = self.config_file(name) {
            std::fs::remove_file(&p).map_err(|e| io_err("remove", &p, e))?;
        }
        if let Some(l) = self.autostart_link(name) {
            let _ = std::fs::remove_file(l);
        }
        // the state an inactive pool kept while its backend was missing
        if let Some(st) = self.state_file(name) {
            let _ = std::fs::remove_file(st);
        }
        o.persistent = false;
        o.autostart = false;
        let def = o.def.clone();
        drop(o);
        lock(&self.pools).remove(name);
        self.emit(&def, Some(pool_event::UNDEFINED));
        Ok(())
    }

    /// `virStoragePoolSetAutostart`.
    pub fn set_autostart(&self, name: &str, on: bool) -> Result<()> {
        let s = self.slot(name)?;
        let mut o = s.edit();
        if !o.persistent {
            return Err(invalid(format!(
                "cannot set autostart for transient storage pool '{name}'"
            )));
        }
        if let (Some(link), Some(cfg)) = (self.autostart_link(name), self.config_file(name)) {
            let _ = std::fs::remove_file(&link);
            if on {
                std::os::unix::fs::symlink(&cfg, &link)
                    .map_err(|e| io_err("create link", &link, e))?;
            }
        }
        o.autostart = on;
        Ok(())
    }

    // ---- lifecycle ----

    /// The backend of a pool's type; when none serves it (its plugin is missing), the
    /// error names the pool and its type.
    fn backend_for(&self, def: &StoragePool) -> Result<Arc<dyn PoolBackend>> {
        self.backends.backend(def.pool_type()).map_err(|e| {
            if is_missing_backend(&e) {
                Error::Driver {
                    code: e.code(),
                    domain: e.domain(),
                    message: format!(
                        "storage pool '{}' of type '{}' cannot be used: {e}",
                        def.name(),
                        def.pool_type()
                    ),
                }
            } else {
                e
            }
        })
    }

    fn start_locked(&self, o: &mut PoolObj, flags: u32) -> Result<()> {
        let name = o.def.name().to_string();
        if o.live.is_some() {
            return Err(invalid(format!("storage pool '{name}' is already active")));
        }
        let b = self.backend_for(&o.def)?;
        let xml = o.def.to_xml(&fmt_opts());
        if flags & CREATE_WITH_BUILD != 0 {
            // OVERWRITE (2) and NO_OVERWRITE (4) pass on as the build flags 4 and 8... in
            // libvirt's numbering the build flags are NEW=0, REPAIR=1, RESIZE=2,
            // NO_OVERWRITE=4, OVERWRITE=8
            let build = match flags & 6 {
                2 => 8,
                4 => 4,
                _ => 0,
            };
            b.build_pool(&xml, build)?;
        }
        if !b.check_pool(&xml)? {
            b.start_pool(&xml)?;
        }
        let refreshed = b.refresh_pool(&xml).and_then(|r| live_of(&o.def, r, None));
        let live = match refreshed {
            Ok(l) => l,
            Err(e) => {
                let _ = b.stop_pool(&xml);
                return Err(e);
            }
        };
        if let Some(p) = self.state_file(&name)
            && let Err(e) =
                crate::files::write_private(&p, xml.as_bytes(), ErrorDomain::Storage as i32)
        {
            let _ = b.stop_pool(&xml);
            return Err(e);
        }
        o.live = Some(live);
        Ok(())
    }

    /// `virStoragePoolCreate`: starts a defined pool.
    pub fn create(&self, name: &str, flags: u32) -> Result<()> {
        crate::files::check_flags(
            ErrorDomain::Storage as i32,
            "virStoragePoolCreate",
            flags,
            CREATE_WITH_BUILD,
        )?;
        let s = self.slot(name)?;
        let mut o = s.edit();
        self.start_locked(&mut o, flags)?;
        let def = o.def.clone();
        drop(o);
        self.emit(&def, Some(pool_event::STARTED));
        Ok(())
    }

    /// `virStoragePoolDestroy`: stops the pool; a transient one is gone after.
    pub fn destroy(&self, name: &str) -> Result<()> {
        let s = self.slot(name)?;
        let mut o = s.edit();
        if o.live.is_none() {
            return Err(invalid(format!("storage pool '{name}' is not active")));
        }
        if s.has_streams() {
            return Err(invalid(format!(
                "storage pool '{name}' has volumes in use by streams"
            )));
        }
        let b = self.backend_for(&o.def)?;
        b.stop_pool(&o.def.to_xml(&fmt_opts()))?;
        if let Some(p) = self.state_file(name) {
            let _ = std::fs::remove_file(p);
        }
        o.live = None;
        if let Some(d) = o.new_def.take() {
            o.def = d;
        }
        let def = o.def.clone();
        let persistent = o.persistent;
        drop(o);
        if !persistent {
            lock(&self.pools).remove(name);
        }
        self.emit(&def, Some(pool_event::STOPPED));
        Ok(())
    }

    /// `virStoragePoolBuild`.
    pub fn build(&self, name: &str, flags: u32) -> Result<()> {
        let s = self.slot(name)?;
        let o = s.edit();
        if o.live.is_some() {
            return Err(invalid(format!("storage pool '{name}' is already active")));
        }
        self.backend_for(&o.def)?
            .build_pool(&o.def.to_xml(&fmt_opts()), flags)?;
        let def = o.def.clone();
        drop(o);
        self.emit(&def, Some(pool_event::CREATED));
        Ok(())
    }

    /// `virStoragePoolDelete`: removes what the pool's target holds on the host.
    pub fn delete(&self, name: &str, flags: u32) -> Result<()> {
        let s = self.slot(name)?;
        let o = s.edit();
        if o.live.is_some() {
            return Err(invalid(format!("storage pool '{name}' is still active")));
        }
        self.backend_for(&o.def)?
            .delete_pool(&o.def.to_xml(&fmt_opts()), flags)?;
        let def = o.def.clone();
        drop(o);
        self.emit(&def, Some(pool_event::DELETED));
        Ok(())
    }

    /// `virStoragePoolRefresh`.
    pub fn refresh(&self, name: &str, flags: u32) -> Result<()> {
        crate::files::check_flags(
            ErrorDomain::Storage as i32,
            "virStoragePoolRefresh",
            flags,
            0,
        )?;
        let s = self.slot(name)?;
        let mut o = s.edit();
        if o.live.is_none() {
            return Err(invalid(format!("storage pool '{name}' is not active")));
        }
        let b = self.backend_for(&o.def)?;
        let live = b
            .refresh_pool(&o.def.to_xml(&fmt_opts()))
            .and_then(|r| live_of(&o.def, r, o.live.as_ref()))?;
        o.live = Some(live);
        let def = o.def.clone();
        drop(o);
        self.emit(&def, None);
        Ok(())
    }

    // ---- volumes ----

    fn active(o: &mut PoolObj) -> Result<&mut Live> {
        let name = o.def.name().to_string();
        o.live
            .as_mut()
            .ok_or_else(|| invalid(format!("storage pool '{name}' is not active")))
    }

    fn vol_id(pool: &str, v: &StorageVolume) -> VolumeId {
        VolumeId {
            pool: pool.to_string(),
            name: v.name().to_string(),
            key: v.key().unwrap_or_default().to_string(),
        }
    }

    fn live_view(&self, pool: &str) -> Result<Arc<PoolObj>> {
        let o = self.slot(pool)?.view();
        if o.live.is_none() {
            return Err(invalid(format!("storage pool '{pool}' is not active")));
        }
        Ok(o)
    }

    /// The volumes of an active pool.
    pub fn list_volumes(&self, pool: &str) -> Result<Vec<VolumeId>> {
        let o = self.live_view(pool)?;
        let live = o.live.as_ref().expect("checked active");
        Ok(live
            .volumes
            .values()
            .map(|v| Self::vol_id(pool, v))
            .collect())
    }

    /// `virStorageVolLookupByName`.
    pub fn volume_by_name(&self, pool: &str, name: &str) -> Result<VolumeId> {
        let o = self.live_view(pool)?;
        let live = o.live.as_ref().expect("checked active");
        live.volumes
            .get(name)
            .map(|v| Self::vol_id(pool, v))
            .ok_or_else(|| no_vol(&format!("no storage vol with matching name '{name}'")))
    }

    fn find_volume(&self, what: &str, f: impl Fn(&StorageVolume) -> bool) -> Result<VolumeId> {
        for s in self.slots() {
            let o = s.view();
            if let Some(l) = &o.live
                && let Some(v) = l.volumes.values().find(|v| f(v))
            {
                return Ok(Self::vol_id(o.def.name(), v));
            }
        }
        Err(no_vol(what))
    }

    /// `virStorageVolLookupByKey`.
    pub fn volume_by_key(&self, key: &str) -> Result<VolumeId> {
        self.find_volume(&format!("no storage vol with matching key '{key}'"), |v| {
            v.key() == Some(key)
        })
    }

    /// `virStorageVolLookupByPath`.
    pub fn volume_by_path(&self, path: &str) -> Result<VolumeId> {
        self.find_volume(
            &format!("no storage vol with matching path '{path}'"),
            |v| v.target_path() == Some(path),
        )
    }

    fn with_volume<T>(
        &self,
        pool: &str,
        name: &str,
        f: impl FnOnce(&Arc<dyn PoolBackend>, &str, &mut Live, &StorageVolume) -> Result<T>,
    ) -> Result<T> {
        let s = self.slot(pool)?;
        let mut o = s.edit();
        let b = self.backend_for(&o.def)?;
        let pool_xml = o.def.to_xml(&fmt_opts());
        let live = Self::active(&mut o)?;
        let vol = live
            .volumes
            .get(name)
            .cloned()
            .ok_or_else(|| no_vol(&format!("no storage vol with matching name '{name}'")))?;
        f(&b, &pool_xml, live, &vol)
    }

    /// [`Pools::with_volume`] for an operation that changes the volume: refused while a
    /// stream is open on it.
    fn with_idle_volume<T>(
        &self,
        pool: &str,
        name: &str,
        f: impl FnOnce(&Arc<dyn PoolBackend>, &str, &mut Live, &StorageVolume) -> Result<T>,
    ) -> Result<T> {
        self.with_volume(pool, name, |b, pool_xml, live, vol| {
            self.slot(pool)?.check_idle(pool, name, false)?;
            f(b, pool_xml, live, vol)
        })
    }

    /// `virStorageVolCreateXML`; with `from`, `virStorageVolCreateXMLFrom` (pool and
    /// volume name of the source).
    pub fn create_volume(
        &self,
        pool: &str,
        xml: &str,
        from: Option<(&str, &str)>,
        flags: u32,
    ) -> Result<VolumeId> {
        // PREALLOC_METADATA = 1, REFLINK = 2 (passed to the backend, which refuses what
        // it cannot do)
        crate::files::check_flags(
            ErrorDomain::Storage as i32,
            "virStorageVolCreateXML",
            flags,
            1 | 2,
        )?;
        if let Some((sp, sv)) = from {
            // a volume being uploaded has no consistent contents to copy
            self.slot(sp)?.check_idle(sp, sv, true)?;
        }
        let src = match from {
            Some((sp, sv)) if sp != pool => {
                let s = self.slot(sp)?;
                let mut o = s.edit();
                let def_xml = o.def.to_xml(&fmt_opts());
                let live = Self::active(&mut o)?;
                let v = live
                    .volumes
                    .get(sv)
                    .ok_or_else(|| no_vol(&format!("no storage vol with matching name '{sv}'")))?;
                Some((def_xml, v.to_xml(&fmt_opts())))
            }
            _ => None,
        };
        let s = self.slot(pool)?;
        let mut o = s.edit();
        let b = self.backend_for(&o.def)?;
        let pool_def = o.def.clone();
        let pool_xml = pool_def.to_xml(&fmt_opts());
        let live = Self::active(&mut o)?;
        let opts = rvirt_xml::volume::VolumeParseOptions {
            allow_missing_capacity: from.is_some(),
        };
        // The key and path of a new volume are the pool's to choose, as in libvirt (which
        // overwrites them): virsh's vol-clone sends the source volume's XML, renamed.
        let mut tree = rvirt_xml::Element::parse(xml).map_err(|e| xml_err("storage volume", e))?;
        tree.remove_children(|e| e.name() == "key");
        if let Some(t) = tree.child_mut("target") {
            t.remove_children(|e| e.name() == "path");
        }
        let vol = StorageVolume::from_element_with(tree, Some(&pool_def), &opts)
            .map_err(|e| xml_err("storage volume", e))?;
        let name = vol.name().to_string();
        if live.volumes.contains_key(&name) {
            return Err(storage_err(
                STORAGE_VOL_EXIST,
                format!("storage volume '{name}' exists already"),
            ));
        }
        let vol_xml = vol.to_xml(&fmt_opts());
        let created = match (from, src) {
            (None, _) => b.create_volume(&pool_xml, &vol_xml, flags)?,
            (Some(_), Some((sp_xml, sv_xml))) => {
                b.create_volume_from(&pool_xml, &vol_xml, &sp_xml, &sv_xml, flags)?
            }
            (Some((_, sv)), None) => {
                let v = live
                    .volumes
                    .get(sv)
                    .ok_or_else(|| no_vol(&format!("no storage vol with matching name '{sv}'")))?;
                let sv_xml = v.to_xml(&fmt_opts());
                b.create_volume_from(&pool_xml, &vol_xml, &pool_xml, &sv_xml, flags)?
            }
        };
        let created = StorageVolume::parse(&created, Some(&pool_def))
            .map_err(|e| xml_err("created storage volume", e))?;
        let id = Self::vol_id(pool, &created);
        live.volumes.insert(name, LiveVol::new(created));
        Ok(id)
    }

    /// `virStorageVolDelete`.
    pub fn delete_volume(&self, pool: &str, name: &str, flags: u32) -> Result<()> {
        // ZEROED = 1, WITH_SNAPSHOTS = 2
        crate::files::check_flags(
            ErrorDomain::Storage as i32,
            "virStorageVolDelete",
            flags,
            1 | 2,
        )?;
        self.with_idle_volume(pool, name, |b, pool_xml, live, vol| {
            b.delete_volume(pool_xml, &vol.to_xml(&fmt_opts()), flags)?;
            live.volumes.remove(name);
            Ok(())
        })
    }

    /// `virStorageVolResize`.
    pub fn resize_volume(&self, pool: &str, name: &str, capacity: u64, flags: u32) -> Result<()> {
        // ALLOCATE = 1, DELTA = 2, SHRINK = 4
        crate::files::check_flags(
            ErrorDomain::Storage as i32,
            "virStorageVolResize",
            flags,
            1 | 2 | 4,
        )?;
        self.with_idle_volume(pool, name, |b, pool_xml, live, vol| {
            let xml = vol.to_xml(&fmt_opts());
            b.resize_volume(pool_xml, &xml, capacity, flags)?;
            Self::reread(b, pool_xml, live, &xml)
        })
    }

    /// `virStorageVolWipePattern` (`virStorageVolWipe` is algorithm 0).
    pub fn wipe_volume(&self, pool: &str, name: &str, algorithm: u32, flags: u32) -> Result<()> {
        crate::files::check_flags(
            ErrorDomain::Storage as i32,
            "virStorageVolWipePattern",
            flags,
            0,
        )?;
        self.with_idle_volume(pool, name, |b, pool_xml, live, vol| {
            let xml = vol.to_xml(&fmt_opts());
            b.wipe_volume(pool_xml, &xml, algorithm, flags)?;
            Self::reread(b, pool_xml, live, &xml)
        })
    }

    fn reread(
        b: &Arc<dyn PoolBackend>,
        pool_xml: &str,
        live: &mut Live,
        vol_xml: &str,
    ) -> Result<()> {
        let now = b.refresh_volume(pool_xml, vol_xml)?;
        let v = StorageVolume::parse(&now, None).map_err(|e| xml_err("storage volume", e))?;
        live.volumes.insert(v.name().to_string(), LiveVol::new(v));
        Ok(())
    }

    /// `virStorageVolGetInfo`: refreshed from the backend.
    pub fn volume_info(&self, pool: &str, name: &str) -> Result<VolumeInfo> {
        self.with_volume(pool, name, |b, pool_xml, live, vol| {
            Self::reread(b, pool_xml, live, &vol.to_xml(&fmt_opts()))?;
            let v = &live.volumes[name];
            Ok(VolumeInfo {
                kind: volume_kind(v.volume_type().unwrap_or("file")),
                capacity: v.capacity_bytes(),
                allocation: v.allocation_bytes(),
            })
        })
    }

    /// `virStorageVolGetXMLDesc`: refreshed from the backend.
    pub fn volume_xml(&self, pool: &str, name: &str, flags: u32) -> Result<String> {
        crate::files::check_flags(
            ErrorDomain::Storage as i32,
            "virStorageVolGetXMLDesc",
            flags,
            0,
        )?;
        self.with_volume(pool, name, |b, pool_xml, live, vol| {
            Self::reread(b, pool_xml, live, &vol.to_xml(&fmt_opts()))?;
            Ok(live.volumes[name].to_xml(&fmt_opts()))
        })
    }

    /// `virStorageVolGetPath`.
    pub fn volume_path(&self, pool: &str, name: &str) -> Result<String> {
        let o = self.live_view(pool)?;
        let live = o.live.as_ref().expect("checked active");
        let vol = live
            .volumes
            .get(name)
            .ok_or_else(|| no_vol(&format!("no storage vol with matching name '{name}'")))?;
        vol.target_path()
            .map(str::to_string)
            .ok_or_else(|| no_vol(&format!("volume '{name}' has no target path")))
    }
}

/// Which way a [`PoolStream`] moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `virStorageVolUpload`: bytes go into the volume.
    Upload,
    /// `virStorageVolDownload`: bytes come out of the volume.
    Download,
}

impl StreamKind {
    fn api(self) -> &'static str {
        match self {
            StreamKind::Upload => "virStorageVolUpload",
            StreamKind::Download => "virStorageVolDownload",
        }
    }
}

impl Pools {
    /// `virStorageVolUpload`: a stream writing `length` bytes (0: up to the end) into
    /// the volume from `offset`. The volume is busy (no delete, resize, wipe or other
    /// stream) until the stream is finished, aborted or dropped; the rest of the pool
    /// stays usable. After a finished upload the volume's sizes are read again.
    pub fn upload_volume(
        &self,
        pool: &str,
        name: &str,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<PoolStream> {
        self.open_stream(StreamKind::Upload, pool, name, offset, length, flags)
    }

    /// `virStorageVolDownload`: a stream reading `length` bytes (0: to the end) of the
    /// volume from `offset`. Other downloads of the volume may run at the same time;
    /// changes to it wait until the stream ends.
    pub fn download_volume(
        &self,
        pool: &str,
        name: &str,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<PoolStream> {
        self.open_stream(StreamKind::Download, pool, name, offset, length, flags)
    }

    fn open_stream(
        &self,
        kind: StreamKind,
        pool: &str,
        name: &str,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<PoolStream> {
        // VIR_STORAGE_VOL_{UP,DOWN}LOAD_SPARSE_STREAM needs holes, which are not sent
        crate::files::check_flags(ErrorDomain::Storage as i32, kind.api(), flags, 0)?;
        let slot = self.slot(pool)?;
        self.with_volume(pool, name, |b, pool_xml, live, vol| {
            // a stream excludes an upload; an upload excludes every other stream
            slot.check_idle(pool, name, kind == StreamKind::Download)?;
            // the sizes as they are now, not as the last refresh saw them
            Self::reread(b, pool_xml, live, &vol.to_xml(&fmt_opts()))?;
            let vol = live.volumes.get(name).cloned().ok_or_else(|| {
                no_vol(&format!("no storage vol with matching name '{name}'"))
            })?;
            let capacity = vol.capacity_bytes();
            let what = format!("volume '{name}' in pool '{pool}'");
            if offset > capacity {
                return Err(invalid_arg(format!(
                    "{what}: offset {offset} is past the volume's capacity ({capacity} bytes)"
                )));
            }
            let room = capacity - offset;
            if length > room {
                return Err(invalid_arg(format!(
                    "{what}: length {length} at offset {offset} goes past the volume's capacity ({capacity} bytes)"
                )));
            }
            // Bytes an upload may send: its length, or for a raw volume what fits in it.
            // Other formats (an image file uploaded whole) are the backend's to check.
            let raw = matches!(vol.format_type(), None | Some("raw" | "iso"));
            let limit = match (kind, length) {
                (StreamKind::Upload, 0) if raw => Some(room),
                (StreamKind::Upload, 0) => None,
                (StreamKind::Upload, n) => Some(n),
                (StreamKind::Download, _) => None,
            };
            let vol_xml = vol.to_xml(&fmt_opts());
            let opened = match kind {
                StreamKind::Upload => b.upload_volume(pool_xml, &vol_xml, offset, length, flags),
                StreamKind::Download => {
                    b.download_volume(pool_xml, &vol_xml, offset, length, flags)
                }
            };
            let inner = opened.map_err(|e| match e {
                Error::Driver {
                    code,
                    domain,
                    message,
                } if code == ErrorCode::NoSupport as i32 => Error::Driver {
                    code,
                    domain,
                    message: format!(
                        "{message} (storage pool '{pool}' of type '{}')",
                        self.slot(pool)
                            .map(|s| s.view().def.pool_type().to_string())
                            .unwrap_or_default()
                    ),
                },
                e => e,
            })?;
            {
                let mut streams = lock(&slot.streams);
                let e = streams.entry(name.to_string()).or_insert((false, 0));
                e.0 |= kind == StreamKind::Upload;
                e.1 += 1;
            }
            Ok(PoolStream {
                slot: Arc::clone(&slot),
                backend: Arc::clone(b),
                pool: pool.to_string(),
                name: name.to_string(),
                pool_xml: pool_xml.to_string(),
                vol_xml,
                kind,
                inner: Some(inner),
                limit,
                requested_length: length > 0,
                sent: 0,
                released: false,
            })
        })
    }
}

/// An open volume stream of a [`Pools`]: the backend's stream, and the volume marked
/// busy until [`PoolStream::finish`], [`PoolStream::abort`] or drop (which aborts).
pub struct PoolStream {
    slot: Slot,
    backend: Arc<dyn PoolBackend>,
    pool: String,
    name: String,
    pool_xml: String,
    vol_xml: String,
    kind: StreamKind,
    inner: Option<Box<dyn BackendStream>>,
    /// Bytes an upload may still send in total, when bounded.
    limit: Option<u64>,
    /// Whether `limit` is the length the caller asked for.
    requested_length: bool,
    sent: u64,
    /// The volume is no longer marked busy by this stream.
    released: bool,
}

impl std::fmt::Debug for PoolStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolStream")
            .field("pool", &self.pool)
            .field("volume", &self.name)
            .field("kind", &self.kind)
            .field("open", &self.inner.is_some())
            .finish()
    }
}

impl PoolStream {
    /// Upload or download.
    pub fn kind(&self) -> StreamKind {
        self.kind
    }

    fn closed(&self) -> Error {
        invalid(format!(
            "the stream of volume '{}' in pool '{}' is closed",
            self.name, self.pool
        ))
    }

    fn inner(&mut self) -> Result<&mut Box<dyn BackendStream>> {
        if self.inner.is_none() {
            return Err(self.closed());
        }
        Ok(self.inner.as_mut().expect("checked above"))
    }

    /// Writes the next chunk of an upload. Past the volume's capacity (raw) or the
    /// requested length, the stream fails and is aborted.
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        if self.kind != StreamKind::Upload {
            return Err(invalid(format!(
                "the download stream of volume '{}' cannot be written",
                self.name
            )));
        }
        if let Some(limit) = self.limit
            && self.sent + data.len() as u64 > limit
        {
            let what = if self.requested_length {
                "the requested length"
            } else {
                "what the volume holds from the offset"
            };
            let e = invalid_arg(format!(
                "volume '{}' in pool '{}': the upload goes past {limit} bytes ({what})",
                self.name, self.pool
            ));
            self.release(true);
            return Err(e);
        }
        let r = self.inner()?.send(data);
        match r {
            Ok(()) => {
                self.sent += data.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.release(true);
                Err(e)
            }
        }
    }

    /// Reads at most `max` bytes of a download; empty at the end.
    pub fn recv(&mut self, max: usize) -> Result<Vec<u8>> {
        if self.kind != StreamKind::Download {
            return Err(invalid(format!(
                "the upload stream of volume '{}' cannot be read",
                self.name
            )));
        }
        let r = self.inner()?.recv(max);
        if r.is_err() {
            self.release(true);
        }
        r
    }

    /// [`PoolStream::recv`] appending to `out`; returns the bytes appended (0 at the end).
    pub fn recv_into(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize> {
        if self.kind != StreamKind::Download {
            return Err(invalid(format!(
                "the upload stream of volume '{}' cannot be read",
                self.name
            )));
        }
        let r = self.inner()?.recv_into(out, max);
        if r.is_err() {
            self.release(true);
        }
        r
    }

    /// Ends the stream: an upload is committed and the volume's sizes read again.
    pub fn finish(&mut self) -> Result<()> {
        let r = self.inner()?.finish();
        self.inner = None;
        if r.is_ok() && self.kind == StreamKind::Upload {
            // the op lock only for the refresh: a long operation elsewhere in the pool
            // was never blocked by this stream
            let mut o = self.slot.edit();
            if let Some(live) = o.live.as_mut()
                && let Err(e) = Pools::reread(&self.backend, &self.pool_xml, live, &self.vol_xml)
            {
                tracing::warn!(
                    "cannot refresh volume '{}' after its upload: {e}",
                    self.name
                );
            }
        }
        self.release(false);
        r
    }

    /// Abandons the stream.
    pub fn abort(&mut self) -> Result<()> {
        let r = match self.inner.as_mut() {
            Some(s) => s.abort(),
            None => Ok(()),
        };
        self.inner = None;
        self.release(false);
        r
    }

    /// Aborts the backend stream (when `abort`) and frees the volume.
    fn release(&mut self, abort: bool) {
        if self.released {
            return;
        }
        self.released = true;
        if let Some(mut s) = self.inner.take()
            && abort
            && let Err(e) = s.abort()
        {
            tracing::debug!("aborting the stream of volume '{}': {e}", self.name);
        }
        let mut streams = lock(&self.slot.streams);
        if let Some(e) = streams.get_mut(&self.name) {
            e.1 = e.1.saturating_sub(1);
            if self.kind == StreamKind::Upload {
                e.0 = false;
            }
            if e.1 == 0 {
                streams.remove(&self.name);
            }
        }
    }
}

impl Drop for PoolStream {
    fn drop(&mut self) {
        self.release(true);
    }
}

fn volume_kind(t: &str) -> i32 {
    match t {
        "block" => 1,
        "dir" => 2,
        "network" => 3,
        "netdir" => 4,
        "ploop" => 5,
        _ => 0,
    }
}

/// The text of the first `<name>` element of a volume document, when it needs no
/// unescaping.
fn name_hint(xml: &str) -> Option<&str> {
    let start = xml.find("<name>")? + "<name>".len();
    let len = xml[start..].find("</name>")?;
    let name = &xml[start..start + len];
    (!name.contains('&')).then_some(name)
}

/// The live state of a pool from a backend's refresh report. Volumes reported with the
/// same text as at the `previous` refresh are kept as they are (no parse): a steady
/// refresh of a large pool costs one lookup and one string comparison per volume here.
fn live_of(def: &StoragePool, r: PoolRefresh, previous: Option<&Live>) -> Result<Live> {
    let mut volumes = BTreeMap::new();
    let mut fresh = Vec::new();
    for x in r.volumes {
        // The name in the text is only a hint to find the previous report: a volume is
        // kept only when its whole text is the same.
        let same = previous
            .zip(name_hint(&x))
            .and_then(|(p, n)| p.volumes.get_key_value(n))
            .filter(|(_, v)| v.reported.as_deref() == Some(x.as_str()));
        match same {
            Some((name, v)) => {
                volumes.insert(name.clone(), Arc::clone(v));
            }
            None => fresh.push(x),
        }
    }
    for v in parse_reported(def, fresh)? {
        volumes.insert(v.name().to_string(), v);
    }
    Ok(Live {
        capacity: r.capacity,
        allocation: r.allocation,
        available: r.available,
        volumes,
    })
}

/// Parses the volume texts a backend reported, on every core when there are many (a
/// pool's first refresh after thousands of files appeared).
fn parse_reported(def: &StoragePool, texts: Vec<String>) -> Result<Vec<Arc<LiveVol>>> {
    let parse = |x: String| -> Result<Arc<LiveVol>> {
        let vol = StorageVolume::parse(&x, Some(def))
            .map_err(|e| xml_err("storage volume reported by the backend", e))?;
        Ok(Arc::new(LiveVol {
            vol,
            reported: Some(x),
        }))
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(texts.len() / 512)
        .max(1);
    if threads == 1 {
        return texts.into_iter().map(parse).collect();
    }
    let mut texts = texts;
    let chunk = texts.len().div_ceil(threads);
    let mut parts = Vec::with_capacity(threads);
    while texts.len() > chunk {
        parts.push(texts.split_off(texts.len() - chunk));
    }
    parts.push(texts);
    parts.reverse();
    let done: Vec<Result<Vec<Arc<LiveVol>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                let parse = &parse;
                s.spawn(move || part.into_iter().map(parse).collect())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(storage_err(
                        ErrorCode::InternalError as i32,
                        "parsing the refreshed volumes panicked",
                    ))
                })
            })
            .collect()
    });
    let mut out = Vec::new();
    for d in done {
        out.extend(d?);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;

//! The `rbd` storage pool backend: the images of a Ceph pool are the volumes.
//!
//! It talks to the cluster through librados and librbd (Debian's Ceph 16 libraries, a
//! thin FFI module of its own in [`ffi`] with safe wrappers in [`rados`]); nothing runs
//! the `rbd` or `ceph` commands.
//!
//! - **start** connects with the pool's monitors (`<source><host name port>`) and auth:
//!   `<auth type='ceph' username='U'><secret usage|uuid/></auth>` takes the cephx key from
//!   the host's secrets (`HostServices::secret_value`, usage type ceph), no `<auth>`
//!   connects with auth `none`. The connection (one `rados_t` and the I/O context of the
//!   Ceph pool `<source><name>`) is kept for the pool and reused by every later call;
//!   **stop** drops it. A call for a pool without a connection (a daemon restarted with
//!   the pool active) connects again, and a changed definition (monitors, user, key)
//!   replaces the connection.
//! - **refresh** lists the images (`rbd_list2`) and stats them on several threads over the
//!   one connection: size, and allocation from the object map (`rbd_diff_iterate2` over
//!   whole objects) where the image has a valid fast-diff map, else its size (libvirt's
//!   rule). Pool figures come from `rados_cluster_stat` and the pool's `num_bytes`.
//! - **volumes** are format 2 images with the cluster's default features: create, delete
//!   (`WITH_SNAPSHOTS` removes the image's snapshots first), resize (`SHRINK` needed to
//!   shrink, `DELTA` adds), wipe (`zero` and `trim`: a discard of the whole image, which
//!   reads back as zeros), clone (a protected snapshot `rvirt-clone-NEW` of the source and
//!   an RBD clone of it when the source has the layering feature and both pools are on
//!   the same connection settings, else a full copy), upload and download streams
//!   (asynchronous librbd I/O, several requests in flight).
//!
//! A volume's key and target path are `cephpool/image`, its type `network`, its format
//! `raw`. Every error names the pool or volume and carries libvirt's error number.

pub mod error;
pub mod fastlist;
pub mod ffi;
pub mod plugin;
pub mod rados;
pub mod stream;

pub use error::{Error, Result, code};

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rados::{Conn, RadosError};
use rvirt_xml::{StoragePool, StorageVolume};

/// The pool type served.
pub const POOL_TYPE: &str = "rbd";

/// `VIR_SECRET_USAGE_TYPE_CEPH`.
pub const SECRET_USAGE_CEPH: i32 = 2;

/// Threads that stat images during a refresh (each waits on the network most of the time).
pub const REFRESH_THREADS: usize = 24;

/// libvirt's flag numbers this backend honours.
pub mod flags {
    /// `VIR_STORAGE_VOL_DELETE_WITH_SNAPSHOTS`.
    pub const VOL_DELETE_WITH_SNAPSHOTS: u32 = 2;
    /// `VIR_STORAGE_VOL_DELETE_ZEROED`.
    pub const VOL_DELETE_ZEROED: u32 = 1;
    /// `VIR_STORAGE_VOL_RESIZE_ALLOCATE`.
    pub const RESIZE_ALLOCATE: u32 = 1;
    /// `VIR_STORAGE_VOL_RESIZE_DELTA`.
    pub const RESIZE_DELTA: u32 = 2;
    /// `VIR_STORAGE_VOL_RESIZE_SHRINK`.
    pub const RESIZE_SHRINK: u32 = 4;
    /// `VIR_STORAGE_VOL_WIPE_ALG_ZERO`.
    pub const WIPE_ALG_ZERO: u32 = 0;
    /// `VIR_STORAGE_VOL_WIPE_ALG_TRIM`.
    pub const WIPE_ALG_TRIM: u32 = 9;
}

/// `pool 'NAME'`.
pub fn pool_object(name: &str) -> String {
    format!("pool '{name}'")
}

/// `volume 'NAME' in pool 'POOL'`.
pub fn vol_object(pool: &str, name: &str) -> String {
    format!("volume '{name}' in pool '{pool}'")
}

fn check_flags(function: &'static str, flags: u32, known: u32) -> Result<()> {
    if flags & !known != 0 {
        return Err(Error::UnsupportedFlags {
            function,
            flags: flags & !known,
        });
    }
    Ok(())
}

/// Where the cephx key of a pool comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `<secret usage='...'/>`.
    Usage(String),
    /// `<secret uuid='...'/>`.
    Uuid(String),
}

impl SecretRef {
    /// The usage id or UUID text, as `secret_value` takes it.
    pub fn id(&self) -> &str {
        match self {
            SecretRef::Usage(s) | SecretRef::Uuid(s) => s,
        }
    }
}

/// What an `rbd` pool definition says about reaching its images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// The libvirt pool's name.
    pub name: String,
    /// Its UUID (the connection cache's key).
    pub uuid: String,
    /// The Ceph pool (`<source><name>`).
    pub ceph_pool: String,
    /// The monitors (`<source><host name port>`), in order.
    pub monitors: Vec<(String, Option<String>)>,
    /// The cephx user and key's secret (`<source><auth type='ceph'>`); `None`: auth none.
    pub auth: Option<(String, SecretRef)>,
}

fn invalid(pool: &str, field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArg {
        object: pool_object(pool),
        field,
        reason: reason.into(),
    }
}

/// Parses a pool document.
pub fn parse_pool(xml: &str) -> Result<StoragePool> {
    StoragePool::parse(xml).map_err(|source| Error::Xml {
        what: "pool",
        source,
    })
}

impl PoolConfig {
    /// Reads the connection settings of an `rbd` pool.
    pub fn from_pool(p: &StoragePool) -> Result<PoolConfig> {
        let name = p.name().to_string();
        if p.pool_type() != POOL_TYPE {
            return Err(invalid(
                &name,
                "pool/@type",
                format!("'{}' is not an rbd pool", p.pool_type()),
            ));
        }
        let src = p.element().child("source");
        let ceph_pool = p
            .source_name()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid(&name, "pool/source/name", "missing (the Ceph pool)"))?
            .to_string();
        let mut monitors = Vec::new();
        for h in src.into_iter().flat_map(|s| s.children_named("host")) {
            let host = h
                .attr("name")
                .filter(|n| !n.is_empty())
                .ok_or_else(|| invalid(&name, "pool/source/host/@name", "missing"))?;
            if host.contains([',', ' ', '\0']) {
                return Err(invalid(
                    &name,
                    "pool/source/host/@name",
                    format!("'{host}' is not a host name or address"),
                ));
            }
            let port = match h.attr("port") {
                Some(p) if p.parse::<u16>().is_ok_and(|v| v > 0) => Some(p.to_string()),
                Some(p) => {
                    return Err(invalid(
                        &name,
                        "pool/source/host/@port",
                        format!("'{p}' is not a port number"),
                    ));
                }
                None => None,
            };
            monitors.push((host.to_string(), port));
        }
        if monitors.is_empty() {
            return Err(invalid(
                &name,
                "pool/source/host",
                "an rbd pool needs at least one monitor",
            ));
        }
        let auth = match src.and_then(|s| s.child("auth")) {
            None => None,
            Some(a) => {
                if let Some(t) = a.attr("type")
                    && t != "ceph"
                {
                    return Err(invalid(
                        &name,
                        "pool/source/auth/@type",
                        format!("'{t}' is not 'ceph'"),
                    ));
                }
                let user = a
                    .attr("username")
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| invalid(&name, "pool/source/auth/@username", "missing"))?;
                let user = user.strip_prefix("client.").unwrap_or(user).to_string();
                let secret = a
                    .child("secret")
                    .ok_or_else(|| invalid(&name, "pool/source/auth/secret", "missing"))?;
                let sref = match (secret.attr("uuid"), secret.attr("usage")) {
                    (Some(u), _) if !u.is_empty() => SecretRef::Uuid(u.to_string()),
                    (_, Some(u)) if !u.is_empty() => SecretRef::Usage(u.to_string()),
                    _ => {
                        return Err(invalid(
                            &name,
                            "pool/source/auth/secret",
                            "needs a 'uuid' or 'usage' attribute",
                        ));
                    }
                };
                Some((user, sref))
            }
        };
        Ok(PoolConfig {
            name,
            uuid: p.uuid().to_string(),
            ceph_pool,
            monitors,
            auth,
        })
    }

    /// The `mon_host` value: `host[:port]` joined by commas, IPv6 addresses bracketed.
    pub fn mon_host(&self) -> String {
        self.monitors
            .iter()
            .map(|(h, p)| {
                let h = if h.contains(':') && !h.starts_with('[') {
                    format!("[{h}]")
                } else {
                    h.clone()
                };
                match p {
                    Some(p) => format!("{h}:{p}"),
                    None => h,
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client id (`admin` for `client.admin`; `admin` without auth).
    pub fn user(&self) -> &str {
        self.auth.as_ref().map_or("admin", |(u, _)| u.as_str())
    }
}

/// Gives the cephx key (the secret's raw value) for a usage id or UUID.
pub type KeySource =
    dyn Fn(&SecretRef) -> std::result::Result<Vec<u8>, (i32, String)> + Send + Sync;

/// A cached connection and the settings it was made with.
struct Cached {
    fingerprint: u64,
    conn: Arc<Conn>,
}

/// The backend's state: the connection of each pool (by UUID) and the key source.
pub struct Rbd {
    keys: Box<KeySource>,
    conns: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for Rbd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rbd").finish_non_exhaustive()
    }
}

/// One image as a refresh or a volume call sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image name.
    pub name: String,
    /// Its size.
    pub capacity: u64,
    /// Bytes its existing objects take (the size without a fast-diff map).
    pub allocation: u64,
}

/// What a refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// Cluster raw capacity.
    pub capacity: u64,
    /// Bytes the pool's objects take.
    pub allocation: u64,
    /// Cluster raw bytes free.
    pub available: u64,
    /// The images.
    pub images: Vec<ImageInfo>,
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\'' => o.push_str("&apos;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

/// The `<volume>` document of an image of Ceph pool `ceph_pool`.
pub fn volume_xml(ceph_pool: &str, i: &ImageInfo) -> String {
    let name = xml_escape(&i.name);
    let path = xml_escape(&format!("{ceph_pool}/{}", i.name));
    format!(
        "<volume type='network'>\n  <name>{name}</name>\n  <key>{path}</key>\n  \
         <capacity unit='bytes'>{}</capacity>\n  <allocation unit='bytes'>{}</allocation>\n  \
         <target>\n    <path>{path}</path>\n    <format type='raw'/>\n  </target>\n</volume>\n",
        i.capacity, i.allocation
    )
}

/// Checks an image name: not empty, no `/`, `@` or NUL (they would make RBD specs
/// ambiguous).
fn check_image_name(pool: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['/', '@', '\0']) {
        return Err(Error::InvalidArg {
            object: vol_object(pool, name),
            field: "volume/name",
            reason: "an RBD image name may not be empty or contain '/', '@' or NUL".into(),
        });
    }
    Ok(())
}

impl Rbd {
    /// A backend reading cephx keys through `keys`.
    pub fn new(keys: Box<KeySource>) -> Rbd {
        Rbd {
            keys,
            conns: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key (base64, as librados' `key` option takes it) and the settings' fingerprint.
    fn settings(&self, cfg: &PoolConfig) -> Result<(Option<String>, u64)> {
        use base64::Engine;
        let key = match &cfg.auth {
            None => None,
            Some((_, sref)) => {
                let raw = (self.keys)(sref).map_err(|(code, message)| Error::Secret {
                    object: pool_object(&cfg.name),
                    secret: sref.id().to_string(),
                    code,
                    message,
                })?;
                Some(base64::engine::general_purpose::STANDARD.encode(raw))
            }
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (cfg.mon_host(), cfg.user(), &cfg.ceph_pool, &key).hash(&mut h);
        Ok((key, h.finish()))
    }

    fn connect_new(
        &self,
        cfg: &PoolConfig,
        key: Option<&str>,
        mount_timeout: &str,
    ) -> Result<Conn> {
        let mon = cfg.mon_host();
        let mut opts: Vec<(&str, &str)> = vec![
            ("mon_host", &mon),
            // libvirt's timeouts: a cluster that does not answer fails the call
            ("client_mount_timeout", mount_timeout),
            ("rados_mon_op_timeout", "30"),
            ("rados_osd_op_timeout", "30"),
            // no ceph.conf or keyring of the host is read: the pool says everything
            ("keyring", ""),
            ("log_to_stderr", "false"),
            ("err_to_stderr", "false"),
            ("log_file", ""),
        ];
        match key {
            Some(k) => {
                opts.push(("auth_client_required", "cephx"));
                opts.push(("key", k));
            }
            None => opts.push(("auth_client_required", "none")),
        }
        Conn::connect(cfg.user(), &opts, &cfg.ceph_pool).map_err(|source| {
            if source.call == "rados_ioctx_create" && source.errno == libc::ENOENT {
                return invalid(
                    &cfg.name,
                    "pool/source/name",
                    format!("the Ceph cluster has no pool '{}'", cfg.ceph_pool),
                );
            }
            Error::Connect {
                object: pool_object(&cfg.name),
                monitors: mon.clone(),
                user: cfg.user().to_string(),
                source,
            }
        })
    }

    /// The pool's connection: the cached one when its settings are unchanged, else a
    /// new one (kept for later calls).
    pub fn conn(&self, cfg: &PoolConfig) -> Result<Arc<Conn>> {
        self.conn_with(cfg, "30")
    }

    fn conn_with(&self, cfg: &PoolConfig, mount_timeout: &str) -> Result<Arc<Conn>> {
        let (key, fp) = self.settings(cfg)?;
        if let Some(c) = self.lock().get(&cfg.uuid)
            && c.fingerprint == fp
        {
            return Ok(Arc::clone(&c.conn));
        }
        // connect without holding the lock: other pools keep working meanwhile
        let conn = Arc::new(self.connect_new(cfg, key.as_deref(), mount_timeout)?);
        let mut m = self.lock();
        match m.get(&cfg.uuid) {
            Some(c) if c.fingerprint == fp => Ok(Arc::clone(&c.conn)),
            _ => {
                m.insert(
                    cfg.uuid.clone(),
                    Cached {
                        fingerprint: fp,
                        conn: Arc::clone(&conn),
                    },
                );
                Ok(conn)
            }
        }
    }

    /// Whether the pool has a live connection here.
    pub fn is_connected(&self, cfg: &PoolConfig) -> bool {
        self.lock().contains_key(&cfg.uuid)
    }

    /// Whether the pool is usable here without a start: it has a connection in this
    /// process, or one can be made now (a daemon restarted with the pool active keeps it
    /// active, where libvirt's rbd backend, which has no check, makes it inactive). The
    /// attempt waits at most 5 s for the monitors; any failure answers `false`, and the
    /// start that follows reports it.
    pub fn check_pool(&self, cfg: &PoolConfig) -> bool {
        if self.is_connected(cfg) {
            return true;
        }
        self.conn_with(cfg, "5")
            .and_then(|c| {
                c.pool_bytes().map_err(|source| Error::Rados {
                    object: pool_object(&cfg.name),
                    action: "read the pool's figures".into(),
                    source,
                })
            })
            .is_ok()
    }

    /// Connects (again) and checks the pool answers.
    pub fn start_pool(&self, cfg: &PoolConfig) -> Result<()> {
        self.lock().remove(&cfg.uuid);
        let c = self.conn(cfg)?;
        c.pool_bytes().map_err(|source| Error::Rados {
            object: pool_object(&cfg.name),
            action: format!("read the figures of Ceph pool '{}'", cfg.ceph_pool),
            source,
        })?;
        Ok(())
    }

    /// Drops the pool's connection (it closes once the last image and stream using it
    /// are gone).
    pub fn stop_pool(&self, cfg: &PoolConfig) {
        self.lock().remove(&cfg.uuid);
    }

    /// Lists the images with their sizes: from their headers and object maps, read
    /// asynchronously ([`fastlist`]); an image those do not answer is opened and statted
    /// (on [`REFRESH_THREADS`] threads).
    pub fn refresh_pool(&self, cfg: &PoolConfig) -> Result<Refresh> {
        let conn = self.conn(cfg)?;
        let obj = pool_object(&cfg.name);
        let rerr = |action: String| {
            let obj = obj.clone();
            move |source| Error::Rados {
                object: obj,
                action,
                source,
            }
        };
        let st = conn
            .cluster_stat()
            .map_err(rerr("read the cluster's figures".into()))?;
        let used = conn.pool_bytes().map_err(rerr(format!(
            "read the figures of Ceph pool '{}'",
            cfg.ceph_pool
        )))?;
        let specs = conn.list().map_err(rerr(format!(
            "list the images of Ceph pool '{}'",
            cfg.ceph_pool
        )))?;
        // the fast path: header and object map reads, many in flight (see `fastlist`)
        let ids: Vec<Option<String>> = specs
            .iter()
            .map(|(_, id)| (!id.is_empty()).then(|| id.clone()))
            .collect();
        let headers = fastlist::headers(&conn, &ids);
        let mut maps = Vec::new();
        let mut map_of = vec![None; specs.len()];
        for (i, h) in headers.iter().enumerate() {
            if let (Some(h), Some(id)) = (h, &ids[i])
                && h.features & ffi::RBD_FEATURE_FAST_DIFF != 0
                && h.flags & (ffi::RBD_FLAG_OBJECT_MAP_INVALID | ffi::RBD_FLAG_FAST_DIFF_INVALID)
                    == 0
                && h.order < 64
            {
                map_of[i] = Some(maps.len());
                maps.push((id.clone(), h.size.div_ceil(1u64 << h.order)));
            }
        }
        let counts = fastlist::existing_objects(&conn, &maps);
        let mut fast: Vec<Option<ImageInfo>> = Vec::with_capacity(specs.len());
        for (i, (name, _)) in specs.iter().enumerate() {
            let info = headers[i].and_then(|h| {
                let allocation = match map_of[i] {
                    None if h.features & ffi::RBD_FEATURE_FAST_DIFF == 0 => h.size,
                    None => return None,
                    Some(m) => counts[m]?.saturating_mul(1u64 << h.order).min(h.size),
                };
                Some(ImageInfo {
                    name: name.clone(),
                    capacity: h.size,
                    allocation,
                })
            });
            fast.push(info);
        }
        // the slow path for what the fast one could not answer: open the image
        let names: Vec<(usize, &String)> = specs
            .iter()
            .enumerate()
            .filter(|(i, _)| fast[*i].is_none())
            .map(|(i, (n, _))| (i, n))
            .collect();
        let next = AtomicUsize::new(0);
        let threads = REFRESH_THREADS.min(names.len()).max(1);
        let results: Vec<Vec<(usize, Result<Option<ImageInfo>>)>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some((i, n)) = names.get(k) else { break };
                            out.push((*i, image_info(&conn, cfg, n)));
                        }
                        out
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![(
                            usize::MAX,
                            Err(Error::OperationInvalid {
                                object: obj.clone(),
                                reason: "a refresh thread panicked".into(),
                            }),
                        )]
                    })
                })
                .collect()
        });
        let mut all: Vec<(usize, ImageInfo)> = fast
            .into_iter()
            .enumerate()
            .filter_map(|(i, f)| Some((i, f?)))
            .collect();
        for (i, r) in results.into_iter().flatten() {
            // an image removed between the listing and the stat is simply gone
            if let Some(info) = r? {
                all.push((i, info));
            }
        }
        all.sort_by_key(|(i, _)| *i);
        Ok(Refresh {
            capacity: st.total,
            allocation: used,
            available: st.avail,
            images: all.into_iter().map(|(_, i)| i).collect(),
        })
    }

    fn vol_name<'a>(&self, cfg: &PoolConfig, vol: &'a StorageVolume) -> Result<&'a str> {
        check_image_name(&cfg.name, vol.name())?;
        Ok(vol.name())
    }

    fn map_image_err(cfg: &PoolConfig, name: &str, action: &str, e: RadosError) -> Error {
        let image = format!("{}/{name}", cfg.ceph_pool);
        match e.errno {
            libc::ENOENT => Error::NoVolume {
                pool: cfg.name.clone(),
                name: name.to_string(),
                image,
            },
            libc::EEXIST => Error::VolumeExists {
                pool: cfg.name.clone(),
                name: name.to_string(),
                image,
            },
            libc::EBUSY if action == "remove" => Error::OperationInvalid {
                object: vol_object(&cfg.name, name),
                reason: format!(
                    "RBD image '{image}' is in use (open by a guest, a stream or another client)"
                ),
            },
            _ => Error::Rados {
                object: vol_object(&cfg.name, name),
                action: format!("{action} RBD image '{image}'"),
                source: e,
            },
        }
    }

    /// Creates a format 2 image of the volume's capacity (raw only).
    pub fn create_volume(&self, cfg: &PoolConfig, vol: &StorageVolume) -> Result<ImageInfo> {
        let name = self.vol_name(cfg, vol)?;
        check_raw(cfg, vol)?;
        let conn = self.conn(cfg)?;
        conn.create(name, vol.capacity_bytes())
            .map_err(|e| Self::map_image_err(cfg, name, "create", e))?;
        Ok(ImageInfo {
            name: name.to_string(),
            capacity: vol.capacity_bytes(),
            allocation: 0,
        })
    }

    /// The image's current figures.
    pub fn volume_info(&self, cfg: &PoolConfig, vol: &StorageVolume) -> Result<ImageInfo> {
        let name = self.vol_name(cfg, vol)?;
        let conn = self.conn(cfg)?;
        image_info(&conn, cfg, name)?.ok_or_else(|| Error::NoVolume {
            pool: cfg.name.clone(),
            name: name.to_string(),
            image: format!("{}/{name}", cfg.ceph_pool),
        })
    }

    /// Removes the image; its snapshots first with `WITH_SNAPSHOTS`, else an image with
    /// snapshots is refused.
    pub fn delete_volume(&self, cfg: &PoolConfig, vol: &StorageVolume, flags: u32) -> Result<()> {
        check_flags(
            "delete_volume",
            flags,
            flags::VOL_DELETE_WITH_SNAPSHOTS | flags::VOL_DELETE_ZEROED,
        )?;
        let name = self.vol_name(cfg, vol)?;
        let conn = self.conn(cfg)?;
        let err = |action: &'static str| move |e| Self::map_image_err(cfg, name, action, e);
        let img = conn.open(name, false).map_err(err("open"))?;
        if flags & flags::VOL_DELETE_ZEROED != 0 {
            let size = img.size().map_err(err("stat"))?;
            img.discard(0, size).map_err(err("zero"))?;
        }
        let snaps = img.snapshots().map_err(err("list the snapshots of"))?;
        if !snaps.is_empty() {
            if flags & flags::VOL_DELETE_WITH_SNAPSHOTS == 0 {
                return Err(Error::OperationInvalid {
                    object: vol_object(&cfg.name, name),
                    reason: format!(
                        "RBD image '{}/{name}' has snapshots ({}): delete it with VIR_STORAGE_VOL_DELETE_WITH_SNAPSHOTS",
                        cfg.ceph_pool,
                        snaps.join(", ")
                    ),
                });
            }
            for s in &snaps {
                match img.snap_unprotect(s) {
                    // EINVAL: it was not protected
                    Ok(()) => {}
                    Err(e) if e.errno == libc::EINVAL => {}
                    Err(e) if e.errno == libc::EBUSY => {
                        return Err(Error::OperationInvalid {
                            object: vol_object(&cfg.name, name),
                            reason: format!(
                                "snapshot '{s}' of RBD image '{}/{name}' has clones: delete them first",
                                cfg.ceph_pool
                            ),
                        });
                    }
                    Err(e) => return Err(err("unprotect a snapshot of")(e)),
                }
                img.snap_remove(s).map_err(err("remove a snapshot of"))?;
            }
        }
        drop(img);
        conn.remove(name).map_err(err("remove"))
    }

    /// Sets the image's size (`capacity` is final: the host applied `DELTA` already
    /// unless the flag is passed on, in which case it is added here).
    pub fn resize_volume(
        &self,
        cfg: &PoolConfig,
        vol: &StorageVolume,
        capacity: u64,
        flags: u32,
    ) -> Result<()> {
        check_flags(
            "resize_volume",
            flags,
            flags::RESIZE_ALLOCATE | flags::RESIZE_DELTA | flags::RESIZE_SHRINK,
        )?;
        let name = self.vol_name(cfg, vol)?;
        if flags & flags::RESIZE_ALLOCATE != 0 {
            return Err(Error::NoSupport {
                object: vol_object(&cfg.name, name),
                what: "preallocating an RBD image (VIR_STORAGE_VOL_RESIZE_ALLOCATE)".into(),
            });
        }
        let conn = self.conn(cfg)?;
        let err = |action: &'static str| move |e| Self::map_image_err(cfg, name, action, e);
        let img = conn.open(name, false).map_err(err("open"))?;
        let cur = img.size().map_err(err("stat"))?;
        let new = if flags & flags::RESIZE_DELTA != 0 {
            cur.checked_add(capacity).ok_or_else(|| Error::InvalidArg {
                object: vol_object(&cfg.name, name),
                field: "capacity",
                reason: format!("{cur} + {capacity} overflows"),
            })?
        } else {
            capacity
        };
        if new < cur && flags & flags::RESIZE_SHRINK == 0 {
            return Err(Error::OperationInvalid {
                object: vol_object(&cfg.name, name),
                reason: format!(
                    "cannot shrink from {cur} to {new} bytes without VIR_STORAGE_VOL_RESIZE_SHRINK"
                ),
            });
        }
        if new == 0 {
            return Err(Error::InvalidArg {
                object: vol_object(&cfg.name, name),
                field: "capacity",
                reason: "an RBD image cannot shrink to 0 bytes".into(),
            });
        }
        img.resize(new, new < cur).map_err(err("resize"))
    }

    /// Wipes with `zero` or `trim`: discards the whole image (it reads back as zeros).
    pub fn wipe_volume(
        &self,
        cfg: &PoolConfig,
        vol: &StorageVolume,
        algorithm: u32,
        flags: u32,
    ) -> Result<()> {
        check_flags("wipe_volume", flags, 0)?;
        let name = self.vol_name(cfg, vol)?;
        if algorithm != flags::WIPE_ALG_ZERO && algorithm != flags::WIPE_ALG_TRIM {
            return Err(Error::NoSupport {
                object: vol_object(&cfg.name, name),
                what: format!(
                    "wipe algorithm {algorithm} on RBD (zero and trim only: both discard the image)"
                ),
            });
        }
        let conn = self.conn(cfg)?;
        let err = |action: &'static str| move |e| Self::map_image_err(cfg, name, action, e);
        let img = conn.open(name, false).map_err(err("open"))?;
        let size = img.size().map_err(err("stat"))?;
        img.discard(0, size).map_err(err("discard"))?;
        img.flush().map_err(err("flush"))
    }

    /// Creates `vol` holding a copy of `src` of pool `src_cfg`: an RBD clone of a new
    /// protected snapshot when the source has the layering feature and both pools use
    /// the same cluster settings, else a full copy; then grown to `vol`'s capacity when
    /// that is larger.
    pub fn clone_volume(
        &self,
        cfg: &PoolConfig,
        vol: &StorageVolume,
        src_cfg: &PoolConfig,
        src: &StorageVolume,
    ) -> Result<ImageInfo> {
        let name = self.vol_name(cfg, vol)?;
        check_raw(cfg, vol)?;
        let src_name = self.vol_name(src_cfg, src)?;
        let conn = self.conn(cfg)?;
        let src_conn = self.conn(src_cfg)?;
        let serr =
            |action: &'static str| move |e| Self::map_image_err(src_cfg, src_name, action, e);
        let err = |action: &'static str| move |e| Self::map_image_err(cfg, name, action, e);
        let simg = src_conn.open(src_name, false).map_err(serr("open"))?;
        let src_size = simg.size().map_err(serr("stat"))?;
        let same_cluster = cfg.mon_host() == src_cfg.mon_host() && cfg.user() == src_cfg.user();
        let layering =
            simg.features().map_err(serr("read the features of"))? & ffi::RBD_FEATURE_LAYERING != 0;
        if same_cluster && layering {
            let snap = format!("rvirt-clone-{name}");
            simg.snap_create(&snap).map_err(serr("snapshot"))?;
            if let Err(e) = simg.snap_protect(&snap) {
                let _ = simg.snap_remove(&snap);
                return Err(serr("protect the clone snapshot of")(e));
            }
            if let Err(e) = conn.clone_image(&src_conn, src_name, &snap, name) {
                let _ = simg.snap_unprotect(&snap);
                let _ = simg.snap_remove(&snap);
                return Err(err("clone into")(e));
            }
        } else {
            simg.copy_to(&conn, name).map_err(err("copy into"))?;
        }
        drop(simg);
        let want = vol.capacity_bytes();
        if want > src_size {
            let img = conn.open(name, false).map_err(err("open"))?;
            img.resize(want, false).map_err(err("resize"))?;
        }
        self.volume_info(cfg, vol)
    }
}

fn check_raw(cfg: &PoolConfig, vol: &StorageVolume) -> Result<()> {
    match vol.format_type() {
        None | Some("raw") => Ok(()),
        Some(f) => Err(Error::NoSupport {
            object: vol_object(&cfg.name, vol.name()),
            what: format!("volume/target/format '{f}' (RBD images are raw)"),
        }),
    }
}

/// Opens an image read-only and reads its figures; `None` when it does not exist.
pub fn image_info(conn: &Arc<Conn>, cfg: &PoolConfig, name: &str) -> Result<Option<ImageInfo>> {
    let err = |action: &'static str| move |e| Rbd::map_image_err(cfg, name, action, e);
    let img = match conn.open(name, true) {
        Ok(i) => i,
        Err(e) if e.errno == libc::ENOENT => return Ok(None),
        Err(e) => return Err(err("open")(e)),
    };
    let capacity = img.size().map_err(err("stat"))?;
    let allocation = img
        .allocated(capacity)
        .map_err(err("read the object map of"))?
        .unwrap_or(capacity);
    Ok(Some(ImageInfo {
        name: name.to_string(),
        capacity,
        allocation,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(xml: &str) -> Result<PoolConfig> {
        PoolConfig::from_pool(&parse_pool(xml)?)
    }

    #[test]
    fn pool_settings_are_read_with_their_fields_named() {
        let c = cfg("<pool type='rbd'><name>r</name><source><name>rbd</name>\
             <host name='10.0.0.1' port='6789'/><host name='::1'/>\
             <auth type='ceph' username='client.admin'><secret usage='ceph-admin'/></auth>\
             </source></pool>")
        .expect("config");
        assert_eq!(c.ceph_pool, "rbd");
        assert_eq!(c.mon_host(), "10.0.0.1:6789,[::1]");
        assert_eq!(c.user(), "admin");
        assert_eq!(
            c.auth.as_ref().map(|a| &a.1),
            Some(&SecretRef::Usage("ceph-admin".into()))
        );

        let e = cfg("<pool type='rbd'><name>r</name><source><name>rbd</name></source></pool>")
            .expect_err("no monitor");
        assert_eq!(e.code(), code::INVALID_ARG);
        assert!(e.to_string().contains("pool 'r': pool/source/host"), "{e}");
        let e = cfg("<pool type='rbd'><name>r</name><source><name>rbd</name><host name='h' port='x'/></source></pool>")
            .expect_err("port");
        assert!(e.to_string().contains("pool/source/host/@port"), "{e}");
        let e = cfg(
            "<pool type='rbd'><name>r</name><source><name>rbd</name><host name='h'/>\
             <auth type='ceph' username='u'/></source></pool>",
        )
        .expect_err("secret");
        assert!(e.to_string().contains("pool/source/auth/secret"), "{e}");
        let c = cfg(
            "<pool type='rbd'><name>r</name><source><name>p</name><host name='h'/></source></pool>",
        )
        .expect("auth none");
        assert_eq!((c.user(), c.auth.is_none()), ("admin", true));
    }

    #[test]
    fn volume_documents_name_the_image_as_key_and_path() {
        let x = volume_xml(
            "rbd",
            &ImageInfo {
                name: "a&b".into(),
                capacity: 10,
                allocation: 4,
            },
        );
        let v = StorageVolume::parse(&x, None).expect("parses");
        assert_eq!(v.name(), "a&b");
        assert_eq!(v.key(), Some("rbd/a&b"));
        assert_eq!(v.target_path(), Some("rbd/a&b"));
        assert_eq!((v.capacity_bytes(), v.allocation_bytes()), (10, 4));
        assert_eq!(v.volume_type(), Some("network"));
        assert!(check_image_name("p", "x/y").is_err());
        assert!(check_image_name("p", "x@y").is_err());
    }
}

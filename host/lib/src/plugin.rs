//! Plugin discovery and loading, and the [`Backend`] that drives a loaded plugin.
//!
//! Architecture invariant: this module (with its submodule `host_services`, the services
//! lent to a hypervisor connection) and its storage counterpart (`storage/plugin.rs`, the
//! handle of a plugin's storage backend) are the only modules of the host that touch ABI
//! types; everything they hand out is a plain host type.

mod host_services;
mod owned;

pub(crate) use host_services::{
    ConnectionContext, DaemonServices, HostPools, PoolsLookup, secret_for_plugin,
};

use crate::{
    DomainEvent, DomainId, DomainInfo, DomainState, Error, NodeInfo, Result, TypedParam,
    TypedParamValue,
    backend::{Backend, EventCallback},
    storage::StorageBackend,
};
use rvirt_plugin_api::{
    self as api, DriverConnectionBox, EventSink, EventSink_TO, HostServices_TO, NetworkFacet_Ref,
    PResult, PluginError, PluginMod_Ref, StorageFacet_Ref,
    abi_stable::{
        library::{LibraryError, lib_header_from_path},
        sabi_trait::TD_Opaque,
        std_types::{RResult, RStr, RVec},
    },
};
use std::{
    collections::HashMap,
    ffi::{CStr, c_char},
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

/// The system directory searched for plugins after `RVIRT_PLUGIN_PATH` and
/// [`INSTALLED_PLUGIN_DIR`] (where distribution packages put them).
pub const SYSTEM_PLUGIN_DIR: &str = "/usr/lib/rvirt/plugins";

/// The directory `rvirt plugin install` installs into by default (the registry's
/// `install_dir`), searched after `RVIRT_PLUGIN_PATH` and before [`SYSTEM_PLUGIN_DIR`], so
/// a plugin an operator installed from the registry wins over the distribution's.
pub const INSTALLED_PLUGIN_DIR: &str = "/var/lib/rvirt/plugins";

/// Why a file in the search path was not loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The dynamic loader refused the file.
    #[error("cannot load '{}': {reason}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// A shared object without rvirt's version symbol.
    #[error("'{}' is not an rvirt plugin: it exports no `rvirt_plugin_api_version` symbol", path.display())]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// The version symbol's text is not a semver version.
    #[error("'{}' declares plugin API version '{version}', which is not a semver version", path.display())]
    BadVersion {
        /// The file.
        path: PathBuf,
        /// What it declared.
        version: String,
    },
    /// Built against an API this host cannot load.
    #[error(
        "'{}' was built against plugin API {plugin_api}; this host loads plugin API {supported}: rebuild the plugin against rvirt-plugin-api {host_major}.x",
        path.display()
    )]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// The plugin's API version.
        plugin_api: String,
        /// The range this host supports, e.g. `1.0 to 1.1`.
        supported: String,
        /// The host's major version.
        host_major: u64,
    },
    /// abi_stable's loader or layout check refused it.
    #[error("'{}' failed the ABI check: {summary}", path.display())]
    Abi {
        /// The file.
        path: PathBuf,
        /// The relevant lines of abi_stable's report.
        summary: String,
    },
    /// The plugin's manifest is unusable.
    #[error("'{}' has a bad manifest: {reason}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A plugin's manifest, as host values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginManifest {
    /// Plugin name.
    pub name: String,
    /// Kind (`hypervisor`, ...), as the plugin declares it; see [`PluginManifest::kinds`]
    /// for what it serves.
    pub kind: String,
    /// URI schemes served.
    pub schemes: Vec<String>,
    /// Storage pool types served through the storage facet (plugin API 1.3 and later;
    /// empty for a plugin without the facet).
    pub pool_types: Vec<String>,
    /// libvirt forward modes served through the network facet (plugin API 1.5 and later;
    /// empty for a plugin without the facet).
    pub forward_modes: Vec<String>,
    /// The plugin's version.
    pub version: String,
    /// The plugin API version it was built against.
    pub api_version: String,
    /// One line about it.
    pub description: String,
}

impl PluginManifest {
    /// What the plugin serves: `hypervisor` when it has URI schemes, `storage` when it
    /// has pool types.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        if !self.schemes.is_empty() {
            k.push("hypervisor");
        }
        if !self.pool_types.is_empty() {
            k.push("storage");
        }
        if !self.forward_modes.is_empty() {
            k.push("network");
        }
        k
    }
}

/// A storage pool type a plugin claims but does not serve, because a plugin earlier in
/// the search path serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolTypeRefusal {
    /// The pool type.
    pub pool_type: String,
    /// The file of the plugin that serves it.
    pub served_by: PathBuf,
}

impl std::fmt::Display for PoolTypeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pool type '{}' refused: '{}' earlier in the search path serves it",
            self.pool_type,
            self.served_by.display()
        )
    }
}

/// What happened to one file found in the search path.
#[derive(Debug, Clone)]
pub enum PluginStatus {
    /// Loaded and usable.
    Loaded(PluginManifest),
    /// Loaded, but an earlier file in the search path has the same plugin name.
    Shadowed {
        /// Its manifest.
        manifest: PluginManifest,
        /// The file that wins.
        by: PathBuf,
    },
    /// Not loaded.
    Refused(LoadError),
}

/// One file found in the search path.
#[derive(Debug, Clone)]
pub struct PluginRecord {
    /// The file.
    pub path: PathBuf,
    /// The outcome.
    pub status: PluginStatus,
    /// Pool types the plugin claims that an earlier plugin serves (first in the search
    /// path wins).
    pub refused_pool_types: Vec<PoolTypeRefusal>,
}

pub(crate) struct LoadedPlugin {
    pub(crate) manifest: PluginManifest,
    /// The file the loader opened (links resolved), as it was when loaded.
    real_path: PathBuf,
    module: PluginMod_Ref,
    storage: Option<StorageFacet_Ref>,
    network: Option<NetworkFacet_Ref>,
}

/// Libraries are never unloaded (abi_stable keeps `'static` references into them), so a
/// file is loaded at most once per process, whatever the number of runtimes.
type LoadResult = std::result::Result<Arc<LoadedPlugin>, LoadError>;

fn load_cache() -> &'static Mutex<HashMap<PathBuf, LoadResult>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, LoadResult>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The plugin search path: `RVIRT_PLUGIN_PATH`, then [`INSTALLED_PLUGIN_DIR`], then
/// [`SYSTEM_PLUGIN_DIR`], then the
/// running binary's directory and its `plugins/` subdirectory (for a test or example
/// binary in `target/*/deps` or `target/*/examples`, the directory above).
pub fn default_search_path() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("RVIRT_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&p).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.push(PathBuf::from(INSTALLED_PLUGIN_DIR));
    dirs.push(PathBuf::from(SYSTEM_PLUGIN_DIR));
    if let Some(mut dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        if dir
            .file_name()
            .is_some_and(|n| n == "deps" || n == "examples")
            && let Some(parent) = dir.parent()
        {
            dir = parent.to_path_buf();
        }
        dirs.push(dir.join("plugins"));
        dirs.push(dir);
    }
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let key = d.canonicalize().unwrap_or_else(|_| d.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    dirs
}

/// The plugins found along a search path.
pub struct Registry {
    search_path: Vec<PathBuf>,
    records: Vec<PluginRecord>,
    /// `records` with every lazily found plugin loaded (and refused if it fails), made on
    /// the first call of [`Registry::records`].
    verified: OnceLock<Vec<PluginRecord>>,
    by_name: Vec<Arc<PluginSlot>>,
    by_pool_type: Vec<(String, Arc<PluginSlot>)>,
    by_forward_mode: Vec<(String, Arc<PluginSlot>)>,
    hook: Arc<LoadHook>,
}

/// The suffix of a plugin's manifest file: `librvirt_plugin_x.so.manifest` beside the
/// plugin's real file (the target of a link), written by `rvirt plugin install`.
pub const MANIFEST_SUFFIX: &str = ".manifest";

/// A plugin the process has loaded and serves from, as [`Registry::served`] and the
/// load observer report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServedPlugin {
    /// Plugin name.
    pub name: String,
    /// The plugin's version (from the loaded library, not from a manifest file).
    pub version: String,
    /// The plugin API version it was built against.
    pub api_version: String,
    /// The file found along the search path (a link, for a plugin `rvirt plugin install`
    /// installed).
    pub file: PathBuf,
    /// The file the loader opened, links resolved.
    pub real_file: PathBuf,
    /// The URI schemes it serves (those no plugin earlier in the search path serves).
    pub schemes: Vec<String>,
    /// The storage pool types it serves.
    pub pool_types: Vec<String>,
    /// The network forward modes it serves.
    pub forward_modes: Vec<String>,
}

/// Called once for every plugin loaded after [`Registry::set_load_observer`], outside any
/// lock, with the plugin just loaded.
pub type LoadObserver = Arc<dyn Fn(&ServedPlugin) + Send + Sync>;

/// What a slot reports a load to: the observer, once the registry has one.
#[derive(Default)]
struct LoadHook {
    observer: OnceLock<LoadObserver>,
    /// What each plugin (by name) serves, filled once the scan has decided who serves what.
    serves: OnceLock<Vec<(String, Claims)>>,
}

/// What one plugin serves: the schemes, pool types and forward modes it claimed first.
#[derive(Clone, Default)]
struct Claims {
    schemes: Vec<String>,
    pool_types: Vec<String>,
    forward_modes: Vec<String>,
}

/// A plugin found along the search path: loaded at scan time, or (when a manifest file
/// describes it) on first use.
pub(crate) struct PluginSlot {
    path: PathBuf,
    manifest: PluginManifest,
    loaded: OnceLock<std::result::Result<Arc<LoadedPlugin>, LoadError>>,
    hook: Arc<LoadHook>,
}

impl PluginSlot {
    fn loaded(path: PathBuf, p: Arc<LoadedPlugin>, hook: Arc<LoadHook>) -> Self {
        let slot = Self {
            path,
            manifest: p.manifest.clone(),
            loaded: OnceLock::new(),
            hook,
        };
        let _ = slot.loaded.set(Ok(p));
        slot
    }

    /// The plugin, loading it on first use. A plugin whose manifest file no longer says
    /// what the plugin says is refused.
    fn load(&self) -> std::result::Result<Arc<LoadedPlugin>, LoadError> {
        let mut fresh = false;
        let r = self
            .loaded
            .get_or_init(|| {
                fresh = true;
                let p = load_file(&self.path)?;
                let m = &p.manifest;
                let ours = &self.manifest;
                if m.name != ours.name
                    || m.schemes != ours.schemes
                    || m.pool_types != ours.pool_types
                    || m.forward_modes != ours.forward_modes
                {
                    return Err(LoadError::Manifest {
                        path: self.path.clone(),
                        reason: format!(
                            "its manifest file says plugin '{}' serving {:?}/{:?}/{:?}, the plugin says '{}' serving {:?}/{:?}/{:?}: reinstall it",
                            ours.name, ours.schemes, ours.pool_types, ours.forward_modes,
                            m.name, m.schemes, m.pool_types, m.forward_modes
                        ),
                    });
                }
                Ok(p)
            })
            .clone();
        if fresh && let Ok(p) = &r {
            let served = self.served(p);
            tracing::debug!(plugin = %served.name, version = %served.version, "plugin loaded on first use");
            if let Some(observe) = self.hook.observer.get() {
                observe(&served);
            }
        }
        r
    }

    /// What this slot serves, with the facts of the loaded library `p`.
    fn served(&self, p: &LoadedPlugin) -> ServedPlugin {
        let claims = self
            .hook
            .serves
            .get()
            .and_then(|all| all.iter().find(|(n, _)| *n == p.manifest.name))
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        ServedPlugin {
            name: p.manifest.name.clone(),
            version: p.manifest.version.clone(),
            api_version: p.manifest.api_version.clone(),
            file: self.path.clone(),
            real_file: p.real_path.clone(),
            schemes: claims.schemes,
            pool_types: claims.pool_types,
            forward_modes: claims.forward_modes,
        }
    }

    /// [`PluginSlot::load`] as a host error.
    fn get(&self) -> Result<Arc<LoadedPlugin>> {
        self.load().map_err(|e| {
            Error::driver(
                api::ErrorCode::InternalError,
                api::ErrorDomain::None,
                format!("plugin '{}' cannot be loaded: {e}", self.manifest.name),
            )
        })
    }
}

/// Reads the manifest file describing the plugin `path` (beside its real file): `None`
/// when there is none, it is unreadable, it names another file or size, or this host
/// would refuse its API version (the plugin is then loaded at once, which reports why).
fn manifest_file(path: &Path) -> Option<PluginManifest> {
    let real = path.canonicalize().ok()?;
    let mut mpath = real.clone().into_os_string();
    mpath.push(MANIFEST_SUFFIX);
    let text = std::fs::read_to_string(mpath).ok()?;
    let mut m = PluginManifest {
        name: String::new(),
        kind: String::new(),
        schemes: Vec::new(),
        pool_types: Vec::new(),
        forward_modes: Vec::new(),
        version: String::new(),
        api_version: String::new(),
        description: String::new(),
    };
    let (mut file, mut size) = (None, None);
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "name" => m.name = v.into(),
            "kind" => m.kind = v.into(),
            "version" => m.version = v.into(),
            "api_version" => m.api_version = v.into(),
            "description" => m.description = v.into(),
            "schemes" => m.schemes = list(v),
            "pool_types" => m.pool_types = list(v),
            "forward_modes" => m.forward_modes = list(v),
            "file" => file = Some(v.to_string()),
            "size" => size = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    let meta = std::fs::metadata(&real).ok()?;
    let fname = real.file_name()?.to_string_lossy().into_owned();
    if file.as_deref() != Some(fname.as_str()) || size != Some(meta.len()) {
        return None;
    }
    let v = semver::Version::parse(&m.api_version).ok()?;
    let host = host_api_version();
    if v.major != host.major || v.minor > host.minor || m.name.is_empty() {
        return None;
    }
    if m.schemes.is_empty() && m.pool_types.is_empty() && m.forward_modes.is_empty() {
        return None;
    }
    Some(m)
}

/// The text of a manifest file for `manifest`, describing the plugin file `file` of
/// `size` bytes (what [`Registry::scan`] reads instead of loading the plugin).
pub fn manifest_file_text(manifest: &PluginManifest, file: &str, size: u64) -> String {
    let one = |s: &str| s.replace(['\n', '\r'], " ");
    format!(
        "# rvirt plugin manifest: the host reads it instead of loading the plugin at start\nname={}\nkind={}\nversion={}\napi_version={}\ndescription={}\nschemes={}\npool_types={}\nforward_modes={}\nfile={}\nsize={size}\n",
        one(&manifest.name),
        one(&manifest.kind),
        one(&manifest.version),
        one(&manifest.api_version),
        one(&manifest.description),
        manifest.schemes.join(","),
        manifest.pool_types.join(","),
        manifest.forward_modes.join(","),
        one(file),
    )
}

/// Records `pool_types` of the plugin in `path` in `taken` (pool type → file serving it),
/// answering the ones an earlier plugin took: the first plugin in the search path wins.
fn claim_pool_types(
    taken: &mut Vec<(String, PathBuf)>,
    path: &Path,
    pool_types: &[String],
) -> Vec<PoolTypeRefusal> {
    let mut refused = Vec::new();
    for t in pool_types {
        match taken.iter().find(|(p, _)| p == t) {
            Some((_, first)) if first != path => refused.push(PoolTypeRefusal {
                pool_type: t.clone(),
                served_by: first.clone(),
            }),
            Some(_) => {}
            None => taken.push((t.clone(), path.to_path_buf())),
        }
    }
    refused
}

impl Registry {
    /// Scans `search_path` in order, loading every `*.so` file found (an entry that is a
    /// file is that one plugin).
    ///
    /// A plugin described by a manifest file (`FILE.manifest` beside its real file, as
    /// `rvirt plugin install` writes) is not loaded until first used: start-up reads small
    /// text files instead of dlopen-ing every plugin.
    pub fn scan(search_path: Vec<PathBuf>) -> Self {
        let mut records = Vec::new();
        let mut by_name: Vec<(PathBuf, Arc<PluginSlot>)> = Vec::new();
        let mut taken: Vec<(String, PathBuf)> = Vec::new();
        let mut by_pool_type: Vec<(String, Arc<PluginSlot>)> = Vec::new();
        let mut by_forward_mode: Vec<(String, Arc<PluginSlot>)> = Vec::new();
        let hook = Arc::new(LoadHook::default());
        for dir in &search_path {
            // an entry may also name one plugin file (a plugin host process serves one)
            let mut files: Vec<PathBuf> = if dir.is_file() {
                vec![dir.clone()]
            } else {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "so") && p.is_file())
                    .collect()
            };
            files.sort();
            for path in files {
                let mut refused_pool_types = Vec::new();
                let found = match manifest_file(&path) {
                    Some(manifest) => Ok(Arc::new(PluginSlot {
                        path: path.clone(),
                        manifest,
                        loaded: OnceLock::new(),
                        hook: Arc::clone(&hook),
                    })),
                    None => load_file(&path)
                        .map(|p| Arc::new(PluginSlot::loaded(path.clone(), p, Arc::clone(&hook)))),
                };
                let status = match found {
                    Ok(p) => match by_name
                        .iter()
                        .find(|(_, q)| q.manifest.name == p.manifest.name)
                    {
                        Some((first, _)) => PluginStatus::Shadowed {
                            manifest: p.manifest.clone(),
                            by: first.clone(),
                        },
                        None => {
                            by_name.push((path.clone(), p.clone()));
                            refused_pool_types =
                                claim_pool_types(&mut taken, &path, &p.manifest.pool_types);
                            for r in &refused_pool_types {
                                tracing::warn!("plugin '{}': {r}", p.manifest.name);
                            }
                            by_pool_type.extend(
                                p.manifest
                                    .pool_types
                                    .iter()
                                    .filter(|t| {
                                        !refused_pool_types.iter().any(|r| &r.pool_type == *t)
                                    })
                                    .map(|t| (t.clone(), p.clone())),
                            );
                            // Forward modes: the first plugin in the search path serves a
                            // mode, as for pool types.
                            for m in &p.manifest.forward_modes {
                                if by_forward_mode.iter().any(|(t, _)| t == m) {
                                    tracing::warn!(
                                        "plugin '{}': forward mode '{m}' refused: an earlier plugin serves it",
                                        p.manifest.name
                                    );
                                } else {
                                    by_forward_mode.push((m.clone(), p.clone()));
                                }
                            }
                            PluginStatus::Loaded(p.manifest.clone())
                        }
                    },
                    Err(e) => {
                        tracing::warn!("plugin refused: {e}");
                        PluginStatus::Refused(e)
                    }
                };
                records.push(PluginRecord {
                    path,
                    status,
                    refused_pool_types,
                });
            }
        }
        let by_name: Vec<Arc<PluginSlot>> = by_name.into_iter().map(|(_, p)| p).collect();
        // who serves what: the first plugin in the search path claiming a scheme, pool
        // type or forward mode
        let mut serves: Vec<(String, Claims)> = Vec::new();
        for (i, slot) in by_name.iter().enumerate() {
            let m = &slot.manifest;
            let schemes = m
                .schemes
                .iter()
                .filter(|s| !by_name[..i].iter().any(|q| q.manifest.schemes.contains(*s)))
                .cloned()
                .collect();
            let mine = |list: &[(String, Arc<PluginSlot>)]| -> Vec<String> {
                list.iter()
                    .filter(|(_, q)| Arc::ptr_eq(q, slot))
                    .map(|(t, _)| t.clone())
                    .collect()
            };
            serves.push((
                m.name.clone(),
                Claims {
                    schemes,
                    pool_types: mine(&by_pool_type),
                    forward_modes: mine(&by_forward_mode),
                },
            ));
        }
        let _ = hook.serves.set(serves);
        Self {
            search_path,
            records,
            verified: OnceLock::new(),
            by_name,
            by_pool_type,
            by_forward_mode,
            hook,
        }
    }

    /// Calls `observer` for every plugin loaded from now on (a plugin described by a
    /// manifest file loads on first use). Only the first observer set is kept; returns
    /// whether this one was.
    pub fn set_load_observer(&self, observer: LoadObserver) -> bool {
        self.hook.observer.set(observer).is_ok()
    }

    /// The plugins loaded so far, in search-path order, with what each serves.
    pub fn served(&self) -> Vec<ServedPlugin> {
        self.by_name
            .iter()
            .filter_map(|slot| match slot.loaded.get() {
                Some(Ok(p)) => Some(slot.served(p)),
                _ => None,
            })
            .collect()
    }

    /// Opens the network backend of the plugin serving forward mode `mode`, lending it
    /// the host's services.
    pub(crate) fn network_backend(
        &self,
        mode: &str,
        system_root: &Path,
    ) -> Result<crate::networks::plugin::PluginNetBackend> {
        let Some((_, slot)) = self.by_forward_mode.iter().find(|(t, _)| t == mode) else {
            return Err(crate::network_bind::no_backend(mode, &self.searched()));
        };
        let plugin = slot.get()?;
        let facet = plugin
            .network
            .ok_or_else(|| crate::network_bind::no_backend(mode, &self.searched()))?;
        let services = HostServices_TO::from_value(
            crate::storage::plugin::HostServicesImpl::new(&plugin.manifest.name, system_root, None),
            TD_Opaque,
        );
        let open = facet.open();
        let name = plugin.manifest.name.clone();
        let inner = call(&name, "virConnectOpen", || {
            open(RStr::from_str(mode), services)
        })?;
        Ok(crate::networks::plugin::PluginNetBackend::new(
            &plugin.manifest.name,
            &plugin.manifest.api_version,
            mode,
            inner,
        ))
    }

    /// The directories searched, as one colon-separated string for messages.
    fn searched(&self) -> String {
        let searched: Vec<String> = self
            .search_path
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        searched.join(":")
    }

    /// Opens the storage backend of the plugin serving `pool_type`, lending it `services`.
    pub(crate) fn storage_backend(
        &self,
        pool_type: &str,
        system_root: &Path,
        secrets: Option<crate::secrets_api::SecretsRoot>,
    ) -> Result<StorageBackend> {
        let Some((_, slot)) = self.by_pool_type.iter().find(|(t, _)| t == pool_type) else {
            return Err(Error::NoStorageBackend {
                pool_type: pool_type.to_string(),
                searched: self.searched(),
            });
        };
        let plugin = slot.get()?;
        let facet = plugin.storage.ok_or_else(|| Error::NoStorageBackend {
            pool_type: pool_type.to_string(),
            searched: self.searched(),
        })?;
        let services = HostServices_TO::from_value(
            crate::storage::plugin::HostServicesImpl::new(
                &plugin.manifest.name,
                system_root,
                secrets,
            ),
            TD_Opaque,
        );
        let open = facet.open();
        let name = plugin.manifest.name.clone();
        let inner = call(&name, "virConnectOpen", || {
            open(RStr::from_str(pool_type), services)
        })?;
        Ok(StorageBackend::new(
            &plugin.manifest.name,
            &plugin.manifest.api_version,
            pool_type,
            inner,
        ))
    }

    /// Every file found, with what happened to it. Plugins found through their manifest
    /// file are loaded first (once), so that one that fails to load shows as refused.
    pub fn records(&self) -> &[PluginRecord] {
        self.verified.get_or_init(|| {
            let mut records = self.records.clone();
            for r in &mut records {
                if !matches!(r.status, PluginStatus::Loaded(_)) {
                    continue;
                }
                if let Some(slot) = self.by_name.iter().find(|s| s.path == r.path) {
                    r.status = match slot.load() {
                        Ok(p) => PluginStatus::Loaded(p.manifest.clone()),
                        Err(e) => PluginStatus::Refused(e),
                    };
                }
            }
            records
        })
    }

    /// Every file found, as the scan saw it: plugins described by a manifest file are
    /// reported from it, without loading them.
    pub fn scanned(&self) -> &[PluginRecord] {
        &self.records
    }

    /// The directories searched.
    pub fn search_path(&self) -> &[PathBuf] {
        &self.search_path
    }

    /// Opens a connection through the plugin serving `scheme`.
    pub(crate) fn open(
        &self,
        scheme: &str,
        uri: &str,
        read_only: bool,
        ctx: ConnectionContext,
    ) -> Result<Arc<dyn Backend>> {
        let Some(plugin) = self
            .by_name
            .iter()
            .find(|p| p.manifest.schemes.iter().any(|s| s == scheme))
        else {
            return Err(Error::NoPlugin {
                scheme: scheme.to_string(),
                searched: self.searched(),
            });
        };
        PluginBackend::open(plugin.get()?, uri, read_only, ctx)
    }
}

fn load_file(path: &Path) -> std::result::Result<Arc<LoadedPlugin>, LoadError> {
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut cache = load_cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = cache.get(&key) {
        return r.clone();
    }
    let r = load_uncached(path).map(|mut p| {
        p.real_path = key.clone();
        Arc::new(p)
    });
    cache.insert(key, r.clone());
    r
}

/// The plugin API version a file declares through its plain C symbol.
fn declared_api_version(path: &Path) -> std::result::Result<semver::Version, LoadError> {
    // SAFETY: loading a shared object runs its initialisers. Plugin directories are
    // trusted configuration (like libvirt's driver module directory); nothing else is
    // loaded from them.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| LoadError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    // SAFETY: the symbol's type is fixed forever by the plugin API (see
    // `rvirt_plugin_api::API_VERSION_SYMBOL`): a C function with no arguments returning a
    // pointer to a static NUL-terminated string.
    let text = unsafe {
        let f = lib
            .get::<extern "C" fn() -> *const c_char>(api::API_VERSION_SYMBOL)
            .map_err(|_| LoadError::NotAPlugin {
                path: path.to_path_buf(),
            })?;
        let p = f();
        if p.is_null() {
            return Err(LoadError::NotAPlugin {
                path: path.to_path_buf(),
            });
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    };
    // The library stays loaded: abi_stable will dlopen it again and never unload it.
    std::mem::forget(lib);
    semver::Version::parse(&text).map_err(|_| LoadError::BadVersion {
        path: path.to_path_buf(),
        version: text,
    })
}

fn host_api_version() -> semver::Version {
    semver::Version::parse(api::API_VERSION).unwrap_or_else(|_| semver::Version::new(0, 0, 0))
}

/// The last `Error:` paragraphs of abi_stable's (very long) layout report.
fn summarize_abi_error(e: &LibraryError) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("Error:") {
            let mut s = (*l).to_string();
            for next in lines.iter().skip(i + 1).take(4) {
                if next.starts_with("Error:") {
                    break;
                }
                s.push(' ');
                s.push_str(next);
            }
            out.push(s);
        }
    }
    if out.is_empty() {
        lines.into_iter().take(3).collect::<Vec<_>>().join(" ")
    } else {
        out.dedup();
        out.into_iter().rev().take(3).collect::<Vec<_>>().join("; ")
    }
}

fn load_uncached(path: &Path) -> std::result::Result<LoadedPlugin, LoadError> {
    let declared = declared_api_version(path)?;
    let host = host_api_version();
    if declared.major != host.major || declared.minor > host.minor {
        return Err(LoadError::Incompatible {
            path: path.to_path_buf(),
            plugin_api: declared.to_string(),
            supported: format!("{}.0 to {}.{}", host.major, host.major, host.minor),
            host_major: host.major,
        });
    }
    let abi_err = |e: LibraryError| LoadError::Abi {
        path: path.to_path_buf(),
        summary: summarize_abi_error(&e),
    };
    let header = lib_header_from_path(path).map_err(abi_err)?;
    let module = if declared.minor == host.minor {
        header
            .init_root_module::<PluginMod_Ref>()
            .map_err(abi_err)?
    } else {
        // An older minor: check the plugin against that minor's frozen layout, then view
        // it through the current types.
        match declared.minor {
            0 => header
                .ensure_layout::<api::frozen::v1_0::PluginMod_Ref>()
                .map_err(abi_err)?,
            1 => header
                .ensure_layout::<api::frozen::v1_1::PluginMod_Ref>()
                .map_err(abi_err)?,
            2 => header
                .ensure_layout::<api::frozen::v1_2::PluginMod_Ref>()
                .map_err(abi_err)?,
            3 => header
                .ensure_layout::<api::frozen::v1_3::PluginMod_Ref>()
                .map_err(abi_err)?,
            4 => header
                .ensure_layout::<api::frozen::v1_4::PluginMod_Ref>()
                .map_err(abi_err)?,
            5 => header
                .ensure_layout::<api::frozen::v1_5::PluginMod_Ref>()
                .map_err(abi_err)?,
            6 => header
                .ensure_layout::<api::frozen::v1_6::PluginMod_Ref>()
                .map_err(abi_err)?,
            7 => header
                .ensure_layout::<api::frozen::v1_7::PluginMod_Ref>()
                .map_err(abi_err)?,
            8 => header
                .ensure_layout::<api::frozen::v1_8::PluginMod_Ref>()
                .map_err(abi_err)?,
            9 => header
                .ensure_layout::<api::frozen::v1_9::PluginMod_Ref>()
                .map_err(abi_err)?,
            m => {
                return Err(LoadError::Incompatible {
                    path: path.to_path_buf(),
                    plugin_api: declared.to_string(),
                    supported: format!(
                        "{}.0 to {}.{} (no frozen layout of {}.{m})",
                        host.major, host.major, host.minor, host.major
                    ),
                    host_major: host.major,
                });
            }
        }
        // SAFETY: the layout was just checked against the frozen copy of the plugin's
        // minor, and every later minor only appends fields to prefix types (the root
        // module, the facets and the trait objects' vtables): the current types read the
        // fields the plugin has and their accessors report the appended ones as absent
        // (the storage facet of a plugin older than 1.3 reads as `None`), which the
        // traits' default methods turn into the no-support error.
        unsafe { header.init_root_module_with_unchecked_layout::<PluginMod_Ref>() }
            .map_err(abi_err)?
    };
    let manifest_fn = module.manifest();
    let m = catch_unwind(|| manifest_fn()).map_err(|_| LoadError::Manifest {
        path: path.to_path_buf(),
        reason: "the manifest function panicked".into(),
    })?;
    let storage = module.storage().flatten();
    let pool_types = match storage {
        None => Vec::new(),
        Some(facet) => {
            let api = facet.api();
            if api.major != api::STORAGE_FACET_VERSION.major {
                return Err(LoadError::Manifest {
                    path: path.to_path_buf(),
                    reason: format!(
                        "its storage facet is version {}.{}; this host serves storage facet {}.x",
                        api.major,
                        api.minor,
                        api::STORAGE_FACET_VERSION.major
                    ),
                });
            }
            let list = facet.pool_types();
            let types = catch_unwind(|| list()).map_err(|_| LoadError::Manifest {
                path: path.to_path_buf(),
                reason: "the storage facet's pool type list panicked".into(),
            })?;
            let mut v: Vec<String> = Vec::new();
            for t in types.iter().map(|t| t.to_string()) {
                if !v.contains(&t) {
                    v.push(t);
                }
            }
            v
        }
    };
    let network = module.network().flatten();
    let forward_modes = match network {
        None => Vec::new(),
        Some(facet) => {
            let api = facet.api();
            if api.major != api::NETWORK_FACET_VERSION.major {
                return Err(LoadError::Manifest {
                    path: path.to_path_buf(),
                    reason: format!(
                        "its network facet is version {}.{}; this host serves network facet {}.x",
                        api.major,
                        api.minor,
                        api::NETWORK_FACET_VERSION.major
                    ),
                });
            }
            let list = facet.forward_modes();
            let modes = catch_unwind(|| list()).map_err(|_| LoadError::Manifest {
                path: path.to_path_buf(),
                reason: "the network facet's forward mode list panicked".into(),
            })?;
            let mut v: Vec<String> = Vec::new();
            for t in modes.iter().map(|t| t.to_string()) {
                if !v.contains(&t) {
                    v.push(t);
                }
            }
            v
        }
    };
    let manifest = PluginManifest {
        name: m.name.to_string(),
        kind: m.kind.to_string(),
        schemes: m.schemes.iter().map(|s| s.to_string()).collect(),
        pool_types,
        forward_modes,
        version: m.version.to_string(),
        api_version: m.api_version.to_string(),
        description: m.description.to_string(),
    };
    if manifest.name.is_empty()
        || (manifest.schemes.is_empty()
            && manifest.pool_types.is_empty()
            && manifest.forward_modes.is_empty())
        || manifest.pool_types.iter().any(String::is_empty)
        || manifest.forward_modes.iter().any(String::is_empty)
    {
        return Err(LoadError::Manifest {
            path: path.to_path_buf(),
            reason: "it names no plugin, or serves no URI scheme, storage pool type or network forward mode"
                .into(),
        });
    }
    tracing::debug!(plugin = %manifest.name, path = %path.display(), api = %declared, "plugin loaded");
    Ok(LoadedPlugin {
        manifest,
        real_path: path.to_path_buf(),
        module,
        storage,
        network,
    })
}

/// Delivers a plugin's events to the connection's subscribers.
#[derive(Clone, Default)]
struct Subscribers {
    next: Arc<AtomicU64>,
    list: Arc<Mutex<Vec<(u64, EventCallback)>>>,
}

struct HostSink(Subscribers);

impl EventSink for HostSink {
    fn domain_lifecycle(&self, dom: api::DomainRef, event: i32, detail: i32) {
        self.deliver(DomainEvent::lifecycle(domain_id(&dom), event, detail));
    }

    fn domain_device_removed(&self, dom: api::DomainRef, alias: RStr<'_>) {
        self.deliver(DomainEvent::device_removed(
            domain_id(&dom),
            alias.to_string(),
        ));
    }
}

impl HostSink {
    fn deliver(&self, ev: DomainEvent) {
        let callbacks: Vec<EventCallback> = {
            let list = self.0.list.lock().unwrap_or_else(|e| e.into_inner());
            list.iter().map(|(_, c)| c.clone()).collect()
        };
        for cb in callbacks {
            // A panicking subscriber must not unwind into the plugin's extern "C" frame.
            if catch_unwind(AssertUnwindSafe(|| cb(&ev))).is_err() {
                tracing::error!("a domain event subscriber panicked");
            }
        }
    }
}

fn domain_id(d: &api::DomainRef) -> DomainId {
    DomainId {
        name: d.name.to_string(),
        uuid: uuid::Uuid::from_bytes(d.uuid.0),
        id: d.id,
    }
}

/// Typed parameters from the ABI's form to the host's (the wire's).
fn typed_params(v: RVec<api::TypedParam>) -> Vec<TypedParam> {
    v.into_iter()
        .map(|p| TypedParam {
            field: p.field.into(),
            value: match p.value {
                api::TypedValue::Int(v) => TypedParamValue::Int(v),
                api::TypedValue::UInt(v) => TypedParamValue::UInt(v),
                api::TypedValue::LLong(v) => TypedParamValue::LLong(v),
                api::TypedValue::ULLong(v) => TypedParamValue::ULLong(v),
                api::TypedValue::Double(v) => TypedParamValue::Double(v),
                api::TypedValue::Boolean(v) => TypedParamValue::Boolean(i32::from(v)),
                api::TypedValue::String(v) => TypedParamValue::String(v.into()),
            },
        })
        .collect()
}

/// Typed parameters from the host's form to the ABI's.
fn abi_params(v: &[TypedParam]) -> RVec<api::TypedParam> {
    v.iter()
        .map(|p| {
            api::TypedParam::new(
                p.field.as_str(),
                match &p.value {
                    TypedParamValue::Int(v) => api::TypedValue::Int(*v),
                    TypedParamValue::UInt(v) => api::TypedValue::UInt(*v),
                    TypedParamValue::LLong(v) => api::TypedValue::LLong(*v),
                    TypedParamValue::ULLong(v) => api::TypedValue::ULLong(*v),
                    TypedParamValue::Double(v) => api::TypedValue::Double(*v),
                    TypedParamValue::Boolean(v) => api::TypedValue::Boolean(*v != 0),
                    TypedParamValue::String(v) => api::TypedValue::String(v.as_str().into()),
                },
            )
        })
        .collect()
}

fn abi_uuid(u: uuid::Uuid) -> api::Uuid {
    api::Uuid(*u.as_bytes())
}

/// A connection served by a loaded plugin.
struct PluginBackend {
    plugin: Arc<LoadedPlugin>,
    conn: DriverConnectionBox,
    subscribers: Subscribers,
    /// The storage the connection owns (plugin API 1.10), `None` when server-owned.
    owned_storage: Option<Arc<dyn crate::StorageService>>,
    /// The networks the connection owns (plugin API 1.10), `None` when server-owned.
    owned_networks: Option<Arc<dyn crate::network_api::NetworkOps>>,
    /// The connection's extension object (plugin API 1.10), `None` when it has none.
    ext: Option<api::ConnExtensionBox>,
}

impl PluginBackend {
    /// Opens through `open_with_host` (plugin API 1.4 and later), lending the plugin the
    /// connection's host services; through `open` for an older plugin.
    fn open(
        plugin: Arc<LoadedPlugin>,
        uri: &str,
        read_only: bool,
        ctx: ConnectionContext,
    ) -> Result<Arc<dyn Backend>> {
        let subscribers = Subscribers::default();
        let sink = EventSink_TO::from_value(HostSink(subscribers.clone()), TD_Opaque);
        let name = plugin.manifest.name.clone();
        let conn = match plugin.module.open_with_host().flatten() {
            Some(open) => {
                let services = HostServices_TO::from_value(
                    host_services::HypervisorServices::new(&name, ctx),
                    TD_Opaque,
                );
                call(&name, "virConnectOpen", || {
                    open(RStr::from_str(uri), read_only, sink, services)
                })?
            }
            None => {
                let open = plugin.module.open();
                call(&name, "virConnectOpen", || {
                    open(RStr::from_str(uri), read_only, sink)
                })?
            }
        };
        let ext = owned::extension(&plugin, &conn);
        let (owned_storage, owned_networks) = owned::discover(&plugin, ext.as_ref());
        Ok(Arc::new(Self {
            plugin,
            conn,
            subscribers,
            owned_storage,
            owned_networks,
            ext,
        }))
    }

    fn call<T>(&self, operation: &'static str, f: impl FnOnce() -> PResult<T>) -> Result<T> {
        call(&self.plugin.manifest.name, operation, f).map_err(|e| match e {
            Error::Driver {
                code,
                domain,
                message,
            } if code == api::ErrorCode::NoSupport as i32
                && !message.contains(&self.plugin.manifest.name) =>
            {
                Error::Driver {
                    code,
                    domain,
                    message: format!(
                        "{message} (driver '{}', plugin API {})",
                        self.plugin.manifest.name, self.plugin.manifest.api_version
                    ),
                }
            }
            e => e,
        })
    }
}

/// Calls into a plugin, catching a panic that reaches the host side.
pub(crate) fn call<T>(
    plugin: &str,
    operation: &'static str,
    f: impl FnOnce() -> PResult<T>,
) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(RResult::ROk(v)) => Ok(v),
        Ok(RResult::RErr(e)) => Err(from_plugin_error(e)),
        Err(payload) => Err(Error::PluginPanic {
            plugin: plugin.to_string(),
            operation,
            message: payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default(),
        }),
    }
}

fn from_plugin_error(e: PluginError) -> Error {
    Error::Driver {
        code: e.code,
        domain: e.domain,
        message: e.message.into_string(),
    }
}

impl Backend for PluginBackend {
    fn driver_name(&self) -> &str {
        &self.plugin.manifest.name
    }
    fn owned_storage(&self) -> Option<Arc<dyn crate::StorageService>> {
        self.owned_storage.clone()
    }
    fn owned_networks(&self) -> Option<Arc<dyn crate::network_api::NetworkOps>> {
        self.owned_networks.clone()
    }
    fn get_type(&self) -> Result<String> {
        self.call("virConnectGetType", || self.conn.get_type())
            .map(Into::into)
    }
    fn get_version(&self) -> Result<u64> {
        self.call("virConnectGetVersion", || self.conn.get_version())
    }
    fn get_uri(&self) -> Result<String> {
        self.call("virConnectGetURI", || self.conn.get_uri())
            .map(Into::into)
    }
    fn get_hostname(&self) -> Result<String> {
        self.call("virConnectGetHostname", || self.conn.get_hostname())
            .map(Into::into)
    }
    fn get_capabilities(&self) -> Result<String> {
        self.call("virConnectGetCapabilities", || self.conn.get_capabilities())
            .map(Into::into)
    }
    fn node_get_info(&self) -> Result<NodeInfo> {
        let n = self.call("virNodeGetInfo", || self.conn.node_get_info())?;
        Ok(NodeInfo {
            model: n.model.into(),
            memory_kib: n.memory_kib,
            cpus: n.cpus,
            mhz: n.mhz,
            nodes: n.nodes,
            sockets: n.sockets,
            cores: n.cores,
            threads: n.threads,
        })
    }
    fn list_all_domains(&self, flags: u32) -> Result<Vec<DomainId>> {
        let v = self.call("virConnectListAllDomains", || {
            self.conn.list_all_domains(flags)
        })?;
        Ok(v.iter().map(domain_id).collect())
    }
    fn lookup_by_name(&self, name: &str) -> Result<DomainId> {
        self.call("virDomainLookupByName", || {
            self.conn.lookup_by_name(RStr::from_str(name))
        })
        .map(|d| domain_id(&d))
    }
    fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<DomainId> {
        self.call("virDomainLookupByUUID", || {
            self.conn.lookup_by_uuid(abi_uuid(uuid))
        })
        .map(|d| domain_id(&d))
    }
    fn lookup_by_id(&self, id: i32) -> Result<DomainId> {
        self.call("virDomainLookupByID", || self.conn.lookup_by_id(id))
            .map(|d| domain_id(&d))
    }
    fn define_xml(&self, xml: &str, flags: u32) -> Result<DomainId> {
        self.call("virDomainDefineXMLFlags", || {
            self.conn.define_xml(RStr::from_str(xml), flags)
        })
        .map(|d| domain_id(&d))
    }
    fn undefine(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.call("virDomainUndefineFlags", || {
            self.conn.undefine(abi_uuid(uuid), flags)
        })
    }
    fn create(&self, uuid: uuid::Uuid, flags: u32) -> Result<DomainId> {
        self.call("virDomainCreateWithFlags", || {
            self.conn.create(abi_uuid(uuid), flags)
        })
        .map(|d| domain_id(&d))
    }
    fn create_xml(&self, xml: &str, flags: u32) -> Result<DomainId> {
        self.call("virDomainCreateXML", || {
            self.conn.create_xml(RStr::from_str(xml), flags)
        })
        .map(|d| domain_id(&d))
    }
    fn destroy(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.call("virDomainDestroyFlags", || {
            self.conn.destroy(abi_uuid(uuid), flags)
        })
    }
    fn shutdown(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.call("virDomainShutdownFlags", || {
            self.conn.shutdown(abi_uuid(uuid), flags)
        })
    }
    fn reboot(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.call("virDomainReboot", || {
            self.conn.reboot(abi_uuid(uuid), flags)
        })
    }
    fn suspend(&self, uuid: uuid::Uuid) -> Result<()> {
        self.call("virDomainSuspend", || self.conn.suspend(abi_uuid(uuid)))
    }
    fn resume(&self, uuid: uuid::Uuid) -> Result<()> {
        self.call("virDomainResume", || self.conn.resume(abi_uuid(uuid)))
    }
    fn get_info(&self, uuid: uuid::Uuid) -> Result<DomainInfo> {
        let i = self.call("virDomainGetInfo", || self.conn.get_info(abi_uuid(uuid)))?;
        Ok(DomainInfo {
            state: DomainState::from_i32(i.state),
            max_mem_kib: i.max_mem_kib,
            memory_kib: i.memory_kib,
            nr_virt_cpu: i.nr_virt_cpu,
            cpu_time_ns: i.cpu_time_ns,
        })
    }
    fn get_state(&self, uuid: uuid::Uuid) -> Result<(i32, i32)> {
        let s = self.call("virDomainGetState", || self.conn.get_state(abi_uuid(uuid)))?;
        Ok((s.state, s.reason))
    }
    fn get_xml_desc(&self, uuid: uuid::Uuid, flags: u32) -> Result<String> {
        self.call("virDomainGetXMLDesc", || {
            self.conn.get_xml_desc(abi_uuid(uuid), flags)
        })
        .map(Into::into)
    }
    fn is_persistent(&self, uuid: uuid::Uuid) -> Result<bool> {
        self.call("virDomainIsPersistent", || {
            self.conn.is_persistent(abi_uuid(uuid))
        })
    }
    fn get_autostart(&self, uuid: uuid::Uuid) -> Result<bool> {
        self.call("virDomainGetAutostart", || {
            self.conn.get_autostart(abi_uuid(uuid))
        })
    }
    fn set_autostart(&self, uuid: uuid::Uuid, autostart: bool) -> Result<()> {
        self.call("virDomainSetAutostart", || {
            self.conn.set_autostart(abi_uuid(uuid), autostart)
        })
    }
    fn get_vcpus_flags(&self, uuid: uuid::Uuid, flags: u32) -> Result<i32> {
        self.call("virDomainGetVcpusFlags", || {
            self.conn.get_vcpus_flags(abi_uuid(uuid), flags)
        })
    }
    fn get_os_type(&self, uuid: uuid::Uuid) -> Result<String> {
        self.call("virDomainGetOSType", || {
            self.conn.get_os_type(abi_uuid(uuid))
        })
        .map(Into::into)
    }
    fn has_managed_save_image(&self, uuid: uuid::Uuid, flags: u32) -> Result<bool> {
        self.call("virDomainHasManagedSaveImage", || {
            self.conn.has_managed_save_image(abi_uuid(uuid), flags)
        })
    }
    fn domain_xml_to_native(&self, format: &str, xml: &str, flags: u32) -> Result<String> {
        self.call("virConnectDomainXMLToNative", || {
            self.conn
                .domain_xml_to_native(RStr::from_str(format), RStr::from_str(xml), flags)
        })
        .map(Into::into)
    }
    fn domain_xml_from_native(&self, format: &str, config: &str, flags: u32) -> Result<String> {
        self.call("virConnectDomainXMLFromNative", || {
            self.conn
                .domain_xml_from_native(RStr::from_str(format), RStr::from_str(config), flags)
        })
        .map(Into::into)
    }
    fn set_memory_flags(&self, uuid: uuid::Uuid, kib: u64, flags: u32) -> Result<()> {
        self.call("virDomainSetMemoryFlags", || {
            self.conn.set_memory_flags(abi_uuid(uuid), kib, flags)
        })
    }
    fn set_memory_stats_period(&self, uuid: uuid::Uuid, period: i32, flags: u32) -> Result<()> {
        const API: &str = "virDomainSetMemoryStatsPeriod";
        let Some(ext) = &self.ext else {
            // a plugin without extensions (older than 1.10, or none offered)
            return self.call(API, || {
                rvirt_plugin_api::abi_stable::std_types::RResult::RErr(
                    api::PluginError::no_support(API),
                )
            });
        };
        self.call(API, || {
            ext.set_memory_stats_period(abi_uuid(uuid), period, flags)
        })
    }
    fn set_vcpus_flags(&self, uuid: uuid::Uuid, nvcpus: u32, flags: u32) -> Result<()> {
        self.call("virDomainSetVcpusFlags", || {
            self.conn.set_vcpus_flags(abi_uuid(uuid), nvcpus, flags)
        })
    }
    fn attach_device(&self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<()> {
        self.call("virDomainAttachDeviceFlags", || {
            self.conn
                .attach_device_flags(abi_uuid(uuid), RStr::from_str(xml), flags)
        })
    }
    fn detach_device(&self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<()> {
        self.call("virDomainDetachDeviceFlags", || {
            self.conn
                .detach_device_flags(abi_uuid(uuid), RStr::from_str(xml), flags)
        })
    }
    fn snapshot_create_xml(&self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<String> {
        self.call("virDomainSnapshotCreateXML", || {
            self.conn
                .snapshot_create_xml(abi_uuid(uuid), RStr::from_str(xml), flags)
        })
        .map(Into::into)
    }
    fn snapshot_list(&self, uuid: uuid::Uuid, flags: u32) -> Result<Vec<String>> {
        self.call("virDomainListAllSnapshots", || {
            self.conn.snapshot_list(abi_uuid(uuid), flags)
        })
        .map(|v| v.into_iter().map(Into::into).collect())
    }
    fn snapshot_list_children(
        &self,
        uuid: uuid::Uuid,
        name: &str,
        flags: u32,
    ) -> Result<Vec<String>> {
        self.call("virDomainSnapshotListAllChildren", || {
            self.conn
                .snapshot_list_children(abi_uuid(uuid), RStr::from_str(name), flags)
        })
        .map(|v| v.into_iter().map(Into::into).collect())
    }
    fn snapshot_get_xml_desc(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<String> {
        self.call("virDomainSnapshotGetXMLDesc", || {
            self.conn
                .snapshot_get_xml_desc(abi_uuid(uuid), RStr::from_str(name), flags)
        })
        .map(Into::into)
    }
    fn snapshot_current(&self, uuid: uuid::Uuid, flags: u32) -> Result<String> {
        self.call("virDomainSnapshotCurrent", || {
            self.conn.snapshot_current(abi_uuid(uuid), flags)
        })
        .map(Into::into)
    }
    fn snapshot_get_parent(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<String> {
        self.call("virDomainSnapshotGetParent", || {
            self.conn
                .snapshot_get_parent(abi_uuid(uuid), RStr::from_str(name), flags)
        })
        .map(Into::into)
    }
    fn snapshot_revert(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<()> {
        self.call("virDomainRevertToSnapshot", || {
            self.conn
                .snapshot_revert(abi_uuid(uuid), RStr::from_str(name), flags)
        })
    }
    fn snapshot_delete(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<()> {
        self.call("virDomainSnapshotDelete", || {
            self.conn
                .snapshot_delete(abi_uuid(uuid), RStr::from_str(name), flags)
        })
    }
    fn save(&self, uuid: uuid::Uuid, path: &str, dxml: Option<&str>, flags: u32) -> Result<()> {
        self.call("virDomainSaveFlags", || {
            self.conn.save_flags(
                abi_uuid(uuid),
                RStr::from_str(path),
                RStr::from_str(dxml.unwrap_or("")),
                flags,
            )
        })
    }
    fn restore(&self, path: &str, dxml: Option<&str>, flags: u32) -> Result<()> {
        self.call("virDomainRestoreFlags", || {
            self.conn.restore_flags(
                RStr::from_str(path),
                RStr::from_str(dxml.unwrap_or("")),
                flags,
            )
        })
        .map(|_| ())
    }
    fn save_image_get_xml_desc(&self, path: &str, flags: u32) -> Result<String> {
        self.call("virDomainSaveImageGetXMLDesc", || {
            self.conn
                .save_image_get_xml_desc(RStr::from_str(path), flags)
        })
        .map(Into::into)
    }
    fn save_image_define_xml(&self, path: &str, dxml: &str, flags: u32) -> Result<()> {
        self.call("virDomainSaveImageDefineXML", || {
            self.conn
                .save_image_define_xml(RStr::from_str(path), RStr::from_str(dxml), flags)
        })
    }
    fn managed_save(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.call("virDomainManagedSave", || {
            self.conn.managed_save(abi_uuid(uuid), flags)
        })
    }
    fn managed_save_remove(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.call("virDomainManagedSaveRemove", || {
            self.conn.managed_save_remove(abi_uuid(uuid), flags)
        })
    }
    fn domain_stats(&self, uuid: uuid::Uuid, stats: u32, flags: u32) -> Result<Vec<TypedParam>> {
        self.call("virConnectGetAllDomainStats", || {
            self.conn.domain_stats(abi_uuid(uuid), stats, flags)
        })
        .map(typed_params)
    }
    fn block_stats(&self, uuid: uuid::Uuid, disk: &str, flags: u32) -> Result<Vec<TypedParam>> {
        self.call("virDomainBlockStatsFlags", || {
            self.conn
                .block_stats_flags(abi_uuid(uuid), RStr::from_str(disk), flags)
        })
        .map(typed_params)
    }
    fn interface_stats(&self, uuid: uuid::Uuid, device: &str) -> Result<Vec<TypedParam>> {
        self.call("virDomainInterfaceStats", || {
            self.conn
                .interface_stats(abi_uuid(uuid), RStr::from_str(device))
        })
        .map(typed_params)
    }
    fn memory_stats(&self, uuid: uuid::Uuid, flags: u32) -> Result<Vec<TypedParam>> {
        self.call("virDomainMemoryStats", || {
            self.conn.memory_stats(abi_uuid(uuid), flags)
        })
        .map(typed_params)
    }
    fn job_stats(&self, uuid: uuid::Uuid, flags: u32) -> Result<(i32, Vec<TypedParam>)> {
        self.call("virDomainGetJobStats", || {
            self.conn.get_job_stats(abi_uuid(uuid), flags)
        })
        .map(|j| (j.kind, typed_params(j.params)))
    }
    fn cpu_stats(
        &self,
        uuid: uuid::Uuid,
        start_cpu: i32,
        ncpus: u32,
        flags: u32,
    ) -> Result<Vec<Vec<TypedParam>>> {
        self.call("virDomainGetCPUStats", || {
            self.conn
                .get_cpu_stats(abi_uuid(uuid), start_cpu, ncpus, flags)
        })
        .map(|v| v.into_iter().map(typed_params).collect())
    }
    fn migrate_begin(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        flags: u32,
    ) -> Result<(String, Vec<u8>)> {
        self.call("virDomainMigrateBegin3Params", || {
            self.conn
                .migrate_begin(abi_uuid(uuid), abi_params(params), flags)
        })
        .map(|s| (s.text.into(), s.cookie.into()))
    }
    fn migrate_prepare(
        &self,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
    ) -> Result<(Option<String>, Vec<u8>)> {
        self.call("virDomainMigratePrepare3Params", || {
            self.conn
                .migrate_prepare(abi_params(params), RVec::from(cookie.to_vec()), flags)
        })
        .map(|s| {
            let uri = String::from(s.text);
            ((!uri.is_empty()).then_some(uri), s.cookie.into())
        })
    }
    fn migrate_perform(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
    ) -> Result<Vec<u8>> {
        self.call("virDomainMigratePerform3Params", || {
            self.conn.migrate_perform(
                abi_uuid(uuid),
                abi_params(params),
                RVec::from(cookie.to_vec()),
                flags,
            )
        })
        .map(|s| s.cookie.into())
    }
    fn migrate_finish(
        &self,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
        cancelled: bool,
    ) -> Result<(DomainId, Vec<u8>)> {
        self.call("virDomainMigrateFinish3Params", || {
            self.conn.migrate_finish(
                abi_params(params),
                RVec::from(cookie.to_vec()),
                flags,
                cancelled,
            )
        })
        .map(|f| (domain_id(&f.domain), f.cookie.into()))
    }
    fn migrate_confirm(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
        cancelled: bool,
    ) -> Result<()> {
        self.call("virDomainMigrateConfirm3Params", || {
            self.conn.migrate_confirm(
                abi_uuid(uuid),
                abi_params(params),
                RVec::from(cookie.to_vec()),
                flags,
                cancelled,
            )
        })
    }
    fn abort_job(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.call("virDomainAbortJob", || {
            self.conn.abort_job(abi_uuid(uuid), flags)
        })
    }
    fn screenshot(&self, uuid: uuid::Uuid, screen: u32, flags: u32) -> Result<(String, Vec<u8>)> {
        self.call("virDomainScreenshot", || {
            self.conn.screenshot(abi_uuid(uuid), screen, flags)
        })
        .map(|s| (s.mime.into(), s.data.into()))
    }
    fn subscribe_events(&self, callback: EventCallback) -> Result<u64> {
        let id = self.subscribers.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.subscribers
            .list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, callback));
        Ok(id)
    }
    fn unsubscribe_events(&self, id: u64) -> Result<()> {
        let mut list = self
            .subscribers
            .list
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let before = list.len();
        list.retain(|(i, _)| *i != id);
        if list.len() == before {
            return Err(Error::driver(
                api::ErrorCode::InvalidArg,
                api::ErrorDomain::None,
                format!("no event callback with id {id}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_plugin_to_claim_a_pool_type_serves_it() {
        let mut taken = Vec::new();
        let a = Path::new("/p/liba.so");
        let b = Path::new("/q/libb.so");
        let types = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(claim_pool_types(&mut taken, a, &types(&["dir", "fs"])).is_empty());
        let refused = claim_pool_types(&mut taken, b, &types(&["fs", "logical"]));
        assert_eq!(
            refused,
            vec![PoolTypeRefusal {
                pool_type: "fs".into(),
                served_by: a.to_path_buf(),
            }]
        );
        assert_eq!(
            refused[0].to_string(),
            "pool type 'fs' refused: '/p/liba.so' earlier in the search path serves it"
        );
        assert_eq!(
            taken,
            vec![
                ("dir".to_string(), a.to_path_buf()),
                ("fs".to_string(), a.to_path_buf()),
                ("logical".to_string(), b.to_path_buf()),
            ]
        );
    }
}

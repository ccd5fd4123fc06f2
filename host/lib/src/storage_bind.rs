//! Which storage root serves a connection, and which backend serves a pool type.
//!
//! As libvirt binds its storage driver to `qemu:///system` (or `qemu:///session`), a local
//! connection is bound to the pools of its root: `qemu:///system` keeps them under the
//! system paths, `qemu:///session` under the user's XDG directories, `qemu:///embed?root=DIR`
//! under `DIR`, and `test:///default` in memory. One [`Pools`] is created per root per
//! process, the first time a connection of that root needs it.

use crate::storage::{BackendResolver, PoolBackend, Pools, StorageDirs};
use crate::uri::ConnectUri;
use crate::{Error, Result};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a connection's pools live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StorageRoot {
    /// In memory, shared by every connection of the process naming this key.
    Memory(String),
    /// On disk.
    Dirs(StorageDirsKey),
}

/// [`StorageDirs`] as a map key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorageDirsKey {
    /// `StorageDirs::config`.
    pub config: PathBuf,
    /// `StorageDirs::state`.
    pub state: PathBuf,
}

impl StorageRoot {
    /// The directories, or `None` for an in-memory root.
    pub fn dirs(&self) -> Option<StorageDirs> {
        match self {
            StorageRoot::Memory(_) => None,
            StorageRoot::Dirs(k) => Some(StorageDirs {
                config: k.config.clone(),
                state: k.state.clone(),
            }),
        }
    }
}

/// The storage root of a local connection URI: `system_root` is where system paths live
/// (the runtime's: `RVIRT_SYSTEM_ROOT` or `/`), `env` gives the environment.
/// `Ok(None)`: the URI has no storage (the driver serves domains only).
pub fn root_for(
    uri: &ConnectUri,
    system_root: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<StorageRoot>> {
    use crate::roots::{LocalRoot, local_root};
    let storage = ErrorDomain::Storage as i32;
    Ok(
        match local_root(uri, system_root, env, "storage", storage)? {
            None => None,
            Some(LocalRoot::Memory(key)) => Some(StorageRoot::Memory(key.into())),
            Some(LocalRoot::Dirs { config, run }) => {
                let run = run.map_err(|why| no_storage(uri, &why))?;
                Some(StorageRoot::Dirs(StorageDirsKey {
                    config: config.join("storage"),
                    state: run.join("storage"),
                }))
            }
        },
    )
}

fn no_storage(uri: &ConnectUri, why: &str) -> Error {
    Error::driver(
        ErrorCode::NoSupport,
        ErrorDomain::Storage,
        format!("no storage for '{}': {why}", uri.original),
    )
}

/// The error for a pool type nobody serves.
pub fn no_backend(pool_type: &str) -> Error {
    Error::driver(
        ErrorCode::NoSupport,
        ErrorDomain::Storage,
        format!(
            "no storage backend serves pool type '{pool_type}' (no in-process backend and no installed storage plugin); run `rvirt plugin list` to see the plugins found and why any was refused"
        ),
    )
}

/// The storage plugins of a runtime's registry, each pool type's backend opened once.
pub struct PluginBackends {
    registry: Arc<crate::plugin::Registry>,
    system_root: PathBuf,
    /// The secrets the backends may read (those of the root whose pools they serve).
    secrets: Option<crate::secrets_api::SecretsRoot>,
    opened: Mutex<HashMap<String, Arc<dyn PoolBackend>>>,
}

impl PluginBackends {
    pub(crate) fn new(registry: Arc<crate::plugin::Registry>, system_root: PathBuf) -> Self {
        PluginBackends {
            registry,
            system_root,
            secrets: None,
            opened: Mutex::default(),
        }
    }

    /// The same plugins, lending their backends the secrets of `secrets`.
    pub(crate) fn with_secrets(
        registry: Arc<crate::plugin::Registry>,
        system_root: PathBuf,
        secrets: Option<crate::secrets_api::SecretsRoot>,
    ) -> Self {
        PluginBackends {
            secrets,
            ..PluginBackends::new(registry, system_root)
        }
    }
}

impl BackendResolver for PluginBackends {
    fn backend(&self, pool_type: &str) -> Result<Arc<dyn PoolBackend>> {
        if let Some(b) = lock(&self.opened).get(pool_type) {
            return Ok(Arc::clone(b));
        }
        let b: Arc<dyn PoolBackend> = Arc::new(self.registry.storage_backend(
            pool_type,
            &self.system_root,
            self.secrets.clone(),
        )?);
        Ok(Arc::clone(
            lock(&self.opened).entry(pool_type.to_string()).or_insert(b),
        ))
    }
}

/// A runtime's pool backends: the ones an embedder added in-process first, then the
/// storage plugins.
pub struct Backends {
    local: RwLock<HashMap<String, Arc<dyn PoolBackend>>>,
    plugins: Option<Arc<dyn BackendResolver>>,
}

impl Backends {
    /// In-process backends only, with `plugins` consulted for the other types.
    pub fn new(plugins: Option<Arc<dyn BackendResolver>>) -> Self {
        Backends {
            local: RwLock::default(),
            plugins,
        }
    }

    /// The same in-process backends, with `plugins` behind them.
    pub fn with_plugins(&self, plugins: Arc<dyn BackendResolver>) -> Self {
        let local = self.local.read().unwrap_or_else(|e| e.into_inner()).clone();
        Backends {
            local: RwLock::new(local),
            plugins: Some(plugins),
        }
    }

    /// The in-process backend of `pool_type`, if one was added.
    pub fn local_backend(&self, pool_type: &str) -> Option<Arc<dyn PoolBackend>> {
        self.local
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(pool_type)
            .cloned()
    }

    /// Serves `pool_type` with `backend` in this process (replacing any earlier one).
    pub fn add(&self, pool_type: &str, backend: Arc<dyn PoolBackend>) {
        self.local
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pool_type.to_string(), backend);
    }
}

impl BackendResolver for Backends {
    fn backend(&self, pool_type: &str) -> Result<Arc<dyn PoolBackend>> {
        if let Some(b) = self
            .local
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(pool_type)
        {
            return Ok(Arc::clone(b));
        }
        match &self.plugins {
            Some(p) => p.backend(pool_type),
            None => Err(no_backend(pool_type)),
        }
    }
}

/// The backends of one storage root: the runtime's in-process backends, then plugins
/// opened for that root (lent its secrets).
pub struct RootBackends {
    base: Arc<Backends>,
    plugins: PluginBackends,
}

impl RootBackends {
    pub(crate) fn new(base: Arc<Backends>, plugins: PluginBackends) -> Self {
        RootBackends { base, plugins }
    }
}

impl BackendResolver for RootBackends {
    fn backend(&self, pool_type: &str) -> Result<Arc<dyn PoolBackend>> {
        match self.base.local_backend(pool_type) {
            Some(b) => Ok(b),
            None => self.plugins.backend(pool_type),
        }
    }
}

type Cell = Arc<Mutex<Option<Arc<Pools>>>>;

/// The process-wide table of storage roots: one [`Pools`] per root.
fn roots() -> &'static Mutex<HashMap<StorageRoot, Cell>> {
    static ROOTS: OnceLock<Mutex<HashMap<StorageRoot, Cell>>> = OnceLock::new();
    ROOTS.get_or_init(Mutex::default)
}

/// The pools of `root`, opened (definitions loaded, active pools revived, autostart
/// run) the first time; later calls, from any runtime of the process, share them. A
/// failed open is not remembered: the next call tries again.
pub fn pools_for(root: &StorageRoot, backends: Arc<dyn BackendResolver>) -> Result<Arc<Pools>> {
    let cell = Arc::clone(lock(roots()).entry(root.clone()).or_default());
    // held while opening: concurrent first users of this root wait, other roots do not
    let mut slot = lock(&cell);
    if let Some(p) = &*slot {
        return Ok(Arc::clone(p));
    }
    let pools = Arc::new(Pools::open(root.dirs(), backends)?);
    *slot = Some(Arc::clone(&pools));
    Ok(pools)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn root(uri: &str, vars: &[(&str, &str)]) -> Result<Option<StorageRoot>> {
        root_for(
            &ConnectUri::parse(uri).unwrap(),
            Path::new("/sys-root"),
            env(vars),
        )
    }

    fn dirs(c: &str, s: &str) -> Option<StorageRoot> {
        Some(StorageRoot::Dirs(StorageDirsKey {
            config: c.into(),
            state: s.into(),
        }))
    }

    #[test]
    fn uris_bind_to_roots() {
        assert_eq!(
            root("qemu:///embed?root=/tmp/e", &[]).unwrap(),
            dirs("/tmp/e/etc/storage", "/tmp/e/run/storage")
        );
        assert!(root("qemu:///embed?root=rel", &[]).is_err());
        assert!(root("qemu:///embed", &[]).is_err());
        assert_eq!(
            root(
                "qemu:///session",
                &[
                    ("XDG_CONFIG_HOME", "/c"),
                    ("XDG_RUNTIME_DIR", "/r"),
                    ("HOME", "/h")
                ]
            )
            .unwrap(),
            dirs("/c/rvirt/storage", "/r/rvirt/storage")
        );
        assert_eq!(
            root(
                "qemu:///session",
                &[("XDG_RUNTIME_DIR", "/r"), ("HOME", "/h")]
            )
            .unwrap(),
            dirs("/h/.config/rvirt/storage", "/r/rvirt/storage")
        );
        let e = root("qemu:///session", &[("HOME", "/h")]).unwrap_err();
        assert!(e.to_string().contains("XDG_RUNTIME_DIR"), "{e}");
        assert_eq!(
            root("test:///default", &[]).unwrap(),
            Some(StorageRoot::Memory("test:///default".into()))
        );
        assert_eq!(root("test:///tmp/node.xml", &[]).unwrap(), None);
        assert_eq!(
            root("qemu:///system", &[]).unwrap(),
            dirs("/sys-root/etc/rvirt/storage", "/sys-root/run/rvirt/storage")
        );
    }

    #[test]
    fn unknown_pool_type_names_it_and_hints_plugin_list() {
        let b = Backends::new(None);
        let Err(e) = b.backend("rbd") else {
            panic!("rbd served")
        };
        assert!(e.is_no_support());
        let m = e.to_string();
        assert!(
            m.contains("'rbd'") && m.contains("rvirt plugin list"),
            "{m}"
        );
    }
}

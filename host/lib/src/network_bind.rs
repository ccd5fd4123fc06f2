//! Binds a network root to each connection URI, as libvirt binds its network driver to
//! `qemu:///system` (through `network:///system`): `qemu:///system` keeps its networks
//! under the system root's `etc/rvirt/networks` and `run/rvirt/networks`,
//! `qemu:///session` under the XDG directories, `qemu:///embed?root=DIR` under DIR, and
//! `test:///default` in memory; one [`Networks`] per root per process.
//!
//! Forward modes resolve to in-process backends an embedder added, then to the network
//! plugins. A root kept in memory for `test:///default` resolves every mode to the
//! backend of the pseudo forward mode [`TEST_MODE`] (the test plugin's bookkeeping
//! backend, as libvirt's test driver runs networks without touching the host): no real
//! bridge is ever made for the test driver's networks.

use crate::networks::{NetBackend, NetBackendResolver, NetworkDirs, Networks};
use crate::uri::ConnectUri;
use crate::{Error, Result};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

/// The pseudo forward mode every network of `test:///default` is served by. Not a libvirt
/// forward mode, so no real backend ever claims it.
pub const TEST_MODE: &str = "test";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where one URI's networks live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetworkRoot {
    /// In memory, keyed by the URI it stands for.
    Memory(String),
    /// Under these directories.
    Dirs(NetworkDirs),
}

impl NetworkRoot {
    /// The directories, `None` in memory.
    pub fn dirs(&self) -> Option<NetworkDirs> {
        match self {
            NetworkRoot::Memory(_) => None,
            NetworkRoot::Dirs(d) => Some(d.clone()),
        }
    }
}

/// The network root of `uri` (`Ok(None)` for a URI without networks).
pub fn root_for(
    uri: &ConnectUri,
    system_root: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<NetworkRoot>> {
    use crate::roots::{LocalRoot, local_root};
    let domain = ErrorDomain::Network as i32;
    Ok(
        match local_root(uri, system_root, env, "networks", domain)? {
            None => None,
            Some(LocalRoot::Memory(key)) => Some(NetworkRoot::Memory(key.into())),
            Some(LocalRoot::Dirs { config, run }) => {
                let run = run.map_err(|why| {
                    Error::driver(
                        ErrorCode::NoSupport,
                        ErrorDomain::Network,
                        format!("no networks for '{}': {why}", uri.original),
                    )
                })?;
                Some(NetworkRoot::Dirs(NetworkDirs {
                    config: config.join("networks"),
                    state: run.join("networks"),
                }))
            }
        },
    )
}

/// The error for a forward mode nothing serves.
pub fn no_backend(mode: &str, searched: &str) -> Error {
    Error::driver(
        ErrorCode::NoSupport,
        ErrorDomain::Network,
        format!(
            "no network backend serves forward mode '{mode}' (no in-process backend and no installed network plugin; searched {searched}); run `rvirt plugin list` to see the plugins found and why any was refused"
        ),
    )
}

/// The network plugins of a registry, each backend opened once.
pub struct PluginNetBackends {
    registry: Arc<crate::plugin::Registry>,
    system_root: PathBuf,
    opened: Mutex<HashMap<String, Arc<dyn NetBackend>>>,
}

impl PluginNetBackends {
    pub(crate) fn new(registry: Arc<crate::plugin::Registry>, system_root: PathBuf) -> Self {
        Self {
            registry,
            system_root,
            opened: Mutex::default(),
        }
    }
}

impl NetBackendResolver for PluginNetBackends {
    fn backend(&self, mode: &str) -> Result<Arc<dyn NetBackend>> {
        if let Some(b) = lock(&self.opened).get(mode) {
            return Ok(Arc::clone(b));
        }
        let b: Arc<dyn NetBackend> =
            Arc::new(self.registry.network_backend(mode, &self.system_root)?);
        Ok(Arc::clone(
            lock(&self.opened).entry(mode.to_string()).or_insert(b),
        ))
    }
}

/// In-process backends (tests, embedders) ahead of the plugins.
pub struct NetBackends {
    local: RwLock<HashMap<String, Arc<dyn NetBackend>>>,
    plugins: Option<Arc<dyn NetBackendResolver>>,
}

impl NetBackends {
    /// Backends resolved by `plugins` after the in-process ones.
    pub fn new(plugins: Option<Arc<dyn NetBackendResolver>>) -> Self {
        Self {
            local: RwLock::default(),
            plugins,
        }
    }

    /// The same in-process backends over other plugins.
    pub fn with_plugins(&self, plugins: Arc<dyn NetBackendResolver>) -> Self {
        let local = self.local.read().unwrap_or_else(|e| e.into_inner()).clone();
        Self {
            local: RwLock::new(local),
            plugins: Some(plugins),
        }
    }

    /// Serves `mode` with `backend`.
    pub fn add(&self, mode: &str, backend: Arc<dyn NetBackend>) {
        self.local
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(mode.to_string(), backend);
    }
}

impl NetBackendResolver for NetBackends {
    fn backend(&self, mode: &str) -> Result<Arc<dyn NetBackend>> {
        if let Some(b) = self
            .local
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(mode)
        {
            return Ok(Arc::clone(b));
        }
        match &self.plugins {
            Some(p) => p.backend(mode),
            None => Err(no_backend(mode, "nothing")),
        }
    }
}

/// Resolves every forward mode to one backend mode (the test driver's networks).
struct AllModesAs {
    mode: &'static str,
    inner: Arc<dyn NetBackendResolver>,
}

impl NetBackendResolver for AllModesAs {
    fn backend(&self, _mode: &str) -> Result<Arc<dyn NetBackend>> {
        self.inner.backend(self.mode)
    }
}

type Cell = Arc<Mutex<Option<Arc<Networks>>>>;

fn roots() -> &'static Mutex<HashMap<NetworkRoot, Cell>> {
    static ROOTS: OnceLock<Mutex<HashMap<NetworkRoot, Cell>>> = OnceLock::new();
    ROOTS.get_or_init(Mutex::default)
}

/// The networks of `root`, opened on first use (reattaching active networks, running
/// autostart) and shared by the whole process.
pub fn networks_for(
    root: &NetworkRoot,
    backends: Arc<dyn NetBackendResolver>,
) -> Result<Arc<Networks>> {
    let cell = Arc::clone(lock(roots()).entry(root.clone()).or_default());
    let mut slot = lock(&cell);
    if let Some(n) = &*slot {
        return Ok(Arc::clone(n));
    }
    let backends: Arc<dyn NetBackendResolver> = match root {
        NetworkRoot::Memory(key) if key == "test:///default" => Arc::new(AllModesAs {
            mode: TEST_MODE,
            inner: backends,
        }),
        _ => backends,
    };
    let nets = Arc::new(Networks::open(root.dirs(), backends)?);
    *slot = Some(Arc::clone(&nets));
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(uri: &str) -> Option<NetworkRoot> {
        root_for(
            &ConnectUri::parse(uri).unwrap(),
            Path::new("/sys-root"),
            |_| None,
        )
        .unwrap()
    }

    #[test]
    fn uris_bind_to_roots_like_storage() {
        assert_eq!(
            root("qemu:///system"),
            Some(NetworkRoot::Dirs(NetworkDirs {
                config: "/sys-root/etc/rvirt/networks".into(),
                state: "/sys-root/run/rvirt/networks".into(),
            }))
        );
        assert_eq!(
            root("qemu:///embed?root=/tmp/e"),
            Some(NetworkRoot::Dirs(NetworkDirs {
                config: "/tmp/e/etc/networks".into(),
                state: "/tmp/e/run/networks".into(),
            }))
        );
        assert_eq!(
            root("test:///default"),
            Some(NetworkRoot::Memory("test:///default".into()))
        );
        assert_eq!(root("test:///tmp/node.xml"), None);
    }
}

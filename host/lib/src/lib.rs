//! The rvirt host runtime: plugin discovery and loading, URI routing, connections.
//!
//! An embedder opens a connection and drives domains; the driver behind it is a plugin
//! loaded at run time (or a remote daemon, for URIs with a transport):
//!
//! ```no_run
//! use rvirt_host::Connection;
//!
//! fn main() -> Result<(), rvirt_host::Error> {
//!     let conn = Connection::open("test:///default")?;
//!     for dom in conn.list_all_domains(0)? {
//!         let (state, _reason) = dom.get_state()?;
//!         println!("{} {}", dom.name(), state);
//!     }
//!     let dom = conn.lookup_domain_by_name("test")?;
//!     dom.suspend()?;
//!     dom.resume()?;
//!     Ok(())
//! }
//! ```
//!
//! The runnable version of this example is `host/lib/examples/embed.rs`
//! (`cargo run -p rvirt-host --example embed`).
//!
//! Plugins are found along [`plugin::default_search_path`]: `RVIRT_PLUGIN_PATH`, then
//! `/var/lib/rvirt/plugins` (`rvirt plugin install`), then `/usr/lib/rvirt/plugins`, then
//! the running binary's directory.

pub mod acl;
pub mod backend;
mod connection;
mod error;
mod files;
mod network_api;
pub mod network_bind;
pub mod networks;
pub mod plugin;
#[cfg(feature = "policy")]
pub mod policy;
pub mod remote;
mod roots;
pub mod secrets;
pub mod secrets_api;
mod snapshot;
pub mod stats;
pub mod storage;
mod storage_api;
pub mod storage_bind;
mod types;
pub mod uri;

pub use connection::{
    AFFECT_CONFIG, AFFECT_LIVE, Connection, Domain, MEM_MAXIMUM, SAVE_IMAGE_XML_SECURE,
    SNAPSHOT_XML_SECURE, START_PAUSED, VCPU_MAXIMUM, XML_INACTIVE, XML_SECURE,
};
pub use error::{Error, Result};
pub use network_api::{NetworkOps, NetworkService};
pub use plugin::{
    LoadError, LoadObserver, PluginManifest, PluginRecord, PluginStatus, PoolTypeRefusal,
    ServedPlugin,
};
pub use rvirt_wire::protocol::{TypedParam, TypedParamValue};
pub use secrets_api::{Secret, SecretEventInfo, SecretService};
pub use storage::{
    PoolEvent, PoolId, PoolInfo, PoolRefresh, StorageBackend, VolumeId, VolumeInfo, VolumeStream,
};
pub use storage_api::{StoragePool, StorageService, StorageVol, StreamIo, VolStream};
pub use types::{DomainEvent, DomainId, DomainInfo, DomainState, NodeInfo};
pub use uri::ConnectUri;

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
};

pub use rvirt_plugin_api::SYSTEM_ROOT_ENV;

/// Whether this build of the host library has the cargo feature `policy` (access checks
/// and hooks for embedders, `Connection::with_policy`).
pub const POLICY_BUILT_IN: bool = cfg!(feature = "policy");

/// The plugin API version this host implements.
pub const PLUGIN_API_VERSION: &str = rvirt_plugin_api::API_VERSION;

/// This library's version, libvirt-encoded (major * 1,000,000 + minor * 1,000 + micro).
pub fn lib_version() -> u64 {
    let v = semver::Version::parse(env!("CARGO_PKG_VERSION"))
        .unwrap_or_else(|_| semver::Version::new(0, 0, 0));
    v.major * 1_000_000 + v.minor * 1_000 + v.patch
}

/// The plugins of one search path, and the entry point that opens connections and
/// storage backends.
pub struct Runtime {
    registry: Arc<plugin::Registry>,
    system_root: PathBuf,
    backends: Arc<storage_bind::Backends>,
    net_backends: Arc<network_bind::NetBackends>,
    /// The daemon socket whose pools and networks the host services answer from
    /// ([`Runtime::set_daemon_services`]), with one link per URI.
    daemon_services: OnceLock<PathBuf>,
    daemon_links: std::sync::Mutex<std::collections::HashMap<String, Arc<plugin::DaemonServices>>>,
}

impl Runtime {
    /// Scans the default search path ([`plugin::default_search_path`]).
    pub fn discover() -> Self {
        Self::with_search_path(plugin::default_search_path())
    }

    /// Scans the given directories, in order.
    pub fn with_search_path(dirs: Vec<PathBuf>) -> Self {
        let system_root = std::env::var_os(SYSTEM_ROOT_ENV)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| PathBuf::from("/"));
        let registry = Arc::new(plugin::Registry::scan(dirs));
        let backends = Arc::new(storage_bind::Backends::new(Some(Arc::new(
            storage_bind::PluginBackends::new(registry.clone(), system_root.clone()),
        ))));
        let net_backends = Arc::new(network_bind::NetBackends::new(Some(Arc::new(
            network_bind::PluginNetBackends::new(registry.clone(), system_root.clone()),
        ))));
        Self {
            registry,
            system_root,
            backends,
            net_backends,
            daemon_services: OnceLock::new(),
            daemon_links: Default::default(),
        }
    }

    /// Sets the directory system paths live under, which plugins learn through the host
    /// services they are opened with (default: `RVIRT_SYSTEM_ROOT` when it is absolute,
    /// else `/`).
    pub fn with_system_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.system_root = root.into();
        let plugins =
            storage_bind::PluginBackends::new(self.registry.clone(), self.system_root.clone());
        self.backends = Arc::new(self.backends.with_plugins(Arc::new(plugins)));
        let net_plugins =
            network_bind::PluginNetBackends::new(self.registry.clone(), self.system_root.clone());
        self.net_backends = Arc::new(self.net_backends.with_plugins(Arc::new(net_plugins)));
        self
    }

    /// Makes the host services lent to this runtime's hypervisor connections answer
    /// storage volumes (`<disk type='volume'>`, the pool definitions) and network ports
    /// (`<interface type='network'>`) from the daemon listening on `socket`, over the
    /// remote driver, instead of from pools and networks of this process: what a process
    /// serving one plugin for a daemon (rvirtd's plugin host) needs, as the daemon owns
    /// them. Returns whether it was set (only the first call counts).
    pub fn set_daemon_services(&self, socket: impl Into<PathBuf>) -> bool {
        self.daemon_services.set(socket.into()).is_ok()
    }

    /// The link to the daemon's pools and networks for `uri`, when
    /// [`Runtime::set_daemon_services`] was called.
    fn daemon_link(&self, uri: &str) -> Option<Arc<plugin::DaemonServices>> {
        let socket = self.daemon_services.get()?;
        let mut links = self.daemon_links.lock().unwrap_or_else(|e| e.into_inner());
        Some(Arc::clone(links.entry(uri.to_string()).or_insert_with(
            || plugin::DaemonServices::new(socket.clone(), uri),
        )))
    }

    /// The directory system paths live under.
    pub fn system_root(&self) -> &std::path::Path {
        &self.system_root
    }

    /// Opens the storage backend serving `pool_type` (`dir`, `logical`, ...): the first
    /// plugin along the search path whose storage facet lists it.
    pub fn storage_backend(&self, pool_type: &str) -> Result<StorageBackend> {
        self.registry
            .storage_backend(pool_type, &self.system_root, None)
    }

    /// The process-wide runtime, discovered on first use.
    pub fn global() -> &'static Runtime {
        static GLOBAL: OnceLock<Runtime> = OnceLock::new();
        GLOBAL.get_or_init(Runtime::discover)
    }

    /// Every plugin file found, with what happened to it.
    pub fn plugins(&self) -> &[PluginRecord] {
        self.registry.records()
    }

    /// Every plugin file found, as the scan saw it: a plugin described by a manifest file
    /// is reported from it, without loading it (unlike [`Runtime::plugins`]).
    pub fn scanned_plugins(&self) -> &[PluginRecord] {
        self.registry.scanned()
    }

    /// The plugins this process has loaded so far and what each serves.
    pub fn served_plugins(&self) -> Vec<ServedPlugin> {
        self.registry.served()
    }

    /// Calls `observer` for every plugin loaded from now on (see
    /// [`plugin::Registry::set_load_observer`]); returns whether it was set (only the first
    /// observer is kept).
    pub fn set_load_observer(&self, observer: LoadObserver) -> bool {
        self.registry.set_load_observer(observer)
    }

    /// The directories searched.
    pub fn search_path(&self) -> &[PathBuf] {
        self.registry.search_path()
    }

    /// Opens a connection: URIs with a transport or a host go to the remote driver, the
    /// others to the plugin serving their scheme.
    pub fn open(&self, uri: &str, read_only: bool) -> Result<Connection> {
        self.open_with_backend(uri, read_only, None)
    }

    /// [`Runtime::open`] with the domain operations served by `backend` instead of the
    /// plugin's in-process connection (a daemon serving a plugin from its own process);
    /// storage, secrets and networks stay this runtime's. `None` is [`Runtime::open`].
    /// A remote URI ignores `backend`.
    pub fn open_with_backend(
        &self,
        uri: &str,
        read_only: bool,
        backend: Option<Arc<dyn backend::Backend>>,
    ) -> Result<Connection> {
        let parsed = ConnectUri::parse(uri)?;
        if parsed.is_remote() {
            let remote = remote::open(&parsed, read_only)?;
            let networks: network_api::NetworkOpsLookup = {
                let remote = Arc::clone(&remote);
                Arc::new(move || Ok(Arc::clone(&remote) as Arc<dyn network_api::NetworkOps>))
            };
            return Ok(Connection::new(
                remote.clone(),
                remote.clone(),
                remote,
                networks,
                read_only,
            ));
        }
        let networks: network_api::NetworksLookup = {
            let uri = uri.to_string();
            let system_root = self.system_root.clone();
            let backends = self.network_backends();
            Arc::new(move || {
                let parsed = ConnectUri::parse(&uri)?;
                let root = network_bind::root_for(&parsed, &system_root, |k| std::env::var(k).ok())?
                    .ok_or_else(|| {
                        Error::driver(
                            rvirt_plugin_api::ErrorCode::NoSupport,
                            rvirt_plugin_api::ErrorDomain::Network,
                            format!("this function is not supported by the connection driver: '{uri}' has no networks"),
                        )
                    })?;
                network_bind::networks_for(&root, Arc::clone(&backends))
            })
        };
        let daemon = self.daemon_link(uri);
        let ctx = plugin::ConnectionContext {
            system_root: self.system_root.clone(),
            uri: parsed.clone(),
            pools: match &daemon {
                Some(d) => d.pools_lookup(),
                None => self.pools_lookup(&parsed),
            },
            networks: match &daemon {
                Some(d) => d.networks_lookup(),
                None => network_api::local_ops(Arc::clone(&networks)),
            },
        };
        let backend = match backend {
            Some(b) => b,
            None => self.registry.open(&parsed.driver, uri, read_only, ctx)?,
        };
        // A connection that owns its storage and networks (a remote hypervisor's
        // datastores and port groups, plugin API 1.10) answers them itself; the others
        // use the pools and networks bound to the URI.
        let owned_storage = backend.owned_storage();
        let owned_networks = backend.owned_networks();
        let owns = (owned_storage.is_some(), owned_networks.is_some());
        let storage: Arc<dyn StorageService> = match owned_storage {
            Some(owned) => owned,
            None => Arc::new(storage_api::LocalStorage::new(
                &parsed,
                &self.system_root,
                self.pool_backends_for(&parsed),
            )),
        };
        let network_ops: network_api::NetworkOpsLookup = match owned_networks {
            Some(owned) => Arc::new(move || Ok(Arc::clone(&owned))),
            None => network_api::local_ops(networks),
        };
        let secrets = secrets_api::LocalSecrets::new(&parsed, &self.system_root);
        let mut conn = Connection::new(backend, storage, Arc::new(secrets), network_ops, read_only);
        conn.owns = owns;
        Ok(conn)
    }

    /// The pools bound to `uri`, for the host services of its connection: opened when a
    /// plugin first asks (a `<disk type='volume'>` to resolve), `None` when the URI has
    /// no storage.
    fn pools_lookup(&self, uri: &ConnectUri) -> plugin::PoolsLookup {
        let uri = uri.clone();
        let system_root = self.system_root.clone();
        let backends = self.pool_backends_for(&uri);
        Arc::new(move || {
            match storage_bind::root_for(&uri, &system_root, |k| std::env::var(k).ok())? {
                None => Ok(None),
                Some(root) => storage_bind::pools_for(&root, Arc::clone(&backends))
                    .map(|p| Some(p as Arc<dyn plugin::HostPools>)),
            }
        })
    }

    /// Serves storage pools of `pool_type` with an in-process backend, ahead of any
    /// storage plugin. Add backends before the first connection of a root uses its pools:
    /// a root's pools are opened (and its autostart pools started) once per process.
    pub fn add_pool_backend(&self, pool_type: &str, backend: Arc<dyn storage::PoolBackend>) {
        self.backends.add(pool_type, backend);
    }

    /// What serves each pool type for the pools of `uri`: the in-process backends, then
    /// the storage plugins, lent the secrets bound to the same URI (a Ceph key, CHAP
    /// credentials).
    pub(crate) fn pool_backends_for(&self, uri: &ConnectUri) -> Arc<dyn storage::BackendResolver> {
        let secrets =
            secrets_api::secrets_root_for(uri, &self.system_root, |k| std::env::var(k).ok())
                .ok()
                .flatten();
        Arc::new(storage_bind::RootBackends::new(
            Arc::clone(&self.backends),
            storage_bind::PluginBackends::with_secrets(
                self.registry.clone(),
                self.system_root.clone(),
                secrets,
            ),
        ))
    }

    /// [`Runtime::pool_backends`] for the pools of the local connection URI `uri`: the
    /// storage plugins' backends are lent the secrets bound to that URI (a Ceph key, CHAP
    /// credentials). What a process serving one storage plugin for a daemon (rvirtd's
    /// plugin host) resolves its backends with.
    pub fn pool_backends_for_uri(&self, uri: &str) -> Result<Arc<dyn storage::BackendResolver>> {
        Ok(self.pool_backends_for(&ConnectUri::parse(uri)?))
    }

    /// What serves each pool type for this runtime: the in-process backends, then the
    /// storage plugins.
    pub fn pool_backends(&self) -> Arc<dyn storage::BackendResolver> {
        self.backends.clone()
    }

    /// The secret store bound to a local connection URI (`qemu:///system`,
    /// `qemu:///session`, `qemu:///embed?root=DIR`, `test:///default`), opened on first use
    /// and shared by every connection of the process to the same root.
    pub fn secrets(&self, uri: &str) -> Result<Arc<secrets::Secrets>> {
        let parsed = ConnectUri::parse(uri)?;
        let root =
            secrets_api::secrets_root_for(&parsed, &self.system_root, |k| std::env::var(k).ok())?
                .ok_or_else(|| {
                Error::driver(
                    rvirt_plugin_api::ErrorCode::NoSupport,
                    rvirt_plugin_api::ErrorDomain::None,
                    format!("'{uri}' has no secrets"),
                )
            })?;
        secrets_api::secrets_for(&root)
    }

    /// The storage pools bound to a local connection URI (`qemu:///system`,
    /// `qemu:///session`, `qemu:///embed?root=DIR`, `test:///default`), opened on first
    /// use and shared by every connection of the process to the same root.
    pub fn storage_pools(&self, uri: &str) -> Result<Arc<storage::Pools>> {
        let parsed = ConnectUri::parse(uri)?;
        let root = storage_bind::root_for(&parsed, &self.system_root, |k| std::env::var(k).ok())?
            .ok_or_else(|| {
            Error::driver(
                rvirt_plugin_api::ErrorCode::NoSupport,
                rvirt_plugin_api::ErrorDomain::Storage,
                format!("'{uri}' has no storage pools"),
            )
        })?;
        storage_bind::pools_for(&root, self.pool_backends_for(&parsed))
    }

    /// Serves networks of forward mode `mode` (`isolated` for networks without
    /// `<forward>`) with an in-process backend, ahead of any network plugin. Add backends
    /// before the first use of a root's networks (opened once per process).
    pub fn add_network_backend(&self, mode: &str, backend: Arc<dyn networks::NetBackend>) {
        self.net_backends.add(mode, backend);
    }

    /// What serves each forward mode for this runtime: the in-process backends, then the
    /// network plugins.
    pub fn network_backends(&self) -> Arc<dyn networks::NetBackendResolver> {
        self.net_backends.clone()
    }

    /// The networks bound to a local connection URI (`qemu:///system`, `qemu:///session`,
    /// `qemu:///embed?root=DIR`, `test:///default`), opened on first use and shared by
    /// every connection of the process to the same root.
    pub fn networks(&self, uri: &str) -> Result<Arc<networks::Networks>> {
        let parsed = ConnectUri::parse(uri)?;
        let root = network_bind::root_for(&parsed, &self.system_root, |k| std::env::var(k).ok())?
            .ok_or_else(|| {
            Error::driver(
                rvirt_plugin_api::ErrorCode::NoSupport,
                rvirt_plugin_api::ErrorDomain::Network,
                format!("'{uri}' has no networks"),
            )
        })?;
        network_bind::networks_for(&root, self.network_backends())
    }
}

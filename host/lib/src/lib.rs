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
//! `/usr/lib/rvirt/plugins`, then the running binary's directory.

pub mod backend;
mod connection;
mod error;
pub mod plugin;
pub mod remote;
pub mod secrets;
pub mod storage;
mod types;
pub mod uri;

pub use connection::{Connection, Domain, START_PAUSED, VCPU_MAXIMUM, XML_INACTIVE, XML_SECURE};
pub use error::{Error, Result};
pub use plugin::{LoadError, PluginManifest, PluginRecord, PluginStatus, PoolTypeRefusal};
pub use storage::{PoolRefresh, StorageBackend, VolumeStream};
pub use types::{DomainEvent, DomainId, DomainInfo, DomainState, NodeInfo};
pub use uri::ConnectUri;

use std::{path::PathBuf, sync::OnceLock};

pub use rvirt_plugin_api::SYSTEM_ROOT_ENV;

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
    registry: plugin::Registry,
    system_root: PathBuf,
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
        Self {
            registry: plugin::Registry::scan(dirs),
            system_root,
        }
    }

    /// Sets the directory system paths live under, which plugins learn through the host
    /// services they are opened with (default: `RVIRT_SYSTEM_ROOT` when it is absolute,
    /// else `/`).
    pub fn with_system_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.system_root = root.into();
        self
    }

    /// The directory system paths live under.
    pub fn system_root(&self) -> &std::path::Path {
        &self.system_root
    }

    /// Opens the storage backend serving `pool_type` (`dir`, `logical`, ...): the first
    /// plugin along the search path whose storage facet lists it.
    pub fn storage_backend(&self, pool_type: &str) -> Result<StorageBackend> {
        self.registry.storage_backend(pool_type, &self.system_root)
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

    /// The directories searched.
    pub fn search_path(&self) -> &[PathBuf] {
        self.registry.search_path()
    }

    /// Opens a connection: URIs with a transport or a host go to the remote driver, the
    /// others to the plugin serving their scheme.
    pub fn open(&self, uri: &str, read_only: bool) -> Result<Connection> {
        let parsed = ConnectUri::parse(uri)?;
        let backend = if parsed.is_remote() {
            remote::open(&parsed, read_only)?
        } else {
            self.registry.open(&parsed.driver, uri, read_only)?
        };
        Ok(Connection::new(backend, read_only))
    }
}

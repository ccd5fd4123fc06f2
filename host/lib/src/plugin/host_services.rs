//! The services the host lends a hypervisor connection (plugin API 1.4,
//! `PluginMod::open_with_host`): the system root, the connection's URI as the host parsed
//! it, the host's log, and the resolution of storage volumes for `<disk type='volume'>`
//! through the pools bound to the connection's URI (`storage_bind`).
//!
//! Every method runs on the plugin's side of the boundary (inside an abi_stable
//! `extern "C"` shim): nothing here may unwind, so each body runs under `catch_unwind`.

use crate::remote::RemoteBackend;
use crate::{Error, Result, StorageService, storage::Pools, uri::ConnectUri};
use rvirt_plugin_api::{
    self as api, ConnectionUri, ErrorCode, ErrorDomain, PResult, PluginError, UriParam,
    VolumeSource,
    abi_stable::std_types::{RResult, RStr, RString, RVec},
    log_level,
};
use rvirt_xml::{StoragePool, StorageVolume};
use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    sync::{Arc, Mutex},
};

/// Finds the pools bound to a connection: `Ok(None)` when its URI has no storage.
pub(crate) type PoolsLookup = Arc<dyn Fn() -> Result<Option<Arc<dyn HostPools>>> + Send + Sync>;

/// What the host services read of a connection's storage pools: the process's own
/// [`Pools`], or a daemon's (reached over the remote driver, [`RemoteHostPools`]) when
/// this process serves a plugin for a daemon that owns the pools.
pub(crate) trait HostPools: Send + Sync {
    /// Whether pool `pool` is active (unknown: `VIR_ERR_NO_STORAGE_POOL`).
    fn is_active(&self, pool: &str) -> Result<bool>;
    /// The definition of pool `pool`.
    fn pool_xml(&self, pool: &str) -> Result<String>;
    /// The definition of volume `volume` of pool `pool`.
    fn volume_xml(&self, pool: &str, volume: &str) -> Result<String>;
}

impl HostPools for Pools {
    fn is_active(&self, pool: &str) -> Result<bool> {
        Pools::is_active(self, pool)
    }
    fn pool_xml(&self, pool: &str) -> Result<String> {
        self.xml(pool, 0)
    }
    fn volume_xml(&self, pool: &str, volume: &str) -> Result<String> {
        Pools::volume_xml(self, pool, volume, 0)
    }
}

/// The pools of a daemon, through any [`StorageService`] (the remote driver's). Made
/// afresh for each host-service call (`PoolsLookup`), so the pool handles it remembers
/// (saving a `virStoragePoolLookupByName` round trip per question) live for one call.
pub(crate) struct RemoteHostPools {
    service: Arc<dyn StorageService>,
    pools: Mutex<Vec<crate::PoolId>>,
}

impl RemoteHostPools {
    pub(crate) fn new(service: Arc<dyn StorageService>) -> Self {
        RemoteHostPools {
            service,
            pools: Mutex::new(Vec::new()),
        }
    }

    fn pool(&self, name: &str) -> Result<crate::PoolId> {
        let mut known = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = known.iter().find(|p| p.name == name) {
            return Ok(p.clone());
        }
        let p = self.service.pool_by_name(name)?;
        known.push(p.clone());
        Ok(p)
    }
}

impl HostPools for RemoteHostPools {
    fn is_active(&self, pool: &str) -> Result<bool> {
        self.service.pool_is_active(&self.pool(pool)?)
    }
    fn pool_xml(&self, pool: &str) -> Result<String> {
        self.service.pool_xml(&self.pool(pool)?, 0)
    }
    fn volume_xml(&self, pool: &str, volume: &str) -> Result<String> {
        let vol = self.service.volume_by_name(&self.pool(pool)?, volume)?;
        self.service.volume_xml(&vol, 0)
    }
}

/// The storage pools and networks of a daemon this process serves a plugin for (an
/// rvirtd plugin host process, [`crate::Runtime::set_daemon_services`]): the host
/// services of a connection to `uri` resolve `<disk type='volume'>` and plug
/// `<interface type='network'>` through the daemon's own pools and networks, reached
/// over the remote driver on the daemon's socket for plugin hosts, instead of opening
/// this process's own copy of them. Connected on first use, and again once the link
/// closed (the daemon restarted).
pub(crate) struct DaemonServices {
    socket: PathBuf,
    uri: String,
    link: Mutex<Option<Arc<RemoteBackend>>>,
}

impl DaemonServices {
    pub(crate) fn new(socket: PathBuf, uri: &str) -> Arc<Self> {
        Arc::new(DaemonServices {
            socket,
            uri: uri.to_string(),
            link: Mutex::new(None),
        })
    }

    /// The link to the daemon, connecting when there is none or it closed.
    fn remote(&self) -> Result<Arc<RemoteBackend>> {
        let mut link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = link.as_ref()
            && !r.is_closed()
        {
            return Ok(Arc::clone(r));
        }
        let r =
            RemoteBackend::connect(&self.socket, &self.uri, false).map_err(|e| Error::Driver {
                code: e.code(),
                domain: e.domain(),
                message: format!(
                    "cannot reach the daemon's storage pools and networks for '{}' at {}: {e}",
                    self.uri,
                    self.socket.display()
                ),
            })?;
        let r = Arc::new(r);
        *link = Some(Arc::clone(&r));
        Ok(r)
    }

    /// The daemon's pools, for [`ConnectionContext::pools`].
    pub(crate) fn pools_lookup(self: &Arc<Self>) -> PoolsLookup {
        let me = Arc::clone(self);
        Arc::new(move || {
            let remote: Arc<dyn StorageService> = me.remote()?;
            Ok(Some(
                Arc::new(RemoteHostPools::new(remote)) as Arc<dyn HostPools>
            ))
        })
    }

    /// The daemon's networks, for [`ConnectionContext::networks`].
    pub(crate) fn networks_lookup(self: &Arc<Self>) -> crate::network_api::NetworkOpsLookup {
        let me = Arc::clone(self);
        Arc::new(move || Ok(me.remote()? as Arc<dyn crate::network_api::NetworkOps>))
    }
}

/// What the host knows about a connection it opens, for the services it lends.
#[derive(Clone)]
pub(crate) struct ConnectionContext {
    /// The directory system paths live under.
    pub(crate) system_root: PathBuf,
    /// The connection's URI.
    pub(crate) uri: ConnectUri,
    /// The pools bound to that URI, opened on first use.
    pub(crate) pools: PoolsLookup,
    /// The networks bound to that URI (or a daemon's), opened on first use.
    pub(crate) networks: crate::network_api::NetworkOpsLookup,
}

/// [`api::HostServices`] for one hypervisor connection.
pub(crate) struct HypervisorServices {
    plugin: String,
    ctx: ConnectionContext,
}

impl HypervisorServices {
    pub(crate) fn new(plugin: &str, ctx: ConnectionContext) -> Self {
        Self {
            plugin: plugin.to_string(),
            ctx,
        }
    }

    /// Resolves `volume` of `pool` (libvirt's `virDomainDiskTranslateSourcePool`).
    pub(crate) fn resolve(&self, pool: &str, volume: &str) -> Result<VolumeSource> {
        let pools = (self.ctx.pools)()?.ok_or_else(|| {
            Error::driver(
                ErrorCode::NoSupport,
                ErrorDomain::Storage,
                format!(
                    "'{}' has no storage pools: volume '{volume}' of pool '{pool}' cannot be resolved",
                    self.ctx.uri.original
                ),
            )
        })?;
        if !pools.is_active(pool)? {
            // libvirt's code and wording (`virDomainDiskTranslateSourcePool`).
            return Err(Error::driver(
                ErrorCode::ConfigUnsupported,
                ErrorDomain::Storage,
                format!(
                    "unsupported configuration: storage pool '{pool}' containing volume '{volume}' is not active"
                ),
            ));
        }
        let vol_xml = pools.volume_xml(pool, volume)?;
        let pool_def =
            StoragePool::parse(&pools.pool_xml(pool)?).map_err(|e| bad_xml("pool", &e))?;
        let vol =
            StorageVolume::parse(&vol_xml, Some(&pool_def)).map_err(|e| bad_xml("volume", &e))?;
        let path = vol.target_path().ok_or_else(|| {
            Error::driver(
                ErrorCode::InternalError,
                ErrorDomain::Storage,
                format!("volume '{volume}' of pool '{pool}' has no target path"),
            )
        })?;
        let disk_type = match vol.volume_type().unwrap_or("file") {
            "block" => "block",
            "dir" => "dir",
            "network" | "netdir" => "network",
            _ => "file",
        };
        Ok(VolumeSource {
            disk_type: disk_type.into(),
            path: path.into(),
            format: vol.format_type().unwrap_or("").into(),
            pool_type: pool_def.pool_type().into(),
            volume_xml: vol_xml.into(),
        })
    }
}

fn bad_xml(what: &str, e: &rvirt_xml::XmlError) -> Error {
    Error::driver(
        ErrorCode::InternalError,
        ErrorDomain::Storage,
        format!("the storage {what} reported by the host does not parse: {e}"),
    )
}

fn to_plugin_error(e: &Error) -> PluginError {
    PluginError {
        code: e.code(),
        domain: e.domain(),
        message: e.to_string().into(),
    }
}

/// `HostServices::secret_value` for a plugin lent services for the secrets of `root`
/// (`None`: the connection has no secrets: no-support, as before 1.6 hosts answered).
pub(crate) fn secret_for_plugin(
    root: Option<&crate::secrets_api::SecretsRoot>,
    usage_type: i32,
    usage_id: &str,
) -> PResult<RVec<u8>> {
    let Some(root) = root else {
        return RResult::RErr(PluginError::no_support("virSecretGetValue"));
    };
    guarded("virSecretGetValue", || {
        let store = crate::secrets_api::secrets_for_driver(root)?;
        store.value_for_driver(usage_type, usage_id).map(RVec::from)
    })
}

/// Runs host code called by a plugin, turning a panic into an internal error.
fn guarded<T>(operation: &str, f: impl FnOnce() -> Result<T>) -> PResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(to_plugin_error(&e)),
        Err(_) => RResult::RErr(PluginError::new(
            ErrorCode::InternalError,
            ErrorDomain::None,
            format!("the host panicked in {operation}"),
        )),
    }
}

impl api::HostServices for HypervisorServices {
    fn system_root(&self) -> RString {
        self.ctx.system_root.display().to_string().into()
    }

    fn secret_value(&self, usage_type: i32, usage_id: RStr<'_>) -> PResult<RVec<u8>> {
        let root =
            crate::secrets_api::secrets_root_for(&self.ctx.uri, &self.ctx.system_root, |k| {
                std::env::var(k).ok()
            })
            .ok()
            .flatten();
        secret_for_plugin(root.as_ref(), usage_type, usage_id.as_str())
    }

    fn log(&self, level: u32, message: RStr<'_>) {
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

    fn connection_uri(&self) -> PResult<ConnectionUri> {
        let u = &self.ctx.uri;
        RResult::ROk(ConnectionUri {
            original: u.original.as_str().into(),
            driver: u.driver.as_str().into(),
            path: u.path.as_str().into(),
            params: u
                .params
                .iter()
                .map(|(name, value)| UriParam {
                    name: name.as_str().into(),
                    value: value.as_str().into(),
                })
                .collect(),
        })
    }

    fn volume_source(&self, pool: RStr<'_>, volume: RStr<'_>) -> PResult<VolumeSource> {
        guarded("virStorageVolGetPath", || {
            self.resolve(pool.as_str(), volume.as_str())
        })
    }

    fn storage_pool_xml(&self, pool: RStr<'_>) -> PResult<RString> {
        guarded("virStoragePoolGetXMLDesc", || {
            let pools = (self.ctx.pools)()?.ok_or_else(|| {
                Error::driver(
                    ErrorCode::NoSupport,
                    ErrorDomain::Storage,
                    format!(
                        "'{}' has no storage pools: pool '{pool}' cannot be read",
                        self.ctx.uri.original
                    ),
                )
            })?;
            pools.pool_xml(pool.as_str()).map(RString::from)
        })
    }

    fn network_port_create(&self, network: RStr<'_>, port_xml: RStr<'_>) -> PResult<RString> {
        guarded("virNetworkPortCreateXML", || {
            let nets = (self.ctx.networks)()?;
            let id = nets.port_create(network.as_str(), port_xml.as_str(), 0)?;
            nets.port_xml(network.as_str(), id.uuid, 0)
                .map(RString::from)
        })
    }

    fn network_port_delete(&self, network: RStr<'_>, port_uuid: RStr<'_>) -> PResult<()> {
        guarded("virNetworkPortDelete", || {
            let uuid = uuid::Uuid::parse_str(port_uuid.as_str()).map_err(|_| {
                Error::driver(
                    ErrorCode::InvalidArg,
                    ErrorDomain::Network,
                    format!("invalid network port UUID '{port_uuid}'"),
                )
            })?;
            (self.ctx.networks)()?.port_delete(network.as_str(), uuid, 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::MemBackend;
    use crate::storage_bind::Backends;
    use rvirt_plugin_api::{HostServices_TO, HostServicesBox, abi_stable::sabi_trait::TD_Opaque};

    fn services(uri: &str, pools: PoolsLookup) -> HostServicesBox {
        HostServices_TO::from_value(
            HypervisorServices::new(
                "qemu",
                ConnectionContext {
                    system_root: PathBuf::from("/srv/root"),
                    uri: ConnectUri::parse(uri).unwrap(),
                    pools,
                    networks: crate::network_api::local_ops(crate::network_api::remote_lookup()),
                },
            ),
            TD_Opaque,
        )
    }

    fn mem_pools() -> Arc<Pools> {
        let backends = Backends::new(None);
        backends.add("dir", Arc::new(MemBackend::default()));
        let pools = Pools::open(None, Arc::new(backends)).unwrap();
        pools
            .define(
                "<pool type='dir'><name>p</name><target><path>/t/p</path></target></pool>",
                0,
            )
            .unwrap();
        pools.build("p", 0).unwrap();
        pools.create("p", 0).unwrap();
        pools
            .create_volume(
                "p",
                "<volume><name>a.img</name><capacity unit='bytes'>4096</capacity></volume>",
                None,
                0,
            )
            .unwrap();
        Arc::new(pools)
    }

    fn s(x: &str) -> RStr<'_> {
        RStr::from_str(x)
    }

    #[test]
    fn volume_source_resolves_through_the_bound_pools_with_libvirts_errors() {
        let pools = mem_pools();
        let p = pools.clone();
        let h = services(
            "qemu:///system",
            Arc::new(move || Ok(Some(p.clone() as Arc<dyn HostPools>))),
        );
        let v = h.volume_source(s("p"), s("a.img")).unwrap();
        assert_eq!(v.path.as_str(), "/t/p/a.img");
        assert_eq!(v.format.as_str(), "raw");
        assert_eq!(v.disk_type.as_str(), "file");
        assert_eq!(v.pool_type.as_str(), "dir");
        assert!(
            v.volume_xml.contains("<name>a.img</name>"),
            "{}",
            v.volume_xml
        );

        let e = h.volume_source(s("p"), s("nope")).unwrap_err();
        assert_eq!(e.code, 50, "VIR_ERR_NO_STORAGE_VOL: {}", e.message);
        assert_eq!(e.domain, ErrorDomain::Storage as i32);
        assert!(e.message.contains("'nope'"), "{}", e.message);
        let e = h.volume_source(s("q"), s("a.img")).unwrap_err();
        assert_eq!(e.code, ErrorCode::NoStoragePool as i32, "{}", e.message);

        pools.destroy("p").unwrap();
        let e = h.volume_source(s("p"), s("a.img")).unwrap_err();
        assert_eq!(e.code, ErrorCode::ConfigUnsupported as i32);
        assert_eq!(
            e.message.as_str(),
            "unsupported configuration: storage pool 'p' containing volume 'a.img' is not active"
        );
    }

    #[test]
    fn a_uri_without_storage_and_a_panicking_lookup_answer_errors() {
        let h = services("test:///tmp/node.xml", Arc::new(|| Ok(None)));
        let e = h.volume_source(s("p"), s("v")).unwrap_err();
        assert_eq!(e.code, ErrorCode::NoSupport as i32);
        assert!(e.message.contains("has no storage pools"), "{}", e.message);
        let h = services("qemu:///system", Arc::new(|| panic!("lookup exploded")));
        let e = h.volume_source(s("p"), s("v")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InternalError as i32);
        assert_eq!(
            e.message.as_str(),
            "the host panicked in virStorageVolGetPath"
        );
    }

    #[test]
    fn the_connection_uri_and_system_root_are_the_hosts() {
        let h = services("qemu:///embed?root=/tmp/a%20b", Arc::new(|| Ok(None)));
        assert_eq!(h.system_root().as_str(), "/srv/root");
        let u = h.connection_uri().unwrap();
        assert_eq!(u.original.as_str(), "qemu:///embed?root=/tmp/a%20b");
        assert_eq!(u.driver.as_str(), "qemu");
        assert_eq!(u.path.as_str(), "/embed");
        assert_eq!(u.params.len(), 1);
        assert_eq!(u.params[0].name.as_str(), "root");
        assert_eq!(u.params[0].value.as_str(), "/tmp/a b");
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;
    use crate::secrets_api::{SecretsRoot, secrets_for};

    #[test]
    fn plugins_read_secrets_of_their_root_by_usage_or_uuid_private_ones_too() {
        let root = SecretsRoot::Memory("secret_for_plugin_test".into());
        let store = secrets_for(&root).unwrap();
        let id = store
            .define(
                "<secret ephemeral='no' private='yes'><usage type='ceph'><name>client.admin</name></usage></secret>",
                0,
            )
            .unwrap();
        store.set_value(id.uuid, b"AQBkey==", 0).unwrap();
        // VIR_SECRET_USAGE_TYPE_CEPH = 2
        let got = secret_for_plugin(Some(&root), 2, "client.admin").unwrap();
        assert_eq!(got.as_slice(), b"AQBkey==");
        let by_uuid = secret_for_plugin(Some(&root), 0, &id.uuid.to_string()).unwrap();
        assert_eq!(by_uuid.as_slice(), b"AQBkey==");
        let RResult::RErr(e) = secret_for_plugin(Some(&root), 2, "client.nobody") else {
            panic!("an unknown usage has no value")
        };
        assert!(e.message.contains("client.nobody"), "{}", e.message);
        let RResult::RErr(e) = secret_for_plugin(None, 2, "client.admin") else {
            panic!("no secrets, no value")
        };
        assert_eq!(e.code, ErrorCode::NoSupport as i32);
    }
}

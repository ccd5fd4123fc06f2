//! Crash-isolated plugins: a hypervisor, storage or network plugin served from a process
//! of its own.
//!
//! A plugin whose isolation is `process` (`rvirtd.toml`) is loaded by a plugin host
//! process, `rvirtd --plugin-host FILE --socket PATH --uri URI...` (`host.rs`): the same
//! daemon code serving that one plugin file over libvirt's remote protocol on a private
//! socket. This daemon reaches it through the host library's remote driver, so a
//! segfault, abort or deadlock in the plugin ends that process only.
//!
//! [`Supervisor`] (one per isolated plugin) starts the process on first use, notices its
//! death (`waitpid`), starts it again with backoff and replaces it on `reload`.
//! [`IsolatedBackend`] (one per client connection) is the connection's backend: each call
//! goes to the current process; a call the process died in fails naming the plugin and
//! how it died, the next call reconnects to the new process, and event subscriptions are
//! registered again there. A call past the plugin's deadline fails with
//! `VIR_ERR_OPERATION_TIMEOUT` and the hung process is killed and replaced.
//!
//! A plugin's storage and network facets are served by the same process over a private
//! backend-call channel (`wire.rs`): the daemon keeps its pools and networks and
//! registers forwarding backends (`forward.rs`) that send each backend call there, where
//! `serve.rs` runs the plugin's real backend.

pub mod control;
mod forward;
pub mod host;
mod owned;
pub mod serve;
mod supervisor;
pub mod wire;

pub use supervisor::{BackendFacets, Generation, Supervisor};

/// The daemon's socket for its plugin host processes, in the plugins' directory of the
/// run directory: the host services of an isolated hypervisor plugin resolve
/// `<disk type='volume'>` and plug `<interface type='network'>` through the daemon's
/// storage pools and networks over it (the remote driver's storage and network
/// procedures), so the plugin host keeps no pools or networks of its own.
pub const SERVICES_SOCKET: &str = "services.sock";

/// Where the daemon of run directory `run_dir` listens for its plugin host processes.
pub fn services_socket(run_dir: &Path) -> std::path::PathBuf {
    run_dir.join("plugins").join(SERVICES_SOCKET)
}

use crate::config::{self, Config};
use rvirt_host::backend::{Backend, EventCallback};
use rvirt_host::remote::{Keepalive, RemoteBackend};
use rvirt_host::{DomainEvent, DomainId, DomainInfo, NodeInfo, Result, TypedParam};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The isolated plugins of one daemon, by URI scheme.
pub struct Isolation {
    by_scheme: BTreeMap<String, Arc<Supervisor>>,
    by_name: BTreeMap<String, Arc<Supervisor>>,
}

impl std::fmt::Debug for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Isolation")
            .field("plugins", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Isolation {
    /// A supervisor (not started yet) for every plugin the scan found whose isolation is
    /// `process`; `served` are the daemon's URIs, each handed to the host process of the
    /// plugin serving its scheme. The pool types and forward modes such a plugin serves
    /// (its storage and network facets, as the scan gave them out: the first plugin along
    /// the search path claiming one serves it) are registered with `runtime` as
    /// forwarding backends ahead of the plugins, so the daemon never loads the plugin
    /// itself: call this before any root's pools or networks are opened.
    pub fn new(
        runtime: &rvirt_host::Runtime,
        config: &Config,
        served: &[String],
        run_dir: &Path,
        cgroup_tag: &str,
    ) -> std::io::Result<Isolation> {
        let exe = std::env::current_exe()?;
        let mut by_scheme = BTreeMap::new();
        let mut by_name = BTreeMap::new();
        // forward modes already given out (pool types: the scan's refusals say)
        let mut modes_taken: Vec<String> = Vec::new();
        let secrets_uri = served
            .iter()
            .find(|u| !u.starts_with("test:"))
            .or(served.first())
            .cloned();
        for record in runtime.scanned_plugins() {
            let rvirt_host::PluginStatus::Loaded(m) = &record.status else {
                continue;
            };
            let pool_types: Vec<String> = m
                .pool_types
                .iter()
                .filter(|t| !record.refused_pool_types.iter().any(|r| &r.pool_type == *t))
                .cloned()
                .collect();
            let forward_modes: Vec<String> = m
                .forward_modes
                .iter()
                .filter(|f| !modes_taken.contains(f))
                .cloned()
                .collect();
            modes_taken.extend(forward_modes.iter().cloned());
            if m.schemes.is_empty() && pool_types.is_empty() && forward_modes.is_empty() {
                continue;
            }
            let settings = config.plugin_settings(&m.name);
            if settings.isolation != config::Isolation::Process {
                continue;
            }
            let backends =
                (!pool_types.is_empty() || !forward_modes.is_empty()).then(|| BackendFacets {
                    pool_types: pool_types.clone(),
                    forward_modes: forward_modes.clone(),
                    secrets_uri: secrets_uri.clone(),
                });
            let uris: Vec<String> = served
                .iter()
                .filter(|u| {
                    rvirt_host::ConnectUri::parse(u).is_ok_and(|p| m.schemes.contains(&p.driver))
                })
                .cloned()
                .collect();
            let sup = Supervisor::new(
                m.name.clone(),
                record.path.clone(),
                exe.clone(),
                uris,
                backends,
                settings,
                supervisor::Place {
                    dir: run_dir.join("plugins"),
                    cgroup_tag: cgroup_tag.to_string(),
                },
            );
            if !pool_types.is_empty() || !forward_modes.is_empty() {
                let fwd = forward::Forwarder::new(Arc::clone(&sup));
                for t in &pool_types {
                    runtime.add_pool_backend(
                        t,
                        Arc::new(forward::ForwardPool::new(Arc::clone(&fwd), t)),
                    );
                }
                for f in &forward_modes {
                    runtime.add_network_backend(
                        f,
                        Arc::new(forward::ForwardNet::new(Arc::clone(&fwd), f)),
                    );
                }
            }
            for s in &m.schemes {
                by_scheme
                    .entry(s.clone())
                    .or_insert_with(|| Arc::clone(&sup));
            }
            by_name.insert(m.name.clone(), sup);
        }
        Ok(Isolation { by_scheme, by_name })
    }

    /// Reports every isolated plugin in `report` as its process starts serving.
    pub fn set_report(
        &self,
        runtime: &rvirt_host::Runtime,
        report: &Arc<crate::plugin_report::PluginReport>,
    ) {
        for record in runtime.scanned_plugins() {
            let rvirt_host::PluginStatus::Loaded(m) = &record.status else {
                continue;
            };
            let Some(sup) = self.by_name.get(&m.name) else {
                continue;
            };
            sup.set_report(
                Arc::clone(report),
                rvirt_host::ServedPlugin {
                    name: m.name.clone(),
                    version: m.version.clone(),
                    api_version: m.api_version.clone(),
                    file: record.path.clone(),
                    real_file: record.path.clone(),
                    schemes: m.schemes.clone(),
                    pool_types: m.pool_types.clone(),
                    forward_modes: m.forward_modes.clone(),
                },
            );
        }
    }

    /// Whether no plugin runs in a process of its own.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The supervisor of the plugin serving `scheme`, when it runs in its own process.
    pub fn for_scheme(&self, scheme: &str) -> Option<&Arc<Supervisor>> {
        self.by_scheme.get(scheme)
    }

    /// The supervisor of the plugin named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Supervisor>> {
        self.by_name.get(name)
    }

    /// Stops every plugin host process (daemon shutdown), then removes the plugins'
    /// cgroups once their processes are gone (best effort, logged).
    pub fn stop_all(&self) {
        for s in self.by_name.values() {
            s.stop();
        }
        for s in self.by_name.values() {
            s.remove_cgroup(std::time::Duration::from_secs(5));
        }
    }
}

/// Opens `uri` for the daemon: through the host process of the plugin serving its
/// scheme when that plugin is isolated, in-process otherwise. Every connection the
/// daemon opens goes through here, so an isolated plugin is never loaded into the
/// daemon as well.
pub fn open_routed(
    runtime: &rvirt_host::Runtime,
    isolation: Option<&Isolation>,
    uri: &str,
    read_only: bool,
) -> Result<rvirt_host::Connection> {
    let sup = isolation.and_then(|iso| {
        let scheme = rvirt_host::ConnectUri::parse(uri).ok()?.driver;
        iso.for_scheme(&scheme).cloned()
    });
    match sup {
        Some(sup) => open(runtime, &sup, uri, read_only),
        None => runtime.open(uri, read_only),
    }
}

/// Opens `uri` with its domain operations served by the plugin's host process.
pub fn open(
    runtime: &rvirt_host::Runtime,
    sup: &Arc<Supervisor>,
    uri: &str,
    read_only: bool,
) -> Result<rvirt_host::Connection> {
    let backend = IsolatedBackend::connect(sup, uri, read_only)?;
    runtime.open_with_backend(uri, read_only, Some(Arc::new(backend)))
}

/// One client connection's backend, served by the plugin host process of the moment.
pub struct IsolatedBackend {
    inner: Arc<Inner>,
    /// Whether the plugin host process's connection owns its storage and its networks
    /// (plugin API 1.10): those calls are then forwarded there ([`owned`]).
    owns: (bool, bool),
}

/// A live link to one generation of the plugin host process.
struct Link {
    generation: Arc<Generation>,
    remote: Arc<RemoteBackend>,
    /// The registration of [`Inner::forward`] on `remote`, while anyone subscribes.
    remote_sub: Option<u64>,
}

pub(crate) struct Inner {
    sup: Arc<Supervisor>,
    uri: String,
    driver: String,
    read_only: bool,
    link: Mutex<Option<Link>>,
    subscribers: Mutex<Vec<(u64, EventCallback)>>,
    next_sub: AtomicU64,
    me: Weak<Inner>,
}

impl IsolatedBackend {
    /// Connects to the plugin's current process (starting it if need be) and opens `uri`.
    pub fn connect(sup: &Arc<Supervisor>, uri: &str, read_only: bool) -> Result<Self> {
        let driver = rvirt_host::ConnectUri::parse(uri)?.driver;
        let inner = Arc::new_cyclic(|me| Inner {
            sup: Arc::clone(sup),
            uri: uri.to_string(),
            driver,
            read_only,
            link: Mutex::new(None),
            subscribers: Mutex::new(Vec::new()),
            next_sub: AtomicU64::new(1),
            me: me.clone(),
        });
        let (_, remote) = inner.current()?;
        // a process that does not know the question (or cannot answer it) owns nothing
        let owns = |f| remote.supports_feature(f).unwrap_or(false);
        let owns = (
            owns(rvirt_host::backend::feature::OWNED_STORAGE),
            owns(rvirt_host::backend::feature::OWNED_NETWORKS),
        );
        sup.add_listener(Arc::downgrade(&inner));
        Ok(IsolatedBackend { inner, owns })
    }
}

impl Inner {
    /// The link to the current process, connecting (and registering events) when the
    /// process changed since the last call.
    fn current(&self) -> Result<(Arc<Generation>, Arc<RemoteBackend>)> {
        let mut link = lock(&self.link);
        if let Some(l) = link.as_ref()
            && !l.remote.is_closed()
            && self.sup.is_current(&l.generation)
        {
            return Ok((Arc::clone(&l.generation), Arc::clone(&l.remote)));
        }
        // the old link (if any) is dropped outside the lock's critical path below
        let old = link.take();
        let connect = |generation: &Arc<Generation>| {
            RemoteBackend::connect_with_deadline(
                generation.socket(),
                &self.uri,
                self.read_only,
                Keepalive {
                    interval: Duration::from_secs(1),
                    count: 5,
                },
                self.sup.settings().call_timeout(),
            )
        };
        let mut generation = self.sup.current()?;
        let remote = match connect(&generation) {
            Ok(r) => r,
            // it died between being handed out and the connect: once more, with its
            // successor
            Err(_) if generation.is_dead() => {
                generation = self.sup.current()?;
                connect(&generation).map_err(|e| self.sup.unreachable(&generation, &e))?
            }
            Err(e) => return Err(self.sup.unreachable(&generation, &e)),
        };
        let remote = Arc::new(remote);
        let remote_sub = if lock(&self.subscribers).is_empty() {
            None
        } else {
            Some(remote.subscribe_events(self.forwarder())?)
        };
        *link = Some(Link {
            generation: Arc::clone(&generation),
            remote: Arc::clone(&remote),
            remote_sub,
        });
        drop(link);
        if let Some(old) = old {
            // closing an old link may wait for its (retiring) process: off this call
            std::thread::spawn(move || drop(old));
        }
        Ok((generation, remote))
    }

    /// The callback registered on the process's connection: hands each event to this
    /// connection's subscribers.
    fn forwarder(&self) -> EventCallback {
        let me = self.me.clone();
        Arc::new(move |event: &DomainEvent| {
            if let Some(inner) = me.upgrade() {
                let subs: Vec<EventCallback> = lock(&inner.subscribers)
                    .iter()
                    .map(|(_, c)| Arc::clone(c))
                    .collect();
                for c in subs {
                    c(event);
                }
            }
        })
    }

    /// A new process is serving: move there now when events are subscribed (nothing
    /// else would reconnect before the next call).
    pub(crate) fn generation_changed(&self) {
        if !lock(&self.subscribers).is_empty()
            && let Err(e) = self.current()
        {
            tracing::warn!(
                plugin = self.sup.name(),
                uri = self.uri,
                "cannot register events with the new plugin process: {e}"
            );
        }
    }

    fn call<T>(&self, op: &str, f: impl FnOnce(&RemoteBackend) -> Result<T>) -> Result<T> {
        let (generation, remote) = self.current()?;
        let r = {
            let _busy = generation.busy();
            f(&remote)
        };
        match r {
            Err(e)
                if e.code() == ErrorCode::OperationTimeout as i32
                    && e.domain() == ErrorDomain::Rpc as i32 =>
            {
                self.forget(&generation);
                Err(self.sup.hung(&generation, api_name(op)))
            }
            Err(_) if remote.is_closed() => {
                self.forget(&generation);
                Err(self.sup.died_during(&generation, api_name(op)))
            }
            r => r,
        }
    }

    fn forget(&self, generation: &Arc<Generation>) {
        let mut link = lock(&self.link);
        if link
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(&l.generation, generation))
        {
            let old = link.take();
            drop(link);
            std::thread::spawn(move || drop(old));
        }
    }
}

impl Backend for IsolatedBackend {
    fn driver_name(&self) -> &str {
        &self.inner.driver
    }

    fn owned_storage(&self) -> Option<Arc<dyn rvirt_host::StorageService>> {
        self.owns.0.then(|| {
            Arc::new(owned::IsolatedStorage(Arc::clone(&self.inner)))
                as Arc<dyn rvirt_host::StorageService>
        })
    }

    fn owned_networks(&self) -> Option<Arc<dyn rvirt_host::NetworkOps>> {
        self.owns.1.then(|| {
            Arc::new(owned::IsolatedNetworks(Arc::clone(&self.inner)))
                as Arc<dyn rvirt_host::NetworkOps>
        })
    }

    fn subscribe_events(&self, callback: EventCallback) -> Result<u64> {
        let id = self.inner.next_sub.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut subs = lock(&self.inner.subscribers);
            subs.push((id, callback));
            subs.len() == 1
        };
        if first {
            let (generation, remote) = self.inner.current()?;
            let mut link = lock(&self.inner.link);
            if let Some(l) = link.as_mut()
                && Arc::ptr_eq(&l.generation, &generation)
                && l.remote_sub.is_none()
            {
                match remote.subscribe_events(self.inner.forwarder()) {
                    Ok(rid) => l.remote_sub = Some(rid),
                    Err(e) => {
                        lock(&self.inner.subscribers).retain(|(i, _)| *i != id);
                        return Err(e);
                    }
                }
            }
        }
        Ok(id)
    }

    fn unsubscribe_events(&self, id: u64) -> Result<()> {
        let empty = {
            let mut subs = lock(&self.inner.subscribers);
            let before = subs.len();
            subs.retain(|(i, _)| *i != id);
            if subs.len() == before {
                return Err(rvirt_host::Error::driver(
                    ErrorCode::InvalidArg,
                    ErrorDomain::Rpc,
                    format!("no event callback with id {id}"),
                ));
            }
            subs.is_empty()
        };
        if empty {
            let mut link = lock(&self.inner.link);
            if let Some(l) = link.as_mut()
                && let Some(rid) = l.remote_sub.take()
                && !l.remote.is_closed()
            {
                l.remote.unsubscribe_events(rid)?;
            }
        }
        Ok(())
    }

    fn get_type(&self) -> Result<String> {
        self.inner.call("get_type", |b| b.get_type())
    }

    fn get_version(&self) -> Result<u64> {
        self.inner.call("get_version", |b| b.get_version())
    }

    fn get_uri(&self) -> Result<String> {
        self.inner.call("get_uri", |b| b.get_uri())
    }

    fn get_hostname(&self) -> Result<String> {
        self.inner.call("get_hostname", |b| b.get_hostname())
    }

    fn get_capabilities(&self) -> Result<String> {
        self.inner
            .call("get_capabilities", |b| b.get_capabilities())
    }

    fn node_get_info(&self) -> Result<NodeInfo> {
        self.inner.call("node_get_info", |b| b.node_get_info())
    }

    fn list_all_domains(&self, flags: u32) -> Result<Vec<DomainId>> {
        self.inner
            .call("list_all_domains", |b| b.list_all_domains(flags))
    }

    fn lookup_by_name(&self, name: &str) -> Result<DomainId> {
        self.inner
            .call("lookup_by_name", |b| b.lookup_by_name(name))
    }

    fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<DomainId> {
        self.inner
            .call("lookup_by_uuid", |b| b.lookup_by_uuid(uuid))
    }

    fn lookup_by_id(&self, id: i32) -> Result<DomainId> {
        self.inner.call("lookup_by_id", |b| b.lookup_by_id(id))
    }

    fn define_xml(&self, xml: &str, flags: u32) -> Result<DomainId> {
        self.inner.call("define_xml", |b| b.define_xml(xml, flags))
    }

    fn undefine(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.inner.call("undefine", |b| b.undefine(uuid, flags))
    }

    fn create(&self, uuid: uuid::Uuid, flags: u32) -> Result<DomainId> {
        self.inner.call("create", |b| b.create(uuid, flags))
    }

    fn create_xml(&self, xml: &str, flags: u32) -> Result<DomainId> {
        self.inner.call("create_xml", |b| b.create_xml(xml, flags))
    }

    fn destroy(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.inner.call("destroy", |b| b.destroy(uuid, flags))
    }

    fn shutdown(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.inner.call("shutdown", |b| b.shutdown(uuid, flags))
    }

    fn reboot(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.inner.call("reboot", |b| b.reboot(uuid, flags))
    }

    fn suspend(&self, uuid: uuid::Uuid) -> Result<()> {
        self.inner.call("suspend", |b| b.suspend(uuid))
    }

    fn resume(&self, uuid: uuid::Uuid) -> Result<()> {
        self.inner.call("resume", |b| b.resume(uuid))
    }

    fn get_info(&self, uuid: uuid::Uuid) -> Result<DomainInfo> {
        self.inner.call("get_info", |b| b.get_info(uuid))
    }

    fn get_state(&self, uuid: uuid::Uuid) -> Result<(i32, i32)> {
        self.inner.call("get_state", |b| b.get_state(uuid))
    }

    fn get_xml_desc(&self, uuid: uuid::Uuid, flags: u32) -> Result<String> {
        self.inner
            .call("get_xml_desc", |b| b.get_xml_desc(uuid, flags))
    }

    fn is_persistent(&self, uuid: uuid::Uuid) -> Result<bool> {
        self.inner.call("is_persistent", |b| b.is_persistent(uuid))
    }

    fn get_autostart(&self, uuid: uuid::Uuid) -> Result<bool> {
        self.inner.call("get_autostart", |b| b.get_autostart(uuid))
    }

    fn set_autostart(&self, uuid: uuid::Uuid, autostart: bool) -> Result<()> {
        self.inner
            .call("set_autostart", |b| b.set_autostart(uuid, autostart))
    }

    fn get_vcpus_flags(&self, uuid: uuid::Uuid, flags: u32) -> Result<i32> {
        self.inner
            .call("get_vcpus_flags", |b| b.get_vcpus_flags(uuid, flags))
    }

    fn get_os_type(&self, uuid: uuid::Uuid) -> Result<String> {
        self.inner.call("get_os_type", |b| b.get_os_type(uuid))
    }

    fn has_managed_save_image(&self, uuid: uuid::Uuid, flags: u32) -> Result<bool> {
        self.inner.call("has_managed_save_image", |b| {
            b.has_managed_save_image(uuid, flags)
        })
    }

    fn domain_xml_to_native(&self, format: &str, xml: &str, flags: u32) -> Result<String> {
        self.inner.call("domain_xml_to_native", |b| {
            b.domain_xml_to_native(format, xml, flags)
        })
    }

    fn domain_xml_from_native(&self, format: &str, config: &str, flags: u32) -> Result<String> {
        self.inner.call("domain_xml_from_native", |b| {
            b.domain_xml_from_native(format, config, flags)
        })
    }

    fn set_memory_flags(&self, uuid: uuid::Uuid, kib: u64, flags: u32) -> Result<()> {
        self.inner
            .call("set_memory_flags", |b| b.set_memory_flags(uuid, kib, flags))
    }

    fn set_memory_stats_period(&self, uuid: uuid::Uuid, period: i32, flags: u32) -> Result<()> {
        self.inner.call("set_memory_stats_period", |b| {
            b.set_memory_stats_period(uuid, period, flags)
        })
    }

    fn set_vcpus_flags(&self, uuid: uuid::Uuid, nvcpus: u32, flags: u32) -> Result<()> {
        self.inner.call("set_vcpus_flags", |b| {
            b.set_vcpus_flags(uuid, nvcpus, flags)
        })
    }

    fn attach_device(&self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<()> {
        self.inner
            .call("attach_device", |b| b.attach_device(uuid, xml, flags))
    }

    fn detach_device(&self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<()> {
        self.inner
            .call("detach_device", |b| b.detach_device(uuid, xml, flags))
    }

    fn snapshot_create_xml(&self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<String> {
        self.inner.call("snapshot_create_xml", |b| {
            b.snapshot_create_xml(uuid, xml, flags)
        })
    }

    fn snapshot_list(&self, uuid: uuid::Uuid, flags: u32) -> Result<Vec<String>> {
        self.inner
            .call("snapshot_list", |b| b.snapshot_list(uuid, flags))
    }

    fn snapshot_list_children(
        &self,
        uuid: uuid::Uuid,
        name: &str,
        flags: u32,
    ) -> Result<Vec<String>> {
        self.inner.call("snapshot_list_children", |b| {
            b.snapshot_list_children(uuid, name, flags)
        })
    }

    fn snapshot_get_xml_desc(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<String> {
        self.inner.call("snapshot_get_xml_desc", |b| {
            b.snapshot_get_xml_desc(uuid, name, flags)
        })
    }

    fn snapshot_current(&self, uuid: uuid::Uuid, flags: u32) -> Result<String> {
        self.inner
            .call("snapshot_current", |b| b.snapshot_current(uuid, flags))
    }

    fn snapshot_get_parent(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<String> {
        self.inner.call("snapshot_get_parent", |b| {
            b.snapshot_get_parent(uuid, name, flags)
        })
    }

    fn snapshot_revert(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<()> {
        self.inner
            .call("snapshot_revert", |b| b.snapshot_revert(uuid, name, flags))
    }

    fn snapshot_delete(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<()> {
        self.inner
            .call("snapshot_delete", |b| b.snapshot_delete(uuid, name, flags))
    }
    fn save(&self, uuid: uuid::Uuid, path: &str, dxml: Option<&str>, flags: u32) -> Result<()> {
        self.inner.call("save", |b| b.save(uuid, path, dxml, flags))
    }

    fn restore(&self, path: &str, dxml: Option<&str>, flags: u32) -> Result<()> {
        self.inner.call("restore", |b| b.restore(path, dxml, flags))
    }

    fn save_image_get_xml_desc(&self, path: &str, flags: u32) -> Result<String> {
        self.inner.call("save_image_get_xml_desc", |b| {
            b.save_image_get_xml_desc(path, flags)
        })
    }

    fn save_image_define_xml(&self, path: &str, dxml: &str, flags: u32) -> Result<()> {
        self.inner.call("save_image_define_xml", |b| {
            b.save_image_define_xml(path, dxml, flags)
        })
    }

    fn managed_save(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.inner
            .call("managed_save", |b| b.managed_save(uuid, flags))
    }

    fn managed_save_remove(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.inner.call("managed_save_remove", |b| {
            b.managed_save_remove(uuid, flags)
        })
    }

    fn domain_stats(&self, uuid: uuid::Uuid, stats: u32, flags: u32) -> Result<Vec<TypedParam>> {
        self.inner
            .call("domain_stats", |b| b.domain_stats(uuid, stats, flags))
    }

    fn block_stats(&self, uuid: uuid::Uuid, disk: &str, flags: u32) -> Result<Vec<TypedParam>> {
        self.inner
            .call("block_stats", |b| b.block_stats(uuid, disk, flags))
    }

    fn interface_stats(&self, uuid: uuid::Uuid, device: &str) -> Result<Vec<TypedParam>> {
        self.inner
            .call("interface_stats", |b| b.interface_stats(uuid, device))
    }

    fn memory_stats(&self, uuid: uuid::Uuid, flags: u32) -> Result<Vec<TypedParam>> {
        self.inner
            .call("memory_stats", |b| b.memory_stats(uuid, flags))
    }

    fn job_stats(&self, uuid: uuid::Uuid, flags: u32) -> Result<(i32, Vec<TypedParam>)> {
        self.inner.call("job_stats", |b| b.job_stats(uuid, flags))
    }

    fn cpu_stats(
        &self,
        uuid: uuid::Uuid,
        start_cpu: i32,
        ncpus: u32,
        flags: u32,
    ) -> Result<Vec<Vec<TypedParam>>> {
        self.inner
            .call("cpu_stats", |b| b.cpu_stats(uuid, start_cpu, ncpus, flags))
    }

    fn migrate_begin(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        flags: u32,
    ) -> Result<(String, Vec<u8>)> {
        self.inner
            .call("migrate_begin", |b| b.migrate_begin(uuid, params, flags))
    }

    fn migrate_prepare(
        &self,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
    ) -> Result<(Option<String>, Vec<u8>)> {
        self.inner.call("migrate_prepare", |b| {
            b.migrate_prepare(params, cookie, flags)
        })
    }

    fn migrate_perform(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
    ) -> Result<Vec<u8>> {
        self.inner.call("migrate_perform", |b| {
            b.migrate_perform(uuid, params, cookie, flags)
        })
    }

    fn migrate_finish(
        &self,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
        cancelled: bool,
    ) -> Result<(DomainId, Vec<u8>)> {
        self.inner.call("migrate_finish", |b| {
            b.migrate_finish(params, cookie, flags, cancelled)
        })
    }

    fn migrate_confirm(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
        cancelled: bool,
    ) -> Result<()> {
        self.inner.call("migrate_confirm", |b| {
            b.migrate_confirm(uuid, params, cookie, flags, cancelled)
        })
    }

    fn abort_job(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.inner.call("abort_job", |b| b.abort_job(uuid, flags))
    }

    fn screenshot(&self, uuid: uuid::Uuid, screen: u32, flags: u32) -> Result<(String, Vec<u8>)> {
        self.inner
            .call("screenshot", |b| b.screenshot(uuid, screen, flags))
    }
}

/// libvirt's name of the API a backend method implements, for error messages.
fn api_name(method: &str) -> &str {
    match method {
        "get_type" => "virConnectGetType",
        "get_version" => "virConnectGetVersion",
        "get_uri" => "virConnectGetURI",
        "get_hostname" => "virConnectGetHostname",
        "get_capabilities" => "virConnectGetCapabilities",
        "node_get_info" => "virNodeGetInfo",
        "list_all_domains" => "virConnectListAllDomains",
        "lookup_by_name" => "virDomainLookupByName",
        "lookup_by_uuid" => "virDomainLookupByUUID",
        "lookup_by_id" => "virDomainLookupByID",
        "define_xml" => "virDomainDefineXMLFlags",
        "undefine" => "virDomainUndefineFlags",
        "create" => "virDomainCreateWithFlags",
        "create_xml" => "virDomainCreateXML",
        "destroy" => "virDomainDestroyFlags",
        "shutdown" => "virDomainShutdownFlags",
        "reboot" => "virDomainReboot",
        "suspend" => "virDomainSuspend",
        "resume" => "virDomainResume",
        "get_info" => "virDomainGetInfo",
        "get_state" => "virDomainGetState",
        "get_xml_desc" => "virDomainGetXMLDesc",
        "is_persistent" => "virDomainIsPersistent",
        "get_autostart" => "virDomainGetAutostart",
        "set_autostart" => "virDomainSetAutostart",
        "get_vcpus_flags" => "virDomainGetVcpusFlags",
        "get_os_type" => "virDomainGetOSType",
        "has_managed_save_image" => "virDomainHasManagedSaveImage",
        "domain_xml_to_native" => "virConnectDomainXMLToNative",
        "domain_xml_from_native" => "virConnectDomainXMLFromNative",
        "set_memory_flags" => "virDomainSetMemoryFlags",
        "set_vcpus_flags" => "virDomainSetVcpusFlags",
        "attach_device" => "virDomainAttachDeviceFlags",
        "detach_device" => "virDomainDetachDeviceFlags",
        "snapshot_create_xml" => "virDomainSnapshotCreateXML",
        "snapshot_list" => "virDomainListAllSnapshots",
        "snapshot_list_children" => "virDomainSnapshotListAllChildren",
        "snapshot_get_xml_desc" => "virDomainSnapshotGetXMLDesc",
        "snapshot_current" => "virDomainSnapshotCurrent",
        "snapshot_get_parent" => "virDomainSnapshotGetParent",
        "snapshot_revert" => "virDomainRevertToSnapshot",
        "snapshot_delete" => "virDomainSnapshotDelete",
        "save" => "virDomainSaveFlags",
        "restore" => "virDomainRestoreFlags",
        "save_image_get_xml_desc" => "virDomainSaveImageGetXMLDesc",
        "save_image_define_xml" => "virDomainSaveImageDefineXML",
        "managed_save" => "virDomainManagedSave",
        "managed_save_remove" => "virDomainManagedSaveRemove",
        "domain_stats" => "virConnectGetAllDomainStats",
        "block_stats" => "virDomainBlockStatsFlags",
        "interface_stats" => "virDomainInterfaceStats",
        "memory_stats" => "virDomainMemoryStats",
        "set_memory_stats_period" => "virDomainSetMemoryStatsPeriod",
        "job_stats" => "virDomainGetJobStats",
        "cpu_stats" => "virDomainGetCPUStats",
        "migrate_begin" => "virDomainMigrateBegin3Params",
        "migrate_prepare" => "virDomainMigratePrepare3Params",
        "migrate_perform" => "virDomainMigratePerform3Params",
        "migrate_finish" => "virDomainMigrateFinish3Params",
        "migrate_confirm" => "virDomainMigrateConfirm3Params",
        "abort_job" => "virDomainAbortJob",
        "screenshot" => "virDomainScreenshot",
        other => other,
    }
}

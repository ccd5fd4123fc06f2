//! The remote driver: URIs with a transport or a host (`test+unix:///default?socket=...`)
//! are served by a daemon speaking libvirt's remote protocol (`rvirtd`, or libvirtd).
//!
//! Transports: `unix`, `tcp`, `tls` and `ssh` (see [`transport`]). One connection is one socket: callers send
//! CALLs under a write lock and wait for the REPLY with their serial, while a reader
//! thread cuts incoming frames, hands replies to their callers, answers keepalive PINGs
//! and runs the event callbacks.

use crate::backend::{Backend, EventCallback};
use crate::uri::ConnectUri;
use crate::{
    DomainEvent, DomainId, DomainInfo, DomainState, Error, NodeInfo, Result, TypedParam,
    TypedParamValue,
};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use rvirt_wire::protocol::{self, NonnullDomain, RemoteError};
use rvirt_wire::remote::*;
use rvirt_wire::{Frame, Header, Procedure, RemoteProcedure, Status, frame, procs};
use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

mod console;
mod direct;
mod networks;
mod secrets;
mod storage;
pub mod transport;
pub use console::{ConsoleWriter, RemoteConsole};
pub use direct::{ESCAPE_AFTER, Escape, with_escape};

/// How the remote driver tells a dead daemon from a slow call, as libvirt's client does:
/// while a call waits, the client pings the daemon every `interval` of silence and gives
/// up once nothing at all has arrived for `interval * count`. A call that the daemon is
/// still working on keeps waiting as long as the daemon answers the pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence after which the client pings.
    pub interval: Duration,
    /// Unanswered intervals after which the connection is declared dead.
    pub count: u32,
}

impl Default for Keepalive {
    /// libvirt's client defaults: 5 s, 5 times.
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(5),
            count: 5,
        }
    }
}

/// How the message of a call that exceeded its deadline starts
/// ([`RemoteBackend::connect_with_deadline`]).
pub const DEADLINE_PREFIX: &str = "no reply within the call deadline of";

/// Opens a connection to the daemon the URI names.
pub fn open(uri: &ConnectUri, read_only: bool) -> Result<Arc<RemoteBackend>> {
    if uri.transport.as_deref() == Some("ssh") {
        let (parts, stderr) = transport::ssh(uri, read_only)?;
        return RemoteBackend::over_parts(
            parts,
            &uri.server_name(),
            read_only,
            Keepalive::default(),
        )
        .map(Arc::new)
        .map_err(|e| {
            // the ssh client's own words say why (host key, authentication, no helper)
            std::thread::sleep(Duration::from_millis(50));
            let why = stderr.text();
            if why.is_empty() {
                e
            } else {
                Error::driver(
                    ErrorCode::NoConnect,
                    ErrorDomain::Remote,
                    format!("{e}: ssh says: {why}"),
                )
            }
        });
    }
    let parts = match uri.transport.as_deref() {
        Some("unix") => None,
        None if uri.host.is_none() || uri.host.as_deref() == Some("localhost") => None,
        // a host without a transport means TLS, as in libvirt
        Some("tls") | None => Some(transport::tls(uri)?),
        Some("tcp") => Some(transport::tcp(uri)?),
        Some(other) => {
            return Err(Error::driver(
                ErrorCode::NoSupport,
                ErrorDomain::Remote,
                format!(
                    "transport '{other}' of '{}' is not supported by the remote driver (only unix, tcp, tls and ssh)",
                    uri.original
                ),
            ));
        }
    };
    let remote = match parts {
        Some(parts) => {
            RemoteBackend::over_parts(parts, &uri.server_name(), read_only, Keepalive::default())?
        }
        None => {
            let path = socket_path(uri, read_only)?;
            RemoteBackend::connect(&path, &uri.server_name(), read_only)?
        }
    };
    Ok(Arc::new(remote))
}

/// The socket to use: `socket=` from the URI, else rvirtd's default path (what
/// `rvirt-ssh-helper` relays to on the far side of an ssh connection too).
pub fn socket_path(uri: &ConnectUri, read_only: bool) -> Result<PathBuf> {
    if let Some(p) = uri.param("socket") {
        return Ok(PathBuf::from(p));
    }
    let name = if read_only {
        "rvirt-sock-ro"
    } else {
        "rvirt-sock"
    };
    if running_as_root() {
        return Ok(PathBuf::from("/run/rvirt").join(name));
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir).join("rvirt").join(name)),
        _ => Err(Error::driver(
            ErrorCode::NoConnect,
            ErrorDomain::Remote,
            format!(
                "no socket for '{}': add ?socket=PATH or set XDG_RUNTIME_DIR",
                uri.original
            ),
        )),
    }
}

fn running_as_root() -> bool {
    // /proc/self is owned by the effective uid of this process
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn rpc_error(message: impl Into<String>) -> Error {
    Error::driver(ErrorCode::Rpc, ErrorDomain::Rpc, message)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a waiting caller receives.
type Answer = std::result::Result<Frame, String>;

/// Event callbacks of one kind and the daemon-side registration behind them (`R`: the
/// daemon's callback id or ids while at least one subscriber exists).
pub(super) struct Subscribers<C, R> {
    next_id: u64,
    list: Vec<(u64, C)>,
    remote: Option<R>,
}

impl<C, R> Default for Subscribers<C, R> {
    fn default() -> Self {
        Subscribers {
            next_id: 0,
            list: Vec::new(),
            remote: None,
        }
    }
}

impl<C: Clone, R: Copy> Subscribers<C, R> {
    /// Adds a callback; returns its id and whether the daemon-side registration must
    /// be made (none exists yet).
    fn add(&mut self, cb: C) -> (u64, bool) {
        self.next_id += 1;
        self.list.push((self.next_id, cb));
        (self.next_id, self.remote.is_none())
    }

    /// Drops a callback whose daemon-side registration failed.
    fn forget(&mut self, id: u64) {
        self.list.retain(|(i, _)| *i != id);
    }

    /// Removes a callback; returns the daemon-side registration to drop when it was the
    /// last one. `what` names the kind of subscription for the error.
    fn remove(&mut self, id: u64, what: &str) -> Result<Option<R>> {
        let before = self.list.len();
        self.forget(id);
        if self.list.len() == before {
            return Err(Error::driver(
                ErrorCode::InvalidArg,
                ErrorDomain::Remote,
                format!("no {what} subscription {id}"),
            ));
        }
        Ok(if self.list.is_empty() {
            self.remote.take()
        } else {
            None
        })
    }

    /// Every callback.
    fn callbacks(&self) -> Vec<C> {
        self.list.iter().map(|(_, c)| c.clone()).collect()
    }

    /// The callbacks, when `ours` holds for the daemon-side registration (events of a
    /// registration this connection no longer holds are stale).
    fn callbacks_if(&self, ours: impl FnOnce(R) -> bool) -> Vec<C> {
        if self.remote.is_some_and(ours) {
            self.callbacks()
        } else {
            Vec::new()
        }
    }
}

/// State shared with the reader thread.
struct Link {
    writer: Mutex<Box<dyn std::io::Write + Send>>,
    /// The socket, to shut it down.
    socket: transport::Socket,
    pending: Mutex<HashMap<u32, mpsc::Sender<direct::Msg>>>,
    serial: AtomicU32,
    closed: AtomicBool,
    /// Domain events: the daemon's lifecycle callback id and its device-removed one
    /// (`None` where the daemon does not offer that event).
    subscribers: Mutex<Subscribers<EventCallback, (i32, Option<i32>)>>,
    /// Storage pool event callbacks.
    pool_subscribers: Mutex<Subscribers<crate::storage::PoolEventCallback, (i32, i32)>>,
    /// Secret event callbacks.
    secret_subscribers: Mutex<Subscribers<crate::secrets::SecretCallback, (i32, i32)>>,
    /// Network event callbacks.
    network_subscribers: Mutex<Subscribers<crate::networks::NetworkEventCallback, i32>>,
    /// Serialises event (de)registration with the daemon.
    registration: Mutex<()>,
    /// When the last frame of any kind arrived from the daemon.
    last_rx: Mutex<Instant>,
    keepalive: Keepalive,
    /// The longest a call may wait for its reply, however alive the daemon is (`None`:
    /// only the keepalive budget applies). Set for a plugin host process, whose hung
    /// plugin answers pings but never the call.
    deadline: Option<Duration>,
    /// Open volume streams: the packets the daemon sends for each, by the serial of the
    /// call that opened it. Bounded: a download nobody reads stops the reader thread,
    /// and so the daemon (flow control, as libvirt's client).
    streams: Mutex<HashMap<u32, mpsc::SyncSender<frame::StreamPacket>>>,
    /// A unix socket: callers read their own replies ([`direct`]).
    direct: Option<direct::Direct>,
}

impl Link {
    fn send(&self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        if self.closed.load(Ordering::Acquire) {
            return Err(rpc_error("the connection to the daemon is closed"));
        }
        lock(&self.writer)
            .write_all(bytes)
            .map_err(|e| rpc_error(format!("cannot send to the daemon: {e}")))
    }

    fn call<P: Procedure>(&self, args: &P::Args) -> Result<P::Ret> {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        self.call_with_serial::<P>(serial, args)
    }

    fn call_with_serial<P: Procedure>(&self, serial: u32, args: &P::Args) -> Result<P::Ret> {
        let header = Header::call(
            protocol::REMOTE_PROGRAM,
            protocol::REMOTE_VERSION,
            P::PROC.number(),
            serial,
        );
        let bytes = frame::encode(&header, args)
            .map_err(|e| rpc_error(format!("cannot encode {}: {e}", P::PROC.name())))?;
        let (tx, rx) = mpsc::channel();
        lock(&self.pending).insert(serial, tx);
        let calling = self.calling();
        if let Err(e) = self.send(&bytes) {
            lock(&self.pending).remove(&serial);
            return Err(e);
        }
        let answer = match &self.direct {
            Some(d) => self.wait_direct(d, &calling, serial, &rx),
            None => self.wait(serial, &rx),
        };
        drop(calling);
        let reply = match answer {
            Ok(f) => f,
            Err(e) if e.starts_with(DEADLINE_PREFIX) => {
                return Err(Error::driver(
                    ErrorCode::OperationTimeout,
                    ErrorDomain::Rpc,
                    format!("{}: {e}", P::PROC.name()),
                ));
            }
            Err(e) => return Err(rpc_error(e)),
        };
        match reply.header.status {
            Status::Ok => reply.body::<P::Ret>().map_err(|e| {
                rpc_error(format!(
                    "cannot decode the reply to {}: {e}",
                    P::PROC.name()
                ))
            }),
            _ => {
                let err: RemoteError = reply.body().map_err(|e| {
                    rpc_error(format!(
                        "cannot decode the error reply to {}: {e}",
                        P::PROC.name()
                    ))
                })?;
                Err(Error::Driver {
                    code: err.code,
                    domain: err.domain,
                    message: err.message.unwrap_or_else(|| "unknown error".into()),
                })
            }
        }
    }

    /// Waits for the reply `serial`, pinging a silent daemon; fails once the daemon has
    /// been silent for the whole keepalive budget (a hung or vanished peer).
    fn wait(&self, serial: u32, rx: &mpsc::Receiver<direct::Msg>) -> Answer {
        let started = Instant::now();
        loop {
            let mut slice = self.keepalive.interval;
            if let Some(deadline) = self.deadline {
                if let Some(e) = self.past_deadline(serial, started) {
                    return Err(e);
                }
                slice = slice.min(deadline.saturating_sub(started.elapsed()));
            }
            match rx.recv_timeout(slice) {
                Ok(direct::Msg::Answer(answer)) => return answer,
                Ok(direct::Msg::Lead) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the connection to the daemon is closed".into());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(why) = self.check_alive(serial, started) {
                        return Err(why);
                    }
                }
            }
        }
    }

    /// Sends a keepalive PING or PONG (best effort: a failed send shows up as a dead link).
    fn send_keepalive(&self, procedure: i32) {
        let header = Header::message(
            protocol::KEEPALIVE_PROGRAM,
            protocol::KEEPALIVE_VERSION,
            procedure,
        );
        if let Ok(bytes) = frame::encode(&header, &()) {
            let _ = self.send(&bytes);
        }
    }

    /// Declares the connection dead: later calls fail at once, the reader thread ends.
    fn kill(&self, why: &str) {
        tracing::debug!("remote connection closed: {why}");
        self.closed.store(true, Ordering::Release);
        self.socket.shutdown();
    }

    /// Reader thread body: runs until the socket fails or closes.
    fn read_loop(self: Arc<Link>, mut stream: Box<dyn std::io::Read + Send>) {
        if let Some(d) = &self.direct {
            // callers read their replies from their own handle
            drop(stream);
            return self.watch_loop(d);
        }
        let why = loop {
            match frame::read_frame(&mut stream) {
                Ok(Some(f)) => {
                    self.route(f, None, false);
                }
                Ok(None) => break "the daemon closed the connection".to_string(),
                Err(e) => break format!("connection to the daemon failed: {e}"),
            }
        };
        tracing::debug!("remote reader ends: {why}");
        self.fail(&why);
    }

    fn event(&self, f: &Frame) {
        let event = match RemoteProcedure::from_number(f.header.procedure) {
            Some(RemoteProcedure::DomainEventCallbackLifecycle) => {
                match f.body::<DomainEventCallbackLifecycleMsg>() {
                    // one daemon-side registration per event id: every event is ours
                    Ok(m) => {
                        DomainEvent::lifecycle(domain_id(m.msg.dom), m.msg.event, m.msg.detail)
                    }
                    Err(e) => {
                        tracing::debug!("undecodable lifecycle event: {e}");
                        return;
                    }
                }
            }
            Some(RemoteProcedure::DomainEventCallbackDeviceRemoved) => {
                match f.body::<DomainEventCallbackDeviceRemovedMsg>() {
                    Ok(m) => DomainEvent::device_removed(domain_id(m.msg.dom), m.msg.dev_alias),
                    Err(e) => {
                        tracing::debug!("undecodable device-removed event: {e}");
                        return;
                    }
                }
            }
            Some(
                RemoteProcedure::StoragePoolEventLifecycle
                | RemoteProcedure::StoragePoolEventRefresh,
            ) => return self.pool_event(f),
            Some(
                RemoteProcedure::SecretEventLifecycle | RemoteProcedure::SecretEventValueChanged,
            ) => return self.secret_event(f),
            Some(RemoteProcedure::NetworkEventLifecycle) => return self.network_event(f),
            _ => return,
        };
        // one daemon-side registration per connection: every event is ours, even one
        // that arrives before the registration's reply has been recorded
        let callbacks = lock(&self.subscribers).callbacks();
        for cb in callbacks {
            // A panicking callback must not end the reader thread: every later reply of
            // this connection travels through it.
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| cb(&event))) {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::warn!("a domain event callback panicked: {what}");
            }
        }
    }
}

fn domain_id(d: NonnullDomain) -> DomainId {
    DomainId {
        name: d.name,
        uuid: uuid::Uuid::from_bytes(d.uuid),
        id: d.id,
    }
}

/// A handle naming a domain by UUID only (the daemon resolves the UUID).
fn handle(uuid: uuid::Uuid) -> NonnullDomain {
    NonnullDomain {
        name: String::new(),
        uuid: *uuid.as_bytes(),
        id: -1,
    }
}

fn snap_handle(uuid: uuid::Uuid, name: &str) -> protocol::NonnullDomainSnapshot {
    protocol::NonnullDomainSnapshot {
        name: name.to_string(),
        dom: handle(uuid),
    }
}

/// A connection to a daemon.
pub struct RemoteBackend {
    link: Arc<Link>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBackend").finish_non_exhaustive()
    }
}

impl RemoteBackend {
    /// Connects to the socket at `path` and opens `name` (empty: the daemon's default).
    pub fn connect(path: &std::path::Path, name: &str, read_only: bool) -> Result<RemoteBackend> {
        Self::connect_with(path, name, read_only, Keepalive::default())
    }

    /// [`RemoteBackend::connect`] with the given keepalive settings.
    pub fn connect_with(
        path: &std::path::Path,
        name: &str,
        read_only: bool,
        keepalive: Keepalive,
    ) -> Result<RemoteBackend> {
        let stream = UnixStream::connect(path).map_err(|e| {
            Error::driver(
                ErrorCode::NoConnect,
                ErrorDomain::Remote,
                format!("cannot connect to the daemon at {}: {e}", path.display()),
            )
        })?;
        // Larger buffers than the default: a streamed 256 KiB packet goes in one write
        // (best effort; the kernel caps them at net.core.{w,r}mem_max).
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&stream, 4 << 20);
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&stream, 4 << 20);
        Self::over_stream(stream, name, read_only, keepalive)
    }

    /// [`RemoteBackend::connect_with`], and every call fails with
    /// `VIR_ERR_OPERATION_TIMEOUT` once it has waited `deadline` for its reply (the
    /// connection stays usable; a late reply is dropped).
    pub fn connect_with_deadline(
        path: &std::path::Path,
        name: &str,
        read_only: bool,
        keepalive: Keepalive,
        deadline: Option<Duration>,
    ) -> Result<RemoteBackend> {
        let stream = UnixStream::connect(path).map_err(|e| {
            Error::driver(
                ErrorCode::NoConnect,
                ErrorDomain::Remote,
                format!("cannot connect to the daemon at {}: {e}", path.display()),
            )
        })?;
        Self::over_parts_with(
            transport::unix(stream)?,
            name,
            read_only,
            keepalive,
            deadline,
        )
    }

    /// Whether the connection is dead (the daemon closed it, or it stopped answering):
    /// every later call fails at once.
    pub fn is_closed(&self) -> bool {
        self.link.closed.load(Ordering::Acquire)
    }

    /// Opens `name` over an already connected socket.
    pub fn over_stream(
        stream: UnixStream,
        name: &str,
        read_only: bool,
        keepalive: Keepalive,
    ) -> Result<RemoteBackend> {
        Self::over_parts(transport::unix(stream)?, name, read_only, keepalive)
    }

    /// Opens `name` over a connected transport.
    fn over_parts(
        parts: transport::Parts,
        name: &str,
        read_only: bool,
        keepalive: Keepalive,
    ) -> Result<RemoteBackend> {
        Self::over_parts_with(parts, name, read_only, keepalive, None)
    }

    fn over_parts_with(
        parts: transport::Parts,
        name: &str,
        read_only: bool,
        keepalive: Keepalive,
        deadline: Option<Duration>,
    ) -> Result<RemoteBackend> {
        let reading = parts.reader;
        // on a unix socket: how often a caller waiting for its own reply looks at its
        // deadline and the keepalive
        let tick = (keepalive.interval.min(deadline.unwrap_or(Duration::MAX)) / 10)
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        let direct = match parts.unix {
            Some(s) => Some(
                direct::Direct::new(s, tick)
                    .map_err(|e| rpc_error(format!("cannot set up the socket: {e}")))?,
            ),
            None => None,
        };
        let link = Arc::new(Link {
            writer: Mutex::new(parts.writer),
            socket: parts.socket,
            pending: Mutex::default(),
            serial: AtomicU32::new(1),
            closed: AtomicBool::new(false),
            subscribers: Mutex::default(),
            pool_subscribers: Mutex::default(),
            secret_subscribers: Mutex::default(),
            network_subscribers: Mutex::default(),
            registration: Mutex::new(()),
            last_rx: Mutex::new(Instant::now()),
            keepalive,
            deadline,
            streams: Mutex::default(),
            direct,
        });
        let reader = {
            let link = Arc::clone(&link);
            std::thread::Builder::new()
                .name("rvirt-remote".into())
                .spawn(move || link.read_loop(reading))
                .map_err(|e| rpc_error(format!("cannot start the reader thread: {e}")))?
        };
        let backend = RemoteBackend {
            link,
            reader: Some(reader),
        };
        let auth = backend.link.call::<procs::AuthList>(&())?;
        if !auth.types.is_empty() && !auth.types.contains(&protocol::auth::NONE) {
            return Err(Error::driver(
                ErrorCode::OperationFailed,
                ErrorDomain::Remote,
                format!(
                    "the daemon wants authentication {:?}, which is not supported",
                    auth.types
                ),
            ));
        }
        let flags = if read_only {
            protocol::connect_flags::RO
        } else {
            0
        };
        let name = (!name.is_empty()).then(|| name.to_string());
        backend
            .link
            .call::<procs::ConnectOpen>(&ConnectOpenArgs { name, flags })?;
        Ok(backend)
    }

    fn call<P: Procedure>(&self, args: &P::Args) -> Result<P::Ret> {
        self.link.call::<P>(args)
    }

    fn dom<P: Procedure<Args = DomainArgs>>(&self, uuid: uuid::Uuid) -> Result<P::Ret> {
        self.call::<P>(&DomainArgs { dom: handle(uuid) })
    }

    fn snap_flags<P: Procedure<Args = DomainSnapshotFlagsArgs>>(
        &self,
        uuid: uuid::Uuid,
        name: &str,
        flags: u32,
    ) -> Result<P::Ret> {
        self.call::<P>(&DomainSnapshotFlagsArgs {
            snap: snap_handle(uuid, name),
            flags,
        })
    }

    fn dom_flags<P: Procedure<Args = DomainFlagsArgs>>(
        &self,
        uuid: uuid::Uuid,
        flags: u32,
    ) -> Result<P::Ret> {
        self.call::<P>(&DomainFlagsArgs {
            dom: handle(uuid),
            flags,
        })
    }
}

impl Drop for RemoteBackend {
    fn drop(&mut self) {
        if !self.link.closed.load(Ordering::Acquire) {
            let _ = self.link.call::<procs::ConnectClose>(&());
        }
        self.link.socket.shutdown();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Backend for RemoteBackend {
    fn open_console(
        &self,
        uuid: uuid::Uuid,
        dev_name: Option<&str>,
        flags: u32,
    ) -> Result<RemoteConsole> {
        self.open_console_stream(uuid, dev_name, flags)
    }

    fn driver_name(&self) -> &str {
        "remote"
    }

    fn get_type(&self) -> Result<String> {
        Ok(self.call::<procs::ConnectGetType>(&())?.r#type)
    }

    fn get_version(&self) -> Result<u64> {
        Ok(self.call::<procs::ConnectGetVersion>(&())?.hv_ver)
    }

    fn get_uri(&self) -> Result<String> {
        Ok(self.call::<procs::ConnectGetUri>(&())?.uri)
    }

    fn get_hostname(&self) -> Result<String> {
        Ok(self.call::<procs::ConnectGetHostname>(&())?.hostname)
    }

    fn get_capabilities(&self) -> Result<String> {
        Ok(self
            .call::<procs::ConnectGetCapabilities>(&())?
            .capabilities)
    }

    fn node_get_info(&self) -> Result<NodeInfo> {
        let n = self.call::<procs::NodeGetInfo>(&())?;
        let u = |v: i32| u32::try_from(v).unwrap_or(0);
        Ok(NodeInfo {
            model: protocol::from_char_array(&n.model),
            memory_kib: n.memory,
            cpus: u(n.cpus),
            mhz: u(n.mhz),
            nodes: u(n.nodes),
            sockets: u(n.sockets),
            cores: u(n.cores),
            threads: u(n.threads),
        })
    }

    fn list_all_domains(&self, flags: u32) -> Result<Vec<DomainId>> {
        let ret = self.call::<procs::ConnectListAllDomains>(&ConnectListAllDomainsArgs {
            need_results: 1,
            flags,
        })?;
        Ok(ret.domains.into_iter().map(domain_id).collect())
    }

    fn lookup_by_name(&self, name: &str) -> Result<DomainId> {
        let args = DomainLookupByNameArgs {
            name: name.to_string(),
        };
        Ok(domain_id(
            self.call::<procs::DomainLookupByName>(&args)?.dom,
        ))
    }

    fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<DomainId> {
        let args = DomainLookupByUuidArgs {
            uuid: *uuid.as_bytes(),
        };
        Ok(domain_id(
            self.call::<procs::DomainLookupByUuid>(&args)?.dom,
        ))
    }

    fn lookup_by_id(&self, id: i32) -> Result<DomainId> {
        Ok(domain_id(
            self.call::<procs::DomainLookupById>(&DomainLookupByIdArgs { id })?
                .dom,
        ))
    }

    fn define_xml(&self, xml: &str, flags: u32) -> Result<DomainId> {
        let ret = if flags == 0 {
            self.call::<procs::DomainDefineXml>(&DomainDefineXmlArgs {
                xml: xml.to_string(),
            })?
        } else {
            let args = DomainDefineXmlFlagsArgs {
                xml: xml.to_string(),
                flags,
            };
            self.call::<procs::DomainDefineXmlFlags>(&args)?
        };
        Ok(domain_id(ret.dom))
    }

    fn undefine(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        if flags == 0 {
            self.dom::<procs::DomainUndefine>(uuid)
        } else {
            self.dom_flags::<procs::DomainUndefineFlags>(uuid, flags)
        }
    }

    fn create(&self, uuid: uuid::Uuid, flags: u32) -> Result<DomainId> {
        Ok(domain_id(
            self.dom_flags::<procs::DomainCreateWithFlags>(uuid, flags)?
                .dom,
        ))
    }

    fn create_xml(&self, xml: &str, flags: u32) -> Result<DomainId> {
        let args = DomainCreateXmlArgs {
            xml_desc: xml.to_string(),
            flags,
        };
        Ok(domain_id(self.call::<procs::DomainCreateXml>(&args)?.dom))
    }

    fn destroy(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        if flags == 0 {
            self.dom::<procs::DomainDestroy>(uuid)
        } else {
            self.dom_flags::<procs::DomainDestroyFlags>(uuid, flags)
        }
    }

    fn shutdown(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        if flags == 0 {
            self.dom::<procs::DomainShutdown>(uuid)
        } else {
            self.dom_flags::<procs::DomainShutdownFlags>(uuid, flags)
        }
    }

    fn reboot(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.dom_flags::<procs::DomainReboot>(uuid, flags)
    }

    fn suspend(&self, uuid: uuid::Uuid) -> Result<()> {
        self.dom::<procs::DomainSuspend>(uuid)
    }

    fn resume(&self, uuid: uuid::Uuid) -> Result<()> {
        self.dom::<procs::DomainResume>(uuid)
    }

    fn get_info(&self, uuid: uuid::Uuid) -> Result<DomainInfo> {
        let i = self.dom::<procs::DomainGetInfo>(uuid)?;
        Ok(DomainInfo {
            state: DomainState::from_i32(i32::from(i.state)),
            max_mem_kib: i.max_mem,
            memory_kib: i.memory,
            nr_virt_cpu: u32::from(i.nr_virt_cpu),
            cpu_time_ns: i.cpu_time,
        })
    }

    fn get_state(&self, uuid: uuid::Uuid) -> Result<(i32, i32)> {
        let s = self.dom_flags::<procs::DomainGetState>(uuid, 0)?;
        Ok((s.state, s.reason))
    }

    fn get_xml_desc(&self, uuid: uuid::Uuid, flags: u32) -> Result<String> {
        Ok(self.dom_flags::<procs::DomainGetXmlDesc>(uuid, flags)?.xml)
    }

    fn is_persistent(&self, uuid: uuid::Uuid) -> Result<bool> {
        Ok(self.dom::<procs::DomainIsPersistent>(uuid)?.persistent != 0)
    }

    fn get_autostart(&self, uuid: uuid::Uuid) -> Result<bool> {
        Ok(self.dom::<procs::DomainGetAutostart>(uuid)?.autostart != 0)
    }

    fn set_autostart(&self, uuid: uuid::Uuid, autostart: bool) -> Result<()> {
        let args = DomainSetAutostartArgs {
            dom: handle(uuid),
            autostart: i32::from(autostart),
        };
        self.call::<procs::DomainSetAutostart>(&args)
    }

    fn get_vcpus_flags(&self, uuid: uuid::Uuid, flags: u32) -> Result<i32> {
        Ok(self
            .dom_flags::<procs::DomainGetVcpusFlags>(uuid, flags)?
            .num)
    }

    fn get_os_type(&self, uuid: uuid::Uuid) -> Result<String> {
        Ok(self.dom::<procs::DomainGetOsType>(uuid)?.r#type)
    }

    fn has_managed_save_image(&self, uuid: uuid::Uuid, flags: u32) -> Result<bool> {
        Ok(self
            .dom_flags::<procs::DomainHasManagedSaveImage>(uuid, flags)?
            .result
            != 0)
    }

    fn domain_xml_to_native(&self, format: &str, xml: &str, flags: u32) -> Result<String> {
        let args = ConnectDomainXmlToNativeArgs {
            native_format: format.to_string(),
            domain_xml: xml.to_string(),
            flags,
        };
        Ok(self
            .call::<procs::ConnectDomainXmlToNative>(&args)?
            .native_config)
    }

    fn domain_xml_from_native(&self, format: &str, config: &str, flags: u32) -> Result<String> {
        let args = ConnectDomainXmlFromNativeArgs {
            native_format: format.to_string(),
            native_config: config.to_string(),
            flags,
        };
        Ok(self
            .call::<procs::ConnectDomainXmlFromNative>(&args)?
            .domain_xml)
    }

    fn set_memory_flags(&self, uuid: uuid::Uuid, kib: u64, flags: u32) -> Result<()> {
        self.call::<procs::DomainSetMemoryFlags>(&DomainSetMemoryFlagsArgs {
            dom: handle(uuid),
            memory: kib,
            flags,
        })
    }

    fn set_memory_stats_period(&self, uuid: uuid::Uuid, period: i32, flags: u32) -> Result<()> {
        self.call::<procs::DomainSetMemoryStatsPeriod>(&DomainSetMemoryStatsPeriodArgs {
            dom: handle(uuid),
            period,
            flags,
        })
    }

    fn set_vcpus_flags(&self, uuid: uuid::Uuid, nvcpus: u32, flags: u32) -> Result<()> {
        self.call::<procs::DomainSetVcpusFlags>(&DomainSetVcpusFlagsArgs {
            dom: handle(uuid),
            nvcpus,
            flags,
        })
    }

    fn attach_device(&self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<()> {
        self.call::<procs::DomainAttachDeviceFlags>(&DomainDeviceFlagsArgs {
            dom: handle(uuid),
            xml: xml.to_string(),
            flags,
        })
    }

    fn detach_device(&self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<()> {
        self.call::<procs::DomainDetachDeviceFlags>(&DomainDeviceFlagsArgs {
            dom: handle(uuid),
            xml: xml.to_string(),
            flags,
        })
    }

    fn snapshot_create_xml(&self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<String> {
        let args = DomainSnapshotCreateXmlArgs {
            dom: handle(uuid),
            xml_desc: xml.to_string(),
            flags,
        };
        Ok(self
            .call::<procs::DomainSnapshotCreateXml>(&args)?
            .snap
            .name)
    }

    fn snapshot_list(&self, uuid: uuid::Uuid, flags: u32) -> Result<Vec<String>> {
        let args = DomainListAllSnapshotsArgs {
            dom: handle(uuid),
            need_results: 1,
            flags,
        };
        let r = self.call::<procs::DomainListAllSnapshots>(&args)?;
        Ok(r.snapshots.into_iter().map(|s| s.name).collect())
    }

    fn snapshot_list_children(
        &self,
        uuid: uuid::Uuid,
        name: &str,
        flags: u32,
    ) -> Result<Vec<String>> {
        let args = DomainSnapshotListAllChildrenArgs {
            snapshot: snap_handle(uuid, name),
            need_results: 1,
            flags,
        };
        let r = self.call::<procs::DomainSnapshotListAllChildren>(&args)?;
        Ok(r.snapshots.into_iter().map(|s| s.name).collect())
    }

    fn snapshot_get_xml_desc(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<String> {
        Ok(self
            .snap_flags::<procs::DomainSnapshotGetXmlDesc>(uuid, name, flags)?
            .xml)
    }

    fn snapshot_current(&self, uuid: uuid::Uuid, flags: u32) -> Result<String> {
        Ok(self
            .dom_flags::<procs::DomainSnapshotCurrent>(uuid, flags)?
            .snap
            .name)
    }

    fn snapshot_get_parent(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<String> {
        Ok(self
            .snap_flags::<procs::DomainSnapshotGetParent>(uuid, name, flags)?
            .snap
            .name)
    }

    fn snapshot_revert(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<()> {
        self.snap_flags::<procs::DomainRevertToSnapshot>(uuid, name, flags)
    }

    fn snapshot_delete(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<()> {
        self.snap_flags::<procs::DomainSnapshotDelete>(uuid, name, flags)
    }

    fn save(&self, uuid: uuid::Uuid, path: &str, dxml: Option<&str>, flags: u32) -> Result<()> {
        self.call::<procs::DomainSaveFlags>(&DomainSaveFlagsArgs {
            dom: handle(uuid),
            to: path.to_string(),
            dxml: dxml.map(str::to_string),
            flags,
        })
    }

    fn restore(&self, path: &str, dxml: Option<&str>, flags: u32) -> Result<()> {
        self.call::<procs::DomainRestoreFlags>(&DomainRestoreFlagsArgs {
            from: path.to_string(),
            dxml: dxml.map(str::to_string),
            flags,
        })
    }

    fn save_image_get_xml_desc(&self, path: &str, flags: u32) -> Result<String> {
        let args = DomainSaveImageGetXmlDescArgs {
            file: path.to_string(),
            flags,
        };
        Ok(self.call::<procs::DomainSaveImageGetXmlDesc>(&args)?.xml)
    }

    fn save_image_define_xml(&self, path: &str, dxml: &str, flags: u32) -> Result<()> {
        self.call::<procs::DomainSaveImageDefineXml>(&DomainSaveImageDefineXmlArgs {
            file: path.to_string(),
            dxml: dxml.to_string(),
            flags,
        })
    }

    fn managed_save(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.dom_flags::<procs::DomainManagedSave>(uuid, flags)
    }

    fn managed_save_remove(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        self.dom_flags::<procs::DomainManagedSaveRemove>(uuid, flags)
    }

    fn domain_stats(&self, uuid: uuid::Uuid, stats: u32, flags: u32) -> Result<Vec<TypedParam>> {
        let args = ConnectGetAllDomainStatsArgs {
            doms: vec![handle(uuid)],
            stats,
            flags,
        };
        let ret = self.call::<procs::ConnectGetAllDomainStats>(&args)?;
        Ok(ret
            .ret_stats
            .into_iter()
            .find(|r| r.dom.uuid == *uuid.as_bytes())
            .map(|r| r.params)
            .unwrap_or_default())
    }

    fn block_stats(&self, uuid: uuid::Uuid, disk: &str, flags: u32) -> Result<Vec<TypedParam>> {
        let mut args = DomainBlockStatsFlagsArgs {
            dom: handle(uuid),
            path: disk.to_string(),
            nparams: 0,
            flags,
        };
        // libvirt's two steps: the count, then the values
        args.nparams = self.call::<procs::DomainBlockStatsFlags>(&args)?.nparams;
        Ok(self.call::<procs::DomainBlockStatsFlags>(&args)?.params)
    }

    fn interface_stats(&self, uuid: uuid::Uuid, device: &str) -> Result<Vec<TypedParam>> {
        let r = self.call::<procs::DomainInterfaceStats>(&DomainInterfaceStatsArgs {
            dom: handle(uuid),
            device: device.to_string(),
        })?;
        let values = [
            r.rx_bytes,
            r.rx_packets,
            r.rx_errs,
            r.rx_drop,
            r.tx_bytes,
            r.tx_packets,
            r.tx_errs,
            r.tx_drop,
        ];
        Ok(crate::stats::INTERFACE_STAT_NAMES
            .iter()
            .zip(values)
            .map(|(n, v)| TypedParam {
                field: (*n).to_string(),
                value: TypedParamValue::LLong(v),
            })
            .collect())
    }

    fn memory_stats(&self, uuid: uuid::Uuid, flags: u32) -> Result<Vec<TypedParam>> {
        let r = self.call::<procs::DomainMemoryStats>(&DomainMemoryStatsArgs {
            dom: handle(uuid),
            max_stats: crate::stats::MEMORY_STAT_NAMES.len() as u32,
            flags,
        })?;
        Ok(r.stats
            .into_iter()
            .filter_map(|s| {
                let name = usize::try_from(s.tag)
                    .ok()
                    .and_then(|t| crate::stats::MEMORY_STAT_NAMES.get(t))?;
                Some(TypedParam {
                    field: (*name).to_string(),
                    value: TypedParamValue::ULLong(s.val),
                })
            })
            .collect())
    }

    fn migrate_begin(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        flags: u32,
    ) -> Result<(String, Vec<u8>)> {
        let r = self.call::<procs::DomainMigrateBegin3Params>(&DomainMigrateBegin3ParamsArgs {
            dom: handle(uuid),
            params: params.to_vec(),
            flags,
        })?;
        Ok((r.xml, r.cookie_out))
    }

    fn migrate_prepare(
        &self,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
    ) -> Result<(Option<String>, Vec<u8>)> {
        let r =
            self.call::<procs::DomainMigratePrepare3Params>(&DomainMigratePrepare3ParamsArgs {
                params: params.to_vec(),
                cookie_in: cookie.to_vec(),
                flags,
            })?;
        Ok((r.uri_out, r.cookie_out))
    }

    fn migrate_perform(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
    ) -> Result<Vec<u8>> {
        let r =
            self.call::<procs::DomainMigratePerform3Params>(&DomainMigratePerform3ParamsArgs {
                dom: handle(uuid),
                dconnuri: None,
                params: params.to_vec(),
                cookie_in: cookie.to_vec(),
                flags,
            })?;
        Ok(r.cookie_out)
    }

    fn migrate_finish(
        &self,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
        cancelled: bool,
    ) -> Result<(DomainId, Vec<u8>)> {
        let r =
            self.call::<procs::DomainMigrateFinish3Params>(&DomainMigrateFinish3ParamsArgs {
                params: params.to_vec(),
                cookie_in: cookie.to_vec(),
                flags,
                cancelled: i32::from(cancelled),
            })?;
        Ok((domain_id(r.dom), r.cookie_out))
    }

    fn migrate_confirm(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
        cancelled: bool,
    ) -> Result<()> {
        self.call::<procs::DomainMigrateConfirm3Params>(&DomainMigrateConfirm3ParamsArgs {
            dom: handle(uuid),
            params: params.to_vec(),
            cookie_in: cookie.to_vec(),
            flags,
            cancelled: i32::from(cancelled),
        })
    }

    fn abort_job(&self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        let _ = flags;
        self.call::<procs::DomainAbortJob>(&DomainArgs { dom: handle(uuid) })
    }

    fn screenshot(&self, uuid: uuid::Uuid, screen: u32, flags: u32) -> Result<(String, Vec<u8>)> {
        self.download_screenshot(uuid, screen, flags)
    }

    fn job_stats(&self, uuid: uuid::Uuid, flags: u32) -> Result<(i32, Vec<TypedParam>)> {
        let r = self.call::<procs::DomainGetJobStats>(&DomainFlagsArgs {
            dom: handle(uuid),
            flags,
        })?;
        Ok((r.kind, r.params))
    }

    fn cpu_stats(
        &self,
        uuid: uuid::Uuid,
        start_cpu: i32,
        ncpus: u32,
        flags: u32,
    ) -> Result<Vec<Vec<TypedParam>>> {
        let mut args = DomainGetCpuStatsArgs {
            dom: handle(uuid),
            nparams: 0,
            start_cpu,
            ncpus: ncpus.max(1),
            flags,
        };
        // the number of parameters per CPU first, as libvirt's client does
        let per = self.call::<procs::DomainGetCpuStats>(&args)?.nparams;
        let Ok(per_cpu) = u32::try_from(per) else {
            return Ok(Vec::new());
        };
        if per_cpu == 0 {
            return Ok(Vec::new());
        }
        args.nparams = per_cpu;
        let r = self.call::<procs::DomainGetCpuStats>(&args)?;
        let stride = usize::try_from(r.nparams).unwrap_or(0).max(1);
        Ok(r.params
            .chunks(stride)
            .map(<[TypedParam]>::to_vec)
            .collect())
    }

    fn subscribe_events(&self, callback: EventCallback) -> Result<u64> {
        let _serial = lock(&self.link.registration);
        // listen locally first, so events sent right after the registration reply are seen
        let (id, needs_remote) = lock(&self.link.subscribers).add(callback);
        if needs_remote {
            let args = ConnectDomainEventCallbackRegisterAnyArgs {
                event_id: protocol::event_id::LIFECYCLE,
                dom: None,
            };
            let lifecycle = match self.call::<procs::ConnectDomainEventCallbackRegisterAny>(&args) {
                Ok(ret) => ret.callback_id,
                Err(e) => {
                    lock(&self.link.subscribers).forget(id);
                    return Err(e);
                }
            };
            // device removals ride along; a daemon without them still serves lifecycle
            let args = ConnectDomainEventCallbackRegisterAnyArgs {
                event_id: protocol::event_id::DEVICE_REMOVED,
                dom: None,
            };
            let removed = match self.call::<procs::ConnectDomainEventCallbackRegisterAny>(&args) {
                Ok(ret) => Some(ret.callback_id),
                Err(e) => {
                    tracing::debug!("the daemon offers no device-removed events: {e}");
                    None
                }
            };
            lock(&self.link.subscribers).remote = Some((lifecycle, removed));
        }
        Ok(id)
    }

    fn unsubscribe_events(&self, id: u64) -> Result<()> {
        let _serial = lock(&self.link.registration);
        let remote = lock(&self.link.subscribers).remove(id, "event")?;
        if let Some((lifecycle, removed)) = remote {
            for callback_id in std::iter::once(lifecycle).chain(removed) {
                let args = ConnectDomainEventCallbackDeregisterAnyArgs { callback_id };
                self.call::<procs::ConnectDomainEventCallbackDeregisterAny>(&args)?;
            }
        }
        Ok(())
    }
}

impl RemoteBackend {
    /// `virConnectSupportsFeature` of the daemon's connection: whether it supports
    /// `feature` (a `VIR_DRV_FEATURE_*` number, or one of rvirt's own in
    /// [`crate::backend::feature`]).
    pub fn supports_feature(&self, feature: i32) -> Result<bool> {
        Ok(self
            .call::<procs::ConnectSupportsFeature>(&ConnectSupportsFeatureArgs { feature })?
            .supported
            != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvirt_wire::FrameDecoder;
    use std::io::{Read, Write};

    /// A scripted daemon on a socket pair: answers the calls a test expects.
    fn fake_daemon(
        mut sock: UnixStream,
        mut answer: impl FnMut(&Header, &[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut dec = FrameDecoder::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = match sock.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                dec.feed(&buf[..n]);
                while let Ok(Some(f)) = dec.next_frame() {
                    if let Some(reply) = answer(&f.header, &f.payload)
                        && sock.write_all(&reply).is_err()
                    {
                        return;
                    }
                }
            }
        })
    }

    fn ok<T: serde::Serialize>(h: &Header, body: &T) -> Option<Vec<u8>> {
        Some(frame::encode(&h.reply(Status::Ok), body).unwrap())
    }

    #[test]
    fn calls_errors_and_events() {
        let (client, server) = UnixStream::pair().unwrap();
        let dom = NonnullDomain {
            name: "vm".into(),
            uuid: [5; 16],
            id: 4,
        };
        let events_for = dom.clone();
        let daemon = fake_daemon(
            server,
            move |h, payload| match RemoteProcedure::from_number(h.procedure) {
                Some(RemoteProcedure::AuthList) => ok(h, &AuthListRet { types: vec![0] }),
                Some(RemoteProcedure::ConnectOpen) => {
                    let a: ConnectOpenArgs = rvirt_wire::xdr::from_bytes(payload).unwrap();
                    assert_eq!(a.name.as_deref(), Some("test:///default"));
                    ok(h, &())
                }
                Some(RemoteProcedure::ConnectGetType) => ok(
                    h,
                    &ConnectGetTypeRet {
                        r#type: "Test".into(),
                    },
                ),
                Some(RemoteProcedure::DomainLookupByName) => {
                    let e = RemoteError::new(42, 12, "domain not found: nope");
                    Some(frame::encode(&h.reply(Status::Error), &e).unwrap())
                }
                Some(RemoteProcedure::ConnectDomainEventCallbackRegisterAny) => {
                    let mut out = frame::encode(
                        &h.reply(Status::Ok),
                        &ConnectDomainEventCallbackRegisterAnyRet { callback_id: 7 },
                    )
                    .unwrap();
                    let msg = DomainEventCallbackLifecycleMsg {
                        callback_id: 7,
                        msg: DomainEventLifecycleMsg {
                            dom: events_for.clone(),
                            event: 2,
                            detail: 0,
                        },
                    };
                    let ev = Header::message(
                        protocol::REMOTE_PROGRAM,
                        protocol::REMOTE_VERSION,
                        RemoteProcedure::DomainEventCallbackLifecycle.number(),
                    );
                    out.extend(frame::encode(&ev, &msg).unwrap());
                    Some(out)
                }
                _ => ok(h, &()),
            },
        );
        let backend =
            RemoteBackend::over_stream(client, "test:///default", false, Keepalive::default())
                .unwrap();
        assert_eq!(backend.get_type().unwrap(), "Test");
        let err = backend.lookup_by_name("nope").unwrap_err();
        assert_eq!((err.code(), err.domain()), (42, 12));
        assert!(err.to_string().contains("nope"));
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        backend
            .subscribe_events(Arc::new(move |e: &DomainEvent| {
                let _ = lock(&tx).send(e.clone());
            }))
            .unwrap();
        let ev = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(
            (ev.domain.name.as_str(), ev.domain.id, ev.event),
            ("vm", 4, 2)
        );
        drop(backend);
        daemon.join().unwrap();
    }

    static ESCAPES: AtomicU32 = AtomicU32::new(0);

    fn counting_escape(wait: &mut dyn FnMut()) {
        ESCAPES.fetch_add(1, Ordering::SeqCst);
        wait()
    }

    #[test]
    fn callers_read_their_own_replies_and_a_slow_one_escapes() {
        let (client, server) = UnixStream::pair().unwrap();
        let daemon = fake_daemon(server, |h, _| {
            match RemoteProcedure::from_number(h.procedure) {
                Some(RemoteProcedure::AuthList) => ok(h, &AuthListRet { types: vec![0] }),
                Some(RemoteProcedure::ConnectGetType) => {
                    // slower than ESCAPE_AFTER
                    std::thread::sleep(ESCAPE_AFTER * 6);
                    ok(
                        h,
                        &ConnectGetTypeRet {
                            r#type: "Slow".into(),
                        },
                    )
                }
                Some(RemoteProcedure::ConnectGetVersion) => ok(
                    h,
                    &ConnectGetVersionRet {
                        hv_ver: h.serial.into(),
                    },
                ),
                _ => ok(h, &()),
            }
        });
        let backend =
            Arc::new(RemoteBackend::over_stream(client, "", false, Keepalive::default()).unwrap());
        assert!(
            backend.link.direct.is_some(),
            "a unix socket reads directly"
        );
        let before = ESCAPES.load(Ordering::SeqCst);
        assert!(with_escape(counting_escape, || backend.get_version()).is_ok());
        assert_eq!(
            ESCAPES.load(Ordering::SeqCst),
            before,
            "a quick reply stays"
        );
        let t = with_escape(counting_escape, || backend.get_type()).unwrap();
        assert_eq!(t, "Slow");
        assert_eq!(
            ESCAPES.load(Ordering::SeqCst),
            before + 1,
            "a slow one escapes once"
        );
        // callers in parallel: each gets its own reply (the version is the call's serial),
        // whoever reads the socket
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = Arc::clone(&backend);
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    for _ in 0..200 {
                        seen.push(b.get_version().unwrap());
                    }
                    seen
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "every caller got a reply of its own");
        drop(Arc::into_inner(backend).unwrap());
        daemon.join().unwrap();
    }

    /// The race the nudge socket closes: the reader thread, idle, waits in `poll` for the
    /// socket; a caller's `recv` takes the reply and an event that came with it before
    /// the reader thread runs, so its `poll` sees nothing and sleeps on. The event must
    /// still reach its callback at once, though the daemon sends nothing after it.
    #[test]
    fn an_event_a_caller_reads_is_delivered_while_the_daemon_stays_silent() {
        let (client, server) = UnixStream::pair().unwrap();
        let daemon = fake_daemon(server, |h, _| {
            match RemoteProcedure::from_number(h.procedure) {
                Some(RemoteProcedure::AuthList) => ok(h, &AuthListRet { types: vec![0] }),
                Some(RemoteProcedure::ConnectDomainEventCallbackRegisterAny) => ok(
                    h,
                    &ConnectDomainEventCallbackRegisterAnyRet { callback_id: 3 },
                ),
                Some(RemoteProcedure::ConnectGetVersion) => {
                    // the event, then the reply, in one write: the caller reads both
                    let msg = DomainEventCallbackLifecycleMsg {
                        callback_id: 3,
                        msg: DomainEventLifecycleMsg {
                            dom: NonnullDomain {
                                name: "vm".into(),
                                uuid: [7; 16],
                                id: i32::try_from(h.serial).unwrap(),
                            },
                            event: 4,
                            detail: 0,
                        },
                    };
                    let ev = Header::message(
                        protocol::REMOTE_PROGRAM,
                        protocol::REMOTE_VERSION,
                        RemoteProcedure::DomainEventCallbackLifecycle.number(),
                    );
                    let mut out = frame::encode(&ev, &msg).unwrap();
                    out.extend(
                        frame::encode(
                            &h.reply(Status::Ok),
                            &ConnectGetVersionRet {
                                hv_ver: h.serial.into(),
                            },
                        )
                        .unwrap(),
                    );
                    Some(out)
                }
                _ => ok(h, &()),
            }
        });
        let backend = RemoteBackend::over_stream(client, "", false, Keepalive::default()).unwrap();
        assert!(
            backend.link.direct.is_some(),
            "a unix socket reads directly"
        );
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        backend
            .subscribe_events(Arc::new(move |e: &DomainEvent| {
                let _ = lock(&tx).send(e.domain.id);
            }))
            .unwrap();
        for round in 0..40 {
            // long enough after the last call for the reader thread to watch the socket
            std::thread::sleep(direct::IDLE * 5);
            let serial = backend.get_version().unwrap();
            let id = rx.recv_timeout(Duration::from_secs(2)).unwrap_or_else(|_| {
                panic!("round {round}: the event read with the reply was not delivered")
            });
            assert_eq!(
                i64::from(id),
                i64::try_from(serial).unwrap(),
                "round {round}"
            );
        }
        drop(backend);
        daemon.join().unwrap();
    }

    /// A daemon that answers the opening calls, then nothing at all (not even pings).
    fn hung_daemon(sock: UnixStream) -> std::thread::JoinHandle<()> {
        fake_daemon(sock, |h, _| {
            if h.prog != protocol::REMOTE_PROGRAM {
                return None;
            }
            match RemoteProcedure::from_number(h.procedure) {
                Some(RemoteProcedure::AuthList) => ok(h, &AuthListRet { types: vec![0] }),
                Some(RemoteProcedure::ConnectOpen) => ok(h, &()),
                _ => None,
            }
        })
    }

    #[test]
    fn calls_to_a_hung_daemon_time_out() {
        let (client, server) = UnixStream::pair().unwrap();
        let _daemon = hung_daemon(server);
        let keepalive = Keepalive {
            interval: Duration::from_millis(100),
            count: 3,
        };
        let backend = RemoteBackend::over_stream(client, "", false, keepalive).unwrap();
        let t0 = Instant::now();
        let err = backend.get_type().unwrap_err();
        let waited = t0.elapsed();
        assert!(err.to_string().contains("did not answer"), "{err}");
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        // the connection is now dead: later calls fail at once
        let t0 = Instant::now();
        assert!(backend.get_hostname().is_err());
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    /// A daemon that answers `GetType` after `delay`, and every ping at once.
    fn slow_daemon(server: UnixStream, delay: Duration) -> std::thread::JoinHandle<()> {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let mut writer = server.try_clone().unwrap();
        std::thread::spawn(move || {
            while let Ok(bytes) = rx.recv() {
                std::thread::sleep(delay);
                let _ = writer.write_all(&bytes);
            }
        });
        let tx = Mutex::new(tx);
        fake_daemon(server, move |h, _| {
            if h.prog == protocol::KEEPALIVE_PROGRAM {
                let pong = Header::message(
                    protocol::KEEPALIVE_PROGRAM,
                    protocol::KEEPALIVE_VERSION,
                    protocol::KEEPALIVE_PONG,
                );
                return Some(frame::encode(&pong, &()).unwrap());
            }
            match RemoteProcedure::from_number(h.procedure) {
                Some(RemoteProcedure::AuthList) => ok(h, &AuthListRet { types: vec![0] }),
                Some(RemoteProcedure::ConnectOpen) => ok(h, &()),
                Some(RemoteProcedure::ConnectClose) => ok(h, &()),
                Some(RemoteProcedure::ConnectGetType) => {
                    let late = ok(
                        h,
                        &ConnectGetTypeRet {
                            r#type: "Slow".into(),
                        },
                    )
                    .unwrap();
                    lock(&tx).send(late).unwrap();
                    None
                }
                _ => None,
            }
        })
    }

    #[test]
    fn a_slow_daemon_that_answers_pings_is_waited_for() {
        let (client, server) = UnixStream::pair().unwrap();
        let _daemon = slow_daemon(server, Duration::from_millis(600));
        let keepalive = Keepalive {
            interval: Duration::from_millis(100),
            count: 3,
        };
        let backend = RemoteBackend::over_stream(client, "", false, keepalive).unwrap();
        assert_eq!(backend.get_type().unwrap(), "Slow");
    }

    /// A link idle for longer than the keepalive budget (no call, so nothing to hear) is
    /// not a dead daemon: a slow call made after it waits (the plugin host's link failed
    /// every call that outlasted one receive tick after five quiet seconds).
    #[test]
    fn a_slow_call_after_a_quiet_spell_is_waited_for() {
        let (client, server) = UnixStream::pair().unwrap();
        let _daemon = slow_daemon(server, Duration::from_millis(150));
        let keepalive = Keepalive {
            interval: Duration::from_millis(100),
            count: 3,
        };
        let backend = RemoteBackend::over_stream(client, "", false, keepalive).unwrap();
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(700));
            assert_eq!(backend.get_type().unwrap(), "Slow");
        }
    }

    #[test]
    fn a_panicking_event_callback_does_not_stop_the_reader() {
        let (client, server) = UnixStream::pair().unwrap();
        let dom = NonnullDomain {
            name: "vm".into(),
            uuid: [5; 16],
            id: 4,
        };
        let _daemon = fake_daemon(server, move |h, _| {
            match RemoteProcedure::from_number(h.procedure) {
                Some(RemoteProcedure::AuthList) => ok(h, &AuthListRet { types: vec![0] }),
                Some(RemoteProcedure::ConnectOpen) => ok(h, &()),
                Some(RemoteProcedure::ConnectClose) => ok(h, &()),
                Some(RemoteProcedure::ConnectDomainEventCallbackRegisterAny) => ok(
                    h,
                    &ConnectDomainEventCallbackRegisterAnyRet { callback_id: 7 },
                ),
                // every GetType reply is preceded by an event
                Some(RemoteProcedure::ConnectGetType) => {
                    let ev = Header::message(
                        protocol::REMOTE_PROGRAM,
                        protocol::REMOTE_VERSION,
                        RemoteProcedure::DomainEventCallbackLifecycle.number(),
                    );
                    let msg = DomainEventCallbackLifecycleMsg {
                        callback_id: 7,
                        msg: DomainEventLifecycleMsg {
                            dom: dom.clone(),
                            event: 2,
                            detail: 0,
                        },
                    };
                    let mut out = frame::encode(&ev, &msg).unwrap();
                    out.extend(
                        ok(
                            h,
                            &ConnectGetTypeRet {
                                r#type: "Test".into(),
                            },
                        )
                        .unwrap(),
                    );
                    Some(out)
                }
                _ => None,
            }
        });
        let backend = RemoteBackend::over_stream(client, "", false, Keepalive::default()).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        backend
            .subscribe_events(Arc::new(|_: &DomainEvent| panic!("callback bug")))
            .unwrap();
        backend
            .subscribe_events(Arc::new(move |e: &DomainEvent| {
                let _ = lock(&tx).send(e.event);
            }))
            .unwrap();
        for _ in 0..3 {
            assert_eq!(backend.get_type().unwrap(), "Test");
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 2);
        }
    }

    #[test]
    fn storage_calls_and_pool_events() {
        use crate::storage_api::StorageService;
        use rvirt_wire::protocol::NonnullStoragePool;
        let (client, server) = UnixStream::pair().unwrap();
        let pool = NonnullStoragePool {
            name: "p".into(),
            uuid: [3; 16],
        };
        let next = std::sync::atomic::AtomicI32::new(10);
        let _daemon = fake_daemon(server, move |h, payload| {
            let message = |procedure: RemoteProcedure| {
                Header::message(
                    protocol::REMOTE_PROGRAM,
                    protocol::REMOTE_VERSION,
                    procedure.number(),
                )
            };
            match RemoteProcedure::from_number(h.procedure) {
                Some(RemoteProcedure::AuthList) => ok(h, &AuthListRet { types: vec![0] }),
                Some(RemoteProcedure::StoragePoolLookupByName) => {
                    let a: NameArgs = rvirt_wire::xdr::from_bytes(payload).unwrap();
                    assert_eq!(a.name, "p");
                    ok(h, &StoragePoolRet { pool: pool.clone() })
                }
                Some(RemoteProcedure::ConnectStoragePoolEventRegisterAny) => ok(
                    h,
                    &CallbackIdRet {
                        callback_id: next.fetch_add(1, Ordering::Relaxed),
                    },
                ),
                // a stale registration's event, then lifecycle (10) and refresh (11)
                Some(RemoteProcedure::StoragePoolRefresh) => {
                    let mut out = Vec::new();
                    for callback_id in [99, 10] {
                        let msg = StoragePoolEventLifecycleMsg {
                            callback_id,
                            pool: pool.clone(),
                            event: 2,
                            detail: 0,
                        };
                        out.extend(
                            frame::encode(
                                &message(RemoteProcedure::StoragePoolEventLifecycle),
                                &msg,
                            )
                            .unwrap(),
                        );
                    }
                    let msg = StoragePoolEventRefreshMsg {
                        callback_id: 11,
                        pool: pool.clone(),
                    };
                    out.extend(
                        frame::encode(&message(RemoteProcedure::StoragePoolEventRefresh), &msg)
                            .unwrap(),
                    );
                    out.extend(ok(h, &()).unwrap());
                    Some(out)
                }
                _ => ok(h, &()),
            }
        });
        let backend = RemoteBackend::over_stream(client, "", false, Keepalive::default()).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        backend
            .subscribe_pool_events(Arc::new(move |e: &crate::PoolEvent| {
                let _ = lock(&tx).send((e.name.clone(), e.event));
            }))
            .unwrap();
        let id = backend.pool_by_name("p").unwrap();
        assert_eq!(id.uuid, uuid::Uuid::from_bytes([3; 16]));
        backend.refresh_pool(&id, 0).unwrap();
        let got: Vec<_> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(got, [("p".to_string(), Some(2)), ("p".to_string(), None)]);
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "the stale registration's event is dropped"
        );
    }

    #[test]
    fn network_calls_send_libvirt_s_layout_and_route_events() {
        use crate::network_api::NetworkOps;
        use rvirt_wire::protocol::NonnullNetwork;
        let (client, server) = UnixStream::pair().unwrap();
        let net = NonnullNetwork {
            name: "n".into(),
            uuid: [5; 16],
        };
        let _daemon = fake_daemon(server, move |h, payload| {
            match RemoteProcedure::from_number(h.procedure) {
                Some(RemoteProcedure::AuthList) => ok(h, &AuthListRet { types: vec![0] }),
                Some(RemoteProcedure::NetworkLookupByName) => {
                    let a: NameArgs = rvirt_wire::xdr::from_bytes(payload).unwrap();
                    assert_eq!(a.name, "n");
                    ok(h, &NetworkRet { net: net.clone() })
                }
                Some(RemoteProcedure::ConnectNetworkEventRegisterAny) => {
                    ok(h, &CallbackIdRet { callback_id: 7 })
                }
                // libvirt's client: the section in `command`, the command in `section`;
                // a stale registration's event, then ours
                Some(RemoteProcedure::NetworkUpdate) => {
                    let a: NetworkUpdateArgs = rvirt_wire::xdr::from_bytes(payload).unwrap();
                    assert_eq!((a.command, a.section, a.parent_index), (4, 3, -1));
                    assert_eq!(a.net, net);
                    let mut out = Vec::new();
                    for callback_id in [99, 7] {
                        let msg = NetworkEventLifecycleMsg {
                            callback_id,
                            net: net.clone(),
                            event: 2,
                            detail: 0,
                        };
                        let header = Header::message(
                            protocol::REMOTE_PROGRAM,
                            protocol::REMOTE_VERSION,
                            RemoteProcedure::NetworkEventLifecycle.number(),
                        );
                        out.extend(frame::encode(&header, &msg).unwrap());
                    }
                    out.extend(ok(h, &()).unwrap());
                    Some(out)
                }
                _ => ok(h, &()),
            }
        });
        let backend = RemoteBackend::over_stream(client, "", false, Keepalive::default()).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let sub = NetworkOps::subscribe(
            &backend,
            Arc::new(move |e: &crate::networks::NetworkEvent| {
                let _ = lock(&tx).send((e.name.clone(), e.event));
            }),
        )
        .unwrap();
        assert_eq!(
            NetworkOps::lookup_by_name(&backend, "n").unwrap().uuid,
            uuid::Uuid::from_bytes([5; 16])
        );
        backend.update("n", 3, 4, -1, "<host/>", 3).unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            ("n".to_string(), 2)
        );
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "the stale registration's event is dropped"
        );
        NetworkOps::unsubscribe(&backend, sub).unwrap();
        assert!(NetworkOps::unsubscribe(&backend, sub).is_err());
    }

    #[test]
    fn unsupported_transport() {
        let uri = ConnectUri::parse("qemu+libssh2://host/system").unwrap();
        let Err(err) = open(&uri, false) else {
            panic!("libssh2 transport accepted")
        };
        assert!(err.is_no_support(), "{err}");
        let uri = ConnectUri::parse("test+unix:///default?socket=/nonexistent/sock").unwrap();
        assert!(open(&uri, false).is_err());
    }
}

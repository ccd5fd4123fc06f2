//! libvirt's admin program (0x06900690, version 1) on its own socket, so unmodified
//! `virt-admin` manages rvirtd: servers, the worker pool, clients (list, info,
//! disconnect), client limits and the log filters and outputs.
//!
//! The socket is `rvirt-admin-sock` beside the daemon's sockets (and
//! `libvirt-admin-sock` in libvirt's directory with `libvirt_sockets`), mode 0600: only
//! the daemon's own user (root for the system daemon) reaches it. Two servers exist, as in
//! libvirtd: `libvirtd` (the remote-protocol clients) and `admin` (the admin clients).

use crate::server::ServerError;
use rvirt_wire::protocol::{self, RemoteError, TypedParam, TypedParamValue};
use rvirt_wire::{Frame, FrameDecoder, Header, MessageType, Status, frame};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore, watch};

/// `ADMIN_PROGRAM`.
pub const ADMIN_PROGRAM: u32 = 0x0690_0690;
/// `ADMIN_PROTOCOL_VERSION`.
pub const ADMIN_VERSION: u32 = 1;

/// The server of remote-protocol clients (libvirtd's name, which virt-admin expects).
pub const MAIN_SERVER: &str = "libvirtd";
/// The server of admin clients.
pub const ADMIN_SERVER: &str = "admin";

/// `VIR_ERR_NO_SERVER`.
const NO_SERVER: i32 = 95;
/// `VIR_ERR_NO_CLIENT`.
const NO_CLIENT: i32 = 96;
/// `VIR_FROM_ADMIN`.
const FROM_ADMIN: i32 = 62;

/// `admin_procedure` numbers.
mod procs {
    pub const CONNECT_OPEN: i32 = 1;
    pub const CONNECT_CLOSE: i32 = 2;
    pub const CONNECT_GET_LIB_VERSION: i32 = 3;
    pub const CONNECT_LIST_SERVERS: i32 = 4;
    pub const CONNECT_LOOKUP_SERVER: i32 = 5;
    pub const SERVER_GET_THREADPOOL_PARAMETERS: i32 = 6;
    pub const SERVER_SET_THREADPOOL_PARAMETERS: i32 = 7;
    pub const SERVER_LIST_CLIENTS: i32 = 8;
    pub const SERVER_LOOKUP_CLIENT: i32 = 9;
    pub const CLIENT_GET_INFO: i32 = 10;
    pub const CLIENT_CLOSE: i32 = 11;
    pub const SERVER_GET_CLIENT_LIMITS: i32 = 12;
    pub const SERVER_SET_CLIENT_LIMITS: i32 = 13;
    pub const CONNECT_GET_LOGGING_OUTPUTS: i32 = 14;
    pub const CONNECT_GET_LOGGING_FILTERS: i32 = 15;
    pub const CONNECT_SET_LOGGING_OUTPUTS: i32 = 16;
    pub const CONNECT_SET_LOGGING_FILTERS: i32 = 17;
    pub const SERVER_UPDATE_TLS_FILES: i32 = 18;
    pub const CONNECT_SET_DAEMON_TIMEOUT: i32 = 19;
}

/// `virClientTransport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Unix = 0,
    Tcp = 1,
    Tls = 2,
}

/// One connected client as the admin program shows it.
#[derive(Debug)]
struct Entry {
    /// Seconds since the epoch when it connected.
    since: i64,
    transport: Transport,
    read_only: bool,
    uid: Option<u32>,
    gid: Option<u32>,
    pid: Option<i32>,
    /// The network peer (`sock_addr`), for TCP and TLS.
    addr: Option<String>,
    close: Arc<Notify>,
}

/// The clients of one server.
#[derive(Debug, Default)]
pub struct Clients {
    map: Mutex<BTreeMap<u64, Entry>>,
}

/// Who a new client is, for [`Clients::add`].
#[derive(Debug, Clone, Default)]
pub struct Who {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub pid: Option<i32>,
    pub addr: Option<String>,
}

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers client `id`; the returned [`Notify`] fires when an admin closes it.
    pub fn add(&self, id: u64, transport: Transport, read_only: bool, who: Who) -> Arc<Notify> {
        let close = Arc::new(Notify::new());
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.lock().insert(
            id,
            Entry {
                since,
                transport,
                read_only,
                uid: who.uid,
                gid: who.gid,
                pid: who.pid,
                addr: who.addr,
                close: Arc::clone(&close),
            },
        );
        close
    }

    /// Forgets client `id` (it disconnected).
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// How many clients are connected.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    fn handles(&self, server: &str) -> Vec<NonnullClient> {
        self.lock()
            .iter()
            .map(|(id, e)| NonnullClient {
                srv: NonnullServer {
                    name: server.to_string(),
                },
                id: *id,
                timestamp: e.since,
                transport: e.transport as u32,
            })
            .collect()
    }

    fn handle(&self, server: &str, id: u64) -> Option<NonnullClient> {
        self.lock().get(&id).map(|e| NonnullClient {
            srv: NonnullServer {
                name: server.to_string(),
            },
            id,
            timestamp: e.since,
            transport: e.transport as u32,
        })
    }

    /// `virAdmClientGetInfo`'s parameters.
    fn info(&self, id: u64) -> Option<Vec<TypedParam>> {
        let map = self.lock();
        let e = map.get(&id)?;
        let mut p = vec![param_bool("readonly", e.read_only)];
        if let Some(addr) = &e.addr {
            p.push(param_str("sock_addr", addr));
        }
        if let Some(uid) = e.uid {
            p.push(param_int("unix_user_id", uid as i32));
            if let Some(name) = user_name(uid) {
                p.push(param_str("unix_user_name", &name));
            }
        }
        if let Some(gid) = e.gid {
            p.push(param_int("unix_group_id", gid as i32));
            if let Some(name) = group_name(gid) {
                p.push(param_str("unix_group_name", &name));
            }
        }
        if let Some(pid) = e.pid {
            p.push(param_int("unix_process_id", pid));
        }
        Some(p)
    }

    /// Disconnects client `id`.
    fn close(&self, id: u64) -> bool {
        match self.lock().get(&id) {
            Some(e) => {
                e.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The first field of the `/etc/passwd`-format line in `file` whose third field is `id`.
fn name_in(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next()?;
        (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}

fn user_name(uid: u32) -> Option<String> {
    name_in("/etc/passwd", uid)
}

fn group_name(gid: u32) -> Option<String> {
    name_in("/etc/group", gid)
}

fn param_bool(field: &str, v: bool) -> TypedParam {
    TypedParam {
        field: field.into(),
        value: TypedParamValue::Boolean(v as i32),
    }
}

fn param_int(field: &str, v: i32) -> TypedParam {
    TypedParam {
        field: field.into(),
        value: TypedParamValue::Int(v),
    }
}

fn param_uint(field: &str, v: usize) -> TypedParam {
    TypedParam {
        field: field.into(),
        value: TypedParamValue::UInt(u32::try_from(v).unwrap_or(u32::MAX)),
    }
}

fn param_str(field: &str, v: &str) -> TypedParam {
    TypedParam {
        field: field.into(),
        value: TypedParamValue::String(v.into()),
    }
}

/// The pool of workers running the calls that leave the reactor: at most `max` at once
/// (`maxWorkers`, changed at run time by `virt-admin srv-threadpool-set`).
#[derive(Debug)]
pub struct Workers {
    permits: Arc<Semaphore>,
    max: AtomicUsize,
    busy: AtomicUsize,
    waiting: AtomicUsize,
}

impl Workers {
    pub fn new(max: usize) -> Arc<Workers> {
        let max = max.max(1);
        Arc::new(Workers {
            permits: Arc::new(Semaphore::new(max)),
            max: AtomicUsize::new(max),
            busy: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Waits for a free worker; the permit is held while the call runs.
    pub async fn acquire(self: &Arc<Workers>) -> Option<WorkerPermit> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let p = Arc::clone(&self.permits).acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let p = p.ok()?;
        self.busy.fetch_add(1, Ordering::Relaxed);
        Some(WorkerPermit {
            _permit: p,
            workers: Arc::clone(self),
        })
    }

    fn set_max(&self, new: usize) {
        let new = new.max(1);
        let old = self.max.swap(new, Ordering::SeqCst);
        if new > old {
            self.permits.add_permits(new - old);
        } else if new < old {
            // permits held now are not taken back: the pool shrinks as they return
            let want = old - new;
            let gone = self.permits.forget_permits(want);
            if gone < want {
                let permits = Arc::clone(&self.permits);
                tokio::spawn(async move {
                    if let Ok(p) = permits.acquire_many_owned((want - gone) as u32).await {
                        p.forget();
                    }
                });
            }
        }
    }
}

/// A worker slot, given back on drop.
pub struct WorkerPermit {
    _permit: tokio::sync::OwnedSemaphorePermit,
    workers: Arc<Workers>,
}

impl Drop for WorkerPermit {
    fn drop(&mut self) {
        self.workers.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the admin program reaches.
pub struct Admin {
    /// Remote-protocol clients (server `libvirtd`).
    pub clients: Arc<Clients>,
    /// Admin clients (server `admin`).
    pub admins: Arc<Clients>,
    pub workers: Arc<Workers>,
    pub max_clients: usize,
}

// ---- wire types (admin_protocol.x) ----

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NonnullServer {
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NonnullClient {
    srv: NonnullServer,
    id: u64,
    timestamp: i64,
    transport: u32,
}

#[derive(Deserialize)]
struct FlagsArgs {
    flags: u32,
}

#[derive(Serialize)]
struct LibVersionRet {
    lib_ver: u64,
}

#[derive(Deserialize)]
struct ListServersArgs {
    need_results: u32,
    flags: u32,
}

#[derive(Serialize)]
struct ListServersRet {
    servers: Vec<NonnullServer>,
    ret: u32,
}

#[derive(Deserialize)]
struct LookupServerArgs {
    name: String,
    flags: u32,
}

#[derive(Serialize)]
struct LookupServerRet {
    srv: NonnullServer,
}

#[derive(Deserialize)]
struct ServerArgs {
    srv: NonnullServer,
    flags: u32,
}

#[derive(Serialize)]
struct ParamsRet {
    params: Vec<TypedParam>,
}

#[derive(Deserialize)]
struct SetParamsArgs {
    srv: NonnullServer,
    params: Vec<TypedParam>,
    flags: u32,
}

#[derive(Deserialize)]
struct ListClientsArgs {
    srv: NonnullServer,
    need_results: u32,
    flags: u32,
}

#[derive(Serialize)]
struct ListClientsRet {
    clients: Vec<NonnullClient>,
    ret: u32,
}

#[derive(Deserialize)]
struct LookupClientArgs {
    srv: NonnullServer,
    id: u64,
    flags: u32,
}

#[derive(Serialize)]
struct LookupClientRet {
    clnt: NonnullClient,
}

#[derive(Deserialize)]
struct ClientArgs {
    clnt: NonnullClient,
    flags: u32,
}

#[derive(Serialize)]
struct OutputsRet {
    outputs: String,
    noutputs: u32,
}

#[derive(Serialize)]
struct FiltersRet {
    filters: Option<String>,
    nfilters: u32,
}

#[derive(Deserialize)]
struct SetLogArgs {
    text: Option<String>,
    flags: u32,
}

fn err(code: i32, message: impl Into<String>) -> Box<RemoteError> {
    Box::new(RemoteError::new(code, FROM_ADMIN, message))
}

fn no_flags(flags: u32) -> Result<(), Box<RemoteError>> {
    if flags == 0 {
        Ok(())
    } else {
        Err(err(
            protocol::error_code::INVALID_ARG,
            format!("unsupported flags (0x{flags:x})"),
        ))
    }
}

fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, Box<RemoteError>> {
    rvirt_wire::xdr::from_bytes(payload).map_err(|e| {
        Box::new(RemoteError::new(
            protocol::error_code::RPC,
            protocol::error_domain::RPC,
            format!("cannot decode the arguments: {e}"),
        ))
    })
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Box<RemoteError>> {
    rvirt_wire::xdr::to_vec(v).map_err(|e| {
        err(
            protocol::error_code::INTERNAL_ERROR,
            format!("cannot encode the reply: {e}"),
        )
    })
}

impl Admin {
    fn server(&self, name: &str) -> Result<&Clients, Box<RemoteError>> {
        match name {
            MAIN_SERVER => Ok(&self.clients),
            ADMIN_SERVER => Ok(&self.admins),
            other => Err(err(NO_SERVER, format!("no server named '{other}'"))),
        }
    }

    fn threadpool(&self, server: &str) -> Vec<TypedParam> {
        let (max, busy, waiting) = if server == MAIN_SERVER {
            (
                self.workers.max.load(Ordering::Relaxed),
                self.workers.busy.load(Ordering::Relaxed),
                self.workers.waiting.load(Ordering::Relaxed),
            )
        } else {
            // admin calls run on the connection's own task: one worker, never queued
            (1, 0, 0)
        };
        vec![
            param_uint("minWorkers", 0),
            param_uint("maxWorkers", max),
            param_uint("nWorkers", busy),
            param_uint("freeWorkers", max.saturating_sub(busy)),
            param_uint("prioWorkers", 0),
            param_uint("jobQueueDepth", waiting),
        ]
    }

    /// Answers one admin call: the reply payload, or the error.
    fn call(&self, procedure: i32, payload: &[u8]) -> Result<Vec<u8>, Box<RemoteError>> {
        use procs::*;
        match procedure {
            CONNECT_OPEN | CONNECT_CLOSE => {
                let a: FlagsArgs = if procedure == CONNECT_OPEN {
                    decode(payload)?
                } else {
                    FlagsArgs { flags: 0 }
                };
                no_flags(a.flags)?;
                Ok(Vec::new())
            }
            CONNECT_GET_LIB_VERSION => encode(&LibVersionRet {
                lib_ver: rvirt_host::lib_version(),
            }),
            CONNECT_LIST_SERVERS => {
                let a: ListServersArgs = decode(payload)?;
                no_flags(a.flags)?;
                let all = [MAIN_SERVER, ADMIN_SERVER];
                // need_results is a flag (the caller wants the objects), not a count
                let servers = all
                    .iter()
                    .take(if a.need_results != 0 { all.len() } else { 0 })
                    .map(|n| NonnullServer {
                        name: n.to_string(),
                    })
                    .collect();
                encode(&ListServersRet {
                    servers,
                    ret: all.len() as u32,
                })
            }
            CONNECT_LOOKUP_SERVER => {
                let a: LookupServerArgs = decode(payload)?;
                no_flags(a.flags)?;
                self.server(&a.name)?;
                encode(&LookupServerRet {
                    srv: NonnullServer { name: a.name },
                })
            }
            SERVER_GET_THREADPOOL_PARAMETERS => {
                let a: ServerArgs = decode(payload)?;
                no_flags(a.flags)?;
                self.server(&a.srv.name)?;
                encode(&ParamsRet {
                    params: self.threadpool(&a.srv.name),
                })
            }
            SERVER_SET_THREADPOOL_PARAMETERS => {
                let a: SetParamsArgs = decode(payload)?;
                no_flags(a.flags)?;
                self.server(&a.srv.name)?;
                self.set_threadpool(&a.srv.name, &a.params)?;
                Ok(Vec::new())
            }
            SERVER_LIST_CLIENTS => {
                let a: ListClientsArgs = decode(payload)?;
                no_flags(a.flags)?;
                let all = self.server(&a.srv.name)?.handles(&a.srv.name);
                let ret = all.len() as u32;
                encode(&ListClientsRet {
                    clients: if a.need_results != 0 { all } else { Vec::new() },
                    ret,
                })
            }
            SERVER_LOOKUP_CLIENT => {
                let a: LookupClientArgs = decode(payload)?;
                no_flags(a.flags)?;
                let clnt = self
                    .server(&a.srv.name)?
                    .handle(&a.srv.name, a.id)
                    .ok_or_else(|| no_client(a.id))?;
                encode(&LookupClientRet { clnt })
            }
            CLIENT_GET_INFO => {
                let a: ClientArgs = decode(payload)?;
                no_flags(a.flags)?;
                let params = self
                    .server(&a.clnt.srv.name)?
                    .info(a.clnt.id)
                    .ok_or_else(|| no_client(a.clnt.id))?;
                encode(&ParamsRet { params })
            }
            CLIENT_CLOSE => {
                let a: ClientArgs = decode(payload)?;
                no_flags(a.flags)?;
                if !self.server(&a.clnt.srv.name)?.close(a.clnt.id) {
                    return Err(no_client(a.clnt.id));
                }
                tracing::info!(
                    client = a.clnt.id,
                    server = a.clnt.srv.name,
                    "closed by an admin"
                );
                Ok(Vec::new())
            }
            SERVER_GET_CLIENT_LIMITS => {
                let a: ServerArgs = decode(payload)?;
                no_flags(a.flags)?;
                let n = self.server(&a.srv.name)?.count();
                encode(&ParamsRet {
                    params: vec![
                        param_uint("nclients_max", self.max_clients),
                        param_uint("nclients", n),
                        // no client waits for authentication: every socket is auth none
                        param_uint("nclients_unauth_max", 0),
                        param_uint("nclients_unauth", 0),
                    ],
                })
            }
            CONNECT_GET_LOGGING_OUTPUTS => {
                let a: FlagsArgs = decode(payload)?;
                no_flags(a.flags)?;
                let (outputs, noutputs) = crate::logging::outputs();
                encode(&OutputsRet { outputs, noutputs })
            }
            CONNECT_GET_LOGGING_FILTERS => {
                let a: FlagsArgs = decode(payload)?;
                no_flags(a.flags)?;
                let (filters, nfilters) = crate::logging::filters();
                encode(&FiltersRet {
                    filters: Some(filters),
                    nfilters,
                })
            }
            CONNECT_SET_LOGGING_OUTPUTS | CONNECT_SET_LOGGING_FILTERS => {
                let a: SetLogArgs = decode(payload)?;
                no_flags(a.flags)?;
                let text = a.text.unwrap_or_default();
                let done = if procedure == CONNECT_SET_LOGGING_OUTPUTS {
                    crate::logging::set_outputs(&text)
                } else {
                    crate::logging::set_filters(&text)
                };
                done.map_err(|e| err(protocol::error_code::INVALID_ARG, error_chain(&e)))?;
                tracing::info!(procedure, text, "log settings changed by an admin");
                Ok(Vec::new())
            }
            SERVER_SET_CLIENT_LIMITS => Err(no_support("virAdmServerSetClientLimits")),
            SERVER_UPDATE_TLS_FILES => Err(no_support("virAdmServerUpdateTlsFiles")),
            CONNECT_SET_DAEMON_TIMEOUT => Err(no_support("virAdmConnectSetDaemonTimeout")),
            other => Err(Box::new(RemoteError::new(
                protocol::error_code::RPC,
                protocol::error_domain::RPC,
                format!("unknown procedure: {other}"),
            ))),
        }
    }

    fn set_threadpool(&self, server: &str, params: &[TypedParam]) -> Result<(), Box<RemoteError>> {
        let mut max = None;
        for p in params {
            let v = p.value.as_u64().ok_or_else(|| {
                err(
                    protocol::error_code::INVALID_ARG,
                    format!("parameter '{}' must be an unsigned integer", p.field),
                )
            })?;
            match p.field.as_str() {
                "maxWorkers" if server == MAIN_SERVER => {
                    if v == 0 {
                        return Err(err(
                            protocol::error_code::INVALID_ARG,
                            "maxWorkers must be at least 1",
                        ));
                    }
                    max = Some(v as usize);
                }
                // tokio's blocking pool starts threads on demand and has no priority lane
                "minWorkers" | "prioWorkers" if v == 0 => {}
                field => {
                    return Err(err(
                        protocol::error_code::NO_SUPPORT,
                        format!(
                            "setting '{field}' of server '{server}' is not supported by rvirtd"
                        ),
                    ));
                }
            }
        }
        if let Some(m) = max {
            self.workers.set_max(m);
            tracing::info!(max_workers = m, "worker pool resized by an admin");
        }
        Ok(())
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn no_client(id: u64) -> Box<RemoteError> {
    err(NO_CLIENT, format!("no client with matching id {id}"))
}

fn no_support(what: &str) -> Box<RemoteError> {
    err(
        protocol::error_code::NO_SUPPORT,
        format!("this function is not supported by the connection driver: {what} (rvirtd)"),
    )
}

/// Creates the admin socket at `path`, mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let l = crate::server::bind(path, 0o600, false)?;
    Ok(l.listener)
}

/// Accepts admin clients until shutdown.
pub async fn accept_loop(
    admin: Arc<Admin>,
    listener: UnixListener,
    path: std::path::PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(1));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, _)) => {
                let id = next.fetch_add(1, Ordering::Relaxed);
                let admin = Arc::clone(&admin);
                let shutdown = shutdown.clone();
                tokio::spawn(async move { serve(admin, stream, id, shutdown).await });
            }
            Err(e) => {
                tracing::warn!(socket = %path.display(), "admin accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

fn reply(h: &Header, answer: Result<Vec<u8>, Box<RemoteError>>) -> Vec<u8> {
    let header = Header {
        msg_type: MessageType::Reply,
        status: if answer.is_ok() {
            Status::Ok
        } else {
            Status::Error
        },
        ..*h
    };
    match answer {
        Ok(payload) => frame::encode_raw(&header, &payload).unwrap_or_default(),
        Err(e) => frame::encode(&header, &*e).unwrap_or_default(),
    }
}

/// Serves one admin connection.
async fn serve(
    admin: Arc<Admin>,
    stream: UnixStream,
    id: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let who = match stream.peer_cred() {
        Ok(c) => Who {
            uid: Some(c.uid()),
            gid: Some(c.gid()),
            pid: c.pid(),
            addr: None,
        },
        Err(_) => Who::default(),
    };
    let close = admin.admins.add(id, Transport::Unix, false, who);
    let (mut reader, mut writer) = stream.into_split();
    let mut decoder = FrameDecoder::new();
    let opened = AtomicBool::new(false);
    'conn: loop {
        let buf = decoder.read_buffer();
        buf.reserve(4096);
        tokio::select! {
            r = reader.read_buf(buf) => match r {
                Ok(0) | Err(_) => break 'conn,
                Ok(_) => {}
            },
            _ = close.notified() => break 'conn,
            _ = shutdown.changed() => break 'conn,
        }
        loop {
            let f: Frame = match decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(admin_client = id, "closing: {e}");
                    break 'conn;
                }
            };
            let h = f.header;
            let out = match (h.prog, h.msg_type) {
                (protocol::KEEPALIVE_PROGRAM, MessageType::Message) => {
                    if h.procedure == protocol::KEEPALIVE_PING {
                        crate::client::keepalive_frame(protocol::KEEPALIVE_PONG)
                    } else {
                        continue;
                    }
                }
                (ADMIN_PROGRAM, MessageType::Call) if h.vers == ADMIN_VERSION => {
                    let answer =
                        if h.procedure != procs::CONNECT_OPEN && !opened.load(Ordering::Relaxed) {
                            Err(Box::new(RemoteError::new(
                                protocol::error_code::RPC,
                                protocol::error_domain::RPC,
                                "connection not open",
                            )))
                        } else {
                            let a = admin.call(h.procedure, &f.payload);
                            if a.is_ok() && h.procedure == procs::CONNECT_OPEN {
                                opened.store(true, Ordering::Relaxed);
                            }
                            a
                        };
                    reply(&h, answer)
                }
                (_, MessageType::Call) => reply(
                    &h,
                    Err(Box::new(RemoteError::new(
                        protocol::error_code::RPC,
                        protocol::error_domain::RPC,
                        format!("cannot find program {:#x} version {}", h.prog, h.vers),
                    ))),
                ),
                _ => continue,
            };
            if writer.write_all(&out).await.is_err() {
                break 'conn;
            }
        }
    }
    admin.admins.remove(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Admin {
        Admin {
            clients: Arc::default(),
            admins: Arc::default(),
            workers: Workers::new(4),
            max_clients: 10,
        }
    }

    #[test]
    fn clients_are_listed_described_and_closed() {
        let a = admin();
        let close = a.clients.add(
            7,
            Transport::Unix,
            true,
            Who {
                uid: Some(0),
                gid: Some(0),
                pid: Some(42),
                addr: None,
            },
        );
        let args = rvirt_wire::xdr::to_vec(&(
            NonnullServer {
                name: "libvirtd".into(),
            },
            10u32,
            0u32,
        ))
        .unwrap();
        let ret = a.call(procs::SERVER_LIST_CLIENTS, &args).unwrap();
        // one client: count 1, id 7, then the total
        assert_eq!(&ret[..4], &[0, 0, 0, 1]);
        let info = a.clients.info(7).unwrap();
        assert!(
            info.iter()
                .any(|p| p.field == "readonly" && p.value == TypedParamValue::Boolean(1))
        );
        assert!(
            info.iter()
                .any(|p| p.field == "unix_process_id" && p.value == TypedParamValue::Int(42))
        );
        assert!(a.clients.close(7));
        // the notification is kept until the connection task waits for it
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), close.notified())
                .await
                .expect("close notified");
        });
        let e = a
            .call(
                procs::CLIENT_CLOSE,
                &rvirt_wire::xdr::to_vec(&(
                    NonnullClient {
                        srv: NonnullServer {
                            name: "libvirtd".into(),
                        },
                        id: 99,
                        timestamp: 0,
                        transport: 0,
                    },
                    0u32,
                ))
                .unwrap(),
            )
            .unwrap_err();
        assert_eq!(e.code, NO_CLIENT);
        let e = a
            .call(
                procs::CONNECT_LOOKUP_SERVER,
                &rvirt_wire::xdr::to_vec(&("nosuch".to_string(), 0u32)).unwrap(),
            )
            .unwrap_err();
        assert_eq!(e.code, NO_SERVER);
    }

    #[test]
    fn worker_pool_resizes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = admin();
            let p1 = a.workers.acquire().await.unwrap();
            assert_eq!(a.workers.busy.load(Ordering::Relaxed), 1);
            a.workers.set_max(1);
            assert_eq!(a.workers.permits.available_permits(), 0);
            drop(p1);
            assert_eq!(a.workers.permits.available_permits(), 1);
            a.workers.set_max(3);
            assert_eq!(a.workers.permits.available_permits(), 3);
            let bad = a.set_threadpool(
                MAIN_SERVER,
                &[TypedParam {
                    field: "minWorkers".into(),
                    value: TypedParamValue::UInt(5),
                }],
            );
            assert_eq!(bad.unwrap_err().code, protocol::error_code::NO_SUPPORT);
        });
    }
}

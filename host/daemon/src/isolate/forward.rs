//! The daemon's side of the backend-call channel (`wire.rs`): a `PoolBackend` per pool
//! type and a `NetBackend` per forward mode of a plugin in a process of its own, each
//! call sent to the plugin's current plugin host process.
//!
//! The daemon keeps owning every pool and network (`Pools`, `Networks`); only the
//! type-specific work crosses, with the definitions as XML. A call the process died in
//! fails with `VIR_ERR_RPC` naming the plugin, the operation and how the process ended
//! (the supervisor starts a new one); a call past `call_timeout_ms` fails with
//! `VIR_ERR_OPERATION_TIMEOUT` and the hung process is killed and replaced. Calls are
//! never retried: the backend may have done part of the work.
//!
//! A network backend may keep what the host gave each running network at its start or
//! at the reattach check (the bridge plugin keeps the run directory, for the lease and
//! update calls whose ABI does not carry it). A new process (a restart after a crash, a
//! reload) has seen neither, so before its first call the forwarder replays
//! `check_network` there for every network it saw running through this plugin: the
//! same reattach check a restarted daemon makes. Helpers those networks run (dnsmasq)
//! are the network's, not the process's: they keep running across the change.

use super::lock;
use super::supervisor::{Generation, OwnedBusy, Supervisor};
use super::wire::{self, Answer, Call, Frame, Reply, Request, StreamCall, WireError};
use rvirt_host::networks::{Lease, NetBackend, PortPlug};
use rvirt_host::storage::{BackendStream, PoolBackend, PoolRefresh};
use rvirt_host::{Error, Result};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

/// Idle connections kept per plugin for the next calls.
const MAX_IDLE: usize = 8;

/// The link to one plugin's host process for its backends: idle connections to the
/// current process, one call in flight on each.
pub struct Forwarder {
    sup: Arc<Supervisor>,
    idle: Mutex<Vec<(Arc<Generation>, UnixStream)>>,
    /// The networks running through this plugin, by run directory: (forward mode,
    /// definition as last handed to the backend).
    running: Mutex<BTreeMap<String, (String, String)>>,
    /// The process those networks were last checked in (held while checking).
    reattached: Mutex<Option<Arc<Generation>>>,
}

fn rpc(code: ErrorCode, message: String) -> Error {
    Error::driver(code, ErrorDomain::Rpc, message)
}

impl Forwarder {
    /// The forwarder of `sup`'s plugin.
    pub fn new(sup: Arc<Supervisor>) -> Arc<Forwarder> {
        Arc::new(Forwarder {
            sup,
            idle: Mutex::default(),
            running: Mutex::default(),
            reattached: Mutex::default(),
        })
    }

    /// Records what a network backend was told about a running network (`Some`) or that
    /// it stopped (`None`).
    fn network_running(&self, state_dir: &str, running: Option<(&str, &str)>) {
        let mut r = lock(&self.running);
        match running {
            Some((mode, net)) => {
                r.insert(state_dir.to_string(), (mode.to_string(), net.to_string()));
            }
            None => {
                r.remove(state_dir);
            }
        }
    }

    /// Replays the reattach check of every running network in `g` unless done already.
    fn reattach(&self, g: &Arc<Generation>) {
        let mut done = lock(&self.reattached);
        if done.as_ref().is_some_and(|d| Arc::ptr_eq(d, g)) {
            return;
        }
        let nets: Vec<(String, String, String)> = lock(&self.running)
            .iter()
            .map(|(dir, (mode, net))| (mode.clone(), net.clone(), dir.clone()))
            .collect();
        for (mode, net, state_dir) in nets {
            let call = Call::CheckNetwork {
                mode,
                net,
                state_dir: state_dir.clone(),
            };
            let r = self
                .connect_to(g)
                .map_err(|e| e.to_string())
                .and_then(|mut s| {
                    let _busy = g.busy();
                    exchange(
                        &mut s,
                        &Request {
                            version: wire::VERSION,
                            call,
                        },
                    )
                    .map_err(|e| e.to_string())
                });
            match r {
                Ok(Reply {
                    result: Ok(Answer::Bool(true)),
                    ..
                }) => {}
                r => tracing::warn!(
                    plugin = self.sup.name(),
                    pid = g.pid(),
                    state_dir,
                    "a running network is not found by the new plugin process: {r:?}"
                ),
            }
        }
        *done = Some(Arc::clone(g));
    }

    /// A new connection to process `g`.
    fn connect_to(&self, g: &Arc<Generation>) -> std::io::Result<UnixStream> {
        let path = g
            .backend_socket()
            .ok_or_else(|| std::io::Error::other("the process has no backend-call socket"))?;
        let s = UnixStream::connect(path)?;
        let timeout = self.sup.settings().call_timeout();
        s.set_read_timeout(timeout)?;
        s.set_write_timeout(timeout)?;
        Ok(s)
    }

    /// A connection to the current process (started on first use, its running networks
    /// reattached): an idle one, or a new one.
    fn connection(&self) -> Result<(Arc<Generation>, UnixStream)> {
        let (g, s) = self.any_connection()?;
        self.reattach(&g);
        Ok((g, s))
    }

    fn any_connection(&self) -> Result<(Arc<Generation>, UnixStream)> {
        {
            let mut idle = lock(&self.idle);
            while let Some((g, s)) = idle.pop() {
                if self.sup.is_current(&g) {
                    return Ok((g, s));
                }
            }
        }
        let connect = |g: &Arc<Generation>| self.connect_to(g);
        let unreachable = |g: &Arc<Generation>, e: std::io::Error| {
            let e = rpc(ErrorCode::Rpc, e.to_string());
            self.sup.unreachable(g, &e)
        };
        let g = self.sup.current()?;
        match connect(&g) {
            Ok(s) => Ok((g, s)),
            // it died between being handed out and the connect: once more, with its
            // successor
            Err(_) if g.is_dead() => {
                let g = self.sup.current()?;
                connect(&g)
                    .map(|s| (g.clone(), s))
                    .map_err(|e| unreachable(&g, e))
            }
            Err(e) => Err(unreachable(&g, e)),
        }
    }

    fn put_back(&self, g: Arc<Generation>, s: UnixStream) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE && self.sup.is_current(&g) {
            idle.push((g, s));
        }
    }

    /// The error for a channel failure during `api` in process `g`.
    fn failed(&self, g: &Arc<Generation>, api: &str, e: &WireError) -> Error {
        if e.is_timeout() {
            return self.sup.hung(g, api);
        }
        match e {
            WireError::Closed | WireError::Io(_) => self.sup.died_during(g, api),
            // the process answered garbage: it cannot be trusted with the next call
            _ => rpc(
                ErrorCode::Rpc,
                format!(
                    "plugin '{}' (process {}) answered {api} wrongly: {e}",
                    self.sup.name(),
                    g.pid()
                ),
            ),
        }
    }

    /// Sends `call` and waits for its answer.
    fn call(&self, call: Call) -> Result<Answer> {
        let api = call.api();
        let (g, mut s) = self.connection()?;
        let r = {
            let _busy = g.busy();
            exchange(
                &mut s,
                &Request {
                    version: wire::VERSION,
                    call,
                },
            )
        };
        match r {
            Ok(reply) => {
                self.put_back(g, s);
                reply.result.map_err(Into::into)
            }
            Err(e) => Err(self.failed(&g, api, &e)),
        }
    }

    /// Sends an upload or download call; the connection then carries its stream.
    fn open_stream(self: &Arc<Self>, call: Call) -> Result<Box<dyn BackendStream>> {
        let api = call.api();
        let (g, mut s) = self.connection()?;
        let busy = g.busy_owned();
        let r = exchange(
            &mut s,
            &Request {
                version: wire::VERSION,
                call,
            },
        );
        match r {
            Ok(Reply {
                result: Ok(Answer::Stream),
                ..
            }) => Ok(Box::new(ForwardStream {
                fwd: Arc::clone(self),
                generation: g,
                conn: Some(s),
                api,
                _busy: busy,
            })),
            // the connection is in an unknown state: not reused
            Ok(Reply { result: Ok(a), .. }) => Err(unexpected(a)),
            Ok(Reply { result: Err(f), .. }) => {
                drop(busy);
                self.put_back(g, s);
                Err(f.into())
            }
            Err(e) => Err(self.failed(&g, api, &e)),
        }
    }
}

/// Writes `req` and reads its reply, checking the version.
fn exchange(s: &mut UnixStream, req: &Request) -> std::result::Result<Reply, WireError> {
    wire::write_message(s, req)?;
    read_reply(s)
}

fn read_reply(s: &mut UnixStream) -> std::result::Result<Reply, WireError> {
    let reply: Reply = wire::read_frame(s)?.message()?;
    if reply.version != wire::VERSION {
        return Err(WireError::Unexpected("a reply of this version"));
    }
    Ok(reply)
}

fn unexpected(a: Answer) -> Error {
    rpc(
        ErrorCode::Rpc,
        format!("unexpected answer from the plugin host: {a:?}"),
    )
}

/// A volume stream whose backend runs in the plugin host process: the connection
/// carries it until it ends. Dropped unfinished, the connection closes and the plugin
/// host aborts the stream.
struct ForwardStream {
    fwd: Arc<Forwarder>,
    generation: Arc<Generation>,
    conn: Option<UnixStream>,
    api: &'static str,
    _busy: OwnedBusy,
}

impl ForwardStream {
    fn conn(&mut self) -> Result<&mut UnixStream> {
        self.conn.as_mut().ok_or_else(|| {
            Error::driver(
                ErrorCode::OperationInvalid,
                ErrorDomain::Storage,
                "the volume stream has ended",
            )
        })
    }

    /// A channel failure: the stream is over.
    fn broken(&mut self, e: &WireError) -> Error {
        self.conn = None;
        self.fwd.failed(&self.generation, self.api, e)
    }

    fn reply(&mut self, r: std::result::Result<Reply, WireError>) -> Result<()> {
        match r {
            Ok(Reply {
                result: Ok(Answer::Done),
                ..
            }) => Ok(()),
            Ok(Reply { result: Ok(a), .. }) => Err(unexpected(a)),
            Ok(Reply { result: Err(f), .. }) => Err(f.into()),
            Err(e) => Err(self.broken(&e)),
        }
    }

    fn end(&mut self, how: StreamCall) -> Result<()> {
        let s = self.conn()?;
        let r = wire::write_message(s, &how).and_then(|()| read_reply(s));
        let r = self.reply(r);
        self.conn = None;
        r
    }
}

impl BackendStream for ForwardStream {
    fn send(&mut self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(wire::MAX_DATA) {
            let s = self.conn()?;
            let r = wire::write_data(s, chunk).and_then(|()| read_reply(s));
            self.reply(r)?;
        }
        Ok(())
    }

    fn recv(&mut self, max: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.recv_into(&mut out, max)?;
        Ok(out)
    }

    fn recv_into(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize> {
        let s = self.conn()?;
        let r = wire::write_message(s, &StreamCall::Recv { max: max as u64 })
            .and_then(|()| wire::read_frame(s));
        match r {
            Ok(Frame::Data(d)) if d.len() <= max => {
                out.extend_from_slice(&d);
                Ok(d.len())
            }
            Ok(Frame::Data(_)) => {
                Err(self.broken(&WireError::Unexpected("at most the bytes asked for")))
            }
            Ok(frame) => match frame.message::<Reply>() {
                Ok(Reply { result: Err(f), .. }) => Err(f.into()),
                Ok(Reply { result: Ok(a), .. }) => Err(unexpected(a)),
                Err(e) => Err(self.broken(&e)),
            },
            Err(e) => Err(self.broken(&e)),
        }
    }

    fn finish(&mut self) -> Result<()> {
        self.end(StreamCall::Finish)
    }

    fn abort(&mut self) -> Result<()> {
        self.end(StreamCall::Abort)
    }
}

/// The pools of one type, served by an isolated plugin.
pub struct ForwardPool {
    fwd: Arc<Forwarder>,
    pool_type: String,
}

impl ForwardPool {
    /// Forwards `pool_type`'s backend calls through `fwd`.
    pub fn new(fwd: Arc<Forwarder>, pool_type: &str) -> ForwardPool {
        ForwardPool {
            fwd,
            pool_type: pool_type.to_string(),
        }
    }

    fn t(&self) -> String {
        self.pool_type.clone()
    }

    fn done(&self, call: Call) -> Result<()> {
        match self.fwd.call(call)? {
            Answer::Done => Ok(()),
            a => Err(unexpected(a)),
        }
    }

    fn text(&self, call: Call) -> Result<String> {
        match self.fwd.call(call)? {
            Answer::Text(t) => Ok(t),
            a => Err(unexpected(a)),
        }
    }
}

impl PoolBackend for ForwardPool {
    fn check_pool(&self, pool: &str) -> Result<bool> {
        match self.fwd.call(Call::CheckPool {
            pool_type: self.t(),
            pool: pool.into(),
        })? {
            Answer::Bool(b) => Ok(b),
            a => Err(unexpected(a)),
        }
    }

    fn build_pool(&self, pool: &str, flags: u32) -> Result<()> {
        self.done(Call::BuildPool {
            pool_type: self.t(),
            pool: pool.into(),
            flags,
        })
    }

    fn start_pool(&self, pool: &str) -> Result<()> {
        self.done(Call::StartPool {
            pool_type: self.t(),
            pool: pool.into(),
        })
    }

    fn stop_pool(&self, pool: &str) -> Result<()> {
        self.done(Call::StopPool {
            pool_type: self.t(),
            pool: pool.into(),
        })
    }

    fn delete_pool(&self, pool: &str, flags: u32) -> Result<()> {
        self.done(Call::DeletePool {
            pool_type: self.t(),
            pool: pool.into(),
            flags,
        })
    }

    fn refresh_pool(&self, pool: &str) -> Result<PoolRefresh> {
        match self.fwd.call(Call::RefreshPool {
            pool_type: self.t(),
            pool: pool.into(),
        })? {
            Answer::Refresh(r) => Ok(r.into()),
            a => Err(unexpected(a)),
        }
    }

    fn create_volume(&self, pool: &str, vol: &str, flags: u32) -> Result<String> {
        self.text(Call::CreateVolume {
            pool_type: self.t(),
            pool: pool.into(),
            vol: vol.into(),
            flags,
        })
    }

    fn create_volume_from(
        &self,
        pool: &str,
        vol: &str,
        src_pool: &str,
        src_vol: &str,
        flags: u32,
    ) -> Result<String> {
        self.text(Call::CreateVolumeFrom {
            pool_type: self.t(),
            pool: pool.into(),
            vol: vol.into(),
            src_pool: src_pool.into(),
            src_vol: src_vol.into(),
            flags,
        })
    }

    fn delete_volume(&self, pool: &str, vol: &str, flags: u32) -> Result<()> {
        self.done(Call::DeleteVolume {
            pool_type: self.t(),
            pool: pool.into(),
            vol: vol.into(),
            flags,
        })
    }

    fn resize_volume(&self, pool: &str, vol: &str, capacity: u64, flags: u32) -> Result<()> {
        self.done(Call::ResizeVolume {
            pool_type: self.t(),
            pool: pool.into(),
            vol: vol.into(),
            capacity,
            flags,
        })
    }

    fn wipe_volume(&self, pool: &str, vol: &str, algorithm: u32, flags: u32) -> Result<()> {
        self.done(Call::WipeVolume {
            pool_type: self.t(),
            pool: pool.into(),
            vol: vol.into(),
            algorithm,
            flags,
        })
    }

    fn refresh_volume(&self, pool: &str, vol: &str) -> Result<String> {
        self.text(Call::RefreshVolume {
            pool_type: self.t(),
            pool: pool.into(),
            vol: vol.into(),
        })
    }

    fn upload_volume(
        &self,
        pool: &str,
        vol: &str,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn BackendStream>> {
        self.fwd.open_stream(Call::UploadVolume {
            pool_type: self.t(),
            pool: pool.into(),
            vol: vol.into(),
            offset,
            length,
            flags,
        })
    }

    fn download_volume(
        &self,
        pool: &str,
        vol: &str,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<Box<dyn BackendStream>> {
        self.fwd.open_stream(Call::DownloadVolume {
            pool_type: self.t(),
            pool: pool.into(),
            vol: vol.into(),
            offset,
            length,
            flags,
        })
    }

    fn find_pool_sources(&self, spec: &str, flags: u32) -> Result<String> {
        self.text(Call::FindPoolSources {
            pool_type: self.t(),
            spec: spec.into(),
            flags,
        })
    }
}

/// The networks of one forward mode, served by an isolated plugin.
pub struct ForwardNet {
    fwd: Arc<Forwarder>,
    mode: String,
}

impl ForwardNet {
    /// Forwards `mode`'s backend calls through `fwd`.
    pub fn new(fwd: Arc<Forwarder>, mode: &str) -> ForwardNet {
        ForwardNet {
            fwd,
            mode: mode.to_string(),
        }
    }

    fn m(&self) -> String {
        self.mode.clone()
    }

    fn done(&self, call: Call) -> Result<()> {
        match self.fwd.call(call)? {
            Answer::Done => Ok(()),
            a => Err(unexpected(a)),
        }
    }
}

impl NetBackend for ForwardNet {
    fn start_network(&self, net: &str, state_dir: &str) -> Result<String> {
        match self.fwd.call(Call::StartNetwork {
            mode: self.m(),
            net: net.into(),
            state_dir: state_dir.into(),
        })? {
            Answer::Text(t) => {
                self.fwd.network_running(state_dir, Some((&self.mode, net)));
                Ok(t)
            }
            a => Err(unexpected(a)),
        }
    }

    fn stop_network(&self, net: &str, state_dir: &str) -> Result<()> {
        self.done(Call::StopNetwork {
            mode: self.m(),
            net: net.into(),
            state_dir: state_dir.into(),
        })?;
        self.fwd.network_running(state_dir, None);
        Ok(())
    }

    fn check_network(&self, net: &str, state_dir: &str) -> Result<bool> {
        match self.fwd.call(Call::CheckNetwork {
            mode: self.m(),
            net: net.into(),
            state_dir: state_dir.into(),
        })? {
            Answer::Bool(b) => {
                self.fwd
                    .network_running(state_dir, b.then_some((self.mode.as_str(), net)));
                Ok(b)
            }
            a => Err(unexpected(a)),
        }
    }

    fn plug_port(&self, net: &str, port: &str) -> Result<PortPlug> {
        match self.fwd.call(Call::PlugPort {
            mode: self.m(),
            net: net.into(),
            port: port.into(),
        })? {
            Answer::Plug(p) => Ok(p.into()),
            a => Err(unexpected(a)),
        }
    }

    fn unplug_port(&self, net: &str, port: &str) -> Result<()> {
        self.done(Call::UnplugPort {
            mode: self.m(),
            net: net.into(),
            port: port.into(),
        })
    }

    fn dhcp_leases(&self, net: &str, mac: &str) -> Result<Vec<Lease>> {
        match self.fwd.call(Call::DhcpLeases {
            mode: self.m(),
            net: net.into(),
            mac: mac.into(),
        })? {
            Answer::Leases(l) => Ok(l.into_iter().map(Into::into).collect()),
            a => Err(unexpected(a)),
        }
    }

    fn update(
        &self,
        net: &str,
        command: u32,
        section: u32,
        parent_index: i32,
        xml: &str,
        flags: u32,
    ) -> Result<()> {
        self.done(Call::UpdateNetwork {
            mode: self.m(),
            net: net.into(),
            command,
            section,
            parent_index,
            xml: xml.into(),
            flags,
        })
    }
}

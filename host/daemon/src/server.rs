//! Sockets, the accept loops and the per-connection I/O tasks.
//!
//! Each connection is two tokio tasks: a reader that cuts frames and dispatches them,
//! and a flush task writing what the client's [`Outbox`] could not write at once. Calls
//! that reach a driver run on the I/O worker itself or under `block_in_place` (queries,
//! placed by `placement.rs`: a hung or slow driver call never holds more than one worker)
//! or on tokio's blocking pool (everything else, at most `max_client_requests` per
//! client).

use crate::client::{Client, Shared, keepalive_frame};
use crate::dispatch;
use crate::outbox::Outbox;
use rvirt_wire::frame::StreamPacket;
use rvirt_wire::protocol::{
    self, KEEPALIVE_PROGRAM, REMOTE_PROGRAM, REMOTE_VERSION, RemoteError, error_code, error_domain,
};
use rvirt_wire::{Frame, FrameDecoder, Header, MessageType, Status, frame};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// Errors while setting up a socket.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create socket directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("socket {0} is in use by another daemon")]
    InUse(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
}

/// One listening socket.
#[derive(Debug)]
pub struct Listener {
    pub path: PathBuf,
    pub read_only: bool,
    /// Passed by systemd: never unlinked by the daemon.
    pub activated: bool,
    pub listener: UnixListener,
}

/// Serves a listening socket systemd passed (`fallback` names it in messages when it has
/// no path). It is used as it is: no unlink, bind or chmod.
pub fn from_activated(
    socket: crate::activation::Activated,
    fallback: &Path,
    read_only: bool,
) -> Result<Listener, ServerError> {
    let path = socket.path.unwrap_or_else(|| fallback.to_path_buf());
    let bind_err = |source| ServerError::Bind {
        path: path.clone(),
        source,
    };
    let std_listener = std::os::unix::net::UnixListener::from(socket.fd);
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let listener = UnixListener::from_std(std_listener).map_err(bind_err)?;
    Ok(Listener {
        path,
        read_only,
        activated: true,
        listener,
    })
}

/// Creates (or takes over a stale) unix socket at `path` with permissions `mode`.
pub fn bind(path: &Path, mode: u32, read_only: bool) -> Result<Listener, ServerError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::Dir {
            path: dir.into(),
            source,
        })?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse(path.into()));
        }
        let _ = std::fs::remove_file(path);
    }
    let bind_err = |source| ServerError::Bind {
        path: path.into(),
        source,
    };
    let std_listener = bind_with_mode(path, mode).map_err(bind_err)?;
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let listener = UnixListener::from_std(std_listener).map_err(bind_err)?;
    Ok(Listener {
        path: path.into(),
        read_only,
        activated: false,
        listener,
    })
}

/// Binds a unix socket at `path` that nobody can connect to before it has `mode`: the
/// socket is made in a fresh 0700 directory beside `path`, given its mode there, then
/// renamed into place (a plain bind then chmod leaves a window in which a connection
/// made under a lax umask would outlive the chmod).
pub fn bind_with_mode(path: &Path, mode: u32) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let private = parent.join(format!(".{name}.{}.bind", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let staged = private.join("s");
    let result = std::os::unix::net::UnixListener::bind(&staged).and_then(|l| {
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staged, path)?;
        Ok(l)
    });
    let _ = std::fs::remove_dir_all(&private);
    result
}

/// Per-connection settings.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub max_clients: usize,
    /// Calls of one client running in the worker pool at once.
    pub max_client_requests: usize,
    pub keepalive_interval: Duration,
    pub keepalive_count: u32,
}

/// The running daemon's shared counters.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    settings: ConnSettings,
    /// The connected clients, for the admin program.
    pub registry: Arc<crate::admin::Clients>,
    /// The pool slots of calls that leave the reactor (`maxWorkers`).
    pub workers: Arc<crate::admin::Workers>,
    clients: AtomicUsize,
    next_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Server {
    pub fn new(
        shared: Arc<Shared>,
        settings: ConnSettings,
        shutdown: watch::Receiver<bool>,
        workers: Arc<crate::admin::Workers>,
    ) -> Arc<Server> {
        Arc::new(Server {
            shared,
            settings,
            registry: Arc::default(),
            workers,
            clients: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            shutdown,
        })
    }

    /// Accepts clients on `listener` until shutdown.
    pub async fn accept_loop(self: Arc<Server>, listener: Listener) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                r = listener.listener.accept() => r,
                _ = shutdown.changed() => break,
            };
            match accepted {
                Ok((stream, _)) => {
                    if self.clients.load(Ordering::Relaxed) >= self.settings.max_clients {
                        tracing::warn!(
                            "refusing a client: max_clients ({}) reached",
                            self.settings.max_clients
                        );
                        drop(stream);
                        continue;
                    }
                    self.clients.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::client_connected();
                    let server = Arc::clone(&self);
                    let read_only = listener.read_only;
                    tokio::spawn(async move {
                        let peer = crate::access::Peer::of(&stream);
                        server
                            .serve(stream, read_only, peer, crate::admin::Transport::Unix, None)
                            .await;
                        server.clients.fetch_sub(1, Ordering::Relaxed);
                        crate::metrics::client_disconnected();
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning
                    tracing::warn!(socket = %listener.path.display(), "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Accepts clients on a TCP or TLS socket until shutdown. Each connection, once its
    /// TLS handshake and DN check pass, is served read-write as a unix one: its plain
    /// bytes are relayed through a socket pair to [`Server::serve`].
    pub async fn accept_net(self: Arc<Server>, listener: crate::net::NetListener) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                r = listener.listener.accept() => r,
                _ = shutdown.changed() => break,
            };
            match accepted {
                Ok((stream, from)) => {
                    if self.clients.load(Ordering::Relaxed) >= self.settings.max_clients {
                        tracing::warn!(
                            %from,
                            "refusing a client: max_clients ({}) reached",
                            self.settings.max_clients
                        );
                        continue;
                    }
                    self.clients.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::client_connected();
                    let server = Arc::clone(&self);
                    let tls = listener.tls.clone();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        match tls {
                            Some(tls) => server.serve_tls(stream, from, tls).await,
                            None => {
                                tracing::debug!(%from, "tcp client connected");
                                server.relay(stream, from, false).await
                            }
                        }
                        server.clients.fetch_sub(1, Ordering::Relaxed);
                        crate::metrics::client_disconnected();
                    });
                }
                Err(e) => {
                    tracing::warn!(addr = %listener.addr, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The TLS handshake (bounded in time), the DN check, then the relay.
    async fn serve_tls(
        &self,
        stream: tokio::net::TcpStream,
        from: std::net::SocketAddr,
        tls: crate::net::TlsServer,
    ) {
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream));
        let stream = match handshake.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(%from, "tls handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::warn!(%from, "tls handshake timed out");
                return;
            }
        };
        let mut stream = stream;
        let cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        let checked = crate::net::check_dn(cert, tls.allowed.as_deref().map(Vec::as_slice));
        match checked {
            Ok(dn) => tracing::debug!(%from, dn, "tls client connected"),
            Err(why) => {
                // as libvirtd: no confirmation byte, the connection closes
                tracing::warn!(%from, "refusing a tls client: {why}");
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
                return;
            }
        }
        // libvirt's clients wait for one byte, 1, saying the certificate was accepted
        let confirm = async {
            tokio::io::AsyncWriteExt::write_all(&mut stream, &[1]).await?;
            tokio::io::AsyncWriteExt::flush(&mut stream).await
        };
        if let Err(e) = confirm.await {
            tracing::debug!(%from, "cannot confirm the tls session: {e}");
            return;
        }
        self.relay(stream, from, true).await;
    }

    /// Serves a network connection through a unix socket pair, read-write.
    async fn relay<S>(&self, mut stream: S, from: std::net::SocketAddr, secure: bool)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (ours, mut theirs) = match UnixStream::pair() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%from, "cannot create a socket pair: {e}");
                return;
            }
        };
        let relay = async {
            if let Err(e) = tokio::io::copy_bidirectional(&mut stream, &mut theirs).await {
                tracing::debug!(%from, "network connection ended: {e}");
            }
            drop(theirs);
        };
        let peer = crate::access::Peer::network(!secure);
        let transport = if secure {
            crate::admin::Transport::Tls
        } else {
            crate::admin::Transport::Tcp
        };
        tokio::join!(
            self.serve(ours, false, peer, transport, Some(from.to_string())),
            relay
        );
    }

    /// Serves one connection until it closes, misbehaves or the daemon stops.
    async fn serve(
        &self,
        stream: UnixStream,
        read_only: bool,
        peer: crate::access::Peer,
        transport: crate::admin::Transport,
        addr: Option<String>,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let who = crate::admin::Who {
            uid: peer.uid,
            gid: peer.gid,
            pid: peer.pid,
            addr,
        };
        let close = self.registry.add(id, transport, read_only, who);
        set_socket_buffers(&stream);
        let (mut reader, writer) = stream.into_split();
        let outbox = Arc::new(Outbox::new(writer));
        let flusher = {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move { outbox.flush_loop().await })
        };
        let client = Arc::new(Client::new(
            id,
            read_only,
            peer,
            Arc::clone(&self.shared),
            Arc::clone(&outbox),
        ));
        tracing::debug!(client = id, read_only, "client connected");
        let mut shutdown = self.shutdown.clone();
        let mut decoder = FrameDecoder::new();
        let requests = Arc::new(tokio::sync::Semaphore::new(
            self.settings.max_client_requests,
        ));
        let interval = self.settings.keepalive_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_rx = Instant::now();
        let mut pings = 0u32;
        'conn: loop {
            let buf = decoder.read_buffer();
            if buf.is_empty()
                && buf.capacity() > 256 * 1024
                && !client.with_streams(|s| s.has_open())
            {
                // give back the memory of a large frame once it is handled (kept while a
                // stream is open: its packets come one after another)
                *buf = Vec::new();
            }
            if buf.capacity() - buf.len() < 1024 {
                // small, growing reads: thousands of idle clients must stay cheap; the
                // decoder reserves a large frame's full size once its length is known
                buf.reserve(4096);
            }
            tokio::select! {
                r = reader.read_buf(buf) => match r {
                    Ok(0) => {
                        if let Err(e) = decoder.finish() {
                            tracing::debug!(client = id, "connection closed mid-frame: {e}");
                        }
                        break 'conn;
                    }
                    Ok(_) => {
                        last_rx = Instant::now();
                        pings = 0;
                    }
                    Err(e) => {
                        tracing::debug!(client = id, "read failed: {e}");
                        break 'conn;
                    }
                },
                _ = tick.tick() => {
                    if client.keepalive_enabled() && last_rx.elapsed() >= interval {
                        if pings >= self.settings.keepalive_count {
                            tracing::info!(client = id, "keepalive timeout, closing the connection");
                            break 'conn;
                        }
                        pings += 1;
                        client.send(keepalive_frame(protocol::KEEPALIVE_PING));
                    }
                    continue;
                }
                _ = shutdown.changed() => break 'conn,
                _ = close.notified() => {
                    tracing::info!(client = id, "disconnected by an admin");
                    break 'conn;
                }
            }
            loop {
                match decoder.next_frame() {
                    Ok(Some(f)) => match handle_frame(&client, f) {
                        Route::Continue => {}
                        Route::Stream(tx, packet) => {
                            // a full queue stops reading this client: flow control
                            tokio::select! {
                                r = tx.send(packet) => {
                                    if r.is_err() {
                                        tracing::debug!(client = id, "dropping a packet of an ended stream");
                                    }
                                }
                                _ = shutdown.changed() => break 'conn,
                            }
                        }
                        Route::Offload(f) => {
                            // at most `max_client_requests` calls of one client in the
                            // pool; past that, stop reading from it (backpressure)
                            let permit = tokio::select! {
                                p = Arc::clone(&requests).acquire_owned() => p,
                                _ = shutdown.changed() => break 'conn,
                            };
                            let Ok(permit) = permit else { break 'conn };
                            // and at most `maxWorkers` calls of all clients
                            let worker = tokio::select! {
                                w = self.workers.acquire() => w,
                                _ = shutdown.changed() => break 'conn,
                            };
                            let Some(worker) = worker else { break 'conn };
                            let client = Arc::clone(&client);
                            tokio::task::spawn_blocking(move || {
                                let _worker = worker;
                                let reply = dispatch::handle_call(&client, &f.header, &f.payload);
                                client.send(reply);
                                // a stream the call opened runs once its reply is out
                                crate::streams::start(&client, f.header.serial);
                                drop(permit);
                            });
                        }
                    },
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(client = id, "closing the connection: {e}");
                        break 'conn;
                    }
                }
            }
            if outbox.is_closed() {
                tracing::debug!(client = id, "output closed, dropping the connection");
                break 'conn;
            }
        }
        outbox.close();
        let _ = flusher.await;
        let closing = Arc::clone(&client);
        let _ = tokio::task::spawn_blocking(move || {
            // open streams abort (their workers see the queues close), then the connection
            drop(closing.with_streams(|s| s.close()));
            closing.close()
        })
        .await;
        self.registry.remove(id);
        tracing::debug!(client = id, "client disconnected");
    }
}

/// Time a TLS client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Socket buffer wanted for a connection (send side: the bytes a volume download keeps in
/// flight without waking the daemon).
const SOCKET_BUFFER: usize = 4 << 20;

/// Larger socket buffers: fewer wake-ups per MiB streamed. Best effort: past
/// `net.core.wmem_max` only a privileged daemon gets them (`SO_SNDBUFFORCE`).
fn set_socket_buffers(stream: &UnixStream) {
    use rustix::net::sockopt;
    if sockopt::set_socket_send_buffer_size_force(stream, SOCKET_BUFFER).is_err() {
        let _ = sockopt::set_socket_send_buffer_size(stream, SOCKET_BUFFER);
    }
    if sockopt::set_socket_recv_buffer_size_force(stream, SOCKET_BUFFER).is_err() {
        let _ = sockopt::set_socket_recv_buffer_size(stream, SOCKET_BUFFER);
    }
}

/// What to do after [`handle_frame`].
pub(crate) enum Route {
    Continue,
    /// Run this call on the worker pool.
    Offload(Frame),
    /// Deliver this packet to its stream's worker.
    Stream(tokio::sync::mpsc::Sender<StreamPacket>, StreamPacket),
}

/// Handles one frame, except the calls it hands back for the worker pool.
pub(crate) fn handle_frame(client: &Arc<Client>, f: Frame) -> Route {
    let h = f.header;
    match (h.prog, h.msg_type) {
        (KEEPALIVE_PROGRAM, MessageType::Message) => {
            if h.procedure == protocol::KEEPALIVE_PING {
                client.send(keepalive_frame(protocol::KEEPALIVE_PONG));
            }
            Route::Continue
        }
        (REMOTE_PROGRAM, MessageType::Call)
            if h.vers == REMOTE_VERSION && h.status == Status::Ok =>
        {
            if dispatch::is_inline(h.procedure) {
                client.send(dispatch::handle_call(client, &h, &f.payload));
            } else if dispatch::is_quick(h.procedure) || dispatch::is_short_change(h.procedure) {
                // a short driver call: on this worker, or under block_in_place when it may
                // be long (`placement.rs`); either way the reply needs no thread hand-off
                let remote = client.remote_driver.load(Ordering::Relaxed);
                let reply = crate::placement::run_quick(h.procedure, remote, || {
                    dispatch::handle_call(client, &h, &f.payload)
                });
                client.send(reply);
            } else {
                return Route::Offload(f);
            }
            Route::Continue
        }
        (_, MessageType::Call | MessageType::CallWithFds) => {
            let message = if h.msg_type == MessageType::CallWithFds {
                "file descriptor passing is not supported".to_string()
            } else if h.prog == REMOTE_PROGRAM && h.vers == REMOTE_VERSION {
                format!("invalid status {:?} in a call", h.status)
            } else {
                format!("cannot find program {:#x} version {}", h.prog, h.vers)
            };
            tracing::debug!(client = client.id, "{message}");
            let err = RemoteError::new(error_code::RPC, error_domain::RPC, message);
            let reply = Header {
                msg_type: MessageType::Reply,
                status: Status::Error,
                ..h
            };
            client.send(frame::encode(&reply, &err).unwrap_or_default());
            Route::Continue
        }
        (REMOTE_PROGRAM, MessageType::Stream | MessageType::StreamHole) => {
            // packets of a stream that ended (or never was) are dropped, as libvirtd does
            let Some(tx) = client.with_streams(|s| s.sender(h.serial)) else {
                tracing::debug!(
                    client = client.id,
                    serial = h.serial,
                    "ignoring a packet of no open stream"
                );
                return Route::Continue;
            };
            let packet = StreamPacket::decode(&f).unwrap_or_else(|e| {
                // a malformed packet aborts its stream
                tracing::debug!(client = client.id, "bad stream packet: {e}");
                StreamPacket::Abort(None)
            });
            Route::Stream(tx, packet)
        }
        (_, msg_type) => {
            // replies and stray messages
            tracing::debug!(
                client = client.id,
                prog = h.prog,
                ?msg_type,
                "ignoring an unexpected message"
            );
            Route::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_appears_with_its_mode_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        std::fs::write(&path, b"stale").unwrap();
        let l = bind_with_mode(&path, 0o600).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
        // it is the listener's socket, and nothing else is left beside it
        let _c = std::os::unix::net::UnixStream::connect(&path).unwrap();
        l.accept().unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sock")]);
    }
}

//! The plugin host process: `rvirtd --plugin-host FILE --socket PATH --uri URI...
//! [--backend-socket PATH --secrets-uri URI]`.
//!
//! Loads the one plugin file in-process, exactly as the daemon would, and serves it over
//! libvirt's remote protocol on a private socket (0600) with the daemon's own server
//! code (when it serves URIs), and its storage and network backends over the
//! backend-call channel (`--backend-socket`, `serve.rs`) when the daemon forwards them. Its first line on stdout is a JSON object naming the plugin, its version and
//! API version once the socket accepts connections; it ends when its stdin closes (the
//! daemon stopped it, or died).
//!
//! Each connection (the daemon opens one per client connection of this plugin's driver)
//! is read by a thread of its own (`poll` for input, then `recv`), outside the async
//! runtime's reactor: a query is answered on that thread and its reply written from
//! there, so a call costs the process one wake-up and three system calls, not an epoll
//! wake-up of an I/O worker, a task switch, a read and a second `epoll_wait` (the async
//! server's path).
//! Everything else is the daemon's server code: [`server::handle_frame`] decides where
//! a frame goes, other calls run on the async runtime's blocking pool (so a long call
//! never stops the connection's reading, and keepalive PINGs are answered meanwhile),
//! replies and events leave through the connection's [`Outbox`] (`MSG_DONTWAIT` writes;
//! its flush task on the runtime writes what a full socket did not take).

use crate::client::{self, Client, keepalive_frame};
use crate::outbox::Outbox;
use crate::server::{self, ConnSettings, Route};
use crate::{dispatch, served};
use anyhow::{Context, Result, bail};
use rvirt_wire::FrameDecoder;
use rvirt_wire::protocol;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the daemon hands a plugin host process.
#[derive(Debug)]
pub struct HostArgs {
    /// The plugin file.
    pub file: PathBuf,
    /// Where to listen.
    pub socket: PathBuf,
    /// The URIs it serves (the daemon's, for this plugin's schemes).
    pub uris: Vec<String>,
    /// The daemon's socket for plugin hosts (`--services`): the plugin's host services
    /// answer storage volumes and network ports from the daemon's pools and networks
    /// through it. `None`: from this process's own (a plugin host started by hand).
    pub services: Option<PathBuf>,
    /// Where to serve the plugin's storage and network backends to the daemon
    /// (`--backend-socket`, `wire.rs`), when the daemon forwards them here.
    pub backend_socket: Option<PathBuf>,
    /// The URI whose secret store the storage backends read (`--secrets-uri`).
    pub secrets_uri: Option<String>,
}

/// Runs the plugin host process until its stdin closes.
pub fn run(args: HostArgs) -> Result<()> {
    if args.uris.is_empty() && args.backend_socket.is_none() {
        bail!("--plugin-host needs at least one --uri or a --backend-socket");
    }
    // a storage- or network-only plugin serves no URI: no remote-protocol socket then
    let served = (!args.uris.is_empty())
        .then(|| served::Served::new(args.uris.iter().map(String::as_str)))
        .transpose()
        .context("invalid --uri")?;
    let runtime = rvirt_host::Runtime::with_search_path(vec![args.file.clone()]);
    // the daemon owns the secret store and changes it: read values as they are now
    rvirt_host::secrets_api::read_driver_secrets_from_files();
    if let Some(services) = &args.services {
        runtime.set_daemon_services(services);
    }
    let manifest = runtime.plugins().iter().find_map(|r| match &r.status {
        rvirt_host::PluginStatus::Loaded(m) => Some(m.clone()),
        _ => None,
    });
    let Some(manifest) = manifest else {
        let why = runtime.plugins().first().map_or_else(
            || "no such plugin file".to_string(),
            |r| format!("{:?}", r.status),
        );
        bail!("cannot load {}: {why}", args.file.display());
    };
    let runtime = Arc::new(runtime);
    if let Some(path) = &args.backend_socket {
        // the backends as the daemon resolves them in-process: this one file's
        let pools = match &args.secrets_uri {
            Some(uri) => runtime
                .pool_backends_for_uri(uri)
                .context("invalid --secrets-uri")?,
            None => runtime.pool_backends(),
        };
        let backends = Arc::new(super::serve::Backends {
            pools,
            nets: runtime.network_backends(),
        });
        super::serve::listen(path, backends)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
    }
    let tokio = async_runtime().context("cannot start the async runtime")?;
    tokio.block_on(async move {
        let accept = match served {
            Some(served) => Some(serve_uris(&args, runtime, served)?),
            None => None,
        };
        let ready = serde_json::json!({
            "name": manifest.name,
            "version": manifest.version,
            "api_version": manifest.api_version,
            "pid": std::process::id(),
        });
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{ready}").context("cannot write the ready line")?;
            out.flush().context("cannot write the ready line")?;
        }
        let sockets: Vec<PathBuf> = std::iter::once(args.socket.clone())
            .chain(args.backend_socket.clone())
            .collect();
        let remove = move || {
            for s in &sockets {
                let _ = std::fs::remove_file(s);
            }
        };
        // stdin closes when the daemon stops this process or dies
        {
            let remove = remove.clone();
            tokio::task::spawn_blocking(move || {
                let mut buf = [0u8; 64];
                loop {
                    match std::io::Read::read(&mut std::io::stdin(), &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                remove();
                std::process::exit(0);
            });
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot handle SIGTERM")?;
        term.recv().await;
        remove();
        if let Some(accept) = accept {
            accept.abort();
        }
        Ok::<(), anyhow::Error>(())
    })
}

/// Serves the daemon's URIs of this plugin over libvirt's remote protocol on `--socket`.
fn serve_uris(
    args: &HostArgs,
    runtime: Arc<rvirt_host::Runtime>,
    served: served::Served,
) -> Result<tokio::task::JoinHandle<()>> {
    let shared = Arc::new(client::Shared {
        runtime,
        default_uri: args.uris[0].clone(),
        served,
        isolation: None,
        opened: Default::default(),
        #[cfg(feature = "policy")]
        policy: None,
        #[cfg(feature = "policy")]
        stops: Arc::new(crate::access::ClientStops::default()),
    });
    let settings = server::ConnSettings {
        max_clients: 5000,
        max_client_requests: 64,
        keepalive_interval: Duration::from_secs(5),
        keepalive_count: 5,
    };
    let listener = server::bind(&args.socket, 0o600, false)?;
    Ok(tokio::spawn(accept_loop(
        listener,
        shared,
        settings,
        crate::admin::Workers::new(64),
    )))
}

/// The process's async runtime: the accept loop, the outboxes' flush tasks, and the
/// blocking pool for calls that are not queries.
fn async_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .thread_keep_alive(Duration::from_secs(30))
        // a blocking-pool thread started by a connection thread would inherit its short
        // slice: the runtime's threads (long calls among them) keep the default
        .on_thread_start(|| {
            if let Err(e) = set_slice(None) {
                tracing::debug!("cannot reset a thread's time slice: {e}");
            }
        })
        .enable_all()
        .build()
}

/// Accepts the daemon's connections; each is served by a thread of its own.
async fn accept_loop(
    listener: server::Listener,
    shared: Arc<client::Shared>,
    settings: ConnSettings,
    workers: Arc<crate::admin::Workers>,
) {
    let mut next_id = 1u64;
    loop {
        let stream = match listener.listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(socket = %listener.path.display(), "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        let peer = crate::access::Peer::of(&stream);
        // out of the reactor: the thread waits with `poll` (its timeout paces the
        // keepalive) and reads with `recv`, the outbox writes with `MSG_DONTWAIT`
        let socket = stream.into_std().and_then(|s| {
            s.set_nonblocking(false)?;
            Ok((s.try_clone()?, s))
        });
        let (reading, writing) = match socket {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("cannot serve a connection: {e}");
                continue;
            }
        };
        let conn = Conn {
            id,
            socket: reading,
            outbox: Arc::new(Outbox::plain(writing)),
            peer,
            shared: Arc::clone(&shared),
            settings: settings.clone(),
            workers: Arc::clone(&workers),
            runtime: tokio::runtime::Handle::current(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("rvirt-conn-{id}"))
            .spawn(move || conn.serve());
        if let Err(e) = spawned {
            tracing::warn!("cannot start a connection thread: {e}");
        }
    }
}

/// One connection of the daemon, served by [`Conn::serve`] on its own thread.
struct Conn {
    id: u64,
    /// The thread's handle of the socket (waited on with `poll`, read without waiting).
    socket: UnixStream,
    outbox: Arc<Outbox>,
    peer: crate::access::Peer,
    shared: Arc<client::Shared>,
    settings: ConnSettings,
    workers: Arc<crate::admin::Workers>,
    runtime: tokio::runtime::Handle,
}

/// Bytes one `recv` may take.
const READ_CHUNK: usize = 64 * 1024;

/// The time slice a connection thread asks the scheduler for (the kernel's default
/// grows with the number of CPUs: 1.4 ms on this project's 2-CPU machines).
///
/// Linux's EEVDF scheduler runs, among the threads ready to run, the one whose virtual
/// deadline (where its slice started plus the slice, in virtual time) comes first, and a
/// woken thread preempts the running one only when its deadline is earlier. A connection
/// thread runs a few microseconds a call, between the daemon's worker that sent the call
/// and the client that worker preempted; a short slice gives it the earlier deadline
/// when a call wakes it. Measured on one CPU (client, daemon and plugin host pinned
/// together, 4 sessions): the daemon's and the plugin host's CPU per `lookupByName` +
/// `info` pair went from 27.3-28.7 to 23.8-25.3 µs with it, and did not move without it
/// (the `poll` waits alone). It gives the thread no more CPU (its weight is unchanged);
/// only a thread that runs longer than its slice while others wait is preempted sooner.
const CONN_SLICE: Duration = Duration::from_micros(100);

/// Sets this thread's time slice: `Some` asks for a custom one, `None` goes back to the
/// kernel's default. The thread's policy and nice value are kept; a thread that is
/// neither `SCHED_OTHER` nor `SCHED_BATCH` is left alone. Custom slices are Linux 6.12
/// and later (`sched_attr.sched_runtime` of a fair-class thread); older kernels take the
/// request and ignore it.
fn set_slice(slice: Option<Duration>) -> std::io::Result<()> {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    const SCHED_FLAG_RESET_ON_FORK: u64 = 1;
    let mut attr = sched_attr()?;
    if attr.sched_policy != SCHED_OTHER && attr.sched_policy != SCHED_BATCH {
        return Ok(());
    }
    attr.sched_flags &= SCHED_FLAG_RESET_ON_FORK;
    attr.sched_runtime = slice.map_or(0, |s| u64::try_from(s.as_nanos()).unwrap_or(u64::MAX));
    // SAFETY: sched_setattr reads `attr.size` bytes from `attr`, a live `sched_attr` of
    // that size (pid 0: the calling thread).
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            &raw const attr,
            0 as libc::c_uint,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's scheduling attributes (`sched_runtime`: its slice in ns on a
/// kernel with custom slices, 0 on older ones).
fn sched_attr() -> std::io::Result<libc::sched_attr> {
    let size = std::mem::size_of::<libc::sched_attr>();
    let mut attr = libc::sched_attr {
        size: size as u32,
        sched_policy: 0,
        sched_flags: 0,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: 0,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_getattr writes at most `size` bytes to `attr`, a live, exclusively
    // borrowed `sched_attr` of that size (pid 0: the calling thread).
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &raw mut attr,
            size as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    attr.size = size as u32;
    Ok(attr)
}

/// Waits up to `timeout` until `socket` has something to read, has ended or failed
/// (`Ok(true)`; `Ok(false)` when the time is up).
///
/// `poll` for `POLLIN`, not a `recv` that blocks: a thread asleep in `recv` sleeps on the
/// socket's wait queue, where the kernel also signals write space each time the daemon
/// reads a reply this thread sent, so every call woke the thread once for nothing (two
/// context switches); a `poll` wait is woken only by the events it asked for.
fn wait_readable(socket: &UnixStream, timeout: Duration) -> std::io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: 5,
        tv_nsec: 0,
    });
    let mut fds = [PollFd::new(socket, PollFlags::IN)];
    Ok(poll(&mut fds, Some(&timeout))? > 0)
}

/// One `recv` of what is there, without waiting: `Ok(0)` at the end of the stream.
fn recv_now(socket: &UnixStream, buf: &mut [u8]) -> std::io::Result<usize> {
    use rustix::net::RecvFlags;
    rustix::net::recv(socket, buf, RecvFlags::DONTWAIT)
        .map(|(n, _)| n)
        .map_err(std::io::Error::from)
}

impl Conn {
    /// Reads and answers frames until the connection closes, then drops the client's
    /// streams, events and driver connection.
    fn serve(self) {
        let Conn {
            id,
            socket,
            outbox,
            peer,
            shared,
            settings,
            workers,
            runtime,
        } = self;
        if let Err(e) = set_slice(Some(CONN_SLICE)) {
            tracing::debug!(client = id, "cannot shorten the thread's time slice: {e}");
        }
        crate::placement::serve_on_own_thread();
        let flusher = {
            let outbox = Arc::clone(&outbox);
            runtime.spawn(async move { outbox.flush_loop().await })
        };
        let client = Arc::new(Client::new(id, false, peer, shared, Arc::clone(&outbox)));
        tracing::debug!(client = id, "daemon connection");
        let requests = Arc::new(tokio::sync::Semaphore::new(settings.max_client_requests));
        let interval = settings.keepalive_interval;
        let mut frames = FrameDecoder::new();
        let mut scratch = vec![0u8; READ_CHUNK];
        let mut last_rx = Instant::now();
        let mut pings = 0u32;
        'conn: loop {
            let ready = match wait_readable(&socket, interval) {
                Ok(ready) => ready,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(client = id, "poll failed: {e}");
                    break 'conn;
                }
            };
            // nothing for a keepalive interval
            if !ready {
                if client.keepalive_enabled() && last_rx.elapsed() >= interval {
                    if pings >= settings.keepalive_count {
                        tracing::info!(client = id, "keepalive timeout, closing the connection");
                        break 'conn;
                    }
                    pings += 1;
                    client.send(keepalive_frame(protocol::KEEPALIVE_PING));
                }
                continue;
            }
            match recv_now(&socket, &mut scratch) {
                Ok(0) => {
                    if let Err(e) = frames.finish() {
                        tracing::debug!(client = id, "connection closed mid-frame: {e}");
                    }
                    break 'conn;
                }
                Ok(n) => {
                    frames.feed(&scratch[..n]);
                    last_rx = Instant::now();
                    pings = 0;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    tracing::debug!(client = id, "read failed: {e}");
                    break 'conn;
                }
            }
            loop {
                let f = match frames.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(client = id, "closing the connection: {e}");
                        break 'conn;
                    }
                };
                match server::handle_frame(&client, f) {
                    Route::Continue => {}
                    // a full queue stops reading this connection: flow control
                    Route::Stream(tx, packet) => {
                        if tx.blocking_send(packet).is_err() {
                            tracing::debug!(client = id, "dropping a packet of an ended stream");
                        }
                    }
                    Route::Offload(f) => {
                        // as the async server: at most `max_client_requests` calls of the
                        // connection and `maxWorkers` of all at once, then stop reading
                        let Ok(permit) = runtime.block_on(Arc::clone(&requests).acquire_owned())
                        else {
                            break 'conn;
                        };
                        let Some(worker) = runtime.block_on(workers.acquire()) else {
                            break 'conn;
                        };
                        let client = Arc::clone(&client);
                        runtime.spawn_blocking(move || {
                            let _worker = worker;
                            let reply = dispatch::handle_call(&client, &f.header, &f.payload);
                            client.send(reply);
                            crate::streams::start(&client, f.header.serial);
                            drop(permit);
                        });
                    }
                }
            }
            if frames.pending() == 0 && frames.read_buffer().capacity() > 256 * 1024 {
                *frames.read_buffer() = Vec::new();
            }
            if outbox.is_closed() {
                tracing::debug!(client = id, "output closed, dropping the connection");
                break 'conn;
            }
        }
        outbox.close();
        let _ = runtime.block_on(flusher);
        drop(client.with_streams(|s| s.close()));
        client.close();
        tracing::debug!(client = id, "daemon connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_thread_has_a_short_slice_and_the_runtime_s_threads_the_default() {
        std::thread::spawn(|| {
            let slice = || sched_attr().unwrap().sched_runtime;
            let default = slice();
            if default == 0 {
                // a kernel without custom slices (before 6.12): nothing to look at
                return;
            }
            assert_ne!(default, CONN_SLICE.as_nanos() as u64);
            let nice = sched_attr().unwrap().sched_nice;
            set_slice(Some(CONN_SLICE)).unwrap();
            assert_eq!(slice(), CONN_SLICE.as_nanos() as u64);
            assert_eq!(
                sched_attr().unwrap().sched_nice,
                nice,
                "the nice value is kept"
            );
            // a blocking-pool thread this thread starts does not keep the short slice
            let rt = async_runtime().unwrap();
            let pool = rt.block_on(async { tokio::task::spawn_blocking(slice).await.unwrap() });
            assert_eq!(pool, default);
            drop(rt);
            set_slice(None).unwrap();
            assert_eq!(slice(), default);
        })
        .join()
        .unwrap();
    }
}

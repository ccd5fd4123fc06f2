//! Streams of one client: volume upload and download (`STORAGE_VOL_UPLOAD` 208,
//! `STORAGE_VOL_DOWNLOAD` 209) and domain consoles (`DOMAIN_OPEN_CONSOLE` 201).
//!
//! The call opens the host's [`VolStream`] and registers it here under the call's serial,
//! with a bounded packet queue, before the reply is sent. Once the reply is out, a worker
//! on the blocking pool runs the stream:
//!
//! - upload: the connection's reader task pushes the client's STREAM packets into the
//!   queue (waiting, and so not reading the socket, while it is full: a fast client
//!   cannot make the daemon buffer more than [`QUEUE`] packets); the worker writes them
//!   through the stream, and answers the client's finish (STREAM OK) with STREAM OK once
//!   the upload is committed.
//! - download: the worker reads chunks of at most [`STREAM_CHUNK_MAX`] bytes and writes
//!   STREAM CONTINUE packets, waiting while the client's outbox holds more than
//!   [`HIGH_WATER`] bytes; at the end an empty CONTINUE packet (end of file), then the
//!   client's STREAM OK is answered with STREAM OK.
//!
//! - console (`DOMAIN_OPEN_CONSOLE` 201, `console.rs`): both ways at once. A reader
//!   thread polls the pty and sends what it prints as STREAM CONTINUE packets (an empty
//!   one, end of file, when the device hangs up); the worker writes the client's packets
//!   to the pty. A forced open by another client aborts the session with an error.
//!
//! A failure is a STREAM ERROR packet carrying the `remote_error`; a client's STREAM
//! ERROR (abort) aborts the host stream and is confirmed with STREAM OK. When the client
//! disconnects the queues close and every worker aborts its stream, so the volume is no
//! longer busy.

use crate::client::Client;
use crate::console::Console;
use rvirt_host::VolStream;
use rvirt_wire::frame::{self, STREAM_CHUNK_MAX, StreamPacket};
use rvirt_wire::protocol::{REMOTE_PROGRAM, REMOTE_VERSION, RemoteError, error_code, error_domain};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

/// Packets queued per upload before the reader stops reading the client's socket.
pub const QUEUE: usize = 16;
/// Bytes a download may leave queued in the client's outbox before its worker waits.
pub const HIGH_WATER: usize = 4 * 1024 * 1024;

/// What a stream carries.
#[derive(Debug)]
pub enum Opened {
    /// A volume upload (`upload`) or download.
    Volume { stream: VolStream, upload: bool },
    /// A domain console.
    Console(Console),
}

/// A stream opened by a call whose reply is not sent yet.
struct Pending {
    opened: Opened,
    rx: mpsc::Receiver<StreamPacket>,
    procedure: i32,
}

/// The streams of one client.
#[derive(Default)]
pub struct Streams {
    /// Where the reader task delivers each open stream's packets, by serial.
    open: HashMap<u32, mpsc::Sender<StreamPacket>>,
    pending: HashMap<u32, Pending>,
    /// The client is gone: no new stream is registered.
    closed: bool,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("open", &self.open.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl Streams {
    /// Registers a stream opened by call `serial`. Refused (the stream is dropped, which
    /// aborts it) when the client is gone or a stream of that serial is open.
    pub fn register(&mut self, serial: u32, procedure: i32, opened: Opened) -> Result<(), String> {
        if self.closed {
            return Err("the client is disconnecting".into());
        }
        if self.open.contains_key(&serial) {
            return Err(format!("a stream with serial {serial} is already open"));
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        if let Opened::Console(c) = &opened {
            c.attach(&tx);
        }
        self.open.insert(serial, tx);
        self.pending.insert(
            serial,
            Pending {
                opened,
                rx,
                procedure,
            },
        );
        Ok(())
    }

    /// The queue of stream `serial`, if it is open.
    pub fn sender(&self, serial: u32) -> Option<mpsc::Sender<StreamPacket>> {
        self.open.get(&serial).cloned()
    }

    /// Whether any stream is open.
    pub fn has_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Forgets stream `serial`: later packets for it are dropped.
    pub fn remove(&mut self, serial: u32) {
        self.open.remove(&serial);
    }

    /// The client is gone: closes every queue (workers abort their streams) and returns
    /// the streams never started, for the caller to drop off the reactor.
    pub fn close(&mut self) -> Vec<Opened> {
        self.closed = true;
        self.open.clear();
        self.pending.drain().map(|(_, p)| p.opened).collect()
    }
}

/// Starts the worker of the stream call `serial` opened, once its reply is sent.
pub fn start(client: &Arc<Client>, serial: u32) {
    let Some(p) = client.with_streams(|s| s.pending.remove(&serial)) else {
        return;
    };
    let worker = Worker {
        client: Arc::clone(client),
        serial,
        procedure: p.procedure,
    };
    let rx = p.rx;
    tokio::task::spawn_blocking(move || match p.opened {
        Opened::Volume {
            stream,
            upload: true,
        } => worker.upload(stream, rx),
        Opened::Volume {
            stream,
            upload: false,
        } => worker.download(stream, rx),
        Opened::Console(c) => worker.console(c, rx),
    });
}

struct Worker {
    client: Arc<Client>,
    serial: u32,
    procedure: i32,
}

impl Worker {
    fn send(&self, p: &StreamPacket) {
        match p.encode(REMOTE_PROGRAM, REMOTE_VERSION, self.procedure, self.serial) {
            Ok(bytes) => self.client.send(bytes),
            Err(e) => tracing::warn!(
                client = self.client.id,
                "cannot encode a stream packet: {e}"
            ),
        }
    }

    /// Ends the stream: no more packets are taken for it, then `last` is sent.
    fn end(&self, last: StreamPacket) {
        self.client.with_streams(|s| s.remove(self.serial));
        self.send(&last);
    }

    /// The stream failed: aborts it and tells the client why.
    fn fail(&self, stream: &mut VolStream, e: RemoteError) {
        tracing::debug!(
            client = self.client.id,
            serial = self.serial,
            "stream failed: {e}"
        );
        if let Err(a) = stream.abort() {
            tracing::debug!(client = self.client.id, "aborting a failed stream: {a}");
        }
        self.end(StreamPacket::Abort(Some(e)));
    }

    /// The client went away: aborts the stream.
    fn gone(&self, stream: &mut VolStream) {
        tracing::debug!(
            client = self.client.id,
            serial = self.serial,
            "client gone, aborting its stream"
        );
        if let Err(e) = stream.abort() {
            tracing::debug!(client = self.client.id, "aborting a stream: {e}");
        }
        self.client.with_streams(|s| s.remove(self.serial));
    }

    /// The client aborted: aborts the stream and confirms.
    fn client_abort(&self, stream: &mut VolStream) {
        if let Err(e) = stream.abort() {
            tracing::debug!(client = self.client.id, "aborting a stream: {e}");
        }
        self.end(StreamPacket::End);
    }

    /// The client finished: finishes the stream and confirms, or says why it failed.
    fn client_finish(&self, stream: &mut VolStream) {
        match stream.finish() {
            Ok(()) => self.end(StreamPacket::End),
            Err(e) => self.end(StreamPacket::Abort(Some(host_error(e)))),
        }
    }

    fn upload(self, mut stream: VolStream, mut rx: mpsc::Receiver<StreamPacket>) {
        loop {
            match rx.blocking_recv() {
                None => return self.gone(&mut stream),
                Some(StreamPacket::Data(d)) => {
                    if d.is_empty() {
                        continue;
                    }
                    if let Err(e) = stream.send(&d) {
                        return self.fail(&mut stream, host_error(e));
                    }
                }
                Some(StreamPacket::Hole(_)) => {
                    return self.fail(
                        &mut stream,
                        RemoteError::new(
                            error_code::INVALID_ARG,
                            error_domain::STREAMS,
                            "invalid argument: a hole in a stream opened without VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM",
                        ),
                    );
                }
                Some(StreamPacket::End) => return self.client_finish(&mut stream),
                Some(StreamPacket::Abort(_)) => return self.client_abort(&mut stream),
            }
        }
    }

    fn download(self, mut stream: VolStream, mut rx: mpsc::Receiver<StreamPacket>) {
        let header = StreamPacket::Data(Vec::new()).header(
            REMOTE_PROGRAM,
            REMOTE_VERSION,
            self.procedure,
            self.serial,
        );
        // one frame buffer, reused while the socket takes frames whole: no allocation
        // and no copy per chunk beyond the read itself
        let mut spare: Option<Vec<u8>> = None;
        loop {
            // the client may abort (or finish early) while data flows
            match rx.try_recv() {
                Ok(StreamPacket::Abort(_)) => return self.client_abort(&mut stream),
                Ok(StreamPacket::End) => return self.client_finish(&mut stream),
                Ok(_) => {}
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => return self.gone(&mut stream),
            }
            let mut buf = spare
                .take()
                .unwrap_or_else(|| Vec::with_capacity(frame::FRAME_MIN + STREAM_CHUNK_MAX));
            buf.clear();
            buf.extend_from_slice(&[0; frame::LEN_LEN]);
            header.encode(&mut buf);
            let n = match stream.recv_into(&mut buf, STREAM_CHUNK_MAX) {
                Ok(n) => n,
                Err(e) => return self.fail(&mut stream, host_error(e)),
            };
            // the length word: at most FRAME_MIN + STREAM_CHUNK_MAX, far below u32::MAX
            let len = buf.len() as u32;
            buf[..frame::LEN_LEN].copy_from_slice(&len.to_be_bytes());
            match self.client.outbox.send_bounded(buf, HIGH_WATER) {
                Ok(back) => spare = back,
                Err(()) => return self.gone(&mut stream),
            }
            if n == 0 {
                break;
            }
        }
        // end of file sent: the client answers with its finish (or an abort)
        loop {
            match rx.blocking_recv() {
                None => return self.gone(&mut stream),
                Some(StreamPacket::End) => return self.client_finish(&mut stream),
                Some(StreamPacket::Abort(_)) => return self.client_abort(&mut stream),
                Some(_) => {}
            }
        }
    }
}

impl Worker {
    /// Pumps a console both ways until the client finishes or aborts, the device hangs
    /// up and the client confirms, a forced open takes the device over, or the client
    /// goes away.
    fn console(self, console: Console, mut rx: mpsc::Receiver<StreamPacket>) {
        let stop = Arc::new(AtomicBool::new(false));
        let reader = match console.pty.try_clone() {
            Ok(fd) => {
                let (client, serial, procedure) =
                    (Arc::clone(&self.client), self.serial, self.procedure);
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .name("rvirtd-console".into())
                    .spawn(move || console_reader(&client, serial, procedure, &fd, &stop))
                    .ok()
            }
            Err(_) => None,
        };
        let Some(reader) = reader else {
            self.end(StreamPacket::Abort(Some(RemoteError::new(
                error_code::INTERNAL_ERROR,
                error_domain::STREAMS,
                "internal error: cannot start the console reader",
            ))));
            return;
        };
        let halt = |reader: std::thread::JoinHandle<()>| {
            stop.store(true, Ordering::SeqCst);
            let _ = reader.join();
        };
        loop {
            match rx.blocking_recv() {
                None => {
                    halt(reader);
                    self.client.with_streams(|s| s.remove(self.serial));
                    return;
                }
                Some(StreamPacket::Data(d)) => {
                    if let Err(e) = write_pty(&console.pty, &d) {
                        halt(reader);
                        return self.end(StreamPacket::Abort(Some(RemoteError::new(
                            error_code::OPERATION_FAILED,
                            error_domain::STREAMS,
                            format!(
                                "operation failed: cannot write to the console {}: {e}",
                                console.path
                            ),
                        ))));
                    }
                }
                Some(StreamPacket::Hole(_)) => {}
                Some(StreamPacket::End) => {
                    halt(reader);
                    return self.end(StreamPacket::End);
                }
                Some(StreamPacket::Abort(_)) => {
                    halt(reader);
                    if console.taken_over() {
                        return self.end(StreamPacket::Abort(Some(
                            crate::console::taken_over_error(&console.path),
                        )));
                    }
                    return self.end(StreamPacket::End);
                }
            }
        }
    }
}

/// Sends what the pty prints to the client until `stop`, the client goes away, or the
/// device hangs up (then an empty packet: end of file).
fn console_reader(
    client: &Client,
    serial: u32,
    procedure: i32,
    pty: &std::os::fd::OwnedFd,
    stop: &AtomicBool,
) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut buf = vec![0u8; 16 * 1024];
    let send = |data: &[u8]| match StreamPacket::Data(data.to_vec()).encode(
        REMOTE_PROGRAM,
        REMOTE_VERSION,
        procedure,
        serial,
    ) {
        Ok(bytes) => client.outbox.send_bounded(bytes, HIGH_WATER).is_ok(),
        Err(_) => false,
    };
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(pty, PollFlags::IN)];
        match poll(&mut fds, Some(&tick)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        match rustix::io::read(pty, &mut buf) {
            Ok(0) | Err(rustix::io::Errno::IO) => {
                // the device hung up (the domain or its controller is gone): end of file
                if !stop.load(Ordering::SeqCst) {
                    send(&[]);
                }
                return;
            }
            Ok(n) => {
                if stop.load(Ordering::SeqCst) || !send(&buf[..n]) {
                    return;
                }
            }
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// Writes all of `data` to the (non-blocking) pty, waiting while it is full (up to 5 s
/// without progress).
fn write_pty(pty: &std::os::fd::OwnedFd, mut data: &[u8]) -> Result<(), rustix::io::Errno> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let wait = Timespec {
        tv_sec: 5,
        tv_nsec: 0,
    };
    while !data.is_empty() {
        match rustix::io::write(pty, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::AGAIN) => {
                let mut fds = [PollFd::new(pty, PollFlags::OUT)];
                if poll(&mut fds, Some(&wait))? == 0 {
                    return Err(rustix::io::Errno::TIMEDOUT);
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn host_error(e: rvirt_host::Error) -> RemoteError {
    RemoteError::new(e.code(), e.domain(), e.to_string())
}

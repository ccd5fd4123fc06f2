//! Volume upload and download streams (`STORAGE_VOL_UPLOAD` 208, `STORAGE_VOL_DOWNLOAD`
//! 209) of one client.
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
//! A failure is a STREAM ERROR packet carrying the `remote_error`; a client's STREAM
//! ERROR (abort) aborts the host stream and is confirmed with STREAM OK. When the client
//! disconnects the queues close and every worker aborts its stream, so the volume is no
//! longer busy.

use crate::client::Client;
use rvirt_host::VolStream;
use rvirt_wire::frame::{self, STREAM_CHUNK_MAX, StreamPacket};
use rvirt_wire::protocol::{REMOTE_PROGRAM, REMOTE_VERSION, RemoteError, error_code, error_domain};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Packets queued per upload before the reader stops reading the client's socket.
pub const QUEUE: usize = 16;
/// Bytes a download may leave queued in the client's outbox before its worker waits.
pub const HIGH_WATER: usize = 4 * 1024 * 1024;

/// A stream opened by a call whose reply is not sent yet.
struct Pending {
    stream: VolStream,
    rx: mpsc::Receiver<StreamPacket>,
    procedure: i32,
    upload: bool,
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
    pub fn register(
        &mut self,
        serial: u32,
        procedure: i32,
        upload: bool,
        stream: VolStream,
    ) -> Result<(), String> {
        if self.closed {
            return Err("the client is disconnecting".into());
        }
        if self.open.contains_key(&serial) {
            return Err(format!("a stream with serial {serial} is already open"));
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        self.open.insert(serial, tx);
        self.pending.insert(
            serial,
            Pending {
                stream,
                rx,
                procedure,
                upload,
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
    pub fn close(&mut self) -> Vec<VolStream> {
        self.closed = true;
        self.open.clear();
        self.pending.drain().map(|(_, p)| p.stream).collect()
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
    let (stream, rx, upload) = (p.stream, p.rx, p.upload);
    tokio::task::spawn_blocking(move || {
        if upload {
            worker.upload(stream, rx);
        } else {
            worker.download(stream, rx);
        }
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

fn host_error(e: rvirt_host::Error) -> RemoteError {
    RemoteError::new(e.code(), e.domain(), e.to_string())
}

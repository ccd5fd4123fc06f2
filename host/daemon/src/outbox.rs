//! A client's outgoing byte stream.
//!
//! Whoever produces a frame (the connection's task, a worker thread, a driver thread
//! delivering an event) writes it straight to the socket when nothing is queued and
//! the socket takes it whole; only the rest is queued for the connection's flush task.
//! That keeps the common reply path free of thread hand-offs while a slow reader
//! never blocks a producer.

use std::collections::VecDeque;
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Notify;

/// Queued bytes after which a client that does not read is disconnected.
pub const MAX_QUEUED: usize = 64 * 1024 * 1024;

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Vec<u8>>,
    /// Bytes of the front frame already written.
    offset: usize,
    /// Bytes queued in total.
    bytes: usize,
    closed: bool,
}

/// The socket an outbox writes to.
#[derive(Debug)]
enum Half {
    /// The write half of a connection the runtime's reactor watches.
    Async(OwnedWriteHalf),
    /// A blocking socket no reactor watches (a plugin host's connection thread reads
    /// it: registering it with the reactor would wake an I/O worker on every frame),
    /// written with `MSG_DONTWAIT`.
    Plain(std::os::unix::net::UnixStream),
}

/// How often the flush task of a [`Half::Plain`] socket retries a full socket.
const PLAIN_RETRY: Duration = Duration::from_millis(1);

impl Half {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Half::Async(h) => h.try_write(buf),
            Half::Plain(s) => {
                use rustix::net::SendFlags;
                rustix::net::send(s, buf, SendFlags::DONTWAIT | SendFlags::NOSIGNAL)
                    .map_err(io::Error::from)
            }
        }
    }

    /// Waits until the socket may take more bytes.
    async fn writable(&self) -> io::Result<()> {
        match self {
            Half::Async(h) => h.writable().await,
            Half::Plain(_) => {
                tokio::time::sleep(PLAIN_RETRY).await;
                Ok(())
            }
        }
    }
}

/// The write side of a client connection.
#[derive(Debug)]
pub struct Outbox {
    half: Half,
    queue: Mutex<Queue>,
    notify: Notify,
    /// Signalled when queued bytes are written or the outbox closes.
    space: Condvar,
}

impl Outbox {
    pub fn new(half: OwnedWriteHalf) -> Outbox {
        Outbox::with(Half::Async(half))
    }

    /// An outbox writing to a blocking socket that no reactor watches: frames are
    /// written with `MSG_DONTWAIT`; what the socket does not take at once is queued for
    /// [`Outbox::flush_loop`], which retries every millisecond.
    pub fn plain(socket: std::os::unix::net::UnixStream) -> Outbox {
        Outbox::with(Half::Plain(socket))
    }

    fn with(half: Half) -> Outbox {
        Outbox {
            half,
            queue: Mutex::default(),
            notify: Notify::new(),
            space: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a frame; silently dropped once the connection is closed. Never blocks.
    pub fn send(&self, frame: Vec<u8>) {
        let mut q = self.lock();
        if q.closed || frame.is_empty() {
            return;
        }
        if q.frames.is_empty() {
            let written = match self.half.try_write(&frame) {
                Ok(n) if n == frame.len() => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    tracing::debug!("write failed: {e}");
                    q.closed = true;
                    drop(q);
                    self.notify.notify_one();
                    return;
                }
            };
            q.offset = written;
        }
        q.bytes += frame.len();
        q.frames.push_back(frame);
        if q.bytes > MAX_QUEUED {
            tracing::warn!(
                "client does not read its replies ({} bytes queued), disconnecting",
                q.bytes
            );
            q.closed = true;
            q.frames.clear();
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Sends a frame once at most `high_water` bytes are queued, waiting (a blocking
    /// thread's call: stream workers) until the client has read enough. `Err(())` when
    /// the connection is closed; `Ok(Some(frame))` hands the buffer back for reuse when
    /// the socket took it whole at once.
    #[allow(clippy::result_unit_err)]
    pub fn send_bounded(
        &self,
        mut frame: Vec<u8>,
        high_water: usize,
    ) -> Result<Option<Vec<u8>>, ()> {
        let mut q = self.lock();
        while !q.closed && q.bytes > high_water {
            q = match self.space.wait_timeout(q, Duration::from_millis(200)) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        if q.closed {
            return Err(());
        }
        if q.frames.is_empty() && !frame.is_empty() {
            match self.half.try_write(&frame) {
                Ok(n) if n == frame.len() => {
                    frame.clear();
                    return Ok(Some(frame));
                }
                Ok(n) => q.offset = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => q.offset = 0,
                Err(e) => {
                    tracing::debug!("write failed: {e}");
                    q.closed = true;
                    drop(q);
                    self.notify.notify_one();
                    return Err(());
                }
            }
            q.bytes += frame.len();
            q.frames.push_back(frame);
            drop(q);
            self.notify.notify_one();
            return Ok(None);
        }
        drop(q);
        self.send(frame);
        if self.is_closed() { Err(()) } else { Ok(None) }
    }

    /// Stops all writing; the flush task ends.
    pub fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        q.frames.clear();
        drop(q);
        self.notify.notify_one();
        self.space.notify_all();
    }

    /// Whether the outbox gave up (write error, overflow or [`Outbox::close`]).
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Writes queued frames as the socket accepts them, until the outbox is closed.
    pub async fn flush_loop(&self) {
        loop {
            self.notify.notified().await;
            loop {
                let progressed = {
                    let mut q = self.lock();
                    if q.closed {
                        return;
                    }
                    let offset = q.offset;
                    let (res, len) = match q.frames.front() {
                        None => break,
                        Some(front) => (self.half.try_write(&front[offset..]), front.len()),
                    };
                    match res {
                        Ok(n) => {
                            q.offset += n;
                            if q.offset == len {
                                q.frames.pop_front();
                                q.offset = 0;
                                q.bytes -= len;
                                self.space.notify_all();
                            }
                            true
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                        Err(e) => {
                            tracing::debug!("write failed: {e}");
                            q.closed = true;
                            q.frames.clear();
                            return;
                        }
                    }
                };
                if !progressed && self.half.writable().await.is_err() {
                    self.lock().closed = true;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn direct_and_queued_writes_keep_order() {
        let (a, mut b) = tokio::net::UnixStream::pair().unwrap();
        let (_ra, wa) = a.into_split();
        let out = std::sync::Arc::new(Outbox::new(wa));
        let flusher = {
            let out = out.clone();
            tokio::spawn(async move { out.flush_loop().await })
        };
        // more than the socket buffer, so part of it is queued
        let mut expected = Vec::new();
        for i in 0..64u32 {
            let frame = vec![i as u8; 64 * 1024];
            expected.extend_from_slice(&frame);
            out.send(frame);
        }
        let mut got = vec![0u8; expected.len()];
        b.read_exact(&mut got).await.unwrap();
        assert!(got == expected, "bytes out of order");
        out.close();
        flusher.await.unwrap();
        assert!(out.is_closed());
        out.send(vec![1]);
    }

    #[tokio::test]
    async fn a_plain_socket_never_blocks_the_sender_and_keeps_order() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let out = std::sync::Arc::new(Outbox::plain(a));
        let flusher = {
            let out = out.clone();
            tokio::spawn(async move { out.flush_loop().await })
        };
        // more than the socket buffer while nobody reads: queued, not blocking
        let mut expected = Vec::new();
        for i in 0..64u32 {
            let frame = vec![i as u8; 64 * 1024];
            expected.extend_from_slice(&frame);
            out.send(frame);
        }
        let total = expected.len();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; total];
            std::io::Read::read_exact(&mut &b, &mut got).unwrap();
            got
        });
        let got = tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        assert!(got == expected, "bytes out of order");
        out.close();
        flusher.await.unwrap();
    }
}

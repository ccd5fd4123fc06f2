//! Unix sockets: the calling thread reads its own reply (leader/follower).
//!
//! Handing every reply from the reader thread to the caller costs a thread wake-up per
//! call, about 40 µs on a VM when the two threads sit on different CPUs: more than the
//! rest of a plugin host round trip. So on a unix socket (the daemon's link to a plugin
//! host process, local clients) the reading role is a lock: a caller that finds it free
//! takes it and reads frames until its own reply arrives. Replies of other callers found
//! on the way go to their channels, events and stream packets to the reader thread (their
//! callbacks never run on a caller's thread), PINGs are answered at once. A caller that
//! finds the role taken waits on its channel for its reply or for the role: the leader
//! hands the role to a waiting caller when it lets go.
//!
//! The reader thread reads only while no call is in flight (and none ended within
//! [`IDLE`], so calls in a row never wake it): it waits for data without the role
//! (`poll`, beside a socket pair on which callers nudge it when they queue a frame for
//! it), then takes the role for one frame. Open volume streams turn the direct
//! path off (their flow control blocks the reader on a full queue, which must never be
//! a caller's thread).
//!
//! Whoever holds the role waits for input with `poll` (its timeout, the tick given to
//! [`Direct::new`], bounds the wait so the leader still looks at its deadline and the
//! keepalive), then reads what is there with one `recv` into a buffer, not a read of the
//! length then one of the rest. Not a `recv` that blocks: see [`Reader::fill`]. The role
//! is never let go with part of a frame in that buffer, so the reader thread can watch
//! the socket itself.

use super::{Answer, DEADLINE_PREFIX, Link, lock};
use rvirt_wire::{Frame, FrameDecoder, MessageType, protocol};
use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError, mpsc};
use std::time::{Duration, Instant};

/// How long after the last call the reader thread goes back to watching the socket.
pub(super) const IDLE: Duration = Duration::from_millis(1);
/// The longest a follower waits before it looks at the role again (a hand-over can be
/// lost when the caller it went to gave up at that moment).
const FOLLOW: Duration = Duration::from_millis(5);

/// What a waiting caller receives on its channel.
pub(super) enum Msg {
    Answer(Answer),
    /// The reading role is free: take it.
    Lead,
}

#[derive(Default)]
struct State {
    /// Callers that may take the role, between sending their call and their reply.
    callers: usize,
    last_end: Option<Instant>,
    /// Events and stream packets callers read, for the reader thread.
    frames: VecDeque<Frame>,
}

/// The socket's reading side and the bytes read past the last whole frame (none while
/// nobody holds the role).
pub(super) struct Reader {
    socket: UnixStream,
    frames: FrameDecoder,
    scratch: Box<[u8]>,
    /// The longest [`Reader::fill`] waits.
    tick: Duration,
}

/// Bytes one `recv` may take (a reply is usually a few hundred).
const READ_CHUNK: usize = 64 * 1024;
/// A buffer grown past this for a large frame is given back once it is empty.
const KEEP_BUFFER: usize = 256 * 1024;

/// The longest a leader waits for input before it looks at its deadline, its escape
/// and the keepalive.
const RECV_TICK: Duration = Duration::from_millis(2);

/// The direct-read state of a unix socket link.
pub(super) struct Direct {
    /// The reading role: whoever holds it reads frames.
    reading: Mutex<Reader>,
    /// The reader thread's handle, to wait for data without the role.
    watch: UnixStream,
    state: Mutex<State>,
    wake: Condvar,
    /// A byte is written to `nudge_tx` whenever a caller queues a frame for the reader
    /// thread, which polls `nudge_rx` beside the socket: a frame queued while the reader
    /// thread waits for the socket is delivered at once, not when more data arrives.
    nudge_tx: UnixStream,
    nudge_rx: UnixStream,
}

/// See [`with_escape`]: runs the rest of a long wait, given as its argument.
pub type Escape = fn(&mut dyn FnMut());

thread_local! {
    static ESCAPE: Cell<Option<Escape>> = const { Cell::new(None) };
}

/// How long a call waits for its reply on the caller's thread before it runs the rest of
/// its wait inside the escape of [`with_escape`].
pub const ESCAPE_AFTER: Duration = Duration::from_millis(5);

/// Runs `f` (on this thread) with `escape` as the way out for a remote call that waits
/// longer than [`ESCAPE_AFTER`]: the rest of its wait runs inside `escape`, which must
/// call its argument once. The daemon runs quick calls of a plugin process on its I/O
/// worker and passes tokio's `block_in_place`, so a quick call costs no thread hand-over
/// and a hung plugin holds the worker for a few milliseconds only.
pub fn with_escape<R>(escape: Escape, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Escape>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ESCAPE.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(ESCAPE.with(|e| e.replace(Some(escape))));
    f()
}

/// Whether an error is a wait that timed out (or found nothing, or was interrupted).
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl Reader {
    /// One `recv` into the buffer of what is there, waiting for it up to the tick (then
    /// `TimedOut`): `Ok(0)` at the end of the stream.
    ///
    /// A reply is often there already (the plugin host ran while the caller was
    /// preempted): one `recv` that does not wait. Else the wait is a `poll` for `POLLIN`,
    /// not a `recv` that blocks: a thread asleep in `recv` sleeps on the socket's wait
    /// queue, where the kernel also signals write space when the plugin host reads the
    /// call just sent, so every call woke the caller once for nothing (two context
    /// switches); a `poll` wait is woken only for input.
    fn fill(&mut self) -> io::Result<usize> {
        use rustix::event::{PollFd, PollFlags, Timespec};
        use rustix::net::RecvFlags;
        let n = match rustix::net::recv(&self.socket, &mut self.scratch[..], RecvFlags::DONTWAIT) {
            Ok((n, _)) => n,
            Err(rustix::io::Errno::AGAIN) => {
                let tick = Timespec::try_from(self.tick).unwrap_or(Timespec {
                    tv_sec: 0,
                    tv_nsec: 2_000_000,
                });
                let mut fds = [PollFd::new(&self.socket, PollFlags::IN)];
                if rustix::event::poll(&mut fds, Some(&tick))? == 0 {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                rustix::net::recv(&self.socket, &mut self.scratch[..], RecvFlags::DONTWAIT)?.0
            }
            Err(e) => return Err(e.into()),
        };
        self.frames.feed(&self.scratch[..n]);
        Ok(n)
    }

    /// Whether part of a frame is in the buffer.
    fn partial(&self) -> bool {
        self.frames.pending() > 0
    }

    /// The next whole frame in the buffer.
    fn next(&mut self) -> Result<Option<Frame>, String> {
        let f = self
            .frames
            .next_frame()
            .map_err(|e| format!("connection to the daemon failed: {e}"))?;
        if !self.partial() && self.frames.read_buffer().capacity() > KEEP_BUFFER {
            *self.frames.read_buffer() = Vec::new();
        }
        Ok(f)
    }
}

/// Looks at whether a byte is there without taking it or waiting: `Ok(0)` at the end of
/// the stream.
fn peek(s: &UnixStream) -> io::Result<usize> {
    use rustix::net::RecvFlags;
    let mut one = [0u8; 1];
    rustix::net::recv(s, &mut one, RecvFlags::PEEK | RecvFlags::DONTWAIT)
        .map(|(n, _)| n)
        .map_err(io::Error::from)
}

fn take(m: &Mutex<Reader>) -> Option<MutexGuard<'_, Reader>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl Direct {
    /// `socket`: a handle of the link's unix socket; `tick`: how often a waiting leader
    /// looks at its deadline and the keepalive (at most [`RECV_TICK`]).
    pub(super) fn new(socket: UnixStream, tick: Duration) -> io::Result<Direct> {
        let (nudge_tx, nudge_rx) = UnixStream::pair()?;
        nudge_tx.set_nonblocking(true)?;
        nudge_rx.set_nonblocking(true)?;
        let tick = tick.min(RECV_TICK);
        Ok(Direct {
            watch: socket.try_clone()?,
            reading: Mutex::new(Reader {
                socket,
                frames: FrameDecoder::new(),
                scratch: vec![0; READ_CHUNK].into_boxed_slice(),
                tick,
            }),
            state: Mutex::default(),
            wake: Condvar::new(),
            nudge_tx,
            nudge_rx,
        })
    }

    /// Tells the reader thread that frames wait for it (a full nudge buffer already
    /// says so).
    fn nudge(&self) {
        let _ = (&self.nudge_tx).write(&[1]);
    }

    /// Waits until the socket has something to read or is closed (`Ok(true)`), or a
    /// nudge arrived (`Ok(false)`, the nudges drained).
    fn wait_socket_or_nudge(&self) -> io::Result<bool> {
        use rustix::event::{PollFd, PollFlags};
        let mut fds = [
            PollFd::new(&self.watch, PollFlags::IN),
            PollFd::new(&self.nudge_rx, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let socket = !fds[0].revents().is_empty();
        if !fds[1].revents().is_empty() {
            let mut buf = [0u8; 64];
            while matches!((&self.nudge_rx).read(&mut buf), Ok(n) if n > 0) {}
        }
        Ok(socket)
    }
}

/// A call in flight that may read its own reply; ends the call's count when dropped.
pub(super) struct Calling<'a>(Option<&'a Direct>);

impl Drop for Calling<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.0 {
            let mut st = lock(&d.state);
            st.callers -= 1;
            st.last_end = Some(Instant::now());
        }
    }
}

impl Link {
    /// Counts a call about to be sent (before it goes out, so the reader thread leaves
    /// its reply to it).
    pub(super) fn calling(&self) -> Calling<'_> {
        match &self.direct {
            Some(d) if lock(&self.streams).is_empty() => {
                lock(&d.state).callers += 1;
                Calling(Some(d))
            }
            _ => Calling(None),
        }
    }

    /// Hands a frame that is not `own`'s reply to where it goes; returns `own`'s reply.
    pub(super) fn route(&self, f: Frame, own: Option<u32>, caller: bool) -> Option<Frame> {
        *lock(&self.last_rx) = Instant::now();
        match (f.header.prog, f.header.msg_type) {
            (_, MessageType::Reply) => {
                if Some(f.header.serial) == own {
                    lock(&self.pending).remove(&f.header.serial);
                    return Some(f);
                }
                if let Some(tx) = lock(&self.pending).remove(&f.header.serial) {
                    let _ = tx.send(Msg::Answer(Ok(f)));
                }
            }
            (protocol::KEEPALIVE_PROGRAM, MessageType::Message) => {
                if f.header.procedure == protocol::KEEPALIVE_PING {
                    self.send_keepalive(protocol::KEEPALIVE_PONG);
                }
            }
            (
                protocol::REMOTE_PROGRAM,
                MessageType::Message | MessageType::Stream | MessageType::StreamHole,
            ) if caller => {
                if let Some(d) = &self.direct {
                    lock(&d.state).frames.push_back(f);
                    d.wake.notify_one();
                    d.nudge();
                }
            }
            (protocol::REMOTE_PROGRAM, MessageType::Message) => self.event(&f),
            (protocol::REMOTE_PROGRAM, MessageType::Stream | MessageType::StreamHole) => {
                self.stream_packet(&f)
            }
            _ => tracing::debug!(prog = f.header.prog, "ignoring an unexpected message"),
        }
        None
    }

    /// The connection is gone: later calls fail at once, waiting ones get `why`.
    pub(super) fn fail(&self, why: &str) {
        self.closed.store(true, Ordering::Release);
        lock(&self.streams).clear();
        for (_, tx) in lock(&self.pending).drain() {
            let _ = tx.send(Msg::Answer(Err(why.to_string())));
        }
        if let Some(d) = &self.direct {
            d.wake.notify_all();
        }
    }

    /// Gives the free role to a waiting caller, if more than `holders` callers are
    /// counted (the one letting go is still counted).
    fn hand_over(&self, d: &Direct, holders: usize) {
        if lock(&d.state).callers <= holders {
            return;
        }
        if let Some(tx) = lock(&self.pending).values().next() {
            let _ = tx.send(Msg::Lead);
        }
    }

    /// The deadline's error once `started + deadline` has passed.
    pub(super) fn past_deadline(&self, serial: u32, started: Instant) -> Option<String> {
        let deadline = self.deadline?;
        if started.elapsed() < deadline {
            return None;
        }
        lock(&self.pending).remove(&serial);
        Some(format!("{DEADLINE_PREFIX} {} ms", deadline.as_millis()))
    }

    /// After a wait without news: pings a silent daemon, gives up on a dead one.
    /// `started`: when the call went out. Silence counts from then at the earliest: a
    /// link that was idle before the call (nothing to say, nobody asked) is not a silent
    /// daemon, and a call that outlasts one receive tick must not be failed for it.
    pub(super) fn check_alive(&self, serial: u32, started: Instant) -> Option<String> {
        let budget = self.keepalive.interval * self.keepalive.count.max(1);
        let silent = lock(&self.last_rx).elapsed().min(started.elapsed());
        if silent >= budget {
            lock(&self.pending).remove(&serial);
            let why = format!(
                "the daemon did not answer for {} s (keepalive: {} pings unanswered): the connection is dead",
                silent.as_secs(),
                self.keepalive.count
            );
            self.kill(&why);
            return Some(why);
        }
        if silent >= self.keepalive.interval {
            self.send_keepalive(protocol::KEEPALIVE_PING);
        }
        None
    }

    /// Waits for the reply `serial` on a unix socket: reads it while holding the role,
    /// else waits for it (or the role) on `rx`. Past [`ESCAPE_AFTER`], the rest of the
    /// wait runs inside the escape of [`with_escape`] if one is set.
    pub(super) fn wait_direct(
        &self,
        d: &Direct,
        calling: &Calling<'_>,
        serial: u32,
        rx: &mpsc::Receiver<Msg>,
    ) -> Answer {
        let started = Instant::now();
        // taken: a call made inside the escape does not escape again
        let Some(escape) = ESCAPE.with(Cell::take) else {
            return self
                .wait_until(d, calling, serial, rx, started, None)
                .unwrap_or_else(|| Err("the wait ended without a reply".to_string()));
        };
        struct Restore(Escape);
        impl Drop for Restore {
            fn drop(&mut self) {
                ESCAPE.with(|e| e.set(Some(self.0)));
            }
        }
        let _restore = Restore(escape);
        if let Some(a) = self.wait_until(d, calling, serial, rx, started, Some(ESCAPE_AFTER)) {
            return a;
        }
        let mut out = None;
        escape(&mut || out = self.wait_until(d, calling, serial, rx, started, None));
        out.unwrap_or_else(|| Err("the escape did not run the wait".to_string()))
    }

    /// [`Link::wait_direct`] for at most `limit` (then `None`).
    fn wait_until(
        &self,
        d: &Direct,
        calling: &Calling<'_>,
        serial: u32,
        rx: &mpsc::Receiver<Msg>,
        started: Instant,
        limit: Option<Duration>,
    ) -> Option<Answer> {
        let closed = || Some(Err("the connection to the daemon is closed".to_string()));
        loop {
            match rx.try_recv() {
                Ok(Msg::Answer(a)) => return Some(a),
                Ok(Msg::Lead) | Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => return closed(),
            }
            if calling.0.is_some()
                && let Some(mut s) = take(&d.reading)
            {
                // a reply handed over before the role was free, maybe queued behind
                // hand-overs of the role (each a `Lead`): look past all of them
                let handed = loop {
                    match rx.try_recv() {
                        Ok(Msg::Answer(a)) => break Some(a),
                        Ok(Msg::Lead) => {}
                        Err(_) => break None,
                    }
                };
                let r = match handed {
                    Some(a) => Some(a),
                    None => self.lead(&mut s, serial, started, limit),
                };
                drop(s);
                self.hand_over(d, 1);
                return r;
            }
            if let Some(e) = self.past_deadline(serial, started) {
                return Some(Err(e));
            }
            let mut slice = self.keepalive.interval.min(FOLLOW);
            if let Some(deadline) = self.deadline {
                slice = slice.min(deadline.saturating_sub(started.elapsed()));
            }
            if let Some(limit) = limit {
                let left = limit.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return None;
                }
                slice = slice.min(left);
            }
            match rx.recv_timeout(slice) {
                Ok(Msg::Answer(a)) => return Some(a),
                Ok(Msg::Lead) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return closed(),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(why) = self.check_alive(serial, started) {
                        return Some(Err(why));
                    }
                }
            }
        }
    }

    /// Reads frames with the role held until the reply `serial` comes (or `limit`), and
    /// never returns with part of a frame read.
    fn lead(
        &self,
        r: &mut Reader,
        serial: u32,
        started: Instant,
        limit: Option<Duration>,
    ) -> Option<Answer> {
        let mut mine = None;
        loop {
            loop {
                match r.next() {
                    Ok(Some(f)) => {
                        if let Some(f) = self.route(f, Some(serial), true) {
                            mine = Some(f);
                        }
                    }
                    Ok(None) => break,
                    Err(why) => return Some(Err(self.broke(why))),
                }
            }
            let partial = r.partial();
            if !partial {
                if let Some(f) = mine {
                    return Some(Ok(f));
                }
                if self.closed.load(Ordering::Acquire) {
                    lock(&self.pending).remove(&serial);
                    return Some(Err("the connection to the daemon is closed".to_string()));
                }
                if let Some(e) = self.past_deadline(serial, started) {
                    return Some(Err(e));
                }
                if limit.is_some_and(|l| started.elapsed() >= l) {
                    return None;
                }
            }
            match r.fill() {
                Ok(0) => {
                    let why = self.broke("the daemon closed the connection".into());
                    return Some(mine.ok_or(why));
                }
                Ok(_) => {}
                // the rest of a frame is on its way: wait for it whatever the deadline
                Err(e) if timed_out(&e) && partial => {
                    if self.closed.load(Ordering::Acquire) {
                        return Some(Err("the connection to the daemon is closed".to_string()));
                    }
                }
                Err(e) if timed_out(&e) => {
                    if let Some(why) = self.check_alive(serial, started) {
                        return Some(Err(why));
                    }
                }
                Err(e) => {
                    let why = self.broke(format!("connection to the daemon failed: {e}"));
                    return Some(mine.ok_or(why));
                }
            }
        }
    }

    /// Reads with the role held until at least one whole frame has come and no part of
    /// one is left (the reader thread, once the socket is readable).
    fn read_whole(&self, r: &mut Reader) -> Result<Vec<Frame>, String> {
        let mut frames = Vec::new();
        loop {
            while let Some(f) = r.next()? {
                frames.push(f);
            }
            if !frames.is_empty() && !r.partial() {
                return Ok(frames);
            }
            match r.fill() {
                Ok(0) => return Err("the daemon closed the connection".to_string()),
                Ok(_) => {}
                Err(e) if timed_out(&e) && !self.closed.load(Ordering::Acquire) => {}
                Err(e) => return Err(format!("connection to the daemon failed: {e}")),
            }
        }
    }

    fn broke(&self, why: String) -> String {
        tracing::debug!("remote connection ends: {why}");
        self.fail(&why);
        self.socket.shutdown();
        why
    }

    /// Reader thread body on a unix socket: events and stream packets, and replies while
    /// no caller reads (see the module).
    pub(super) fn watch_loop(&self, d: &Direct) {
        let why = loop {
            let frames: Vec<Frame> = {
                let mut st = lock(&d.state);
                loop {
                    if self.closed.load(Ordering::Acquire) {
                        break Vec::new();
                    }
                    if !st.frames.is_empty() {
                        break st.frames.drain(..).collect();
                    }
                    let busy = st.callers > 0 || st.last_end.is_some_and(|t| t.elapsed() < IDLE);
                    if !busy {
                        break Vec::new();
                    }
                    st = d
                        .wake
                        .wait_timeout(st, IDLE)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            };
            if self.closed.load(Ordering::Acquire) {
                break "the connection is closed".to_string();
            }
            if !frames.is_empty() {
                for f in frames {
                    self.route(f, None, false);
                }
                continue;
            }
            match d.wait_socket_or_nudge() {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => break format!("connection to the daemon failed: {e}"),
            }
            match peek(&d.watch) {
                Ok(0) => break "the daemon closed the connection".to_string(),
                Ok(_) => {}
                Err(e) if timed_out(&e) => continue,
                Err(e) => break format!("connection to the daemon failed: {e}"),
            }
            if lock(&d.state).callers > 0 {
                continue;
            }
            let Some(mut s) = take(&d.reading) else {
                continue;
            };
            // a caller may have read what was there
            let got = match peek(&s.socket) {
                Ok(0) => Err("the daemon closed the connection".to_string()),
                // replies go to their callers now, while the role is held: a caller
                // that takes the role next must find its reply in its channel, not
                // wait on the socket for it (events and stream packets go after: their
                // callbacks and flow control must not hold the role)
                Ok(_) => self.read_whole(&mut s).map(|frames| {
                    frames
                        .into_iter()
                        .filter_map(|f| match f.header.msg_type {
                            MessageType::Reply => self.route(f, None, false),
                            _ => Some(f),
                        })
                        .collect()
                }),
                Err(e) if timed_out(&e) => Ok(Vec::new()),
                Err(e) => Err(format!("connection to the daemon failed: {e}")),
            };
            drop(s);
            match got {
                Ok(frames) => {
                    for f in frames {
                        self.route(f, None, false);
                    }
                }
                Err(why) => break why,
            }
            self.hand_over(d, 0);
        };
        tracing::debug!("remote reader ends: {why}");
        self.fail(&why);
    }
}

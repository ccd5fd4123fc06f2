//! A small blocking client for QEMU's machine protocol (QMP).
//!
//! [`Qmp::handshake`] reads the greeting from a connected stream, negotiates capabilities
//! (`qmp_capabilities`) and starts one reader thread. After that, [`Qmp::execute`] may be
//! called from any thread: each command carries an `id`, and the reader thread routes every
//! answer to the caller waiting for that id; [`Qmp::send`] puts a command in flight without
//! waiting, so that several cost one round trip. Asynchronous events (`STOP`, `SHUTDOWN`, ...)
//! arrive on the [`Event`] channel returned with the client. When QEMU closes the socket
//! (it exited, or another client took the monitor), waiting callers get
//! [`QmpError::Closed`] and the event channel disconnects, so a supervisor can block on the
//! channel to learn both about events and about the end of the monitor.
//!
//! A caller that waits for a particular event (a `MIGRATION` status, a job's
//! `JOB_STATUS_CHANGE`) registers an [`EventWatch`] with [`Qmp::watch`] *before* it sends
//! the command that leads to it: the reader thread hands every matching event read from
//! then on to the watch as well as to the channel, so an event QEMU writes right after the
//! command's answer cannot slip between the answer and the start of the wait.
//!
//! The crate knows nothing of rvirt: any plugin that drives QEMU can use it.

use serde_json::{Value, json};
use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
    },
    time::Duration,
};

/// Errors of the QMP client.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The monitor socket could not be connected.
    #[error("cannot connect to the monitor socket '{}'", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading from or writing to the monitor failed.
    #[error("monitor i/o failed")]
    Io(#[source] std::io::Error),
    /// A line from the monitor is not JSON.
    #[error("invalid message from the monitor: {line}")]
    Json {
        /// The offending line.
        line: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The first message was not a QMP greeting, or negotiation failed.
    #[error("unexpected monitor greeting or negotiation answer: {0}")]
    Greeting(String),
    /// QEMU answered a command with an error.
    #[error("qemu refused '{command}': {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QMP error class (`GenericError`, `CommandNotFound`, ...).
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// The monitor connection is closed (QEMU exited or the socket was shut down).
    #[error("the monitor connection is closed")]
    Closed,
    /// No answer came in time.
    #[error("timed out waiting for the answer to '{0}'")]
    Timeout(String),
}

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event name, e.g. `STOP` or `SHUTDOWN`.
    pub name: String,
    /// The event's `data` member (`Null` when absent).
    pub data: Value,
    /// QEMU's timestamp (seconds, microseconds), when given.
    pub timestamp: Option<(i64, i64)>,
    /// The event's place in the connection's stream: 1 for the first event read after
    /// the handshake. Compare it with [`Qmp::events_read`] taken after a command's answer
    /// to tell the events QEMU sent before that answer from those it sent after.
    pub seq: u64,
}

type Reply = Result<Value, (String, String)>;

type Filter = Box<dyn Fn(&Event) -> bool + Send>;

struct Watcher {
    id: u64,
    filter: Filter,
    tx: Sender<Event>,
}

struct Pending {
    closed: bool,
    waiters: HashMap<u64, Sender<Reply>>,
    /// The registered [`EventWatch`]es; cleared (their channels disconnected) once the
    /// connection ends.
    watchers: Vec<Watcher>,
}

struct Shared {
    writer: Mutex<UnixStream>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// Events read so far (the last event's `seq`).
    events_read: AtomicU64,
}

/// A connected, negotiated QMP client. Cloning shares the connection.
#[derive(Clone)]
pub struct Qmp {
    shared: Arc<Shared>,
    greeting: Arc<Value>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("version", &self.version())
            .finish()
    }
}

/// How long the handshake may take by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

fn read_message(reader: &mut impl BufRead) -> Result<Option<Value>, QmpError> {
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).map_err(QmpError::Io)?;
        if n == 0 {
            return Ok(None);
        }
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        return serde_json::from_str(t)
            .map(Some)
            .map_err(|source| QmpError::Json {
                line: t.to_string(),
                source,
            });
    }
}

fn error_parts(v: &Value) -> (String, String) {
    let e = &v["error"];
    (
        e["class"].as_str().unwrap_or("GenericError").to_string(),
        e["desc"].as_str().unwrap_or("").to_string(),
    )
}

impl Qmp {
    /// Connects to the unix socket at `path` and negotiates (see [`Qmp::handshake`]).
    pub fn connect(path: &Path, timeout: Duration) -> Result<(Qmp, Receiver<Event>), QmpError> {
        let stream = UnixStream::connect(path).map_err(|source| QmpError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        Qmp::handshake(stream, timeout)
    }

    /// Reads the greeting, sends `qmp_capabilities`, and starts the reader thread.
    /// `timeout` bounds the whole negotiation.
    pub fn handshake(
        stream: UnixStream,
        timeout: Duration,
    ) -> Result<(Qmp, Receiver<Event>), QmpError> {
        stream
            .set_read_timeout(Some(timeout))
            .map_err(QmpError::Io)?;
        let mut reader = BufReader::new(stream.try_clone().map_err(QmpError::Io)?);
        let greeting = match read_message(&mut reader) {
            Ok(Some(v)) if v.get("QMP").is_some() => v,
            Ok(Some(v)) => return Err(QmpError::Greeting(v.to_string())),
            Ok(None) => return Err(QmpError::Closed),
            Err(QmpError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(QmpError::Timeout("greeting".into()));
            }
            Err(e) => return Err(e),
        };
        let mut writer = stream;
        writer
            .write_all(b"{\"execute\":\"qmp_capabilities\",\"id\":0}\r\n")
            .map_err(QmpError::Io)?;
        loop {
            match read_message(&mut reader)? {
                None => return Err(QmpError::Closed),
                Some(v) if v.get("event").is_some() => continue,
                Some(v) if v.get("return").is_some() => break,
                Some(v) => return Err(QmpError::Greeting(v.to_string())),
            }
        }
        writer.set_read_timeout(None).map_err(QmpError::Io)?;
        let (events_tx, events_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            writer: Mutex::new(writer),
            pending: Mutex::new(Pending {
                closed: false,
                waiters: HashMap::new(),
                watchers: Vec::new(),
            }),
            next_id: AtomicU64::new(1),
            events_read: AtomicU64::new(0),
        });
        let reader_shared = shared.clone();
        std::thread::Builder::new()
            .name("qmp-reader".into())
            .spawn(move || reader_loop(reader, reader_shared, events_tx))
            .map_err(QmpError::Io)?;
        Ok((
            Qmp {
                shared,
                greeting: Arc::new(greeting),
            },
            events_rx,
        ))
    }

    /// QEMU's version from the greeting (major, minor, micro).
    pub fn version(&self) -> Option<(u64, u64, u64)> {
        let q = &self.greeting["QMP"]["version"]["qemu"];
        Some((
            q["major"].as_u64()?,
            q["minor"].as_u64()?,
            q["micro"].as_u64()?,
        ))
    }

    /// Runs `command` with optional `arguments` and returns its `return` member.
    pub fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        self.execute_timeout(command, arguments, Duration::from_secs(60))
    }

    /// [`Qmp::execute`] with an explicit timeout.
    pub fn execute_timeout(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        self.send(command, arguments)?.wait(timeout)
    }

    /// Sends `command` without waiting for its answer, so that several commands can be in
    /// flight at once (QEMU answers them in order). Wait with [`PendingReply::wait`].
    pub fn send(&self, command: &str, arguments: Option<Value>) -> Result<PendingReply, QmpError> {
        self.send_with(command, arguments, None)
    }

    /// Runs `command` with the descriptor `fd` passed along (`SCM_RIGHTS` on the command's
    /// first byte), as `getfd` and `add-fd` expect: QEMU keeps its own copy under the name
    /// the arguments give, the caller keeps `fd`.
    pub fn execute_with_fd(
        &self,
        command: &str,
        arguments: Option<Value>,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<Value, QmpError> {
        self.send_with(command, arguments, Some(fd))?
            .wait(Duration::from_secs(60))
    }

    fn send_with(
        &self,
        command: &str,
        arguments: Option<Value>,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<PendingReply, QmpError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        {
            let mut p = self.lock_pending();
            if p.closed {
                return Err(QmpError::Closed);
            }
            p.waiters.insert(id, tx);
        }
        let mut msg = json!({"execute": command, "id": id});
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push_str("\r\n");
        let written = {
            let mut w = self.shared.writer.lock().unwrap_or_else(|e| e.into_inner());
            match fd {
                None => w.write_all(line.as_bytes()),
                Some(fd) => send_fd(&mut w, line.as_bytes(), fd),
            }
        };
        if let Err(e) = written {
            self.lock_pending().waiters.remove(&id);
            return Err(if e.kind() == std::io::ErrorKind::BrokenPipe {
                QmpError::Closed
            } else {
                QmpError::Io(e)
            });
        }
        Ok(PendingReply {
            qmp: self.clone(),
            id,
            command: command.to_string(),
            rx,
        })
    }

    /// How many events the reader has read so far. QEMU writes an event before the
    /// answer of the command that caused it, and the reader counts events before it hands
    /// an answer over: taken after an answer arrived, this is at least the `seq` of every
    /// event QEMU sent before that answer (a STOP caused by `stop`, a RESUME by an earlier
    /// `cont`), whether or not the event channel's reader got to them yet.
    pub fn events_read(&self) -> u64 {
        self.shared.events_read.load(Ordering::SeqCst)
    }

    /// Registers a watch for the events `filter` accepts: from now on the reader thread
    /// hands each of them to the watch (as well as to the event channel). Register it
    /// before sending the command whose effect it waits for; dropping it unregisters it.
    /// On a closed connection the watch reports [`QmpError::Closed`] at once.
    pub fn watch(&self, filter: impl Fn(&Event) -> bool + Send + 'static) -> EventWatch {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        {
            let mut p = self.lock_pending();
            if !p.closed {
                p.watchers.push(Watcher {
                    id,
                    filter: Box::new(filter),
                    tx,
                });
            }
        }
        EventWatch {
            qmp: self.clone(),
            id,
            rx,
        }
    }

    /// Whether the reader has seen the end of the connection.
    pub fn is_closed(&self) -> bool {
        self.lock_pending().closed
    }

    /// Shuts the socket down: the reader thread ends, waiting callers get
    /// [`QmpError::Closed`] and the event channel disconnects.
    pub fn close(&self) {
        let w = self.shared.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = w.shutdown(std::net::Shutdown::Both);
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// A command sent with [`Qmp::send`] whose answer has not been read yet.
#[derive(Debug)]
pub struct PendingReply {
    qmp: Qmp,
    id: u64,
    command: String,
    rx: Receiver<Reply>,
}

impl PendingReply {
    /// Blocks until the answer arrives (or `timeout` passes) and returns its `return`
    /// member.
    pub fn wait(self, timeout: Duration) -> Result<Value, QmpError> {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err((class, desc))) => Err(QmpError::Command {
                command: self.command,
                class,
                desc,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(QmpError::Closed),
            Err(RecvTimeoutError::Timeout) => {
                self.qmp.lock_pending().waiters.remove(&self.id);
                Err(QmpError::Timeout(self.command))
            }
        }
    }
}

/// A registered interest in some events (see [`Qmp::watch`]).
pub struct EventWatch {
    qmp: Qmp,
    id: u64,
    rx: Receiver<Event>,
}

impl std::fmt::Debug for EventWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWatch").field("id", &self.id).finish()
    }
}

impl EventWatch {
    /// Blocks until the next matching event (the oldest one not taken yet) arrives;
    /// `Ok(None)` once `timeout` passed without one, [`QmpError::Closed`] when the
    /// connection ended (events read before the end are still returned first).
    pub fn wait(&self, timeout: Duration) -> Result<Option<Event>, QmpError> {
        match self.rx.recv_timeout(timeout) {
            Ok(ev) => Ok(Some(ev)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(QmpError::Closed),
        }
    }

    /// The next matching event if one arrived already.
    pub fn try_next(&self) -> Result<Option<Event>, QmpError> {
        match self.rx.try_recv() {
            Ok(ev) => Ok(Some(ev)),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(QmpError::Closed),
        }
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        self.qmp.lock_pending().watchers.retain(|w| w.id != self.id);
    }
}

/// Writes `bytes` with `fd` attached to the first of them, the rest plainly.
fn send_fd(
    w: &mut UnixStream,
    bytes: &[u8],
    fd: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("no room for the descriptor"));
    }
    let n = loop {
        match sendmsg(
            &*w,
            &[std::io::IoSlice::new(bytes)],
            &mut cmsg,
            SendFlags::NOSIGNAL,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r.map_err(std::io::Error::from)?,
        }
    };
    w.write_all(&bytes[n..])
}

fn reader_loop(mut reader: BufReader<UnixStream>, shared: Arc<Shared>, events: Sender<Event>) {
    loop {
        let msg = match read_message(&mut reader) {
            Ok(Some(v)) => v,
            // A line that is not JSON is skipped; the end of the stream or an I/O error
            // ends the connection.
            Err(QmpError::Json { .. }) => continue,
            Ok(None) | Err(_) => break,
        };
        if let Some(name) = msg.get("event").and_then(Value::as_str) {
            let ts = &msg["timestamp"];
            let timestamp = ts["seconds"].as_i64().zip(ts["microseconds"].as_i64());
            let seq = shared.events_read.fetch_add(1, Ordering::SeqCst) + 1;
            let ev = Event {
                name: name.to_string(),
                data: msg.get("data").cloned().unwrap_or(Value::Null),
                timestamp,
                seq,
            };
            {
                let p = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
                for w in p.watchers.iter().filter(|w| (w.filter)(&ev)) {
                    let _ = w.tx.send(ev.clone());
                }
            }
            let _ = events.send(ev);
            continue;
        }
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let reply = if msg.get("error").is_some() {
            Err(error_parts(&msg))
        } else {
            Ok(msg.get("return").cloned().unwrap_or(Value::Null))
        };
        let waiter = shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiters
            .remove(&id);
        if let Some(w) = waiter {
            let _ = w.send(reply);
        }
    }
    let mut p = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
    p.closed = true;
    p.waiters.clear();
    p.watchers.clear();
    // `events` is dropped here: the receiver sees the disconnection.
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A scripted QMP server: greeting, capabilities, then answers per command name.
    fn mock_server(
        listener: UnixListener,
        close_after: usize,
    ) -> std::thread::JoinHandle<Vec<Value>> {
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            w.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n").unwrap();
            let mut seen = Vec::new();
            let mut handled = 0;
            while let Ok(Some(cmd)) = read_message(&mut r) {
                seen.push(cmd.clone());
                let id = cmd["id"].clone();
                let name = cmd["execute"].as_str().unwrap_or("").to_string();
                let answer = match name.as_str() {
                    "qmp_capabilities" => json!({"return": {}, "id": id}),
                    "query-status" => {
                        // An event before the answer, as QEMU may interleave them.
                        w.write_all(b"{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n").unwrap();
                        json!({"return": {"status": "paused", "running": false}, "id": id})
                    }
                    "echo" => json!({"return": cmd["arguments"].clone(), "id": id}),
                    _ => {
                        json!({"error": {"class": "CommandNotFound", "desc": format!("The command {name} has not been found")}, "id": id})
                    }
                };
                w.write_all(format!("{answer}\r\n").as_bytes()).unwrap();
                if name != "qmp_capabilities" {
                    handled += 1;
                    if handled == close_after {
                        break;
                    }
                }
            }
            seen
        })
    }

    fn socket_path(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("rvirt-qmp-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn negotiates_runs_commands_and_delivers_events() {
        let path = socket_path("ok");
        let server = mock_server(UnixListener::bind(&path).unwrap(), 3);
        let (qmp, events) = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(qmp.version(), Some((7, 2, 2)));
        assert_eq!(qmp.events_read(), 0);
        let st = qmp.execute("query-status", None).unwrap();
        assert_eq!(st["status"], "paused");
        // The event QEMU wrote before the answer is counted once the answer is in, before
        // anyone took it from the channel.
        let mark = qmp.events_read();
        assert_eq!(mark, 1);
        let ev = events.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(ev.name, "STOP");
        assert_eq!(ev.timestamp, Some((1, 2)));
        assert!(ev.seq <= mark);
        assert_eq!(
            qmp.execute("echo", Some(json!({"x": 1}))).unwrap(),
            json!({"x": 1})
        );
        match qmp.execute("bogus", None) {
            Err(QmpError::Command { class, command, .. }) => {
                assert_eq!(class, "CommandNotFound");
                assert_eq!(command, "bogus");
            }
            other => panic!("expected a command error, got {other:?}"),
        }
        let seen = server.join().unwrap();
        assert_eq!(seen[0]["execute"], "qmp_capabilities");
        assert_eq!(seen[2]["arguments"], json!({"x": 1}));
        // The server closed: the event channel disconnects and commands fail as closed.
        assert!(matches!(
            events.recv_timeout(Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected)
        ));
        assert!(qmp.is_closed());
        assert!(matches!(
            qmp.execute("query-status", None),
            Err(QmpError::Closed)
        ));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn concurrent_callers_get_their_own_answers() {
        let path = socket_path("conc");
        let server = mock_server(UnixListener::bind(&path).unwrap(), 16);
        let (qmp, _events) = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let q = qmp.clone();
                std::thread::spawn(move || q.execute("echo", Some(json!({ "n": i }))).unwrap())
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), json!({ "n": i }));
        }
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn pipelined_commands_are_answered_in_order() {
        // The server reads both commands before it answers either: only a client that
        // sends the second without waiting for the first answer gets through.
        let path = socket_path("pipe");
        let l = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = l.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            let caps = read_message(&mut r).unwrap().unwrap();
            w.write_all(format!("{}\r\n", json!({"return": {}, "id": caps["id"]})).as_bytes())
                .unwrap();
            let a = read_message(&mut r).unwrap().unwrap();
            let b = read_message(&mut r).unwrap().unwrap();
            for c in [&a, &b] {
                w.write_all(
                    format!("{}\r\n", json!({"return": c["execute"], "id": c["id"]})).as_bytes(),
                )
                .unwrap();
            }
            let _ = read_message(&mut r);
        });
        let (qmp, _events) = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let first = qmp.send("query-chardev", None).unwrap();
        let second = qmp.send("cont", None).unwrap();
        assert_eq!(second.wait(Duration::from_secs(5)).unwrap(), json!("cont"));
        assert_eq!(
            first.wait(Duration::from_secs(5)).unwrap(),
            json!("query-chardev")
        );
        qmp.close();
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_silent_server_times_out_and_a_wrong_greeting_is_refused() {
        let path = socket_path("silent");
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(400));
            drop(s);
        });
        let e = Qmp::connect(&path, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, QmpError::Timeout(_)), "{e:?}");
        t.join().unwrap();
        let _ = std::fs::remove_file(&path);

        let path = socket_path("wrong");
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"{\"hello\": 1}\r\n").unwrap();
        });
        let e = Qmp::connect(&path, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, QmpError::Greeting(_)), "{e:?}");
        t.join().unwrap();
        let _ = std::fs::remove_file(&path);
        let e = Qmp::connect(&path, Duration::from_secs(1)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot connect to the monitor socket")
        );
    }

    #[test]
    fn a_watch_registered_before_the_command_gets_the_event_right_after_its_answer() {
        // The server answers `migrate` and writes the MIGRATION events in the same write,
        // right behind the answer: the caller cannot start waiting before they are read.
        let path = socket_path("watch");
        let l = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = l.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            while let Ok(Some(cmd)) = read_message(&mut r) {
                let id = cmd["id"].clone();
                let mut out = format!("{}\r\n", json!({"return": {}, "id": id}));
                if cmd["execute"] == "migrate" {
                    for st in ["setup", "active", "completed"] {
                        out.push_str(&format!(
                            "{}\r\n",
                            json!({"event": "MIGRATION", "data": {"status": st},
                                "timestamp": {"seconds": 1, "microseconds": 0}})
                        ));
                    }
                    out.push_str("{\"event\": \"STOP\"}\r\n");
                }
                w.write_all(out.as_bytes()).unwrap();
            }
        });
        let (qmp, events) = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let done = qmp.watch(|e| {
            e.name == "MIGRATION"
                && matches!(e.data["status"].as_str(), Some("completed" | "failed"))
        });
        let stops = qmp.watch(|e| e.name == "STOP");
        qmp.execute("migrate", Some(json!({"uri": "tcp:x:1"})))
            .unwrap();
        // every event is read (the channel has all four) before anyone waits
        for _ in 0..4 {
            events.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        let ev = done
            .wait(Duration::from_secs(5))
            .unwrap()
            .expect("the event");
        assert_eq!(ev.data["status"], "completed");
        assert_eq!(ev.seq, 3);
        // only the matching events went to each watch
        assert_eq!(done.try_next().unwrap(), None);
        assert_eq!(
            stops.wait(Duration::from_secs(5)).unwrap().unwrap().name,
            "STOP"
        );
        // a watch registered after the event does not see it: it only waits
        let late = qmp.watch(|e| e.name == "MIGRATION");
        assert_eq!(late.wait(Duration::from_millis(50)).unwrap(), None);
        // dropped watches are unregistered
        drop((late, stops));
        assert_eq!(qmp.lock_pending().watchers.len(), 1);
        // the end of the connection ends the wait
        qmp.close();
        server.join().unwrap();
        assert!(matches!(
            done.wait(Duration::from_secs(5)),
            Err(QmpError::Closed)
        ));
        assert!(matches!(
            qmp.watch(|_| true).wait(Duration::from_secs(5)),
            Err(QmpError::Closed)
        ));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_descriptor_travels_with_its_command() {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
        use std::io::Read;
        use std::os::fd::AsFd;
        let path = socket_path("fd");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, \"capabilities\": []}}\r\n").unwrap();
            let mut got = Vec::new();
            let mut fds = Vec::new();
            let mut negotiated = false;
            // read until both commands arrived, collecting any descriptor
            while got.iter().filter(|b| **b == b'\n').count() < 2 {
                let mut buf = [0u8; 512];
                let mut space =
                    [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
                let mut cmsg = RecvAncillaryBuffer::new(&mut space);
                let r = recvmsg(
                    &s,
                    &mut [std::io::IoSliceMut::new(&mut buf)],
                    &mut cmsg,
                    RecvFlags::empty(),
                )
                .unwrap();
                got.extend_from_slice(&buf[..r.bytes]);
                for m in cmsg.drain() {
                    if let RecvAncillaryMessage::ScmRights(f) = m {
                        fds.extend(f);
                    }
                }
                if !negotiated && got.contains(&b'\n') {
                    s.write_all(b"{\"return\": {}, \"id\": 0}\r\n").unwrap();
                    negotiated = true;
                }
            }
            s.write_all(b"{\"return\": {}, \"id\": 1}\r\n").unwrap();
            (String::from_utf8_lossy(&got).into_owned(), fds)
        });
        let (q, _ev) = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let (r, mut w) = std::io::pipe().unwrap();
        q.execute_with_fd("getfd", Some(json!({"fdname": "x"})), r.as_fd())
            .unwrap();
        let (text, fds) = server.join().unwrap();
        assert!(text.contains("\"getfd\""), "{text}");
        assert_eq!(fds.len(), 1, "one descriptor arrived");
        // the descriptor that arrived is the pipe's read end
        w.write_all(b"ping").unwrap();
        drop(w);
        let mut got = String::new();
        std::fs::File::from(fds.into_iter().next().unwrap())
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "ping");
        let _ = std::fs::remove_file(&path);
    }
}

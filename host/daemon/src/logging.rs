//! The daemon's log: tracing with a filter and outputs that the admin program changes at
//! run time (`virt-admin daemon-log-filters`, `daemon-log-outputs`) and `rvirtd.toml` sets
//! at start (`log_filters`, `log_outputs`), written in libvirt's syntax:
//!
//! - filters: `LEVEL:NAME ...` (1 debug, 2 info, 3 warning, 4 error; an optional `+`
//!   before NAME is accepted and ignored): events whose target starts with NAME
//!   (`rvirtd::server`, `rvirt_host`) pass from LEVEL up;
//! - outputs, several separated by spaces: `LEVEL:stderr`, `LEVEL:file:PATH`,
//!   `LEVEL:syslog:IDENT` (RFC 3164 datagrams to the local syslog socket `/dev/log`,
//!   facility daemon, tagged `IDENT[PID]`) and `LEVEL:journald` (journald's native
//!   protocol on `/run/systemd/journal/socket`: `MESSAGE`, `PRIORITY`,
//!   `SYSLOG_IDENTIFIER=rvirtd`, `CODE_FILE`/`CODE_LINE`...). Under `--root DIR` both
//!   sockets are looked for under DIR, as every other system path. The lowest LEVEL is
//!   the default level of events no filter names, and every output receives every event
//!   that passes.
//!
//! Colour codes go to stderr only, and only when it is a terminal; files, syslog and the
//! journal get plain text (syslog and the journal without the timestamp, which they add).
//! Before any change the filter is `RUST_LOG` (default `info`) and the output stderr.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Errors of a logging change.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid log level '{0}' (1 debug, 2 info, 3 warning, 4 error)")]
    Level(String),
    #[error("invalid log {what} '{text}': expected LEVEL:{expected}")]
    Syntax {
        what: &'static str,
        text: String,
        expected: &'static str,
    },
    #[error("cannot open the log file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the {what} socket {}", path.display())]
    Socket {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot apply the log filter")]
    Reload(#[source] reload::Error),
    #[error("cannot build the log filter from '{text}'")]
    Directive {
        text: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
}

/// The local syslog socket (RFC 3164 datagrams).
pub const SYSLOG_SOCKET: &str = "/dev/log";
/// journald's native protocol socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// syslog's facility `LOG_DAEMON`, as libvirt's daemons log.
const FACILITY_DAEMON: u8 = 3;

/// One output as written: `LEVEL:stderr`, `LEVEL:file:PATH`, `LEVEL:syslog:IDENT`,
/// `LEVEL:journald`.
#[derive(Debug, Clone, PartialEq)]
enum Dest {
    Stderr,
    File(String),
    Syslog(String),
    Journald,
}

/// The formatting an output needs: each is a layer of its own, so a line is formatted
/// only for the kinds some output wants.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// stderr: colour when it is a terminal, with the time.
    Stderr = 0,
    /// Files: plain, with the time.
    File = 1,
    /// syslog and journald: plain, without the time (the receiver stamps it).
    System = 2,
}

/// Where events go.
enum Sink {
    Stderr,
    File(std::fs::File),
    /// An unbound datagram socket: each message is sent to `path`, so a restarted syslog
    /// daemon is reached again.
    Syslog {
        sock: UnixDatagram,
        path: PathBuf,
        ident: String,
    },
    Journald {
        sock: UnixDatagram,
        path: PathBuf,
    },
}

impl Sink {
    fn kind(&self) -> Kind {
        match self {
            Sink::Stderr => Kind::Stderr,
            Sink::File(_) => Kind::File,
            Sink::Syslog { .. } | Sink::Journald { .. } => Kind::System,
        }
    }
}

struct State {
    filters: String,
    outputs: String,
    /// Each output with its level (1-4).
    sinks: Vec<(u8, Sink)>,
}

/// The handles to change the log at run time.
struct Control {
    filter: reload::Handle<EnvFilter, Registry>,
    state: Mutex<State>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// Per [`Kind`]: 1 when some output is of that kind (the filter decides), 5 when none is
/// (nothing is formatted for it).
static WANTED: [AtomicU8; 3] = [AtomicU8::new(1), AtomicU8::new(5), AtomicU8::new(5)];

/// libvirt's level (1 debug ... 4 error) of a tracing level.
fn level_number(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 4,
        Level::WARN => 3,
        Level::INFO => 2,
        _ => 1,
    }
}

/// A writer for one formatted event of `kind`.
struct Outputs {
    kind: Kind,
    level: u8,
    /// For the journal: the event's target, source file and line.
    code: Option<Code>,
}

struct Code {
    target: String,
    file: Option<String>,
    line: Option<u32>,
}

impl Write for Outputs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(c) = CONTROL.get() else {
            return std::io::stderr().write(buf);
        };
        let mut state = c.state.lock().unwrap_or_else(|e| e.into_inner());
        for (_, sink) in &mut state.sinks {
            if sink.kind() != self.kind {
                continue;
            }
            // a full disk or a stopped syslog must not stop the daemon: losing a line is
            // the lesser harm
            let _ = deliver(sink, self, buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes one formatted event to one output.
fn deliver(sink: &mut Sink, event: &Outputs, line: &[u8]) -> std::io::Result<()> {
    match sink {
        Sink::Stderr => std::io::stderr().write_all(line),
        Sink::File(f) => f.write_all(line),
        Sink::Syslog { sock, path, ident } => sock
            .send_to(&syslog_datagram(ident, event.level, line), &*path)
            .map(drop),
        Sink::Journald { sock, path } => sock
            .send_to(&journal_datagram(event, line), &*path)
            .map(drop),
    }
}

/// The syslog severity of libvirt's level.
fn severity(level: u8) -> u8 {
    match level {
        4 => 3, // LOG_ERR
        3 => 4, // LOG_WARNING
        2 => 6, // LOG_INFO
        _ => 7, // LOG_DEBUG
    }
}

/// An RFC 3164 message for the local socket: `<PRI>IDENT[PID]: MESSAGE` (the receiver adds
/// the time and host).
fn syslog_datagram(ident: &str, level: u8, line: &[u8]) -> Vec<u8> {
    let pri = FACILITY_DAEMON * 8 + severity(level);
    let mut out = format!("<{pri}>{ident}[{}]: ", std::process::id()).into_bytes();
    out.extend_from_slice(line.trim_ascii_end());
    out
}

/// One field of journald's native protocol: `NAME=value\n`, or for a value with a newline
/// `NAME\n`, its length as 64-bit little-endian, the value, `\n`.
fn journal_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn journal_datagram(event: &Outputs, line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 160);
    journal_field(&mut out, "MESSAGE", line.trim_ascii_end());
    journal_field(
        &mut out,
        "PRIORITY",
        severity(event.level).to_string().as_bytes(),
    );
    journal_field(&mut out, "SYSLOG_IDENTIFIER", b"rvirtd");
    journal_field(
        &mut out,
        "SYSLOG_FACILITY",
        FACILITY_DAEMON.to_string().as_bytes(),
    );
    journal_field(
        &mut out,
        "SYSLOG_PID",
        std::process::id().to_string().as_bytes(),
    );
    if let Some(code) = &event.code {
        journal_field(&mut out, "RVIRT_TARGET", code.target.as_bytes());
        if let Some(file) = &code.file {
            journal_field(&mut out, "CODE_FILE", file.as_bytes());
        }
        if let Some(line) = code.line {
            journal_field(&mut out, "CODE_LINE", line.to_string().as_bytes());
        }
    }
    out
}

/// The writers of one [`Kind`].
#[derive(Clone, Copy)]
struct MakeOutputs(Kind);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MakeOutputs {
    type Writer = Outputs;

    fn make_writer(&'a self) -> Self::Writer {
        Outputs {
            kind: self.0,
            level: 2,
            code: None,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        Outputs {
            kind: self.0,
            level: level_number(meta.level()),
            code: (self.0 == Kind::System).then(|| Code {
                target: meta.target().to_owned(),
                file: meta.file().map(str::to_owned),
                line: meta.line(),
            }),
        }
    }
}

/// Whether an event at `level` is formatted for `kind`.
fn wanted(kind: Kind, level: &Level) -> bool {
    level_number(level) >= WANTED[kind as usize].load(Ordering::Relaxed)
}

/// Installs the subscriber: `RUST_LOG` (default `info`) to stderr, colour only on a
/// terminal.
pub fn init() {
    let initial = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(&initial).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let level = match initial.trim() {
        "trace" | "debug" => 1,
        "warn" => 3,
        "error" | "off" => 4,
        _ => 2,
    };
    let _ = CONTROL.set(Control {
        filter: handle,
        state: Mutex::new(State {
            filters: String::new(),
            outputs: format!("{level}:stderr"),
            sinks: vec![(level, Sink::Stderr)],
        }),
    });
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(MakeOutputs(Kind::Stderr))
        // colour codes only for a terminal
        .with_ansi(ansi)
        .with_filter(filter_fn(|m| wanted(Kind::Stderr, m.level())));
    let files = tracing_subscriber::fmt::layer()
        .with_writer(MakeOutputs(Kind::File))
        .with_ansi(false)
        .with_filter(filter_fn(|m| wanted(Kind::File, m.level())));
    let system = tracing_subscriber::fmt::layer()
        .with_writer(MakeOutputs(Kind::System))
        .with_ansi(false)
        .without_time()
        .with_filter(filter_fn(|m| wanted(Kind::System, m.level())));
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(files)
        .with(system)
        .init();
}

fn level_name(text: &str) -> Result<&'static str, LogError> {
    match text {
        "1" => Ok("debug"),
        "2" => Ok("info"),
        "3" => Ok("warn"),
        "4" => Ok("error"),
        other => Err(LogError::Level(other.to_string())),
    }
}

/// `LEVEL:NAME` items as `(level, name)`.
fn parse_filters(text: &str) -> Result<Vec<(&'static str, String)>, LogError> {
    text.split_whitespace()
        .map(|item| {
            let (level, name) = item.split_once(':').ok_or_else(|| LogError::Syntax {
                what: "filter",
                text: item.to_string(),
                expected: "NAME",
            })?;
            let name = name.trim_start_matches('+');
            if name.is_empty() {
                return Err(LogError::Syntax {
                    what: "filter",
                    text: item.to_string(),
                    expected: "NAME",
                });
            }
            Ok((level_name(level)?, name.to_string()))
        })
        .collect()
}

/// `LEVEL:stderr`, `LEVEL:file:PATH`, `LEVEL:syslog:IDENT` and `LEVEL:journald` items as
/// `(level digit, destination)`.
fn parse_outputs(text: &str) -> Result<Vec<(u8, Dest)>, LogError> {
    text.split_whitespace()
        .map(|item| {
            let syntax = || LogError::Syntax {
                what: "output",
                text: item.to_string(),
                expected: "stderr, LEVEL:file:PATH, LEVEL:syslog:NAME or LEVEL:journald",
            };
            let (level, dest) = item.split_once(':').ok_or_else(syntax)?;
            level_name(level)?;
            let digit = level.as_bytes()[0] - b'0';
            let dest = match dest.split_once(':') {
                None if dest == "stderr" => Dest::Stderr,
                None if dest == "journald" => Dest::Journald,
                Some(("file", path)) if path.starts_with('/') => Dest::File(path.to_string()),
                Some(("syslog", ident)) if !ident.is_empty() && !ident.contains(':') => {
                    Dest::Syslog(ident.to_string())
                }
                _ => return Err(syntax()),
            };
            Ok((digit, dest))
        })
        .collect()
}

/// A system path under `--root DIR` when the daemon was given one.
fn system_path(path: &str) -> PathBuf {
    match std::env::var_os(rvirt_host::SYSTEM_ROOT_ENV) {
        Some(root) if !root.is_empty() => Path::new(&root).join(path.trim_start_matches('/')),
        _ => PathBuf::from(path),
    }
}

/// An unbound datagram socket for `path`, checked to be reachable now (a missing syslog
/// is an error when the output is set; later failures lose lines only).
fn datagram_to(what: &'static str, path: PathBuf) -> Result<(UnixDatagram, PathBuf), LogError> {
    let err = |source| LogError::Socket {
        what,
        path: path.clone(),
        source,
    };
    let probe = UnixDatagram::unbound().map_err(err)?;
    probe.connect(&path).map_err(err)?;
    let sock = UnixDatagram::unbound().map_err(err)?;
    Ok((sock, path))
}

/// Opens an output; `system` places the syslog and journal sockets ([`system_path`]).
fn open_sink(dest: &Dest, system: &dyn Fn(&str) -> PathBuf) -> Result<Sink, LogError> {
    Ok(match dest {
        Dest::Stderr => Sink::Stderr,
        Dest::File(path) => Sink::File(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LogError::File {
                    path: path.clone(),
                    source,
                })?,
        ),
        Dest::Syslog(ident) => {
            let (sock, path) = datagram_to("syslog", system(SYSLOG_SOCKET))?;
            Sink::Syslog {
                sock,
                path,
                ident: ident.clone(),
            }
        }
        Dest::Journald => {
            let (sock, path) = datagram_to("journald", system(JOURNAL_SOCKET))?;
            Sink::Journald { sock, path }
        }
    })
}

fn directives(default_level: &str, filters: &[(&'static str, String)]) -> String {
    let mut d = vec![default_level.to_string()];
    d.extend(filters.iter().map(|(l, n)| format!("{n}={l}")));
    d.join(",")
}

fn default_level(outputs: &str) -> &'static str {
    let min = parse_outputs(outputs)
        .ok()
        .and_then(|o| o.iter().map(|(l, _)| *l).min())
        .unwrap_or(2);
    level_name(&min.to_string()).unwrap_or("info")
}

fn apply(c: &Control, state: &State) -> Result<(), LogError> {
    let filters = parse_filters(&state.filters)?;
    let text = directives(default_level(&state.outputs), &filters);
    let filter = EnvFilter::try_new(&text).map_err(|source| LogError::Directive {
        text: text.clone(),
        source,
    })?;
    c.filter.reload(filter).map_err(LogError::Reload)
}

/// The filters now (`LEVEL:NAME ...`) and how many.
pub fn filters() -> (String, u32) {
    let Some(c) = CONTROL.get() else {
        return (String::new(), 0);
    };
    let s = c.state.lock().unwrap_or_else(|e| e.into_inner());
    (
        s.filters.clone(),
        s.filters.split_whitespace().count() as u32,
    )
}

/// The outputs now and how many.
pub fn outputs() -> (String, u32) {
    let Some(c) = CONTROL.get() else {
        return ("2:stderr".into(), 1);
    };
    let s = c.state.lock().unwrap_or_else(|e| e.into_inner());
    (
        s.outputs.clone(),
        s.outputs.split_whitespace().count() as u32,
    )
}

/// Replaces the filters (empty: none).
pub fn set_filters(text: &str) -> Result<(), LogError> {
    parse_filters(text)?;
    let Some(c) = CONTROL.get() else {
        return Ok(());
    };
    let mut s = c.state.lock().unwrap_or_else(|e| e.into_inner());
    let old = std::mem::replace(
        &mut s.filters,
        text.split_whitespace().collect::<Vec<_>>().join(" "),
    );
    if let Err(e) = apply(c, &s) {
        s.filters = old;
        return Err(e);
    }
    Ok(())
}

/// Replaces the outputs (empty: libvirt's default, `LEVEL:stderr` at the current default
/// level).
pub fn set_outputs(text: &str) -> Result<(), LogError> {
    let text = if text.trim().is_empty() {
        "2:stderr".to_string()
    } else {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let parsed = parse_outputs(&text)?;
    let sinks = parsed
        .iter()
        .map(|(level, dest)| Ok((*level, open_sink(dest, &system_path)?)))
        .collect::<Result<Vec<_>, LogError>>()?;
    let Some(c) = CONTROL.get() else {
        return Ok(());
    };
    let mut s = c.state.lock().unwrap_or_else(|e| e.into_inner());
    let old_outputs = std::mem::replace(&mut s.outputs, text);
    if let Err(e) = apply(c, &s) {
        s.outputs = old_outputs;
        return Err(e);
    }
    publish_wanted(&sinks);
    s.sinks = sinks;
    Ok(())
}

/// Updates [`WANTED`] from the outputs.
fn publish_wanted(sinks: &[(u8, Sink)]) {
    for kind in [Kind::Stderr, Kind::File, Kind::System] {
        let used = sinks.iter().any(|(_, s)| s.kind() == kind);
        WANTED[kind as usize].store(if used { 1 } else { 5 }, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_filter_and_output_syntax() {
        let f = parse_filters("1:rvirtd::server 3:+rvirt_host").unwrap();
        assert_eq!(
            f,
            vec![
                ("debug", "rvirtd::server".to_string()),
                ("warn", "rvirt_host".to_string())
            ]
        );
        assert_eq!(
            directives("info", &f),
            "info,rvirtd::server=debug,rvirt_host=warn"
        );
        assert!(parse_filters("9:x").is_err());
        assert!(parse_filters("rvirtd").is_err());
        let o = parse_outputs("3:stderr 1:file:/var/log/x.log 2:syslog:rvirtd 4:journald").unwrap();
        assert_eq!(
            o,
            vec![
                (3, Dest::Stderr),
                (1, Dest::File("/var/log/x.log".into())),
                (2, Dest::Syslog("rvirtd".into())),
                (4, Dest::Journald)
            ]
        );
        assert_eq!(default_level("3:stderr 1:file:/var/log/x.log"), "debug");
        assert_eq!(default_level("4:journald 3:syslog:x"), "warn");
        assert!(parse_outputs("1:file:relative").is_err());
        assert!(parse_outputs("1:syslog").is_err());
        assert!(parse_outputs("1:syslog:").is_err());
        assert!(parse_outputs("1:journald:x").is_err());
        assert!(parse_outputs("1:fluentd").is_err());
    }

    fn event(level: u8) -> Outputs {
        Outputs {
            kind: Kind::System,
            level,
            code: Some(Code {
                target: "rvirtd::server".into(),
                file: Some("host/daemon/src/server.rs".into()),
                line: Some(42),
            }),
        }
    }

    /// A fake `/dev/log` and journal socket under a temporary root.
    fn fake_root() -> (tempfile::TempDir, impl Fn(&str) -> PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let system = move |p: &str| root.join(p.trim_start_matches('/'));
        (dir, system)
    }

    fn bind(path: &Path) -> UnixDatagram {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let s = UnixDatagram::bind(path).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        s
    }

    #[test]
    fn syslog_output_sends_rfc3164_datagrams_to_dev_log() {
        let (_dir, system) = fake_root();
        let dest = Dest::Syslog("rvirtd-test".into());
        // nothing listening: refused when set
        assert!(matches!(
            open_sink(&dest, &system),
            Err(LogError::Socket { what: "syslog", .. })
        ));
        let log = bind(&system(SYSLOG_SOCKET));
        let mut sink = open_sink(&dest, &system).unwrap();
        deliver(&mut sink, &event(3), b"WARN rvirtd::server: disk full\n").unwrap();
        deliver(&mut sink, &event(1), b"DEBUG x: y\n").unwrap();
        let mut buf = [0u8; 4096];
        let n = log.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!(
                "<28>rvirtd-test[{}]: WARN rvirtd::server: disk full",
                std::process::id()
            ),
            "facility daemon (3), severity warning (4), no trailing newline"
        );
        let n = log.recv(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"<31>rvirtd-test["),
            "debug is severity 7"
        );
    }

    #[test]
    fn journald_output_speaks_the_native_protocol() {
        let (_dir, system) = fake_root();
        let journal = bind(&system(JOURNAL_SOCKET));
        let mut sink = open_sink(&Dest::Journald, &system).unwrap();
        deliver(&mut sink, &event(2), b"INFO client connected\n").unwrap();
        deliver(&mut sink, &event(4), b"ERROR two\nlines\n").unwrap();
        let mut buf = [0u8; 4096];
        let n = journal.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        for field in [
            "MESSAGE=INFO client connected\n",
            "PRIORITY=6\n",
            "SYSLOG_IDENTIFIER=rvirtd\n",
            "SYSLOG_FACILITY=3\n",
            "CODE_FILE=host/daemon/src/server.rs\n",
            "CODE_LINE=42\n",
        ] {
            assert!(text.contains(field), "{field:?} missing in {text:?}");
        }
        assert!(text.contains(&format!("SYSLOG_PID={}\n", std::process::id())));
        // a value with a newline: NAME, newline, 64-bit little-endian length, value
        let n = journal.recv(&mut buf).unwrap();
        let msg = b"ERROR two\nlines";
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&(msg.len() as u64).to_le_bytes());
        want.extend_from_slice(msg);
        want.extend_from_slice(b"\nPRIORITY=3\n");
        assert!(buf[..n].starts_with(&want), "{:?}", &buf[..n]);
    }
}

//! The daemon's log: tracing with a filter and outputs that the admin program changes at
//! run time (`virt-admin daemon-log-filters`, `daemon-log-outputs`), written in libvirt's
//! syntax:
//!
//! - filters: `LEVEL:NAME ...` (1 debug, 2 info, 3 warning, 4 error; an optional `+`
//!   before NAME is accepted and ignored): events whose target starts with NAME
//!   (`rvirtd::server`, `rvirt_host`) pass from LEVEL up;
//! - outputs: `LEVEL:stderr` or `LEVEL:file:PATH`, several separated by spaces; the
//!   lowest LEVEL is the default level of events no filter names, and every output
//!   receives every event that passes. libvirt's `syslog` and `journald` outputs are
//!   refused (no such writer here).
//!
//! Before any change the filter is `RUST_LOG` (default `info`) and the output stderr.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
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
    #[error("log output '{0}' is not supported by rvirtd (only stderr and file:PATH)")]
    Unsupported(String),
    #[error("cannot open the log file {path}")]
    File {
        path: String,
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

/// Where events go.
enum Sink {
    Stderr,
    File(std::fs::File),
}

struct State {
    filters: String,
    outputs: String,
    sinks: Vec<Sink>,
}

/// The handles to change the log at run time.
struct Control {
    filter: reload::Handle<EnvFilter, Registry>,
    state: Mutex<State>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// A writer over the current outputs.
#[derive(Clone, Copy)]
struct Outputs;

impl Write for Outputs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(c) = CONTROL.get() else {
            return std::io::stderr().write(buf);
        };
        let mut state = c.state.lock().unwrap_or_else(|e| e.into_inner());
        for sink in &mut state.sinks {
            // a full disk must not stop the daemon: losing a line is the lesser harm
            let _ = match sink {
                Sink::Stderr => std::io::stderr().write_all(buf),
                Sink::File(f) => f.write_all(buf),
            };
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Outputs {
    type Writer = Outputs;

    fn make_writer(&'a self) -> Self::Writer {
        Outputs
    }
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
            sinks: vec![Sink::Stderr],
        }),
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(Outputs)
                // colour codes only for a terminal: a log file or journal gets plain text
                .with_ansi(ansi),
        )
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

/// `LEVEL:stderr` and `LEVEL:file:PATH` items as `(level digit, sink description)`.
fn parse_outputs(text: &str) -> Result<Vec<(u8, Option<String>)>, LogError> {
    text.split_whitespace()
        .map(|item| {
            let syntax = || LogError::Syntax {
                what: "output",
                text: item.to_string(),
                expected: "stderr or LEVEL:file:PATH",
            };
            let (level, dest) = item.split_once(':').ok_or_else(syntax)?;
            level_name(level)?;
            let digit = level.as_bytes()[0] - b'0';
            match dest.split_once(':') {
                None if dest == "stderr" => Ok((digit, None)),
                Some(("file", path)) if path.starts_with('/') => {
                    Ok((digit, Some(path.to_string())))
                }
                Some(("file", _)) => Err(syntax()),
                _ if dest.starts_with("syslog") || dest == "journald" => {
                    Err(LogError::Unsupported(dest.to_string()))
                }
                _ => Err(syntax()),
            }
        })
        .collect()
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
    let mut sinks = Vec::new();
    for (_, dest) in &parsed {
        sinks.push(match dest {
            None => Sink::Stderr,
            Some(path) => Sink::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| LogError::File {
                        path: path.clone(),
                        source,
                    })?,
            ),
        });
    }
    let Some(c) = CONTROL.get() else {
        return Ok(());
    };
    let mut s = c.state.lock().unwrap_or_else(|e| e.into_inner());
    let old_outputs = std::mem::replace(&mut s.outputs, text);
    if let Err(e) = apply(c, &s) {
        s.outputs = old_outputs;
        return Err(e);
    }
    s.sinks = sinks;
    Ok(())
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
        let o = parse_outputs("3:stderr 1:file:/var/log/x.log").unwrap();
        assert_eq!(o, vec![(3, None), (1, Some("/var/log/x.log".into()))]);
        assert_eq!(default_level("3:stderr 1:file:/var/log/x.log"), "debug");
        assert!(matches!(
            parse_outputs("1:journald"),
            Err(LogError::Unsupported(_))
        ));
        assert!(parse_outputs("1:file:relative").is_err());
    }
}

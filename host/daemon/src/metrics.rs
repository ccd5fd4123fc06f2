//! Prometheus metrics, opt-in (`metrics_listen` in rvirtd.toml, loopback by default):
//! per-procedure call counts by result and latency histograms, the clients connected, and
//! the domains by state of every URI clients opened (counted when scraped), served as the
//! text
//! exposition format on `GET /metrics` over HTTP/1.1.
//!
//! Nothing is recorded unless the endpoint is configured: the call path then pays one
//! `OnceLock` read.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics_listen: '{0}' is not an address and port (e.g. \"127.0.0.1:9177\")")]
    Address(String),
    #[error("cannot listen for metrics on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

type Labels = Vec<(&'static str, &'static str)>;

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    calls: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Clients connected now (every socket), kept whether or not the endpoint is configured:
/// one atomic add per connection.
static CLIENTS: OnceLock<Gauge> = OnceLock::new();

fn clients() -> &'static Gauge {
    CLIENTS.get_or_init(Gauge::default)
}

/// A client connected.
pub fn client_connected() {
    clients().inc();
}

/// A client went away.
pub fn client_disconnected() {
    clients().dec();
}

/// What the domain gauge counts over: each URI clients opened and its domains' states
/// (or why they could not be listed).
pub type DomainCounts = Vec<(String, Result<Vec<rvirt_host::DomainState>, String>)>;

/// Lists the domains of the opened URIs; runs on a blocking thread at each scrape.
pub type DomainSource = Box<dyn Fn() -> DomainCounts + Send + Sync>;

static DOMAINS: OnceLock<DomainSource> = OnceLock::new();

/// Sets what `rvirtd_domains` counts.
pub fn set_domain_source(source: DomainSource) {
    let _ = DOMAINS.set(source);
}

/// libvirt's names of the domain states, as `virsh domstate` prints them in short.
const STATES: [(rvirt_host::DomainState, &str); 8] = [
    (rvirt_host::DomainState::NoState, "nostate"),
    (rvirt_host::DomainState::Running, "running"),
    (rvirt_host::DomainState::Blocked, "blocked"),
    (rvirt_host::DomainState::Paused, "paused"),
    (rvirt_host::DomainState::Shutdown, "shutdown"),
    (rvirt_host::DomainState::Shutoff, "shutoff"),
    (rvirt_host::DomainState::Crashed, "crashed"),
    (rvirt_host::DomainState::PmSuspended, "pmsuspended"),
];

/// The `rvirtd_domains` gauge family in the text format (every state of every URI, zeros
/// included, so series do not vanish).
fn render_domains(counts: &DomainCounts) -> String {
    let mut out = String::from(
        "# HELP rvirtd_domains Domains by state, per URI clients opened (counted at scrape time).\n# TYPE rvirtd_domains gauge\n",
    );
    for (uri, states) in counts {
        let uri_label = uri.replace('\\', "\\\\").replace('"', "\\\"");
        match states {
            Ok(list) => {
                for (state, name) in STATES {
                    let n = list.iter().filter(|s| **s == state).count();
                    out.push_str(&format!(
                        "rvirtd_domains{{uri=\"{uri_label}\",state=\"{name}\"}} {n}\n"
                    ));
                }
            }
            Err(e) => tracing::debug!(uri, "cannot count the domains: {e}"),
        }
    }
    out
}

fn latency_histogram() -> Histogram {
    // 5 µs .. ~5 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        5e-6, 2.0, 21,
    ))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rvirtd");
        let calls = Family::<Labels, Counter>::default();
        let latency =
            Family::<Labels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "calls",
            "Remote procedure calls answered, by procedure and result",
            calls.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Time from a call's arrival to its encoded answer, by procedure",
            latency.clone(),
        );
        registry.register(
            "clients",
            "Clients connected now, on every socket",
            clients().clone(),
        );
        Metrics {
            registry,
            calls,
            latency,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // writing to a String cannot fail
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// One procedure's series, each looked up in its family when first needed: later calls pay
/// an atomic add and a histogram observation, with no label hashing, allocation or family
/// lock.
struct Series {
    ok: OnceLock<Counter>,
    error: OnceLock<Counter>,
    latency: OnceLock<Histogram>,
}

/// Procedure numbers whose series are kept in [`SERIES`] (the table ends well below).
const CACHED: usize = 1024;
static SERIES: [Series; CACHED] = [const {
    Series {
        ok: OnceLock::new(),
        error: OnceLock::new(),
        latency: OnceLock::new(),
    }
}; CACHED];

/// Records one answered call of `procedure` (its name in libvirt's protocol table; its
/// number, when known, keeps its series at hand).
pub fn record_call(procedure: &'static str, number: Option<i32>, ok: bool, took: Duration) {
    let Some(m) = METRICS.get() else {
        return;
    };
    let result = if ok { "ok" } else { "error" };
    let counter = || {
        m.calls
            .get_or_create(&vec![("procedure", procedure), ("result", result)])
            .clone()
    };
    let latency = || {
        m.latency
            .get_or_create(&vec![("procedure", procedure)])
            .clone()
    };
    match number
        .and_then(|n| usize::try_from(n).ok())
        .and_then(|n| SERIES.get(n))
    {
        Some(s) => {
            if ok { &s.ok } else { &s.error }.get_or_init(counter).inc();
            s.latency.get_or_init(latency).observe(took.as_secs_f64());
        }
        None => {
            counter().inc();
            latency().observe(took.as_secs_f64());
        }
    }
}

/// Whether calls are being recorded (the endpoint is configured).
pub fn enabled() -> bool {
    METRICS.get().is_some()
}

/// Parses `metrics_listen` (a bare port means 127.0.0.1).
pub fn parse_listen(text: &str) -> Result<SocketAddr, MetricsError> {
    let t = text.trim();
    if let Ok(port) = t.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    t.parse()
        .map_err(|_| MetricsError::Address(text.to_string()))
}

/// Binds the endpoint and serves it until the runtime stops; recording starts here.
pub async fn serve(addr: SocketAddr) -> Result<SocketAddr, MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "metrics are served beyond loopback: anyone who can reach it reads them");
    }
    METRICS.get_or_init(Metrics::new);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, hyper::service::service_fn(answer))
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn answer(
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => {
            let mut text = METRICS.get().map(Metrics::render).unwrap_or_default();
            if let Some(source) = DOMAINS.get() {
                // listing domains calls drivers: off the reactor
                let counts = tokio::task::spawn_blocking(source)
                    .await
                    .unwrap_or_default();
                let domains = render_domains(&counts);
                match text.rfind("# EOF") {
                    Some(at) => text.insert_str(at, &domains),
                    None => text.push_str(&domains),
                }
            }
            (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            )
        }
        ("GET", _) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "rvirtd serves /metrics only\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET only\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_latencies_render_by_procedure_and_result() {
        let m = Metrics::new();
        m.calls
            .get_or_create(&vec![("procedure", "DomainLookupByName"), ("result", "ok")])
            .inc();
        m.latency
            .get_or_create(&vec![("procedure", "DomainLookupByName")])
            .observe(0.00002);
        let text = m.render();
        assert!(
            text.contains("rvirtd_calls_total{procedure=\"DomainLookupByName\",result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rvirtd_call_duration_seconds_count{procedure=\"DomainLookupByName\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn domains_by_state_render_every_state() {
        use rvirt_host::DomainState;
        let text = render_domains(&vec![
            (
                "test:///default".to_string(),
                Ok(vec![
                    DomainState::Running,
                    DomainState::Running,
                    DomainState::Paused,
                ]),
            ),
            ("qemu:///system".to_string(), Err("gone".into())),
        ]);
        assert!(
            text.contains("rvirtd_domains{uri=\"test:///default\",state=\"running\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("rvirtd_domains{uri=\"test:///default\",state=\"paused\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("rvirtd_domains{uri=\"test:///default\",state=\"shutoff\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("qemu:///system"), "{text}");
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("9177").unwrap().to_string(), "127.0.0.1:9177");
        assert_eq!(parse_listen("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert!(parse_listen("localhost").is_err());
    }
}

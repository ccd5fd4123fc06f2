//! Prometheus metrics, opt-in (`metrics_listen` in rvirtd.toml, loopback by default):
//! per-procedure call counts by result and latency histograms, and the clients connected,
//! served as the text
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

/// Records one answered call of `procedure` (its name in libvirt's protocol table).
pub fn record_call(procedure: &'static str, ok: bool, took: Duration) {
    let Some(m) = METRICS.get() else {
        return;
    };
    let result = if ok { "ok" } else { "error" };
    m.calls
        .get_or_create(&vec![("procedure", procedure), ("result", result)])
        .inc();
    m.latency
        .get_or_create(&vec![("procedure", procedure)])
        .observe(took.as_secs_f64());
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
        ("GET", "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            METRICS.get().map(Metrics::render).unwrap_or_default(),
        ),
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
    fn listen_addresses() {
        assert_eq!(parse_listen("9177").unwrap().to_string(), "127.0.0.1:9177");
        assert_eq!(parse_listen("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert!(parse_listen("localhost").is_err());
    }
}

//! What operators watch: rvirtd's log (plain text when not a terminal) and its opt-in
//! Prometheus endpoint.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_log_written_to_a_file_has_no_terminal_colour_codes() {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"));
    let root = tempfile::tempdir().unwrap();
    let log_path = root.path().join("rvirtd.log");
    let mut child = Command::new(&bin)
        .arg("--root")
        .arg(root.path())
        .env("RVIRT_PLUGIN_PATH", bin.parent().unwrap())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let sock = root.path().join("run/rvirt-sock");
    let t0 = Instant::now();
    while !sock.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.is_empty(), "rvirtd logged nothing at info level");
    assert!(
        !log.contains('\u{1b}'),
        "escape sequences in the log file:\n{log:?}"
    );
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn metrics_count_calls_by_procedure_and_result() {
    if crate::missing(
        "virsh (libvirt-clients)",
        Command::new("virsh").arg("--version"),
    ) {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = crate::Daemon::start_with_config(&format!("metrics_listen = \"127.0.0.1:{port}\"\n"));
    let uri = d.uri();
    for _ in 0..3 {
        let out = Command::new("virsh")
            .args(["-c", &uri, "dominfo", "test"])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let out = Command::new("virsh")
        .args(["-c", &uri, "dominfo", "no-such-domain"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = http_get(port, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("rvirtd_calls_total{procedure=\"DomainLookupByName\",result=\"ok\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("rvirtd_calls_total{procedure=\"DomainLookupByName\",result=\"error\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("rvirtd_call_duration_seconds_count{procedure=\"DomainGetInfo\"} 3"),
        "{text}"
    );
    assert!(http_get(port, "/other").starts_with("HTTP/1.1 404"));
    // a client that stays connected is counted, and forgotten when it leaves
    let mut held = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    let t0 = Instant::now();
    while !http_get(port, "/metrics").contains("rvirtd_clients 1") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{}",
            http_get(port, "/metrics")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::io::Write::flush(&mut held).unwrap();
    drop(held);
    let t0 = Instant::now();
    while !http_get(port, "/metrics").contains("rvirtd_clients 0") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{}",
            http_get(port, "/metrics")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_count_domains_by_state() {
    if crate::missing(
        "virsh (libvirt-clients)",
        Command::new("virsh").arg("--version"),
    ) {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = crate::Daemon::start_with_config(&format!("metrics_listen = \"127.0.0.1:{port}\"\n"));
    let uri = d.uri();
    let series = |state: &str, n: usize| {
        format!("rvirtd_domains{{uri=\"test:///default\",state=\"{state}\"}} {n}\n")
    };
    // nothing opened yet: no series
    assert!(!http_get(port, "/metrics").contains("rvirtd_domains{"));
    let virsh = |args: &[&str]| {
        let o = Command::new("virsh")
            .args(["-c", &uri])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    virsh(&["list"]);
    let text = http_get(port, "/metrics");
    assert!(text.contains(&series("running", 1)), "{text}");
    assert!(text.contains(&series("paused", 0)), "{text}");
    // a defined domain is shut off, a suspended one paused
    let xml = crate::write_file(d.root.path(), "g.xml", &crate::domain_xml("gauge-a"));
    virsh(&["define", &xml.display().to_string()]);
    virsh(&["suspend", "test"]);
    let text = http_get(port, "/metrics");
    assert!(text.contains(&series("running", 0)), "{text}");
    assert!(text.contains(&series("paused", 1)), "{text}");
    assert!(text.contains(&series("shutoff", 1)), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
}

//! Starting a NAT network until its dnsmasq answers DNS, and stopping it, in a private
//! network namespace (re-executes itself under `unshare -n`). Needs root.
//!
//! `cargo bench -p rvirt-network-bridge --bench net_start` (iterations:
//! `NET_BENCH_ITERS`, default 30).

#[path = "../tests/common/dns.rs"]
mod dns;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use rvirt_xml::Network;

const CHILD_ENV: &str = "RVIRT_NETBRIDGE_BENCH_NETNS";

const XML: &str = "<network><name>bench</name><forward mode='nat'/><bridge name='virbr0'/>\
    <dns><host ip='192.168.122.9'><hostname>bench-host</hostname></host></dns>\
    <ip address='192.168.122.1' netmask='255.255.255.0'><dhcp>\
    <range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network>";

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<28} n={:<3} min {:7.2} ms  median {:7.2} ms  p90 {:7.2} ms  max {:7.2} ms",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 9) / 10]),
        ms(v[v.len() - 1])
    );
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_none() {
        let exe = std::env::current_exe().expect("bench binary");
        let status = Command::new("unshare")
            .arg("-n")
            .arg("--")
            .arg(exe)
            .args(std::env::args().skip(1))
            .env(CHILD_ENV, "1")
            .status()
            .expect("cannot run unshare (util-linux): the benchmark needs it and root");
        std::process::exit(status.code().unwrap_or(1));
    }
    let _ = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    let iters: usize = std::env::var("NET_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().expect("tempdir");
    let net = Network::parse(XML).expect("xml");
    let server = Ipv4Addr::new(192, 168, 122, 1);
    let want = vec![Ipv4Addr::new(192, 168, 122, 9)];
    let (mut start_t, mut dns_t, mut stop_t) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..iters {
        let t0 = Instant::now();
        rvirt_network_bridge::start(&net, dir.path()).expect("start");
        start_t.push(t0.elapsed());
        loop {
            if let Ok(a) = dns::query_a(server, "bench-host", Duration::from_millis(20))
                && a == want
            {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "dns never answered");
        }
        dns_t.push(t0.elapsed());
        let t1 = Instant::now();
        rvirt_network_bridge::stop(&net, dir.path()).expect("stop");
        stop_t.push(t1.elapsed());
    }
    println!("network 'bench' (nat, dhcp, one dns host), {iters} iterations, private netns");
    stats("start (returns)", start_t);
    stats("start until DNS answers", dns_t);
    stats("stop", stop_t);
}

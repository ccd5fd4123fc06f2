//! The bridge backend against the real kernel, dnsmasq and nft. Each test re-executes
//! this binary under `unshare -n` (a fresh network namespace: its own links, nftables
//! tables and sysctls), so nothing on the host is touched. Needs root.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dns::query_a;
use rvirt_network_bridge::netlink::Netlink;
use rvirt_network_bridge::{self as nb, Error, PortSpec};
use rvirt_xml::Network;

const CHILD_ENV: &str = "RVIRT_NETBRIDGE_NETNS";

/// Runs `body` in a fresh network namespace: the parent re-executes this test binary
/// under `unshare -n` for the one test and fails if it did not pass there.
fn in_netns(test: &str, body: impl FnOnce()) {
    if std::env::var_os(CHILD_ENV).is_some() {
        sh("ip link set lo up");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        // a failed test may leave a dnsmasq: every one in this namespace is the test's
        kill_netns_dnsmasqs();
        if let Err(p) = r {
            std::panic::resume_unwind(p);
        }
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("unshare")
        .arg("-n")
        .arg("--")
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("cannot run unshare (util-linux): these tests need it and root");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- {test} in its network namespace ---\n{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "{test} failed in its network namespace ({}); needs root and unshare -n",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in its network namespace"
    );
}

/// Asserts no dnsmasq runs in this namespace.
fn assert_no_dnsmasq_in_netns() {
    let ours = std::fs::read_link("/proc/self/ns/net").ok();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        assert!(
            !(comm.trim_end() == "dnsmasq"
                && !zombie
                && std::fs::read_link(p.join("ns/net")).ok() == ours),
            "a dnsmasq is left running: {}",
            p.display()
        );
    }
}

fn kill_netns_dnsmasqs() {
    let ours = std::fs::read_link("/proc/self/ns/net").ok();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim_end() == "dnsmasq" && std::fs::read_link(p.join("ns/net")).ok() == ours {
            let pid = e.file_name().to_string_lossy().into_owned();
            let _ = Command::new("kill").arg(&pid).status();
        }
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh_ok(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn net(xml: &str) -> Network {
    Network::parse(xml).expect("network xml")
}

fn link_exists(name: &str) -> bool {
    Netlink::open()
        .expect("netlink")
        .link(name)
        .expect("link lookup")
        .is_some()
}

fn table_exists(table: &str) -> bool {
    sh_ok(&format!("nft list table {table}"))
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z'))
}

fn dns_answers(server: Ipv4Addr, name: &str) -> Vec<Ipv4Addr> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match query_a(server, name, Duration::from_millis(500)) {
            Ok(a) => return a,
            Err(e) if Instant::now() > deadline => panic!("no dns answer from {server}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A DHCP client in a second namespace, on a veth whose peer is a port of `bridge`.
struct Client {
    holder: Child,
}

impl Client {
    fn new(bridge: &str, mac: &str, n: u32) -> Client {
        let holder = Command::new("unshare")
            .args(["-n", "sleep", "120"])
            .spawn()
            .expect("unshare");
        let pid = holder.id();
        let ours = std::fs::read_link("/proc/self/ns/net").expect("ns");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .ok()
            .as_ref()
            == Some(&ours)
        {
            assert!(Instant::now() < deadline, "client namespace never appeared");
            std::thread::sleep(Duration::from_millis(5));
        }
        sh(&format!(
            "ip link add vh{n} type veth peer name vc{n} address {mac} && \
             ip link set vh{n} master {bridge} up && ip link set vc{n} netns {pid} && \
             nsenter -t {pid} -n ip link set vc{n} up"
        ));
        Client { holder }
    }

    /// Runs busybox udhcpc until it holds a lease.
    fn dhcp(&self, n: u32) {
        let pid = self.holder.id();
        sh(&format!(
            "nsenter -t {pid} -n busybox udhcpc -i vc{n} -n -q -t 10 -T 1 -s /bin/true"
        ));
    }
}

impl Client {
    /// Runs ISC dhclient for DHCPv6 until it holds a lease (after the interface's
    /// link-local address is usable).
    fn dhcp6(&self, n: u32, dir: &Path) {
        let pid = self.holder.id();
        let d = dir.display();
        sh(&format!(
            "nsenter -t {pid} -n sh -c 'for i in $(seq 50); do ip -6 addr show dev vc{n} scope link | grep -q tentative || break; sleep 0.1; done; \
             timeout 30 dhclient -6 -1 -lf {d}/c6.leases -pf {d}/c6.pid -sf /bin/true vc{n}; \
             kill $(cat {d}/c6.pid) 2>/dev/null; true'"
        ));
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn wait_lease(n: &Network, dir: &Path, mac: &str) -> Vec<nb::Lease> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let l = nb::leases(n, dir, Some(mac)).expect("leases");
        if !l.is_empty() || Instant::now() > deadline {
            return l;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const NAT_XML: &str = "<network><name>natnet</name><forward mode='nat'/>\
    <domain name='example.test'/>\
    <dns><host ip='192.168.100.7'><hostname>web</hostname></host></dns>\
    <mac address='52:54:00:11:22:33'/><mtu size='1400'/>\
    <ip address='192.168.100.1' netmask='255.255.255.0'><dhcp>\
    <range start='192.168.100.100' end='192.168.100.150'/></dhcp></ip>\
    <ip family='ipv6' address='fd00:100::1' prefix='64'/></network>";

#[test]
fn nat_network_start_dns_dhcp_stop() {
    in_netns("nat_network_start_dns_dhcp_stop", || {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = net(NAT_XML);
        let started = nb::start(&n, dir.path()).expect("start");
        assert_eq!(started.bridge, "virbr0");
        assert_eq!(started.table.as_deref(), Some("inet rvirt_natnet"));
        assert!(started.ip_forward);
        let pid = started.dnsmasq_pid.expect("dnsmasq runs");
        assert!(pid_alive(pid));
        assert!(nb::is_running(&n, dir.path()).expect("is_running"));
        // the bridge, with its addresses, MAC and MTU
        let mut nl = Netlink::open().expect("netlink");
        let br = nl.link("virbr0").expect("lookup").expect("bridge exists");
        assert_eq!(br.kind.as_deref(), Some("bridge"));
        assert!(br.up);
        assert_eq!(br.mtu, Some(1400));
        assert_eq!(br.mac, Some(vec![0x52, 0x54, 0, 0x11, 0x22, 0x33]));
        let details = sh("ip -d link show virbr0");
        assert!(
            details.contains("stp_state 1 "),
            "stp on by default: {details}"
        );
        // a second network without a bridge name takes the next free one
        let other = net("<network><name>other</name></network>");
        assert_eq!(
            nb::start(&other, dir.path()).expect("start other").bridge,
            "virbr1"
        );
        nb::stop(&other, dir.path()).expect("stop other");
        let addrs = nl.addrs(br.index).expect("addrs");
        let strs: Vec<String> = addrs.iter().map(|(a, p)| format!("{a}/{p}")).collect();
        assert!(strs.contains(&"192.168.100.1/24".to_string()), "{strs:?}");
        assert!(strs.contains(&"fd00:100::1/64".to_string()), "{strs:?}");
        assert_eq!(sh("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
        // DNS on the bridge address: a host from <dns><host>, with and without the domain
        let server = Ipv4Addr::new(192, 168, 100, 1);
        assert_eq!(
            dns_answers(server, "web"),
            vec![Ipv4Addr::new(192, 168, 100, 7)]
        );
        assert_eq!(
            dns_answers(server, "web.example.test"),
            vec![Ipv4Addr::new(192, 168, 100, 7)]
        );
        // the firewall table
        let rules = sh("nft list table inet rvirt_natnet");
        assert!(rules.contains("masquerade"), "{rules}");
        assert!(rules.contains("ip saddr 192.168.100.0/24"), "{rules}");
        // a DHCP client gets a lease that leases() reports
        let mac = "52:54:00:aa:00:01";
        let c = Client::new("virbr0", mac, 1);
        c.dhcp(1);
        let l = wait_lease(&n, dir.path(), mac);
        assert_eq!(l.len(), 1, "{l:?}");
        let ip = l[0].ip.to_string();
        assert!(ip.starts_with("192.168.100.1"), "{ip}");
        assert_eq!(l[0].prefix, Some(24));
        assert!(l[0].expiry > 0);
        drop(c);
        assert!(
            nb::leases(&n, dir.path(), Some("52:54:00:aa:00:09"))
                .expect("leases")
                .is_empty()
        );
        // stop leaves nothing
        nb::stop(&n, dir.path()).expect("stop");
        assert!(!link_exists("virbr0"));
        assert!(!pid_alive(pid));
        assert!(!table_exists("inet rvirt_natnet"));
        assert!(!nb::is_running(&n, dir.path()).expect("is_running"));
        assert!(!dir.path().join("natnet.state").exists());
        assert!(!dir.path().join("natnet.conf").exists());
        // a second stop says so
        assert_eq!(nb::stop(&n, dir.path()).expect_err("stopped").code(), 55);
    });
}

#[test]
fn isolated_and_route_modes() {
    in_netns("isolated_and_route_modes", || {
        let dir = tempfile::tempdir().expect("tempdir");
        let iso = net(
            "<network><name>iso</name><bridge name='isobr' stp='off' delay='3'/>\
             <ip address='10.10.0.1' prefix='24'/></network>",
        );
        let s = nb::start(&iso, dir.path()).expect("start isolated");
        assert_eq!(s.bridge, "isobr");
        let details = sh("ip -d link show isobr");
        assert!(details.contains("forward_delay 300 "), "{details}");
        assert!(details.contains("stp_state 0 "), "{details}");
        assert!(!s.ip_forward);
        let rules = sh("nft list table inet rvirt_iso");
        assert!(rules.contains("iifname \"isobr\" reject"), "{rules}");
        assert!(!rules.contains("masquerade"), "{rules}");
        // DNS runs without DHCP
        assert!(s.dnsmasq_pid.is_some());
        let route = net(
            "<network><name>rt</name><forward mode='route'/><bridge name='rtbr'/>\
             <dns enable='no'/><ip address='10.11.0.1' prefix='24'/></network>",
        );
        let r = nb::start(&route, dir.path()).expect("start route");
        assert!(r.ip_forward);
        assert_eq!(r.dnsmasq_pid, None, "no dhcp and dns disabled: no dnsmasq");
        let rules = sh("nft list table inet rvirt_rt");
        assert!(rules.contains("ip daddr 10.11.0.0/24 accept"), "{rules}");
        assert!(!rules.contains("masquerade"), "{rules}");
        // open mode: no table at all
        let open = net(
            "<network><name>op</name><forward mode='open'/><bridge name='opbr'/>\
             <ip address='10.12.0.1' prefix='24'/></network>",
        );
        let o = nb::start(&open, dir.path()).expect("start open");
        assert_eq!(o.table, None);
        assert!(!table_exists("inet rvirt_op"));
        for n in [&iso, &route, &open] {
            nb::stop(n, dir.path()).expect("stop");
        }
        for b in ["isobr", "rtbr", "opbr"] {
            assert!(!link_exists(b), "{b} left behind");
        }
        assert!(!table_exists("inet rvirt_iso") && !table_exists("inet rvirt_rt"));
        // other tables are never touched
        sh("nft add table inet keepme");
        let s = nb::start(&iso, dir.path()).expect("start again");
        nb::stop(&iso, dir.path()).expect("stop again");
        assert!(table_exists("inet keepme"));
        assert!(s.dnsmasq_pid.is_some_and(|p| !pid_alive(p)));
    });
}

#[test]
fn update_static_dhcp_and_dns_hosts() {
    in_netns("update_static_dhcp_and_dns_hosts", || {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = "<network><name>upd</name><forward mode='nat'/><bridge name='updbr'/>\
             <ip address='192.168.101.1' prefix='24'><dhcp>\
             <range start='192.168.101.100' end='192.168.101.150'/>%HOSTS%</dhcp></ip>%DNS%</network>";
        let n = net(&base.replace("%HOSTS%", "").replace("%DNS%", ""));
        let s = nb::start(&n, dir.path()).expect("start");
        let server = Ipv4Addr::new(192, 168, 101, 1);
        assert!(dns_answers(server, "db").is_empty());
        let mac = "52:54:00:aa:00:02";
        let updated = net(&base
            .replace(
                "%HOSTS%",
                &format!("<host mac='{mac}' name='fixed' ip='192.168.101.50'/>"),
            )
            .replace(
                "%DNS%",
                "<dns><host ip='192.168.101.9'><hostname>db</hostname></host></dns>",
            ));
        nb::update_dhcp_hosts(&updated, dir.path()).expect("update dhcp");
        nb::update_dns_hosts(&updated, dir.path()).expect("update dns");
        // same dnsmasq, new hosts
        assert!(pid_alive(s.dnsmasq_pid.expect("pid")));
        let deadline = Instant::now() + Duration::from_secs(5);
        while dns_answers(server, "db").is_empty() {
            assert!(Instant::now() < deadline, "dns host update not applied");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            dns_answers(server, "db"),
            vec![Ipv4Addr::new(192, 168, 101, 9)]
        );
        let c = Client::new("updbr", mac, 2);
        c.dhcp(2);
        let l = wait_lease(&updated, dir.path(), mac);
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(l[0].ip.to_string(), "192.168.101.50");
        assert_eq!(l[0].hostname.as_deref(), Some("fixed"));
        drop(c);
        // a dnsmasq that died: not running any more (a restarted daemon would not
        // reattach), and stop still cleans up
        let pid = s.dnsmasq_pid.expect("pid");
        sh(&format!("kill -9 {pid}"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_alive(pid) {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!nb::is_running(&n, dir.path()).expect("is_running"));
        nb::stop(&n, dir.path()).expect("stop");
        assert!(!link_exists("updbr"));
        assert!(!table_exists("inet rvirt_upd"));
    });
}

#[test]
fn tap_plug_unplug() {
    in_netns("tap_plug_unplug", || {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = net(
            "<network><name>tapnet</name><bridge name='tapbr'/><mtu size='1450'/>\
             <ip address='10.20.0.1' prefix='24'/></network>",
        );
        // not running: refused
        let e = nb::plug(&n, dir.path(), &PortSpec::default()).expect_err("not running");
        assert_eq!(e.code(), 55);
        nb::start(&n, dir.path()).expect("start");
        let p = nb::plug(
            &n,
            dir.path(),
            &PortSpec {
                mac: Some("52:54:00:01:02:03".into()),
                ifname: None,
            },
        )
        .expect("plug");
        assert_eq!(p.tap, "vnet0");
        assert_eq!(p.bridge, "tapbr");
        let mut nl = Netlink::open().expect("netlink");
        let br = nl.link("tapbr").expect("lookup").expect("bridge");
        let t = nl.link("vnet0").expect("lookup").expect("tap exists");
        assert_eq!(t.kind.as_deref(), Some("tun"));
        assert_eq!(t.master, Some(br.index));
        assert!(t.up);
        assert_eq!(t.mtu, Some(1450));
        assert_eq!(t.mac, Some(vec![0xfe, 0x54, 0, 1, 2, 3]));
        // a test may read `ip -d` (the library never does): persistent, owned by root
        let details = sh("ip -d link show vnet0");
        assert!(details.contains("tun type tap"), "{details}");
        assert!(details.contains("persist on user root"), "{details}");
        let q = nb::plug(
            &n,
            dir.path(),
            &PortSpec {
                mac: None,
                ifname: Some("guest0".into()),
            },
        )
        .expect("plug named");
        assert_eq!(q.tap, "guest0");
        let e = nb::plug(
            &n,
            dir.path(),
            &PortSpec {
                mac: None,
                ifname: Some("guest0".into()),
            },
        )
        .expect_err("name in use");
        assert!(
            e.to_string().contains("interface 'guest0' already exists"),
            "{e}"
        );
        let r = nb::plug(&n, dir.path(), &PortSpec::default()).expect("plug third");
        assert_eq!(r.tap, "vnet1");
        nb::unplug(&n, dir.path(), "vnet0").expect("unplug");
        assert!(!link_exists("vnet0"));
        assert_eq!(
            nb::unplug(&n, dir.path(), "vnet0")
                .expect_err("twice")
                .code(),
            55
        );
        nb::stop(&n, dir.path()).expect("stop");
        for l in ["tapbr", "guest0", "vnet1"] {
            assert!(!link_exists(l), "{l} left behind");
        }
    });
}

#[test]
fn host_bridge_mode() {
    in_netns("host_bridge_mode", || {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = net(
            "<network><name>hb</name><forward mode='bridge'/><bridge name='hostbr'/></network>",
        );
        let e = nb::start(&n, dir.path()).expect_err("no host bridge");
        assert!(
            e.to_string()
                .contains("host bridge 'hostbr' does not exist"),
            "{e}"
        );
        sh("ip link add hostbr type bridge");
        let s = nb::start(&n, dir.path()).expect("start");
        assert_eq!((s.dnsmasq_pid, s.table.as_deref()), (None, None));
        let p = nb::plug(&n, dir.path(), &PortSpec::default()).expect("plug");
        let mut nl = Netlink::open().expect("netlink");
        let br = nl.link("hostbr").expect("lookup").expect("bridge");
        let t = nl.link(&p.tap).expect("lookup").expect("tap");
        assert_eq!(t.master, Some(br.index));
        nb::stop(&n, dir.path()).expect("stop");
        assert!(link_exists("hostbr"), "the host's bridge stays");
        assert!(!link_exists(&p.tap));
    });
}

#[test]
fn bad_input_and_rollback() {
    in_netns("bad_input_and_rollback", || {
        let dir = tempfile::tempdir().expect("tempdir");
        // a bridge name already in use
        sh("ip link add taken0 type bridge");
        let n = net(
            "<network><name>dup</name><bridge name='taken0'/><ip address='10.30.0.1' prefix='24'/></network>",
        );
        let e = nb::start(&n, dir.path()).expect_err("in use");
        assert!(matches!(e, Error::BridgeInUse { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "network 'dup': network/bridge/@name: bridge 'taken0' is already in use"
        );
        assert!(link_exists("taken0"), "the other bridge stays");
        assert!(!dir.path().join("dup.state").exists());
        // too long
        let e = nb::start(
            &net("<network><name>long</name><bridge name='averyveryverylongname'/></network>"),
            dir.path(),
        )
        .expect_err("too long");
        assert!(e.to_string().contains("network 'long': network/bridge/@name: interface name 'averyveryverylongname' is 21 characters long"), "{e}");
        // a failure after the bridge and the table: dnsmasq's config cannot be written
        let n = net(
            "<network><name>rb</name><forward mode='nat'/><bridge name='rbbr'/>\
             <ip address='10.31.0.1' prefix='24'><dhcp><range start='10.31.0.10' end='10.31.0.20'/></dhcp></ip></network>",
        );
        std::fs::create_dir(dir.path().join("rb.conf")).expect("mkdir");
        std::fs::write(dir.path().join("rb.conf/x"), "x").expect("file");
        let e = nb::start(&n, dir.path()).expect_err("conf unwritable");
        assert!(
            e.to_string().starts_with("network 'rb': cannot rename"),
            "{e}"
        );
        assert!(!link_exists("rbbr"), "bridge rolled back");
        assert!(!table_exists("inet rvirt_rb"), "table rolled back");
        assert!(!dir.path().join("rb.state").exists());
        assert!(!nb::is_running(&n, dir.path()).expect("is_running"));
        // a failure of dnsmasq itself (port 53 taken), after the bridge and the table
        let blocker = std::net::UdpSocket::bind("0.0.0.0:53").expect("bind port 53");
        std::fs::remove_dir_all(dir.path().join("rb.conf")).expect("rm");
        let e = nb::start(&n, dir.path()).expect_err("port 53 taken");
        assert!(
            e.to_string().starts_with("network 'rb': dnsmasq failed: "),
            "{e}"
        );
        println!("dnsmasq failure reported as: {e}");
        assert_eq!(e.code(), 1);
        assert!(!link_exists("rbbr"), "bridge rolled back");
        assert!(!table_exists("inet rvirt_rb"), "table rolled back");
        assert!(!dir.path().join("rb.state").exists());
        assert_no_dnsmasq_in_netns();
        drop(blocker);
        // and once the obstacle is gone it starts
        nb::start(&n, dir.path()).expect("start");
        let e = nb::start(&n, dir.path()).expect_err("twice");
        assert_eq!(e.to_string(), "network 'rb': network is already active");
        nb::stop(&n, dir.path()).expect("stop");
    });
}

/// Definitions whose generated dnsmasq configuration and nft batch the real tools check
/// (`dnsmasq --test`, `nft -c`): every option spelling and rule this backend writes.
const CHECKED: &[&str] = &[
    NAT_XML,
    "<network><name>v6</name><forward mode='nat'><nat ipv6='yes'/></forward>\
     <domain name='lab' localOnly='yes'/>\
     <dns forwardPlainNames='no'><forwarder addr='192.0.2.53'/><forwarder domain='corp' addr='192.0.2.54'/>\
     <forwarder domain='local.lab'/></dns>\
     <ip address='10.40.0.1' prefix='24'><dhcp><range start='10.40.0.10' end='10.40.0.20'>\
     <lease expiry='0'/></range><host mac='52:54:00:00:00:05' name='h5' ip='10.40.0.5'/>\
     <bootp file='pxelinux.0' server='10.40.0.2'/></dhcp></ip>\
     <ip family='ipv6' address='fd00:40::1' prefix='64'><dhcp><range start='fd00:40::10' end='fd00:40::ff'>\
     <lease expiry='2' unit='hours'/></range><host id='0:4:7e:7d:f0:7d:a8:bc:c5:d2:13:32:11:ed:16:ea:84:63' name='six' ip='fd00:40::5'/></dhcp></ip></network>",
    "<network><name>static</name><forward mode='route' dev='eth0'/>\
     <ip address='10.41.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:06' ip='10.41.0.6'/></dhcp></ip>\
     <ip family='ipv6' address='fd00:41::1' prefix='64'/></network>",
    "<network><name>nodns</name><dns enable='no'/><ip address='10.42.0.1' prefix='24'><dhcp>\
     <range start='10.42.0.10' end='10.42.0.20'/></dhcp></ip></network>",
];

#[test]
fn generated_config_passes_the_tools_checks() {
    in_netns("generated_config_passes_the_tools_checks", || {
        let dir = tempfile::tempdir().expect("tempdir");
        for xml in CHECKED {
            let n = net(xml);
            let conf = nb::dnsmasq_config(&n, "virbr9", dir.path()).expect("config");
            let path = dir.path().join("check.conf");
            std::fs::write(&path, &conf).expect("write");
            let out = Command::new("dnsmasq")
                .arg("--test")
                .arg(format!("--conf-file={}", path.display()))
                .output()
                .expect("dnsmasq (package dnsmasq-base) is needed");
            assert!(
                out.status.success(),
                "dnsmasq refuses the config of {}: {}\n{conf}",
                n.name(),
                String::from_utf8_lossy(&out.stderr)
            );
            if let Some(rules) = nb::nft_ruleset(&n, "virbr9").expect("rules") {
                let path = dir.path().join("check.nft");
                std::fs::write(&path, &rules).expect("write");
                let out = Command::new("nft")
                    .arg("-c")
                    .arg("-f")
                    .arg(&path)
                    .output()
                    .expect("nft (package nftables) is needed");
                assert!(
                    out.status.success(),
                    "nft refuses the rules of {}: {}\n{rules}",
                    n.name(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    });
}

#[test]
fn ipv6_dhcp_and_nat6_network_runs() {
    in_netns("ipv6_dhcp_and_nat6_network_runs", || {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = net(CHECKED[1]);
        let s = nb::start(&n, dir.path()).expect("start");
        let pid = s.dnsmasq_pid.expect("dnsmasq");
        assert!(pid_alive(pid));
        assert_eq!(sh("cat /proc/sys/net/ipv6/conf/all/forwarding").trim(), "1");
        let rules = sh("nft list table inet rvirt_v6");
        assert!(
            rules.contains("ip6 saddr fd00:40::/64 ip6 daddr != fd00:40::/64 masquerade"),
            "{rules}"
        );
        // dnsmasq listens on the IPv6 address (DNS over UDP, port 53)
        let sock = std::net::UdpSocket::bind("[::]:0").expect("bind");
        sock.connect("[fd00:40::1]:53").expect("connect");
        let mut q = vec![
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'x', 0, 0, 1, 0, 1,
        ];
        sock.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        sock.send(&q).expect("send");
        q.resize(512, 0);
        let got = sock.recv(&mut q).expect("dns answer over IPv6");
        assert!(got >= 12 && q[0] == 0x12 && q[1] == 0x34);
        nb::stop(&n, dir.path()).expect("stop");
        assert!(!pid_alive(pid));
        assert!(!table_exists("inet rvirt_v6"));
    });
}

#[test]
fn dhcpv6_leases_are_reported_with_duid_and_iaid() {
    let found = Command::new("dhclient").arg("--version").output();
    assert!(
        found.is_ok(),
        "\n\n!!! dhclient (package isc-dhcp-client) is not installed: the DHCPv6 lease test cannot run.\n!!! apt-get install -y isc-dhcp-client\n"
    );
    in_netns("dhcpv6_leases_are_reported_with_duid_and_iaid", || {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = net("<network><name>d6</name><bridge name='rvd6'/>\
             <ip family='ipv6' address='fd00:46::1' prefix='64'><dhcp>\
             <range start='fd00:46::10' end='fd00:46::ff'/></dhcp></ip></network>");
        nb::start(&n, dir.path()).expect("start");
        let c = Client::new("rvd6", "52:54:00:46:00:01", 6);
        c.dhcp6(6, dir.path());
        let deadline = Instant::now() + Duration::from_secs(10);
        let leases = loop {
            let l = nb::leases(&n, dir.path(), None).expect("leases");
            if !l.is_empty() || Instant::now() > deadline {
                break l;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let client_leases = sh(&format!("cat {}/c6.leases", dir.path().display()));
        assert_eq!(leases.len(), 1, "{leases:?}; client: {client_leases}");
        let l = &leases[0];
        let IpAddr::V6(a) = l.ip else {
            panic!("an IPv6 lease: {l:?}")
        };
        let seg = a.segments();
        assert!(
            seg[..4] == [0xfd00, 0x46, 0, 0]
                && (0x10..=0xff).contains(&seg[7])
                && seg[4..7] == [0, 0, 0],
            "in the range: {a}"
        );
        assert_eq!(l.prefix, Some(64), "{l:?}");
        assert!(
            l.client_id.as_deref().is_some_and(|d| d.contains(':')),
            "the DUID: {l:?}"
        );
        assert!(l.iaid.is_some(), "the IAID: {l:?}");
        assert!(
            client_leases.contains(&a.to_string()),
            "the client holds the address the network reports: {client_leases}"
        );
        drop(c);
        nb::stop(&n, dir.path()).expect("stop");
    });
}

/// Runs the test in a fresh network namespace and a mount namespace where
/// `/usr/sbin/dnsmasq` is `/dev/null` (what a host without `dnsmasq-base` looks like to
/// the program lookup).
fn in_netns_without_dnsmasq(test: &str, body: impl FnOnce()) {
    if std::env::var_os(CHILD_ENV).is_some() {
        in_netns(test, body);
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("unshare")
        .args(["-n", "-m", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount --bind /dev/null /usr/sbin/dnsmasq && exec \"$0\" --exact \"$1\" --nocapture --test-threads=1")
        .arg(&exe)
        .arg(test)
        .env(CHILD_ENV, "1")
        .output()
        .expect("cannot run unshare (util-linux): these tests need it and root");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- {test} without dnsmasq ---\n{stdout}\n{stderr}");
    assert!(out.status.success(), "{test} failed ({})", out.status);
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in its namespaces"
    );
}

#[test]
fn a_missing_dnsmasq_is_named_with_its_package_and_nothing_is_left() {
    in_netns_without_dnsmasq(
        "a_missing_dnsmasq_is_named_with_its_package_and_nothing_is_left",
        || {
            assert!(
                nb::dnsmasq::find_program("dnsmasq").is_none(),
                "dnsmasq hidden"
            );
            let n = net(
                "<network><name>nodns</name><forward mode='nat'/><bridge name='rvnd0'/>\
             <ip address='10.93.0.1' netmask='255.255.255.0'>\
             <dhcp><range start='10.93.0.10' end='10.93.0.20'/></dhcp></ip></network>",
            );
            let dir = tempfile::tempdir().expect("tempdir");
            let e = nb::start(&n, dir.path()).expect_err("no dnsmasq");
            let msg = e.full_message();
            assert!(
                msg.contains("dnsmasq") && msg.contains("dnsmasq-base"),
                "{msg}"
            );
            assert!(!link_exists("rvnd0"), "the bridge was rolled back");
            assert!(
                !table_exists("inet rvirt_nodns"),
                "the table was rolled back"
            );
        },
    );
}

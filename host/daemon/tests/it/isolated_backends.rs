//! Storage and network plugins in plugin host processes (rvirtd's default isolation):
//! the daemon keeps the pools and networks and forwards each backend call to the
//! plugin's process over the backend-call channel. Through unmodified virsh: a `dir`
//! pool works end to end (streams too) with the storage-dir plugin never loaded into the
//! daemon; a crash of its process fails the call in flight naming the plugin, the next
//! call is served by a new process and the pool is intact; a bridge network keeps its
//! bridge and dnsmasq across a reload of the network-bridge plugin and a daemon restart.

use super::{Daemon, alive, missing, plugin_hosts_with_cmdlines};
use crate::{virsh, virsh_ok as ok};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tools_missing() -> bool {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        bin_dir.join("librvirt_storage_dir.so").is_file(),
        "the storage-dir plugin is missing next to rvirtd: run `cargo build --workspace` first"
    );
    missing("virsh", Command::new("virsh").arg("--version"))
}

fn system_uri(d: &Daemon) -> String {
    format!("qemu+unix:///system?socket={}", d.socket().display())
}

fn plugin_pid(d: &Daemon, name: &str) -> Option<u32> {
    d.plugin_entry(name)["pid"].as_u64().map(|p| p as u32)
}

/// Whether process `pid` has the file `lib` mapped.
fn maps(pid: u32, lib: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .contains(lib)
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A dir pool `p` defined, built and started under the daemon's root; its target.
fn dir_pool(uri: &str, root: &Path) -> PathBuf {
    let target = root.join("pools/p");
    ok(
        uri,
        &[
            "pool-define-as",
            "p",
            "dir",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    ok(uri, &["pool-build", "p"]);
    ok(uri, &["pool-start", "p"]);
    target
}

fn upload_and_download(uri: &str, root: &Path, vol: &str, seed: u64) {
    let data = random_bytes(3 * 1024 * 1024 + 17, seed);
    let src = root.join(format!("{vol}.src"));
    std::fs::write(&src, &data).unwrap();
    ok(
        uri,
        &["vol-upload", vol, src.to_str().unwrap(), "--pool", "p"],
    );
    let back = root.join(format!("{vol}.back"));
    ok(
        uri,
        &["vol-download", vol, back.to_str().unwrap(), "--pool", "p"],
    );
    let got = std::fs::read(&back).unwrap();
    assert_eq!(got.len(), 4 * 1024 * 1024, "the whole volume comes back");
    assert!(got[..data.len()] == data[..], "the bytes round-trip");
    assert!(got[data.len()..].iter().all(|b| *b == 0));
}

#[test]
fn a_dir_pool_is_served_by_the_storage_plugins_own_process() {
    if tools_missing() {
        return;
    }
    let d = Daemon::start();
    let uri = system_uri(&d);
    let root = d.root.path();
    let target = dir_pool(&uri, root);
    let info = ok(&uri, &["pool-info", "p"]);
    assert!(info.contains("running"), "{info}");
    ok(
        &uri,
        &["vol-create-as", "p", "a.raw", "4M", "--format", "raw"],
    );
    ok(
        &uri,
        &["vol-create-as", "p", "b.qcow2", "8M", "--format", "qcow2"],
    );
    upload_and_download(&uri, root, "a.raw", 1);
    // a file made behind the daemon's back appears on refresh
    std::fs::write(target.join("c.img"), vec![0u8; 65536]).unwrap();
    ok(&uri, &["pool-refresh", "p"]);
    let list = ok(&uri, &["vol-list", "p"]);
    for v in ["a.raw", "b.qcow2", "c.img"] {
        assert!(list.contains(v), "{list}");
    }
    let vi = ok(&uri, &["vol-info", "b.qcow2", "--pool", "p"]);
    assert!(vi.contains("8.00 MiB"), "{vi}");

    // the plugin runs in a process of its own, and only there
    let e = d.plugin_entry("storage-dir");
    assert_eq!(e["isolation"], "process", "{e}");
    assert_eq!(e["pool_types"], serde_json::json!(["dir"]), "{e}");
    let pid = e["pid"].as_u64().unwrap() as u32;
    assert_ne!(pid, d.pid());
    assert!(maps(pid, "librvirt_storage_dir.so"));
    // and the test driver's in-process storage is the daemon's
    assert_eq!(d.plugin_entry("test")["isolation"], "in-process");

    // `isolation = "in-process"` loads it into the daemon, as before
    let d2 = Daemon::start_with_config("[plugins.storage-dir]\nisolation = \"in-process\"\n");
    let uri2 = system_uri(&d2);
    dir_pool(&uri2, d2.root.path());
    let e = d2.plugin_entry("storage-dir");
    assert_eq!(e["isolation"], "in-process", "{e}");
    assert_eq!(e["pid"], d2.pid(), "{e}");
    assert!(ok(&uri2, &["pool-info", "p"]).contains("running"));
}

/// Waits until `name`'s process is another than `old`; returns the new pid.
fn new_pid(d: &Daemon, name: &str, old: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(p) = plugin_pid(d, name)
            && p != old
            && alive(p)
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no new process for {name} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_crashing_storage_plugin_fails_the_call_in_flight_and_the_next_call_gets_a_new_process() {
    if tools_missing() {
        return;
    }
    let d = Daemon::start_logged_with_config("");
    let uri = system_uri(&d);
    let root = d.root.path();
    dir_pool(&uri, root);
    ok(
        &uri,
        &["vol-create-as", "p", "a.raw", "4M", "--format", "raw"],
    );
    upload_and_download(&uri, root, "a.raw", 2);
    let test_uri = d.uri();
    let first = plugin_pid(&d, "storage-dir").unwrap();

    // killed between calls: the next call is served by a new process
    segv(first);
    let second = new_pid(&d, "storage-dir", first);
    ok(&uri, &["pool-refresh", "p"]);
    assert!(ok(&uri, &["vol-list", "p"]).contains("a.raw"));
    assert!(
        d.log()
            .contains("killed by signal 11 (SIGSEGV); restarting it"),
        "{}",
        d.log()
    );

    // killed while an upload stream is open: virsh's upload fails naming the plugin
    let fifo = root.join("upload.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let upload = Command::new("virsh")
        .args(["-c", &uri, "vol-upload", "a.raw"])
        .arg(&fifo)
        .args(["--pool", "p"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    w.write_all(&random_bytes(1024 * 1024, 3)).unwrap();
    // the stream is open in the plugin's process (the volume is busy)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = virsh(&uri, &["vol-delete", "a.raw", "--pool", "p"]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "the volume is in use");
        if e.contains("in use by a stream") {
            break;
        }
        assert!(Instant::now() < deadline, "{e}");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    segv(second);
    // the next chunk reaches the dead process
    let _ = w.write_all(&random_bytes(1024 * 1024, 4));
    drop(w);
    let out = upload.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the upload failed");
    assert!(
        err.contains("plugin 'storage-dir' failed during virStorageVolUpload")
            && err.contains("killed by signal 11 (SIGSEGV)")
            && err.contains("the plugin is being restarted, retry the call"),
        "virsh names the plugin and how it died: {err}"
    );
    assert!(alive(d.pid()), "the daemon survived");
    // the test driver's connection never noticed
    assert!(ok(&test_uri, &["list", "--all"]).contains("test"));

    // the next calls are served by a new process; the pool and its volumes are intact
    let third = new_pid(&d, "storage-dir", second);
    assert_ne!(third, first);
    let info = ok(&uri, &["pool-info", "p"]);
    assert!(info.contains("running"), "{info}");
    assert!(ok(&uri, &["vol-list", "p"]).contains("a.raw"));
    upload_and_download(&uri, root, "a.raw", 5);
    assert_eq!(plugin_pid(&d, "storage-dir"), Some(third));
    let e = d.plugin_entry("storage-dir");
    assert_eq!(e["restarts"], 2, "{e}");
    assert!(
        e["last_death"]
            .as_str()
            .is_some_and(|s| s.contains("SIGSEGV")),
        "{e}"
    );
}

#[test]
fn a_hung_storage_plugin_times_out_and_is_replaced() {
    if tools_missing() {
        return;
    }
    let d = Daemon::start_with_config("[plugins.storage-dir]\ncall_timeout_ms = 1500\n");
    let uri = system_uri(&d);
    dir_pool(&uri, d.root.path());
    let hung = plugin_pid(&d, "storage-dir").unwrap();
    rustix_kill(hung, "STOP");
    let t0 = Instant::now();
    let o = virsh(&uri, &["pool-refresh", "p"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the refresh timed out");
    assert!(
        err.contains("plugin 'storage-dir' did not answer virStoragePoolRefresh within 1500 ms")
            && err.contains("was killed and is being replaced"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let next = new_pid(&d, "storage-dir", hung);
    assert!(
        !alive(hung) || {
            std::thread::sleep(Duration::from_millis(500));
            !alive(hung)
        }
    );
    ok(&uri, &["pool-refresh", "p"]);
    assert!(ok(&uri, &["pool-info", "p"]).contains("running"));
    assert_eq!(plugin_pid(&d, "storage-dir"), Some(next));
}

#[test]
fn a_storage_plugin_killed_during_a_call_fails_that_call_only() {
    if tools_missing() {
        return;
    }
    let d = Daemon::start();
    let uri = system_uri(&d);
    dir_pool(&uri, d.root.path());
    ok(&uri, &["vol-create-as", "p", "a.raw", "1M"]);
    let pid = plugin_pid(&d, "storage-dir").unwrap();
    // stopped, the process holds the next call; killed, it fails that call
    rustix_kill(pid, "STOP");
    let refresh = Command::new("virsh")
        .args(["-c", &uri, "pool-refresh", "p"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    rustix_kill(pid, "KILL");
    let out = refresh.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "plugin 'storage-dir' failed during virStoragePoolRefresh: its process {pid} was killed by signal 9 (SIGKILL); the plugin is being restarted, retry the call"
        )),
        "{err}"
    );
    new_pid(&d, "storage-dir", pid);
    ok(&uri, &["pool-refresh", "p"]);
    assert!(ok(&uri, &["vol-list", "p"]).contains("a.raw"));
}

#[test]
fn a_hypervisor_plugin_with_storage_and_network_facets_is_one_process() {
    if tools_missing() {
        return;
    }
    // the test plugin: the test:// driver, pool type `mock` (for embedders: no libvirt
    // pool XML names it) and the networks of test:///default (forward mode `test`)
    let d = Daemon::start_with_config("[plugins.test]\nisolation = \"process\"\n");
    let uri = d.uri();
    assert!(ok(&uri, &["domstate", "test"]).contains("running"));
    let net = d.root.path().join("tn.xml");
    std::fs::write(
        &net,
        "<network><name>tn</name><ip address='10.79.0.1' netmask='255.255.255.0'/></network>",
    )
    .unwrap();
    // started by the plugin's network backend, in the plugin's process
    ok(&uri, &["net-create", net.to_str().unwrap()]);
    assert!(ok(&uri, &["net-list"]).contains("tn"));
    ok(&uri, &["net-destroy", "tn"]);
    let e = d.plugin_entry("test");
    assert_eq!(e["isolation"], "process", "{e}");
    assert_eq!(e["pool_types"], serde_json::json!(["mock"]), "{e}");
    assert_eq!(e["forward_modes"], serde_json::json!(["test"]), "{e}");
    let pid = e["pid"].as_u64().unwrap() as u32;
    let hosts = plugin_hosts_with_cmdlines(d.pid());
    let test: Vec<_> = hosts
        .iter()
        .filter(|(_, cmd)| cmd.contains("librvirt_plugin_test"))
        .collect();
    assert_eq!(test.len(), 1, "one process serves the plugin: {hosts:?}");
    assert_eq!(test[0].0, pid);
    assert!(
        test[0].1.contains("--uri test:///default") && test[0].1.contains("--backend-socket"),
        "{}",
        test[0].1
    );
}

/// SIGSEGV sent to `pid` until it dies: the Rust runtime's handler (stack overflow
/// detection) takes the first one that no fault caused and restores the default.
fn segv(pid: u32) {
    for _ in 0..20 {
        let _ = Command::new("kill")
            .arg("-SEGV")
            .arg(pid.to_string())
            .status();
        std::thread::sleep(Duration::from_millis(50));
        if !alive(pid) {
            return;
        }
    }
    panic!("process {pid} survived SIGSEGV");
}

fn rustix_kill(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success()
    );
}

const BRIDGE_TEST: &str = "isolated_backends::a_bridge_network_keeps_its_bridge_and_dnsmasq_across_a_plugin_reload_and_a_daemon_restart";

/// The pid of the dnsmasq serving network `net` of the daemon rooted at `root`.
fn dnsmasq_pid(root: &Path, net: &str) -> Option<u32> {
    let pidfile = format!("{}/run/rvirt/networks/{net}.run/{net}.pid", root.display());
    let pid: u32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dnsmasq").then_some(pid)
}

#[test]
fn a_bridge_network_keeps_its_bridge_and_dnsmasq_across_a_plugin_reload_and_a_daemon_restart() {
    use super::bridge_networks::{Reap, sh};
    if missing("virsh", Command::new("virsh").arg("--version"))
        || missing("dnsmasq", Command::new("dnsmasq").arg("--version"))
        || missing("nft", Command::new("nft").arg("--version"))
    {
        return;
    }
    if rvirt_tests::rerun_in_netns(BRIDGE_TEST) {
        return;
    }
    assert!(sh("ip", &["link", "set", "lo", "up"]).0);
    let mut d = Daemon::start();
    let root = d.root.path().to_path_buf();
    let _reap = Reap(root.clone());
    let uri = system_uri(&d);
    let xml = "<network><name>isonat</name><forward mode='nat'/>\
               <ip address='10.74.0.1' netmask='255.255.255.0'>\
               <dhcp><range start='10.74.0.100' end='10.74.0.200'/></dhcp></ip></network>";
    let f = root.join("isonat.xml");
    std::fs::write(&f, xml).unwrap();
    ok(&uri, &["net-define", f.to_str().unwrap()]);
    ok(&uri, &["net-start", "isonat"]);
    let bridge_up = || sh("ip", &["-br", "addr", "show", "virbr0"]);
    let (up, a) = bridge_up();
    assert!(up && a.contains("10.74.0.1/24"), "{a}");
    let dnsmasq = dnsmasq_pid(&root, "isonat").expect("dnsmasq runs");
    let e = d.plugin_entry("network-bridge");
    assert_eq!(e["isolation"], "process", "{e}");
    let host = e["pid"].as_u64().unwrap() as u32;
    assert_ne!(host, d.pid());

    // a live reload: a new process serves, the network keeps running
    let o = Command::new(rvirt_tests::built("rvirt"))
        .args(["plugin", "reload", "network-bridge", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let reloaded = new_pid(&d, "network-bridge", host);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(host) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(host), "the old plugin process was stopped");
    assert_eq!(dnsmasq_pid(&root, "isonat"), Some(dnsmasq), "dnsmasq kept");
    assert!(bridge_up().0, "the bridge kept");
    // the new process serves the network's calls (a port, a lease query)
    assert!(ok(&uri, &["net-info", "isonat"]).contains("yes"));
    ok(&uri, &["net-dhcp-leases", "isonat"]);

    // a crash of the plugin's process leaves the network running too
    rustix_kill(reloaded, "KILL");
    let restarted = new_pid(&d, "network-bridge", reloaded);
    assert_eq!(dnsmasq_pid(&root, "isonat"), Some(dnsmasq));
    assert!(bridge_up().0);

    // a restarted daemon finds the network running (check_network in a new plugin
    // process) and keeps the same dnsmasq
    d.restart();
    let uri = system_uri(&d);
    let list = ok(&uri, &["net-list", "--all"]);
    assert!(
        list.lines()
            .any(|l| l.contains("isonat") && l.contains("active")),
        "{list}"
    );
    assert_eq!(dnsmasq_pid(&root, "isonat"), Some(dnsmasq));
    let after = plugin_pid(&d, "network-bridge").unwrap();
    assert_ne!(after, restarted);

    // and stops it through the new process: nothing left
    ok(&uri, &["net-destroy", "isonat"]);
    assert!(!bridge_up().0, "bridge removed");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(dnsmasq) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(dnsmasq), "dnsmasq stopped");
}

//! Crash-isolated plugins (`isolation = "process"`): the test driver runs in a plugin
//! host process of its own, and its fault injection (`test:///default?faults=crash`:
//! looking up the domain `segv`, `abort` or `hang`) kills or hangs that process. Through
//! unmodified virsh and python-libvirt: the call fails naming the plugin and how its
//! process died, the daemon stays up, the next call (on the same connection too)
//! succeeds, events resume, and another plugin's connection sees nothing.

use super::{Daemon, alive, missing, plugin_hosts};
use crate::virsh;
use std::process::Command;
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

const CONFIG: &str = r#"
uris = ["test:///default", "test:///default?faults=crash", "qemu:///system"]
[plugins.test]
isolation = "process"
call_timeout_ms = 1500
[plugins.qemu]
isolation = "in-process"
"#;

fn faulty_uri(d: &Daemon) -> String {
    format!(
        "test+unix:///default?faults=crash&socket={}",
        d.socket().display()
    )
}

fn crash_and_recover(fault: &str, expect: &[&str]) {
    if missing("virsh", Command::new("virsh").arg("--version")) {
        return;
    }
    let d = Daemon::start_logged_with_config(CONFIG);
    let uri = faulty_uri(&d);
    // first use starts the plugin's process
    let o = virsh(&uri, &["domstate", "test"]);
    assert!(o.status.success(), "{o:?}");
    let hosts = plugin_hosts(d.pid());
    assert_eq!(hosts.len(), 1, "one plugin host process: {hosts:?}");

    let t0 = Instant::now();
    let o = virsh(&uri, &["domstate", fault]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "the faulty call failed");
    // virsh prints its own line for a failed lookup (python-libvirt sees the daemon's
    // error, below); the daemon logs how the plugin's process ended
    assert!(
        err.contains(&format!("failed to get domain '{fault}'")),
        "{err}"
    );
    let log = d.log_with(expect);
    for e in expect {
        assert!(log.contains(e), "the daemon log names {e:?}: {log}");
    }
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the error came in {:?}",
        t0.elapsed()
    );
    assert!(alive(d.pid()), "the daemon survived the plugin's {fault}");
    assert!(!alive(hosts[0]), "the faulty plugin process is gone");
    // the next call is served by a new process
    let o = virsh(&uri, &["domstate", "test"]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("running"),
        "the next call succeeded: {o:?}"
    );
    let after = plugin_hosts(d.pid());
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after[0], hosts[0], "a new plugin process serves");
}

#[test]
fn a_segfaulting_plugin_fails_the_call_and_is_restarted() {
    crash_and_recover(
        "segv",
        &[
            "killed by signal 11 (SIGSEGV); restarting it",
            "plugin=\"test\"",
        ],
    );
}

#[test]
fn an_aborting_plugin_fails_the_call_and_is_restarted() {
    crash_and_recover(
        "abort",
        &[
            "killed by signal 6 (SIGABRT); restarting it",
            "plugin=\"test\"",
        ],
    );
}

#[test]
fn a_hung_plugin_times_out_and_is_replaced() {
    crash_and_recover(
        "hang",
        &[
            "virDomainLookupByName did not return within the call deadline: killing the plugin process",
            "killed by signal 9 (SIGKILL); restarting it",
        ],
    );
}

/// One python-libvirt process holds a connection to the isolated test driver and one to
/// the (in-process) QEMU driver across crashes: the test connection's next call and its
/// event subscription work again, the QEMU connection never notices.
const SCRIPT: &str = r#"
import sys, threading, time, libvirt
libvirt.virEventRegisterDefaultImpl()
def loop():
    while True:
        libvirt.virEventRunDefaultImpl()
threading.Thread(target=loop, daemon=True).start()
test = libvirt.open(sys.argv[1])
qemu = libvirt.open(sys.argv[2])
events = []
def on_lifecycle(c, dom, event, detail, opaque):
    events.append((dom.name(), event))
test.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None)
qemu_domains = len(qemu.listAllDomains())
for fault, signal in (("segv", "SIGSEGV"), ("abort", "SIGABRT"),
                      ("hang", "did not answer virDomainLookupByName within 1500 ms")):
    try:
        test.lookupByName(fault)
        raise SystemExit("the %s lookup succeeded" % fault)
    except libvirt.libvirtError as e:
        assert "plugin 'test'" in str(e) and signal in str(e), str(e)
        if fault != "hang":
            assert "being restarted, retry the call" in str(e), str(e)
    # the same connection: the next call reaches the new process
    assert test.lookupByName("test").state()[0] == libvirt.VIR_DOMAIN_RUNNING
    # the other plugin's connection saw nothing
    assert len(qemu.listAllDomains()) == qemu_domains
    assert qemu.getType() == "QEMU", qemu.getType()
    # events come again, from the new process
    name = "after-" + fault
    xml = "<domain type='test'><name>%s</name><memory>8192</memory><os><type>hvm</type></os></domain>" % name
    test.defineXML(xml)
    deadline = time.time() + 10
    while time.time() < deadline and (name, libvirt.VIR_DOMAIN_EVENT_DEFINED) not in events:
        time.sleep(0.05)
    assert (name, libvirt.VIR_DOMAIN_EVENT_DEFINED) in events, events
print("OK")
"#;

#[test]
fn connections_and_events_survive_a_plugin_crash_and_other_plugins_never_notice() {
    if missing(
        "python3-libvirt",
        Command::new(PYTHON).args(["-c", "import libvirt"]),
    ) {
        return;
    }
    let d = Daemon::start_with_config(CONFIG);
    let qemu = format!("qemu+unix:///system?socket={}", d.socket().display());
    let out = Command::new(PYTHON)
        .args(["-c", SCRIPT, &faulty_uri(&d), &qemu])
        .output()
        .expect("cannot run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "python-libvirt script failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(alive(d.pid()));
}

#[test]
fn plugin_list_and_reload_through_the_daemon() {
    if missing("virsh", Command::new("virsh").arg("--version")) {
        return;
    }
    let d = Daemon::start_with_config(CONFIG);
    let uri = faulty_uri(&d);
    assert!(virsh(&uri, &["domstate", "test"]).status.success());
    let rvirt = rvirt_tests::built("rvirt");
    let root = d.root.path().to_str().unwrap();
    let list = |_: ()| -> serde_json::Value {
        let o = Command::new(&rvirt)
            .args(["--json", "plugin", "list", "--root", root])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let find = |v: &serde_json::Value, name: &str| -> serde_json::Value {
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no plugin {name} in {v}"))
    };
    let v = list(());
    let test = find(&v, "test");
    assert_eq!(test["isolation"], "process", "{test}");
    assert_eq!(test["restarts"], 0, "{test}");
    let pid = test["pid"].as_u64().unwrap() as u32;
    assert_eq!(plugin_hosts(d.pid()), vec![pid]);
    assert_eq!(test["version"], env!("CARGO_PKG_VERSION"), "{test}");
    assert!(
        test["api_version"]
            .as_str()
            .is_some_and(|a| a.starts_with("1."))
    );
    let qemu = find(&v, "qemu");
    assert_eq!(qemu["isolation"], "in-process", "{qemu}");
    assert_eq!(qemu["pid"], d.pid(), "{qemu}");

    // a crash counts as a restart
    assert!(!virsh(&uri, &["domstate", "segv"]).status.success());
    assert!(virsh(&uri, &["domstate", "test"]).status.success());
    let test = find(&list(()), "test");
    assert_eq!(test["restarts"], 1, "{test}");
    assert!(
        test["last_death"]
            .as_str()
            .is_some_and(|s| s.contains("SIGSEGV")),
        "{test}"
    );
    let pid = test["pid"].as_u64().unwrap() as u32;

    // reload: a new process serves, the old one is stopped
    let o = Command::new(&rvirt)
        .args(["plugin", "reload", "test", "--root", root])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let test = find(&list(()), "test");
    let new_pid = test["pid"].as_u64().unwrap() as u32;
    assert_ne!(new_pid, pid);
    assert!(virsh(&uri, &["domstate", "test"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the old plugin process was stopped");
    assert_eq!(plugin_hosts(d.pid()), vec![new_pid]);

    // an in-process plugin cannot be reloaded, and says why
    let o = Command::new(&rvirt)
        .args(["plugin", "reload", "qemu", "--root", root])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not run in a process of its own"),
        "{o:?}"
    );
}

/// The processes whose command line mentions `needle` (the QEMU of a test's root).
fn pids_with(needle: &str, program: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains(needle) && cmd.split('\0').next().is_some_and(|a| a.contains(program)) {
            pids.push(pid);
        }
    }
    pids
}

/// Live upgrade: a TCG guest runs under the QEMU plugin in its own process; the plugin
/// file is replaced by a build reporting another version and `rvirt plugin reload qemu`
/// switches to it. The same QEMU process keeps running, virsh still manages the guest,
/// lifecycle events still arrive, and `rvirt plugin list` shows the new version.
#[test]
fn live_upgrade_of_the_qemu_plugin_keeps_the_guest_running() {
    use super::EventWatch;
    use super::qemu::{guest_xml, ok, state, tools_missing, wait_for};
    if tools_missing() {
        return;
    }
    let bin_dir = std::path::PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    let built = bin_dir.join("librvirt_plugin_qemu.so");
    assert!(built.is_file(), "run `cargo build --workspace` first");
    // the new version: the same plugin built with another reported version, in a target
    // directory of its own (kept between runs, so only the first run compiles it)
    let new_version = "0.1.1-upgrade";
    let fixture_target = bin_dir.parent().unwrap().join("upgrade-fixture");
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let st = Command::new(env!("CARGO"))
        .current_dir(&workspace)
        .args(["build", "-p", "rvirt-plugin-qemu", "--target-dir"])
        .arg(&fixture_target)
        .env("RVIRT_QEMU_PLUGIN_VERSION", new_version)
        .status()
        .expect("cannot run cargo");
    assert!(st.success(), "cannot build the upgraded qemu plugin");
    let upgraded = fixture_target.join("debug/librvirt_plugin_qemu.so");

    let plugins = tempfile::tempdir().unwrap();
    let file = plugins.path().join("librvirt_plugin_qemu.so");
    std::fs::copy(&built, &file).unwrap();
    let d = Daemon::start_logged_with_plugins(
        "[plugins.qemu]\nisolation = \"process\"\n",
        plugins.path(),
    );
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let root = d.root.path().to_path_buf();
    let g = rvirt_tests::guest();
    let disk = root.join("disk.raw");
    std::fs::copy(g.join("disk.raw"), &disk).unwrap();
    let serial = root.join("serial.log");
    let xml = root.join("vup.xml");
    std::fs::write(&xml, guest_xml("vup", &g, &serial, &disk, "raw")).unwrap();
    ok(&uri, &["define", xml.to_str().unwrap()]);
    ok(&uri, &["start", "vup"]);
    let log = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    wait_for("GUEST-READY", Duration::from_secs(90), || {
        log().contains("GUEST-READY")
    });
    let qemu = pids_with(root.to_str().unwrap(), "qemu-system");
    assert_eq!(qemu.len(), 1, "one QEMU for the guest: {qemu:?}");
    let hosts = plugin_hosts(d.pid());
    assert_eq!(hosts.len(), 1, "the qemu plugin runs in its own process");

    let rvirt = rvirt_tests::built("rvirt");
    let list = || -> serde_json::Value {
        let o = Command::new(&rvirt)
            .args(["--json", "plugin", "list", "--root", root.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "qemu")
            .cloned()
            .unwrap()
    };
    let before = list();
    assert_eq!(before["version"], env!("CARGO_PKG_VERSION"), "{before}");
    assert_eq!(before["isolation"], "process", "{before}");

    let events = EventWatch::spawn(
        "virsh",
        &["-c", &uri, "event", "vup", "--event", "lifecycle", "--loop"],
    );
    events.ready("for domain 'vup': Suspended", |_| {
        ok(&uri, &["suspend", "vup"]);
        ok(&uri, &["resume", "vup"]);
    });

    // replace the file as `rvirt plugin upgrade` does (one rename), then reload
    let tmp = plugins.path().join(".librvirt_plugin_qemu.so.new");
    std::fs::copy(&upgraded, &tmp).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let o = Command::new(&rvirt)
        .args(["plugin", "reload", "qemu", "--root", root.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(new_version),
        "{o:?}"
    );

    let after = list();
    assert_eq!(after["version"], new_version, "{after}");
    // and the served-plugins report names the version the new process loaded
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("run/plugins.json")).unwrap()).unwrap();
    let served = report["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "qemu")
        .cloned()
        .unwrap();
    assert_eq!(served["version"], new_version, "{served}");
    assert_eq!(served["schemes"][0], "qemu", "{served}");
    assert_ne!(after["pid"], before["pid"], "{after}");
    assert_eq!(
        pids_with(root.to_str().unwrap(), "qemu-system"),
        qemu,
        "the same QEMU process runs the guest"
    );
    assert_eq!(state(&uri, "vup"), "running");
    // events still arrive: the daemon registered them with the new process
    let count = |what: &str| events.seen().matches(what).count();
    let (suspended, resumed) = (
        count("for domain 'vup': Suspended"),
        count("for domain 'vup': Resumed"),
    );
    ok(&uri, &["suspend", "vup"]);
    assert_eq!(state(&uri, "vup"), "paused");
    ok(&uri, &["resume", "vup"]);
    wait_for(
        "lifecycle events after the upgrade",
        Duration::from_secs(30),
        || {
            count("for domain 'vup': Suspended") > suspended
                && count("for domain 'vup': Resumed") > resumed
        },
    );
    // the old plugin process is gone, the guest is still managed
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(hosts[0]) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(hosts[0]), "the old plugin process stopped");

    // a crash of the plugin's process (SIGABRT; a SIGSEGV sent by kill is swallowed once
    // by the Rust runtime's guard-page handler): the guest keeps running and is managed again by
    // the restarted process (which reattaches from the status file)
    let host = plugin_hosts(d.pid());
    assert_eq!(host.len(), 1, "{host:?}");
    let pid = rustix::process::Pid::from_raw(host[0] as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::ABORT).unwrap();
    wait_for(
        "the crashed plugin process to go",
        Duration::from_secs(10),
        || !alive(host[0]),
    );
    assert_eq!(state(&uri, "vup"), "running");
    assert_eq!(
        pids_with(root.to_str().unwrap(), "qemu-system"),
        qemu,
        "the same QEMU process runs the guest after the plugin crashed"
    );
    let after_crash = list();
    assert_eq!(after_crash["restarts"], 1, "{after_crash}");
    assert_ne!(after_crash["pid"], after["pid"], "{after_crash}");
    let suspended = count("for domain 'vup': Suspended");
    ok(&uri, &["suspend", "vup"]);
    assert_eq!(state(&uri, "vup"), "paused");
    ok(&uri, &["resume", "vup"]);
    wait_for(
        "lifecycle events after the crash",
        Duration::from_secs(30),
        || count("for domain 'vup': Suspended") > suspended,
    );
    ok(&uri, &["destroy", "vup"]);
    assert_eq!(state(&uri, "vup"), "shut off");
    wait_for(
        "QEMU to exit after destroy",
        Duration::from_secs(10),
        || qemu.iter().all(|p| !alive(*p)),
    );
}

const HOST_SERVICES_TEST: &str =
    "isolation::an_isolated_qemu_plugin_uses_the_daemons_pools_and_networks";

/// The host services of an isolated QEMU plugin (isolated by default) are the daemon's:
/// `rvirt plugin list` shows it in its process; a TCG guest whose disk
/// is a `<disk type='volume'>` of a dir pool defined in the daemon, and whose interface
/// is an `<interface type='network'>` on a network started in the daemon, starts under
/// the plugin host process (which loads the QEMU plugin only: no storage or network
/// plugin, no pools or networks of its own), boots from the volume, leases an address
/// on the network's bridge through the port the daemon made, and its port goes when it
/// stops. In a network namespace of its own.
#[test]
fn an_isolated_qemu_plugin_uses_the_daemons_pools_and_networks() {
    use super::bridge_networks::{Reap, port_rows, sh};
    use super::qemu::{ok, state, tools_missing, wait_for};
    if tools_missing() || missing("dnsmasq", Command::new("dnsmasq").arg("--version")) {
        return;
    }
    // built before entering the namespace (the guest build downloads packages)
    let g = rvirt_tests::guest();
    if rvirt_tests::rerun_in_netns(HOST_SERVICES_TEST) {
        return;
    }
    assert!(sh("ip", &["link", "set", "lo", "up"]).0);
    // no isolation setting: process is rvirtd's default for hypervisor plugins
    let mut d = Daemon::start_logged_with_config("");
    let root = d.root.path().to_path_buf();
    let _reap = Reap(root.clone());
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());

    // the pool and the network live in the daemon
    let pool_dir = root.join("vpool");
    ok(
        &uri,
        &[
            "pool-define-as",
            "vpool",
            "dir",
            "--target",
            pool_dir.to_str().unwrap(),
        ],
    );
    ok(&uri, &["pool-build", "vpool"]);
    ok(&uri, &["pool-start", "vpool"]);
    std::fs::copy(g.join("disk.raw"), pool_dir.join("guest.raw")).unwrap();
    ok(&uri, &["pool-refresh", "vpool"]);
    assert!(ok(&uri, &["vol-list", "vpool"]).contains("guest.raw"));
    let net = root.join("isonet.xml");
    std::fs::write(
        &net,
        "<network><name>isonet</name><ip address='192.168.161.1' netmask='255.255.255.0'>\
         <dhcp><range start='192.168.161.100' end='192.168.161.200'/></dhcp></ip></network>",
    )
    .unwrap();
    ok(&uri, &["net-define", net.to_str().unwrap()]);
    ok(&uri, &["net-start", "isonet"]);

    let serial = root.join("serial.log");
    let dom = root.join("svc.xml");
    std::fs::write(
        &dom,
        format!(
            "<domain type='qemu'><name>svc</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
             <cmdline>console=ttyS0 quiet panic=-1</cmdline></os><features><acpi/></features>\
             <devices><serial type='file'><source path='{s}'/></serial>\
             <disk type='volume' device='disk'><driver name='qemu' type='raw'/>\
             <source pool='vpool' volume='guest.raw'/><target dev='vda' bus='virtio'/></disk>\
             <interface type='network'><source network='isonet'/><model type='virtio'/></interface>\
             </devices></domain>",
            k = g.join("vmlinux").display(),
            i = g.join("initrd.img").display(),
            s = serial.display(),
        ),
    )
    .unwrap();
    ok(&uri, &["define", dom.to_str().unwrap()]);
    ok(&uri, &["start", "svc"]);
    let o = Command::new(rvirt_tests::built("rvirt"))
        .args(["--json", "plugin", "list", "--root", root.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entry = |name: &str| {
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap()
    };
    let qemu = entry("qemu");
    assert_eq!(qemu["isolation"], "process", "{qemu}");
    let host = qemu["pid"].as_u64().unwrap() as u32;
    // the qemu plugin, and the storage and network plugins serving the daemon's pool and
    // network, each in a process of its own
    let mut hosts = plugin_hosts(d.pid());
    hosts.sort();
    let mut listed: Vec<u32> = ["qemu", "storage-dir", "network-bridge"]
        .iter()
        .map(|n| {
            let e = entry(n);
            assert_eq!(e["isolation"], "process", "{e}");
            e["pid"].as_u64().unwrap() as u32
        })
        .collect();
    listed.sort();
    assert_eq!(hosts, listed, "{v}");
    // the plugin host loaded the QEMU plugin alone: the pool and the port came from the
    // daemon (whose dir pool is served by the storage plugin's own process)
    let maps = std::fs::read_to_string(format!("/proc/{host}/maps")).unwrap();
    assert!(maps.contains("librvirt_plugin_qemu"), "{maps}");
    assert!(
        !maps.contains("librvirt_storage_dir"),
        "the plugin host opened pools of its own"
    );
    let qemu = pids_with(root.to_str().unwrap(), "qemu-system");
    assert_eq!(qemu.len(), 1, "one QEMU for the guest: {qemu:?}");
    let cmd = std::fs::read(format!("/proc/{}/cmdline", qemu[0])).unwrap();
    assert!(
        String::from_utf8_lossy(&cmd).contains(pool_dir.join("guest.raw").to_str().unwrap()),
        "QEMU opens the volume's file"
    );
    let live = ok(&uri, &["dumpxml", "svc"]);
    assert!(
        live.contains("pool='vpool'") && live.contains("volume='guest.raw'"),
        "{live}"
    );
    assert!(
        live.contains("portid=") && live.contains("bridge='virbr0'"),
        "{live}"
    );
    assert_eq!(port_rows(&ok(&uri, &["net-port-list", "isonet"])), 1);

    let log = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    wait_for("GUEST-READY", Duration::from_secs(90), || {
        log().contains("GUEST-READY")
    });
    let out = log();
    let line = out
        .lines()
        .find(|l| l.contains("GUEST-NET: eth0"))
        .unwrap_or_else(|| panic!("no GUEST-NET line: {out}"));
    assert!(
        line.contains("ip=192.168.161.") && line.contains("carrier=1"),
        "the guest leased an address on the daemon's network: {line}"
    );

    // the guest's port goes back to the daemon's network when it stops
    ok(&uri, &["destroy", "svc"]);
    assert_eq!(state(&uri, "svc"), "shut off");
    assert_eq!(port_rows(&ok(&uri, &["net-port-list", "isonet"])), 0);

    // autostart at a host boot: the plugin host's first open starts the guest, asking
    // the daemon for its volume and its port while the daemon waits on that very open
    ok(&uri, &["autostart", "svc"]);
    d.restart_after(|r| {
        let markers = files_named(&r.join("run"), "autostarted");
        let qemu: Vec<_> = markers
            .iter()
            .filter(|m| m.parent().is_some_and(|p| p.ends_with("qemu")))
            .collect();
        assert_eq!(qemu.len(), 1, "the QEMU driver's boot marker: {markers:?}");
        std::fs::remove_file(qemu[0]).unwrap();
    });
    assert_eq!(state(&uri, "svc"), "running", "autostarted");
    assert_eq!(port_rows(&ok(&uri, &["net-port-list", "isonet"])), 1);
    // qemu, storage-dir (the pool was revived) and network-bridge (the network was
    // reattached)
    assert_eq!(plugin_hosts(d.pid()).len(), 3);
    ok(&uri, &["destroy", "svc"]);
    assert_eq!(port_rows(&ok(&uri, &["net-port-list", "isonet"])), 0);
    ok(&uri, &["autostart", "--disable", "svc"]);
    ok(&uri, &["undefine", "svc"]);
    ok(&uri, &["net-destroy", "isonet"]);
    ok(&uri, &["pool-destroy", "vpool"]);
}

/// The files named `name` under `dir`, at any depth.
fn files_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(files_named(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            found.push(p);
        }
    }
    found
}

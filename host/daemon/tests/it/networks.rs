//! Networks through rvirtd with unmodified `virsh` and python-libvirt, on
//! `test:///default`, whose networks the host runs on the test plugin's bookkeeping
//! backend (forward mode `test`): no bridge is made, and the backend records what the
//! host asked in `ROOT/test-network-calls.log`.

use super::{Daemon, EventWatch, missing, write_file};
use crate::{virsh, virsh_ok as ok};
use std::process::{Command, Output};
use std::time::Duration;

fn fails(uri: &str, args: &[&str]) -> String {
    let o = virsh(uri, args);
    assert!(!o.status.success(), "virsh {args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

const NET: &str = "<network><name>n1</name><forward mode='nat'/><ip address='192.168.90.1' netmask='255.255.255.0'><dhcp><range start='192.168.90.2' end='192.168.90.254'/><host mac='52:54:00:00:00:05' name='five' ip='192.168.90.5'/></dhcp></ip></network>";

#[test]
fn virsh_manages_networks_through_rvirtd() {
    if missing("virsh", Command::new("virsh").arg("--version")) {
        return;
    }
    let d = Daemon::start();
    let uri = d.uri();
    let ro = d.uri_ro();
    let dir = d.root.path().to_path_buf();

    let events = EventWatch::spawn(
        "virsh",
        &["-c", &uri, "net-event", "--loop", "--event", "lifecycle"],
    );
    let probe = write_file(
        &dir,
        "probe.xml",
        "<network><name>probe</name><ip address='10.79.0.1' prefix='24'/></network>",
    );
    events.ready("for network probe: Defined", |_| {
        ok(&uri, &["net-define", probe.to_str().unwrap()]);
        ok(&uri, &["net-undefine", "probe"]);
    });

    let f = write_file(&dir, "n1.xml", NET);
    assert!(ok(&uri, &["net-define", f.to_str().unwrap()]).contains("Network n1 defined"));
    let list = ok(&uri, &["net-list", "--all"]);
    assert_eq!(rows(&list), [["n1", "inactive", "no", "yes"]], "{list}");
    ok(&uri, &["net-start", "n1"]);
    ok(&uri, &["net-autostart", "n1"]);
    let list = ok(&uri, &["net-list"]);
    assert_eq!(rows(&list), [["n1", "active", "yes", "yes"]], "{list}");
    assert_eq!(ok(&uri, &["net-list", "--name"]).trim(), "n1");
    let uuid = ok(&uri, &["net-uuid", "n1"]).trim().to_string();
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(ok(&uri, &["net-name", &uuid]).trim(), "n1");
    let info = ok(&uri, &["net-info", "n1"]);
    assert!(
        info.contains("Active:         yes") && info.contains("Bridge:         virbr0"),
        "{info}"
    );
    let xml = ok(&uri, &["net-dumpxml", "n1"]);
    assert!(
        xml.contains("<bridge name='virbr0'") && xml.contains(&format!("<uuid>{uuid}</uuid>")),
        "{xml}"
    );
    assert!(ok(&uri, &["net-dumpxml", "--inactive", "n1"]).contains("<name>n1</name>"));
    let leases = ok(&uri, &["net-dhcp-leases", "n1"]);
    assert!(
        leases.contains("52:54:00:00:00:05") && leases.contains("192.168.90.5/24"),
        "{leases}"
    );
    ok(
        &uri,
        &[
            "net-update",
            "n1",
            "add",
            "ip-dhcp-host",
            "<host mac='52:54:00:00:00:06' name='six' ip='192.168.90.6'/>",
            "--live",
            "--config",
        ],
    );
    assert!(ok(&uri, &["net-dumpxml", "n1"]).contains("name='six'"));

    // ports (virNetworkPort)
    let port = write_file(
        &dir,
        "port.xml",
        "<networkport><owner><name>vm</name><uuid>11111111-2222-3333-4444-555555555555</uuid></owner><mac address='52:54:00:00:00:07'/></networkport>",
    );
    ok(&uri, &["net-port-create", "n1", port.to_str().unwrap()]);
    let ports = ok(&uri, &["net-port-list", "n1"]);
    let port_uuid = rows(&ports)[0][0].clone();
    let pxml = ok(&uri, &["net-port-dumpxml", "n1", &port_uuid]);
    assert!(
        pxml.contains("<plug type='network' bridge='virbr0'/>"),
        "{pxml}"
    );
    ok(&uri, &["net-port-delete", "n1", &port_uuid]);
    assert!(rows(&ok(&uri, &["net-port-list", "n1"])).is_empty());

    // the read-only socket reads and refuses changes
    assert_eq!(rows(&ok(&ro, &["net-list", "--all"]))[0][0], "n1");
    assert!(ok(&ro, &["net-dumpxml", "n1"]).contains("<name>n1</name>"));
    let e = fails(&ro, &["net-destroy", "n1"]);
    assert!(e.contains("read only") || e.contains("read-only"), "{e}");
    let e = fails(&ro, &["net-define", f.to_str().unwrap()]);
    assert!(e.contains("read only") || e.contains("read-only"), "{e}");

    // bad input is refused clearly
    let bad = write_file(
        &dir,
        "bad.xml",
        "<network><name>a/b</name><ip address='10.0.0.1' prefix='24'/></network>",
    );
    let e = fails(&uri, &["net-define", bad.to_str().unwrap()]);
    assert!(e.contains("a/b"), "{e}");
    let overlap = write_file(
        &dir,
        "overlap.xml",
        "<network><name>n2</name><ip address='192.168.90.129' prefix='25'/></network>",
    );
    let e = fails(&uri, &["net-create", overlap.to_str().unwrap()]);
    assert!(e.contains("overlaps active network 'n1'"), "{e}");

    // a transient network
    let t = write_file(
        &dir,
        "t.xml",
        "<network><name>t1</name><ip address='10.77.0.1' prefix='24'/></network>",
    );
    // --validate: virNetworkCreateXMLFlags
    ok(&uri, &["net-create", "--validate", t.to_str().unwrap()]);
    let list = ok(&uri, &["net-list", "--all"]);
    assert!(
        rows(&list).contains(&vec![
            "t1".to_string(),
            "active".into(),
            "no".into(),
            "no".into()
        ]),
        "{list}"
    );
    ok(&uri, &["net-destroy", "t1"]);

    ok(&uri, &["net-autostart", "n1", "--disable"]);
    ok(&uri, &["net-destroy", "n1"]);
    assert_eq!(
        rows(&ok(&uri, &["net-list", "--inactive"])),
        [["n1", "inactive", "no", "yes"]]
    );
    ok(&uri, &["net-undefine", "n1"]);
    assert!(rows(&ok(&uri, &["net-list", "--all"])).is_empty());
    let e = fails(&uri, &["net-info", "n1"]);
    assert!(
        e.contains("Network not found") || e.contains("network not found"),
        "{e}"
    );

    let log = std::fs::read_to_string(dir.join("test-network-calls.log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "start n1",
            "update n1 3 4",
            "plug n1",
            "unplug n1",
            "start t1",
            "stop t1",
            "stop n1"
        ],
        "{log}"
    );

    events.wait_for(
        &["Defined", "Started", "Stopped", "Undefined"]
            .map(|want| format!("event 'lifecycle' for network n1: {want}")),
    );
}

const PYTHON: &str = "/usr/bin/python3";

const SCRIPT: &str = r#"
import sys, threading, time
import libvirt

uri = sys.argv[1]
libvirt.registerErrorHandler(lambda *a: None, None)
libvirt.virEventRegisterDefaultImpl()

def loop():
    while True:
        libvirt.virEventRunDefaultImpl()

threading.Thread(target=loop, daemon=True).start()

conn = libvirt.open(uri)
events = []
def on_lifecycle(c, net, event, detail, opaque):
    events.append((net.name(), event))
cid = conn.networkEventRegisterAny(None, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE, on_lifecycle, None)

net = conn.networkDefineXML("<network><name>py1</name><ip address='10.66.0.1' prefix='24'/></network>")
assert net.isPersistent() == 1 and net.isActive() == 0
net.create()
assert net.isActive() == 1
assert net.bridgeName().startswith("virbr"), net.bridgeName()
names = [n.name() for n in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)]
assert names == ["py1"], names
assert conn.listNetworks() == ["py1"]
assert conn.numOfNetworks() == 1 and conn.numOfDefinedNetworks() == 0
assert conn.networkLookupByUUIDString(net.UUIDString()).name() == "py1"
net.setAutostart(1)
assert net.autostart() == 1
net.destroy()
net.undefine()
try:
    conn.networkLookupByName("py1")
    raise SystemExit("lookup of an undefined network succeeded")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_NO_NETWORK, e.get_error_code()

deadline = time.time() + 5
want = {libvirt.VIR_NETWORK_EVENT_DEFINED, libvirt.VIR_NETWORK_EVENT_STARTED,
        libvirt.VIR_NETWORK_EVENT_STOPPED, libvirt.VIR_NETWORK_EVENT_UNDEFINED}
while time.time() < deadline and not want <= {e for n, e in events if n == "py1"}:
    time.sleep(0.05)
got = {e for n, e in events if n == "py1"}
assert want <= got, events
conn.networkEventDeregisterAny(cid)
conn.close()
print("OK")
"#;

#[test]
fn python_libvirt_lists_networks_and_gets_their_events() {
    if missing(
        "python3-libvirt",
        Command::new(PYTHON).args(["-c", "import libvirt"]),
    ) {
        return;
    }
    let d = Daemon::start();
    let out = Command::new(PYTHON)
        .args(["-c", SCRIPT, &d.uri()])
        .output()
        .expect("cannot run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "python-libvirt script failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// rvirt's own remote driver (`rvirt_host` over `test+unix://...`): the operations virsh
/// runs above, through [`rvirt_host::NetworkService`].
#[test]
fn the_remote_driver_serves_networks() {
    use rvirt_host::networks::{XML_INACTIVE, list_flags, net_event, update};
    let d = Daemon::start();
    let dir = d.root.path().to_path_buf();
    let conn = rvirt_host::Connection::open(&d.uri()).unwrap();
    let n = conn.networks().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let sub = n
        .subscribe(std::sync::Arc::new(
            move |e: &rvirt_host::networks::NetworkEvent| {
                let _ = tx.lock().unwrap().send((e.name.clone(), e.event));
            },
        ))
        .unwrap();

    let id = n.define(NET, 0).unwrap();
    assert_eq!(id.name, "n1");
    let names =
        |flags| -> Vec<String> { n.list(flags).unwrap().into_iter().map(|i| i.name).collect() };
    assert_eq!(names(0), ["n1"]);
    assert_eq!(names(list_flags::INACTIVE), ["n1"]);
    assert!(names(list_flags::ACTIVE).is_empty());
    assert!(!n.is_active("n1").unwrap() && n.is_persistent("n1").unwrap());
    n.create("n1").unwrap();
    n.set_autostart("n1", true).unwrap();
    assert!(n.is_active("n1").unwrap() && n.autostart("n1").unwrap());
    assert_eq!(names(list_flags::ACTIVE | list_flags::AUTOSTART), ["n1"]);
    assert_eq!(n.lookup_by_name("n1").unwrap(), id);
    assert_eq!(n.lookup_by_uuid(id.uuid).unwrap(), id);
    assert_eq!(n.bridge_name("n1").unwrap(), "virbr0");
    let xml = n.xml("n1", 0).unwrap();
    assert!(
        xml.contains("<bridge name='virbr0'") && xml.contains(&format!("<uuid>{}</uuid>", id.uuid)),
        "{xml}"
    );
    assert!(
        n.xml("n1", XML_INACTIVE)
            .unwrap()
            .contains("<name>n1</name>")
    );
    let leases = n.dhcp_leases("n1", None, 0).unwrap();
    assert!(
        leases
            .iter()
            .any(|l| l.mac == "52:54:00:00:00:05" && l.ipaddr == "192.168.90.5" && l.prefix == 24),
        "{leases:?}"
    );
    assert_eq!(
        n.dhcp_leases("n1", Some("52:54:00:00:00:05"), 0)
            .unwrap()
            .len(),
        1
    );
    n.update(
        "n1",
        update::ADD_LAST,
        update::SECTION_IP_DHCP_HOST,
        -1,
        "<host mac='52:54:00:00:00:06' name='six' ip='192.168.90.6'/>",
        update::AFFECT_LIVE | update::AFFECT_CONFIG,
    )
    .unwrap();
    assert!(n.xml("n1", 0).unwrap().contains("name='six'"));
    assert!(n.xml("n1", XML_INACTIVE).unwrap().contains("name='six'"));

    // ports
    let port = n
        .port_create(
            "n1",
            "<networkport><owner><name>vm</name><uuid>11111111-2222-3333-4444-555555555555</uuid></owner><mac address='52:54:00:00:00:07'/></networkport>",
            0,
        )
        .unwrap();
    assert_eq!(port.net, id);
    assert_eq!(n.port_list("n1", 0).unwrap(), std::slice::from_ref(&port));
    assert_eq!(n.port_lookup("n1", port.uuid).unwrap(), port);
    let pxml = n.port_xml("n1", port.uuid, 0).unwrap();
    assert!(
        pxml.contains("<plug type='network' bridge='virbr0'/>"),
        "{pxml}"
    );
    n.port_delete("n1", port.uuid, 0).unwrap();
    assert!(n.port_list("n1", 0).unwrap().is_empty());

    // the read-only socket reads; the daemon refuses changes, and so does a read-only
    // connection before asking
    let ro = rvirt_host::Connection::open(&d.uri_ro()).unwrap();
    let rn = ro.networks().unwrap();
    assert_eq!(rn.list(0).unwrap(), std::slice::from_ref(&id));
    assert!(rn.xml("n1", 0).unwrap().contains("<name>n1</name>"));
    let e = rn.define(NET, 0).unwrap_err();
    assert_eq!(e.code(), 29, "{e}");
    assert!(e.to_string().contains("read"), "{e}");
    let e = rn.destroy("n1").unwrap_err();
    assert_eq!(e.code(), 29, "{e}");
    let ro = rvirt_host::Connection::open_read_only(&d.uri_ro()).unwrap();
    let e = ro.networks().unwrap().define(NET, 0).unwrap_err();
    assert_eq!(e.code(), 29, "{e}");

    // errors travel with libvirt's codes
    let e = n
        .create_xml(
            "<network><name>n2</name><ip address='192.168.90.129' prefix='25'/></network>",
            0,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("overlaps active network 'n1'"),
        "{e}"
    );
    for e in [
        n.lookup_by_name("nope").unwrap_err(),
        n.xml("nope", 0).unwrap_err(),
        n.lookup_by_uuid(uuid::Uuid::from_u128(7)).unwrap_err(),
    ] {
        assert_eq!(e.code(), 43, "{e}");
    }

    // a transient network, through virNetworkCreateXMLFlags (VALIDATE)
    let t = n
        .create_xml(
            "<network><name>t1</name><ip address='10.77.0.1' prefix='24'/></network>",
            1,
        )
        .unwrap();
    assert_eq!(t.name, "t1");
    assert!(n.is_active("t1").unwrap() && !n.is_persistent("t1").unwrap());
    assert_eq!(names(list_flags::TRANSIENT), ["t1"]);
    n.destroy("t1").unwrap();
    assert_eq!(n.lookup_by_name("t1").unwrap_err().code(), 43);

    n.set_autostart("n1", false).unwrap();
    n.destroy("n1").unwrap();
    assert_eq!(names(list_flags::INACTIVE), ["n1"]);
    assert!(!n.autostart("n1").unwrap());
    n.undefine("n1").unwrap();
    assert!(names(0).is_empty());
    assert_eq!(n.is_active("n1").unwrap_err().code(), 43);

    // the backend saw what virsh's run makes it see: the update's command and section
    // arrived in libvirt's order
    let log = std::fs::read_to_string(dir.join("test-network-calls.log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "start n1",
            "update n1 3 4",
            "plug n1",
            "unplug n1",
            "start t1",
            "stop t1",
            "stop n1"
        ],
        "{log}"
    );

    let want = [
        ("n1", net_event::DEFINED),
        ("n1", net_event::STARTED),
        ("t1", net_event::STARTED),
        ("t1", net_event::STOPPED),
        ("n1", net_event::STOPPED),
        ("n1", net_event::UNDEFINED),
    ];
    let got: Vec<(String, i32)> = (0..want.len())
        .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    assert_eq!(
        got,
        want.map(|(n, e)| (n.to_string(), e)),
        "the lifecycle events, in order"
    );
    n.unsubscribe(sub).unwrap();
    assert!(n.unsubscribe(sub).is_err(), "already dropped");
    n.define(NET, 0).unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "no events after the last unsubscribe"
    );
}

/// The `rvirt` CLI over the remote driver: `rvirt -c test+unix:///default?socket=...`.
#[test]
fn the_rvirt_cli_manages_networks_over_the_remote_driver() {
    let bin_dir = std::path::PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    let rvirt = bin_dir.join("rvirt");
    assert!(
        rvirt.is_file(),
        "the rvirt CLI is missing next to rvirtd: run `cargo build --workspace` first"
    );
    let d = Daemon::start();
    let dir = d.root.path().to_path_buf();
    let run = |uri: &str, args: &[&str]| -> Output {
        Command::new(&rvirt)
            .arg("-c")
            .arg(uri)
            .args(args)
            .env("RVIRT_PLUGIN_PATH", &bin_dir)
            .output()
            .unwrap()
    };
    let uri = d.uri();
    let ok = |args: &[&str]| -> String {
        let o = run(&uri, args);
        assert!(
            o.status.success(),
            "rvirt {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let events = EventWatch::spawn(
        "env",
        &[
            &format!("RVIRT_PLUGIN_PATH={}", bin_dir.display()),
            rvirt.to_str().unwrap(),
            "-c",
            &uri,
            "net-event",
            "--loop",
        ],
    );
    let probe = write_file(
        &dir,
        "probe.xml",
        "<network><name>probe</name><ip address='10.79.0.1' prefix='24'/></network>",
    );
    events.ready("probe", |_| {
        ok(&["net-define", probe.to_str().unwrap()]);
        ok(&["net-undefine", "probe"]);
    });

    let f = write_file(&dir, "n1.xml", NET);
    ok(&["net-define", f.to_str().unwrap()]);
    ok(&["net-start", "n1"]);
    ok(&["net-autostart", "n1"]);
    let list: serde_json::Value = serde_json::from_str(&ok(&["--json", "net-list"])).unwrap();
    let uuid = list[0]["uuid"].as_str().unwrap().to_string();
    assert_eq!(
        list,
        serde_json::json!([{"name": "n1", "uuid": uuid, "active": true,
            "autostart": true, "persistent": true}])
    );
    assert_eq!(ok(&["net-uuid", "n1"]).trim(), uuid);
    assert_eq!(ok(&["net-name", &uuid]).trim(), "n1");
    assert!(ok(&["net-dumpxml", "n1"]).contains("<bridge name='virbr0'"));
    assert!(ok(&["net-info", "n1"]).contains("virbr0"));
    assert!(ok(&["net-dhcp-leases", "n1"]).contains("192.168.90.5"));
    ok(&[
        "net-update",
        "n1",
        "add",
        "ip-dhcp-host",
        "<host mac='52:54:00:00:00:06' name='six' ip='192.168.90.6'/>",
        "--live",
        "--config",
    ]);
    assert!(ok(&["net-dumpxml", "n1"]).contains("name='six'"));
    let port = write_file(
        &dir,
        "port.xml",
        "<networkport><owner><name>vm</name><uuid>11111111-2222-3333-4444-555555555555</uuid></owner><mac address='52:54:00:00:00:07'/></networkport>",
    );
    ok(&["net-port-create", "n1", port.to_str().unwrap()]);
    let ports: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "net-port-list", "n1"])).unwrap();
    let port_uuid = ports[0]["uuid"].as_str().unwrap().to_string();
    assert!(ok(&["net-port-dumpxml", "n1", &port_uuid]).contains("bridge='virbr0'"));
    ok(&["net-port-delete", "n1", &port_uuid]);

    // the read-only socket lists and refuses net-define
    let o = run(&d.uri_ro(), &["net-list", "--name"]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "n1");
    let o = run(&d.uri_ro(), &["net-define", f.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("read only") || e.contains("read-only"), "{e}");

    ok(&["net-destroy", "n1"]);
    ok(&["net-undefine", "n1"]);
    let list: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "net-list", "--all"])).unwrap();
    assert_eq!(list, serde_json::json!([]));
    let o = run(&uri, &["net-info", "n1"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.to_lowercase().contains("network not found"), "{e}");

    events.wait_for(
        &["Defined", "Started", "Stopped", "Undefined"]
            .map(|want| format!("event 'lifecycle' for network n1: {want}")),
    );
}

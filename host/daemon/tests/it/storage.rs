//! Storage pools and volumes through rvirtd with unmodified `virsh` and python-libvirt, on
//! a `dir` pool served by the storage-dir plugin (`qemu+unix:///system`, every path under
//! the daemon's `--root`).

use super::{Daemon, EventWatch, missing};
use crate::{virsh, virsh_ok as ok};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The error virsh printed for a command that must fail.
fn fails(uri: &str, args: &[&str]) -> String {
    let o = virsh(uri, args);
    assert!(!o.status.success(), "virsh {args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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
        || missing("qemu-img", Command::new("qemu-img").arg("--version"))
}

fn system_uri(socket: &Path) -> String {
    format!("qemu+unix:///system?socket={}", socket.display())
}

/// `qemu-img info`'s format and virtual size of a file.
fn qemu_img_info(path: &Path) -> (String, u64) {
    let o = Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(path)
        .output()
        .expect("cannot run qemu-img");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (
        v["format"].as_str().unwrap().to_string(),
        v["virtual-size"].as_u64().unwrap(),
    )
}

/// The rows of a virsh table, split on whitespace (header and rule skipped).
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn names(table: &str) -> Vec<String> {
    rows(table).into_iter().map(|r| r[0].clone()).collect()
}

#[test]
fn virsh_manages_a_dir_pool_through_rvirtd_and_a_restart_keeps_it() {
    if tools_missing() {
        return;
    }
    let mut d = Daemon::start();
    let uri = system_uri(&d.socket());
    let ro = system_uri(&d.socket_ro());
    let root = d.root.path().to_path_buf();
    let target = root.join("pools/p1");
    let t = target.to_str().unwrap();

    // pool events, seen by an unmodified virsh
    let events = EventWatch::spawn(
        "virsh",
        &["-c", &uri, "pool-event", "--loop", "--event", "lifecycle"],
    );
    let probe_dir = root.join("pools/probe");
    events.ready("for storage pool probe: Defined", |_| {
        ok(
            &uri,
            &[
                "pool-define-as",
                "probe",
                "dir",
                "--target",
                probe_dir.to_str().unwrap(),
            ],
        );
        ok(&uri, &["pool-undefine", "probe"]);
    });

    assert!(ok(&uri, &["pool-define-as", "p1", "dir", "--target", t]).contains("Pool p1 defined"));
    ok(&uri, &["pool-build", "p1"]);
    assert!(target.is_dir(), "pool-build made the target");
    ok(&uri, &["pool-start", "p1"]);
    let list = ok(&uri, &["pool-list", "--all"]);
    assert_eq!(rows(&list), [["p1", "active", "no"]], "{list}");
    assert!(ok(&uri, &["pool-info", "p1"]).contains("running"));

    ok(&uri, &["vol-create-as", "p1", "a.raw", "10M"]);
    ok(
        &uri,
        &["vol-create-as", "p1", "b.qcow2", "20M", "--format", "qcow2"],
    );
    assert_eq!(
        qemu_img_info(&target.join("a.raw")),
        ("raw".into(), 10 << 20)
    );
    assert_eq!(
        qemu_img_info(&target.join("b.qcow2")),
        ("qcow2".into(), 20 << 20)
    );
    let vols = ok(&uri, &["vol-list", "p1"]);
    assert_eq!(names(&vols), ["a.raw", "b.qcow2"], "{vols}");
    assert!(vols.contains(&format!("{t}/b.qcow2")), "{vols}");
    let info = ok(&uri, &["vol-info", "--pool", "p1", "b.qcow2"]);
    assert!(
        info.contains("Type:           file") && info.contains("Capacity:       20.00 MiB"),
        "{info}"
    );
    let xml = ok(&uri, &["vol-dumpxml", "--pool", "p1", "b.qcow2"]);
    assert!(
        xml.contains("<format type='qcow2'/>") && xml.contains(&format!("<key>{t}/b.qcow2</key>")),
        "{xml}"
    );
    // a volume is found by its path without naming the pool
    assert!(ok(&uri, &["vol-info", &format!("{t}/a.raw")]).contains("a.raw"));

    ok(&uri, &["vol-resize", "--pool", "p1", "a.raw", "30M"]);
    assert_eq!(qemu_img_info(&target.join("a.raw")).1, 30 << 20);
    assert!(ok(&uri, &["vol-info", "--pool", "p1", "a.raw"]).contains("30.00 MiB"));

    ok(&uri, &["vol-clone", "--pool", "p1", "b.qcow2", "c.qcow2"]);
    assert_eq!(
        qemu_img_info(&target.join("c.qcow2")),
        ("qcow2".into(), 20 << 20)
    );

    // a file made behind the daemon's back appears after a refresh
    std::fs::write(target.join("outside.img"), vec![0u8; 4096]).unwrap();
    assert!(!names(&ok(&uri, &["vol-list", "p1"])).contains(&"outside.img".to_string()));
    ok(&uri, &["pool-refresh", "p1"]);
    assert!(names(&ok(&uri, &["vol-list", "p1"])).contains(&"outside.img".to_string()));
    ok(&uri, &["vol-delete", "--pool", "p1", "outside.img"]);
    assert!(!target.join("outside.img").exists());

    // the read-only socket reads, and refuses changes
    assert!(names(&ok(&ro, &["vol-list", "p1"])).contains(&"a.raw".to_string()));
    let e = fails(&ro, &["pool-define-as", "p9", "dir", "--target", "/tmp/p9"]);
    assert!(e.contains("read only"), "{e}");
    let e = fails(&ro, &["vol-create-as", "p1", "z.raw", "1M"]);
    assert!(e.contains("read only"), "{e}");

    // bad input is refused with a clear error, and nothing is created
    for bad in ["../x.raw", "a/b.raw"] {
        let e = fails(&uri, &["vol-create-as", "p1", bad, "1M"]);
        assert!(e.contains("cannot contain '/'"), "{bad}: {e}");
    }
    assert!(!root.join("pools/x.raw").exists());
    let e = fails(
        &uri,
        &["pool-define-as", "r1", "zfs", "--target", "/tmp/r1"],
    );
    assert!(
        e.contains("pool type 'zfs'") && e.contains("rvirt plugin list"),
        "{e}"
    );

    // what a backend does not do says so, naming the call (pool capabilities and
    // discovery: pool_capabilities_and_source_discovery_through_virsh)
    let e = fails(&uri, &["find-storage-pool-sources", "dir"]);
    assert!(e.contains("virConnectFindStoragePoolSources"), "{e}");

    // the lifecycle events so far, as virsh printed them
    events.wait_for(
        &["Defined", "Created", "Started"]
            .map(|want| format!("event 'lifecycle' for storage pool p1: {want}")),
    );

    // a second pool, autostart but not started; p1 stays active across a restart
    let t2 = root.join("pools/p2");
    ok(
        &uri,
        &[
            "pool-define-as",
            "p2",
            "dir",
            "--target",
            t2.to_str().unwrap(),
        ],
    );
    ok(&uri, &["pool-build", "p2"]);
    ok(&uri, &["pool-autostart", "p2"]);
    let list = ok(&uri, &["pool-list", "--all"]);
    assert_eq!(
        rows(&list),
        [["p1", "active", "no"], ["p2", "inactive", "yes"]],
        "{list}"
    );
    d.restart();
    let list = ok(&uri, &["pool-list", "--all"]);
    assert_eq!(
        rows(&list),
        [["p1", "active", "no"], ["p2", "inactive", "yes"]],
        "after a restart, active stays active; autostart ran at this boot already: {list}"
    );
    assert_eq!(
        names(&ok(&uri, &["vol-list", "p1"])),
        ["a.raw", "b.qcow2", "c.qcow2"]
    );
    // a host reboot empties the volatile state (run/): the autostart pool starts, the
    // other one is inactive
    assert!(d.stop());
    std::fs::remove_dir_all(root.join("run/rvirt/storage")).unwrap();
    d.restart();
    let list = ok(&uri, &["pool-list", "--all"]);
    assert_eq!(
        rows(&list),
        [["p1", "inactive", "no"], ["p2", "active", "yes"]],
        "after a reboot: {list}"
    );
    ok(&uri, &["pool-start", "p1"]);

    // tear down
    for v in ["a.raw", "b.qcow2", "c.qcow2"] {
        ok(&uri, &["vol-delete", "--pool", "p1", v]);
    }
    for p in ["p1", "p2"] {
        ok(&uri, &["pool-destroy", p]);
        ok(&uri, &["pool-delete", p]);
        ok(&uri, &["pool-undefine", p]);
    }
    assert!(
        !target.exists() && !t2.exists(),
        "pool-delete removed the targets"
    );
    assert!(rows(&ok(&uri, &["pool-list", "--all"])).is_empty());
}

const PYTHON: &str = "/usr/bin/python3";

const SCRIPT: &str = r#"
import sys, threading, time
import libvirt

uri, ro_uri, target = sys.argv[1], sys.argv[2], sys.argv[3]
libvirt.registerErrorHandler(lambda *a: None, None)
libvirt.virEventRegisterDefaultImpl()

def loop():
    while True:
        libvirt.virEventRunDefaultImpl()

threading.Thread(target=loop, daemon=True).start()

conn = libvirt.open(uri)
events = []
refreshes = []
def on_lifecycle(c, pool, event, detail, opaque):
    events.append((pool.name(), event))
def on_refresh(c, pool, opaque):
    refreshes.append(pool.name())
lc = conn.storagePoolEventRegisterAny(None, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, on_lifecycle, None)
rc = conn.storagePoolEventRegisterAny(None, libvirt.VIR_STORAGE_POOL_EVENT_ID_REFRESH, on_refresh, None)

xml = "<pool type='dir'><name>py</name><target><path>%s</path></target></pool>" % target
pool = conn.storagePoolDefineXML(xml, 0)
pool.build(0)
pool.create(0)
assert pool.isActive() == 1 and pool.isPersistent() == 1
assert "py" in [p.name() for p in conn.listAllStoragePools(0)]
assert "py" in conn.listStoragePools() and conn.numOfStoragePools() >= 1
assert conn.storagePoolLookupByUUIDString(pool.UUIDString()).name() == "py"
vol = pool.createXML("<volume><name>v.qcow2</name><capacity unit='M'>8</capacity>"
                     "<target><format type='qcow2'/></target></volume>", 0)
assert vol.path() == target + "/v.qcow2", vol.path()
info = vol.info()
assert info[1] == 8 << 20, info
assert [v.name() for v in pool.listAllVolumes(0)] == ["v.qcow2"]
assert pool.listVolumes() == ["v.qcow2"] and pool.numOfVolumes() == 1
assert conn.storageVolLookupByPath(vol.path()).name() == "v.qcow2"
assert conn.storageVolLookupByKey(vol.key()).storagePoolLookupByVolume().name() == "py"
assert pool.info()[0] == libvirt.VIR_STORAGE_POOL_RUNNING
pool.refresh(0)
vol.delete(0)
try:
    pool.createXML("<volume><name>../escape</name><capacity>1</capacity></volume>", 0)
    raise SystemExit("a volume name with .. was accepted")
except libvirt.libvirtError as e:
    assert "cannot contain" in str(e), str(e)
pool.destroy()
pool.delete(0)
pool.undefine()

deadline = time.time() + 5
want = [libvirt.VIR_STORAGE_POOL_EVENT_DEFINED, libvirt.VIR_STORAGE_POOL_EVENT_CREATED,
        libvirt.VIR_STORAGE_POOL_EVENT_STARTED, libvirt.VIR_STORAGE_POOL_EVENT_STOPPED,
        libvirt.VIR_STORAGE_POOL_EVENT_DELETED, libvirt.VIR_STORAGE_POOL_EVENT_UNDEFINED]
while time.time() < deadline and ([e for n, e in events if n == "py"] != want or not refreshes):
    time.sleep(0.05)
assert [e for n, e in events if n == "py"] == want, events
assert refreshes == ["py"], refreshes
conn.storagePoolEventDeregisterAny(lc)
conn.storagePoolEventDeregisterAny(rc)
conn.close()

ro = libvirt.openReadOnly(ro_uri)
try:
    ro.storagePoolDefineXML(xml, 0)
    raise SystemExit("pool define succeeded on a read-only connection")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_OPERATION_DENIED, e.get_error_code()
ro.close()
print("OK")
"#;

#[test]
fn python_libvirt_pools_volumes_and_pool_events() {
    if tools_missing()
        || missing(
            "python3-libvirt",
            Command::new(PYTHON).args(["-c", "import libvirt"]),
        )
    {
        return;
    }
    let d = Daemon::start();
    let target = d.root.path().join("pools/py");
    let out = Command::new(PYTHON)
        .args([
            "-c",
            SCRIPT,
            &system_uri(&d.socket()),
            &system_uri(&d.socket_ro()),
            target.to_str().unwrap(),
        ])
        .output()
        .expect("cannot run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "python-libvirt script failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The host's remote driver (what `rvirt -c qemu+unix://...` uses) against rvirtd.
#[test]
fn the_remote_driver_serves_storage() {
    if tools_missing() {
        return;
    }
    let d = Daemon::start();
    let conn = rvirt_host::Connection::open(&system_uri(&d.socket())).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    conn.subscribe_storage_pool_events(move |e| {
        let _ = tx.lock().unwrap().send((e.name.clone(), e.event));
    })
    .unwrap();
    let target = d.root.path().join("pools/rd");
    let xml = format!(
        "<pool type='dir'><name>rd</name><target><path>{}</path></target></pool>",
        target.display()
    );
    let pool = conn.storage_pool_create_xml(&xml, 1).unwrap();
    assert!(pool.is_active().unwrap() && !pool.is_persistent().unwrap());
    let v = pool
        .create_vol_xml(
            "<volume><name>v.raw</name><capacity unit='KiB'>64</capacity></volume>",
            0,
        )
        .unwrap();
    assert_eq!(v.get_info().unwrap().capacity, 64 << 10);
    assert_eq!(
        conn.lookup_storage_pool_by_target_path(target.to_str().unwrap())
            .unwrap()
            .name(),
        "rd"
    );
    v.delete(0).unwrap();
    pool.destroy().unwrap();
    assert!(conn.lookup_storage_pool_by_name("rd").is_err(), "transient");
    let got: Vec<_> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    assert_eq!(
        got,
        [("rd".to_string(), Some(2)), ("rd".to_string(), Some(3))]
    );
    let ro = rvirt_host::Connection::open_read_only(&system_uri(&d.socket_ro())).unwrap();
    let e = ro.storage_pool_define_xml(&xml, 0).unwrap_err();
    assert_eq!(e.code(), 29, "{e}");
}

#[test]
fn pool_capabilities_and_source_discovery_through_virsh() {
    if tools_missing() {
        return;
    }
    let d = Daemon::start();
    let uri = system_uri(&d.socket());
    let ro = system_uri(&d.socket_ro());
    let caps = ok(&ro, &["-r", "pool-capabilities"]);
    let supported = |t: &str| {
        let tag = format!("<pool type='{t}' supported='");
        caps.lines()
            .find_map(|l| l.trim().strip_prefix(tag.as_str()))
            .and_then(|rest| rest.split('\'').next())
            .map(str::to_string)
    };
    // the installed plugins serve dir, fs, netfs and rbd; nothing here serves zfs
    assert_eq!(supported("dir").as_deref(), Some("yes"), "{caps}");
    assert_eq!(supported("fs").as_deref(), Some("yes"), "{caps}");
    assert_eq!(supported("netfs").as_deref(), Some("yes"), "{caps}");
    assert_eq!(supported("zfs").as_deref(), Some("no"), "{caps}");
    assert_eq!(supported("rbd").as_deref(), Some("yes"), "{caps}");
    assert!(caps.contains("<value>qcow2</value>"), "{caps}");

    // dir pools have no sources to discover: no-support naming the call and the backend
    let e = fails(&uri, &["find-storage-pool-sources-as", "dir"]);
    assert!(
        e.contains("not supported")
            && e.contains("virConnectFindStoragePoolSources")
            && e.contains("'dir'"),
        "{e}"
    );
    let e = fails(&uri, &["find-storage-pool-sources-as", "zfs", "localhost"]);
    assert!(e.contains("storage pool type 'zfs'"), "{e}");
}

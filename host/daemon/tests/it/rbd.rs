//! Ceph RBD pools through rvirtd with the real `virsh` and python-libvirt, against a real
//! single-node Ceph with cephx (`plugins/storage-rbd/tests/ceph-cluster.sh`), started
//! once per test run in a network namespace of its own and stopped by PID when the test
//! binary exits. rvirtd runs inside that namespace (`ip netns exec`), so its rbd plugin
//! and the QEMU it starts reach the monitor at 127.0.0.1:6789; virsh and python talk to
//! it over its UNIX socket from outside. The cephx key is defined as a libvirt secret
//! (`secret-define` + `secret-set-value`) and reaches the plugin through the host.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::missing;
use crate::{virsh, virsh_ok as ok};

struct Cluster {
    dir: PathBuf,
    ns: String,
    /// The client.admin key, base64 (what `secret-set-value --base64` takes).
    key: String,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

fn script() -> PathBuf {
    rvirt_tests::workspace_root().join("plugins/storage-rbd/tests/ceph-cluster.sh")
}

unsafe extern "C" {
    /// The C library's `atexit` (the test binary links the C library anyway).
    fn atexit(f: extern "C" fn()) -> i32;
}

extern "C" fn stop_cluster() {
    if let Some(c) = CLUSTER.get() {
        let _ = Command::new(script())
            .arg("stop")
            .arg(&c.dir)
            .arg(&c.ns)
            .status();
        let _ = std::fs::remove_dir_all(&c.dir);
    }
}

/// The test run's cluster, started on first use; a cluster that cannot start fails the
/// test with the daemons' log tails.
fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("rvirt-rbd-daemon-it-{pid}"));
        let ns = format!("rvirt-rbd-d{pid}");
        let t = Instant::now();
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .arg(&ns)
            .arg("cephx")
            .output()
            .expect("run ceph-cluster.sh");
        if !out.status.success() {
            let _ = Command::new(script()).arg("stop").arg(&dir).arg(&ns).status();
            panic!(
                "\n\n!!! the test Ceph cluster did not start (apt-get install ceph-mon ceph-osd ceph-common):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // SAFETY: registers a plain extern "C" function, run once at process exit.
        unsafe { atexit(stop_cluster) };
        eprintln!("ceph cluster up in {:?}", t.elapsed());
        let key = std::fs::read_to_string(dir.join("admin.key"))
            .expect("admin.key")
            .trim()
            .to_string();
        Cluster { dir, ns, key }
    })
}

/// rvirtd inside the cluster's namespace; SIGTERM on drop.
struct NsDaemon {
    root: tempfile::TempDir,
    child: Child,
}

impl NsDaemon {
    fn spawn(root: &Path) -> Child {
        let c = cluster();
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"));
        let bin_dir = bin.parent().expect("binary directory").to_path_buf();
        for plugin in ["librvirt_storage_rbd.so", "librvirt_plugin_qemu.so"] {
            assert!(
                bin_dir.join(plugin).is_file(),
                "{plugin} is missing next to rvirtd: run `cargo build --workspace` first"
            );
        }
        let child = Command::new("ip")
            .args(["netns", "exec", &c.ns])
            .arg(&bin)
            .arg("--root")
            .arg(root)
            .env("RVIRT_PLUGIN_PATH", &bin_dir)
            .env(
                "RUST_LOG",
                std::env::var("RVIRTD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("start rvirtd in the namespace");
        let sock = root.join("run/rvirt-sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < deadline, "rvirtd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn start() -> NsDaemon {
        let root = tempfile::Builder::new()
            .prefix("rvirtd-rbd.")
            .tempdir()
            .expect("tempdir");
        let child = NsDaemon::spawn(root.path());
        NsDaemon { root, child }
    }

    /// Stops the daemon (SIGTERM) and starts a new one on the same root.
    fn restart(&mut self) {
        self.stop();
        self.child = NsDaemon::spawn(self.root.path());
    }

    fn stop(&mut self) {
        // `ip netns exec` execs rvirtd: the child's PID is the daemon's
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn socket(&self) -> PathBuf {
        self.root.path().join("run/rvirt-sock")
    }

    fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.socket().display())
    }
}

impl Drop for NsDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn fails(uri: &str, args: &[&str]) -> String {
    let o = virsh(uri, args);
    assert!(
        !o.status.success(),
        "virsh {args:?} succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tools_missing() -> bool {
    missing("virsh", Command::new("virsh").arg("--version"))
        || missing("ceph-mon", Command::new("ceph-mon").arg("--version"))
}

const SECRET_USAGE: &str = "client.admin secret";

/// Defines the ceph secret holding the cluster's key; answers its UUID.
fn define_secret(uri: &str, dir: &Path) -> String {
    let file = dir.join("secret.xml");
    std::fs::write(
        &file,
        format!(
            "<secret ephemeral='no' private='yes'><usage type='ceph'><name>{SECRET_USAGE}</name></usage></secret>"
        ),
    )
    .unwrap();
    let out = ok(uri, &["secret-define", file.to_str().unwrap()]);
    let uuid = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no uuid in {out:?}"))
        .to_string();
    ok(
        uri,
        &["secret-set-value", &uuid, "--base64", &cluster().key],
    );
    uuid
}

fn pool_xml(name: &str, secret: &str) -> String {
    format!(
        "<pool type='rbd'><name>{name}</name><source><name>rbd</name>\
         <host name='127.0.0.1' port='6789'/>\
         <auth type='ceph' username='admin'><secret {secret}/></auth></source></pool>"
    )
}

fn define_pool(uri: &str, dir: &Path, name: &str, secret: &str) {
    let file = dir.join(format!("{name}.xml"));
    std::fs::write(&file, pool_xml(name, secret)).unwrap();
    ok(uri, &["pool-define", file.to_str().unwrap()]);
}

#[test]
fn rbd_pool_and_volumes_through_virsh_with_a_cephx_secret() {
    if tools_missing() {
        return;
    }
    let mut d = NsDaemon::start();
    let uri = d.uri();
    let dir = d.root.path().to_path_buf();
    let dir = dir.as_path();

    // without the secret, the pool cannot start, and says which secret it lacks
    define_pool(&uri, dir, "cephp", &format!("usage='{SECRET_USAGE}'"));
    let e = fails(&uri, &["pool-start", "cephp"]);
    assert!(
        e.contains("pool 'cephp'") && e.contains("client.admin secret"),
        "{e}"
    );
    let uuid = define_secret(&uri, dir);
    ok(&uri, &["pool-start", "cephp"]);
    let info = ok(&uri, &["pool-info", "cephp"]);
    assert!(info.contains("running"), "{info}");

    ok(&uri, &["vol-create-as", "cephp", "v1", "64M"]);
    ok(&uri, &["vol-create-as", "cephp", "v2", "1G"]);
    let e = fails(&uri, &["vol-create-as", "cephp", "v1", "64M"]);
    assert!(
        e.contains("already exists") || e.contains("exists already"),
        "{e}"
    );
    let e = fails(
        &uri,
        &["vol-create-as", "cephp", "q", "64M", "--format", "qcow2"],
    );
    assert!(e.contains("RBD images are raw"), "{e}");
    let list = ok(&uri, &["vol-list", "cephp"]);
    assert!(list.contains("v1") && list.contains("rbd/v1"), "{list}");
    assert!(list.contains("v2") && list.contains("rbd/v2"), "{list}");
    let vi = ok(&uri, &["vol-info", "--pool", "cephp", "v1"]);
    assert!(vi.contains("network") && vi.contains("64.00 MiB"), "{vi}");
    let x = ok(&uri, &["vol-dumpxml", "--pool", "cephp", "v1"]);
    assert!(
        x.contains("<key>rbd/v1</key>") && x.contains("<path>rbd/v1</path>"),
        "{x}"
    );
    assert_eq!(
        ok(&uri, &["vol-path", "--pool", "cephp", "v1"]).trim(),
        "rbd/v1"
    );

    ok(&uri, &["vol-resize", "--pool", "cephp", "v1", "128M"]);
    assert!(ok(&uri, &["vol-info", "--pool", "cephp", "v1"]).contains("128.00 MiB"));
    let e = fails(&uri, &["vol-resize", "--pool", "cephp", "v1", "32M"]);
    assert!(e.contains("SHRINK") || e.contains("shrink"), "{e}");
    ok(
        &uri,
        &["vol-resize", "--pool", "cephp", "v1", "32M", "--shrink"],
    );
    assert!(ok(&uri, &["vol-info", "--pool", "cephp", "v1"]).contains("32.00 MiB"));

    // a clone is an RBD clone of a protected snapshot of its source
    ok(&uri, &["vol-clone", "--pool", "cephp", "v1", "v1c"]);
    assert!(ok(&uri, &["vol-info", "--pool", "cephp", "v1c"]).contains("32.00 MiB"));
    let e = fails(&uri, &["vol-delete", "--pool", "cephp", "v1"]);
    assert!(e.contains("has snapshots"), "{e}");
    ok(&uri, &["vol-delete", "--pool", "cephp", "v1c"]);
    ok(
        &uri,
        &["vol-delete", "--pool", "cephp", "v1", "--delete-snapshots"],
    );

    // a restarted daemon finds the pool active; the plugin connects again on first use
    d.restart();
    assert!(ok(&uri, &["pool-info", "cephp"]).contains("running"));
    assert!(ok(&uri, &["vol-list", "cephp"]).contains("rbd/v2"));
    ok(&uri, &["pool-refresh", "cephp"]);
    assert!(ok(&uri, &["vol-info", "--pool", "cephp", "v2"]).contains("1.00 GiB"));
    ok(&uri, &["vol-wipe", "--pool", "cephp", "v2"]);

    // an image made behind the daemon's back appears on refresh
    let ns = &cluster().ns;
    let conf = cluster().dir.join("ceph.conf");
    let st = Command::new("ip")
        .args(["netns", "exec", ns, "rbd", "-c", conf.to_str().unwrap()])
        .args(["create", "--size", "16", "rbd/outside"])
        .status()
        .expect("rbd create");
    assert!(st.success());
    assert!(!ok(&uri, &["vol-list", "cephp"]).contains("outside"));
    ok(&uri, &["pool-refresh", "cephp"]);
    let list = ok(&uri, &["vol-list", "cephp"]);
    assert!(list.contains("outside"), "{list}");
    ok(&uri, &["vol-delete", "--pool", "cephp", "outside"]);
    ok(&uri, &["vol-delete", "--pool", "cephp", "v2"]);
    let e = fails(&uri, &["vol-info", "--pool", "cephp", "v2"]);
    assert!(e.contains("v2"), "{e}");

    ok(&uri, &["pool-destroy", "cephp"]);
    assert!(ok(&uri, &["pool-info", "cephp"]).contains("inactive"));
    ok(&uri, &["pool-undefine", "cephp"]);

    // the same pool naming its secret by UUID
    define_pool(&uri, dir, "cephu", &format!("uuid='{uuid}'"));
    ok(&uri, &["pool-start", "cephu"]);
    ok(&uri, &["vol-create-as", "cephu", "u1", "8M"]);
    ok(&uri, &["vol-delete", "--pool", "cephu", "u1"]);
    ok(&uri, &["pool-destroy", "cephu"]);
    ok(&uri, &["pool-undefine", "cephu"]);
}

const PY_STREAMS: &str = r#"
import sys
import libvirt

uri, pool_name = sys.argv[1], sys.argv[2]
libvirt.registerErrorHandler(lambda *a: None, None)
conn = libvirt.open(uri)
pool = conn.storagePoolLookupByName(pool_name)
data = bytes((i * 7 + i // 4099) % 256 for i in range((9 << 20) + 777))
vol = pool.createXML("<volume><name>py</name><capacity unit='bytes'>%d</capacity></volume>" % (16 << 20), 0)

st = conn.newStream(0)
vol.upload(st, 0, 0, 0)
pos = [0]
def source(stream, nbytes, opaque):
    n = min(nbytes, 100000)
    chunk = data[pos[0]:pos[0] + n]
    pos[0] += len(chunk)
    return chunk
st.sendAll(source, None)
st.finish()

got = []
st = conn.newStream(0)
vol.download(st, 0, len(data), 0)
st.recvAll(lambda s, buf, opaque: got.append(buf) or len(buf), None)
st.finish()
back = b"".join(got)
assert back == data, (len(back), len(data))

# a window in the middle
st = conn.newStream(0)
vol.download(st, 5000000, 123457, 0)
got = []
st.recvAll(lambda s, buf, opaque: got.append(buf) or len(buf), None)
st.finish()
assert b"".join(got) == data[5000000:5000000 + 123457]

# past the end: refused
st = conn.newStream(0)
try:
    vol.upload(st, 16 << 20, 10, 0)
    raise SystemExit("upload past the end accepted")
except libvirt.libvirtError as e:
    assert "past the" in str(e), str(e)
vol.delete(0)
print("STREAMS-OK")
"#;

#[test]
fn python_libvirt_streams_round_trip_on_an_rbd_volume() {
    if tools_missing()
        || missing(
            "python3-libvirt",
            Command::new("/usr/bin/python3").args(["-c", "import libvirt"]),
        )
    {
        return;
    }
    let d = NsDaemon::start();
    let uri = d.uri();
    let dir = d.root.path();
    define_secret(&uri, dir);
    define_pool(&uri, dir, "pyp", &format!("usage='{SECRET_USAGE}'"));
    ok(&uri, &["pool-start", "pyp"]);
    let o = Command::new("/usr/bin/python3")
        .args(["-c", PY_STREAMS, &uri, "pyp"])
        .output()
        .expect("python3");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success() && out.contains("STREAMS-OK"), "{out}");
    ok(&uri, &["pool-destroy", "pyp"]);
}

/// The pids of QEMU processes running guest `name`.
fn qemu_pids(name: &str) -> Vec<u32> {
    let want = format!("guest={name},");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .split('\0')
                    .any(|a| a.starts_with(&want))
            })
        })
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_tcg_guest_boots_from_an_rbd_volume_uploaded_through_the_daemon() {
    if tools_missing()
        || missing(
            "qemu-system-x86_64",
            Command::new("qemu-system-x86_64").arg("--version"),
        )
    {
        return;
    }
    let g = rvirt_tests::guest();
    let d = NsDaemon::start();
    let uri = d.uri();
    let dir = d.root.path();
    define_secret(&uri, dir);
    define_pool(&uri, dir, "gpool", &format!("usage='{SECRET_USAGE}'"));
    ok(&uri, &["pool-start", "gpool"]);
    ok(&uri, &["vol-create-as", "gpool", "gdisk", "8M"]);
    // the guest's disk image goes into the RBD image through the daemon's volume upload
    ok(
        &uri,
        &[
            "vol-upload",
            "--pool",
            "gpool",
            "gdisk",
            g.join("disk.raw").to_str().unwrap(),
        ],
    );
    // a second volume, reached as <disk type='volume'>: the pool's monitors and auth come
    // from the pool's definition (host services 1.6 storage_pool_xml)
    ok(&uri, &["vol-create-as", "gpool", "gvol", "4M"]);
    let marker = dir.join("marker.bin");
    std::fs::write(&marker, b"RBD-VOLUME-DISK!").unwrap();
    ok(
        &uri,
        &[
            "vol-upload",
            "--pool",
            "gpool",
            "gvol",
            marker.to_str().unwrap(),
        ],
    );
    let serial = dir.join("serial.log");
    let xml = format!(
        "<domain type='qemu'><name>rbdguest</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
         <cmdline>console=ttyS0 quiet panic=-1</cmdline></os><features><acpi/></features>\
         <devices><serial type='file'><source path='{s}'/></serial>\
         <disk type='network' device='disk'><driver name='qemu' type='raw'/>\
         <source protocol='rbd' name='rbd/gdisk'><host name='127.0.0.1' port='6789'/></source>\
         <auth username='admin'><secret type='ceph' usage='{SECRET_USAGE}'/></auth>\
         <target dev='vda' bus='virtio'/></disk>\
         <disk type='volume' device='disk'><source pool='gpool' volume='gvol'/>\
         <target dev='vdb' bus='virtio'/></disk></devices></domain>",
        k = g.join("vmlinux").display(),
        i = g.join("initrd.img").display(),
        s = serial.display(),
    );
    let file = dir.join("rbdguest.xml");
    std::fs::write(&file, xml).unwrap();
    ok(&uri, &["define", file.to_str().unwrap()]);

    // domxml-to-native shows libvirt's rbd node and a secret object, no key
    let native = ok(
        &uri,
        &["domxml-to-native", "qemu-argv", file.to_str().unwrap()],
    );
    assert!(
        native.contains("\"driver\":\"rbd\",\"pool\":\"rbd\",\"image\":\"gdisk\",\"server\":[{\"host\":\"127.0.0.1\",\"port\":\"6789\"}],\"user\":\"admin\",\"auth-client-required\":[\"cephx\",\"none\"],\"key-secret\":\"libvirt-2-storage-auth-secret0\""),
        "{native}"
    );
    assert!(
        native.contains("\"driver\":\"rbd\",\"pool\":\"rbd\",\"image\":\"gvol\",\"server\":[{\"host\":\"127.0.0.1\",\"port\":\"6789\"}],\"user\":\"admin\",\"auth-client-required\":[\"cephx\",\"none\"],\"key-secret\":\"libvirt-1-storage-auth-secret0\""),
        "{native}"
    );
    assert!(
        !native.contains(&cluster().key),
        "the key is on the command line"
    );

    ok(&uri, &["start", "rbdguest"]);
    let log = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    wait_for(
        "GUEST-READY on the serial console",
        Duration::from_secs(120),
        || log().contains("GUEST-READY"),
    );
    assert!(
        log().contains("DISK-MARKER: VIRT-DISK-MARKER"),
        "the guest read its disk marker from the RBD image: {}",
        log()
    );
    assert!(
        log().contains("DISK-MARKER-vdb: RBD-VOLUME-DISK!"),
        "the guest read the volume disk's marker: {}",
        log()
    );
    // QEMU's command line names the secret object and holds no key
    let pids = qemu_pids("rbdguest");
    assert_eq!(pids.len(), 1, "one QEMU");
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/cmdline", pids[0])).unwrap())
            .replace('\0', " ");
    assert!(
        cmdline.contains("\"key-secret\":\"libvirt-1-storage-auth-secret0\""),
        "{cmdline}"
    );
    assert!(cmdline.contains("\"qom-type\":\"secret\""), "{cmdline}");
    assert!(
        !cmdline.contains(&cluster().key),
        "the cephx key is on QEMU's command line"
    );
    let image_key_b64_free = !cmdline.contains("key=");
    assert!(image_key_b64_free, "{cmdline}");

    ok(&uri, &["shutdown", "rbdguest"]);
    wait_for("ACPI shutdown", Duration::from_secs(60), || {
        ok(&uri, &["domstate", "rbdguest"]).trim() == "shut off"
    });
    ok(&uri, &["undefine", "rbdguest"]);
    ok(&uri, &["vol-delete", "--pool", "gpool", "gdisk"]);
    ok(&uri, &["vol-delete", "--pool", "gpool", "gvol"]);
    ok(&uri, &["pool-destroy", "gpool"]);
}

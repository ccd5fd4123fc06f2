//! The `logical`, `netfs` and `iscsi-direct` storage plugins through rvirtd with the real
//! `virsh`, each against a real component: lvm2 on a loop device, nfs-ganesha with
//! rpcbind in a private network namespace, tgtd with file-backed LUNs. And a storage
//! plugin removed from the plugin directory and put back.
//!
//! Each test runs rvirtd from a plugin directory it controls (rvirtd and the plugins
//! linked or copied into a temporary directory: the host also searches the binary's own
//! directory), starts its own component and stops it by PID. A test whose component is
//! missing says so loudly and fails (skips with `RVIRT_ALLOW_SKIP=1`).

use crate::{virsh, virsh_ok as ok};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// rvirtd started from a private plugin directory (optionally inside a network namespace).
struct Rvirtd {
    root: tempfile::TempDir,
    bin: tempfile::TempDir,
    netns: Option<String>,
    child: Option<Child>,
}

fn build_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .expect("binary directory")
        .to_path_buf()
}

/// Hard-links `from` to `to`, or copies it (another file system).
fn link_or_copy(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

impl Rvirtd {
    fn start(netns: Option<&str>) -> Rvirtd {
        let src = build_dir();
        for p in ["librvirt_plugin_test.so", "librvirt_storage_dir.so"] {
            assert!(
                src.join(p).is_file(),
                "\n\n!!! {p} is missing next to rvirtd: run `cargo build --workspace` before the tests\n"
            );
        }
        let bin = tempfile::Builder::new()
            .prefix("rvirtd-bin.")
            .tempdir()
            .expect("tempdir");
        link_or_copy(&src.join("rvirtd"), &bin.path().join("rvirtd"));
        for e in std::fs::read_dir(&src).expect("build dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("librvirt_") && name.ends_with(".so") {
                link_or_copy(&e.path(), &bin.path().join(&name));
            }
        }
        let root = tempfile::Builder::new()
            .prefix("rvirtd-sm.")
            .tempdir()
            .expect("tempdir");
        let mut d = Rvirtd {
            root,
            bin,
            netns: netns.map(str::to_string),
            child: None,
        };
        d.spawn();
        d
    }

    fn plugin(&self, name: &str) -> PathBuf {
        self.bin.path().join(name)
    }

    fn spawn(&mut self) {
        let exe = self.bin.path().join("rvirtd");
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let child = c
            .arg("--root")
            .arg(self.root.path())
            .env("RVIRT_PLUGIN_PATH", self.bin.path())
            .env(
                "RUST_LOG",
                std::env::var("RVIRTD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start rvirtd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "rvirtd did not create {} within 20 s",
            self.socket().display()
        );
    }

    fn socket(&self) -> PathBuf {
        self.root.path().join("run/rvirt-sock")
    }

    fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.socket().display())
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Rvirtd {
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

/// Runs a tool that must succeed; answers stdout.
fn sh(program: &str, args: &[&str]) -> String {
    let o = Command::new(program)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        o.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).is_file())
}

/// Whether the test can run: root, virsh and `tools`; says why not, loudly.
fn can_run(test: &str, tools: &[(&str, &str)]) -> bool {
    if !rustix::process::geteuid().is_root() {
        rvirt_tests::cannot_run(test, "needs root");
        return false;
    }
    for (t, pkg) in [("virsh", "libvirt-clients")].iter().chain(tools) {
        if !have(t) {
            rvirt_tests::cannot_run(
                test,
                &format!("'{t}' is not installed (apt-get install --no-install-recommends {pkg})"),
            );
            return false;
        }
    }
    true
}

/// Says what cannot run here straight on the test process's stderr, which the test
/// harness does not capture: it shows even when the test passes.
fn loud(msg: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(msg.as_bytes());
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_string_lossy().into_owned()
}

/// virsh's `Key: value` line.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .map(|r| r.trim_start_matches(':').trim())
        })
        .unwrap_or_else(|| panic!("no '{key}' in:\n{text}"))
}

// ---------------------------------------------------------------- logical (lvm2) ----

/// A loop device over a sparse file, with the VG made on it removed and the device
/// detached on drop (and lvm2's archive files of the VG deleted).
struct LoopVg {
    dir: tempfile::TempDir,
    dev: String,
    vg: String,
}

impl LoopVg {
    fn new(vg: &str, mib: u64) -> LoopVg {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("pv.img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(mib << 20))
            .expect("image");
        let dev = sh("losetup", &["--find", "--show", img.to_str().unwrap()])
            .trim()
            .to_string();
        LoopVg {
            dir,
            dev,
            vg: vg.to_string(),
        }
    }

    fn lvm(&self, tool: &str, args: &[&str]) -> Output {
        Command::new(tool)
            .args(["--devices", &self.dev, "--config", "global{activation=0}"])
            .args(args)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .output()
            .expect("lvm2")
    }

    /// `lvs` names of the VG.
    fn lv_names(&self) -> Vec<String> {
        let o = self.lvm("lvs", &["--noheadings", "-o", "lv_name", &self.vg]);
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    fn lv_size(&self, lv: &str) -> u64 {
        let o = self.lvm(
            "lvs",
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "lv_size",
                &format!("{}/{lv}", self.vg),
            ],
        );
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("size")
    }
}

impl Drop for LoopVg {
    fn drop(&mut self) {
        let _ = self.lvm("vgremove", &["-f", "-y", &self.vg]);
        let _ = self.lvm("pvremove", &["-y", &self.dev]);
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        for d in ["/etc/lvm/archive", "/etc/lvm/backup"] {
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n == self.vg || n.starts_with(&format!("{}_", self.vg)) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        let _ = &self.dir;
    }
}

fn lvm_tools() -> [(&'static str, &'static str); 5] {
    [
        ("lvm", "lvm2"),
        ("losetup", "util-linux"),
        ("blkid", "util-linux"),
        ("vgcreate", "lvm2"),
        ("lvs", "lvm2"),
    ]
}

fn logical_pool_xml(name: &str, vg: &str, dev: &str) -> String {
    format!(
        "<pool type='logical'><name>{name}</name><source><name>{vg}</name><device path='{dev}'/><format type='lvm2'/></source><target><path>/dev/{vg}</path></target></pool>"
    )
}

#[test]
fn virsh_drives_a_logical_pool_on_a_loop_device_with_activation_off() {
    let test = "virsh_drives_a_logical_pool_on_a_loop_device_with_activation_off";
    if !can_run(test, &lvm_tools()) {
        return;
    }
    let dm = std::fs::read_to_string("/proc/misc").unwrap_or_default();
    let has_dm = dm.lines().any(|l| l.ends_with(" device-mapper"));
    if !has_dm {
        loud(&format!(
            "\n!!!!! {test}: this kernel has no device-mapper: logical volumes are created, resized and deleted as LVM metadata only (activation off); upload, download and wipe are checked to be refused\n"
        ));
    }
    let vg = format!("rvsm{}a", std::process::id());
    let lv = LoopVg::new(&vg, 128);
    let d = Rvirtd::start(None);
    let uri = d.uri();
    let xml = write(
        lv.dir.path(),
        "pool.xml",
        &logical_pool_xml("lp", &vg, &lv.dev),
    );

    // discovery before the build: nothing on the device
    let spec = write(
        lv.dir.path(),
        "spec.xml",
        &format!("<source><device path='{}'/></source>", lv.dev),
    );
    let found = ok(&uri, &["find-storage-pool-sources", "logical", &spec]);
    assert!(!found.contains("<name>"), "{found}");

    ok(&uri, &["pool-define", &xml]);
    ok(&uri, &["pool-build", "lp"]);
    // built: lvm2 sees the VG on the loop device
    assert!(lv.lvm("vgs", &[&vg]).status.success(), "vgcreate ran");
    // a second build without overwrite is refused: the device holds a PV now
    let e = fails(&uri, &["pool-build", "lp"]);
    assert!(e.contains("already holds") || e.contains("exists"), "{e}");
    let found = ok(&uri, &["find-storage-pool-sources", "logical", &spec]);
    assert!(
        found.contains(&format!("<name>{vg}</name>"))
            && found.contains(&format!("<device path='{}'/>", lv.dev))
            && found.contains("<format type='lvm2'/>"),
        "{found}"
    );

    ok(&uri, &["pool-start", "lp"]);
    let info = ok(&uri, &["pool-info", "lp"]);
    assert_eq!(field(&info, "State"), "running", "{info}");
    assert_eq!(field(&info, "Capacity"), "124.00 MiB", "{info}");

    ok(&uri, &["vol-create-as", "lp", "lv1", "16M"]);
    ok(&uri, &["vol-create-as", "lp", "lv2", "8M"]);
    assert_eq!(lv.lv_names(), ["lv1", "lv2"]);
    assert_eq!(lv.lv_size("lv1"), 16 << 20);
    let vols = ok(&uri, &["vol-list", "lp"]);
    assert!(vols.contains(&format!("/dev/{vg}/lv1")), "{vols}");
    let vi = ok(&uri, &["vol-info", "--pool", "lp", "lv1"]);
    assert_eq!(field(&vi, "Type"), "block", "{vi}");
    assert_eq!(field(&vi, "Capacity"), "16.00 MiB", "{vi}");
    let vx = ok(&uri, &["vol-dumpxml", "--pool", "lp", "lv1"]);
    let uuid = String::from_utf8_lossy(
        &lv.lvm(
            "lvs",
            &["--noheadings", "-o", "lv_uuid", &format!("{vg}/lv1")],
        )
        .stdout,
    )
    .trim()
    .to_string();
    assert!(
        vx.contains(&format!("<key>{uuid}</key>")),
        "key is the LV UUID {uuid}:\n{vx}"
    );
    assert!(vx.contains(&format!("<path>/dev/{vg}/lv1</path>")), "{vx}");
    // an LV made behind the daemon's back: lvcreate's own refusal, then a refresh finds it
    let made = lv.lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "outside", "-L", "4M", &vg],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let e = fails(&uri, &["vol-create-as", "lp", "outside", "4M"]);
    assert!(e.contains("exists already"), "{e}");
    ok(&uri, &["pool-refresh", "lp"]);
    assert!(ok(&uri, &["vol-list", "lp"]).contains("outside"));
    ok(&uri, &["vol-delete", "--pool", "lp", "outside"]);
    let info = ok(&uri, &["pool-refresh", "lp"]);
    assert!(info.contains("refreshed"), "{info}");
    let info = ok(&uri, &["pool-info", "lp"]);
    assert_eq!(field(&info, "Allocation"), "24.00 MiB", "{info}");
    assert_eq!(field(&info, "Available"), "100.00 MiB", "{info}");

    ok(&uri, &["vol-resize", "--pool", "lp", "lv1", "24M"]);
    assert_eq!(lv.lv_size("lv1"), 24 << 20);
    assert_eq!(
        field(&ok(&uri, &["vol-info", "--pool", "lp", "lv1"]), "Capacity"),
        "24.00 MiB"
    );
    let e = fails(&uri, &["vol-resize", "--pool", "lp", "lv1", "8M"]);
    assert!(e.contains("shrink"), "{e}");
    ok(
        &uri,
        &["vol-resize", "--pool", "lp", "lv1", "8M", "--shrink"],
    );
    assert_eq!(lv.lv_size("lv1"), 8 << 20);

    if !has_dm {
        let data = write(lv.dir.path(), "data", "hello");
        for args in [
            vec!["vol-upload", "--pool", "lp", "lv1", data.as_str()],
            vec!["vol-download", "--pool", "lp", "lv1", "/dev/null"],
            vec!["vol-wipe", "--pool", "lp", "lv1"],
            vec!["vol-clone", "--pool", "lp", "lv1", "lv1copy"],
            vec!["vol-create-as", "lp", "snap", "4M", "--backing-vol", "lv1"],
        ] {
            let e = fails(&uri, &args);
            assert!(
                (e.contains("not active")
                    || e.contains("cannot be activated")
                    || e.contains("snapshot"))
                    && e.contains("device-mapper"),
                "{args:?}: {e}"
            );
        }
    }
    // a name lvm2 would take as an option is refused
    let e = fails(&uri, &["vol-create-as", "lp", "-bad", "4M"]);
    assert!(!e.is_empty());

    ok(&uri, &["vol-delete", "--pool", "lp", "lv2"]);
    assert_eq!(lv.lv_names(), ["lv1"]);
    ok(&uri, &["pool-destroy", "lp"]);
    ok(&uri, &["pool-delete", "lp"]);
    assert!(!lv.lvm("vgs", &[&vg]).status.success(), "vgremove ran");
    let pv = lv.lvm("pvs", &["--noheadings", &lv.dev]);
    assert!(!pv.status.success() || String::from_utf8_lossy(&pv.stdout).trim().is_empty());
    ok(&uri, &["pool-undefine", "lp"]);
}

// ------------------------------------------------------ netfs (nfs-ganesha, mount) ----

/// rpcbind and nfs-ganesha in a private network namespace; stopped by PID on drop, the
/// namespace and their run files removed.
struct Ganesha {
    ns: String,
    dir: tempfile::TempDir,
    export: PathBuf,
    rpcbind: Child,
    ganesha: Option<Child>,
}

impl Ganesha {
    fn start() -> Ganesha {
        let ns = format!("rvsm-nfs-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        sh("ip", &["netns", "add", &ns]);
        sh("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let export = dir.path().join("export");
        std::fs::create_dir(&export).unwrap();
        let conf = write(
            dir.path(),
            "ganesha.conf",
            &format!(
                "NFS_CORE_PARAM {{ NFS_Port = 20490; MNT_Port = 20048; Protocols = 3, 4; Enable_NLM = false; Enable_RQUOTA = false; }}\n\
                 NFSV4 {{ Graceless = true; Lease_Lifetime = 10; Grace_Period = 5; }}\n\
                 NFS_KRB5 {{ Active_krb5 = false; }}\n\
                 EXPORT {{ Export_Id = 1; Path = {}; Pseudo = /export; Access_Type = RW; Squash = No_Root_Squash; SecType = sys; Protocols = 3, 4; Transports = TCP; FSAL {{ Name = VFS; }} }}\n",
                export.display()
            ),
        );
        let rpcbind = Command::new("ip")
            .args(["netns", "exec", &ns, "rpcbind", "-f", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rpcbind");
        let mut g = Ganesha {
            ns,
            dir,
            export,
            rpcbind,
            ganesha: None,
        };
        std::thread::sleep(Duration::from_millis(300));
        let d = g.dir.path().to_path_buf();
        g.ganesha = Some(
            Command::new("ip")
                .args(["netns", "exec", &g.ns, "ganesha.nfsd", "-F", "-f", &conf])
                .arg("-L")
                .arg(d.join("ganesha.log"))
                .arg("-p")
                .arg(d.join("ganesha.pid"))
                .args(["-N", "NIV_EVENT"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("ganesha.nfsd"),
        );
        // ready once its mount daemon answers
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &g.ns,
                    "showmount",
                    "--no-headers",
                    "-e",
                    "127.0.0.1",
                ])
                .output()
                .expect("showmount");
            if o.status.success() && !o.stdout.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "\n!!!!! nfs-ganesha did not start within 20 s: {}\nlog: {}",
                String::from_utf8_lossy(&o.stderr),
                std::fs::read_to_string(d.join("ganesha.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        g
    }
}

fn stop_child(c: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        if let Some(g) = self.ganesha.as_mut() {
            stop_child(g);
        }
        stop_child(&mut self.rpcbind);
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        for p in ["/run/rpcbind.sock", "/run/rpcbind.lock"] {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_dir_all("/run/rpcbind");
        let _ = std::fs::remove_dir_all("/run/ganesha");
    }
}

#[test]
fn virsh_finds_nfs_exports_of_a_real_ganesha_and_netfs_start_fails_with_the_kernels_error() {
    let test =
        "virsh_finds_nfs_exports_of_a_real_ganesha_and_netfs_start_fails_with_the_kernels_error";
    if !can_run(
        test,
        &[
            ("ganesha.nfsd", "nfs-ganesha nfs-ganesha-vfs"),
            ("rpcbind", "rpcbind"),
            ("showmount", "nfs-common"),
            ("mount.nfs", "nfs-common"),
            ("ip", "iproute2"),
        ],
    ) {
        return;
    }
    if Path::new("/run/rpcbind.sock").exists() {
        rvirt_tests::cannot_run(
            test,
            "an rpcbind already runs on this host (/run/rpcbind.sock): only one rpcbind per machine",
        );
        return;
    }
    let g = Ganesha::start();
    // rvirtd in the server's namespace (its sockets are files, so virsh reaches it)
    let d = Rvirtd::start(Some(&g.ns));
    let uri = d.uri();
    let found = ok(
        &uri,
        &["find-storage-pool-sources-as", "netfs", "127.0.0.1"],
    );
    let export = g.export.display().to_string();
    assert!(
        found.contains("<host name='127.0.0.1'/>")
            && found.contains(&format!("<dir path='{export}'/>"))
            && found.contains("<format type='nfs'/>"),
        "{found}"
    );
    // discovery names the host it could not ask
    let e = fails(
        &uri,
        &[
            "find-storage-pool-sources-as",
            "netfs",
            "rvsm-no-such-host.invalid",
        ],
    );
    assert!(e.contains("rvsm-no-such-host.invalid"), "{e}");

    let target = d.root.path().join("mnt/nfs");
    let xml = write(
        g.dir.path(),
        "pool.xml",
        &format!(
            "<pool type='netfs'><name>np</name><source><host name='127.0.0.1'/><dir path='{export}'/><format type='nfs'/></source><target><path>{}</path></target></pool>",
            target.display()
        ),
    );
    ok(&uri, &["pool-define", &xml]);
    ok(&uri, &["pool-build", "np"]);
    assert!(target.is_dir(), "pool-build made the target");
    let kernel_nfs = std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some("nfs"));
    assert!(
        !kernel_nfs,
        "\n!!!!! {test}: this kernel has NFS: this test expects the mount to fail here; mount the pool for real instead\n"
    );
    let e = fails(&uri, &["pool-start", "np"]);
    loud(&format!(
        "\n!!!!! {test}: NOT RUN HERE: mounting the netfs pool (this kernel has no NFS client: no 'nfs' in /proc/filesystems).\n!!!!! pool-start ran `mount -t nfs 127.0.0.1:{export} {} -o nodev,nosuid,noexec` and the kernel refused it:\n!!!!! {}\n",
        target.display(),
        e.trim()
    ));
    assert!(
        e.contains("mount -t nfs 127.0.0.1:")
            && e.contains("-o nodev,nosuid,noexec")
            && e.contains("No such device"),
        "expected the kernel's 'No such device' for NFS: {e}"
    );
    let info = ok(&uri, &["pool-info", "np"]);
    assert_eq!(field(&info, "State"), "inactive", "{info}");
    ok(&uri, &["pool-delete", "np"]);
    assert!(!target.exists(), "pool-delete removed the target");
    ok(&uri, &["pool-undefine", "np"]);
}

// ------------------------------------------------------ iscsi-direct (tgtd, libiscsi) ----

/// tgtd on 127.0.0.1 with its own port and control socket, file-backed LUNs; shut down
/// through its control socket, then by PID.
struct Tgtd {
    dir: tempfile::TempDir,
    port: u16,
    /// tgtd's control socket number (`-C`; tgtd takes small numbers only).
    ctl: String,
    child: Child,
    iqn: String,
}

impl Tgtd {
    fn start(luns: &[u64]) -> Tgtd {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        // tests of this binary run in parallel: each tgtd gets its own control socket
        // number and target name
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ctl = (100 + (std::process::id() % 50) * 4 + n % 4).to_string();
        let child = Command::new("tgtd")
            .args(["-f", "-C", &ctl, "--iscsi"])
            .arg(format!("portal=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tgtd");
        let iqn = format!("iqn.2026-12.org.rvirt:sm{}-{n}", std::process::id());
        let mut t = Tgtd {
            dir,
            port,
            ctl,
            child,
            iqn,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.adm_status(&["--op", "show", "--mode", "target"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "\n!!!!! tgtd did not start within 10 s\n"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let iqn = t.iqn.clone();
        t.adm(&["--op", "new", "--mode", "target", "--tid", "1", "-T", &iqn]);
        for (i, mib) in luns.iter().enumerate() {
            let img = t.dir.path().join(format!("lun{}.img", i + 1));
            std::fs::File::create(&img)
                .and_then(|f| f.set_len(mib << 20))
                .unwrap();
            let lun = (i + 1).to_string();
            t.adm(&[
                "--op",
                "new",
                "--mode",
                "logicalunit",
                "--tid",
                "1",
                "--lun",
                &lun,
                "-b",
                img.to_str().unwrap(),
            ]);
        }
        t.adm(&[
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ]);
        let _ = &mut t;
        t
    }

    fn adm_status(&self, args: &[&str]) -> Result<String, String> {
        let o = Command::new("tgtadm")
            .args(["-C", &self.ctl, "--lld", "iscsi"])
            .args(args)
            .output()
            .expect("tgtadm");
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }

    fn adm(&self, args: &[&str]) {
        if let Err(e) = self.adm_status(args) {
            panic!("tgtadm {args:?}: {e}");
        }
    }

    fn lun_file(&self, n: u32) -> PathBuf {
        self.dir.path().join(format!("lun{n}.img"))
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        let _ = self.adm_status(&["--op", "delete", "--mode", "system"]);
        stop_child(&mut self.child);
        for f in [
            format!("socket.{}", self.ctl),
            format!("socket.{}.lock", self.ctl),
        ] {
            let _ = std::fs::remove_file(Path::new("/run/tgtd").join(f));
        }
    }
}

fn iscsi_pool_xml(name: &str, t: &Tgtd, auth: Option<&str>) -> String {
    let auth = auth
        .map(|a| format!("<auth type='chap' username='rvsmuser'><secret usage='{a}'/></auth>"))
        .unwrap_or_default();
    format!(
        "<pool type='iscsi-direct'><name>{name}</name><source><host name='127.0.0.1' port='{}'/><device path='{}'/><initiator><iqn name='iqn.2026-12.org.rvirt:initiator'/></initiator>{auth}</source></pool>",
        t.port, t.iqn
    )
}

#[test]
fn virsh_lists_the_luns_of_a_real_tgtd_as_iscsi_direct_volumes_with_and_without_chap() {
    let test = "virsh_lists_the_luns_of_a_real_tgtd_as_iscsi_direct_volumes_with_and_without_chap";
    if !can_run(test, &[("tgtd", "tgt"), ("tgtadm", "tgt")]) {
        return;
    }
    let t = Tgtd::start(&[64, 32]);
    let d = Rvirtd::start(None);
    let uri = d.uri();
    // SendTargets discovery through libiscsi: the target, ready for a pool definition
    let spec = write(
        t.dir.path(),
        "spec.xml",
        &format!(
            "<source><host name='127.0.0.1' port='{}'/><initiator><iqn name='iqn.2026-12.org.rvirt:initiator'/></initiator></source>",
            t.port
        ),
    );
    let found = ok(&uri, &["find-storage-pool-sources", "iscsi-direct", &spec]);
    assert!(
        found.contains(&format!("<device path='{}'/>", t.iqn))
            && found.contains(&format!("<host name='127.0.0.1' port='{}'/>", t.port))
            && found.contains("<iqn name='iqn.2026-12.org.rvirt:initiator'/>"),
        "{found}"
    );
    let e = fails(
        &uri,
        &[
            "find-storage-pool-sources-as",
            "iscsi-direct",
            "127.0.0.1",
            &t.port.to_string(),
        ],
    );
    assert!(
        e.contains("initiator"),
        "libvirt's iscsi-direct needs the initiator: {e}"
    );
    let xml = write(t.dir.path(), "pool.xml", &iscsi_pool_xml("ip", &t, None));
    ok(&uri, &["pool-define", &xml]);
    ok(&uri, &["pool-start", "ip"]);
    let vols = ok(&uri, &["vol-list", "ip"]);
    let path1 = format!("ip-127.0.0.1:{}-iscsi-{}-lun-1", t.port, t.iqn);
    assert!(
        vols.contains("unit:0:0:1") && vols.contains("unit:0:0:2") && vols.contains(&path1),
        "{vols}"
    );
    // tgt's LUN 0 is its controller: listed with no size, as libvirt lists it
    let vi0 = ok(&uri, &["vol-info", "--pool", "ip", "unit:0:0:0"]);
    assert_eq!(field(&vi0, "Capacity"), "0.00 B", "{vi0}");
    let vi = ok(&uri, &["vol-info", "--pool", "ip", "unit:0:0:1"]);
    assert_eq!(field(&vi, "Type"), "network", "{vi}");
    assert_eq!(field(&vi, "Capacity"), "64.00 MiB", "{vi}");
    assert_eq!(
        field(
            &ok(&uri, &["vol-info", "--pool", "ip", "unit:0:0:2"]),
            "Capacity"
        ),
        "32.00 MiB"
    );
    let vx = ok(&uri, &["vol-dumpxml", "--pool", "ip", "unit:0:0:1"]);
    assert!(
        vx.contains(&format!("<key>{path1}</key>"))
            && vx.contains(&format!("<path>{path1}</path>")),
        "{vx}"
    );
    let info = ok(&uri, &["pool-info", "ip"]);
    assert_eq!(field(&info, "Capacity"), "96.00 MiB", "{info}");

    // libvirt's iscsi-direct cannot create, delete or resize volumes
    let e = fails(&uri, &["vol-create-as", "ip", "new", "1M"]);
    assert!(
        e.contains("not supported")
            && e.contains("virStorageVolCreateXML")
            && e.contains("iscsi-direct"),
        "{e}"
    );
    let e = fails(&uri, &["vol-delete", "--pool", "ip", "unit:0:0:2"]);
    assert!(
        e.contains("virStorageVolDelete") && e.contains("iscsi-direct"),
        "{e}"
    );

    // upload and download through libiscsi
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 + 3) as u8).collect();
    let up = t.dir.path().join("up.bin");
    std::fs::write(&up, &data).unwrap();
    ok(
        &uri,
        &[
            "vol-upload",
            "--pool",
            "ip",
            "unit:0:0:2",
            up.to_str().unwrap(),
            "--offset",
            "4096",
        ],
    );
    let on_disk = std::fs::read(t.lun_file(2)).unwrap();
    assert_eq!(
        &on_disk[4096..4096 + data.len()],
        &data[..],
        "the LUN's file holds the upload"
    );
    let down = t.dir.path().join("down.bin");
    ok(
        &uri,
        &[
            "vol-download",
            "--pool",
            "ip",
            "unit:0:0:2",
            down.to_str().unwrap(),
            "--offset",
            "4096",
            "--length",
            &data.len().to_string(),
        ],
    );
    assert_eq!(std::fs::read(&down).unwrap(), data, "download round-trips");
    let e = fails(
        &uri,
        &[
            "vol-upload",
            "--pool",
            "ip",
            "unit:0:0:2",
            up.to_str().unwrap(),
            "--offset",
            "100",
        ],
    );
    assert!(e.contains("whole blocks"), "{e}");
    // wipe writes zeros over the LUN; other algorithms are refused
    ok(&uri, &["vol-wipe", "--pool", "ip", "unit:0:0:2"]);
    let on_disk = std::fs::read(t.lun_file(2)).unwrap();
    assert!(on_disk.iter().all(|b| *b == 0), "the LUN is zeroed");
    let e = fails(
        &uri,
        &[
            "vol-wipe",
            "--pool",
            "ip",
            "unit:0:0:2",
            "--algorithm",
            "random",
        ],
    );
    assert!(e.contains("not supported"), "{e}");

    ok(&uri, &["pool-destroy", "ip"]);

    // CHAP: the target asks for it, the secret driver answers it
    t.adm(&[
        "--op",
        "new",
        "--mode",
        "account",
        "--user",
        "rvsmuser",
        "--password",
        "rvsm-secret-1",
    ]);
    t.adm(&[
        "--op", "bind", "--mode", "account", "--tid", "1", "--user", "rvsmuser",
    ]);
    let e = fails(&uri, &["pool-start", "ip"]);
    assert!(
        e.contains("cannot log in"),
        "without CHAP the login is refused: {e}"
    );
    let sx = write(
        t.dir.path(),
        "secret.xml",
        "<secret ephemeral='no' private='yes'><usage type='iscsi'><target>rvsm-chap</target></usage></secret>",
    );
    let out = ok(&uri, &["secret-define", &sx]);
    let uuid = out
        .split_whitespace()
        .find(|w| w.len() == 36)
        .expect("uuid")
        .to_string();
    let chap = write(
        t.dir.path(),
        "chap.xml",
        &iscsi_pool_xml("ipchap", &t, Some("rvsm-chap")),
    );
    ok(&uri, &["pool-define", &chap]);
    let e = fails(&uri, &["pool-start", "ipchap"]);
    assert!(e.contains("CHAP secret"), "no value yet: {e}");
    ok(
        &uri,
        &["secret-set-value", &uuid, "--base64", "cnZzbS13cm9uZy0x"],
    ); // rvsm-wrong-1
    let e = fails(&uri, &["pool-start", "ipchap"]);
    assert!(e.contains("cannot log in"), "a wrong secret: {e}");
    ok(
        &uri,
        &[
            "secret-set-value",
            &uuid,
            "--base64",
            "cnZzbS1zZWNyZXQtMQ==",
        ],
    ); // rvsm-secret-1
    ok(&uri, &["pool-start", "ipchap"]);
    let vols = ok(&uri, &["vol-list", "ipchap"]);
    assert!(
        vols.contains("unit:0:0:1") && vols.contains("unit:0:0:2"),
        "{vols}"
    );
    ok(&uri, &["pool-refresh", "ipchap"]);
    ok(&uri, &["pool-destroy", "ipchap"]);
}

// ------------------------------------------------------------ plugin removal ----

#[test]
fn a_removed_storage_plugin_leaves_the_others_working_and_its_pools_come_back_with_it() {
    let test = "a_removed_storage_plugin_leaves_the_others_working_and_its_pools_come_back_with_it";
    if !can_run(test, &lvm_tools()) {
        return;
    }
    let so = "librvirt_storage_logical.so";
    assert!(
        build_dir().join(so).is_file(),
        "\n\n!!! {so} is missing next to rvirtd: run `cargo build --workspace` first\n"
    );
    let vg = format!("rvsm{}b", std::process::id());
    let lv = LoopVg::new(&vg, 64);
    let mut d = Rvirtd::start(None);
    let uri = d.uri();
    let dir_target = d.root.path().join("pools/dp");
    ok(
        &uri,
        &[
            "pool-define-as",
            "dp",
            "dir",
            "--target",
            dir_target.to_str().unwrap(),
        ],
    );
    ok(&uri, &["pool-build", "dp"]);
    ok(&uri, &["pool-start", "dp"]);
    let xml = write(
        lv.dir.path(),
        "pool.xml",
        &logical_pool_xml("lp", &vg, &lv.dev),
    );
    ok(&uri, &["pool-define", &xml]);
    ok(&uri, &["pool-build", "lp"]);
    ok(&uri, &["pool-start", "lp"]);
    ok(&uri, &["vol-create-as", "lp", "kept", "8M"]);

    // the logical plugin leaves the plugin directory
    let saved = lv.dir.path().join(so);
    d.stop();
    std::fs::rename(d.plugin(so), &saved).expect("remove the plugin");
    d.spawn();
    let list = ok(&uri, &["pool-list", "--all"]);
    assert!(
        list.contains("dp") && list.contains("lp"),
        "both pools listed: {list}"
    );
    // the other pools keep working
    ok(&uri, &["vol-create-as", "dp", "a.raw", "1M"]);
    assert!(dir_target.join("a.raw").is_file());
    let info = ok(&uri, &["pool-info", "lp"]);
    assert_eq!(field(&info, "State"), "inactive", "{info}");
    let e = fails(&uri, &["pool-start", "lp"]);
    assert!(
        e.contains("'lp'") && e.contains("pool type 'logical'") && e.contains("plugin"),
        "pool-start names the pool, its type and the missing plugin: {e}"
    );
    let e = fails(&uri, &["vol-list", "lp"]);
    assert!(e.contains("not active") || e.contains("logical"), "{e}");
    let caps = ok(&uri, &["pool-capabilities"]);
    assert!(
        caps.contains("<pool type='logical' supported='no'>"),
        "{caps}"
    );
    assert!(caps.contains("<pool type='dir' supported='yes'>"), "{caps}");
    // defining another logical pool names the missing backend too
    let other = write(
        lv.dir.path(),
        "other.xml",
        &logical_pool_xml("lp2", "rvsmnone", "/dev/null"),
    );
    let e = fails(&uri, &["pool-define", &other]);
    assert!(e.contains("'logical'"), "{e}");

    // back in place: after a restart the pool is active again, with its volume
    d.stop();
    std::fs::rename(&saved, d.plugin(so)).expect("put the plugin back");
    d.spawn();
    let info = ok(&uri, &["pool-info", "lp"]);
    assert_eq!(field(&info, "State"), "running", "{info}");
    let vols = ok(&uri, &["vol-list", "lp"]);
    assert!(vols.contains("kept"), "{vols}");
    ok(&uri, &["vol-delete", "--pool", "lp", "kept"]);
    ok(&uri, &["pool-destroy", "lp"]);
    ok(&uri, &["pool-delete", "lp"]);
    ok(&uri, &["pool-undefine", "lp"]);
    d.restart();
    assert!(ok(&uri, &["pool-list", "--all"]).contains("dp"));
}

/// A TCG guest boots from an iSCSI LUN (`<disk type='network' protocol='iscsi'>`, QEMU's
/// userspace initiator, no kernel session) and reads a second LUN reached as
/// `<disk type='volume'>` on an iscsi-direct pool (the pool's host, target and initiator
/// name make the network source).
#[test]
fn a_tcg_guest_boots_from_an_iscsi_lun_and_reads_an_iscsi_direct_volume() {
    let test = "a_tcg_guest_boots_from_an_iscsi_lun_and_reads_an_iscsi_direct_volume";
    if !can_run(
        test,
        &[
            ("tgtd", "tgt"),
            ("tgtadm", "tgt"),
            ("qemu-system-x86_64", "qemu-system-x86"),
        ],
    ) {
        return;
    }
    let g = rvirt_tests::guest();
    let disk = std::fs::read(g.join("disk.raw")).expect("the guest's disk image");
    let mib = (disk.len() as u64).div_ceil(1 << 20);
    let t = Tgtd::start(&[mib, 1]);
    // tgtd serves the files as they are: the guest's disk on LUN 1, a marker on LUN 2
    // (the guest prints the first 16 bytes of each extra disk)
    std::fs::write(t.lun_file(1), &disk).unwrap();
    let mut marker = b"ISCSI-DIRECT-VOL".to_vec();
    marker.resize(1 << 20, 0);
    std::fs::write(t.lun_file(2), &marker).unwrap();

    let d = Rvirtd::start(None);
    // QEMU outlives rvirtd by design: a failed run must not leave the guest behind
    struct KillGuest;
    impl Drop for KillGuest {
        fn drop(&mut self) {
            let _ = Command::new("pkill")
                .args(["-f", "guest=iscsiguest,"])
                .status();
        }
    }
    let _reap = KillGuest;
    let uri = d.uri();
    let dir = d.root.path();
    let pool = write(dir, "ip.xml", &iscsi_pool_xml("ipool", &t, None));
    ok(&uri, &["pool-define", &pool]);
    ok(&uri, &["pool-start", "ipool"]);
    let vols = ok(&uri, &["vol-list", "ipool"]);
    assert!(vols.contains("unit:0:0:2"), "{vols}");

    let serial = dir.join("serial.log");
    let xml = format!(
        "<domain type='qemu'><name>iscsiguest</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
         <cmdline>console=ttyS0 quiet panic=-1</cmdline></os><features><acpi/></features>\
         <devices><serial type='file'><source path='{s}'/></serial>\
         <disk type='network' device='disk'><driver name='qemu' type='raw'/>\
         <source protocol='iscsi' name='{iqn}/1'><host name='127.0.0.1' port='{port}'/></source>\
         <target dev='vda' bus='virtio'/></disk>\
         <disk type='volume' device='disk'><driver name='qemu' type='raw'/>\
         <source pool='ipool' volume='unit:0:0:2'/>\
         <target dev='vdb' bus='virtio'/></disk></devices></domain>",
        k = g.join("vmlinux").display(),
        i = g.join("initrd.img").display(),
        s = serial.display(),
        iqn = t.iqn,
        port = t.port,
    );
    let file = write(dir, "iscsiguest.xml", &xml);
    ok(&uri, &["define", &file]);
    let native = ok(&uri, &["domxml-to-native", "qemu-argv", &file]);
    assert!(
        native.contains(&format!(
            "\"driver\":\"iscsi\",\"portal\":\"127.0.0.1:{}\",\"target\":\"{}\",\"lun\":1,\"transport\":\"tcp\"",
            t.port, t.iqn
        )),
        "{native}"
    );
    assert!(
        native.contains(&format!(
            "\"driver\":\"iscsi\",\"portal\":\"127.0.0.1:{}\",\"target\":\"{}\",\"lun\":2,\"transport\":\"tcp\",\"initiator-name\":\"iqn.2026-12.org.rvirt:initiator\"",
            t.port, t.iqn
        )),
        "{native}"
    );
    ok(&uri, &["start", "iscsiguest"]);
    let log = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !log().contains("GUEST-READY") {
        assert!(Instant::now() < deadline, "no GUEST-READY: {}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        log().contains("DISK-MARKER: VIRT-DISK-MARKER"),
        "the guest read its disk marker from the LUN: {}",
        log()
    );
    assert!(
        log().contains("DISK-MARKER-vdb: ISCSI-DIRECT-VOL"),
        "the guest read the iscsi-direct volume: {}",
        log()
    );
    ok(&uri, &["destroy", "iscsiguest"]);
    ok(&uri, &["undefine", "iscsiguest"]);
    ok(&uri, &["pool-destroy", "ipool"]);
}

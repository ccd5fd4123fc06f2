//! Live migration of a QEMU guest between two rvirtd daemons (two `--root`s on this
//! machine stand for two hosts; the stream runs over TCP on this machine) with unmodified
//! `virsh migrate`: the client-driven flow and `--p2p`, `--persistent` and
//! `--undefinesource`; the guest keeps running on the destination (its uptime continues,
//! it did not boot again) and the source no longer lists it. A migration slowed down with
//! `--bandwidth` is cancelled with `domjobabort`, then one whose destination QEMU is
//! killed mid-way fails: both times the guest runs on at the source. With
//! `--copy-storage-all` the disk goes along through QEMU's NBD server into the
//! destination's own (empty) image.

use super::Daemon;
use super::qemu::{ok, tools_missing, virsh, wait_for};
use super::qemu_save::{Console, guest_xml};
use rvirt_tests::guest;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Kills (SIGKILL) every QEMU whose command line names `dir` when dropped: the guests of
/// a test end with it, whatever the test did.
struct QemuReaper(PathBuf);

impl Drop for QemuReaper {
    fn drop(&mut self) {
        for pid in qemu_pids(&self.0.to_string_lossy(), None) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// The pids of QEMU processes whose command line contains `needle` (and `also`).
fn qemu_pids(needle: &str, also: Option<&str>) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains("qemu-system")
            && cmd.contains(needle)
            && also.is_none_or(|a| cmd.contains(a))
        {
            pids.push(pid);
        }
    }
    pids
}

fn bin_dir_has_qemu_plugin() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        bin_dir.join("librvirt_plugin_qemu.so").is_file(),
        "the qemu plugin is missing next to rvirtd: build rvirt-plugin-qemu first"
    );
}

/// A qcow2 copy of the test guest's disk in `dir` (shared storage: both daemons use it).
fn disk_in(dir: &Path, g: &Path) -> PathBuf {
    let disk = dir.join("disk.qcow2");
    let conv = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(g.join("disk.raw"))
        .arg(&disk)
        .output()
        .unwrap();
    assert!(conv.status.success(), "{conv:?}");
    disk
}

fn uri_of(d: &Daemon) -> String {
    format!("qemu+unix:///system?socket={}", d.socket().display())
}

fn listed(uri: &str, name: &str) -> bool {
    ok(uri, &["list", "--all", "--name"])
        .lines()
        .any(|l| l.trim() == name)
}

fn reason(uri: &str, name: &str) -> String {
    ok(uri, &["domstate", "--reason", name]).trim().to_string()
}

/// The domain's definition on `uri` with its serial socket `from` moved to `to`: the
/// `--xml` of a migration, as host-specific paths differ between hosts (here the two
/// "hosts" share one file system, and a QEMU removes its socket path when it exits).
fn dest_xml(uri: &str, name: &str, from: &Path, to: &Path, dir: &Path) -> PathBuf {
    let xml = ok(uri, &["dumpxml", "--inactive", name]);
    let from = from.to_string_lossy();
    assert!(xml.contains(from.as_ref()), "{xml}");
    let path = dir.join(format!(
        "{name}-{}.xml",
        to.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, xml.replace(from.as_ref(), &to.to_string_lossy())).unwrap();
    path
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn virsh_migrates_a_running_guest_live_between_two_daemons_and_back_peer_to_peer() {
    if tools_missing() {
        return;
    }
    bin_dir_has_qemu_plugin();
    let g = guest();
    let src = Daemon::start();
    let dst = Daemon::start();
    let (a, b) = (uri_of(&src), uri_of(&dst));
    let shared = tempfile::tempdir().unwrap();
    let _reaper = QemuReaper(shared.path().to_path_buf());
    let disk = disk_in(shared.path(), &g);
    let sock = shared.path().join("serial-a.sock");
    let sock_b = shared.path().join("serial-b.sock");
    let file = shared.path().join("vmig.xml");
    std::fs::write(&file, guest_xml("vmig", &g, &sock, &disk)).unwrap();
    ok(&a, &["define", file.to_str().unwrap()]);
    ok(&a, &["start", "vmig"]);
    let mut con = Console::connect(&sock);
    wait_for("GUEST-READY", Duration::from_secs(120), || {
        con.text().contains("GUEST-READY")
    });
    let before = con.uptime("before");

    // client-driven: virsh talks to both daemons
    let to_b = dest_xml(&a, "vmig", &sock, &sock_b, shared.path());
    let t0 = Instant::now();
    ok(
        &a,
        &[
            "migrate",
            "--live",
            "--persistent",
            "--undefinesource",
            "--xml",
            to_b.to_str().unwrap(),
            "vmig",
            &b,
        ],
    );
    let took = t0.elapsed();
    eprintln!("client-driven migration took {took:?}");
    assert_eq!(reason(&b, "vmig"), "running (migrated)");
    assert!(!listed(&a, "vmig"), "the source no longer lists it");
    let info = ok(&b, &["dominfo", "vmig"]);
    assert!(
        info.lines()
            .any(|l| l.starts_with("Persistent:") && l.ends_with("yes")),
        "--persistent defined it on the destination: {info}"
    );
    let mut con_b = Console::connect(&sock_b);
    let after = con_b.uptime("after");
    assert!(after >= before, "uptime continues: {before} then {after}");
    assert!(
        !con_b.text().contains("GUEST-READY"),
        "the guest did not boot again"
    );
    let job = ok(&b, &["domjobinfo", "vmig"]);
    assert!(
        job.contains("None"),
        "no job runs on the destination: {job}"
    );
    let done = ok(&b, &["domjobinfo", "--completed", "vmig"]);
    assert!(
        done.contains("Incoming migration") && done.contains("Total downtime"),
        "the guest's pause, source stop to destination resume: {done}"
    );

    // peer-to-peer back: the destination daemon drives the migration itself
    let to_a = dest_xml(&b, "vmig", &sock_b, &sock, shared.path());
    ok(
        &b,
        &[
            "migrate",
            "--live",
            "--p2p",
            "--persistent",
            "--undefinesource",
            "--xml",
            to_a.to_str().unwrap(),
            "vmig",
            &a,
        ],
    );
    assert_eq!(reason(&a, "vmig"), "running (migrated)");
    assert!(!listed(&b, "vmig"), "the p2p source no longer lists it");
    let mut con_a = Console::connect(&sock);
    let back = con_a.uptime("back");
    assert!(back >= after, "uptime continues: {after} then {back}");
    assert!(!con_a.text().contains("GUEST-READY"), "no new boot");

    // read-only connections may not migrate
    let ro = format!("qemu+unix:///system?socket={}", src.socket_ro().display());
    let o = virsh(&ro, &["migrate", "--live", "vmig", &b]);
    assert!(!o.status.success(), "a read-only client migrated");
    assert!(text(&o).contains("read only"), "{}", text(&o));
    ok(&a, &["destroy", "vmig"]);
}

/// `virsh migrate` started in the background.
fn spawn_migrate(uri: &str, args: &[&str]) -> Child {
    Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .arg("migrate")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run virsh")
}

#[test]
fn an_aborted_migration_or_one_whose_destination_dies_leaves_the_guest_running_at_the_source() {
    if tools_missing() {
        return;
    }
    bin_dir_has_qemu_plugin();
    let g = guest();
    let src = Daemon::start();
    let dst = Daemon::start();
    let (a, b) = (uri_of(&src), uri_of(&dst));
    let shared = tempfile::tempdir().unwrap();
    let _reaper = QemuReaper(shared.path().to_path_buf());
    let disk = disk_in(shared.path(), &g);
    let sock = shared.path().join("serial-a.sock");
    let sock_b = shared.path().join("serial-b.sock");
    let file = shared.path().join("vslow.xml");
    std::fs::write(&file, guest_xml("vslow", &g, &sock, &disk)).unwrap();
    ok(&a, &["define", file.to_str().unwrap()]);
    ok(&a, &["start", "vslow"]);
    let mut con = Console::connect(&sock);
    wait_for("GUEST-READY", Duration::from_secs(120), || {
        con.text().contains("GUEST-READY")
    });
    let before = con.uptime("before");

    // 1 MiB/s: the migration lasts long enough to be watched and cancelled
    let to_b = dest_xml(&a, "vslow", &sock, &sock_b, shared.path());
    let slow = [
        "--live",
        "--bandwidth",
        "1",
        "--xml",
        to_b.to_str().unwrap(),
        "vslow",
        b.as_str(),
    ];
    let child = spawn_migrate(&a, &slow);
    wait_for("the migration job", Duration::from_secs(60), || {
        ok(&a, &["domjobinfo", "vslow"]).contains("Unbounded")
    });
    assert!(listed(&b, "vslow"), "the destination prepared the guest");
    let job = ok(&a, &["domjobinfo", "vslow"]);
    assert!(job.contains("Outgoing migration"), "{job}");
    ok(&a, &["domjobabort", "vslow"]);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "an aborted migration succeeded");
    assert!(text(&out).contains("canceled by client"), "{}", text(&out));
    wait_for(
        "the destination to drop the guest",
        Duration::from_secs(30),
        || !listed(&b, "vslow"),
    );
    assert_eq!(ok(&a, &["domstate", "vslow"]).trim(), "running");
    let mid = con.uptime("after-abort");
    assert!(mid >= before, "the guest ran on: {before} then {mid}");

    // the destination's QEMU killed mid-way
    let child = spawn_migrate(&a, &slow);
    wait_for("the migration job", Duration::from_secs(60), || {
        ok(&a, &["domjobinfo", "vslow"]).contains("Unbounded")
    });
    let incoming = qemu_pids(&shared.path().to_string_lossy(), Some("-incoming"));
    assert_eq!(incoming.len(), 1, "one destination QEMU: {incoming:?}");
    let killed = Command::new("kill")
        .arg("-9")
        .arg(incoming[0].to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the migration succeeded without its destination"
    );
    assert_eq!(
        ok(&a, &["domstate", "vslow"]).trim(),
        "running",
        "{}",
        text(&out)
    );
    wait_for(
        "the destination to drop the guest",
        Duration::from_secs(30),
        || !listed(&b, "vslow"),
    );
    let after = con.uptime("after-kill");
    assert!(after >= mid, "the guest ran on: {mid} then {after}");
    assert!(
        !con.text().contains("GUEST-READY\r\nGUEST-READY"),
        "no reboot"
    );
    let job = ok(&a, &["domjobinfo", "vslow", "--completed"]);
    assert!(job.contains("Failed"), "{job}");
    ok(&a, &["destroy", "vslow"]);
}

#[test]
fn copy_storage_all_moves_the_disk_into_the_destinations_own_image() {
    if tools_missing() {
        return;
    }
    bin_dir_has_qemu_plugin();
    let g = guest();
    let src = Daemon::start();
    let dst = Daemon::start();
    let (a, b) = (uri_of(&src), uri_of(&dst));
    let shared = tempfile::tempdir().unwrap();
    let _reaper = QemuReaper(shared.path().to_path_buf());
    let disk = disk_in(shared.path(), &g);
    let sock = shared.path().join("serial-a.sock");
    let sock_b = shared.path().join("serial-b.sock");
    let file = shared.path().join("vcopy.xml");
    std::fs::write(&file, guest_xml("vcopy", &g, &sock, &disk)).unwrap();
    ok(&a, &["define", file.to_str().unwrap()]);
    ok(&a, &["start", "vcopy"]);
    let mut con = Console::connect(&sock);
    wait_for("GUEST-READY", Duration::from_secs(120), || {
        con.text().contains("GUEST-READY")
    });
    let before = con.uptime("before");

    // the destination's own image, empty, of the same size (libvirt requires it to exist)
    let disk_b = shared.path().join("disk-b.qcow2");
    let info = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&disk)
        .output()
        .unwrap();
    let size = String::from_utf8_lossy(&info.stdout)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("\"virtual-size\": ")
                .map(|v| v.trim_end_matches(',').to_string())
        })
        .expect("virtual size");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk_b)
        .arg(&size)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let to_b = dest_xml(&a, "vcopy", &sock, &sock_b, shared.path());
    let xml = std::fs::read_to_string(&to_b).unwrap();
    std::fs::write(
        &to_b,
        xml.replace(&*disk.to_string_lossy(), &disk_b.to_string_lossy()),
    )
    .unwrap();
    ok(
        &a,
        &[
            "migrate",
            "--live",
            "--copy-storage-all",
            "--xml",
            to_b.to_str().unwrap(),
            "vcopy",
            &b,
        ],
    );
    assert_eq!(reason(&b, "vcopy"), "running (migrated)");
    assert_eq!(reason(&a, "vcopy"), "shut off (migrated)");
    let live = ok(&b, &["dumpxml", "vcopy"]);
    assert!(live.contains(&*disk_b.to_string_lossy()), "{live}");
    // the copy holds what the source image held (the source QEMU is gone)
    let cmp = Command::new("qemu-img")
        .args(["compare", "-U"])
        .arg(&disk)
        .arg(&disk_b)
        .output()
        .unwrap();
    assert!(
        cmp.status.success(),
        "the images differ: {}",
        String::from_utf8_lossy(&cmp.stdout)
    );
    let mut con_b = Console::connect(&sock_b);
    let after = con_b.uptime("after");
    assert!(after >= before, "uptime continues: {before} then {after}");
    assert!(!con_b.text().contains("GUEST-READY"), "no new boot");
    ok(&b, &["destroy", "vcopy"]);
}

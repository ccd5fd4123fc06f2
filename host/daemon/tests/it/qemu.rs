//! Unmodified `virsh` over `qemu+unix:///system` through rvirtd: it boots the shared test
//! guest under the QEMU plugin (TCG), and a restarted daemon reattaches to the running VM.
//! Every path, QEMU's status files and logs included, stays under the daemon's `--root`.

use super::{Daemon, missing};
use std::{
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant},
};

use rvirt_tests::guest;

pub(crate) fn virsh(uri: &str, args: &[&str]) -> Output {
    Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .expect("cannot run virsh")
}

pub(crate) fn ok(uri: &str, args: &[&str]) -> String {
    let o = virsh(uri, args);
    assert!(
        o.status.success(),
        "virsh {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn state(uri: &str, name: &str) -> String {
    ok(uri, &["domstate", name]).trim().to_string()
}

pub(crate) fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether virsh or QEMU is missing (loudly, see [`missing`]).
pub(crate) fn tools_missing() -> bool {
    missing("virsh", Command::new("virsh").arg("--version"))
        || missing(
            "qemu-system-x86_64",
            Command::new("qemu-system-x86_64").arg("--version"),
        )
}

/// The definition of domain `name` booting the shared test guest `g` under TCG, its
/// serial console written to `serial`, `disk` (of `format`) as `vda`.
pub(crate) fn guest_xml(
    name: &str,
    g: &std::path::Path,
    serial: &std::path::Path,
    disk: &std::path::Path,
    format: &str,
) -> String {
    format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
         <cmdline>console=ttyS0 quiet panic=-1</cmdline></os><features><acpi/></features>\
         <devices><serial type='file'><source path='{s}'/></serial>\
         <disk type='file' device='disk'><driver name='qemu' type='{format}'/><source file='{d}'/><target dev='vda' bus='virtio'/></disk>\
         <interface type='user'><model type='virtio'/></interface></devices></domain>",
        k = g.join("vmlinux").display(),
        i = g.join("initrd.img").display(),
        s = serial.display(),
        d = disk.display(),
    )
}

#[test]
fn virsh_boots_the_guest_over_qemu_unix_and_a_restarted_daemon_reattaches() {
    if tools_missing() {
        return;
    }
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        bin_dir.join("librvirt_plugin_qemu.so").is_file(),
        "the qemu plugin is missing next to rvirtd: run `cargo build --workspace` first"
    );
    let g = guest();
    let mut d = Daemon::start();
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let root = d.root.path().to_path_buf();
    let disk = root.join("disk.raw");
    std::fs::copy(g.join("disk.raw"), &disk).unwrap();
    let serial = root.join("serial.log");
    let xml = guest_xml("vguest", &g, &serial, &disk, "raw");
    let file = root.join("vguest.xml");
    std::fs::write(&file, xml).unwrap();

    assert!(ok(&uri, &["define", file.to_str().unwrap()]).contains("vguest"));
    assert_eq!(state(&uri, "vguest"), "shut off");
    ok(&uri, &["start", "vguest"]);
    let log = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    wait_for(
        "GUEST-READY on the serial console",
        Duration::from_secs(90),
        || log().contains("GUEST-READY"),
    );
    assert!(
        log().contains("VIRT-DISK-MARKER"),
        "the guest saw its disk: {}",
        log()
    );
    assert_eq!(state(&uri, "vguest"), "running");
    let info = ok(&uri, &["dominfo", "vguest"]);
    assert!(info.contains("262144 KiB"), "{info}");

    // The driver's files live under the daemon's root, not under /etc, /var or /run.
    let status = root.join("run/rvirt/qemu/vguest.status");
    assert!(
        status.is_file(),
        "status file under --root: {}",
        status.display()
    );
    assert!(root.join("etc/rvirt/qemu/vguest.xml").is_file());

    ok(&uri, &["suspend", "vguest"]);
    assert_eq!(state(&uri, "vguest"), "paused");
    ok(&uri, &["resume", "vguest"]);
    assert_eq!(state(&uri, "vguest"), "running");

    // The VM outlives the daemon; the next daemon finds it running.
    d.restart();
    assert_eq!(
        state(&uri, "vguest"),
        "running",
        "reattached after a daemon restart"
    );
    assert!(ok(&uri, &["dumpxml", "vguest"]).contains("<domain type='qemu' id="));

    ok(&uri, &["shutdown", "vguest"]);
    wait_for("ACPI shutdown", Duration::from_secs(60), || {
        state(&uri, "vguest") == "shut off"
    });
    let reason = ok(&uri, &["domstate", "--reason", "vguest"]);
    assert!(reason.contains("shut off (shutdown)"), "{reason}");
    ok(&uri, &["undefine", "vguest"]);
    assert!(!virsh(&uri, &["domstate", "vguest"]).status.success());
}

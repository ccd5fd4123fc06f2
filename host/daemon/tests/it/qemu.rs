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

    // Memory and vCPU counts (plugin API 1.7): the balloon of the running guest, the
    // persistent definition on disk; what QEMU cannot do is refused by name.
    ok(&uri, &["setmem", "vguest", "131072", "--live"]);
    let info = ok(&uri, &["dominfo", "vguest"]);
    assert!(info.contains("Used memory:    131072 KiB"), "{info}");
    let e = virsh(&uri, &["setmem", "vguest", "524288", "--live"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("higher than max memory"));
    let e = virsh(&uri, &["setmaxmem", "vguest", "393216", "--live"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("maximum memory on an active domain"));
    ok(&uri, &["setmaxmem", "vguest", "393216", "--config"]);
    ok(&uri, &["setvcpus", "vguest", "2", "--config", "--maximum"]);
    let e = virsh(&uri, &["setvcpus", "vguest", "2", "--live"]);
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("max allowable vcpus for the live domain"),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
    let inactive = ok(&uri, &["dumpxml", "vguest", "--inactive"]);
    assert!(
        inactive.contains("<memory unit='KiB'>393216</memory>"),
        "{inactive}"
    );
    assert!(
        inactive.contains("<vcpu placement='static' current='1'>2</vcpu>"),
        "{inactive}"
    );
    let on_disk = std::fs::read_to_string(root.join("etc/rvirt/qemu/vguest.xml")).unwrap();
    assert!(on_disk.contains("393216"), "{on_disk}");
    // the running guest keeps its own until it stops
    assert!(ok(&uri, &["dominfo", "vguest"]).contains("Max memory:     262144 KiB"));

    // Disk hot-plug (plugin API 1.7): a qcow2 disk into the running guest and out again,
    // and into the persistent definition.
    let extra = root.join("extra.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&extra)
        .arg("16M")
        .status()
        .unwrap();
    assert!(st.success());
    let disk_xml = root.join("extra-disk.xml");
    std::fs::write(
        &disk_xml,
        format!(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
             <source file='{}'/><target dev='vdb' bus='virtio'/></disk>",
            extra.display()
        ),
    )
    .unwrap();
    let disk_arg = disk_xml.to_str().unwrap();
    ok(&uri, &["attach-device", "vguest", disk_arg, "--live"]);
    let blk = ok(&uri, &["domblklist", "vguest"]);
    assert!(blk.contains("vdb") && blk.contains("extra.qcow2"), "{blk}");
    assert!(ok(&uri, &["dumpxml", "vguest"]).contains("<alias name='virtio-disk1'/>"));
    let e = virsh(&uri, &["attach-device", "vguest", disk_arg, "--live"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("target 'vdb' already exists"));
    // python-libvirt hears the removal (VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED) with the alias
    let mut listener = DeviceRemovedListener::start(&uri, "vguest");
    ok(&uri, &["detach-device", "vguest", disk_arg, "--live"]);
    assert!(!ok(&uri, &["domblklist", "vguest"]).contains("vdb"));
    assert_eq!(listener.wait(), "removed vguest virtio-disk1");
    // plugged again after the unplug: the block nodes were released
    ok(&uri, &["attach-device", "vguest", disk_arg, "--live"]);
    ok(&uri, &["detach-device", "vguest", disk_arg, "--live"]);
    ok(&uri, &["attach-device", "vguest", disk_arg, "--config"]);
    assert!(ok(&uri, &["dumpxml", "vguest", "--inactive"]).contains("extra.qcow2"));
    assert!(!ok(&uri, &["domblklist", "vguest"]).contains("vdb"));
    ok(&uri, &["detach-device", "vguest", disk_arg, "--config"]);
    let other = root.join("watchdog.xml");
    std::fs::write(&other, "<watchdog model='i6300esb' action='reset'/>").unwrap();
    let e = virsh(
        &uri,
        &["attach-device", "vguest", other.to_str().unwrap(), "--live"],
    );
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("disks and interfaces only"),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );

    ok(&uri, &["shutdown", "vguest"]);
    wait_for("ACPI shutdown", Duration::from_secs(60), || {
        state(&uri, "vguest") == "shut off"
    });
    let reason = ok(&uri, &["domstate", "--reason", "vguest"]);
    assert!(reason.contains("shut off (shutdown)"), "{reason}");
    ok(&uri, &["undefine", "vguest"]);
    assert!(!virsh(&uri, &["domstate", "vguest"]).status.success());
}

/// A python-libvirt client registered for `VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED` on one
/// domain: `start` returns once the registration is made, `wait` gives the first event.
pub(crate) struct DeviceRemovedListener {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

const DEVICE_REMOVED_PY: &str = r#"
import sys, time, libvirt
libvirt.virEventRegisterDefaultImpl()
conn = libvirt.open(sys.argv[1])
dom = conn.lookupByName(sys.argv[2])
got = []
def removed(conn, dom, alias, opaque):
    got.append("removed %s %s" % (dom.name(), alias))
conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, removed, None)
print("registered", flush=True)
deadline = time.time() + 60
while not got and time.time() < deadline:
    libvirt.virEventRunDefaultImpl()
print(got[0] if got else "timeout", flush=True)
"#;

impl DeviceRemovedListener {
    pub(crate) fn start(uri: &str, dom: &str) -> Self {
        use std::io::BufRead;
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", DEVICE_REMOVED_PY, uri, dom])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 with python-libvirt");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "registered",
            "the python listener failed to register"
        );
        DeviceRemovedListener { child, out }
    }

    pub(crate) fn wait(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let _ = self.child.wait();
        line.trim().to_string()
    }
}

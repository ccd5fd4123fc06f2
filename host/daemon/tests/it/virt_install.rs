//! Unmodified `virt-install` through rvirtd, the way an operator makes a VM: it looks up
//! the pool, creates the disk volume there, defines and starts the domain (with the USB
//! controllers virt-install writes for `pc` machines), and the guest boots from the
//! shared test kernel and sees the new disk. A failed install removes the volume it made,
//! and `virsh undefine --remove-all-storage` deletes the volume through the pool.
//! A q35 guest as virt-install writes it for a modern Linux (fourteen `pcie-root-port`s
//! and a guest agent channel, none with an index, address or path) starts and boots too.

use super::{Daemon, missing};
use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use rvirt_tests::guest;

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("cannot run the client")
}

fn virsh(uri: &str, args: &[&str]) -> Output {
    run(Command::new("virsh").arg("-c").arg(uri).args(args))
}

fn ok(what: &str, o: Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// virt-install with the options every case here shares; its logs go under `home`.
fn virt_install(uri: &str, home: &Path, args: &[&str]) -> Output {
    virt_install_os(uri, home, "detect=on,require=off", args)
}

/// [`virt_install`] with `--osinfo osinfo`.
fn virt_install_os(uri: &str, home: &Path, osinfo: &str, args: &[&str]) -> Output {
    run(Command::new("virt-install")
        .env("HOME", home)
        .args(["--connect", uri, "--memory", "256", "--vcpus", "1"])
        .args(["--osinfo", osinfo, "--virt-type", "qemu"])
        .args(["--noautoconsole", "--graphics", "none", "--network", "none"])
        .args(args))
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What both virt-install tests start from: the shared guest built, a daemon, its
/// `qemu+unix` URI and a started `default` dir pool on `ROOT/images`; `None` (after saying
/// so) where a tool is missing.
struct Setup {
    g: std::path::PathBuf,
    d: Daemon,
    uri: String,
    root: std::path::PathBuf,
    images: std::path::PathBuf,
    home: std::path::PathBuf,
}

fn setup() -> Option<Setup> {
    if missing(
        "virt-install",
        Command::new("virt-install").arg("--version"),
    ) || missing("virsh", Command::new("virsh").arg("--version"))
        || missing(
            "qemu-system-x86_64",
            Command::new("qemu-system-x86_64").arg("--version"),
        )
        || missing("qemu-img", Command::new("qemu-img").arg("--version"))
    {
        return None;
    }
    let g = guest();
    let d = Daemon::start();
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let root = d.root.path().to_path_buf();
    let images = root.join("images");
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let images_s = images.to_str().unwrap();
    ok(
        "pool-define-as",
        virsh(
            &uri,
            &["pool-define-as", "default", "dir", "--target", images_s],
        ),
    );
    ok("pool-build", virsh(&uri, &["pool-build", "default"]));
    ok("pool-start", virsh(&uri, &["pool-start", "default"]));
    Some(Setup {
        g,
        d,
        uri,
        root,
        images,
        home,
    })
}

#[test]
fn virt_install_creates_the_disk_in_a_pool_and_boots_the_guest() {
    // (the daemon lives as long as `_daemon`)
    let Some(Setup {
        g,
        d: _daemon,
        uri,
        root,
        images,
        home,
    }) = setup()
    else {
        return;
    };

    // A failed install (a controller model the driver refuses) removes the disk it made.
    let o = virt_install(
        &uri,
        &home,
        &[
            "--name",
            "broken",
            "--import",
            "--disk",
            "size=0.02,format=qcow2",
            "--controller",
            "type=usb,model=ehci",
        ],
    );
    assert!(
        !o.status.success(),
        "an unsupported controller must fail the install"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("USB controller model 'ehci' is not supported"),
        "{err}"
    );
    assert!(
        !images.join("broken.qcow2").exists(),
        "the failed install left its disk behind"
    );
    let vols = ok("vol-list", virsh(&uri, &["vol-list", "default"]));
    assert!(!vols.contains("broken"), "{vols}");

    // The real install: a new qcow2 volume in the pool, the test kernel booted directly.
    let serial = root.join("serial.log");
    let boot = format!(
        "kernel={},initrd={},kernel_args=console=ttyS0 quiet panic=-1",
        g.join("vmlinux").display(),
        g.join("initrd.img").display()
    );
    let serial_arg = format!("file,path={}", serial.display());
    ok(
        "virt-install",
        virt_install(
            &uri,
            &home,
            &[
                "--name",
                "vi1",
                "--import",
                "--boot",
                &boot,
                "--disk",
                "size=0.05,format=qcow2,bus=virtio",
                "--serial",
                &serial_arg,
            ],
        ),
    );
    let vol = images.join("vi1.qcow2");
    let info = ok(
        "qemu-img info",
        run(Command::new("qemu-img")
            .args(["info", "--output=json", "-U"])
            .arg(&vol)),
    );
    assert!(info.contains("\"format\": \"qcow2\""), "{info}");
    let path = ok(
        "vol-path",
        virsh(&uri, &["vol-path", "--pool", "default", "vi1.qcow2"]),
    );
    assert_eq!(path.trim(), vol.to_str().unwrap());
    let state = ok("domstate", virsh(&uri, &["domstate", "vi1"]));
    assert_eq!(state.trim(), "running");
    let xml = ok("dumpxml", virsh(&uri, &["dumpxml", "vi1"]));
    assert!(
        xml.contains("ich9-uhci3") && xml.contains("function='0x7'"),
        "{xml}"
    );

    let log = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    wait_for(
        "GUEST-READY on the serial console",
        Duration::from_secs(90),
        || log().contains("GUEST-READY"),
    );
    // 0.05 GiB = 53,687,091 bytes, which qemu-img rounds up to whole 512-byte sectors
    assert!(
        log().contains("GUEST-DISK: vda sectors=104858"),
        "the guest sees its disk:\n{}",
        log()
    );

    ok("destroy", virsh(&uri, &["destroy", "vi1"]));
    ok(
        "undefine",
        virsh(&uri, &["undefine", "vi1", "--remove-all-storage"]),
    );
    assert!(
        !vol.exists(),
        "undefine --remove-all-storage left the volume"
    );
    let vols = ok("vol-list", virsh(&uri, &["vol-list", "default"]));
    assert!(!vols.contains("vi1"), "{vols}");
}

/// `virt-install --osinfo linux2022 --machine q35`: the root ports it lists without
/// index get libvirt's indexes, addresses (00:01.0-00:02.5: no video), chassis and
/// ports; the PCIe devices sit on them; the guest agent gets its socket; the guest
/// boots from the shared kernel under TCG and sees its virtio disk.
#[test]
fn virt_install_q35_guest_with_root_ports_boots() {
    // (the daemon lives as long as `_daemon`)
    let Some(Setup {
        g,
        d: _daemon,
        uri,
        root,
        images: _,
        home,
    }) = setup()
    else {
        return;
    };
    let serial = root.join("serial-q35.log");
    let boot = format!(
        "kernel={},initrd={},kernel_args=console=ttyS0 quiet panic=-1",
        g.join("vmlinux").display(),
        g.join("initrd.img").display()
    );
    let serial_arg = format!("file,path={}", serial.display());
    ok(
        "virt-install --machine q35",
        virt_install_os(
            &uri,
            &home,
            "linux2022",
            &[
                "--name",
                "viq35",
                "--machine",
                "q35",
                "--import",
                "--boot",
                &boot,
                "--disk",
                "size=0.05,format=qcow2,bus=virtio",
                "--serial",
                &serial_arg,
            ],
        ),
    );
    let state = ok("domstate", virsh(&uri, &["domstate", "viq35"]));
    assert_eq!(state.trim(), "running");
    let xml = ok("dumpxml", virsh(&uri, &["dumpxml", "viq35"]));
    let ports = xml.matches("model='pcie-root-port'").count();
    assert!(ports >= 14, "{ports} root ports:\n{xml}");
    assert!(
        !xml.contains("<controller type='pci' model="),
        "a controller without index:\n{xml}"
    );
    for want in [
        "<controller type='pci' index='1' model='pcie-root-port'>",
        "<target chassis='1' port='0x8'/>",
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0' multifunction='on'/>",
        "<controller type='pci' index='14' model='pcie-root-port'>",
        "<target chassis='14' port='0x15'/>",
        "org.qemu.guest_agent.0",
    ] {
        assert!(xml.contains(want), "{want} missing:\n{xml}");
    }
    // the virtio disk sits alone on a root port's bus
    let disk = &xml[xml.find("<disk").unwrap()..xml.find("</disk>").unwrap()];
    assert!(
        disk.contains(
            "<address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>"
        ),
        "{disk}"
    );
    // the guest agent's socket is set and exists
    let ch = &xml[xml.find("<channel type='unix'>").unwrap()..];
    let path = ch
        .split("path='")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .unwrap_or_else(|| panic!("no agent socket path:\n{ch}"));
    assert!(path.ends_with("org.qemu.guest_agent.0"), "{path}");
    assert!(Path::new(path).exists(), "{path} does not exist");

    let log = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    wait_for(
        "GUEST-READY on the serial console",
        Duration::from_secs(120),
        || log().contains("GUEST-READY"),
    );
    assert!(
        log().contains("GUEST-DISK: vda sectors=104858"),
        "the guest sees its disk:\n{}",
        log()
    );
    ok("destroy", virsh(&uri, &["destroy", "viq35"]));
    ok(
        "undefine",
        virsh(&uri, &["undefine", "viq35", "--remove-all-storage"]),
    );
}

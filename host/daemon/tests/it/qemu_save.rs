//! Save/restore, managed save and statistics of the QEMU plugin through rvirtd with
//! unmodified `virsh`: the shared test guest boots under TCG with its serial console on
//! a unix socket, so the test asks the guest its uptime before the save and after the
//! restore (it continues, and the guest did not boot again); `managedsave` then `start`
//! resumes it the same way; `domstats` numbers move between two reads; `domblkstat`,
//! `domifstat`, `dommemstat` and `domjobinfo` answer numbers.

use super::Daemon;
use super::qemu::{ok, state, tools_missing, wait_for};
use rvirt_tests::guest;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The guest's serial console: what it printed since the connection, and a way to type.
pub(crate) struct Console {
    stream: UnixStream,
    seen: Arc<Mutex<String>>,
}

impl Console {
    pub(crate) fn connect(sock: &Path) -> Console {
        let t0 = Instant::now();
        let stream = loop {
            match UnixStream::connect(sock) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(
                        t0.elapsed() < Duration::from_secs(30),
                        "cannot connect to the serial socket {}: {e}",
                        sock.display()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let seen = Arc::new(Mutex::new(String::new()));
        let mut reader = stream.try_clone().unwrap();
        let into = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Console { stream, seen }
    }

    pub(crate) fn text(&self) -> String {
        self.seen.lock().unwrap().clone()
    }

    /// The guest's uptime in seconds (`/proc/uptime`), asked on the console.
    pub(crate) fn uptime(&mut self, tag: &str) -> f64 {
        let marker = format!("UPTIME-{tag}:");
        // the shell echoes the command line: the answer is the line that starts with it
        self.stream
            .write_all(format!("echo {marker}$(cut -d' ' -f1 /proc/uptime)\n").as_bytes())
            .unwrap();
        let mut found = None;
        wait_for(
            &format!("{marker} on the console"),
            Duration::from_secs(60),
            || {
                let t = self.text();
                found = t
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix(&marker))
                    .find_map(|v| v.trim().parse::<f64>().ok());
                found.is_some()
            },
        );
        found.unwrap()
    }
}

pub(crate) fn guest_xml(name: &str, g: &Path, sock: &Path, disk: &Path) -> String {
    format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
         <cmdline>console=ttyS0 quiet panic=-1</cmdline></os><features><acpi/></features>\
         <devices><serial type='unix'><source mode='bind' path='{s}'/></serial>\
         <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{d}'/><target dev='vda' bus='virtio'/></disk>\
         <interface type='user'><model type='virtio'/></interface><memballoon model='virtio'/></devices></domain>",
        k = g.join("vmlinux").display(),
        i = g.join("initrd.img").display(),
        s = sock.display(),
        d = disk.display(),
    )
}

fn stat(s: &str, key: &str) -> u64 {
    s.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in {s}"))
        .parse()
        .unwrap()
}

#[test]
fn virsh_saves_restores_and_managed_saves_a_running_qemu_guest() {
    if tools_missing() {
        return;
    }
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        bin_dir.join("librvirt_plugin_qemu.so").is_file(),
        "the qemu plugin is missing next to rvirtd: build rvirt-plugin-qemu first"
    );
    let g = guest();
    let d = Daemon::start();
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let root = d.root.path().to_path_buf();
    let disk = root.join("disk.qcow2");
    let conv = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(g.join("disk.raw"))
        .arg(&disk)
        .output()
        .unwrap();
    assert!(conv.status.success(), "{conv:?}");
    let sock = root.join("serial.sock");
    let file = root.join("vsave.xml");
    std::fs::write(&file, guest_xml("vsave", &g, &sock, &disk)).unwrap();
    ok(&uri, &["define", file.to_str().unwrap()]);
    ok(&uri, &["start", "vsave"]);
    let mut con = Console::connect(&sock);
    wait_for("GUEST-READY", Duration::from_secs(120), || {
        con.text().contains("GUEST-READY")
    });

    // Statistics of the running guest: numbers, and moving ones.
    let s1 = ok(&uri, &["domstats", "vsave"]);
    for part in [
        "state.state=1",
        "cpu.time=",
        "balloon.current=262144",
        "balloon.maximum=262144",
        "vcpu.current=1",
        "vcpu.0.time=",
        "net.count=",
        "block.count=1",
        "block.0.name=vda",
        "block.0.rd.reqs=",
    ] {
        assert!(s1.contains(part), "{part} missing in {s1}");
    }
    let _ = con.uptime("warm");
    let s2 = ok(&uri, &["domstats", "vsave"]);
    assert!(
        stat(&s2, "cpu.time") > stat(&s1, "cpu.time"),
        "cpu.time moves:\n{s1}\n{s2}"
    );
    assert!(stat(&s2, "vcpu.0.time") >= stat(&s1, "vcpu.0.time"));
    let blk = ok(&uri, &["domblkstat", "vsave", "vda"]);
    let rd: u64 = blk
        .lines()
        .find_map(|l| l.strip_prefix("vda rd_bytes "))
        .unwrap_or_else(|| panic!("no rd_bytes in {blk}"))
        .trim()
        .parse()
        .unwrap();
    assert!(rd > 0, "the guest read its disk: {blk}");
    let mem = ok(&uri, &["dommemstat", "vsave"]);
    assert!(mem.contains("actual 262144"), "{mem}");
    assert!(mem.contains("rss "), "{mem}");
    let cpu = ok(&uri, &["cpu-stats", "vsave", "--total"]);
    assert!(cpu.contains("cpu_time"), "{cpu}");

    // save: the domain stops with reason "saved", the image has rvirt's header
    let image = root.join("vsave.img");
    let before = con.uptime("before");
    let t_saved = Instant::now();
    let out = ok(&uri, &["save", "vsave", image.to_str().unwrap()]);
    assert!(out.contains("Domain 'vsave' saved to"), "{out}");
    assert_eq!(
        ok(&uri, &["domstate", "--reason", "vsave"]).trim(),
        "shut off (saved)"
    );
    let head = std::fs::read(&image).unwrap();
    assert!(head.starts_with(b"RvirtQemuSaved"), "a complete image");
    let x = ok(&uri, &["save-image-dumpxml", image.to_str().unwrap()]);
    assert!(x.contains("<name>vsave</name>"), "{x}");
    let job = ok(&uri, &["domjobinfo", "vsave", "--completed"]);
    assert!(job.contains("Completed"), "{job}");
    std::thread::sleep(Duration::from_secs(2));

    // restore: the guest runs on from where it was
    ok(&uri, &["restore", image.to_str().unwrap()]);
    assert_eq!(
        ok(&uri, &["domstate", "--reason", "vsave"]).trim(),
        "running (restored)"
    );
    let mut con = Console::connect(&sock);
    let after = con.uptime("after");
    let wall = t_saved.elapsed().as_secs_f64();
    assert!(after >= before, "uptime continues: {before} then {after}");
    assert!(
        after < before + wall,
        "the guest did not run while saved ({before} + {wall} s wall > {after})"
    );
    assert!(!con.text().contains("GUEST-READY"), "no new boot");

    // managedsave, then start resumes
    let before = con.uptime("before-managed");
    let out = ok(&uri, &["managedsave", "vsave"]);
    assert!(out.contains("state saved"), "{out}");
    assert_eq!(
        ok(&uri, &["domstate", "--reason", "vsave"]).trim(),
        "shut off (saved)"
    );
    let list = ok(&uri, &["list", "--all", "--with-managed-save"]);
    assert!(list.contains("vsave"), "{list}");
    let info = ok(&uri, &["dominfo", "vsave"]);
    assert!(
        info.lines()
            .any(|l| l.starts_with("Managed save:") && l.ends_with("yes")),
        "{info}"
    );
    ok(&uri, &["start", "vsave"]);
    assert_eq!(
        ok(&uri, &["domstate", "--reason", "vsave"]).trim(),
        "running (restored)"
    );
    let mut con = Console::connect(&sock);
    let after = con.uptime("after-managed");
    assert!(after >= before, "uptime continues: {before} then {after}");
    assert!(!con.text().contains("GUEST-READY"), "no new boot");
    let list = ok(&uri, &["list", "--all", "--with-managed-save"]);
    assert!(!list.contains("vsave"), "the image is gone: {list}");
    ok(&uri, &["destroy", "vsave"]);
    assert_eq!(state(&uri, "vsave"), "shut off");
}

fn ifstat(out: &str, dev: &str, key: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{dev} {key} ")))
        .unwrap_or_else(|| panic!("no {key} in {out}"))
        .trim()
        .parse()
        .unwrap()
}

const IFSTAT_TEST: &str = "qemu_save::domifstat_and_domstats_count_the_traffic_of_a_bridged_guest";

/// `domifstat` and the `interface` group of `domstats` on a guest whose interface is a TAP
/// on a bridge (in a network namespace of the test's own): the guest's DHCP requests move
/// its transmit counters, seen from the guest's side.
#[test]
fn domifstat_and_domstats_count_the_traffic_of_a_bridged_guest() {
    if tools_missing() {
        return;
    }
    if rvirt_tests::rerun_in_netns(IFSTAT_TEST) {
        return;
    }
    let sh = |cmd: &str| {
        let st = std::process::Command::new("sh")
            .args(["-c", cmd])
            .status()
            .unwrap();
        assert!(st.success(), "{cmd}");
    };
    sh("ip link set lo up && ip link add br-st type bridge && ip link set br-st up");
    let g = guest();
    let d = Daemon::start();
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let root = d.root.path().to_path_buf();
    let serial = root.join("serial.log");
    let file = root.join("vnet.xml");
    std::fs::write(
        &file,
        format!(
            "<domain type='qemu'><name>vnet</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
             <cmdline>console=ttyS0 quiet panic=-1</cmdline></os><features><acpi/></features>\
             <devices><serial type='file'><source path='{s}'/></serial>\
             <interface type='bridge'><source bridge='br-st'/><model type='virtio'/></interface></devices></domain>",
            k = g.join("vmlinux").display(),
            i = g.join("initrd.img").display(),
            s = serial.display(),
        ),
    )
    .unwrap();
    ok(&uri, &["define", file.to_str().unwrap()]);
    ok(&uri, &["start", "vnet"]);
    let log = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    let live = ok(&uri, &["dumpxml", "vnet"]);
    let dev = live
        .split("<target dev='")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .unwrap_or_else(|| panic!("no TAP in {live}"))
        .to_string();
    // before the guest's network is up, then after its DHCP client has asked (the guest
    // transmits the requests whether or not anything answers)
    let before = ok(&uri, &["domifstat", "vnet", &dev]);
    wait_for("GUEST-READY", Duration::from_secs(120), || {
        log().contains("GUEST-READY")
    });
    let after = ok(&uri, &["domifstat", "vnet", &dev]);
    assert!(
        ifstat(&after, &dev, "tx_packets") > ifstat(&before, &dev, "tx_packets"),
        "the guest's DHCP requests are counted:\n{before}\n{after}\nguest: {}",
        log()
    );
    assert!(ifstat(&after, &dev, "tx_bytes") > ifstat(&before, &dev, "tx_bytes"));
    let _ = ifstat(&after, &dev, "rx_packets");
    // by MAC too
    let mac = live
        .split("<mac address='")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .unwrap()
        .to_string();
    let by_mac = ok(&uri, &["domifstat", "vnet", &mac]);
    assert!(by_mac.contains("rx_packets"), "{by_mac}");
    let s = ok(&uri, &["domstats", "vnet", "--interface"]);
    assert!(s.contains("net.count=1"), "{s}");
    assert!(s.contains(&format!("net.0.name={dev}")), "{s}");
    assert!(stat(&s, "net.0.tx.pkts") > 0, "{s}");
    let _ = stat(&s, "net.0.rx.bytes");
    ok(&uri, &["destroy", "vnet"]);
}

//! NIC hot-plug through rvirtd with the real virsh: `attach-interface` / `detach-interface`
//! and `attach-device` / `detach-device` of network (network-bridge plugin) and bridge
//! interfaces on a running TCG guest, `--live`, `--config` and both. The guest's own
//! `/sys/class/net` (read over its serial console) shows the NIC come and go; the host shows
//! the TAP on the bridge and the network's port come and go. The test re-executes itself
//! under `unshare -n`: bridges and TAPs live in a network namespace of its own.

use super::qemu::{ok, virsh, wait_for};
use super::{Daemon, missing};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NAME: &str = "qemu_hotplug::virsh_hotplugs_network_and_bridge_nics_into_a_running_guest";

fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(cmd).args(args).output().expect("run a tool");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Kills whatever still runs with the daemon's root in its command line when the test
/// ends (rvirtd, dnsmasq, QEMU): they would keep the namespace alive.
struct Reap(std::path::PathBuf);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.0.as_os_str())
            .status();
    }
}

/// The guest's serial console over its unix socket: everything it printed, and a way to
/// run a shell command and read what it printed.
struct Console {
    out: Arc<Mutex<String>>,
    w: UnixStream,
    n: u32,
}

impl Console {
    fn connect(path: &Path) -> Console {
        let mut s = None;
        wait_for("the serial socket", Duration::from_secs(20), || {
            s = UnixStream::connect(path).ok();
            s.is_some()
        });
        let s = s.unwrap();
        let mut r = s.try_clone().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Console { out, w: s, n: 0 }
    }

    fn text(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// The MAC addresses of the guest's network devices, as its kernel lists them.
    fn macs(&mut self) -> String {
        self.n += 1;
        let n = self.n;
        // the marker printed differs from the marker typed (the shell echoes input)
        let cmd =
            format!("echo Q{n}-$((7*6)); cat /sys/class/net/eth*/address; echo E{n}-$((7*6))\n");
        self.w.write_all(cmd.as_bytes()).unwrap();
        let (start, end) = (format!("Q{n}-42"), format!("E{n}-42"));
        wait_for("the guest's answer", Duration::from_secs(30), || {
            self.text().contains(&end)
        });
        let t = self.text();
        let a = t.find(&start).unwrap() + start.len();
        let b = t.find(&end).unwrap();
        t[a..b].to_string()
    }
}

impl Console {
    /// [`Console::macs`] until `f` holds for them (the guest takes a moment to probe or
    /// release a PCI device); the last answer.
    fn macs_until(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let t0 = std::time::Instant::now();
        loop {
            let m = self.macs();
            if f(&m) {
                return m;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{what}: the guest lists {m}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn tap_of(live: &str, mac: &str) -> String {
    let at = live.find(mac).unwrap_or_else(|| panic!("{mac} in {live}"));
    live[at..]
        .split("<target dev='")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .unwrap()
        .to_string()
}

fn port_rows(uri: &str, net: &str) -> usize {
    ok(uri, &["net-port-list", net])
        .lines()
        .filter(|l| {
            let t = l.trim();
            t.len() == 36 && t.chars().filter(|c| *c == '-').count() == 4
        })
        .count()
}

#[test]
fn virsh_hotplugs_network_and_bridge_nics_into_a_running_guest() {
    if missing("virsh", Command::new("virsh").arg("--version"))
        || missing("dnsmasq", Command::new("dnsmasq").arg("--version"))
        || missing(
            "qemu-system-x86_64",
            Command::new("qemu-system-x86_64").arg("--version"),
        )
    {
        return;
    }
    let _ = rvirt_tests::guest();
    if rvirt_tests::rerun_in_netns(NAME) {
        return;
    }
    assert!(sh("ip", &["link", "set", "lo", "up"]).0);
    assert!(sh("ip", &["link", "add", "hpbr0", "type", "bridge"]).0);
    assert!(sh("ip", &["link", "set", "hpbr0", "up"]).0);
    let g = rvirt_tests::guest();
    let mut d = Daemon::start();
    let root = d.root.path().to_path_buf();
    let _reap = Reap(root.clone());
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());

    let f = root.join("hpnet.xml");
    std::fs::write(
        &f,
        "<network><name>hpnet</name><bridge name='virbr7'/>\
         <ip address='192.168.157.1' netmask='255.255.255.0'/></network>",
    )
    .unwrap();
    ok(&uri, &["net-define", f.to_str().unwrap()]);
    ok(&uri, &["net-start", "hpnet"]);

    let serial = root.join("serial.sock");
    let dom = root.join("vm.xml");
    std::fs::write(
        &dom,
        format!(
            "<domain type='qemu'><name>hpvm</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
             <cmdline>console=ttyS0 quiet panic=-1 guest.ip=none</cmdline></os><features><acpi/></features>\
             <devices><serial type='unix'><source mode='bind' path='{s}'/></serial>\
             <interface type='user'><mac address='52:54:00:11:11:11'/><model type='virtio'/></interface>\
             </devices></domain>",
            k = g.join("vmlinux").display(),
            i = g.join("initrd.img").display(),
            s = serial.display(),
        ),
    )
    .unwrap();
    ok(&uri, &["define", dom.to_str().unwrap()]);
    ok(&uri, &["start", "hpvm"]);
    let mut con = Console::connect(&serial);
    wait_for("GUEST-READY", Duration::from_secs(120), || {
        con.text().contains("GUEST-READY")
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = con.macs();
    assert!(before.contains("52:54:00:11:11:11"), "{before}");

    // 1. attach-interface --live on a network: a MAC is made, the port and TAP appear.
    ok(
        &uri,
        &[
            "attach-interface",
            "hpvm",
            "network",
            "hpnet",
            "--model",
            "virtio",
            "--live",
        ],
    );
    let live = ok(&uri, &["dumpxml", "hpvm"]);
    let section = live
        .split("<interface type='network'>")
        .nth(1)
        .unwrap_or_else(|| panic!("no network interface: {live}"));
    let mac = section
        .split("<mac address='")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .unwrap()
        .to_string();
    assert!(mac.starts_with("52:54:00:"), "{mac}");
    for want in [
        "<alias name='net1'/>",
        "bridge='virbr7'",
        "portid=",
        "slot='0x0",
    ] {
        assert!(section.contains(want), "{want}: {section}");
    }
    let tap = tap_of(&live, &mac);
    assert!(
        sh("ip", &["-o", "link", "show", "master", "virbr7"])
            .1
            .contains(&tap),
        "{tap} on virbr7"
    );
    assert_eq!(port_rows(&uri, "hpnet"), 1);
    assert!(
        !ok(&uri, &["dumpxml", "hpvm", "--inactive"]).contains(&mac),
        "--live only"
    );
    con.macs_until(&format!("the guest sees {mac}"), |m| m.contains(&mac));
    let stats = ok(&uri, &["domifstat", "hpvm", &tap]);
    assert!(stats.contains("rx_bytes"), "{stats}");

    // the same MAC twice is refused
    let o = virsh(
        &uri,
        &[
            "attach-interface",
            "hpvm",
            "network",
            "hpnet",
            "--mac",
            &mac,
            "--live",
        ],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // 2. detach-interface --live: gone from the guest, the port released, the TAP removed,
    // and a device-removed event names the NIC's alias.
    let mut listener = super::qemu::DeviceRemovedListener::start(&uri, "hpvm");
    ok(
        &uri,
        &[
            "detach-interface",
            "hpvm",
            "network",
            "--mac",
            &mac,
            "--live",
        ],
    );
    assert!(!ok(&uri, &["dumpxml", "hpvm"]).contains(&mac));
    let heard = listener.wait();
    assert!(heard.starts_with("removed hpvm net"), "{heard}");
    assert_eq!(port_rows(&uri, "hpnet"), 0);
    assert!(
        !sh("ip", &["link", "show", &tap]).0,
        "the TAP {tap} was removed"
    );
    let seen = con.macs();
    assert!(
        !seen.contains(&mac) && seen.contains("52:54:00:11:11:11"),
        "the guest lost {mac} only (detach returned once QEMU deleted it): {seen}"
    );

    // 3. attach-device of a bridge interface, --live and --config at once.
    let nic = root.join("nic.xml");
    let bmac = "52:54:00:5e:00:07";
    std::fs::write(
        &nic,
        format!(
            "<interface type='bridge'><mac address='{bmac}'/><source bridge='hpbr0'/>\
             <model type='virtio'/></interface>"
        ),
    )
    .unwrap();
    let nic_arg = nic.to_str().unwrap();
    ok(
        &uri,
        &["attach-device", "hpvm", nic_arg, "--live", "--config"],
    );
    let live = ok(&uri, &["dumpxml", "hpvm"]);
    assert!(live.contains(bmac), "{live}");
    // the index after the highest in use (net1 was released)
    assert!(live.contains("<alias name='net1'/>"), "{live}");
    let inactive = ok(&uri, &["dumpxml", "hpvm", "--inactive"]);
    assert!(
        inactive.contains(bmac) && !inactive.contains("<target dev='vnet"),
        "{inactive}"
    );
    let btap = tap_of(&live, bmac);
    assert!(
        sh("ip", &["-o", "link", "show", "master", "hpbr0"])
            .1
            .contains(&btap)
    );
    con.macs_until(&format!("the guest sees {bmac}"), |m| m.contains(bmac));
    // the plugged NIC is in the status file: a restarted daemon still has it, and unplugs it
    d.restart();
    assert!(ok(&uri, &["dumpxml", "hpvm"]).contains(bmac));
    ok(
        &uri,
        &["detach-device", "hpvm", nic_arg, "--live", "--config"],
    );
    assert!(!ok(&uri, &["dumpxml", "hpvm"]).contains(bmac));
    assert!(!ok(&uri, &["dumpxml", "hpvm", "--inactive"]).contains(bmac));
    assert!(!sh("ip", &["link", "show", &btap]).0);
    let seen = con.macs();
    assert!(!seen.contains(bmac), "the guest lost {bmac}: {seen}");

    // 4. --config only: the running guest is left alone.
    ok(
        &uri,
        &[
            "attach-interface",
            "hpvm",
            "bridge",
            "hpbr0",
            "--mac",
            "52:54:00:5e:00:08",
            "--config",
        ],
    );
    assert!(ok(&uri, &["dumpxml", "hpvm", "--inactive"]).contains("52:54:00:5e:00:08"));
    assert!(!ok(&uri, &["dumpxml", "hpvm"]).contains("52:54:00:5e:00:08"));
    ok(
        &uri,
        &[
            "detach-interface",
            "hpvm",
            "bridge",
            "--mac",
            "52:54:00:5e:00:08",
            "--config",
        ],
    );
    assert!(!ok(&uri, &["dumpxml", "hpvm", "--inactive"]).contains("52:54:00:5e:00:08"));
    let o = virsh(
        &uri,
        &[
            "detach-interface",
            "hpvm",
            "bridge",
            "--mac",
            "52:54:00:5e:00:09",
            "--live",
        ],
    );
    assert!(!o.status.success());

    ok(&uri, &["destroy", "hpvm"]);
    ok(&uri, &["undefine", "hpvm"]);
    ok(&uri, &["net-destroy", "hpnet"]);
    drop(d);
}

impl Console {
    /// Runs `cmd` in the guest's shell and returns what it printed.
    fn run(&mut self, cmd: &str) -> String {
        self.n += 1;
        let n = self.n;
        let line = format!("echo Q{n}-$((7*6)); {cmd}; echo E{n}-$((7*6))\n");
        self.w.write_all(line.as_bytes()).unwrap();
        let (start, end) = (format!("Q{n}-42"), format!("E{n}-42"));
        wait_for("the guest's answer", Duration::from_secs(30), || {
            self.text().contains(&end)
        });
        let t = self.text();
        let a = t.find(&start).unwrap() + start.len();
        let b = t.find(&end).unwrap();
        t[a..b].trim().to_string()
    }

    /// [`Console::run`] until `f` holds for its output.
    fn run_until(&mut self, cmd: &str, what: &str, f: impl Fn(&str) -> bool) -> String {
        let t0 = std::time::Instant::now();
        loop {
            let m = self.run(cmd);
            if f(&m) {
                return m;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{what}: the guest printed {m}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

#[test]
fn virsh_vcpu_hotplug_per_cpu_stats_and_balloon_guest_statistics() {
    if super::qemu::tools_missing() {
        return;
    }
    let g = rvirt_tests::guest();
    let d = Daemon::start();
    let root = d.root.path().to_path_buf();
    let _reap = Reap(root.clone());
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let serial = root.join("serial.sock");
    let dom = root.join("vm.xml");
    std::fs::write(
        &dom,
        format!(
            "<domain type='qemu'><name>cpuvm</name><memory unit='MiB'>256</memory>\
             <vcpu placement='static' current='1'>2</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
             <cmdline>console=ttyS0 quiet panic=-1 guest.ip=none</cmdline></os><features><acpi/></features>\
             <devices><serial type='unix'><source mode='bind' path='{s}'/></serial>\
             <memballoon model='virtio'><stats period='1'/></memballoon></devices></domain>",
            k = g.join("vmlinux").display(),
            i = g.join("initrd.img").display(),
            s = serial.display(),
        ),
    )
    .unwrap();
    ok(&uri, &["define", dom.to_str().unwrap()]);
    ok(&uri, &["start", "cpuvm"]);
    let mut con = Console::connect(&serial);
    wait_for("GUEST-READY", Duration::from_secs(120), || {
        con.text().contains("GUEST-READY")
    });
    assert!(con.text().contains("cpus=1"), "{}", con.text());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(con.run("cat /sys/devices/system/cpu/present"), "0");

    ok(&uri, &["setvcpus", "cpuvm", "2", "--live"]);
    let count = ok(&uri, &["vcpucount", "cpuvm", "--live", "--active"]);
    assert_eq!(count.trim(), "2", "{count}");
    let live = ok(&uri, &["dumpxml", "cpuvm"]);
    assert!(
        live.contains("<vcpu placement='static' current='2'>2</vcpu>")
            && live.contains("<vcpu id='1' enabled='yes' hotpluggable='yes' order='2'/>"),
        "{live}"
    );
    assert!(
        ok(&uri, &["dumpxml", "cpuvm", "--inactive"]).contains("current='1'"),
        "--live leaves the definition alone"
    );
    // the guest's kernel sees the new CPU; it has no udev to online it, so the test does
    con.run_until(
        "cat /sys/devices/system/cpu/present",
        "CPU 1 present",
        |m| m == "0-1",
    );
    con.run("echo 1 > /sys/devices/system/cpu/cpu1/online");
    assert_eq!(con.run("cat /sys/devices/system/cpu/online"), "0-1");
    let stats = ok(&uri, &["domstats", "cpuvm", "--vcpu"]);
    assert!(
        stats.contains("vcpu.current=2") && stats.contains("vcpu.1.state=1"),
        "{stats}"
    );

    // more than the maximum, and the vCPU the domain started with, are refused
    let o = virsh(&uri, &["setvcpus", "cpuvm", "3", "--live"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("max allowable vcpus"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // unplug: the guest ejects the CPU (ACPI) and QEMU reports it deleted; clients hear
    // the device removal with the vCPU's alias
    let mut listener = super::qemu::DeviceRemovedListener::start(&uri, "cpuvm");
    ok(&uri, &["setvcpus", "cpuvm", "1", "--live"]);
    let heard = listener.wait();
    assert!(heard.starts_with("removed cpuvm vcpu"), "{heard}");
    assert_eq!(
        ok(&uri, &["vcpucount", "cpuvm", "--live", "--active"]).trim(),
        "1"
    );
    con.run_until("cat /sys/devices/system/cpu/present", "CPU 1 gone", |m| {
        m == "0"
    });
    // QEMU 7.2 under TCG exits when the same vCPU is plugged again: refused, and the
    // guest keeps running
    let o = virsh(&uri, &["setvcpus", "cpuvm", "2", "--live"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot plug the same vCPU again"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(ok(&uri, &["domstate", "cpuvm"]).trim(), "running");
    assert_eq!(con.run("cat /sys/devices/system/cpu/present"), "0");
    // per host CPU: the QEMU process's and its vCPU threads' time (this driver makes no
    // cgroup: summed from the threads, each counted on the CPU it last ran on)
    let per = ok(&uri, &["cpu-stats", "cpuvm"]);
    let host = std::thread::available_parallelism().unwrap().get();
    for c in 0..host {
        assert!(per.contains(&format!("CPU{c}:")), "{per}");
    }
    let sum = |key: &str| -> f64 {
        per.split("Total:")
            .next()
            .unwrap()
            .lines()
            .filter(|l| l.trim_start().starts_with(key))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .sum()
    };
    assert!(sum("cpu_time") > 0.0 && sum("vcpu_time") > 0.0, "{per}");
    assert!(sum("vcpu_time") <= sum("cpu_time"), "{per}");
    let one = ok(
        &uri,
        &["cpu-stats", "cpuvm", "--start", "0", "--count", "1"],
    );
    assert!(one.contains("CPU0:") && !one.contains("CPU1:"), "{one}");

    // the balloon's guest statistics, polled every second as <stats period='1'/> asks
    let mut last = 0u64;
    let field = |text: &str, key: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
    };
    wait_for("balloon guest statistics", Duration::from_secs(60), || {
        let m = ok(&uri, &["dommemstat", "cpuvm"]);
        last = field(&m, "last_update").unwrap_or(0);
        last > 0
    });
    let m = ok(&uri, &["dommemstat", "cpuvm"]);
    for k in [
        "actual",
        "unused",
        "available",
        "usable",
        "major_fault",
        "minor_fault",
        "rss",
    ] {
        assert!(field(&m, k).is_some(), "{k}: {m}");
    }
    // the guest's own figure of its memory: under the 256 MiB it was given
    let avail = field(&m, "available").unwrap();
    assert!(avail > 100_000 && avail <= 262_144, "{m}");
    let ds = ok(&uri, &["domstats", "cpuvm", "--balloon"]);
    for k in [
        "balloon.unused=",
        "balloon.usable=",
        "balloon.last-update=",
        "balloon.rss=",
    ] {
        assert!(ds.contains(k), "{k}: {ds}");
    }
    wait_for("a newer balloon update", Duration::from_secs(30), || {
        field(&ok(&uri, &["dommemstat", "cpuvm"]), "last_update").unwrap_or(0) > last
    });
    // `dommemstat --period` (virDomainSetMemoryStatsPeriod): 0 stops the collection of the
    // running guest (no update for three periods), 1 starts it again, `--config` is kept
    // in the persistent definition, a negative period is refused
    ok(&uri, &["dommemstat", "cpuvm", "--period", "0", "--live"]);
    assert!(!ok(&uri, &["dumpxml", "cpuvm"]).contains("<stats period"));
    std::thread::sleep(Duration::from_millis(1200));
    let stopped = field(&ok(&uri, &["dommemstat", "cpuvm"]), "last_update").unwrap_or(0);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        field(&ok(&uri, &["dommemstat", "cpuvm"]), "last_update").unwrap_or(0),
        stopped,
        "the guest statistics were still collected with the period at 0"
    );
    ok(&uri, &["dommemstat", "cpuvm", "--period", "1", "--live"]);
    wait_for("balloon updates again", Duration::from_secs(30), || {
        field(&ok(&uri, &["dommemstat", "cpuvm"]), "last_update").unwrap_or(0) > stopped
    });
    ok(&uri, &["dommemstat", "cpuvm", "--period", "5", "--config"]);
    assert!(ok(&uri, &["dumpxml", "cpuvm", "--inactive"]).contains("<stats period='5'/>"));
    assert!(ok(&uri, &["dumpxml", "cpuvm"]).contains("<stats period='1'/>"));
    let e = virsh(&uri, &["dommemstat", "cpuvm", "--period", "-1", "--live"]);
    assert!(!e.status.success());
    ok(&uri, &["destroy", "cpuvm"]);
    ok(&uri, &["undefine", "cpuvm"]);
    drop(d);
}

#[test]
fn a_q35_guest_takes_a_nic_on_a_free_pcie_root_port() {
    if super::qemu::tools_missing() {
        return;
    }
    let g = rvirt_tests::guest();
    let d = Daemon::start();
    let root = d.root.path().to_path_buf();
    let _reap = Reap(root.clone());
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let serial = root.join("serial.sock");
    let dom = root.join("vm.xml");
    std::fs::write(
        &dom,
        format!(
            "<domain type='qemu'><name>q35nic</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='q35'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
             <cmdline>console=ttyS0 quiet panic=-1 guest.ip=none</cmdline></os><features><acpi/></features>\
             <devices><serial type='unix'><source mode='bind' path='{s}'/></serial>\
             <controller type='pci' model='pcie-root'/>\
             <controller type='pci' model='pcie-root-port'/>\
             <controller type='pci' model='pcie-root-port'/>\
             <controller type='pci' model='pcie-root-port'/>\
             <controller type='pci' model='pcie-root-port'/>\
             <controller type='pci' model='pcie-root-port'/></devices></domain>",
            k = g.join("vmlinux").display(),
            i = g.join("initrd.img").display(),
            s = serial.display(),
        ),
    )
    .unwrap();
    ok(&uri, &["define", dom.to_str().unwrap()]);
    ok(&uri, &["start", "q35nic"]);
    let mut con = Console::connect(&serial);
    wait_for("GUEST-READY", Duration::from_secs(120), || {
        con.text().contains("GUEST-READY")
    });
    std::thread::sleep(Duration::from_millis(500));
    let mac = "52:54:00:35:00:01";
    let nic_file = root.join("nic.xml");
    let write_nic = |mac: &str, model: &str| {
        std::fs::write(
            &nic_file,
            format!(
                "<interface type='user'><mac address='{mac}'/><model type='{model}'/></interface>"
            ),
        )
        .unwrap();
    };
    write_nic(mac, "virtio");
    let nic_arg = nic_file.to_str().unwrap();
    ok(&uri, &["attach-device", "q35nic", nic_arg, "--live"]);
    let live = ok(&uri, &["dumpxml", "q35nic"]);
    let nic = live.split("<interface type='user'>").nth(1).unwrap();
    // on a root port's bus, slot 0, a port no other device holds
    let bus = nic
        .split("bus='")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .unwrap()
        .to_string();
    assert!(nic.contains("slot='0x00'") && bus != "0x00", "{nic}");
    assert_eq!(
        live.matches(&format!("bus='{bus}'")).count(),
        1,
        "{bus} is the NIC's alone: {live}"
    );
    con.macs_until(&format!("the guest sees {mac}"), |m| m.contains(mac));
    // rtl8139 is conventional PCI: no root port takes it
    write_nic("52:54:00:35:00:02", "rtl8139");
    let o = virsh(&uri, &["attach-device", "q35nic", nic_arg, "--live"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("conventional PCI"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(
        &nic_file,
        "<interface type='bridge'><model type='virtio'/></interface>",
    )
    .unwrap();
    let o = virsh(&uri, &["attach-device", "q35nic", nic_arg, "--live"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("needs <source bridge=...>"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(
        &uri,
        &["detach-interface", "q35nic", "user", "--mac", mac, "--live"],
    );
    let seen = con.macs();
    assert!(!seen.contains(mac), "{seen}");
    ok(&uri, &["destroy", "q35nic"]);
    ok(&uri, &["undefine", "q35nic"]);
    drop(d);
}

//! Running busybox containers: console, process and hostname isolation, environment,
//! memory and CPU limits, lifecycle, cleanup, reattachment.

use crate::common::*;
use rvirt_plugin_lxc::cgroup::Cgroup;
use rvirt_plugin_lxc::driver::{reason, start_time};
use rvirt_sdk::abi::{event, state};
use std::time::Duration;

const HELLO: &str = "echo \"hello $LIBVIRT_LXC_NAME $LIBVIRT_LXC_UUID $GREETING\"
echo \"hostname=$(hostname)\"
echo \"pid=$$\"
ps -o pid,comm > /tmp/ps.txt
echo \"procs=$(grep -c . /tmp/ps.txt)\"
cat /tmp/ps.txt
echo done-listing
exec sleep 1000
";

#[test]
fn a_container_runs_isolated_and_destroy_leaves_nothing() {
    if !can_run("a_container_runs_isolated_and_destroy_leaves_nothing") {
        return;
    }
    let dir = test_dir("isolated");
    let root = rootfs(&dir, HELLO);
    let d = driver(&dir);
    let ev = Events::default();
    d.add_sink(ev.sink());
    let name = "rvirt-it-iso";
    let r = d.define(&xml(name, &root, 65536, "", "")).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    let host_name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let started = d.start(u, 0).unwrap();
    assert!(started.id > 1, "the id is the init's host pid");
    assert_eq!(
        d.state(u).unwrap(),
        (state::RUNNING, reason::RUNNING_BOOTED)
    );
    let out = console_with(&dir, name, "done-listing");
    // init's output on the console, with libvirt's environment and <initenv>.
    assert!(
        out.contains(&format!("hello {name} {u} hello-from-initenv")),
        "{out}"
    );
    // Its own hostname, the host's unchanged; pid 1 in its own pid namespace.
    assert!(out.contains(&format!("hostname={name}")), "{out}");
    assert_ne!(host_name, name);
    assert_eq!(
        rustix::system::uname().nodename().to_string_lossy(),
        host_name
    );
    assert!(out.contains("pid=1"), "{out}");
    // `ps` sees the header, init (sh) and ps itself only.
    assert!(out.contains("procs=3"), "{out}");
    // The live XML has the pty and the id; the cgroup has the limit.
    let live = d.xml(u, false, false).unwrap();
    assert!(live.contains(&format!("id='{}'", started.id)), "{live}");
    assert!(live.contains("tty='/dev/pts/"), "{live}");
    let cg = d
        .cgroup(u)
        .unwrap()
        .expect("a running container has a cgroup");
    assert!(cg.procs().contains(&started.id));
    if let Cgroup::V1(v) = &cg {
        let mem = &v.iter().find(|(c, _)| c == "memory").unwrap().1;
        let lim = std::fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap();
        assert_eq!(lim.trim(), (65536u64 * 1024).to_string());
    }
    let info = d.info(u).unwrap();
    assert_eq!(info.max_mem_kib, 65536);
    assert!(info.memory_kib > 0 && info.cpu_time_ns > 0, "{info:?}");
    d.destroy(u).unwrap();
    assert_eq!(
        d.state(u).unwrap(),
        (state::SHUTOFF, reason::SHUTOFF_DESTROYED)
    );
    assert!(!cg.exists(), "the cgroup is gone: {:?}", cg.dirs());
    assert_eq!(start_time(started.id), None, "init is gone");
    assert!(!mounted_under(&root), "no mount of the container is left");
    assert!(!paths(&dir).status_file(name).exists());
    let evs = ev.at_least(name, 3);
    assert_eq!(
        evs,
        vec![
            (event::DEFINED, 0),
            (event::STARTED, 0),
            (event::STOPPED, 1)
        ]
    );
    d.undefine(u).unwrap();
}

#[test]
fn a_memory_hog_is_oom_killed_at_the_limit_while_the_rest_lives() {
    if !can_run("a_memory_hog_is_oom_killed_at_the_limit_while_the_rest_lives") {
        return;
    }
    let dir = test_dir("oom");
    let script = "sleep 1000 &
echo sleeper=$!
dd if=/dev/zero of=/dev/null bs=96M count=1 2>/dev/null
echo hog-exit=$?
exec sleep 1000
";
    let root = rootfs(&dir, script);
    let d = driver(&dir);
    let name = "rvirt-it-oom";
    let r = d.define(&xml(name, &root, 32768, "", "")).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    d.start(u, 0).unwrap();
    let out = console_with(&dir, name, "hog-exit=");
    assert!(
        out.contains("hog-exit=137"),
        "the hog was killed by SIGKILL: {out}"
    );
    let cg = d.cgroup(u).unwrap().unwrap();
    assert!(
        cg.oom_kills() >= 1,
        "the kernel's OOM killer acted in the group"
    );
    // init and the sleeper live on.
    assert_eq!(d.state(u).unwrap().0, state::RUNNING);
    assert!(cg.procs().len() >= 2, "{:?}", cg.procs());
    d.destroy(u).unwrap();
    assert!(!cg.exists());
    d.undefine(u).unwrap();
}

#[test]
fn a_cpu_quota_is_enforced() {
    if !can_run("a_cpu_quota_is_enforced") {
        return;
    }
    let dir = test_dir("cpu");
    let root = rootfs(&dir, "echo spinning\nwhile :; do :; done\n");
    let d = driver(&dir);
    let name = "rvirt-it-cpu";
    let tune = "<cputune><shares>512</shares><period>100000</period><quota>20000</quota></cputune>";
    let r = d.define(&xml(name, &root, 65536, tune, "")).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    d.start(u, 0).unwrap();
    console_with(&dir, name, "spinning");
    let cg = d.cgroup(u).unwrap().unwrap();
    let t0 = d.info(u).unwrap().cpu_time_ns;
    let w0 = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let used = d.info(u).unwrap().cpu_time_ns - t0;
    let wall = w0.elapsed().as_nanos() as u64;
    // 20 % of one CPU, with room for the period boundaries.
    assert!(
        used < wall * 35 / 100,
        "a busy loop under a 20 % quota used {used} ns of CPU in {wall} ns"
    );
    assert!(used > wall / 20, "the loop ran at all: {used} ns");
    assert!(cg.nr_throttled() > 0, "cpu.stat counts throttling");
    d.destroy(u).unwrap();
    d.undefine(u).unwrap();
}

#[test]
fn shutdown_suspend_resume_and_reboot() {
    if !can_run("shutdown_suspend_resume_and_reboot") {
        return;
    }
    let dir = test_dir("lifecycle");
    let script = "trap 'echo got-term; exit 0' TERM
echo up-$(cat /proc/uptime | head -c 4)
while :; do sleep 1; done
";
    let root = rootfs(&dir, script);
    let d = driver(&dir);
    let ev = Events::default();
    d.add_sink(ev.sink());
    let name = "rvirt-it-life";
    let r = d.define(&xml(name, &root, 65536, "", "")).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    d.start(u, 0).unwrap();
    console_with(&dir, name, "up-");
    d.suspend(u).unwrap();
    assert_eq!(d.state(u).unwrap(), (state::PAUSED, reason::PAUSED_USER));
    let cg = d.cgroup(u).unwrap().unwrap();
    assert!(cg.is_frozen());
    assert!(d.suspend(u).is_err(), "suspending twice is refused");
    d.resume(u).unwrap();
    assert_eq!(d.state(u).unwrap().0, state::RUNNING);
    let id1 = d.status(u).unwrap().unwrap().init_pid;
    d.reboot(u).unwrap();
    let id2 = d.status(u).unwrap().unwrap().init_pid;
    assert_ne!(id1, id2, "a new init after the reboot");
    assert_eq!(d.state(u).unwrap().0, state::RUNNING);
    console_with(&dir, name, "up-");
    d.shutdown(u).unwrap();
    wait_for("the shutdown", Duration::from_secs(10), || {
        d.state(u).unwrap().0 == state::SHUTOFF
    });
    assert_eq!(
        d.state(u).unwrap(),
        (state::SHUTOFF, reason::SHUTOFF_SHUTDOWN)
    );
    console_with(&dir, name, "got-term");
    assert!(!cg.exists());
    assert_eq!(
        ev.at_least(name, 7),
        vec![
            (event::DEFINED, 0),
            (event::STARTED, 0),
            (event::SUSPENDED, 0),
            (event::RESUMED, 0),
            (event::STOPPED, 0),
            (event::STARTED, 0),
            (event::STOPPED, 0),
        ]
    );
    // A shutdown ignored by init ends in a kill after the timeout.
    d.undefine(u).unwrap();
}

#[test]
fn a_new_driver_instance_reattaches_to_a_running_container() {
    if !can_run("a_new_driver_instance_reattaches_to_a_running_container") {
        return;
    }
    let dir = test_dir("reattach");
    let root = rootfs(&dir, "echo ready-to-be-found\nexec sleep 1000\n");
    let first = driver(&dir);
    let name = "rvirt-it-reattach";
    let r = first.define(&xml(name, &root, 65536, "", "")).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    let started = first.start(u, 0).unwrap();
    console_with(&dir, name, "ready-to-be-found");
    // A second instance on the same root, as a restarted daemon loads it.
    let second = driver(&dir);
    assert_eq!(second.state(u).unwrap().0, state::RUNNING);
    assert_eq!(second.by_name(name).unwrap().id, started.id);
    assert!(
        second
            .xml(u, false, false)
            .unwrap()
            .contains("tty='/dev/pts/")
    );
    let cg = second.cgroup(u).unwrap().unwrap();
    second.destroy(u).unwrap();
    assert_eq!(
        second.state(u).unwrap(),
        (state::SHUTOFF, reason::SHUTOFF_DESTROYED)
    );
    assert!(!cg.exists());
    // The first instance learns of the end through its own watch.
    wait_for(
        "the first instance to see the stop",
        Duration::from_secs(5),
        || first.state(u).unwrap().0 == state::SHUTOFF,
    );
    second.undefine(u).unwrap();
}

#[test]
fn init_exiting_at_once_is_shut_off_with_a_reason_and_nothing_left() {
    if !can_run("init_exiting_at_once_is_shut_off_with_a_reason_and_nothing_left") {
        return;
    }
    let dir = test_dir("exit-at-once");
    let root = rootfs(&dir, "echo bye\nexit 3\n");
    let d = driver(&dir);
    let name = "rvirt-it-exit";
    let r = d.define(&xml(name, &root, 65536, "", "")).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    d.start(u, 0).unwrap();
    wait_for("init's exit", Duration::from_secs(10), || {
        d.state(u).unwrap().0 == state::SHUTOFF
    });
    assert_eq!(
        d.state(u).unwrap(),
        (state::SHUTOFF, reason::SHUTOFF_SHUTDOWN)
    );
    let cg = Cgroup::at(&format!("{}/{name}.libvirt-lxc", paths(&dir).cgroup_parent)).unwrap();
    assert!(!cg.exists());
    assert!(!paths(&dir).status_file(name).exists());
    d.undefine(u).unwrap();
}

#[test]
fn ethernet_and_bridge_interfaces_are_veth_pairs_into_the_container() {
    if !can_run("ethernet_and_bridge_interfaces_are_veth_pairs_into_the_container") {
        return;
    }
    // The host end of the pair is made in a network namespace of the test's own.
    if rvirt_tests::rerun_in_netns(
        "containers::ethernet_and_bridge_interfaces_are_veth_pairs_into_the_container",
    ) {
        return;
    }
    let dir = test_dir("veth");
    let root = rootfs(
        &dir,
        "ip addr show eth7 > /tmp/ip.txt\nip link > /tmp/links.txt\ncat /tmp/ip.txt /tmp/links.txt\necho listed\nexec sleep 1000\n",
    );
    let d = driver(&dir);
    let name = "rvirt-it-veth";
    let ifc = "<interface type='ethernet'><mac address='52:54:00:aa:bb:cc'/>\
               <ip address='10.99.0.2' family='ipv4' prefix='24'/>\
               <target dev='vethrvit0'/><guest dev='eth7'/></interface>";
    let r = d.define(&xml(name, &root, 65536, "", ifc)).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    d.start(u, 0).unwrap();
    let out = console_with(&dir, name, "listed");
    assert!(out.contains("inet 10.99.0.2/24"), "{out}");
    assert!(out.contains("52:54:00:aa:bb:cc"), "{out}");
    assert!(out.contains("lo:") && out.contains("eth7"), "{out}");
    let host = std::process::Command::new("ip")
        .args(["link", "show", "vethrvit0"])
        .output()
        .unwrap();
    assert!(
        host.status.success(),
        "the host end exists while the container runs"
    );
    d.destroy(u).unwrap();
    let host = std::process::Command::new("ip")
        .args(["link", "show", "vethrvit0"])
        .output()
        .unwrap();
    assert!(!host.status.success(), "the pair went with the container");
    d.undefine(u).unwrap();

    // <interface type='bridge'>: the host end joins the bridge.
    let ip = |args: &[&str]| {
        let o = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let ifc = "<interface type='bridge'><source bridge='brlxcit0'/>\
               <target dev='vethrvit1'/><guest dev='eth0'/></interface>";
    let name = "rvirt-it-bridge";
    let r = d.define(&xml(name, &root, 65536, "", ifc)).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    let e: rvirt_sdk::abi::PluginError = d.start(u, 0).unwrap_err().into();
    assert!(
        e.message
            .contains("source/@bridge 'brlxcit0' is not a bridge"),
        "{}",
        e.message
    );
    ip(&["link", "add", "brlxcit0", "type", "bridge"]);
    d.start(u, 0).unwrap();
    assert!(ip(&["link", "show", "vethrvit1"]).contains("master brlxcit0"));
    d.destroy(u).unwrap();
    d.undefine(u).unwrap();
    ip(&["link", "del", "brlxcit0"]);
}

#[test]
fn autostart_containers_start_with_a_new_driver_instance() {
    if !can_run("autostart_containers_start_with_a_new_driver_instance") {
        return;
    }
    let dir = test_dir("autostart");
    let root = rootfs(&dir, "echo auto-up\nexec sleep 1000\n");
    let first = driver(&dir);
    let name = "rvirt-it-auto";
    let r = first.define(&xml(name, &root, 65536, "", "")).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    first.set_autostart(u, true).unwrap();
    assert!(paths(&dir).autostart_file(name).exists());
    assert_eq!(first.state(u).unwrap().0, state::SHUTOFF);
    // The next instance (a daemon starting) runs it.
    let second = driver(&dir);
    assert!(second.get_autostart(u).unwrap());
    assert_eq!(second.state(u).unwrap().0, state::RUNNING);
    console_with(&dir, name, "auto-up");
    second.destroy(u).unwrap();
    second.set_autostart(u, false).unwrap();
    assert!(!paths(&dir).autostart_file(name).exists());
    second.undefine(u).unwrap();
}

#[test]
fn a_container_without_a_root_filesystem_shares_the_hosts_root_with_its_own_proc_and_dev() {
    if !can_run(
        "a_container_without_a_root_filesystem_shares_the_hosts_root_with_its_own_proc_and_dev",
    ) {
        return;
    }
    let dir = test_dir("host-root");
    let d = driver(&dir);
    let name = "rvirt-it-hostroot";
    // a file only the host has: the container reads it through the shared root
    let marker = dir.join("host-marker");
    std::fs::write(&marker, "HOST-FILE-SEEN\n").unwrap();
    // a bind mount on top of the shared root, as libvirt adds a <filesystem> there
    let extra = dir.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("inside"), "EXTRA-MOUNT-SEEN\n").unwrap();
    let script = format!(
        "cat {m}; cat /mnt/rvirt-extra/inside; echo hostname=$(hostname); \
         echo procs=$(ls /proc | grep -c '^[0-9]'); ls /dev > /dev/shm/devs; \
         echo devs=$(grep -c . /dev/shm/devs); echo shared-done; exec sleep 1000",
        m = marker.display()
    );
    let xml = format!(
        "<domain type='lxc'><name>{name}</name><memory unit='KiB'>65536</memory><vcpu>1</vcpu>\
         <os><type>exe</type><init>/bin/sh</init><initarg>-c</initarg><initarg>{script}</initarg></os>\
         <devices><filesystem type='mount'><source dir='{}'/><target dir='/mnt/rvirt-extra'/></filesystem>\
         <console type='pty'><target type='lxc' port='0'/></console></devices></domain>",
        extra.display()
    );
    let r = d.define(&xml).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    d.start(u, 0).unwrap();
    let out = console_with(&dir, name, "shared-done");
    assert!(out.contains("HOST-FILE-SEEN"), "{out}");
    assert!(out.contains("EXTRA-MOUNT-SEEN"), "{out}");
    assert!(out.contains(&format!("hostname={name}")), "{out}");
    // its own /proc: sh, ls and grep (or fewer), never the host's hundreds
    let procs: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(usize::MAX);
    assert!(procs <= 4, "{out}");
    // its own /dev: the few nodes the driver makes, not the host's
    let devs: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("devs="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(usize::MAX);
    assert!(devs < 30, "{out}");
    // nothing of it shows on the host: the extra mount is not at the host's /mnt
    assert!(!std::path::Path::new("/mnt/rvirt-extra/inside").exists());
    let stage = paths(&dir).host_root_dir(name);
    d.destroy(u).unwrap();
    assert!(!stage.exists(), "the staging directory is gone");
    d.undefine(u).unwrap();
    // the mount point was made in the shared root, as libvirt makes it: an empty directory
    let _ = std::fs::remove_dir("/mnt/rvirt-extra");
}

#[test]
fn idmap_runs_the_container_in_a_user_namespace_with_root_mapped() {
    if !can_run("idmap_runs_the_container_in_a_user_namespace_with_root_mapped") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = test_dir("idmap");
    let root = rootfs(
        &dir,
        "echo \"id=$(id)\"\necho \"uidmap=$(cat /proc/self/uid_map)\"\n\
         echo made > /tmp/made-inside\necho idmap-done\nexec sleep 1000\n",
    );
    // the mapped root owns its root filesystem (as with libvirt), and reaches it
    const HOST_ID: u32 = 200_000;
    for p in [root.as_path(), &root.join("tmp")] {
        std::os::unix::fs::chown(p, Some(HOST_ID), Some(HOST_ID)).unwrap();
    }
    let mut up = Some(root.as_path());
    while let Some(p) = up {
        if p.starts_with(std::env::temp_dir()) && p != std::env::temp_dir() {
            let mode = std::fs::metadata(p).unwrap().permissions().mode();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | 0o055)).unwrap();
        }
        up = p.parent();
    }
    let d = driver(&dir);
    let name = "rvirt-it-idmap";
    let map = format!(
        "<idmap><uid start='0' target='{HOST_ID}' count='65536'/>\
         <gid start='0' target='{HOST_ID}' count='65536'/></idmap>"
    );
    let r = d.define(&xml(name, &root, 65536, &map, "")).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    d.start(u, 0).unwrap();
    let out = console_with(&dir, name, "idmap-done");
    // root inside, mapped to HOST_ID outside
    assert!(out.contains("id=uid=0") && out.contains("gid=0"), "{out}");
    let uidmap = out
        .lines()
        .find_map(|l| l.strip_prefix("uidmap="))
        .unwrap_or_default();
    let fields: Vec<&str> = uidmap.split_whitespace().collect();
    assert_eq!(fields, ["0", &HOST_ID.to_string(), "65536"], "{out}");
    // init's process on the host runs as the mapped id
    let init = d.status(u).unwrap().unwrap().init_pid;
    let st = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let uid_line = st.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().nth(1) == Some(&HOST_ID.to_string()),
        "{uid_line}"
    );
    // a file it made belongs to the mapped ids on the host
    let made = std::fs::metadata(root.join("tmp/made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (HOST_ID, HOST_ID));
    d.destroy(u).unwrap();
    d.undefine(u).unwrap();
    assert!(!mounted_under(&root));
}

//! A cgroup per plugin host process (`cgroup_*` keys of `[plugins.NAME]`): the test
//! driver in a process of its own runs in `rvirt/TAG/plugin-test` with the configured
//! limits, from its first instruction on (joined between fork and exec), again after a
//! crash and a reload; the group goes when the daemon stops; a limit too low, or no
//! cgroup hierarchy, fails the call saying why and the daemon stays up; a process the
//! memory limit kills is named as such to the client.

use super::{Daemon, alive, missing, plugin_hosts};
use rvirt_cgroup::Cgroup;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const LIMITS: &str = r#"
[plugins.test]
isolation = "process"
cgroup_memory_max = 268435456
cgroup_cpu_shares = 512
cgroup_cpu_quota_us = 50000
cgroup_cpu_period_us = 100000
cgroup_pids_max = 64
[plugins.qemu]
isolation = "in-process"
"#;

fn virsh(d: &Daemon, args: &[&str]) -> Output {
    Command::new("virsh")
        .arg("-c")
        .arg(d.uri())
        .args(args)
        .output()
        .expect("cannot run virsh")
}

/// Whether this host lets the tests make cgroups (root, and a v1 or v2 hierarchy); says
/// loudly why not (and fails unless `RVIRT_ALLOW_SKIP=1`).
fn cgroups_unavailable() -> bool {
    cannot_test(None)
}

/// [`cgroups_unavailable`], or `extra` (a further reason) when it says so.
fn cannot_test(extra: Option<String>) -> bool {
    if missing("virsh", Command::new("virsh").arg("--version")) {
        return true;
    }
    let why = if let Some(why) = extra {
        why
    } else if !rustix::process::geteuid().is_root() {
        "the tests do not run as root, so they cannot make cgroups".to_string()
    } else if let Err(e) = Cgroup::at("rvirt") {
        e.to_string()
    } else {
        return false;
    };
    let msg = format!("\n\n!!! plugin cgroups cannot be tested here: {why}\n");
    if std::env::var("RVIRT_ALLOW_SKIP").is_ok_and(|v| v == "1") {
        eprintln!("{msg}!!! SKIPPED\n");
        return true;
    }
    panic!("{msg}!!! (set RVIRT_ALLOW_SKIP=1 to skip instead of failing)\n");
}

/// The groups `/proc/PID/cgroup` names, by controller (`""` for v2's).
fn groups_of(pid: u32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctls, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctls.to_string(), path.to_string()))
        })
        .collect()
}

/// Asserts `pid` is in `rel` on every hierarchy the group has (v1: memory, cpu and pids
/// at least; v2: the unified one).
fn assert_in_group(pid: u32, rel: &str) {
    let groups = groups_of(pid);
    let want = format!("/{rel}");
    match Cgroup::at(rel).unwrap() {
        Cgroup::V1(_) => {
            for ctl in ["memory", "cpu", "pids"] {
                let (_, path) = groups
                    .iter()
                    .find(|(c, _)| c.split(',').any(|c| c == ctl))
                    .unwrap_or_else(|| panic!("no {ctl} line for {pid}: {groups:?}"));
                assert_eq!(path, &want, "{ctl} group of {pid}: {groups:?}");
            }
        }
        Cgroup::V2(_) => {
            let (_, path) = groups.iter().find(|(c, _)| c.is_empty()).unwrap();
            assert_eq!(path, &want, "{groups:?}");
        }
    }
}

fn read(dir: &std::path::Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// Asserts the group's limit files hold [`LIMITS`].
fn assert_limits(rel: &str) {
    match Cgroup::at(rel).unwrap() {
        Cgroup::V1(dirs) => {
            let dir = |c: &str| -> PathBuf {
                dirs.iter()
                    .find(|(n, _)| n == c)
                    .map(|(_, d)| d.clone())
                    .unwrap_or_else(|| panic!("no {c} hierarchy: {dirs:?}"))
            };
            assert_eq!(read(&dir("memory"), "memory.limit_in_bytes"), "268435456");
            assert_eq!(read(&dir("cpu"), "cpu.shares"), "512");
            assert_eq!(read(&dir("cpu"), "cpu.cfs_quota_us"), "50000");
            assert_eq!(read(&dir("cpu"), "cpu.cfs_period_us"), "100000");
            assert_eq!(read(&dir("pids"), "pids.max"), "64");
        }
        Cgroup::V2(d) => {
            assert_eq!(read(&d, "memory.max"), "268435456");
            assert_eq!(read(&d, "cpu.weight"), "512");
            assert_eq!(read(&d, "cpu.max"), "50000 100000");
            assert_eq!(read(&d, "pids.max"), "64");
        }
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_isolated_plugin_runs_in_its_cgroup_with_the_limits_across_crash_reload_and_shutdown() {
    if cgroups_unavailable() {
        return;
    }
    let mut d = Daemon::start_logged_with_config(LIMITS);
    let o = virsh(&d, &["domstate", "test"]);
    assert!(o.status.success(), "{o:?}\n{}", d.log());
    let test = d.plugin_entry("test");
    let rel = test["cgroup"].as_str().unwrap_or_else(|| panic!("{test}"));
    assert!(
        rel.starts_with("rvirt/root-") && rel.ends_with("/plugin-test"),
        "a group of this daemon's own: {rel}"
    );
    assert_eq!(d.plugin_entry("qemu")["cgroup"], serde_json::Value::Null);
    // the human listing has it in its own column
    let o = Command::new(rvirt_tests::built("rvirt"))
        .args(["plugin", "list", "--root"])
        .arg(d.root.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.lines().next().is_some_and(|h| h.contains("Cgroup")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("test ") && l.contains(rel)),
        "{text}"
    );
    let pid = test["pid"].as_u64().unwrap() as u32;
    assert_eq!(plugin_hosts(d.pid()), [pid]);
    assert_in_group(pid, rel);
    assert_limits(rel);
    let cg = Cgroup::at(rel).unwrap();
    assert_eq!(cg.procs(), [pid as i32], "only the plugin host process");
    // the daemon itself stays where it was
    assert!(
        groups_of(d.pid())
            .iter()
            .all(|(_, p)| !p.contains("rvirt/")),
        "{:?}",
        groups_of(d.pid())
    );

    // a crash: the next process is in the same group
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_until("the crashed process is reaped", || !alive(pid));
    let o = virsh(&d, &["domstate", "test"]);
    assert!(o.status.success(), "{o:?}\n{}", d.log());
    let after = plugin_hosts(d.pid());
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after[0], pid);
    assert_in_group(after[0], rel);
    assert_eq!(cg.procs(), [after[0] as i32]);

    // a reload: the new process too
    let o = Command::new(rvirt_tests::built("rvirt"))
        .args(["plugin", "reload", "test", "--root"])
        .arg(d.root.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let reloaded = d.plugin_entry("test")["pid"].as_u64().unwrap() as u32;
    assert_ne!(reloaded, after[0]);
    assert_in_group(reloaded, rel);
    assert!(virsh(&d, &["domstate", "test"]).status.success());
    assert_limits(rel);

    // shutdown: the group goes with its processes, and its parent `rvirt/TAG` too
    assert!(d.stop(), "rvirtd exited cleanly");
    assert!(!cg.exists(), "the group is gone: {:?}", cg.dirs());
    let tag = rel.rsplit_once('/').unwrap().0;
    assert!(!Cgroup::at(tag).unwrap().exists(), "{tag} is gone");
}

#[test]
fn a_pids_limit_too_low_fails_the_call_saying_so_and_the_daemon_stays_up() {
    if cgroups_unavailable() {
        return;
    }
    // the plugin host process cannot start a single thread
    let config = "[plugins.test]\nisolation = \"process\"\ncgroup_pids_max = 1\n\
                  [plugins.qemu]\nisolation = \"in-process\"\n";
    let mut d = Daemon::start_logged_with_config(config);
    for _ in 0..2 {
        let t0 = Instant::now();
        let o = virsh(&d, &["domstate", "test"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{o:?}");
        assert!(
            err.contains("cannot start plugin 'test'")
                && err.contains("before serving: in cgroup rvirt/root-")
                && err.contains("cgroup_pids_max = 1 refused"),
            "{err}"
        );
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert!(alive(d.pid()), "the daemon stays up");
    }
    // the daemon serves everything else
    let o = Command::new("virsh")
        .arg("-c")
        .arg(format!(
            "qemu+unix:///system?socket={}",
            d.socket().display()
        ))
        .arg("uri")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let rel = d.plugin_entry("test")["cgroup"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(d.stop());
    assert!(!Cgroup::at(&rel).unwrap().exists(), "{rel} removed");
}

#[test]
fn a_plugin_killed_by_its_memory_limit_says_so_and_comes_back_in_its_group() {
    if cgroups_unavailable() {
        return;
    }
    // with swap the kernel swaps the group out instead of killing it
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    if swaps.lines().count() > 1 && cannot_test(Some(format!("swap is on: {swaps}"))) {
        return;
    }
    // 32 MiB: the plugin host starts (it charges a few MiB), the test driver's `oom`
    // fault (256 MiB written) is killed
    let config = "uris = [\"test:///default\", \"test:///default?faults=crash\"]\n\
                  [plugins.test]\nisolation = \"process\"\ncgroup_memory_max = 33554432\n\
                  [plugins.qemu]\nisolation = \"in-process\"\n";
    let d = Daemon::start_logged_with_config(config);
    let uri = format!(
        "test+unix:///default?faults=crash&socket={}",
        d.socket().display()
    );
    let script = r#"
import sys, libvirt
c = libvirt.open(sys.argv[1])
try:
    c.lookupByName("oom")
    print("NOT KILLED")
except libvirt.libvirtError as e:
    print(str(e))
print(c.lookupByName("test").state()[0] == libvirt.VIR_DOMAIN_RUNNING)
"#;
    let o = Command::new("/usr/bin/python3")
        .args(["-c", script, &uri])
        .output()
        .expect("cannot run python3");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(
        out.contains("plugin 'test' failed during virDomainLookupByName: its process")
            && out.contains("was killed by signal 9 (SIGKILL): in cgroup rvirt/root-")
            && out.contains("cgroup_memory_max = 33554432 killed 1 process(es)")
            && out.trim_end().ends_with("True"),
        "the client is told which limit killed the plugin, and the next call works: {out}\n{}",
        d.log()
    );
    assert!(
        d.log()
            .contains("cgroup_memory_max = 33554432 killed 1 process(es); restarting it"),
        "{}",
        d.log()
    );
    let test = d.plugin_entry("test");
    let rel = test["cgroup"].as_str().unwrap();
    assert_in_group(test["pid"].as_u64().unwrap() as u32, rel);
    assert!(alive(d.pid()));
}

#[test]
fn without_a_cgroup_hierarchy_a_plugin_with_cgroup_limits_does_not_start() {
    if missing("virsh", Command::new("virsh").arg("--version")) {
        return;
    }
    // an empty cgroup mount point: no v1 controller, no v2 tree
    let empty = tempfile::tempdir().unwrap();
    let config = "[plugins.test]\nisolation = \"process\"\ncgroup_memory_max = 268435456\n\
                  cgroup_pids_max = 64\n[plugins.qemu]\nisolation = \"in-process\"\n";
    let d = Daemon::start_logged_with_env(
        config,
        &[("RVIRT_CGROUP_ROOT", empty.path().to_str().unwrap())],
    );
    let o = virsh(&d, &["domstate", "test"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        err.contains("cannot start plugin 'test': cgroup_memory_max, cgroup_pids_max set, but its cgroup rvirt/root-")
            && err.contains("cannot be made: no cgroup hierarchy found under"),
        "{err}"
    );
    assert!(
        plugin_hosts(d.pid()).is_empty(),
        "no process ran without its limits"
    );
    assert!(alive(d.pid()));
}

#[test]
fn an_unprivileged_daemon_cannot_make_the_cgroup_and_says_why() {
    if cgroups_unavailable() {
        return;
    }
    if missing("setpriv", Command::new("setpriv").arg("--version")) {
        return;
    }
    // rvirtd --root DIR as nobody: the cgroup hierarchies are root's
    let root = tempfile::Builder::new()
        .prefix("rvirtd-it.")
        .tempdir()
        .unwrap();
    let etc = root.path().join("etc/rvirt");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("rvirtd.toml"),
        "[plugins.test]\nisolation = \"process\"\ncgroup_pids_max = 64\n\
         [plugins.qemu]\nisolation = \"in-process\"\n",
    )
    .unwrap();
    for e in ["", "etc", "etc/rvirt", "etc/rvirt/rvirtd.toml"] {
        std::os::unix::fs::chown(root.path().join(e), Some(65534), Some(65534)).unwrap();
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"));
    let mut daemon = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .arg("--root")
        .arg(root.path())
        .env("RVIRT_PLUGIN_PATH", bin.parent().unwrap())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let socket = root.path().join("run/rvirt-sock");
    wait_until("the unprivileged daemon listens", || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    let o = Command::new("virsh")
        .arg("-c")
        .arg(format!("test+unix:///default?socket={}", socket.display()))
        .args(["domstate", "test"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let up = daemon.try_wait().unwrap().is_none();
    let hosts = plugin_hosts(daemon.id());
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(!o.status.success(), "{o:?}");
    assert!(
        err.contains("cannot start plugin 'test': cgroup_pids_max set, but its cgroup rvirt/root-")
            && err.contains("cannot be made: cannot create '")
            && err.contains("Permission denied"),
        "{err}"
    );
    assert!(up, "the daemon stays up");
    assert!(
        hosts.is_empty(),
        "no process ran without its limits: {hosts:?}"
    );
}

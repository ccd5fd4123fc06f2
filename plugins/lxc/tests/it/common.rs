//! Shared helpers: a busybox root filesystem, a driver on an embedded root, an event
//! recorder, waiting.

use rvirt_plugin_lxc::driver::Driver;
use rvirt_plugin_lxc::paths::Paths;
use rvirt_sdk::abi::{DomainRef, EventSink, EventSinkBox, abi_stable::sabi_trait::TD_Opaque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether containers can run here (root, cgroups writable, busybox); says why not.
pub fn can_run(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        rvirt_tests::cannot_run(test, "containers need root (CAP_SYS_ADMIN, CAP_MKNOD)");
        return false;
    }
    if rvirt_plugin_lxc::cgroup::Cgroup::at("machine").is_err() {
        rvirt_tests::cannot_run(test, "no cgroup hierarchy under /sys/fs/cgroup");
        return false;
    }
    if busybox().is_none() {
        rvirt_tests::cannot_run(test, "busybox-static is not installed (/bin/busybox)");
        return false;
    }
    true
}

fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A fresh directory for one test.
pub fn test_dir(name: &str) -> PathBuf {
    static BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let base = BASE.get_or_init(|| rvirt_tests::process_temp_dir("rvirt-lxc-it", ""));
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A busybox root filesystem in `dir/rootfs` with `/init.sh` = `script`.
pub fn rootfs(dir: &Path, script: &str) -> PathBuf {
    let r = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::copy(busybox().unwrap(), r.join("bin/busybox")).unwrap();
    for a in [
        "sh", "ps", "hostname", "cat", "sleep", "echo", "env", "dd", "ls", "true", "false", "id",
        "mount", "head", "grep", "wc", "kill", "ip",
    ] {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(a)).unwrap();
    }
    std::fs::write(r.join("init.sh"), script).unwrap();
    r
}

/// A container definition running `/bin/sh /init.sh` in `root`; `extra` goes inside
/// `<domain>` (limits), `devs` inside `<devices>`.
pub fn xml(name: &str, root: &Path, mem_kib: u64, extra: &str, devs: &str) -> String {
    format!(
        "<domain type='lxc'>
  <name>{name}</name>
  <memory unit='KiB'>{mem_kib}</memory>
  <vcpu>1</vcpu>
  {extra}
  <os>
    <type>exe</type>
    <init>/bin/sh</init>
    <initarg>/init.sh</initarg>
    <initenv name='GREETING'>hello-from-initenv</initenv>
  </os>
  <devices>
    <filesystem type='mount'>
      <source dir='{}'/>
      <target dir='/'/>
    </filesystem>
    {devs}
    <console type='pty'>
      <target type='lxc' port='0'/>
    </console>
  </devices>
</domain>",
        root.display()
    )
}

/// A driver instance on `dir/state` (a new one each call: a restarted daemon).
pub fn driver(dir: &Path) -> &'static Driver {
    Driver::load(paths(dir), None).unwrap()
}

/// The paths of `dir/state`.
pub fn paths(dir: &Path) -> Paths {
    Paths::from_uri(&format!(
        "lxc:///embed?root={}",
        dir.join("state").display()
    ))
    .unwrap()
}

/// Waits for `f`, panicking with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The console log of `name` once it contains `needle`.
pub fn console_with(dir: &Path, name: &str, needle: &str) -> String {
    let p = paths(dir).console_log(name);
    let mut text = String::new();
    wait_for(
        &format!("'{needle}' on {name}'s console"),
        Duration::from_secs(20),
        || {
            text = std::fs::read_to_string(&p).unwrap_or_default();
            text.contains(needle)
        },
    );
    text
}

/// Lifecycle events as `(name, event, detail)`.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<(String, i32, i32)>>>);

impl EventSink for Events {
    fn domain_lifecycle(&self, dom: DomainRef, event: i32, detail: i32) {
        self.0
            .lock()
            .unwrap()
            .push((dom.name.to_string(), event, detail));
    }
}

impl Events {
    /// A sink for the driver.
    pub fn sink(&self) -> EventSinkBox {
        rvirt_sdk::abi::EventSink_TO::from_value(self.clone(), TD_Opaque)
    }

    /// The events of `name` once there are at least `n` (events reach the sinks after
    /// the state change that caused them: a call may return before its event arrives),
    /// or what came within 5 s.
    pub fn at_least(&self, name: &str, n: usize) -> Vec<(i32, i32)> {
        let t0 = Instant::now();
        while self.of(name).len() < n && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.of(name)
    }

    /// The events of `name` so far.
    pub fn of(&self, name: &str) -> Vec<(i32, i32)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == name)
            .map(|e| (e.1, e.2))
            .collect()
    }
}

/// Whether anything is mounted under `p` in the host's mount table.
pub fn mounted_under(p: &Path) -> bool {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = p.to_string_lossy();
    mi.lines().any(|l| {
        l.split_whitespace()
            .nth(4)
            .is_some_and(|m| m.starts_with(&*p))
    })
}

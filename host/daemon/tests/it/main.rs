//! Integration tests of `rvirtd`: start the daemon under a temporary `--root` and
//! drive it with the real `virsh`, python-libvirt and raw protocol clients.
//!
//! The daemon binary comes from cargo (`CARGO_BIN_EXE_rvirtd`); the test plugin must
//! have been built next to it (`cargo build --workspace`). Tests needing `virsh` or
//! python-libvirt fail loudly when those are missing, unless `RVIRT_ALLOW_SKIP=1`.

mod activation;
mod admin;
mod bridge_networks;
mod console;
mod esx;
mod golibvirt;
mod isolated_backends;
mod isolation;
mod lxc;
mod migrate;
mod networks;
mod observability;
mod other_hypervisors;
mod plugin_cgroups;
mod policy;
mod protocol;
mod python;
mod qemu;
mod qemu_hotplug;
mod qemu_save;
mod qemu_snapshots;
mod rbd;
mod remote_driver;
mod save_stats;
mod screenshot;
mod secrets;
mod security;
mod served_plugins;
mod session;
mod snapshots;
mod ssh;
mod storage;
mod storage_more;
mod streams;
mod tls;
mod virsh;
mod virt_install;
mod vmware;
mod volume_disk;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A daemon started for one test; stopped (SIGTERM) on drop.
pub struct Daemon {
    pub root: tempfile::TempDir,
    child: Option<Child>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Daemon {
        Daemon::start_full(extra, None)
    }

    /// Starts with `config` written to `ROOT/etc/rvirt/rvirtd.toml` (the default config path).
    pub fn start_with_config(config: &str) -> Daemon {
        Daemon::start_full(&[], Some(config))
    }

    /// [`Daemon::start_with_config`] with the daemon's log (stderr, `warn` and up unless
    /// `RVIRTD_LOG` says otherwise) written to `ROOT/rvirtd.log`, read with [`Daemon::log`].
    pub fn start_logged_with_config(config: &str) -> Daemon {
        Daemon::start_inner(&[], Some(config), true)
    }

    /// What the daemon logged so far (daemons started with [`Daemon::start_logged_with_config`]).
    /// `rvirt --json plugin list --root ROOT`'s entry for the plugin `name`.
    pub fn plugin_entry(&self, name: &str) -> serde_json::Value {
        let o = Command::new(rvirt_tests::built("rvirt"))
            .args(["--json", "plugin", "list", "--root"])
            .arg(self.root.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no plugin {name} in {v}"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("rvirtd.log")).unwrap_or_default()
    }

    /// The log once it holds every one of `needles`, or after 5 s whatever it holds: a
    /// client whose call failed may see the error before the daemon has logged why.
    pub fn log_with(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if needles.iter().all(|n| log.contains(n)) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start_full(extra: &[&str], config: Option<&str>) -> Daemon {
        Daemon::start_inner(extra, config, false)
    }

    /// [`Daemon::start_logged_with_config`] with `plugin_dir` searched for plugins before
    /// the build directory (a plugin copied there wins over the built one).
    pub fn start_logged_with_plugins(config: &str, plugin_dir: &Path) -> Daemon {
        Daemon::start_env(&[], Some(config), true, Some(plugin_dir), &[])
    }

    /// [`Daemon::start_logged_with_config`] with `env` set for the daemon.
    pub fn start_logged_with_env(config: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_env(&[], Some(config), true, None, env)
    }

    fn start_inner(extra: &[&str], config: Option<&str>, logged: bool) -> Daemon {
        Daemon::start_env(extra, config, logged, None, &[])
    }

    fn start_env(
        extra: &[&str],
        config: Option<&str>,
        logged: bool,
        plugin_dir: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Daemon {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"));
        let bin_dir = bin.parent().expect("binary directory");
        let plugin = bin_dir.join("librvirt_plugin_test.so");
        assert!(
            plugin.exists(),
            "\n\n!!! the test plugin {} is missing: run `cargo build --workspace` before the tests\n",
            plugin.display()
        );
        let root = tempfile::Builder::new()
            .prefix("rvirtd-it.")
            .tempdir()
            .expect("tempdir");
        if let Some(text) = config {
            let dir = root.path().join("etc/rvirt");
            std::fs::create_dir_all(&dir).expect("config dir");
            std::fs::write(dir.join("rvirtd.toml"), text).expect("config file");
        }
        let search = match plugin_dir {
            Some(first) => std::env::join_paths([first, bin_dir]).expect("plugin path"),
            None => bin_dir.as_os_str().to_owned(),
        };
        let mut cmd = Command::new(&bin);
        cmd.arg("--root")
            .arg(root.path())
            .args(extra)
            .env("RVIRT_PLUGIN_PATH", search)
            .env(
                "RUST_LOG",
                std::env::var("RVIRTD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        if logged {
            let log = std::fs::File::create(root.path().join("rvirtd.log")).expect("log file");
            cmd.stderr(log);
        }
        let child = cmd.spawn().expect("cannot start rvirtd");
        let d = Daemon {
            root,
            child: Some(child),
        };
        d.wait_for_socket();
        d
    }

    fn wait_for_socket(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok()
                && std::os::unix::net::UnixStream::connect(self.socket_ro()).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "rvirtd did not create {} within 10 s",
            self.socket().display()
        );
    }

    pub fn socket(&self) -> PathBuf {
        self.root.path().join("run/rvirt-sock")
    }

    pub fn socket_ro(&self) -> PathBuf {
        self.root.path().join("run/rvirt-sock-ro")
    }

    pub fn uri(&self) -> String {
        format!("test+unix:///default?socket={}", self.socket().display())
    }

    pub fn uri_ro(&self) -> String {
        format!("test+unix:///default?socket={}", self.socket_ro().display())
    }

    /// Stops the daemon (SIGTERM) and starts a new one on the same root.
    pub fn restart(&mut self) {
        self.restart_after(|_| {});
    }

    /// [`Daemon::restart`], running `between` on the root while no daemon runs (a test's
    /// host reboot removes the volatile `run/` state there).
    pub fn restart_after(&mut self, between: impl FnOnce(&Path)) {
        assert!(self.stop(), "rvirtd did not exit cleanly on SIGTERM");
        between(self.root.path());
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"));
        let bin_dir = bin.parent().expect("binary directory").to_path_buf();
        let child = Command::new(&bin)
            .arg("--root")
            .arg(self.root.path())
            .env("RVIRT_PLUGIN_PATH", bin_dir)
            .env(
                "RUST_LOG",
                std::env::var("RVIRTD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot restart rvirtd");
        self.child = Some(child);
        self.wait_for_socket();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client's event loop (`virsh net-event --loop` and the like) whose output is read
/// line by line as it comes (virsh runs under `stdbuf -oL`), so a test waits for the
/// events it expects instead of for a timeout that a loaded machine can outrun.
pub struct EventWatch {
    child: Child,
    out: std::sync::Arc<std::sync::Mutex<String>>,
}

impl EventWatch {
    /// Starts `program args...` line-buffered; its stdout and stderr are collected.
    pub fn spawn(program: &str, args: &[&str]) -> EventWatch {
        use std::io::BufRead;
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program} under stdbuf: {e}"));
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        EventWatch { child, out }
    }

    /// What the watcher printed so far.
    pub fn seen(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Calls `probe` (something that makes an event) until `needle` shows in the output,
    /// so the watcher is known to have registered its callbacks; at most 30 s.
    pub fn ready(&self, needle: &str, mut probe: impl FnMut(u32)) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for round in 0.. {
            probe(round);
            let until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < until {
                if self.seen().contains(needle) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                Instant::now() < deadline,
                "the event watcher never printed {needle:?}: {}",
                self.seen()
            );
        }
    }

    /// Waits (at most 60 s) until every one of `wanted` shows in the output, then stops
    /// the watcher and returns all it printed; panics naming what is missing.
    pub fn wait_for(mut self, wanted: &[String]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let seen = self.seen();
            let missing: Vec<&String> = wanted.iter().filter(|w| !seen.contains(*w)).collect();
            if missing.is_empty() {
                return seen;
            }
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                std::thread::sleep(Duration::from_millis(200));
                let seen = self.seen();
                let missing: Vec<&String> = wanted.iter().filter(|w| !seen.contains(*w)).collect();
                assert!(
                    missing.is_empty(),
                    "events {missing:?} missing from:\n{seen}"
                );
                return seen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a tool needed by a test is missing; panics loudly unless skipping is allowed.
/// Percent-encodes `s` for a URI query value (virsh's `name=` parameter).
/// Whether a process is alive (a zombie is gone for this purpose).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// The daemon's children serving plugins (`--plugin-host`), with their command lines.
pub fn plugin_hosts_with_cmdlines(daemon: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if ppid == Some(daemon) && cmd.contains("--plugin-host") {
            out.push((pid, cmd));
        }
    }
    out
}

/// The pids of the daemon's plugin host processes.
pub fn plugin_hosts(daemon: u32) -> Vec<u32> {
    plugin_hosts_with_cmdlines(daemon)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// Runs the real virsh against `uri`.
pub fn virsh(uri: &str, args: &[&str]) -> Output {
    Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .expect("cannot run virsh")
}

/// Runs virsh, which must succeed; its standard output.
pub fn virsh_ok(uri: &str, args: &[&str]) -> String {
    let o = virsh(uri, args);
    assert!(
        o.status.success(),
        "virsh {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn missing(tool: &str, check: &mut Command) -> bool {
    let ok = check
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return false;
    }
    let msg = format!(
        "\n\n!!! {tool} is not available, so this test cannot run.\n!!! Install it with: apt-get install -y libvirt-clients python3-libvirt\n!!! (set RVIRT_ALLOW_SKIP=1 to skip instead of failing)\n"
    );
    if std::env::var("RVIRT_ALLOW_SKIP").is_ok_and(|v| v == "1") {
        eprintln!("{msg}!!! SKIPPED\n");
        return true;
    }
    panic!("{msg}");
}

/// Writes a file under the daemon's root.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

pub fn domain_xml(name: &str) -> String {
    format!(
        "<domain type='test'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64'>hvm</type></os></domain>"
    )
}

#[test]
fn sigterm_removes_sockets() {
    let mut d = Daemon::start();
    assert!(d.socket().exists() && d.socket_ro().exists());
    assert!(d.stop(), "rvirtd did not exit cleanly on SIGTERM");
    assert!(!d.socket().exists(), "socket left behind");
    assert!(!d.socket_ro().exists(), "read-only socket left behind");
}

#[test]
fn help_and_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_rvirtd"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("--root") && text.contains("--libvirt-sockets"),
        "{text}"
    );
}

#[test]
fn second_daemon_refuses_live_socket() {
    let d = Daemon::start();
    let out = Command::new(env!("CARGO_BIN_EXE_rvirtd"))
        .arg("--root")
        .arg(d.root.path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        std::os::unix::net::UnixStream::connect(d.socket()).is_ok(),
        "first daemon's socket was clobbered"
    );
}

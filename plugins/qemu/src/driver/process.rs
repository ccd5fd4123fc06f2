//! QEMU processes: what `/proc` says of a pid (uids, start time, CPU time, the monitor
//! socket among its descriptors), the checks that make a status file trusted
//! ([`Driver::read_status`]), reattaching to a QEMU another process started, and
//! supervision: the thread that waits for QEMU to exit (pidfd), reaping, and the
//! domain's state after an exit.
//!
//! Architecture invariant: a pid read from disk is signalled only through a pidfd opened
//! before the checks and found alive after them.

use super::domains::{Dom, Run, STATUS_VERSION, Status, Stopping};
use super::monitor::fill_pty_paths;
use super::{Driver, detail, reason};
use crate::command;
use rvirt_qmp::Qmp;
use rvirt_sdk::abi::{event, state};
use rvirt_xml::{Domain, FormatOptions};
use std::collections::HashSet;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the checks of a status file found.
pub(super) enum Recorded {
    /// A live QEMU of this domain, pinned by its pidfd.
    Live(Box<Status>, OwnedFd),
    /// The QEMU it names has ended.
    Dead(Box<Status>),
    /// Not to be trusted: discarded without touching the process or files it names.
    Untrusted(String),
}

/// The uid of process `pid` (real and effective, from `/proc/PID/status`).
pub(super) fn proc_uids(pid: i32) -> Option<(u32, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("Uid:"))?;
    let mut f = l.split_whitespace().skip(1).map(|v| v.parse::<u32>().ok());
    Some((f.next()??, f.next()??))
}

/// Whether process `pid` holds the listening unix socket bound at `path` (the monitor
/// socket the driver made for this domain's QEMU).
pub(super) fn holds_listener(pid: i32, path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let want = path.to_string_lossy();
    let inodes: HashSet<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Num RefCount Protocol Flags Type St Inode Path
            (f.len() >= 8 && f[7..].join(" ") == want).then(|| format!("socket:[{}]", f[6]))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|t| inodes.contains(t.to_string_lossy().as_ref()))
        })
}

pub(super) fn proc_start_time(pid: i32) -> Option<(u64, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let st = f.first()?.chars().next()?;
    Some((f.get(19)?.parse().ok()?, st))
}

pub(super) fn proc_cpu_ns(pid: i32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(p) = s.rfind(')') else { return 0 };
    let f: Vec<&str> = s[p + 2..].split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ticks = n(11) + n(12);
    let hz = rustix::param::clock_ticks_per_second().max(1);
    ticks.saturating_mul(1_000_000_000 / hz)
}

pub(super) fn log_tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s
        .lines()
        .filter(|l| !l.starts_with("rvirt:") && !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(3)..]
        .join(" ")
        .trim()
        .to_string()
}

/// Blocks until the process behind `pidfd` has exited (or `timeout` passed): `true` when
/// it has.
pub(super) fn wait_exit(pidfd: &OwnedFd, timeout: Option<Duration>) -> bool {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let ts = left.map(|l| rustix::event::Timespec {
            tv_sec: i64::try_from(l.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(l.subsec_nanos()),
        });
        let fd = pidfd.as_fd();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            // An unpollable pidfd cannot tell; the caller's state update must not wait.
            Err(_) => return true,
        }
    }
}

/// Reaps our exited child through its pidfd (no pid reuse race); `ECHILD` (someone else
/// reaped it, or it is not ours) is fine.
pub(super) fn reap(pidfd: &OwnedFd) {
    let _ = rustix::process::waitid(
        rustix::process::WaitId::PidFd(pidfd.as_fd()),
        rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG,
    );
}

pub(super) fn append_log(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f: File = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// The command that starts QEMU: logged to the domain's log file (stdout and stderr go
/// there too), in its own session, inheriting the monitor listener `fd`, the secrets'
/// memfds and the TAP descriptors (everything else is close-on-exec).
pub(super) fn qemu_command(
    emulator: &str,
    args: &[String],
    (log, err_log): (File, File),
    fd: i32,
    secret_raw: Vec<i32>,
    tap_fds: Vec<i32>,
) -> Command {
    let mut line = format!("rvirt: starting {emulator}");
    for a in args {
        line.push(' ');
        line.push_str(&command::shell_quote(a));
    }
    line.push('\n');
    let _ = std::io::Write::write_all(&mut &log, line.as_bytes());
    let mut cmd = Command::new(emulator);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log))
        .env("LC_ALL", "C");
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (setsid, fcntl) on memory it owns.
    unsafe {
        cmd.pre_exec(move || {
            // Its own session: QEMU must not die with the process that started it.
            rustix::process::setsid().map_err(std::io::Error::from)?;
            // SAFETY: `fd` is the monitor listener, open in the parent across fork.
            let bfd = rustix::fd::BorrowedFd::borrow_raw(fd);
            rustix::io::fcntl_setfd(bfd, rustix::io::FdFlags::empty())
                .map_err(std::io::Error::from)?;
            for &t in &secret_raw {
                // SAFETY: the secrets' memfds are open in the parent across fork.
                let sfd = rustix::fd::BorrowedFd::borrow_raw(t);
                rustix::io::fcntl_setfd(sfd, rustix::io::FdFlags::empty())
                    .map_err(std::io::Error::from)?;
            }
            for &t in &tap_fds {
                // SAFETY: the TAP descriptors are open in the parent across fork.
                let tfd = rustix::fd::BorrowedFd::borrow_raw(t);
                rustix::io::fcntl_setfd(tfd, rustix::io::FdFlags::empty())
                    .map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    cmd
}

impl Driver {
    /// Reads and checks `run/NAME.status` (see the module documentation).
    pub(super) fn read_status(&self, name: &str) -> Option<Recorded> {
        use std::io::Read;
        let path = self.paths.status_file(name);
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Recorded::Untrusted(format!("cannot open it: {e}"))),
        };
        let Ok(m) = f.metadata() else {
            return Some(Recorded::Untrusted("cannot stat it".into()));
        };
        let me = rustix::process::geteuid().as_raw();
        if !m.file_type().is_file() {
            return Some(Recorded::Untrusted("it is not a regular file".into()));
        }
        if m.uid() != me {
            return Some(Recorded::Untrusted(format!(
                "it is owned by uid {}, not {me}",
                m.uid()
            )));
        }
        if m.mode() & 0o022 != 0 {
            return Some(Recorded::Untrusted(format!(
                "others may write it (mode {:o})",
                m.mode() & 0o777
            )));
        }
        let mut text = String::new();
        if f.read_to_string(&mut text).is_err() {
            return Some(Recorded::Untrusted("cannot read it".into()));
        }
        let s = match serde_json::from_str::<Status>(&text) {
            Ok(s) if s.version == STATUS_VERSION => Box::new(s),
            Ok(s) => {
                return Some(Recorded::Untrusted(format!(
                    "unknown version {}",
                    s.version
                )));
            }
            Err(e) => return Some(Recorded::Untrusted(format!("invalid: {e}"))),
        };
        if s.monitor != self.paths.monitor(name) {
            return Some(Recorded::Untrusted(format!(
                "it names another monitor socket '{}'",
                s.monitor.display()
            )));
        }
        if Domain::parse(&s.live).map_or(true, |l| l.name() != name) {
            return Some(Recorded::Untrusted(
                "its live definition is not domain's".into(),
            ));
        }
        // Pinned first: checked through /proc, then found still alive, the pidfd refers
        // to the process that was checked (a reused pid cannot slip in between).
        let Some(pidfd) = rustix::process::Pid::from_raw(s.pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        }) else {
            return Some(Recorded::Dead(s));
        };
        if proc_start_time(s.pid).is_none_or(|(t, st)| t != s.start_time || st == 'Z') {
            return Some(Recorded::Dead(s));
        }
        if proc_uids(s.pid).is_none_or(|(r, e)| r != me || e != me) {
            return Some(Recorded::Untrusted(format!(
                "process {} does not run as uid {me}",
                s.pid
            )));
        }
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", s.pid)).unwrap_or_default();
        let guest = format!("guest={},", name.replace(',', ",,"));
        if !cmdline
            .split(|b| *b == 0)
            .any(|a| a.starts_with(guest.as_bytes()))
        {
            return Some(Recorded::Untrusted(format!(
                "process {} is not the qemu of domain '{name}'",
                s.pid
            )));
        }
        if !holds_listener(s.pid, &s.monitor) {
            return Some(Recorded::Untrusted(format!(
                "process {} does not hold the monitor socket '{}'",
                s.pid,
                s.monitor.display()
            )));
        }
        if wait_exit(&pidfd, Some(Duration::ZERO)) {
            return Some(Recorded::Dead(s));
        }
        Some(Recorded::Live(s, pidfd))
    }

    /// Reattaches to the QEMU that `run/NAME.status` records, or, when it has ended,
    /// reports the domain shut off and removes its run files. `locked`: the caller holds
    /// the domain's lock file (a load, or a job). Without it (another process runs a job
    /// on the domain) a live QEMU is only observed: no monitor connection (that process
    /// may be in its handshake), no action, and nothing is removed or rewritten.
    pub(super) fn reattach(&'static self, name: &str, locked: bool) {
        let (s, pidfd) = match self.read_status(name) {
            None => return,
            Some(Recorded::Live(s, fd)) => (s, Some(fd)),
            Some(_) if !locked => return,
            Some(Recorded::Untrusted(why)) => {
                // Nothing it names is signalled or removed.
                let _ = std::fs::remove_file(self.paths.status_file(name));
                let _ = append_log(
                    &self.paths.log_file(name),
                    &format!("rvirt: discarded status file: {why}\n"),
                );
                return;
            }
            Some(Recorded::Dead(s)) => (s, None),
        };
        let Ok(mut live) = Domain::parse(&s.live) else {
            return;
        };
        let def = Domain::parse(&s.def).unwrap_or_else(|_| live.clone());
        let uuid = live.uuid();
        let mut st = self.lock();
        let persistent_known = st.doms.get(&uuid).is_some_and(|d| d.persistent);
        let Some(pidfd) = pidfd else {
            // QEMU ended while nobody watched (or is a zombie nobody reaps): after a guest
            // shutdown that was recorded, shut off (shutdown); otherwise it crashed.
            self.cleanup_run_files(name, &s.overlays);
            if let Ok(live) = Domain::parse(&s.live) {
                self.release_ports(&live);
            }
            if let Some(d) = st.doms.get_mut(&uuid) {
                d.state = state::SHUTOFF;
                d.reason = if s.shutdown {
                    reason::SHUTOFF_SHUTDOWN
                } else {
                    reason::SHUTOFF_CRASHED
                };
                self.record_stop(name, d.reason);
            }
            return;
        };
        // Under the domain's lock no start is in its handshake: a free monitor greets at
        // once, and one held by another process never does. So the wait is short (it is
        // paid by every process that opens the root while another one holds the monitor).
        let connected = locked
            .then(|| Qmp::connect(&s.monitor, Duration::from_secs(1)).ok())
            .flatten();
        let (mut dstate, mut dreason) = (s.state, s.reason);
        let mut shutdown_seen = s.shutdown;
        let mut rewrite = false;
        if let Some((q, _)) = &connected
            && let Ok(v) = q.execute("query-status", None)
        {
            if let Ok(c) = q.execute("query-chardev", None) {
                // The process that started it may have ended before it recorded them.
                let before = live.to_xml(&FormatOptions::default());
                fill_pty_paths(&mut live, &c);
                rewrite = live.to_xml(&FormatOptions::default()) != before;
            }
            match v["status"].as_str().unwrap_or("") {
                "running" => {
                    shutdown_seen = false;
                    if dstate != state::RUNNING {
                        dreason = reason::RUNNING_UNKNOWN;
                    }
                    dstate = state::RUNNING;
                }
                "shutdown" => {
                    shutdown_seen = true;
                    dstate = state::PAUSED;
                    dreason = reason::PAUSED_SHUTTING_DOWN;
                }
                "guest-panicked" => {
                    dstate = state::CRASHED;
                    dreason = reason::CRASHED_PANICKED;
                }
                _ => {
                    if dstate != state::PAUSED {
                        dreason = reason::PAUSED_UNKNOWN;
                    }
                    dstate = state::PAUSED;
                }
            }
        }
        st.generation += 1;
        let generation = st.generation;
        let (qmp, events) = match connected {
            Some((q, e)) => (Some(q), Some(e)),
            None => (None, None),
        };
        let pidfd = Arc::new(pidfd);
        let run = Run {
            generation,
            id: s.id,
            pid: s.pid,
            start_time: s.start_time,
            pidfd: pidfd.clone(),
            own_child: false,
            live,
            qmp: qmp.clone(),
            monitor: s.monitor.clone(),
            overlays: s.overlays.clone(),
            volumes: s.volumes.clone(),
            stopping: None,
            shutdown_seen,
            panicked: false,
            fake_reboot: false,
            resetting: false,
            expect_pause: None,
            events_applied: 0,
            deleted: Default::default(),
            unplugged_vcpus: Default::default(),
            next_node: 0,
        };
        let entry = st.doms.entry(uuid).or_insert_with(|| Dom {
            def,
            persistent: false,
            autostart: false,
            state: state::SHUTOFF,
            reason: 0,
            run: None,
        });
        entry.persistent = persistent_known;
        entry.state = dstate;
        entry.reason = dreason;
        entry.run = Some(run);
        if rewrite || (shutdown_seen && !s.shutdown) {
            let d = &*entry;
            if let Some(run) = &d.run {
                let _ = self.write_status_locked(d, run);
            }
        }
        drop(st);
        self.spawn_exit_waiter(uuid, generation, pidfd, false);
        if let Some(ev) = events {
            self.spawn_event_loop(uuid, generation, ev, None);
        }
        if shutdown_seen && locked {
            // The guest powered off while nobody watched: apply on_poweroff now, and let
            // the caller see the outcome.
            self.after_guest_shutdown(uuid, generation, false);
            self.wait_gone(uuid, generation, Duration::from_secs(10));
        }
    }

    // ---- supervision ----

    /// One thread per run waits for QEMU's exit on its pidfd (reaping it when it is our
    /// child), then updates the state.
    pub(super) fn spawn_exit_waiter(
        &'static self,
        uuid: uuid::Uuid,
        generation: u64,
        pidfd: Arc<OwnedFd>,
        own_child: bool,
    ) {
        let _ = std::thread::Builder::new()
            .name("qemu-wait".into())
            .spawn(move || {
                wait_exit(&pidfd, None);
                if own_child {
                    reap(&pidfd);
                }
                self.on_exit(uuid, generation);
            });
    }

    pub(super) fn on_exit(&self, uuid: uuid::Uuid, generation: u64) {
        let _order = self.order();
        let mut st = self.lock();
        let Some(d) = st.doms.get_mut(&uuid) else {
            return;
        };
        if d.run.as_ref().is_none_or(|r| r.generation != generation) {
            return;
        }
        let run = d.run.take().expect("checked above");
        if let Some(q) = &run.qmp {
            q.close();
        }
        let (rsn, det) = if run.stopping == Some(Stopping::Destroy) {
            (reason::SHUTOFF_DESTROYED, detail::STOPPED_DESTROYED)
        } else if run.stopping == Some(Stopping::Saved) {
            // VIR_DOMAIN_EVENT_STOPPED_SAVED
            (reason::SHUTOFF_SAVED, 4)
        } else if run.stopping == Some(Stopping::Migrated) {
            (reason::SHUTOFF_MIGRATED, detail::STOPPED_MIGRATED)
        } else if run.stopping == Some(Stopping::FromSnapshot) {
            // VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT, VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT
            (7, 6)
        } else if run.shutdown_seen {
            (reason::SHUTOFF_SHUTDOWN, detail::STOPPED_SHUTDOWN)
        } else if run.panicked {
            (reason::SHUTOFF_CRASHED, detail::STOPPED_CRASHED)
        } else {
            (reason::SHUTOFF_CRASHED, detail::STOPPED_FAILED)
        };
        d.state = state::SHUTOFF;
        d.reason = rsn;
        let mut r = d.reference();
        r.id = -1;
        let name = d.def.name().to_string();
        let transient = !d.persistent;
        if transient {
            st.doms.remove(&uuid);
            self.forget_snapshots(&mut st, uuid, &name);
        } else {
            self.record_stop(&name, rsn);
        }
        // Only while the status file is this run's: another process that found this QEMU
        // gone may already have started the domain again, with new files.
        if self.status_names(&name, run.pid, run.start_time) {
            self.cleanup_run_files(&name, &run.overlays);
            self.release_ports(&run.live);
        }
        let _ = append_log(
            &self.paths.log_file(&name),
            &format!("rvirt: qemu pid {} ended (shutoff reason {rsn})\n", run.pid),
        );
        drop(st);
        self.exited.notify_all();
        self.emit(vec![(r, event::STOPPED, det)]);
    }

    /// Blocks until the run `generation` of `uuid` has ended (or `timeout` passed).
    pub(super) fn wait_gone(&self, uuid: uuid::Uuid, generation: u64, timeout: Duration) -> bool {
        let st = self.lock();
        let (_g, to) = self
            .exited
            .wait_timeout_while(st, timeout, |s| {
                s.doms
                    .get(&uuid)
                    .and_then(|d| d.run.as_ref())
                    .is_some_and(|r| r.generation == generation)
            })
            .unwrap_or_else(|e| e.into_inner());
        !to.timed_out()
    }
}

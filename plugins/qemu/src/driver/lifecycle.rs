//! Lifecycle calls: start (spawning QEMU with its descriptors, the monitor handshake,
//! passwords, pty paths, the status file), transient domains, autostart, destroy,
//! shutdown, reboot, suspend and resume. Each state change runs as the domain's job.
//!
//! Architecture invariant: no process spawn, `qemu-img` run or monitor command happens
//! under the driver lock.

use super::domains::{Dom, Run, Stopping, mkdir_private};
use super::job::{FileLock, Job, job_timeout, job_timeout_error, monitor_timeout};
use super::monitor::fill_pty_paths;
use super::process::{append_log, log_tail, proc_start_time, qemu_command, reap, wait_exit};
use super::resources::PortGuard;
use super::{Driver, DriverError, Result, detail, io, perr, reason};
use crate::command::{self, BuildOptions, Monitor};
use rvirt_qmp::Qmp;
use rvirt_sdk::abi::{DomainRef, ErrorDomain, PluginError, event, state};
use rvirt_sdk::util::{no_domain, operation_invalid};
use serde_json::json;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A start from a save image or an incoming migration (see
/// [`Driver::start_in_job_full`]).
pub(super) struct Incoming {
    /// The image, positioned at QEMU's migration stream; `None` for a migration.
    pub(super) file: Option<std::fs::File>,
    /// An incoming migration: QEMU starts with `-incoming defer` and listens on this URI
    /// (`tcp:ADDR:PORT`) once its monitor is up; the start returns without waiting for
    /// the stream, the domain paused for the migration.
    pub(super) migrate_uri: Option<String>,
    /// The definition to run instead of the domain's (the image's, or the caller's).
    pub(super) def: Option<rvirt_xml::Domain>,
    /// The guest stays paused after the restore.
    pub(super) paused: bool,
}

/// Waits until QEMU has read the whole incoming stream: its run state leaves `inmigrate`
/// (and, when the guest is to run, `cont` sent at start has made it `running`).
/// Asked every millisecond for the first seconds (a restore returning up to 20 ms after
/// QEMU is done was most of its time over QEMU's own), less often after.
fn wait_incoming(qmp: &Qmp, paused: bool) -> Result<()> {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(600);
    let mut pause = Duration::from_millis(1);
    loop {
        let st = qmp.execute("query-status", None)?;
        let status = st.get("status").and_then(|s| s.as_str()).unwrap_or("");
        match status {
            "internal-error" | "io-error" | "shutdown" | "guest-panicked" => {
                return Err(DriverError::Launch {
                    reason: format!(
                        "restoring the saved state failed (qemu is in state '{status}')"
                    ),
                    log: String::new(),
                });
            }
            "inmigrate" => {}
            "running" => return Ok(()),
            // the guest stays paused: any state past the stream will do
            _ if paused => return Ok(()),
            // `cont` during the incoming migration runs the guest once it is read
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(DriverError::Launch {
                reason: format!(
                    "qemu did not finish reading the saved state in 600 s (state '{status}')"
                ),
                log: String::new(),
            });
        }
        std::thread::sleep(pause);
        if t0.elapsed() > Duration::from_secs(2) {
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

impl Driver {
    pub(super) fn autostart(&'static self) {
        let todo: Vec<uuid::Uuid> = self
            .lock()
            .doms
            .iter()
            .filter(|(_, d)| d.autostart && d.persistent && d.run.is_none())
            .map(|(u, _)| *u)
            .collect();
        for u in todo {
            if let Err(e) = self.start(u, 0) {
                let d = self.lock().doms.get(&u).map(|d| d.def.name().to_string());
                if let Some(n) = d {
                    let msg = PluginError::from(e).message.to_string();
                    let _ = append_log(
                        &self.paths.log_file(&n),
                        &format!("rvirt: autostart failed: {msg}\n"),
                    );
                }
            }
        }
    }

    /// virDomainCreateXML: a transient domain, started; nothing is left behind on failure.
    pub fn create_transient(&'static self, xml: &str, flags: u32) -> Result<DomainRef> {
        let def = Self::parse_def(xml)?;
        let uuid = def.uuid();
        let job = self.begin_job(uuid, Some(def.name()))?;
        self.sync_from_disk(&job);
        {
            let mut st = self.lock();
            Self::check_unique(&st, &def)?;
            if let Some(d) = st.doms.get(&uuid) {
                if d.run.is_some() {
                    return Err(perr(operation_invalid(
                        ErrorDomain::Qemu,
                        &format!("domain '{}' is already active", def.name()),
                    )));
                }
                if d.persistent {
                    return Err(perr(operation_invalid(
                        ErrorDomain::Qemu,
                        &format!(
                            "domain '{}' is already defined; start it instead",
                            def.name()
                        ),
                    )));
                }
            }
            st.doms.insert(
                uuid,
                Dom {
                    def,
                    persistent: false,
                    autostart: false,
                    state: state::SHUTOFF,
                    reason: 0,
                    run: None,
                },
            );
        }
        match self.start_in_job(&job, flags) {
            Ok(r) => Ok(r),
            Err(e) => {
                let mut st = self.lock();
                if st
                    .doms
                    .get(&uuid)
                    .is_some_and(|d| !d.persistent && d.run.is_none())
                {
                    st.doms.remove(&uuid);
                }
                Err(e)
            }
        }
    }

    /// virDomainCreateWithFlags (`VIR_DOMAIN_START_PAUSED` = 1).
    pub fn start(&'static self, uuid: uuid::Uuid, flags: u32) -> Result<DomainRef> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        if self.with_dom(uuid, |d| d.run.is_some()).unwrap_or(false) {
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                "domain is already running",
            )));
        }
        // a managed save image resumes the guest (VIR_DOMAIN_START_FORCE_BOOT = 8 drops it)
        if let Some(r) = self.start_managed(&job, flags) {
            return r;
        }
        self.start_in_job(&job, flags & !8)
    }

    /// Starts the domain of `job`. The driver lock is taken only to read the definition
    /// and to commit the run: `qemu-img`, the spawn, the monitor handshake and `cont` run
    /// without it.
    pub(super) fn start_in_job(&'static self, job: &Job<'_>, flags: u32) -> Result<DomainRef> {
        self.start_in_job_as(job, flags, None)
    }

    /// [`Driver::start_in_job`]; with `from_snapshot` (a revert starting the domain to
    /// load a snapshot into it), only `STARTED` with that detail is emitted.
    pub(super) fn start_in_job_as(
        &'static self,
        job: &Job<'_>,
        flags: u32,
        from_snapshot: Option<i32>,
    ) -> Result<DomainRef> {
        self.start_in_job_full(job, flags, from_snapshot, None)
    }

    /// [`Driver::start_in_job_as`]; with `incoming`, QEMU starts with `-incoming` on the
    /// save image's stream and the guest resumes where it was saved (or stays paused).
    pub(super) fn start_in_job_full(
        &'static self,
        job: &Job<'_>,
        flags: u32,
        from_snapshot: Option<i32>,
        mut incoming: Option<Incoming>,
    ) -> Result<DomainRef> {
        let uuid = job.uuid;
        let (def, persistent) = {
            let st = self.lock();
            let d = st
                .doms
                .get(&uuid)
                .ok_or_else(|| perr(no_domain(ErrorDomain::Qemu, &uuid.to_string())))?;
            if d.run.is_some() {
                return Err(perr(operation_invalid(
                    ErrorDomain::Qemu,
                    "domain is already running",
                )));
            }
            (d.def.clone(), d.persistent)
        };
        let def = incoming.as_mut().and_then(|i| i.def.take()).unwrap_or(def);
        let name = def.name().to_string();
        // Volume disks resolve through the host's pools before anything is made.
        let volumes = self.resolve_volumes(&def)?;
        let native_volumes: Vec<command::ResolvedVolume> = volumes.values().cloned().collect();
        // The keys of network disks' <auth>, each in a memfd QEMU inherits and reads as
        // its secret object's file: the key is never on the command line nor on disk.
        let secret_fds = self.disk_secrets(&def, &volumes)?;
        let secret_raw: Vec<i32> = secret_fds.iter().map(|(_, f)| f.as_raw_fd()).collect();
        // TAP devices for bridge interfaces, made before QEMU and inherited by it; they
        // vanish with their last descriptor (a failed start, or QEMU's exit).
        let taps = self.make_taps(&def)?;
        let tap_fds: Vec<i32> = taps.iter().map(|m| m.tap.fd.as_raw_fd()).collect();
        // the ports go back if the start fails anywhere below
        let mut ports = PortGuard {
            driver: self,
            ports: taps
                .iter()
                .filter_map(|m| m.port.as_ref().map(|(n, id, _)| (n.clone(), id.clone())))
                .collect(),
        };
        let monitor = self.paths.monitor(&name);
        // Everything that can be checked is checked before QEMU is spawned. Under the
        // domain's lock, with its status file checked, a socket left here is stale.
        let _ = std::fs::remove_file(&monitor);
        let listener = UnixListener::bind(&monitor).map_err(io("bind monitor socket", &monitor))?;
        let fd = listener.as_raw_fd();
        let native = match command::build(
            &def,
            &BuildOptions {
                volumes,
                secrets: secret_fds
                    .iter()
                    .map(|(dev, f)| (dev.clone(), format!("/proc/self/fd/{}", f.as_raw_fd())))
                    .collect(),
                taps: taps
                    .iter()
                    .map(|m| {
                        (
                            m.index,
                            command::TapInfo {
                                fd: m.tap.fd.as_raw_fd(),
                                dev: m.tap.name.clone(),
                                port: m.port.as_ref().map(|(_, id, br)| (id.clone(), br.clone())),
                            },
                        )
                    })
                    .collect(),
                ..self.build_options(Monitor::Fd(fd), true, def.domain_type())
            },
        ) {
            Ok(n) => n,
            Err(e) => {
                drop(listener);
                let _ = std::fs::remove_file(&monitor);
                return Err(e.into());
            }
        };
        let cleanup_monitor = |m: &Path| {
            let _ = std::fs::remove_file(m);
        };
        let mut args = native.args.clone();
        let mut tap_fds = tap_fds;
        if let Some(inc) = &incoming {
            args.push("-incoming".into());
            match &inc.file {
                // QEMU reads the migration stream from the image, past rvirt's header
                Some(file) => {
                    let fd = file.as_raw_fd();
                    args.push(format!("fd:{fd}"));
                    tap_fds.push(fd);
                }
                // the listening address is given once the monitor is up
                None => args.push("defer".into()),
            }
        }
        let mut overlays = Vec::new();
        let prep = (|| -> Result<()> {
            if let Some((template, vars)) = &native.nvram {
                if let Some(p) = vars.parent() {
                    mkdir_private(p)?;
                }
                std::fs::copy(template, vars).map_err(io("copy nvram template to", vars))?;
            }
            if native.transient.iter().any(|_| true)
                || native.live.devices_of("channel").next().is_some()
            {
                let ch = self.paths.channel_dir();
                mkdir_private(&ch)?;
            }
            for t in &native.transient {
                let overlay = self
                    .paths
                    .run
                    .join(format!("{name}-{}.transient.qcow2", t.target));
                let out = Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2", "-F", &t.format, "-b"])
                    .arg(&t.source)
                    .arg(&overlay)
                    .output()
                    .map_err(io("run qemu-img for", &overlay))?;
                if !out.status.success() {
                    return Err(DriverError::Launch {
                        reason: format!(
                            "cannot create the overlay of transient disk '{}'",
                            t.target
                        ),
                        log: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
                args[t.arg_index] = args[t.arg_index].replacen(
                    &json!(t.source).to_string(),
                    &json!(overlay).to_string(),
                    1,
                );
                overlays.push(overlay);
            }
            Ok(())
        })();
        let early_fail = |e: DriverError, overlays: &[PathBuf]| -> DriverError {
            cleanup_monitor(&monitor);
            for o in overlays {
                let _ = std::fs::remove_file(o);
            }
            e
        };
        if let Err(e) = prep {
            return Err(early_fail(e, &overlays));
        }
        let log_path = self.paths.log_file(&name);
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .and_then(|log| Ok((log.try_clone()?, log)))
            .map_err(io("open log file", &log_path));
        let (log, err_log) = match opened {
            Ok(x) => x,
            Err(e) => return Err(early_fail(e, &overlays)),
        };
        let mut cmd = qemu_command(
            &native.emulator,
            &args,
            (log, err_log),
            fd,
            secret_raw,
            tap_fds,
        );
        // the process that holds the console ptys vouches for them (rvirt_sdk::console)
        rvirt_sdk::console::tag_command(&mut cmd, crate::DRIVER_NAME, &uuid);
        // The id is chosen and recorded (status file) under the root's id lock: no other
        // start of this root, in any process, picks it meanwhile.
        let ids = match FileLock::acquire(&self.paths.ids_lock(), Instant::now() + job_timeout()) {
            Ok(Some(l)) => l,
            Ok(None) => return Err(early_fail(job_timeout_error(&name), &overlays)),
            Err(e) => return Err(early_fail(e, &overlays)),
        };
        let id = self.next_id();
        let t0 = Instant::now();
        let child = cmd.spawn();
        drop(listener);
        // QEMU holds its own copies now
        drop(taps);
        drop(secret_fds);
        let mut child: Child = match child {
            Ok(c) => c,
            Err(e) => {
                return Err(early_fail(
                    io("execute", Path::new(&native.emulator))(e),
                    &overlays,
                ));
            }
        };
        let pid = i32::try_from(child.id()).unwrap_or(-1);
        let fail = |child: &mut Child, e: DriverError| -> DriverError {
            // Our own child, not reaped yet: its pid cannot have been reused.
            let _ = child.kill();
            let _ = child.wait();
            cleanup_monitor(&monitor);
            for o in &overlays {
                let _ = std::fs::remove_file(o);
            }
            let _ = std::fs::remove_file(self.paths.status_file(&name));
            {
                let mut st = self.lock();
                st.starting.remove(&uuid);
                if let Some(d) = st.doms.get_mut(&uuid) {
                    d.state = state::SHUTOFF;
                    d.reason = reason::SHUTOFF_FAILED;
                }
            }
            match e {
                DriverError::Qmp(q) => DriverError::Launch {
                    reason: format!("the monitor did not answer ({q})"),
                    log: log_tail(&log_path),
                },
                e => e,
            }
        };
        let pidfd = match rustix::process::Pid::from_raw(pid)
            .ok_or(rustix::io::Errno::SRCH)
            .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()))
        {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                return Err(fail(
                    &mut child,
                    io("open pidfd of", Path::new(&native.emulator))(e.into()),
                ));
            }
        };
        // QEMU initialises for tens of milliseconds now; record it meanwhile. The status
        // file exists before the guest's CPUs run (`cont` below), so a running domain is
        // always found by a new process; it is rewritten with the pty paths once known.
        let paused = flags & 1 != 0 || incoming.as_ref().is_some_and(|i| i.paused);
        let migrate_uri = incoming.as_mut().and_then(|i| i.migrate_uri.take());
        let restored = incoming.is_some() && migrate_uri.is_none();
        // QEMU has its own copy of the image's descriptor now
        drop(incoming);
        let (dstate, dreason) = if migrate_uri.is_some() {
            (state::PAUSED, reason::PAUSED_MIGRATION)
        } else if paused {
            (state::PAUSED, reason::PAUSED_USER)
        } else if restored {
            (state::RUNNING, reason::RUNNING_RESTORED)
        } else {
            (state::RUNNING, reason::RUNNING_BOOTED)
        };
        let mut live = native.live;
        live.set_id(Some(id));
        let start_time = proc_start_time(pid).map_or(0, |(t, _)| t);
        let mut run = Run {
            generation: 0,
            id,
            pid,
            start_time,
            pidfd: pidfd.clone(),
            own_child: true,
            live,
            qmp: None,
            monitor: monitor.clone(),
            overlays: overlays.clone(),
            volumes: native_volumes,
            stopping: None,
            shutdown_seen: false,
            panicked: false,
            fake_reboot: false,
            resetting: false,
            expect_pause: None,
            events_applied: 0,
            deleted: Default::default(),
            unplugged_vcpus: Default::default(),
            next_node: 0,
        };
        if let Err(e) = self.write_status(&def, persistent, dstate, dreason, &run) {
            return Err(fail(&mut child, e));
        }
        drop(ids);
        self.lock().starting.insert(uuid, pidfd.clone());
        let (qmp, events) = match Qmp::connect(&monitor, monitor_timeout()) {
            Ok(x) => x,
            Err(e) => return Err(fail(&mut child, e.into())),
        };
        // Graphics passwords before the guest runs; a display that cannot get its
        // password fails the start (QEMU began with `password=on`: nobody got in).
        if let Err(e) = command::set_passwords(&qmp, &native.passwords) {
            qmp.close();
            return Err(fail(&mut child, e.into()));
        }
        // Interfaces defined with `<link state='down'/>` start with their link down, as
        // libvirt sets them, before the guest runs.
        for alias in command::links_down(&run.live) {
            if let Err(e) = qmp.execute(
                "set_link",
                Some(serde_json::json!({"name": alias, "up": false})),
            ) {
                qmp.close();
                return Err(fail(&mut child, e.into()));
            }
        }
        // The balloon's guest statistics polling, as `<memballoon><stats period>` asks
        // (libvirt sets it after start too; a refusal only leaves the statistics off).
        if let Some(period) = command::balloon_period(&run.live)
            && let Err(e) = qmp.execute(
                "qom-set",
                Some(serde_json::json!({"path": "/machine/peripheral/balloon0",
                    "property": "guest-stats-polling-interval", "value": period})),
            )
        {
            let _ = super::process::append_log(
                &self.paths.log_file(run.live.name()),
                &format!("rvirt: cannot set the balloon's statistics period: {e}\n"),
            );
        }
        // An incoming migration listens now; the guest runs when the migration
        // finishes (`Driver::migrate_finish`).
        // (its `MIGRATION` events on first, in flight with it: the finish waits on them)
        if let Some(uri) = &migrate_uri
            && let Err(e) = qmp
                .send(
                    "migrate-set-capabilities",
                    Some(super::monitor::migration_events()),
                )
                .and_then(|caps| {
                    let incoming = qmp.execute("migrate-incoming", Some(json!({"uri": uri})));
                    // without the events the finish still ends, by its fallback poll
                    let _ = caps.wait(Duration::from_secs(60));
                    incoming
                })
        {
            qmp.close();
            return Err(fail(&mut child, e.into()));
        }
        // The pty paths and `cont` in flight together: one round trip.
        let chardevs = qmp.send("query-chardev", None);
        let cont = (!paused && migrate_uri.is_none()).then(|| qmp.send("cont", None));
        let chardevs = chardevs.and_then(|p| p.wait(Duration::from_secs(60)));
        if let Some(Err(e)) = cont.map(|c| c.and_then(|p| p.wait(Duration::from_secs(60)))) {
            qmp.close();
            return Err(fail(&mut child, e.into()));
        }
        if let Ok(c) = &chardevs {
            fill_pty_paths(&mut run.live, c);
        }
        if restored && let Err(e) = wait_incoming(&qmp, paused) {
            qmp.close();
            return Err(fail(&mut child, e));
        }
        // The RESUME of `cont` is in the state set below.
        run.events_applied = qmp.events_read();
        run.qmp = Some(qmp);
        let (r, generation) = {
            let mut st = self.lock();
            st.starting.remove(&uuid);
            st.generation += 1;
            let generation = st.generation;
            run.generation = generation;
            // The job keeps the domain: nothing removes it while the job runs.
            let d = st.doms.get_mut(&uuid).expect("the job holds the domain");
            d.state = dstate;
            d.reason = dreason;
            d.run = Some(run);
            (d.reference(), generation)
        };
        // The child is reaped through its pidfd (see `spawn_exit_waiter`).
        drop(child);
        let _ = std::fs::remove_file(self.paths.stopped_file(&name));
        let up = format!("rvirt: qemu pid {pid} up in {:?}\n", t0.elapsed());
        self.spawn_exit_waiter(uuid, generation, pidfd, true);
        self.spawn_event_loop(uuid, generation, events, Some((log_path, up)));
        // started: the ports belong to the run now (released when it stops)
        ports.ports.clear();
        if let Some(det) = from_snapshot {
            self.emit(vec![(r.clone(), event::STARTED, det)]);
            return Ok(r);
        }
        let mut ev = vec![(
            r.clone(),
            event::STARTED,
            if restored {
                detail::STARTED_RESTORED
            } else if migrate_uri.is_some() {
                detail::STARTED_MIGRATED
            } else {
                detail::STARTED_BOOTED
            },
        )];
        if paused && migrate_uri.is_none() {
            let det = if restored {
                detail::SUSPENDED_RESTORED
            } else {
                detail::SUSPENDED_PAUSED
            };
            ev.push((r.clone(), event::SUSPENDED, det));
        }
        self.emit(ev);
        Ok(r)
    }

    // ---- lifecycle operations ----

    /// virDomainDestroy: SIGTERM, then SIGKILL after a grace period; returns once QEMU
    /// has exited and its state is cleaned up.
    pub fn destroy(&'static self, uuid: uuid::Uuid) -> Result<()> {
        // A start in progress is ended now rather than waited for (as libvirt's destroy):
        // its QEMU is killed, and the start fails and ends its job.
        let starting = self.lock().starting.get(&uuid).cloned();
        if let Some(fd) = &starting {
            let _ = rustix::process::pidfd_send_signal(&**fd, rustix::process::Signal::KILL);
        }
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        self.stop_in_job(&job, Stopping::Destroy, starting.is_some())
    }

    /// Ends the QEMU of the domain of `job` (`how` gives the reason and the event);
    /// `interrupted_start`: a start this call killed, so nothing running is no error.
    pub(super) fn stop_in_job(
        &'static self,
        job: &Job<'_>,
        how: Stopping,
        interrupted_start: bool,
    ) -> Result<()> {
        const GRACE: Duration = Duration::from_secs(5);
        let uuid = job.uuid;
        let (generation, pidfd, own_child) = {
            let mut st = self.lock();
            let d = st
                .doms
                .get_mut(&uuid)
                .ok_or_else(|| perr(no_domain(ErrorDomain::Qemu, &uuid.to_string())))?;
            let Some(run) = d.run.as_mut() else {
                if interrupted_start {
                    // The start it interrupted has failed: nothing runs.
                    return Ok(());
                }
                return Err(perr(operation_invalid(
                    ErrorDomain::Qemu,
                    "domain is not running",
                )));
            };
            run.stopping = Some(how);
            (run.generation, run.pidfd.clone(), run.own_child)
        };
        let _ = rustix::process::pidfd_send_signal(&*pidfd, rustix::process::Signal::TERM);
        // This thread waits on QEMU's exit itself and updates the state (the waiter thread
        // then finds nothing to do): no hand-over between threads after QEMU is gone.
        if !wait_exit(&pidfd, Some(GRACE)) {
            let _ = rustix::process::pidfd_send_signal(&*pidfd, rustix::process::Signal::KILL);
            if !wait_exit(&pidfd, Some(Duration::from_secs(30))) {
                return Err(DriverError::Launch {
                    reason: "qemu did not exit after SIGKILL".into(),
                    log: String::new(),
                });
            }
        }
        if own_child {
            reap(&pidfd);
        }
        self.on_exit(uuid, generation);
        Ok(())
    }

    /// virDomainShutdown: ACPI power button.
    pub fn shutdown(&'static self, uuid: uuid::Uuid) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (q, _) = self.running(uuid)?;
        q.execute("system_powerdown", None)?;
        Ok(())
    }

    /// virDomainReboot: ACPI power button, then reset instead of stopping.
    pub fn reboot(&'static self, uuid: uuid::Uuid) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (q, generation) = self.running(uuid)?;
        if let Some(run) = self
            .lock()
            .doms
            .get_mut(&uuid)
            .and_then(|d| d.run.as_mut())
            .filter(|r| r.generation == generation)
        {
            run.fake_reboot = true;
        }
        q.execute("system_powerdown", None)?;
        Ok(())
    }

    /// virDomainSuspend.
    pub fn suspend(&'static self, uuid: uuid::Uuid) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (q, generation) = self.running(uuid)?;
        if let Some(run) = self.lock().doms.get_mut(&uuid).and_then(|d| d.run.as_mut()) {
            run.expect_pause = Some(reason::PAUSED_USER);
        }
        q.execute("stop", None)?;
        let e = self.transition_after(
            uuid,
            generation,
            q.events_read(),
            (state::PAUSED, reason::PAUSED_USER),
            Some((event::SUSPENDED, detail::SUSPENDED_PAUSED)),
        );
        self.emit(e);
        Ok(())
    }

    /// virDomainResume.
    pub fn resume(&'static self, uuid: uuid::Uuid) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (q, generation) = self.running(uuid)?;
        if self.state(uuid).map_err(perr)?.0 == state::PAUSED
            && self
                .lock()
                .doms
                .get(&uuid)
                .and_then(|d| d.run.as_ref())
                .is_some_and(|r| r.shutdown_seen)
        {
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                "the guest has shut down; it cannot be resumed",
            )));
        }
        q.execute("cont", None)?;
        let e = self.transition_after(
            uuid,
            generation,
            q.events_read(),
            (state::RUNNING, reason::RUNNING_UNPAUSED),
            Some((event::RESUMED, detail::RESUMED_UNPAUSED)),
        );
        self.emit(e);
        Ok(())
    }
}

//! One isolated plugin's process: start, death, restart with backoff, replacement.

use super::{Inner, lock};
use crate::config::PluginSettings;
use rvirt_host::ServedPlugin;
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a caller waits for a (re)starting process before failing.
const START_WAIT: Duration = Duration::from_secs(15);
/// A process that lived at least this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// Longest pause between restarts of a process that keeps dying.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a replaced process may finish the calls it is running.
const DRAIN: Duration = Duration::from_secs(30);

/// What the plugin host process says once it serves (its first stdout line).
#[derive(Debug, Clone, serde::Deserialize)]
struct Ready {
    name: String,
    version: String,
    api_version: String,
}

/// One run of the plugin host process.
pub struct Generation {
    id: u64,
    pid: u32,
    socket: PathBuf,
    /// Its backend-call socket (`wire.rs`), when the plugin has storage or network
    /// facets the daemon forwards to it.
    backend_socket: Option<PathBuf>,
    version: String,
    api_version: String,
    started: Instant,
    /// How it ended (`killed by signal SIGSEGV`), once `waitpid` said so.
    death: Mutex<Option<String>>,
    died: Condvar,
    /// Calls running in it.
    inflight: AtomicUsize,
    /// Replaced by a reload: its death is expected and starts nothing.
    retiring: AtomicBool,
    /// What its cgroup had refused when it started ([`Supervisor::cgroup_counters`]).
    cgroup_before: (u64, u64),
    /// Its stdin: the process ends when this closes (and when the daemon dies).
    stdin: Mutex<Option<ChildStdin>>,
}

/// Counts a call in flight while alive.
pub struct Busy<'a>(&'a Generation);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// [`Busy`] holding its generation (a volume stream, open across calls).
pub struct OwnedBusy(Arc<Generation>);

impl Drop for OwnedBusy {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Generation {
    /// The socket it serves on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its backend-call socket, when it serves storage or network backends.
    pub fn backend_socket(&self) -> Option<&Path> {
        self.backend_socket.as_deref()
    }

    /// [`Generation::busy`] for as long as the guard lives, wherever it goes.
    pub fn busy_owned(self: &Arc<Self>) -> OwnedBusy {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        OwnedBusy(Arc::clone(self))
    }

    /// Marks a call in flight until the guard drops.
    pub fn busy(&self) -> Busy<'_> {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        Busy(self)
    }

    /// How it ended, waiting up to `wait` for `waitpid` to tell.
    fn wait_death(&self, wait: Duration) -> Option<String> {
        let guard = lock(&self.death);
        let (guard, _) = self
            .died
            .wait_timeout_while(guard, wait, |d| d.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.clone()
    }

    /// Whether `waitpid` has reported its end.
    pub fn is_dead(&self) -> bool {
        lock(&self.death).is_some()
    }
}

#[derive(Default)]
struct State {
    /// The plugin file (the path configured; a reload reads it again).
    current: Option<Arc<Generation>>,
    /// A start is under way (callers wait for it).
    starting: bool,
    next_id: u64,
    /// Deaths in a row of processes that did not live [`HEALTHY_AFTER`].
    quick_deaths: u32,
    last_death: Option<String>,
    last_error: Option<String>,
    stopped: bool,
    /// Every generation not yet reaped (current and retiring ones).
    alive: Vec<Arc<Generation>>,
}

/// The supervisor of one isolated plugin.
pub struct Supervisor {
    name: String,
    file: PathBuf,
    exe: PathBuf,
    uris: Vec<String>,
    /// What its storage and network facets serve for the daemon, if anything.
    backends: Option<BackendFacets>,
    dir: PathBuf,
    settings: PluginSettings,
    /// The cgroup its processes run in, relative to each hierarchy
    /// (`rvirt/TAG/plugin-NAME`), when a `cgroup_*` key is set.
    cgroup: Option<String>,
    state: Mutex<State>,
    changed: Condvar,
    restarts: AtomicU64,
    listeners: Mutex<Vec<Weak<Inner>>>,
    /// Where each process's plugin is reported as it starts serving, with what the scan
    /// said it serves (`RUN_DIR/plugins.json`).
    report: std::sync::OnceLock<(Arc<crate::plugin_report::PluginReport>, ServedPlugin)>,
    me: Weak<Supervisor>,
}

/// The storage and network facets a plugin host process serves for the daemon over its
/// backend-call socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendFacets {
    /// The pool types the daemon forwards to it.
    pub pool_types: Vec<String>,
    /// The forward modes the daemon forwards to it.
    pub forward_modes: Vec<String>,
    /// The URI whose secret store its storage backends read (a Ceph key, CHAP
    /// credentials): the daemon's first served URI.
    pub secrets_uri: Option<String>,
}

/// Where a plugin's processes run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The directory of their sockets.
    pub dir: PathBuf,
    /// What tells this daemon's cgroups from other daemons' (`Layout::cgroup_tag`): the
    /// plugin's group, when it has one, is `rvirt/TAG/plugin-NAME`.
    pub cgroup_tag: String,
}

/// `waitpid`'s answer in words.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        let name = rustix::process::Signal::from_named_raw(sig)
            .map(signal_name)
            .unwrap_or("an unknown signal");
        let core = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        format!("was killed by signal {sig} ({name}{core})")
    } else {
        match status.code() {
            Some(0) => "exited with status 0".to_string(),
            Some(c) => format!("exited with status {c}"),
            None => "ended".to_string(),
        }
    }
}

fn signal_name(s: rustix::process::Signal) -> &'static str {
    use rustix::process::Signal as S;
    const NAMES: [(S, &str); 12] = [
        (S::SEGV, "SIGSEGV"),
        (S::ABORT, "SIGABRT"),
        (S::KILL, "SIGKILL"),
        (S::TERM, "SIGTERM"),
        (S::BUS, "SIGBUS"),
        (S::ILL, "SIGILL"),
        (S::FPE, "SIGFPE"),
        (S::INT, "SIGINT"),
        (S::HUP, "SIGHUP"),
        (S::PIPE, "SIGPIPE"),
        (S::XCPU, "SIGXCPU"),
        (S::XFSZ, "SIGXFSZ"),
    ];
    NAMES
        .iter()
        .find(|(sig, _)| *sig == s)
        .map_or("a signal", |(_, n)| n)
}

fn rpc(code: ErrorCode, message: String) -> rvirt_host::Error {
    rvirt_host::Error::driver(code, ErrorDomain::Rpc, message)
}

impl Supervisor {
    /// A supervisor; nothing starts until the first [`Supervisor::current`].
    pub fn new(
        name: String,
        file: PathBuf,
        exe: PathBuf,
        uris: Vec<String>,
        backends: Option<BackendFacets>,
        settings: PluginSettings,
        place: Place,
    ) -> Arc<Supervisor> {
        let cgroup =
            (!settings.cgroup_keys().is_empty()).then(|| cgroup_path(&place.cgroup_tag, &name));
        Arc::new_cyclic(|me| Supervisor {
            name,
            file,
            exe,
            uris,
            backends,
            dir: place.dir,
            settings,
            cgroup,
            state: Mutex::default(),
            changed: Condvar::new(),
            restarts: AtomicU64::new(0),
            listeners: Mutex::default(),
            report: std::sync::OnceLock::new(),
            me: me.clone(),
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its settings.
    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    /// Makes the plugin's cgroup (every time a process starts: it may have been removed
    /// meanwhile) and applies its limits; the files a child writes to join it. Errors
    /// name the keys and the reason.
    fn prepare_cgroup(&self) -> Result<Option<rvirt_cgroup::JoinFiles>, String> {
        let Some(rel) = &self.cgroup else {
            return Ok(None);
        };
        let keys = self.settings.cgroup_keys().join(", ");
        let cg = rvirt_cgroup::Cgroup::at(rel)
            .and_then(|cg| cg.create().map(|()| cg))
            .map_err(|e| {
                format!(
                    "{keys} set, but its cgroup {rel} cannot be made: {}",
                    with_causes(&e)
                )
            })?;
        for (keys, limits) in self.settings.cgroup_limits() {
            cg.apply(&limits).map_err(|e| {
                format!(
                    "{} set, but cgroup {rel} cannot be limited: {}",
                    keys.join(" and "),
                    with_causes(&e)
                )
            })?;
        }
        cg.join_files().map(Some).map_err(|e| {
            format!(
                "{keys} set, but cgroup {rel} cannot be joined: {}",
                with_causes(&e)
            )
        })
    }

    /// What the plugin's cgroup refused so far: `(tasks over pids.max, OOM kills)`.
    fn cgroup_counters(&self) -> (u64, u64) {
        self.cgroup
            .as_ref()
            .and_then(|rel| rvirt_cgroup::Cgroup::at(rel).ok())
            .map_or((0, 0), |cg| (cg.pids_refused(), cg.oom_kills()))
    }

    /// Why a process that died may have: the limits its cgroup enforced since `before`
    /// ([`Supervisor::cgroup_counters`]), as `: ...` to append to the error, or nothing.
    fn cgroup_hint(&self, before: &(u64, u64)) -> String {
        let Some(rel) = &self.cgroup else {
            return String::new();
        };
        let now = self.cgroup_counters();
        let l = &self.settings.limits;
        let mut why = Vec::new();
        if now.0 > before.0 {
            why.push(format!(
                "cgroup_pids_max = {} refused {} new task(s)",
                l.cgroup_pids_max.unwrap_or_default(),
                now.0 - before.0
            ));
        }
        if now.1 > before.1 {
            why.push(format!(
                "cgroup_memory_max = {} killed {} process(es)",
                l.cgroup_memory_max.unwrap_or_default(),
                now.1 - before.1
            ));
        }
        if why.is_empty() {
            return String::new();
        }
        format!(": in cgroup {rel}, {}", why.join(" and "))
    }

    /// Removes the plugin's cgroup once its processes are gone (daemon shutdown, after
    /// [`Supervisor::stop`]): waits up to `wait` for them, never kills anything (the
    /// group may hold processes the plugin started, such as guests). Best effort,
    /// logged.
    pub fn remove_cgroup(&self, wait: Duration) {
        let Some(rel) = &self.cgroup else { return };
        let Ok(cg) = rvirt_cgroup::Cgroup::at(rel) else {
            return;
        };
        // its processes are gone once waitpid reported each (`reaped`)
        let deadline = Instant::now() + wait;
        let mut st = lock(&self.state);
        while !st.alive.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .changed
                .wait_timeout(st, left.min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(st);
        // `rvirt/TAG` and `rvirt` go too once empty
        match cg.remove_if_empty(2) {
            Ok(()) => tracing::info!(plugin = self.name, cgroup = rel, "cgroup removed"),
            Err(e) => tracing::warn!(
                plugin = self.name,
                cgroup = rel,
                procs = ?cg.procs(),
                "cgroup left in place: {e}"
            ),
        }
    }

    /// Processes started again after a death (reloads do not count).
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Reports each process's plugin in `report` as it starts serving: `served` (what the
    /// scan found in the file) with the version the process loaded.
    pub fn set_report(
        &self,
        report: Arc<crate::plugin_report::PluginReport>,
        served: ServedPlugin,
    ) {
        let _ = self.report.set((report, served));
    }

    pub(crate) fn add_listener(&self, inner: Weak<Inner>) {
        let mut l = lock(&self.listeners);
        l.retain(|w| w.strong_count() > 0);
        l.push(inner);
    }

    /// Whether `g` is the process new calls go to.
    pub fn is_current(&self, g: &Arc<Generation>) -> bool {
        !g.is_dead()
            && lock(&self.state)
                .current
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, g))
    }

    /// The process new calls go to: started on first use, waited for while it restarts.
    pub fn current(&self) -> rvirt_host::Result<Arc<Generation>> {
        let deadline = Instant::now() + START_WAIT;
        let mut st = lock(&self.state);
        loop {
            if st.stopped {
                return Err(rpc(
                    ErrorCode::OperationFailed,
                    format!("plugin '{}': the daemon is shutting down", self.name),
                ));
            }
            if let Some(g) = &st.current
                && !g.is_dead()
            {
                return Ok(Arc::clone(g));
            }
            if !st.starting && st.current.is_none() && st.next_id == 0 {
                // first use: start it here
                st.starting = true;
                drop(st);
                let r = self.spawn();
                st = lock(&self.state);
                st.starting = false;
                match r {
                    Ok(g) => {
                        st.current = Some(Arc::clone(&g));
                        self.changed.notify_all();
                        return Ok(g);
                    }
                    Err(e) => {
                        // the next caller tries again
                        st.next_id = 0;
                        self.changed.notify_all();
                        return Err(rpc(
                            ErrorCode::OperationFailed,
                            format!("cannot start plugin '{}': {e}", self.name),
                        ));
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let why = st
                    .last_error
                    .clone()
                    .or_else(|| st.last_death.clone())
                    .unwrap_or_else(|| "it is starting".into());
                return Err(rpc(
                    ErrorCode::OperationFailed,
                    format!(
                        "plugin '{}' is not serving after {} s ({why}); retry later",
                        self.name,
                        START_WAIT.as_secs()
                    ),
                ));
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Starts a process from the plugin file and waits until it serves.
    fn spawn(&self) -> Result<Arc<Generation>, String> {
        let id = {
            let mut st = lock(&self.state);
            st.next_id += 1;
            st.next_id
        };
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let socket = self.dir.join(format!("{}.{id}.sock", self.name));
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--plugin-host")
            .arg(&self.file)
            .arg("--socket")
            .arg(&socket);
        for u in &self.uris {
            cmd.arg("--uri").arg(u);
        }
        let backend_socket = self
            .backends
            .as_ref()
            .map(|_| self.dir.join(format!("{}.{id}.backends.sock", self.name)));
        if let Some(path) = &backend_socket {
            let _ = std::fs::remove_file(path);
            cmd.arg("--backend-socket").arg(path);
        }
        if let Some(uri) = self.backends.as_ref().and_then(|b| b.secrets_uri.as_ref()) {
            cmd.arg("--secrets-uri").arg(uri);
        }
        // where the plugin's host services find the daemon's pools and networks
        cmd.arg("--services")
            .arg(self.dir.join(super::SERVICES_SOCKET));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let limits = self.settings.rlimits();
        let join = self.prepare_cgroup()?;
        if !limits.is_empty() || join.is_some() {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the forked child before exec and only calls
            // open/write/close on the cgroup files (JoinFiles::join_current) and
            // setrlimit, which are async-signal-safe; it allocates nothing (the limits
            // and the cgroup paths were prepared before the fork). It joins the cgroup
            // first, so the plugin is loaded inside it.
            unsafe {
                cmd.pre_exec(move || {
                    if let Some(join) = &join {
                        join.join_current()?;
                    }
                    for (res, value) in &limits {
                        rustix::process::setrlimit(
                            *res,
                            rustix::process::Rlimit {
                                current: Some(*value),
                                maximum: Some(*value),
                            },
                        )
                        .map_err(std::io::Error::from)?;
                    }
                    Ok(())
                });
            }
        }
        let before = self.cgroup_counters();
        let mut child = cmd.spawn().map_err(|e| match &self.cgroup {
            Some(rel) => format!(
                "cannot run {} (joining cgroup {rel}): {e}",
                self.exe.display()
            ),
            None => format!("cannot run {}: {e}", self.exe.display()),
        })?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let ready = stdout
            .map(|o| {
                let mut line = String::new();
                std::io::BufReader::new(o)
                    .read_line(&mut line)
                    .map(|_| line)
            })
            .transpose()
            .map_err(|e| format!("cannot read from plugin host process {pid}: {e}"))?
            .unwrap_or_default();
        let ready: Ready = match serde_json::from_str(ready.trim()) {
            Ok(r) => r,
            Err(_) => {
                let status = child.wait().map(describe).unwrap_or_default();
                let _ = std::fs::remove_file(&socket);
                if let Some(path) = &backend_socket {
                    let _ = std::fs::remove_file(path);
                }
                return Err(format!(
                    "plugin host process {pid} for {} {status} before serving{}",
                    self.file.display(),
                    self.cgroup_hint(&before)
                ));
            }
        };
        if ready.name != self.name {
            tracing::warn!(
                plugin = self.name,
                "the file {} now holds plugin '{}'",
                self.file.display(),
                ready.name
            );
        }
        let g = Arc::new(Generation {
            id,
            pid,
            socket,
            backend_socket,
            version: ready.version,
            api_version: ready.api_version,
            started: Instant::now(),
            cgroup_before: before,
            death: Mutex::new(None),
            died: Condvar::new(),
            inflight: AtomicUsize::new(0),
            retiring: AtomicBool::new(false),
            stdin: Mutex::new(child.stdin.take()),
        });
        tracing::info!(
            plugin = self.name,
            pid,
            version = g.version,
            "plugin host process serving"
        );
        if let Some((report, served)) = self.report.get() {
            report.loaded(&ServedPlugin {
                version: g.version.clone(),
                api_version: g.api_version.clone(),
                real_file: std::fs::canonicalize(&self.file).unwrap_or_else(|_| self.file.clone()),
                ..served.clone()
            });
        }
        lock(&self.state).alive.push(Arc::clone(&g));
        let me = self.me.clone();
        let watched = Arc::clone(&g);
        std::thread::Builder::new()
            .name(format!("rvirt-plugin-{}", self.name))
            .spawn(move || {
                let how = child
                    .wait()
                    .map_or_else(|e| format!("could not be waited for ({e})"), describe);
                if let Some(sup) = me.upgrade() {
                    sup.reaped(&watched, how);
                }
            })
            .map_err(|e| format!("cannot start the watcher thread: {e}"))?;
        Ok(g)
    }

    /// `waitpid` returned for `g`: record how, and start a new process unless this one
    /// was replaced or the daemon stops.
    fn reaped(&self, g: &Arc<Generation>, how: String) {
        // a limit of its cgroup may be why
        let how = format!("{how}{}", self.cgroup_hint(&g.cgroup_before));
        *lock(&g.death) = Some(how.clone());
        g.died.notify_all();
        let _ = std::fs::remove_file(&g.socket);
        if let Some(path) = &g.backend_socket {
            let _ = std::fs::remove_file(path);
        }
        let retiring = g.retiring.load(Ordering::Acquire);
        let delay = {
            let mut st = lock(&self.state);
            st.alive.retain(|a| !Arc::ptr_eq(a, g));
            let is_current = st.current.as_ref().is_some_and(|c| Arc::ptr_eq(c, g));
            if retiring || st.stopped || !is_current {
                tracing::info!(plugin = self.name, pid = g.pid, "plugin host process {how}");
                // remove_cgroup waits for `alive` to empty
                self.changed.notify_all();
                return;
            }
            tracing::error!(
                plugin = self.name,
                pid = g.pid,
                "plugin host process {how}; restarting it"
            );
            st.current = None;
            st.starting = true;
            st.last_death = Some(format!("process {} {how}", g.pid));
            if g.started.elapsed() >= HEALTHY_AFTER {
                st.quick_deaths = 0;
            }
            st.quick_deaths += 1;
            // the first restart is immediate; a process that keeps dying waits
            // 50 ms, 100 ms, ... up to 5 s
            backoff(st.quick_deaths)
        };
        self.changed.notify_all();
        let mut delay = delay;
        loop {
            std::thread::sleep(delay);
            if lock(&self.state).stopped {
                lock(&self.state).starting = false;
                self.changed.notify_all();
                return;
            }
            match self.spawn() {
                Ok(new) => {
                    self.restarts.fetch_add(1, Ordering::Relaxed);
                    let mut st = lock(&self.state);
                    st.current = Some(new);
                    st.starting = false;
                    st.last_error = None;
                    drop(st);
                    self.changed.notify_all();
                    self.notify_listeners();
                    return;
                }
                Err(e) => {
                    tracing::error!(plugin = self.name, "restart failed: {e}");
                    let mut st = lock(&self.state);
                    st.last_error = Some(e);
                    st.quick_deaths += 1;
                    delay = backoff(st.quick_deaths);
                }
            }
        }
    }

    /// Tells the connections with event subscriptions that a new process serves.
    fn notify_listeners(&self) {
        let listeners: Vec<Arc<Inner>> = lock(&self.listeners)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        if listeners.is_empty() {
            return;
        }
        std::thread::spawn(move || {
            for l in listeners {
                l.generation_changed();
            }
        });
    }

    /// The error for a call `g` died during.
    pub(crate) fn died_during(&self, g: &Arc<Generation>, op: &str) -> rvirt_host::Error {
        let how = g
            .wait_death(Duration::from_secs(2))
            .unwrap_or_else(|| "closed its connection".into());
        rpc(
            ErrorCode::Rpc,
            format!(
                "plugin '{}' failed during {op}: its process {} {how}; the plugin is being restarted, retry the call",
                self.name, g.pid
            ),
        )
    }

    /// The error for a process that could not be reached.
    pub(crate) fn unreachable(
        &self,
        g: &Arc<Generation>,
        e: &rvirt_host::Error,
    ) -> rvirt_host::Error {
        match g.wait_death(Duration::from_millis(200)) {
            Some(how) => rpc(
                ErrorCode::Rpc,
                format!(
                    "plugin '{}' is restarting: its process {} {how}; retry the call",
                    self.name, g.pid
                ),
            ),
            None => rpc(
                ErrorCode::Rpc,
                format!(
                    "cannot reach plugin '{}' (process {}): {e}",
                    self.name, g.pid
                ),
            ),
        }
    }

    /// A call in `g` passed the deadline: kill the process (the watcher starts a new
    /// one) and answer the timeout.
    pub(crate) fn hung(&self, g: &Arc<Generation>, op: &str) -> rvirt_host::Error {
        if !g.is_dead() {
            tracing::error!(
                plugin = self.name,
                pid = g.pid,
                "{op} did not return within the call deadline: killing the plugin process"
            );
            kill(g.pid, rustix::process::Signal::KILL);
            // once reaped, the next call waits for the new process instead of this one
            g.wait_death(Duration::from_secs(2));
        }
        rvirt_host::Error::driver(
            ErrorCode::OperationTimeout,
            ErrorDomain::Rpc,
            format!(
                "plugin '{}' did not answer {op} within {} ms: its process {} was killed and is being replaced",
                self.name, self.settings.call_timeout_ms, g.pid
            ),
        )
    }

    /// Live upgrade: starts a process from the plugin file as it is now, sends new calls
    /// there, and stops the old process once its calls are done. Returns the new one.
    pub fn reload(&self) -> Result<Arc<Generation>, String> {
        {
            let mut st = lock(&self.state);
            if st.stopped {
                return Err("the daemon is shutting down".into());
            }
            while st.starting {
                st = self
                    .changed
                    .wait_timeout(st, START_WAIT)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            st.starting = true;
        }
        let r = self.spawn();
        let mut st = lock(&self.state);
        st.starting = false;
        let new = match r {
            Ok(g) => g,
            Err(e) => {
                drop(st);
                self.changed.notify_all();
                return Err(e);
            }
        };
        let old = st.current.replace(Arc::clone(&new));
        drop(st);
        self.changed.notify_all();
        self.notify_listeners();
        if let Some(old) = old {
            old.retiring.store(true, Ordering::Release);
            std::thread::spawn(move || retire(&old));
        }
        Ok(new)
    }

    /// Stops every process of this plugin (daemon shutdown).
    pub fn stop(&self) {
        let alive = {
            let mut st = lock(&self.state);
            st.stopped = true;
            // they leave `alive` as they are reaped ([`Supervisor::remove_cgroup`] waits)
            st.alive.clone()
        };
        self.changed.notify_all();
        for g in alive {
            // closing stdin asks it to stop; SIGTERM in case it does not read
            lock(&g.stdin).take();
            kill(g.pid, rustix::process::Signal::TERM);
        }
    }

    /// What `rvirt plugin list` shows.
    pub fn status(&self) -> serde_json::Value {
        let st = lock(&self.state);
        let cur = st.current.as_ref();
        serde_json::json!({
            "name": self.name,
            "file": self.file.display().to_string(),
            "isolation": "process",
            "pool_types": self.backends.as_ref().map(|b| b.pool_types.clone()).unwrap_or_default(),
            "forward_modes": self.backends.as_ref().map(|b| b.forward_modes.clone()).unwrap_or_default(),
            "version": cur.map(|g| g.version.clone()),
            "api_version": cur.map(|g| g.api_version.clone()),
            "pid": cur.map(|g| g.pid),
            "generation": cur.map(|g| g.id),
            "restarts": self.restarts(),
            "last_death": st.last_death,
            "call_timeout_ms": self.settings.call_timeout_ms,
            "cgroup": self.cgroup,
        })
    }
}

/// `e` and its sources, `: `-separated (a cgroup error's OS reason is its source).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The cgroup of plugin `name`'s processes, relative to each hierarchy: under
/// `rvirt/TAG` so that daemons with different roots never share one.
pub fn cgroup_path(tag: &str, name: &str) -> String {
    format!("rvirt/{tag}/plugin-{name}")
}

fn backoff(quick_deaths: u32) -> Duration {
    if quick_deaths <= 1 {
        return Duration::ZERO;
    }
    let ms = 50u64.saturating_mul(1 << (quick_deaths - 2).min(10));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

fn kill(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Lets a replaced process finish its calls, then stops it.
fn retire(g: &Arc<Generation>) {
    let start = Instant::now();
    while g.inflight.load(Ordering::Acquire) > 0 && start.elapsed() < DRAIN {
        std::thread::sleep(Duration::from_millis(5));
    }
    lock(&g.stdin).take();
    kill(g.pid, rustix::process::Signal::TERM);
    if g.wait_death(Duration::from_secs(5)).is_none() {
        kill(g.pid, rustix::process::Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_errors_keep_their_os_reason() {
        let e = rvirt_cgroup::CgroupError::Io {
            what: "create",
            path: "/sys/fs/cgroup/memory/rvirt".into(),
            source: std::io::Error::from_raw_os_error(13),
        };
        assert_eq!(
            with_causes(&e),
            "cannot create '/sys/fs/cgroup/memory/rvirt': Permission denied (os error 13)"
        );
        assert_eq!(cgroup_path("system", "qemu"), "rvirt/system/plugin-qemu");
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(50));
        assert_eq!(backoff(3), Duration::from_millis(100));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn deaths_in_words() {
        use std::os::unix::process::ExitStatusExt;
        let segv = std::process::ExitStatus::from_raw(11);
        assert_eq!(describe(segv), "was killed by signal 11 (SIGSEGV)");
        let exit3 = std::process::ExitStatus::from_raw(3 << 8);
        assert_eq!(describe(exit3), "exited with status 3");
    }
}

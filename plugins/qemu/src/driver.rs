//! The driver state of one root: domains, their QEMU processes and monitors, status
//! files, reattachment and lifecycle events.
//!
//! One [`Driver`] exists per root directory per process (connections share it). Each
//! running domain has two threads: one blocks until QEMU exits (`waitpid` on our own child,
//! or `poll` on a pidfd for a domain started by another process) and one reads QMP events.
//! Both take the driver lock only to update state, and emit events after releasing it.
//!
//! Jobs and locks. The driver lock (`Driver::state`) is held only for short updates and
//! never across a process spawn, a `qemu-img` run or a monitor command. A state change of
//! a domain (start, destroy, shutdown, reboot, suspend, resume, undefine, define over an
//! existing domain) runs as the domain's job ([`Job`], like libvirt's state-change job):
//! one per domain per process (`State::jobs`, waited for up to [`job_timeout`]), and
//! across processes of the same root an exclusive `flock` on `run/NAME.lock` held for the
//! whole job. Under that lock the job first re-reads the disk (`sync_from_disk`): a status
//! file left by another process is verified and reattached, so that the domain is not
//! started twice and its files are not removed under a live QEMU. Domain ids are chosen
//! under `run/ids.lock`, held from the scan of the status files until the new status file
//! is written. Queries take only the driver lock and never wait for a job.
//!
//! Status files are trusted only after checks (`read_status`): a regular file owned by
//! us and writable by nobody else, naming this domain's monitor, and a live process of our
//! uid with the recorded start time, this domain's name on its command line and the
//! domain's monitor socket among its descriptors. A pid from disk is signalled only
//! through a pidfd opened before those checks and found alive after them.

use crate::command::{self, BuildOptions, Monitor};
use crate::paths::Paths;
use rvirt_qmp::{Event, Qmp};
use rvirt_sdk::{
    abi::{
        DomainInfo, DomainRef, ErrorCode, ErrorDomain, EventSinkBox, HostServicesBox, PluginError,
        abi_stable::std_types::{RResult, RStr},
        event, state,
    },
    filter::{self, DomainFacts},
    util::{no_domain, operation_invalid, to_abi_uuid},
};
use rvirt_xml::{Domain, FormatOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::File,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    os::unix::{
        fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
        net::UnixListener,
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Condvar, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Errors of the driver's operations (converted to [`PluginError`] at the ABI edge).
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The definition cannot become a command line.
    #[error(transparent)]
    Command(#[from] command::CommandError),
    /// The XML does not parse or validate.
    #[error("XML error: {0}")]
    Xml(#[source] rvirt_xml::XmlError),
    /// A file operation failed.
    #[error("cannot {what} '{}'", path.display())]
    Io {
        /// What was done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An atomic write failed.
    #[error(transparent)]
    Write(#[from] rvirt_sdk::util::WriteError),
    /// QEMU did not come up.
    #[error("qemu failed to start: {reason}{}", if log.is_empty() { String::new() } else { format!(": {log}") })]
    Launch {
        /// Why.
        reason: String,
        /// The end of QEMU's log.
        log: String,
    },
    /// A monitor command failed.
    #[error("monitor command failed")]
    Qmp(#[from] rvirt_qmp::QmpError),
    /// Another error already in libvirt form.
    #[error("{}", .0.message)]
    Plugin(PluginError),
}

impl From<DriverError> for PluginError {
    fn from(e: DriverError) -> Self {
        use command::CommandError as C;
        let code = match &e {
            DriverError::Plugin(p) => return p.clone(),
            DriverError::Command(C::Unsupported(_) | C::NoKvm(_)) => ErrorCode::ConfigUnsupported,
            DriverError::Command(C::Invalid(_)) | DriverError::Xml(_) => ErrorCode::XmlError,
            DriverError::Command(C::Internal(_)) => ErrorCode::InternalError,
            DriverError::Command(C::Missing { .. })
            | DriverError::Io { .. }
            | DriverError::Write(_) => ErrorCode::SystemError,
            DriverError::Launch { .. }
            | DriverError::Qmp(_)
            | DriverError::Command(C::Password { .. }) => ErrorCode::OperationFailed,
        };
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let t = s.to_string();
            if !msg.contains(&t) {
                msg.push_str(": ");
                msg.push_str(&t.to_lowercase());
            }
            src = s.source();
        }
        PluginError::new(code, ErrorDomain::Qemu, msg)
    }
}

type Result<T> = std::result::Result<T, DriverError>;

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DriverError {
    let path = path.to_path_buf();
    move |source| DriverError::Io { what, path, source }
}

fn perr(e: PluginError) -> DriverError {
    DriverError::Plugin(e)
}

/// libvirt's reason numbers the driver uses.
mod reason {
    pub const RUNNING_UNKNOWN: i32 = 0;
    pub const RUNNING_BOOTED: i32 = 1;
    pub const RUNNING_UNPAUSED: i32 = 5;
    pub const PAUSED_UNKNOWN: i32 = 0;
    pub const PAUSED_USER: i32 = 1;
    pub const PAUSED_SHUTTING_DOWN: i32 = 8;
    pub const SHUTOFF_UNKNOWN: i32 = 0;
    pub const SHUTOFF_SHUTDOWN: i32 = 1;
    pub const SHUTOFF_DESTROYED: i32 = 2;
    pub const SHUTOFF_CRASHED: i32 = 3;
    pub const SHUTOFF_FAILED: i32 = 6;
    pub const CRASHED_PANICKED: i32 = 1;
}

/// Event details.
mod detail {
    pub const DEFINED_ADDED: i32 = 0;
    pub const DEFINED_UPDATED: i32 = 1;
    pub const STARTED_BOOTED: i32 = 0;
    pub const SUSPENDED_PAUSED: i32 = 0;
    pub const RESUMED_UNPAUSED: i32 = 0;
    pub const STOPPED_SHUTDOWN: i32 = 0;
    pub const STOPPED_DESTROYED: i32 = 1;
    pub const STOPPED_CRASHED: i32 = 2;
    pub const STOPPED_FAILED: i32 = 5;
    pub const SHUTDOWN_GUEST: i32 = 1;
    pub const SHUTDOWN_HOST: i32 = 2;
    pub const CRASHED_PANICKED: i32 = 0;
}

/// The status file format version.
const STATUS_VERSION: u32 = 1;

/// What a running domain leaves in `run/NAME.status` (written atomically).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Status {
    version: u32,
    pid: i32,
    /// Field 22 of `/proc/PID/stat`: tells a reused pid from ours.
    start_time: u64,
    id: i32,
    monitor: PathBuf,
    state: i32,
    reason: i32,
    persistent: bool,
    /// The live XML.
    live: String,
    /// The definition to return to when the domain stops (transient domains).
    def: String,
    overlays: Vec<PathBuf>,
    /// The guest has shut down (QEMU is kept only until the driver ends it): a later
    /// process that finds QEMU gone reports the domain shut off (shutdown), not crashed.
    #[serde(default)]
    shutdown: bool,
    /// The storage volumes of its `<disk type='volume'>` disks as they were resolved at
    /// start (path, format): what QEMU opened, while the live XML shows pool and volume.
    #[serde(default)]
    volumes: Vec<command::ResolvedVolume>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    Destroy,
}

struct Run {
    generation: u64,
    id: i32,
    pid: i32,
    start_time: u64,
    pidfd: Arc<OwnedFd>,
    /// QEMU is our child (we reap it); false for a reattached domain.
    own_child: bool,
    live: Domain,
    qmp: Option<Qmp>,
    monitor: PathBuf,
    overlays: Vec<PathBuf>,
    /// The volume disks' resolved sources (kept in the status file).
    volumes: Vec<command::ResolvedVolume>,
    stopping: Option<Stopping>,
    shutdown_seen: bool,
    panicked: bool,
    fake_reboot: bool,
    /// The driver resets and continues the guest after a guest shutdown or reboot: the
    /// STOP and RESUME events of that are not state changes.
    resetting: bool,
    expect_pause: Option<i32>,
}

struct Dom {
    def: Domain,
    persistent: bool,
    autostart: bool,
    state: i32,
    reason: i32,
    run: Option<Run>,
}

impl Dom {
    fn reference(&self) -> DomainRef {
        DomainRef {
            name: self.def.name().into(),
            uuid: to_abi_uuid(self.def.uuid()),
            id: self.run.as_ref().map_or(-1, |r| r.id),
        }
    }
}

#[derive(Default)]
struct State {
    doms: BTreeMap<uuid::Uuid, Dom>,
    generation: u64,
    /// Domains with a state-change job in this process.
    jobs: HashSet<uuid::Uuid>,
    /// QEMU processes spawned by a start that has not finished yet (destroy ends them).
    starting: HashMap<uuid::Uuid, Arc<OwnedFd>>,
}

type Emit = Vec<(DomainRef, i32, i32)>;

/// The driver of one root.
pub struct Driver {
    /// Directories and URI.
    pub paths: Paths,
    state: Mutex<State>,
    exited: Condvar,
    /// Signalled when a job ends.
    job_done: Condvar,
    sinks: Mutex<Vec<(u64, Arc<EventSinkBox>)>>,
    next_sink: Mutex<u64>,
    /// The host's services (plugin API 1.4 hosts), lent by the latest connection opened
    /// with them: every connection of a root is bound to the same storage pools.
    host: Mutex<Option<Arc<HostServicesBox>>>,
}

/// The driver for `paths`, created (and its root loaded, reattached and autostarted) on
/// first use in this process. A driver is handed out only once its root is loaded:
/// concurrent opens of the same root wait for the load; opens of other roots do not.
pub fn driver_for(paths: &Paths, host: Option<HostServicesBox>) -> Result<&'static Driver> {
    let host = host.map(Arc::new);
    type Slot = Arc<Mutex<Option<&'static Driver>>>;
    static DRIVERS: OnceLock<Mutex<HashMap<PathBuf, Slot>>> = OnceLock::new();
    let slot = DRIVERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(paths.config.clone())
        .or_default()
        .clone();
    let mut loaded = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = *loaded {
        if let Some(h) = host {
            *d.host.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        }
        return Ok(d);
    }
    for dir in [&paths.config, &paths.state, &paths.run, &paths.log] {
        mkdir_private(dir)?;
    }
    let d: &'static Driver = Box::leak(Box::new(Driver {
        paths: paths.clone(),
        state: Mutex::new(State::default()),
        exited: Condvar::new(),
        job_done: Condvar::new(),
        sinks: Mutex::new(Vec::new()),
        next_sink: Mutex::new(0),
        host: Mutex::new(host),
    }));
    d.load()?;
    *loaded = Some(d);
    drop(loaded);
    // Autostart belongs to the first open since the host booted (`run/` is volatile), as
    // libvirt's: a domain the user shut off is not started again by the next process.
    // Creating the marker exclusively elects one process even when several open at once.
    let first = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(d.paths.autostarted_marker())
        .is_ok();
    if first {
        d.autostart();
    }
    Ok(d)
}

/// Creates `dir` and its missing parents, readable by the owner only (`0700`); an existing
/// directory is left as it is.
fn mkdir_private(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create directory", dir))
}

fn env_ms(var: &str, default: Duration) -> Duration {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(default, Duration::from_millis)
}

/// How long a state change waits for the job of another one on the same domain
/// (`RVIRT_QEMU_JOB_TIMEOUT_MS`, default 30 s, as libvirt's job wait).
fn job_timeout() -> Duration {
    env_ms("RVIRT_QEMU_JOB_TIMEOUT_MS", Duration::from_secs(30))
}

/// How long a start waits for QEMU's monitor greeting (`RVIRT_QEMU_MONITOR_TIMEOUT_MS`,
/// default 60 s).
fn monitor_timeout() -> Duration {
    env_ms("RVIRT_QEMU_MONITOR_TIMEOUT_MS", Duration::from_secs(60))
}

fn job_timeout_error(name: &str) -> DriverError {
    perr(PluginError::new(
        ErrorCode::OperationTimeout,
        ErrorDomain::Qemu,
        format!(
            "timeout: cannot acquire state change lock for domain '{name}' (held by another job)"
        ),
    ))
}

/// An exclusive `flock` on a lock file, held until dropped. The holder removes the file
/// before it unlocks, so the file exists only while held; whoever locked a file that was
/// meanwhile removed (or replaced) sees it and tries again on the file now at the path.
struct FileLock {
    path: PathBuf,
    _file: File,
}

impl FileLock {
    /// Waits until `deadline` for the lock; `None` when it passed.
    fn acquire(path: &Path, deadline: Instant) -> Result<Option<FileLock>> {
        use rustix::fs::{FlockOperation, flock};
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(path)
                .map_err(io("open lock file", path))?;
            let mut pause = Duration::from_millis(1);
            loop {
                match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => break,
                    Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) => {
                        let now = Instant::now();
                        if now >= deadline {
                            return Ok(None);
                        }
                        std::thread::sleep(pause.min(deadline - now));
                        pause = (pause * 2).min(Duration::from_millis(10));
                    }
                    Err(e) => return Err(io("lock", path)(e.into())),
                }
            }
            let held = file.metadata().map_err(io("stat", path))?;
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.dev() == held.dev() && m.ino() == held.ino() => {
                    return Ok(Some(FileLock {
                        path: path.to_path_buf(),
                        _file: file,
                    }));
                }
                _ => continue,
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Removed while still locked; closing the file then unlocks it.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A state-change job on one domain: this process's job slot of the domain and, across
/// processes, the `flock` of `run/NAME.lock`. Ends when dropped.
struct Job<'a> {
    driver: &'a Driver,
    uuid: uuid::Uuid,
    name: String,
    lock: Option<FileLock>,
}

impl Drop for Job<'_> {
    fn drop(&mut self) {
        drop(self.lock.take());
        self.driver.lock().jobs.remove(&self.uuid);
        self.driver.job_done.notify_all();
    }
}

/// What the checks of a status file found.
enum Recorded {
    /// A live QEMU of this domain, pinned by its pidfd.
    Live(Box<Status>, OwnedFd),
    /// The QEMU it names has ended.
    Dead(Box<Status>),
    /// Not to be trusted: discarded without touching the process or files it names.
    Untrusted(String),
}

/// The uid of process `pid` (real and effective, from `/proc/PID/status`).
fn proc_uids(pid: i32) -> Option<(u32, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("Uid:"))?;
    let mut f = l.split_whitespace().skip(1).map(|v| v.parse::<u32>().ok());
    Some((f.next()??, f.next()??))
}

/// Whether process `pid` holds the listening unix socket bound at `path` (the monitor
/// socket the driver made for this domain's QEMU).
fn holds_listener(pid: i32, path: &Path) -> bool {
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

fn proc_start_time(pid: i32) -> Option<(u64, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let st = f.first()?.chars().next()?;
    Some((f.get(19)?.parse().ok()?, st))
}

fn proc_cpu_ns(pid: i32) -> u64 {
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

fn log_tail(path: &Path) -> String {
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

/// How a state file is written. Always a temporary file renamed over the target, so a
/// reader (or a process that starts after a crash of this one) sees the old or the new
/// content, never a part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// `run/` files: they describe processes that a host crash ends anyway, so they are
    /// not synced to disk (on a real host `run/` is a tmpfs).
    Volatile,
    /// Definitions: the data is synced before the rename (after a power loss the old or
    /// the new file is there, as with libvirt's `virFileRewrite`); the directory sync that
    /// makes the rename itself durable runs in the background, off the caller's path.
    Durable,
}

fn write_file(path: &Path, data: &[u8], durability: Durability) -> Result<()> {
    use std::io::Write;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        // Status files and definitions hold secure XML: readable by the owner only, from
        // the moment the file exists.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(data).map_err(io("write", &tmp))?;
        if durability == Durability::Durable {
            f.sync_data().map_err(io("fsync", &tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io("rename into", path))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    if durability == Durability::Durable {
        let dir = dir.to_path_buf();
        let _ = std::thread::Builder::new()
            .name("qemu-dirsync".into())
            .spawn(move || {
                if let Ok(d) = File::open(&dir) {
                    let _ = d.sync_all();
                }
            });
    }
    Ok(())
}

/// The pid in the name of a temporary file of [`write_file`] or `record_stop`
/// (`.NAME.tmpPID-N`).
fn stale_temp_owner(p: &Path) -> Option<i32> {
    let n = p.file_name()?.to_str()?;
    if !n.starts_with('.') {
        return None;
    }
    let (_, rest) = n.rsplit_once(".tmp")?;
    rest.split_once('-')?.0.parse().ok()
}

/// Blocks until the process behind `pidfd` has exited (or `timeout` passed): `true` when
/// it has.
fn wait_exit(pidfd: &OwnedFd, timeout: Option<Duration>) -> bool {
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
fn reap(pidfd: &OwnedFd) {
    let _ = rustix::process::waitid(
        rustix::process::WaitId::PidFd(pidfd.as_fd()),
        rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG,
    );
}

impl Driver {
    /// Registers an event sink; returns its id for [`Driver::remove_sink`].
    pub fn add_sink(&self, sink: EventSinkBox) -> u64 {
        let mut n = self.next_sink.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((*n, Arc::new(sink)));
        *n
    }

    /// Drops an event sink.
    pub fn remove_sink(&self, id: u64) {
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(i, _)| *i != id);
    }

    fn emit(&self, events: Emit) {
        if events.is_empty() {
            return;
        }
        let sinks: Vec<_> = self
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, s)| s.clone())
            .collect();
        for (d, ev, det) in events {
            for s in &sinks {
                s.domain_lifecycle(d.clone(), ev, det);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn build_options(&self, monitor: Monitor, check: bool, dtype: &str) -> BuildOptions {
        BuildOptions {
            monitor,
            // Probed only for domains that need it: a `qemu` (TCG) start skips it.
            kvm: if dtype == "kvm" {
                command::kvm_usable()
            } else {
                Err("not probed: the domain type is not kvm".into())
            },
            check_files: check,
            nvram_dir: self.paths.nvram_dir(),
            channel_dir: self.paths.channel_dir(),
            allocate_vnc: check,
            volumes: Default::default(),
            taps: Default::default(),
        }
    }

    /// Makes the TAP devices of the bridge and network interfaces of `def` (see
    /// [`crate::tap`]); a network interface first gets a port of its network through the
    /// host's services, which names the bridge. On failure everything made is undone.
    fn make_taps(&self, def: &Domain) -> Result<Vec<MadeTap>> {
        let mut out: Vec<MadeTap> = Vec::new();
        let r = (|| -> Result<()> {
            for t in command::tap_interfaces(def) {
                let k = t.index;
                let guest = rvirt_netdev::mac::parse(&t.mac)
                    .ok_or_else(|| iface_err(k, &format!("no valid MAC address ('{}')", t.mac)))?;
                let bandwidth = t
                    .bandwidth
                    .clone()
                    .map_err(|e| iface_err(k, &e.to_string()))?
                    .unwrap_or_default();
                let (bridge, port) = match (&t.bridge, &t.network) {
                    (Some(b), _) => (b.clone(), None),
                    (None, Some(net)) => {
                        let host = self.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let Some(host) = host else {
                            return Err(iface_err(
                                k,
                                &format!(
                                    "network '{net}' cannot be joined: the host lent no network services (plugin API 1.5 or later)"
                                ),
                            ));
                        };
                        let portid = uuid::Uuid::new_v4().to_string();
                        let port_xml = {
                            use rvirt_xml::Element;
                            let mut owner = Element::new("owner");
                            owner.push(Element::new("name").with_text(def.name()));
                            owner.push(Element::new("uuid").with_text(&def.uuid().to_string()));
                            let mut port = Element::new("networkport");
                            port.push(Element::new("uuid").with_text(&portid));
                            port.push(owner);
                            port.push(Element::new("mac").with_attr("address", &t.mac));
                            bandwidth.store_in(&mut port);
                            port.to_xml_string()
                        };
                        let done = match host
                            .network_port_create(RStr::from_str(net), RStr::from_str(&port_xml))
                        {
                            RResult::ROk(x) => x.into_string(),
                            RResult::RErr(mut e) => {
                                e.message =
                                    format!("{} (interface {k}, network '{net}')", e.message)
                                        .into();
                                return Err(perr(e));
                            }
                        };
                        let Some(bridge) = plug_bridge(&done) else {
                            let _ = host
                                .network_port_delete(RStr::from_str(net), RStr::from_str(&portid));
                            return Err(iface_err(
                                k,
                                &format!("network '{net}' plugged the port on no bridge"),
                            ));
                        };
                        (bridge.clone(), Some((net.clone(), portid, bridge)))
                    }
                    (None, None) => continue,
                };
                let made = crate::tap::create("vnet%d", &bridge, guest, t.virtio)
                    .map_err(|e| rvirt_sdk::util::error_chain(&e))
                    .and_then(|tap| {
                        if bandwidth.is_empty() {
                            return Ok(tap);
                        }
                        rvirt_netdev::bandwidth::apply(&tap.name, &bandwidth)
                            .map(|()| tap)
                            .map_err(|e| rvirt_sdk::util::error_chain(&e))
                    });
                match made {
                    Ok(tap) => out.push(MadeTap {
                        index: k,
                        tap,
                        port,
                    }),
                    Err(e) => {
                        if let Some((net, portid, _)) = &port {
                            self.release_port(net, portid);
                        }
                        return Err(iface_err(k, &format!("on bridge '{bridge}': {e}")));
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            for m in &out {
                if let Some((net, portid, _)) = &m.port {
                    self.release_port(net, portid);
                }
            }
            return Err(e);
        }
        Ok(out)
    }

    /// Gives back a network port (best effort: the guest is gone either way).
    fn release_port(&self, network: &str, portid: &str) {
        let host = self.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(host) = host
            && let RResult::RErr(e) =
                host.network_port_delete(RStr::from_str(network), RStr::from_str(portid))
        {
            host.log(
                rvirt_sdk::abi::log_level::WARN,
                RStr::from_str(&format!(
                    "cannot release port {portid} of network '{network}': {}",
                    e.message
                )),
            );
        }
    }

    /// Releases the network ports a stopped domain's live definition held.
    fn release_ports(&self, live: &Domain) {
        for (net, portid) in command::network_ports(live) {
            self.release_port(&net, &portid);
        }
    }

    /// Resolves the `<disk type='volume'>` disks of `def` through the host's storage
    /// pools (libvirt's translation of volume disks, done at start), by target device.
    fn resolve_volumes(&self, def: &Domain) -> Result<HashMap<String, command::ResolvedVolume>> {
        let disks = command::volume_disks(def)?;
        let mut out = HashMap::new();
        if disks.is_empty() {
            return Ok(out);
        }
        let host = self.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for disk in disks {
            let Some(host) = &host else {
                return Err(command::CommandError::Unsupported(format!(
                    "disk '{}': volume '{}' of storage pool '{}' cannot be resolved: the host lent no storage services (volume disks need a host of plugin API 1.4 or later)",
                    disk.target, disk.volume, disk.pool
                ))
                .into());
            };
            let v = match host
                .volume_source(RStr::from_str(&disk.pool), RStr::from_str(&disk.volume))
            {
                RResult::ROk(v) => v,
                RResult::RErr(mut e) => {
                    e.message = format!("{} (disk '{}')", e.message, disk.target).into();
                    return Err(perr(e));
                }
            };
            if disk.mode.is_some() && v.pool_type.as_str() != "iscsi" {
                // libvirt's check, once the pool's type is known.
                return Err(command::CommandError::Invalid(format!(
                    "disk '{}': disk source mode is only valid when storage pool is of iscsi type",
                    disk.target
                ))
                .into());
            }
            let backing = rvirt_xml::StorageVolume::parse(v.volume_xml.as_str(), None)
                .ok()
                .is_some_and(|vol| vol.backing_store().is_some());
            out.insert(
                disk.target.clone(),
                command::ResolvedVolume {
                    pool: disk.pool,
                    volume: disk.volume,
                    disk_type: v.disk_type.into_string(),
                    path: v.path.into_string(),
                    format: v.format.into_string(),
                    pool_type: v.pool_type.into_string(),
                    backing,
                },
            );
        }
        Ok(out)
    }

    /// `domxml-to-native qemu-argv`.
    pub fn to_native(&self, xml: &str) -> Result<String> {
        let def = Domain::parse(xml).map_err(DriverError::Xml)?;
        let volumes = self.resolve_volumes(&def)?;
        let n = command::build(
            &def,
            &BuildOptions {
                kvm: Ok(()),
                volumes,
                ..self.build_options(Monitor::Path(self.paths.monitor(def.name())), false, "qemu")
            },
        )?;
        Ok(command::to_argv_text(&n))
    }

    // ---- loading and reattaching ----

    fn load(&'static self) -> Result<()> {
        let mut found = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.paths.config) {
            for e in rd.flatten() {
                let p = e.path();
                if let Some(pid) = stale_temp_owner(&p)
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    // A temporary file of a process that ended mid-write.
                    let _ = std::fs::remove_file(&p);
                    continue;
                }
                if p.extension().is_some_and(|x| x == "xml")
                    && let Ok(text) = std::fs::read_to_string(&p)
                    && let Ok(def) = Domain::parse(&text)
                {
                    let autostart = self.paths.autostart_link(def.name()).exists();
                    found.push((def, autostart));
                }
            }
        }
        {
            let mut st = self.lock();
            for (def, autostart) in found {
                let last = self
                    .recorded_stop(def.name())
                    .unwrap_or(reason::SHUTOFF_UNKNOWN);
                st.doms.insert(
                    def.uuid(),
                    Dom {
                        def,
                        persistent: true,
                        autostart,
                        state: state::SHUTOFF,
                        reason: last,
                        run: None,
                    },
                );
            }
        }
        let mut statuses = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.paths.run) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "status") {
                    statuses.push(p);
                } else if let Some(pid) = stale_temp_owner(&p)
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    // A temporary file of a process that ended mid-write.
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        for p in statuses {
            let Some(name) = p.file_stem().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            // Under the domain's lock, a job of another process on it (a start writing this
            // file, a destroy removing it) ends first. An open does not wait long for it:
            // while that job goes on, the domain is only observed (see `reattach`).
            let deadline = Instant::now() + Duration::from_millis(250).min(job_timeout());
            match FileLock::acquire(&self.paths.domain_lock(&name), deadline) {
                Ok(Some(_lock)) => self.reattach(&name, true),
                Ok(None) => self.reattach(&name, false),
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Records why a persistent domain stopped. The record is a symlink whose target is
    /// the reason number, renamed into place: atomic, and no data block to write on the
    /// destroy path.
    fn record_stop(&self, name: &str, rsn: i32) {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = self.paths.stopped_file(name);
        let tmp = self.paths.run.join(format!(
            ".{name}.stopped.tmp{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        if std::os::unix::fs::symlink(rsn.to_string(), &tmp).is_ok()
            && std::fs::rename(&tmp, &path).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// The reason [`Driver::record_stop`] recorded for `name`.
    fn recorded_stop(&self, name: &str) -> Option<i32> {
        std::fs::read_link(self.paths.stopped_file(name))
            .ok()?
            .to_str()?
            .parse()
            .ok()
    }

    /// Removes the run files of domain `name`: its status file, its monitor socket and
    /// those of `overlays` that are this domain's transient overlays in `run/` (a status
    /// file names them; nothing else is removed on its word).
    fn cleanup_run_files(&self, name: &str, overlays: &[PathBuf]) {
        let _ = std::fs::remove_file(self.paths.status_file(name));
        let _ = std::fs::remove_file(self.paths.monitor(name));
        for o in overlays {
            let ours = o.parent() == Some(self.paths.run.as_path())
                && o.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(&format!("{name}-")) && n.ends_with(".transient.qcow2")
                });
            if ours {
                let _ = std::fs::remove_file(o);
            }
        }
    }

    /// Whether `run/NAME.status` records the QEMU `pid` started at `start_time` (and not
    /// a later run, maybe of another process).
    fn status_names(&self, name: &str, pid: i32, start_time: u64) -> bool {
        std::fs::read_to_string(self.paths.status_file(name))
            .ok()
            .and_then(|t| serde_json::from_str::<Status>(&t).ok())
            .is_some_and(|s| s.pid == pid && s.start_time == start_time)
    }

    /// Reads and checks `run/NAME.status` (see the module documentation).
    fn read_status(&self, name: &str) -> Option<Recorded> {
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
    fn reattach(&'static self, name: &str, locked: bool) {
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

    fn autostart(&'static self) {
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

    // ---- queries ----

    /// Domains matching the list flags.
    pub fn list(&self, flags: u32) -> Vec<DomainRef> {
        self.lock()
            .doms
            .values()
            .filter(|d| {
                filter::matches(
                    flags,
                    &DomainFacts {
                        state: d.state,
                        persistent: d.persistent,
                        autostart: d.autostart,
                        managed_save: false,
                        has_snapshot: false,
                    },
                )
            })
            .map(Dom::reference)
            .collect()
    }

    fn with_dom<T>(
        &self,
        uuid: uuid::Uuid,
        f: impl FnOnce(&Dom) -> T,
    ) -> std::result::Result<T, PluginError> {
        let st = self.lock();
        st.doms.get(&uuid).map(f).ok_or_else(|| {
            no_domain(
                ErrorDomain::Qemu,
                &format!("no domain with matching uuid '{uuid}'"),
            )
        })
    }

    /// Lookup by name.
    pub fn by_name(&self, name: &str) -> std::result::Result<DomainRef, PluginError> {
        self.lock()
            .doms
            .values()
            .find(|d| d.def.name() == name)
            .map(Dom::reference)
            .ok_or_else(|| {
                no_domain(
                    ErrorDomain::Qemu,
                    &format!("no domain with matching name '{name}'"),
                )
            })
    }

    /// Lookup by UUID.
    pub fn by_uuid(&self, uuid: uuid::Uuid) -> std::result::Result<DomainRef, PluginError> {
        self.with_dom(uuid, Dom::reference)
    }

    /// Lookup by id.
    pub fn by_id(&self, id: i32) -> std::result::Result<DomainRef, PluginError> {
        self.lock()
            .doms
            .values()
            .find(|d| d.run.as_ref().is_some_and(|r| r.id == id))
            .map(Dom::reference)
            .ok_or_else(|| {
                no_domain(
                    ErrorDomain::Qemu,
                    &format!("no domain with matching id {id}"),
                )
            })
    }

    /// State and reason.
    pub fn state(&self, uuid: uuid::Uuid) -> std::result::Result<(i32, i32), PluginError> {
        self.with_dom(uuid, |d| (d.state, d.reason))
    }

    /// virDomainGetInfo.
    pub fn info(&self, uuid: uuid::Uuid) -> std::result::Result<DomainInfo, PluginError> {
        self.with_dom(uuid, |d| {
            let def = d.run.as_ref().map_or(&d.def, |r| &r.live);
            DomainInfo {
                state: d.state,
                max_mem_kib: def.memory_kib(),
                memory_kib: def.current_memory_kib(),
                nr_virt_cpu: def.current_vcpus(),
                cpu_time_ns: d.run.as_ref().map_or(0, |r| proc_cpu_ns(r.pid)),
            }
        })
    }

    /// The XML (live when running, unless `VIR_DOMAIN_XML_INACTIVE`).
    pub fn xml(&self, uuid: uuid::Uuid, flags: u32) -> std::result::Result<String, PluginError> {
        self.with_dom(uuid, |d| {
            let inactive = flags & 2 != 0;
            let opts = FormatOptions {
                inactive: inactive || d.run.is_none(),
                secure: flags & 1 != 0,
            };
            match (&d.run, inactive) {
                (Some(r), false) => r.live.to_xml(&opts),
                _ => d.def.to_xml(&opts),
            }
        })
    }

    /// Persistent?
    pub fn is_persistent(&self, uuid: uuid::Uuid) -> std::result::Result<bool, PluginError> {
        self.with_dom(uuid, |d| d.persistent)
    }

    /// Autostart?
    pub fn get_autostart(&self, uuid: uuid::Uuid) -> std::result::Result<bool, PluginError> {
        self.with_dom(uuid, |d| d.autostart)
    }

    /// vCPUs (`VIR_DOMAIN_VCPU_MAXIMUM` = 4 gives the maximum).
    pub fn vcpus(&self, uuid: uuid::Uuid, flags: u32) -> std::result::Result<i32, PluginError> {
        self.with_dom(uuid, |d| {
            let n = if flags & 4 != 0 {
                d.def.max_vcpus()
            } else {
                d.def.current_vcpus()
            };
            i32::try_from(n).unwrap_or(i32::MAX)
        })
    }

    /// `<os><type>`.
    pub fn os_type(&self, uuid: uuid::Uuid) -> std::result::Result<String, PluginError> {
        self.with_dom(uuid, |d| d.def.os_type().to_string())
    }

    // ---- definitions ----

    fn parse_def(xml: &str) -> Result<Domain> {
        let mut def = Domain::parse(xml).map_err(DriverError::Xml)?;
        command::assign_macs(&mut def);
        command::volume_disks(&def)?;
        match def.domain_type() {
            "qemu" | "kvm" => Ok(def),
            other => Err(command::CommandError::Unsupported(format!(
                "domain type '{other}' is not served by the qemu driver (use 'qemu' or 'kvm')"
            ))
            .into()),
        }
    }

    fn check_unique(st: &State, def: &Domain) -> Result<()> {
        for d in st.doms.values() {
            if d.def.name() == def.name() && d.def.uuid() != def.uuid() {
                return Err(perr(PluginError::new(
                    ErrorCode::DomExist,
                    ErrorDomain::Qemu,
                    format!(
                        "domain '{}' already exists with uuid {}",
                        def.name(),
                        d.def.uuid()
                    ),
                )));
            }
            if d.def.uuid() == def.uuid() && d.def.name() != def.name() {
                return Err(perr(PluginError::new(
                    ErrorCode::DomExist,
                    ErrorDomain::Qemu,
                    format!(
                        "domain '{}' is already defined with uuid {}",
                        d.def.name(),
                        def.uuid()
                    ),
                )));
            }
        }
        Ok(())
    }

    /// virDomainDefineXML.
    pub fn define(&'static self, xml: &str) -> Result<DomainRef> {
        let def = Self::parse_def(xml)?;
        // Over an existing domain (maybe running): as the domain's job.
        let exists = self.lock().doms.contains_key(&def.uuid());
        let _job = if exists {
            let job = self.begin_job(def.uuid(), None)?;
            self.sync_from_disk(&job);
            Some(job)
        } else {
            None
        };
        let mut st = self.lock();
        Self::check_unique(&st, &def)?;
        let path = self.paths.config_file(def.name());
        write_file(
            &path,
            def.to_xml(&FormatOptions {
                inactive: true,
                secure: true,
            })
            .as_bytes(),
            Durability::Durable,
        )?;
        let uuid = def.uuid();
        let updated = st.doms.contains_key(&uuid);
        let d = st.doms.entry(uuid).or_insert_with(|| Dom {
            def: def.clone(),
            persistent: true,
            autostart: false,
            state: state::SHUTOFF,
            reason: reason::SHUTOFF_UNKNOWN,
            run: None,
        });
        d.def = def;
        d.persistent = true;
        let r = d.reference();
        if let Some(run) = &d.run {
            let _ = self.write_status_locked(d, run);
        }
        drop(st);
        self.emit(vec![(
            r.clone(),
            event::DEFINED,
            if updated {
                detail::DEFINED_UPDATED
            } else {
                detail::DEFINED_ADDED
            },
        )]);
        Ok(r)
    }

    /// virDomainUndefineFlags (`VIR_DOMAIN_UNDEFINE_NVRAM` = 4 removes the NVRAM file).
    pub fn undefine(&'static self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let mut st = self.lock();
        let d = st
            .doms
            .get_mut(&uuid)
            .ok_or_else(|| perr(no_domain(ErrorDomain::Qemu, &uuid.to_string())))?;
        if !d.persistent {
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                "cannot undefine transient domain",
            )));
        }
        let name = d.def.name().to_string();
        let cfg = self.paths.config_file(&name);
        std::fs::remove_file(&cfg).map_err(io("remove", &cfg))?;
        let _ = std::fs::remove_file(self.paths.autostart_link(&name));
        let _ = std::fs::remove_file(self.paths.stopped_file(&name));
        if flags & 4 != 0 {
            // The definition's own <nvram> path, else the per-domain default.
            let nvram = d
                .def
                .element()
                .child("os")
                .and_then(|o| o.child("nvram"))
                .map(|n| n.text().trim().to_string())
                .filter(|p| !p.is_empty())
                .map_or_else(
                    || self.paths.nvram_dir().join(format!("{name}_VARS.fd")),
                    PathBuf::from,
                );
            let _ = std::fs::remove_file(nvram);
        }
        d.persistent = false;
        d.autostart = false;
        let r = d.reference();
        if let Some(run) = &d.run {
            let _ = self.write_status_locked(d, run);
        } else {
            st.doms.remove(&uuid);
        }
        drop(st);
        self.emit(vec![(r, event::UNDEFINED, 0)]);
        Ok(())
    }

    /// virDomainSetAutostart.
    pub fn set_autostart(&self, uuid: uuid::Uuid, on: bool) -> Result<()> {
        let mut st = self.lock();
        let d = st
            .doms
            .get_mut(&uuid)
            .ok_or_else(|| perr(no_domain(ErrorDomain::Qemu, &uuid.to_string())))?;
        if !d.persistent {
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                "cannot set autostart for transient domain",
            )));
        }
        let name = d.def.name().to_string();
        let link = self.paths.autostart_link(&name);
        if on {
            let dir = self.paths.config.join("autostart");
            mkdir_private(&dir)?;
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(self.paths.config_file(&name), &link)
                .map_err(io("create link", &link))?;
        } else {
            let _ = std::fs::remove_file(&link);
        }
        d.autostart = on;
        Ok(())
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

    // ---- jobs ----

    /// Begins a state-change job on `uuid` (named `name`, or as the driver knows it):
    /// waits for a job of this process on it, then for the domain's lock file, together
    /// at most [`job_timeout`].
    fn begin_job(&self, uuid: uuid::Uuid, name: Option<&str>) -> Result<Job<'_>> {
        let timeout = job_timeout();
        let deadline = Instant::now() + timeout;
        let st = self.lock();
        let (mut st, _) = self
            .job_done
            .wait_timeout_while(st, timeout, |s| s.jobs.contains(&uuid))
            .unwrap_or_else(|e| e.into_inner());
        let name = match name {
            Some(n) => n.to_string(),
            None => st
                .doms
                .get(&uuid)
                .map(|d| d.def.name().to_string())
                .ok_or_else(|| perr(no_domain(ErrorDomain::Qemu, &uuid.to_string())))?,
        };
        if st.jobs.contains(&uuid) {
            return Err(job_timeout_error(&name));
        }
        st.jobs.insert(uuid);
        drop(st);
        let mut job = Job {
            driver: self,
            uuid,
            name,
            lock: None,
        };
        // On an error, dropping `job` gives the slot back.
        job.lock = Some(
            FileLock::acquire(&self.paths.domain_lock(&job.name), deadline)?
                .ok_or_else(|| job_timeout_error(&job.name))?,
        );
        Ok(job)
    }

    /// Under a job: when the driver knows no QEMU of the domain but a status file names
    /// one (another process started it), the status file is checked and reattached (or,
    /// its QEMU gone, cleaned up), so the job acts on what the disk says.
    fn sync_from_disk(&'static self, job: &Job<'_>) {
        let known = self
            .lock()
            .doms
            .get(&job.uuid)
            .is_some_and(|d| d.run.is_some());
        if !known && self.paths.status_file(&job.name).exists() {
            self.reattach(&job.name, true);
        }
    }

    // ---- start ----

    /// The next free domain id: above every id of a running domain of this process and of
    /// every status file. The caller holds `run/ids.lock` until its status file exists.
    fn next_id(&self) -> i32 {
        let mut max = 0;
        if let Ok(rd) = std::fs::read_dir(&self.paths.run) {
            for e in rd.flatten() {
                if e.path().extension().is_none_or(|x| x != "status") {
                    continue;
                }
                if let Some(s) = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|t| serde_json::from_str::<Status>(&t).ok())
                {
                    max = max.max(s.id);
                }
            }
        }
        let st = self.lock();
        let mem = st
            .doms
            .values()
            .filter_map(|d| d.run.as_ref().map(|r| r.id))
            .max()
            .unwrap_or(0);
        max.max(mem) + 1
    }

    /// virDomainCreateWithFlags (`VIR_DOMAIN_START_PAUSED` = 1).
    pub fn start(&'static self, uuid: uuid::Uuid, flags: u32) -> Result<DomainRef> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        self.start_in_job(&job, flags)
    }

    /// Starts the domain of `job`. The driver lock is taken only to read the definition
    /// and to commit the run: `qemu-img`, the spawn, the monitor handshake and `cont` run
    /// without it.
    fn start_in_job(&'static self, job: &Job<'_>, flags: u32) -> Result<DomainRef> {
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
        let name = def.name().to_string();
        // Volume disks resolve through the host's pools before anything is made.
        let volumes = self.resolve_volumes(&def)?;
        let native_volumes: Vec<command::ResolvedVolume> = volumes.values().cloned().collect();
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
        let mut line = format!("rvirt: starting {}", native.emulator);
        for a in &args {
            line.push(' ');
            line.push_str(&command::shell_quote(a));
        }
        line.push('\n');
        let _ = std::io::Write::write_all(&mut &log, line.as_bytes());
        let mut cmd = Command::new(&native.emulator);
        cmd.args(&args)
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
                for &t in &tap_fds {
                    // SAFETY: the TAP descriptors are open in the parent across fork.
                    let tfd = rustix::fd::BorrowedFd::borrow_raw(t);
                    rustix::io::fcntl_setfd(tfd, rustix::io::FdFlags::empty())
                        .map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
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
        let paused = flags & 1 != 0;
        let (dstate, dreason) = if paused {
            (state::PAUSED, reason::PAUSED_USER)
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
        // The pty paths and `cont` in flight together: one round trip.
        let chardevs = qmp.send("query-chardev", None);
        let cont = (!paused).then(|| qmp.send("cont", None));
        let chardevs = chardevs.and_then(|p| p.wait(Duration::from_secs(60)));
        if let Some(Err(e)) = cont.map(|c| c.and_then(|p| p.wait(Duration::from_secs(60)))) {
            qmp.close();
            return Err(fail(&mut child, e.into()));
        }
        if let Ok(c) = &chardevs {
            fill_pty_paths(&mut run.live, c);
        }
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
        let mut ev = vec![(r.clone(), event::STARTED, detail::STARTED_BOOTED)];
        if paused {
            ev.push((r.clone(), event::SUSPENDED, detail::SUSPENDED_PAUSED));
        }
        self.emit(ev);
        Ok(r)
    }

    fn write_status_locked(&self, d: &Dom, run: &Run) -> Result<()> {
        self.write_status(&d.def, d.persistent, d.state, d.reason, run)
    }

    fn write_status(
        &self,
        def: &Domain,
        persistent: bool,
        state: i32,
        reason: i32,
        run: &Run,
    ) -> Result<()> {
        let s = Status {
            version: STATUS_VERSION,
            pid: run.pid,
            start_time: run.start_time,
            id: run.id,
            monitor: run.monitor.clone(),
            state,
            reason,
            persistent,
            live: run.live.to_xml(&FormatOptions {
                inactive: false,
                secure: true,
            }),
            def: def.to_xml(&FormatOptions {
                inactive: true,
                secure: true,
            }),
            overlays: run.overlays.clone(),
            shutdown: run.shutdown_seen,
            volumes: run.volumes.clone(),
        };
        let text = serde_json::to_string_pretty(&s).unwrap_or_default();
        write_file(
            &self.paths.status_file(def.name()),
            text.as_bytes(),
            Durability::Volatile,
        )
    }

    /// Rewrites the status file of the run `generation` (if it is still the current one).
    fn refresh_status(&self, uuid: uuid::Uuid, generation: u64) {
        let st = self.lock();
        if let Some(d) = st.doms.get(&uuid)
            && let Some(run) = d.run.as_ref().filter(|r| r.generation == generation)
        {
            let _ = self.write_status_locked(d, run);
        }
    }

    // ---- supervision ----

    /// One thread per run waits for QEMU's exit on its pidfd (reaping it when it is our
    /// child), then updates the state.
    fn spawn_exit_waiter(
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

    fn spawn_event_loop(
        &'static self,
        uuid: uuid::Uuid,
        generation: u64,
        events: std::sync::mpsc::Receiver<Event>,
        after_start: Option<(PathBuf, String)>,
    ) {
        let _ = std::thread::Builder::new()
            .name("qemu-events".into())
            .spawn(move || {
                if let Some((log, line)) = after_start {
                    // Off the start's path: the status file gains the pty paths, the log
                    // its line.
                    self.refresh_status(uuid, generation);
                    let _ = append_log(&log, &line);
                }
                for ev in events {
                    self.on_event(uuid, generation, ev);
                }
            });
    }

    fn on_exit(&self, uuid: uuid::Uuid, generation: u64) {
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

    fn transition(
        &self,
        uuid: uuid::Uuid,
        generation: u64,
        to: (i32, i32),
        ev: Option<(i32, i32)>,
    ) -> Emit {
        let mut st = self.lock();
        let Some(d) = st.doms.get_mut(&uuid) else {
            return vec![];
        };
        if d.run.as_ref().is_none_or(|r| r.generation != generation) || d.state == to.0 {
            return vec![];
        }
        d.state = to.0;
        d.reason = to.1;
        if let Some(run) = &d.run {
            let _ = self.write_status_locked(d, run);
        }
        ev.map(|(e, det)| vec![(d.reference(), e, det)])
            .unwrap_or_default()
    }

    fn on_event(&self, uuid: uuid::Uuid, generation: u64, ev: Event) {
        match ev.name.as_str() {
            "STOP" => {
                let expect = {
                    let mut st = self.lock();
                    let Some(run) = st
                        .doms
                        .get_mut(&uuid)
                        .and_then(|d| d.run.as_mut())
                        .filter(|r| r.generation == generation)
                    else {
                        return;
                    };
                    if run.shutdown_seen || run.stopping.is_some() || run.panicked || run.resetting
                    {
                        return;
                    }
                    run.expect_pause.take().unwrap_or(reason::PAUSED_UNKNOWN)
                };
                let e = self.transition(
                    uuid,
                    generation,
                    (state::PAUSED, expect),
                    Some((event::SUSPENDED, detail::SUSPENDED_PAUSED)),
                );
                self.emit(e);
            }
            "RESUME" => {
                {
                    let mut st = self.lock();
                    let Some(run) = st
                        .doms
                        .get_mut(&uuid)
                        .and_then(|d| d.run.as_mut())
                        .filter(|r| r.generation == generation)
                    else {
                        return;
                    };
                    if std::mem::take(&mut run.resetting) {
                        return;
                    }
                }
                let e = self.transition(
                    uuid,
                    generation,
                    (state::RUNNING, reason::RUNNING_UNPAUSED),
                    Some((event::RESUMED, detail::RESUMED_UNPAUSED)),
                );
                self.emit(e);
            }
            "SHUTDOWN" => {
                let guest = ev.data["guest"].as_bool().unwrap_or(false);
                let qreason = ev.data["reason"].as_str().unwrap_or("").to_string();
                self.after_shutdown_event(uuid, generation, guest, &qreason);
            }
            "GUEST_PANICKED" => {
                let (action, r, qmp) = {
                    let mut st = self.lock();
                    let Some(d) = st.doms.get_mut(&uuid) else {
                        return;
                    };
                    let action = d
                        .def
                        .element()
                        .child("on_crash")
                        .map(|e| e.text().trim().to_string())
                        .unwrap_or_else(|| "destroy".into());
                    let Some(run) = d.run.as_mut().filter(|r| r.generation == generation) else {
                        return;
                    };
                    run.panicked = true;
                    let q = run.qmp.clone();
                    d.state = state::CRASHED;
                    d.reason = reason::CRASHED_PANICKED;
                    (action, d.reference(), q)
                };
                self.emit(vec![(r, event::CRASHED, detail::CRASHED_PANICKED)]);
                if let Some(q) = qmp {
                    match action.as_str() {
                        "restart" | "restart-rename" => {
                            let _ = q.execute("system_reset", None);
                            let _ = q.execute("cont", None);
                        }
                        "preserve" | "coredump-restart" | "coredump-destroy"
                            if action == "preserve" => {}
                        _ => {
                            let _ = q.execute("quit", None);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn after_shutdown_event(&self, uuid: uuid::Uuid, generation: u64, guest: bool, qreason: &str) {
        let (r, fake) = {
            let mut st = self.lock();
            let Some(d) = st.doms.get_mut(&uuid) else {
                return;
            };
            let Some(run) = d.run.as_mut().filter(|r| r.generation == generation) else {
                return;
            };
            if run.stopping.is_some() {
                return;
            }
            let fake = std::mem::take(&mut run.fake_reboot);
            if fake {
                run.resetting = true;
            } else {
                run.shutdown_seen = true;
            }
            let r = d.reference();
            if !fake && let Some(run) = &d.run {
                // Recorded before QEMU is ended: whoever finds it gone reports a shutdown.
                let _ = self.write_status_locked(d, run);
            }
            (r, fake)
        };
        if fake {
            // virDomainReboot through ACPI: reset and continue.
            if let Some(q) = self.qmp_of(uuid) {
                let _ = q.execute("system_reset", None);
                let _ = q.execute("cont", None);
            }
            return;
        }
        self.emit(vec![(
            r,
            event::SHUTDOWN,
            if guest {
                detail::SHUTDOWN_GUEST
            } else {
                detail::SHUTDOWN_HOST
            },
        )]);
        self.after_guest_shutdown(uuid, generation, qreason == "guest-reset");
    }

    /// Applies `on_poweroff` (or `on_reboot` for a reset QEMU turned into a stop).
    fn after_guest_shutdown(&self, uuid: uuid::Uuid, generation: u64, was_reset: bool) {
        let (action, qmp) = {
            let st = self.lock();
            let Some(d) = st.doms.get(&uuid) else { return };
            let Some(run) = d.run.as_ref().filter(|r| r.generation == generation) else {
                return;
            };
            let key = if was_reset {
                "on_reboot"
            } else {
                "on_poweroff"
            };
            let dflt = if was_reset { "restart" } else { "destroy" };
            let a = run
                .live
                .element()
                .child(key)
                .map(|e| e.text().trim().to_string())
                .unwrap_or_else(|| dflt.into());
            (a, run.qmp.clone())
        };
        match action.as_str() {
            "restart" | "restart-rename" => {
                if let Some(q) = qmp {
                    {
                        let mut st = self.lock();
                        if let Some(d) = st.doms.get_mut(&uuid)
                            && let Some(run) = d.run.as_mut().filter(|r| r.generation == generation)
                        {
                            run.shutdown_seen = false;
                            run.resetting = true;
                            let d = &*d;
                            if let Some(run) = &d.run {
                                let _ = self.write_status_locked(d, run);
                            }
                        }
                    }
                    let _ = q.execute("system_reset", None);
                    let _ = q.execute("cont", None);
                }
            }
            "preserve" => {
                let e = self.transition(
                    uuid,
                    generation,
                    (state::PAUSED, reason::PAUSED_SHUTTING_DOWN),
                    None,
                );
                self.emit(e);
            }
            _ => {
                // destroy: QEMU stays up only because of -no-shutdown; end it.
                let ok = qmp.is_some_and(|q| q.execute("quit", None).is_ok());
                if !ok {
                    let pidfd = self
                        .lock()
                        .doms
                        .get(&uuid)
                        .and_then(|d| d.run.as_ref())
                        .map(|r| r.pidfd.clone());
                    if let Some(fd) = pidfd {
                        let _ =
                            rustix::process::pidfd_send_signal(&*fd, rustix::process::Signal::TERM);
                    }
                }
            }
        }
    }

    /// Blocks until the run `generation` of `uuid` has ended (or `timeout` passed).
    fn wait_gone(&self, uuid: uuid::Uuid, generation: u64, timeout: Duration) -> bool {
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

    fn qmp_of(&self, uuid: uuid::Uuid) -> Option<Qmp> {
        self.lock()
            .doms
            .get(&uuid)
            .and_then(|d| d.run.as_ref())
            .and_then(|r| r.qmp.clone())
    }

    fn running(&self, uuid: uuid::Uuid) -> Result<(Qmp, u64)> {
        let st = self.lock();
        let d = st
            .doms
            .get(&uuid)
            .ok_or_else(|| perr(no_domain(ErrorDomain::Qemu, &uuid.to_string())))?;
        let run = d.run.as_ref().ok_or_else(|| {
            perr(operation_invalid(
                ErrorDomain::Qemu,
                "domain is not running",
            ))
        })?;
        let q = run.qmp.clone().ok_or_else(|| {
            perr(operation_invalid(
                ErrorDomain::Qemu,
                "the domain's monitor is held by another process",
            ))
        })?;
        Ok((q, run.generation))
    }

    // ---- lifecycle operations ----

    /// virDomainDestroy: SIGTERM, then SIGKILL after a grace period; returns once QEMU
    /// has exited and its state is cleaned up.
    pub fn destroy(&'static self, uuid: uuid::Uuid) -> Result<()> {
        const GRACE: Duration = Duration::from_secs(5);
        // A start in progress is ended now rather than waited for (as libvirt's destroy):
        // its QEMU is killed, and the start fails and ends its job.
        let starting = self.lock().starting.get(&uuid).cloned();
        if let Some(fd) = &starting {
            let _ = rustix::process::pidfd_send_signal(&**fd, rustix::process::Signal::KILL);
        }
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (generation, pidfd, own_child) = {
            let mut st = self.lock();
            let d = st
                .doms
                .get_mut(&uuid)
                .ok_or_else(|| perr(no_domain(ErrorDomain::Qemu, &uuid.to_string())))?;
            let Some(run) = d.run.as_mut() else {
                if starting.is_some() {
                    // The start it interrupted has failed: nothing runs.
                    return Ok(());
                }
                return Err(perr(operation_invalid(
                    ErrorDomain::Qemu,
                    "domain is not running",
                )));
            };
            run.stopping = Some(Stopping::Destroy);
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
        let e = self.transition(
            uuid,
            generation,
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
        let e = self.transition(
            uuid,
            generation,
            (state::RUNNING, reason::RUNNING_UNPAUSED),
            Some((event::RESUMED, detail::RESUMED_UNPAUSED)),
        );
        self.emit(e);
        Ok(())
    }
}

fn append_log(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f: File = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// Puts the pty paths QEMU reports (`query-chardev`) into the live XML's serial, console
/// and channel elements of type `pty`.
fn fill_pty_paths(live: &mut Domain, chardevs: &serde_json::Value) {
    let mut map = HashMap::new();
    for c in chardevs.as_array().into_iter().flatten() {
        if let (Some(label), Some(f)) = (c["label"].as_str(), c["filename"].as_str())
            && let Some(p) = f.strip_prefix("pty:")
        {
            map.insert(label.to_string(), p.to_string());
        }
    }
    let Some(devs) = live.element_mut().child_mut("devices") else {
        return;
    };
    for e in devs.elements_mut() {
        if !matches!(e.name(), "serial" | "console" | "channel") || e.attr("type") != Some("pty") {
            continue;
        }
        let Some(alias) = e
            .child("alias")
            .and_then(|a| a.attr("name"))
            .map(str::to_string)
        else {
            continue;
        };
        if let Some(p) = map.get(&format!("char{alias}")) {
            if e.name() == "console" {
                e.set_attr("tty", p);
            }
            let s = e.child_or_insert("source");
            s.set_attr("path", p);
            // <source> comes first among the children, as libvirt writes it.
            let idx = e
                .nodes()
                .iter()
                .position(|n| matches!(n, rvirt_xml::Node::Element(c) if c.name() == "source"));
            if let Some(i) = idx {
                let n = e.nodes_mut().remove(i);
                e.nodes_mut().insert(0, n);
            }
        }
    }
}

/// Network ports plugged for a start, released on drop unless the start succeeded.
struct PortGuard<'a> {
    driver: &'a Driver,
    ports: Vec<(String, String)>,
}

impl Drop for PortGuard<'_> {
    fn drop(&mut self) {
        for (net, id) in &self.ports {
            self.driver.release_port(net, id);
        }
    }
}

/// A TAP device made for an interface at start, with the network port plugged for it.
struct MadeTap {
    index: usize,
    tap: crate::tap::Tap,
    port: Option<(String, String, String)>,
}

fn iface_err(k: usize, what: &str) -> DriverError {
    DriverError::from(command::CommandError::Invalid(format!(
        "interface {k}: {what}"
    )))
}

/// The `<plug bridge>` of a `<networkport>` document.
fn plug_bridge(port_xml: &str) -> Option<String> {
    let e = rvirt_xml::Element::parse(port_xml).ok()?;
    e.child("plug")?.attr("bridge").map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pty_paths_fill_serial_and_console() {
        let mut d = Domain::parse("<domain type='qemu'><name>a</name><memory>1024</memory><os><type>hvm</type></os><devices><serial type='pty'><target port='0'/><alias name='serial0'/></serial><console type='pty'><target type='serial' port='0'/><alias name='serial0'/></console></devices></domain>").unwrap();
        fill_pty_paths(
            &mut d,
            &json!([{"label": "charserial0", "filename": "pty:/dev/pts/7"}, {"label": "charmonitor", "filename": "unix:/x"}]),
        );
        let x = d.to_xml(&FormatOptions::default());
        assert!(
            x.contains("<serial type='pty'>\n      <source path='/dev/pts/7'/>"),
            "{x}"
        );
        assert!(
            x.contains("<console type='pty' tty='/dev/pts/7'>\n      <source path='/dev/pts/7'/>"),
            "{x}"
        );
        assert!(x.contains("<console type='pty' tty='/dev/pts/7'>"), "{x}");
    }

    #[test]
    fn errors_carry_libvirt_codes() {
        let e: PluginError =
            DriverError::Command(command::CommandError::Unsupported("x".into())).into();
        assert_eq!((e.code, e.domain), (67, 10));
        let e: PluginError = DriverError::Xml(Domain::parse("<domain/>").unwrap_err()).into();
        assert_eq!(e.code, 27);
        assert!(e.message.starts_with("XML error: "));
    }

    #[test]
    fn state_files_are_replaced_whole_and_temporaries_are_recognised() {
        let dir = std::env::temp_dir().join(format!("rvirt-qemu-wf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.status");
        write_file(&p, b"one", Durability::Volatile).unwrap();
        write_file(&p, b"two", Durability::Durable).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        assert_eq!(
            stale_temp_owner(Path::new("/r/.a.status.tmp123-4")),
            Some(123)
        );
        assert_eq!(stale_temp_owner(Path::new("/r/.b.stopped.tmp9-0")), Some(9));
        assert_eq!(stale_temp_owner(Path::new("/r/a.status")), None);
        assert_eq!(stale_temp_owner(Path::new("/r/.x.tmp")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lock_files_exclude_exist_only_while_held_and_survive_removal_races() {
        let dir = std::env::temp_dir().join(format!("rvirt-qemu-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("d.lock");
        let soon = || Instant::now() + Duration::from_millis(30);
        let a = FileLock::acquire(&p, soon()).unwrap().expect("free");
        assert!(p.exists());
        assert!(FileLock::acquire(&p, soon()).unwrap().is_none(), "held");
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || {
                FileLock::acquire(&p, Instant::now() + Duration::from_secs(5))
                    .unwrap()
                    .is_some()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(a);
        assert!(waiter.join().unwrap(), "the waiter gets it once released");
        assert!(!p.exists(), "removed by its last holder");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_process_holding_a_listener_is_recognised() {
        let dir = std::env::temp_dir().join(format!("rvirt-qemu-lsn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("m.sock");
        let _l = UnixListener::bind(&sock).unwrap();
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(holds_listener(me, &sock));
        assert!(!holds_listener(me, &dir.join("other.sock")));
        let me_uid = rustix::process::geteuid().as_raw();
        assert_eq!(proc_uids(me), Some((me_uid, me_uid)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn proc_stat_parsing() {
        let me = i32::try_from(std::process::id()).unwrap();
        let (t, st) = proc_start_time(me).unwrap();
        assert!(t > 0 && st != 'Z');
        let _ = proc_cpu_ns(me);
    }

    #[test]
    fn without_host_services_a_volume_disk_is_refused_before_anything_runs() {
        let root = std::env::temp_dir().join(format!("rvirt-qemu-novol-{}", std::process::id()));
        let paths = Paths::from_uri(&format!("qemu:///embed?root={}", root.display())).unwrap();
        // Opened as by a host older than plugin API 1.4: no services.
        let d = driver_for(&paths, None).unwrap();
        let xml = "<domain type='qemu'><name>novol</name><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm</type></os>\
                   <devices><disk type='volume' device='disk'><source pool='p' volume='v'/><target dev='vda' bus='virtio'/></disk></devices></domain>";
        let r = d.define(xml).unwrap();
        let e = PluginError::from(d.start(uuid::Uuid::from_bytes(r.uuid.0), 0).unwrap_err());
        assert_eq!(e.code, ErrorCode::ConfigUnsupported as i32, "{}", e.message);
        assert!(
            e.message.contains("disk 'vda': volume 'v' of storage pool 'p' cannot be resolved: the host lent no storage services"),
            "{}",
            e.message
        );
        assert!(!paths.status_file("novol").exists());
        assert!(!paths.monitor("novol").exists());
        let e = PluginError::from(d.to_native(xml).unwrap_err());
        assert_eq!(e.code, ErrorCode::ConfigUnsupported as i32, "{}", e.message);
        // A volume disk without a volume name is refused at define.
        let e = PluginError::from(d.define(&xml.replace(" volume='v'", "")).unwrap_err());
        assert_eq!(e.code, ErrorCode::XmlError as i32, "{}", e.message);
        assert!(
            e.message
                .contains("disk 'vda': the <source> of a volume disk needs the 'volume' attribute"),
            "{}",
            e.message
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}

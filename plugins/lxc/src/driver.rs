//! The driver state of one root: definitions on disk, running containers (each with
//! its controller process), status files and reattachment, lifecycle calls and events.
//!
//! One [`Driver`] exists per root per process (connections share it; [`Driver::load`]
//! makes another, as a restarted daemon would). A running container has a status file
//! `run/NAME.json` ([`Status`], versioned) written atomically once its controller reports
//! init running; a driver loading the root reattaches to every container whose
//! controller is still alive (same pid, a `rvirt-lxc-controller` command line naming the
//! container's spec, the init with its recorded start time) by connecting to the
//! controller's socket, and cleans up after the others (kills what is left in the
//! cgroup, removes the files). One thread per running container waits for the
//! controller's `exit` notice (on the pipe of a controller it started, or the socket
//! for one it reattached to) and turns it into the shut-off state with its reason.

mod stats;

use crate::cgroup::Cgroup;
use crate::def::{self, DefError};
use crate::paths::Paths;
use rvirt_sdk::{
    abi::{DomainInfo, DomainRef, ErrorCode, ErrorDomain, EventSinkBox, PluginError, event, state},
    filter::{self, DomainFacts},
    util::{atomic_write, no_domain, operation_invalid, to_abi_uuid},
};
use rvirt_xml::{Domain, FormatOptions};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// libvirt's `VIR_FROM_LXC`.
pub const FROM_LXC: i32 = 17;

/// Errors of the driver's operations (converted to [`PluginError`] at the ABI edge).
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The definition is wrong or unusable.
    #[error(transparent)]
    Def(#[from] DefError),
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
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// The controller binary is nowhere to be found.
    #[error("cannot find rvirt-lxc-controller (looked in: {0})")]
    NoController(String),
    /// The container did not start.
    #[error("container '{name}' failed to start: {reason}")]
    Launch {
        /// The domain.
        name: String,
        /// Why (the controller's report).
        reason: String,
    },
    /// Another error already in libvirt form.
    #[error("{}", .0.message)]
    Plugin(PluginError),
}

impl From<DriverError> for PluginError {
    fn from(e: DriverError) -> Self {
        let code = match &e {
            DriverError::Plugin(p) => return p.clone(),
            DriverError::Def(DefError::Unsupported(_))
            | DriverError::Cgroup(crate::cgroup::CgroupError::Unsupported(_)) => {
                ErrorCode::ConfigUnsupported
            }
            DriverError::Def(DefError::Invalid(_)) | DriverError::Xml(_) => ErrorCode::XmlError,
            DriverError::Def(DefError::Host(_))
            | DriverError::Io { .. }
            | DriverError::Write(_)
            | DriverError::Cgroup(_) => ErrorCode::SystemError,
            DriverError::NoController(_) | DriverError::Launch { .. } => ErrorCode::OperationFailed,
        };
        let msg = rvirt_sdk::util::error_chain(&e);
        PluginError {
            code: code as i32,
            domain: FROM_LXC,
            message: msg.into(),
        }
    }
}

type Result<T> = std::result::Result<T, DriverError>;

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DriverError {
    let path = path.to_path_buf();
    move |source| DriverError::Io { what, path, source }
}

fn lxc_err(code: ErrorCode, msg: String) -> DriverError {
    DriverError::Plugin(PluginError {
        code: code as i32,
        domain: FROM_LXC,
        message: msg.into(),
    })
}

fn invalid(why: &str) -> DriverError {
    let mut e = operation_invalid(ErrorDomain::None, why);
    e.domain = FROM_LXC;
    DriverError::Plugin(e)
}

/// libvirt's reason numbers the driver uses.
pub mod reason {
    /// VIR_DOMAIN_RUNNING_BOOTED
    pub const RUNNING_BOOTED: i32 = 1;
    /// VIR_DOMAIN_RUNNING_UNPAUSED
    pub const RUNNING_UNPAUSED: i32 = 5;
    /// VIR_DOMAIN_RUNNING_UNKNOWN
    pub const RUNNING_UNKNOWN: i32 = 0;
    /// VIR_DOMAIN_PAUSED_USER
    pub const PAUSED_USER: i32 = 1;
    /// VIR_DOMAIN_SHUTOFF_UNKNOWN
    pub const SHUTOFF_UNKNOWN: i32 = 0;
    /// VIR_DOMAIN_SHUTOFF_SHUTDOWN
    pub const SHUTOFF_SHUTDOWN: i32 = 1;
    /// VIR_DOMAIN_SHUTOFF_DESTROYED
    pub const SHUTOFF_DESTROYED: i32 = 2;
    /// VIR_DOMAIN_SHUTOFF_CRASHED
    pub const SHUTOFF_CRASHED: i32 = 3;
    /// VIR_DOMAIN_SHUTOFF_FAILED
    pub const SHUTOFF_FAILED: i32 = 6;
}

/// libvirt's event details the driver emits.
pub mod detail {
    /// VIR_DOMAIN_EVENT_DEFINED_ADDED
    pub const DEFINED_ADDED: i32 = 0;
    /// VIR_DOMAIN_EVENT_DEFINED_UPDATED
    pub const DEFINED_UPDATED: i32 = 1;
    /// VIR_DOMAIN_EVENT_UNDEFINED_REMOVED
    pub const UNDEFINED_REMOVED: i32 = 0;
    /// VIR_DOMAIN_EVENT_STARTED_BOOTED
    pub const STARTED_BOOTED: i32 = 0;
    /// VIR_DOMAIN_EVENT_SUSPENDED_PAUSED
    pub const SUSPENDED_PAUSED: i32 = 0;
    /// VIR_DOMAIN_EVENT_RESUMED_UNPAUSED
    pub const RESUMED_UNPAUSED: i32 = 0;
    /// VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN
    pub const STOPPED_SHUTDOWN: i32 = 0;
    /// VIR_DOMAIN_EVENT_STOPPED_DESTROYED
    pub const STOPPED_DESTROYED: i32 = 1;
    /// VIR_DOMAIN_EVENT_STOPPED_CRASHED
    pub const STOPPED_CRASHED: i32 = 2;
    /// VIR_DOMAIN_EVENT_STOPPED_FAILED
    pub const STOPPED_FAILED: i32 = 5;
}

/// The status file of a running container (`run/NAME.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// [`STATUS_FORMAT`].
    pub format: u32,
    /// Domain name.
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// The container's init, in the host's pid namespace (also the domain id).
    pub init_pid: i32,
    /// Its start time (`/proc/PID/stat` field 22), against pid reuse.
    pub init_start: u64,
    /// The controller.
    pub controller_pid: i32,
    /// The console ptys (host paths), in `<console>` order.
    pub ptys: Vec<String>,
    /// The cgroup, relative to each hierarchy.
    pub cgroup: String,
    /// The live XML.
    pub xml: String,
    /// Whether the domain has a persistent definition.
    pub persistent: bool,
    /// Suspended.
    pub paused: bool,
}

/// The current [`Status`] format.
pub const STATUS_FORMAT: u32 = 1;

/// Why the driver itself stops a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Destroy,
    Shutdown,
    /// Killed to be started again (a transient domain stays).
    Reboot,
}

struct Run {
    status: Status,
    live: Domain,
    stopping: Option<Stop>,
    /// Distinguishes this run from a later one of the same domain.
    run_id: u64,
}

struct Dom {
    def: Domain,
    persistent: bool,
    autostart: bool,
    run: Option<Run>,
    /// State and reason while shut off.
    off: (i32, i32),
    /// A start is in progress.
    starting: bool,
}

impl Dom {
    fn name(&self) -> &str {
        self.def.name()
    }
    fn uuid(&self) -> uuid::Uuid {
        self.def.uuid()
    }
    fn dref(&self) -> DomainRef {
        DomainRef {
            name: self.name().into(),
            uuid: to_abi_uuid(self.uuid()),
            id: self.run.as_ref().map_or(-1, |r| r.status.init_pid),
        }
    }
    fn state(&self) -> (i32, i32) {
        match &self.run {
            Some(r) if r.status.paused => (state::PAUSED, reason::PAUSED_USER),
            Some(_) => (state::RUNNING, reason::RUNNING_BOOTED),
            None => self.off,
        }
    }
}

type Events = Vec<(DomainRef, i32, i32)>;

/// The driver of one root.
pub struct Driver {
    /// Directories and URI.
    pub paths: Paths,
    doms: Mutex<Vec<Dom>>,
    stopped: Condvar,
    sinks: Mutex<Vec<(u64, Arc<EventSinkBox>)>>,
    next: Mutex<u64>,
    /// The host's services (network ports for `<interface type='network'>`), from the
    /// latest connection that lent them.
    host: Mutex<Option<Arc<rvirt_sdk::abi::HostServicesBox>>>,
}

/// The driver for `paths`, created (loaded, reattached, autostarted) on first use in this
/// process. The host's services a connection lends are taken before the load, so that
/// autostarted containers can join their networks.
pub fn driver_for(
    paths: &Paths,
    host: Option<rvirt_sdk::abi::HostServicesBox>,
) -> Result<&'static Driver> {
    static DRIVERS: OnceLock<Mutex<HashMap<Paths, &'static Driver>>> = OnceLock::new();
    let mut map = DRIVERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(d) = map.get(paths) {
        if let Some(h) = host {
            d.set_host(h);
        }
        return Ok(d);
    }
    let d = Driver::load(paths.clone(), host)?;
    map.insert(paths.clone(), d);
    Ok(d)
}

/// The controller binary: `RVIRT_LXC_CONTROLLER`, else `rvirt-lxc-controller` next to
/// the file this code was loaded from (the plugin `.so`, or the program it is linked
/// into, and that program's parent directory), in each `RVIRT_PLUGIN_PATH` directory,
/// then `/usr/libexec/rvirt` and `/usr/lib/rvirt`.
pub fn controller_path() -> Result<PathBuf> {
    const BIN: &str = "rvirt-lxc-controller";
    if let Some(p) = std::env::var_os("RVIRT_LXC_CONTROLLER") {
        return Ok(p.into());
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut info: libc::Dl_info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let addr = controller_path as *const ();
    // SAFETY: dladdr reads the address of one of our functions and fills `info`, whose
    // dli_fname (when set) points at a NUL-terminated string owned by the loader.
    if unsafe { libc::dladdr(addr.cast(), &mut info) } != 0 && !info.dli_fname.is_null() {
        // SAFETY: see above.
        let f = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
        let p = PathBuf::from(f.to_string_lossy().into_owned());
        if let Some(d) = p.parent() {
            dirs.push(d.to_path_buf());
        }
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(d) = exe.parent()
    {
        dirs.push(d.to_path_buf());
        if let Some(pp) = d.parent() {
            dirs.push(pp.to_path_buf());
        }
    }
    if let Some(pp) = std::env::var_os("RVIRT_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&pp));
    }
    dirs.push("/usr/libexec/rvirt".into());
    dirs.push("/usr/lib/rvirt".into());
    for d in &dirs {
        let c = d.join(BIN);
        if c.is_file() {
            return Ok(c);
        }
    }
    Err(DriverError::NoController(
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

/// `/proc/PID/stat` field 22 (start time in ticks since boot).
pub fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Sends `sig` to `pid` if it is still the process that started at `start`.
fn signal(pid: i32, start: u64, sig: i32) -> bool {
    // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return false;
    }
    // SAFETY: fd is new and ours.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    if start_time(pid) != Some(start) {
        return false;
    }
    // SAFETY: the pidfd (opened before the start-time check, so the check is about the
    // same process) and a signal number; no memory is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
}

fn cgroup_rel(paths: &Paths, name: &str) -> String {
    format!("{}/{name}.libvirt-lxc", paths.cgroup_parent)
}

/// How long a shutdown waits for init before killing the container
/// (`RVIRT_LXC_SHUTDOWN_TIMEOUT_MS`, default 30 s).
fn shutdown_timeout() -> Duration {
    std::env::var("RVIRT_LXC_SHUTDOWN_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_millis)
}

enum Watch {
    Pipe(BufReader<std::process::ChildStdout>),
    Socket(BufReader<std::os::unix::net::UnixStream>),
}

impl Watch {
    /// The controller's exit notice (`code=N`, `signal=N`), or `None` when it vanished.
    fn wait(self) -> Option<String> {
        let mut line = String::new();
        let r = match self {
            Watch::Pipe(mut r) => loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break None,
                    Ok(_) if line.starts_with("exit ") => break Some(line),
                    Ok(_) => {}
                }
            },
            Watch::Socket(mut r) => match r.read_line(&mut line) {
                Ok(n) if n > 0 => Some(line),
                _ => None,
            },
        };
        r.map(|l| l.trim().trim_start_matches("exit ").to_string())
    }
}

impl Driver {
    /// A new driver instance for `paths`: loads the definitions, reattaches to running
    /// containers and starts the autostart ones.
    pub fn load(
        paths: Paths,
        host: Option<rvirt_sdk::abi::HostServicesBox>,
    ) -> Result<&'static Driver> {
        for d in [&paths.config, &paths.run, &paths.log] {
            std::fs::create_dir_all(d).map_err(io("create", d))?;
        }
        let d: &'static Driver = Box::leak(Box::new(Driver {
            paths,
            doms: Mutex::new(Vec::new()),
            stopped: Condvar::new(),
            sinks: Mutex::new(Vec::new()),
            next: Mutex::new(1),
            host: Mutex::new(host.map(Arc::new)),
        }));
        let mut doms = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&d.paths.config) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "xml") {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&p) else {
                    continue;
                };
                match Domain::parse(&text) {
                    Ok(def) => {
                        let autostart = d.paths.autostart_file(def.name()).exists();
                        doms.push(Dom {
                            def,
                            persistent: true,
                            autostart,
                            run: None,
                            off: (state::SHUTOFF, reason::SHUTOFF_UNKNOWN),
                            starting: false,
                        });
                    }
                    Err(e) => eprintln!("lxc: skipping {}: {e}", p.display()),
                }
            }
        }
        *d.lock() = doms;
        d.reattach_all();
        let auto: Vec<uuid::Uuid> = d
            .lock()
            .iter()
            .filter(|x| x.autostart && x.run.is_none())
            .map(Dom::uuid)
            .collect();
        for u in auto {
            if let Err(e) = d.start(u, 0) {
                eprintln!("lxc: autostart of {u} failed: {e}");
            }
        }
        Ok(d)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Dom>> {
        self.doms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an event sink; returns its key.
    pub fn add_sink(&self, s: EventSinkBox) -> u64 {
        let mut n = self.next.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        let k = *n;
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((k, Arc::new(s)));
        k
    }

    /// Removes an event sink.
    pub fn remove_sink(&self, k: u64) {
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(x, _)| *x != k);
    }

    fn emit(&self, evs: Events) {
        let sinks: Vec<Arc<EventSinkBox>> = self
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, s)| s.clone())
            .collect();
        for (d, ev, det) in evs {
            for s in &sinks {
                s.domain_lifecycle(d.clone(), ev, det);
            }
        }
    }

    fn next_run_id(&self) -> u64 {
        let mut n = self.next.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        *n
    }

    fn find(doms: &[Dom], uuid: uuid::Uuid) -> Result<usize> {
        doms.iter().position(|d| d.uuid() == uuid).ok_or_else(|| {
            let mut e = no_domain(
                ErrorDomain::None,
                &format!("no domain with matching uuid '{uuid}'"),
            );
            e.domain = FROM_LXC;
            DriverError::Plugin(e)
        })
    }

    // ---- queries ----

    /// Domains passing libvirt's list `flags`.
    pub fn list(&self, flags: u32) -> Vec<DomainRef> {
        self.lock()
            .iter()
            .filter(|d| {
                filter::matches(
                    flags,
                    &DomainFacts {
                        state: d.state().0,
                        persistent: d.persistent,
                        autostart: d.autostart,
                        managed_save: false,
                        has_snapshot: false,
                    },
                )
            })
            .map(Dom::dref)
            .collect()
    }

    fn lookup(&self, f: impl Fn(&Dom) -> bool, what: String) -> Result<DomainRef> {
        self.lock()
            .iter()
            .find(|d| f(d))
            .map(Dom::dref)
            .ok_or_else(|| {
                let mut e = no_domain(ErrorDomain::None, &what);
                e.domain = FROM_LXC;
                DriverError::Plugin(e)
            })
    }

    /// By name.
    pub fn by_name(&self, name: &str) -> Result<DomainRef> {
        self.lookup(
            |d| d.name() == name,
            format!("no domain with matching name '{name}'"),
        )
    }

    /// By UUID.
    pub fn by_uuid(&self, u: uuid::Uuid) -> Result<DomainRef> {
        self.lookup(
            |d| d.uuid() == u,
            format!("no domain with matching uuid '{u}'"),
        )
    }

    /// By id (the init's pid).
    pub fn by_id(&self, id: i32) -> Result<DomainRef> {
        self.lookup(
            |d| d.run.as_ref().is_some_and(|r| r.status.init_pid == id),
            format!("no domain with matching id {id}"),
        )
    }

    fn with<T>(&self, u: uuid::Uuid, f: impl FnOnce(&Dom) -> Result<T>) -> Result<T> {
        let doms = self.lock();
        let i = Self::find(&doms, u)?;
        f(&doms[i])
    }

    /// State and reason.
    pub fn state(&self, u: uuid::Uuid) -> Result<(i32, i32)> {
        self.with(u, |d| Ok(d.state()))
    }

    /// `virDomainGetInfo`, memory and CPU time from the cgroup's accounting.
    pub fn info(&self, u: uuid::Uuid) -> Result<DomainInfo> {
        let (st, max, vcpus, cg) = self.with(u, |d| {
            Ok((
                d.state().0,
                d.def.memory_kib(),
                d.def.current_vcpus().max(1),
                d.run.as_ref().map(|r| r.status.cgroup.clone()),
            ))
        })?;
        let (mem, cpu) = match cg.and_then(|c| Cgroup::at(&c).ok()) {
            Some(c) => (c.memory_bytes() / 1024, c.cpu_ns()),
            None => (max, 0),
        };
        Ok(DomainInfo {
            state: st,
            max_mem_kib: max,
            memory_kib: mem,
            nr_virt_cpu: vcpus,
            cpu_time_ns: cpu,
        })
    }

    /// The domain's XML (live unless `inactive` or shut off).
    pub fn xml(&self, u: uuid::Uuid, inactive: bool, secure: bool) -> Result<String> {
        self.with(u, |d| {
            let opts = FormatOptions { inactive, secure };
            Ok(match (&d.run, inactive) {
                (Some(r), false) => r.live.to_xml(&opts),
                _ => d.def.to_xml(&opts),
            })
        })
    }

    /// Persistent.
    pub fn is_persistent(&self, u: uuid::Uuid) -> Result<bool> {
        self.with(u, |d| Ok(d.persistent))
    }

    /// Autostart.
    pub fn get_autostart(&self, u: uuid::Uuid) -> Result<bool> {
        self.with(u, |d| Ok(d.autostart))
    }

    /// vCPUs.
    pub fn vcpus(&self, u: uuid::Uuid) -> Result<i32> {
        self.with(u, |d| Ok(d.def.current_vcpus().max(1) as i32))
    }

    /// The cgroup of a running container.
    pub fn cgroup(&self, u: uuid::Uuid) -> Result<Option<Cgroup>> {
        let rel = self.with(u, |d| Ok(d.run.as_ref().map(|r| r.status.cgroup.clone())))?;
        Ok(match rel {
            Some(r) => Some(Cgroup::at(&r)?),
            None => None,
        })
    }

    /// The status of a running container.
    pub fn status(&self, u: uuid::Uuid) -> Result<Option<Status>> {
        self.with(u, |d| Ok(d.run.as_ref().map(|r| r.status.clone())))
    }

    // ---- definitions ----

    fn parse(xml: &str) -> Result<Domain> {
        let d = Domain::parse(xml).map_err(DriverError::Xml)?;
        def::check(&d)?;
        Ok(d)
    }

    /// Checks `def` against the others: a name or UUID in use by another domain.
    fn conflict(doms: &[Dom], def: &Domain) -> Result<Option<usize>> {
        for (i, d) in doms.iter().enumerate() {
            if d.uuid() == def.uuid() {
                if d.name() != def.name() {
                    return Err(lxc_err(
                        ErrorCode::OperationFailed,
                        format!(
                            "operation failed: domain '{}' is already defined with uuid {}",
                            d.name(),
                            d.uuid()
                        ),
                    ));
                }
                return Ok(Some(i));
            }
            if d.name() == def.name() {
                return Err(lxc_err(
                    ErrorCode::OperationFailed,
                    format!(
                        "operation failed: domain '{}' already exists with uuid {}",
                        d.name(),
                        d.uuid()
                    ),
                ));
            }
        }
        Ok(None)
    }

    /// `virDomainDefineXML`.
    pub fn define(&self, xml: &str) -> Result<DomainRef> {
        let def = Self::parse(xml)?;
        let mut doms = self.lock();
        let existing = Self::conflict(&doms, &def)?;
        let text = def.to_xml(&FormatOptions {
            inactive: true,
            secure: true,
        });
        atomic_write(&self.paths.config_file(def.name()), text.as_bytes())?;
        let (r, det) = match existing {
            Some(i) => {
                let d = &mut doms[i];
                d.def = def;
                d.persistent = true;
                (d.dref(), detail::DEFINED_UPDATED)
            }
            None => {
                let d = Dom {
                    def,
                    persistent: true,
                    autostart: false,
                    run: None,
                    off: (state::SHUTOFF, reason::SHUTOFF_UNKNOWN),
                    starting: false,
                };
                let r = d.dref();
                doms.push(d);
                (r, detail::DEFINED_ADDED)
            }
        };
        drop(doms);
        self.emit(vec![(r.clone(), event::DEFINED, det)]);
        Ok(r)
    }

    /// `virDomainUndefine`: a running domain becomes transient.
    pub fn undefine(&self, u: uuid::Uuid) -> Result<()> {
        let mut doms = self.lock();
        let i = Self::find(&doms, u)?;
        if !doms[i].persistent {
            return Err(invalid("cannot undefine transient domain"));
        }
        let name = doms[i].name().to_string();
        for p in [
            self.paths.config_file(&name),
            self.paths.autostart_file(&name),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &p)(e)),
            }
        }
        let r = doms[i].dref();
        if doms[i].run.is_some() {
            doms[i].persistent = false;
            doms[i].autostart = false;
        } else {
            doms.remove(i);
        }
        drop(doms);
        self.emit(vec![(r, event::UNDEFINED, detail::UNDEFINED_REMOVED)]);
        Ok(())
    }

    /// `virDomainSetAutostart`.
    pub fn set_autostart(&self, u: uuid::Uuid, on: bool) -> Result<()> {
        let mut doms = self.lock();
        let i = Self::find(&doms, u)?;
        if !doms[i].persistent {
            return Err(invalid("cannot set autostart for transient domain"));
        }
        let name = doms[i].name().to_string();
        let link = self.paths.autostart_file(&name);
        if on {
            if let Some(p) = link.parent() {
                std::fs::create_dir_all(p).map_err(io("create", p))?;
            }
            if !link.exists() {
                std::os::unix::fs::symlink(self.paths.config_file(&name), &link)
                    .map_err(io("create", &link))?;
            }
        } else {
            match std::fs::remove_file(&link) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &link)(e)),
            }
        }
        doms[i].autostart = on;
        Ok(())
    }

    // ---- lifecycle ----

    /// `virDomainCreateXML`: a transient container, started.
    pub fn create_transient(&'static self, xml: &str, paused: bool) -> Result<DomainRef> {
        let def = Self::parse(xml)?;
        let u = def.uuid();
        {
            let mut doms = self.lock();
            if let Some(i) = Self::conflict(&doms, &def)? {
                if doms[i].run.is_some() {
                    return Err(invalid("domain is already active"));
                }
                return Err(lxc_err(
                    ErrorCode::OperationFailed,
                    format!(
                        "operation failed: domain '{}' already exists with uuid {u}",
                        def.name()
                    ),
                ));
            }
            doms.push(Dom {
                def,
                persistent: false,
                autostart: false,
                run: None,
                off: (state::SHUTOFF, reason::SHUTOFF_UNKNOWN),
                starting: false,
            });
        }
        match self.start(u, u32::from(paused)) {
            Ok(r) => Ok(r),
            Err(e) => {
                let mut doms = self.lock();
                doms.retain(|d| d.uuid() != u || d.persistent || d.run.is_some());
                Err(e)
            }
        }
    }

    /// `virDomainCreateWithFlags`: runs the container (`paused`: frozen once started).
    pub fn start(&'static self, u: uuid::Uuid, paused: u32) -> Result<DomainRef> {
        let (def, name) = {
            let mut doms = self.lock();
            let i = Self::find(&doms, u)?;
            let d = &mut doms[i];
            if d.run.is_some() || d.starting {
                return Err(invalid("domain is already running"));
            }
            d.starting = true;
            (d.def.clone(), d.name().to_string())
        };
        let r = self.launch(&def, &name);
        let mut doms = self.lock();
        let Ok(i) = Self::find(&doms, u) else {
            return Err(invalid("domain vanished while starting"));
        };
        doms[i].starting = false;
        let (run, watch) = match r {
            Ok(x) => x,
            Err(e) => {
                doms[i].off = (state::SHUTOFF, reason::SHUTOFF_FAILED);
                return Err(e);
            }
        };
        let run_id = run.run_id;
        doms[i].run = Some(run);
        let mut evs = vec![(doms[i].dref(), event::STARTED, detail::STARTED_BOOTED)];
        if paused != 0 {
            if let Some(r) = doms[i].run.as_mut()
                && Cgroup::at(&r.status.cgroup).is_ok_and(|c| c.freeze(true).is_ok())
            {
                r.status.paused = true;
            }
            evs.push((doms[i].dref(), event::SUSPENDED, detail::SUSPENDED_PAUSED));
        }
        let persistent = doms[i].persistent;
        if let Some(r) = doms[i].run.as_mut() {
            r.status.persistent = persistent;
            let _ = self.write_status(&r.status);
        }
        let dref = doms[i].dref();
        drop(doms);
        self.watch(u, run_id, watch);
        self.emit(evs);
        Ok(dref)
    }

    /// Lends the driver the host's services (network ports).
    pub fn set_host(&self, h: rvirt_sdk::abi::HostServicesBox) {
        *self.host.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(h));
    }

    /// Plugs a port of each `type='network'` veth's network and fills in its bridge;
    /// returns `(interface index, network, port UUID, bridge)` of each, or releases what
    /// it plugged and says why not.
    fn plug_ports(
        &self,
        d: &Domain,
        spec: &mut def::Spec,
    ) -> Result<Vec<(usize, String, String, String)>> {
        use rvirt_sdk::abi::abi_stable::std_types::{RResult, RStr};
        let mut done: Vec<(usize, String, String, String)> = Vec::new();
        for (i, v) in spec.veths.iter_mut().enumerate() {
            let Some(net) = v.network.clone() else {
                continue;
            };
            let host = self.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let fail = |done: &[(usize, String, String, String)], why: String| {
                self.release_ports(done.iter().map(|(_, n, p, _)| (n.as_str(), p.as_str())));
                DriverError::Launch {
                    name: d.name().to_string(),
                    reason: format!("domain/devices/interface[{}]: {why}", i + 1),
                }
            };
            let Some(host) = host else {
                return Err(fail(
                    &done,
                    format!("network '{net}' cannot be joined: the host lent no network services"),
                ));
            };
            let portid = uuid::Uuid::new_v4().to_string();
            let mut owner = rvirt_xml::Element::new("owner");
            owner.push(rvirt_xml::Element::new("name").with_text(d.name()));
            owner.push(rvirt_xml::Element::new("uuid").with_text(&d.uuid().to_string()));
            let mut port = rvirt_xml::Element::new("networkport");
            port.push(rvirt_xml::Element::new("uuid").with_text(&portid));
            port.push(owner);
            port.push(
                rvirt_xml::Element::new("mac").with_attr("address", v.mac.as_deref().unwrap_or("")),
            );
            let answer = match host
                .network_port_create(RStr::from_str(&net), RStr::from_str(&port.to_xml_string()))
            {
                RResult::ROk(x) => x.into_string(),
                RResult::RErr(e) => {
                    return Err(fail(&done, format!("network '{net}': {}", e.message)));
                }
            };
            let bridge = rvirt_xml::Element::parse(&answer).ok().and_then(|e| {
                e.child("plug")
                    .and_then(|p| p.attr("bridge"))
                    .map(str::to_string)
            });
            let Some(bridge) = bridge else {
                let _ = host.network_port_delete(RStr::from_str(&net), RStr::from_str(&portid));
                return Err(fail(
                    &done,
                    format!("network '{net}' plugged the port on no bridge"),
                ));
            };
            v.bridge = Some(bridge.clone());
            done.push((i, net, portid, bridge));
        }
        Ok(done)
    }

    /// Gives network ports back (best effort: the container is gone either way).
    fn release_ports<'a>(&self, ports: impl Iterator<Item = (&'a str, &'a str)>) {
        use rvirt_sdk::abi::abi_stable::std_types::{RResult, RStr};
        let host = self.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(host) = host else { return };
        for (net, portid) in ports {
            if let RResult::RErr(e) =
                host.network_port_delete(RStr::from_str(net), RStr::from_str(portid))
            {
                host.log(
                    rvirt_sdk::abi::log_level::WARN,
                    RStr::from_str(&format!(
                        "cannot release port {portid} of network '{net}': {}",
                        e.message
                    )),
                );
            }
        }
    }

    fn write_status(&self, s: &Status) -> Result<()> {
        let text = serde_json::to_vec_pretty(s).unwrap_or_default();
        atomic_write(&self.paths.status_file(&s.name), &text)?;
        Ok(())
    }

    fn launch(&self, d: &Domain, name: &str) -> Result<(Run, Watch)> {
        let mut spec = def::spec(d, cgroup_rel(&self.paths, name), &self.paths)?;
        let ports = self.plug_ports(d, &mut spec)?;
        let r = self.launch_spec(d, name, spec, &ports);
        if r.is_err() {
            self.release_ports(ports.iter().map(|(_, n, p, _)| (n.as_str(), p.as_str())));
        }
        r
    }

    fn launch_spec(
        &self,
        d: &Domain,
        name: &str,
        spec: def::Spec,
        ports: &[(usize, String, String, String)],
    ) -> Result<(Run, Watch)> {
        let ctl = controller_path()?;
        // A group left by a container that ended while no driver watched it.
        let cg = Cgroup::at(&spec.cgroup)?;
        if cg.exists() {
            cg.remove(Duration::from_secs(2))?;
        }
        let spec_file = self.paths.spec_file(name);
        atomic_write(
            &spec_file,
            serde_json::to_string_pretty(&spec)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        let log_path = self.paths.log_file(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("open", &log_path))?;
        let mut cmd = std::process::Command::new(&ctl);
        cmd.arg(&spec_file)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log);
        // the controller holds the host side of the consoles: it vouches for them
        rvirt_sdk::console::tag_command(&mut cmd, crate::DRIVER_NAME, &d.uuid());
        // (no pre-exec hook: the controller makes its own session, and the spawn stays a
        // posix_spawn, cheap even from a large multi-threaded daemon)
        let mut child = cmd.spawn().map_err(io("run", &ctl))?;
        let controller_pid = child.id() as i32;
        let stdout = child.stdout.take();
        // The controller outlives this driver when it must; while it lives here, a
        // thread reaps it.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let Some(stdout) = stdout else {
            return Err(DriverError::Launch {
                name: name.into(),
                reason: "no pipe to the controller".into(),
            });
        };
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let line = line.trim().to_string();
        let Some(rest) = line.strip_prefix("ready ") else {
            let _ = std::fs::remove_file(&spec_file);
            let reason = line
                .strip_prefix("error ")
                .map(str::to_string)
                .unwrap_or_else(|| {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(3).collect();
                    format!(
                        "the controller ended without a report{}",
                        if tail.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", tail.into_iter().rev().collect::<Vec<_>>().join(" "))
                        }
                    )
                });
            return Err(DriverError::Launch {
                name: name.into(),
                reason,
            });
        };
        let mut it = rest.split_whitespace();
        let init_pid: i32 = it.next().and_then(|p| p.parse().ok()).unwrap_or(-1);
        let ptys: Vec<String> = it.map(str::to_string).collect();
        let init_start = start_time(init_pid).unwrap_or(0);
        let mut live = d.clone();
        live.set_id(Some(init_pid));
        annotate_consoles(&mut live, &ptys);
        annotate_ports(&mut live, ports);
        let status = Status {
            format: STATUS_FORMAT,
            name: name.into(),
            uuid: d.uuid().to_string(),
            init_pid,
            init_start,
            controller_pid,
            ptys,
            cgroup: spec.cgroup.clone(),
            xml: live.to_xml(&FormatOptions {
                inactive: false,
                secure: true,
            }),
            persistent: true,
            paused: false,
        };
        self.write_status(&status)?;
        Ok((
            Run {
                status,
                live,
                stopping: None,
                run_id: self.next_run_id(),
            },
            Watch::Pipe(r),
        ))
    }

    fn watch(&'static self, u: uuid::Uuid, run_id: u64, w: Watch) {
        std::thread::spawn(move || {
            let st = w.wait();
            self.ended(u, run_id, st);
        });
    }

    /// The container of run `run_id` has ended (`st`: the controller's exit notice).
    fn ended(&self, u: uuid::Uuid, run_id: u64, st: Option<String>) {
        let mut doms = self.lock();
        let Ok(i) = Self::find(&doms, u) else {
            return;
        };
        let Some(run) = doms[i].run.take_if(|r| r.run_id == run_id) else {
            return;
        };
        // Whatever the controller could not clean (it may have been killed).
        if let Ok(cg) = Cgroup::at(&run.status.cgroup) {
            let _ = cg.remove(Duration::from_secs(5));
        }
        let ports = live_ports(&run.live);
        self.release_ports(ports.iter().map(|(n, p)| (n.as_str(), p.as_str())));
        let name = run.status.name.clone();
        for p in [
            self.paths.status_file(&name),
            self.paths.socket(&name),
            self.paths.spec_file(&name),
        ] {
            let _ = std::fs::remove_file(p);
        }
        let (off, det) = match (run.stopping, st.as_deref()) {
            (Some(Stop::Destroy), _) => (reason::SHUTOFF_DESTROYED, detail::STOPPED_DESTROYED),
            (Some(Stop::Shutdown | Stop::Reboot), _) => {
                (reason::SHUTOFF_SHUTDOWN, detail::STOPPED_SHUTDOWN)
            }
            (None, Some(s)) if s.starts_with("code=") => {
                (reason::SHUTOFF_SHUTDOWN, detail::STOPPED_SHUTDOWN)
            }
            (None, Some(_)) => (reason::SHUTOFF_CRASHED, detail::STOPPED_CRASHED),
            (None, None) => (reason::SHUTOFF_UNKNOWN, detail::STOPPED_FAILED),
        };
        doms[i].off = (state::SHUTOFF, off);
        let r = doms[i].dref();
        if !doms[i].persistent && run.stopping != Some(Stop::Reboot) {
            doms.remove(i);
        }
        drop(doms);
        self.stopped.notify_all();
        self.emit(vec![(r, event::STOPPED, det)]);
    }

    fn running(&self, u: uuid::Uuid) -> Result<(i32, u64, u64, String)> {
        self.with(u, |d| match &d.run {
            Some(r) => Ok((
                r.status.init_pid,
                r.status.init_start,
                r.run_id,
                r.status.cgroup.clone(),
            )),
            None => Err(invalid("domain is not running")),
        })
    }

    fn mark(&self, u: uuid::Uuid, s: Stop) {
        let mut doms = self.lock();
        if let Ok(i) = Self::find(&doms, u)
            && let Some(r) = doms[i].run.as_mut()
        {
            r.stopping = Some(s);
        }
    }

    fn wait_stopped(&self, u: uuid::Uuid, run_id: u64, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut doms = self.lock();
        loop {
            let up = Self::find(&doms, u)
                .ok()
                .and_then(|i| doms[i].run.as_ref())
                .is_some_and(|r| r.run_id == run_id);
            if !up {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            doms = self
                .stopped
                .wait_timeout(doms, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// `virDomainDestroy`: SIGKILL to init (the kernel then kills the whole pid
    /// namespace); returns once the controller has cleaned up.
    pub fn destroy(&self, u: uuid::Uuid) -> Result<()> {
        let (pid, start, run_id, cg) = self.running(u)?;
        self.mark(u, Stop::Destroy);
        // A frozen init cannot die until thawed.
        if let Ok(c) = Cgroup::at(&cg)
            && c.is_frozen()
        {
            let _ = c.freeze(false);
        }
        signal(pid, start, libc::SIGKILL);
        if !self.wait_stopped(u, run_id, Duration::from_secs(10)) {
            return Err(lxc_err(
                ErrorCode::OperationFailed,
                "operation failed: the container did not stop within 10 s of SIGKILL".into(),
            ));
        }
        Ok(())
    }

    /// `virDomainShutdown`: SIGTERM to init; if the container is still up after the
    /// shutdown timeout, it is killed.
    pub fn shutdown(&'static self, u: uuid::Uuid) -> Result<()> {
        let (pid, start, run_id, _) = self.running(u)?;
        if self.state(u)?.0 == state::PAUSED {
            return Err(invalid("domain is paused"));
        }
        self.mark(u, Stop::Shutdown);
        if !signal(pid, start, libc::SIGTERM) {
            return Err(lxc_err(
                ErrorCode::OperationFailed,
                format!("operation failed: cannot signal the container's init (pid {pid})"),
            ));
        }
        let t = shutdown_timeout();
        std::thread::spawn(move || {
            if !self.wait_stopped(u, run_id, t) {
                signal(pid, start, libc::SIGKILL);
            }
        });
        Ok(())
    }

    /// `virDomainReboot`: the container is killed and started again from its definition.
    pub fn reboot(&'static self, u: uuid::Uuid) -> Result<()> {
        let (pid, start, run_id, _) = self.running(u)?;
        self.mark(u, Stop::Reboot);
        signal(pid, start, libc::SIGKILL);
        if !self.wait_stopped(u, run_id, Duration::from_secs(10)) {
            return Err(lxc_err(
                ErrorCode::OperationFailed,
                "operation failed: the container did not stop for its reboot".into(),
            ));
        }
        self.start(u, 0).map(|_| ())
    }

    /// `virDomainSuspend` (freezer).
    pub fn suspend(&self, u: uuid::Uuid) -> Result<()> {
        self.freeze(u, true)
    }

    /// `virDomainResume`.
    pub fn resume(&self, u: uuid::Uuid) -> Result<()> {
        self.freeze(u, false)
    }

    fn freeze(&self, u: uuid::Uuid, on: bool) -> Result<()> {
        let mut doms = self.lock();
        let i = Self::find(&doms, u)?;
        let Some(r) = doms[i].run.as_mut() else {
            return Err(invalid("domain is not running"));
        };
        if r.status.paused == on {
            return Err(invalid(if on {
                "domain is already paused"
            } else {
                "domain is not paused"
            }));
        }
        let cg = Cgroup::at(&r.status.cgroup)?;
        cg.freeze(on)?;
        // FREEZING -> FROZEN can take a moment.
        let end = Instant::now() + Duration::from_secs(5);
        while on && !cg.is_frozen() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        r.status.paused = on;
        let s = r.status.clone();
        let dref = doms[i].dref();
        drop(doms);
        self.write_status(&s)?;
        self.emit(vec![if on {
            (dref, event::SUSPENDED, detail::SUSPENDED_PAUSED)
        } else {
            (dref, event::RESUMED, detail::RESUMED_UNPAUSED)
        }]);
        Ok(())
    }

    // ---- reattachment ----

    fn reattach_all(&'static self) {
        let Ok(rd) = std::fs::read_dir(&self.paths.run) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let is_status = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.ends_with(".json") && !n.ends_with(".spec.json") && !n.starts_with('.')
            });
            if !is_status {
                continue;
            }
            if let Err(e) = self.reattach(&p) {
                eprintln!("lxc: not reattaching {}: {e}", p.display());
            }
        }
    }

    fn reattach(&'static self, p: &Path) -> Result<()> {
        let text = std::fs::read_to_string(p).map_err(io("read", p))?;
        let st: Status = serde_json::from_str(&text).map_err(|e| {
            lxc_err(
                ErrorCode::InternalError,
                format!("invalid status file: {e}"),
            )
        })?;
        if st.format != STATUS_FORMAT {
            return Err(lxc_err(
                ErrorCode::InternalError,
                format!(
                    "status file format {} (this driver reads {STATUS_FORMAT})",
                    st.format
                ),
            ));
        }
        let cleanup = |why: &str| -> Result<()> {
            if let Ok(cg) = Cgroup::at(&st.cgroup) {
                let _ = cg.remove(Duration::from_secs(5));
            }
            for f in [
                self.paths.status_file(&st.name),
                self.paths.socket(&st.name),
                self.paths.spec_file(&st.name),
            ] {
                let _ = std::fs::remove_file(f);
            }
            Err(lxc_err(
                ErrorCode::OperationFailed,
                format!("container '{}' is gone: {why}", st.name),
            ))
        };
        let spec = self.paths.spec_file(&st.name);
        let cmdline =
            std::fs::read(format!("/proc/{}/cmdline", st.controller_pid)).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmdline);
        if !cmd.contains("rvirt-lxc-controller") || !cmd.contains(&*spec.to_string_lossy()) {
            return cleanup("its controller is not running");
        }
        if start_time(st.init_pid) != Some(st.init_start) {
            return cleanup("its init is not running");
        }
        let sock = match std::os::unix::net::UnixStream::connect(self.paths.socket(&st.name)) {
            Ok(s) => s,
            Err(_) => return cleanup("its controller's socket does not answer"),
        };
        let mut w = sock
            .try_clone()
            .map_err(io("use", &self.paths.socket(&st.name)))?;
        w.write_all(b"m\n")
            .map_err(io("write", &self.paths.socket(&st.name)))?;
        let live = Domain::parse(&st.xml).map_err(DriverError::Xml)?;
        let u = live.uuid();
        let run_id = self.next_run_id();
        {
            let mut doms = self.lock();
            let run = Run {
                status: st.clone(),
                live: live.clone(),
                stopping: None,
                run_id,
            };
            match doms.iter_mut().find(|d| d.uuid() == u) {
                Some(d) => d.run = Some(run),
                None => {
                    let mut def = live;
                    def.set_id(None);
                    doms.push(Dom {
                        def,
                        persistent: false,
                        autostart: false,
                        run: Some(run),
                        off: (state::SHUTOFF, reason::SHUTOFF_UNKNOWN),
                        starting: false,
                    });
                }
            }
        }
        self.watch(u, run_id, Watch::Socket(BufReader::new(sock)));
        Ok(())
    }
}

/// Shows each plugged network port in its live `<interface type='network'>`:
/// `<source network portid bridge>`, as libvirt does.
fn annotate_ports(d: &mut Domain, ports: &[(usize, String, String, String)]) {
    let Some(devs) = d.element_mut().child_mut("devices") else {
        return;
    };
    for (i, ifc) in devs.children_named_mut("interface").enumerate() {
        let Some((_, _, portid, bridge)) = ports.iter().find(|(k, ..)| *k == i) else {
            continue;
        };
        let src = ifc.child_or_insert("source");
        src.set_attr("portid", portid);
        src.set_attr("bridge", bridge);
    }
}

/// The `(network, port UUID)` of each plugged port a live definition shows.
fn live_ports(d: &Domain) -> Vec<(String, String)> {
    d.devices_of("interface")
        .filter(|i| i.attr("type") == Some("network"))
        .filter_map(|i| {
            let s = i.child("source")?;
            Some((
                s.attr("network")?.to_string(),
                s.attr("portid")?.to_string(),
            ))
        })
        .collect()
}

/// Adds the pty paths to the live `<console>`s (`tty=` and `<source path=>`), and the
/// aliases libvirt gives them.
fn annotate_consoles(d: &mut Domain, ptys: &[String]) {
    let Some(devs) = d.element_mut().child_mut("devices") else {
        return;
    };
    for (i, c) in devs.children_named_mut("console").enumerate() {
        let Some(p) = ptys.get(i) else { break };
        c.set_attr("tty", p);
        if c.child("source").is_none() {
            let src = rvirt_xml::Element::new("source").with_attr("path", p);
            let at = c
                .nodes()
                .iter()
                .position(|n| matches!(n, rvirt_xml::Node::Element(e) if e.name() == "target"))
                .unwrap_or(0);
            c.nodes_mut().insert(at, rvirt_xml::Node::Element(src));
        }
        if c.child("alias").is_none() {
            c.push(rvirt_xml::Element::new("alias").with_attr("name", &format!("console{i}")));
        }
    }
}

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
//!
//! Layout: this module holds the errors, the [`Driver`] of a root with its event sinks
//! and the read-only queries; [`domains`] the domain table and its files, [`job`] jobs
//! and locks, [`process`] QEMU processes, status file checks, reattachment and
//! supervision, [`monitor`] QMP events, [`resources`] TAPs, network ports, secrets and
//! volumes, [`lifecycle`] the state-changing calls, [`snapshot`] internal snapshots,
//! [`hotplug`] disk and NIC attach/detach, [`vcpus`] vCPU hot-plug.

use crate::command;
use crate::paths::Paths;
use rvirt_sdk::{
    abi::{
        DomainInfo, DomainRef, ErrorCode, ErrorDomain, EventSinkBox, HostServicesBox, PluginError,
    },
    filter::{self, DomainFacts},
    util::no_domain,
};
use rvirt_xml::FormatOptions;
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock},
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
    pub const RUNNING_RESTORED: i32 = 3;
    pub const RUNNING_UNPAUSED: i32 = 5;
    pub const RUNNING_MIGRATED: i32 = 2;
    pub const RUNNING_MIGRATION_CANCELED: i32 = 6;
    pub const PAUSED_MIGRATION: i32 = 2;
    pub const PAUSED_UNKNOWN: i32 = 0;
    pub const PAUSED_USER: i32 = 1;
    pub const PAUSED_SHUTTING_DOWN: i32 = 8;
    pub const SHUTOFF_UNKNOWN: i32 = 0;
    pub const SHUTOFF_SHUTDOWN: i32 = 1;
    pub const SHUTOFF_DESTROYED: i32 = 2;
    pub const SHUTOFF_CRASHED: i32 = 3;
    pub const SHUTOFF_SAVED: i32 = 5;
    pub const SHUTOFF_MIGRATED: i32 = 4;
    pub const SHUTOFF_FAILED: i32 = 6;
    pub const CRASHED_PANICKED: i32 = 1;
}

/// Event details.
mod detail {
    pub const DEFINED_ADDED: i32 = 0;
    pub const DEFINED_UPDATED: i32 = 1;
    pub const STARTED_BOOTED: i32 = 0;
    pub const STARTED_RESTORED: i32 = 2;
    pub const STARTED_MIGRATED: i32 = 1;
    pub const RESUMED_MIGRATED: i32 = 1;
    pub const STOPPED_MIGRATED: i32 = 3;
    pub const SUSPENDED_RESTORED: i32 = 5;
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

mod domains;
mod hotplug;
mod job;
mod lifecycle;
pub mod migrate;
mod monitor;
mod process;
mod resources;
mod save;
pub mod snapshot;
mod stats;
mod tuning;
mod vcpus;

use domains::{Dom, Emit, State, mkdir_private};
use process::proc_cpu_ns;

/// The driver of one root.
pub struct Driver {
    /// Directories and URI.
    pub paths: Paths,
    state: Mutex<State>,
    exited: Condvar,
    /// Signalled when a job ends.
    job_done: Condvar,
    sinks: Mutex<Vec<(u64, Arc<EventSinkBox>)>>,
    /// Held from deciding a guest shutdown or a QEMU exit until its event is emitted, so
    /// that `Shutdown` (QMP's SHUTDOWN, on the monitor thread) always comes before the
    /// `Stopped` of the exit that follows it (on the exit waiter's thread). Taken before
    /// `state`, never while holding it.
    emit_order: Mutex<()>,
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
        emit_order: Mutex::new(()),
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

    /// The connections' event sinks as they are now (the lock is not held while they run).
    fn sinks_now(&self) -> Vec<Arc<EventSinkBox>> {
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn emit(&self, events: Emit) {
        if events.is_empty() {
            return;
        }
        let sinks = self.sinks_now();
        for (d, ev, det) in events {
            for s in &sinks {
                s.domain_lifecycle(d.clone(), ev, det);
            }
        }
    }

    /// Tells the subscribers that the guest released device `alias` (libvirt's
    /// `VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED`), once it is gone from the live definition.
    fn emit_device_removed(&self, d: DomainRef, alias: &str) {
        for s in &self.sinks_now() {
            s.domain_device_removed(d.clone(), alias.into());
        }
    }

    /// The order lock of lifecycle events that race across threads (see `emit_order`).
    fn order(&self) -> MutexGuard<'_, ()> {
        self.emit_order.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- queries ----

    /// Domains matching the list flags.
    pub fn list(&self, flags: u32) -> Vec<DomainRef> {
        let st = self.lock();
        st.doms
            .iter()
            .filter(|(uuid, d)| {
                filter::matches(
                    flags,
                    &DomainFacts {
                        state: d.state,
                        persistent: d.persistent,
                        autostart: d.autostart,
                        managed_save: self.paths.managed_save_file(d.def.name()).exists(),
                        has_snapshot: Self::snapshot_count(&st, uuid) > 0,
                    },
                )
            })
            .map(|(_, d)| d.reference())
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
            // the running domain's own unless CONFIG asks for the definition
            let def = match &d.run {
                Some(run) if flags & 2 == 0 => &run.live,
                _ => &d.def,
            };
            let n = if flags & 4 != 0 {
                def.max_vcpus()
            } else {
                def.current_vcpus()
            };
            i32::try_from(n).unwrap_or(i32::MAX)
        })
    }

    /// `<os><type>`.
    pub fn os_type(&self, uuid: uuid::Uuid) -> std::result::Result<String, PluginError> {
        self.with_dom(uuid, |d| d.def.os_type().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::domains::{Durability, stale_temp_owner, write_file};
    use super::job::FileLock;
    use super::monitor::fill_pty_paths;
    use super::process::{holds_listener, proc_start_time, proc_uids};
    use super::*;
    use rvirt_xml::Domain;
    use serde_json::json;
    use std::os::unix::net::UnixListener;
    use std::time::{Duration, Instant};

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

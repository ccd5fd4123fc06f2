//! Jobs: one state change at a time per domain. In this process a job slot per domain
//! (`State::jobs`), across the processes of a root an exclusive `flock` on
//! `run/NAME.lock` ([`FileLock`]), held for the whole job; domain ids are chosen under
//! `run/ids.lock`. Also the timeouts of waits for jobs and monitors.
//!
//! Architecture invariant: the driver lock is never held while waiting for a job.

use super::domains::Status;
use super::{Driver, DriverError, Result, io, perr};
use rvirt_sdk::abi::{ErrorCode, ErrorDomain, PluginError};
use rvirt_sdk::util::no_domain;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(super) fn env_ms(var: &str, default: Duration) -> Duration {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(default, Duration::from_millis)
}

/// How long a state change waits for the job of another one on the same domain
/// (`RVIRT_QEMU_JOB_TIMEOUT_MS`, default 30 s, as libvirt's job wait).
pub(super) fn job_timeout() -> Duration {
    env_ms("RVIRT_QEMU_JOB_TIMEOUT_MS", Duration::from_secs(30))
}

/// How long a start waits for QEMU's monitor greeting (`RVIRT_QEMU_MONITOR_TIMEOUT_MS`,
/// default 60 s).
pub(super) fn monitor_timeout() -> Duration {
    env_ms("RVIRT_QEMU_MONITOR_TIMEOUT_MS", Duration::from_secs(60))
}

pub(super) fn job_timeout_error(name: &str) -> DriverError {
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
pub(super) struct FileLock {
    path: PathBuf,
    _file: File,
}

impl FileLock {
    /// Waits until `deadline` for the lock; `None` when it passed.
    pub(super) fn acquire(path: &Path, deadline: Instant) -> Result<Option<FileLock>> {
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
pub(super) struct Job<'a> {
    pub(super) driver: &'a Driver,
    pub(super) uuid: uuid::Uuid,
    pub(super) name: String,
    pub(super) lock: Option<FileLock>,
}

impl Drop for Job<'_> {
    fn drop(&mut self) {
        drop(self.lock.take());
        self.driver.lock().jobs.remove(&self.uuid);
        self.driver.job_done.notify_all();
    }
}

impl Driver {
    // ---- jobs ----

    /// Begins a state-change job on `uuid` (named `name`, or as the driver knows it):
    /// waits for a job of this process on it, then for the domain's lock file, together
    /// at most [`job_timeout`].
    pub(super) fn begin_job(&self, uuid: uuid::Uuid, name: Option<&str>) -> Result<Job<'_>> {
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
    pub(super) fn sync_from_disk(&'static self, job: &Job<'_>) {
        let known = self
            .lock()
            .doms
            .get(&job.uuid)
            .is_some_and(|d| d.run.is_some());
        if !known && self.paths.status_file(&job.name).exists() {
            self.reattach(&job.name, true);
        }
    }

    /// The next free domain id: above every id of a running domain of this process and of
    /// every status file. The caller holds `run/ids.lock` until its status file exists.
    pub(super) fn next_id(&self) -> i32 {
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
}

//! The in-memory domain table ([`State`]: definitions, run state of each domain) and
//! what persists of it: definitions in `config/NAME.xml` (written durably), autostart
//! links, the versioned status file of each running domain in `run/NAME.status` and
//! the record of why a domain last stopped. Loading a root reads them back.
//!
//! Architecture invariant: every state file is replaced whole, never written in place
//! ([`write_file`]: a temporary file renamed over it; the stop record: a symlink renamed
//! over it); the formats here are what other processes of the same root, older or
//! newer, read.

use super::job::{FileLock, job_timeout};
use super::{Driver, DriverError, Result, detail, io, perr, reason};
use crate::command;
use rvirt_qmp::Qmp;
use rvirt_sdk::abi::{DomainRef, ErrorCode, ErrorDomain, PluginError, event, state};
use rvirt_sdk::util::{no_domain, operation_invalid, to_abi_uuid};
use rvirt_xml::{Domain, FormatOptions};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The status file format version.
pub(super) const STATUS_VERSION: u32 = 1;

/// What a running domain leaves in `run/NAME.status` (written atomically).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Status {
    pub(super) version: u32,
    pub(super) pid: i32,
    /// Field 22 of `/proc/PID/stat`: tells a reused pid from ours.
    pub(super) start_time: u64,
    pub(super) id: i32,
    pub(super) monitor: PathBuf,
    pub(super) state: i32,
    pub(super) reason: i32,
    pub(super) persistent: bool,
    /// The live XML.
    pub(super) live: String,
    /// The definition to return to when the domain stops (transient domains).
    pub(super) def: String,
    pub(super) overlays: Vec<PathBuf>,
    /// The guest has shut down (QEMU is kept only until the driver ends it): a later
    /// process that finds QEMU gone reports the domain shut off (shutdown), not crashed.
    #[serde(default)]
    pub(super) shutdown: bool,
    /// The storage volumes of its `<disk type='volume'>` disks as they were resolved at
    /// start (path, format): what QEMU opened, while the live XML shows pool and volume.
    #[serde(default)]
    pub(super) volumes: Vec<command::ResolvedVolume>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stopping {
    Destroy,
    /// Stopped by a snapshot revert (or a snapshot taken with `HALT`).
    FromSnapshot,
    /// Stopped after its state went to a save image.
    Saved,
    /// Stopped after it migrated to another host.
    Migrated,
}

pub(super) struct Run {
    pub(super) generation: u64,
    pub(super) id: i32,
    pub(super) pid: i32,
    pub(super) start_time: u64,
    pub(super) pidfd: Arc<OwnedFd>,
    /// QEMU is our child (we reap it); false for a reattached domain.
    pub(super) own_child: bool,
    pub(super) live: Domain,
    pub(super) qmp: Option<Qmp>,
    pub(super) monitor: PathBuf,
    pub(super) overlays: Vec<PathBuf>,
    /// The volume disks' resolved sources (kept in the status file).
    pub(super) volumes: Vec<command::ResolvedVolume>,
    pub(super) stopping: Option<Stopping>,
    pub(super) shutdown_seen: bool,
    pub(super) panicked: bool,
    pub(super) fake_reboot: bool,
    /// The driver resets and continues the guest after a guest shutdown or reboot: the
    /// STOP and RESUME events of that are not state changes.
    pub(super) resetting: bool,
    pub(super) expect_pause: Option<i32>,
    /// The STOP and RESUME events up to this place in the monitor's stream (see
    /// `Qmp::events_read`) are already in the state: a call that ran `stop` or `cont`
    /// set the state itself once QEMU answered. Such an event handled later (the event
    /// thread runs behind) must not undo a newer change: a RESUME from the start's `cont`
    /// taken after a suspend would report a paused guest as running.
    pub(super) events_applied: u64,
    /// The devices QEMU reported gone (`DEVICE_DELETED`) that a detach has not taken
    /// yet, by id.
    pub(super) deleted: HashSet<String>,
    /// The vCPU ids unplugged from this TCG QEMU: QEMU 7.2 dies when one is plugged
    /// again, so that is refused.
    pub(super) unplugged_vcpus: HashSet<String>,
    /// The `N` the next hot-plugged disk's `libvirt-N-*` block nodes get: 0 until the
    /// first hot-plug asked QEMU (`query-named-block-nodes`), then counted here, so later
    /// plugs skip that round trip (only hot-plug names such nodes in a running QEMU).
    pub(super) next_node: u32,
}

pub(super) struct Dom {
    pub(super) def: Domain,
    pub(super) persistent: bool,
    pub(super) autostart: bool,
    pub(super) state: i32,
    pub(super) reason: i32,
    pub(super) run: Option<Run>,
}

impl Dom {
    pub(super) fn reference(&self) -> DomainRef {
        DomainRef {
            name: self.def.name().into(),
            uuid: to_abi_uuid(self.def.uuid()),
            id: self.run.as_ref().map_or(-1, |r| r.id),
        }
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) doms: BTreeMap<uuid::Uuid, Dom>,
    pub(super) generation: u64,
    /// Domains with a state-change job in this process.
    pub(super) jobs: HashSet<uuid::Uuid>,
    /// QEMU processes spawned by a start that has not finished yet (destroy ends them).
    pub(super) starting: HashMap<uuid::Uuid, Arc<OwnedFd>>,
    /// The domains' snapshot metadata (`snapshot`).
    pub(super) snapshots: HashMap<uuid::Uuid, super::snapshot::Snapshots>,
    /// The job statistics of saves (`save`): the one running and the last completed.
    pub(super) job_stats: HashMap<uuid::Uuid, super::save::JobRecord>,
}

pub(super) type Emit = Vec<(DomainRef, i32, i32)>;

/// Creates `dir` and its missing parents, readable by the owner only (`0700`); an existing
/// directory is left as it is.
pub(super) fn mkdir_private(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create directory", dir))
}

/// How a state file is written. Always a temporary file renamed over the target, so a
/// reader (or a process that starts after a crash of this one) sees the old or the new
/// content, never a part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// `run/` files: they describe processes that a host crash ends anyway, so they are
    /// not synced to disk (on a real host `run/` is a tmpfs).
    Volatile,
    /// Definitions: the data is synced before the rename (after a power loss the old or
    /// the new file is there, as with libvirt's `virFileRewrite`); the directory sync that
    /// makes the rename itself durable runs in the background, off the caller's path.
    Durable,
}

pub(super) fn write_file(path: &Path, data: &[u8], durability: Durability) -> Result<()> {
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
pub(super) fn stale_temp_owner(p: &Path) -> Option<i32> {
    let n = p.file_name()?.to_str()?;
    if !n.starts_with('.') {
        return None;
    }
    let (_, rest) = n.rsplit_once(".tmp")?;
    rest.split_once('-')?.0.parse().ok()
}

impl Driver {
    // ---- loading and reattaching ----

    pub(super) fn load(&'static self) -> Result<()> {
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
        // after reattaching: a running transient domain has snapshots too
        self.load_snapshots();
        Ok(())
    }

    /// Records why a persistent domain stopped. The record is a symlink whose target is
    /// the reason number, renamed into place: atomic, and no data block to write on the
    /// destroy path.
    pub(super) fn record_stop(&self, name: &str, rsn: i32) {
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
    pub(super) fn recorded_stop(&self, name: &str) -> Option<i32> {
        std::fs::read_link(self.paths.stopped_file(name))
            .ok()?
            .to_str()?
            .parse()
            .ok()
    }

    /// Removes the run files of domain `name`: its status file, its monitor socket and
    /// those of `overlays` that are this domain's transient overlays in `run/` (a status
    /// file names them; nothing else is removed on its word).
    pub(super) fn cleanup_run_files(&self, name: &str, overlays: &[PathBuf]) {
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
    pub(super) fn status_names(&self, name: &str, pid: i32, start_time: u64) -> bool {
        std::fs::read_to_string(self.paths.status_file(name))
            .ok()
            .and_then(|t| serde_json::from_str::<Status>(&t).ok())
            .is_some_and(|s| s.pid == pid && s.start_time == start_time)
    }

    /// Replaces the live definition of run `generation` of domain `uuid` (when that run
    /// is still the domain's) and records it in the status file; the domain's reference
    /// when it did.
    pub(super) fn replace_live(
        &self,
        uuid: uuid::Uuid,
        generation: u64,
        live: Domain,
    ) -> Option<DomainRef> {
        let mut st = self.lock();
        let d = st.doms.get_mut(&uuid)?;
        let run = d.run.as_mut().filter(|r| r.generation == generation)?;
        run.live = live;
        let run_ref = d.run.as_ref().expect("just matched");
        let _ = self.write_status_locked(d, run_ref);
        Some(d.reference())
    }

    pub(super) fn write_status_locked(&self, d: &Dom, run: &Run) -> Result<()> {
        self.write_status(&d.def, d.persistent, d.state, d.reason, run)
    }

    pub(super) fn write_status(
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
    pub(super) fn refresh_status(&self, uuid: uuid::Uuid, generation: u64) {
        let st = self.lock();
        if let Some(d) = st.doms.get(&uuid)
            && let Some(run) = d.run.as_ref().filter(|r| r.generation == generation)
        {
            let _ = self.write_status_locked(d, run);
        }
    }

    // ---- definitions ----

    pub(super) fn parse_def(xml: &str) -> Result<Domain> {
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

    pub(super) fn check_unique(st: &State, def: &Domain) -> Result<()> {
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

    /// virDomainUndefineFlags (`VIR_DOMAIN_UNDEFINE_NVRAM` = 4 removes the NVRAM file,
    /// `VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA` = 2 the snapshots' metadata).
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
        let running = d.run.is_some();
        // VIR_DOMAIN_UNDEFINE_MANAGED_SAVE (1) removes the managed save image with it
        let managed = self.paths.managed_save_file(&name);
        if managed.exists() && flags & 1 == 0 {
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                "Refusing to undefine while domain managed save image exists",
            )));
        }
        self.snapshots_at_undefine(&mut st, uuid, &name, running, flags)?;
        let _ = std::fs::remove_file(&managed);
        let d = st.doms.get_mut(&uuid).expect("checked above");
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
}

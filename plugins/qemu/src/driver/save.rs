//! Save images and managed save: the guest's state through QEMU's migration stream into a
//! file behind rvirt's own header, and back with `-incoming`.
//!
//! Image format (version 1): a header of [`HEADER_LEN`] bytes, the domain XML (inactive
//! form of the live definition, with secrets) and free room up to `data_offset`, then
//! QEMU's migration stream to the end of the file. The header is the magic (16 bytes),
//! the format version, whether the guest was running (u32 each, little-endian), the XML
//! length (u32) and `data_offset` (u64). A save writes the image under a temporary name
//! beside its path with [`MAGIC_PARTIAL`] first, replaces that with [`MAGIC`] once the
//! stream is complete, syncs it and renames it over the path: an interrupted save leaves
//! the earlier image (if any) whole and no image a restore takes for complete.
//!
//! The stream comes from QEMU's `migrate fd:` on the image's own descriptor (`getfd`;
//! QEMU 7.2 has no `file:` migration): QEMU writes past the header itself, while a thread
//! of ours starts the write-back of what landed; a restore hands QEMU the image's descriptor, positioned at `data_offset`, as
//! `-incoming fd:N`, so QEMU reads the file directly.

use super::domains::{Stopping, mkdir_private};
use super::job::Job;
use super::lifecycle::Incoming;
use super::{Driver, DriverError, Result, io, perr};
use rvirt_qmp::Qmp;
use rvirt_sdk::abi::{DomainRef, ErrorCode, ErrorDomain, PluginError, state};
use rvirt_sdk::util::{no_domain, operation_invalid};
use rvirt_xml::FormatOptions;
use serde_json::{Value, json};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes QEMU writes into the image before their write-back is started.
const WRITEBACK_STEP: u64 = 16 << 20;

/// Follows the image `file` while QEMU writes its stream into it (through its own copy
/// of the descriptor) and starts the write-back of every [`WRITEBACK_STEP`] bytes as they
/// land (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`: no waiting), so the disk works
/// while QEMU streams and the final `fdatasync` has little left to do. Ends once `done`
/// is set.
fn follow_writeback(file: &File, from: u64, done: &std::sync::atomic::AtomicBool) {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering;
    let mut flushed = from;
    while !done.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(2));
        let Ok(len) = file.metadata().map(|m| m.len()) else {
            return;
        };
        if len.saturating_sub(flushed) < WRITEBACK_STEP {
            continue;
        }
        if let (Ok(off), Ok(n)) = (i64::try_from(flushed), i64::try_from(len - flushed)) {
            // SAFETY: `file` is open for the call; sync_file_range reads no memory of
            // this process. Best effort: a failure leaves the work to the final sync.
            let _ = unsafe {
                libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE)
            };
        }
        flushed = len;
    }
}

/// Where a save image for `path` is written before it is complete: beside the path the
/// symlink names, if it is one (the rename then replaces the file it points to).
fn save_temp(path: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = real
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    (real, tmp)
}

/// The magic of a complete image.
pub const MAGIC: &[u8; 16] = b"RvirtQemuSaved\0\0";
/// The magic of an image being written.
pub const MAGIC_PARTIAL: &[u8; 16] = b"RvirtQemuPartial";
/// The format version written and read.
pub const VERSION: u32 = 1;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Room left after the XML for `virDomainSaveImageDefineXML` to grow it in place.
const XML_ROOM: usize = 64 * 1024;

/// `VIR_DOMAIN_SAVE_RUNNING`.
pub const SAVE_RUNNING: u32 = 2;
/// `VIR_DOMAIN_SAVE_PAUSED`.
pub const SAVE_PAUSED: u32 = 4;
/// `VIR_DOMAIN_PAUSED_SAVE`.
const PAUSED_SAVE: i32 = 3;
/// `VIR_DOMAIN_JOB_UNBOUNDED`, `VIR_DOMAIN_JOB_COMPLETED`, `VIR_DOMAIN_JOB_FAILED`.
const JOB_UNBOUNDED: i32 = 2;
const JOB_COMPLETED: i32 = 3;
const JOB_FAILED: i32 = 4;
/// `VIR_DOMAIN_JOB_OPERATION_SAVE`.
const OPERATION_SAVE: i32 = 2;

/// Errors of save images.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Not an image of this driver, or of another format version.
    #[error("'{path}' is not a QEMU save image of rvirt: {what}")]
    NotAnImage {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// The migration to the file failed.
    #[error("saving the domain's state failed: {0}")]
    Migration(String),
}

impl From<SaveError> for DriverError {
    fn from(e: SaveError) -> Self {
        let code = match e {
            SaveError::NotAnImage { .. } => ErrorCode::InvalidArg,
            SaveError::Migration(_) => ErrorCode::OperationFailed,
        };
        DriverError::Plugin(PluginError::new(
            code,
            ErrorDomain::Qemu,
            format!("operation failed: {e}"),
        ))
    }
}

/// The header of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// The guest ran when it was saved.
    pub running: bool,
    /// The domain XML.
    pub xml: String,
    /// Where QEMU's stream starts.
    pub data_offset: u64,
}

impl Header {
    fn new(running: bool, xml: String) -> Self {
        let data_offset = (HEADER_LEN + xml.len() + XML_ROOM).next_multiple_of(4096) as u64;
        Header {
            running,
            xml,
            data_offset,
        }
    }

    /// The header, XML and room: `data_offset` bytes, with `magic`.
    fn encode(&self, magic: &[u8; 16]) -> Vec<u8> {
        let mut b = vec![0u8; usize::try_from(self.data_offset).unwrap_or(0)];
        b[..16].copy_from_slice(magic);
        b[16..20].copy_from_slice(&VERSION.to_le_bytes());
        b[20..24].copy_from_slice(&u32::from(self.running).to_le_bytes());
        let len = u32::try_from(self.xml.len()).unwrap_or(u32::MAX);
        b[24..28].copy_from_slice(&len.to_le_bytes());
        b[28..36].copy_from_slice(&self.data_offset.to_le_bytes());
        b[HEADER_LEN..HEADER_LEN + self.xml.len()].copy_from_slice(self.xml.as_bytes());
        b
    }

    /// Reads and checks the header of the image `path`; the file is left at the stream.
    pub fn read(path: &Path) -> Result<(Header, File)> {
        let bad = |what: &str| -> DriverError {
            SaveError::NotAnImage {
                path: path.display().to_string(),
                what: what.to_string(),
            }
            .into()
        };
        // O_NONBLOCK: a FIFO named by a client must not park the call; only a regular file
        // is read (the flag does nothing to a regular file's reads)
        let mut f = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(io("open save image", path))?
        };
        let size = f
            .metadata()
            .map_err(io("open save image", path))
            .and_then(|m| {
                if m.is_file() {
                    Ok(m.len())
                } else {
                    Err(bad("not a regular file"))
                }
            })?;
        let mut h = [0u8; HEADER_LEN];
        f.read_exact(&mut h).map_err(|_| bad("no header"))?;
        if &h[..16] == MAGIC_PARTIAL {
            return Err(bad("the save that wrote it did not complete"));
        }
        if &h[..16] != MAGIC {
            return Err(bad("no header"));
        }
        let word = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let version = word(16);
        if version != VERSION {
            return Err(bad(&format!(
                "format version {version}, this driver reads version {VERSION}"
            )));
        }
        let running = word(20) != 0;
        let len = usize::try_from(word(24)).unwrap_or(usize::MAX);
        let mut off = [0u8; 8];
        off.copy_from_slice(&h[28..36]);
        let data_offset = u64::from_le_bytes(off);
        if (HEADER_LEN + len) as u64 > data_offset {
            return Err(bad("the XML overlaps the stream"));
        }
        if data_offset > size {
            return Err(bad("truncated XML"));
        }
        let mut xml = vec![0u8; len];
        f.read_exact(&mut xml).map_err(|_| bad("truncated XML"))?;
        let xml = String::from_utf8(xml).map_err(|_| bad("the XML is not UTF-8"))?;
        f.seek(SeekFrom::Start(data_offset))
            .map_err(io("seek in save image", path))?;
        Ok((
            Header {
                running,
                xml,
                data_offset,
            },
            f,
        ))
    }
}

/// A job's type (`VIR_DOMAIN_JOB_*`) and its named counters.
pub type JobAnswer = (i32, Vec<(&'static str, u64)>);

/// A save's job statistics, for `virDomainGetJobStats`.
#[derive(Debug, Clone, Default)]
pub struct JobRecord {
    /// The save running now: when it began and QEMU's last `query-migrate`.
    pub active: Option<(Instant, Value)>,
    /// The last save: how long it took (ms), QEMU's final `query-migrate`, success.
    pub completed: Option<(u64, Value, bool)>,
    /// The job's `VIR_DOMAIN_JOB_OPERATION_*` (0: a save, the default).
    pub operation: i32,
}

/// libvirt's job parameters from a `query-migrate` answer.
pub fn job_params(elapsed_ms: u64, m: &Value) -> Vec<(&'static str, u64)> {
    let ram = &m["ram"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let total = n(&ram["total"]);
    let transferred = n(&ram["transferred"]);
    let remaining = n(&ram["remaining"]);
    vec![
        ("time_elapsed", elapsed_ms),
        ("data_total", total),
        ("data_processed", transferred),
        ("data_remaining", remaining),
        ("memory_total", total),
        ("memory_processed", transferred),
        ("memory_remaining", remaining),
        ("memory_constant", n(&ram["duplicate"])),
        ("memory_normal", n(&ram["normal"])),
        ("memory_normal_bytes", n(&ram["normal-bytes"])),
        (
            "memory_bps",
            (ram["mbps"].as_f64().unwrap_or(0.0) * 1_000_000.0 / 8.0) as u64,
        ),
        ("memory_dirty_rate", n(&ram["dirty-pages-rate"])),
        ("memory_iteration", n(&ram["dirty-sync-count"])),
        ("memory_page_size", n(&ram["page-size"])),
    ]
    .into_iter()
    // QEMU reports these once the stream completed: the guest's pause (ms) and the setup
    .chain(m["downtime"].as_u64().map(|v| ("downtime", v)))
    .chain(m["setup-time"].as_u64().map(|v| ("setup_time", v)))
    .collect()
}

/// `virDomainGetJobStats` answer: the job type and its parameters (the operation first).
pub fn job_stats(rec: Option<&JobRecord>, completed: bool) -> JobAnswer {
    let Some(rec) = rec else {
        return (0, Vec::new());
    };
    let op = if rec.operation == 0 {
        OPERATION_SAVE
    } else {
        rec.operation
    };
    let with_op = |mut v: Vec<(&'static str, u64)>| {
        v.insert(0, ("operation", op as u64));
        v
    };
    if completed {
        return match &rec.completed {
            Some((ms, m, ok)) => (
                if *ok { JOB_COMPLETED } else { JOB_FAILED },
                with_op(job_params(*ms, m)),
            ),
            None => (0, Vec::new()),
        };
    }
    match &rec.active {
        Some((t0, m)) => (
            JOB_UNBOUNDED,
            with_op(job_params(
                u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
                m,
            )),
        ),
        None => (0, Vec::new()),
    }
}

impl Driver {
    /// virDomainSaveFlags.
    pub fn save(
        &'static self,
        uuid: uuid::Uuid,
        path: &Path,
        dxml: Option<&str>,
        flags: u32,
    ) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        self.save_in_job(&job, path, dxml, flags)
    }

    /// virDomainManagedSave: a save to `state/save/NAME.save`, which the next start
    /// resumes from.
    pub fn managed_save(&'static self, uuid: uuid::Uuid, flags: u32) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (name, persistent) = self
            .with_dom(uuid, |d| (d.def.name().to_string(), d.persistent))
            .map_err(perr)?;
        if !persistent {
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                "cannot do managed save for transient domain",
            )));
        }
        let path = self.paths.managed_save_file(&name);
        if let Some(dir) = path.parent() {
            mkdir_private(dir)?;
        }
        self.save_in_job(&job, &path, None, flags)
    }

    /// Whether the domain has a managed save image.
    pub fn has_managed_save(&self, uuid: uuid::Uuid) -> std::result::Result<bool, PluginError> {
        let name = self.with_dom(uuid, |d| d.def.name().to_string())?;
        Ok(self.paths.managed_save_file(&name).exists())
    }

    /// virDomainManagedSaveRemove.
    pub fn managed_save_remove(&'static self, uuid: uuid::Uuid) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let name = self
            .with_dom(uuid, |d| d.def.name().to_string())
            .map_err(perr)?;
        let path = self.paths.managed_save_file(&name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove managed save image", &path)(e)),
        }
    }

    /// The save of the running domain of `job` to `path`: paused, streamed, stopped.
    fn save_in_job(
        &'static self,
        job: &Job<'_>,
        path: &Path,
        dxml: Option<&str>,
        flags: u32,
    ) -> Result<()> {
        let uuid = job.uuid;
        let (q, generation) = self.running(uuid)?;
        let (was_running, live_xml, name) = self
            .with_dom(uuid, |d| {
                let live = d.run.as_ref().map_or(&d.def, |r| &r.live);
                (
                    d.state == state::RUNNING,
                    live.to_xml(&FormatOptions {
                        inactive: true,
                        secure: true,
                    }),
                    d.def.name().to_string(),
                )
            })
            .map_err(perr)?;
        let xml = match dxml {
            Some(x) => {
                let def = Self::parse_def(x)?;
                if def.uuid() != uuid {
                    return Err(perr(PluginError::new(
                        ErrorCode::InvalidArg,
                        ErrorDomain::Qemu,
                        format!(
                            "invalid argument: the XML describes domain '{}', not '{name}'",
                            def.name()
                        ),
                    )));
                }
                x.to_string()
            }
            None => live_xml,
        };
        let resume_after = if flags & SAVE_RUNNING != 0 {
            true
        } else if flags & SAVE_PAUSED != 0 {
            false
        } else {
            was_running
        };
        let header = Header::new(resume_after, xml);
        // Written beside its path and renamed over it once complete: an earlier image at
        // the path stays whole until then, and its blocks are freed off the save's path.
        let (real, tmp) = save_temp(path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create save image", &tmp))?;
        let remove_image = || {
            let _ = std::fs::remove_file(&tmp);
        };
        if let Err(e) = file.write_all(&header.encode(MAGIC_PARTIAL)) {
            remove_image();
            return Err(io("write save image", &tmp)(e));
        }
        // The guest stops before its memory goes to the file, as libvirt's save.
        if was_running {
            if let Err(e) = q.execute("stop", None) {
                remove_image();
                return Err(e.into());
            }
            let e = self.transition_after(
                uuid,
                generation,
                q.events_read(),
                (state::PAUSED, PAUSED_SAVE),
                None,
            );
            self.emit(e);
        }
        let file = match self.stream_to(&q, uuid, file) {
            Ok(f) => f,
            Err(e) => {
                remove_image();
                if was_running && q.execute("cont", None).is_ok() {
                    let e = self.transition_after(
                        uuid,
                        generation,
                        q.events_read(),
                        // VIR_DOMAIN_RUNNING_SAVE_CANCELED
                        (state::RUNNING, 7),
                        None,
                    );
                    self.emit(e);
                }
                return Err(e);
            }
        };
        // Complete: the magic says so, and the image is on disk (most of it already is:
        // its write-back started as the stream came) before it takes the path, then the
        // directory holds the new name durably. The temporary name is never restored, so
        // one sync covers the data and the magic.
        let seal = (|| -> std::io::Result<()> {
            use std::os::unix::fs::FileExt;
            file.write_all_at(MAGIC, 0)?;
            file.sync_data()?;
            // the image replaced (if any) is freed when this last reference closes, off
            // the save's path: freeing tens of MB of blocks takes milliseconds
            let old = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
                .open(&real)
                .ok();
            std::fs::rename(&tmp, &real)?;
            if let Some(old) = old {
                let _ = std::thread::Builder::new()
                    .name("qemu-save-free".into())
                    .spawn(move || drop(old));
            }
            if let Some(dir) = real.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if let Err(e) = seal {
            remove_image();
            return Err(io("complete save image", path)(e));
        }
        self.stop_in_job(job, Stopping::Saved, false)
    }

    /// QEMU's migration stream into `file` (positioned past the header): QEMU gets its
    /// own copy of the descriptor (`getfd`, `migrate fd:`), which shares the file
    /// position, and writes the image itself; job statistics kept meanwhile. The file is
    /// returned once QEMU reports completion (its stream flushed).
    fn stream_to(&self, q: &Qmp, uuid: uuid::Uuid, file: File) -> Result<File> {
        use std::sync::atomic::{AtomicBool, Ordering};
        const FDNAME: &str = "rvirt-save";
        let file = std::sync::Arc::new(file);
        let from = (&*file).stream_position().unwrap_or(0);
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let follower = {
            let (file, done) = (file.clone(), done.clone());
            std::thread::Builder::new()
                .name("qemu-save-wb".into())
                .spawn(move || follow_writeback(&file, from, &done))
                .ok()
        };
        let t0 = Instant::now();
        {
            let mut st = self.lock();
            let r = st.job_stats.entry(uuid).or_default();
            r.active = Some((t0, json!({})));
            r.operation = 0;
        }
        // registered before `migrate`: its end cannot be missed
        let ended = q.watch(super::monitor::migration_ended);
        let passed = q
            .send(
                "migrate-set-capabilities",
                Some(super::monitor::migration_events()),
            )
            .and_then(|caps| {
                let params = q.execute(
                    "migrate-set-parameters",
                    Some(json!({"max-bandwidth": 1u64 << 40})),
                );
                // without the events the wait still ends, by the fallback poll
                let _ = caps.wait(Duration::from_secs(60));
                params
            })
            .and_then(|_| {
                q.execute_with_fd(
                    "getfd",
                    Some(json!({ "fdname": FDNAME })),
                    std::os::fd::AsFd::as_fd(&*file),
                )
            });
        let started = passed.and_then(|_| {
            q.execute("migrate", Some(json!({"uri": format!("fd:{FDNAME}")})))
                .inspect_err(|_| {
                    let _ = q.execute("closefd", Some(json!({ "fdname": FDNAME })));
                })
        });
        let mut outcome: std::result::Result<Value, String> = match started {
            Ok(_) => Err(String::new()),
            Err(e) => Err(e.to_string()),
        };
        if outcome.as_ref().is_err_and(String::is_empty) {
            // QEMU's MIGRATION event ends the wait at once (a poll backing off to 10 ms
            // noticed the end of a 100 ms stream up to 10 ms late, one every millisecond
            // competed with the stream); `query-migrate` then gives the final statistics,
            // and is asked every 50 ms meanwhile for the job's
            outcome = loop {
                let m = match q.execute("query-migrate", None) {
                    Ok(m) => m,
                    Err(e) => break Err(e.to_string()),
                };
                let status = m["status"].as_str().unwrap_or("").to_string();
                if let Some(r) = self.lock().job_stats.get_mut(&uuid) {
                    r.active = Some((t0, m.clone()));
                }
                match status.as_str() {
                    "completed" => break Ok(m),
                    "failed" | "cancelled" => {
                        break Err(m["error-desc"].as_str().unwrap_or(&status).to_string());
                    }
                    _ => {}
                }
                if let Err(e) = ended.wait(super::monitor::EVENT_FALLBACK) {
                    break Err(e.to_string());
                }
            };
        }
        let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        {
            let mut st = self.lock();
            let r = st.job_stats.entry(uuid).or_default();
            let last = r.active.take().map(|(_, m)| m).unwrap_or_default();
            r.completed = Some(match &outcome {
                Ok(m) => (ms, m.clone(), true),
                Err(_) => (ms, last, false),
            });
        }
        done.store(true, Ordering::Release);
        if let Some(t) = follower {
            let _ = t.join();
        }
        match outcome {
            Ok(_) => Ok(std::sync::Arc::try_unwrap(file)
                .map_err(|_| SaveError::Migration("the save image is still shared".into()))?),
            Err(e) => Err(SaveError::Migration(e).into()),
        }
    }

    /// virDomainRestoreFlags: the domain of the image starts from it (transient unless a
    /// persistent domain of that UUID exists).
    pub fn restore(
        &'static self,
        path: &Path,
        dxml: Option<&str>,
        flags: u32,
    ) -> Result<DomainRef> {
        let (header, file) = Header::read(path)?;
        let saved = Self::parse_def(&header.xml)?;
        let def = match dxml {
            Some(x) => {
                let d = Self::parse_def(x)?;
                if d.uuid() != saved.uuid() || d.name() != saved.name() {
                    return Err(perr(PluginError::new(
                        ErrorCode::InvalidArg,
                        ErrorDomain::Qemu,
                        format!(
                            "invalid argument: the XML describes domain '{}' where the image holds '{}'",
                            d.name(),
                            saved.name()
                        ),
                    )));
                }
                d
            }
            None => saved,
        };
        let uuid = def.uuid();
        let job = self.begin_job(uuid, Some(def.name()))?;
        self.sync_from_disk(&job);
        let inserted = {
            let mut st = self.lock();
            match st.doms.get(&uuid) {
                Some(d) if d.run.is_some() => {
                    return Err(perr(operation_invalid(
                        ErrorDomain::Qemu,
                        &format!("domain '{}' is already active", def.name()),
                    )));
                }
                Some(_) => false,
                None => {
                    Self::check_unique(&st, &def)?;
                    st.doms.insert(
                        uuid,
                        super::domains::Dom {
                            def: def.clone(),
                            persistent: false,
                            autostart: false,
                            state: state::SHUTOFF,
                            reason: 0,
                            run: None,
                        },
                    );
                    true
                }
            }
        };
        let paused = restore_paused(header.running, flags);
        let r = self.start_in_job_full(
            &job,
            0,
            None,
            Some(Incoming {
                file: Some(file),
                migrate_uri: None,
                def: Some(def),
                paused,
            }),
        );
        if r.is_err() && inserted {
            let mut st = self.lock();
            if st.doms.get(&uuid).is_some_and(|d| d.run.is_none()) {
                st.doms.remove(&uuid);
            }
        }
        r
    }

    /// The start of a persistent domain with a managed save image: from the image
    /// (`None` when it has none, or `VIR_DOMAIN_START_FORCE_BOOT` discarded it). The
    /// image is removed once the domain runs from it.
    pub(super) fn start_managed(
        &'static self,
        job: &Job<'_>,
        flags: u32,
    ) -> Option<Result<DomainRef>> {
        /// `VIR_DOMAIN_START_PAUSED`.
        const START_PAUSED: u32 = 1;
        /// `VIR_DOMAIN_START_FORCE_BOOT`.
        const FORCE_BOOT: u32 = 8;
        let name = self.with_dom(job.uuid, |d| d.def.name().to_string()).ok()?;
        let path = self.paths.managed_save_file(&name);
        if !path.exists() {
            return None;
        }
        if flags & FORCE_BOOT != 0 {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        let run = (|| {
            let (header, file) = Header::read(&path)?;
            let def = Self::parse_def(&header.xml)?;
            let paused = flags & START_PAUSED != 0 || !header.running;
            self.start_in_job_full(
                job,
                0,
                None,
                Some(Incoming {
                    file: Some(file),
                    migrate_uri: None,
                    def: Some(def),
                    paused,
                }),
            )
        })();
        if run.is_ok() {
            let _ = std::fs::remove_file(&path);
        }
        Some(run)
    }

    /// virDomainSaveImageGetXMLDesc.
    pub fn save_image_xml(&self, path: &Path) -> Result<String> {
        Header::read(path).map(|(h, _)| h.xml)
    }

    /// virDomainSaveImageDefineXML: the image's XML replaced in place (same domain; it
    /// must fit the room the image has).
    pub fn save_image_define(&self, path: &Path, dxml: &str, flags: u32) -> Result<()> {
        let (mut header, _) = Header::read(path)?;
        let old = Self::parse_def(&header.xml)?;
        let new = Self::parse_def(dxml)?;
        if old.uuid() != new.uuid() || old.name() != new.name() {
            return Err(perr(PluginError::new(
                ErrorCode::InvalidArg,
                ErrorDomain::Qemu,
                format!(
                    "invalid argument: the XML describes domain '{}' where the image holds '{}'",
                    new.name(),
                    old.name()
                ),
            )));
        }
        if (HEADER_LEN + dxml.len()) as u64 > header.data_offset {
            return Err(perr(PluginError::new(
                ErrorCode::OperationFailed,
                ErrorDomain::Qemu,
                "operation failed: the new XML does not fit in the save image",
            )));
        }
        header.xml = dxml.to_string();
        if flags & SAVE_RUNNING != 0 {
            header.running = true;
        } else if flags & SAVE_PAUSED != 0 {
            header.running = false;
        }
        let bytes = header.encode(MAGIC);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io("open save image", path))?;
        // the XML and its room first, the header last: a crash leaves the old or new
        // length over a consistent region only when the new XML is not shorter; both
        // are written in one call and synced.
        f.write_all(&bytes).map_err(io("write save image", path))?;
        f.sync_all().map_err(io("sync save image", path))
    }

    /// virDomainGetJobStats.
    pub fn job_stats(
        &self,
        uuid: uuid::Uuid,
        completed: bool,
    ) -> std::result::Result<JobAnswer, PluginError> {
        let st = self.lock();
        if !st.doms.contains_key(&uuid) {
            return Err(no_domain(
                ErrorDomain::Qemu,
                &format!("no domain with matching uuid '{uuid}'"),
            ));
        }
        Ok(job_stats(st.job_stats.get(&uuid), completed))
    }
}

/// Whether a restore leaves the guest paused: `VIR_DOMAIN_SAVE_RUNNING` and `_PAUSED`
/// win over what the image says.
pub fn restore_paused(running: bool, flags: u32) -> bool {
    if flags & SAVE_RUNNING != 0 {
        false
    } else if flags & SAVE_PAUSED != 0 {
        true
    } else {
        !running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_partial_or_foreign_images_are_refused() {
        let dir = std::env::temp_dir().join(format!("rvirt-qemu-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.save");
        let h = Header::new(true, "<domain type='qemu'/>".into());
        assert_eq!(h.data_offset % 4096, 0);
        assert!(h.data_offset as usize >= HEADER_LEN + h.xml.len() + XML_ROOM);
        let mut bytes = h.encode(MAGIC);
        bytes.extend_from_slice(b"STREAM");
        std::fs::write(&p, &bytes).unwrap();
        let (back, mut f) = Header::read(&p).unwrap();
        assert_eq!(back, h);
        let mut rest = String::new();
        f.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "STREAM", "the file is left at the stream");

        std::fs::write(&p, h.encode(MAGIC_PARTIAL)).unwrap();
        let e = PluginError::from(Header::read(&p).unwrap_err());
        assert!(e.message.contains("did not complete"), "{}", e.message);

        let mut newer = h.encode(MAGIC);
        newer[16] = 2;
        std::fs::write(&p, &newer).unwrap();
        let e = PluginError::from(Header::read(&p).unwrap_err());
        assert!(e.message.contains("format version 2"), "{}", e.message);

        std::fs::write(&p, b"QEVM").unwrap();
        let e = PluginError::from(Header::read(&p).unwrap_err());
        assert_eq!(e.code, ErrorCode::InvalidArg as i32);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fifo_or_a_header_claiming_more_than_the_file_holds_is_refused_at_once() {
        let dir = std::env::temp_dir().join(format!("rvirt-qemu-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // a FIFO with no writer: opening it for reading would block without O_NONBLOCK
        let fifo = dir.join("f");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let e = PluginError::from(Header::read(&fifo).unwrap_err());
        assert!(e.message.contains("not a regular file"), "{}", e.message);

        // a header whose stream starts past the end of the file
        let p = dir.join("short.save");
        let h = Header::new(false, "<domain type='qemu'/>".into());
        let mut bytes = h.encode(MAGIC);
        bytes.truncate(HEADER_LEN + h.xml.len());
        std::fs::write(&p, &bytes).unwrap();
        let e = PluginError::from(Header::read(&p).unwrap_err());
        assert!(e.message.contains("truncated"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_writeback_follower_leaves_a_stream_written_beside_it_whole_and_ends_when_told() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = std::env::temp_dir().join(format!("rvirt-qemu-copy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("img");
        let mut file = File::create(&path).unwrap();
        file.write_all(&[7u8; HEADER_LEN]).unwrap();
        // more than two write-back steps, not a multiple of the chunk, written through a
        // second descriptor of the same open file (as QEMU's copy from `getfd`)
        let data: Vec<u8> = (0..(2 * WRITEBACK_STEP as usize + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut theirs = file.try_clone().unwrap();
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let follower = {
            let (f, d) = (file.try_clone().unwrap(), done.clone());
            std::thread::spawn(move || follow_writeback(&f, HEADER_LEN as u64, &d))
        };
        for c in data.chunks(1 << 20) {
            theirs.write_all(c).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        done.store(true, Ordering::Release);
        follower.join().unwrap();
        assert_eq!(
            file.stream_position().unwrap(),
            (HEADER_LEN + data.len()) as u64,
            "the descriptors share one position"
        );
        drop((file, theirs));
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[..HEADER_LEN], &[7u8; HEADER_LEN][..]);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            back[HEADER_LEN..] == data[..],
            "the stream came back changed"
        );
    }

    #[test]
    fn a_save_is_written_beside_the_file_a_symlink_names() {
        let dir = std::env::temp_dir().join(format!("rvirt-qemu-tmp-{}", std::process::id()));
        let sub = dir.join("real");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("img"), b"old").unwrap();
        std::os::unix::fs::symlink(sub.join("img"), dir.join("link")).unwrap();
        let (real, tmp) = save_temp(&dir.join("link"));
        let (fresh, tmp2) = save_temp(&dir.join("new"));
        let canon = std::fs::canonicalize(&sub).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(real, canon.join("img"));
        assert_eq!(tmp.parent(), Some(canon.as_path()));
        assert!(
            tmp.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(".img.tmp"),
            "{}",
            tmp.display()
        );
        assert_eq!(fresh, dir.join("new"));
        assert_eq!(tmp2.parent(), Some(dir.as_path()));
        assert_ne!(tmp, tmp2);
    }

    #[test]
    fn save_flags_override_the_saved_state() {
        assert!(!restore_paused(true, 0));
        assert!(restore_paused(false, 0));
        assert!(!restore_paused(false, SAVE_RUNNING));
        assert!(restore_paused(true, SAVE_PAUSED));
    }

    #[test]
    fn job_statistics_come_from_query_migrate() {
        let m = json!({"status": "completed", "ram": {"total": 100, "transferred": 60, "remaining": 40, "duplicate": 7, "normal": 3, "normal-bytes": 12288, "mbps": 8.0, "page-size": 4096}});
        let rec = JobRecord {
            active: None,
            completed: Some((12, m, true)),
            operation: 0,
        };
        let (kind, p) = job_stats(Some(&rec), true);
        assert_eq!(kind, JOB_COMPLETED);
        let get = |n: &str| p.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        assert_eq!(get("operation"), Some(OPERATION_SAVE as u64));
        assert_eq!(get("time_elapsed"), Some(12));
        assert_eq!(get("data_total"), Some(100));
        assert_eq!(get("data_processed"), Some(60));
        assert_eq!(get("memory_remaining"), Some(40));
        assert_eq!(job_stats(Some(&rec), false).0, 0, "nothing runs now");
        assert_eq!(job_stats(None, false), (0, Vec::new()));
    }
}

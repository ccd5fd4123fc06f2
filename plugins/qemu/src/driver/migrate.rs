//! Live migration between hosts (libvirt's version 3 steps, driven by the host):
//!
//! - **begin** (source): the running domain's definition for the destination;
//! - **prepare** (destination): QEMU starts with `-incoming defer`, then
//!   `migrate-incoming tcp:ADDR:PORT` on a port of libvirt's range (49152-49215); the
//!   domain is paused (reason migration) and the URI goes back to the source;
//! - **perform** (source): QMP `migrate` to that URI; QEMU's `MIGRATION` event (the
//!   `events` capability is on at both ends) ends the wait, `query-migrate` then gives the
//!   final job statistics (`virDomainGetJobStats`; asked every 50 ms meanwhile, also a
//!   safety net against a missed event); `migrate_cancel`
//!   on `virDomainAbortJob`. A failed or cancelled migration leaves the guest running
//!   here (QEMU resumes it);
//! - **finish** (destination): once QEMU has read the stream (its `MIGRATION` completed
//!   event, or a run state past `inmigrate`) the guest runs there
//!   (`cont`), defined too with `VIR_MIGRATE_PERSIST_DEST`; when the migration was
//!   cancelled the incoming QEMU is killed;
//! - **confirm** (source): the source QEMU is stopped (shut off, reason migrated) and,
//!   with `VIR_MIGRATE_UNDEFINE_SOURCE`, the domain undefined; when cancelled, the guest
//!   runs on here.
//!
//! Storage is shared (both hosts see the same disk paths), or copied with
//! `VIR_MIGRATE_NON_SHARED_DISK` (`--copy-storage-all`): the destination, whose disk
//! images exist already (as libvirt requires), exports its writable disks with QEMU's NBD
//! server (`nbd-server-start`, `block-export-add`), its prepare cookie names the server and
//! the disks ([`NbdCookie`], JSON, versioned), and the source mirrors each disk into its
//! export (`blockdev-add` of an `nbd` node, `blockdev-mirror` with `sync: full`) until
//! every mirror is ready before it migrates the memory; once migrated the mirrors are
//! cancelled (the copies stay in sync) and finish stops the NBD server. Otherwise the
//! cookies are empty.

use super::domains::{Dom, Stopping};
use super::lifecycle::Incoming;
use super::monitor::{EVENT_FALLBACK, migration_ended, migration_events};
use super::{Driver, DriverError, Result, detail, perr, reason};
use rvirt_qmp::{EventWatch, Qmp};
use rvirt_sdk::abi::{
    DomainRef, ErrorCode, ErrorDomain, PluginError, TypedParam, TypedValue, event, migrate as flag,
    state,
};
use rvirt_sdk::util::{no_domain, operation_invalid};
use rvirt_xml::FormatOptions;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::net::{TcpListener, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The first port of libvirt's range for incoming migrations.
pub const PORT_MIN: u16 = 49152;
/// The last port of that range.
pub const PORT_MAX: u16 = 49215;
/// `VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT`.
const OPERATION_MIGRATION_OUT: i32 = 5;
/// `VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN`.
const OPERATION_MIGRATION_IN: i32 = 4;
/// `VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED`.
const SUSPENDED_MIGRATED: i32 = 1;
/// How long the destination waits for QEMU to finish reading the stream once the source
/// reported completion.
const FINISH_WAIT: Duration = Duration::from_secs(60);

/// The `VIR_MIGRATE_*` flags this driver honours (peer-to-peer is the host's).
pub const ALLOWED_FLAGS: u32 = flag::LIVE
    | flag::PEER2PEER
    | flag::NON_SHARED_DISK
    | flag::PERSIST_DEST
    | flag::UNDEFINE_SOURCE
    | flag::PAUSED
    | flag::CHANGE_PROTECTION
    | flag::UNSAFE
    | flag::ABORT_ON_ERROR;

/// Errors of migrations.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A parameter is missing or malformed.
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    /// No port of the range could be bound.
    #[error(
        "operation failed: no free port for the incoming migration in {PORT_MIN}-{PORT_MAX} on '{0}'"
    )]
    NoPort(String),
    /// QEMU reported the migration failed.
    #[error("operation failed: migration of domain '{name}' failed: {reason}")]
    Failed {
        /// The domain.
        name: String,
        /// QEMU's reason.
        reason: String,
    },
    /// The migration was cancelled (`virDomainAbortJob`).
    #[error("operation aborted: migration out job: canceled by client")]
    Cancelled,
}

impl From<MigrateError> for DriverError {
    fn from(e: MigrateError) -> Self {
        let code = match e {
            MigrateError::InvalidArg(_) => ErrorCode::InvalidArg,
            MigrateError::NoPort(_) | MigrateError::Failed { .. } => ErrorCode::OperationFailed,
            MigrateError::Cancelled => ErrorCode::OperationAborted,
        };
        DriverError::Plugin(PluginError::new(code, ErrorDomain::Qemu, e.to_string()))
    }
}

/// The version of [`NbdCookie`] written and read.
pub const COOKIE_VERSION: u32 = 1;

/// The destination's answer for a migration copying storage: where its NBD server
/// listens and the disks (targets) it exports under their target names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NbdCookie {
    /// [`COOKIE_VERSION`].
    pub version: u32,
    /// The host the source connects to.
    pub host: String,
    /// The NBD server's port.
    pub port: u16,
    /// The exported disks' targets (`vda`), each exported under that name.
    pub disks: Vec<String>,
}

impl NbdCookie {
    /// The cookie of a prepare step; `None` for an empty one (shared storage).
    pub fn decode(bytes: &[u8]) -> std::result::Result<Option<NbdCookie>, MigrateError> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let c: NbdCookie = serde_json::from_slice(bytes).map_err(|e| {
            MigrateError::InvalidArg(format!(
                "the destination's migration cookie is unreadable: {e}"
            ))
        })?;
        if c.version != COOKIE_VERSION {
            return Err(MigrateError::InvalidArg(format!(
                "migration cookie version {} is not supported (this host reads version {COOKIE_VERSION})",
                c.version
            )));
        }
        Ok(Some(c))
    }
}

/// The source's answer to the destination once the memory is sent: when the guest
/// stopped there (microseconds since the epoch; the hosts' clocks are taken as
/// synchronized, as libvirt takes them), for the guest's real downtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerformCookie {
    /// [`COOKIE_VERSION`].
    pub version: u32,
    /// When the source paused the guest.
    pub stopped_at_us: u64,
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// When QEMU sent event `e` (its timestamp, µs since the epoch).
fn event_us(e: &rvirt_qmp::Event) -> Option<u64> {
    let (s, us) = e.timestamp?;
    u64::try_from(s)
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(u64::try_from(us).ok()?)
}

/// A completed migration's `total-time` and `downtime` (ms) when QEMU's own are not
/// computed yet: QEMU reports the completion (its event, and `query-migrate`) a moment
/// before it records them, so the answer to a question sent on the event often has
/// both 0. They come from the times seen instead: `started_us` (when `migrate` was sent),
/// the guest's STOP and the completion event.
fn complete_times(m: &mut Value, started_us: u64, stopped_us: Option<u64>, ended_us: Option<u64>) {
    if m["total-time"].as_u64().unwrap_or(0) > 0 {
        return;
    }
    let Some(end) = ended_us else { return };
    m["total-time"] = json!(end.saturating_sub(started_us) / 1000);
    if let Some(stop) = stopped_us {
        m["downtime"] = json!(end.saturating_sub(stop) / 1000);
    }
}

/// The string parameter `name`, if given.
pub fn param_str<'a>(params: &'a [TypedParam], name: &str) -> Option<&'a str> {
    params.iter().rev().find_map(|p| match &p.value {
        TypedValue::String(s) if p.field.as_str() == name => Some(s.as_str()),
        _ => None,
    })
}

/// The integer parameter `name`, if given.
pub fn param_u64(params: &[TypedParam], name: &str) -> Option<u64> {
    params
        .iter()
        .rev()
        .find(|p| p.field.as_str() == name)
        .and_then(|p| match p.value {
            TypedValue::Int(v) => u64::try_from(v).ok(),
            TypedValue::UInt(v) => Some(u64::from(v)),
            TypedValue::LLong(v) => u64::try_from(v).ok(),
            TypedValue::ULLong(v) => Some(v),
            _ => None,
        })
}

/// A `tcp:` migration URI's host and port (`tcp:HOST:PORT`, `tcp://HOST:PORT`, the port
/// optional, an IPv6 host in brackets).
pub fn parse_tcp_uri(uri: &str) -> std::result::Result<(String, Option<u16>), MigrateError> {
    let bad = || {
        MigrateError::InvalidArg(format!(
            "migration URI '{uri}' is not of the form tcp:HOST[:PORT] (the only transport this driver listens on)"
        ))
    };
    let rest = uri.strip_prefix("tcp:").ok_or_else(bad)?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, tail) = r.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
            None if tail.is_empty() => None,
            None => return Err(bad()),
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// QEMU's form of a TCP address (`tcp:HOST:PORT`, brackets around IPv6).
pub fn qemu_tcp_uri(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("tcp:[{host}]:{port}")
    } else {
        format!("tcp:{host}:{port}")
    }
}

/// The first port of the range that `addr` can be bound on (QEMU binds it next).
fn free_port(addr: &str) -> std::result::Result<u16, MigrateError> {
    (PORT_MIN..=PORT_MAX)
        .find(|p| TcpListener::bind((addr, *p)).is_ok())
        .ok_or_else(|| MigrateError::NoPort(addr.to_string()))
}

/// The name the source reaches this host by: the host name when it resolves, else the
/// loopback address.
fn reachable_host() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if !name.is_empty() && (name.as_str(), 0u16).to_socket_addrs().is_ok() {
        name
    } else {
        "127.0.0.1".into()
    }
}

impl Driver {
    /// virDomainMigrateBegin3Params: the definition the destination starts (the caller's
    /// `destination_xml` when given, for the same domain).
    pub fn migrate_begin(&'static self, uuid: uuid::Uuid, params: &[TypedParam]) -> Result<String> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (name, live_xml, running) = self
            .with_dom(uuid, |d| {
                let live = d.run.as_ref().map_or(&d.def, |r| &r.live);
                (
                    d.def.name().to_string(),
                    live.to_xml(&FormatOptions {
                        inactive: true,
                        secure: true,
                    }),
                    d.run.is_some(),
                )
            })
            .map_err(perr)?;
        if !running {
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                "domain is not running",
            )));
        }
        match param_str(params, flag::PARAM_DEST_XML) {
            Some(x) => {
                let def = Self::parse_def(x)?;
                if def.uuid() != uuid {
                    return Err(MigrateError::InvalidArg(format!(
                        "the destination XML describes domain '{}', not '{name}'",
                        def.name()
                    ))
                    .into());
                }
                Ok(x.to_string())
            }
            None => Ok(live_xml),
        }
    }

    /// virDomainMigratePrepare3Params: QEMU started for the incoming stream; the URI the
    /// source sends it to.
    pub fn migrate_prepare(
        &'static self,
        params: &[TypedParam],
        flags: u32,
    ) -> Result<(String, Vec<u8>)> {
        let xml = param_str(params, flag::PARAM_DEST_XML).ok_or_else(|| {
            MigrateError::InvalidArg("no domain XML passed to the migration prepare step".into())
        })?;
        let mut def = Self::parse_def(xml)?;
        if let Some(n) = param_str(params, flag::PARAM_DEST_NAME).filter(|n| !n.is_empty()) {
            def.set_name(n);
        }
        // where QEMU listens, and the address the source is told
        let asked = param_str(params, flag::PARAM_URI)
            .map(parse_tcp_uri)
            .transpose()?;
        let listen = param_str(params, flag::PARAM_LISTEN_ADDRESS)
            .map(str::to_string)
            .or_else(|| asked.as_ref().map(|(h, _)| h.clone()))
            .unwrap_or_else(|| "0.0.0.0".into());
        let port = match asked.as_ref().and_then(|(_, p)| *p) {
            Some(p) => p,
            None => free_port(&listen)?,
        };
        let told = match &asked {
            Some((h, _)) => h.clone(),
            None if listen != "0.0.0.0" && listen != "::" => listen.clone(),
            None => reachable_host(),
        };
        let uuid = def.uuid();
        let job = self.begin_job(uuid, Some(def.name()))?;
        self.sync_from_disk(&job);
        {
            let mut st = self.lock();
            match st.doms.get(&uuid) {
                Some(d) if d.run.is_some() => {
                    return Err(perr(operation_invalid(
                        ErrorDomain::Qemu,
                        &format!("domain '{}' is already active", def.name()),
                    )));
                }
                Some(_) => {}
                None => {
                    Self::check_unique(&st, &def)?;
                    st.doms.insert(
                        uuid,
                        Dom {
                            def: def.clone(),
                            persistent: false,
                            autostart: false,
                            state: state::SHUTOFF,
                            reason: 0,
                            run: None,
                        },
                    );
                }
            }
        }
        let r = self.start_in_job_full(
            &job,
            0,
            None,
            Some(Incoming {
                file: None,
                migrate_uri: Some(qemu_tcp_uri(&listen, port)),
                def: Some(def),
                paused: true,
            }),
        );
        if r.is_err() {
            let mut st = self.lock();
            if st
                .doms
                .get(&uuid)
                .is_some_and(|d| d.run.is_none() && !d.persistent)
            {
                st.doms.remove(&uuid);
            }
        }
        r?;
        let cookie = if flags & flag::NON_SHARED_DISK != 0 {
            match self.export_disks(uuid, params, &listen, &told) {
                Ok(c) => serde_json::to_vec(&c).unwrap_or_default(),
                Err(e) => {
                    let _ = self.stop_in_job(&job, Stopping::Destroy, true);
                    return Err(e);
                }
            }
        } else {
            Vec::new()
        };
        Ok((qemu_tcp_uri(&told, port), cookie))
    }

    /// The writable disks of the running domain `uuid` (those `migrate_disks` names, when
    /// given): their targets and QEMU format nodes (found by device alias in
    /// `query-block`).
    fn disk_nodes(
        &self,
        uuid: uuid::Uuid,
        q: &Qmp,
        params: &[TypedParam],
    ) -> Result<Vec<(String, String)>> {
        let only: Vec<&str> = params
            .iter()
            .filter(|p| p.field.as_str() == flag::PARAM_MIGRATE_DISKS)
            .filter_map(|p| match &p.value {
                TypedValue::String(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        let disks: Vec<(String, String)> = self
            .with_dom(uuid, |d| {
                let live = d.run.as_ref().map_or(&d.def, |r| &r.live);
                live.devices_of("disk")
                    .filter(|e| {
                        e.attr("device").is_none_or(|v| v == "disk")
                            && e.child("readonly").is_none()
                            && e.child("source").is_some()
                    })
                    .filter_map(|e| {
                        Some((
                            e.child("target")?.attr("dev")?.to_string(),
                            e.child("alias")?.attr("name")?.to_string(),
                        ))
                    })
                    .filter(|(t, _)| only.is_empty() || only.contains(&t.as_str()))
                    .collect()
            })
            .map_err(perr)?;
        let blocks = q.execute("query-block", None)?;
        disks
            .into_iter()
            .map(|(target, alias)| {
                let qdev = format!("/machine/peripheral/{alias}/");
                blocks
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|b| {
                        b["qdev"]
                            .as_str()
                            .is_some_and(|p| p == alias || p.starts_with(&qdev))
                    })
                    .and_then(|b| b["inserted"]["node-name"].as_str())
                    .map(|n| (target.clone(), n.to_string()))
                    .ok_or_else(|| {
                        MigrateError::InvalidArg(format!(
                            "disk '{target}' has no block node to copy (query-block)"
                        ))
                        .into()
                    })
            })
            .collect()
    }

    /// Destination of `--copy-storage-all`: QEMU's NBD server on a free port of the range
    /// and one writable export per disk, named by target.
    fn export_disks(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        listen: &str,
        told: &str,
    ) -> Result<NbdCookie> {
        let (q, _) = self.running(uuid)?;
        let nodes = self.disk_nodes(uuid, &q, params)?;
        let port = free_port(listen)?;
        q.execute(
            "nbd-server-start",
            Some(json!({"addr": {"type": "inet", "data": {"host": listen, "port": port.to_string()}}})),
        )?;
        for (target, node) in &nodes {
            q.execute(
                "block-export-add",
                Some(json!({"type": "nbd", "id": format!("migration-{target}"),
                    "node-name": node, "name": target, "writable": true})),
            )?;
        }
        Ok(NbdCookie {
            version: COOKIE_VERSION,
            host: told.to_string(),
            port,
            disks: nodes.into_iter().map(|(t, _)| t).collect(),
        })
    }

    /// Source of `--copy-storage-all`: each exported disk mirrored into the
    /// destination's NBD export; returns once every mirror is ready (the copies in
    /// sync), with the jobs' and nodes' names for [`Driver::end_mirrors`].
    fn start_mirrors(
        &self,
        uuid: uuid::Uuid,
        q: &Qmp,
        params: &[TypedParam],
        c: &NbdCookie,
    ) -> Result<Vec<(String, String)>> {
        let nodes = self.disk_nodes(uuid, q, params)?;
        let mut started = Vec::new();
        let r = (|| -> Result<()> {
            for target in &c.disks {
                let node = nodes
                    .iter()
                    .find(|(t, _)| t == target)
                    .map(|(_, n)| n.clone())
                    .ok_or_else(|| {
                        MigrateError::InvalidArg(format!(
                            "the destination exports disk '{target}', which this domain lacks"
                        ))
                    })?;
                let nbd = format!("migration-{target}-nbd");
                let job = format!("migration-{target}");
                q.execute(
                    "blockdev-add",
                    Some(json!({"driver": "nbd", "node-name": nbd, "export": target,
                        "server": {"type": "inet", "host": c.host, "port": c.port.to_string()}})),
                )?;
                started.push((job.clone(), nbd.clone()));
                q.execute(
                    "blockdev-mirror",
                    Some(
                        json!({"job-id": job, "device": node, "target": nbd, "sync": "full",
                        "auto-dismiss": true}),
                    ),
                )?;
            }
            // every mirror ready: the destination's disks hold what the guest wrote
            let deadline = Instant::now() + Duration::from_secs(3600);
            loop {
                let jobs = q.execute("query-block-jobs", None)?;
                let ours: Vec<&Value> = jobs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|j| {
                        started
                            .iter()
                            .any(|(id, _)| j["device"].as_str() == Some(id))
                    })
                    .collect();
                if ours.len() < started.len() {
                    return Err(MigrateError::Failed {
                        name: String::new(),
                        reason: "a disk mirror ended before it was ready".into(),
                    }
                    .into());
                }
                if ours.iter().all(|j| j["ready"].as_bool() == Some(true)) {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(MigrateError::Failed {
                        name: String::new(),
                        reason: "the disk mirrors did not converge".into(),
                    }
                    .into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })();
        match r {
            Ok(()) => Ok(started),
            Err(e) => {
                Self::end_mirrors(q, &started);
                Err(e)
            }
        }
    }

    /// The mirrors cancelled (a ready mirror's copy stays complete) and their NBD nodes
    /// removed.
    fn end_mirrors(q: &Qmp, started: &[(String, String)]) {
        if started.is_empty() {
            // shared storage: no `query-block-jobs` round trip while the guest is paused
            return;
        }
        for (job, _) in started {
            let _ = q.execute(
                "block-job-cancel",
                Some(json!({"device": job, "force": true})),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let left = q
                .execute("query-block-jobs", None)
                .ok()
                .is_some_and(|jobs| {
                    jobs.as_array().into_iter().flatten().any(|j| {
                        started
                            .iter()
                            .any(|(id, _)| j["device"].as_str() == Some(id))
                    })
                });
            if !left {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for (_, nbd) in started {
            let _ = q.execute("blockdev-del", Some(json!({"node-name": nbd})));
        }
    }

    /// virDomainMigratePerform3Params: the domain's state sent to the `migrate_uri`
    /// parameter; returns once QEMU reports the migration completed (the guest paused
    /// here). A failed or cancelled migration leaves the guest running.
    pub fn migrate_perform(
        &'static self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
    ) -> Result<Vec<u8>> {
        let nbd = if flags & flag::NON_SHARED_DISK != 0 {
            Some(NbdCookie::decode(cookie)?.ok_or_else(|| {
                MigrateError::InvalidArg(
                    "the destination did not export the disks to copy (no NBD cookie)".into(),
                )
            })?)
        } else {
            None
        };
        let uri = param_str(params, flag::PARAM_URI).ok_or_else(|| {
            MigrateError::InvalidArg("the migration URI of the destination is missing".into())
        })?;
        let (host, port) = parse_tcp_uri(uri)?;
        let port = port.ok_or_else(|| {
            MigrateError::InvalidArg(format!("migration URI '{uri}' has no port"))
        })?;
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (q, generation) = self.running(uuid)?;
        let (name, was_running) = self
            .with_dom(uuid, |d| {
                (d.def.name().to_string(), d.state == state::RUNNING)
            })
            .map_err(perr)?;
        // MiB/s as libvirt's bandwidth; unlimited otherwise
        let bandwidth = param_u64(params, flag::PARAM_BANDWIDTH)
            .filter(|b| *b > 0)
            .map_or(1u64 << 40, |b| b.saturating_mul(1 << 20));
        self.expect_migration_pause(uuid, generation);
        let offline = flags & flag::LIVE == 0 && was_running;
        if offline {
            q.execute("stop", None)?;
        }
        let t0 = Instant::now();
        {
            let mut st = self.lock();
            let r = st.job_stats.entry(uuid).or_default();
            r.active = Some((t0, json!({})));
            r.operation = OPERATION_MIGRATION_OUT;
        }
        let mirrors = match &nbd {
            Some(c) => match self.start_mirrors(uuid, &q, params, c) {
                Ok(m) => m,
                Err(e) => {
                    self.clear_migration_pause(uuid, generation);
                    self.resume_after_failure(&q, uuid, generation, was_running);
                    self.lock().job_stats.entry(uuid).or_default().active.take();
                    return Err(e);
                }
            },
            None => Vec::new(),
        };
        let mut started_us = 0;
        // registered before `migrate`: its end cannot be missed, nor the guest's stop
        let ended = q.watch(migration_ended);
        let stops = q.watch(|e| e.name == "STOP");
        let outcome = q
            .send("migrate-set-capabilities", Some(migration_events()))
            .and_then(|caps| {
                let params = q.execute(
                    "migrate-set-parameters",
                    Some(json!({"max-bandwidth": bandwidth})),
                );
                // without the events the wait still ends, by the fallback poll
                let _ = caps.wait(Duration::from_secs(60));
                params
            })
            .and_then(|_| {
                started_us = unix_us();
                q.execute("migrate", Some(json!({"uri": qemu_tcp_uri(&host, port)})))
            })
            .map_err(|e| e.to_string())
            .and_then(|_| self.poll_migration(&q, &ended, uuid, t0));
        drop(ended);
        // when QEMU stopped the guest for the switch-over (its STOP's timestamp)
        let stopped_us = stops.try_next().ok().flatten().as_ref().and_then(event_us);
        drop(stops);
        let outcome = outcome.map(|(mut m, ended_us)| {
            complete_times(&mut m, started_us, stopped_us, ended_us);
            m
        });
        Self::end_mirrors(&q, &mirrors);
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
        match outcome {
            Ok(m) => {
                let e = self.transition_after(
                    uuid,
                    generation,
                    q.events_read(),
                    (state::PAUSED, reason::PAUSED_MIGRATION),
                    Some((event::SUSPENDED, SUSPENDED_MIGRATED)),
                );
                self.emit(e);
                // when the guest stopped here: QEMU's total time less its downtime (as
                // the floor of benches/migrate_bench.py takes it; from the STOP when QEMU
                // had not computed them yet, see `complete_times`)
                let n = |k: &str| m[k].as_u64().unwrap_or(0);
                let stopped = started_us
                    + n("total-time")
                        .saturating_sub(n("downtime"))
                        .saturating_mul(1000);
                Ok(serde_json::to_vec(&PerformCookie {
                    version: COOKIE_VERSION,
                    stopped_at_us: stopped,
                })
                .unwrap_or_default())
            }
            Err(reason_text) => {
                self.clear_migration_pause(uuid, generation);
                // QEMU resumes a guest it paused for the migration; one stopped here for
                // an offline migration runs again too
                self.resume_after_failure(&q, uuid, generation, was_running);
                if reason_text == "cancelled" {
                    Err(MigrateError::Cancelled.into())
                } else {
                    Err(MigrateError::Failed {
                        name,
                        reason: reason_text,
                    }
                    .into())
                }
            }
        }
    }

    /// Waits until the migration ends: QEMU's `MIGRATION` event on `ended` (the guest's
    /// pause lasts until the completion is noticed and the destination resumes it), or
    /// `query-migrate`, asked every [`EVENT_FALLBACK`] for the job statistics and once
    /// more after the event for the final ones. Waiting on the event rather than asking
    /// every millisecond leaves QEMU's main loop and the CPUs to the migration.
    /// The final `query-migrate` answer comes with the completion event's time (µs since
    /// the epoch, when the event was seen); `Err("cancelled")` when it was cancelled, else
    /// QEMU's reason.
    fn poll_migration(
        &self,
        q: &Qmp,
        ended: &EventWatch,
        uuid: uuid::Uuid,
        t0: Instant,
    ) -> std::result::Result<(Value, Option<u64>), String> {
        let mut ended_us = None;
        loop {
            let m = q
                .execute("query-migrate", None)
                .map_err(|e| e.to_string())?;
            let status = m["status"].as_str().unwrap_or("").to_string();
            if let Some(r) = self.lock().job_stats.get_mut(&uuid) {
                r.active = Some((t0, m.clone()));
            }
            match status.as_str() {
                "completed" => {
                    // (seen by the fallback question before its event was read: the event
                    // is right behind, else now is when the completion was seen)
                    let seen = ended_us
                        .or_else(|| ended.try_next().ok().flatten().as_ref().and_then(event_us))
                        .unwrap_or_else(unix_us);
                    return Ok((m, Some(seen)));
                }
                "cancelled" | "cancelling" => return Err("cancelled".into()),
                "failed" => {
                    return Err(m["error-desc"]
                        .as_str()
                        .unwrap_or("qemu reported a failure")
                        .to_string());
                }
                _ => {}
            }
            if let Some(e) = ended.wait(EVENT_FALLBACK).map_err(|e| e.to_string())? {
                ended_us = event_us(&e);
            }
        }
    }

    /// The STOP QEMU emits when the migration completes is the migration's pause.
    fn expect_migration_pause(&self, uuid: uuid::Uuid, generation: u64) {
        if let Some(run) = self
            .lock()
            .doms
            .get_mut(&uuid)
            .and_then(|d| d.run.as_mut())
            .filter(|r| r.generation == generation)
        {
            run.expect_pause = Some(reason::PAUSED_MIGRATION);
        }
    }

    fn clear_migration_pause(&self, uuid: uuid::Uuid, generation: u64) {
        if let Some(run) = self
            .lock()
            .doms
            .get_mut(&uuid)
            .and_then(|d| d.run.as_mut())
            .filter(|r| r.generation == generation)
            && run.expect_pause == Some(reason::PAUSED_MIGRATION)
        {
            run.expect_pause = None;
        }
    }

    /// After a failed or cancelled migration: the guest runs again when it ran before
    /// (`cont` when QEMU left it paused), its state recorded.
    fn resume_after_failure(&self, q: &Qmp, uuid: uuid::Uuid, generation: u64, was_running: bool) {
        if !was_running {
            return;
        }
        let status = q
            .execute("query-status", None)
            .ok()
            .and_then(|s| s["status"].as_str().map(str::to_string))
            .unwrap_or_default();
        if status != "running" && q.execute("cont", None).is_err() {
            return;
        }
        let e = self.transition_after(
            uuid,
            generation,
            q.events_read(),
            (state::RUNNING, reason::RUNNING_MIGRATION_CANCELED),
            Some((event::RESUMED, detail::RESUMED_MIGRATED)),
        );
        self.emit(e);
    }

    /// The arrived guest runs: state running (migrated) whether or not the monitor's
    /// RESUME was handled first (which would record it as unpaused).
    fn running_migrated(&self, uuid: uuid::Uuid, generation: u64, events_read: u64) {
        let e = {
            let mut st = self.lock();
            let Some(d) = st.doms.get_mut(&uuid) else {
                return;
            };
            let Some(run) = d.run.as_mut().filter(|r| r.generation == generation) else {
                return;
            };
            run.events_applied = run.events_applied.max(events_read);
            let changed = d.state != state::RUNNING;
            d.state = state::RUNNING;
            d.reason = reason::RUNNING_MIGRATED;
            if let Some(run) = &d.run {
                let _ = self.write_status_locked(d, run);
            }
            if changed {
                vec![(d.reference(), event::RESUMED, detail::RESUMED_MIGRATED)]
            } else {
                vec![]
            }
        };
        self.emit(e);
    }

    /// The domain a finish step names: the destination XML's UUID.
    fn incoming_uuid(params: &[TypedParam]) -> Result<uuid::Uuid> {
        let xml = param_str(params, flag::PARAM_DEST_XML).ok_or_else(|| {
            MigrateError::InvalidArg("no domain XML passed to the migration finish step".into())
        })?;
        Ok(Self::parse_def(xml)?.uuid())
    }

    /// virDomainMigrateFinish3Params: the arrived guest runs (unless
    /// `VIR_MIGRATE_PAUSED`), defined with `VIR_MIGRATE_PERSIST_DEST`; when `cancelled`
    /// the incoming QEMU is stopped and an error answered.
    pub fn migrate_finish(
        &'static self,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
        cancelled: bool,
    ) -> Result<DomainRef> {
        let stopped_at = serde_json::from_slice::<PerformCookie>(cookie)
            .ok()
            .filter(|c| c.version == COOKIE_VERSION)
            .map(|c| c.stopped_at_us);
        let uuid = Self::incoming_uuid(params)?;
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let name = self
            .with_dom(uuid, |d| d.def.name().to_string())
            .map_err(perr)?;
        let stop = |job: &super::job::Job<'_>| {
            let _ = self.stop_in_job(job, Stopping::Destroy, true);
        };
        if cancelled {
            stop(&job);
            return Err(MigrateError::Failed {
                name,
                reason: "the migration was cancelled by the source".into(),
            }
            .into());
        }
        let (q, generation) = match self.running(uuid) {
            Ok(x) => x,
            Err(e) => {
                stop(&job);
                return Err(e);
            }
        };
        if let Err(e) = wait_stream_read(&q) {
            stop(&job);
            return Err(MigrateError::Failed { name, reason: e }.into());
        }
        if flags & flag::NON_SHARED_DISK != 0
            && let Err(e) = q.execute("nbd-server-stop", None)
        {
            stop(&job);
            return Err(e.into());
        }
        if flags & flag::PAUSED == 0 {
            if let Err(e) = q.execute("cont", None) {
                stop(&job);
                return Err(e.into());
            }
            // the guest runs from QEMU's answer on (the state and status file follow)
            let resumed_us = unix_us();
            self.running_migrated(uuid, generation, q.events_read());
            if let Some(t) = stopped_at {
                // the guest's pause: from the source's stop to this resume (`domjobinfo
                // --completed` on the destination: an incoming migration's downtime)
                let down_ms = resumed_us.saturating_sub(t) / 1000;
                let mut st = self.lock();
                let r = st.job_stats.entry(uuid).or_default();
                r.operation = OPERATION_MIGRATION_IN;
                r.completed = Some((
                    down_ms,
                    json!({"status": "completed", "downtime": down_ms}),
                    true,
                ));
            }
        }
        let persist_xml = (flags & flag::PERSIST_DEST != 0).then(|| {
            param_str(params, flag::PARAM_PERSIST_XML)
                .map(str::to_string)
                .or_else(|| {
                    self.with_dom(uuid, |d| {
                        d.run
                            .as_ref()
                            .map_or(&d.def, |r| &r.live)
                            .to_xml(&FormatOptions {
                                inactive: true,
                                secure: true,
                            })
                    })
                    .ok()
                })
        });
        drop(job);
        if let Some(Some(xml)) = persist_xml {
            self.define(&xml)?;
        }
        self.with_dom(uuid, Dom::reference).map_err(perr)
    }

    /// virDomainMigrateConfirm3Params: the source QEMU stopped (shut off, reason
    /// migrated) and, with `VIR_MIGRATE_UNDEFINE_SOURCE`, the domain undefined; when
    /// `cancelled`, the guest runs on here.
    pub fn migrate_confirm(
        &'static self,
        uuid: uuid::Uuid,
        flags: u32,
        cancelled: bool,
    ) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        if cancelled {
            let (q, generation) = self.running(uuid)?;
            let was_migrating = self
                .with_dom(uuid, |d| {
                    d.state == state::RUNNING
                        || (d.state == state::PAUSED && d.reason == reason::PAUSED_MIGRATION)
                })
                .map_err(perr)?;
            self.clear_migration_pause(uuid, generation);
            self.resume_after_failure(&q, uuid, generation, was_migrating);
            return Ok(());
        }
        let persistent = self.with_dom(uuid, |d| d.persistent).map_err(perr)?;
        self.stop_in_job(&job, Stopping::Migrated, false)?;
        drop(job);
        if flags & flag::UNDEFINE_SOURCE != 0 && persistent {
            self.undefine(uuid, 0)?;
        }
        Ok(())
    }

    /// virDomainAbortJob: the running migration (or save) cancelled.
    pub fn abort_job(&self, uuid: uuid::Uuid) -> Result<()> {
        let active = {
            let st = self.lock();
            if !st.doms.contains_key(&uuid) {
                return Err(perr(no_domain(
                    ErrorDomain::Qemu,
                    &format!("no domain with matching uuid '{uuid}'"),
                )));
            }
            st.job_stats.get(&uuid).is_some_and(|r| r.active.is_some())
        };
        if !active {
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                "no job is active on the domain",
            )));
        }
        let q = self.qmp_of(uuid).ok_or_else(|| {
            perr(operation_invalid(
                ErrorDomain::Qemu,
                "domain is not running",
            ))
        })?;
        q.execute("migrate_cancel", None)?;
        Ok(())
    }
}

impl Driver {
    /// virDomainScreenshot: QMP `screendump` of display `screen` (the first video
    /// device's, or `video{screen}`'s) into a file of the root's run directory, read
    /// back and removed; a PPM image.
    pub fn screenshot(&self, uuid: uuid::Uuid, screen: u32) -> Result<(String, Vec<u8>)> {
        let (q, _) = self.running(uuid)?;
        let (name, videos) = self
            .with_dom(uuid, |d| {
                let live = d.run.as_ref().map_or(&d.def, |r| &r.live);
                (d.def.name().to_string(), live.devices_of("video").count())
            })
            .map_err(perr)?;
        if videos == 0 {
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                &format!("domain '{name}' has no video device to take a screenshot of"),
            )));
        }
        if screen as usize >= videos {
            return Err(MigrateError::InvalidArg(format!(
                "no screen {screen}: domain '{name}' has {videos} video device(s)"
            ))
            .into());
        }
        let path = self
            .paths
            .run
            .join(format!("{name}.screenshot.{}.ppm", unix_us()));
        let mut args = json!({"filename": path});
        if screen > 0 {
            args["device"] = json!(format!("video{screen}"));
        }
        let taken = q.execute("screendump", Some(args));
        let read = taken
            .map_err(DriverError::from)
            .and_then(|_| std::fs::read(&path).map_err(super::io("read screenshot", &path)));
        let _ = std::fs::remove_file(&path);
        Ok(("image/x-portable-pixmap".into(), read?))
    }
}

/// Waits until the destination QEMU has read the whole stream (its run state leaves
/// `inmigrate`); an error names the state it ended in. The guest is paused until this
/// returns, and the source's completion usually comes a few milliseconds before the
/// destination's: QEMU's `MIGRATION` event (the `events` capability was turned on before
/// `migrate-incoming`) ends the wait at once, the run state is asked at the start (the
/// watch registered first: an event after that answer is not missed) and every
/// [`EVENT_FALLBACK`] as a safety net. (Asking every millisecond instead competed with
/// the stream's loading in QEMU's main loop.)
fn wait_stream_read(q: &Qmp) -> std::result::Result<(), String> {
    let deadline = Instant::now() + FINISH_WAIT;
    let ended = q.watch(migration_ended);
    loop {
        let st = q.execute("query-status", None).map_err(|e| e.to_string())?;
        let status = st["status"].as_str().unwrap_or("");
        match status {
            "inmigrate" => {}
            "paused" | "prelaunch" | "running" | "postmigrate" | "finish-migrate" => return Ok(()),
            other => {
                return Err(format!(
                    "qemu is in state '{other}' after the incoming stream"
                ));
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "qemu did not finish reading the incoming stream in {} s",
                FINISH_WAIT.as_secs()
            ));
        }
        if let Some(ev) = ended.wait(EVENT_FALLBACK).map_err(|e| e.to_string())? {
            // the run state was set before QEMU reported the status: asked once more
            if ev.data["status"] == "failed" {
                return Err("qemu failed to read the incoming stream".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_uris_parse_in_libvirt_and_qemu_forms() {
        assert_eq!(
            parse_tcp_uri("tcp:127.0.0.1:49152").unwrap(),
            ("127.0.0.1".into(), Some(49152))
        );
        assert_eq!(
            parse_tcp_uri("tcp://host.example:4444").unwrap(),
            ("host.example".into(), Some(4444))
        );
        assert_eq!(parse_tcp_uri("tcp:dest").unwrap(), ("dest".into(), None));
        assert_eq!(
            parse_tcp_uri("tcp:[::1]:5000").unwrap(),
            ("::1".into(), Some(5000))
        );
        assert!(parse_tcp_uri("rdma:1.2.3.4:5").is_err());
        assert!(parse_tcp_uri("tcp:host:notaport").is_err());
        assert!(parse_tcp_uri("tcp:").is_err());
        assert_eq!(qemu_tcp_uri("::1", 5), "tcp:[::1]:5");
        assert_eq!(qemu_tcp_uri("10.0.0.1", 49152), "tcp:10.0.0.1:49152");
    }

    #[test]
    fn a_completion_answered_before_qemus_totals_gets_them_from_the_events() {
        let ev = |s: i64, us: i64| rvirt_qmp::Event {
            name: "STOP".into(),
            data: Value::Null,
            timestamp: Some((s, us)),
            seq: 1,
        };
        assert_eq!(
            event_us(&ev(1_700_000_000, 250_000)),
            Some(1_700_000_000_250_000)
        );
        assert_eq!(event_us(&ev(-1, 0)), None);
        let start = 1_700_000_000_000_000;
        // QEMU's totals not computed yet: from the STOP and the completion
        let mut m = json!({"status": "completed", "total-time": 0, "downtime": 0});
        complete_times(&mut m, start, Some(start + 400_000), Some(start + 421_500));
        assert_eq!(m["total-time"], 421);
        assert_eq!(m["downtime"], 21);
        // QEMU's own are kept
        let mut m = json!({"status": "completed", "total-time": 300, "downtime": 12});
        complete_times(&mut m, start, Some(start + 1), Some(start + 2));
        assert_eq!(
            (m["total-time"].as_u64(), m["downtime"].as_u64()),
            (Some(300), Some(12))
        );
        // without the completion's time nothing is made up
        let mut m = json!({"status": "completed", "total-time": 0, "downtime": 0});
        complete_times(&mut m, start, Some(start + 1), None);
        assert_eq!(m["total-time"], 0);
    }

    #[test]
    fn parameters_are_found_by_name_the_last_one_winning() {
        let p = vec![
            TypedParam::new("migrate_uri", TypedValue::String("tcp:a:1".into())),
            TypedParam::new("bandwidth", TypedValue::ULLong(8)),
            TypedParam::new("migrate_uri", TypedValue::String("tcp:b:2".into())),
        ];
        assert_eq!(param_str(&p, flag::PARAM_URI), Some("tcp:b:2"));
        assert_eq!(param_u64(&p, flag::PARAM_BANDWIDTH), Some(8));
        assert_eq!(param_str(&p, flag::PARAM_DEST_XML), None);
    }

    #[test]
    fn nbd_cookies_are_versioned_json_and_an_empty_one_is_shared_storage() {
        let c = NbdCookie {
            version: COOKIE_VERSION,
            host: "dst".into(),
            port: 49153,
            disks: vec!["vda".into()],
        };
        let bytes = serde_json::to_vec(&c).unwrap();
        assert_eq!(NbdCookie::decode(&bytes).unwrap(), Some(c));
        assert_eq!(NbdCookie::decode(b"").unwrap(), None);
        let future = br#"{"version": 2, "host": "h", "port": 1, "disks": []}"#;
        assert!(
            NbdCookie::decode(future)
                .unwrap_err()
                .to_string()
                .contains("version 2")
        );
        assert!(NbdCookie::decode(b"garbage").is_err());
    }

    #[test]
    fn a_free_port_comes_from_libvirts_range() {
        let p = free_port("127.0.0.1").unwrap();
        assert!((PORT_MIN..=PORT_MAX).contains(&p));
    }
}

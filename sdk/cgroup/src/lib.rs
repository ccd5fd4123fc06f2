//! A control group on cgroup v1 (one directory per controller hierarchy,
//! `/sys/fs/cgroup/<controller>/<rel>`) or v2 (one directory in the unified tree):
//! creation, limits, membership (also of a forked child before `exec`, [`JoinFiles`]),
//! freezer, accounting and removal. Used by the LXC plugin for its containers and by
//! rvirtd for its plugin host processes.

use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors of cgroup operations.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
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
    /// The host's controllers cannot apply a limit.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    /// No usable cgroup hierarchy.
    #[error("no cgroup hierarchy found under {0} (neither v1 controllers nor a v2 tree)")]
    NoHierarchy(String),
    /// Processes stayed in the group.
    #[error("cgroup '{}' still has processes after {ms} ms", path.display())]
    Busy {
        /// The group.
        path: PathBuf,
        /// How long we waited.
        ms: u128,
    },
}

type Result<T> = std::result::Result<T, CgroupError>;

/// Limits of a group (bytes and libvirt's CPU units). Persisted by the LXC plugin in its
/// launch spec: a field added later is `#[serde(default)]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Hard memory limit in bytes (`<memtune><hard_limit>`, else `<memory>`).
    pub memory_bytes: Option<u64>,
    /// Soft limit in bytes.
    pub soft_bytes: Option<u64>,
    /// Memory + swap limit in bytes.
    pub swap_hard_bytes: Option<u64>,
    /// `<cputune><shares>`.
    pub cpu_shares: Option<u64>,
    /// `<cputune><period>` (µs).
    pub cpu_period: Option<u64>,
    /// `<cputune><quota>` (µs, negative: unlimited).
    pub cpu_quota: Option<i64>,
    /// `<blkiotune><weight>` (10 to 1000).
    #[serde(default)]
    pub blkio_weight: Option<u32>,
    /// Most tasks (processes and threads) in the group (`pids.max`).
    #[serde(default)]
    pub pids_max: Option<u64>,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io { what, path, source }
}

/// The files a block I/O weight is written to, by preference: BFQ's, then the generic
/// one (v1 `blkio`, v2 `io`).
const V1_WEIGHT_FILES: &[&str] = &["blkio.bfq.weight", "blkio.weight"];
const V2_WEIGHT_FILES: &[&str] = &["io.bfq.weight", "io.weight"];

/// Whether this host can weight a container's block I/O: the v1 `blkio` hierarchy has a
/// weight file (its I/O scheduler has weights), or the v2 tree has the `io` controller.
/// The error says what is missing.
pub fn blkio_weight_available() -> std::result::Result<(), String> {
    let root = mount_root();
    let blkio = root.join("blkio");
    if blkio.join("cgroup.procs").is_file() {
        // the weight files show in child groups only with some schedulers: look in the
        // hierarchy's root and in the groups already there
        let mut dirs = vec![blkio.clone()];
        if let Ok(rd) = std::fs::read_dir(&blkio) {
            dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        if dirs
            .iter()
            .any(|d| V1_WEIGHT_FILES.iter().any(|f| d.join(f).is_file()))
        {
            return Ok(());
        }
        return Err(format!(
            "the blkio controller at {} has neither {}: no I/O scheduler with weights",
            blkio.display(),
            V1_WEIGHT_FILES.join(" nor ")
        ));
    }
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "io") {
        return Ok(());
    }
    Err(format!(
        "no blkio controller under {} (neither a v1 blkio hierarchy nor the v2 io controller)",
        root.display()
    ))
}

/// The v1 controllers a container gets a group in (those the host has).
pub const V1_CONTROLLERS: &[&str] = &["memory", "cpu", "cpuacct", "freezer", "pids", "blkio"];

/// A container's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// cgroup v1: `(controller, directory)` per hierarchy (co-mounted controllers such as
    /// `cpu,cpuacct` share one directory, listed under each name).
    V1(Vec<(String, PathBuf)>),
    /// cgroup v2: the group's directory.
    V2(PathBuf),
}

/// The cgroup mount point (`RVIRT_CGROUP_ROOT` for tests, else `/sys/fs/cgroup`).
pub fn mount_root() -> PathBuf {
    std::env::var_os("RVIRT_CGROUP_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

impl Cgroup {
    /// The group at `rel` (e.g. `machine/ct1.libvirt-lxc`) in this host's layout.
    pub fn at(rel: &str) -> Result<Cgroup> {
        let root = mount_root();
        let mut v1 = Vec::new();
        for c in V1_CONTROLLERS {
            let d = root.join(c);
            if d.join("cgroup.procs").is_file() {
                v1.push((c.to_string(), d.join(rel)));
            }
        }
        if !v1.is_empty() {
            return Ok(Cgroup::V1(v1));
        }
        if root.join("cgroup.controllers").is_file() {
            return Ok(Cgroup::V2(root.join(rel)));
        }
        Err(CgroupError::NoHierarchy(root.display().to_string()))
    }

    /// The distinct directories of the group.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V1(v) => {
                let mut out: Vec<PathBuf> = Vec::new();
                for (_, d) in v {
                    let canon = d
                        .parent()
                        .and_then(|p| p.canonicalize().ok())
                        .map(|p| p.join(d.file_name().unwrap_or_default()))
                        .unwrap_or_else(|| d.clone());
                    if !out.contains(&canon) {
                        out.push(canon);
                    }
                }
                out
            }
            Cgroup::V2(d) => vec![d.clone()],
        }
    }

    fn dir_of(&self, controller: &str) -> Option<&Path> {
        match self {
            Cgroup::V1(v) => v
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, d)| d.as_path()),
            Cgroup::V2(d) => Some(d),
        }
    }

    /// Creates the group's directories (and their parents), enabling the v2 controllers
    /// on the way down.
    pub fn create(&self) -> Result<()> {
        if let Cgroup::V2(d) = self {
            let root = mount_root();
            let mut cur = root.clone();
            if let Ok(rel) = d.strip_prefix(&root) {
                let comps: Vec<_> = rel.components().collect();
                for (i, c) in comps.iter().enumerate() {
                    // Controllers must be enabled in every ancestor's subtree_control.
                    for ctl in ["+memory", "+cpu", "+pids", "+io"] {
                        let _ = std::fs::write(cur.join("cgroup.subtree_control"), ctl);
                    }
                    cur = cur.join(c);
                    if i + 1 < comps.len() {
                        std::fs::create_dir_all(&cur).map_err(io("create", &cur))?;
                    }
                }
            }
        }
        for d in self.dirs() {
            std::fs::create_dir_all(&d).map_err(io("create", &d))?;
        }
        Ok(())
    }

    /// Writes a block I/O weight to the first of `files` the group has.
    fn write_weight(&self, controller: &str, files: &[&str], value: &str) -> Result<()> {
        let Some(d) = self.dir_of(controller) else {
            return Err(CgroupError::Unsupported(format!(
                "block I/O weight: the host has no {controller} controller"
            )));
        };
        let Some(f) = files.iter().map(|f| d.join(f)).find(|p| p.is_file()) else {
            return Err(CgroupError::Unsupported(format!(
                "block I/O weight: {} has neither {}",
                d.display(),
                files.join(" nor ")
            )));
        };
        std::fs::write(&f, value).map_err(io("write", &f))
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> Result<()> {
        let Some(d) = self.dir_of(controller) else {
            return Ok(());
        };
        let p = d.join(file);
        std::fs::write(&p, value).map_err(io("write", &p))
    }

    /// Writes `file` of `controller`, which the host must have: a limit the host cannot
    /// apply is refused, not dropped.
    fn write_required(&self, controller: &str, file: &str, value: &str) -> Result<()> {
        let Some(d) = self.dir_of(controller) else {
            return Err(CgroupError::Unsupported(format!(
                "{file}: the host has no {controller} controller"
            )));
        };
        let p = d.join(file);
        std::fs::write(&p, value).map_err(io("write", &p))
    }

    /// Applies `<memory>`/`<memtune>`/`<cputune>` limits.
    pub fn apply(&self, l: &Limits) -> Result<()> {
        match self {
            Cgroup::V1(_) => {
                if let Some(b) = l.memory_bytes {
                    self.write("memory", "memory.limit_in_bytes", &b.to_string())?;
                }
                if let Some(b) = l.soft_bytes {
                    self.write("memory", "memory.soft_limit_in_bytes", &b.to_string())?;
                }
                if let Some(b) = l.swap_hard_bytes {
                    self.write("memory", "memory.memsw.limit_in_bytes", &b.to_string())?;
                }
                if let Some(s) = l.cpu_shares {
                    self.write("cpu", "cpu.shares", &s.to_string())?;
                }
                if let Some(p) = l.cpu_period {
                    self.write("cpu", "cpu.cfs_period_us", &p.to_string())?;
                }
                if let Some(q) = l.cpu_quota {
                    self.write("cpu", "cpu.cfs_quota_us", &q.to_string())?;
                }
                if let Some(w) = l.blkio_weight {
                    self.write_weight("blkio", V1_WEIGHT_FILES, &w.to_string())?;
                }
                if let Some(n) = l.pids_max {
                    self.write_required("pids", "pids.max", &n.to_string())?;
                }
            }
            Cgroup::V2(_) => {
                if let Some(b) = l.memory_bytes {
                    self.write("memory", "memory.max", &b.to_string())?;
                }
                if let Some(b) = l.soft_bytes {
                    self.write("memory", "memory.low", &b.to_string())?;
                }
                if let (Some(s), Some(m)) = (l.swap_hard_bytes, l.memory_bytes) {
                    self.write(
                        "memory",
                        "memory.swap.max",
                        &s.saturating_sub(m).to_string(),
                    )?;
                }
                if let Some(s) = l.cpu_shares {
                    self.write("cpu", "cpu.weight", &s.clamp(1, 10000).to_string())?;
                }
                if l.cpu_period.is_some() || l.cpu_quota.is_some() {
                    let period = l.cpu_period.unwrap_or(100_000);
                    let quota = match l.cpu_quota {
                        Some(q) if q > 0 => q.to_string(),
                        _ => "max".into(),
                    };
                    self.write("cpu", "cpu.max", &format!("{quota} {period}"))?;
                }
                if let Some(w) = l.blkio_weight {
                    self.write_weight("io", V2_WEIGHT_FILES, &format!("default {w}"))?;
                }
                if let Some(n) = l.pids_max {
                    self.write_required("pids", "pids.max", &n.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The files a forked child writes to join the group, prebuilt so that joining
    /// allocates nothing ([`JoinFiles::join_current`]).
    pub fn join_files(&self) -> Result<JoinFiles> {
        let mut files = Vec::new();
        for d in self.dirs() {
            let p = d.join("cgroup.procs");
            let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| {
                CgroupError::Unsupported(format!("cgroup path '{}' has a NUL byte", p.display()))
            })?;
            files.push(c);
        }
        Ok(JoinFiles(files))
    }

    /// Removes the group's directories if no process is left in them (nothing is
    /// killed: the processes may be guests a plugin started), then its parents up to
    /// `parents` levels where they are empty too. Fails, naming the directory, when the
    /// group still has processes.
    pub fn remove_if_empty(&self, parents: usize) -> Result<()> {
        for d in self.dirs() {
            match std::fs::remove_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &d)(e)),
            }
            let mut p = d.parent();
            for _ in 0..parents {
                let Some(dir) = p else { break };
                if std::fs::remove_dir(dir).is_err() {
                    break;
                }
                p = dir.parent();
            }
        }
        Ok(())
    }

    /// Moves `pid` into the group (every hierarchy).
    pub fn add(&self, pid: i32) -> Result<()> {
        for d in self.dirs() {
            let p = d.join("cgroup.procs");
            std::fs::write(&p, pid.to_string()).map_err(io("write", &p))?;
        }
        Ok(())
    }

    /// The processes in the group.
    pub fn procs(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for d in self.dirs() {
            if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for p in s.lines().filter_map(|l| l.trim().parse().ok()) {
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
            }
        }
        out
    }

    /// Whether any of the group's directories exists.
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.is_dir())
    }

    /// Freezes (or thaws) every process of the group.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        match self {
            Cgroup::V1(_) => self.write(
                "freezer",
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            Cgroup::V2(_) => self.write("cpu", "cgroup.freeze", if frozen { "1" } else { "0" }),
        }
    }

    /// Whether the group is frozen.
    pub fn is_frozen(&self) -> bool {
        match self {
            Cgroup::V1(_) => self
                .dir_of("freezer")
                .and_then(|d| std::fs::read_to_string(d.join("freezer.state")).ok())
                .is_some_and(|s| s.trim() == "FROZEN"),
            Cgroup::V2(d) => {
                std::fs::read_to_string(d.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
            }
        }
    }

    fn read_u64(&self, controller: &str, file: &str) -> Option<u64> {
        let d = self.dir_of(controller)?;
        std::fs::read_to_string(d.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn stat_field(&self, controller: &str, file: &str, key: &str) -> Option<u64> {
        let d = self.dir_of(controller)?;
        let s = std::fs::read_to_string(d.join(file)).ok()?;
        s.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
    }

    /// CPU time used by the group's processes, in nanoseconds.
    pub fn cpu_ns(&self) -> u64 {
        match self {
            Cgroup::V1(_) => self.read_u64("cpuacct", "cpuacct.usage").unwrap_or(0),
            Cgroup::V2(_) => self
                .stat_field("cpu", "cpu.stat", "usage_usec")
                .map_or(0, |u| u * 1000),
        }
    }

    /// User and system CPU time of the group, in nanoseconds (`cpuacct.stat` in clock
    /// ticks on v1, `cpu.stat` in microseconds on v2).
    pub fn cpu_user_system_ns(&self) -> Option<(u64, u64)> {
        match self {
            Cgroup::V1(_) => {
                let hz = rustix::param::clock_ticks_per_second().max(1);
                let ns = 1_000_000_000 / hz;
                Some((
                    self.stat_field("cpuacct", "cpuacct.stat", "user")? * ns,
                    self.stat_field("cpuacct", "cpuacct.stat", "system")? * ns,
                ))
            }
            Cgroup::V2(_) => Some((
                self.stat_field("cpu", "cpu.stat", "user_usec")? * 1000,
                self.stat_field("cpu", "cpu.stat", "system_usec")? * 1000,
            )),
        }
    }

    /// CPU time of the group on each host CPU, in nanoseconds (v1's
    /// `cpuacct.usage_percpu`; v2 has no per-CPU accounting: `None`).
    pub fn cpu_ns_per_cpu(&self) -> Option<Vec<u64>> {
        let d = self.dir_of("cpuacct")?;
        if matches!(self, Cgroup::V2(_)) {
            return None;
        }
        let s = std::fs::read_to_string(d.join("cpuacct.usage_percpu")).ok()?;
        Some(
            s.split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect(),
        )
    }

    /// Swap in use by the group, in bytes, where the host accounts it.
    pub fn swap_bytes(&self) -> Option<u64> {
        match self {
            Cgroup::V1(_) => {
                let memsw = self.read_u64("memory", "memory.memsw.usage_in_bytes")?;
                Some(memsw.saturating_sub(self.memory_bytes()))
            }
            Cgroup::V2(_) => self.read_u64("memory", "memory.swap.current"),
        }
    }

    /// Times the group was throttled by its CPU quota (`cpu.stat nr_throttled`).
    pub fn nr_throttled(&self) -> u64 {
        self.stat_field("cpu", "cpu.stat", "nr_throttled")
            .unwrap_or(0)
    }

    /// Memory in use by the group, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        match self {
            Cgroup::V1(_) => self
                .read_u64("memory", "memory.usage_in_bytes")
                .unwrap_or(0),
            Cgroup::V2(_) => self.read_u64("memory", "memory.current").unwrap_or(0),
        }
    }

    /// Forks and thread creations the group's `pids.max` refused so far (`pids.events`
    /// `max`, v1 and v2).
    pub fn pids_refused(&self) -> u64 {
        self.stat_field("pids", "pids.events", "max").unwrap_or(0)
    }

    /// OOM kills in the group so far.
    pub fn oom_kills(&self) -> u64 {
        match self {
            Cgroup::V1(_) => self.stat_field("memory", "memory.oom_control", "oom_kill"),
            Cgroup::V2(_) => self.stat_field("memory", "memory.events", "oom_kill"),
        }
        .unwrap_or(0)
    }

    /// Kills every process left in the group, waits (up to `timeout`) for it to empty,
    /// then removes its directories, and their parent when it is an embedded LXC root's
    /// (`rvirt-embed-*`) and empty. [`Cgroup::remove_if_empty`] kills nothing.
    pub fn remove(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        // A frozen group's processes cannot die: thaw it first.
        let _ = self.freeze(false);
        loop {
            let procs = self.procs();
            if procs.is_empty() {
                break;
            }
            for p in procs {
                // SAFETY: kill(2) with a pid read from the group; no memory is involved.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            if start.elapsed() > timeout {
                return Err(CgroupError::Busy {
                    path: self.dirs().into_iter().next().unwrap_or_default(),
                    ms: start.elapsed().as_millis(),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for d in self.dirs() {
            // rmdir can answer EBUSY for a moment after the last task left.
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if tries < 200 && start.elapsed() < timeout => {
                        let _ = e;
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => return Err(io("remove", &d)(e)),
                }
            }
            // The embedded root's own parent goes when it is empty (others may share
            // `machine`, which stays).
            if let Some(p) = d.parent()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("rvirt-embed-"))
            {
                let _ = std::fs::remove_dir(p);
            }
        }
        Ok(())
    }
}

/// The `cgroup.procs` files of a group, as C strings: what a child writes between
/// `fork` and `exec` to move itself in ([`Cgroup::join_files`]).
#[derive(Debug, Clone)]
pub struct JoinFiles(Vec<CString>);

impl JoinFiles {
    /// Moves the calling process into the group: writes `0` (the writer itself, on v1
    /// and v2) to each hierarchy's `cgroup.procs`. Async-signal-safe: only `open`,
    /// `write` and `close`, and no allocation, so it may run in a forked child of a
    /// multithreaded process (`CommandExt::pre_exec`).
    pub fn join_current(&self) -> std::io::Result<()> {
        for f in &self.0 {
            // SAFETY: `f` is a NUL-terminated path that lives for the call; open(2) and
            // close(2) are async-signal-safe and touch no memory of ours.
            let fd = unsafe { libc::open(f.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: writes one byte from a static buffer to the descriptor just opened.
            let n = unsafe { libc::write(fd, c"0".as_ptr().cast(), 1) };
            let err = (n != 1).then(std::io::Error::last_os_error);
            // SAFETY: closes the descriptor opened above, once.
            unsafe { libc::close(fd) };
            if let Some(e) = err {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The files, in order.
    pub fn paths(&self) -> impl Iterator<Item = &std::ffi::CStr> {
        self.0.iter().map(|c| c.as_c_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blkio_weight_goes_to_the_file_the_scheduler_has() {
        let d = tempfile_dir("weight");
        let v1 = Cgroup::V1(vec![("blkio".into(), d.clone())]);
        let limits = Limits {
            blkio_weight: Some(500),
            ..Limits::default()
        };
        // neither file: refused, saying why
        let e = v1.apply(&limits).unwrap_err().to_string();
        assert!(e.contains("blkio.bfq.weight nor blkio.weight"), "{e}");
        // the generic file
        std::fs::write(d.join("blkio.weight"), "").unwrap();
        v1.apply(&limits).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("blkio.weight")).unwrap(),
            "500"
        );
        // BFQ's first when both exist
        std::fs::write(d.join("blkio.bfq.weight"), "").unwrap();
        v1.apply(&limits).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("blkio.bfq.weight")).unwrap(),
            "500"
        );
        // v2: io.weight with its "default" key
        let v2 = Cgroup::V2(d.clone());
        std::fs::write(d.join("io.weight"), "").unwrap();
        v2.apply(&limits).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("io.weight")).unwrap(),
            "default 500"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn pids_max_is_written_or_refused_on_both_layouts() {
        let d = tempfile_dir("pids");
        let limits = Limits {
            pids_max: Some(7),
            ..Limits::default()
        };
        // v1 without a pids hierarchy: refused, naming the controller
        let none = Cgroup::V1(vec![("memory".into(), d.clone())]);
        let e = none.apply(&limits).unwrap_err().to_string();
        assert!(e.contains("no pids controller"), "{e}");
        let v1 = Cgroup::V1(vec![("pids".into(), d.clone())]);
        v1.apply(&limits).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("pids.max")).unwrap(), "7");
        std::fs::remove_file(d.join("pids.max")).unwrap();
        Cgroup::V2(d.clone()).apply(&limits).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("pids.max")).unwrap(), "7");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn limits_persisted_before_pids_max_still_read() {
        let old = r#"{"memory_bytes":1024,"soft_bytes":null,"swap_hard_bytes":null,
            "cpu_shares":2,"cpu_period":null,"cpu_quota":-1}"#;
        let l: Limits = serde_json::from_str(old).unwrap();
        assert_eq!(l.memory_bytes, Some(1024));
        assert_eq!(l.pids_max, None);
        assert_eq!(l.blkio_weight, None);
    }

    #[test]
    fn a_process_joins_by_writing_0_and_empty_groups_go_with_their_parents() {
        let d = tempfile_dir("join");
        let group = d.join("a/b/g");
        let v1 = Cgroup::V1(vec![("memory".into(), group.clone())]);
        v1.create().unwrap();
        // regular files stand in for the kernel's: what is written shows
        let procs = group.join("cgroup.procs");
        std::fs::write(&procs, "").unwrap();
        let files = v1.join_files().unwrap();
        assert_eq!(
            files
                .paths()
                .map(|p| p.to_str().unwrap())
                .collect::<Vec<_>>(),
            [procs.to_str().unwrap()]
        );
        files.join_current().unwrap();
        assert_eq!(std::fs::read_to_string(&procs).unwrap(), "0");
        // a directory with a file in it is busy: refused, nothing removed
        assert!(v1.remove_if_empty(2).is_err());
        assert!(group.is_dir());
        std::fs::remove_file(&procs).unwrap();
        v1.remove_if_empty(2).unwrap();
        assert!(!group.exists() && !d.join("a/b").exists() && !d.join("a").exists());
        assert!(d.is_dir(), "only `parents` levels go");
        // joining a group that is gone fails
        assert!(files.join_current().is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rvirt-cg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

//! Statistics of running domains, in libvirt's typed-parameter names: QMP for what QEMU
//! knows (`query-blockstats`, `query-balloon`, `query-cpus-fast`), `/proc` for CPU times
//! (the QEMU process and its vCPU threads) and `/proc/net/dev` for the TAP devices.
//!
//! A domain that is not running has the `state`, `balloon` and `vcpu` counts of its
//! definition only, as libvirt's.

use super::process::proc_cpu_ns;
use super::{Driver, Result, perr};
use rvirt_qmp::Qmp;
use rvirt_sdk::abi::{ErrorCode, ErrorDomain, PluginError, TypedParam, TypedValue};
use rvirt_sdk::util::operation_invalid;
use rvirt_xml::Domain;
use serde_json::Value;

/// `VIR_DOMAIN_STATS_*` groups.
const STATE: u32 = 1;
const CPU_TOTAL: u32 = 2;
const BALLOON: u32 = 4;
const VCPU: u32 = 8;
const INTERFACE: u32 = 16;
const BLOCK: u32 = 32;
/// Every group this driver has (`stats` 0 asks for them all).
const GROUPS: u32 = STATE | CPU_TOTAL | BALLOON | VCPU | INTERFACE | BLOCK;

fn ull(field: impl Into<String>, v: u64) -> TypedParam {
    TypedParam::new(field.into(), TypedValue::ULLong(v))
}

fn uint(field: impl Into<String>, v: u32) -> TypedParam {
    TypedParam::new(field.into(), TypedValue::UInt(v))
}

fn string(field: impl Into<String>, v: &str) -> TypedParam {
    TypedParam::new(field.into(), TypedValue::String(v.into()))
}

/// User and system time of a task's `stat` file, in ns.
fn task_times(stat_path: &str) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(stat_path).ok()?;
    let f: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let hz = rustix::param::clock_ticks_per_second().max(1);
    let ns = 1_000_000_000 / hz;
    Some((n(11).saturating_mul(ns), n(12).saturating_mul(ns)))
}

/// User plus system time (ns) of a task's `stat` text and the host CPU it last ran on.
fn task_time_and_cpu(stat: &str) -> Option<(u64, usize)> {
    let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let hz = rustix::param::clock_ticks_per_second().max(1);
    let t = (n(11)? + n(12)?).saturating_mul(1_000_000_000 / hz);
    Some((t, usize::try_from(n(36)?).ok()?))
}

/// The `cpuacct.usage_percpu` file of the cgroup `pid` is in, when that cgroup is its
/// own: not the root, whose figures are the whole host's, nor a group it shares with
/// other processes (an isolated plugin's cgroup, which its guests inherit).
fn own_usage_percpu(pid: i32) -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctl, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctl.split(',').any(|c| c == "cpuacct").then_some(path)
    })?;
    if path == "/" {
        return None;
    }
    let dir = std::path::Path::new("/sys/fs/cgroup/cpuacct").join(path.trim_start_matches('/'));
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    if procs.lines().any(|l| l.trim() != pid.to_string()) {
        return None;
    }
    let f = dir.join("cpuacct.usage_percpu");
    f.is_file().then_some(f)
}

/// Per host CPU (`ncpu` of them): the time of `pid`'s threads and of those among them
/// that are vCPU threads (`vcpu_tids`), each thread's whole time counted on the CPU it
/// last ran on (`/proc/PID/task/*/stat`), or `cpu_time` from the cgroup's
/// `cpuacct.usage_percpu` where the process has a cgroup of its own.
fn per_cpu_times(pid: i32, vcpu_tids: &[i64], ncpu: usize) -> (Vec<u64>, Vec<u64>) {
    let mut cpu = vec![0u64; ncpu];
    let mut vcpu = vec![0u64; ncpu];
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<i64>().ok()) else {
                continue;
            };
            let Some((t, c)) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| task_time_and_cpu(&s))
            else {
                continue;
            };
            if c < ncpu {
                cpu[c] += t;
                if vcpu_tids.contains(&tid) {
                    vcpu[c] += t;
                }
            }
        }
    }
    if let Some(f) = own_usage_percpu(pid)
        && let Ok(text) = std::fs::read_to_string(f)
    {
        for (i, v) in text
            .split_whitespace()
            .filter_map(|v| v.parse::<u64>().ok())
            .enumerate()
            .take(ncpu)
        {
            cpu[i] = v;
        }
    }
    (cpu, vcpu)
}

/// QEMU's balloon guest statistics (`guest-stats` of the virtio balloon) with libvirt's
/// names and the divisor to KiB (the memory figures are in bytes, the fault counts are
/// counts).
const GUEST_STATS: [(&str, &str, u64); 10] = [
    ("stat-swap-in", "swap_in", 1024),
    ("stat-swap-out", "swap_out", 1024),
    ("stat-major-faults", "major_fault", 1),
    ("stat-minor-faults", "minor_fault", 1),
    ("stat-free-memory", "unused", 1024),
    ("stat-total-memory", "available", 1024),
    ("stat-available-memory", "usable", 1024),
    ("stat-disk-caches", "disk_caches", 1024),
    ("stat-htlb-pgalloc", "hugetlb_pgalloc", 1),
    ("stat-htlb-pgfail", "hugetlb_pgfail", 1),
];

/// The QOM path of the balloon device the driver names `balloon0`.
pub(super) const BALLOON_PATH: &str = "/machine/peripheral/balloon0";

/// The guest statistics of a `guest-stats` answer by libvirt name, then `last_update`;
/// the ones the guest does not report (QEMU's -1) are left out.
fn guest_stats(v: &Value) -> Vec<(&'static str, u64)> {
    let mut out: Vec<(&'static str, u64)> = GUEST_STATS
        .iter()
        .filter_map(|(q, name, div)| Some((*name, v["stats"][q].as_u64()? / div)))
        .collect();
    if let Some(t) = v["last-update"].as_u64().filter(|t| *t > 0) {
        out.insert(7, ("last_update", t));
    }
    out
}

/// Whether `live` has the virtio balloon (`balloon0`).
fn has_virtio_balloon(live: &Domain) -> bool {
    live.devices_of("memballoon")
        .any(|b| b.attr("model").unwrap_or("virtio") == "virtio")
}

/// The resident set size (KiB) of a process.
fn rss_kib(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|x| x.starts_with("VmRSS:"))
                .and_then(|x| x.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
}

/// One disk of a live definition: target, source, alias.
struct Disk {
    target: String,
    path: Option<String>,
    alias: Option<String>,
}

fn disks(live: &Domain) -> Vec<Disk> {
    live.devices_of("disk")
        .filter_map(|d| {
            Some(Disk {
                target: d.child("target")?.attr("dev")?.to_string(),
                path: d.child("source").and_then(|s| {
                    s.attr("file")
                        .or_else(|| s.attr("dev"))
                        .or_else(|| s.attr("name"))
                        .map(str::to_string)
                }),
                alias: d
                    .child("alias")
                    .and_then(|a| a.attr("name"))
                    .map(str::to_string),
            })
        })
        .collect()
}

/// One interface of a live definition: its host device (TAP) and MAC.
struct Nic {
    dev: Option<String>,
    mac: Option<String>,
}

fn nics(live: &Domain) -> Vec<Nic> {
    live.devices_of("interface")
        .map(|i| Nic {
            dev: i
                .child("target")
                .and_then(|t| t.attr("dev"))
                .map(str::to_string),
            mac: i
                .child("mac")
                .and_then(|m| m.attr("address"))
                .map(str::to_string),
        })
        .collect()
}

/// The `query-blockstats` entry of a disk (by its device alias).
fn blockstats_of<'a>(all: &'a Value, alias: Option<&str>) -> Option<&'a Value> {
    let alias = alias?;
    let qdev = format!("/machine/peripheral/{alias}/");
    all.as_array()?.iter().find(|b| {
        b["qdev"]
            .as_str()
            .is_some_and(|p| p == alias || p.starts_with(&qdev))
            || b["device"].as_str() == Some(alias)
    })
}

/// The counters of a TAP as the guest sees them (the host's receive is the guest's
/// transmit), in `virDomainInterfaceStats` order. Read from `/proc/net/dev`, which shows
/// the reader's network namespace (`/sys/class/net` shows the one sysfs was mounted in).
fn tap_counters(dev: &str) -> Option<[(&'static str, i64); 8]> {
    let table = std::fs::read_to_string("/proc/net/dev").ok()?;
    let line = table
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{dev}:")))?;
    let f: Vec<i64> = line
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(-1))
        .collect();
    // receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes
    // packets errs drop ...
    let host = |i: usize| f.get(i).copied();
    Some([
        ("rx_bytes", host(8)?),
        ("rx_packets", host(9)?),
        ("rx_errs", host(10)?),
        ("rx_drop", host(11)?),
        ("tx_bytes", host(0)?),
        ("tx_packets", host(1)?),
        ("tx_errs", host(2)?),
        ("tx_drop", host(3)?),
    ])
}

/// `virDomainBlockStatsFlags` names from a `query-blockstats` entry's `stats`.
fn block_fields(s: &Value) -> Vec<(&'static str, i64)> {
    let n = |k: &str| s[k].as_i64().unwrap_or(0);
    vec![
        ("rd_operations", n("rd_operations")),
        ("rd_bytes", n("rd_bytes")),
        ("rd_total_times", n("rd_total_time_ns")),
        ("wr_operations", n("wr_operations")),
        ("wr_bytes", n("wr_bytes")),
        ("wr_total_times", n("wr_total_time_ns")),
        ("flush_operations", n("flush_operations")),
        ("flush_total_times", n("flush_total_time_ns")),
        // QEMU counts no errors per device
        ("errs", -1),
    ]
}

/// What the statistics of a running domain come from.
struct Live {
    pid: i32,
    qmp: Option<Qmp>,
    live: Domain,
}

impl Driver {
    /// The running domain's pid, monitor and live definition, or `None` (not running);
    /// also its state, reason and definition.
    fn stats_source(
        &self,
        uuid: uuid::Uuid,
    ) -> std::result::Result<(i32, i32, Domain, Option<Live>), PluginError> {
        self.with_dom(uuid, |d| {
            (
                d.state,
                d.reason,
                d.def.clone(),
                d.run.as_ref().map(|r| Live {
                    pid: r.pid,
                    qmp: r.qmp.clone(),
                    live: r.live.clone(),
                }),
            )
        })
    }

    fn live_source(&self, uuid: uuid::Uuid) -> Result<Live> {
        let (_, _, _, live) = self.stats_source(uuid).map_err(perr)?;
        live.ok_or_else(|| {
            perr(operation_invalid(
                ErrorDomain::Qemu,
                "domain is not running",
            ))
        })
    }

    fn stats_qmp(live: &Live) -> Result<&Qmp> {
        live.qmp.as_ref().ok_or_else(|| {
            perr(operation_invalid(
                ErrorDomain::Qemu,
                "the domain's monitor is held by another process",
            ))
        })
    }

    /// `virConnectGetAllDomainStats` for one domain: the `stats` groups (0: all).
    pub fn domain_stats(&self, uuid: uuid::Uuid, stats: u32) -> Result<Vec<TypedParam>> {
        let stats = if stats == 0 { GROUPS } else { stats };
        let (st, reason, def, live) = self.stats_source(uuid).map_err(perr)?;
        let mut out = Vec::new();
        if stats & STATE != 0 {
            out.push(TypedParam::new("state.state", TypedValue::Int(st)));
            out.push(TypedParam::new("state.reason", TypedValue::Int(reason)));
        }
        let def_now = live.as_ref().map_or(&def, |l| &l.live);
        // the monitor's answers are sent together: one round trip for all of them
        let q = live.as_ref().and_then(|l| l.qmp.as_ref());
        let balloon = (stats & BALLOON != 0)
            .then(|| q.and_then(|q| q.send("query-balloon", None).ok()))
            .flatten();
        let cpus = (stats & VCPU != 0)
            .then(|| q.and_then(|q| q.send("query-cpus-fast", None).ok()))
            .flatten();
        let blocks = (stats & BLOCK != 0)
            .then(|| q.and_then(|q| q.send("query-blockstats", None).ok()))
            .flatten();
        let gstats = (stats & BALLOON != 0 && has_virtio_balloon(def_now))
            .then(|| {
                q.and_then(|q| {
                    q.send(
                        "qom-get",
                        Some(serde_json::json!({"path": BALLOON_PATH, "property": "guest-stats"})),
                    )
                    .ok()
                })
            })
            .flatten();
        let wait = |p: Option<rvirt_qmp::PendingReply>| {
            p.and_then(|p| p.wait(std::time::Duration::from_secs(10)).ok())
        };
        let balloon = wait(balloon);
        let cpus = wait(cpus);
        let blocks = wait(blocks);
        let gstats = wait(gstats);
        if stats & CPU_TOTAL != 0
            && let Some(l) = &live
        {
            out.push(ull("cpu.time", proc_cpu_ns(l.pid)));
            if let Some((user, system)) = task_times(&format!("/proc/{}/stat", l.pid)) {
                out.push(ull("cpu.user", user));
                out.push(ull("cpu.system", system));
            }
        }
        if stats & BALLOON != 0 {
            let current = balloon
                .as_ref()
                .and_then(|b| b["actual"].as_u64())
                .map_or(def_now.current_memory_kib(), |b| b / 1024);
            out.push(ull("balloon.current", current));
            out.push(ull("balloon.maximum", def_now.memory_kib()));
            for (name, v) in gstats.as_ref().map(guest_stats).unwrap_or_default() {
                let name = if name == "last_update" {
                    "last-update"
                } else {
                    name
                };
                out.push(ull(format!("balloon.{name}"), v));
            }
            if let Some(rss) = live.as_ref().and_then(|l| rss_kib(l.pid)) {
                out.push(ull("balloon.rss", rss));
            }
        }
        if stats & VCPU != 0 {
            let current = def_now.current_vcpus();
            out.push(uint("vcpu.current", current));
            out.push(uint("vcpu.maximum", def_now.max_vcpus()));
            if let (Some(l), Some(cpus)) = (&live, cpus.as_ref().and_then(Value::as_array)) {
                for c in cpus {
                    let (Some(i), Some(tid)) = (c["cpu-index"].as_u64(), c["thread-id"].as_i64())
                    else {
                        continue;
                    };
                    // VIR_VCPU_RUNNING
                    out.push(TypedParam::new(
                        format!("vcpu.{i}.state"),
                        TypedValue::Int(1),
                    ));
                    if let Some((u, s)) = task_times(&format!("/proc/{}/task/{tid}/stat", l.pid)) {
                        out.push(ull(format!("vcpu.{i}.time"), u + s));
                    }
                }
            }
        }
        if stats & INTERFACE != 0
            && let Some(l) = &live
        {
            let list = nics(&l.live);
            out.push(uint(
                "net.count",
                u32::try_from(list.len()).unwrap_or(u32::MAX),
            ));
            for (i, n) in list.iter().enumerate() {
                let name = n.dev.as_deref().or(n.mac.as_deref()).unwrap_or("");
                out.push(string(format!("net.{i}.name"), name));
                if let Some(c) = n.dev.as_deref().and_then(tap_counters) {
                    for (k, v) in c {
                        let (dir, what) = k.split_once('_').unwrap_or((k, ""));
                        let what = match what {
                            "packets" => "pkts",
                            w => w,
                        };
                        out.push(ull(format!("net.{i}.{dir}.{what}"), v.max(0) as u64));
                    }
                }
            }
        }
        if stats & BLOCK != 0
            && let Some(l) = &live
        {
            let list = disks(&l.live);
            out.push(uint(
                "block.count",
                u32::try_from(list.len()).unwrap_or(u32::MAX),
            ));
            for (i, d) in list.iter().enumerate() {
                out.push(string(format!("block.{i}.name"), &d.target));
                if let Some(p) = &d.path {
                    out.push(string(format!("block.{i}.path"), p));
                }
                let Some(b) = blocks
                    .as_ref()
                    .and_then(|all| blockstats_of(all, d.alias.as_deref()))
                else {
                    continue;
                };
                let s = &b["stats"];
                let n = |k: &str| s[k].as_u64().unwrap_or(0);
                for (k, v) in [
                    ("rd.reqs", n("rd_operations")),
                    ("rd.bytes", n("rd_bytes")),
                    ("rd.times", n("rd_total_time_ns")),
                    ("wr.reqs", n("wr_operations")),
                    ("wr.bytes", n("wr_bytes")),
                    ("wr.times", n("wr_total_time_ns")),
                    ("fl.reqs", n("flush_operations")),
                    ("fl.times", n("flush_total_time_ns")),
                ] {
                    out.push(ull(format!("block.{i}.{k}"), v));
                }
                if let Some(w) = s["wr_highest_offset"].as_u64() {
                    out.push(ull(format!("block.{i}.allocation"), w));
                }
            }
        }
        Ok(out)
    }

    /// `virDomainBlockStatsFlags`: the disk `disk` names (target or source path).
    pub fn block_stats(&self, uuid: uuid::Uuid, disk: &str) -> Result<Vec<TypedParam>> {
        let l = self.live_source(uuid)?;
        let all = disks(&l.live);
        let d = all
            .iter()
            .find(|d| d.target == disk || d.path.as_deref() == Some(disk))
            .ok_or_else(|| {
                perr(PluginError::new(
                    ErrorCode::InvalidArg,
                    ErrorDomain::Qemu,
                    format!("invalid argument: invalid path: {disk}"),
                ))
            })?;
        let stats = Self::stats_qmp(&l)?.execute("query-blockstats", None)?;
        let b = blockstats_of(&stats, d.alias.as_deref()).ok_or_else(|| {
            perr(PluginError::new(
                ErrorCode::InternalError,
                ErrorDomain::Qemu,
                format!(
                    "internal error: qemu reports no statistics of disk '{}'",
                    d.target
                ),
            ))
        })?;
        Ok(block_fields(&b["stats"])
            .into_iter()
            .map(|(k, v)| TypedParam::new(k, TypedValue::LLong(v)))
            .collect())
    }

    /// `virDomainInterfaceStats`: the interface `device` names (TAP name or MAC).
    pub fn interface_stats(&self, uuid: uuid::Uuid, device: &str) -> Result<Vec<TypedParam>> {
        let l = self.live_source(uuid)?;
        let n = nics(&l.live)
            .into_iter()
            .find(|n| {
                n.dev.as_deref() == Some(device)
                    || n.mac
                        .as_deref()
                        .is_some_and(|m| m.eq_ignore_ascii_case(device))
            })
            .ok_or_else(|| {
                perr(PluginError::new(
                    ErrorCode::InvalidArg,
                    ErrorDomain::Qemu,
                    format!("invalid argument: invalid path, '{device}' is not a known interface"),
                ))
            })?;
        let dev = n.dev.unwrap_or_default();
        let c = tap_counters(&dev).ok_or_else(|| {
            perr(PluginError::new(
                ErrorCode::OperationInvalid,
                ErrorDomain::Qemu,
                format!(
                    "requested operation is not valid: interface '{device}' has no host device to read counters from"
                ),
            ))
        })?;
        Ok(c.into_iter()
            .map(|(k, v)| TypedParam::new(k, TypedValue::LLong(v)))
            .collect())
    }

    /// `virDomainMemoryStats`: the balloon's size, the domain's maximum and QEMU's
    /// resident set, in KiB (the guest's own figures need the balloon's polling, which
    /// the driver does not enable).
    pub fn memory_stats(&self, uuid: uuid::Uuid) -> Result<Vec<TypedParam>> {
        let l = self.live_source(uuid)?;
        let q = Self::stats_qmp(&l)?;
        let actual = q
            .execute("query-balloon", None)
            .ok()
            .and_then(|b| b["actual"].as_u64())
            .map_or(l.live.current_memory_kib(), |b| b / 1024);
        let mut out = vec![ull("actual", actual)];
        // the guest's own figures, once its balloon driver reported them (the polling
        // period is `<memballoon><stats period>`, set at start)
        if has_virtio_balloon(&l.live)
            && let Ok(v) = q.execute(
                "qom-get",
                Some(serde_json::json!({"path": BALLOON_PATH, "property": "guest-stats"})),
            )
        {
            out.extend(guest_stats(&v).into_iter().map(|(n, v)| ull(n, v)));
        }
        if let Some(rss) = rss_kib(l.pid) {
            out.push(ull("rss", rss));
        }
        Ok(out)
    }

    /// `virDomainGetCPUStats`: the totals (`start_cpu` -1), or per host CPU from
    /// `start_cpu` (`ncpus` of them, as many as the host has) `cpu_time` and `vcpu_time`
    /// (see [`per_cpu_times`] for where they come from).
    pub fn cpu_stats(
        &self,
        uuid: uuid::Uuid,
        start_cpu: i32,
        ncpus: u32,
    ) -> Result<Vec<Vec<TypedParam>>> {
        let l = self.live_source(uuid)?;
        if start_cpu == -1 {
            let (user, system) = task_times(&format!("/proc/{}/stat", l.pid)).unwrap_or((0, 0));
            return Ok(vec![vec![
                ull("cpu_time", proc_cpu_ns(l.pid)),
                ull("user_time", user),
                ull("system_time", system),
            ]]);
        }
        let host = std::thread::available_parallelism().map_or(1, |n| n.get());
        let start = usize::try_from(start_cpu).unwrap_or(0);
        if start >= host {
            return Err(perr(PluginError::new(
                ErrorCode::InvalidArg,
                ErrorDomain::Qemu,
                format!(
                    "invalid argument: start_cpu {start} larger than maximum of {}",
                    host - 1
                ),
            )));
        }
        let tids: Vec<i64> = match Self::stats_qmp(&l) {
            Ok(q) => q
                .execute("query-cpus-fast", None)?
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["thread-id"].as_i64())
                .collect(),
            Err(_) => Vec::new(),
        };
        let (cpu, vcpu) = per_cpu_times(l.pid, &tids, host);
        let end = host.min(start + ncpus as usize);
        Ok((start..end)
            .map(|i| vec![ull("cpu_time", cpu[i]), ull("vcpu_time", vcpu[i])])
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_statistics_are_found_by_alias_and_named_as_libvirt() {
        let all = json!([
            {"device": "", "qdev": "/machine/peripheral/virtio-disk1/virtio-backend", "stats": {"rd_operations": 1}},
            {"device": "", "qdev": "/machine/peripheral/virtio-disk0/virtio-backend", "stats": {"rd_operations": 7, "rd_bytes": 4096, "wr_operations": 2, "wr_bytes": 1024, "flush_operations": 3, "rd_total_time_ns": 11}},
        ]);
        let b = blockstats_of(&all, Some("virtio-disk0")).unwrap();
        let f = block_fields(&b["stats"]);
        let get = |k: &str| f.iter().find(|(n, _)| *n == k).unwrap().1;
        assert_eq!(get("rd_operations"), 7);
        assert_eq!(get("rd_bytes"), 4096);
        assert_eq!(get("wr_bytes"), 1024);
        assert_eq!(get("flush_operations"), 3);
        assert_eq!(get("rd_total_times"), 11);
        assert_eq!(get("errs"), -1);
        assert!(blockstats_of(&all, Some("sata0-0-0")).is_none());
        assert!(blockstats_of(&all, None).is_none());
    }

    #[test]
    fn task_times_read_proc() {
        let me = std::process::id();
        let (u, s) = task_times(&format!("/proc/{me}/stat")).unwrap();
        // a test process has spent some time somewhere, or none at all yet
        let _ = (u, s);
        assert!(task_times("/proc/0/stat").is_none());
    }

    #[test]
    fn a_process_s_threads_are_counted_on_the_cpu_they_last_ran_on() {
        // fields 3.. of proc(5)'s stat: utime (14) 300, stime (15) 100, processor (39) 1
        let mut f = vec!["0"; 40];
        f[0] = "S";
        f[11] = "300";
        f[12] = "100";
        f[36] = "1";
        let stat = format!("1234 (qemu-system-x86) {}", f.join(" "));
        let stat = stat.as_str();
        let hz = rustix::param::clock_ticks_per_second().max(1);
        let (t, c) = task_time_and_cpu(stat).unwrap();
        assert_eq!((t, c), (400 * (1_000_000_000 / hz), 1));
        assert!(task_time_and_cpu("garbage").is_none());
        // this test process: its time is spread over the host's CPUs, its "vCPU" is
        // the main thread
        let me = std::process::id() as i32;
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (cpu, vcpu) = per_cpu_times(me, &[], n);
        assert_eq!(cpu.len(), n);
        assert!(cpu.iter().sum::<u64>() > 0, "{cpu:?}");
        assert_eq!(vcpu.iter().sum::<u64>(), 0);
        assert!(own_usage_percpu(0).is_none());
    }

    #[test]
    fn a_cgroup_shared_with_other_processes_is_not_the_guest_s_own() {
        let base = std::path::Path::new("/sys/fs/cgroup/cpuacct");
        if !rustix::process::geteuid().is_root() || !base.join("cgroup.procs").is_file() {
            eprintln!(
                "\n!!! no writable v1 cpuacct hierarchy (needs root): the shared-cgroup case \
                 of own_usage_percpu is not tested here\n"
            );
            return;
        }
        let dir = base.join(format!("rvirt-qemu-stats-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spawn = || {
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap()
        };
        let (mut a, mut b) = (spawn(), spawn());
        std::fs::write(dir.join("cgroup.procs"), a.id().to_string()).unwrap();
        let own = own_usage_percpu(a.id() as i32);
        // an isolated plugin's cgroup: the guest shares it with another process
        std::fs::write(dir.join("cgroup.procs"), b.id().to_string()).unwrap();
        let shared = own_usage_percpu(a.id() as i32);
        for c in [&mut a, &mut b] {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir(&dir);
        assert_eq!(own, Some(dir.join("cpuacct.usage_percpu")));
        assert_eq!(shared, None);
    }

    #[test]
    fn balloon_guest_statistics_get_libvirt_s_names_and_units() {
        let v = json!({"stats": {"stat-swap-in": 4096, "stat-swap-out": 0, "stat-major-faults": 12,
            "stat-minor-faults": 3400, "stat-free-memory": 104857600, "stat-total-memory": 209715200,
            "stat-available-memory": 157286400, "stat-disk-caches": 2097152,
            "stat-htlb-pgalloc": 0, "stat-htlb-pgfail": -1}, "last-update": 1796405502});
        assert_eq!(
            guest_stats(&v),
            vec![
                ("swap_in", 4),
                ("swap_out", 0),
                ("major_fault", 12),
                ("minor_fault", 3400),
                ("unused", 102400),
                ("available", 204800),
                ("usable", 153600),
                ("last_update", 1796405502),
                ("disk_caches", 2048),
                ("hugetlb_pgalloc", 0),
            ]
        );
        // no update yet: nothing
        let none = json!({"stats": {"stat-swap-in": -1}, "last-update": 0});
        assert!(guest_stats(&none).is_empty());
    }

    #[test]
    fn the_loopback_device_has_counters() {
        let c = tap_counters("lo").expect("lo has statistics");
        assert_eq!(c[0].0, "rx_bytes");
        assert_eq!(c[4].0, "tx_bytes");
        // the guest's receive is the host device's transmit (loopback: both the same)
        assert!(c[0].1 >= 0 && c[4].1 >= 0);
        assert!(tap_counters("no-such-device0").is_none());
    }
}

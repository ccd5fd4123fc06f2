//! Statistics of containers, in libvirt's typed-parameter names, from the container's
//! cgroup accounting (CPU and memory) and its host veth ends (`/proc/net/dev`).
//!
//! A container that is not running has the `state`, `balloon` and `vcpu` counts of its
//! definition only.

use super::{Driver, DriverError, FROM_LXC, Result};
use crate::cgroup::Cgroup;
use rvirt_sdk::abi::{ErrorCode, ErrorDomain, PluginError, TypedParam, TypedValue};
use rvirt_sdk::util::operation_invalid;

/// `VIR_DOMAIN_STATS_*` groups.
const STATE: u32 = 1;
const CPU_TOTAL: u32 = 2;
const BALLOON: u32 = 4;
const VCPU: u32 = 8;
const INTERFACE: u32 = 16;
/// Every group this driver has (`stats` 0 asks for them all).
const GROUPS: u32 = STATE | CPU_TOTAL | BALLOON | VCPU | INTERFACE;

/// `virDomainMemoryStats` tags (`VIR_DOMAIN_MEMORY_STAT_*`) as virsh names them.
const MEM_SWAP_IN: &str = "swap_in";
const MEM_ACTUAL: &str = "actual";
const MEM_RSS: &str = "rss";

/// `e` in libvirt's LXC error domain.
fn lxc_error(mut e: PluginError) -> PluginError {
    e.domain = FROM_LXC;
    e
}

fn ull(field: impl Into<String>, v: u64) -> TypedParam {
    TypedParam::new(field.into(), TypedValue::ULLong(v))
}

fn uint(field: impl Into<String>, v: u32) -> TypedParam {
    TypedParam::new(field.into(), TypedValue::UInt(v))
}

/// The counters of a host veth end as the container sees them (the host's receive is
/// the container's transmit), as `net.N.*` fields.
fn veth_counters(dev: &str) -> Option<Vec<(&'static str, u64)>> {
    let table = std::fs::read_to_string("/proc/net/dev").ok()?;
    let line = table
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{dev}:")))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    if f.len() < 12 {
        return None;
    }
    // receive: bytes packets errs drop ...; transmit (from 8): bytes packets errs drop
    Some(vec![
        ("rx.bytes", f[8]),
        ("rx.pkts", f[9]),
        ("rx.errs", f[10]),
        ("rx.drop", f[11]),
        ("tx.bytes", f[0]),
        ("tx.pkts", f[1]),
        ("tx.errs", f[2]),
        ("tx.drop", f[3]),
    ])
}

/// What the statistics of one domain are read from.
struct Source {
    state: (i32, i32),
    max_kib: u64,
    cur_kib: u64,
    vcpus: u32,
    max_vcpus: u32,
    cgroup: Option<Cgroup>,
    /// Host veth ends of the live definition (`<target dev>`), with the MAC.
    nics: Vec<(Option<String>, Option<String>)>,
}

impl Driver {
    fn stats_source(&self, u: uuid::Uuid) -> Result<Source> {
        let s = self.with(u, |d| {
            let def = d.run.as_ref().map_or(&d.def, |r| &r.live);
            let nics = def
                .devices_of("interface")
                .map(|i| {
                    (
                        i.child("target")
                            .and_then(|t| t.attr("dev"))
                            .map(str::to_string),
                        i.child("mac")
                            .and_then(|m| m.attr("address"))
                            .map(str::to_string),
                    )
                })
                .collect();
            Ok((
                d.state(),
                def.memory_kib(),
                def.current_memory_kib(),
                def.current_vcpus().max(1),
                def.max_vcpus().max(1),
                d.run.as_ref().map(|r| r.status.cgroup.clone()),
                nics,
            ))
        })?;
        let (state, max_kib, cur_kib, vcpus, max_vcpus, cg, nics) = s;
        Ok(Source {
            state,
            max_kib,
            cur_kib,
            vcpus,
            max_vcpus,
            cgroup: cg.and_then(|c| Cgroup::at(&c).ok()),
            nics,
        })
    }

    /// The running container's cgroup, or libvirt's "not running" error.
    fn running_cgroup(&self, u: uuid::Uuid) -> Result<Cgroup> {
        self.stats_source(u)?.cgroup.ok_or_else(|| {
            DriverError::Plugin(lxc_error(operation_invalid(
                ErrorDomain::None,
                "domain is not running",
            )))
        })
    }

    /// `virConnectGetAllDomainStats` for one domain: the `stats` groups (0: all).
    pub fn domain_stats(&self, u: uuid::Uuid, stats: u32) -> Result<Vec<TypedParam>> {
        let stats = if stats == 0 { GROUPS } else { stats };
        let s = self.stats_source(u)?;
        let mut out = Vec::new();
        if stats & STATE != 0 {
            out.push(TypedParam::new("state.state", TypedValue::Int(s.state.0)));
            out.push(TypedParam::new("state.reason", TypedValue::Int(s.state.1)));
        }
        if stats & CPU_TOTAL != 0
            && let Some(cg) = &s.cgroup
        {
            out.push(ull("cpu.time", cg.cpu_ns()));
            if let Some((user, system)) = cg.cpu_user_system_ns() {
                out.push(ull("cpu.user", user));
                out.push(ull("cpu.system", system));
            }
        }
        if stats & BALLOON != 0 {
            // a container has no balloon: its current memory is its definition's, what
            // it uses is the cgroup's
            out.push(ull("balloon.current", s.cur_kib));
            out.push(ull("balloon.maximum", s.max_kib));
            if let Some(cg) = &s.cgroup {
                out.push(ull("balloon.rss", cg.memory_bytes() / 1024));
            }
        }
        if stats & VCPU != 0 {
            out.push(uint("vcpu.current", s.vcpus));
            out.push(uint("vcpu.maximum", s.max_vcpus));
        }
        if stats & INTERFACE != 0 && s.cgroup.is_some() {
            out.push(uint(
                "net.count",
                u32::try_from(s.nics.len()).unwrap_or(u32::MAX),
            ));
            for (i, (dev, mac)) in s.nics.iter().enumerate() {
                let name = dev.as_deref().or(mac.as_deref()).unwrap_or("");
                out.push(TypedParam::new(
                    format!("net.{i}.name"),
                    TypedValue::String(name.into()),
                ));
                if let Some(c) = dev.as_deref().and_then(veth_counters) {
                    for (k, v) in c {
                        out.push(ull(format!("net.{i}.{k}"), v));
                    }
                }
            }
        }
        Ok(out)
    }

    /// `virDomainMemoryStats`: the definition's memory (`actual`), what the cgroup uses
    /// (`rss`) and its swap (`swap_in`, where the host accounts swap), in KiB.
    pub fn memory_stats(&self, u: uuid::Uuid) -> Result<Vec<TypedParam>> {
        let s = self.stats_source(u)?;
        let cg = s.cgroup.as_ref().ok_or_else(|| {
            DriverError::Plugin(lxc_error(operation_invalid(
                ErrorDomain::None,
                "domain is not running",
            )))
        })?;
        let mut out = Vec::new();
        if let Some(swap) = cg.swap_bytes() {
            out.push(ull(MEM_SWAP_IN, swap / 1024));
        }
        out.push(ull(MEM_ACTUAL, s.cur_kib));
        out.push(ull(MEM_RSS, cg.memory_bytes() / 1024));
        Ok(out)
    }

    /// `virDomainGetCPUStats`: with `start_cpu` -1 the container's total (`cpu_time`,
    /// `user_time`, `system_time`), else `cpu_time` per host CPU from `start_cpu`.
    pub fn cpu_stats(
        &self,
        u: uuid::Uuid,
        start_cpu: i32,
        ncpus: u32,
    ) -> Result<Vec<Vec<TypedParam>>> {
        let cg = self.running_cgroup(u)?;
        if start_cpu < 0 {
            let mut one = vec![ull("cpu_time", cg.cpu_ns())];
            if let Some((user, system)) = cg.cpu_user_system_ns() {
                one.push(ull("user_time", user));
                one.push(ull("system_time", system));
            }
            return Ok(vec![one]);
        }
        let per = cg.cpu_ns_per_cpu().ok_or_else(|| {
            DriverError::Plugin(lxc_error(PluginError::new(
                ErrorCode::OperationUnsupported,
                ErrorDomain::None,
                "operation unsupported: per-CPU statistics need cgroup v1's cpuacct controller",
            )))
        })?;
        let start = usize::try_from(start_cpu).unwrap_or(0);
        Ok(per
            .iter()
            .skip(start)
            .take(ncpus as usize)
            .map(|ns| vec![ull("cpu_time", *ns)])
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_counters_swap_directions() {
        // the loopback is in every namespace
        let c = veth_counters("lo").expect("lo in /proc/net/dev");
        let get = |k: &str| c.iter().find(|(n, _)| *n == k).unwrap().1;
        // what lo receives it sent: both directions are equal, and named both ways
        assert_eq!(get("rx.bytes"), get("tx.bytes"));
        assert!(veth_counters("no-such-dev0").is_none());
    }
}

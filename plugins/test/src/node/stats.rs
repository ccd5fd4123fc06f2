//! Statistics of the in-memory domains, in libvirt's typed-parameter names: what the
//! test driver knows (state, the CPU time since start, memory and vCPU counts).

use super::{Dom, Node};
use rvirt_sdk::abi::{PluginError, TypedParam, TypedValue, Uuid, abi_stable::std_types::RVec};

/// `VIR_DOMAIN_STATS_STATE`.
const STATE: u32 = 1;
/// `VIR_DOMAIN_STATS_CPU_TOTAL`.
const CPU_TOTAL: u32 = 2;
/// `VIR_DOMAIN_STATS_BALLOON`.
const BALLOON: u32 = 4;
/// `VIR_DOMAIN_STATS_VCPU`.
const VCPU: u32 = 8;
/// The groups this driver has; `stats` 0 asks for all of them.
pub const GROUPS: u32 = STATE | CPU_TOTAL | BALLOON | VCPU;

fn p(field: impl Into<String>, value: TypedValue) -> TypedParam {
    TypedParam::new(field.into(), value)
}

impl Dom {
    fn cpu_ns(&self) -> u64 {
        self.info().cpu_time_ns
    }

    /// The `stats` groups of this domain (0: every group).
    pub fn stats(&self, stats: u32) -> RVec<TypedParam> {
        let stats = if stats == 0 { GROUPS } else { stats };
        let mut out = RVec::new();
        if stats & STATE != 0 {
            out.push(p("state.state", TypedValue::Int(self.state)));
            out.push(p("state.reason", TypedValue::Int(self.reason)));
        }
        let active = self.is_active();
        if stats & CPU_TOTAL != 0 && active {
            let t = self.cpu_ns();
            out.push(p("cpu.time", TypedValue::ULLong(t)));
            out.push(p("cpu.user", TypedValue::ULLong(t / 10 * 9)));
            out.push(p("cpu.system", TypedValue::ULLong(t / 10)));
        }
        if stats & BALLOON != 0 {
            out.push(p(
                "balloon.current",
                TypedValue::ULLong(self.def.current_memory_kib()),
            ));
            out.push(p(
                "balloon.maximum",
                TypedValue::ULLong(self.def.memory_kib()),
            ));
        }
        if stats & VCPU != 0 {
            let current = self.def.current_vcpus();
            out.push(p("vcpu.current", TypedValue::UInt(current)));
            out.push(p("vcpu.maximum", TypedValue::UInt(self.def.max_vcpus())));
            if active {
                let per = self.cpu_ns() / u64::from(current.max(1));
                for n in 0..current {
                    // VIR_VCPU_RUNNING
                    out.push(p(format!("vcpu.{n}.state"), TypedValue::Int(1)));
                    out.push(p(format!("vcpu.{n}.time"), TypedValue::ULLong(per)));
                }
            }
        }
        out
    }

    /// `virDomainMemoryStats`: the balloon's size and the maximum, in KiB.
    pub fn memory_stats(&self) -> RVec<TypedParam> {
        let mut out = RVec::new();
        out.push(p(
            "actual",
            TypedValue::ULLong(self.def.current_memory_kib()),
        ));
        out.push(p("available", TypedValue::ULLong(self.def.memory_kib())));
        out.push(p("rss", TypedValue::ULLong(self.def.current_memory_kib())));
        out
    }

    /// `virDomainGetCPUStats`' totals (`start_cpu` -1).
    pub fn cpu_totals(&self) -> RVec<TypedParam> {
        let t = self.cpu_ns();
        let mut out = RVec::new();
        out.push(p("cpu_time", TypedValue::ULLong(t)));
        out.push(p("user_time", TypedValue::ULLong(t / 10 * 9)));
        out.push(p("system_time", TypedValue::ULLong(t / 10)));
        out
    }
}

impl Node {
    /// The statistics of a domain (see [`Dom::stats`]).
    pub fn domain_stats(&self, uuid: Uuid, stats: u32) -> Result<RVec<TypedParam>, PluginError> {
        self.by_uuid(uuid).map(|d| d.stats(stats))
    }
}

#[cfg(test)]
mod tests {
    use crate::node::Node;

    #[test]
    fn the_default_domain_reports_every_group() {
        let node = Node::from_node_xml(crate::node::DEFAULT_NODE_XML, None).unwrap();
        let d = node.by_name("test").unwrap();
        let s = d.stats(0);
        let names: Vec<&str> = s.iter().map(|p| p.field.as_str()).collect();
        for want in [
            "state.state",
            "state.reason",
            "cpu.time",
            "balloon.current",
            "balloon.maximum",
            "vcpu.current",
            "vcpu.maximum",
            "vcpu.0.state",
            "vcpu.0.time",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        // one group only
        let s = d.stats(4);
        assert!(s.iter().all(|p| p.field.starts_with("balloon.")), "{s:?}");
    }
}

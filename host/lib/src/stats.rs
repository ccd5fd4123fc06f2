//! libvirt's names for the statistics whose wire form is a fixed struct or a tag:
//! the host's backends speak typed parameters named as below, and the remote procedures
//! that predate typed parameters are translated with these tables.

/// `VIR_DOMAIN_MEMORY_STAT_*` tags, in tag order (SWAP_IN 0 ... HUGETLB_PGFAIL 12), named
/// as virsh `dommemstat` prints them.
pub const MEMORY_STAT_NAMES: [&str; 13] = [
    "swap_in",
    "swap_out",
    "major_fault",
    "minor_fault",
    "unused",
    "available",
    "actual",
    "rss",
    "usable",
    "last_update",
    "disk_caches",
    "hugetlb_pgalloc",
    "hugetlb_pgfail",
];

/// The tag of a memory statistic's name.
pub fn memory_stat_tag(name: &str) -> Option<i32> {
    MEMORY_STAT_NAMES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| i32::try_from(i).ok())
}

/// `virDomainInterfaceStatsStruct`'s members, in wire order.
pub const INTERFACE_STAT_NAMES: [&str; 8] = [
    "rx_bytes",
    "rx_packets",
    "rx_errs",
    "rx_drop",
    "tx_bytes",
    "tx_packets",
    "tx_errs",
    "tx_drop",
];

/// `VIR_DOMAIN_BLOCK_STATS_*` fields of the old `virDomainBlockStats` struct, in wire
/// order (`rd_req` is `rd_operations`, `wr_req` is `wr_operations`).
pub const BLOCK_STAT_NAMES: [&str; 5] = [
    "rd_operations",
    "rd_bytes",
    "wr_operations",
    "wr_bytes",
    "errs",
];

/// `virDomainJobInfo`'s members after `type`, in wire order, with the typed-parameter
/// names of `virDomainGetJobStats` they come from.
pub const JOB_INFO_NAMES: [&str; 11] = [
    "time_elapsed",
    "time_remaining",
    "data_total",
    "data_processed",
    "data_remaining",
    "memory_total",
    "memory_processed",
    "memory_remaining",
    "disk_total",
    "disk_processed",
    "disk_remaining",
];

/// The value of the integer parameter `name` (0 when absent or not an integer, as the
/// fixed structs leave unknown members).
pub fn value_of(params: &[crate::TypedParam], name: &str) -> u64 {
    params
        .iter()
        .find(|p| p.field == name)
        .and_then(|p| p.value.as_u64())
        .unwrap_or(0)
}

/// As [`value_of`], for the signed members (`-1` when absent, libvirt's "not
/// available" in the interface and block structs).
pub fn signed_value_of(params: &[crate::TypedParam], name: &str) -> i64 {
    params
        .iter()
        .find(|p| p.field == name)
        .and_then(|p| match p.value {
            crate::TypedParamValue::LLong(v) => Some(v),
            _ => p.value.as_u64().and_then(|v| i64::try_from(v).ok()),
        })
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TypedParam, TypedParamValue};

    #[test]
    fn memory_tags_follow_libvirt_numbering() {
        assert_eq!(memory_stat_tag("swap_in"), Some(0));
        assert_eq!(memory_stat_tag("actual"), Some(6));
        assert_eq!(memory_stat_tag("rss"), Some(7));
        assert_eq!(memory_stat_tag("hugetlb_pgfail"), Some(12));
        assert_eq!(memory_stat_tag("nope"), None);
    }

    #[test]
    fn values_default_as_the_structs_do() {
        let p = vec![
            TypedParam {
                field: "rx_bytes".into(),
                value: TypedParamValue::LLong(42),
            },
            TypedParam {
                field: "data_total".into(),
                value: TypedParamValue::ULLong(7),
            },
        ];
        assert_eq!(signed_value_of(&p, "rx_bytes"), 42);
        assert_eq!(signed_value_of(&p, "tx_bytes"), -1);
        assert_eq!(value_of(&p, "data_total"), 7);
        assert_eq!(value_of(&p, "data_processed"), 0);
    }
}

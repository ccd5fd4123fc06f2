//! Argument and return types of save/restore, managed save and the statistics
//! procedures, from `remote_protocol.x`.
//!
//! One Rust type stands for every libvirt struct of the same layout (its doc comment
//! names them).

use crate::protocol::{DOMAIN_LIST_MAX, NonnullDomain, TypedParam};
use serde::{Deserialize, Serialize};

/// `REMOTE_DOMAIN_BLOCK_STATS_PARAMETERS_MAX`.
pub const DOMAIN_BLOCK_STATS_PARAMETERS_MAX: usize = 16;
/// `REMOTE_DOMAIN_MEMORY_STATS_MAX`.
pub const DOMAIN_MEMORY_STATS_MAX: usize = 1024;
/// `REMOTE_DOMAIN_JOB_STATS_MAX`.
pub const DOMAIN_JOB_STATS_MAX: usize = 64;
/// `REMOTE_DOMAIN_GET_CPU_STATS_MAX`: parameters of one `GetCPUStats` answer.
pub const DOMAIN_GET_CPU_STATS_MAX: usize = 2048;
/// `REMOTE_DOMAIN_GET_CPU_STATS_NCPUS_MAX`.
pub const DOMAIN_GET_CPU_STATS_NCPUS_MAX: u32 = 128;
/// `REMOTE_CONNECT_GET_ALL_DOMAIN_STATS_MAX`: records, and parameters in a record.
pub const CONNECT_GET_ALL_DOMAIN_STATS_MAX: usize = 262_144;

xdr_structs! {
    /// `remote_domain_save_args`.
    DomainSaveArgs { dom: NonnullDomain, to: String }
    /// `remote_domain_save_flags_args`.
    DomainSaveFlagsArgs { dom: NonnullDomain, to: String, dxml: Option<String>, flags: u32 }
    /// `remote_domain_restore_args`.
    DomainRestoreArgs { from: String }
    /// `remote_domain_restore_flags_args`.
    DomainRestoreFlagsArgs { from: String, dxml: Option<String>, flags: u32 }
    /// `remote_domain_save_image_get_xml_desc_args`.
    DomainSaveImageGetXmlDescArgs { file: String, flags: u32 }
    /// `remote_domain_save_image_get_xml_desc_ret`.
    DomainSaveImageGetXmlDescRet { xml: String }
    /// `remote_domain_save_image_define_xml_args`.
    DomainSaveImageDefineXmlArgs { file: String, dxml: String, flags: u32 }
    /// `remote_domain_block_stats_args`.
    DomainBlockStatsArgs { dom: NonnullDomain, path: String }
    /// `remote_domain_block_stats_ret`.
    DomainBlockStatsRet { rd_req: i64, rd_bytes: i64, wr_req: i64, wr_bytes: i64, errs: i64 }
    /// `remote_domain_block_stats_flags_args`.
    DomainBlockStatsFlagsArgs { dom: NonnullDomain, path: String, nparams: i32, flags: u32 }
    /// `remote_domain_block_stats_flags_ret`.
    DomainBlockStatsFlagsRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<DOMAIN_BLOCK_STATS_PARAMETERS_MAX, _, _>")]
        params: Vec<TypedParam>,
        nparams: i32,
    }
    /// `remote_domain_interface_stats_args`.
    DomainInterfaceStatsArgs { dom: NonnullDomain, device: String }
    /// `remote_domain_interface_stats_ret`.
    DomainInterfaceStatsRet {
        rx_bytes: i64,
        rx_packets: i64,
        rx_errs: i64,
        rx_drop: i64,
        tx_bytes: i64,
        tx_packets: i64,
        tx_errs: i64,
        tx_drop: i64,
    }
    /// `remote_domain_memory_stats_args`.
    DomainMemoryStatsArgs { dom: NonnullDomain, max_stats: u32, flags: u32 }
    /// `remote_domain_memory_stat`.
    DomainMemoryStat { tag: i32, val: u64 }
    /// `remote_domain_memory_stats_ret`.
    DomainMemoryStatsRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<DOMAIN_MEMORY_STATS_MAX, _, _>")]
        stats: Vec<DomainMemoryStat>,
    }
    /// `remote_domain_get_job_info_ret`.
    DomainGetJobInfoRet {
        kind: i32,
        time_elapsed: u64,
        time_remaining: u64,
        data_total: u64,
        data_processed: u64,
        data_remaining: u64,
        mem_total: u64,
        mem_processed: u64,
        mem_remaining: u64,
        file_total: u64,
        file_processed: u64,
        file_remaining: u64,
    }
    /// `remote_domain_get_job_stats_ret`.
    DomainGetJobStatsRet {
        kind: i32,
        #[serde(deserialize_with = "crate::xdr::bounded::<DOMAIN_JOB_STATS_MAX, _, _>")]
        params: Vec<TypedParam>,
    }
    /// `remote_domain_get_cpu_stats_args`.
    DomainGetCpuStatsArgs { dom: NonnullDomain, nparams: u32, start_cpu: i32, ncpus: u32, flags: u32 }
    /// `remote_domain_get_cpu_stats_ret`.
    DomainGetCpuStatsRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<DOMAIN_GET_CPU_STATS_MAX, _, _>")]
        params: Vec<TypedParam>,
        nparams: i32,
    }
    /// `remote_connect_get_all_domain_stats_args`.
    ConnectGetAllDomainStatsArgs {
        #[serde(deserialize_with = "crate::xdr::bounded::<DOMAIN_LIST_MAX, _, _>")]
        doms: Vec<NonnullDomain>,
        stats: u32,
        flags: u32,
    }
    /// `remote_domain_stats_record`.
    DomainStatsRecord {
        dom: NonnullDomain,
        #[serde(deserialize_with = "crate::xdr::bounded::<CONNECT_GET_ALL_DOMAIN_STATS_MAX, _, _>")]
        params: Vec<TypedParam>,
    }
    /// `remote_connect_get_all_domain_stats_ret`.
    ConnectGetAllDomainStatsRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<CONNECT_GET_ALL_DOMAIN_STATS_MAX, _, _>")]
        ret_stats: Vec<DomainStatsRecord>,
    }
}

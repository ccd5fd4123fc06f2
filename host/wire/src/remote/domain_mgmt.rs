//! Argument and return types of the domain management procedures: memory and vCPU
//! counts, device attach/detach and snapshots, from `remote_protocol.x`.
//!
//! One Rust type stands for every libvirt struct of the same layout (its doc comment
//! names them).

use crate::protocol::{DOMAIN_SNAPSHOT_LIST_MAX, NonnullDomain, NonnullDomainSnapshot};
use serde::{Deserialize, Serialize};

xdr_structs! {
    /// `remote_domain_set_memory_args`, `remote_domain_set_max_memory_args` (KiB).
    DomainSetMemoryArgs { dom: NonnullDomain, memory: u64 }
    /// `remote_domain_set_memory_flags_args` (KiB).
    DomainSetMemoryFlagsArgs { dom: NonnullDomain, memory: u64, flags: u32 }
    /// `remote_domain_set_memory_stats_period_args` (seconds).
    DomainSetMemoryStatsPeriodArgs { dom: NonnullDomain, period: i32, flags: u32 }
    /// `remote_domain_set_vcpus_args`.
    DomainSetVcpusArgs { dom: NonnullDomain, nvcpus: u32 }
    /// `remote_domain_set_vcpus_flags_args`.
    DomainSetVcpusFlagsArgs { dom: NonnullDomain, nvcpus: u32, flags: u32 }
    /// `remote_domain_attach_device_args`, `remote_domain_detach_device_args`.
    DomainDeviceArgs { dom: NonnullDomain, xml: String }
    /// `remote_domain_attach_device_flags_args`, `remote_domain_detach_device_flags_args`,
    /// `remote_domain_update_device_flags_args`.
    DomainDeviceFlagsArgs { dom: NonnullDomain, xml: String, flags: u32 }
    /// `remote_domain_snapshot_create_xml_args`.
    DomainSnapshotCreateXmlArgs { dom: NonnullDomain, xml_desc: String, flags: u32 }
    /// `{remote_nonnull_domain_snapshot snap}` returned: `snapshot_create_xml_ret`,
    /// `snapshot_lookup_by_name_ret`, `snapshot_current_ret`, `snapshot_get_parent_ret`.
    DomainSnapshotRet { snap: NonnullDomainSnapshot }
    /// `{remote_nonnull_domain_snapshot snap; unsigned int flags}`:
    /// `snapshot_{get_xml_desc, delete, get_parent, num_children, is_current,
    /// has_metadata}_args`, `revert_to_snapshot_args`.
    DomainSnapshotFlagsArgs { snap: NonnullDomainSnapshot, flags: u32 }
    /// `remote_domain_snapshot_get_xml_desc_ret`.
    DomainSnapshotGetXmlDescRet { xml: String }
    /// `remote_domain_snapshot_list_names_args`.
    DomainSnapshotListNamesArgs { dom: NonnullDomain, maxnames: i32, flags: u32 }
    /// `remote_domain_snapshot_list_children_names_args`.
    DomainSnapshotListChildrenNamesArgs { snap: NonnullDomainSnapshot, maxnames: i32, flags: u32 }
    /// `remote_domain_snapshot_list_names_ret`, `remote_domain_snapshot_list_children_names_ret`.
    DomainSnapshotNamesRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<DOMAIN_SNAPSHOT_LIST_MAX, _, _>")]
        names: Vec<String>,
    }
    /// `remote_domain_snapshot_lookup_by_name_args`.
    DomainSnapshotLookupByNameArgs { dom: NonnullDomain, name: String, flags: u32 }
    /// `remote_domain_has_current_snapshot_ret`.
    DomainHasCurrentSnapshotRet { result: i32 }
    /// `remote_domain_snapshot_is_current_ret`.
    DomainSnapshotIsCurrentRet { current: i32 }
    /// `remote_domain_snapshot_has_metadata_ret`.
    DomainSnapshotHasMetadataRet { metadata: i32 }
    /// `remote_domain_list_all_snapshots_args`.
    DomainListAllSnapshotsArgs { dom: NonnullDomain, need_results: i32, flags: u32 }
    /// `remote_domain_snapshot_list_all_children_args`.
    DomainSnapshotListAllChildrenArgs { snapshot: NonnullDomainSnapshot, need_results: i32, flags: u32 }
    /// `remote_domain_list_all_snapshots_ret`, `remote_domain_snapshot_list_all_children_ret`.
    DomainSnapshotListRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<DOMAIN_SNAPSHOT_LIST_MAX, _, _>")]
        snapshots: Vec<NonnullDomainSnapshot>,
        ret: i32,
    }
}

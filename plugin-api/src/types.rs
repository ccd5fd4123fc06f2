//! Plain values that cross the plugin boundary.

use abi_stable::{
    StableAbi,
    std_types::{RString, RVec},
};

/// A domain UUID: 16 raw bytes, as in libvirt's `remote_uuid`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

/// What identifies a domain to a client: libvirt's `remote_nonnull_domain`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct DomainRef {
    /// The domain's name.
    pub name: RString,
    /// The domain's UUID.
    pub uuid: Uuid,
    /// The running domain's id, or -1 when it is not running.
    pub id: i32,
}

/// libvirt's `virDomainInfo`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainInfo {
    /// `VIR_DOMAIN_*` state number.
    pub state: i32,
    /// Maximum memory in KiB.
    pub max_mem_kib: u64,
    /// Current memory in KiB.
    pub memory_kib: u64,
    /// Number of virtual CPUs.
    pub nr_virt_cpu: u32,
    /// CPU time used, in nanoseconds.
    pub cpu_time_ns: u64,
}

/// A domain's state and the reason for it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateReason {
    /// `VIR_DOMAIN_*` state number.
    pub state: i32,
    /// The state's reason (`VIR_DOMAIN_RUNNING_BOOTED` and so on).
    pub reason: i32,
}

/// libvirt's `virNodeInfo`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// CPU model (at most 31 bytes on the wire).
    pub model: RString,
    /// Memory size in KiB.
    pub memory_kib: u64,
    /// Number of active CPUs.
    pub cpus: u32,
    /// Expected CPU frequency in MHz.
    pub mhz: u32,
    /// NUMA nodes.
    pub nodes: u32,
    /// Sockets per node.
    pub sockets: u32,
    /// Cores per socket.
    pub cores: u32,
    /// Threads per core.
    pub threads: u32,
}

/// Who a plugin is and what it serves.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Plugin name, e.g. `test` or `qemu`.
    pub name: RString,
    /// Kind: `hypervisor`, `storage`, `network` or `policy`.
    pub kind: RString,
    /// URI schemes served, e.g. `["test"]`.
    pub schemes: RVec<RString>,
    /// The plugin's own version (semver).
    pub version: RString,
    /// The plugin API version it was built against (semver).
    pub api_version: RString,
    /// One line saying what it is.
    pub description: RString,
}

/// A value of libvirt's typed parameters (`virTypedParameter`), one variant per
/// `VIR_TYPED_PARAM_*` type. Since 1.8.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum TypedValue {
    /// VIR_TYPED_PARAM_INT (1)
    Int(i32),
    /// VIR_TYPED_PARAM_UINT (2)
    UInt(u32),
    /// VIR_TYPED_PARAM_LLONG (3)
    LLong(i64),
    /// VIR_TYPED_PARAM_ULLONG (4)
    ULLong(u64),
    /// VIR_TYPED_PARAM_DOUBLE (5)
    Double(f64),
    /// VIR_TYPED_PARAM_BOOLEAN (6)
    Boolean(bool),
    /// VIR_TYPED_PARAM_STRING (7)
    String(RString),
}

/// One named typed parameter (`virTypedParameter`: a field name of at most 79 bytes and its
/// value). Since 1.8.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct TypedParam {
    /// The field name (`cpu.time`, `rd_bytes`).
    pub field: RString,
    /// Its value.
    pub value: TypedValue,
}

impl TypedParam {
    /// A parameter named `field` holding `value`.
    pub fn new(field: impl Into<RString>, value: TypedValue) -> Self {
        Self {
            field: field.into(),
            value,
        }
    }
}

/// A domain job's statistics (`virDomainGetJobStats`). Since 1.8.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct JobStats {
    /// `VIR_DOMAIN_JOB_*`: NONE 0, BOUNDED 1, UNBOUNDED 2, COMPLETED 3, FAILED 4,
    /// CANCELLED 5.
    pub kind: i32,
    /// libvirt's job parameters (`time_elapsed`, `data_total`, `data_processed`,
    /// `memory_total`, `operation`, ...).
    pub params: RVec<TypedParam>,
}

/// The answer of a migration step (`migrate_begin`, `migrate_prepare`,
/// `migrate_perform`): the cookie for the other side and the step's text (begin: the
/// domain XML for the destination; prepare: the URI to migrate to). Since 1.9.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrateStep {
    /// The migration cookie handed to the next step on the other side.
    pub cookie: RVec<u8>,
    /// The step's text (see each method); empty when the step has none.
    pub text: RString,
}

/// The answer of `migrate_finish`: the domain now running on the destination and the
/// cookie for `migrate_confirm`. Since 1.9.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct MigrateFinish {
    /// The migrated domain.
    pub domain: DomainRef,
    /// The cookie handed to the source's confirm step.
    pub cookie: RVec<u8>,
}

/// A screenshot (`virDomainScreenshot`): the image bytes and their MIME type. Since 1.9.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Screenshot {
    /// MIME type of `data` (`image/x-portable-pixmap`, `image/png`).
    pub mime: RString,
    /// The image.
    pub data: RVec<u8>,
}

/// `VIR_MIGRATE_*` flags and `VIR_MIGRATE_PARAM_*` names (libvirt's values). Since 1.9.
pub mod migrate {
    /// VIR_MIGRATE_LIVE
    pub const LIVE: u32 = 1 << 0;
    /// VIR_MIGRATE_PEER2PEER
    pub const PEER2PEER: u32 = 1 << 1;
    /// VIR_MIGRATE_TUNNELLED
    pub const TUNNELLED: u32 = 1 << 2;
    /// VIR_MIGRATE_PERSIST_DEST
    pub const PERSIST_DEST: u32 = 1 << 3;
    /// VIR_MIGRATE_UNDEFINE_SOURCE
    pub const UNDEFINE_SOURCE: u32 = 1 << 4;
    /// VIR_MIGRATE_PAUSED
    pub const PAUSED: u32 = 1 << 5;
    /// VIR_MIGRATE_NON_SHARED_DISK
    pub const NON_SHARED_DISK: u32 = 1 << 6;
    /// VIR_MIGRATE_NON_SHARED_INC
    pub const NON_SHARED_INC: u32 = 1 << 7;
    /// VIR_MIGRATE_CHANGE_PROTECTION
    pub const CHANGE_PROTECTION: u32 = 1 << 8;
    /// VIR_MIGRATE_UNSAFE
    pub const UNSAFE: u32 = 1 << 9;
    /// VIR_MIGRATE_OFFLINE
    pub const OFFLINE: u32 = 1 << 10;
    /// VIR_MIGRATE_COMPRESSED
    pub const COMPRESSED: u32 = 1 << 11;
    /// VIR_MIGRATE_ABORT_ON_ERROR
    pub const ABORT_ON_ERROR: u32 = 1 << 12;
    /// VIR_MIGRATE_AUTO_CONVERGE
    pub const AUTO_CONVERGE: u32 = 1 << 13;

    /// VIR_MIGRATE_PARAM_URI: where the source sends the stream (`tcp:HOST:PORT`).
    pub const PARAM_URI: &str = "migrate_uri";
    /// VIR_MIGRATE_PARAM_DEST_NAME
    pub const PARAM_DEST_NAME: &str = "destination_name";
    /// VIR_MIGRATE_PARAM_DEST_XML
    pub const PARAM_DEST_XML: &str = "destination_xml";
    /// VIR_MIGRATE_PARAM_PERSIST_XML
    pub const PARAM_PERSIST_XML: &str = "persistent_xml";
    /// VIR_MIGRATE_PARAM_BANDWIDTH (MiB/s)
    pub const PARAM_BANDWIDTH: &str = "bandwidth";
    /// VIR_MIGRATE_PARAM_LISTEN_ADDRESS
    pub const PARAM_LISTEN_ADDRESS: &str = "listen_address";
    /// VIR_MIGRATE_PARAM_MIGRATE_DISKS
    pub const PARAM_MIGRATE_DISKS: &str = "migrate_disks";
    /// VIR_MIGRATE_PARAM_DISKS_PORT
    pub const PARAM_DISKS_PORT: &str = "disks_port";
}

/// `VIR_DOMAIN_*` state numbers.
pub mod state {
    /// VIR_DOMAIN_NOSTATE
    pub const NOSTATE: i32 = 0;
    /// VIR_DOMAIN_RUNNING
    pub const RUNNING: i32 = 1;
    /// VIR_DOMAIN_BLOCKED
    pub const BLOCKED: i32 = 2;
    /// VIR_DOMAIN_PAUSED
    pub const PAUSED: i32 = 3;
    /// VIR_DOMAIN_SHUTDOWN
    pub const SHUTDOWN: i32 = 4;
    /// VIR_DOMAIN_SHUTOFF
    pub const SHUTOFF: i32 = 5;
    /// VIR_DOMAIN_CRASHED
    pub const CRASHED: i32 = 6;
    /// VIR_DOMAIN_PMSUSPENDED
    pub const PMSUSPENDED: i32 = 7;
}

/// `VIR_DOMAIN_EVENT_*` lifecycle event numbers.
pub mod event {
    /// VIR_DOMAIN_EVENT_DEFINED
    pub const DEFINED: i32 = 0;
    /// VIR_DOMAIN_EVENT_UNDEFINED
    pub const UNDEFINED: i32 = 1;
    /// VIR_DOMAIN_EVENT_STARTED
    pub const STARTED: i32 = 2;
    /// VIR_DOMAIN_EVENT_SUSPENDED
    pub const SUSPENDED: i32 = 3;
    /// VIR_DOMAIN_EVENT_RESUMED
    pub const RESUMED: i32 = 4;
    /// VIR_DOMAIN_EVENT_STOPPED
    pub const STOPPED: i32 = 5;
    /// VIR_DOMAIN_EVENT_SHUTDOWN
    pub const SHUTDOWN: i32 = 6;
    /// VIR_DOMAIN_EVENT_PMSUSPENDED
    pub const PMSUSPENDED: i32 = 7;
    /// VIR_DOMAIN_EVENT_CRASHED
    pub const CRASHED: i32 = 8;
}

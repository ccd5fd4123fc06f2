//! The test driver: an in-memory hypervisor, compatible with libvirt's `test://` driver.
//!
//! `test:///default` starts with libvirt's default objects (a running domain `test`, a
//! network `default`, a storage pool `default-pool`) and is shared by every connection
//! in the process. `test:///ABSOLUTE/PATH.xml` loads a node description in libvirt's
//! test-driver format (a `<node>` holding `<domain>`, `<network>`, `<pool>` and `<cpu>` /
//! `<memory>` facts) into a state private to that connection.
//!
//! Its storage facet serves pool type `mock` (see [`storage`]): an in-memory backend for
//! the host's storage tests.
//!
//! Its network facet serves the pseudo forward mode `test` (see [`network`]): the
//! bookkeeping backend the host runs every network of `test:///default` on.

pub mod network;
mod node;
mod snapshot;
pub mod storage;

use node::{Node, SharedNode};
use rvirt_sdk::{
    PluginInfo,
    abi::{
        DomainInfo, DomainRef, DriverConnection, ErrorCode, ErrorDomain, EventSinkBox, JobStats,
        NodeInfo, PResult, PluginError, StateReason, TypedParam, Uuid,
        abi_stable::std_types::{RResult, RStr, RString, RVec},
    },
    filter,
    util::{check_flags, read_only_denied},
};
use std::sync::{Arc, Mutex, OnceLock};

rvirt_sdk::export_plugin! {
    manifest: PluginInfo {
        name: "test",
        kind: "hypervisor",
        schemes: &["test"],
        version: env!("CARGO_PKG_VERSION"),
        description: "in-memory test hypervisor, compatible with libvirt's test:// driver",
    },
    open: open,
    storage: { pool_types: &[storage::POOL_TYPE], open: storage::open },
    network: { forward_modes: &[network::FORWARD_MODE], open: network::open },
}

fn default_node() -> SharedNode {
    static DEFAULT: OnceLock<SharedNode> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            let node = Node::from_node_xml(node::DEFAULT_NODE_XML, None)
                .unwrap_or_else(|e| panic!("built-in default node does not parse: {e}"));
            Arc::new(Mutex::new(node))
        })
        .clone()
}

/// Opens `test:///default` or `test:///PATH.xml`.
pub fn open(
    uri: &str,
    read_only: bool,
    events: EventSinkBox,
) -> Result<TestConnection, PluginError> {
    let path = uri
        .strip_prefix("test://")
        .map(|rest| rest.split('?').next().unwrap_or(""))
        .unwrap_or("");
    let node = match path {
        "/default" | "" | "/" => default_node(),
        p if p.starts_with('/') => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                PluginError::new(
                    ErrorCode::OpenFailed,
                    ErrorDomain::Test,
                    format!("cannot read test node file '{p}': {e}"),
                )
            })?;
            let dir = std::path::Path::new(p).parent().map(|d| d.to_path_buf());
            Arc::new(Mutex::new(Node::from_node_xml(&text, dir.as_deref())?))
        }
        p => {
            return Err(PluginError::new(
                ErrorCode::InvalidArg,
                ErrorDomain::Test,
                format!("test driver URI path '{p}' must be '/default' or an absolute file path"),
            ));
        }
    };
    let panic_in = uri
        .split_once('?')
        .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("panic=")))
        .map(str::to_string);
    let crash_faults = uri
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv == "faults=crash"));
    let sink_id = node
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .add_sink(events);
    let uri = if path.is_empty() || path == "/" {
        "test:///default".to_string()
    } else {
        format!("test://{path}")
    };
    Ok(TestConnection {
        node,
        uri,
        read_only,
        sink_id,
        panic_in,
        crash_faults,
    })
}

/// One connection to a test node.
pub struct TestConnection {
    node: SharedNode,
    uri: String,
    read_only: bool,
    sink_id: u64,
    /// Fault injection for testing the host: `?panic=virDomainSuspend` makes that
    /// mutating operation panic inside the plugin.
    panic_in: Option<String>,
    /// Fault injection for testing plugin isolation (`?faults=crash`): looking up the
    /// domain named `segv`, `abort` or `hang` kills the process with SIGSEGV, aborts it,
    /// or never returns; `oom` fills 256 MiB of memory (killed where a cgroup's memory
    /// limit is lower, returning otherwise). Only a host that runs the plugin in a process of its own
    /// survives these.
    crash_faults: bool,
}

/// `?faults=crash`: what a lookup of `name` does to the process, if anything.
fn crash_fault(name: &str) {
    match name {
        "segv" => {
            // a wild write, as a buggy driver makes it: the kernel's SIGSEGV (the Rust
            // runtime's handler only claims faults in a stack guard page)
            // SAFETY: deliberately unsound: this write faults and the process dies, which
            // is the point (only with `?faults=crash`, for the host's isolation tests).
            unsafe { std::ptr::write_volatile(std::ptr::without_provenance_mut::<u8>(16), 1) };
            std::process::abort();
        }
        "abort" => std::process::abort(),
        "oom" => {
            // written, not just reserved: every page is charged to the cgroup
            let mut held: Vec<Vec<u8>> = Vec::new();
            for _ in 0..256 {
                held.push(vec![1u8; 1 << 20]);
            }
            std::hint::black_box(&held);
        }
        "hang" => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        _ => {}
    }
}

impl Drop for TestConnection {
    fn drop(&mut self) {
        self.node
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove_sink(self.sink_id);
    }
}

impl TestConnection {
    fn with<T>(&self, f: impl FnOnce(&mut Node) -> Result<T, PluginError>) -> PResult<T> {
        let mut node = self.node.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut node).into()
    }

    fn write<T>(
        &self,
        op: &str,
        f: impl FnOnce(&mut Node) -> Result<T, PluginError>,
    ) -> PResult<T> {
        if self.read_only {
            return RResult::RErr(read_only_denied(op));
        }
        if self.panic_in.as_deref() == Some(op) {
            panic!("fault injected by the connection URI in {op}");
        }
        self.with(f)
    }
}

fn ok<T>(v: T) -> PResult<T> {
    RResult::ROk(v)
}

/// libvirt's flag values (`libvirt-domain.h`) the test driver accepts, per operation: what
/// it honours, plus what libvirt's own test driver accepts and that changes nothing for an
/// in-memory domain. Any other bit is refused by `checked!`.
mod allowed {
    /// `VIR_DOMAIN_DEFINE_VALIDATE`: definitions are always validated.
    pub const DEFINE: u32 = 1;
    /// `VIR_DOMAIN_UNDEFINE_MANAGED_SAVE` (1) | `VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA`
    /// (2), as libvirt's test driver; the in-memory domain keeps neither once undefined.
    pub const UNDEFINE: u32 = 1 | 2;
    /// `VIR_DOMAIN_START_PAUSED`.
    pub const CREATE: u32 = 1;
    /// `VIR_DOMAIN_START_PAUSED` (1) | `VIR_DOMAIN_START_VALIDATE` (16): XML is always
    /// validated.
    pub const CREATE_XML: u32 = 1 | 16;
    /// `VIR_DOMAIN_DESTROY_GRACEFUL`: an in-memory domain stops the same either way.
    pub const DESTROY: u32 = 1;
    /// None: `virDomainShutdownFlags` modes are refused, as libvirt's test driver does.
    pub const SHUTDOWN: u32 = 0;
    /// `VIR_DOMAIN_REBOOT_ACPI_POWER_BTN` (1), `_GUEST_AGENT` (2), `_INITCTL` (4),
    /// `_SIGNAL` (8), `_PARAVIRT` (16): every method reboots the in-memory domain.
    pub const REBOOT: u32 = 1 | 2 | 4 | 8 | 16;
    /// `VIR_DOMAIN_XML_SECURE` (1) | `VIR_DOMAIN_XML_INACTIVE` (2) |
    /// `VIR_DOMAIN_XML_MIGRATABLE` (8), libvirt's common XML flags; `UPDATE_CPU` (4) is
    /// refused (there is no host CPU to update from).
    pub const XML_DESC: u32 = 1 | 2 | 8;
    /// `VIR_DOMAIN_AFFECT_LIVE` (1) | `VIR_DOMAIN_AFFECT_CONFIG` (2) |
    /// `VIR_DOMAIN_VCPU_MAXIMUM` (4).
    pub const VCPUS: u32 = 1 | 2 | 4;
    /// None.
    pub const MANAGED_SAVE: u32 = 0;
    /// `VIR_DOMAIN_AFFECT_LIVE` (1) | `VIR_DOMAIN_AFFECT_CONFIG` (2) |
    /// `VIR_DOMAIN_MEM_MAXIMUM` / `VIR_DOMAIN_VCPU_MAXIMUM` (4).
    pub const SET_COUNTS: u32 = 1 | 2 | 4;
    /// `VIR_DOMAIN_SNAPSHOT_XML_SECURE`.
    pub const SNAPSHOT_XML: u32 = 1;
    /// None (the topology flags of the children listing are all accepted there).
    pub const SNAPSHOT_CURRENT: u32 = 0;
    /// `VIR_DOMAIN_SAVE_BYPASS_CACHE` (1, nothing to bypass in memory) |
    /// `VIR_DOMAIN_SAVE_RUNNING` (2) | `VIR_DOMAIN_SAVE_PAUSED` (4).
    pub const SAVE: u32 = 1 | 2 | 4;
    /// `VIR_DOMAIN_SAVE_IMAGE_XML_SECURE`: the image holds the secure XML already.
    pub const SAVE_IMAGE_XML: u32 = 1;
    /// `VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT` (1 << 29), `_BACKING` (1 << 30),
    /// `_ENFORCE_STATS` (1 << 31): nothing waits and there are no backing chains.
    pub const STATS: u32 = (1 << 29) | (1 << 30) | (1 << 31);
    /// `VIR_DOMAIN_JOB_STATS_COMPLETED` (1) | `_KEEP_COMPLETED` (2).
    pub const JOB_STATS: u32 = 1 | 2;
}

/// Returns libvirt's invalid-argument error from the enclosing method when `flags` has a
/// bit outside `allowed` (`virCheckFlags`).
macro_rules! checked {
    ($op:literal, $flags:expr, $allowed:expr) => {
        if let Err(e) = check_flags(ErrorDomain::Test, $op, $flags, $allowed) {
            return RResult::RErr(e);
        }
    };
}

impl DriverConnection for TestConnection {
    fn get_type(&self) -> PResult<RString> {
        ok("Test".into())
    }

    fn get_version(&self) -> PResult<u64> {
        ok(2)
    }

    fn get_uri(&self) -> PResult<RString> {
        ok(self.uri.as_str().into())
    }

    fn get_hostname(&self) -> PResult<RString> {
        let name = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        ok(name.into())
    }

    fn get_capabilities(&self) -> PResult<RString> {
        ok(node::CAPABILITIES_XML.into())
    }

    fn node_get_info(&self) -> PResult<NodeInfo> {
        self.with(|n| Ok(n.node_info.clone()))
    }

    fn list_all_domains(&self, flags: u32) -> PResult<RVec<DomainRef>> {
        checked!("virConnectListAllDomains", flags, filter::FILTERS);
        self.with(|n| Ok(n.list(flags).into_iter().collect()))
    }

    fn lookup_by_name(&self, name: RStr<'_>) -> PResult<DomainRef> {
        if self.crash_faults {
            crash_fault(name.as_str());
        }
        self.with(|n| n.by_name(name.as_str()).map(|d| d.reference()))
    }

    fn lookup_by_uuid(&self, uuid: Uuid) -> PResult<DomainRef> {
        self.with(|n| n.by_uuid(uuid).map(|d| d.reference()))
    }

    fn lookup_by_id(&self, id: i32) -> PResult<DomainRef> {
        self.with(|n| n.by_id(id).map(|d| d.reference()))
    }

    fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainDefineXMLFlags", flags, allowed::DEFINE);
        self.write("virDomainDefineXML", |n| n.define(xml.as_str()))
    }

    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainUndefineFlags", flags, allowed::UNDEFINE);
        self.write("virDomainUndefine", |n| n.undefine(uuid, flags))
    }

    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainCreateWithFlags", flags, allowed::CREATE);
        self.write("virDomainCreate", |n| n.start(uuid, flags))
    }

    fn create_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainCreateXML", flags, allowed::CREATE_XML);
        self.write("virDomainCreateXML", |n| {
            n.create_transient(xml.as_str(), flags)
        })
    }

    fn destroy(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainDestroyFlags", flags, allowed::DESTROY);
        self.write("virDomainDestroy", |n| n.stop(uuid, node::Stop::Destroy))
    }

    fn shutdown(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainShutdownFlags", flags, allowed::SHUTDOWN);
        self.write("virDomainShutdown", |n| n.stop(uuid, node::Stop::Shutdown))
    }

    fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainReboot", flags, allowed::REBOOT);
        self.write("virDomainReboot", |n| n.reboot(uuid))
    }

    fn suspend(&self, uuid: Uuid) -> PResult<()> {
        self.write("virDomainSuspend", |n| n.suspend(uuid))
    }

    fn resume(&self, uuid: Uuid) -> PResult<()> {
        self.write("virDomainResume", |n| n.resume(uuid))
    }

    fn get_info(&self, uuid: Uuid) -> PResult<DomainInfo> {
        self.with(|n| n.by_uuid(uuid).map(|d| d.info()))
    }

    fn get_state(&self, uuid: Uuid) -> PResult<StateReason> {
        self.with(|n| {
            n.by_uuid(uuid).map(|d| StateReason {
                state: d.state,
                reason: d.reason,
            })
        })
    }

    fn get_xml_desc(&self, uuid: Uuid, flags: u32) -> PResult<RString> {
        checked!("virDomainGetXMLDesc", flags, allowed::XML_DESC);
        self.with(|n| n.by_uuid(uuid).map(|d| d.xml(flags).into()))
    }

    fn is_persistent(&self, uuid: Uuid) -> PResult<bool> {
        self.with(|n| n.by_uuid(uuid).map(|d| d.persistent))
    }

    fn get_autostart(&self, uuid: Uuid) -> PResult<bool> {
        self.with(|n| n.by_uuid(uuid).map(|d| d.autostart))
    }

    fn set_autostart(&self, uuid: Uuid, autostart: bool) -> PResult<()> {
        self.write("virDomainSetAutostart", |n| {
            n.set_autostart(uuid, autostart)
        })
    }

    fn get_vcpus_flags(&self, uuid: Uuid, flags: u32) -> PResult<i32> {
        checked!("virDomainGetVcpusFlags", flags, allowed::VCPUS);
        self.with(|n| n.by_uuid(uuid).map(|d| d.vcpus(flags)))
    }

    fn get_os_type(&self, uuid: Uuid) -> PResult<RString> {
        self.with(|n| n.by_uuid(uuid).map(|d| d.def.os_type().into()))
    }

    fn has_managed_save_image(&self, uuid: Uuid, flags: u32) -> PResult<bool> {
        checked!("virDomainHasManagedSaveImage", flags, allowed::MANAGED_SAVE);
        self.with(|n| n.by_uuid(uuid).map(|d| d.managed_save))
    }

    fn set_memory_flags(&self, uuid: Uuid, kib: u64, flags: u32) -> PResult<()> {
        checked!("virDomainSetMemoryFlags", flags, allowed::SET_COUNTS);
        self.write("virDomainSetMemoryFlags", |n| {
            n.set_memory(uuid, kib, flags)
        })
    }

    fn set_vcpus_flags(&self, uuid: Uuid, nvcpus: u32, flags: u32) -> PResult<()> {
        checked!("virDomainSetVcpusFlags", flags, allowed::SET_COUNTS);
        self.write("virDomainSetVcpusFlags", |n| {
            n.set_vcpus(uuid, nvcpus, flags)
        })
    }

    fn snapshot_create_xml(&self, uuid: Uuid, xml: RStr<'_>, flags: u32) -> PResult<RString> {
        checked!(
            "virDomainSnapshotCreateXML",
            flags,
            snapshot::create::ALLOWED
        );
        self.write("virDomainSnapshotCreateXML", |n| {
            n.snapshot_create(uuid, xml.as_str(), flags).map(Into::into)
        })
    }

    fn snapshot_list(&self, uuid: Uuid, flags: u32) -> PResult<RVec<RString>> {
        checked!("virDomainListAllSnapshots", flags, snapshot::list::ALL);
        self.with(|n| {
            let s = n.snapshots(uuid)?;
            Ok(s.names(flags).into_iter().map(Into::into).collect())
        })
    }

    fn snapshot_list_children(
        &self,
        uuid: Uuid,
        name: RStr<'_>,
        flags: u32,
    ) -> PResult<RVec<RString>> {
        checked!(
            "virDomainSnapshotListAllChildren",
            flags,
            snapshot::list::ALL
        );
        self.with(|n| {
            let s = n.snapshots(uuid)?.children(name.as_str(), flags)?;
            Ok(s.into_iter().map(Into::into).collect())
        })
    }

    fn snapshot_get_xml_desc(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<RString> {
        checked!("virDomainSnapshotGetXMLDesc", flags, allowed::SNAPSHOT_XML);
        self.with(|n| {
            n.snapshots(uuid)?
                .xml(name.as_str(), flags & allowed::SNAPSHOT_XML != 0)
                .map(Into::into)
        })
    }

    fn snapshot_current(&self, uuid: Uuid, flags: u32) -> PResult<RString> {
        checked!("virDomainSnapshotCurrent", flags, allowed::SNAPSHOT_CURRENT);
        self.with(|n| n.snapshots(uuid)?.current().map(Into::into))
    }

    fn snapshot_get_parent(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<RString> {
        checked!(
            "virDomainSnapshotGetParent",
            flags,
            allowed::SNAPSHOT_CURRENT
        );
        self.with(|n| n.snapshots(uuid)?.parent(name.as_str()).map(Into::into))
    }

    fn snapshot_revert(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<()> {
        checked!(
            "virDomainRevertToSnapshot",
            flags,
            snapshot::revert::ALLOWED
        );
        self.write("virDomainRevertToSnapshot", |n| {
            n.snapshot_revert(uuid, name.as_str(), flags)
        })
    }

    fn snapshot_delete(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<()> {
        checked!("virDomainSnapshotDelete", flags, snapshot::delete::ALLOWED);
        self.write("virDomainSnapshotDelete", |n| {
            n.snapshot_delete(uuid, name.as_str(), flags)
        })
    }

    fn save_flags(&self, uuid: Uuid, path: RStr<'_>, dxml: RStr<'_>, flags: u32) -> PResult<()> {
        checked!("virDomainSaveFlags", flags, allowed::SAVE);
        self.write("virDomainSaveFlags", |n| {
            n.save(uuid, path.as_str(), dxml.as_str(), flags)
        })
    }

    fn restore_flags(&self, path: RStr<'_>, dxml: RStr<'_>, flags: u32) -> PResult<DomainRef> {
        checked!("virDomainRestoreFlags", flags, allowed::SAVE);
        self.write("virDomainRestoreFlags", |n| {
            n.restore(path.as_str(), dxml.as_str(), flags)
        })
    }

    fn save_image_get_xml_desc(&self, path: RStr<'_>, flags: u32) -> PResult<RString> {
        checked!(
            "virDomainSaveImageGetXMLDesc",
            flags,
            allowed::SAVE_IMAGE_XML
        );
        self.with(|n| n.save_image_xml(path.as_str()).map(Into::into))
    }

    fn save_image_define_xml(&self, path: RStr<'_>, dxml: RStr<'_>, flags: u32) -> PResult<()> {
        checked!("virDomainSaveImageDefineXML", flags, allowed::SAVE & !1);
        self.write("virDomainSaveImageDefineXML", |n| {
            n.save_image_define(path.as_str(), dxml.as_str(), flags)
        })
    }

    fn managed_save(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainManagedSave", flags, allowed::SAVE);
        self.write("virDomainManagedSave", |n| n.managed_save(uuid, flags))
    }

    fn managed_save_remove(&self, uuid: Uuid, flags: u32) -> PResult<()> {
        checked!("virDomainManagedSaveRemove", flags, 0);
        self.write("virDomainManagedSaveRemove", |n| {
            n.managed_save_remove(uuid)
        })
    }

    fn domain_stats(&self, uuid: Uuid, stats: u32, flags: u32) -> PResult<RVec<TypedParam>> {
        checked!("virConnectGetAllDomainStats", flags, allowed::STATS);
        self.with(|n| n.domain_stats(uuid, stats))
    }

    fn memory_stats(&self, uuid: Uuid, flags: u32) -> PResult<RVec<TypedParam>> {
        checked!("virDomainMemoryStats", flags, 0);
        self.with(|n| {
            let d = n.by_uuid(uuid)?;
            if !d.is_active() {
                return Err(rvirt_sdk::util::operation_invalid(
                    ErrorDomain::Test,
                    "domain is not running",
                ));
            }
            Ok(d.memory_stats())
        })
    }

    fn get_job_stats(&self, uuid: Uuid, flags: u32) -> PResult<JobStats> {
        checked!("virDomainGetJobStats", flags, allowed::JOB_STATS);
        // no job ever runs in the in-memory driver: VIR_DOMAIN_JOB_NONE
        self.with(|n| {
            n.by_uuid(uuid).map(|_| JobStats {
                kind: 0,
                params: RVec::new(),
            })
        })
    }

    fn get_cpu_stats(
        &self,
        uuid: Uuid,
        start_cpu: i32,
        ncpus: u32,
        flags: u32,
    ) -> PResult<RVec<RVec<TypedParam>>> {
        // VIR_TYPED_PARAM_STRING_OKAY: virsh sets it; the answer has no strings
        checked!("virDomainGetCPUStats", flags, 4);
        self.with(|n| {
            let d = n.by_uuid(uuid)?;
            if !d.is_active() {
                return Err(rvirt_sdk::util::operation_invalid(
                    ErrorDomain::Test,
                    "domain is not running",
                ));
            }
            if start_cpu != -1 || ncpus != 1 {
                return Err(PluginError::new(
                    ErrorCode::NoSupport,
                    ErrorDomain::Test,
                    "this function is not supported by the connection driver: virDomainGetCPUStats per host CPU (the test driver has the totals only)",
                ));
            }
            Ok(std::iter::once(d.cpu_totals()).collect())
        })
    }
}

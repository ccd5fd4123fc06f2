//! API 1.0, frozen: the whole closure of its root module.
//!
//! Every type reachable from [`PluginMod`] is copied here as 1.0 released it, so that
//! editing a current type never changes this layout. Later minors reuse the types they did
//! not change from this module. Nothing here refers to a type outside `frozen/` (abi_stable
//! and std types excepted).

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RStr, RString, RVec},
};

/// A domain UUID: 16 raw bytes.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

/// What identifies a domain to a client.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct DomainRef {
    pub name: RString,
    pub uuid: Uuid,
    pub id: i32,
}

/// libvirt's `virDomainInfo`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainInfo {
    pub state: i32,
    pub max_mem_kib: u64,
    pub memory_kib: u64,
    pub nr_virt_cpu: u32,
    pub cpu_time_ns: u64,
}

/// A domain's state and the reason for it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateReason {
    pub state: i32,
    pub reason: i32,
}

/// libvirt's `virNodeInfo`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub model: RString,
    pub memory_kib: u64,
    pub cpus: u32,
    pub mhz: u32,
    pub nodes: u32,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
}

/// Who a plugin is and what it serves.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: RString,
    pub kind: RString,
    pub schemes: RVec<RString>,
    pub version: RString,
    pub api_version: RString,
    pub description: RString,
}

/// An error returned by a plugin: libvirt error code and domain numbers and a message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub code: i32,
    pub domain: i32,
    pub message: RString,
}

impl PluginError {
    /// The no-support error for an operation, as 1.0 wrote it (`VIR_ERR_NO_SUPPORT`,
    /// `VIR_FROM_NONE`); the default bodies of later minors' methods answer it.
    pub fn no_support(operation: &str) -> Self {
        Self {
            code: 3,
            domain: 0,
            message: RString::from(format!(
                "this function is not supported by the connection driver: {operation}"
            )),
        }
    }
}

/// The result type of every method that crosses the boundary.
pub type PResult<T> = RResult<T, PluginError>;

#[sabi_trait]
pub trait EventSink: Send + Sync {
    #[sabi(last_prefix_field)]
    fn domain_lifecycle(&self, dom: DomainRef, event: i32, detail: i32);
}

pub type EventSinkBox = EventSink_TO<'static, RBox<()>>;

#[sabi_trait]
pub trait DriverConnection: Send + Sync {
    fn get_type(&self) -> PResult<RString>;
    fn get_version(&self) -> PResult<u64>;
    fn get_uri(&self) -> PResult<RString>;
    fn get_hostname(&self) -> PResult<RString>;
    fn get_capabilities(&self) -> PResult<RString>;
    fn node_get_info(&self) -> PResult<NodeInfo>;
    fn list_all_domains(&self, flags: u32) -> PResult<RVec<DomainRef>>;
    fn lookup_by_name(&self, name: RStr<'_>) -> PResult<DomainRef>;
    fn lookup_by_uuid(&self, uuid: Uuid) -> PResult<DomainRef>;
    fn lookup_by_id(&self, id: i32) -> PResult<DomainRef>;
    fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef>;
    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()>;
    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef>;
    fn create_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef>;
    fn destroy(&self, uuid: Uuid, flags: u32) -> PResult<()>;
    fn shutdown(&self, uuid: Uuid, flags: u32) -> PResult<()>;
    fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()>;
    fn suspend(&self, uuid: Uuid) -> PResult<()>;
    fn resume(&self, uuid: Uuid) -> PResult<()>;
    fn get_info(&self, uuid: Uuid) -> PResult<DomainInfo>;
    fn get_state(&self, uuid: Uuid) -> PResult<StateReason>;
    fn get_xml_desc(&self, uuid: Uuid, flags: u32) -> PResult<RString>;
    fn is_persistent(&self, uuid: Uuid) -> PResult<bool>;
    fn get_autostart(&self, uuid: Uuid) -> PResult<bool>;
    #[sabi(last_prefix_field)]
    fn set_autostart(&self, uuid: Uuid, autostart: bool) -> PResult<()>;
}

pub type DriverConnectionBox = DriverConnection_TO<'static, RBox<()>>;

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginMod_Ref)))]
pub struct PluginMod {
    pub manifest: extern "C" fn() -> Manifest,
    #[sabi(last_prefix_field)]
    pub open: extern "C" fn(
        uri: RStr<'_>,
        read_only: bool,
        events: EventSinkBox,
    ) -> PResult<DriverConnectionBox>,
}

impl RootModule for PluginMod_Ref {
    declare_root_module_statics! {PluginMod_Ref}
    const BASE_NAME: &'static str = "rvirt_plugin";
    const NAME: &'static str = "rvirt_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

//! The stable plugin ABI of rvirt.
//!
//! This is the only crate that knows `abi_stable`. A plugin is a shared object whose root
//! module ([`PluginMod`]) carries a [`Manifest`] and an `open` function returning a
//! [`DriverConnectionBox`]: a `#[sabi_trait]` object through which the host drives one
//! connection. Objects cross the boundary as libvirt-format XML strings plus small plain
//! values (names, UUIDs, ids, flags, state codes), so the ABI stays small while the XML
//! schema grows.
//!
//! # Versioning
//!
//! The crate's own version is the plugin API version. A plugin built against `M.m` loads
//! into a host of API `M.n` when `m <= n`. Minor versions only *append*: methods to the
//! trait objects (after the method marked `last_prefix_field`), each with a default body
//! that answers the no-support error, and fields to the prefix types; the host keeps a
//! frozen copy of every older minor's layout in [`frozen`] to check an older plugin before
//! viewing it through the current types. See `docs/plugin-abi.md` for the rules and the changelog.
//!
//! # Facets
//!
//! Since 1.3 the root module offers optional per-kind entries after `open`: the
//! [`StorageFacet`] (storage backends) and, since 1.5, the [`NetworkFacet`] (network
//! backends); node devices and secrets later. Each
//! facet is a prefix type of its own with its own minor line ([`FacetVersion`]), so it
//! grows without touching [`PluginMod`] again. A facet is opened with the
//! [`HostServices`] the host lends the plugin.
//!
//! # Host services for hypervisors
//!
//! Since 1.4 a hypervisor connection is opened with the [`HostServices`] too, through the
//! optional `PluginMod::open_with_host` (a host calls `open` for plugins without it): the
//! system root, the connection's URI as the host parsed it
//! ([`HostServices::connection_uri`]) and the resolution of storage volumes for
//! `<disk type='volume'>` ([`HostServices::volume_source`]).
//!
//! # Networks
//!
//! Since 1.5 the root module offers the [`NetworkFacet`] after `open_with_host`: network
//! backends for libvirt forward modes ([`NetworkBackend`]), opened with the host services.
//!
//! Besides the abi_stable root module, every plugin exports the plain C symbol
//! [`API_VERSION_SYMBOL`]: a function returning a NUL-terminated version string. Its shape
//! never changes, so the host can read it from any plugin of any major and refuse it with
//! a clear message before abi_stable looks at the layout.
#![allow(non_local_definitions, non_camel_case_types)]

pub mod error;
pub mod frozen;
pub mod network;
pub mod owned;
pub mod storage;
pub mod types;

pub use abi_stable;
use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RStr, RString, RVec},
};
pub use error::{ErrorCode, ErrorDomain, PluginError};
pub use network::*;
pub use owned::*;
pub use storage::*;
pub use types::*;

/// The plugin API version this crate defines (its Cargo version).
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// [`API_VERSION`] with a trailing NUL, for the C symbol [`API_VERSION_SYMBOL`].
pub const API_VERSION_NUL: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// Name of the plain C symbol every plugin exports:
/// `extern "C" fn() -> *const c_char`, returning the API version it was built against.
pub const API_VERSION_SYMBOL: &[u8] = b"rvirt_plugin_api_version\0";

/// The environment variable that relocates plugins' system paths: when it is set to an
/// absolute directory (rvirtd `--root DIR` sets it to DIR), the `/etc/...`, `/var/lib/...`,
/// `/run/...` and `/var/log/...` paths of system connections (`qemu:///system`) live under
/// it instead of `/`. A convention of the API since 1.2, not part of the binary layout.
/// Facets (since 1.3) learn the system root from [`HostServices::system_root`] instead.
pub const SYSTEM_ROOT_ENV: &str = "RVIRT_SYSTEM_ROOT";

/// The result type of every method that crosses the boundary.
pub type PResult<T> = RResult<T, PluginError>;

/// Receives asynchronous events from a driver connection (given to `open` by the host).
#[sabi_trait]
pub trait EventSink: Send + Sync {
    /// A domain lifecycle event: `event` is a `VIR_DOMAIN_EVENT_*` number, `detail` its
    /// detail code.
    #[sabi(last_prefix_field)]
    fn domain_lifecycle(&self, dom: DomainRef, event: i32, detail: i32);

    /// The guest released device `alias` (`VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED`): a
    /// hot-unplug finished. Since 1.10; an older host's sink lacks it and the call does
    /// nothing.
    fn domain_device_removed(&self, _dom: DomainRef, _alias: RStr<'_>) {}
}

/// The boxed event sink trait object.
pub type EventSinkBox = EventSink_TO<'static, RBox<()>>;

/// Calls `$callback! { ... }` with every method of [`DriverConnection`], in vtable order:
/// the single declaration of the trait's methods.
///
/// The trait itself is generated from this list, and so is the SDK's panic-guarding
/// adapter (`rvirt_sdk::Guarded`), so a method cannot be added to one and forgotten in the
/// other. The callback receives two groups, each a list of
/// `$(#[attr])* fn name(&self, arg: Type, ...) -> Ret = "virLibvirtApiName";`:
///
/// - `api_1_0 { ... }`: the methods every plugin has, the last marked
///   `#[sabi(last_prefix_field)]`;
/// - `appended { ... }`: methods appended by later minors, each documented with the minor
///   that added it. Their default bodies answer no-support naming the libvirt API.
///
/// To add a method in a new minor, append it at the end of `appended` (see
/// `docs/plugin-abi.md`); the names of types are resolved where the callback expands.
#[macro_export]
macro_rules! driver_connection_methods {
    ($callback:ident) => {
        $callback! {
            api_1_0 {
                /// The hypervisor type, as `virConnectGetType` reports it (`"Test"`, `"QEMU"`).
                fn get_type(&self) -> PResult<RString> = "virConnectGetType";
                /// The hypervisor version as libvirt encodes it (major * 1,000,000 + minor *
                /// 1,000 + micro).
                fn get_version(&self) -> PResult<u64> = "virConnectGetVersion";
                /// The canonical URI of this connection.
                fn get_uri(&self) -> PResult<RString> = "virConnectGetURI";
                /// The host's name as the driver sees it.
                fn get_hostname(&self) -> PResult<RString> = "virConnectGetHostname";
                /// The capabilities XML document.
                fn get_capabilities(&self) -> PResult<RString> = "virConnectGetCapabilities";
                /// The node's CPU and memory facts.
                fn node_get_info(&self) -> PResult<NodeInfo> = "virNodeGetInfo";
                /// Domains matching `VIR_CONNECT_LIST_DOMAINS_*` flags (0 = all).
                fn list_all_domains(&self, flags: u32) -> PResult<RVec<DomainRef>> =
                    "virConnectListAllDomains";
                /// Look a domain up by name.
                fn lookup_by_name(&self, name: RStr<'_>) -> PResult<DomainRef> =
                    "virDomainLookupByName";
                /// Look a domain up by UUID.
                fn lookup_by_uuid(&self, uuid: Uuid) -> PResult<DomainRef> =
                    "virDomainLookupByUUID";
                /// Look a running domain up by its id.
                fn lookup_by_id(&self, id: i32) -> PResult<DomainRef> = "virDomainLookupByID";
                /// Define (or redefine) a persistent domain from XML
                /// (`VIR_DOMAIN_DEFINE_*` flags).
                fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> =
                    "virDomainDefineXMLFlags";
                /// Remove a domain's persistent config (`VIR_DOMAIN_UNDEFINE_*` flags).
                fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()> =
                    "virDomainUndefineFlags";
                /// Start a defined domain (`VIR_DOMAIN_START_*` flags).
                fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef> =
                    "virDomainCreateWithFlags";
                /// Create and start a transient domain from XML (`VIR_DOMAIN_START_*` flags).
                fn create_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> =
                    "virDomainCreateXML";
                /// Stop a domain at once (`VIR_DOMAIN_DESTROY_*` flags).
                fn destroy(&self, uuid: Uuid, flags: u32) -> PResult<()> =
                    "virDomainDestroyFlags";
                /// Ask the guest to shut down (`VIR_DOMAIN_SHUTDOWN_*` flags).
                fn shutdown(&self, uuid: Uuid, flags: u32) -> PResult<()> =
                    "virDomainShutdownFlags";
                /// Ask the guest to reboot (`VIR_DOMAIN_REBOOT_*` flags).
                fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()> = "virDomainReboot";
                /// Pause a running domain.
                fn suspend(&self, uuid: Uuid) -> PResult<()> = "virDomainSuspend";
                /// Resume a paused domain.
                fn resume(&self, uuid: Uuid) -> PResult<()> = "virDomainResume";
                /// State, memory, vcpus and CPU time.
                fn get_info(&self, uuid: Uuid) -> PResult<DomainInfo> = "virDomainGetInfo";
                /// State and reason (`VIR_DOMAIN_*` and the state's reason enum).
                fn get_state(&self, uuid: Uuid) -> PResult<StateReason> = "virDomainGetState";
                /// The domain XML (`VIR_DOMAIN_XML_*` flags).
                fn get_xml_desc(&self, uuid: Uuid, flags: u32) -> PResult<RString> =
                    "virDomainGetXMLDesc";
                /// Whether the domain has a persistent config.
                fn is_persistent(&self, uuid: Uuid) -> PResult<bool> = "virDomainIsPersistent";
                /// Whether the domain starts with the driver.
                fn get_autostart(&self, uuid: Uuid) -> PResult<bool> = "virDomainGetAutostart";
                /// Set whether the domain starts with the driver.
                #[sabi(last_prefix_field)]
                fn set_autostart(&self, uuid: Uuid, autostart: bool) -> PResult<()> =
                    "virDomainSetAutostart";
            }
            appended {
                /// Number of vcpus (`VIR_DOMAIN_VCPU_*` flags: LIVE 1, CONFIG 2, MAXIMUM 4).
                /// Since 1.1.
                fn get_vcpus_flags(&self, uuid: Uuid, flags: u32) -> PResult<i32> =
                    "virDomainGetVcpusFlags";
                /// The guest OS type (`hvm`, `linux`, `exe`). Since 1.1.
                fn get_os_type(&self, uuid: Uuid) -> PResult<RString> = "virDomainGetOSType";
                /// Whether a managed save image exists. Since 1.1.
                fn has_managed_save_image(&self, uuid: Uuid, flags: u32) -> PResult<bool> =
                    "virDomainHasManagedSaveImage";
                /// Convert a domain XML document to the hypervisor's native configuration
                /// (`format` names it, e.g. `qemu-argv`). Since 1.2.
                fn domain_xml_to_native(
                    &self,
                    format: RStr<'_>,
                    xml: RStr<'_>,
                    flags: u32
                ) -> PResult<RString> = "virConnectDomainXMLToNative";
                /// Convert the hypervisor's native configuration (`format` names it, e.g.
                /// `vmware-vmx`) to a domain XML document. Since 1.6.
                fn domain_xml_from_native(
                    &self,
                    format: RStr<'_>,
                    config: RStr<'_>,
                    flags: u32
                ) -> PResult<RString> = "virConnectDomainXMLFromNative";
                /// Set the domain's memory in KiB (`VIR_DOMAIN_AFFECT_LIVE` 1,
                /// `VIR_DOMAIN_AFFECT_CONFIG` 2, `VIR_DOMAIN_MEM_MAXIMUM` 4: the maximum
                /// instead of the current size). Since 1.7.
                fn set_memory_flags(&self, uuid: Uuid, kib: u64, flags: u32) -> PResult<()> =
                    "virDomainSetMemoryFlags";
                /// Set the number of vCPUs (`VIR_DOMAIN_AFFECT_LIVE` 1,
                /// `VIR_DOMAIN_AFFECT_CONFIG` 2, `VIR_DOMAIN_VCPU_MAXIMUM` 4). Since 1.7.
                fn set_vcpus_flags(&self, uuid: Uuid, nvcpus: u32, flags: u32) -> PResult<()> =
                    "virDomainSetVcpusFlags";
                /// Attach the device described by `xml` (a `<disk>`, `<interface>`, ...),
                /// with `VIR_DOMAIN_AFFECT_*` flags. Since 1.7.
                fn attach_device_flags(&self, uuid: Uuid, xml: RStr<'_>, flags: u32) -> PResult<()> =
                    "virDomainAttachDeviceFlags";
                /// Detach the device `xml` describes. Since 1.7.
                fn detach_device_flags(&self, uuid: Uuid, xml: RStr<'_>, flags: u32) -> PResult<()> =
                    "virDomainDetachDeviceFlags";
                /// Create a snapshot from a `<domainsnapshot>` document; returns its name.
                /// Since 1.7.
                fn snapshot_create_xml(&self, uuid: Uuid, xml: RStr<'_>, flags: u32) -> PResult<RString> =
                    "virDomainSnapshotCreateXML";
                /// The names of the domain's snapshots the `VIR_DOMAIN_SNAPSHOT_LIST_*` flags
                /// select. Since 1.7.
                fn snapshot_list(&self, uuid: Uuid, flags: u32) -> PResult<RVec<RString>> =
                    "virDomainListAllSnapshots";
                /// The names of a snapshot's children (`VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS`
                /// 1: all descendants). Since 1.7.
                fn snapshot_list_children(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<RVec<RString>> =
                    "virDomainSnapshotListAllChildren";
                /// A snapshot's `<domainsnapshot>` document. Since 1.7.
                fn snapshot_get_xml_desc(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<RString> =
                    "virDomainSnapshotGetXMLDesc";
                /// The current snapshot's name (`VIR_ERR_NO_DOMAIN_SNAPSHOT` when there is
                /// none). Since 1.7.
                fn snapshot_current(&self, uuid: Uuid, flags: u32) -> PResult<RString> =
                    "virDomainSnapshotCurrent";
                /// A snapshot's parent's name (`VIR_ERR_NO_DOMAIN_SNAPSHOT` for a root).
                /// Since 1.7.
                fn snapshot_get_parent(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<RString> =
                    "virDomainSnapshotGetParent";
                /// Revert the domain to a snapshot. Since 1.7.
                fn snapshot_revert(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<()> =
                    "virDomainRevertToSnapshot";
                /// Delete a snapshot (`VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN` 1,
                /// `_METADATA_ONLY` 2, `_CHILDREN_ONLY` 4). Since 1.7.
                fn snapshot_delete(&self, uuid: Uuid, name: RStr<'_>, flags: u32) -> PResult<()> =
                    "virDomainSnapshotDelete";
                /// Save the running domain's memory and device state to the file `path`
                /// and stop it (`dxml`, when not empty, is the definition to restore with;
                /// `VIR_DOMAIN_SAVE_BYPASS_CACHE` 1, `_RUNNING` 2, `_PAUSED` 4). Since 1.8.
                fn save_flags(&self, uuid: Uuid, path: RStr<'_>, dxml: RStr<'_>, flags: u32) -> PResult<()> =
                    "virDomainSaveFlags";
                /// Start the domain saved in `path` where it stopped (`dxml` as in
                /// `save_flags`; `VIR_DOMAIN_SAVE_*` flags); the restored domain. Since 1.8.
                fn restore_flags(&self, path: RStr<'_>, dxml: RStr<'_>, flags: u32) -> PResult<DomainRef> =
                    "virDomainRestoreFlags";
                /// The domain XML recorded in the save image `path`
                /// (`VIR_DOMAIN_SAVE_IMAGE_XML_SECURE` 1). Since 1.8.
                fn save_image_get_xml_desc(&self, path: RStr<'_>, flags: u32) -> PResult<RString> =
                    "virDomainSaveImageGetXMLDesc";
                /// Replace the domain XML recorded in the save image `path`. Since 1.8.
                fn save_image_define_xml(&self, path: RStr<'_>, dxml: RStr<'_>, flags: u32) -> PResult<()> =
                    "virDomainSaveImageDefineXML";
                /// Save the running domain to the driver's own image, which the next start
                /// resumes from (`VIR_DOMAIN_SAVE_*` flags). Since 1.8.
                fn managed_save(&self, uuid: Uuid, flags: u32) -> PResult<()> =
                    "virDomainManagedSave";
                /// Remove the domain's managed save image. Since 1.8.
                fn managed_save_remove(&self, uuid: Uuid, flags: u32) -> PResult<()> =
                    "virDomainManagedSaveRemove";
                /// The domain's statistics of the `VIR_DOMAIN_STATS_*` groups `stats`
                /// selects (STATE 1, CPU_TOTAL 2, BALLOON 4, VCPU 8, INTERFACE 16, BLOCK 32),
                /// with libvirt's typed-parameter names (`state.state`, `cpu.time`,
                /// `block.0.rd.bytes`, ...). `flags` are `virConnectGetAllDomainStats`'.
                /// Since 1.8.
                fn domain_stats(&self, uuid: Uuid, stats: u32, flags: u32) -> PResult<RVec<TypedParam>> =
                    "virConnectGetAllDomainStats";
                /// One disk's I/O counters, named as `virDomainBlockStatsFlags` names them
                /// (`rd_operations`, `rd_bytes`, `wr_operations`, `wr_bytes`, `errs`, ...);
                /// `disk` is a target name (`vda`) or a source path. Since 1.8.
                fn block_stats_flags(&self, uuid: Uuid, disk: RStr<'_>, flags: u32) -> PResult<RVec<TypedParam>> =
                    "virDomainBlockStatsFlags";
                /// One interface's counters, named as `virDomainInterfaceStats`' struct
                /// members (`rx_bytes`, `rx_packets`, `rx_errs`, `rx_drop`, `tx_bytes`,
                /// `tx_packets`, `tx_errs`, `tx_drop`); `device` is a target name or MAC.
                /// Since 1.8.
                fn interface_stats(&self, uuid: Uuid, device: RStr<'_>) -> PResult<RVec<TypedParam>> =
                    "virDomainInterfaceStats";
                /// Memory statistics, each named after its `VIR_DOMAIN_MEMORY_STAT_*` tag
                /// (`actual`, `rss`, `available`, `unused`, `swap_in`, ...), values in KiB
                /// except the counters and `last_update`. Since 1.8.
                fn memory_stats(&self, uuid: Uuid, flags: u32) -> PResult<RVec<TypedParam>> =
                    "virDomainMemoryStats";
                /// The domain's current (or, with `VIR_DOMAIN_JOB_STATS_COMPLETED` 1, last
                /// completed) job: its `VIR_DOMAIN_JOB_*` type and libvirt's job
                /// parameters. Since 1.8.
                fn get_job_stats(&self, uuid: Uuid, flags: u32) -> PResult<JobStats> =
                    "virDomainGetJobStats";
                /// CPU statistics: with `start_cpu` -1 one set for the whole domain
                /// (`cpu_time`, `user_time`, `system_time`), else one set per host CPU from
                /// `start_cpu`, at most `ncpus` (`cpu_time`, `vcpu_time`). Since 1.8.
                fn get_cpu_stats(&self, uuid: Uuid, start_cpu: i32, ncpus: u32, flags: u32) -> PResult<RVec<RVec<TypedParam>>> =
                    "virDomainGetCPUStats";
                /// Migration, source side, first step (libvirt's v3 flow with typed
                /// parameters, `VIR_MIGRATE_PARAM_*` names): check the running domain can
                /// migrate with `flags` (`VIR_MIGRATE_*`) and answer its definition for the
                /// destination (`text`) and a cookie for `migrate_prepare`. Since 1.9.
                fn migrate_begin(&self, uuid: Uuid, params: RVec<TypedParam>, flags: u32) -> PResult<MigrateStep> =
                    "virDomainMigrateBegin3Params";
                /// Migration, destination side: start the domain of `params`'
                /// `destination_xml` waiting for the incoming stream; `text` is the URI the
                /// source migrates to (empty: `params`' `migrate_uri` is used). Since 1.9.
                fn migrate_prepare(&self, params: RVec<TypedParam>, cookie: RVec<u8>, flags: u32) -> PResult<MigrateStep> =
                    "virDomainMigratePrepare3Params";
                /// Migration, source side: send the domain's state to `params`'
                /// `migrate_uri` and wait until it is transferred (the domain stays paused
                /// here until `migrate_confirm`); progress is the current job's statistics
                /// (`get_job_stats`), `abort_job` cancels it. `text` is unused. Since 1.9.
                fn migrate_perform(&self, uuid: Uuid, params: RVec<TypedParam>, cookie: RVec<u8>, flags: u32) -> PResult<MigrateStep> =
                    "virDomainMigratePerform3Params";
                /// Migration, destination side: with `cancelled` false resume the migrated
                /// domain (defined too with `VIR_MIGRATE_PERSIST_DEST`) and answer it; with
                /// `cancelled` true stop and forget the incoming domain. Since 1.9.
                fn migrate_finish(&self, params: RVec<TypedParam>, cookie: RVec<u8>, flags: u32, cancelled: bool) -> PResult<MigrateFinish> =
                    "virDomainMigrateFinish3Params";
                /// Migration, source side, last step: with `cancelled` false stop the
                /// domain here (and undefine it with `VIR_MIGRATE_UNDEFINE_SOURCE`); with
                /// `cancelled` true resume it where it ran. Since 1.9.
                fn migrate_confirm(&self, uuid: Uuid, params: RVec<TypedParam>, cookie: RVec<u8>, flags: u32, cancelled: bool) -> PResult<()> =
                    "virDomainMigrateConfirm3Params";
                /// Cancel the domain's running job (a migration). Since 1.9.
                fn abort_job(&self, uuid: Uuid, flags: u32) -> PResult<()> =
                    "virDomainAbortJob";
                /// A screenshot of the domain's display `screen`: the image and its MIME
                /// type. Since 1.9.
                fn screenshot(&self, uuid: Uuid, screen: u32, flags: u32) -> PResult<Screenshot> =
                    "virDomainScreenshot";
                // ---- 1.10: connection-owned storage pools and networks ----
                /// The connection's extension object (since 1.10): a second vtable for
                /// what later minors add to a connection, because this trait's vtable is
                /// full (abi_stable's prefix types hold at most 64 fields, and this is the
                /// 64th). The default no-support means "no extensions": every
                /// [`ConnExtension`] method then answers as its default does.
                fn extension(&self) -> PResult<ConnExtensionBox> =
                    "virConnectOpen (connection extensions)";
                // ---- end of 1.10's connection-owned group ----
            }
        }
    };
}

/// Declares the `DriverConnection` trait from [`driver_connection_methods!`].
macro_rules! declare_driver_connection {
    (
        api_1_0 {
            $( $(#[$battr:meta])* fn $bm:ident(&self $(, $ba:ident : $bt:ty)* $(,)?) -> $br:ty = $bapi:literal; )*
        }
        appended {
            $( $(#[$aattr:meta])* fn $am:ident(&self $(, $aa:ident : $at:ty)* $(,)?) -> $ar:ty = $aapi:literal; )*
        }
    ) => {
        /// One open connection to a driver. Domains are addressed by UUID.
        ///
        /// Methods up to `set_autostart` form API 1.0. Methods after it were added in later
        /// minors; their default bodies answer no-support, which is what a host sees when it
        /// calls them on an object from a plugin built against an older minor.
        ///
        /// The methods are declared once, in [`driver_connection_methods!`].
        #[sabi_trait]
        pub trait DriverConnection: Send + Sync {
            $(
                $(#[$battr])*
                fn $bm(&self $(, $ba: $bt)*) -> $br;
            )*
            $(
                $(#[$aattr])*
                fn $am(&self $(, $aa: $at)*) -> $ar {
                    // The default body needs none of the arguments.
                    let _ = ($($aa,)*);
                    RResult::RErr(PluginError::no_support($aapi))
                }
            )*
        }
    };
}

driver_connection_methods!(declare_driver_connection);

/// The boxed connection trait object a plugin hands to the host.
pub type DriverConnectionBox = DriverConnection_TO<'static, RBox<()>>;

/// The root module every plugin exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginMod_Ref)))]
pub struct PluginMod {
    /// Who the plugin is and what it serves.
    pub manifest: extern "C" fn() -> Manifest,
    /// Open a connection for `uri` (the full URI string, already routed to this plugin by
    /// scheme). `read_only` connections must refuse every mutating call.
    #[sabi(last_prefix_field)]
    pub open: extern "C" fn(
        uri: RStr<'_>,
        read_only: bool,
        events: EventSinkBox,
    ) -> PResult<DriverConnectionBox>,
    /// The storage facet, for a plugin serving storage pool types (since 1.3). Absent in
    /// older plugins: the accessor answers `None` for them.
    pub storage: Option<StorageFacet_Ref>,
    /// Opens a connection as `open` does, lending the plugin the host's services for the
    /// connection (system root, parsed URI, storage volume lookup; since 1.4). A host
    /// prefers it when present; it is absent in older plugins (and `None` in a plugin
    /// serving no hypervisor), and the host then calls `open`.
    pub open_with_host: Option<
        extern "C" fn(
            uri: RStr<'_>,
            read_only: bool,
            events: EventSinkBox,
            host: HostServicesBox,
        ) -> PResult<DriverConnectionBox>,
    >,
    /// The network facet, for a plugin serving libvirt forward modes (since 1.5). Absent
    /// in older plugins: the accessor answers `None` for them.
    pub network: Option<NetworkFacet_Ref>,
}

impl RootModule for PluginMod_Ref {
    declare_root_module_statics! {PluginMod_Ref}
    const BASE_NAME: &'static str = "rvirt_plugin";
    const NAME: &'static str = "rvirt_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

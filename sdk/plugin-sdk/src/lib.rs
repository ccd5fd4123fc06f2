//! What an rvirt plugin author uses.
//!
//! A plugin is a `cdylib` crate that depends on `rvirt-sdk` (and on `abi_stable`, because
//! [`export_plugin!`] expands to its `#[export_root_module]` attribute). It implements
//! [`abi::DriverConnection`] for its connection type and exports itself:
//!
//! ```ignore
//! rvirt_sdk::export_plugin! {
//!     manifest: rvirt_sdk::PluginInfo {
//!         name: "demo",
//!         kind: "hypervisor",
//!         schemes: &["demo"],
//!         version: env!("CARGO_PKG_VERSION"),
//!         description: "a demo driver",
//!     },
//!     open: open_connection,   // fn(&str, bool, EventSinkBox) -> Result<MyConn, PluginError>
//! }
//! ```
//!
//! A hypervisor plugin that uses the host's services (plugin API 1.4: the system root, the
//! URI as the host parsed it, storage volume lookup for `<disk type='volume'>`) exports
//! `open_with_host` instead; its function gets them as `Some` from a 1.4 host (`None` from
//! an older host, which calls the plain `open`):
//!
//! ```ignore
//! rvirt_sdk::export_plugin! {
//!     manifest: rvirt_sdk::PluginInfo { name: "demo", kind: "hypervisor", schemes: &["demo"], .. },
//!     open_with_host: open_connection,
//!     // fn(&str, bool, EventSinkBox, Option<HostServicesBox>) -> Result<MyConn, PluginError>
//! }
//! ```
//!
//! A plugin serving storage pool types adds the storage facet (since plugin API 1.3); a
//! storage-only plugin leaves out `open`, and its hypervisor entry answers that it serves
//! storage pool types, not hypervisor connections:
//!
//! ```ignore
//! rvirt_sdk::export_plugin! {
//!     manifest: rvirt_sdk::PluginInfo { name: "dir", kind: "storage", schemes: &[], .. },
//!     storage: { pool_types: &["dir"], open: open_backend },
//!     // fn(&str, HostServicesBox) -> Result<impl StorageBackend, PluginError>
//! }
//! ```
//!
//! The macro wraps every method of the connection in [`Guarded`], and every operation of a
//! storage backend in [`GuardedBackend`] (streams are boxed with [`stream_box`], which
//! wraps them in [`GuardedStream`]), so a panic in the plugin reaches the host as a
//! `VIR_ERR_INTERNAL_ERROR` instead of aborting the process.
//!
//! Architecture invariant: the SDK never changes the ABI; it only builds on
//! `rvirt-plugin-api`, which it re-exports as [`abi`].

pub mod console;
pub mod filter;
mod guard;
mod network_guard;
mod owned_guard;
mod storage_guard;
pub mod tool;
pub mod util;

pub use guard::{Guarded, guard, panic_message};
pub use network_guard::{GuardedNetworkBackend, not_a_network_hypervisor, open_network_guarded};
pub use owned_guard::{GuardedOwned, conn_network_box, conn_storage_box, extension_box};
pub use rvirt_plugin_api as abi;
pub use storage_guard::{GuardedBackend, GuardedStream, not_a_hypervisor, stream_box};

use abi::{
    EventSinkBox, Manifest, PResult, PluginError,
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RResult, RStr, RString, RVec},
    },
};

/// The plugin API version this SDK builds plugins against, NUL-terminated, for the
/// `rvirt_plugin_api_version` symbol.
pub const API_VERSION_CSTR: &std::ffi::CStr =
    match std::ffi::CStr::from_bytes_with_nul(abi::API_VERSION_NUL.as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("the API version string is not NUL-terminated"),
    };

/// Static facts about a plugin, turned into the ABI [`Manifest`].
#[derive(Debug, Clone, Copy)]
pub struct PluginInfo {
    /// Plugin name (`test`, `qemu`).
    pub name: &'static str,
    /// `hypervisor`, `storage`, `network` or `policy`.
    pub kind: &'static str,
    /// URI schemes served.
    pub schemes: &'static [&'static str],
    /// The plugin's own version.
    pub version: &'static str,
    /// One line saying what it is.
    pub description: &'static str,
}

impl PluginInfo {
    /// The ABI manifest for this plugin.
    pub fn to_manifest(&self) -> Manifest {
        Manifest {
            name: self.name.into(),
            kind: self.kind.into(),
            schemes: self
                .schemes
                .iter()
                .map(|s| RString::from(*s))
                .collect::<RVec<_>>(),
            version: self.version.into(),
            api_version: abi::API_VERSION.into(),
            description: self.description.into(),
        }
    }
}

/// Runs a plugin's `open` function under a panic guard and boxes the connection.
pub fn open_guarded<D, F>(
    info: &PluginInfo,
    uri: RStr<'_>,
    read_only: bool,
    events: EventSinkBox,
    open: F,
) -> PResult<abi::DriverConnectionBox>
where
    D: abi::DriverConnection + 'static,
    F: FnOnce(&str, bool, EventSinkBox) -> Result<D, PluginError>,
{
    let name = info.name;
    guard(name, "virConnectOpen", move || {
        match open(uri.as_str(), read_only, events) {
            Ok(conn) => RResult::ROk(abi::DriverConnection_TO::from_value(
                Guarded::new(name, conn),
                TD_Opaque,
            )),
            Err(e) => RResult::RErr(e),
        }
    })
}

/// Runs a plugin's `open` function taking the host's services under a panic guard and
/// boxes the connection. `host` is `Some` when the host opened the connection through
/// `open_with_host` (plugin API 1.4 and later hosts), `None` when it called `open`.
pub fn open_guarded_with_host<D, F>(
    info: &PluginInfo,
    uri: RStr<'_>,
    read_only: bool,
    events: EventSinkBox,
    host: Option<abi::HostServicesBox>,
    open: F,
) -> PResult<abi::DriverConnectionBox>
where
    D: abi::DriverConnection + 'static,
    F: FnOnce(&str, bool, EventSinkBox, Option<abi::HostServicesBox>) -> Result<D, PluginError>,
{
    open_guarded(info, uri, read_only, events, move |u, r, e| {
        open(u, r, e, host)
    })
}

/// Runs a plugin's storage `open` function under a panic guard, for one of the pool
/// types the plugin declared, and boxes the backend in [`GuardedBackend`].
pub fn open_storage_guarded<B, F>(
    info: &PluginInfo,
    pool_types: &[&str],
    pool_type: RStr<'_>,
    host: abi::HostServicesBox,
    open: F,
) -> PResult<abi::StorageBackendBox>
where
    B: abi::StorageBackend + 'static,
    F: FnOnce(&str, abi::HostServicesBox) -> Result<B, PluginError>,
{
    let name = info.name;
    guard(name, "virConnectOpen", move || {
        let pool_type = pool_type.as_str();
        if !pool_types.contains(&pool_type) {
            return RResult::RErr(PluginError::new(
                abi::ErrorCode::NoSupport,
                abi::ErrorDomain::Storage,
                format!(
                    "plugin '{name}' does not serve storage pool type '{pool_type}' (it serves [{}])",
                    pool_types.join(", ")
                ),
            ));
        }
        match open(pool_type, host) {
            Ok(b) => RResult::ROk(abi::StorageBackend_TO::from_value(
                GuardedBackend::new(name, pool_type, b),
                TD_Opaque,
            )),
            Err(e) => RResult::RErr(e),
        }
    })
}

/// The connection type of a plugin that serves no hypervisor connections: it has no
/// values, so its `open` can only answer an error.
#[derive(Debug)]
pub enum NoConnection {}

macro_rules! no_connection {
    (
        api_1_0 {
            $( $(#[$battr:meta])* fn $bm:ident(&self $(, $ba:ident : $bt:ty)* $(,)?) -> $br:ty = $bapi:literal; )*
        }
        appended {
            $( $(#[$aattr:meta])* fn $am:ident(&self $(, $aa:ident : $at:ty)* $(,)?) -> $ar:ty = $aapi:literal; )*
        }
    ) => {
        impl abi::DriverConnection for NoConnection {
            $( fn $bm(&self $(, $ba: $bt)*) -> $br { let _ = ($($ba,)*); match *self {} } )*
            $( fn $am(&self $(, $aa: $at)*) -> $ar { let _ = ($($aa,)*); match *self {} } )*
        }
    };
}

use abi::{
    ConnExtensionBox, DomainInfo, DomainRef, JobStats, MigrateFinish, MigrateStep, NodeInfo,
    Screenshot, StateReason, TypedParam, Uuid,
};
abi::driver_connection_methods!(no_connection);

/// The pool types of a storage facet, for the ABI.
pub fn pool_type_list(pool_types: &[&str]) -> RVec<RString> {
    pool_types.iter().map(|s| RString::from(*s)).collect()
}

/// Exports a plugin: the abi_stable root module and the `rvirt_plugin_api_version` symbol.
///
/// `manifest` is a [`PluginInfo`] expression. The hypervisor entry is either
///
/// - `open: f`, `f: fn(&str, bool, EventSinkBox) -> Result<impl DriverConnection, PluginError>`,
///   or
/// - `open_with_host: f`, `f: fn(&str, bool, EventSinkBox, Option<HostServicesBox>) ->
///   Result<impl DriverConnection, PluginError>` (since plugin API 1.4): `f` gets the host's
///   services (system root, parsed URI, storage volume lookup) when the host lends them,
///   `None` when the host called the plain `open`.
///
/// Both fill the root module's `open` and `open_with_host` entries. The optional
/// `storage: { pool_types: &["dir"], open: f }` adds the storage facet, with
/// `f: fn(&str, HostServicesBox) -> Result<impl StorageBackend, PluginError>`; a plugin
/// serving storage only leaves out the hypervisor entry. The optional
/// `network: { forward_modes: &["nat"], open: f }` (after `storage` when both are given;
/// since plugin API 1.5) adds the network facet, with
/// `f: fn(&str, HostServicesBox) -> Result<impl NetworkBackend, PluginError>`; a plugin
/// serving networks only gives `manifest` and `network` alone.
#[macro_export]
macro_rules! export_plugin {
    (
        manifest: $info:expr,
        storage: { pool_types: $pool_types:expr, open: $sopen:path $(,)? }
        $(, network: { forward_modes: $modes:expr, open: $nopen:path $(,)? })? $(,)?
    ) => {
        fn __rvirt_not_a_hypervisor(
            _uri: &str,
            _read_only: bool,
            _events: $crate::abi::EventSinkBox,
            _host: ::std::option::Option<$crate::abi::HostServicesBox>,
        ) -> ::std::result::Result<$crate::NoConnection, $crate::abi::PluginError> {
            ::std::result::Result::Err($crate::not_a_hypervisor(
                __RVIRT_PLUGIN_INFO.name,
                $pool_types,
            ))
        }

        $crate::export_plugin! {
            @root $info,
            __rvirt_not_a_hypervisor,
            { pool_types: $pool_types, open: $sopen },
            { $(forward_modes: $modes, open: $nopen)? }
        }
    };
    (
        manifest: $info:expr,
        network: { forward_modes: $modes:expr, open: $nopen:path $(,)? } $(,)?
    ) => {
        fn __rvirt_not_a_hypervisor(
            _uri: &str,
            _read_only: bool,
            _events: $crate::abi::EventSinkBox,
            _host: ::std::option::Option<$crate::abi::HostServicesBox>,
        ) -> ::std::result::Result<$crate::NoConnection, $crate::abi::PluginError> {
            ::std::result::Result::Err($crate::not_a_network_hypervisor(
                __RVIRT_PLUGIN_INFO.name,
                $modes,
            ))
        }

        $crate::export_plugin! {
            @root $info,
            __rvirt_not_a_hypervisor,
            {},
            { forward_modes: $modes, open: $nopen }
        }
    };
    (
        manifest: $info:expr,
        open: $open:path
        $(, storage: { pool_types: $pool_types:expr, open: $sopen:path $(,)? })?
        $(, network: { forward_modes: $modes:expr, open: $nopen:path $(,)? })? $(,)?
    ) => {
        $crate::export_plugin! { @without_host $open }
        $crate::export_plugin! {
            @root $info,
            __rvirt_open_without_host,
            { $(pool_types: $pool_types, open: $sopen)? },
            { $(forward_modes: $modes, open: $nopen)? }
        }
    };
    (
        manifest: $info:expr,
        open_with_host: $open:path
        $(, storage: { pool_types: $pool_types:expr, open: $sopen:path $(,)? })?
        $(, network: { forward_modes: $modes:expr, open: $nopen:path $(,)? })? $(,)?
    ) => {
        $crate::export_plugin! {
            @root $info,
            $open,
            { $(pool_types: $pool_types, open: $sopen)? },
            { $(forward_modes: $modes, open: $nopen)? }
        }
    };
    (@without_host $open:path) => {
        /// The plugin's `open`, which takes no host services, in the shape of
        /// `open_with_host`.
        fn __rvirt_open_without_host(
            uri: &str,
            read_only: bool,
            events: $crate::abi::EventSinkBox,
            _host: ::std::option::Option<$crate::abi::HostServicesBox>,
        ) -> ::std::result::Result<
            impl $crate::abi::DriverConnection + 'static + use<>,
            $crate::abi::PluginError,
        > {
            $open(uri, read_only, events)
        }
    };
    (@storage) => {
        ::std::option::Option::None
    };
    (@storage pool_types: $pool_types:expr, open: $sopen:path) => {{
        const __RVIRT_POOL_TYPES: &[&str] = $pool_types;

        extern "C" fn __rvirt_pool_types()
        -> ::abi_stable::std_types::RVec<::abi_stable::std_types::RString> {
            $crate::pool_type_list(__RVIRT_POOL_TYPES)
        }

        extern "C" fn __rvirt_storage_open(
            pool_type: ::abi_stable::std_types::RStr<'_>,
            host: $crate::abi::HostServicesBox,
        ) -> $crate::abi::PResult<$crate::abi::StorageBackendBox> {
            $crate::open_storage_guarded(
                &__RVIRT_PLUGIN_INFO,
                __RVIRT_POOL_TYPES,
                pool_type,
                host,
                $sopen,
            )
        }

        ::std::option::Option::Some(
            $crate::abi::StorageFacet {
                api: $crate::abi::STORAGE_FACET_VERSION,
                pool_types: __rvirt_pool_types,
                open: __rvirt_storage_open,
            }
            .leak_into_prefix(),
        )
    }};
    (@network) => {
        ::std::option::Option::None
    };
    (@network forward_modes: $modes:expr, open: $nopen:path) => {{
        const __RVIRT_FORWARD_MODES: &[&str] = $modes;

        extern "C" fn __rvirt_forward_modes()
        -> ::abi_stable::std_types::RVec<::abi_stable::std_types::RString> {
            $crate::pool_type_list(__RVIRT_FORWARD_MODES)
        }

        extern "C" fn __rvirt_network_open(
            mode: ::abi_stable::std_types::RStr<'_>,
            host: $crate::abi::HostServicesBox,
        ) -> $crate::abi::PResult<$crate::abi::NetworkBackendBox> {
            $crate::open_network_guarded(
                &__RVIRT_PLUGIN_INFO,
                __RVIRT_FORWARD_MODES,
                mode,
                host,
                $nopen,
            )
        }

        ::std::option::Option::Some(
            $crate::abi::NetworkFacet {
                api: $crate::abi::NETWORK_FACET_VERSION,
                forward_modes: __rvirt_forward_modes,
                open: __rvirt_network_open,
            }
            .leak_into_prefix(),
        )
    }};
    (@root $info:expr, $open:path, { $($storage:tt)* }, { $($network:tt)* }) => {
        const __RVIRT_PLUGIN_INFO: $crate::PluginInfo = $info;

        #[::abi_stable::export_root_module]
        pub fn __rvirt_root_module() -> $crate::abi::PluginMod_Ref {
            use ::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::abi::PluginMod {
                manifest: __rvirt_manifest,
                open: __rvirt_open,
                storage: $crate::export_plugin!(@storage $($storage)*),
                open_with_host: ::std::option::Option::Some(__rvirt_open_with_host),
                network: $crate::export_plugin!(@network $($network)*),
            }
            .leak_into_prefix()
        }

        /// The plugin API version this plugin was built against (NUL-terminated).
        #[unsafe(no_mangle)]
        pub extern "C" fn rvirt_plugin_api_version() -> *const ::std::ffi::c_char {
            $crate::API_VERSION_CSTR.as_ptr()
        }

        extern "C" fn __rvirt_manifest() -> $crate::abi::Manifest {
            __RVIRT_PLUGIN_INFO.to_manifest()
        }

        extern "C" fn __rvirt_open(
            uri: ::abi_stable::std_types::RStr<'_>,
            read_only: bool,
            events: $crate::abi::EventSinkBox,
        ) -> $crate::abi::PResult<$crate::abi::DriverConnectionBox> {
            $crate::open_guarded_with_host(
                &__RVIRT_PLUGIN_INFO,
                uri,
                read_only,
                events,
                ::std::option::Option::None,
                $open,
            )
        }

        extern "C" fn __rvirt_open_with_host(
            uri: ::abi_stable::std_types::RStr<'_>,
            read_only: bool,
            events: $crate::abi::EventSinkBox,
            host: $crate::abi::HostServicesBox,
        ) -> $crate::abi::PResult<$crate::abi::DriverConnectionBox> {
            $crate::open_guarded_with_host(
                &__RVIRT_PLUGIN_INFO,
                uri,
                read_only,
                events,
                ::std::option::Option::Some(host),
                $open,
            )
        }
    };
}

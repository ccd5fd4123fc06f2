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
//! The macro wraps every method of the connection in [`Guarded`], so a panic in the plugin
//! reaches the host as a `VIR_ERR_INTERNAL_ERROR` instead of aborting the process.
//!
//! Architecture invariant: the SDK never changes the ABI; it only builds on
//! `rvirt-plugin-api`, which it re-exports as [`abi`].

pub mod filter;
mod guard;
pub mod util;

pub use guard::{Guarded, guard, panic_message};
pub use rvirt_plugin_api as abi;

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

/// Exports a plugin: the abi_stable root module and the `rvirt_plugin_api_version` symbol.
///
/// `manifest` is a [`PluginInfo`] expression; `open` a function
/// `fn(&str, bool, EventSinkBox) -> Result<impl DriverConnection, PluginError>`.
#[macro_export]
macro_rules! export_plugin {
    (manifest: $info:expr, open: $open:path $(,)?) => {
        const __RVIRT_PLUGIN_INFO: $crate::PluginInfo = $info;

        #[::abi_stable::export_root_module]
        pub fn __rvirt_root_module() -> $crate::abi::PluginMod_Ref {
            use ::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::abi::PluginMod {
                manifest: __rvirt_manifest,
                open: __rvirt_open,
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
            $crate::open_guarded(&__RVIRT_PLUGIN_INFO, uri, read_only, events, $open)
        }
    };
}

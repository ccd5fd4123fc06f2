//! Panic safety for the network facet (plugin API 1.5): [`GuardedNetworkBackend`] runs
//! every operation of a network backend under [`guard`], generated from the ABI's method
//! list (`network_backend_methods!`); [`open_network_guarded`] opens one under the guard.

use crate::{
    PluginInfo,
    abi::{
        self, Lease, NetworkBackend, PResult, PluginError, PortPlug,
        abi_stable::{
            sabi_trait::TD_Opaque,
            std_types::{RResult, RStr, RString, RVec},
        },
    },
    guard::guard,
};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A network backend whose every operation runs under [`guard`]: a panic becomes
/// `VIR_ERR_INTERNAL_ERROR` naming the plugin and the libvirt API.
pub struct GuardedNetworkBackend<B> {
    plugin: &'static str,
    mode: RString,
    inner: B,
}

impl<B> GuardedNetworkBackend<B> {
    /// Wraps `inner`, serving forward mode `mode` for `plugin`.
    pub fn new(plugin: &'static str, mode: &str, inner: B) -> Self {
        Self {
            plugin,
            mode: mode.into(),
            inner,
        }
    }
}

macro_rules! guarded_network_backend {
    (
        api_1_5 {
            $( $(#[$battr:meta])* fn $bm:ident(&$bs:ident $(, $ba:ident : $bt:ty)* $(,)?) -> $br:ty = $bapi:literal; )*
        }
        appended {
            $( $(#[$aattr:meta])* fn $am:ident(&$as:ident $(, $aa:ident : $at:ty)* $(,)?) -> $ar:ty = $aapi:literal; )*
        }
    ) => {
        impl<B: NetworkBackend> NetworkBackend for GuardedNetworkBackend<B> {
            fn forward_mode(&self) -> RString {
                catch_unwind(AssertUnwindSafe(|| self.inner.forward_mode()))
                    .unwrap_or_else(|_| self.mode.clone())
            }
            $(
                fn $bm(&$bs $(, $ba: $bt)*) -> $br {
                    guard($bs.plugin, $bapi, || $bs.inner.$bm($($ba),*))
                }
            )*
            $(
                fn $am(&$as $(, $aa: $at)*) -> $ar {
                    guard($as.plugin, $aapi, || $as.inner.$am($($aa),*))
                }
            )*
        }

        impl<B> GuardedNetworkBackend<B> {
            /// Every `NetworkBackend` operation this adapter guards, in vtable order after
            /// `forward_mode`, with the libvirt API it names in errors.
            pub const METHODS: &'static [(&'static str, &'static str)] = &[
                $( (stringify!($bm), $bapi), )*
                $( (stringify!($am), $aapi), )*
            ];
        }
    };
}

crate::abi::network_backend_methods!(guarded_network_backend);

/// Opens a network backend for `mode` under the panic guard (what `export_plugin!`'s
/// network facet calls): a mode the plugin does not list is refused, and the backend is
/// wrapped in [`GuardedNetworkBackend`].
pub fn open_network_guarded<B, F>(
    info: &PluginInfo,
    modes: &[&str],
    mode: RStr<'_>,
    host: abi::HostServicesBox,
    open: F,
) -> PResult<abi::NetworkBackendBox>
where
    B: NetworkBackend + 'static,
    F: FnOnce(&str, abi::HostServicesBox) -> Result<B, PluginError>,
{
    let name = info.name;
    guard(name, "virConnectOpen", move || {
        let mode = mode.as_str();
        if !modes.contains(&mode) {
            return RResult::RErr(PluginError::new(
                abi::ErrorCode::NoSupport,
                abi::ErrorDomain::Network,
                format!(
                    "plugin '{name}' does not serve network forward mode '{mode}' (it serves [{}])",
                    modes.join(", ")
                ),
            ));
        }
        match open(mode, host) {
            Ok(b) => RResult::ROk(abi::NetworkBackend_TO::from_value(
                GuardedNetworkBackend::new(name, mode, b),
                TD_Opaque,
            )),
            Err(e) => RResult::RErr(e),
        }
    })
}

/// The error a plugin's hypervisor entry answers when the plugin serves networks only.
pub fn not_a_network_hypervisor(plugin: &str, modes: &[&str]) -> PluginError {
    PluginError::new(
        abi::ErrorCode::NoConnect,
        abi::ErrorDomain::None,
        format!(
            "plugin '{plugin}' serves network forward modes [{}], not hypervisor connections",
            modes.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        abi::{NetworkBackendBox, abi_stable::StableAbi},
        guard::tests::vtable_methods,
    };

    #[test]
    fn every_method_of_the_network_backend_vtable_is_guarded() {
        let methods = vtable_methods(<NetworkBackendBox as StableAbi>::LAYOUT);
        let mut guarded = vec!["forward_mode"];
        guarded.extend(GuardedNetworkBackend::<()>::METHODS.iter().map(|(m, _)| *m));
        assert!(methods.len() >= 8, "{methods:?}");
        assert_eq!(
            guarded, methods,
            "GuardedNetworkBackend guards the vtable, in order"
        );
        for (m, api) in GuardedNetworkBackend::<()>::METHODS {
            assert!(api.starts_with("vir"), "{m} names a libvirt API: {api}");
        }
    }

    struct Boom;

    impl NetworkBackend for Boom {
        fn forward_mode(&self) -> RString {
            "boom".into()
        }
        fn start_network(&self, _net_xml: RStr<'_>, _state_dir: RStr<'_>) -> PResult<RString> {
            panic!("start exploded")
        }
    }

    #[test]
    fn a_panic_in_a_network_backend_is_an_internal_error_and_defaults_name_the_mode() {
        let g = GuardedNetworkBackend::new("demo", "boom", Boom);
        let e = g
            .start_network(RStr::from("<network/>"), RStr::from(""))
            .unwrap_err();
        assert_eq!(e.code, abi::ErrorCode::InternalError as i32);
        assert_eq!(
            e.message.as_str(),
            "plugin 'demo' panicked in virNetworkCreate: start exploded"
        );
        let e = g
            .dhcp_leases(RStr::from("<network/>"), RStr::from(""))
            .unwrap_err();
        assert!(e.is_no_support());
        assert_eq!(e.domain, abi::ErrorDomain::Network as i32);
        assert_eq!(
            e.message.as_str(),
            "this function is not supported by the connection driver: virNetworkGetDHCPLeases (network backend 'boom')"
        );
    }
}

//! Panic safety for what a connection owns (API 1.10): the extension object a
//! connection's `extension` returns and the connection-owned storage and networks it
//! hands out. [`extension_box`], [`conn_storage_box`] and [`conn_network_box`] box an
//! implementation for the ABI wrapped in an adapter that runs every method under
//! [`guard`], generated from the ABI's method lists (`conn_extension_methods!`,
//! `conn_storage_methods!`, `conn_network_methods!`), so none can be forgotten.
//!
//! A plugin implements only what it supports: every method of [`ConnExtension`],
//! [`ConnStorage`] and [`ConnNetwork`] has a default body answering no-support naming the
//! libvirt API, and an extension that answers `RNone` (or no-support) for storage or
//! networks leaves them server-owned.

use crate::{
    abi::{
        ConnExtension, ConnExtension_TO, ConnExtensionBox, ConnNetwork, ConnNetwork_TO,
        ConnNetworkBox, ConnStorage, ConnStorage_TO, ConnStorageBox, OwnedNetwork, OwnedPool,
        OwnedPoolInfo, OwnedVol, OwnedVolInfo, PResult, Uuid,
        abi_stable::{
            sabi_trait::TD_Opaque,
            std_types::{ROption, RStr, RString, RVec},
        },
    },
    guard::guard,
};

/// An object whose every method of the ABI trait runs under [`guard`].
pub struct GuardedOwned<T> {
    plugin: &'static str,
    inner: T,
}

macro_rules! guarded_owned {
    ($tr:ident;
        api_1_10 {
            $( $(#[$battr:meta])* fn $bm:ident(&self $(, $ba:ident : $bt:ty)* $(,)?) -> $br:ty = $bapi:literal; )*
        }
        appended {
            $( $(#[$aattr:meta])* fn $am:ident(&self $(, $aa:ident : $at:ty)* $(,)?) -> $ar:ty = $aapi:literal; )*
        }
    ) => {
        impl<T: $tr> $tr for GuardedOwned<T> {
            $(
                fn $bm(&self $(, $ba: $bt)*) -> $br {
                    guard(self.plugin, $bapi, || self.inner.$bm($($ba),*))
                }
            )*
            $(
                fn $am(&self $(, $aa: $at)*) -> $ar {
                    guard(self.plugin, $aapi, || self.inner.$am($($aa),*))
                }
            )*
        }
    };
}

macro_rules! guarded_storage {
    ($($t:tt)*) => { guarded_owned! { ConnStorage; $($t)* } };
}
macro_rules! guarded_network {
    ($($t:tt)*) => { guarded_owned! { ConnNetwork; $($t)* } };
}
macro_rules! guarded_extension {
    ($($t:tt)*) => { guarded_owned! { ConnExtension; $($t)* } };
}

crate::abi::conn_storage_methods!(guarded_storage);
crate::abi::conn_network_methods!(guarded_network);
crate::abi::conn_extension_methods!(guarded_extension);

/// Boxes a connection's extension object for the ABI (the answer of
/// `DriverConnection::extension`), guarding each of its methods.
pub fn extension_box(plugin: &'static str, ext: impl ConnExtension + 'static) -> ConnExtensionBox {
    ConnExtension_TO::from_value(GuardedOwned { plugin, inner: ext }, TD_Opaque)
}

/// Boxes a connection's own storage for the ABI (the answer of
/// `ConnExtension::conn_storage`), guarding each of its methods.
pub fn conn_storage_box(
    plugin: &'static str,
    storage: impl ConnStorage + 'static,
) -> ConnStorageBox {
    ConnStorage_TO::from_value(
        GuardedOwned {
            plugin,
            inner: storage,
        },
        TD_Opaque,
    )
}

/// Boxes a connection's own networks for the ABI (the answer of
/// `ConnExtension::conn_network`), guarding each of its methods.
pub fn conn_network_box(
    plugin: &'static str,
    networks: impl ConnNetwork + 'static,
) -> ConnNetworkBox {
    ConnNetwork_TO::from_value(
        GuardedOwned {
            plugin,
            inner: networks,
        },
        TD_Opaque,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{ErrorCode, abi_stable::std_types::RResult};

    struct Nothing;
    impl ConnStorage for Nothing {}

    struct Panics;
    impl ConnStorage for Panics {
        fn list_pools(&self, _flags: u32) -> PResult<RVec<OwnedPool>> {
            panic!("boom")
        }
    }

    #[test]
    fn defaults_answer_no_support_naming_the_api() {
        let b = conn_storage_box("t", Nothing);
        match b.pool_by_name("x".into()) {
            RResult::RErr(e) => {
                assert_eq!(e.code, ErrorCode::NoSupport as i32);
                assert!(e.message.contains("virStoragePoolLookupByName"), "{e:?}");
            }
            RResult::ROk(_) => panic!("a default answered"),
        }
    }

    #[test]
    fn a_panic_becomes_an_internal_error_naming_the_api() {
        let b = conn_storage_box("t", Panics);
        match b.list_pools(0) {
            RResult::RErr(e) => {
                assert_eq!(e.code, ErrorCode::InternalError as i32);
                assert!(e.message.contains("virConnectListAllStoragePools"), "{e:?}");
                assert!(e.message.contains("boom"), "{e:?}");
            }
            RResult::ROk(_) => panic!("a panic answered"),
        }
    }
}

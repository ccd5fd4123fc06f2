//! Panic safety for the storage facet: [`GuardedBackend`] and [`GuardedStream`] run every
//! method of a storage backend and of a stream under [`guard`], generated from the
//! method lists of the ABI (`storage_backend_methods!`, `stream_methods!`). The export
//! macro guards backends itself; streams are guarded when boxed with [`stream_box`].

use crate::{
    abi::{
        PResult, PluginError, PoolRefresh, StorageBackend, Stream, Stream_TO, StreamBox,
        abi_stable::{
            sabi_trait::TD_Opaque,
            std_types::{RSlice, RStr, RString, RVec},
        },
    },
    guard::guard,
};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Boxes a stream for the ABI, guarding each of its methods (name the plugin in panics).
///
/// A backend's `upload` and `download` must box their streams with this: a panic that
/// reaches abi_stable's shim of a stream boxed any other way aborts the process, and no
/// wrapper around the boxed object can catch it.
pub fn stream_box(plugin: &'static str, stream: impl Stream + 'static) -> StreamBox {
    Stream_TO::from_value(GuardedStream::new(plugin, stream), TD_Opaque)
}

/// A storage backend whose every operation runs under [`guard`]: a panic becomes
/// `VIR_ERR_INTERNAL_ERROR` naming the plugin and the libvirt API.
pub struct GuardedBackend<B> {
    plugin: &'static str,
    pool_type: RString,
    inner: B,
}

impl<B> GuardedBackend<B> {
    /// Wraps `inner`, serving `pool_type` for `plugin`.
    pub fn new(plugin: &'static str, pool_type: &str, inner: B) -> Self {
        Self {
            plugin,
            pool_type: pool_type.into(),
            inner,
        }
    }
}

macro_rules! guarded_backend {
    (
        api_1_3 {
            $( $(#[$battr:meta])* fn $bm:ident(&$bs:ident $(, $ba:ident : $bt:ty)* $(,)?) -> $br:ty = $bapi:literal; )*
        }
        appended {
            $( $(#[$aattr:meta])* fn $am:ident(&$as:ident $(, $aa:ident : $at:ty)* $(,)?) -> $ar:ty = $aapi:literal; )*
        }
    ) => {
        impl<B: StorageBackend> StorageBackend for GuardedBackend<B> {
            fn pool_type(&self) -> RString {
                // A backend that panics naming itself is still named by what it was
                // opened for.
                catch_unwind(AssertUnwindSafe(|| self.inner.pool_type()))
                    .unwrap_or_else(|_| self.pool_type.clone())
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

        impl<B> GuardedBackend<B> {
            /// Every `StorageBackend` operation this adapter guards, in vtable order after
            /// `pool_type`, with the libvirt API it names in errors.
            pub const METHODS: &'static [(&'static str, &'static str)] = &[
                $( (stringify!($bm), $bapi), )*
                $( (stringify!($am), $aapi), )*
            ];
        }
    };
}

crate::abi::storage_backend_methods!(guarded_backend);

/// A stream whose every method runs under [`guard`].
pub struct GuardedStream<S> {
    plugin: &'static str,
    inner: S,
}

impl<S> GuardedStream<S> {
    /// Wraps `inner`, naming `plugin` in panic errors.
    pub fn new(plugin: &'static str, inner: S) -> Self {
        Self { plugin, inner }
    }
}

macro_rules! guarded_stream {
    (
        api_1_3 {
            $( $(#[$battr:meta])* fn $bm:ident(&mut $bs:ident $(, $ba:ident : $bt:ty)* $(,)?) -> $br:ty = $bapi:literal; )*
        }
        appended {
            $( $(#[$aattr:meta])* fn $am:ident(&mut $as:ident $(, $aa:ident : $at:ty)* $(,)?) -> $ar:ty = $aapi:literal; )*
        }
    ) => {
        impl<S: Stream> Stream for GuardedStream<S> {
            $(
                fn $bm(&mut $bs $(, $ba: $bt)*) -> $br {
                    let plugin = $bs.plugin;
                    guard(plugin, $bapi, || $bs.inner.$bm($($ba),*))
                }
            )*
            $(
                fn $am(&mut $as $(, $aa: $at)*) -> $ar {
                    let plugin = $as.plugin;
                    guard(plugin, $aapi, || $as.inner.$am($($aa),*))
                }
            )*
        }

        impl<S> GuardedStream<S> {
            /// Every `Stream` method this adapter guards, in vtable order, with the libvirt
            /// API it names in errors.
            pub const METHODS: &'static [(&'static str, &'static str)] = &[
                $( (stringify!($bm), $bapi), )*
                $( (stringify!($am), $aapi), )*
            ];
        }
    };
}

crate::abi::stream_methods!(guarded_stream);

/// The error a plugin's hypervisor entry answers when the plugin serves storage only.
pub fn not_a_hypervisor(plugin: &str, pool_types: &[&str]) -> PluginError {
    PluginError::new(
        crate::abi::ErrorCode::NoConnect,
        crate::abi::ErrorDomain::None,
        format!(
            "plugin '{plugin}' serves storage pool types [{}], not hypervisor connections",
            pool_types.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        abi::{StorageBackendBox, abi_stable::StableAbi, abi_stable::std_types::RResult},
        guard::tests::vtable_methods,
    };

    #[test]
    fn every_method_of_the_storage_backend_vtable_is_guarded() {
        let methods = vtable_methods(<StorageBackendBox as StableAbi>::LAYOUT);
        let mut guarded = vec!["pool_type"];
        guarded.extend(GuardedBackend::<()>::METHODS.iter().map(|(m, _)| *m));
        assert!(methods.len() >= 15, "{methods:?}");
        assert_eq!(
            guarded, methods,
            "GuardedBackend guards the vtable, in order"
        );
        for (m, api) in GuardedBackend::<()>::METHODS {
            assert!(api.starts_with("vir"), "{m} names a libvirt API: {api}");
        }
    }

    #[test]
    fn every_method_of_the_stream_vtable_is_guarded() {
        let methods = vtable_methods(<StreamBox as StableAbi>::LAYOUT);
        let guarded: Vec<&str> = GuardedStream::<()>::METHODS
            .iter()
            .map(|(m, _)| *m)
            .collect();
        assert_eq!(
            guarded, methods,
            "GuardedStream guards the vtable, in order"
        );
        assert_eq!(methods, ["send", "recv", "finish", "abort"]);
    }

    struct Panicky;

    impl StorageBackend for Panicky {
        fn pool_type(&self) -> RString {
            "mock".into()
        }
        fn refresh_pool(&self, _pool_xml: RStr<'_>) -> PResult<PoolRefresh> {
            panic!("refresh exploded")
        }
        fn upload(
            &self,
            _pool_xml: RStr<'_>,
            _vol_xml: RStr<'_>,
            _offset: u64,
            _length: u64,
            _flags: u32,
        ) -> PResult<StreamBox> {
            RResult::ROk(stream_box("demo", Panicky))
        }
    }

    impl Stream for Panicky {
        fn send(&mut self, _data: RSlice<'_, u8>) -> PResult<()> {
            panic!("send exploded")
        }
        fn recv(&mut self, _max: u64) -> PResult<RVec<u8>> {
            RResult::ROk(RVec::new())
        }
        fn finish(&mut self) -> PResult<()> {
            RResult::ROk(())
        }
        fn abort(&mut self) -> PResult<()> {
            RResult::ROk(())
        }
    }

    #[test]
    fn panics_in_a_backend_and_in_the_stream_it_returns_become_internal_errors() {
        let b = GuardedBackend::new("demo", "mock", Panicky);
        assert_eq!(b.pool_type().as_str(), "mock");
        let e = b
            .refresh_pool(RStr::from("<pool/>"))
            .into_result()
            .unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(
            e.message.as_str(),
            "plugin 'demo' panicked in virStoragePoolRefresh: refresh exploded"
        );
        let mut s = b
            .upload(RStr::from("<pool/>"), RStr::from("<volume/>"), 0, 0, 0)
            .into_result()
            .unwrap();
        let e = s.send(RSlice::from_slice(b"x")).into_result().unwrap_err();
        assert_eq!(
            e.message.as_str(),
            "plugin 'demo' panicked in virStreamSend: send exploded"
        );
        assert!(s.recv(10).into_result().unwrap().is_empty());
        // An operation the backend lacks names itself and the backend's pool type.
        let e = b
            .resize_volume(RStr::from("<pool/>"), RStr::from("<volume/>"), 1, 0)
            .into_result()
            .unwrap_err();
        assert!(e.is_no_support());
        assert!(
            e.message.contains("virStorageVolResize") && e.message.contains("'mock'"),
            "{e}"
        );
    }
}

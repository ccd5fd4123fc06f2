//! Panic safety at the plugin boundary.
//!
//! abi_stable aborts the process when a panic unwinds out of an `extern "C"` shim, so every
//! call into plugin code must catch panics on the plugin's side. [`Guarded`] wraps a
//! connection and runs each method under [`guard`].

use crate::abi::{
    ConnExtensionBox, DomainInfo, DomainRef, DriverConnection, ErrorCode, ErrorDomain, JobStats,
    MigrateFinish, MigrateStep, NodeInfo, PResult, PluginError, Screenshot, StateReason,
    TypedParam, Uuid,
    abi_stable::std_types::{RResult, RStr, RString, RVec},
};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs `f`, turning a panic into `VIR_ERR_INTERNAL_ERROR` naming the plugin and method.
pub fn guard<T>(plugin: &str, method: &str, f: impl FnOnce() -> PResult<T>) -> PResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => RResult::RErr(PluginError::new(
            ErrorCode::InternalError,
            ErrorDomain::None,
            format!(
                "plugin '{plugin}' panicked in {method}: {}",
                panic_message(&*payload)
            ),
        )),
    }
}

/// A connection whose every method runs under [`guard`].
pub struct Guarded<D> {
    plugin: &'static str,
    inner: D,
}

impl<D> Guarded<D> {
    /// Wraps `inner`, naming `plugin` in panic errors.
    pub fn new(plugin: &'static str, inner: D) -> Self {
        Self { plugin, inner }
    }
}

/// Implements `DriverConnection` for `Guarded` from the trait's own method list
/// ([`driver_connection_methods!`](crate::abi::driver_connection_methods)), so every method
/// of the trait is guarded: one appended to the trait cannot be forgotten here and answer
/// no-support through every plugin. Also lists the methods in [`Guarded::METHODS`].
macro_rules! guarded {
    (
        api_1_0 {
            $( $(#[$battr:meta])* fn $bm:ident(&self $(, $ba:ident : $bt:ty)* $(,)?) -> $br:ty = $bapi:literal; )*
        }
        appended {
            $( $(#[$aattr:meta])* fn $am:ident(&self $(, $aa:ident : $at:ty)* $(,)?) -> $ar:ty = $aapi:literal; )*
        }
    ) => {
        impl<D: DriverConnection> DriverConnection for Guarded<D> {
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

        impl<D> Guarded<D> {
            /// Every `DriverConnection` method this adapter guards, in vtable order, with
            /// the libvirt API it names in errors.
            pub const METHODS: &'static [(&'static str, &'static str)] = &[
                $( (stringify!($bm), $bapi), )*
                $( (stringify!($am), $aapi), )*
            ];
        }
    };
}

crate::abi::driver_connection_methods!(guarded);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::abi::{
        DriverConnectionBox,
        abi_stable::{
            StableAbi,
            type_layout::{TLData, TypeLayout},
        },
    };

    /// The method names of a `#[sabi_trait]` object's vtable, read from its abi_stable
    /// layout: the prefix type `VTable` reachable from the object (through fields and
    /// phantom fields), without abi_stable's own `_sabi_*` entries.
    pub(crate) fn vtable_methods(object: &'static TypeLayout) -> Vec<&'static str> {
        let mut queue = std::collections::VecDeque::from([object]);
        while let Some(l) = queue.pop_front() {
            match l.data() {
                TLData::PrefixType(p) if l.name() == "VTable" => {
                    return p
                        .fields
                        .iter()
                        .map(|f| f.name())
                        .filter(|n| !n.starts_with("_sabi"))
                        .collect();
                }
                TLData::Struct { fields } => queue.extend(fields.iter().map(|f| f.layout())),
                _ => {}
            }
            queue.extend(l.phantom_fields().iter().map(|f| f.layout()));
        }
        panic!("no vtable below {}", object.full_type())
    }

    /// The methods of `trait_methods` that `guarded` lacks, in `trait_methods` order.
    fn unguarded<'a>(trait_methods: &[&'a str], guarded: &[&str]) -> Vec<&'a str> {
        trait_methods
            .iter()
            .filter(|m| !guarded.contains(m))
            .copied()
            .collect()
    }

    #[test]
    fn every_method_of_the_connection_vtable_is_guarded() {
        // `Guarded` is generated from the same list as the trait, so this holds by
        // construction; the check reads the trait from its ABI layout instead of that
        // list, so a method declared in the trait any other way is caught too.
        let methods = vtable_methods(<DriverConnectionBox as StableAbi>::LAYOUT);
        assert!(methods.len() >= 29, "{methods:?}");
        let guarded: Vec<&str> = Guarded::<()>::METHODS.iter().map(|(m, _)| *m).collect();
        assert_eq!(
            unguarded(&methods, &guarded),
            Vec::<&str>::new(),
            "connection methods Guarded does not guard (they would answer no-support)"
        );
        assert_eq!(
            guarded, methods,
            "Guarded lists the vtable's methods in order"
        );
        for (m, api) in Guarded::<()>::METHODS {
            assert!(api.starts_with("vir"), "{m} names a libvirt API: {api}");
        }
    }

    #[test]
    fn a_guarded_list_missing_a_method_is_caught() {
        let methods = vtable_methods(<DriverConnectionBox as StableAbi>::LAYOUT);
        let mut guarded: Vec<&str> = Guarded::<()>::METHODS.iter().map(|(m, _)| *m).collect();
        guarded.retain(|m| *m != "get_os_type");
        assert_eq!(unguarded(&methods, &guarded), vec!["get_os_type"]);
        assert_eq!(
            unguarded(&["get_type", "domain_xml_to_native"], &["get_type"]),
            vec!["domain_xml_to_native"]
        );
    }

    #[test]
    fn panic_becomes_internal_error_naming_plugin_and_method() {
        let r: PResult<()> = guard("demo", "virDomainCreate", || panic!("boom {}", 7));
        let e = r.into_result().unwrap_err();
        assert_eq!(e.code, ErrorCode::InternalError as i32);
        assert_eq!(
            e.message.as_str(),
            "plugin 'demo' panicked in virDomainCreate: boom 7"
        );
    }

    #[test]
    fn ok_passes_through() {
        let r = guard("demo", "x", || RResult::ROk(5u32));
        assert_eq!(r.into_result().unwrap(), 5);
    }
}

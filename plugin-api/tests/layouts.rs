//! The current ABI types extend every frozen layout, checked with abi_stable's own layout
//! checker: the check the host's loader runs when it loads a plugin of an older minor
//! (`LibHeader::ensure_layout` against the frozen root module).
//!
//! The loader's check is `check_layout_compatibility(interface, implementation)`: the
//! interface is what the host expects (the frozen layout of the plugin's minor), the
//! implementation what the plugin has. Here the implementation is the current types, so a
//! pass means a plugin built against today's API would pass the loader's check of that
//! older minor, i.e. today's types are that minor's types with fields appended to prefix
//! types only, which is what lets the host view an old plugin through the current types.
//!
//! The deliberately changed closures at the end prove that the check fails when it should.
#![allow(non_local_definitions, non_camel_case_types, missing_docs)]

use abi_stable::{
    StableAbi,
    abi_stability::abi_checking::{
        AbiInstability, CheckingGlobals, check_layout_compatibility_with_globals,
    },
    type_layout::{TLFieldOrFunction, TypeLayout},
};
use rvirt_plugin_api::{
    self as api,
    frozen::{v1_0, v1_1, v1_2, v1_3, v1_4, v1_5, v1_6, v1_7, v1_8, v1_9, v1_10},
};

/// abi_stable's layout check, as the loader runs it (`check_layout_compatibility` is this
/// function with the process-wide globals; fresh globals keep every check independent of
/// the others run in this process). An error is one line per incompatibility: the path of
/// fields and functions from the checked type down to it, then what differs.
fn check(
    interface: &'static TypeLayout,
    implementation: &'static TypeLayout,
) -> Result<(), Vec<String>> {
    let errors =
        check_layout_compatibility_with_globals(interface, implementation, &CheckingGlobals::new())
            .map_err(|e| e.errors)
            .err();
    let Some(errors) = errors else { return Ok(()) };
    let mut lines = Vec::new();
    for e in errors.iter() {
        let path: Vec<&str> = e
            .stack_trace
            .iter()
            .map(|ef| match &ef.found {
                TLFieldOrFunction::Field(f) => f.name(),
                TLFieldOrFunction::Function(f) => f.name.as_str(),
            })
            .collect();
        for what in e.errs.iter() {
            lines.push(format!("{}: {}", path.join("."), describe(what)));
        }
    }
    Err(lines)
}

/// What one incompatibility is, in a line.
fn describe(e: &AbiInstability) -> String {
    match e {
        AbiInstability::MismatchedPrimitive(v) => {
            format!("primitive {:?} expected, {:?} found", v.expected, v.found)
        }
        AbiInstability::FieldCountMismatch(v) => {
            format!("field count {} expected, {} found", v.expected, v.found)
        }
        AbiInstability::UnexpectedField(v) => format!(
            "field '{}' expected, '{}' found",
            v.expected.name(),
            v.found.name()
        ),
        AbiInstability::Size(v) => format!("size {} expected, {} found", v.expected, v.found),
        AbiInstability::Alignment(v) => {
            format!("alignment {} expected, {} found", v.expected, v.found)
        }
        AbiInstability::Name(v) => format!("type {} expected, {} found", v.expected, v.found),
        other => {
            let d = format!("{other:?}");
            d.chars().take(120).collect()
        }
    }
}

/// One type of the root module's closure in two versions of the API.
struct Pair {
    what: &'static str,
    old: &'static TypeLayout,
    new: &'static TypeLayout,
}

/// Every type of the root module's closure, `$old` against `$new` (two modules holding
/// the same names).
macro_rules! closure {
    ($old:path => $new:path) => {{
        use $new as new;
        use $old as old;
        vec![
            pair!(PluginMod_Ref, old, new),
            pair!(DriverConnectionBox, old, new),
            pair!(EventSinkBox, old, new),
            pair!(PluginError, old, new),
            pair!(Manifest, old, new),
            pair!(DomainRef, old, new),
            pair!(DomainInfo, old, new),
            pair!(StateReason, old, new),
            pair!(NodeInfo, old, new),
            pair!(Uuid, old, new),
        ]
    }};
}

/// The types the storage facet added in 1.3 (`$old` and `$new` hold them under the same
/// names); with [`closure!`], the whole closure of a 1.3 or later root module.
macro_rules! storage_closure {
    ($old:path => $new:path) => {{
        use $new as new;
        use $old as old;
        let mut v = closure!($old => $new);
        v.extend([
            pair!(StorageFacet_Ref, old, new),
            pair!(StorageBackendBox, old, new),
            pair!(StreamBox, old, new),
            pair!(HostServicesBox, old, new),
            pair!(PoolRefresh, old, new),
            pair!(FacetVersion, old, new),
        ]);
        v
    }};
}

/// The types 1.4 added for the host services of hypervisor connections; with
/// [`storage_closure!`], the whole closure of a 1.4 or later root module.
macro_rules! host_closure {
    ($old:path => $new:path) => {{
        use $new as new;
        use $old as old;
        let mut v = storage_closure!($old => $new);
        v.extend([
            pair!(VolumeSource, old, new),
            pair!(ConnectionUri, old, new),
            pair!(UriParam, old, new),
        ]);
        v
    }};
}

/// The types 1.5 added for the network facet; with [`host_closure!`], the whole closure of
/// a 1.5 or later root module.
macro_rules! network_closure {
    ($old:path => $new:path) => {{
        use $new as new;
        use $old as old;
        let mut v = host_closure!($old => $new);
        v.extend([
            pair!(NetworkFacet_Ref, old, new),
            pair!(NetworkBackendBox, old, new),
            pair!(PortPlug, old, new),
            pair!(Lease, old, new),
        ]);
        v
    }};
}

/// The values 1.8 added for statistics; with [`network_closure!`], the whole closure of a
/// 1.8 or later root module.
macro_rules! stats_closure {
    ($old:path => $new:path) => {{
        use $new as new;
        use $old as old;
        let mut v = network_closure!($old => $new);
        v.extend([
            pair!(TypedValue, old, new),
            pair!(TypedParam, old, new),
            pair!(JobStats, old, new),
        ]);
        v
    }};
}

/// The values 1.9 added for migration and screenshots; with [`stats_closure!`], the whole
/// closure of a 1.9 or later root module.
macro_rules! migrate_closure {
    ($old:path => $new:path) => {{
        use $new as new;
        use $old as old;
        let mut v = stats_closure!($old => $new);
        v.extend([
            pair!(MigrateStep, old, new),
            pair!(MigrateFinish, old, new),
            pair!(Screenshot, old, new),
        ]);
        v
    }};
}

/// The objects and values 1.10 added for connection-owned storage pools and networks;
/// with [`migrate_closure!`], the whole closure of a 1.10 or later root module.
macro_rules! owned_closure {
    ($old:path => $new:path) => {{
        use $new as new;
        use $old as old;
        let mut v = migrate_closure!($old => $new);
        v.extend([
            pair!(ConnExtensionBox, old, new),
            pair!(ConnStorageBox, old, new),
            pair!(ConnNetworkBox, old, new),
            pair!(OwnedPool, old, new),
            pair!(OwnedPoolInfo, old, new),
            pair!(OwnedVol, old, new),
            pair!(OwnedVolInfo, old, new),
            pair!(OwnedNetwork, old, new),
        ]);
        v
    }};
}

macro_rules! pair {
    ($t:ident, $old:ident, $new:ident) => {
        Pair {
            what: stringify!($t),
            old: <$old::$t as StableAbi>::LAYOUT,
            new: <$new::$t as StableAbi>::LAYOUT,
        }
    };
}

/// `old` → `new` must pass for every type of the closure; the failures otherwise.
fn extends(label: &str, pairs: &[Pair]) -> Vec<String> {
    pairs
        .iter()
        .filter_map(|p| {
            check(p.old, p.new)
                .err()
                .map(|e| format!("{label}: {}:\n  {}", p.what, e.join("\n  ")))
        })
        .collect()
}

#[test]
fn current_types_extend_every_frozen_layout() {
    let mut fails = extends("1.0 -> current", &closure!(v1_0 => api));
    fails.extend(extends("1.1 -> current", &closure!(v1_1 => api)));
    fails.extend(extends("1.2 -> current", &closure!(v1_2 => api)));
    fails.extend(extends("1.3 -> current", &storage_closure!(v1_3 => api)));
    fails.extend(extends("1.4 -> current", &host_closure!(v1_4 => api)));
    fails.extend(extends("1.5 -> current", &network_closure!(v1_5 => api)));
    fails.extend(extends("1.6 -> current", &network_closure!(v1_6 => api)));
    fails.extend(extends("1.7 -> current", &network_closure!(v1_7 => api)));
    fails.extend(extends("1.8 -> current", &stats_closure!(v1_8 => api)));
    fails.extend(extends("1.9 -> current", &migrate_closure!(v1_9 => api)));
    fails.extend(extends("1.10 -> current", &owned_closure!(v1_10 => api)));
    assert!(fails.is_empty(), "{}", fails.join("\n\n"));
}

#[test]
fn each_frozen_minor_extends_the_one_before() {
    let mut fails = extends("1.0 -> 1.1", &closure!(v1_0 => v1_1));
    fails.extend(extends("1.1 -> 1.2", &closure!(v1_1 => v1_2)));
    fails.extend(extends("1.2 -> 1.3", &closure!(v1_2 => v1_3)));
    fails.extend(extends("1.3 -> 1.4", &storage_closure!(v1_3 => v1_4)));
    fails.extend(extends("1.4 -> 1.5", &host_closure!(v1_4 => v1_5)));
    fails.extend(extends("1.5 -> 1.6", &network_closure!(v1_5 => v1_6)));
    fails.extend(extends("1.6 -> 1.7", &network_closure!(v1_6 => v1_7)));
    fails.extend(extends("1.7 -> 1.8", &network_closure!(v1_7 => v1_8)));
    fails.extend(extends("1.8 -> 1.9", &stats_closure!(v1_8 => v1_9)));
    fails.extend(extends("1.9 -> 1.10", &migrate_closure!(v1_9 => v1_10)));
    assert!(fails.is_empty(), "{}", fails.join("\n\n"));
}

#[test]
fn the_current_minor_has_a_frozen_copy_equal_to_the_current_types() {
    // Before a minor ships, its layout is frozen: the copy of the current minor must be
    // the current layout exactly (both directions pass only when nothing was appended).
    let minor = api::API_VERSION.split('.').nth(1).unwrap();
    let frozen = match minor {
        "10" => owned_closure!(v1_10 => api),
        m => panic!(
            "plugin API 1.{m} has no frozen copy: add plugin-api/src/frozen/v1_{m}.rs and list it here"
        ),
    };
    let mut fails = extends("frozen -> current", &frozen);
    let reversed: Vec<Pair> = frozen
        .iter()
        .map(|p| Pair {
            what: p.what,
            old: p.new,
            new: p.old,
        })
        .collect();
    fails.extend(extends("current -> frozen", &reversed));
    assert!(fails.is_empty(), "{}", fails.join("\n\n"));
}

/// The paths a frozen file takes types from: abi_stable's and std's, and an older frozen
/// minor's. Anything else (`crate::DomainInfo`, `rvirt_plugin_api::...`) would let an edit
/// of a current type change a frozen layout.
fn foreign_imports(source: &str) -> Vec<String> {
    let code: Vec<&str> = source
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect();
    let mut bad = Vec::new();
    for (i, line) in code.iter().enumerate() {
        let t = line.trim_start();
        let used = t
            .strip_prefix("pub use ")
            .or_else(|| t.strip_prefix("use "))
            .map(str::trim_start);
        let foreign_use = used.is_some_and(|path| {
            !["abi_stable", "std::", "core::", "super::v1_"]
                .iter()
                .any(|ok| path.starts_with(ok))
        });
        let foreign_path = ["crate::", "rvirt_plugin_api::", "super::super"]
            .iter()
            .any(|root| t.contains(root));
        if foreign_use || foreign_path {
            bad.push(format!("line {}: {}", i + 1, t));
        }
    }
    bad
}

#[test]
fn frozen_files_take_no_type_from_outside_frozen() {
    let files = [
        ("v1_0.rs", include_str!("../src/frozen/v1_0.rs")),
        ("v1_1.rs", include_str!("../src/frozen/v1_1.rs")),
        ("v1_2.rs", include_str!("../src/frozen/v1_2.rs")),
        ("v1_3.rs", include_str!("../src/frozen/v1_3.rs")),
        ("v1_4.rs", include_str!("../src/frozen/v1_4.rs")),
        ("v1_5.rs", include_str!("../src/frozen/v1_5.rs")),
        ("v1_6.rs", include_str!("../src/frozen/v1_6.rs")),
        ("v1_7.rs", include_str!("../src/frozen/v1_7.rs")),
        ("v1_8.rs", include_str!("../src/frozen/v1_8.rs")),
        ("v1_9.rs", include_str!("../src/frozen/v1_9.rs")),
        ("v1_10.rs", include_str!("../src/frozen/v1_10.rs")),
    ];
    let mut bad = Vec::new();
    for (name, source) in files {
        bad.extend(
            foreign_imports(source)
                .into_iter()
                .map(|l| format!("{name}: {l}")),
        );
    }
    assert!(
        bad.is_empty(),
        "frozen files import current types:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_import_scan_catches_a_current_type() {
    assert_eq!(
        foreign_imports("use crate::{DomainInfo, Uuid};\nuse abi_stable::StableAbi;\n"),
        vec!["line 1: use crate::{DomainInfo, Uuid};".to_string()]
    );
    assert_eq!(
        foreign_imports("pub use super::v1_0::Uuid;\nfn f() -> crate::PResult<()>;\n").len(),
        1
    );
}

#[test]
fn an_older_minor_does_not_extend_a_newer_one() {
    // Prefix types may only grow: the 1.2 vtable checked as an implementation of the
    // current interface is fine, but a 1.0 vtable cannot stand for the 1.2 one.
    let e = check(
        <api::DriverConnectionBox as StableAbi>::LAYOUT,
        <v1_0::DriverConnectionBox as StableAbi>::LAYOUT,
    )
    .unwrap_err();
    assert!(
        e.iter()
            .any(|l| l.contains("field count 64 expected, 27 found")),
        "{e:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// Deliberately changed copies of the current closure: the check must refuse each.

/// Declares a `DriverConnection` trait from `driver_connection_methods!`, with the types
/// named in the module that invokes it (so a module can swap one of them).
macro_rules! connection_trait {
    (
        api_1_0 {
            $( $(#[$battr:meta])* fn $bm:ident(&self $(, $ba:ident : $bt:ty)* $(,)?) -> $br:ty = $bapi:literal; )*
        }
        appended {
            $( $(#[$aattr:meta])* fn $am:ident(&self $(, $aa:ident : $at:ty)* $(,)?) -> $ar:ty = $aapi:literal; )*
        }
    ) => {
        #[abi_stable::sabi_trait]
        pub trait DriverConnection: Send + Sync {
            $( $(#[$battr])* fn $bm(&self $(, $ba: $bt)*) -> $br; )*
            $( $(#[$aattr])* fn $am(&self $(, $aa: $at)*) -> $ar; )*
        }
    };
}

/// The current closure with `DomainInfo::nr_virt_cpu` widened from `u32` to `u64`: a type
/// three levels below the root module (root → `open` → connection vtable → `get_info`).
mod changed_domain_info {
    #![allow(dead_code)] // only the layouts are used
    use abi_stable::{
        StableAbi,
        std_types::{RBox, RStr, RString, RVec},
    };
    pub use rvirt_plugin_api::{
        ConnExtensionBox, DomainRef, EventSinkBox, JobStats, Manifest, MigrateFinish, MigrateStep,
        NodeInfo, PResult, Screenshot, StateReason, TypedParam, Uuid,
    };

    #[repr(C)]
    #[derive(StableAbi, Debug, Clone, Copy)]
    pub struct DomainInfo {
        pub state: i32,
        pub max_mem_kib: u64,
        pub memory_kib: u64,
        pub nr_virt_cpu: u64,
        pub cpu_time_ns: u64,
    }

    rvirt_plugin_api::driver_connection_methods!(connection_trait);

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
}

/// The current root module with a field inserted between `manifest` and `open`.
mod inserted_root_field {
    #![allow(dead_code)] // only the layout is used
    use abi_stable::{StableAbi, std_types::RStr};
    use rvirt_plugin_api::{DriverConnectionBox, EventSinkBox, Manifest, PResult};

    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginMod_Ref)))]
    pub struct PluginMod {
        pub manifest: extern "C" fn() -> Manifest,
        pub flags: extern "C" fn() -> u32,
        #[sabi(last_prefix_field)]
        pub open: extern "C" fn(
            uri: RStr<'_>,
            read_only: bool,
            events: EventSinkBox,
        ) -> PResult<DriverConnectionBox>,
    }
}

#[test]
fn a_changed_field_type_is_incompatible_with_every_frozen_copy() {
    for (minor, frozen) in [
        ("1.0", <v1_0::DomainInfo as StableAbi>::LAYOUT),
        ("1.1", <v1_1::DomainInfo as StableAbi>::LAYOUT),
        ("1.2", <v1_2::DomainInfo as StableAbi>::LAYOUT),
        ("1.3", <v1_3::DomainInfo as StableAbi>::LAYOUT),
        ("1.4", <v1_4::DomainInfo as StableAbi>::LAYOUT),
        ("1.5", <v1_5::DomainInfo as StableAbi>::LAYOUT),
    ] {
        let e = check(
            frozen,
            <changed_domain_info::DomainInfo as StableAbi>::LAYOUT,
        )
        .expect_err(minor);
        assert!(
            e.iter()
                .any(|l| l.starts_with("nr_virt_cpu: type u32 expected, u64 found")),
            "{minor}: names the field and both types: {e:#?}"
        );
    }
}

#[test]
fn a_change_deep_in_the_closure_fails_the_root_module_check() {
    for (minor, frozen) in [
        ("1.0", <v1_0::PluginMod_Ref as StableAbi>::LAYOUT),
        ("1.1", <v1_1::PluginMod_Ref as StableAbi>::LAYOUT),
        ("1.2", <v1_2::PluginMod_Ref as StableAbi>::LAYOUT),
    ] {
        let e = check(
            frozen,
            <changed_domain_info::PluginMod_Ref as StableAbi>::LAYOUT,
        )
        .expect_err(minor);
        assert!(
            e.iter().any(|l| l.contains("get_info")
                && l.contains("nr_virt_cpu: type u32 expected, u64 found")),
            "{minor}: the report leads through get_info to the changed field: {e:#?}"
        );
    }
    // The same trait generated from the same list with the unchanged types passes: the
    // failure above is the changed field, not the way the copy was declared.
    check(
        <v1_2::DriverConnectionBox as StableAbi>::LAYOUT,
        <unchanged::DriverConnectionBox as StableAbi>::LAYOUT,
    )
    .unwrap();
}

/// The current closure declared like `changed_domain_info`, without the change.
mod unchanged {
    use abi_stable::std_types::{RBox, RStr, RString, RVec};
    pub use rvirt_plugin_api::{
        ConnExtensionBox, DomainInfo, DomainRef, JobStats, MigrateFinish, MigrateStep, NodeInfo,
        PResult, Screenshot, StateReason, TypedParam, Uuid,
    };

    rvirt_plugin_api::driver_connection_methods!(connection_trait);

    pub type DriverConnectionBox = DriverConnection_TO<'static, RBox<()>>;
}

#[test]
fn a_field_inserted_in_the_middle_of_the_root_module_is_incompatible() {
    for (minor, frozen) in [
        ("1.0", <v1_0::PluginMod_Ref as StableAbi>::LAYOUT),
        ("1.2", <v1_2::PluginMod_Ref as StableAbi>::LAYOUT),
    ] {
        let e = check(
            frozen,
            <inserted_root_field::PluginMod_Ref as StableAbi>::LAYOUT,
        )
        .expect_err(minor);
        assert!(
            e.iter()
                .any(|l| l.contains("field 'open' expected, 'flags' found")),
            "{minor}: names the inserted field: {e:#?}"
        );
    }
}

#[test]
fn a_1_2_root_module_does_not_stand_for_a_1_3_one_but_a_1_3_plugin_extends_1_2() {
    // The 1.3 root module appends `storage`: a 1.3 plugin passes the 1.2 check, and the
    // shorter 1.2 root module is refused where the 1.3 one is expected.
    check(
        <v1_2::PluginMod_Ref as StableAbi>::LAYOUT,
        <v1_3::PluginMod_Ref as StableAbi>::LAYOUT,
    )
    .unwrap();
    let e = check(
        <v1_3::PluginMod_Ref as StableAbi>::LAYOUT,
        <v1_2::PluginMod_Ref as StableAbi>::LAYOUT,
    )
    .unwrap_err();
    assert!(
        e.iter()
            .any(|l| l.contains("field count 3 expected, 2 found")),
        "{e:#?}"
    );
}

/// The current storage backend with `PoolRefresh::capacity` narrowed to `u32`.
mod changed_pool_refresh {
    #![allow(dead_code)] // only the layouts are used
    use abi_stable::{
        StableAbi, sabi_trait,
        std_types::{RBox, RString, RVec},
    };

    #[repr(C)]
    #[derive(StableAbi)]
    pub struct PoolRefresh {
        pub capacity: u32,
        pub allocation: u64,
        pub available: u64,
        pub volumes: RVec<RString>,
    }

    #[sabi_trait]
    pub trait StorageBackend: Send + Sync {
        fn pool_type(&self) -> RString;
        #[sabi(last_prefix_field)]
        fn refresh_pool(&self) -> PoolRefresh;
    }

    pub type StorageBackendBox = StorageBackend_TO<'static, RBox<()>>;
}

#[test]
fn a_changed_storage_type_is_incompatible_with_the_1_3_copy() {
    let e = check(
        <v1_3::PoolRefresh as StableAbi>::LAYOUT,
        <changed_pool_refresh::PoolRefresh as StableAbi>::LAYOUT,
    )
    .unwrap_err();
    assert!(
        e.iter()
            .any(|l| l.starts_with("capacity: type u64 expected, u32 found")),
        "{e:#?}"
    );
    assert!(
        check(
            <v1_3::StorageBackendBox as StableAbi>::LAYOUT,
            <changed_pool_refresh::StorageBackendBox as StableAbi>::LAYOUT,
        )
        .is_err()
    );
}

#[test]
fn a_1_3_root_module_does_not_stand_for_a_1_4_one_but_a_1_4_plugin_extends_1_3() {
    // 1.4 appends `open_with_host` to the root module and two methods to the host
    // services: a 1.4 plugin passes the 1.3 check, a 1.3 root module is refused where the
    // 1.4 one is expected.
    check(
        <v1_3::PluginMod_Ref as StableAbi>::LAYOUT,
        <v1_4::PluginMod_Ref as StableAbi>::LAYOUT,
    )
    .unwrap();
    let e = check(
        <v1_4::PluginMod_Ref as StableAbi>::LAYOUT,
        <v1_3::PluginMod_Ref as StableAbi>::LAYOUT,
    )
    .unwrap_err();
    assert!(
        e.iter()
            .any(|l| l.contains("field count 4 expected, 3 found")),
        "{e:#?}"
    );
    // The services' vtable grew by two optional methods: the 1.3 vtable is a prefix of it.
    check(
        <v1_3::HostServicesBox as StableAbi>::LAYOUT,
        <v1_4::HostServicesBox as StableAbi>::LAYOUT,
    )
    .unwrap();
    let e = check(
        <v1_4::HostServicesBox as StableAbi>::LAYOUT,
        <v1_3::HostServicesBox as StableAbi>::LAYOUT,
    )
    .unwrap_err();
    assert!(
        e.iter()
            .any(|l| l.contains("field count 7 expected, 5 found")),
        "{e:#?}"
    );
}

/// `VolumeSource` with `path` and `format` swapped for a `u64` size: a changed value type
/// of 1.4.
mod changed_volume_source {
    #![allow(dead_code)] // only the layout is used
    use abi_stable::{StableAbi, std_types::RString};

    #[repr(C)]
    #[derive(StableAbi)]
    pub struct VolumeSource {
        pub disk_type: RString,
        pub path: RString,
        pub format: u64,
        pub pool_type: RString,
        pub volume_xml: RString,
    }
}

#[test]
fn a_changed_host_services_type_is_incompatible_with_the_1_4_copy() {
    let e = check(
        <v1_4::VolumeSource as StableAbi>::LAYOUT,
        <changed_volume_source::VolumeSource as StableAbi>::LAYOUT,
    )
    .unwrap_err();
    assert!(
        e.iter().any(|l| l.starts_with("format: ")),
        "names the changed field: {e:#?}"
    );
}

#[test]
fn a_1_4_root_module_does_not_stand_for_a_1_5_one_but_a_1_5_plugin_extends_1_4() {
    // 1.5 appends `network` to the root module: a 1.5 plugin passes the 1.4 check, a 1.4
    // root module is refused where the 1.5 one is expected.
    check(
        <v1_4::PluginMod_Ref as StableAbi>::LAYOUT,
        <v1_5::PluginMod_Ref as StableAbi>::LAYOUT,
    )
    .unwrap();
    let e = check(
        <v1_5::PluginMod_Ref as StableAbi>::LAYOUT,
        <v1_4::PluginMod_Ref as StableAbi>::LAYOUT,
    )
    .unwrap_err();
    assert!(
        e.iter()
            .any(|l| l.contains("field count 5 expected, 4 found")),
        "{e:#?}"
    );
}

/// `Lease` with `expiry_time` narrowed to `i32`: a changed value type of 1.5.
mod changed_lease {
    #![allow(dead_code)] // only the layout is used
    use abi_stable::{StableAbi, std_types::RString};

    #[repr(C)]
    #[derive(StableAbi)]
    pub struct Lease {
        pub iface: RString,
        pub expiry_time: i32,
        pub ip_type: i32,
        pub mac: RString,
        pub iaid: RString,
        pub ipaddr: RString,
        pub prefix: u32,
        pub hostname: RString,
        pub clientid: RString,
    }
}

#[test]
fn a_changed_network_type_is_incompatible_with_the_1_5_copy() {
    let e = check(
        <v1_5::Lease as StableAbi>::LAYOUT,
        <changed_lease::Lease as StableAbi>::LAYOUT,
    )
    .unwrap_err();
    assert!(
        e.iter().any(|l| l.starts_with("expiry_time: ")),
        "names the changed field: {e:#?}"
    );
}

#[test]
fn a_1_5_host_services_vtable_is_a_prefix_of_the_1_6_one_not_the_reverse() {
    // 1.6 appends `storage_pool_xml` to `HostServices`: 1.6 services pass where 1.5 ones
    // are expected, 1.5 services are refused where 1.6 ones are expected.
    check(
        <v1_5::HostServicesBox as StableAbi>::LAYOUT,
        <v1_6::HostServicesBox as StableAbi>::LAYOUT,
    )
    .expect("1.6 services extend 1.5");
    check(
        <v1_6::HostServicesBox as StableAbi>::LAYOUT,
        <v1_5::HostServicesBox as StableAbi>::LAYOUT,
    )
    .expect_err("1.5 services lack storage_pool_xml");
}

//! `export_plugin!` for a plugin serving storage only: the root module it writes carries
//! the storage facet, and its hypervisor entry answers that the plugin serves storage pool
//! types, not hypervisor connections.

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr, RString, RVec},
};
use rvirt_sdk::{
    PluginInfo,
    abi::{
        DomainRef, EventSink, EventSink_TO, HostServices, HostServices_TO, PResult, PluginError,
        StorageBackend,
    },
};

rvirt_sdk::export_plugin! {
    manifest: PluginInfo {
        name: "demo-storage",
        kind: "storage",
        schemes: &[],
        version: "0.1.0",
        description: "a storage-only plugin",
    },
    storage: { pool_types: &["demo", "demo2"], open: open_backend },
}

struct Demo(String);

impl StorageBackend for Demo {
    fn pool_type(&self) -> RString {
        self.0.as_str().into()
    }
    fn check_pool(&self, _pool_xml: RStr<'_>) -> PResult<bool> {
        panic!("check exploded")
    }
}

fn open_backend(
    pool_type: &str,
    host: rvirt_sdk::abi::HostServicesBox,
) -> Result<Demo, PluginError> {
    Ok(Demo(format!("{pool_type}@{}", host.system_root())))
}

struct Host;

impl HostServices for Host {
    fn system_root(&self) -> RString {
        "/srv".into()
    }
    fn secret_value(&self, _usage_type: i32, _usage_id: RStr<'_>) -> PResult<RVec<u8>> {
        RResult::RErr(PluginError::no_support("virSecretGetValue"))
    }
    fn log(&self, _level: u32, _message: RStr<'_>) {}
}

struct Sink;

impl EventSink for Sink {
    fn domain_lifecycle(&self, _dom: DomainRef, _event: i32, _detail: i32) {}
}

#[test]
fn the_root_module_carries_the_storage_facet_and_refuses_connections() {
    let root = __rvirt_root_module();
    let e = match (root.open())(
        RStr::from("demo-storage:///"),
        false,
        EventSink_TO::from_value(Sink, TD_Opaque),
    ) {
        RResult::RErr(e) => e,
        RResult::ROk(_) => panic!("a storage-only plugin opened a connection"),
    };
    assert_eq!(
        e.message.as_str(),
        "plugin 'demo-storage' serves storage pool types [demo, demo2], not hypervisor connections"
    );
    // The 1.4 entry (which a host prefers) refuses the same way.
    let open_with_host = root.open_with_host().flatten().expect("open_with_host");
    match open_with_host(
        RStr::from("demo-storage:///"),
        false,
        EventSink_TO::from_value(Sink, TD_Opaque),
        HostServices_TO::from_value(Host, TD_Opaque),
    ) {
        RResult::RErr(e2) => assert_eq!(e2.message, e.message),
        RResult::ROk(_) => panic!("a storage-only plugin opened a connection"),
    }
    let facet = root.storage().flatten().expect("the storage facet");
    assert_eq!(facet.api(), rvirt_sdk::abi::STORAGE_FACET_VERSION);
    let types: Vec<String> = (facet.pool_types())()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(types, ["demo", "demo2"]);
    let host = || HostServices_TO::from_value(Host, TD_Opaque);
    let b = (facet.open())(RStr::from("demo2"), host()).unwrap();
    assert_eq!(b.pool_type().as_str(), "demo2@/srv");
    // The backend the macro boxed is guarded.
    let e = b.check_pool(RStr::from("<pool/>")).unwrap_err();
    assert_eq!(
        e.message.as_str(),
        "plugin 'demo-storage' panicked in virStoragePoolIsActive: check exploded"
    );
    let e = match (facet.open())(RStr::from("zfs"), host()) {
        RResult::RErr(e) => e,
        RResult::ROk(_) => panic!("opened a pool type the plugin does not serve"),
    };
    assert!(e.is_no_support(), "{e}");
    assert!(
        e.message.contains("does not serve storage pool type 'zfs'"),
        "{e}"
    );
}

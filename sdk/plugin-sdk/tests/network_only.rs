//! `export_plugin!` for a plugin serving networks only (plugin API 1.5): the root module
//! carries the network facet, no storage facet, and its hypervisor entry answers that the
//! plugin serves forward modes, not hypervisor connections.

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr, RString, RVec},
};
use rvirt_sdk::{
    PluginInfo,
    abi::{
        DomainRef, EventSink, EventSink_TO, HostServices, HostServices_TO, NetworkBackend, PResult,
        PluginError,
    },
};

rvirt_sdk::export_plugin! {
    manifest: PluginInfo {
        name: "demo-net",
        kind: "network",
        schemes: &[],
        version: "0.1.0",
        description: "a network-only plugin",
    },
    network: { forward_modes: &["nat", "isolated"], open: open_backend },
}

struct Demo(String);

impl NetworkBackend for Demo {
    fn forward_mode(&self) -> RString {
        self.0.as_str().into()
    }
    fn check_network(&self, _net_xml: RStr<'_>, _state_dir: RStr<'_>) -> PResult<bool> {
        panic!("check exploded")
    }
}

fn open_backend(mode: &str, host: rvirt_sdk::abi::HostServicesBox) -> Result<Demo, PluginError> {
    Ok(Demo(format!("{mode}@{}", host.system_root())))
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
fn the_root_module_carries_the_network_facet_and_refuses_connections() {
    let root = __rvirt_root_module();
    let e = match (root.open())(
        RStr::from("demo-net:///"),
        false,
        EventSink_TO::from_value(Sink, TD_Opaque),
    ) {
        RResult::RErr(e) => e,
        RResult::ROk(_) => panic!("a network-only plugin opened a connection"),
    };
    assert_eq!(
        e.message.as_str(),
        "plugin 'demo-net' serves network forward modes [nat, isolated], not hypervisor connections"
    );
    assert!(root.storage().flatten().is_none());
    let facet = root.network().flatten().expect("network facet");
    assert_eq!(facet.api(), rvirt_sdk::abi::NETWORK_FACET_VERSION);
    let modes: Vec<String> = (facet.forward_modes())()
        .iter()
        .map(|m| m.to_string())
        .collect();
    assert_eq!(modes, ["nat", "isolated"]);
    let host = || HostServices_TO::from_value(Host, TD_Opaque);
    let backend = match (facet.open())(RStr::from("nat"), host()) {
        RResult::ROk(b) => b,
        RResult::RErr(e) => panic!("{e}"),
    };
    assert_eq!(backend.forward_mode().as_str(), "nat@/srv");
    let e = backend
        .check_network(RStr::from("<network/>"), RStr::from(""))
        .unwrap_err();
    assert_eq!(
        e.message.as_str(),
        "plugin 'demo-net' panicked in virNetworkIsActive: check exploded"
    );
    let e = match (facet.open())(RStr::from("bridge"), host()) {
        RResult::RErr(e) => e,
        RResult::ROk(_) => panic!("opened a mode it does not serve"),
    };
    assert!(
        e.message
            .contains("does not serve network forward mode 'bridge'"),
        "{e}"
    );
}

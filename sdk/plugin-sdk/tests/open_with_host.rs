//! `export_plugin!` with `open_with_host` (plugin API 1.4): the root module's
//! `open_with_host` entry hands the host's services to the plugin's open function, the
//! plain `open` (what an older host calls) hands it `None`, and a panic while opening is
//! caught in both.

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr, RString, RVec},
};
use rvirt_sdk::{
    NoConnection, PluginInfo,
    abi::{
        DomainRef, EventSink, EventSink_TO, EventSinkBox, HostServices, HostServices_TO,
        HostServicesBox, PResult, PluginError,
    },
};

rvirt_sdk::export_plugin! {
    manifest: PluginInfo {
        name: "demo-hv",
        kind: "hypervisor",
        schemes: &["demo"],
        version: "0.1.0",
        description: "a hypervisor plugin opened with the host's services",
    },
    open_with_host: open,
}

/// Answers an error naming what it was given (a `NoConnection` cannot be built), or
/// panics for `demo:///panic`.
fn open(
    uri: &str,
    _read_only: bool,
    _events: EventSinkBox,
    host: Option<HostServicesBox>,
) -> Result<NoConnection, PluginError> {
    if uri == "demo:///panic" {
        panic!("open exploded");
    }
    let root = host.map(|h| h.system_root().into_string());
    Err(PluginError::new(
        rvirt_sdk::abi::ErrorCode::InternalError,
        rvirt_sdk::abi::ErrorDomain::None,
        format!("opened {uri} with root {root:?}"),
    ))
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

fn message<T>(r: PResult<T>) -> String {
    match r {
        RResult::RErr(e) => e.message.into_string(),
        RResult::ROk(_) => panic!("opened"),
    }
}

#[test]
fn open_with_host_lends_the_services_and_open_does_not() {
    let root = __rvirt_root_module();
    let sink = || EventSink_TO::from_value(Sink, TD_Opaque);
    let host = || HostServices_TO::from_value(Host, TD_Opaque);
    let with_host = root
        .open_with_host()
        .flatten()
        .expect("export_plugin! fills open_with_host");
    assert_eq!(
        message(with_host(RStr::from("demo:///x"), false, sink(), host())),
        "opened demo:///x with root Some(\"/srv\")"
    );
    assert_eq!(
        message((root.open())(RStr::from("demo:///x"), false, sink())),
        "opened demo:///x with root None"
    );
    assert_eq!(
        message(with_host(
            RStr::from("demo:///panic"),
            false,
            sink(),
            host()
        )),
        "plugin 'demo-hv' panicked in virConnectOpen: open exploded"
    );
    assert_eq!(
        message((root.open())(RStr::from("demo:///panic"), false, sink())),
        "plugin 'demo-hv' panicked in virConnectOpen: open exploded"
    );
}

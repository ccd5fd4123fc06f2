//! The host services' appended methods (plugin API 1.4) on a services object whose vtable
//! predates them: the trait object runs the default body, which answers no-support
//! instead of panicking. This is what a plugin calling `volume_source` would see from a
//! host of 1.3 (whose vtable lacks the method).
#![allow(missing_docs)]

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr, RString, RVec},
};
use rvirt_plugin_api::{self as api, ErrorCode, ErrorDomain, frozen::v1_3};

/// Host services as a 1.3 host implements them.
struct OldHost;

impl v1_3::HostServices for OldHost {
    fn system_root(&self) -> RString {
        "/old".into()
    }
    fn secret_value(&self, _usage_type: i32, _usage_id: RStr<'_>) -> v1_3::PResult<RVec<u8>> {
        RResult::RErr(v1_3::PluginError {
            code: 3,
            domain: 0,
            message: "no secrets".into(),
        })
    }
    fn log(&self, _level: u32, _message: RStr<'_>) {}
}

#[test]
fn a_1_3_host_services_vtable_answers_no_support_for_the_1_4_methods() {
    let old: v1_3::HostServicesBox = v1_3::HostServices_TO::from_value(OldHost, TD_Opaque);
    assert_eq!(
        std::mem::size_of::<v1_3::HostServicesBox>(),
        std::mem::size_of::<api::HostServicesBox>()
    );
    // SAFETY: this is the view a 1.4 plugin has of a 1.3 host's services across the
    // boundary: the same object layout (a pointer to the value and a prefix reference to
    // the vtable, checked equal in size above; `layouts.rs` checks that the 1.3 vtable is
    // a prefix of the 1.4 one), where the accessor of an appended method reads the
    // vtable's recorded field count and reports the method absent.
    let now: api::HostServicesBox = unsafe { std::mem::transmute(old) };
    assert_eq!(now.system_root().as_str(), "/old");
    let e = now
        .volume_source(RStr::from_str("p"), RStr::from_str("v"))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSupport as i32);
    assert_eq!(e.domain, ErrorDomain::Storage as i32);
    assert!(
        e.message.contains("virStorageVolGetPath") && e.message.contains("predate"),
        "{}",
        e.message
    );
    let e = now.connection_uri().unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSupport as i32);
    // 1.6's storage_pool_xml too
    let e = now.storage_pool_xml(RStr::from_str("p")).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSupport as i32);
    assert!(
        e.message.contains("virStoragePoolGetXMLDesc"),
        "{}",
        e.message
    );
}

//! Panic safety at the plugin boundary.
//!
//! abi_stable aborts the process when a panic unwinds out of an `extern "C"` shim, so every
//! call into plugin code must catch panics on the plugin's side. [`Guarded`] wraps a
//! connection and runs each method under [`guard`].

use crate::abi::{
    DomainInfo, DomainRef, DriverConnection, ErrorCode, ErrorDomain, NodeInfo, PResult,
    PluginError, StateReason, Uuid,
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

macro_rules! guarded {
    ($( fn $m:ident(&self $(, $a:ident : $t:ty)*) -> $r:ty = $api:literal; )*) => {
        impl<D: DriverConnection> DriverConnection for Guarded<D> {
            $(
                fn $m(&self $(, $a: $t)*) -> $r {
                    guard(self.plugin, $api, || self.inner.$m($($a),*))
                }
            )*
        }
    };
}

guarded! {
    fn get_type(&self) -> PResult<RString> = "virConnectGetType";
    fn get_version(&self) -> PResult<u64> = "virConnectGetVersion";
    fn get_uri(&self) -> PResult<RString> = "virConnectGetURI";
    fn get_hostname(&self) -> PResult<RString> = "virConnectGetHostname";
    fn get_capabilities(&self) -> PResult<RString> = "virConnectGetCapabilities";
    fn node_get_info(&self) -> PResult<NodeInfo> = "virNodeGetInfo";
    fn list_all_domains(&self, flags: u32) -> PResult<RVec<DomainRef>> = "virConnectListAllDomains";
    fn lookup_by_name(&self, name: RStr<'_>) -> PResult<DomainRef> = "virDomainLookupByName";
    fn lookup_by_uuid(&self, uuid: Uuid) -> PResult<DomainRef> = "virDomainLookupByUUID";
    fn lookup_by_id(&self, id: i32) -> PResult<DomainRef> = "virDomainLookupByID";
    fn define_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> = "virDomainDefineXMLFlags";
    fn undefine(&self, uuid: Uuid, flags: u32) -> PResult<()> = "virDomainUndefineFlags";
    fn create(&self, uuid: Uuid, flags: u32) -> PResult<DomainRef> = "virDomainCreateWithFlags";
    fn create_xml(&self, xml: RStr<'_>, flags: u32) -> PResult<DomainRef> = "virDomainCreateXML";
    fn destroy(&self, uuid: Uuid, flags: u32) -> PResult<()> = "virDomainDestroyFlags";
    fn shutdown(&self, uuid: Uuid, flags: u32) -> PResult<()> = "virDomainShutdownFlags";
    fn reboot(&self, uuid: Uuid, flags: u32) -> PResult<()> = "virDomainReboot";
    fn suspend(&self, uuid: Uuid) -> PResult<()> = "virDomainSuspend";
    fn resume(&self, uuid: Uuid) -> PResult<()> = "virDomainResume";
    fn get_info(&self, uuid: Uuid) -> PResult<DomainInfo> = "virDomainGetInfo";
    fn get_state(&self, uuid: Uuid) -> PResult<StateReason> = "virDomainGetState";
    fn get_xml_desc(&self, uuid: Uuid, flags: u32) -> PResult<RString> = "virDomainGetXMLDesc";
    fn is_persistent(&self, uuid: Uuid) -> PResult<bool> = "virDomainIsPersistent";
    fn get_autostart(&self, uuid: Uuid) -> PResult<bool> = "virDomainGetAutostart";
    fn set_autostart(&self, uuid: Uuid, autostart: bool) -> PResult<()> = "virDomainSetAutostart";
    fn get_vcpus_flags(&self, uuid: Uuid, flags: u32) -> PResult<i32> = "virDomainGetVcpusFlags";
    fn get_os_type(&self, uuid: Uuid) -> PResult<RString> = "virDomainGetOSType";
    fn has_managed_save_image(&self, uuid: Uuid, flags: u32) -> PResult<bool> = "virDomainHasManagedSaveImage";
    fn domain_xml_to_native(&self, format: RStr<'_>, xml: RStr<'_>, flags: u32) -> PResult<RString> = "virConnectDomainXMLToNative";
}

#[cfg(test)]
mod tests {
    use super::*;

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

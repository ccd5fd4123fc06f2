//! The seam between [`crate::Connection`] and what serves it: a loaded plugin
//! ([`crate::plugin`]) or a remote daemon (`remote.rs`).

use crate::{DomainEvent, DomainId, DomainInfo, NodeInfo, Result, TypedParam};
use std::sync::Arc;

/// rvirt's own `virConnectSupportsFeature` numbers, asked between rvirtd and its plugin
/// host processes (libvirt's `VIR_DRV_FEATURE_*` stay far below them).
pub mod feature {
    /// The connection owns its storage pools (plugin API 1.10): storage calls go to it.
    pub const OWNED_STORAGE: i32 = 0x7276_0001;
    /// The connection owns its networks (plugin API 1.10): network calls go to it.
    pub const OWNED_NETWORKS: i32 = 0x7276_0002;
}

/// A callback receiving domain events. It runs on the driver's thread: it must be quick
/// and must not call back into the connection (queue the event instead).
pub type EventCallback = Arc<dyn Fn(&DomainEvent) + Send + Sync>;

/// One open connection's operations. Domains are addressed by UUID.
#[allow(missing_docs)]
pub trait Backend: Send + Sync {
    /// Name of the driver behind this backend (`test`, `qemu`, `remote`), for messages.
    fn driver_name(&self) -> &str;
    fn get_type(&self) -> Result<String>;
    fn get_version(&self) -> Result<u64>;
    fn get_uri(&self) -> Result<String>;
    fn get_hostname(&self) -> Result<String>;
    fn get_capabilities(&self) -> Result<String>;
    fn node_get_info(&self) -> Result<NodeInfo>;
    fn list_all_domains(&self, flags: u32) -> Result<Vec<DomainId>>;
    fn lookup_by_name(&self, name: &str) -> Result<DomainId>;
    fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<DomainId>;
    fn lookup_by_id(&self, id: i32) -> Result<DomainId>;
    fn define_xml(&self, xml: &str, flags: u32) -> Result<DomainId>;
    fn undefine(&self, uuid: uuid::Uuid, flags: u32) -> Result<()>;
    fn create(&self, uuid: uuid::Uuid, flags: u32) -> Result<DomainId>;
    fn create_xml(&self, xml: &str, flags: u32) -> Result<DomainId>;
    fn destroy(&self, uuid: uuid::Uuid, flags: u32) -> Result<()>;
    fn shutdown(&self, uuid: uuid::Uuid, flags: u32) -> Result<()>;
    fn reboot(&self, uuid: uuid::Uuid, flags: u32) -> Result<()>;
    fn suspend(&self, uuid: uuid::Uuid) -> Result<()>;
    fn resume(&self, uuid: uuid::Uuid) -> Result<()>;
    fn get_info(&self, uuid: uuid::Uuid) -> Result<DomainInfo>;
    fn get_state(&self, uuid: uuid::Uuid) -> Result<(i32, i32)>;
    fn get_xml_desc(&self, uuid: uuid::Uuid, flags: u32) -> Result<String>;
    fn is_persistent(&self, uuid: uuid::Uuid) -> Result<bool>;
    fn get_autostart(&self, uuid: uuid::Uuid) -> Result<bool>;
    fn set_autostart(&self, uuid: uuid::Uuid, autostart: bool) -> Result<()>;
    fn get_vcpus_flags(&self, uuid: uuid::Uuid, flags: u32) -> Result<i32>;
    fn get_os_type(&self, uuid: uuid::Uuid) -> Result<String>;
    fn has_managed_save_image(&self, uuid: uuid::Uuid, flags: u32) -> Result<bool>;
    fn domain_xml_to_native(&self, format: &str, xml: &str, flags: u32) -> Result<String>;
    fn domain_xml_from_native(&self, format: &str, config: &str, flags: u32) -> Result<String>;
    fn set_memory_flags(&self, uuid: uuid::Uuid, kib: u64, flags: u32) -> Result<()>;
    /// `virDomainSetMemoryStatsPeriod` (seconds; `AFFECT_LIVE`/`AFFECT_CONFIG`).
    fn set_memory_stats_period(&self, uuid: uuid::Uuid, period: i32, flags: u32) -> Result<()>;
    fn set_vcpus_flags(&self, uuid: uuid::Uuid, nvcpus: u32, flags: u32) -> Result<()>;
    fn attach_device(&self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<()>;
    fn detach_device(&self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<()>;
    fn snapshot_create_xml(&self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<String>;
    fn snapshot_list(&self, uuid: uuid::Uuid, flags: u32) -> Result<Vec<String>>;
    fn snapshot_list_children(
        &self,
        uuid: uuid::Uuid,
        name: &str,
        flags: u32,
    ) -> Result<Vec<String>>;
    fn snapshot_get_xml_desc(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<String>;
    fn snapshot_current(&self, uuid: uuid::Uuid, flags: u32) -> Result<String>;
    fn snapshot_get_parent(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<String>;
    fn snapshot_revert(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<()>;
    fn snapshot_delete(&self, uuid: uuid::Uuid, name: &str, flags: u32) -> Result<()>;
    fn save(&self, uuid: uuid::Uuid, path: &str, dxml: Option<&str>, flags: u32) -> Result<()>;
    fn restore(&self, path: &str, dxml: Option<&str>, flags: u32) -> Result<()>;
    fn save_image_get_xml_desc(&self, path: &str, flags: u32) -> Result<String>;
    fn save_image_define_xml(&self, path: &str, dxml: &str, flags: u32) -> Result<()>;
    fn managed_save(&self, uuid: uuid::Uuid, flags: u32) -> Result<()>;
    fn managed_save_remove(&self, uuid: uuid::Uuid, flags: u32) -> Result<()>;
    fn domain_stats(&self, uuid: uuid::Uuid, stats: u32, flags: u32) -> Result<Vec<TypedParam>>;
    fn block_stats(&self, uuid: uuid::Uuid, disk: &str, flags: u32) -> Result<Vec<TypedParam>>;
    fn interface_stats(&self, uuid: uuid::Uuid, device: &str) -> Result<Vec<TypedParam>>;
    fn memory_stats(&self, uuid: uuid::Uuid, flags: u32) -> Result<Vec<TypedParam>>;
    fn job_stats(&self, uuid: uuid::Uuid, flags: u32) -> Result<(i32, Vec<TypedParam>)>;
    fn cpu_stats(
        &self,
        uuid: uuid::Uuid,
        start_cpu: i32,
        ncpus: u32,
        flags: u32,
    ) -> Result<Vec<Vec<TypedParam>>>;
    /// `virDomainOpenConsole` as a stream: only through a daemon (a local driver's
    /// console is its pty, which the caller opens itself).
    fn open_console(
        &self,
        _uuid: uuid::Uuid,
        _dev_name: Option<&str>,
        _flags: u32,
    ) -> Result<crate::remote::RemoteConsole> {
        Err(crate::Error::driver(
            rvirt_plugin_api::ErrorCode::NoSupport,
            rvirt_plugin_api::ErrorDomain::Domain,
            format!(
                "this function is not supported by the connection driver: virDomainOpenConsole (driver '{}': open the console pty the live XML names)",
                self.driver_name()
            ),
        ))
    }
    /// Migration, source, first step: the domain XML for the destination and a cookie
    /// (`virDomainMigrateBegin3Params`).
    fn migrate_begin(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        flags: u32,
    ) -> Result<(String, Vec<u8>)>;
    /// Migration, destination: start the incoming domain; the URI to migrate to (when the
    /// driver chose one) and a cookie (`virDomainMigratePrepare3Params`).
    fn migrate_prepare(
        &self,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
    ) -> Result<(Option<String>, Vec<u8>)>;
    /// Migration, source: send the domain (`virDomainMigratePerform3Params`).
    fn migrate_perform(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
    ) -> Result<Vec<u8>>;
    /// Migration, destination: resume the arrived domain, or clean up when `cancelled`
    /// (`virDomainMigrateFinish3Params`).
    fn migrate_finish(
        &self,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
        cancelled: bool,
    ) -> Result<(DomainId, Vec<u8>)>;
    /// Migration, source, last step: stop the domain here, or resume it when `cancelled`
    /// (`virDomainMigrateConfirm3Params`).
    fn migrate_confirm(
        &self,
        uuid: uuid::Uuid,
        params: &[TypedParam],
        cookie: &[u8],
        flags: u32,
        cancelled: bool,
    ) -> Result<()>;
    /// Cancel the domain's running job (`virDomainAbortJob`).
    fn abort_job(&self, uuid: uuid::Uuid, flags: u32) -> Result<()>;
    /// A screenshot of display `screen`: its MIME type and the image
    /// (`virDomainScreenshot`).
    fn screenshot(&self, uuid: uuid::Uuid, screen: u32, flags: u32) -> Result<(String, Vec<u8>)>;
    /// The storage pools and volumes this connection owns (a remote hypervisor's
    /// datastores, plugin API 1.10): when `Some`, every storage call of the connection goes
    /// to it instead of the host's pools. `None` (the default): server-owned.
    fn owned_storage(&self) -> Option<Arc<dyn crate::StorageService>> {
        None
    }
    /// The networks this connection owns (a remote hypervisor's port groups, plugin API
    /// 1.10), as [`Backend::owned_storage`] for storage.
    fn owned_networks(&self) -> Option<Arc<dyn crate::network_api::NetworkOps>> {
        None
    }
    /// Register a callback for domain events; returns its id.
    fn subscribe_events(&self, callback: EventCallback) -> Result<u64>;
    /// Remove a callback registered with [`Backend::subscribe_events`].
    fn unsubscribe_events(&self, id: u64) -> Result<()>;
}

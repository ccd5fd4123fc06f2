//! The embedder's API: [`Connection`] and [`Domain`].

use crate::acl::{Hook, Object, P};
use crate::{
    DomainEvent, DomainId, DomainInfo, DomainState, NodeInfo, Result, Runtime, backend::Backend,
    error::Error, secrets_api::SecretService, storage_api::StorageService,
};
use std::sync::Arc;

/// An open connection to a driver. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Connection {
    backend: Arc<dyn Backend>,
    pub(crate) storage: Arc<dyn StorageService>,
    pub(crate) secrets: Arc<dyn SecretService>,
    pub(crate) networks: crate::network_api::NetworkOpsLookup,
    read_only: bool,
    /// Whether the storage and the networks are the connection's own (plugin API 1.10),
    /// not the host's.
    pub(crate) owns: (bool, bool),
    /// Access checks (feature `policy`, [`Connection::with_policy`]); empty otherwise.
    pub(crate) acl: crate::acl::Checker,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("driver", &self.backend.driver_name())
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// `VIR_DOMAIN_XML_SECURE`
pub const XML_SECURE: u32 = 1;
/// `VIR_DOMAIN_XML_INACTIVE`
pub const XML_INACTIVE: u32 = 2;
/// `VIR_DOMAIN_START_PAUSED`
pub const START_PAUSED: u32 = 1;
/// `VIR_DOMAIN_VCPU_MAXIMUM`
pub const VCPU_MAXIMUM: u32 = 4;
/// `VIR_DOMAIN_AFFECT_LIVE`: change the running domain.
pub const AFFECT_LIVE: u32 = 1;
/// `VIR_DOMAIN_AFFECT_CONFIG`: change the persistent definition.
pub const AFFECT_CONFIG: u32 = 2;
/// `VIR_DOMAIN_MEM_MAXIMUM`: `virDomainSetMemoryFlags` sets the maximum.
pub const MEM_MAXIMUM: u32 = 4;
/// `VIR_ERR_NO_DOMAIN_SNAPSHOT`.
const NO_DOMAIN_SNAPSHOT: i32 = rvirt_plugin_api::ErrorCode::NoDomainSnapshot as i32;

/// libvirt's error for a snapshot name a domain does not have.
fn no_snapshot(name: &str) -> crate::Error {
    crate::Error::Driver {
        code: NO_DOMAIN_SNAPSHOT,
        // VIR_FROM_DOMAIN_SNAPSHOT
        domain: 35,
        message: format!(
            "Domain snapshot not found: no domain snapshot with matching name '{name}'"
        ),
    }
}

/// `VIR_DOMAIN_SAVE_IMAGE_XML_SECURE`: the saved domain's XML with its secrets.
pub const SAVE_IMAGE_XML_SECURE: u32 = 1;
/// `VIR_ERR_NO_DOMAIN`.
const NO_DOMAIN: i32 = rvirt_plugin_api::ErrorCode::NoDomain as i32;

/// `VIR_DOMAIN_SNAPSHOT_XML_SECURE`: the snapshot's domain with its secrets.
pub const SNAPSHOT_XML_SECURE: u32 = 1;
/// `VIR_DOMAIN_XML_MIGRATABLE`
const XML_MIGRATABLE: u32 = 8;

impl Connection {
    /// Opens `uri` read-write through the process-wide [`Runtime::global`].
    pub fn open(uri: &str) -> Result<Self> {
        Runtime::global().open(uri, false)
    }

    /// Opens `uri` read-only: every mutating call is refused.
    pub fn open_read_only(uri: &str) -> Result<Self> {
        Runtime::global().open(uri, true)
    }

    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        storage: Arc<dyn StorageService>,
        secrets: Arc<dyn SecretService>,
        networks: crate::network_api::NetworkOpsLookup,
        read_only: bool,
    ) -> Self {
        Self {
            backend,
            storage,
            secrets,
            networks,
            read_only,
            owns: (false, false),
            acl: crate::acl::Checker::default(),
        }
    }

    /// Whether the connection's storage pools are its own (a remote hypervisor's
    /// datastores, plugin API 1.10) rather than the host's.
    pub fn owns_storage(&self) -> bool {
        self.owns.0
    }

    /// Whether the connection's networks are its own (a remote hypervisor's virtual
    /// switches, plugin API 1.10) rather than the host's.
    pub fn owns_networks(&self) -> bool {
        self.owns.1
    }

    /// This connection with `engine`'s access policies and hooks applied to every call of
    /// it, its clones and the handles they make, on behalf of `subject`: permissions are
    /// checked before each call (a denial is `VIR_ERR_ACCESS_DENIED`, code 88, naming the
    /// permission), list calls leave out what the subject may not `getattr`, and the
    /// domain hooks of define, create and destroy run.
    #[cfg(feature = "policy")]
    pub fn with_policy(
        &self,
        engine: Arc<rvirt_policy::PolicyEngine>,
        subject: crate::policy::Subject,
    ) -> Connection {
        let mut c = self.clone();
        c.acl.guard = Some(Arc::new(crate::policy::Guard::new(
            engine,
            subject,
            self.read_only,
            self.backend.driver_name().to_owned(),
        )));
        c
    }

    /// The connection object, for checks.
    #[inline]
    pub(crate) fn check_connect(&self, p: P) -> Result<()> {
        self.acl.require(p, Object::Connect)
    }

    pub(crate) fn writable(&self, operation: &'static str) -> Result<()> {
        if self.read_only {
            Err(Error::ReadOnly(operation))
        } else {
            Ok(())
        }
    }

    /// Whether this connection refuses mutating calls.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The driver's name (`test`, `qemu`, `remote`).
    pub fn driver_name(&self) -> &str {
        self.backend.driver_name()
    }

    /// `virConnectGetType`.
    pub fn get_type(&self) -> Result<String> {
        self.check_connect(P::ConnectGetType)?;
        self.backend.get_type()
    }

    /// `virConnectGetVersion`: the hypervisor version, libvirt-encoded.
    pub fn get_version(&self) -> Result<u64> {
        self.check_connect(P::ConnectGetVersion)?;
        self.backend.get_version()
    }

    /// `virConnectGetLibVersion`: this library's version, libvirt-encoded.
    pub fn get_lib_version(&self) -> Result<u64> {
        self.check_connect(P::ConnectGetLibVersion)?;
        Ok(crate::lib_version())
    }

    /// `virConnectGetURI`.
    pub fn get_uri(&self) -> Result<String> {
        self.check_connect(P::ConnectGetUri)?;
        self.backend.get_uri()
    }

    /// `virConnectGetHostname`.
    pub fn get_hostname(&self) -> Result<String> {
        self.check_connect(P::ConnectGetHostname)?;
        self.backend.get_hostname()
    }

    /// `virConnectGetCapabilities`.
    pub fn get_capabilities(&self) -> Result<String> {
        self.check_connect(P::ConnectGetCapabilities)?;
        self.backend.get_capabilities()
    }

    /// `virNodeGetInfo`.
    pub fn node_get_info(&self) -> Result<NodeInfo> {
        self.check_connect(P::NodeGetInfo)?;
        self.backend.node_get_info()
    }

    /// `virConnectListAllDomains` with `VIR_CONNECT_LIST_DOMAINS_*` flags.
    pub fn list_all_domains(&self, flags: u32) -> Result<Vec<Domain>> {
        self.check_connect(P::ConnectListAllDomains)?;
        Ok(self
            .backend
            .list_all_domains(flags)?
            .into_iter()
            .filter(|d| self.acl.visible("domain:getattr", dom_obj(d)))
            .map(|d| self.domain(d))
            .collect())
    }

    /// `virDomainLookupByName`.
    pub fn lookup_domain_by_name(&self, name: &str) -> Result<Domain> {
        let d = self.backend.lookup_by_name(name)?;
        self.acl.require(P::DomainLookupByName, dom_obj(&d))?;
        Ok(self.domain(d))
    }

    /// `virDomainLookupByUUID`.
    pub fn lookup_domain_by_uuid(&self, uuid: uuid::Uuid) -> Result<Domain> {
        let d = self.backend.lookup_by_uuid(uuid)?;
        self.acl.require(P::DomainLookupByUuid, dom_obj(&d))?;
        Ok(self.domain(d))
    }

    /// `virDomainLookupByID`.
    pub fn lookup_domain_by_id(&self, id: i32) -> Result<Domain> {
        let d = self.backend.lookup_by_id(id)?;
        self.acl.require(P::DomainLookupById, dom_obj(&d))?;
        Ok(self.domain(d))
    }

    /// `virDomainDefineXMLFlags`.
    pub fn define_xml(&self, xml: &str, flags: u32) -> Result<Domain> {
        self.writable("virDomainDefineXML")?;
        // parsed here only for a policy or a define hook: the driver parses it anyway
        let (name, uuid) = self.acl.identity(xml, &[Hook::Define]);
        let obj = Object::Domain { name: &name, uuid };
        self.acl.require(P::DomainDefineXmlFlags, obj)?;
        match self.acl.hook_before(Hook::Define, obj, Some(xml))? {
            Some(amended) => {
                // the amended document is checked like the caller's: a hook that renamed
                // the domain must not bypass the check
                let (name, uuid) = crate::acl::xml_identity(&amended);
                self.acl.require(
                    P::DomainDefineXmlFlags,
                    Object::Domain { name: &name, uuid },
                )?;
                self.backend.define_xml(&amended, flags)
            }
            None => self.backend.define_xml(xml, flags),
        }
        .map(|d| self.domain(d))
    }

    /// `virDomainCreateXML`: create and start a transient domain.
    pub fn create_xml(&self, xml: &str, flags: u32) -> Result<Domain> {
        self.writable("virDomainCreateXML")?;
        let (name, uuid) = self.acl.identity(xml, &[Hook::Prepare, Hook::Start]);
        let obj = Object::Domain { name: &name, uuid };
        self.acl.require(P::DomainCreateXml, obj)?;
        let amended = self.acl.hook_before(Hook::Prepare, obj, Some(xml))?;
        let xml = amended.as_deref().unwrap_or(xml);
        self.acl.hook_before(Hook::Start, obj, Some(xml))?;
        let d = self.backend.create_xml(xml, flags)?;
        self.acl.hook_after(Hook::Started, dom_obj(&d));
        Ok(self.domain(d))
    }

    /// `virConnectDomainXMLToNative`: the hypervisor's native form of a domain document
    /// (`format` e.g. `qemu-argv`).
    pub fn domain_xml_to_native(&self, format: &str, xml: &str, flags: u32) -> Result<String> {
        self.check_connect(P::ConnectDomainXmlToNative)?;
        self.backend.domain_xml_to_native(format, xml, flags)
    }

    /// `virConnectDomainXMLFromNative`: a domain document from the hypervisor's native
    /// configuration (`format` e.g. `vmware-vmx`).
    pub fn domain_xml_from_native(&self, format: &str, config: &str, flags: u32) -> Result<String> {
        self.check_connect(P::ConnectDomainXmlFromNative)?;
        self.backend.domain_xml_from_native(format, config, flags)
    }

    /// `virDomainRestoreFlags`: start the domain saved in `path` where it stopped
    /// (`dxml`: the definition to restore with).
    pub fn restore(&self, path: &str, dxml: Option<&str>, flags: u32) -> Result<()> {
        self.writable("virDomainRestoreFlags")?;
        self.check_connect(P::DomainRestoreFlags)?;
        self.backend.restore(path, dxml, flags)
    }

    /// `virDomainSaveImageGetXMLDesc`: the domain XML a save image holds
    /// (`SAVE_IMAGE_XML_SECURE` is refused on read-only connections).
    pub fn save_image_xml(&self, path: &str, flags: u32) -> Result<String> {
        if flags & SAVE_IMAGE_XML_SECURE != 0 {
            self.writable("virDomainSaveImageGetXMLDesc with the secure flag")?;
        }
        self.check_connect(P::DomainSaveImageGetXmlDesc)?;
        self.backend.save_image_get_xml_desc(path, flags)
    }

    /// `virDomainSaveImageDefineXML`: replace the domain XML a save image holds.
    pub fn save_image_define_xml(&self, path: &str, dxml: &str, flags: u32) -> Result<()> {
        self.writable("virDomainSaveImageDefineXML")?;
        self.check_connect(P::DomainSaveImageDefineXml)?;
        self.backend.save_image_define_xml(path, dxml, flags)
    }

    /// `virConnectGetAllDomainStats` / `virDomainListGetStats`: the `stats` groups of
    /// `doms`, or of every domain the list bits of `flags` select (they are
    /// `VIR_CONNECT_LIST_DOMAINS_*`'s: ACTIVE 1 ... OTHER 128). A domain that goes away
    /// meanwhile is left out, as libvirt does.
    pub fn get_all_domain_stats(
        &self,
        doms: Option<Vec<Domain>>,
        stats: u32,
        flags: u32,
    ) -> Result<Vec<(Domain, Vec<crate::TypedParam>)>> {
        const LIST_BITS: u32 = 0xff;
        let doms = match doms {
            Some(d) => d,
            None => self.list_all_domains(flags & LIST_BITS)?,
        };
        let mut out = Vec::with_capacity(doms.len());
        for d in doms {
            if !self.acl.visible("domain:read", dom_obj(&d.id)) {
                continue;
            }
            match self
                .backend
                .domain_stats(d.id.uuid, stats, flags & !LIST_BITS)
            {
                Ok(params) => out.push((d, params)),
                Err(e) if e.code() == NO_DOMAIN => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Registers `callback` for this connection's domain events (lifecycle events and device
    /// removals: [`DomainEvent::removed_device`]). The callback
    /// runs on the driver's thread: keep it quick and do not call the connection from it.
    pub fn subscribe_events(
        &self,
        callback: impl Fn(&DomainEvent) + Send + Sync + 'static,
    ) -> Result<u64> {
        self.check_connect(P::ConnectDomainEventRegisterAny)?;
        // events about domains the subject may not `getattr` are not delivered
        let acl = self.acl.clone();
        self.backend
            .subscribe_events(Arc::new(move |e: &DomainEvent| {
                if acl.visible("domain:getattr", dom_obj(&e.domain)) {
                    callback(e)
                }
            }))
    }

    /// Removes a callback registered with [`Connection::subscribe_events`].
    pub fn unsubscribe_events(&self, id: u64) -> Result<()> {
        self.check_connect(P::ConnectDomainEventDeregisterAny)?;
        self.backend.unsubscribe_events(id)
    }

    /// A handle on a domain the caller has already identified (say, from a remote
    /// client's domain reference), made without asking the driver. Operations on a domain
    /// that no longer exists fail with `VIR_ERR_NO_DOMAIN`.
    /// `virDomainMigratePrepare3Params` (destination): start the incoming domain of the
    /// `destination_xml` parameter; the URI the source migrates to (when the driver
    /// chose one) and the cookie for the source. The daemon checks the incoming
    /// definition's permissions (and runs the migrate hook) before this call.
    pub fn migrate_prepare(
        &self,
        params: &[crate::TypedParam],
        cookie: &[u8],
        flags: u32,
    ) -> Result<(Option<String>, Vec<u8>)> {
        self.writable("virDomainMigratePrepare3Params")?;
        self.backend.migrate_prepare(params, cookie, flags)
    }

    /// `virDomainMigrateFinish3Params` (destination): resume the arrived domain (or
    /// clean up when `cancelled`); the domain and the cookie for the source's confirm.
    pub fn migrate_finish(
        &self,
        params: &[crate::TypedParam],
        cookie: &[u8],
        flags: u32,
        cancelled: bool,
    ) -> Result<(Domain, Vec<u8>)> {
        self.writable("virDomainMigrateFinish3Params")?;
        let (id, cookie) = self
            .backend
            .migrate_finish(params, cookie, flags, cancelled)?;
        self.acl
            .require(P::DomainMigrateFinish3Params, dom_obj(&id))?;
        Ok((self.domain(id), cookie))
    }

    pub fn domain_handle(&self, id: DomainId) -> Domain {
        self.domain(id)
    }

    fn domain(&self, id: DomainId) -> Domain {
        Domain {
            conn: self.clone(),
            id,
        }
    }
}

/// The check object of a domain.
fn dom_obj(d: &DomainId) -> Object<'_> {
    Object::Domain {
        name: &d.name,
        uuid: Some(d.uuid),
    }
}

/// A handle on one domain of a connection.
#[derive(Clone, Debug)]
pub struct Domain {
    conn: Connection,
    id: DomainId,
}

impl Domain {
    /// Name.
    pub fn name(&self) -> &str {
        &self.id.name
    }

    /// UUID.
    pub fn uuid(&self) -> uuid::Uuid {
        self.id.uuid
    }

    /// The id the domain had when this handle was made (-1: not running).
    pub fn id(&self) -> i32 {
        self.id.id
    }

    /// Name, UUID and id.
    pub fn identity(&self) -> &DomainId {
        &self.id
    }

    /// The connection this handle belongs to.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn b(&self) -> &dyn Backend {
        &*self.conn.backend
    }

    /// Checks the permissions of `p` on this domain.
    #[inline]
    fn check(&self, p: P) -> Result<()> {
        self.conn.acl.require(p, dom_obj(&self.id))
    }

    /// Start the domain (`virDomainCreateWithFlags`); refreshes this handle's id.
    pub fn create(&mut self, flags: u32) -> Result<()> {
        self.conn.writable("virDomainCreate")?;
        self.check(P::DomainCreateWithFlags)?;
        if self.conn.acl.hooks_at(Hook::Start) {
            let xml = self.b().get_xml_desc(self.id.uuid, 0).ok();
            self.conn
                .acl
                .hook_before(Hook::Start, dom_obj(&self.id), xml.as_deref())?;
        }
        self.id = self.b().create(self.id.uuid, flags)?;
        self.conn.acl.hook_after(Hook::Started, dom_obj(&self.id));
        Ok(())
    }

    /// `virDomainUndefineFlags`.
    pub fn undefine(&self, flags: u32) -> Result<()> {
        self.conn.writable("virDomainUndefine")?;
        self.check(P::DomainUndefineFlags)?;
        self.b().undefine(self.id.uuid, flags)
    }

    /// `virDomainDestroyFlags`.
    pub fn destroy(&self, flags: u32) -> Result<()> {
        self.conn.writable("virDomainDestroy")?;
        self.check(P::DomainDestroyFlags)?;
        self.b().destroy(self.id.uuid, flags)?;
        self.conn.acl.hook_after(Hook::Stopped, dom_obj(&self.id));
        self.conn.acl.hook_after(Hook::Release, dom_obj(&self.id));
        Ok(())
    }

    /// `virDomainShutdownFlags`.
    pub fn shutdown(&self, flags: u32) -> Result<()> {
        self.conn.writable("virDomainShutdown")?;
        self.check(P::DomainShutdownFlags)?;
        self.b().shutdown(self.id.uuid, flags)
    }

    /// `virDomainReboot`.
    pub fn reboot(&self, flags: u32) -> Result<()> {
        self.conn.writable("virDomainReboot")?;
        self.check(P::DomainReboot)?;
        self.b().reboot(self.id.uuid, flags)
    }

    /// `virDomainSuspend`.
    pub fn suspend(&self) -> Result<()> {
        self.conn.writable("virDomainSuspend")?;
        self.check(P::DomainSuspend)?;
        self.b().suspend(self.id.uuid)
    }

    /// `virDomainResume`.
    pub fn resume(&self) -> Result<()> {
        self.conn.writable("virDomainResume")?;
        self.check(P::DomainResume)?;
        self.b().resume(self.id.uuid)
    }

    /// `virDomainGetInfo`.
    pub fn get_info(&self) -> Result<DomainInfo> {
        self.check(P::DomainGetInfo)?;
        self.b().get_info(self.id.uuid)
    }

    /// `virDomainGetState`: state and reason.
    pub fn get_state(&self) -> Result<(DomainState, i32)> {
        self.check(P::DomainGetState)?;
        self.b()
            .get_state(self.id.uuid)
            .map(|(s, r)| (DomainState::from_i32(s), r))
    }

    /// `virDomainOpenConsole`: a session on the console `dev_name` (an alias; `None`: the
    /// first console, else the first serial port) with `VIR_DOMAIN_CONSOLE_FORCE` /
    /// `_SAFE` flags. Served over a daemon connection; a local driver answers no-support
    /// (its console is the pty its live XML names).
    pub fn open_console(
        &self,
        dev_name: Option<&str>,
        flags: u32,
    ) -> Result<crate::remote::RemoteConsole> {
        self.conn.writable("virDomainOpenConsole")?;
        self.check(P::DomainOpenConsole)?;
        self.b().open_console(self.id.uuid, dev_name, flags)
    }

    /// `virDomainGetXMLDesc` with `VIR_DOMAIN_XML_*` flags.
    /// `VIR_DOMAIN_XML_SECURE` (passwords and keys) is refused on read-only connections.
    pub fn get_xml_desc(&self, flags: u32) -> Result<String> {
        if flags & XML_SECURE != 0 {
            self.conn
                .writable("virDomainGetXMLDesc with the secure flag")?;
        }
        self.check(P::DomainGetXmlDesc)?;
        if flags & (XML_SECURE | XML_MIGRATABLE) != 0 {
            self.conn
                .acl
                .require_perm("domain:read_secure", dom_obj(&self.id))?;
        }
        self.b().get_xml_desc(self.id.uuid, flags)
    }

    /// `virDomainIsActive`.
    pub fn is_active(&self) -> Result<bool> {
        self.get_state().map(|(s, _)| s.is_active())
    }

    /// `virDomainIsPersistent`.
    pub fn is_persistent(&self) -> Result<bool> {
        self.check(P::DomainIsPersistent)?;
        self.b().is_persistent(self.id.uuid)
    }

    /// `virDomainGetAutostart`.
    pub fn get_autostart(&self) -> Result<bool> {
        self.check(P::DomainGetAutostart)?;
        self.b().get_autostart(self.id.uuid)
    }

    /// `virDomainSetAutostart`.
    pub fn set_autostart(&self, autostart: bool) -> Result<()> {
        self.conn.writable("virDomainSetAutostart")?;
        self.check(P::DomainSetAutostart)?;
        self.b().set_autostart(self.id.uuid, autostart)
    }

    /// `virDomainGetOSType`.
    pub fn get_os_type(&self) -> Result<String> {
        self.check(P::DomainGetOsType)?;
        self.b().get_os_type(self.id.uuid)
    }

    /// `virDomainGetVcpusFlags`.
    pub fn get_vcpus_flags(&self, flags: u32) -> Result<i32> {
        self.check(P::DomainGetVcpusFlags)?;
        self.b().get_vcpus_flags(self.id.uuid, flags)
    }

    /// `virDomainHasManagedSaveImage`.
    pub fn has_managed_save_image(&self, flags: u32) -> Result<bool> {
        self.check(P::DomainHasManagedSaveImage)?;
        self.b().has_managed_save_image(self.id.uuid, flags)
    }

    /// `virDomainGetMaxMemory`, KiB.
    pub fn get_max_memory(&self) -> Result<u64> {
        self.get_info().map(|i| i.max_mem_kib)
    }

    /// `domain:save` besides the procedure's permissions when `flags` change the
    /// persistent definition (`@acl: domain:save:VIR_DOMAIN_AFFECT_CONFIG`).
    fn config_perm(&self, flags: u32) -> Result<()> {
        if flags & AFFECT_CONFIG != 0 {
            self.conn
                .acl
                .require_perm("domain:save", dom_obj(&self.id))?;
        }
        Ok(())
    }

    /// `virDomainSetMemoryFlags`: KiB, with `AFFECT_LIVE`/`AFFECT_CONFIG`/`MEM_MAXIMUM`.
    pub fn set_memory_flags(&self, kib: u64, flags: u32) -> Result<()> {
        self.conn.writable("virDomainSetMemoryFlags")?;
        self.check(P::DomainSetMemoryFlags)?;
        self.config_perm(flags)?;
        self.b().set_memory_flags(self.id.uuid, kib, flags)
    }

    /// `virDomainSetMemoryStatsPeriod`: the guest memory statistics' collection period
    /// in seconds (0 stops it), with `AFFECT_LIVE`/`AFFECT_CONFIG`.
    pub fn set_memory_stats_period(&self, period: i32, flags: u32) -> Result<()> {
        self.conn.writable("virDomainSetMemoryStatsPeriod")?;
        self.check(P::DomainSetMemoryStatsPeriod)?;
        self.config_perm(flags)?;
        self.b()
            .set_memory_stats_period(self.id.uuid, period, flags)
    }

    /// `virDomainSetVcpusFlags`, with `AFFECT_LIVE`/`AFFECT_CONFIG`/`VCPU_MAXIMUM`.
    pub fn set_vcpus_flags(&self, nvcpus: u32, flags: u32) -> Result<()> {
        self.conn.writable("virDomainSetVcpusFlags")?;
        self.check(P::DomainSetVcpusFlags)?;
        self.config_perm(flags)?;
        self.b().set_vcpus_flags(self.id.uuid, nvcpus, flags)
    }

    /// `virDomainAttachDeviceFlags`: the device `xml` describes.
    pub fn attach_device(&self, xml: &str, flags: u32) -> Result<()> {
        self.conn.writable("virDomainAttachDeviceFlags")?;
        self.check(P::DomainAttachDeviceFlags)?;
        self.config_perm(flags)?;
        self.b().attach_device(self.id.uuid, xml, flags)
    }

    /// `virDomainDetachDeviceFlags`: the device `xml` describes.
    pub fn detach_device(&self, xml: &str, flags: u32) -> Result<()> {
        self.conn.writable("virDomainDetachDeviceFlags")?;
        self.check(P::DomainDetachDeviceFlags)?;
        self.config_perm(flags)?;
        self.b().detach_device(self.id.uuid, xml, flags)
    }

    /// `virDomainSnapshotCreateXML`: a snapshot from a `<domainsnapshot>` document; its
    /// name.
    pub fn snapshot_create_xml(&self, xml: &str, flags: u32) -> Result<String> {
        self.conn.writable("virDomainSnapshotCreateXML")?;
        self.check(P::DomainSnapshotCreateXml)?;
        self.b().snapshot_create_xml(self.id.uuid, xml, flags)
    }

    /// `virDomainListAllSnapshots`: the names the `VIR_DOMAIN_SNAPSHOT_LIST_*` flags select.
    pub fn list_snapshots(&self, flags: u32) -> Result<Vec<String>> {
        self.check(P::DomainListAllSnapshots)?;
        self.b().snapshot_list(self.id.uuid, flags)
    }

    /// `virDomainSnapshotListAllChildren`: the names of a snapshot's children.
    pub fn snapshot_children(&self, name: &str, flags: u32) -> Result<Vec<String>> {
        self.check(P::DomainSnapshotListAllChildren)?;
        self.b().snapshot_list_children(self.id.uuid, name, flags)
    }

    /// `virDomainSnapshotGetXMLDesc`. `SNAPSHOT_XML_SECURE` is refused on read-only
    /// connections.
    pub fn snapshot_xml(&self, name: &str, flags: u32) -> Result<String> {
        if flags & SNAPSHOT_XML_SECURE != 0 {
            self.conn
                .writable("virDomainSnapshotGetXMLDesc with the secure flag")?;
        }
        self.check(P::DomainSnapshotGetXmlDesc)?;
        if flags & SNAPSHOT_XML_SECURE != 0 {
            self.conn
                .acl
                .require_perm("domain:read_secure", dom_obj(&self.id))?;
        }
        self.b().snapshot_get_xml_desc(self.id.uuid, name, flags)
    }

    /// `virDomainSnapshotCurrent`: the current snapshot's name (`VIR_ERR_NO_DOMAIN_SNAPSHOT`
    /// when there is none).
    pub fn snapshot_current(&self, flags: u32) -> Result<String> {
        self.check(P::DomainSnapshotCurrent)?;
        self.b().snapshot_current(self.id.uuid, flags)
    }

    /// `virDomainSnapshotGetParent` (`VIR_ERR_NO_DOMAIN_SNAPSHOT` for a root).
    pub fn snapshot_parent(&self, name: &str, flags: u32) -> Result<String> {
        self.check(P::DomainSnapshotGetParent)?;
        self.b().snapshot_get_parent(self.id.uuid, name, flags)
    }

    /// `virDomainSnapshotLookupByName`: `Ok` when the snapshot exists, else
    /// `VIR_ERR_NO_DOMAIN_SNAPSHOT`.
    pub fn snapshot_lookup(&self, name: &str) -> Result<()> {
        self.check(P::DomainSnapshotLookupByName)?;
        if self
            .b()
            .snapshot_list(self.id.uuid, 0)?
            .iter()
            .any(|n| n == name)
        {
            Ok(())
        } else {
            Err(no_snapshot(name))
        }
    }

    /// `virDomainHasCurrentSnapshot`.
    pub fn has_current_snapshot(&self) -> Result<bool> {
        self.check(P::DomainHasCurrentSnapshot)?;
        match self.b().snapshot_current(self.id.uuid, 0) {
            Ok(_) => Ok(true),
            Err(e) if e.code() == NO_DOMAIN_SNAPSHOT => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `virDomainSnapshotIsCurrent`.
    pub fn snapshot_is_current(&self, name: &str) -> Result<bool> {
        self.check(P::DomainSnapshotIsCurrent)?;
        self.snapshot_lookup(name)?;
        match self.b().snapshot_current(self.id.uuid, 0) {
            Ok(current) => Ok(current == name),
            Err(e) if e.code() == NO_DOMAIN_SNAPSHOT => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `virDomainRevertToSnapshot`.
    pub fn revert_to_snapshot(&self, name: &str, flags: u32) -> Result<()> {
        self.conn.writable("virDomainRevertToSnapshot")?;
        self.check(P::DomainRevertToSnapshot)?;
        self.b().snapshot_revert(self.id.uuid, name, flags)
    }

    /// `virDomainSnapshotDelete`.
    pub fn snapshot_delete(&self, name: &str, flags: u32) -> Result<()> {
        self.conn.writable("virDomainSnapshotDelete")?;
        self.check(P::DomainSnapshotDelete)?;
        self.b().snapshot_delete(self.id.uuid, name, flags)
    }

    /// `virDomainSaveFlags`: the domain's state to the file `path`; the domain stops.
    pub fn save(&self, path: &str, dxml: Option<&str>, flags: u32) -> Result<()> {
        self.conn.writable("virDomainSaveFlags")?;
        self.check(P::DomainSaveFlags)?;
        self.b().save(self.id.uuid, path, dxml, flags)
    }

    /// `virDomainManagedSave`: the domain's state to the driver's image, which the next
    /// start resumes from.
    pub fn managed_save(&self, flags: u32) -> Result<()> {
        self.conn.writable("virDomainManagedSave")?;
        self.check(P::DomainManagedSave)?;
        self.b().managed_save(self.id.uuid, flags)
    }

    /// `virDomainManagedSaveRemove`.
    pub fn managed_save_remove(&self, flags: u32) -> Result<()> {
        self.conn.writable("virDomainManagedSaveRemove")?;
        self.check(P::DomainManagedSaveRemove)?;
        self.b().managed_save_remove(self.id.uuid, flags)
    }

    /// `virDomainBlockStatsFlags`: one disk's counters (`disk`: target or source path).
    pub fn block_stats(&self, disk: &str, flags: u32) -> Result<Vec<crate::TypedParam>> {
        self.check(P::DomainBlockStatsFlags)?;
        self.b().block_stats(self.id.uuid, disk, flags)
    }

    /// `virDomainInterfaceStats`: one interface's counters (`device`: target or MAC).
    pub fn interface_stats(&self, device: &str) -> Result<Vec<crate::TypedParam>> {
        self.check(P::DomainInterfaceStats)?;
        self.b().interface_stats(self.id.uuid, device)
    }

    /// `virDomainMemoryStats`, each statistic named after its tag
    /// ([`crate::stats::MEMORY_STAT_NAMES`]).
    pub fn memory_stats(&self, flags: u32) -> Result<Vec<crate::TypedParam>> {
        self.check(P::DomainMemoryStats)?;
        self.b().memory_stats(self.id.uuid, flags)
    }

    /// `virDomainMigrateBegin3Params` (source): the domain XML for the destination and
    /// the cookie for its prepare step.
    pub fn migrate_begin(
        &self,
        params: &[crate::TypedParam],
        flags: u32,
    ) -> Result<(String, Vec<u8>)> {
        self.conn.writable("virDomainMigrateBegin3Params")?;
        self.check(P::DomainMigrateBegin3Params)?;
        self.b().migrate_begin(self.id.uuid, params, flags)
    }

    /// `virDomainMigratePerform3Params` (source): send the domain to the `migrate_uri`
    /// parameter; the cookie for the destination's finish step.
    pub fn migrate_perform(
        &self,
        params: &[crate::TypedParam],
        cookie: &[u8],
        flags: u32,
    ) -> Result<Vec<u8>> {
        self.conn.writable("virDomainMigratePerform3Params")?;
        self.check(P::DomainMigratePerform3Params)?;
        self.b()
            .migrate_perform(self.id.uuid, params, cookie, flags)
    }

    /// `virDomainMigrateConfirm3Params` (source): stop the migrated domain here, or
    /// resume it when the migration was `cancelled`.
    pub fn migrate_confirm(
        &self,
        params: &[crate::TypedParam],
        cookie: &[u8],
        flags: u32,
        cancelled: bool,
    ) -> Result<()> {
        self.conn.writable("virDomainMigrateConfirm3Params")?;
        self.check(P::DomainMigrateConfirm3Params)?;
        self.b()
            .migrate_confirm(self.id.uuid, params, cookie, flags, cancelled)
    }

    /// `virDomainScreenshot`: the image of display `screen` and its MIME type.
    pub fn screenshot(&self, screen: u32, flags: u32) -> Result<(String, Vec<u8>)> {
        self.conn.writable("virDomainScreenshot")?;
        self.check(P::DomainScreenshot)?;
        self.b().screenshot(self.id.uuid, screen, flags)
    }

    /// `virDomainAbortJob`: cancel the domain's running job (a migration).
    pub fn abort_job(&self, flags: u32) -> Result<()> {
        self.conn.writable("virDomainAbortJob")?;
        self.check(P::DomainAbortJob)?;
        self.b().abort_job(self.id.uuid, flags)
    }

    /// `virDomainGetJobStats`: the job type and its parameters.
    pub fn job_stats(&self, flags: u32) -> Result<(i32, Vec<crate::TypedParam>)> {
        self.check(P::DomainGetJobStats)?;
        self.b().job_stats(self.id.uuid, flags)
    }

    /// `virDomainGetCPUStats`: with `start_cpu` -1 the domain's totals, else one set per
    /// host CPU.
    pub fn cpu_stats(
        &self,
        start_cpu: i32,
        ncpus: u32,
        flags: u32,
    ) -> Result<Vec<Vec<crate::TypedParam>>> {
        self.check(P::DomainGetCpuStats)?;
        self.b().cpu_stats(self.id.uuid, start_cpu, ncpus, flags)
    }
}

//! libvirt's access control vocabulary, shared by every place rvirt checks permissions:
//! which permission(s) each remote procedure needs and where its object comes from, after
//! the `@acl:` annotations of libvirt's `remote_protocol.x`. rvirtd checks client calls with
//! this table (keyed by procedure); the host library's `policy` feature checks the methods of
//! [`Connection`](crate::Connection) and the object handles through the procedure each method
//! implements, so there is one table. Flag-dependent extra permissions (`@acl: perm:FLAG`)
//! are not in the table: callers that see the flags add them.

pub(crate) use rvirt_wire::RemoteProcedure as P;

/// Where the object of a procedure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `@acl: none`: nothing to check.
    Unchecked,
    /// The connection itself.
    Connect,
    /// The `remote_nonnull_*` the arguments start with.
    DomainArg,
    /// The domain of the `remote_nonnull_domain_snapshot` the arguments start with.
    SnapshotArg,
    NetworkArg,
    PortArg,
    PoolArg,
    VolArg,
    SecretArg,
    /// The XML document the arguments start with (define/create).
    DomainXml,
    NetworkXml,
    PoolXml,
    SecretXml,
    /// `{pool, xml, ...}`: a new volume in a pool.
    VolInPoolXml,
    /// `{network, xml, ...}`: a new port on a network.
    PortInNetworkXml,
    /// Incoming migration: the domain of the incoming XML (`dom_xml`, or the
    /// `destination_xml` typed parameter).
    MigrationXml,
    /// Lookups: the object the reply names.
    Returned,
    /// List calls: `perms[0]` on the connection (or the pool / network the arguments
    /// name), then the result filtered by `getattr` of each object.
    List,
}

/// The permissions of one procedure and where its object comes from.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub target: Target,
    pub perms: &'static [&'static str],
}

const fn r(target: Target, perms: &'static [&'static str]) -> Rule {
    Rule { target, perms }
}

/// The permission table: every procedure the daemon serves, with libvirt's `@acl`
/// permissions (flag-dependent extras are added by the caller, who sees the flags).
pub fn rule(p: P) -> Rule {
    use Target::*;
    match p {
        P::AuthList | P::ConnectIsSecure | P::ConnectClose => r(Unchecked, &[]),
        // event messages travel daemon to client only
        P::DomainEventLifecycle
        | P::DomainEventCallbackLifecycle
        | P::DomainEventCallbackDeviceRemoved
        | P::NetworkEventLifecycle
        | P::StoragePoolEventLifecycle
        | P::StoragePoolEventRefresh
        | P::SecretEventLifecycle
        | P::SecretEventValueChanged => r(Unchecked, &[]),
        P::ConnectOpen
        | P::ConnectGetType
        | P::ConnectGetVersion
        | P::ConnectGetLibVersion
        | P::ConnectGetHostname
        | P::ConnectGetUri
        | P::ConnectSupportsFeature
        | P::ConnectRegisterCloseCallback
        | P::ConnectUnregisterCloseCallback => r(Connect, &["connect:getattr"]),
        P::NodeGetInfo
        | P::ConnectGetCapabilities
        | P::NodeGetSecurityModel
        | P::ConnectGetStoragePoolCapabilities
        | P::ConnectDomainEventDeregister
        | P::ConnectDomainEventDeregisterAny
        | P::ConnectDomainEventCallbackDeregisterAny
        | P::ConnectNetworkEventDeregisterAny
        | P::ConnectStoragePoolEventDeregisterAny
        | P::ConnectSecretEventDeregisterAny => r(Connect, &["connect:read"]),
        P::ConnectDomainXmlToNative | P::ConnectDomainXmlFromNative => {
            r(Connect, &["connect:write"])
        }
        P::ConnectFindStoragePoolSources => r(Connect, &["connect:detect_storage_pools"]),
        // event registration; the events themselves are filtered by getattr on delivery
        // (`EventFilter`)
        P::ConnectDomainEventRegister
        | P::ConnectDomainEventRegisterAny
        | P::ConnectDomainEventCallbackRegisterAny => r(Connect, &["connect:search_domains"]),
        P::ConnectNetworkEventRegisterAny => r(Connect, &["connect:search_networks"]),
        P::ConnectStoragePoolEventRegisterAny => r(Connect, &["connect:search_storage_pools"]),
        P::ConnectSecretEventRegisterAny => r(Connect, &["connect:search_secrets"]),

        // domains
        P::ConnectListAllDomains
        | P::ConnectListDomains
        | P::ConnectListDefinedDomains
        | P::ConnectNumOfDomains
        | P::ConnectNumOfDefinedDomains => r(List, &["connect:search_domains"]),
        P::DomainLookupById | P::DomainLookupByName | P::DomainLookupByUuid => {
            r(Returned, &["domain:getattr"])
        }
        P::DomainCreateXml => r(DomainXml, &["domain:write", "domain:start"]),
        P::DomainDefineXml | P::DomainDefineXmlFlags => {
            r(DomainXml, &["domain:write", "domain:save"])
        }
        P::DomainCreate | P::DomainCreateWithFlags => r(DomainArg, &["domain:start"]),
        P::DomainDestroy | P::DomainDestroyFlags => r(DomainArg, &["domain:stop"]),
        P::DomainShutdown | P::DomainShutdownFlags | P::DomainReboot => {
            r(DomainArg, &["domain:init_control"])
        }
        P::DomainSuspend | P::DomainResume => r(DomainArg, &["domain:suspend"]),
        P::DomainUndefine | P::DomainUndefineFlags => r(DomainArg, &["domain:delete"]),
        P::DomainSetAutostart => r(DomainArg, &["domain:write"]),
        P::DomainGetXmlDesc
        | P::DomainGetAutostart
        | P::DomainGetInfo
        | P::DomainGetMaxMemory
        | P::DomainGetMaxVcpus
        | P::DomainGetOsType
        | P::DomainIsActive
        | P::DomainIsPersistent
        | P::DomainHasManagedSaveImage
        | P::DomainGetState
        | P::DomainGetSecurityLabel
        | P::DomainGetVcpusFlags
        | P::DomainInterfaceAddresses => r(DomainArg, &["domain:read"]),
        // `@acl: domain:save` for the config flags is added by the caller
        P::DomainSetMaxMemory
        | P::DomainSetMemory
        | P::DomainSetMemoryFlags
        | P::DomainSetMemoryStatsPeriod
        | P::DomainSetVcpus
        | P::DomainSetVcpusFlags
        | P::DomainAttachDevice
        | P::DomainAttachDeviceFlags
        | P::DomainDetachDevice
        | P::DomainDetachDeviceFlags => r(DomainArg, &["domain:write"]),
        P::DomainSnapshotCreateXml => r(DomainArg, &["domain:snapshot"]),
        P::DomainOpenConsole => r(DomainArg, &["domain:open_device"]),
        P::DomainSnapshotNum
        | P::DomainSnapshotListNames
        | P::DomainSnapshotLookupByName
        | P::DomainHasCurrentSnapshot
        | P::DomainSnapshotCurrent
        | P::DomainListAllSnapshots => r(DomainArg, &["domain:read"]),
        P::DomainSnapshotGetXmlDesc
        | P::DomainSnapshotGetParent
        | P::DomainSnapshotNumChildren
        | P::DomainSnapshotListChildrenNames
        | P::DomainSnapshotIsCurrent
        | P::DomainSnapshotHasMetadata
        | P::DomainSnapshotListAllChildren => r(SnapshotArg, &["domain:read"]),
        P::DomainRevertToSnapshot | P::DomainSnapshotDelete => r(SnapshotArg, &["domain:snapshot"]),
        P::DomainSave | P::DomainSaveFlags | P::DomainManagedSave | P::DomainManagedSaveRemove => {
            r(DomainArg, &["domain:hibernate"])
        }
        // a save image names its domain only inside the file: the connection's write
        // (restore, define) and read permissions stand for the domain's
        P::DomainRestore | P::DomainRestoreFlags | P::DomainSaveImageDefineXml => {
            r(Connect, &["connect:write"])
        }
        P::DomainSaveImageGetXmlDesc => r(Connect, &["connect:read"]),
        P::DomainBlockStats | P::DomainBlockStatsFlags => r(DomainArg, &["domain:block_read"]),
        P::DomainInterfaceStats
        | P::DomainMemoryStats
        | P::DomainGetJobInfo
        | P::DomainGetJobStats
        | P::DomainGetCpuStats => r(DomainArg, &["domain:read"]),
        // `connect:search_domains`, then the records filtered by `domain:read`
        P::ConnectGetAllDomainStats => r(List, &["connect:search_domains"]),
        P::DomainMigrateBegin3Params
        | P::DomainMigratePerform3Params
        | P::DomainMigrateConfirm3Params => r(DomainArg, &["domain:migrate"]),
        // the arrived domain is known once the call returns
        P::DomainMigrateFinish3Params => r(Returned, &["domain:start"]),
        P::DomainAbortJob => r(DomainArg, &["domain:abort"]),
        P::DomainScreenshot => r(DomainArg, &["domain:screenshot"]),
        P::DomainMigratePrepare3 | P::DomainMigratePrepare3Params => r(
            MigrationXml,
            &["domain:migrate", "domain:start", "domain:write"],
        ),

        // networks and ports
        P::ConnectListAllNetworks
        | P::ConnectListNetworks
        | P::ConnectListDefinedNetworks
        | P::ConnectNumOfNetworks
        | P::ConnectNumOfDefinedNetworks => r(List, &["connect:search_networks"]),
        P::NetworkLookupByName | P::NetworkLookupByUuid => r(Returned, &["network:getattr"]),
        P::NetworkCreateXml | P::NetworkCreateXmlFlags => {
            r(NetworkXml, &["network:write", "network:start"])
        }
        P::NetworkDefineXml | P::NetworkDefineXmlFlags => {
            r(NetworkXml, &["network:write", "network:save"])
        }
        P::NetworkCreate => r(NetworkArg, &["network:start"]),
        P::NetworkDestroy => r(NetworkArg, &["network:stop"]),
        P::NetworkUndefine => r(NetworkArg, &["network:delete"]),
        P::NetworkSetAutostart | P::NetworkUpdate => r(NetworkArg, &["network:write"]),
        P::NetworkGetXmlDesc
        | P::NetworkGetAutostart
        | P::NetworkGetBridgeName
        | P::NetworkIsActive
        | P::NetworkIsPersistent
        | P::NetworkGetDhcpLeases => r(NetworkArg, &["network:read"]),
        P::NetworkListAllPorts => r(List, &["network:read"]),
        P::NetworkPortLookupByUuid => r(Returned, &["network_port:getattr"]),
        P::NetworkPortCreateXml => r(PortInNetworkXml, &["network_port:create"]),
        P::NetworkPortGetXmlDesc | P::NetworkPortGetParameters => {
            r(PortArg, &["network_port:read"])
        }
        P::NetworkPortSetParameters => r(PortArg, &["network_port:write"]),
        P::NetworkPortDelete => r(PortArg, &["network_port:delete"]),

        // storage pools and volumes
        P::ConnectListAllStoragePools
        | P::ConnectListStoragePools
        | P::ConnectListDefinedStoragePools
        | P::ConnectNumOfStoragePools
        | P::ConnectNumOfDefinedStoragePools => r(List, &["connect:search_storage_pools"]),
        P::StoragePoolLookupByName
        | P::StoragePoolLookupByUuid
        | P::StoragePoolLookupByVolume
        | P::StoragePoolLookupByTargetPath => r(Returned, &["storage_pool:getattr"]),
        P::StoragePoolCreateXml => r(PoolXml, &["storage_pool:write", "storage_pool:start"]),
        P::StoragePoolDefineXml => r(PoolXml, &["storage_pool:write", "storage_pool:save"]),
        P::StoragePoolCreate => r(PoolArg, &["storage_pool:start"]),
        P::StoragePoolBuild | P::StoragePoolDelete => r(PoolArg, &["storage_pool:format"]),
        P::StoragePoolDestroy => r(PoolArg, &["storage_pool:stop"]),
        P::StoragePoolUndefine => r(PoolArg, &["storage_pool:delete"]),
        P::StoragePoolRefresh => r(PoolArg, &["storage_pool:refresh"]),
        P::StoragePoolSetAutostart => r(PoolArg, &["storage_pool:write"]),
        P::StoragePoolGetInfo
        | P::StoragePoolGetXmlDesc
        | P::StoragePoolGetAutostart
        | P::StoragePoolIsActive
        | P::StoragePoolIsPersistent => r(PoolArg, &["storage_pool:read"]),
        P::StoragePoolNumOfVolumes | P::StoragePoolListVolumes | P::StoragePoolListAllVolumes => {
            r(List, &["storage_pool:search_storage_vols"])
        }
        P::StorageVolCreateXml | P::StorageVolCreateXmlFrom => {
            r(VolInPoolXml, &["storage_vol:create"])
        }
        P::StorageVolLookupByName | P::StorageVolLookupByKey | P::StorageVolLookupByPath => {
            r(Returned, &["storage_vol:getattr"])
        }
        P::StorageVolDelete => r(VolArg, &["storage_vol:delete"]),
        P::StorageVolGetInfo
        | P::StorageVolGetInfoFlags
        | P::StorageVolGetXmlDesc
        | P::StorageVolGetPath => r(VolArg, &["storage_vol:read"]),
        P::StorageVolWipe | P::StorageVolWipePattern => r(VolArg, &["storage_vol:format"]),
        P::StorageVolResize => r(VolArg, &["storage_vol:resize"]),
        P::StorageVolUpload => r(VolArg, &["storage_vol:data_write"]),
        P::StorageVolDownload => r(VolArg, &["storage_vol:data_read"]),

        // secrets
        P::ConnectListAllSecrets | P::ConnectListSecrets | P::ConnectNumOfSecrets => {
            r(List, &["connect:search_secrets"])
        }
        P::SecretLookupByUuid | P::SecretLookupByUsage => r(Returned, &["secret:getattr"]),
        P::SecretDefineXml => r(SecretXml, &["secret:write", "secret:save"]),
        P::SecretGetXmlDesc => r(SecretArg, &["secret:read"]),
        P::SecretSetValue => r(SecretArg, &["secret:write"]),
        P::SecretGetValue => r(SecretArg, &["secret:read_secure"]),
        P::SecretUndefine => r(SecretArg, &["secret:delete"]),
    }
}

/// An object a permission is checked on, borrowed from the handle or arguments of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object<'a> {
    Connect,
    Domain {
        name: &'a str,
        uuid: Option<uuid::Uuid>,
    },
    Network {
        name: &'a str,
        uuid: Option<uuid::Uuid>,
    },
    /// A network port: its network's name and its own UUID.
    Port {
        network: &'a str,
        uuid: Option<uuid::Uuid>,
    },
    Pool {
        name: &'a str,
        uuid: Option<uuid::Uuid>,
    },
    Vol {
        pool: &'a str,
        name: &'a str,
    },
    Secret {
        uuid: Option<uuid::Uuid>,
        usage: &'a str,
    },
}

impl Object<'_> {
    /// libvirt's object kind (`domain`, `storage_pool`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Connect => "connect",
            Object::Domain { .. } => "domain",
            Object::Network { .. } => "network",
            Object::Port { .. } => "network_port",
            Object::Pool { .. } => "storage_pool",
            Object::Vol { .. } => "storage_vol",
            Object::Secret { .. } => "secret",
        }
    }

    /// The object's name (a port: its network's; a secret: its usage), if it has one.
    pub fn name(&self) -> Option<&str> {
        match *self {
            Object::Connect => None,
            Object::Domain { name, .. }
            | Object::Network { name, .. }
            | Object::Pool { name, .. }
            | Object::Vol { name, .. } => Some(name),
            Object::Port { network, .. } => Some(network),
            Object::Secret { usage, .. } => (!usage.is_empty()).then_some(usage),
        }
    }

    /// The object's UUID, if it has one.
    pub fn uuid(&self) -> Option<uuid::Uuid> {
        match *self {
            Object::Domain { uuid, .. }
            | Object::Network { uuid, .. }
            | Object::Port { uuid, .. }
            | Object::Pool { uuid, .. }
            | Object::Secret { uuid, .. } => uuid,
            Object::Connect | Object::Vol { .. } => None,
        }
    }

    /// ` on domain 'x'` (empty for the connection), for messages.
    pub fn describe_on(&self) -> String {
        let kind = self.kind().replace('_', " ");
        match (self, self.name(), self.uuid()) {
            (Object::Connect, _, _) => String::new(),
            (_, Some(n), _) => format!(" on {kind} '{n}'"),
            (_, None, Some(u)) => format!(" on {kind} {u}"),
            (_, None, None) => format!(" on {kind}"),
        }
    }
}

/// The lifecycle points the host library runs hooks at (a subset of the daemon's:
/// define, prepare, start, started, stopped, release of domains).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    Define,
    Prepare,
    Start,
    Started,
    Stopped,
    Release,
}

/// The access checks of one connection: nothing unless the embedder attached a policy
/// engine (cargo feature `policy`, `Connection::with_policy`).
/// Without the feature this is empty and every check compiles to `Ok(())`.
#[derive(Clone, Default)]
pub(crate) struct Checker {
    #[cfg(feature = "policy")]
    pub(crate) guard: Option<std::sync::Arc<crate::policy::Guard>>,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").finish_non_exhaustive()
    }
}

#[cfg(not(feature = "policy"))]
impl Checker {
    #[inline(always)]
    pub(crate) fn require(&self, _p: P, _obj: Object<'_>) -> crate::Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn require_perm(&self, _perm: &'static str, _obj: Object<'_>) -> crate::Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn visible(&self, _perm: &'static str, _obj: Object<'_>) -> bool {
        true
    }

    #[inline(always)]
    pub(crate) fn identity(&self, _xml: &str, _hooks: &[Hook]) -> (String, Option<uuid::Uuid>) {
        (String::new(), None)
    }

    #[inline(always)]
    pub(crate) fn hooks_at(&self, _hook: Hook) -> bool {
        false
    }

    #[inline(always)]
    pub(crate) fn hook_before(
        &self,
        _hook: Hook,
        _obj: Object<'_>,
        _xml: Option<&str>,
    ) -> crate::Result<Option<String>> {
        Ok(None)
    }

    #[inline(always)]
    pub(crate) fn hook_after(&self, _hook: Hook, _obj: Object<'_>) {}
}

/// `<name>` and `<uuid>` of a definition (absent ones empty / `None`): the object a define
/// or create call is checked on. Only parsed when a policy engine is attached.
#[cfg(feature = "policy")]
pub(crate) fn xml_identity(xml: &str) -> (String, Option<uuid::Uuid>) {
    let Ok(root) = rvirt_xml::Element::parse(xml) else {
        return (String::new(), None);
    };
    let name = root
        .child("name")
        .map(|e| e.text().trim().to_owned())
        .unwrap_or_default();
    let uuid = root
        .child("uuid")
        .and_then(|e| uuid::Uuid::parse_str(e.text().trim()).ok());
    (name, uuid)
}

/// Without the `policy` feature nothing is checked: no parsing either.
#[cfg(not(feature = "policy"))]
#[inline(always)]
pub(crate) fn xml_identity(_xml: &str) -> (String, Option<uuid::Uuid>) {
    (String::new(), None)
}

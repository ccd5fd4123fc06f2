//! Access control: who the client is ([`Peer`], from SO_PEERCRED at accept), which libvirt
//! permission(s) each remote procedure needs on which object ([`rule`], after the `@acl:`
//! annotations of libvirt's `remote_protocol.x`), and the check itself ([`Guard`], cargo
//! feature `policy`): one check before dispatch, object lookups checked on the object they
//! return, and list calls filtered to the objects the client may `getattr` (libvirt's
//! `@aclfilter`). The decisions come from the WASM policies of `rvirt-policy`.

use std::sync::OnceLock;

/// The client at the other end of a unix socket (SO_PEERCRED), captured at accept.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "policy"), allow(dead_code))]
pub struct Peer {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub pid: Option<i32>,
    /// `/proc/PID/comm`, read on first use.
    name: OnceLock<String>,
}

impl Peer {
    /// The credentials of `stream`'s peer; unknown fields stay `None`.
    pub fn of(stream: &tokio::net::UnixStream) -> Peer {
        match stream.peer_cred() {
            Ok(c) => Peer {
                uid: Some(c.uid()),
                gid: Some(c.gid()),
                pid: c.pid(),
                name: OnceLock::new(),
            },
            Err(e) => {
                tracing::warn!("cannot read the peer credentials of a client: {e}");
                Peer::default()
            }
        }
    }

    /// The client's process name (empty when unknown).
    #[cfg_attr(not(feature = "policy"), allow(dead_code))]
    pub fn name(&self) -> &str {
        self.name.get_or_init(|| {
            self.pid
                .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
                .map(|s| s.trim_end().to_owned())
                .unwrap_or_default()
        })
    }
}

/// What an event is about, for filtering event delivery by `getattr` (as libvirt filters
/// events by the ACL): the permission and the object's name and UUID.
#[cfg_attr(not(feature = "policy"), allow(dead_code))]
pub trait EventObject {
    fn acl(&self) -> (&'static str, String, Option<[u8; 16]>);
}

impl EventObject for rvirt_host::DomainEvent {
    fn acl(&self) -> (&'static str, String, Option<[u8; 16]>) {
        let d = &self.domain;
        ("domain:getattr", d.name.clone(), Some(*d.uuid.as_bytes()))
    }
}

impl EventObject for rvirt_host::PoolEvent {
    fn acl(&self) -> (&'static str, String, Option<[u8; 16]>) {
        (
            "storage_pool:getattr",
            self.name.clone(),
            Some(*self.uuid.as_bytes()),
        )
    }
}

impl EventObject for rvirt_host::networks::NetworkEvent {
    fn acl(&self) -> (&'static str, String, Option<[u8; 16]>) {
        (
            "network:getattr",
            self.name.clone(),
            Some(*self.uuid.as_bytes()),
        )
    }
}

impl EventObject for rvirt_host::SecretEventInfo {
    fn acl(&self) -> (&'static str, String, Option<[u8; 16]>) {
        let s = &self.secret;
        (
            "secret:getattr",
            s.usage_id.clone(),
            Some(*s.uuid.as_bytes()),
        )
    }
}

#[cfg(feature = "policy")]
pub use guard::*;

#[cfg(feature = "policy")]
mod guard {
    use super::Peer;
    use crate::client::Client;
    use crate::dispatch::Failure;
    use rvirt_policy::{Decision, HookOutcome, HookPoint, PolicyEngine, Request, keys};
    use rvirt_wire::protocol::{
        NonnullDomain, NonnullNetwork, NonnullNetworkPort, NonnullSecret, NonnullStoragePool,
        NonnullStorageVol, RemoteError, error_code, error_domain,
    };
    use rvirt_wire::remote::*;
    use rvirt_wire::{RemoteProcedure as P, xdr};
    use serde::Deserialize;
    use std::sync::Arc;

    /// `VIR_ERR_ACCESS_DENIED`.
    pub const ACCESS_DENIED: i32 = 88;
    /// `VIR_FROM_ACCESS`: the access manager.
    pub const FROM_ACCESS: i32 = 55;
    /// `VIR_ERR_HOOK_SCRIPT_FAILED`: what libvirt answers when a hook script refuses.
    pub const HOOK_SCRIPT_FAILED: i32 = 70;
    /// `VIR_FROM_HOOK`.
    pub const FROM_HOOK: i32 = 34;

    type CallResult = Result<Vec<u8>, Failure>;

    /// An object a permission is checked on.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Obj {
        Connect,
        Domain {
            name: String,
            uuid: Option<[u8; 16]>,
        },
        Network {
            name: String,
            uuid: Option<[u8; 16]>,
        },
        /// A network port: its network's name and its own UUID.
        Port {
            network: String,
            uuid: Option<[u8; 16]>,
        },
        Pool {
            name: String,
            uuid: Option<[u8; 16]>,
        },
        Vol {
            pool: String,
            name: String,
        },
        Secret {
            uuid: Option<[u8; 16]>,
            usage: String,
        },
    }

    impl Obj {
        fn kind(&self) -> &'static str {
            match self {
                Obj::Connect => "connect",
                Obj::Domain { .. } => "domain",
                Obj::Network { .. } => "network",
                Obj::Port { .. } => "network_port",
                Obj::Pool { .. } => "storage_pool",
                Obj::Vol { .. } => "storage_vol",
                Obj::Secret { .. } => "secret",
            }
        }

        fn name(&self) -> Option<&str> {
            match self {
                Obj::Connect => None,
                Obj::Domain { name, .. } | Obj::Network { name, .. } | Obj::Pool { name, .. } => {
                    Some(name)
                }
                Obj::Port { network, .. } => Some(network),
                Obj::Vol { name, .. } => Some(name),
                Obj::Secret { usage, .. } => (!usage.is_empty()).then_some(usage.as_str()),
            }
        }

        fn uuid(&self) -> Option<[u8; 16]> {
            match self {
                Obj::Domain { uuid, .. }
                | Obj::Network { uuid, .. }
                | Obj::Port { uuid, .. }
                | Obj::Pool { uuid, .. }
                | Obj::Secret { uuid, .. } => *uuid,
                _ => None,
            }
        }

        fn domain(d: &NonnullDomain) -> Obj {
            Obj::Domain {
                name: d.name.clone(),
                uuid: Some(d.uuid),
            }
        }

        fn network(n: &NonnullNetwork) -> Obj {
            Obj::Network {
                name: n.name.clone(),
                uuid: Some(n.uuid),
            }
        }

        fn port(p: &NonnullNetworkPort) -> Obj {
            Obj::Port {
                network: p.net.name.clone(),
                uuid: Some(p.uuid),
            }
        }

        fn pool(p: &NonnullStoragePool) -> Obj {
            Obj::Pool {
                name: p.name.clone(),
                uuid: Some(p.uuid),
            }
        }

        fn vol(v: &NonnullStorageVol) -> Obj {
            Obj::Vol {
                pool: v.pool.clone(),
                name: v.name.clone(),
            }
        }

        fn secret(s: &NonnullSecret) -> Obj {
            Obj::Secret {
                uuid: Some(s.uuid),
                usage: s.usage_id.clone(),
            }
        }

        /// `name 'x'` / `uuid` text for messages.
        fn describe(&self) -> String {
            match (self.name(), self.uuid()) {
                (Some(n), _) => format!("{} '{n}'", self.kind().replace('_', " ")),
                (None, Some(u)) => format!(
                    "{} {}",
                    self.kind().replace('_', " "),
                    uuid::Uuid::from_bytes(u)
                ),
                (None, None) => self.kind().replace('_', " "),
            }
        }
    }

    /// Where the object of a procedure comes from.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Target {
        /// `@acl: none`: nothing to check.
        Unchecked,
        /// The connection itself.
        Connect,
        /// The `remote_nonnull_*` the arguments start with.
        DomainArg,
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
    /// permissions (flag-dependent extras are added by [`extra_perms`]).
    pub fn rule(p: P) -> Rule {
        use Target::*;
        match p {
            P::AuthList | P::ConnectIsSecure | P::ConnectClose => r(Unchecked, &[]),
            // event messages travel daemon to client only
            P::DomainEventLifecycle
            | P::DomainEventCallbackLifecycle
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
            P::StoragePoolNumOfVolumes
            | P::StoragePoolListVolumes
            | P::StoragePoolListAllVolumes => r(List, &["storage_pool:search_storage_vols"]),
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

    /// Permissions some flags add (`@acl: perm:FLAG` in libvirt's protocol file).
    fn extra_perms(p: P, payload: &[u8]) -> Option<&'static str> {
        /// `VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_MIGRATABLE`.
        const XML_SECURE_OR_MIGRATABLE: u32 = 1 | 8;
        /// `VIR_DOMAIN_REBOOT_GUEST_AGENT`, `VIR_DOMAIN_SHUTDOWN_GUEST_AGENT`.
        const GUEST_AGENT: u32 = 2;
        /// `VIR_DOMAIN_VCPU_GUEST`.
        const VCPU_GUEST: u32 = 8;
        /// `VIR_NETWORK_UPDATE_AFFECT_CONFIG`.
        const NET_AFFECT_CONFIG: u32 = 2;
        let flags = || {
            xdr::from_bytes::<DomainFlagsArgs>(payload)
                .ok()
                .map(|a| a.flags)
        };
        match p {
            P::DomainGetXmlDesc => flags()
                .filter(|f| f & XML_SECURE_OR_MIGRATABLE != 0)
                .map(|_| "domain:read_secure"),
            P::DomainReboot | P::DomainShutdownFlags => flags()
                .filter(|f| f & GUEST_AGENT != 0)
                .map(|_| "domain:write"),
            P::DomainGetVcpusFlags => flags()
                .filter(|f| f & VCPU_GUEST != 0)
                .map(|_| "domain:write"),
            // the guest agent as the source of addresses
            P::DomainInterfaceAddresses => xdr::from_bytes::<DomainInterfaceAddressesArgs>(payload)
                .ok()
                .filter(|a| a.source == 1)
                .map(|_| "domain:write"),
            P::NetworkUpdate => xdr::from_bytes::<NetworkUpdateArgs>(payload)
                .ok()
                .filter(|a| a.flags & NET_AFFECT_CONFIG != 0)
                .map(|_| "network:save"),
            _ => None,
        }
    }

    fn prefix<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Option<T> {
        xdr::from_bytes_prefix::<T>(payload).ok().map(|(v, _)| v)
    }

    /// `<name>` and `<uuid>` of a definition (absent ones empty / `None`).
    fn xml_identity(xml: &str) -> (String, Option<[u8; 16]>) {
        let Ok(root) = rvirt_xml::Element::parse(xml) else {
            return (String::new(), None);
        };
        let name = root
            .child("name")
            .map(|e| e.text().trim().to_owned())
            .unwrap_or_default();
        let uuid = root
            .child("uuid")
            .and_then(|e| uuid::Uuid::parse_str(e.text().trim()).ok())
            .map(|u| *u.as_bytes());
        (name, uuid)
    }

    /// The object of a procedure's arguments; `None` when they do not decode (the call
    /// then fails on its own decoding).
    fn object_of(target: Target, payload: &[u8]) -> Option<Obj> {
        #[derive(Deserialize)]
        struct InPool {
            pool: NonnullStoragePool,
            xml: String,
        }
        #[derive(Deserialize)]
        struct InNetwork {
            network: NonnullNetwork,
            xml: String,
        }
        Some(match target {
            Target::Connect => Obj::Connect,
            Target::DomainArg => Obj::domain(&prefix(payload)?),
            Target::NetworkArg => Obj::network(&prefix(payload)?),
            Target::PortArg => Obj::port(&prefix(payload)?),
            Target::PoolArg => Obj::pool(&prefix(payload)?),
            Target::VolArg => Obj::vol(&prefix(payload)?),
            Target::SecretArg => Obj::secret(&prefix(payload)?),
            Target::DomainXml => {
                let (name, uuid) = xml_identity(&prefix::<String>(payload)?);
                Obj::Domain { name, uuid }
            }
            Target::NetworkXml => {
                let (name, uuid) = xml_identity(&prefix::<String>(payload)?);
                Obj::Network { name, uuid }
            }
            Target::PoolXml => {
                let (name, uuid) = xml_identity(&prefix::<String>(payload)?);
                Obj::Pool { name, uuid }
            }
            Target::SecretXml => {
                let xml = prefix::<String>(payload)?;
                let (_, uuid) = xml_identity(&xml);
                let usage = rvirt_xml::Element::parse(&xml)
                    .ok()
                    .and_then(|root| {
                        let u = root.child("usage")?;
                        ["volume", "name", "target"]
                            .iter()
                            .find_map(|c| u.child(c).map(|e| e.text().trim().to_owned()))
                    })
                    .unwrap_or_default();
                Obj::Secret { uuid, usage }
            }
            Target::VolInPoolXml => {
                let a: InPool = prefix(payload)?;
                Obj::Vol {
                    pool: a.pool.name,
                    name: xml_identity(&a.xml).0,
                }
            }
            Target::PortInNetworkXml => {
                let a: InNetwork = prefix(payload)?;
                Obj::Port {
                    network: a.network.name,
                    uuid: xml_identity(&a.xml).1,
                }
            }
            Target::Unchecked | Target::Returned | Target::List => return None,
        })
    }

    /// The object a lookup's reply names.
    fn returned_object(p: P, ret: &[u8]) -> Option<Obj> {
        Some(match rule(p).perms.first()?.split(':').next()? {
            "domain" => Obj::domain(&prefix(ret)?),
            "network" => Obj::network(&prefix(ret)?),
            "network_port" => Obj::port(&prefix(ret)?),
            "storage_pool" => Obj::pool(&prefix(ret)?),
            "storage_vol" => Obj::vol(&prefix(ret)?),
            "secret" => Obj::secret(&prefix(ret)?),
            _ => return None,
        })
    }

    fn rpc(message: String) -> Failure {
        Box::new(RemoteError::new(
            error_code::RPC,
            error_domain::RPC,
            message,
        ))
    }

    fn encode<T: serde::Serialize>(v: &T) -> CallResult {
        xdr::to_vec(v).map_err(|e| rpc(format!("cannot encode a filtered reply: {e}")))
    }

    fn decode<T: for<'a> Deserialize<'a>>(bytes: &[u8]) -> Result<T, Failure> {
        xdr::from_bytes(bytes).map_err(|e| rpc(format!("cannot decode a reply to filter: {e}")))
    }

    fn list_max(n: i32) -> Result<usize, Failure> {
        usize::try_from(n).map_err(|_| rpc(format!("list length {n} out of range")))
    }

    /// The policy engine and the identity of one client, for the duration of one call.
    pub struct Guard<'a> {
        engine: &'a PolicyEngine,
        client: &'a Client,
        procedure: P,
    }

    impl<'a> Guard<'a> {
        /// `None` when no access policy is loaded: the call then runs unchecked (the only
        /// cost is this test).
        pub fn new(client: &'a Client, procedure: P) -> Option<Guard<'a>> {
            let engine = client.shared.policy.as_deref()?;
            (engine.access_active() || engine.hooks_active()).then_some(Guard {
                engine,
                client,
                procedure,
            })
        }

        fn request(&self, perm: &'static str, obj: &Obj) -> Request {
            let peer: &Peer = &self.client.peer;
            let mut req = Request::new().with_operation(perm);
            if let Some(uid) = peer.uid {
                req.set(keys::SUBJECT_UID, uid);
            }
            if let Some(gid) = peer.gid {
                req.set(keys::SUBJECT_GID, gid);
            }
            if let Some(pid) = peer.pid {
                req.set(keys::SUBJECT_PID, pid);
            }
            req.set(keys::SUBJECT_NAME, peer.name());
            req.set(
                keys::SUBJECT_READONLY,
                i32::from(self.client.is_read_only()),
            );
            req.set(keys::PROCEDURE, self.procedure.name());
            if let Some(conn) = self.client.connection() {
                req.set(keys::OBJECT_DRIVER, conn.driver_name());
            }
            if let Some(name) = obj.name() {
                req.set(keys::OBJECT_NAME, name);
            }
            if let Some(u) = obj.uuid() {
                req.set(keys::OBJECT_UUID, uuid::Uuid::from_bytes(u).to_string());
            }
            match obj {
                Obj::Vol { pool, .. } => req.set("object.pool", pool.as_str()),
                Obj::Port { network, .. } => req.set("object.network", network.as_str()),
                _ => {}
            }
            req
        }

        /// Whether the client has `perm` on `obj`.
        fn allowed(&self, perm: &'static str, obj: &Obj) -> bool {
            !self.engine.access_active() || self.engine.check(self.request(perm, obj)).is_allow()
        }

        /// `Err(VIR_ERR_ACCESS_DENIED)` unless the client has `perm` on `obj`.
        pub fn require(&self, perm: &'static str, obj: &Obj) -> Result<(), Failure> {
            if !self.engine.access_active() {
                return Ok(());
            }
            match self.engine.check(self.request(perm, obj)) {
                Decision::Allow => Ok(()),
                Decision::Deny(d) => {
                    let on = match obj {
                        Obj::Connect => String::new(),
                        o => format!(" on {}", o.describe()),
                    };
                    tracing::info!(
                        client = self.client.id,
                        uid = ?self.client.peer.uid,
                        procedure = self.procedure.name(),
                        "denied {perm}{on} by policy '{}'",
                        d.module
                    );
                    Err(Box::new(RemoteError::new(
                        ACCESS_DENIED,
                        FROM_ACCESS,
                        format!("access denied: '{perm}'{on} ({})", d.describe()),
                    )))
                }
            }
        }

        /// Checks the call, runs it through `call` (the daemon's dispatch of one
        /// procedure), and filters what it returns.
        pub fn run(&self, payload: &[u8], call: &dyn Fn(P, &[u8]) -> CallResult) -> CallResult {
            let p = self.procedure;
            let rule = rule(p);
            let checking = self.engine.access_active();
            match rule.target {
                Target::Unchecked => call(p, payload),
                // hooks only: lookups and lists have no hook point
                Target::Returned | Target::List if !checking => call(p, payload),
                Target::Returned => {
                    let ret = call(p, payload)?;
                    if let Some(obj) = returned_object(p, &ret) {
                        for perm in rule.perms {
                            self.require(perm, &obj)?;
                        }
                    }
                    Ok(ret)
                }
                Target::List => self.list(rule.perms[0], payload, call),
                target => {
                    if p == P::ConnectOpen {
                        // no connection (so no driver) before the call: check after it,
                        // and close what it opened when denied
                        let ret = call(p, payload)?;
                        if let Err(e) = self.require(rule.perms[0], &Obj::Connect) {
                            self.client.close();
                            return Err(e);
                        }
                        return Ok(ret);
                    }
                    let obj = object_of(target, payload);
                    if let Some(obj) = &obj {
                        for perm in rule.perms.iter().copied().chain(extra_perms(p, payload)) {
                            self.require(perm, obj)?;
                        }
                    }
                    match obj {
                        Some(obj) if self.engine.hooks_active() => self.hooked(&obj, payload, call),
                        _ => call(p, payload),
                    }
                }
            }
        }

        /// Runs the hooks around the lifecycle procedures (define, create/start,
        /// destroy; network start/stop and port creation; pool start/stop): "before" points
        /// may veto (and, at define and prepare, amend the XML the call goes on with), "after"
        /// points run once the call succeeded and can only be logged.
        fn hooked(
            &self,
            obj: &Obj,
            payload: &[u8],
            call: &dyn Fn(P, &[u8]) -> CallResult,
        ) -> CallResult {
            use HookPoint as H;
            let p = self.procedure;
            let before = |point: H, xml: Option<&str>| -> Result<Option<String>, Failure> {
                match hook(self.client, point, obj, xml) {
                    HookOutcome::Continue { xml } => Ok(xml),
                    HookOutcome::Veto(d) => {
                        tracing::info!(
                            client = self.client.id,
                            procedure = p.name(),
                            "{point} vetoed by hook '{}'",
                            d.module
                        );
                        Err(Box::new(RemoteError::new(
                            HOOK_SCRIPT_FAILED,
                            FROM_HOOK,
                            format!(
                                "Hook script execution failed: {point} of {} vetoed by {}",
                                obj.describe(),
                                d.describe()
                            ),
                        )))
                    }
                }
            };
            let after = |point: H| {
                if let HookOutcome::Veto(d) = hook(self.client, point, obj, None) {
                    tracing::warn!(
                        procedure = p.name(),
                        "hook '{}' vetoed {point}, which has already happened",
                        d.module
                    );
                }
            };
            // the domain's current XML, for hooks of a defined domain
            let domain_xml = || -> Option<String> {
                let (dom, _): (NonnullDomain, usize) = xdr::from_bytes_prefix(payload).ok()?;
                let args = xdr::to_vec(&DomainFlagsArgs { dom, flags: 0 }).ok()?;
                let ret: DomainGetXmlDescRet =
                    decode(&call(P::DomainGetXmlDesc, &args).ok()?).ok()?;
                Some(ret.xml)
            };
            match p {
                P::DomainDefineXml | P::DomainDefineXmlFlags => {
                    let xml: String = prefix(payload).unwrap_or_default();
                    match before(H::DomainDefine, Some(&xml))? {
                        // the amended XML goes through define like any client XML
                        Some(amended) => {
                            let rest = xdr::from_bytes_prefix::<String>(payload)
                                .map(|(_, used)| &payload[used..])
                                .unwrap_or(&[]);
                            let mut args = xdr::to_vec(&amended).map_err(|e| rpc(e.to_string()))?;
                            args.extend_from_slice(rest);
                            // a hook that renamed the domain must not bypass the check
                            if let Some(new) = object_of(Target::DomainXml, &args)
                                && &new != obj
                            {
                                for perm in rule(p).perms {
                                    self.require(perm, &new)?;
                                }
                            }
                            call(p, &args)
                        }
                        None => call(p, payload),
                    }
                }
                P::DomainCreateXml => {
                    let a: DomainCreateXmlArgs = decode(payload)?;
                    let xml = before(H::DomainPrepare, Some(&a.xml_desc))?.unwrap_or(a.xml_desc);
                    before(H::DomainStart, Some(&xml))?;
                    let args = xdr::to_vec(&DomainCreateXmlArgs {
                        xml_desc: xml,
                        flags: a.flags,
                    })
                    .map_err(|e| rpc(e.to_string()))?;
                    let ret = call(p, &args)?;
                    after(H::DomainStarted);
                    Ok(ret)
                }
                P::DomainCreate | P::DomainCreateWithFlags => {
                    let xml = if self.engine.hooks_at(H::DomainStart) {
                        domain_xml()
                    } else {
                        None
                    };
                    before(H::DomainStart, xml.as_deref())?;
                    let ret = call(p, payload)?;
                    after(H::DomainStarted);
                    Ok(ret)
                }
                P::DomainDestroy | P::DomainDestroyFlags => {
                    let ret = call(p, payload)?;
                    after(H::DomainStopped);
                    after(H::DomainRelease);
                    Ok(ret)
                }
                P::NetworkCreate | P::NetworkCreateXml | P::NetworkCreateXmlFlags => {
                    let xml = (p != P::NetworkCreate)
                        .then(|| prefix::<String>(payload))
                        .flatten();
                    before(H::NetworkStart, xml.as_deref())?;
                    call(p, payload)
                }
                P::NetworkDestroy => {
                    let ret = call(p, payload)?;
                    after(H::NetworkStopped);
                    Ok(ret)
                }
                P::NetworkPortCreateXml => {
                    let ret = call(p, payload)?;
                    after(H::NetworkPortCreated);
                    Ok(ret)
                }
                P::StoragePoolCreate | P::StoragePoolCreateXml => {
                    let xml = (p == P::StoragePoolCreateXml)
                        .then(|| prefix::<String>(payload))
                        .flatten();
                    before(H::PoolStart, xml.as_deref())?;
                    call(p, payload)
                }
                P::StoragePoolDestroy => {
                    let ret = call(p, payload)?;
                    after(H::PoolStopped);
                    Ok(ret)
                }
                _ => call(p, payload),
            }
        }

        /// List calls: the search permission, then the objects the client may `getattr`.
        /// Old-style calls (names, ids, counts) are answered from the matching
        /// `*ListAll*` call, filtered.
        fn list(
            &self,
            search: &'static str,
            payload: &[u8],
            call: &dyn Fn(P, &[u8]) -> CallResult,
        ) -> CallResult {
            const ACTIVE_DOMAINS: u32 = 1;
            const INACTIVE_DOMAINS: u32 = 2;
            // networks and pools number them the other way round
            const INACTIVE: u32 = 1;
            const ACTIVE: u32 = 2;
            let p = self.procedure;
            let search_on = match p {
                P::NetworkListAllPorts => Obj::network(&prefix(payload).unwrap_or_default()),
                P::StoragePoolNumOfVolumes
                | P::StoragePoolListVolumes
                | P::StoragePoolListAllVolumes => Obj::pool(&prefix(payload).unwrap_or_default()),
                _ => Obj::Connect,
            };
            self.require(search, &search_on)?;

            let domains = |flags: u32| -> Result<Vec<NonnullDomain>, Failure> {
                let args = xdr::to_vec(&ConnectListAllDomainsArgs {
                    need_results: 1,
                    flags,
                })
                .map_err(|e| rpc(e.to_string()))?;
                let ret: ConnectListAllDomainsRet =
                    decode(&call(P::ConnectListAllDomains, &args)?)?;
                Ok(ret
                    .domains
                    .into_iter()
                    .filter(|d| self.allowed("domain:getattr", &Obj::domain(d)))
                    .collect())
            };
            let networks = |flags: u32| -> Result<Vec<NonnullNetwork>, Failure> {
                let args = xdr::to_vec(&ListAllArgs {
                    need_results: 1,
                    flags,
                })
                .map_err(|e| rpc(e.to_string()))?;
                let ret: ConnectListAllNetworksRet =
                    decode(&call(P::ConnectListAllNetworks, &args)?)?;
                Ok(ret
                    .nets
                    .into_iter()
                    .filter(|n| self.allowed("network:getattr", &Obj::network(n)))
                    .collect())
            };
            let pools = |flags: u32| -> Result<Vec<NonnullStoragePool>, Failure> {
                let args = xdr::to_vec(&ListAllArgs {
                    need_results: 1,
                    flags,
                })
                .map_err(|e| rpc(e.to_string()))?;
                let ret: ConnectListAllStoragePoolsRet =
                    decode(&call(P::ConnectListAllStoragePools, &args)?)?;
                Ok(ret
                    .pools
                    .into_iter()
                    .filter(|x| self.allowed("storage_pool:getattr", &Obj::pool(x)))
                    .collect())
            };
            let secrets = || -> Result<Vec<NonnullSecret>, Failure> {
                let args = xdr::to_vec(&ListAllArgs {
                    need_results: 1,
                    flags: 0,
                })
                .map_err(|e| rpc(e.to_string()))?;
                let ret: ConnectListAllSecretsRet =
                    decode(&call(P::ConnectListAllSecrets, &args)?)?;
                Ok(ret
                    .secrets
                    .into_iter()
                    .filter(|x| self.allowed("secret:getattr", &Obj::secret(x)))
                    .collect())
            };
            let volumes = |pool: NonnullStoragePool| -> Result<Vec<NonnullStorageVol>, Failure> {
                let args = xdr::to_vec(&StoragePoolListAllVolumesArgs {
                    pool,
                    need_results: 1,
                    flags: 0,
                })
                .map_err(|e| rpc(e.to_string()))?;
                let ret: StoragePoolListAllVolumesRet =
                    decode(&call(P::StoragePoolListAllVolumes, &args)?)?;
                Ok(ret
                    .vols
                    .into_iter()
                    .filter(|x| self.allowed("storage_vol:getattr", &Obj::vol(x)))
                    .collect())
            };
            let num = |n: usize| encode(&NumRet { num: n as i32 });
            let args = |payload: &[u8]| -> Result<(i32, u32), Failure> {
                let a: ListAllArgs = decode(payload)?;
                Ok((a.need_results, a.flags))
            };

            match p {
                P::ConnectListAllDomains => {
                    let (need, flags) = args(payload)?;
                    let list = domains(flags)?;
                    let ret = list.len() as u32;
                    encode(&ConnectListAllDomainsRet {
                        domains: if need != 0 { list } else { Vec::new() },
                        ret,
                    })
                }
                P::ConnectNumOfDomains => num(domains(ACTIVE_DOMAINS)?.len()),
                P::ConnectNumOfDefinedDomains => num(domains(INACTIVE_DOMAINS)?.len()),
                P::ConnectListDomains => {
                    let a: ConnectListDomainsArgs = decode(payload)?;
                    let max = list_max(a.maxids)?;
                    let ids = domains(ACTIVE_DOMAINS)?
                        .iter()
                        .map(|d| d.id)
                        .take(max)
                        .collect();
                    encode(&ConnectListDomainsRet { ids })
                }
                P::ConnectListDefinedDomains => {
                    let a: ConnectListDefinedDomainsArgs = decode(payload)?;
                    let max = list_max(a.maxnames)?;
                    let names = domains(INACTIVE_DOMAINS)?
                        .into_iter()
                        .map(|d| d.name)
                        .take(max)
                        .collect();
                    encode(&ConnectListDefinedDomainsRet { names })
                }
                P::ConnectListAllNetworks => {
                    let (need, flags) = args(payload)?;
                    let list = networks(flags)?;
                    let ret = list.len() as u32;
                    encode(&ConnectListAllNetworksRet {
                        nets: if need != 0 { list } else { Vec::new() },
                        ret,
                    })
                }
                P::ConnectNumOfNetworks => num(networks(ACTIVE)?.len()),
                P::ConnectNumOfDefinedNetworks => num(networks(INACTIVE)?.len()),
                P::ConnectListNetworks | P::ConnectListDefinedNetworks => {
                    let a: MaxNamesArgs = decode(payload)?;
                    let max = list_max(a.maxnames)?;
                    let flags = if p == P::ConnectListNetworks {
                        ACTIVE
                    } else {
                        INACTIVE
                    };
                    let names = networks(flags)?
                        .into_iter()
                        .map(|n| n.name)
                        .take(max)
                        .collect();
                    encode(&NetworkNamesRet { names })
                }
                P::NetworkListAllPorts => {
                    let ret: NetworkListAllPortsRet = decode(&call(p, payload)?)?;
                    let ports: Vec<_> = ret
                        .ports
                        .into_iter()
                        .filter(|x| self.allowed("network_port:getattr", &Obj::port(x)))
                        .collect();
                    let a: NetworkListAllPortsArgs = decode(payload)?;
                    // the driver filled `ports` only when asked; count what is left
                    let count = if a.need_results != 0 {
                        ports.len() as u32
                    } else {
                        ret.ret
                    };
                    encode(&NetworkListAllPortsRet { ports, ret: count })
                }
                P::ConnectListAllStoragePools => {
                    let (need, flags) = args(payload)?;
                    let list = pools(flags)?;
                    let ret = list.len() as u32;
                    encode(&ConnectListAllStoragePoolsRet {
                        pools: if need != 0 { list } else { Vec::new() },
                        ret,
                    })
                }
                P::ConnectNumOfStoragePools => num(pools(ACTIVE)?.len()),
                P::ConnectNumOfDefinedStoragePools => num(pools(INACTIVE)?.len()),
                P::ConnectListStoragePools | P::ConnectListDefinedStoragePools => {
                    let a: MaxNamesArgs = decode(payload)?;
                    let max = list_max(a.maxnames)?;
                    let flags = if p == P::ConnectListStoragePools {
                        ACTIVE
                    } else {
                        INACTIVE
                    };
                    let names = pools(flags)?
                        .into_iter()
                        .map(|x| x.name)
                        .take(max)
                        .collect();
                    encode(&StoragePoolNamesRet { names })
                }
                P::StoragePoolListAllVolumes => {
                    let a: StoragePoolListAllVolumesArgs = decode(payload)?;
                    let list = volumes(a.pool)?;
                    let ret = list.len() as u32;
                    encode(&StoragePoolListAllVolumesRet {
                        vols: if a.need_results != 0 {
                            list
                        } else {
                            Vec::new()
                        },
                        ret,
                    })
                }
                P::StoragePoolNumOfVolumes => {
                    let a: StoragePoolArgs = decode(payload)?;
                    num(volumes(a.pool)?.len())
                }
                P::StoragePoolListVolumes => {
                    let a: StoragePoolListVolumesArgs = decode(payload)?;
                    let max = list_max(a.maxnames)?;
                    let names = volumes(a.pool)?
                        .into_iter()
                        .map(|v| v.name)
                        .take(max)
                        .collect();
                    encode(&StoragePoolListVolumesRet { names })
                }
                P::ConnectListAllSecrets => {
                    let (need, _) = args(payload)?;
                    let list = secrets()?;
                    let ret = list.len() as u32;
                    encode(&ConnectListAllSecretsRet {
                        secrets: if need != 0 { list } else { Vec::new() },
                        ret,
                    })
                }
                P::ConnectNumOfSecrets => num(secrets()?.len()),
                P::ConnectListSecrets => {
                    let a: ConnectListSecretsArgs = decode(payload)?;
                    let max = list_max(a.maxuuids)?;
                    let uuids = secrets()?
                        .iter()
                        .map(|s| uuid::Uuid::from_bytes(s.uuid).to_string())
                        .take(max)
                        .collect();
                    encode(&ConnectListSecretsRet { uuids })
                }
                _ => call(p, payload),
            }
        }
    }

    /// Event delivery filter of one client: its identity as a request template, checked
    /// against each event's object (`getattr`). Made when the client subscribes.
    pub struct EventFilter {
        engine: Arc<PolicyEngine>,
        template: Request,
    }

    impl EventFilter {
        /// `None` when no policy engine runs.
        pub fn new(client: &Client, conn: &rvirt_host::Connection) -> Option<EventFilter> {
            let engine = client.shared.policy.clone()?;
            let guard = Guard {
                engine: &engine,
                client,
                procedure: P::ConnectDomainEventRegisterAny,
            };
            let mut template = guard.request("", &Obj::Connect);
            template.remove(keys::PROCEDURE);
            template.set(keys::OBJECT_DRIVER, conn.driver_name());
            Some(EventFilter { engine, template })
        }

        /// Whether the client may see an event about `event`'s object.
        pub fn visible(&self, event: &impl super::EventObject) -> bool {
            if !self.engine.access_active() {
                return true;
            }
            let (perm, name, uuid) = event.acl();
            let mut req = self.template.clone().with_operation(perm);
            if !name.is_empty() {
                req.set(keys::OBJECT_NAME, name);
            }
            if let Some(u) = uuid {
                req.set(keys::OBJECT_UUID, uuid::Uuid::from_bytes(u).to_string());
            }
            self.engine.check(req).is_allow()
        }
    }

    /// Creates the engine for `dir` (compiled code cached in `cache_dir`); logs what
    /// loaded and what was refused. `None` (with an error logged) if wasmtime cannot start.
    pub fn open_engine(
        dir: std::path::PathBuf,
        cache_dir: std::path::PathBuf,
    ) -> Option<Arc<PolicyEngine>> {
        match PolicyEngine::new(rvirt_policy::PolicyOptions {
            dir,
            cache_dir: Some(cache_dir),
        }) {
            Ok((engine, _report)) => Some(Arc::new(engine)),
            Err(e) => {
                tracing::error!("policy engine unavailable, calls run unchecked: {e}");
                None
            }
        }
    }

    /// The files `rvirt policy list|reload` use: the daemon's pid (reload = SIGHUP to it,
    /// which only root or the daemon's user may send) and a status table of what is loaded,
    /// readable by the daemon's user only. Both live in the run directory.
    #[derive(Debug, Clone)]
    pub struct ControlFiles {
        pid: std::path::PathBuf,
        status: std::path::PathBuf,
    }

    impl ControlFiles {
        pub fn new(run_dir: &std::path::Path) -> ControlFiles {
            ControlFiles {
                pid: run_dir.join("rvirtd.pid"),
                status: run_dir.join("policy-status"),
            }
        }

        /// Writes the pid file and the status table (atomically: write, then rename).
        pub fn publish(&self, engine: &PolicyEngine) {
            let write = |path: &std::path::Path, text: String, mode: u32| {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let tmp = path.with_extension("tmp");
                let _ = std::fs::remove_file(&tmp);
                let res = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&tmp)
                    .and_then(|mut f| f.write_all(text.as_bytes()))
                    .and_then(|()| std::fs::rename(&tmp, path));
                if let Err(e) = res {
                    tracing::warn!(path = %path.display(), "cannot write: {e}");
                }
            };
            write(&self.pid, format!("{}\n", std::process::id()), 0o644);
            write(&self.status, status_text(engine), 0o600);
        }

        pub fn remove(&self) {
            let _ = std::fs::remove_file(&self.pid);
            let _ = std::fs::remove_file(&self.status);
        }
    }

    /// What `rvirt policy list` prints.
    pub fn status_text(engine: &PolicyEngine) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let when = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "policy engine: built in (rvirt-policy, ABI {}.{})",
            rvirt_policy::ABI_MAJOR,
            rvirt_policy::ABI_MINOR
        );
        let _ = writeln!(out, "directory: {}", engine.dir().display());
        let _ = writeln!(out, "loaded at: {when} (unix time)");
        let list = engine.list();
        if list.is_empty() {
            let _ = writeln!(out, "no module loaded: calls are not checked");
        } else {
            let _ = writeln!(
                out,
                "{:<24} {:<7} {:<5} {:>6} {:<7} {:>10} {:>10} {:>8}  HOOKS",
                "NAME", "KIND", "ABI", "ORDER", "FAIL", "FUEL", "MEMORY", "TIMEOUT"
            );
            for m in &list {
                let hooks = if m.kind == rvirt_policy::Kind::Access {
                    "-".to_owned()
                } else if m.hooks.is_empty() {
                    "all".to_owned()
                } else {
                    m.hooks
                        .iter()
                        .map(|h| h.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let _ = writeln!(
                    out,
                    "{:<24} {:<7} {:<5} {:>6} {:<7} {:>10} {:>10} {:>6}ms  {hooks}",
                    m.name,
                    m.kind.as_str(),
                    m.abi.to_string(),
                    m.order,
                    m.fail.as_str(),
                    m.fuel,
                    m.memory_bytes,
                    m.timeout_ms
                );
            }
        }
        for r in engine.refused() {
            let _ = writeln!(out, "refused: {}", r.reason);
        }
        out
    }

    /// Runs the hooks of `point` (nothing when no hook module is loaded).
    pub fn hook(client: &Client, point: HookPoint, obj: &Obj, xml: Option<&str>) -> HookOutcome {
        let Some(engine) = client.shared.policy.as_deref() else {
            return HookOutcome::Continue { xml: None };
        };
        if !engine.hooks_at(point) {
            return HookOutcome::Continue { xml: None };
        }
        let guard = Guard {
            engine,
            client,
            procedure: P::ConnectOpen,
        };
        let mut req = guard.request("", obj);
        req.remove(keys::OPERATION);
        req.remove(keys::PERMISSION);
        req.remove(keys::PROCEDURE);
        req.set(keys::OBJECT_KIND, obj.kind());
        if let Some(x) = xml {
            req.set(keys::XML, x);
        }
        engine.hook(point, req)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_procedure_has_a_rule_naming_libvirt_permissions() {
            for &p in P::ALL {
                let rule = rule(p);
                if rule.target == Target::Unchecked {
                    assert!(rule.perms.is_empty(), "{p:?}");
                    continue;
                }
                assert!(!rule.perms.is_empty(), "{p:?}");
                for perm in rule.perms {
                    let (kind, what) = perm.split_once(':').unwrap();
                    assert!(
                        [
                            "connect",
                            "domain",
                            "network",
                            "network_port",
                            "storage_pool",
                            "storage_vol",
                            "secret"
                        ]
                        .contains(&kind),
                        "{p:?}: {perm}"
                    );
                    assert!(
                        !what.is_empty()
                            && what.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    );
                }
            }
            assert_eq!(rule(P::DomainDestroy).perms, ["domain:stop"]);
            assert_eq!(
                rule(P::DomainDefineXml).perms,
                ["domain:write", "domain:save"]
            );
            assert_eq!(rule(P::ConnectListAllDomains).target, Target::List);
        }

        #[test]
        fn objects_come_from_the_arguments() {
            let dom = NonnullDomain {
                name: "web".into(),
                uuid: [7; 16],
                id: 3,
            };
            let payload = xdr::to_vec(&DomainFlagsArgs {
                dom: dom.clone(),
                flags: 1,
            })
            .unwrap();
            assert_eq!(
                object_of(Target::DomainArg, &payload),
                Some(Obj::domain(&dom))
            );
            assert_eq!(
                extra_perms(P::DomainGetXmlDesc, &payload),
                Some("domain:read_secure")
            );
            let define = xdr::to_vec(&DomainDefineXmlArgs {
                xml: "<domain type='test'><name>n1</name><uuid>6f1f6c2e-8c0c-4f1a-9a53-2a9d7d0d6f01</uuid></domain>".into(),
            })
            .unwrap();
            match object_of(Target::DomainXml, &define) {
                Some(Obj::Domain { name, uuid }) => {
                    assert_eq!(name, "n1");
                    assert!(uuid.is_some());
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(object_of(Target::DomainArg, &[1, 2]), None);
        }
    }
}

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
    /// Reached over plain TCP: `virConnectIsSecure` answers 0 (unix sockets and TLS: 1).
    pub insecure: bool,
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
                insecure: false,
                name: OnceLock::new(),
            },
            Err(e) => {
                tracing::warn!("cannot read the peer credentials of a client: {e}");
                Peer::default()
            }
        }
    }

    /// A client over the network: no credentials; `insecure` for plain TCP.
    pub fn network(insecure: bool) -> Peer {
        Peer {
            insecure,
            ..Peer::default()
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
    /// `VIR_DOMAIN_EVENT_STOPPED`.
    const EVENT_STOPPED: i32 = 5;

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

    pub use rvirt_host::acl::{Target, rule};

    /// Permissions some flags add (`@acl: perm:FLAG` in libvirt's protocol file).
    fn extra_perms(p: P, payload: &[u8]) -> Option<&'static str> {
        /// `VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_MIGRATABLE`.
        const XML_SECURE_OR_MIGRATABLE: u32 = 1 | 8;
        /// `VIR_DOMAIN_REBOOT_GUEST_AGENT`, `VIR_DOMAIN_SHUTDOWN_GUEST_AGENT`.
        const GUEST_AGENT: u32 = 2;
        /// `VIR_DOMAIN_VCPU_GUEST`.
        const VCPU_GUEST: u32 = 8;
        /// `VIR_DOMAIN_AFFECT_CONFIG`.
        const AFFECT_CONFIG: u32 = 2;
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
            // `@acl: domain:save:VIR_DOMAIN_AFFECT_CONFIG`
            P::DomainSetMemoryFlags => xdr::from_bytes::<DomainSetMemoryFlagsArgs>(payload)
                .ok()
                .filter(|a| a.flags & AFFECT_CONFIG != 0)
                .map(|_| "domain:save"),
            P::DomainSetVcpusFlags => xdr::from_bytes::<DomainSetVcpusFlagsArgs>(payload)
                .ok()
                .filter(|a| a.flags & AFFECT_CONFIG != 0)
                .map(|_| "domain:save"),
            P::DomainAttachDeviceFlags | P::DomainDetachDeviceFlags => {
                xdr::from_bytes::<DomainDeviceFlagsArgs>(payload)
                    .ok()
                    .filter(|a| a.flags & AFFECT_CONFIG != 0)
                    .map(|_| "domain:save")
            }
            // `@acl: domain:read_secure:VIR_DOMAIN_SNAPSHOT_XML_SECURE`
            P::DomainSnapshotGetXmlDesc => xdr::from_bytes::<DomainSnapshotFlagsArgs>(payload)
                .ok()
                .filter(|a| a.flags & 1 != 0)
                .map(|_| "domain:read_secure"),
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
            Target::SnapshotArg => {
                let snap: rvirt_wire::protocol::NonnullDomainSnapshot = prefix(payload)?;
                Obj::domain(&snap.dom)
            }
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
            Target::Unchecked | Target::Returned | Target::List | Target::MigrationXml => {
                return None;
            }
        })
    }

    /// `VIR_MIGRATE_PARAM_DEST_XML`.
    const PARAM_DEST_XML: &str = "destination_xml";
    /// `VIR_MIGRATE_PARAM_DEST_NAME`.
    const PARAM_DEST_NAME: &str = "destination_name";

    /// The incoming domain XML of a migration prepare call and the name the domain takes
    /// (`dname` / `destination_name`, if given).
    fn incoming(p: P, payload: &[u8]) -> Option<(Option<String>, Option<String>)> {
        let param = |params: &[rvirt_wire::protocol::TypedParam], field: &str| {
            params.iter().find_map(|t| match &t.value {
                rvirt_wire::protocol::TypedParamValue::String(v) if t.field == field => {
                    Some(v.clone())
                }
                _ => None,
            })
        };
        match p {
            P::DomainMigratePrepare3 => {
                let a: DomainMigratePrepare3Args = xdr::from_bytes(payload).ok()?;
                Some((Some(a.dom_xml), a.dname))
            }
            P::DomainMigratePrepare3Params => {
                let a: DomainMigratePrepare3ParamsArgs = xdr::from_bytes(payload).ok()?;
                Some((
                    param(&a.params, PARAM_DEST_XML),
                    param(&a.params, PARAM_DEST_NAME),
                ))
            }
            _ => None,
        }
    }

    /// The domain an incoming migration creates.
    fn migration_object(p: P, payload: &[u8]) -> Option<Obj> {
        let (xml, dname) = incoming(p, payload)?;
        let (name, uuid) = xml.as_deref().map(xml_identity).unwrap_or_default();
        Some(Obj::Domain {
            name: dname.unwrap_or(name),
            uuid,
        })
    }

    /// The arguments of a migration prepare call with the incoming XML replaced.
    fn with_incoming_xml(p: P, payload: &[u8], xml: String) -> CallResult {
        match p {
            P::DomainMigratePrepare3 => {
                let mut a: DomainMigratePrepare3Args = decode(payload)?;
                a.dom_xml = xml;
                encode(&a)
            }
            _ => {
                let mut a: DomainMigratePrepare3ParamsArgs = decode(payload)?;
                a.params.retain(|t| t.field != PARAM_DEST_XML);
                a.params.push(rvirt_wire::protocol::TypedParam {
                    field: PARAM_DEST_XML.into(),
                    value: rvirt_wire::protocol::TypedParamValue::String(xml),
                });
                encode(&a)
            }
        }
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
                i32::from(self.client.open_and_read_only().1),
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
                    let hooks = self.engine.hooks_active();
                    if !checking && !hooks {
                        // nothing looks at the object: a define's XML is parsed once, by
                        // the driver
                        return call(p, payload);
                    }
                    let obj = if target == Target::MigrationXml {
                        migration_object(p, payload)
                    } else {
                        object_of(target, payload)
                    };
                    if let Some(obj) = &obj {
                        for perm in rule.perms.iter().copied().chain(extra_perms(p, payload)) {
                            self.require(perm, obj)?;
                        }
                    }
                    match obj {
                        Some(obj) if hooks => self.hooked(&obj, payload, call),
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
                    // the driver's STOPPED event of this stop must not run the hooks again
                    let uuid = obj.uuid();
                    if let Some(u) = uuid {
                        self.client.shared.stops.mark(u);
                    }
                    let ret = call(p, payload).inspect_err(|_| {
                        if let Some(u) = uuid {
                            self.client.shared.stops.unmark(u);
                        }
                    })?;
                    after(H::DomainStopped);
                    after(H::DomainRelease);
                    Ok(ret)
                }
                // libvirt runs its qemu hook's `migrate` on the destination while preparing
                // an incoming migration: it may veto, or amend the incoming XML, which is
                // then validated and checked like a client's
                P::DomainMigratePrepare3 | P::DomainMigratePrepare3Params => {
                    let xml = incoming(p, payload).and_then(|(xml, _)| xml);
                    match before(H::DomainMigrate, xml.as_deref())? {
                        None => call(p, payload),
                        Some(amended) => {
                            if let Err(e) = rvirt_xml::domain::Domain::parse(&amended) {
                                return Err(Box::new(RemoteError::new(
                                    error_code::XML_ERROR,
                                    error_domain::DOMAIN,
                                    format!(
                                        "XML error: the migrate hook amended the incoming domain XML into an invalid document: {e}"
                                    ),
                                )));
                            }
                            let args = with_incoming_xml(p, payload, amended)?;
                            if let Some(new) = migration_object(p, &args)
                                && &new != obj
                            {
                                for perm in rule(p).perms {
                                    self.require(perm, &new)?;
                                }
                            }
                            call(p, &args)
                        }
                    }
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
                P::ConnectGetAllDomainStats => {
                    let ret: ConnectGetAllDomainStatsRet = decode(&call(p, payload)?)?;
                    encode(&ConnectGetAllDomainStatsRet {
                        ret_stats: ret
                            .ret_stats
                            .into_iter()
                            .filter(|r| self.allowed("domain:read", &Obj::domain(&r.dom)))
                            .collect(),
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

    /// The stops made by client calls (DOMAIN_DESTROY), whose `stopped` and `release`
    /// hooks ran in the call: the [`StopWatcher`] skips the driver's STOPPED event of each,
    /// so the hooks run once per stop. A mark whose event never comes (a driver without
    /// events) expires.
    #[derive(Debug, Default)]
    pub struct ClientStops {
        marks: std::sync::Mutex<Vec<([u8; 16], std::time::Instant)>>,
    }

    impl ClientStops {
        const EXPIRY: std::time::Duration = std::time::Duration::from_secs(60);

        fn lock(&self) -> std::sync::MutexGuard<'_, Vec<([u8; 16], std::time::Instant)>> {
            self.marks.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Before a client's stop of `uuid` runs.
        pub fn mark(&self, uuid: [u8; 16]) {
            tracing::debug!(uuid = %uuid::Uuid::from_bytes(uuid), "client stop");
            let mut m = self.lock();
            m.retain(|(_, at)| at.elapsed() < Self::EXPIRY);
            m.push((uuid, std::time::Instant::now()));
        }

        /// The client's stop failed: no event will come.
        pub fn unmark(&self, uuid: [u8; 16]) {
            let mut m = self.lock();
            if let Some(i) = m.iter().rposition(|(u, _)| *u == uuid) {
                m.remove(i);
            }
        }

        /// Whether a STOPPED event of `uuid` is a client's stop (consumes the mark).
        pub fn take(&self, uuid: [u8; 16]) -> bool {
            let mut m = self.lock();
            m.retain(|(_, at)| at.elapsed() < Self::EXPIRY);
            match m.iter().position(|(u, _)| *u == uuid) {
                Some(i) => {
                    m.remove(i);
                    true
                }
                None => false,
            }
        }
    }

    /// Runs the domain `stopped` and `release` hooks when a domain stops without a
    /// client's DOMAIN_DESTROY (the guest powered off, QEMU died, a shutdown completed, a
    /// stop by another path), as libvirt runs its qemu hook on every stop: the daemon
    /// subscribes to the lifecycle events of one connection per served URI and runs the
    /// hooks on a thread of its own (never on the driver's event thread). The stop has
    /// already happened: a veto is logged.
    pub struct StopWatcher {
        /// Kept open for the subscriptions; dropped with the watcher.
        _conns: Vec<rvirt_host::Connection>,
    }

    impl StopWatcher {
        pub fn start(
            runtime: &rvirt_host::Runtime,
            isolation: Option<&crate::isolate::Isolation>,
            uris: &[String],
            engine: Arc<PolicyEngine>,
            stops: Arc<ClientStops>,
        ) -> StopWatcher {
            let (tx, rx) = std::sync::mpsc::channel::<(rvirt_host::DomainId, String)>();
            let mut conns = Vec::new();
            for uri in uris {
                let conn = match crate::isolate::open_routed(runtime, isolation, uri, true) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(
                            uri,
                            "stopped/release hooks will not run for stops the daemon does not make on this URI: cannot open it: {e}"
                        );
                        continue;
                    }
                };
                let tx = tx.clone();
                let driver = conn.driver_name().to_owned();
                let res = conn.subscribe_events(move |e: &rvirt_host::DomainEvent| {
                    if e.event == EVENT_STOPPED {
                        let _ = tx.send((e.domain.clone(), driver.clone()));
                    }
                });
                match res {
                    Ok(_) => conns.push(conn),
                    Err(e) => tracing::warn!(
                        uri,
                        "stopped/release hooks will not run for stops the daemon does not make on this URI: no lifecycle events: {e}"
                    ),
                }
            }
            let spawned = std::thread::Builder::new()
                .name("rvirtd-stop-hooks".into())
                .spawn(move || {
                    for (dom, driver) in rx {
                        tracing::debug!(domain = dom.name, uuid = %dom.uuid, "domain stopped");
                        if stops.take(*dom.uuid.as_bytes()) {
                            continue;
                        }
                        run_stop_hooks(&engine, &dom, &driver);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start the stop hook thread: {e}");
            }
            StopWatcher { _conns: conns }
        }
    }

    /// `stopped` then `release` of a domain that stopped on its own; vetoes are logged.
    fn run_stop_hooks(engine: &PolicyEngine, dom: &rvirt_host::DomainId, driver: &str) {
        for point in [HookPoint::DomainStopped, HookPoint::DomainRelease] {
            if !engine.hooks_at(point) {
                continue;
            }
            let req = Request::new()
                .with(keys::OBJECT_KIND, "domain")
                .with(keys::OBJECT_NAME, dom.name.as_str())
                .with(keys::OBJECT_UUID, dom.uuid.to_string())
                .with(keys::OBJECT_DRIVER, driver);
            if let HookOutcome::Veto(d) = engine.hook(point, req) {
                tracing::warn!(
                    domain = dom.name,
                    "hook '{}' vetoed {point}, which has already happened",
                    d.module
                );
            }
        }
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
        fn a_client_stop_is_skipped_once_by_the_watcher() {
            let stops = ClientStops::default();
            let (a, b) = ([1; 16], [2; 16]);
            stops.mark(a);
            assert!(!stops.take(b), "another domain's stop is not the client's");
            assert!(stops.take(a));
            assert!(
                !stops.take(a),
                "the mark is consumed: the next stop runs the hooks"
            );
            stops.mark(a);
            stops.unmark(a);
            assert!(!stops.take(a), "a failed stop leaves no mark");
        }

        #[test]
        fn incoming_migrations_are_checked_on_the_incoming_domain() {
            let xml = "<domain type='test'><name>mig</name><uuid>6f1f6c2e-8c0c-4f1a-9a53-2a9d7d0d6f01</uuid></domain>";
            let params = xdr::to_vec(&DomainMigratePrepare3ParamsArgs {
                params: vec![rvirt_wire::protocol::TypedParam {
                    field: PARAM_DEST_XML.into(),
                    value: rvirt_wire::protocol::TypedParamValue::String(xml.into()),
                }],
                cookie_in: Vec::new(),
                flags: 0,
            })
            .unwrap();
            match migration_object(P::DomainMigratePrepare3Params, &params) {
                Some(Obj::Domain { name, uuid }) => {
                    assert_eq!(name, "mig");
                    assert!(uuid.is_some());
                }
                other => panic!("{other:?}"),
            }
            // dname renames the incoming domain; the check is on the new name
            let v3 = xdr::to_vec(&DomainMigratePrepare3Args {
                dom_xml: xml.into(),
                dname: Some("renamed".into()),
                ..Default::default()
            })
            .unwrap();
            assert!(matches!(
                migration_object(P::DomainMigratePrepare3, &v3),
                Some(Obj::Domain { name, .. }) if name == "renamed"
            ));
            assert_eq!(
                rule(P::DomainMigratePrepare3Params).perms,
                ["domain:migrate", "domain:start", "domain:write"]
            );
            let amended =
                with_incoming_xml(P::DomainMigratePrepare3Params, &params, "<x/>".into()).unwrap();
            assert_eq!(
                incoming(P::DomainMigratePrepare3Params, &amended)
                    .unwrap()
                    .0
                    .as_deref(),
                Some("<x/>")
            );
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

//! Per-client state: the driver connection, keepalive and event registrations.
//!
//! A [`Client`] is shared between the connection's I/O task and the worker threads
//! running its calls. Outgoing frames go through an unbounded channel to the
//! connection's writer task, so driver threads (event callbacks) never block on a slow
//! client.

use crate::outbox::Outbox;
use rvirt_host::networks::NetworkEvent;
use rvirt_host::secrets::SecretEvent;
use rvirt_host::{Connection, DomainEvent, PoolEvent, SecretEventInfo};
use rvirt_wire::protocol::{
    self, NonnullDomain, NonnullNetwork, NonnullSecret, NonnullStoragePool, REMOTE_PROGRAM,
    REMOTE_VERSION,
};
use rvirt_wire::remote::{
    DomainEventCallbackDeviceRemovedMsg, DomainEventCallbackLifecycleMsg,
    DomainEventDeviceRemovedMsg, DomainEventLifecycleMsg, NetworkEventLifecycleMsg,
    SecretEventLifecycleMsg, SecretEventValueChangedMsg, StoragePoolEventLifecycleMsg,
    StoragePoolEventRefreshMsg,
};
use rvirt_wire::{Header, RemoteProcedure, frame};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The daemon-wide part every client sees.
pub struct Shared {
    pub runtime: Arc<rvirt_host::Runtime>,
    pub default_uri: String,
    /// The URIs clients may open.
    pub served: crate::served::Served,
    /// The plugins served from processes of their own (`None` in a plugin host process).
    pub isolation: Option<Arc<crate::isolate::Isolation>>,
    /// The access policies and hooks (`None`: none configured, or the engine failed).
    #[cfg(feature = "policy")]
    pub policy: Option<Arc<rvirt_policy::PolicyEngine>>,
    /// Domain stops made by client calls, so the stop watcher does not hook them twice.
    #[cfg(feature = "policy")]
    pub stops: Arc<crate::access::ClientStops>,
    /// The URIs clients opened since the daemon started (their drivers are loaded): the
    /// domains-by-state gauge counts over these at scrape time.
    pub opened: Mutex<std::collections::BTreeSet<String>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("default_uri", &self.default_uri)
            .finish_non_exhaustive()
    }
}

/// One connected client.
#[derive(Debug)]
pub struct Client {
    pub id: u64,
    /// Connected on a read-only socket.
    pub read_only_socket: bool,
    /// Who is at the other end (SO_PEERCRED at accept).
    #[cfg_attr(not(feature = "policy"), allow(dead_code))]
    pub peer: crate::access::Peer,
    pub shared: Arc<Shared>,
    pub outbox: Arc<Outbox>,
    /// Whether the client asked for keepalive (`CONNECT_SUPPORTS_FEATURE` 10).
    pub keepalive: AtomicBool,
    /// Whether the client registered a close callback.
    pub close_callback: AtomicBool,
    /// Whether the open connection's driver is served from a plugin process (its calls
    /// wait on a socket: never run on an I/O worker, `placement.rs`).
    pub remote_driver: AtomicBool,
    state: Mutex<State>,
    /// Serialises event subscription (held across the driver call, unlike `state`).
    subscribe: Mutex<()>,
    events: Arc<Mutex<Events>>,
    /// Open volume streams (`streams.rs`).
    streams: Mutex<crate::streams::Streams>,
}

/// What CONNECT_OPEN set up.
#[derive(Default)]
struct State {
    conn: Option<Connection>,
    read_only: bool,
    subscription: Option<u64>,
    pool_subscription: Option<u64>,
    secret_subscription: Option<u64>,
    network_subscription: Option<u64>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("open", &self.conn.is_some())
            .field("read_only", &self.read_only)
            .field("subscription", &self.subscription)
            .field("pool_subscription", &self.pool_subscription)
            .field("secret_subscription", &self.secret_subscription)
            .finish()
    }
}

/// A registered event callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    /// The id handed to the client (modern registrations) or the event id (legacy).
    pub id: i32,
    pub event_id: i32,
    /// Only events of this domain (by uuid), if set.
    pub domain: Option<[u8; 16]>,
    /// Legacy registration (`CONNECT_DOMAIN_EVENT_REGISTER_ANY`): messages without callback id.
    pub legacy: bool,
}

/// `VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE`.
pub const POOL_EVENT_LIFECYCLE: i32 = 0;
/// `VIR_STORAGE_POOL_EVENT_ID_REFRESH`.
pub const POOL_EVENT_REFRESH: i32 = 1;

/// `VIR_SECRET_EVENT_ID_LIFECYCLE`.
/// `VIR_NETWORK_EVENT_ID_LIFECYCLE`: the only network event id.
pub const NETWORK_EVENT_LIFECYCLE: i32 = 0;

/// A registered network event callback.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkCallback {
    /// The callback id given to the client.
    pub id: i32,
    /// Only events of this network (by uuid), if set.
    pub net: Option<[u8; 16]>,
}

pub const SECRET_EVENT_LIFECYCLE: i32 = 0;
/// `VIR_SECRET_EVENT_ID_VALUE_CHANGED`.
pub const SECRET_EVENT_VALUE_CHANGED: i32 = 1;

/// A registered secret event callback.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretCallback {
    pub id: i32,
    /// [`SECRET_EVENT_LIFECYCLE`] or [`SECRET_EVENT_VALUE_CHANGED`].
    pub event_id: i32,
    /// Only events of this secret (by uuid), if set.
    pub secret: Option<[u8; 16]>,
}

/// A registered storage pool event callback.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolCallback {
    pub id: i32,
    /// [`POOL_EVENT_LIFECYCLE`] or [`POOL_EVENT_REFRESH`].
    pub event_id: i32,
    /// Only events of this pool (by uuid), if set.
    pub pool: Option<[u8; 16]>,
}

/// The event callbacks of one client.
#[derive(Debug, Default)]
pub struct Events {
    next_id: i32,
    callbacks: Vec<Callback>,
    pool_callbacks: Vec<PoolCallback>,
    secret_callbacks: Vec<SecretCallback>,
    network_callbacks: Vec<NetworkCallback>,
}

impl Events {
    /// Adds a modern registration; returns its callback id.
    pub fn add(&mut self, event_id: i32, domain: Option<[u8; 16]>) -> i32 {
        self.next_id += 1;
        let id = self.next_id;
        self.callbacks.push(Callback {
            id,
            event_id,
            domain,
            legacy: false,
        });
        id
    }

    /// Adds a legacy registration; false if this event id is already registered.
    pub fn add_legacy(&mut self, event_id: i32) -> bool {
        if self
            .callbacks
            .iter()
            .any(|c| c.legacy && c.event_id == event_id)
        {
            return false;
        }
        self.callbacks.push(Callback {
            id: event_id,
            event_id,
            domain: None,
            legacy: true,
        });
        true
    }

    /// Adds a storage pool event registration; returns its callback id.
    pub fn add_pool(&mut self, event_id: i32, pool: Option<[u8; 16]>) -> i32 {
        self.next_id += 1;
        let id = self.next_id;
        self.pool_callbacks
            .push(PoolCallback { id, event_id, pool });
        id
    }

    /// Removes a storage pool event registration; false if it did not exist.
    pub fn remove_pool(&mut self, id: i32) -> bool {
        let before = self.pool_callbacks.len();
        self.pool_callbacks.retain(|c| c.id != id);
        before != self.pool_callbacks.len()
    }

    /// Adds a secret event registration; returns its callback id.
    /// Adds a network event registration; returns its callback id.
    pub fn add_network(&mut self, net: Option<[u8; 16]>) -> i32 {
        self.next_id += 1;
        let id = self.next_id;
        self.network_callbacks.push(NetworkCallback { id, net });
        id
    }

    /// Removes a network event registration; false if it did not exist.
    pub fn remove_network(&mut self, id: i32) -> bool {
        let before = self.network_callbacks.len();
        self.network_callbacks.retain(|c| c.id != id);
        before != self.network_callbacks.len()
    }

    /// The frames to push for one network lifecycle event.
    pub fn network_frames_for(&self, event: &NetworkEvent) -> Vec<Vec<u8>> {
        let uuid = *event.uuid.as_bytes();
        let net = NonnullNetwork {
            name: event.name.clone(),
            uuid,
        };
        let mut out = Vec::new();
        for cb in &self.network_callbacks {
            if cb.net.is_some_and(|n| n != uuid) {
                continue;
            }
            match frame::encode(
                &Header::message(
                    REMOTE_PROGRAM,
                    REMOTE_VERSION,
                    RemoteProcedure::NetworkEventLifecycle.number(),
                ),
                &NetworkEventLifecycleMsg {
                    callback_id: cb.id,
                    net: net.clone(),
                    event: event.event,
                    detail: 0,
                },
            ) {
                Ok(f) => out.push(f),
                Err(e) => tracing::warn!("cannot encode network event: {e}"),
            }
        }
        out
    }

    pub fn add_secret(&mut self, event_id: i32, secret: Option<[u8; 16]>) -> i32 {
        self.next_id += 1;
        let id = self.next_id;
        self.secret_callbacks.push(SecretCallback {
            id,
            event_id,
            secret,
        });
        id
    }

    /// Removes a secret event registration; false if it did not exist.
    pub fn remove_secret(&mut self, id: i32) -> bool {
        let before = self.secret_callbacks.len();
        self.secret_callbacks.retain(|c| c.id != id);
        before != self.secret_callbacks.len()
    }

    /// The frames to push for one secret event (lifecycle or value changed; never the
    /// value itself).
    pub fn secret_frames_for(&self, event: &SecretEventInfo) -> Vec<Vec<u8>> {
        let uuid = *event.secret.uuid.as_bytes();
        let secret = NonnullSecret {
            uuid,
            usage_type: event.secret.usage_type,
            usage_id: event.secret.usage_id.clone(),
        };
        let (wanted, lifecycle) = match event.event {
            // VIR_SECRET_EVENT_DEFINED, VIR_SECRET_EVENT_UNDEFINED
            SecretEvent::Defined => (SECRET_EVENT_LIFECYCLE, Some(0)),
            SecretEvent::Undefined => (SECRET_EVENT_LIFECYCLE, Some(1)),
            SecretEvent::ValueChanged => (SECRET_EVENT_VALUE_CHANGED, None),
        };
        let mut out = Vec::new();
        for cb in &self.secret_callbacks {
            if cb.event_id != wanted || cb.secret.is_some_and(|s| s != uuid) {
                continue;
            }
            let encoded = match lifecycle {
                Some(ev) => frame::encode(
                    &Header::message(
                        REMOTE_PROGRAM,
                        REMOTE_VERSION,
                        RemoteProcedure::SecretEventLifecycle.number(),
                    ),
                    &SecretEventLifecycleMsg {
                        callback_id: cb.id,
                        secret: secret.clone(),
                        event: ev,
                        detail: 0,
                    },
                ),
                None => frame::encode(
                    &Header::message(
                        REMOTE_PROGRAM,
                        REMOTE_VERSION,
                        RemoteProcedure::SecretEventValueChanged.number(),
                    ),
                    &SecretEventValueChangedMsg {
                        callback_id: cb.id,
                        secret: secret.clone(),
                    },
                ),
            };
            match encoded {
                Ok(f) => out.push(f),
                Err(e) => tracing::warn!("cannot encode secret event: {e}"),
            }
        }
        out
    }

    /// The frames to push for one storage pool event (lifecycle or refresh).
    pub fn pool_frames_for(&self, event: &PoolEvent) -> Vec<Vec<u8>> {
        let uuid = *event.uuid.as_bytes();
        let pool = NonnullStoragePool {
            name: event.name.clone(),
            uuid,
        };
        let wanted = if event.event.is_some() {
            POOL_EVENT_LIFECYCLE
        } else {
            POOL_EVENT_REFRESH
        };
        let mut out = Vec::new();
        for cb in &self.pool_callbacks {
            if cb.event_id != wanted || cb.pool.is_some_and(|p| p != uuid) {
                continue;
            }
            let encoded = match event.event {
                Some(ev) => frame::encode(
                    &Header::message(
                        REMOTE_PROGRAM,
                        REMOTE_VERSION,
                        RemoteProcedure::StoragePoolEventLifecycle.number(),
                    ),
                    &StoragePoolEventLifecycleMsg {
                        callback_id: cb.id,
                        pool: pool.clone(),
                        event: ev,
                        detail: 0,
                    },
                ),
                None => frame::encode(
                    &Header::message(
                        REMOTE_PROGRAM,
                        REMOTE_VERSION,
                        RemoteProcedure::StoragePoolEventRefresh.number(),
                    ),
                    &StoragePoolEventRefreshMsg {
                        callback_id: cb.id,
                        pool: pool.clone(),
                    },
                ),
            };
            match encoded {
                Ok(f) => out.push(f),
                Err(e) => tracing::warn!("cannot encode storage pool event: {e}"),
            }
        }
        out
    }

    /// Removes a registration; false if it did not exist.
    pub fn remove(&mut self, id: i32, legacy: bool) -> bool {
        let before = self.callbacks.len();
        self.callbacks
            .retain(|c| !(c.legacy == legacy && c.id == id));
        before != self.callbacks.len()
    }

    /// The frames to push for one domain event (lifecycle or device removal) to the
    /// callbacks registered for its event id.
    pub fn frames_for(&self, event: &DomainEvent) -> Vec<Vec<u8>> {
        let uuid = *event.domain.uuid.as_bytes();
        let dom = NonnullDomain {
            name: event.domain.name.clone(),
            uuid,
            id: event.domain.id,
        };
        let wanted = event.event_id();
        let mut out = Vec::new();
        for cb in &self.callbacks {
            if cb.event_id != wanted || cb.domain.is_some_and(|d| d != uuid) {
                continue;
            }
            let encoded = match &event.removed_device {
                // device removals exist only as callback events (libvirt >= 1.2.1 clients)
                Some(_) if cb.legacy => continue,
                Some(alias) => frame::encode(
                    &Header::message(
                        REMOTE_PROGRAM,
                        REMOTE_VERSION,
                        RemoteProcedure::DomainEventCallbackDeviceRemoved.number(),
                    ),
                    &DomainEventCallbackDeviceRemovedMsg {
                        callback_id: cb.id,
                        msg: DomainEventDeviceRemovedMsg {
                            dom: dom.clone(),
                            dev_alias: alias.clone(),
                        },
                    },
                ),
                None => {
                    let msg = DomainEventLifecycleMsg {
                        dom: dom.clone(),
                        event: event.event,
                        detail: event.detail,
                    };
                    if cb.legacy {
                        let header = Header::message(
                            REMOTE_PROGRAM,
                            REMOTE_VERSION,
                            RemoteProcedure::DomainEventLifecycle.number(),
                        );
                        frame::encode(&header, &msg)
                    } else {
                        let header = Header::message(
                            REMOTE_PROGRAM,
                            REMOTE_VERSION,
                            RemoteProcedure::DomainEventCallbackLifecycle.number(),
                        );
                        frame::encode(
                            &header,
                            &DomainEventCallbackLifecycleMsg {
                                callback_id: cb.id,
                                msg,
                            },
                        )
                    }
                }
            };
            match encoded {
                Ok(f) => out.push(f),
                Err(e) => tracing::warn!("cannot encode a domain event: {e}"),
            }
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Client {
    pub fn new(
        id: u64,
        read_only_socket: bool,
        peer: crate::access::Peer,
        shared: Arc<Shared>,
        outbox: Arc<Outbox>,
    ) -> Client {
        Client {
            id,
            read_only_socket,
            peer,
            shared,
            outbox,
            keepalive: AtomicBool::new(false),
            close_callback: AtomicBool::new(false),
            remote_driver: AtomicBool::new(false),
            subscribe: Mutex::new(()),
            state: Mutex::new(State {
                read_only: read_only_socket,
                ..State::default()
            }),
            events: Arc::default(),
            streams: Mutex::default(),
        }
    }

    /// Runs `f` on the client's volume streams.
    pub fn with_streams<T>(&self, f: impl FnOnce(&mut crate::streams::Streams) -> T) -> T {
        f(&mut lock(&self.streams))
    }

    /// Sends a frame to the client; dropped silently if the client is gone.
    pub fn send(&self, frame: Vec<u8>) {
        self.outbox.send(frame);
    }

    /// The open driver connection, if any.
    pub fn connection(&self) -> Option<Connection> {
        lock(&self.state).conn.clone()
    }

    /// Whether a driver connection is open, and whether mutating calls are refused
    /// (read-only socket or read-only open).
    pub fn open_and_read_only(&self) -> (bool, bool) {
        let st = lock(&self.state);
        (st.conn.is_some(), st.read_only)
    }

    /// Stores the connection made by CONNECT_OPEN; false if one is open already.
    pub fn set_connection(&self, conn: Connection, read_only: bool) -> bool {
        let mut st = lock(&self.state);
        if st.conn.is_some() {
            return false;
        }
        st.read_only = st.read_only || read_only;
        st.conn = Some(conn);
        true
    }

    pub fn set_close_callback(&self, on: bool) {
        self.close_callback.store(on, Ordering::Relaxed);
    }

    pub fn enable_keepalive(&self) {
        self.keepalive.store(true, Ordering::Relaxed);
    }

    pub fn keepalive_enabled(&self) -> bool {
        self.keepalive.load(Ordering::Relaxed)
    }

    /// Runs `f` on the event registrations.
    pub fn with_events<T>(&self, f: impl FnOnce(&mut Events) -> T) -> T {
        f(&mut lock(&self.events))
    }

    /// Subscribes this client once to one event source of its connection: `slot` picks
    /// the state field that records the subscription, `subscribe` makes it with a
    /// callback that turns each event into frames for the outbox. Must not be called
    /// with the events lock held (the source calls back into it).
    fn ensure_subscribed_to<E: crate::access::EventObject + 'static>(
        &self,
        slot: fn(&mut State) -> &mut Option<u64>,
        subscribe: impl FnOnce(
            &Connection,
            Box<dyn Fn(&E) + Send + Sync>,
        ) -> Result<u64, rvirt_host::Error>,
        frames: fn(&Events, &E) -> Vec<Vec<u8>>,
    ) -> Result<(), rvirt_host::Error> {
        let _serial = lock(&self.subscribe);
        let conn = {
            let mut st = lock(&self.state);
            if slot(&mut st).is_some() {
                return Ok(());
            }
            let Some(conn) = st.conn.clone() else {
                return Ok(());
            };
            conn
        };
        let events = Arc::clone(&self.events);
        let outbox = Arc::clone(&self.outbox);
        // events about objects the client may not `getattr` are not delivered
        #[cfg(feature = "policy")]
        let filter = crate::access::EventFilter::new(self, &conn);
        let id = subscribe(
            &conn,
            Box::new(move |event: &E| {
                #[cfg(feature = "policy")]
                if let Some(filter) = &filter
                    && !filter.visible(event)
                {
                    return;
                }
                for f in frames(&lock(&events), event) {
                    outbox.send(f);
                }
            }),
        )?;
        *slot(&mut lock(&self.state)) = Some(id);
        Ok(())
    }

    /// Makes sure the driver delivers domain events to this client.
    pub fn ensure_subscribed(&self) -> Result<(), rvirt_host::Error> {
        self.ensure_subscribed_to(
            |st| &mut st.subscription,
            |conn, cb| conn.subscribe_events(move |e: &DomainEvent| cb(e)),
            Events::frames_for,
        )
    }

    /// Makes sure the connection's storage delivers pool events to this client.
    pub fn ensure_pool_subscribed(&self) -> Result<(), rvirt_host::Error> {
        self.ensure_subscribed_to(
            |st| &mut st.pool_subscription,
            |conn, cb| conn.subscribe_storage_pool_events(move |e: &PoolEvent| cb(e)),
            Events::pool_frames_for,
        )
    }

    /// Makes sure the connection's secret store delivers secret events to this client.
    pub fn ensure_secret_subscribed(&self) -> Result<(), rvirt_host::Error> {
        self.ensure_subscribed_to(
            |st| &mut st.secret_subscription,
            |conn, cb| conn.subscribe_secret_events(move |e: &SecretEventInfo| cb(e)),
            Events::secret_frames_for,
        )
    }

    /// Makes sure the connection's networks deliver network events to this client.
    pub fn ensure_network_subscribed(&self) -> Result<(), rvirt_host::Error> {
        self.ensure_subscribed_to(
            |st| &mut st.network_subscription,
            |conn, cb| {
                let nets = conn.networks()?;
                let cb: std::sync::Arc<dyn Fn(&NetworkEvent) + Send + Sync> =
                    std::sync::Arc::from(cb);
                nets.subscribe(cb)
            },
            Events::network_frames_for,
        )
    }

    /// Drops the driver connection and its event subscriptions (CONNECT_CLOSE or
    /// disconnect). Runs driver calls: call from a worker thread.
    pub fn close(&self) {
        let _serial = lock(&self.subscribe);
        let (conn, sub, pool_sub, secret_sub, net_sub) = {
            let mut st = lock(&self.state);
            (
                st.conn.take(),
                st.subscription.take(),
                st.pool_subscription.take(),
                st.secret_subscription.take(),
                st.network_subscription.take(),
            )
        };
        if let (Some(conn), Some(id)) = (&conn, net_sub) {
            match conn.networks().and_then(|n| n.unsubscribe(id)) {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(client = self.id, "network event unsubscribe failed: {e}")
                }
            }
        }
        if let (Some(conn), Some(id)) = (&conn, secret_sub)
            && let Err(e) = conn.unsubscribe_secret_events(id)
        {
            tracing::debug!(client = self.id, "secret event unsubscribe failed: {e}");
        }
        if let (Some(conn), Some(id)) = (&conn, sub)
            && let Err(e) = conn.unsubscribe_events(id)
        {
            tracing::debug!(client = self.id, "unsubscribe failed: {e}");
        }
        if let (Some(conn), Some(id)) = (&conn, pool_sub)
            && let Err(e) = conn.unsubscribe_storage_pool_events(id)
        {
            tracing::debug!(client = self.id, "pool event unsubscribe failed: {e}");
        }
        {
            let mut ev = lock(&self.events);
            ev.callbacks.clear();
            ev.pool_callbacks.clear();
            ev.secret_callbacks.clear();
            ev.network_callbacks.clear();
        }
        drop(conn);
    }
}

/// A keepalive message (PING or PONG).
pub fn keepalive_frame(procedure: i32) -> Vec<u8> {
    let header = Header::message(
        protocol::KEEPALIVE_PROGRAM,
        protocol::KEEPALIVE_VERSION,
        procedure,
    );
    frame::encode(&header, &()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvirt_host::DomainId;
    use rvirt_wire::protocol::event_id;
    use rvirt_wire::xdr;

    fn event(uuid: uuid::Uuid) -> DomainEvent {
        DomainEvent::lifecycle(
            DomainId {
                name: "vm".into(),
                uuid,
                id: 3,
            },
            2,
            0,
        )
    }

    #[test]
    fn device_removed_frames_go_to_their_callbacks_only() {
        let mut ev = Events::default();
        let lc = ev.add(event_id::LIFECYCLE, None);
        let rm = ev.add(event_id::DEVICE_REMOVED, None);
        assert!(ev.add_legacy(event_id::DEVICE_REMOVED));
        let dom = DomainId {
            name: "vm".into(),
            uuid: uuid::Uuid::nil(),
            id: 3,
        };
        let frames = ev.frames_for(&DomainEvent::device_removed(
            dom.clone(),
            "virtio-disk1".into(),
        ));
        assert_eq!(frames.len(), 1, "one modern callback; legacy ones get none");
        assert_eq!(&frames[0][12..16], 333i32.to_be_bytes());
        let body: DomainEventCallbackDeviceRemovedMsg = xdr::from_bytes(&frames[0][28..]).unwrap();
        assert_eq!(
            (
                body.callback_id,
                body.msg.dev_alias.as_str(),
                body.msg.dom.name.as_str()
            ),
            (rm, "virtio-disk1", "vm")
        );
        let frames = ev.frames_for(&DomainEvent::lifecycle(dom, 2, 0));
        assert_eq!(frames.len(), 1);
        let body: DomainEventCallbackLifecycleMsg = xdr::from_bytes(&frames[0][28..]).unwrap();
        assert_eq!(body.callback_id, lc);
    }

    #[test]
    fn registrations_and_frames() {
        let mut ev = Events::default();
        let a = ev.add(event_id::LIFECYCLE, None);
        let b = ev.add(event_id::REBOOT, None);
        let other = uuid::Uuid::from_bytes([9; 16]);
        let c = ev.add(event_id::LIFECYCLE, Some(*other.as_bytes()));
        assert!(ev.add_legacy(event_id::LIFECYCLE));
        assert!(!ev.add_legacy(event_id::LIFECYCLE));
        assert_ne!(a, b);
        let frames = ev.frames_for(&event(uuid::Uuid::nil()));
        assert_eq!(frames.len(), 2); // a + legacy; not the reboot one nor the filtered one
        let modern = &frames[0];
        assert_eq!(&modern[12..16], 318i32.to_be_bytes());
        let body: DomainEventCallbackLifecycleMsg = xdr::from_bytes(&modern[28..]).unwrap();
        assert_eq!(
            (body.callback_id, body.msg.event, body.msg.dom.id),
            (a, 2, 3)
        );
        assert_eq!(&frames[1][12..16], 107i32.to_be_bytes());
        assert_eq!(ev.frames_for(&event(other)).len(), 3);
        assert!(ev.remove(c, false));
        assert!(!ev.remove(c, false));
        assert!(ev.remove(event_id::LIFECYCLE, true));
        assert!(ev.remove(a, false) && ev.remove(b, false) && ev.callbacks.is_empty());
    }

    #[test]
    fn pool_registrations_and_frames() {
        use rvirt_wire::remote::{StoragePoolEventLifecycleMsg, StoragePoolEventRefreshMsg};
        let mut ev = Events::default();
        let p = uuid::Uuid::from_bytes([4; 16]);
        let lc = ev.add_pool(POOL_EVENT_LIFECYCLE, None);
        let rf = ev.add_pool(POOL_EVENT_REFRESH, Some(*p.as_bytes()));
        let other = ev.add_pool(POOL_EVENT_LIFECYCLE, Some([8; 16]));
        let event = |event| PoolEvent {
            name: "p".into(),
            uuid: p,
            event,
        };
        let frames = ev.pool_frames_for(&event(Some(2)));
        assert_eq!(
            frames.len(),
            1,
            "only the unfiltered lifecycle registration"
        );
        assert_eq!(&frames[0][12..16], 370i32.to_be_bytes());
        let body: StoragePoolEventLifecycleMsg = xdr::from_bytes(&frames[0][28..]).unwrap();
        assert_eq!(
            (body.callback_id, body.event, body.pool.name.as_str()),
            (lc, 2, "p")
        );
        let frames = ev.pool_frames_for(&event(None));
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0][12..16], 373i32.to_be_bytes());
        let body: StoragePoolEventRefreshMsg = xdr::from_bytes(&frames[0][28..]).unwrap();
        assert_eq!(body.callback_id, rf);
        assert!(ev.remove_pool(other) && !ev.remove_pool(other));
        assert!(ev.remove_pool(lc) && ev.remove_pool(rf));
        assert!(ev.pool_frames_for(&event(Some(0))).is_empty());
    }

    #[test]
    fn secret_registrations_and_frames() {
        use rvirt_host::secrets::SecretId;
        let mut ev = Events::default();
        let u = uuid::Uuid::from_bytes([6; 16]);
        let lc = ev.add_secret(SECRET_EVENT_LIFECYCLE, None);
        let vc = ev.add_secret(SECRET_EVENT_VALUE_CHANGED, Some(*u.as_bytes()));
        let other = ev.add_secret(SECRET_EVENT_VALUE_CHANGED, Some([9; 16]));
        let event = |event| SecretEventInfo {
            secret: SecretId {
                uuid: u,
                usage_type: 2,
                usage_id: "client.admin".into(),
            },
            event,
        };
        let frames = ev.secret_frames_for(&event(SecretEvent::Undefined));
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0][12..16], 382i32.to_be_bytes());
        let body: SecretEventLifecycleMsg = xdr::from_bytes(&frames[0][28..]).unwrap();
        assert_eq!(
            (body.callback_id, body.event, body.secret.usage_id.as_str()),
            (lc, 1, "client.admin")
        );
        let frames = ev.secret_frames_for(&event(SecretEvent::ValueChanged));
        assert_eq!(frames.len(), 1, "only the registration for this secret");
        assert_eq!(&frames[0][12..16], 383i32.to_be_bytes());
        let body: SecretEventValueChangedMsg = xdr::from_bytes(&frames[0][28..]).unwrap();
        assert_eq!((body.callback_id, body.secret.uuid), (vc, [6; 16]));
        assert!(ev.remove_secret(other) && !ev.remove_secret(other));
        assert!(ev.remove_secret(lc) && ev.remove_secret(vc));
        assert!(
            ev.secret_frames_for(&event(SecretEvent::Defined))
                .is_empty()
        );
    }

    #[test]
    fn keepalive_bytes() {
        let ping = keepalive_frame(protocol::KEEPALIVE_PING);
        assert_eq!(ping.len(), 28);
        assert_eq!(&ping[4..8], b"keep");
    }
}

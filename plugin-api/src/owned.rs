//! Connection-owned storage pools and networks (since 1.10).
//!
//! A remote hypervisor owns its storage and networks: on `esx://` the pools are the
//! host's datastores and the networks its port groups. A connection that owns its
//! objects answers [`ConnExtension::conn_storage`] and [`ConnExtension::conn_network`] (on the
//! object [`DriverConnection::extension`](crate::DriverConnection::extension) returns)
//! with one of the objects declared here; the host then sends every storage (network) call of that
//! connection to it instead of its own registries, and persists nothing for them.
//! Objects are addressed by name (a volume by its pool's name and its own); UUIDs are the
//! plugin's, derived from the remote object's identity so they stay stable across
//! connections.
//!
//! Both traits are declared from method lists ([`conn_storage_methods!`],
//! [`conn_network_methods!`]) so the SDK's panic guard is generated from the same lists.
//! Every method has a default body answering no-support with the libvirt API's name.

use crate::{PResult, PluginError, Uuid};
use abi_stable::{
    StableAbi, sabi_trait,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec},
};

/// A storage pool a connection owns: `remote_nonnull_storage_pool` and its state answers.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct OwnedPool {
    /// The pool's name (a datastore's name).
    pub name: RString,
    /// The pool's UUID, derived from the remote object's identity.
    pub uuid: Uuid,
    /// Whether the pool is active (`virStoragePoolIsActive`).
    pub active: bool,
    /// Whether the pool is persistent (`virStoragePoolIsPersistent`).
    pub persistent: bool,
    /// Whether the pool starts with the host (`virStoragePoolGetAutostart`).
    pub autostart: bool,
}

/// `virStoragePoolGetInfo` of an owned pool.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedPoolInfo {
    /// `VIR_STORAGE_POOL_*` state (2 running, 4 inaccessible).
    pub state: i32,
    /// Bytes.
    pub capacity: u64,
    /// Bytes.
    pub allocation: u64,
    /// Bytes.
    pub available: u64,
}

/// A volume an owned pool holds: `remote_nonnull_storage_vol`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct OwnedVol {
    /// The pool's name.
    pub pool: RString,
    /// The volume's name in the pool (a datastore path, `dir/disk.vmdk`).
    pub name: RString,
    /// The volume's key.
    pub key: RString,
}

/// `virStorageVolGetInfo` of an owned volume.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedVolInfo {
    /// `VIR_STORAGE_VOL_*` type (0 file, 1 block, 2 dir, 3 network, 4 netdir).
    pub kind: i32,
    /// Bytes.
    pub capacity: u64,
    /// Bytes.
    pub allocation: u64,
}

/// A network a connection owns: `remote_nonnull_network` and its state answers.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct OwnedNetwork {
    /// The network's name (a port group's name).
    pub name: RString,
    /// The network's UUID, derived from the remote object's identity.
    pub uuid: Uuid,
    /// Whether the network is active.
    pub active: bool,
    /// Whether the network is persistent.
    pub persistent: bool,
    /// Whether the network starts with the host.
    pub autostart: bool,
}

/// Calls `$callback! { ... }` with every method of [`ConnStorage`], in vtable order, as
/// [`driver_connection_methods!`](crate::driver_connection_methods) does for the
/// connection: `api_1_10 { ... }` (the last marked `#[sabi(last_prefix_field)]`) and
/// `appended { ... }` for later minors. Every method's default body answers no-support
/// naming the libvirt API.
#[macro_export]
macro_rules! conn_storage_methods {
    ($callback:ident) => {
        $callback! {
            api_1_10 {
                /// The pools the `VIR_CONNECT_LIST_STORAGE_POOLS_*` flags select (0: all).
                fn list_pools(&self, flags: u32) -> PResult<RVec<OwnedPool>> =
                    "virConnectListAllStoragePools";
                /// Look a pool up by name.
                fn pool_by_name(&self, name: RStr<'_>) -> PResult<OwnedPool> =
                    "virStoragePoolLookupByName";
                /// Look a pool up by UUID.
                fn pool_by_uuid(&self, uuid: Uuid) -> PResult<OwnedPool> =
                    "virStoragePoolLookupByUUID";
                /// State, capacity, allocation and available bytes of a pool.
                fn pool_info(&self, pool: RStr<'_>) -> PResult<OwnedPoolInfo> =
                    "virStoragePoolGetInfo";
                /// The pool XML (`VIR_STORAGE_XML_INACTIVE` 1).
                fn pool_xml(&self, pool: RStr<'_>, flags: u32) -> PResult<RString> =
                    "virStoragePoolGetXMLDesc";
                /// Re-read the pool's state and volumes.
                fn pool_refresh(&self, pool: RStr<'_>, flags: u32) -> PResult<()> =
                    "virStoragePoolRefresh";
                /// The pool's volumes.
                fn list_volumes(&self, pool: RStr<'_>, flags: u32) -> PResult<RVec<OwnedVol>> =
                    "virStoragePoolListAllVolumes";
                /// Look a volume up by its name in a pool.
                fn volume_by_name(&self, pool: RStr<'_>, name: RStr<'_>) -> PResult<OwnedVol> =
                    "virStorageVolLookupByName";
                /// Look a volume up by key.
                fn volume_by_key(&self, key: RStr<'_>) -> PResult<OwnedVol> =
                    "virStorageVolLookupByKey";
                /// Look a volume up by path (`[datastore] dir/disk.vmdk` on ESX).
                fn volume_by_path(&self, path: RStr<'_>) -> PResult<OwnedVol> =
                    "virStorageVolLookupByPath";
                /// Type, capacity and allocation of a volume.
                fn volume_info(&self, pool: RStr<'_>, name: RStr<'_>, flags: u32) -> PResult<OwnedVolInfo> =
                    "virStorageVolGetInfoFlags";
                /// The volume XML.
                fn volume_xml(&self, pool: RStr<'_>, name: RStr<'_>, flags: u32) -> PResult<RString> =
                    "virStorageVolGetXMLDesc";
                /// The volume's path.
                fn volume_path(&self, pool: RStr<'_>, name: RStr<'_>) -> PResult<RString> =
                    "virStorageVolGetPath";
                /// Create a volume in a pool from a `<volume>` document.
                fn create_volume(&self, pool: RStr<'_>, xml: RStr<'_>, flags: u32) -> PResult<OwnedVol> =
                    "virStorageVolCreateXML";
                /// Create a volume in a pool from a `<volume>` document as a copy of the
                /// volume `from_name` of the pool `from_pool`.
                fn create_volume_from(
                    &self,
                    pool: RStr<'_>,
                    xml: RStr<'_>,
                    from_pool: RStr<'_>,
                    from_name: RStr<'_>,
                    flags: u32
                ) -> PResult<OwnedVol> = "virStorageVolCreateXMLFrom";
                /// Delete a volume.
                #[sabi(last_prefix_field)]
                fn delete_volume(&self, pool: RStr<'_>, name: RStr<'_>, flags: u32) -> PResult<()> =
                    "virStorageVolDelete";
            }
            appended {
            }
        }
    };
}

/// Calls `$callback! { ... }` with every method of [`ConnNetwork`], as
/// [`conn_storage_methods!`] does for [`ConnStorage`].
#[macro_export]
macro_rules! conn_network_methods {
    ($callback:ident) => {
        $callback! {
            api_1_10 {
                /// The networks the `VIR_CONNECT_LIST_NETWORKS_*` flags select (0: all).
                fn list_networks(&self, flags: u32) -> PResult<RVec<OwnedNetwork>> =
                    "virConnectListAllNetworks";
                /// Look a network up by name.
                fn network_by_name(&self, name: RStr<'_>) -> PResult<OwnedNetwork> =
                    "virNetworkLookupByName";
                /// Look a network up by UUID.
                fn network_by_uuid(&self, uuid: Uuid) -> PResult<OwnedNetwork> =
                    "virNetworkLookupByUUID";
                /// The network XML (`VIR_NETWORK_XML_INACTIVE` 1).
                #[sabi(last_prefix_field)]
                fn network_xml(&self, name: RStr<'_>, flags: u32) -> PResult<RString> =
                    "virNetworkGetXMLDesc";
            }
            appended {
            }
        }
    };
}

/// Calls `$callback! { ... }` with every method of [`ConnExtension`], the second vtable of
/// a connection (the `DriverConnection` vtable is full): `api_1_10 { ... }` and
/// `appended { ... }`, as [`conn_storage_methods!`]. Later minors append here.
#[macro_export]
macro_rules! conn_extension_methods {
    ($callback:ident) => {
        $callback! {
            api_1_10 {
                /// The storage this connection owns (a remote hypervisor's datastores):
                /// `RSome` sends every storage pool and volume call of the connection to
                /// it; `RNone`, or the default no-support, leaves them to the host's own
                /// pools (server-owned). Asked once, when the connection opens.
                fn conn_storage(&self) -> PResult<ROption<ConnStorageBox>> =
                    "virConnectListAllStoragePools";
                /// The networks this connection owns (a remote hypervisor's port groups),
                /// as `conn_storage` for storage.
                fn conn_network(&self) -> PResult<ROption<ConnNetworkBox>> =
                    "virConnectListAllNetworks";
                /// `virDomainSetMemoryStatsPeriod`: how often (seconds; 0 stops) the
                /// guest's memory statistics are collected, for the running guest
                /// (`VIR_DOMAIN_AFFECT_LIVE`, 1) and/or its persistent definition
                /// (`VIR_DOMAIN_AFFECT_CONFIG`, 2). Since 1.10.
                #[sabi(last_prefix_field)]
                fn set_memory_stats_period(&self, uuid: Uuid, period: i32, flags: u32) -> PResult<()> =
                    "virDomainSetMemoryStatsPeriod";
            }
            appended {
            }
        }
    };
}

/// Declares a trait whose every method defaults to no-support, from a method list.
macro_rules! declare_owned {
    ($(#[$tattr:meta])* $name:ident;
        api_1_10 {
            $( $(#[$battr:meta])* fn $bm:ident(&self $(, $ba:ident : $bt:ty)* $(,)?) -> $br:ty = $bapi:literal; )*
        }
        appended {
            $( $(#[$aattr:meta])* fn $am:ident(&self $(, $aa:ident : $at:ty)* $(,)?) -> $ar:ty = $aapi:literal; )*
        }
    ) => {
        $(#[$tattr])*
        #[sabi_trait]
        pub trait $name: Send + Sync {
            $(
                $(#[$battr])*
                fn $bm(&self $(, $ba: $bt)*) -> $br {
                    let _ = ($($ba,)*);
                    RResult::RErr(PluginError::no_support($bapi))
                }
            )*
            $(
                $(#[$aattr])*
                fn $am(&self $(, $aa: $at)*) -> $ar {
                    let _ = ($($aa,)*);
                    RResult::RErr(PluginError::no_support($aapi))
                }
            )*
        }
    };
}

macro_rules! declare_conn_storage {
    ($($t:tt)*) => {
        declare_owned! {
            /// The storage a connection owns (since 1.10): its pools and their volumes,
            /// addressed by name. Methods are declared in [`conn_storage_methods!`].
            ConnStorage; $($t)*
        }
    };
}

macro_rules! declare_conn_network {
    ($($t:tt)*) => {
        declare_owned! {
            /// The networks a connection owns (since 1.10), addressed by name. Methods
            /// are declared in [`conn_network_methods!`].
            ConnNetwork; $($t)*
        }
    };
}

macro_rules! declare_conn_extension {
    ($($t:tt)*) => {
        declare_owned! {
            /// A connection's extension object (since 1.10), answered by
            /// `DriverConnection::extension`: what a connection offers beyond the
            /// `DriverConnection` vtable. Methods are declared in
            /// [`conn_extension_methods!`].
            ConnExtension; $($t)*
        }
    };
}

conn_storage_methods!(declare_conn_storage);
conn_network_methods!(declare_conn_network);
conn_extension_methods!(declare_conn_extension);

/// The boxed connection extension object.
pub type ConnExtensionBox = ConnExtension_TO<'static, RBox<()>>;

/// The boxed connection-owned storage.
pub type ConnStorageBox = ConnStorage_TO<'static, RBox<()>>;

/// The boxed connection-owned networks.
pub type ConnNetworkBox = ConnNetwork_TO<'static, RBox<()>>;

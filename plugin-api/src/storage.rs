//! The storage facet (since plugin API 1.3): storage backends, the streams that move
//! volume contents, and the services the host lends a plugin.
//!
//! A plugin that serves libvirt storage pool types offers a [`StorageFacet`] in the
//! root module's `storage` field. The facet is a prefix type of its own, with its own
//! minor line ([`STORAGE_FACET_VERSION`]), so it grows without touching `PluginMod`.
//!
//! The backend is narrow and mostly stateless: the host owns pool and volume objects
//! (definitions, autostart, the active state it reports); the backend does the work
//! specific to its pool type and reports what exists. Definitions cross as libvirt XML
//! (`<pool>`, `<volume>`), results as XML or small values.

use crate::{ErrorCode, ErrorDomain, PResult, PluginError};
use abi_stable::{
    StableAbi, sabi_trait,
    std_types::{RBox, RResult, RSlice, RStr, RString, RVec},
};

/// The version of a facet: its own major and minor line, apart from the plugin API's.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FacetVersion {
    /// Incompatible changes (never so far).
    pub major: u32,
    /// Fields appended to the facet or methods appended to its traits.
    pub minor: u32,
}

/// The storage facet's version as this crate defines it: 1.0 came with plugin API 1.3.
pub const STORAGE_FACET_VERSION: FacetVersion = FacetVersion { major: 1, minor: 0 };

/// What a pool holds after a refresh (`virStoragePoolRefresh`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PoolRefresh {
    /// Total size of the pool, in bytes.
    pub capacity: u64,
    /// Bytes allocated to volumes (and anything else using the pool's space).
    pub allocation: u64,
    /// Bytes free for new volumes.
    pub available: u64,
    /// One `<volume>` document per volume found, each with its name, key, target path,
    /// capacity, allocation and format.
    pub volumes: RVec<RString>,
}

/// Log levels of [`HostServices::log`].
pub mod log_level {
    /// Something failed.
    pub const ERROR: u32 = 1;
    /// Something looks wrong.
    pub const WARN: u32 = 2;
    /// Worth knowing.
    pub const INFO: u32 = 3;
    /// For debugging.
    pub const DEBUG: u32 = 4;
}

/// A storage volume resolved for a domain disk (`<disk type='volume'>`): what the
/// hypervisor needs to open it, as the host's storage subsystem knows it
/// ([`HostServices::volume_source`], since 1.4).
///
/// A plain `#[repr(C)]` struct: only a major may change it. Anything a later minor needs
/// beyond these fields (network hosts, authentication) can be read from `volume_xml`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct VolumeSource {
    /// The disk type the volume stands for: `file`, `block`, `dir` or `network`
    /// (libvirt's "actual type" of a volume disk).
    pub disk_type: RString,
    /// The volume's path on the host (its target path).
    pub path: RString,
    /// The volume's format (`raw`, `qcow2`, ...); empty when the pool reports none.
    pub format: RString,
    /// The type of the pool holding it (`dir`, `fs`, `logical`, ...).
    pub pool_type: RString,
    /// The volume's `<volume>` document as the pool reports it now.
    pub volume_xml: RString,
}

/// One query parameter of a [`ConnectionUri`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct UriParam {
    /// The parameter's name.
    pub name: RString,
    /// Its value, percent-decoded.
    pub value: RString,
}

/// The URI of the connection being opened, as the host parsed it
/// ([`HostServices::connection_uri`], since 1.4).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ConnectionUri {
    /// The URI as given (`qemu:///embed?root=/tmp/x`).
    pub original: RString,
    /// The driver part of the scheme (`qemu`).
    pub driver: RString,
    /// The path (`/system`, `/session`, `/embed`).
    pub path: RString,
    /// The query parameters, in order.
    pub params: RVec<UriParam>,
}

/// The no-support answer of a host-services method the host lacks: a plugin built against
/// a newer minor running in an older host reads it (the method is absent from the older
/// host's vtable, so the trait object runs the default body).
fn host_lacks(operation: &str, domain: ErrorDomain) -> PluginError {
    PluginError::new(
        ErrorCode::NoSupport,
        domain,
        format!(
            "this function is not supported by the connection driver: {operation} (the host's services predate it)"
        ),
    )
}

/// What the host lends a plugin when it opens one of the plugin's facets (since 1.3) or,
/// since 1.4, a hypervisor connection (`PluginMod::open_with_host`): the system root,
/// secrets, logging, the connection's URI and storage volumes. Replaces side channels such
/// as the `RVIRT_SYSTEM_ROOT` environment variable for plugins opened with it.
///
/// Methods after `log` were appended by later minors. Each has a default body answering
/// no-support: a host of an older minor lacks them in its vtable, and a plugin calling
/// one then gets that error instead of a panic.
#[sabi_trait]
pub trait HostServices: Send + Sync {
    /// The directory system paths live under (`/`, or the daemon's `--root DIR`).
    fn system_root(&self) -> RString;
    /// The value of a secret, by `VIR_SECRET_USAGE_TYPE_*` and usage id (or UUID text).
    /// A host without secrets answers no-support (`virSecretGetValue`).
    fn secret_value(&self, usage_type: i32, usage_id: RStr<'_>) -> PResult<RVec<u8>>;
    /// A line for the host's log, at one of the [`log_level`]s.
    #[sabi(last_prefix_field)]
    fn log(&self, level: u32, message: RStr<'_>);
    /// The URI of the hypervisor connection these services were lent with, as the host
    /// parsed it. Services lent to a storage facet answer no-support. Since 1.4.
    fn connection_uri(&self) -> PResult<ConnectionUri> {
        RResult::RErr(host_lacks("virConnectGetURI", ErrorDomain::None))
    }
    /// Resolves volume `volume` of storage pool `pool` among the pools bound to the
    /// connection (libvirt's translation of a `<disk type='volume'>`): an inactive pool
    /// answers `VIR_ERR_CONFIG_UNSUPPORTED` (as libvirt's), an unknown pool
    /// `VIR_ERR_NO_STORAGE_POOL`, an unknown volume `VIR_ERR_NO_STORAGE_VOL`. Since 1.4.
    fn volume_source(&self, pool: RStr<'_>, volume: RStr<'_>) -> PResult<VolumeSource> {
        let _ = (pool, volume);
        RResult::RErr(host_lacks("virStorageVolGetPath", ErrorDomain::Storage))
    }
    /// Plugs a guest interface into virtual network `network` of the connection (what
    /// libvirt's hypervisor drivers do for `<interface type='network'>` at start):
    /// `port_xml` is a `<networkport>` document (UUID, owner, MAC); answers it as the
    /// network completed it, with `<plug type='network' bridge='...'/>` naming the bridge
    /// the hypervisor's TAP joins. An inactive network answers `VIR_ERR_OPERATION_INVALID`,
    /// an unknown one `VIR_ERR_NO_NETWORK`. Since 1.5.
    fn network_port_create(&self, network: RStr<'_>, port_xml: RStr<'_>) -> PResult<RString> {
        let _ = (network, port_xml);
        RResult::RErr(host_lacks("virNetworkPortCreateXML", ErrorDomain::Network))
    }
    /// Releases the port `port_uuid` of `network` (the guest stopped). Since 1.5.
    fn network_port_delete(&self, network: RStr<'_>, port_uuid: RStr<'_>) -> PResult<()> {
        let _ = (network, port_uuid);
        RResult::RErr(host_lacks("virNetworkPortDelete", ErrorDomain::Network))
    }
    /// The definition of storage pool `pool` among the pools bound to the connection
    /// (`virStoragePoolGetXMLDesc` with no flags): what a hypervisor needs beyond
    /// [`VolumeSource`] to open a volume of a network pool (`<source><host>`, `<auth>`,
    /// the Ceph pool or iSCSI target). An unknown pool answers
    /// `VIR_ERR_NO_STORAGE_POOL`, a URI without storage no-support. Since 1.6.
    fn storage_pool_xml(&self, pool: RStr<'_>) -> PResult<RString> {
        let _ = pool;
        RResult::RErr(host_lacks("virStoragePoolGetXMLDesc", ErrorDomain::Storage))
    }
}

/// The boxed host services trait object.
pub type HostServicesBox = HostServices_TO<'static, RBox<()>>;

/// Calls `$callback! { ... }` with every method of [`Stream`], in vtable order: the single
/// declaration of the stream's methods (the SDK's guard is generated from it too).
///
/// Groups as in [`driver_connection_methods!`](crate::driver_connection_methods): `api_1_3`
/// (all required; the last marked `last_prefix_field`) and `appended` (later minors, with
/// default bodies answering no-support).
#[macro_export]
macro_rules! stream_methods {
    ($callback:ident) => {
        $callback! {
            api_1_3 {
                /// Hands the next chunk to the stream's sink (an upload).
                fn send(&mut self, data: RSlice<'_, u8>) -> PResult<()> = "virStreamSend";
                /// The next chunk from the stream's source (a download), at most `max`
                /// bytes; an empty chunk is the end of the stream.
                fn recv(&mut self, max: u64) -> PResult<RVec<u8>> = "virStreamRecv";
                /// Ends the stream: everything sent is committed (an upload), or the
                /// stream is closed after its end (a download).
                fn finish(&mut self) -> PResult<()> = "virStreamFinish";
                /// Abandons the stream; what an upload already wrote may stay.
                #[sabi(last_prefix_field)]
                fn abort(&mut self) -> PResult<()> = "virStreamAbort";
            }
            appended {}
        }
    };
}

macro_rules! declare_stream {
    (
        api_1_3 {
            $( $(#[$battr:meta])* fn $bm:ident(&mut self $(, $ba:ident : $bt:ty)* $(,)?) -> $br:ty = $bapi:literal; )*
        }
        appended {
            $( $(#[$aattr:meta])* fn $am:ident(&mut self $(, $aa:ident : $at:ty)* $(,)?) -> $ar:ty = $aapi:literal; )*
        }
    ) => {
        /// A byte stream the host reads or writes in chunks: volume uploads and downloads
        /// now, consoles later. One side only sends, the other only receives.
        ///
        /// The methods are declared once, in [`stream_methods!`].
        #[sabi_trait]
        pub trait Stream: Send {
            $(
                $(#[$battr])*
                fn $bm(&mut self $(, $ba: $bt)*) -> $br;
            )*
            $(
                $(#[$aattr])*
                fn $am(&mut self $(, $aa: $at)*) -> $ar {
                    let _ = ($($aa,)*);
                    RResult::RErr(PluginError::no_support($aapi))
                }
            )*
        }
    };
}

stream_methods!(declare_stream);

/// The boxed stream trait object.
pub type StreamBox = Stream_TO<'static, RBox<()>>;

/// Calls `$callback! { ... }` with every operation of [`StorageBackend`] after its
/// `pool_type` (which every backend answers), in vtable order: the single declaration of
/// the backend's operations. The trait and the SDK's panic guard are generated from it.
///
/// Groups: `api_1_3` (the first release of the storage facet; the last marked
/// `last_prefix_field`) and `appended` (later minors). Every operation has a default body
/// answering no-support naming its libvirt API and the backend's pool type: a backend
/// implements only what its pool type can do.
#[macro_export]
macro_rules! storage_backend_methods {
    ($callback:ident) => {
        $callback! {
            api_1_3 {
                /// Whether the pool is already active on this host (e.g. mounted), for a
                /// pool the host believes inactive.
                fn check_pool(&self, pool_xml: RStr<'_>) -> PResult<bool> =
                    "virStoragePoolIsActive";
                /// Builds the pool's underlying storage (`VIR_STORAGE_POOL_BUILD_*` flags).
                fn build_pool(&self, pool_xml: RStr<'_>, flags: u32) -> PResult<()> =
                    "virStoragePoolBuild";
                /// Makes the pool usable (mount, log in, activate).
                fn start_pool(&self, pool_xml: RStr<'_>) -> PResult<()> =
                    "virStoragePoolCreate";
                /// Releases the pool (unmount, log out, deactivate).
                fn stop_pool(&self, pool_xml: RStr<'_>) -> PResult<()> =
                    "virStoragePoolDestroy";
                /// Deletes the pool's underlying storage (`VIR_STORAGE_POOL_DELETE_*`).
                fn delete_pool(&self, pool_xml: RStr<'_>, flags: u32) -> PResult<()> =
                    "virStoragePoolDelete";
                /// Sizes of the pool and the volumes it holds.
                fn refresh_pool(&self, pool_xml: RStr<'_>) -> PResult<PoolRefresh> =
                    "virStoragePoolRefresh";
                /// Creates a volume (`VIR_STORAGE_VOL_CREATE_*`); answers the volume's XML
                /// as created (key, target path, sizes).
                fn create_volume(
                    &self,
                    pool_xml: RStr<'_>,
                    vol_xml: RStr<'_>,
                    flags: u32
                ) -> PResult<RString> = "virStorageVolCreateXML";
                /// Creates a volume holding a copy of another (possibly of another pool);
                /// answers the new volume's XML.
                fn create_volume_from(
                    &self,
                    pool_xml: RStr<'_>,
                    vol_xml: RStr<'_>,
                    src_pool_xml: RStr<'_>,
                    src_vol_xml: RStr<'_>,
                    flags: u32
                ) -> PResult<RString> = "virStorageVolCreateXMLFrom";
                /// Deletes a volume (`VIR_STORAGE_VOL_DELETE_*`).
                fn delete_volume(
                    &self,
                    pool_xml: RStr<'_>,
                    vol_xml: RStr<'_>,
                    flags: u32
                ) -> PResult<()> = "virStorageVolDelete";
                /// Changes a volume's capacity, in bytes (`VIR_STORAGE_VOL_RESIZE_*`).
                fn resize_volume(
                    &self,
                    pool_xml: RStr<'_>,
                    vol_xml: RStr<'_>,
                    capacity: u64,
                    flags: u32
                ) -> PResult<()> = "virStorageVolResize";
                /// Overwrites a volume's data (`VIR_STORAGE_VOL_WIPE_ALG_*`).
                fn wipe_volume(
                    &self,
                    pool_xml: RStr<'_>,
                    vol_xml: RStr<'_>,
                    algorithm: u32,
                    flags: u32
                ) -> PResult<()> = "virStorageVolWipePattern";
                /// The volume's XML as it is now (sizes, format).
                fn refresh_volume(
                    &self,
                    pool_xml: RStr<'_>,
                    vol_xml: RStr<'_>
                ) -> PResult<RString> =
                    "virStorageVolGetXMLDesc";
                /// A stream the host `send`s the volume's new contents to, from `offset`
                /// (at most `length` bytes, 0 = to the end), then `finish`es.
                fn upload(
                    &self,
                    pool_xml: RStr<'_>,
                    vol_xml: RStr<'_>,
                    offset: u64,
                    length: u64,
                    flags: u32
                ) -> PResult<StreamBox> = "virStorageVolUpload";
                /// A stream the host `recv`s the volume's contents from, from `offset` (at
                /// most `length` bytes, 0 = to the end), until an empty chunk.
                fn download(
                    &self,
                    pool_xml: RStr<'_>,
                    vol_xml: RStr<'_>,
                    offset: u64,
                    length: u64,
                    flags: u32
                ) -> PResult<StreamBox> = "virStorageVolDownload";
                /// Pool sources this backend can find from a `<source>` spec; answers a
                /// `<sources>` document.
                #[sabi(last_prefix_field)]
                fn find_pool_sources(
                    &self,
                    source_spec_xml: RStr<'_>,
                    flags: u32
                ) -> PResult<RString> =
                    "virConnectFindStoragePoolSources";
            }
            appended {}
        }
    };
}

macro_rules! declare_storage_backend {
    (
        api_1_3 {
            $( $(#[$battr:meta])* fn $bm:ident(&$bs:ident $(, $ba:ident : $bt:ty)* $(,)?) -> $br:ty = $bapi:literal; )*
        }
        appended {
            $( $(#[$aattr:meta])* fn $am:ident(&$as:ident $(, $aa:ident : $at:ty)* $(,)?) -> $ar:ty = $aapi:literal; )*
        }
    ) => {
        /// One storage backend: the type-specific work for the pools of one pool type.
        ///
        /// The host owns pool and volume objects and passes their definitions in every
        /// call; the backend keeps no per-pool state the host relies on (it may cache).
        /// Every operation has a default body answering no-support, naming the libvirt API
        /// and the backend's pool type, so a backend implements what its type can do.
        ///
        /// The operations are declared once, in [`storage_backend_methods!`].
        #[sabi_trait]
        pub trait StorageBackend: Send + Sync {
            /// The pool type this backend serves (as given to the facet's `open`).
            fn pool_type(&self) -> RString;
            $(
                $(#[$battr])*
                fn $bm(&$bs $(, $ba: $bt)*) -> $br {
                    let _ = ($($ba,)*);
                    RResult::RErr(PluginError::no_support_by_backend($bapi, &$bs.pool_type()))
                }
            )*
            $(
                $(#[$aattr])*
                fn $am(&$as $(, $aa: $at)*) -> $ar {
                    let _ = ($($aa,)*);
                    RResult::RErr(PluginError::no_support_by_backend($aapi, &$as.pool_type()))
                }
            )*
        }
    };
}

storage_backend_methods!(declare_storage_backend);

/// The boxed storage backend trait object.
pub type StorageBackendBox = StorageBackend_TO<'static, RBox<()>>;

/// The storage facet of the root module: the pool types a plugin serves and the entry
/// that opens a backend for one of them. A prefix type with its own minor line
/// ([`FacetVersion`]): later facet minors append fields after `open`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = StorageFacet_Ref)))]
pub struct StorageFacet {
    /// The facet version the plugin was built against.
    pub api: FacetVersion,
    /// The libvirt pool types served (`dir`, `logical`, ...).
    pub pool_types: extern "C" fn() -> RVec<RString>,
    /// Opens a backend for one of `pool_types`; `host` stays with the backend.
    #[sabi(last_prefix_field)]
    pub open:
        extern "C" fn(pool_type: RStr<'_>, host: HostServicesBox) -> PResult<StorageBackendBox>,
}

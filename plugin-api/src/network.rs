//! The network facet (since plugin API 1.5): network backends, which make libvirt virtual
//! networks exist on the host (a bridge, addresses, DHCP and DNS, firewall rules) and plug
//! guests' interfaces into them.
//!
//! A plugin that serves libvirt forward modes offers a [`NetworkFacet`] in the root
//! module's `network` field: a prefix type with its own minor line
//! ([`NETWORK_FACET_VERSION`]). The host owns network objects (definitions, UUIDs,
//! autostart, the active state it reports, ports, events) and resolves a backend by the
//! network's forward mode (`isolated` for a network without `<forward>`); the backend does
//! the work and keeps nothing the host relies on: every call carries the network's
//! definition (and a directory where the backend may keep run files for that network).

use crate::{ErrorCode, ErrorDomain, FacetVersion, HostServicesBox, PResult, PluginError};
use abi_stable::{
    StableAbi, sabi_trait,
    std_types::{RBox, RResult, RStr, RString, RVec},
};

/// The network facet's version as this crate defines it: 1.0 came with plugin API 1.5.
pub const NETWORK_FACET_VERSION: FacetVersion = FacetVersion { major: 1, minor: 0 };

/// The forward mode the host resolves for a network without `<forward>`.
pub const ISOLATED_MODE: &str = "isolated";

/// Where a guest interface was plugged (the answer of [`NetworkBackend::plug_port`]),
/// modelled on CNI's ADD result and libvirt's `virNetworkPort` `<plug>`.
///
/// A plain `#[repr(C)]` struct: only a major may change it; anything later needs beyond
/// these fields can be carried in `port_xml`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PortPlug {
    /// libvirt's plug type: `network`, `bridge`, `direct` or `hostdev-pci`.
    pub plug_type: RString,
    /// The bridge the guest's tap joins (plug types `network` and `bridge`), else empty.
    pub bridge: RString,
    /// The host-side device the backend made for the guest, or empty when the hypervisor
    /// makes it (the usual case: QEMU's tap is created by the hypervisor driver).
    pub tap: RString,
    /// The MTU the guest's interface must use; 0 for the default.
    pub mtu: u32,
    /// The `<networkport>` document as the backend completed it (with its `<plug>`).
    pub port_xml: RString,
}

/// One DHCP lease (`virNetworkDHCPLease`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The network's interface (its bridge).
    pub iface: RString,
    /// Seconds since the epoch when the lease expires; 0 for never.
    pub expiry_time: i64,
    /// `VIR_IP_ADDR_TYPE_IPV4` (0) or `VIR_IP_ADDR_TYPE_IPV6` (1).
    pub ip_type: i32,
    /// The client's MAC address (may be empty for IPv6).
    pub mac: RString,
    /// The IAID (IPv6), or empty.
    pub iaid: RString,
    /// The leased address.
    pub ipaddr: RString,
    /// Its prefix length.
    pub prefix: u32,
    /// The client's host name, or empty.
    pub hostname: RString,
    /// The client id (DUID for IPv6), or empty.
    pub clientid: RString,
}

/// The no-support error of a network backend: the operation (by its libvirt API name) and
/// the forward mode of the backend that lacks it.
pub fn no_support_by_network_backend(operation: &str, mode: &str) -> PluginError {
    PluginError::new(
        ErrorCode::NoSupport,
        ErrorDomain::Network,
        format!(
            "this function is not supported by the connection driver: {operation} (network backend '{mode}')"
        ),
    )
}

/// Calls `$callback! { ... }` with every operation of [`NetworkBackend`] after its
/// `forward_mode` (which every backend answers), in vtable order: the single declaration
/// of the backend's operations. The trait and the SDK's panic guard are generated from it.
///
/// Groups: `api_1_5` (the first release of the network facet; the last marked
/// `last_prefix_field`) and `appended` (later minors). Every operation has a default body
/// answering no-support naming its libvirt API and the backend's forward mode.
#[macro_export]
macro_rules! network_backend_methods {
    ($callback:ident) => {
        $callback! {
            api_1_5 {
                /// Makes the network exist (bridge, addresses, DHCP, firewall). `state_dir`
                /// is a directory the backend may keep the network's run files in (empty
                /// for a host root kept in memory). Answers live additions to the
                /// definition as a `<network>` document holding what the backend chose
                /// (e.g. `<bridge name='virbr3'/>`), or an empty string.
                fn start_network(
                    &self,
                    net_xml: RStr<'_>,
                    state_dir: RStr<'_>
                ) -> PResult<RString> = "virNetworkCreate";
                /// Undoes `start_network` (the live definition, with what it added).
                fn stop_network(&self, net_xml: RStr<'_>, state_dir: RStr<'_>) -> PResult<()> =
                    "virNetworkDestroy";
                /// Whether the network the host believes active still runs (a restarted
                /// host reattaches to it; `false` makes the host start it again).
                fn check_network(
                    &self,
                    net_xml: RStr<'_>,
                    state_dir: RStr<'_>
                ) -> PResult<bool> = "virNetworkIsActive";
                /// Plugs a guest interface (a `<networkport>` document) into the network.
                fn plug_port(&self, net_xml: RStr<'_>, port_xml: RStr<'_>) -> PResult<PortPlug> =
                    "virNetworkPortCreateXML";
                /// Releases what `plug_port` took.
                fn unplug_port(&self, net_xml: RStr<'_>, port_xml: RStr<'_>) -> PResult<()> =
                    "virNetworkPortDelete";
                /// The DHCP leases of the network, of one MAC address when `mac` is not
                /// empty.
                fn dhcp_leases(&self, net_xml: RStr<'_>, mac: RStr<'_>) -> PResult<RVec<Lease>> =
                    "virNetworkGetDHCPLeases";
                /// Applies an update the host already made to the definition (`net_xml`,
                /// the updated live definition) to the running network: `command`,
                /// `section`, `parent_index`, `xml` and `flags` as `virNetworkUpdate` got
                /// them.
                #[sabi(last_prefix_field)]
                fn update(
                    &self,
                    net_xml: RStr<'_>,
                    command: u32,
                    section: u32,
                    parent_index: i32,
                    xml: RStr<'_>,
                    flags: u32
                ) -> PResult<()> = "virNetworkUpdate";
            }
            appended {}
        }
    };
}

macro_rules! declare_network_backend {
    (
        api_1_5 {
            $( $(#[$battr:meta])* fn $bm:ident(&$bs:ident $(, $ba:ident : $bt:ty)* $(,)?) -> $br:ty = $bapi:literal; )*
        }
        appended {
            $( $(#[$aattr:meta])* fn $am:ident(&$as:ident $(, $aa:ident : $at:ty)* $(,)?) -> $ar:ty = $aapi:literal; )*
        }
    ) => {
        /// One network backend: the host-side work for the networks of one forward mode.
        ///
        /// The host owns network objects and passes their definitions in every call; the
        /// backend keeps no per-network state the host relies on. Every operation has a
        /// default body answering no-support, naming the libvirt API and the backend's
        /// forward mode.
        ///
        /// The operations are declared once, in [`network_backend_methods!`].
        #[sabi_trait]
        pub trait NetworkBackend: Send + Sync {
            /// The forward mode this backend serves (as given to the facet's `open`).
            fn forward_mode(&self) -> RString;
            $(
                $(#[$battr])*
                fn $bm(&$bs $(, $ba: $bt)*) -> $br {
                    let _ = ($($ba,)*);
                    RResult::RErr(no_support_by_network_backend($bapi, &$bs.forward_mode()))
                }
            )*
            $(
                $(#[$aattr])*
                fn $am(&$as $(, $aa: $at)*) -> $ar {
                    let _ = ($($aa,)*);
                    RResult::RErr(no_support_by_network_backend($aapi, &$as.forward_mode()))
                }
            )*
        }
    };
}

network_backend_methods!(declare_network_backend);

/// The boxed network backend trait object.
pub type NetworkBackendBox = NetworkBackend_TO<'static, RBox<()>>;

/// The network facet of the root module: the forward modes a plugin serves and the entry
/// that opens a backend for one of them. A prefix type with its own minor line
/// ([`FacetVersion`]): later facet minors append fields after `open`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = NetworkFacet_Ref)))]
pub struct NetworkFacet {
    /// The facet version the plugin was built against.
    pub api: FacetVersion,
    /// The forward modes served (`nat`, `route`, `open`, `isolated`, ...).
    pub forward_modes: extern "C" fn() -> RVec<RString>,
    /// Opens a backend for one of `forward_modes`; `host` stays with the backend.
    #[sabi(last_prefix_field)]
    pub open: extern "C" fn(mode: RStr<'_>, host: HostServicesBox) -> PResult<NetworkBackendBox>,
}

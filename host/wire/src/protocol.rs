//! Programs, shared types and constants of libvirt's RPC protocol.

use serde::{Deserialize, Serialize};

/// `REMOTE_PROGRAM`: the main hypervisor API.
pub const REMOTE_PROGRAM: u32 = 0x2000_8086;
/// `REMOTE_PROTOCOL_VERSION`.
pub const REMOTE_VERSION: u32 = 1;
/// `KEEPALIVE_PROGRAM` ("keep").
pub const KEEPALIVE_PROGRAM: u32 = 0x6b65_6570;
/// `KEEPALIVE_PROTOCOL_VERSION`.
pub const KEEPALIVE_VERSION: u32 = 1;
/// Keepalive procedure: PING (payload void).
pub const KEEPALIVE_PING: i32 = 1;
/// Keepalive procedure: PONG (payload void).
pub const KEEPALIVE_PONG: i32 = 2;
/// `QEMU_PROGRAM` (not served, recognised for error messages).
pub const QEMU_PROGRAM: u32 = 0x2000_8087;
/// `LXC_PROGRAM` (not served).
pub const LXC_PROGRAM: u32 = 0x0006_8000;
/// `ADMIN_PROGRAM` (not served).
pub const ADMIN_PROGRAM: u32 = 0x0690_0690;

/// `REMOTE_STRING_MAX`.
pub const STRING_MAX: usize = 4_194_304;
/// `REMOTE_DOMAIN_LIST_MAX` (also used for domain id and name lists).
pub const DOMAIN_LIST_MAX: usize = 16_384;
/// `REMOTE_AUTH_TYPE_LIST_MAX`.
pub const AUTH_TYPE_LIST_MAX: usize = 20;
/// `REMOTE_SECURITY_LABEL_MAX` (`VIR_SECURITY_LABEL_BUFLEN`).
pub const SECURITY_LABEL_MAX: usize = 4097;
/// `REMOTE_SECURITY_MODEL_MAX` (`VIR_SECURITY_MODEL_BUFLEN`).
pub const SECURITY_MODEL_MAX: usize = 257;
/// `REMOTE_SECURITY_DOI_MAX` (`VIR_SECURITY_DOI_BUFLEN`).
pub const SECURITY_DOI_MAX: usize = 257;
/// `VIR_UUID_BUFLEN`.
pub const UUID_LEN: usize = 16;
/// `REMOTE_STORAGE_POOL_LIST_MAX`: storage pool names and handles in one list.
pub const STORAGE_POOL_LIST_MAX: usize = 16_384;
/// `REMOTE_STORAGE_VOL_LIST_MAX`: storage volume names and handles in one list.
pub const STORAGE_VOL_LIST_MAX: usize = 16_384;
/// `REMOTE_NETWORK_LIST_MAX`: network names and handles in one list.
pub const NETWORK_LIST_MAX: usize = 16_384;
/// `REMOTE_NETWORK_PORT_LIST_MAX`: network port handles in one list.
pub const NETWORK_PORT_LIST_MAX: usize = 16_384;
/// `REMOTE_NETWORK_PORT_PARAMETERS_MAX`: typed parameters of one network port call.
pub const NETWORK_PORT_PARAMETERS_MAX: usize = 16;
/// `REMOTE_DOMAIN_INTERFACE_MAX`: interfaces in one `virDomainInterfaceAddresses` answer.
pub const DOMAIN_INTERFACE_MAX: usize = 2048;
/// `REMOTE_DOMAIN_IP_ADDR_MAX`: addresses of one interface.
pub const DOMAIN_IP_ADDR_MAX: usize = 2048;
/// `REMOTE_NETWORK_DHCP_LEASES_MAX`: leases in one answer.
pub const NETWORK_DHCP_LEASES_MAX: usize = 65_536;
/// `REMOTE_DOMAIN_SNAPSHOT_LIST_MAX`: snapshot names and handles in one list.
pub const DOMAIN_SNAPSHOT_LIST_MAX: usize = 16_384;
/// `REMOTE_SECRET_LIST_MAX`: secret uuid strings and handles in one list.
pub const SECRET_LIST_MAX: usize = 16_384;
/// `REMOTE_SECRET_VALUE_MAX`: bytes of a secret value.
pub const SECRET_VALUE_MAX: usize = 65_536;
/// `REMOTE_MIGRATE_COOKIE_MAX`: bytes of a migration cookie.
pub const MIGRATE_COOKIE_MAX: usize = 4_194_304;
/// `REMOTE_DOMAIN_MIGRATE_PARAM_LIST_MAX`: typed parameters of one migration call.
pub const DOMAIN_MIGRATE_PARAM_LIST_MAX: usize = 64;

/// `remote_auth_type` values.
pub mod auth {
    pub const NONE: i32 = 0;
    pub const SASL: i32 = 1;
    pub const POLKIT: i32 = 2;
}

/// `VIR_DRV_FEATURE_*` values asked with `CONNECT_SUPPORTS_FEATURE`.
pub mod feature {
    pub const MIGRATION_V1: i32 = 1;
    pub const REMOTE: i32 = 2;
    pub const MIGRATION_V2: i32 = 3;
    pub const MIGRATION_P2P: i32 = 4;
    pub const MIGRATION_DIRECT: i32 = 5;
    pub const MIGRATION_V3: i32 = 6;
    pub const MIGRATE_CHANGE_PROTECTION: i32 = 7;
    pub const FD_PASSING: i32 = 8;
    pub const TYPED_PARAM_STRING: i32 = 9;
    pub const PROGRAM_KEEPALIVE: i32 = 10;
    pub const XML_MIGRATABLE: i32 = 11;
    pub const MIGRATION_OFFLINE: i32 = 12;
    pub const MIGRATION_PARAMS: i32 = 13;
    pub const REMOTE_EVENT_CALLBACK: i32 = 14;
    pub const REMOTE_CLOSE_CALLBACK: i32 = 15;
}

/// `VIR_CONNECT_*` open flags.
pub mod connect_flags {
    pub const RO: u32 = 1;
}

/// Some `virErrorNumber` values.
pub mod error_code {
    pub const INTERNAL_ERROR: i32 = 1;
    pub const NO_SUPPORT: i32 = 3;
    pub const INVALID_ARG: i32 = 8;
    pub const OPERATION_FAILED: i32 = 9;
    pub const XML_ERROR: i32 = 27;
    pub const DOM_EXIST: i32 = 28;
    pub const OPERATION_DENIED: i32 = 29;
    pub const RPC: i32 = 39;
    pub const NO_DOMAIN: i32 = 42;
    pub const AUTH_FAILED: i32 = 45;
    pub const INVALID_STORAGE_POOL: i32 = 46;
    pub const INVALID_STORAGE_VOL: i32 = 47;
    pub const NO_STORAGE_POOL: i32 = 49;
    pub const NO_STORAGE_VOL: i32 = 50;
    pub const OPERATION_INVALID: i32 = 55;
    pub const INVALID_SECRET: i32 = 65;
    pub const NO_SECRET: i32 = 66;
    pub const INVALID_STREAM: i32 = 73;
    pub const STORAGE_PROBE_FAILED: i32 = 75;
    pub const STORAGE_POOL_BUILT: i32 = 76;
    pub const OPERATION_UNSUPPORTED: i32 = 84;
    pub const STORAGE_VOL_EXIST: i32 = 90;
}

/// Some `virErrorDomain` values.
pub mod error_domain {
    pub const NONE: i32 = 0;
    pub const RPC: i32 = 7;
    pub const TEST: i32 = 12;
    pub const REMOTE: i32 = 13;
    pub const STORAGE: i32 = 18;
    pub const NETWORK: i32 = 19;
    pub const DOMAIN: i32 = 20;
    pub const SECRET: i32 = 30;
    pub const STREAMS: i32 = 38;
}

/// `virErrorLevel` values.
pub mod error_level {
    pub const NONE: i32 = 0;
    pub const WARNING: i32 = 1;
    pub const ERROR: i32 = 2;
}

/// `VIR_DOMAIN_EVENT_ID_*` values.
pub mod event_id {
    pub const LIFECYCLE: i32 = 0;
    pub const REBOOT: i32 = 1;
    /// `VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED`: the guest released a device (its alias).
    pub const DEVICE_REMOVED: i32 = 15;
    /// Number of event ids known to libvirt 10.x.
    pub const LAST: i32 = 27;
}

/// `virDomainEventType` (lifecycle events).
pub mod lifecycle {
    pub const DEFINED: i32 = 0;
    pub const UNDEFINED: i32 = 1;
    pub const STARTED: i32 = 2;
    pub const SUSPENDED: i32 = 3;
    pub const RESUMED: i32 = 4;
    pub const STOPPED: i32 = 5;
    pub const SHUTDOWN: i32 = 6;
    pub const PMSUSPENDED: i32 = 7;
    pub const CRASHED: i32 = 8;
}

/// `virDomainState` values.
pub mod domain_state {
    pub const NOSTATE: i32 = 0;
    pub const RUNNING: i32 = 1;
    pub const BLOCKED: i32 = 2;
    pub const PAUSED: i32 = 3;
    pub const SHUTDOWN: i32 = 4;
    pub const SHUTOFF: i32 = 5;
    pub const CRASHED: i32 = 6;
    pub const PMSUSPENDED: i32 = 7;
}

/// `virStoragePoolState` (`state` of `STORAGE_POOL_GET_INFO`).
pub mod storage_pool_state {
    pub const INACTIVE: u8 = 0;
    pub const BUILDING: u8 = 1;
    pub const RUNNING: u8 = 2;
    pub const DEGRADED: u8 = 3;
    pub const INACCESSIBLE: u8 = 4;
}

/// `virStorageVolType` (`type` of `STORAGE_VOL_GET_INFO`).
pub mod storage_vol_type {
    pub const FILE: i8 = 0;
    pub const BLOCK: i8 = 1;
    pub const DIR: i8 = 2;
    pub const NETWORK: i8 = 3;
    pub const NETDIR: i8 = 4;
    pub const PLOOP: i8 = 5;
}

/// `VIR_STORAGE_POOL_EVENT_ID_*` and `virStoragePoolEventLifecycleType`.
pub mod storage_pool_event {
    pub const ID_LIFECYCLE: i32 = 0;
    pub const ID_REFRESH: i32 = 1;
    pub const DEFINED: i32 = 0;
    pub const UNDEFINED: i32 = 1;
    pub const STARTED: i32 = 2;
    pub const STOPPED: i32 = 3;
    pub const CREATED: i32 = 4;
    pub const DELETED: i32 = 5;
}

/// `VIR_SECRET_EVENT_ID_*` and `virSecretEventLifecycleType`.
pub mod secret_event {
    pub const ID_LIFECYCLE: i32 = 0;
    pub const ID_VALUE_CHANGED: i32 = 1;
    pub const DEFINED: i32 = 0;
    pub const UNDEFINED: i32 = 1;
}

/// `virSecretUsageType` (`usageType` of `remote_nonnull_secret`).
pub mod secret_usage {
    pub const NONE: i32 = 0;
    pub const VOLUME: i32 = 1;
    pub const CEPH: i32 = 2;
    pub const ISCSI: i32 = 3;
    pub const TLS: i32 = 4;
    pub const VTPM: i32 = 5;
}

/// `VIR_STORAGE_XML_INACTIVE`, the one flag of `STORAGE_POOL_GET_XML_DESC`.
pub const STORAGE_XML_INACTIVE: u32 = 1;

/// Variable-length `opaque<>` data, encoded as packed bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opaque(pub Vec<u8>);

impl Serialize for Opaque {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Opaque {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl serde::de::Visitor<'_> for BytesVisitor {
            type Value = Opaque;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("opaque bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Opaque, E> {
                Ok(Opaque(v.to_vec()))
            }
        }
        d.deserialize_byte_buf(BytesVisitor)
    }
}

/// `remote_uuid`: `opaque[16]`.
pub type Uuid = [u8; UUID_LEN];

/// `remote_nonnull_domain`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NonnullDomain {
    pub name: String,
    pub uuid: Uuid,
    /// -1 when the domain is not running.
    pub id: i32,
}

/// `remote_nonnull_domain_snapshot`: a snapshot is named within its domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct NonnullDomainSnapshot {
    pub name: String,
    pub dom: NonnullDomain,
}

impl Default for NonnullDomain {
    /// An inactive domain with an empty name and a nil uuid.
    fn default() -> Self {
        NonnullDomain {
            name: String::new(),
            uuid: [0; UUID_LEN],
            id: -1,
        }
    }
}

/// `remote_nonnull_network`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct NonnullNetwork {
    pub name: String,
    pub uuid: Uuid,
}

/// `remote_nonnull_network_port`: a port names its network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct NonnullNetworkPort {
    pub net: NonnullNetwork,
    pub uuid: Uuid,
}

/// `remote_typed_param_value`: a union on the `VIR_TYPED_PARAM_*` type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TypedParamValue {
    /// `VIR_TYPED_PARAM_INT`.
    #[serde(rename = "1")]
    Int(i32),
    /// `VIR_TYPED_PARAM_UINT`.
    #[serde(rename = "2")]
    UInt(u32),
    /// `VIR_TYPED_PARAM_LLONG`.
    #[serde(rename = "3")]
    LLong(i64),
    /// `VIR_TYPED_PARAM_ULLONG`.
    #[serde(rename = "4")]
    ULLong(u64),
    /// `VIR_TYPED_PARAM_DOUBLE`.
    #[serde(rename = "5")]
    Double(f64),
    /// `VIR_TYPED_PARAM_BOOLEAN` (an `int` on the wire).
    #[serde(rename = "6")]
    Boolean(i32),
    /// `VIR_TYPED_PARAM_STRING`.
    #[serde(rename = "7")]
    String(String),
}

impl TypedParamValue {
    /// The value as an unsigned integer, when it is an integer that fits.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            TypedParamValue::Int(v) => u64::try_from(v).ok(),
            TypedParamValue::UInt(v) => Some(u64::from(v)),
            TypedParamValue::LLong(v) => u64::try_from(v).ok(),
            TypedParamValue::ULLong(v) => Some(v),
            _ => None,
        }
    }
}

/// `remote_typed_param`: a named value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypedParam {
    pub field: String,
    pub value: TypedParamValue,
}

/// `remote_nonnull_storage_pool`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct NonnullStoragePool {
    pub name: String,
    pub uuid: Uuid,
}

/// `remote_nonnull_storage_vol`: a volume names its pool by name, and `key` is its
/// pool-independent identity (usually the path).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct NonnullStorageVol {
    pub pool: String,
    pub name: String,
    pub key: String,
}

/// `remote_nonnull_node_device`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NonnullNodeDevice {
    pub name: String,
}

/// `remote_nonnull_secret`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct NonnullSecret {
    pub uuid: Uuid,
    /// `usageType`: a [`secret_usage`] value.
    pub usage_type: i32,
    /// `usageID`: the volume path, ceph/iscsi/tls/vtpm name, or empty.
    pub usage_id: String,
}

/// `remote_nonnull_interface`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NonnullInterface {
    pub name: String,
    pub mac: String,
}

/// `remote_error` (= `virNetMessageError`): the payload of a REPLY with status ERROR.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RemoteError {
    pub code: i32,
    pub domain: i32,
    pub message: Option<String>,
    pub level: i32,
    /// Unused by libvirt; always `None`.
    pub dom: Option<NonnullDomain>,
    pub str1: Option<String>,
    pub str2: Option<String>,
    pub str3: Option<String>,
    pub int1: i32,
    pub int2: i32,
    /// Unused by libvirt; always `None`.
    pub net: Option<NonnullNetwork>,
}

impl RemoteError {
    /// An error of level ERROR.
    pub fn new(code: i32, domain: i32, message: impl Into<String>) -> Self {
        RemoteError {
            code,
            domain,
            message: Some(message.into()),
            level: error_level::ERROR,
            ..RemoteError::default()
        }
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{m} (code {}, domain {})", self.code, self.domain),
            None => write!(f, "error code {} domain {}", self.code, self.domain),
        }
    }
}

impl std::error::Error for RemoteError {}

/// Fills a fixed XDR `char[N]` from a string, truncating and NUL-terminating it.
pub fn to_char_array<const N: usize>(s: &str) -> [i8; N] {
    let mut out = [0i8; N];
    for (slot, byte) in out.iter_mut().zip(s.bytes().take(N.saturating_sub(1))) {
        *slot = byte as i8;
    }
    out
}

/// Reads a NUL-terminated XDR `char` array back into a string (lossy).
pub fn from_char_array(chars: &[i8]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr;

    #[test]
    fn remote_error_bytes() {
        let e = RemoteError::new(42, 12, "no dom");
        let bytes = xdr::to_vec(&e).unwrap();
        let mut expected = vec![0, 0, 0, 42, 0, 0, 0, 12];
        expected.extend([
            0, 0, 0, 1, 0, 0, 0, 6, b'n', b'o', b' ', b'd', b'o', b'm', 0, 0,
        ]); // message
        expected.extend([0, 0, 0, 2]); // level
        expected.extend([0, 0, 0, 0]); // dom
        expected.extend([0; 12]); // str1, str2, str3
        expected.extend([0; 8]); // int1, int2
        expected.extend([0; 4]); // net
        assert_eq!(bytes, expected);
        assert_eq!(xdr::from_bytes::<RemoteError>(&bytes).unwrap(), e);
        assert_eq!(e.to_string(), "no dom (code 42, domain 12)");
    }

    #[test]
    fn char_arrays() {
        let a: [i8; 4] = to_char_array("abcdef");
        assert_eq!(a, [97, 98, 99, 0]);
        assert_eq!(from_char_array(&a), "abc");
        assert_eq!(xdr::to_vec(&a).unwrap().len(), 16);
    }

    #[test]
    fn opaque_round_trip() {
        let o = Opaque(vec![1, 2, 3, 4, 5]);
        let bytes = xdr::to_vec(&o).unwrap();
        assert_eq!(bytes, [0, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!(xdr::from_bytes::<Opaque>(&bytes).unwrap(), o);
    }
}

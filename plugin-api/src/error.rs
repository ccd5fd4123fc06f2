//! The one error type that crosses the plugin boundary: libvirt's error code and domain
//! numbers plus a message.

use abi_stable::{StableAbi, std_types::RString};

/// libvirt's `virErrorNumber` values rvirt uses. The numbers are libvirt's, so they pass
/// through the remote protocol unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ErrorCode {
    /// VIR_ERR_INTERNAL_ERROR
    InternalError = 1,
    /// VIR_ERR_NO_SUPPORT
    NoSupport = 3,
    /// VIR_ERR_NO_CONNECT
    NoConnect = 5,
    /// VIR_ERR_INVALID_CONN
    InvalidConn = 6,
    /// VIR_ERR_INVALID_DOMAIN
    InvalidDomain = 7,
    /// VIR_ERR_INVALID_ARG
    InvalidArg = 8,
    /// VIR_ERR_OPERATION_FAILED
    OperationFailed = 9,
    /// VIR_ERR_XML_ERROR
    XmlError = 27,
    /// VIR_ERR_DOM_EXIST
    DomExist = 28,
    /// VIR_ERR_OPERATION_DENIED
    OperationDenied = 29,
    /// VIR_ERR_OPEN_FAILED
    OpenFailed = 30,
    /// VIR_ERR_XML_DETAIL
    XmlDetail = 35,
    /// VIR_ERR_SYSTEM_ERROR
    SystemError = 38,
    /// VIR_ERR_RPC
    Rpc = 39,
    /// VIR_ERR_NO_DOMAIN
    NoDomain = 42,
    /// VIR_ERR_NO_NETWORK
    NoNetwork = 43,
    /// VIR_ERR_NO_STORAGE_POOL
    NoStoragePool = 49,
    /// VIR_ERR_OPERATION_INVALID
    OperationInvalid = 55,
    /// VIR_ERR_CONFIG_UNSUPPORTED
    ConfigUnsupported = 67,
    /// VIR_ERR_OPERATION_TIMEOUT
    OperationTimeout = 68,
    /// VIR_ERR_NO_DOMAIN_SNAPSHOT
    NoDomainSnapshot = 72,
    /// VIR_ERR_OPERATION_ABORTED (since 1.9)
    OperationAborted = 78,
    /// VIR_ERR_OPERATION_UNSUPPORTED
    OperationUnsupported = 84,
}

/// libvirt's `virErrorDomain` values rvirt uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ErrorDomain {
    /// VIR_FROM_NONE
    None = 0,
    /// VIR_FROM_XML
    Xml = 5,
    /// VIR_FROM_RPC
    Rpc = 7,
    /// VIR_FROM_CONF
    Conf = 9,
    /// VIR_FROM_QEMU
    Qemu = 10,
    /// VIR_FROM_TEST
    Test = 12,
    /// VIR_FROM_REMOTE
    Remote = 13,
    /// VIR_FROM_STORAGE
    Storage = 18,
    /// VIR_FROM_NETWORK
    Network = 19,
    /// VIR_FROM_DOMAIN
    Domain = 20,
}

/// An error returned by a plugin: libvirt error code and domain numbers and a message.
///
/// The numbers are plain `i32` on the wire so that a plugin may use codes this crate has
/// no name for.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// `virErrorNumber`.
    pub code: i32,
    /// `virErrorDomain`.
    pub domain: i32,
    /// Human-readable message, lowercase, no trailing period.
    pub message: RString,
}

impl PluginError {
    /// An error with the given code, domain and message.
    pub fn new(code: ErrorCode, domain: ErrorDomain, message: impl Into<String>) -> Self {
        Self {
            code: code as i32,
            domain: domain as i32,
            message: RString::from(message.into()),
        }
    }

    /// The no-support error for an operation (named by its libvirt API name).
    pub fn no_support(operation: &str) -> Self {
        Self::new(
            ErrorCode::NoSupport,
            ErrorDomain::None,
            format!("this function is not supported by the connection driver: {operation}"),
        )
    }

    /// The no-support error of a storage backend: the operation (by its libvirt API name)
    /// and the pool type of the backend that lacks it.
    pub fn no_support_by_backend(operation: &str, pool_type: &str) -> Self {
        Self::new(
            ErrorCode::NoSupport,
            ErrorDomain::Storage,
            format!(
                "this function is not supported by the connection driver: {operation} (storage backend '{pool_type}')"
            ),
        )
    }

    /// Whether this is the no-support error.
    pub fn is_no_support(&self) -> bool {
        self.code == ErrorCode::NoSupport as i32
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

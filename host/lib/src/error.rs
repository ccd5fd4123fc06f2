//! The host library's error type: every failure carries libvirt's error code and domain.

use rvirt_plugin_api::{ErrorCode, ErrorDomain};

/// What went wrong, with libvirt's numbers available through [`Error::code`] and
/// [`Error::domain`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A driver (plugin or remote daemon) reported an error.
    #[error("{message}")]
    Driver {
        /// `virErrorNumber`.
        code: i32,
        /// `virErrorDomain`.
        domain: i32,
        /// The driver's message.
        message: String,
    },
    /// No plugin serves the URI's scheme.
    #[error(
        "no installed plugin serves '{scheme}://' (searched {searched}); run `rvirt plugin list` to see the plugins found and why any was refused"
    )]
    NoPlugin {
        /// The scheme asked for.
        scheme: String,
        /// The directories searched, colon-separated.
        searched: String,
    },
    /// No plugin serves a storage pool type.
    #[error(
        "no installed plugin serves storage pool type '{pool_type}' (searched {searched}); run `rvirt plugin list` to see the plugins found, the pool types they serve and why any was refused"
    )]
    NoStorageBackend {
        /// The pool type asked for.
        pool_type: String,
        /// The directories searched, colon-separated.
        searched: String,
    },
    /// The connection URI does not parse.
    #[error(transparent)]
    Uri(#[from] crate::uri::UriError),
    /// A mutating call on a read-only connection.
    #[error("operation forbidden: read only access prevents {0}")]
    ReadOnly(&'static str),
    /// A plugin panicked and the panic reached the host side of the boundary.
    #[error("plugin '{plugin}' panicked in {operation}: {message}")]
    PluginPanic {
        /// The plugin's name.
        plugin: String,
        /// The API called.
        operation: &'static str,
        /// The panic message.
        message: String,
    },
}

impl Error {
    /// libvirt's `virErrorNumber` for this error.
    pub fn code(&self) -> i32 {
        match self {
            Error::Driver { code, .. } => *code,
            Error::NoPlugin { .. } => ErrorCode::NoConnect as i32,
            // libvirt's answer for a pool type without a backend ("missing backend for
            // pool type").
            Error::NoStorageBackend { .. } => ErrorCode::InternalError as i32,
            Error::Uri(_) => ErrorCode::InvalidArg as i32,
            Error::ReadOnly(_) => ErrorCode::OperationDenied as i32,
            Error::PluginPanic { .. } => ErrorCode::InternalError as i32,
        }
    }

    /// libvirt's `virErrorDomain` for this error.
    pub fn domain(&self) -> i32 {
        match self {
            Error::Driver { domain, .. } => *domain,
            Error::NoStorageBackend { .. } => ErrorDomain::Storage as i32,
            _ => ErrorDomain::None as i32,
        }
    }

    /// An error carrying libvirt numbers directly.
    pub fn driver(code: ErrorCode, domain: ErrorDomain, message: impl Into<String>) -> Self {
        Error::Driver {
            code: code as i32,
            domain: domain as i32,
            message: message.into(),
        }
    }

    /// Whether this is libvirt's no-support error.
    pub fn is_no_support(&self) -> bool {
        self.code() == ErrorCode::NoSupport as i32
    }
}

/// The result type of the host library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The crate's error type, carrying libvirt's error numbers.

use crate::rados::RadosError;

/// libvirt's `virErrorNumber` values this backend reports.
pub mod code {
    /// VIR_ERR_INTERNAL_ERROR
    pub const INTERNAL_ERROR: i32 = 1;
    /// VIR_ERR_NO_SUPPORT
    pub const NO_SUPPORT: i32 = 3;
    /// VIR_ERR_INVALID_ARG
    pub const INVALID_ARG: i32 = 8;
    /// VIR_ERR_XML_ERROR
    pub const XML_ERROR: i32 = 27;
    /// VIR_ERR_SYSTEM_ERROR
    pub const SYSTEM_ERROR: i32 = 38;
    /// VIR_ERR_NO_STORAGE_VOL
    pub const NO_STORAGE_VOL: i32 = 50;
    /// VIR_ERR_OPERATION_INVALID
    pub const OPERATION_INVALID: i32 = 55;
    /// VIR_ERR_CONFIG_UNSUPPORTED
    pub const CONFIG_UNSUPPORTED: i32 = 67;
    /// VIR_ERR_STORAGE_VOL_EXIST
    pub const STORAGE_VOL_EXIST: i32 = 90;
}

/// Every failure of the `rbd` backend. [`Error::code`] gives libvirt's error number.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of a definition is missing or unusable.
    #[error("{object}: {field}: {reason}")]
    InvalidArg {
        /// `pool 'NAME'` or `volume 'NAME' in pool 'POOL'`.
        object: String,
        /// The field, as an XML path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A definition does not parse.
    #[error("{what}: {source}")]
    Xml {
        /// `pool` or `volume`.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: rvirt_xml::XmlError,
    },
    /// Flags the function does not know.
    #[error("{function}: unsupported flags (0x{flags:x})")]
    UnsupportedFlags {
        /// The function.
        function: &'static str,
        /// The unknown bits.
        flags: u32,
    },
    /// The image does not exist.
    #[error("no storage vol with matching name '{name}' in pool '{pool}' (RBD image '{image}')")]
    NoVolume {
        /// The libvirt pool.
        pool: String,
        /// The volume.
        name: String,
        /// `cephpool/image`.
        image: String,
    },
    /// An image of that name exists already.
    #[error("storage vol '{name}' already exists in pool '{pool}' (RBD image '{image}')")]
    VolumeExists {
        /// The libvirt pool.
        pool: String,
        /// The volume.
        name: String,
        /// `cephpool/image`.
        image: String,
    },
    /// Not valid in this state (snapshots, clones, a range past the end).
    #[error("{object}: {reason}")]
    OperationInvalid {
        /// The object.
        object: String,
        /// Why.
        reason: String,
    },
    /// Something this backend does not do.
    #[error("{object}: {what} is not supported")]
    NoSupport {
        /// The object.
        object: String,
        /// What.
        what: String,
    },
    /// The host could not give the cephx key (`<auth><secret>`).
    #[error("{object}: pool/source/auth/secret: cannot read the ceph secret '{secret}': {message}")]
    Secret {
        /// `pool 'NAME'`.
        object: String,
        /// The usage or UUID named.
        secret: String,
        /// The host's error code.
        code: i32,
        /// The host's message.
        message: String,
    },
    /// Connecting to the cluster failed.
    #[error(
        "{object}: cannot connect to the Ceph cluster at '{monitors}' as client.{user} (pool/source/host, pool/source/auth)"
    )]
    Connect {
        /// `pool 'NAME'`.
        object: String,
        /// The `mon_host` value.
        monitors: String,
        /// The client id.
        user: String,
        /// librados' answer.
        #[source]
        source: RadosError,
    },
    /// A librados/librbd call failed.
    #[error("{object}: cannot {action}")]
    Rados {
        /// The object.
        object: String,
        /// What was attempted.
        action: String,
        /// librados' or librbd's answer.
        #[source]
        source: RadosError,
    },
}

impl Error {
    /// libvirt's `virErrorNumber` for this error.
    pub fn code(&self) -> i32 {
        match self {
            Error::InvalidArg { .. } | Error::UnsupportedFlags { .. } => code::INVALID_ARG,
            Error::Xml { .. } => code::XML_ERROR,
            Error::NoVolume { .. } => code::NO_STORAGE_VOL,
            Error::VolumeExists { .. } => code::STORAGE_VOL_EXIST,
            Error::OperationInvalid { .. } => code::OPERATION_INVALID,
            Error::NoSupport { .. } => code::NO_SUPPORT,
            Error::Secret { code, .. } => *code,
            Error::Connect { .. } | Error::Rados { .. } => code::SYSTEM_ERROR,
        }
    }

    /// The message with every `#[source]` below it, `: `-separated (what a client sees).
    pub fn full_message(&self) -> String {
        rvirt_sdk::util::error_chain(self)
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

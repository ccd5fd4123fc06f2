//! The crate's error type, carrying libvirt's error numbers.

use std::io;
use std::path::PathBuf;

use crate::qemu_img::QemuImgError;

/// libvirt's `virErrorNumber` values this backend reports.
pub mod code {
    /// VIR_ERR_INTERNAL_ERROR
    pub const INTERNAL_ERROR: i32 = 1;
    /// VIR_ERR_NO_SUPPORT
    pub const NO_SUPPORT: i32 = 3;
    /// VIR_ERR_INVALID_ARG
    pub const INVALID_ARG: i32 = 8;
    /// VIR_ERR_OPERATION_FAILED
    pub const OPERATION_FAILED: i32 = 9;
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
    /// VIR_ERR_OVERFLOW
    pub const OVERFLOW: i32 = 82;
    /// VIR_ERR_STORAGE_VOL_EXIST
    pub const STORAGE_VOL_EXIST: i32 = 90;
}

/// Every failure of the `dir` backend. [`Error::code`] gives libvirt's error number.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pool or volume definition field is unusable (bad name, path outside the pool,
    /// unsupported format, bad size).
    #[error("{object}: {field}: {reason}")]
    InvalidArg {
        /// `pool 'NAME'` or `volume 'NAME' in pool 'POOL'`.
        object: String,
        /// The field, as an XML path (`volume/name`, `pool/target/path`).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Flags the function does not know.
    #[error("{function}: unsupported flags (0x{flags:x})")]
    UnsupportedFlags {
        /// The function.
        function: &'static str,
        /// The unknown bits.
        flags: u32,
    },
    /// A size computation overflowed.
    #[error("{object}: {field}: {reason}")]
    Overflow {
        /// The object.
        object: String,
        /// The field.
        field: String,
        /// What overflowed.
        reason: String,
    },
    /// The operation is not valid in this state (non-empty pool, shrink without the flag).
    #[error("{object}: {reason}")]
    OperationInvalid {
        /// The object.
        object: String,
        /// Why.
        reason: String,
    },
    /// Not enough space in the pool.
    #[error("{object}: {reason}")]
    NoSpace {
        /// The object.
        object: String,
        /// The figures.
        reason: String,
    },
    /// Something this backend does not implement (a wipe algorithm, a format).
    #[error("{object}: {what} is not supported")]
    NoSupport {
        /// The object.
        object: String,
        /// What is unsupported.
        what: String,
    },
    /// The volume does not exist.
    #[error("no storage vol with matching name '{name}' in pool '{pool}'")]
    NoVolume {
        /// The pool.
        pool: String,
        /// The volume name.
        name: String,
    },
    /// A file already exists where the new volume would go.
    #[error("storage vol '{name}' already exists in pool '{pool}' ({path})")]
    VolumeExists {
        /// The pool.
        pool: String,
        /// The volume name.
        name: String,
        /// Its path.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("{object}: cannot {action} '{}'", path.display())]
    Io {
        /// The object.
        object: String,
        /// What was attempted (`open`, `create`, `read header of`).
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `qemu-img` is missing or failed.
    #[error("{object}: qemu-img")]
    QemuImg {
        /// The object.
        object: String,
        /// The cause, with qemu-img's stderr.
        #[source]
        source: QemuImgError,
    },
    /// A pool or volume document failed to parse.
    #[error("{what}: invalid XML")]
    Xml {
        /// `pool` or `volume`.
        what: &'static str,
        /// The parser's error (names the path and the problem).
        #[source]
        source: rvirt_xml::XmlError,
    },
    /// An inconsistency of our own.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// libvirt's `virErrorNumber` for this error.
    pub fn code(&self) -> i32 {
        match self {
            Error::InvalidArg { .. } | Error::UnsupportedFlags { .. } => code::INVALID_ARG,
            Error::Overflow { .. } => code::OVERFLOW,
            Error::OperationInvalid { .. } => code::OPERATION_INVALID,
            Error::NoSpace { .. } => code::OPERATION_FAILED,
            Error::NoSupport { .. } => code::NO_SUPPORT,
            Error::NoVolume { .. } => code::NO_STORAGE_VOL,
            Error::VolumeExists { .. } => code::STORAGE_VOL_EXIST,
            Error::Io { .. } => code::SYSTEM_ERROR,
            Error::QemuImg { .. } | Error::Internal(_) => code::INTERNAL_ERROR,
            Error::Xml { .. } => code::XML_ERROR,
        }
    }

    /// The message with every `#[source]` below it, `: `-separated (what a client sees).
    pub fn full_message(&self) -> String {
        rvirt_sdk::util::error_chain(self)
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_chain() {
        let e = Error::Io {
            object: "pool 'p'".into(),
            action: "open",
            path: "/x".into(),
            source: io::Error::from_raw_os_error(2),
        };
        assert_eq!(e.code(), 38);
        assert!(e.full_message().starts_with("pool 'p': cannot open '/x': "));
        let e = Error::VolumeExists {
            pool: "p".into(),
            name: "v".into(),
            path: "/x/v".into(),
        };
        assert_eq!(e.code(), 90);
        let e = Error::NoVolume {
            pool: "p".into(),
            name: "v".into(),
        };
        assert_eq!(e.code(), 50);
    }
}

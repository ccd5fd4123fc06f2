//! The crate's error type, carrying libvirt's error numbers.

use std::io;
use std::path::PathBuf;

use crate::cmd::CommandError;

/// libvirt's `virErrorNumber` values this backend reports (besides those of
/// [`rvirt_storage_files::code`], which its volume operations report).
pub mod code {
    pub use rvirt_storage_files::code::*;
    /// VIR_ERR_STORAGE_PROBE_FAILED
    pub const STORAGE_PROBE_FAILED: i32 = 75;
    /// VIR_ERR_STORAGE_POOL_BUILT
    pub const STORAGE_POOL_BUILT: i32 = 76;
}

/// Every failure of the `fs` backend. [`Error::code`] gives libvirt's error number.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What the `dir` functions report (the target directory, the volumes).
    #[error(transparent)]
    Dir(#[from] rvirt_storage_files::Error),
    /// A field of the definition is unusable (a relative target, a source that is neither
    /// a block device nor a file).
    #[error("{object}: {field}: {reason}")]
    InvalidArg {
        /// `pool 'NAME'`.
        object: String,
        /// The field, as an XML path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The definition is malformed for an `fs` pool (an unknown format, several devices),
    /// as libvirt's parser reports it.
    #[error("{object}: {field}: {reason}")]
    Xml {
        /// `pool 'NAME'`.
        object: String,
        /// The field, as an XML path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No `<source><device>` (libvirt reports this as an internal error).
    #[error("{object}: missing source device (pool/source/device/@path)")]
    MissingDevice {
        /// `pool 'NAME'`.
        object: String,
    },
    /// Flags the function does not know.
    #[error("{function}: unsupported flags (0x{flags:x})")]
    UnsupportedFlags {
        /// The function.
        function: &'static str,
        /// The unknown bits.
        flags: u32,
    },
    /// Not valid in this state: the device is missing or holds another file system, the
    /// target is already mounted, the pool is not mounted.
    #[error("{object}: {reason}")]
    OperationInvalid {
        /// `pool 'NAME'`.
        object: String,
        /// Why.
        reason: String,
    },
    /// The device holds no file system the pool could mount.
    #[error("{object}: {reason}")]
    ProbeFailed {
        /// `pool 'NAME'`.
        object: String,
        /// Why.
        reason: String,
    },
    /// Building would overwrite what the device holds (`NO_OVERWRITE`).
    #[error("{object}: {reason}")]
    AlreadyBuilt {
        /// `pool 'NAME'`.
        object: String,
        /// What the device holds.
        reason: String,
    },
    /// `mkfs` failed: libvirt reports it as a system error.
    #[error("{object}: cannot make a file system of type '{format}' on '{}'", device.display())]
    Mkfs {
        /// `pool 'NAME'`.
        object: String,
        /// The file system type.
        format: String,
        /// The device.
        device: PathBuf,
        /// The command's failure, with its stderr.
        #[source]
        source: Box<CommandError>,
    },
    /// `mount`, `umount`, `losetup` or `blkid` failed.
    #[error("{object}: cannot {action}")]
    Command {
        /// `pool 'NAME'`.
        object: String,
        /// What was attempted (`mount '/dev/loop0' on '/srv/pool'`).
        action: String,
        /// The command's failure, with its stderr.
        #[source]
        source: Box<CommandError>,
    },
    /// A system call failed.
    #[error("{object}: cannot {action} '{}'", path.display())]
    Io {
        /// `pool 'NAME'`.
        object: String,
        /// What was attempted.
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// libvirt's `virErrorNumber` for this error.
    pub fn code(&self) -> i32 {
        match self {
            Error::Dir(e) => e.code(),
            Error::InvalidArg { .. } | Error::UnsupportedFlags { .. } => code::INVALID_ARG,
            Error::Xml { .. } => code::XML_ERROR,
            Error::MissingDevice { .. } | Error::Command { .. } => code::INTERNAL_ERROR,
            Error::OperationInvalid { .. } => code::OPERATION_INVALID,
            Error::ProbeFailed { .. } => code::STORAGE_PROBE_FAILED,
            Error::AlreadyBuilt { .. } => code::STORAGE_POOL_BUILT,
            Error::Mkfs { .. } | Error::Io { .. } => code::SYSTEM_ERROR,
        }
    }

    /// The message with every `#[source]` below it, `: `-separated (what a client sees).
    pub fn full_message(&self) -> String {
        if let Error::Dir(e) = self {
            return e.full_message();
        }
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
        let e = Error::Mkfs {
            object: "pool 'p'".into(),
            format: "ext4".into(),
            device: "/dev/x".into(),
            source: Box::new(CommandError::Failed {
                command: "mkfs -t ext4 -F /dev/x".into(),
                status: "exit status: 1".into(),
                stderr: "mke2fs: no such file".into(),
                code: Some(1),
            }),
        };
        assert_eq!(e.code(), 38);
        assert_eq!(
            e.full_message(),
            "pool 'p': cannot make a file system of type 'ext4' on '/dev/x': \
             'mkfs -t ext4 -F /dev/x' failed (exit status: 1): mke2fs: no such file"
        );
        let e = Error::AlreadyBuilt {
            object: "pool 'p'".into(),
            reason: "x".into(),
        };
        assert_eq!(e.code(), 76);
        let e = Error::ProbeFailed {
            object: "pool 'p'".into(),
            reason: "x".into(),
        };
        assert_eq!(e.code(), 75);
        assert_eq!(
            Error::MissingDevice {
                object: "pool 'p'".into()
            }
            .code(),
            1
        );
    }
}

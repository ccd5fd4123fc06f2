//! The crate's error type, carrying libvirt's error numbers.

use std::io;
use std::path::PathBuf;

/// libvirt's `virErrorNumber` values this backend reports.
pub mod code {
    /// VIR_ERR_INTERNAL_ERROR
    pub const INTERNAL_ERROR: i32 = 1;
    /// VIR_ERR_OPERATION_FAILED
    pub const OPERATION_FAILED: i32 = 9;
    /// VIR_ERR_SYSTEM_ERROR
    pub const SYSTEM_ERROR: i32 = 38;
    /// VIR_ERR_OPERATION_INVALID
    pub const OPERATION_INVALID: i32 = 55;
    /// VIR_ERR_CONFIG_UNSUPPORTED
    pub const CONFIG_UNSUPPORTED: i32 = 67;
}

/// Every failure of the bridge backend. [`Error::code`] gives libvirt's error number.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the network definition is unusable (a DHCP range outside its subnet, a
    /// bridge name too long, an address that does not parse).
    #[error("{object}: {field}: {reason}")]
    Config {
        /// `network 'NAME'`.
        object: String,
        /// The field, as an XML path (`network/bridge/@name`, `network/ip[1]/dhcp/range[1]`).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The bridge the network would create already exists.
    #[error("network '{network}': network/bridge/@name: bridge '{bridge}' is already in use")]
    BridgeInUse {
        /// The network.
        network: String,
        /// The bridge name.
        bridge: String,
    },
    /// The operation does not fit the network's state (not running, no such bridge).
    #[error("{object}: {reason}")]
    OperationInvalid {
        /// The object.
        object: String,
        /// Why.
        reason: String,
    },
    /// A program this backend runs is not installed.
    #[error("{object}: cannot find '{program}' (install the {package} package)")]
    MissingProgram {
        /// The object.
        object: String,
        /// The program (`dnsmasq`, `nft`).
        program: &'static str,
        /// The Debian package that ships it.
        package: &'static str,
    },
    /// A program this backend runs failed.
    #[error("{object}: {program} failed: {detail}")]
    Program {
        /// The object.
        object: String,
        /// The program.
        program: &'static str,
        /// Its exit status and standard error.
        detail: String,
    },
    /// A netlink request failed.
    #[error("{object}: cannot {action}")]
    Netlink {
        /// The object (`network 'NAME'`).
        object: String,
        /// What was attempted (`create bridge 'virbr0'`).
        action: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A file operation or another system call failed.
    #[error("{object}: cannot {action} '{}'", path.display())]
    Io {
        /// The object.
        object: String,
        /// What was attempted (`write`, `read`).
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
            Error::Config { .. } | Error::BridgeInUse { .. } => code::CONFIG_UNSUPPORTED,
            Error::OperationInvalid { .. } => code::OPERATION_INVALID,
            Error::MissingProgram { .. } | Error::Program { .. } => code::INTERNAL_ERROR,
            Error::Netlink { .. } | Error::Io { .. } => code::SYSTEM_ERROR,
        }
    }

    /// The message with every `#[source]` below it, `: `-separated (what a client sees).
    pub fn full_message(&self) -> String {
        rvirt_sdk::util::error_chain(self)
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `network 'NAME'`, the object every message names.
pub(crate) fn object(name: &str) -> String {
    format!("network '{name}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        let e = Error::BridgeInUse {
            network: "n".into(),
            bridge: "br0".into(),
        };
        assert_eq!(e.code(), 67);
        assert_eq!(
            e.to_string(),
            "network 'n': network/bridge/@name: bridge 'br0' is already in use"
        );
        let e = Error::MissingProgram {
            object: object("n"),
            program: "dnsmasq",
            package: "dnsmasq-base",
        };
        assert_eq!(
            e.to_string(),
            "network 'n': cannot find 'dnsmasq' (install the dnsmasq-base package)"
        );
        let e = Error::Netlink {
            object: object("n"),
            action: "create bridge 'b'".into(),
            source: io::Error::from_raw_os_error(17),
        };
        assert_eq!(e.code(), 38);
        assert!(
            e.full_message()
                .starts_with("network 'n': cannot create bridge 'b': ")
        );
    }
}

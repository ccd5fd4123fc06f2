//! Helpers drivers share: UUID conversion, libvirt's common errors, atomic file writes.

use crate::abi::{ErrorCode, ErrorDomain, PluginError, Uuid};
use std::{
    io::Write,
    path::{Path, PathBuf},
};

pub use crate::abi::SYSTEM_ROOT_ENV;

/// A system path (`rel` is relative to `/`, e.g. `etc/rvirt/qemu`), under
/// [`SYSTEM_ROOT_ENV`] when that is set to an absolute path.
pub fn system_path(rel: &str) -> PathBuf {
    let root = std::env::var_os(SYSTEM_ROOT_ENV)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/"));
    root.join(rel.trim_start_matches('/'))
}

/// ABI UUID from a `uuid::Uuid`.
pub fn to_abi_uuid(u: uuid::Uuid) -> Uuid {
    Uuid(*u.as_bytes())
}

/// `uuid::Uuid` from an ABI UUID.
pub fn from_abi_uuid(u: Uuid) -> uuid::Uuid {
    uuid::Uuid::from_bytes(u.0)
}

/// libvirt's "Domain not found" error for a lookup that matched nothing.
pub fn no_domain(domain: ErrorDomain, what: &str) -> PluginError {
    PluginError::new(
        ErrorCode::NoDomain,
        domain,
        format!("domain not found: {what}"),
    )
}

/// libvirt's "Requested operation is not valid" error.
pub fn operation_invalid(domain: ErrorDomain, why: &str) -> PluginError {
    PluginError::new(
        ErrorCode::OperationInvalid,
        domain,
        format!("requested operation is not valid: {why}"),
    )
}

/// The error a read-only connection answers to a mutating call.
pub fn read_only_denied(operation: &str) -> PluginError {
    PluginError::new(
        ErrorCode::OperationDenied,
        ErrorDomain::None,
        format!("operation forbidden: read only access prevents {operation}"),
    )
}

/// An error's message with every `source()` below it, `: `-separated (what a libvirt
/// client sees of a chain of `#[source]` errors).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// libvirt's `virCheckFlags`: refuses any bit of `flags` outside `allowed` with
/// `VIR_ERR_INVALID_ARG` naming the operation (`"virDomainCreateWithFlags"`). Every
/// driver calls it first thing in every method that takes flags, so an unknown flag is
/// never silently ignored.
pub fn check_flags(
    domain: ErrorDomain,
    operation: &str,
    flags: u32,
    allowed: u32,
) -> Result<(), PluginError> {
    let unknown = flags & !allowed;
    if unknown == 0 {
        return Ok(());
    }
    Err(PluginError::new(
        ErrorCode::InvalidArg,
        domain,
        format!("invalid argument: unsupported flags (0x{unknown:x}) in function {operation}"),
    ))
}

/// Errors of [`atomic_write`].
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A step of the write failed.
    #[error("cannot {step} '{}'", path.display())]
    Io {
        /// What was being done.
        step: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Writes `data` to `path` atomically: a temporary file in the same directory, fsync,
/// rename over the target, fsync of the directory. Readers see the old or the new
/// content, never a half-written file.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<(), WriteError> {
    let io = |step, p: &Path| {
        let p = p.to_path_buf();
        move |source| WriteError::Io {
            step,
            path: p,
            source,
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(data).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("rename into", path)(e)
    })?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content() {
        let dir = std::env::temp_dir().join(format!("rvirt-sdk-aw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("cfg.xml");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp file left behind"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_flags_are_refused_naming_the_operation() {
        assert!(check_flags(ErrorDomain::Qemu, "virDomainReboot", 0x3, 0x3).is_ok());
        let e = check_flags(ErrorDomain::Qemu, "virDomainReboot", 0x5, 0x1).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArg as i32);
        assert_eq!(
            e.message.as_str(),
            "invalid argument: unsupported flags (0x4) in function virDomainReboot"
        );
    }

    #[test]
    fn uuid_round_trip() {
        let u = uuid::Uuid::new_v4();
        assert_eq!(from_abi_uuid(to_abi_uuid(u)), u);
    }
}

/// Decodes one value of a URI's query (`root=%2Fsrv%2Fvm+1` → `/srv/vm 1`): `+` is a
/// space, `%XX` a byte, invalid UTF-8 replaced.
pub fn decode_query_value(v: &str) -> String {
    let spaced = v.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod query_tests {
    use super::decode_query_value;

    #[test]
    fn query_values_decode_plus_and_percent_and_survive_odd_input() {
        assert_eq!(decode_query_value("%2Fsrv%2Fvm+1"), "/srv/vm 1");
        assert_eq!(decode_query_value("%zz%"), "%zz%");
        assert_eq!(decode_query_value("%a\u{e9}"), "%a\u{e9}");
    }
}

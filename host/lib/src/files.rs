//! Helpers the host's own stores share (storage pools, secrets): private atomic writes and
//! libvirt's flag check.

use crate::{Error, Result};
use rvirt_plugin_api::ErrorCode;
use std::io::Write;
use std::path::Path;

/// Writes `data` to `path` atomically and owner-only: a temporary file (created 0600) in
/// the same directory, fsync, rename. `domain` is the libvirt error domain of failures.
pub(crate) fn write_private(path: &Path, data: &[u8], domain: i32) -> Result<()> {
    let io = |what: &str, p: &Path, e: std::io::Error| Error::Driver {
        code: ErrorCode::SystemError as i32,
        domain,
        message: format!("cannot {what} '{}': {e}", p.display()),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| io("create a temporary file in", dir, e))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io("write", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| io("rename into", path, e.error))?;
    Ok(())
}

/// libvirt's `virCheckFlags`: any bit of `flags` outside `allowed` is
/// `VIR_ERR_INVALID_ARG` naming the operation.
pub(crate) fn check_flags(domain: i32, op: &str, flags: u32, allowed: u32) -> Result<()> {
    let unknown = flags & !allowed;
    if unknown == 0 {
        return Ok(());
    }
    Err(Error::Driver {
        code: ErrorCode::InvalidArg as i32,
        domain,
        message: format!("invalid argument: unsupported flags (0x{unknown:x}) in function {op}"),
    })
}

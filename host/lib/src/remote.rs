//! The remote driver: URIs with a transport or a host (`test+unix:///default?socket=...`)
//! are served by a daemon speaking libvirt's remote protocol.

use crate::{Error, Result, backend::Backend, uri::ConnectUri};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use std::sync::Arc;

/// Opens a connection to the daemon the URI names.
pub fn open(uri: &ConnectUri, _read_only: bool) -> Result<Arc<dyn Backend>> {
    Err(Error::driver(
        ErrorCode::NoSupport,
        ErrorDomain::Remote,
        format!(
            "transport '{}' of '{}' is not supported by this build of the remote driver",
            uri.transport.as_deref().unwrap_or("tcp"),
            uri.original
        ),
    ))
}

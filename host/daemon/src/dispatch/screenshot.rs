//! `DOMAIN_SCREENSHOT` (211): the driver's image goes to the client as a download stream
//! after the reply, which names its MIME type (`streams.rs` runs the stream).

use super::{CallResult, call, host_error, lookup, rpc_error};
use crate::client::Client;
use rvirt_host::{Connection, StreamIo, VolStream};
use rvirt_wire::RemoteProcedure as P;
use rvirt_wire::procs;
use rvirt_wire::remote::DomainScreenshotRet;

/// An image already in memory, read out in chunks.
struct Image {
    data: Vec<u8>,
    pos: usize,
}

impl StreamIo for Image {
    fn send(&mut self, _data: &[u8]) -> rvirt_host::Result<()> {
        Err(rvirt_host::Error::driver(
            rvirt_plugin_api::ErrorCode::OperationInvalid,
            rvirt_plugin_api::ErrorDomain::Domain,
            "requested operation is not valid: a screenshot stream is read only",
        ))
    }
    fn recv(&mut self, max: usize) -> rvirt_host::Result<Vec<u8>> {
        let end = self.data.len().min(self.pos + max);
        let chunk = self.data[self.pos..end].to_vec();
        self.pos = end;
        Ok(chunk)
    }
    fn finish(&mut self) -> rvirt_host::Result<()> {
        Ok(())
    }
    fn abort(&mut self) -> rvirt_host::Result<()> {
        Ok(())
    }
}

/// Takes the screenshot, registers its stream under the call's serial and answers the
/// MIME type.
pub(super) fn open(client: &Client, conn: &Connection, serial: u32, payload: &[u8]) -> CallResult {
    call::<procs::DomainScreenshot>(payload, |a| {
        let (mime, data) = lookup(conn, &a.dom)?
            .screenshot(a.screen, a.flags)
            .map_err(host_error)?;
        let stream = VolStream::new(Box::new(Image { data, pos: 0 }));
        client
            .with_streams(|s| {
                s.register(
                    serial,
                    P::DomainScreenshot.number(),
                    crate::streams::Opened::Volume {
                        stream,
                        upload: false,
                    },
                )
            })
            .map_err(rpc_error)?;
        Ok(DomainScreenshotRet { mime: Some(mime) })
    })
}

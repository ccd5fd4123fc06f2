//! Domain consoles over the daemon connection (`DOMAIN_OPEN_CONSOLE` 201): a stream both
//! ways. [`RemoteConsole::recv`] waits for what the domain prints (from one thread) while
//! a [`ConsoleWriter`] sends what is typed (from another).

use super::{Link, RemoteBackend, handle, lock, rpc_error};
use crate::{Error, Result};
use rvirt_wire::frame::{self, STREAM_CHUNK_MAX, StreamPacket};
use rvirt_wire::protocol::{REMOTE_PROGRAM, REMOTE_VERSION};
use rvirt_wire::remote::DomainOpenConsoleArgs;
use rvirt_wire::{Procedure, procs};
use std::sync::{Arc, mpsc};

const PROCEDURE: i32 = procs::DomainOpenConsole::PROC as i32;

/// An open console session: what the domain prints.
pub struct RemoteConsole {
    link: Arc<Link>,
    serial: u32,
    rx: mpsc::Receiver<StreamPacket>,
    closed: bool,
}

impl std::fmt::Debug for RemoteConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConsole")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// The typing side of a console session.
#[derive(Clone)]
pub struct ConsoleWriter {
    link: Arc<Link>,
    serial: u32,
}

impl std::fmt::Debug for ConsoleWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleWriter")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

fn remote_error(e: Option<rvirt_wire::protocol::RemoteError>) -> Error {
    match e {
        Some(e) => Error::Driver {
            code: e.code,
            domain: e.domain,
            message: e.message.unwrap_or_else(|| "unknown error".into()),
        },
        None => rpc_error("the daemon aborted the console stream"),
    }
}

fn packet(serial: u32, p: &StreamPacket) -> Result<Vec<u8>> {
    p.encode(REMOTE_PROGRAM, REMOTE_VERSION, PROCEDURE, serial)
        .map_err(|e| rpc_error(format!("cannot encode a stream packet: {e}")))
}

impl RemoteConsole {
    /// The next bytes the domain printed; `None` once the session is over (the device
    /// hung up, or [`ConsoleWriter::finish`] was answered).
    pub fn recv(&mut self) -> Result<Option<Vec<u8>>> {
        if self.closed {
            return Ok(None);
        }
        loop {
            let p = match self.link.next_packet(&self.rx) {
                Ok(p) => p,
                Err(e) => {
                    self.close();
                    return Err(e);
                }
            };
            match p {
                StreamPacket::Data(d) if d.is_empty() => {
                    // end of file: confirm, then wait for the daemon's end
                    let _ = self.link.send(&packet(self.serial, &StreamPacket::End)?);
                }
                StreamPacket::Data(d) => return Ok(Some(d)),
                StreamPacket::Hole(_) => {}
                StreamPacket::End => {
                    self.close();
                    return Ok(None);
                }
                StreamPacket::Abort(e) => {
                    self.close();
                    return Err(remote_error(e));
                }
            }
        }
    }

    /// A handle that types into this session (usable from another thread).
    pub fn writer(&self) -> ConsoleWriter {
        ConsoleWriter {
            link: Arc::clone(&self.link),
            serial: self.serial,
        }
    }

    fn close(&mut self) {
        self.closed = true;
        lock(&self.link.streams).remove(&self.serial);
    }
}

impl Drop for RemoteConsole {
    fn drop(&mut self) {
        if !self.closed {
            if let Ok(b) = packet(self.serial, &StreamPacket::Abort(None)) {
                let _ = self.link.send(&b);
            }
            self.close();
        }
    }
}

impl ConsoleWriter {
    /// Sends `data` to the domain's console.
    pub fn send(&self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(STREAM_CHUNK_MAX) {
            let b = frame::stream_data(
                REMOTE_PROGRAM,
                REMOTE_VERSION,
                PROCEDURE,
                self.serial,
                chunk,
            )
            .map_err(|e| rpc_error(format!("cannot encode a stream packet: {e}")))?;
            self.link.send(&b)?;
        }
        Ok(())
    }

    /// Ends the session; the reading side sees the end once the daemon confirms.
    pub fn finish(&self) -> Result<()> {
        self.link.send(&packet(self.serial, &StreamPacket::End)?)
    }
}

impl RemoteBackend {
    /// `virDomainOpenConsole`: opens the console `dev_name` (an alias; `None`: the first)
    /// of the running domain `uuid` with `VIR_DOMAIN_CONSOLE_*` flags.
    pub fn open_console_stream(
        &self,
        uuid: uuid::Uuid,
        dev_name: Option<&str>,
        flags: u32,
    ) -> Result<RemoteConsole> {
        let args = DomainOpenConsoleArgs {
            dom: handle(uuid),
            dev_name: dev_name.map(str::to_string),
            flags,
        };
        let (serial, rx) = self.link.open_stream::<procs::DomainOpenConsole>(&args)?;
        Ok(RemoteConsole {
            link: Arc::clone(&self.link),
            serial,
            rx,
            closed: false,
        })
    }
}

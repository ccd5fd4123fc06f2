//! Volume upload and download with asynchronous librbd I/O: up to [`IN_FLIGHT`] requests
//! of [`CHUNK`] bytes at once, so the cluster works while the next bytes arrive.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::rados::{Image, Pending};
use crate::{PoolConfig, Rbd, vol_object};

/// Bytes per request (an RBD object's default size).
pub const CHUNK: usize = 4 << 20;
/// Requests in flight.
pub const IN_FLIGHT: usize = 8;

fn range_end(object: &str, offset: u64, length: u64, size: u64) -> Result<u64> {
    let end = if length == 0 {
        size
    } else {
        offset
            .checked_add(length)
            .ok_or_else(|| Error::InvalidArg {
                object: object.to_string(),
                field: "offset/length",
                reason: format!("{offset} + {length} overflows"),
            })?
    };
    if offset > size || end > size {
        return Err(Error::InvalidArg {
            object: object.to_string(),
            field: "offset/length",
            reason: format!("range {offset}..{end} goes past the end of the volume ({size} bytes)"),
        });
    }
    Ok(end)
}

/// Writes into an image from an offset.
#[derive(Debug)]
pub struct Upload {
    /// Requests in flight: dropped (waited for) before the image closes.
    flight: VecDeque<Pending>,
    object: String,
    img: Image,
    /// Where the bytes in `buf` go.
    pos: u64,
    end: u64,
    length: u64,
    written: u64,
    buf: Vec<u8>,
}

/// Reads an image from an offset.
#[derive(Debug)]
pub struct Download {
    /// Requests in flight: dropped (waited for) before the image closes.
    flight: VecDeque<Pending>,
    img: Image,
    /// The next offset to request.
    next: u64,
    end: u64,
    cur: Vec<u8>,
    at: usize,
}

fn io_err(object: &str, action: &str, source: crate::rados::RadosError) -> Error {
    Error::Rados {
        object: object.to_string(),
        action: action.to_string(),
        source,
    }
}

impl Rbd {
    fn open_for_stream(
        &self,
        cfg: &PoolConfig,
        name: &str,
        read_only: bool,
    ) -> Result<(Image, u64)> {
        let conn = self.conn(cfg)?;
        let img = conn
            .open(name, read_only)
            .map_err(|e| Self::map_err_pub(cfg, name, "open", e))?;
        let size = img
            .size()
            .map_err(|e| Self::map_err_pub(cfg, name, "stat", e))?;
        Ok((img, size))
    }

    /// Opens `name` for an upload of `length` bytes at `offset` (0: to the end of the
    /// image); a range past the image's size is refused before anything is written.
    pub fn upload(&self, cfg: &PoolConfig, name: &str, offset: u64, length: u64) -> Result<Upload> {
        let object = vol_object(&cfg.name, name);
        let (img, size) = self.open_for_stream(cfg, name, false)?;
        let end = range_end(&object, offset, length, size)?;
        Ok(Upload {
            object,
            img,
            pos: offset,
            end,
            length,
            written: 0,
            buf: Vec::with_capacity(CHUNK),
            flight: VecDeque::new(),
        })
    }

    /// Opens `name` for a download of `length` bytes at `offset` (0: to the end).
    pub fn download(
        &self,
        cfg: &PoolConfig,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Download> {
        let object = vol_object(&cfg.name, name);
        let (img, size) = self.open_for_stream(cfg, name, true)?;
        let end = range_end(&object, offset, length, size)?;
        Ok(Download {
            img,
            next: offset,
            end,
            flight: VecDeque::new(),
            cur: Vec::new(),
            at: 0,
        })
    }
}

impl Upload {
    fn issue(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        while self.flight.len() >= IN_FLIGHT {
            self.wait_oldest()?;
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let n = data.len() as u64;
        let p = self
            .img
            .aio_write(self.pos, data)
            .map_err(|e| io_err(&self.object, "write", e))?;
        self.pos += n;
        self.flight.push_back(p);
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        if let Some(p) = self.flight.pop_front() {
            let off = p.offset();
            let mut buf = p
                .wait()
                .map_err(|e| io_err(&self.object, &format!("write at offset {off} of"), e))?;
            // reuse the buffer of a finished request for the next one
            if self.buf.is_empty() && buf.capacity() >= CHUNK {
                buf.clear();
                self.buf = buf;
            }
        }
        Ok(())
    }

    /// Takes the next bytes; refuses bytes past the end of the range.
    pub fn send(&mut self, mut data: &[u8]) -> Result<()> {
        let room = self.end - self.pos - self.buf.len() as u64;
        if data.len() as u64 > room {
            return Err(Error::InvalidArg {
                object: self.object.clone(),
                field: "stream",
                reason: format!(
                    "upload goes past the end of its range ({room} more bytes allowed at offset {})",
                    self.pos + self.buf.len() as u64
                ),
            });
        }
        while !data.is_empty() {
            let take = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.written += take as u64;
            if self.buf.len() == CHUNK {
                self.issue()?;
            }
        }
        Ok(())
    }

    /// Writes what is buffered, waits for every request and flushes the image; a range
    /// given with a length must have been written whole.
    pub fn finish(&mut self) -> Result<()> {
        self.issue()?;
        while !self.flight.is_empty() {
            self.wait_oldest()?;
        }
        self.img
            .flush()
            .map_err(|e| io_err(&self.object, "flush", e))?;
        if self.length > 0 && self.written != self.length {
            return Err(Error::OperationInvalid {
                object: self.object.clone(),
                reason: format!(
                    "upload ended after {} of {} bytes",
                    self.written, self.length
                ),
            });
        }
        Ok(())
    }

    /// Bytes taken so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

impl Download {
    fn fill(&mut self) -> Result<()> {
        while self.flight.len() < IN_FLIGHT && self.next < self.end {
            let n = (self.end - self.next).min(CHUNK as u64) as usize;
            let p = self
                .img
                .aio_read(self.next, n)
                .map_err(|e| io_err("download", "read", e))?;
            self.next += n as u64;
            self.flight.push_back(p);
        }
        Ok(())
    }

    /// The next bytes, at most `max`; empty at the end of the range.
    pub fn recv(&mut self, max: usize) -> Result<Vec<u8>> {
        if self.at >= self.cur.len() {
            self.fill()?;
            let Some(p) = self.flight.pop_front() else {
                return Ok(Vec::new());
            };
            let off = p.offset();
            self.cur = p.wait().map_err(|e| {
                io_err(
                    "download",
                    &format!("read at offset {off} of the volume"),
                    e,
                )
            })?;
            self.at = 0;
            self.fill()?;
            if self.cur.is_empty() {
                return Ok(Vec::new());
            }
        }
        let n = max.min(self.cur.len() - self.at).max(1);
        let out = self.cur[self.at..self.at + n].to_vec();
        self.at += n;
        Ok(out)
    }
}

impl Rbd {
    /// [`Rbd::map_image_err`] for the stream module.
    pub(crate) fn map_err_pub(
        cfg: &PoolConfig,
        name: &str,
        action: &str,
        e: crate::rados::RadosError,
    ) -> Error {
        Self::map_image_err(cfg, name, action, e)
    }
}

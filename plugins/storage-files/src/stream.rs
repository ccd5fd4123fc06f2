//! Volume upload and download of a byte range with direct file I/O.

use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::OFlags;
use rustix::io::Errno;
use rvirt_xml::{StoragePool, StorageVolume};

use crate::error::{Error, Result};
use crate::probe;
use crate::target::{Target, io_err};

/// Chunk size for [`Download::copy_to`].
pub const CHUNK: usize = 1 << 20;

/// Bytes an upload writes before it asks the kernel to start writing them back, so that
/// the disk works while the data arrives and the final sync has little left to do.
const WRITEBACK_STEP: u64 = 16 << 20;

/// Starts asynchronous write-back of `len` bytes at `offset` (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`: no waiting, no durability promise; the final fsync gives
/// that). Best effort: a failure only means the final sync does the work.
fn start_writeback(fd: &OwnedFd, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: `fd` is an open descriptor borrowed for the call; sync_file_range reads no
    // memory of this process.
    let _ =
        unsafe { libc::sync_file_range(fd.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
}

/// Writes into a volume from `offset`; [`Upload::finish`] syncs and returns the refreshed
/// volume.
pub struct Upload {
    t: Target,
    name: String,
    fd: OwnedFd,
    pos: u64,
    /// Exclusive end when a length was given.
    end: Option<u64>,
    /// A raw volume's capacity: nothing is written past it.
    limit: Option<u64>,
    length: u64,
    written: u64,
    /// Where write-back was last started up to.
    flushed: u64,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("name", &self.name)
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}

/// Opens `vol` for an upload of `length` bytes at `offset` (`length` 0: up to the end).
/// For a raw (or ISO) volume, a range past its capacity is refused before anything is
/// written.
/// Other formats receive the bytes as they are (an image file uploaded whole).
pub fn upload(pool: &StoragePool, vol: &StorageVolume, offset: u64, length: u64) -> Result<Upload> {
    let t = Target::open(pool)?;
    let name = t.vol_name(vol)?.to_string();
    let obj = t.vol_object(&name);
    let (fd, st) = t.open_volume_file(&name, OFlags::RDWR)?;
    let mut buf = vec![0u8; probe::HEADER_LEN];
    let p = t.probe_fd(&name, &fd, &st, &mut buf)?;
    let end = if length > 0 {
        Some(offset.checked_add(length).ok_or_else(|| Error::Overflow {
            object: obj.clone(),
            field: "offset + length".into(),
            reason: format!("{offset} + {length} overflows"),
        })?)
    } else {
        None
    };
    let limit = matches!(p.format, "raw" | "iso").then_some(st.st_size as u64);
    if let Some(cap) = limit
        && (offset > cap || end.is_some_and(|e| e > cap))
    {
        return Err(Error::InvalidArg {
            object: obj,
            field: "offset/length".into(),
            reason: format!(
                "upload of {length} bytes at offset {offset} goes past the volume's capacity ({cap} bytes)"
            ),
        });
    }
    Ok(Upload {
        t,
        name,
        fd,
        pos: offset,
        end,
        limit,
        length,
        written: 0,
        flushed: offset,
    })
}

impl io::Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let room = match (self.end, self.limit) {
            (Some(e), _) => e - self.pos,
            (None, Some(l)) => l.saturating_sub(self.pos),
            (None, None) => u64::MAX,
        };
        if (buf.len() as u64) > room {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: upload goes past the end of its range ({} more bytes allowed at offset {})",
                    self.t.vol_object(&self.name),
                    room,
                    self.pos
                ),
            ));
        }
        loop {
            match rustix::io::pwrite(&self.fd, buf, self.pos) {
                Ok(n) => {
                    self.pos += n as u64;
                    self.written += n as u64;
                    if self.pos >= self.flushed + WRITEBACK_STEP {
                        start_writeback(&self.fd, self.flushed, self.pos - self.flushed);
                        self.flushed = self.pos;
                    }
                    return Ok(n);
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Syncs the data; a range given with a length must have been written whole.
    pub fn finish(self) -> Result<StorageVolume> {
        let obj = self.t.vol_object(&self.name);
        let path = self.t.vol_path(&self.name);
        if self.length > 0 && self.written != self.length {
            return Err(Error::OperationInvalid {
                object: obj,
                reason: format!(
                    "upload ended after {} of {} bytes",
                    self.written, self.length
                ),
            });
        }
        rustix::fs::fsync(&self.fd).map_err(|e| io_err(&obj, "sync", &path, e))?;
        drop(self.fd);
        crate::volume::refresh_in(&self.t, &self.name)
    }
}

/// Reads a volume's bytes from `offset` (`length` 0: to the end of the file).
pub struct Download {
    fd: OwnedFd,
    pos: u64,
    end: u64,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}

/// Opens `vol` for a download of `length` bytes at `offset` (`length` 0: to the end). A
/// range past the end of the file is refused.
pub fn download(
    pool: &StoragePool,
    vol: &StorageVolume,
    offset: u64,
    length: u64,
) -> Result<Download> {
    let t = Target::open(pool)?;
    let name = t.vol_name(vol)?;
    let obj = t.vol_object(name);
    let (fd, st) = t.open_volume_file(name, OFlags::RDONLY)?;
    let size = st.st_size as u64;
    let end = if length == 0 {
        size
    } else {
        offset.checked_add(length).ok_or_else(|| Error::Overflow {
            object: obj.clone(),
            field: "offset + length".into(),
            reason: format!("{offset} + {length} overflows"),
        })?
    };
    if offset > size || end > size {
        return Err(Error::InvalidArg {
            object: obj,
            field: "offset/length".into(),
            reason: format!("range {offset}..{end} is past the end of the volume ({size} bytes)"),
        });
    }
    Ok(Download {
        fd,
        pos: offset,
        end,
    })
}

impl io::Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(left) as usize;
        loop {
            match rustix::io::pread(&self.fd, &mut buf[..n], self.pos) {
                Ok(k) => {
                    self.pos += k as u64;
                    return Ok(k);
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Download {
    /// Bytes left in the range.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// Copies the rest of the range into `out` in [`CHUNK`]-sized reads.
    pub fn copy_to(&mut self, out: &mut impl io::Write) -> io::Result<u64> {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = io::Read::read(self, &mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            out.write_all(&buf[..n])?;
            total += n as u64;
        }
    }
}

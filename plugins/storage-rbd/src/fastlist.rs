//! Image figures without opening the images: what makes a refresh of thousands of images
//! cheap. Opening an image (`rbd_open`) builds a whole image context (several round
//! trips and much CPU); a refresh needs only four numbers per image, which the image's
//! header object answers through the `rbd` object class (`get_size`, `get_features`,
//! `get_flags`, one compound read per image), and the allocation, which is the count of
//! existing objects in the image's object map (`rbd_object_map.ID`, one read). Both
//! phases keep [`WINDOW`] asynchronous operations in flight on the pool's one connection.
//!
//! Anything unexpected (an image without an id, a reply that does not decode, an object
//! map whose element count is not the image's object count) answers `None` for that
//! image, and the caller opens it the slow way (`rbd_open` + `rbd_diff_iterate2`).

use std::collections::VecDeque;
use std::ffi::CString;
use std::ptr;

use libc::{c_char, c_int, size_t};

use crate::ffi;
use crate::rados::Conn;

/// Operations in flight per phase.
pub const WINDOW: usize = 256;

/// `CEPH_NOSNAP`: the image's head, not a snapshot.
const NOSNAP: u64 = u64::MAX - 1;

/// What an image's header answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Size in bytes.
    pub size: u64,
    /// Object size as a power of two.
    pub order: u8,
    /// Feature bits.
    pub features: u64,
    /// `RBD_FLAG_*`.
    pub flags: u64,
}

struct Completion(ffi::rados_completion_t);

impl Completion {
    fn new() -> Option<Completion> {
        let mut c: ffi::rados_completion_t = ptr::null_mut();
        // SAFETY: no callback, a valid out pointer.
        let r =
            unsafe { ffi::rados_aio_create_completion2(ptr::null_mut(), ptr::null_mut(), &mut c) };
        (r == 0).then_some(Completion(c))
    }

    fn wait(&self) -> c_int {
        // SAFETY: a live completion.
        unsafe {
            ffi::rados_aio_wait_for_complete(self.0);
            ffi::rados_aio_get_return_value(self.0)
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // SAFETY: waited for before release, so librados no longer writes into what the
        // operation owns; released once.
        unsafe {
            ffi::rados_aio_wait_for_complete(self.0);
            ffi::rados_aio_release(self.0);
        }
    }
}

/// One exec's output slot (librados allocates the buffer; freed on drop).
struct Out {
    buf: *mut c_char,
    len: size_t,
    rval: c_int,
}

impl Out {
    fn bytes(&self) -> Option<&[u8]> {
        if self.rval < 0 || self.buf.is_null() {
            return None;
        }
        // SAFETY: librados filled `buf` with `len` bytes, alive until `rados_buffer_free`.
        Some(unsafe { std::slice::from_raw_parts(self.buf.cast::<u8>(), self.len) })
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        if !self.buf.is_null() {
            // SAFETY: a buffer librados allocated for this exec, freed once.
            unsafe { ffi::rados_buffer_free(self.buf) };
        }
    }
}

/// A compound header read in flight. Field order matters: the completion is dropped
/// (waited for) before the outputs it writes into.
struct HeaderOp {
    c: Completion,
    op: ffi::rados_read_op_t,
    outs: Box<[Out; 3]>,
    idx: usize,
}

impl Drop for HeaderOp {
    fn drop(&mut self) {
        // SAFETY: wait before releasing the op (the completion's drop waits again, which
        // returns at once), then release it once.
        unsafe {
            ffi::rados_aio_wait_for_complete(self.c.0);
            ffi::rados_release_read_op(self.op);
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn start_header(conn: &Conn, id: &str, idx: usize) -> Option<HeaderOp> {
    let oid = CString::new(format!("rbd_header.{id}")).ok()?;
    let c = Completion::new()?;
    // SAFETY: creates an empty read op, released by `HeaderOp`'s drop.
    let op = unsafe { ffi::rados_create_read_op() };
    let mut h = HeaderOp {
        c,
        op,
        outs: Box::new([
            Out {
                buf: ptr::null_mut(),
                len: 0,
                rval: 0,
            },
            Out {
                buf: ptr::null_mut(),
                len: 0,
                rval: 0,
            },
            Out {
                buf: ptr::null_mut(),
                len: 0,
                rval: 0,
            },
        ]),
        idx,
    };
    let snap = NOSNAP.to_le_bytes();
    let mut features_in = snap.to_vec();
    features_in.push(1); // read_only: the caller only reads
    let calls: [(&[u8], &[u8]); 3] = [
        (b"get_size\0", &snap),
        (b"get_features\0", &features_in),
        (b"get_flags\0", &snap),
    ];
    for (i, (method, input)) in calls.iter().enumerate() {
        let out = &mut h.outs[i];
        // SAFETY: a live op; class and method are NUL-terminated; librados copies the
        // input; the output pointers live in a Box that outlives the operation.
        unsafe {
            ffi::rados_read_op_exec(
                h.op,
                c"rbd".as_ptr(),
                method.as_ptr().cast(),
                input.as_ptr().cast(),
                input.len(),
                &mut out.buf,
                &mut out.len,
                &mut out.rval,
            );
        }
    }
    // SAFETY: a live op, I/O context and completion; the oid is copied by librados.
    let r = unsafe { ffi::rados_aio_read_op_operate(h.op, conn.io(), h.c.0, oid.as_ptr(), 0) };
    (r == 0).then_some(h)
}

fn finish_header(h: &HeaderOp) -> Option<Header> {
    if h.c.wait() < 0 {
        return None;
    }
    let size = h.outs[0].bytes()?;
    let features = h.outs[1].bytes()?;
    let flags = h.outs[2].bytes()?;
    Some(Header {
        order: *size.first()?,
        size: u64_at(size, 1)?,
        features: u64_at(features, 0)?,
        flags: u64_at(flags, 0)?,
    })
}

/// The headers of the images with ids `ids` (`None` where one cannot be read).
pub fn headers(conn: &Conn, ids: &[Option<String>]) -> Vec<Option<Header>> {
    let mut out = vec![None; ids.len()];
    let mut flight: VecDeque<HeaderOp> = VecDeque::new();
    let mut next = 0;
    loop {
        while flight.len() < WINDOW && next < ids.len() {
            if let Some(id) = &ids[next]
                && let Some(h) = start_header(conn, id, next)
            {
                flight.push_back(h);
            }
            next += 1;
        }
        let Some(h) = flight.pop_front() else { break };
        out[h.idx] = finish_header(&h);
    }
    out
}

/// An object map read in flight. The completion drops (waits) before the buffer.
struct MapRead {
    c: Completion,
    buf: Vec<u8>,
    idx: usize,
    objects: u64,
}

/// Bytes an object map of `objects` elements takes before its data: a `u32` length, then
/// the versioned header (`u8` version, `u8` compat, `u32` length, `u64` element count).
const MAP_PREFIX: usize = 4 + 1 + 1 + 4 + 8;

/// Counts the existing objects of an object map read from its start: `None` when the
/// bytes do not hold a map of `objects` elements.
pub fn count_existing(buf: &[u8], objects: u64) -> Option<u64> {
    let hdr_len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
    if hdr_len != MAP_PREFIX - 4 {
        return None;
    }
    if u64_at(buf, 10)? != objects {
        return None;
    }
    let n = usize::try_from(objects.div_ceil(4)).ok()?;
    let data = buf.get(MAP_PREFIX..MAP_PREFIX + n)?;
    // two bits per object; any non-zero state (exists, pending, exists-clean) counts
    Some(
        data.iter()
            .map(|b| (0..4).filter(|k| (b >> (k * 2)) & 3 != 0).count() as u64)
            .sum(),
    )
}

fn start_map(conn: &Conn, id: &str, idx: usize, objects: u64) -> Option<MapRead> {
    let oid = CString::new(format!("rbd_object_map.{id}")).ok()?;
    let len = MAP_PREFIX + usize::try_from(objects.div_ceil(4)).ok()?;
    let c = Completion::new()?;
    let mut m = MapRead {
        c,
        buf: vec![0u8; len],
        idx,
        objects,
    };
    // SAFETY: a live I/O context and completion; the buffer (heap, owned by `m`) stays
    // allocated until the completion is waited for (`MapRead` drops it after).
    let r = unsafe {
        ffi::rados_aio_read(
            conn.io(),
            oid.as_ptr(),
            m.c.0,
            m.buf.as_mut_ptr().cast(),
            len,
            0,
        )
    };
    (r == 0).then_some(m)
}

/// The number of existing objects of each image (`items`: id, object count), from the
/// object maps; `None` where a map cannot be read or does not decode.
pub fn existing_objects(conn: &Conn, items: &[(String, u64)]) -> Vec<Option<u64>> {
    let mut out = vec![None; items.len()];
    let mut flight: VecDeque<MapRead> = VecDeque::new();
    let mut next = 0;
    loop {
        while flight.len() < WINDOW && next < items.len() {
            let (id, objects) = &items[next];
            if let Some(m) = start_map(conn, id, next, *objects) {
                flight.push_back(m);
            }
            next += 1;
        }
        let Some(m) = flight.pop_front() else { break };
        let r = m.c.wait();
        if r >= 0 {
            let got = (r as usize).min(m.buf.len());
            out[m.idx] = count_existing(&m.buf[..got], m.objects);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_maps_count_every_non_zero_state() {
        let mut b = vec![14, 0, 0, 0, 1, 1, 8, 0, 0, 0];
        b.extend(6u64.to_le_bytes());
        b.extend([0b0100_0011, 0b0000_1000]);
        assert_eq!(count_existing(&b, 6), Some(3));
        assert_eq!(count_existing(&b, 7), None, "element count differs");
        assert_eq!(count_existing(&b[..19], 6), None, "short");
    }
}

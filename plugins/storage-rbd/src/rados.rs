//! Safe wrappers over [`crate::ffi`]: a cluster connection with the I/O context of one
//! Ceph pool ([`Conn`]), its images ([`Image`]) and asynchronous image I/O ([`Pending`]).
//!
//! librados documents `rados_t` and `rados_ioctx_t` as safe to use from several threads
//! for I/O (only changing an I/O context's settings, which nothing here does, is not), so
//! [`Conn`] is `Send + Sync` and shared by every operation on its pool. An [`Image`]
//! handle is used by one thread at a time (`Send`, not `Sync`).

use std::ffi::{CStr, CString};
use std::ptr;
use std::sync::Arc;

use libc::{c_char, c_int, c_void, size_t};

use crate::ffi;

/// A failed librados/librbd call: the function and the (positive) errno it answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed: {}", std::io::Error::from_raw_os_error(*errno))]
pub struct RadosError {
    /// The C function.
    pub call: &'static str,
    /// The errno (positive).
    pub errno: i32,
}

/// The result of a librados/librbd call.
pub type RadosResult<T> = Result<T, RadosError>;

fn check(call: &'static str, r: c_int) -> RadosResult<c_int> {
    if r < 0 {
        Err(RadosError { call, errno: -r })
    } else {
        Ok(r)
    }
}

fn cstr(call: &'static str, s: &str) -> RadosResult<CString> {
    CString::new(s).map_err(|_| RadosError {
        call,
        errno: libc::EINVAL,
    })
}

/// A connection to a Ceph cluster with an I/O context on one of its pools.
#[derive(Debug)]
pub struct Conn {
    cluster: ffi::rados_t,
    io: ffi::rados_ioctx_t,
    pool: String,
}

// SAFETY: librados handles may be used from any thread; `Conn` only issues I/O and stat
// calls through them (documented thread-safe) and destroys them once, in `Drop`.
unsafe impl Send for Conn {}
// SAFETY: as above: concurrent I/O calls on one cluster handle and I/O context are
// supported by librados.
unsafe impl Sync for Conn {}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: both handles were created by `Conn::connect` and are destroyed only
        // here; every `Image` holds an `Arc<Conn>`, so none is still open.
        unsafe {
            ffi::rados_ioctx_destroy(self.io);
            ffi::rados_shutdown(self.cluster);
        }
    }
}

/// Cluster-wide figures, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterStat {
    /// Raw capacity.
    pub total: u64,
    /// Raw bytes used.
    pub used: u64,
    /// Raw bytes free.
    pub avail: u64,
}

impl Conn {
    /// Connects as client `id` (`admin` for `client.admin`) with `options` set first
    /// (`mon_host`, `key`, `auth_client_required`, timeouts), then opens pool `pool`.
    pub fn connect(id: &str, options: &[(&str, &str)], pool: &str) -> RadosResult<Conn> {
        let id = cstr("rados_create", id)?;
        let mut cluster: ffi::rados_t = ptr::null_mut();
        // SAFETY: `cluster` is a valid out pointer and `id` a NUL-terminated string.
        check("rados_create", unsafe {
            ffi::rados_create(&mut cluster, id.as_ptr())
        })?;
        let fail = |e: RadosError| {
            // SAFETY: `cluster` was created above and is not used after this.
            unsafe { ffi::rados_shutdown(cluster) };
            e
        };
        for (k, v) in options {
            let (k, v) = (
                cstr("rados_conf_set", k).map_err(fail)?,
                cstr("rados_conf_set", v).map_err(fail)?,
            );
            // SAFETY: a live cluster handle and two NUL-terminated strings.
            check("rados_conf_set", unsafe {
                ffi::rados_conf_set(cluster, k.as_ptr(), v.as_ptr())
            })
            .map_err(fail)?;
        }
        // SAFETY: a configured, not yet connected cluster handle.
        check("rados_connect", unsafe { ffi::rados_connect(cluster) }).map_err(fail)?;
        let p = cstr("rados_ioctx_create", pool).map_err(fail)?;
        let mut io: ffi::rados_ioctx_t = ptr::null_mut();
        // SAFETY: a connected cluster, a NUL-terminated pool name, a valid out pointer.
        check("rados_ioctx_create", unsafe {
            ffi::rados_ioctx_create(cluster, p.as_ptr(), &mut io)
        })
        .map_err(fail)?;
        Ok(Conn {
            cluster,
            io,
            pool: pool.to_string(),
        })
    }

    /// The Ceph pool this connection's I/O context is on.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// The cluster's raw figures (`rados_cluster_stat`).
    pub fn cluster_stat(&self) -> RadosResult<ClusterStat> {
        let mut st = ffi::rados_cluster_stat_t::default();
        // SAFETY: a connected cluster and a valid out pointer of the right type.
        check("rados_cluster_stat", unsafe {
            ffi::rados_cluster_stat(self.cluster, &mut st)
        })?;
        Ok(ClusterStat {
            total: st.kb.saturating_mul(1024),
            used: st.kb_used.saturating_mul(1024),
            avail: st.kb_avail.saturating_mul(1024),
        })
    }

    /// Bytes the pool's objects take (`rados_ioctx_pool_stat`'s `num_bytes`).
    pub fn pool_bytes(&self) -> RadosResult<u64> {
        let mut st = ffi::rados_pool_stat_t::default();
        // SAFETY: a live I/O context and a valid out pointer of the right type.
        check("rados_ioctx_pool_stat", unsafe {
            ffi::rados_ioctx_pool_stat(self.io, &mut st)
        })?;
        Ok(st.num_bytes)
    }

    /// The I/O context, for [`crate::fastlist`].
    pub(crate) fn io(&self) -> ffi::rados_ioctx_t {
        self.io
    }

    /// The names and ids of the pool's images (`rbd_list2`).
    pub fn list(&self) -> RadosResult<Vec<(String, String)>> {
        let mut cap: size_t = 1024;
        loop {
            let mut specs: Vec<ffi::rbd_image_spec_t> = Vec::with_capacity(cap);
            let mut n = cap;
            // SAFETY: `specs` has room for `n` entries; librbd fills at most `n` and sets
            // `n` to the count (or the count needed, with -ERANGE).
            let r = unsafe { ffi::rbd_list2(self.io, specs.as_mut_ptr(), &mut n) };
            if r == -libc::ERANGE {
                cap = n.max(cap * 2);
                continue;
            }
            check("rbd_list2", r)?;
            // SAFETY: librbd initialised the first `n` entries.
            unsafe { specs.set_len(n) };
            let names = specs
                .iter()
                .map(|s| {
                    // SAFETY: each entry's name and id are NUL-terminated strings owned by
                    // librbd (the id may be NULL for an old format 1 image).
                    unsafe {
                        let id = if s.id.is_null() {
                            String::new()
                        } else {
                            CStr::from_ptr(s.id).to_string_lossy().into_owned()
                        };
                        (CStr::from_ptr(s.name).to_string_lossy().into_owned(), id)
                    }
                })
                .collect();
            // SAFETY: the entries librbd filled, released once.
            unsafe { ffi::rbd_image_spec_list_cleanup(specs.as_mut_ptr(), n) };
            return Ok(names);
        }
    }

    /// Creates a format 2 image of `size` bytes with the cluster's default features.
    pub fn create(&self, name: &str, size: u64) -> RadosResult<()> {
        let n = cstr("rbd_create4", name)?;
        let opts = Options::format2();
        // SAFETY: a live I/O context, a NUL-terminated name, live options.
        check("rbd_create4", unsafe {
            ffi::rbd_create4(self.io, n.as_ptr(), size, opts.0)
        })?;
        Ok(())
    }

    /// Removes an image (`rbd_remove`).
    pub fn remove(&self, name: &str) -> RadosResult<()> {
        let n = cstr("rbd_remove", name)?;
        // SAFETY: a live I/O context and a NUL-terminated name.
        check("rbd_remove", unsafe {
            ffi::rbd_remove(self.io, n.as_ptr())
        })?;
        Ok(())
    }

    /// Clones snapshot `snap` of image `parent` (of `parent_conn`'s pool) as `name` here.
    pub fn clone_image(
        &self,
        parent_conn: &Conn,
        parent: &str,
        snap: &str,
        name: &str,
    ) -> RadosResult<()> {
        let (p, s, n) = (
            cstr("rbd_clone3", parent)?,
            cstr("rbd_clone3", snap)?,
            cstr("rbd_clone3", name)?,
        );
        let opts = Options::format2();
        // SAFETY: live I/O contexts, NUL-terminated names, live options.
        check("rbd_clone3", unsafe {
            ffi::rbd_clone3(
                parent_conn.io,
                p.as_ptr(),
                s.as_ptr(),
                self.io,
                n.as_ptr(),
                opts.0,
            )
        })?;
        Ok(())
    }

    /// Opens image `name` (read-only: no header watch, no exclusive lock).
    pub fn open(self: &Arc<Self>, name: &str, read_only: bool) -> RadosResult<Image> {
        let n = cstr("rbd_open", name)?;
        let mut h: ffi::rbd_image_t = ptr::null_mut();
        // SAFETY: a live I/O context, a NUL-terminated name, a valid out pointer, no snapshot.
        let r = unsafe {
            if read_only {
                ffi::rbd_open_read_only(self.io, n.as_ptr(), &mut h, ptr::null())
            } else {
                ffi::rbd_open(self.io, n.as_ptr(), &mut h, ptr::null())
            }
        };
        check(
            if read_only {
                "rbd_open_read_only"
            } else {
                "rbd_open"
            },
            r,
        )?;
        Ok(Image {
            h,
            conn: Arc::clone(self),
        })
    }
}

/// `rbd_image_options_t`, destroyed on drop.
struct Options(ffi::rbd_image_options_t);

impl Options {
    fn format2() -> Options {
        let mut o: ffi::rbd_image_options_t = ptr::null_mut();
        // SAFETY: a valid out pointer; then a live options object and a known option.
        unsafe {
            ffi::rbd_image_options_create(&mut o);
            ffi::rbd_image_options_set_uint64(o, ffi::RBD_IMAGE_OPTION_FORMAT, 2);
        }
        Options(o)
    }
}

impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: created in `format2`, destroyed once.
        unsafe { ffi::rbd_image_options_destroy(self.0) }
    }
}

/// An open image.
#[derive(Debug)]
pub struct Image {
    h: ffi::rbd_image_t,
    conn: Arc<Conn>,
}

// SAFETY: an image handle may move between threads; `Image` is not `Sync`, so one thread
// uses it at a time.
unsafe impl Send for Image {}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: opened by `Conn::open`, closed once; its connection outlives it (Arc).
        unsafe { ffi::rbd_close(self.h) };
    }
}

unsafe extern "C" fn sum_allocated(
    _ofs: u64,
    len: size_t,
    exists: c_int,
    arg: *mut c_void,
) -> c_int {
    if exists != 0 {
        // SAFETY: `arg` is the `u64` `Image::allocated` passed, alive for the call.
        unsafe { *(arg as *mut u64) += len as u64 };
    }
    0
}

/// A progress callback for librbd calls that need one (they call it unchecked).
unsafe extern "C" fn no_progress(_done: u64, _total: u64, _arg: *mut c_void) -> c_int {
    0
}

impl Image {
    /// The image's size in bytes.
    pub fn size(&self) -> RadosResult<u64> {
        Ok(self.info()?.size)
    }

    /// `rbd_stat`.
    pub fn info(&self) -> RadosResult<ffi::rbd_image_info_t> {
        let mut info = std::mem::MaybeUninit::<ffi::rbd_image_info_t>::zeroed();
        // SAFETY: an open image and an out buffer of the size given.
        check("rbd_stat", unsafe {
            ffi::rbd_stat(
                self.h,
                info.as_mut_ptr(),
                std::mem::size_of::<ffi::rbd_image_info_t>(),
            )
        })?;
        // SAFETY: zero-initialised and then filled by librbd; all fields are plain data.
        Ok(unsafe { info.assume_init() })
    }

    /// The image's feature bits.
    pub fn features(&self) -> RadosResult<u64> {
        let mut f = 0u64;
        // SAFETY: an open image and a valid out pointer.
        check("rbd_get_features", unsafe {
            ffi::rbd_get_features(self.h, &mut f)
        })?;
        Ok(f)
    }

    /// The image's flags (`RBD_FLAG_*`).
    pub fn flags(&self) -> RadosResult<u64> {
        let mut f = 0u64;
        // SAFETY: an open image and a valid out pointer.
        check("rbd_get_flags", unsafe {
            ffi::rbd_get_flags(self.h, &mut f)
        })?;
        Ok(f)
    }

    /// Bytes of the image's objects that exist, by the object map (`rbd_diff_iterate2`,
    /// whole objects): `None` when the image has no valid fast-diff map, where counting
    /// would mean asking for every object.
    pub fn allocated(&self, size: u64) -> RadosResult<Option<u64>> {
        if self.features()? & ffi::RBD_FEATURE_FAST_DIFF == 0
            || self.flags()? & ffi::RBD_FLAG_FAST_DIFF_INVALID != 0
        {
            return Ok(None);
        }
        let mut total = 0u64;
        // SAFETY: an open image; the callback only adds to `total`, which outlives the
        // synchronous call.
        check("rbd_diff_iterate2", unsafe {
            ffi::rbd_diff_iterate2(
                self.h,
                ptr::null(),
                0,
                size,
                0,
                1,
                Some(sum_allocated),
                (&mut total as *mut u64).cast(),
            )
        })?;
        Ok(Some(total))
    }

    /// Changes the size (`allow_shrink` for a smaller one).
    pub fn resize(&self, size: u64, allow_shrink: bool) -> RadosResult<()> {
        // SAFETY: an open image; a progress callback that ignores its arguments.
        check("rbd_resize2", unsafe {
            ffi::rbd_resize2(self.h, size, allow_shrink, no_progress, ptr::null_mut())
        })?;
        Ok(())
    }

    /// The names of the image's snapshots.
    pub fn snapshots(&self) -> RadosResult<Vec<String>> {
        let mut max: c_int = 16;
        loop {
            let mut snaps: Vec<ffi::rbd_snap_info_t> = Vec::with_capacity(max as usize + 1);
            let mut n = max;
            // SAFETY: room for `max` entries (plus librbd's end marker).
            let r = unsafe { ffi::rbd_snap_list(self.h, snaps.as_mut_ptr(), &mut n) };
            if r == -libc::ERANGE {
                max = n.max(max * 2);
                continue;
            }
            let count = check("rbd_snap_list", r)? as usize;
            // SAFETY: librbd filled `count` entries (and the end marker after them).
            unsafe { snaps.set_len(count) };
            let names = snaps
                .iter()
                .map(|s| {
                    // SAFETY: each name is a NUL-terminated string owned by librbd until
                    // `rbd_snap_list_end`.
                    unsafe { CStr::from_ptr(s.name) }
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            // SAFETY: releases what `rbd_snap_list` filled, once.
            unsafe { ffi::rbd_snap_list_end(snaps.as_mut_ptr()) };
            return Ok(names);
        }
    }

    fn snap_call(
        &self,
        call: &'static str,
        f: unsafe extern "C" fn(ffi::rbd_image_t, *const c_char) -> c_int,
        snap: &str,
    ) -> RadosResult<()> {
        let s = cstr(call, snap)?;
        // SAFETY: an open image and a NUL-terminated snapshot name.
        check(call, unsafe { f(self.h, s.as_ptr()) })?;
        Ok(())
    }

    /// `rbd_snap_create`.
    pub fn snap_create(&self, snap: &str) -> RadosResult<()> {
        self.snap_call("rbd_snap_create", ffi::rbd_snap_create, snap)
    }

    /// `rbd_snap_protect`.
    pub fn snap_protect(&self, snap: &str) -> RadosResult<()> {
        self.snap_call("rbd_snap_protect", ffi::rbd_snap_protect, snap)
    }

    /// `rbd_snap_unprotect`.
    pub fn snap_unprotect(&self, snap: &str) -> RadosResult<()> {
        self.snap_call("rbd_snap_unprotect", ffi::rbd_snap_unprotect, snap)
    }

    /// `rbd_snap_remove`.
    pub fn snap_remove(&self, snap: &str) -> RadosResult<()> {
        self.snap_call("rbd_snap_remove", ffi::rbd_snap_remove, snap)
    }

    /// Copies the image's data into a new image `name` of `dest`'s pool (`rbd_copy3`).
    pub fn copy_to(&self, dest: &Conn, name: &str) -> RadosResult<()> {
        let n = cstr("rbd_copy3", name)?;
        let opts = Options::format2();
        // SAFETY: an open image, a live I/O context, a NUL-terminated name, live options.
        check("rbd_copy3", unsafe {
            ffi::rbd_copy3(self.h, dest.io, n.as_ptr(), opts.0)
        })?;
        Ok(())
    }

    /// Discards `len` bytes at `ofs` (they read back as zeros).
    pub fn discard(&self, ofs: u64, len: u64) -> RadosResult<()> {
        // SAFETY: an open image.
        check("rbd_discard", unsafe { ffi::rbd_discard(self.h, ofs, len) })?;
        Ok(())
    }

    /// `rbd_flush`.
    pub fn flush(&self) -> RadosResult<()> {
        // SAFETY: an open image.
        check("rbd_flush", unsafe { ffi::rbd_flush(self.h) })?;
        Ok(())
    }

    fn completion(call: &'static str) -> RadosResult<ffi::rbd_completion_t> {
        let mut c: ffi::rbd_completion_t = ptr::null_mut();
        // SAFETY: no callback, a valid out pointer.
        check(call, unsafe {
            ffi::rbd_aio_create_completion(ptr::null_mut(), None, &mut c)
        })?;
        Ok(c)
    }

    /// Starts writing `buf` at `ofs`; the returned [`Pending`] owns the buffer until the
    /// write completes.
    pub fn aio_write(&self, ofs: u64, buf: Vec<u8>) -> RadosResult<Pending> {
        let c = Self::completion("rbd_aio_write")?;
        let p = Pending {
            c,
            buf,
            ofs,
            call: "rbd_aio_write",
            waited: false,
        };
        // SAFETY: an open image; `p.buf` stays allocated and unmoved (a Vec's heap
        // buffer) until the completion is waited for (`Pending::wait` or its drop).
        let r = unsafe { ffi::rbd_aio_write(self.h, ofs, p.buf.len(), p.buf.as_ptr().cast(), p.c) };
        check("rbd_aio_write", r)?;
        Ok(p)
    }

    /// Starts reading `len` bytes at `ofs` into a buffer the returned [`Pending`] owns.
    pub fn aio_read(&self, ofs: u64, len: usize) -> RadosResult<Pending> {
        let c = Self::completion("rbd_aio_read")?;
        let mut p = Pending {
            c,
            buf: vec![0u8; len],
            ofs,
            call: "rbd_aio_read",
            waited: false,
        };
        // SAFETY: as in `aio_write`; librbd writes at most `len` bytes into the buffer.
        let r = unsafe { ffi::rbd_aio_read(self.h, ofs, len, p.buf.as_mut_ptr().cast(), p.c) };
        check("rbd_aio_read", r)?;
        Ok(p)
    }

    /// The connection the image was opened through.
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

/// An asynchronous read or write in flight, with its buffer. Dropping it waits for it.
#[derive(Debug)]
pub struct Pending {
    c: ffi::rbd_completion_t,
    buf: Vec<u8>,
    ofs: u64,
    call: &'static str,
    waited: bool,
}

// SAFETY: a completion may be waited for and released from any thread.
unsafe impl Send for Pending {}

impl Pending {
    /// Where the I/O starts.
    pub fn offset(&self) -> u64 {
        self.ofs
    }

    /// Waits for the I/O: answers its buffer (for a read, the bytes read: the buffer
    /// truncated to what librbd answered).
    pub fn wait(mut self) -> RadosResult<Vec<u8>> {
        // SAFETY: a live completion, waited for and then read once.
        let r = unsafe {
            ffi::rbd_aio_wait_for_complete(self.c);
            ffi::rbd_aio_get_return_value(self.c)
        };
        self.waited = true;
        if r < 0 {
            return Err(RadosError {
                call: self.call,
                errno: -(r as i32),
            });
        }
        let mut buf = std::mem::take(&mut self.buf);
        if self.call == "rbd_aio_read" {
            buf.truncate(r as usize);
        }
        Ok(buf)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // SAFETY: the buffer must outlive the I/O: wait first unless `wait` did, then
        // release the completion once.
        unsafe {
            if !self.waited {
                ffi::rbd_aio_wait_for_complete(self.c);
            }
            ffi::rbd_aio_release(self.c);
        }
    }
}

//! The few librados and librbd C functions this backend calls (Ceph 16, Debian's
//! `librados-dev` and `librbd-dev`): declarations only, written from the public headers
//! `rados/librados.h` and `rbd/librbd.h`. Every call goes through the safe wrappers of
//! [`crate::rados`].

#![allow(non_camel_case_types)]

use libc::{c_char, c_int, c_void, size_t, ssize_t};

pub type rados_t = *mut c_void;
pub type rados_ioctx_t = *mut c_void;
pub type rbd_image_t = *mut c_void;
pub type rbd_completion_t = *mut c_void;
pub type rbd_image_options_t = *mut c_void;
pub type rbd_callback_t = Option<unsafe extern "C" fn(rbd_completion_t, *mut c_void)>;
/// `librbd_progress_fn_t`: librbd calls it without checking for NULL.
pub type progress_fn_t = unsafe extern "C" fn(u64, u64, *mut c_void) -> c_int;
pub type diff_cb_t = Option<unsafe extern "C" fn(u64, size_t, c_int, *mut c_void) -> c_int>;

/// `struct rados_cluster_stat_t`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct rados_cluster_stat_t {
    pub kb: u64,
    pub kb_used: u64,
    pub kb_avail: u64,
    pub num_objects: u64,
}

/// `struct rados_pool_stat_t` (Ceph 16 layout).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct rados_pool_stat_t {
    pub num_bytes: u64,
    pub num_kb: u64,
    pub num_objects: u64,
    pub num_object_clones: u64,
    pub num_object_copies: u64,
    pub num_objects_missing_on_primary: u64,
    pub num_objects_unfound: u64,
    pub num_objects_degraded: u64,
    pub num_rd: u64,
    pub num_rd_kb: u64,
    pub num_wr: u64,
    pub num_wr_kb: u64,
    pub num_user_bytes: u64,
    pub compressed_bytes_orig: u64,
    pub compressed_bytes: u64,
    pub compressed_bytes_alloc: u64,
}

/// `rbd_image_spec_t`.
#[repr(C)]
#[derive(Debug)]
pub struct rbd_image_spec_t {
    pub id: *mut c_char,
    pub name: *mut c_char,
}

/// `rbd_image_info_t` (its deprecated tail fields kept for the size).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_image_info_t {
    pub size: u64,
    pub obj_size: u64,
    pub num_objs: u64,
    pub order: c_int,
    pub block_name_prefix: [c_char; 24],
    pub parent_pool: i64,
    pub parent_name: [c_char; 96],
}

/// `rbd_snap_info_t`.
#[repr(C)]
#[derive(Debug)]
pub struct rbd_snap_info_t {
    pub id: u64,
    pub size: u64,
    pub name: *const c_char,
}

/// `RBD_FEATURE_LAYERING`.
pub const RBD_FEATURE_LAYERING: u64 = 1;
/// `RBD_FEATURE_FAST_DIFF`.
pub const RBD_FEATURE_FAST_DIFF: u64 = 1 << 4;
/// `RBD_FLAG_OBJECT_MAP_INVALID`.
pub const RBD_FLAG_OBJECT_MAP_INVALID: u64 = 1;
/// `RBD_FLAG_FAST_DIFF_INVALID`.
pub const RBD_FLAG_FAST_DIFF_INVALID: u64 = 1 << 1;
/// `RBD_IMAGE_OPTION_FORMAT`.
pub const RBD_IMAGE_OPTION_FORMAT: c_int = 0;

#[link(name = "rados")]
unsafe extern "C" {
    pub fn rados_create(cluster: *mut rados_t, id: *const c_char) -> c_int;
    pub fn rados_conf_set(cluster: rados_t, option: *const c_char, value: *const c_char) -> c_int;
    pub fn rados_connect(cluster: rados_t) -> c_int;
    pub fn rados_shutdown(cluster: rados_t);
    pub fn rados_cluster_stat(cluster: rados_t, result: *mut rados_cluster_stat_t) -> c_int;
    pub fn rados_ioctx_create(
        cluster: rados_t,
        pool_name: *const c_char,
        ioctx: *mut rados_ioctx_t,
    ) -> c_int;
    pub fn rados_ioctx_destroy(io: rados_ioctx_t);
    pub fn rados_ioctx_pool_stat(io: rados_ioctx_t, stats: *mut rados_pool_stat_t) -> c_int;
}

#[link(name = "rbd")]
unsafe extern "C" {
    pub fn rbd_list2(io: rados_ioctx_t, images: *mut rbd_image_spec_t, max: *mut size_t) -> c_int;
    pub fn rbd_image_spec_list_cleanup(images: *mut rbd_image_spec_t, num: size_t);
    pub fn rbd_image_options_create(opts: *mut rbd_image_options_t);
    pub fn rbd_image_options_destroy(opts: rbd_image_options_t);
    pub fn rbd_image_options_set_uint64(
        opts: rbd_image_options_t,
        optname: c_int,
        optval: u64,
    ) -> c_int;
    pub fn rbd_create4(
        io: rados_ioctx_t,
        name: *const c_char,
        size: u64,
        opts: rbd_image_options_t,
    ) -> c_int;
    pub fn rbd_clone3(
        p_ioctx: rados_ioctx_t,
        p_name: *const c_char,
        p_snapname: *const c_char,
        c_ioctx: rados_ioctx_t,
        c_name: *const c_char,
        c_opts: rbd_image_options_t,
    ) -> c_int;
    pub fn rbd_remove(io: rados_ioctx_t, name: *const c_char) -> c_int;
    pub fn rbd_open(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_open_read_only(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_close(image: rbd_image_t) -> c_int;
    pub fn rbd_resize2(
        image: rbd_image_t,
        size: u64,
        allow_shrink: bool,
        cb: progress_fn_t,
        cbdata: *mut c_void,
    ) -> c_int;
    pub fn rbd_stat(image: rbd_image_t, info: *mut rbd_image_info_t, infosize: size_t) -> c_int;
    pub fn rbd_get_features(image: rbd_image_t, features: *mut u64) -> c_int;
    pub fn rbd_get_flags(image: rbd_image_t, flags: *mut u64) -> c_int;
    pub fn rbd_copy3(
        src: rbd_image_t,
        dest_io: rados_ioctx_t,
        destname: *const c_char,
        dest_opts: rbd_image_options_t,
    ) -> c_int;
    pub fn rbd_snap_list(image: rbd_image_t, snaps: *mut rbd_snap_info_t, max: *mut c_int)
    -> c_int;
    pub fn rbd_snap_list_end(snaps: *mut rbd_snap_info_t);
    pub fn rbd_snap_create(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_remove(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_protect(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_unprotect(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_diff_iterate2(
        image: rbd_image_t,
        fromsnapname: *const c_char,
        ofs: u64,
        len: u64,
        include_parent: u8,
        whole_object: u8,
        cb: diff_cb_t,
        arg: *mut c_void,
    ) -> c_int;
    pub fn rbd_discard(image: rbd_image_t, ofs: u64, len: u64) -> c_int;
    pub fn rbd_flush(image: rbd_image_t) -> c_int;
    pub fn rbd_aio_create_completion(
        cb_arg: *mut c_void,
        complete_cb: rbd_callback_t,
        c: *mut rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_wait_for_complete(c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_get_return_value(c: rbd_completion_t) -> ssize_t;
    pub fn rbd_aio_release(c: rbd_completion_t);
    pub fn rbd_aio_write(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        buf: *const c_char,
        c: rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_read(
        image: rbd_image_t,
        off: u64,
        len: size_t,
        buf: *mut c_char,
        c: rbd_completion_t,
    ) -> c_int;
}

pub type rados_completion_t = *mut c_void;
pub type rados_read_op_t = *mut c_void;

#[link(name = "rados")]
unsafe extern "C" {
    pub fn rados_aio_create_completion2(
        cb_arg: *mut c_void,
        cb_complete: *mut c_void,
        pc: *mut rados_completion_t,
    ) -> c_int;
    pub fn rados_aio_wait_for_complete(c: rados_completion_t) -> c_int;
    pub fn rados_aio_get_return_value(c: rados_completion_t) -> c_int;
    pub fn rados_aio_release(c: rados_completion_t);
    pub fn rados_aio_read(
        io: rados_ioctx_t,
        oid: *const c_char,
        completion: rados_completion_t,
        buf: *mut c_char,
        len: size_t,
        off: u64,
    ) -> c_int;
    pub fn rados_create_read_op() -> rados_read_op_t;
    pub fn rados_release_read_op(op: rados_read_op_t);
    pub fn rados_read_op_exec(
        op: rados_read_op_t,
        cls: *const c_char,
        method: *const c_char,
        in_buf: *const c_char,
        in_len: size_t,
        out_buf: *mut *mut c_char,
        out_len: *mut size_t,
        prval: *mut c_int,
    );
    pub fn rados_aio_read_op_operate(
        op: rados_read_op_t,
        io: rados_ioctx_t,
        completion: rados_completion_t,
        oid: *const c_char,
        flags: c_int,
    ) -> c_int;
    pub fn rados_buffer_free(buf: *mut c_char);
}

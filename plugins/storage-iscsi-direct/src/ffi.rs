//! A thin FFI to libiscsi's synchronous API (`<iscsi/iscsi.h>`, Debian's libiscsi-dev)
//! and safe wrappers: a logged-in [`Session`] and the SCSI commands the backend needs.
//!
//! Only the functions used are declared; every structure libiscsi returns is read
//! through `scsi_datain_unmarshall`, whose result layouts are declared here as libiscsi
//! 1.19 defines them. A [`Session`] owns its context; a [`Task`] frees itself.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::NonNull;

#[repr(C)]
struct IscsiContext {
    _private: [u8; 0],
}

#[repr(C)]
struct ScsiTask {
    // only the first field is read (`int status`)
    status: c_int,
}

/// `struct scsi_iovec`.
#[repr(C)]
struct ScsiIovec {
    iov_base: *mut c_void,
    iov_len: usize,
}

/// `struct iscsi_target_portal`.
#[repr(C)]
struct TargetPortal {
    next: *mut TargetPortal,
    portal: *const c_char,
}

/// `struct iscsi_discovery_address`.
#[repr(C)]
struct DiscoveryAddress {
    next: *mut DiscoveryAddress,
    target_name: *const c_char,
    portals: *mut TargetPortal,
}

/// `struct scsi_readcapacity16` (the leading fields).
#[repr(C)]
struct ReadCapacity16 {
    returned_lba: u64,
    block_length: u32,
}

/// `struct scsi_reportluns_list`: a count, then that many 16-bit LUNs.
#[repr(C)]
struct ReportLuns {
    num: u32,
    luns: [u16; 0],
}

/// `struct scsi_inquiry_standard` (the leading fields: two enums).
#[repr(C)]
struct InquiryStandard {
    qualifier: c_int,
    device_type: c_int,
}

const ISCSI_SESSION_DISCOVERY: c_int = 1;
const ISCSI_SESSION_NORMAL: c_int = 2;
const ISCSI_HEADER_DIGEST_NONE_CRC32C: c_int = 1;
const SCSI_STATUS_GOOD: c_int = 0;
const SCSI_REPORTLUNS_REPORT_ALL_LUNS: c_int = 0;
/// `SCSI_INQUIRY_PERIPHERAL_DEVICE_TYPE_DIRECT_ACCESS`: a disk.
pub const DEVICE_TYPE_DIRECT_ACCESS: i32 = 0;

unsafe extern "C" {
    fn iscsi_create_context(initiator_name: *const c_char) -> *mut IscsiContext;
    fn iscsi_destroy_context(iscsi: *mut IscsiContext) -> c_int;
    fn iscsi_get_error(iscsi: *mut IscsiContext) -> *const c_char;
    fn iscsi_set_targetname(iscsi: *mut IscsiContext, targetname: *const c_char) -> c_int;
    fn iscsi_set_session_type(iscsi: *mut IscsiContext, session_type: c_int) -> c_int;
    fn iscsi_set_header_digest(iscsi: *mut IscsiContext, header_digest: c_int) -> c_int;
    fn iscsi_set_initiator_username_pwd(
        iscsi: *mut IscsiContext,
        user: *const c_char,
        passwd: *const c_char,
    ) -> c_int;
    fn iscsi_set_timeout(iscsi: *mut IscsiContext, timeout: c_int) -> c_int;
    fn iscsi_full_connect_sync(
        iscsi: *mut IscsiContext,
        portal: *const c_char,
        lun: c_int,
    ) -> c_int;
    fn iscsi_logout_sync(iscsi: *mut IscsiContext) -> c_int;
    fn iscsi_connect_sync(iscsi: *mut IscsiContext, portal: *const c_char) -> c_int;
    fn iscsi_login_sync(iscsi: *mut IscsiContext) -> c_int;
    fn iscsi_discovery_sync(iscsi: *mut IscsiContext) -> *mut DiscoveryAddress;
    fn iscsi_free_discovery_data(iscsi: *mut IscsiContext, da: *mut DiscoveryAddress);
    fn iscsi_reportluns_sync(
        iscsi: *mut IscsiContext,
        report_type: c_int,
        alloc_len: c_int,
    ) -> *mut ScsiTask;
    fn iscsi_inquiry_sync(
        iscsi: *mut IscsiContext,
        lun: c_int,
        evpd: c_int,
        page_code: c_int,
        maxsize: c_int,
    ) -> *mut ScsiTask;
    fn iscsi_readcapacity16_sync(iscsi: *mut IscsiContext, lun: c_int) -> *mut ScsiTask;
    fn iscsi_read16_iov_sync(
        iscsi: *mut IscsiContext,
        lun: c_int,
        lba: u64,
        datalen: u32,
        blocksize: c_int,
        rdprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
        iov: *mut ScsiIovec,
        niov: c_int,
    ) -> *mut ScsiTask;
    fn iscsi_write16_sync(
        iscsi: *mut IscsiContext,
        lun: c_int,
        lba: u64,
        data: *mut u8,
        datalen: u32,
        blocksize: c_int,
        wrprotect: c_int,
        dpo: c_int,
        fua: c_int,
        fua_nv: c_int,
        group_number: c_int,
    ) -> *mut ScsiTask;
    fn scsi_datain_unmarshall(task: *mut ScsiTask) -> *mut c_void;
    fn scsi_free_scsi_task(task: *mut ScsiTask);
}

/// A failed libiscsi call, with libiscsi's own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed: {message}")]
pub struct IscsiError {
    /// The libiscsi function.
    pub call: &'static str,
    /// `iscsi_get_error`, or the SCSI status.
    pub message: String,
}

/// Where and how to log in.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    /// The initiator's IQN.
    pub initiator: &'a str,
    /// `HOST:PORT` (`[ADDR]:PORT` for IPv6).
    pub portal: &'a str,
    /// The target's IQN.
    pub target: &'a str,
    /// CHAP user name and secret.
    pub chap: Option<(&'a str, &'a [u8])>,
    /// Seconds before a call gives up.
    pub timeout: i32,
}

/// A logged-in session with one target.
pub struct Session {
    ctx: NonNull<IscsiContext>,
}

// SAFETY: a libiscsi context is not tied to the thread that made it; a `Session` is used
// by one thread at a time (its methods take `&mut self`).
unsafe impl Send for Session {}

fn cstring(call: &'static str, what: &str, s: &str) -> Result<CString, IscsiError> {
    CString::new(s).map_err(|_| IscsiError {
        call,
        message: format!("{what} contains a NUL byte"),
    })
}

/// A SCSI task libiscsi returned; freed on drop.
struct Task(NonNull<ScsiTask>);

impl Drop for Task {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a libiscsi `*_sync` call and is freed only here.
        unsafe { scsi_free_scsi_task(self.0.as_ptr()) }
    }
}

impl Session {
    /// A context for `l` (initiator, session type, digest, timeout, CHAP), not connected.
    fn context(l: &Login<'_>, session_type: c_int) -> Result<Session, IscsiError> {
        let initiator = cstring("iscsi_create_context", "initiator IQN", l.initiator)?;
        // SAFETY: `initiator` is a valid C string for the call.
        let raw = unsafe { iscsi_create_context(initiator.as_ptr()) };
        let ctx = NonNull::new(raw).ok_or_else(|| IscsiError {
            call: "iscsi_create_context",
            message: "cannot create a libiscsi context".into(),
        })?;
        let s = Session { ctx };
        let p = s.ctx.as_ptr();
        // SAFETY: `p` is the live context `s` owns; the strings outlive the calls (libiscsi
        // copies them).
        unsafe {
            s.check(
                "iscsi_set_session_type",
                iscsi_set_session_type(p, session_type),
            )?;
            s.check(
                "iscsi_set_header_digest",
                iscsi_set_header_digest(p, ISCSI_HEADER_DIGEST_NONE_CRC32C),
            )?;
            s.check("iscsi_set_timeout", iscsi_set_timeout(p, l.timeout))?;
        }
        if let Some((user, secret)) = l.chap {
            let user = cstring("iscsi_set_initiator_username_pwd", "CHAP user", user)?;
            let text = std::str::from_utf8(secret).map_err(|_| IscsiError {
                call: "iscsi_set_initiator_username_pwd",
                message: "the CHAP secret is not text".into(),
            })?;
            let pwd = cstring("iscsi_set_initiator_username_pwd", "CHAP secret", text)?;
            // SAFETY: as above.
            unsafe {
                s.check(
                    "iscsi_set_initiator_username_pwd",
                    iscsi_set_initiator_username_pwd(p, user.as_ptr(), pwd.as_ptr()),
                )?;
            }
        }
        Ok(s)
    }

    /// Connects to the portal and logs in to the target (a normal session with CHAP when
    /// given).
    pub fn login(l: &Login<'_>) -> Result<Session, IscsiError> {
        let target = cstring("iscsi_set_targetname", "target IQN", l.target)?;
        let portal = cstring("iscsi_full_connect_sync", "portal", l.portal)?;
        let s = Session::context(l, ISCSI_SESSION_NORMAL)?;
        let p = s.ctx.as_ptr();
        // SAFETY: `p` is the live context `s` owns; the strings outlive the calls.
        unsafe {
            s.check(
                "iscsi_set_targetname",
                iscsi_set_targetname(p, target.as_ptr()),
            )?;
        }
        // SAFETY: as above; libiscsi connects and logs in (LUN 0 is only what it probes).
        let rc = unsafe { iscsi_full_connect_sync(p, portal.as_ptr(), 0) };
        s.check("iscsi_full_connect_sync", rc)?;
        Ok(s)
    }

    /// A discovery session on the portal (`l.target` unused): the targets it offers
    /// (SendTargets), each with its portals.
    pub fn discover(l: &Login<'_>) -> Result<Vec<(String, Vec<String>)>, IscsiError> {
        let portal = cstring("iscsi_connect_sync", "portal", l.portal)?;
        let s = Session::context(l, ISCSI_SESSION_DISCOVERY)?;
        let p = s.ctx.as_ptr();
        // SAFETY: the live context; the portal string outlives the call.
        unsafe {
            s.check("iscsi_connect_sync", iscsi_connect_sync(p, portal.as_ptr()))?;
            s.check("iscsi_login_sync", iscsi_login_sync(p))?;
        }
        // SAFETY: the live, logged-in discovery context.
        let list = unsafe { iscsi_discovery_sync(p) };
        if list.is_null() {
            // libiscsi answers NULL for an error and for a target list that is empty
            let e = s.error_text();
            if e.is_empty() || e == "unknown error" {
                return Ok(Vec::new());
            }
            return Err(IscsiError {
                call: "iscsi_discovery_sync",
                message: e,
            });
        }
        let mut out = Vec::new();
        let mut cur = list;
        // SAFETY: a list libiscsi built and owns until `iscsi_free_discovery_data`; every
        // string is NUL-terminated or NULL; nothing is kept past the free below.
        unsafe {
            while !cur.is_null() {
                let name = (*cur).target_name;
                let mut portals = Vec::new();
                let mut tp = (*cur).portals;
                while !tp.is_null() {
                    if !(*tp).portal.is_null() {
                        portals.push(CStr::from_ptr((*tp).portal).to_string_lossy().into_owned());
                    }
                    tp = (*tp).next;
                }
                if !name.is_null() {
                    out.push((CStr::from_ptr(name).to_string_lossy().into_owned(), portals));
                }
                cur = (*cur).next;
            }
            iscsi_free_discovery_data(p, list);
        }
        Ok(out)
    }

    fn error_text(&self) -> String {
        // SAFETY: the context is live; libiscsi answers a string it owns (or NULL).
        let e = unsafe { iscsi_get_error(self.ctx.as_ptr()) };
        if e.is_null() {
            return "unknown error".into();
        }
        // SAFETY: a NUL-terminated string owned by the context, copied at once.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }

    fn check(&self, call: &'static str, rc: c_int) -> Result<(), IscsiError> {
        if rc < 0 {
            return Err(IscsiError {
                call,
                message: self.error_text(),
            });
        }
        Ok(())
    }

    /// A finished task with status GOOD, or the error.
    fn task(&self, call: &'static str, raw: *mut ScsiTask) -> Result<Task, IscsiError> {
        let t = NonNull::new(raw).map(Task).ok_or_else(|| IscsiError {
            call,
            message: self.error_text(),
        })?;
        // SAFETY: `status` is the first field of libiscsi's `struct scsi_task`.
        let status = unsafe { (*t.0.as_ptr()).status };
        if status != SCSI_STATUS_GOOD {
            return Err(IscsiError {
                call,
                message: format!("SCSI status {status}: {}", self.error_text()),
            });
        }
        Ok(t)
    }

    /// Runs a command, again while the target reports a UNIT ATTENTION (the first command
    /// a LUN sees on a new session answers one: the "bus reset" of the new nexus).
    fn command(
        &self,
        call: &'static str,
        issue: impl Fn() -> *mut ScsiTask,
    ) -> Result<Task, IscsiError> {
        let mut tries = 0;
        loop {
            match self.task(call, issue()) {
                Err(e) if tries < 4 && e.message.contains("UNIT_ATTENTION") => tries += 1,
                r => return r,
            }
        }
    }

    /// The task's data as libiscsi decodes it.
    fn unmarshall(&self, call: &'static str, t: &Task) -> Result<NonNull<c_void>, IscsiError> {
        // SAFETY: the task is a finished one of the kind the caller names.
        let p = unsafe { scsi_datain_unmarshall(t.0.as_ptr()) };
        NonNull::new(p).ok_or_else(|| IscsiError {
            call,
            message: "cannot decode the reply".into(),
        })
    }

    /// REPORT LUNS: every LUN of the target.
    pub fn report_luns(&mut self) -> Result<Vec<u16>, IscsiError> {
        const CALL: &str = "iscsi_reportluns_sync";
        let ctx = self.ctx.as_ptr();
        // SAFETY: the context is live.
        let t = self.command(CALL, || unsafe {
            iscsi_reportluns_sync(ctx, SCSI_REPORTLUNS_REPORT_ALL_LUNS, 16384)
        })?;
        let list = self.unmarshall(CALL, &t)?.cast::<ReportLuns>();
        // SAFETY: libiscsi decoded a `scsi_reportluns_list` of `num` entries, owned by the
        // task, which lives until the end of this function.
        let luns = unsafe {
            let n = (*list.as_ptr()).num as usize;
            let first = std::ptr::addr_of!((*list.as_ptr()).luns).cast::<u16>();
            std::slice::from_raw_parts(first, n).to_vec()
        };
        Ok(luns)
    }

    /// INQUIRY (standard data): the LUN's peripheral device type.
    pub fn device_type(&mut self, lun: u16) -> Result<i32, IscsiError> {
        const CALL: &str = "iscsi_inquiry_sync";
        let ctx = self.ctx.as_ptr();
        // SAFETY: the context is live.
        let t = self.command(CALL, || unsafe {
            iscsi_inquiry_sync(ctx, c_int::from(lun), 0, 0, 64)
        })?;
        let inq = self.unmarshall(CALL, &t)?.cast::<InquiryStandard>();
        // SAFETY: a decoded `scsi_inquiry_standard`, alive with the task.
        Ok(unsafe { (*inq.as_ptr()).device_type })
    }

    /// READ CAPACITY (16): the LUN's block count and block size.
    pub fn read_capacity(&mut self, lun: u16) -> Result<(u64, u32), IscsiError> {
        const CALL: &str = "iscsi_readcapacity16_sync";
        let ctx = self.ctx.as_ptr();
        // SAFETY: the context is live.
        let t = self.command(CALL, || unsafe {
            iscsi_readcapacity16_sync(ctx, c_int::from(lun))
        })?;
        let rc = self.unmarshall(CALL, &t)?.cast::<ReadCapacity16>();
        // SAFETY: a decoded `scsi_readcapacity16`, alive with the task.
        let (lba, len) = unsafe { ((*rc.as_ptr()).returned_lba, (*rc.as_ptr()).block_length) };
        Ok((lba + 1, len))
    }

    /// READ (16) of `buf.len()` bytes (whole blocks) from block `lba`.
    pub fn read(
        &mut self,
        lun: u16,
        lba: u64,
        block: u32,
        buf: &mut [u8],
    ) -> Result<(), IscsiError> {
        const CALL: &str = "iscsi_read16_iov_sync";
        let len = u32::try_from(buf.len()).map_err(|_| IscsiError {
            call: CALL,
            message: "read too large".into(),
        })?;
        let ctx = self.ctx.as_ptr();
        let base = buf.as_mut_ptr();
        let size = buf.len();
        // SAFETY: the context is live; libiscsi writes at most `len` bytes into the iovec,
        // which points at `buf` for the duration of the synchronous call.
        let t = self.command(CALL, || unsafe {
            let mut iov = ScsiIovec {
                iov_base: base.cast(),
                iov_len: size,
            };
            iscsi_read16_iov_sync(
                ctx,
                c_int::from(lun),
                lba,
                len,
                block as c_int,
                0,
                0,
                0,
                0,
                0,
                &mut iov,
                1,
            )
        });
        t.map(drop)
    }

    /// WRITE (16) of `data` (whole blocks) at block `lba`.
    pub fn write(
        &mut self,
        lun: u16,
        lba: u64,
        block: u32,
        data: &mut [u8],
    ) -> Result<(), IscsiError> {
        const CALL: &str = "iscsi_write16_sync";
        let len = u32::try_from(data.len()).map_err(|_| IscsiError {
            call: CALL,
            message: "write too large".into(),
        })?;
        let ctx = self.ctx.as_ptr();
        let base = data.as_mut_ptr();
        // SAFETY: the context is live; libiscsi reads `len` bytes of `data` during the
        // synchronous call.
        let t = self.command(CALL, || unsafe {
            iscsi_write16_sync(
                ctx,
                c_int::from(lun),
                lba,
                base,
                len,
                block as c_int,
                0,
                0,
                0,
                0,
                0,
            )
        });
        t.map(drop)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the context is live and owned by this session; it is destroyed once.
        unsafe {
            iscsi_logout_sync(self.ctx.as_ptr());
            iscsi_destroy_context(self.ctx.as_ptr());
        }
    }
}

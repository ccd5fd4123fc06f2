//! Persistent TAP devices (`/dev/net/tun`).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;

/// `_IOW('T', 202, int)`
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `_IOW('T', 203, int)`
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
/// `_IOW('T', 204, int)`
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` with the flags member of its union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ioctl(fd: libc::c_int, req: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the three TUN requests used here take an integer argument by value.
    let r = unsafe { libc::ioctl(fd, req as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Creates the persistent TAP device `name`, owned by root (uid 0). The caller sets its
/// MAC, bridge and state through netlink.
pub fn create(name: &str) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let fd = f.as_raw_fd();
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` has its size and layout
    // (16-byte name, then the union whose first member is the short flags) and lives
    // across the call.
    let r = unsafe { libc::ioctl(fd, TUNSETIFF as _, &mut req as *mut IfReqFlags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    ioctl(fd, TUNSETOWNER, 0)?;
    ioctl(fd, TUNSETPERSIST, 1)?;
    Ok(())
}

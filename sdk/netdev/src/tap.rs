//! TAP devices. [`create`] makes the kind a hypervisor hands its guest process: the
//! plugin makes the device, attaches it to the bridge and passes the open descriptor
//! (QEMU's `-netdev tap,fd=N`), as libvirt does, so no bridge helper runs. That device is
//! not persistent: it goes away when the last descriptor closes, that is when the guest
//! process exits, so a stopped or crashed domain leaves no device behind and a restarted
//! daemon has nothing to clean. [`create_persistent`] makes a device that outlives its
//! maker (a network's own ports), owned by root.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What went wrong making a TAP device; messages name the device or bridge.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("cannot open /dev/net/tun")]
    OpenTun(#[source] std::io::Error),
    #[error("cannot create a tap device named '{name}'")]
    Create {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bridge '{bridge}' does not exist")]
    NoBridge { bridge: String },
    #[error("cannot {action} tap device '{tap}'")]
    Configure {
        action: &'static str,
        tap: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot attach tap device '{tap}' to bridge '{bridge}'")]
    Attach {
        tap: String,
        bridge: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid interface name '{0}': at most 15 bytes, no '/', ':' or white space")]
    BadName(String),
}

/// An open TAP device attached to a bridge.
#[derive(Debug)]
pub struct Tap {
    /// The device's descriptor, to be inherited by QEMU.
    pub fd: OwnedFd,
    /// The device's name (`vnet0`, or the name the definition asked for).
    pub name: String,
}

const IFNAMSIZ: usize = 16;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `SIOCBRADDIF` of <linux/sockios.h>: add an interface (by index) to a bridge.
const SIOCBRADDIF: libc::c_ulong = 0x89a2;

#[repr(C)]
#[derive(Clone, Copy)]
struct IfReqFlags {
    name: [libc::c_char; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct IfReqInt {
    name: [libc::c_char; IFNAMSIZ],
    value: libc::c_int,
    _pad: [u8; 20],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct IfReqAddr {
    name: [libc::c_char; IFNAMSIZ],
    addr: libc::sockaddr,
    _pad: [u8; 8],
}

fn ifname(name: &str) -> Result<[libc::c_char; IFNAMSIZ], TapError> {
    let bad = name.is_empty()
        || name.len() >= IFNAMSIZ
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if bad {
        return Err(TapError::BadName(name.to_string()));
    }
    let mut out = [0 as libc::c_char; IFNAMSIZ];
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b as libc::c_char;
    }
    Ok(out)
}

fn name_of(raw: &[libc::c_char; IFNAMSIZ]) -> String {
    // SAFETY: the kernel NUL-terminates interface names within IFNAMSIZ, and `ifname`
    // leaves at least one NUL at the end.
    unsafe { CStr::from_ptr(raw.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// A datagram socket for the interface ioctls.
fn ctl_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before it is owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor this function owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ioctl(fd, req, arg)` on a request struct this module owns.
fn ioctl<T>(fd: &OwnedFd, req: libc::c_ulong, arg: &mut T) -> std::io::Result<()> {
    // SAFETY: every request used here takes a pointer to an ifreq-sized struct, and `arg`
    // is such a struct (`#[repr(C)]`, 40 bytes), valid and exclusively borrowed.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *mut T) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn index_of(sock: &OwnedFd, name: &str) -> std::io::Result<libc::c_int> {
    let mut rq = IfReqInt {
        name: ifname(name).map_err(|_| std::io::Error::from_raw_os_error(libc::ENODEV))?,
        value: 0,
        _pad: [0; 20],
    };
    ioctl(sock, libc::SIOCGIFINDEX, &mut rq)?;
    Ok(rq.value)
}

/// Makes a TAP device named `name` (a `%d` template such as `vnet%d` lets the kernel pick
/// the number), with the host-side MAC for `guest_mac`, the bridge's MTU, attached to
/// `bridge` and up. `vnet_hdr` for virtio models.
pub fn create(
    name: &str,
    bridge: &str,
    guest_mac: [u8; 6],
    vnet_hdr: bool,
) -> Result<Tap, TapError> {
    let sock = ctl_socket().map_err(|source| TapError::Configure {
        action: "open a control socket for",
        tap: name.to_string(),
        source,
    })?;
    index_of(&sock, bridge).map_err(|_| TapError::NoBridge {
        bridge: bridge.to_string(),
    })?;
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(TapError::OpenTun)?;
    let tun = OwnedFd::from(tun);
    let mut flags = IFF_TAP | IFF_NO_PI;
    if vnet_hdr {
        flags |= IFF_VNET_HDR;
    }
    let mut rq = IfReqFlags {
        name: ifname(name)?,
        flags,
        _pad: [0; 22],
    };
    ioctl(&tun, TUNSETIFF, &mut rq).map_err(|source| TapError::Create {
        name: name.to_string(),
        source,
    })?;
    let tap = name_of(&rq.name);
    let conf = |action: &'static str| {
        let tap = tap.clone();
        move |source| TapError::Configure {
            action,
            tap,
            source,
        }
    };
    // the host side's MAC
    let mut hw = IfReqAddr {
        name: rq.name,
        // SAFETY: sockaddr is plain old data; all-zero is a valid value.
        addr: unsafe { std::mem::zeroed() },
        _pad: [0; 8],
    };
    hw.addr.sa_family = libc::ARPHRD_ETHER;
    for (d, s) in hw
        .addr
        .sa_data
        .iter_mut()
        .zip(crate::mac::host_side(guest_mac))
    {
        *d = s as libc::c_char;
    }
    ioctl(&sock, libc::SIOCSIFHWADDR, &mut hw).map_err(conf("set the MAC address of"))?;
    // the bridge's MTU
    let mut mtu = IfReqInt {
        name: ifname(bridge)?,
        value: 0,
        _pad: [0; 20],
    };
    ioctl(&sock, libc::SIOCGIFMTU, &mut mtu).map_err(conf("read the bridge MTU for"))?;
    mtu.name = rq.name;
    ioctl(&sock, libc::SIOCSIFMTU, &mut mtu).map_err(conf("set the MTU of"))?;
    // attach, then up
    let index = index_of(&sock, &tap).map_err(conf("look up"))?;
    let mut add = IfReqInt {
        name: ifname(bridge)?,
        value: index,
        _pad: [0; 20],
    };
    ioctl(&sock, SIOCBRADDIF, &mut add).map_err(|source| TapError::Attach {
        tap: tap.clone(),
        bridge: bridge.to_string(),
        source,
    })?;
    let mut up = IfReqFlags {
        name: rq.name,
        flags: 0,
        _pad: [0; 22],
    };
    ioctl(&sock, libc::SIOCGIFFLAGS, &mut up).map_err(conf("read the flags of"))?;
    up.flags |= libc::IFF_UP as libc::c_short;
    ioctl(&sock, libc::SIOCSIFFLAGS, &mut up).map_err(conf("bring up"))?;
    Ok(Tap { fd: tun, name: tap })
}

/// `_IOW('T', 203, int)`
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
/// `_IOW('T', 204, int)`
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;

/// `ioctl(fd, req, value)` for the TUN requests that take an integer by value.
fn ioctl_int(fd: &OwnedFd, req: libc::c_ulong, value: libc::c_ulong) -> std::io::Result<()> {
    // SAFETY: TUNSETPERSIST and TUNSETOWNER take an integer argument by value.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, value) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Creates the persistent TAP device `name` (an exact name, no template), owned by root.
/// It stays after this returns; the caller sets its MAC, bridge and state (through
/// netlink) and deletes it when done.
pub fn create_persistent(name: &str) -> Result<(), TapError> {
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(TapError::OpenTun)?;
    let tun = OwnedFd::from(tun);
    if name.contains('%') {
        return Err(TapError::BadName(name.to_string()));
    }
    let mut rq = IfReqFlags {
        name: ifname(name)?,
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    ioctl(&tun, TUNSETIFF, &mut rq).map_err(|source| TapError::Create {
        name: name.to_string(),
        source,
    })?;
    let conf = |action: &'static str| {
        move |source| TapError::Configure {
            action,
            tap: name.to_string(),
            source,
        }
    };
    ioctl_int(&tun, TUNSETOWNER, 0).map_err(conf("set the owner of"))?;
    ioctl_int(&tun, TUNSETPERSIST, 1).map_err(conf("make persistent"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(ifname("vnet%d").is_ok());
        for bad in ["", "a/b", "sixteen-chars-xx", "a b", "a:b"] {
            assert!(ifname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_bridge_is_named() {
        let e = create("vnet%d", "no-such-br0", [0x52, 0x54, 0, 0, 0, 1], false).unwrap_err();
        assert!(
            e.to_string()
                .contains("bridge 'no-such-br0' does not exist"),
            "{e}"
        );
    }
}

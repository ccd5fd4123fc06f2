//! systemd socket activation: the listening sockets systemd (or `systemd-socket-activate`)
//! passes to the daemon.
//!
//! The protocol (sd_listen_fds(3)): `LISTEN_PID` is this process's pid, `LISTEN_FDS` the
//! number of descriptors passed, starting at 3, and `LISTEN_FDNAMES` their names,
//! colon-separated (a socket unit's `FileDescriptorName=`, by default the unit's name).
//! The variables are read once and removed, so children (QEMU, helpers) never see them.
//!
//! rvirtd's sockets are matched by name (`rvirtd.socket` is the read-write socket,
//! `rvirtd-ro.socket` the read-only one), then by path (the layout's socket paths), then
//! by order (the first unmatched socket is the read-write one). An activated socket is
//! never unlinked, re-bound or chmod'ed: systemd owns it.

use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The first descriptor passed (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// The name of the read-write socket's unit (its default `FileDescriptorName=`).
pub const RW_NAME: &str = "rvirtd.socket";
/// The name of the read-only socket's unit.
pub const RO_NAME: &str = "rvirtd-ro.socket";

/// Errors of socket activation.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("invalid LISTEN_FDS '{0}': expected a number of descriptors")]
    Count(String),
    #[error("passed descriptor {fd} is not usable: {reason}")]
    Unusable { fd: RawFd, reason: String },
    #[error(
        "rvirtd was passed {count} sockets ({names}); it serves one read-write socket ('{RW_NAME}') and one read-only socket ('{RO_NAME}')"
    )]
    TooMany { count: usize, names: String },
}

/// One listening socket passed by systemd.
#[derive(Debug)]
pub struct Activated {
    /// Its name in `LISTEN_FDNAMES`, if any was given.
    pub name: Option<String>,
    /// The path it is bound to (none for an abstract or unnamed socket).
    pub path: Option<PathBuf>,
    /// The socket.
    pub fd: OwnedFd,
}

/// The activated sockets, by role.
#[derive(Debug, Default)]
pub struct Sockets {
    pub rw: Option<Activated>,
    pub ro: Option<Activated>,
}

/// Takes the sockets systemd passed, and removes `LISTEN_PID`, `LISTEN_FDS` and
/// `LISTEN_FDNAMES` from the environment. Nothing when the variables are absent or meant
/// for another process.
///
/// # Safety
///
/// Must run before any other thread exists (it changes the environment), and at most once
/// (it takes ownership of descriptors 3 and up).
pub unsafe fn take_from_env() -> Result<Vec<Activated>, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: the caller guarantees no other thread exists yet.
        unsafe { std::env::remove_var(k) };
    }
    let ours = pid
        .as_deref()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let Some(count) = count.filter(|_| ours) else {
        return Ok(Vec::new());
    };
    let n: usize = count
        .trim()
        .parse()
        .map_err(|_| ActivationError::Count(count.clone()))?;
    let names: Vec<&str> = names
        .as_deref()
        .map_or_else(Vec::new, |n| n.split(':').collect());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let raw = LISTEN_FDS_START + i as RawFd;
        // SAFETY: LISTEN_PID names this process, so systemd passed descriptors 3 to
        // 3+LISTEN_FDS-1 to it; the caller guarantees this runs once, before anything else
        // could have taken (or closed) them, so each is open and owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let unusable = |reason: String| ActivationError::Unusable { fd: raw, reason };
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| unusable(e.to_string()))?;
        check_listening_unix_stream(&fd).map_err(unusable)?;
        let path = std::os::unix::net::UnixListener::from(
            fd.try_clone().map_err(|e| unusable(e.to_string()))?,
        )
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
        let name = names
            .get(i)
            .filter(|n| !n.is_empty() && **n != "unknown")
            .map(|n| (*n).to_string());
        out.push(Activated { name, path, fd });
    }
    Ok(out)
}

/// Refuses anything but a listening unix stream socket.
fn check_listening_unix_stream(fd: impl AsFd) -> Result<(), String> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let fd = fd.as_fd();
    let domain = sockopt::socket_domain(fd).map_err(|e| format!("not a socket ({e})"))?;
    if domain != AddressFamily::UNIX {
        return Err("not a unix socket (rvirtd listens on unix sockets only)".into());
    }
    if sockopt::socket_type(fd).map_err(|e| e.to_string())? != SocketType::STREAM {
        return Err("not a stream socket (use ListenStream=)".into());
    }
    if !sockopt::socket_acceptconn(fd).map_err(|e| e.to_string())? {
        return Err("not listening".into());
    }
    Ok(())
}

/// Assigns the passed sockets to the read-write and read-only roles: by name, then by
/// path (`rw_path`, `ro_path`), then in order.
pub fn assign(
    passed: Vec<Activated>,
    rw_path: &Path,
    ro_path: &Path,
) -> Result<Sockets, ActivationError> {
    if passed.len() > 2 {
        let names = passed
            .iter()
            .map(|a| {
                a.name.clone().unwrap_or_else(|| {
                    a.path
                        .as_ref()
                        .map_or_else(|| "unnamed".into(), |p| p.display().to_string())
                })
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ActivationError::TooMany {
            count: passed.len(),
            names,
        });
    }
    let mut s = Sockets::default();
    let mut rest = Vec::new();
    for a in passed {
        match a.name.as_deref() {
            Some(RW_NAME) if s.rw.is_none() => s.rw = Some(a),
            Some(RO_NAME) if s.ro.is_none() => s.ro = Some(a),
            _ => rest.push(a),
        }
    }
    let mut unmatched = Vec::new();
    for a in rest {
        match a.path.as_deref() {
            Some(p) if p == rw_path && s.rw.is_none() => s.rw = Some(a),
            Some(p) if p == ro_path && s.ro.is_none() => s.ro = Some(a),
            _ => unmatched.push(a),
        }
    }
    for a in unmatched {
        if s.rw.is_none() {
            s.rw = Some(a);
        } else {
            s.ro = Some(a);
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(dir: &Path, name: &str, fd_name: Option<&str>) -> Activated {
        let path = dir.join(name);
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        Activated {
            name: fd_name.map(str::to_string),
            path: Some(path),
            fd: l.into(),
        }
    }

    #[test]
    fn sockets_are_assigned_by_name_then_path_then_order() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let (rw, ro) = (d.join("rvirt-sock"), d.join("rvirt-sock-ro"));
        // names win over order and paths
        let s = assign(
            vec![
                listener(d, "a", Some(RO_NAME)),
                listener(d, "b", Some(RW_NAME)),
            ],
            &rw,
            &ro,
        )
        .unwrap();
        assert_eq!(s.rw.unwrap().path.unwrap(), d.join("b"));
        assert_eq!(s.ro.unwrap().path.unwrap(), d.join("a"));
        // unnamed: by path
        let s = assign(
            vec![
                listener(d, "rvirt-sock-ro", None),
                listener(d, "rvirt-sock", None),
            ],
            &rw,
            &ro,
        )
        .unwrap();
        assert_eq!(s.rw.unwrap().path.unwrap(), rw);
        assert_eq!(s.ro.unwrap().path.unwrap(), ro);
        // unnamed, unknown paths: in order
        let s = assign(
            vec![listener(d, "x", None), listener(d, "y", Some("other"))],
            &rw,
            &ro,
        )
        .unwrap();
        assert_eq!(s.rw.unwrap().path.unwrap(), d.join("x"));
        assert_eq!(s.ro.unwrap().path.unwrap(), d.join("y"));
        // one socket: read-write
        let s = assign(vec![listener(d, "z", None)], &rw, &ro).unwrap();
        assert!(s.rw.is_some() && s.ro.is_none());
        let e = assign(
            vec![
                listener(d, "p", None),
                listener(d, "q", None),
                listener(d, "r", Some("third")),
            ],
            &rw,
            &ro,
        )
        .unwrap_err();
        assert!(e.to_string().contains("3 sockets"), "{e}");
    }

    #[test]
    fn only_listening_unix_stream_sockets_are_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let l = std::os::unix::net::UnixListener::bind(tmp.path().join("s")).unwrap();
        assert!(check_listening_unix_stream(&l).is_ok());
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(
            check_listening_unix_stream(&a)
                .unwrap_err()
                .contains("listening")
        );
        let dg = std::os::unix::net::UnixDatagram::unbound().unwrap();
        assert!(
            check_listening_unix_stream(&dg)
                .unwrap_err()
                .contains("stream")
        );
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(check_listening_unix_stream(&f).is_err());
    }
}

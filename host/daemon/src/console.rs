//! Domain consoles over the daemon (`DOMAIN_OPEN_CONSOLE` 201): the character device a
//! client names (its alias, or the domain's first console, else its first serial port) is
//! a pty whose path the live domain XML shows (`<console type='pty'><source
//! path='/dev/pts/N'/>`). The daemon opens that pty itself (only paths under `/dev/pts/`)
//! and `streams.rs` pumps bytes both ways over the call's stream.
//!
//! One session per pty: a second open is refused unless it is forced
//! (`VIR_DOMAIN_CONSOLE_FORCE`), and a forced open ends the other client's session (its
//! stream ends with an error). Sessions are daemon-wide: they span clients.

use crate::dispatch::Failure;
use rustix::fs::{Mode, OFlags};
use rustix::termios::{OptionalActions, isatty, tcgetattr, tcsetattr};
use rvirt_wire::frame::StreamPacket;
use rvirt_wire::protocol::{RemoteError, error_code, error_domain};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// `VIR_DOMAIN_CONSOLE_FORCE`: end another client's session on the same device.
pub const FORCE: u32 = 1;
/// `VIR_DOMAIN_CONSOLE_SAFE`: only open if the driver can keep sessions exclusive (the
/// daemon always does).
pub const SAFE: u32 = 2;

/// Where every console pty lives.
const PTS_DIR: &str = "/dev/pts/";

/// A live session, by pty path.
struct Session {
    id: u64,
    /// Set when a forced open takes the device over.
    taken: Arc<AtomicBool>,
    /// The session's stream queue (weak: a client that goes away still closes it).
    tx: Option<mpsc::WeakSender<StreamPacket>>,
}

static SESSIONS: Mutex<Option<HashMap<String, Session>>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn sessions() -> MutexGuard<'static, Option<HashMap<String, Session>>> {
    SESSIONS.lock().unwrap_or_else(|e| e.into_inner())
}

fn failure(code: i32, domain: i32, message: String) -> Failure {
    Box::new(RemoteError::new(code, domain, message))
}

/// An open console: the pty and its place in the session table (left when dropped).
#[derive(Debug)]
pub struct Console {
    pub pty: OwnedFd,
    pub path: String,
    id: u64,
    taken: Arc<AtomicBool>,
}

impl Console {
    /// Whether a forced open on the same device has ended this session.
    pub fn taken_over(&self) -> bool {
        self.taken.load(Ordering::SeqCst)
    }

    /// Binds the session to its stream queue, so a forced open can end it.
    pub fn attach(&self, tx: &mpsc::Sender<StreamPacket>) {
        if let Some(s) = sessions()
            .as_mut()
            .and_then(|m| m.get_mut(&self.path))
            .filter(|s| s.id == self.id)
        {
            s.tx = Some(tx.downgrade());
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(m) = sessions().as_mut()
            && m.get(&self.path).is_some_and(|s| s.id == self.id)
        {
            m.remove(&self.path);
        }
    }
}

/// The error the client of a session ended by a forced open receives.
pub fn taken_over_error(path: &str) -> RemoteError {
    RemoteError::new(
        error_code::OPERATION_FAILED,
        error_domain::STREAMS,
        format!("operation failed: the console session on {path} was taken over by a forced open"),
    )
}

/// Checks `virDomainOpenConsole`'s flags.
pub fn check_flags(flags: u32) -> Result<(), Failure> {
    if flags & !(FORCE | SAFE) != 0 {
        return Err(failure(
            error_code::INVALID_ARG,
            error_domain::DOMAIN,
            format!(
                "unsupported flags (0x{:x}) in function virDomainOpenConsole",
                flags & !(FORCE | SAFE)
            ),
        ));
    }
    Ok(())
}

/// The pty of the character device `dev_name` (an alias; `None`: the first `<console>`,
/// else the first `<serial>`) in the live domain XML.
pub fn find_pty(xml: &str, dev_name: Option<&str>) -> Result<String, Failure> {
    let internal = |m: String| failure(error_code::INTERNAL_ERROR, error_domain::DOMAIN, m);
    let root = rvirt_xml::Element::parse(xml).map_err(|e| {
        internal(format!(
            "internal error: cannot read the live domain XML: {e}"
        ))
    })?;
    let devs = root.child("devices");
    let kinds = ["console", "serial", "parallel", "channel"];
    let all = || {
        devs.into_iter()
            .flat_map(|d| d.elements())
            .filter(|e| kinds.contains(&e.name()))
    };
    let dev = match dev_name {
        Some(name) => all().find(|e| e.child("alias").and_then(|a| a.attr("name")) == Some(name)),
        None => all()
            .find(|e| e.name() == "console")
            .or_else(|| all().find(|e| e.name() == "serial")),
    };
    let shown = dev_name.unwrap_or("console");
    let Some(dev) = dev else {
        return Err(internal(match dev_name {
            Some(n) => format!("internal error: cannot find character device {n}"),
            None => "internal error: cannot find a default console device".to_string(),
        }));
    };
    if dev.attr("type").unwrap_or("pty") != "pty" {
        return Err(failure(
            error_code::OPERATION_FAILED,
            error_domain::DOMAIN,
            format!("operation failed: character device {shown} is not using a PTY"),
        ));
    }
    dev.child("source")
        .and_then(|s| s.attr("path"))
        .or_else(|| dev.attr("tty"))
        .map(str::to_string)
        .ok_or_else(|| {
            failure(
                error_code::OPERATION_FAILED,
                error_domain::DOMAIN,
                format!("operation failed: character device {shown} has no pty path yet"),
            )
        })
}

/// Whether `path` is a pty the daemon may open: `/dev/pts/N`.
pub fn is_pts_path(path: &str) -> bool {
    path.strip_prefix(PTS_DIR)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Opens the pty `path` for a new session; a live session on it is refused, or ended
/// when `force`.
pub fn open(path: &str, force: bool) -> Result<Console, Failure> {
    if !is_pts_path(path) {
        return Err(failure(
            error_code::OPERATION_FAILED,
            error_domain::DOMAIN,
            format!(
                "operation failed: console path '{path}' is not a pty under {PTS_DIR}: the daemon opens only ptys"
            ),
        ));
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let taken = Arc::new(AtomicBool::new(false));
    let ended = {
        let mut g = sessions();
        let m = g.get_or_insert_with(HashMap::new);
        if let Some(old) = m.get(path) {
            if !force {
                return Err(failure(
                    error_code::OPERATION_FAILED,
                    error_domain::DOMAIN,
                    "operation failed: Active console session exists for this domain".into(),
                ));
            }
            old.taken.store(true, Ordering::SeqCst);
        }
        m.insert(
            path.to_string(),
            Session {
                id,
                taken: Arc::clone(&taken),
                tx: None,
            },
        )
    };
    let console_guard = Console {
        pty: match open_pty(path) {
            Ok(fd) => fd,
            Err(e) => {
                // give the device back: the failed open leaves no session
                if let Some(m) = sessions().as_mut()
                    && m.get(path).is_some_and(|s| s.id == id)
                {
                    m.remove(path);
                }
                return Err(e);
            }
        },
        path: path.to_string(),
        id,
        taken,
    };
    // end the session this open took over: its worker sees the abort and tells its client
    if let Some(tx) = ended.and_then(|s| s.tx).and_then(|w| w.upgrade()) {
        let _ = tx.try_send(StreamPacket::Abort(None));
    }
    Ok(console_guard)
}

/// Checks that the domain's driver vouches for pty `path` (see `rvirt_sdk::console`): a
/// process in the daemon's mount namespace whose environment says it serves the domain
/// (`owner`, `DRIVER/UUID`) holds the pty's master. The XML alone proves nothing: a
/// driver may echo what a client wrote, and the daemon must not open another session's
/// terminal for it.
pub fn check_owner(path: &str, owner: &str, domain: &str, driver: &str) -> Result<(), Failure> {
    let index: u32 = path
        .strip_prefix(PTS_DIR)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            failure(
                error_code::OPERATION_FAILED,
                error_domain::DOMAIN,
                format!("operation failed: console path '{path}' is not a pty under {PTS_DIR}"),
            )
        })?;
    match pty_holders(std::path::Path::new("/proc"), owner, index) {
        Holders { tagged: 0, .. } => Err(failure(
            error_code::NO_SUPPORT,
            error_domain::DOMAIN,
            format!(
                "this function is not supported by the connection driver: virDomainOpenConsole \
                 (driver '{driver}' runs no console process for domain '{domain}')"
            ),
        )),
        Holders { holds: false, .. } => Err(failure(
            error_code::OPERATION_FAILED,
            error_domain::DOMAIN,
            format!(
                "operation failed: console '{path}' of domain '{domain}' is not a pty its driver allocated"
            ),
        )),
        Holders { holds: true, .. } => Ok(()),
    }
}

/// What a scan of `/proc` found for one domain's pty.
#[derive(Debug, PartialEq, Eq)]
struct Holders {
    /// Processes in the daemon's mount namespace tagged as serving the domain.
    tagged: usize,
    /// Whether one of them holds the master of pty `index` of the host's devpts.
    holds: bool,
}

fn pty_holders(proc_root: &std::path::Path, owner: &str, index: u32) -> Holders {
    let entry = format!("{}={owner}", rvirt_sdk::console::OWNER_ENV);
    let own_ns = std::fs::read_link(proc_root.join("self/ns/mnt")).ok();
    let mut found = Holders {
        tagged: 0,
        holds: false,
    };
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return found;
    };
    for pid in dir.flatten() {
        let name = pid.file_name();
        if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let p = pid.path();
        let Ok(env) = std::fs::read(p.join("environ")) else {
            continue;
        };
        if !env.split(|&b| b == 0).any(|v| v == entry.as_bytes()) {
            continue;
        }
        // a process in another mount namespace (a container's) sees another devpts
        if std::fs::read_link(p.join("ns/mnt")).ok() != own_ns {
            continue;
        }
        found.tagged += 1;
        if holds_master(&p, index) {
            found.holds = true;
            break;
        }
    }
    found
}

/// Whether process directory `p` has the host devpts' master of pty `index` open
/// (`/proc/PID/fdinfo/FD` shows a master's `tty-index`).
fn holds_master(p: &std::path::Path, index: u32) -> bool {
    let Ok(fds) = std::fs::read_dir(p.join("fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        let is_ptmx = std::fs::read_link(fd.path()).is_ok_and(|t| {
            t == std::path::Path::new("/dev/ptmx") || t == std::path::Path::new("/dev/pts/ptmx")
        });
        is_ptmx
            && std::fs::read_to_string(p.join("fdinfo").join(fd.file_name())).is_ok_and(|info| {
                info.lines().any(|l| {
                    l.strip_prefix("tty-index:")
                        .and_then(|v| v.trim().parse::<u32>().ok())
                        == Some(index)
                })
            })
    })
}

fn open_pty(path: &str) -> Result<OwnedFd, Failure> {
    let fail = |what: &str, e: rustix::io::Errno| {
        failure(
            error_code::OPERATION_FAILED,
            error_domain::DOMAIN,
            format!("operation failed: cannot {what} the console '{path}': {e}"),
        )
    };
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("open", e))?;
    if !isatty(&fd) {
        return Err(fail("use", rustix::io::Errno::NOTTY));
    }
    // a byte pipe: no echo, no line discipline between the client and the device
    let mut t = tcgetattr(&fd).map_err(|e| fail("read the mode of", e))?;
    t.make_raw();
    tcsetattr(&fd, OptionalActions::Now, &t).map_err(|e| fail("set raw mode on", e))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = "<domain type='lxc'><name>c</name><devices>\
        <serial type='pty'><source path='/dev/pts/9'/><target port='0'/><alias name='serial0'/></serial>\
        <console type='pty' tty='/dev/pts/4'><source path='/dev/pts/4'/><target type='lxc' port='0'/><alias name='console0'/></console>\
        <console type='file'><source path='/tmp/x'/><alias name='console1'/></console>\
        </devices></domain>";

    #[test]
    fn resolves_the_device() {
        assert_eq!(find_pty(XML, None).unwrap(), "/dev/pts/4");
        assert_eq!(find_pty(XML, Some("serial0")).unwrap(), "/dev/pts/9");
        let e = find_pty(XML, Some("console1")).unwrap_err();
        assert!(
            e.message
                .as_deref()
                .unwrap_or("")
                .contains("not using a PTY"),
            "{e}"
        );
        let e = find_pty(XML, Some("nope")).unwrap_err();
        assert_eq!(e.code, error_code::INTERNAL_ERROR);
        // without a console the first serial port is the default
        let serial_only = "<domain><devices><serial type='pty'><source path='/dev/pts/2'/></serial></devices></domain>";
        assert_eq!(find_pty(serial_only, None).unwrap(), "/dev/pts/2");
        let none = "<domain><devices/></domain>";
        assert!(find_pty(none, None).is_err());
    }

    #[test]
    fn only_pts_paths() {
        assert!(is_pts_path("/dev/pts/0") && is_pts_path("/dev/pts/123"));
        for p in [
            "/dev/pts/",
            "/dev/pts/../sda",
            "/etc/passwd",
            "/dev/pts/1/x",
            "/dev/ptmx",
        ] {
            assert!(!is_pts_path(p), "{p}");
            let e = open(p, false).unwrap_err();
            assert!(
                e.message
                    .as_deref()
                    .unwrap_or("")
                    .contains("not a pty under /dev/pts/"),
                "{e}"
            );
        }
    }

    /// A process tagged for a domain that holds a pty master vouches for that pty only;
    /// an untagged holder (the test process) vouches for nothing.
    #[test]
    fn only_the_domains_own_process_vouches_for_a_pty() {
        let tag = "qemu/7f3c1a52-4d7e-4a0c-9a40-2f4f5d0b8c11";
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exec 3<>/dev/ptmx; echo ready; exec sleep 30"])
            .env(rvirt_sdk::console::OWNER_ENV, tag)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/3", child.id())).unwrap();
        let index: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("tty-index:"))
            .expect("the kernel shows a ptmx fd's tty-index")
            .trim()
            .parse()
            .unwrap();
        let proc_root = std::path::Path::new("/proc");
        let held = pty_holders(proc_root, tag, index);
        let other_pty = pty_holders(proc_root, tag, index + 100_000);
        let other_domain = pty_holders(
            proc_root,
            "qemu/00000000-0000-0000-0000-000000000001",
            index,
        );
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            held,
            Holders {
                tagged: 1,
                holds: true
            }
        );
        assert_eq!(
            other_pty,
            Holders {
                tagged: 1,
                holds: false
            }
        );
        assert_eq!(
            other_domain,
            Holders {
                tagged: 0,
                holds: false
            }
        );
        // refusals name the driver and the domain
        let e = check_owner(
            &format!("/dev/pts/{index}"),
            "test/00000000-0000-0000-0000-000000000001",
            "vm1",
            "test",
        )
        .unwrap_err();
        assert_eq!(e.code, error_code::NO_SUPPORT);
        assert!(
            e.message
                .as_deref()
                .unwrap_or_default()
                .contains("driver 'test'"),
            "{e:?}"
        );
    }

    #[test]
    fn flags() {
        assert!(check_flags(0).is_ok() && check_flags(FORCE | SAFE).is_ok());
        assert_eq!(check_flags(4).unwrap_err().code, error_code::INVALID_ARG);
    }
}

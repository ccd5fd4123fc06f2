//! `rvirt-ssh-helper`: the far end of an ssh connection (`qemu+ssh://host/system`). sshd
//! runs it with the client's stdin and stdout; it relays both ways between them and
//! rvirtd's socket on this host until either side closes.
//!
//! Two command lines, the two that libvirt's clients send over ssh:
//!
//! ```text
//! rvirt-ssh-helper [-r|--readonly] URI      virt-ssh-helper's form (URI: qemu:///system)
//! rvirt-ssh-helper [-q SECS] -U SOCKET      netcat's form (`nc -U`, `netcat=` clients)
//! ```
//!
//! Installed as `virt-ssh-helper` on a host without libvirt, unmodified virsh reaches
//! rvirtd with `qemu+ssh://` (its default `proxy=auto` runs `virt-ssh-helper URI` when
//! the far host has it). The socket for a URI is rvirtd's: `/run/rvirt/rvirt-sock`
//! (`-sock-ro` with `-r`) for `/system` and every URI of root, `$XDG_RUNTIME_DIR/rvirt/`
//! for `/session` and other users; `RVIRT_SOCKET_DIR` overrides the directory.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: rvirt-ssh-helper [-r|--readonly] URI\n       rvirt-ssh-helper [-q SECS] -U SOCKET";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// Relay to the daemon serving this URI.
    Uri {
        uri: String,
        read_only: bool,
    },
    /// Relay to this socket (netcat's `-U`).
    Socket(PathBuf),
    Help,
    Version,
}

fn parse(args: &[String]) -> Result<Mode, String> {
    let mut read_only = false;
    let mut uri = None;
    let mut socket = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(Mode::Help),
            "-V" | "--version" => return Ok(Mode::Version),
            "-r" | "--readonly" => read_only = true,
            "-U" => socket = Some(it.next().ok_or("option requires an argument -- U")?.clone()),
            // netcat's quit-after-EOF delay: this relay exits when the daemon closes
            "-q" => {
                it.next().ok_or("option requires an argument -- q")?;
            }
            q if q.starts_with("-q") => {}
            o if o.starts_with('-') && o.len() > 1 => return Err(format!("unknown option {o}")),
            u if uri.is_none() => uri = Some(u.to_string()),
            extra => return Err(format!("unexpected argument '{extra}'")),
        }
    }
    match (socket, uri) {
        (Some(s), None) => Ok(Mode::Socket(PathBuf::from(s))),
        (None, Some(uri)) => Ok(Mode::Uri { uri, read_only }),
        (Some(_), Some(_)) => Err("give either -U SOCKET or a URI, not both".into()),
        (None, None) => Err("no URI given".into()),
    }
}

/// The effective uid (the owner of /proc/self).
fn uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(u32::MAX)
}

/// rvirtd's socket for `uri` on this host.
fn socket_for(
    uri: &str,
    read_only: bool,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PathBuf, String> {
    let parsed = rvirt_host::uri::ConnectUri::parse(uri).map_err(|e| e.to_string())?;
    if parsed.transport.is_some() || parsed.host.is_some() {
        return Err(format!(
            "'{uri}' is not a local URI (it names a transport or a host)"
        ));
    }
    let name = if read_only {
        "rvirt-sock-ro"
    } else {
        "rvirt-sock"
    };
    if let Some(dir) = env("RVIRT_SOCKET_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join(name));
    }
    let me = uid();
    let session = parsed.path == "/session" || (me != 0 && parsed.path != "/system");
    if !session {
        return Ok(PathBuf::from("/run/rvirt").join(name));
    }
    // the session daemon has one socket, read-write
    let dir = env("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| format!("/run/user/{me}"));
    Ok(PathBuf::from(dir).join("rvirt/rvirt-sock"))
}

/// Copies stdin to the socket (then half-closes it) and the socket to stdout; returns
/// when the daemon closes its side.
fn relay(sock: UnixStream) -> std::io::Result<()> {
    let mut up = sock.try_clone()?;
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if up.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = up.shutdown(std::net::Shutdown::Write);
    });
    let mut down = sock;
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = down.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stdout.write_all(&buf[..n])?;
        stdout.flush()?;
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match parse(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("rvirt-ssh-helper: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let path = match mode {
        Mode::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Mode::Version => {
            println!("rvirt-ssh-helper {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Mode::Socket(p) => p,
        Mode::Uri { uri, read_only } => {
            match socket_for(&uri, read_only, |k| std::env::var(k).ok()) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("rvirt-ssh-helper: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let sock = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "rvirt-ssh-helper: cannot connect to rvirtd at {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    match relay(sock) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvirt-ssh-helper: relay to {} failed: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            parse(&args(&["qemu:///system"])).unwrap(),
            Mode::Uri {
                uri: "qemu:///system".into(),
                read_only: false
            }
        );
        assert_eq!(
            parse(&args(&["-r", "test:///default"])).unwrap(),
            Mode::Uri {
                uri: "test:///default".into(),
                read_only: true
            }
        );
        assert_eq!(
            parse(&args(&["-q0", "-U", "/run/x"])).unwrap(),
            Mode::Socket("/run/x".into())
        );
        assert_eq!(
            parse(&args(&["-U", "/run/x"])).unwrap(),
            Mode::Socket("/run/x".into())
        );
        // libvirt's probe: `nc -q` must complain that -q requires an argument
        let e = parse(&args(&["-q"])).unwrap_err();
        assert!(e.contains("requires an argument"), "{e}");
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["-x", "qemu:///system"])).is_err());
    }

    #[test]
    fn sockets() {
        let none = |_: &str| None;
        let p = socket_for("test:///default", true, |k| {
            (k == "RVIRT_SOCKET_DIR").then(|| "/tmp/r/run".to_string())
        })
        .unwrap();
        assert_eq!(p, PathBuf::from("/tmp/r/run/rvirt-sock-ro"));
        assert_eq!(
            socket_for("qemu:///system", false, none).unwrap(),
            PathBuf::from("/run/rvirt/rvirt-sock")
        );
        let p = socket_for("qemu:///session", false, |k| {
            (k == "XDG_RUNTIME_DIR").then(|| "/run/user/1000".to_string())
        })
        .unwrap();
        assert_eq!(p, PathBuf::from("/run/user/1000/rvirt/rvirt-sock"));
        assert!(socket_for("qemu+tcp://h/system", false, none).is_err());
    }
}

//! `DRIVER:///session` for a user other than root goes through the user's session daemon,
//! as libvirt's client does: `$XDG_RUNTIME_DIR/rvirt/rvirt-sock`, and when nothing answers
//! there, `rvirtd --timeout 30` is started (it serves the user's `qemu:///session` and exits
//! once no client has been connected for 30 s, `RVIRT_SESSION_TIMEOUT`). `RVIRT_AUTOSTART=0` (or libvirt's
//! `LIBVIRT_AUTOSTART=0`) connects without starting one; `RVIRT_SESSION_DAEMON=0` opens the
//! driver in this process instead.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds of no client after which an autostarted session daemon exits
/// (`RVIRT_SESSION_TIMEOUT` overrides).
const IDLE_TIMEOUT: &str = "30";

/// The URI to open for `uri`: a session URI of a user other than root becomes the unix
/// URI of the user's session daemon (started if needed); anything else is unchanged.
pub fn route(uri: &str) -> Result<String> {
    let Ok(parsed) = rvirt_host::uri::ConnectUri::parse(uri) else {
        return Ok(uri.to_string());
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if parsed.is_remote()
        || parsed.path != "/session"
        || rustix::process::geteuid().is_root()
        || env("RVIRT_SESSION_DAEMON").as_deref() == Some("0")
    {
        return Ok(uri.to_string());
    }
    let Some(runtime_dir) = env("XDG_RUNTIME_DIR") else {
        bail!(
            "'{uri}' needs the session daemon, whose socket is under XDG_RUNTIME_DIR, which is not set"
        );
    };
    let dir = Path::new(&runtime_dir).join("rvirt");
    let socket = dir.join("rvirt-sock");
    if std::os::unix::net::UnixStream::connect(&socket).is_err() {
        let autostart = env("RVIRT_AUTOSTART").or_else(|| env("LIBVIRT_AUTOSTART"));
        if autostart.as_deref() == Some("0") {
            bail!(
                "no session daemon answers on {} (autostart is off)",
                socket.display()
            );
        }
        start_daemon(&dir, &socket)?;
    }
    let mut routed = format!(
        "{}+unix:///session?socket={}",
        parsed.driver,
        socket.display()
    );
    for (k, v) in &parsed.params {
        routed.push_str(&format!("&{k}={v}"));
    }
    Ok(routed)
}

/// `rvirtd` beside this executable, else `/usr/sbin/rvirtd`, else from PATH.
fn daemon_binary() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("rvirtd")));
    match beside {
        Some(p) if p.is_file() => p,
        _ if Path::new("/usr/sbin/rvirtd").is_file() => PathBuf::from("/usr/sbin/rvirtd"),
        _ => PathBuf::from("rvirtd"),
    }
}

/// Starts the user's daemon in its own process group (it outlives this command), logging
/// to `DIR/rvirtd.log`, and waits up to 10 s for its socket.
fn start_daemon(dir: &Path, socket: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log_path = dir.join("rvirtd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let bin = daemon_binary();
    let timeout = std::env::var("RVIRT_SESSION_TIMEOUT")
        .ok()
        .filter(|t| t.parse::<u64>().is_ok())
        .unwrap_or_else(|| IDLE_TIMEOUT.to_string());
    let mut child = std::os::unix::process::CommandExt::process_group(
        Command::new(&bin)
            .args(["--timeout", &timeout])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log),
        0,
    )
    .spawn()
    .with_context(|| format!("cannot start the session daemon {}", bin.display()))?;
    let t0 = Instant::now();
    loop {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // another client's daemon may have won the race for the socket
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return Ok(());
            }
            bail!(
                "the session daemon {} exited ({status}); see {}",
                bin.display(),
                log_path.display()
            );
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!(
                "the session daemon did not create {} within 10 s; see {}",
                socket.display(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

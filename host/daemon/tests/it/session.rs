//! The session daemon: an unprivileged user (`nobody`, through `setpriv`) runs
//! `rvirt -c qemu:///session list`, which starts that user's rvirtd with its sockets under
//! `$XDG_RUNTIME_DIR/rvirt`; a second command reuses it; with no client left it exits
//! after its idle timeout (`RVIRT_SESSION_TIMEOUT=2` here, 30 s by default).

use super::alive;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `rvirt ARGS` as uid/gid 65534 with a private HOME and XDG_RUNTIME_DIR.
fn rvirt_as_nobody(home: &Path, runtime: &Path, args: &[&str]) -> Output {
    let rvirt = rvirt_tests::built("rvirt");
    let plugins = rvirt.parent().unwrap().to_path_buf();
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            &format!("HOME={}", home.display()),
            &format!("XDG_RUNTIME_DIR={}", runtime.display()),
            &format!("RVIRT_PLUGIN_PATH={}", plugins.display()),
            "RVIRT_SESSION_TIMEOUT=2",
        ])
        .arg(&rvirt)
        .args(args)
        .output()
        .expect("cannot run setpriv")
}

#[test]
fn an_unprivileged_users_session_command_starts_their_daemon() {
    if !rustix::process::geteuid().is_root() {
        rvirt_tests::cannot_run(
            "session daemon",
            "the test switches to uid 65534 with setpriv, which needs root",
        );
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        rvirt_tests::cannot_run("session daemon", "setpriv (util-linux) is missing");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("rvirt-session.")
        .tempdir()
        .unwrap();
    let (home, runtime) = (tmp.path().join("home"), tmp.path().join("run"));
    for d in [&home, &runtime] {
        std::fs::create_dir(d).unwrap();
        rustix::fs::chown(
            d.as_path(),
            Some(rustix::process::Uid::from_raw(NOBODY)),
            Some(rustix::process::Gid::from_raw(NOBODY)),
        )
        .unwrap();
    }
    // the temporary directory itself must be traversable by nobody
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let o = rvirt_as_nobody(&home, &runtime, &["-c", "qemu:///session", "list", "--all"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Name"),
        "{}",
        text(&o)
    );
    let sock = runtime.join("rvirt/rvirt-sock");
    let meta = std::fs::metadata(&sock).expect("the session socket exists");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        NOBODY,
        "the socket belongs to the user"
    );
    let pid: u32 = std::fs::read_to_string(runtime.join("rvirt/rvirtd.pid"))
        .expect("the session daemon's pid file")
        .trim()
        .parse()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65534")),
        "the daemon runs as the user: {status}"
    );
    // the next command finds the same daemon
    let o = rvirt_as_nobody(&home, &runtime, &["-c", "qemu:///session", "uri"]);
    assert!(o.status.success(), "{}", text(&o));
    let again: u32 = std::fs::read_to_string(runtime.join("rvirt/rvirtd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(again, pid, "a second daemon was started");
    assert!(alive(pid));
    // idle: it exits by itself and removes its socket
    let t0 = Instant::now();
    while alive(pid) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the session daemon is still running after its idle timeout: {}",
            std::fs::read_to_string(runtime.join("rvirt/rvirtd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!sock.exists(), "the socket is left behind");
    let log = std::fs::read_to_string(runtime.join("rvirt/rvirtd.log")).unwrap_or_default();
    assert!(log.contains("no client for 2 s"), "{log}");
}

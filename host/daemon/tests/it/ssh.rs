//! The SSH transport against a real sshd: each test starts a private OpenSSH server on
//! 127.0.0.1 (key authentication, its own host key and config, nothing in /etc touched)
//! whose sessions find `rvirt-ssh-helper` installed as `virt-ssh-helper` first in PATH
//! (sshd's `SetEnv`, as a host with only rvirt installed has it in /usr/bin) and
//! `RVIRT_SOCKET_DIR` naming the test daemon's socket directory. Unmodified virsh (its
//! default `proxy=auto` shell snippet, then the `netcat=` form) and `rvirt` connect
//! through it.

use crate::{Daemon, missing};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"))
}

/// A private sshd serving one daemon's sockets through the helper.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // virsh's no_verify=1 (StrictHostKeyChecking=no) recorded this test's host key in
        // the user's ~/.ssh/known_hosts: take it out again
        let _ = Command::new("ssh-keygen")
            .args(["-R", &format!("[127.0.0.1]:{}", self.port)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Sshd {
    /// Starts sshd for `daemon`, or says loudly why it cannot (`None`).
    fn start(daemon: &Daemon) -> Option<Sshd> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.is_file() {
            rvirt_tests::cannot_run(
                "ssh transport",
                "/usr/sbin/sshd is missing (apt-get install openssh-server openssh-client)",
            );
            return None;
        }
        if missing("ssh", Command::new("ssh").arg("-V")) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("rvirt-sshd.")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for k in ["hostkey", "clientkey"] {
            let p = d.join(k).display().to_string();
            let o = run(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-C", k, "-f", &p],
            );
            assert!(o.status.success(), "ssh-keygen: {}", text(&o));
        }
        std::fs::copy(d.join("clientkey.pub"), d.join("authorized_keys")).unwrap();
        let bin = d.join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_rvirt-ssh-helper"),
            bin.join("virt-ssh-helper"),
        )
        .unwrap();
        // known_hosts for rvirt's known_hosts= (the real host key, so verification is on)
        let pubkey = std::fs::read_to_string(d.join("hostkey.pub")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {pubkey}"),
        )
        .unwrap();
        std::fs::write(d.join("empty_known_hosts"), "").unwrap();
        let user = String::from_utf8(run("id", &["-un"]).stdout)
            .unwrap()
            .trim()
            .to_string();
        let dd = d.display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dd}/hostkey\nPidFile {dd}/sshd.pid\n\
             AuthorizedKeysFile {dd}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n\
             StrictModes no\nLogLevel INFO\n\
             SetEnv PATH={}:/usr/bin:/bin RVIRT_SOCKET_DIR={}\n",
            bin.display(),
            daemon.root.path().join("run").display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        // the privilege separation directory sshd insists on
        std::fs::create_dir_all("/run/sshd").unwrap();
        let cfg = d.join("sshd_config").display().to_string();
        let o = run("/usr/sbin/sshd", &["-t", "-f", &cfg]);
        assert!(o.status.success(), "sshd -t: {}", text(&o));
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f", &cfg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Sshd {
            dir,
            port,
            user,
            child,
        };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "sshd did not listen: {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(s)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `DRIVER+ssh://USER@127.0.0.1:PORT/PATH?keyfile=...` plus `extra` parameters.
    fn uri(&self, base: &str, extra: &str) -> String {
        format!(
            "{}+ssh://{}@127.0.0.1:{}{}?keyfile={}{extra}",
            base.split_once(':').unwrap().0,
            self.user,
            self.port,
            base.split_once("://").unwrap().1,
            self.path("clientkey").display()
        )
    }
}

fn virsh(uri: &str, args: &[&str]) -> Output {
    Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run virsh")
}

fn rvirt(uri: &str, args: &[&str]) -> Output {
    Command::new(rvirt_tests::built("rvirt"))
        .arg("-c")
        .arg(uri)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run rvirt")
}

#[test]
fn virsh_over_ssh_reaches_rvirtd_through_the_helper() {
    if missing("virsh", Command::new("virsh").arg("--version")) {
        return;
    }
    let d = Daemon::start();
    let Some(sshd) = Sshd::start(&d) else { return };
    let uri = sshd.uri("test:///default", "&no_verify=1");

    // virsh's default proxy=auto: `which virt-ssh-helper` finds rvirt's on the far side
    let o = virsh(&uri, &["list", "--all"]);
    assert!(o.status.success(), "{}\nsshd: {}", text(&o), sshd.log());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("test") && out.contains("running"), "{out}");
    let xml = crate::domain_xml("over-ssh");
    let file = crate::write_file(sshd.dir.path(), "over-ssh.xml", &xml);
    let o = virsh(&uri, &["define", &file.display().to_string()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = virsh(&uri, &["suspend", "test"]);
    assert!(o.status.success(), "{}", text(&o));
    // the daemon itself saw it: a local client finds the new domain and the paused state
    let o = virsh(&d.uri(), &["list", "--all"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("over-ssh") && out.contains("paused"),
        "{}",
        text(&o)
    );

    // the QEMU driver through the same path: qemu:///system of the daemon's root
    let qemu = sshd.uri("qemu:///system", "&no_verify=1");
    let o = virsh(&qemu, &["uri"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("qemu+ssh://"),
        "{}",
        text(&o)
    );
    let o = virsh(&qemu, &["list", "--all"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = virsh(&qemu, &["capabilities"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("<domain type='qemu'"),
        "{}",
        text(&o)
    );

    // read-only: `virt-ssh-helper -r` relays to the read-only socket
    let o = Command::new("virsh")
        .args(["-r", "-c", &uri, "list", "--all"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("over-ssh"),
        "{}",
        text(&o)
    );
    let o = Command::new("virsh")
        .args(["-r", "-c", &uri, "resume", "test"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success(), "read-only resume worked: {}", text(&o));

    // netcat's form: virsh with netcat= runs `NC -q0 -U SOCKET` (after probing `NC -q`)
    let o = virsh(
        &sshd.uri(
            "test:///default",
            &format!(
                "&no_verify=1&netcat={}&socket={}",
                env!("CARGO_BIN_EXE_rvirt-ssh-helper"),
                d.socket().display()
            ),
        ),
        &["domstate", "test"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("paused"),
        "{}",
        text(&o)
    );

    // a far side without a daemon: the helper's reason reaches the user
    let gone = sshd.uri(
        "test:///default",
        &format!(
            "&no_verify=1&netcat={}&socket=/nonexistent/sock",
            env!("CARGO_BIN_EXE_rvirt-ssh-helper")
        ),
    );
    let o = virsh(&gone, &["list"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("cannot connect to rvirtd at /nonexistent/sock"),
        "{}",
        text(&o)
    );
}

#[test]
fn rvirt_over_ssh_verifies_the_host_key() {
    let d = Daemon::start();
    let Some(sshd) = Sshd::start(&d) else { return };
    let known = format!("&known_hosts={}", sshd.path("known_hosts").display());

    // the host key is checked against known_hosts= and matches
    let o = rvirt(&sshd.uri("test:///default", &known), &["list", "--all"]);
    assert!(o.status.success(), "{}\nsshd: {}", text(&o), sshd.log());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("test"),
        "{}",
        text(&o)
    );
    let o = rvirt(&sshd.uri("test:///default", &known), &["suspend", "test"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = rvirt(&d.uri(), &["domstate", "test"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("paused"),
        "{}",
        text(&o)
    );
    // proxy=native (virt-ssh-helper only) and no_tty=1 (BatchMode)
    let o = rvirt(
        &sshd.uri("test:///default", &format!("{known}&proxy=native&no_tty=1")),
        &["domstate", "test"],
    );
    assert!(o.status.success(), "{}", text(&o));

    // an unknown host key: ssh refuses, and rvirt says why
    let o = rvirt(
        &sshd.uri(
            "test:///default",
            &format!("&known_hosts={}", sshd.path("empty_known_hosts").display()),
        ),
        &["list"],
    );
    assert!(
        !o.status.success(),
        "an unknown host was trusted: {}",
        text(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Host key verification failed"), "{}", text(&o));

    // a key sshd does not accept
    let other = sshd.path("otherkey");
    let o = run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            &other.display().to_string(),
        ],
    );
    assert!(o.status.success());
    let uri = format!(
        "test+ssh://{}@127.0.0.1:{}/default?keyfile={}{known}&no_tty=1",
        sshd.user,
        sshd.port,
        other.display()
    );
    let o = rvirt(&uri, &["list"]);
    assert!(
        !o.status.success(),
        "a foreign key was let in: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        text(&o)
    );
}

//! A client of the remote protocol written by others than libvirt's authors:
//! DigitalOcean's pure-Go go-libvirt (Debian's golang-github-digitalocean-go-libvirt-dev),
//! which encodes and decodes the protocol itself. `tests/tools/golibvirt/main.go`, written
//! as its README shows a new user, dials rvirtd over TCP (`listen_tcp = 1`,
//! `auth_tcp = "none"`) and runs connect, the README's `Version` and `Domains`, versions,
//! host name, domain listing, lookup, info, XML, define/create/destroy/undefine under a lifecycle event subscription, pool
//! and network listings and a missing domain's error; the same program against Debian's
//! libvirtd (a private instance started by `../shared/bench/lvd.py`, listening on TCP)
//! must answer the same, host name and versions aside.

use crate::Daemon;
use crate::tls::{free_port, wait_port};
use rvirt_tests::{built, cannot_run, profile_dir, shared_dir, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds the Go program once per test process (tests/tools/golibvirt/build.sh, offline
/// against /usr/share/gocode); `None` after [`cannot_run`] where go or go-libvirt is missing.
fn golibvirt(test: &str) -> Option<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = BIN.get_or_init(|| {
        let script = workspace_root().join("tests/tools/golibvirt/build.sh");
        let out = profile_dir().join("..").join("golibvirt");
        let o = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !o.status.success() {
            return Err(format!(
                "building the go-libvirt client failed (apt-get install golang-go golang-github-digitalocean-go-libvirt-dev): {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    });
    match r {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            cannot_run(test, why);
            None
        }
    }
}

/// Runs the Go client against `127.0.0.1:port` for `uri`; panics with its output when it
/// reports a failure.
fn run(bin: &Path, port: u16, uri: &str) -> String {
    let o = Command::new(bin)
        .arg(format!("127.0.0.1:{port}"))
        .arg(uri)
        .output()
        .expect("cannot run the go-libvirt client");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "go-libvirt client against {uri} on port {port} failed:\n{out}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn tcp_daemon() -> (Daemon, u16) {
    let port = free_port();
    let d = Daemon::start_logged_with_config(&format!(
        "listen_tcp = 1\nauth_tcp = \"none\"\ntcp_port = \"{port}\"\nlisten_addr = \"127.0.0.1\"\n"
    ));
    wait_port(port);
    (d, port)
}

/// The lines both daemons must answer alike: without the `~ ` lines (host name,
/// versions) and, for test:///default, without the pool and network listings (libvirt's
/// test driver has its own mock `default-pool` and `default` network; rvirtd's pools
/// and networks belong to the host whatever the driver, none in a fresh root).
fn comparable(out: &str, uri: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.starts_with("~ "))
        .filter(|l| {
            uri != "test:///default"
                || !(l.starts_with("storage pools ") || l.starts_with("networks "))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn go_libvirt_client_over_tcp() {
    let Some(bin) = golibvirt("go_libvirt_client_over_tcp") else {
        return;
    };
    let (d, port) = tcp_daemon();

    let out = run(&bin, port, "test:///default");
    let want = [
        "connected test:///default",
        "readme domains [test]",
        "domains [test]",
        "storage pools []",
        "networks []",
        "missing domain: code 42 not-found true",
        "lookup test id 1",
        "info test: state 1 maxmem 8388608 KiB memory 2097152 KiB vcpus 2",
        "xml of test names it: true",
        "subscribed to lifecycle events",
        "defined golibvirt-demo",
        "created",
        "info golibvirt-demo: state 1 maxmem 131072 KiB memory 131072 KiB vcpus 1",
        "destroyed",
        "undefined",
        "event golibvirt-demo defined detail 0",
        "event golibvirt-demo started detail 0",
        "event golibvirt-demo stopped detail 1",
        "event golibvirt-demo undefined detail 0",
        "disconnected",
    ];
    let got: Vec<&str> = out.lines().filter(|l| !l.starts_with("~ ")).collect();
    assert_eq!(got, want, "{out}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(out.contains(&format!("~ libversion {version}\n")), "{out}");
    assert!(out.contains("~ hostname "), "{out}");

    // the daemon saw the same: the demo domain is gone, `test` still runs
    let o = Command::new("virsh")
        .args(["-c", &d.uri(), "list", "--all", "--name"])
        .output()
        .expect("cannot run virsh");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "test");

    let out = run(&bin, port, "qemu:///system");
    let got: Vec<&str> = out.lines().filter(|l| !l.starts_with("~ ")).collect();
    assert_eq!(
        got,
        [
            "connected qemu:///system",
            "readme domains []",
            "domains []",
            "storage pools []",
            "networks []",
            "missing domain: code 42 not-found true",
            "disconnected",
        ],
        "{out}"
    );
}

/// Debian's libvirtd in a private namespace (lvd.py), listening on TCP without
/// authentication on `port`; stopped on drop.
struct Libvirtd {
    dir: tempfile::TempDir,
    lvd: PathBuf,
}

impl Libvirtd {
    fn start(lvd: PathBuf, port: u16) -> Libvirtd {
        let dir = tempfile::Builder::new()
            .prefix("rvirt-golibvirt-lvd.")
            .tempdir_in("/tmp")
            .unwrap();
        let py = |args: &[&str]| {
            let o = Command::new("/usr/bin/python3")
                .arg(&lvd)
                .args(args)
                .env("LIBVIRTD", dir.path().join("libvirtd-listen"))
                .output()
                .expect("cannot run lvd.py");
            assert!(
                o.status.success(),
                "lvd.py {args:?}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        };
        let d = dir.path().to_str().unwrap().to_owned();
        py(&["prepare", &d]);
        // libvirtd listens on TCP only with --listen and listen_tcp (TLS off: no PKI here)
        let conf = dir.path().join("libvirtd.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!(
            "listen_tls = 0\nlisten_tcp = 1\nauth_tcp = \"none\"\ntcp_port = \"{port}\"\nlisten_addr = \"127.0.0.1\"\n"
        ));
        std::fs::write(&conf, text).unwrap();
        let wrapper = dir.path().join("libvirtd-listen");
        std::fs::write(
            &wrapper,
            "#!/bin/sh\nexec /usr/sbin/libvirtd --listen \"$@\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        py(&["start", &d, "--no-qemu"]);
        Libvirtd { dir, lvd }
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let _ = Command::new("/usr/bin/python3")
            .arg(&self.lvd)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

#[test]
fn go_libvirt_client_answers_as_against_libvirtd() {
    let test = "go_libvirt_client_answers_as_against_libvirtd";
    let lvd = shared_dir().join("bench/lvd.py");
    if !rustix::process::geteuid().is_root()
        || !Path::new("/usr/sbin/libvirtd").is_file()
        || !lvd.is_file()
    {
        cannot_run(
            test,
            &format!(
                "needs root, Debian's libvirtd (apt-get install libvirt-daemon libvirt-daemon-driver-qemu) and {}",
                lvd.display()
            ),
        );
        return;
    }
    let Some(bin) = golibvirt(test) else {
        return;
    };
    let _ = built("rvirt");
    let (_d, port) = tcp_daemon();
    let lport = free_port();
    let _l = Libvirtd::start(lvd, lport);
    wait_port(lport);
    for uri in ["test:///default", "qemu:///system"] {
        let ours = run(&bin, port, uri);
        let theirs = run(&bin, lport, uri);
        assert_eq!(
            comparable(&ours, uri),
            comparable(&theirs, uri),
            "{uri}: rvirtd answered\n{ours}\nlibvirtd answered\n{theirs}"
        );
        eprintln!("{uri}: rvirtd\n{ours}\nlibvirtd\n{theirs}");
    }
}

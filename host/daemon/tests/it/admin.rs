//! libvirt's admin program: unmodified `virt-admin` against rvirtd's admin socket
//! (`ROOT/run/rvirt-admin-sock`, mode 0600): servers, the worker pool, clients (list,
//! info, disconnect a python-libvirt client, which then sees its connection closed) and
//! the log filters and outputs changed at run time.

use crate::{Daemon, missing};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Debian's python (python3-libvirt is installed for it).
const PYTHON: &str = "/usr/bin/python3";

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn admin_uri(d: &Daemon) -> String {
    format!(
        "libvirtd:///system?socket={}",
        d.root.path().join("run/rvirt-admin-sock").display()
    )
}

fn virt_admin(d: &Daemon, args: &[&str]) -> Output {
    let o = Command::new("virt-admin")
        .arg("-c")
        .arg(admin_uri(d))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run virt-admin");
    assert!(o.status.success(), "virt-admin {args:?}: {}", text(&o));
    o
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A python-libvirt client that stays connected: prints READY, then on each input line
/// makes one call and prints its result or the error.
fn python_client(uri: &str) -> Child {
    let script = r#"
import sys, libvirt
c = libvirt.open(sys.argv[1])
print("READY", flush=True)
for line in sys.stdin:
    try:
        print("OK", c.lookupByName("test").name(), flush=True)
    except libvirt.libvirtError as e:
        print("ERR", e.get_error_code(), e, flush=True)
"#;
    Command::new(PYTHON)
        .args(["-c", script, uri])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run python3")
}

fn read_line(r: &mut impl std::io::BufRead) -> String {
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    s
}

#[test]
fn virt_admin_manages_servers_clients_and_logs() {
    if missing("virt-admin", Command::new("virt-admin").arg("--version"))
        || missing(
            "python3-libvirt",
            Command::new(PYTHON).args(["-c", "import libvirt"]),
        )
    {
        return;
    }
    let d = Daemon::start_logged_with_config("max_workers = 8\n");
    let sock = d.root.path().join("run/rvirt-admin-sock");
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no admin socket: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin socket mode {mode:o}");

    // servers, as libvirtd names them
    let o = virt_admin(&d, &["srv-list"]);
    assert!(
        out(&o).contains("libvirtd") && out(&o).contains("admin"),
        "{}",
        text(&o)
    );

    // the worker pool, and resizing it
    let o = virt_admin(&d, &["srv-threadpool-info", "libvirtd"]);
    assert!(
        out(&o).contains("maxWorkers") && out(&o).contains(": 8"),
        "{}",
        text(&o)
    );
    virt_admin(
        &d,
        &["srv-threadpool-set", "libvirtd", "--max-workers", "3"],
    );
    let o = virt_admin(&d, &["srv-threadpool-info", "libvirtd"]);
    let max = out(&o)
        .lines()
        .find(|l| l.contains("maxWorkers"))
        .unwrap_or_default()
        .to_string();
    assert!(max.trim_end().ends_with('3'), "{}", text(&o));
    let o = Command::new("virt-admin")
        .args([
            "-c",
            &admin_uri(&d),
            "srv-threadpool-set",
            "libvirtd",
            "--min-workers",
            "5",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "minWorkers accepted: {}", text(&o));

    // two clients: a read-write python one that stays, a read-only one
    let mut py = python_client(&d.uri());
    let mut py_out = std::io::BufReader::new(py.stdout.take().unwrap());
    assert!(read_line(&mut py_out).starts_with("READY"));
    let mut ro = python_client(&d.uri_ro());
    let mut ro_out = std::io::BufReader::new(ro.stdout.take().unwrap());
    assert!(read_line(&mut ro_out).starts_with("READY"));

    let o = virt_admin(&d, &["srv-clients-list", "libvirtd"]);
    let listing = out(&o);
    let ids: Vec<String> = listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 2 && f[0].parse::<u64>().is_ok() && f[1] == "unix")
                .then(|| f[0].to_string())
        })
        .collect();
    assert_eq!(ids.len(), 2, "{listing}");
    // client-info tells them apart: the python process ids and the read-only flag
    let mut rw_id = None;
    for id in &ids {
        let o = virt_admin(&d, &["client-info", "libvirtd", id]);
        let info = out(&o);
        assert!(
            info.contains("unix_user_id") && info.contains("unix_process_id"),
            "{info}"
        );
        if info.contains(&format!(": {}", py.id())) {
            assert!(
                info.lines()
                    .any(|l| l.contains("readonly") && l.contains("no")),
                "{info}"
            );
            rw_id = Some(id.clone());
        } else {
            assert!(info.contains(&format!(": {}", ro.id())), "{info}");
            assert!(
                info.lines()
                    .any(|l| l.contains("readonly") && l.contains("yes")),
                "{info}"
            );
        }
    }
    let rw_id = rw_id.expect("the read-write client is listed");

    // the python client works, is disconnected, and then sees its connection closed
    use std::io::Write;
    let mut py_in = py.stdin.take().unwrap();
    writeln!(py_in, "call").unwrap();
    assert!(read_line(&mut py_out).starts_with("OK test"));
    virt_admin(&d, &["client-disconnect", "libvirtd", &rw_id]);
    let t0 = Instant::now();
    loop {
        let o = virt_admin(&d, &["srv-clients-list", "libvirtd"]);
        if !out(&o)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(rw_id.as_str()))
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "still listed: {}",
            out(&o)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    writeln!(py_in, "call").unwrap();
    let after = read_line(&mut py_out);
    assert!(
        after.starts_with("ERR"),
        "the call after the disconnect: {after}"
    );
    let _ = py.kill();
    let _ = py.wait();
    // the read-only client is still served
    let mut ro_in = ro.stdin.take().unwrap();
    writeln!(ro_in, "call").unwrap();
    assert!(read_line(&mut ro_out).starts_with("OK test"));
    let _ = ro.kill();
    let _ = ro.wait();
    // an unknown client
    let o = Command::new("virt-admin")
        .args([
            "-c",
            &admin_uri(&d),
            "client-disconnect",
            "libvirtd",
            "999999",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));

    // log filters at run time: a debug filter on the server module makes its debug
    // messages appear in the log, which at `warn` had none
    let before = d.log();
    assert!(!before.contains("client connected"), "{before}");
    virt_admin(&d, &["daemon-log-filters", "1:rvirtd::server"]);
    let o = virt_admin(&d, &["daemon-log-filters"]);
    assert!(out(&o).contains("1:rvirtd::server"), "{}", text(&o));
    let o = Command::new("virsh")
        .args(["-c", &d.uri(), "list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t0 = Instant::now();
    while !d.log().contains("client connected") {
        assert!(t0.elapsed() < Duration::from_secs(5), "log: {}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // outputs: a file gets the log from now on
    let file = d.root.path().join("admin-set.log");
    virt_admin(
        &d,
        &["daemon-log-outputs", &format!("1:file:{}", file.display())],
    );
    let o = virt_admin(&d, &["daemon-log-outputs"]);
    assert!(
        out(&o).contains(&format!("1:file:{}", file.display())),
        "{}",
        text(&o)
    );
    let o = Command::new("virsh")
        .args(["-c", &d.uri(), "list"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let t0 = Instant::now();
    while !std::fs::read_to_string(&file)
        .unwrap_or_default()
        .contains("client connected")
    {
        assert!(t0.elapsed() < Duration::from_secs(5), "file log missing");
        std::thread::sleep(Duration::from_millis(50));
    }
    // no terminal: not one colour code in the log
    assert!(!d.log().contains('\x1b'), "escape codes in {}", d.log());
    assert!(
        !std::fs::read_to_string(&file).unwrap().contains('\x1b'),
        "escape codes in the file output"
    );

    // syslog and journald, at the sockets a system has (`/dev/log` and journald's native
    // socket), under the daemon's --root; fakes bound here read what the daemon sends
    let bind = |rel: &str| {
        let path = d.root.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let s = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s
    };
    // a message containing `needle`, within 5 s of virsh calls
    let received = |sock: &std::os::unix::net::UnixDatagram, needle: &str| -> Vec<u8> {
        let t0 = Instant::now();
        let mut buf = vec![0u8; 65536];
        loop {
            assert!(t0.elapsed() < Duration::from_secs(5), "no {needle:?} sent");
            let o = Command::new("virsh")
                .args(["-c", &d.uri(), "list"])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", text(&o));
            while let Ok(n) = sock.recv(&mut buf) {
                let msg = &buf[..n];
                if String::from_utf8_lossy(msg).contains(needle) {
                    return msg.to_vec();
                }
            }
        }
    };
    // refused while nothing listens, and nothing changes
    let o = Command::new("virt-admin")
        .args([
            "-c",
            &admin_uri(&d),
            "daemon-log-outputs",
            "1:syslog:rvirtd",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("syslog socket"),
        "{}",
        text(&o)
    );
    let syslog = bind("dev/log");
    virt_admin(&d, &["daemon-log-outputs", "1:syslog:rvirtd"]);
    let o = virt_admin(&d, &["daemon-log-outputs"]);
    assert!(out(&o).contains("1:syslog:rvirtd"), "{}", text(&o));
    let msg = String::from_utf8(received(&syslog, "client connected")).unwrap();
    // facility daemon (3) x 8 + debug (7); the receiver adds the time
    assert!(
        msg.starts_with(&format!("<31>rvirtd[{}]: ", d.pid())),
        "{msg:?}"
    );
    assert!(!msg.contains('\x1b') && !msg.ends_with('\n'), "{msg:?}");

    let journal = bind("run/systemd/journal/socket");
    virt_admin(&d, &["daemon-log-outputs", "2:stderr 1:journald"]);
    let o = virt_admin(&d, &["daemon-log-outputs"]);
    assert!(out(&o).contains("2:stderr 1:journald"), "{}", text(&o));
    let msg = String::from_utf8(received(&journal, "client connected")).unwrap();
    for field in [
        "\nPRIORITY=7\n",
        "\nSYSLOG_IDENTIFIER=rvirtd\n",
        &format!("\nSYSLOG_PID={}\n", d.pid()),
        "\nRVIRT_TARGET=rvirtd::server\n",
    ] {
        assert!(msg.contains(field), "{field:?} missing in {msg:?}");
    }
    assert!(
        msg.starts_with("MESSAGE=") && !msg.contains('\x1b'),
        "{msg:?}"
    );
    // syslog is no longer an output
    let mut buf = [0u8; 4096];
    while syslog.recv(&mut buf).is_ok() {}
    let o = Command::new("virsh")
        .args(["-c", &d.uri(), "list"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(syslog.recv(&mut buf).is_err(), "syslog still written");

    // an output libvirt does not have
    let o = Command::new("virt-admin")
        .args(["-c", &admin_uri(&d), "daemon-log-outputs", "1:fluentd"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
}

/// `log_filters` and `log_outputs` of rvirtd.toml (libvirtd.conf's names and syntax) apply
/// from the start.
#[test]
fn log_settings_of_the_config_file() {
    if missing("virt-admin", Command::new("virt-admin").arg("--version")) {
        return;
    }
    let d = Daemon::start_logged_with_config(
        "log_filters = \"1:rvirtd::server\"\nlog_outputs = \"1:stderr\"\n",
    );
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(d.root.path().join("run/rvirt-admin-sock"))
        .is_err()
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "no admin socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = virt_admin(&d, &["daemon-log-outputs"]);
    assert!(out(&o).contains("1:stderr"), "{}", text(&o));
    let o = virt_admin(&d, &["daemon-log-filters"]);
    assert!(out(&o).contains("1:rvirtd::server"), "{}", text(&o));
    let o = Command::new("virsh")
        .args(["-c", &d.uri(), "list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t0 = Instant::now();
    while !d.log().contains("client connected") {
        assert!(t0.elapsed() < Duration::from_secs(5), "log: {}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!d.log().contains('\x1b'), "escape codes in {}", d.log());
}

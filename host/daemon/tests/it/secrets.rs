//! Secrets through rvirtd: unmodified `virsh` and python-libvirt on
//! `qemu+unix:///system` (the store under the daemon's `--root`), the read-only socket's
//! refusals, persistence across a restart, file modes, the `rvirt` CLI, and a trace log
//! that never shows a value.

use super::{Daemon, EventWatch, missing, write_file};
use crate::{virsh, virsh_ok as ok};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A value that must never appear anywhere but in a reply to its owner.
const VALUE: &str = "zq-s3cr3t-Rv1rt-7731";

fn fails(uri: &str, args: &[&str]) -> String {
    let o = virsh(uri, args);
    assert!(!o.status.success(), "virsh {args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn system_uri(socket: &Path) -> String {
    format!("qemu+unix:///system?socket={}", socket.display())
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn ceph_xml(private: bool) -> String {
    format!(
        "<secret ephemeral='no' private='{}'><description>ceph key</description>\
         <usage type='ceph'><name>client.admin secret</name></usage></secret>",
        if private { "yes" } else { "no" }
    )
}

fn volume_xml(ephemeral: bool, private: bool, path: &str) -> String {
    format!(
        "<secret ephemeral='{}' private='{}'><usage type='volume'><volume>{path}</volume></usage></secret>",
        if ephemeral { "yes" } else { "no" },
        if private { "yes" } else { "no" }
    )
}

/// The UUID virsh printed for `secret-define` ("Secret UUID created").
fn define(uri: &str, file: &Path) -> String {
    let out = ok(uri, &["secret-define", file.to_str().unwrap()]);
    let uuid = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no uuid in {out:?}"))
        .to_string();
    assert!(out.contains("created"), "{out}");
    uuid
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn virsh_defines_sets_gets_lists_and_undefines_secrets() {
    if missing("virsh", Command::new("virsh").arg("--version")) {
        return;
    }
    let mut d = Daemon::start();
    let uri = system_uri(&d.socket());
    let ro = system_uri(&d.socket_ro());
    let dir = d.root.path().to_path_buf();
    let store = dir.join("etc/rvirt/secrets");

    let ceph = define(&uri, &write_file(&dir, "ceph.xml", &ceph_xml(false)));
    let private = define(
        &uri,
        &write_file(&dir, "vol.xml", &volume_xml(false, true, "/var/lib/v.img")),
    );
    let ephemeral = define(
        &uri,
        &write_file(&dir, "eph.xml", &volume_xml(true, false, "/var/lib/e.img")),
    );

    // a non-private secret's value goes and comes back; a private one's never comes back
    assert!(ok(&uri, &["secret-set-value", &ceph, "--base64", &b64(VALUE)]).contains("set"));
    assert_eq!(ok(&uri, &["secret-get-value", &ceph]).trim(), b64(VALUE));
    let plain = write_file(&dir, "plain", VALUE);
    ok(
        &uri,
        &[
            "secret-set-value",
            &private,
            "--file",
            plain.to_str().unwrap(),
            "--plain",
        ],
    );
    let e = fails(&uri, &["secret-get-value", &private]);
    assert!(e.contains("private"), "{e}");
    assert!(!e.contains(VALUE), "{e}");
    ok(
        &uri,
        &["secret-set-value", &ephemeral, "--base64", &b64("eph")],
    );

    let list = ok(&uri, &["secret-list"]);
    for (u, usage) in [
        (&ceph, "ceph client.admin secret"),
        (&private, "volume /var/lib/v.img"),
        (&ephemeral, "volume /var/lib/e.img"),
    ] {
        assert!(
            list.lines()
                .any(|l| l.contains(u.as_str()) && l.contains(usage)),
            "{list}"
        );
    }
    let xml = ok(&uri, &["secret-dumpxml", &ceph]);
    assert!(
        xml.contains(&ceph) && xml.contains("client.admin secret") && !xml.contains(VALUE),
        "{xml}"
    );

    // the read-only socket refuses define, set-value and get-value, but lists
    let e = fails(
        &ro,
        &["secret-define", dir.join("ceph.xml").to_str().unwrap()],
    );
    assert!(e.contains("read only"), "{e}");
    let e = fails(&ro, &["secret-set-value", &ceph, "--base64", &b64("x")]);
    assert!(e.contains("read only"), "{e}");
    let e = fails(&ro, &["secret-get-value", &ceph]);
    assert!(e.contains("read only"), "{e}");
    assert!(ok(&ro, &["secret-list"]).contains(&ceph));

    // owner-only files in an owner-only directory; the value is not in the definition
    assert_eq!(mode(&store), 0o700);
    for u in [&ceph, &private] {
        assert_eq!(mode(&store.join(format!("{u}.xml"))), 0o600);
        assert_eq!(mode(&store.join(format!("{u}.base64"))), 0o600);
    }
    assert!(!store.join(format!("{ephemeral}.xml")).exists());

    // a restart keeps persistent secrets with their values and forgets ephemeral ones
    d.restart();
    assert_eq!(ok(&uri, &["secret-get-value", &ceph]).trim(), b64(VALUE));
    let list = ok(&uri, &["secret-list"]);
    assert!(list.contains(&ceph) && list.contains(&private), "{list}");
    assert!(!list.contains(&ephemeral), "{list}");

    assert!(ok(&uri, &["secret-undefine", &ceph]).contains("deleted"));
    let e = fails(&uri, &["secret-get-value", &ceph]);
    assert!(e.contains("secret"), "{e}");
    assert!(!store.join(format!("{ceph}.xml")).exists());
    assert!(!store.join(format!("{ceph}.base64")).exists());
    let e = fails(&ro, &["secret-undefine", &private]);
    assert!(e.contains("read only"), "{e}");
}

const PYTHON: &str = "/usr/bin/python3";

const SCRIPT: &str = r#"
import sys, libvirt
uri, ro_uri, value = sys.argv[1], sys.argv[2], sys.argv[3].encode()
c = libvirt.open(uri)
s = c.secretDefineXML("<secret ephemeral='no' private='no'><usage type='ceph'><name>py.key</name></usage></secret>", 0)
s.setValue(value, 0)
found = c.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_CEPH, "py.key")
assert found.UUIDString() == s.UUIDString()
assert found.usageID() == "py.key" and found.usageType() == libvirt.VIR_SECRET_USAGE_TYPE_CEPH
assert found.value(0) == value, "value differs"
assert [x.UUIDString() for x in c.listAllSecrets(libvirt.VIR_CONNECT_LIST_SECRETS_NO_PRIVATE)] == [s.UUIDString()]
assert c.numOfSecrets() == 1 and c.listSecrets() == [s.UUIDString()]
ro = libvirt.openReadOnly(ro_uri)
r = ro.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_CEPH, "py.key")
try:
    r.value(0)
    raise SystemExit("value read on a read-only connection")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_OPERATION_DENIED, e.get_error_code()
s.undefine()
try:
    c.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_CEPH, "py.key")
    raise SystemExit("undefined secret found")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_NO_SECRET, e.get_error_code()
print("OK")
"#;

#[test]
fn python_libvirt_looks_up_by_usage_and_reads_the_value() {
    if missing(
        "python3-libvirt",
        Command::new(PYTHON).args(["-c", "import libvirt"]),
    ) {
        return;
    }
    let d = Daemon::start();
    let out = Command::new(PYTHON)
        .args([
            "-c",
            SCRIPT,
            &system_uri(&d.socket()),
            &system_uri(&d.socket_ro()),
            VALUE,
        ])
        .output()
        .expect("cannot run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "python-libvirt script failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// rvirtd at `RUST_LOG=trace`, its stderr in a file; stopped on drop.
struct TracedDaemon {
    root: tempfile::TempDir,
    child: std::process::Child,
}

impl TracedDaemon {
    fn start() -> TracedDaemon {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"));
        let root = tempfile::Builder::new()
            .prefix("rvirtd-it.")
            .tempdir()
            .unwrap();
        let log = std::fs::File::create(root.path().join("stderr.log")).unwrap();
        let child = Command::new(&bin)
            .arg("--root")
            .arg(root.path())
            .env("RVIRT_PLUGIN_PATH", bin.parent().unwrap())
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start rvirtd");
        let d = TracedDaemon { root, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(d.socket(false)).is_err()
            || std::os::unix::net::UnixStream::connect(d.socket(true)).is_err()
        {
            assert!(Instant::now() < deadline, "rvirtd did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        d
    }

    fn socket(&self, ro: bool) -> PathBuf {
        self.root.path().join(if ro {
            "run/rvirt-sock-ro"
        } else {
            "run/rvirt-sock"
        })
    }

    /// Stops the daemon (SIGTERM) and returns what it wrote to stderr.
    fn stop(mut self) -> String {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
        std::fs::read_to_string(self.root.path().join("stderr.log")).unwrap()
    }
}

impl Drop for TracedDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_trace_log_never_shows_a_secret_value() {
    if missing("virsh", Command::new("virsh").arg("--version")) {
        return;
    }
    let d = TracedDaemon::start();
    let uri = system_uri(&d.socket(false));
    let ro = system_uri(&d.socket(true));
    let dir = d.root.path().to_path_buf();
    let open = define(&uri, &write_file(&dir, "c.xml", &ceph_xml(false)));
    let private = define(
        &uri,
        &write_file(&dir, "v.xml", &volume_xml(false, true, "/v.img")),
    );
    for u in [&open, &private] {
        ok(&uri, &["secret-set-value", u, "--base64", &b64(VALUE)]);
    }
    assert_eq!(ok(&uri, &["secret-get-value", &open]).trim(), b64(VALUE));
    // failing paths too: a private value, the read-only socket, a bad UUID, bad flags
    fails(&uri, &["secret-get-value", &private]);
    fails(&ro, &["secret-set-value", &open, "--base64", &b64(VALUE)]);
    fails(&ro, &["secret-get-value", &open]);
    fails(
        &uri,
        &[
            "secret-set-value",
            "00000000-0000-0000-0000-000000000001",
            "--base64",
            &b64(VALUE),
        ],
    );
    let log = d.stop();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the daemon logged nothing at trace level: {log}"
    );
    for needle in [VALUE.to_string(), b64(VALUE)] {
        assert!(!log.contains(&needle), "the value reached the log:\n{log}");
    }
    // nor its bytes in a Debug rendering of a byte vector
    let bytes = format!("{:?}", VALUE.as_bytes());
    let inner = &bytes[1..bytes.len() - 1];
    assert!(!log.contains(inner), "the value's bytes reached the log");
}

#[test]
fn the_rvirt_cli_round_trip_with_json() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    let rvirt = bin_dir.join("rvirt");
    assert!(
        rvirt.is_file(),
        "the rvirt CLI is missing next to rvirtd: run `cargo build --workspace` first"
    );
    let d = Daemon::start();
    let uri = system_uri(&d.socket());
    let dir = d.root.path().to_path_buf();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new(&rvirt)
            .arg("-c")
            .arg(&uri)
            .args(args)
            .env("RVIRT_PLUGIN_PATH", &bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(c.stdin.take());
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "rvirt {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let file = write_file(&dir, "c.xml", &ceph_xml(false));
    let def: serde_json::Value = serde_json::from_str(&run(
        &["--json", "secret-define", file.to_str().unwrap()],
        None,
    ))
    .unwrap();
    let uuid = def["uuid"].as_str().unwrap().to_string();
    // the value from standard input, raw: it is never on a command line
    assert!(
        run(
            &["secret-set-value", &uuid, "--file", "-", "--plain"],
            Some(VALUE)
        )
        .contains("set")
    );
    assert_eq!(run(&["secret-get-value", &uuid], None).trim(), b64(VALUE));
    assert_eq!(run(&["secret-get-value", &uuid, "--plain"], None), VALUE);
    let got: serde_json::Value =
        serde_json::from_str(&run(&["--json", "secret-get-value", &uuid], None)).unwrap();
    assert_eq!(got["value_base64"], b64(VALUE));
    let list: serde_json::Value =
        serde_json::from_str(&run(&["--json", "secret-list"], None)).unwrap();
    assert_eq!(
        list,
        serde_json::json!([{"uuid": uuid, "usage": "ceph", "usage_id": "client.admin secret"}])
    );
    assert!(run(&["secret-dumpxml", &uuid], None).contains("client.admin secret"));
    assert!(run(&["secret-list"], None).contains("ceph client.admin secret"));
    run(&["secret-undefine", &uuid], None);
    let list: serde_json::Value =
        serde_json::from_str(&run(&["--json", "secret-list"], None)).unwrap();
    assert_eq!(list, serde_json::json!([]));
}

/// virsh prints secret events: lifecycle (defined, undefined) and value-changed.
#[test]
fn virsh_sees_secret_events() {
    if missing("virsh", Command::new("virsh").arg("--version")) {
        return;
    }
    let d = Daemon::start();
    let uri = system_uri(&d.socket());
    let dir = d.root.path().to_path_buf();
    let watch = |event: &str| {
        EventWatch::spawn(
            "virsh",
            &["-c", &uri, "secret-event", "--loop", "--event", event],
        )
    };
    let lifecycle = watch("lifecycle");
    let changed = watch("value-changed");
    // both watchers have registered once they see a probe secret's events (no other
    // secret exists in this daemon yet)
    let probe_xml = write_file(&dir, "probe.xml", &ceph_xml(false));
    let probe = |_| {
        let p = define(&uri, &probe_xml);
        ok(&uri, &["secret-set-value", &p, "--base64", &b64(VALUE)]);
        ok(&uri, &["secret-undefine", &p]);
    };
    lifecycle.ready(": Defined", probe);
    changed.ready("for secret", probe);
    let u = define(&uri, &write_file(&dir, "c.xml", &ceph_xml(false)));
    ok(&uri, &["secret-set-value", &u, "--base64", &b64(VALUE)]);
    ok(&uri, &["secret-undefine", &u]);
    lifecycle.wait_for(&[
        format!("for secret {u}: Defined"),
        format!("for secret {u}: Undefined"),
    ]);
    let changed = changed.wait_for(&[format!("for secret {u}")]);
    assert!(!changed.contains(VALUE), "{changed}");
}

/// The host's remote driver (what `rvirt -c qemu+unix://...` and embedders use) against
/// rvirtd: secret calls and events, and the read-only refusals.
#[test]
fn the_remote_driver_serves_secrets_and_their_events() {
    use rvirt_host::secrets::SecretEvent;
    let d = Daemon::start();
    let conn = rvirt_host::Connection::open(&system_uri(&d.socket())).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let sub = conn
        .subscribe_secret_events(move |e| {
            let _ = tx.lock().unwrap().send((e.secret.uuid, e.event));
        })
        .unwrap();
    let s = conn
        .secret_define_xml(&volume_xml(false, false, "/r/v.img"), 0)
        .unwrap();
    assert_eq!((s.usage_type(), s.usage_id()), (1, "/r/v.img"));
    s.set_value(b"\x00bytes\xff", 0).unwrap();
    assert_eq!(s.get_value(0).unwrap(), b"\x00bytes\xff");
    let found = conn.lookup_secret_by_usage(1, "/r/v.img").unwrap();
    assert_eq!(found.uuid(), s.uuid());
    assert!(found.get_xml_desc(0).unwrap().contains("/r/v.img"));
    assert_eq!(conn.list_all_secrets(0).unwrap().len(), 1);

    let ro = rvirt_host::Connection::open_read_only(&system_uri(&d.socket_ro())).unwrap();
    let r = ro.lookup_secret_by_uuid(s.uuid()).unwrap();
    assert_eq!(
        r.get_value(0).unwrap_err().code(),
        29,
        "read-only get-value"
    );
    assert_eq!(r.set_value(b"x", 0).unwrap_err().code(), 29);
    assert_eq!(
        ro.secret_define_xml(&ceph_xml(true), 0).unwrap_err().code(),
        29
    );

    s.undefine().unwrap();
    assert_eq!(conn.lookup_secret_by_uuid(s.uuid()).unwrap_err().code(), 66);
    let got: Vec<_> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    assert_eq!(
        got,
        [
            (s.uuid(), SecretEvent::Defined),
            (s.uuid(), SecretEvent::ValueChanged),
            (s.uuid(), SecretEvent::Undefined)
        ]
    );
    conn.unsubscribe_secret_events(sub).unwrap();
}

/// A local read-only connection refuses changes and values too.
#[test]
fn a_local_read_only_connection_refuses_values() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    let rt = rvirt_host::Runtime::with_search_path(vec![bin_dir]);
    let rw = rt.open("test:///default", false).unwrap();
    let s = rw
        .secret_define_xml(&volume_xml(true, false, "/local/ro.img"), 0)
        .unwrap();
    s.set_value(b"v", 0).unwrap();
    let ro = rt.open("test:///default", true).unwrap();
    let r = ro.lookup_secret_by_uuid(s.uuid()).unwrap();
    assert_eq!(r.get_value(0).unwrap_err().code(), 29);
    assert_eq!(r.undefine().unwrap_err().code(), 29);
    assert_eq!(s.get_value(0).unwrap(), b"v");
    s.undefine().unwrap();
}

/// The legacy list calls check their limit; bad event ids and oversized values are
/// refused, and no error names a value.
#[test]
fn raw_protocol_limits_and_refusals() {
    use super::protocol::Raw;
    use rvirt_wire::RemoteProcedure as P;
    use rvirt_wire::Status;
    use rvirt_wire::protocol::RemoteError;
    use rvirt_wire::remote::*;
    let d = Daemon::start();
    let mut raw = Raw::connect(&d.socket());
    raw.open();
    for maxuuids in [-1, 16_385] {
        let f = raw.call(P::ConnectListSecrets, &ConnectListSecretsArgs { maxuuids });
        assert_eq!(f.header.status, Status::Error, "maxuuids {maxuuids}");
    }
    let f = raw.call(
        P::SecretDefineXml,
        &XmlFlagsArgs {
            xml: volume_xml(true, false, "/raw/a.img"),
            flags: 0,
        },
    );
    assert_eq!(f.header.status, Status::Ok);
    let secret = f.body::<SecretRet>().unwrap().secret;
    let f = raw.call(
        P::ConnectListSecrets,
        &ConnectListSecretsArgs { maxuuids: 0 },
    );
    assert!(f.body::<ConnectListSecretsRet>().unwrap().uuids.is_empty());
    let f = raw.call(
        P::ConnectListSecrets,
        &ConnectListSecretsArgs { maxuuids: 5 },
    );
    let uuids = f.body::<ConnectListSecretsRet>().unwrap().uuids;
    assert_eq!(uuids, [uuid::Uuid::from_bytes(secret.uuid).to_string()]);
    let f = raw.call(P::ConnectNumOfSecrets, &());
    assert_eq!(f.body::<NumRet>().unwrap().num, 1);

    let f = raw.call(
        P::ConnectSecretEventRegisterAny,
        &ConnectSecretEventRegisterAnyArgs {
            event_id: 2,
            secret: None,
        },
    );
    assert_eq!(f.header.status, Status::Error);

    // one byte over REMOTE_SECRET_VALUE_MAX: refused while decoding, the value unnamed
    let big = SecretSetValueArgs {
        secret,
        value: VALUE.as_bytes().repeat(65_536 / VALUE.len() + 1)[..65_537].to_vec(),
        flags: 0,
    };
    let f = raw.call(P::SecretSetValue, &big);
    let e = f.body::<RemoteError>().unwrap();
    let msg = format!("{e:?}");
    assert!(!msg.contains(&VALUE[..8]), "{msg}");
}

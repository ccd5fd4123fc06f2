//! The TCP and TLS transports: a PKI made with openssl (a CA, a server certificate for
//! 127.0.0.1 and localhost, two clients of that CA with different names, one client of
//! another CA), rvirtd with `listen_tls` on a free port and `tls_allowed_dn_list` naming
//! one client, and unmodified virsh, python-libvirt and `rvirt` as clients.

use crate::virsh;
use crate::{Daemon, missing};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Debian's python (python3-libvirt is installed for it).
const PYTHON: &str = "/usr/bin/python3";

/// The subject of the client the daemon allows (libvirt's DN format).
const ALLOWED_DN: &str = "C=GB,ST=London,L=London,O=Libvirt Project,CN=client1";

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn no_openssl() -> bool {
    missing("openssl", Command::new("openssl").arg("version"))
}

fn no_virsh() -> bool {
    missing("virsh", Command::new("virsh").arg("--version"))
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("cannot run openssl");
    assert!(o.status.success(), "openssl {args:?}: {}", text(&o));
}

/// A P-256 key and a certificate request for `subject`.
fn request(dir: &Path, name: &str, subject: &str) {
    let (key, csr) = (format!("{name}key.pem"), format!("{name}.csr"));
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ],
    );
}

/// A self-signed CA `NAME` (`NAMEcert.pem`, `NAMEkey.pem`).
fn make_ca(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}key.pem"),
            "-out",
            &format!("{name}cert.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// Signs `NAME.csr` with CA `ca` into `NAMEcert.pem` with the extensions `ext`.
fn sign(dir: &Path, name: &str, ca: &str, ext: &str) {
    let extfile = dir.join(format!("{name}.ext"));
    std::fs::write(&extfile, ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}cert.pem"),
            "-CAkey",
            &format!("{ca}key.pem"),
            "-CAcreateserial",
            "-out",
            &format!("{name}cert.pem"),
            "-days",
            "2",
            "-extfile",
            extfile.to_str().unwrap(),
        ],
    );
}

const CLIENT_EXT: &str = "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n";

/// The test PKI in a temporary directory, with one `pkipath` directory per client.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("rvirt-pki.")
            .tempdir()
            .unwrap();
        let d = dir.path();
        make_ca(d, "ca", "rvirt test CA");
        make_ca(d, "otherca", "another CA");
        request(d, "server", "/O=rvirt/CN=localhost");
        sign(
            d,
            "server",
            "ca",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n",
        );
        for (name, ca, cn) in [
            ("client1", "ca", "client1"),
            ("client2", "ca", "client2"),
            ("stranger", "otherca", "client1"),
        ] {
            request(
                d,
                name,
                &format!("/C=GB/ST=London/L=London/O=Libvirt Project/CN={cn}"),
            );
            sign(d, name, ca, CLIENT_EXT);
            // libvirt's pkipath layout; the CA is always the server's
            let pki = d.join(name);
            std::fs::create_dir(&pki).unwrap();
            std::fs::copy(d.join("cacert.pem"), pki.join("cacert.pem")).unwrap();
            std::fs::copy(
                d.join(format!("{name}cert.pem")),
                pki.join("clientcert.pem"),
            )
            .unwrap();
            std::fs::copy(d.join(format!("{name}key.pem")), pki.join("clientkey.pem")).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The daemon's TLS settings in `rvirtd.toml`.
    fn server_config(&self) -> String {
        format!(
            "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            self.path("cacert.pem").display(),
            self.path("servercert.pem").display(),
            self.path("serverkey.pem").display()
        )
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the daemon accepts on `port` (it binds its TCP sockets after the unix ones).
pub(crate) fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A daemon serving TLS on a free port (by `--listen` when `by_switch`, else
/// `listen_tls = 1`) that allows client1 only.
fn tls_daemon(pki: &Pki, by_switch: bool) -> (Daemon, u16) {
    let port = free_port();
    let listen = if by_switch { "" } else { "listen_tls = 1\n" };
    let config = format!(
        "{listen}tls_port = \"{port}\"\nlisten_addr = \"127.0.0.1\"\n{}tls_allowed_dn_list = [\"C=GB,ST=London,L=London,O=Libvirt Project,CN=admin*\", \"{ALLOWED_DN}\"]\n",
        pki.server_config()
    );
    let extra: &[&str] = if by_switch { &["--listen"] } else { &[] };
    let d = Daemon::start_inner(extra, Some(&config), true);
    wait_port(port);
    (d, port)
}

fn tls_uri(port: u16, pki: &Pki, client: &str) -> String {
    format!(
        "test+tls://127.0.0.1:{port}/default?pkipath={}",
        pki.path(client).display()
    )
}

#[test]
fn virsh_over_tls_with_client_certificates() {
    if no_openssl() || no_virsh() {
        return;
    }
    let pki = Pki::new();
    let (d, port) = tls_daemon(&pki, false);

    // the allowed client manages domains
    let uri = tls_uri(port, &pki, "client1");
    let o = virsh(&uri, &["list", "--all"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("test") && out.contains("running"), "{out}");
    let o = virsh(&uri, &["suspend", "test"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = virsh(&uri, &["domstate", "test"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("paused"),
        "{}",
        text(&o)
    );

    // a client of the same CA whose DN is not in tls_allowed_dn_list
    let o = virsh(&tls_uri(port, &pki, "client2"), &["list", "--all"]);
    assert!(!o.status.success(), "client2 was let in: {}", text(&o));
    let log = d.log_with(&[
        "DN 'C=GB,ST=London,L=London,O=Libvirt Project,CN=client2' is not in tls_allowed_dn_list",
    ]);
    assert!(
        log.contains("DN 'C=GB,ST=London,L=London,O=Libvirt Project,CN=client2' is not in tls_allowed_dn_list"),
        "daemon log: {log}"
    );

    // a certificate of another CA (the client's own sanity check off, so the server
    // is the one that refuses it; gnutls offers no certificate the server's CA list does
    // not name, and gives up)
    let o = virsh(
        &format!("{}&no_sanity=1", tls_uri(port, &pki, "stranger")),
        &["list", "--all"],
    );
    assert!(
        !o.status.success(),
        "a foreign CA's client was let in: {}",
        text(&o)
    );
    let log = d.log_with(&["tls handshake failed"]);
    assert!(log.contains("tls handshake failed"), "daemon log: {log}");
    // rustls (rvirt) offers it anyway: the daemon refuses the issuer
    let o = Command::new(rvirt_tests::built("rvirt"))
        .args(["-c", &tls_uri(port, &pki, "stranger"), "list", "--all"])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "a foreign CA's client was let in: {}",
        text(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refused the TLS session"), "{}", text(&o));
    let log = d.log_with(&["UnknownIssuer"]);
    assert!(log.contains("UnknownIssuer"), "daemon log: {log}");

    // the rvirt CLI through the host library's TLS transport
    let o = Command::new(rvirt_tests::built("rvirt"))
        .args(["-c", &uri, "list", "--all"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("test"),
        "{}",
        text(&o)
    );
    let o = Command::new(rvirt_tests::built("rvirt"))
        .args(["-c", &tls_uri(port, &pki, "client2"), "list", "--all"])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "rvirt as client2 was let in: {}",
        text(&o)
    );
    // no_verify=1 skips the server check only: the client certificate still counts
    let o = Command::new(rvirt_tests::built("rvirt"))
        .args(["-c", &format!("{uri}&no_verify=1"), "list", "--all"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn tls_refuses_a_client_without_certificate() {
    if no_openssl() || missing("python3", Command::new(PYTHON).arg("--version")) {
        return;
    }
    let pki = Pki::new();
    // started by --listen: TLS on, as libvirtd's listen_tls default under --listen
    let (d, port) = tls_daemon(&pki, true);
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="127.0.0.1")
print("version", s.version())
try:
    s.sendall(b"\0\0\0\x1c" + b"\0" * 24)
    data = s.recv(100)
    print("answered" if data else "closed")
except (ssl.SSLError, ConnectionError) as e:
    print("refused", e)
"#;
    let o = Command::new(PYTHON)
        .args(["-c", script, &port.to_string()])
        .arg(pki.path("cacert.pem"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    // the server certificate is fine for a plain TLS client, the daemon then refuses it
    assert!(out.contains("version TLSv1.3"), "{}", text(&o));
    assert!(
        !out.contains("answered"),
        "a client without certificate was answered: {out}"
    );
    let log = d.log_with(&["tls handshake failed", "certificate"]);
    assert!(
        log.contains("tls handshake failed") && log.contains("certificate"),
        "daemon log: {log}"
    );
}

#[test]
fn python_libvirt_over_tls() {
    if no_openssl()
        || missing(
            "python3-libvirt",
            Command::new(PYTHON).args(["-c", "import libvirt"]),
        )
    {
        return;
    }
    let pki = Pki::new();
    let (_d, port) = tls_daemon(&pki, false);
    let script = r#"
import sys, libvirt
conn = libvirt.open(sys.argv[1])
assert conn.isSecure() == 1
assert conn.isEncrypted() in (0, 1, -1)
names = [d.name() for d in conn.listAllDomains()]
assert "test" in names, names
xml = ("<domain type='test'><name>tlsvm</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
       "<os><type arch='x86_64'>hvm</type></os></domain>")
dom = conn.defineXML(xml)
dom.create()
assert dom.isActive() == 1
dom.destroy()
dom.undefine()
conn.close()
print("ok")
"#;
    let o = Command::new(PYTHON)
        .args(["-c", script, &tls_uri(port, &pki, "client1")])
        .output()
        .unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ok"),
        "{}",
        text(&o)
    );
}

#[test]
fn plain_tcp_with_auth_tcp_none() {
    if no_virsh() {
        return;
    }
    let port = free_port();
    let d = Daemon::start_logged_with_config(&format!(
        "listen_tcp = 1\nauth_tcp = \"none\"\ntcp_port = \"{port}\"\nlisten_addr = \"127.0.0.1\"\n"
    ));
    wait_port(port);
    for uri in [
        format!("test+tcp://127.0.0.1:{port}/default"),
        format!("qemu+tcp://127.0.0.1:{port}/system"),
    ] {
        let test = uri.starts_with("test");
        let o = virsh(&uri, &["list", "--all"]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            !test || String::from_utf8_lossy(&o.stdout).contains("test"),
            "{}",
            text(&o)
        );
        let o = virsh(&uri, &["uri"]);
        assert!(o.status.success(), "{}", text(&o));
        let o = Command::new(rvirt_tests::built("rvirt"))
            .args(["-c", &uri, "list", "--all"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            !test || String::from_utf8_lossy(&o.stdout).contains("test"),
            "{}",
            text(&o)
        );
    }
    let log = d.log_with(&["neither authenticated nor encrypted"]);
    assert!(log.contains("neither authenticated nor encrypted"), "{log}");
}

#[test]
fn listen_tcp_without_auth_tcp_none_refuses_to_start() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/rvirt")).unwrap();
    let run = |config: &str| {
        std::fs::write(root.path().join("etc/rvirt/rvirtd.toml"), config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_rvirtd"))
            .arg("--root")
            .arg(root.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("rvirtd started with {config:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    let o = run("listen_tcp = 1\n");
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("auth_tcp = \"sasl\" is not supported") && err.contains("auth_tcp = \"none\""),
        "{err}"
    );
    let o = run("listen_tcp = 1\nauth_tcp = \"polkit\"\n");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("auth_tcp = \"polkit\""),
        "{}",
        text(&o)
    );
    // TLS with missing certificates names the file
    let o = run(&format!("listen_tls = 1\ntls_port = \"{}\"\n", free_port()));
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let want = root.path().join("etc/pki/libvirt/servercert.pem");
    assert!(err.contains(&want.display().to_string()), "{err}");
}

#[test]
fn tls_no_verify_certificate_accepts_any_client() {
    if no_openssl() || no_virsh() {
        return;
    }
    let pki = Pki::new();
    let port = free_port();
    let d = Daemon::start_logged_with_config(&format!(
        "listen_tls = 1\ntls_port = {port}\nlisten_addr = \"127.0.0.1\"\n{}tls_no_verify_certificate = 1\ntls_allowed_dn_list = [\"{ALLOWED_DN}\"]\n",
        pki.server_config()
    ));
    wait_port(port);
    // another CA's client and a name not on the list both get in
    for client in ["stranger", "client2"] {
        let o = Command::new(rvirt_tests::built("rvirt"))
            .args(["-c", &tls_uri(port, &pki, client), "list", "--all"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{client}: {}", text(&o));
    }
    let log = d.log_with(&["tls_no_verify_certificate"]);
    assert!(log.contains("tls_no_verify_certificate"), "{log}");
}

/// Volume streams over TLS, both ways, through the host library's TLS transport and
/// through virsh: megabytes in flight in the relay and in rustls' records.
#[test]
fn volume_streams_over_tls() {
    if no_openssl() || no_virsh() {
        return;
    }
    let plugins = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        plugins.join("librvirt_storage_dir.so").is_file(),
        "the storage-dir plugin is missing next to rvirtd: run `cargo build --workspace` first"
    );
    let pki = Pki::new();
    let (d, port) = tls_daemon(&pki, false);
    let target = d.root.path().join("pools/p");
    let uri = format!(
        "qemu+tls://127.0.0.1:{port}/system?pkipath={}",
        pki.path("client1").display()
    );
    for args in [
        &[
            "pool-define-as",
            "p",
            "dir",
            "--target",
            target.to_str().unwrap(),
        ][..],
        &["pool-build", "p"],
        &["pool-start", "p"],
        &["vol-create-as", "p", "a.raw", "8M"],
        &["vol-create-as", "p", "b.raw", "8M"],
    ] {
        let o = virsh(&uri, args);
        assert!(o.status.success(), "virsh {args:?}: {}", text(&o));
    }
    // pseudo-random bytes, so a reordered or dropped record shows
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..8 * 1024 * 1024 / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    let runtime = rvirt_host::Runtime::with_search_path(vec![plugins]);
    let conn = runtime.open(&uri, false).unwrap();
    let vol = conn
        .lookup_storage_pool_by_name("p")
        .unwrap()
        .lookup_vol_by_name("a.raw")
        .unwrap();
    let mut up = vol.upload(0, 0, 0).unwrap();
    for c in data.chunks(300_000) {
        up.send(c).unwrap();
    }
    up.finish().unwrap();
    assert!(std::fs::read(target.join("a.raw")).unwrap() == data);
    let mut down = vol.download(0, 0, 0).unwrap();
    let mut got = Vec::new();
    loop {
        let c = down.recv(100_000).unwrap();
        if c.is_empty() {
            break;
        }
        got.extend_from_slice(&c);
    }
    down.finish().unwrap();
    assert!(got == data, "the download differs ({} bytes)", got.len());
    // virsh: upload a file to b.raw, download it again
    let file = d.root.path().join("in.bin");
    std::fs::write(&file, &data).unwrap();
    let out = d.root.path().join("out.bin");
    for args in [
        &["vol-upload", "--pool", "p", "b.raw", file.to_str().unwrap()][..],
        &[
            "vol-download",
            "--pool",
            "p",
            "b.raw",
            out.to_str().unwrap(),
        ],
    ] {
        let o = virsh(&uri, args);
        assert!(o.status.success(), "virsh {args:?}: {}", text(&o));
    }
    assert!(std::fs::read(&out).unwrap() == data);
}

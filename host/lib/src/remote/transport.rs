//! The byte streams under a remote connection: a unix socket, plain TCP
//! (`qemu+tcp://host/system`, port 16509) or TLS with x509 certificates
//! (`qemu+tls://host/system?pkipath=DIR`, port 16514) as libvirt's client lays them out:
//! `cacert.pem`, `clientcert.pem` and `clientkey.pem` in `pkipath`, else
//! `/etc/pki/CA/cacert.pem`, `/etc/pki/libvirt/clientcert.pem` and
//! `/etc/pki/libvirt/private/clientkey.pem` (for a user other than root, the same names
//! in `~/.pki/libvirt/` where they exist). `no_verify=1` skips the server certificate check.

use crate::uri::ConnectUri;
use crate::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConnection, DigitallySignedStruct, SignatureScheme};
use rvirt_plugin_api::{ErrorCode, ErrorDomain};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// libvirt's plain TCP port.
pub const TCP_PORT: u16 = 16509;
/// libvirt's TLS port.
pub const TLS_PORT: u16 = 16514;

/// The socket under a connection, kept to shut it down.
pub(super) enum Socket {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Socket {
    pub(super) fn shutdown(&self) {
        let _ = match self {
            Socket::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Socket::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

/// A connected stream: what the reader thread reads, what callers write, the socket.
pub(super) struct Parts {
    pub reader: Box<dyn Read + Send>,
    pub writer: Box<dyn Write + Send>,
    pub socket: Socket,
}

fn no_connect(message: String) -> Error {
    Error::driver(ErrorCode::NoConnect, ErrorDomain::Remote, message)
}

/// A unix socket.
pub(super) fn unix(stream: UnixStream) -> Result<Parts> {
    let clone = |s: &UnixStream| {
        s.try_clone()
            .map_err(|e| super::rpc_error(format!("cannot clone the socket: {e}")))
    };
    Ok(Parts {
        reader: Box::new(clone(&stream)?),
        socket: Socket::Unix(clone(&stream)?),
        writer: Box::new(stream),
    })
}

/// Connects to the URI's host on `default_port` (or the URI's port).
fn tcp_connect(uri: &ConnectUri, default_port: u16) -> Result<(String, TcpStream)> {
    let host = uri.host.clone().unwrap_or_else(|| "localhost".into());
    let port = uri.port.unwrap_or(default_port);
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addrs = (bare.as_str(), port).to_socket_addrs().map_err(|e| {
        no_connect(format!(
            "cannot resolve '{host}' of '{}': {e}",
            uri.original
        ))
    })?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(30)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok((bare, s));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(no_connect(format!(
        "cannot connect to {host} port {port}: {}",
        last.map_or_else(|| "no address".to_string(), |e| e.to_string())
    )))
}

/// Plain TCP (`+tcp`).
pub(super) fn tcp(uri: &ConnectUri) -> Result<Parts> {
    let (_, stream) = tcp_connect(uri, TCP_PORT)?;
    let clone = |s: &TcpStream| {
        s.try_clone()
            .map_err(|e| super::rpc_error(format!("cannot clone the socket: {e}")))
    };
    Ok(Parts {
        reader: Box::new(clone(&stream)?),
        socket: Socket::Tcp(clone(&stream)?),
        writer: Box::new(stream),
    })
}

/// Where the client's CA certificate, certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl PkiFiles {
    /// `pkipath=DIR`, else libvirt's default locations for this user (`home`: `Some` for
    /// a user other than root).
    pub fn locate(pkipath: Option<&str>, home: Option<&Path>) -> PkiFiles {
        if let Some(dir) = pkipath {
            let dir = Path::new(dir);
            return PkiFiles {
                ca: dir.join("cacert.pem"),
                cert: dir.join("clientcert.pem"),
                key: dir.join("clientkey.pem"),
            };
        }
        let pick = |user: &str, system: &str| {
            home.map(|h| h.join(".pki/libvirt").join(user))
                .filter(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from(system))
        };
        PkiFiles {
            ca: pick("cacert.pem", "/etc/pki/CA/cacert.pem"),
            cert: pick("clientcert.pem", "/etc/pki/libvirt/clientcert.pem"),
            key: pick("clientkey.pem", "/etc/pki/libvirt/private/clientkey.pem"),
        }
    }
}

fn pem_error(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    no_connect(format!("cannot read the {what} {}: {e}", path.display()))
}

fn certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let list = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(what, path, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if list.is_empty() {
        return Err(pem_error(what, path, "no certificate in it"));
    }
    Ok(list)
}

/// The client PKI files for `uri` and this user.
fn files_of(uri: &ConnectUri) -> PkiFiles {
    let root = super::running_as_root();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    PkiFiles::locate(
        uri.param("pkipath"),
        if root { None } else { home.as_deref() },
    )
}

/// The rustls client setup for `uri`.
fn client_config(uri: &ConnectUri) -> Result<rustls::ClientConfig> {
    let files = files_of(uri);
    let no_verify = matches!(uri.param("no_verify"), Some("1"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| no_connect(format!("cannot set up TLS: {e}")))?;
    let builder = if no_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(
                provider.signature_verification_algorithms,
            )))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs("CA certificate", &files.ca)? {
            roots
                .add(c)
                .map_err(|e| pem_error("CA certificate", &files.ca, e))?;
        }
        builder.with_root_certificates(roots)
    };
    let chain = certs("client certificate", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| pem_error("client key", &files.key, e))?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| pem_error("client certificate", &files.cert, e))
}

/// `no_verify=1`: any server certificate (the handshake signatures are still checked).
#[derive(Debug)]
struct AnyServer(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// TLS (`+tls`, or a host without a transport): the handshake happens here, so a bad
/// server certificate fails the open with rustls' reason.
pub(super) fn tls(uri: &ConnectUri) -> Result<Parts> {
    let config = client_config(uri)?;
    let (host, mut stream) = tcp_connect(uri, TLS_PORT)?;
    let name = ServerName::try_from(host.clone())
        .map_err(|e| no_connect(format!("invalid host name '{host}' for TLS: {e}")))?;
    let mut conn = ClientConnection::new(Arc::new(config), name)
        .map_err(|e| no_connect(format!("cannot start TLS with {host}: {e}")))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    while conn.is_handshaking() {
        conn.complete_io(&mut stream)
            .map_err(|e| no_connect(format!("TLS handshake with {host} failed: {e}")))?;
    }
    let _ = stream.set_read_timeout(None);
    let clone = |s: &TcpStream| {
        s.try_clone()
            .map_err(|e| super::rpc_error(format!("cannot clone the socket: {e}")))
    };
    let shared = Arc::new(TlsShared {
        conn: Mutex::new(conn),
        tcp: clone(&stream)?,
    });
    let mut reader = TlsReader {
        shared: Arc::clone(&shared),
        tcp: clone(&stream)?,
        raw: vec![0; 64 * 1024],
        start: 0,
        end: 0,
    };
    // libvirt's daemons confirm an accepted client certificate with one byte, 1, and
    // close the connection otherwise
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut confirm = [0u8];
    match reader.read(&mut confirm) {
        Ok(1) if confirm[0] == 1 => {}
        Ok(_) => {
            return Err(no_connect(format!(
                "the daemon at {host} refused the client certificate {} (or this address)",
                files_of(uri).cert.display()
            )));
        }
        Err(e) => {
            return Err(no_connect(format!(
                "the daemon at {host} refused the TLS session (client certificate {}): {e}",
                files_of(uri).cert.display()
            )));
        }
    }
    let _ = stream.set_read_timeout(None);
    Ok(Parts {
        reader: Box::new(reader),
        writer: Box::new(TlsWriter(shared)),
        socket: Socket::Tcp(stream),
    })
}

/// The TLS state both directions share: the reader thread blocks on the socket without
/// it and takes it only to decrypt what arrived.
struct TlsShared {
    conn: Mutex<ClientConnection>,
    tcp: TcpStream,
}

impl TlsShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ClientConnection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes out what the connection has to send (records, alerts).
    fn flush(&self, conn: &mut ClientConnection) -> io::Result<()> {
        let mut tcp = &self.tcp;
        while conn.wants_write() {
            conn.write_tls(&mut tcp)?;
        }
        Ok(())
    }
}

struct TlsWriter(Arc<TlsShared>);

impl Write for TlsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut conn = self.0.lock();
        let n = conn.writer().write(buf)?;
        self.0.flush(&mut conn)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut conn = self.0.lock();
        self.0.flush(&mut conn)
    }
}

struct TlsReader {
    shared: Arc<TlsShared>,
    tcp: TcpStream,
    /// Received bytes not yet given to rustls: `raw[start..end]`.
    raw: Vec<u8>,
    start: usize,
    end: usize,
}

impl Read for TlsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let mut conn = self.shared.lock();
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if self.start < self.end {
                    let mut pending = &self.raw[self.start..self.end];
                    let before = pending.len();
                    conn.read_tls(&mut pending)?;
                    self.start += before - pending.len();
                    let state = conn.process_new_packets();
                    // an alert we owe the peer goes out even when processing failed
                    let flushed = self.shared.flush(&mut conn);
                    state.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    flushed?;
                    continue;
                }
            }
            let n = self.tcp.read(&mut self.raw)?;
            if n == 0 {
                return Ok(0);
            }
            (self.start, self.end) = (0, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pki_locations() {
        let f = PkiFiles::locate(Some("/p"), None);
        assert_eq!(f.cert, Path::new("/p/clientcert.pem"));
        assert_eq!(f.key, Path::new("/p/clientkey.pem"));
        let f = PkiFiles::locate(None, None);
        assert_eq!(f.ca, Path::new("/etc/pki/CA/cacert.pem"));
        assert_eq!(f.key, Path::new("/etc/pki/libvirt/private/clientkey.pem"));
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".pki/libvirt")).unwrap();
        std::fs::write(home.path().join(".pki/libvirt/clientcert.pem"), "").unwrap();
        let f = PkiFiles::locate(None, Some(home.path()));
        assert_eq!(f.cert, home.path().join(".pki/libvirt/clientcert.pem"));
        assert_eq!(f.ca, Path::new("/etc/pki/CA/cacert.pem"));
    }

    #[test]
    fn missing_files_name_the_path() {
        let uri = ConnectUri::parse("test+tls://127.0.0.1:1/default?pkipath=/nonexistent").unwrap();
        let e = tls(&uri).err().expect("no pki, no connection").to_string();
        assert!(e.contains("/nonexistent/cacert.pem"), "{e}");
    }
}

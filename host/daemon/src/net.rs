//! The TCP and TLS transports (`listen_tcp`, `listen_tls`): libvirt's remote protocol over
//! TCP, plain or in TLS with x509 client certificates, as libvirtd serves it on ports
//! 16509 and 16514. A client's certificate must chain to `ca_file` and, when
//! `tls_allowed_dn_list` is set, its subject DN must match one of the patterns. After the
//! handshake the connection carries the same RPC stream as the unix socket, read-write.

use crate::config::{Config, Layout};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors while setting up the TCP and TLS sockets.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot read {what} {path}: {source}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate in {what} {path}")]
    NoCert { what: &'static str, path: PathBuf },
    #[error("invalid TLS setup ({files}): {source}")]
    Tls {
        /// `cert_file X, key_file Y`.
        files: String,
        #[source]
        source: Box<rustls::Error>,
    },
    #[error("invalid ca_file or crl_file {ca}: {reason}")]
    Verifier { ca: PathBuf, reason: String },
    #[error("invalid listen_addr '{addr}': {source}")]
    Addr {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
}

/// One TCP socket, plain or TLS.
pub struct NetListener {
    pub addr: SocketAddr,
    pub tls: Option<TlsServer>,
    pub listener: tokio::net::TcpListener,
}

/// What a TLS socket needs per connection.
#[derive(Clone)]
pub struct TlsServer {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// `tls_allowed_dn_list`; `None` accepts every verified certificate.
    pub allowed: Option<Arc<Vec<String>>>,
}

/// Binds the TCP/TLS sockets the configuration (and `--listen`) asks for.
pub fn bind_all(
    config: &Config,
    layout: &Layout,
    listen: bool,
) -> anyhow::Result<Vec<NetListener>> {
    let mut out = Vec::new();
    for (port, tls) in config.network_sockets(listen)? {
        let tls = if tls {
            Some(TlsServer {
                acceptor: tokio_rustls::TlsAcceptor::from(server_config(config, layout)?),
                // tls_no_verify_certificate skips every check of the client's certificate,
                // its DN too, as in libvirt
                allowed: config
                    .tls_allowed_dn_list
                    .clone()
                    .filter(|_| config.tls_no_verify_certificate != Some(true))
                    .map(Arc::new),
            })
        } else {
            tracing::warn!(
                port,
                "listen_tcp with auth_tcp = \"none\": clients on TCP port {port} are neither authenticated nor encrypted"
            );
            None
        };
        for addr in addresses(config.listen_addr.as_deref(), port)? {
            let listener = bind(addr)?;
            out.push(NetListener {
                addr: listener.local_addr().unwrap_or(addr),
                tls: tls.clone(),
                listener,
            });
        }
    }
    Ok(out)
}

/// The addresses to bind: `listen_addr` resolved, or every address (`[::]`, which takes
/// IPv4 too; `0.0.0.0` where IPv6 is off).
fn addresses(listen_addr: Option<&str>, port: u16) -> Result<Vec<SocketAddr>, NetError> {
    match listen_addr {
        Some(a) => {
            let host = a.trim_start_matches('[').trim_end_matches(']');
            let addrs: Vec<SocketAddr> = (host, port)
                .to_socket_addrs()
                .map_err(|source| NetError::Addr {
                    addr: a.into(),
                    source,
                })?
                .collect();
            // one socket per address family is enough: the first of each
            let mut picked: Vec<SocketAddr> = Vec::new();
            for s in addrs {
                if !picked.iter().any(|p| p.is_ipv4() == s.is_ipv4()) {
                    picked.push(s);
                }
            }
            Ok(picked)
        }
        None => {
            let any6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
            if std::net::TcpListener::bind(any6).is_ok() {
                Ok(vec![any6])
            } else {
                Ok(vec![SocketAddr::from((
                    std::net::Ipv4Addr::UNSPECIFIED,
                    port,
                ))])
            }
        }
    }
}

fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, NetError> {
    let err = |source| NetError::Bind {
        addr: addr.to_string(),
        source,
    };
    let l = std::net::TcpListener::bind(addr).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    tokio::net::TcpListener::from_std(l).map_err(err)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The file `key` of the configuration, or libvirt's default under the layout's root.
fn file(configured: &Option<PathBuf>, layout: &Layout, default: &str) -> PathBuf {
    configured.clone().unwrap_or_else(|| layout.pki(default))
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let pem = |source| NetError::Pem {
        what,
        path: path.into(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(NetError::NoCert {
            what,
            path: path.into(),
        });
    }
    Ok(certs)
}

/// The rustls server setup: TLS 1.2 and 1.3, the server certificate, and client
/// certificates required and verified against the CA (unless `tls_no_verify_certificate`).
pub fn server_config(
    config: &Config,
    layout: &Layout,
) -> Result<Arc<rustls::ServerConfig>, NetError> {
    let cert = file(&config.cert_file, layout, "etc/pki/libvirt/servercert.pem");
    let key = file(
        &config.key_file,
        layout,
        "etc/pki/libvirt/private/serverkey.pem",
    );
    let ca = file(&config.ca_file, layout, "etc/pki/CA/cacert.pem");
    let crl = config.crl_file.clone();
    let crl_default = layout.pki("etc/pki/CA/cacrl.pem");
    let chain = read_certs("cert_file", &cert)?;
    let private = PrivateKeyDer::from_pem_file(&key).map_err(|source| NetError::Pem {
        what: "key_file",
        path: key.clone(),
        source,
    })?;
    let tls_err = |source| NetError::Tls {
        files: format!("cert_file {}, key_file {}", cert.display(), key.display()),
        source: Box::new(source),
    };
    let provider = provider();
    let verifier: Arc<dyn ClientCertVerifier> = if config.tls_no_verify_certificate == Some(true) {
        tracing::warn!(
            "tls_no_verify_certificate: TLS clients are accepted without a valid certificate"
        );
        Arc::new(AnyClient(provider.signature_verification_algorithms))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for c in read_certs("ca_file", &ca)? {
            roots.add(c).map_err(|e| NetError::Verifier {
                ca: ca.clone(),
                reason: e.to_string(),
            })?;
        }
        let crl_path = crl.or_else(|| crl_default.exists().then_some(crl_default));
        let mut crls = Vec::new();
        if let Some(path) = &crl_path {
            let pem = |source| NetError::Pem {
                what: "crl_file",
                path: path.clone(),
                source,
            };
            crls = CertificateRevocationListDer::pem_file_iter(path)
                .map_err(pem)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(pem)?;
        }
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .with_crls(crls)
            .build()
            .map_err(|e| NetError::Verifier {
                ca: ca.clone(),
                reason: e.to_string(),
            })?
    };
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private)
        .map_err(tls_err)?;
    // no TLS 1.3 session tickets: libvirt's client reads its one confirmation byte as the
    // first record after the handshake, and a ticket there makes that read fail (EAGAIN)
    server.send_tls13_tickets = 0;
    Ok(Arc::new(server))
}

/// `tls_no_verify_certificate = 1`: any client, with or without a certificate (the
/// handshake signatures are still checked).
#[derive(Debug)]
struct AnyClient(WebPkiSupportedAlgorithms);

impl ClientCertVerifier for AnyClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }
}

/// Whether a client whose certificate has `subject` (DER of the certificate) may connect:
/// `Ok(dn)` names it, `Err(dn)` says why not.
pub fn check_dn(
    cert: Option<&CertificateDer<'_>>,
    allowed: Option<&[String]>,
) -> Result<String, String> {
    let Some(allowed) = allowed else {
        return Ok(cert
            .and_then(|c| subject_dn(c).ok())
            .map(|d| d.join(","))
            .unwrap_or_default());
    };
    let Some(cert) = cert else {
        return Err("no client certificate".into());
    };
    let rdns = subject_dn(cert).map_err(|e| format!("unreadable client certificate: {e}"))?;
    let forward = rdns.join(",");
    // gnutls (libvirtd) writes the DN in certificate order or, newer ones, in RFC 4514's
    // reversed order: a pattern in either order matches
    let reversed = rdns.iter().rev().cloned().collect::<Vec<_>>().join(",");
    if allowed
        .iter()
        .any(|p| wildcard_match(p, &forward) || wildcard_match(p, &reversed))
    {
        Ok(forward)
    } else {
        Err(format!(
            "client certificate DN '{forward}' is not in tls_allowed_dn_list"
        ))
    }
}

/// A glob match as libvirt's DN list uses (`*` any run, `?` one character).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The subject of a DER certificate as RDN strings in certificate order
/// (`["C=GB", "ST=London", "O=Libvirt Project", "CN=client"]`), values escaped as RFC 4514.
pub fn subject_dn(cert: &[u8]) -> Result<Vec<String>, &'static str> {
    let (tag, cert, _) = der(cert)?;
    if tag != 0x30 {
        return Err("not a certificate");
    }
    let (_, mut tbs, _) = der(cert)?;
    // [0] version, serial, signature algorithm, issuer, validity, then the subject
    let (tag, _, rest) = der(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
    }
    for _ in 0..4 {
        tbs = der(tbs)?.2;
    }
    let (tag, mut name, _) = der(tbs)?;
    if tag != 0x30 {
        return Err("no subject");
    }
    let mut out = Vec::new();
    while !name.is_empty() {
        let (tag, mut set, rest) = der(name)?;
        name = rest;
        if tag != 0x31 {
            return Err("bad relative distinguished name");
        }
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (_, mut atv, rest) = der(set)?;
            set = rest;
            let (tag, oid, rest) = der(atv)?;
            if tag != 0x06 {
                return Err("bad attribute type");
            }
            atv = rest;
            let (vtag, value, _) = der(atv)?;
            parts.push(format!(
                "{}={}",
                attribute_name(oid),
                escape(&string_value(vtag, value))
            ));
        }
        out.push(parts.join("+"));
    }
    Ok(out)
}

/// One DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    const SHORT: &str = "truncated certificate";
    let (&tag, rest) = input.split_first().ok_or(SHORT)?;
    let (&first, mut rest) = rest.split_first().ok_or(SHORT)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad length in certificate");
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(SHORT);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn attribute_name(oid: &[u8]) -> String {
    let dotted = oid_text(oid);
    let short = match dotted.as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "EMAIL",
        _ => return dotted,
    };
    short.to_string()
}

fn oid_text(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc = 0u64;
    for b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn string_value(tag: u8, value: &[u8]) -> String {
    match tag {
        // BMPString: UTF-16BE
        0x1e => char::decode_utf16(
            value
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])),
        )
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect(),
        _ => String::from_utf8_lossy(value).into_owned(),
    }
}

/// RFC 4514 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("C=GB,CN=*", "C=GB,CN=client"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("C=GB,CN=cl?ent", "C=GB,CN=client"));
        assert!(!wildcard_match("C=GB,CN=client", "C=GB,CN=client2"));
        assert!(wildcard_match("*CN=client*", "O=x,CN=client2"));
        assert!(!wildcard_match("C=FR,*", "C=GB,CN=client"));
    }

    /// A certificate made by `openssl req -x509 -multivalue-rdn -subj "/C=GB/ST=London/
    /// O=Acme\, Inc/OU=ops+CN=client one/emailAddress=ops@example.org"`.
    const DN_CERT: &str = include_str!("testdata/dn-cert.pem");

    #[test]
    fn subject_of_a_certificate() {
        let der = CertificateDer::from_pem_slice(DN_CERT.as_bytes()).unwrap();
        let rdns = subject_dn(&der).unwrap();
        assert_eq!(
            rdns.join(","),
            "C=GB,ST=London,O=Acme\\, Inc,OU=ops+CN=client one,EMAIL=ops@example.org"
        );
        let allowed = |p: &str| check_dn(Some(&der), Some(&[p.to_string()]));
        assert!(allowed("C=GB,ST=London,O=Acme\\, Inc,*").is_ok());
        // the reversed (RFC 4514) order matches too
        assert!(allowed("EMAIL=ops@example.org,OU=ops+CN=client one,*,C=GB").is_ok());
        let e = allowed("C=GB,ST=Paris,*").unwrap_err();
        assert!(e.contains("is not in tls_allowed_dn_list"), "{e}");
        assert!(check_dn(None, Some(&[])).is_err());
        assert!(check_dn(None, None).is_ok());
    }

    #[test]
    fn escapes_and_oids() {
        assert_eq!(escape("Acme, Inc"), "Acme\\, Inc");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(oid_text(&[0x55, 0x04, 0x03]), "2.5.4.3");
        assert_eq!(
            oid_text(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
            "1.2.840.113549.1.9.1"
        );
        assert!(subject_dn(&[0x30, 0x05, 0x01]).is_err());
    }
}

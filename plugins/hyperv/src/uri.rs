//! The connection URI (`hyperv://[user@]host[:port]/[?transport=https|http&no_verify=0|1
//! &authfile=PATH]`) and libvirt's credentials file (`auth.conf`).
//!
//! As libvirt's hyperv driver: HTTPS on port 5986 by default, HTTP (port 5985) with
//! `transport=http`, the user `administrator` unless the URI or the credentials file names
//! one. libvirt asks its client's auth callback for the password; the plugin API has no
//! callback, so the password comes from `auth.conf` (`[auth-hyperv-HOST]` or
//! `[auth-hyperv-default]`), found where libvirt looks for it.

use std::path::PathBuf;

/// Errors of the URI and the credentials.
#[derive(Debug, thiserror::Error)]
pub enum UriError {
    #[error("'{0}' is not a valid uri: {1}")]
    Syntax(String, String),
    #[error("scheme '{0}' is not served by the hyperv driver")]
    Scheme(String),
    #[error("uri '{0}' has no host: the hyperv driver connects to a remote Hyper-V server")]
    NoHost(String),
    #[error("uri '{0}' has a path: the hyperv driver takes none")]
    Path(String),
    #[error("query parameter '{0}' has unexpected value '{1}' ({2})")]
    Param(String, String, &'static str),
    #[error("unknown query parameter '{0}' in the uri")]
    UnknownParam(String),
    #[error(
        "no password for {user}@{host}: the hyperv driver reads it from libvirt's auth.conf ([auth-hyperv-{host}] or [auth-hyperv-default] naming a [credentials-NAME] group with password=; looked in {looked})"
    )]
    NoPassword {
        user: String,
        host: String,
        looked: String,
    },
    #[error("cannot read '{0}': {1}")]
    Read(String, String),
}

/// The default port of WS-Management over HTTPS.
pub const HTTPS_PORT: u16 = 5986;
/// The default port of WS-Management over HTTP.
pub const HTTP_PORT: u16 = 5985;

/// A parsed connection URI.
#[derive(Debug, Clone)]
pub struct HypervUri {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// `https` (the default) or `http`.
    pub transport: String,
    /// Accept any server certificate (a self-signed WinRM listener).
    pub no_verify: bool,
    pub auth_file: Option<PathBuf>,
}

impl HypervUri {
    pub fn parse(uri: &str) -> Result<HypervUri, UriError> {
        let u = url::Url::parse(uri).map_err(|e| UriError::Syntax(uri.into(), e.to_string()))?;
        if u.scheme() != "hyperv" {
            return Err(UriError::Scheme(u.scheme().into()));
        }
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| UriError::NoHost(uri.into()))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        if !u.path().trim_matches('/').is_empty() {
            return Err(UriError::Path(uri.into()));
        }
        let user = (!u.username().is_empty()).then(|| {
            url::form_urlencoded::parse(u.username().as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default()
        });
        let mut out = HypervUri {
            user,
            host,
            port: u.port(),
            transport: "https".into(),
            no_verify: false,
            auth_file: None,
        };
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "transport" => {
                    if v != "http" && v != "https" {
                        return Err(UriError::Param(
                            k.into(),
                            v.into(),
                            "expected 'http' or 'https'",
                        ));
                    }
                    out.transport = v.into_owned();
                }
                "no_verify" => {
                    out.no_verify = match v.as_ref() {
                        "0" => false,
                        "1" => true,
                        _ => return Err(UriError::Param(k.into(), v.into(), "expected 0 or 1")),
                    }
                }
                "authfile" => out.auth_file = Some(PathBuf::from(v.into_owned())),
                // libvirt's own client-side parameters, meaningless here
                "no_tty" | "pkipath" => {}
                _ => return Err(UriError::UnknownParam(k.into_owned())),
            }
        }
        Ok(out)
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.transport == "http" {
            HTTP_PORT
        } else {
            HTTPS_PORT
        })
    }

    /// `https://host:5986/wsman`: the WS-Management endpoint, also the `wsa:To` of every
    /// request.
    pub fn endpoint(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{host}:{}/wsman", self.transport, self.port())
    }

    /// The auth file libvirt would read: `?authfile=`, `$LIBVIRT_AUTH_FILE`,
    /// `$XDG_CONFIG_HOME/libvirt/auth.conf` (`~/.config/…`), `/etc/libvirt/auth.conf`.
    pub fn auth_files(&self) -> Vec<PathBuf> {
        if let Some(p) = &self.auth_file {
            return vec![p.clone()];
        }
        if let Some(p) = std::env::var_os("LIBVIRT_AUTH_FILE").filter(|p| !p.is_empty()) {
            return vec![PathBuf::from(p)];
        }
        let mut v = Vec::new();
        if let Some(c) = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        {
            v.push(c.join("libvirt/auth.conf"));
        }
        v.push(PathBuf::from("/etc/libvirt/auth.conf"));
        v
    }

    /// The user name (URI, then auth.conf, then libvirt's default `administrator`) and
    /// the password (auth.conf).
    pub fn credentials(&self) -> Result<(String, String), UriError> {
        let files = self.auth_files();
        let conf = match files.iter().find(|p| p.is_file()) {
            Some(p) => Some(AuthConf::parse(
                &std::fs::read_to_string(p)
                    .map_err(|e| UriError::Read(p.display().to_string(), e.to_string()))?,
            )),
            None => None,
        };
        let lookup = |key: &str| {
            conf.as_ref()
                .and_then(|c| c.lookup("hyperv", &self.host, key))
        };
        let user = self
            .user
            .clone()
            .or_else(|| lookup("username"))
            .unwrap_or_else(|| "administrator".into());
        let password = lookup("password").ok_or_else(|| UriError::NoPassword {
            user: user.clone(),
            host: self.host.clone(),
            looked: files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        Ok((user, password))
    }
}

/// libvirt's `auth.conf`: an ini file of `[credentials-NAME]` groups (`username=`,
/// `password=`) and `[auth-SERVICE-HOST]` / `[auth-SERVICE-default]` groups naming one
/// (`credentials=NAME`).
#[derive(Debug, Default)]
pub struct AuthConf {
    groups: Vec<(String, Vec<(String, String)>)>,
}

impl AuthConf {
    pub fn parse(text: &str) -> AuthConf {
        let mut c = AuthConf::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(g) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                c.groups.push((g.trim().to_string(), Vec::new()));
            } else if let Some((k, v)) = line.split_once('=')
                && let Some((_, kv)) = c.groups.last_mut()
            {
                kv.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        c
    }

    fn get(&self, group: &str, key: &str) -> Option<String> {
        self.groups
            .iter()
            .filter(|(g, _)| g == group)
            .flat_map(|(_, kv)| kv.iter())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// `key` of the credentials `[auth-SERVICE-HOST]` (else `[auth-SERVICE-default]`)
    /// names, as libvirt looks them up.
    pub fn lookup(&self, service: &str, host: &str, key: &str) -> Option<String> {
        let group = [
            format!("auth-{service}-{host}"),
            format!("auth-{service}-default"),
        ]
        .into_iter()
        .find(|g| self.groups.iter().any(|(n, _)| n == g))?;
        let cred = self.get(&group, "credentials")?;
        self.get(&format!("credentials-{cred}"), key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_transports_as_libvirt() {
        let u = HypervUri::parse("hyperv://hv.example").unwrap();
        assert_eq!(u.endpoint(), "https://hv.example:5986/wsman");
        let u = HypervUri::parse("hyperv://hv.example/?transport=http").unwrap();
        assert_eq!(u.endpoint(), "http://hv.example:5985/wsman");
        let u = HypervUri::parse("hyperv://bob@hv:1234/?transport=https&no_verify=1").unwrap();
        assert_eq!(u.endpoint(), "https://hv:1234/wsman");
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert!(u.no_verify);
        let u = HypervUri::parse("hyperv://[::1]/").unwrap();
        assert_eq!(u.endpoint(), "https://[::1]:5986/wsman");
    }

    #[test]
    fn bad_uris_name_what_is_wrong() {
        let e = HypervUri::parse("hyperv:///").unwrap_err().to_string();
        assert!(e.contains("has no host"), "{e}");
        let e = HypervUri::parse("hyperv://h/?transport=ftp")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'transport'") && e.contains("'ftp'"), "{e}");
        let e = HypervUri::parse("hyperv://h/?bogus=1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'bogus'"), "{e}");
        let e = HypervUri::parse("hyperv://h/system")
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes none"), "{e}");
        let e = HypervUri::parse("esx://h/").unwrap_err().to_string();
        assert!(e.contains("'esx'"), "{e}");
    }

    #[test]
    fn credentials_from_auth_conf() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.conf");
        std::fs::write(
            &f,
            "[credentials-hv]\nusername=ops\npassword=s3cret\n[auth-hyperv-hv1]\ncredentials=hv\n",
        )
        .unwrap();
        let uri = format!("hyperv://hv1/?authfile={}", f.display());
        let (u, p) = HypervUri::parse(&uri).unwrap().credentials().unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("ops", "s3cret"));
        let uri = format!("hyperv://me@hv1/?authfile={}", f.display());
        let (u, _) = HypervUri::parse(&uri).unwrap().credentials().unwrap();
        assert_eq!(u, "me");
        let uri = format!("hyperv://hv2/?authfile={}", f.display());
        let e = HypervUri::parse(&uri)
            .unwrap()
            .credentials()
            .unwrap_err()
            .to_string();
        assert!(e.contains("administrator@hv2"), "{e}");
    }
}

//! The connection URI (`vbox:///session`, `vbox:///system`, with `?endpoint=URL` and
//! `?authfile=PATH`), the web service endpoint and the credentials from libvirt's
//! `auth.conf`.

use std::path::PathBuf;

/// The endpoint `vboxwebsrv` listens on by default.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:18083/";

/// The environment variable naming another endpoint (the URI's `endpoint=` wins).
pub const ENDPOINT_ENV: &str = "RVIRT_VBOX_ENDPOINT";

/// Errors of the URI and the credentials.
#[derive(Debug, thiserror::Error)]
pub enum UriError {
    #[error("'{0}' is not a valid uri: {1}")]
    Syntax(String, String),
    #[error("scheme '{0}' is not served by the vbox driver")]
    Scheme(String),
    #[error(
        "invalid path in uri '{0}': the vbox driver serves 'vbox:///session' and 'vbox:///system'"
    )]
    Path(String),
    #[error(
        "the vbox driver talks to a web service and takes no host in the uri '{0}' (use ?endpoint=URL)"
    )]
    Host(String),
    #[error("unknown query parameter '{0}' in the uri")]
    UnknownParam(String),
    #[error("endpoint '{0}' is not an http:// or https:// url: {1}")]
    Endpoint(String, String),
    #[error("cannot read '{0}': {1}")]
    Read(String, String),
}

/// A parsed connection URI.
#[derive(Debug, Clone)]
pub struct VboxUri {
    /// `session` or `system`.
    pub path: String,
    /// The web service URL.
    pub endpoint: String,
    /// The endpoint's host, as auth.conf groups name it.
    pub host: String,
    pub auth_file: Option<PathBuf>,
}

impl VboxUri {
    /// Parses `uri`; `env_endpoint` is the value of [`ENDPOINT_ENV`], if set.
    pub fn parse(uri: &str, env_endpoint: Option<&str>) -> Result<VboxUri, UriError> {
        let u = url::Url::parse(uri).map_err(|e| UriError::Syntax(uri.into(), e.to_string()))?;
        if u.scheme() != "vbox" {
            return Err(UriError::Scheme(u.scheme().into()));
        }
        if u.host_str().is_some_and(|h| !h.is_empty()) {
            return Err(UriError::Host(uri.into()));
        }
        let path = match u.path() {
            "/session" | "/session/" => "session",
            "/system" | "/system/" => "system",
            _ => return Err(UriError::Path(uri.into())),
        };
        let mut endpoint = env_endpoint.filter(|e| !e.is_empty()).map(str::to_string);
        let mut auth_file = None;
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "endpoint" => endpoint = Some(v.into_owned()),
                "authfile" => auth_file = Some(PathBuf::from(v.into_owned())),
                "no_tty" | "pkipath" => {}
                _ => return Err(UriError::UnknownParam(k.into_owned())),
            }
        }
        let endpoint = endpoint.unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let e = url::Url::parse(&endpoint)
            .map_err(|e| UriError::Endpoint(endpoint.clone(), e.to_string()))?;
        if e.scheme() != "http" && e.scheme() != "https" {
            return Err(UriError::Endpoint(
                endpoint.clone(),
                format!("scheme '{}'", e.scheme()),
            ));
        }
        let host = e
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| UriError::Endpoint(endpoint.clone(), "no host".into()))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        Ok(VboxUri {
            path: path.to_string(),
            endpoint,
            host,
            auth_file,
        })
    }

    /// The auth files libvirt reads: `?authfile=`, `$LIBVIRT_AUTH_FILE`,
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

    /// The user name and password: `[auth-vbox-HOST]` (else `[auth-vbox-default]`) of the
    /// first auth file that exists; empty ones (the login `vboxwebsrv` accepts with
    /// authentication disabled) where no file or group names any.
    pub fn credentials(&self) -> Result<(String, String), UriError> {
        let Some(p) = self.auth_files().into_iter().find(|p| p.is_file()) else {
            return Ok((String::new(), String::new()));
        };
        let text = std::fs::read_to_string(&p)
            .map_err(|e| UriError::Read(p.display().to_string(), e.to_string()))?;
        let c = AuthConf::parse(&text);
        Ok((
            c.lookup("vbox", &self.host, "username").unwrap_or_default(),
            c.lookup("vbox", &self.host, "password").unwrap_or_default(),
        ))
    }
}

/// libvirt's `auth.conf`: `[credentials-NAME]` groups (`username=`, `password=`) named by
/// `[auth-SERVICE-HOST]` / `[auth-SERVICE-default]` groups (`credentials=NAME`).
#[derive(Debug, Default)]
pub struct AuthConf {
    groups: Vec<(String, Vec<(String, String)>)>,
}

impl AuthConf {
    pub fn parse(text: &str) -> AuthConf {
        let mut c = AuthConf::default();
        for line in text.lines().map(str::trim) {
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

    /// `key` of the credentials the host's group (else the default group) names.
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
    fn endpoint_from_uri_env_or_default() {
        let u = VboxUri::parse("vbox:///session", None).unwrap();
        assert_eq!(
            (u.path.as_str(), u.endpoint.as_str()),
            ("session", DEFAULT_ENDPOINT)
        );
        assert_eq!(u.host, "localhost");
        let u = VboxUri::parse("vbox:///system", Some("http://10.0.0.2:18083/")).unwrap();
        assert_eq!((u.path.as_str(), u.host.as_str()), ("system", "10.0.0.2"));
        let u = VboxUri::parse(
            "vbox:///session?endpoint=http%3A%2F%2F127.0.0.1%3A9%2F",
            Some("http://ignored/"),
        )
        .unwrap();
        assert_eq!(u.endpoint, "http://127.0.0.1:9/");
        assert!(VboxUri::parse("vbox:///other", None).is_err());
        assert!(VboxUri::parse("vbox://host/session", None).is_err());
        assert!(VboxUri::parse("vbox:///session?x=1", None).is_err());
        assert!(VboxUri::parse("vbox:///session?endpoint=ftp://h/", None).is_err());
        assert!(VboxUri::parse("qemu:///session", None).is_err());
    }

    #[test]
    fn credentials_from_auth_conf_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.conf");
        std::fs::write(
            &f,
            "[credentials-v]\nusername=alice\npassword=s3cret\n[auth-vbox-127.0.0.1]\ncredentials=v\n",
        )
        .unwrap();
        let uri = format!(
            "vbox:///session?endpoint=http://127.0.0.1:1/&authfile={}",
            f.display()
        );
        let u = VboxUri::parse(&uri, None).unwrap();
        assert_eq!(u.credentials().unwrap(), ("alice".into(), "s3cret".into()));
        let other = format!(
            "vbox:///session?endpoint=http://h2:1/&authfile={}",
            f.display()
        );
        let u = VboxUri::parse(&other, None).unwrap();
        assert_eq!(u.credentials().unwrap(), (String::new(), String::new()));
        let missing = format!(
            "vbox:///session?authfile={}",
            dir.path().join("none").display()
        );
        let u = VboxUri::parse(&missing, None).unwrap();
        assert_eq!(u.credentials().unwrap(), (String::new(), String::new()));
    }
}

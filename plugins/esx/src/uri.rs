//! The connection URI (`esx://[user@]host[:port]/?params`, `gsx://…`,
//! `vpx://[user@]vcenter[:port]/DATACENTER[/FOLDER…]/COMPUTE[/HOST]?params`) and
//! libvirt's credentials file (`auth.conf`).

use std::path::PathBuf;

/// Errors of the URI and the credentials.
#[derive(Debug, thiserror::Error)]
pub enum UriError {
    #[error("'{0}' is not a valid uri: {1}")]
    Syntax(String, String),
    #[error("scheme '{0}' is not served by the esx driver")]
    Scheme(String),
    #[error("uri '{0}' has no host")]
    NoHost(String),
    #[error("query parameter '{0}' has unexpected value '{1}' ({2})")]
    Param(String, String, &'static str),
    #[error("unknown query parameter '{0}' in the uri")]
    UnknownParam(String),
    #[error(
        "no password for {user}@{host}: the esx driver reads it from libvirt's auth.conf ([auth-{service}-{host}] or [auth-{service}-default] naming a [credentials-NAME] group with password=; looked in {looked})"
    )]
    NoPassword {
        user: String,
        host: String,
        service: String,
        looked: String,
    },
    #[error("cannot read '{0}': {1}")]
    Read(String, String),
}

/// Which product the URI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Esx,
    Gsx,
    Vpx,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Esx => "esx",
            Scheme::Gsx => "gsx",
            Scheme::Vpx => "vpx",
        }
    }
}

/// A parsed connection URI.
#[derive(Debug, Clone)]
pub struct EsxUri {
    pub scheme: Scheme,
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// `vpx://` inventory path (`DC/…/COMPUTE[/HOST]`), empty for `esx://` / `gsx://`.
    pub path: String,
    /// `https` (the default) or `http`.
    pub transport: String,
    pub no_verify: bool,
    pub auto_answer: bool,
    /// `[type://]host[:port]` as the HTTP client takes it: `http://`, `socks4://`,
    /// `socks5://` (libvirt's `socks://` is SOCKS5).
    pub proxy: Option<String>,
    pub auth_file: Option<PathBuf>,
}

impl EsxUri {
    pub fn parse(uri: &str) -> Result<EsxUri, UriError> {
        let u = url::Url::parse(uri).map_err(|e| UriError::Syntax(uri.into(), e.to_string()))?;
        let scheme = match u.scheme() {
            "esx" => Scheme::Esx,
            "gsx" => Scheme::Gsx,
            "vpx" => Scheme::Vpx,
            s => return Err(UriError::Scheme(s.into())),
        };
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| UriError::NoHost(uri.into()))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let user = (!u.username().is_empty()).then(|| {
            url::form_urlencoded::parse(u.username().as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default()
        });
        let mut out = EsxUri {
            scheme,
            user,
            host,
            port: u.port(),
            path: u.path().trim_matches('/').to_string(),
            transport: "https".into(),
            no_verify: false,
            auto_answer: false,
            proxy: None,
            auth_file: None,
        };
        let flag = |k: &str, v: &str| match v {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(UriError::Param(k.into(), v.into(), "expected 0 or 1")),
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
                "no_verify" => out.no_verify = flag(&k, &v)?,
                "auto_answer" => out.auto_answer = flag(&k, &v)?,
                "proxy" => {
                    let p = v.into_owned();
                    let (kind, _) = p.split_once("://").unwrap_or(("http", &p));
                    if kind != "http" && kind != "socks" && kind != "socks5" && kind != "socks4" {
                        return Err(UriError::Param(
                            "proxy".into(),
                            p,
                            "expected http://, socks://, socks4:// or socks5://",
                        ));
                    }
                    out.proxy = Some(if p.contains("://") {
                        p.replacen("socks://", "socks5://", 1)
                    } else {
                        format!("http://{p}")
                    });
                }
                "authfile" => out.auth_file = Some(PathBuf::from(v.into_owned())),
                // libvirt's own client-side parameters, meaningless here
                "no_tty" | "pkipath" => {}
                _ => return Err(UriError::UnknownParam(k.into_owned())),
            }
        }
        if scheme != Scheme::Vpx && !out.path.is_empty() {
            return Err(UriError::Syntax(
                uri.into(),
                format!("the {} driver takes no path", scheme.name()),
            ));
        }
        Ok(out)
    }

    /// `https://host:port` of the server. libvirt's default ports: 443 (https) and 80
    /// (http) for esx and vpx, 8333 (https) and 8222 (http) for gsx (VMware Server).
    pub fn base(&self) -> String {
        let port = self
            .port
            .unwrap_or(match (self.scheme, self.transport.as_str()) {
                (Scheme::Gsx, "http") => 8222,
                (Scheme::Gsx, _) => 8333,
                (_, "http") => 80,
                _ => 443,
            });
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{host}:{port}", self.transport)
    }

    /// libvirt's auth service name: `esx` for ESX and GSX hosts, `vpx` for vCenter.
    pub fn service(&self) -> &'static str {
        match self.scheme {
            Scheme::Vpx => "vpx",
            _ => "esx",
        }
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

    /// The user name (URI, then auth.conf, then libvirt's default: `root` for hosts,
    /// `administrator` for vCenter) and the password (auth.conf).
    pub fn credentials(&self) -> Result<(String, String), UriError> {
        let files = self.auth_files();
        let file = files.iter().find(|p| p.is_file());
        let conf = match file {
            Some(p) => Some(AuthConf::parse(
                &std::fs::read_to_string(p)
                    .map_err(|e| UriError::Read(p.display().to_string(), e.to_string()))?,
            )),
            None => None,
        };
        let lookup = |key: &str| {
            conf.as_ref()
                .and_then(|c| c.lookup(self.service(), &self.host, key))
        };
        let user = self
            .user
            .clone()
            .or_else(|| lookup("username"))
            .unwrap_or_else(|| {
                if self.scheme == Scheme::Vpx {
                    "administrator".into()
                } else {
                    "root".into()
                }
            });
        let password = lookup("password").ok_or_else(|| UriError::NoPassword {
            user: user.clone(),
            host: self.host.clone(),
            service: self.service().into(),
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
    /// names, as libvirt's `virAuthConfigLookup`.
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
    fn parses_libvirt_uris() {
        let u = EsxUri::parse("esx://root@10.0.0.1/?no_verify=1&auto_answer=1").unwrap();
        assert_eq!((u.scheme, u.user.as_deref()), (Scheme::Esx, Some("root")));
        assert!(u.no_verify && u.auto_answer);
        assert_eq!(u.base(), "https://10.0.0.1:443");
        let u =
            EsxUri::parse("vpx://vc.example/dc1/cluster1/h1?transport=http&proxy=p:3128").unwrap();
        assert_eq!(u.path, "dc1/cluster1/h1");
        assert_eq!(u.base(), "http://vc.example:80");
        assert_eq!(u.proxy.as_deref(), Some("http://p:3128"));
        // GSX defaults to https as the others, on VMware Server's ports
        assert_eq!(EsxUri::parse("gsx://h").unwrap().base(), "https://h:8333");
        assert_eq!(
            EsxUri::parse("gsx://h/?transport=http").unwrap().base(),
            "http://h:8222"
        );
        assert_eq!(
            EsxUri::parse("gsx://h:9000/?transport=http")
                .unwrap()
                .base(),
            "http://h:9000"
        );
        assert_eq!(EsxUri::parse("gsx://h").unwrap().service(), "esx");
        assert!(EsxUri::parse("esx://h/?no_verify=2").is_err());
        assert!(EsxUri::parse("esx://h/?bogus=1").is_err());
        assert!(EsxUri::parse("esx://h/dc").is_err());
    }

    #[test]
    fn auth_conf_lookup_as_libvirt() {
        let c = AuthConf::parse(
            "[credentials-a]\nusername=ua\npassword=pa\n[credentials-b]\npassword=pb\n\
             [auth-esx-h1]\ncredentials=a\n[auth-esx-default]\ncredentials=b\n",
        );
        assert_eq!(c.lookup("esx", "h1", "password").as_deref(), Some("pa"));
        assert_eq!(c.lookup("esx", "h2", "password").as_deref(), Some("pb"));
        assert_eq!(c.lookup("esx", "h2", "username"), None);
        assert_eq!(c.lookup("vpx", "h1", "password"), None);
    }
}

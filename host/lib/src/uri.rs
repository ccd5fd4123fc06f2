//! Connection URIs: `driver[+transport]://[user@][host][:port]/path[?params]`.

use url::Url;

/// Errors of [`ConnectUri::parse`].
#[derive(Debug, thiserror::Error)]
pub enum UriError {
    /// Not a URI at all.
    #[error("invalid connection URI '{uri}'")]
    Syntax {
        /// The text given.
        uri: String,
        /// What the URL parser said.
        #[source]
        source: url::ParseError,
    },
    /// Parsed, but the parts do not fit libvirt's shape.
    #[error("invalid connection URI '{uri}': {reason}")]
    Shape {
        /// The text given.
        uri: String,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed connection URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectUri {
    /// The text as given.
    pub original: String,
    /// The driver part of the scheme (`qemu` in `qemu+unix`).
    pub driver: String,
    /// The transport part of the scheme, if any (`unix`, `tcp`, `ssh`, `tls`).
    pub transport: Option<String>,
    /// User name, if any.
    pub user: Option<String>,
    /// Host name, if any.
    pub host: Option<String>,
    /// Port, if any.
    pub port: Option<u16>,
    /// The path (`/system`, `/default`, `/tmp/node.xml`).
    pub path: String,
    /// Query parameters in order.
    pub params: Vec<(String, String)>,
}

/// Drivers that reach their hypervisor over the network themselves, as libvirt's
/// client-side drivers do: `esx://host/`, `gsx://host/`, `vpx://vcenter/dc/cluster` and
/// `hyperv://host/` and `phyp://user@hmc/system` (POWER HMC over SSH) open the driver in
/// this process, not a remote daemon on `host`.
pub const CLIENT_SIDE_DRIVERS: &[&str] = &["esx", "gsx", "vpx", "hyperv", "phyp"];

/// Query parameters the client consumes itself and never passes to the server.
const CLIENT_PARAMS: &[&str] = &[
    "socket",
    "mode",
    "proxy",
    "name",
    "command",
    "netcat",
    "keyfile",
    "sshauth",
    "known_hosts",
    "known_hosts_verify",
    "pkipath",
    "tls_priority",
    "no_verify",
    "no_sanity",
    "no_tty",
    "auth",
    "authfile",
];

impl ConnectUri {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, UriError> {
        let url = Url::parse(text).map_err(|source| UriError::Syntax {
            uri: text.to_string(),
            source,
        })?;
        let scheme = url.scheme();
        let (driver, transport) = match scheme.split_once('+') {
            Some((d, t)) => (d.to_string(), Some(t.to_string())),
            None => (scheme.to_string(), None),
        };
        if driver.is_empty() || transport.as_deref() == Some("") {
            return Err(UriError::Shape {
                uri: text.to_string(),
                reason: format!("scheme '{scheme}' has an empty driver or transport"),
            });
        }
        let user = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        let host = url.host_str().filter(|h| !h.is_empty()).map(str::to_string);
        Ok(Self {
            original: text.to_string(),
            driver,
            transport,
            user,
            host,
            port: url.port(),
            path: url.path().to_string(),
            params: url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        })
    }

    /// The value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the URI names a remote daemon (a transport or a host) rather than a
    /// driver to load in this process. The host of a [`CLIENT_SIDE_DRIVERS`] URI without a
    /// transport is the hypervisor's own, which the driver plugin talks to itself.
    pub fn is_remote(&self) -> bool {
        if self.transport.is_none() && CLIENT_SIDE_DRIVERS.contains(&self.driver.as_str()) {
            return false;
        }
        self.transport.is_some() || self.host.is_some() || self.driver == "remote"
    }

    /// The URI a remote client sends in CONNECT_OPEN: no transport, no host, and none of
    /// the parameters the client consumes (`socket`, `mode`, ...); `name=` overrides it.
    pub fn server_name(&self) -> String {
        if let Some(name) = self.param("name") {
            return name.to_string();
        }
        if self.driver == "remote" {
            return String::new();
        }
        let rest: Vec<String> = self
            .params
            .iter()
            .filter(|(k, _)| !CLIENT_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut s = format!("{}://{}", self.driver, self.path);
        if !rest.is_empty() {
            s.push('?');
            s.push_str(&rest.join("&"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_uris() {
        let u = ConnectUri::parse("test:///default").unwrap();
        assert_eq!((u.driver.as_str(), u.path.as_str()), ("test", "/default"));
        assert!(u.transport.is_none() && u.host.is_none() && !u.is_remote());
        let u = ConnectUri::parse("qemu:///embed?root=/tmp/x").unwrap();
        assert_eq!(u.param("root"), Some("/tmp/x"));
        let u = ConnectUri::parse("test:///tmp/node.xml").unwrap();
        assert_eq!(u.path, "/tmp/node.xml");
    }

    #[test]
    fn remote_uris() {
        let u = ConnectUri::parse("qemu+unix:///system?socket=/run/x/sock&mode=legacy").unwrap();
        assert_eq!(u.transport.as_deref(), Some("unix"));
        assert_eq!(u.param("socket"), Some("/run/x/sock"));
        assert!(u.is_remote());
        assert_eq!(u.server_name(), "qemu:///system");
        let u = ConnectUri::parse("qemu+ssh://root@host.example:2222/system").unwrap();
        assert_eq!(u.user.as_deref(), Some("root"));
        assert_eq!(u.host.as_deref(), Some("host.example"));
        assert_eq!(u.port, Some(2222));
        let u = ConnectUri::parse("test+unix:///default?socket=/s&foo=bar").unwrap();
        assert_eq!(u.server_name(), "test:///default?foo=bar");
        // the host of a client-side driver is the hypervisor, not a daemon
        for uri in [
            "esx://root@10.0.0.1/?no_verify=1",
            "vpx://vc/dc1/c1",
            "gsx://h",
        ] {
            assert!(!ConnectUri::parse(uri).unwrap().is_remote(), "{uri}");
        }
        assert!(ConnectUri::parse("esx+ssh://h/").unwrap().is_remote());
    }

    #[test]
    fn bad_uris_are_named() {
        let e = ConnectUri::parse("not a uri").unwrap_err();
        assert!(e.to_string().contains("'not a uri'"), "{e}");
        assert!(ConnectUri::parse("+unix:///x").is_err());
    }
}

//! Which connection URIs the daemon serves.
//!
//! A client names a URI in CONNECT_OPEN, and a plugin given a URI may read files, create
//! directories and run programs under the paths the URI names. So a daemon opens only the
//! URIs its configuration lists (`uris` in `rvirtd.toml`, plus `default_uri`), compared
//! whole: driver, path and every query parameter. `embed` URIs (`qemu:///embed?root=DIR`)
//! put a whole driver root wherever the caller likes; they are for in-process use and no
//! socket serves them, whatever the configuration says.
//!
//! Architecture invariant: nothing a client sends selects a directory, a file or a program
//! on the daemon's side other than through a URI listed here.

use rvirt_host::ConnectUri;

/// Why a URI is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServedError {
    /// The text is not a connection URI.
    #[error("invalid connection URI '{uri}': {reason}")]
    Invalid {
        /// The text given.
        uri: String,
        /// What the parser said.
        reason: String,
    },
    /// An embedded-driver URI: never through a daemon.
    #[error(
        "rvirtd does not serve '{uri}': embed URIs run a driver inside the calling process and cannot be opened through a daemon"
    )]
    Embed {
        /// The URI.
        uri: String,
    },
    /// A URI naming another host or transport.
    #[error("rvirtd does not forward to other daemons: '{uri}' names a transport or a host")]
    Remote {
        /// The URI.
        uri: String,
    },
    /// Not in the configuration.
    #[error(
        "rvirtd does not serve '{uri}': it serves {served} (the 'uris' setting of rvirtd.toml)"
    )]
    NotListed {
        /// The URI.
        uri: String,
        /// The served URIs, comma-separated.
        served: String,
    },
}

/// A URI reduced to what identifies a driver instance: driver, the user, host and port of
/// a client-side driver (`esx://root@host:443/`: the hypervisor the plugin connects to),
/// path and sorted parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    driver: String,
    authority: (Option<String>, Option<String>, Option<u16>),
    path: String,
    params: Vec<(String, String)>,
}

fn key(text: &str) -> Result<Key, ServedError> {
    let uri = ConnectUri::parse(text).map_err(|e| ServedError::Invalid {
        uri: text.into(),
        reason: std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string),
    })?;
    if uri.is_remote() {
        return Err(ServedError::Remote { uri: text.into() });
    }
    let path = if uri.path.is_empty() {
        "/".to_string()
    } else {
        uri.path.clone()
    };
    if path.trim_end_matches('/') == "/embed" {
        return Err(ServedError::Embed { uri: text.into() });
    }
    let mut params = uri.params.clone();
    params.sort();
    Ok(Key {
        authority: (uri.user.clone(), uri.host.clone(), uri.port),
        driver: uri.driver,
        path,
        params,
    })
}

/// The URIs one daemon serves.
#[derive(Debug, Clone)]
pub struct Served {
    list: Vec<(String, Key)>,
}

impl Served {
    /// The served set: `uris` and `default_uri`. An entry that can never be served (an
    /// embed URI, another host) is a configuration error.
    pub fn new<'a>(uris: impl IntoIterator<Item = &'a str>) -> Result<Served, ServedError> {
        let mut list: Vec<(String, Key)> = Vec::new();
        for u in uris {
            let k = key(u)?;
            if !list.iter().any(|(_, x)| *x == k) {
                list.push((u.to_string(), k));
            }
        }
        Ok(Served { list })
    }

    /// Whether `uri` may be opened; the error names the URI and what is served.
    pub fn check(&self, uri: &str) -> Result<(), ServedError> {
        let k = key(uri)?;
        if self.list.iter().any(|(_, x)| *x == k) {
            return Ok(());
        }
        Err(ServedError::NotListed {
            uri: uri.into(),
            served: self.describe(),
        })
    }

    /// The served URIs, one spelling per driver instance (the first listed).
    #[cfg_attr(not(feature = "policy"), allow(dead_code))]
    pub fn uris(&self) -> Vec<String> {
        self.list.iter().map(|(u, _)| u.clone()).collect()
    }

    /// The served URIs, comma-separated.
    pub fn describe(&self) -> String {
        if self.list.is_empty() {
            return "nothing".into();
        }
        self.list
            .iter()
            .map(|(u, _)| u.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_uris_are_served() {
        let s = Served::new(["test:///default", "qemu:///system"]).unwrap();
        assert!(s.check("test:///default").is_ok());
        assert!(s.check("qemu:///system").is_ok());
        for bad in [
            "qemu:///session",
            "test:///tmp/node.xml",
            "test:///default?panic=virDomainSuspend",
            "qemu:///system?root=/tmp",
            "lxc:///",
        ] {
            assert!(
                matches!(s.check(bad), Err(ServedError::NotListed { .. })),
                "{bad}"
            );
        }
        let e = s.check("qemu:///session").unwrap_err().to_string();
        assert!(
            e.contains("'qemu:///session'") && e.contains("test:///default, qemu:///system"),
            "{e}"
        );
    }

    #[test]
    fn embed_is_refused_even_when_configured() {
        assert!(matches!(
            Served::new(["qemu:///embed?root=/tmp/x"]),
            Err(ServedError::Embed { .. })
        ));
        let s = Served::new(["qemu:///system"]).unwrap();
        for bad in [
            "qemu:///embed?root=/tmp/evil",
            "qemu:///embed/?root=/tmp/evil",
            "test:///embed",
        ] {
            assert!(
                matches!(s.check(bad), Err(ServedError::Embed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn parameters_compare_whole_in_any_order() {
        let s = Served::new(["test:///default?a=1&b=2"]).unwrap();
        assert!(s.check("test:///default?b=2&a=1").is_ok());
        assert!(s.check("test:///default?a=1").is_err());
        assert!(s.check("test:///default").is_err());
        assert!(matches!(
            s.check("test://otherhost/default"),
            Err(ServedError::Remote { .. })
        ));
        assert!(matches!(
            s.check("not a uri"),
            Err(ServedError::Invalid { .. })
        ));
    }

    #[test]
    fn a_client_side_driver_is_served_for_its_listed_host_only() {
        let s = Served::new(["esx://root@10.0.0.5/?no_verify=1"]).unwrap();
        assert!(s.check("esx://root@10.0.0.5/?no_verify=1").is_ok());
        for bad in [
            "esx://root@10.0.0.6/?no_verify=1",
            "esx://admin@10.0.0.5/?no_verify=1",
            "esx://root@10.0.0.5:8443/?no_verify=1",
            "esx://root@10.0.0.5/",
        ] {
            assert!(
                matches!(s.check(bad), Err(ServedError::NotListed { .. })),
                "{bad}"
            );
        }
    }
}

//! Which directories a connection URI means: `lxc:///system` (or `lxc:///`) and
//! `lxc:///embed?root=DIR`.

use std::path::{Path, PathBuf};

/// Errors of URI interpretation.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    /// The URI is not one the driver serves.
    #[error("unsupported lxc URI '{0}': use lxc:///system or lxc:///embed?root=DIR")]
    Uri(String),
    /// `embed` needs an absolute root.
    #[error("lxc:///embed needs an absolute root directory (?root=/path), got '{0}'")]
    Root(String),
}

/// The driver's directories for one root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Paths {
    /// The canonical URI.
    pub uri: String,
    /// Persistent configs (`NAME.xml`) and `autostart/`.
    pub config: PathBuf,
    /// Run-time state: status files, live XML, controller sockets.
    pub run: PathBuf,
    /// Controller logs and console logs.
    pub log: PathBuf,
    /// The cgroup directory (relative to each hierarchy) the containers of this root
    /// live under: `machine` for the system root, `machine/rvirt-embed-HASH` for an
    /// embedded one (so two embedded roots never share a group).
    pub cgroup_parent: String,
}

use rvirt_sdk::util::decode_query_value as decode;

/// FNV-1a of a path (a short, stable tag for an embedded root).
fn tag(p: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in p.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

impl Paths {
    /// Interprets an `lxc://` URI; system paths live under `RVIRT_SYSTEM_ROOT` when it is
    /// set.
    pub fn from_uri(uri: &str) -> Result<Paths, PathsError> {
        let rest = uri
            .strip_prefix("lxc://")
            .ok_or_else(|| PathsError::Uri(uri.into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let root = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("root="))
            .map(decode);
        Self::resolve(uri, path, root, None)
    }

    /// Interprets the URI as the host parsed it, with system paths under `system_root`.
    pub fn from_host(
        original: &str,
        driver: &str,
        path: &str,
        root: Option<String>,
        system_root: &Path,
    ) -> Result<Paths, PathsError> {
        if driver != "lxc" {
            return Err(PathsError::Uri(original.into()));
        }
        Self::resolve(original, path, root, Some(system_root))
    }

    fn resolve(
        uri: &str,
        path: &str,
        root: Option<String>,
        system_root: Option<&Path>,
    ) -> Result<Paths, PathsError> {
        match path {
            "" | "/" | "/system" => {
                let at = |p: &str| match system_root {
                    Some(sys) => sys.join(p),
                    None => rvirt_sdk::util::system_path(p),
                };
                Ok(Paths {
                    uri: "lxc:///system".into(),
                    config: at("etc/rvirt/lxc"),
                    run: at("run/rvirt/lxc"),
                    log: at("var/log/rvirt/lxc"),
                    cgroup_parent: "machine".into(),
                })
            }
            "/embed" => {
                let root = root.unwrap_or_default();
                if !Path::new(&root).is_absolute() {
                    return Err(PathsError::Root(root));
                }
                let root = PathBuf::from(root);
                Ok(Paths {
                    uri: format!("lxc:///embed?root={}", root.display()),
                    config: root.join("etc/rvirt/lxc"),
                    run: root.join("run/rvirt/lxc"),
                    log: root.join("log/rvirt/lxc"),
                    cgroup_parent: format!("machine/rvirt-embed-{}", tag(&root)),
                })
            }
            _ => Err(PathsError::Uri(uri.into())),
        }
    }

    /// The persistent config of `name`.
    pub fn config_file(&self, name: &str) -> PathBuf {
        self.config.join(format!("{name}.xml"))
    }

    /// The autostart mark of `name`.
    pub fn autostart_file(&self, name: &str) -> PathBuf {
        self.config.join("autostart").join(format!("{name}.xml"))
    }

    /// The status file of a running `name`.
    pub fn status_file(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.json"))
    }

    /// The controller's socket of a running `name`.
    pub fn socket(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.sock"))
    }

    /// The launch spec handed to the controller of `name`.
    pub fn spec_file(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.spec.json"))
    }

    /// Where a container sharing the host's root binds it (in its own mount namespace)
    /// before pivoting into it; an empty directory on the host.
    pub fn host_root_dir(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.root"))
    }

    /// The controller's log of `name`.
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.log.join(format!("{name}.log"))
    }

    /// Everything the container's consoles printed.
    pub fn console_log(&self, name: &str) -> PathBuf {
        self.log.join(format!("{name}.console.log"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let p = Paths::from_uri("lxc:///system").unwrap();
        assert_eq!(p.uri, "lxc:///system");
        assert!(p.config.ends_with("etc/rvirt/lxc"));
        assert_eq!(p.cgroup_parent, "machine");
        let e = Paths::from_uri("lxc:///embed?root=/tmp/a%20b").unwrap();
        assert_eq!(e.config, PathBuf::from("/tmp/a b/etc/rvirt/lxc"));
        assert!(e.cgroup_parent.starts_with("machine/rvirt-embed-"));
        assert!(matches!(
            Paths::from_uri("lxc:///embed?root=rel"),
            Err(PathsError::Root(_))
        ));
        assert!(matches!(
            Paths::from_uri("lxc:///session"),
            Err(PathsError::Uri(_))
        ));
    }
}

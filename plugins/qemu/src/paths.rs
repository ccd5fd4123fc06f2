//! Which directories a connection URI means: `qemu:///system`, `qemu:///session` and
//! `qemu:///embed?root=DIR`.

use std::path::{Path, PathBuf};

/// Errors of URI interpretation.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    /// The URI is not one the driver serves.
    #[error(
        "unsupported qemu URI '{0}': use qemu:///system, qemu:///session or qemu:///embed?root=DIR"
    )]
    Uri(String),
    /// `embed` needs an absolute root.
    #[error("qemu:///embed needs an absolute root directory (?root=/path), got '{0}'")]
    Root(String),
}

/// The driver's directories for one root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Paths {
    /// The canonical URI.
    pub uri: String,
    /// Persistent configs (`NAME.xml`) and `autostart/`.
    pub config: PathBuf,
    /// Persistent state: NVRAM.
    pub state: PathBuf,
    /// Run-time state: status files, monitor sockets, channels, transient overlays.
    pub run: PathBuf,
    /// Per-domain logs (QEMU's stderr).
    pub log: PathBuf,
}

use rvirt_sdk::util::decode_query_value as decode;

impl Paths {
    /// Interprets a `qemu://` URI; system paths live under `RVIRT_SYSTEM_ROOT` when it is
    /// set (the side channel of hosts older than plugin API 1.4).
    pub fn from_uri(uri: &str) -> Result<Paths, PathsError> {
        let rest = uri
            .strip_prefix("qemu://")
            .ok_or_else(|| PathsError::Uri(uri.into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let root = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("root="))
            .map(decode);
        Self::resolve(uri, path, root, None)
    }

    /// Interprets the URI as the host parsed it (`HostServices::connection_uri`, plugin
    /// API 1.4): `path` and the decoded `root` parameter, with system paths under
    /// `system_root` (the host's, instead of the `RVIRT_SYSTEM_ROOT` side channel).
    pub fn from_host(
        original: &str,
        driver: &str,
        path: &str,
        root: Option<String>,
        system_root: &Path,
    ) -> Result<Paths, PathsError> {
        if driver != "qemu" {
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
            "/system" => Ok(Paths::under("qemu:///system".into(), None, system_root)),
            "/session" => {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| "/root".into());
                let xdg = |var: &str, dflt: &str| {
                    std::env::var_os(var)
                        .map(PathBuf::from)
                        .filter(|p| p.is_absolute())
                        .unwrap_or_else(|| home.join(dflt))
                };
                let config = xdg("XDG_CONFIG_HOME", ".config").join("rvirt/qemu");
                let state = xdg("XDG_STATE_HOME", ".local/state").join("rvirt/qemu");
                let run = std::env::var_os("XDG_RUNTIME_DIR")
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute())
                    .map(|p| p.join("rvirt/qemu"))
                    .unwrap_or_else(|| xdg("XDG_CACHE_HOME", ".cache").join("rvirt/qemu/run"));
                Ok(Paths {
                    uri: "qemu:///session".into(),
                    log: state.join("log"),
                    config,
                    state: state.join("lib"),
                    run,
                })
            }
            "/embed" => {
                let root = root.unwrap_or_default();
                if !Path::new(&root).is_absolute() {
                    return Err(PathsError::Root(root));
                }
                let root = PathBuf::from(root);
                Ok(Paths::under(
                    format!("qemu:///embed?root={}", root.display()),
                    Some(&root),
                    system_root,
                ))
            }
            _ => Err(PathsError::Uri(uri.into())),
        }
    }

    fn under(uri: String, root: Option<&Path>, system_root: Option<&Path>) -> Paths {
        let at = |p: &str| match (root, system_root) {
            (Some(r), _) => r.join(p),
            (None, Some(sys)) => sys.join(p),
            (None, None) => rvirt_sdk::util::system_path(p),
        };
        match root {
            None => Paths {
                uri,
                config: at("etc/rvirt/qemu"),
                state: at("var/lib/rvirt/qemu"),
                run: at("run/rvirt/qemu"),
                log: at("var/log/rvirt/qemu"),
            },
            Some(_) => Paths {
                uri,
                config: at("etc/qemu"),
                state: at("lib/qemu"),
                run: at("run/qemu"),
                log: at("log/qemu"),
            },
        }
    }

    /// `config/NAME.xml`.
    pub fn config_file(&self, name: &str) -> PathBuf {
        self.config.join(format!("{name}.xml"))
    }
    /// `config/autostart/NAME.xml`.
    pub fn autostart_link(&self, name: &str) -> PathBuf {
        self.config.join("autostart").join(format!("{name}.xml"))
    }
    /// `run/NAME.status`.
    pub fn status_file(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.status"))
    }
    /// `run/NAME.stopped`: why a persistent domain last stopped (a symlink to a libvirt
    /// shutoff reason number), so that every process reports the same reason until the
    /// host reboots.
    pub fn stopped_file(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.stopped"))
    }
    /// `run/autostarted`: the marker of the first open of the root since the host booted
    /// (domains are autostarted then, and only then).
    pub fn autostarted_marker(&self) -> PathBuf {
        self.run.join("autostarted")
    }
    /// `run/NAME.lock`: held (`flock`) by the process that runs a state-change job on the
    /// domain; it exists only while held.
    pub fn domain_lock(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.lock"))
    }
    /// `run/ids.lock`: held while a domain id is chosen and recorded in a status file.
    pub fn ids_lock(&self) -> PathBuf {
        self.run.join("ids.lock")
    }
    /// `run/NAME.monitor`.
    pub fn monitor(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.monitor"))
    }
    /// `log/NAME.log`.
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.log.join(format!("{name}.log"))
    }
    /// `state/nvram`.
    pub fn nvram_dir(&self) -> PathBuf {
        self.state.join("nvram")
    }
    /// `state/save/NAME.save`: the domain's managed save image.
    pub fn managed_save_file(&self, name: &str) -> PathBuf {
        self.state.join("save").join(format!("{name}.save"))
    }
    /// `run/channel`.
    pub fn channel_dir(&self) -> PathBuf {
        self.run.join("channel")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let p = Paths::from_uri("qemu:///system").unwrap();
        assert_eq!(p.config, PathBuf::from("/etc/rvirt/qemu"));
        assert_eq!(p.run, PathBuf::from("/run/rvirt/qemu"));
        assert_eq!(p.log, PathBuf::from("/var/log/rvirt/qemu"));
        assert_eq!(p.state, PathBuf::from("/var/lib/rvirt/qemu"));
        let e = Paths::from_uri("qemu:///embed?root=/tmp/x%20y").unwrap();
        assert!(
            e.config.starts_with("/tmp/x y")
                && e.run.starts_with("/tmp/x y")
                && e.log.starts_with("/tmp/x y")
        );
        assert!(Paths::from_uri("qemu:///embed?root=rel").is_err());
        let h = Paths::from_host(
            "qemu:///system",
            "qemu",
            "/system",
            None,
            Path::new("/srv/r"),
        )
        .unwrap();
        assert_eq!(h.config, PathBuf::from("/srv/r/etc/rvirt/qemu"));
        assert_eq!(h.run, PathBuf::from("/srv/r/run/rvirt/qemu"));
        let h = Paths::from_host(
            "qemu:///embed?root=/tmp/e",
            "qemu",
            "/embed",
            Some("/tmp/e".into()),
            Path::new("/srv/r"),
        )
        .unwrap();
        assert_eq!(h.config, PathBuf::from("/tmp/e/etc/qemu"));
        assert!(
            Paths::from_host("test:///default", "test", "/default", None, Path::new("/")).is_err()
        );
        assert!(Paths::from_uri("qemu:///other").is_err());
        assert!(
            Paths::from_uri("qemu:///session")
                .unwrap()
                .config
                .ends_with("rvirt/qemu")
        );
    }
}

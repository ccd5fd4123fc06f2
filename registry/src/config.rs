//! The operator's registry configuration: `/etc/rvirt/registry.toml`, or the file named by
//! `RVIRT_REGISTRY_CONFIG`.
//!
//! ```toml
//! # Where packages come from: http(s)://..., file:///dir, or a directory.
//! index = "https://plugins.example.org/rvirt"
//! # Where `rvirt plugin install` puts plugins (on the host's plugin search path).
//! install_dir = "/var/lib/rvirt/plugins"
//! # Publishers whose packages are accepted.
//! trusted_keys = ["ed25519:4m3...="]
//! ```

use serde::Deserialize;
use std::path::PathBuf;

/// The default configuration file.
pub const DEFAULT_PATH: &str = "/etc/rvirt/registry.toml";

/// The environment variable naming another configuration file.
pub const ENV: &str = "RVIRT_REGISTRY_CONFIG";

/// The default install directory (on the host's default plugin search path).
pub const DEFAULT_INSTALL_DIR: &str = rvirt_host::plugin::INSTALLED_PLUGIN_DIR;

/// The configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The index URL or directory.
    pub index: Option<String>,
    /// Where plugins are installed.
    pub install_dir: Option<PathBuf>,
    /// Trusted publisher keys (`ed25519:BASE64`).
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Where this configuration was read from (for messages).
    #[serde(skip)]
    pub path: String,
}

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not parse.
    #[error("cannot read the registry configuration '{path}': {reason}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl Config {
    /// Reads the configuration (`RVIRT_REGISTRY_CONFIG`, else [`DEFAULT_PATH`]); a missing
    /// file is an empty configuration.
    pub fn load() -> Result<Config, ConfigError> {
        let path = std::env::var(ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        Self::load_from(&path)
    }

    /// Reads `path`; a missing file is an empty configuration.
    pub fn load_from(path: &str) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(ConfigError::Parse {
                    path: path.into(),
                    reason: e.to_string(),
                });
            }
        };
        let mut c: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            reason: e.to_string(),
        })?;
        c.path = path.to_string();
        Ok(c)
    }

    /// The install directory.
    pub fn install_dir(&self) -> PathBuf {
        self.install_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_INSTALL_DIR))
    }
}

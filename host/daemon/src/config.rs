//! Daemon configuration (TOML) and the file system layout.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Errors while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid socket permissions '{0}': expected an octal mode such as \"0700\"")]
    Perms(String),
    #[error("no runtime directory: XDG_RUNTIME_DIR is not set and the daemon does not run as root")]
    NoRuntimeDir,
    #[error("invalid {key} '{value}': expected a port number")]
    Port { key: &'static str, value: String },
    #[error(
        "{key} = \"{value}\" is not supported by rvirtd: it has no SASL or polkit, set {key} = \"none\"{hint}"
    )]
    Auth {
        key: &'static str,
        value: String,
        hint: &'static str,
    },
    #[error("[{section}] {key} = {value}: {expected}")]
    PluginKey {
        /// `plugins.NAME` or `plugin_defaults`.
        section: String,
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// The settings of `rvirtd.toml`. Every key is optional.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// URI opened when a client connects without naming one (`virsh -c test+unix://...`
    /// always names one; `remote:///` or an empty name does not).
    pub default_uri: String,
    /// The connection URIs clients may open (besides `default_uri`), compared whole:
    /// driver, path and query parameters. Default: `test:///default` and `qemu:///system`
    /// for a system daemon (root, or `--root`), `test:///default` and `qemu:///session`
    /// otherwise. `embed` URIs are never served.
    pub uris: Option<Vec<String>>,
    /// Most clients connected at once; more are accepted and closed at once.
    pub max_clients: usize,
    /// Calls of one client that may run in the worker pool at once (queries on the fast
    /// path do not count); further requests wait unread in the socket.
    pub max_client_requests: usize,
    /// Seconds between keepalive pings to an idle client that asked for keepalive.
    pub keepalive_interval: u64,
    /// Unanswered pings after which such a client is dropped.
    pub keepalive_count: u32,
    /// Mode of the read-write socket.
    pub unix_sock_rw_perms: String,
    /// Mode of the read-only socket.
    pub unix_sock_ro_perms: String,
    /// Also listen on libvirt's own socket paths (`libvirt-sock`, `libvirt-sock-ro`).
    pub libvirt_sockets: bool,
    /// Threads running driver calls.
    pub max_workers: usize,
    /// Directory of the access policies and hooks (`*.wasm`/`*.wat` + `*.toml`, see
    /// docs/policy-abi.md). Default: `policy.d` beside the config file
    /// (`/etc/rvirt/policy.d`, `DIR/etc/rvirt/policy.d` under `--root DIR`).
    pub policy_dir: Option<PathBuf>,
    /// Address of the Prometheus endpoint (`GET /metrics`), e.g. `"127.0.0.1:9177"` or a
    /// bare port on 127.0.0.1. Absent: no endpoint and nothing recorded.
    pub metrics_listen: Option<String>,
    /// libvirtd.conf's `listen_tls`: serve TLS on `tls_port` (`1`/`0` or `true`/`false`).
    /// Unset: off, unless `--listen` is given (then on, as libvirtd's default).
    #[serde(deserialize_with = "flag")]
    pub listen_tls: Option<bool>,
    /// libvirtd.conf's `listen_tcp`: serve plain TCP on `tcp_port`; needs `auth_tcp = "none"`.
    #[serde(deserialize_with = "flag")]
    pub listen_tcp: Option<bool>,
    /// TLS port (libvirt writes it as a string: `"16514"`).
    #[serde(deserialize_with = "port")]
    pub tls_port: String,
    /// TCP port (`"16509"`).
    #[serde(deserialize_with = "port")]
    pub tcp_port: String,
    /// Address the TCP and TLS sockets bind; unset: every address (`[::]`, else `0.0.0.0`).
    pub listen_addr: Option<String>,
    /// Authentication on the TCP socket: only `"none"` (libvirt's default, `"sasl"`, is
    /// refused at start).
    pub auth_tcp: String,
    /// Authentication on the TLS socket: the x509 check, then `"none"` (libvirt's default).
    pub auth_tls: String,
    /// Server private key (default `/etc/pki/libvirt/private/serverkey.pem`).
    pub key_file: Option<PathBuf>,
    /// Server certificate (default `/etc/pki/libvirt/servercert.pem`).
    pub cert_file: Option<PathBuf>,
    /// CA certificate(s) the client certificates must chain to (`/etc/pki/CA/cacert.pem`).
    pub ca_file: Option<PathBuf>,
    /// Revocation list (default `/etc/pki/CA/cacrl.pem`, used when it exists).
    pub crl_file: Option<PathBuf>,
    /// Accept TLS clients without checking their certificate (`1`; libvirt's default `0`).
    #[serde(deserialize_with = "flag")]
    pub tls_no_verify_certificate: Option<bool>,
    /// Subject DNs of the client certificates accepted, with `*` wildcards
    /// (`"C=GB,ST=London,L=London,O=Libvirt Project,CN=*"`); unset: any valid certificate.
    pub tls_allowed_dn_list: Option<Vec<String>>,
    /// Where plugins run unless `[plugins.NAME]` says otherwise: `"process"` (each in a
    /// plugin host process of its own, crash-isolated and reloadable) or `"in-process"`
    /// (loaded into the daemon, as embedders of the host library load them). Unset:
    /// `process` for every hypervisor, storage and network plugin (as libvirt's modular
    /// daemons are its default) except the built-in `test` driver, which holds no guests
    /// and stays in the daemon. A storage or network plugin in a process of its own does
    /// the type-specific work only: the daemon keeps its pools and networks and forwards
    /// each backend call (see docs/ARCHITECTURE.md, "Crash-isolated plugins").
    pub plugin_isolation: Option<Isolation>,
    /// Per-plugin settings, by plugin name (`[plugins.qemu]`).
    pub plugins: std::collections::BTreeMap<String, PluginConfig>,
    /// Defaults of the `[plugins.NAME]` keys for every plugin (`[plugin_defaults]`): each
    /// key a plugin's table does not set is taken from here (`isolation` excepted: that
    /// default is `plugin_isolation`).
    pub plugin_defaults: PluginConfig,
    /// libvirtd.conf's `log_filters`: `"LEVEL:NAME ..."` (1 debug, 2 info, 3 warning,
    /// 4 error; NAME a module path prefix such as `rvirtd::server`). Unset: none
    /// (`RUST_LOG` decides).
    pub log_filters: Option<String>,
    /// libvirtd.conf's `log_outputs`: `"LEVEL:stderr"`, `"LEVEL:file:PATH"`,
    /// `"LEVEL:syslog:IDENT"` (the local syslog socket, `/dev/log`) or `"LEVEL:journald"`
    /// (journald's native socket), several separated by spaces. Unset: stderr.
    pub log_outputs: Option<String>,
}

/// The plugin that runs in the daemon unless configured otherwise: the built-in test
/// driver (no guests to protect from a crash, and the reference of the protocol
/// benchmarks).
pub const BUILTIN_IN_PROCESS: &str = "test";

/// Where a plugin runs.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// A plugin host process of its own (rvirtd's default).
    #[default]
    Process,
    /// Loaded into the daemon.
    InProcess,
}

/// `[plugins.NAME]` in `rvirtd.toml`; every key optional.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PluginConfig {
    /// Overrides `plugin_isolation` for this plugin.
    pub isolation: Option<Isolation>,
    /// Milliseconds a call may take before it fails with a timeout and the (hung)
    /// process is replaced; 0: no deadline. Default 300000 (5 minutes).
    pub call_timeout_ms: Option<u64>,
    /// `RLIMIT_AS` of the plugin process, in bytes.
    pub rlimit_as: Option<u64>,
    /// `RLIMIT_NOFILE` of the plugin process.
    pub rlimit_nofile: Option<u64>,
    /// `RLIMIT_CPU` of the plugin process, in seconds.
    pub rlimit_cpu: Option<u64>,
    /// `RLIMIT_NPROC` of the plugin process's user.
    pub rlimit_nproc: Option<u64>,
    /// Memory limit of the plugin's cgroup, in bytes (v1 `memory.limit_in_bytes`, v2
    /// `memory.max`). Any `cgroup_*` key puts the plugin's processes in a cgroup of their
    /// own (`rvirt/TAG/plugin-NAME`), and the plugin does not start without it.
    pub cgroup_memory_max: Option<u64>,
    /// CPU shares of the plugin's cgroup (v1 `cpu.shares`, 2 to 262144; v2 `cpu.weight`,
    /// clamped to 1 to 10000).
    pub cgroup_cpu_shares: Option<u64>,
    /// CPU time the plugin's cgroup may use per `cgroup_cpu_period_us`, in microseconds
    /// (v1 `cpu.cfs_quota_us`, v2 `cpu.max`).
    pub cgroup_cpu_quota_us: Option<u64>,
    /// Period of `cgroup_cpu_quota_us`, in microseconds (1000 to 1000000; default
    /// the kernel's, 100000).
    pub cgroup_cpu_period_us: Option<u64>,
    /// Most tasks (processes and threads) in the plugin's cgroup (`pids.max`).
    pub cgroup_pids_max: Option<u64>,
}

impl PluginConfig {
    /// Each key unset here taken from `defaults`.
    fn or(self, defaults: &PluginConfig) -> PluginConfig {
        PluginConfig {
            isolation: self.isolation,
            call_timeout_ms: self.call_timeout_ms.or(defaults.call_timeout_ms),
            rlimit_as: self.rlimit_as.or(defaults.rlimit_as),
            rlimit_nofile: self.rlimit_nofile.or(defaults.rlimit_nofile),
            rlimit_cpu: self.rlimit_cpu.or(defaults.rlimit_cpu),
            rlimit_nproc: self.rlimit_nproc.or(defaults.rlimit_nproc),
            cgroup_memory_max: self.cgroup_memory_max.or(defaults.cgroup_memory_max),
            cgroup_cpu_shares: self.cgroup_cpu_shares.or(defaults.cgroup_cpu_shares),
            cgroup_cpu_quota_us: self.cgroup_cpu_quota_us.or(defaults.cgroup_cpu_quota_us),
            cgroup_cpu_period_us: self.cgroup_cpu_period_us.or(defaults.cgroup_cpu_period_us),
            cgroup_pids_max: self.cgroup_pids_max.or(defaults.cgroup_pids_max),
        }
    }

    /// Checks the values of the keys set; `section` names the table in errors.
    fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, value: String, expected: &'static str| {
            Err(ConfigError::PluginKey {
                section: section.to_string(),
                key,
                value,
                expected,
            })
        };
        let ranges: [(&'static str, Option<u64>, u64, u64, &'static str); 5] = [
            (
                "cgroup_memory_max",
                self.cgroup_memory_max,
                1,
                u64::MAX,
                "expected a number of bytes above 0",
            ),
            (
                "cgroup_cpu_shares",
                self.cgroup_cpu_shares,
                2,
                262_144,
                "expected 2 to 262144",
            ),
            (
                "cgroup_cpu_quota_us",
                self.cgroup_cpu_quota_us,
                1000,
                i64::MAX as u64,
                "expected at least 1000 microseconds",
            ),
            (
                "cgroup_cpu_period_us",
                self.cgroup_cpu_period_us,
                1000,
                1_000_000,
                "expected 1000 to 1000000 microseconds",
            ),
            (
                "cgroup_pids_max",
                self.cgroup_pids_max,
                1,
                u64::MAX,
                "expected a number of tasks above 0",
            ),
        ];
        for (key, value, min, max, expected) in ranges {
            if let Some(v) = value
                && !(min..=max).contains(&v)
            {
                return bad(key, v.to_string(), expected);
            }
        }
        Ok(())
    }
}

/// A plugin's settings once defaults are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSettings {
    pub isolation: Isolation,
    pub call_timeout_ms: u64,
    pub limits: PluginConfig,
}

impl PluginSettings {
    /// The per-call deadline, if any.
    pub fn call_timeout(&self) -> Option<std::time::Duration> {
        (self.call_timeout_ms > 0).then(|| std::time::Duration::from_millis(self.call_timeout_ms))
    }

    /// The resource limits to set in the plugin process.
    pub fn rlimits(&self) -> Vec<(rustix::process::Resource, u64)> {
        use rustix::process::Resource as R;
        [
            (R::As, self.limits.rlimit_as),
            (R::Nofile, self.limits.rlimit_nofile),
            (R::Cpu, self.limits.rlimit_cpu),
            (R::Nproc, self.limits.rlimit_nproc),
        ]
        .into_iter()
        .filter_map(|(r, v)| v.map(|v| (r, v)))
        .collect()
    }

    /// The `cgroup_*` keys set, in the order [`PluginSettings::cgroup_limits`] applies
    /// them.
    pub fn cgroup_keys(&self) -> Vec<&'static str> {
        let l = &self.limits;
        [
            ("cgroup_memory_max", l.cgroup_memory_max.is_some()),
            ("cgroup_cpu_shares", l.cgroup_cpu_shares.is_some()),
            ("cgroup_cpu_quota_us", l.cgroup_cpu_quota_us.is_some()),
            ("cgroup_cpu_period_us", l.cgroup_cpu_period_us.is_some()),
            ("cgroup_pids_max", l.cgroup_pids_max.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }

    /// The cgroup limits, one group of keys at a time (the CPU quota and period go
    /// together: v2 writes both to `cpu.max`), each with the keys it comes from; empty
    /// when no `cgroup_*` key is set (the plugin then gets no cgroup of its own).
    pub fn cgroup_limits(&self) -> Vec<(Vec<&'static str>, rvirt_cgroup::Limits)> {
        use rvirt_cgroup::Limits;
        let l = &self.limits;
        let mut out = Vec::new();
        if let Some(b) = l.cgroup_memory_max {
            let limits = Limits {
                memory_bytes: Some(b),
                ..Limits::default()
            };
            out.push((vec!["cgroup_memory_max"], limits));
        }
        if let Some(s) = l.cgroup_cpu_shares {
            let limits = Limits {
                cpu_shares: Some(s),
                ..Limits::default()
            };
            out.push((vec!["cgroup_cpu_shares"], limits));
        }
        if l.cgroup_cpu_quota_us.is_some() || l.cgroup_cpu_period_us.is_some() {
            let keys = ["cgroup_cpu_period_us", "cgroup_cpu_quota_us"]
                .into_iter()
                .zip([l.cgroup_cpu_period_us, l.cgroup_cpu_quota_us])
                .filter_map(|(k, v)| v.map(|_| k))
                .collect();
            let limits = Limits {
                cpu_period: l.cgroup_cpu_period_us,
                cpu_quota: l
                    .cgroup_cpu_quota_us
                    .map(|q| i64::try_from(q).unwrap_or(i64::MAX)),
                ..Limits::default()
            };
            out.push((keys, limits));
        }
        if let Some(n) = l.cgroup_pids_max {
            let limits = Limits {
                pids_max: Some(n),
                ..Limits::default()
            };
            out.push((vec!["cgroup_pids_max"], limits));
        }
        out
    }
}

/// libvirtd.conf's integer flags (`listen_tls = 1`), also as TOML booleans.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(Some(b)),
        Flag::Int(0) => Ok(Some(false)),
        Flag::Int(1) => Ok(Some(true)),
        Flag::Int(n) => Err(serde::de::Error::custom(format!(
            "expected 0 or 1, found {n}"
        ))),
    }
}

/// Ports as libvirtd.conf writes them (`"16514"`), or as TOML integers.
fn port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Text(String),
        Int(i64),
    }
    Ok(match Port::deserialize(d)? {
        Port::Text(s) => s,
        Port::Int(n) => n.to_string(),
    })
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_uri: "test:///default".into(),
            uris: None,
            max_clients: 5000,
            max_client_requests: 5,
            keepalive_interval: 5,
            keepalive_count: 5,
            unix_sock_rw_perms: "0700".into(),
            unix_sock_ro_perms: "0777".into(),
            libvirt_sockets: false,
            max_workers: 8,
            policy_dir: None,
            metrics_listen: None,
            listen_tls: None,
            listen_tcp: None,
            tls_port: "16514".into(),
            tcp_port: "16509".into(),
            listen_addr: None,
            auth_tcp: "sasl".into(),
            auth_tls: "none".into(),
            key_file: None,
            cert_file: None,
            ca_file: None,
            crl_file: None,
            tls_no_verify_certificate: None,
            tls_allowed_dn_list: None,
            plugin_isolation: None,
            plugins: Default::default(),
            plugin_defaults: PluginConfig::default(),
            log_filters: None,
            log_outputs: None,
        }
    }
}

impl Config {
    /// Loads `path`; a missing file is an error only when `required`.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        let config = Config::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses the TOML text of a config file.
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks the plugin settings: errors name the table (`plugins.NAME` or
    /// `plugin_defaults`) and the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(i) = self.plugin_defaults.isolation {
            return Err(ConfigError::PluginKey {
                section: "plugin_defaults".into(),
                key: "isolation",
                value: format!("{i:?}"),
                expected: "the default isolation is the top-level plugin_isolation key",
            });
        }
        self.plugin_defaults.validate("plugin_defaults")?;
        for (name, c) in &self.plugins {
            c.validate(&format!("plugins.{name}"))?;
        }
        Ok(())
    }

    /// The settings of plugin `name`.
    pub fn plugin_settings(&self, name: &str) -> PluginSettings {
        let c = self
            .plugins
            .get(name)
            .cloned()
            .unwrap_or_default()
            .or(&self.plugin_defaults);
        PluginSettings {
            isolation: c.isolation.or(self.plugin_isolation).unwrap_or(
                if name == BUILTIN_IN_PROCESS {
                    Isolation::InProcess
                } else {
                    Isolation::Process
                },
            ),
            call_timeout_ms: c.call_timeout_ms.unwrap_or(300_000),
            limits: c,
        }
    }

    /// The URIs served: `uris` (or the default for the layout) and `default_uri`.
    pub fn served_uris(&self, system: bool) -> Vec<String> {
        let mut list = self.uris.clone().unwrap_or_else(|| {
            let qemu = if system {
                "qemu:///system"
            } else {
                "qemu:///session"
            };
            vec!["test:///default".into(), qemu.into()]
        });
        list.push(self.default_uri.clone());
        list
    }

    /// The read-write socket mode.
    pub fn rw_mode(&self) -> Result<u32, ConfigError> {
        parse_mode(&self.unix_sock_rw_perms)
    }

    /// The read-only socket mode.
    pub fn ro_mode(&self) -> Result<u32, ConfigError> {
        parse_mode(&self.unix_sock_ro_perms)
    }
}

impl Config {
    /// The TCP and TLS sockets to open: `(port, tls)`. `--listen` (`listen`) turns TLS on
    /// unless the file says `listen_tls = 0`. Refuses plain TCP without `auth_tcp = "none"`
    /// and any authentication rvirtd cannot do.
    pub fn network_sockets(&self, listen: bool) -> Result<Vec<(u16, bool)>, ConfigError> {
        let mut out = Vec::new();
        if self.listen_tls.unwrap_or(listen) {
            if self.auth_tls != "none" {
                return Err(ConfigError::Auth {
                    key: "auth_tls",
                    value: self.auth_tls.clone(),
                    hint: " (the client certificate is still required)",
                });
            }
            out.push((parse_port("tls_port", &self.tls_port)?, true));
        }
        if self.listen_tcp.unwrap_or(false) {
            if self.auth_tcp != "none" {
                return Err(ConfigError::Auth {
                    key: "auth_tcp",
                    value: self.auth_tcp.clone(),
                    hint: " to serve unauthenticated, unencrypted TCP, or use listen_tls",
                });
            }
            out.push((parse_port("tcp_port", &self.tcp_port)?, false));
        }
        Ok(out)
    }
}

fn parse_port(key: &'static str, value: &str) -> Result<u16, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Port {
        key,
        value: value.into(),
    })
}

fn parse_mode(text: &str) -> Result<u32, ConfigError> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| ConfigError::Perms(text.into()))
}

/// Where the daemon keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Socket directory (`/run/rvirt`).
    pub run_dir: PathBuf,
    /// State directory (`/var/lib/rvirt`).
    pub state_dir: PathBuf,
    /// Default config file (`/etc/rvirt/rvirtd.toml`).
    pub config_file: PathBuf,
    /// libvirt's socket directory, for `--libvirt-sockets`.
    pub libvirt_run_dir: PathBuf,
    /// Whether this is a system (root) daemon: it then also has a read-only socket on
    /// libvirt's paths.
    pub system: bool,
    /// Prefix of libvirt's default TLS files (`/etc/pki/...`): `/`, or `--root DIR`.
    pub pki_root: PathBuf,
}

impl Layout {
    /// `--root DIR`: everything under `DIR`.
    pub fn under_root(root: &Path) -> Layout {
        Layout {
            run_dir: root.join("run"),
            state_dir: root.join("var/lib/rvirt"),
            config_file: root.join("etc/rvirt/rvirtd.toml"),
            libvirt_run_dir: root.join("run/libvirt"),
            system: true,
            pki_root: root.into(),
        }
    }

    /// The system layout for root, the session layout (`$XDG_RUNTIME_DIR/rvirt`) otherwise.
    pub fn default_for(
        uid: u32,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Layout, ConfigError> {
        if uid == 0 {
            return Ok(Layout {
                run_dir: "/run/rvirt".into(),
                state_dir: "/var/lib/rvirt".into(),
                config_file: "/etc/rvirt/rvirtd.toml".into(),
                libvirt_run_dir: "/run/libvirt".into(),
                system: true,
                pki_root: "/".into(),
            });
        }
        let runtime = env("XDG_RUNTIME_DIR")
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::NoRuntimeDir)?;
        let home = env("HOME").unwrap_or_else(|| "/".into());
        let config_home = env("XDG_CONFIG_HOME")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("{home}/.config"));
        let data_home = env("XDG_DATA_HOME")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("{home}/.local/share"));
        Ok(Layout {
            run_dir: PathBuf::from(&runtime).join("rvirt"),
            state_dir: PathBuf::from(data_home).join("rvirt"),
            config_file: PathBuf::from(config_home).join("rvirt/rvirtd.toml"),
            libvirt_run_dir: PathBuf::from(runtime).join("libvirt"),
            system: false,
            pki_root: "/".into(),
        })
    }

    /// The default policy directory: `policy.d` beside the config file.
    #[cfg_attr(not(feature = "policy"), allow(dead_code))]
    pub fn policy_dir(&self) -> PathBuf {
        self.config_file
            .parent()
            .unwrap_or(Path::new("/"))
            .join("policy.d")
    }

    /// What tells this daemon's cgroups (`rvirt/TAG/plugin-NAME`) from other daemons':
    /// `system` for the system daemon, `session-UID` for a user's, `root-HASH` for
    /// `--root DIR` (a 64-bit FNV-1a hash of the directory, absolute, in hex).
    pub fn cgroup_tag(&self, uid: u32) -> String {
        if self.pki_root != Path::new("/") {
            let root =
                std::path::absolute(&self.pki_root).unwrap_or_else(|_| self.pki_root.clone());
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in root.as_os_str().as_encoded_bytes() {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            format!("root-{h:016x}")
        } else if self.system {
            "system".into()
        } else {
            format!("session-{uid}")
        }
    }

    /// libvirt's default path of a TLS file (`etc/pki/...`), under `--root` if given.
    pub fn pki(&self, relative: &str) -> PathBuf {
        self.pki_root.join(relative)
    }

    /// The read-write socket.
    pub fn rw_socket(&self) -> PathBuf {
        self.run_dir.join("rvirt-sock")
    }

    /// The read-only socket.
    pub fn ro_socket(&self) -> PathBuf {
        self.run_dir.join("rvirt-sock-ro")
    }

    /// libvirt's read-write socket path.
    pub fn libvirt_rw_socket(&self) -> PathBuf {
        self.libvirt_run_dir.join("libvirt-sock")
    }

    /// The admin program's socket (`virt-admin -c 'libvirtd:///system?socket=...'`).
    pub fn admin_socket(&self) -> PathBuf {
        self.run_dir.join("rvirt-admin-sock")
    }

    /// libvirt's admin socket path (`libvirtd:///system`'s default), for `libvirt_sockets`.
    pub fn libvirt_admin_socket(&self) -> PathBuf {
        self.libvirt_run_dir.join("libvirt-admin-sock")
    }

    /// libvirt's read-only socket path (system daemons only, like libvirt).
    pub fn libvirt_ro_socket(&self) -> Option<PathBuf> {
        self.system
            .then(|| self.libvirt_run_dir.join("libvirt-sock-ro"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_isolation_settings() {
        let c = Config::default();
        let s = c.plugin_settings("qemu");
        assert_eq!(s.isolation, Isolation::Process, "rvirtd's default");
        assert_eq!(
            c.plugin_settings("test").isolation,
            Isolation::InProcess,
            "the built-in test driver stays in the daemon unless configured"
        );
        assert_eq!(
            Config::parse("plugin_isolation = \"process\"\n")
                .unwrap()
                .plugin_settings("test")
                .isolation,
            Isolation::Process
        );
        assert_eq!(
            Config::parse("plugin_isolation = \"in-process\"\n")
                .unwrap()
                .plugin_settings("qemu")
                .isolation,
            Isolation::InProcess
        );
        assert_eq!(s.call_timeout(), Some(std::time::Duration::from_secs(300)));
        assert!(s.rlimits().is_empty());
        let c = Config::parse(
            "plugin_isolation = \"process\"\n[plugins.test]\nisolation = \"in-process\"\n\
             [plugins.qemu]\ncall_timeout_ms = 0\nrlimit_nofile = 256\nrlimit_as = 1073741824\n",
        )
        .unwrap();
        assert_eq!(c.plugin_settings("test").isolation, Isolation::InProcess);
        let q = c.plugin_settings("qemu");
        assert_eq!(q.isolation, Isolation::Process);
        assert_eq!(q.call_timeout(), None);
        assert_eq!(
            q.rlimits(),
            vec![
                (rustix::process::Resource::As, 1 << 30),
                (rustix::process::Resource::Nofile, 256)
            ]
        );
        assert_eq!(c.plugin_settings("other").isolation, Isolation::Process);
        assert!(Config::parse("[plugins.qemu]\nisolation = \"thread\"\n").is_err());
        assert!(Config::parse("[plugins.qemu]\nrlimit_stack = 1\n").is_err());
    }

    #[test]
    fn plugin_cgroup_settings_and_their_defaults() {
        let c = Config::default();
        assert!(c.plugin_settings("qemu").cgroup_limits().is_empty());
        assert!(c.plugin_settings("qemu").cgroup_keys().is_empty());
        let c = Config::parse(
            "[plugin_defaults]\ncgroup_pids_max = 64\nrlimit_nofile = 100\n\
             [plugins.qemu]\ncgroup_memory_max = 268435456\ncgroup_cpu_quota_us = 50000\n\
             cgroup_cpu_period_us = 100000\ncgroup_cpu_shares = 512\n\
             [plugins.lxc]\ncgroup_pids_max = 8\n",
        )
        .unwrap();
        c.validate().unwrap();
        let q = c.plugin_settings("qemu");
        assert_eq!(
            q.cgroup_keys(),
            [
                "cgroup_memory_max",
                "cgroup_cpu_shares",
                "cgroup_cpu_quota_us",
                "cgroup_cpu_period_us",
                "cgroup_pids_max"
            ]
        );
        let limits = q.cgroup_limits();
        let keys: Vec<_> = limits.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            keys,
            [
                vec!["cgroup_memory_max"],
                vec!["cgroup_cpu_shares"],
                vec!["cgroup_cpu_period_us", "cgroup_cpu_quota_us"],
                vec!["cgroup_pids_max"],
            ]
        );
        assert_eq!(limits[0].1.memory_bytes, Some(256 << 20));
        assert_eq!(limits[1].1.cpu_shares, Some(512));
        assert_eq!(
            (limits[2].1.cpu_quota, limits[2].1.cpu_period),
            (Some(50_000), Some(100_000))
        );
        assert_eq!(limits[3].1.pids_max, Some(64), "from plugin_defaults");
        assert_eq!(q.rlimits(), [(rustix::process::Resource::Nofile, 100)]);
        // a plugin's own key wins over the default
        let l = c.plugin_settings("lxc").cgroup_limits();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].1.pids_max, Some(8));
        // only the default
        assert_eq!(
            c.plugin_settings("other").cgroup_keys(),
            ["cgroup_pids_max"]
        );
        assert!(Config::parse("[plugins.qemu]\ncgroup_memory = 1\n").is_err());
    }

    #[test]
    fn invalid_plugin_values_name_the_table_and_the_key() {
        for (text, want) in [
            (
                "[plugins.qemu]\ncgroup_cpu_shares = 1\n",
                "[plugins.qemu] cgroup_cpu_shares = 1: expected 2 to 262144",
            ),
            (
                "[plugins.test]\ncgroup_cpu_period_us = 999\n",
                "[plugins.test] cgroup_cpu_period_us = 999",
            ),
            (
                "[plugins.test]\ncgroup_cpu_quota_us = 10\n",
                "[plugins.test] cgroup_cpu_quota_us = 10",
            ),
            (
                "[plugin_defaults]\ncgroup_pids_max = 0\n",
                "[plugin_defaults] cgroup_pids_max = 0",
            ),
            (
                "[plugins.x]\ncgroup_memory_max = 0\n",
                "[plugins.x] cgroup_memory_max = 0",
            ),
            (
                "[plugin_defaults]\nisolation = \"process\"\n",
                "[plugin_defaults] isolation = Process: the default isolation is the top-level plugin_isolation key",
            ),
        ] {
            let e = Config::parse(text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{text}: {e}");
        }
        // load validates
        let dir = std::env::temp_dir().join(format!("rvirtd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("rvirtd.toml");
        std::fs::write(&f, "[plugins.qemu]\ncgroup_pids_max = 0\n").unwrap();
        let e = Config::load(&f, true).unwrap_err().to_string();
        assert!(e.contains("[plugins.qemu] cgroup_pids_max = 0"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn defaults_and_parsing() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let c = Config::parse("default_uri = \"test:///tmp/x.xml\"\nmax_clients = 10\n").unwrap();
        assert_eq!(
            (c.default_uri.as_str(), c.max_clients),
            ("test:///tmp/x.xml", 10)
        );
        assert!(Config::parse("bogus = 1").is_err());
        assert_eq!(
            Config::default().served_uris(true),
            ["test:///default", "qemu:///system", "test:///default"]
        );
        assert_eq!(Config::default().served_uris(false)[1], "qemu:///session");
        let c =
            Config::parse("uris = [\"qemu:///system\"]\ndefault_uri = \"qemu:///system\"").unwrap();
        assert_eq!(c.served_uris(false), ["qemu:///system", "qemu:///system"]);
        assert_eq!(Config::default().rw_mode().unwrap(), 0o700);
        let bad = Config {
            unix_sock_ro_perms: "999".into(),
            ..Config::default()
        };
        assert!(matches!(bad.ro_mode(), Err(ConfigError::Perms(_))));
    }

    #[test]
    fn network_settings() {
        let c = Config::default();
        assert!(c.network_sockets(false).unwrap().is_empty());
        assert_eq!(c.network_sockets(true).unwrap(), [(16514, true)]);
        let c = Config::parse(
            "listen_tls = 0\nlisten_tcp = 1\nauth_tcp = \"none\"\ntcp_port = \"1234\"",
        )
        .unwrap();
        assert_eq!(c.network_sockets(true).unwrap(), [(1234, false)]);
        let c = Config::parse("listen_tcp = true").unwrap();
        let e = c.network_sockets(false).unwrap_err().to_string();
        assert!(e.contains("auth_tcp = \"sasl\""), "{e}");
        let c = Config::parse("listen_tls = 1\ntls_port = 99999").unwrap();
        assert!(matches!(
            c.network_sockets(false),
            Err(ConfigError::Port {
                key: "tls_port",
                ..
            })
        ));
        assert!(Config::parse("listen_tls = 2").is_err());
        let c = Config::parse("tls_allowed_dn_list = [\"CN=a\"]\nca_file = \"/x/ca.pem\"").unwrap();
        assert_eq!(c.tls_allowed_dn_list.unwrap(), ["CN=a"]);
        assert_eq!(
            Layout::under_root(Path::new("/r")).pki("etc/pki/CA/cacert.pem"),
            Path::new("/r/etc/pki/CA/cacert.pem")
        );
    }

    #[test]
    fn layouts() {
        let l = Layout::under_root(Path::new("/tmp/r"));
        assert_eq!(l.rw_socket(), Path::new("/tmp/r/run/rvirt-sock"));
        assert_eq!(l.policy_dir(), Path::new("/tmp/r/etc/rvirt/policy.d"));
        assert_eq!(l.ro_socket(), Path::new("/tmp/r/run/rvirt-sock-ro"));
        assert_eq!(
            l.libvirt_ro_socket().unwrap(),
            Path::new("/tmp/r/run/libvirt/libvirt-sock-ro")
        );
        let root = Layout::default_for(0, |_| None).unwrap();
        assert_eq!(root.rw_socket(), Path::new("/run/rvirt/rvirt-sock"));
        let env = |k: &str| match k {
            "XDG_RUNTIME_DIR" => Some("/run/user/1000".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        let user = Layout::default_for(1000, env).unwrap();
        assert_eq!(
            user.rw_socket(),
            Path::new("/run/user/1000/rvirt/rvirt-sock")
        );
        assert_eq!(
            user.config_file,
            Path::new("/home/u/.config/rvirt/rvirtd.toml")
        );
        assert!(user.libvirt_ro_socket().is_none());
        assert_eq!(root.cgroup_tag(0), "system");
        assert_eq!(user.cgroup_tag(1000), "session-1000");
        let a = Layout::under_root(Path::new("/tmp/a")).cgroup_tag(0);
        let b = Layout::under_root(Path::new("/tmp/b")).cgroup_tag(0);
        assert!(a.starts_with("root-") && a.len() == 21, "{a}");
        assert_ne!(a, b, "different roots, different groups");
        assert_eq!(a, Layout::under_root(Path::new("/tmp/a")).cgroup_tag(0));
        assert!(matches!(
            Layout::default_for(1000, |_| None),
            Err(ConfigError::NoRuntimeDir)
        ));
    }
}

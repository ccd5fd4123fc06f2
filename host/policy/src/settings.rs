//! The per-module settings file (`NAME.toml` beside `NAME.wasm`).

use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// Errors in a settings file.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid settings: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("unknown hook point '{0}' (known: {known})", known = HookPoint::names().join(", "))]
    UnknownHook(String),
    #[error("'hooks' is only valid for kind = \"hook\"")]
    HooksOnAccess,
    #[error("{field} must be greater than 0")]
    Zero { field: &'static str },
}

/// What a module is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Exports `rvirt_check`: asked before every call (and for list filtering).
    Access,
    /// Exports `rvirt_hook`: asked at the hook points listed in `hooks`.
    Hook,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Hook => "hook",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a failed call of the module (trap, out of fuel, timeout, memory limit, garbage
/// answer) resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Deny the request (access) or veto the operation (hook).
    #[default]
    Closed,
    /// Ignore the module for this request, as if it had allowed it.
    Open,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Closed => "closed",
            FailMode::Open => "open",
        }
    }
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! hook_points {
    ($($variant:ident = $name:literal, amend = $amend:literal;)*) => {
        /// A lifecycle point where hook modules run.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum HookPoint { $($variant,)* }

        impl HookPoint {
            /// Every hook point.
            pub const ALL: &'static [HookPoint] = &[$(HookPoint::$variant,)*];

            /// The name used in settings files and in the `hook.point` request key.
            pub fn as_str(self) -> &'static str {
                match self { $(HookPoint::$variant => $name,)* }
            }

            /// Whether a hook may answer "amend" with new XML at this point.
            pub fn amendable(self) -> bool {
                match self { $(HookPoint::$variant => $amend,)* }
            }

            fn names() -> Vec<&'static str> {
                vec![$($name,)*]
            }
        }

        impl FromStr for HookPoint {
            type Err = SettingsError;
            fn from_str(s: &str) -> Result<Self, SettingsError> {
                match s {
                    $($name => Ok(HookPoint::$variant),)*
                    _ => Err(SettingsError::UnknownHook(s.to_owned())),
                }
            }
        }
    };
}

hook_points! {
    DomainDefine = "domain:define", amend = true;
    DomainPrepare = "domain:prepare", amend = true;
    DomainStart = "domain:start", amend = false;
    DomainStarted = "domain:started", amend = false;
    DomainStopped = "domain:stopped", amend = false;
    DomainRelease = "domain:release", amend = false;
    DomainMigrate = "domain:migrate", amend = true;
    NetworkStart = "network:start", amend = false;
    NetworkStopped = "network:stopped", amend = false;
    NetworkPortCreated = "network:port-created", amend = false;
    PoolStart = "pool:start", amend = false;
    PoolStopped = "pool:stopped", amend = false;
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default fuel per call: about a million wasm instructions (~1 ms of JIT code).
pub const DEFAULT_FUEL: u64 = 1_000_000;
/// Default memory cap of a module: 4 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 4 << 20;
/// Default wall-clock deadline of a call.
pub const DEFAULT_TIMEOUT_MS: u64 = 100;
/// Default position in the stack (lower runs first; ties by file name).
pub const DEFAULT_ORDER: i64 = 100;

/// The raw settings file. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSettings {
    kind: Option<Kind>,
    hooks: Option<Vec<String>>,
    order: Option<i64>,
    fail: Option<FailMode>,
    fuel: Option<u64>,
    memory_bytes: Option<u64>,
    timeout_ms: Option<u64>,
}

/// The settings of one module, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `access` or `hook`; `None` = inferred from the module's exports.
    pub kind: Option<Kind>,
    /// Hook points (hook modules); empty = every point.
    pub hooks: Vec<HookPoint>,
    /// Position in the stack: lower first, ties broken by file name.
    pub order: i64,
    /// What a failed call resolves to.
    pub fail: FailMode,
    /// Fuel per call (≈ wasm instructions).
    pub fuel: u64,
    /// Largest linear memory, bytes.
    pub memory_bytes: u64,
    /// Wall-clock deadline per call, milliseconds (checked at 10 ms granularity).
    pub timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            kind: None,
            hooks: Vec::new(),
            order: DEFAULT_ORDER,
            fail: FailMode::Closed,
            fuel: DEFAULT_FUEL,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

impl Settings {
    /// Parses the TOML text of a settings file.
    pub fn parse(text: &str) -> Result<Settings, SettingsError> {
        let raw: RawSettings = toml::from_str(text)?;
        let d = Settings::default();
        let hooks = raw
            .hooks
            .unwrap_or_default()
            .iter()
            .map(|h| h.parse())
            .collect::<Result<Vec<HookPoint>, _>>()?;
        if raw.kind == Some(Kind::Access) && !hooks.is_empty() {
            return Err(SettingsError::HooksOnAccess);
        }
        let s = Settings {
            kind: raw.kind,
            hooks,
            order: raw.order.unwrap_or(d.order),
            fail: raw.fail.unwrap_or(d.fail),
            fuel: raw.fuel.unwrap_or(d.fuel),
            memory_bytes: raw.memory_bytes.unwrap_or(d.memory_bytes),
            timeout_ms: raw.timeout_ms.unwrap_or(d.timeout_ms),
        };
        for (field, v) in [
            ("fuel", s.fuel),
            ("memory_bytes", s.memory_bytes),
            ("timeout_ms", s.timeout_ms),
        ] {
            if v == 0 {
                return Err(SettingsError::Zero { field });
            }
        }
        Ok(s)
    }

    /// Whether a hook module with these settings runs at `point`.
    pub fn hooks_at(&self, point: HookPoint) -> bool {
        self.hooks.is_empty() || self.hooks.contains(&point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_full_file() {
        assert_eq!(Settings::parse("").unwrap(), Settings::default());
        let s = Settings::parse(
            "kind = \"hook\"\nhooks = [\"domain:start\", \"network:port-created\"]\norder = 5\n\
             fail = \"open\"\nfuel = 10\nmemory_bytes = 65536\ntimeout_ms = 20\n",
        )
        .unwrap();
        assert_eq!(s.kind, Some(Kind::Hook));
        assert_eq!(
            s.hooks,
            vec![HookPoint::DomainStart, HookPoint::NetworkPortCreated]
        );
        assert!(s.hooks_at(HookPoint::DomainStart));
        assert!(!s.hooks_at(HookPoint::DomainDefine));
        assert_eq!((s.order, s.fail, s.fuel), (5, FailMode::Open, 10));
    }

    #[test]
    fn bad_files_are_refused() {
        let e = Settings::parse("hooks = [\"domain:explode\"]").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown hook point 'domain:explode'"),
            "{e}"
        );
        assert!(Settings::parse("fail = \"maybe\"").is_err());
        assert!(Settings::parse("colour = 1").is_err());
        assert!(Settings::parse("fuel = 0").is_err());
        assert!(Settings::parse("kind = \"access\"\nhooks = [\"domain:start\"]").is_err());
    }

    #[test]
    fn hook_points_round_trip() {
        for p in HookPoint::ALL {
            assert_eq!(p.as_str().parse::<HookPoint>().unwrap(), *p);
        }
        assert!(HookPoint::DomainDefine.amendable());
        assert!(!HookPoint::DomainStart.amendable());
    }
}

//! rvirt's plugin registry.
//!
//! - [`package`]: the package format: a gzip'd tar holding `manifest.json` (name, version,
//!   kind, plugin API version, target triple, description, what it serves, the SHA-256 of
//!   each file, the publisher's public key), `manifest.sig` (the publisher's ed25519
//!   signature of `manifest.json`'s exact bytes) and the plugin file under `files/`.
//! - [`index`]: the static index, servable by any HTTP server or read from a directory:
//!   one file per plugin name (`index/ac/me/acme`, as Cargo's sparse index lays names out)
//!   holding one JSON line per published version, a `names` file for search, and the
//!   packages under `packages/NAME/`.
//! - [`resolve`]: semver resolution that never picks a version whose plugin API this host
//!   refuses, a yanked version or another target's package, and says why it skipped each.
//! - [`install`]: verified, staged, atomic installs into a plugin directory, with pins.
//! - [`serve`]: a small static HTTP server for an index directory (tests, benches, and
//!   `rvirt-registry serve`).
//!
//! The `rvirt-registry` binary builds, signs, publishes and yanks; `rvirt plugin
//! search|install|upgrade|remove|list --available` is the operator's side.

pub mod config;
pub mod index;
pub mod install;
pub mod keys;
pub mod package;
pub mod resolve;
pub mod serve;

/// The target triple this build runs on (`x86_64-unknown-linux-gnu`): the packages it
/// installs must have been built for it.
pub const HOST_TARGET: &str = env!("RVIRT_REGISTRY_TARGET");

/// The plugin API version of the host this crate was built with.
pub fn host_api() -> semver::Version {
    semver::Version::parse(rvirt_host::PLUGIN_API_VERSION).unwrap_or(semver::Version::new(0, 0, 0))
}

/// Why this host refuses a plugin built against `plugin_api`, or `None` when it loads it
/// (the loader's rule: same major, minor not newer than the host's).
pub fn api_refusal(plugin_api: &str, host: &semver::Version) -> Option<String> {
    let supported = format!("{}.0 to {}.{}", host.major, host.major, host.minor);
    match semver::Version::parse(plugin_api) {
        Err(_) => Some(format!(
            "its plugin API version '{plugin_api}' is not a semver version"
        )),
        Ok(v) if v.major != host.major || v.minor > host.minor => Some(format!(
            "built against plugin API {v}; this host loads plugin API {supported}"
        )),
        Ok(_) => None,
    }
}

/// SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Writes `data` to `path` atomically (temporary file in the same directory, fsync,
/// rename).
pub fn atomic_write(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_rule_matches_the_loader() {
        let host = semver::Version::new(1, 5, 0);
        assert_eq!(api_refusal("1.5.0", &host), None);
        assert_eq!(api_refusal("1.0.0", &host), None);
        assert_eq!(
            api_refusal("1.6.0", &host).unwrap(),
            "built against plugin API 1.6.0; this host loads plugin API 1.0 to 1.5"
        );
        assert!(api_refusal("2.0.0", &host).is_some());
        assert!(api_refusal("x", &host).is_some());
    }
}

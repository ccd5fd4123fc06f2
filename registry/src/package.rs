//! The package format: a gzip'd tar of `manifest.json`, `manifest.sig` and `files/*`.
//!
//! `manifest.json` names the plugin (name, version, kind, plugin API version, target
//! triple, description, the URI schemes, pool types and forward modes it serves), lists
//! every file with its SHA-256 and size, and carries the publisher's public key;
//! `manifest.sig` is the publisher's ed25519 signature of `manifest.json`'s exact bytes
//! (base64). A package verifies when the signature holds, the key is trusted and every
//! file has its listed size and hash.

use crate::keys;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use std::{io::Read, path::Path};

/// The format version written in every manifest.
pub const FORMAT: u32 = 1;

/// The file extension of packages.
pub const EXTENSION: &str = "rvpkg";

/// One file of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name (a plain file name: the plugin's shared object).
    pub path: String,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// What a plugin is, as a package states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PluginFacts {
    /// Plugin name (the manifest's).
    pub name: String,
    /// The plugin's version (semver).
    pub version: String,
    /// Kind: `hypervisor`, `storage`, `network`.
    pub kind: String,
    /// The plugin API version it was built against.
    pub plugin_api: String,
    /// One line about it.
    pub description: String,
    /// URI schemes served.
    #[serde(default)]
    pub schemes: Vec<String>,
    /// Storage pool types served.
    #[serde(default)]
    pub pool_types: Vec<String>,
    /// Network forward modes served.
    #[serde(default)]
    pub forward_modes: Vec<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageManifest {
    /// [`FORMAT`].
    pub format: u32,
    /// What the plugin is.
    #[serde(flatten)]
    pub facts: PluginFacts,
    /// The target triple it was built for.
    pub target: String,
    /// Its files.
    pub files: Vec<FileEntry>,
    /// The publisher's public key (`ed25519:BASE64`).
    pub publisher_key: String,
}

/// Errors of packages.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The archive is unreadable.
    #[error("not a readable rvirt package: {0}")]
    Archive(String),
    /// A required member is missing.
    #[error("the package has no {0}")]
    Missing(&'static str),
    /// The manifest does not parse.
    #[error("the package manifest does not parse: {0}")]
    Manifest(String),
    /// A file's hash or size differs from the manifest.
    #[error("checksum mismatch: file '{path}' has SHA-256 {actual}, the manifest says {expected}")]
    FileChecksum {
        /// The file.
        path: String,
        /// From the manifest.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The manifest lists a file the archive lacks, or the archive holds an unlisted one.
    #[error("the package's files do not match its manifest: {0}")]
    Files(String),
    /// The signature does not verify.
    #[error(transparent)]
    Signature(#[from] keys::KeyError),
    /// The key is not trusted.
    #[error(
        "untrusted key: the package is signed by {key}, which is not among the trusted keys of the configuration (trusted_keys in {config})"
    )]
    Untrusted {
        /// The publisher's key.
        key: String,
        /// The configuration file, for the message.
        config: String,
    },
    /// Reading the plugin or writing failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin's facts could not be read from it.
    #[error("{0}")]
    Plugin(String),
}

/// A package read into memory.
#[derive(Debug, Clone)]
pub struct Package {
    /// The parsed manifest.
    pub manifest: PackageManifest,
    /// `manifest.json` as stored (what the signature covers).
    pub manifest_bytes: Vec<u8>,
    /// `manifest.sig` (base64).
    pub signature: String,
    /// The files, by name.
    pub files: Vec<(String, Vec<u8>)>,
}

/// The package file name: `NAME-VERSION-TARGET.rvpkg`.
pub fn file_name(name: &str, version: &str, target: &str) -> String {
    format!("{name}-{version}-{target}.{EXTENSION}")
}

/// Reads a plugin's facts by loading it through the host runtime (which checks its API
/// version and layout as it would at run time).
pub fn facts_from_plugin(path: &Path) -> Result<PluginFacts, PackageError> {
    let dir = std::env::temp_dir().join(format!(
        "rvirt-registry-inspect-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let io = |what: &str| {
        let what = what.to_string();
        move |source| PackageError::Io { what, source }
    };
    std::fs::create_dir_all(&dir).map_err(io("cannot make a scratch directory"))?;
    let file = path
        .file_name()
        .ok_or_else(|| PackageError::Plugin(format!("'{}' names no file", path.display())))?;
    let copy = dir.join(file);
    std::fs::copy(path, &copy).map_err(io(&format!("cannot read '{}'", path.display())))?;
    let rt = rvirt_host::Runtime::with_search_path(vec![dir.clone()]);
    let r = match rt.plugins().first().map(|r| r.status.clone()) {
        Some(rvirt_host::PluginStatus::Loaded(m)) => Ok(PluginFacts {
            name: m.name.clone(),
            version: m.version.clone(),
            kind: m.kind.clone(),
            plugin_api: m.api_version.clone(),
            description: m.description.clone(),
            schemes: m.schemes.clone(),
            pool_types: m.pool_types.clone(),
            forward_modes: m.forward_modes.clone(),
        }),
        Some(rvirt_host::PluginStatus::Refused(e)) => Err(PackageError::Plugin(format!(
            "this host cannot read the plugin's manifest ({e}); give --name, --version, --kind and --plugin-api"
        ))),
        _ => Err(PackageError::Plugin(format!(
            "'{}' is not a plugin file (expected a .so)",
            path.display()
        ))),
    };
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// Builds and signs a package of the plugin file `plugin`: answers its file name and bytes.
pub fn build(
    plugin: &Path,
    facts: &PluginFacts,
    target: &str,
    key: &SigningKey,
) -> Result<(String, Vec<u8>), PackageError> {
    let data = std::fs::read(plugin).map_err(|source| PackageError::Io {
        what: format!("cannot read '{}'", plugin.display()),
        source,
    })?;
    let fname = plugin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| PackageError::Plugin(format!("'{}' names no file", plugin.display())))?;
    semver::Version::parse(&facts.version)
        .map_err(|e| PackageError::Plugin(format!("version '{}': {e}", facts.version)))?;
    semver::Version::parse(&facts.plugin_api)
        .map_err(|e| PackageError::Plugin(format!("plugin API '{}': {e}", facts.plugin_api)))?;
    let manifest = PackageManifest {
        format: FORMAT,
        facts: facts.clone(),
        target: target.to_string(),
        files: vec![FileEntry {
            path: fname.clone(),
            sha256: crate::sha256_hex(&data),
            size: data.len() as u64,
        }],
        publisher_key: keys::public_text(&key.verifying_key()),
    };
    let mut manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| PackageError::Manifest(e.to_string()))?;
    manifest_bytes.push(b'\n');
    let sig = keys::sign(key, &manifest_bytes);
    let bytes = pack(&manifest_bytes, sig.as_bytes(), &[(fname.as_str(), &data)])?;
    Ok((file_name(&facts.name, &facts.version, target), bytes))
}

/// Writes the archive from its members (also used by tests to forge packages).
pub fn pack(
    manifest: &[u8],
    signature: &[u8],
    files: &[(&str, &[u8])],
) -> Result<Vec<u8>, PackageError> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(enc);
    let io = |source| PackageError::Io {
        what: "cannot write the archive".into(),
        source,
    };
    let mut add = |name: &str, data: &[u8]| -> Result<(), PackageError> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, name, data).map_err(io)
    };
    add("manifest.json", manifest)?;
    add("manifest.sig", signature)?;
    for (name, data) in files {
        add(&format!("files/{name}"), data)?;
    }
    tar.into_inner().and_then(|e| e.finish()).map_err(io)
}

/// Reads a package from its bytes (no verification: see [`Package::verify`]).
pub fn read(bytes: &[u8]) -> Result<Package, PackageError> {
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut manifest_bytes = None;
    let mut signature = None;
    let mut files = Vec::new();
    let entries = ar
        .entries()
        .map_err(|e| PackageError::Archive(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| PackageError::Archive(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| PackageError::Archive(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| PackageError::Archive(e.to_string()))?;
        match path.as_str() {
            "manifest.json" => manifest_bytes = Some(data),
            "manifest.sig" => signature = Some(String::from_utf8_lossy(&data).trim().to_string()),
            p => match p.strip_prefix("files/") {
                Some(name) if !name.is_empty() && !name.contains('/') && !name.starts_with('.') => {
                    files.push((name.to_string(), data))
                }
                _ => {
                    return Err(PackageError::Archive(format!("unexpected member '{p}'")));
                }
            },
        }
    }
    let manifest_bytes = manifest_bytes.ok_or(PackageError::Missing("manifest.json"))?;
    let signature = signature.ok_or(PackageError::Missing("manifest.sig"))?;
    let manifest: PackageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| PackageError::Manifest(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(PackageError::Manifest(format!(
            "format {} (this rvirt reads format {FORMAT})",
            manifest.format
        )));
    }
    Ok(Package {
        manifest,
        manifest_bytes,
        signature,
        files,
    })
}

impl Package {
    /// Checks the signature, that the publisher's key is among `trusted` (`ed25519:...`
    /// texts; `config` names where they come from, for the message), and every file's
    /// size and SHA-256.
    pub fn verify(&self, trusted: &[String], config: &str) -> Result<(), PackageError> {
        keys::verify(
            &self.manifest.publisher_key,
            &self.manifest_bytes,
            &self.signature,
        )?;
        let key = keys::parse_public(&self.manifest.publisher_key)?;
        let is_trusted = trusted
            .iter()
            .filter_map(|t| keys::parse_public(t).ok())
            .any(|t| t == key);
        if !is_trusted {
            return Err(PackageError::Untrusted {
                key: self.manifest.publisher_key.clone(),
                config: config.to_string(),
            });
        }
        self.verify_files()
    }

    /// Checks every file against the manifest (size, SHA-256, no file missing or extra).
    pub fn verify_files(&self) -> Result<(), PackageError> {
        if self.files.len() != self.manifest.files.len() {
            return Err(PackageError::Files(format!(
                "the manifest lists {} files, the archive holds {}",
                self.manifest.files.len(),
                self.files.len()
            )));
        }
        for f in &self.manifest.files {
            let Some((_, data)) = self.files.iter().find(|(n, _)| *n == f.path) else {
                return Err(PackageError::Files(format!("'{}' is missing", f.path)));
            };
            let actual = crate::sha256_hex(data);
            if actual != f.sha256 || data.len() as u64 != f.size {
                return Err(PackageError::FileChecksum {
                    path: f.path.clone(),
                    expected: f.sha256.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> PluginFacts {
        PluginFacts {
            name: "acme".into(),
            version: "0.1.0".into(),
            kind: "hypervisor".into(),
            plugin_api: "1.5.0".into(),
            description: "d".into(),
            schemes: vec!["acme".into()],
            ..Default::default()
        }
    }

    #[test]
    fn build_read_verify() {
        let d = tempfile::tempdir().unwrap();
        let so = d.path().join("librvirt_plugin_acme.so");
        std::fs::write(&so, b"not really elf").unwrap();
        let k = keys::generate();
        let trusted = vec![keys::public_text(&k.verifying_key())];
        let (name, bytes) = build(&so, &facts(), "x86_64-unknown-linux-gnu", &k).unwrap();
        assert_eq!(name, "acme-0.1.0-x86_64-unknown-linux-gnu.rvpkg");
        let p = read(&bytes).unwrap();
        p.verify(&trusted, "cfg").unwrap();
        assert_eq!(p.manifest.facts, facts());
        // Untrusted key.
        let other = vec![keys::public_text(&keys::generate().verifying_key())];
        assert!(matches!(
            p.verify(&other, "cfg"),
            Err(PackageError::Untrusted { .. })
        ));
        // A changed file.
        let mut bad = p.clone();
        bad.files[0].1.push(0);
        assert!(matches!(
            bad.verify(&trusted, "cfg"),
            Err(PackageError::FileChecksum { .. })
        ));
        // A changed manifest.
        let mut forged = p.clone();
        forged.manifest_bytes = String::from_utf8(forged.manifest_bytes)
            .unwrap()
            .replace("0.1.0", "0.9.0")
            .into_bytes();
        assert!(matches!(
            forged.verify(&trusted, "cfg"),
            Err(PackageError::Signature(_))
        ));
    }
}

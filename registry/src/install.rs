//! Verified, staged, atomic installs into a plugin directory.
//!
//! ```text
//! INSTALL_DIR/
//!   librvirt_plugin_acme.so -> .store/acme/0.2.0/librvirt_plugin_acme.so   (what the host loads)
//!   .store/acme/0.2.0/{librvirt_plugin_acme.so, manifest.json, manifest.sig}
//!   .staging/                  packages being unpacked (never on the search path)
//!   installed.json             name → version, pin, package checksum, what it serves
//!   .lock                      one installer at a time
//! ```
//!
//! An install fetches the package into memory, checks its SHA-256 against the index, its
//! signature, that the key is trusted, each file's hash and that the manifest says what the
//! index says, all before writing anything; then unpacks into `.staging/`, renames the
//! staged directory into `.store/NAME/VERSION/`, and switches the plugin's link with one
//! `rename` (atomic: a host scanning the directory sees the old or the new version, never
//! neither). An install interrupted before the switch leaves the old version in place;
//! the next install clears `.staging/`. A running daemon picks the new file up on its
//! next plugin load: the link's target is a new path, so the host's per-file load cache
//! does not answer the old library for it.

use crate::{
    index::{IndexError, IndexRecord, Source},
    package::{self, PackageError},
    resolve::{Resolution, Skipped, resolve},
};
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// An installed plugin, as `installed.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledEntry {
    /// Version installed.
    pub version: String,
    /// The pinned requirement (`install NAME@REQ`), which `upgrade` stays within.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// The plugin file's name in the install directory.
    pub file: String,
    /// SHA-256 of the package installed.
    pub package_sha256: String,
    /// The publisher's key.
    pub publisher_key: String,
    /// What the package says of the plugin.
    pub facts: package::PluginFacts,
}

/// Errors of installs.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The package is refused.
    #[error("{name} {version} refused: {source}")]
    Package {
        /// Name.
        name: String,
        /// Version.
        version: String,
        /// Why.
        #[source]
        source: PackageError,
    },
    /// The package's checksum differs from the index's.
    #[error(
        "{name} {version} refused: checksum mismatch: the package '{url}' has SHA-256 {actual}, the index says {expected}"
    )]
    Checksum {
        /// Name.
        name: String,
        /// Version.
        version: String,
        /// The package URL.
        url: String,
        /// From the index.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The package's manifest contradicts the index.
    #[error(
        "{name} {version} refused: the package's manifest says {field} '{package}', the index says '{index}'"
    )]
    Mismatch {
        /// Name.
        name: String,
        /// Version.
        version: String,
        /// The field.
        field: &'static str,
        /// In the package.
        package: String,
        /// In the index.
        index: String,
    },
    /// The package file is missing from the index.
    #[error("the index lists {name} {version} but has no package at '{url}'")]
    MissingPackage {
        /// Name.
        name: String,
        /// Version.
        version: String,
        /// Where it should be.
        url: String,
    },
    /// The name is unknown.
    #[error("no plugin named '{name}' in the index {index}")]
    Unknown {
        /// Name.
        name: String,
        /// The index.
        index: String,
    },
    /// Nothing matches.
    #[error("no version of '{name}' matching {req} can be installed on this host{}", explain(.skipped))]
    NoMatch {
        /// Name.
        name: String,
        /// The requirement.
        req: String,
        /// Why each version was left out.
        skipped: Vec<Skipped>,
    },
    /// Not installed.
    #[error("'{0}' is not installed by the registry (see `rvirt plugin list`)")]
    NotInstalled(String),
    /// A bad requirement.
    #[error("invalid version requirement '{req}': {reason}")]
    BadReq {
        /// The text.
        req: String,
        /// Why.
        reason: String,
    },
    /// File system work failed.
    #[error("{what} '{}': {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn explain(skipped: &[Skipped]) -> String {
    if skipped.is_empty() {
        String::new()
    } else {
        let v: Vec<String> = skipped.iter().map(|s| s.to_string()).collect();
        format!(": {}", v.join("; "))
    }
}

/// What an install did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Installed `record` (replacing `previous`, when a version was installed).
    Installed {
        /// What was installed.
        record: Box<IndexRecord>,
        /// The version it replaced.
        previous: Option<String>,
        /// Newer versions left out, and why.
        skipped: Vec<Skipped>,
    },
    /// The version resolution picked is installed already.
    Current {
        /// That version.
        version: String,
        /// Newer versions left out, and why.
        skipped: Vec<Skipped>,
    },
}

/// What upgrading one plugin did.
pub type UpgradeResult = Result<Outcome, InstallError>;

/// The installer of one install directory.
#[derive(Debug, Clone)]
pub struct Installer {
    dir: PathBuf,
    trusted: Vec<String>,
    config_path: String,
    host_api: Version,
    target: String,
}

/// `NAME` or `NAME@REQ` (`acme@0.2`, `acme@=0.1.0`).
pub fn parse_spec(spec: &str) -> Result<(String, Option<VersionReq>), InstallError> {
    match spec.split_once('@') {
        None => Ok((spec.to_string(), None)),
        Some((n, r)) => VersionReq::parse(r)
            .map(|req| (n.to_string(), Some(req)))
            .map_err(|e| InstallError::BadReq {
                req: r.to_string(),
                reason: e.to_string(),
            }),
    }
}

impl Installer {
    /// An installer into `dir`, accepting packages signed by `trusted` keys (read from the
    /// configuration `config_path`, named in messages).
    pub fn new(dir: impl Into<PathBuf>, trusted: Vec<String>, config_path: &str) -> Self {
        Self {
            dir: dir.into(),
            trusted,
            config_path: config_path.to_string(),
            host_api: crate::host_api(),
            target: crate::HOST_TARGET.to_string(),
        }
    }

    /// Overrides the host's plugin API version (tests).
    pub fn with_host_api(mut self, v: Version) -> Self {
        self.host_api = v;
        self
    }

    /// The install directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
        let path = path.to_path_buf();
        move |source| InstallError::Io { what, path, source }
    }

    /// The plugins installed, by name.
    pub fn installed(&self) -> Result<BTreeMap<String, InstalledEntry>, InstallError> {
        let p = self.dir.join("installed.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| InstallError::Io {
                what: "cannot parse",
                path: p,
                source: std::io::Error::other(e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Self::io("cannot read", &p)(e)),
        }
    }

    fn save(&self, db: &BTreeMap<String, InstalledEntry>) -> Result<(), InstallError> {
        let p = self.dir.join("installed.json");
        let mut text = serde_json::to_vec_pretty(db).unwrap_or_default();
        text.push(b'\n');
        crate::atomic_write(&p, &text).map_err(Self::io("cannot write", &p))
    }

    fn lock(&self) -> Result<std::fs::File, InstallError> {
        std::fs::create_dir_all(&self.dir).map_err(Self::io("cannot make", &self.dir))?;
        let p = self.dir.join(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(Self::io("cannot open", &p))?;
        f.lock().map_err(Self::io("cannot lock", &p))?;
        Ok(f)
    }

    /// Resolves `name` against the index without installing.
    pub fn resolve(
        &self,
        src: &Source,
        name: &str,
        req: &VersionReq,
    ) -> Result<Resolution, InstallError> {
        let records = src.records(name)?;
        if records.is_empty() {
            return Err(InstallError::Unknown {
                name: name.to_string(),
                index: src.url_of(""),
            });
        }
        Ok(resolve(&records, req, &self.target, &self.host_api))
    }

    /// Installs `name`: the newest version matching `req` (which becomes the pin; `None`
    /// installs the newest and clears the pin).
    pub fn install(
        &self,
        src: &Source,
        name: &str,
        req: Option<&VersionReq>,
    ) -> Result<Outcome, InstallError> {
        let _lock = self.lock()?;
        let mut db = self.installed()?;
        let pin = req.map(|r| r.to_string());
        let outcome = self.install_locked(src, name, req.unwrap_or(&VersionReq::STAR), &mut db)?;
        if let Some(e) = db.get_mut(name)
            && e.pin != pin
        {
            e.pin = pin;
            self.save(&db)?;
        }
        Ok(outcome)
    }

    /// Upgrades `name` (or every installed plugin) to the newest version within its pin.
    pub fn upgrade(
        &self,
        src: &Source,
        name: Option<&str>,
    ) -> Result<Vec<(String, UpgradeResult)>, InstallError> {
        let _lock = self.lock()?;
        let mut db = self.installed()?;
        let names: Vec<String> = match name {
            Some(n) => {
                if !db.contains_key(n) {
                    return Err(InstallError::NotInstalled(n.to_string()));
                }
                vec![n.to_string()]
            }
            None => db.keys().cloned().collect(),
        };
        let mut out = Vec::new();
        for n in names {
            let req = match db.get(&n).and_then(|e| e.pin.clone()) {
                Some(p) => VersionReq::parse(&p).map_err(|e| InstallError::BadReq {
                    req: p.clone(),
                    reason: e.to_string(),
                })?,
                None => VersionReq::STAR,
            };
            let r = self.install_locked(src, &n, &req, &mut db);
            out.push((n, r));
        }
        Ok(out)
    }

    fn install_locked(
        &self,
        src: &Source,
        name: &str,
        req: &VersionReq,
        db: &mut BTreeMap<String, InstalledEntry>,
    ) -> Result<Outcome, InstallError> {
        let res = self.resolve(src, name, req)?;
        let Some(record) = res.chosen else {
            return Err(InstallError::NoMatch {
                name: name.to_string(),
                req: req.to_string(),
                skipped: res.skipped,
            });
        };
        let previous = db.get(name).cloned();
        if let Some(p) = &previous
            && p.version == record.facts.version
            && p.package_sha256 == record.sha256
            && self.dir.join(&p.file).is_file()
        {
            return Ok(Outcome::Current {
                version: p.version.clone(),
                skipped: res.skipped,
            });
        }
        let version = record.facts.version.clone();
        // Everything is checked in memory before anything is written.
        let url = src.url_of(&record.file);
        let bytes = src
            .fetch(&record.file)?
            .ok_or_else(|| InstallError::MissingPackage {
                name: name.to_string(),
                version: version.clone(),
                url: url.clone(),
            })?;
        let actual = crate::sha256_hex(&bytes);
        if actual != record.sha256 {
            return Err(InstallError::Checksum {
                name: name.to_string(),
                version,
                url,
                expected: record.sha256.clone(),
                actual,
            });
        }
        let refused = |source| InstallError::Package {
            name: name.to_string(),
            version: version.clone(),
            source,
        };
        let pkg = package::read(&bytes).map_err(refused)?;
        pkg.verify(&self.trusted, &self.config_path)
            .map_err(refused)?;
        let m = &pkg.manifest;
        let mismatch = |field, package: &str, index: &str| {
            (package != index).then(|| InstallError::Mismatch {
                name: name.to_string(),
                version: version.clone(),
                field,
                package: package.to_string(),
                index: index.to_string(),
            })
        };
        if let Some(e) = mismatch("name", &m.facts.name, &record.facts.name)
            .or_else(|| mismatch("version", &m.facts.version, &record.facts.version))
            .or_else(|| mismatch("plugin API", &m.facts.plugin_api, &record.facts.plugin_api))
            .or_else(|| mismatch("target", &m.target, &record.target))
            .or_else(|| mismatch("publisher key", &m.publisher_key, &record.publisher_key))
        {
            return Err(e);
        }
        let Some(so) = m.files.iter().find(|f| f.path.ends_with(".so")) else {
            return Err(refused(PackageError::Files(
                "it holds no plugin file (.so)".into(),
            )));
        };
        let file = so.path.clone();

        // Stage.
        let staging_root = self.dir.join(".staging");
        let _ = std::fs::remove_dir_all(&staging_root);
        let stage = staging_root.join(format!("{name}-{version}-{}", std::process::id()));
        std::fs::create_dir_all(&stage).map_err(Self::io("cannot make", &stage))?;
        for (fname, data) in &pkg.files {
            let p = stage.join(fname);
            write_synced(&p, data).map_err(Self::io("cannot write", &p))?;
        }
        let p = stage.join("manifest.json");
        write_synced(&p, &pkg.manifest_bytes).map_err(Self::io("cannot write", &p))?;
        // The host's manifest file: a host starting reads it instead of loading the plugin.
        let f = &m.facts;
        let host_manifest = rvirt_host::PluginManifest {
            name: f.name.clone(),
            kind: f.kind.clone(),
            schemes: f.schemes.clone(),
            pool_types: f.pool_types.clone(),
            forward_modes: f.forward_modes.clone(),
            version: f.version.clone(),
            api_version: f.plugin_api.clone(),
            description: f.description.clone(),
        };
        let p = stage.join(format!("{file}{}", rvirt_host::plugin::MANIFEST_SUFFIX));
        let text = rvirt_host::plugin::manifest_file_text(&host_manifest, &file, so.size);
        write_synced(&p, text.as_bytes()).map_err(Self::io("cannot write", &p))?;
        let p = stage.join("manifest.sig");
        write_synced(&p, pkg.signature.as_bytes()).map_err(Self::io("cannot write", &p))?;
        if std::env::var("RVIRT_INSTALL_INTERRUPT").as_deref() == Ok("after-stage") {
            // Test hook: stands for a crash between staging and the switch.
            std::process::exit(75);
        }

        // Move into the store.
        let store = self.dir.join(".store").join(name);
        std::fs::create_dir_all(&store).map_err(Self::io("cannot make", &store))?;
        let dest = store.join(&version);
        if dest.exists() {
            // The same version again (republished package): the link may point into it,
            // so move it aside rather than delete it under the link.
            let aside = staging_root.join(format!("old-{name}-{version}"));
            std::fs::rename(&dest, &aside).map_err(Self::io("cannot move aside", &dest))?;
        }
        std::fs::rename(&stage, &dest).map_err(Self::io("cannot move into place", &dest))?;

        // Switch the link atomically.
        let link = self.dir.join(&file);
        let tmp_link = self.dir.join(format!(".{file}.new"));
        let _ = std::fs::remove_file(&tmp_link);
        let target = Path::new(".store").join(name).join(&version).join(&file);
        std::os::unix::fs::symlink(&target, &tmp_link)
            .map_err(Self::io("cannot link", &tmp_link))?;
        std::fs::rename(&tmp_link, &link).map_err(Self::io("cannot switch", &link))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }

        let pin = previous.as_ref().and_then(|p| p.pin.clone());
        db.insert(
            name.to_string(),
            InstalledEntry {
                version: version.clone(),
                pin,
                file: file.clone(),
                package_sha256: record.sha256.clone(),
                publisher_key: record.publisher_key.clone(),
                facts: m.facts.clone(),
            },
        );
        self.save(db)?;
        // The old version's files go once nothing points at them (a running process that
        // loaded it keeps its mapping).
        if let Some(p) = &previous {
            if p.version != version {
                let _ = std::fs::remove_dir_all(store.join(&p.version));
            }
            if p.file != file {
                let _ = std::fs::remove_file(self.dir.join(&p.file));
            }
        }
        let _ = std::fs::remove_dir_all(&staging_root);
        Ok(Outcome::Installed {
            record: Box::new(record),
            previous: previous.map(|p| p.version),
            skipped: res.skipped,
        })
    }

    /// Removes `name`: its link, its files and its record. Answers the version removed.
    pub fn remove(&self, name: &str) -> Result<String, InstallError> {
        let _lock = self.lock()?;
        let mut db = self.installed()?;
        let Some(e) = db.remove(name) else {
            return Err(InstallError::NotInstalled(name.to_string()));
        };
        let link = self.dir.join(&e.file);
        match std::fs::remove_file(&link) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(Self::io("cannot remove", &link)(err)),
        }
        self.save(&db)?;
        let _ = std::fs::remove_dir_all(self.dir.join(".store").join(name));
        Ok(e.version)
    }
}

fn write_synced(p: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(p)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(parse_spec("acme").unwrap(), ("acme".into(), None));
        let (n, r) = parse_spec("acme@=0.1.0").unwrap();
        assert_eq!(n, "acme");
        assert!(r.unwrap().matches(&Version::new(0, 1, 0)));
        assert!(parse_spec("acme@x.y").is_err());
    }
}

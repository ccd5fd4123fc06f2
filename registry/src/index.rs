//! The static index.
//!
//! ```text
//! config.json                    {"format": 1}
//! names                          one JSON line per plugin name: name, latest, kind, description
//! index/1/a, index/2/ab,         one file per plugin name (Cargo's sparse index layout:
//! index/3/a/abc, index/ac/me/acme   by length, then the first letters), one JSON line per
//!                                published version (IndexRecord), in publication order
//! packages/NAME/NAME-VERSION-TARGET.rvpkg
//! ```
//!
//! Every file is static: any HTTP server (or a directory, `file://`) serves an index. A
//! client reads `names` to search and one name's file to resolve, never the whole index.

use crate::package::{self, PackageError, PluginFacts};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One published version of one plugin for one target: a line of the name's index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRecord {
    /// What the plugin is (name, version, kind, plugin API, description, what it serves).
    #[serde(flatten)]
    pub facts: PluginFacts,
    /// The target triple of the package.
    pub target: String,
    /// The package's path relative to the index root.
    pub file: String,
    /// SHA-256 of the package file.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The publisher's key (`ed25519:BASE64`).
    pub publisher_key: String,
    /// Withdrawn: never picked by resolution.
    #[serde(default)]
    pub yanked: bool,
}

impl IndexRecord {
    /// The version, parsed (0.0.0 when it does not parse, which resolution never picks
    /// over a real one).
    pub fn version(&self) -> semver::Version {
        semver::Version::parse(&self.facts.version).unwrap_or(semver::Version::new(0, 0, 0))
    }
}

/// A line of the `names` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameEntry {
    /// Plugin name.
    pub name: String,
    /// The newest version published (yanked or not).
    pub latest: String,
    /// Its kind.
    pub kind: String,
    /// Its description.
    pub description: String,
}

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Fetching failed.
    #[error("cannot fetch '{url}': {reason}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// A file of the index does not parse.
    #[error("the index file '{url}' is malformed at line {line}: {reason}")]
    Malformed {
        /// The file.
        url: String,
        /// The line (1-based).
        line: usize,
        /// Why.
        reason: String,
    },
    /// Publishing something already there.
    #[error(
        "{name} {version} for {target} is already published in this index (publish a new version)"
    )]
    Exists {
        /// Name.
        name: String,
        /// Version.
        version: String,
        /// Target.
        target: String,
    },
    /// Yanking something absent.
    #[error("{0} is not published in this index")]
    NotFound(String),
    /// Writing the index failed.
    #[error("cannot write '{}': {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The package is invalid.
    #[error(transparent)]
    Package(#[from] PackageError),
}

/// The path of a name's index file relative to the index root (Cargo's sparse layout).
pub fn name_path(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    match n.len() {
        0 => "index/0/_".into(),
        1 => format!("index/1/{n}"),
        2 => format!("index/2/{n}"),
        3 => format!("index/3/{}/{n}", &n[..1]),
        _ => format!("index/{}/{}/{n}", &n[..2], &n[2..4]),
    }
}

/// Where an index lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory (`file:///srv/index` or a plain path).
    Dir(PathBuf),
    /// An HTTP(S) base URL, without the trailing slash.
    Http(String),
}

impl Source {
    /// `http://...`, `https://...`, `file://PATH` or a path.
    pub fn parse(url: &str) -> Source {
        if url.starts_with("http://") || url.starts_with("https://") {
            Source::Http(url.trim_end_matches('/').to_string())
        } else {
            Source::Dir(PathBuf::from(url.strip_prefix("file://").unwrap_or(url)))
        }
    }

    /// The URL of `rel`, for messages.
    pub fn url_of(&self, rel: &str) -> String {
        match self {
            Source::Dir(d) => d.join(rel).display().to_string(),
            Source::Http(base) => format!("{base}/{rel}"),
        }
    }

    /// Fetches `rel` (relative to the root): `None` when it does not exist.
    pub fn fetch(&self, rel: &str) -> Result<Option<Vec<u8>>, IndexError> {
        let url = self.url_of(rel);
        match self {
            Source::Dir(d) => match std::fs::read(d.join(rel)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(IndexError::Fetch {
                    url,
                    reason: e.to_string(),
                }),
            },
            Source::Http(_) => match ureq::get(&url).call() {
                Ok(mut resp) => resp
                    .body_mut()
                    .with_config()
                    .limit(1 << 30)
                    .read_to_vec()
                    .map(Some)
                    .map_err(|e| IndexError::Fetch {
                        url,
                        reason: e.to_string(),
                    }),
                Err(ureq::Error::StatusCode(404)) => Ok(None),
                Err(e) => Err(IndexError::Fetch {
                    url,
                    reason: e.to_string(),
                }),
            },
        }
    }

    /// Every record published for `name` (empty when the name is unknown).
    pub fn records(&self, name: &str) -> Result<Vec<IndexRecord>, IndexError> {
        let rel = name_path(name);
        let Some(bytes) = self.fetch(&rel)? else {
            return Ok(Vec::new());
        };
        parse_lines(&String::from_utf8_lossy(&bytes), &self.url_of(&rel))
    }

    /// The `names` file.
    pub fn names(&self) -> Result<Vec<NameEntry>, IndexError> {
        let Some(bytes) = self.fetch("names")? else {
            return Ok(Vec::new());
        };
        parse_lines(&String::from_utf8_lossy(&bytes), &self.url_of("names"))
    }
}

fn parse_lines<T: serde::de::DeserializeOwned>(
    text: &str,
    url: &str,
) -> Result<Vec<T>, IndexError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| IndexError::Malformed {
                url: url.to_string(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

fn write_lines<T: Serialize>(path: &Path, items: &[T]) -> Result<(), IndexError> {
    let mut text = String::new();
    for it in items {
        text.push_str(&serde_json::to_string(it).unwrap_or_default());
        text.push('\n');
    }
    let w = |source| IndexError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(w)?;
    }
    crate::atomic_write(path, text.as_bytes()).map_err(w)
}

/// A writable index directory (the publisher's side).
#[derive(Debug, Clone)]
pub struct IndexDir {
    root: PathBuf,
}

impl IndexDir {
    /// The index at `root` (made on first publish).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn records(&self, name: &str) -> Result<Vec<IndexRecord>, IndexError> {
        Source::Dir(self.root.clone()).records(name)
    }

    /// Adds a package (its bytes) to the index: checks it reads, that its signature holds
    /// and its files match the manifest (trust is the installer's business), copies it to
    /// `packages/NAME/` and appends its record.
    pub fn publish(&self, bytes: &[u8]) -> Result<IndexRecord, IndexError> {
        let pkg = package::read(bytes)?;
        crate::keys::verify(
            &pkg.manifest.publisher_key,
            &pkg.manifest_bytes,
            &pkg.signature,
        )
        .map_err(PackageError::from)?;
        pkg.verify_files()?;
        let f = &pkg.manifest.facts;
        let mut records = self.records(&f.name)?;
        if records
            .iter()
            .any(|r| r.facts.version == f.version && r.target == pkg.manifest.target)
        {
            return Err(IndexError::Exists {
                name: f.name.clone(),
                version: f.version.clone(),
                target: pkg.manifest.target.clone(),
            });
        }
        let file = format!(
            "packages/{}/{}",
            f.name,
            package::file_name(&f.name, &f.version, &pkg.manifest.target)
        );
        let dest = self.root.join(&file);
        let w = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IndexError::Write { path, source }
        };
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(w(p))?;
        }
        crate::atomic_write(&dest, bytes).map_err(w(&dest))?;
        let record = IndexRecord {
            facts: f.clone(),
            target: pkg.manifest.target.clone(),
            file,
            sha256: crate::sha256_hex(bytes),
            size: bytes.len() as u64,
            publisher_key: pkg.manifest.publisher_key.clone(),
            yanked: false,
        };
        records.push(record.clone());
        self.write_records(&f.name, &records)?;
        self.update_names(&records)?;
        let cfg = self.root.join("config.json");
        if !cfg.exists() {
            crate::atomic_write(&cfg, b"{\"format\": 1}\n").map_err(w(&cfg))?;
        }
        Ok(record)
    }

    fn write_records(&self, name: &str, records: &[IndexRecord]) -> Result<(), IndexError> {
        write_lines(&self.root.join(name_path(name)), records)
    }

    fn update_names(&self, records: &[IndexRecord]) -> Result<(), IndexError> {
        let Some(latest) = records.iter().max_by_key(|r| r.version()) else {
            return Ok(());
        };
        let mut names = Source::Dir(self.root.clone()).names()?;
        let entry = NameEntry {
            name: latest.facts.name.clone(),
            latest: latest.facts.version.clone(),
            kind: latest.facts.kind.clone(),
            description: latest.facts.description.clone(),
        };
        match names.iter_mut().find(|n| n.name == entry.name) {
            Some(n) => *n = entry,
            None => names.push(entry),
        }
        names.sort_by(|a, b| a.name.cmp(&b.name));
        write_lines(&self.root.join("names"), &names)
    }

    /// Marks `name` `version` yanked (or not, with `undo`), for every target.
    pub fn yank(&self, name: &str, version: &str, undo: bool) -> Result<usize, IndexError> {
        let mut records = self.records(name)?;
        let mut n = 0;
        for r in records.iter_mut().filter(|r| r.facts.version == version) {
            r.yanked = !undo;
            n += 1;
        }
        if n == 0 {
            return Err(IndexError::NotFound(format!("{name} {version}")));
        }
        self.write_records(name, &records)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_laid_out_as_cargo_does() {
        assert_eq!(name_path("a"), "index/1/a");
        assert_eq!(name_path("ab"), "index/2/ab");
        assert_eq!(name_path("abc"), "index/3/a/abc");
        assert_eq!(name_path("acme-hv"), "index/ac/me/acme-hv");
    }

    #[test]
    fn sources_parse() {
        assert_eq!(
            Source::parse("http://127.0.0.1:1/x/"),
            Source::Http("http://127.0.0.1:1/x".into())
        );
        assert_eq!(Source::parse("file:///srv/i"), Source::Dir("/srv/i".into()));
        assert_eq!(Source::parse("/srv/i"), Source::Dir("/srv/i".into()));
    }
}

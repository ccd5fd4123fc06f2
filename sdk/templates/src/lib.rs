//! Project templates for rvirt plugins: what `rvirt plugin new NAME --kind KIND` writes.
//!
//! The templates live beside this crate (`sdk/templates/{hypervisor,storage,network}`) and
//! are compiled in, so the `rvirt` binary carries them. Each renders to a complete Cargo
//! project: `Cargo.toml` (a workspace of its own, depending on `rvirt-sdk` by version),
//! `src/lib.rs`, `README.md` and `.gitignore`.

use std::path::{Path, PathBuf};

/// The kind of plugin a template makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Serves the URI scheme `NAME` with an in-memory domain store.
    Hypervisor,
    /// Serves the storage pool type `NAME` with in-memory volumes.
    Storage,
    /// Serves the network forward mode `NAME`, keeping books in memory.
    Network,
}

impl Kind {
    /// `hypervisor`, `storage` or `network`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hypervisor => "hypervisor",
            Kind::Storage => "storage",
            Kind::Network => "network",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "hypervisor" => Ok(Kind::Hypervisor),
            "storage" => Ok(Kind::Storage),
            "network" => Ok(Kind::Network),
            other => Err(Error::Kind(other.to_string())),
        }
    }
}

/// Where the generated project takes the SDK from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// crates.io only (no `[patch]`).
    CratesIo,
    /// crates.io, patched to an rvirt checkout (the directory holding `plugin-api/`,
    /// `sdk/plugin-sdk/` and `sdk/xml/`): builds offline against that checkout.
    Checkout(PathBuf),
}

impl SdkSource {
    /// The checkout this crate was built from, when it still exists (what `rvirt plugin
    /// new` uses by default in a development build); else crates.io.
    pub fn default_for_this_build() -> SdkSource {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        match root.canonicalize() {
            Ok(r) if r.join("sdk/plugin-sdk/Cargo.toml").is_file() => SdkSource::Checkout(r),
            _ => SdkSource::CratesIo,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Plugin name: also the URI scheme, pool type or forward mode served.
    pub name: String,
    /// Plugin kind.
    pub kind: Kind,
    /// The plugin's first version.
    pub version: String,
    /// One line about the plugin (defaults to one naming kind and name).
    pub description: Option<String>,
    /// Where the SDK comes from.
    pub sdk: SdkSource,
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name is unusable.
    #[error(
        "invalid plugin name '{0}': use a lowercase letter then lowercase letters, digits or '-' (at most 32), e.g. 'acme-hv'; it is also the URI scheme, pool type or forward mode served"
    )]
    Name(String),
    /// Unknown kind.
    #[error("unknown plugin kind '{0}': use hypervisor, storage or network")]
    Kind(String),
    /// The target exists.
    #[error("'{}' already exists: choose another name or remove it", .0.display())]
    Exists(PathBuf),
    /// Building failed.
    #[error("cargo build of '{}' failed:\n{output}", dir.display())]
    Build {
        /// The project.
        dir: PathBuf,
        /// cargo's error output.
        output: String,
    },
    /// Writing failed.
    #[error("cannot write '{}'", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Checks a plugin name: `[a-z][a-z0-9-]*`, at most 32 characters, not ending in `-`.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Name(name.to_string()))
    }
}

/// The shared object a plugin named `name` builds to (`librvirt_plugin_NAME.so`, `-`
/// turned to `_`).
pub fn library_file(name: &str) -> String {
    format!("librvirt_plugin_{}.so", name.replace('-', "_"))
}

/// The `rvirt-sdk` version requirement generated projects use: this SDK's major.minor.
pub const SDK_REQ: &str = concat!(
    env!("CARGO_PKG_VERSION_MAJOR"),
    ".",
    env!("CARGO_PKG_VERSION_MINOR")
);

const HYPERVISOR_CARGO: &str = include_str!("../hypervisor/Cargo.toml.in");
const HYPERVISOR_LIB: &str = include_str!("../hypervisor/src/lib.rs");
const STORAGE_CARGO: &str = include_str!("../storage/Cargo.toml.in");
const STORAGE_LIB: &str = include_str!("../storage/src/lib.rs");
const NETWORK_CARGO: &str = include_str!("../network/Cargo.toml.in");
const NETWORK_LIB: &str = include_str!("../network/src/lib.rs");
const README: &str = include_str!("../README.md.in");
const GITIGNORE: &str = "/target\n";

fn patch_table(sdk: &SdkSource, kind: Kind) -> String {
    match sdk {
        SdkSource::CratesIo => String::new(),
        SdkSource::Checkout(root) => {
            let p = |rel: &str| root.join(rel).display().to_string();
            let mut s = String::from(
                "\n# Written by `rvirt plugin new` in an rvirt checkout: build against that checkout.\n# Delete this table to build against the crates published on crates.io.\n[patch.crates-io]\n",
            );
            s.push_str(&format!(
                "rvirt-sdk = {{ path = \"{}\" }}\n",
                p("sdk/plugin-sdk")
            ));
            s.push_str(&format!(
                "rvirt-plugin-api = {{ path = \"{}\" }}\n",
                p("plugin-api")
            ));
            if kind == Kind::Hypervisor {
                s.push_str(&format!("rvirt-xml = {{ path = \"{}\" }}\n", p("sdk/xml")));
            }
            s
        }
    }
}

/// The files of the project, relative to its directory, with their contents.
pub fn render(opts: &Options) -> Result<Vec<(PathBuf, String)>, Error> {
    check_name(&opts.name)?;
    let kind = opts.kind;
    let description = opts.description.clone().unwrap_or_else(|| match kind {
        Kind::Hypervisor => format!(
            "{} hypervisor driver for rvirt ({}:///), in-memory",
            opts.name, opts.name
        ),
        Kind::Storage => format!(
            "{} storage backend for rvirt (pool type {})",
            opts.name, opts.name
        ),
        Kind::Network => format!(
            "{} network backend for rvirt (forward mode {})",
            opts.name, opts.name
        ),
    });
    let (cargo, lib) = match kind {
        Kind::Hypervisor => (HYPERVISOR_CARGO, HYPERVISOR_LIB),
        Kind::Storage => (STORAGE_CARGO, STORAGE_LIB),
        Kind::Network => (NETWORK_CARGO, NETWORK_LIB),
    };
    let (what, try_it) = match kind {
        Kind::Hypervisor => (
            format!(
                "It serves the URI scheme `{n}` (`{n}:///`) from an in-memory domain store, with libvirt's domain lifecycle, list filters, events and errors; replace the store with your hypervisor.",
                n = opts.name
            ),
            format!(
                "    RVIRT_PLUGIN_PATH=$PWD/target/release rvirt -c {n}:///  define domain.xml\n    RVIRT_PLUGIN_PATH=$PWD/target/release rvirt -c {n}:///  list --all",
                n = opts.name
            ),
        ),
        Kind::Storage => (
            format!(
                "It serves the storage pool type `{n}` (`<pool type='{n}'>`) with volumes kept in memory; replace them with your storage system.",
                n = opts.name
            ),
            format!(
                "    RVIRT_PLUGIN_PATH=$PWD/target/release rvirt pool-define-as p1 {n} && rvirt pool-start p1",
                n = opts.name
            ),
        ),
        Kind::Network => (
            format!(
                "It serves the network forward mode `{n}` (`<forward mode='{n}'/>`), keeping books in memory; replace them with your network system.",
                n = opts.name
            ),
            "    RVIRT_PLUGIN_PATH=$PWD/target/release rvirt net-define net.xml".to_string(),
        ),
    };
    let subst = |t: &str| {
        t.replace("@@NAME@@", &opts.name)
            .replace("@@LIB@@", &opts.name.replace('-', "_"))
            .replace("@@KIND@@", kind.as_str())
            .replace("@@VERSION@@", &opts.version)
            .replace("@@DESCRIPTION@@", &description.replace('"', "'"))
            .replace("@@SDK_REQ@@", SDK_REQ)
            .replace("@@XML_REQ@@", SDK_REQ)
            .replace("@@PATCH@@", &patch_table(&opts.sdk, kind))
            .replace("@@WHAT@@", &what)
            .replace("@@TRY@@", &try_it)
    };
    Ok(vec![
        (PathBuf::from("Cargo.toml"), subst(cargo)),
        (PathBuf::from("src/lib.rs"), subst(lib)),
        (PathBuf::from("README.md"), subst(README)),
        (PathBuf::from(".gitignore"), GITIGNORE.to_string()),
    ])
}

/// Writes the project into `dir` (which must not exist).
pub fn generate(dir: &Path, opts: &Options) -> Result<Vec<PathBuf>, Error> {
    let files = render(opts)?;
    if dir.exists() {
        return Err(Error::Exists(dir.to_path_buf()));
    }
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(&rel);
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
        written.push(path);
    }
    Ok(written)
}

/// Builds a generated project with `cargo build` (`$CARGO`, else `cargo`) into
/// `target_dir`, answering the plugin file (`TARGET_DIR/debug/librvirt_plugin_NAME.so`).
/// The project resolves its own dependencies and writes its own `Cargo.lock`.
pub fn build(dir: &Path, name: &str, target_dir: &Path) -> Result<PathBuf, Error> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = dir.join("Cargo.toml");
    let out = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .map_err(|source| Error::Io {
            path: manifest.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Build {
            dir: dir.to_path_buf(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(target_dir.join("debug").join(library_file(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["acme", "acme-hv", "x1"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "Acme", "1x", "a_b", "a-", "a+b", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        for kind in [Kind::Hypervisor, Kind::Storage, Kind::Network] {
            for sdk in [
                SdkSource::CratesIo,
                SdkSource::Checkout(PathBuf::from("/src/rvirt")),
            ] {
                let files = render(&Options {
                    name: "acme-x".into(),
                    kind,
                    version: "0.1.0".into(),
                    description: None,
                    sdk: sdk.clone(),
                })
                .unwrap();
                for (p, text) in &files {
                    assert!(!text.contains("@@"), "{} of {kind:?}", p.display());
                }
                let cargo = &files[0].1;
                assert!(cargo.contains("name = \"rvirt-plugin-acme-x\""));
                assert!(cargo.contains(&format!("rvirt-sdk = \"{SDK_REQ}\"")));
                assert_eq!(
                    cargo.contains("[patch.crates-io]"),
                    matches!(sdk, SdkSource::Checkout(_))
                );
                assert!(files[1].1.contains("name: \"acme-x\""));
            }
        }
    }

    #[test]
    fn generate_refuses_an_existing_directory() {
        let d = tempfile::tempdir().unwrap();
        let opts = Options {
            name: "acme".into(),
            kind: Kind::Hypervisor,
            version: "0.1.0".into(),
            description: None,
            sdk: SdkSource::CratesIo,
        };
        let files = generate(&d.path().join("acme"), &opts).unwrap();
        assert_eq!(files.len(), 4);
        assert!(matches!(
            generate(&d.path().join("acme"), &opts),
            Err(Error::Exists(_))
        ));
    }
}

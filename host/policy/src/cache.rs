//! The compiled-module cache: `Module::serialize` output stored under a name derived from the
//! module's bytes (SHA-256) and the engine's precompile compatibility hash, so a changed
//! module, a changed engine configuration or another wasmtime build never reuses stale code.
//!
//! Loading a cached artifact is `unsafe` in wasmtime (the bytes become executable code), so the
//! cache directory must belong to the daemon's user and be writable by nobody else; otherwise
//! the cache is not used.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// Why the cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot create cache directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cache directory {path} is owned by uid {owner}, not by this process (uid {euid})")]
    Owner {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    #[error("cache directory {path} is writable by group or others (mode {mode:o})")]
    Mode { path: PathBuf, mode: u32 },
}

/// A directory of compiled modules.
#[derive(Debug, Clone)]
pub(crate) struct ModuleCache {
    dir: PathBuf,
    engine_tag: String,
}

impl ModuleCache {
    /// Opens (creating, mode 0700) the cache directory and checks that only we can write it.
    pub fn open(dir: &Path, engine: &Engine) -> Result<ModuleCache, CacheError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| CacheError::Create {
                path: dir.into(),
                source,
            })?;
        let meta = std::fs::metadata(dir).map_err(|source| CacheError::Create {
            path: dir.into(),
            source,
        })?;
        let euid = rustix::process::geteuid().as_raw();
        if meta.uid() != euid {
            return Err(CacheError::Owner {
                path: dir.into(),
                owner: meta.uid(),
                euid,
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(CacheError::Mode {
                path: dir.into(),
                mode,
            });
        }
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(ModuleCache {
            dir: dir.into(),
            engine_tag: format!("{:016x}", h.finish()),
        })
    }

    /// The path of the artifact for `bytes`.
    fn path_for(&self, bytes: &[u8]) -> PathBuf {
        let digest = Sha256::digest(bytes);
        let mut name = String::with_capacity(64 + 1 + 16 + 6);
        for b in digest {
            let _ = write!(name, "{b:02x}");
        }
        name.push('-');
        name.push_str(&self.engine_tag);
        name.push_str(".cwasm");
        self.dir.join(name)
    }

    /// Loads the compiled module for `bytes` from the cache, or compiles it and stores it.
    /// Returns whether the cache was hit. Cache write failures are logged, not fatal.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<(Module, bool)> {
        let path = self.path_for(bytes);
        if path.exists() {
            // SAFETY: the artifact was written by `Module::serialize` of this engine
            // configuration (its name carries the compatibility hash, and wasmtime checks the
            // header again), in a directory `open` verified only this user can write.
            match unsafe { Module::deserialize_file(engine, &path) } {
                Ok(m) => return Ok((m, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached module: {e}");
                }
            }
        }
        let module = Module::new(engine, bytes)?;
        if let Err(e) = self.store(&path, &module) {
            tracing::warn!(path = %path.display(), "cannot cache compiled module: {e:#}");
        }
        Ok((module, false))
    }

    fn store(&self, path: &Path, module: &Module) -> Result<(), Box<dyn std::error::Error>> {
        let bytes = module.serialize()?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_world_writable_dir_and_caches_otherwise() {
        let engine = Engine::default();
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ModuleCache::open(&open, &engine).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");

        let cache = ModuleCache::open(&tmp.path().join("c"), &engine).unwrap();
        let wat = b"(module (func (export \"f\")))";
        let (_, hit) = cache.load_or_compile(&engine, wat).unwrap();
        assert!(!hit);
        let (_, hit) = cache.load_or_compile(&engine, wat).unwrap();
        assert!(hit);
        // a changed module is another entry
        let (_, hit) = cache
            .load_or_compile(&engine, b"(module (func (export \"g\")))")
            .unwrap();
        assert!(!hit);
        assert_eq!(std::fs::read_dir(tmp.path().join("c")).unwrap().count(), 2);
    }
}

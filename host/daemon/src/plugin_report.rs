//! Which plugin (and which version of it) serves each scheme, pool type and forward mode:
//! logged when a plugin loads and published in `RUN_DIR/plugins.json` (`/run/rvirt`, or
//! `DIR/run` under `--root DIR`), which `rvirt plugin served` reads.
//!
//! The file is replaced atomically (`rvirt_sdk::util::atomic_write`: temporary file, fsync,
//! rename, fsync of the directory) after every load, so a reader sees the previous report or the new one, never a part.
//! Its format (version [`FORMAT`]):
//!
//! ```json
//! {"format": 1, "pid": 1234, "plugins": [{"name": "qemu", "version": "0.1.0",
//!   "api_version": "1.6.0", "file": "/usr/lib/rvirt/plugins/librvirt_plugin_qemu.so",
//!   "real_file": "...", "schemes": ["qemu"], "pool_types": [], "forward_modes": []}]}
//! ```
//!
//! Plugins described by a manifest file load on first use, so a plugin appears once
//! something used it; a plugin loaded stays loaded (and keeps its version) until the
//! daemon restarts. A plugin served from a plugin host process (`isolate`) is reported
//! when that process starts serving, with the version it loaded: after a reload or a
//! restart, the new process's. The file is removed when the daemon stops.

use rvirt_host::{Runtime, ServedPlugin};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The report's file name in the run directory.
pub const FILE: &str = "plugins.json";
/// The version of the report's format.
pub const FORMAT: u32 = 1;

/// Errors while writing the report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot create the run directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the plugin report: {0}")]
    Write(#[from] rvirt_sdk::util::WriteError),
    #[error("cannot encode the plugin report: {0}")]
    Encode(#[from] serde_json::Error),
}

#[derive(serde::Serialize)]
struct Report<'a> {
    format: u32,
    pid: u32,
    plugins: &'a [ServedPlugin],
}

/// The published report of one daemon.
#[derive(Debug)]
pub struct PluginReport {
    path: PathBuf,
    /// The plugins loaded, in load order (held while the file is written, so writes
    /// happen in order).
    plugins: Mutex<Vec<ServedPlugin>>,
}

impl PluginReport {
    /// Starts reporting the plugins of `runtime`: the ones loaded so far now, later ones
    /// as they load.
    pub fn start(run_dir: &Path, runtime: &Runtime) -> Arc<PluginReport> {
        let report = Arc::new(PluginReport {
            path: run_dir.join(FILE),
            plugins: Mutex::new(Vec::new()),
        });
        // the observer first: a plugin loading meanwhile is then reported by one of the two
        let observer = Arc::clone(&report);
        runtime.set_load_observer(Arc::new(move |p: &ServedPlugin| observer.loaded(p)));
        let now = runtime.served_plugins();
        let mut list = report.lock();
        for p in &now {
            if !list.iter().any(|q| q.name == p.name) {
                log(p);
                list.push(p.clone());
            }
        }
        report.publish(&list);
        drop(list);
        report
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ServedPlugin>> {
        self.plugins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A plugin loaded (in the daemon, or in a plugin host process it started).
    pub fn loaded(&self, p: &ServedPlugin) {
        log(p);
        let mut list = self.lock();
        list.retain(|q| q.name != p.name);
        list.push(p.clone());
        self.publish(&list);
    }

    fn publish(&self, list: &[ServedPlugin]) {
        if let Err(e) = write(&self.path, list) {
            tracing::warn!("{e}");
        }
    }

    /// Removes the file (the daemon stops).
    pub fn remove(&self) {
        let _list = self.lock();
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove {}: {e}", self.path.display()),
        }
    }
}

fn log(p: &ServedPlugin) {
    tracing::info!(
        plugin = %p.name,
        version = %p.version,
        api = %p.api_version,
        file = %p.file.display(),
        real_file = %p.real_file.display(),
        schemes = %p.schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(","),
        pool_types = %p.pool_types.join(","),
        forward_modes = %p.forward_modes.join(","),
        "plugin loaded"
    );
}

/// Writes the report for `plugins` at `path` atomically.
fn write(path: &Path, plugins: &[ServedPlugin]) -> Result<(), ReportError> {
    let mut text = serde_json::to_vec_pretty(&Report {
        format: FORMAT,
        pid: std::process::id(),
        plugins,
    })?;
    text.push(b'\n');
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    rvirt_sdk::util::atomic_write(path, &text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str, version: &str) -> ServedPlugin {
        ServedPlugin {
            name: name.into(),
            version: version.into(),
            api_version: "1.6.0".into(),
            file: format!("/p/librvirt_plugin_{name}.so").into(),
            real_file: format!("/p/.store/{name}/{version}/librvirt_plugin_{name}.so").into(),
            schemes: vec![name.into()],
            pool_types: Vec::new(),
            forward_modes: Vec::new(),
        }
    }

    #[test]
    fn the_report_is_replaced_whole_and_names_the_version() {
        let tmp = tempfile::tempdir().unwrap();
        let report = PluginReport {
            path: tmp.path().join("run").join(FILE),
            plugins: Mutex::new(Vec::new()),
        };
        report.loaded(&plugin("a", "0.1.0"));
        report.loaded(&plugin("b", "1.0.0"));
        report.loaded(&plugin("a", "0.2.0"));
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report.path).unwrap()).unwrap();
        assert_eq!(v["format"], FORMAT);
        assert_eq!(v["pid"], std::process::id());
        let plugins = v["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 2, "{v}");
        assert_eq!(plugins[1]["name"], "a");
        assert_eq!(plugins[1]["version"], "0.2.0");
        assert_eq!(plugins[1]["schemes"][0], "a");
        // no temporary file left beside it
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("run"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE]);
        report.remove();
        assert!(!report.path.exists());
    }
}

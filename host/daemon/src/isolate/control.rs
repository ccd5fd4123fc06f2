//! The daemon's plugin control socket (`RUN_DIR/rvirtd-plugins.sock`, 0600): what
//! `rvirt plugin list --root DIR` and `rvirt plugin reload NAME` talk to.
//!
//! One request line, one JSON reply line: `list` answers
//! `{"format": 1, "pid", "plugins": [...]}` (per hypervisor plugin: name, file, version,
//! API version, isolation, pid, restarts, cgroup: its processes' group relative to each
//! cgroup hierarchy or null); `reload NAME` starts the plugin's file again
//! in a new process, switches new calls to it and stops the old one once its calls are
//! done, answering `{"ok": true, "pid", "version"}` or `{"ok": false, "error"}`. Only the
//! daemon's user can connect (the socket's mode), as only it may signal the daemon.

use super::Isolation;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reply format of the control socket.
pub const FORMAT: u64 = 1;

/// The control socket's path under a run directory.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("rvirtd-plugins.sock")
}

/// Binds the control socket and serves it on a thread of its own.
pub fn serve(
    path: &Path,
    isolation: Arc<Isolation>,
    runtime: Arc<rvirt_host::Runtime>,
) -> std::io::Result<()> {
    // a socket-activated daemon has not made its run directory (systemd made the sockets)
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = crate::server::bind_with_mode(path, 0o600)?;
    std::thread::Builder::new()
        .name("rvirt-plugin-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (iso, rt) = (Arc::clone(&isolation), Arc::clone(&runtime));
                std::thread::spawn(move || {
                    let mut line = String::new();
                    let mut reader = BufReader::new(&conn);
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let reply = answer(line.trim(), &iso, &rt);
                    let mut w = &conn;
                    let _ = writeln!(w, "{reply}");
                });
            }
        })?;
    Ok(())
}

fn answer(request: &str, iso: &Isolation, runtime: &rvirt_host::Runtime) -> serde_json::Value {
    use serde_json::json;
    match request.split_once(' ').unwrap_or((request, "")) {
        ("list", _) => {
            let mut plugins = Vec::new();
            for r in runtime.scanned_plugins() {
                let rvirt_host::PluginStatus::Loaded(m) = &r.status else {
                    continue;
                };
                if let Some(sup) = iso.by_name(&m.name) {
                    plugins.push(sup.status());
                } else {
                    plugins.push(json!({
                        "name": m.name,
                        "file": r.path.display().to_string(),
                        "isolation": "in-process",
                        "version": m.version,
                        "api_version": m.api_version,
                        "pid": std::process::id(),
                        "restarts": 0,
                        "cgroup": null,
                    }));
                }
            }
            json!({"format": FORMAT, "pid": std::process::id(), "plugins": plugins})
        }
        ("reload", name) if !name.is_empty() => match iso.by_name(name) {
            Some(sup) => match sup.reload() {
                Ok(g) => json!({"ok": true, "pid": g.pid(), "version": sup.status()["version"]}),
                Err(e) => {
                    json!({"ok": false, "error": format!("cannot reload plugin '{name}': {e}")})
                }
            },
            None => json!({"ok": false, "error": format!(
                "plugin '{name}' does not run in a process of its own (isolation = \"process\" in rvirtd.toml), so it cannot be reloaded: a loaded library is never unloaded; restart the daemon"
            )}),
        },
        _ => {
            json!({"ok": false, "error": format!("unknown request '{request}' (list, reload NAME)")})
        }
    }
}

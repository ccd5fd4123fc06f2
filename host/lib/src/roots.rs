//! Where a local connection URI keeps the host's own state (storage pools, secrets): the
//! one mapping both subsystems use, as libvirt binds its storage and secret drivers to
//! `qemu:///system` and `qemu:///session`.

use crate::uri::ConnectUri;
use crate::{Error, Result};
use rvirt_plugin_api::ErrorCode;
use std::path::{Path, PathBuf};

/// The host's state for one URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalRoot {
    /// In memory, shared by every connection of the process naming this key.
    Memory(&'static str),
    /// `config` holds persistent files (`.../etc/rvirt`, `$XDG_CONFIG_HOME/rvirt`,
    /// `DIR/etc`), `run` volatile ones, when the URI has a run directory.
    Dirs {
        config: PathBuf,
        run: std::result::Result<PathBuf, String>,
    },
}

/// The root of `uri`: `qemu:///system` under `system_root`, `qemu:///session` under the
/// XDG directories, `qemu:///embed?root=DIR` under DIR, `test:///default` in memory;
/// `Ok(None)` for a URI without host state. `what` names the subsystem in errors, whose
/// domain is `domain`.
pub(crate) fn local_root(
    uri: &ConnectUri,
    system_root: &Path,
    env: impl Fn(&str) -> Option<String>,
    what: &str,
    domain: i32,
) -> Result<Option<LocalRoot>> {
    let fail = |why: &str| Error::Driver {
        code: ErrorCode::NoSupport as i32,
        domain,
        message: format!("no {what} for '{}': {why}", uri.original),
    };
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    Ok(match (uri.driver.as_str(), uri.path.as_str()) {
        // every system driver shares the system's networks and storage, as libvirtd's
        // hypervisor drivers share its network and storage drivers
        ("qemu" | "lxc", "/system") => Some(LocalRoot::Dirs {
            config: system_root.join("etc/rvirt"),
            run: Ok(system_root.join("run/rvirt")),
        }),
        ("qemu", "/session") => {
            let config = nonempty("XDG_CONFIG_HOME")
                .or_else(|| nonempty("HOME").map(|h| h.join(".config")))
                .ok_or_else(|| fail("neither XDG_CONFIG_HOME nor HOME is set"))?;
            Some(LocalRoot::Dirs {
                config: config.join("rvirt"),
                run: nonempty("XDG_RUNTIME_DIR")
                    .map(|r| r.join("rvirt"))
                    .ok_or_else(|| "XDG_RUNTIME_DIR is not set".to_string()),
            })
        }
        ("qemu", "/embed") => {
            let root = uri
                .param("root")
                .filter(|r| r.starts_with('/'))
                .ok_or_else(|| fail("an embed URI needs ?root=ABSOLUTE-DIR"))?;
            let root = PathBuf::from(root);
            Some(LocalRoot::Dirs {
                config: root.join("etc"),
                run: Ok(root.join("run")),
            })
        }
        ("test", "/default") => Some(LocalRoot::Memory("test:///default")),
        _ => None,
    })
}

//! What a container definition means to the driver: the `<domain type='lxc'>` checks at
//! define time, and the launch [`Spec`] (root, mounts, init, limits, consoles, network)
//! the controller runs from, with the start-time checks of the host paths it names.

use rvirt_xml::{Domain, Element};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Errors of a definition.
#[derive(Debug, thiserror::Error)]
pub enum DefError {
    /// The document is not one this driver runs.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    /// A value of the document is wrong.
    #[error("XML error: {0}")]
    Invalid(String),
    /// A host path the definition names is missing or unusable at start.
    #[error("{0}")]
    Host(String),
}

/// A bind mount (or tmpfs) inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Host directory bound (`None`: a tmpfs).
    pub source: Option<PathBuf>,
    /// Where inside the container.
    pub target: PathBuf,
    /// Read-only.
    pub readonly: bool,
    /// tmpfs size in KiB (`type='ram'`).
    pub size_kib: Option<u64>,
}

/// An `<interface type='ethernet'>`: a veth pair, the host end named `host_dev`, the
/// other moved into the container as `guest_dev`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Veth {
    /// Host-side name.
    pub host_dev: String,
    /// Name inside the container.
    pub guest_dev: String,
    /// MAC of the container's end.
    pub mac: Option<String>,
    /// `ADDRESS/PREFIX` to configure inside the container.
    pub addrs: Vec<String>,
    /// The host bridge the host end joins (`<interface type='bridge'>`, or the bridge the
    /// network answered for `type='network'`).
    #[serde(default)]
    pub bridge: Option<String>,
    /// `<interface type='network'>`: the network whose port the driver plugs (the bridge
    /// is filled in at start from the port's answer).
    #[serde(default)]
    pub network: Option<String>,
}

pub use rvirt_cgroup::Limits;

/// Everything the controller needs to run one container (written as JSON to the run
/// directory; `format` versions it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Spec format, [`SPEC_FORMAT`].
    pub format: u32,
    /// Domain name (the container's hostname too).
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// Root filesystem directory on the host.
    pub root: PathBuf,
    /// Other mounts, in document order.
    pub mounts: Vec<Mount>,
    /// `<init>`.
    pub init: String,
    /// `<initarg>`s.
    pub args: Vec<String>,
    /// `<initenv>`s.
    pub env: Vec<(String, String)>,
    /// `<initdir>`.
    pub dir: Option<String>,
    /// Limits.
    pub limits: Limits,
    /// The cgroup directory, relative to each hierarchy.
    pub cgroup: String,
    /// Number of `<console>`s (the first is `/dev/console`, the others `/dev/ttyN`).
    pub consoles: usize,
    /// veth pairs.
    pub veths: Vec<Veth>,
    /// The controller's socket.
    pub socket: PathBuf,
    /// The console log.
    pub console_log: PathBuf,
    /// The status file the controller removes when it ends.
    pub status: PathBuf,
    /// When the container shares the host's root (`root` is `/`): the staging directory
    /// the host's root is bound at and pivoted into.
    #[serde(default)]
    pub host_root: Option<PathBuf>,
    /// `<idmap>`: the container runs in a user namespace with these maps.
    #[serde(default)]
    pub idmap: Option<IdMap>,
}

/// A user namespace's maps: `(start inside, target on the host, count)` per range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// `<uid>` ranges.
    pub uid: Vec<(u32, u32, u32)>,
    /// `<gid>` ranges.
    pub gid: Vec<(u32, u32, u32)>,
}

impl IdMap {
    /// The host id the container's root (0) maps to, of `ranges`.
    pub fn root_of(ranges: &[(u32, u32, u32)]) -> Option<u32> {
        ranges
            .iter()
            .find(|(start, _, count)| *start == 0 && *count > 0)
            .map(|(_, target, _)| *target)
    }

    /// The contents of a `uid_map` / `gid_map` file.
    pub fn map_file(ranges: &[(u32, u32, u32)]) -> String {
        ranges
            .iter()
            .map(|(s, t, c)| format!("{s} {t} {c}\n"))
            .collect()
    }
}

/// The `<idmap>` of `dom`: both uid and gid ranges, each mapping the container's root.
fn idmap(dom: &Domain, name: &str) -> Result<Option<IdMap>, DefError> {
    let Some(el) = dom.element().child("idmap") else {
        return Ok(None);
    };
    let mut map = IdMap::default();
    for (kind, out) in [("uid", &mut map.uid), ("gid", &mut map.gid)] {
        for (i, e) in el.children_named(kind).enumerate() {
            let path = format!("domain/idmap/{kind}[{}]", i + 1);
            let n = |a: &str| -> Result<u32, DefError> {
                e.attr(a)
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| {
                        DefError::Invalid(format!(
                            "domain '{name}': {path}/@{a} is missing or not a number"
                        ))
                    })
            };
            out.push((n("start")?, n("target")?, n("count")?));
        }
    }
    for (kind, ranges) in [("uid", &map.uid), ("gid", &map.gid)] {
        if IdMap::root_of(ranges).is_none() {
            return Err(DefError::Invalid(format!(
                "domain '{name}': domain/idmap needs a <{kind} start='0'> range: the container's root must be mapped"
            )));
        }
    }
    Ok(Some(map))
}

/// The current [`Spec`] format.
pub const SPEC_FORMAT: u32 = 1;

fn kib(e: &Element, path: &str) -> Result<u64, DefError> {
    rvirt_xml::util::scale_to_bytes(&e.text(), e.attr("unit"), 1024)
        .map(|b| b / 1024)
        .map_err(|m| DefError::Invalid(format!("{path}: {m}")))
}

fn num<T: std::str::FromStr>(e: &Element, path: &str) -> Result<T, DefError> {
    e.text()
        .trim()
        .parse()
        .map_err(|_| DefError::Invalid(format!("{path}: invalid number '{}'", e.text().trim())))
}

/// The define-time checks of an LXC domain: type `lxc`, OS type `exe`, an absolute
/// `<init>` (when given), filesystems and interfaces of kinds the driver runs.
pub fn check(dom: &Domain) -> Result<(), DefError> {
    let name = dom.name();
    if dom.domain_type() != "lxc" {
        return Err(DefError::Unsupported(format!(
            "domain '{name}': domain/@type is '{}', the lxc driver runs only type 'lxc'",
            dom.domain_type()
        )));
    }
    if dom.os_type() != "exe" {
        return Err(DefError::Unsupported(format!(
            "domain '{name}': domain/os/type is '{}', containers need 'exe'",
            dom.os_type()
        )));
    }
    if let Some(init) = dom.os().and_then(|o| o.init())
        && !init.starts_with('/')
    {
        return Err(DefError::Invalid(format!(
            "domain '{name}': domain/os/init '{init}' is not an absolute path"
        )));
    }
    Ok(())
}

/// The launch spec of `dom`, checking the host paths it names: the root directory, each
/// bind mount's source, and `<init>` (an executable regular file inside the root).
pub fn spec(dom: &Domain, cgroup: String, paths: &crate::paths::Paths) -> Result<Spec, DefError> {
    let name = dom.name().to_string();
    let root_el = dom.element();
    let mut root: Option<PathBuf> = None;
    let mut mounts = Vec::new();
    for (i, fs) in dom.devices_of("filesystem").enumerate() {
        let path = format!("domain/devices/filesystem[{}]", i + 1);
        let kind = fs.attr("type").unwrap_or("mount");
        let target = fs
            .child("target")
            .and_then(|t| t.attr("dir"))
            .ok_or_else(|| {
                DefError::Invalid(format!("domain '{name}': {path}/target/@dir is missing"))
            })?;
        let readonly = fs.child("readonly").is_some();
        match kind {
            "mount" => {
                let src = fs
                    .child("source")
                    .and_then(|s| s.attr("dir"))
                    .ok_or_else(|| {
                        DefError::Invalid(format!("domain '{name}': {path}/source/@dir is missing"))
                    })?;
                let src = PathBuf::from(src);
                if !src.is_dir() {
                    return Err(DefError::Host(format!(
                        "domain '{name}': {path}/source/@dir '{}' is not an existing directory",
                        src.display()
                    )));
                }
                if target == "/" {
                    root = Some(src);
                } else {
                    mounts.push(Mount {
                        source: Some(src),
                        target: target.into(),
                        readonly,
                        size_kib: None,
                    });
                }
            }
            "ram" => {
                let size = match fs.child("source") {
                    Some(s) => match s.attr("usage") {
                        Some(u) => Some(
                            rvirt_xml::util::scale_to_bytes(u, s.attr("units"), 1024).map_err(
                                |m| DefError::Invalid(format!("{path}/source/@usage: {m}")),
                            )? / 1024,
                        ),
                        None => None,
                    },
                    None => None,
                };
                mounts.push(Mount {
                    source: None,
                    target: target.into(),
                    readonly,
                    size_kib: size,
                });
            }
            other => {
                return Err(DefError::Unsupported(format!(
                    "domain '{name}': {path}/@type '{other}' is not supported by the lxc driver (use 'mount' or 'ram')"
                )));
            }
        }
    }
    // No `<filesystem>` for `/`: the container shares the host's root (as libvirt's
    // driver does), with its own /proc, /sys, /dev and the other mounts on top, through a
    // recursive bind of `/` at a staging directory it pivots into.
    let (root, host_root) = match root {
        Some(r) => (r, None),
        None => (PathBuf::from("/"), Some(paths.host_root_dir(&name))),
    };
    let os = dom.os();
    let init = os
        .and_then(|o| o.init())
        .unwrap_or("/sbin/init")
        .to_string();
    let in_root = root.join(init.trim_start_matches('/'));
    // The init is looked up inside the container's root (symlinks resolve there too, so
    // an absolute link target is read relative to the root).
    let resolved = resolve_in_root(&root, &in_root);
    match std::fs::metadata(&resolved) {
        Ok(m)
            if m.is_file()
                && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0 => {}
        Ok(_) => {
            return Err(DefError::Host(format!(
                "domain '{name}': domain/os/init '{init}' is not an executable file in the root '{}'",
                root.display()
            )));
        }
        Err(e) => {
            return Err(DefError::Host(format!(
                "domain '{name}': domain/os/init '{init}' cannot be found in the root '{}': {}",
                root.display(),
                e.to_string().to_lowercase()
            )));
        }
    }
    let os_el = root_el.child("os");
    let args = os_el
        .map(|o| o.children_named("initarg").map(|a| a.text()).collect())
        .unwrap_or_default();
    let env = os_el
        .map(|o| {
            o.children_named("initenv")
                .map(|e| (e.attr("name").unwrap_or_default().to_string(), e.text()))
                .collect()
        })
        .unwrap_or_default();
    let dir = os_el.and_then(|o| o.child("initdir")).map(|d| d.text());
    let mut limits = Limits::default();
    if let Some(m) = root_el.child("memory") {
        limits.memory_bytes = Some(kib(m, "domain/memory")? * 1024);
    }
    if let Some(mt) = root_el.child("memtune") {
        if let Some(h) = mt.child("hard_limit") {
            limits.memory_bytes = Some(kib(h, "domain/memtune/hard_limit")? * 1024);
        }
        if let Some(s) = mt.child("soft_limit") {
            limits.soft_bytes = Some(kib(s, "domain/memtune/soft_limit")? * 1024);
        }
        if let Some(s) = mt.child("swap_hard_limit") {
            limits.swap_hard_bytes = Some(kib(s, "domain/memtune/swap_hard_limit")? * 1024);
        }
    }
    if let Some(ct) = root_el.child("cputune") {
        if let Some(s) = ct.child("shares") {
            limits.cpu_shares = Some(num(s, "domain/cputune/shares")?);
        }
        if let Some(s) = ct.child("period") {
            limits.cpu_period = Some(num(s, "domain/cputune/period")?);
        }
        if let Some(s) = ct.child("quota") {
            limits.cpu_quota = Some(num(s, "domain/cputune/quota")?);
        }
    }
    if let Some(w) = root_el.child("blkiotune").and_then(|b| b.child("weight")) {
        let weight: u32 = num(w, "domain/blkiotune/weight")?;
        if !(10..=1000).contains(&weight) {
            return Err(DefError::Invalid(format!(
                "domain '{name}': domain/blkiotune/weight {weight} is out of range [10, 1000]"
            )));
        }
        if let Err(why) = crate::cgroup::blkio_weight_available() {
            return Err(DefError::Unsupported(format!(
                "domain '{name}': domain/blkiotune/weight: block I/O weights are not available on this host ({why})"
            )));
        }
        limits.blkio_weight = Some(weight);
    }
    if let Some(b) = limits.memory_bytes
        && b < 1024 * 1024
    {
        return Err(DefError::Invalid(format!(
            "domain '{name}': memory limit of {} KiB is below the 1024 KiB a container needs to exec its init",
            b / 1024
        )));
    }
    let mut veths = Vec::new();
    for (i, ifc) in dom.devices_of("interface").enumerate() {
        let path = format!("domain/devices/interface[{}]", i + 1);
        let mut network = None;
        let bridge = match ifc.attr("type") {
            Some("ethernet") => None,
            Some("network") => {
                network = Some(
                    ifc.child("source")
                        .and_then(|s| s.attr("network"))
                        .ok_or_else(|| {
                            DefError::Invalid(format!(
                                "domain '{name}': {path}/source/@network is missing"
                            ))
                        })?
                        .to_string(),
                );
                None
            }
            Some("bridge") => Some(
                ifc.child("source")
                    .and_then(|s| s.attr("bridge"))
                    .ok_or_else(|| {
                        DefError::Invalid(format!(
                            "domain '{name}': {path}/source/@bridge is missing"
                        ))
                    })?
                    .to_string(),
            ),
            other => {
                return Err(DefError::Unsupported(format!(
                    "domain '{name}': {path}/@type '{}' is not supported by the lxc driver yet (use 'ethernet', 'bridge' or 'network')",
                    other.unwrap_or("")
                )));
            }
        };
        if let Some(b) = &bridge
            && !is_bridge(b)
        {
            return Err(DefError::Host(format!(
                "domain '{name}': {path}/source/@bridge '{b}' is not a bridge of this host"
            )));
        }
        let host_dev = ifc
            .child("target")
            .and_then(|t| t.attr("dev"))
            .map(str::to_string)
            .unwrap_or_else(|| format!("vethct{}{}", short(&name), i));
        let guest_dev = ifc
            .child("guest")
            .and_then(|t| t.attr("dev"))
            .map(str::to_string)
            .unwrap_or_else(|| format!("eth{i}"));
        let addrs = ifc
            .children_named("ip")
            .filter_map(|ip| {
                let a = ip.attr("address")?;
                let p = ip.attr("prefix").unwrap_or("24");
                Some(format!("{a}/{p}"))
            })
            .collect();
        let mut mac = ifc
            .child("mac")
            .and_then(|m| m.attr("address"))
            .map(str::to_string);
        if network.is_some() && mac.is_none() {
            // a network port is keyed by its MAC: one from libvirt's prefix
            let b = *uuid::Uuid::new_v4().as_bytes();
            mac = Some(format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2]));
        }
        veths.push(Veth {
            host_dev,
            guest_dev,
            mac,
            addrs,
            bridge,
            network,
        });
    }
    let consoles = dom.devices_of("console").count().max(1);
    Ok(Spec {
        format: SPEC_FORMAT,
        uuid: dom.uuid().to_string(),
        root,
        mounts,
        init,
        args,
        env,
        dir,
        limits,
        cgroup,
        consoles,
        veths,
        socket: paths.socket(&name),
        console_log: paths.console_log(&name),
        status: paths.status_file(&name),
        host_root,
        idmap: idmap(dom, &name)?,
        name,
    })
}

/// Whether `dev` is a bridge in this process's network namespace (sysfs may show
/// another one's, so ask the kernel through `ip`).
fn is_bridge(dev: &str) -> bool {
    std::process::Command::new("ip")
        .args(["-o", "link", "show", "dev", dev, "type", "bridge"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

fn short(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(6)
        .collect()
}

/// `p` (a path under `root`) with symlinks resolved as the container will see them.
fn resolve_in_root(root: &Path, p: &Path) -> PathBuf {
    let mut cur = p.to_path_buf();
    for _ in 0..16 {
        match std::fs::read_link(&cur) {
            Ok(t) if t.is_absolute() => cur = root.join(t.strip_prefix("/").unwrap_or(&t)),
            Ok(t) => cur = cur.parent().unwrap_or(root).join(t),
            Err(_) => break,
        }
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(idmap: &str) -> Domain {
        Domain::parse(&format!(
            "<domain type='lxc'><name>c</name><memory>65536</memory>{idmap}\
             <os><type>exe</type><init>/bin/sh</init></os></domain>"
        ))
        .unwrap()
    }

    #[test]
    fn idmap_ranges_and_the_root_mapping() {
        assert_eq!(idmap(&dom(""), "c").unwrap(), None);
        let m = idmap(
            &dom("<idmap><uid start='0' target='1000' count='10'/><uid start='10' target='5000' count='5'/>\
                  <gid start='0' target='2000' count='10'/></idmap>"),
            "c",
        )
        .unwrap()
        .unwrap();
        assert_eq!(IdMap::root_of(&m.uid), Some(1000));
        assert_eq!(IdMap::root_of(&m.gid), Some(2000));
        assert_eq!(IdMap::map_file(&m.uid), "0 1000 10\n10 5000 5\n");
        // the container's root must be mapped, in both maps
        let e = idmap(
            &dom("<idmap><uid start='1' target='1000' count='10'/><gid start='0' target='1000' count='10'/></idmap>"),
            "c",
        )
        .unwrap_err();
        assert!(e.to_string().contains("<uid start='0'>"), "{e}");
        let e = idmap(
            &dom("<idmap><uid start='0' target='x' count='10'/></idmap>"),
            "c",
        )
        .unwrap_err();
        assert!(e.to_string().contains("domain/idmap/uid[1]/@target"), "{e}");
    }
}

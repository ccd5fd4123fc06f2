//! `rvirt plugin new|search|install|upgrade|remove|list --available|served`: plugin
//! projects and the registry, on the operator's side, and what a running rvirtd serves.

use crate::table::Table;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use rvirt_registry::{
    config::Config,
    index::Source,
    install::{InstallError, Installer, Outcome, parse_spec},
};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Where packages come from and go, overriding the registry configuration
/// (`/etc/rvirt/registry.toml` or `$RVIRT_REGISTRY_CONFIG`).
#[derive(Args, Clone, Default)]
pub struct RegistryArgs {
    /// Index URL or directory (default: `index` of the registry configuration)
    #[arg(long, value_name = "URL")]
    index: Option<String>,
    /// Install directory (default: `install_dir` of the configuration, else /var/lib/rvirt/plugins)
    #[arg(long, value_name = "DIR")]
    install_dir: Option<PathBuf>,
}

/// The plugin subcommands beyond `list`.
#[derive(Subcommand)]
pub enum PluginManage {
    /// Write a new plugin project into ./NAME (builds, loads and passes rvirt-tck as generated)
    New {
        /// Plugin name: also the URI scheme, pool type or forward mode it serves
        name: String,
        /// What the plugin serves
        #[arg(long, default_value = "hypervisor", value_parser = ["hypervisor", "storage", "network"])]
        kind: String,
        /// Directory to write (default: ./NAME)
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Build against the rvirt checkout at DIR (a [patch.crates-io] table)
        #[arg(long, value_name = "DIR", conflicts_with = "crates_io")]
        sdk_path: Option<PathBuf>,
        /// Depend on the SDK from crates.io only (no [patch] table)
        #[arg(long)]
        crates_io: bool,
    },
    /// Search the index for plugins (by name or description)
    Search {
        /// Words to look for (all plugins when absent)
        term: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Install a plugin: NAME or NAME@REQ (REQ, e.g. =0.1.0 or ^0.2, becomes its pin)
    Install {
        /// NAME or NAME@REQ
        spec: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Upgrade a plugin (or every installed plugin) to the newest version within its pin
    Upgrade {
        /// The plugin (default: all installed)
        name: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Remove an installed plugin
    Remove {
        /// The plugin
        name: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

struct Ctx {
    config: Config,
    source: Option<Source>,
    installer: Installer,
}

fn ctx(args: &RegistryArgs) -> Result<Ctx> {
    let config = Config::load()?;
    let index = args.index.clone().or_else(|| config.index.clone());
    let dir = args
        .install_dir
        .clone()
        .unwrap_or_else(|| config.install_dir());
    let installer = Installer::new(dir, config.trusted_keys.clone(), &config.path);
    Ok(Ctx {
        source: index.as_deref().map(Source::parse),
        config,
        installer,
    })
}

impl Ctx {
    fn source(&self) -> Result<&Source> {
        match &self.source {
            Some(s) => Ok(s),
            None => bail!(
                "no plugin index configured: set `index` in {} or pass --index URL",
                self.config.path
            ),
        }
    }
}

/// Runs one of the subcommands.
pub fn run(cmd: PluginManage, json: bool) -> Result<()> {
    match cmd {
        PluginManage::New {
            name,
            kind,
            dir,
            sdk_path,
            crates_io,
        } => new(name, &kind, dir, sdk_path, crates_io),
        PluginManage::Search { term, registry } => search(term.as_deref(), &registry, json),
        PluginManage::Install { spec, registry } => install(&spec, &registry),
        PluginManage::Upgrade { name, registry } => upgrade(name.as_deref(), &registry),
        PluginManage::Remove { name, registry } => {
            let c = ctx(&registry)?;
            let v = c.installer.remove(&name)?;
            println!(
                "removed {name} {v} from {} (a running rvirtd stops serving it at its next plugin load)",
                c.installer.dir().display()
            );
            Ok(())
        }
    }
}

fn new(
    name: String,
    kind: &str,
    dir: Option<PathBuf>,
    sdk_path: Option<PathBuf>,
    crates_io: bool,
) -> Result<()> {
    use rvirt_templates::{Options, SdkSource};
    let sdk = if crates_io {
        SdkSource::CratesIo
    } else if let Some(p) = sdk_path {
        let p = p
            .canonicalize()
            .with_context(|| format!("cannot find the rvirt checkout '{}'", p.display()))?;
        if !p.join("sdk/plugin-sdk/Cargo.toml").is_file() {
            bail!(
                "'{}' is not an rvirt checkout (no sdk/plugin-sdk/Cargo.toml)",
                p.display()
            );
        }
        SdkSource::Checkout(p)
    } else {
        SdkSource::default_for_this_build()
    };
    let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
    let opts = Options {
        name: name.clone(),
        kind: kind.parse()?,
        version: "0.1.0".into(),
        description: None,
        sdk: sdk.clone(),
    };
    let files = rvirt_templates::generate(&dir, &opts)?;
    for f in &files {
        println!("  wrote {}", f.display());
    }
    match sdk {
        SdkSource::Checkout(p) => println!(
            "created {kind} plugin '{name}' in {} (SDK from the checkout {}; delete [patch.crates-io] in Cargo.toml to use crates.io)",
            dir.display(),
            p.display()
        ),
        SdkSource::CratesIo => println!(
            "created {kind} plugin '{name}' in {} (SDK from crates.io)",
            dir.display()
        ),
    }
    println!(
        "next: cd {} && cargo build && RVIRT_PLUGIN_PATH=$PWD/target/debug rvirt plugin list",
        dir.display()
    );
    Ok(())
}

fn search(term: Option<&str>, args: &RegistryArgs, json: bool) -> Result<()> {
    let c = ctx(args)?;
    let names = c.source()?.names()?;
    let words: Vec<String> = term
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let hits: Vec<_> = names
        .into_iter()
        .filter(|n| {
            let hay = format!("{} {}", n.name, n.description).to_lowercase();
            words.iter().all(|w| hay.contains(w))
        })
        .collect();
    if json {
        let v: Vec<_> = hits
            .iter()
            .map(|n| json!({"name": n.name, "latest": n.latest, "kind": n.kind, "description": n.description}))
            .collect();
        return crate::print_json(&json!(v));
    }
    let mut t = Table::new(&["Name", "Latest", "Kind", "Description"]);
    for n in &hits {
        t.row(vec![
            n.name.clone(),
            n.latest.clone(),
            n.kind.clone(),
            n.description.clone(),
        ]);
    }
    print!("{}", t.render());
    println!();
    Ok(())
}

fn print_outcome(name: &str, o: &Outcome, dir: &std::path::Path) {
    match o {
        Outcome::Installed {
            record,
            previous,
            skipped,
        } => {
            for s in skipped {
                println!("note: {name} {s}");
            }
            let f = &record.facts;
            let older = |p: &str| {
                semver::Version::parse(p)
                    .ok()
                    .zip(semver::Version::parse(&f.version).ok())
                    .is_some_and(|(p, n)| p < n)
            };
            match previous {
                Some(p) if older(p) => println!(
                    "upgraded {name} {p} -> {} (plugin API {}) in {}",
                    f.version,
                    f.plugin_api,
                    dir.display()
                ),
                Some(p) => println!(
                    "installed {name} {} (plugin API {}) in {}, replacing {p}",
                    f.version,
                    f.plugin_api,
                    dir.display()
                ),
                None => println!(
                    "installed {name} {} (plugin API {}) into {}",
                    f.version,
                    f.plugin_api,
                    dir.display()
                ),
            }
        }
        Outcome::Current { version, skipped } => {
            for s in skipped {
                println!("note: {name} {s}");
            }
            println!("{name} {version} is installed and current");
        }
    }
}

fn install(spec: &str, args: &RegistryArgs) -> Result<()> {
    let c = ctx(args)?;
    let (name, req) = parse_spec(spec)?;
    let o = c.installer.install(c.source()?, &name, req.as_ref())?;
    print_outcome(&name, &o, c.installer.dir());
    Ok(())
}

fn upgrade(name: Option<&str>, args: &RegistryArgs) -> Result<()> {
    let c = ctx(args)?;
    let results = c.installer.upgrade(c.source()?, name)?;
    if results.is_empty() {
        println!("no plugin installed by the registry");
    }
    let mut failed: Vec<(String, InstallError)> = Vec::new();
    for (n, r) in results {
        match r {
            Ok(o) => print_outcome(&n, &o, c.installer.dir()),
            Err(e) => failed.push((n, e)),
        }
    }
    if let Some((n, e)) = failed.into_iter().next() {
        return Err(anyhow::Error::new(e).context(format!("cannot upgrade {n}")));
    }
    Ok(())
}

/// `rvirt plugin list --available`: every plugin of the index, the version this host
/// would install, and what is installed.
pub fn list_available(args: &RegistryArgs, json: bool) -> Result<()> {
    let c = ctx(args)?;
    let src = c.source()?;
    let installed = c.installer.installed()?;
    let mut rows = Vec::new();
    for n in src.names()? {
        let res = c
            .installer
            .resolve(src, &n.name, &semver::VersionReq::STAR)?;
        let inst = installed.get(&n.name).cloned();
        rows.push((n, res, inst));
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(n, res, inst)| {
                json!({"name": n.name, "kind": n.kind, "description": n.description,
                "latest": n.latest,
                "installable": res.chosen.as_ref().map(|r| r.facts.version.clone()),
                "installed": inst.as_ref().map(|i| i.version.clone()),
                "pin": inst.as_ref().and_then(|i| i.pin.clone()),
                "skipped": res.skipped.iter().map(|s| json!({"version": s.version, "reason": s.reason})).collect::<Vec<_>>()})
            })
            .collect();
        return crate::print_json(&json!(v));
    }
    let mut t = Table::new(&["Name", "Installable", "Installed", "Kind", "Description"]);
    let mut notes = Vec::new();
    for (n, res, inst) in &rows {
        t.row(vec![
            n.name.clone(),
            res.chosen
                .as_ref()
                .map(|r| r.facts.version.clone())
                .unwrap_or_else(|| "-".into()),
            inst.as_ref()
                .map(|i| match &i.pin {
                    Some(p) => format!("{} (pinned {p})", i.version),
                    None => i.version.clone(),
                })
                .unwrap_or_else(|| "-".into()),
            n.kind.clone(),
            n.description.clone(),
        ]);
        for s in &res.skipped {
            notes.push(format!("note: {} {s}", n.name));
        }
    }
    print!("{}", t.render());
    println!();
    for n in notes {
        println!("{n}");
    }
    Ok(())
}

/// The name of the report rvirtd keeps in its run directory (see rvirtd's
/// `plugin_report` module).
const SERVED_FILE: &str = "plugins.json";
/// The report format this CLI reads.
const SERVED_FORMAT: u64 = 1;

/// The report of the daemon at `--root DIR` or behind `--socket PATH`, else of the system
/// daemon (root) or the session daemon (`$XDG_RUNTIME_DIR/rvirt`).
fn served_file(root: Option<&Path>, socket: Option<&Path>) -> Result<PathBuf> {
    Ok(daemon_run_dir(root, socket)?.join(SERVED_FILE))
}

/// The run directory of the daemon named by `--root DIR` or one of its sockets.
fn daemon_run_dir(root: Option<&Path>, socket: Option<&Path>) -> Result<PathBuf> {
    if let Some(root) = root {
        return Ok(root.join("run"));
    }
    if let Some(socket) = socket {
        let dir = socket
            .parent()
            .with_context(|| format!("socket path {} has no directory", socket.display()))?;
        return Ok(dir.to_path_buf());
    }
    if rustix::process::getuid().is_root() {
        return Ok(PathBuf::from("/run/rvirt"));
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => Ok(PathBuf::from(d).join("rvirt")),
        None => {
            bail!("XDG_RUNTIME_DIR is not set: name the daemon with --root DIR or --socket PATH")
        }
    }
}

/// The reply format of rvirtd's plugin control socket this rvirt reads.
const CONTROL_FORMAT: u64 = 1;

/// Sends one request line to the daemon's plugin control socket
/// (`RUN_DIR/rvirtd-plugins.sock`) and returns its JSON reply.
fn control(root: Option<&Path>, socket: Option<&Path>, request: &str) -> Result<serde_json::Value> {
    use std::io::{BufRead, Write};
    let path = daemon_run_dir(root, socket)?.join("rvirtd-plugins.sock");
    let mut conn = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "cannot reach rvirtd's plugin control socket {} (is the daemon running, and are you its user?)",
            path.display()
        )
    })?;
    writeln!(conn, "{request}").context("cannot send the request to rvirtd")?;
    let mut line = String::new();
    std::io::BufReader::new(&conn)
        .read_line(&mut line)
        .context("cannot read rvirtd's answer")?;
    serde_json::from_str(&line).with_context(|| format!("rvirtd answered {line:?}"))
}

/// `rvirt plugin list --root DIR`: the plugins a running rvirtd serves domains with, how
/// each runs and, for a plugin in its own process, its pid, restarts and cgroup (relative
/// to each cgroup hierarchy; `-`: none of its own).
pub fn daemon_list(root: Option<&Path>, socket: Option<&Path>, json: bool) -> Result<()> {
    let v = control(root, socket, "list")?;
    let format = v["format"].as_u64().unwrap_or(0);
    if format != CONTROL_FORMAT {
        bail!(
            "rvirtd answers plugin list format {format}; this rvirt reads format {CONTROL_FORMAT}"
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut t = Table::new(&[
        "Plugin",
        "Version",
        "API",
        "Isolation",
        "PID",
        "Restarts",
        "Cgroup",
        "File",
    ]);
    let text = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    for p in v["plugins"].as_array().map_or(&[][..], Vec::as_slice) {
        t.row(vec![
            text(&p["name"]),
            text(&p["version"]),
            text(&p["api_version"]),
            text(&p["isolation"]),
            text(&p["pid"]),
            text(&p["restarts"]),
            text(&p["cgroup"]),
            text(&p["file"]),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// `rvirt plugin reload NAME`: the daemon starts the plugin's file again in a new
/// process, sends new calls there and stops the old process once its calls are done.
pub fn reload(name: &str, root: Option<&Path>, socket: Option<&Path>, json: bool) -> Result<()> {
    let v = control(root, socket, &format!("reload {name}"))?;
    if v["ok"].as_bool() != Some(true) {
        bail!(
            "{}",
            v["error"].as_str().unwrap_or("rvirtd refused the reload")
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "Plugin {name} reloaded: version {}, process {}",
            v["version"].as_str().unwrap_or("?"),
            v["pid"]
        );
    }
    Ok(())
}

/// `rvirt plugin served`: prints what rvirtd serves with which plugin version.
pub fn served(root: Option<&Path>, socket: Option<&Path>, json: bool) -> Result<()> {
    let file = served_file(root, socket)?;
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no running rvirtd reports its plugins in {} (rvirtd writes it while it runs)",
            file.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a plugin report", file.display()))?;
    let format = v["format"].as_u64().unwrap_or(0);
    if format != SERVED_FORMAT {
        bail!(
            "{} has report format {format}; this rvirt reads format {SERVED_FORMAT}",
            file.display()
        );
    }
    let pid = v["pid"].as_u64().unwrap_or(0);
    if pid == 0 || !Path::new(&format!("/proc/{pid}")).exists() {
        eprintln!(
            "warning: the rvirtd that wrote {} (pid {pid}) is not running: the report is stale",
            file.display()
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut t = Table::new(&["Serves", "Plugin", "Version", "API", "File"]);
    let strs = |p: &serde_json::Value, k: &str| -> Vec<String> {
        p[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    for p in v["plugins"].as_array().map_or(&[][..], Vec::as_slice) {
        let s = |k: &str| p[k].as_str().unwrap_or("-").to_string();
        let mut serves: Vec<String> = strs(p, "schemes")
            .into_iter()
            .map(|s| format!("{s}://"))
            .collect();
        serves.extend(
            strs(p, "pool_types")
                .into_iter()
                .map(|t| format!("pool {t}")),
        );
        serves.extend(
            strs(p, "forward_modes")
                .into_iter()
                .map(|m| format!("network {m}")),
        );
        if serves.is_empty() {
            serves.push("-".into());
        }
        let file = if p["real_file"] != p["file"] {
            format!("{} -> {}", s("file"), s("real_file"))
        } else {
            s("file")
        };
        for what in serves {
            t.row(vec![
                what,
                s("name"),
                s("version"),
                s("api_version"),
                file.clone(),
            ]);
        }
    }
    print!("{}", t.render());
    Ok(())
}

//! `rvirt-registry`: a publisher's tool. Makes a signing key, builds and signs a package
//! from a plugin file, publishes packages into a static index, yanks versions, and serves
//! an index directory over HTTP.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use rvirt_registry::{index::IndexDir, keys, package};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "rvirt-registry",
    version,
    about = "Build, sign and publish rvirt plugin packages"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make an ed25519 signing key: FILE (secret, mode 0600) and FILE.pub (public)
    Keygen {
        /// The secret key file to write
        #[arg(long)]
        out: PathBuf,
    },
    /// Build and sign a package from a plugin file
    Build {
        /// The plugin's shared object
        plugin: PathBuf,
        /// The publisher's secret key file
        #[arg(long)]
        key: PathBuf,
        /// Directory to write the package into
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Target triple (default: this host's)
        #[arg(long)]
        target: Option<String>,
        /// Override the plugin's name (default: read from the plugin)
        #[arg(long)]
        name: Option<String>,
        /// Override the version (default: the plugin's)
        #[arg(long = "plugin-version")]
        version: Option<String>,
        /// Override the kind
        #[arg(long)]
        kind: Option<String>,
        /// Override the plugin API version (needed when this host cannot load the plugin)
        #[arg(long)]
        plugin_api: Option<String>,
        /// Override the description
        #[arg(long)]
        description: Option<String>,
        /// URI schemes served (with manual facts)
        #[arg(long, value_delimiter = ',')]
        schemes: Vec<String>,
    },
    /// Publish packages into an index directory
    Publish {
        /// Package files (.rvpkg)
        #[arg(required = true)]
        packages: Vec<PathBuf>,
        /// The index directory
        #[arg(long)]
        index: PathBuf,
    },
    /// Yank a version (resolution never picks it again), or undo a yank
    Yank {
        /// NAME@VERSION
        spec: String,
        /// The index directory
        #[arg(long)]
        index: PathBuf,
        /// Undo the yank
        #[arg(long)]
        undo: bool,
    },
    /// Verify a package: signature, files, and optionally a trusted key
    Verify {
        /// The package file
        package: PathBuf,
        /// A trusted public key (`ed25519:...`) or a .pub file
        #[arg(long)]
        trust: Vec<String>,
    },
    /// Serve an index directory over HTTP (for testing; use a real web server in production)
    Serve {
        /// The index directory
        index: PathBuf,
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out } => {
            let k = keys::generate();
            keys::write_pair(&out, &k)
                .with_context(|| format!("cannot write key files '{}'", out.display()))?;
            println!("{}", keys::public_text(&k.verifying_key()));
            eprintln!(
                "secret key in {}, public key in {}.pub: operators add the public key to trusted_keys",
                out.display(),
                out.display()
            );
        }
        Command::Build {
            plugin,
            key,
            out,
            target,
            name,
            version,
            kind,
            plugin_api,
            description,
            schemes,
        } => {
            let key = keys::read_secret(&key)?;
            let manual = name.is_some() && version.is_some() && plugin_api.is_some();
            let mut facts = if manual {
                package::PluginFacts::default()
            } else {
                package::facts_from_plugin(&plugin)?
            };
            if let Some(v) = name {
                facts.name = v;
            }
            if let Some(v) = version {
                facts.version = v;
            }
            if let Some(v) = kind {
                facts.kind = v;
            }
            if let Some(v) = plugin_api {
                facts.plugin_api = v;
            }
            if let Some(v) = description {
                facts.description = v;
            }
            if !schemes.is_empty() {
                facts.schemes = schemes;
            }
            if facts.kind.is_empty() {
                facts.kind = "hypervisor".into();
            }
            let target = target.unwrap_or_else(|| rvirt_registry::HOST_TARGET.to_string());
            let (fname, bytes) = package::build(&plugin, &facts, &target, &key)?;
            std::fs::create_dir_all(&out)?;
            let dest = out.join(&fname);
            std::fs::write(&dest, &bytes)
                .with_context(|| format!("cannot write '{}'", dest.display()))?;
            println!("{}", dest.display());
        }
        Command::Publish { packages, index } => {
            let idx = IndexDir::new(index);
            for p in packages {
                let bytes =
                    std::fs::read(&p).with_context(|| format!("cannot read '{}'", p.display()))?;
                let r = idx
                    .publish(&bytes)
                    .with_context(|| format!("cannot publish '{}'", p.display()))?;
                println!(
                    "published {} {} ({}, plugin API {}, {})",
                    r.facts.name, r.facts.version, r.facts.kind, r.facts.plugin_api, r.target
                );
            }
        }
        Command::Yank { spec, index, undo } => {
            let (name, version) = spec
                .split_once('@')
                .context("give NAME@VERSION, e.g. acme@0.2.0")?;
            let n = IndexDir::new(index).yank(name, version, undo)?;
            println!(
                "{} {name} {version} ({n} package{})",
                if undo { "unyanked" } else { "yanked" },
                if n == 1 { "" } else { "s" }
            );
        }
        Command::Verify { package: p, trust } => {
            let bytes =
                std::fs::read(&p).with_context(|| format!("cannot read '{}'", p.display()))?;
            let pkg = package::read(&bytes)?;
            let mut trusted = Vec::new();
            for t in trust {
                if t.starts_with("ed25519:") {
                    trusted.push(t);
                } else {
                    trusted.push(std::fs::read_to_string(&t)?.trim().to_string());
                }
            }
            if trusted.is_empty() {
                keys::verify(
                    &pkg.manifest.publisher_key,
                    &pkg.manifest_bytes,
                    &pkg.signature,
                )?;
                pkg.verify_files()?;
            } else {
                pkg.verify(&trusted, "--trust")?;
            }
            let f = &pkg.manifest.facts;
            println!(
                "ok: {} {} ({}, plugin API {}, {}) signed by {}",
                f.name,
                f.version,
                f.kind,
                f.plugin_api,
                pkg.manifest.target,
                pkg.manifest.publisher_key
            );
        }
        Command::Serve { index, addr } => {
            let listener = std::net::TcpListener::bind(&addr)
                .with_context(|| format!("cannot listen on {addr}"))?;
            println!(
                "serving {} on http://{}",
                index.display(),
                listener.local_addr()?
            );
            rvirt_registry::serve::serve(listener, index);
        }
    }
    Ok(())
}

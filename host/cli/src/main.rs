//! `rvirt`: the command-line client, with virsh's command names and flags.
//!
//! It links no driver: every connection goes through `rvirt-host`, which loads the plugin
//! serving the URI's scheme (or talks to a daemon for remote URIs).

mod assets;
mod console;
mod credentials;
mod domstate;
mod networks;
mod plugins;
mod policy;
mod secrets;
mod session;
mod storage;
mod table;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rvirt_host::{Connection, Domain, DomainState, PluginStatus, Runtime, XML_INACTIVE};
use serde_json::json;
use std::{io::Write, path::PathBuf};
use table::Table;

#[derive(Parser)]
#[command(
    name = "rvirt",
    version,
    about = "Manage virtual machines through rvirt's plugins (virsh-compatible commands)",
    after_help = "The connection URI defaults to $RVIRT_DEFAULT_URI, then $LIBVIRT_DEFAULT_URI, then test:///default."
)]
struct Cli {
    /// Hypervisor connection URI (e.g. test:///default, qemu:///system)
    #[arg(short = 'c', long = "connect", global = true, value_name = "URI")]
    connect: Option<String>,
    /// Open the connection read-only
    #[arg(short = 'r', long = "readonly", global = true)]
    readonly: bool,
    /// Print machine-readable JSON (listing and info commands)
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List domains
    List {
        /// List inactive and active domains
        #[arg(long)]
        all: bool,
        /// List only inactive domains
        #[arg(long)]
        inactive: bool,
        /// List domain names only
        #[arg(long)]
        name: bool,
        /// List domain UUIDs only
        #[arg(long)]
        uuid: bool,
    },
    /// Define (but don't start) a domain from an XML file
    Define {
        /// XML file
        file: PathBuf,
        /// Validate the XML before defining
        #[arg(long)]
        validate: bool,
    },
    /// Undefine a domain
    Undefine { domain: String },
    /// Start a (previously defined) inactive domain
    Start {
        domain: String,
        /// Leave the guest paused after start
        #[arg(long)]
        paused: bool,
    },
    /// Create and start a transient domain from an XML file
    Create {
        file: PathBuf,
        /// Leave the guest paused after creation
        #[arg(long)]
        paused: bool,
    },
    /// Destroy (stop) a domain
    Destroy { domain: String },
    /// Gracefully shut down a domain
    Shutdown { domain: String },
    /// Reboot a domain
    Reboot { domain: String },
    /// Suspend a domain
    Suspend { domain: String },
    /// Resume a domain
    Resume { domain: String },
    /// Domain information
    Dominfo { domain: String },
    /// Domain state
    Domstate {
        domain: String,
        /// Also print the reason for the state
        #[arg(long)]
        reason: bool,
    },
    /// Domain information in XML
    Dumpxml {
        domain: String,
        /// Show the inactive (persistent) definition
        #[arg(long)]
        inactive: bool,
        /// Include security-sensitive information
        #[arg(long)]
        security_info: bool,
    },
    /// Set or unset a domain's autostart
    Autostart {
        domain: String,
        /// Disable autostart
        #[arg(long)]
        disable: bool,
    },
    /// Convert a domain name or UUID to its id
    Domid { domain: String },
    /// Convert a domain name or id to its UUID
    Domuuid { domain: String },
    /// Convert a domain id or UUID to its name
    Domname { domain: String },
    /// Show version information
    Version,
    /// Print the canonical URI of the connection
    Uri,
    /// Print the hypervisor's hostname
    Hostname,
    /// Node information
    Nodeinfo,
    /// Capabilities XML
    Capabilities,
    /// Attach to the domain's console (its pty, or through the daemon for a remote
    /// connection); Ctrl + ] detaches
    Console {
        domain: String,
        /// The character device's alias (default: the first console, else serial port)
        #[arg(long)]
        devname: Option<String>,
        /// End another client's session on the console (VIR_DOMAIN_CONSOLE_FORCE)
        #[arg(long)]
        force: bool,
    },
    /// Convert a native configuration (e.g. vmware-vmx) to a domain XML document
    #[command(name = "domxml-from-native")]
    DomxmlFromNative {
        /// Native format, e.g. vmware-vmx
        format: String,
        /// Native configuration file
        file: PathBuf,
    },
    /// Convert a domain XML document to the hypervisor's native format (e.g. qemu-argv)
    #[command(name = "domxml-to-native")]
    DomxmlToNative {
        /// Native format, e.g. qemu-argv
        format: String,
        /// Domain XML file
        file: PathBuf,
    },
    #[command(flatten)]
    DomState(domstate::DomStateCommand),
    #[command(flatten)]
    Storage(storage::StorageCommand),
    #[command(flatten)]
    Network(networks::NetworkCommand),
    #[command(flatten)]
    Secret(secrets::SecretCommand),
    /// Access policies and hooks of rvirtd (WASM modules)
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Plugins
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// XML tools
    Xml {
        #[command(subcommand)]
        command: XmlCommand,
    },
    /// Write shell completions and man pages into DIR (packaging)
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// List the plugins found along the search path, and why any was refused
    List {
        /// List the plugins of the index instead: the version this host would install, and
        /// what is installed
        #[arg(long)]
        available: bool,
        #[command(flatten)]
        registry: plugins::RegistryArgs,
        /// List what the running rvirtd with --root DIR serves domains with: version, API
        /// version, isolation, process id and restarts per plugin
        #[arg(long, value_name = "DIR", conflicts_with_all = ["available", "daemon_socket"])]
        root: Option<PathBuf>,
        /// As --root, naming a socket of the daemon in its run directory
        #[arg(long, value_name = "PATH", conflicts_with = "available")]
        daemon_socket: Option<PathBuf>,
    },
    /// Live upgrade: the running rvirtd starts the plugin's (replaced) file in a new
    /// process, sends new calls there and stops the old process (isolation = "process")
    Reload {
        /// The plugin's name
        name: String,
        /// The daemon's --root DIR
        #[arg(long, value_name = "DIR", conflicts_with = "socket")]
        root: Option<PathBuf>,
        /// A socket of the daemon in its run directory
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Which plugin, at which version, a running rvirtd serves each scheme, pool type and
    /// forward mode with (the plugins it has loaded; read from its run directory)
    Served {
        /// The daemon's --root DIR (reads DIR/run/plugins.json)
        #[arg(long, value_name = "DIR", conflicts_with = "socket")]
        root: Option<PathBuf>,
        /// A socket of the daemon in its run directory (reads plugins.json beside it)
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    #[command(flatten)]
    Manage(plugins::PluginManage),
}

#[derive(Clone, Copy, ValueEnum)]
enum XmlKind {
    Domain,
    Network,
    Pool,
    Volume,
}

#[derive(Subcommand)]
enum XmlCommand {
    /// Parse a document and print it as libvirt formats it
    Normalize {
        /// Document kind
        #[arg(long, value_enum)]
        kind: XmlKind,
        /// The document
        file: PathBuf,
        /// For volumes: the pool XML giving the volume's context
        #[arg(long, value_name = "POOLFILE")]
        pool: Option<PathBuf>,
        /// Print the inactive form
        #[arg(long)]
        inactive: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        let mut msg = format!("{e}");
        for cause in e.chain().skip(1) {
            msg.push_str(": ");
            msg.push_str(&cause.to_string());
        }
        eprintln!("error: {}", msg.replace('\n', " "));
        std::process::exit(1);
    }
}

fn default_uri(given: Option<String>) -> String {
    given
        .or_else(|| {
            std::env::var("RVIRT_DEFAULT_URI")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| {
            std::env::var("LIBVIRT_DEFAULT_URI")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "test:///default".to_string())
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let json = cli.json;
    // Commands that need no connection.
    match &cli.command {
        Command::Plugin {
            command:
                PluginCommand::List {
                    available,
                    registry,
                    root,
                    daemon_socket,
                },
        } => {
            return if root.is_some() || daemon_socket.is_some() {
                plugins::daemon_list(root.as_deref(), daemon_socket.as_deref(), json)
            } else if *available {
                plugins::list_available(registry, json)
            } else {
                plugin_list(json)
            };
        }
        Command::Plugin {
            command: PluginCommand::Reload { name, root, socket },
        } => return plugins::reload(name, root.as_deref(), socket.as_deref(), json),
        Command::Plugin {
            command: PluginCommand::Served { root, socket },
        } => return plugins::served(root.as_deref(), socket.as_deref(), json),
        Command::Plugin {
            command: PluginCommand::Manage(_),
        } => {
            let Command::Plugin {
                command: PluginCommand::Manage(cmd),
            } = cli.command
            else {
                unreachable!("matched above")
            };
            return plugins::run(cmd, json);
        }
        Command::Xml { command } => return xml_command(command),
        Command::GenerateAssets { dir } => {
            return assets::generate(<Cli as clap::CommandFactory>::command(), dir);
        }
        Command::Policy { command } => return policy::run(command),
        _ => {}
    }
    let uri = default_uri(cli.connect);
    // a user's DRIVER:///session is served by their session daemon, started on demand
    let uri = session::route(&uri)?;
    let runtime = Runtime::global();
    // a VMware URI without a password anywhere asks for one, as virsh does
    let conn = credentials::open(runtime, &uri, cli.readonly)?;
    match cli.command {
        Command::List {
            all,
            inactive,
            name,
            uuid,
        } => list(&conn, all, inactive, name, uuid, json),
        Command::Define { file, validate } => {
            let xml = read_file(&file)?;
            let mut flags = 0;
            if validate {
                rvirt_xml::Domain::parse(&xml).with_context(|| {
                    format!("'{}' is not a valid domain document", file.display())
                })?;
                flags |= 1; // VIR_DOMAIN_DEFINE_VALIDATE
            }
            let dom = conn
                .define_xml(&xml, flags)
                .with_context(|| format!("failed to define domain from '{}'", file.display()))?;
            println!("Domain '{}' defined from {}\n", dom.name(), file.display());
            Ok(())
        }
        Command::Undefine { domain } => {
            let d = lookup(&conn, &domain)?;
            d.undefine(0)
                .with_context(|| format!("failed to undefine domain '{domain}'"))?;
            println!("Domain '{}' has been undefined\n", d.name());
            Ok(())
        }
        Command::Start { domain, paused } => {
            let mut d = lookup(&conn, &domain)?;
            d.create(if paused { rvirt_host::START_PAUSED } else { 0 })
                .with_context(|| format!("failed to start domain '{domain}'"))?;
            println!("Domain '{}' started\n", d.name());
            Ok(())
        }
        Command::Create { file, paused } => {
            let xml = read_file(&file)?;
            let d = conn
                .create_xml(&xml, if paused { rvirt_host::START_PAUSED } else { 0 })
                .with_context(|| format!("failed to create domain from '{}'", file.display()))?;
            println!("Domain '{}' created from {}\n", d.name(), file.display());
            Ok(())
        }
        Command::Destroy { domain } => {
            act(&conn, &domain, "destroy", "destroyed", |d| d.destroy(0))
        }
        Command::Shutdown { domain } => act(&conn, &domain, "shutdown", "is being shutdown", |d| {
            d.shutdown(0)
        }),
        Command::Reboot { domain } => act(&conn, &domain, "reboot", "is being rebooted", |d| {
            d.reboot(0)
        }),
        Command::Suspend { domain } => act(&conn, &domain, "suspend", "suspended", |d| d.suspend()),
        Command::Resume { domain } => act(&conn, &domain, "resume", "resumed", |d| d.resume()),
        Command::Dominfo { domain } => dominfo(&conn, &domain, json),
        Command::Domstate { domain, reason } => {
            let d = lookup(&conn, &domain)?;
            let (state, r) = d
                .get_state()
                .with_context(|| format!("failed to get state of domain '{domain}'"))?;
            if json {
                print_json(
                    &json!({"name": d.name(), "state": state.as_str(), "state_code": state.as_i32(),
                    "reason": state.reason_str(r), "reason_code": r}),
                )
            } else {
                if reason {
                    println!("{} ({})\n", state, state.reason_str(r));
                } else {
                    println!("{state}\n");
                }
                Ok(())
            }
        }
        Command::Dumpxml {
            domain,
            inactive,
            security_info,
        } => {
            let d = lookup(&conn, &domain)?;
            let flags = if inactive { XML_INACTIVE } else { 0 } | u32::from(security_info);
            let xml = d
                .get_xml_desc(flags)
                .with_context(|| format!("failed to get XML of domain '{domain}'"))?;
            print!("{xml}");
            if !xml.ends_with('\n') {
                println!();
            }
            Ok(())
        }
        Command::Autostart { domain, disable } => {
            let d = lookup(&conn, &domain)?;
            d.set_autostart(!disable)
                .with_context(|| format!("failed to set autostart of domain '{domain}'"))?;
            if disable {
                println!("Domain '{}' unmarked as autostarted\n", d.name());
            } else {
                println!("Domain '{}' marked as autostarted\n", d.name());
            }
            Ok(())
        }
        Command::Domid { domain } => {
            let d = lookup(&conn, &domain)?;
            let id = current_id(&conn, &d)?;
            if json {
                return print_json(&json!({"name": d.name(), "id": id}));
            }
            if id < 0 {
                println!("-\n")
            } else {
                println!("{id}\n")
            }
            Ok(())
        }
        Command::Domuuid { domain } => {
            let d = lookup(&conn, &domain)?;
            if json {
                return print_json(&json!({"name": d.name(), "uuid": d.uuid()}));
            }
            println!("{}\n", d.uuid());
            Ok(())
        }
        Command::Domname { domain } => {
            let d = lookup(&conn, &domain)?;
            if json {
                return print_json(&json!({"name": d.name(), "uuid": d.uuid()}));
            }
            println!("{}\n", d.name());
            Ok(())
        }
        Command::Version => version(&conn, json),
        Command::Uri => {
            let uri = conn.get_uri().context("failed to get the connection URI")?;
            if json {
                print_json(&json!({"uri": uri}))
            } else {
                println!("{uri}\n");
                Ok(())
            }
        }
        Command::Hostname => {
            let h = conn.get_hostname().context("failed to get hostname")?;
            if json {
                print_json(&json!({"hostname": h}))
            } else {
                println!("{h}\n");
                Ok(())
            }
        }
        Command::Nodeinfo => {
            let n = conn
                .node_get_info()
                .context("failed to get node information")?;
            if json {
                return print_json(&serde_json::to_value(&n)?);
            }
            let rows = [
                ("CPU model:", n.model.clone()),
                ("CPU(s):", n.cpus.to_string()),
                ("CPU frequency:", format!("{} MHz", n.mhz)),
                ("CPU socket(s):", n.sockets.to_string()),
                ("Core(s) per socket:", n.cores.to_string()),
                ("Thread(s) per core:", n.threads.to_string()),
                ("NUMA cell(s):", n.nodes.to_string()),
                ("Memory size:", format!("{} KiB", n.memory_kib)),
            ];
            for (k, v) in rows {
                println!("{k:<20} {v}");
            }
            println!();
            Ok(())
        }
        Command::Console {
            domain,
            devname,
            force,
        } => {
            let d = lookup(&conn, &domain)?;
            if conn.driver_name() == "remote" {
                // through the daemon: DOMAIN_OPEN_CONSOLE's stream
                let session = d
                    .open_console(devname.as_deref(), if force { 1 } else { 0 })
                    .with_context(|| format!("cannot open the console of domain '{domain}'"))?;
                return console::run_remote(d.name(), session);
            }
            let xml = d
                .get_xml_desc(0)
                .with_context(|| format!("failed to get XML of domain '{domain}'"))?;
            console::run(d.name(), &xml)
        }
        Command::Capabilities => {
            let caps = conn
                .get_capabilities()
                .context("failed to get capabilities")?;
            print!("{caps}");
            if !caps.ends_with('\n') {
                println!();
            }
            Ok(())
        }
        Command::DomxmlFromNative { format, file } => {
            let config = read_file(&file)?;
            let xml = conn
                .domain_xml_from_native(&format, &config, 0)
                .with_context(|| format!("failed to convert '{}' from {format}", file.display()))?;
            print!("{xml}");
            if !xml.ends_with('\n') {
                println!();
            }
            Ok(())
        }
        Command::DomxmlToNative { format, file } => {
            let xml = read_file(&file)?;
            let native = conn
                .domain_xml_to_native(&format, &xml, 0)
                .with_context(|| format!("failed to convert '{}' to {format}", file.display()))?;
            print!("{native}");
            if !native.ends_with('\n') {
                println!();
            }
            Ok(())
        }
        Command::DomState(cmd) => domstate::run(&conn, cmd, json),
        Command::Storage(cmd) => storage::run(&conn, cmd, json),
        Command::Network(cmd) => networks::run(&conn, cmd, json),
        Command::Secret(cmd) => secrets::run(&conn, cmd, json),
        Command::Plugin { .. }
        | Command::Xml { .. }
        | Command::Policy { .. }
        | Command::GenerateAssets { .. } => {
            unreachable!("handled before connecting")
        }
    }
}

fn read_file(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("failed to read file '{}'", path.display()))
}

/// Finds a domain by id, UUID or name, in that order, as virsh does.
fn lookup(conn: &Connection, arg: &str) -> Result<Domain> {
    if let Ok(id) = arg.parse::<i32>()
        && id >= 0
        && let Ok(d) = conn.lookup_domain_by_id(id)
    {
        return Ok(d);
    }
    if let Ok(u) = uuid::Uuid::parse_str(arg)
        && let Ok(d) = conn.lookup_domain_by_uuid(u)
    {
        return Ok(d);
    }
    conn.lookup_domain_by_name(arg)
        .with_context(|| format!("failed to get domain '{arg}'"))
}

fn current_id(conn: &Connection, d: &Domain) -> Result<i32> {
    Ok(conn.lookup_domain_by_uuid(d.uuid())?.id())
}

fn act(
    conn: &Connection,
    arg: &str,
    verb: &str,
    done: &str,
    f: impl FnOnce(&Domain) -> rvirt_host::Result<()>,
) -> Result<()> {
    let d = lookup(conn, arg)?;
    f(&d).with_context(|| format!("failed to {verb} domain '{arg}'"))?;
    println!("Domain '{}' {done}\n", d.name());
    Ok(())
}

fn list(
    conn: &Connection,
    all: bool,
    inactive: bool,
    name: bool,
    uuid: bool,
    json: bool,
) -> Result<()> {
    use rvirt_host::DomainState as S;
    let flags = match (all, inactive) {
        (true, _) => 0,
        (false, true) => 2,  // VIR_CONNECT_LIST_DOMAINS_INACTIVE
        (false, false) => 1, // VIR_CONNECT_LIST_DOMAINS_ACTIVE
    };
    let mut rows = Vec::new();
    for d in conn
        .list_all_domains(flags)
        .context("failed to list domains")?
    {
        // A domain may vanish between the listing and the state query.
        let Ok((state, _)) = d.get_state() else {
            continue;
        };
        rows.push((d, state));
    }
    // virsh lists active domains by id first, then inactive ones by name.
    rows.sort_by(|(a, sa), (b, sb)| {
        let key = |d: &Domain, s: &S| {
            (
                !s.is_active(),
                if s.is_active() { d.id() } else { 0 },
                d.name().to_string(),
            )
        };
        key(a, sa).cmp(&key(b, sb))
    });
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(d, s)| {
                json!({"id": if d.id() >= 0 { json!(d.id()) } else { json!(null) },
                       "name": d.name(), "uuid": d.uuid(), "state": s.as_str()})
            })
            .collect();
        return print_json(&serde_json::Value::Array(v));
    }
    if name || uuid {
        for (d, _) in &rows {
            match (uuid, name) {
                (true, true) => println!("{}  {}", d.uuid(), d.name()),
                (true, false) => println!("{}", d.uuid()),
                _ => println!("{}", d.name()),
            }
        }
        println!();
        return Ok(());
    }
    let mut t = Table::new(&["Id", "Name", "State"]);
    for (d, s) in &rows {
        let id = if d.id() >= 0 {
            d.id().to_string()
        } else {
            "-".into()
        };
        t.row(vec![id, d.name().to_string(), s.as_str().to_string()]);
    }
    print!("{}", t.render());
    println!();
    Ok(())
}

fn dominfo(conn: &Connection, arg: &str, json: bool) -> Result<()> {
    let d = lookup(conn, arg)?;
    let ctx = || format!("failed to get information of domain '{arg}'");
    let info = d.get_info().with_context(ctx)?;
    let id = current_id(conn, &d)?;
    let os = d.get_os_type().unwrap_or_else(|_| "-".into());
    let persistent = d.is_persistent().with_context(ctx)?;
    let autostart = d.get_autostart().with_context(ctx)?;
    let managed = d.has_managed_save_image(0).unwrap_or(false);
    if json {
        return print_json(&json!({
            "id": if id >= 0 { json!(id) } else { json!(null) },
            "name": d.name(), "uuid": d.uuid(), "os_type": os,
            "state": info.state.as_str(), "cpus": info.nr_virt_cpu,
            "cpu_time_ns": info.cpu_time_ns, "max_memory_kib": info.max_mem_kib,
            "used_memory_kib": info.memory_kib, "persistent": persistent,
            "autostart": autostart, "managed_save": managed,
        }));
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut rows = vec![
        ("Id:", if id >= 0 { id.to_string() } else { "-".into() }),
        ("Name:", d.name().to_string()),
        ("UUID:", d.uuid().to_string()),
        ("OS Type:", os),
        ("State:", info.state.as_str().to_string()),
        ("CPU(s):", info.nr_virt_cpu.to_string()),
    ];
    if info.state != DomainState::Shutoff {
        rows.push((
            "CPU time:",
            format!("{:.1}s", info.cpu_time_ns as f64 / 1e9),
        ));
    }
    rows.extend([
        ("Max memory:", format!("{} KiB", info.max_mem_kib)),
        ("Used memory:", format!("{} KiB", info.memory_kib)),
        ("Persistent:", yes(persistent).to_string()),
        (
            "Autostart:",
            if autostart { "enable" } else { "disable" }.to_string(),
        ),
        ("Managed save:", yes(managed).to_string()),
    ]);
    for (k, v) in rows {
        println!("{k:<15} {v}");
    }
    println!();
    Ok(())
}

fn encoded(v: u64) -> String {
    format!("{}.{}.{}", v / 1_000_000, (v / 1_000) % 1_000, v % 1_000)
}

fn version(conn: &Connection, json: bool) -> Result<()> {
    let lib = encoded(rvirt_host::lib_version());
    let ty = conn
        .get_type()
        .context("failed to get the hypervisor type")?;
    let hv = conn
        .get_version()
        .context("failed to get the hypervisor version")?;
    if json {
        return print_json(
            &json!({"library": lib, "plugin_api": rvirt_host::PLUGIN_API_VERSION,
            "hypervisor_type": ty, "hypervisor_version": encoded(hv)}),
        );
    }
    println!("Compiled against library: rvirt {lib}");
    println!("Using library: rvirt {lib}");
    println!("Using API: {ty} {lib}");
    println!("Running hypervisor: {ty} {}\n", encoded(hv));
    Ok(())
}

fn plugin_list(json: bool) -> Result<()> {
    let rt = Runtime::global();
    if json {
        let v: Vec<_> = rt
            .plugins()
            .iter()
            .map(|r| {
                let file = r.path.display().to_string();
                let refused_pool_types: Vec<_> = r
                    .refused_pool_types
                    .iter()
                    .map(|p| json!({"pool_type": p.pool_type, "served_by": p.served_by.display().to_string()}))
                    .collect();
                match &r.status {
                    PluginStatus::Loaded(m) => {
                        json!({"file": file, "status": "loaded", "name": m.name,
                        "kind": m.kind, "kinds": m.kinds(), "version": m.version,
                        "api_version": m.api_version, "schemes": m.schemes,
                        "pool_types": m.pool_types, "refused_pool_types": refused_pool_types,
                        "forward_modes": m.forward_modes,
                        "description": m.description})
                    }
                    PluginStatus::Shadowed { manifest: m, by } => {
                        json!({"file": file, "status": "shadowed",
                        "shadowed_by": by.display().to_string(), "name": m.name, "kind": m.kind,
                        "kinds": m.kinds(), "version": m.version, "api_version": m.api_version,
                        "schemes": m.schemes, "pool_types": m.pool_types,
                        "forward_modes": m.forward_modes})
                    }
                    PluginStatus::Refused(e) => {
                        json!({"file": file, "status": "refused", "reason": e.to_string()})
                    }
                }
            })
            .collect();
        return print_json(&json!({
            "host_api_version": rvirt_host::PLUGIN_API_VERSION,
            // whether this build's host library checks embedders' calls (feature `policy`)
            "host_policy_built_in": rvirt_host::POLICY_BUILT_IN,
            "search_path": rt.search_path().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "plugins": v,
        }));
    }
    let mut t = Table::new(&[
        "Name",
        "Kind",
        "Version",
        "API",
        "Schemes",
        "Pool types",
        "Forward modes",
        "File",
        "Status",
    ]);
    let or_dash = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    for r in rt.plugins() {
        let file = r.path.display().to_string();
        match &r.status {
            PluginStatus::Loaded(m) => {
                let mut status = "loaded".to_string();
                for p in &r.refused_pool_types {
                    status.push_str(&format!("; {p}"));
                }
                t.row(vec![
                    m.name.clone(),
                    m.kinds().join(","),
                    m.version.clone(),
                    m.api_version.clone(),
                    or_dash(&m.schemes),
                    or_dash(&m.pool_types),
                    or_dash(&m.forward_modes),
                    file,
                    status,
                ])
            }
            PluginStatus::Shadowed { manifest: m, by } => t.row(vec![
                m.name.clone(),
                m.kinds().join(","),
                m.version.clone(),
                m.api_version.clone(),
                or_dash(&m.schemes),
                or_dash(&m.pool_types),
                or_dash(&m.forward_modes),
                file,
                format!("shadowed by {}", by.display()),
            ]),
            PluginStatus::Refused(e) => t.row(vec![
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                file,
                format!("refused: {e}"),
            ]),
        }
    }
    print!("{}", t.render());
    println!();
    if rt.plugins().is_empty() {
        let dirs: Vec<String> = rt
            .search_path()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        println!("no plugin found; searched {}", dirs.join(":"));
    }
    Ok(())
}

fn xml_command(cmd: &XmlCommand) -> Result<()> {
    let XmlCommand::Normalize {
        kind,
        file,
        pool,
        inactive,
    } = cmd;
    let text = read_file(file)?;
    let opts = rvirt_xml::FormatOptions {
        inactive: *inactive,
        secure: true,
    };
    let what = |k: &str| format!("'{}' is not a valid {k} document", file.display());
    let out = match kind {
        XmlKind::Domain => rvirt_xml::Domain::parse(&text)
            .with_context(|| what("domain"))?
            .to_xml(&opts),
        XmlKind::Network => rvirt_xml::Network::parse(&text)
            .with_context(|| what("network"))?
            .to_xml(&opts),
        XmlKind::Pool => rvirt_xml::StoragePool::parse(&text)
            .with_context(|| what("pool"))?
            .to_xml(&opts),
        XmlKind::Volume => {
            let pool =
                match pool {
                    Some(p) => Some(rvirt_xml::StoragePool::parse(&read_file(p)?).with_context(
                        || format!("'{}' is not a valid pool document", p.display()),
                    )?),
                    None => None,
                };
            rvirt_xml::StorageVolume::parse(&text, pool.as_ref())
                .with_context(|| what("volume"))?
                .to_xml(&opts)
        }
    };
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(())
}

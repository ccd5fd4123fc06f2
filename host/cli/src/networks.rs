//! virsh's network and network port commands.

use crate::table::Table;
use crate::{print_json, read_file};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use rvirt_host::networks::{NetworkEvent, NetworkId, list_flags, net_event, update};
use rvirt_host::{Connection, NetworkService};
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// List networks
    #[command(name = "net-list")]
    List {
        /// List inactive and active networks
        #[arg(long)]
        all: bool,
        /// List only inactive networks
        #[arg(long)]
        inactive: bool,
        /// List names only
        #[arg(long)]
        name: bool,
        /// List UUIDs only
        #[arg(long)]
        uuid: bool,
    },
    /// Define (but don't start) a network from an XML file
    #[command(name = "net-define")]
    Define { file: PathBuf },
    /// Create and start a transient network from an XML file
    #[command(name = "net-create")]
    Create { file: PathBuf },
    /// Start a (previously defined) inactive network
    #[command(name = "net-start")]
    Start { network: String },
    /// Stop a network
    #[command(name = "net-destroy")]
    Destroy { network: String },
    /// Undefine a persistent network
    #[command(name = "net-undefine")]
    Undefine { network: String },
    /// Network information in XML
    #[command(name = "net-dumpxml")]
    Dumpxml {
        network: String,
        /// The definition used at the next start
        #[arg(long)]
        inactive: bool,
    },
    /// Network information
    #[command(name = "net-info")]
    Info { network: String },
    /// Start the network with the host (or not, with --disable)
    #[command(name = "net-autostart")]
    Autostart {
        network: String,
        #[arg(long)]
        disable: bool,
    },
    /// The name of a network given its UUID
    #[command(name = "net-name")]
    Name { uuid: String },
    /// The UUID of a network given its name
    #[command(name = "net-uuid")]
    Uuid { network: String },
    /// The DHCP leases of a network
    #[command(name = "net-dhcp-leases")]
    DhcpLeases {
        network: String,
        /// Only the leases of this MAC address
        #[arg(long)]
        mac: Option<String>,
    },
    /// Update a section of a network's definition
    #[command(name = "net-update")]
    Update {
        network: String,
        /// add (add-last), add-first, add-last, delete, modify
        command: String,
        /// ip-dhcp-host or ip-dhcp-range
        section: String,
        /// The element (XML text, or a file holding it)
        xml: String,
        /// Which <ip> element, by index (default: the first IPv4 one)
        #[arg(long, default_value_t = -1)]
        parent_index: i32,
        /// Change the running network
        #[arg(long)]
        live: bool,
        /// Change the persistent definition
        #[arg(long)]
        config: bool,
    },
    /// List the ports of a network
    #[command(name = "net-port-list")]
    PortList {
        network: String,
        /// List UUIDs only
        #[arg(long)]
        uuid: bool,
    },
    /// Plug a port into a network from an XML file
    #[command(name = "net-port-create")]
    PortCreate { network: String, file: PathBuf },
    /// Unplug a network port
    #[command(name = "net-port-delete")]
    PortDelete { network: String, port: String },
    /// Network port information in XML
    #[command(name = "net-port-dumpxml")]
    PortDumpxml { network: String, port: String },
    /// Print network lifecycle events
    #[command(name = "net-event")]
    Event {
        /// Only events of this network
        #[arg(long)]
        network: Option<String>,
        /// Keep printing events until the timeout (else: the first event)
        #[arg(long = "loop")]
        keep: bool,
        /// Seconds to wait
        #[arg(long)]
        timeout: Option<u64>,
        /// The event to wait for (only `lifecycle` exists)
        #[arg(long)]
        event: Option<String>,
    },
}

/// A network by name, then by UUID, as virsh finds it.
fn find(n: &NetworkService, arg: &str) -> Result<NetworkId> {
    match n.lookup_by_name(arg) {
        Ok(id) => Ok(id),
        Err(e) => match uuid::Uuid::parse_str(arg) {
            Ok(u) => n
                .lookup_by_uuid(u)
                .with_context(|| format!("failed to get network '{arg}'")),
            Err(_) => Err(e).with_context(|| format!("failed to get network '{arg}'")),
        },
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn event_name(e: i32) -> &'static str {
    match e {
        net_event::DEFINED => "Defined",
        net_event::UNDEFINED => "Undefined",
        net_event::STARTED => "Started",
        net_event::STOPPED => "Stopped",
        _ => "Unknown",
    }
}

/// The XML of `net-update`: inline text, or a file holding it.
fn update_xml(arg: &str) -> Result<String> {
    if arg.trim_start().starts_with('<') {
        Ok(arg.to_string())
    } else {
        read_file(&PathBuf::from(arg))
    }
}

pub fn run(conn: &Connection, cmd: NetworkCommand, json: bool) -> Result<()> {
    use NetworkCommand as C;
    let n = conn.networks().context("failed to reach the networks")?;
    match cmd {
        C::List {
            all,
            inactive,
            name,
            uuid,
        } => {
            let flags = match (all, inactive) {
                (true, _) => 0,
                (false, true) => list_flags::INACTIVE,
                (false, false) => list_flags::ACTIVE,
            };
            let mut ids = n.list(flags).context("failed to list networks")?;
            ids.sort_by(|a, b| a.name.cmp(&b.name));
            let mut rows = Vec::new();
            for id in ids {
                // a network may vanish between the listing and the queries
                let (Ok(active), Ok(autostart), Ok(persistent)) = (
                    n.is_active(&id.name),
                    n.autostart(&id.name),
                    n.is_persistent(&id.name),
                ) else {
                    continue;
                };
                rows.push((id, active, autostart, persistent));
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(id, a, s, p)| {
                        json!({"name": id.name, "uuid": id.uuid, "active": a,
                            "autostart": s, "persistent": p})
                    })
                    .collect();
                return print_json(&serde_json::Value::Array(v));
            }
            if name || uuid {
                for (id, ..) in &rows {
                    match (uuid, name) {
                        (true, true) => println!("{} {}", id.uuid, id.name),
                        (true, false) => println!("{}", id.uuid),
                        _ => println!("{}", id.name),
                    }
                }
                return Ok(());
            }
            let mut t = Table::new(&["Name", "State", "Autostart", "Persistent"]);
            for (id, a, s, p) in rows {
                t.row(vec![
                    id.name,
                    if a { "active" } else { "inactive" }.into(),
                    yes(s).into(),
                    yes(p).into(),
                ]);
            }
            print!("{}", t.render());
            Ok(())
        }
        C::Define { file } => {
            let xml = read_file(&file)?;
            let id = n
                .define(&xml, 0)
                .with_context(|| format!("failed to define network from '{}'", file.display()))?;
            println!("Network {} defined from {}\n", id.name, file.display());
            Ok(())
        }
        C::Create { file } => {
            let xml = read_file(&file)?;
            let id = n
                .create_xml(&xml, 0)
                .with_context(|| format!("failed to create network from '{}'", file.display()))?;
            println!("Network {} created from {}\n", id.name, file.display());
            Ok(())
        }
        C::Start { network } => {
            let id = find(&n, &network)?;
            n.create(&id.name)
                .with_context(|| format!("failed to start network '{}'", id.name))?;
            println!("Network {} started\n", id.name);
            Ok(())
        }
        C::Destroy { network } => {
            let id = find(&n, &network)?;
            n.destroy(&id.name)
                .with_context(|| format!("failed to destroy network '{}'", id.name))?;
            println!("Network {} destroyed\n", id.name);
            Ok(())
        }
        C::Undefine { network } => {
            let id = find(&n, &network)?;
            n.undefine(&id.name)
                .with_context(|| format!("failed to undefine network '{}'", id.name))?;
            println!("Network {} has been undefined\n", id.name);
            Ok(())
        }
        C::Dumpxml { network, inactive } => {
            let id = find(&n, &network)?;
            let xml = n
                .xml(&id.name, u32::from(inactive))
                .with_context(|| format!("failed to get the XML of network '{}'", id.name))?;
            print!("{xml}");
            if !xml.ends_with('\n') {
                println!();
            }
            Ok(())
        }
        C::Info { network } => {
            let id = find(&n, &network)?;
            let active = n.is_active(&id.name)?;
            let persistent = n.is_persistent(&id.name)?;
            let autostart = n.autostart(&id.name)?;
            let bridge = n.bridge_name(&id.name).ok();
            if json {
                return print_json(&json!({"name": id.name, "uuid": id.uuid,
                    "active": active, "persistent": persistent, "autostart": autostart,
                    "bridge": bridge}));
            }
            println!("{:<15} {}", "Name:", id.name);
            println!("{:<15} {}", "UUID:", id.uuid);
            println!("{:<15} {}", "Active:", yes(active));
            println!("{:<15} {}", "Persistent:", yes(persistent));
            println!("{:<15} {}", "Autostart:", yes(autostart));
            if let Some(b) = bridge {
                println!("{:<15} {b}", "Bridge:");
            }
            Ok(())
        }
        C::Autostart { network, disable } => {
            let id = find(&n, &network)?;
            n.set_autostart(&id.name, !disable)
                .with_context(|| format!("failed to set autostart of network '{}'", id.name))?;
            if disable {
                println!("Network {} unmarked as autostarted\n", id.name);
            } else {
                println!("Network {} marked as autostarted\n", id.name);
            }
            Ok(())
        }
        C::Name { uuid } => {
            let u =
                uuid::Uuid::parse_str(&uuid).with_context(|| format!("invalid UUID '{uuid}'"))?;
            println!("{}\n", n.lookup_by_uuid(u)?.name);
            Ok(())
        }
        C::Uuid { network } => {
            println!("{}\n", find(&n, &network)?.uuid);
            Ok(())
        }
        C::DhcpLeases { network, mac } => {
            let id = find(&n, &network)?;
            let leases = n
                .dhcp_leases(&id.name, mac.as_deref(), 0)
                .with_context(|| format!("failed to get the leases of network '{}'", id.name))?;
            if json {
                return print_json(&serde_json::to_value(&leases)?);
            }
            let mut t = Table::new(&[
                "Expiry Time",
                "MAC address",
                "Protocol",
                "IP address",
                "Hostname",
                "Client ID or DUID",
            ]);
            for l in leases {
                t.row(vec![
                    if l.expiry_time == 0 {
                        "never".into()
                    } else {
                        l.expiry_time.to_string()
                    },
                    l.mac,
                    if l.ip_type == 1 { "ipv6" } else { "ipv4" }.into(),
                    format!("{}/{}", l.ipaddr, l.prefix),
                    if l.hostname.is_empty() {
                        "-".into()
                    } else {
                        l.hostname
                    },
                    if l.clientid.is_empty() {
                        "-".into()
                    } else {
                        l.clientid
                    },
                ]);
            }
            print!("{}", t.render());
            Ok(())
        }
        C::Update {
            network,
            command,
            section,
            xml,
            parent_index,
            live,
            config,
        } => {
            let id = find(&n, &network)?;
            let command = match command.as_str() {
                "add" | "add-last" => update::ADD_LAST,
                "add-first" => update::ADD_FIRST,
                "delete" => update::DELETE,
                "modify" => update::MODIFY,
                c => bail!(
                    "unknown net-update command '{c}' (add, add-first, add-last, delete, modify)"
                ),
            };
            let section = match section.as_str() {
                "ip-dhcp-host" => update::SECTION_IP_DHCP_HOST,
                "ip-dhcp-range" => update::SECTION_IP_DHCP_RANGE,
                s => bail!("section '{s}' is not served (ip-dhcp-host, ip-dhcp-range)"),
            };
            let mut flags = 0;
            if live {
                flags |= update::AFFECT_LIVE;
            }
            if config {
                flags |= update::AFFECT_CONFIG;
            }
            n.update(
                &id.name,
                command,
                section,
                parent_index,
                &update_xml(&xml)?,
                flags,
            )
            .with_context(|| format!("failed to update network '{}'", id.name))?;
            println!("Updated network {}\n", id.name);
            Ok(())
        }
        C::PortList { network, uuid } => {
            let id = find(&n, &network)?;
            let ports = n
                .port_list(&id.name, 0)
                .with_context(|| format!("failed to list the ports of network '{}'", id.name))?;
            if json {
                let v: Vec<_> = ports.iter().map(|p| json!({"uuid": p.uuid})).collect();
                return print_json(&serde_json::Value::Array(v));
            }
            if uuid {
                for p in ports {
                    println!("{}", p.uuid);
                }
                return Ok(());
            }
            let mut t = Table::new(&["UUID"]);
            for p in ports {
                t.row(vec![p.uuid.to_string()]);
            }
            print!("{}", t.render());
            Ok(())
        }
        C::PortCreate { network, file } => {
            let id = find(&n, &network)?;
            let xml = read_file(&file)?;
            let p = n
                .port_create(&id.name, &xml, 0)
                .with_context(|| format!("failed to create a port from '{}'", file.display()))?;
            println!("Network port {} created from {}\n", p.uuid, file.display());
            Ok(())
        }
        C::PortDelete { network, port } => {
            let id = find(&n, &network)?;
            let u =
                uuid::Uuid::parse_str(&port).with_context(|| format!("invalid UUID '{port}'"))?;
            n.port_delete(&id.name, u, 0)
                .with_context(|| format!("failed to delete network port {port}"))?;
            println!("Network port {port} deleted\n");
            Ok(())
        }
        C::PortDumpxml { network, port } => {
            let id = find(&n, &network)?;
            let u =
                uuid::Uuid::parse_str(&port).with_context(|| format!("invalid UUID '{port}'"))?;
            let xml = n
                .port_xml(&id.name, u, 0)
                .with_context(|| format!("failed to get network port {port}"))?;
            print!("{xml}");
            if !xml.ends_with('\n') {
                println!();
            }
            Ok(())
        }
        C::Event {
            network,
            keep,
            timeout,
            event,
        } => {
            if let Some(e) = event.as_deref()
                && e != "lifecycle"
            {
                bail!("unknown network event type '{e}' (only 'lifecycle')");
            }
            let only = network.map(|a| find(&n, &a)).transpose()?.map(|i| i.uuid);
            let seen: Arc<Mutex<Vec<NetworkEvent>>> = Arc::default();
            let s = Arc::clone(&seen);
            let id = n
                .subscribe(Arc::new(move |e: &NetworkEvent| {
                    if only.is_none_or(|u| u == e.uuid) {
                        s.lock().unwrap_or_else(|p| p.into_inner()).push(e.clone());
                    }
                }))
                .context("failed to subscribe to network events")?;
            let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t));
            let mut printed = 0;
            loop {
                let events: Vec<NetworkEvent> = seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .drain(..)
                    .collect();
                for e in events {
                    println!(
                        "event 'lifecycle' for network {}: {}",
                        e.name,
                        event_name(e.event)
                    );
                    printed += 1;
                }
                if (!keep && printed > 0) || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            n.unsubscribe(id)
                .context("failed to unsubscribe from network events")?;
            println!("events received: {printed}");
            Ok(())
        }
    }
}

//! virsh's save/restore, managed save and statistics commands: `save`, `restore`,
//! `managedsave`, `managedsave-remove`, `domstats`, `domblkstat`, `domifstat`,
//! `dommemstat`, `domjobinfo` and `cpu-stats`, printed as virsh prints them (or as JSON).

use crate::{lookup, print_json};
use anyhow::{Context, Result};
use clap::Subcommand;
use rvirt_host::{Connection, TypedParam, TypedParamValue};
use serde_json::json;
use std::path::PathBuf;

/// `VIR_DOMAIN_SAVE_RUNNING`, `VIR_DOMAIN_SAVE_PAUSED`.
const SAVE_RUNNING: u32 = 2;
const SAVE_PAUSED: u32 = 4;

#[derive(Subcommand)]
pub enum DomStateCommand {
    /// Save a domain's state to a file; the domain stops
    Save {
        domain: String,
        file: PathBuf,
        /// Restore into a running guest
        #[arg(long, conflicts_with = "paused")]
        running: bool,
        /// Restore into a paused guest
        #[arg(long)]
        paused: bool,
    },
    /// Restore a domain from a saved state file
    Restore {
        file: PathBuf,
        /// Run the guest after the restore
        #[arg(long, conflicts_with = "paused")]
        running: bool,
        /// Leave the guest paused after the restore
        #[arg(long)]
        paused: bool,
    },
    /// Save a domain's state for its next start to resume from
    Managedsave {
        domain: String,
        #[arg(long, conflicts_with = "paused")]
        running: bool,
        #[arg(long)]
        paused: bool,
    },
    /// Remove a domain's managed save image
    #[command(name = "managedsave-remove")]
    ManagedsaveRemove { domain: String },
    /// The domain XML a save image holds
    #[command(name = "save-image-dumpxml")]
    SaveImageDumpxml {
        file: PathBuf,
        #[arg(long)]
        security_info: bool,
    },
    /// Domain statistics (every domain, or those named)
    Domstats {
        domains: Vec<String>,
        #[arg(long)]
        state: bool,
        #[arg(long)]
        cpu_total: bool,
        #[arg(long)]
        balloon: bool,
        #[arg(long)]
        vcpu: bool,
        #[arg(long)]
        interface: bool,
        #[arg(long)]
        block: bool,
    },
    /// A disk's I/O counters
    Domblkstat { domain: String, device: String },
    /// An interface's counters
    Domifstat { domain: String, interface: String },
    /// Memory statistics of a running domain
    Dommemstat { domain: String },
    /// The domain's current (or last completed) job
    Domjobinfo {
        domain: String,
        #[arg(long)]
        completed: bool,
    },
    /// CPU statistics of a running domain (the totals)
    #[command(name = "cpu-stats")]
    CpuStats {
        domain: String,
        #[arg(long)]
        total: bool,
    },
}

fn save_flags(running: bool, paused: bool) -> u32 {
    (if running { SAVE_RUNNING } else { 0 }) | (if paused { SAVE_PAUSED } else { 0 })
}

fn value_text(v: &TypedParamValue) -> String {
    match v {
        TypedParamValue::Int(x) => x.to_string(),
        TypedParamValue::UInt(x) => x.to_string(),
        TypedParamValue::LLong(x) => x.to_string(),
        TypedParamValue::ULLong(x) => x.to_string(),
        TypedParamValue::Double(x) => format!("{x:.6}"),
        TypedParamValue::Boolean(x) => if *x != 0 { "yes" } else { "no" }.to_string(),
        TypedParamValue::String(x) => x.clone(),
    }
}

fn params_json(p: &[TypedParam]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for t in p {
        let v = match &t.value {
            TypedParamValue::Int(x) => json!(x),
            TypedParamValue::UInt(x) => json!(x),
            TypedParamValue::LLong(x) => json!(x),
            TypedParamValue::ULLong(x) => json!(x),
            TypedParamValue::Double(x) => json!(x),
            TypedParamValue::Boolean(x) => json!(*x != 0),
            TypedParamValue::String(x) => json!(x),
        };
        m.insert(t.field.clone(), v);
    }
    serde_json::Value::Object(m)
}

/// Runs one of the commands on `conn`.
pub fn run(conn: &Connection, cmd: DomStateCommand, json: bool) -> Result<()> {
    match cmd {
        DomStateCommand::Save {
            domain,
            file,
            running,
            paused,
        } => {
            let d = lookup(conn, &domain)?;
            d.save(&file.to_string_lossy(), None, save_flags(running, paused))
                .with_context(|| {
                    format!("failed to save domain '{domain}' to {}", file.display())
                })?;
            println!("\nDomain '{}' saved to {}\n", d.name(), file.display());
        }
        DomStateCommand::Restore {
            file,
            running,
            paused,
        } => {
            conn.restore(&file.to_string_lossy(), None, save_flags(running, paused))
                .with_context(|| format!("failed to restore domain from {}", file.display()))?;
            println!("Domain restored from {}\n", file.display());
        }
        DomStateCommand::Managedsave {
            domain,
            running,
            paused,
        } => {
            let d = lookup(conn, &domain)?;
            d.managed_save(save_flags(running, paused))
                .with_context(|| format!("failed to save domain '{domain}' state"))?;
            println!("\nDomain '{}' state saved by libvirt\n", d.name());
        }
        DomStateCommand::ManagedsaveRemove { domain } => {
            let d = lookup(conn, &domain)?;
            if !d.has_managed_save_image(0)? {
                println!(
                    "Domain '{}' has no manage save image; removal skipped",
                    d.name()
                );
                return Ok(());
            }
            d.managed_save_remove(0).with_context(|| {
                format!("failed to remove managed save image for domain '{domain}'")
            })?;
            println!("Removed managedsave image for domain '{}'", d.name());
        }
        DomStateCommand::SaveImageDumpxml {
            file,
            security_info,
        } => {
            let xml = conn
                .save_image_xml(&file.to_string_lossy(), u32::from(security_info))
                .with_context(|| format!("failed to read the save image {}", file.display()))?;
            print!("{xml}");
        }
        DomStateCommand::Domstats {
            domains,
            state,
            cpu_total,
            balloon,
            vcpu,
            interface,
            block,
        } => {
            let stats = [state, cpu_total, balloon, vcpu, interface, block]
                .iter()
                .enumerate()
                .filter(|(_, on)| **on)
                .fold(0u32, |acc, (i, _)| acc | (1 << i));
            let doms = if domains.is_empty() {
                None
            } else {
                Some(
                    domains
                        .iter()
                        .map(|n| lookup(conn, n))
                        .collect::<Result<Vec<_>>>()?,
                )
            };
            let records = conn
                .get_all_domain_stats(doms, stats, 0)
                .context("failed to get domain statistics")?;
            if json {
                let v: Vec<_> = records
                    .iter()
                    .map(|(d, p)| json!({"name": d.name(), "stats": params_json(p)}))
                    .collect();
                print_json(&json!(v))?;
            } else {
                for (d, params) in records {
                    println!("Domain: '{}'", d.name());
                    for p in params {
                        println!("  {}={}", p.field, value_text(&p.value));
                    }
                    println!();
                }
            }
        }
        DomStateCommand::Domblkstat { domain, device } => {
            let d = lookup(conn, &domain)?;
            let p = d.block_stats(&device, 0).with_context(|| {
                format!("failed to get block stats for domain '{domain}' device '{device}'")
            })?;
            print_params(&device, &p, json, |f| match f {
                "rd_operations" => "rd_req",
                "wr_operations" => "wr_req",
                "flush_operations" => "flush_operations",
                f => f,
            })?;
        }
        DomStateCommand::Domifstat { domain, interface } => {
            let d = lookup(conn, &domain)?;
            let p = d.interface_stats(&interface).with_context(|| {
                format!(
                    "failed to get interface stats for domain '{domain}' interface '{interface}'"
                )
            })?;
            print_params(&interface, &p, json, |f| f)?;
        }
        DomStateCommand::Dommemstat { domain } => {
            let d = lookup(conn, &domain)?;
            let p = d.memory_stats(0).with_context(|| {
                format!("failed to get memory statistics for domain '{domain}'")
            })?;
            if json {
                print_json(&params_json(&p))?;
            } else {
                for t in &p {
                    println!("{} {}", t.field, value_text(&t.value));
                }
                println!();
            }
        }
        DomStateCommand::Domjobinfo { domain, completed } => {
            let d = lookup(conn, &domain)?;
            let (kind, p) = d
                .job_stats(u32::from(completed))
                .with_context(|| format!("failed to get job information for domain '{domain}'"))?;
            let kinds = [
                "None",
                "Bounded",
                "Unbounded",
                "Completed",
                "Failed",
                "Cancelled",
            ];
            let kind_s = usize::try_from(kind)
                .ok()
                .and_then(|k| kinds.get(k))
                .unwrap_or(&"Unknown");
            if json {
                print_json(&json!({"type": kind_s, "type_code": kind, "stats": params_json(&p)}))?;
            } else {
                println!("{:<17}{}", "Job type:", kind_s);
                for t in &p {
                    println!("{:<17}{}", format!("{}:", t.field), value_text(&t.value));
                }
                println!();
            }
        }
        DomStateCommand::CpuStats { domain, total } => {
            let d = lookup(conn, &domain)?;
            let _ = total; // the drivers give the totals only
            let sets = d
                .cpu_stats(-1, 1, 0)
                .with_context(|| format!("failed to get CPU statistics for domain '{domain}'"))?;
            let p = sets.into_iter().next().unwrap_or_default();
            if json {
                print_json(&params_json(&p))?;
            } else {
                println!("Total:");
                for t in &p {
                    let ns = match t.value {
                        TypedParamValue::ULLong(v) => v,
                        _ => 0,
                    };
                    println!(
                        "\t{:<12}{:>10}.{:09} seconds",
                        t.field,
                        ns / 1_000_000_000,
                        ns % 1_000_000_000
                    );
                }
            }
        }
    }
    Ok(())
}

/// `DEVICE FIELD VALUE` lines, as virsh prints `domblkstat` and `domifstat`.
fn print_params(
    device: &str,
    p: &[TypedParam],
    json: bool,
    name: impl Fn(&str) -> &str,
) -> Result<()> {
    if json {
        return print_json(&params_json(p));
    }
    for t in p {
        // libvirt's -1: not available
        if matches!(t.value, TypedParamValue::LLong(v) if v < 0) {
            continue;
        }
        println!("{device} {} {}", name(&t.field), value_text(&t.value));
    }
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_virsh_does() {
        assert_eq!(value_text(&TypedParamValue::ULLong(42)), "42");
        assert_eq!(value_text(&TypedParamValue::Boolean(1)), "yes");
        assert_eq!(value_text(&TypedParamValue::String("vda".into())), "vda");
        assert_eq!(save_flags(true, false), SAVE_RUNNING);
        assert_eq!(save_flags(false, true), SAVE_PAUSED);
    }
}

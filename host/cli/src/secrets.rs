//! virsh's secret commands. A value is read from a file or standard input (`--file`) or
//! given base64-encoded (`--base64`, as virsh; it then shows on the command line), and is
//! printed base64-encoded; it never appears in an error message.

use crate::table::Table;
use crate::{print_json, read_file};
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::Subcommand;
use rvirt_host::{Connection, Secret};
use serde_json::json;
use std::io::Read as _;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Define or modify a secret from an XML file
    #[command(name = "secret-define")]
    Define { file: PathBuf },
    /// List secrets
    #[command(name = "secret-list")]
    List {
        /// Only ephemeral secrets
        #[arg(long)]
        ephemeral: bool,
        /// Only persistent secrets
        #[arg(long)]
        no_ephemeral: bool,
        /// Only private secrets
        #[arg(long)]
        private: bool,
        /// Only non-private secrets
        #[arg(long)]
        no_private: bool,
    },
    /// Print a secret's XML (never its value)
    #[command(name = "secret-dumpxml")]
    Dumpxml { secret: String },
    /// Set a secret's value
    #[command(name = "secret-set-value")]
    SetValue {
        secret: String,
        /// Read the value from this file (`-`: standard input); its content is base64
        /// unless --plain
        #[arg(long, conflicts_with = "base64")]
        file: Option<PathBuf>,
        /// The file holds the raw value, not base64
        #[arg(long, requires = "file")]
        plain: bool,
        /// The value, base64-encoded (it shows on the command line: prefer --file)
        #[arg(long)]
        base64: Option<String>,
    },
    /// Print a secret's value, base64-encoded
    #[command(name = "secret-get-value")]
    GetValue {
        secret: String,
        /// Print the raw value, not base64
        #[arg(long)]
        plain: bool,
    },
    /// Undefine a secret
    #[command(name = "secret-undefine")]
    Undefine { secret: String },
}

/// `VIR_SECRET_USAGE_TYPE_*` as virsh names them.
fn usage_name(t: i32) -> &'static str {
    match t {
        0 => "none",
        1 => "volume",
        2 => "ceph",
        3 => "iscsi",
        4 => "tls",
        5 => "vtpm",
        _ => "unknown",
    }
}

fn lookup(conn: &Connection, arg: &str) -> Result<Secret> {
    let uuid = uuid::Uuid::parse_str(arg)
        .with_context(|| format!("failed to get secret '{arg}': not a UUID"))?;
    conn.lookup_secret_by_uuid(uuid)
        .with_context(|| format!("failed to get secret '{arg}'"))
}

fn decode(text: &str) -> Result<Vec<u8>> {
    // the message names no part of the value
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| anyhow::anyhow!("the secret value is not valid base64"))
}

pub fn run(conn: &Connection, cmd: SecretCommand, json: bool) -> Result<()> {
    use SecretCommand as C;
    match cmd {
        C::Define { file } => {
            let xml = read_file(&file)?;
            let s = conn
                .secret_define_xml(&xml, 0)
                .with_context(|| format!("failed to set attributes from '{}'", file.display()))?;
            if json {
                return print_json(&json!({"uuid": s.uuid()}));
            }
            println!("Secret {} created\n", s.uuid());
            Ok(())
        }
        C::List {
            ephemeral,
            no_ephemeral,
            private,
            no_private,
        } => {
            use rvirt_host::secrets::list_flags as f;
            let flags = [
                (ephemeral, f::EPHEMERAL),
                (no_ephemeral, f::NO_EPHEMERAL),
                (private, f::PRIVATE),
                (no_private, f::NO_PRIVATE),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .fold(0, |a, (_, b)| a | b);
            let mut secrets = conn
                .list_all_secrets(flags)
                .context("failed to list secrets")?;
            secrets.sort_by_key(|s| s.uuid());
            if json {
                let v = secrets
                    .iter()
                    .map(|s| {
                        json!({"uuid": s.uuid(), "usage": usage_name(s.usage_type()),
                               "usage_id": s.usage_id()})
                    })
                    .collect();
                return print_json(&serde_json::Value::Array(v));
            }
            let mut t = Table::new(&["UUID", "Usage"]);
            for s in &secrets {
                let usage = match s.usage_type() {
                    0 => "Unused".to_string(),
                    u => format!("{} {}", usage_name(u), s.usage_id()),
                };
                t.row(vec![s.uuid().to_string(), usage]);
            }
            print!("{}", t.render());
            println!();
            Ok(())
        }
        C::Dumpxml { secret } => {
            let s = lookup(conn, &secret)?;
            print!("{}", s.get_xml_desc(0)?);
            Ok(())
        }
        C::SetValue {
            secret,
            file,
            plain,
            base64,
        } => {
            let value = match (file, base64) {
                (Some(file), None) => {
                    let mut raw = Vec::new();
                    if file.as_os_str() == "-" {
                        std::io::stdin()
                            .read_to_end(&mut raw)
                            .context("failed to read the secret value from standard input")?;
                    } else {
                        raw = std::fs::read(&file)
                            .with_context(|| format!("failed to read file '{}'", file.display()))?;
                    }
                    if plain {
                        raw
                    } else {
                        decode(&String::from_utf8_lossy(&raw))?
                    }
                }
                (None, Some(b64)) => decode(&b64)?,
                _ => bail!("secret-set-value needs --file FILE or --base64 VALUE"),
            };
            let s = lookup(conn, &secret)?;
            s.set_value(&value, 0)
                .with_context(|| format!("failed to set the value of secret {}", s.uuid()))?;
            println!("Secret value set\n");
            Ok(())
        }
        C::GetValue { secret, plain } => {
            let s = lookup(conn, &secret)?;
            let value = s
                .get_value(0)
                .with_context(|| format!("failed to get the value of secret {}", s.uuid()))?;
            if plain && !json {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                out.write_all(&value)?;
                return Ok(out.flush()?);
            }
            let b64 = base64::engine::general_purpose::STANDARD.encode(value);
            if json {
                return print_json(&json!({"uuid": s.uuid(), "value_base64": b64}));
            }
            println!("{b64}");
            Ok(())
        }
        C::Undefine { secret } => {
            let s = lookup(conn, &secret)?;
            s.undefine()
                .with_context(|| format!("failed to delete secret {}", s.uuid()))?;
            println!("Secret {} deleted\n", s.uuid());
            Ok(())
        }
    }
}

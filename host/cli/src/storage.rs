//! virsh's storage pool and volume commands.

use crate::table::Table;
use crate::{print_json, read_file};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use rvirt_host::storage::{list_flags, pool_state};
use rvirt_host::{Connection, StoragePool, StorageVol};
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum StorageCommand {
    /// List storage pools
    #[command(name = "pool-list")]
    PoolList {
        /// List inactive and active pools
        #[arg(long)]
        all: bool,
        /// List only inactive pools
        #[arg(long)]
        inactive: bool,
        /// Show capacity, allocation and availability
        #[arg(long)]
        details: bool,
    },
    /// Define (but don't start) a pool from an XML file
    #[command(name = "pool-define")]
    PoolDefine { file: PathBuf },
    /// Create and start a transient pool from an XML file
    #[command(name = "pool-create")]
    PoolCreate {
        file: PathBuf,
        /// Build the pool before starting it
        #[arg(long)]
        build: bool,
    },
    /// Define a pool from a name, a type and a target
    #[command(name = "pool-define-as")]
    PoolDefineAs {
        name: String,
        /// Pool type (dir, fs, netfs, logical, ...)
        #[arg(name = "type")]
        pool_type: String,
        /// Target path
        #[arg(long)]
        target: Option<String>,
        /// Source path (a directory, for netfs the export)
        #[arg(long)]
        source_path: Option<String>,
        /// Source device
        #[arg(long)]
        source_dev: Option<String>,
        /// Source name (volume group, ...)
        #[arg(long)]
        source_name: Option<String>,
    },
    /// Build a pool
    #[command(name = "pool-build")]
    PoolBuild {
        pool: String,
        /// Overwrite what exists
        #[arg(long)]
        overwrite: bool,
        /// Do not overwrite what exists
        #[arg(long)]
        no_overwrite: bool,
    },
    /// Start a (previously defined) inactive pool
    #[command(name = "pool-start")]
    PoolStart {
        pool: String,
        /// Build the pool before starting it
        #[arg(long)]
        build: bool,
    },
    /// Stop a pool
    #[command(name = "pool-destroy")]
    PoolDestroy { pool: String },
    /// Delete what the pool's target holds on the host
    #[command(name = "pool-delete")]
    PoolDelete { pool: String },
    /// Undefine an inactive pool
    #[command(name = "pool-undefine")]
    PoolUndefine { pool: String },
    /// Rescan a pool's volumes
    #[command(name = "pool-refresh")]
    PoolRefresh { pool: String },
    /// Storage pool information
    #[command(name = "pool-info")]
    PoolInfo { pool: String },
    /// Storage pool information in XML
    #[command(name = "pool-dumpxml")]
    PoolDumpxml {
        pool: String,
        /// The definition used at the next start
        #[arg(long)]
        inactive: bool,
    },
    /// The pool types this host serves, with their source and volume formats (XML)
    #[command(name = "pool-capabilities")]
    PoolCapabilities,
    /// Discover the sources of a pool type from a `<source>` spec file (XML)
    #[command(name = "find-storage-pool-sources")]
    FindStoragePoolSources {
        /// Pool type (`fs`, `netfs`, `logical`, `iscsi`, ...)
        #[arg(name = "type")]
        pool_type: String,
        /// File with a `<source>` element narrowing the search
        srcspec: Option<std::path::PathBuf>,
    },
    /// Discover the sources of a pool type on a host
    #[command(name = "find-storage-pool-sources-as")]
    FindStoragePoolSourcesAs {
        /// Pool type (`fs`, `netfs`, `logical`, `iscsi`, ...)
        #[arg(name = "type")]
        pool_type: String,
        /// Host to query
        host: Option<String>,
        /// Port on the host
        port: Option<u16>,
        /// Initiator IQN (iSCSI)
        #[arg(long)]
        initiator: Option<String>,
    },
    /// Set or unset a pool's autostart
    #[command(name = "pool-autostart")]
    PoolAutostart {
        pool: String,
        #[arg(long)]
        disable: bool,
    },
    /// List the volumes of a pool
    #[command(name = "vol-list")]
    VolList {
        pool: String,
        /// Show type, capacity and allocation
        #[arg(long)]
        details: bool,
    },
    /// Create a volume from an XML file
    #[command(name = "vol-create")]
    VolCreate { pool: String, file: PathBuf },
    /// Create a volume from a name and a size
    #[command(name = "vol-create-as")]
    VolCreateAs {
        pool: String,
        name: String,
        /// Capacity, in bytes or with a suffix (K, M, G, T: powers of 1024; KB, MB, GB, TB: of 1000)
        capacity: String,
        /// Initial allocation, same units
        #[arg(long)]
        allocation: Option<String>,
        /// Format (raw, qcow2, ...)
        #[arg(long)]
        format: Option<String>,
    },
    /// Clone a volume within its pool
    #[command(name = "vol-clone")]
    VolClone {
        vol: String,
        newname: String,
        /// Pool of the volume (else VOL is a key or path)
        #[arg(long)]
        pool: Option<String>,
    },
    /// Delete a volume
    #[command(name = "vol-delete")]
    VolDelete {
        vol: String,
        #[arg(long)]
        pool: Option<String>,
    },
    /// Storage volume information
    #[command(name = "vol-info")]
    VolInfo {
        vol: String,
        #[arg(long)]
        pool: Option<String>,
    },
    /// Storage volume information in XML
    #[command(name = "vol-dumpxml")]
    VolDumpxml {
        vol: String,
        #[arg(long)]
        pool: Option<String>,
    },
    /// Upload a file's contents into a volume
    #[command(name = "vol-upload")]
    VolUpload {
        vol: String,
        file: PathBuf,
        #[arg(long)]
        pool: Option<String>,
        /// Byte offset in the volume to start writing at
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Bytes to write (0: the whole file)
        #[arg(long, default_value_t = 0)]
        length: u64,
    },
    /// Download a volume's contents into a file
    #[command(name = "vol-download")]
    VolDownload {
        vol: String,
        file: PathBuf,
        #[arg(long)]
        pool: Option<String>,
        /// Byte offset in the volume to start reading at
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Bytes to read (0: to the end of the volume)
        #[arg(long, default_value_t = 0)]
        length: u64,
    },
    /// A volume's path
    #[command(name = "vol-path")]
    VolPath {
        vol: String,
        #[arg(long)]
        pool: Option<String>,
    },
    /// Resize a volume
    #[command(name = "vol-resize")]
    VolResize {
        vol: String,
        /// New capacity (or change, with --delta), same units as vol-create-as
        capacity: String,
        #[arg(long)]
        pool: Option<String>,
        /// Allocate the new space
        #[arg(long)]
        allocate: bool,
        /// Change the capacity by this amount
        #[arg(long)]
        delta: bool,
        /// Allow shrinking
        #[arg(long)]
        shrink: bool,
    },
    /// Wipe a volume's contents
    #[command(name = "vol-wipe")]
    VolWipe {
        vol: String,
        #[arg(long)]
        pool: Option<String>,
        /// Wipe algorithm (zero, nnsa, dod, bsi, gutmann, schneier, pfitzner7, pfitzner33, random, trim)
        #[arg(long)]
        algorithm: Option<String>,
    },
}

/// XML text escaping for values the user typed.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// A size as virsh reads one: bytes, or a number with a unit suffix.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().with_context(|| {
        format!("invalid size '{text}': expected a number with an optional unit")
    })?;
    let scale: u64 = match unit.trim() {
        "" | "b" | "B" | "byte" | "bytes" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "KB" => 1000,
        "m" | "M" | "MiB" => 1 << 20,
        "MB" => 1_000_000,
        "g" | "G" | "GiB" => 1 << 30,
        "GB" => 1_000_000_000,
        "t" | "T" | "TiB" => 1 << 40,
        "TB" => 1_000_000_000_000,
        "p" | "P" | "PiB" => 1 << 50,
        "PB" => 1_000_000_000_000_000,
        other => bail!("invalid size '{text}': unknown unit '{other}'"),
    };
    n.checked_mul(scale)
        .with_context(|| format!("invalid size '{text}': too large"))
}

/// virsh's `vshPrettyCapacity`: two decimals in the largest binary unit that fits.
pub fn pretty(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes}.00 B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.2} {}", UNITS[i])
}

/// `VIR_STORAGE_VOL_WIPE_ALG_*` by name.
fn wipe_algorithm(name: &str) -> Result<u32> {
    const ALGS: [&str; 10] = [
        "zero",
        "nnsa",
        "dod",
        "bsi",
        "gutmann",
        "schneier",
        "pfitzner7",
        "pfitzner33",
        "random",
        "trim",
    ];
    ALGS.iter()
        .position(|a| *a == name)
        .map(|i| i as u32)
        .with_context(|| format!("unsupported wipe algorithm '{name}'"))
}

fn state_name(state: i32, details: bool) -> &'static str {
    match (state, details) {
        (pool_state::RUNNING, false) => "active",
        (pool_state::RUNNING, true) => "running",
        (1, _) => "building",
        (3, _) => "degraded",
        (4, _) => "inaccessible",
        _ => "inactive",
    }
}

fn vol_type_name(kind: i32) -> &'static str {
    match kind {
        0 => "file",
        1 => "block",
        2 => "dir",
        3 => "network",
        4 => "netdir",
        5 => "ploop",
        _ => "unknown",
    }
}

/// Finds a pool by UUID, then by name, as virsh does.
fn pool(conn: &Connection, arg: &str) -> Result<StoragePool> {
    if let Ok(u) = uuid::Uuid::parse_str(arg)
        && let Ok(p) = conn.lookup_storage_pool_by_uuid(u)
    {
        return Ok(p);
    }
    conn.lookup_storage_pool_by_name(arg)
        .with_context(|| format!("failed to get pool '{arg}'"))
}

/// Finds a volume: by name in `--pool`, else by key, then by path, as virsh does.
fn vol(conn: &Connection, arg: &str, pool_arg: Option<&str>) -> Result<StorageVol> {
    if let Some(p) = pool_arg {
        let p = pool(conn, p)?;
        return p
            .lookup_vol_by_name(arg)
            .with_context(|| format!("failed to get vol '{arg}' in pool '{}'", p.name()));
    }
    if let Ok(v) = conn.lookup_storage_vol_by_key(arg) {
        return Ok(v);
    }
    conn.lookup_storage_vol_by_path(arg).with_context(|| {
        format!("failed to get vol '{arg}', specify --pool or give its key or path")
    })
}

fn print_xml(xml: &str) {
    print!("{xml}");
    if !xml.ends_with('\n') {
        println!();
    }
}

pub fn run(conn: &Connection, cmd: StorageCommand, json: bool) -> Result<()> {
    use StorageCommand as C;
    match cmd {
        C::PoolList {
            all,
            inactive,
            details,
        } => pool_list(conn, all, inactive, details, json),
        C::PoolDefine { file } => {
            let xml = read_file(&file)?;
            let p = conn
                .storage_pool_define_xml(&xml, 0)
                .with_context(|| format!("failed to define pool from '{}'", file.display()))?;
            println!("Pool {} defined from {}\n", p.name(), file.display());
            Ok(())
        }
        C::PoolCreate { file, build } => {
            let xml = read_file(&file)?;
            let p = conn
                .storage_pool_create_xml(&xml, u32::from(build))
                .with_context(|| format!("failed to create pool from '{}'", file.display()))?;
            println!("Pool {} created from {}\n", p.name(), file.display());
            Ok(())
        }
        C::PoolDefineAs {
            name,
            pool_type,
            target,
            source_path,
            source_dev,
            source_name,
        } => {
            let mut xml = format!(
                "<pool type='{}'><name>{}</name>",
                esc(&pool_type),
                esc(&name)
            );
            if source_path.is_some() || source_dev.is_some() || source_name.is_some() {
                xml.push_str("<source>");
                if let Some(d) = &source_dev {
                    xml.push_str(&format!("<device path='{}'/>", esc(d)));
                }
                if let Some(d) = &source_path {
                    xml.push_str(&format!("<dir path='{}'/>", esc(d)));
                }
                if let Some(n) = &source_name {
                    xml.push_str(&format!("<name>{}</name>", esc(n)));
                }
                xml.push_str("</source>");
            }
            if let Some(t) = &target {
                xml.push_str(&format!("<target><path>{}</path></target>", esc(t)));
            }
            xml.push_str("</pool>");
            let p = conn
                .storage_pool_define_xml(&xml, 0)
                .with_context(|| format!("failed to define pool '{name}'"))?;
            println!("Pool {} defined\n", p.name());
            Ok(())
        }
        C::PoolBuild {
            pool: arg,
            overwrite,
            no_overwrite,
        } => {
            // VIR_STORAGE_POOL_BUILD_OVERWRITE = 4, _NO_OVERWRITE = 8
            let flags = if overwrite { 4 } else { 0 } | if no_overwrite { 8 } else { 0 };
            pool_act(conn, &arg, "build", "built", |p| p.build(flags))
        }
        C::PoolStart { pool: arg, build } => pool_act(conn, &arg, "start", "started", |p| {
            p.create(u32::from(build))
        }),
        C::PoolDestroy { pool: arg } => {
            pool_act(conn, &arg, "destroy", "destroyed", |p| p.destroy())
        }
        C::PoolDelete { pool: arg } => pool_act(conn, &arg, "delete", "deleted", |p| p.delete(0)),
        C::PoolUndefine { pool: arg } => {
            pool_act(conn, &arg, "undefine", "has been undefined", |p| {
                p.undefine()
            })
        }
        C::PoolRefresh { pool: arg } => {
            pool_act(conn, &arg, "refresh", "refreshed", |p| p.refresh(0))
        }
        C::PoolAutostart { pool: arg, disable } => {
            let done = if disable {
                "unmarked as autostarted"
            } else {
                "marked as autostarted"
            };
            pool_act(conn, &arg, "change autostart flag of", done, |p| {
                p.set_autostart(!disable)
            })
        }
        C::PoolInfo { pool: arg } => pool_info(conn, &arg, json),
        C::PoolDumpxml {
            pool: arg,
            inactive,
        } => {
            let p = pool(conn, &arg)?;
            let xml = p
                .get_xml_desc(u32::from(inactive))
                .with_context(|| format!("failed to get XML of pool '{arg}'"))?;
            print_xml(&xml);
            Ok(())
        }
        C::PoolCapabilities => {
            let xml = conn
                .storage_pool_capabilities(0)
                .context("failed to get storage pool capabilities")?;
            print_xml(&xml);
            Ok(())
        }
        C::FindStoragePoolSources { pool_type, srcspec } => {
            let spec = srcspec
                .map(|f| {
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read source spec {}", f.display()))
                })
                .transpose()?;
            find_sources(conn, &pool_type, spec.as_deref())
        }
        C::FindStoragePoolSourcesAs {
            pool_type,
            host,
            port,
            initiator,
        } => {
            let spec = host.map(|h| {
                use rvirt_xml::Element;
                let mut host = Element::new("host").with_attr("name", &h);
                if let Some(p) = port {
                    host.set_attr("port", &p.to_string());
                }
                let mut source = Element::new("source");
                source.push(host);
                if let Some(i) = initiator {
                    let mut ini = Element::new("initiator");
                    ini.push(Element::new("iqn").with_attr("name", &i));
                    source.push(ini);
                }
                source.to_xml_string()
            });
            find_sources(conn, &pool_type, spec.as_deref())
        }
        C::VolList { pool: arg, details } => vol_list(conn, &arg, details, json),
        C::VolCreate { pool: arg, file } => {
            let p = pool(conn, &arg)?;
            let xml = read_file(&file)?;
            let v = p
                .create_vol_xml(&xml, 0)
                .with_context(|| format!("failed to create vol from '{}'", file.display()))?;
            println!("Vol {} created from {}\n", v.name(), file.display());
            Ok(())
        }
        C::VolCreateAs {
            pool: arg,
            name,
            capacity,
            allocation,
            format,
        } => {
            let p = pool(conn, &arg)?;
            let cap = parse_size(&capacity)?;
            let mut xml = format!(
                "<volume><name>{}</name><capacity unit='bytes'>{cap}</capacity>",
                esc(&name)
            );
            if let Some(a) = &allocation {
                xml.push_str(&format!(
                    "<allocation unit='bytes'>{}</allocation>",
                    parse_size(a)?
                ));
            }
            if let Some(f) = &format {
                xml.push_str(&format!("<target><format type='{}'/></target>", esc(f)));
            }
            xml.push_str("</volume>");
            let v = p
                .create_vol_xml(&xml, 0)
                .with_context(|| format!("failed to create vol '{name}'"))?;
            println!("Vol {} created\n", v.name());
            Ok(())
        }
        C::VolClone {
            vol: arg,
            newname,
            pool: pool_arg,
        } => {
            let src = vol(conn, &arg, pool_arg.as_deref())?;
            let p = src
                .pool()
                .with_context(|| format!("failed to get the pool of vol '{arg}'"))?;
            let src_xml = src
                .get_xml_desc(0)
                .with_context(|| format!("failed to get XML of vol '{arg}'"))?;
            let def = rvirt_xml::StorageVolume::parse(&src_xml, None)
                .with_context(|| format!("cannot read the XML of vol '{arg}'"))?;
            let mut xml = format!(
                "<volume><name>{}</name><capacity unit='bytes'>{}</capacity>",
                esc(&newname),
                def.capacity_bytes()
            );
            if let Some(f) = def.format_type() {
                xml.push_str(&format!("<target><format type='{}'/></target>", esc(f)));
            }
            xml.push_str("</volume>");
            let v = p
                .create_vol_xml_from(&xml, &src, 0)
                .with_context(|| format!("failed to clone vol from '{arg}'"))?;
            println!("Vol {} cloned from {}\n", v.name(), src.name());
            Ok(())
        }
        C::VolDelete {
            vol: arg,
            pool: pool_arg,
        } => {
            let v = vol(conn, &arg, pool_arg.as_deref())?;
            v.delete(0)
                .with_context(|| format!("failed to delete vol '{arg}'"))?;
            println!("Vol {} deleted\n", arg);
            Ok(())
        }
        C::VolWipe {
            vol: arg,
            pool: pool_arg,
            algorithm,
        } => {
            let v = vol(conn, &arg, pool_arg.as_deref())?;
            let alg = algorithm.as_deref().map(wipe_algorithm).transpose()?;
            v.wipe_pattern(alg.unwrap_or(0), 0)
                .with_context(|| format!("failed to wipe vol '{arg}'"))?;
            println!("Vol {} wiped\n", arg);
            Ok(())
        }
        C::VolResize {
            vol: arg,
            capacity,
            pool: pool_arg,
            allocate,
            delta,
            shrink,
        } => {
            let v = vol(conn, &arg, pool_arg.as_deref())?;
            let cap = parse_size(&capacity)?;
            // VIR_STORAGE_VOL_RESIZE_ALLOCATE = 1, _DELTA = 2, _SHRINK = 4
            let flags =
                u32::from(allocate) | if delta { 2 } else { 0 } | if shrink { 4 } else { 0 };
            v.resize(cap, flags).with_context(|| {
                format!("failed to change size of volume '{arg}' to {capacity}")
            })?;
            if delta {
                println!(
                    "Size of volume '{}' successfully changed by {capacity}\n",
                    v.name()
                );
            } else {
                println!(
                    "Size of volume '{}' successfully changed to {capacity}\n",
                    v.name()
                );
            }
            Ok(())
        }
        C::VolInfo {
            vol: arg,
            pool: pool_arg,
        } => {
            let v = vol(conn, &arg, pool_arg.as_deref())?;
            let i = v
                .get_info()
                .with_context(|| format!("failed to get information of vol '{arg}'"))?;
            if json {
                return print_json(&json!({
                    "name": v.name(), "pool": v.pool_name(), "key": v.key(),
                    "type": vol_type_name(i.kind), "capacity": i.capacity,
                    "allocation": i.allocation,
                }));
            }
            println!("{:<15} {}", "Name:", v.name());
            println!("{:<15} {}", "Type:", vol_type_name(i.kind));
            println!("{:<15} {}", "Capacity:", pretty(i.capacity));
            println!("{:<15} {}", "Allocation:", pretty(i.allocation));
            println!();
            Ok(())
        }
        C::VolDumpxml {
            vol: arg,
            pool: pool_arg,
        } => {
            let v = vol(conn, &arg, pool_arg.as_deref())?;
            let xml = v
                .get_xml_desc(0)
                .with_context(|| format!("failed to get XML of vol '{arg}'"))?;
            print_xml(&xml);
            Ok(())
        }
        C::VolPath {
            vol: arg,
            pool: pool_arg,
        } => {
            let v = vol(conn, &arg, pool_arg.as_deref())?;
            let path = v
                .get_path()
                .with_context(|| format!("failed to get the path of vol '{arg}'"))?;
            if json {
                return print_json(&json!({"name": v.name(), "pool": v.pool_name(), "path": path}));
            }
            println!("{path}\n");
            Ok(())
        }
        C::VolUpload {
            vol: arg,
            file,
            pool: pool_arg,
            offset,
            length,
        } => {
            let v = vol(conn, &arg, pool_arg.as_deref())?;
            vol_upload(&v, &file, offset, length)
                .with_context(|| format!("cannot upload to volume '{arg}'"))
        }
        C::VolDownload {
            vol: arg,
            file,
            pool: pool_arg,
            offset,
            length,
        } => {
            let v = vol(conn, &arg, pool_arg.as_deref())?;
            vol_download(&v, &file, offset, length)
                .with_context(|| format!("cannot download from volume '{arg}'"))
        }
    }
}

/// Bytes per `send`/`recv` of the CLI's streams.
const STREAM_BUF: usize = 4 << 20;

/// A progress bar on standard error when it is a terminal; hidden otherwise.
fn progress(total: Option<u64>, verb: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(n) => (
            indicatif::ProgressBar::new(n),
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{msg} {spinner} {bytes} {binary_bytes_per_sec}",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(verb.to_string());
    bar
}

fn vol_upload(v: &StorageVol, file: &std::path::Path, offset: u64, length: u64) -> Result<()> {
    use std::io::Read;
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let total = if length > 0 { length.min(size) } else { size };
    let mut src = f.take(if length > 0 { length } else { u64::MAX });
    let mut st = v.upload(offset, length, 0)?;
    let bar = progress(Some(total), "uploading");
    let mut buf = vec![0u8; STREAM_BUF];
    loop {
        let n = src
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if n == 0 {
            break;
        }
        st.send(&buf[..n])?;
        bar.inc(n as u64);
    }
    st.finish()?;
    bar.finish_and_clear();
    Ok(())
}

fn vol_download(v: &StorageVol, file: &std::path::Path, offset: u64, length: u64) -> Result<()> {
    use std::io::Write;
    let total = match length {
        0 => v.get_info().ok().map(|i| i.capacity.saturating_sub(offset)),
        n => Some(n),
    };
    let mut st = v.download(offset, length, 0)?;
    let f =
        std::fs::File::create(file).with_context(|| format!("cannot create {}", file.display()))?;
    let mut out = std::io::BufWriter::with_capacity(STREAM_BUF, f);
    let bar = progress(total, "downloading");
    let mut chunk = Vec::with_capacity(STREAM_BUF);
    loop {
        chunk.clear();
        if st.recv_into(&mut chunk, STREAM_BUF)? == 0 {
            break;
        }
        out.write_all(&chunk)
            .with_context(|| format!("cannot write {}", file.display()))?;
        bar.inc(chunk.len() as u64);
    }
    st.finish()?;
    out.flush()
        .with_context(|| format!("cannot write {}", file.display()))?;
    bar.finish_and_clear();
    Ok(())
}

fn pool_act(
    conn: &Connection,
    arg: &str,
    verb: &str,
    done: &str,
    f: impl FnOnce(&StoragePool) -> rvirt_host::Result<()>,
) -> Result<()> {
    let p = pool(conn, arg)?;
    f(&p).with_context(|| format!("failed to {verb} pool '{arg}'"))?;
    println!("Pool {} {done}\n", p.name());
    Ok(())
}

fn pool_list(
    conn: &Connection,
    all: bool,
    inactive: bool,
    details: bool,
    json: bool,
) -> Result<()> {
    let flags = match (all, inactive) {
        (true, _) => 0,
        (false, true) => list_flags::INACTIVE,
        (false, false) => list_flags::ACTIVE,
    };
    let mut pools = conn
        .list_all_storage_pools(flags)
        .context("failed to list pools")?;
    pools.sort_by(|a, b| a.name().cmp(b.name()));
    let mut rows = Vec::new();
    for p in pools {
        // a pool may vanish between the listing and the queries
        let (Ok(info), Ok(autostart), Ok(persistent)) =
            (p.get_info(), p.get_autostart(), p.is_persistent())
        else {
            continue;
        };
        rows.push((p, info, autostart, persistent));
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, i, a, per)| {
                let active = i.state == pool_state::RUNNING;
                json!({"name": p.name(), "uuid": p.uuid(), "state": state_name(i.state, true),
                    "active": active, "autostart": a, "persistent": per,
                    "capacity": active.then_some(i.capacity),
                    "allocation": active.then_some(i.allocation),
                    "available": active.then_some(i.available)})
            })
            .collect();
        return print_json(&serde_json::Value::Array(v));
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut t = if details {
        Table::new(&[
            "Name",
            "State",
            "Autostart",
            "Persistent",
            "Capacity",
            "Allocation",
            "Available",
        ])
    } else {
        Table::new(&["Name", "State", "Autostart"])
    };
    for (p, i, a, per) in &rows {
        let active = i.state == pool_state::RUNNING;
        let size = |v: u64| if active { pretty(v) } else { "-".into() };
        if details {
            t.row(vec![
                p.name().into(),
                state_name(i.state, true).into(),
                yes(*a).into(),
                yes(*per).into(),
                size(i.capacity),
                size(i.allocation),
                size(i.available),
            ]);
        } else {
            t.row(vec![
                p.name().into(),
                state_name(i.state, false).into(),
                yes(*a).into(),
            ]);
        }
    }
    print!("{}", t.render());
    println!();
    Ok(())
}

fn pool_info(conn: &Connection, arg: &str, json: bool) -> Result<()> {
    let p = pool(conn, arg)?;
    let ctx = || format!("failed to get information of pool '{arg}'");
    let i = p.get_info().with_context(ctx)?;
    let persistent = p.is_persistent().with_context(ctx)?;
    let autostart = p.get_autostart().with_context(ctx)?;
    let active = i.state == pool_state::RUNNING;
    if json {
        return print_json(&json!({
            "name": p.name(), "uuid": p.uuid(), "state": state_name(i.state, true),
            "persistent": persistent, "autostart": autostart,
            "capacity": active.then_some(i.capacity),
            "allocation": active.then_some(i.allocation),
            "available": active.then_some(i.available),
        }));
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut rows = vec![
        ("Name:", p.name().to_string()),
        ("UUID:", p.uuid().to_string()),
        ("State:", state_name(i.state, true).to_string()),
        ("Persistent:", yes(persistent).to_string()),
        ("Autostart:", yes(autostart).to_string()),
    ];
    if active {
        rows.extend([
            ("Capacity:", pretty(i.capacity)),
            ("Allocation:", pretty(i.allocation)),
            ("Available:", pretty(i.available)),
        ]);
    }
    for (k, v) in rows {
        println!("{k:<15} {v}");
    }
    println!();
    Ok(())
}

fn vol_list(conn: &Connection, arg: &str, details: bool, json: bool) -> Result<()> {
    let p = pool(conn, arg)?;
    let mut vols = p
        .list_all_volumes(0)
        .with_context(|| format!("failed to list volumes of pool '{arg}'"))?;
    vols.sort_by(|a, b| a.name().cmp(b.name()));
    let mut rows = Vec::new();
    for v in vols {
        let path = v.get_path().unwrap_or_default();
        let info = if details || json {
            v.get_info().ok()
        } else {
            None
        };
        rows.push((v, path, info));
    }
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(v, path, i)| {
                json!({"name": v.name(), "path": path, "key": v.key(),
                    "type": i.map(|i| vol_type_name(i.kind)),
                    "capacity": i.map(|i| i.capacity), "allocation": i.map(|i| i.allocation)})
            })
            .collect();
        return print_json(&serde_json::Value::Array(out));
    }
    let mut t = if details {
        Table::new(&["Name", "Path", "Type", "Capacity", "Allocation"])
    } else {
        Table::new(&["Name", "Path"])
    };
    for (v, path, i) in rows {
        if details {
            let (ty, cap, alloc) = match i {
                Some(i) => (
                    vol_type_name(i.kind).to_string(),
                    pretty(i.capacity),
                    pretty(i.allocation),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            t.row(vec![v.name().into(), path, ty, cap, alloc]);
        } else {
            t.row(vec![v.name().into(), path]);
        }
    }
    print!("{}", t.render());
    println!();
    Ok(())
}

fn find_sources(conn: &Connection, pool_type: &str, spec: Option<&str>) -> Result<()> {
    let xml = conn
        .find_storage_pool_sources(pool_type, spec, 0)
        .with_context(|| format!("failed to find any {pool_type} pool sources"))?;
    print_xml(&xml);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert!(parse_size("1X").is_err() && parse_size("M").is_err());
        assert!(parse_size("99999999999P").is_err());
        assert_eq!(pretty(0), "0.00 B");
        assert_eq!(pretty(10 << 20), "10.00 MiB");
        assert_eq!(pretty(1536), "1.50 KiB");
    }

    #[test]
    fn escaping_and_algorithms() {
        assert_eq!(esc("a<'b'>&"), "a&lt;&apos;b&apos;&gt;&amp;");
        assert_eq!(wipe_algorithm("zero").unwrap(), 0);
        assert_eq!(wipe_algorithm("trim").unwrap(), 9);
        assert!(wipe_algorithm("nope").is_err());
    }
}

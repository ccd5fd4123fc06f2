//! The plugin host process: `rvirtd --plugin-host FILE --socket PATH --uri URI...`.
//!
//! Loads the one plugin file in-process, exactly as the daemon would, and serves it over
//! libvirt's remote protocol on a private socket (0600) with the daemon's own server
//! code. Its first line on stdout is a JSON object naming the plugin, its version and
//! API version once the socket accepts connections; it ends when its stdin closes (the
//! daemon stopped it, or died).

use crate::{client, served, server};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What the daemon hands a plugin host process.
#[derive(Debug)]
pub struct HostArgs {
    /// The plugin file.
    pub file: PathBuf,
    /// Where to listen.
    pub socket: PathBuf,
    /// The URIs it serves (the daemon's, for this plugin's schemes).
    pub uris: Vec<String>,
    /// The daemon's socket for plugin hosts (`--services`): the plugin's host services
    /// answer storage volumes and network ports from the daemon's pools and networks
    /// through it. `None`: from this process's own (a plugin host started by hand).
    pub services: Option<PathBuf>,
}

/// Runs the plugin host process until its stdin closes.
pub fn run(args: HostArgs) -> Result<()> {
    if args.uris.is_empty() {
        bail!("--plugin-host needs at least one --uri");
    }
    let served =
        served::Served::new(args.uris.iter().map(String::as_str)).context("invalid --uri")?;
    let runtime = rvirt_host::Runtime::with_search_path(vec![args.file.clone()]);
    if let Some(services) = &args.services {
        runtime.set_daemon_services(services);
    }
    let manifest = runtime.plugins().iter().find_map(|r| match &r.status {
        rvirt_host::PluginStatus::Loaded(m) => Some(m.clone()),
        _ => None,
    });
    let Some(manifest) = manifest else {
        let why = runtime.plugins().first().map_or_else(
            || "no such plugin file".to_string(),
            |r| format!("{:?}", r.status),
        );
        bail!("cannot load {}: {why}", args.file.display());
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .thread_keep_alive(Duration::from_secs(30))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tokio.block_on(async move {
        let shared = Arc::new(client::Shared {
            runtime: Arc::new(runtime),
            default_uri: args.uris[0].clone(),
            served,
            isolation: None,
            opened: Default::default(),
            #[cfg(feature = "policy")]
            policy: None,
            #[cfg(feature = "policy")]
            stops: Arc::new(crate::access::ClientStops::default()),
        });
        let settings = server::ConnSettings {
            max_clients: 5000,
            max_client_requests: 64,
            keepalive_interval: Duration::from_secs(5),
            keepalive_count: 5,
        };
        let listener = server::bind(&args.socket, 0o600, false)?;
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = server::Server::new(shared, settings, stop_rx, crate::admin::Workers::new(64));
        let accept = tokio::spawn(Arc::clone(&server).accept_loop(listener));
        let ready = serde_json::json!({
            "name": manifest.name,
            "version": manifest.version,
            "api_version": manifest.api_version,
            "pid": std::process::id(),
        });
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{ready}").context("cannot write the ready line")?;
            out.flush().context("cannot write the ready line")?;
        }
        // stdin closes when the daemon stops this process or dies
        let socket = args.socket.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 64];
            loop {
                match std::io::Read::read(&mut std::io::stdin(), &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = std::fs::remove_file(&socket);
            std::process::exit(0);
        });
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot handle SIGTERM")?;
        term.recv().await;
        let _ = std::fs::remove_file(&args.socket);
        accept.abort();
        Ok::<(), anyhow::Error>(())
    })
}

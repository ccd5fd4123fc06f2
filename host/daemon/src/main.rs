//! `rvirtd`: the rvirt host daemon. It speaks libvirt's remote protocol on unix
//! sockets (and TCP/TLS when configured, see `net.rs`), so unmodified `virsh` and
//! python-libvirt manage domains through it:
//!
//! ```text
//! rvirtd --root /tmp/r &
//! virsh -c 'test+unix:///default?socket=/tmp/r/run/rvirt-sock' list --all
//! ```

mod access;
mod activation;
mod admin;
mod client;
mod config;
mod console;
mod dispatch;
mod isolate;
mod logging;
mod metrics;
mod net;
mod outbox;
mod placement;
mod plugin_report;
mod served;
mod server;
mod streams;

use anyhow::{Context, Result};
use clap::Parser;
use config::{Config, Layout};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The rvirt host daemon: serves libvirt's remote protocol on unix sockets, and on TCP
/// and TLS (`listen_tcp`, `listen_tls`, `--listen`) when configured.
#[derive(Debug, Parser)]
#[command(name = "rvirtd", version)]
struct Args {
    /// Keep every path under DIR: sockets in DIR/run, config in DIR/etc/rvirt, state in
    /// DIR/var/lib/rvirt, and the plugins' system paths (qemu:///system's configs, status
    /// files and logs) under DIR too (through RVIRT_SYSTEM_ROOT). Without it: /run/rvirt, /etc/rvirt and /var/lib/rvirt as root,
    /// $XDG_RUNTIME_DIR/rvirt otherwise.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Configuration file (TOML). Default: rvirtd.toml in the config directory, if present.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// URI opened for clients that name none (overrides `default_uri` of the config).
    #[arg(long, value_name = "URI")]
    default_uri: Option<String>,
    /// Also listen on libvirt's own socket paths (libvirt-sock, libvirt-sock-ro).
    #[arg(long)]
    libvirt_sockets: bool,
    /// Listen for TCP/IP connections, as libvirtd's --listen: TLS on tls_port (16514)
    /// unless the config says `listen_tls = 0`, and plain TCP on tcp_port if `listen_tcp = 1`
    /// (which needs `auth_tcp = "none"`).
    #[arg(long)]
    listen: bool,
    /// Exit once no client has been connected for SECS seconds (as libvirtd's --timeout;
    /// what `rvirt` starts for a user's qemu:///session uses 30).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Internal: run as the plugin host process of one plugin FILE (see `isolate/host.rs`);
    /// the daemon starts these for plugins whose isolation is "process".
    #[arg(long, value_name = "FILE", hide = true, requires = "socket")]
    plugin_host: Option<PathBuf>,
    /// Internal: the plugin host process's socket.
    #[arg(long, value_name = "PATH", hide = true, requires = "plugin_host")]
    socket: Option<PathBuf>,
    /// Internal: a URI the plugin host process serves (repeated).
    #[arg(
        long = "uri",
        value_name = "URI",
        hide = true,
        requires = "plugin_host"
    )]
    uris: Vec<String>,
    /// Internal: the daemon's socket a plugin host process reaches its storage pools and
    /// networks through (for the plugin's host services).
    #[arg(long, value_name = "PATH", hide = true, requires = "plugin_host")]
    services: Option<PathBuf>,
    /// Internal: where the plugin host process serves its plugin's storage and network
    /// backends to the daemon (the backend-call channel, `isolate/wire.rs`).
    #[arg(long, value_name = "PATH", hide = true, requires = "plugin_host")]
    backend_socket: Option<PathBuf>,
    /// Internal: the URI whose secret store the plugin host's storage backends read.
    #[arg(long, value_name = "URI", hide = true, requires = "plugin_host")]
    secrets_uri: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let (Some(file), Some(socket)) = (args.plugin_host.clone(), args.socket.clone()) {
        logging::init();
        return isolate::host::run(isolate::host::HostArgs {
            file,
            socket,
            uris: args.uris,
            services: args.services,
            backend_socket: args.backend_socket,
            secrets_uri: args.secrets_uri,
        });
    }
    // SAFETY: nothing else runs yet (no thread has been spawned), and this is the only call.
    let activated = unsafe { activation::take_from_env() };
    if let Some(root) = &args.root {
        let root = std::path::absolute(root).context("cannot resolve --root")?;
        // SAFETY: nothing else runs yet (no thread has been spawned), so no other thread
        // can read the environment concurrently.
        unsafe { std::env::set_var(rvirt_host::SYSTEM_ROOT_ENV, root) };
    }
    // RUST_LOG to stderr; the admin program changes filters and outputs at run time
    logging::init();

    let layout = match &args.root {
        Some(root) => Layout::under_root(root),
        None => Layout::default_for(rustix::process::getuid().as_raw(), |k| {
            std::env::var(k).ok()
        })?,
    };
    let mut config = match &args.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(&layout.config_file, false)?,
    };
    // libvirtd.conf's log settings; the admin program changes them at run time
    if let Some(outputs) = &config.log_outputs {
        logging::set_outputs(outputs).context("invalid 'log_outputs' in the configuration")?;
    }
    if let Some(filters) = &config.log_filters {
        logging::set_filters(filters).context("invalid 'log_filters' in the configuration")?;
    }
    if let Some(uri) = args.default_uri {
        config.default_uri = uri;
    }
    config.libvirt_sockets |= args.libvirt_sockets;
    let activated = activation::assign(
        activated.context("systemd socket activation")?,
        &layout.rw_socket(),
        &layout.ro_socket(),
    )
    .context("systemd socket activation")?;
    // network settings are checked before anything starts: a bad one stops the daemon
    config
        .network_sockets(args.listen)
        .context("invalid network settings in the configuration")?;
    let served_list = config.served_uris(layout.system);
    let served = served::Served::new(served_list.iter().map(String::as_str))
        .context("invalid 'uris' or 'default_uri' in the configuration")?;
    raise_fd_limit();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(4),
        )
        .max_blocking_threads(config.max_workers.max(1))
        .thread_keep_alive(Duration::from_secs(30))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let res = runtime.block_on(run(
        layout,
        config,
        served,
        served_list,
        activated,
        args.listen,
        args.timeout.map(Duration::from_secs),
    ));
    runtime.shutdown_timeout(Duration::from_secs(1));
    res
}

async fn run(
    layout: Layout,
    config: Config,
    served: served::Served,
    served_list: Vec<String>,
    mut activated: activation::Sockets,
    listen: bool,
    timeout: Option<Duration>,
) -> Result<()> {
    // discover plugins while the sockets are being set up
    let mut signals = Signals::install()?;
    let discovery = tokio::task::spawn_blocking(rvirt_host::Runtime::discover);
    #[cfg(feature = "policy")]
    let policy = {
        let dir = config
            .policy_dir
            .clone()
            .unwrap_or_else(|| layout.policy_dir());
        let cache = layout.state_dir.join("policy-cache");
        tokio::task::spawn_blocking(move || access::open_engine(dir, cache))
    };

    if let Some(text) = &config.metrics_listen {
        let addr = metrics::parse_listen(text)?;
        let bound = metrics::serve(addr).await?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    // Sockets systemd passed are served as they are; the daemon binds the others.
    let mut listeners = Vec::new();
    let mut sockets = Vec::new();
    for (socket, path, mode, read_only) in [
        (
            activated.rw.take(),
            layout.rw_socket(),
            config.rw_mode()?,
            false,
        ),
        (
            activated.ro.take(),
            layout.ro_socket(),
            config.ro_mode()?,
            true,
        ),
    ] {
        match socket {
            Some(s) => {
                tracing::info!(
                    name = s.name.as_deref().unwrap_or("unnamed"),
                    read_only,
                    "socket passed by systemd"
                );
                listeners.push(server::from_activated(s, &path, read_only)?);
            }
            None => sockets.push((path, mode, read_only)),
        }
    }
    if config.libvirt_sockets {
        sockets.push((layout.libvirt_rw_socket(), config.rw_mode()?, false));
        if let Some(ro) = layout.libvirt_ro_socket() {
            sockets.push((ro, config.ro_mode()?, true));
        }
    }
    for (path, mode, read_only) in &sockets {
        match server::bind(path, *mode, *read_only) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                remove_sockets(listeners.iter().filter(|l| !l.activated).map(|l| &l.path));
                return Err(e.into());
            }
        }
    }

    let network = match net::bind_all(&config, &layout, listen) {
        Ok(n) => n,
        Err(e) => {
            remove_sockets(listeners.iter().filter(|l| !l.activated).map(|l| &l.path));
            return Err(e);
        }
    };

    let runtime = Arc::new(discovery.await.context("plugin discovery failed")?);
    // hypervisor plugins served from processes of their own (started on first use)
    let isolation = Arc::new(
        isolate::Isolation::new(
            &runtime,
            &config,
            &served_list,
            &layout.run_dir,
            &layout.cgroup_tag(rustix::process::getuid().as_raw()),
        )
        .context("cannot set up the plugin host processes")?,
    );
    let control = isolate::control::socket_path(&layout.run_dir);
    isolate::control::serve(&control, Arc::clone(&isolation), Arc::clone(&runtime))
        .with_context(|| format!("cannot listen on {}", control.display()))?;
    // which plugin version serves what: logged and published as each plugin loads
    let report = plugin_report::PluginReport::start(&layout.run_dir, &runtime);
    isolation.set_report(&runtime, &report);
    // As libvirtd starts its storage, secret and network drivers: the pools, secrets and
    // networks of every served root are loaded now, so pools and networks that were
    // active stay active and autostart ones start.
    let binding = Arc::clone(&runtime);
    // one connection per driver instance: a URI listed twice (`uris` and `default_uri`)
    // must not deliver each stop twice
    #[cfg(feature = "policy")]
    let watched = served.uris();
    let bound = tokio::task::spawn_blocking(move || {
        // (`Served::new` already refused remote URIs in the configuration)
        for uri in &served_list {
            match binding.storage_pools(uri) {
                Ok(_) => tracing::debug!(uri, "storage pools loaded"),
                Err(e) if e.is_no_support() => {}
                Err(e) => tracing::warn!(uri, "cannot load the storage pools: {e}"),
            }
            // and its secret store, as libvirtd starts its secret driver
            match binding.secrets(uri) {
                Ok(_) => tracing::debug!(uri, "secrets loaded"),
                Err(e) if e.is_no_support() => {}
                Err(e) => tracing::warn!(uri, "cannot load the secrets: {e}"),
            }
            // and its networks, as libvirtd starts its network driver: active networks
            // are reattached (or started again) and autostart networks start
            match binding.networks(uri) {
                Ok(_) => tracing::debug!(uri, "networks loaded"),
                Err(e) if e.is_no_support() => {}
                Err(e) => tracing::warn!(uri, "cannot load the networks: {e}"),
            }
        }
    });
    tracing::info!("serving {}", served.describe());
    // (as the scan saw them: listing them must not load the plugins that load on first use)
    for p in runtime.scanned_plugins() {
        tracing::debug!("plugin {:?}", p);
    }
    #[cfg(feature = "policy")]
    let policy = policy.await.context("policy engine start failed")?;
    #[cfg(feature = "policy")]
    let policy_files = access::ControlFiles::new(&layout.run_dir);
    #[cfg(feature = "policy")]
    if let Some(engine) = &policy {
        policy_files.publish(engine);
    }
    #[cfg(feature = "policy")]
    let stops = Arc::new(access::ClientStops::default());
    // stopped/release hooks of stops no client call made: watched only while a module
    // hooks them (watching opens every served URI, which loads its plugin)
    #[cfg(feature = "policy")]
    let watch_stops = {
        let (runtime, stops) = (Arc::clone(&runtime), stops.clone());
        let isolation = Arc::clone(&isolation);
        move |engine: &Arc<rvirt_policy::PolicyEngine>| {
            let wanted = engine.hooks_at(rvirt_policy::HookPoint::DomainStopped)
                || engine.hooks_at(rvirt_policy::HookPoint::DomainRelease);
            wanted.then(|| {
                access::StopWatcher::start(
                    &runtime,
                    Some(&isolation),
                    &watched,
                    engine.clone(),
                    stops.clone(),
                )
            })
        }
    };
    let shared = Arc::new(client::Shared {
        runtime,
        default_uri: config.default_uri.clone(),
        served,
        isolation: Some(Arc::clone(&isolation)),
        #[cfg(feature = "policy")]
        policy: policy.clone(),
        #[cfg(feature = "policy")]
        stops,
        opened: Default::default(),
    });
    {
        // domains by state, counted when /metrics is scraped
        let shared = Arc::clone(&shared);
        metrics::set_domain_source(Box::new(move || {
            let uris: Vec<String> = shared
                .opened
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect();
            uris.into_iter()
                .map(|uri| {
                    let states = isolate::open_routed(
                        &shared.runtime,
                        shared.isolation.as_deref(),
                        &uri,
                        true,
                    )
                    .and_then(|c| c.list_all_domains(0))
                    .map(|list| {
                        list.iter()
                            .filter_map(|d| d.get_state().ok().map(|(s, _)| s))
                            .collect()
                    });
                    (uri, states.map_err(|e| e.to_string()))
                })
                .collect()
        }));
    }
    let settings = server::ConnSettings {
        max_clients: config.max_clients,
        max_client_requests: config.max_client_requests.max(1),
        keepalive_interval: Duration::from_secs(config.keepalive_interval.max(1)),
        keepalive_count: config.keepalive_count,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = admin::Workers::new(config.max_workers);
    let server = server::Server::new(shared, settings, stop_rx.clone(), workers);
    // the admin program on its own root-only socket(s)
    let mut admin_sockets = vec![layout.admin_socket()];
    if config.libvirt_sockets {
        admin_sockets.push(layout.libvirt_admin_socket());
    }
    let admin = Arc::new(admin::Admin {
        clients: Arc::clone(&server.registry),
        admins: Arc::default(),
        workers: Arc::clone(&server.workers),
        max_clients: config.max_clients,
    });
    let mut admin_paths = Vec::new();
    let mut admin_tasks = Vec::new();
    for path in admin_sockets {
        match admin::bind(&path) {
            Ok(l) => {
                tracing::info!(socket = %path.display(), "admin socket listening");
                admin_paths.push(path.clone());
                admin_tasks.push(tokio::spawn(admin::accept_loop(
                    Arc::clone(&admin),
                    l,
                    path,
                    stop_rx.clone(),
                )));
            }
            Err(e) => tracing::warn!("no admin socket: {e}"),
        }
    }
    // sockets systemd passed stay: systemd owns them
    // the plugin host processes' socket: their plugins' host services resolve storage
    // volumes and network ports through this daemon's pools and networks
    if !isolation.is_empty() {
        let path = isolate::services_socket(&layout.run_dir);
        let bound = path
            .parent()
            .map_or(Ok(()), |dir| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::create_dir_all(dir)
                    .and_then(|()| {
                        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    })
                    .map_err(|source| server::ServerError::Dir {
                        path: dir.to_path_buf(),
                        source,
                    })
            })
            .and_then(|()| server::bind(&path, 0o600, false));
        match bound {
            Ok(l) => listeners.push(l),
            Err(e) => {
                remove_sockets(listeners.iter().filter(|l| !l.activated).map(|l| &l.path));
                return Err(anyhow::Error::from(e).context(format!(
                    "cannot listen on {} for the plugin host processes",
                    path.display()
                )));
            }
        }
    }
    let paths: Vec<PathBuf> = listeners
        .iter()
        .filter(|l| !l.activated)
        .map(|l| l.path.clone())
        .collect();
    let mut accept_tasks = Vec::new();
    for l in listeners {
        tracing::info!(socket = %l.path.display(), read_only = l.read_only, "listening");
        accept_tasks.push(tokio::spawn(Arc::clone(&server).accept_loop(l)));
    }
    for l in network {
        tracing::info!(addr = %l.addr, tls = l.tls.is_some(), "listening");
        accept_tasks.push(tokio::spawn(Arc::clone(&server).accept_net(l)));
    }

    let _ = bound.await;
    // (once the served roots are bound)
    #[cfg(feature = "policy")]
    let mut stop_watcher = match &policy {
        Some(engine) => {
            let (engine, watch) = (engine.clone(), watch_stops.clone());
            tokio::task::spawn_blocking(move || watch(&engine))
                .await
                .ok()
                .flatten()
        }
        None => None,
    };
    let idle = idle_watch(
        timeout,
        Arc::clone(&server.registry),
        Arc::clone(&admin.admins),
    );
    tokio::pin!(idle);
    let signal = loop {
        let got = tokio::select! {
            s = signals.wait() => s,
            _ = &mut idle => "idle timeout",
        };
        match got {
            "SIGHUP" => {
                #[cfg(feature = "policy")]
                if let Some(engine) = policy.clone() {
                    let files = policy_files.clone();
                    // compiling modules blocks: off the reactor; calls keep running on the
                    // old set until the new one is swapped in
                    let (watching, watch) = (stop_watcher.is_some(), watch_stops.clone());
                    let started = tokio::task::spawn_blocking(move || {
                        if let Err(e) = engine.reload() {
                            tracing::error!("policy reload failed: {e}");
                        }
                        files.publish(&engine);
                        // a module hooking stopped/release came: watch from now on
                        if watching { None } else { watch(&engine) }
                    })
                    .await;
                    if let Ok(Some(w)) = started {
                        stop_watcher = Some(w);
                    }
                    continue;
                }
                tracing::info!("SIGHUP: nothing to reload");
            }
            other => break other,
        }
    };
    #[cfg(feature = "policy")]
    policy_files.remove();
    tracing::info!("{signal}: shutting down");
    let _ = stop_tx.send(true);
    remove_sockets(paths.iter());
    remove_sockets(admin_paths.iter());
    report.remove();
    for t in admin_tasks {
        let _ = t.await;
    }
    isolation.stop_all();
    let _ = std::fs::remove_file(&control);
    for t in accept_tasks {
        let _ = t.await;
    }
    // give connections a moment to notice the shutdown
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(())
}

/// Resolves once no client (remote or admin) has been connected for `timeout`; never
/// without one.
async fn idle_watch(
    timeout: Option<Duration>,
    clients: Arc<admin::Clients>,
    admins: Arc<admin::Clients>,
) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    let step = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut idle_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(step).await;
        if clients.count() + admins.count() > 0 {
            idle_since = tokio::time::Instant::now();
        } else if idle_since.elapsed() >= timeout {
            tracing::info!("no client for {} s: exiting", timeout.as_secs());
            return;
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP, installed before any socket exists so that a signal arriving
/// during start-up still shuts the daemon down cleanly.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    /// Reloads the policies (instead of SIGHUP's default action, which ends the process).
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

fn remove_sockets<'a>(paths: impl Iterator<Item = &'a PathBuf>) {
    for p in paths {
        if let Err(e) = std::fs::remove_file(p) {
            tracing::warn!(socket = %p.display(), "cannot remove socket: {e}");
        }
    }
}

/// Thousands of clients need thousands of descriptors: raise the soft limit to the hard one.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!("cannot raise the open files limit: {e}");
        }
    }
}

//! The policy engine: the loaded set of modules, swapped atomically on reload, and the
//! stacked evaluation of access checks and hooks.

use crate::abi::{self, AbiVersion, HostState};
use crate::cache::ModuleCache;
use crate::module::{Answer, CallFailure, LoadError, LoadedModule, TICK_MS};
use crate::request::{Request, keys};
use crate::settings::{FailMode, HookPoint, Kind, Settings};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use wasmtime::{Config, Engine, Linker};

/// Errors that stop the engine itself (a bad module is not one: it is refused and reported).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot configure wasmtime: {0}")]
    Wasmtime(String),
    #[error("cannot read policy directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the engine finds its modules and keeps compiled code.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// The `policy.d` directory. A missing directory means "no policies".
    pub dir: PathBuf,
    /// Where compiled modules are cached (`None`: compile on every load).
    pub cache_dir: Option<PathBuf>,
}

/// A module that was refused at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub path: PathBuf,
    pub reason: String,
}

/// The outcome of a (re)load.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Names of the modules loaded, in stack order.
    pub loaded: Vec<String>,
    /// Modules refused, with the reason.
    pub refused: Vec<Refused>,
    /// How many modules came from the compiled-module cache.
    pub cached: usize,
}

/// What `list()` shows of a loaded module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    pub name: String,
    pub path: PathBuf,
    pub kind: Kind,
    pub abi: AbiVersion,
    pub hooks: Vec<HookPoint>,
    pub order: i64,
    pub fail: FailMode,
    pub fuel: u64,
    pub memory_bytes: u64,
    pub timeout_ms: u64,
}

/// Who said no, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The module's name.
    pub module: String,
    /// The reason the module gave with `set_reason`, if any.
    pub reason: Option<String>,
    /// Set when the denial comes from a failed call under `fail = "closed"`.
    pub failure: Option<CallFailure>,
}

impl Denial {
    /// A one-line explanation for the client (`policy 'x' ...`).
    pub fn describe(&self) -> String {
        match (&self.failure, &self.reason) {
            (Some(_), _) => format!("policy '{}' failed", self.module),
            (None, Some(r)) => format!("policy '{}': {r}", self.module),
            (None, None) => format!("policy '{}'", self.module),
        }
    }
}

/// The result of an access check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// The result of running the hooks of a point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// Go on; `xml` is the amended document when a hook amended it.
    Continue { xml: Option<String> },
    /// A hook vetoed the operation.
    Veto(Denial),
}

/// The modules of one load, in stack order.
#[derive(Debug, Default)]
struct PolicySet {
    access: Vec<Arc<LoadedModule>>,
    hooks: Vec<Arc<LoadedModule>>,
    refused: Vec<Refused>,
}

/// Advances the engine's epoch every tick while the engine lives (deadlines).
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The policy engine. Cheap to query from many threads at once; `reload` swaps the module
/// set atomically (calls in progress finish on the old set).
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<HostState>,
    options: PolicyOptions,
    cache: Option<ModuleCache>,
    set: RwLock<Arc<PolicySet>>,
    /// Any access module loaded (the daemon's fast path tests only this).
    access_active: AtomicBool,
    /// Any hook module loaded.
    hooks_active: AtomicBool,
    reloading: Mutex<()>,
    ticker: Mutex<Option<Ticker>>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Creates the engine and loads the modules of `options.dir`.
    pub fn new(options: PolicyOptions) -> Result<(PolicyEngine, LoadReport), EngineError> {
        let mut config = Config::new();
        config.consume_fuel(true);
        config.epoch_interruption(true);
        // guests recursing deeply trap with a stack overflow well before this
        config.max_wasm_stack(256 << 10);
        let engine = Engine::new(&config).map_err(|e| EngineError::Wasmtime(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        abi::define_imports(&mut linker).map_err(|e| EngineError::Wasmtime(format!("{e:#}")))?;
        let cache =
            options
                .cache_dir
                .as_deref()
                .and_then(|dir| match ModuleCache::open(dir, &engine) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!("compiled policy cache disabled: {e}");
                        None
                    }
                });
        let pe = PolicyEngine {
            engine,
            linker,
            options,
            cache,
            set: RwLock::new(Arc::default()),
            access_active: AtomicBool::new(false),
            hooks_active: AtomicBool::new(false),
            reloading: Mutex::new(()),
            ticker: Mutex::new(None),
        };
        let report = pe.reload()?;
        Ok((pe, report))
    }

    /// The policy directory.
    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    /// Loads the modules of the directory again and swaps them in. Modules that fail to load
    /// are refused (reported and logged); the others load. Callers in the middle of a check
    /// finish it on the previous set. An unreadable directory keeps the current set.
    pub fn reload(&self) -> Result<LoadReport, EngineError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let (set, report) = self.load_dir()?;
        let access = !set.access.is_empty();
        let hooks = !set.hooks.is_empty();
        if access || hooks {
            self.start_ticker();
        }
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        self.access_active.store(access, Ordering::Release);
        self.hooks_active.store(hooks, Ordering::Release);
        for r in &report.refused {
            tracing::error!("policy module refused: {}", r.reason);
        }
        tracing::info!(
            dir = %self.options.dir.display(),
            loaded = report.loaded.len(),
            refused = report.refused.len(),
            cached = report.cached,
            "policies loaded"
        );
        Ok(report)
    }

    fn load_dir(&self) -> Result<(PolicySet, LoadReport), EngineError> {
        let dir = &self.options.dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((PolicySet::default(), LoadReport::default()));
            }
            Err(source) => {
                return Err(EngineError::ReadDir {
                    path: dir.clone(),
                    source,
                });
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("wasm") | Some("wat")
                ) && p.is_file()
            })
            .collect();
        files.sort();

        let mut report = LoadReport::default();
        let mut set = PolicySet::default();
        let mut loaded: Vec<LoadedModule> = Vec::new();
        for path in files {
            let refuse = |report: &mut LoadReport, reason: String| {
                report.refused.push(Refused {
                    path: path.clone(),
                    reason,
                })
            };
            let settings_path = path.with_extension("toml");
            let settings = match std::fs::read_to_string(&settings_path) {
                Ok(text) => match Settings::parse(&text) {
                    Ok(s) => s,
                    Err(source) => {
                        let e = LoadError::Settings {
                            path: settings_path,
                            source,
                        };
                        refuse(&mut report, e.to_string());
                        continue;
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
                Err(source) => {
                    let e = LoadError::Read {
                        path: settings_path,
                        source,
                    };
                    refuse(&mut report, e.to_string());
                    continue;
                }
            };
            match LoadedModule::load(
                &self.engine,
                &self.linker,
                self.cache.as_ref(),
                &path,
                settings,
            ) {
                Ok(m) if loaded.iter().any(|o| o.name == m.name) => refuse(
                    &mut report,
                    format!(
                        "{}: another module is already named '{}'",
                        path.display(),
                        m.name
                    ),
                ),
                Ok(m) => {
                    report.cached += usize::from(m.cached);
                    loaded.push(m);
                }
                Err(e) => refuse(&mut report, e.to_string()),
            }
        }
        loaded.sort_by(|a, b| (a.settings.order, &a.name).cmp(&(b.settings.order, &b.name)));
        for m in loaded {
            report.loaded.push(m.name.to_string());
            let m = Arc::new(m);
            match m.kind {
                Kind::Access => set.access.push(m),
                Kind::Hook => set.hooks.push(m),
            }
        }
        set.refused = report.refused.clone();
        Ok((set, report))
    }

    fn start_ticker(&self) {
        let mut ticker = self.ticker.lock().unwrap_or_else(|e| e.into_inner());
        if ticker.is_some() {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let engine = self.engine.clone();
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("rvirt-policy-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(Duration::from_millis(TICK_MS));
                    engine.increment_epoch();
                }
            });
        match spawned {
            Ok(thread) => {
                *ticker = Some(Ticker {
                    stop,
                    thread: Some(thread),
                })
            }
            // without the ticker deadlines never fire; fuel still bounds every call
            Err(e) => tracing::warn!("cannot start the policy deadline thread: {e}"),
        }
    }

    fn current(&self) -> Arc<PolicySet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether any access module is loaded: when not, `check` always allows and callers may
    /// skip building requests.
    pub fn access_active(&self) -> bool {
        self.access_active.load(Ordering::Acquire)
    }

    /// Whether any hook module is loaded.
    pub fn hooks_active(&self) -> bool {
        self.hooks_active.load(Ordering::Acquire)
    }

    /// Whether a hook module runs at `point`.
    pub fn hooks_at(&self, point: HookPoint) -> bool {
        self.hooks_active()
            && self
                .current()
                .hooks
                .iter()
                .any(|m| m.settings.hooks_at(point))
    }

    /// The loaded modules, in stack order (access modules first, then hooks).
    pub fn list(&self) -> Vec<ModuleInfo> {
        let set = self.current();
        set.access
            .iter()
            .chain(set.hooks.iter())
            .map(|m| ModuleInfo {
                name: m.name.to_string(),
                path: m.path.clone(),
                kind: m.kind,
                abi: m.abi,
                hooks: m.settings.hooks.clone(),
                order: m.settings.order,
                fail: m.settings.fail,
                fuel: m.settings.fuel,
                memory_bytes: m.settings.memory_bytes,
                timeout_ms: m.settings.timeout_ms,
            })
            .collect()
    }

    /// The modules refused by the last load.
    pub fn refused(&self) -> Vec<Refused> {
        self.current().refused.clone()
    }

    /// Asks every access module, in order; the first deny wins. A module whose call fails
    /// denies (fail closed) or is skipped (fail open).
    pub fn check(&self, request: Request) -> Decision {
        if !self.access_active() {
            return Decision::Allow;
        }
        let set = self.current();
        let request = Arc::new(request);
        for m in &set.access {
            let failure = match m.call(&request) {
                Ok(Answer { code: 0, .. }) => continue,
                Ok(Answer {
                    code: 1, reason, ..
                }) => {
                    return Decision::Deny(Denial {
                        module: m.name.to_string(),
                        reason,
                        failure: None,
                    });
                }
                Ok(Answer { code, .. }) => CallFailure::BadAnswer {
                    value: code,
                    expected: "0 allow or 1 deny",
                },
                Err(f) => f,
            };
            if let Some(denial) = resolve_failure(m, &request, failure) {
                return Decision::Deny(denial);
            }
        }
        Decision::Allow
    }

    /// Runs the hook modules of `point`, in order. A veto stops the chain; an amend (at an
    /// amendable point) replaces the request's `xml` for the hooks after it and in the
    /// outcome. Failed calls veto (fail closed) or are skipped (fail open).
    pub fn hook(&self, point: HookPoint, mut request: Request) -> HookOutcome {
        if !self.hooks_active() {
            return HookOutcome::Continue { xml: None };
        }
        let set = self.current();
        request.set(keys::HOOK_POINT, point.as_str());
        let mut request = Arc::new(request);
        let mut amended = None;
        for m in set.hooks.iter().filter(|m| m.settings.hooks_at(point)) {
            let failure = match m.call(&request) {
                Ok(Answer { code: 0, .. }) => continue,
                Ok(Answer {
                    code: 1, reason, ..
                }) => {
                    return HookOutcome::Veto(Denial {
                        module: m.name.to_string(),
                        reason,
                        failure: None,
                    });
                }
                Ok(Answer { code: 2, xml, .. }) => match xml {
                    _ if !point.amendable() => CallFailure::AmendNotAllowed {
                        point: point.as_str(),
                    },
                    None => CallFailure::AmendWithoutXml,
                    Some(xml) => {
                        Arc::make_mut(&mut request).set(keys::XML, xml.clone());
                        amended = Some(xml);
                        continue;
                    }
                },
                Ok(Answer { code, .. }) => CallFailure::BadAnswer {
                    value: code,
                    expected: "0 continue, 1 veto or 2 amend",
                },
                Err(f) => f,
            };
            if let Some(denial) = resolve_failure(m, &request, failure) {
                return HookOutcome::Veto(denial);
            }
        }
        HookOutcome::Continue { xml: amended }
    }
}

/// Logs a failed call and resolves it by the module's `fail` setting: `Some` = deny.
fn resolve_failure(m: &LoadedModule, request: &Request, failure: CallFailure) -> Option<Denial> {
    let operation = request
        .get_str(keys::HOOK_POINT)
        .or_else(|| request.get_str(keys::OPERATION))
        .unwrap_or("");
    match m.settings.fail {
        FailMode::Closed => {
            tracing::warn!(policy = %m.name, operation, "policy module {failure}; failing closed (deny)");
            Some(Denial {
                module: m.name.to_string(),
                reason: None,
                failure: Some(failure),
            })
        }
        FailMode::Open => {
            tracing::warn!(policy = %m.name, operation, "policy module {failure}; failing open (ignored)");
            None
        }
    }
}

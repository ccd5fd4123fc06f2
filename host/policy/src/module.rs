//! One loaded module: its compiled code, `InstancePre`, settings, and a pool of live
//! instances reused across calls.

use crate::abi::{self, AbiVersion, HostState, W};
use crate::cache::ModuleCache;
use crate::request::Request;
use crate::settings::{Kind, Settings, SettingsError};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wasmtime::{
    Engine, ExternType, InstancePre, Linker, Module, Store, StoreLimitsBuilder, Trap, TypedFunc,
    ValType,
};

/// Epoch ticks are this long; timeouts are rounded up to whole ticks (plus one).
pub(crate) const TICK_MS: u64 = 10;
/// Idle live instances kept per module (more concurrent callers instantiate fresh ones).
const MAX_IDLE: usize = 8;
/// Largest module file read.
const MAX_FILE: u64 = 64 << 20;

/// Why a module was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_FILE} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {source}")]
    Settings {
        path: PathBuf,
        source: SettingsError,
    },
    #[error("{path}: not a valid WebAssembly module: {reason}")]
    Compile { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Shape { path: PathBuf, reason: String },
    #[error(
        "{path}: built for policy ABI {found}, this host implements {host} (major {} only)",
        AbiVersion::HOST.major
    )]
    AbiMajor {
        path: PathBuf,
        found: AbiVersion,
        host: AbiVersion,
    },
    #[error("{path}: cannot instantiate: {reason}")]
    Instantiate { path: PathBuf, reason: String },
}

/// Why one call of a module failed (the request then resolves by the module's `fail`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    #[error("ran out of fuel ({fuel} units)")]
    OutOfFuel { fuel: u64 },
    #[error("exceeded its {timeout_ms} ms deadline")]
    Timeout { timeout_ms: u64 },
    #[error("grew its memory past the {limit} byte limit")]
    MemoryLimit { limit: u64 },
    #[error("trapped: {0}")]
    Trap(String),
    #[error("panicked in the host")]
    Panic,
    #[error("returned {value}, which is not a valid answer ({expected})")]
    BadAnswer { value: i32, expected: &'static str },
    #[error("answered amend without calling set_xml")]
    AmendWithoutXml,
    #[error("answered amend at {point}, which cannot be amended")]
    AmendNotAllowed { point: &'static str },
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
}

/// A live instance: its store and the entry point.
struct Live {
    store: Store<HostState>,
    entry: TypedFunc<(), i32>,
    version: TypedFunc<(), i32>,
}

/// What the guest answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub code: i32,
    pub reason: Option<String>,
    pub xml: Option<String>,
}

/// A loaded module.
pub(crate) struct LoadedModule {
    pub name: Arc<str>,
    pub path: PathBuf,
    pub kind: Kind,
    pub abi: AbiVersion,
    pub settings: Settings,
    pub cached: bool,
    pre: InstancePre<HostState>,
    engine: Engine,
    idle: Mutex<Vec<Live>>,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("abi", &self.abi)
            .finish_non_exhaustive()
    }
}

/// Whether `ty` is a function with exactly these parameter and result types.
fn func_type_is(ty: &ExternType, params: &[W], results: &[W]) -> bool {
    let ExternType::Func(f) = ty else {
        return false;
    };
    let same = |v: &ValType, w: &W| match w {
        W::I32 => matches!(v, ValType::I32),
        W::I64 => matches!(v, ValType::I64),
    };
    f.params().len() == params.len()
        && f.results().len() == results.len()
        && f.params().zip(params).all(|(v, w)| same(&v, w))
        && f.results().zip(results).all(|(v, w)| same(&v, w))
}

impl LoadedModule {
    /// Reads, compiles (or loads from the cache), checks the shape of, and instantiates the
    /// module at `path`; asks it for its ABI version.
    pub fn load(
        engine: &Engine,
        linker: &Linker<HostState>,
        cache: Option<&ModuleCache>,
        path: &Path,
        settings: Settings,
    ) -> Result<LoadedModule, LoadError> {
        let p = || path.to_path_buf();
        let len = std::fs::metadata(path)
            .map_err(|source| LoadError::Read { path: p(), source })?
            .len();
        if len > MAX_FILE {
            return Err(LoadError::TooLarge { path: p() });
        }
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: p(), source })?;
        let compiled = catch_unwind(AssertUnwindSafe(|| match cache {
            Some(c) => c.load_or_compile(engine, &bytes),
            None => Module::new(engine, &bytes).map(|m| (m, false)),
        }));
        let (module, cached) = match compiled {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                return Err(LoadError::Compile {
                    path: p(),
                    reason: format!("{e:#}"),
                });
            }
            Err(_) => {
                return Err(LoadError::Compile {
                    path: p(),
                    reason: "the compiler panicked".into(),
                });
            }
        };
        let shape = |reason: String| LoadError::Shape { path: p(), reason };

        // imports: only the ABI's functions, with their exact signatures
        for imp in module.imports() {
            let known = abi::IMPORTS.iter().find(|(n, _, _)| *n == imp.name());
            match known {
                Some((_, params, results)) if imp.module() == abi::IMPORT_MODULE => {
                    if !func_type_is(&imp.ty(), params, results) {
                        return Err(shape(format!(
                            "imports {}.{} with the wrong type (ABI {}: {})",
                            imp.module(),
                            imp.name(),
                            AbiVersion::HOST,
                            abi::signature_text(params, results)
                        )));
                    }
                }
                _ => {
                    return Err(shape(format!(
                        "imports {}.{}, which policy ABI {} does not provide (it provides {})",
                        imp.module(),
                        imp.name(),
                        AbiVersion::HOST,
                        abi::IMPORTS
                            .iter()
                            .map(|(n, _, _)| format!("rvirt.{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }

        // exports
        let export = |name: &str| module.get_export(name);
        let i32_fn = |name: &str| export(name).map(|t| func_type_is(&t, &[], &[W::I32]));
        match i32_fn(abi::EXPORT_VERSION) {
            Some(true) => {}
            Some(false) => {
                return Err(shape(format!(
                    "export {} must be a function () -> i32",
                    abi::EXPORT_VERSION
                )));
            }
            None => {
                return Err(shape(format!(
                    "exports no {}: not an rvirt policy module",
                    abi::EXPORT_VERSION
                )));
            }
        }
        if !matches!(export(abi::EXPORT_MEMORY), Some(ExternType::Memory(_))) {
            return Err(shape(format!(
                "exports no memory named '{}'",
                abi::EXPORT_MEMORY
            )));
        }
        let has_check = i32_fn(abi::EXPORT_CHECK);
        let has_hook = i32_fn(abi::EXPORT_HOOK);
        for (name, found) in [(abi::EXPORT_CHECK, has_check), (abi::EXPORT_HOOK, has_hook)] {
            if found == Some(false) {
                return Err(shape(format!("export {name} must be a function () -> i32")));
            }
        }
        let kind = match (settings.kind, has_check.is_some(), has_hook.is_some()) {
            (Some(k), _, _) => k,
            (None, true, false) => Kind::Access,
            (None, false, true) => Kind::Hook,
            (None, true, true) => {
                return Err(shape(format!(
                    "exports both {} and {}: set kind = \"access\" or \"hook\" in its .toml",
                    abi::EXPORT_CHECK,
                    abi::EXPORT_HOOK
                )));
            }
            (None, false, false) => {
                return Err(shape(format!(
                    "exports neither {} nor {}",
                    abi::EXPORT_CHECK,
                    abi::EXPORT_HOOK
                )));
            }
        };
        let entry_name = entry_export(kind);
        if export(entry_name).is_none() {
            return Err(shape(format!(
                "is a {kind} module but exports no {entry_name}"
            )));
        }
        if kind == Kind::Access && !settings.hooks.is_empty() {
            return Err(shape("'hooks' is only valid for hook modules".into()));
        }

        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| shape(format!("{e:#}")))?;
        let name: Arc<str> = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
            .into();
        let mut loaded = LoadedModule {
            name,
            path: p(),
            kind,
            abi: AbiVersion::HOST,
            settings,
            cached,
            pre,
            engine: engine.clone(),
            idle: Mutex::new(Vec::new()),
        };

        // the version, asked of a first live instance (kept for the first call)
        let mut live = loaded.instantiate().map_err(|e| LoadError::Instantiate {
            path: p(),
            reason: e.to_string(),
        })?;
        let word = loaded
            .run(&mut live, None, true)
            .map_err(|e| LoadError::Instantiate {
                path: p(),
                reason: format!("{} {e}", abi::EXPORT_VERSION),
            })?;
        let abi_version = AbiVersion::from_word(word.code);
        if abi_version.major != AbiVersion::HOST.major {
            return Err(LoadError::AbiMajor {
                path: p(),
                found: abi_version,
                host: AbiVersion::HOST,
            });
        }
        if abi_version > AbiVersion::HOST {
            tracing::warn!(
                policy = %loaded.name,
                "built for policy ABI {abi_version}, newer than this host's {}; its imports all resolved",
                AbiVersion::HOST
            );
        }
        loaded.abi = abi_version;
        loaded
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(live);
        Ok(loaded)
    }

    /// A fresh instance with its own store, fuel and limits.
    fn instantiate(&self) -> Result<Live, CallFailure> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(self.settings.memory_bytes).unwrap_or(usize::MAX))
            .table_elements(10_000)
            .instances(1)
            .memories(1)
            .tables(4)
            .trap_on_grow_failure(true)
            .build();
        let state = HostState {
            name: self.name.clone(),
            request: None,
            reason: None,
            xml: None,
            xml_cap: if self.kind == Kind::Hook {
                usize::try_from(self.settings.memory_bytes).unwrap_or(usize::MAX)
            } else {
                0
            },
            memory: None,
            limits,
            limit_hit: false,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        store
            .set_fuel(self.settings.fuel)
            .map_err(|e| CallFailure::Instantiate(e.to_string()))?;
        store.set_epoch_deadline(self.deadline_ticks());
        let result = catch_unwind(AssertUnwindSafe(|| {
            let instance = self.pre.instantiate(&mut store)?;
            let memory = abi::exported_memory(&instance, &mut store);
            store.data_mut().memory = memory;
            let entry = instance.get_typed_func::<(), i32>(&mut store, entry_export(self.kind))?;
            let version = instance.get_typed_func::<(), i32>(&mut store, abi::EXPORT_VERSION)?;
            wasmtime::Result::Ok((entry, version))
        }));
        match result {
            Ok(Ok((entry, version))) => {
                store.data_mut().limit_hit = false;
                Ok(Live {
                    store,
                    entry,
                    version,
                })
            }
            Ok(Err(e)) => Err(classify(&e, &store, &self.settings)),
            Err(_) => Err(CallFailure::Panic),
        }
    }

    fn deadline_ticks(&self) -> u64 {
        self.settings.timeout_ms.div_ceil(TICK_MS) + 1
    }

    /// Runs the entry point (or, with `version`, the ABI version export) of `live` with fresh
    /// fuel and deadline and `request` installed; collects the answer.
    fn run(
        &self,
        live: &mut Live,
        request: Option<&Arc<Request>>,
        version: bool,
    ) -> Result<Answer, CallFailure> {
        let Live {
            store,
            entry,
            version: version_fn,
        } = live;
        let func = if version { &*version_fn } else { &*entry };
        store
            .set_fuel(self.settings.fuel)
            .map_err(|e| CallFailure::Instantiate(e.to_string()))?;
        store.set_epoch_deadline(self.deadline_ticks());
        {
            let data = store.data_mut();
            data.request = request.cloned();
            data.reason = None;
            data.xml = None;
            data.limit_hit = false;
        }
        let result = catch_unwind(AssertUnwindSafe(|| func.call(&mut *store, ())));
        let data = store.data_mut();
        data.request = None;
        let reason = data.reason.take();
        let xml = data.xml.take();
        match result {
            Ok(Ok(code)) => Ok(Answer { code, reason, xml }),
            Ok(Err(e)) => Err(classify(&e, store, &self.settings)),
            Err(_) => Err(CallFailure::Panic),
        }
    }

    /// Calls the module's entry point on a pooled (or fresh) instance.
    pub fn call(&self, request: &Arc<Request>) -> Result<Answer, CallFailure> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut live = match pooled {
            Some(l) => l,
            None => self.instantiate()?,
        };
        let result = self.run(&mut live, Some(request), false);
        if result.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(live);
            }
        }
        // after a failure the instance is dropped: its state may be inconsistent
        result
    }
}

/// The entry point export of a module kind.
fn entry_export(kind: Kind) -> &'static str {
    match kind {
        Kind::Access => abi::EXPORT_CHECK,
        Kind::Hook => abi::EXPORT_HOOK,
    }
}

/// Names the reason a guest call stopped.
fn classify(e: &wasmtime::Error, store: &Store<HostState>, settings: &Settings) -> CallFailure {
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            return CallFailure::OutOfFuel {
                fuel: settings.fuel,
            };
        }
        Some(Trap::Interrupt) => {
            return CallFailure::Timeout {
                timeout_ms: settings.timeout_ms,
            };
        }
        _ => {}
    }
    if store.data().limit_hit {
        return CallFailure::MemoryLimit {
            limit: settings.memory_bytes,
        };
    }
    // the outer error is "error while executing at wasm backtrace ..."; the cause is the
    // trap code or the host function's error
    let text = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    };
    CallFailure::Trap(text.lines().next().unwrap_or("").trim().to_owned())
}

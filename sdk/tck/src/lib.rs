//! rvirt's plugin conformance kit: loads one plugin file and checks the behavioural
//! contract of its kind, as Kubernetes' CSI sanity suite does for storage drivers.
//!
//! Every plugin: the version symbol, loading through the host (API and layout checks), the
//! manifest. Then, driving the plugin through the ABI directly (as the host does, but
//! without the host's own read-only guard in between):
//!
//! - **hypervisor** (a plugin with URI schemes): connection facts; refusal of every
//!   mutating call on a read-only connection with `VIR_ERR_OPERATION_DENIED` and nothing
//!   changed; libvirt's error codes and domains for unknown domains, bad XML and unknown
//!   flags; the list flags (active/inactive, persistent/transient, running/paused/shut
//!   off); the lifecycle state machine (define, start, suspend, resume, destroy, undefine;
//!   transient domains; invalid transitions refused with `VIR_ERR_OPERATION_INVALID`) and
//!   its events in order; the XML round trip through `rvirt-xml`'s object model; a panic
//!   injected with `?panic=virDomainSuspend` caught as `VIR_ERR_INTERNAL_ERROR` with the
//!   connection still working (skipped when the plugin has no fault injection); hostile
//!   inputs answered with errors, never panics; the connection after failed calls.
//! - **storage** (per pool type): the facet, opening each pool type and refusing an
//!   unlisted one, malformed XML answered with errors, no-support answers in the storage
//!   error domain naming the API; a dir-style pool life cycle in a scratch directory when
//!   the backend can run one there (skipped with the backend's reason otherwise).
//! - **network** (per forward mode): the facet, opening each mode and refusing an unlisted
//!   one, malformed XML answered with errors, no-support answers in the network error
//!   domain; no network is started (that needs the host's network privileges).
//!
//! The `rvirt-tck` binary prints one line per check and a summary, and exits non-zero
//! when a check fails; it runs the checks in a child process so that a plugin aborting
//! the process (a panic crossing the ABI unguarded) is reported as a failure too.

mod hypervisor;
mod network;
mod storage;

use rvirt_plugin_api::{
    self as api, PluginMod_Ref,
    abi_stable::{
        library::{RootModule, lib_header_from_path},
        std_types::{RResult, RStr, RString, RVec},
    },
};
use std::{
    ffi::{CStr, c_char},
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
};

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The contract holds.
    Pass,
    /// It does not: why.
    Fail(String),
    /// Not run: why.
    Skip(String),
}

/// One check.
#[derive(Debug, Clone)]
pub struct Check {
    /// Its name (`hv.lifecycle`, `storage.open.dir`).
    pub name: String,
    /// The outcome.
    pub outcome: Outcome,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Outcome::Pass => write!(f, "PASS {}", self.name),
            Outcome::Fail(why) => write!(f, "FAIL {}: {why}", self.name),
            Outcome::Skip(why) => write!(f, "SKIP {}: {why}", self.name),
        }
    }
}

/// What to check and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The URI to open (hypervisor plugins; default `SCHEME:///` of the first scheme).
    pub uri: Option<String>,
    /// A domain document to use instead of the built-in minimal one (its name and UUID
    /// are replaced per use).
    pub domain_xml: Option<String>,
    /// Checks (or check prefixes: `hv.lifecycle`, `storage`) not to run.
    pub skip: Vec<String>,
}

/// All checks of one plugin file.
#[derive(Debug, Clone)]
pub struct Report {
    /// The file.
    pub plugin: PathBuf,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// How many passed.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Pass))
    }
    /// How many failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Fail(_)))
    }
    /// How many were skipped.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skip(_)))
    }
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.checks.iter().filter(|c| f(&c.outcome)).count()
    }
    /// Whether no check failed.
    pub fn ok(&self) -> bool {
        self.failed() == 0
    }
    /// The summary line.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} passed, {} failed, {} skipped",
            if self.ok() {
                "conformant"
            } else {
                "NOT conformant"
            },
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }
}

/// The result type of a check body: `Err` fails it with the message.
pub(crate) type CheckResult = Result<(), String>;

/// Collects checks, honouring `skip` and reporting each as it completes.
pub(crate) struct Runner<'a> {
    skip: Vec<String>,
    checks: Vec<Check>,
    on_check: &'a mut dyn FnMut(&Check),
}

impl Runner<'_> {
    fn skipped(&self, name: &str) -> bool {
        self.skip
            .iter()
            .any(|s| name == s || name.starts_with(&format!("{s}.")))
    }

    /// Runs `body` as check `name` (a panic in the check itself fails it).
    pub(crate) fn check(&mut self, name: &str, body: impl FnOnce() -> CheckResult) -> bool {
        if self.skipped(name) {
            self.push(name, Outcome::Skip("skipped by --skip".into()));
            return false;
        }
        let outcome = match catch_unwind(AssertUnwindSafe(body)) {
            Ok(Ok(())) => Outcome::Pass,
            Ok(Err(why)) => Outcome::Fail(why),
            Err(p) => Outcome::Fail(format!(
                "the check panicked: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        };
        let ok = outcome == Outcome::Pass;
        self.push(name, outcome);
        ok
    }

    /// Like [`Runner::check`], for a body that may decide to skip itself
    /// (`Ok(Some(reason))`).
    pub(crate) fn check_or_skip(
        &mut self,
        name: &str,
        body: impl FnOnce() -> Result<Option<String>, String>,
    ) {
        if self.skipped(name) {
            self.push(name, Outcome::Skip("skipped by --skip".into()));
            return;
        }
        let outcome = match catch_unwind(AssertUnwindSafe(body)) {
            Ok(Ok(None)) => Outcome::Pass,
            Ok(Ok(Some(why))) => Outcome::Skip(why),
            Ok(Err(why)) => Outcome::Fail(why),
            Err(_) => Outcome::Fail("the check panicked".into()),
        };
        self.push(name, outcome);
    }

    pub(crate) fn push(&mut self, name: &str, outcome: Outcome) {
        let c = Check {
            name: name.to_string(),
            outcome,
        };
        (self.on_check)(&c);
        self.checks.push(c);
    }
}

/// Turns an ABI result into a `Result` with the error's description.
pub(crate) fn res<T>(r: RResult<T, api::PluginError>) -> Result<T, api::PluginError> {
    r.into_result()
}

/// `code/domain: message` of an error.
pub(crate) fn describe(e: &api::PluginError) -> String {
    format!("error {} (domain {}): {}", e.code, e.domain, e.message)
}

/// Fails unless `r` is an error with `code`; also checks the error is well formed (a
/// libvirt error domain, a message) and is not a caught panic.
pub(crate) fn expect_code<T: std::fmt::Debug>(
    what: &str,
    r: RResult<T, api::PluginError>,
    codes: &[api::ErrorCode],
) -> CheckResult {
    match r.into_result() {
        Ok(v) => Err(format!(
            "{what}: succeeded ({v:?}), expected {}",
            names(codes)
        )),
        Err(e) => {
            well_formed(what, &e)?;
            if codes.iter().any(|c| *c as i32 == e.code) {
                Ok(())
            } else {
                Err(format!(
                    "{what}: {}, expected {}",
                    describe(&e),
                    names(codes)
                ))
            }
        }
    }
}

fn names(codes: &[api::ErrorCode]) -> String {
    codes
        .iter()
        .map(|c| format!("{c:?} ({})", *c as i32))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// An error must carry a known-range libvirt error domain and a message, and must not be
/// a caught panic (a conformant plugin answers bad input, it does not panic on it).
pub(crate) fn well_formed(what: &str, e: &api::PluginError) -> CheckResult {
    if e.message.trim().is_empty() {
        return Err(format!("{what}: {} has no message", describe(e)));
    }
    if !(0..=120).contains(&e.domain) || e.code <= 0 || e.code > 120 {
        return Err(format!(
            "{what}: {} is outside libvirt's error numbers",
            describe(e)
        ));
    }
    if e.code == api::ErrorCode::InternalError as i32 && e.message.contains("panicked") {
        return Err(format!("{what}: the plugin panicked: {}", e.message));
    }
    Ok(())
}

/// The host services the kit lends a plugin: a scratch system root, no secrets, a log kept
/// for nothing, and the connection's URI parsed.
pub(crate) struct KitHost {
    pub(crate) root: PathBuf,
    pub(crate) uri: Option<String>,
}

impl api::HostServices for KitHost {
    fn system_root(&self) -> RString {
        self.root.display().to_string().into()
    }
    fn secret_value(&self, _usage_type: i32, _usage_id: RStr<'_>) -> api::PResult<RVec<u8>> {
        RResult::RErr(api::PluginError::no_support("virSecretGetValue"))
    }
    fn log(&self, _level: u32, _message: RStr<'_>) {}
    fn connection_uri(&self) -> api::PResult<api::ConnectionUri> {
        let Some(uri) = &self.uri else {
            return RResult::RErr(api::PluginError::no_support("virConnectGetURI"));
        };
        let (base, query) = uri.split_once('?').unwrap_or((uri, ""));
        let (scheme, rest) = base.split_once("://").unwrap_or((base, ""));
        let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
        let params = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (n, v) = kv.split_once('=').unwrap_or((kv, ""));
                api::UriParam {
                    name: n.into(),
                    value: v.into(),
                }
            })
            .collect();
        RResult::ROk(api::ConnectionUri {
            original: uri.as_str().into(),
            driver: scheme.split('+').next().unwrap_or(scheme).into(),
            path: path.into(),
            params,
        })
    }
}

pub(crate) fn host_box(root: &Path, uri: Option<&str>) -> api::HostServicesBox {
    api::HostServices_TO::from_value(
        KitHost {
            root: root.to_path_buf(),
            uri: uri.map(str::to_string),
        },
        api::abi_stable::sabi_trait::TD_Opaque,
    )
}

/// Reads the plain version symbol.
fn version_symbol(path: &Path) -> Result<String, String> {
    // SAFETY: loading the plugin under test runs its initialisers: that is what the kit
    // is asked to do with it.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| format!("the dynamic loader refused it: {e}"))?;
    // SAFETY: the symbol's type is fixed by the plugin API for every major.
    let text = unsafe {
        let f = lib
            .get::<extern "C" fn() -> *const c_char>(api::API_VERSION_SYMBOL)
            .map_err(|_| "it exports no `rvirt_plugin_api_version` symbol".to_string())?;
        let p = f();
        if p.is_null() {
            return Err("`rvirt_plugin_api_version` answered a null pointer".into());
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    };
    std::mem::forget(lib);
    Ok(text)
}

/// Checks the plugin file at `path`, calling `on_check` as each check completes.
pub fn run(path: &Path, opts: &Options, on_check: &mut dyn FnMut(&Check)) -> Report {
    let mut r = Runner {
        skip: opts.skip.clone(),
        checks: Vec::new(),
        on_check,
    };
    run_checks(path, opts, &mut r);
    Report {
        plugin: path.to_path_buf(),
        checks: r.checks,
    }
}

fn run_checks(path: &Path, opts: &Options, r: &mut Runner<'_>) {
    let scratch = match tempfile::Builder::new().prefix("rvirt-tck-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            r.push(
                "setup",
                Outcome::Fail(format!("cannot make a scratch directory: {e}")),
            );
            return;
        }
    };
    // The host loads plugins from directories: a directory holding only this file.
    let plugins = scratch.path().join("plugins");
    let file = scratch
        .path()
        .join("plugins")
        .join(path.file_name().unwrap_or_default());
    if let Err(e) = std::fs::create_dir_all(&plugins).and_then(|_| std::fs::copy(path, &file)) {
        r.push(
            "setup",
            Outcome::Fail(format!("cannot copy '{}': {e}", path.display())),
        );
        return;
    }

    let mut declared = String::new();
    let ok = r.check("symbol.version", || {
        let v = version_symbol(&file)?;
        semver::Version::parse(&v).map_err(|_| {
            format!("`rvirt_plugin_api_version` answers '{v}', not a semver version")
        })?;
        declared = v;
        Ok(())
    });
    if !ok {
        return;
    }

    let rt = rvirt_host::Runtime::with_search_path(vec![plugins.clone()]);
    let mut manifest = None;
    let ok = r.check("load.host", || {
        match rt.plugins().first().map(|p| &p.status) {
            Some(rvirt_host::PluginStatus::Loaded(m)) => {
                manifest = Some(m.clone());
                Ok(())
            }
            Some(rvirt_host::PluginStatus::Refused(e)) => Err(format!("the host refuses it: {e}")),
            Some(rvirt_host::PluginStatus::Shadowed { .. }) | None => {
                Err("the host did not find it (is it a .so file?)".into())
            }
        }
    });
    let Some(m) = manifest.filter(|_| ok) else {
        return;
    };
    r.check("manifest", || {
        if m.name.trim().is_empty() {
            return Err("the manifest names no plugin".into());
        }
        semver::Version::parse(&m.version)
            .map_err(|_| format!("the plugin's version '{}' is not semver", m.version))?;
        if m.api_version != declared {
            return Err(format!(
                "the manifest's API version {} differs from the version symbol's {declared}",
                m.api_version
            ));
        }
        if !["hypervisor", "storage", "network", "policy"].contains(&m.kind.as_str()) {
            return Err(format!(
                "kind '{}' is none of hypervisor, storage, network, policy",
                m.kind
            ));
        }
        let serves = m.kinds();
        if m.kind != "policy" && !serves.contains(&m.kind.as_str()) {
            return Err(format!(
                "it declares kind '{}' but serves {serves:?} (URI schemes {:?}, pool types {:?}, forward modes {:?})",
                m.kind, m.schemes, m.pool_types, m.forward_modes
            ));
        }
        if m.description.trim().is_empty() {
            return Err("the manifest has no description".into());
        }
        Ok(())
    });

    let host = semver::Version::parse(api::API_VERSION).unwrap_or(semver::Version::new(0, 0, 0));
    let v = semver::Version::parse(&declared).unwrap_or(semver::Version::new(0, 0, 0));
    if v.minor != host.minor {
        r.push(
            "behaviour",
            Outcome::Skip(format!(
                "the behavioural checks drive plugins of the current API {}.{}; this plugin is {declared} (it loads, see load.host)",
                host.major, host.minor
            )),
        );
        return;
    }
    let module =
        match lib_header_from_path(&file).and_then(|h| h.init_root_module::<PluginMod_Ref>()) {
            Ok(m) => m,
            Err(e) => {
                r.push("abi.root-module", Outcome::Fail(e.to_string()));
                return;
            }
        };
    let _ = PluginMod_Ref::NAME;
    if !m.schemes.is_empty() {
        hypervisor::checks(r, module, &m, opts, scratch.path());
    }
    if !m.pool_types.is_empty() {
        storage::checks(r, module, &m, scratch.path());
    }
    if !m.forward_modes.is_empty() {
        network::checks(r, module, &m, scratch.path());
    }
}

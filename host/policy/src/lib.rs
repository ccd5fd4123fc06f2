//! `rvirt-policy`: access policies and lifecycle hooks as sandboxed WebAssembly modules.
//!
//! A policy directory (`policy.d/`) holds `*.wasm` (or `*.wat`) modules, each with an
//! optional same-stem `.toml` file of settings ([`Settings`]). The [`PolicyEngine`] compiles
//! them once with wasmtime (cranelift; compiled code is cached on disk keyed by the module's
//! bytes and the engine's compatibility hash), keeps a live instance per module for reuse, and
//! runs every call with a fuel budget, a wall-clock deadline (epoch interruption) and a memory
//! cap. A module that loops, traps, grows memory past its cap or answers garbage is stopped,
//! logged with its name, and resolved by its `fail` setting (closed = deny by default).
//!
//! The guest ABI (version 1.0) is the "pull" ABI of `docs/policy-abi.md`: the guest exports
//! `memory`, `rvirt_policy_abi_version`, and `rvirt_check` (access) or `rvirt_hook` (hooks);
//! it reads the request through the `rvirt` imports (`get_str`, `get_i64`) and answers with its
//! return value plus optional `set_reason` / `set_xml`. Modules never call back into the host
//! beyond these imports.
//!
//! The crate knows nothing about the daemon: callers build a [`Request`] with the keys of
//! [`keys`] and ask [`PolicyEngine::check`] or [`PolicyEngine::hook`].

mod abi;
mod cache;
mod engine;
mod module;
mod request;
mod settings;

pub use abi::{ABI_MAJOR, ABI_MINOR, AbiVersion};
pub use engine::{
    Decision, Denial, EngineError, HookOutcome, LoadReport, ModuleInfo, PolicyEngine,
    PolicyOptions, Refused,
};
pub use module::CallFailure;
pub use request::{Request, Value, keys};
pub use settings::{FailMode, HookPoint, Kind, Settings, SettingsError};

#[cfg(test)]
mod sdk_tests;
#[cfg(test)]
mod tests;

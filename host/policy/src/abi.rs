//! The guest ABI: export and import names, the version word, and the host side of the
//! `rvirt` imports (see `docs/policy-abi.md`).

use crate::request::{Request, Value};
use std::fmt;
use std::sync::Arc;
use wasmtime::{Caller, Extern, Linker, Memory, ResourceLimiter, StoreLimits};

/// Major version of the guest ABI this host implements. Modules built for another major are
/// refused at load.
pub const ABI_MAJOR: u16 = 1;
/// Minor version of the guest ABI this host implements. Minors only add imports and request
/// keys; a module built for a newer minor loads if every import it uses exists here.
pub const ABI_MINOR: u16 = 0;

/// Export: `() -> i32`, the ABI version the module was built for, `major << 16 | minor`.
pub(crate) const EXPORT_VERSION: &str = "rvirt_policy_abi_version";
/// Export: `() -> i32`, the access decision (0 allow, 1 deny).
pub(crate) const EXPORT_CHECK: &str = "rvirt_check";
/// Export: `() -> i32`, the hook answer (0 continue, 1 veto, 2 amend).
pub(crate) const EXPORT_HOOK: &str = "rvirt_hook";
/// Export: the linear memory the import pointers refer to.
pub(crate) const EXPORT_MEMORY: &str = "memory";
/// Import module name of every host function.
pub(crate) const IMPORT_MODULE: &str = "rvirt";

/// Longest key a guest may ask for.
const MAX_KEY: usize = 256;
/// Longest reason kept from `set_reason` (longer ones are cut at a character boundary).
pub(crate) const MAX_REASON: usize = 1024;

/// The ABI version word a module declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AbiVersion {
    pub major: u16,
    pub minor: u16,
}

impl AbiVersion {
    /// The version this host implements.
    pub const HOST: AbiVersion = AbiVersion {
        major: ABI_MAJOR,
        minor: ABI_MINOR,
    };

    /// Splits the `major << 16 | minor` word returned by `rvirt_policy_abi_version`.
    pub fn from_word(word: i32) -> AbiVersion {
        let w = word as u32;
        AbiVersion {
            major: (w >> 16) as u16,
            minor: (w & 0xffff) as u16,
        }
    }
}

impl fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A wasm value type of an import signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum W {
    I32,
    I64,
}

/// The imports of ABI 1.0: name, parameter types, result types.
pub(crate) const IMPORTS: &[(&str, &[W], &[W])] = &[
    ("get_str", &[W::I32, W::I32, W::I32, W::I32], &[W::I32]),
    ("get_i64", &[W::I32, W::I32], &[W::I64]),
    ("set_reason", &[W::I32, W::I32], &[]),
    ("set_xml", &[W::I32, W::I32], &[]),
    ("log", &[W::I32, W::I32], &[]),
];

/// `(i32, i32) -> i64` style text of a signature.
pub(crate) fn signature_text(params: &[W], results: &[W]) -> String {
    let list = |ts: &[W]| {
        ts.iter()
            .map(|t| match t {
                W::I32 => "i32",
                W::I64 => "i64",
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}

/// Per-store host state: the request being answered, the guest's answers, the memory cap.
pub(crate) struct HostState {
    /// The module's name, for log lines.
    pub name: Arc<str>,
    /// The request of the call in progress (none between calls).
    pub request: Option<Arc<Request>>,
    /// What the guest passed to `set_reason` during this call.
    pub reason: Option<String>,
    /// What the guest passed to `set_xml` during this call.
    pub xml: Option<String>,
    /// Largest document `set_xml` accepts; 0 for access modules, which may not call it.
    pub xml_cap: usize,
    /// The guest's exported memory, looked up once after instantiation.
    pub memory: Option<Memory>,
    /// wasmtime's limits (memory bytes, one instance, one memory, few tables).
    pub limits: StoreLimits,
    /// Set when `limits` refused a growth: the failure is then reported as a memory limit.
    pub limit_hit: bool,
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.limits.memory_growing(current, desired, maximum);
        if !matches!(r, Ok(true)) {
            self.limit_hit = true;
        }
        r
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limit_hit = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.limits.table_growing(current, desired, maximum);
        if !matches!(r, Ok(true)) {
            self.limit_hit = true;
        }
        r
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// An out-of-bounds pointer or an invalid argument from the guest: traps the call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GuestFault {
    #[error("{import}: range {ptr}+{len} is outside the module's memory")]
    OutOfBounds {
        import: &'static str,
        ptr: i32,
        len: i32,
    },
    #[error("{import}: the module exports no memory")]
    NoMemory { import: &'static str },
    #[error("{import}: key of {len} bytes is longer than {MAX_KEY}")]
    KeyTooLong { import: &'static str, len: i32 },
    #[error("{import}: bytes are not utf-8")]
    NotUtf8 { import: &'static str },
    #[error("set_xml: document of {len} bytes is larger than the {cap} allowed")]
    XmlTooLarge { len: i32, cap: usize },
    #[error("set_xml: only hook modules may amend xml")]
    XmlNotAllowed,
}

/// The guest memory and the byte range `ptr..ptr+len`, checked.
fn range(
    caller: &mut Caller<'_, HostState>,
    import: &'static str,
    ptr: i32,
    len: i32,
) -> Result<(Memory, usize, usize), GuestFault> {
    let memory = caller
        .data()
        .memory
        .ok_or(GuestFault::NoMemory { import })?;
    let size = memory.data_size(&*caller);
    let oob = GuestFault::OutOfBounds { import, ptr, len };
    if ptr < 0 || len < 0 {
        return Err(oob);
    }
    let (start, n) = (ptr as usize, len as usize);
    match start.checked_add(n) {
        Some(end) if end <= size => Ok((memory, start, n)),
        _ => Err(oob),
    }
}

/// Reads the key argument of `get_str` / `get_i64` and looks its value up.
fn lookup(
    caller: &mut Caller<'_, HostState>,
    import: &'static str,
    ptr: i32,
    len: i32,
) -> Result<Option<(Arc<Request>, usize)>, GuestFault> {
    if len > MAX_KEY as i32 {
        return Err(GuestFault::KeyTooLong { import, len });
    }
    let (memory, start, n) = range(caller, import, ptr, len)?;
    let Some(request) = caller.data().request.clone() else {
        return Ok(None);
    };
    let key = &memory.data(&*caller)[start..start + n];
    let key = std::str::from_utf8(key).map_err(|_| GuestFault::NotUtf8 { import })?;
    Ok(request.position(key).map(|i| (request.clone(), i)))
}

/// Reads a utf-8 string argument.
fn read_str(
    caller: &mut Caller<'_, HostState>,
    import: &'static str,
    ptr: i32,
    len: i32,
) -> Result<String, GuestFault> {
    let (memory, start, n) = range(caller, import, ptr, len)?;
    let bytes = &memory.data(&*caller)[start..start + n];
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| GuestFault::NotUtf8 { import })
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Defines the `rvirt` imports of ABI 1.0 in `linker`.
pub(crate) fn define_imports(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    // get_str(key_ptr, key_len, buf_ptr, buf_cap) -> len | -1
    linker.func_wrap(
        IMPORT_MODULE,
        "get_str",
        |mut caller: Caller<'_, HostState>,
         key_ptr: i32,
         key_len: i32,
         buf_ptr: i32,
         buf_cap: i32|
         -> wasmtime::Result<i32> {
            let Some((request, i)) = lookup(&mut caller, "get_str", key_ptr, key_len)? else {
                return Ok(-1);
            };
            let formatted;
            let value: &[u8] = match request.value_at(i) {
                Value::Str(s) => s.as_bytes(),
                Value::Int(n) => {
                    formatted = n.to_string();
                    formatted.as_bytes()
                }
            };
            let (memory, start, cap) = range(&mut caller, "get_str", buf_ptr, buf_cap)?;
            let n = value.len().min(cap);
            memory.data_mut(&mut caller)[start..start + n].copy_from_slice(&value[..n]);
            Ok(i32::try_from(value.len()).unwrap_or(i32::MAX))
        },
    )?;
    // get_i64(key_ptr, key_len) -> value | -1
    linker.func_wrap(
        IMPORT_MODULE,
        "get_i64",
        |mut caller: Caller<'_, HostState>, key_ptr: i32, key_len: i32| -> wasmtime::Result<i64> {
            let Some((request, i)) = lookup(&mut caller, "get_i64", key_ptr, key_len)? else {
                return Ok(-1);
            };
            Ok(match request.value_at(i) {
                Value::Int(n) => *n,
                Value::Str(s) => s.trim().parse().unwrap_or(-1),
            })
        },
    )?;
    // set_reason(ptr, len)
    linker.func_wrap(
        IMPORT_MODULE,
        "set_reason",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let len = len.min(MAX_REASON as i32 * 4);
            let s = read_str(&mut caller, "set_reason", ptr, len)?;
            caller.data_mut().reason = Some(truncate(s, MAX_REASON));
            Ok(())
        },
    )?;
    // set_xml(ptr, len)
    linker.func_wrap(
        IMPORT_MODULE,
        "set_xml",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let cap = caller.data().xml_cap;
            if cap == 0 {
                return Err(GuestFault::XmlNotAllowed.into());
            }
            if len as usize > cap {
                return Err(GuestFault::XmlTooLarge { len, cap }.into());
            }
            let s = read_str(&mut caller, "set_xml", ptr, len)?;
            caller.data_mut().xml = Some(s);
            Ok(())
        },
    )?;
    // log(ptr, len): a debug line under the module's name
    linker.func_wrap(
        IMPORT_MODULE,
        "log",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let len = len.min(MAX_REASON as i32);
            let s = read_str(&mut caller, "log", ptr, len)?;
            tracing::debug!(policy = %caller.data().name, "{s}");
            Ok(())
        },
    )?;
    Ok(())
}

/// Looks up the exported memory once so that imports need not search exports by name.
pub(crate) fn exported_memory(
    instance: &wasmtime::Instance,
    store: &mut wasmtime::Store<HostState>,
) -> Option<Memory> {
    match instance.get_export(&mut *store, EXPORT_MEMORY) {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_word_splits() {
        let v = AbiVersion::from_word(0x0001_0002);
        assert_eq!(v, AbiVersion { major: 1, minor: 2 });
        assert_eq!(v.to_string(), "1.2");
        assert_eq!(AbiVersion::from_word(-1).major, 0xffff);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("abc".into(), 5), "abc");
    }
}

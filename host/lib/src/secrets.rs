//! The host's secret store, as libvirt's secret driver: a secret is a definition
//! (`UUID.xml`) and a value (`UUID.base64`), both owner-only files written atomically under
//! the store's directory; ephemeral secrets live in memory only.
//!
//! **Architecture invariant.** A value never reaches a log, an error message or a
//! `Debug` output, and a private secret's value is never returned to a client
//! ([`Secrets::value`] refuses it; [`Secrets::value_internal`] is for drivers that pass it
//! to QEMU or to a storage backend).

use crate::{Error, Result};
use base64::Engine as _;
use rvirt_plugin_api::ErrorCode;
use rvirt_xml::{FormatOptions, Secret};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// `VIR_ERR_NO_SECRET`.
const NO_SECRET: i32 = 66;
/// `VIR_ERR_INVALID_SECRET`.
const INVALID_SECRET: i32 = 65;
/// `VIR_FROM_SECRET`.
const FROM_SECRET: i32 = 30;
/// `REMOTE_SECRET_VALUE_MAX`: the largest value the wire carries.
pub const VALUE_MAX: usize = 65536;

/// `VIR_CONNECT_LIST_SECRETS_*` filters.
pub mod list_flags {
    /// Ephemeral secrets.
    pub const EPHEMERAL: u32 = 1;
    /// Persistent secrets.
    pub const NO_EPHEMERAL: u32 = 2;
    /// Private secrets.
    pub const PRIVATE: u32 = 4;
    /// Non-private secrets.
    pub const NO_PRIVATE: u32 = 8;
}

/// `VIR_SECRET_EVENT_*` and the value-changed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretEvent {
    /// Defined (`VIR_SECRET_EVENT_DEFINED`).
    Defined,
    /// Undefined (`VIR_SECRET_EVENT_UNDEFINED`).
    Undefined,
    /// The value changed (`VIR_SECRET_EVENT_ID_VALUE_CHANGED`).
    ValueChanged,
}

/// A handle on a secret, as the wire's `remote_nonnull_secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretId {
    /// UUID.
    pub uuid: uuid::Uuid,
    /// `VIR_SECRET_USAGE_TYPE_*`.
    pub usage_type: i32,
    /// What the usage names.
    pub usage_id: String,
}

struct Entry {
    def: Secret,
    value: Option<Vec<u8>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("uuid", &self.def.uuid())
            .field("value", &self.value.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// The secrets of one store.
pub struct Secrets {
    dir: Option<PathBuf>,
    entries: Mutex<BTreeMap<uuid::Uuid, Entry>>,
    subscribers: Mutex<Vec<(u64, SecretCallback)>>,
    next: Mutex<u64>,
}

/// A subscriber to secret events (runs after the store's lock is released).
pub type SecretCallback = std::sync::Arc<dyn Fn(&SecretId, SecretEvent) + Send + Sync>;

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn err(code: i32, message: impl Into<String>) -> Error {
    Error::Driver {
        code,
        domain: FROM_SECRET,
        message: message.into(),
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    err(
        ErrorCode::SystemError as i32,
        format!("cannot {what} '{}': {e}", path.display()),
    )
}

fn id_of(def: &Secret) -> SecretId {
    SecretId {
        uuid: def.uuid(),
        usage_type: def.usage_type(),
        usage_id: def.usage_id().unwrap_or_default(),
    }
}

fn no_secret(what: String) -> Error {
    err(NO_SECRET, format!("secret not found: {what}"))
}

impl Secrets {
    /// Opens the store in `dir` (created 0700), loading every persistent secret; `None`
    /// keeps secrets in memory only.
    pub fn open(dir: Option<PathBuf>) -> Result<Secrets> {
        let mut entries = BTreeMap::new();
        if let Some(d) = &dir {
            std::fs::create_dir_all(d).map_err(|e| io_err("create directory", d, e))?;
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(|e| io_err("restrict", d, e))?;
            for e in std::fs::read_dir(d)
                .map_err(|e| io_err("read", d, e))?
                .flatten()
            {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "xml") {
                    continue;
                }
                let def = match std::fs::read_to_string(&p).map(|t| Secret::parse(&t)) {
                    Ok(Ok(def)) if !def.uuid().is_nil() => def,
                    _ => {
                        tracing::warn!("ignoring the secret definition {}", p.display());
                        continue;
                    }
                };
                let value = std::fs::read_to_string(p.with_extension("base64"))
                    .ok()
                    .and_then(|t| {
                        base64::engine::general_purpose::STANDARD
                            .decode(t.trim())
                            .ok()
                    });
                entries.insert(def.uuid(), Entry { def, value });
            }
        }
        Ok(Secrets {
            dir,
            entries: Mutex::new(entries),
            subscribers: Mutex::default(),
            next: Mutex::new(0),
        })
    }

    /// Subscribes to secret events.
    pub fn subscribe(&self, cb: SecretCallback) -> u64 {
        let mut n = lock(&self.next);
        *n += 1;
        lock(&self.subscribers).push((*n, cb));
        *n
    }

    /// Drops a subscription.
    pub fn unsubscribe(&self, id: u64) {
        lock(&self.subscribers).retain(|(i, _)| *i != id);
    }

    fn emit(&self, id: &SecretId, ev: SecretEvent) {
        let subs: Vec<SecretCallback> = lock(&self.subscribers)
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        for cb in subs {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(id, ev))).is_err() {
                tracing::warn!("a secret event callback panicked");
            }
        }
    }

    fn file(&self, uuid: uuid::Uuid, ext: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{uuid}.{ext}")))
    }

    /// `virSecretDefineXML`: a new secret, or a new definition of an existing one (its
    /// value is kept).
    pub fn define(&self, xml: &str, flags: u32) -> Result<SecretId> {
        // VIR_SECRET_DEFINE_VALIDATE
        crate::files::check_flags(FROM_SECRET, "virSecretDefineXML", flags, 1)?;
        let mut def = Secret::parse(xml).map_err(|e| {
            err(
                ErrorCode::XmlError as i32,
                format!("invalid secret XML: {e}"),
            )
        })?;
        if def.uuid().is_nil() {
            def.set_uuid(uuid::Uuid::new_v4());
        }
        let id = id_of(&def);
        let mut entries = lock(&self.entries);
        if id.usage_type != 0
            && let Some(other) = entries.values().find(|e| {
                e.def.uuid() != id.uuid
                    && e.def.usage_type() == id.usage_type
                    && e.def.usage_id().unwrap_or_default() == id.usage_id
            })
        {
            return Err(err(
                ErrorCode::InternalError as i32,
                format!(
                    "a secret with UUID {} already defined for use with {}",
                    other.def.uuid(),
                    id.usage_id
                ),
            ));
        }
        if let Some(old) = entries.get(&id.uuid)
            && old.def.ephemeral() != def.ephemeral()
        {
            return Err(err(
                INVALID_SECRET,
                format!(
                    "secret {} cannot change between ephemeral and persistent",
                    id.uuid
                ),
            ));
        }
        if !def.ephemeral()
            && let Some(p) = self.file(id.uuid, "xml")
        {
            crate::files::write_private(
                &p,
                def.to_xml(&FormatOptions::default()).as_bytes(),
                FROM_SECRET,
            )?;
        }
        let value = entries.remove(&id.uuid).and_then(|e| e.value);
        entries.insert(id.uuid, Entry { def, value });
        drop(entries);
        self.emit(&id, SecretEvent::Defined);
        Ok(id)
    }

    /// `virSecretUndefine`.
    pub fn undefine(&self, uuid: uuid::Uuid) -> Result<()> {
        let e = lock(&self.entries)
            .remove(&uuid)
            .ok_or_else(|| no_secret(format!("no secret with matching uuid '{uuid}'")))?;
        for ext in ["xml", "base64"] {
            if let Some(p) = self.file(uuid, ext) {
                let _ = std::fs::remove_file(p);
            }
        }
        self.emit(&id_of(&e.def), SecretEvent::Undefined);
        Ok(())
    }

    /// Secrets matching `VIR_CONNECT_LIST_SECRETS_*` flags.
    pub fn list(&self, flags: u32) -> Result<Vec<SecretId>> {
        crate::files::check_flags(FROM_SECRET, "virConnectListAllSecrets", flags, 15)?;
        let pair = |a: u32, b: u32, x: bool| {
            let (fa, fb) = (flags & a != 0, flags & b != 0);
            !(fa || fb) || (fa && x) || (fb && !x)
        };
        Ok(lock(&self.entries)
            .values()
            .filter(|e| {
                pair(
                    list_flags::EPHEMERAL,
                    list_flags::NO_EPHEMERAL,
                    e.def.ephemeral(),
                ) && pair(list_flags::PRIVATE, list_flags::NO_PRIVATE, e.def.private())
            })
            .map(|e| id_of(&e.def))
            .collect())
    }

    /// `virSecretLookupByUUID`.
    pub fn lookup_by_uuid(&self, uuid: uuid::Uuid) -> Result<SecretId> {
        lock(&self.entries)
            .get(&uuid)
            .map(|e| id_of(&e.def))
            .ok_or_else(|| no_secret(format!("no secret with matching uuid '{uuid}'")))
    }

    /// `virSecretLookupByUsage`.
    pub fn lookup_by_usage(&self, usage_type: i32, usage_id: &str) -> Result<SecretId> {
        lock(&self.entries)
            .values()
            .find(|e| {
                e.def.usage_type() == usage_type && e.def.usage_id().as_deref() == Some(usage_id)
            })
            .map(|e| id_of(&e.def))
            .ok_or_else(|| no_secret(format!("no secret with matching usage '{usage_id}'")))
    }

    /// `virSecretGetXMLDesc` (never contains the value).
    pub fn xml(&self, uuid: uuid::Uuid, flags: u32) -> Result<String> {
        crate::files::check_flags(FROM_SECRET, "virSecretGetXMLDesc", flags, 0)?;
        lock(&self.entries)
            .get(&uuid)
            .map(|e| e.def.to_xml(&FormatOptions::default()))
            .ok_or_else(|| no_secret(format!("no secret with matching uuid '{uuid}'")))
    }

    /// `virSecretSetValue`.
    pub fn set_value(&self, uuid: uuid::Uuid, value: &[u8], flags: u32) -> Result<()> {
        crate::files::check_flags(FROM_SECRET, "virSecretSetValue", flags, 0)?;
        if value.len() > VALUE_MAX {
            return Err(err(
                ErrorCode::InvalidArg as i32,
                format!(
                    "invalid argument: secret value of {} bytes is longer than {VALUE_MAX}",
                    value.len()
                ),
            ));
        }
        let mut entries = lock(&self.entries);
        let e = entries
            .get_mut(&uuid)
            .ok_or_else(|| no_secret(format!("no secret with matching uuid '{uuid}'")))?;
        if !e.def.ephemeral()
            && let Some(p) = self.file(uuid, "base64")
        {
            let text = base64::engine::general_purpose::STANDARD.encode(value);
            crate::files::write_private(&p, text.as_bytes(), FROM_SECRET)?;
        }
        e.value = Some(value.to_vec());
        let id = id_of(&e.def);
        drop(entries);
        self.emit(&id, SecretEvent::ValueChanged);
        Ok(())
    }

    /// `virSecretGetValue` for a client: refused for private secrets.
    pub fn value(&self, uuid: uuid::Uuid, flags: u32) -> Result<Vec<u8>> {
        crate::files::check_flags(FROM_SECRET, "virSecretGetValue", flags, 0)?;
        let entries = lock(&self.entries);
        let e = entries
            .get(&uuid)
            .ok_or_else(|| no_secret(format!("no secret with matching uuid '{uuid}'")))?;
        if e.def.private() {
            return Err(err(
                INVALID_SECRET,
                format!("invalid secret: secret {uuid} is private"),
            ));
        }
        e.value
            .clone()
            .ok_or_else(|| no_secret(format!("secret '{uuid}' does not have a value")))
    }

    /// The value for a driver by usage, or by UUID when `usage_id` is one and no usage
    /// matches (a private secret too): what a plugin asks the host for.
    pub fn value_for_driver(&self, usage_type: i32, usage_id: &str) -> Result<Vec<u8>> {
        match self.value_internal(usage_type, usage_id) {
            Ok(v) => Ok(v),
            Err(e) => match uuid::Uuid::parse_str(usage_id.trim()) {
                Ok(u) => {
                    let entries = lock(&self.entries);
                    let Some(found) = entries.get(&u) else {
                        return Err(e);
                    };
                    found
                        .value
                        .clone()
                        .ok_or_else(|| no_secret(format!("secret '{u}' does not have a value")))
                }
                Err(_) => Err(e),
            },
        }
    }

    /// The value for a driver (a private secret too): what QEMU or a storage backend gets.
    pub fn value_internal(&self, usage_type: i32, usage_id: &str) -> Result<Vec<u8>> {
        let entries = lock(&self.entries);
        let e = entries
            .values()
            .find(|e| {
                e.def.usage_type() == usage_type && e.def.usage_id().as_deref() == Some(usage_id)
            })
            .ok_or_else(|| no_secret(format!("no secret with matching usage '{usage_id}'")))?;
        e.value
            .clone()
            .ok_or_else(|| no_secret(format!("secret for '{usage_id}' does not have a value")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CEPH: &str = "<secret ephemeral='no' private='yes'><usage type='ceph'><name>client.admin</name></usage></secret>";

    #[test]
    fn define_set_get_undefine_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("secrets");
        let s = Secrets::open(Some(store.clone())).unwrap();
        let events = std::sync::Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        s.subscribe(std::sync::Arc::new(move |_: &SecretId, e| {
            lock(&ev).push(e)
        }));
        let id = s.define(CEPH, 0).unwrap();
        assert_eq!((id.usage_type, id.usage_id.as_str()), (2, "client.admin"));
        s.set_value(id.uuid, b"\x00key\xff", 0).unwrap();
        // private: a client never reads it; a driver does
        assert_eq!(s.value(id.uuid, 0).unwrap_err().code(), INVALID_SECRET);
        assert_eq!(s.value_internal(2, "client.admin").unwrap(), b"\x00key\xff");
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
                & 0o777
        };
        assert_eq!(mode(&store), 0o700);
        assert_eq!(mode(&store.join(format!("{}.xml", id.uuid))), 0o600);
        assert_eq!(mode(&store.join(format!("{}.base64", id.uuid))), 0o600);
        assert!(!s.xml(id.uuid, 0).unwrap().contains("key"));
        // a new process finds it, value included
        let again = Secrets::open(Some(store.clone())).unwrap();
        assert_eq!(again.lookup_by_usage(2, "client.admin").unwrap(), id);
        assert_eq!(
            again.value_internal(2, "client.admin").unwrap(),
            b"\x00key\xff"
        );
        // the same usage under another UUID is refused
        let other = CEPH.replace(
            "<usage",
            &format!("<uuid>{}</uuid><usage", uuid::Uuid::new_v4()),
        );
        assert!(
            s.define(&other, 0)
                .unwrap_err()
                .to_string()
                .contains("already defined")
        );
        s.undefine(id.uuid).unwrap();
        assert_eq!(s.lookup_by_uuid(id.uuid).unwrap_err().code(), NO_SECRET);
        assert_eq!(std::fs::read_dir(&store).unwrap().count(), 0);
        assert_eq!(
            *lock(&events),
            [
                SecretEvent::Defined,
                SecretEvent::ValueChanged,
                SecretEvent::Undefined
            ]
        );
    }

    #[test]
    fn ephemeral_secrets_never_touch_the_disk_and_filters_work() {
        let dir = tempfile::tempdir().unwrap();
        let s = Secrets::open(Some(dir.path().to_path_buf())).unwrap();
        let e = s
            .define(
                "<secret ephemeral='yes' private='no'><usage type='volume'><volume>/v.img</volume></usage></secret>",
                0,
            )
            .unwrap();
        s.set_value(e.uuid, b"pw", 0).unwrap();
        assert_eq!(s.value(e.uuid, 0).unwrap(), b"pw");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        s.define(CEPH, 0).unwrap();
        assert_eq!(s.list(0).unwrap().len(), 2);
        assert_eq!(s.list(list_flags::EPHEMERAL).unwrap(), vec![e.clone()]);
        assert_eq!(s.list(list_flags::PRIVATE).unwrap().len(), 1);
        assert_eq!(s.list(list_flags::NO_PRIVATE).unwrap(), vec![e.clone()]);
        assert_eq!(s.list(16).unwrap_err().code(), 8);
        let big = vec![0u8; VALUE_MAX + 1];
        assert_eq!(s.set_value(e.uuid, &big, 0).unwrap_err().code(), 8);
        assert!(format!("{s:?}").len() < 200);
    }
}

//! Secrets of a [`Connection`](crate::Connection): which store serves a connection URI,
//! the [`SecretService`] behind a connection (the root's [`Secrets`] for a local
//! connection, the daemon for a remote one) and the [`Secret`] handle.
//!
//! As libvirt binds its secret driver to `qemu:///system` (or `qemu:///session`), a local
//! connection is bound to the secret store of its root: `qemu:///system` keeps secrets
//! under the system root's `etc/rvirt/secrets`, `qemu:///session` under
//! `$XDG_CONFIG_HOME/rvirt/secrets`, `qemu:///embed?root=DIR` under `DIR/etc/secrets`, and
//! `test:///default` in memory. One [`Secrets`] is opened per root per process.

use crate::secrets::{SecretCallback, SecretEvent, SecretId, Secrets};
use crate::uri::ConnectUri;
use crate::{Connection, Error, Result};
use rvirt_plugin_api::ErrorCode;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a connection's secrets live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretsRoot {
    /// In memory, shared by every connection of the process naming this key.
    Memory(String),
    /// In this directory.
    Dir(PathBuf),
}

/// The secret store of a local connection URI; `Ok(None)`: the URI has no secrets.
pub fn secrets_root_for(
    uri: &ConnectUri,
    system_root: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<SecretsRoot>> {
    use crate::roots::{LocalRoot, local_root};
    // VIR_FROM_SECRET
    Ok(match local_root(uri, system_root, env, "secrets", 30)? {
        None => None,
        Some(LocalRoot::Memory(key)) => Some(SecretsRoot::Memory(key.into())),
        Some(LocalRoot::Dirs { config, .. }) => Some(SecretsRoot::Dir(config.join("secrets"))),
    })
}

fn no_support(what: String) -> Error {
    Error::Driver {
        code: ErrorCode::NoSupport as i32,
        // VIR_FROM_SECRET
        domain: 30,
        message: format!("this function is not supported by the connection driver: {what}"),
    }
}

type Cell = Arc<Mutex<Option<Arc<Secrets>>>>;

fn roots() -> &'static Mutex<HashMap<SecretsRoot, Cell>> {
    static ROOTS: OnceLock<Mutex<HashMap<SecretsRoot, Cell>>> = OnceLock::new();
    ROOTS.get_or_init(Mutex::default)
}

/// The secret store of `root`, opened the first time and shared by every later caller
/// of the process. A failed open is not remembered.
pub fn secrets_for(root: &SecretsRoot) -> Result<Arc<Secrets>> {
    let cell = Arc::clone(lock(roots()).entry(root.clone()).or_default());
    let mut slot = lock(&cell);
    if let Some(s) = &*slot {
        return Ok(Arc::clone(s));
    }
    let dir = match root {
        SecretsRoot::Memory(_) => None,
        SecretsRoot::Dir(d) => Some(d.clone()),
    };
    let s = Arc::new(Secrets::open(dir)?);
    *slot = Some(Arc::clone(&s));
    Ok(s)
}

/// Whether plugins' secret lookups read the store's files afresh
/// ([`read_driver_secrets_from_files`]).
static DRIVER_READS_FILES: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Makes every secret value a plugin asks the host for (`HostServices::secret_value`: a
/// Ceph key, CHAP credentials, a disk passphrase) come from the root's secret files as
/// they are now, instead of from this process's store: what a process serving plugins
/// for a daemon (rvirtd's plugin host) needs, as the daemon owns the store and changes
/// it. Ephemeral secrets, which live in the daemon's memory only, are then not found.
pub fn read_driver_secrets_from_files() {
    DRIVER_READS_FILES.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The store a plugin's secret lookup reads: [`secrets_for`], or the files afresh after
/// [`read_driver_secrets_from_files`].
pub(crate) fn secrets_for_driver(root: &SecretsRoot) -> Result<Arc<Secrets>> {
    match root {
        SecretsRoot::Dir(d) if DRIVER_READS_FILES.load(std::sync::atomic::Ordering::Relaxed) => {
            Ok(Arc::new(Secrets::open(Some(d.clone()))?))
        }
        _ => secrets_for(root),
    }
}

/// A secret event as a subscriber sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEventInfo {
    /// The secret.
    pub secret: SecretId,
    /// What happened.
    pub event: SecretEvent,
}

/// The secret operations of one connection, secrets addressed by UUID.
#[allow(missing_docs)]
pub trait SecretService: Send + Sync {
    fn list_secrets(&self, flags: u32) -> Result<Vec<SecretId>>;
    fn secret_by_uuid(&self, uuid: uuid::Uuid) -> Result<SecretId>;
    fn secret_by_usage(&self, usage_type: i32, usage_id: &str) -> Result<SecretId>;
    fn define_secret(&self, xml: &str, flags: u32) -> Result<SecretId>;
    fn secret_xml(&self, s: &SecretId, flags: u32) -> Result<String>;
    fn set_secret_value(&self, s: &SecretId, value: &[u8], flags: u32) -> Result<()>;
    fn secret_value(&self, s: &SecretId, flags: u32) -> Result<Vec<u8>>;
    fn undefine_secret(&self, s: &SecretId) -> Result<()>;
    /// Registers a callback for secret lifecycle and value-changed events.
    fn subscribe_secret_events(&self, callback: SecretCallback) -> Result<u64>;
    /// Removes a callback registered with [`SecretService::subscribe_secret_events`].
    fn unsubscribe_secret_events(&self, id: u64) -> Result<()>;
}

/// A local connection's secrets: the store of its root, opened on first use.
pub(crate) struct LocalSecrets {
    binding: std::result::Result<SecretsRoot, String>,
}

impl LocalSecrets {
    pub(crate) fn new(uri: &ConnectUri, system_root: &Path) -> Self {
        let binding = match secrets_root_for(uri, system_root, |k| std::env::var(k).ok()) {
            Ok(Some(root)) => Ok(root),
            Ok(None) => Err(format!(
                "the '{}' driver has no secrets (use qemu:///system, qemu:///session, qemu:///embed?root=DIR or test:///default)",
                uri.driver
            )),
            Err(e) => Err(e.to_string()),
        };
        LocalSecrets { binding }
    }

    fn store(&self) -> Result<Arc<Secrets>> {
        match &self.binding {
            Ok(root) => secrets_for(root),
            Err(why) => Err(no_support(why.clone())),
        }
    }
}

impl SecretService for LocalSecrets {
    fn list_secrets(&self, flags: u32) -> Result<Vec<SecretId>> {
        self.store()?.list(flags)
    }
    fn secret_by_uuid(&self, uuid: uuid::Uuid) -> Result<SecretId> {
        self.store()?.lookup_by_uuid(uuid)
    }
    fn secret_by_usage(&self, usage_type: i32, usage_id: &str) -> Result<SecretId> {
        self.store()?.lookup_by_usage(usage_type, usage_id)
    }
    fn define_secret(&self, xml: &str, flags: u32) -> Result<SecretId> {
        self.store()?.define(xml, flags)
    }
    fn secret_xml(&self, s: &SecretId, flags: u32) -> Result<String> {
        self.store()?.xml(s.uuid, flags)
    }
    fn set_secret_value(&self, s: &SecretId, value: &[u8], flags: u32) -> Result<()> {
        self.store()?.set_value(s.uuid, value, flags)
    }
    fn secret_value(&self, s: &SecretId, flags: u32) -> Result<Vec<u8>> {
        self.store()?.value(s.uuid, flags)
    }
    fn undefine_secret(&self, s: &SecretId) -> Result<()> {
        self.store()?.undefine(s.uuid)
    }
    fn subscribe_secret_events(&self, callback: SecretCallback) -> Result<u64> {
        Ok(self.store()?.subscribe(callback))
    }
    fn unsubscribe_secret_events(&self, id: u64) -> Result<()> {
        self.store()?.unsubscribe(id);
        Ok(())
    }
}

/// A handle on a secret of a connection (`virSecretPtr`).
#[derive(Clone, Debug)]
pub struct Secret {
    conn: Connection,
    id: SecretId,
}

use crate::acl::{Object, P};

fn secret_obj(s: &SecretId) -> Object<'_> {
    Object::Secret {
        uuid: Some(s.uuid),
        usage: &s.usage_id,
    }
}

impl Connection {
    fn secrets(&self) -> &dyn SecretService {
        &*self.secrets
    }

    fn secret(&self, id: SecretId) -> Secret {
        Secret {
            conn: self.clone(),
            id,
        }
    }

    /// A handle on a secret the caller already identified (a remote client's handle),
    /// made without asking the store.
    pub fn secret_handle(&self, id: SecretId) -> Secret {
        self.secret(id)
    }

    /// `virConnectListAllSecrets` with `VIR_CONNECT_LIST_SECRETS_*` flags
    /// ([`crate::secrets::list_flags`]).
    pub fn list_all_secrets(&self, flags: u32) -> Result<Vec<Secret>> {
        self.check_connect(P::ConnectListAllSecrets)?;
        Ok(self
            .secrets()
            .list_secrets(flags)?
            .into_iter()
            .filter(|s| self.acl.visible("secret:getattr", secret_obj(s)))
            .map(|s| self.secret(s))
            .collect())
    }

    /// `virSecretLookupByUUID`.
    pub fn lookup_secret_by_uuid(&self, uuid: uuid::Uuid) -> Result<Secret> {
        let s = self.secrets().secret_by_uuid(uuid)?;
        self.acl.require(P::SecretLookupByUuid, secret_obj(&s))?;
        Ok(self.secret(s))
    }

    /// `virSecretLookupByUsage` (`VIR_SECRET_USAGE_TYPE_*`, and what the usage names).
    pub fn lookup_secret_by_usage(&self, usage_type: i32, usage_id: &str) -> Result<Secret> {
        let s = self.secrets().secret_by_usage(usage_type, usage_id)?;
        self.acl.require(P::SecretLookupByUsage, secret_obj(&s))?;
        Ok(self.secret(s))
    }

    /// `virSecretDefineXML`.
    pub fn secret_define_xml(&self, xml: &str, flags: u32) -> Result<Secret> {
        self.writable("virSecretDefineXML")?;
        let (_, uuid) = crate::acl::xml_identity(xml);
        self.acl
            .require(P::SecretDefineXml, Object::Secret { uuid, usage: "" })?;
        self.secrets()
            .define_secret(xml, flags)
            .map(|s| self.secret(s))
    }

    /// Registers `callback` for secret lifecycle and value-changed events. It runs on the
    /// thread that made the change (or the remote reader): keep it quick.
    pub fn subscribe_secret_events(
        &self,
        callback: impl Fn(&SecretEventInfo) + Send + Sync + 'static,
    ) -> Result<u64> {
        self.check_connect(P::ConnectSecretEventRegisterAny)?;
        let acl = self.acl.clone();
        self.secrets()
            .subscribe_secret_events(Arc::new(move |id: &SecretId, event| {
                if !acl.visible("secret:getattr", secret_obj(id)) {
                    return;
                }
                callback(&SecretEventInfo {
                    secret: id.clone(),
                    event,
                })
            }))
    }

    /// Removes a callback registered with [`Connection::subscribe_secret_events`].
    pub fn unsubscribe_secret_events(&self, id: u64) -> Result<()> {
        self.secrets().unsubscribe_secret_events(id)
    }
}

impl Secret {
    /// UUID.
    pub fn uuid(&self) -> uuid::Uuid {
        self.id.uuid
    }

    /// `VIR_SECRET_USAGE_TYPE_*`.
    pub fn usage_type(&self) -> i32 {
        self.id.usage_type
    }

    /// What the usage names (volume path, ceph/iscsi/tls/vtpm name).
    pub fn usage_id(&self) -> &str {
        &self.id.usage_id
    }

    /// UUID and usage.
    pub fn identity(&self) -> &SecretId {
        &self.id
    }

    /// `virSecretGetXMLDesc` (never contains the value).
    pub fn get_xml_desc(&self, flags: u32) -> Result<String> {
        self.conn
            .acl
            .require(P::SecretGetXmlDesc, secret_obj(&self.id))?;
        self.conn.secrets().secret_xml(&self.id, flags)
    }

    /// `virSecretSetValue`.
    pub fn set_value(&self, value: &[u8], flags: u32) -> Result<()> {
        self.conn.writable("virSecretSetValue")?;
        self.conn
            .acl
            .require(P::SecretSetValue, secret_obj(&self.id))?;
        self.conn.secrets().set_secret_value(&self.id, value, flags)
    }

    /// `virSecretGetValue`: refused on read-only connections and for private secrets.
    pub fn get_value(&self, flags: u32) -> Result<Vec<u8>> {
        self.conn.writable("virSecretGetValue")?;
        self.conn
            .acl
            .require(P::SecretGetValue, secret_obj(&self.id))?;
        self.conn.secrets().secret_value(&self.id, flags)
    }

    /// `virSecretUndefine`.
    pub fn undefine(&self) -> Result<()> {
        self.conn.writable("virSecretUndefine")?;
        self.conn
            .acl
            .require(P::SecretUndefine, secret_obj(&self.id))?;
        self.conn.secrets().undefine_secret(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(uri: &str, vars: &[(&str, &str)]) -> Result<Option<SecretsRoot>> {
        secrets_root_for(&ConnectUri::parse(uri).unwrap(), Path::new("/sr"), |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn uris_bind_to_secret_stores() {
        let dir = |p: &str| Some(SecretsRoot::Dir(p.into()));
        assert_eq!(
            root("qemu:///system", &[]).unwrap(),
            dir("/sr/etc/rvirt/secrets")
        );
        assert_eq!(
            root(
                "qemu:///session",
                &[("XDG_CONFIG_HOME", "/c"), ("HOME", "/h")]
            )
            .unwrap(),
            dir("/c/rvirt/secrets")
        );
        assert_eq!(
            root("qemu:///session", &[("HOME", "/h")]).unwrap(),
            dir("/h/.config/rvirt/secrets")
        );
        assert_eq!(
            root("qemu:///embed?root=/e", &[]).unwrap(),
            dir("/e/etc/secrets")
        );
        assert!(root("qemu:///embed?root=rel", &[]).is_err());
        assert_eq!(
            root("test:///default", &[]).unwrap(),
            Some(SecretsRoot::Memory("test:///default".into()))
        );
        assert_eq!(root("test:///tmp/n.xml", &[]).unwrap(), None);
    }
}

//! The request a module answers: a small ordered map of keys to strings or integers.

use std::borrow::Cow;

/// The request keys of ABI 1.0 (see `docs/policy-abi.md`). Unknown keys read as absent.
pub mod keys {
    /// Unix uid of the client (SO_PEERCRED), integer.
    pub const SUBJECT_UID: &str = "subject.uid";
    /// Unix gid of the client, integer.
    pub const SUBJECT_GID: &str = "subject.gid";
    /// Process id of the client, integer.
    pub const SUBJECT_PID: &str = "subject.pid";
    /// Process name of the client (`/proc/PID/comm`), string.
    pub const SUBJECT_NAME: &str = "subject.name";
    /// 1 when the client is on the read-only socket, integer.
    pub const SUBJECT_READONLY: &str = "subject.readonly";
    /// The permission checked, `kind:perm` as in libvirt's ACL docs (`domain:stop`).
    pub const OPERATION: &str = "operation";
    /// The permission part of `operation` (`stop`).
    pub const PERMISSION: &str = "permission";
    /// The object kind (`connect`, `domain`, `network`, `storage_pool`, ...).
    pub const OBJECT_KIND: &str = "object.kind";
    /// The object's name, when it has one.
    pub const OBJECT_NAME: &str = "object.name";
    /// The object's UUID (lowercase, dashed), when it has one.
    pub const OBJECT_UUID: &str = "object.uuid";
    /// The connection's driver name (`test`, `QEMU`, ...).
    pub const OBJECT_DRIVER: &str = "object.driver";
    /// The remote procedure that triggered the check (`DOMAIN_DESTROY`), informative.
    pub const PROCEDURE: &str = "procedure";
    /// The hook point (`domain:start`), hooks only.
    pub const HOOK_POINT: &str = "hook.point";
    /// The object's XML, where the operation has one (define, start, ...).
    pub const XML: &str = "xml";
}

/// A request value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Int(n.into())
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Self {
        Value::Int(n.into())
    }
}

/// The fields of one request. Lookup is linear: requests have a dozen keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    fields: Vec<(Cow<'static, str>, Value)>,
}

impl Request {
    /// An empty request.
    pub fn new() -> Request {
        Request {
            fields: Vec::with_capacity(12),
        }
    }

    /// Sets `key` (replacing a previous value) and returns the request, builder style.
    pub fn with(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Request {
        self.set(key, value);
        self
    }

    /// Sets `key`, replacing a previous value.
    pub fn set(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.position(&key) {
            Some(i) => self.fields[i].1 = value,
            None => self.fields.push((key, value)),
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.fields.retain(|(k, _)| k != key);
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|i| &self.fields[i].1)
    }

    /// The value of `key` when it is a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// Sets `operation` (`kind:perm`), `permission` and `object.kind` from a libvirt
    /// permission name such as `domain:stop`.
    pub fn with_operation(mut self, operation: &str) -> Request {
        if let Some((kind, perm)) = operation.split_once(':') {
            self.set(keys::OBJECT_KIND, kind);
            self.set(keys::PERMISSION, perm);
        }
        self.set(keys::OPERATION, operation);
        self
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(k, _)| k.as_ref())
    }

    pub(crate) fn position(&self, key: &str) -> Option<usize> {
        self.fields.iter().position(|(k, _)| k == key)
    }

    pub(crate) fn value_at(&self, i: usize) -> &Value {
        &self.fields[i].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_and_operation_splits() {
        let mut r = Request::new()
            .with(keys::SUBJECT_UID, 1000u32)
            .with_operation("domain:stop");
        assert_eq!(r.get(keys::SUBJECT_UID), Some(&Value::Int(1000)));
        r.set(keys::SUBJECT_UID, 0u32);
        assert_eq!(r.get(keys::SUBJECT_UID), Some(&Value::Int(0)));
        assert_eq!(r.get_str(keys::OBJECT_KIND), Some("domain"));
        assert_eq!(r.get_str(keys::PERMISSION), Some("stop"));
        assert_eq!(r.keys().count(), 4);
        r.remove(keys::PERMISSION);
        assert_eq!(r.get(keys::PERMISSION), None);
    }
}

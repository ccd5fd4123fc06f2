//! Access checks and hooks for embedders (cargo feature `policy`): a
//! [`PolicyEngine`](rvirt_policy::PolicyEngine) and a [`Subject`] attached to a
//! [`Connection`](crate::Connection) with [`Connection::with_policy`](crate::Connection::with_policy).
//! Every call of the connection and of the handles it makes (domains, networks, pools,
//! volumes, secrets) is then checked with libvirt's permission names before it runs (the
//! table of [`crate::acl`], shared with rvirtd), a denial is `VIR_ERR_ACCESS_DENIED`
//! naming the permission, list calls leave out the objects the subject may not `getattr`,
//! and the domain hooks of define, create and destroy run as in rvirtd.

use crate::acl::{Hook, Object, P, rule};
use crate::error::Error;
use rvirt_policy::{Decision, HookOutcome, HookPoint, PolicyEngine, Request, keys};
use std::sync::Arc;

pub use rvirt_policy;

/// `VIR_ERR_ACCESS_DENIED`.
pub const ACCESS_DENIED: i32 = 88;
/// `VIR_FROM_ACCESS`.
pub const FROM_ACCESS: i32 = 55;
/// `VIR_ERR_HOOK_SCRIPT_FAILED`.
pub const HOOK_SCRIPT_FAILED: i32 = 70;
/// `VIR_FROM_HOOK`.
pub const FROM_HOOK: i32 = 34;

/// Who makes the calls of a connection, as the policies see it (`subject.*` request keys).
/// Unknown fields are left out of the requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub pid: Option<i32>,
    pub name: Option<String>,
}

impl Subject {
    /// A subject with nothing known; fill it with the builder methods.
    pub fn new() -> Subject {
        Subject::default()
    }

    /// The calling process: its real uid and gid, pid and `/proc/self/comm`.
    pub fn current_process() -> Subject {
        Subject {
            uid: Some(rustix::process::getuid().as_raw()),
            gid: Some(rustix::process::getgid().as_raw()),
            pid: Some(rustix::process::getpid().as_raw_nonzero().get()),
            name: std::fs::read_to_string("/proc/self/comm")
                .ok()
                .map(|s| s.trim_end().to_owned()),
        }
    }

    pub fn uid(mut self, uid: u32) -> Subject {
        self.uid = Some(uid);
        self
    }

    pub fn gid(mut self, gid: u32) -> Subject {
        self.gid = Some(gid);
        self
    }

    pub fn pid(mut self, pid: i32) -> Subject {
        self.pid = Some(pid);
        self
    }

    pub fn name(mut self, name: impl Into<String>) -> Subject {
        self.name = Some(name.into());
        self
    }
}

/// The engine, the subject and the connection's driver, shared by a connection's clones
/// and handles.
pub(crate) struct Guard {
    engine: Arc<PolicyEngine>,
    subject: Subject,
    read_only: bool,
    driver: String,
}

impl Guard {
    pub(crate) fn new(
        engine: Arc<PolicyEngine>,
        subject: Subject,
        read_only: bool,
        driver: String,
    ) -> Guard {
        Guard {
            engine,
            subject,
            read_only,
            driver,
        }
    }

    fn request(&self, perm: &'static str, p: Option<P>, obj: &Object<'_>) -> Request {
        let s = &self.subject;
        let mut req = Request::new().with_operation(perm);
        if let Some(uid) = s.uid {
            req.set(keys::SUBJECT_UID, uid);
        }
        if let Some(gid) = s.gid {
            req.set(keys::SUBJECT_GID, gid);
        }
        if let Some(pid) = s.pid {
            req.set(keys::SUBJECT_PID, pid);
        }
        if let Some(name) = &s.name {
            req.set(keys::SUBJECT_NAME, name.as_str());
        }
        req.set(keys::SUBJECT_READONLY, i32::from(self.read_only));
        if let Some(p) = p {
            req.set(keys::PROCEDURE, p.name());
        }
        req.set(keys::OBJECT_DRIVER, self.driver.as_str());
        if let Some(name) = obj.name() {
            req.set(keys::OBJECT_NAME, name);
        }
        if let Some(u) = obj.uuid() {
            req.set(keys::OBJECT_UUID, u.to_string());
        }
        match obj {
            Object::Vol { pool, .. } => req.set("object.pool", *pool),
            Object::Port { network, .. } => req.set("object.network", *network),
            _ => {}
        }
        req
    }

    fn require_perm(
        &self,
        perm: &'static str,
        p: Option<P>,
        obj: &Object<'_>,
    ) -> crate::Result<()> {
        match self.engine.check(self.request(perm, p, obj)) {
            Decision::Allow => Ok(()),
            Decision::Deny(d) => {
                let on = obj.describe_on();
                tracing::info!(uid = ?self.subject.uid, "denied {perm}{on} by policy '{}'", d.module);
                Err(Error::Driver {
                    code: ACCESS_DENIED,
                    domain: FROM_ACCESS,
                    message: format!("access denied: '{perm}'{on} ({})", d.describe()),
                })
            }
        }
    }

    fn point(hook: Hook) -> HookPoint {
        match hook {
            Hook::Define => HookPoint::DomainDefine,
            Hook::Prepare => HookPoint::DomainPrepare,
            Hook::Start => HookPoint::DomainStart,
            Hook::Started => HookPoint::DomainStarted,
            Hook::Stopped => HookPoint::DomainStopped,
            Hook::Release => HookPoint::DomainRelease,
        }
    }

    fn hook(&self, hook: Hook, obj: &Object<'_>, xml: Option<&str>) -> HookOutcome {
        let mut req = self.request("", None, obj);
        req.remove(keys::OPERATION);
        req.remove(keys::PERMISSION);
        req.set(keys::OBJECT_KIND, obj.kind());
        if let Some(x) = xml {
            req.set(keys::XML, x);
        }
        self.engine.hook(Self::point(hook), req)
    }
}

impl crate::acl::Checker {
    /// `Err(VIR_ERR_ACCESS_DENIED)` unless the subject has every permission `p` needs on
    /// `obj`.
    #[inline]
    pub(crate) fn require(&self, p: P, obj: Object<'_>) -> crate::Result<()> {
        match &self.guard {
            Some(g) if g.engine.access_active() => {
                for perm in rule(p).perms {
                    g.require_perm(perm, Some(p), &obj)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `Err(VIR_ERR_ACCESS_DENIED)` unless the subject has `perm` on `obj` (the extra
    /// permissions some flags need).
    pub(crate) fn require_perm(&self, perm: &'static str, obj: Object<'_>) -> crate::Result<()> {
        match &self.guard {
            Some(g) if g.engine.access_active() => g.require_perm(perm, None, &obj),
            _ => Ok(()),
        }
    }

    /// Whether the subject may see `obj` (`perm` is its kind's `getattr`).
    #[inline]
    pub(crate) fn visible(&self, perm: &'static str, obj: Object<'_>) -> bool {
        match &self.guard {
            Some(g) if g.engine.access_active() => {
                g.engine.check(g.request(perm, None, &obj)).is_allow()
            }
            _ => true,
        }
    }

    /// `<name>` and `<uuid>` of a definition, parsed only when something will look at
    /// them (access checks, or a hook at one of `hooks`); empty otherwise.
    pub(crate) fn identity(&self, xml: &str, hooks: &[Hook]) -> (String, Option<uuid::Uuid>) {
        let wanted = self.guard.as_ref().is_some_and(|g| {
            g.engine.access_active() || hooks.iter().any(|&h| g.engine.hooks_at(Guard::point(h)))
        });
        if wanted {
            crate::acl::xml_identity(xml)
        } else {
            (String::new(), None)
        }
    }

    pub(crate) fn hooks_at(&self, hook: Hook) -> bool {
        self.guard
            .as_ref()
            .is_some_and(|g| g.engine.hooks_at(Guard::point(hook)))
    }

    /// Runs a "before" hook point: a veto is `VIR_ERR_HOOK_SCRIPT_FAILED` with the
    /// module's reason; `Some(xml)` is the document a hook amended.
    pub(crate) fn hook_before(
        &self,
        hook: Hook,
        obj: Object<'_>,
        xml: Option<&str>,
    ) -> crate::Result<Option<String>> {
        let Some(g) = self.guard.as_ref().filter(|_| self.hooks_at(hook)) else {
            return Ok(None);
        };
        match g.hook(hook, &obj, xml) {
            HookOutcome::Continue { xml } => Ok(xml),
            HookOutcome::Veto(d) => {
                let point = Guard::point(hook);
                Err(Error::Driver {
                    code: HOOK_SCRIPT_FAILED,
                    domain: FROM_HOOK,
                    message: format!(
                        "Hook script execution failed: {point}{} vetoed by {}",
                        obj.describe_on().replacen(" on ", " of ", 1),
                        d.describe()
                    ),
                })
            }
        }
    }

    /// Runs an "after" hook point: what happened cannot be undone, a veto is logged.
    pub(crate) fn hook_after(&self, hook: Hook, obj: Object<'_>) {
        let Some(g) = self.guard.as_ref().filter(|_| self.hooks_at(hook)) else {
            return;
        };
        if let HookOutcome::Veto(d) = g.hook(hook, &obj, None) {
            tracing::warn!(
                "hook '{}' vetoed {}, which has already happened",
                d.module,
                Guard::point(hook)
            );
        }
    }
}

//! The secret procedures of the remote driver. Values travel only in the
//! `SecretSetValue` arguments and the `SecretGetValue` reply, and are never logged.

use super::{RemoteBackend, lock};
use crate::Result;
use crate::secrets::{SecretCallback, SecretEvent, SecretId};
use crate::secrets_api::SecretService;
use rvirt_wire::protocol::NonnullSecret;
use rvirt_wire::remote::*;
use rvirt_wire::{Frame, Procedure, RemoteProcedure, procs};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// `VIR_SECRET_EVENT_ID_LIFECYCLE` and `_VALUE_CHANGED`.
const SECRET_EVENT_LIFECYCLE: i32 = 0;
const SECRET_EVENT_VALUE_CHANGED: i32 = 1;

impl super::Link {
    /// Runs the secret event callbacks for an event message (called by the reader thread).
    pub(super) fn secret_event(&self, f: &Frame) {
        let decoded = match RemoteProcedure::from_number(f.header.procedure) {
            Some(RemoteProcedure::SecretEventLifecycle) => f
                .body::<SecretEventLifecycleMsg>()
                .map(|m| (m.callback_id, m.secret, Some(m.event))),
            Some(RemoteProcedure::SecretEventValueChanged) => f
                .body::<SecretEventValueChangedMsg>()
                .map(|m| (m.callback_id, m.secret, None)),
            _ => return,
        };
        let (callback_id, secret, lifecycle) = match decoded {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!("undecodable secret event: {e}");
                return;
            }
        };
        let event = match lifecycle {
            // VIR_SECRET_EVENT_DEFINED, VIR_SECRET_EVENT_UNDEFINED
            Some(0) => SecretEvent::Defined,
            Some(1) => SecretEvent::Undefined,
            Some(_) => return,
            None => SecretEvent::ValueChanged,
        };
        // events of registrations this connection no longer holds are stale
        let callbacks = lock(&self.secret_subscribers)
            .callbacks_if(|(l, v)| callback_id == l || callback_id == v);
        let id = id(secret);
        for cb in callbacks {
            if catch_unwind(AssertUnwindSafe(|| cb(&id, event))).is_err() {
                tracing::warn!("a secret event callback panicked");
            }
        }
    }
}

fn handle(s: &SecretId) -> NonnullSecret {
    NonnullSecret {
        uuid: *s.uuid.as_bytes(),
        usage_type: s.usage_type,
        usage_id: s.usage_id.clone(),
    }
}

fn id(s: NonnullSecret) -> SecretId {
    SecretId {
        uuid: uuid::Uuid::from_bytes(s.uuid),
        usage_type: s.usage_type,
        usage_id: s.usage_id,
    }
}

impl RemoteBackend {
    fn secret_flags<P: Procedure<Args = SecretFlagsArgs>>(
        &self,
        s: &SecretId,
        flags: u32,
    ) -> Result<P::Ret> {
        self.call::<P>(&SecretFlagsArgs {
            secret: handle(s),
            flags,
        })
    }
}

impl SecretService for RemoteBackend {
    fn list_secrets(&self, flags: u32) -> Result<Vec<SecretId>> {
        let ret = self.call::<procs::ConnectListAllSecrets>(&ListAllArgs {
            need_results: 1,
            flags,
        })?;
        Ok(ret.secrets.into_iter().map(id).collect())
    }
    fn secret_by_uuid(&self, uuid: uuid::Uuid) -> Result<SecretId> {
        let a = UuidArgs {
            uuid: *uuid.as_bytes(),
        };
        Ok(id(self.call::<procs::SecretLookupByUuid>(&a)?.secret))
    }
    fn secret_by_usage(&self, usage_type: i32, usage_id: &str) -> Result<SecretId> {
        let a = SecretLookupByUsageArgs {
            usage_type,
            usage_id: usage_id.into(),
        };
        Ok(id(self.call::<procs::SecretLookupByUsage>(&a)?.secret))
    }
    fn define_secret(&self, xml: &str, flags: u32) -> Result<SecretId> {
        let a = XmlFlagsArgs {
            xml: xml.into(),
            flags,
        };
        Ok(id(self.call::<procs::SecretDefineXml>(&a)?.secret))
    }
    fn secret_xml(&self, s: &SecretId, flags: u32) -> Result<String> {
        Ok(self.secret_flags::<procs::SecretGetXmlDesc>(s, flags)?.xml)
    }
    fn set_secret_value(&self, s: &SecretId, value: &[u8], flags: u32) -> Result<()> {
        self.call::<procs::SecretSetValue>(&SecretSetValueArgs {
            secret: handle(s),
            value: value.to_vec(),
            flags,
        })
    }
    fn secret_value(&self, s: &SecretId, flags: u32) -> Result<Vec<u8>> {
        Ok(self.secret_flags::<procs::SecretGetValue>(s, flags)?.value)
    }
    fn undefine_secret(&self, s: &SecretId) -> Result<()> {
        self.call::<procs::SecretUndefine>(&SecretArgs { secret: handle(s) })
    }
    fn subscribe_secret_events(&self, callback: SecretCallback) -> Result<u64> {
        let _serial = lock(&self.link.registration);
        let (sub, needs_remote) = lock(&self.link.secret_subscribers).add(callback);
        if needs_remote {
            let register = |event_id| {
                self.call::<procs::ConnectSecretEventRegisterAny>(
                    &ConnectSecretEventRegisterAnyArgs {
                        event_id,
                        secret: None,
                    },
                )
                .map(|r| r.callback_id)
            };
            let both = register(SECRET_EVENT_LIFECYCLE).and_then(|l| {
                match register(SECRET_EVENT_VALUE_CHANGED) {
                    Ok(v) => Ok((l, v)),
                    Err(e) => {
                        let _ =
                            self.call::<procs::ConnectSecretEventDeregisterAny>(&CallbackIdArgs {
                                callback_id: l,
                            });
                        Err(e)
                    }
                }
            });
            match both {
                Ok(ids) => lock(&self.link.secret_subscribers).remote = Some(ids),
                Err(e) => {
                    lock(&self.link.secret_subscribers).forget(sub);
                    return Err(e);
                }
            }
        }
        Ok(sub)
    }
    fn unsubscribe_secret_events(&self, sub: u64) -> Result<()> {
        let _serial = lock(&self.link.registration);
        let remote = lock(&self.link.secret_subscribers).remove(sub, "secret event")?;
        if let Some((l, v)) = remote {
            for callback_id in [l, v] {
                self.call::<procs::ConnectSecretEventDeregisterAny>(&CallbackIdArgs {
                    callback_id,
                })?;
            }
        }
        Ok(())
    }
}

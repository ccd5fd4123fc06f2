//! The secret procedures of the remote driver. Values travel only in the
//! `SecretSetValue` arguments and the `SecretGetValue` reply, and are never logged.

use super::RemoteBackend;
use crate::secrets::{SecretCallback, SecretId};
use crate::secrets_api::SecretService;
use crate::{Error, Result};
use rvirt_plugin_api::ErrorCode;
use rvirt_wire::protocol::NonnullSecret;
use rvirt_wire::remote::*;
use rvirt_wire::{Procedure, procs};

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
    fn subscribe_secret_events(&self, _callback: SecretCallback) -> Result<u64> {
        Err(Error::Driver {
            code: ErrorCode::NoSupport as i32,
            domain: 30,
            message: "this function is not supported by the connection driver: secret events over the remote driver".into(),
        })
    }
    fn unsubscribe_secret_events(&self, _id: u64) -> Result<()> {
        Ok(())
    }
}

//! The secret procedures and secret events.
//!
//! **Values are never logged**: the arguments of `SecretSetValue` and the reply of
//! `SecretGetValue` are handled here only as bytes passed to and from the store; every
//! error message is the store's, which never contains a value.

use super::storage::{list_all, names_max};
use super::{CallResult, Failure, call, err, host_error};
use crate::client::{Client, SECRET_EVENT_LIFECYCLE, SECRET_EVENT_VALUE_CHANGED};
use rvirt_host::secrets::SecretId;
use rvirt_host::{Connection, Secret};
use rvirt_wire::RemoteProcedure as P;
use rvirt_wire::procs;
use rvirt_wire::protocol::{self, NonnullSecret, error_code, error_domain};
use rvirt_wire::remote::*;

fn secret(conn: &Connection, s: &NonnullSecret) -> Secret {
    conn.secret_handle(SecretId {
        uuid: uuid::Uuid::from_bytes(s.uuid),
        usage_type: s.usage_type,
        usage_id: s.usage_id.clone(),
    })
}

fn wire_secret(s: &Secret) -> NonnullSecret {
    NonnullSecret {
        uuid: *s.uuid().as_bytes(),
        usage_type: s.usage_type(),
        usage_id: s.usage_id().to_string(),
    }
}

fn secret_ret(s: rvirt_host::Result<Secret>) -> Result<SecretRet, Failure> {
    s.map(|s| SecretRet {
        secret: wire_secret(&s),
    })
    .map_err(host_error)
}

/// Secret event ids a client may register: lifecycle and value changed (all there are).
fn check_secret_event_id(id: i32) -> Result<(), Failure> {
    match id {
        SECRET_EVENT_LIFECYCLE | SECRET_EVENT_VALUE_CHANGED => Ok(()),
        _ => Err(err(
            error_code::INVALID_ARG,
            error_domain::RPC,
            format!("invalid argument: unsupported secret event ID {id}"),
        )),
    }
}

/// Answers a secret procedure; `None` if `procedure` is not one.
pub(super) fn dispatch(
    client: &Client,
    c: &Connection,
    procedure: P,
    payload: &[u8],
) -> Option<CallResult> {
    Some(match procedure {
        P::ConnectNumOfSecrets => call::<procs::ConnectNumOfSecrets>(payload, |()| {
            let n = c.list_all_secrets(0).map_err(host_error)?.len();
            Ok(NumRet {
                num: i32::try_from(n).unwrap_or(i32::MAX),
            })
        }),
        P::ConnectListSecrets => call::<procs::ConnectListSecrets>(payload, |a| {
            let max = names_max(a.maxuuids, protocol::SECRET_LIST_MAX, "secrets")?;
            let secrets = c.list_all_secrets(0).map_err(host_error)?;
            Ok(ConnectListSecretsRet {
                uuids: secrets
                    .iter()
                    .map(|s| s.uuid().to_string())
                    .take(max)
                    .collect(),
            })
        }),
        P::ConnectListAllSecrets => call::<procs::ConnectListAllSecrets>(payload, |a| {
            let secrets = c.list_all_secrets(a.flags).map_err(host_error)?;
            let (secrets, ret) = list_all(
                secrets,
                a.need_results,
                protocol::SECRET_LIST_MAX,
                "secrets",
                wire_secret,
            )?;
            Ok(ConnectListAllSecretsRet { secrets, ret })
        }),
        P::SecretLookupByUuid => call::<procs::SecretLookupByUuid>(payload, |a| {
            secret_ret(c.lookup_secret_by_uuid(uuid::Uuid::from_bytes(a.uuid)))
        }),
        P::SecretLookupByUsage => call::<procs::SecretLookupByUsage>(payload, |a| {
            secret_ret(c.lookup_secret_by_usage(a.usage_type, &a.usage_id))
        }),
        P::SecretDefineXml => call::<procs::SecretDefineXml>(payload, |a| {
            secret_ret(c.secret_define_xml(&a.xml, a.flags))
        }),
        P::SecretGetXmlDesc => call::<procs::SecretGetXmlDesc>(payload, |a| {
            secret(c, &a.secret)
                .get_xml_desc(a.flags)
                .map(|xml| XmlRet { xml })
                .map_err(host_error)
        }),
        P::SecretSetValue => call::<procs::SecretSetValue>(payload, |a| {
            secret(c, &a.secret)
                .set_value(&a.value, a.flags)
                .map_err(host_error)
        }),
        P::SecretGetValue => call::<procs::SecretGetValue>(payload, |a| {
            secret(c, &a.secret)
                .get_value(a.flags)
                .map(|value| SecretGetValueRet { value })
                .map_err(host_error)
        }),
        P::SecretUndefine => call::<procs::SecretUndefine>(payload, |a| {
            secret(c, &a.secret).undefine().map_err(host_error)
        }),
        P::ConnectSecretEventRegisterAny => {
            call::<procs::ConnectSecretEventRegisterAny>(payload, |a| {
                check_secret_event_id(a.event_id)?;
                let callback_id =
                    client.with_events(|ev| ev.add_secret(a.event_id, a.secret.map(|s| s.uuid)));
                if let Err(e) = client.ensure_secret_subscribed() {
                    client.with_events(|ev| ev.remove_secret(callback_id));
                    return Err(host_error(e));
                }
                Ok(CallbackIdRet { callback_id })
            })
        }
        P::ConnectSecretEventDeregisterAny => {
            call::<procs::ConnectSecretEventDeregisterAny>(payload, |a| {
                if client.with_events(|ev| ev.remove_secret(a.callback_id)) {
                    Ok(())
                } else {
                    Err(err(
                        error_code::INVALID_ARG,
                        error_domain::RPC,
                        format!("secret event callback {} not registered", a.callback_id),
                    ))
                }
            })
        }
        _ => return None,
    })
}

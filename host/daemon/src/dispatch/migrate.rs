//! Live migration (libvirt's version 3 protocol with typed parameters) and job abort.
//!
//! The client-driven flow (`virsh migrate DOM DESTURI`): the client calls Begin on the
//! source, Prepare on the destination, Perform on the source, Finish on the destination
//! and Confirm on the source, carrying the cookies and the destination's URI. The
//! peer-to-peer flow (`--p2p`): the client calls Perform on the source with the
//! destination's connection URI, and this daemon runs the same five steps itself, reaching
//! the destination through the host library's remote driver.

use super::{Failure, call, err, host_error, lookup, wire_domain};
use rvirt_host::backend::Backend;
use rvirt_host::{ConnectUri, Connection, Domain, TypedParam, TypedParamValue};
use rvirt_plugin_api::migrate as flag;
use rvirt_wire::RemoteProcedure as P;
use rvirt_wire::procs;
use rvirt_wire::protocol::{error_code, error_domain};
use rvirt_wire::remote::*;

/// Answers one migration or job procedure.
pub(super) fn dispatch(conn: &Connection, procedure: P, payload: &[u8]) -> super::CallResult {
    match procedure {
        P::DomainMigrateBegin3Params => call::<procs::DomainMigrateBegin3Params>(payload, |a| {
            let (xml, cookie_out) = lookup(conn, &a.dom)?
                .migrate_begin(&a.params, a.flags)
                .map_err(host_error)?;
            Ok(DomainMigrateBegin3ParamsRet { cookie_out, xml })
        }),
        P::DomainMigratePrepare3Params => {
            call::<procs::DomainMigratePrepare3Params>(payload, |a| {
                let (uri_out, cookie_out) = conn
                    .migrate_prepare(&a.params, &a.cookie_in, a.flags)
                    .map_err(host_error)?;
                Ok(DomainMigratePrepare3Ret {
                    cookie_out,
                    uri_out,
                })
            })
        }
        P::DomainMigratePerform3Params => {
            call::<procs::DomainMigratePerform3Params>(payload, |a| {
                let dom = lookup(conn, &a.dom)?;
                if a.flags & flag::PEER2PEER != 0 {
                    let dconnuri = a.dconnuri.as_deref().unwrap_or_default();
                    peer_to_peer(&dom, dconnuri, a.params, a.flags)?;
                    return Ok(DomainMigratePerform3ParamsRet::default());
                }
                let cookie_out = dom
                    .migrate_perform(&a.params, &a.cookie_in, a.flags)
                    .map_err(host_error)?;
                Ok(DomainMigratePerform3ParamsRet { cookie_out })
            })
        }
        P::DomainMigrateFinish3Params => call::<procs::DomainMigrateFinish3Params>(payload, |a| {
            let (dom, cookie_out) = conn
                .migrate_finish(&a.params, &a.cookie_in, a.flags, a.cancelled != 0)
                .map_err(host_error)?;
            Ok(DomainMigrateFinish3ParamsRet {
                dom: wire_domain(&dom),
                cookie_out,
            })
        }),
        P::DomainMigrateConfirm3Params => {
            call::<procs::DomainMigrateConfirm3Params>(payload, |a| {
                lookup(conn, &a.dom)?
                    .migrate_confirm(&a.params, &a.cookie_in, a.flags, a.cancelled != 0)
                    .map_err(host_error)
            })
        }
        P::DomainAbortJob => call::<procs::DomainAbortJob>(payload, |a| {
            lookup(conn, &a.dom)?.abort_job(0).map_err(host_error)
        }),
        other => Err(err(
            error_code::INTERNAL_ERROR,
            error_domain::RPC,
            format!("procedure {} is not a migration procedure", other.name()),
        )),
    }
}

/// Sets the string parameter `field` of `params` to `value` (replacing it when present).
fn set_param(params: &mut Vec<TypedParam>, field: &str, value: String) {
    params.retain(|p| p.field != field);
    params.push(TypedParam {
        field: field.to_string(),
        value: TypedParamValue::String(value),
    });
}

/// The peer-to-peer flow: this daemon, as the source, drives the destination at
/// `dconnuri` through the remote driver. A failure after the destination prepared
/// cancels it there (Finish with `cancelled`) and resumes the domain here (Confirm with
/// `cancelled`), so the guest keeps running on the source.
fn peer_to_peer(
    dom: &Domain,
    dconnuri: &str,
    mut params: Vec<TypedParam>,
    flags: u32,
) -> Result<(), Failure> {
    if dconnuri.is_empty() {
        return Err(err(
            error_code::INVALID_ARG,
            error_domain::DOMAIN,
            "invalid argument: peer-to-peer migration needs the destination's connection URI",
        ));
    }
    let uri = ConnectUri::parse(dconnuri).map_err(|e| {
        err(
            error_code::INVALID_ARG,
            error_domain::DOMAIN,
            format!("invalid argument: destination URI '{dconnuri}': {e}"),
        )
    })?;
    if !uri.is_remote() {
        return Err(err(
            error_code::INVALID_ARG,
            error_domain::DOMAIN,
            format!(
                "invalid argument: destination URI '{dconnuri}' names no remote daemon (use a transport, e.g. qemu+unix:///system?socket=PATH)"
            ),
        ));
    }
    let dest = rvirt_host::remote::open(&uri, false).map_err(|e| {
        err(
            error_code::OPERATION_FAILED,
            error_domain::DOMAIN,
            format!("operation failed: cannot connect to the destination '{dconnuri}': {e}"),
        )
    })?;
    let dest_flags = flags & !flag::PEER2PEER;
    let (xml, cookie) = dom.migrate_begin(&params, dest_flags).map_err(host_error)?;
    if !params.iter().any(|p| p.field == flag::PARAM_DEST_XML) {
        set_param(&mut params, flag::PARAM_DEST_XML, xml);
    }
    let (uri_out, cookie) = dest
        .migrate_prepare(&params, &cookie, dest_flags)
        .map_err(host_error)?;
    if let Some(u) = uri_out {
        set_param(&mut params, flag::PARAM_URI, u);
    }
    let performed = dom.migrate_perform(&params, &cookie, dest_flags);
    let cancelled = performed.is_err();
    let cookie = performed.as_ref().cloned().unwrap_or_default();
    let finished = dest.migrate_finish(&params, &cookie, dest_flags, cancelled);
    let confirm_cancelled = cancelled || finished.is_err();
    let confirmed = dom.migrate_confirm(
        &params,
        finished.as_ref().map(|f| f.1.as_slice()).unwrap_or(&[]),
        dest_flags,
        confirm_cancelled,
    );
    performed.map_err(host_error)?;
    finished.map_err(host_error)?;
    confirmed.map_err(host_error)
}

//! `REMOTE_PROGRAM` calls: decode the arguments, run the driver call, encode the reply.
//!
//! Everything here is synchronous and may block in a driver. [`is_inline`] names the
//! calls that never touch a driver (answered by the connection's task), [`is_quick`] the
//! queries and [`is_short_change`] definition changes (placed by `placement.rs`: on the I/O
//! worker, or under `block_in_place` once seen slow), and the rest runs on the blocking
//! pool.

use crate::client::Client;
use crate::served::ServedError;
use rvirt_host::{Connection, Domain, DomainId};
use rvirt_wire::protocol::{
    self, NonnullDomain, RemoteError, auth, error_code, error_domain, event_id, feature,
};
use rvirt_wire::remote::*;
use rvirt_wire::{Access, Header, Procedure, RemoteProcedure as P, Status, frame, procs, xdr};

mod migrate;
mod networks;
mod screenshot;
mod secrets;
mod storage;

/// `VIR_CONNECT_LIST_DOMAINS_ACTIVE`.
const LIST_ACTIVE: u32 = 1;
/// `VIR_CONNECT_LIST_DOMAINS_INACTIVE`.
const LIST_INACTIVE: u32 = 2;
/// `VIR_DOMAIN_XML_SECURE`.
const XML_SECURE: u32 = 1;

/// A failed call: the `remote_error` to send (boxed: it is large and errors are rare).
pub type Failure = Box<RemoteError>;

fn err(code: i32, domain: i32, message: impl Into<String>) -> Failure {
    Box::new(RemoteError::new(code, domain, message))
}

type CallResult = Result<Vec<u8>, Failure>;

/// Answers one CALL of `REMOTE_PROGRAM`; returns the whole reply frame.
pub fn handle_call(client: &Client, header: &Header, payload: &[u8]) -> Vec<u8> {
    let started = crate::metrics::enabled().then(std::time::Instant::now);
    let procedure = P::from_number(header.procedure);
    let result = match procedure {
        Some(procedure) => dispatch(client, procedure, header.serial, payload),
        None => Err(unsupported(header.procedure)),
    };
    if let Some(t0) = started {
        crate::metrics::record_call(
            procedure.map_or("unknown", P::name),
            procedure.map(P::number),
            result.is_ok(),
            t0.elapsed(),
        );
    }
    let encoded = match result {
        Ok(ret) => frame::encode_raw(&header.reply(Status::Ok), &ret),
        Err(err) => {
            tracing::debug!(
                client = client.id,
                procedure = header.procedure,
                "call failed: {err}"
            );
            frame::encode(&header.reply(Status::Error), &err)
        }
    };
    encoded.unwrap_or_else(|e| {
        let err = rpc_error(format!(
            "cannot encode the reply to procedure {}: {e}",
            header.procedure
        ));
        frame::encode(&header.reply(Status::Error), &err).unwrap_or_default()
    })
}

/// Calls answered without any driver call (safe on the I/O task).
pub fn is_inline(procedure: i32) -> bool {
    matches!(
        P::from_number(procedure),
        Some(
            P::AuthList
                | P::ConnectSupportsFeature
                | P::ConnectIsSecure
                | P::ConnectRegisterCloseCallback
                | P::ConnectUnregisterCloseCallback
                | P::NodeGetSecurityModel
                | P::DomainGetSecurityLabel
        )
    ) || P::from_number(procedure).is_none()
}

/// Calls that reach a driver but are expected to return quickly (queries: libvirt's
/// high-priority calls). Everything else, state changes first, runs on the pool.
pub fn is_quick(procedure: i32) -> bool {
    P::from_number(procedure).is_some_and(|p| {
        p.access() == Access::ReadOnly && !matches!(p, P::ConnectOpen | P::ConnectClose)
    })
}

/// State changes that only touch a definition (parse, validate, store: no guest is
/// started or stopped): `define` and `undefine` of a domain. Their own work is a few tens
/// of microseconds on the test driver, less than handing them to the blocking pool and
/// the reply back (four thread switches a call), so they are placed as queries are
/// (`placement.rs`): on the I/O worker unless the procedure was seen to be slow (a driver
/// that writes and syncs a file on a slow disk, a hook script) or a call is stuck there.
pub fn is_short_change(procedure: i32) -> bool {
    matches!(
        P::from_number(procedure),
        Some(
            P::DomainDefineXml
                | P::DomainDefineXmlFlags
                | P::DomainUndefine
                | P::DomainUndefineFlags
        )
    )
}

/// Whether a read-only connection may make this call. Decided by the procedure table's
/// `#[ro]` marks ([`P::access`]), so a procedure nobody classified is refused; a few
/// read-only procedures are refused for some arguments too (secrets).
fn read_only_refusal(procedure: P, payload: &[u8]) -> Option<Failure> {
    let denied = |what: &str| {
        Some(err(
            error_code::OPERATION_DENIED,
            error_domain::DOMAIN,
            format!("operation forbidden: read only access prevents {what}"),
        ))
    };
    if procedure.access() != Access::ReadOnly {
        return denied(procedure.name());
    }
    if procedure == P::DomainSnapshotGetXmlDesc
        && let Ok(a) = xdr::from_bytes::<DomainSnapshotFlagsArgs>(payload)
        && a.flags & XML_SECURE != 0
    {
        return denied("virDomainSnapshotGetXMLDesc with the secure flag");
    }
    if procedure == P::DomainSaveImageGetXmlDesc
        && let Ok(a) = xdr::from_bytes::<DomainSaveImageGetXmlDescArgs>(payload)
        && a.flags & rvirt_host::SAVE_IMAGE_XML_SECURE != 0
    {
        return denied("virDomainSaveImageGetXMLDesc with the secure flag");
    }
    if procedure == P::DomainGetXmlDesc {
        // VIR_DOMAIN_XML_SECURE: the XML with passwords and keys, as libvirt refuses it
        // to read-only connections. Undecodable arguments fail later, in the call.
        if let Ok(a) = xdr::from_bytes::<DomainFlagsArgs>(payload)
            && a.flags & XML_SECURE != 0
        {
            return denied("virDomainGetXMLDesc with the secure flag");
        }
    }
    None
}

/// Procedures allowed before CONNECT_OPEN.
fn allowed_before_open(procedure: P) -> bool {
    matches!(
        procedure,
        P::AuthList | P::ConnectSupportsFeature | P::ConnectOpen | P::ConnectClose
    )
}

/// `VIR_ERR_NO_SUPPORT` for a procedure this daemon does not implement.
pub fn unsupported(procedure: i32) -> Failure {
    err(
        error_code::NO_SUPPORT,
        error_domain::RPC,
        format!(
            "this function is not supported by the connection driver: rvirtd does not implement procedure {procedure}"
        ),
    )
}

/// `VIR_ERR_NO_SUPPORT` for a known procedure this daemon does not serve, naming it.
pub fn unsupported_named(procedure: P) -> Failure {
    err(
        error_code::NO_SUPPORT,
        error_domain::RPC,
        format!(
            "this function is not supported by the connection driver: rvirtd does not implement {} (procedure {})",
            procedure.name(),
            procedure.number()
        ),
    )
}

/// `VIR_ERR_RPC`.
pub fn rpc_error(message: String) -> Failure {
    err(error_code::RPC, error_domain::RPC, message)
}

fn host_error(e: rvirt_host::Error) -> Failure {
    err(e.code(), e.domain(), e.to_string())
}

/// Decodes `P::Args`, runs `f`, encodes `P::Ret`.
fn call<Proc: Procedure>(
    payload: &[u8],
    f: impl FnOnce(Proc::Args) -> Result<Proc::Ret, Failure>,
) -> CallResult {
    let args: Proc::Args = xdr::from_bytes(payload).map_err(|e| {
        rpc_error(format!(
            "cannot decode the arguments of procedure {} ({}): {e}",
            Proc::PROC.number(),
            Proc::PROC.name()
        ))
    })?;
    let ret = f(args)?;
    xdr::to_vec(&ret).map_err(|e| {
        rpc_error(format!(
            "cannot encode the result of procedure {}: {e}",
            Proc::PROC.number()
        ))
    })
}

fn wire_domain(d: &Domain) -> NonnullDomain {
    NonnullDomain {
        name: d.name().to_string(),
        uuid: *d.uuid().as_bytes(),
        id: d.id(),
    }
}

fn dom_ret(d: Result<Domain, rvirt_host::Error>) -> Result<DomainRet, Failure> {
    d.map(|d| DomainRet {
        dom: wire_domain(&d),
    })
    .map_err(host_error)
}

/// The domain a client's handle names. No driver call: the driver resolves the UUID when
/// the operation runs and answers `VIR_ERR_NO_DOMAIN` if it is gone.
fn lookup(conn: &Connection, dom: &NonnullDomain) -> Result<Domain, Failure> {
    Ok(conn.domain_handle(DomainId {
        name: dom.name.clone(),
        uuid: uuid::Uuid::from_bytes(dom.uuid),
        id: dom.id,
    }))
}

/// `DOMAIN_OPEN_CONSOLE`: resolves the device's pty in the live XML, opens it and
/// registers the session's stream under the call's serial; it runs once the reply is out.
fn open_console(client: &Client, conn: &Connection, serial: u32, payload: &[u8]) -> CallResult {
    call::<procs::DomainOpenConsole>(payload, |a| {
        crate::console::check_flags(a.flags)?;
        let dom = lookup(conn, &a.dom)?;
        if !dom.is_active().map_err(host_error)? {
            return Err(err(
                error_code::OPERATION_INVALID,
                error_domain::DOMAIN,
                "Requested operation is not valid: domain is not running",
            ));
        }
        let xml = dom.get_xml_desc(0).map_err(host_error)?;
        let path = crate::console::find_pty(&xml, a.dev_name.as_deref())?;
        let driver = conn.driver_name();
        let owner = rvirt_sdk::console::owner_tag(driver, &dom.uuid());
        crate::console::check_owner(&path, &owner, dom.name(), driver)?;
        let console = crate::console::open(&path, a.flags & crate::console::FORCE != 0)?;
        tracing::debug!(client = client.id, domain = %dom.name(), %path, "console opened");
        client
            .with_streams(|s| {
                s.register(
                    serial,
                    P::DomainOpenConsole.number(),
                    crate::streams::Opened::Console(console),
                )
            })
            .map_err(rpc_error)
    })
}

/// A snapshot handle named `name` of the domain the call named.
fn snap_ret(name: String, dom: NonnullDomain) -> DomainSnapshotRet {
    DomainSnapshotRet {
        snap: protocol::NonnullDomainSnapshot { name, dom },
    }
}

/// `virDomainListAllSnapshots`' answer: the handles when asked for, and their count.
fn snap_list(names: Vec<String>, dom: &NonnullDomain, need_results: i32) -> DomainSnapshotListRet {
    let ret = i32::try_from(names.len()).unwrap_or(i32::MAX);
    let snapshots = if need_results != 0 {
        names
            .into_iter()
            .map(|name| protocol::NonnullDomainSnapshot {
                name,
                dom: dom.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    DomainSnapshotListRet { snapshots, ret }
}

/// The first `maxnames` names (the old `*ListNames` calls); a negative count is libvirt's
/// invalid-argument error.
fn truncated(mut names: Vec<String>, maxnames: i32) -> Result<Vec<String>, Failure> {
    let max = usize::try_from(maxnames).map_err(|_| {
        err(
            error_code::INVALID_ARG,
            error_domain::RPC,
            format!("maxnames must be positive, got {maxnames}"),
        )
    })?;
    names.truncate(max);
    Ok(names)
}

fn int(b: bool) -> i32 {
    i32::from(b)
}

fn dispatch(client: &Client, procedure: P, serial: u32, payload: &[u8]) -> CallResult {
    // one look at the client's state (no clone of its connection: the procedure takes its own)
    let (open, read_only) = client.open_and_read_only();
    if !open && !allowed_before_open(procedure) {
        return Err(err(
            error_code::INTERNAL_ERROR,
            error_domain::RPC,
            "connection not open",
        ));
    }
    if read_only && let Some(refusal) = read_only_refusal(procedure, payload) {
        return Err(refusal);
    }
    // access policies and hooks (`access.rs`); a pointer test when none is loaded
    #[cfg(feature = "policy")]
    if let Some(guard) = crate::access::Guard::new(client, procedure) {
        return guard.run(payload, &|p, payload| {
            dispatch_procedure(client, p, serial, payload)
        });
    }
    dispatch_procedure(client, procedure, serial, payload)
}

/// Runs one procedure (the checks of [`dispatch`] passed).
fn dispatch_procedure(client: &Client, procedure: P, serial: u32, payload: &[u8]) -> CallResult {
    let conn = client.connection();
    // `conn` is Some for every procedure past the check above except these four
    let c = || {
        conn.as_ref().ok_or_else(|| {
            err(
                error_code::INTERNAL_ERROR,
                error_domain::RPC,
                "connection not open",
            )
        })
    };
    match procedure {
        P::AuthList => call::<procs::AuthList>(payload, |()| {
            Ok(AuthListRet {
                types: vec![auth::NONE],
            })
        }),
        P::ConnectSupportsFeature => call::<procs::ConnectSupportsFeature>(payload, |a| {
            let supported = match a.feature {
                feature::PROGRAM_KEEPALIVE => {
                    client.enable_keepalive();
                    true
                }
                feature::REMOTE_EVENT_CALLBACK
                | feature::REMOTE_CLOSE_CALLBACK
                | feature::TYPED_PARAM_STRING => true,
                // migration: the calls reach the driver, which answers no-support when it
                // does not migrate
                feature::MIGRATION_V3 | feature::MIGRATION_PARAMS | feature::MIGRATION_P2P => true,
                // rvirtd asks its plugin host processes whether a connection owns its
                // storage and networks (plugin API 1.10), to route those calls there
                rvirt_host::backend::feature::OWNED_STORAGE => c().is_ok_and(|c| c.owns_storage()),
                rvirt_host::backend::feature::OWNED_NETWORKS => {
                    c().is_ok_and(|c| c.owns_networks())
                }
                _ => false,
            };
            Ok(ConnectSupportsFeatureRet {
                supported: int(supported),
            })
        }),
        P::ConnectOpen => call::<procs::ConnectOpen>(payload, |a| open(client, a)),
        P::ConnectClose => call::<procs::ConnectClose>(payload, |()| {
            client.close();
            Ok(())
        }),
        P::ConnectGetType => call::<procs::ConnectGetType>(payload, |()| {
            Ok(ConnectGetTypeRet {
                r#type: c()?.get_type().map_err(host_error)?,
            })
        }),
        P::ConnectGetVersion => call::<procs::ConnectGetVersion>(payload, |()| {
            Ok(ConnectGetVersionRet {
                hv_ver: c()?.get_version().map_err(host_error)?,
            })
        }),
        P::ConnectGetLibVersion => call::<procs::ConnectGetLibVersion>(payload, |()| {
            Ok(ConnectGetLibVersionRet {
                lib_ver: c()?.get_lib_version().map_err(host_error)?,
            })
        }),
        P::ConnectGetHostname => call::<procs::ConnectGetHostname>(payload, |()| {
            Ok(ConnectGetHostnameRet {
                hostname: c()?.get_hostname().map_err(host_error)?,
            })
        }),
        P::ConnectGetUri => call::<procs::ConnectGetUri>(payload, |()| {
            Ok(ConnectGetUriRet {
                uri: c()?.get_uri().map_err(host_error)?,
            })
        }),
        P::ConnectGetCapabilities => call::<procs::ConnectGetCapabilities>(payload, |()| {
            Ok(ConnectGetCapabilitiesRet {
                capabilities: c()?.get_capabilities().map_err(host_error)?,
            })
        }),
        P::ConnectDomainXmlFromNative => call::<procs::ConnectDomainXmlFromNative>(payload, |a| {
            let domain_xml = c()?
                .domain_xml_from_native(&a.native_format, &a.native_config, a.flags)
                .map_err(host_error)?;
            Ok(ConnectDomainXmlFromNativeRet { domain_xml })
        }),
        P::ConnectDomainXmlToNative => call::<procs::ConnectDomainXmlToNative>(payload, |a| {
            let native_config = c()?
                .domain_xml_to_native(&a.native_format, &a.domain_xml, a.flags)
                .map_err(host_error)?;
            Ok(ConnectDomainXmlToNativeRet { native_config })
        }),
        P::ConnectIsSecure => call::<procs::ConnectIsSecure>(payload, |()| {
            Ok(ConnectIsSecureRet {
                secure: i32::from(!client.peer.insecure),
            })
        }),
        P::NodeGetInfo => call::<procs::NodeGetInfo>(payload, |()| {
            let n = c()?.node_get_info().map_err(host_error)?;
            let i = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
            Ok(NodeGetInfoRet {
                model: protocol::to_char_array(&n.model),
                memory: n.memory_kib,
                cpus: i(n.cpus),
                mhz: i(n.mhz),
                nodes: i(n.nodes),
                sockets: i(n.sockets),
                cores: i(n.cores),
                threads: i(n.threads),
            })
        }),
        P::NodeGetSecurityModel => {
            call::<procs::NodeGetSecurityModel>(
                payload,
                |()| Ok(NodeGetSecurityModelRet::default()),
            )
        }
        P::ConnectRegisterCloseCallback => {
            call::<procs::ConnectRegisterCloseCallback>(payload, |()| {
                client.set_close_callback(true);
                Ok(())
            })
        }
        P::ConnectUnregisterCloseCallback => {
            call::<procs::ConnectUnregisterCloseCallback>(payload, |()| {
                client.set_close_callback(false);
                Ok(())
            })
        }
        P::ConnectListAllDomains => call::<procs::ConnectListAllDomains>(payload, |a| {
            let doms = c()?.list_all_domains(a.flags).map_err(host_error)?;
            if doms.len() > protocol::DOMAIN_LIST_MAX {
                return Err(rpc_error(format!(
                    "too many domains: {} (at most {})",
                    doms.len(),
                    protocol::DOMAIN_LIST_MAX
                )));
            }
            let ret = doms.len() as u32;
            let domains = if a.need_results != 0 {
                doms.iter().map(wire_domain).collect()
            } else {
                Vec::new()
            };
            Ok(ConnectListAllDomainsRet { domains, ret })
        }),
        P::ConnectNumOfDomains => call::<procs::ConnectNumOfDomains>(payload, |()| {
            Ok(NumRet {
                num: c()?
                    .list_all_domains(LIST_ACTIVE)
                    .map_err(host_error)?
                    .len() as i32,
            })
        }),
        P::ConnectNumOfDefinedDomains => call::<procs::ConnectNumOfDefinedDomains>(payload, |()| {
            Ok(NumRet {
                num: c()?
                    .list_all_domains(LIST_INACTIVE)
                    .map_err(host_error)?
                    .len() as i32,
            })
        }),
        P::ConnectListDomains => call::<procs::ConnectListDomains>(payload, |a| {
            let max = list_max(a.maxids)?;
            let doms = c()?.list_all_domains(LIST_ACTIVE).map_err(host_error)?;
            Ok(ConnectListDomainsRet {
                ids: doms.iter().map(Domain::id).take(max).collect(),
            })
        }),
        P::ConnectListDefinedDomains => call::<procs::ConnectListDefinedDomains>(payload, |a| {
            let max = list_max(a.maxnames)?;
            let doms = c()?.list_all_domains(LIST_INACTIVE).map_err(host_error)?;
            Ok(ConnectListDefinedDomainsRet {
                names: doms
                    .iter()
                    .map(|d| d.name().to_string())
                    .take(max)
                    .collect(),
            })
        }),
        P::DomainLookupById => {
            call::<procs::DomainLookupById>(payload, |a| dom_ret(c()?.lookup_domain_by_id(a.id)))
        }
        P::DomainLookupByName => call::<procs::DomainLookupByName>(payload, |a| {
            dom_ret(c()?.lookup_domain_by_name(&a.name))
        }),
        P::DomainLookupByUuid => call::<procs::DomainLookupByUuid>(payload, |a| {
            dom_ret(c()?.lookup_domain_by_uuid(uuid::Uuid::from_bytes(a.uuid)))
        }),
        P::DomainDefineXml => {
            call::<procs::DomainDefineXml>(payload, |a| dom_ret(c()?.define_xml(&a.xml, 0)))
        }
        // the version 3 flow without typed parameters is not served: virsh uses the
        // *_PARAMS procedures (answered by `migrate`) when the daemon offers
        // VIR_DRV_FEATURE_MIGRATION_PARAMS
        P::DomainMigratePrepare3 => call::<procs::DomainMigratePrepare3>(payload, |_| {
            Err::<DomainMigratePrepare3Ret, _>(no_migration(c()?, "virDomainMigratePrepare3"))
        }),
        // migration (plugin API 1.9): after the access checks and the migrate hook
        P::DomainMigratePrepare3Params
        | P::DomainMigrateBegin3Params
        | P::DomainMigratePerform3Params
        | P::DomainMigrateFinish3Params
        | P::DomainMigrateConfirm3Params
        | P::DomainAbortJob => migrate::dispatch(c()?, procedure, payload),
        P::DomainDefineXmlFlags => call::<procs::DomainDefineXmlFlags>(payload, |a| {
            dom_ret(c()?.define_xml(&a.xml, a.flags))
        }),
        P::DomainCreateXml => call::<procs::DomainCreateXml>(payload, |a| {
            dom_ret(c()?.create_xml(&a.xml_desc, a.flags))
        }),
        P::DomainCreate => call::<procs::DomainCreate>(payload, |a| {
            lookup(c()?, &a.dom)?.create(0).map_err(host_error)
        }),
        P::DomainCreateWithFlags => call::<procs::DomainCreateWithFlags>(payload, |a| {
            let mut d = lookup(c()?, &a.dom)?;
            d.create(a.flags).map_err(host_error)?;
            Ok(DomainRet {
                dom: wire_domain(&d),
            })
        }),
        P::DomainUndefine => call::<procs::DomainUndefine>(payload, |a| {
            lookup(c()?, &a.dom)?.undefine(0).map_err(host_error)
        }),
        P::DomainUndefineFlags => call::<procs::DomainUndefineFlags>(payload, |a| {
            lookup(c()?, &a.dom)?.undefine(a.flags).map_err(host_error)
        }),
        P::DomainDestroy => call::<procs::DomainDestroy>(payload, |a| {
            lookup(c()?, &a.dom)?.destroy(0).map_err(host_error)
        }),
        P::DomainDestroyFlags => call::<procs::DomainDestroyFlags>(payload, |a| {
            lookup(c()?, &a.dom)?.destroy(a.flags).map_err(host_error)
        }),
        P::DomainShutdown => call::<procs::DomainShutdown>(payload, |a| {
            lookup(c()?, &a.dom)?.shutdown(0).map_err(host_error)
        }),
        P::DomainShutdownFlags => call::<procs::DomainShutdownFlags>(payload, |a| {
            lookup(c()?, &a.dom)?.shutdown(a.flags).map_err(host_error)
        }),
        P::DomainReboot => call::<procs::DomainReboot>(payload, |a| {
            lookup(c()?, &a.dom)?.reboot(a.flags).map_err(host_error)
        }),
        P::DomainSuspend => call::<procs::DomainSuspend>(payload, |a| {
            lookup(c()?, &a.dom)?.suspend().map_err(host_error)
        }),
        P::DomainResume => call::<procs::DomainResume>(payload, |a| {
            lookup(c()?, &a.dom)?.resume().map_err(host_error)
        }),
        P::DomainGetInfo => call::<procs::DomainGetInfo>(payload, |a| {
            let i = lookup(c()?, &a.dom)?.get_info().map_err(host_error)?;
            Ok(DomainGetInfoRet {
                state: u8::try_from(i.state.as_i32()).unwrap_or(0),
                max_mem: i.max_mem_kib,
                memory: i.memory_kib,
                nr_virt_cpu: u16::try_from(i.nr_virt_cpu).unwrap_or(u16::MAX),
                cpu_time: i.cpu_time_ns,
            })
        }),
        P::DomainGetState => call::<procs::DomainGetState>(payload, |a| {
            let (state, reason) = lookup(c()?, &a.dom)?.get_state().map_err(host_error)?;
            Ok(DomainGetStateRet {
                state: state.as_i32(),
                reason,
            })
        }),
        P::DomainGetXmlDesc => call::<procs::DomainGetXmlDesc>(payload, |a| {
            Ok(DomainGetXmlDescRet {
                xml: lookup(c()?, &a.dom)?
                    .get_xml_desc(a.flags)
                    .map_err(host_error)?,
            })
        }),
        P::DomainInterfaceAddresses => call::<procs::DomainInterfaceAddresses>(payload, |a| {
            let conn = c()?;
            let dom = lookup(conn, &a.dom)?;
            interface_addresses(conn, &dom, a.source, a.flags)
        }),
        P::DomainIsActive => call::<procs::DomainIsActive>(payload, |a| {
            Ok(DomainIsActiveRet {
                active: int(lookup(c()?, &a.dom)?.is_active().map_err(host_error)?),
            })
        }),
        P::DomainIsPersistent => call::<procs::DomainIsPersistent>(payload, |a| {
            Ok(DomainIsPersistentRet {
                persistent: int(lookup(c()?, &a.dom)?.is_persistent().map_err(host_error)?),
            })
        }),
        P::DomainGetOsType => call::<procs::DomainGetOsType>(payload, |a| {
            Ok(DomainGetOsTypeRet {
                r#type: lookup(c()?, &a.dom)?.get_os_type().map_err(host_error)?,
            })
        }),
        P::DomainGetAutostart => call::<procs::DomainGetAutostart>(payload, |a| {
            Ok(DomainGetAutostartRet {
                autostart: int(lookup(c()?, &a.dom)?.get_autostart().map_err(host_error)?),
            })
        }),
        P::DomainSetAutostart => call::<procs::DomainSetAutostart>(payload, |a| {
            lookup(c()?, &a.dom)?
                .set_autostart(a.autostart != 0)
                .map_err(host_error)
        }),
        P::DomainHasManagedSaveImage => call::<procs::DomainHasManagedSaveImage>(payload, |a| {
            let has = lookup(c()?, &a.dom)?
                .has_managed_save_image(a.flags)
                .map_err(host_error)?;
            Ok(DomainHasManagedSaveImageRet { result: int(has) })
        }),
        P::DomainGetMaxMemory => call::<procs::DomainGetMaxMemory>(payload, |a| {
            Ok(DomainGetMaxMemoryRet {
                memory: lookup(c()?, &a.dom)?.get_max_memory().map_err(host_error)?,
            })
        }),
        P::DomainGetMaxVcpus => call::<procs::DomainGetMaxVcpus>(payload, |a| {
            let n = lookup(c()?, &a.dom)?
                .get_vcpus_flags(rvirt_host::VCPU_MAXIMUM)
                .map_err(host_error)?;
            Ok(NumRet { num: n })
        }),
        P::DomainGetVcpusFlags => call::<procs::DomainGetVcpusFlags>(payload, |a| {
            Ok(NumRet {
                num: lookup(c()?, &a.dom)?
                    .get_vcpus_flags(a.flags)
                    .map_err(host_error)?,
            })
        }),
        // memory and vCPU counts, devices (plugin API 1.7); the flag-less calls are libvirt's
        // live changes
        P::DomainSetMemory => call::<procs::DomainSetMemory>(payload, |a| {
            lookup(c()?, &a.dom)?
                .set_memory_flags(a.memory, rvirt_host::AFFECT_LIVE)
                .map_err(host_error)
        }),
        P::DomainSetMaxMemory => call::<procs::DomainSetMaxMemory>(payload, |a| {
            lookup(c()?, &a.dom)?
                .set_memory_flags(a.memory, rvirt_host::MEM_MAXIMUM)
                .map_err(host_error)
        }),
        P::DomainSetMemoryFlags => call::<procs::DomainSetMemoryFlags>(payload, |a| {
            lookup(c()?, &a.dom)?
                .set_memory_flags(a.memory, a.flags)
                .map_err(host_error)
        }),
        P::DomainSetMemoryStatsPeriod => call::<procs::DomainSetMemoryStatsPeriod>(payload, |a| {
            lookup(c()?, &a.dom)?
                .set_memory_stats_period(a.period, a.flags)
                .map_err(host_error)
        }),
        P::DomainSetVcpus => call::<procs::DomainSetVcpus>(payload, |a| {
            lookup(c()?, &a.dom)?
                .set_vcpus_flags(a.nvcpus, rvirt_host::AFFECT_LIVE)
                .map_err(host_error)
        }),
        P::DomainSetVcpusFlags => call::<procs::DomainSetVcpusFlags>(payload, |a| {
            lookup(c()?, &a.dom)?
                .set_vcpus_flags(a.nvcpus, a.flags)
                .map_err(host_error)
        }),
        P::DomainAttachDevice => call::<procs::DomainAttachDevice>(payload, |a| {
            lookup(c()?, &a.dom)?
                .attach_device(&a.xml, rvirt_host::AFFECT_LIVE)
                .map_err(host_error)
        }),
        P::DomainAttachDeviceFlags => call::<procs::DomainAttachDeviceFlags>(payload, |a| {
            lookup(c()?, &a.dom)?
                .attach_device(&a.xml, a.flags)
                .map_err(host_error)
        }),
        P::DomainDetachDevice => call::<procs::DomainDetachDevice>(payload, |a| {
            lookup(c()?, &a.dom)?
                .detach_device(&a.xml, rvirt_host::AFFECT_LIVE)
                .map_err(host_error)
        }),
        P::DomainDetachDeviceFlags => call::<procs::DomainDetachDeviceFlags>(payload, |a| {
            lookup(c()?, &a.dom)?
                .detach_device(&a.xml, a.flags)
                .map_err(host_error)
        }),
        // snapshots (plugin API 1.7)
        P::DomainSnapshotCreateXml => call::<procs::DomainSnapshotCreateXml>(payload, |a| {
            let name = lookup(c()?, &a.dom)?
                .snapshot_create_xml(&a.xml_desc, a.flags)
                .map_err(host_error)?;
            Ok(snap_ret(name, a.dom))
        }),
        P::DomainSnapshotGetXmlDesc => call::<procs::DomainSnapshotGetXmlDesc>(payload, |a| {
            let xml = lookup(c()?, &a.snap.dom)?
                .snapshot_xml(&a.snap.name, a.flags)
                .map_err(host_error)?;
            Ok(DomainSnapshotGetXmlDescRet { xml })
        }),
        P::DomainSnapshotNum => call::<procs::DomainSnapshotNum>(payload, |a| {
            let n = lookup(c()?, &a.dom)?
                .list_snapshots(a.flags)
                .map_err(host_error)?
                .len();
            Ok(NumRet {
                num: i32::try_from(n).unwrap_or(i32::MAX),
            })
        }),
        P::DomainSnapshotListNames => call::<procs::DomainSnapshotListNames>(payload, |a| {
            let names = lookup(c()?, &a.dom)?
                .list_snapshots(a.flags)
                .map_err(host_error)?;
            Ok(DomainSnapshotNamesRet {
                names: truncated(names, a.maxnames)?,
            })
        }),
        P::DomainListAllSnapshots => call::<procs::DomainListAllSnapshots>(payload, |a| {
            let names = lookup(c()?, &a.dom)?
                .list_snapshots(a.flags)
                .map_err(host_error)?;
            Ok(snap_list(names, &a.dom, a.need_results))
        }),
        P::DomainSnapshotLookupByName => call::<procs::DomainSnapshotLookupByName>(payload, |a| {
            lookup(c()?, &a.dom)?
                .snapshot_lookup(&a.name)
                .map_err(host_error)?;
            Ok(snap_ret(a.name, a.dom))
        }),
        P::DomainHasCurrentSnapshot => call::<procs::DomainHasCurrentSnapshot>(payload, |a| {
            let has = lookup(c()?, &a.dom)?
                .has_current_snapshot()
                .map_err(host_error)?;
            Ok(DomainHasCurrentSnapshotRet { result: int(has) })
        }),
        P::DomainSnapshotCurrent => call::<procs::DomainSnapshotCurrent>(payload, |a| {
            let name = lookup(c()?, &a.dom)?
                .snapshot_current(a.flags)
                .map_err(host_error)?;
            Ok(snap_ret(name, a.dom))
        }),
        P::DomainRevertToSnapshot => call::<procs::DomainRevertToSnapshot>(payload, |a| {
            lookup(c()?, &a.snap.dom)?
                .revert_to_snapshot(&a.snap.name, a.flags)
                .map_err(host_error)
        }),
        // save/restore and managed save (plugin API 1.8)
        P::DomainSave => call::<procs::DomainSave>(payload, |a| {
            lookup(c()?, &a.dom)?
                .save(&a.to, None, 0)
                .map_err(host_error)
        }),
        P::DomainSaveFlags => call::<procs::DomainSaveFlags>(payload, |a| {
            lookup(c()?, &a.dom)?
                .save(&a.to, a.dxml.as_deref(), a.flags)
                .map_err(host_error)
        }),
        P::DomainRestore => call::<procs::DomainRestore>(payload, |a| {
            c()?.restore(&a.from, None, 0).map_err(host_error)
        }),
        P::DomainRestoreFlags => call::<procs::DomainRestoreFlags>(payload, |a| {
            c()?.restore(&a.from, a.dxml.as_deref(), a.flags)
                .map_err(host_error)
        }),
        P::DomainSaveImageGetXmlDesc => call::<procs::DomainSaveImageGetXmlDesc>(payload, |a| {
            let xml = c()?.save_image_xml(&a.file, a.flags).map_err(host_error)?;
            Ok(DomainSaveImageGetXmlDescRet { xml })
        }),
        P::DomainSaveImageDefineXml => call::<procs::DomainSaveImageDefineXml>(payload, |a| {
            c()?.save_image_define_xml(&a.file, &a.dxml, a.flags)
                .map_err(host_error)
        }),
        P::DomainManagedSave => call::<procs::DomainManagedSave>(payload, |a| {
            lookup(c()?, &a.dom)?
                .managed_save(a.flags)
                .map_err(host_error)
        }),
        P::DomainManagedSaveRemove => call::<procs::DomainManagedSaveRemove>(payload, |a| {
            lookup(c()?, &a.dom)?
                .managed_save_remove(a.flags)
                .map_err(host_error)
        }),
        // statistics (plugin API 1.8)
        P::ConnectGetAllDomainStats => call::<procs::ConnectGetAllDomainStats>(payload, |a| {
            let conn = c()?;
            let doms = if a.doms.is_empty() {
                None
            } else {
                Some(
                    a.doms
                        .iter()
                        .map(|d| lookup(conn, d))
                        .collect::<Result<Vec<_>, _>>()?,
                )
            };
            let records = conn
                .get_all_domain_stats(doms, a.stats, a.flags)
                .map_err(host_error)?;
            Ok(ConnectGetAllDomainStatsRet {
                ret_stats: records
                    .into_iter()
                    .map(|(d, params)| DomainStatsRecord {
                        dom: wire_domain(&d),
                        params,
                    })
                    .collect(),
            })
        }),
        P::DomainBlockStats => call::<procs::DomainBlockStats>(payload, |a| {
            let p = lookup(c()?, &a.dom)?
                .block_stats(&a.path, 0)
                .map_err(host_error)?;
            let v = |i: usize| {
                rvirt_host::stats::signed_value_of(&p, rvirt_host::stats::BLOCK_STAT_NAMES[i])
            };
            Ok(DomainBlockStatsRet {
                rd_req: v(0),
                rd_bytes: v(1),
                wr_req: v(2),
                wr_bytes: v(3),
                errs: v(4),
            })
        }),
        P::DomainBlockStatsFlags => call::<procs::DomainBlockStatsFlags>(payload, |a| {
            let mut params = lookup(c()?, &a.dom)?
                .block_stats(&a.path, a.flags)
                .map_err(host_error)?;
            let n = i32::try_from(params.len()).unwrap_or(i32::MAX);
            if a.nparams == 0 {
                // libvirt's first step: how many there are
                return Ok(DomainBlockStatsFlagsRet {
                    params: Vec::new(),
                    nparams: n,
                });
            }
            params.truncate(usize::try_from(a.nparams).unwrap_or(0));
            let nparams = i32::try_from(params.len()).unwrap_or(i32::MAX);
            Ok(DomainBlockStatsFlagsRet { params, nparams })
        }),
        P::DomainInterfaceStats => call::<procs::DomainInterfaceStats>(payload, |a| {
            let p = lookup(c()?, &a.dom)?
                .interface_stats(&a.device)
                .map_err(host_error)?;
            let v = |i: usize| {
                rvirt_host::stats::signed_value_of(&p, rvirt_host::stats::INTERFACE_STAT_NAMES[i])
            };
            Ok(DomainInterfaceStatsRet {
                rx_bytes: v(0),
                rx_packets: v(1),
                rx_errs: v(2),
                rx_drop: v(3),
                tx_bytes: v(4),
                tx_packets: v(5),
                tx_errs: v(6),
                tx_drop: v(7),
            })
        }),
        P::DomainMemoryStats => call::<procs::DomainMemoryStats>(payload, |a| {
            let p = lookup(c()?, &a.dom)?
                .memory_stats(a.flags)
                .map_err(host_error)?;
            let stats = p
                .iter()
                .filter_map(|s| {
                    Some(DomainMemoryStat {
                        tag: rvirt_host::stats::memory_stat_tag(&s.field)?,
                        val: s.value.as_u64()?,
                    })
                })
                .take(usize::try_from(a.max_stats).unwrap_or(usize::MAX))
                .collect();
            Ok(DomainMemoryStatsRet { stats })
        }),
        P::DomainGetJobStats => call::<procs::DomainGetJobStats>(payload, |a| {
            let (kind, params) = lookup(c()?, &a.dom)?
                .job_stats(a.flags)
                .map_err(host_error)?;
            Ok(DomainGetJobStatsRet { kind, params })
        }),
        P::DomainGetJobInfo => call::<procs::DomainGetJobInfo>(payload, |a| {
            let (kind, p) = lookup(c()?, &a.dom)?.job_stats(0).map_err(host_error)?;
            let v =
                |i: usize| rvirt_host::stats::value_of(&p, rvirt_host::stats::JOB_INFO_NAMES[i]);
            Ok(DomainGetJobInfoRet {
                kind,
                time_elapsed: v(0),
                time_remaining: v(1),
                data_total: v(2),
                data_processed: v(3),
                data_remaining: v(4),
                mem_total: v(5),
                mem_processed: v(6),
                mem_remaining: v(7),
                file_total: v(8),
                file_processed: v(9),
                file_remaining: v(10),
            })
        }),
        P::DomainGetCpuStats => call::<procs::DomainGetCpuStats>(payload, |a| {
            let conn = c()?;
            if a.ncpus > DOMAIN_GET_CPU_STATS_NCPUS_MAX || a.start_cpu < -1 {
                return Err(err(
                    error_code::INVALID_ARG,
                    error_domain::RPC,
                    format!(
                        "invalid CPU range: start {} count {} (at most {})",
                        a.start_cpu, a.ncpus, DOMAIN_GET_CPU_STATS_NCPUS_MAX
                    ),
                ));
            }
            let dom = lookup(conn, &a.dom)?;
            if a.nparams == 0 && a.ncpus == 0 {
                // libvirt's "how many CPUs": the host's
                let cpus = conn.node_get_info().map_err(host_error)?.cpus;
                return Ok(DomainGetCpuStatsRet {
                    params: Vec::new(),
                    nparams: i32::try_from(cpus).unwrap_or(i32::MAX),
                });
            }
            let sets = dom
                .cpu_stats(a.start_cpu, a.ncpus, a.flags)
                .map_err(host_error)?;
            let per = sets.iter().map(Vec::len).max().unwrap_or(0);
            if a.nparams == 0 {
                return Ok(DomainGetCpuStatsRet {
                    params: Vec::new(),
                    nparams: i32::try_from(per).unwrap_or(i32::MAX),
                });
            }
            let stride = per.min(usize::try_from(a.nparams).unwrap_or(usize::MAX));
            let mut params = Vec::with_capacity(stride * sets.len());
            for set in sets {
                if set.len() < stride {
                    return Err(rpc_error(format!(
                        "a CPU has {} statistics where the others have {stride}",
                        set.len()
                    )));
                }
                params.extend(set.into_iter().take(stride));
            }
            Ok(DomainGetCpuStatsRet {
                params,
                nparams: i32::try_from(stride).unwrap_or(i32::MAX),
            })
        }),
        P::DomainSnapshotDelete => call::<procs::DomainSnapshotDelete>(payload, |a| {
            lookup(c()?, &a.snap.dom)?
                .snapshot_delete(&a.snap.name, a.flags)
                .map_err(host_error)
        }),
        P::DomainSnapshotGetParent => call::<procs::DomainSnapshotGetParent>(payload, |a| {
            let name = lookup(c()?, &a.snap.dom)?
                .snapshot_parent(&a.snap.name, a.flags)
                .map_err(host_error)?;
            Ok(snap_ret(name, a.snap.dom))
        }),
        P::DomainSnapshotNumChildren => call::<procs::DomainSnapshotNumChildren>(payload, |a| {
            let n = lookup(c()?, &a.snap.dom)?
                .snapshot_children(&a.snap.name, a.flags)
                .map_err(host_error)?
                .len();
            Ok(NumRet {
                num: i32::try_from(n).unwrap_or(i32::MAX),
            })
        }),
        P::DomainSnapshotListChildrenNames => {
            call::<procs::DomainSnapshotListChildrenNames>(payload, |a| {
                let names = lookup(c()?, &a.snap.dom)?
                    .snapshot_children(&a.snap.name, a.flags)
                    .map_err(host_error)?;
                Ok(DomainSnapshotNamesRet {
                    names: truncated(names, a.maxnames)?,
                })
            })
        }
        P::DomainSnapshotListAllChildren => {
            call::<procs::DomainSnapshotListAllChildren>(payload, |a| {
                let names = lookup(c()?, &a.snapshot.dom)?
                    .snapshot_children(&a.snapshot.name, a.flags)
                    .map_err(host_error)?;
                Ok(snap_list(names, &a.snapshot.dom, a.need_results))
            })
        }
        P::DomainSnapshotIsCurrent => call::<procs::DomainSnapshotIsCurrent>(payload, |a| {
            let current = lookup(c()?, &a.snap.dom)?
                .snapshot_is_current(&a.snap.name)
                .map_err(host_error)?;
            Ok(DomainSnapshotIsCurrentRet {
                current: int(current),
            })
        }),
        P::DomainSnapshotHasMetadata => call::<procs::DomainSnapshotHasMetadata>(payload, |a| {
            // every snapshot a plugin reports is one it keeps metadata for
            lookup(c()?, &a.snap.dom)?
                .snapshot_lookup(&a.snap.name)
                .map_err(host_error)?;
            Ok(DomainSnapshotHasMetadataRet { metadata: 1 })
        }),
        P::DomainGetSecurityLabel => call::<procs::DomainGetSecurityLabel>(payload, |_| {
            Ok(DomainGetSecurityLabelRet {
                label: Vec::new(),
                enforcing: 0,
            })
        }),
        P::ConnectDomainEventCallbackRegisterAny => call::<
            procs::ConnectDomainEventCallbackRegisterAny,
        >(payload, |a| {
            check_event_id(a.event_id)?;
            let callback_id = client.with_events(|ev| ev.add(a.event_id, a.dom.map(|d| d.uuid)));
            if let Err(e) = client.ensure_subscribed() {
                client.with_events(|ev| ev.remove(callback_id, false));
                return Err(host_error(e));
            }
            Ok(ConnectDomainEventCallbackRegisterAnyRet { callback_id })
        }),
        P::ConnectDomainEventCallbackDeregisterAny => {
            call::<procs::ConnectDomainEventCallbackDeregisterAny>(payload, |a| {
                if client.with_events(|ev| ev.remove(a.callback_id, false)) {
                    Ok(())
                } else {
                    Err(err(
                        error_code::INVALID_ARG,
                        error_domain::RPC,
                        format!("domain event callback {} not registered", a.callback_id),
                    ))
                }
            })
        }
        P::ConnectDomainEventRegister => call::<procs::ConnectDomainEventRegister>(payload, |()| {
            // the oldest API: lifecycle events as DOMAIN_EVENT_LIFECYCLE messages
            let added = client.with_events(|ev| ev.add_legacy(event_id::LIFECYCLE));
            if let Err(e) = client.ensure_subscribed() {
                if added {
                    client.with_events(|ev| ev.remove(event_id::LIFECYCLE, true));
                }
                return Err(host_error(e));
            }
            Ok(ConnectDomainEventRegisterRet { cb_registered: 1 })
        }),
        P::ConnectDomainEventDeregister => {
            call::<procs::ConnectDomainEventDeregister>(payload, |()| {
                client.with_events(|ev| ev.remove(event_id::LIFECYCLE, true));
                Ok(ConnectDomainEventRegisterRet { cb_registered: 0 })
            })
        }
        P::ConnectDomainEventRegisterAny => {
            call::<procs::ConnectDomainEventRegisterAny>(payload, |a| {
                check_event_id(a.event_id)?;
                if !client.with_events(|ev| ev.add_legacy(a.event_id)) {
                    return Err(err(
                        error_code::INTERNAL_ERROR,
                        error_domain::RPC,
                        format!("domain event {} already registered", a.event_id),
                    ));
                }
                if let Err(e) = client.ensure_subscribed() {
                    client.with_events(|ev| ev.remove(a.event_id, true));
                    return Err(host_error(e));
                }
                Ok(())
            })
        }
        P::ConnectDomainEventDeregisterAny => {
            call::<procs::ConnectDomainEventDeregisterAny>(payload, |a| {
                if client.with_events(|ev| ev.remove(a.event_id, true)) {
                    Ok(())
                } else {
                    Err(err(
                        error_code::INTERNAL_ERROR,
                        error_domain::RPC,
                        format!("domain event {} not registered", a.event_id),
                    ))
                }
            })
        }
        // event messages go from the daemon to clients, never the other way
        P::DomainEventLifecycle
        | P::DomainEventCallbackLifecycle
        | P::DomainEventCallbackDeviceRemoved => Err(unsupported(procedure.number())),
        // networks and their ports
        P::ConnectNumOfNetworks
        | P::ConnectNumOfDefinedNetworks
        | P::ConnectListNetworks
        | P::ConnectListDefinedNetworks
        | P::ConnectListAllNetworks
        | P::NetworkLookupByName
        | P::NetworkLookupByUuid
        | P::NetworkCreateXml
        | P::NetworkCreateXmlFlags
        | P::NetworkDefineXml
        | P::NetworkDefineXmlFlags
        | P::NetworkUndefine
        | P::NetworkCreate
        | P::NetworkDestroy
        | P::NetworkGetXmlDesc
        | P::NetworkGetBridgeName
        | P::NetworkGetAutostart
        | P::NetworkSetAutostart
        | P::NetworkIsActive
        | P::NetworkIsPersistent
        | P::NetworkUpdate
        | P::NetworkGetDhcpLeases
        | P::NetworkListAllPorts
        | P::NetworkPortLookupByUuid
        | P::NetworkPortCreateXml
        | P::NetworkPortGetXmlDesc
        | P::NetworkPortDelete
        | P::NetworkPortGetParameters
        | P::NetworkPortSetParameters
        | P::ConnectNetworkEventRegisterAny
        | P::ConnectNetworkEventDeregisterAny => {
            networks::dispatch(client, c()?, procedure, payload)
                .unwrap_or_else(|| Err(unsupported_named(procedure)))
        }
        P::NetworkEventLifecycle => Err(unsupported(procedure.number())),
        // secrets (values are never logged: see dispatch/secrets.rs)
        P::ConnectNumOfSecrets
        | P::ConnectListSecrets
        | P::SecretLookupByUuid
        | P::SecretDefineXml
        | P::SecretGetXmlDesc
        | P::SecretSetValue
        | P::SecretGetValue
        | P::SecretUndefine
        | P::SecretLookupByUsage
        | P::ConnectListAllSecrets
        | P::ConnectSecretEventRegisterAny
        | P::ConnectSecretEventDeregisterAny => secrets::dispatch(client, c()?, procedure, payload)
            .unwrap_or_else(|| Err(unsupported_named(procedure))),
        // a screenshot: the reply opens a download stream of the image
        P::DomainScreenshot => screenshot::open(client, c()?, serial, payload),
        // volume streams: the reply opens the stream (`streams.rs`)
        P::StorageVolUpload | P::StorageVolDownload => {
            storage::open_stream(client, c()?, procedure, serial, payload)
        }
        // consoles: the reply opens the stream (`console.rs`, `streams.rs`)
        P::DomainOpenConsole => open_console(client, c()?, serial, payload),
        // event messages go from the daemon to clients
        P::SecretEventLifecycle
        | P::SecretEventValueChanged
        | P::StoragePoolEventLifecycle
        | P::StoragePoolEventRefresh => Err(unsupported_named(procedure)),
        // storage pools and volumes
        P::ConnectNumOfStoragePools
        | P::ConnectListStoragePools
        | P::ConnectNumOfDefinedStoragePools
        | P::ConnectListDefinedStoragePools
        | P::ConnectFindStoragePoolSources
        | P::StoragePoolCreateXml
        | P::StoragePoolDefineXml
        | P::StoragePoolCreate
        | P::StoragePoolBuild
        | P::StoragePoolDestroy
        | P::StoragePoolDelete
        | P::StoragePoolUndefine
        | P::StoragePoolRefresh
        | P::StoragePoolLookupByName
        | P::StoragePoolLookupByUuid
        | P::StoragePoolLookupByVolume
        | P::StoragePoolGetInfo
        | P::StoragePoolGetXmlDesc
        | P::StoragePoolGetAutostart
        | P::StoragePoolSetAutostart
        | P::StoragePoolNumOfVolumes
        | P::StoragePoolListVolumes
        | P::StorageVolCreateXml
        | P::StorageVolDelete
        | P::StorageVolLookupByName
        | P::StorageVolLookupByKey
        | P::StorageVolLookupByPath
        | P::StorageVolGetInfo
        | P::StorageVolGetXmlDesc
        | P::StorageVolGetPath
        | P::StorageVolCreateXmlFrom
        | P::StoragePoolIsActive
        | P::StoragePoolIsPersistent
        | P::StorageVolWipe
        | P::StorageVolWipePattern
        | P::StorageVolResize
        | P::ConnectListAllStoragePools
        | P::StoragePoolListAllVolumes
        | P::ConnectStoragePoolEventRegisterAny
        | P::ConnectStoragePoolEventDeregisterAny
        | P::StorageVolGetInfoFlags
        | P::StoragePoolLookupByTargetPath
        | P::ConnectGetStoragePoolCapabilities => {
            storage::dispatch(client, c()?, procedure, payload)
                .unwrap_or_else(|| Err(unsupported_named(procedure)))
        }
    }
}

fn list_max(requested: i32) -> Result<usize, Failure> {
    usize::try_from(requested)
        .ok()
        .filter(|&n| n <= protocol::DOMAIN_LIST_MAX)
        .ok_or_else(|| {
            rpc_error(format!(
                "list length {requested} out of range (0..={})",
                protocol::DOMAIN_LIST_MAX
            ))
        })
}

/// Event ids a client may register: the ones rvirtd delivers. Others are valid libvirt
/// event ids that no driver here emits yet, so registering them answers no-support
/// rather than a registration that would never fire.
fn check_event_id(id: i32) -> Result<(), Failure> {
    match id {
        event_id::LIFECYCLE | event_id::DEVICE_REMOVED => Ok(()),
        _ if (0..event_id::LAST).contains(&id) => Err(err(
            error_code::NO_SUPPORT,
            error_domain::RPC,
            format!(
                "this function is not supported by the connection driver: rvirtd does not deliver domain event {id} (only lifecycle events, id 0, and device removals, id 15)"
            ),
        )),
        _ => Err(err(
            error_code::INVALID_ARG,
            error_domain::RPC,
            format!("invalid argument: unsupported event ID {id}"),
        )),
    }
}

/// The answer to the version 3 migration procedures without typed parameters, which this
/// host does not serve.
fn no_migration(conn: &Connection, operation: &str) -> Failure {
    err(
        error_code::NO_SUPPORT,
        error_domain::DOMAIN,
        format!(
            "this function is not supported by the connection driver: {operation} (this host migrates through the typed-parameter procedures only; driver '{}')",
            conn.driver_name()
        ),
    )
}

fn open(client: &Client, args: ConnectOpenArgs) -> Result<(), Failure> {
    let name = args.name.unwrap_or_default();
    let uri = if name.is_empty() {
        client.shared.default_uri.clone()
    } else {
        name
    };
    client.shared.served.check(&uri).map_err(|e| {
        let code = match e {
            ServedError::Invalid { .. } => error_code::INVALID_ARG,
            _ => error_code::OPERATION_DENIED,
        };
        err(code, error_domain::REMOTE, e.to_string())
    })?;
    let read_only = client.read_only_socket || args.flags & protocol::connect_flags::RO != 0;
    if client.connection().is_some() {
        return Err(err(
            error_code::INTERNAL_ERROR,
            error_domain::RPC,
            "connection already open",
        ));
    }
    let shared = &client.shared;
    let remote = shared.isolation.as_deref().is_some_and(|iso| {
        rvirt_host::ConnectUri::parse(&uri)
            .ok()
            .is_some_and(|u| iso.for_scheme(&u.driver).is_some())
    });
    let conn = crate::isolate::open_routed(
        &shared.runtime,
        shared.isolation.as_deref(),
        &uri,
        read_only,
    )
    .map_err(host_error)?;
    tracing::debug!(client = client.id, uri, read_only, "connection opened");
    if crate::metrics::enabled() {
        let mut opened = client
            .shared
            .opened
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !opened.contains(&uri) {
            opened.insert(uri.clone());
        }
    }
    if !client.set_connection(conn, read_only) {
        return Err(err(
            error_code::INTERNAL_ERROR,
            error_domain::RPC,
            "connection already open",
        ));
    }
    client
        .remote_driver
        .store(remote, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// `virDomainInterfaceAddresses` from the DHCP leases of the networks the domain's
/// `<interface type='network'>` devices are on (`VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE`,
/// as libvirt's daemon answers it from its network driver); the agent and ARP sources
/// need the hypervisor and answer no-support.
fn interface_addresses(
    conn: &Connection,
    dom: &rvirt_host::Domain,
    source: u32,
    flags: u32,
) -> Result<DomainInterfaceAddressesRet, Failure> {
    if flags != 0 {
        return Err(err(
            error_code::INVALID_ARG,
            error_domain::DOMAIN,
            format!("virDomainInterfaceAddresses: unsupported flags ({flags:#x})"),
        ));
    }
    if source != 0 {
        let what = match source {
            1 => "the guest agent",
            2 => "the ARP table",
            _ => "an unknown source",
        };
        return Err(err(
            error_code::NO_SUPPORT,
            error_domain::DOMAIN,
            format!(
                "this function is not supported by the connection driver: virDomainInterfaceAddresses from {what}"
            ),
        ));
    }
    let live = dom.get_xml_desc(0).map_err(host_error)?;
    let def = rvirt_xml::Element::parse(&live).map_err(|e| {
        err(
            error_code::INTERNAL_ERROR,
            error_domain::DOMAIN,
            format!("the domain's live XML does not parse: {e}"),
        )
    })?;
    let mut ifaces = Vec::new();
    let Some(devs) = def.child("devices") else {
        return Ok(DomainInterfaceAddressesRet { ifaces });
    };
    let mut nets = None;
    for i in devs.children_named("interface") {
        let net = i.child("source").and_then(|s| s.attr("network"));
        let mac = i.child("mac").and_then(|m| m.attr("address"));
        let (Some(net), Some(mac)) = (net, mac) else {
            continue;
        };
        if nets.is_none() {
            nets = Some(conn.networks().map_err(host_error)?);
        }
        let leases = nets
            .as_ref()
            .expect("set above")
            .dhcp_leases(net, Some(mac), 0)
            .map_err(host_error)?;
        if leases.is_empty() {
            continue;
        }
        let name = i
            .child("target")
            .and_then(|t| t.attr("dev"))
            .unwrap_or("-")
            .to_string();
        ifaces.push(DomainInterface {
            name,
            hwaddr: Some(mac.to_string()),
            addrs: leases
                .iter()
                .map(|l| DomainIpAddr {
                    r#type: l.ip_type,
                    addr: l.ipaddr.clone(),
                    prefix: l.prefix,
                })
                .collect(),
        });
    }
    Ok(DomainInterfaceAddressesRet { ifaces })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_classes() {
        let rw = |p: P| p.access() == Access::ReadWrite;
        assert!(rw(P::DomainDefineXml) && rw(P::DomainUndefineFlags));
        assert!(rw(P::ConnectDomainXmlToNative));
        assert!(!rw(P::DomainGetXmlDesc) && !rw(P::ConnectListAllDomains));
        for &p in P::ALL {
            // calls answered on the I/O task never change anything
            assert!(!(rw(p) && is_inline(p.number())), "{p:?}");
        }
    }

    #[test]
    fn secure_xml_is_refused_read_only() {
        let args = |flags| {
            xdr::to_vec(&DomainFlagsArgs {
                dom: NonnullDomain::default(),
                flags,
            })
            .unwrap()
        };
        assert!(read_only_refusal(P::DomainGetXmlDesc, &args(0)).is_none());
        assert!(read_only_refusal(P::DomainGetXmlDesc, &args(2)).is_none());
        let e = read_only_refusal(P::DomainGetXmlDesc, &args(XML_SECURE | 2)).unwrap();
        assert_eq!(e.code, error_code::OPERATION_DENIED);
        assert!(read_only_refusal(P::DomainCreate, &[]).is_some());
    }

    #[test]
    fn error_shapes() {
        let e = unsupported(999);
        assert_eq!(e.code, error_code::NO_SUPPORT);
        assert!(e.message.unwrap().contains("999"));
        let e = unsupported_named(P::StorageVolUpload);
        assert_eq!(e.code, error_code::NO_SUPPORT);
        assert!(
            e.message
                .unwrap()
                .contains("StorageVolUpload (procedure 208)")
        );
        assert!(list_max(-1).is_err() && list_max(16385).is_err());
        assert_eq!(list_max(5).unwrap(), 5);
        assert!(check_event_id(0).is_ok());
        assert_eq!(check_event_id(1).unwrap_err().code, error_code::NO_SUPPORT);
        assert_eq!(
            check_event_id(27).unwrap_err().code,
            error_code::INVALID_ARG
        );
        assert_eq!(
            check_event_id(-1).unwrap_err().code,
            error_code::INVALID_ARG
        );
    }
}

//! The hypervisor contract.

use crate::{CheckResult, Runner, describe, expect_code, host_box, res, well_formed};
use rvirt_host::PluginManifest;
use rvirt_plugin_api::{
    self as api, DomainRef, DriverConnectionBox, EventSink, PluginMod_Ref, Uuid,
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RResult, RStr},
    },
    state,
};
use std::{
    path::Path,
    sync::{Arc, Mutex},
};

/// `VIR_CONNECT_LIST_DOMAINS_*`.
mod list {
    pub const ACTIVE: u32 = 1;
    pub const INACTIVE: u32 = 2;
    pub const PERSISTENT: u32 = 4;
    pub const TRANSIENT: u32 = 8;
    pub const RUNNING: u32 = 16;
    pub const PAUSED: u32 = 32;
    pub const SHUTOFF: u32 = 64;
}

const XML_INACTIVE: u32 = 2;
const UNKNOWN_FLAG: u32 = 1 << 31;

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(String, i32, i32)>>>);

impl EventSink for Events {
    fn domain_lifecycle(&self, dom: DomainRef, event: i32, detail: i32) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((
            dom.name.to_string(),
            event,
            detail,
        ));
    }
}

impl Events {
    fn of(&self, name: &str) -> Vec<i32> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, e, _)| *e)
            .collect()
    }
}

struct Opener<'a> {
    module: PluginMod_Ref,
    root: &'a Path,
}

impl Opener<'_> {
    fn open(
        &self,
        uri: &str,
        read_only: bool,
        events: &Events,
    ) -> Result<DriverConnectionBox, String> {
        let sink = api::EventSink_TO::from_value(events.clone(), TD_Opaque);
        let r = match self.module.open_with_host().flatten() {
            Some(open) => open(
                RStr::from_str(uri),
                read_only,
                sink,
                host_box(self.root, Some(uri)),
            ),
            None => (self.module.open())(RStr::from_str(uri), read_only, sink),
        };
        res(r).map_err(|e| format!("opening '{uri}' failed: {}", describe(&e)))
    }
}

fn random_uuid() -> Uuid {
    Uuid(*uuid::Uuid::new_v4().as_bytes())
}

/// The domain document the kit defines, named `name` with a fresh UUID.
fn domain_xml(opts_xml: Option<&str>, dom_type: &str, name: &str) -> String {
    let uuid = uuid::Uuid::new_v4();
    match opts_xml {
        Some(x) => {
            let mut d = match rvirt_xml::Domain::parse(x) {
                Ok(d) => d,
                Err(_) => return x.to_string(),
            };
            d.set_name(name);
            d.set_uuid(uuid);
            d.to_xml(&rvirt_xml::FormatOptions {
                inactive: true,
                secure: true,
            })
        }
        None => format!(
            "<domain type='{dom_type}'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n  <memory unit='KiB'>131072</memory>\n  <vcpu>1</vcpu>\n  <os>\n    <type>hvm</type>\n  </os>\n</domain>\n"
        ),
    }
}

fn names(conn: &DriverConnectionBox, flags: u32) -> Result<Vec<String>, String> {
    res(conn.list_all_domains(flags))
        .map(|v| v.iter().map(|d| d.name.to_string()).collect())
        .map_err(|e| format!("virConnectListAllDomains({flags:#x}): {}", describe(&e)))
}

fn state_of(conn: &DriverConnectionBox, uuid: Uuid) -> Result<i32, String> {
    res(conn.get_state(uuid))
        .map(|s| s.state)
        .map_err(|e| format!("virDomainGetState: {}", describe(&e)))
}

fn want_state(conn: &DriverConnectionBox, uuid: Uuid, want: i32, after: &str) -> CheckResult {
    let s = state_of(conn, uuid)?;
    if s != want {
        return Err(format!("after {after} the state is {s}, expected {want}"));
    }
    Ok(())
}

/// Which list flags a domain must match and not match now.
fn check_lists(conn: &DriverConnectionBox, name: &str, yes: &[u32], no: &[u32]) -> CheckResult {
    for f in yes {
        if !names(conn, *f)?.iter().any(|n| n == name) {
            return Err(format!(
                "'{name}' is missing from the list with flags {f:#x}"
            ));
        }
    }
    for f in no {
        if names(conn, *f)?.iter().any(|n| n == name) {
            return Err(format!(
                "'{name}' is listed with flags {f:#x}, which exclude it"
            ));
        }
    }
    Ok(())
}

/// A redundant transition: refused with `VIR_ERR_OPERATION_INVALID`, or accepted with
/// the state left at `state`.
fn noop_or_invalid(
    conn: &DriverConnectionBox,
    uuid: Uuid,
    what: &str,
    r: RResult<(), api::PluginError>,
    want: i32,
) -> CheckResult {
    if r.is_err() {
        expect_code(what, r, &[api::ErrorCode::OperationInvalid])?;
    }
    want_state(conn, uuid, want, what)
}

fn ok<T>(what: &str, r: RResult<T, api::PluginError>) -> Result<T, String> {
    res(r).map_err(|e| format!("{what}: {}", describe(&e)))
}

pub(crate) fn checks(
    r: &mut Runner<'_>,
    module: PluginMod_Ref,
    m: &PluginManifest,
    opts: &crate::Options,
    root: &Path,
) {
    let scheme = &m.schemes[0];
    let uri = opts.uri.clone().unwrap_or_else(|| format!("{scheme}:///"));
    let opener = Opener { module, root };
    let events = Events::default();
    let mut conn = None;
    if !r.check("hv.open", || {
        conn = Some(opener.open(&uri, false, &events)?);
        Ok(())
    }) {
        return;
    }
    let Some(conn) = conn else { return };
    let mut dom_type = String::from("test");
    r.check("hv.facts", || {
        ok("virConnectGetType", conn.get_type())?;
        ok("virConnectGetVersion", conn.get_version())?;
        ok("virConnectGetURI", conn.get_uri())?;
        ok("virConnectGetHostname", conn.get_hostname())?;
        ok("virNodeGetInfo", conn.node_get_info())?;
        let caps = ok("virConnectGetCapabilities", conn.get_capabilities())?;
        let el = rvirt_xml::Element::parse(&caps)
            .map_err(|e| format!("the capabilities document does not parse: {e}"))?;
        if el.name() != "capabilities" {
            return Err(format!("the capabilities root is <{}>", el.name()));
        }
        // The first guest domain type the driver advertises.
        if let Some(t) = caps
            .split("<domain type='")
            .nth(1)
            .and_then(|s| s.split('\'').next())
        {
            dom_type = t.to_string();
        }
        Ok(())
    });
    let tag = format!("{:08x}", rand_u32());
    let dom_name = format!("tck-{tag}");
    let xml = domain_xml(opts.domain_xml.as_deref(), &dom_type, &dom_name);
    let before = names(&conn, 0).unwrap_or_default();

    r.check("hv.read-only", || {
        let ro = opener.open(&uri, true, &Events::default())?;
        let u = random_uuid();
        let denied = [api::ErrorCode::OperationDenied];
        expect_code(
            "virDomainDefineXML",
            ro.define_xml(RStr::from_str(&xml), 0),
            &denied,
        )?;
        expect_code(
            "virDomainCreateXML",
            ro.create_xml(RStr::from_str(&xml), 0),
            &denied,
        )?;
        expect_code("virDomainUndefine", ro.undefine(u, 0), &denied)?;
        expect_code("virDomainCreate", ro.create(u, 0), &denied)?;
        expect_code("virDomainDestroy", ro.destroy(u, 0), &denied)?;
        expect_code("virDomainShutdown", ro.shutdown(u, 0), &denied)?;
        expect_code("virDomainReboot", ro.reboot(u, 0), &denied)?;
        expect_code("virDomainSuspend", ro.suspend(u), &denied)?;
        expect_code("virDomainResume", ro.resume(u), &denied)?;
        expect_code("virDomainSetAutostart", ro.set_autostart(u, true), &denied)?;
        names(&ro, 0)?;
        if names(&conn, 0)? != before {
            return Err("the read-only calls changed the domain list".into());
        }
        Ok(())
    });

    r.check("hv.errors.unknown-domain", || {
        let nd = [api::ErrorCode::NoDomain];
        let u = random_uuid();
        expect_code(
            "virDomainLookupByName",
            conn.lookup_by_name(RStr::from_str("tck-no-such-domain")),
            &nd,
        )?;
        expect_code("virDomainLookupByUUID", conn.lookup_by_uuid(u), &nd)?;
        expect_code("virDomainLookupByID", conn.lookup_by_id(987_654), &nd)?;
        expect_code("virDomainGetInfo", conn.get_info(u), &nd)?;
        expect_code("virDomainGetXMLDesc", conn.get_xml_desc(u, 0), &nd)?;
        expect_code("virDomainCreate", conn.create(u, 0), &nd)?;
        Ok(())
    });

    r.check("hv.errors.bad-xml", || {
        let codes = [
            api::ErrorCode::XmlError,
            api::ErrorCode::XmlDetail,
            api::ErrorCode::InvalidArg,
            api::ErrorCode::ConfigUnsupported,
        ];
        expect_code(
            "virDomainDefineXML(\"<domain\")",
            conn.define_xml(RStr::from_str("<domain"), 0),
            &codes,
        )?;
        expect_code(
            "virDomainDefineXML(<network>)",
            conn.define_xml(RStr::from_str("<network><name>x</name></network>"), 0),
            &codes,
        )?;
        expect_code(
            "virDomainCreateXML(\"\")",
            conn.create_xml(RStr::from_str(""), 0),
            &codes,
        )?;
        Ok(())
    });

    r.check("hv.errors.flags", || {
        let inv = [api::ErrorCode::InvalidArg];
        expect_code(
            "virConnectListAllDomains(1<<31)",
            conn.list_all_domains(UNKNOWN_FLAG),
            &inv,
        )?;
        expect_code(
            "virDomainDefineXMLFlags(1<<31)",
            conn.define_xml(RStr::from_str(&xml), UNKNOWN_FLAG),
            &inv,
        )?;
        if names(&conn, 0)?.contains(&dom_name) {
            return Err("a definition refused for its flags was kept".into());
        }
        Ok(())
    });

    // The lifecycle, list flags and events of one persistent domain.
    let mut defined: Option<Uuid> = None;
    let lifecycle_ok = r.check("hv.lifecycle", || {
        let d = ok(
            "virDomainDefineXML",
            conn.define_xml(RStr::from_str(&xml), 0),
        )?;
        defined = Some(d.uuid);
        if d.name.as_str() != dom_name || d.id != -1 {
            return Err(format!(
                "virDomainDefineXML answered name '{}' id {}, expected '{dom_name}' id -1",
                d.name, d.id
            ));
        }
        want_state(&conn, d.uuid, state::SHUTOFF, "define")?;
        if !ok("virDomainIsPersistent", conn.is_persistent(d.uuid))? {
            return Err("a defined domain is not persistent".into());
        }
        let by_name = ok(
            "virDomainLookupByName",
            conn.lookup_by_name(RStr::from_str(&dom_name)),
        )?;
        if by_name.uuid != d.uuid {
            return Err("lookup by name answers another UUID".into());
        }
        let started = ok("virDomainCreate", conn.create(d.uuid, 0))?;
        if started.id < 0 {
            return Err(format!("a started domain has id {}", started.id));
        }
        want_state(&conn, d.uuid, state::RUNNING, "start")?;
        let by_id = ok("virDomainLookupByID", conn.lookup_by_id(started.id))?;
        if by_id.uuid != d.uuid {
            return Err("lookup by id answers another domain".into());
        }
        expect_code(
            "virDomainCreate of a running domain",
            conn.create(d.uuid, 0),
            &[api::ErrorCode::OperationInvalid],
        )?;
        ok("virDomainSuspend", conn.suspend(d.uuid))?;
        want_state(&conn, d.uuid, state::PAUSED, "suspend")?;
        // libvirt's drivers differ here (test refuses, QEMU accepts): refused with
        // VIR_ERR_OPERATION_INVALID or accepted without a state change.
        noop_or_invalid(
            &conn,
            d.uuid,
            "virDomainSuspend of a paused domain",
            conn.suspend(d.uuid),
            state::PAUSED,
        )?;
        ok("virDomainResume", conn.resume(d.uuid))?;
        want_state(&conn, d.uuid, state::RUNNING, "resume")?;
        noop_or_invalid(
            &conn,
            d.uuid,
            "virDomainResume of a running domain",
            conn.resume(d.uuid),
            state::RUNNING,
        )?;
        ok("virDomainDestroy", conn.destroy(d.uuid, 0))?;
        want_state(&conn, d.uuid, state::SHUTOFF, "destroy")?;
        expect_code(
            "virDomainDestroy of a shut off domain",
            conn.destroy(d.uuid, 0),
            &[api::ErrorCode::OperationInvalid],
        )?;
        expect_code(
            "virDomainSuspend of a shut off domain",
            conn.suspend(d.uuid),
            &[api::ErrorCode::OperationInvalid],
        )?;
        Ok(())
    });

    if let Some(u) = defined.filter(|_| lifecycle_ok) {
        r.check("hv.list-flags", || {
            use list::*;
            check_lists(
                &conn,
                &dom_name,
                &[0, INACTIVE, PERSISTENT, SHUTOFF],
                &[ACTIVE, TRANSIENT, RUNNING, PAUSED],
            )?;
            ok("virDomainCreate", conn.create(u, 0))?;
            check_lists(
                &conn,
                &dom_name,
                &[0, ACTIVE, PERSISTENT, RUNNING],
                &[INACTIVE, TRANSIENT, PAUSED, SHUTOFF],
            )?;
            ok("virDomainSuspend", conn.suspend(u))?;
            check_lists(
                &conn,
                &dom_name,
                &[ACTIVE, PAUSED, ACTIVE | INACTIVE],
                &[RUNNING, SHUTOFF, INACTIVE],
            )?;
            ok("virDomainDestroy", conn.destroy(u, 0))?;
            Ok(())
        });

        r.check("hv.xml-round-trip", || {
            let x1 = ok(
                "virDomainGetXMLDesc(INACTIVE)",
                conn.get_xml_desc(u, XML_INACTIVE),
            )?;
            let d = rvirt_xml::Domain::parse(&x1)
                .map_err(|e| format!("the domain XML does not parse with rvirt-xml: {e}"))?;
            if d.name() != dom_name || d.uuid().as_bytes() != &u.0 {
                return Err("the domain XML names another domain".into());
            }
            let again = ok(
                "virDomainDefineXML of its own XML",
                conn.define_xml(RStr::from_str(&x1), 0),
            )?;
            if again.uuid != u {
                return Err("redefining a domain from its XML changed its UUID".into());
            }
            let x2 = ok(
                "virDomainGetXMLDesc(INACTIVE)",
                conn.get_xml_desc(u, XML_INACTIVE),
            )?;
            if x1 != x2 {
                return Err(format!("the XML changed through define:\n{x1}\n---\n{x2}"));
            }
            Ok(())
        });

        r.check("hv.after-failure", || {
            let n = names(&conn, 0)?;
            let _ = conn.define_xml(RStr::from_str("<domain><name>"), 0);
            let _ = conn.create(random_uuid(), 0);
            let _ = conn.list_all_domains(UNKNOWN_FLAG);
            if names(&conn, 0)? != n {
                return Err("failed calls changed the domain list".into());
            }
            ok("virDomainCreate after failed calls", conn.create(u, 0))?;
            want_state(&conn, u, state::RUNNING, "start after failed calls")?;
            ok("virDomainDestroy", conn.destroy(u, 0))?;
            Ok(())
        });

        r.check("hv.undefine", || {
            ok("virDomainUndefine", conn.undefine(u, 0))?;
            expect_code(
                "virDomainLookupByUUID after undefine",
                conn.lookup_by_uuid(u),
                &[api::ErrorCode::NoDomain],
            )?;
            if names(&conn, 0)?.contains(&dom_name) {
                return Err("an undefined domain is still listed".into());
            }
            Ok(())
        });

        r.check("hv.events", || {
            use api::event::*;
            let got = events.of(&dom_name);
            let want = [DEFINED, STARTED, SUSPENDED, RESUMED, STOPPED, UNDEFINED];
            let mut it = got.iter();
            for w in want {
                if !it.any(|g| *g == w) {
                    return Err(format!(
                        "lifecycle events {got:?} lack {w} in order (expected the subsequence {want:?})"
                    ));
                }
            }
            Ok(())
        });
    }

    r.check("hv.transient", || {
        use list::*;
        let tname = format!("tck-{tag}-t");
        let txml = domain_xml(opts.domain_xml.as_deref(), &dom_type, &tname);
        let d = ok(
            "virDomainCreateXML",
            conn.create_xml(RStr::from_str(&txml), 0),
        )?;
        if d.id < 0 {
            return Err(format!("a created domain has id {}", d.id));
        }
        want_state(&conn, d.uuid, state::RUNNING, "create")?;
        if ok("virDomainIsPersistent", conn.is_persistent(d.uuid))? {
            return Err("a transient domain is persistent".into());
        }
        check_lists(&conn, &tname, &[ACTIVE, TRANSIENT], &[PERSISTENT, INACTIVE])?;
        ok("virDomainDestroy", conn.destroy(d.uuid, 0))?;
        expect_code(
            "virDomainLookupByUUID of a destroyed transient domain",
            conn.lookup_by_uuid(d.uuid),
            &[api::ErrorCode::NoDomain],
        )?;
        Ok(())
    });

    r.check("hv.hostile-input", || {
        let zero = Uuid([0; 16]);
        let junk = "x".repeat(1 << 20);
        let mut answers: Vec<(&str, Option<api::PluginError>)> = vec![
            (
                "virDomainLookupByName(\"\")",
                conn.lookup_by_name(RStr::from_str("")).into_result().err(),
            ),
            (
                "virDomainLookupByName(junk)",
                conn.lookup_by_name(RStr::from_str(&junk))
                    .into_result()
                    .err(),
            ),
            (
                "virDomainLookupByID(-1)",
                conn.lookup_by_id(-1).into_result().err(),
            ),
            (
                "virDomainLookupByID(i32::MIN)",
                conn.lookup_by_id(i32::MIN).into_result().err(),
            ),
            (
                "virDomainDefineXML(junk)",
                conn.define_xml(RStr::from_str(&junk), 0)
                    .into_result()
                    .err(),
            ),
            (
                "virDomainCreateXML(junk)",
                conn.create_xml(RStr::from_str(&junk), 0)
                    .into_result()
                    .err(),
            ),
            (
                "virDomainGetXMLDesc(0-uuid, !0)",
                conn.get_xml_desc(zero, u32::MAX).into_result().err(),
            ),
            (
                "virDomainGetVcpusFlags(0-uuid, !0)",
                conn.get_vcpus_flags(zero, u32::MAX).into_result().err(),
            ),
            (
                "virDomainUndefine(0-uuid, !0)",
                conn.undefine(zero, u32::MAX).into_result().err(),
            ),
            (
                "virDomainReboot(0-uuid, !0)",
                conn.reboot(zero, u32::MAX).into_result().err(),
            ),
            (
                "virConnectDomainXMLToNative(junk)",
                conn.domain_xml_to_native(RStr::from_str("x"), RStr::from_str(&junk), u32::MAX)
                    .into_result()
                    .err(),
            ),
        ];
        for (what, e) in answers.drain(..) {
            match e {
                None if what.contains("0-uuid") || what.contains("junk") => {
                    return Err(format!("{what} succeeded"));
                }
                None => {}
                Some(e) => well_formed(what, &e)?,
            }
        }
        Ok(())
    });

    r.check_or_skip("hv.panic-caught", || {
        let sep = if uri.contains('?') { '&' } else { '?' };
        let puri = format!("{uri}{sep}panic=virDomainSuspend");
        let pc = match opener.open(&puri, false, &Events::default()) {
            Ok(c) => c,
            Err(e) => return Ok(Some(format!("the plugin has no fault injection ({e})"))),
        };
        let pname = format!("tck-{tag}-p");
        let d = ok(
            "virDomainCreateXML",
            pc.create_xml(RStr::from_str(&domain_xml(opts.domain_xml.as_deref(), &dom_type, &pname)), 0),
        )?;
        let outcome = pc.suspend(d.uuid).into_result();
        let r = match outcome {
            Ok(()) => Ok(Some(
                "the plugin has no fault injection (?panic=virDomainSuspend did not panic)".into(),
            )),
            Err(e) if e.code == api::ErrorCode::InternalError as i32 && e.message.contains("panicked") => {
                // The same connection keeps working.
                state_of(&pc, d.uuid).map(|_| None)
            }
            Err(e) => Err(format!(
                "an injected panic came back as {}, expected VIR_ERR_INTERNAL_ERROR naming the panic",
                describe(&e)
            )),
        };
        let _ = pc.destroy(d.uuid, 0);
        r
    });

    // Leave nothing behind.
    for n in names(&conn, 0).unwrap_or_default() {
        if n.starts_with(&format!("tck-{tag}"))
            && let Ok(d) = res(conn.lookup_by_name(RStr::from_str(&n)))
        {
            let _ = conn.destroy(d.uuid, 0);
            let _ = conn.undefine(d.uuid, 0);
        }
    }
}

pub(crate) fn rand_u32() -> u32 {
    let u = uuid::Uuid::new_v4();
    let b = u.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

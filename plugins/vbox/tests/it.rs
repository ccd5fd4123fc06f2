//! The vbox plugin against a fake VirtualBox web service ([`fake`]): VirtualBox is not in
//! Debian, so no real `vboxwebsrv` can run here. The fake answers from the SDK reference's
//! request and response shapes and checks every request the plugin sends; each test ends
//! by asserting that no request broke a check.
//!
//! The in-process tests call the connection the plugin's `open` returns; the CLI test runs
//! the built `rvirt` with the built plugin, and the conformance test the built `rvirt-tck`
//! (`cargo build -p rvirt-cli -p rvirt-tck -p rvirt-plugin-vbox` first).

mod fake;

use fake::{Fake, VM};
use rvirt_plugin_vbox::VboxConnection;
use rvirt_sdk::abi::{
    DomainRef, DriverConnection, ErrorCode, EventSink, EventSink_TO, PluginError,
    abi_stable::{sabi_trait::TD_Opaque, std_types::RResult},
    state,
};
use rvirt_sdk::util::to_abi_uuid;
use std::sync::{Arc, Mutex};

const U1: &str = "6f1b3a52-4a1e-4c8e-9a3b-0f2d1c5e7a01";
const U2: &str = "6f1b3a52-4a1e-4c8e-9a3b-0f2d1c5e7a02";
const U3: &str = "6f1b3a52-4a1e-4c8e-9a3b-0f2d1c5e7a03";

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(String, i32, i32)>>>);

impl EventSink for Events {
    fn domain_lifecycle(&self, dom: DomainRef, event: i32, detail: i32) {
        self.0
            .lock()
            .unwrap()
            .push((dom.name.to_string(), event, detail));
    }
}

fn inventory() -> Vec<VM> {
    vec![
        VM::new(U1, "alpha", "PoweredOff", 1024, 2),
        VM::new(U2, "beta", "Running", 2048, 4),
        VM::new(U3, "gamma", "Saved", 512, 1),
    ]
}

fn open_with(uri: &str, read_only: bool) -> (Result<VboxConnection, PluginError>, Events) {
    let ev = Events::default();
    let c = rvirt_plugin_vbox::open(
        uri,
        read_only,
        EventSink_TO::from_value(ev.clone(), TD_Opaque),
    );
    (c, ev)
}

fn open(f: &Fake) -> (VboxConnection, Events) {
    let (c, ev) = open_with(&f.uri(), false);
    (c.unwrap_or_else(|e| panic!("open: {}", e.message)), ev)
}

fn ok<T>(r: RResult<T, PluginError>) -> T {
    match r {
        RResult::ROk(v) => v,
        RResult::RErr(e) => panic!("unexpected error: {} (code {})", e.message, e.code),
    }
}

fn fails<T: std::fmt::Debug>(r: RResult<T, PluginError>) -> PluginError {
    match r {
        RResult::ROk(v) => panic!("expected an error, got {v:?}"),
        RResult::RErr(e) => e,
    }
}

fn uuid(s: &str) -> rvirt_sdk::abi::Uuid {
    to_abi_uuid(uuid::Uuid::parse_str(s).unwrap())
}

fn clean(f: &Fake) {
    let v = f.violations();
    assert!(v.is_empty(), "requests that broke the SDK's shapes: {v:#?}");
}

#[test]
fn list_lookup_and_states() {
    let f = Fake::start("7.0.14", None, inventory());
    let (c, _) = open(&f);
    let all = ok(c.list_all_domains(0));
    let got: Vec<(String, i32)> = all.iter().map(|d| (d.name.to_string(), d.id)).collect();
    // running machines are numbered by their place in the list, as libvirt's vbox driver
    assert_eq!(
        got,
        vec![
            ("alpha".into(), -1),
            ("beta".into(), 2),
            ("gamma".into(), -1)
        ]
    );
    // VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1, INACTIVE = 2
    let active: Vec<String> = ok(c.list_all_domains(1))
        .iter()
        .map(|d| d.name.to_string())
        .collect();
    assert_eq!(active, ["beta"]);
    assert_eq!(ok(c.list_all_domains(2)).len(), 2);

    let b = ok(c.lookup_by_name("beta".into()));
    assert_eq!((b.id, b.uuid), (2, uuid(U2)));
    let a = ok(c.lookup_by_uuid(uuid(U1)));
    assert_eq!(a.name.as_str(), "alpha");
    assert_eq!(ok(c.lookup_by_id(2)).name.as_str(), "beta");
    let e = fails(c.lookup_by_id(1));
    assert_eq!(e.code, ErrorCode::NoDomain as i32);

    // states: PoweredOff and Saved are shut off, Running runs; Paused, Aborted, Stuck
    assert_eq!(ok(c.get_state(uuid(U1))).state, state::SHUTOFF);
    assert_eq!(ok(c.get_state(uuid(U2))).state, state::RUNNING);
    assert_eq!(ok(c.get_state(uuid(U3))).state, state::SHUTOFF);
    assert!(ok(c.has_managed_save_image(uuid(U3), 0)));
    for (vb, want) in [
        ("Paused", state::PAUSED),
        ("Aborted", state::SHUTOFF),
        ("Stuck", state::CRASHED),
    ] {
        f.set_state("alpha", vb);
        assert_eq!(ok(c.get_state(uuid(U1))).state, want, "{vb}");
    }
    assert!(ok(c.is_persistent(uuid(U1))));
    assert_eq!(ok(c.get_version()), 7_000_014);
    assert_eq!(ok(c.get_uri()).as_str(), "vbox:///session");
    assert_eq!(ok(c.get_type()).as_str(), "VBOX");
    clean(&f);
}

#[test]
fn unknown_machine_is_the_fault_named() {
    let f = Fake::start("7.0.14", None, inventory());
    let (c, _) = open(&f);
    let e = fails(c.lookup_by_name("nosuch".into()));
    assert_eq!(e.code, ErrorCode::NoDomain as i32);
    let m = e.message.to_string();
    for want in [
        "no domain with matching name 'nosuch'",
        "IVirtualBox_findMachine",
        "VBOX_E_OBJECT_NOT_FOUND",
        "0x80bb0001",
        "Could not find a registered machine named 'nosuch'",
    ] {
        assert!(m.contains(want), "'{want}' missing from: {m}");
    }
    let e = fails(c.get_info(uuid("00000000-0000-4000-8000-000000000009")));
    assert_eq!(e.code, ErrorCode::NoDomain as i32);
    clean(&f);
}

#[test]
fn dominfo_reads_memory_and_cpus() {
    let f = Fake::start("7.0.14", None, inventory());
    let (c, _) = open(&f);
    let i = ok(c.get_info(uuid(U2)));
    assert_eq!(
        (i.state, i.memory_kib, i.max_mem_kib, i.nr_virt_cpu),
        (state::RUNNING, 2048 * 1024, 2048 * 1024, 4)
    );
    let i = ok(c.get_info(uuid(U1)));
    assert_eq!(
        (i.state, i.memory_kib, i.nr_virt_cpu),
        (state::SHUTOFF, 1024 * 1024, 2)
    );
    assert_eq!(ok(c.get_vcpus_flags(uuid(U1), 0)), 2);
    clean(&f);
}

#[test]
fn lifecycle_start_suspend_resume_shutdown_destroy() {
    let f = Fake::start("7.0.14", None, inventory());
    let (c, ev) = open(&f);
    let a = uuid(U1);
    let d = ok(c.create(a, 0));
    assert_eq!((d.name.as_str(), d.id), ("alpha", 1));
    assert_eq!(f.vm("alpha").unwrap().state, "Running");
    assert_eq!(ok(c.get_state(a)).state, state::RUNNING);
    // a second start is refused before anything is called
    let e = fails(c.create(a, 0));
    assert_eq!(e.code, ErrorCode::OperationInvalid as i32, "{}", e.message);

    ok(c.suspend(a));
    assert_eq!(f.vm("alpha").unwrap().state, "Paused");
    assert_eq!(ok(c.get_state(a)).state, state::PAUSED);
    let e = fails(c.suspend(a));
    assert_eq!(e.code, ErrorCode::OperationInvalid as i32);
    ok(c.resume(a));
    assert_eq!(ok(c.get_state(a)).state, state::RUNNING);
    ok(c.reboot(a, 0));
    assert_eq!(ok(c.get_state(a)).state, state::RUNNING);

    // the fake's guest obeys the ACPI power button
    ok(c.shutdown(a, 0));
    assert_eq!(f.vm("alpha").unwrap().state, "PoweredOff");
    assert_eq!(ok(c.get_state(a)).state, state::SHUTOFF);

    ok(c.create(a, 0));
    ok(c.destroy(a, 0));
    assert_eq!(f.vm("alpha").unwrap().state, "PoweredOff");
    let e = fails(c.destroy(a, 0));
    assert_eq!(e.code, ErrorCode::OperationInvalid as i32);

    let calls = f.calls();
    for m in [
        "IMachine_launchVMProcess",
        "IProgress_waitForCompletion",
        "IProgress_getResultCode",
        "IMachine_lockMachine",
        "ISession_getConsole",
        "IConsole_pause",
        "IConsole_resume",
        "IConsole_reset",
        "IConsole_powerButton",
        "IConsole_powerDown",
        "ISession_unlockMachine",
    ] {
        assert!(calls.iter().any(|c| c == m), "{m} never called");
    }
    // every lock was released: the session is free for the next start
    ok(c.create(a, 0));
    ok(c.destroy(a, 0));
    let events: Vec<i32> = ev.0.lock().unwrap().iter().map(|e| e.1).collect();
    // started, suspended, resumed, started, stopped, started, stopped
    assert_eq!(events, [2, 3, 4, 2, 5, 2, 5]);
    clean(&f);
}

const DEFINE: &str = "<domain type='vbox'>\
  <name>delta</name>\
  <uuid>0d1e2f30-4152-4637-8899-aabbccddeeff</uuid>\
  <description>made by rvirt</description>\
  <metadata><vbox:os xmlns:vbox='http://www.virtualbox.org/' type='Debian_64'/></metadata>\
  <memory unit='MiB'>768</memory>\
  <vcpu>3</vcpu>\
  <os><type arch='x86_64'>hvm</type></os>\
</domain>";

fn define_dump_undefine(version: &str) {
    let f = Fake::start(version, None, inventory());
    let (c, ev) = open(&f);
    let d = ok(c.define_xml(DEFINE.into(), 0));
    assert_eq!((d.name.as_str(), d.id), ("delta", -1));
    let vm = f.vm("delta").unwrap();
    assert_eq!(
        (
            vm.uuid.as_str(),
            vm.memory_mb,
            vm.cpus,
            vm.os_type.as_str(),
            vm.description.as_str(),
            vm.registered,
            vm.saved
        ),
        (
            "0d1e2f30-4152-4637-8899-aabbccddeeff",
            768,
            3,
            "Debian_64",
            "made by rvirt",
            true,
            true
        )
    );
    let u = uuid("0d1e2f30-4152-4637-8899-aabbccddeeff");
    let xml = ok(c.get_xml_desc(u, 0)).to_string();
    let dom = rvirt_xml::Domain::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(dom.name(), "delta");
    assert_eq!(
        dom.uuid().to_string(),
        "0d1e2f30-4152-4637-8899-aabbccddeeff"
    );
    assert_eq!(dom.memory_kib(), 768 * 1024);
    assert_eq!(dom.current_vcpus(), 3);
    assert_eq!(dom.description().as_deref(), Some("made by rvirt"));
    assert_eq!(dom.domain_type(), "vbox");
    assert_eq!(dom.os_arch(), Some("x86_64"));
    assert!(
        xml.contains("type=\"Debian_64\"") || xml.contains("type='Debian_64'"),
        "{xml}"
    );
    // the XML defines the same machine again elsewhere: round trip
    let again = Fake::start(version, None, vec![]);
    let (c2, _) = open(&again);
    ok(c2.define_xml(xml.as_str().into(), 0));
    let vm2 = again.vm("delta").unwrap();
    assert_eq!(
        (
            vm2.uuid,
            vm2.memory_mb,
            vm2.cpus,
            vm2.os_type,
            vm2.description
        ),
        (
            vm.uuid.clone(),
            vm.memory_mb,
            vm.cpus,
            vm.os_type.clone(),
            vm.description.clone()
        )
    );
    clean(&again);

    // the same name and UUID again: the settings change (a Write lock, the session's
    // mutable machine, saveSettings)
    let edited = DEFINE
        .replace("<vcpu>3</vcpu>", "<vcpu>2</vcpu>")
        .replace("768", "1024")
        .replace("Debian_64", "Fedora_64")
        .replace("made by rvirt", "edited");
    assert_eq!(ok(c.define_xml(edited.as_str().into(), 0)).uuid, u);
    let vm3 = f.vm("delta").unwrap();
    assert_eq!(
        (
            vm3.memory_mb,
            vm3.cpus,
            vm3.os_type.as_str(),
            vm3.description.as_str(),
            vm3.saved
        ),
        (1024, 2, "Fedora_64", "edited", true)
    );
    assert!(f.calls().iter().any(|c| c == "ISession_getMachine"));
    // a running machine's settings do not change
    ok(c.create(u, 0));
    let e = fails(c.define_xml(DEFINE.into(), 0));
    assert_eq!(e.code, ErrorCode::OperationInvalid as i32, "{}", e.message);
    assert_eq!(f.vm("delta").unwrap().memory_mb, 1024);
    ok(c.destroy(u, 0));
    // names and UUIDs are unique
    let other_uuid = DEFINE.replace("0d1e2f30", "1d1e2f30");
    let e = fails(c.define_xml(other_uuid.as_str().into(), 0));
    assert_eq!(e.code, ErrorCode::DomExist as i32, "{}", e.message);
    let renamed = DEFINE.replace("<name>delta</name>", "<name>epsilon</name>");
    let e = fails(c.define_xml(renamed.as_str().into(), 0));
    assert_eq!(e.code, ErrorCode::DomExist as i32, "{}", e.message);

    ok(c.undefine(u, 0));
    assert!(
        f.vm("delta").is_none(),
        "the machine is still in the inventory"
    );
    let e = fails(c.lookup_by_uuid(u));
    assert_eq!(e.code, ErrorCode::NoDomain as i32);
    let calls = f.calls();
    for m in [
        "IVirtualBox_createMachine",
        "IMachine_setMemorySize",
        "IMachine_setCPUCount",
        "IMachine_setDescription",
        "IMachine_saveSettings",
        "IVirtualBox_registerMachine",
        "IMachine_unregister",
        "IMachine_deleteConfig",
    ] {
        assert!(calls.iter().any(|c| c == m), "{m} never called");
    }
    let events: Vec<(i32, i32)> = ev.0.lock().unwrap().iter().map(|e| (e.1, e.2)).collect();
    // defined (added), defined (updated), started, stopped (destroyed), undefined
    assert_eq!(events, [(0, 0), (0, 1), (2, 0), (5, 1), (1, 0)]);
    clean(&f);
}

#[test]
fn define_dumpxml_undefine_vbox_7_0() {
    define_dump_undefine("7.0.14");
}

#[test]
fn define_uses_the_create_machine_parameters_of_6_1_and_7_1() {
    // 6.1 has no encryption parameters, 7.1 adds the platform: the fake checks each list
    define_dump_undefine("6.1.50");
    define_dump_undefine("7.1.4");
}

#[test]
fn define_refuses_what_it_cannot_convert() {
    let f = Fake::start("7.0.14", None, vec![]);
    let (c, _) = open(&f);
    for (devices, path) in [
        ("<graphics type='vnc'/>", "domain/devices/graphics"),
        (
            "<disk type='file' device='disk'><source file='/x.vdi'/><target dev='hde'/></disk>",
            "domain/devices/disk[1]/target/@dev",
        ),
        (
            "<interface type='direct'><source dev='eth0'/></interface>",
            "domain/devices/interface[1]/@type",
        ),
    ] {
        let xml = DEFINE.replace("</os>", &format!("</os><devices>{devices}</devices>"));
        let e = fails(c.define_xml(xml.as_str().into(), 0));
        assert_eq!(e.code, ErrorCode::ConfigUnsupported as i32, "{}", e.message);
        assert!(e.message.starts_with(path), "{}", e.message);
    }
    let e = fails(c.define_xml("<domain type='vbox'><name>x</name>".into(), 0));
    assert_eq!(e.code, ErrorCode::XmlError as i32);
    assert!(f.vms().is_empty());
    // a running machine cannot be undefined
    let f = Fake::start("7.0.14", None, inventory());
    let (c, _) = open(&f);
    let e = fails(c.undefine(uuid(U2), 0));
    assert_eq!(e.code, ErrorCode::OperationInvalid as i32);
    assert!(f.vm("beta").unwrap().registered);
    clean(&f);
}

#[test]
fn failed_progress_names_the_call_and_its_error() {
    let f = Fake::start("7.0.14", None, inventory());
    let (c, _) = open(&f);
    f.fail_next_launch(
        fake::VBOX_E_VM_ERROR,
        "The virtual machine 'alpha' has terminated unexpectedly during startup with exit code 1 (0x1)",
    );
    let e = fails(c.create(uuid(U1), 0));
    assert_eq!(e.code, ErrorCode::OperationFailed as i32);
    let m = e.message.to_string();
    for want in [
        "virDomainCreateWithFlags",
        "IMachine_launchVMProcess failed",
        "terminated unexpectedly during startup",
        "VBOX_E_VM_ERROR",
    ] {
        assert!(m.contains(want), "'{want}' missing from: {m}");
    }
    assert_eq!(f.vm("alpha").unwrap().state, "PoweredOff");
    // the session was released: the next start works
    ok(c.create(uuid(U1), 0));
    assert!(
        f.calls()
            .iter()
            .any(|c| c == "IVirtualBoxErrorInfo_getText")
    );
    clean(&f);
}

#[test]
fn endpoint_not_listening_is_a_connection_error_naming_it() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}/");
    let (c, _) = open_with(&format!("vbox:///session?endpoint={endpoint}"), false);
    let e = c.err().expect("opened without a web service");
    assert_eq!(e.code, ErrorCode::NoConnect as i32);
    let m = e.message.to_string();
    assert!(m.contains(&endpoint), "{m}");
    assert!(m.contains("IWebsessionManager_logon"), "{m}");
    assert!(m.to_lowercase().contains("refused"), "{m}");
}

#[test]
fn credentials_come_from_the_auth_file() {
    let f = Fake::start("7.0.14", Some(("alice", "s3cret")), inventory());
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.conf");
    // without credentials the empty login is refused
    let none = format!("{}&authfile={}", f.uri(), auth.display());
    let e = open_with(&none, false)
        .0
        .err()
        .expect("opened without credentials");
    assert_eq!(e.code, ErrorCode::OperationDenied as i32);
    assert!(e.message.contains("E_ACCESSDENIED"), "{}", e.message);
    std::fs::write(
        &auth,
        "[credentials-vb]\nusername=alice\npassword=s3cret\n[auth-vbox-127.0.0.1]\ncredentials=vb\n",
    )
    .unwrap();
    let (c, _) = open_with(&none, false);
    let c = c.unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(ok(c.list_all_domains(0)).len(), 3);
    assert_eq!(f.websessions(), 1);
    drop(c);
    // closing the connection logs off
    assert_eq!(f.websessions(), 0);
    assert!(f.calls().iter().any(|c| c == "IWebsessionManager_logoff"));
    clean(&f);
}

#[test]
fn an_expired_websession_is_renewed() {
    let f = Fake::start("7.0.14", None, inventory());
    let (mut c, _) = open(&f);
    c.set_keep_alive_idle(std::time::Duration::ZERO);
    assert_eq!(ok(c.list_all_domains(0)).len(), 3);
    assert_eq!(f.logons(), 1);
    f.expire_websessions();
    // the next operation finds its references dead (InvalidObjectFault) and logs on again
    assert_eq!(ok(c.lookup_by_name("beta".into())).id, 2);
    assert_eq!(f.logons(), 2);
    ok(c.create(uuid(U1), 0));
    assert_eq!(f.vm("alpha").unwrap().state, "Running");
    // the probe's InvalidObjectFault is the one request the fake counts as a violation
    let v = f.violations();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert!(v[0].starts_with("IVirtualBox_getVersion: _this"), "{v:#?}");
}

#[test]
fn read_only_and_unsupported_operations() {
    let f = Fake::start("7.0.14", None, inventory());
    let (c, _) = open_with(&f.uri(), true);
    let c = c.unwrap();
    for e in [
        fails(c.define_xml(DEFINE.into(), 0)),
        fails(c.create_xml(DEFINE.into(), 0)),
        fails(c.set_autostart(uuid(U1), true)),
        fails(c.create(uuid(U1), 0).map(|_| ())),
        fails(c.destroy(uuid(U2), 0)),
    ] {
        assert_eq!(e.code, ErrorCode::OperationDenied as i32, "{}", e.message);
    }
    assert_eq!(f.vm("alpha").unwrap().state, "PoweredOff");
    for (e, op) in [
        (
            fails(c.domain_xml_to_native("vbox".into(), DEFINE.into(), 0)),
            "virConnectDomainXMLToNative",
        ),
        (
            fails(c.domain_xml_from_native("vbox".into(), "".into(), 0)),
            "virConnectDomainXMLFromNative",
        ),
    ] {
        assert_eq!(e.code, ErrorCode::NoSupport as i32, "{}", e.message);
        assert!(
            e.message.contains(op) && e.message.contains("vbox driver"),
            "{}",
            e.message
        );
    }
    clean(&f);
}

/// The fake's checks can fail: requests that break the SDK's shapes are refused.
#[test]
fn the_fake_refuses_malformed_requests() {
    let f = Fake::start("7.0.14", None, inventory());
    let env = |body: &str| {
        format!(
            r#"<?xml version="1.0"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:vbox="http://www.virtualbox.org/"><SOAP-ENV:Body>{body}</SOAP-ENV:Body></SOAP-ENV:Envelope>"#
        )
    };
    let (st, body) = f.post_raw(&env("<vbox:IWebsessionManager_logon><username></username><password></password></vbox:IWebsessionManager_logon>"));
    assert_eq!(st, 200, "{body}");
    let vbox = body
        .split("<returnval>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(vbox.len(), 33);
    for bad in [
        // wrong namespace
        "<IVirtualBox_getVersion><_this>REF</_this></IVirtualBox_getVersion>".to_string(),
        // unknown reference
        "<vbox:IVirtualBox_getVersion><_this>0000000000000001-0000000000000001</_this></vbox:IVirtualBox_getVersion>".to_string(),
        // a parameter the WSDL does not have
        "<vbox:IVirtualBox_findMachine><_this>REF</_this><name>alpha</name></vbox:IVirtualBox_findMachine>".to_string(),
        // an IVirtualBox where an IMachine belongs
        "<vbox:IMachine_getName><_this>REF</_this></vbox:IMachine_getName>".to_string(),
    ] {
        let (st, body) = f.post_raw(&env(&bad.replace("REF", &vbox)));
        assert_eq!(st, 500, "{bad} accepted: {body}");
        assert!(body.contains("<SOAP-ENV:Fault>"), "{body}");
    }
    assert_eq!(f.violations().len(), 4, "{:#?}", f.violations());
}

/// Through the built `rvirt` and plugin: the plugin loads, takes its endpoint from the URI
/// or the environment, lists, starts and reports errors.
#[test]
fn cli_lists_and_starts_through_the_plugin() {
    use std::process::Command;
    let f = Fake::start("7.0.14", None, inventory());
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        rvirt_tests::built("librvirt_plugin_vbox.so"),
        plugins.join("librvirt_plugin_vbox.so"),
    )
    .unwrap();
    let rvirt_at = |uri: &str, endpoint: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(rvirt_tests::built("rvirt"));
        cmd.env("RVIRT_PLUGIN_PATH", &plugins)
            .env("HOME", tmp.path())
            .env("XDG_CONFIG_HOME", tmp.path().join("config"))
            .env_remove("RVIRT_VBOX_ENDPOINT");
        if let Some(e) = endpoint {
            cmd.env("RVIRT_VBOX_ENDPOINT", e);
        }
        let out = cmd.arg("-c").arg(uri).args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("$ rvirt {}\n{text}", args.join(" "));
        (out.status.success(), text)
    };
    let rvirt = |args: &[&str]| rvirt_at(&f.uri(), None, args);
    // the endpoint from the environment, with the system URI
    let (okk, out) = rvirt_at("vbox:///system", Some(&f.endpoint()), &["uri"]);
    assert!(okk, "{out}");
    assert_eq!(out.trim(), "vbox:///system");
    let (okk, out) = rvirt_at("vbox:///system", Some(&f.endpoint()), &["list", "--all"]);
    assert!(okk && out.contains("gamma"), "{out}");
    // without it, the default endpoint (nothing listens on 18083 here)
    let (okk, out) = rvirt_at("vbox:///system", None, &["list"]);
    assert!(!okk, "{out}");
    assert!(out.contains("http://localhost:18083/"), "{out}");
    let (okk, out) = rvirt(&["list", "--all"]);
    assert!(okk, "{out}");
    for n in ["alpha", "beta", "gamma"] {
        assert!(out.contains(n), "{n} missing: {out}");
    }
    let (okk, out) = rvirt(&["start", "alpha"]);
    assert!(okk, "{out}");
    assert_eq!(f.vm("alpha").unwrap().state, "Running");
    let (okk, out) = rvirt(&["dominfo", "beta"]);
    assert!(okk, "{out}");
    assert!(out.contains("2097152") && out.contains('4'), "{out}");
    let (okk, out) = rvirt(&["dominfo", "nosuch"]);
    assert!(!okk);
    assert!(out.contains("VBOX_E_OBJECT_NOT_FOUND"), "{out}");
    clean(&f);
}

/// The conformance kit (`cargo build -p rvirt-tck` first) against the fake.
#[test]
fn conformance_kit_against_the_fake() {
    let f = Fake::start("7.0.14", None, inventory());
    let tmp = tempfile::tempdir().unwrap();
    let xml = tmp.path().join("domain.xml");
    std::fs::write(
        &xml,
        "<domain type='vbox'><name>tck</name><memory unit='KiB'>131072</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>",
    )
    .unwrap();
    let out = std::process::Command::new(rvirt_tests::built("rvirt-tck"))
        .env_remove("RVIRT_VBOX_ENDPOINT")
        .arg("--uri")
        .arg(f.uri())
        .arg("--domain-xml")
        .arg(&xml)
        .args(TCK_SKIPS.iter().flat_map(|(s, _)| ["--skip", s]))
        .arg(rvirt_tests::built("librvirt_plugin_vbox.so"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the conformance kit failed:\n{text}");
    assert!(text.contains("PASS") && text.contains("manifest"), "{text}");
    clean(&f);
}

/// Checks of the kit that do not apply, and why.
const TCK_SKIPS: &[(&str, &str)] = &[(
    "hv.transient",
    "VirtualBox has no transient machines: virDomainCreateXML defines and starts a persistent one, as libvirt's vbox driver does",
)];

#[test]
fn create_xml_defines_and_starts() {
    let f = Fake::start("7.0.14", None, inventory());
    let (c, _) = open(&f);
    let d = ok(c.create_xml(DEFINE.into(), 0));
    assert_eq!((d.name.as_str(), d.id), ("delta", 4));
    let vm = f.vm("delta").unwrap();
    assert_eq!((vm.state.as_str(), vm.registered), ("Running", true));
    // a start that fails undefines the machine again
    let other = DEFINE
        .replace("delta", "zeta")
        .replace("0d1e2f30", "2d1e2f30");
    f.fail_next_launch(fake::VBOX_E_VM_ERROR, "no hardware virtualization");
    let e = fails(c.create_xml(other.as_str().into(), 0));
    assert!(
        e.message.contains("no hardware virtualization"),
        "{}",
        e.message
    );
    assert!(
        f.vm("zeta").is_none(),
        "the machine of a failed create stays"
    );
    clean(&f);
}

#[test]
fn node_info_from_the_host_object() {
    let f = Fake::start("7.0.14", None, inventory());
    let (c, _) = open(&f);
    let n = ok(c.node_get_info());
    assert_eq!(
        (n.memory_kib, n.cpus, n.mhz, n.cores, n.threads),
        (15872 * 1024, 8, 2400, 4, 2)
    );
    clean(&f);
}

#[test]
fn autostart_through_the_session_machine() {
    let f = Fake::start("7.0.14", None, inventory());
    let (c, _) = open(&f);
    assert!(!ok(c.get_autostart(uuid(U1))));
    ok(c.set_autostart(uuid(U1), true));
    assert!(f.vm("alpha").unwrap().autostart);
    assert!(ok(c.get_autostart(uuid(U1))));
    // a running machine: through a Shared lock
    ok(c.set_autostart(uuid(U2), true));
    assert!(f.vm("beta").unwrap().autostart);
    ok(c.set_autostart(uuid(U2), false));
    assert!(!ok(c.get_autostart(uuid(U2))));
    clean(&f);
}

const DEVICES: &str = "<devices>\
  <disk type='file' device='disk'><source file='/vms/eta/eta.vdi'/><target dev='sda' bus='sata'/></disk>\
  <disk type='file' device='disk'><source file='/vms/eta/data.vdi'/><target dev='sdb' bus='sata'/></disk>\
  <disk type='file' device='cdrom'><source file='/iso/debian.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>\
  <interface type='bridge'><mac address='08:00:27:12:34:56'/><source bridge='eth0'/><model type='virtio'/></interface>\
  <interface type='user'><mac address='08:00:27:12:34:57'/><model type='82540EM'/></interface>\
  <interface type='network'><mac address='08:00:27:12:34:58'/><source network='vboxnet0'/><model type='82540EM'/></interface>\
</devices>";

#[test]
fn define_and_dumpxml_disks_and_interfaces() {
    let f = Fake::start("7.0.14", None, vec![]);
    let (c, _) = open(&f);
    let xml = DEFINE
        .replace("delta", "eta")
        .replace("</os>", &format!("</os>{DEVICES}"));
    let d = ok(c.define_xml(xml.as_str().into(), 0));
    let vm = f.vm("eta").unwrap();
    assert_eq!(
        vm.controllers,
        [
            ("SATA Controller".to_string(), "SATA".to_string()),
            ("IDE Controller".to_string(), "IDE".to_string())
        ]
    );
    let atts: Vec<(&str, u32, u32, &str, &str)> = vm
        .attachments
        .iter()
        .map(|a| {
            (
                a.controller.as_str(),
                a.port,
                a.device,
                a.kind.as_str(),
                a.location.as_str(),
            )
        })
        .collect();
    assert_eq!(
        atts,
        [
            ("SATA Controller", 0, 0, "HardDisk", "/vms/eta/eta.vdi"),
            ("SATA Controller", 1, 0, "HardDisk", "/vms/eta/data.vdi"),
            ("IDE Controller", 1, 0, "DVD", "/iso/debian.iso"),
        ]
    );
    let nics: Vec<(bool, &str, &str, &str)> = vm.nics[..4]
        .iter()
        .map(|n| {
            (
                n.enabled,
                n.attachment.as_str(),
                n.mac.as_str(),
                n.model.as_str(),
            )
        })
        .collect();
    assert_eq!(
        nics,
        [
            (true, "Bridged", "080027123456", "Virtio"),
            (true, "NAT", "080027123457", "I82540EM"),
            (true, "HostOnly", "080027123458", "I82540EM"),
            (false, "Null", "080027000000", "I82540EM"),
        ]
    );
    assert_eq!(
        (vm.nics[0].bridged.as_str(), vm.nics[2].host_only.as_str()),
        ("eth0", "vboxnet0")
    );
    assert!(vm.saved && vm.registered);

    // dumpxml shows the same devices, and the tck-style round trip holds
    let x1 = ok(c.get_xml_desc(d.uuid, 2)).to_string();
    let dom = rvirt_xml::Domain::parse(&x1).unwrap_or_else(|e| panic!("{e}\n{x1}"));
    let disks: Vec<_> = dom.devices_of("disk").collect();
    assert_eq!(disks.len(), 3, "{x1}");
    for want in [
        "file='/vms/eta/data.vdi'",
        "dev='sdb'",
        "dev='hdc'",
        "device='cdrom'",
        "bridge='eth0'",
        "network='vboxnet0'",
        "08:00:27:12:34:57",
        "type='virtio'",
    ] {
        assert!(x1.contains(want), "{want} missing from {x1}");
    }
    ok(c.define_xml(x1.as_str().into(), 0));
    assert_eq!(ok(c.get_xml_desc(d.uuid, 2)).to_string(), x1);
    // devices of an existing machine do not change
    let one_less = xml.replace("<disk type='file' device='disk'><source file='/vms/eta/data.vdi'/><target dev='sdb' bus='sata'/></disk>", "");
    let e = fails(c.define_xml(one_less.as_str().into(), 0));
    assert_eq!(e.code, ErrorCode::ConfigUnsupported as i32, "{}", e.message);
    assert_eq!(f.vm("eta").unwrap().attachments.len(), 3);

    // a medium VirtualBox cannot open: the error names the call, no machine stays behind
    let bad = DEFINE
        .replace("delta", "theta")
        .replace("0d1e2f30", "3d1e2f30")
        .replace("</os>", "</os><devices><disk type='file' device='disk'><source file='/missing/x.vdi'/><target dev='sda'/></disk></devices>");
    let e = fails(c.define_xml(bad.as_str().into(), 0));
    assert!(
        e.message.contains("IVirtualBox_openMedium") && e.message.contains("/missing/x.vdi"),
        "{}",
        e.message
    );
    assert!(f.vm("theta").is_none(), "a half-defined machine stayed");
    clean(&f);
}

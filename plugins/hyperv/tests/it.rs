//! The hyperv plugin against a fake Hyper-V WS-Management endpoint (`fake/`): no WS-Man
//! server exists in Debian and Debian's libvirt is built without its hyperv driver, so
//! the endpoint runs in the test process, answers with WMI instances written from
//! Microsoft's `Msvm_*` / `Win32_*` class documentation, and checks every request the
//! plugin sends against SOAP 1.2, WS-Addressing, WS-Enumeration, WS-Transfer and
//! WS-Management (DSP0226); each test ends by asserting that no request broke a rule.

mod fake;

use fake::{Fake, VM_DB, VM_SAVED, VM_WEB};
use rvirt_plugin_hyperv::{HypervConnection, wmi::JobPolicy};
use rvirt_sdk::abi::{
    DomainRef, DriverConnection, EventSink, EventSink_TO, PluginError,
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RResult, RStr},
    },
    state,
};
use rvirt_sdk::util::to_abi_uuid;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Events = Arc<Mutex<Vec<(String, i32, i32)>>>;

struct Recorder(Events);

impl EventSink for Recorder {
    fn domain_lifecycle(&self, dom: DomainRef, event: i32, detail: i32) {
        self.0
            .lock()
            .unwrap()
            .push((dom.name.to_string(), event, detail));
    }
}

struct Env {
    fake: Fake,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env::with(Fake::start())
    }

    fn with(fake: Fake) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("auth.conf"),
            format!(
                "[credentials-hv]\nusername={}\npassword={}\n[auth-hyperv-127.0.0.1]\ncredentials=hv\n",
                fake.user, fake.password
            ),
        )
        .unwrap();
        Env { fake, dir }
    }

    fn uri(&self) -> String {
        format!(
            "hyperv://127.0.0.1:{}/?transport=http&authfile={}",
            self.fake.port,
            self.dir.path().join("auth.conf").display()
        )
    }

    fn open_with(
        &self,
        uri: &str,
        read_only: bool,
    ) -> Result<(HypervConnection, Events), PluginError> {
        let ev: Events = Arc::default();
        let sink = EventSink_TO::from_value(Recorder(ev.clone()), TD_Opaque);
        let mut c = rvirt_plugin_hyperv::open(uri, read_only, sink)?;
        c.set_job_policy(JobPolicy {
            timeout: Duration::from_secs(10),
            first_poll: Duration::from_millis(1),
            max_poll: Duration::from_millis(10),
        });
        Ok((c, ev))
    }

    fn open(&self) -> (HypervConnection, Events) {
        self.open_with(&self.uri(), false)
            .unwrap_or_else(|e| panic!("open: {}", e.message))
    }
}

fn ok<T>(r: RResult<T, PluginError>) -> T {
    match r {
        RResult::ROk(v) => v,
        RResult::RErr(e) => panic!("unexpected error {}: {}", e.code, e.message),
    }
}

fn fails<T: std::fmt::Debug>(r: RResult<T, PluginError>) -> PluginError {
    match r {
        RResult::ROk(v) => panic!("expected an error, got {v:?}"),
        RResult::RErr(e) => e,
    }
}

fn uuid_of(guid: &str) -> rvirt_sdk::abi::Uuid {
    to_abi_uuid(uuid::Uuid::parse_str(guid).unwrap())
}

fn state_of(c: &HypervConnection, guid: &str) -> i32 {
    ok(c.get_state(uuid_of(guid))).state
}

#[test]
fn lists_looks_up_and_reports_info() {
    let env = Env::new();
    let (c, _) = env.open();
    assert_eq!(ok(c.get_type()).as_str(), "Hyper-V");
    assert_eq!(ok(c.get_hostname()).as_str(), "hv01");
    assert_eq!(ok(c.get_version()), 1_000_017_763);
    let all = ok(c.list_all_domains(0));
    let mut names: Vec<String> = all.iter().map(|d| d.name.to_string()).collect();
    names.sort();
    // the host's own Msvm_ComputerSystem is not a domain
    assert_eq!(names, ["build\"agent", "db01", "web01"]);
    // VIR_CONNECT_LIST_DOMAINS_ACTIVE / INACTIVE / MANAGEDSAVE
    let active = ok(c.list_all_domains(1));
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].name.as_str(), "web01");
    assert_eq!(active[0].id, 4242);
    assert_eq!(ok(c.list_all_domains(2)).len(), 2);
    let saved = ok(c.list_all_domains(1 << 8));
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].name.as_str(), "build\"agent");
    // VIR_CONNECT_LIST_DOMAINS_AUTOSTART / NO_AUTOSTART read each VM's settings
    let auto = ok(c.list_all_domains(1 << 10));
    assert_eq!(auto.len(), 1);
    assert_eq!(auto[0].name.as_str(), "db01");
    assert_eq!(ok(c.list_all_domains(1 << 11)).len(), 2);

    let web = ok(c.lookup_by_name(RStr::from("web01")));
    assert_eq!(web.uuid, uuid_of(VM_WEB));
    assert_eq!(web.id, 4242);
    let q = ok(c.lookup_by_name(RStr::from("build\"agent")));
    assert_eq!(q.uuid, uuid_of(VM_SAVED));
    assert_eq!(ok(c.lookup_by_uuid(uuid_of(VM_DB))).name.as_str(), "db01");
    assert_eq!(ok(c.lookup_by_id(4242)).name.as_str(), "web01");
    let e = fails(c.lookup_by_name(RStr::from("nope")));
    assert_eq!(e.code, 42, "{}", e.message);
    assert!(e.message.contains("'nope'"), "{}", e.message);
    assert_eq!(fails(c.lookup_by_id(7)).code, 42);
    assert_eq!(
        fails(c.lookup_by_uuid(uuid_of("11111111-2222-3333-4444-555555555555"))).code,
        42
    );

    let info = ok(c.get_info(uuid_of(VM_WEB)));
    assert_eq!(info.state, state::RUNNING);
    assert_eq!(info.nr_virt_cpu, 4);
    assert_eq!(info.memory_kib, 4096 * 1024);
    assert_eq!(info.max_mem_kib, 8192 * 1024);
    assert_eq!(ok(c.get_vcpus_flags(uuid_of(VM_WEB), 0)), 4);
    let db = ok(c.get_info(uuid_of(VM_DB)));
    assert_eq!((db.state, db.nr_virt_cpu), (state::SHUTOFF, 2));
    let st = ok(c.get_state(uuid_of(VM_SAVED)));
    assert_eq!((st.state, st.reason), (state::SHUTOFF, 4));
    assert!(ok(c.has_managed_save_image(uuid_of(VM_SAVED), 0)));
    assert!(!ok(c.has_managed_save_image(uuid_of(VM_DB), 0)));
    assert!(ok(c.get_autostart(uuid_of(VM_DB))));
    assert!(!ok(c.get_autostart(uuid_of(VM_WEB))));
    assert!(ok(c.is_persistent(uuid_of(VM_WEB))));

    let n = ok(c.node_get_info());
    assert_eq!(n.model.as_str(), "Intel(R) Xeon(R) CPU E5-2640 v3");
    assert_eq!((n.sockets, n.cores, n.threads, n.cpus), (2, 8, 2, 32));
    assert_eq!(n.mhz, 2600);
    assert_eq!(n.memory_kib, 68_602_523_648 / 1024);
    let caps = ok(c.get_capabilities());
    assert!(caps.contains("<domain type='hyperv'/>"), "{caps}");

    let log = env.fake.lock().log.clone();
    // three VMs and a page size of two: the list needed a Pull
    assert!(log.iter().any(|l| l == "Pull"), "{log:#?}");
    assert!(
        log.iter().any(|l| l
            == "Enumerate SELECT * FROM Msvm_ComputerSystem WHERE Caption = \"Virtual Machine\" AND ElementName = \"build\\\"agent\""),
        "{log:#?}"
    );
    env.fake.assert_clean();
}

#[test]
fn lifecycle_start_suspend_resume_shutdown_destroy() {
    let env = Env::new();
    let (c, ev) = env.open();
    let db = uuid_of(VM_DB);
    let r = ok(c.create(db, 0));
    assert!(r.id > 0, "a running domain has its worker's process id");
    assert_eq!(state_of(&c, VM_DB), state::RUNNING);
    assert_eq!(env.fake.vm(VM_DB).unwrap().enabled, 2);
    let e = fails(c.create(db, 0));
    assert_eq!(e.code, 55, "{}", e.message);

    ok(c.suspend(db));
    assert_eq!(state_of(&c, VM_DB), state::PAUSED);
    assert_eq!(env.fake.vm(VM_DB).unwrap().enabled, 32768);
    assert_eq!(fails(c.suspend(db)).code, 55);
    ok(c.resume(db));
    assert_eq!(state_of(&c, VM_DB), state::RUNNING);
    assert_eq!(fails(c.resume(db)).code, 55);

    ok(c.reboot(db, 0));
    assert_eq!(state_of(&c, VM_DB), state::RUNNING);

    ok(c.shutdown(db, 0));
    // the guest is seen shutting down (EnabledState 32774), then off
    assert_eq!(state_of(&c, VM_DB), state::SHUTDOWN);
    assert_eq!(state_of(&c, VM_DB), state::SHUTOFF);
    assert_eq!(fails(c.shutdown(db, 0)).code, 55);
    assert_eq!(fails(c.destroy(db, 0)).code, 55);

    // a saved VM starts (restores) and is destroyed
    let saved = uuid_of(VM_SAVED);
    ok(c.create(saved, 0));
    assert_eq!(state_of(&c, VM_SAVED), state::RUNNING);
    ok(c.destroy(saved, 0));
    assert_eq!(state_of(&c, VM_SAVED), state::SHUTOFF);
    assert_eq!(env.fake.vm(VM_SAVED).unwrap().pid, None);

    let log = env.fake.lock().log.clone();
    let calls: Vec<&String> = log.iter().filter(|l| l.starts_with("Invoke")).collect();
    assert_eq!(
        calls,
        [
            "Invoke Msvm_ComputerSystem.RequestStateChange(2)",
            "Invoke Msvm_ComputerSystem.RequestStateChange(9)",
            "Invoke Msvm_ComputerSystem.RequestStateChange(2)",
            "Invoke Msvm_ComputerSystem.RequestStateChange(10)",
            "Invoke Msvm_ShutdownComponent.InitiateShutdown",
            "Invoke Msvm_ComputerSystem.RequestStateChange(2)",
            "Invoke Msvm_ComputerSystem.RequestStateChange(3)",
        ]
    );
    // every job was polled until it completed
    assert!(
        log.iter().filter(|l| *l == "Get Msvm_ConcreteJob").count() >= 12,
        "{log:#?}"
    );
    let ev = ev.lock().unwrap().clone();
    let kinds: Vec<(i32, i32)> = ev.iter().map(|e| (e.1, e.2)).collect();
    assert_eq!(kinds, [(2, 0), (3, 0), (4, 0), (5, 0), (2, 0), (5, 1)]);
    env.fake.assert_clean();
}

const NEW_XML: &str = "<domain type='hyperv'>\n  <name>app02</name>\n  \
    <memory unit='GiB'>4</memory>\n  <currentMemory unit='MiB'>2048</currentMemory>\n  \
    <vcpu>3</vcpu>\n  <os><type>hvm</type></os>\n</domain>\n";

#[test]
fn define_dumpxml_and_undefine() {
    let env = Env::new();
    let (c, ev) = env.open();
    let d = ok(c.define_xml(RStr::from(NEW_XML), 0));
    assert_eq!(d.name.as_str(), "app02");
    assert_eq!(d.id, -1);
    let fake_vm = env
        .fake
        .lock()
        .vms
        .iter()
        .find(|v| v.name == "app02")
        .cloned()
        .unwrap();
    assert_eq!(
        (fake_vm.limit_mb, fake_vm.mem_mb, fake_vm.vcpus),
        (4096, 2048, 3)
    );
    assert_eq!(d.uuid, uuid_of(&fake_vm.guid));
    let info = ok(c.get_info(d.uuid));
    assert_eq!(
        (info.max_mem_kib, info.memory_kib, info.nr_virt_cpu),
        (4 << 20, 2 << 20, 3)
    );

    let xml = ok(c.get_xml_desc(d.uuid, 0)).to_string();
    let dom = rvirt_xml::Element::parse(&xml).unwrap();
    assert_eq!(dom.attr("type"), Some("hyperv"));
    let text = |n: &str| dom.child(n).map(|e| e.text().trim().to_string());
    assert_eq!(text("name").as_deref(), Some("app02"));
    assert_eq!(
        text("uuid").as_deref(),
        Some(fake_vm.guid.to_lowercase().as_str())
    );
    assert_eq!(text("memory").as_deref(), Some("4194304"));
    assert_eq!(text("currentMemory").as_deref(), Some("2097152"));
    assert_eq!(text("vcpu").as_deref(), Some("3"));

    // a document naming the domain changes it (its name too, by UUID)
    let edited = xml.replace(
        "<vcpu placement='static'>3</vcpu>",
        "<vcpu placement='static'>6</vcpu>",
    );
    assert_ne!(edited, xml);
    let again = ok(c.define_xml(RStr::from(edited.as_str()), 0));
    assert_eq!(again.uuid, d.uuid);
    assert_eq!(ok(c.get_info(d.uuid)).nr_virt_cpu, 6);
    assert_eq!(ok(c.get_xml_desc(d.uuid, 2)).to_string(), edited);
    let renamed = edited.replace("<name>app02</name>", "<name>app03</name>");
    assert_eq!(
        ok(c.define_xml(RStr::from(renamed.as_str()), 0))
            .name
            .as_str(),
        "app03"
    );
    let back = ok(c.define_xml(RStr::from(edited.as_str()), 0));
    assert_eq!(back.name.as_str(), "app02");
    // another domain's name under a new UUID is refused
    let clash = NEW_XML.replace(
        "<name>app02</name>",
        "<name>web01</name><uuid>5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f</uuid>",
    );
    let e = fails(c.define_xml(RStr::from(clash.as_str()), 0));
    assert_eq!(e.code, 28, "{}", e.message);
    assert!(
        e.message.contains("'web01' already exists"),
        "{}",
        e.message
    );
    // an active domain's definition is not changed
    ok(c.create(d.uuid, 0));
    let e = fails(c.define_xml(RStr::from(NEW_XML), 0));
    assert_eq!(e.code, 55, "{}", e.message);
    ok(c.destroy(d.uuid, 0));
    let bad = NEW_XML.replace("<vcpu>3</vcpu>", "<vcpu>three</vcpu>");
    let e = fails(c.define_xml(RStr::from(bad.as_str()), 0));
    assert!(e.message.contains("domain/vcpu"), "{}", e.message);
    let kvm = NEW_XML.replace("type='hyperv'", "type='kvm'");
    let e = fails(c.define_xml(RStr::from(kvm.as_str()), 0));
    assert!(e.message.contains("domain/@type"), "{}", e.message);

    // autostart through ModifySystemSettings
    ok(c.set_autostart(d.uuid, true));
    assert!(ok(c.get_autostart(d.uuid)));
    ok(c.set_autostart(d.uuid, false));
    assert!(!ok(c.get_autostart(d.uuid)));

    // an active domain cannot be undefined
    ok(c.create(d.uuid, 0));
    assert_eq!(fails(c.undefine(d.uuid, 0)).code, 55);
    ok(c.destroy(d.uuid, 0));
    ok(c.undefine(d.uuid, 0));
    assert_eq!(fails(c.lookup_by_name(RStr::from("app02"))).code, 42);
    assert!(env.fake.lock().vms.iter().all(|v| v.name != "app02"));

    let log = env.fake.lock().log.clone();
    assert!(
        log.contains(&"Invoke Msvm_VirtualSystemManagementService.DefineSystem(app02)".to_string()),
        "{log:#?}"
    );
    assert!(log.contains(&"Invoke Msvm_VirtualSystemManagementService.ModifyResourceSettings(Msvm_MemorySettingData,Msvm_ProcessorSettingData)".to_string()), "{log:#?}");
    assert!(
        log.contains(&"Invoke Msvm_VirtualSystemManagementService.DestroySystem".to_string()),
        "{log:#?}"
    );
    let ev = ev.lock().unwrap().clone();
    assert_eq!(
        ev.first().map(|e| (e.0.as_str(), e.1, e.2)),
        Some(("app02", 0, 0))
    );
    assert!(ev.contains(&("app03".to_string(), 0, 1)), "{ev:?}");
    assert_eq!(ev.last().map(|e| (e.0.as_str(), e.1)), Some(("app02", 1)));
    env.fake.assert_clean();
}

#[test]
fn memory_and_vcpus_of_a_vm_that_is_off() {
    let env = Env::new();
    let (c, _) = env.open();
    let db = uuid_of(VM_DB);
    // VIR_DOMAIN_MEM_MAXIMUM | AFFECT_CONFIG, then the current size
    ok(c.set_memory_flags(db, 8 << 20, 4 | 2));
    ok(c.set_memory_flags(db, 3 << 20, 2));
    let i = ok(c.get_info(db));
    assert_eq!((i.max_mem_kib, i.memory_kib), (8 << 20, 3 << 20));
    let e = fails(c.set_memory_flags(db, 9 << 20, 2));
    assert_eq!(e.code, 8, "{}", e.message);
    // the current state (off) is the definition
    ok(c.set_vcpus_flags(db, 6, 0));
    assert_eq!(ok(c.get_info(db)).nr_virt_cpu, 6);
    assert_eq!(fails(c.set_vcpus_flags(db, 0, 2)).code, 8);
    let vm = env.fake.vm(VM_DB).unwrap();
    assert_eq!((vm.limit_mb, vm.mem_mb, vm.vcpus), (8192, 3072, 6));
    // a running VM: live is no-support, config is refused while it runs
    assert_eq!(fails(c.set_vcpus_flags(uuid_of(VM_WEB), 2, 1)).code, 3);
    assert_eq!(fails(c.set_vcpus_flags(uuid_of(VM_WEB), 2, 2)).code, 55);
    env.fake.assert_clean();
}

#[test]
fn dumpxml_of_an_existing_vm() {
    let env = Env::new();
    let (c, _) = env.open();
    let xml = ok(c.get_xml_desc(uuid_of(VM_WEB), 0)).to_string();
    let dom = rvirt_xml::Element::parse(&xml).unwrap();
    assert_eq!(dom.attr("id"), Some("4242"));
    assert_eq!(
        dom.child("description").map(|d| d.text()),
        Some("front end\ntier 1".to_string())
    );
    assert_eq!(
        dom.child("memory").map(|d| d.text()),
        Some("8388608".into())
    );
    assert_eq!(
        dom.child("currentMemory").map(|d| d.text()),
        Some("4194304".into())
    );
    assert_eq!(dom.child("vcpu").map(|d| d.text()), Some("4".into()));
    // generation 2: UEFI
    assert_eq!(
        dom.child("os").and_then(|o| o.attr("firmware")),
        Some("efi")
    );
    // a SCSI disk and DVD (generation 2), two NICs, one of them on a switch
    let devices = dom.child("devices").unwrap().to_xml_string();
    assert_eq!(
        devices.trim_end(),
        "<devices>\n  <disk type='file' device='disk'>\n    <source file='C:\\ProgramData\\Microsoft\\Windows\\Virtual Hard Disks\\web01.vhdx'/>\n    <target dev='sda' bus='scsi'/>\n    <address type='drive' controller='0' bus='0' target='0' unit='0'/>\n  </disk>\n  \
         <disk type='file' device='cdrom'>\n    <source file='C:\\iso\\tools.iso'/>\n    <target dev='sdb' bus='scsi'/>\n    <readonly/>\n    <address type='drive' controller='0' bus='0' target='0' unit='1'/>\n  </disk>\n  \
         <interface type='bridge'>\n    <mac address='00:15:5d:0a:0b:0c'/>\n    <source bridge='External Switch'/>\n  </interface>\n  \
         <interface type='bridge'>\n    <mac address='00:15:5d:0a:0b:0d'/>\n  </interface>\n</devices>"
    );
    let db = ok(c.get_xml_desc(uuid_of(VM_DB), 0)).to_string();
    assert!(!db.contains("firmware"), "{db}");
    // generation 1: IDE 0:0 disk, IDE 1:0 DVD
    assert!(
        db.contains(
            "<source file='D:\\VMs\\db01\\db01.vhd'/>\n      <target dev='hda' bus='ide'/>"
        ),
        "{db}"
    );
    assert!(
        db.contains("<source file='D:\\iso\\install.iso'/>\n      <target dev='hdc' bus='ide'/>"),
        "{db}"
    );
    assert!(
        db.contains("<address type='drive' controller='0' bus='1' target='0' unit='0'/>"),
        "{db}"
    );
    assert!(!db.contains(" id="), "{db}");
    env.fake.assert_clean();
}

#[test]
fn wrong_password_is_a_clear_auth_error() {
    let env = Env::new();
    std::fs::write(
        env.dir.path().join("auth.conf"),
        "[credentials-hv]\nusername=hvadmin\npassword=wrong\n[auth-hyperv-default]\ncredentials=hv\n",
    )
    .unwrap();
    let e = env
        .open_with(&env.uri(), false)
        .err()
        .expect("open must fail");
    assert_eq!(e.code, 45, "VIR_ERR_AUTH_FAILED: {}", e.message);
    assert!(e.message.contains("authentication failed"), "{}", e.message);
    assert!(e.message.contains("'hvadmin'"), "{}", e.message);
    assert!(env.fake.lock().log.contains(&"401".to_string()));
    // no password at all
    std::fs::write(env.dir.path().join("auth.conf"), "").unwrap();
    let e = env
        .open_with(&env.uri(), false)
        .err()
        .expect("open must fail");
    assert_eq!(e.code, 45, "{}", e.message);
    assert!(
        e.message
            .contains("no password for administrator@127.0.0.1"),
        "{}",
        e.message
    );
    env.fake.assert_clean();
}

#[test]
fn soap_fault_names_the_call() {
    let env = Env::new();
    let (c, _) = env.open();
    env.fake.lock().fault_on = Some("RequestStateChange".into());
    let e = fails(c.create(uuid_of(VM_DB), 0));
    assert_eq!(e.code, 9, "{}", e.message);
    assert!(
        e.message.contains("Msvm_ComputerSystem.RequestStateChange"),
        "{}",
        e.message
    );
    assert!(e.message.contains("w:InternalError"), "{}", e.message);
    assert!(e.message.contains("Generic failure"), "{}", e.message);
    assert_eq!(state_of(&c, VM_DB), state::SHUTOFF);
    env.fake.assert_clean();
}

#[test]
fn failed_job_names_its_error() {
    let env = Env::new();
    let (c, ev) = env.open();
    env.fake.lock().fail_next_job = Some((
        32768,
        "'db01' failed to start. (Virtual machine ID 0B6C6C35-7D4E-4D3A-9E1F-2A3B4C5D6E7F): Not enough memory in the system to start the virtual machine db01.".into(),
    ));
    let e = fails(c.create(uuid_of(VM_DB), 0));
    assert_eq!(e.code, 9, "{}", e.message);
    assert!(
        e.message.contains("RequestStateChange(2) of 'db01'"),
        "{}",
        e.message
    );
    assert!(e.message.contains("state 10 (exception)"), "{}", e.message);
    assert!(e.message.contains("error 32768"), "{}", e.message);
    assert!(
        e.message.contains("Not enough memory in the system"),
        "{}",
        e.message
    );
    assert_eq!(state_of(&c, VM_DB), state::SHUTOFF);
    assert!(ev.lock().unwrap().is_empty(), "no event for a failed start");
    // a failed DefineSystem job leaves nothing behind
    env.fake.lock().fail_next_job = Some((32768, "The operation failed.".into()));
    let e = fails(c.define_xml(RStr::from(NEW_XML), 0));
    assert!(
        e.message.contains("DefineSystem of 'app02'"),
        "{}",
        e.message
    );
    assert!(env.fake.lock().vms.iter().all(|v| v.name != "app02"));
    env.fake.assert_clean();
}

#[test]
fn a_job_that_never_ends_times_out() {
    let env = Env::new();
    let (mut c, _) = env.open();
    c.set_job_policy(JobPolicy {
        timeout: Duration::from_millis(200),
        first_poll: Duration::from_millis(5),
        max_poll: Duration::from_millis(20),
    });
    env.fake.lock().hang_next_job = true;
    let e = fails(c.suspend(uuid_of(VM_WEB)));
    assert_eq!(e.code, 68, "VIR_ERR_OPERATION_TIMEOUT: {}", e.message);
    assert!(
        e.message.contains("RequestStateChange(9) of 'web01'"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("did not end") && e.message.contains("state 4"),
        "{}",
        e.message
    );
    let polls = env
        .fake
        .lock()
        .log
        .iter()
        .filter(|l| *l == "Get Msvm_ConcreteJob")
        .count();
    assert!(polls >= 3, "the job was polled {polls} times");
    env.fake.assert_clean();
}

#[test]
fn bad_uris_are_refused_naming_the_problem() {
    let env = Env::new();
    for (uri, what) in [
        ("hyperv:///", "has no host"),
        ("hyperv://h/?transport=ftp", "'transport'"),
        ("hyperv://h/?frobnicate=1", "'frobnicate'"),
        ("hyperv://h/system", "takes none"),
        ("hyperv://h/?no_verify=yes", "'no_verify'"),
    ] {
        let e = env.open_with(uri, false).err().expect(uri);
        assert_eq!(e.code, 8, "{uri}: {}", e.message);
        assert!(e.message.contains(what), "{uri}: {}", e.message);
    }
    // nothing listens: a transport error naming the endpoint
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let uri = format!(
        "hyperv://127.0.0.1:{port}/?transport=http&authfile={}",
        env.dir.path().join("auth.conf").display()
    );
    let e = env.open_with(&uri, false).err().expect("nothing listens");
    assert!(
        e.message
            .contains(&format!("http://127.0.0.1:{port}/wsman")),
        "{}",
        e.message
    );
}

#[test]
fn read_only_and_unsupported_calls() {
    let env = Env::new();
    let (ro, _) = env.open_with(&env.uri(), true).unwrap();
    let e = fails(ro.create(uuid_of(VM_DB), 0));
    assert_eq!(e.code, 29, "{}", e.message);
    assert!(e.message.contains("read only"), "{}", e.message);
    assert_eq!(fails(ro.define_xml(RStr::from(NEW_XML), 0)).code, 29);
    let (c, _) = env.open();
    for (e, op) in [
        (
            fails(c.create_xml(RStr::from(NEW_XML), 0)),
            "virDomainCreateXML",
        ),
        (
            fails(c.domain_xml_to_native(RStr::from("x"), RStr::from(NEW_XML), 0)),
            "virConnectDomainXMLToNative",
        ),
        (
            fails(c.domain_xml_from_native(RStr::from("x"), RStr::from(""), 0)),
            "virConnectDomainXMLFromNative",
        ),
    ] {
        assert_eq!(e.code, 3, "{}", e.message);
        assert!(
            e.message.contains(op) && e.message.contains("hyperv driver"),
            "{}",
            e.message
        );
    }
    for (e, op) in [
        (
            fails(c.attach_device_flags(uuid_of(VM_DB), RStr::from("<disk/>"), 0)),
            "virDomainAttachDeviceFlags",
        ),
        (
            fails(c.snapshot_list(uuid_of(VM_DB), 0)),
            "virDomainListAllSnapshots",
        ),
        (
            fails(c.set_vcpus_flags(uuid_of(VM_DB), 2, 2 | 4)),
            "virDomainSetVcpusFlags",
        ),
        (
            fails(c.set_memory_flags(uuid_of(VM_WEB), 1 << 20, 0)),
            "virDomainSetMemoryFlags",
        ),
    ] {
        assert_eq!(e.code, 3, "{}", e.message);
        assert!(
            e.message.contains(op) && e.message.contains("hyperv driver"),
            "{}",
            e.message
        );
    }
    // unknown flags are refused
    assert_eq!(fails(c.destroy(uuid_of(VM_WEB), 1 << 5)).code, 8);
    env.fake.assert_clean();
}

#[test]
fn https_with_a_self_signed_certificate() {
    let fake = Fake::start_tls();
    let env = Env::with(fake);
    let base = format!(
        "hyperv://127.0.0.1:{}/?authfile={}",
        env.fake.port,
        env.dir.path().join("auth.conf").display()
    );
    // https is the default transport; the certificate is refused unless no_verify=1
    let e = env
        .open_with(&base, false)
        .err()
        .expect("self-signed certificate");
    assert!(e.message.contains("no_verify=1"), "{}", e.message);
    assert_eq!(e.code, 9, "{}", e.message);
    assert!(
        e.message
            .contains(&format!("https://127.0.0.1:{}/wsman", env.fake.port)),
        "{}",
        e.message
    );
    let (c, _) = env
        .open_with(&format!("{base}&no_verify=1"), false)
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(ok(c.list_all_domains(0)).len(), 3);
    ok(c.create(uuid_of(VM_DB), 0));
    assert_eq!(state_of(&c, VM_DB), state::RUNNING);
    env.fake.assert_clean();
}

/// The fake's checks themselves: requests that break the rules are caught (so a clean
/// run of the plugin means something).
#[test]
fn the_fake_endpoint_catches_malformed_requests() {
    let fake = Fake::start();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", fake.user, fake.password)
        )
    );
    let post = |ct: &str, doc: &str| {
        let mut r = agent
            .post(&fake.endpoint())
            .header("Content-Type", ct)
            .header("Authorization", &auth)
            .send(doc.as_bytes())
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let to = fake.endpoint();
    let header = |action: &str, ruri: &str, mid: &str| {
        format!(
            "<s:Header><a:To>{to}</a:To><w:ResourceURI s:mustUnderstand=\"true\">{ruri}</w:ResourceURI><a:ReplyTo><a:Address s:mustUnderstand=\"true\">{}</a:Address></a:ReplyTo><a:Action s:mustUnderstand=\"true\">{action}</a:Action><w:MaxEnvelopeSize s:mustUnderstand=\"true\">153600</w:MaxEnvelopeSize><a:MessageID>{mid}</a:MessageID><w:OperationTimeout>PT60S</w:OperationTimeout></s:Header>",
            fake::ANON
        )
    };
    let env = |h: String, body: &str| {
        format!(
            "<s:Envelope xmlns:s=\"{}\" xmlns:a=\"{}\" xmlns:w=\"{}\" xmlns:n=\"{}\">{h}<s:Body>{body}</s:Body></s:Envelope>",
            fake::SOAP12,
            fake::WSA,
            fake::WSMAN,
            fake::WSEN
        )
    };
    let all = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/*";
    let mid = || format!("uuid:{}", uuid::Uuid::new_v4());
    let enum_body = |wql: &str| {
        format!(
            "<n:Enumerate><w:OptimizeEnumeration/><w:MaxElements>5</w:MaxElements><w:Filter Dialect=\"{}\">{wql}</w:Filter></n:Enumerate>",
            fake::WQL
        )
    };
    let ct = "application/soap+xml;charset=UTF-8";
    // a well-formed request passes
    let good = env(
        header(fake::ENUMERATE, all, &mid()),
        &enum_body("SELECT * FROM Msvm_ComputerSystem"),
    );
    let (st, text) = post(ct, &good);
    assert_eq!(st, 200, "{text}");
    assert!(text.contains("Msvm_ComputerSystem_Type"), "{text}");
    assert!(fake.lock().violations.is_empty());
    let reused = "uuid:2A4E6C8B-0D1F-4A3B-9C5D-7E9F1A2B3C4D";
    let cases: Vec<(String, String, &str)> = vec![
        (
            "text/xml; charset=utf-8".into(),
            good.clone(),
            "Content-Type",
        ),
        (
            ct.into(),
            good.replace(fake::SOAP12, fake::SOAP11),
            "SOAP 1.1",
        ),
        (
            ct.into(),
            env(
                header(fake::ENUMERATE, all, "urn:not-a-uuid"),
                &enum_body("SELECT * FROM Msvm_ComputerSystem"),
            ),
            "MessageID",
        ),
        (
            ct.into(),
            env(
                header(fake::ENUMERATE, all, reused),
                &enum_body("SELECT * FROM Msvm_ComputerSystem"),
            ),
            "",
        ),
        (
            ct.into(),
            env(
                header(fake::ENUMERATE, all, reused),
                &enum_body("SELECT * FROM Msvm_ComputerSystem"),
            ),
            "used before",
        ),
        (
            ct.into(),
            env(
                header(fake::ENUMERATE, all, &mid()),
                &enum_body("SELECT name FROM Msvm_ComputerSystem"),
            ),
            "malformed WQL",
        ),
        (
            ct.into(),
            env(
                header(fake::ENUMERATE, all, &mid()),
                "<n:Enumerate><w:MaxElements>5</w:MaxElements><w:Filter Dialect=\"http://schemas.microsoft.com/wbem/wsman/1/WQL\">SELECT * FROM Msvm_ComputerSystem</w:Filter></n:Enumerate>",
            ),
            "without wsman:OptimizeEnumeration",
        ),
        (
            ct.into(),
            env(
                header(fake::ENUMERATE, all, &mid()),
                "<n:Enumerate><w:Filter Dialect=\"http://schemas.dmtf.org/wbem/cql/1/dsp0202.pdf\">SELECT * FROM Msvm_ComputerSystem</w:Filter></n:Enumerate>",
            ),
            "Dialect",
        ),
        (
            ct.into(),
            env(
                header(fake::PULL, all, &mid()),
                "<n:Pull><n:EnumerationContext>uuid:00000000-0000-0000-0000-000000000000</n:EnumerationContext><n:MaxElements>5</n:MaxElements></n:Pull>",
            ),
            "did not issue",
        ),
        (
            ct.into(),
            env(
                header(
                    "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/Msvm_ComputerSystem/RequestStateChange",
                    "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/Msvm_VirtualSystemManagementService",
                    &mid(),
                ),
                "<p:RequestStateChange_INPUT xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/Msvm_ComputerSystem\"><p:RequestedState>2</p:RequestedState></p:RequestStateChange_INPUT>",
            ),
            "followed by /METHOD",
        ),
        (
            ct.into(),
            good.replace("<a:To>", "<a:Too>").replace("</a:To>", "</a:Too>"),
            "wsa:To",
        ),
        (
            ct.into(),
            good.replace(" s:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate", ">http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate"),
            "wsa:Action without",
        ),
    ];
    for (ct, doc, what) in cases {
        let before = fake.lock().violations.len();
        let (st, text) = post(&ct, &doc);
        let s = fake.lock();
        if what.is_empty() {
            assert_eq!(st, 200, "{text}");
            continue;
        }
        assert_eq!(st, 500, "{what}: {text}");
        assert_eq!(s.violations.len(), before + 1, "{what}: {text}");
        let v = s.violations.last().unwrap();
        assert!(
            v.contains(what),
            "expected a violation about {what}, got {v}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The built plugin through the `rvirt` binary and the conformance kit (`cargo build -p
// rvirt-cli -p rvirt-tck -p rvirt-plugin-hyperv` first).

fn run(cmd: &mut std::process::Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("$ {cmd:?}\n{text}");
    (out.status.success(), text)
}

#[test]
fn the_built_plugin_through_the_rvirt_cli() {
    let env = Env::new();
    let plugins = env.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        rvirt_tests::built("librvirt_plugin_hyperv.so"),
        plugins.join("librvirt_plugin_hyperv.so"),
    )
    .unwrap();
    let uri = env.uri();
    let rvirt = |args: &[&str]| {
        run(std::process::Command::new(rvirt_tests::built("rvirt"))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", env.dir.path().join("home"))
            .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
            .env("RVIRT_PLUGIN_PATH", &plugins)
            .arg("-c")
            .arg(&uri)
            .args(args))
    };
    let (ok_, text) = rvirt(&["plugin", "list"]);
    assert!(ok_, "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("hyperv") && l.contains(env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let (ok_, text) = rvirt(&["list", "--all"]);
    assert!(ok_, "{text}");
    for want in ["web01", "db01", "running", "shut off"] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let (ok_, text) = rvirt(&["start", "db01"]);
    assert!(ok_, "{text}");
    let (ok_, text) = rvirt(&["domstate", "db01"]);
    assert!(ok_ && text.trim() == "running", "{text}");
    let (ok_, text) = rvirt(&["dominfo", "web01"]);
    assert!(ok_, "{text}");
    assert!(
        text.contains("8388608 KiB") && text.contains("4194304 KiB"),
        "{text}"
    );
    let (ok_, text) = rvirt(&["dumpxml", "web01"]);
    assert!(
        ok_ && text.contains("<domain type='hyperv' id='4242'>"),
        "{text}"
    );
    let (ok_, text) = rvirt(&["create", "/dev/null"]);
    assert!(!ok_, "{text}");
    let (ok_, text) = rvirt(&["suspend", "nope"]);
    assert!(!ok_ && text.contains("'nope'"), "{text}");
    env.fake.assert_clean();
}

/// `rvirt-tck` against the fake endpoint. Skipped: `hv.transient` (Hyper-V has no
/// transient domains; libvirt's hyperv driver has no virDomainCreateXML either).
#[test]
fn the_conformance_kit_against_the_fake_endpoint() {
    let env = Env::new();
    let (ok_, text) = run(std::process::Command::new(rvirt_tests::built("rvirt-tck"))
        .arg("--uri")
        .arg(env.uri())
        .arg("--skip")
        .arg("hv.transient")
        .arg(rvirt_tests::built("librvirt_plugin_hyperv.so")));
    assert!(ok_, "{text}");
    for check in [
        "PASS manifest",
        "PASS hv.lifecycle",
        "PASS hv.xml-round-trip",
        "PASS hv.events",
        "PASS hv.hostile-input",
    ] {
        assert!(text.contains(check), "{check}: {text}");
    }
    env.fake.assert_clean();
}

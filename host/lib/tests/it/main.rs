//! Integration tests of the host runtime against real plugin shared objects: the test
//! driver built by this workspace and the frozen fixtures of `tests/fixtures`.
//!
//! They need `cargo build --workspace` first (the test driver's `.so`); a missing plugin is
//! a failure, never a skip.

mod host_services;
mod networks;
mod policy;
mod pools;
mod pools_fs;
mod storage;

use rvirt_host::{DomainState, PluginStatus, Runtime};
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, OnceLock},
};

/// `1.N` of the host's plugin API.
fn current_minor() -> String {
    rvirt_host::PLUGIN_API_VERSION
        .rsplit_once('.')
        .map(|(mm, _)| mm.to_string())
        .unwrap()
}

use rvirt_tests::{profile_dir, workspace_root};

/// A directory holding only the test driver plugin.
fn test_plugin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let so = rvirt_tests::built("librvirt_plugin_test.so");
        let dir = rvirt_tests::process_temp_dir("rvirt-it-plugins", "");
        std::fs::copy(&so, dir.join("librvirt_plugin_test.so")).unwrap();
        dir
    })
    .clone()
}

/// Builds a frozen fixture workspace and returns its plugin's path.
fn fixture(workspace: &str, lib: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let target = profile_dir().parent().unwrap().join("fixtures");
    let manifest = workspace_root()
        .join("tests/fixtures")
        .join(workspace)
        .join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo to build a fixture plugin");
    assert!(
        status.success(),
        "building fixture {} failed",
        manifest.display()
    );
    let so = target.join("debug").join(format!("lib{lib}.so"));
    assert!(so.is_file(), "{} was not built", so.display());
    so
}

/// A runtime over the given files, each copied into a fresh directory.
fn runtime_with(files: &[(&Path, &str)]) -> (Runtime, PathBuf) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = rvirt_tests::process_temp_dir("rvirt-it-rt", &format!("-{n}"));
    for (src, name) in files {
        std::fs::copy(src, dir.join(name)).unwrap();
    }
    (Runtime::with_search_path(vec![dir.clone()]), dir)
}

fn refusal(rt: &Runtime, file: &str) -> String {
    let r = rt
        .plugins()
        .iter()
        .find(|r| r.path.file_name().is_some_and(|n| n == file))
        .unwrap_or_else(|| panic!("{file} not found in the search path"));
    match &r.status {
        PluginStatus::Refused(e) => e.to_string(),
        other => panic!("{file} should have been refused, got {other:?}"),
    }
}

#[test]
fn current_plugin_loads_and_drives_domains() {
    let rt = Runtime::with_search_path(vec![test_plugin_dir()]);
    let loaded: Vec<_> = rt
        .plugins()
        .iter()
        .filter_map(|r| match &r.status {
            PluginStatus::Loaded(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].name, "test");
    assert_eq!(loaded[0].api_version, rvirt_host::PLUGIN_API_VERSION);
    assert_eq!(loaded[0].schemes, vec!["test".to_string()]);

    // A private node file, so the shared test:///default state of other tests is untouched.
    let node = std::env::temp_dir().join(format!("rvirt-it-node-{}.xml", std::process::id()));
    std::fs::write(
        &node,
        "<node><domain type='test'><name>a</name><memory unit='MiB'>128</memory><vcpu>3</vcpu><os><type>hvm</type></os></domain></node>",
    )
    .unwrap();
    let conn = rt
        .open(&format!("test://{}", node.display()), false)
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    conn.subscribe_events(move |e| {
        ev.lock()
            .unwrap()
            .push((e.domain.name.clone(), e.event_str()))
    })
    .unwrap();
    let a = conn.lookup_domain_by_name("a").unwrap();
    assert_eq!(a.get_state().unwrap().0, DomainState::Running);
    assert_eq!(a.get_info().unwrap().max_mem_kib, 131072);
    // 1.1 methods work on a 1.1 plugin.
    assert_eq!(a.get_vcpus_flags(rvirt_host::VCPU_MAXIMUM).unwrap(), 3);
    assert_eq!(a.get_os_type().unwrap(), "hvm");
    a.suspend().unwrap();
    assert_eq!(a.get_state().unwrap().0, DomainState::Paused);
    a.resume().unwrap();
    a.destroy(0).unwrap();
    assert_eq!(a.get_state().unwrap(), (DomainState::Shutoff, 2));
    let b = conn
        .define_xml("<domain type='test'><name>b</name><memory>1024</memory><os><type>hvm</type></os></domain>", 0)
        .unwrap();
    assert_eq!(b.id(), -1);
    assert_eq!(conn.list_all_domains(0).unwrap().len(), 2);
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            ("a".to_string(), "Suspended"),
            ("a".to_string(), "Resumed"),
            ("a".to_string(), "Stopped"),
            ("b".to_string(), "Defined")
        ]
    );
    std::fs::remove_file(node).ok();
}

#[test]
fn older_minor_plugin_loads_and_lacking_methods_answer_no_support() {
    let so = fixture("old-minor", "rvirt_fixture_legacy");
    let (rt, _dir) = runtime_with(&[(&so, "librvirt_fixture_legacy.so")]);
    match &rt.plugins()[0].status {
        PluginStatus::Loaded(m) => {
            assert_eq!(m.name, "legacy");
            assert_eq!(m.api_version, "1.0.0");
        }
        other => panic!("the 1.0 plugin should load into the 1.1 host: {other:?}"),
    }
    let conn = rt.open("legacy:///", false).unwrap();
    assert_eq!(conn.get_type().unwrap(), "Legacy");
    let d = conn.lookup_domain_by_name("legacy").unwrap();
    d.suspend().unwrap();
    assert_eq!(d.get_state().unwrap().0, DomainState::Paused);
    for err in [
        d.get_vcpus_flags(0).unwrap_err(),
        d.get_os_type().map(|_| 0).unwrap_err(),
        d.has_managed_save_image(0).map(|_| 0).unwrap_err(),
        conn.domain_xml_to_native("qemu-argv", "<domain/>", 0)
            .map(|_| 0)
            .unwrap_err(),
    ] {
        assert!(err.is_no_support(), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("not supported") && msg.contains("driver 'legacy'"),
            "{msg}"
        );
        assert!(msg.contains(": vir"), "names the operation: {msg}");
    }
}

#[test]
fn minor_1_1_plugin_loads_into_the_1_2_host() {
    let so = fixture("minor-1-1", "rvirt_fixture_legacy11");
    let (rt, _dir) = runtime_with(&[(&so, "librvirt_fixture_legacy11.so")]);
    match &rt.plugins()[0].status {
        PluginStatus::Loaded(m) => assert_eq!(m.api_version, "1.1.0"),
        other => panic!("the 1.1 plugin should load into the 1.2 host: {other:?}"),
    }
    let conn = rt.open("legacy11:///", false).unwrap();
    let d = conn.lookup_domain_by_name("legacy11").unwrap();
    assert_eq!(d.get_state().unwrap().0, DomainState::Running);
    // A 1.1 method the plugin left at the trait's default, and a 1.2 method its vtable
    // does not have at all: both answer no-support, naming the operation.
    let e = d.get_os_type().unwrap_err();
    assert!(
        e.is_no_support() && e.to_string().contains("virDomainGetOSType"),
        "{e}"
    );
    let e = conn
        .domain_xml_to_native("qemu-argv", "<domain/>", 0)
        .unwrap_err();
    assert!(
        e.is_no_support() && e.to_string().contains("virConnectDomainXMLToNative"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("driver 'legacy11', plugin API 1.1.0"),
        "{e}"
    );
}

#[test]
fn other_major_plugin_is_refused_with_versions_and_file() {
    let so = fixture("other-major", "rvirt_fixture_future");
    let (rt, dir) = runtime_with(&[(&so, "librvirt_fixture_future.so")]);
    let msg = refusal(&rt, "librvirt_fixture_future.so");
    assert!(
        msg.contains(&dir.join("librvirt_fixture_future.so").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("2.0.0"),
        "names the plugin's API version: {msg}"
    );
    assert!(
        msg.contains(&format!("1.0 to {}", current_minor())),
        "names the supported range: {msg}"
    );
    let e = rt.open("future:///", false).unwrap_err();
    assert!(
        e.to_string()
            .contains("no installed plugin serves 'future://'"),
        "{e}"
    );
}

#[test]
fn shared_objects_that_are_not_plugins_are_refused_clearly() {
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.is_file())
    .expect("a system libm to stand for a foreign shared object");
    let garbage = std::env::temp_dir().join(format!("rvirt-it-garbage-{}.so", std::process::id()));
    std::fs::write(&garbage, b"this is not an ELF file").unwrap();
    let (rt, _dir) = runtime_with(&[
        (libm, "libforeign.so"),
        (&garbage, "libgarbage.so"),
        (
            &test_plugin_dir().join("librvirt_plugin_test.so"),
            "librvirt_plugin_test.so",
        ),
    ]);
    let m = refusal(&rt, "libforeign.so");
    assert!(
        m.contains("is not an rvirt plugin") && m.contains("rvirt_plugin_api_version"),
        "{m}"
    );
    let m = refusal(&rt, "libgarbage.so");
    assert!(
        m.contains("cannot load") && m.contains("libgarbage.so"),
        "{m}"
    );
    // The good plugin beside them still works.
    let conn = rt.open("test:///default", true).unwrap();
    assert!(!conn.list_all_domains(0).unwrap().is_empty());
}

#[test]
fn plugin_panic_becomes_an_error_and_the_host_keeps_working() {
    let rt = Runtime::with_search_path(vec![test_plugin_dir()]);
    let node = std::env::temp_dir().join(format!("rvirt-it-panic-{}.xml", std::process::id()));
    std::fs::write(&node, "<node><domain type='test'><name>p</name><memory>1024</memory><os><type>hvm</type></os></domain></node>").unwrap();
    let conn = rt
        .open(
            &format!("test://{}?panic=virDomainSuspend", node.display()),
            false,
        )
        .unwrap();
    let d = conn.lookup_domain_by_name("p").unwrap();
    let e = d.suspend().unwrap_err();
    assert_eq!(e.code(), 1, "VIR_ERR_INTERNAL_ERROR: {e}");
    let msg = e.to_string();
    assert!(
        msg.contains("plugin 'test' panicked in virDomainSuspend"),
        "{msg}"
    );
    // Same connection, same plugin, same process: still serving.
    assert_eq!(d.get_state().unwrap().0, DomainState::Running);
    d.destroy(0).unwrap();
    assert_eq!(d.get_state().unwrap().0, DomainState::Shutoff);
    let other = rt.open("test:///default", true).unwrap();
    assert!(other.lookup_domain_by_name("test").is_ok());
    std::fs::remove_file(node).ok();
}

#[test]
fn read_only_connections_refuse_changes() {
    let rt = Runtime::with_search_path(vec![test_plugin_dir()]);
    let conn = rt.open("test:///default", true).unwrap();
    let e = conn
        .define_xml("<domain type='test'><name>ro</name><memory>1024</memory><os><type>hvm</type></os></domain>", 0)
        .unwrap_err();
    assert_eq!(e.code(), 29, "VIR_ERR_OPERATION_DENIED: {e}");
    let d = conn.lookup_domain_by_name("test").unwrap();
    assert_eq!(d.destroy(0).unwrap_err().code(), 29);
    assert_eq!(d.get_state().unwrap().0, DomainState::Running);
}

#[test]
fn unknown_scheme_names_the_scheme_and_the_hint() {
    let rt = Runtime::with_search_path(vec![test_plugin_dir()]);
    let e = rt.open("xen:///system", false).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("no installed plugin serves 'xen://'") && msg.contains("rvirt plugin list"),
        "{msg}"
    );
    assert_eq!(e.code(), 5, "VIR_ERR_NO_CONNECT");
    assert!(rt.open("::bad", false).is_err());
}

#[test]
fn unknown_flags_are_refused_naming_the_function_and_valid_ones_work() {
    let rt = Runtime::with_search_path(vec![test_plugin_dir()]);
    let node = std::env::temp_dir().join(format!("rvirt-it-flags-{}.xml", std::process::id()));
    std::fs::write(
        &node,
        "<node><domain type='test'><name>f</name><memory>1024</memory><vcpu>2</vcpu><os><type>hvm</type></os></domain></node>",
    )
    .unwrap();
    let conn = rt
        .open(&format!("test://{}", node.display()), false)
        .unwrap();
    let d = conn.lookup_domain_by_name("f").unwrap();
    let xml = |name: &str| {
        format!(
            "<domain type='test'><name>{name}</name><memory>1024</memory><os><type>hvm</type></os></domain>"
        )
    };
    fn unit<T>(r: Result<T, rvirt_host::Error>) -> Result<(), rvirt_host::Error> {
        r.map(|_| ())
    }
    // One bit each operation does not define (or defines but the test driver refuses,
    // as libvirt's does), with the value libvirt gives it.
    let refused = [
        (
            "virConnectListAllDomains",
            0x4000,
            unit(conn.list_all_domains(0x4000)),
        ), // HAS_CHECKPOINT
        (
            "virDomainDefineXMLFlags",
            0x2,
            unit(conn.define_xml(&xml("g"), 0x2)),
        ),
        (
            "virDomainCreateXML",
            0x2,
            unit(conn.create_xml(&xml("h"), 0x2)),
        ), // AUTODESTROY
        ("virDomainGetXMLDesc", 0x4, unit(d.get_xml_desc(0x4))), // UPDATE_CPU
        ("virDomainGetXMLDesc", 0x10, unit(d.get_xml_desc(0x10))),
        ("virDomainGetVcpusFlags", 0x8, unit(d.get_vcpus_flags(0x8))), // GUEST
        (
            "virDomainHasManagedSaveImage",
            0x1,
            unit(d.has_managed_save_image(0x1)),
        ),
        ("virDomainShutdownFlags", 0x1, d.shutdown(0x1)), // ACPI_POWER_BTN
        ("virDomainReboot", 0x20, d.reboot(0x20)),
        ("virDomainDestroyFlags", 0x2, d.destroy(0x2)), // REMOVE_LOGS
        ("virDomainUndefineFlags", 0x4, d.undefine(0x4)), // NVRAM
        ("virDomainCreateWithFlags", 0x8, d.clone().create(0x8)), // FORCE_BOOT
    ];
    for (op, bits, r) in refused {
        let e = r.expect_err(op);
        assert_eq!(e.code(), 8, "VIR_ERR_INVALID_ARG for {op}: {e}");
        assert_eq!(e.domain(), 12, "VIR_FROM_TEST for {op}: {e}");
        assert!(
            e.to_string()
                .contains(&format!("unsupported flags (0x{bits:x}) in function {op}")),
            "{e}"
        );
    }
    // Nothing a refused call asked for happened.
    assert_eq!(d.get_state().unwrap().0, DomainState::Running);
    assert!(d.is_persistent().unwrap());
    assert_eq!(conn.list_all_domains(0).unwrap().len(), 1);

    // libvirt's flags the test driver honours still work.
    let listed = conn.list_all_domains(0x1 | 0x4 | 0x10).unwrap(); // ACTIVE|PERSISTENT|RUNNING
    assert_eq!(listed.len(), 1);
    let x = d.get_xml_desc(0x1 | 0x2 | 0x8).unwrap(); // SECURE|INACTIVE|MIGRATABLE
    assert!(x.contains("<name>f</name>"), "{x}");
    assert_eq!(d.get_vcpus_flags(0x2 | 0x4).unwrap(), 2); // CONFIG|MAXIMUM
    assert!(!d.has_managed_save_image(0).unwrap());
    d.reboot(0x1).unwrap(); // ACPI_POWER_BTN
    d.destroy(0x1).unwrap(); // GRACEFUL
    assert_eq!(d.get_state().unwrap().0, DomainState::Shutoff);
    let mut d2 = d.clone();
    d2.create(0x1).unwrap(); // PAUSED
    assert_eq!(d.get_state().unwrap().0, DomainState::Paused);
    d.shutdown(0).unwrap();
    let g = conn.define_xml(&xml("g"), 0x1).unwrap(); // VALIDATE
    let h = conn.create_xml(&xml("h"), 0x1 | 0x10).unwrap(); // PAUSED|VALIDATE
    assert_eq!(h.get_state().unwrap().0, DomainState::Paused);
    g.undefine(0x1 | 0x2).unwrap(); // MANAGED_SAVE|SNAPSHOTS_METADATA
    assert!(conn.lookup_domain_by_name("g").is_err());
    std::fs::remove_file(node).ok();
}

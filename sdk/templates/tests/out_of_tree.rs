//! The hypervisor template, generated outside the workspace and built with its own
//! lockfile, loads into the host and serves its scheme at once.
//!
//! The out-of-tree build uses `$RVIRT_EXT_TARGET_DIR`, else `ext/` in this build's target
//! directory (the first build compiles the SDK's dependencies once).

use rvirt_host::{PluginStatus, Runtime};
use rvirt_templates::{Kind, Options, SdkSource};
use std::path::PathBuf;

/// The target directory of out-of-tree builds.
fn ext_target() -> PathBuf {
    std::env::var_os("RVIRT_EXT_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| rvirt_tests::profile_dir().parent().unwrap().join("ext"))
}

const DOMAIN: &str = "<domain type='test'>\n  <name>vm1</name>\n  <memory unit='KiB'>65536</memory>\n  <vcpu>2</vcpu>\n  <os>\n    <type>hvm</type>\n  </os>\n</domain>\n";

#[test]
fn generated_hypervisor_builds_outside_the_workspace_loads_and_runs_domains() {
    let tmp = tempfile::Builder::new()
        .prefix("rvirt-template-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    assert!(
        !tmp.path().starts_with(rvirt_tests::workspace_root()),
        "the project must live outside the workspace"
    );
    let dir = tmp.path().join("tmplhv");
    let files = rvirt_templates::generate(
        &dir,
        &Options {
            name: "tmplhv".into(),
            kind: Kind::Hypervisor,
            version: "0.1.0".into(),
            description: None,
            sdk: SdkSource::Checkout(rvirt_tests::workspace_root()),
        },
    )
    .unwrap();
    assert_eq!(files.len(), 4);
    let so =
        rvirt_templates::build(&dir, "tmplhv", &ext_target()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        dir.join("Cargo.lock").is_file(),
        "the project resolved its own lockfile"
    );

    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(&so, plugins.join(so.file_name().unwrap())).unwrap();
    let rt = Runtime::with_search_path(vec![plugins]);
    match &rt.plugins()[0].status {
        PluginStatus::Loaded(m) => {
            assert_eq!(m.name, "tmplhv");
            assert_eq!(m.schemes, vec!["tmplhv".to_string()]);
            assert_eq!(m.version, "0.1.0");
            assert_eq!(m.api_version, rvirt_host::PLUGIN_API_VERSION);
        }
        other => panic!("the template plugin did not load: {other:?}"),
    }
    let conn = rt.open("tmplhv:///", false).unwrap();
    assert_eq!(conn.get_uri().unwrap(), "tmplhv:///");
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    conn.subscribe_events(move |e| seen.lock().unwrap().push(e.event))
        .unwrap();
    let mut dom = conn.define_xml(DOMAIN, 0).unwrap();
    assert_eq!(dom.name(), "vm1");
    dom.create(0).unwrap();
    let listed: Vec<String> = conn
        .list_all_domains(0)
        .unwrap()
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    assert_eq!(listed, vec!["vm1".to_string()]);
    let active = conn.list_all_domains(1).unwrap();
    assert_eq!(active.len(), 1);
    assert!(active[0].id() > 0);
    assert_eq!(dom.get_info().unwrap().nr_virt_cpu, 2);
    dom.suspend().unwrap();
    dom.resume().unwrap();
    dom.destroy(0).unwrap();
    assert!(conn.list_all_domains(1).unwrap().is_empty());
    dom.undefine(0).unwrap();
    assert!(conn.list_all_domains(0).unwrap().is_empty());
    // defined, started, suspended, resumed, stopped, undefined
    assert_eq!(*events.lock().unwrap(), vec![0, 2, 3, 4, 5, 1]);
}

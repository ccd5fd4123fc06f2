//! Plugins installed by the registry are described by a manifest file beside them: the
//! host starts without loading them and loads each on first use; a manifest file that no
//! longer matches its plugin is refused at that point.

use rvirt_registry::{
    index::{IndexDir, Source},
    install::Installer,
    keys,
    package::{self, PluginFacts},
};

fn mapped(path: &std::path::Path) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.contains(&path.display().to_string())
}

#[test]
fn installed_plugins_load_on_first_use_and_stale_manifests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let so = tmp.path().join("librvirt_plugin_test.so");
    std::fs::copy(rvirt_tests::built("librvirt_plugin_test.so"), &so).unwrap();
    let facts = PluginFacts {
        name: "test".into(),
        version: "0.1.0".into(),
        kind: "hypervisor".into(),
        plugin_api: rvirt_host::PLUGIN_API_VERSION.into(),
        description: "the test driver".into(),
        schemes: vec!["test".into()],
        pool_types: vec!["mock".into()],
        forward_modes: vec!["test".into()],
    };
    let (_, bytes) = package::build(&so, &facts, rvirt_registry::HOST_TARGET, &key).unwrap();
    IndexDir::new(tmp.path().join("index"))
        .publish(&bytes)
        .unwrap();
    let plugins = tmp.path().join("plugins");
    let inst = Installer::new(&plugins, vec![keys::public_text(&key.verifying_key())], "t");
    inst.install(&Source::Dir(tmp.path().join("index")), "test", None)
        .unwrap();
    let real = plugins
        .join("librvirt_plugin_test.so")
        .canonicalize()
        .unwrap();
    let manifest = {
        let mut p = real.clone().into_os_string();
        p.push(rvirt_host::plugin::MANIFEST_SUFFIX);
        std::path::PathBuf::from(p)
    };
    assert!(manifest.is_file());

    let rt = rvirt_host::Runtime::with_search_path(vec![plugins.clone()]);
    assert!(!mapped(&real), "the plugin was loaded at start");
    assert!(rt.served_plugins().is_empty(), "served before any use");
    // the load observer hears of the first load, once
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    assert!(
        rt.set_load_observer(std::sync::Arc::new(move |p: &rvirt_host::ServedPlugin| {
            sink.lock().unwrap().push(p.clone())
        }))
    );
    let conn = rt.open("test:///default", false).unwrap();
    assert!(mapped(&real), "the plugin was not loaded on first use");
    let _again = rt.open("test:///default", false).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(rt.served_plugins(), seen);
    let p = &seen[0];
    assert_eq!(
        (p.name.as_str(), p.version.as_str(), p.api_version.as_str()),
        (
            "test",
            env!("CARGO_PKG_VERSION"),
            rvirt_host::PLUGIN_API_VERSION
        )
    );
    assert_eq!(p.file, plugins.join("librvirt_plugin_test.so"));
    assert_eq!(p.real_file, real);
    assert_eq!(p.schemes, vec!["test"]);
    assert_eq!(p.pool_types, vec!["mock"]);
    assert_eq!(p.forward_modes, vec!["test"]);
    assert!(
        conn.list_all_domains(0)
            .unwrap()
            .iter()
            .any(|d| d.name() == "test")
    );
    match &rt.plugins()[0].status {
        rvirt_host::PluginStatus::Loaded(m) => assert_eq!(m.pool_types, vec!["mock"]),
        other => panic!("{other:?}"),
    }

    // A manifest file saying something else than the plugin: refused on first use.
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("schemes=test", "schemes=other")).unwrap();
    let rt = rvirt_host::Runtime::with_search_path(vec![plugins.clone()]);
    let err = rt.open("other:///", false).unwrap_err().to_string();
    assert!(err.contains("reinstall it"), "{err}");
    assert!(matches!(
        rt.plugins()[0].status,
        rvirt_host::PluginStatus::Refused(_)
    ));
    // A manifest file for another size of file is ignored: the plugin loads at start.
    std::fs::write(&manifest, text.replace("size=", "size=1")).unwrap();
    let rt = rvirt_host::Runtime::with_search_path(vec![plugins]);
    assert!(rt.open("test:///default", false).is_ok());
}

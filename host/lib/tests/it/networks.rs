//! The network facet (plugin API 1.5) through the real loader: the test plugin's `test`
//! backend serves the networks of `test:///default`; a forward mode nothing serves is
//! named; older plugins have no network facet.

use super::{fixture, runtime_with, test_plugin_dir};
use rvirt_host::{PluginStatus, Runtime, networks::list_flags};

#[test]
fn test_default_networks_run_on_the_test_plugin_backend() {
    let root = tempfile::tempdir().unwrap();
    let rt = Runtime::with_search_path(vec![test_plugin_dir()]).with_system_root(root.path());
    let nets = rt.networks("test:///default").unwrap();
    nets.define(
        "<network><name>it-net</name><forward mode='nat'/><ip address='192.168.77.1' prefix='24'><dhcp><host mac='52:54:00:00:00:07' name='seven' ip='192.168.77.7'/></dhcp></ip></network>",
        0,
    )
    .unwrap();
    nets.create("it-net").unwrap();
    assert!(nets.is_active("it-net").unwrap());
    assert!(
        nets.list(list_flags::ACTIVE)
            .unwrap()
            .iter()
            .any(|n| n.name == "it-net")
    );
    let leases = nets.dhcp_leases("it-net", None, 0).unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].hostname, "seven");
    let port = nets
        .port_create(
            "it-net",
            "<networkport><owner><name>vm</name><uuid>11111111-2222-3333-4444-555555555555</uuid></owner><mac address='52:54:00:00:00:07'/></networkport>",
            0,
        )
        .unwrap();
    assert!(
        nets.port_xml("it-net", port.uuid, 0)
            .unwrap()
            .contains("<plug type='network' bridge='virbr")
    );
    nets.port_delete("it-net", port.uuid, 0).unwrap();
    nets.destroy("it-net").unwrap();
    nets.undefine("it-net").unwrap();
    let log = std::fs::read_to_string(root.path().join("test-network-calls.log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "start it-net",
            "plug it-net",
            "unplug it-net",
            "stop it-net"
        ]
    );
}

#[test]
fn a_forward_mode_nothing_serves_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::with_search_path(vec![test_plugin_dir()]);
    let uri = format!("qemu:///embed?root={}", dir.path().display());
    let nets = rt.networks(&uri).unwrap();
    let e = nets
        .define("<network><name>n</name><forward mode='nat'/></network>", 0)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("no network backend serves forward mode 'nat'"),
        "{e}"
    );
    assert!(dir.path().join("etc/networks").is_dir());
}

#[test]
fn plugins_older_than_1_5_have_no_network_facet() {
    let so = fixture("hypervisor-1-4", "rvirt_fixture_host14");
    let (rt, _dir) = runtime_with(&[(&so, "librvirt_fixture_host14.so")]);
    for r in rt.plugins() {
        if let PluginStatus::Loaded(m) = &r.status {
            assert!(m.forward_modes.is_empty(), "{m:?}");
            assert!(!m.kinds().contains(&"network"));
        }
    }
    assert!(
        rt.plugins()
            .iter()
            .any(|r| matches!(r.status, PluginStatus::Loaded(_)))
    );
}

//! The storage facet (plugin API 1.3) through the real loader: the test plugin's `mock`
//! backend, the frozen 1.3 storage fixture, and older plugins without the facet.

use super::{fixture, runtime_with, test_plugin_dir};
use rvirt_host::{PluginStatus, Runtime, StorageBackend};

/// A `mock` pool definition (each test its own name: the mock's table is process-wide).
fn pool(name: &str) -> String {
    format!(
        "<pool type='mock'><name>{name}</name><target><path>/mock/{name}</path></target></pool>"
    )
}

fn vol(name: &str, bytes: u64) -> String {
    format!("<volume><name>{name}</name><capacity unit='bytes'>{bytes}</capacity></volume>")
}

fn mock() -> StorageBackend {
    Runtime::with_search_path(vec![test_plugin_dir()])
        .storage_backend("mock")
        .unwrap()
}

/// A built and started mock pool.
fn started(name: &str) -> (StorageBackend, String) {
    let b = mock();
    let p = pool(name);
    b.build_pool(&p, 0).unwrap();
    b.start_pool(&p).unwrap();
    (b, p)
}

#[test]
fn the_test_plugin_lists_its_pool_type_and_kinds() {
    let rt = Runtime::with_search_path(vec![test_plugin_dir()]);
    let m = match &rt.plugins()[0].status {
        PluginStatus::Loaded(m) => m.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(m.pool_types, vec!["mock".to_string()]);
    assert_eq!(m.kinds(), vec!["hypervisor", "storage", "network"]);
    assert_eq!(m.forward_modes, vec!["test".to_string()]);
    assert!(rt.plugins()[0].refused_pool_types.is_empty());
    let b = rt.storage_backend("mock").unwrap();
    assert_eq!((b.pool_type(), b.plugin()), ("mock", "test"));
}

#[test]
fn pool_and_volume_life_cycle() {
    let b = mock();
    let p = pool("life");
    assert!(!b.check_pool(&p).unwrap(), "not built yet");
    b.build_pool(&p, 0).unwrap();
    b.start_pool(&p).unwrap();
    assert!(b.check_pool(&p).unwrap());
    let created = b.create_volume(&p, &vol("a.img", 4096), 0).unwrap();
    assert!(
        created.contains("<key>mock/life/a.img</key>")
            && created.contains("<capacity unit='bytes'>4096</capacity>"),
        "{created}"
    );
    b.create_volume(&p, &vol("b.img", 1024), 0).unwrap();
    let r = b.refresh_pool(&p).unwrap();
    assert_eq!(r.allocation, 5120);
    assert_eq!(r.capacity, r.allocation + r.available);
    assert_eq!(r.volumes.len(), 2);
    // Volume XML the host parses as libvirt's.
    let v = rvirt_xml::StorageVolume::parse(&r.volumes[0], None).unwrap();
    assert_eq!((v.name(), v.capacity_bytes()), ("a.img", 4096));
    assert_eq!(v.target_path(), Some("mock://life/a.img"));
    b.delete_volume(&p, &vol("a.img", 0), 0).unwrap();
    let r = b.refresh_pool(&p).unwrap();
    assert_eq!(r.volumes.len(), 1);
    assert_eq!(r.allocation, 1024);
    let e = b.delete_volume(&p, &vol("a.img", 0), 0).unwrap_err();
    assert_eq!(e.code(), 50, "VIR_ERR_NO_STORAGE_VOL: {e}");
    let e = b.delete_pool(&p, 0).unwrap_err();
    assert!(e.to_string().contains("still holds volumes"), "{e}");
    b.delete_volume(&p, &vol("b.img", 0), 0).unwrap();
    b.stop_pool(&p).unwrap();
    assert!(!b.check_pool(&p).unwrap());
    b.delete_pool(&p, 0).unwrap();
    assert_eq!(
        b.refresh_pool(&p).unwrap_err().code(),
        49,
        "VIR_ERR_NO_STORAGE_POOL"
    );
}

#[test]
fn upload_then_download_round_trip() {
    let (b, p) = started("streams");
    b.create_volume(&p, &vol("disk", 0), 0).unwrap();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut up = b.upload(&p, &vol("disk", 0), 0, 0, 0).unwrap();
    for chunk in content.chunks(65_536) {
        up.send(chunk).unwrap();
    }
    up.finish().unwrap();
    let mut down = b.download(&p, &vol("disk", 0), 0, 0, 0).unwrap();
    let first = down.recv(1000).unwrap();
    assert_eq!(first.len(), 1000, "chunks are at most what was asked");
    let mut back = first;
    back.extend(down.recv_all(65_536).unwrap());
    assert_eq!(back, content);
    // A window of the volume.
    let mut part = b.download(&p, &vol("disk", 0), 10, 5, 0).unwrap();
    assert_eq!(part.recv_all(100).unwrap(), &content[10..15]);
    let r = b.refresh_pool(&p).unwrap();
    assert_eq!(r.allocation, content.len() as u64);
    // A stream dropped unfinished is aborted: nothing it was sent is written.
    let mut up = b.upload(&p, &vol("disk", 0), 0, 0, 0).unwrap();
    up.send(b"lost").unwrap();
    drop(up);
    let mut down = b.download(&p, &vol("disk", 0), 0, 4, 0).unwrap();
    assert_eq!(down.recv_all(10).unwrap(), &content[..4]);
}

#[test]
fn operations_the_mock_lacks_answer_no_support_naming_them() {
    let (b, p) = started("lacking");
    b.create_volume(&p, &vol("v", 10), 0).unwrap();
    let errors = [
        (
            "virStorageVolResize",
            b.resize_volume(&p, &vol("v", 0), 20, 0),
        ),
        (
            "virStorageVolWipePattern",
            b.wipe_volume(&p, &vol("v", 0), 0, 0),
        ),
        (
            "virStorageVolCreateXMLFrom",
            b.create_volume_from(&p, &vol("w", 10), &p, &vol("v", 0), 0)
                .map(|_| ()),
        ),
        (
            "virConnectFindStoragePoolSources",
            b.find_pool_sources("<source/>", 0).map(|_| ()),
        ),
    ];
    for (api, r) in errors {
        let e = r.unwrap_err();
        assert!(e.is_no_support(), "{api}: {e}");
        assert_eq!(e.domain(), 18, "VIR_FROM_STORAGE");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("not supported by the connection driver: {api}"))
                && msg.contains("storage backend 'mock'")
                && msg.contains(&format!(
                    "plugin 'test', plugin API {}",
                    rvirt_host::PLUGIN_API_VERSION
                )),
            "{msg}"
        );
    }
}

#[test]
fn a_panic_in_the_backend_is_an_internal_error_and_the_backend_keeps_working() {
    let b = mock();
    let boom = pool("panic-me");
    for e in [
        b.build_pool(&boom, 0).unwrap_err(),
        b.refresh_pool(&boom).map(|_| ()).unwrap_err(),
        b.upload(&boom, &vol("v", 0), 0, 0, 0)
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), 1, "VIR_ERR_INTERNAL_ERROR: {e}");
        assert!(
            e.to_string()
                .contains("plugin 'test' panicked in virStorage")
                && e.to_string().contains("asked to panic"),
            "{e}"
        );
    }
    // The same backend object serves the next call.
    let p = pool("after-panic");
    b.build_pool(&p, 0).unwrap();
    b.start_pool(&p).unwrap();
    assert!(b.check_pool(&p).unwrap());
    assert!(b.refresh_pool(&p).unwrap().volumes.is_empty());
}

#[test]
fn an_unknown_pool_type_names_it_and_hints_at_plugin_list() {
    let rt = Runtime::with_search_path(vec![test_plugin_dir()]);
    let e = rt.storage_backend("zfs").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("no installed plugin serves storage pool type 'zfs'")
            && msg.contains("rvirt plugin list"),
        "{msg}"
    );
    assert_eq!((e.code(), e.domain()), (1, 18));
}

#[test]
fn the_frozen_1_3_storage_plugin_loads_and_serves_its_pool_type() {
    let so = fixture("storage-1-3", "rvirt_fixture_storage13");
    let (rt, _dir) = runtime_with(&[
        (&so, "librvirt_fixture_storage13.so"),
        (
            &test_plugin_dir().join("librvirt_plugin_test.so"),
            "librvirt_plugin_test.so",
        ),
    ]);
    let m = rt
        .plugins()
        .iter()
        .find_map(|r| match &r.status {
            PluginStatus::Loaded(m) if m.name == "storage13" => Some(m.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the 1.3 storage plugin should load: {:?}", rt.plugins()));
    assert_eq!(m.api_version, "1.3.0");
    assert_eq!(m.pool_types, vec!["fixture".to_string()]);
    assert!(m.schemes.is_empty());
    assert_eq!(m.kinds(), vec!["storage"]);

    let b = rt.storage_backend("fixture").unwrap();
    let p = "<pool type='fixture'><name>f</name></pool>";
    assert!(
        b.check_pool(p).unwrap(),
        "the host lent it the system root '/'"
    );
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 256) as u8).collect();
    let mut up = b
        .upload(p, "<volume><name>disk</name></volume>", 0, 0, 0)
        .unwrap();
    for c in data.chunks(4096) {
        up.send(c).unwrap();
    }
    up.finish().unwrap();
    let r = b.refresh_pool(p).unwrap();
    assert_eq!((r.capacity, r.allocation), (1_000_000, 10_000));
    assert!(
        r.volumes[0].contains("<key>fixture/disk</key>"),
        "{:?}",
        r.volumes
    );
    let mut down = b
        .download(p, "<volume><name>disk</name></volume>", 0, 0, 0)
        .unwrap();
    assert_eq!(down.recv_all(3000).unwrap(), data);
    // What the fixture leaves to the defaults compiled into it answers no-support.
    let e = b.resize_volume(p, "<volume/>", 1, 0).unwrap_err();
    assert!(
        e.is_no_support() && e.to_string().contains("virStorageVolResize"),
        "{e}"
    );
    // A storage-only plugin opens no hypervisor connection (it has no scheme either).
    assert!(rt.open("storage13:///", false).is_err());
    // The mock beside it still serves its own type.
    assert!(rt.storage_backend("mock").is_ok());
}

#[test]
fn plugins_older_than_1_3_have_no_storage_facet() {
    let so10 = fixture("old-minor", "rvirt_fixture_legacy");
    let so11 = fixture("minor-1-1", "rvirt_fixture_legacy11");
    let (rt, _dir) = runtime_with(&[
        (&so10, "librvirt_fixture_legacy.so"),
        (&so11, "librvirt_fixture_legacy11.so"),
    ]);
    for r in rt.plugins() {
        match &r.status {
            PluginStatus::Loaded(m) => {
                assert!(m.pool_types.is_empty(), "{m:?}");
                assert_eq!(m.kinds(), vec!["hypervisor"]);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(rt.storage_backend("mock").is_err());
}

#[test]
fn a_1_2_plugin_loads_into_the_1_3_host_against_its_frozen_layout() {
    let so = fixture("minor-1-2", "rvirt_fixture_legacy12");
    let (rt, _dir) = runtime_with(&[(&so, "librvirt_fixture_legacy12.so")]);
    match &rt.plugins()[0].status {
        PluginStatus::Loaded(m) => {
            assert_eq!(m.api_version, "1.2.0");
            assert!(m.pool_types.is_empty());
        }
        other => panic!("the 1.2 plugin should load into the 1.3 host: {other:?}"),
    }
    let conn = rt.open("legacy12:///", false).unwrap();
    // Its own 1.2 method works through the current types.
    assert_eq!(
        conn.domain_xml_to_native("qemu-argv", "<domain/>", 0)
            .unwrap(),
        "legacy12 native qemu-argv"
    );
    let d = conn.lookup_domain_by_name("legacy12").unwrap();
    d.suspend().unwrap();
    let e = rt.storage_backend("mock").unwrap_err();
    assert!(e.to_string().contains("storage pool type 'mock'"), "{e}");
}

#[test]
fn a_shadowed_copy_of_a_plugin_claims_no_pool_type() {
    // Two copies of the test plugin in two directories: the second is shadowed (same
    // name) and claims nothing; the first serves `mock`. (Two different plugins claiming
    // one pool type: `plugin::tests::the_first_plugin_to_claim_a_pool_type_serves_it`.)
    let so = test_plugin_dir().join("librvirt_plugin_test.so");
    let (_rt1, d1) = runtime_with(&[(&so, "librvirt_plugin_test.so")]);
    let (_rt2, d2) = runtime_with(&[(&so, "librvirt_plugin_test.so")]);
    let rt = Runtime::with_search_path(vec![d1.clone(), d2]);
    assert!(matches!(
        rt.plugins()[1].status,
        PluginStatus::Shadowed { .. }
    ));
    assert!(rt.plugins()[1].refused_pool_types.is_empty());
    assert_eq!(rt.storage_backend("mock").unwrap().plugin(), "test");
}

/// `test:///default`'s in-memory storage root streams through the same `Pools` machinery
/// (its pool definitions live in memory; a `dir` pool's volumes are files).
#[test]
fn test_default_streams_a_dir_volume_through_the_public_api() {
    let rt = Runtime::with_search_path(vec![rvirt_tests::profile_dir()]);
    let conn = rt.open("test:///default", false).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = conn
        .storage_pool_create_xml(
            &format!(
                "<pool type='dir'><name>public-streams</name><target><path>{}</path></target></pool>",
                tmp.path().display()
            ),
            0,
        )
        .unwrap();
    let v = p.create_vol_xml(&vol("disk", 100_000), 0).unwrap();
    let content: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 253) as u8).collect();
    let mut up = v.upload(0, 0, 0).unwrap();
    let e = v.delete(0).unwrap_err();
    assert!(e.to_string().contains("in use by a stream"), "{e}");
    for chunk in content.chunks(30_000) {
        up.send(chunk).unwrap();
    }
    up.finish().unwrap();
    let mut down = v.download(0, 0, 0).unwrap();
    let mut back = Vec::new();
    loop {
        let c = down.recv(40_000).unwrap();
        if c.is_empty() {
            break;
        }
        back.extend_from_slice(&c);
    }
    down.finish().unwrap();
    assert!(back == content);
    // past the volume's capacity: refused, and the stream is closed
    let mut up = v.upload(99_990, 0, 0).unwrap();
    let e = up.send(&[0; 11]).unwrap_err();
    assert_eq!(e.code(), 8, "{e}");
    assert!(up.send(&[0]).is_err());
    drop(up);
    assert_eq!(
        std::fs::metadata(tmp.path().join("disk")).unwrap().len(),
        100_000
    );
    v.delete(0).unwrap();
    p.destroy().unwrap();
}

//! Host services for hypervisor connections (plugin API 1.4) through the real loader: the
//! frozen 1.4 fixture (`tests/fixtures/hypervisor-1-4`, scheme `qemu`) is opened through
//! `open_with_host`, sees the host's system root and parsed URI, and resolves a qcow2
//! volume of a `dir` pool (the storage-dir plugin, real `qemu-img`) bound to its URI, with
//! libvirt's errors for an unknown volume, an unknown pool and an inactive pool.

use super::{fixture, runtime_with};
use rvirt_host::PluginStatus;

#[test]
fn a_1_4_plugin_is_opened_with_host_services_that_resolve_volumes() {
    let so = fixture("hypervisor-1-4", "rvirt_fixture_host14");
    let (rt, dir) = runtime_with(&[
        (&so, "librvirt_fixture_host14.so"),
        (
            &rvirt_tests::built("librvirt_storage_dir.so"),
            "librvirt_storage_dir.so",
        ),
    ]);
    let m = rt
        .plugins()
        .iter()
        .find_map(|r| match &r.status {
            PluginStatus::Loaded(m) if m.name == "host14" => Some(m.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the 1.4 fixture should load: {:?}", rt.plugins()));
    assert_eq!(m.api_version, "1.4.0");

    let root = dir.join("embed root");
    let uri = format!(
        "qemu:///embed?root={}",
        root.display().to_string().replace(' ', "%20")
    );
    // Its plain `open` refuses: the host opened it through `open_with_host`, and the
    // connection sees the host's system root and parsed URI.
    let conn = rt.open(&uri, false).unwrap();
    assert_eq!(
        conn.get_hostname().unwrap(),
        rt.system_root().display().to_string()
    );
    assert_eq!(
        conn.get_uri().unwrap(),
        format!("{uri} qemu /embed [root={}]", root.display())
    );

    // A dir pool of the connection's root, with one qcow2 volume.
    let pools = rt.storage_pools(&uri).unwrap();
    let target = dir.join("images");
    pools
        .define(
            &format!(
                "<pool type='dir'><name>hs14</name><target><path>{}</path></target></pool>",
                target.display()
            ),
            0,
        )
        .unwrap();
    pools.build("hs14", 0).unwrap();
    pools.create("hs14", 0).unwrap();
    pools
        .create_volume(
            "hs14",
            "<volume><name>d.qcow2</name><capacity unit='MiB'>1</capacity><target><format type='qcow2'/></target></volume>",
            None,
            0,
        )
        .unwrap();
    let path = pools.volume_path("hs14", "d.qcow2").unwrap();
    let resolved = conn
        .domain_xml_to_native("volume-source", "hs14/d.qcow2", 0)
        .unwrap();
    let fields: Vec<&str> = resolved.split(' ').collect();
    assert_eq!(fields[0], "file", "{resolved}");
    assert_eq!(fields[1], path, "{resolved}");
    assert_eq!(fields[1], target.join("d.qcow2").display().to_string());
    assert_eq!(fields[2], "qcow2", "{resolved}");
    assert_eq!(fields[3], "dir", "{resolved}");

    let e = conn
        .domain_xml_to_native("volume-source", "hs14/nope", 0)
        .unwrap_err();
    assert_eq!(e.code(), 50, "VIR_ERR_NO_STORAGE_VOL: {e}");
    assert_eq!(e.domain(), 18);
    let e = conn
        .domain_xml_to_native("volume-source", "nopool/d.qcow2", 0)
        .unwrap_err();
    assert_eq!(e.code(), 49, "VIR_ERR_NO_STORAGE_POOL: {e}");
    pools.destroy("hs14").unwrap();
    let e = conn
        .domain_xml_to_native("volume-source", "hs14/d.qcow2", 0)
        .unwrap_err();
    assert_eq!(e.code(), 67, "VIR_ERR_CONFIG_UNSUPPORTED: {e}");
    assert!(
        e.to_string()
            .contains("storage pool 'hs14' containing volume 'd.qcow2' is not active"),
        "{e}"
    );
    pools.undefine("hs14").unwrap();
}

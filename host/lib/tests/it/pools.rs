//! The host's storage subsystem over the real `dir` backend plugin (`librvirt_storage_dir.so`
//! through the loader) and the real qemu-img: what a daemon does for `pool-*` and `vol-*`.

use rvirt_host::storage::{BackendResolver, PoolBackend, Pools, StorageDirs, pool_state};
use rvirt_host::{Result, Runtime};
use std::path::Path;
use std::sync::Arc;

/// Resolves pool types through the plugins of one directory.
struct Plugins(Runtime);

impl BackendResolver for Plugins {
    fn backend(&self, pool_type: &str) -> Result<Arc<dyn PoolBackend>> {
        Ok(Arc::new(self.0.storage_backend(pool_type)?))
    }
}

/// A fresh runtime (as a new process would have) over a directory holding only the dir
/// plugin. The file is copied once: overwriting a loaded shared object corrupts it.
fn resolver() -> Arc<dyn BackendResolver> {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let so = rvirt_tests::built("librvirt_storage_dir.so");
        let dir = rvirt_tests::process_temp_dir("rvirt-it-dirplug", "");
        std::fs::copy(&so, dir.join("librvirt_storage_dir.so")).unwrap();
        dir
    });
    Arc::new(Plugins(Runtime::with_search_path(vec![dir.clone()])))
}

fn qemu_img_info(path: &Path) -> String {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .expect("\n!!!!! qemu-img is missing: apt-get install qemu-utils\n");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dir_pools_through_the_plugin_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("images");
    let dirs = StorageDirs {
        config: tmp.path().join("etc/storage"),
        state: tmp.path().join("run/storage"),
    };
    let pool_xml = format!(
        "<pool type='dir'><name>images</name><target><path>{}</path></target></pool>",
        target.display()
    );
    {
        let pools = Pools::open(Some(dirs.clone()), resolver()).unwrap();
        pools.define(&pool_xml, 0).unwrap();
        pools.build("images", 0).unwrap();
        assert!(target.is_dir(), "build made the target directory");
        pools.create("images", 0).unwrap();
        pools.set_autostart("images", true).unwrap();
        let info = pools.info("images").unwrap();
        assert_eq!(info.state, pool_state::RUNNING);
        assert!(info.capacity > 0 && info.available > 0);
        let raw = pools
            .create_volume(
                "images",
                "<volume><name>a.raw</name><capacity unit='MiB'>4</capacity></volume>",
                None,
                0,
            )
            .unwrap();
        assert_eq!(raw.key, target.join("a.raw").display().to_string());
        pools
            .create_volume(
                "images",
                "<volume><name>b.qcow2</name><capacity unit='MiB'>16</capacity><target><format type='qcow2'/></target></volume>",
                None,
                0,
            )
            .unwrap();
        let info = qemu_img_info(&target.join("b.qcow2"));
        assert!(
            info.contains("\"format\": \"qcow2\"") && info.contains("16777216"),
            "{info}"
        );
        assert_eq!(
            pools.volume_info("images", "b.qcow2").unwrap().capacity,
            16 << 20
        );
        pools
            .create_volume(
                "images",
                "<volume><name>c.qcow2</name><target><format type='qcow2'/></target></volume>",
                Some(("images", "a.raw")),
                0,
            )
            .unwrap();
        pools.resize_volume("images", "a.raw", 8 << 20, 0).unwrap();
        assert_eq!(
            std::fs::metadata(target.join("a.raw")).unwrap().len(),
            8 << 20
        );
        // a name that is a path never reaches the file system
        for bad in ["../x", "a/b", "/etc/passwd"] {
            let e = pools
                .create_volume(
                    "images",
                    &format!("<volume><name>{bad}</name><capacity>1</capacity></volume>"),
                    None,
                    0,
                )
                .unwrap_err();
            assert!(e.to_string().contains("name"), "{bad}: {e}");
        }
        std::fs::write(target.join("outside.img"), b"x").unwrap();
        pools.refresh("images", 0).unwrap();
        assert_eq!(pools.list_volumes("images").unwrap().len(), 4);
    }
    // a new process: the pool is active again, with its volumes
    let pools = Pools::open(Some(dirs), resolver()).unwrap();
    assert!(pools.is_active("images").unwrap());
    assert!(pools.autostart("images").unwrap());
    assert_eq!(pools.list_volumes("images").unwrap().len(), 4);
    assert_eq!(
        pools
            .volume_by_path(&target.join("b.qcow2").display().to_string())
            .unwrap()
            .name,
        "b.qcow2"
    );
    pools.delete_volume("images", "c.qcow2", 0).unwrap();
    assert!(!target.join("c.qcow2").exists());
    pools.destroy("images").unwrap();
    for v in ["a.raw", "b.qcow2", "outside.img"] {
        std::fs::remove_file(target.join(v)).unwrap();
    }
    pools.delete("images", 0).unwrap();
    assert!(!target.exists());
    pools.undefine("images").unwrap();
}

#[test]
fn volume_streams_keep_the_volume_busy_and_respect_its_capacity() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("images");
    let pools = Pools::open(None, resolver()).unwrap();
    pools
        .create_xml(
            &format!(
                "<pool type='dir'><name>s</name><target><path>{}</path></target></pool>",
                target.display()
            ),
            1, // VIR_STORAGE_POOL_CREATE_WITH_BUILD
        )
        .unwrap();
    let vol = |name: &str, bytes: u64| {
        pools
            .create_volume(
                "s",
                &format!(
                    "<volume><name>{name}</name><capacity unit='bytes'>{bytes}</capacity><allocation>0</allocation></volume>"
                ),
                None,
                0,
            )
            .unwrap();
    };
    vol("a.raw", 2 << 20);
    vol("b.raw", 1 << 20);
    assert!(pools.volume_info("s", "a.raw").unwrap().allocation < 1 << 20);
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();

    let busy = |e: rvirt_host::Error| {
        assert_eq!(e.code(), 55, "{e}"); // VIR_ERR_OPERATION_INVALID
        assert!(
            e.to_string()
                .contains("volume 'a.raw' in pool 's' is in use by a stream"),
            "{e}"
        );
    };
    let mut up = pools.upload_volume("s", "a.raw", 0, 0, 0).unwrap();
    up.send(&data[..300_000]).unwrap();
    // the volume is busy while the stream is open...
    busy(pools.delete_volume("s", "a.raw", 0).unwrap_err());
    busy(pools.resize_volume("s", "a.raw", 4 << 20, 0).unwrap_err());
    busy(pools.wipe_volume("s", "a.raw", 0, 0).unwrap_err());
    busy(pools.upload_volume("s", "a.raw", 0, 0, 0).unwrap_err());
    busy(pools.download_volume("s", "a.raw", 0, 0, 0).unwrap_err());
    busy(
        pools
            .create_volume(
                "s",
                "<volume><name>clone.raw</name></volume>",
                Some(("s", "a.raw")),
                0,
            )
            .unwrap_err(),
    );
    let e = pools.destroy("s").unwrap_err();
    assert!(e.to_string().contains("in use by streams"), "{e}");
    // ... and the rest of the pool is not: no pool lock is held by the stream
    vol("c.raw", 4096);
    pools.delete_volume("s", "c.raw", 0).unwrap();
    pools.resize_volume("s", "b.raw", 2 << 20, 0).unwrap();
    assert_eq!(pools.volume_info("s", "a.raw").unwrap().capacity, 2 << 20);
    up.send(&data[300_000..]).unwrap();
    up.finish().unwrap();
    // the upload is committed, the sizes read again, the volume free
    assert!(std::fs::read(target.join("a.raw")).unwrap()[..data.len()] == data[..]);
    assert!(pools.volume_info("s", "a.raw").unwrap().allocation >= 1 << 20);

    // downloads share the volume, and still keep changes out
    let mut d1 = pools.download_volume("s", "a.raw", 0, 0, 0).unwrap();
    let mut d2 = pools.download_volume("s", "a.raw", 4096, 100, 0).unwrap();
    busy(pools.upload_volume("s", "a.raw", 0, 0, 0).unwrap_err());
    busy(pools.wipe_volume("s", "a.raw", 0, 0).unwrap_err());
    assert_eq!(d2.recv(1 << 20).unwrap(), data[4096..4196]);
    assert!(d2.recv(1 << 20).unwrap().is_empty());
    d2.finish().unwrap();
    let mut all = Vec::new();
    loop {
        let c = d1.recv(256 * 1024).unwrap();
        if c.is_empty() {
            break;
        }
        all.extend_from_slice(&c);
    }
    d1.finish().unwrap();
    assert_eq!(all.len(), 2 << 20);
    assert!(all[..data.len()] == data[..]);

    // capacity checks name the volume and the field, with VIR_ERR_INVALID_ARG
    let invalid = |e: rvirt_host::Error, field: &str| {
        assert_eq!(e.code(), 8, "{e}");
        let m = e.to_string();
        assert!(
            m.contains("volume 'b.raw' in pool 's'") && m.contains(field),
            "{m}"
        );
    };
    invalid(
        pools
            .upload_volume("s", "b.raw", (2 << 20) + 1, 0, 0)
            .unwrap_err(),
        "offset",
    );
    invalid(
        pools
            .upload_volume("s", "b.raw", 1 << 20, (1 << 20) + 1, 0)
            .unwrap_err(),
        "length",
    );
    invalid(
        pools
            .download_volume("s", "b.raw", 0, 3 << 20, 0)
            .unwrap_err(),
        "length",
    );
    let mut up = pools
        .upload_volume("s", "b.raw", (2 << 20) - 1000, 0, 0)
        .unwrap();
    up.send(&data[..1000]).unwrap();
    invalid(up.send(&[0]).unwrap_err(), "goes past");
    drop(up);
    assert_eq!(
        std::fs::metadata(target.join("b.raw")).unwrap().len(),
        2 << 20,
        "nothing written past the volume"
    );
    // sparse streams are not implemented
    let e = pools.upload_volume("s", "b.raw", 0, 0, 1).unwrap_err();
    assert!(e.to_string().contains("unsupported flags (0x1)"), "{e}");
    // a dropped stream frees its volume
    let mut up = pools.upload_volume("s", "b.raw", 0, 0, 0).unwrap();
    up.send(&data[..10]).unwrap();
    drop(up);
    pools.delete_volume("s", "b.raw", 0).unwrap();
    pools.delete_volume("s", "a.raw", 0).unwrap();
    pools.destroy("s").unwrap();
}

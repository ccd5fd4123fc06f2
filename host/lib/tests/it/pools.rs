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
        let dir = std::env::temp_dir().join(format!("rvirt-it-dirplug-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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

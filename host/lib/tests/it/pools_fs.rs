//! The host's storage subsystem over the real `fs` backend plugin
//! (`librvirt_storage_fs.so` through the loader), as root: an image file holding an ext4
//! file system, bound to a loop device and mounted at the pool's target; raw and qcow2
//! volumes through qemu-img; a restart of the subsystem with the pool mounted.
//!
//! Without root or one of the tools the test says so loudly and fails (skips with
//! `RVIRT_ALLOW_SKIP=1`). A guard unmounts the target and detaches the image's loop
//! devices even when the test fails.

use rvirt_host::storage::{BackendResolver, PoolBackend, Pools, StorageDirs, pool_state};
use rvirt_host::{PluginStatus, Result, Runtime};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Resolves pool types through the plugins of one directory.
struct Plugins(Runtime);

impl BackendResolver for Plugins {
    fn backend(&self, pool_type: &str) -> Result<Arc<dyn PoolBackend>> {
        Ok(Arc::new(self.0.storage_backend(pool_type)?))
    }
}

/// A directory holding only the fs plugin. The file is copied once per process:
/// overwriting a loaded shared object corrupts it.
fn plugin_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let so = rvirt_tests::built("librvirt_storage_fs.so");
        let dir = rvirt_tests::process_temp_dir("rvirt-it-fsplug", "");
        std::fs::copy(&so, dir.join("librvirt_storage_fs.so")).unwrap();
        dir
    })
    .clone()
}

/// A fresh runtime (as a new process would have) over the fs plugin.
fn resolver() -> Arc<dyn BackendResolver> {
    Arc::new(Plugins(Runtime::with_search_path(vec![plugin_dir()])))
}

fn tool(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|d| d.join(name).is_file())
}

fn can_run(test: &str) -> bool {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    if uid.as_deref() != Some("0") {
        rvirt_tests::cannot_run(test, "needs root (mkfs, losetup, mount)");
        return false;
    }
    for t in [
        "mkfs",
        "mkfs.ext4",
        "blkid",
        "losetup",
        "mount",
        "umount",
        "qemu-img",
    ] {
        if !tool(t) {
            rvirt_tests::cannot_run(
                test,
                &format!(
                    "'{t}' is not installed (apt-get install util-linux e2fsprogs qemu-utils)"
                ),
            );
            return false;
        }
    }
    true
}

/// Mount points of this process's namespace (octal escapes left as they are: the test's
/// paths have none).
fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

fn is_mounted(target: &Path) -> bool {
    std::fs::canonicalize(target).is_ok_and(|t| mount_points().contains(&t))
}

/// The loop devices bound to `file` (from `/sys/block/loopN/loop/backing_file`).
fn loops_of(file: &Path) -> Vec<PathBuf> {
    let Ok(file) = std::fs::canonicalize(file) else {
        return Vec::new();
    };
    std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|b| Path::new(b.trim_end()) == file)
        })
        .map(|e| Path::new("/dev").join(e.file_name()))
        .collect()
}

/// Unmounts the target and detaches the image's loop devices when dropped.
struct Cleanup {
    target: PathBuf,
    image: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for _ in 0..4 {
            if !is_mounted(&self.target) {
                break;
            }
            let _ = Command::new("umount").arg(&self.target).status();
        }
        for dev in loops_of(&self.image) {
            let _ = Command::new("losetup").arg("--detach").arg(dev).status();
        }
    }
}

fn pool_xml(name: &str, image: &Path, format: &str, target: &Path) -> String {
    format!(
        "<pool type='fs'><name>{name}</name><source><device path='{}'/><format type='{format}'/></source><target><path>{}</path></target></pool>",
        image.display(),
        target.display()
    )
}

fn names(pools: &Pools, pool: &str) -> Vec<String> {
    let mut v: Vec<String> = pools
        .list_volumes(pool)
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    v.sort();
    v
}

#[test]
fn fs_pools_through_the_plugin_mount_an_image_and_survive_a_restart() {
    if !can_run("fs_pools_through_the_plugin_mount_an_image_and_survive_a_restart") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("pool.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(64 << 20))
        .unwrap();
    let target = tmp.path().join("mnt");
    let _cleanup = Cleanup {
        target: target.clone(),
        image: image.clone(),
    };
    let dirs = StorageDirs {
        config: tmp.path().join("etc/storage"),
        state: tmp.path().join("run/storage"),
    };

    // the plugin the loader found is the fs plugin (its own exports, not storage-dir's
    // that it links as a library)
    let rt = Runtime::with_search_path(vec![plugin_dir()]);
    match &rt.plugins()[0].status {
        PluginStatus::Loaded(m) => {
            assert_eq!(m.name, "storage-fs");
            assert_eq!(m.pool_types, vec!["fs".to_string()]);
        }
        other => panic!("the fs plugin should load: {other:?}"),
    }

    {
        let pools = Pools::open(Some(dirs.clone()), resolver()).unwrap();
        pools
            .define(&pool_xml("fspool", &image, "ext4", &target), 0)
            .unwrap();
        pools.build("fspool", 4).unwrap(); // NO_OVERWRITE: nothing there, mkfs
        assert!(target.is_dir(), "build made the target directory");
        // build again without OVERWRITE: the file system is there, refused
        let e = pools.build("fspool", 4).unwrap_err();
        assert_eq!(e.code(), 76, "VIR_ERR_STORAGE_POOL_BUILT: {e}");
        assert!(
            e.to_string().contains("already formatted using 'ext4'"),
            "{e}"
        );

        pools.create("fspool", 0).unwrap();
        assert!(is_mounted(&target), "started: mounted at the target");
        assert_eq!(loops_of(&image).len(), 1, "through one loop device");
        let info = pools.info("fspool").unwrap();
        assert_eq!(info.state, pool_state::RUNNING);
        assert!(
            info.capacity > 48 << 20 && info.capacity <= 64 << 20,
            "the mounted file system's size: {}",
            info.capacity
        );
        let raw = pools
            .create_volume(
                "fspool",
                "<volume><name>a.raw</name><capacity unit='MiB'>4</capacity></volume>",
                None,
                0,
            )
            .unwrap();
        assert_eq!(raw.key, target.join("a.raw").display().to_string());
        pools
            .create_volume(
                "fspool",
                "<volume><name>b.qcow2</name><capacity unit='MiB'>16</capacity><target><format type='qcow2'/></target></volume>",
                None,
                0,
            )
            .unwrap();
        assert_eq!(
            pools.volume_info("fspool", "b.qcow2").unwrap().capacity,
            16 << 20
        );
        pools.refresh("fspool", 0).unwrap();
        assert_eq!(names(&pools, "fspool"), ["a.raw", "b.qcow2", "lost+found"]);

        // stop: unmounted, the loop device detached, the volumes out of sight
        pools.destroy("fspool").unwrap();
        assert!(!is_mounted(&target), "stopped: unmounted");
        assert!(loops_of(&image).is_empty(), "the loop device is detached");
        assert!(!target.join("a.raw").exists());
        // start again: the volumes are back
        pools.create("fspool", 0).unwrap();
        assert_eq!(names(&pools, "fspool"), ["a.raw", "b.qcow2", "lost+found"]);

        // the same image said to hold ext2: refused, nothing mounted
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        pools
            .define(&pool_xml("wrongfmt", &image, "ext2", &other), 0)
            .unwrap();
        let e = pools.create("wrongfmt", 0).unwrap_err();
        assert_eq!(e.code(), 55, "VIR_ERR_OPERATION_INVALID: {e}");
        assert_eq!(e.domain(), 18, "VIR_FROM_STORAGE: {e}");
        assert!(
            e.to_string()
                .contains("does not match the expected format 'ext2'"),
            "{e}"
        );
        assert!(!pools.is_active("wrongfmt").unwrap());
        assert!(!is_mounted(&other));
        pools.undefine("wrongfmt").unwrap();
    }

    // a new process with the pool mounted: check_pool finds it active, with its volumes
    let pools = Pools::open(Some(dirs), resolver()).unwrap();
    assert!(pools.is_active("fspool").unwrap());
    assert_eq!(names(&pools, "fspool"), ["a.raw", "b.qcow2", "lost+found"]);
    pools.delete_volume("fspool", "a.raw", 0).unwrap();
    assert!(!target.join("a.raw").exists());

    pools.destroy("fspool").unwrap();
    assert!(!is_mounted(&target));
    assert!(loops_of(&image).is_empty());
    pools.delete("fspool", 0).unwrap();
    assert!(!target.exists(), "delete removed the target");
    pools.undefine("fspool").unwrap();
    assert!(pools.list(0).unwrap().is_empty());
}

//! The `fs` backend for real, as root: image files as source devices, `mkfs.ext4`,
//! `blkid`, loop devices, `mount`/`umount`, and `qemu-img` for the volumes.
//!
//! Without root or one of the tools each test says so loudly and fails (skips with
//! `RVIRT_ALLOW_SKIP=1`). A guard unmounts the targets and detaches the loop devices of
//! its image files even when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use rvirt_storage_fs::{self as fs, Error, Probed, flags, mounts};
use rvirt_xml::StoragePool;

const TOOLS: &[&str] = &[
    "mkfs",
    "mkfs.ext4",
    "mkswap",
    "blkid",
    "losetup",
    "mount",
    "umount",
    "qemu-img",
];

fn tool(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|d| d.join(name).is_file())
}

/// One test at a time: each binds loop devices, and a host has few (eight by default).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the test can run here; says why not, loudly.
fn can_run(test: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        rvirt_tests::cannot_run(test, "needs root (mkfs, losetup, mount)");
        return false;
    }
    if !Path::new("/dev/loop-control").exists() {
        rvirt_tests::cannot_run(test, "no loop devices (/dev/loop-control)");
        return false;
    }
    for t in TOOLS {
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

/// A temporary directory with image files and mount points; on drop, every target is
/// unmounted and every loop device bound to an image is detached, then the directory
/// is removed.
struct Scratch {
    tmp: Option<tempfile::TempDir>,
    targets: Vec<PathBuf>,
    images: Vec<PathBuf>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            tmp: Some(tempfile::tempdir().expect("tempdir")),
            targets: Vec::new(),
            images: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.tmp.as_ref().expect("present").path()
    }

    /// A sparse image file of `mib` MiB.
    fn image(&mut self, name: &str, mib: u64) -> PathBuf {
        let p = self.path().join(name);
        std::fs::File::create(&p)
            .and_then(|f| f.set_len(mib << 20))
            .expect("image");
        self.images
            .push(std::fs::canonicalize(&p).expect("canonical"));
        p
    }

    /// An fs pool over `image`, its target under the scratch directory.
    fn pool(&mut self, name: &str, image: &Path, format: &str) -> StoragePool {
        let target = self.path().join(name);
        self.targets.push(target.clone());
        fs::parse_pool(&pool_xml(name, image, format, &target)).expect("pool xml")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for t in &self.targets {
            for _ in 0..4 {
                let mounted = mounts::mounts()
                    .unwrap_or_default()
                    .iter()
                    .any(|m| std::fs::canonicalize(t).is_ok_and(|c| c == m.mount_point));
                if !mounted {
                    break;
                }
                let _ = Command::new("umount").arg(t).status();
            }
        }
        for img in &self.images {
            for (dev, _) in mounts::loops_backed_by(img) {
                let _ = Command::new("losetup").arg("--detach").arg(dev).status();
            }
        }
        drop(self.tmp.take());
    }
}

fn pool_xml(name: &str, device: &Path, format: &str, target: &Path) -> String {
    format!(
        "<pool type='fs'><name>{name}</name><source><device path='{}'/><format type='{format}'/></source><target><path>{}</path></target></pool>",
        device.display(),
        target.display()
    )
}

fn target(p: &StoragePool) -> PathBuf {
    PathBuf::from(p.target_path().expect("target"))
}

fn probe(p: &StoragePool, img: &Path) -> Probed {
    fs::source::probe(p, img).expect("blkid")
}

fn create(p: &StoragePool, xml: &str) {
    let dir = fs::volume_pool(p).expect("mounted");
    let v = fs::parse_volume(p, xml, false).expect("volume xml");
    rvirt_storage_files::create_volume(&dir, &v, 0).expect("create volume");
}

fn volumes(p: &StoragePool) -> Vec<(String, String)> {
    fs::refresh_pool(p)
        .expect("refresh")
        .volumes
        .iter()
        .map(|v| {
            (
                v.name().to_string(),
                v.format_type().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn mount_of(p: &StoragePool) -> Option<mounts::MountEntry> {
    let t = std::fs::canonicalize(target(p)).ok()?;
    mounts::mounts()
        .expect("mountinfo")
        .into_iter()
        .find(|m| m.mount_point == t)
}

#[test]
fn an_image_file_is_built_mounted_through_a_loop_device_and_serves_volumes() {
    if !can_run("an_image_file_is_built_mounted_through_a_loop_device_and_serves_volumes") {
        return;
    }
    let _serial = serial();
    let mut s = Scratch::new();
    let img = s.image("ext4.img", 64);
    let p = s.pool("images", &img, "ext4");
    let canon = std::fs::canonicalize(&img).expect("canonical");

    fs::build_pool(&p, flags::POOL_BUILD_NO_OVERWRITE).expect("build");
    assert!(target(&p).is_dir(), "build made the target");
    assert_eq!(probe(&p, &img), Probed::Fs("ext4".into()));
    assert!(!fs::check_pool(&p).expect("check"));

    fs::start_pool(&p).expect("start");
    assert!(fs::check_pool(&p).expect("check"));
    let m = mount_of(&p).expect("mounted at the target");
    assert_eq!(m.fstype, "ext4");
    let loops = mounts::loops_backed_by(&canon);
    assert_eq!(loops.len(), 1, "one loop device bound to the image");
    assert_eq!(loops[0].1, m.dev, "the mount is the loop device's");
    let e = fs::start_pool(&p).expect_err("twice");
    assert_eq!(e.code(), 55, "{e}");
    assert!(e.to_string().contains("is already mounted"), "{e}");

    create(
        &p,
        "<volume><name>a.raw</name><capacity unit='MiB'>4</capacity></volume>",
    );
    create(
        &p,
        "<volume><name>b.qcow2</name><capacity unit='MiB'>16</capacity><target><format type='qcow2'/></target></volume>",
    );
    assert_eq!(
        volumes(&p),
        vec![
            ("a.raw".to_string(), "raw".to_string()),
            ("b.qcow2".to_string(), "qcow2".to_string()),
            // mkfs.ext4 makes one
            ("lost+found".to_string(), "dir".to_string()),
        ]
    );
    let r = fs::refresh_pool(&p).expect("refresh");
    assert!(
        r.capacity > 48 << 20 && r.capacity <= 64 << 20,
        "the figures are the mounted file system's: {}",
        r.capacity
    );
    assert_eq!(r.allocation + r.available, r.capacity);

    fs::stop_pool(&p).expect("stop");
    assert!(!fs::check_pool(&p).expect("check"));
    assert!(mount_of(&p).is_none(), "unmounted");
    assert!(
        mounts::loops_backed_by(&canon).is_empty(),
        "the loop device is detached"
    );
    assert_eq!(
        std::fs::read_dir(target(&p)).expect("target").count(),
        0,
        "the bare mount point holds nothing"
    );
    // nothing reaches the bare mount point
    let e = fs::refresh_pool(&p).expect_err("not mounted");
    assert_eq!(e.code(), 55, "{e}");
    let e = fs::volume_pool(&p).expect_err("not mounted");
    assert!(e.to_string().contains("is not mounted at"), "{e}");
    fs::stop_pool(&p).expect("stopping a stopped pool does nothing");

    // a fresh start (as a new process would: the backend keeps nothing) finds the volumes
    fs::start_pool(&p).expect("start again");
    let names: Vec<String> = volumes(&p).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["a.raw", "b.qcow2", "lost+found"]);
    let e = fs::delete_pool(&p, 0).expect_err("mounted");
    assert_eq!(e.code(), 55, "{e}");
    fs::stop_pool(&p).expect("stop");
    fs::delete_pool(&p, 0).expect("delete");
    assert!(!target(&p).exists(), "the target is removed");
    assert!(img.is_file(), "the device is left as it is");
    assert_eq!(probe(&p, &img), Probed::Fs("ext4".into()));
}

#[test]
fn build_never_overwrites_without_the_flag_and_start_refuses_another_format() {
    if !can_run("build_never_overwrites_without_the_flag_and_start_refuses_another_format") {
        return;
    }
    let _serial = serial();
    let mut s = Scratch::new();
    let img = s.image("fs.img", 64);
    let p = s.pool("p", &img, "ext4");
    fs::build_pool(&p, flags::POOL_BUILD_OVERWRITE).expect("build, overwriting");
    fs::start_pool(&p).expect("start");
    create(
        &p,
        "<volume><name>keep.raw</name><capacity unit='MiB'>1</capacity></volume>",
    );
    fs::stop_pool(&p).expect("stop");

    let e = fs::build_pool(&p, flags::POOL_BUILD_NO_OVERWRITE).expect_err("no overwrite");
    assert_eq!(e.code(), 76, "VIR_ERR_STORAGE_POOL_BUILT: {e}");
    assert!(
        e.to_string().contains("already formatted using 'ext4'"),
        "{e}"
    );
    // without flags, build makes the target only (libvirt's rule): the data survives
    fs::build_pool(&p, 0).expect("build the target only");
    fs::start_pool(&p).expect("start");
    assert!(volumes(&p).iter().any(|(n, _)| n == "keep.raw"));
    // a mounted device is never formatted
    let e = fs::build_pool(&p, flags::POOL_BUILD_OVERWRITE).expect_err("mounted");
    assert_eq!(e.code(), 55, "{e}");
    assert!(e.to_string().contains("is mounted at"), "{e}");
    fs::stop_pool(&p).expect("stop");

    // the same device said to hold ext2
    let other = fs::parse_pool(&pool_xml("q", &img, "ext2", &target(&p))).expect("pool");
    let e = fs::start_pool(&other).expect_err("wrong format");
    assert_eq!(e.code(), 55, "VIR_ERR_OPERATION_INVALID: {e}");
    assert!(
        e.to_string()
            .contains("('ext4') does not match the expected format 'ext2'"),
        "{e}"
    );
    assert!(mount_of(&p).is_none(), "nothing was mounted");
    let canon = std::fs::canonicalize(&img).expect("canonical");
    assert!(mounts::loops_backed_by(&canon).is_empty(), "no loop left");
    let e = fs::build_pool(&other, flags::POOL_BUILD_NO_OVERWRITE).expect_err("other fs");
    assert_eq!(e.code(), 76, "{e}");
    assert!(
        e.to_string().contains("forced overwrite is necessary"),
        "{e}"
    );

    // an empty device: nothing to mount; auto cannot be built
    let blank = s.image("blank.img", 8);
    let b = s.pool("b", &blank, "auto");
    fs::build_pool(&b, 0).expect("the target");
    let e = fs::start_pool(&b).expect_err("blank");
    assert_eq!(e.code(), 75, "VIR_ERR_STORAGE_PROBE_FAILED: {e}");
    assert!(e.to_string().contains("holds no file system"), "{e}");
    let e = fs::build_pool(&b, flags::POOL_BUILD_NO_OVERWRITE).expect_err("auto");
    assert_eq!(e.code(), 55, "{e}");
    assert!(e.to_string().contains("'auto'"), "{e}");
}

#[test]
fn bad_sources_and_targets_and_failing_tools_give_clear_errors() {
    if !can_run("bad_sources_and_targets_and_failing_tools_give_clear_errors") {
        return;
    }
    let _serial = serial();
    let mut s = Scratch::new();
    // a missing device
    let gone = s.path().join("gone.img");
    let p = s.pool("gone", &gone, "ext4");
    assert!(!fs::check_pool(&p).expect("check"));
    for e in [
        fs::start_pool(&p).map(|_| ()),
        fs::build_pool(&p, flags::POOL_BUILD_NO_OVERWRITE),
    ] {
        let e = e.expect_err("missing device");
        assert_eq!(e.code(), 55, "{e}");
        assert!(e.to_string().contains("gone.img' does not exist"), "{e}");
    }

    // a target that is a file
    let img = s.image("t.img", 64);
    let file_target = s.path().join("a-file");
    std::fs::write(&file_target, b"x").expect("write");
    let p = fs::parse_pool(&pool_xml("f", &img, "ext4", &file_target)).expect("pool");
    let e = fs::start_pool(&p).expect_err("target is a file");
    assert_eq!(e.code(), 8, "{e}");
    assert!(e.to_string().contains("is not a directory"), "{e}");

    // mkfs failing: its stderr is in the error
    let tiny = s.image("tiny.img", 0);
    std::fs::File::options()
        .write(true)
        .open(&tiny)
        .and_then(|f| f.set_len(4096))
        .expect("tiny");
    let p = s.pool("tiny", &tiny, "ext4");
    let e = fs::build_pool(&p, flags::POOL_BUILD_OVERWRITE).expect_err("too small");
    assert_eq!(e.code(), 38, "{e}");
    let m = e.full_message();
    assert!(
        m.contains("cannot make a file system of type 'ext4'"),
        "{m}"
    );
    assert!(
        m.contains("mkfs -t ext4 -F") && m.contains("failed (exit status"),
        "{m}"
    );

    // mount failing (swap space is no file system to mount): its stderr is in the error,
    // and the loop device bound for it is detached again
    let swap = s.image("swap.img", 8);
    let out = Command::new("mkswap").arg(&swap).output().expect("mkswap");
    assert!(out.status.success(), "{out:?}");
    let p = s.pool("swap", &swap, "auto");
    fs::build_pool(&p, 0).expect("target");
    let e = fs::start_pool(&p).expect_err("swap");
    assert_eq!(e.code(), 1, "{e}");
    let m = e.full_message();
    assert!(m.contains("cannot mount '/dev/loop"), "{m}");
    assert!(m.contains("'mount -o nodev,nosuid,noexec /dev/loop"), "{m}");
    assert!(m.contains("swap"), "{m}");
    let canon = std::fs::canonicalize(&swap).expect("canonical");
    assert!(mounts::loops_backed_by(&canon).is_empty(), "no loop left");
    assert!(!fs::check_pool(&p).expect("check"));

    // a flag build does not know
    let e = fs::build_pool(&p, 1).expect_err("REPAIR");
    assert!(matches!(e, Error::UnsupportedFlags { .. }), "{e}");
}

#[test]
fn a_block_device_source_is_mounted_as_it_is_and_left_bound() {
    if !can_run("a_block_device_source_is_mounted_as_it_is_and_left_bound") {
        return;
    }
    let _serial = serial();
    let mut s = Scratch::new();
    let img = s.image("disk.img", 64);
    // the test's own loop device stands for a disk
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&img)
        .output()
        .expect("losetup");
    assert!(out.status.success(), "{out:?}");
    let disk = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let p = s.pool("disk", &disk, "ext4");
    assert!(matches!(
        fs::source::find(&p).expect("find"),
        Some(fs::Source::Block { .. })
    ));
    fs::build_pool(&p, flags::POOL_BUILD_NO_OVERWRITE).expect("build");
    fs::start_pool(&p).expect("start");
    assert!(fs::check_pool(&p).expect("check"));
    let m = mount_of(&p).expect("mounted");
    assert_eq!(PathBuf::from(&m.source), disk);
    create(
        &p,
        "<volume><name>v.qcow2</name><capacity unit='MiB'>8</capacity><target><format type='qcow2'/></target></volume>",
    );
    assert!(volumes(&p).contains(&("v.qcow2".to_string(), "qcow2".to_string())));
    fs::stop_pool(&p).expect("stop");
    assert!(!fs::check_pool(&p).expect("check"));
    assert_eq!(
        mounts::loops_backed_by(&std::fs::canonicalize(&img).expect("canonical"))
            .into_iter()
            .map(|(d, _)| d)
            .collect::<Vec<_>>(),
        vec![disk],
        "a block device the pool did not bind stays bound"
    );
    // the guard detaches it
}

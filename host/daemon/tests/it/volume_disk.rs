//! `<disk type='volume'>` through rvirtd with unmodified `virsh`: the QEMU plugin resolves
//! the disk's pool and volume through the host's storage pools (plugin API 1.4 host
//! services) and QEMU opens the volume's file with its format; the live XML keeps the
//! volume form; a missing volume or an inactive pool refuses the start before any QEMU
//! runs. Every path stays under the daemon's `--root`.

use super::{Daemon, missing};
use crate::{virsh, virsh_ok as ok};
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The error virsh printed for a command that must fail.
fn fails(uri: &str, args: &[&str]) -> String {
    let o = virsh(uri, args);
    assert!(
        !o.status.success(),
        "virsh {args:?} succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The pids of QEMU processes running guest `name`.
fn qemu_pids(name: &str) -> Vec<u32> {
    let want = format!("guest={name},");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .split('\0')
                    .any(|a| a.starts_with(&want))
            })
        })
        .collect()
}

fn domain_xml(name: &str, pool: &str, volume: &str) -> String {
    format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type></os>\
         <devices><disk type='volume' device='disk'><source pool='{pool}' volume='{volume}'/>\
         <target dev='vda' bus='virtio'/></disk><graphics type='vnc' autoport='yes' listen='127.0.0.1'/></devices></domain>"
    )
}

fn define(uri: &str, root: &Path, name: &str, xml: &str) -> Output {
    let file = root.join(format!("{name}.xml"));
    std::fs::write(&file, xml).unwrap();
    virsh(uri, &["define", file.to_str().unwrap()])
}

#[test]
fn a_volume_disk_starts_from_a_dir_pool_and_bad_volumes_or_pools_refuse_the_start() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    if missing("virsh", Command::new("virsh").arg("--version"))
        || missing(
            "qemu-system-x86_64",
            Command::new("qemu-system-x86_64").arg("--version"),
        )
        || missing("qemu-img", Command::new("qemu-img").arg("--version"))
    {
        return;
    }
    for plugin in ["librvirt_plugin_qemu.so", "librvirt_storage_dir.so"] {
        assert!(
            bin_dir.join(plugin).is_file(),
            "{plugin} is missing next to rvirtd: run `cargo build --workspace` first"
        );
    }
    let mut d = Daemon::start();
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let root = d.root.path().to_path_buf();
    let pool_dir = root.join("vpool");

    ok(
        &uri,
        &[
            "pool-define-as",
            "vpool",
            "dir",
            "--target",
            pool_dir.to_str().unwrap(),
        ],
    );
    ok(&uri, &["pool-build", "vpool"]);
    ok(&uri, &["pool-start", "vpool"]);
    ok(
        &uri,
        &[
            "vol-create-as",
            "vpool",
            "disk1.qcow2",
            "16M",
            "--format",
            "qcow2",
        ],
    );
    let vol_path = pool_dir.join("disk1.qcow2");
    assert!(vol_path.is_file());

    // Define-time syntax checks: a volume disk names its pool and its volume.
    let o = define(
        &uri,
        &root,
        "vbad",
        &domain_xml("vbad", "vpool", "x").replace(" volume='x'", ""),
    );
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("disk 'vda': the <source> of a volume disk needs the 'volume' attribute"),
        "{e}"
    );

    let o = define(
        &uri,
        &root,
        "vdisk",
        &domain_xml("vdisk", "vpool", "disk1.qcow2"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(&uri, &["start", "vdisk"]);
    assert_eq!(ok(&uri, &["domstate", "vdisk"]).trim(), "running");

    // QEMU opened the volume's file, as qcow2 (the volume's format: the disk gave none).
    let pids = qemu_pids("vdisk");
    assert_eq!(pids.len(), 1, "one qemu for vdisk: {pids:?}");
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/cmdline", pids[0])).unwrap())
            .replace('\0', " ");
    assert!(
        cmdline.contains(&format!(
            r#"{{"driver":"file","filename":"{}","#,
            vol_path.display()
        )),
        "{cmdline}"
    );
    assert!(
        cmdline.contains(r#""driver":"qcow2","file":"libvirt-1-storage","backing":null"#),
        "{cmdline}"
    );

    // The live XML keeps the volume form, with the resolved format.
    let live = ok(&uri, &["dumpxml", "vdisk"]);
    assert!(
        live.contains("<disk type='volume' device='disk'>"),
        "{live}"
    );
    assert!(
        live.contains("<source pool='vpool' volume='disk1.qcow2'/>"),
        "{live}"
    );
    assert!(
        live.contains("<driver name='qemu' type='qcow2'/>"),
        "{live}"
    );
    assert!(!live.contains(vol_path.to_str().unwrap()), "{live}");
    // The inactive definition is the one defined.
    let inactive = ok(&uri, &["dumpxml", "--inactive", "vdisk"]);
    assert!(!inactive.contains("type='qcow2'"), "{inactive}");

    // The status file records what QEMU opened; a restarted daemon reattaches.
    let status = std::fs::read_to_string(root.join("run/rvirt/qemu/vdisk.status")).unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status["volumes"][0]["path"].as_str(),
        Some(vol_path.to_str().unwrap()),
        "{status}"
    );
    assert_eq!(status["volumes"][0]["format"].as_str(), Some("qcow2"));
    d.restart();
    assert_eq!(ok(&uri, &["domstate", "vdisk"]).trim(), "running");
    assert!(
        ok(&uri, &["dumpxml", "vdisk"]).contains("<source pool='vpool' volume='disk1.qcow2'/>")
    );
    assert_eq!(qemu_pids("vdisk"), pids, "the same qemu after the restart");
    ok(&uri, &["destroy", "vdisk"]);
    assert!(qemu_pids("vdisk").is_empty());

    // A volume the pool lacks: libvirt's no-storage-vol error naming the volume and the
    // disk, and no QEMU.
    let o = define(
        &uri,
        &root,
        "vmissing",
        &domain_xml("vmissing", "vpool", "nope.qcow2"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = fails(&uri, &["start", "vmissing"]);
    assert!(
        e.contains("Storage volume not found") || e.contains("storage volume not found"),
        "{e}"
    );
    assert!(
        e.contains("'nope.qcow2'") && e.contains("disk 'vda'"),
        "{e}"
    );
    assert!(qemu_pids("vmissing").is_empty());
    assert!(!root.join("run/rvirt/qemu/vmissing.status").exists());
    assert_eq!(ok(&uri, &["domstate", "vmissing"]).trim(), "shut off");

    // An unknown pool.
    let o = define(
        &uri,
        &root,
        "vnopool",
        &domain_xml("vnopool", "nopool", "v"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = fails(&uri, &["start", "vnopool"]);
    assert!(
        e.contains("no storage pool with matching name 'nopool'"),
        "{e}"
    );
    assert!(qemu_pids("vnopool").is_empty());

    // `mode` belongs to iSCSI pools (libvirt's check, once the pool type is known).
    let o = define(
        &uri,
        &root,
        "vmode",
        &domain_xml("vmode", "vpool", "disk1.qcow2").replace("/>", " mode='host'/>"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = fails(&uri, &["start", "vmode"]);
    assert!(
        e.contains("disk 'vda': disk source mode is only valid when storage pool is of iscsi type"),
        "{e}"
    );
    assert!(qemu_pids("vmode").is_empty());

    // A qcow2 volume with a backing file: its format must be declared (a format read from
    // the volume's header never opens backing files); declared, it starts.
    ok(
        &uri,
        &[
            "vol-create-as",
            "vpool",
            "overlay.qcow2",
            "16M",
            "--format",
            "qcow2",
            "--backing-vol",
            "disk1.qcow2",
            "--backing-vol-format",
            "qcow2",
        ],
    );
    let o = define(
        &uri,
        &root,
        "vover",
        &domain_xml("vover", "vpool", "overlay.qcow2"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = fails(&uri, &["start", "vover"]);
    assert!(
        e.contains("volume 'overlay.qcow2' of storage pool 'vpool' has a backing file"),
        "{e}"
    );
    assert!(qemu_pids("vover").is_empty());
    let declared = domain_xml("vdecl", "vpool", "overlay.qcow2").replace(
        "<disk type='volume' device='disk'>",
        "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>",
    );
    let o = define(&uri, &root, "vdecl", &declared);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(&uri, &["start", "vdecl"]);
    assert_eq!(qemu_pids("vdecl").len(), 1);
    ok(&uri, &["destroy", "vdecl"]);

    // An inactive pool: libvirt's "unsupported configuration" naming the pool and the
    // volume.
    ok(&uri, &["pool-destroy", "vpool"]);
    let e = fails(&uri, &["start", "vdisk"]);
    assert!(
        e.contains(
            "unsupported configuration: storage pool 'vpool' containing volume 'disk1.qcow2' is not active"
        ),
        "{e}"
    );
    assert!(qemu_pids("vdisk").is_empty());
    assert_eq!(ok(&uri, &["domstate", "vdisk"]).trim(), "shut off");

    // Active again, it starts again.
    ok(&uri, &["pool-start", "vpool"]);
    ok(&uri, &["start", "vdisk"]);
    assert_eq!(qemu_pids("vdisk").len(), 1);
    ok(&uri, &["destroy", "vdisk"]);
    for name in ["vdisk", "vmissing", "vnopool", "vmode", "vover", "vdecl"] {
        ok(&uri, &["undefine", name]);
    }
}

#[test]
fn the_shared_guest_boots_and_reads_its_disk_from_a_volume() {
    if missing("virsh", Command::new("virsh").arg("--version"))
        || missing(
            "qemu-system-x86_64",
            Command::new("qemu-system-x86_64").arg("--version"),
        )
        || missing("qemu-img", Command::new("qemu-img").arg("--version"))
    {
        return;
    }
    let g = rvirt_tests::guest();
    let d = Daemon::start();
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let root = d.root.path().to_path_buf();
    let pool_dir = root.join("gpool");
    ok(
        &uri,
        &[
            "pool-create-as",
            "gpool",
            "dir",
            "--target",
            pool_dir.to_str().unwrap(),
            "--build",
        ],
    );
    // The guest's disk (its first bytes are VIRT-DISK-MARKER) becomes a volume.
    std::fs::copy(g.join("disk.raw"), pool_dir.join("guest.raw")).unwrap();
    ok(&uri, &["pool-refresh", "gpool"]);
    assert!(ok(&uri, &["vol-list", "gpool"]).contains("guest.raw"));
    let serial = root.join("serial.log");
    let xml = format!(
        "<domain type='qemu'><name>vboot</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
         <cmdline>console=ttyS0 quiet panic=-1</cmdline></os><features><acpi/></features>\
         <devices><serial type='file'><source path='{s}'/></serial>\
         <disk type='volume' device='disk'><source pool='gpool' volume='guest.raw'/><target dev='vda' bus='virtio'/></disk>\
         </devices></domain>",
        k = g.join("vmlinux").display(),
        i = g.join("initrd.img").display(),
        s = serial.display(),
    );
    let o = define(&uri, &root, "vboot", &xml);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(&uri, &["start", "vboot"]);
    let log = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    let t0 = std::time::Instant::now();
    while !log().contains("GUEST-READY") {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(90),
            "timed out waiting for GUEST-READY: {}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        log().contains("VIRT-DISK-MARKER"),
        "the guest read its disk through the volume: {}",
        log()
    );
    assert!(ok(&uri, &["dumpxml", "vboot"]).contains("<source pool='gpool' volume='guest.raw'/>"));
    ok(&uri, &["destroy", "vboot"]);
    ok(&uri, &["undefine", "vboot"]);
}

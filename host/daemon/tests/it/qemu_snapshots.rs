//! Internal snapshots of the QEMU plugin through rvirtd with unmodified `virsh`: the
//! shared test guest boots under TCG on a qcow2 disk; a snapshot of the running guest
//! holds its memory and disk (QMP `snapshot-save`), reverts bring it back running (in
//! place and from shut off), a snapshot of the shut-off domain goes through `qemu-img`,
//! the metadata survives a daemon restart, and raw disks and bad names are refused.

use super::qemu::{guest_xml, ok, state, tools_missing, virsh, wait_for};
use super::{Daemon, EventWatch};
use rvirt_tests::guest;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn fails(uri: &str, args: &[&str]) -> String {
    let o = virsh(uri, args);
    assert!(
        !o.status.success(),
        "virsh {args:?} succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tool(program: &str, args: &[&str]) -> String {
    let o = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        o.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The tags `qemu-img snapshot -l` lists (`-U`: the image may be open in QEMU).
fn tags(disk: &Path) -> Vec<String> {
    let out = tool(
        "qemu-img",
        &["snapshot", "-l", "-U", disk.to_str().unwrap()],
    );
    out.lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// The first 16 bytes of the qcow2 image's guest-visible data, as `qemu-io` dumps them
/// (non-alphanumerics as `.`).
fn marker(disk: &Path) -> String {
    tool(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-r",
            "-U",
            "-c",
            "read -v 0 16",
            disk.to_str().unwrap(),
        ],
    )
}

fn names(uri: &str) -> Vec<String> {
    ok(uri, &["snapshot-list", "vsnap", "--name"])
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The pid of the one QEMU process whose command line names `disk`.
fn qemu_pid(disk: &Path) -> u32 {
    let needle = disk.to_string_lossy();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains("qemu-system") && cmd.contains(needle.as_ref()) {
            pids.push(pid);
        }
    }
    assert_eq!(pids.len(), 1, "one QEMU runs {needle}: {pids:?}");
    pids[0]
}

#[test]
fn virsh_takes_reverts_and_deletes_internal_snapshots_of_a_qemu_guest() {
    if tools_missing() {
        return;
    }
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        bin_dir.join("librvirt_plugin_qemu.so").is_file(),
        "the qemu plugin is missing next to rvirtd: build rvirt-plugin-qemu first"
    );
    let g = guest();
    let mut d = Daemon::start();
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let root = d.root.path().to_path_buf();
    let disk = root.join("disk.qcow2");
    tool(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            g.join("disk.raw").to_str().unwrap(),
            disk.to_str().unwrap(),
        ],
    );
    let serial = root.join("serial.log");
    let file = root.join("vsnap.xml");
    std::fs::write(&file, guest_xml("vsnap", &g, &serial, &disk, "qcow2")).unwrap();
    ok(&uri, &["define", file.to_str().unwrap()]);
    // with its uuid now: defining the file again updates the domain
    std::fs::write(&file, ok(&uri, &["dumpxml", "--inactive", "vsnap"])).unwrap();
    let log = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();

    // A raw writable disk cannot hold an internal snapshot: refused naming the disk.
    let raw = root.join("disk.raw");
    std::fs::copy(g.join("disk.raw"), &raw).unwrap();
    let rawfile = root.join("vraw.xml");
    std::fs::write(&rawfile, guest_xml("vraw", &g, &serial, &raw, "raw")).unwrap();
    ok(&uri, &["define", rawfile.to_str().unwrap()]);
    let e = fails(&uri, &["snapshot-create-as", "vraw", "s"]);
    assert!(
        e.contains("disk 'vda'") && e.contains("'raw'"),
        "the refusal names the disk and its format: {e}"
    );
    assert!(
        ok(&uri, &["snapshot-list", "vraw", "--name"])
            .trim()
            .is_empty()
    );
    ok(&uri, &["undefine", "vraw"]);

    let watch = |uri: &str| {
        let w = EventWatch::spawn(
            "virsh",
            &[
                "-c",
                uri,
                "event",
                "vsnap",
                "--event",
                "lifecycle",
                "--loop",
            ],
        );
        // redefining makes an event: the watcher is registered once it shows
        w.ready("Defined Updated", |_| {
            ok(uri, &["define", file.to_str().unwrap()]);
        });
        w
    };
    let events = watch(&uri);
    ok(&uri, &["start", "vsnap"]);
    wait_for("GUEST-READY", Duration::from_secs(90), || {
        log().contains("GUEST-READY")
    });

    // A snapshot of the running guest: memory and disk, in the qcow2 image.
    let e = fails(&uri, &["snapshot-create-as", "vsnap", ".hidden"]);
    assert!(e.contains("domainsnapshot/name"), "{e}");
    let out = ok(
        &uri,
        &[
            "snapshot-create-as",
            "vsnap",
            "s1",
            "--description",
            "booted",
        ],
    );
    assert!(out.contains("Domain snapshot s1 created"), "{out}");
    assert_eq!(state(&uri, "vsnap"), "running");
    assert_eq!(tags(&disk), ["s1"]);
    let list = ok(&uri, &["snapshot-list", "vsnap"]);
    assert!(list.contains("s1") && list.contains("running"), "{list}");
    assert_eq!(
        ok(&uri, &["snapshot-current", "vsnap", "--name"]).trim(),
        "s1"
    );
    let x = ok(&uri, &["snapshot-dumpxml", "vsnap", "s1"]);
    for part in [
        "<name>s1</name>",
        "<description>booted</description>",
        "<state>running</state>",
        "<memory snapshot='internal'/>",
        "<disk name='vda' snapshot='internal'/>",
        "<name>vsnap</name>",
    ] {
        assert!(x.contains(part), "{part} missing in {x}");
    }

    // Reverting the running guest loads the snapshot in the same QEMU process.
    let pid = qemu_pid(&disk);
    ok(&uri, &["snapshot-revert", "vsnap", "s1"]);
    assert_eq!(state(&uri, "vsnap"), "running");
    assert_eq!(
        qemu_pid(&disk),
        pid,
        "the revert of a running guest replaced its QEMU process"
    );

    // Reverting a paused domain in place: the guest runs again.
    ok(&uri, &["suspend", "vsnap"]);
    assert_eq!(state(&uri, "vsnap"), "paused");
    ok(&uri, &["snapshot-revert", "vsnap", "s1"]);
    let r = ok(&uri, &["domstate", "--reason", "vsnap"]);
    assert!(r.contains("running (from snapshot)"), "{r}");
    events.wait_for(&["Resumed Snapshot".to_string()]);

    // Shut off, the disk changes, and an offline snapshot goes through qemu-img.
    ok(&uri, &["destroy", "vsnap"]);
    tool(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -P 0x58 0 16",
            disk.to_str().unwrap(),
        ],
    );
    assert!(marker(&disk).contains("XXXXXXXXXXXXXXXX"));
    ok(&uri, &["snapshot-create-as", "vsnap", "s2"]);
    assert_eq!(tags(&disk), ["s1", "s2"]);
    let x = ok(&uri, &["snapshot-dumpxml", "vsnap", "s2"]);
    assert!(x.contains("<state>shutoff</state>"), "{x}");
    assert!(x.contains("<memory snapshot='no'/>"), "{x}");
    assert_eq!(ok(&uri, &["snapshot-parent", "vsnap", "s2"]).trim(), "s1");

    // A restarted daemon reads the metadata back.
    d.restart();
    assert_eq!(names(&uri), ["s1", "s2"]);
    assert_eq!(
        ok(&uri, &["snapshot-current", "vsnap", "--name"]).trim(),
        "s2"
    );

    // Reverting the shut-off domain to the running snapshot starts it with the saved
    // memory: the guest does not boot again, and its acpid answers the power button.
    let events = watch(&uri);
    ok(&uri, &["snapshot-revert", "vsnap", "s1"]);
    events.wait_for(&["Started Snapshot".to_string()]);
    assert_eq!(state(&uri, "vsnap"), "running");
    let r = ok(&uri, &["domstate", "--reason", "vsnap"]);
    assert!(r.contains("running (from snapshot)"), "{r}");
    ok(&uri, &["shutdown", "vsnap"]);
    wait_for(
        "the reverted guest's ACPI shutdown",
        Duration::from_secs(60),
        || state(&uri, "vsnap") == "shut off",
    );
    let l = log();
    assert!(l.contains("GUEST-POWEROFF: acpi power button"), "{l}");
    assert!(!l.contains("GUEST-READY"), "the guest booted again: {l}");
    assert!(
        marker(&disk).contains("VIRT.DISK.MARKER"),
        "s1's disk is back: {}",
        marker(&disk)
    );

    // The shut-off snapshot brings its disk back and leaves the domain off.
    ok(&uri, &["snapshot-revert", "vsnap", "s2"]);
    assert_eq!(state(&uri, "vsnap"), "shut off");
    assert!(marker(&disk).contains("XXXXXXXXXXXXXXXX"));

    ok(&uri, &["snapshot-delete", "vsnap", "s2"]);
    assert_eq!(tags(&disk), ["s1"]);
    assert_eq!(names(&uri), ["s1"]);
    let e = fails(&uri, &["snapshot-dumpxml", "vsnap", "s2"]);
    assert!(
        e.contains("no domain snapshot with matching name 's2'"),
        "{e}"
    );

    // A paused revert, then a snapshot of the paused guest that halts it.
    ok(&uri, &["snapshot-revert", "vsnap", "s1", "--paused"]);
    let r = ok(&uri, &["domstate", "--reason", "vsnap"]);
    assert!(r.contains("paused (from snapshot)"), "{r}");
    ok(&uri, &["snapshot-create-as", "vsnap", "s3", "--halt"]);
    assert_eq!(state(&uri, "vsnap"), "shut off");
    let x = ok(&uri, &["snapshot-dumpxml", "vsnap", "s3"]);
    assert!(x.contains("<state>paused</state>"), "{x}");
    assert_eq!(ok(&uri, &["snapshot-parent", "vsnap", "s3"]).trim(), "s1");
    assert_eq!(tags(&disk), ["s1", "s3"]);

    // Undefine keeps a domain with snapshots unless their metadata may go.
    let meta = root.join("var/lib/rvirt/qemu/snapshot/vsnap");
    assert!(meta.join("s1.xml").is_file());
    let e = fails(&uri, &["undefine", "vsnap"]);
    assert!(
        e.contains("cannot delete inactive domain with 2 snapshots"),
        "{e}"
    );
    // Only the children of s1 go; s1 becomes current again.
    ok(&uri, &["snapshot-delete", "vsnap", "s1", "--children-only"]);
    assert_eq!(tags(&disk), ["s1"]);
    assert_eq!(names(&uri), ["s1"]);
    assert_eq!(
        ok(&uri, &["snapshot-current", "vsnap", "--name"]).trim(),
        "s1"
    );
    assert!(!meta.join("s3.xml").exists());

    // A guest running another definition than the snapshot's: the revert restarts QEMU
    // with the snapshot's definition, which becomes the domain's again.
    let bigger = std::fs::read_to_string(&file)
        .unwrap()
        .replace(">262144<", ">294912<");
    assert!(bigger.contains(">294912</memory>"), "{bigger}");
    std::fs::write(&file, bigger).unwrap();
    ok(&uri, &["define", file.to_str().unwrap()]);
    ok(&uri, &["start", "vsnap"]);
    assert!(ok(&uri, &["dominfo", "vsnap"]).contains("294912 KiB"));
    ok(&uri, &["snapshot-revert", "vsnap", "s1"]);
    let r = ok(&uri, &["domstate", "--reason", "vsnap"]);
    assert!(r.contains("running (from snapshot)"), "{r}");
    assert!(ok(&uri, &["dominfo", "vsnap"]).contains("262144 KiB"));
    let inactive = ok(&uri, &["dumpxml", "--inactive", "vsnap"]);
    assert!(
        inactive.contains("<memory unit='KiB'>262144</memory>"),
        "{inactive}"
    );

    // A disk hot-plugged into the running guest holds the next snapshot too (its block
    // nodes are named apart from the start's), and a delete on the running domain
    // removes it from both images.
    let extra = root.join("extra.qcow2");
    tool(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", extra.to_str().unwrap(), "8M"],
    );
    let extra_xml = root.join("extra.xml");
    std::fs::write(
        &extra_xml,
        format!(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
             <source file='{}'/><target dev='vdb' bus='virtio'/></disk>",
            extra.display()
        ),
    )
    .unwrap();
    ok(
        &uri,
        &[
            "attach-device",
            "vsnap",
            extra_xml.to_str().unwrap(),
            "--live",
        ],
    );
    ok(&uri, &["snapshot-create-as", "vsnap", "s4"]);
    assert_eq!(tags(&disk), ["s1", "s4"]);
    assert_eq!(tags(&extra), ["s4"]);
    ok(&uri, &["snapshot-delete", "vsnap", "s4"]);
    assert_eq!(tags(&disk), ["s1"]);
    assert!(tags(&extra).is_empty());
    ok(&uri, &["destroy", "vsnap"]);
    ok(&uri, &["undefine", "vsnap", "--snapshots-metadata"]);
    assert!(!meta.exists());
    assert_eq!(tags(&disk), ["s1"], "the image keeps its snapshot");
}

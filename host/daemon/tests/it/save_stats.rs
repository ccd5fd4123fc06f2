//! Plugin API 1.8 through rvirtd with the real `virsh`, on the test driver: save and
//! restore through an image file, managed save and the start that resumes from it,
//! `list --with-managed-save`, the state reason "saved", the statistics calls, and the
//! read-only socket refusing the changes.

use crate::{Daemon, missing};
use std::process::{Command, Output};

fn virsh(uri: &str, args: &[&str]) -> Output {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .expect("cannot run virsh");
    eprintln!(
        "$ virsh {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(uri: &str, args: &[&str]) -> String {
    let out = virsh(uri, args);
    assert!(out.status.success(), "virsh {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(uri: &str, args: &[&str]) -> String {
    let out = virsh(uri, args);
    assert!(!out.status.success(), "virsh {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn no_virsh() -> bool {
    missing(
        "virsh (libvirt-clients)",
        Command::new("virsh").arg("--version"),
    )
}

#[test]
fn virsh_saves_restores_and_managed_saves_test_domains_through_rvirtd() {
    if no_virsh() {
        return;
    }
    let d = Daemon::start();
    let uri = d.uri();
    let image = d.root.path().join("test.save");
    let image_s = image.to_str().unwrap();

    // save: the domain stops with reason "saved"; the image holds its XML
    let out = ok(&uri, &["save", "test", image_s]);
    assert!(out.contains("Domain 'test' saved to"), "{out}");
    let r = ok(&uri, &["domstate", "--reason", "test"]);
    assert!(r.contains("shut off (saved)"), "{r}");
    let x = ok(&uri, &["save-image-dumpxml", image_s]);
    assert!(x.contains("<name>test</name>"), "{x}");
    let bytes = std::fs::read(&image).unwrap();
    assert!(bytes.starts_with(b"RvirtTestSave"), "the versioned header");

    // restore: running again, reason "restored"
    let out = ok(&uri, &["restore", image_s]);
    assert!(out.contains("Domain restored from"), "{out}");
    let r = ok(&uri, &["domstate", "--reason", "test"]);
    assert!(r.contains("running (restored)"), "{r}");
    // restoring over a running domain is refused
    let e = fails(&uri, &["restore", image_s]);
    assert!(e.contains("already active"), "{e}");
    // a file that is no image is named
    let junk = d.root.path().join("junk");
    std::fs::write(&junk, b"junk").unwrap();
    let e = fails(&uri, &["restore", junk.to_str().unwrap()]);
    assert!(e.contains("not a test driver save image"), "{e}");
    // --paused
    ok(&uri, &["save", "test", image_s, "--paused"]);
    ok(&uri, &["restore", image_s]);
    assert_eq!(ok(&uri, &["domstate", "test"]).trim(), "paused");
    ok(&uri, &["resume", "test"]);

    // managed save: listed, the next start resumes from it, then it is gone
    let out = ok(&uri, &["managedsave", "test"]);
    assert!(
        out.contains("Domain 'test' state saved by libvirt"),
        "{out}"
    );
    let info = ok(&uri, &["dominfo", "test"]);
    assert!(
        info.lines()
            .any(|l| l.starts_with("Managed save:") && l.ends_with("yes")),
        "{info}"
    );
    let list = ok(&uri, &["list", "--all", "--with-managed-save"]);
    assert!(list.contains("test"), "{list}");
    let list = ok(&uri, &["list", "--all", "--without-managed-save"]);
    assert!(!list.contains(" test "), "{list}");
    let e = fails(&uri, &["undefine", "test"]);
    assert!(e.contains("managed save image exists"), "{e}");
    ok(&uri, &["start", "test"]);
    let r = ok(&uri, &["domstate", "--reason", "test"]);
    assert!(r.contains("running (restored)"), "{r}");
    let info = ok(&uri, &["dominfo", "test"]);
    assert!(
        info.lines()
            .any(|l| l.starts_with("Managed save:") && l.ends_with("no")),
        "{info}"
    );
    // managedsave-remove drops it: the start boots
    ok(&uri, &["managedsave", "test"]);
    ok(&uri, &["managedsave-remove", "test"]);
    ok(&uri, &["start", "test"]);
    let r = ok(&uri, &["domstate", "--reason", "test"]);
    assert!(r.contains("running (booted)"), "{r}");

    // read-only: changes refused, statistics answered
    let ro = d.uri_ro();
    let e = fails(&ro, &["save", "test", image_s]);
    assert!(e.contains("read only"), "{e}");
    let e = fails(&ro, &["managedsave", "test"]);
    assert!(e.contains("read only"), "{e}");
    let e = fails(&ro, &["restore", image_s]);
    assert!(e.contains("read only"), "{e}");
    let s = ok(&ro, &["domstats", "test"]);
    assert!(s.contains("state.state=1"), "{s}");
}

#[test]
fn virsh_reads_test_domain_statistics_through_rvirtd() {
    if no_virsh() {
        return;
    }
    let d = Daemon::start();
    let uri = d.uri();
    let s = ok(&uri, &["domstats", "test"]);
    for part in [
        "Domain: 'test'",
        "state.state=1",
        "state.reason=",
        "cpu.time=",
        "balloon.current=",
        "balloon.maximum=8388608",
        "vcpu.current=2",
        "vcpu.maximum=2",
        "vcpu.0.state=1",
    ] {
        assert!(s.contains(part), "{part} missing in {s}");
    }
    let time = |s: &str| -> u64 {
        s.lines()
            .find_map(|l| l.trim().strip_prefix("cpu.time="))
            .unwrap()
            .parse()
            .unwrap()
    };
    let t1 = time(&s);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t2 = time(&ok(&uri, &["domstats", "test", "--cpu-total"]));
    assert!(t2 > t1, "cpu.time moves: {t1} then {t2}");
    // one group only
    let s = ok(&uri, &["domstats", "--balloon"]);
    assert!(
        s.contains("balloon.current") && !s.contains("state.state"),
        "{s}"
    );
    let m = ok(&uri, &["dommemstat", "test"]);
    assert!(
        m.contains("actual ") && m.contains("available 8388608"),
        "{m}"
    );
    let j = ok(&uri, &["domjobinfo", "test"]);
    assert!(j.contains("Job type:") && j.contains("None"), "{j}");
    let c = ok(&uri, &["cpu-stats", "test", "--total"]);
    assert!(c.contains("cpu_time"), "{c}");
    // calls the test driver does not have answer no-support naming them
    let e = fails(&uri, &["domblkstat", "test", "vda"]);
    assert!(e.contains("virDomainBlockStatsFlags"), "{e}");
}

/// `rvirt` through the host library's remote driver (rvirtd's unix socket): the same
/// calls over the wire from the other side.
#[test]
fn the_rvirt_cli_saves_restores_and_reads_statistics_over_the_remote_driver() {
    let rvirt = rvirt_tests::built("rvirt");
    assert!(
        rvirt.is_file(),
        "build rvirt-cli first: {}",
        rvirt.display()
    );
    let d = Daemon::start();
    let uri = d.uri();
    let run = |args: &[&str]| -> String {
        let o = Command::new(&rvirt)
            .arg("-c")
            .arg(&uri)
            .args(args)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "rvirt {args:?} failed: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    let s = run(&["domstats", "test"]);
    assert!(
        s.contains("Domain: 'test'") && s.contains("vcpu.current=2"),
        "{s}"
    );
    let s = run(&["domstats", "--balloon"]);
    assert!(
        s.contains("balloon.maximum=8388608") && !s.contains("state.state"),
        "{s}"
    );
    let m = run(&["dommemstat", "test"]);
    assert!(m.contains("available 8388608"), "{m}");
    let j = run(&["domjobinfo", "test"]);
    assert!(j.contains("None"), "{j}");
    let c = run(&["cpu-stats", "test", "--total"]);
    assert!(c.contains("cpu_time"), "{c}");
    let image = d.root.path().join("cli.save");
    let out = run(&["save", "test", image.to_str().unwrap()]);
    assert!(out.contains("saved to"), "{out}");
    let x = run(&["save-image-dumpxml", image.to_str().unwrap()]);
    assert!(x.contains("<name>test</name>"), "{x}");
    run(&["restore", image.to_str().unwrap()]);
    let st = run(&["domstate", "test", "--reason"]);
    assert!(st.contains("running (restored)"), "{st}");
    run(&["managedsave", "test"]);
    let st = run(&["domstate", "test", "--reason"]);
    assert!(st.contains("shut off (saved)"), "{st}");
    run(&["managedsave-remove", "test"]);
}

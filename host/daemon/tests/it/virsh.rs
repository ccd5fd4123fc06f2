//! The real `virsh` against rvirtd.

use crate::virsh;
use crate::{Daemon, EventWatch, domain_xml, missing, write_file};
use std::process::Command;

fn no_virsh() -> bool {
    missing(
        "virsh (libvirt-clients)",
        Command::new("virsh").arg("--version"),
    )
}

/// Runs virsh and returns stdout; panics with both streams on failure.
fn ok(uri: &str, args: &[&str]) -> String {
    let out = virsh(uri, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "virsh {args:?} failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn state(uri: &str, name: &str) -> String {
    ok(uri, &["domstate", name]).trim().to_string()
}

#[test]
fn virsh_domain_lifecycle() {
    if no_virsh() {
        return;
    }
    let d = Daemon::start();
    let uri = d.uri();
    let list = ok(&uri, &["list", "--all"]);
    assert!(list.contains("test") && list.contains("running"), "{list}");
    let info = ok(&uri, &["dominfo", "test"]);
    assert!(
        info.contains("Name:") && info.contains("test") && info.contains("OS Type:"),
        "{info}"
    );
    assert!(info.contains("Persistent:     yes"), "{info}");
    let xml = ok(&uri, &["dumpxml", "test"]);
    assert!(xml.contains("<name>test</name>"), "{xml}");

    let file = write_file(d.root.path(), "vm1.xml", &domain_xml("vm1"));
    ok(&uri, &["define", file.to_str().unwrap()]);
    assert_eq!(state(&uri, "vm1"), "shut off");
    ok(&uri, &["start", "vm1"]);
    assert_eq!(state(&uri, "vm1"), "running");
    ok(&uri, &["suspend", "vm1"]);
    assert_eq!(state(&uri, "vm1"), "paused");
    ok(&uri, &["resume", "vm1"]);
    assert_eq!(state(&uri, "vm1"), "running");
    let listed = ok(&uri, &["list"]);
    assert!(listed.contains("vm1"), "{listed}");
    ok(&uri, &["destroy", "vm1"]);
    assert_eq!(state(&uri, "vm1"), "shut off");
    ok(&uri, &["undefine", "vm1"]);
    let list = ok(&uri, &["list", "--all", "--name"]);
    assert!(!list.contains("vm1"), "{list}");

    // errors carry the driver's message
    let out = virsh(&uri, &["dominfo", "no-such-domain"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-domain") || err.contains("not found"),
        "{err}"
    );

    // host-level calls
    assert!(ok(&uri, &["nodeinfo"]).contains("CPU(s)"));
    assert!(ok(&uri, &["capabilities"]).contains("<capabilities>"));
    assert!(!ok(&uri, &["hostname"]).trim().is_empty());
    assert!(ok(&uri, &["version", "--daemon"]).contains("Running against daemon"));
}

#[test]
fn virsh_events() {
    if no_virsh() {
        return;
    }
    let d = Daemon::start();
    let uri = d.uri();
    let watcher = EventWatch::spawn("virsh", &["-c", &uri, "event", "--all", "--loop"]);
    // the watcher has registered its callbacks once it sees a probe domain's events
    let probe = write_file(d.root.path(), "probe.xml", &domain_xml("probe"));
    watcher.ready("for domain 'probe': Defined", |_| {
        ok(&uri, &["define", probe.to_str().unwrap()]);
        ok(&uri, &["undefine", "probe"]);
    });
    let file = write_file(d.root.path(), "ev.xml", &domain_xml("ev1"));
    ok(&uri, &["define", file.to_str().unwrap()]);
    ok(&uri, &["start", "ev1"]);
    ok(&uri, &["destroy", "ev1"]);
    ok(&uri, &["undefine", "ev1"]);
    watcher.wait_for(
        &["Defined", "Started", "Stopped", "Undefined"]
            .map(|word| format!("for domain 'ev1': {word}")),
    );
}

#[test]
fn read_only_socket_refuses_define() {
    if no_virsh() {
        return;
    }
    let d = Daemon::start();
    let file = write_file(d.root.path(), "ro.xml", &domain_xml("rovm"));
    let out = virsh(&d.uri_ro(), &["define", file.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "define succeeded on the read-only socket"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("read only access prevents"), "{err}");
    for args in [
        &["destroy", "test"][..],
        &["suspend", "test"],
        &["undefine", "test"],
    ] {
        let out = virsh(&d.uri_ro(), args);
        assert!(
            !out.status.success(),
            "{args:?} succeeded on the read-only socket"
        );
    }
    // reads work, and nothing changed
    let list = ok(&d.uri_ro(), &["list", "--all"]);
    assert!(
        list.contains("test") && list.contains("running") && !list.contains("rovm"),
        "{list}"
    );
    assert!(ok(&d.uri_ro(), &["dumpxml", "test"]).contains("<name>test</name>"));
}

#[test]
fn libvirt_socket_paths() {
    if no_virsh() {
        return;
    }
    let d = Daemon::start_with(&["--libvirt-sockets"]);
    let sock = d.root.path().join("run/libvirt/libvirt-sock");
    // The daemon binds libvirt's paths just after its own (which `start_with` waited for):
    // on a loaded machine that can take a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(sock.exists(), "no {}", sock.display());
    let uri = format!("test+unix:///default?socket={}", sock.display());
    assert!(ok(&uri, &["list", "--all"]).contains("test"));
}

/// After the frame fuzzer, virsh still works (see `protocol::fuzz_frames`).
pub fn virsh_list_works(d: &Daemon) {
    if no_virsh() {
        return;
    }
    let list = ok(&d.uri(), &["list", "--all"]);
    assert!(list.contains("test"), "{list}");
}

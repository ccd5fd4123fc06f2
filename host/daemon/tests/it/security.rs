//! What a local user who can reach the sockets must not be able to do: open a driver root
//! of their choosing (the embed-root attack), call any procedure not marked read-only on
//! the read-only socket, read secure XML there, or register events that never fire.

use crate::{Daemon, protocol::Raw};
use rvirt_wire::protocol::{RemoteError, error_code};
use rvirt_wire::remote::{
    ConnectDomainEventCallbackRegisterAnyArgs, ConnectOpenArgs, DomainFlagsArgs,
    DomainLookupByNameArgs, DomainRet,
};
use rvirt_wire::{Access, RemoteProcedure as P, Status};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A directory laid out as a qemu embed root whose only domain autostarts and whose
/// `<emulator>` is a script that leaves a marker file when run.
fn attack_root(dir: &Path) -> std::path::PathBuf {
    let marker = dir.join("PWNED");
    let script = dir.join("emulator.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nid -u > {}\nsleep 30\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = dir.join("etc/qemu");
    std::fs::create_dir_all(cfg.join("autostart")).unwrap();
    std::fs::write(
        cfg.join("evil.xml"),
        format!(
            "<domain type='qemu'><name>evil</name><uuid>6f1b2a44-8a8e-4d5c-9d4e-2d7f9f0c1e01</uuid>\
             <memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>\
             <devices><emulator>{}</emulator></devices></domain>",
            script.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(cfg.join("evil.xml"), cfg.join("autostart/evil.xml")).unwrap();
    marker
}

fn open_error(socket: &Path, uri: &str) -> RemoteError {
    let mut c = Raw::connect(socket);
    let f = c.call(P::AuthList, &());
    assert_eq!(f.header.status, Status::Ok);
    let f = c.call(
        P::ConnectOpen,
        &ConnectOpenArgs {
            name: Some(uri.into()),
            flags: 0,
        },
    );
    assert_eq!(f.header.status, Status::Error, "{uri} was opened");
    f.body::<RemoteError>().unwrap()
}

#[test]
fn embed_root_attack_is_refused_on_both_sockets() {
    let d = Daemon::start();
    let attacker = tempfile::tempdir().unwrap();
    let marker = attack_root(attacker.path());
    let root = attacker.path().display().to_string();
    for socket in [d.socket(), d.socket_ro()] {
        for uri in [
            format!("qemu:///embed?root={root}"),
            format!("qemu:///embed/?root={root}"),
            format!("qemu:///embed?root={root}&x=1"),
        ] {
            let e = open_error(&socket, &uri);
            assert_eq!(e.code, error_code::OPERATION_DENIED, "{uri}: {e:?}");
            let msg = e.message.unwrap_or_default();
            assert!(msg.contains("embed"), "{msg}");
        }
        // nor any other URI the configuration does not name: node files, fault injection
        for uri in [
            format!("test://{root}/etc/qemu/evil.xml"),
            "test:///default?panic=virConnectListAllDomains".to_string(),
            "qemu:///session".to_string(),
        ] {
            let e = open_error(&socket, &uri);
            assert_eq!(e.code, error_code::OPERATION_DENIED, "{uri}: {e:?}");
            assert!(
                e.message.unwrap_or_default().contains("rvirtd.toml"),
                "the error says where the served URIs are configured"
            );
        }
    }
    // the project's own client, exactly as the attack was first reproduced
    let rvirt = rvirt_tests::built("rvirt");
    for socket in [d.socket_ro(), d.socket()] {
        let out = Command::new(&rvirt)
            .arg("-c")
            .arg(format!(
                "qemu+unix:///embed?root={root}&socket={}",
                socket.display()
            ))
            .arg("list")
            .env("RVIRT_PLUGIN_PATH", rvirt.parent().unwrap())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "rvirt list succeeded: {err}");
        assert!(err.contains("embed"), "{err}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !marker.exists(),
        "the attacker's emulator ran as uid {}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );
    assert!(
        !attacker.path().join("run").exists(),
        "the daemon opened the attacker's root (it created run/)"
    );
}

#[test]
fn configuration_names_what_is_served() {
    // an embed URI in the configuration stops the daemon at start-up
    let bad = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bad.path().join("etc/rvirt")).unwrap();
    std::fs::write(
        bad.path().join("etc/rvirt/rvirtd.toml"),
        "uris = [\"qemu:///embed?root=/tmp\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rvirtd"))
        .arg("--root")
        .arg(bad.path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("embed"), "{err}");
    // a configuration listing only test:///default refuses qemu:///system
    let d = Daemon::start_with_config("uris = [\"test:///default\"]\n");
    let e = open_error(&d.socket(), "qemu:///system");
    assert_eq!(e.code, error_code::OPERATION_DENIED);
    let mut ok = Raw::connect(&d.socket());
    ok.open();
    assert_eq!(ok.get_type(), "Test");
}

/// Every procedure of the table on the read-only socket: the ones not marked `#[ro]` are
/// refused with OPERATION_DENIED before their arguments are even decoded; the marked ones
/// are not refused for access. Nothing changes.
#[test]
fn every_procedure_is_classified_on_the_read_only_socket() {
    let d = Daemon::start();
    let mut rw = Raw::connect(&d.socket());
    rw.open();
    let before = rw.call(
        P::ConnectListAllDomains,
        &rvirt_wire::remote::ConnectListAllDomainsArgs {
            need_results: 1,
            flags: 0,
        },
    );
    let mut ro = Raw::connect(&d.socket_ro());
    ro.open();
    let (mut refused, mut allowed) = (0, 0);
    for &p in P::ALL {
        if matches!(p, P::ConnectClose | P::ConnectOpen) {
            continue;
        }
        // empty arguments: a procedure that gets past the access check fails to decode
        // them (or answers), one that does not is refused first
        let f = ro.call(p, &());
        let denied = f.header.status == Status::Error && {
            let e = f.body::<RemoteError>().unwrap();
            e.code == error_code::OPERATION_DENIED
                && e.message
                    .unwrap_or_default()
                    .contains("read only access prevents")
        };
        match p.access() {
            Access::ReadWrite => {
                assert!(denied, "{p:?} is not refused on the read-only socket");
                refused += 1;
            }
            Access::ReadOnly => {
                assert!(!denied, "{p:?} is marked read-only but refused");
                allowed += 1;
            }
        }
    }
    assert!(
        refused >= 15 && allowed >= 30,
        "{refused} refused, {allowed} allowed"
    );
    // an unknown procedure number is refused too
    let serial = ro.send_call(rvirt_wire::protocol::REMOTE_PROGRAM, 9999, &());
    let f = ro.reply();
    assert_eq!((f.header.serial, f.header.status), (serial, Status::Error));
    // the connection still works and nothing changed
    assert_eq!(ro.get_type(), "Test");
    let after = rw.call(
        P::ConnectListAllDomains,
        &rvirt_wire::remote::ConnectListAllDomainsArgs {
            need_results: 1,
            flags: 0,
        },
    );
    assert_eq!(before.payload, after.payload);
}

#[test]
fn secure_xml_is_refused_read_only() {
    let d = Daemon::start();
    let mut ro = Raw::connect(&d.socket_ro());
    ro.open();
    let f = ro.call(
        P::DomainLookupByName,
        &DomainLookupByNameArgs {
            name: "test".into(),
        },
    );
    let dom = f.body::<DomainRet>().unwrap().dom;
    let xml = |c: &mut Raw, flags| {
        c.call(
            P::DomainGetXmlDesc,
            &DomainFlagsArgs {
                dom: dom.clone(),
                flags,
            },
        )
    };
    assert_eq!(xml(&mut ro, 0).header.status, Status::Ok);
    assert_eq!(xml(&mut ro, 2).header.status, Status::Ok);
    for flags in [1, 3] {
        let f = xml(&mut ro, flags);
        let e = f.body::<RemoteError>().unwrap();
        assert_eq!(e.code, error_code::OPERATION_DENIED, "{e:?}");
        assert!(e.message.unwrap().contains("secure"));
    }
    // a read-write connection that asked for read-only (VIR_CONNECT_RO) is read-only too
    let mut rw_ro = Raw::connect(&d.socket());
    rw_ro.call(P::AuthList, &());
    let f = rw_ro.call(
        P::ConnectOpen,
        &ConnectOpenArgs {
            name: Some("test:///default".into()),
            flags: 1,
        },
    );
    assert_eq!(f.header.status, Status::Ok);
    assert_eq!(xml(&mut rw_ro, 1).header.status, Status::Error);
    let mut rw = Raw::connect(&d.socket());
    rw.open();
    assert_eq!(xml(&mut rw, 1).header.status, Status::Ok);
    // and unmodified virsh sees the same
    if crate::missing("virsh", Command::new("virsh").arg("--version")) {
        return;
    }
    let uri = format!("test+unix:///default?socket={}", d.socket_ro().display());
    // without -r virsh does not know the socket is read-only: the daemon refuses
    let out = Command::new("virsh")
        .args(["-c", &uri, "dumpxml", "--security-info", "test"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("read only access prevents"), "{err}");
    let out = Command::new("virsh")
        .args(["-c", &uri, "dumpxml", "test"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn event_ids_never_delivered_answer_no_support() {
    let d = Daemon::start();
    let mut c = Raw::connect(&d.socket());
    c.open();
    let reg = |c: &mut Raw, event_id| {
        c.call(
            P::ConnectDomainEventCallbackRegisterAny,
            &ConnectDomainEventCallbackRegisterAnyArgs {
                event_id,
                dom: None,
            },
        )
    };
    assert_eq!(reg(&mut c, 0).header.status, Status::Ok);
    for id in [1, 5, 26] {
        let e = reg(&mut c, id).body::<RemoteError>().unwrap();
        assert_eq!(e.code, error_code::NO_SUPPORT, "event {id}: {e:?}");
    }
    let e = reg(&mut c, 1000).body::<RemoteError>().unwrap();
    assert_eq!(e.code, error_code::INVALID_ARG);
}

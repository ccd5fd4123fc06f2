//! Definitions: libvirt's errors for bad input, naming the domain and the field, and
//! nothing left behind by a refused start.

use crate::common::*;
use rvirt_plugin_lxc::cgroup::Cgroup;
use rvirt_plugin_lxc::driver::reason;
use rvirt_sdk::abi::{ErrorCode, PluginError, state};

fn err(e: rvirt_plugin_lxc::driver::DriverError) -> PluginError {
    e.into()
}

#[test]
fn bad_definitions_are_refused_with_libvirt_errors() {
    let dir = test_dir("bad-defs");
    let d = driver(&dir);
    let root = dir.join("nowhere");
    let good = xml("rvirt-it-def", &root, 65536, "", "");
    let e = err(d
        .define(&good.replace("type='lxc'", "type='kvm'"))
        .unwrap_err());
    assert_eq!(e.code, ErrorCode::ConfigUnsupported as i32);
    assert_eq!(e.domain, 17, "VIR_FROM_LXC");
    assert!(e.message.contains("domain/@type"), "{}", e.message);
    let e = err(d
        .define(&good.replace("<type>exe</type>", "<type>hvm</type>"))
        .unwrap_err());
    assert!(e.message.contains("domain/os/type"), "{}", e.message);
    let e = err(d
        .define(&good.replace("<init>/bin/sh</init>", "<init>bin/sh</init>"))
        .unwrap_err());
    assert_eq!(e.code, ErrorCode::XmlError as i32);
    assert!(e.message.contains("domain/os/init"), "{}", e.message);
    let e = err(d.define("<domain type='lxc'><name>x</name>").unwrap_err());
    assert_eq!(e.code, ErrorCode::XmlError as i32);
    // Duplicate names, and a UUID already used by another name.
    let r = d.define(&good).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    let other = good.replace(
        "<name>rvirt-it-def</name>",
        &format!(
            "<name>rvirt-it-def</name><uuid>{}</uuid>",
            uuid::Uuid::new_v4()
        ),
    );
    let e = err(d.define(&other).unwrap_err());
    assert_eq!(e.code, ErrorCode::OperationFailed as i32);
    assert!(
        e.message.contains("'rvirt-it-def' already exists"),
        "{}",
        e.message
    );
    let renamed = d
        .xml(u, true, true)
        .unwrap()
        .replace("<name>rvirt-it-def</name>", "<name>rvirt-it-def2</name>");
    let e = err(d.define(&renamed).unwrap_err());
    assert!(
        e.message.contains("already defined with uuid"),
        "{}",
        e.message
    );
    // Redefining the same domain (its UUID) updates it; the config file is on disk.
    let same = d.xml(u, true, true).unwrap();
    assert_eq!(d.define(&same).unwrap().uuid, r.uuid);
    assert!(paths(&dir).config_file("rvirt-it-def").is_file());
    assert_eq!(d.list(0).len(), 1);
    // A new instance reads it back.
    let again = driver(&dir);
    assert_eq!(again.by_name("rvirt-it-def").unwrap().uuid, r.uuid);
    d.undefine(u).unwrap();
    assert!(!paths(&dir).config_file("rvirt-it-def").exists());
}

#[test]
fn refused_starts_name_the_field_and_leave_nothing() {
    if !can_run("refused_starts_name_the_field_and_leave_nothing") {
        return;
    }
    let dir = test_dir("bad-starts");
    let d = driver(&dir);
    let cgroup = |name: &str| {
        Cgroup::at(&format!("{}/{name}.libvirt-lxc", paths(&dir).cgroup_parent)).unwrap()
    };
    // The root directory does not exist.
    let missing = dir.join("no-such-root");
    let r = d
        .define(&xml("rvirt-it-noroot", &missing, 65536, "", ""))
        .unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    let e = err(d.start(u, 0).unwrap_err());
    assert_eq!(e.code, ErrorCode::SystemError as i32);
    assert!(
        e.message.contains("domain 'rvirt-it-noroot'")
            && e.message.contains("filesystem[1]/source/@dir")
            && e.message.contains("no-such-root"),
        "{}",
        e.message
    );
    assert_eq!(
        d.state(u).unwrap(),
        (state::SHUTOFF, reason::SHUTOFF_FAILED)
    );
    assert!(!cgroup("rvirt-it-noroot").exists());
    // init is not executable.
    let root = rootfs(&dir, "exit 0\n");
    std::fs::write(root.join("bin/notexec"), "#!/bin/sh\n").unwrap();
    let x = xml("rvirt-it-noexec", &root, 65536, "", "")
        .replace("<init>/bin/sh</init>", "<init>/bin/notexec</init>");
    let r = d.define(&x).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    let e = err(d.start(u, 0).unwrap_err());
    assert!(
        e.message
            .contains("domain/os/init '/bin/notexec' is not an executable file"),
        "{}",
        e.message
    );
    // ... or missing.
    let x = xml("rvirt-it-noinit", &root, 65536, "", "")
        .replace("<init>/bin/sh</init>", "<init>/sbin/nothing</init>");
    let r = d.define(&x).unwrap();
    let e = err(d
        .start(rvirt_sdk::util::from_abi_uuid(r.uuid), 0)
        .unwrap_err());
    assert!(
        e.message.contains("'/sbin/nothing' cannot be found"),
        "{}",
        e.message
    );
    // A memory limit below what a container can exec with.
    let r = d.define(&xml("rvirt-it-tiny", &root, 512, "", "")).unwrap();
    let e = err(d
        .start(rvirt_sdk::util::from_abi_uuid(r.uuid), 0)
        .unwrap_err());
    assert_eq!(e.code, ErrorCode::XmlError as i32);
    assert!(
        e.message.contains("memory limit of 512 KiB"),
        "{}",
        e.message
    );
    for n in ["rvirt-it-noexec", "rvirt-it-noinit", "rvirt-it-tiny"] {
        assert!(!cgroup(n).exists(), "{n}");
    }
    assert!(!mounted_under(&root));
}

#[test]
fn a_blkio_weight_is_applied_where_the_host_weights_io_and_refused_where_not() {
    if !can_run("a_blkio_weight_is_applied_where_the_host_weights_io_and_refused_where_not") {
        return;
    }
    let dir = test_dir("blkio-weight");
    let d = driver(&dir);
    let root = rootfs(&dir, "exec sleep 1000\n");
    let name = "rvirt-it-blkio";
    let tune = "<blkiotune><weight>500</weight></blkiotune>";
    // out of range: refused at start, naming the field
    let r = d
        .define(&xml(
            "rvirt-it-blkio-range",
            &root,
            65536,
            "<blkiotune><weight>5</weight></blkiotune>",
            "",
        ))
        .unwrap();
    let e = err(d
        .start(rvirt_sdk::util::from_abi_uuid(r.uuid), 0)
        .unwrap_err());
    assert!(
        e.message
            .contains("domain/blkiotune/weight 5 is out of range"),
        "{}",
        e.message
    );
    let r = d.define(&xml(name, &root, 65536, tune, "")).unwrap();
    let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
    let cg = Cgroup::at(&format!("{}/{name}.libvirt-lxc", paths(&dir).cgroup_parent)).unwrap();
    match rvirt_plugin_lxc::cgroup::blkio_weight_available() {
        Ok(()) => {
            d.start(u, 0).unwrap();
            let written = cg
                .dirs()
                .iter()
                .flat_map(|g| {
                    [
                        "blkio.bfq.weight",
                        "blkio.weight",
                        "io.bfq.weight",
                        "io.weight",
                    ]
                    .map(|f| std::fs::read_to_string(g.join(f)).unwrap_or_default())
                })
                .any(|v| v.split_whitespace().any(|w| w == "500"));
            assert!(written, "the weight 500 is in the container's group");
            d.destroy(u).unwrap();
        }
        Err(why) => {
            eprintln!("this host has no block I/O weights ({why}): checking the refusal");
            let e = err(d.start(u, 0).unwrap_err());
            assert_eq!(e.code, ErrorCode::ConfigUnsupported as i32, "{}", e.message);
            assert!(
                e.message.contains("domain/blkiotune/weight")
                    && e.message.contains("not available on this host"),
                "{}",
                e.message
            );
            assert_eq!(
                d.state(u).unwrap(),
                (state::SHUTOFF, reason::SHUTOFF_FAILED)
            );
        }
    }
    assert!(!cg.exists(), "no group left");
    assert!(!mounted_under(&root));
}

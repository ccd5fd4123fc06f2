//! Domain management of plugin API 1.7 through rvirtd with the real `virsh` and
//! python-libvirt, on the test driver: memory and vCPU counts, and snapshots (create,
//! list, tree, current, parent, dumpxml, revert, delete).

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
fn virsh_sets_memory_and_vcpus_through_rvirtd() {
    if no_virsh() {
        return;
    }
    let d = Daemon::start();
    let uri = d.uri();
    // the test driver's "test" domain runs with 8 GiB and 2 vCPUs
    ok(&uri, &["setmem", "test", "1048576", "--live"]);
    let info = ok(&uri, &["dominfo", "test"]);
    assert!(info.contains("Used memory:    1048576 KiB"), "{info}");
    assert!(info.contains("Max memory:     8388608 KiB"), "{info}");
    let e = fails(&uri, &["setmem", "test", "9999999999", "--live"]);
    assert!(
        e.contains("cannot set memory higher than max memory"),
        "{e}"
    );
    let e = fails(&uri, &["setmaxmem", "test", "4194304", "--live"]);
    assert!(e.contains("maximum memory on an active domain"), "{e}");
    // the persistent definition changes, the running one does not
    ok(&uri, &["setmaxmem", "test", "4194304", "--config"]);
    let inactive = ok(&uri, &["dumpxml", "test", "--inactive"]);
    assert!(
        inactive.contains("<memory unit='KiB'>4194304</memory>"),
        "{inactive}"
    );
    assert!(ok(&uri, &["dominfo", "test"]).contains("Max memory:     8388608 KiB"));

    ok(&uri, &["setvcpus", "test", "1", "--live"]);
    let count = ok(&uri, &["vcpucount", "test", "--live", "--active"]);
    assert_eq!(count.trim(), "1");
    let e = fails(&uri, &["setvcpus", "test", "3", "--live"]);
    assert!(e.contains("greater than max allowable vcpus"), "{e}");
    // read-only connections change nothing
    let ro = d.uri_ro();
    let e = fails(&ro, &["setmem", "test", "524288", "--live"]);
    assert!(e.contains("read only"), "{e}");
    assert!(ok(&uri, &["dominfo", "test"]).contains("Used memory:    1048576 KiB"));
}

#[test]
fn virsh_snapshots_through_rvirtd() {
    if no_virsh() {
        return;
    }
    let d = Daemon::start();
    let uri = d.uri();
    let out = ok(
        &uri,
        &["snapshot-create-as", "test", "s1", "--description", "first"],
    );
    assert!(out.contains("Domain snapshot s1 created"), "{out}");
    ok(&uri, &["suspend", "test"]);
    ok(&uri, &["snapshot-create-as", "test", "s2"]);
    ok(&uri, &["resume", "test"]);

    let list = ok(&uri, &["snapshot-list", "test"]);
    let rows: Vec<&str> = list.lines().filter(|l| l.contains(" s")).collect();
    assert!(
        rows.iter()
            .any(|l| l.trim_start().starts_with("s1") && l.contains("running")),
        "{list}"
    );
    assert!(
        rows.iter()
            .any(|l| l.trim_start().starts_with("s2") && l.contains("paused")),
        "{list}"
    );
    assert_eq!(
        ok(&uri, &["snapshot-current", "test", "--name"]).trim(),
        "s2"
    );
    assert_eq!(
        ok(&uri, &["snapshot-parent", "test", "--snapshotname", "s2"]).trim(),
        "s1"
    );
    let tree = ok(&uri, &["snapshot-list", "test", "--tree"]);
    assert!(tree.contains("s1") && tree.contains("+- s2"), "{tree}");
    assert_eq!(
        ok(&uri, &["snapshot-list", "test", "--roots", "--name"]).trim(),
        "s1"
    );
    assert_eq!(
        ok(&uri, &["snapshot-list", "test", "--leaves", "--name"]).trim(),
        "s2"
    );
    let xml = ok(&uri, &["snapshot-dumpxml", "test", "s1"]);
    for part in [
        "<name>s1</name>",
        "<description>first</description>",
        "<state>running</state>",
        "<name>test</name>",
    ] {
        assert!(xml.contains(part), "{part} missing in:\n{xml}");
    }
    let info = ok(&uri, &["snapshot-info", "test", "s2"]);
    assert!(
        info.contains("Current:        yes") && info.contains("Parent:         s1"),
        "{info}"
    );

    // revert to the paused snapshot: the domain is paused; to s1: running again
    ok(&uri, &["snapshot-revert", "test", "s2"]);
    assert_eq!(ok(&uri, &["domstate", "test"]).trim(), "paused");
    ok(&uri, &["snapshot-revert", "test", "s1"]);
    assert_eq!(ok(&uri, &["domstate", "test"]).trim(), "running");
    assert_eq!(
        ok(&uri, &["snapshot-current", "test", "--name"]).trim(),
        "s1"
    );

    // bad input names the field; nothing is created
    let e = fails(&uri, &["snapshot-create-as", "test", "../x"]);
    assert!(e.contains("domainsnapshot/name"), "{e}");
    let e = fails(&uri, &["snapshot-dumpxml", "test", "nope"]);
    assert!(
        e.contains("no domain snapshot with matching name 'nope'"),
        "{e}"
    );
    // read-only: listing works, changes do not
    let ro = d.uri_ro();
    assert!(ok(&ro, &["snapshot-list", "test", "--name"]).contains("s2"));
    let e = fails(&ro, &["snapshot-create-as", "test", "s3"]);
    assert!(e.contains("read only"), "{e}");
    let e = fails(&ro, &["snapshot-delete", "test", "s2"]);
    assert!(e.contains("read only"), "{e}");

    // a domain with snapshots is not undefined without their metadata
    ok(&uri, &["destroy", "test"]);
    let e = fails(&uri, &["undefine", "test"]);
    assert!(e.contains("with 2 snapshots"), "{e}");
    ok(&uri, &["snapshot-delete", "test", "s1", "--children"]);
    assert!(
        ok(&uri, &["snapshot-list", "test", "--name"])
            .trim()
            .is_empty()
    );
    let e = fails(&uri, &["snapshot-current", "test"]);
    assert!(e.contains("has no current snapshot"), "{e}");
    ok(&uri, &["undefine", "test"]);
}

#[test]
fn python_lists_and_reverts_snapshots_through_rvirtd() {
    if missing(
        "python3-libvirt",
        Command::new("/usr/bin/python3").args(["-c", "import libvirt"]),
    ) {
        return;
    }
    let d = Daemon::start();
    let script = format!(
        r#"
import libvirt
c = libvirt.open("{uri}")
dom = c.lookupByName("test")
s1 = dom.snapshotCreateXML("<domainsnapshot><name>a</name></domainsnapshot>")
dom.destroy()
s2 = dom.snapshotCreateXML("<domainsnapshot><name>b</name></domainsnapshot>")
names = [s.getName() for s in dom.listAllSnapshots()]
assert names == ["a", "b"], names
assert dom.snapshotNum() == 2
assert dom.hasCurrentSnapshot()
assert dom.snapshotCurrent().getName() == "b"
assert s2.getParent().getName() == "a"
assert s2.isCurrent() and not s1.isCurrent()
assert s1.hasMetadata()
assert [s.getName() for s in s1.listAllChildren()] == ["b"]
assert s1.numChildren() == 1
assert dom.snapshotLookupByName("a").getName() == "a"
try:
    dom.snapshotLookupByName("zz")
    raise SystemExit("lookup of a missing snapshot succeeded")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT, e.get_error_code()
assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
dom.revertToSnapshot(s1)
st = dom.state()
assert st[0] == libvirt.VIR_DOMAIN_RUNNING and st[1] == libvirt.VIR_DOMAIN_RUNNING_FROM_SNAPSHOT, st
s2.delete()
assert dom.snapshotListNames() == ["a"]
print("OK")
"#,
        uri = d.uri()
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .expect("run python3");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("OK"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

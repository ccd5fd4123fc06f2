//! The VMware Desktop plugin through rvirtd and the real `virsh`: `vmwarews:///session`
//! served by the daemon, whose `PATH` has no `vmrun` (no VMware product exists here).

use crate::{Daemon, missing, write_file};
use std::path::PathBuf;
use std::process::{Command, Output};

fn virsh(uri: &str, args: &[&str]) -> Output {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .expect("cannot run virsh");
    eprintln!(
        "$ virsh -c {uri} {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const XML: &str = "<domain type='vmware'>\n  <name>remote-vm</name>\n  \
                   <uuid>564d9bef-acd9-b4e0-c8f0-aea8b9103517</uuid>\n  \
                   <memory unit='KiB'>1048576</memory>\n  <vcpu>2</vcpu>\n  \
                   <os><type arch='x86_64'>hvm</type></os>\n  <devices>\n    \
                   <disk type='file' device='disk'>\n      \
                   <source file='/vms/remote-vm/remote-vm.vmdk'/>\n      \
                   <target dev='sda' bus='scsi'/>\n    </disk>\n    \
                   <interface type='bridge'>\n      <mac address='00:50:56:91:48:c7'/>\n      \
                   <source bridge='VM Network'/>\n      <model type='e1000'/>\n    \
                   </interface>\n  </devices>\n</domain>\n";

#[test]
fn virsh_vmware_domxml_to_native_through_rvirtd() {
    if missing(
        "virsh (libvirt-clients)",
        Command::new("virsh").arg("--version"),
    ) {
        return;
    }
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    let plugin = bin_dir.join("librvirt_plugin_vmware_desktop.so");
    assert!(
        plugin.is_file(),
        "{} is missing: run `cargo build --workspace` before the tests",
        plugin.display()
    );
    eprintln!("NOTE: no VMware product (and no vmrun) exists here; conversions need none");
    let d = Daemon::start_with_config("uris = [\"vmwarews:///session\"]\n");
    let uri = format!("vmwarews+unix:///session?socket={}", d.socket().display());
    let file = write_file(d.root.path(), "remote-vm.xml", XML);

    let out = virsh(&uri, &["version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Using API: VMware"));

    let out = virsh(
        &uri,
        &["domxml-to-native", "vmware-vmx", file.to_str().unwrap()],
    );
    assert!(out.status.success());
    let remote = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in [
        "virtualHW.version = \"7\"",
        "guestOS = \"other-64\"",
        "memsize = \"1024\"",
        "numvcpus = \"2\"",
        "scsi0:0.fileName = \"/vms/remote-vm/remote-vm.vmdk\"",
        "ethernet0.virtualDev = \"e1000\"",
        "ethernet0.addressType = \"vpx\"",
    ] {
        assert!(
            remote.lines().any(|l| l == line),
            "{line} missing in:\n{remote}"
        );
    }

    // The same conversion as the local driver makes it (the rvirt CLI, no daemon).
    let local = Command::new(bin_dir.join("rvirt"))
        .env("RVIRT_PLUGIN_PATH", &bin_dir)
        .args([
            "-c",
            "vmwarews:///session",
            "domxml-to-native",
            "vmware-vmx",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    // virsh prints the text and a newline of its own.
    assert_eq!(
        remote.trim_end(),
        String::from_utf8_lossy(&local.stdout).trim_end()
    );

    // Errors name the element and value, through the wire.
    let bad = write_file(
        d.root.path(),
        "bad.xml",
        &XML.replace("<vcpu>2</vcpu>", "<vcpu>3</vcpu>"),
    );
    let out = virsh(
        &uri,
        &["domxml-to-native", "vmware-vmx", bad.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("domain/vcpu: 3 vCPUs: VMware needs 1 or an even number"),
        "{e}"
    );

    // And back: the .vmx virsh got, converted to domain XML by domxml-from-native
    // (plugin API 1.6, procedure 135), through virsh and the rvirt CLI over the daemon.
    let vmx = write_file(d.root.path(), "remote-vm.vmx", &remote);
    let out = virsh(
        &uri,
        &["domxml-from-native", "vmware-vmx", vmx.to_str().unwrap()],
    );
    assert!(out.status.success());
    let back = String::from_utf8_lossy(&out.stdout).into_owned();
    for part in [
        "<name>remote-vm</name>",
        "<uuid>564d9bef-acd9-b4e0-c8f0-aea8b9103517</uuid>",
        "<vcpu placement='static'>2</vcpu>",
        "<source file='/vms/remote-vm/remote-vm.vmdk'/>",
        "<mac address='00:50:56:91:48:c7' type='generated'/>",
    ] {
        assert!(back.contains(part), "{part} missing in:\n{back}");
    }
    let cli = Command::new(bin_dir.join("rvirt"))
        .args(["-c", &uri, "domxml-from-native", "vmware-vmx"])
        .arg(&vmx)
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout).trim_end(),
        back.trim_end()
    );
    let out = virsh(
        &uri,
        &["domxml-from-native", "xen-xl", vmx.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unsupported config type xen-xl"),
        "the format is named"
    );
    // the read-only socket refuses it, as libvirt does
    let ro = format!(
        "vmwarews+unix:///session?socket={}",
        d.socket_ro().display()
    );
    let out = virsh(
        &ro,
        &[
            "-r",
            "domxml-from-native",
            "vmware-vmx",
            vmx.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());

    // Listing works without vmrun.
    assert!(virsh(&uri, &["list", "--all"]).status.success());
}

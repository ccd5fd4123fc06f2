//! The plugins of hypervisors that cannot run here (issue 19: bhyve, Virtuozzo, Xen,
//! Hyper-V, VirtualBox; POWER's phyp needs an SSH server, started by its own tests) loaded
//! by rvirtd and driven with the unmodified `virsh`: each connection opens, conversions
//! work where the driver has them, and a call that needs the missing runtime answers a
//! clear error naming what is missing.

use crate::{Daemon, encode, missing, write_file};
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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn plugin(file: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .join(file);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace` before the tests",
        p.display()
    );
    p
}

fn no_virsh() -> bool {
    missing(
        "virsh (libvirt-clients)",
        Command::new("virsh").arg("--version"),
    )
}

#[test]
fn virsh_bhyve_through_rvirtd_converts_and_names_the_missing_hypervisor() {
    if no_virsh() {
        return;
    }
    plugin("librvirt_plugin_bhyve.so");
    eprintln!("NOTE: this is not FreeBSD: bhyve cannot run; conversions need none");
    let d = Daemon::start_with_config("uris = [\"bhyve:///system\"]\n");
    let uri = format!("bhyve+unix:///system?socket={}", d.socket().display());
    let img = d.root.path().join("bhyve.img");
    std::fs::write(&img, b"").unwrap();
    let xml = format!(
        "<domain type='bhyve'><name>bvm</name><uuid>df3be7e7-a104-11e3-aeb0-50e5492bd3dc</uuid>\
         <memory unit='KiB'>219136</memory><vcpu>1</vcpu><os><type>hvm</type></os>\
         <devices><disk type='file' device='disk'><driver name='file' type='raw'/>\
         <source file='{}'/><target dev='hda' bus='sata'/></disk>\
         <interface type='bridge'><mac address='52:54:00:ee:ee:01'/><source bridge='virbr0'/>\
         <model type='virtio'/></interface></devices></domain>",
        img.display()
    );
    let file = write_file(d.root.path(), "bvm.xml", &xml);
    let out = virsh(
        &uri,
        &["domxml-to-native", "bhyve-argv", file.to_str().unwrap()],
    );
    assert!(out.status.success());
    let argv = stdout(&out);
    assert!(
        argv.contains("bhyveload") && argv.contains("-m 214"),
        "{argv}"
    );
    assert!(
        argv.contains("ahci-hd") || argv.contains("ahci,hd:"),
        "{argv}"
    );
    assert!(
        argv.contains("virtio-net,tap") || argv.contains("virtio-net"),
        "{argv}"
    );
    assert!(argv.trim_end().ends_with("bvm"), "{argv}");
    // and back: the bhyve line to domain XML
    let bhyve_line = argv
        .lines()
        .find(|l| l.starts_with("/usr/sbin/bhyve ") || l.starts_with("bhyve "))
        .unwrap_or_else(|| panic!("no bhyve line in {argv}"));
    let native = write_file(d.root.path(), "bvm.args", bhyve_line);
    let out = virsh(
        &uri,
        &["domxml-from-native", "bhyve-argv", native.to_str().unwrap()],
    );
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("<name>bvm</name>"),
        "{}",
        stdout(&out)
    );

    ok_define_and_refuse_start(&uri, &file, "bvm", "/dev/vmm");
}

/// Defines `name` from `file`, then `virsh start` fails naming `missing`; undefine works.
fn ok_define_and_refuse_start(uri: &str, file: &std::path::Path, name: &str, missing: &str) {
    let out = virsh(uri, &["define", file.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(stdout(&virsh(uri, &["list", "--all", "--name"])).contains(name));
    let out = virsh(uri, &["start", name]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(missing), "{}", stderr(&out));
    assert!(virsh(uri, &["undefine", name]).status.success());
}

#[test]
fn virsh_vz_through_rvirtd_names_the_missing_prlctl() {
    if no_virsh() {
        return;
    }
    plugin("librvirt_plugin_vz.so");
    if std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("prlctl").is_file())
    {
        panic!("a prlctl is on PATH: this test checks the error without one");
    }
    eprintln!("NOTE: no Virtuozzo host exists here (no prlctl)");
    let d = Daemon::start_with_config("uris = [\"vz:///system\"]\n");
    let uri = format!("vz+unix:///system?socket={}", d.socket().display());
    let out = virsh(&uri, &["list", "--all"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("virConnectListAllDomains: 'prlctl' is not installed"),
        "{e}"
    );
    // the connection is open: virsh names its driver, the version needs prlctl too
    let out = virsh(&uri, &["version"]);
    assert!(stdout(&out).contains("Using API: vz"), "{}", stdout(&out));
    assert!(stderr(&out).contains("virConnectGetVersion: 'prlctl' is not installed"));
}

#[test]
fn virsh_vbox_through_rvirtd_names_the_unreachable_web_service() {
    if no_virsh() {
        return;
    }
    plugin("librvirt_plugin_vbox.so");
    if std::net::TcpStream::connect("127.0.0.1:18083").is_ok() {
        panic!(
            "something listens on 127.0.0.1:18083: this test checks the error without vboxwebsrv"
        );
    }
    eprintln!("NOTE: VirtualBox is not in Debian: no vboxwebsrv runs here");
    let d = Daemon::start_with_config("uris = [\"vbox:///session\"]\n");
    let uri = format!("vbox+unix:///session?socket={}", d.socket().display());
    let out = virsh(&uri, &["list", "--all"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("localhost:18083"), "{e}");
}

#[test]
fn virsh_hyperv_through_rvirtd_names_the_unreachable_host() {
    if no_virsh() {
        return;
    }
    plugin("librvirt_plugin_hyperv.so");
    // a port nothing listens on: bound, then closed
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    eprintln!(
        "NOTE: no Hyper-V host exists here; the plugin's own tests use a fake WS-Man endpoint"
    );
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.conf");
    std::fs::write(
        &auth,
        "[credentials-h]\nusername=administrator\npassword=pw\n[auth-hyperv-default]\ncredentials=h\n",
    )
    .unwrap();
    let hv = format!(
        "hyperv://127.0.0.1:{port}/?transport=http&authfile={}",
        auth.display()
    );
    let d = Daemon::start_with_config(&format!("uris = [\"{hv}\"]\n"));
    let name = encode(&hv);
    let uri = format!(
        "hyperv+unix:///?socket={}&name={name}",
        d.socket().display()
    );
    let out = virsh(&uri, &["list", "--all"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[test]
fn virsh_xen_through_rvirtd_converts_xl_cfg_and_names_the_missing_hypervisor() {
    if no_virsh() {
        return;
    }
    plugin("librvirt_plugin_xen.so");
    assert!(
        !std::path::Path::new("/dev/xen/privcmd").exists(),
        "a Xen hypervisor is present: this test checks the error without one"
    );
    eprintln!("NOTE: no Xen hypervisor here (/dev/xen/privcmd is missing); conversions need none");
    let d = Daemon::start_with_config("uris = [\"xen:///system\"]\n");
    let uri = format!("xen+unix:///system?socket={}", d.socket().display());
    let xml = "<domain type='xen'><name>xvm</name><uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>\
               <memory unit='KiB'>592896</memory><currentMemory unit='KiB'>403456</currentMemory>\
               <vcpu placement='static'>1</vcpu><os><type arch='x86_64' machine='xenpv'>linux</type>\
               <kernel>/boot/vmlinuz</kernel></os><devices>\
               <disk type='file' device='disk'><driver name='qemu' type='raw'/>\
               <source file='/var/lib/xen/images/xvm.img'/><target dev='xvda' bus='xen'/></disk>\
               <interface type='bridge'><mac address='00:16:3e:66:92:9c'/><source bridge='xenbr1'/>\
               </interface></devices></domain>";
    let file = write_file(d.root.path(), "xvm.xml", xml);
    let out = virsh(
        &uri,
        &["domxml-to-native", "xen-xl", file.to_str().unwrap()],
    );
    assert!(out.status.success());
    let cfg = stdout(&out);
    for line in [
        "name = \"xvm\"",
        "maxmem = 579",
        "memory = 394",
        "kernel = \"/boot/vmlinuz\"",
    ] {
        assert!(
            cfg.lines().any(|l| l.trim() == line),
            "{line} missing in:\n{cfg}"
        );
    }
    assert!(cfg.contains("xenbr1") && cfg.contains("xvda"), "{cfg}");
    let native = write_file(d.root.path(), "xvm.cfg", &cfg);
    let out = virsh(
        &uri,
        &["domxml-from-native", "xen-xl", native.to_str().unwrap()],
    );
    assert!(out.status.success());
    let back = stdout(&out);
    assert!(
        back.contains("<name>xvm</name>") && back.contains("xenbr1"),
        "{back}"
    );
    ok_define_and_refuse_start(&uri, &file, "xvm", "/dev/xen/privcmd");
    // definitions live under the daemon's root
    assert!(
        !d.root.path().join("etc/rvirt/libxl/xvm.xml").exists(),
        "undefined"
    );
}

#[test]
fn virsh_phyp_through_rvirtd_names_the_unreachable_hmc() {
    if no_virsh() {
        return;
    }
    plugin("librvirt_plugin_phyp.so");
    if missing("ssh (openssh-client)", Command::new("ssh").arg("-V")) {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    eprintln!("NOTE: no HMC here; the plugin's own tests run a private sshd with a fake HMC shell");
    let hmc = format!("phyp://hscroot@127.0.0.1:{port}/SYS1?no_verify=1");
    let d = Daemon::start_with_config(&format!("uris = [\"{hmc}\"]\n"));
    let name = encode(&hmc);
    let uri = format!("phyp+unix:///?socket={}&name={name}", d.socket().display());
    let out = virsh(&uri, &["list", "--all"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) || e.contains("ssh"),
        "{e}"
    );
}

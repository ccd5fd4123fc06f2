//! The conformance kit against every plugin this workspace builds and against the
//! hypervisor template's output (built outside the workspace), through the `rvirt-tck`
//! binary as CI runs it. Needs `cargo build --workspace` first (the plugins' `.so`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn tck(file: &Path, extra: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rvirt-tck"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(extra)
        .arg(file)
        .output()
        .expect("run rvirt-tck");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text)
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// The plugin shared objects of the workspace build.
fn in_tree_plugins() -> Vec<PathBuf> {
    let dir = rvirt_tests::profile_dir();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.ends_with(".so")
                && (n.starts_with("librvirt_plugin_")
                    || n.starts_with("librvirt_storage_")
                    || n.starts_with("librvirt_network_"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_in_tree_plugin_is_conformant() {
    let plugins = in_tree_plugins();
    let names: Vec<String> = plugins
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "librvirt_plugin_test.so",
        "librvirt_plugin_qemu.so",
        "librvirt_storage_dir.so",
        "librvirt_storage_fs.so",
        "librvirt_network_bridge.so",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} is missing from {}: run `cargo build --workspace` first",
            rvirt_tests::profile_dir().display()
        );
    }
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    // The esx plugin needs a vSphere server: govmomi's simulator in ESX mode, the password
    // in an auth file, a definition whose disk is on the simulator's datastore.
    let mut _vcsim = None;
    let mut esx_uri = String::new();
    let esx_xml = scratch.path().join("esx-domain.xml");
    if names.iter().any(|n| n == "librvirt_plugin_esx.so")
        && let Some(sim) =
            rvirt_tests::vcsim::Vcsim::start("every_in_tree_plugin_is_conformant", true, &[])
    {
        let auth = scratch.path().join("esx-auth.conf");
        std::fs::write(
            &auth,
            "[credentials-sim]\nusername=user\npassword=pass\n[auth-esx-default]\ncredentials=sim\n",
        )
        .unwrap();
        esx_uri = format!(
            "esx://127.0.0.1:{}/?no_verify=1&authfile={}",
            sim.port,
            auth.display()
        );
        std::fs::write(
            &esx_xml,
            "<domain type='vmware'><name>x</name><memory unit='KiB'>131072</memory><vcpu>1</vcpu>\
             <os><type>hvm</type></os><devices><disk type='file' device='disk'>\
             <source file='[LocalDS_0] tck/tck.vmdk'/><target dev='sda' bus='scsi'/></disk>\
             </devices></domain>",
        )
        .unwrap();
        _vcsim = Some(sim);
    }
    let esx_xml_arg = esx_xml.display().to_string();
    let bhyve_xml = scratch.path().join("bhyve-domain.xml");
    std::fs::write(
        &bhyve_xml,
        format!(
            "<domain type='bhyve'><name>x</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
             <os><type>hvm</type></os><devices><disk type='file' device='disk'>\
             <source file='{}'/><target dev='hda' bus='sata'/></disk></devices></domain>",
            scratch.path().join("tck.img").display()
        ),
    )
    .unwrap();
    let bhyve_xml_arg = bhyve_xml.display().to_string();
    // LXC: an embedded root (never the host's /etc/rvirt/lxc) and a busybox container;
    // running it needs root and busybox-static, else the running checks are skipped.
    let lxc_uri = format!("lxc:///embed?root={}", scratch.path().join("lxc").display());
    let lxc_fs = scratch.path().join("lxc-rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(lxc_fs.join(d)).unwrap();
    }
    let lxc_can_run = std::path::Path::new("/bin/busybox").is_file()
        && std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if lxc_can_run {
        std::fs::copy("/bin/busybox", lxc_fs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", lxc_fs.join("bin/sh")).unwrap();
    }
    let lxc_xml = scratch.path().join("lxc-domain.xml");
    std::fs::write(
        &lxc_xml,
        format!(
            "<domain type='lxc'><name>x</name><memory unit='KiB'>65536</memory><vcpu>1</vcpu>\
             <os><type>exe</type><init>/bin/sh</init><initarg>-c</initarg>\
             <initarg>exec /bin/busybox sleep 1000</initarg></os><devices>\
             <filesystem type='mount'><source dir='{}'/><target dir='/'/></filesystem>\
             <console type='pty'/></devices></domain>",
            lxc_fs.display()
        ),
    )
    .unwrap();
    let lxc_xml_arg = lxc_xml.display().to_string();
    for p in &plugins {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == "librvirt_plugin_esx.so" && esx_uri.is_empty() {
            continue; // vcsim cannot run here, and the test was allowed to skip it
        }
        if name == "librvirt_plugin_phyp.so" {
            // An HMC is reached over SSH: the plugin's own tests start the private sshd
            // with the fake HMC shell and run this kit against it
            // (plugins/phyp/tests/it.rs, `conformance_kit_over_ssh`).
            eprintln!("NOTE: {name}: the conformance kit runs in plugins/phyp/tests (sshd)");
            continue;
        }
        if name == "librvirt_plugin_hyperv.so" {
            // A WS-Management endpoint is the fake inside the plugin's own tests, which
            // run this kit against it (plugins/hyperv/tests/it.rs,
            // `the_conformance_kit_against_the_fake_endpoint`).
            eprintln!(
                "NOTE: {name}: the conformance kit runs in plugins/hyperv/tests (fake WS-Man)"
            );
            continue;
        }
        if name == "librvirt_plugin_vbox.so" {
            // VirtualBox's web service is the fake inside the plugin's own tests, which
            // run this kit against it (plugins/vbox/tests/it.rs,
            // `conformance_kit_against_the_fake`).
            eprintln!(
                "NOTE: {name}: the conformance kit runs in plugins/vbox/tests (fake vboxwebsrv)"
            );
            continue;
        }
        // Virtuozzo's `prlctl` is the recording fake of the vz plugin's tests.
        let mut env: Vec<(&str, String)> = Vec::new();
        if name == "librvirt_plugin_vz.so" {
            let fake = rvirt_tests::workspace_root().join("plugins/vz/tests/fixtures");
            let state = scratch.path().join("prlctl");
            std::fs::create_dir_all(&state).unwrap();
            env.push((
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", fake.display()),
            ));
            env.push(("FAKE_PRLCTL_DIR", state.display().to_string()));
        }
        // QEMU's system and session URIs touch the machine: an embedded root instead.
        let uri = format!(
            "qemu:///embed?root={}",
            scratch.path().join("qemu").display()
        );
        let mut extra: Vec<&str> = match name.as_str() {
            "librvirt_plugin_qemu.so" => vec!["--uri", &uri],
            "librvirt_plugin_vmware_desktop.so" => vec!["--uri", "vmwareplayer:///session"],
            // bhyve runs nothing off FreeBSD (lifecycle answers why, naming the commands);
            // its definitions need a disk for the loader
            "librvirt_plugin_bhyve.so" => vec![
                "--uri",
                "bhyve:///system",
                "--domain-xml",
                &bhyve_xml_arg,
                "--skip",
                "hv.lifecycle",
                "--skip",
                "hv.transient",
                "--skip",
                "hv.panic-caught",
            ],
            // no Xen hypervisor here: the checks that need a running guest are skipped
            "librvirt_plugin_xen.so" => vec![
                "--uri",
                "xen:///system",
                "--skip",
                "hv.lifecycle",
                "--skip",
                "hv.transient",
            ],
            "librvirt_plugin_lxc.so" if lxc_can_run => {
                vec!["--uri", &lxc_uri, "--domain-xml", &lxc_xml_arg]
            }
            // not root or no busybox: containers cannot run here
            "librvirt_plugin_lxc.so" => vec![
                "--uri",
                &lxc_uri,
                "--domain-xml",
                &lxc_xml_arg,
                "--skip",
                "hv.lifecycle",
                "--skip",
                "hv.transient",
                "--skip",
                "hv.list-flags",
                "--skip",
                "hv.events",
            ],
            // Virtuozzo has no transient domains (`prlctl` creates registered VMs only)
            "librvirt_plugin_vz.so" => vec!["--uri", "vz:///system", "--skip", "hv.transient"],
            // vSphere has no transient domains (neither has libvirt's esx driver)
            "librvirt_plugin_esx.so" => vec![
                "--uri",
                &esx_uri,
                "--domain-xml",
                &esx_xml_arg,
                "--skip",
                "hv.transient",
            ],
            _ => vec![],
        };
        // Without VMware's `vmrun` the VMware Desktop driver answers no-support to every
        // lifecycle call, before its read-only check (a finding for that plugin: libvirt
        // refuses read-only callers first) and before looking the domain up; its
        // definitions also need a file-backed disk. Those checks need vmrun.
        if name == "librvirt_plugin_vmware_desktop.so" && !on_path("vmrun") {
            for c in [
                "hv.read-only",
                "hv.errors",
                "hv.lifecycle",
                "hv.transient",
                "hv.panic-caught",
            ] {
                extra.extend(["--skip", c]);
            }
        }
        let (ok, text) = tck(p, &extra, &env);
        eprintln!("{text}");
        assert!(
            text.lines().any(|l| l.starts_with("PASS manifest")),
            "{text}"
        );
        if !ok {
            failures.push(format!("{name}:\n{text}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_hypervisor_template_is_conformant_out_of_the_box() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tckhv");
    rvirt_templates::generate(
        &dir,
        &rvirt_templates::Options {
            name: "tckhv".into(),
            kind: rvirt_templates::Kind::Hypervisor,
            version: "0.1.0".into(),
            description: None,
            sdk: rvirt_templates::SdkSource::Checkout(rvirt_tests::workspace_root()),
        },
    )
    .unwrap();
    let target = std::env::var_os("RVIRT_EXT_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| rvirt_tests::profile_dir().parent().unwrap().join("ext"));
    let so = rvirt_templates::build(&dir, "tckhv", &target).unwrap_or_else(|e| panic!("{e}"));
    let (ok, text) = tck(&so, &[], &[]);
    assert!(ok, "{text}");
    for check in [
        "hv.read-only",
        "hv.lifecycle",
        "hv.events",
        "hv.panic-caught",
    ] {
        assert!(
            text.lines().any(|l| l == format!("PASS {check}")),
            "{check} did not pass:\n{text}"
        );
    }
    assert!(
        text.contains("conformant: 18 passed, 0 failed, 0 skipped"),
        "{text}"
    );
}

#[test]
fn a_file_that_is_no_plugin_fails_with_the_reason_and_status_1() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("libnot.so");
    std::fs::write(&f, b"not an ELF file").unwrap();
    let (ok, text) = tck(&f, &[], &[]);
    assert!(!ok);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL symbol.version: the dynamic loader refused it")),
        "{text}"
    );
    assert!(
        text.contains("NOT conformant: 0 passed, 1 failed"),
        "{text}"
    );
}

#[test]
fn skipped_checks_are_reported_as_skipped() {
    let so = rvirt_tests::built("librvirt_plugin_test.so");
    let (ok, text) = tck(
        &so,
        &["--skip", "hv.panic-caught", "--skip", "storage"],
        &[],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("SKIP hv.panic-caught: skipped by --skip"),
        "{text}"
    );
    assert!(
        text.contains("SKIP storage.open.mock: skipped by --skip"),
        "{text}"
    );
}

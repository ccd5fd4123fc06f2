//! `packaging/build-debs.sh` makes one Debian package per component from the workspace
//! build; a root holding only the CLI and the qemu plugin package serves `qemu` and names
//! the missing backend for `test:///default`. (Installing with `dpkg -i` into the machine
//! is `tests/dpkg-install.sh`; socket activation is rvirtd's `activation` test.) Needs
//! `cargo build --workspace` first.

use std::{path::Path, process::Command};

fn extract(deb: &Path, root: &Path) {
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(root)
        .status()
        .unwrap();
    assert!(st.success(), "dpkg-deb -x {}", deb.display());
}

#[test]
fn one_package_per_component_and_only_installed_backends_serve() {
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        rvirt_tests::cannot_run("packaging", "dpkg-deb is not installed");
        return;
    }
    let profile = rvirt_tests::profile_dir();
    rvirt_tests::built("rvirt");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("debs");
    let o = Command::new(rvirt_tests::workspace_root().join("packaging/build-debs.sh"))
        .arg(&out)
        .env("CARGO_TARGET_DIR", profile.parent().unwrap())
        .env("PROFILE", profile.file_name().unwrap())
        .env("BUILD", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = env!("CARGO_PKG_VERSION");
    let arch = String::from_utf8(
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let deb = |n: &str| out.join(format!("{n}_{v}_{}.deb", arch.trim()));
    for n in [
        "rvirt",
        "rvirtd",
        "rvirt-plugin-qemu",
        "rvirt-plugin-test",
        "rvirt-plugin-storage-dir",
        "rvirt-plugin-network-bridge",
        "rvirt-sdk-tools",
    ] {
        assert!(deb(n).is_file(), "{} missing", deb(n).display());
    }
    let list = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb("rvirt"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for f in [
        "usr/bin/rvirt",
        "bash-completion/completions/rvirt",
        "zsh/vendor-completions/_rvirt",
        "man1/rvirt.1.gz",
    ] {
        assert!(list.contains(f), "{f} not in the rvirt package:\n{list}");
    }
    let list = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb("rvirtd"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for unit in ["rvirtd.service", "rvirtd.socket", "rvirtd-ro.socket"] {
        assert!(
            list.contains(&format!("lib/systemd/system/{unit}")),
            "{unit} not in the rvirtd package:\n{list}"
        );
    }
    let depends = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb("rvirtd"))
        .arg("Depends")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&depends.stdout).contains("plugin"),
        "rvirtd depends on a plugin: {}",
        String::from_utf8_lossy(&depends.stdout)
    );

    let root = tmp.path().join("root");
    extract(&deb("rvirt"), &root);
    extract(&deb("rvirt-plugin-qemu"), &root);
    let rvirt = |uri: &str, args: &[&str]| {
        Command::new(root.join("usr/bin/rvirt"))
            .args(["-c", uri])
            .args(args)
            .env("RVIRT_PLUGIN_PATH", root.join("usr/lib/rvirt/plugins"))
            .output()
            .unwrap()
    };
    let o = rvirt("test:///default", &["list"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no installed plugin serves 'test://'"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = rvirt("test:///default", &["plugin", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, vec!["qemu"]);
    extract(&deb("rvirt-plugin-test"), &root);
    let o = rvirt("test:///default", &["list"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

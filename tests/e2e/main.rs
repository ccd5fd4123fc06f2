//! End-to-end tests: the built `rvirt` binary and plugins, run as a user runs them.
//!
//! They need `cargo build --workspace` first; a missing binary or plugin is a failure.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use rvirt_tests::profile_dir;
use serde_json::json;

fn rvirt_bin() -> PathBuf {
    rvirt_tests::built("rvirt")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rvirt-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `rvirt` with a clean environment for plugin lookup and URIs.
fn run_bin(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("RVIRT_PLUGIN_PATH")
        .env_remove("RVIRT_DEFAULT_URI")
        .env_remove("LIBVIRT_DEFAULT_URI")
        .output()
        .expect("run rvirt")
}

fn rvirt(args: &[&str]) -> (String, String, bool) {
    let o = run_bin(&rvirt_bin(), args);
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.success(),
    )
}

fn ok(args: &[&str]) -> String {
    let (out, err, success) = rvirt(args);
    assert!(success, "rvirt {args:?} failed: {err}");
    out
}

fn fails(args: &[&str]) -> String {
    let (_, err, success) = rvirt(args);
    assert!(!success, "rvirt {args:?} should fail");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one error line, got {err:?}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

#[test]
fn list_all_shows_the_running_test_domain() {
    let out = ok(&["-c", "test:///default", "list", "--all"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["Id", "Name", "State"]
    );
    assert!(lines[1].chars().all(|c| c == '-'));
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["1", "test", "running"]
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["-c", "test:///default", "list", "--all", "--json"])).unwrap();
    let doms = json.as_array().unwrap();
    assert!(
        doms.iter()
            .any(|d| d["name"] == "test" && d["state"] == "running" && d["id"] == 1)
    );
    assert_eq!(
        ok(&["list", "--name"]).trim(),
        "test",
        "default URI is test:///default"
    );
}

#[test]
fn without_the_plugin_the_cli_says_no_plugin_serves_test() {
    // A copy of the binary in a directory of its own: the test plugin is out of its
    // search path (nothing in /usr/lib/rvirt/plugins on a test machine).
    let dir = tmpdir("noplugin");
    let bin = dir.join("rvirt");
    std::fs::copy(rvirt_bin(), &bin).unwrap();
    let o = run_bin(&bin, &["-c", "test:///default", "list", "--all"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    if Path::new("/usr/lib/rvirt/plugins/librvirt_plugin_test.so").exists() {
        panic!("a system-wide test plugin is installed; this test cannot isolate the binary");
    }
    assert!(
        err.contains("no installed plugin serves 'test://'"),
        "{err}"
    );
    assert!(
        err.contains("rvirt plugin list"),
        "hints at plugin list: {err}"
    );
    // Putting the plugin back beside the binary makes it work.
    std::fs::copy(
        profile_dir().join("librvirt_plugin_test.so"),
        dir.join("librvirt_plugin_test.so"),
    )
    .unwrap();
    let o = run_bin(&bin, &["-c", "test:///default", "list", "--all"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("test"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn plugin_list_reports_loaded_and_refused_plugins() {
    let out = ok(&["plugin", "list"]);
    assert!(
        out.contains("test") && out.contains("hypervisor") && out.contains("loaded"),
        "{out}"
    );
    let dir = tmpdir("pluginlist");
    std::fs::write(dir.join("libbroken.so"), b"not elf").unwrap();
    let o = Command::new(rvirt_bin())
        .args(["plugin", "list", "--json"])
        .env("RVIRT_PLUGIN_PATH", &dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let plugins = v["plugins"].as_array().unwrap();
    assert!(plugins.iter().any(|p| p["status"] == "refused"
        && p["file"].as_str().unwrap().ends_with("libbroken.so")
        && p["reason"].as_str().unwrap().contains("cannot load")));
    assert!(
        plugins
            .iter()
            .any(|p| p["name"] == "test" && p["api_version"] == v["host_api_version"])
    );
    assert!(
        out.contains("Forward modes") && out.contains("hypervisor,storage,network"),
        "{out}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn domain_commands_on_the_default_node() {
    let info = ok(&["dominfo", "test"]);
    for want in [
        "Name:           test",
        "State:          running",
        "CPU(s):         2",
        "Max memory:     8388608 KiB",
        "Persistent:     yes",
    ] {
        assert!(info.contains(want), "missing {want:?} in {info}");
    }
    // A domain argument may be a name, an id or a UUID.
    assert_eq!(ok(&["domname", "1"]).trim(), "test");
    assert_eq!(
        ok(&["domname", "6695eb01-f6a4-8304-79aa-97f2502e193f"]).trim(),
        "test"
    );
    assert_eq!(
        ok(&["domuuid", "test"]).trim(),
        "6695eb01-f6a4-8304-79aa-97f2502e193f"
    );
    assert_eq!(ok(&["domid", "test"]).trim(), "1");
    assert_eq!(
        ok(&["domstate", "test", "--reason"]).trim(),
        "running (unknown)"
    );
    assert!(ok(&["suspend", "test"]).contains("Domain 'test' suspended"));
    assert!(ok(&["destroy", "test"]).contains("Domain 'test' destroyed"));
    assert!(ok(&["shutdown", "test"]).contains("is being shutdown"));
    assert!(ok(&["reboot", "test"]).contains("is being rebooted"));
    assert!(ok(&["autostart", "test"]).contains("marked as autostarted"));
    let live = ok(&["dumpxml", "test"]);
    assert!(live.starts_with("<domain type='test' id='1'>"), "{live}");
    let inactive = ok(&["dumpxml", "--inactive", "test"]);
    assert!(inactive.starts_with("<domain type='test'>"), "{inactive}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["dominfo", "test", "--json"])).unwrap();
    assert_eq!(json["max_memory_kib"], 8388608);
}

#[test]
fn define_create_and_validate_from_files() {
    let dir = tmpdir("define");
    let good = dir.join("vm.xml");
    std::fs::write(&good, "<domain type='test'><name>vm1</name><memory unit='MiB'>256</memory><os><type>hvm</type></os></domain>").unwrap();
    assert!(ok(&["define", good.to_str().unwrap()]).contains("Domain 'vm1' defined"));
    assert!(ok(&["define", "--validate", good.to_str().unwrap()]).contains("defined"));
    assert!(ok(&["create", good.to_str().unwrap()]).contains("Domain 'vm1' created"));
    let bad = dir.join("bad.xml");
    std::fs::write(&bad, "<domain type='test'><memory>1</memory></domain>").unwrap();
    let e = fails(&["define", "--validate", bad.to_str().unwrap()]);
    assert!(e.contains("bad.xml") && e.contains("domain/name"), "{e}");
    let e = fails(&["define", dir.join("missing.xml").to_str().unwrap()]);
    assert!(e.contains("missing.xml"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn errors_are_one_line_naming_object_and_cause() {
    let e = fails(&["dominfo", "nosuch"]);
    assert!(
        e.contains("'nosuch'") && e.contains("domain not found"),
        "{e}"
    );
    let e = fails(&["resume", "test"]);
    assert!(e.contains("'test'") && e.contains("not paused"), "{e}");
    let e = fails(&["-c", "bogus:///x", "list"]);
    assert!(
        e.contains("'bogus:///x'") && e.contains("no installed plugin serves 'bogus://'"),
        "{e}"
    );
    let e = fails(&["-r", "destroy", "test"]);
    assert!(e.contains("read only"), "{e}");
}

#[test]
fn host_commands() {
    assert_eq!(ok(&["uri"]).trim(), "test:///default");
    assert!(!ok(&["hostname"]).trim().is_empty());
    let v = ok(&["version"]);
    assert!(v.contains("Running hypervisor: Test 0.0.2"), "{v}");
    let n = ok(&["nodeinfo"]);
    assert!(
        n.contains("CPU(s):              16") && n.contains("Memory size:         16777216 KiB"),
        "{n}"
    );
    let caps = ok(&["capabilities"]);
    assert!(
        caps.starts_with("<capabilities>") && caps.contains("<domain type='test'/>"),
        "{caps}"
    );
    let j: serde_json::Value = serde_json::from_str(&ok(&["nodeinfo", "--json"])).unwrap();
    assert_eq!(j["cpus"], 16);
    let help = ok(&["help", "list"]);
    assert!(help.contains("--all"), "{help}");
}

#[test]
fn xml_normalize_prints_libvirts_form() {
    let dir = tmpdir("normalize");
    let f = dir.join("d.xml");
    std::fs::write(&f, "<domain type=\"kvm\"><name>n</name><memory unit=\"MiB\">1</memory><os><type>hvm</type></os></domain>").unwrap();
    let out = ok(&["xml", "normalize", "--kind", "domain", f.to_str().unwrap()]);
    assert!(out.contains("<memory unit='KiB'>1024</memory>"), "{out}");
    std::fs::write(&f, "<domain type='kvm'><name>n</name>").unwrap();
    let e = fails(&["xml", "normalize", "--kind", "domain", f.to_str().unwrap()]);
    assert!(e.contains("d.xml"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

/// The remote driver speaks libvirt's protocol to the letter: the rvirt CLI drives Debian's
/// own libvirtd (a private instance from `shared/bench/lvd.py`, its test driver).
#[test]
fn rvirt_cli_drives_debians_libvirtd() {
    let lvd = rvirt_tests::shared_dir().join("bench/lvd.py");
    let have = Path::new("/usr/sbin/libvirtd").is_file() && lvd.is_file() && running_as_root();
    if !have {
        rvirt_tests::cannot_run(
            "rvirt_cli_drives_debians_libvirtd",
            &format!(
                "needs root, /usr/sbin/libvirtd (apt-get install libvirt-daemon) and {}",
                lvd.display()
            ),
        );
        return;
    }
    let dir = tmpdir("lvd");
    let py = |args: &[&str]| {
        let o = Command::new("/usr/bin/python3")
            .arg(&lvd)
            .args(args)
            .output()
            .expect("run lvd.py");
        assert!(
            o.status.success(),
            "lvd.py {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let d = dir.to_str().unwrap();
    py(&["prepare", d]);
    py(&["start", d, "--no-qemu"]);
    struct Stop<'a>(&'a dyn Fn());
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let stop = || {
        let _ = Command::new("/usr/bin/python3")
            .arg(&lvd)
            .args(["stop", d])
            .output();
    };
    let _guard = Stop(&stop);
    let uri = py(&["uri", d, "test"]);
    assert!(uri.starts_with("test+unix://"), "{uri}");
    let out = ok(&["-c", &uri, "list", "--all"]);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "test", "running"]),
        "{out}"
    );
    // libvirtd's test driver drops test:///default's state when its last connection
    // closes, so each rvirt process starts from the default node again.
    assert!(ok(&["-c", &uri, "suspend", "test"]).contains("suspended"));
    assert_eq!(
        ok(&["-c", &uri, "domstate", "test", "--reason"]).trim(),
        "running (unknown)"
    );
    let e = fails(&["-c", &uri, "resume", "test"]);
    assert!(
        e.contains("'test'") && e.contains("not paused"),
        "libvirtd's own error comes through: {e}"
    );
    let info = ok(&["-c", &uri, "dominfo", "test"]);
    assert!(info.contains("Max memory:     8388608 KiB"), "{info}");
    assert!(ok(&["-c", &uri, "dumpxml", "test"]).contains("<name>test</name>"));
    let e = fails(&["-c", &uri, "dominfo", "nosuch"]);
    assert!(e.contains("'nosuch'"), "{e}");
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Storage through the CLI on an embed root: the storage-dir plugin serves the `dir`
/// pool, definitions live under the root, and every process sees the same pools.
#[test]
fn storage_commands_on_an_embed_root_with_json() {
    assert!(
        profile_dir().join("librvirt_storage_dir.so").is_file(),
        "the storage-dir plugin is missing: run `cargo build --workspace` first"
    );
    let dir = tmpdir("storage");
    let uri = format!("qemu:///embed?root={}", dir.display());
    let target = dir.join("pool");
    let t = target.to_str().unwrap();
    let c = |args: &[&str]| {
        let mut all = vec!["-c", uri.as_str()];
        all.extend_from_slice(args);
        ok(&all)
    };
    assert!(c(&["pool-define-as", "p", "dir", "--target", t]).contains("Pool p defined"));
    assert!(
        dir.join("etc/storage/p.xml").is_file(),
        "definition under the root"
    );
    c(&["pool-build", "p"]);
    c(&["pool-start", "p"]);
    c(&["pool-autostart", "p"]);
    let pools: serde_json::Value =
        serde_json::from_str(&c(&["--json", "pool-list", "--all"])).unwrap();
    let p = &pools.as_array().unwrap()[0];
    assert_eq!(
        (&p["name"], &p["state"], &p["autostart"], &p["persistent"]),
        (&json!("p"), &json!("running"), &json!(true), &json!(true)),
        "{pools}"
    );
    assert!(p["capacity"].as_u64().unwrap() > 0);
    let table = c(&["pool-list", "--details"]);
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        [
            "Name",
            "State",
            "Autostart",
            "Persistent",
            "Capacity",
            "Allocation",
            "Available"
        ]
    );

    assert!(
        c(&["vol-create-as", "p", "a.qcow2", "1G", "--format", "qcow2"])
            .contains("Vol a.qcow2 created")
    );
    c(&["vol-create-as", "p", "b.raw", "1M"]);
    let vols: serde_json::Value = serde_json::from_str(&c(&["--json", "vol-list", "p"])).unwrap();
    let names: Vec<&str> = vols
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.qcow2", "b.raw"]);
    assert_eq!(vols[0]["path"], json!(format!("{t}/a.qcow2")));
    let info: serde_json::Value =
        serde_json::from_str(&c(&["--json", "vol-info", "--pool", "p", "a.qcow2"])).unwrap();
    assert_eq!(
        (&info["capacity"], &info["type"]),
        (&json!(1u64 << 30), &json!("file"))
    );
    // by path, without --pool
    let text = c(&["vol-info", &format!("{t}/b.raw")]);
    assert!(text.contains("Capacity:       1.00 MiB"), "{text}");
    c(&["vol-resize", "--pool", "p", "b.raw", "2M"]);
    let info: serde_json::Value =
        serde_json::from_str(&c(&["--json", "vol-info", "--pool", "p", "b.raw"])).unwrap();
    assert_eq!(info["capacity"], json!(2u64 << 20));
    assert_eq!(
        c(&["vol-path", "--pool", "p", "b.raw"]).trim(),
        format!("{t}/b.raw")
    );
    let pinfo: serde_json::Value = serde_json::from_str(&c(&["--json", "pool-info", "p"])).unwrap();
    assert_eq!(pinfo["state"], json!("running"));

    let e = fails(&["-c", &uri, "vol-create-as", "p", "../x", "1M"]);
    assert!(
        e.contains("'../x'") && e.contains("cannot contain '/'"),
        "{e}"
    );
    let e = fails(&["-c", &uri, "-r", "vol-delete", "--pool", "p", "b.raw"]);
    assert!(e.contains("read only"), "{e}");

    for v in ["a.qcow2", "b.raw"] {
        c(&["vol-delete", "--pool", "p", v]);
    }
    c(&["pool-destroy", "p"]);
    c(&["pool-delete", "p"]);
    c(&["pool-undefine", "p"]);
    assert_eq!(c(&["--json", "pool-list", "--all"]).trim(), "[]");
    assert!(!target.exists());
    std::fs::remove_dir_all(dir).ok();
}

/// Network commands: on `test:///default` (the test plugin's bookkeeping backend, one
/// process per command, so each command sees a fresh memory root) and on an embed root,
/// where no network plugin is installed in this workspace: the error names the forward
/// mode and the way to see the plugins.
#[test]
fn network_commands_with_json_and_a_missing_backend() {
    let dir = tmpdir("networks");
    let f = dir.join("n.xml");
    std::fs::write(
        &f,
        "<network><name>n</name><ip address='10.55.0.1' prefix='24'/></network>",
    )
    .unwrap();
    let fs = f.to_str().unwrap();
    assert!(ok(&["-c", "test:///default", "net-create", fs]).contains("Network n created"));
    let list: serde_json::Value = serde_json::from_str(&ok(&[
        "-c",
        "test:///default",
        "--json",
        "net-list",
        "--all",
    ]))
    .unwrap();
    assert_eq!(list, json!([]), "a new process, a new memory root");
    let table = ok(&["-c", "test:///default", "net-list", "--all"]);
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["Name", "State", "Autostart", "Persistent"]
    );
    let uri = format!("qemu:///embed?root={}", dir.display());
    // isolated networks are the network-bridge plugin's; a mode no plugin serves is
    // refused at definition, naming it
    assert!(ok(&["-c", &uri, "net-define", fs]).contains("Network n defined"));
    ok(&["-c", &uri, "net-undefine", "n"]);
    let p = dir.join("p.xml");
    std::fs::write(
        &p,
        "<network><name>p</name><forward mode='private'><interface dev='eth9'/></forward></network>",
    )
    .unwrap();
    let e = fails(&["-c", &uri, "net-define", p.to_str().unwrap()]);
    assert!(
        e.contains("forward mode 'private'") && e.contains("rvirt plugin list"),
        "{e}"
    );
    let e = fails(&["-c", &uri, "net-info", "nope"]);
    assert!(e.contains("network not found"), "{e}");
}

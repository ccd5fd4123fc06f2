//! The VMware Desktop plugin through the built `rvirt` binary and plugin (`cargo build -p
//! rvirt-cli -p rvirt-plugin-vmware-desktop` first).
//!
//! No VMware Workstation, Player or Fusion exists on this machine: `tests/fixtures/vmrun`
//! is a fake `vmrun` that records its arguments (and keeps the set of running VMs so that
//! `vmrun list` answers), and `tests/fixtures/vmware` answers `vmware -v`. The tests check
//! the command lines and files the driver produces; where Debian's libvirt (with its own
//! vmware driver, in-process in `virsh`) is installed, the same operations run through it
//! with the same fake `vmrun` first on `PATH`, and the recorded commands are compared.

use rvirt_tests::{built, cannot_run};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOTE: &str = "NOTE: no VMware Workstation/Player/Fusion exists here; `vmrun` is the fake \
                    script tests/fixtures/vmrun, which records its arguments";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A scratch area: plugin directory, config home, fake-vmrun state, VM directories.
struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for d in ["plugins", "config", "state", "vms"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let so = built("librvirt_plugin_vmware_desktop.so");
        std::fs::copy(&so, root.join("plugins/librvirt_plugin_vmware_desktop.so")).unwrap();
        Env { _tmp: tmp, root }
    }

    /// A `PATH` with the fake `vmrun` first, or without any `vmrun`.
    fn path(&self, fake_vmrun: bool) -> String {
        let base = "/usr/local/bin:/usr/bin:/bin";
        if fake_vmrun {
            format!("{}:{base}", fixtures().display())
        } else {
            base.to_string()
        }
    }

    fn cmd(&self, prog: &Path, fake_vmrun: bool) -> Command {
        let mut c = Command::new(prog);
        c.env_clear()
            .env("PATH", self.path(fake_vmrun))
            .env("HOME", self.root.join("home"))
            .env("XDG_CONFIG_HOME", self.root.join("config"))
            .env("FAKE_VMRUN_DIR", self.root.join("state"))
            .env("RVIRT_PLUGIN_PATH", self.root.join("plugins"));
        c
    }

    fn rvirt(&self, uri: &str, fake_vmrun: bool, args: &[&str]) -> Output {
        let out = self
            .cmd(&built("rvirt"), fake_vmrun)
            .arg("-c")
            .arg(uri)
            .args(args)
            .output()
            .unwrap();
        eprintln!(
            "$ rvirt -c {uri} {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ok(&self, uri: &str, args: &[&str]) -> String {
        let out = self.rvirt(uri, true, args);
        assert!(out.status.success(), "rvirt {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A domain XML whose disk lives in `vms/NAME/`.
    fn domain(&self, name: &str, uuid: &str) -> PathBuf {
        let dir = self.root.join("vms").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let xml = format!(
            "<domain type='vmware'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n  \
             <memory unit='KiB'>524288</memory>\n  <vcpu>2</vcpu>\n  <os><type>hvm</type></os>\n  \
             <devices>\n    <disk type='file' device='disk'>\n      \
             <source file='{dir}/{name}.vmdk'/>\n      <target dev='sda' bus='scsi'/>\n    </disk>\n    \
             <interface type='bridge'>\n      <mac address='00:0c:29:11:22:33'/>\n      \
             <source bridge='VMnet0'/>\n    </interface>\n  </devices>\n</domain>\n",
            dir = dir.display()
        );
        let p = self.root.join(format!("{name}.xml"));
        std::fs::write(&p, xml).unwrap();
        p
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("state/log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.replace(&self.root.display().to_string(), "ROOT"))
            .collect()
    }
}

/// The state-changing `vmrun` commands (libvirt's driver and this one poll `vmrun list` a
/// different number of times; `vmware -v` is the version probe).
fn actions(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.starts_with("vmrun") && !l.ends_with(" list"))
        .cloned()
        .collect()
}

const UUID: &str = "564d9bef-acd9-b4e0-c8f0-aea8b9103515";

#[test]
fn opens_and_converts_without_vmrun() {
    eprintln!("{NOTE}");
    let env = Env::new();
    assert!(
        !env.path(false)
            .split(':')
            .any(|d| Path::new(d).join("vmrun").exists()),
        "a real vmrun is installed: this test needs a PATH without it"
    );
    let xml = env.domain("conv", UUID);
    for scheme in ["vmwareplayer", "vmwarews", "vmwarefusion"] {
        let uri = format!("{scheme}:///session");
        let out = env.rvirt(&uri, false, &["uri"]);
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), uri);
        let out = env.rvirt(
            &uri,
            false,
            &["domxml-to-native", "vmware-vmx", xml.to_str().unwrap()],
        );
        assert!(out.status.success());
        let vmx = String::from_utf8_lossy(&out.stdout);
        assert!(vmx.contains("virtualHW.version = \"7\"\n"), "{vmx}");
        assert!(vmx.contains("numvcpus = \"2\"\n"), "{vmx}");
        assert!(
            vmx.contains(&format!(
                "scsi0:0.fileName = \"{}/vms/conv/conv.vmdk\"\n",
                env.root.display()
            )),
            "{vmx}"
        );
        let out = env.rvirt(
            &uri,
            false,
            &["domxml-to-native", "qemu-argv", xml.to_str().unwrap()],
        );
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported config type qemu-argv"));
    }
    // Define, list, dumpxml and undefine need no vmrun; lifecycle calls name what is missing.
    let uri = "vmwarews:///session";
    assert!(
        env.rvirt(uri, false, &["define", xml.to_str().unwrap()])
            .status
            .success()
    );
    let list =
        String::from_utf8_lossy(&env.rvirt(uri, false, &["list", "--all"]).stdout).into_owned();
    assert!(list.contains("conv") && list.contains("shut off"), "{list}");
    for (args, api) in [
        (vec!["start", "conv"], "virDomainCreateWithFlags"),
        (vec!["suspend", "conv"], "virDomainSuspend"),
        (vec!["destroy", "conv"], "virDomainDestroyFlags"),
        (vec!["reboot", "conv"], "virDomainReboot"),
    ] {
        let out = env.rvirt(uri, false, &args);
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("vmrun is missing"), "{e}");
        assert!(
            e.contains(api) && e.contains("VMware Workstation driver 'vmwarews'"),
            "{e}"
        );
        assert!(e.contains("not supported"), "{e}");
    }
    let dump =
        String::from_utf8_lossy(&env.rvirt(uri, false, &["dumpxml", "conv"]).stdout).into_owned();
    assert!(dump.contains(&format!("<uuid>{UUID}</uuid>")), "{dump}");
    assert!(
        env.rvirt(uri, false, &["undefine", "conv"])
            .status
            .success()
    );
    assert!(env.log().is_empty(), "nothing ran vmrun: {:?}", env.log());
}

/// The operations both drivers run, as `rvirt` arguments (virsh takes the same).
fn scenario(xml: &Path) -> Vec<Vec<String>> {
    let x = xml.display().to_string();
    [
        vec!["define", x.as_str()],
        vec!["start", "t1"],
        vec!["suspend", "t1"],
        vec!["resume", "t1"],
        vec!["reboot", "t1"],
        vec!["shutdown", "t1"],
        vec!["start", "t1"],
        vec!["destroy", "t1"],
        vec!["undefine", "t1"],
    ]
    .iter()
    .map(|v| v.iter().map(|s| s.to_string()).collect())
    .collect()
}

fn expected_actions() -> Vec<String> {
    let vmx = "ROOT/vms/t1/t1.vmx";
    vec![
        format!("vmrun -T ws start {vmx}"),
        format!("vmrun -T ws pause {vmx}"),
        format!("vmrun -T ws unpause {vmx}"),
        format!("vmrun -T ws reset {vmx} soft"),
        format!("vmrun -T ws stop {vmx} soft"),
        format!("vmrun -T ws start {vmx}"),
        format!("vmrun -T ws stop {vmx} soft"),
    ]
}

#[test]
fn lifecycle_with_fake_vmrun() {
    eprintln!("{NOTE}");
    let env = Env::new();
    let uri = "vmwarews:///session";
    let xml = env.domain("t1", UUID);
    let version = env.ok(uri, &["version"]);
    assert!(version.contains("16.2.4"), "{version}");
    env.ok(uri, &["define", xml.to_str().unwrap()]);
    let vmx_path = env.root.join("vms/t1/t1.vmx");
    let vmx = std::fs::read_to_string(&vmx_path).unwrap();
    assert!(
        vmx.starts_with(
            ".encoding = \"UTF-8\"\nconfig.version = \"8\"\nvirtualHW.version = \"7\"\n"
        ),
        "{vmx}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&vmx_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(env.ok(uri, &["list", "--all"]).contains("shut off"));

    env.ok(uri, &["start", "t1"]);
    let list = env.ok(uri, &["list"]);
    assert!(list.contains("t1") && list.contains("running"), "{list}");
    // The id is the VM's process id from vmware.log, as libvirt's driver reports it.
    let log = std::fs::read_to_string(env.root.join("vms/t1/vmware.log")).unwrap();
    let pid = log
        .split("pid=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(env.ok(uri, &["domid", "t1"]).trim(), pid);

    env.ok(uri, &["suspend", "t1"]);
    assert_eq!(env.ok(uri, &["domstate", "t1"]).trim(), "paused");
    env.ok(uri, &["resume", "t1"]);
    assert_eq!(env.ok(uri, &["domstate", "t1"]).trim(), "running");
    env.ok(uri, &["reboot", "t1"]);
    env.ok(uri, &["shutdown", "t1"]);
    assert_eq!(env.ok(uri, &["domstate", "t1"]).trim(), "shut off");
    env.ok(uri, &["start", "t1"]);
    let out = env.rvirt(uri, true, &["start", "t1"]);
    assert!(!out.status.success(), "second start refused");
    env.ok(uri, &["destroy", "t1"]);
    let info = env.ok(uri, &["dominfo", "t1"]);
    assert!(
        info.contains("shut off") && info.contains("524288"),
        "{info}"
    );
    let dump = env.ok(uri, &["dumpxml", "t1"]);
    assert!(
        dump.contains(&format!("{}/vms/t1/t1.vmdk", env.root.display())),
        "{dump}"
    );
    env.ok(uri, &["undefine", "t1"]);
    assert!(!env.ok(uri, &["list", "--all"]).contains("t1"));
    assert!(
        vmx_path.exists(),
        "undefine keeps the .vmx, as libvirt's driver"
    );

    let got = actions(&env.log());
    eprintln!("recorded vmrun commands:\n{}", got.join("\n"));
    assert_eq!(got, expected_actions());

    // VMware Player: `-T player`, and no pause (refused before vmrun runs).
    let player = "vmwareplayer:///session";
    let xml = env.domain("p1", "564d9bef-acd9-b4e0-c8f0-aea8b9103516");
    env.ok(player, &["define", xml.to_str().unwrap()]);
    env.ok(player, &["start", "p1"]);
    let out = env.rvirt(player, true, &["suspend", "p1"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("virDomainSuspend") && e.contains("VMware Player has no pause"),
        "{e}"
    );
    env.ok(player, &["destroy", "p1"]);
    let log = env.log();
    let tail: Vec<&String> = log.iter().filter(|l| l.contains("p1.vmx")).collect();
    assert_eq!(
        tail,
        [
            "vmrun -T player start ROOT/vms/p1/p1.vmx",
            "vmrun -T player stop ROOT/vms/p1/p1.vmx soft"
        ]
    );
    // Each product keeps its own definitions.
    assert!(!env.ok(uri, &["list", "--all"]).contains("p1"));
}

#[test]
fn same_commands_as_libvirts_vmware_driver() {
    eprintln!("{NOTE}");
    let virsh = Path::new("/usr/bin/virsh");
    if !virsh.is_file() {
        cannot_run(
            "same_commands_as_libvirts_vmware_driver",
            "virsh is missing (apt-get install libvirt-clients)",
        );
        return;
    }
    // libvirt's run: one virsh process, since libvirt's vmware driver forgets a defined
    // domain that is not running when its connection closes.
    let lv = Env::new();
    let xml = lv.domain("t1", UUID);
    let script: Vec<String> = scenario(&xml).iter().map(|a| a.join(" ")).collect();
    let out = lv
        .cmd(virsh, true)
        .arg("-c")
        .arg("vmwarews:///session")
        .arg(script.join("; "))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "$ virsh -c vmwarews:///session '{}'\n{}{stderr}",
        script.join("; "),
        String::from_utf8_lossy(&out.stdout)
    );
    if stderr.contains("no connection driver available") || stderr.contains("failed to connect") {
        cannot_run(
            "same_commands_as_libvirts_vmware_driver",
            "Debian's libvirt has no usable vmware driver here",
        );
        return;
    }
    assert!(
        out.status.success() && !stderr.contains("error:"),
        "virsh failed: {stderr}"
    );
    let libvirt = actions(&lv.log());
    let libvirt_vmx = std::fs::read_to_string(lv.root.join("vms/t1/t1.vmx")).unwrap();

    // rvirt's run.
    let rv = Env::new();
    let xml = rv.domain("t1", UUID);
    for args in scenario(&xml) {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        rv.ok("vmwarews:///session", &a);
    }
    let rvirt = actions(&rv.log());
    let rvirt_vmx = std::fs::read_to_string(rv.root.join("vms/t1/t1.vmx")).unwrap();

    eprintln!(
        "libvirt's vmrun commands:\n{}\nrvirt's:\n{}",
        libvirt.join("\n"),
        rvirt.join("\n")
    );
    assert_eq!(rvirt, libvirt);
    assert_eq!(libvirt, expected_actions());
    // The .vmx each driver wrote: the same entries (paths differ by the scratch root).
    let norm = |t: &str, root: &Path| t.replace(&root.display().to_string(), "ROOT");
    assert_eq!(norm(&rvirt_vmx, &rv.root), norm(&libvirt_vmx, &lv.root));
}

//! The Virtuozzo plugin through the built `rvirt` binary and plugin (`cargo build -p
//! rvirt-cli -p rvirt-plugin-vz` first).
//!
//! No Virtuozzo host exists here: `tests/fixtures/prlctl` is a fake `prlctl` (python3) put
//! first on `PATH`. It records every call's arguments as one JSON array a line and answers
//! from a small JSON inventory it keeps in the form of `prlctl list -i -j`. The tests check
//! the exact argument list of every `prlctl` call each `rvirt` command makes, and what
//! `rvirt` printed from the answers.

use rvirt_tests::built;
use std::path::{Path, PathBuf};
use std::process::Output;

const NOTE: &str = "NOTE: no Virtuozzo host exists here; `prlctl` is the fake script \
                    tests/fixtures/prlctl, which records its arguments";

const URI: &str = "vz:///system";
const UUID: &str = "4a1f3b5c-0000-4000-8000-00000000a001";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A scratch area: plugin directory and the fake prlctl's state.
struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    /// `FAKE_PRLCTL_FAIL` for the next commands.
    fail: Option<String>,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for d in ["plugins", "state"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let so = built("librvirt_plugin_vz.so");
        std::fs::copy(&so, root.join("plugins/librvirt_plugin_vz.so")).unwrap();
        Env {
            _tmp: tmp,
            root,
            fail: None,
        }
    }

    fn rvirt_with(&self, uri: &str, fake: bool, args: &[&str]) -> Output {
        let base = "/usr/local/bin:/usr/bin:/bin";
        let path = if fake {
            format!("{}:{base}", fixtures().display())
        } else {
            base.to_string()
        };
        let mut c = std::process::Command::new(built("rvirt"));
        c.env_clear()
            .env("PATH", path)
            .env("HOME", self.root.join("home"))
            .env("FAKE_PRLCTL_DIR", self.root.join("state"))
            .env("RVIRT_PLUGIN_PATH", self.root.join("plugins"));
        if let Some(f) = &self.fail {
            c.env("FAKE_PRLCTL_FAIL", f);
        }
        let out = c.arg("-c").arg(uri).args(args).output().unwrap();
        eprintln!(
            "$ rvirt -c {uri} {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `rvirt` with the fake `prlctl`; returns stdout (asserting success) and the
    /// `prlctl` calls it made, each joined with spaces.
    fn ok(&self, args: &[&str]) -> (String, Vec<String>) {
        let _ = std::fs::remove_file(self.root.join("state/log"));
        let out = self.rvirt_with(URI, true, args);
        assert!(out.status.success(), "rvirt {args:?} failed");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            self.calls(),
        )
    }

    /// Runs `rvirt` with the fake `prlctl`, expecting failure; returns stderr and the calls.
    fn fails(&self, args: &[&str]) -> (String, Vec<String>) {
        let _ = std::fs::remove_file(self.root.join("state/log"));
        let out = self.rvirt_with(URI, true, args);
        assert!(!out.status.success(), "rvirt {args:?} should fail");
        (
            String::from_utf8_lossy(&out.stderr).into_owned(),
            self.calls(),
        )
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("state/log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Vec<String> = serde_json::from_str(l).expect("log line is a JSON array");
                v.join(" ")
            })
            .collect()
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.root.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn inventory(&self) -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.root.join("state/inventory.json")).unwrap(),
        )
        .unwrap()
    }
}

const LIST: &str = "list -j -a -i -H --vmtype all";

fn vm_xml(memory_mib: u32) -> String {
    format!(
        "<domain type='vz'>\n  <name>web</name>\n  <uuid>{UUID}</uuid>\n  \
         <description>front end</description>\n  <memory unit='MiB'>{memory_mib}</memory>\n  \
         <vcpu>2</vcpu>\n  <os><type>hvm</type></os>\n  <devices>\n    \
         <disk type='file' device='disk'><source file='/vz/vmprivate/web/harddisk.hdd'/>\
         <target dev='sda' bus='sata'/></disk>\n    \
         <disk type='file' device='cdrom'><source file='/iso/debian.iso'/>\
         <target dev='hda' bus='ide'/><readonly/></disk>\n    \
         <interface type='network'><mac address='00:1c:42:a1:b2:c3'/><source network='Bridged'/></interface>\n    \
         <interface type='bridge'><mac address='00:1c:42:00:00:01'/><source bridge='br1'/></interface>\n  </devices>\n</domain>\n"
    )
}

#[test]
fn lifecycle_with_fake_prlctl() {
    eprintln!("{NOTE}");
    let env = Env::new();
    let id = format!("{{{UUID}}}");
    let by_name = format!("{LIST} web");

    let (v, calls) = env.ok(&["version"]);
    assert!(v.contains("7.0.200"), "{v}");
    assert_eq!(calls, ["--version"]);

    let xml = env.file("web.xml", &vm_xml(2048));
    let (out, calls) = env.ok(&["define", &xml]);
    assert!(out.contains("Domain 'web' defined"), "{out}");
    assert_eq!(
        calls,
        [
            LIST.to_string(),
            format!("create web --vmtype vm --uuid {UUID} --no-hdd"),
            format!("set {id} --memsize 2048"),
            format!("set {id} --cpus 2"),
            format!("set {id} --description front end"),
            format!(
                "set {id} --device-add hdd --image /vz/vmprivate/web/harddisk.hdd --iface sata"
            ),
            format!("set {id} --device-add cdrom --image /iso/debian.iso --iface ide"),
            format!("set {id} --device-add net --network Bridged --mac 001C42A1B2C3"),
            format!("set {id} --device-add net --type bridged --iface br1 --mac 001C42000001"),
            by_name.clone(),
        ]
    );
    let inv = env.inventory();
    assert_eq!(inv[0]["Hardware"]["memory"]["size"], "2048Mb");
    assert_eq!(inv[0]["Hardware"]["hdd0"]["port"], "sata:0");

    let (out, calls) = env.ok(&["list", "--all"]);
    assert!(out.contains("web") && out.contains("shut off"), "{out}");
    assert!(calls.iter().all(|c| c == LIST), "{calls:?}");

    // Each state change: the lookup by name, the state check, the command, the new state.
    for (cmd, verb, state) in [
        ("start", "start", "running"),
        ("suspend", "pause", "paused"),
        ("resume", "resume", "running"),
        ("reboot", "restart", "running"),
        ("shutdown", "stop", "shut off"),
        ("start", "start", "running"),
    ] {
        let (_, calls) = env.ok(&[cmd, "web"]);
        assert_eq!(
            calls,
            [
                by_name.clone(),
                LIST.to_string(),
                format!("{verb} {id}"),
                LIST.to_string()
            ],
            "{cmd}"
        );
        let (out, _) = env.ok(&["domstate", "web"]);
        assert_eq!(out.trim(), state, "after {cmd}");
    }
    // The fake gives the first running environment EnvID 101.
    let (out, _) = env.ok(&["domid", "web"]);
    assert_eq!(out.trim(), "101");
    let (e, calls) = env.fails(&["start", "web"]);
    assert!(e.contains("domain 'web' is already running"), "{e}");
    assert_eq!(
        calls,
        [by_name.clone(), LIST.to_string()],
        "refused before prlctl"
    );

    let (info, _) = env.ok(&["dominfo", "web"]);
    for want in ["running", "2097152 KiB", "CPU(s):         2", "hvm"] {
        assert!(info.contains(want), "{want} in {info}");
    }
    let (dump, calls) = env.ok(&["dumpxml", "web"]);
    let dump = dump.replace('\'', "\"");
    assert_eq!(calls, [by_name.clone(), LIST.to_string()]);
    for want in [
        "<domain type=\"vz\" id=\"101\">",
        &format!("<uuid>{UUID}</uuid>"),
        "<description>front end</description>",
        "<memory unit=\"KiB\">2097152</memory>",
        "<vcpu placement=\"static\">2</vcpu>",
        "<type arch=\"x86_64\">hvm</type>",
        "<source file=\"/vz/vmprivate/web/harddisk.hdd\"/>",
        "<target dev=\"sda\" bus=\"sata\"/>",
        "<disk type=\"file\" device=\"cdrom\">",
        "<target dev=\"hda\" bus=\"ide\"/>",
        "<mac address=\"00:1c:42:a1:b2:c3\"/>",
        "<source network=\"Bridged\"/>",
        "<source bridge=\"br1\"/>",
    ] {
        assert!(dump.contains(want), "{want} in {dump}");
    }

    let (e, calls) = env.fails(&["undefine", "web"]);
    assert!(e.contains("is active"), "{e}");
    assert_eq!(calls, [by_name.clone(), LIST.to_string()]);
    let (_, calls) = env.ok(&["destroy", "web"]);
    assert_eq!(
        calls,
        [
            by_name.clone(),
            LIST.to_string(),
            format!("stop {id} --kill"),
            LIST.to_string()
        ]
    );
    let (_, calls) = env.ok(&["autostart", "web"]);
    assert_eq!(
        calls,
        [
            by_name.clone(),
            LIST.to_string(),
            format!("set {id} --autostart on")
        ]
    );
    let (info, _) = env.ok(&["dominfo", "web"]);
    assert!(info.contains("Autostart:      enable"), "{info}");

    // Redefine: memory and description change through one `prlctl set`.
    let xml = env.file("web2.xml", &vm_xml(4096).replace("front end", "resized"));
    let (_, calls) = env.ok(&["define", &xml]);
    assert_eq!(
        calls,
        [
            LIST.to_string(),
            format!("set {id} --memsize 4096 --description resized"),
            LIST.to_string(),
        ]
    );
    // Device changes are refused, naming the field.
    let xml = env.file(
        "web3.xml",
        &vm_xml(4096).replace("/iso/debian.iso", "/iso/other.iso"),
    );
    let (e, calls) = env.fails(&["define", &xml]);
    assert!(e.contains("domain/devices: changing the devices"), "{e}");
    assert_eq!(calls, [LIST.to_string()]);

    let (_, calls) = env.ok(&["undefine", "web"]);
    assert_eq!(
        calls,
        [by_name.clone(), LIST.to_string(), format!("delete {id}")]
    );
    let (out, _) = env.ok(&["list", "--all"]);
    assert!(!out.contains("web"), "{out}");
    let (e, calls) = env.fails(&["dominfo", "web"]);
    assert!(e.contains("no domain with matching name 'web'"), "{e}");
    assert_eq!(calls, [by_name]);
}

#[test]
fn containers_and_failures() {
    eprintln!("{NOTE}");
    let mut env = Env::new();
    let ct = env.file(
        "ct.xml",
        "<domain type='vz'><name>ct1</name><uuid>4a1f3b5c-0000-4000-8000-00000000c001</uuid>\
         <memory unit='MiB'>512</memory><vcpu>1</vcpu><os><type>exe</type></os><devices>\
         <filesystem type='template'><source name='centos-7-x86_64'/><target dir='/'/></filesystem>\
         <interface type='network'><mac address='00:1c:42:00:00:02'/><source network='Host-Only'/></interface></devices></domain>",
    );
    let id = "{4a1f3b5c-0000-4000-8000-00000000c001}";
    let (_, calls) = env.ok(&["define", &ct]);
    assert_eq!(
        calls,
        [
            LIST.to_string(),
            "create ct1 --vmtype ct --uuid 4a1f3b5c-0000-4000-8000-00000000c001 --ostemplate centos-7-x86_64".to_string(),
            format!("set {id} --memsize 512"),
            format!("set {id} --cpus 1"),
            format!("set {id} --device-add net --network Host-Only --mac 001C42000002"),
            format!("{LIST} ct1"),
        ]
    );
    let (dump, _) = env.ok(&["dumpxml", "ct1"]);
    let dump = dump.replace('\'', "\"");
    assert!(dump.contains("<type arch=\"x86_64\">exe</type>"), "{dump}");
    assert!(dump.contains("<init>/sbin/init</init>"), "{dump}");
    assert!(dump.contains("<target dir=\"/\"/>"), "{dump}");
    // Same name, another UUID: refused before prlctl creates anything.
    let dup = std::fs::read_to_string(&ct)
        .unwrap()
        .replace("c001</uuid>", "c002</uuid>");
    let dup = env.file("dup.xml", &dup);
    let (e, calls) = env.fails(&["define", &dup]);
    assert!(e.contains("domain 'ct1' already exists"), "{e}");
    assert_eq!(calls, [LIST.to_string()]);

    // A prlctl failure in the middle of a define: its stderr in the error, and the
    // half-made VM deleted.
    env.fail = Some("set {4a1f3b5c-0000-4000-8000-00000000a001} --cpus".into());
    let xml = env.file("web.xml", &vm_xml(1024));
    let (e, calls) = env.fails(&["define", &xml]);
    assert!(e.contains("injected failure"), "{e}");
    assert!(e.contains("virDomainDefineXMLFlags"), "{e}");
    assert_eq!(
        calls,
        [
            LIST.to_string(),
            format!("create web --vmtype vm --uuid {UUID} --no-hdd"),
            format!("set {{{UUID}}} --memsize 1024"),
            format!("set {{{UUID}}} --cpus 2"),
            format!("delete {{{UUID}}}"),
        ]
    );
    env.fail = None;
    let (out, _) = env.ok(&["list", "--all", "--name"]);
    assert_eq!(out.trim(), "ct1");

    // What the plugin refuses names the field; nothing runs.
    let bad = env.file("bad.xml", &vm_xml(1024).replace("bus='sata'", "bus='usb'"));
    let (e, calls) = env.fails(&["define", &bad]);
    assert!(e.contains("domain/devices/disk[1]/target/@bus"), "{e}");
    assert!(calls.is_empty(), "{calls:?}");
    // Unsupported calls name the operation and the driver.
    let (e, _) = env.fails(&["create", &xml]);
    assert!(
        e.contains("virDomainCreateXML") && e.contains("Virtuozzo driver 'vz:///system'"),
        "{e}"
    );
    assert!(e.contains("not supported"), "{e}");
    let (e, _) = env.fails(&["domxml-to-native", "vz", &xml]);
    assert!(
        e.contains("virConnectDomainXMLToNative") && e.contains("Virtuozzo driver"),
        "{e}"
    );
}

#[test]
fn without_prlctl_the_tool_and_operation_are_named() {
    eprintln!("{NOTE}");
    let env = Env::new();
    for dir in ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        assert!(
            !Path::new(dir).join("prlctl").exists(),
            "a real prlctl is installed in {dir}: this test needs a machine without it"
        );
    }
    for scheme in ["vz", "parallels"] {
        let uri = format!("{scheme}:///system");
        let out = env.rvirt_with(&uri, false, &["uri"]);
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), uri);
        let out = env.rvirt_with(&uri, false, &["list", "--all"]);
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("virConnectListAllDomains"), "{e}");
        assert!(e.contains("'prlctl' is not installed"), "{e}");
        assert!(
            e.contains(&format!("Virtuozzo driver '{scheme}:///system'")),
            "{e}"
        );
        assert!(e.contains("not supported"), "{e}");
    }
    let xml = env.file("web.xml", &vm_xml(1024));
    let out = env.rvirt_with(URI, false, &["define", &xml]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("virDomainDefineXMLFlags") && e.contains("prlctl"),
        "{e}"
    );
    let out = env.rvirt_with("vz:///session", false, &["uri"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("serves only 'vz:///system'"),
        "{e}"
    );
}

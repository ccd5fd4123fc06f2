//! The esx plugin against a real vSphere API: govmomi's simulator vcsim
//! (`tests/tools/vcsim/main.go`, built here once from Debian's golang-go and
//! golang-github-vmware-govmomi-dev), in standalone-ESX mode (`esx://`) and vCenter mode
//! (`vpx://`). What the plugin reports is compared with an independent read of the
//! simulator's API: raw SOAP written in this file, not the plugin's client.
//!
//! Needs `cargo build -p rvirt-cli -p rvirt-plugin-esx` first (the CLI tests run the built
//! `rvirt` with the built plugin). Without go or govmomi the tests fail, saying why, unless
//! `RVIRT_ALLOW_SKIP=1`.

use rvirt_plugin_esx::EsxConnection;
use rvirt_sdk::abi::{
    DomainRef, DriverConnection, EventSink, EventSink_TO,
    abi_stable::{sabi_trait::TD_Opaque, std_types::RResult},
};
use rvirt_sdk::util::to_abi_uuid;
use rvirt_tests::built;
use rvirt_tests::vcsim::Vcsim;
use std::path::Path;
use std::process::{Command, Output};

// ---------------------------------------------------------------------------------------
// The independent read: raw SOAP over ureq, string-built, string-scanned.

struct Raw {
    agent: ureq::Agent,
    url: String,
    cookie: String,
    /// ha-property-collector (ESX) or PropertyCollector (vCenter)
    pc: String,
    root: String,
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> Option<&'a str> {
    let i = s.find(a)? + a.len();
    let j = s[i..].find(b)? + i;
    Some(&s[i..j])
}

impl Raw {
    fn new(port: u16) -> Raw {
        let agent = ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .disable_verification(true)
                    .build(),
            )
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut r = Raw {
            agent,
            url: format!("https://127.0.0.1:{port}/sdk"),
            cookie: String::new(),
            pc: String::new(),
            root: String::new(),
        };
        let sc = r.post(r#"<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></RetrieveServiceContent>"#);
        r.pc = between(&sc, r#"<propertyCollector type="PropertyCollector">"#, "<")
            .unwrap()
            .to_string();
        r.root = between(&sc, r#"<rootFolder type="Folder">"#, "<")
            .unwrap()
            .to_string();
        let sm = between(&sc, r#"<sessionManager type="SessionManager">"#, "<").unwrap();
        r.post(&format!(r#"<Login xmlns="urn:vim25"><_this type="SessionManager">{sm}</_this><userName>user</userName><password>pass</password></Login>"#));
        r
    }

    fn post(&mut self, body: &str) -> String {
        let doc = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
        );
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "text/xml");
        if !self.cookie.is_empty() {
            req = req.header("Cookie", &self.cookie);
        }
        let mut resp = req.send(doc.as_bytes()).unwrap();
        if let Some(c) = resp.headers().get("set-cookie") {
            self.cookie = c.to_str().unwrap().split(';').next().unwrap().to_string();
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 28)
            .read_to_string()
            .unwrap();
        assert!(!text.contains("<soapenv:Fault>"), "{body}\n{text}");
        text
    }

    /// (moref, name, uuid, powerState) of every VM, by name.
    fn vms(&mut self) -> Vec<(String, String, String, String)> {
        let root = self.root.clone();
        let v = self.post(&format!(r#"<CreateContainerView xmlns="urn:vim25"><_this type="ViewManager">ViewManager</_this><container type="Folder">{root}</container><type>VirtualMachine</type><recursive>true</recursive></CreateContainerView>"#));
        let view = between(&v, r#"<returnval type="ContainerView">"#, "<")
            .unwrap()
            .trim()
            .to_string();
        let pc = self.pc.clone();
        let text = self.post(&format!(r#"<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">{pc}</_this><specSet><propSet><type>VirtualMachine</type><pathSet>name</pathSet><pathSet>config.uuid</pathSet><pathSet>runtime.powerState</pathSet></propSet><objectSet><obj type="ContainerView">{view}</obj><skip>true</skip><selectSet xsi:type="TraversalSpec"><type>ContainerView</type><path>view</path></selectSet></objectSet></specSet><options></options></RetrievePropertiesEx>"#));
        assert!(!text.contains("<token>"), "more than one page of VMs");
        let mut out: Vec<_> = text
            .split("<objects>")
            .skip(1)
            .map(|o| {
                let prop = |n: &str| {
                    let p = between(o, &format!("<name>{n}</name>"), "</val>").unwrap();
                    p.rsplit('>').next().unwrap().to_string()
                };
                (
                    between(o, r#"<obj type="VirtualMachine">"#, "<")
                        .unwrap()
                        .to_string(),
                    prop("name"),
                    prop("config.uuid"),
                    prop("runtime.powerState"),
                )
            })
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }

    fn power(&mut self, name: &str) -> String {
        self.vms()
            .into_iter()
            .find(|v| v.1 == name)
            .map(|v| v.3)
            .unwrap_or_else(|| panic!("no VM {name} in the simulator"))
    }

    /// The `backing.fileName` of the VM's disks (`[DS] path.vmdk`).
    fn disk_files(&mut self, moref: &str) -> Vec<String> {
        let pc = self.pc.clone();
        let text = self.post(&format!(r#"<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">{pc}</_this><specSet><propSet><type>VirtualMachine</type><pathSet>config.hardware.device</pathSet></propSet><objectSet><obj type="VirtualMachine">{moref}</obj></objectSet></specSet><options></options></RetrievePropertiesEx>"#));
        text.split("<fileName>")
            .skip(1)
            .filter_map(|p| p.split_once("</fileName>").map(|(f, _)| f.to_string()))
            .filter(|f| f.ends_with(".vmdk"))
            .collect()
    }

    fn snapshot_names(&mut self, moref: &str) -> Vec<String> {
        let pc = self.pc.clone();
        let text = self.post(&format!(r#"<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">{pc}</_this><specSet><propSet><type>VirtualMachine</type><pathSet>snapshot</pathSet></propSet><objectSet><obj type="VirtualMachine">{moref}</obj></objectSet></specSet><options></options></RetrievePropertiesEx>"#));
        let mut names = Vec::new();
        for part in text
            .split("<snapshot type=\"VirtualMachineSnapshot\">")
            .skip(1)
        {
            if let Some(n) = between(part, "<name>", "</name>") {
                names.push(n.to_string());
            }
        }
        names
    }
}

impl Raw {
    /// A ContainerView of `kind` objects under the root folder.
    fn view(&mut self, kind: &str) -> String {
        let root = self.root.clone();
        let v = self.post(&format!(r#"<CreateContainerView xmlns="urn:vim25"><_this type="ViewManager">ViewManager</_this><container type="Folder">{root}</container><type>{kind}</type><recursive>true</recursive></CreateContainerView>"#));
        between(&v, r#"<returnval type="ContainerView">"#, "<")
            .unwrap()
            .trim()
            .to_string()
    }

    /// `RetrievePropertiesEx` of `paths` of every `kind` object, split per object.
    fn objects(&mut self, kind: &str, paths: &[&str]) -> Vec<String> {
        let view = self.view(kind);
        let pc = self.pc.clone();
        let sets: String = paths
            .iter()
            .map(|p| format!("<pathSet>{p}</pathSet>"))
            .collect();
        let text = self.post(&format!(r#"<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">{pc}</_this><specSet><propSet><type>{kind}</type>{sets}</propSet><objectSet><obj type="ContainerView">{view}</obj><skip>true</skip><selectSet xsi:type="TraversalSpec"><type>ContainerView</type><path>view</path></selectSet></objectSet></specSet><options></options></RetrievePropertiesEx>"#));
        text.split("<objects>")
            .skip(1)
            .map(str::to_string)
            .collect()
    }

    /// (name, capacity, freeSpace, browser) of every datastore, by name.
    fn datastores(&mut self) -> Vec<(String, u64, u64, String)> {
        let mut out: Vec<_> = self
            .objects("Datastore", &["summary", "browser"])
            .iter()
            .map(|o| {
                let summary = o.split_once("DatastoreSummary\">").unwrap().1;
                let n = |t: &str| between(summary, &format!("<{t}>"), &format!("</{t}>")).unwrap();
                (
                    n("name").to_string(),
                    n("capacity").parse().unwrap(),
                    n("freeSpace").parse().unwrap(),
                    between(o, r#"type="HostDatastoreBrowser">"#, "<")
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The `.vmdk` files of a datastore as `dir/file.vmdk`, through its browser.
    fn vmdk_files(&mut self, ds: &str, browser: &str) -> Vec<String> {
        let t = self.post(&format!(r#"<SearchDatastoreSubFolders_Task xmlns="urn:vim25"><_this type="HostDatastoreBrowser">{browser}</_this><datastorePath>[{ds}]</datastorePath><searchSpec><query xsi:type="VmDiskFileQuery"></query><matchPattern>*.vmdk</matchPattern></searchSpec></SearchDatastoreSubFolders_Task>"#));
        let task = between(&t, r#"<returnval type="Task">"#, "<")
            .unwrap()
            .to_string();
        let pc = self.pc.clone();
        for _ in 0..100 {
            let r = self.post(&format!(r#"<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">{pc}</_this><specSet><propSet><type>Task</type><pathSet>info</pathSet></propSet><objectSet><obj type="Task">{task}</obj></objectSet></specSet><options></options></RetrievePropertiesEx>"#));
            if r.contains("<state>success</state>") {
                let mut files = Vec::new();
                for folder in r.split("<HostDatastoreBrowserSearchResults>").skip(1) {
                    let dir = between(folder, "<folderPath>", "</folderPath>").unwrap();
                    let dir = dir.split_once(']').unwrap().1;
                    let dir = dir.trim_start_matches([' ', '/']).trim_end_matches('/');
                    for f in folder.split("<file ").skip(1) {
                        let name = between(f, "<path>", "</path>").unwrap();
                        files.push(if dir.is_empty() {
                            name.to_string()
                        } else {
                            format!("{dir}/{name}")
                        });
                    }
                }
                files.sort();
                return files;
            }
            assert!(!r.contains("<state>error</state>"), "{r}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the datastore search did not end");
    }

    /// (switch name, port group names) of the virtual switches of every host.
    fn vswitches(&mut self) -> Vec<(String, Vec<String>)> {
        let hosts = self.objects("HostSystem", &["configManager.networkSystem"]);
        let pc = self.pc.clone();
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for h in hosts {
            let ns = between(&h, r#"type="HostNetworkSystem">"#, "<").unwrap();
            let r = self.post(&format!(r#"<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">{pc}</_this><specSet><propSet><type>HostNetworkSystem</type><pathSet>networkInfo.portgroup</pathSet></propSet><objectSet><obj type="HostNetworkSystem">{ns}</obj></objectSet></specSet><options></options></RetrievePropertiesEx>"#));
            for pg in r.split("<HostPortGroup>").skip(1) {
                let spec = pg.split_once("<spec>").unwrap().1;
                let name = between(spec, "<name>", "</name>").unwrap().to_string();
                let sw = between(spec, "<vswitchName>", "</vswitchName>")
                    .unwrap()
                    .to_string();
                match out.iter_mut().find(|(s, _)| *s == sw) {
                    Some((_, pgs)) => {
                        if !pgs.contains(&name) {
                            pgs.push(name)
                        }
                    }
                    None => out.push((sw, vec![name])),
                }
            }
        }
        for (_, pgs) in &mut out {
            pgs.sort();
        }
        out.sort();
        out
    }
}

// ---------------------------------------------------------------------------------------
// The plugin through the CLI.

struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("plugins")).unwrap();
        std::fs::create_dir_all(root.join("config/libvirt")).unwrap();
        std::fs::write(
            root.join("config/libvirt/auth.conf"),
            "[credentials-sim]\nusername=user\npassword=pass\n\n[auth-esx-127.0.0.1]\ncredentials=sim\n\n[auth-vpx-default]\ncredentials=sim\n",
        )
        .unwrap();
        std::fs::copy(
            built("librvirt_plugin_esx.so"),
            root.join("plugins/librvirt_plugin_esx.so"),
        )
        .unwrap();
        Env { tmp }
    }

    fn rvirt(&self, uri: &str, args: &[&str]) -> Output {
        let root = self.tmp.path();
        let out = Command::new(built("rvirt"))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", root.join("home"))
            .env("XDG_CONFIG_HOME", root.join("config"))
            .env("RVIRT_PLUGIN_PATH", root.join("plugins"))
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
        let out = self.rvirt(uri, args);
        assert!(out.status.success(), "rvirt {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// (name, state) rows of `rvirt list --all`.
fn list_rows(text: &str) -> Vec<(String, String, String)> {
    let mut rows: Vec<_> = text
        .lines()
        .skip_while(|l| !l.starts_with("---"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut w = l.split_whitespace();
            let id = w.next().unwrap_or("").to_string();
            let name = w.next().unwrap_or("").to_string();
            (id, name, w.collect::<Vec<_>>().join(" "))
        })
        .collect();
    rows.sort_by(|a, b| a.1.cmp(&b.1));
    rows
}

fn libvirt_state(power: &str) -> &'static str {
    match power {
        "poweredOn" => "running",
        "suspended" => "paused",
        _ => "shut off",
    }
}

fn check_cli(test: &str, esx: bool) {
    let Some(sim) = Vcsim::start(test, esx, &[]) else {
        return;
    };
    let mut raw = Raw::new(sim.port);
    let env = Env::new();
    let uri = if esx {
        format!("esx://user@127.0.0.1:{}/?no_verify=1", sim.port)
    } else {
        format!("vpx://127.0.0.1:{}/DC0/DC0_C0?no_verify=1", sim.port)
    };
    let want = raw.vms();
    assert!(want.len() >= 2, "{want:?}");
    // vpx://…/DC0/DC0_C0 lists the datacenter's VMs, as libvirt's driver
    let rows = list_rows(&env.ok(&uri, &["list", "--all"]));
    let got: Vec<_> = rows.iter().map(|r| (r.1.clone(), r.2.clone())).collect();
    let expect: Vec<_> = want
        .iter()
        .map(|v| (v.1.clone(), libvirt_state(&v.3).to_string()))
        .collect();
    assert_eq!(got, expect);
    // the id is the number of the managed object
    for (r, v) in rows.iter().zip(&want) {
        if v.3 == "poweredOn" {
            assert_eq!(r.0, v.0.trim_start_matches("vm-"), "{r:?} {v:?}");
        }
    }
    if !esx {
        // the URI's path: datacenter, compute resource, host (as libvirt's vpx://)
        let with_host = format!(
            "vpx://127.0.0.1:{}/DC0/DC0_C0/DC0_C0_H0?no_verify=1",
            sim.port
        );
        assert_eq!(list_rows(&env.ok(&with_host, &["list", "--all"])), rows);
        let hosted = format!("vpx://127.0.0.1:{}/DC0/DC0_H0?no_verify=1", sim.port);
        assert_eq!(list_rows(&env.ok(&hosted, &["list", "--all"])), rows);
        for bad in ["DC9/DC0_C0", "DC0/nowhere", "DC0/DC0_C0/nohost"] {
            let out = env.rvirt(
                &format!("vpx://127.0.0.1:{}/{bad}?no_verify=1", sim.port),
                &["list", "--all"],
            );
            assert!(!out.status.success(), "{bad}");
        }
    }
    let (moref, name, uuid, _) = want[0].clone();
    assert_eq!(env.ok(&uri, &["domuuid", &name]).trim(), uuid);
    assert_eq!(env.ok(&uri, &["domname", &uuid]).trim(), name);
    let info = env.ok(&uri, &["dominfo", &name]);
    assert!(info.contains(&uuid), "{info}");
    let xml = env.ok(&uri, &["dumpxml", &name]);
    for needle in [
        format!("<name>{name}</name>"),
        format!("<uuid>{uuid}</uuid>"),
        "<memory unit='KiB'>32768</memory>".to_string(),
        ">1</vcpu>".to_string(),
    ] {
        assert!(xml.contains(&needle), "{needle} not in {xml}");
    }
    // vcsim's .vmx files are empty: the disks and NICs come from config.hardware.device
    let nic = if esx {
        "<source bridge='VM Network'/>"
    } else {
        "<interface type='vds'>"
    };
    assert!(xml.contains(nic), "{nic} not in {xml}");
    let disks = raw.disk_files(&moref);
    assert!(!disks.is_empty());
    for d in &disks {
        assert!(
            xml.contains(&format!("<source file='{d}'/>")),
            "{d} not in {xml}"
        );
    }
    // lifecycle, read back independently
    env.ok(&uri, &["suspend", &name]);
    assert_eq!(raw.power(&name), "suspended");
    assert!(env.ok(&uri, &["domstate", &name]).contains("paused"));
    env.ok(&uri, &["resume", &name]);
    assert_eq!(raw.power(&name), "poweredOn");
    env.ok(&uri, &["destroy", &name]);
    assert_eq!(raw.power(&name), "poweredOff");
    assert!(!env.rvirt(&uri, &["destroy", &name]).status.success());
    env.ok(&uri, &["start", &name]);
    assert_eq!(raw.power(&name), "poweredOn");
    // RebootGuest: govmomi 0.24's simulator lacks it, and the error names it
    let out = env.rvirt(&uri, &["reboot", &name]);
    assert!(
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("RebootGuest"),
        "reboot"
    );
    env.ok(&uri, &["shutdown", &name]);
    assert_eq!(raw.power(&name), "poweredOff");
    env.ok(&uri, &["start", &name]);
    // node info from the HostSystem
    let node = env.ok(&uri, &["nodeinfo"]);
    assert!(node.contains("Memory size"), "{node}");
    let caps = env.ok(&uri, &["capabilities"]);
    assert!(caps.contains("<topology sockets="), "{caps}");
    assert!(caps.contains("<domain type='vmware'/>"), "{caps}");
    // define / undefine round trip
    let ds = "LocalDS_0";
    let new_uuid = "564d9bef-acd9-b4e0-c8f0-aea8b9103515";
    let xml_file = env.tmp.path().join("newvm.xml");
    std::fs::write(
        &xml_file,
        format!(
            "<domain type='vmware'>\n  <name>newvm</name>\n  <uuid>{new_uuid}</uuid>\n  \
             <memory unit='KiB'>262144</memory>\n  <vcpu>2</vcpu>\n  <os><type>hvm</type></os>\n  \
             <devices>\n    <disk type='file' device='disk'>\n      \
             <source file='[{ds}] newvm/newvm.vmdk'/>\n      <target dev='sda' bus='scsi'/>\n    </disk>\n  \
             </devices>\n</domain>\n"
        ),
    )
    .unwrap();
    env.ok(&uri, &["define", xml_file.to_str().unwrap()]);
    let after = raw.vms();
    let nv = after
        .iter()
        .find(|v| v.1 == "newvm")
        .unwrap_or_else(|| panic!("newvm not registered: {after:?}"));
    assert_eq!(nv.2, new_uuid);
    assert_eq!(nv.3, "poweredOff");
    let xml = env.ok(&uri, &["dumpxml", "newvm"]);
    for needle in [
        "<name>newvm</name>".to_string(),
        format!("<uuid>{new_uuid}</uuid>"),
        "<memory unit='KiB'>262144</memory>".to_string(),
        ">2</vcpu>".to_string(),
        format!("<source file='[{ds}] newvm/newvm.vmdk'/>"),
    ] {
        assert!(xml.contains(&needle), "{needle} not in {xml}");
    }
    let info = env.ok(&uri, &["dominfo", "newvm"]);
    assert!(info.contains("262144"), "{info}");
    // another domain of the same name is refused
    let text = std::fs::read_to_string(&xml_file).unwrap();
    let other = env.tmp.path().join("other.xml");
    std::fs::write(
        &other,
        text.replace(new_uuid, "564d9bef-acd9-b4e0-c8f0-aea8b9103516"),
    )
    .unwrap();
    assert!(
        !env.rvirt(&uri, &["define", other.to_str().unwrap()])
            .status
            .success()
    );
    // a redefinition (same name and uuid, powered off) replaces the .vmx
    std::fs::write(&xml_file, text.replace("262144", "524288")).unwrap();
    env.ok(&uri, &["define", xml_file.to_str().unwrap()]);
    let xml = env.ok(&uri, &["dumpxml", "newvm"]);
    assert!(xml.contains("<memory unit='KiB'>524288</memory>"), "{xml}");
    assert_eq!(
        raw.vms().iter().filter(|v| v.1 == "newvm").count(),
        1,
        "the redefinition left two VMs"
    );
    env.ok(&uri, &["undefine", "newvm"]);
    assert!(raw.vms().iter().all(|v| v.1 != "newvm"));
    assert_eq!(raw.vms(), want_after_lifecycle(&want, &name));
}

/// The VM list after the lifecycle above: the first VM ends running.
fn want_after_lifecycle(
    want: &[(String, String, String, String)],
    name: &str,
) -> Vec<(String, String, String, String)> {
    want.iter()
        .map(|v| {
            let mut v = v.clone();
            if v.1 == name {
                v.3 = "poweredOn".into();
            }
            v
        })
        .collect()
}

#[test]
fn esx_mode_through_the_cli_agrees_with_the_api() {
    check_cli("esx_mode_through_the_cli_agrees_with_the_api", true);
}

#[test]
fn vcenter_mode_through_the_cli_agrees_with_the_api() {
    check_cli("vcenter_mode_through_the_cli_agrees_with_the_api", false);
}

/// GiB figure of `rvirt pool-info` (two decimals) for a byte count.
fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Plugin API 1.10: the connection's own storage pools (datastores), volumes (their
/// `.vmdk` files) and networks (virtual switches with their port groups) through the CLI,
/// compared with the simulator's API read independently.
fn check_storage_and_networks(test: &str, esx: bool) {
    let Some(sim) = Vcsim::start(test, esx, &[]) else {
        return;
    };
    let mut raw = Raw::new(sim.port);
    let env = Env::new();
    let uri = if esx {
        format!("esx://user@127.0.0.1:{}/?no_verify=1", sim.port)
    } else {
        format!("vpx://127.0.0.1:{}/DC0/DC0_C0?no_verify=1", sim.port)
    };
    let datastores = raw.datastores();
    assert!(!datastores.is_empty());
    // pool-list: every datastore, active, autostarting
    let rows = list_rows(&env.ok(&uri, &["pool-list", "--all"]));
    let mut got: Vec<(String, String)> = rows.iter().map(|r| (r.0.clone(), r.1.clone())).collect();
    got.sort();
    let want: Vec<(String, String)> = datastores
        .iter()
        .map(|d| (d.0.clone(), "active".to_string()))
        .collect();
    assert_eq!(got, want);
    for (name, capacity, free, browser) in &datastores {
        // pool-info and pool-dumpxml carry the simulator's figures
        let info = env.ok(&uri, &["pool-info", name]);
        assert!(info.contains("running"), "{info}");
        assert!(info.contains(&gib(*capacity)), "{info}");
        assert!(info.contains(&gib(*free)), "{info}");
        let xml = env.ok(&uri, &["pool-dumpxml", name]);
        assert!(xml.contains(&format!("<name>{name}</name>")), "{xml}");
        assert!(
            xml.contains(&format!("<capacity unit='bytes'>{capacity}</capacity>")),
            "{xml}"
        );
        assert!(
            xml.contains(&format!("<available unit='bytes'>{free}</available>")),
            "{xml}"
        );
        assert!(
            xml.contains(&format!(
                "<allocation unit='bytes'>{}</allocation>",
                capacity - free
            )),
            "{xml}"
        );
        assert!(xml.starts_with("<pool type='dir'>"), "{xml}");
        // the UUID is the same on the next connection, and finds the pool
        let uuid_of = |info: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix("UUID:"))
                .unwrap()
                .trim()
                .to_string()
        };
        let uuid = uuid_of(&info);
        let again = env.ok(&uri, &["pool-info", &uuid]);
        assert_eq!(uuid_of(&again), uuid);
        assert!(
            again.contains(&format!("Name:           {name}")),
            "{again}"
        );
        // vol-list: the datastore's .vmdk files, with their datastore paths
        let files = raw.vmdk_files(name, browser);
        assert!(!files.is_empty(), "no .vmdk on {name}");
        let vols = env.ok(&uri, &["vol-list", name]);
        let mut listed: Vec<(String, String)> = vols
            .lines()
            .skip_while(|l| !l.starts_with("---"))
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (n, p) = l.trim().split_once(char::is_whitespace).unwrap();
                (n.to_string(), p.trim().to_string())
            })
            .collect();
        listed.sort();
        let want: Vec<(String, String)> = files
            .iter()
            .map(|f| (f.clone(), format!("[{name}] {f}")))
            .collect();
        assert_eq!(listed, want);
        let first = &files[0];
        let vx = env.ok(&uri, &["vol-dumpxml", "--pool", name, first]);
        assert!(vx.contains(&format!("<name>{first}</name>")), "{vx}");
        assert!(
            vx.contains(&format!("<path>[{name}] {first}</path>")),
            "{vx}"
        );
        assert!(vx.contains("<format type='vmdk'/>"), "{vx}");
        let vi = env.ok(&uri, &["vol-info", "--pool", name, first]);
        assert!(vi.contains("file"), "{vi}");
        // lookup by path (and key: the same datastore path)
        let path = format!("[{name}] {first}");
        let by_path = env.ok(&uri, &["vol-info", &path]);
        assert!(
            by_path.contains(&format!("Name:           {first}")),
            "{by_path}"
        );
        let vp = env.ok(&uri, &["vol-path", "--pool", name, first]);
        assert_eq!(vp.trim(), path);
    }
    // volume creation and deletion: CreateVirtualDisk_Task / DeleteVirtualDisk_Task, as
    // the simulator's datastore browser sees them
    let (ds, _, _, browser) = &datastores[0];
    let created = env.ok(
        &uri,
        &[
            "vol-create-as",
            ds,
            "rvirt-new/disk.vmdk",
            "64M",
            "--format",
            "vmdk",
        ],
    );
    assert!(created.contains("rvirt-new/disk.vmdk"), "{created}");
    assert!(
        raw.vmdk_files(ds, browser)
            .contains(&"rvirt-new/disk.vmdk".to_string())
    );
    assert!(
        env.ok(&uri, &["vol-list", ds])
            .contains(&format!("[{ds}] rvirt-new/disk.vmdk"))
    );
    let out = env.rvirt(
        &uri,
        &["-r", "vol-delete", "--pool", ds, "rvirt-new/disk.vmdk"],
    );
    assert!(
        !out.status.success(),
        "a read-only connection deleted a volume"
    );
    assert!(
        raw.vmdk_files(ds, browser)
            .contains(&"rvirt-new/disk.vmdk".to_string())
    );
    env.ok(&uri, &["vol-delete", "--pool", ds, "rvirt-new/disk.vmdk"]);
    assert!(
        !raw.vmdk_files(ds, browser)
            .contains(&"rvirt-new/disk.vmdk".to_string())
    );
    // a format a .vmdk cannot be is refused before the server is asked
    let out = env.rvirt(
        &uri,
        &[
            "vol-create-as",
            ds,
            "rvirt-new/x.qcow2",
            "1M",
            "--format",
            "qcow2",
        ],
    );
    assert!(!out.status.success());
    // a missing pool is libvirt's error
    let out = env.rvirt(&uri, &["pool-info", "NoSuchDS"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Storage pool not found"));
    // what the read-only API does not carry says so, naming the API and the driver
    let dir = tempfile::tempdir().unwrap();
    let px = dir.path().join("p.xml");
    std::fs::write(
        &px,
        "<pool type='dir'><name>x</name><target><path>/x</path></target></pool>",
    )
    .unwrap();
    let out = env.rvirt(&uri, &["pool-define", px.to_str().unwrap()]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("virStoragePoolDefineXML") && e.contains("'esx'"),
        "{e}"
    );
    // networks: the host's virtual switches, their port groups as <portgroup>s
    let switches = raw.vswitches();
    assert!(!switches.is_empty());
    let nets = env.ok(&uri, &["net-list", "--all"]);
    let mut names: Vec<String> = nets
        .lines()
        .skip_while(|l| !l.starts_with("---"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(
        names,
        switches.iter().map(|s| s.0.clone()).collect::<Vec<_>>()
    );
    for (sw, pgs) in &switches {
        let xml = env.ok(&uri, &["net-dumpxml", sw]);
        assert!(xml.contains(&format!("<name>{sw}</name>")), "{xml}");
        let mut got: Vec<&str> = xml
            .split("<portgroup name='")
            .skip(1)
            .map(|p| p.split('\'').next().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, pgs.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(pgs.iter().any(|p| p == "VM Network"), "{pgs:?}");
        let uuid = env.ok(&uri, &["net-uuid", sw]).trim().to_string();
        assert_eq!(env.ok(&uri, &["net-name", &uuid]).trim(), sw);
    }
}

#[test]
fn esx_mode_pools_volumes_and_networks_agree_with_the_api() {
    check_storage_and_networks(
        "esx_mode_pools_volumes_and_networks_agree_with_the_api",
        true,
    );
}

#[test]
fn vcenter_mode_pools_volumes_and_networks_agree_with_the_api() {
    check_storage_and_networks(
        "vcenter_mode_pools_volumes_and_networks_agree_with_the_api",
        false,
    );
}

/// `rvirt -c URI ARGS` with `input` on standard input and no auth.conf entry for the host
/// (the config directory holds an auth.conf for another host only).
fn rvirt_asked(uri: &str, args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("plugins")).unwrap();
    std::fs::create_dir_all(root.join("config/libvirt")).unwrap();
    std::fs::write(
        root.join("config/libvirt/auth.conf"),
        "[credentials-other]\nusername=x\npassword=y\n\n[auth-esx-192.0.2.1]\ncredentials=other\n",
    )
    .unwrap();
    std::fs::copy(
        built("librvirt_plugin_esx.so"),
        root.join("plugins/librvirt_plugin_esx.so"),
    )
    .unwrap();
    let mut child = Command::new(built("rvirt"))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", root.join("home"))
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("XDG_RUNTIME_DIR", root)
        .env("RVIRT_PLUGIN_PATH", root.join("plugins"))
        .arg("-c")
        .arg(uri)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "$ echo ... | rvirt -c {uri} {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // the answers' auth file is gone once the connection is open
    let left: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("rvirt-auth-"))
        .collect();
    assert!(left.is_empty(), "an auth file was left behind: {left:?}");
    out
}

/// The interactive credential prompt of `rvirt` (issue 18): with no password in any auth
/// file, `rvirt` asks for the user (when the URI has none) and the password, as virsh
/// does, and the connection opens with them; a wrong password is the server's refusal,
/// and no answer at all is the original "no password" error.
#[test]
fn rvirt_asks_for_credentials_the_auth_file_lacks() {
    let test = "rvirt_asks_for_credentials_the_auth_file_lacks";
    for esx in [true, false] {
        let Some(sim) = Vcsim::start(test, esx, &[]) else {
            return;
        };
        let mut raw = Raw::new(sim.port);
        let want: Vec<String> = raw.vms().into_iter().map(|v| v.1).collect();
        let (with_user, without_user) = if esx {
            (
                format!("esx://user@127.0.0.1:{}/?no_verify=1", sim.port),
                format!("esx://127.0.0.1:{}/?no_verify=1", sim.port),
            )
        } else {
            (
                format!("vpx://user@127.0.0.1:{}/DC0/DC0_C0?no_verify=1", sim.port),
                format!("vpx://127.0.0.1:{}/DC0/DC0_C0?no_verify=1", sim.port),
            )
        };
        let names = |out: &Output| {
            let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            v.sort();
            v
        };
        let mut want_dc: Vec<String> = want.clone();
        want_dc.sort();
        // the URI names the user: only the password is asked
        let out = rvirt_asked(&with_user, &["list", "--all", "--name"], "pass\n");
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Enter user's password for 127.0.0.1: "),
            "{err}"
        );
        assert!(!err.contains("Enter username"), "{err}");
        let got = names(&out);
        assert!(
            !got.is_empty() && got.iter().all(|n| want_dc.contains(n)),
            "{got:?}"
        );
        // no user in the URI: both are asked
        let out = rvirt_asked(&without_user, &["list", "--all", "--name"], "user\npass\n");
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let default = if esx { "root" } else { "administrator" };
        assert!(
            err.contains(&format!("Enter username for 127.0.0.1 [{default}]: ")),
            "{err}"
        );
        assert_eq!(names(&out), got);
        // a wrong password is refused by the server
        let out = rvirt_asked(&with_user, &["list", "--all"], "wrong\n");
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot log in"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // nothing to read: the original error names the auth files
        let out = rvirt_asked(&with_user, &["list", "--all"], "");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no password for user@127.0.0.1"));
    }
}

/// The prompt on a terminal (a pty from util-linux's `script`): the password typed after
/// the prompt is not echoed, and the connection opens with it.
#[test]
fn rvirt_reads_the_password_from_a_terminal_without_echo() {
    use std::io::{Read as _, Write as _};
    let test = "rvirt_reads_the_password_from_a_terminal_without_echo";
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!(
            "{test}: FAILED: util-linux's script (the pty) is missing: apt-get install util-linux"
        );
        assert!(
            std::env::var("RVIRT_ALLOW_SKIP").is_ok_and(|v| v == "1"),
            "script missing"
        );
        return;
    }
    let secret = "s3cr3t-Qz9";
    let Some(sim) = Vcsim::start(test, true, &["-pass", secret]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("plugins")).unwrap();
    std::fs::create_dir_all(root.join("config/libvirt")).unwrap();
    std::fs::copy(
        built("librvirt_plugin_esx.so"),
        root.join("plugins/librvirt_plugin_esx.so"),
    )
    .unwrap();
    let cmd = format!(
        "{} -c 'esx://user@127.0.0.1:{}/?no_verify=1' list --all --name",
        built("rvirt").display(),
        sim.port
    );
    let mut child = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", root.join("home"))
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("XDG_RUNTIME_DIR", root)
        .env("RVIRT_PLUGIN_PATH", root.join("plugins"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    // type only once the prompt is up (and echo is off)
    while !String::from_utf8_lossy(&seen).contains("password for 127.0.0.1: ") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{secret}\n").as_bytes()).unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    let text = String::from_utf8_lossy(&seen);
    eprintln!("$ script -qfec \"{cmd}\"\n{text}");
    assert!(status.success(), "{text}");
    assert!(
        text.contains("ha-host_VM0") && text.contains("ha-host_VM1"),
        "{text}"
    );
    assert!(!text.contains(secret), "the password was echoed: {text}");
}

// ---------------------------------------------------------------------------------------
// In-process: what plugin API 1.6 has no method for (snapshots, memory, vCPUs).

struct NoEvents;

impl EventSink for NoEvents {
    fn domain_lifecycle(&self, _dom: DomainRef, _event: i32, _detail: i32) {}
}

fn ok<T>(r: RResult<T, rvirt_sdk::abi::PluginError>) -> T {
    match r {
        RResult::ROk(v) => v,
        RResult::RErr(e) => panic!("{}", e.message),
    }
}

fn open_in_process(uri: &str, dir: &Path) -> EsxConnection {
    let auth = dir.join("auth.conf");
    std::fs::write(
        &auth,
        "[credentials-sim]\nusername=user\npassword=pass\n[auth-esx-default]\ncredentials=sim\n[auth-vpx-default]\ncredentials=sim\n",
    )
    .unwrap();
    let uri = format!("{uri}&authfile={}", auth.display());
    rvirt_plugin_esx::open(&uri, false, EventSink_TO::from_value(NoEvents, TD_Opaque))
        .unwrap_or_else(|e| panic!("{}", e.message))
}

#[test]
fn snapshots_memory_and_vcpus_in_process() {
    let test = "snapshots_memory_and_vcpus_in_process";
    for esx in [true, false] {
        let Some(sim) = Vcsim::start(test, esx, &[]) else {
            return;
        };
        let mut raw = Raw::new(sim.port);
        let dir = tempfile::tempdir().unwrap();
        let scheme = if esx { "esx" } else { "vpx" };
        let c = open_in_process(
            &format!("{scheme}://127.0.0.1:{}/?no_verify=1", sim.port),
            dir.path(),
        );
        let (moref, name, uuid, _) = raw.vms()[0].clone();
        let u = to_abi_uuid(uuid::Uuid::parse_str(&uuid).unwrap());
        assert_eq!(ok(c.lookup_by_uuid(u)).name.as_str(), name);
        c.snapshot_create(u, "s1", "first").unwrap();
        c.snapshot_create(u, "s2", "second").unwrap();
        assert!(c.snapshot_create(u, "s1", "again").is_err());
        let snaps = c.snapshots(u).unwrap();
        let names: Vec<_> = snaps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["s1", "s2"]);
        assert_eq!(snaps[1].parent.as_deref(), Some("s1"));
        assert!(snaps[1].current);
        assert_eq!(raw.snapshot_names(&moref), ["s1", "s2"]);
        c.snapshot_revert(u, "s1").unwrap();
        assert!(c.snapshots(u).unwrap()[0].current);
        c.snapshot_delete(u, "s2", false).unwrap();
        assert_eq!(raw.snapshot_names(&moref), ["s1"]);
        c.snapshot_delete(u, "s1", true).unwrap();
        assert!(c.snapshots(u).unwrap().is_empty());

        c.set_memory(u, 65536).unwrap();
        c.set_vcpus(u, 2).unwrap();
        let info = ok(c.get_info(u));
        assert_eq!((info.memory_kib, info.nr_virt_cpu), (65536, 2));
        assert!(c.set_vcpus(u, 3).is_err());
        // vcsim's hosts have no HostAutoStartManager
        assert!(!ok(c.get_autostart(u)));
        match c.set_autostart(u, true) {
            RResult::RErr(e) => {
                assert!(e.message.contains("HostAutoStartManager"), "{}", e.message)
            }
            RResult::ROk(()) => panic!("autostart set without an autostart manager"),
        }
        let node = ok(c.node_get_info());
        assert!(node.memory_kib > 0 && node.cpus > 0, "{node:?}");
        // a session the server does not know (here: the cookie forgotten) logs in again
        c.session().client.clear_cookie();
        assert!(!ok(c.list_all_domains(0)).is_empty());
    }
}

/// A TCP relay on 127.0.0.1 to `target`, counting the connections it accepts.
fn start_relay(target: u16) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (mut c1, mut s1) = (conn.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut c2, mut s2) = (conn, server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s1, &mut c1);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
            });
        }
    });
    (port, count)
}

#[test]
fn one_tls_connection_carries_the_session() {
    // every call of a connection, SOAP and datastore file transfers alike, goes over one
    // kept-alive TLS connection: no handshake (and no session resumption) per call
    let test = "one_tls_connection_carries_the_session";
    let Some(sim) = Vcsim::start(test, true, &[]) else {
        return;
    };
    let (relay, count) = start_relay(sim.port);
    let dir = tempfile::tempdir().unwrap();
    let c = open_in_process(&format!("esx://127.0.0.1:{relay}/?no_verify=1"), dir.path());
    let calls_after_open = c.session().client.calls();
    let doms = ok(c.list_all_domains(0));
    assert_eq!(doms.len(), 2);
    let d = ok(c.lookup_by_name(doms[0].name.as_str().into()));
    let info = ok(c.get_info(d.uuid));
    assert!(info.memory_kib > 0);
    // dumpxml reads the .vmx over HTTP from the datastore (vcsim's is empty)
    assert!(ok(c.get_xml_desc(d.uuid, 0)).contains("<domain"));
    assert_eq!(ok(c.list_all_domains(0)).len(), 2);
    assert!(c.session().client.calls() > calls_after_open + 4);
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the calls opened more than one connection"
    );
}

#[test]
fn wrong_password_and_wrong_product_are_refused() {
    let test = "wrong_password_and_wrong_product_are_refused";
    let Some(sim) = Vcsim::start(test, true, &["-pass", "other"]) else {
        return;
    };
    let env = Env::new();
    let out = env.rvirt(
        &format!("esx://user@127.0.0.1:{}/?no_verify=1", sim.port),
        &["list", "--all"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidLogin"));
    drop(sim);
    let Some(sim) = Vcsim::start(test, false, &[]) else {
        return;
    };
    // vCenter is not an ESX host
    let out = env.rvirt(
        &format!("esx://user@127.0.0.1:{}/?no_verify=1", sim.port),
        &["list", "--all"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("vpx"));
    // the certificate is checked unless no_verify=1
    let out = env.rvirt(
        &format!("vpx://user@127.0.0.1:{}/", sim.port),
        &["list", "--all"],
    );
    assert!(!out.status.success());
}

#[test]
fn gsx_scheme_against_vcsim_standing_for_vmware_server() {
    // vcsim has no GSX model: in ESX mode with `-product gsx` it answers as VMware Server
    // 2.0 does (productLineId gsx, apiType HostAgent) over the same API, which is what
    // libvirt's gsx:// checks for; GSX 2.0's own API differences are not simulated
    let test = "gsx_scheme_against_vcsim_standing_for_vmware_server";
    let Some(sim) = Vcsim::start(test, true, &["-product", "gsx"]) else {
        return;
    };
    let env = Env::new();
    let uri = format!("gsx://user@127.0.0.1:{}/?no_verify=1", sim.port);
    let rows = list_rows(&env.ok(&uri, &["list", "--all"]));
    let mut raw = Raw::new(sim.port);
    let mut want: Vec<(String, String)> = raw
        .vms()
        .into_iter()
        .map(|(_, name, _, power)| (name, libvirt_state(&power).to_string()))
        .collect();
    want.sort();
    let got: Vec<(String, String)> = rows.into_iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(got, want);
    assert!(!got.is_empty());
    assert!(
        env.ok(&uri, &["dumpxml", &got[0].0])
            .contains("<domain type='vmware'")
    );
    // an ESX connection to VMware Server is refused, and the other way round
    let out = env.rvirt(
        &format!("esx://user@127.0.0.1:{}/?no_verify=1", sim.port),
        &["list", "--all"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'gsx'"));
    drop(sim);
    let Some(esx) = Vcsim::start(test, true, &[]) else {
        return;
    };
    let out = env.rvirt(
        &format!("gsx://user@127.0.0.1:{}/?no_verify=1", esx.port),
        &["list", "--all"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'embeddedEsx'"));
    drop(esx);
    // gsx over plain http
    let Some(plain) = Vcsim::start(test, true, &["-product", "gsx", "-tls=false"]) else {
        return;
    };
    let uri = format!("gsx://user@127.0.0.1:{}/?transport=http", plain.port);
    assert_eq!(
        list_rows(&env.ok(&uri, &["list", "--all"])).len(),
        got.len()
    );
}

#[test]
fn plain_http_transport() {
    let test = "plain_http_transport";
    let Some(sim) = Vcsim::start(test, true, &["-tls=false"]) else {
        return;
    };
    let env = Env::new();
    let uri = format!("esx://user@127.0.0.1:{}/?transport=http", sim.port);
    let rows = list_rows(&env.ok(&uri, &["list", "--all"]));
    let names: Vec<_> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(names, ["ha-host_VM0", "ha-host_VM1"]);
    // https against a plain http server fails, naming the server
    let out = env.rvirt(
        &format!("esx://user@127.0.0.1:{}/?no_verify=1", sim.port),
        &["list", "--all"],
    );
    assert!(!out.status.success());
}

/// A forward HTTP proxy on 127.0.0.1: `CONNECT host:port` tunnels, and an absolute-form
/// request is piped to its host:port; counts connections.
fn start_proxy() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut client = conn;
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n") {
                    if client.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let line = String::from_utf8_lossy(&head).into_owned();
                let mut words = line.split_whitespace();
                let method = words.next().unwrap_or("").to_string();
                let uri = words.next().unwrap_or("").to_string();
                let mut server = if method == "CONNECT" {
                    // CONNECT host:port: read the rest of the head, then tunnel
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let Ok(server) = TcpStream::connect(&uri) else {
                        return;
                    };
                    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                    server
                } else {
                    // absolute form: POST http://host:port/sdk HTTP/1.1
                    let Some(target) = uri
                        .strip_prefix("http://")
                        .and_then(|u| u.split('/').next())
                    else {
                        return;
                    };
                    let Ok(mut server) = TcpStream::connect(target) else {
                        return;
                    };
                    let _ = server.write_all(&head);
                    server
                };
                let mut s2 = server.try_clone().unwrap();
                let mut c2 = client.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                });
                let _ = std::io::copy(&mut client, &mut server);
            });
        }
    });
    (port, count)
}

#[test]
fn proxy_parameter_is_applied() {
    let test = "proxy_parameter_is_applied";
    let Some(sim) = Vcsim::start(test, true, &["-tls=false"]) else {
        return;
    };
    let (proxy, count) = start_proxy();
    let env = Env::new();
    let uri = format!(
        "esx://user@127.0.0.1:{}/?transport=http&proxy=http://127.0.0.1:{proxy}",
        sim.port
    );
    let rows = list_rows(&env.ok(&uri, &["list", "--all"]));
    assert_eq!(rows.len(), 2);
    assert!(
        count.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the proxy saw no connection"
    );
    // https through the proxy (CONNECT)
    let Some(tls) = Vcsim::start(test, true, &[]) else {
        return;
    };
    let before = count.load(std::sync::atomic::Ordering::SeqCst);
    let uri = format!(
        "esx://user@127.0.0.1:{}/?no_verify=1&proxy=127.0.0.1:{proxy}",
        tls.port
    );
    assert_eq!(list_rows(&env.ok(&uri, &["list", "--all"])).len(), 2);
    assert!(count.load(std::sync::atomic::Ordering::SeqCst) > before);
    // a proxy that refuses: the connection fails
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let out = env.rvirt(
        &format!(
            "esx://user@127.0.0.1:{}/?transport=http&proxy=127.0.0.1:{dead_port}",
            sim.port
        ),
        &["list", "--all"],
    );
    assert!(!out.status.success());
}

/// A SOCKS5 proxy on 127.0.0.1 (no authentication, CONNECT to IPv4 or a host name);
/// counts connections.
fn start_socks5() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut c = conn;
                let mut b = [0u8; 2];
                c.read_exact(&mut b)?;
                let mut methods = vec![0u8; b[1] as usize];
                c.read_exact(&mut methods)?;
                c.write_all(&[5, 0])?;
                let mut req = [0u8; 4];
                c.read_exact(&mut req)?;
                let host = match req[3] {
                    1 => {
                        let mut a = [0u8; 4];
                        c.read_exact(&mut a)?;
                        std::net::Ipv4Addr::from(a).to_string()
                    }
                    3 => {
                        let mut n = [0u8; 1];
                        c.read_exact(&mut n)?;
                        let mut h = vec![0u8; n[0] as usize];
                        c.read_exact(&mut h)?;
                        String::from_utf8_lossy(&h).into_owned()
                    }
                    _ => return Ok(()),
                };
                let mut p = [0u8; 2];
                c.read_exact(&mut p)?;
                let mut server = TcpStream::connect((host.as_str(), u16::from_be_bytes(p)))?;
                c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])?;
                let mut s2 = server.try_clone()?;
                let mut c2 = c.try_clone()?;
                std::thread::spawn(move || std::io::copy(&mut s2, &mut c2));
                std::io::copy(&mut c, &mut server)?;
                Ok(())
            });
        }
    });
    (port, count)
}

#[test]
fn socks_proxy_parameter_is_applied() {
    let test = "socks_proxy_parameter_is_applied";
    let Some(sim) = Vcsim::start(test, true, &[]) else {
        return;
    };
    let (proxy, count) = start_socks5();
    let env = Env::new();
    // libvirt's socks:// is SOCKS5
    let uri = format!(
        "esx://user@127.0.0.1:{}/?no_verify=1&proxy=socks://127.0.0.1:{proxy}",
        sim.port
    );
    assert_eq!(list_rows(&env.ok(&uri, &["list", "--all"])).len(), 2);
    assert!(
        count.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the proxy saw no connection"
    );
}

//! The phyp plugin through the built `rvirt` binary and plugin (`cargo build -p rvirt-cli
//! -p rvirt-plugin-phyp` first), against a real OpenSSH server.
//!
//! No HMC exists here. Each test starts a private `sshd` (openssh-server) on 127.0.0.1 on
//! a free port, with its own host key, config and an authorized key it makes; the
//! `ForceCommand` is `tests/fixtures/fake-hmc` (python3), which records every command line
//! it receives and answers from a small LPAR inventory. The tests check every command
//! string exactly, the results `rvirt` printed, that one `rvirt` process authenticates
//! once (one SSH session for all its commands), and the errors for a refused key, an
//! unknown host key and an unknown managed system. The sshd is killed when the test ends.

use rvirt_tests::{built, cannot_run};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const NOTE: &str = "NOTE: no IBM HMC exists here; the test's private sshd runs the fake HMC \
                    shell tests/fixtures/fake-hmc, which records each command";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn sh(prog: &str, args: &[&str]) {
    let st = Command::new(prog).args(args).status().unwrap();
    assert!(st.success(), "{prog} {args:?} failed");
}

/// The private sshd with the fake HMC shell.
struct Hmc {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    port: u16,
    user: String,
    sshd: Child,
}

impl Drop for Hmc {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

const INVENTORY: &str = r#"{
 "SYS1": [
  {"name": "vios1", "lpar_id": 1, "state": "Running", "profile": "vios1",
   "curr_mem": 4096, "curr_max_mem": 8192, "curr_procs": 2, "curr_max_procs": 4},
  {"name": "lp2", "lpar_id": 2, "state": "Not Activated", "profile": "lp2",
   "curr_mem": 2048, "curr_max_mem": 4096, "curr_procs": 1, "curr_max_procs": 2},
  {"name": "fw3", "lpar_id": 3, "state": "Open Firmware", "profile": "fw3",
   "curr_mem": 1024, "curr_max_mem": 1024, "curr_procs": 1, "curr_max_procs": 1},
  {"name": "bad4", "lpar_id": 4, "state": "Error", "profile": "bad4",
   "curr_mem": 1024, "curr_max_mem": 1024, "curr_procs": 1, "curr_max_procs": 1}
 ],
 "SYS2": []
}"#;

impl Hmc {
    /// Starts the sshd, or says loudly why it cannot.
    fn start(test: &str) -> Option<Hmc> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.is_file() || Command::new("ssh").arg("-V").output().is_err() {
            cannot_run(
                test,
                "sshd or ssh is missing (apt-get install openssh-server openssh-client)",
            );
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        for d in ["plugins", "state"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::copy(
            built("librvirt_plugin_phyp.so"),
            dir.join("plugins/librvirt_plugin_phyp.so"),
        )
        .unwrap();
        for k in ["hostkey", "clientkey", "otherkey"] {
            let p = dir.join(k).display().to_string();
            sh(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-C", k, "-f", &p],
            );
        }
        std::fs::copy(dir.join("clientkey.pub"), dir.join("authorized_keys")).unwrap();
        std::fs::write(dir.join("state/inventory.json"), INVENTORY).unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n\
             StrictModes no\nLogLevel INFO\nForceCommand /usr/bin/python3 {} {d}/state\n",
            fixtures().join("fake-hmc").display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        // The privilege separation directory sshd insists on.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let cfg = dir.join("sshd_config").display().to_string();
        sh("/usr/sbin/sshd", &["-t", "-f", &cfg]);
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f", &cfg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let hmc = Hmc {
            _tmp: tmp,
            dir,
            port,
            user,
            sshd: child,
        };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "sshd did not listen: {}",
                std::fs::read_to_string(hmc.dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(hmc)
    }

    fn uri(&self, system: &str, key: &str, extra: &str) -> String {
        format!(
            "phyp://{}@127.0.0.1:{}/{system}?keyfile={}/{key}{extra}",
            self.user,
            self.port,
            self.dir.display()
        )
    }

    fn rvirt(&self, uri: &str, args: &[&str]) -> Output {
        let _ = std::fs::remove_file(self.dir.join("state/log"));
        let out = Command::new(built("rvirt"))
            .env("RVIRT_PLUGIN_PATH", self.dir.join("plugins"))
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

    /// The HMC command lines the last `rvirt` sent.
    fn commands(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("state/log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn accepted_logins(&self) -> usize {
        std::fs::read_to_string(self.dir.join("sshd.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Accepted publickey"))
            .count()
    }

    fn inventory(&self) -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.dir.join("state/inventory.json")).unwrap(),
        )
        .unwrap()
    }
}

const SYS: &str = "lssyscfg -r sys -F name";
const ALL: &str = "lssyscfg -r lpar -m SYS1 -F name,lpar_id,state";

fn named(n: &str) -> String {
    format!("{ALL} --filter lpar_names={n}")
}

#[test]
fn lifecycle_over_ssh() {
    eprintln!("{NOTE}");
    let Some(hmc) = Hmc::start("lifecycle_over_ssh") else {
        return;
    };
    let uri = hmc.uri("SYS1", "clientkey", "&no_verify=1");
    let mut runs = 0;
    let mut ok = |args: &[&str]| -> (String, Vec<String>) {
        let out = hmc.rvirt(&uri, args);
        runs += 1;
        assert!(out.status.success(), "rvirt {args:?} failed");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            hmc.commands(),
        )
    };

    let (out, cmds) = ok(&["list", "--all"]);
    // The listing, then the state of each domain by its UUID (a full listing each).
    assert_eq!(cmds, [SYS, ALL, ALL, ALL, ALL, ALL]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["1", "vios1", "running"],
            vec!["3", "fw3", "running"],
            vec!["4", "bad4", "crashed"],
            vec!["-", "lp2", "shut", "off"],
        ],
        "{out}"
    );

    let (node, cmds) = ok(&["nodeinfo"]);
    assert!(
        node.contains("67108864 KiB") && node.contains("16"),
        "{node}"
    );
    assert_eq!(
        cmds,
        [
            SYS,
            "lshwres -r mem -m SYS1 --level sys -F configurable_sys_mem",
            "lshwres -r proc -m SYS1 --level sys -F configurable_sys_proc_units"
        ]
    );

    let (info, cmds) = ok(&["dominfo", "vios1"]);
    for want in [
        "Id:             1",
        "running",
        "CPU(s):         2",
        "Max memory:     8388608 KiB",
        "Used memory:    4194304 KiB",
        "linux",
    ] {
        assert!(info.contains(want), "{want} in {info}");
    }
    assert_eq!(&cmds[..2], [SYS.to_string(), named("vios1")]);
    assert!(
        cmds.contains(
            &"lshwres -r mem -m SYS1 --level lpar -F curr_mem,curr_max_mem --filter lpar_ids=1"
                .to_string()
        ) && cmds.contains(
            &"lshwres -r proc -m SYS1 --level lpar -F curr_procs,curr_max_procs --filter lpar_ids=1"
                .to_string()
        ),
        "{cmds:?}"
    );
    assert!(
        cmds[2..]
            .iter()
            .all(|c| c == ALL || c.starts_with("lshwres ")),
        "{cmds:?}"
    );

    // A lookup by id sends the id filter.
    let (out, cmds) = ok(&["domname", "3"]);
    assert_eq!(out.trim(), "fw3");
    assert_eq!(
        cmds[..2],
        [SYS.to_string(), format!("{ALL} --filter lpar_ids=3")]
    );

    // State changes: the lookup, the LPAR by UUID, the HMC command.
    for (args, cmd, state) in [
        (
            ["start", "lp2"],
            "chsysstate -m SYS1 -r lpar -o on --id 2 -f lp2",
            "running",
        ),
        (
            ["reboot", "lp2"],
            "chsysstate -m SYS1 -r lpar -o shutdown --id 2 --immed --restart",
            "running",
        ),
        (
            ["shutdown", "lp2"],
            "chsysstate -m SYS1 -r lpar -o shutdown --id 2",
            "shut off",
        ),
        (
            ["start", "lp2"],
            "chsysstate -m SYS1 -r lpar -o on --id 2 -f lp2",
            "running",
        ),
        (
            ["destroy", "lp2"],
            "chsysstate -m SYS1 -r lpar -o shutdown --id 2 --immed",
            "shut off",
        ),
    ] {
        let (_, cmds) = ok(&args);
        assert_eq!(
            cmds,
            [
                SYS.to_string(),
                named("lp2"),
                ALL.to_string(),
                cmd.to_string()
            ]
        );
        let (out, _) = ok(&["domstate", "lp2"]);
        assert_eq!(out.trim(), state, "after {args:?}");
    }
    assert_eq!(hmc.inventory()["SYS1"][1]["state"], "Not Activated");

    // Define a new LPAR, redefine it, dump it, remove it.
    let xml = hmc.dir.join("lp9.xml");
    std::fs::write(
        &xml,
        "<domain type='phyp'><name>lp9</name><memory unit='MiB'>2048</memory>\
         <currentMemory unit='MiB'>1024</currentMemory><vcpu current='2'>4</vcpu>\
         <os><type>linux</type></os></domain>",
    )
    .unwrap();
    let x = xml.display().to_string();
    let (out, cmds) = ok(&["define", &x]);
    assert!(out.contains("Domain 'lp9' defined"), "{out}");
    assert_eq!(
        cmds,
        [
            SYS.to_string(),
            named("lp9"),
            "mksyscfg -r lpar -m SYS1 -i \"name=lp9,profile_name=lp9,lpar_env=aixlinux,min_mem=1024,desired_mem=1024,max_mem=2048,proc_mode=ded,min_procs=1,desired_procs=2,max_procs=4\"".to_string(),
            named("lp9"),
        ]
    );
    let lp9 = &hmc.inventory()["SYS1"][4];
    assert_eq!(
        (lp9["lpar_id"].as_i64(), lp9["curr_max_mem"].as_i64()),
        (Some(5), Some(2048))
    );
    std::fs::write(
        &xml,
        std::fs::read_to_string(&xml)
            .unwrap()
            .replace(">1024</currentMemory>", ">1536</currentMemory>"),
    )
    .unwrap();
    let (_, cmds) = ok(&["define", &x]);
    assert_eq!(
        cmds[2],
        "chsyscfg -r prof -m SYS1 -i \"name=lp9,lpar_name=lp9,min_mem=1536,desired_mem=1536,max_mem=2048,desired_procs=2,max_procs=4\""
    );
    let (dump, _) = ok(&["dumpxml", "lp9"]);
    let dump = dump.replace('\'', "\"");
    for want in [
        "<domain type=\"phyp\">",
        "<name>lp9</name>",
        "<memory unit=\"KiB\">2097152</memory>",
        "<currentMemory unit=\"KiB\">1572864</currentMemory>",
        "<vcpu placement=\"static\" current=\"2\">4</vcpu>",
        "<type>linux</type>",
    ] {
        assert!(dump.contains(want), "{want} in {dump}");
    }
    // The UUID is stable across connections.
    let (u1, _) = ok(&["domuuid", "lp9"]);
    let (u2, _) = ok(&["domuuid", "lp9"]);
    assert_eq!(u1, u2);
    assert!(
        dump.contains(&format!("<uuid>{}</uuid>", u1.trim())),
        "{dump}"
    );
    let (_, cmds) = ok(&["undefine", "lp9"]);
    assert_eq!(
        cmds,
        [
            SYS.to_string(),
            named("lp9"),
            ALL.to_string(),
            "rmsyscfg -r lpar -m SYS1 --id 5".to_string()
        ]
    );
    assert_eq!(hmc.inventory()["SYS1"].as_array().unwrap().len(), 4);

    // Refusals: before any HMC command for what the driver knows, with the HMC's message
    // for what it refuses.
    let fail = |args: &[&str]| -> (String, Vec<String>) {
        let out = hmc.rvirt(&uri, args);
        assert!(!out.status.success(), "rvirt {args:?} should fail");
        (
            String::from_utf8_lossy(&out.stderr).into_owned(),
            hmc.commands(),
        )
    };
    let (e, cmds) = fail(&["start", "vios1"]);
    assert!(
        e.contains("domain 'vios1' is already active (HMC state 'Running')"),
        "{e}"
    );
    assert_eq!(cmds, [SYS.to_string(), named("vios1"), ALL.to_string()]);
    let (e, _) = fail(&["suspend", "vios1"]);
    assert!(
        e.contains("virDomainSuspend")
            && e.contains("phyp driver (HMC 127.0.0.1, managed system SYS1)")
            && e.contains("not supported"),
        "{e}"
    );
    let (e, _) = fail(&["undefine", "vios1"]);
    assert!(e.contains("is active"), "{e}");
    let (e, cmds) = fail(&["dominfo", "nosuch"]);
    assert!(e.contains("no domain with matching name 'nosuch'"), "{e}");
    assert_eq!(cmds, [SYS.to_string(), named("nosuch")]);
    // Memory the HMC cannot size (MB) is refused naming the field, before any command.
    std::fs::write(
        &xml,
        "<domain type='phyp'><name>lp9</name><memory unit='KiB'>1000</memory><os><type>linux</type></os></domain>",
    )
    .unwrap();
    let (e, cmds) = fail(&["define", &x]);
    assert!(
        e.contains("domain/currentMemory") || e.contains("domain/memory"),
        "{e}"
    );
    assert_eq!(cmds, [SYS.to_string()]);

    // One authentication per rvirt process: every command rode the control master.
    assert_eq!(
        hmc.accepted_logins(),
        runs + 5,
        "{}",
        std::fs::read_to_string(hmc.dir.join("sshd.log")).unwrap()
    );
}

#[test]
fn refused_key_unknown_host_key_and_unknown_system() {
    eprintln!("{NOTE}");
    let Some(hmc) = Hmc::start("refused_key_unknown_host_key_and_unknown_system") else {
        return;
    };
    let err_of = |uri: &str| -> String {
        let out = hmc.rvirt(uri, &["list", "--all"]);
        assert!(!out.status.success(), "{uri} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // A key the server does not know.
    let e = err_of(&hmc.uri("SYS1", "otherkey", "&no_verify=1"));
    assert!(e.contains("authentication failed"), "{e}");
    assert!(e.contains("Permission denied (publickey)"), "{e}");
    assert!(
        e.contains(&format!("{}@127.0.0.1:{}", hmc.user, hmc.port)),
        "{e}"
    );
    assert!(hmc.commands().is_empty(), "nothing reached the HMC shell");

    // Host key checking: an empty known-hosts file refuses the server, one with its key
    // accepts it.
    let kh = hmc.dir.join("known_hosts");
    std::fs::write(&kh, "").unwrap();
    let e = err_of(&hmc.uri(
        "SYS1",
        "clientkey",
        &format!("&known_hosts={}", kh.display()),
    ));
    assert!(e.contains("Host key verification failed"), "{e}");
    let pubkey = std::fs::read_to_string(hmc.dir.join("hostkey.pub")).unwrap();
    std::fs::write(&kh, format!("[127.0.0.1]:{} {pubkey}", hmc.port)).unwrap();
    let out = hmc.rvirt(
        &hmc.uri(
            "SYS1",
            "clientkey",
            &format!("&known_hosts={}", kh.display()),
        ),
        &["domstate", "vios1"],
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "running");

    // An unknown managed system, and none named where the HMC has two.
    let e = err_of(&hmc.uri("NOPE", "clientkey", "&no_verify=1"));
    assert!(
        e.contains("managed system 'NOPE' not found on the HMC 127.0.0.1: it manages [SYS1, SYS2]"),
        "{e}"
    );
    assert_eq!(hmc.commands(), [SYS]);
    let e = err_of(&hmc.uri("", "clientkey", "&no_verify=1"));
    assert!(
        e.contains("manages [SYS1, SYS2]: name one as the URI path"),
        "{e}"
    );
    // SYS2 has no LPARs.
    let out = hmc.rvirt(
        &hmc.uri("SYS2", "clientkey", "&no_verify=1"),
        &["list", "--all", "--name"],
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
    assert_eq!(
        hmc.commands(),
        [SYS, "lssyscfg -r lpar -m SYS2 -F name,lpar_id,state"]
    );
}

/// The conformance kit (`rvirt-tck`, built with the workspace) against the private sshd
/// with the fake HMC shell. An HMC cannot suspend an LPAR, so the kit's lifecycle check
/// (start, suspend, resume, destroy) and the checks that build on it are skipped, as are
/// transient domains, which an HMC does not have; `lifecycle_over_ssh` covers the HMC's
/// own lifecycle.
#[test]
fn conformance_kit_over_ssh() {
    let test = "conformance_kit_over_ssh";
    let Some(hmc) = Hmc::start(test) else {
        return;
    };
    eprintln!("{NOTE}");
    // the test's sshd has a fresh host key: accepted without a known-hosts entry
    let uri = hmc.uri("SYS1", "clientkey", "&no_verify=1");
    let out = Command::new(built("rvirt-tck"))
        .args([
            "--uri",
            &uri,
            "--skip",
            "hv.lifecycle",
            "--skip",
            "hv.transient",
        ])
        .arg(built("librvirt_plugin_phyp.so"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.lines().any(|l| l == "PASS hv.open"), "{text}");
}

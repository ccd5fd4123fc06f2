//! The `network-bridge` plugin through rvirtd, driven by the real virsh: NAT, isolated and
//! route networks start (bridge with its address, dnsmasq, the network's own nftables
//! table), `net-destroy` leaves no bridge, dnsmasq or table behind, and an autostarted
//! network stays up across a daemon restart. The test re-executes itself under
//! `unshare -n`: everything happens in a network namespace of its own.

use super::{Daemon, missing};
use std::path::Path;
use std::process::{Command, Output};

const NAME: &str =
    "bridge_networks::virsh_runs_nat_isolated_and_route_networks_on_the_bridge_plugin";

fn virsh(uri: &str, args: &[&str]) -> Output {
    Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .expect("run virsh")
}

fn ok(uri: &str, args: &[&str]) -> String {
    let o = virsh(uri, args);
    assert!(
        o.status.success(),
        "virsh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(cmd).args(args).output().expect("run a tool");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn dnsmasq_of(root: &Path, net: &str) -> bool {
    let conf = format!("{}/run/rvirt/networks/{net}.run/{net}.conf", root.display());
    sh("pgrep", &["-f", &format!("dnsmasq --conf-file={conf}")]).0
}

fn nothing_left(root: &Path, net: &str, bridge: &str) {
    assert!(
        !sh("ip", &["link", "show", bridge]).0,
        "bridge {bridge} left behind"
    );
    assert!(
        !sh("nft", &["list", "table", "inet", &format!("rvirt_{net}")]).0,
        "nft table of {net} left behind"
    );
    assert!(!dnsmasq_of(root, net), "dnsmasq of {net} left behind");
}

#[test]
fn virsh_runs_nat_isolated_and_route_networks_on_the_bridge_plugin() {
    if missing("virsh", Command::new("virsh").arg("--version"))
        || missing("dnsmasq", Command::new("dnsmasq").arg("--version"))
        || missing("nft", Command::new("nft").arg("--version"))
    {
        return;
    }
    if std::env::var_os("RVIRT_TEST_IN_NETNS").is_none() {
        let st = Command::new("unshare")
            .arg("-n")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env("RVIRT_TEST_IN_NETNS", "1")
            .status()
            .expect("run unshare -n (util-linux)");
        assert!(st.success(), "the test failed in its network namespace");
        return;
    }
    assert!(sh("ip", &["link", "set", "lo", "up"]).0);
    let mut d = Daemon::start();
    let root = d.root.path().to_path_buf();
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let nets = [
        ("natnet", "<forward mode='nat'/>", "10.71.0.1", "virbr0"),
        ("isonet", "", "10.72.0.1", "virbr1"),
        ("routenet", "<forward mode='route'/>", "10.73.0.1", "virbr2"),
    ];
    for (name, fwd, addr, _) in nets {
        let xml = format!(
            "<network><name>{name}</name>{fwd}<ip address='{addr}' netmask='255.255.255.0'>\
             <dhcp><range start='{p}.100' end='{p}.200'/></dhcp></ip></network>",
            p = addr.rsplit_once('.').unwrap().0
        );
        let f = root.join(format!("{name}.xml"));
        std::fs::write(&f, xml).unwrap();
        ok(&uri, &["net-define", f.to_str().unwrap()]);
        ok(&uri, &["net-start", name]);
    }
    let list = ok(&uri, &["net-list", "--all"]);
    for (name, _, addr, bridge) in nets {
        assert!(list.contains(name), "{list}");
        let xml = ok(&uri, &["net-dumpxml", name]);
        assert!(xml.contains(&format!("<bridge name='{bridge}'")), "{xml}");
        assert!(ok(&uri, &["net-info", name]).contains(bridge));
        let (_, a) = sh("ip", &["-br", "addr", "show", bridge]);
        assert!(a.contains(&format!("{addr}/24")), "{a}");
        assert!(dnsmasq_of(&root, name), "dnsmasq of {name} runs");
        let (has_table, rules) = sh("nft", &["list", "table", "inet", &format!("rvirt_{name}")]);
        assert!(has_table, "{name}: {rules}");
        assert_eq!(
            rules.contains("masquerade"),
            name == "natnet",
            "{name}: {rules}"
        );
    }
    // an overlapping subnet is refused while the other network is active
    let f = root.join("overlap.xml");
    std::fs::write(
        &f,
        "<network><name>overlap</name><ip address='10.71.0.9' netmask='255.255.0.0'/></network>",
    )
    .unwrap();
    ok(&uri, &["net-define", f.to_str().unwrap()]);
    let o = virsh(&uri, &["net-start", "overlap"]);
    assert!(!o.status.success(), "an overlapping network started");
    assert!(
        !sh("ip", &["link", "show", "virbr3"]).0,
        "nothing made for it"
    );
    ok(&uri, &["net-undefine", "overlap"]);

    // destroy leaves nothing behind
    ok(&uri, &["net-destroy", "isonet"]);
    nothing_left(&root, "isonet", "virbr1");
    ok(&uri, &["net-destroy", "routenet"]);
    nothing_left(&root, "routenet", "virbr2");

    // an active network outlives the daemon; autostart runs once per host boot, as
    // libvirt's (a daemon restart does not start it)
    ok(&uri, &["net-autostart", "isonet"]);
    d.restart();
    let state = |name: &str| {
        let list = ok(&uri, &["net-list", "--all"]);
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(state("natnet"), "active", "reattached");
    assert!(dnsmasq_of(&root, "natnet"));
    assert_eq!(
        state("isonet"),
        "inactive",
        "not autostarted twice in one boot"
    );
    // a host reboot: the networks' devices and the volatile state are gone
    ok(&uri, &["net-destroy", "natnet"]);
    nothing_left(&root, "natnet", "virbr0");
    d.restart_after(|r| {
        std::fs::remove_dir_all(r.join("run/rvirt/networks")).unwrap();
    });
    assert_eq!(state("isonet"), "active", "autostarted after the reboot");
    assert_eq!(state("natnet"), "inactive");
    assert!(dnsmasq_of(&root, "isonet"));

    for (name, ..) in nets {
        if state(name) == "active" {
            ok(&uri, &["net-destroy", name]);
        }
        ok(&uri, &["net-undefine", name]);
    }
    for (name, _, _, _) in nets {
        assert!(!dnsmasq_of(&root, name), "dnsmasq of {name} left behind");
        assert!(!sh("nft", &["list", "table", "inet", &format!("rvirt_{name}")]).0);
    }
    assert!(
        !sh("ip", &["-br", "link"]).1.contains("virbr"),
        "no bridge left"
    );
}

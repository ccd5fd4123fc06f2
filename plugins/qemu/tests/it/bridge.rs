//! `<interface type='bridge'>`: the driver makes the TAP device, attaches it to the bridge
//! and QEMU inherits its descriptor. Runs in a network namespace of its own (the test
//! re-executes itself under `unshare -n`), so no host interface is touched: a bridge is
//! made there, the shared guest boots with a static address on it, the host reaches the
//! guest's MAC through the bridge, and the TAP goes away with QEMU.

use super::{guest, qemu_present, root, runtime, serial, uri, wait_for};
use std::process::Command;
use std::time::Duration;

const NAME: &str = "bridge::bridge_interfaces_get_a_tap_made_by_the_driver";

fn ip(args: &[&str]) -> String {
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn bridge_interfaces_get_a_tap_made_by_the_driver() {
    if !qemu_present() {
        return;
    }
    if rvirt_tests::rerun_in_netns(NAME) {
        return;
    }
    ip(&["link", "set", "lo", "up"]);
    ip(&["link", "add", "rvbr0", "type", "bridge"]);
    ip(&["addr", "add", "10.77.0.1/24", "dev", "rvbr0"]);
    ip(&["link", "set", "rvbr0", "up"]);

    let r = root("bridge");
    let conn = runtime().open(&uri(&r), false).unwrap();
    let g = guest();
    let xml = format!(
        "<domain type='qemu'><name>br</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
         <cmdline>console=ttyS0 quiet panic=-1 guest.ip=10.77.0.2/24</cmdline></os>\
         <devices><serial type='file'><source path='{s}'/></serial>\
         <interface type='bridge'><source bridge='rvbr0'/><model type='virtio'/></interface>\
         <interface type='bridge'><source bridge='rvbr0'/><model type='virtio'/><link state='down'/><bandwidth><inbound average='1000' peak='2000'/></bandwidth></interface>\
         </devices></domain>",
        k = g.join("vmlinux").display(),
        i = g.join("initrd.img").display(),
        s = r.join("serial.log").display(),
    );
    let mut d = conn.define_xml(&xml, 0).unwrap();
    // a MAC is given at definition, as libvirt does, and kept
    let inactive = d.get_xml_desc(0).unwrap();
    let mac = inactive
        .split("<mac address='")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .unwrap_or_else(|| panic!("no MAC assigned: {inactive}"))
        .to_string();
    assert!(mac.starts_with("52:54:00:"), "{mac}");
    let on_disk = std::fs::read_to_string(r.join("etc/qemu/br.xml")).unwrap();
    assert!(
        on_disk.contains(&mac),
        "the MAC is in the persistent definition"
    );

    d.create(0).unwrap();
    let live = d.get_xml_desc(0).unwrap();
    assert!(live.contains("<target dev='vnet0'/>"), "{live}");
    let ports = ip(&["-o", "link", "show", "master", "rvbr0"]);
    assert!(ports.contains("vnet0"), "{ports}");
    let tap = ip(&["-o", "link", "show", "vnet0"]);
    assert!(
        tap.contains(&format!("link/ether fe:{}", &mac[3..])),
        "the host side's MAC is the guest's with fe: {tap}"
    );
    wait_for("GUEST-READY", Duration::from_secs(90), || {
        serial(&r).contains("GUEST-READY")
    });
    let out = serial(&r);
    assert!(
        out.contains(&format!(
            "GUEST-NET: eth0 mac={mac} ip=10.77.0.2/24 carrier=1"
        )),
        "{out}"
    );
    // the second interface was defined with its link down: the guest sees no carrier
    let eth1 = out
        .lines()
        .find(|l| l.contains("GUEST-NET: eth1 "))
        .unwrap_or_else(|| panic!("no eth1: {out}"));
    assert!(eth1.ends_with("carrier=0"), "{eth1}");
    assert!(live.contains("<link state='down'/>"), "{live}");
    // the second interface's <bandwidth> is on its TAP (HTB on the TAP's egress)
    let class = std::process::Command::new("tc")
        .args(["class", "show", "dev", "vnet1"])
        .output()
        .unwrap();
    let class = String::from_utf8_lossy(&class.stdout);
    assert!(class.contains("rate 8Mbit ceil 16Mbit"), "{class}");
    // traffic crosses the bridge: the host learns the guest's MAC by ARP
    let sock = std::net::UdpSocket::bind("10.77.0.1:0").unwrap();
    wait_for("the guest's ARP answer", Duration::from_secs(20), || {
        let _ = sock.send_to(b"x", "10.77.0.2:9");
        ip(&["neigh", "show", "10.77.0.2"]).contains(&format!("lladdr {mac}"))
    });

    d.destroy(0).unwrap();
    let gone = Command::new("ip")
        .args(["link", "show", "vnet0"])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the TAP went away with QEMU");

    // a bridge that does not exist: a clear error, no QEMU, no TAP
    let bad = xml
        .replace("<name>br</name>", "<name>nobr</name>")
        .replace("rvbr0", "nosuchbr0");
    let mut b = conn.define_xml(&bad, 0).unwrap();
    let e = b.create(0).unwrap_err();
    assert!(
        e.to_string().contains("bridge 'nosuchbr0' does not exist"),
        "{e}"
    );
    assert!(!r.join("run/qemu/nobr.status").exists());
    assert!(!ip(&["-o", "link"]).contains("vnet"), "no TAP left behind");
    b.undefine(0).unwrap();
    d.undefine(0).unwrap();
    let _ = std::fs::remove_dir_all(&r);
}

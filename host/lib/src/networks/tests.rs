//! The network subsystem against an in-memory backend: lifecycle, persistence across a
//! "restart" (a new `Networks` on the same directories), reattach and restart from state
//! files, autostart, overlapping subnets, bad names, events, ports, leases and updates.

use super::*;
use std::collections::HashSet;

/// A backend whose "running" networks are a set of bridge names; it records every call.
#[derive(Default)]
pub(crate) struct MemNet {
    running: Mutex<HashSet<String>>,
    calls: Mutex<Vec<String>>,
    plugged: Mutex<Vec<String>>,
}

fn bridge(net: &str) -> String {
    Network::parse(net)
        .unwrap()
        .bridge_name()
        .unwrap_or("none")
        .to_string()
}

impl MemNet {
    fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }
    fn record(&self, c: String) {
        lock(&self.calls).push(c);
    }
}

impl NetBackend for MemNet {
    fn start_network(&self, net: &str, state_dir: &str) -> Result<String> {
        let b = bridge(net);
        self.record(format!("start {b}"));
        if !state_dir.is_empty() {
            assert!(Path::new(state_dir).is_dir(), "the run directory exists");
        }
        lock(&self.running).insert(b.clone());
        Ok(format!(
            "<network><bridge name='{b}' zone='mem'/></network>"
        ))
    }
    fn stop_network(&self, net: &str, _state_dir: &str) -> Result<()> {
        let b = bridge(net);
        self.record(format!("stop {b}"));
        lock(&self.running).remove(&b);
        Ok(())
    }
    fn check_network(&self, net: &str, _state_dir: &str) -> Result<bool> {
        let b = bridge(net);
        self.record(format!("check {b}"));
        Ok(lock(&self.running).contains(&b))
    }
    fn plug_port(&self, net: &str, port: &str) -> Result<PortPlug> {
        lock(&self.plugged).push(port.to_string());
        Ok(PortPlug {
            plug_type: "network".into(),
            bridge: bridge(net),
            ..PortPlug::default()
        })
    }
    fn unplug_port(&self, _net: &str, port: &str) -> Result<()> {
        let mac = |x: &str| {
            Element::parse(x).ok().and_then(|e| {
                e.child("mac")
                    .and_then(|m| m.attr("address"))
                    .map(str::to_string)
            })
        };
        lock(&self.plugged).retain(|p| mac(p) != mac(port));
        Ok(())
    }
    fn dhcp_leases(&self, net: &str, mac: &str) -> Result<Vec<Lease>> {
        let all = vec![
            Lease {
                iface: bridge(net),
                mac: "52:54:00:00:00:01".into(),
                ipaddr: "192.168.50.10".into(),
                prefix: 24,
                hostname: "one".into(),
                ..Lease::default()
            },
            Lease {
                iface: bridge(net),
                mac: "52:54:00:00:00:02".into(),
                ipaddr: "192.168.50.11".into(),
                prefix: 24,
                ..Lease::default()
            },
        ];
        Ok(all
            .into_iter()
            .filter(|l| mac.is_empty() || l.mac == mac)
            .collect())
    }
    fn update(
        &self,
        net: &str,
        command: u32,
        section: u32,
        _parent_index: i32,
        _xml: &str,
        _flags: u32,
    ) -> Result<()> {
        self.record(format!("update {} {command} {section}", bridge(net)));
        Ok(())
    }
}

struct Table(Arc<MemNet>);

impl NetBackendResolver for Table {
    fn backend(&self, mode: &str) -> Result<Arc<dyn NetBackend>> {
        match mode {
            "nat" | "isolated" | "route" => Ok(self.0.clone()),
            m => Err(crate::network_bind::no_backend(m, "the test table")),
        }
    }
}

fn net_xml(name: &str, subnet: &str) -> String {
    format!(
        "<network><name>{name}</name><forward mode='nat'/><ip address='{subnet}.1' netmask='255.255.255.0'><dhcp><range start='{subnet}.2' end='{subnet}.254'/></dhcp></ip></network>"
    )
}

fn open(dir: Option<&Path>, b: &Arc<MemNet>) -> Networks {
    Networks::open(
        dir.map(|d| NetworkDirs {
            config: d.join("etc"),
            state: d.join("run"),
        }),
        Arc::new(Table(b.clone())),
    )
    .unwrap()
}

fn events(n: &Networks) -> Arc<Mutex<Vec<(String, i32)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    n.subscribe(Arc::new(move |e: &NetworkEvent| {
        lock(&s).push((e.name.clone(), e.event))
    }));
    seen
}

#[test]
fn define_start_destroy_undefine_with_events_and_assigned_bridge() {
    let b = Arc::new(MemNet::default());
    let n = open(None, &b);
    let seen = events(&n);
    let id = n.define(&net_xml("a", "192.168.50"), 0).unwrap();
    assert!(!id.uuid.is_nil());
    // libvirt names a bridge and a MAC at define time for a bridged mode.
    assert_eq!(n.bridge_name("a").unwrap(), "virbr0");
    let x = n.xml("a", 0).unwrap();
    assert!(x.contains("<mac address='52:54:00:"), "{x}");
    assert!(!n.is_active("a").unwrap());
    assert!(n.is_persistent("a").unwrap());
    n.create("a").unwrap();
    assert!(n.is_active("a").unwrap());
    // The live XML has what the backend added; the inactive one does not.
    assert!(n.xml("a", 0).unwrap().contains("zone='mem'"));
    assert!(!n.xml("a", XML_INACTIVE).unwrap().contains("zone='mem'"));
    let e = n.create("a").unwrap_err();
    assert_eq!(e.code(), ErrorCode::OperationInvalid as i32);
    // A second network gets the next bridge.
    n.define(&net_xml("b", "192.168.51"), 0).unwrap();
    assert_eq!(n.bridge_name("b").unwrap(), "virbr1");
    assert_eq!(
        n.list(list_flags::ACTIVE)
            .unwrap()
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(n.list(list_flags::INACTIVE).unwrap().len(), 1);
    assert_eq!(n.list(0).unwrap().len(), 2);
    assert!(n.list(1 << 10).is_err());
    n.destroy("a").unwrap();
    assert!(!n.is_active("a").unwrap());
    n.undefine("a").unwrap();
    assert_eq!(
        n.lookup_by_name("a").unwrap_err().code(),
        ErrorCode::NoNetwork as i32
    );
    assert_eq!(b.calls(), ["start virbr0", "stop virbr0"]);
    assert_eq!(
        *lock(&seen),
        [
            ("a".to_string(), net_event::DEFINED),
            ("a".to_string(), net_event::STARTED),
            ("b".to_string(), net_event::DEFINED),
            ("a".to_string(), net_event::STOPPED),
            ("a".to_string(), net_event::UNDEFINED),
        ]
    );
}

#[test]
fn transient_networks_vanish_on_destroy_and_undefine_of_an_active_one_keeps_it_running() {
    let b = Arc::new(MemNet::default());
    let n = open(None, &b);
    n.create_xml(&net_xml("t", "10.9.0"), 0).unwrap();
    assert!(n.is_active("t").unwrap());
    assert!(!n.is_persistent("t").unwrap());
    assert!(n.set_autostart("t", true).is_err());
    n.destroy("t").unwrap();
    assert!(n.lookup_by_name("t").is_err());

    n.define(&net_xml("p", "10.9.1"), 0).unwrap();
    n.create("p").unwrap();
    n.undefine("p").unwrap();
    assert!(n.is_active("p").unwrap());
    assert!(!n.is_persistent("p").unwrap());
    n.destroy("p").unwrap();
    assert!(n.lookup_by_name("p").is_err());
}

#[test]
fn bad_names_and_duplicates_are_refused() {
    let b = Arc::new(MemNet::default());
    let n = open(None, &b);
    for bad in ["a/b", "..", "."] {
        let e = n.define(&net_xml(bad, "10.1.1"), 0).unwrap_err();
        assert_eq!(e.code(), ErrorCode::XmlError as i32, "{bad}: {e}");
        assert!(e.to_string().contains("name"), "{bad}: {e}");
    }
    let id = n.define(&net_xml("dup", "10.1.2"), 0).unwrap();
    let other_uuid = net_xml("dup", "10.1.2").replace(
        "<name>dup</name>",
        "<name>dup</name><uuid>8e3c4b1e-2c51-4c7e-9a07-4a1c9d2b7f01</uuid>",
    );
    assert!(n.define(&other_uuid, 0).is_err());
    let same_uuid_other_name = net_xml("dup2", "10.1.3").replace(
        "<name>dup2</name>",
        &format!("<name>dup2</name><uuid>{}</uuid>", id.uuid),
    );
    assert!(n.define(&same_uuid_other_name, 0).is_err());
    assert!(n.create_xml(&net_xml("dup", "10.1.2"), 0).is_err());
    // A forward mode nothing serves is named.
    let e = n
        .define(
            "<network><name>x</name><forward mode='hostdev'/></network>",
            0,
        )
        .unwrap_err();
    assert!(e.to_string().contains("forward mode 'hostdev'"), "{e}");
    assert!(n.define("<pool/>", 0).is_err());
}

#[test]
fn overlapping_subnets_with_an_active_network_are_refused_at_start() {
    let b = Arc::new(MemNet::default());
    let n = open(None, &b);
    n.define(&net_xml("one", "192.168.60"), 0).unwrap();
    n.define(
        "<network><name>two</name><ip address='192.168.0.1' prefix='16'/></network>",
        0,
    )
    .unwrap();
    n.create("one").unwrap();
    let e = n.create("two").unwrap_err();
    assert_eq!(e.code(), ErrorCode::OperationInvalid as i32);
    assert!(
        e.to_string().contains("overlaps active network 'one'"),
        "{e}"
    );
    n.destroy("one").unwrap();
    n.create("two").unwrap();
    assert!(n.is_active("two").unwrap());
    // Without <forward>: the `isolated` backend.
    assert_eq!(n.bridge_name("two").unwrap(), "virbr1");
}

#[test]
fn definitions_persist_and_active_networks_are_reattached_or_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(MemNet::default());
    {
        let n = open(Some(dir.path()), &b);
        n.define(&net_xml("keep", "10.2.0"), 0).unwrap();
        n.define(&net_xml("gone", "10.2.1"), 0).unwrap();
        n.define(&net_xml("auto", "10.2.2"), 0).unwrap();
        n.set_autostart("auto", true).unwrap();
        n.create("keep").unwrap();
        n.create("gone").unwrap();
        n.create_xml(&net_xml("trans", "10.2.3"), 0).unwrap();
        let port = n
            .port_create(
                "keep",
                "<networkport><owner><name>vm</name><uuid>11111111-2222-3333-4444-555555555555</uuid></owner><mac address='52:54:00:aa:bb:cc'/></networkport>",
                0,
            )
            .unwrap();
        assert_eq!(n.port_list("keep", 0).unwrap(), [port]);
    }
    let cfg = dir.path().join("etc/keep.xml");
    let mode = std::fs::metadata(&cfg).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.mode() & 0o777, 0o600, "definitions are owner-only");
    // Someone removed the bridge of `gone` while no process ran.
    lock(&b.running).remove("virbr1");
    let n = open(Some(dir.path()), &b);
    assert!(n.is_active("keep").unwrap());
    assert!(n.is_active("gone").unwrap(), "restarted, as libvirt does");
    assert!(n.is_active("trans").unwrap());
    assert!(!n.is_persistent("trans").unwrap());
    // Autostart ran with the first process of this boot only.
    assert!(!n.is_active("auto").unwrap());
    assert_eq!(n.port_list("keep", 0).unwrap().len(), 1);
    let calls = b.calls();
    assert!(calls.contains(&"start virbr1".to_string()), "{calls:?}");
    assert_eq!(
        calls.iter().filter(|c| *c == "start virbr0").count(),
        1,
        "keep was reattached, not restarted: {calls:?}"
    );
    drop(n);
    // A new boot: the volatile state is gone, autostart runs once.
    std::fs::remove_dir_all(dir.path().join("run")).unwrap();
    lock(&b.running).clear();
    let n = open(Some(dir.path()), &b);
    assert!(n.is_active("auto").unwrap());
    assert!(!n.is_active("keep").unwrap());
    assert!(n.lookup_by_name("trans").is_err());
    n.destroy("auto").unwrap();
    drop(n);
    let n = open(Some(dir.path()), &b);
    assert!(!n.is_active("auto").unwrap(), "autostart is once per boot");
}

#[test]
fn ports_plug_list_and_unplug() {
    let b = Arc::new(MemNet::default());
    let n = open(None, &b);
    n.define(&net_xml("p", "10.3.0"), 0).unwrap();
    let port = "<networkport><uuid>5b5b5b5b-1111-2222-3333-444444444444</uuid><owner><name>vm</name><uuid>11111111-2222-3333-4444-555555555555</uuid></owner><mac address='52:54:00:aa:bb:cc'/></networkport>";
    // Ports need an active network.
    assert!(n.port_create("p", port, 0).is_err());
    n.create("p").unwrap();
    let id = n.port_create("p", port, 0).unwrap();
    assert_eq!(id.uuid.to_string(), "5b5b5b5b-1111-2222-3333-444444444444");
    assert_eq!(n.port_create("p", port, 0).unwrap_err().code(), 106);
    let x = n.port_xml("p", id.uuid, 0).unwrap();
    assert!(x.contains("<plug type='network' bridge='virbr0'/>"), "{x}");
    assert!(n.xml("p", 0).unwrap().contains("connections='1'"));
    assert_eq!(lock(&b.plugged).len(), 1);
    assert!(n.port_create("p", "<networkport/>", 0).is_err());
    n.port_delete("p", id.uuid, 0).unwrap();
    assert!(lock(&b.plugged).is_empty());
    assert_eq!(n.port_lookup("p", id.uuid).unwrap_err().code(), 107);
    // Destroying a network with ports is allowed, as in libvirt; the ports of its
    // (still running) guests are plugged again when it starts.
    n.port_create("p", port, 0).unwrap();
    n.destroy("p").unwrap();
    assert!(
        n.port_list("p", 0).is_err(),
        "an inactive network lists no ports"
    );
    n.create("p").unwrap();
    assert_eq!(n.port_list("p", 0).unwrap().len(), 1);
    assert_eq!(lock(&b.plugged).len(), 2, "plugged once more at start");
    // A guest that stops while its network is down gives its port back all the same.
    n.destroy("p").unwrap();
    n.port_delete("p", id.uuid, 0).unwrap();
    n.create("p").unwrap();
    assert!(n.port_list("p", 0).unwrap().is_empty());
}

#[test]
fn ports_of_a_stopped_network_survive_a_host_restart_and_go_with_undefine() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(MemNet::default());
    let port = "<networkport><uuid>6b5b5b5b-1111-2222-3333-444444444444</uuid><owner><name>vm</name><uuid>11111111-2222-3333-4444-555555555555</uuid></owner><mac address='52:54:00:aa:bb:cd'/></networkport>";
    {
        let n = open(Some(dir.path()), &b);
        n.define(&net_xml("q", "10.4.0"), 0).unwrap();
        n.create("q").unwrap();
        n.port_create("q", port, 0).unwrap();
        n.destroy("q").unwrap();
    }
    let ports_dir = dir.path().join("run/q.ports");
    assert!(ports_dir.is_dir(), "kept for the restart");
    {
        let n = open(Some(dir.path()), &b);
        n.create("q").unwrap();
        let ports = n.port_list("q", 0).unwrap();
        assert_eq!(ports.len(), 1);
        let x = n.port_xml("q", ports[0].uuid, 0).unwrap();
        assert!(
            x.contains("bridge='virbr0'") && x.matches("<plug").count() == 1,
            "{x}"
        );
        n.destroy("q").unwrap();
        n.undefine("q").unwrap();
    }
    assert!(!ports_dir.exists(), "undefine forgets the ports");
    assert!(!dir.path().join("run/q.run").exists());
}

#[test]
fn leases_and_updates() {
    let b = Arc::new(MemNet::default());
    let n = open(None, &b);
    n.define(&net_xml("u", "192.168.50"), 0).unwrap();
    assert!(n.dhcp_leases("u", None, 0).is_err(), "inactive");
    n.create("u").unwrap();
    assert_eq!(n.dhcp_leases("u", None, 0).unwrap().len(), 2);
    let one = n.dhcp_leases("u", Some("52:54:00:00:00:01"), 0).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].hostname, "one");
    let host = "<host mac='52:54:00:00:00:09' name='nine' ip='192.168.50.9'/>";
    n.update(
        "u",
        update::ADD_LAST,
        update::SECTION_IP_DHCP_HOST,
        -1,
        host,
        update::AFFECT_LIVE | update::AFFECT_CONFIG,
    )
    .unwrap();
    assert!(n.xml("u", 0).unwrap().contains("name='nine'"));
    assert!(n.xml("u", XML_INACTIVE).unwrap().contains("name='nine'"));
    assert!(
        n.update(
            "u",
            update::ADD_LAST,
            update::SECTION_IP_DHCP_HOST,
            -1,
            host,
            0
        )
        .is_err(),
        "a duplicate host"
    );
    n.update(
        "u",
        update::DELETE,
        update::SECTION_IP_DHCP_HOST,
        -1,
        "<host mac='52:54:00:00:00:09'/>",
        0,
    )
    .unwrap();
    assert!(!n.xml("u", 0).unwrap().contains("name='nine'"));
    assert!(n.xml("u", XML_INACTIVE).unwrap().contains("name='nine'"));
    let e = n
        .update("u", update::ADD_LAST, 8, -1, "<pf dev='eth0'/>", 0)
        .unwrap_err();
    assert!(e.is_no_support(), "{e}");
    assert!(
        b.calls()
            .iter()
            .any(|c| c == &format!("update virbr0 3 {}", update::SECTION_IP_DHCP_HOST))
    );
}

struct Nothing;

impl NetBackendResolver for Nothing {
    fn backend(&self, mode: &str) -> Result<Arc<dyn NetBackend>> {
        Err(crate::network_bind::no_backend(mode, "nothing"))
    }
}

#[test]
fn an_active_network_whose_backend_is_missing_is_kept_active() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(MemNet::default());
    {
        let n = open(Some(dir.path()), &b);
        n.define(&net_xml("kept", "10.4.0"), 0).unwrap();
        n.create("kept").unwrap();
    }
    let dirs = NetworkDirs {
        config: dir.path().join("etc"),
        state: dir.path().join("run"),
    };
    let n = Networks::open(Some(dirs), Arc::new(Nothing)).unwrap();
    assert!(n.is_active("kept").unwrap());
    assert!(
        dir.path().join("run/kept.xml").is_file(),
        "the state file stays"
    );
    // Stopping it needs the backend, and says which one is missing.
    let e = n.destroy("kept").unwrap_err();
    assert!(e.to_string().contains("forward mode 'nat'"), "{e}");
}

#[test]
fn port_parameters_read_and_change_the_port_bandwidth() {
    let b = Arc::new(MemNet::default());
    let n = open(None, &b);
    n.define(&net_xml("bw", "10.5.0"), 0).unwrap();
    n.create("bw").unwrap();
    let bad = "<networkport><mac address='52:54:00:aa:bb:01'/><bandwidth><inbound peak='5'/></bandwidth></networkport>";
    let e = n.port_create("bw", bad, 0).unwrap_err();
    assert!(
        e.to_string()
            .contains("networkport/bandwidth/inbound/@average"),
        "{e}"
    );
    let id = n
        .port_create(
            "bw",
            "<networkport><mac address='52:54:00:aa:bb:01'/></networkport>",
            0,
        )
        .unwrap();
    let p = n.port_parameters("bw", id.uuid, 0).unwrap();
    assert_eq!(p.len(), 7);
    assert!(p.iter().all(|(_, v)| *v == 0), "{p:?}");
    n.port_set_parameters("bw", id.uuid, &[("inbound.average".into(), 100)], 0)
        .unwrap();
    let x = n.port_xml("bw", id.uuid, 0).unwrap();
    assert!(
        x.contains("<bandwidth>\n    <inbound average='100'/>\n  </bandwidth>"),
        "{x}"
    );
    assert!(
        lock(&b.plugged).last().unwrap().contains("average='100'"),
        "plugged again with it"
    );
    let e = n
        .port_set_parameters("bw", id.uuid, &[("inbound.nope".into(), 1)], 0)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArg as i32);
    assert!(e.to_string().contains("inbound.nope"), "{e}");
    assert!(
        n.port_set_parameters("bw", id.uuid, &[], 1).is_err(),
        "unknown flag"
    );
    let p = n.port_parameters("bw", id.uuid, 0).unwrap();
    assert!(p.contains(&("inbound.average".to_string(), 100)), "{p:?}");
}

#[test]
fn updates_of_dns_records_port_groups_and_forward_interfaces() {
    let b = Arc::new(MemNet::default());
    let n = open(None, &b);
    n.define(&net_xml("u", "10.6.0"), 0).unwrap();
    let cfg = update::AFFECT_CONFIG;
    let add = update::ADD_LAST;
    n.update(
        "u",
        add,
        update::SECTION_DNS_TXT,
        -1,
        "<txt name='a' value='b'/>",
        cfg,
    )
    .unwrap();
    let e = n
        .update(
            "u",
            add,
            update::SECTION_DNS_TXT,
            -1,
            "<txt name='a' value='c'/>",
            cfg,
        )
        .unwrap_err();
    assert!(e.to_string().contains("existing dns txt entry"), "{e}");
    n.update(
        "u",
        update::MODIFY,
        update::SECTION_DNS_TXT,
        -1,
        "<txt name='a' value='c'/>",
        cfg,
    )
    .unwrap();
    n.update(
        "u",
        add,
        update::SECTION_DNS_SRV,
        -1,
        "<srv service='ldap' protocol='tcp'/>",
        cfg,
    )
    .unwrap();
    n.update(
        "u",
        update::ADD_FIRST,
        update::SECTION_DNS_HOST,
        -1,
        "<host ip='10.6.0.9'><hostname>h</hostname></host>",
        cfg,
    )
    .unwrap();
    n.update(
        "u",
        add,
        update::SECTION_PORTGROUP,
        -1,
        "<portgroup name='pg'/>",
        cfg,
    )
    .unwrap();
    n.update(
        "u",
        add,
        update::SECTION_FORWARD_INTERFACE,
        -1,
        "<interface dev='eth9'/>",
        cfg,
    )
    .unwrap();
    let x = n.xml("u", 0).unwrap();
    for want in [
        "<txt name='a' value='c'/>",
        "<srv service='ldap' protocol='tcp'/>",
        "<hostname>h</hostname>",
        "<portgroup name='pg'/>",
        "<interface dev='eth9'/>",
    ] {
        assert!(x.contains(want), "{want}: {x}");
    }
    // wrong element, unknown section, missing entry
    let e = n
        .update("u", add, update::SECTION_DNS_TXT, -1, "<srv/>", cfg)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::XmlError as i32, "{e}");
    assert!(
        n.update("u", add, 1, -1, "<bridge/>", cfg)
            .unwrap_err()
            .is_no_support()
    );
    let e = n
        .update(
            "u",
            update::DELETE,
            update::SECTION_PORTGROUP,
            -1,
            "<portgroup name='x'/>",
            cfg,
        )
        .unwrap_err();
    assert!(e.to_string().contains("matching portgroup entry"), "{e}");
    n.update(
        "u",
        update::DELETE,
        update::SECTION_DNS_HOST,
        -1,
        "<host><hostname>h</hostname></host>",
        cfg,
    )
    .unwrap();
    assert!(!n.xml("u", 0).unwrap().contains("<hostname>h</hostname>"));
}

//! Data-driven conformance tests over libvirt's test-data corpus.
//!
//! The corpus is found via `$RVIRT_CORPUS`, else `<workspace root>/../shared/corpus`.
//! When it is absent the tests print loudly that they did not run and pass.
//!
//! `RVIRT_WRITE_COMPAT=<path>` additionally writes the per-directory pass
//! rates as markdown to that file (see docs/compat.md for the command).

use rvirt_xml::compat::{self, DirReport};
use std::path::Path;

fn corpus() -> Option<std::path::PathBuf> {
    let c = compat::locate_corpus(Path::new(env!("CARGO_MANIFEST_DIR")));
    if c.is_none() {
        eprintln!(
            "!!!!!!!! rvirt-xml corpus tests DID NOT RUN: corpus not found (set RVIRT_CORPUS) !!!!!!!!"
        );
    }
    c
}

fn show(r: &DirReport) {
    eprintln!(
        "{:<28} {:<45} {:>4}/{:<4} {:.1}%",
        r.dir,
        r.what,
        r.passed(),
        r.total(),
        r.rate() * 100.0
    );
    if std::env::var_os("RVIRT_VERBOSE").is_some() {
        for x in r.results.iter().filter(|x| !x.ok) {
            eprintln!("    FAIL {}: {}", x.case, x.detail);
        }
    }
}

/// Asserts the floor on the developer side of the corpus; cases of the
/// hold-out side (when present) are reported, not asserted.
fn require(r: &DirReport, min_rate: f64) {
    show(r);
    let dev = r.side(false);
    let held = r.side(true);
    if !held.results.is_empty() {
        eprintln!(
            "{:<28} {:<45} {:>4}/{:<4} {:.1}%  (hold-out side, reported only)",
            held.dir,
            held.what,
            held.passed(),
            held.total(),
            held.rate() * 100.0
        );
    }
    let fails: Vec<String> = dev
        .results
        .iter()
        .filter(|x| !x.ok)
        .map(|x| format!("{}: {}", x.case, x.detail))
        .collect();
    assert!(
        dev.rate() >= min_rate,
        "{} below {:.0}%: {}/{}\n{}",
        dev.dir,
        min_rate * 100.0,
        dev.passed(),
        dev.total(),
        fails.join("\n")
    );
}

#[test]
fn generic_roundtrip() {
    let Some(c) = corpus() else { return };
    let (a, b) = compat::run_domain_roundtrip(
        &c.join("genericxml2xmlindata"),
        &c.join("genericxml2xmloutdata"),
        rvirt_xml::FormatOptions {
            inactive: false,
            secure: true,
        },
    );
    require(&a, 1.0);
    require(&b, 1.0);
}

#[test]
fn network_roundtrip() {
    let Some(c) = corpus() else { return };
    let (a, b) = compat::run_network(&c.join("networkxml2xmlin"), &c.join("networkxml2xmlout"));
    require(&a, 1.0);
    require(&b, 1.0);
}

#[test]
fn pool_roundtrip() {
    let Some(c) = corpus() else { return };
    let (a, b) = compat::run_pool(
        &c.join("storagepoolxml2xmlin"),
        &c.join("storagepoolxml2xmlout"),
    );
    require(&a, 1.0);
    require(&b, 1.0);
}

#[test]
fn volume_roundtrip() {
    let Some(c) = corpus() else { return };
    let (a, b) = compat::run_volume(
        &c.join("storagevolxml2xmlin"),
        &c.join("storagevolxml2xmlout"),
        &c.join("storagepoolxml2xmlin"),
    );
    require(&a, 1.0);
    require(&b, 1.0);
}

#[test]
fn lxc_roundtrip() {
    let Some(c) = corpus() else { return };
    let (a, b) = compat::run_domain_roundtrip(
        &c.join("lxcxml2xmldata"),
        &c.join("lxcxml2xmloutdata"),
        rvirt_xml::FormatOptions {
            inactive: false,
            secure: true,
        },
    );
    require(&a, 1.0);
    require(&b, 1.0);
}

#[test]
fn qemu_inputs() {
    let Some(c) = corpus() else { return };
    require(&compat::run_qemu(&c.join("qemuxmlconfdata")), 0.97);
}

#[test]
fn compat_report() {
    let Some(c) = corpus() else { return };
    let Some(out) = std::env::var_os("RVIRT_WRITE_COMPAT") else {
        return;
    };
    let reports = compat::run_all(&c);
    let table = format!(
        "{}\n### Failing cases\n{}",
        compat::markdown(&reports),
        compat::markdown_failures(&reports)
    );
    let path = Path::new(&out);
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let marker = "<!-- compat-table -->";
    let text = match old.split_once(marker) {
        Some((head, _)) => format!("{head}{marker}\n{table}"),
        None => format!("{old}\n{marker}\n{table}"),
    };
    std::fs::write(path, text).expect("write compat report");
}

#[test]
fn other_domain_inputs_parse() {
    let Some(c) = corpus() else { return };
    for d in [
        "bhyvexml2argvdata",
        "xlconfigdata",
        "xml2vmxdata",
        "vmx2xmldata",
    ] {
        show(&compat::run_parse_only(
            &c.join(d),
            "domain xml parses + idempotent format",
        ));
    }
    require(
        &compat::run_parse_only(
            &c.join("qemuxmlconfdata"),
            "qemu inputs parse + idempotent format",
        ),
        0.9,
    );
}

#[test]
fn formatted_fixpoints() {
    let Some(c) = corpus() else { return };
    // the VMware driver has no boot order, so it adds no <boot dev='hd'/>
    for (d, no_boot) in [("vmx2xmldata", true), ("xlconfigdata", false)] {
        show(&compat::run_formatted_fixpoint(
            &c.join(d),
            "libvirt-formatted xml is a fixpoint",
            no_boot,
        ));
    }
}

#[test]
fn qemu_parse_errors_informational() {
    let Some(c) = corpus() else { return };
    show(&compat::run_qemu_parse_errors(&c.join("qemuxmlconfdata")));
}

// ---------------------------------------------------------------------------
// Stable stand-in for the cargo-fuzz target (nightly is not available here):
// random mutations of corpus inputs, asserting no panic and idempotent
// formatting of whatever still parses.

mod mutation {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rvirt_xml::{Domain, Element, FormatOptions, Network, Node, StoragePool, StorageVolume};

    const BUILTIN: &[&str] = &[
        "<domain type='kvm'><name>a</name><memory unit='MiB'>64</memory><vcpu current='1'>2</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type></os><devices><disk type='file' device='disk'>\
         <source file='/x.img'/><target dev='vda' bus='virtio'/><address type='pci' bus='0' slot='4'/></disk>\
         <interface type='network'><source network='default'/></interface><graphics type='vnc' listen='0.0.0.0'/>\
         <video><model type='vga'/></video><controller type='usb' model='ich9-ehci1'/>\
         <controller type='usb' model='ich9-uhci1'/></devices></domain>",
        "<network><name>n</name><forward dev='eth0'/><bridge name='br0'/><ip address='10.0.0.1' prefix='24'>\
         <dhcp><range start='10.0.0.2' end='10.0.0.9'/></dhcp></ip></network>",
        "<pool type='logical'><name>p</name><source><name>vg</name></source></pool>",
        "<volume><name>v</name><capacity unit='G'>1</capacity><target><format type='qcow2'/><features/></target></volume>",
    ];

    const JUNK: &[&str] = &[
        "",
        "-1",
        "0",
        "0x",
        "99999999999999999999999",
        "a",
        "&amp;",
        "<",
        "'",
        "\"",
        "yes",
        "no",
        "0-3,^2",
        "^",
        "1-",
        "0x1F",
        "virtio",
        "KiB",
        "zz",
        "/",
        "//a//",
        "\u{fffd}",
        " ",
        "-2",
        "none",
        "auto",
        "static",
        "on",
        "off",
        "1.5",
        "0x10",
        "4294967296",
        "pci",
        "usb",
        "drive",
        "bind",
        "connect",
        "unix",
        "tcp",
        "serial",
        "0,^0",
        "both",
        "restrictive",
    ];

    fn inputs() -> Vec<String> {
        let mut v: Vec<String> = BUILTIN.iter().map(|s| s.to_string()).collect();
        if let Some(c) =
            rvirt_xml::compat::locate_corpus(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
        {
            for d in [
                "genericxml2xmlindata",
                "networkxml2xmlin",
                "storagepoolxml2xmlin",
                "storagevolxml2xmlin",
                "qemuxmlconfdata",
            ] {
                let Ok(rd) = std::fs::read_dir(c.join(d)) else {
                    continue;
                };
                let mut files: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
                files.sort();
                for (i, f) in files.iter().enumerate() {
                    // every input of the small directories, a sample of the big one
                    if f.extension().is_some_and(|e| e == "xml")
                        && (d != "qemuxmlconfdata" || i % 7 == 0)
                        && let Ok(t) = std::fs::read_to_string(f)
                    {
                        v.push(t);
                    }
                }
            }
        }
        v
    }

    fn count(e: &Element) -> usize {
        1 + e.elements().map(count).sum::<usize>()
    }

    /// Mutates the n-th element (pre-order) of the tree.
    fn mutate_nth(e: &mut Element, n: &mut usize, rng: &mut StdRng) -> bool {
        if *n == 0 {
            match rng.random_range(0..6) {
                0 => {
                    // junk into an attribute
                    let len = e.attrs().len();
                    if len > 0 {
                        let i = rng.random_range(0..len);
                        let j = JUNK[rng.random_range(0..JUNK.len())];
                        e.attrs_mut()[i].1 = j.to_string();
                    }
                }
                1 => {
                    let j = JUNK[rng.random_range(0..JUNK.len())];
                    e.set_text(j);
                }
                2 => {
                    let len = e.nodes().len();
                    if len > 0 {
                        e.nodes_mut().remove(rng.random_range(0..len));
                    }
                }
                3 => {
                    let len = e.nodes().len();
                    if len > 0 {
                        let i = rng.random_range(0..len);
                        let dup = e.nodes()[i].clone();
                        e.nodes_mut().insert(i, dup);
                    }
                }
                4 => {
                    let len = e.attrs().len();
                    if len > 0 {
                        e.attrs_mut().remove(rng.random_range(0..len));
                    }
                }
                _ => {
                    let len = e.nodes().len();
                    if len > 1 {
                        let i = rng.random_range(0..len);
                        let j = rng.random_range(0..len);
                        e.nodes_mut().swap(i, j);
                    }
                }
            }
            return true;
        }
        *n -= 1;
        for c in e.nodes_mut() {
            if let Node::Element(c) = c
                && mutate_nth(c, n, rng)
            {
                return true;
            }
        }
        false
    }

    fn check(text: &str) {
        let opts = FormatOptions {
            inactive: true,
            secure: true,
        };
        if let Ok(d) = Domain::parse(text) {
            let once = d.to_xml(&opts);
            let again = Domain::parse(&once)
                .unwrap_or_else(|e| panic!("formatted domain does not parse: {e}\n{once}"));
            assert_eq!(
                again.to_xml(&opts),
                once,
                "domain formatting not idempotent"
            );
        }
        if let Ok(n) = Network::parse(text) {
            let once = n.to_xml(&opts);
            let again = Network::parse(&once)
                .unwrap_or_else(|e| panic!("formatted network does not parse: {e}\n{once}"));
            assert_eq!(
                again.to_xml(&opts),
                once,
                "network formatting not idempotent"
            );
        }
        let pool = StoragePool::parse(text).ok();
        if let Some(p) = &pool {
            let once = p.to_xml(&opts);
            let again = StoragePool::parse(&once)
                .unwrap_or_else(|e| panic!("formatted pool does not parse: {e}\n{once}"));
            assert_eq!(again.to_xml(&opts), once, "pool formatting not idempotent");
        }
        if let Ok(v) = StorageVolume::parse(text, pool.as_ref()) {
            let _ = v.to_xml(&opts);
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let seed: u64 = std::env::var("RVIRT_MUTATION_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed);
        let rounds: usize = std::env::var("RVIRT_MUTATION_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2);
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs = inputs();
        let mut checked = 0usize;
        for text in &inputs {
            // byte-level: truncations and junk splices
            for _ in 0..rounds {
                let mut bytes = text.as_bytes().to_vec();
                if bytes.is_empty() {
                    break;
                }
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => bytes.truncate(at),
                    1 => {
                        let j = JUNK[rng.random_range(0..JUNK.len())];
                        bytes.splice(at..at, j.bytes());
                    }
                    _ => {
                        let end = (at + rng.random_range(1..16)).min(bytes.len());
                        bytes.drain(at..end);
                    }
                }
                check(&String::from_utf8_lossy(&bytes));
                checked += 1;
            }
            // tree-level: structured mutations keep the document well-formed
            let Ok(tree) = Element::parse(text) else {
                continue;
            };
            for _ in 0..rounds * 2 {
                let mut t = tree.clone();
                for _ in 0..rng.random_range(1..4) {
                    let mut n = rng.random_range(0..count(&t));
                    mutate_nth(&mut t, &mut n, &mut rng);
                }
                check(&t.to_xml_string());
                checked += 1;
            }
        }
        eprintln!("mutation test: {checked} mutated documents checked (seed {seed:#x})");
    }
}

#[test]
fn qemu_other_arch_informational() {
    let Some(c) = corpus() else { return };
    show(&compat::run_qemu_other_arch(&c.join("qemuxmlconfdata")));
}

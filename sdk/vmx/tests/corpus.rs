//! libvirt's vmx2xml and xml2vmx test data (`../shared/corpus` or `$RVIRT_CORPUS`), both
//! directions. Fails when the corpus is absent.
//!
//! * vmx → XML: each `vmx2xmldata/NAME.vmx` is converted within the datastore context
//!   libvirt's test uses (the VM in `[datastore] directory`, every datastore known but
//!   one named `missing`) and compared with `NAME.xml` as element trees (layout
//!   whitespace aside); a `.vmx` without `.xml` must fail.
//! * XML → vmx: each `xml2vmxdata/xml2vmx-NAME.xml` is converted with the virtual
//!   hardware version the case is run with (libvirt's test passes it as an argument; here
//!   it is read from the expected file) and compared with `xml2vmx-NAME.vmx` entry by
//!   entry, keys case-insensitively; the order is reported separately.

use rvirt_vmx::{Context, Vmx, vmx_text_to_xml, xml_to_vmx};
use rvirt_xml::{Element, Node};
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    if let Ok(p) = std::env::var("RVIRT_CORPUS") {
        let p = PathBuf::from(p);
        assert!(
            p.is_dir(),
            "RVIRT_CORPUS={} is not a directory",
            p.display()
        );
        return p;
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    assert!(
        p.is_dir(),
        "libvirt's corpus is missing: set RVIRT_CORPUS or provide {}",
        p.display()
    );
    p
}

fn test_context(hw: u32) -> Context {
    let mut c = Context::datastores("datastore", "directory", |ds| ds != "missing");
    c.virtual_hw_version = hw;
    c.default_scsi_model = None;
    c
}

fn strip(e: &Element) -> Element {
    let mut out = Element::new(e.name());
    for (k, v) in e.attrs() {
        out.set_attr(k, v);
    }
    for n in e.nodes() {
        match n {
            Node::Element(c) => out.push(strip(c)),
            Node::Text(t) if !t.trim().is_empty() => out.set_text(t),
            _ => {}
        }
    }
    out
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[test]
fn vmx2xml() {
    let dir = corpus().join("vmx2xmldata");
    let (mut pass, mut exact, mut total) = (0, 0, 0);
    let mut misses = Vec::new();
    for vmx in files(&dir, ".vmx") {
        total += 1;
        let name = vmx.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&vmx).unwrap();
        let expected = std::fs::read_to_string(vmx.with_extension("xml")).ok();
        let got = vmx_text_to_xml(&text, &test_context(4));
        match (expected, got) {
            (None, Err(_)) => pass += 1,
            (None, Ok(_)) => misses.push(format!("{name}: converted, expected a failure")),
            (Some(_), Err(e)) => misses.push(format!("{name}: {e}")),
            (Some(want), Ok(got)) => {
                let a = strip(&Element::parse(&want).unwrap());
                let b = strip(&Element::parse(&got).unwrap());
                if a == b {
                    pass += 1;
                    if want == got {
                        exact += 1;
                    } else {
                        println!("not byte-exact: {name}");
                    }
                } else {
                    misses.push(format!("{name}:\n--- want\n{want}--- got\n{got}"));
                }
            }
        }
    }
    println!("vmx2xml: {pass}/{total} pass ({exact} byte-exact)");
    for m in &misses {
        println!("MISS {m}");
    }
    assert!(pass * 100 >= total * 95, "vmx2xml: {pass}/{total}");
}

#[test]
fn xml2vmx() {
    let dir = corpus().join("xml2vmxdata");
    let (mut pass, mut ordered, mut total) = (0, 0, 0);
    let mut misses = Vec::new();
    for xml in files(&dir, ".xml") {
        total += 1;
        let name = xml.file_stem().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read_to_string(&xml).unwrap();
        let Ok(want_text) = std::fs::read_to_string(xml.with_extension("vmx")) else {
            match xml_to_vmx(&input, &test_context(4)) {
                Err(_) => pass += 1,
                Ok(_) => misses.push(format!("{name}: converted, expected a failure")),
            }
            continue;
        };
        let want = Vmx::parse(&want_text).unwrap();
        let hw = want.get_u64("virtualHW.version").unwrap().unwrap_or(4) as u32;
        match xml_to_vmx(&input, &test_context(hw)) {
            Err(e) => misses.push(format!("{name}: {e}")),
            Ok(got_text) => {
                let got = Vmx::parse(&got_text).unwrap();
                let norm = |v: &Vmx| -> Vec<(String, String)> {
                    v.entries()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                        .collect()
                };
                let (a, b) = (norm(&want), norm(&got));
                let (mut sa, mut sb) = (a.clone(), b.clone());
                sa.sort();
                sb.sort();
                if sa == sb {
                    pass += 1;
                    if a == b {
                        ordered += 1;
                    } else {
                        println!(
                            "not in libvirt's order: {name}\n--- want\n{want_text}--- got\n{got_text}"
                        );
                    }
                } else {
                    misses.push(format!("{name}:\n--- want\n{want_text}--- got\n{got_text}"));
                }
            }
        }
    }
    println!("xml2vmx: {pass}/{total} pass ({ordered} in libvirt's order)");
    for m in &misses {
        println!("MISS {m}");
    }
    assert!(pass * 100 >= total * 95, "xml2vmx: {pass}/{total}");
}

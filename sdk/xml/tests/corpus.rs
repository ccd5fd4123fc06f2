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

fn require(r: &DirReport, min_rate: f64) {
    show(r);
    let fails: Vec<String> = r
        .results
        .iter()
        .filter(|x| !x.ok)
        .map(|x| format!("{}: {}", x.case, x.detail))
        .collect();
    assert!(
        r.rate() >= min_rate,
        "{} below {:.0}%: {}/{}\n{}",
        r.dir,
        min_rate * 100.0,
        r.passed(),
        r.total(),
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
    require(&a, 0.55);
    require(&b, 0.6);
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
    require(&a, 0.9);
    require(&b, 0.0);
}

#[test]
fn qemu_inputs() {
    let Some(c) = corpus() else { return };
    require(&compat::run_qemu(&c.join("qemuxmlconfdata")), 0.95);
}

#[test]
fn compat_report() {
    let Some(c) = corpus() else { return };
    let Some(out) = std::env::var_os("RVIRT_WRITE_COMPAT") else {
        return;
    };
    let reports = compat::run_all(&c);
    let table = compat::markdown(&reports);
    let path = Path::new(&out);
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let marker = "<!-- compat-table -->";
    let text = match old.split_once(marker) {
        Some((head, _)) => format!("{head}{marker}\n{table}"),
        None => format!("{old}\n{marker}\n{table}"),
    };
    std::fs::write(path, text).expect("write compat report");
}

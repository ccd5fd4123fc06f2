//! libvirt's lxcxml2xml corpus (`../shared/corpus` or `$RVIRT_CORPUS`) through the
//! driver: define, then the XML the driver gives back equals libvirt's expected output.

use crate::common::*;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    let p = std::env::var_os("RVIRT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| rvirt_tests::shared_dir().join("corpus"));
    assert!(
        p.join("lxcxml2xmldata").is_dir(),
        "libvirt's corpus is missing: set RVIRT_CORPUS or provide {}",
        p.display()
    );
    p
}

fn cases(dir: &Path) -> Vec<String> {
    let tsv = std::fs::read_to_string(dir.join("cases.tsv")).unwrap();
    tsv.lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(1).map(str::to_string))
        .collect()
}

#[test]
fn lxcxml2xml_corpus_through_define_and_dumpxml() {
    let c = corpus();
    let input = c.join("lxcxml2xmldata");
    let output = c.join("lxcxml2xmloutdata");
    let dir = test_dir("corpus");
    let d = driver(&dir);
    let mut n = 0;
    let mut failures = Vec::new();
    for file in cases(&input) {
        let xml = std::fs::read_to_string(input.join(&file)).unwrap();
        let want = std::fs::read_to_string(output.join(&file)).unwrap_or_else(|_| xml.clone());
        let r = match d.define(&xml) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{file}: define: {e}"));
                continue;
            }
        };
        let u = rvirt_sdk::util::from_abi_uuid(r.uuid);
        let got = d.xml(u, false, true).unwrap();
        if got != want {
            failures.push(format!(
                "{file}: output differs:\n{got}\n--- want ---\n{want}"
            ));
        }
        d.undefine(u).unwrap();
        n += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(n >= 10, "only {n} cases: is the corpus complete?");
}

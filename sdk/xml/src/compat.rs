//! Conformance harness over libvirt's test-data corpus: XML comparison
//! helpers and per-directory runners.  Used by `tests/corpus.rs`.

use crate::tree::{Element, Node};
use crate::{Domain, FormatOptions, Network, StoragePool, StorageVolume};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One row of a corpus `cases.tsv`.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub files: Vec<String>,
    pub macros: String,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: String,
    pub ok: bool,
    pub detail: String,
}

impl CaseResult {
    /// Whether the case belongs to the corpus' hold-out side (see the corpus
    /// README: first hex digit of `sha1(stem)` is c-f).  The tests assert
    /// floors on the developer side only and report the other side.
    pub fn holdout(&self) -> bool {
        matches!(sha1(self.case.as_bytes())[0] >> 4, 0xc..=0xf)
    }
}

/// SHA-1 (FIPS 180-4), used only to tell the corpus sides apart.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks(4).enumerate().take(16) {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// The outcomes of one corpus directory.
#[derive(Debug, Clone, Default)]
pub struct DirReport {
    pub dir: String,
    pub what: String,
    pub results: Vec<CaseResult>,
}

impl DirReport {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.ok).count()
    }
    pub fn total(&self) -> usize {
        self.results.len()
    }
    pub fn rate(&self) -> f64 {
        if self.results.is_empty() {
            1.0
        } else {
            self.passed() as f64 / self.total() as f64
        }
    }
    /// The results of one corpus side.
    pub fn side(&self, holdout: bool) -> DirReport {
        DirReport {
            dir: self.dir.clone(),
            what: self.what.clone(),
            results: self
                .results
                .iter()
                .filter(|r| r.holdout() == holdout)
                .cloned()
                .collect(),
        }
    }
    fn push(&mut self, case: &str, r: Result<(), String>) {
        let (ok, detail) = match r {
            Ok(()) => (true, String::new()),
            Err(e) => (false, e),
        };
        self.results.push(CaseResult {
            case: case.to_string(),
            ok,
            detail,
        });
    }
}

/// Reads `cases.tsv` of a corpus directory.
pub fn read_cases(dir: &Path) -> Vec<Case> {
    let Ok(text) = std::fs::read_to_string(dir.join("cases.tsv")) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let name = (*cols.first()?).to_string();
            let files = cols
                .get(1)
                .map(|f| f.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            let macros = cols.get(3).map(|s| s.to_string()).unwrap_or_default();
            Some(Case {
                name,
                files,
                macros,
            })
        })
        .collect()
}

/// Canonical form for comparison: no comments/PIs, no layout whitespace,
/// attributes sorted.
pub fn canonical(e: &Element) -> Element {
    let mut out = Element::new(e.name());
    let mut attrs: Vec<(String, String)> = e.attrs().to_vec();
    attrs.sort();
    *out.attrs_mut() = attrs;
    let has_elem = e.elements().next().is_some();
    let mut text = String::new();
    for n in e.nodes() {
        match n {
            Node::Element(c) => out.push(canonical(c)),
            Node::Text(t) | Node::CData(t) => text.push_str(t),
            _ => {}
        }
    }
    let keep = if has_elem || text.trim().is_empty() && text.contains('\n') {
        text.trim().to_string()
    } else {
        text
    };
    if !keep.is_empty() {
        out.nodes_mut().insert(0, Node::Text(keep));
    }
    out
}

/// Compares two trees as XML; `Err` names the first difference.
pub fn compare(actual: &Element, expected: &Element) -> Result<(), String> {
    cmp_rec(&canonical(actual), &canonical(expected), expected.name())
}

fn cmp_rec(a: &Element, e: &Element, path: &str) -> Result<(), String> {
    if a.name() != e.name() {
        return Err(format!(
            "{path}: element '{}' where '{}' expected",
            a.name(),
            e.name()
        ));
    }
    if a.attrs() != e.attrs() {
        return Err(format!(
            "{path}: attributes {:?} != expected {:?}",
            a.attrs(),
            e.attrs()
        ));
    }
    if a.text() != e.text() {
        return Err(format!(
            "{path}: text {:?} != expected {:?}",
            a.text(),
            e.text()
        ));
    }
    let ac: Vec<&Element> = a.elements().collect();
    let ec: Vec<&Element> = e.elements().collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, x) in ec.iter().enumerate() {
        let k = seen.entry(x.name()).or_insert(0);
        *k += 1;
        let cp = format!("{path}/{}[{}]", x.name(), k);
        match ac.get(i) {
            Some(y) => cmp_rec(y, x, &cp)?,
            None => return Err(format!("{cp}: missing")),
        }
    }
    if ac.len() > ec.len() {
        return Err(format!(
            "{path}/{}: unexpected extra element",
            ac[ec.len()].name()
        ));
    }
    Ok(())
}

/// Checks that everything in `actual` appears in `expected` with the same
/// values and in the same relative order; `expected` may hold extra
/// elements and attributes (those the QEMU driver adds).
pub fn compare_subset(actual: &Element, expected: &Element) -> Result<(), String> {
    sub_rec(&canonical(actual), &canonical(expected), expected.name())
}

fn sub_rec(a: &Element, e: &Element, path: &str) -> Result<(), String> {
    if a.name() != e.name() {
        return Err(format!(
            "{path}: element '{}' where '{}' expected",
            a.name(),
            e.name()
        ));
    }
    for (k, v) in a.attrs() {
        match e.attr(k) {
            Some(ev) if ev == v => {}
            Some(ev) => return Err(format!("{path}/@{k}: '{v}' != expected '{ev}'")),
            None => return Err(format!("{path}/@{k}: '{v}' not in expected")),
        }
    }
    let at = a.text();
    if !at.trim().is_empty() && at != e.text() {
        return Err(format!("{path}: text {:?} != expected {:?}", at, e.text()));
    }
    let ec: Vec<&Element> = e.elements().collect();
    let mut pos = 0usize;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for x in a.elements() {
        let k = seen.entry(x.name().to_string()).or_insert(0);
        *k += 1;
        let cp = format!("{path}/{}[{}]", x.name(), k);
        let mut first_err: Option<String> = None;
        let mut found = None;
        for (j, y) in ec.iter().enumerate().skip(pos) {
            if y.name() != x.name() {
                continue;
            }
            match sub_rec(x, y, &cp) {
                Ok(()) => {
                    found = Some(j);
                    break;
                }
                Err(err) => {
                    if first_err.is_none() {
                        first_err = Some(err);
                    }
                }
            }
        }
        match found {
            Some(j) => pos = j + 1,
            None => {
                if let Some(err) = first_err {
                    return Err(err);
                }
                let earlier = ec.iter().take(pos).any(|y| y.name() == x.name());
                return Err(if earlier {
                    format!("{cp}: out of libvirt's order")
                } else {
                    format!("{cp}: not in expected")
                });
            }
        }
    }
    Ok(())
}

/// Whether the macros of a case declare an expected failure.
pub fn expects_failure(macros: &str) -> bool {
    let m = macros.to_ascii_uppercase();
    m.contains("PARSE_ERROR") || m.contains("FAIL")
}

fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn idempotent(first: &str, reparse: impl Fn(&str) -> Result<String, String>) -> Result<(), String> {
    let second = reparse(first)?;
    if second != first {
        return Err("formatting again changes the output".to_string());
    }
    Ok(())
}

/// Options used by the corpus runners for domains.
pub const DOMAIN_TEST_OPTS: crate::domain::ParseOptions = crate::domain::ParseOptions {
    deterministic_macs: true,
    no_default_boot: false,
};

fn fmt_domain(xml: &str, opts: &FormatOptions) -> Result<String, String> {
    let d = Domain::parse_with(xml, &DOMAIN_TEST_OPTS).map_err(|e| e.to_string())?;
    Ok(d.to_xml(opts))
}

/// Domain round trip: input directory, optional output directory.  Returns
/// the report for the input directory and for the cases with an output file.
pub fn run_domain_roundtrip(
    indir: &Path,
    outdir: &Path,
    opts: FormatOptions,
) -> (DirReport, DirReport) {
    let mut rin = DirReport {
        dir: dir_name(indir),
        what: "domain xml2xml".into(),
        ..Default::default()
    };
    let mut rout = DirReport {
        dir: dir_name(outdir),
        what: "domain xml2xml (different output)".into(),
        ..Default::default()
    };
    for c in read_cases(indir) {
        let input = indir.join(format!("{}.xml", c.name));
        let out_file = outdir.join(format!("{}.xml", c.name));
        let r = (|| {
            let xml = read(&input)?;
            let res = fmt_domain(&xml, &opts);
            if expects_failure(&c.macros) {
                return match res {
                    Ok(_) => Err("expected a parse failure, but parsing succeeded".into()),
                    Err(e) if e.contains(": ") => Ok(()),
                    Err(e) => Err(format!("unclear error: {e}")),
                };
            }
            let got = res?;
            let exp_path = if out_file.exists() {
                out_file.clone()
            } else {
                input.clone()
            };
            let exp = Element::parse(&read(&exp_path)?).map_err(|e| e.to_string())?;
            let g = Element::parse(&got).map_err(|e| format!("output does not reparse: {e}"))?;
            compare(&g, &exp)?;
            idempotent(&got, |s| fmt_domain(s, &opts))
        })();
        if out_file.exists() {
            rout.push(&c.name, r.clone());
        }
        rin.push(&c.name, r);
    }
    (rin, rout)
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Network round trip.
pub fn run_network(indir: &Path, outdir: &Path) -> (DirReport, DirReport) {
    let mut rin = DirReport {
        dir: dir_name(indir),
        what: "network xml2xml".into(),
        ..Default::default()
    };
    let mut rout = DirReport {
        dir: dir_name(outdir),
        what: "network xml2xml (expected output)".into(),
        ..Default::default()
    };
    for c in read_cases(indir) {
        let input = indir.join(format!("{}.xml", c.name));
        let out_file = outdir.join(format!("{}.xml", c.name));
        let opts = FormatOptions {
            inactive: c.macros.contains("FLAGS"),
            secure: true,
        };
        let f = |s: &str| {
            Network::parse(s)
                .map(|n| n.to_xml(&opts))
                .map_err(|e| e.to_string())
        };
        let r = (|| {
            let xml = read(&input)?;
            let res = f(&xml);
            if expects_failure(&c.macros) || !out_file.exists() {
                return match res {
                    Ok(_) => Err("expected a parse failure, but parsing succeeded".into()),
                    Err(e) if e.contains(": ") => Ok(()),
                    Err(e) => Err(format!("unclear error: {e}")),
                };
            }
            let got = res?;
            let exp = Element::parse(&read(&out_file)?).map_err(|e| e.to_string())?;
            compare(&Element::parse(&got).map_err(|e| e.to_string())?, &exp)?;
            idempotent(&got, f)
        })();
        if out_file.exists() {
            rout.push(&c.name, r.clone());
        }
        rin.push(&c.name, r);
    }
    (rin, rout)
}

/// Storage pool round trip.
pub fn run_pool(indir: &Path, outdir: &Path) -> (DirReport, DirReport) {
    let mut rin = DirReport {
        dir: dir_name(indir),
        what: "pool xml2xml".into(),
        ..Default::default()
    };
    let mut rout = DirReport {
        dir: dir_name(outdir),
        what: "pool xml2xml (expected output)".into(),
        ..Default::default()
    };
    let opts = FormatOptions::default();
    let f = |s: &str| {
        StoragePool::parse(s)
            .map(|n| n.to_xml(&opts))
            .map_err(|e| e.to_string())
    };
    for c in read_cases(indir) {
        let input = indir.join(format!("{}.xml", c.name));
        let out_file = outdir.join(format!("{}.xml", c.name));
        let r = (|| {
            let xml = read(&input)?;
            let res = f(&xml);
            if expects_failure(&c.macros) {
                return match res {
                    Ok(_) => Err("expected a parse failure, but parsing succeeded".into()),
                    Err(_) => Ok(()),
                };
            }
            let got = res?;
            if !out_file.exists() {
                return idempotent(&got, f);
            }
            let exp = Element::parse(&read(&out_file)?).map_err(|e| e.to_string())?;
            compare(&Element::parse(&got).map_err(|e| e.to_string())?, &exp)?;
            idempotent(&got, f)
        })();
        if out_file.exists() {
            rout.push(&c.name, r.clone());
        }
        rin.push(&c.name, r);
    }
    (rin, rout)
}

/// Storage volume round trip, each in its pool's context.
pub fn run_volume(indir: &Path, outdir: &Path, pooldir: &Path) -> (DirReport, DirReport) {
    let mut rin = DirReport {
        dir: dir_name(indir),
        what: "volume xml2xml".into(),
        ..Default::default()
    };
    let mut rout = DirReport {
        dir: dir_name(outdir),
        what: "volume xml2xml (expected output)".into(),
        ..Default::default()
    };
    let opts = FormatOptions::default();
    for c in read_cases(indir) {
        if c.macros.trim() == "-" {
            // not used by the upstream test: its expected output may be stale
            continue;
        }
        let input = indir.join(format!("{}.xml", c.name));
        let out_file = outdir.join(format!("{}.xml", c.name));
        let pool_name = c
            .macros
            .split_once('[')
            .and_then(|(_, r)| r.split(']').next())
            .map(str::to_string)
            // cases not referenced upstream carry no pool; they were written for a dir pool
            .or_else(|| Some("pool-dir".to_string()));
        let vopts = crate::volume::VolumeParseOptions {
            allow_missing_capacity: c.macros.contains("FULL"),
        };
        let r = (|| {
            let pool = match &pool_name {
                Some(p) => Some(
                    StoragePool::parse(&read(&pooldir.join(format!("{p}.xml")))?)
                        .map_err(|e| format!("pool context: {e}"))?,
                ),
                None => None,
            };
            let f = |s: &str| {
                StorageVolume::parse_with(s, pool.as_ref(), &vopts)
                    .map(|n| n.to_xml(&opts))
                    .map_err(|e| e.to_string())
            };
            let xml = read(&input)?;
            let res = f(&xml);
            if expects_failure(&c.macros) {
                return match res {
                    Ok(_) => Err("expected a parse failure, but parsing succeeded".into()),
                    Err(_) => Ok(()),
                };
            }
            let got = res?;
            if !out_file.exists() {
                return idempotent(&got, f);
            }
            let exp = Element::parse(&read(&out_file)?).map_err(|e| e.to_string())?;
            compare(&Element::parse(&got).map_err(|e| e.to_string())?, &exp)?;
            idempotent(&got, f)
        })();
        if out_file.exists() {
            rout.push(&c.name, r.clone());
        }
        rin.push(&c.name, r);
    }
    (rin, rout)
}

/// Element paths (`domain/devices/disk/target`) of a tree, without indexes.
fn paths(e: &Element, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    for c in e.elements() {
        // namespaced elements compare by local name: prefixes are canonicalised
        let p = format!("{prefix}/{}", c.local_name());
        for (k, _) in c.attrs() {
            if !k.starts_with("xmlns") {
                out.insert(format!("{p}/@{k}"));
            }
        }
        paths(c, &p, out);
        out.insert(p);
    }
}

/// "Lose nothing": every element and attribute path of the input is still in
/// the output, except the documented drops of [`crate::tables::DOCUMENTED_DROPS`].
pub fn check_nothing_lost(input: &Element, output: &Element) -> Result<(), String> {
    let mut a = std::collections::BTreeSet::new();
    let mut b = std::collections::BTreeSet::new();
    paths(input, input.name(), &mut a);
    paths(output, output.name(), &mut b);
    for p in a.difference(&b) {
        let documented = crate::tables::DOCUMENTED_DROPS.iter().any(|d| {
            p == d
                || p.starts_with(&format!("{d}/"))
                || p.ends_with(d.trim_start_matches('*')) && d.starts_with('*')
        });
        if !documented {
            return Err(format!("{p}: lost"));
        }
    }
    Ok(())
}

/// QEMU inputs judged against `NAME.x86_64-latest.xml` (subset comparison).
pub fn run_qemu(dir: &Path) -> DirReport {
    let mut rep = DirReport {
        dir: dir_name(dir),
        what: "qemu inputs vs .x86_64-latest.xml".into(),
        ..Default::default()
    };
    let opts = FormatOptions {
        inactive: true,
        secure: true,
    };
    for c in read_cases(dir) {
        let exp_file = dir.join(format!("{}.x86_64-latest.xml", c.name));
        if !exp_file.exists() {
            continue;
        }
        let input = dir.join(format!("{}.xml", c.name));
        let r = (|| {
            let xml = read(&input)?;
            let got = fmt_domain(&xml, &opts)?;
            let exp = Element::parse(&read(&exp_file)?).map_err(|e| e.to_string())?;
            let g = Element::parse(&got).map_err(|e| e.to_string())?;
            compare_subset(&g, &exp)?;
            let inp = Element::parse(&xml).map_err(|e| e.to_string())?;
            check_nothing_lost(&inp, &g)?;
            idempotent(&got, |s| fmt_domain(s, &opts))
        })();
        rep.push(&c.name, r);
    }
    rep
}

/// QEMU inputs without an x86_64 result, judged against the newest output
/// of another architecture (`.aarch64-latest.xml`, ...) the same way.
pub fn run_qemu_other_arch(dir: &Path) -> DirReport {
    let mut rep = DirReport {
        dir: dir_name(dir),
        what: "qemu inputs vs other-arch -latest.xml".into(),
        ..Default::default()
    };
    let opts = FormatOptions {
        inactive: true,
        secure: true,
    };
    for c in read_cases(dir) {
        if dir.join(format!("{}.x86_64-latest.xml", c.name)).exists() {
            continue;
        }
        let Some(exp_name) = c
            .files
            .iter()
            .find(|f| f.ends_with("-latest.xml") && !f.contains("abi-update"))
        else {
            continue;
        };
        let exp_file = dir.join(exp_name);
        let input = dir.join(format!("{}.xml", c.name));
        let r = (|| {
            let xml = read(&input)?;
            let got = fmt_domain(&xml, &opts)?;
            let exp = Element::parse(&read(&exp_file)?).map_err(|e| e.to_string())?;
            let g = Element::parse(&got).map_err(|e| e.to_string())?;
            compare_subset(&g, &exp)?;
            let inp = Element::parse(&xml).map_err(|e| e.to_string())?;
            check_nothing_lost(&inp, &g)?;
            idempotent(&got, |s| fmt_domain(s, &opts))
        })();
        rep.push(&c.name, r);
    }
    rep
}

/// QEMU inputs whose only expectation is a parse error (`.x86_64-latest.err`
/// with a PARSE_ERROR macro): informational, many are QEMU-driver checks.
pub fn run_qemu_parse_errors(dir: &Path) -> DirReport {
    let mut rep = DirReport {
        dir: dir_name(dir),
        what: "qemu PARSE_ERROR inputs rejected".into(),
        ..Default::default()
    };
    for c in read_cases(dir) {
        if !c.macros.contains("PARSE_ERROR") {
            continue;
        }
        let input = dir.join(format!("{}.xml", c.name));
        let r = (|| {
            let xml = read(&input)?;
            match Domain::parse_with(&xml, &DOMAIN_TEST_OPTS) {
                Ok(_) => Err("parsed although the QEMU driver rejects it".to_string()),
                Err(_) => Ok(()),
            }
        })();
        rep.push(&c.name, r);
    }
    rep
}

/// Every domain input of a directory parses and formats idempotently.
pub fn run_parse_only(dir: &Path, what: &str) -> DirReport {
    let mut rep = DirReport {
        dir: dir_name(dir),
        what: what.into(),
        ..Default::default()
    };
    let opts = FormatOptions {
        inactive: true,
        secure: true,
    };
    for c in read_cases(dir) {
        let input = dir.join(format!("{}.xml", c.name));
        if !input.exists() || expects_failure(&c.macros) {
            continue;
        }
        // an input with no outputs at all is an expected failure (bhyve, vmx)
        if c.files.len() == 1 && !dir.ends_with("qemuxmlconfdata") && !dir.ends_with("vmx2xmldata")
        {
            continue;
        }
        let r = (|| {
            let got = fmt_domain(&read(&input)?, &opts)?;
            idempotent(&got, |s| fmt_domain(s, &opts))
        })();
        rep.push(&c.name, r);
    }
    rep
}

/// Libvirt-formatted domain XML (e.g. vmx2xml expected outputs) must come
/// back unchanged from parse + format.
pub fn run_formatted_fixpoint(dir: &Path, what: &str, no_boot_order: bool) -> DirReport {
    let mut rep = DirReport {
        dir: dir_name(dir),
        what: what.into(),
        ..Default::default()
    };
    let opts = FormatOptions {
        inactive: false,
        secure: true,
    };
    for c in read_cases(dir) {
        let input = dir.join(format!("{}.xml", c.name));
        if !input.exists() || expects_failure(&c.macros) {
            continue;
        }
        let popts = crate::domain::ParseOptions {
            no_default_boot: no_boot_order,
            ..DOMAIN_TEST_OPTS
        };
        let r = (|| {
            let xml = read(&input)?;
            let d = Domain::parse_with(&xml, &popts).map_err(|e| e.to_string())?;
            let got = d.to_xml(&opts);
            let exp = Element::parse(&xml).map_err(|e| e.to_string())?;
            compare(&Element::parse(&got).map_err(|e| e.to_string())?, &exp)
        })();
        rep.push(&c.name, r);
    }
    rep
}

/// Locates the corpus: `$RVIRT_CORPUS`, else `<workspace>/../shared/corpus`.
pub fn locate_corpus(manifest_dir: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RVIRT_CORPUS") {
        let p = PathBuf::from(p);
        return p.is_dir().then_some(p);
    }
    let mut dir = Some(manifest_dir);
    while let Some(d) = dir {
        let is_ws = std::fs::read_to_string(d.join("Cargo.toml"))
            .map(|t| t.contains("[workspace]"))
            .unwrap_or(false);
        if is_ws {
            let c = d.join("..").join("shared").join("corpus");
            if c.is_dir() {
                return Some(c);
            }
        }
        dir = d.parent();
    }
    None
}

/// Runs every directory.
pub fn run_all(corpus: &Path) -> Vec<DirReport> {
    let mut v = Vec::new();
    let (a, b) = run_domain_roundtrip(
        &corpus.join("genericxml2xmlindata"),
        &corpus.join("genericxml2xmloutdata"),
        FormatOptions {
            inactive: false,
            secure: true,
        },
    );
    v.push(a);
    v.push(b);
    let (a, b) = run_network(
        &corpus.join("networkxml2xmlin"),
        &corpus.join("networkxml2xmlout"),
    );
    v.push(a);
    v.push(b);
    let (a, b) = run_pool(
        &corpus.join("storagepoolxml2xmlin"),
        &corpus.join("storagepoolxml2xmlout"),
    );
    v.push(a);
    v.push(b);
    let (a, b) = run_volume(
        &corpus.join("storagevolxml2xmlin"),
        &corpus.join("storagevolxml2xmlout"),
        &corpus.join("storagepoolxml2xmlin"),
    );
    v.push(a);
    v.push(b);
    let (a, b) = run_domain_roundtrip(
        &corpus.join("lxcxml2xmldata"),
        &corpus.join("lxcxml2xmloutdata"),
        FormatOptions {
            inactive: false,
            secure: true,
        },
    );
    v.push(a);
    v.push(b);
    v.push(run_qemu(&corpus.join("qemuxmlconfdata")));
    v.push(run_qemu_other_arch(&corpus.join("qemuxmlconfdata")));
    v.push(run_parse_only(
        &corpus.join("qemuxmlconfdata"),
        "qemu inputs parse + idempotent format",
    ));
    v.push(run_qemu_parse_errors(&corpus.join("qemuxmlconfdata")));
    for d in [
        "bhyvexml2argvdata",
        "xlconfigdata",
        "xml2vmxdata",
        "vmx2xmldata",
    ] {
        v.push(run_parse_only(
            &corpus.join(d),
            "domain xml parses + idempotent format",
        ));
    }
    for (d, no_boot) in [("vmx2xmldata", true), ("xlconfigdata", false)] {
        v.push(run_formatted_fixpoint(
            &corpus.join(d),
            "libvirt-formatted xml is a fixpoint",
            no_boot,
        ));
    }
    v
}

/// Markdown list of the failing cases of each report.
pub fn markdown_failures(reports: &[DirReport]) -> String {
    let mut s = String::new();
    for r in reports {
        let fails: Vec<&CaseResult> = r.results.iter().filter(|x| !x.ok).collect();
        if fails.is_empty() {
            continue;
        }
        s.push_str(&format!("\n#### `{}` — {}\n\n", r.dir, r.what));
        for f in fails {
            s.push_str(&format!(
                "- `{}`: {}\n",
                f.case,
                f.detail.replace('|', "\\|")
            ));
        }
    }
    s
}

/// Markdown table of reports.
pub fn markdown(reports: &[DirReport]) -> String {
    let mut s =
        String::from("| directory | check | passed | total | rate |\n|---|---|---|---|---|\n");
    for r in reports {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {:.1}% |\n",
            r.dir,
            r.what,
            r.passed(),
            r.total(),
            r.rate() * 100.0
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_answers() {
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    #[test]
    fn xml_comparison() {
        let a = Element::parse("<a y='2' x='1'>\n  <b/>\n</a>").expect("a");
        let b = Element::parse("<a x='1' y='2'><b></b></a>").expect("b");
        assert!(compare(&a, &b).is_ok());
        let c = Element::parse("<a x='1' y='2' z='3'><i/><b/></a>").expect("c");
        assert!(compare_subset(&a, &c).is_ok());
        assert!(compare_subset(&c, &a).is_err());
    }
}

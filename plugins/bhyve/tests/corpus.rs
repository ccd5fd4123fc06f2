//! libvirt's bhyvexml2argv test data (`../shared/corpus/bhyvexml2argvdata` or
//! `$RVIRT_CORPUS`), both directions. Fails when the corpus is absent.
//!
//! * XML → argv: each `bhyvexml2argv-NAME.xml` is built with the capabilities libvirt's
//!   `bhyvexml2argvtest` has when it runs the case (the program clears capabilities as it
//!   goes; [`caps_for`] repeats that order) and the test's fake host (tap `faketapdev`,
//!   device map `<device.map>`, firmware directory `fakefirmwaredir`, all-zero generated
//!   MAC). `.args` and `.ldargs` are compared token by token (the program's directory
//!   stripped, as libvirt's printer does; `dummy` where bhyve boots UEFI itself), `.devmap`
//!   as text. A case with no outputs must fail with a clear error; a case run both ways
//!   (`DO_TEST;DO_TEST_FAILURE`) is also run with the capability the program clears
//!   before its failing run.
//! * argv → XML: every `.args` (with its `.ldargs` unless `dummy`) is parsed back to domain
//!   XML, which must pass rvirt-xml's domain validation and build the same command lines
//!   again (round trip).

use rvirt_plugin_bhyve::caps::{Caps, Firmwares, Options};
use rvirt_plugin_bhyve::command::{Commands, build};
use rvirt_plugin_bhyve::native;
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

fn dir() -> PathBuf {
    let d = corpus().join("bhyvexml2argvdata");
    assert!(d.is_dir(), "{} is missing", d.display());
    d
}

/// `(case, macros)` from cases.tsv.
fn cases() -> Vec<(String, Vec<String>)> {
    let tsv = std::fs::read_to_string(dir().join("cases.tsv")).expect("cases.tsv");
    tsv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let name = cols[0].strip_prefix("bhyvexml2argv-").unwrap_or(cols[0]);
            let macros = cols
                .get(3)
                .map(|m| m.split(';').map(str::to_string).collect())
                .unwrap_or_default();
            (name.to_string(), macros)
        })
        .collect()
}

/// The capabilities `bhyvexml2argvtest` (libvirt 10.7) has when it runs `name` expecting
/// success. It starts with every capability and, after the address tests, clears
/// AHCI32SLOT; after the xhci tests XHCI; then grub-bhyve's CONSDEV.
fn caps_for(name: &str) -> Caps {
    let mut c = Caps::all();
    if name.starts_with("addr-no32devs-")
        || matches!(
            name,
            "input-xhci-tablet"
                | "xhci-multiple-controllers"
                | "xhci-no-devs"
                | "xhci-multiple-devs"
                | "serial-grub-nocons"
        )
    {
        c.ahci32slot = false;
    }
    if name == "serial-grub-nocons" {
        c.xhci = false;
        c.grub_consdev = false;
    }
    c
}

/// For a case run both ways: the options of its failing run.
fn failing_variant(name: &str) -> Option<Options> {
    let mut o = Options::for_tests();
    o.caps = caps_for(name);
    let caps = &mut o.caps;
    match name {
        "input-xhci-tablet" => caps.xhci = false,
        "cputopology" => caps.cputopology = false,
        "sound" => caps.sound_hda = false,
        "fs-9p" => caps.virtio_9p = false,
        "vnc" => caps.fbuf = false,
        // cases of the same program kept out of this part of the corpus
        "net-e1000" => caps.net_e1000 = false,
        "uefi" => caps.lpc_bootrom = false,
        "vnc-password" => caps.vnc_password = false,
        "virtio-rnd" => caps.virtio_rnd = false,
        "firmware-efi" => o.firmwares = Firmwares::Listed(Vec::new()),
        _ => return None,
    }
    Some(o)
}

fn options(name: &str) -> Options {
    let mut o = Options::for_tests();
    o.caps = caps_for(name);
    o
}

/// Tokens of an expected command file (`\` continuations, single quotes), the program's
/// directory stripped.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let joined = text.replace("\\\n", " ");
    let mut cur = String::new();
    let mut in_tok = false;
    let mut quoted = false;
    for c in joined.chars() {
        if quoted {
            if c == '\'' {
                quoted = false;
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '\'' => {
                quoted = true;
                in_tok = true;
            }
            c if c.is_whitespace() => {
                if in_tok {
                    out.push(std::mem::take(&mut cur));
                    in_tok = false;
                }
            }
            c => {
                cur.push(c);
                in_tok = true;
            }
        }
    }
    if in_tok {
        out.push(cur);
    }
    strip_program(out)
}

fn strip_program(mut v: Vec<String>) -> Vec<String> {
    if let Some(first) = v.first_mut() {
        *first = first.rsplit('/').next().unwrap_or(first).to_string();
    }
    v
}

fn diff(what: &str, want: &[String], got: &[String]) -> Option<String> {
    if want == got {
        return None;
    }
    let n = want.len().max(got.len());
    let at = (0..n).find(|i| want.get(*i) != got.get(*i)).unwrap_or(0);
    Some(format!(
        "{what}: first difference at token {at}: expected {:?}, got {:?}\n    expected: {}\n    got:      {}",
        want.get(at),
        got.get(at),
        want.join(" "),
        got.join(" ")
    ))
}

/// Compares built commands with a case's expected files.
fn compare(d: &Path, name: &str, c: &Commands) -> Vec<String> {
    let mut problems = Vec::new();
    let read =
        |ext: &str| std::fs::read_to_string(d.join(format!("bhyvexml2argv-{name}.{ext}"))).ok();
    let args = read("args").expect("args");
    if let Some(p) = diff("args", &tokens(&args), &strip_program(c.bhyve.clone())) {
        problems.push(p);
    }
    let ld = read("ldargs").expect("ldargs");
    let got_ld = match &c.loader {
        Some(l) => strip_program(l.clone()),
        None => vec!["dummy".to_string()],
    };
    if let Some(p) = diff("ldargs", &tokens(&ld), &got_ld) {
        problems.push(p);
    }
    match (read("devmap"), &c.devmap) {
        (Some(want), Some(got)) if want.trim() != got.trim() => {
            problems.push(format!("devmap: expected {want:?}, got {got:?}"))
        }
        (Some(_), None) => problems.push("devmap: expected one, none built".into()),
        (None, Some(got)) => problems.push(format!("devmap: none expected, built {got:?}")),
        _ => {}
    }
    problems
}

/// A clear error: names what is unsupported or which field is wrong, no debug dump.
fn clear(msg: &str) -> bool {
    !msg.is_empty()
        && !msg.contains("{")
        && (msg.starts_with("unsupported configuration: ") || msg.contains(": "))
}

#[test]
fn xml_to_argv() {
    let d = dir();
    let mut total = 0;
    let mut passed = 0;
    let mut misses = Vec::new();
    for (name, macros) in cases() {
        let xml = std::fs::read_to_string(d.join(format!("bhyvexml2argv-{name}.xml"))).unwrap();
        let has_args = d.join(format!("bhyvexml2argv-{name}.args")).exists();
        if macros == ["-"] {
            // Not a case of bhyvexml2argvtest (bhyvexml2xmltest's input): it must build.
            if let Err(e) = build(&xml, &options(&name)) {
                misses.push(format!("{name} (not scored): does not build: {e}"));
            }
            continue;
        }
        if has_args {
            total += 1;
            match build(&xml, &options(&name)) {
                Ok(c) => {
                    let p = compare(&d, &name, &c);
                    if p.is_empty() {
                        passed += 1;
                    } else {
                        misses.push(format!("{name}:\n  {}", p.join("\n  ")));
                    }
                }
                Err(e) => misses.push(format!("{name}: failed: {e}")),
            }
            if macros
                .iter()
                .any(|m| m.contains("FAIL") || m.contains("ERROR"))
            {
                total += 1;
                let Some(o) = failing_variant(&name) else {
                    misses.push(format!(
                        "{name} (failure run): no capability known to clear"
                    ));
                    continue;
                };
                match build(&xml, &o) {
                    Ok(c) => misses.push(format!(
                        "{name} (failure run): built {:?}",
                        c.bhyve.join(" ")
                    )),
                    Err(e) if clear(&e.to_string()) => {
                        eprintln!("{name} (failure run): expected error: {e}");
                        passed += 1;
                    }
                    Err(e) => misses.push(format!("{name} (failure run): unclear error: {e}")),
                }
            }
        } else {
            total += 1;
            match build(&xml, &options(&name)) {
                Ok(c) => misses.push(format!(
                    "{name}: expected a failure, built {:?}",
                    c.bhyve.join(" ")
                )),
                Err(e) if clear(&e.to_string()) => {
                    eprintln!("{name}: expected error: {e}");
                    passed += 1;
                }
                Err(e) => misses.push(format!("{name}: unclear error: {e}")),
            }
        }
    }
    for m in &misses {
        eprintln!("MISS {m}");
    }
    let rate = passed as f64 * 100.0 / total as f64;
    eprintln!("bhyvexml2argv: {passed}/{total} runs pass ({rate:.1} %)");
    assert!(total >= 50, "only {total} runs: is the corpus complete?");
    assert!(
        rate >= 95.0,
        "pass rate {rate:.1} % is below the 95 % floor"
    );
}

#[test]
fn argv_to_xml_round_trip() {
    let d = dir();
    let mut total = 0;
    let mut passed = 0;
    let mut misses = Vec::new();
    for (name, _) in cases() {
        let Ok(args) = std::fs::read_to_string(d.join(format!("bhyvexml2argv-{name}.args"))) else {
            continue;
        };
        total += 1;
        let ld = std::fs::read_to_string(d.join(format!("bhyvexml2argv-{name}.ldargs"))).unwrap();
        let mut text = String::new();
        if ld.trim() != "dummy" {
            text.push_str(ld.trim_end());
            text.push('\n');
        }
        text.push_str(&args);
        let xml = match native::parse(&text, || "52:54:00:00:00:00".into()) {
            Ok(x) => x.to_xml_string(),
            Err(e) => {
                misses.push(format!("{name}: cannot parse: {e}"));
                continue;
            }
        };
        // the parsed XML is a valid libvirt domain (rvirt-xml's schema checks)
        let strict = rvirt_xml::ParseOptions {
            no_default_boot: true,
            ..Default::default()
        };
        if let Err(e) = rvirt_xml::Domain::parse_with(&xml, &strict) {
            misses.push(format!(
                "{name}: parsed XML is not a valid domain: {e}\n  xml: {xml}"
            ));
            continue;
        }
        match build(&xml, &options(&name)) {
            Ok(c) => {
                // the device map is not on the command line: compare the argv only
                let mut p = compare(&d, &name, &c);
                p.retain(|m| !m.starts_with("devmap"));
                if p.is_empty() {
                    passed += 1;
                } else {
                    misses.push(format!("{name}:\n  {}\n  xml: {xml}", p.join("\n  ")));
                }
            }
            Err(e) => misses.push(format!(
                "{name}: parsed XML does not build: {e}\n  xml: {xml}"
            )),
        }
    }
    for m in &misses {
        eprintln!("MISS {m}");
    }
    eprintln!("bhyve argv round trip: {passed}/{total}");
    assert!(total >= 35, "only {total} cases: is the corpus complete?");
    assert!(misses.is_empty(), "{} round-trip misses", misses.len());
}

//! Parse + format throughput over the qemuxmlconfdata inputs.
//!
//! `cargo bench -p rvirt-xml --bench parse_format` (corpus from
//! `$RVIRT_CORPUS`, else `<workspace>/../shared/corpus`).

use rvirt_xml::{Domain, Element, FormatOptions};
use std::time::{Duration, Instant};

fn measure(label: &str, bytes: usize, min: Duration, mut f: impl FnMut()) {
    // warm-up
    f();
    let start = Instant::now();
    let mut iters = 0u32;
    while start.elapsed() < min {
        f();
        iters += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = (bytes as f64 * f64::from(iters)) / 1e6;
    println!(
        "{label:<40} {:>8.1} MB/s  ({iters} passes, {:.2} s)",
        mb / secs,
        secs
    );
}

fn main() {
    let Some(corpus) =
        rvirt_xml::compat::locate_corpus(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
    else {
        eprintln!("!!!!!!!! benchmark DID NOT RUN: corpus not found (set RVIRT_CORPUS) !!!!!!!!");
        std::process::exit(1);
    };
    let dir = corpus.join("qemuxmlconfdata");
    let mut inputs: Vec<String> = Vec::new();
    for c in rvirt_xml::compat::read_cases(&dir) {
        if let Ok(t) = std::fs::read_to_string(dir.join(format!("{}.xml", c.name))) {
            inputs.push(t);
        }
    }
    let opts = FormatOptions {
        inactive: true,
        secure: true,
    };
    let domains: Vec<Domain> = inputs
        .iter()
        .filter_map(|t| Domain::parse(t).ok())
        .collect();
    let ok_inputs: Vec<&String> = inputs.iter().filter(|t| Domain::parse(t).is_ok()).collect();
    let bytes: usize = ok_inputs.iter().map(|t| t.len()).sum();
    let out_bytes: usize = domains.iter().map(|d| d.to_xml(&opts).len()).sum();
    println!(
        "qemuxmlconfdata: {} inputs, {} parse as domains, {:.2} MB input, {:.2} MB formatted",
        inputs.len(),
        domains.len(),
        bytes as f64 / 1e6,
        out_bytes as f64 / 1e6
    );
    let min = Duration::from_secs(3);
    measure("tree parse (Element::parse)", bytes, min, || {
        for t in &ok_inputs {
            std::hint::black_box(Element::parse(t).ok());
        }
    });
    measure("domain parse (validate + normalise)", bytes, min, || {
        for t in &ok_inputs {
            std::hint::black_box(Domain::parse(t).ok());
        }
    });
    measure("domain format (to_xml)", out_bytes, min, || {
        for d in &domains {
            std::hint::black_box(d.to_xml(&opts));
        }
    });
    measure("parse + format (input MB/s)", bytes, min, || {
        for t in &ok_inputs {
            if let Ok(d) = Domain::parse(t) {
                std::hint::black_box(d.to_xml(&opts));
            }
        }
    });
}

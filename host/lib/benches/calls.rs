//! In-process cost of the plugin boundary: discovery + load + open, and a lookup + info
//! round trip through the test driver plugin.
//!
//! `cargo build --release --workspace && cargo bench -p rvirt-host --bench calls`

use std::time::Instant;

fn main() {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent().map(|p| p.to_path_buf()))
        .expect("bench binary in target/<profile>/deps");
    assert!(
        dir.join("librvirt_plugin_test.so").is_file(),
        "build the workspace first (cargo build --release --workspace)"
    );
    let t = Instant::now();
    let rt = rvirt_host::Runtime::with_search_path(vec![dir]);
    let conn = rt
        .open("test:///default", false)
        .expect("open test:///default");
    println!(
        "discover + load + open: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        let d = conn.lookup_domain_by_name("test").expect("lookup");
        std::hint::black_box(d.get_info().expect("info"));
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "lookup_by_name + get_info: {:.0} ops/s ({:.2} us/op)",
        n as f64 / dt,
        dt / n as f64 * 1e6
    );

    let n = 2_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            conn.lookup_domain_by_name("test")
                .unwrap()
                .get_xml_desc(0)
                .unwrap(),
        );
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "get_xml_desc: {:.0} ops/s ({:.1} us/op)",
        n as f64 / dt,
        dt / n as f64 * 1e6
    );
}

//! Registry and start-up costs (run with `cargo bench -p rvirt-registry`; `cargo build
//! --workspace` first, for `librvirt_plugin_test.so`):
//!
//! 1. `plugin install` from a local index of 500 packages (100 plugins x 5 versions):
//!    resolution, fetch, checksum, signature, unpack, stage, switch; from a directory and
//!    over HTTP on 127.0.0.1. Goal: under 200 ms plus download time.
//! 2. Host start with 50 plugins installed by the registry (each described by its manifest
//!    file, loaded on first use), against the same 50 files found without manifest files
//!    (each dlopen-ed at start). Goal: under 20 ms.

use rvirt_registry::{
    index::{IndexDir, Source},
    install::Installer,
    keys,
    package::{self, PluginFacts},
};
use std::{path::PathBuf, time::Instant};

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn facts(name: &str, version: &str, scheme: &str) -> PluginFacts {
    let test = name == "test";
    PluginFacts {
        name: name.into(),
        version: version.into(),
        kind: "hypervisor".into(),
        plugin_api: rvirt_host::PLUGIN_API_VERSION.into(),
        description: format!("bench plugin {name}"),
        schemes: vec![scheme.into()],
        // What the test plugin serves besides its scheme.
        pool_types: if test { vec!["mock".into()] } else { vec![] },
        forward_modes: if test { vec!["test".into()] } else { vec![] },
    }
}

/// The test plugin of this build (release, else debug).
fn test_plugin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    for p in [
        profile.join("librvirt_plugin_test.so"),
        profile
            .parent()
            .unwrap()
            .join("debug/librvirt_plugin_test.so"),
    ] {
        if p.is_file() {
            return p;
        }
    }
    panic!("librvirt_plugin_test.so not found: run `cargo build --workspace` first");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let key = keys::generate();
    let trusted = vec![keys::public_text(&key.verifying_key())];
    let target = rvirt_registry::HOST_TARGET;
    let plugin = test_plugin();
    let plugin_size = std::fs::metadata(&plugin).unwrap().len();

    // 1. An index of 500 packages: 100 names x 5 versions; small payloads, and the real
    //    test plugin for the one installed.
    let index = IndexDir::new(root.join("index"));
    let small = root.join("small");
    std::fs::create_dir_all(&small).unwrap();
    let t = Instant::now();
    for i in 0..100 {
        let name = format!("bench{i:03}");
        let so = small.join(format!("librvirt_plugin_{name}.so"));
        std::fs::write(&so, vec![i as u8; 16 * 1024]).unwrap();
        for v in 0..5 {
            let version = format!("0.{v}.0");
            let file = if i == 42 && v == 4 {
                plugin.as_path()
            } else {
                so.as_path()
            };
            let (_, bytes) =
                package::build(file, &facts(&name, &version, &name), target, &key).unwrap();
            index.publish(&bytes).unwrap();
        }
    }
    println!(
        "index: 500 packages published in {:.0} ms (the installed one carries the {:.1} MB test plugin)",
        ms(t),
        plugin_size as f64 / 1e6
    );

    let url = rvirt_registry::serve::spawn("127.0.0.1:0", root.join("index")).unwrap();
    for (label, src) in [
        (
            "directory",
            Source::parse(&root.join("index").display().to_string()),
        ),
        ("http://127.0.0.1", Source::parse(&url)),
    ] {
        let mut totals = Vec::new();
        let mut downloads = Vec::new();
        for run in 0..5 {
            let dir = root.join(format!("inst-{}-{run}", label.len()));
            let inst = Installer::new(&dir, trusted.clone(), "bench");
            let rec = inst
                .resolve(&src, "bench042", &semver::VersionReq::STAR)
                .unwrap()
                .chosen
                .unwrap();
            // Download alone: the package fetch.
            let t = Instant::now();
            std::hint::black_box(src.fetch(&rec.file).unwrap());
            downloads.push(ms(t));
            let t = Instant::now();
            inst.install(&src, "bench042", None).unwrap();
            totals.push(ms(t));
        }
        let (total, dl) = (median(totals), median(downloads));
        println!(
            "plugin install bench042 0.4.0 from a 500-package index ({label}): {total:.1} ms median of 5 (download {dl:.1} ms, everything else {:.1} ms)",
            total - dl
        );
        // Where the time goes, phase by phase (one run).
        let t = Instant::now();
        let recs = src.records("bench042").unwrap();
        let t_index = ms(t);
        let rec = recs.iter().max_by_key(|r| r.version()).unwrap();
        let t = Instant::now();
        let bytes = src.fetch(&rec.file).unwrap().unwrap();
        let t_fetch = ms(t);
        let t = Instant::now();
        assert_eq!(rvirt_registry::sha256_hex(&bytes), rec.sha256);
        let t_sum = ms(t);
        let t = Instant::now();
        let pkg = package::read(&bytes).unwrap();
        let t_unpack = ms(t);
        let t = Instant::now();
        pkg.verify(&trusted, "bench").unwrap();
        let t_verify = ms(t);
        let t = Instant::now();
        let out = root.join(format!("phase-{}", label.len()));
        std::fs::create_dir_all(&out).unwrap();
        {
            use std::io::Write;
            let mut f = std::fs::File::create(out.join("x.so")).unwrap();
            f.write_all(&pkg.files[0].1).unwrap();
            f.sync_all().unwrap();
        }
        let t_write = ms(t);
        println!(
            "  phases: index file {t_index:.1} ms, package fetch {t_fetch:.1} ms ({:.1} MB), package SHA-256 {t_sum:.1} ms, gunzip+untar {t_unpack:.1} ms, signature + file SHA-256 {t_verify:.1} ms, write+fsync of the plugin {t_write:.1} ms",
            bytes.len() as f64 / 1e6
        );
    }

    // 2. Host start with 50 plugins: installed by the registry (manifest files) vs plain
    //    files (dlopen at start).
    let index50 = IndexDir::new(root.join("index50"));
    for i in 0..50 {
        // The first is the test plugin under its own name, so a lazy open can be shown.
        let (name, scheme) = if i == 0 {
            ("test".to_string(), "test".to_string())
        } else {
            (format!("p{i:02}"), format!("p{i:02}"))
        };
        let copy = root.join(format!("copies/{name}/librvirt_plugin_{name}.so"));
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(&plugin, &copy).unwrap();
        let (_, bytes) =
            package::build(&copy, &facts(&name, "1.0.0", &scheme), target, &key).unwrap();
        index50.publish(&bytes).unwrap();
    }
    let installed = root.join("plugins50");
    let inst = Installer::new(&installed, trusted.clone(), "bench");
    let src50 = Source::parse(&root.join("index50").display().to_string());
    for i in 0..50 {
        let name = if i == 0 {
            "test".to_string()
        } else {
            format!("p{i:02}")
        };
        inst.install(&src50, &name, None).unwrap();
    }
    let mut lazy = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let rt = rvirt_host::Runtime::with_search_path(vec![installed.clone()]);
        lazy.push(ms(t));
        assert_eq!(rt.search_path().len(), 1);
    }
    let rt = rvirt_host::Runtime::with_search_path(vec![installed.clone()]);
    let t = Instant::now();
    let conn = rt.open("test:///default", false).unwrap();
    let first_open = ms(t);
    std::hint::black_box(conn.list_all_domains(0).unwrap());
    println!(
        "host start with 50 installed plugins (manifest files, loaded on first use): {:.2} ms median of 5; first open of test:///default (loads 1 plugin): {first_open:.1} ms",
        median(lazy)
    );

    let plain = root.join("plain50");
    std::fs::create_dir_all(&plain).unwrap();
    for e in std::fs::read_dir(root.join("copies")).unwrap().flatten() {
        for f in std::fs::read_dir(e.path()).unwrap().flatten() {
            std::fs::copy(f.path(), plain.join(f.file_name())).unwrap();
        }
    }
    let t = Instant::now();
    let rt = rvirt_host::Runtime::with_search_path(vec![plain.clone()]);
    let eager = ms(t);
    println!(
        "host start with the same 50 plugins without manifest files (dlopen + ABI check each): {eager:.1} ms ({} records)",
        rt.plugins().len()
    );
}

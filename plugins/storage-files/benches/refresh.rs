//! Pool refresh of 10,000 volumes (half raw, half qcow2 with a header written directly,
//! one qcow2 in ten with a backing file), cold (every file's pages dropped with
//! `posix_fadvise(DONTNEED)`, or the whole page cache with `RVIRT_BENCH_DROP_CACHES=1`)
//! and steady (median of 7 warm runs).
//!
//! `cargo bench -p rvirt-storage-files --bench refresh` (`RVIRT_BENCH_DIR` chooses the
//! file system, default `/var/tmp`; `RVIRT_BENCH_VOLUMES` the count).

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rvirt_storage_files::probe::write_qcow2_header;
use rvirt_storage_files::{RefreshCache, parse_pool, refresh_pool, refresh_pool_xml};

fn populate(dir: &Path, n: usize) {
    let mut hdr = vec![0u8; 4096];
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    for i in 0..n {
        if i % 2 == 0 {
            let mut f = std::fs::File::create(dir.join(format!("vm{i:05}.img"))).expect("create");
            f.write_all(&data).expect("write");
            f.set_len(1 << 30).expect("set_len");
        } else {
            let backing = (i % 20 == 1).then_some(("vm00000.img", "raw"));
            write_qcow2_header(&mut hdr, 10 << 30, backing);
            std::fs::write(dir.join(format!("vm{i:05}.qcow2")), &hdr).expect("write");
        }
    }
}

fn evict(dir: &Path) {
    if std::env::var("RVIRT_BENCH_DROP_CACHES").as_deref() == Ok("1") {
        rustix::fs::sync();
        std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop_caches (needs root)");
        return;
    }
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let f = std::fs::File::open(e.expect("entry").path()).expect("open");
        rustix::fs::fdatasync(f.as_fd()).expect("fdatasync");
        rustix::fs::fadvise(f.as_fd(), 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let n: usize = std::env::var("RVIRT_BENCH_VOLUMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let base = std::env::var("RVIRT_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let tmp = tempfile::Builder::new()
        .prefix("rvirt-refresh-bench")
        .tempdir_in(base)
        .expect("tempdir");
    let dir = tmp.path().join("pool");
    std::fs::create_dir(&dir).expect("mkdir");
    let t0 = Instant::now();
    populate(&dir, n);
    eprintln!("populated {n} volumes in {:.0} ms", ms(t0.elapsed()));
    let pool = parse_pool(&format!(
        "<pool type='dir'><name>bench</name><target><path>{}</path></target></pool>",
        dir.display()
    ))
    .expect("pool");

    evict(&dir);
    let t = Instant::now();
    let r = refresh_pool(&pool).expect("refresh");
    let cold = t.elapsed();
    assert_eq!(r.volumes.len(), n);
    assert_eq!(
        r.volumes
            .iter()
            .filter(|v| v.format_type() == Some("qcow2"))
            .count(),
        n / 2
    );

    let mut runs = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let r = refresh_pool(&pool).expect("refresh");
        runs.push(t.elapsed());
        assert_eq!(r.volumes.len(), n);
    }
    runs.sort();
    let steady = runs[runs.len() / 2];
    // what the plugin reports: XML text through the stat-keyed cache, first fill then steady
    let cache = RefreshCache::default();
    let t = Instant::now();
    let r = refresh_pool_xml(&pool, &cache).expect("refresh");
    let fill = t.elapsed();
    assert_eq!(r.volumes.len(), n);
    let mut cached = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let r = refresh_pool_xml(&pool, &cache).expect("refresh");
        cached.push(t.elapsed());
        assert_eq!(r.volumes.len(), n);
    }
    cached.sort();
    let threads = std::env::var("RVIRT_REFRESH_THREADS").unwrap_or_else(|_| "auto".into());
    println!(
        "refresh as XML text (the plugin's report) of {n} volumes: first {:.1} ms, steady with the stat cache {:.1} ms ({:.1} us/volume, min {:.1} ms)",
        ms(fill),
        ms(cached[cached.len() / 2]),
        ms(cached[cached.len() / 2]) * 1000.0 / n as f64,
        ms(cached[0]),
    );
    println!(
        "refresh of {n} volumes (threads {threads}): cold {:.1} ms ({:.1} us/volume), steady {:.1} ms ({:.1} us/volume, min {:.1} ms)",
        ms(cold),
        ms(cold) * 1000.0 / n as f64,
        ms(steady),
        ms(steady) * 1000.0 / n as f64,
        ms(runs[0]),
    );
}

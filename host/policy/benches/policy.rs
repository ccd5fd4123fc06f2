//! Cost of the policy engine: a checked call with one (and three) access policies against
//! none, in the same run, and engine start with 10 policies with a cold and a warm
//! compiled-module cache.
//!
//! `cargo bench -p rvirt-policy` (release build; see docs/performance.md)

use rvirt_policy::{PolicyEngine, PolicyOptions, Request, keys};
use std::path::Path;
use std::time::Instant;

/// A request as rvirtd builds it for `virsh destroy` (subject, operation, object).
fn request(uid: u32) -> Request {
    let mut r = Request::new().with_operation("domain:stop");
    r.set(keys::SUBJECT_UID, uid);
    r.set(keys::SUBJECT_GID, uid);
    r.set(keys::SUBJECT_PID, 4242);
    r.set(keys::SUBJECT_NAME, "virsh");
    r.set(keys::SUBJECT_READONLY, 0);
    r.set(keys::PROCEDURE, "DOMAIN_DESTROY");
    r.set(keys::OBJECT_DRIVER, "test");
    r.set(keys::OBJECT_NAME, "guarded");
    r.set(keys::OBJECT_UUID, "6f1f6c2e-8c0c-4f1a-9a53-2a9d7d0d6f01");
    r
}

fn example(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../sdk/policy/examples")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn engine(dir: &Path, cache: &Path) -> (PolicyEngine, f64) {
    let t = Instant::now();
    let (e, report) = PolicyEngine::new(PolicyOptions {
        dir: dir.to_path_buf(),
        cache_dir: Some(cache.to_path_buf()),
    })
    .expect("engine");
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    (e, ms)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median over `batches` of the mean cost of one call in a batch of `n`, in µs.
fn per_call(batches: usize, n: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..n {
        f();
    }
    let samples = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .collect();
    median(samples)
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let none = tmp.path().join("none");
    let one = tmp.path().join("one");
    let three = tmp.path().join("three");
    for d in [&none, &one, &three] {
        std::fs::create_dir(d).unwrap();
    }
    let deny_stop = example("deny_stop.wat");
    let hide = example("hide_domain.wat");
    std::fs::write(one.join("deny_stop.wat"), &deny_stop).unwrap();
    std::fs::write(three.join("a.wat"), &deny_stop).unwrap();
    std::fs::write(three.join("b.wat"), &hide).unwrap();
    std::fs::write(three.join("c.wat"), deny_stop.replace("65534", "1000")).unwrap();
    let cache = tmp.path().join("cache");

    let (e0, _) = engine(&none, &cache);
    let (e1, _) = engine(&one, &cache);
    let (e3, _) = engine(&three, &cache);
    assert!(!e1.check(request(65534)).is_allow());
    assert!(e1.check(request(0)).is_allow());

    let (batches, n) = (101, 2_000);
    println!("checked call, median of {batches} batches of {n} (µs per call):");
    let pointer = per_call(batches, n, || {
        std::hint::black_box(e0.access_active());
    });
    println!("  no policy, daemon fast path (pointer test):     {pointer:.3}");
    let empty = per_call(batches, n, || {
        std::hint::black_box(e0.check(std::hint::black_box(request(0))));
    });
    println!("  no policy, request built + check():             {empty:.3}");
    let allow1 = per_call(batches, n, || {
        std::hint::black_box(e1.check(std::hint::black_box(request(0))));
    });
    println!(
        "  1 policy (deny_stop.wat), allowed:              {allow1:.3}  (+{:.3} over no policy)",
        allow1 - empty
    );
    let deny1 = per_call(batches, n, || {
        std::hint::black_box(e1.check(std::hint::black_box(request(65534))));
    });
    println!(
        "  1 policy (deny_stop.wat), denied with reason:   {deny1:.3}  (+{:.3})",
        deny1 - empty
    );
    let allow3 = per_call(batches, n, || {
        std::hint::black_box(e3.check(std::hint::black_box(request(0))));
    });
    println!(
        "  3 policies stacked, allowed:                    {allow3:.3}  (+{:.3})",
        allow3 - empty
    );
    // four threads checking at once (instances are pooled per module)
    let e1 = std::sync::Arc::new(e1);
    let t = Instant::now();
    let per_thread = 50_000;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let e = e1.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    std::hint::black_box(e.check(request(0)));
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "  1 policy, 4 threads: {:.0} checks/s in total",
        (4 * per_thread) as f64 / dt
    );

    // engine start with 10 distinct policies
    let ten = tmp.path().join("ten");
    std::fs::create_dir(&ten).unwrap();
    for i in 0..10 {
        let src = if i % 2 == 0 { &deny_stop } else { &hide };
        std::fs::write(
            ten.join(format!("p{i:02}.wat")),
            src.replace("65534", &(60000 + i).to_string()),
        )
        .unwrap();
    }
    let runs = 7;
    let cold: Vec<f64> = (0..runs)
        .map(|i| engine(&ten, &tmp.path().join(format!("cold{i}"))).1)
        .collect();
    let warm_cache = tmp.path().join("warm");
    engine(&ten, &warm_cache);
    let warm: Vec<f64> = (0..runs).map(|_| engine(&ten, &warm_cache).1).collect();
    let (empty_start, _) = (0..runs)
        .map(|i| engine(&none, &tmp.path().join(format!("e{i}"))).1)
        .fold((f64::MAX, ()), |(m, ()), x| (m.min(x), ()));
    println!("engine start, median of {runs} (ms):");
    println!("  no policy:                               {empty_start:.2} (best)");
    println!(
        "  10 policies, cold cache (compile):       {:.2}",
        median(cold)
    );
    println!(
        "  10 policies, warm cache (deserialize):   {:.2}",
        median(warm)
    );
}

//! Engine tests with hand-written WAT modules in a temporary `policy.d`.

use crate::*;
use std::path::Path;
use std::sync::Arc;

/// Imports and helpers every test module starts with: the `rvirt` imports, one page of
/// memory, the version export (`$abi`), and `$str_eq(key, key_len, want, want_len)` which
/// fetches a string field into offset 1024 and compares it with bytes at `want`.
fn module(abi: u32, body: &str) -> String {
    format!(
        r#"(module
  (import "rvirt" "get_i64" (func $get_i64 (param i32 i32) (result i64)))
  (import "rvirt" "get_str" (func $get_str (param i32 i32 i32 i32) (result i32)))
  (import "rvirt" "set_reason" (func $set_reason (param i32 i32)))
  (import "rvirt" "set_xml" (func $set_xml (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "subject.uid")
  (data (i32.const 16) "object.name")
  (data (i32.const 32) "xml")
  (data (i32.const 48) "operation")
  (data (i32.const 64) "hook.point")
  (func (export "rvirt_policy_abi_version") (result i32) (i32.const {abi}))
  (func $str_eq (param $k i32) (param $kl i32) (param $w i32) (param $wl i32) (result i32)
    (local $n i32) (local $i i32)
    (local.set $n (call $get_str (local.get $k) (local.get $kl) (i32.const 1024) (i32.const 1024)))
    (if (i32.ne (local.get $n) (local.get $wl)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.ne (i32.load8_u (i32.add (i32.const 1024) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $w) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))
  {body}
)"#
    )
}

const V1: u32 = 0x1_0000;

/// Denies uid 1000 with a reason, allows everyone else.
fn deny_uid_1000() -> String {
    module(
        V1,
        r#"(data (i32.const 200) "uid 1000 is not welcome")
  (func (export "rvirt_check") (result i32)
    (if (result i32) (i64.eq (call $get_i64 (i32.const 0) (i32.const 11)) (i64.const 1000))
      (then (call $set_reason (i32.const 200) (i32.const 23)) (i32.const 1))
      (else (i32.const 0))))"#,
    )
}

/// Denies the object named "secret".
fn deny_secret() -> String {
    module(
        V1,
        r#"(data (i32.const 200) "secret")
  (func (export "rvirt_check") (result i32)
    (call $str_eq (i32.const 16) (i32.const 11) (i32.const 200) (i32.const 6)))"#,
    )
}

fn check_body(body: &str) -> String {
    module(
        V1,
        &format!("(func (export \"rvirt_check\") (result i32) {body})"),
    )
}

fn allow_all() -> String {
    check_body("(i32.const 0)")
}

fn infinite_loop() -> String {
    check_body("(loop $l (br $l)) (i32.const 0)")
}

fn memory_bomb() -> String {
    check_body("(loop $l (drop (memory.grow (i32.const 16))) (br $l)) (i32.const 0)")
}

fn trapping() -> String {
    check_body("unreachable")
}

fn setup(files: &[(&str, &str)]) -> (tempfile::TempDir, PolicyEngine, LoadReport) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("policy.d");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, files);
    let (engine, report) = PolicyEngine::new(PolicyOptions {
        dir,
        cache_dir: Some(tmp.path().join("cache")),
    })
    .unwrap();
    (tmp, engine, report)
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn req(uid: u32, name: &str) -> Request {
    Request::new()
        .with(keys::SUBJECT_UID, uid)
        .with(keys::OBJECT_NAME, name)
        .with_operation("domain:stop")
}

fn denied_by(d: &Decision) -> Option<&str> {
    match d {
        Decision::Allow => None,
        Decision::Deny(d) => Some(&d.module),
    }
}

#[test]
fn empty_or_missing_dir_allows_everything() {
    let (engine, report) = PolicyEngine::new(PolicyOptions {
        dir: "/nonexistent/policy.d".into(),
        cache_dir: None,
    })
    .unwrap();
    assert!(report.loaded.is_empty() && report.refused.is_empty());
    assert!(!engine.access_active());
    assert_eq!(engine.check(req(1000, "x")), Decision::Allow);
}

#[test]
fn deny_by_uid_with_reason() {
    let (_t, engine, report) = setup(&[("uid.wat", &deny_uid_1000())]);
    assert_eq!(report.loaded, vec!["uid"]);
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert!(engine.check(req(0, "web")).is_allow());
    match engine.check(req(1000, "web")) {
        Decision::Deny(d) => {
            assert_eq!(d.module, "uid");
            assert_eq!(d.reason.as_deref(), Some("uid 1000 is not welcome"));
            assert_eq!(d.failure, None);
            assert_eq!(d.describe(), "policy 'uid': uid 1000 is not welcome");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    // the live instance is reused: many calls, same answers
    for i in 0..200 {
        assert_eq!(
            engine.check(req(1000 + i % 2, "web")).is_allow(),
            i % 2 == 1
        );
    }
}

#[test]
fn string_fields_and_stacking_first_deny_wins() {
    let (_t, engine, report) = setup(&[
        ("a_uid.wat", &deny_uid_1000()),
        ("b_secret.wat", &deny_secret()),
        ("b_secret.toml", "order = 1\n"),
    ]);
    // order 1 runs before the default order 100
    assert_eq!(report.loaded, vec!["b_secret", "a_uid"]);
    assert_eq!(
        denied_by(&engine.check(req(1000, "secret"))),
        Some("b_secret")
    );
    assert_eq!(denied_by(&engine.check(req(1000, "web"))), Some("a_uid"));
    assert_eq!(denied_by(&engine.check(req(0, "secret"))), Some("b_secret"));
    assert_eq!(denied_by(&engine.check(req(0, "secrets"))), None);
}

fn failure_of(d: Decision) -> CallFailure {
    match d {
        Decision::Deny(Denial {
            failure: Some(f), ..
        }) => f,
        other => panic!("expected a failure denial, got {other:?}"),
    }
}

#[test]
fn infinite_loop_is_stopped_by_fuel() {
    let (_t, engine, _) = setup(&[
        ("spin.wat", &infinite_loop()),
        ("spin.toml", "fuel = 100000\n"),
    ]);
    let t = std::time::Instant::now();
    assert_eq!(
        failure_of(engine.check(req(0, "x"))),
        CallFailure::OutOfFuel { fuel: 100000 }
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    // the module is re-instantiated and stopped again
    assert!(!engine.check(req(0, "x")).is_allow());
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline() {
    let (_t, engine, _) = setup(&[
        ("spin.wat", &infinite_loop()),
        ("spin.toml", "fuel = 100000000000000\ntimeout_ms = 30\n"),
    ]);
    let t = std::time::Instant::now();
    assert_eq!(
        failure_of(engine.check(req(0, "x"))),
        CallFailure::Timeout { timeout_ms: 30 }
    );
    let took = t.elapsed();
    assert!(took >= std::time::Duration::from_millis(20), "{took:?}");
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
}

#[test]
fn memory_bomb_is_stopped_at_its_limit() {
    let (_t, engine, _) = setup(&[
        ("bomb.wat", &memory_bomb()),
        ("bomb.toml", "memory_bytes = 1048576\n"),
    ]);
    assert_eq!(
        failure_of(engine.check(req(0, "x"))),
        CallFailure::MemoryLimit { limit: 1 << 20 }
    );
}

#[test]
fn a_module_declaring_too_much_memory_is_refused_at_load() {
    let big = allow_all().replace(
        "(memory (export \"memory\") 1)",
        "(memory (export \"memory\") 64)",
    );
    let (_t, engine, report) = setup(&[("big.wat", &big), ("big.toml", "memory_bytes = 65536\n")]);
    assert!(report.loaded.is_empty());
    assert!(
        report.refused[0].reason.contains("cannot instantiate"),
        "{:?}",
        report.refused
    );
    assert!(!engine.access_active());
}

#[test]
fn trap_is_contained() {
    let (_t, engine, _) = setup(&[("boom.wat", &trapping())]);
    match failure_of(engine.check(req(0, "x"))) {
        CallFailure::Trap(msg) => assert!(msg.contains("unreachable"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_answer_is_a_failure() {
    let (_t, engine, _) = setup(&[("seven.wat", &check_body("(i32.const 7)"))]);
    assert_eq!(
        failure_of(engine.check(req(0, "x"))),
        CallFailure::BadAnswer {
            value: 7,
            expected: "0 allow or 1 deny"
        }
    );
}

#[test]
fn out_of_bounds_pointer_is_a_failure() {
    let (_t, engine, _) = setup(&[(
        "oob.wat",
        &check_body("(drop (call $get_i64 (i32.const 65530) (i32.const 100))) (i32.const 0)"),
    )]);
    match failure_of(engine.check(req(0, "x"))) {
        CallFailure::Trap(msg) => assert!(msg.contains("outside the module's memory"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fail_open_versus_closed() {
    let (_t, engine, _) = setup(&[
        ("open.wat", &trapping()),
        ("open.toml", "fail = \"open\"\n"),
        ("uid.wat", &deny_uid_1000()),
    ]);
    // the open module fails and is ignored; the next module decides
    assert!(engine.check(req(0, "x")).is_allow());
    assert_eq!(denied_by(&engine.check(req(1000, "x"))), Some("uid"));

    let (_t2, closed, _) = setup(&[("closed.wat", &trapping())]);
    let d = closed.check(req(0, "x"));
    assert_eq!(denied_by(&d), Some("closed"));
    if let Decision::Deny(d) = d {
        assert_eq!(d.describe(), "policy 'closed' failed");
    }
}

#[test]
fn wrong_abi_major_and_bad_modules_are_refused_others_load() {
    let (_t, engine, report) = setup(&[
        (
            "v2.wat",
            &module(
                0x2_0000,
                "(func (export \"rvirt_check\") (result i32) (i32.const 0))",
            ),
        ),
        ("uid.wat", &deny_uid_1000()),
        ("junk.wasm", "\0asm garbage"),
        (
            "alien.wat",
            "(module (import \"env\" \"f\" (func)) (memory (export \"memory\") 1)
              (func (export \"rvirt_policy_abi_version\") (result i32) (i32.const 65536))
              (func (export \"rvirt_check\") (result i32) (i32.const 0)))",
        ),
        ("noentry.wat", &module(V1, "")),
        ("badtoml.wat", &allow_all()),
        ("badtoml.toml", "fail = \"sometimes\"\n"),
    ]);
    assert_eq!(report.loaded, vec!["uid"]);
    let reason = |stem: &str| {
        report
            .refused
            .iter()
            .find(|r| r.path.file_stem().unwrap() == stem)
            .unwrap_or_else(|| panic!("{stem} not refused: {:?}", report.refused))
            .reason
            .clone()
    };
    let v2 = reason("v2");
    assert!(
        v2.contains("v2.wat") && v2.contains("built for policy ABI 2.0"),
        "{v2}"
    );
    assert!(reason("junk").contains("not a valid WebAssembly module"));
    assert!(
        reason("alien").contains("imports env.f"),
        "{}",
        reason("alien")
    );
    assert!(reason("noentry").contains("exports neither"));
    assert!(reason("badtoml").contains("badtoml.toml"));
    assert_eq!(denied_by(&engine.check(req(1000, "x"))), Some("uid"));
}

#[test]
fn newer_minor_loads() {
    let (_t, engine, report) = setup(&[(
        "v1_5.wat",
        &module(
            0x1_0005,
            "(func (export \"rvirt_check\") (result i32) (i32.const 1))",
        ),
    )]);
    assert_eq!(report.loaded, vec!["v1_5"]);
    assert_eq!(engine.list()[0].abi, AbiVersion { major: 1, minor: 5 });
}

#[test]
fn list_shows_what_is_loaded() {
    let (_t, engine, _) = setup(&[
        ("uid.wat", &deny_uid_1000()),
        ("h.wat", &hook_module("(i32.const 0)")),
        ("h.toml", "hooks = [\"domain:start\"]\nfail = \"open\"\n"),
    ]);
    let list = engine.list();
    assert_eq!(list.len(), 2);
    assert_eq!((list[0].name.as_str(), list[0].kind), ("uid", Kind::Access));
    assert_eq!(list[0].abi, AbiVersion::HOST);
    assert_eq!(list[0].fail, FailMode::Closed);
    assert_eq!((list[1].name.as_str(), list[1].kind), ("h", Kind::Hook));
    assert_eq!(list[1].hooks, vec![HookPoint::DomainStart]);
    assert_eq!(list[1].fail, FailMode::Open);
}

#[test]
fn reload_swaps_atomically_and_keeps_good_modules() {
    let (t, engine, _) = setup(&[("uid.wat", &deny_uid_1000())]);
    let dir = t.path().join("policy.d");
    assert!(!engine.check(req(1000, "x")).is_allow());
    // callers on other threads keep getting answers while we reload
    let engine = Arc::new(engine);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (e, s) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    // uid 0 is allowed by every version of the set
                    assert!(e.check(req(0, "x")).is_allow());
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::fs::remove_file(dir.join("uid.wat")).unwrap();
    write(
        &dir,
        &[("secret.wat", &deny_secret()), ("broken.wat", "(module")],
    );
    let report = engine.reload().unwrap();
    assert_eq!(report.loaded, vec!["secret"]);
    assert_eq!(report.refused.len(), 1);
    assert_eq!(engine.refused().len(), 1);
    assert!(engine.check(req(1000, "x")).is_allow());
    assert!(!engine.check(req(0, "secret")).is_allow());
    std::thread::sleep(std::time::Duration::from_millis(50));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        assert!(w.join().unwrap() > 0);
    }
    // emptying the directory turns checking off
    std::fs::remove_file(dir.join("secret.wat")).unwrap();
    engine.reload().unwrap();
    assert!(!engine.access_active());
}

#[test]
fn concurrent_callers_get_their_own_answers() {
    let (_t, engine, _) = setup(&[("uid.wat", &deny_uid_1000())]);
    let engine = Arc::new(engine);
    let threads: Vec<_> = (0..4u32)
        .map(|n| {
            let e = engine.clone();
            std::thread::spawn(move || {
                for _ in 0..300 {
                    let uid = 999 + n % 2;
                    assert_eq!(e.check(req(uid, "x")).is_allow(), uid != 1000);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn compiled_modules_come_from_the_cache_the_second_time() {
    let (t, _engine, first) = setup(&[("a.wat", &deny_uid_1000()), ("b.wat", &deny_secret())]);
    assert_eq!(first.cached, 0);
    let (_engine2, second) = PolicyEngine::new(PolicyOptions {
        dir: t.path().join("policy.d"),
        cache_dir: Some(t.path().join("cache")),
    })
    .unwrap();
    assert_eq!(second.cached, 2);
    assert_eq!(second.loaded, vec!["a", "b"]);
}

fn hook_module(body: &str) -> String {
    module(
        V1,
        &format!(
            r#"(data (i32.const 300) "domain:start")
  (data (i32.const 400) "<domain><name>amended</name></domain>")
  (data (i32.const 500) "no start for you")
  (func (export "rvirt_hook") (result i32) {body})"#
        ),
    )
}

#[test]
fn hooks_veto_amend_and_respect_points() {
    let (_t, engine, _) = setup(&[
        // vetoes at domain:start, continues elsewhere
        (
            "a_veto.wat",
            &hook_module(
                "(if (result i32) (call $str_eq (i32.const 64) (i32.const 10) (i32.const 300) (i32.const 12))
                   (then (call $set_reason (i32.const 500) (i32.const 16)) (i32.const 1))
                   (else (i32.const 0)))",
            ),
        ),
        // amends wherever it runs
        (
            "b_amend.wat",
            &hook_module("(call $set_xml (i32.const 400) (i32.const 37)) (i32.const 2)"),
        ),
        ("b_amend.toml", "hooks = [\"domain:define\", \"domain:started\"]\n"),
    ]);
    assert!(engine.hooks_at(HookPoint::DomainDefine));
    let define = engine.hook(
        HookPoint::DomainDefine,
        Request::new().with(keys::XML, "<domain/>"),
    );
    assert_eq!(
        define,
        HookOutcome::Continue {
            xml: Some("<domain><name>amended</name></domain>".into())
        }
    );
    match engine.hook(HookPoint::DomainStart, Request::new()) {
        HookOutcome::Veto(d) => {
            assert_eq!(d.module, "a_veto");
            assert_eq!(d.reason.as_deref(), Some("no start for you"));
        }
        other => panic!("{other:?}"),
    }
    // amending at a point that cannot be amended fails (closed: veto)
    match engine.hook(HookPoint::DomainStarted, Request::new()) {
        HookOutcome::Veto(d) => assert_eq!(
            d.failure,
            Some(CallFailure::AmendNotAllowed {
                point: "domain:started"
            })
        ),
        other => panic!("{other:?}"),
    }
    // no hook at pool:start
    assert_eq!(
        engine.hook(HookPoint::PoolStart, Request::new()),
        HookOutcome::Continue { xml: None }
    );
}

#[test]
fn access_modules_may_not_set_xml() {
    let (_t, engine, _) = setup(&[(
        "sneaky.wat",
        &check_body("(call $set_xml (i32.const 0) (i32.const 3)) (i32.const 0)"),
    )]);
    match failure_of(engine.check(req(0, "x"))) {
        CallFailure::Trap(msg) => assert!(msg.contains("only hook modules"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

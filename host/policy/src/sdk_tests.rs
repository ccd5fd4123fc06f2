//! The SDK's examples (sdk/policy/examples): the C ones compiled with clang by
//! sdk/policy/build.sh, the WAT ones loaded as they are, and both run against requests.
//! Without clang the C test fails (it does not skip): CI installs clang and lld.

use crate::*;
use std::path::PathBuf;
use std::process::Command;

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../sdk/policy")
}

/// Compiles the C examples into `out` with the SDK's build script; panics with the reason
/// when that is impossible.
pub(crate) fn build_c_examples(out: &std::path::Path) {
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let found = Command::new(&clang).arg("--version").output();
    assert!(
        matches!(&found, Ok(o) if o.status.success()),
        "cannot run {clang} ({found:?}): the C policy examples need Debian's clang and lld \
         (apt-get install clang lld); this test fails rather than skip"
    );
    let status = Command::new("bash")
        .arg(sdk_dir().join("build.sh"))
        .arg(out)
        .status()
        .expect("run sdk/policy/build.sh");
    assert!(status.success(), "sdk/policy/build.sh failed: {status}");
}

fn engine_on(dir: PathBuf) -> (PolicyEngine, LoadReport) {
    PolicyEngine::new(PolicyOptions {
        dir,
        cache_dir: None,
    })
    .unwrap()
}

fn access(uid: u32, operation: &str, name: &str) -> Request {
    Request::new()
        .with(keys::SUBJECT_UID, uid)
        .with(keys::OBJECT_NAME, name)
        .with(keys::OBJECT_DRIVER, "test")
        .with_operation(operation)
}

fn reason(d: Decision) -> Option<String> {
    match d {
        Decision::Allow => None,
        Decision::Deny(d) => Some(d.reason.unwrap_or_default()),
    }
}

fn check_access_examples(engine: &PolicyEngine) {
    // deny_stop: uid 65534 may not stop "guarded"
    assert_eq!(
        reason(engine.check(access(65534, "domain:stop", "guarded"))).as_deref(),
        Some("uid 65534 may not stop domain 'guarded'")
    );
    assert!(engine.check(access(0, "domain:stop", "guarded")).is_allow());
    assert!(
        engine
            .check(access(65534, "domain:stop", "other"))
            .is_allow()
    );
    assert!(
        engine
            .check(access(65534, "domain:start", "guarded"))
            .is_allow()
    );
    // hide_domain: "hidden" does not exist for uid 65534
    assert!(
        !engine
            .check(access(65534, "domain:getattr", "hidden"))
            .is_allow()
    );
    assert!(
        !engine
            .check(access(65534, "domain:start", "hidden"))
            .is_allow()
    );
    assert!(
        engine
            .check(access(1000, "domain:getattr", "hidden"))
            .is_allow()
    );
    assert!(
        engine
            .check(access(65534, "network:getattr", "hidden"))
            .is_allow()
    );
}

#[test]
fn c_examples_compile_load_and_decide() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("policy.d");
    build_c_examples(&dir);
    let (engine, report) = engine_on(dir);
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_eq!(report.loaded.len(), 4, "{:?}", report.loaded);
    check_access_examples(&engine);

    // require_description: veto start without <description>
    let no_desc = "<domain type='test'><name>d</name></domain>";
    match engine.hook(
        HookPoint::DomainStart,
        Request::new().with(keys::XML, no_desc),
    ) {
        HookOutcome::Veto(d) => {
            assert_eq!(d.module, "require_description");
            assert!(d.reason.unwrap().contains("<description>"));
        }
        other => panic!("{other:?}"),
    }
    let with_desc = "<domain type='test'><name>d</name><description>web</description></domain>";
    assert_eq!(
        engine.hook(
            HookPoint::DomainStart,
            Request::new().with(keys::XML, with_desc)
        ),
        HookOutcome::Continue { xml: None }
    );

    // add_metadata: a stamp inside <metadata>, created or existing
    let amended = |xml: &str| match engine
        .hook(HookPoint::DomainDefine, Request::new().with(keys::XML, xml))
    {
        HookOutcome::Continue { xml: Some(x) } => x,
        other => panic!("{other:?}"),
    };
    let x = amended(no_desc);
    assert!(
        x.starts_with("<domain type='test'><name>d</name><metadata><stamp:policy xmlns:stamp=")
            && x.ends_with("</stamp:policy></metadata></domain>"),
        "{x}"
    );
    let x = amended("<domain><metadata><a:b xmlns:a='urn:a'/></metadata></domain>");
    assert!(x.contains("<a:b xmlns:a='urn:a'/><stamp:policy"), "{x}");
    // already stamped: no amendment
    assert_eq!(
        engine.hook(HookPoint::DomainDefine, Request::new().with(keys::XML, x)),
        HookOutcome::Continue { xml: None }
    );
}

#[test]
fn wat_examples_load_and_decide() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("policy.d");
    std::fs::create_dir(&dir).unwrap();
    for name in ["deny_stop.wat", "hide_domain.wat"] {
        std::fs::copy(sdk_dir().join("examples").join(name), dir.join(name)).unwrap();
    }
    let (engine, report) = engine_on(dir);
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_eq!(report.loaded, vec!["deny_stop", "hide_domain"]);
    check_access_examples(&engine);
}

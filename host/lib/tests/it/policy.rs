//! Access checks and hooks for embedders (cargo feature `policy` of rvirt-host): a WAT
//! policy attached to connections on `test:///default` with `Connection::with_policy`.
//!
//! `cargo test --workspace` builds rvirt-host with the feature (rvirtd's default `policy`
//! feature turns it on); `cargo test -p rvirt-host` alone does not, and then says so.

#[cfg(not(feature = "policy"))]
#[test]
fn policy_tests_need_the_policy_feature() {
    eprintln!(
        "\n!!! SKIPPED: the embedder policy tests need rvirt-host's `policy` feature: \
         run `cargo test -p rvirt-host --features policy` (or `cargo test --workspace`)\n"
    );
}

#[cfg(feature = "policy")]
mod with_feature {
    use crate::test_plugin_dir;
    use rvirt_host::policy::rvirt_policy::{PolicyEngine, PolicyOptions};
    use rvirt_host::policy::{ACCESS_DENIED, HOOK_SCRIPT_FAILED, Subject};
    use rvirt_host::{Connection, Runtime};
    use std::sync::Arc;

    /// uid 4242 may not stop any domain, and the domain `emb-hidden` does not exist for it.
    const POLICY: &str = r#"
(module
  (import "rvirt" "get_i64" (func $get_i64 (param i32 i32) (result i64)))
  (import "rvirt" "get_str" (func $get_str (param i32 i32 i32 i32) (result i32)))
  (import "rvirt" "set_reason" (func $set_reason (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "subject.uid")    ;; 11
  (data (i32.const 16) "operation")     ;; 9
  (data (i32.const 32) "object.name")   ;; 11
  (data (i32.const 48) "domain:stop")   ;; 11
  (data (i32.const 64) "emb-hidden")    ;; 10
  (data (i32.const 80) "uid 4242 may not stop domains") ;; 29
  (func (export "rvirt_policy_abi_version") (result i32) (i32.const 0x10000))
  (func $field_is (param $key i32) (param $klen i32) (param $want i32) (param $wlen i32) (result i32)
    (local $n i32) (local $i i32)
    (local.set $n (call $get_str (local.get $key) (local.get $klen) (i32.const 1024) (i32.const 256)))
    (if (i32.ne (local.get $n) (local.get $wlen)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.ne (i32.load8_u (i32.add (i32.const 1024) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $want) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))
  (func (export "rvirt_check") (result i32)
    (if (i64.ne (call $get_i64 (i32.const 0) (i32.const 11)) (i64.const 4242))
      (then (return (i32.const 0))))
    (if (call $field_is (i32.const 32) (i32.const 11) (i32.const 64) (i32.const 10))
      (then (return (i32.const 1))))
    (if (i32.eqz (call $field_is (i32.const 16) (i32.const 9) (i32.const 48) (i32.const 11)))
      (then (return (i32.const 0))))
    (call $set_reason (i32.const 80) (i32.const 29))
    (i32.const 1)))
"#;

    /// A define hook that replaces every definition of `emb-amend-me` with a fixed one
    /// (named `emb-amended`), and vetoes the start of `emb-amended`.
    const HOOK: &str = r#"
(module
  (import "rvirt" "get_str" (func $get_str (param i32 i32 i32 i32) (result i32)))
  (import "rvirt" "set_reason" (func $set_reason (param i32 i32)))
  (import "rvirt" "set_xml" (func $set_xml (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "hook.point")     ;; 10
  (data (i32.const 16) "object.name")   ;; 11
  (data (i32.const 32) "domain:define") ;; 13
  (data (i32.const 48) "emb-amend-me")  ;; 12
  (data (i32.const 64) "domain:start")  ;; 12
  (data (i32.const 80) "emb-amended")   ;; 11
  (data (i32.const 96) "no start for amended domains") ;; 28
  (data (i32.const 256) "<domain type='test'><name>emb-amended</name><memory>1024</memory><os><type>hvm</type></os></domain>") ;; 99
  (func (export "rvirt_policy_abi_version") (result i32) (i32.const 0x10000))
  (func $field_is (param $key i32) (param $klen i32) (param $want i32) (param $wlen i32) (result i32)
    (local $n i32) (local $i i32)
    (local.set $n (call $get_str (local.get $key) (local.get $klen) (i32.const 1024) (i32.const 256)))
    (if (i32.ne (local.get $n) (local.get $wlen)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.ne (i32.load8_u (i32.add (i32.const 1024) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $want) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))
  (func (export "rvirt_hook") (result i32)
    (if (i32.and (call $field_is (i32.const 0) (i32.const 10) (i32.const 32) (i32.const 13))
                 (call $field_is (i32.const 16) (i32.const 11) (i32.const 48) (i32.const 12)))
      (then (call $set_xml (i32.const 256) (i32.const 99)) (return (i32.const 2))))
    (if (i32.and (call $field_is (i32.const 0) (i32.const 10) (i32.const 64) (i32.const 12))
                 (call $field_is (i32.const 16) (i32.const 11) (i32.const 80) (i32.const 11)))
      (then (call $set_reason (i32.const 96) (i32.const 28)) (return (i32.const 1))))
    (i32.const 0)))
"#;

    fn engine(files: &[(&str, &str)]) -> (Arc<PolicyEngine>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let (engine, report) = PolicyEngine::new(PolicyOptions {
            dir: dir.path().to_path_buf(),
            cache_dir: None,
        })
        .unwrap();
        assert!(report.refused.is_empty(), "{:?}", report.refused);
        let modules = files.iter().filter(|(n, _)| n.ends_with(".wat")).count();
        assert_eq!(report.loaded.len(), modules);
        (Arc::new(engine), dir)
    }

    fn xml(name: &str) -> String {
        format!(
            "<domain type='test'><name>{name}</name><memory>1024</memory><os><type>hvm</type></os></domain>"
        )
    }

    fn conn() -> Connection {
        Runtime::with_search_path(vec![test_plugin_dir()])
            .open("test:///default", false)
            .unwrap()
    }

    #[test]
    fn a_wat_policy_denies_stop_to_one_uid_and_hides_a_domain() {
        let (engine, _dir) = engine(&[("deny.wat", POLICY)]);
        let plain = conn();
        for name in ["emb-guarded", "emb-hidden"] {
            let mut d = plain.define_xml(&xml(name), 0).unwrap();
            d.create(0).unwrap();
        }
        let user = plain.with_policy(engine.clone(), Subject::current_process().uid(4242));
        let admin = plain.with_policy(engine, Subject::current_process().uid(1000));

        // destroy: denied for 4242 with code 88 naming the permission, before it runs
        let d = user.lookup_domain_by_name("emb-guarded").unwrap();
        let e = d.destroy(0).unwrap_err();
        assert_eq!(e.code(), ACCESS_DENIED, "{e}");
        assert!(e.to_string().contains("'domain:stop'"), "{e}");
        assert!(
            e.to_string().contains("uid 4242 may not stop domains"),
            "{e}"
        );
        assert!(d.is_active().unwrap(), "the denied destroy ran");
        // other calls of that subject go on
        assert!(d.get_xml_desc(0).unwrap().contains("emb-guarded"));

        // the hidden domain: absent from the list, its lookup denied naming getattr
        let names: Vec<String> = user
            .list_all_domains(0)
            .unwrap()
            .iter()
            .map(|d| d.name().to_owned())
            .collect();
        assert!(!names.iter().any(|n| n == "emb-hidden"), "{names:?}");
        assert!(names.iter().any(|n| n == "emb-guarded"), "{names:?}");
        let e = user.lookup_domain_by_name("emb-hidden").unwrap_err();
        assert_eq!(e.code(), ACCESS_DENIED);
        assert!(e.to_string().contains("'domain:getattr'"), "{e}");
        // a handle made by a clone of the checked connection is checked too
        let e = user
            .clone()
            .domain_handle(
                plain
                    .lookup_domain_by_name("emb-hidden")
                    .unwrap()
                    .identity()
                    .clone(),
            )
            .get_state()
            .unwrap_err();
        assert_eq!(e.code(), ACCESS_DENIED);

        // events about the hidden domain are not delivered to that subject
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let sub = user
            .subscribe_events(move |e| sink.lock().unwrap().push(e.domain.name.clone()))
            .unwrap();

        // another uid: sees everything and may stop
        let names: Vec<String> = admin
            .list_all_domains(0)
            .unwrap()
            .iter()
            .map(|d| d.name().to_owned())
            .collect();
        assert!(names.iter().any(|n| n == "emb-hidden"), "{names:?}");
        for name in ["emb-guarded", "emb-hidden"] {
            let d = admin.lookup_domain_by_name(name).unwrap();
            d.destroy(0).unwrap();
            assert!(!d.is_active().unwrap());
            d.undefine(0).unwrap();
        }
        user.unsubscribe_events(sub).unwrap();
        let seen = seen.lock().unwrap().clone();
        assert!(seen.iter().any(|n| n == "emb-guarded"), "{seen:?}");
        assert!(!seen.iter().any(|n| n == "emb-hidden"), "{seen:?}");
    }

    #[test]
    fn hooks_run_for_embedders_define_amends_and_start_vetoes() {
        let (engine, _dir) = engine(&[
            ("amend.wat", HOOK),
            (
                "amend.toml",
                "kind = \"hook\"\nhooks = [\"domain:define\", \"domain:start\"]\n",
            ),
        ]);
        let conn = conn().with_policy(engine, Subject::current_process());
        let mut d = conn.define_xml(&xml("emb-amend-me"), 0).unwrap();
        assert_eq!(d.name(), "emb-amended");
        assert!(conn.lookup_domain_by_name("emb-amend-me").is_err());
        let e = d.create(0).unwrap_err();
        assert_eq!(e.code(), HOOK_SCRIPT_FAILED, "{e}");
        assert!(
            e.to_string().contains("no start for amended domains"),
            "{e}"
        );
        assert!(!d.is_active().unwrap());
        d.undefine(0).unwrap();
    }
}

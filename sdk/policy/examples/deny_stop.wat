;; Access policy: uid 65534 may not stop the domain "guarded" (same as deny_stop.c).
(module
  (import "rvirt" "get_i64" (func $get_i64 (param i32 i32) (result i64)))
  (import "rvirt" "get_str" (func $get_str (param i32 i32 i32 i32) (result i32)))
  (import "rvirt" "set_reason" (func $set_reason (param i32 i32)))
  (memory (export "memory") 1)

  (data (i32.const 0) "subject.uid")    ;; 11
  (data (i32.const 16) "operation")     ;; 9
  (data (i32.const 32) "object.name")   ;; 11
  (data (i32.const 48) "domain:stop")   ;; 11
  (data (i32.const 64) "guarded")       ;; 7
  (data (i32.const 80) "uid 65534 may not stop domain 'guarded'") ;; 39

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
    (if (i64.ne (call $get_i64 (i32.const 0) (i32.const 11)) (i64.const 65534))
      (then (return (i32.const 0))))
    (if (i32.eqz (call $field_is (i32.const 16) (i32.const 9) (i32.const 48) (i32.const 11)))
      (then (return (i32.const 0))))
    (if (i32.eqz (call $field_is (i32.const 32) (i32.const 11) (i32.const 64) (i32.const 7)))
      (then (return (i32.const 0))))
    (call $set_reason (i32.const 80) (i32.const 39))
    (i32.const 1)))

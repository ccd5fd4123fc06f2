//! Access policies and hooks (WASM modules, `rvirt-policy`) through rvirtd, with the real
//! `virsh` and python-libvirt; the restricted client runs as `nobody` (uid 65534) through
//! `setpriv`, everything else as the test's own user (root in CI).

use crate::{Daemon, domain_xml, missing, write_file};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;
const PYTHON: &str = "/usr/bin/python3";

fn no_tools() -> bool {
    missing(
        "virsh (libvirt-clients)",
        Command::new("virsh").arg("--version"),
    ) || missing(
        "python3-libvirt",
        Command::new(PYTHON).args(["-c", "import libvirt"]),
    ) || missing(
        "setpriv (util-linux)",
        Command::new("setpriv").arg("--version"),
    )
}

/// The SDK's C examples compiled once per test process (sdk/policy/build.sh; clang
/// required: without it this panics with the reason).
fn c_examples() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = rvirt_tests::process_temp_dir("rvirt-policy-it", "");
        let script = rvirt_tests::workspace_root().join("sdk/policy/build.sh");
        let st = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .status()
            .expect("run sdk/policy/build.sh");
        assert!(
            st.success(),
            "sdk/policy/build.sh failed ({st}): the C policy examples need clang and lld \
             (apt-get install clang lld)"
        );
        out
    })
}

fn sdk_example(name: &str) -> PathBuf {
    rvirt_tests::workspace_root()
        .join("sdk/policy/examples")
        .join(name)
}

/// A daemon whose policy directory is `policy_dir` (prepared before start), whose
/// read-write socket `nobody` can reach.
fn daemon(policy_dir: &Path) -> Daemon {
    let d = Daemon::start_with_config(&format!(
        "unix_sock_rw_perms = \"0777\"\npolicy_dir = \"{}\"\n",
        policy_dir.display()
    ));
    open_up(&d);
    d
}

/// Lets uid 65534 reach the sockets under the test's private root.
fn open_up(d: &Daemon) {
    for dir in [d.root.path().to_path_buf(), d.root.path().join("run")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn policy_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rvirt-policy.d.")
        .tempdir()
        .unwrap()
}

fn copy(from: &Path, dir: &Path) {
    std::fs::copy(from, dir.join(from.file_name().unwrap())).unwrap();
}

/// A home directory `nobody` may write (virsh keeps a history and a cache there).
fn nobody_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let p = rvirt_tests::process_temp_dir("rvirt-nobody", "");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        p
    })
}

/// `cmd args...` as uid/gid 65534 without supplementary groups.
fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        program,
    ])
    .env("HOME", nobody_home())
    .env("XDG_CACHE_HOME", nobody_home())
    .env("XDG_CONFIG_HOME", nobody_home());
    c
}

fn virsh(uri: &str, args: &[&str]) -> Output {
    Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .expect("run virsh")
}

fn virsh_nobody(uri: &str, args: &[&str]) -> Output {
    as_nobody("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .expect("run virsh as nobody")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "expected success: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn denied(o: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success() && stderr.contains("access denied") && stderr.contains(what),
        "expected an access denial naming {what}: {}",
        text(&o)
    );
    stderr
}

fn define_and_start(uri: &str, root: &Path, name: &str, start: bool) {
    let f = write_file(root, &format!("{name}.xml"), &domain_xml(name));
    ok(virsh(uri, &["define", f.to_str().unwrap()]));
    if start {
        ok(virsh(uri, &["start", name]));
    }
}

fn run_python_nobody(script: &str, uri: &str) -> Output {
    as_nobody(PYTHON)
        .args(["-c", script, uri])
        .output()
        .expect("run python3 as nobody")
}

#[test]
fn c_policy_denies_stop_of_one_domain_to_one_user() {
    if no_tools() {
        return;
    }
    let dir = policy_dir();
    copy(&c_examples().join("deny_stop.wasm"), dir.path());
    let d = daemon(dir.path());
    let uri = d.uri();
    for name in ["guarded", "other"] {
        define_and_start(&uri, d.root.path(), name, true);
    }
    // nobody: stopping "guarded" is denied, naming the permission; the rest is allowed
    let e = denied(virsh_nobody(&uri, &["destroy", "guarded"]), "domain:stop");
    assert!(
        e.contains("uid 65534 may not stop domain 'guarded'"),
        "the policy's reason reaches the client: {e}"
    );
    let state = ok(virsh_nobody(&uri, &["domstate", "guarded"]));
    assert_eq!(state.trim(), "running");
    ok(virsh_nobody(&uri, &["destroy", "other"]));
    ok(virsh_nobody(&uri, &["suspend", "guarded"]));
    ok(virsh_nobody(&uri, &["resume", "guarded"]));
    // python-libvirt sees VIR_ERR_ACCESS_DENIED (88)
    let out = run_python_nobody(
        r#"
import sys, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
conn = libvirt.open(sys.argv[1])
dom = conn.lookupByName("guarded")
try:
    dom.destroy()
    raise SystemExit("destroy was allowed")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_ACCESS_DENIED, e.get_error_code()
    assert "domain:stop" in str(e), str(e)
assert dom.isActive() == 1
conn.lookupByName("test").suspend()
conn.lookupByName("test").resume()
print("python ok")
"#,
        &uri,
    );
    assert!(ok(out).contains("python ok"));
    // root is not restricted
    ok(virsh(&uri, &["destroy", "guarded"]));
}

#[test]
fn wat_policy_hides_a_domain_from_one_users_list() {
    if no_tools() {
        return;
    }
    let dir = policy_dir();
    copy(&sdk_example("hide_domain.wat"), dir.path());
    let d = daemon(dir.path());
    let uri = d.uri();
    define_and_start(&uri, d.root.path(), "hidden", false);
    define_and_start(&uri, d.root.path(), "visible", false);

    let mine = ok(virsh(&uri, &["list", "--all"]));
    assert!(
        mine.contains("hidden") && mine.contains("visible"),
        "{mine}"
    );
    let theirs = ok(virsh_nobody(&uri, &["list", "--all"]));
    assert!(
        !theirs.contains("hidden") && theirs.contains("visible") && theirs.contains("test"),
        "{theirs}"
    );
    let names = ok(virsh_nobody(&uri, &["list", "--all", "--name"]));
    assert!(!names.contains("hidden"), "{names}");
    // virsh hides the lookup's error behind its own "failed to get domain"
    let o = virsh_nobody(&uri, &["dominfo", "hidden"]);
    assert!(!o.status.success(), "{}", text(&o));
    // the old-style calls are filtered too (python-libvirt's listDefinedDomains), and a
    // lookup is denied naming the permission
    let out = run_python_nobody(
        r#"
import sys, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
conn = libvirt.open(sys.argv[1])
defined = conn.listDefinedDomains()
assert "hidden" not in defined and "visible" in defined, defined
assert conn.numOfDefinedDomains() == len(defined), (conn.numOfDefinedDomains(), defined)
assert "hidden" not in [d.name() for d in conn.listAllDomains()]
try:
    conn.lookupByName("hidden")
    raise SystemExit("lookup of the hidden domain succeeded")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_ACCESS_DENIED, e.get_error_code()
    assert "domain:getattr" in str(e), str(e)
print("python ok")
"#,
        &uri,
    );
    assert!(ok(out).contains("python ok"));

    // events about the hidden domain are not delivered to that user either
    let mut watcher = as_nobody(PYTHON)
        .args([
            "-c",
            r#"
import sys, threading, time, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
libvirt.virEventRegisterDefaultImpl()
def loop():
    while True:
        libvirt.virEventRunDefaultImpl()
threading.Thread(target=loop, daemon=True).start()
conn = libvirt.open(sys.argv[1])
seen = []
conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                            lambda c, d, e, x, o: seen.append(d.name()), None)
print("ready", flush=True)
end = time.time() + 10
while "visible" not in seen and time.time() < end:
    time.sleep(0.05)
time.sleep(0.3)
print(" ".join(sorted(set(seen))), flush=True)
"#,
            &uri,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    ok(virsh(&uri, &["start", "hidden"]));
    ok(virsh(&uri, &["start", "visible"]));
    let seen = lines.next().unwrap().unwrap();
    assert_eq!(seen, "visible", "events the user saw: {seen}");
    assert!(watcher.wait().unwrap().success());
}

/// An access module that misbehaves (`bad`, a WAT instruction sequence) only when uid
/// 65534 asks for `operation`, and allows everything else.
fn misbehaving(operation: &str, bad: &str) -> String {
    format!(
        r#"(module
  (import "rvirt" "get_i64" (func $get_i64 (param i32 i32) (result i64)))
  (import "rvirt" "get_str" (func $get_str (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "subject.uid")
  (data (i32.const 16) "operation")
  (data (i32.const 32) "{operation}")
  (func (export "rvirt_policy_abi_version") (result i32) (i32.const 0x10000))
  (func $is_op (result i32)
    (local $n i32) (local $i i32)
    (local.set $n (call $get_str (i32.const 16) (i32.const 9) (i32.const 1024) (i32.const 256)))
    (if (i32.ne (local.get $n) (i32.const {len})) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.ne (i32.load8_u (i32.add (i32.const 1024) (local.get $i)))
                    (i32.load8_u (i32.add (i32.const 32) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))
  (func (export "rvirt_check") (result i32)
    (if (i64.ne (call $get_i64 (i32.const 0) (i32.const 11)) (i64.const {NOBODY}))
      (then (return (i32.const 0))))
    (if (i32.eqz (call $is_op)) (then (return (i32.const 0))))
    {bad}
    (i32.const 0)))"#,
        len = operation.len()
    )
}

#[test]
fn runaway_modules_are_stopped_while_other_clients_work() {
    if no_tools() {
        return;
    }
    let dir = policy_dir();
    let p = dir.path();
    std::fs::write(
        p.join("spin.wat"),
        misbehaving("domain:stop", "(loop $l (br $l))"),
    )
    .unwrap();
    std::fs::write(p.join("spin.toml"), "fuel = 2000000\n").unwrap();
    std::fs::write(
        p.join("bomb.wat"),
        misbehaving(
            "domain:suspend",
            "(loop $l (drop (memory.grow (i32.const 1))) (br $l))",
        ),
    )
    .unwrap();
    std::fs::write(p.join("bomb.toml"), "memory_bytes = 1048576\n").unwrap();
    std::fs::write(
        p.join("trap_closed.wat"),
        misbehaving("domain:write", "unreachable"),
    )
    .unwrap();
    std::fs::write(
        p.join("trap_open.wat"),
        misbehaving("domain:read", "unreachable"),
    )
    .unwrap();
    std::fs::write(p.join("trap_open.toml"), "fail = \"open\"\n").unwrap();
    let d = daemon(p);
    let uri = d.uri();

    // another client works through all of it on one long-lived connection
    let busy = Command::new(PYTHON)
        .args([
            "-c",
            r#"
import sys, time, libvirt
conn = libvirt.open(sys.argv[1])
n = 0
end = time.time() + float(sys.argv[2])
while time.time() < end:
    dom = conn.lookupByName("test")
    assert dom.info()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert "test" in [d.name() for d in conn.listAllDomains()]
    n += 1
print(n)
"#,
            &uri,
            "6",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    let t = Instant::now();
    // infinite loop: out of fuel, fail closed
    let e = denied(virsh_nobody(&uri, &["destroy", "test"]), "domain:stop");
    assert!(e.contains("policy 'spin' failed"), "{e}");
    // memory bomb: past 1 MiB, fail closed
    let e = denied(virsh_nobody(&uri, &["suspend", "test"]), "domain:suspend");
    assert!(e.contains("policy 'bomb' failed"), "{e}");
    // trap, fail closed
    let e = denied(virsh_nobody(&uri, &["autostart", "test"]), "domain:write");
    assert!(e.contains("policy 'trap_closed' failed"), "{e}");
    // trap, fail open: the read is allowed
    let info = ok(virsh_nobody(&uri, &["dominfo", "test"]));
    assert!(info.contains("running"), "{info}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the stopped modules took {:?}",
        t.elapsed()
    );
    // and again: the failed instances were replaced
    denied(virsh_nobody(&uri, &["destroy", "test"]), "domain:stop");

    let out = busy.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the other client failed: {}",
        text(&out)
    );
    let calls: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(calls > 10, "the other client made only {calls} rounds");
    // the daemon is alive and the domain untouched
    assert_eq!(ok(virsh(&uri, &["domstate", "test"])).trim(), "running");
}

#[test]
fn wrong_abi_module_is_refused_and_the_others_load() {
    if no_tools() {
        return;
    }
    let dir = policy_dir();
    copy(&c_examples().join("deny_stop.wasm"), dir.path());
    std::fs::write(
        dir.path().join("future.wat"),
        "(module (memory (export \"memory\") 1)
           (func (export \"rvirt_policy_abi_version\") (result i32) (i32.const 0x20000))
           (func (export \"rvirt_check\") (result i32) (i32.const 1)))",
    )
    .unwrap();
    std::fs::write(dir.path().join("garbage.wasm"), b"\0asm\x01\0\0\0garbage").unwrap();
    let d = daemon(dir.path());
    let uri = d.uri();
    define_and_start(&uri, d.root.path(), "guarded", true);
    // the refused module (which denies everything) is not in force; deny_stop is
    ok(virsh_nobody(&uri, &["list", "--all"]));
    denied(virsh_nobody(&uri, &["destroy", "guarded"]), "domain:stop");
    let status = std::fs::read_to_string(d.root.path().join("run/policy-status")).unwrap();
    assert!(
        status.contains("deny_stop") && status.contains("access"),
        "{status}"
    );
    assert!(
        status.contains("future.wat: built for policy ABI 2.0"),
        "the refusal names the file and the version: {status}"
    );
    assert!(status.contains("garbage.wasm"), "{status}");
    // `rvirt policy list` shows the same
    let list = Command::new(rvirt_tests::built("rvirt"))
        .args(["policy", "list", "--root"])
        .arg(d.root.path())
        .output()
        .unwrap();
    let shown = ok(list);
    assert!(
        shown.contains("deny_stop") && shown.contains("ABI 2.0"),
        "{shown}"
    );
}

#[test]
fn sighup_reloads_without_dropping_a_client() {
    if no_tools() {
        return;
    }
    // the default location under --root: DIR/etc/rvirt/policy.d
    let d = Daemon::start_with_config("unix_sock_rw_perms = \"0777\"\n");
    open_up(&d);
    let uri = d.uri();
    define_and_start(&uri, d.root.path(), "guarded", true);
    let status_file = d.root.path().join("run/policy-status");
    let status = std::fs::read_to_string(&status_file).unwrap();
    assert!(status.contains("no module loaded"), "{status}");

    let mut client = as_nobody(PYTHON)
        .args([
            "-c",
            r#"
import sys, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
conn = libvirt.open(sys.argv[1])
dom = conn.lookupByName("guarded")
dom.suspend(); dom.resume()
print("ready", flush=True)
sys.stdin.readline()
try:
    dom.destroy()
    print("allowed", flush=True)
except libvirt.libvirtError as e:
    print("denied", e.get_error_code(), flush=True)
print("alive", conn.getVersion() > 0, dom.isActive(), flush=True)
"#,
            &uri,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");

    let dir = d.root.path().join("etc/rvirt/policy.d");
    std::fs::create_dir_all(&dir).unwrap();
    copy(&c_examples().join("deny_stop.wasm"), &dir);
    let pid = rustix::process::Pid::from_raw(d.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = std::fs::read_to_string(&status_file).unwrap_or_default();
        if s.contains("deny_stop") {
            break;
        }
        assert!(Instant::now() < deadline, "no reload after SIGHUP: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdin = client.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "denied 88");
    assert_eq!(lines.next().unwrap().unwrap(), "alive True 1");
    assert!(client.wait().unwrap().success());

    // `rvirt policy reload` does the same: removing the module lifts the denial
    std::fs::remove_file(dir.join("deny_stop.wasm")).unwrap();
    let out = Command::new(rvirt_tests::built("rvirt"))
        .args(["policy", "reload", "--root"])
        .arg(d.root.path())
        .output()
        .unwrap();
    let shown = ok(out);
    assert!(shown.contains("no module loaded"), "{shown}");
    ok(virsh_nobody(&uri, &["destroy", "guarded"]));
}

#[test]
fn hooks_veto_start_without_description_and_stamp_metadata_on_define() {
    if no_tools() {
        return;
    }
    let dir = policy_dir();
    for f in [
        "require_description.wasm",
        "require_description.toml",
        "add_metadata.wasm",
        "add_metadata.toml",
    ] {
        copy(&c_examples().join(f), dir.path());
    }
    let d = daemon(dir.path());
    let uri = d.uri();
    let root = d.root.path();

    // define: the hook amends the XML, dumpxml shows the stamp
    let plain = write_file(root, "plain.xml", &domain_xml("plain"));
    ok(virsh(&uri, &["define", plain.to_str().unwrap()]));
    let xml = ok(virsh(&uri, &["dumpxml", "plain"]));
    assert!(
        xml.contains("https://rvirt.example/policy-stamp") && xml.contains("defined under policy"),
        "{xml}"
    );
    // start without <description>: vetoed with the hook's reason
    let out = virsh(&uri, &["start", "plain"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && stderr.contains("must have a <description> to start"),
        "{}",
        text(&out)
    );
    assert_eq!(ok(virsh(&uri, &["domstate", "plain"])).trim(), "shut off");
    // with a description it starts
    let described =
        domain_xml("described").replace("</name>", "</name><description>web server</description>");
    let f = write_file(root, "described.xml", &described);
    ok(virsh(&uri, &["define", f.to_str().unwrap()]));
    ok(virsh(&uri, &["start", "described"]));
    // python-libvirt sees the veto too
    let out = Command::new(PYTHON)
        .args([
            "-c",
            r#"
import sys, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
conn = libvirt.open(sys.argv[1])
try:
    conn.lookupByName("plain").create()
    raise SystemExit("start was allowed")
except libvirt.libvirtError as e:
    assert "<description>" in str(e), str(e)
print("python ok")
"#,
            &uri,
        ])
        .output()
        .unwrap();
    assert!(ok(out).contains("python ok"));
}

/// A hook module that vetoes every call, with the reason `recorded`: each call shows in
/// the daemon's log as a warning naming the module and the point (stopped and release
/// happen after the fact, so their veto is only logged).
const VETO_ALL: &str = r#"
(module
  (import "rvirt" "set_reason" (func $set_reason (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "recorded")
  (func (export "rvirt_policy_abi_version") (result i32) (i32.const 0x10000))
  (func (export "rvirt_hook") (result i32)
    (call $set_reason (i32.const 0) (i32.const 8))
    (i32.const 1)))
"#;

/// How many times the log says hook `module` vetoed `point`.
fn vetoes(log: &str, module: &str, point: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(&format!("hook '{module}' vetoed {point},")))
        .count()
}

/// Waits until `module` vetoed `point` `n` times (5 s at most), then a moment more to
/// catch a duplicate; returns the final count.
fn settle(d: &Daemon, module: &str, point: &str, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while vetoes(&d.log(), module, point) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    vetoes(&d.log(), module, point)
}

#[test]
fn stopped_and_release_hooks_run_once_for_every_stop_even_without_a_destroy_call() {
    if no_tools() {
        return;
    }
    let dir = policy_dir();
    std::fs::write(dir.path().join("recorder.wat"), VETO_ALL).unwrap();
    std::fs::write(
        dir.path().join("recorder.toml"),
        "kind = \"hook\"\nhooks = [\"domain:stopped\", \"domain:release\"]\n",
    )
    .unwrap();
    let d =
        Daemon::start_logged_with_config(&format!("policy_dir = \"{}\"\n", dir.path().display()));
    let uri = d.uri();
    define_and_start(&uri, d.root.path(), "stopper", true);

    // a client's destroy: the hooks run in the call, and not again for the driver's event
    ok(virsh(&uri, &["destroy", "stopper"]));
    assert_eq!(
        settle(&d, "recorder", "domain:stopped", 1),
        1,
        "{}",
        d.log()
    );
    assert_eq!(
        settle(&d, "recorder", "domain:release", 1),
        1,
        "{}",
        d.log()
    );

    // a stop without DOMAIN_DESTROY (the test driver's guest "powers off" at once on a
    // shutdown request, as a guest answering ACPI would): the daemon's own subscription
    // to the driver's lifecycle events runs stopped, then release
    ok(virsh(&uri, &["start", "stopper"]));
    ok(virsh(&uri, &["shutdown", "stopper"]));
    assert_eq!(ok(virsh(&uri, &["domstate", "stopper"])).trim(), "shut off");
    assert_eq!(
        settle(&d, "recorder", "domain:stopped", 2),
        2,
        "{}",
        d.log()
    );
    assert_eq!(
        settle(&d, "recorder", "domain:release", 2),
        2,
        "{}",
        d.log()
    );
    let log = d.log();
    let lines: Vec<&str> = log.lines().collect();
    let stopped = lines
        .iter()
        .rposition(|l| l.contains("vetoed domain:stopped,"))
        .unwrap();
    let release = lines
        .iter()
        .rposition(|l| l.contains("vetoed domain:release,"))
        .unwrap();
    assert!(stopped < release, "stopped must run before release: {log}");
    assert!(
        lines[stopped].contains("stopper"),
        "the watcher's warning names the domain: {log}"
    );
}

/// A hook module for `domain:migrate`: vetoes incoming domains named `refused`, amends
/// those named `mangled` into a document that is no domain, lets the others go on.
const MIGRATE_HOOK: &str = r#"
(module
  (import "rvirt" "get_str" (func $get_str (param i32 i32 i32 i32) (result i32)))
  (import "rvirt" "set_reason" (func $set_reason (param i32 i32)))
  (import "rvirt" "set_xml" (func $set_xml (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "object.name")    ;; 11
  (data (i32.const 16) "refused")       ;; 7
  (data (i32.const 32) "mangled")       ;; 7
  (data (i32.const 48) "no incoming migration of 'refused' here") ;; 39
  (data (i32.const 96) "<network/>")    ;; 10
  (func (export "rvirt_policy_abi_version") (result i32) (i32.const 0x10000))
  (func $name_is (param $want i32) (param $wlen i32) (result i32)
    (local $n i32) (local $i i32)
    (local.set $n (call $get_str (i32.const 0) (i32.const 11) (i32.const 1024) (i32.const 256)))
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
    (if (call $name_is (i32.const 16) (i32.const 7))
      (then (call $set_reason (i32.const 48) (i32.const 39)) (return (i32.const 1))))
    (if (call $name_is (i32.const 32) (i32.const 7))
      (then (call $set_xml (i32.const 96) (i32.const 10)) (return (i32.const 2))))
    (i32.const 0)))
"#;

#[test]
fn migrate_hook_vetoes_incoming_migrations_and_the_rest_reaches_the_driver() {
    use crate::protocol::{Raw, error_of};
    use rvirt_wire::RemoteProcedure as P;
    use rvirt_wire::protocol::{TypedParam, TypedParamValue, error_code};
    use rvirt_wire::remote::{DomainMigratePrepare3Args, DomainMigratePrepare3ParamsArgs};

    let dir = policy_dir();
    std::fs::write(dir.path().join("incoming.wat"), MIGRATE_HOOK).unwrap();
    std::fs::write(
        dir.path().join("incoming.toml"),
        "kind = \"hook\"\nhooks = [\"domain:migrate\"]\n",
    )
    .unwrap();
    let d = daemon(dir.path());
    let mut c = Raw::connect(&d.socket());
    c.open();
    let params = |name: &str| DomainMigratePrepare3ParamsArgs {
        params: vec![TypedParam {
            field: "destination_xml".into(),
            value: TypedParamValue::String(domain_xml(name)),
        }],
        cookie_in: Vec::new(),
        flags: 0,
    };

    // vetoed: the hook's reason reaches the client (VIR_ERR_HOOK_SCRIPT_FAILED)
    let e = error_of(&c.call(P::DomainMigratePrepare3Params, &params("refused")));
    assert_eq!(e.code, 70, "{e:?}");
    assert!(
        e.message
            .as_deref()
            .unwrap_or("")
            .contains("no incoming migration of 'refused' here"),
        "{e:?}"
    );
    let e = error_of(&c.call(
        P::DomainMigratePrepare3,
        &DomainMigratePrepare3Args {
            dom_xml: domain_xml("refused"),
            ..Default::default()
        },
    ));
    assert_eq!(e.code, 70, "{e:?}");

    // amended into something that is no domain: refused like a client's bad XML
    let e = error_of(&c.call(P::DomainMigratePrepare3Params, &params("mangled")));
    assert_eq!(e.code, error_code::XML_ERROR, "{e:?}");
    assert!(
        e.message.as_deref().unwrap_or("").contains("migrate hook"),
        "{e:?}"
    );

    // not vetoed: the call goes on to the driver, which does not migrate (the test
    // plugin's default answer for the typed-parameter procedure; the daemon's for the
    // old one)
    for p in [P::DomainMigratePrepare3Params, P::DomainMigratePrepare3] {
        let f = if p == P::DomainMigratePrepare3 {
            c.call(
                p,
                &DomainMigratePrepare3Args {
                    dom_xml: domain_xml("welcome"),
                    ..Default::default()
                },
            )
        } else {
            c.call(p, &params("welcome"))
        };
        let e = error_of(&f);
        let m = e.message.clone().unwrap_or_default();
        assert_eq!(e.code, error_code::NO_SUPPORT, "{e:?}");
        assert!(
            m.contains(if p == P::DomainMigratePrepare3 {
                "virDomainMigratePrepare3 "
            } else {
                "virDomainMigratePrepare3Params"
            }) && m.contains("driver 'test'"),
            "{m}"
        );
    }
    // the connection is still fine
    assert!(!c.get_type().is_empty());
}

/// The pid of the QEMU whose command line names `needle` (a path under a daemon's root).
fn qemu_pid(needle: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let e = e.ok()?;
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.starts_with("qemu-system") || cmd.contains("/qemu-system"))
            .then_some(())
            .filter(|()| cmd.contains(needle))
            .map(|()| pid)
    })
}

#[test]
fn a_qemu_killed_behind_the_daemons_back_runs_stopped_then_release() {
    if no_tools()
        || missing(
            "qemu-system-x86_64",
            Command::new("qemu-system-x86_64").arg("--version"),
        )
    {
        return;
    }
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        bin_dir.join("librvirt_plugin_qemu.so").is_file(),
        "the qemu plugin is missing next to rvirtd: run `cargo build --workspace` first"
    );
    let g = rvirt_tests::guest();
    let dir = policy_dir();
    std::fs::write(dir.path().join("recorder.wat"), VETO_ALL).unwrap();
    std::fs::write(
        dir.path().join("recorder.toml"),
        "kind = \"hook\"\nhooks = [\"domain:stopped\", \"domain:release\"]\n",
    )
    .unwrap();
    let d =
        Daemon::start_logged_with_config(&format!("policy_dir = \"{}\"\n", dir.path().display()));
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let root = d.root.path().to_path_buf();
    let xml = format!(
        "<domain type='qemu'><name>hookguest</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
         <cmdline>console=ttyS0 quiet panic=-1</cmdline></os><features><acpi/></features>\
         <devices><serial type='file'><source path='{s}'/></serial></devices></domain>",
        k = g.join("vmlinux").display(),
        i = g.join("initrd.img").display(),
        s = root.join("serial.log").display(),
    );
    let file = write_file(&root, "hookguest.xml", &xml);
    ok(virsh(&uri, &["define", file.to_str().unwrap()]));
    ok(virsh(&uri, &["start", "hookguest"]));
    let pid = qemu_pid(root.to_str().unwrap()).expect("the guest's QEMU process");

    // QEMU dies on SIGTERM: no client call stopped it
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::TERM,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while ok(virsh(&uri, &["domstate", "hookguest"])).trim() != "shut off" {
        assert!(Instant::now() < deadline, "the domain did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        settle(&d, "recorder", "domain:stopped", 1),
        1,
        "{}",
        d.log()
    );
    assert_eq!(
        settle(&d, "recorder", "domain:release", 1),
        1,
        "{}",
        d.log()
    );
    let log = d.log();
    let lines: Vec<&str> = log.lines().collect();
    let stopped = lines
        .iter()
        .position(|l| l.contains("vetoed domain:stopped,"))
        .unwrap();
    let release = lines
        .iter()
        .position(|l| l.contains("vetoed domain:release,"))
        .unwrap();
    assert!(stopped < release, "stopped runs before release: {log}");
    assert!(lines[stopped].contains("hookguest"), "{log}");
    ok(virsh(&uri, &["undefine", "hookguest"]));
}

//! Integration tests of the QEMU driver plugin: real QEMU processes (TCG), driven through
//! `rvirt_host::Runtime` and the built `rvirt` binary.
//!
//! They need `cargo build --workspace` first (the plugin `.so` and `rvirt`), QEMU, OVMF
//! and the test guest (`shared/guest/build-guest.sh`, run by the tests themselves). A
//! missing QEMU fails loudly unless `RVIRT_ALLOW_SKIP=1`.

use rvirt_host::{Connection, DomainState, Runtime};
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

mod hardening;

const QEMU: &str = "/usr/bin/qemu-system-x86_64";

use rvirt_tests::profile_dir;

mod bridge;
mod graphics_caps_flags;

/// `false` (after a loud message) when QEMU is missing and skipping is allowed.
fn qemu_present() -> bool {
    if Path::new(QEMU).is_file() {
        return true;
    }
    let msg = format!(
        "{QEMU} is missing: install it with `apt-get install -y qemu-system-x86 qemu-utils ovmf xz-utils`"
    );
    if std::env::var("RVIRT_ALLOW_SKIP").as_deref() == Ok("1") {
        eprintln!("\n!!!!! SKIPPED (RVIRT_ALLOW_SKIP=1): {msg}\n");
        false
    } else {
        panic!("{msg} (set RVIRT_ALLOW_SKIP=1 to skip)");
    }
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let so = profile_dir().join("librvirt_plugin_qemu.so");
        assert!(
            so.is_file(),
            "the qemu plugin {} is missing: run `cargo build --workspace` before the tests",
            so.display()
        );
        let dir = rvirt_tests::process_temp_dir("rvirt-qemu-it-plugins", "");
        std::fs::copy(&so, dir.join("librvirt_plugin_qemu.so")).unwrap();
        Runtime::with_search_path(vec![dir])
    })
}

use rvirt_tests::guest;

/// A fresh embed root (short path: unix socket paths are limited to 108 bytes).
fn root(tag: &str) -> PathBuf {
    let r = PathBuf::from(format!("/tmp/rvq-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&r);
    std::fs::create_dir_all(&r).unwrap();
    r
}

fn uri(root: &Path) -> String {
    format!("qemu:///embed?root={}", root.display())
}

fn guest_xml(name: &str, dir: &Path, extra_devices: &str) -> String {
    let g = guest();
    let disk = dir.join("disk.raw");
    std::fs::copy(g.join("disk.raw"), &disk).unwrap();
    format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
         <cmdline>console=ttyS0 quiet panic=-1</cmdline></os><features><acpi/></features>\
         <on_reboot>destroy</on_reboot><devices>\
         <serial type='file'><source path='{s}'/></serial>\
         <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{d}'/><target dev='vda' bus='virtio'/></disk>\
         <interface type='user'><mac address='52:54:00:12:34:56'/><model type='virtio'/></interface>{extra_devices}\
         </devices></domain>",
        k = g.join("vmlinux").display(),
        i = g.join("initrd.img").display(),
        s = dir.join("serial.log").display(),
        d = disk.display(),
    )
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn serial(dir: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(dir.join("serial.log")).unwrap_or_default()).into_owned()
}

fn events(conn: &Connection) -> Arc<Mutex<Vec<(String, i32)>>> {
    let ev = Arc::new(Mutex::new(Vec::new()));
    let e = ev.clone();
    conn.subscribe_events(move |x| {
        e.lock()
            .unwrap()
            .push((x.event_str().to_string(), x.detail))
    })
    .unwrap();
    ev
}

fn status_pid(root: &Path, name: &str) -> i32 {
    let s =
        std::fs::read_to_string(root.join(format!("run/qemu/{name}.status"))).expect("status file");
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["version"], 1);
    v["pid"].as_i64().unwrap() as i32
}

#[test]
fn guest_boots_suspends_resumes_and_shuts_down_by_acpi() {
    if !qemu_present() {
        return;
    }
    let r = root("boot");
    let conn = runtime().open(&uri(&r), false).unwrap();
    let ev = events(&conn);
    let mut d = conn.define_xml(&guest_xml("boot", &r, ""), 0).unwrap();
    assert!(
        r.join("etc/qemu/boot.xml").is_file(),
        "persistent config written under the root"
    );
    d.create(0).unwrap();
    assert_eq!(d.get_state().unwrap(), (DomainState::Running, 1));
    wait_for("GUEST-READY", Duration::from_secs(90), || {
        serial(&r).contains("GUEST-READY")
    });
    let out = serial(&r);
    assert!(out.contains("DISK-MARKER: VIRT-DISK-MARKER"), "{out}");
    assert!(
        out.contains("GUEST-NET: eth0 mac=52:54:00:12:34:56"),
        "{out}"
    );
    let live = d.get_xml_desc(0).unwrap();
    assert!(
        live.contains("<alias name='virtio-disk0'/>") && live.contains("bus='0x00' slot="),
        "{live}"
    );
    let info = d.get_info().unwrap();
    assert_eq!(info.max_mem_kib, 262144);
    assert!(info.cpu_time_ns > 0, "cpu time from /proc");
    d.suspend().unwrap();
    assert_eq!(d.get_state().unwrap(), (DomainState::Paused, 1));
    d.resume().unwrap();
    assert_eq!(d.get_state().unwrap().0, DomainState::Running);
    d.shutdown(0).unwrap();
    wait_for(
        "shut off after ACPI shutdown",
        Duration::from_secs(30),
        || d.get_state().unwrap().0 == DomainState::Shutoff,
    );
    assert_eq!(
        d.get_state().unwrap(),
        (DomainState::Shutoff, 1),
        "reason shutdown"
    );
    assert!(serial(&r).contains("GUEST-POWEROFF: acpi power button"));
    assert!(
        !r.join("run/qemu/boot.status").exists(),
        "status cleaned up"
    );
    let names: Vec<String> = ev.lock().unwrap().iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names.first().map(String::as_str), Some("Defined"));
    for want in ["Started", "Suspended", "Resumed", "Shutdown", "Stopped"] {
        assert!(
            names.iter().any(|n| n == want),
            "missing {want} event in {names:?}"
        );
    }
    assert_eq!(
        ev.lock().unwrap().last().unwrap(),
        &("Stopped".to_string(), 0),
        "stopped/shutdown"
    );
    d.undefine(0).unwrap();
    let _ = std::fs::remove_dir_all(&r);
}

fn small_xml(name: &str, extra_os: &str, dtype: &str) -> String {
    format!(
        "<domain type='{dtype}'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
         <os{extra_os}><type arch='x86_64' machine='pc'>hvm</type></os>\
         <devices><serial type='pty'/><console type='pty'/><memballoon model='none'/></devices></domain>"
    )
}

#[test]
fn destroy_and_kill_9_are_reported() {
    if !qemu_present() {
        return;
    }
    let r = root("kill");
    let conn = runtime().open(&uri(&r), false).unwrap();
    let ev = events(&conn);
    let a = conn.create_xml(&small_xml("a", "", "qemu"), 0).unwrap();
    let mut b = conn.define_xml(&small_xml("b", "", "qemu"), 0).unwrap();
    b.create(0).unwrap();
    // The live XML shows the pty of the console.
    let live = a.get_xml_desc(0).unwrap();
    assert!(
        live.contains("<console type='pty' tty='/dev/pts/"),
        "{live}"
    );
    let pid_a = status_pid(&r, "a");
    let t0 = Instant::now();
    a.destroy(0).unwrap();
    eprintln!("destroy took {:?}", t0.elapsed());
    assert!(
        std::fs::read_to_string(format!("/proc/{pid_a}/stat")).map_or(true, |s| s.contains(") Z")),
        "qemu is gone after destroy"
    );
    // A transient domain disappears when it stops.
    assert!(conn.lookup_domain_by_name("a").is_err());
    let pid = status_pid(&r, "b");
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_for(
        "the killed domain to be noticed",
        Duration::from_secs(20),
        || b.get_state().unwrap().0 == DomainState::Shutoff,
    );
    assert_eq!(
        b.get_state().unwrap(),
        (DomainState::Shutoff, 3),
        "reason crashed"
    );
    let evs = ev.lock().unwrap().clone();
    assert!(
        evs.contains(&("Stopped".to_string(), 1)),
        "destroyed event: {evs:?}"
    );
    assert!(
        evs.contains(&("Stopped".to_string(), 5)),
        "failed event: {evs:?}"
    );
    assert!(!r.join("run/qemu/b.status").exists());
    let _ = std::fs::remove_dir_all(&r);
}

fn rvirt(root: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(profile_dir().join("rvirt"))
        .arg("-c")
        .arg(uri(root))
        .args(args)
        .env("RVIRT_PLUGIN_PATH", profile_dir())
        .output()
        .expect("run rvirt");
    let mut text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        // a death by signal prints nothing of its own: say which
        use std::os::unix::process::ExitStatusExt;
        text.push_str(&format!(
            "[rvirt {args:?} ended with {:?}, signal {:?}, core dumped {}]",
            out.status.code(),
            out.status.signal(),
            out.status.core_dumped()
        ));
    }
    (out.status.success(), text)
}

#[test]
fn a_new_process_reattaches_to_a_running_domain() {
    if !qemu_present() {
        return;
    }
    assert!(
        profile_dir().join("rvirt").is_file(),
        "build the rvirt binary first"
    );
    let r = root("reatt");
    let xml = r.join("vm.xml");
    std::fs::write(&xml, small_xml("re", "", "qemu")).unwrap();
    let (ok, out) = rvirt(&r, &["define", xml.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = rvirt(&r, &["start", "re"]);
    assert!(ok, "{out}");
    // The process that started QEMU has exited; QEMU must still run.
    let pid = status_pid(&r, "re");
    let (ok, out) = rvirt(&r, &["domstate", "--reason", "re"]);
    assert!(ok && out.contains("running (booted)"), "{out}");
    let (ok, out) = rvirt(&r, &["suspend", "re"]);
    assert!(ok, "{out}");
    let (ok, out) = rvirt(&r, &["domstate", "--reason", "re"]);
    assert!(ok && out.contains("paused (user)"), "{out}");
    let (ok, out) = rvirt(&r, &["dumpxml", "re"]);
    assert!(
        ok && out.contains("id='") && out.contains("<alias name='serial0'/>"),
        "{out}"
    );
    let (ok, out) = rvirt(&r, &["destroy", "re"]);
    assert!(ok, "{out}");
    let (ok, out) = rvirt(&r, &["domstate", "--reason", "re"]);
    assert!(ok && out.contains("shut off"), "{out}");
    assert!(!r.join("run/qemu/re.status").exists());
    let gone =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"));
    assert!(gone, "qemu {pid} still runs after destroy");
    let _ = std::fs::remove_dir_all(&r);
}

#[test]
fn uefi_boot_reaches_the_firmware() {
    if !qemu_present() {
        return;
    }
    assert!(
        Path::new(rvirt_plugin_qemu::command::OVMF_CODE).is_file(),
        "OVMF is missing: apt-get install -y ovmf"
    );
    let r = root("uefi");
    let conn = runtime().open(&uri(&r), false).unwrap();
    let mut d = conn
        .define_xml(&small_xml("efi", " firmware='efi'", "qemu"), 0)
        .unwrap();
    d.create(0).unwrap();
    assert_eq!(d.get_state().unwrap().0, DomainState::Running);
    let log = std::fs::read_to_string(r.join("log/qemu/efi.log")).unwrap();
    assert!(
        log.contains("OVMF_CODE_4M.fd") && log.contains("pflash1"),
        "{log}"
    );
    assert!(
        r.join("lib/qemu/nvram/efi_VARS.fd").is_file(),
        "per-domain NVRAM copied from the template"
    );
    let live = d.get_xml_desc(0).unwrap();
    assert!(
        live.contains("type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>"),
        "{live}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        d.get_state().unwrap().0,
        DomainState::Running,
        "firmware keeps running"
    );
    d.destroy(0).unwrap();
    assert_eq!(d.get_state().unwrap(), (DomainState::Shutoff, 2));
    let _ = std::fs::remove_dir_all(&r);
}

#[test]
fn kvm_domains_start_where_kvm_is_usable() {
    if !qemu_present() {
        return;
    }
    let r = root("kvm");
    let conn = runtime().open(&uri(&r), false).unwrap();
    match rvirt_plugin_qemu::command::kvm_usable() {
        Ok(()) => {
            let d = conn.create_xml(&small_xml("k", "", "kvm"), 0).unwrap();
            assert_eq!(d.get_state().unwrap().0, DomainState::Running);
            d.destroy(0).unwrap();
        }
        Err(why) => {
            eprintln!("\n!!!!! KVM IS NOT USABLE HERE, the kvm boot did not run: {why}\n");
            let e = conn.create_xml(&small_xml("k", "", "kvm"), 0).unwrap_err();
            assert_eq!(e.code(), 67, "{e}");
            assert!(e.to_string().contains("requires KVM"), "{e}");
            assert!(conn.list_all_domains(0).unwrap().is_empty());
        }
    }
    let _ = std::fs::remove_dir_all(&r);
}

#[test]
fn bad_xml_and_missing_disks_fail_clearly_and_leave_nothing() {
    if !qemu_present() {
        return;
    }
    let r = root("bad");
    let conn = runtime().open(&uri(&r), false).unwrap();
    let e = conn
        .create_xml("<domain type='qemu'><name>x</name>", 0)
        .unwrap_err();
    assert_eq!(e.code(), 27, "{e}");
    let e = conn
        .define_xml(
            "<domain type='qemu'><memory>1024</memory><os><type>hvm</type></os></domain>",
            0,
        )
        .unwrap_err();
    assert_eq!(e.code(), 27, "{e}");
    assert!(e.to_string().contains("domain/name"), "{e}");
    let xml = small_xml("m", "", "qemu").replace(
        "<memballoon",
        "<disk type='file' device='disk'><source file='/nonexistent/disk.img'/><target dev='vda' bus='virtio'/></disk><memballoon",
    );
    let e = conn.create_xml(&xml, 0).unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot access storage file '/nonexistent/disk.img'"),
        "{e}"
    );
    let mut d = conn.define_xml(&xml, 0).unwrap();
    assert!(d.create(0).is_err());
    assert_eq!(d.get_state().unwrap().0, DomainState::Shutoff);
    d.undefine(0).unwrap();
    assert!(conn.list_all_domains(0).unwrap().is_empty());
    let run: Vec<_> = std::fs::read_dir(r.join("run/qemu"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.ends_with("autostarted"))
        .collect();
    assert!(run.is_empty(), "left behind: {run:?}");
    let log = std::fs::read_to_string(r.join("log/qemu/m.log")).unwrap_or_default();
    assert!(!log.contains("starting"), "qemu was spawned: {log}");
    let e = conn
        .domain_xml_to_native("qemu-argv", &small_xml("n", "", "xen"), 0)
        .unwrap_err();
    assert_eq!(e.code(), 67, "{e}");
    let _ = std::fs::remove_dir_all(&r);
}

/// The corpus cases whose `.x86_64-latest.args` our argv matches in shape (see
/// [`corpus_mismatch`]), one a line in `golden_cases.txt`; `corpus_survey` lists the
/// candidates.
fn golden_cases() -> Vec<&'static str> {
    include_str!("golden_cases.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn corpus_dir() -> PathBuf {
    let shared = rvirt_tests::shared_dir();
    let corpus = shared.join("corpus/qemuxmlconfdata");
    assert!(
        corpus.is_dir(),
        "\n!!!!! libvirt's test corpus {} is missing: this test CANNOT RUN. Put shared/ beside the checkout or set RVIRT_SHARED=/path/to/shared\n",
        corpus.display()
    );
    corpus
}

/// How our argv for corpus case `name` differs from libvirt's: every `-device`,
/// `-netdev` and `-blockdev` object libvirt emits must be emitted the same, and
/// `-machine`, `-smp`, `-m`, `-uuid` must be equal. `None` when it matches.
fn corpus_mismatch(conn: &Connection, corpus: &Path, name: &str) -> Option<String> {
    let xml = std::fs::read_to_string(corpus.join(format!("{name}.xml"))).ok()?;
    let ours = match conn.domain_xml_to_native("qemu-argv", &xml, 0) {
        Ok(o) => o,
        Err(e) => return Some(format!("{name}: {e}")),
    };
    let expected =
        std::fs::read_to_string(corpus.join(format!("{name}.x86_64-latest.args"))).ok()?;
    let objects = |text: &str| -> Vec<(String, serde_json::Value)> {
        text.lines()
            .filter_map(|l| {
                let l = l.trim_end_matches(" \\");
                let (flag, rest) = l.split_once(' ')?;
                if !matches!(flag, "-device" | "-netdev" | "-blockdev") {
                    return None;
                }
                let v = serde_json::from_str(rest.trim_matches('\'')).ok()?;
                Some((flag.to_string(), v))
            })
            .collect()
    };
    let mine = objects(&ours);
    let theirs = objects(&expected);
    if theirs.is_empty() {
        return Some(format!("{name}: nothing to compare"));
    }
    for t in &theirs {
        if !mine.contains(t) {
            return Some(format!(
                "{name}: libvirt emits {} {} which we do not:\n{ours}",
                t.0, t.1
            ));
        }
    }
    for flag in ["-machine ", "-smp ", "-m ", "-uuid "] {
        let pick = |text: &str| {
            text.lines()
                .find(|l| l.starts_with(flag))
                .map(|l| l.trim_end_matches(" \\").to_string())
        };
        if pick(&ours) != pick(&expected) {
            return Some(format!(
                "{name}: {flag}{:?} where libvirt has {:?}",
                pick(&ours),
                pick(&expected)
            ));
        }
    }
    None
}

/// Our argument shapes against libvirt's `.x86_64-latest.args` for the inputs of
/// [`golden_cases`].
#[test]
fn argv_matches_libvirt_shapes_for_simple_corpus_files() {
    let corpus = corpus_dir();
    let r = root("golden");
    let conn = runtime().open(&uri(&r), false).unwrap();
    let cases = golden_cases();
    assert!(cases.len() > 150, "{} cases", cases.len());
    let failed: Vec<String> = cases
        .iter()
        .filter_map(|name| corpus_mismatch(&conn, &corpus, name))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} corpus cases differ:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
    let _ = std::fs::remove_dir_all(&r);
}

/// Not a check: lists every corpus case with an `.x86_64-latest.args` that matches
/// (`cargo test -p rvirt-plugin-qemu --test it corpus_survey -- --ignored --nocapture`),
/// the candidates for `golden_cases.txt`.
#[test]
#[ignore]
fn corpus_survey() {
    let corpus = corpus_dir();
    let r = root("survey");
    let conn = runtime().open(&uri(&r), false).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&corpus)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".x86_64-latest.args").map(str::to_string)
        })
        .collect();
    names.sort();
    let mut pass = Vec::new();
    // SURVEY_WHY=substring: print why the cases whose name contains it differ
    let why = std::env::var("SURVEY_WHY").ok();
    for n in &names {
        match corpus_mismatch(&conn, &corpus, n) {
            None => pass.push(n.clone()),
            Some(m) if why.as_deref().is_some_and(|w| n.contains(w)) => {
                println!("SURVEY-WHY {}", m.lines().next().unwrap_or_default());
            }
            Some(_) => {}
        }
    }
    println!("SURVEY {} of {} match", pass.len(), names.len());
    for n in &pass {
        println!("SURVEY-PASS {n}");
    }
    let _ = std::fs::remove_dir_all(&r);
}

// ---- booted guests: q35, reboot, autostart, VNC, transient disks, the console ----

/// A booting guest: `machine`, serial on a file (or a pty when `pty_console`), the
/// disk copied into `dir` (`disk_extra` goes into its `<disk>` element), no NIC (no DHCP
/// wait), `extra` in `<devices>`.
fn boot_xml(
    name: &str,
    dir: &Path,
    machine: &str,
    pty_console: bool,
    disk_extra: &str,
    extra: &str,
) -> String {
    let g = guest();
    let disk = dir.join("disk.raw");
    std::fs::copy(g.join("disk.raw"), &disk).unwrap();
    let serial_log = dir.join("serial.log");
    // Created before QEMU opens it, so that it can be watched from the start.
    std::fs::write(&serial_log, b"").unwrap();
    let serial = if pty_console {
        "<serial type='pty'/><console type='pty'/>".to_string()
    } else {
        format!(
            "<serial type='file'><source path='{}'/></serial>",
            serial_log.display()
        )
    };
    format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='{machine}'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
         <cmdline>console=ttyS0 quiet panic=-1 guest.ip=none guest.echo=0</cmdline></os><features><acpi/></features>\
         <devices>{serial}\
         <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{d}'/><target dev='vda' bus='virtio'/>{disk_extra}</disk>\
         {extra}</devices></domain>",
        k = g.join("vmlinux").display(),
        i = g.join("initrd.img").display(),
        d = disk.display(),
    )
}

/// Ends the QEMU processes a root's status files name and removes the root when a test
/// ends, also when it fails half-way (no VM outlives its test).
struct RootGuard(PathBuf);

impl Drop for RootGuard {
    fn drop(&mut self) {
        for e in std::fs::read_dir(self.0.join("run/qemu"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "status")
                && let Ok(t) = std::fs::read_to_string(&p)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&t)
                && let Some(pid) = v["pid"].as_i64()
                // Only our QEMU: the pid's start time must be the recorded one.
                && std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|st| {
                    let rest = st.get(st.rfind(')')? + 2..)?.to_string();
                    rest.split_whitespace().nth(19).map(str::to_string)
                }) == v["start_time"].as_u64().map(|t| t.to_string())
            {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits (on inotify, no polling) until `file` holds `needle` at least `count` times.
fn wait_file_contains(file: &Path, needle: &str, count: usize, timeout: Duration) -> String {
    use rustix::fs::inotify;
    let ino =
        inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
    inotify::add_watch(&ino, file, inotify::WatchFlags::MODIFY).unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap_or_default()).into_owned();
        if text.matches(needle).count() >= count {
            return text;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out after {timeout:?} waiting for {count}x {needle:?} in {}:\n{text}",
            file.display()
        );
        let ts = rustix::event::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [rustix::event::PollFd::new(
            &ino,
            rustix::event::PollFlags::IN,
        )];
        let _ = rustix::event::poll(&mut fds, Some(&ts));
        let mut buf = [0u8; 4096];
        while rustix::io::read(&ino, &mut buf).is_ok_and(|n| n > 0) {}
    }
}

/// Lifecycle events of one connection, delivered on a channel.
fn event_channel(conn: &Connection) -> std::sync::mpsc::Receiver<(String, i32)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    conn.subscribe_events(move |x| {
        let _ = tx
            .lock()
            .unwrap()
            .send((x.event_str().to_string(), x.detail));
    })
    .unwrap();
    rx
}

/// Receives events until `want` (name, detail) arrives; returns everything received.
fn wait_event(
    rx: &std::sync::mpsc::Receiver<(String, i32)>,
    want: (&str, i32),
    timeout: Duration,
) -> Vec<(String, i32)> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) => {
                let hit = e.0 == want.0 && e.1 == want.1;
                seen.push(e);
                if hit {
                    return seen;
                }
            }
            Err(_) => {
                panic!("timed out after {timeout:?} waiting for event {want:?}; got {seen:?}")
            }
        }
    }
}

fn proc_gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
}

#[test]
fn q35_guest_boots_and_reboots_staying_running() {
    if !qemu_present() {
        return;
    }
    let r = root("q35");
    let _guard = RootGuard(r.clone());
    let conn = runtime().open(&uri(&r), false).unwrap();
    let ev = event_channel(&conn);
    let d = conn
        .create_xml(&boot_xml("q35", &r, "q35", false, "", ""), 0)
        .unwrap();
    let live = d.get_xml_desc(0).unwrap();
    assert!(
        live.contains("machine='pc-q35") || live.contains("machine='q35'"),
        "{live}"
    );
    assert!(
        live.contains("<controller type='pci' index='0' model='pcie-root'"),
        "{live}"
    );
    let log = r.join("serial.log");
    let out = wait_file_contains(&log, "GUEST-READY", 1, Duration::from_secs(120));
    assert!(out.contains("DISK-MARKER: VIRT-DISK-MARKER"), "{out}");
    assert!(out.contains(&format!("uuid={}", d.uuid())), "{out}");
    d.reboot(0).unwrap();
    wait_file_contains(&log, "GUEST-READY", 2, Duration::from_secs(120));
    assert_eq!(
        d.get_state().unwrap(),
        (DomainState::Running, 1),
        "running (booted) after the reboot"
    );
    let mut seen = Vec::new();
    while let Ok(e) = ev.try_recv() {
        seen.push(e);
    }
    assert!(
        !seen.iter().any(|(n, _)| n == "Stopped" || n == "Suspended"),
        "a reboot is neither a stop nor a pause: {seen:?}"
    );
    d.destroy(0).unwrap();
    let _ = std::fs::remove_dir_all(&r);
}

#[test]
fn autostart_domains_start_on_the_first_open_of_a_root() {
    if !qemu_present() {
        return;
    }
    let r = root("auto");
    let _guard = RootGuard(r.clone());
    let xml = r.join("vm.xml");
    std::fs::write(&xml, small_xml("au", "", "qemu")).unwrap();
    let (ok, out) = rvirt(&r, &["define", xml.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = rvirt(&r, &["autostart", "au"]);
    assert!(ok, "{out}");
    // A new root was opened by the processes above and marked autostart done; a host
    // reboot empties run/, which the test plays by removing the marker.
    assert!(r.join("run/qemu/autostarted").is_file());
    assert!(
        !r.join("run/qemu/au.status").exists(),
        "not started by define/autostart"
    );
    std::fs::remove_file(r.join("run/qemu/autostarted")).unwrap();
    let (ok, out) = rvirt(&r, &["domstate", "--reason", "au"]);
    assert!(
        ok && out.contains("running (booted)"),
        "the first open autostarts it: {out}"
    );
    let pid = status_pid(&r, "au");
    let (ok, out) = rvirt(&r, &["dominfo", "au"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with("Autostart:") && l.contains("enable")),
        "{out}"
    );
    let (ok, out) = rvirt(&r, &["destroy", "au"]);
    assert!(ok, "{out}");
    assert!(proc_gone(pid));
    // Shut off by the user: later opens do not start it again.
    let (ok, out) = rvirt(&r, &["domstate", "--reason", "au"]);
    assert!(ok && out.contains("shut off (destroyed)"), "{out}");
    let _ = std::fs::remove_dir_all(&r);
}

#[test]
fn vnc_autoport_gets_a_listening_port_in_the_live_xml() {
    if !qemu_present() {
        return;
    }
    use std::io::Read;
    let r = root("vnc");
    let _guard = RootGuard(r.clone());
    let conn = runtime().open(&uri(&r), false).unwrap();
    let xml = |n: &str| {
        small_xml(n, "", "qemu").replace(
            "<memballoon",
            "<graphics type='vnc' autoport='yes'/><memballoon",
        )
    };
    // Two at once: each gets its own port.
    let a = conn.create_xml(&xml("va"), 0).unwrap();
    let b = conn.create_xml(&xml("vb"), 0).unwrap();
    let mut ports = Vec::new();
    for d in [&a, &b] {
        let live = d.get_xml_desc(0).unwrap();
        let port: u16 = live
            .split("<graphics type='vnc' port='")
            .nth(1)
            .and_then(|t| t.split('\'').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no vnc port in the live XML:\n{live}"));
        assert!(port >= 5900, "{live}");
        assert!(live.contains("autoport='yes'"), "{live}");
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
            .expect("something listens on the VNC port");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut banner = [0u8; 12];
        s.read_exact(&mut banner).unwrap();
        assert!(
            banner.starts_with(b"RFB 003."),
            "{:?}",
            String::from_utf8_lossy(&banner)
        );
        ports.push(port);
    }
    assert_ne!(ports[0], ports[1], "two domains, two ports");
    a.destroy(0).unwrap();
    b.destroy(0).unwrap();
    let _ = std::fs::remove_dir_all(&r);
}

/// Runs `rvirt console NAME` on a fresh pty; returns the pty master and the child.
fn console_on_pty(root: &Path, name: &str) -> (std::fs::File, std::process::Child) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let slave_path = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(slave_path.to_str().unwrap())
        .unwrap();
    let child = Command::new(profile_dir().join("rvirt"))
        .arg("-c")
        .arg(uri(root))
        .args(["console", name])
        .env("RVIRT_PLUGIN_PATH", profile_dir())
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .expect("run rvirt console");
    (std::fs::File::from(master), child)
}

/// Reads the pty master until `needle` has appeared after `from` in `seen`.
fn expect_pty(
    master: &mut std::fs::File,
    seen: &mut String,
    from: usize,
    needle: &str,
    timeout: Duration,
) -> usize {
    use std::io::Read;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(i) = seen[from..].find(needle) {
            return from + i + needle.len();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out after {timeout:?} waiting for {needle:?} on the console; got:\n{seen}"
        );
        let ts = rustix::event::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [rustix::event::PollFd::new(
            &*master,
            rustix::event::PollFlags::IN,
        )];
        let _ = rustix::event::poll(&mut fds, Some(&ts));
        if fds[0].revents().contains(rustix::event::PollFlags::IN) {
            let mut buf = [0u8; 4096];
            let n = master.read(&mut buf).unwrap_or(0);
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        } else if !fds[0].revents().is_empty() {
            panic!("the console pty closed; got:\n{seen}");
        }
    }
}

/// Waits for a child's exit on a thread, at most `timeout`.
fn wait_child(mut child: std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(timeout) {
        Ok(st) => st.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("pid {pid} did not exit within {timeout:?}");
        }
    }
}

/// `rvirt console` in a real terminal against a booted guest, whose disk is
/// `<transient/>`: the guest writes its disk through the console, and after the domain
/// stops the original file is untouched.
#[test]
fn console_in_a_pty_and_transient_disk_writes_stay_in_the_overlay() {
    if !qemu_present() {
        return;
    }
    use std::io::Write;
    assert!(
        profile_dir().join("rvirt").is_file(),
        "build the rvirt binary first"
    );
    let r = root("cons");
    let _guard = RootGuard(r.clone());
    let conn = runtime().open(&uri(&r), false).unwrap();
    let ev = event_channel(&conn);
    let mut d = conn
        .define_xml(&boot_xml("co", &r, "pc", true, "<transient/>", ""), 0)
        .unwrap();
    d.create(0).unwrap();
    let overlays: Vec<PathBuf> = std::fs::read_dir(r.join("run/qemu"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".transient.qcow2"))
        .collect();
    assert_eq!(overlays.len(), 1, "one overlay for the transient disk");
    let (mut master, child) = console_on_pty(&r, "co");
    let mut seen = String::new();
    let mut at = expect_pty(
        &mut master,
        &mut seen,
        0,
        "Escape character is ^]",
        Duration::from_secs(30),
    );
    at = expect_pty(
        &mut master,
        &mut seen,
        at,
        "GUEST-READY",
        Duration::from_secs(120),
    );
    // The shell starts after GUEST-READY; Enter gives a prompt.
    master.write_all(b"\r").unwrap();
    at = expect_pty(
        &mut master,
        &mut seen,
        at,
        "guest# ",
        Duration::from_secs(30),
    );
    master
        .write_all(b"printf TRANSIENT-WRITE | dd of=/dev/vda conv=notrunc 2>/dev/null; sync; echo 3 > /proc/sys/vm/drop_caches; head -c 15 /dev/vda; echo; echo DONE-$((40+2))\r")
        .unwrap();
    at = expect_pty(
        &mut master,
        &mut seen,
        at,
        "DONE-42",
        Duration::from_secs(60),
    );
    assert!(
        seen[..at].contains("TRANSIENT-WRITE"),
        "the guest reads its write back:\n{seen}"
    );
    // ^] leaves the console; the guest keeps running.
    master.write_all(&[0x1d]).unwrap();
    let st = wait_child(child, Duration::from_secs(10));
    assert!(st.success(), "rvirt console exited with {st}:\n{seen}");
    assert_eq!(d.get_state().unwrap().0, DomainState::Running);
    d.shutdown(0).unwrap();
    wait_event(&ev, ("Stopped", 0), Duration::from_secs(60));
    let original = std::fs::read(r.join("disk.raw")).unwrap();
    assert_eq!(
        &original[..16],
        b"VIRT-DISK-MARKER",
        "the original disk is untouched"
    );
    for o in &overlays {
        assert!(
            !o.exists(),
            "overlay {} removed when the domain stopped",
            o.display()
        );
    }
    d.undefine(0).unwrap();
    let _ = std::fs::remove_dir_all(&r);
}

/// The guest powers off while no rvirt process is attached: QEMU (kept by
/// `-no-shutdown`) waits for a driver; the next process reports shut off (shutdown) and
/// ends QEMU; a third process agrees.
#[test]
fn a_guest_shutdown_seen_by_nobody_is_reported_by_the_next_processes() {
    if !qemu_present() {
        return;
    }
    assert!(
        profile_dir().join("rvirt").is_file(),
        "build the rvirt binary first"
    );
    let r = root("zomb");
    let _guard = RootGuard(r.clone());
    let xml = r.join("vm.xml");
    std::fs::write(&xml, boot_xml("zo", &r, "pc", false, "", "")).unwrap();
    let (ok, out) = rvirt(&r, &["define", xml.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = rvirt(&r, &["start", "zo"]);
    assert!(ok, "{out}");
    let pid = status_pid(&r, "zo");
    wait_file_contains(
        &r.join("serial.log"),
        "GUEST-READY",
        1,
        Duration::from_secs(120),
    );
    {
        // No rvirt process runs now; press the power button from outside.
        let (q, events) =
            rvirt_qmp::Qmp::connect(&r.join("run/qemu/zo.monitor"), Duration::from_secs(10))
                .unwrap();
        q.execute("system_powerdown", None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let e = events
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("SHUTDOWN event after the power button");
            if e.name == "SHUTDOWN" {
                break;
            }
        }
        assert_eq!(
            q.execute("query-status", None).unwrap()["status"],
            "shutdown"
        );
        q.close();
    }
    wait_file_contains(
        &r.join("serial.log"),
        "GUEST-POWEROFF",
        1,
        Duration::from_secs(10),
    );
    assert!(!proc_gone(pid), "qemu waits for a driver (-no-shutdown)");
    let (ok, out) = rvirt(&r, &["domstate", "--reason", "zo"]);
    assert!(
        ok && out.contains("shut off (shutdown)"),
        "second process: {out}"
    );
    assert!(proc_gone(pid), "qemu {pid} ended by the second process");
    assert!(!r.join("run/qemu/zo.status").exists(), "status cleaned");
    assert!(
        !r.join("run/qemu/zo.monitor").exists(),
        "monitor socket cleaned"
    );
    let (ok, out) = rvirt(&r, &["domstate", "--reason", "zo"]);
    assert!(
        ok && out.contains("shut off (shutdown)"),
        "third process: {out}"
    );
    let _ = std::fs::remove_dir_all(&r);
}

/// A status file whose QEMU is gone (a zombie nobody reaps, or reaped by init) after the
/// guest's shutdown was recorded: shut off (shutdown), not crashed; without the record:
/// crashed. Nothing is left behind.
#[test]
fn a_dead_qemu_behind_a_status_file_is_judged_by_the_record() {
    if !qemu_present() {
        return;
    }
    let r = root("stale");
    let _guard = RootGuard(r.clone());
    let xml = r.join("vm.xml");
    std::fs::write(&xml, small_xml("st", "", "qemu")).unwrap();
    let (ok, out) = rvirt(&r, &["define", xml.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = rvirt(&r, &["start", "st"]);
    assert!(ok, "{out}");
    let status = r.join("run/qemu/st.status");
    let text = std::fs::read_to_string(&status).unwrap();
    let pid = status_pid(&r, "st");
    let (ok, out) = rvirt(&r, &["destroy", "st"]);
    assert!(ok, "{out}");
    assert!(proc_gone(pid));
    for (shutdown, want) in [(true, "shut off (shutdown)"), (false, "shut off (crashed)")] {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["shutdown"] = serde_json::json!(shutdown);
        std::fs::write(&status, v.to_string()).unwrap();
        let (ok, out) = rvirt(&r, &["domstate", "--reason", "st"]);
        assert!(
            ok && out.contains(want),
            "shutdown recorded {shutdown}: {out}"
        );
        assert!(!status.exists());
        let (ok, out) = rvirt(&r, &["domstate", "--reason", "st"]);
        assert!(ok && out.contains(want), "a third process agrees: {out}");
    }
    let _ = std::fs::remove_dir_all(&r);
}

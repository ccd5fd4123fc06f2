//! Jobs and locks: a hung start blocks nobody else, two processes cannot start one domain
//! twice, a root is handed out only once loaded, secure files are private, and a status
//! file is not trusted with a pid to signal.

use super::{RootGuard, proc_gone, qemu_present, root, runtime, rvirt, small_xml, status_pid, uri};
use rvirt_host::DomainState;
use rvirt_tests::profile_dir;
use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

/// `/proc/PID/stat` field 22 (start time), as the driver records it.
fn start_time(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// The pids of the processes whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&c).contains(needle) && !proc_gone(*pid)
        })
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn with_uuid(xml: &str, name: &str, uuid: &str) -> String {
    xml.replace(
        &format!("<name>{name}</name>"),
        &format!("<name>{name}</name><uuid>{uuid}</uuid>"),
    )
}

/// Runs `test` of this binary in a child process with `env` set from its start (the
/// plugin reads its timeouts from the environment; setting it in this multi-threaded
/// process would race with other tests).
fn run_child_test(test: &str, env: &[(&str, &str)]) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{test} failed in its child process:\n{text}"
    );
}

#[test]
fn a_hung_start_blocks_neither_queries_nor_other_domains() {
    if !qemu_present() {
        return;
    }
    run_child_test(
        "hardening::hung_start_child",
        &[
            ("RVIRT_QEMU_MONITOR_TIMEOUT_MS", "4000"),
            ("RVIRT_QEMU_JOB_TIMEOUT_MS", "500"),
        ],
    );
}

/// The body of [`a_hung_start_blocks_neither_queries_nor_other_domains`], run in a child
/// process with short timeouts.
#[test]
#[ignore = "run by a_hung_start_blocks_neither_queries_nor_other_domains"]
fn hung_start_child() {
    let r = root("hung");
    let _guard = RootGuard(r.clone());
    let conn = runtime().open(&uri(&r), false).unwrap();
    let mut other = conn.define_xml(&small_xml("other", "", "qemu"), 0).unwrap();
    other.create(1).unwrap();
    // An "emulator" that takes the monitor descriptor and never greets.
    let script = r.join("hang.sh");
    let pid_file = r.join("hang.pid");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 120\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let xml = small_xml("hang", "", "qemu").replace(
        "<devices>",
        &format!("<devices><emulator>{}</emulator>", script.display()),
    );
    let hang = conn.define_xml(&xml, 0).unwrap();
    let mut starting = hang.clone();
    let t0 = Instant::now();
    let start = std::thread::spawn(move || (starting.create(0), t0.elapsed()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "the hung emulator never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid: i32 = loop {
        if let Ok(p) = std::fs::read_to_string(&pid_file)
            .unwrap_or_default()
            .trim()
            .parse()
        {
            break p;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!start.is_finished(), "the start is waiting for the monitor");
    let timed = |what: &str, f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        let took = t.elapsed();
        eprintln!("{what} during the hung start: {took:?}");
        assert!(
            took < Duration::from_millis(50),
            "{what} took {took:?} during a hung start"
        );
    };
    timed("list_all_domains", &mut || {
        assert_eq!(conn.list_all_domains(0).unwrap().len(), 2)
    });
    timed("get_info of another domain", &mut || {
        assert_eq!(other.get_info().unwrap().state, DomainState::Paused)
    });
    timed("get_state of the starting domain", &mut || {
        hang.get_state().unwrap();
    });
    timed("get_xml_desc of the starting domain", &mut || {
        hang.get_xml_desc(0).unwrap();
    });
    timed("lookup by name", &mut || {
        conn.lookup_domain_by_name("other").unwrap();
    });
    // Another process opening the root meanwhile answers at once and leaves the files of
    // the start in progress alone.
    let t = Instant::now();
    let (ok, out) = rvirt(&r, &["list", "--all"]);
    assert!(ok && out.contains("other"), "{out}");
    eprintln!(
        "rvirt list in another process during the hung start: {:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        r.join("run/qemu/hang.status").exists(),
        "removed under a job"
    );
    assert!(
        r.join("run/qemu/hang.monitor").exists(),
        "removed under a job"
    );
    // A second state change of the same domain waits for the job, boundedly.
    let t = Instant::now();
    let e = hang.clone().create(0).unwrap_err();
    assert_eq!(e.code(), 68, "{e}");
    assert!(
        e.to_string().contains("cannot acquire state change lock"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(!start.is_finished(), "still starting");
    let (res, took) = start.join().unwrap();
    let e = res.unwrap_err();
    eprintln!("the hung start ended after {took:?}: {e}");
    assert!(e.to_string().contains("monitor did not answer"), "{e}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(hang.get_state().unwrap().0, DomainState::Shutoff);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !proc_gone(pid) {
        assert!(
            Instant::now() < deadline,
            "the hung emulator {pid} survived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for f in ["hang.status", "hang.monitor", "hang.lock", "ids.lock"] {
        assert!(!r.join("run/qemu").join(f).exists(), "{f} left behind");
    }
    // The other domain was never disturbed.
    assert_eq!(other.get_state().unwrap().0, DomainState::Paused);
    other.destroy(0).unwrap();
}

/// Two `rvirt start` processes race for one defined domain: one wins, the other is told
/// it is already running, one QEMU runs, and the winner's files are intact.
#[test]
fn two_processes_starting_one_domain_start_one_qemu() {
    if !qemu_present() {
        return;
    }
    let rvirt_bin = profile_dir().join("rvirt");
    assert!(rvirt_bin.is_file(), "build the rvirt binary first");
    let r = root("race");
    let _guard = RootGuard(r.clone());
    let uuid = "6c2b1e8e-5f0a-4d59-9a53-0d2f1c7a9b31";
    let xml = r.join("vm.xml");
    std::fs::write(
        &xml,
        with_uuid(&small_xml("race", "", "qemu"), "race", uuid),
    )
    .unwrap();
    let (ok, out) = rvirt(&r, &["define", xml.to_str().unwrap()]);
    assert!(ok, "{out}");
    for round in 0..4 {
        let start = || {
            Command::new(&rvirt_bin)
                .arg("-c")
                .arg(uri(&r))
                .args(["start", "--paused", "race"])
                .env("RVIRT_PLUGIN_PATH", profile_dir())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (start(), start());
        let outs: Vec<(bool, String)> = [a, b]
            .into_iter()
            .map(|c| {
                let o = c.wait_with_output().unwrap();
                (
                    o.status.success(),
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    ),
                )
            })
            .collect();
        let qemus = pids_with(uuid);
        for p in &qemus[1.min(qemus.len())..] {
            // Never leave a second QEMU behind, even when the test fails.
            let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
        }
        assert_eq!(
            outs.iter().filter(|(ok, _)| *ok).count(),
            1,
            "round {round}: exactly one start succeeds: {outs:?}"
        );
        let loser = &outs.iter().find(|(ok, _)| !ok).unwrap().1;
        assert!(loser.contains("already running"), "round {round}: {loser}");
        assert_eq!(qemus.len(), 1, "round {round}: qemu processes {qemus:?}");
        assert_eq!(status_pid(&r, "race"), qemus[0], "round {round}");
        assert!(r.join("run/qemu/race.monitor").exists(), "round {round}");
        let (ok, out) = rvirt(&r, &["domstate", "race"]);
        assert!(ok && out.contains("paused"), "round {round}: {out}");
        let (ok, out) = rvirt(&r, &["destroy", "race"]);
        assert!(ok, "round {round}: {out}");
        assert!(proc_gone(qemus[0]), "round {round}: destroyed");
        assert!(pids_with(uuid).is_empty(), "round {round}");
        assert!(!r.join("run/qemu/race.status").exists());
    }
    // A process whose view is stale (it loaded the root before another process started
    // the domain) acts on what the disk says.
    let conn = runtime().open(&uri(&r), false).unwrap();
    let d = conn.lookup_domain_by_name("race").unwrap();
    assert_eq!(d.get_state().unwrap().0, DomainState::Shutoff);
    let (ok, out) = rvirt(&r, &["start", "--paused", "race"]);
    assert!(ok, "{out}");
    let pid = status_pid(&r, "race");
    let mut again = d.clone();
    let e = again.create(0).unwrap_err();
    assert!(e.to_string().contains("already running"), "{e}");
    assert_eq!(d.get_state().unwrap().0, DomainState::Paused);
    d.destroy(0).unwrap();
    assert!(
        proc_gone(pid),
        "destroyed by the process with the stale view"
    );
    assert!(!r.join("run/qemu/race.status").exists());
}

/// Threads opening a root for the first time in this process all see its domains: the
/// driver is handed out only once it has loaded the root.
#[test]
fn concurrent_first_opens_of_a_root_all_see_every_domain() {
    const N: usize = 40;
    const THREADS: usize = 8;
    for round in 0..3 {
        let r = root(&format!("open{round}"));
        let etc = r.join("etc/qemu");
        std::fs::create_dir_all(&etc).unwrap();
        for i in 0..N {
            let name = format!("d{i}");
            let xml = with_uuid(
                &small_xml(&name, "", "qemu"),
                &name,
                &format!("00000000-0000-4000-8000-{i:012}"),
            );
            std::fs::write(etc.join(format!("{name}.xml")), xml).unwrap();
        }
        let barrier = Arc::new(Barrier::new(THREADS));
        let seen: Vec<usize> = (0..THREADS)
            .map(|_| {
                let (barrier, u) = (barrier.clone(), uri(&r));
                std::thread::spawn(move || {
                    barrier.wait();
                    let conn = runtime().open(&u, false).unwrap();
                    conn.list_all_domains(0).unwrap().len()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(seen.iter().all(|n| *n == N), "round {round}: {seen:?}");
        let _ = std::fs::remove_dir_all(&r);
    }
}

/// Definitions, status files and logs are created 0600, the driver's directories 0700.
#[test]
fn definitions_status_files_and_directories_are_private() {
    if !qemu_present() {
        return;
    }
    let r = root("mode");
    let _guard = RootGuard(r.clone());
    let conn = runtime().open(&uri(&r), false).unwrap();
    for d in ["etc/qemu", "run/qemu", "lib/qemu", "log/qemu"] {
        assert_eq!(mode(&r.join(d)), 0o700, "{d}");
    }
    let xml = with_uuid(
        &small_xml("pv", "", "qemu"),
        "pv",
        "3f0c8d2a-77b4-4e6e-a0f1-5c9d2e4b8a10",
    );
    let mut d = conn.define_xml(&xml, 0).unwrap();
    assert_eq!(mode(&r.join("etc/qemu/pv.xml")), 0o600);
    d.create(1).unwrap();
    assert_eq!(mode(&r.join("run/qemu/pv.status")), 0o600);
    assert_eq!(mode(&r.join("log/qemu/pv.log")), 0o600);
    // Rewritten (redefinition while running): still private.
    conn.define_xml(&xml.replace("128", "160"), 0).unwrap();
    assert_eq!(mode(&r.join("etc/qemu/pv.xml")), 0o600);
    assert_eq!(mode(&r.join("run/qemu/pv.status")), 0o600);
    d.destroy(0).unwrap();
    d.undefine(0).unwrap();
}

/// A crafted status file naming an unrelated live process (with its true start time) is
/// discarded: listing, destroying and a new process never signal that process, and the
/// files it names are not removed. A real QEMU behind a status file others may write is
/// not trusted either.
#[test]
fn a_crafted_status_file_gets_no_process_signalled() {
    if !qemu_present() {
        return;
    }
    let r = root("craft");
    let _guard = RootGuard(r.clone());
    let uuid = "0b5e8a44-1c1d-4a37-8f5e-2f0e6d3c4b21";
    let xml = with_uuid(&small_xml("victim", "", "qemu"), "victim", uuid);
    let xml_file = r.join("vm.xml");
    std::fs::write(&xml_file, &xml).unwrap();
    // Defined by another process: this one opens the root for the first time below.
    let (ok, out) = rvirt(&r, &["define", xml_file.to_str().unwrap()]);
    assert!(ok, "{out}");
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let spid = sleeper.id();
    let precious = r.join("precious");
    std::fs::write(&precious, b"keep").unwrap();
    let status = r.join("run/qemu/victim.status");
    let craft = |mode: u32| {
        let v = serde_json::json!({
            "version": 1, "pid": spid, "start_time": start_time(spid), "id": 1,
            "monitor": r.join("run/qemu/victim.monitor"), "state": 1, "reason": 1,
            "persistent": true, "live": xml, "def": xml,
            "overlays": [&precious], "shutdown": false,
        });
        let _ = std::fs::remove_file(&status);
        std::fs::write(&status, v.to_string()).unwrap();
        std::fs::set_permissions(&status, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let alive = |pid: u32| !proc_gone(pid as i32);
    // 1. Found by a process opening the root.
    craft(0o600);
    let conn = runtime().open(&uri(&r), false).unwrap();
    assert_eq!(conn.list_all_domains(0).unwrap().len(), 1);
    let d = conn.lookup_domain_by_name("victim").unwrap();
    assert_eq!(d.get_state().unwrap().0, DomainState::Shutoff);
    let _ = d.destroy(0);
    assert!(alive(spid), "the crafted pid was signalled (open, destroy)");
    assert!(!status.exists(), "the crafted status file is discarded");
    // 2. Found by a job of a process that had already loaded the root.
    craft(0o600);
    assert!(d.destroy(0).is_err(), "nothing of ours runs");
    assert!(alive(spid), "the crafted pid was signalled (destroy)");
    // 3. Found by another process.
    craft(0o600);
    let (ok, out) = rvirt(&r, &["destroy", "victim"]);
    assert!(!ok, "{out}");
    let (ok, out) = rvirt(&r, &["domstate", "victim"]);
    assert!(ok && out.contains("shut off"), "{out}");
    assert!(
        alive(spid),
        "the crafted pid was signalled (another process)"
    );
    assert!(
        precious.exists(),
        "a file the status file names was removed"
    );
    let log = std::fs::read_to_string(r.join("log/qemu/victim.log")).unwrap_or_default();
    assert!(log.contains("rvirt: discarded status file"), "{log}");
    // 4. A real QEMU of this domain, but a status file others may write: not trusted.
    let (ok, out) = rvirt(&r, &["start", "--paused", "victim"]);
    assert!(ok, "{out}");
    let qpid = status_pid(&r, "victim");
    std::fs::set_permissions(&status, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (ok, out) = rvirt(&r, &["destroy", "victim"]);
    let survived = !proc_gone(qpid);
    let _ = Command::new("kill")
        .args(["-9", &qpid.to_string()])
        .status();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(!ok, "{out}");
    assert!(survived, "qemu signalled on a group-writable status file");
    assert!(!status.exists(), "the untrusted status file is discarded");
}

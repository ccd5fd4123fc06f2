//! Start and destroy latency of a no-disk domain through the plugin, against launching
//! the same QEMU command line by hand in the same run (the floor). Run it with
//! `benches/qemu_lifecycle.sh` (it builds the release plugin first).

use rvirt_plugin_qemu::command::{self, BuildOptions, Monitor};
use rvirt_qmp::Qmp;
use std::{
    os::fd::AsRawFd,
    os::unix::{net::UnixListener, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const XML: &str = "<domain type='qemu'><name>bench</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
    <os><type arch='x86_64' machine='pc'>hvm</type></os>\
    <devices><serial type='pty'/><console type='pty'/></devices></domain>";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One raw launch: spawn with -S, QMP handshake, cont, query-status running; then SIGTERM
/// until reaped.
fn raw_once(dir: &Path) -> (f64, f64) {
    let sock = dir.join("raw.monitor");
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).unwrap();
    let fd = listener.as_raw_fd();
    let def = rvirt_xml::Domain::parse(XML).unwrap();
    let n = command::build(
        &def,
        &BuildOptions {
            monitor: Monitor::Fd(fd),
            kvm: Err(String::new()),
            check_files: false,
            nvram_dir: dir.into(),
            channel_dir: dir.into(),
            allocate_vnc: false,
            volumes: Default::default(),
            taps: Default::default(),
            secrets: Default::default(),
        },
    )
    .unwrap();
    let t0 = Instant::now();
    let mut cmd = Command::new(&n.emulator);
    cmd.args(&n.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only fcntl on the inherited listener between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // SAFETY: fd is open in the parent across fork.
            let b = rustix::fd::BorrowedFd::borrow_raw(fd);
            rustix::io::fcntl_setfd(b, rustix::io::FdFlags::empty()).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(listener);
    let (q, _ev) = Qmp::connect(&sock, Duration::from_secs(30)).unwrap();
    q.execute("cont", None).unwrap();
    assert_eq!(
        q.execute("query-status", None).unwrap()["status"],
        "running"
    );
    let start = ms(t0.elapsed());
    let t1 = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    child.wait().unwrap();
    (start, ms(t1.elapsed()))
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let so = profile.join("librvirt_plugin_qemu.so");
    assert!(
        so.is_file(),
        "{} missing: cargo build --release -p rvirt-plugin-qemu",
        so.display()
    );
    let plugdir = PathBuf::from(format!("/tmp/rvq-bench-plugins-{}", std::process::id()));
    std::fs::create_dir_all(&plugdir).unwrap();
    std::fs::copy(&so, plugdir.join("librvirt_plugin_qemu.so")).unwrap();
    let root = PathBuf::from(format!("/tmp/rvq-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let rt = rvirt_host::Runtime::with_search_path(vec![plugdir.clone()]);
    let conn = rt
        .open(&format!("qemu:///embed?root={}", root.display()), false)
        .unwrap();
    let (mut rs, mut rd, mut ps, mut pd, mut pdef) = (vec![], vec![], vec![], vec![], vec![]);
    // Warm-up (page cache), then interleave raw and plugin runs.
    let _ = raw_once(&root);
    for _ in 0..runs {
        let (s, d) = raw_once(&root);
        rs.push(s);
        rd.push(d);
        let t0 = Instant::now();
        let mut dom = conn.define_xml(XML, 0).unwrap();
        pdef.push(ms(t0.elapsed()));
        dom.create(0).unwrap();
        ps.push(ms(t0.elapsed()));
        let t1 = Instant::now();
        dom.destroy(0).unwrap();
        pd.push(ms(t1.elapsed()));
        dom.undefine(0).unwrap();
    }
    let (rs, rd, ps, pd, pdef) = (median(rs), median(rd), median(ps), median(pd), median(pdef));
    println!(
        "{{\"runs\":{runs},\"raw_start_ms\":{rs:.1},\"rvirt_start_ms\":{ps:.1},\"rvirt_define_ms\":{pdef:.1},\"start_ratio\":{:.2},\"raw_destroy_ms\":{rd:.1},\"rvirt_destroy_ms\":{pd:.1},\"destroy_ratio\":{:.2}}}",
        ps / rs,
        pd / rd
    );
    if let Ok(bridge) = std::env::var("BRIDGE") {
        // The same domain with and without one bridge interface (a TAP the driver makes),
        // interleaved: what the interface adds to a start.
        let with_nic = XML.replace(
            "<console type='pty'/>",
            &format!(
                "<console type='pty'/><interface type='bridge'><source bridge='{bridge}'/><model type='virtio'/></interface>"
            ),
        );
        let (mut plain, mut nic) = (vec![], vec![]);
        for _ in 0..runs {
            for (xml, out) in [(XML, &mut plain), (with_nic.as_str(), &mut nic)] {
                let mut dom = conn.define_xml(xml, 0).unwrap();
                let t0 = Instant::now();
                dom.create(0).unwrap();
                out.push(ms(t0.elapsed()));
                dom.destroy(0).unwrap();
                dom.undefine(0).unwrap();
            }
        }
        let (p, n) = (median(plain), median(nic));
        println!(
            "{{\"runs\":{runs},\"start_without_nic_ms\":{p:.1},\"start_with_bridge_nic_ms\":{n:.1},\"nic_adds_ms\":{:.1}}}",
            n - p
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&plugdir);
}

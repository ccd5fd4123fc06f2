//! `list --all` and `dominfo` latency on one open session (as rvirtd or an embedder holds
//! it), in process, against vcsim with many VMs; the floor is `benches/esx_floor.py
//! list-session|info-session` (the same vSphere calls from a minimal client, one session).
//!
//!     VMS=500 RUNS=20 cargo bench -p rvirt-plugin-esx --bench esx_session
//!
//! dominfo waits past the plugin's 1 s state cache before each run, so every run makes
//! its vSphere calls (lookup by name, then the state and sizes).

use rvirt_plugin_esx::EsxConnection;
use rvirt_sdk::abi::{
    DomainRef, DriverConnection, EventSink, EventSink_TO,
    abi_stable::{sabi_trait::TD_Opaque, std_types::RResult, std_types::RStr},
};
use rvirt_tests::vcsim::Vcsim;
use std::time::{Duration, Instant};

struct NoEvents;

impl EventSink for NoEvents {
    fn domain_lifecycle(&self, _dom: DomainRef, _event: i32, _detail: i32) {}
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let vms = env_num("VMS", 500);
    let runs = env_num("RUNS", 20);
    let vm_flag = vms.to_string();
    let Some(sim) = Vcsim::start("esx_session bench", true, &["-vm", &vm_flag]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let auth = dir.path().join("auth.conf");
    std::fs::write(
        &auth,
        "[credentials-sim]\nusername=user\npassword=pass\n[auth-esx-default]\ncredentials=sim\n",
    )
    .expect("auth.conf");
    let uri = format!(
        "esx://127.0.0.1:{}/?no_verify=1&authfile={}",
        sim.port,
        auth.display()
    );
    let c: EsxConnection =
        rvirt_plugin_esx::open(&uri, true, EventSink_TO::from_value(NoEvents, TD_Opaque))
            .unwrap_or_else(|e| panic!("cannot open {uri}: {}", e.message));
    let first = c.vms().expect("list");
    assert_eq!(first.len(), vms, "vcsim holds {vms} VMs");
    let name = first[first.len() / 2].name.clone();

    let mut list = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let n = c.vms().expect("list").len();
        list.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(n, vms);
    }
    let mut info = Vec::new();
    for _ in 0..runs {
        std::thread::sleep(Duration::from_millis(1100));
        let t = Instant::now();
        let d = match c.lookup_by_name(RStr::from_str(&name)) {
            RResult::ROk(d) => d,
            RResult::RErr(e) => panic!("lookup {name}: {}", e.message),
        };
        let mem = match c.get_info(d.uuid) {
            RResult::ROk(i) => i.memory_kib,
            RResult::RErr(e) => panic!("info {name}: {}", e.message),
        };
        info.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(mem > 0);
    }
    let floor = |args: &[&str]| -> String {
        let script = rvirt_tests::workspace_root().join("benches/esx_floor.py");
        let o = std::process::Command::new("python3")
            .arg(script)
            .arg(sim.port.to_string())
            .args(args)
            .output()
            .expect("python3 benches/esx_floor.py");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    let runs_s = runs.to_string();
    let floor_list = floor(&["list-session", &runs_s]);
    let floor_info = floor(&["info-session", &name, &runs_s]);
    println!("vcsim ESX mode, {vms} VMs, one session, medians of {runs} runs (ms):");
    println!(
        "  plugin list (vms)                    {:8.1}",
        median(list)
    );
    println!("  floor  list (esx_floor.py)           {floor_list:>8}");
    println!(
        "  plugin dominfo (lookup_by_name+info) {:8.1}",
        median(info)
    );
    println!("  floor  info (esx_floor.py)           {floor_info:>8}");
}

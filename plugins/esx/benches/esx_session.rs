//! `list --all` and `dominfo` latency on one open session (as rvirtd or an embedder holds
//! it), in process, against vcsim with many VMs; the floor is `benches/esx_floor.py PORT
//! serve` (the same vSphere calls from a minimal client on its own session).
//!
//!     VMS=500 RUNS=20 cargo bench -p rvirt-plugin-esx --bench esx_session
//!
//! Each plugin run is paired with a floor run right after it (the floor process takes
//! one operation per line on stdin), so that both sides see the same load and the same
//! state of vcsim's Go heap: the shared machine's load drifts within seconds, and
//! measuring one side entirely before the other favoured whichever came second. Both
//! sides make untimed warm-up runs first. Each plugin run's SOAP calls are counted: a
//! listing must be one call (RetrievePropertiesEx through the session's view) and dominfo
//! two (the names through that view, then the one VM), as the floor makes.

use rvirt_plugin_esx::EsxConnection;
use rvirt_sdk::abi::{
    DomainRef, DriverConnection, EventSink, EventSink_TO,
    abi_stable::{sabi_trait::TD_Opaque, std_types::RResult, std_types::RStr},
};
use rvirt_tests::vcsim::Vcsim;
use std::time::Instant;

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

    let calls = || c.session().client.calls();
    let list_run = || -> f64 {
        let before = calls();
        let t = Instant::now();
        let n = c.vms().expect("list").len();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(n, vms);
        assert_eq!(calls() - before, 1, "a listing is one SOAP call");
        ms
    };
    let info_run = || -> f64 {
        let before = calls();
        let t = Instant::now();
        let d = match c.lookup_by_name(RStr::from_str(&name)) {
            RResult::ROk(d) => d,
            RResult::RErr(e) => panic!("lookup {name}: {}", e.message),
        };
        let mem = match c.get_info(d.uuid) {
            RResult::ROk(i) => i.memory_kib,
            RResult::RErr(e) => panic!("info {name}: {}", e.message),
        };
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert!(mem > 0);
        assert_eq!(
            calls() - before,
            2,
            "dominfo is two SOAP calls, as the floor's"
        );
        ms
    };
    let script = rvirt_tests::workspace_root().join("benches/esx_floor.py");
    let mut floor = std::process::Command::new("python3")
        .arg(script)
        .arg(sim.port.to_string())
        .arg("serve")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 benches/esx_floor.py");
    let mut to_floor = floor.stdin.take().expect("floor stdin");
    let mut from_floor = std::io::BufReader::new(floor.stdout.take().expect("floor stdout"));
    let mut floor_run = |op: &str| -> f64 {
        use std::io::{BufRead, Write};
        writeln!(to_floor, "{op}").expect("writing to the floor");
        to_floor.flush().expect("writing to the floor");
        let mut line = String::new();
        from_floor.read_line(&mut line).expect("reading the floor");
        let mut w = line.split_whitespace();
        let ms = w.next().and_then(|t| t.parse().ok());
        let out = w.next().unwrap_or_default();
        match op {
            "list" => assert_eq!(out, vms.to_string(), "the floor lists every VM"),
            _ => assert!(out.parse::<u64>().is_ok_and(|m| m > 0), "floor: {line}"),
        }
        ms.unwrap_or_else(|| panic!("the floor answered '{line}'"))
    };
    let info_op = format!("info {name}");
    // warm-up, untimed
    for _ in 0..3 {
        list_run();
        floor_run("list");
        info_run();
        floor_run(&info_op);
    }
    let (mut list, mut info, mut floor_list, mut floor_info) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        list.push(list_run());
        floor_list.push(floor_run("list"));
    }
    for _ in 0..runs {
        info.push(info_run());
        floor_info.push(floor_run(&info_op));
    }
    drop(to_floor);
    let _ = floor.wait();
    // the ratio of each pair, besides the ratio of the medians
    let ratios = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(x, y)| x / y).collect());
    let (rl, ri) = (ratios(&list, &floor_list), ratios(&info, &floor_info));
    let (l, fl, i, fi) = (
        median(list),
        median(floor_list),
        median(info),
        median(floor_info),
    );
    println!("vcsim ESX mode, {vms} VMs, one session, {runs} paired runs, medians (ms):");
    println!("  plugin list (vms, 1 call)               {l:8.1}");
    println!(
        "  floor  list (esx_floor.py serve)        {fl:8.1}   ratio {:.2} (median of pairs {rl:.2})",
        l / fl
    );
    println!("  plugin dominfo (lookup_by_name+info, 2) {i:8.1}");
    println!(
        "  floor  info (esx_floor.py serve)        {fi:8.1}   ratio {:.2} (median of pairs {ri:.2})",
        i / fi
    );
}

//! `<capabilities>` of the QEMU driver: the real host (`/proc`, `/sys`) and what the
//! emulators report about themselves, formatted by `rvirt-xml`'s capabilities builder.
//!
//! An emulator is probed once per binary (path, size and modification time) over QMP,
//! the way libvirt does: `-machine none` with the monitor on stdio, `query-machines`,
//! then `quit`. Later calls reuse the result, so `virsh capabilities` stays fast.

use crate::command;
use rvirt_xml::caps::{Capabilities, CpuTopology, GuestCaps, HostCaps, HostCell, Machine};
use serde_json::Value;
use std::{
    collections::HashMap,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

/// Errors of probing an emulator.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The binary could not be run.
    #[error("cannot run '{}'", path.display())]
    Spawn {
        /// The emulator.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// It did not answer in time.
    #[error("'{}' did not answer the capability probe within {timeout:?}", path.display())]
    Timeout {
        /// The emulator.
        path: PathBuf,
        /// How long it had.
        timeout: Duration,
    },
    /// Its answer was not what QMP promises.
    #[error("unexpected answer of '{}' to the capability probe: {what}", path.display())]
    Answer {
        /// The emulator.
        path: PathBuf,
        /// What was missing.
        what: String,
    },
}

/// What an emulator says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatorInfo {
    /// `major * 1_000_000 + minor * 1_000 + micro`, as libvirt reports versions.
    pub version: u64,
    /// Machine types in libvirt's order: the default first; an alias (`pc`) followed by
    /// the machine it stands for (`pc-i440fx-7.2`).
    pub machines: Vec<Machine>,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The identity of a binary for the cache: size and modification time.
fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

type Cache = HashMap<PathBuf, ((u64, SystemTime), Arc<EmulatorInfo>)>;

/// What `emulator` reports, probed once per binary.
pub fn probe(emulator: &Path) -> Result<Arc<EmulatorInfo>, ProbeError> {
    static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
    let st = stamp(emulator).ok_or_else(|| ProbeError::Spawn {
        path: emulator.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    let lock = || CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((s, info)) = lock().get_or_insert_with(HashMap::new).get(emulator)
        && *s == st
    {
        return Ok(info.clone());
    }
    // Probed outside the lock: a slow binary does not hold up the others.
    let info = Arc::new(run_probe(emulator)?);
    lock()
        .get_or_insert_with(HashMap::new)
        .insert(emulator.to_path_buf(), (st, info.clone()));
    Ok(info)
}

fn run_probe(emulator: &Path) -> Result<EmulatorInfo, ProbeError> {
    let path = emulator.to_path_buf();
    let mut child = Command::new(emulator)
        .args([
            "-S",
            "-no-user-config",
            "-nodefaults",
            "-nographic",
            "-machine",
            "none,accel=tcg",
            "-qmp",
            "stdio",
        ])
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| ProbeError::Spawn {
            path: path.clone(),
            source,
        })?;
    // QMP reads commands in order; `quit` ends the process, so stdout reaches EOF.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(
            b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-machines\"}\n{\"execute\":\"quit\"}\n",
        );
    }
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_string(&mut out);
        }
        out
    });
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if t0.elapsed() < PROBE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                return Err(ProbeError::Timeout {
                    path,
                    timeout: PROBE_TIMEOUT,
                });
            }
        }
    }
    let out = reader.join().unwrap_or_default();
    parse_probe(&out).map_err(|what| ProbeError::Answer { path, what })
}

/// The greeting's version and the `query-machines` answer of a probe's output.
fn parse_probe(out: &str) -> Result<EmulatorInfo, String> {
    let mut version = None;
    let mut machines = None;
    for line in out.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(q) = v.pointer("/QMP/version/qemu") {
            let n = |k: &str| q.get(k).and_then(Value::as_u64).unwrap_or(0);
            version = Some(n("major") * 1_000_000 + n("minor") * 1_000 + n("micro"));
        } else if let Some(list) = v.get("return").and_then(Value::as_array) {
            machines = Some(order_machines(list));
        }
    }
    Ok(EmulatorInfo {
        version: version.ok_or("no QMP greeting")?,
        machines: machines.ok_or("no answer to query-machines")?,
    })
}

/// libvirt's order: the default machine first, the rest by name; an alias is listed
/// with `canonical=` and followed by the machine it names.
fn order_machines(list: &[Value]) -> Vec<Machine> {
    struct M<'a> {
        name: &'a str,
        alias: Option<&'a str>,
        max: Option<u32>,
        default: bool,
        deprecated: bool,
    }
    let mut ms: Vec<M<'_>> = list
        .iter()
        .filter_map(|m| {
            Some(M {
                name: m.get("name")?.as_str()?,
                alias: m.get("alias").and_then(Value::as_str),
                max: m
                    .get("cpu-max")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok()),
                default: m.get("is-default").and_then(Value::as_bool) == Some(true),
                deprecated: m.get("deprecated").and_then(Value::as_bool) == Some(true),
            })
        })
        .collect();
    ms.sort_by(|a, b| b.default.cmp(&a.default).then(a.name.cmp(b.name)));
    let mut out = Vec::new();
    for m in ms {
        if let Some(alias) = m.alias {
            out.push(Machine {
                name: alias.to_string(),
                canonical: Some(m.name.to_string()),
                max_cpus: m.max,
                deprecated: m.deprecated,
            });
        }
        out.push(Machine {
            name: m.name.to_string(),
            canonical: None,
            max_cpus: m.max,
            deprecated: m.deprecated,
        });
    }
    out
}

/// The host's UUID: SMBIOS (`product_uuid`, readable by root), else the machine id.
fn host_uuid() -> Option<uuid::Uuid> {
    let valid = |u: &uuid::Uuid| !u.is_nil() && u.as_bytes().iter().any(|b| *b != 0xff);
    std::fs::read_to_string("/sys/class/dmi/id/product_uuid")
        .ok()
        .and_then(|s| uuid::Uuid::parse_str(s.trim()).ok())
        .filter(valid)
        .or_else(|| {
            std::fs::read_to_string("/etc/machine-id")
                .ok()
                .and_then(|s| uuid::Uuid::parse_str(s.trim()).ok())
                .filter(valid)
        })
}

/// Vendor and topology from `/proc/cpuinfo` (libvirt's names: `Intel`, `AMD`).
fn host_cpu(cpuinfo: &str) -> (Option<String>, Option<CpuTopology>) {
    let field = |k: &str| {
        cpuinfo.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n.trim() == k).then(|| v.trim().to_string())
        })
    };
    let vendor = field("vendor_id").map(|v| match v.as_str() {
        "GenuineIntel" => "Intel".to_string(),
        "AuthenticAMD" => "AMD".to_string(),
        _ => v,
    });
    let num = |k: &str| field(k).and_then(|v| v.parse::<u32>().ok());
    let logical = cpuinfo
        .lines()
        .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
        .count() as u32;
    let sockets = {
        let mut ids: Vec<&str> = cpuinfo
            .lines()
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                (n.trim() == "physical id").then_some(v.trim())
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len() as u32
    };
    let topology = match (num("cpu cores"), num("siblings")) {
        (Some(cores), Some(siblings)) if cores > 0 && sockets > 0 => Some(CpuTopology {
            sockets,
            dies: 1,
            cores,
            threads: (siblings / cores).max(1),
        }),
        _ if logical > 0 => Some(CpuTopology {
            sockets: 1,
            dies: 1,
            cores: logical,
            threads: 1,
        }),
        _ => None,
    };
    (vendor, topology)
}

/// `0-3,8` → `[0, 1, 2, 3, 8]`.
fn cpu_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// NUMA cells from `/sys/devices/system/node`.
fn host_cells() -> Vec<HostCell> {
    let mut cells = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/devices/system/node") else {
        return cells;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_prefix("node")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = e.path();
        let cpus = std::fs::read_to_string(dir.join("cpulist"))
            .map(|s| cpu_list(&s))
            .unwrap_or_default();
        let memory_kib = std::fs::read_to_string(dir.join("meminfo"))
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.contains("MemTotal:"))
                    .and_then(|l| l.split_whitespace().rev().nth(1)?.parse().ok())
            })
            .unwrap_or(0);
        cells.push(HostCell {
            id,
            memory_kib,
            cpus,
        });
    }
    cells.sort_by_key(|c| c.id);
    cells
}

/// The guest architectures the driver runs, with their word size.
const GUEST_ARCHES: &[(&str, u32)] = &[("x86_64", 64), ("i686", 32)];

/// The capabilities document: the host, and one guest per architecture whose emulator
/// is installed and answers the probe.
pub fn capabilities() -> Capabilities {
    let (cpu_vendor, cpu_topology) =
        host_cpu(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
    let host = HostCaps {
        uuid: host_uuid(),
        arch: std::env::consts::ARCH.to_string(),
        cpu_model: None,
        cpu_vendor,
        cpu_topology,
        cells: host_cells(),
        migration_transports: Vec::new(),
        secmodels: vec![("none".into(), "0".into())],
    };
    let kvm = command::kvm_usable().is_ok();
    let mut guests = Vec::new();
    for &(arch, wordsize) in GUEST_ARCHES {
        let emulator = command::default_emulator(arch);
        let Ok(info) = probe(Path::new(&emulator)) else {
            continue;
        };
        let mut domain_types = vec!["qemu".to_string()];
        if kvm {
            domain_types.push("kvm".into());
        }
        guests.push(GuestCaps {
            os_type: "hvm".into(),
            arch: arch.into(),
            wordsize,
            emulator: Some(emulator),
            machines: info.machines.clone(),
            domain_types,
            features: vec![("acpi".into(), true, true), ("apic".into(), true, false)],
        });
    }
    Capabilities { host, guests }
}

/// The version of the default x86_64 emulator (0 if it cannot be probed).
pub fn qemu_version() -> u64 {
    probe(Path::new(&command::default_emulator("x86_64"))).map_or(0, |i| i.version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn machines_in_libvirts_order() {
        let list = json!([
            {"name": "pc-q35-7.2", "alias": "q35", "cpu-max": 288, "deprecated": false},
            {"name": "none", "cpu-max": 1},
            {"name": "pc-i440fx-7.2", "alias": "pc", "cpu-max": 255, "is-default": true},
            {"name": "pc-i440fx-1.4", "cpu-max": 255, "deprecated": true},
        ]);
        let m = order_machines(list.as_array().unwrap());
        let names: Vec<(&str, Option<&str>)> = m
            .iter()
            .map(|m| (m.name.as_str(), m.canonical.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("pc", Some("pc-i440fx-7.2")),
                ("pc-i440fx-7.2", None),
                ("none", None),
                ("pc-i440fx-1.4", None),
                ("q35", Some("pc-q35-7.2")),
                ("pc-q35-7.2", None),
            ]
        );
        assert_eq!(m[0].max_cpus, Some(255));
        assert!(m[3].deprecated && !m[0].deprecated);
    }

    #[test]
    fn probe_output_parses() {
        let out = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}}, \"capabilities\": []}}\n\
                   {\"return\": {}}\n{\"return\": [{\"name\": \"pc-i440fx-7.2\", \"cpu-max\": 255}]}\n\
                   {\"return\": {}}\n{\"event\": \"SHUTDOWN\", \"data\": {}}\n";
        let i = parse_probe(out).unwrap();
        assert_eq!(i.version, 7_002_022);
        assert_eq!(i.machines.len(), 1);
        assert!(parse_probe("").is_err());
    }

    #[test]
    fn host_cpu_from_cpuinfo() {
        let ci = "processor\t: 0\nvendor_id\t: GenuineIntel\nphysical id\t: 0\nsiblings\t: 4\ncpu cores\t: 2\n\n\
                  processor\t: 1\nvendor_id\t: GenuineIntel\nphysical id\t: 0\nsiblings\t: 4\ncpu cores\t: 2\n";
        let (v, t) = host_cpu(ci);
        assert_eq!(v.as_deref(), Some("Intel"));
        assert_eq!(
            t,
            Some(CpuTopology {
                sockets: 1,
                dies: 1,
                cores: 2,
                threads: 2
            })
        );
        assert_eq!(cpu_list("0-2,5\n"), vec![0, 1, 2, 5]);
    }
}

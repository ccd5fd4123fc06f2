//! Device attach and detach (plugin API 1.7) with libvirt's `VIR_DOMAIN_AFFECT_*` rules:
//! a disk plugged into the running QEMU (`blockdev-add`, `device_add`; what it needs is
//! planned by [`command::hotplug_disk`]) and unplugged (`device_del`, waiting until the
//! guest let it go, then `blockdev-del`), and the persistent definition gaining or losing
//! the same `<disk>`. A failed plug removes the nodes it added: nothing is half-attached.

use super::tuning::affected;
use super::{Driver, DriverError, Result, perr};
use crate::command;
use rvirt_sdk::abi::{ErrorCode, ErrorDomain, PluginError};
use rvirt_xml::{Domain, Element};
use serde_json::json;
use std::time::{Duration, Instant};

/// How long a detach waits for the guest to release the device. libvirt waits 5 s and
/// then finishes the removal when QEMU reports it; this driver answers only once the
/// device is gone (a loaded TCG guest can take more than 10 s to eject a PCI device).
const UNPLUG_WAIT: Duration = Duration::from_secs(30);

fn invalid(msg: String) -> DriverError {
    perr(PluginError::new(
        ErrorCode::InvalidArg,
        ErrorDomain::Qemu,
        msg,
    ))
}

/// The `<disk>` a device document describes, with its `<target dev>`.
fn parse_disk(xml: &str, op: &str) -> Result<(Element, String)> {
    let e = Element::parse(xml).map_err(DriverError::Xml)?;
    if e.name() != "disk" {
        return Err(perr(PluginError::no_support(&format!(
            "{op} of a <{}> device in the qemu driver (disks only)",
            e.name()
        ))));
    }
    let dev = e
        .child("target")
        .and_then(|t| t.attr("dev"))
        .ok_or_else(|| invalid("disk/target/@dev: missing".into()))?
        .to_string();
    Ok((e, dev))
}

fn target_of(d: &Element) -> Option<&str> {
    d.child("target").and_then(|t| t.attr("dev"))
}

/// `def` with `disk` appended to its devices (no alias or address: those belong to a run).
fn with_disk(def: &Domain, disk: &Element) -> Result<Domain> {
    let dev = target_of(disk).unwrap_or_default();
    if def.devices_of("disk").any(|d| target_of(d) == Some(dev)) {
        return Err(invalid(format!(
            "target '{dev}' already exists in the persistent definition"
        )));
    }
    let mut d = def.clone();
    let mut e = disk.clone();
    e.remove_children(|c| c.name() == "alias" || c.name() == "address");
    d.element_mut().child_or_insert("devices").push(e);
    Ok(d)
}

/// `def` without the disk on `dev`.
fn without_disk(def: &Domain, dev: &str, which: &str) -> Result<Domain> {
    if !def.devices_of("disk").any(|d| target_of(d) == Some(dev)) {
        return Err(perr(PluginError::new(
            ErrorCode::OperationFailed,
            ErrorDomain::Qemu,
            format!("operation failed: disk {dev} not found in the {which} definition"),
        )));
    }
    let mut d = def.clone();
    if let Some(devs) = d.element_mut().child_mut("devices") {
        devs.remove_children(|c| c.name() == "disk" && target_of(c) == Some(dev));
    }
    Ok(d)
}

/// The highest `N` of the `libvirt-N-*` block nodes QEMU has, so a new disk's nodes are
/// named after all of them.
fn next_node(q: &rvirt_qmp::Qmp) -> Result<u32> {
    let nodes = q.execute("query-named-block-nodes", Some(json!({"flat": true})))?;
    Ok(nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["node-name"].as_str())
        .filter_map(|n| {
            n.strip_prefix("libvirt-")?
                .split('-')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(0)
        + 1)
}

/// The block nodes behind the device `alias` (format node first), from `query-block`.
fn nodes_of(q: &rvirt_qmp::Qmp, alias: &str) -> Result<Vec<String>> {
    let blocks = q.execute("query-block", None)?;
    let qdev = format!("/machine/peripheral/{alias}/");
    let Some(top) = blocks
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| {
            b["qdev"]
                .as_str()
                .is_some_and(|p| p == alias || p.starts_with(&qdev))
        })
        .and_then(|b| b["inserted"]["node-name"].as_str())
    else {
        return Ok(Vec::new());
    };
    let mut out = vec![top.to_string()];
    if let Some(n) = top.strip_suffix("-format") {
        out.push(format!("{n}-storage"));
    }
    Ok(out)
}

impl Driver {
    /// virDomainAttachDeviceFlags (disks).
    pub fn attach_device(&'static self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<()> {
        let op = "virDomainAttachDeviceFlags";
        let (disk, _) = parse_disk(xml, op)?;
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (active, persistent, def, live_def) = self.defs(uuid)?;
        let (live, config) = affected(flags, active, persistent)?;
        let new_config = config.then(|| with_disk(&def, &disk)).transpose()?;
        if live {
            let live_def = live_def.expect("an active domain has a live definition");
            let (q, generation) = self.running(uuid)?;
            let plan = command::hotplug_disk(&live_def, &disk, next_node(&q)?)?;
            if let Some(src) = disk
                .child("source")
                .and_then(|s| s.attr("file").or_else(|| s.attr("dev")))
                && !std::path::Path::new(src).exists()
            {
                return Err(invalid(format!(
                    "disk '{}': source '{src}' does not exist",
                    plan.target
                )));
            }
            let mut added: Vec<String> = Vec::new();
            let plugged = (|| -> Result<()> {
                for node in &plan.blockdevs {
                    q.execute("blockdev-add", Some(node.clone()))?;
                    added.push(node["node-name"].as_str().unwrap_or_default().to_string());
                }
                q.execute("device_add", Some(plan.device.clone()))?;
                Ok(())
            })();
            if let Err(e) = plugged {
                for n in added.iter().rev() {
                    let _ = q.execute("blockdev-del", Some(json!({ "node-name": n })));
                }
                return Err(e);
            }
            let mut st = self.lock();
            if let Some(d) = st.doms.get_mut(&uuid)
                && let Some(run) = d.run.as_mut().filter(|r| r.generation == generation)
            {
                run.live
                    .element_mut()
                    .child_or_insert("devices")
                    .push(plan.live.clone());
                let run_ref = d.run.as_ref().expect("just matched");
                let _ = self.write_status_locked(d, run_ref);
            }
        }
        if let Some(def) = new_config {
            self.store_config(uuid, def)?;
        }
        Ok(())
    }

    /// virDomainDetachDeviceFlags (disks): unplugged once the guest released it (up to
    /// [`UNPLUG_WAIT`]), then its block nodes are removed.
    pub fn detach_device(&'static self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<()> {
        let op = "virDomainDetachDeviceFlags";
        let (_, dev) = parse_disk(xml, op)?;
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (active, persistent, def, live_def) = self.defs(uuid)?;
        let (live, config) = affected(flags, active, persistent)?;
        let new_config = config
            .then(|| without_disk(&def, &dev, "persistent"))
            .transpose()?;
        if live {
            let live_def = live_def.expect("an active domain has a live definition");
            let new_live = without_disk(&live_def, &dev, "running")?;
            let elem = live_def
                .devices_of("disk")
                .find(|d| target_of(d) == Some(dev.as_str()))
                .expect("checked by without_disk");
            let bus = elem
                .child("target")
                .and_then(|t| t.attr("bus"))
                .unwrap_or("");
            let alias = elem
                .child("alias")
                .and_then(|a| a.attr("name"))
                .unwrap_or_default()
                .to_string();
            if bus != "virtio" || alias.is_empty() {
                return Err(perr(PluginError::no_support(&format!(
                    "{op} of disk '{dev}' on bus '{bus}' in the qemu driver (virtio disks only)"
                ))));
            }
            let (q, generation) = self.running(uuid)?;
            let nodes = nodes_of(&q, &alias)?;
            q.execute("device_del", Some(json!({ "id": alias })))?;
            let t0 = Instant::now();
            while !nodes_of(&q, &alias)?.is_empty() {
                if t0.elapsed() > UNPLUG_WAIT {
                    return Err(perr(PluginError::new(
                        ErrorCode::OperationTimeout,
                        ErrorDomain::Qemu,
                        format!(
                            "operation timed out: the guest did not release disk '{dev}' within {} s (it is removed when the guest lets it go)",
                            UNPLUG_WAIT.as_secs()
                        ),
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            for n in &nodes {
                let _ = q.execute("blockdev-del", Some(json!({ "node-name": n })));
            }
            let mut st = self.lock();
            if let Some(d) = st.doms.get_mut(&uuid)
                && let Some(run) = d.run.as_mut().filter(|r| r.generation == generation)
            {
                run.live = new_live;
                let run_ref = d.run.as_ref().expect("just matched");
                let _ = self.write_status_locked(d, run_ref);
            }
        }
        if let Some(def) = new_config {
            self.store_config(uuid, def)?;
        }
        Ok(())
    }
}

/// Node names of a `query-named-block-nodes` answer (for tests).
#[cfg(test)]
fn names(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["node-name"].as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> Domain {
        Domain::parse(
            "<domain type='qemu'><name>h</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>\
             <memory>65536</memory><os><type>hvm</type></os><devices>\
             <disk type='file' device='disk'><source file='/a'/><target dev='vda' bus='virtio'/></disk>\
             </devices></domain>",
        )
        .unwrap()
    }

    #[test]
    fn the_persistent_definition_gains_and_loses_the_disk_by_target() {
        let (disk, dev) = parse_disk(
            "<disk type='file'><source file='/b'/><target dev='vdb' bus='virtio'/><alias name='x'/></disk>",
            "attach",
        )
        .unwrap();
        assert_eq!(dev, "vdb");
        let d = with_disk(&def(), &disk).unwrap();
        assert_eq!(d.devices_of("disk").count(), 2);
        assert!(!d.to_xml(&Default::default()).contains("alias"));
        assert!(with_disk(&d, &disk).is_err(), "the same target twice");
        let d = without_disk(&d, "vda", "persistent").unwrap();
        assert_eq!(
            d.devices_of("disk")
                .filter_map(target_of)
                .collect::<Vec<_>>(),
            ["vdb"]
        );
        assert!(without_disk(&d, "vdz", "persistent").is_err());
        assert!(parse_disk("<interface type='user'/>", "attach").is_err());
        assert!(parse_disk("<disk type='file'/>", "attach").is_err());
        let v = json!([{"node-name": "libvirt-2-format"}, {"node-name": "libvirt-2-storage"}]);
        assert_eq!(names(&v), ["libvirt-2-format", "libvirt-2-storage"]);
    }
}

//! Device attach and detach (plugin API 1.7) with libvirt's `VIR_DOMAIN_AFFECT_*` rules:
//! a disk plugged into the running QEMU (`blockdev-add`, `device_add`; what it needs is
//! planned by [`command::hotplug_disk`]) and unplugged (`device_del`, waiting until the
//! guest let it go, then `blockdev-del`), and the persistent definition gaining or losing
//! the same `<disk>`. A failed plug removes the nodes it added: nothing is half-attached.
//!
//! Network interfaces the same way ([`command::hotplug_nic`]): a bridge or network
//! interface gets its TAP (and network port) made here, passed to QEMU with `getfd`,
//! then `netdev_add` and `device_add`; the unplug waits for QEMU's `DEVICE_DELETED`
//! (the guest acknowledged the eject), then `netdev_del` closes QEMU's descriptor, which
//! removes the TAP, and the network port is given back. Interfaces are matched by MAC
//! address, as libvirt does.

use super::tuning::affected;
use super::{Driver, DriverError, Result, perr};
use crate::command;
use rvirt_sdk::abi::{ErrorCode, ErrorDomain, PluginError};
use rvirt_sdk::util::operation_invalid;
use rvirt_xml::{Domain, Element};
use serde_json::json;
use std::time::{Duration, Instant};

/// How long a detach waits for the guest to release the device. libvirt waits 5 s and
/// then finishes the removal when QEMU reports it; this driver answers only once the
/// device is gone (a loaded TCG guest can take more than 10 s to eject a PCI device).
pub(super) const UNPLUG_WAIT: Duration = Duration::from_secs(30);

/// How often a detach without QEMU's `DEVICE_DELETED` yet looks whether the device went
/// anyway (a safety net against a missed event).
const UNPLUG_POLL: Duration = Duration::from_millis(100);

/// A watch for QEMU's `DEVICE_DELETED` of the device `id`, registered before its
/// `device_del` so that an event right after the answer is not missed.
pub(super) fn deleted_watch(q: &rvirt_qmp::Qmp, id: &str) -> rvirt_qmp::EventWatch {
    let id = id.to_string();
    q.watch(move |e| e.name == "DEVICE_DELETED" && e.data["device"].as_str() == Some(&id))
}

fn invalid(msg: String) -> DriverError {
    perr(PluginError::new(
        ErrorCode::InvalidArg,
        ErrorDomain::Qemu,
        msg,
    ))
}

/// The device a document describes, if the driver plugs its kind.
fn parse_device(xml: &str, op: &str) -> Result<Element> {
    let e = Element::parse(xml).map_err(DriverError::Xml)?;
    if e.name() != "disk" && e.name() != "interface" {
        return Err(perr(PluginError::no_support(&format!(
            "{op} of a <{}> device in the qemu driver (disks and interfaces only)",
            e.name()
        ))));
    }
    Ok(e)
}

/// The `<disk>` a device document describes, with its `<target dev>`.
#[cfg(test)]
fn parse_disk(xml: &str, op: &str) -> Result<(Element, String)> {
    let e = parse_device(xml, op)?;
    if e.name() != "disk" {
        return Err(invalid("not a disk".into()));
    }
    disk_target(e)
}

fn disk_target(e: Element) -> Result<(Element, String)> {
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

fn mac_of(i: &Element) -> Option<&str> {
    i.child("mac").and_then(|m| m.attr("address"))
}

/// The interface of `def` that `wanted` names: by MAC address, or the only one when it
/// gives none.
fn find_nic<'a>(def: &'a Domain, wanted: &Element, which: &str) -> Result<&'a Element> {
    let mut all = def.devices_of("interface");
    let found = match mac_of(wanted) {
        Some(m) => all.find(|i| mac_of(i).is_some_and(|x| x.eq_ignore_ascii_case(m))),
        None => {
            let v: Vec<_> = all.collect();
            if v.len() > 1 {
                return Err(perr(PluginError::new(
                    ErrorCode::OperationFailed,
                    ErrorDomain::Qemu,
                    "operation failed: the domain has several interfaces: name one by its <mac address>".to_string(),
                )));
            }
            v.into_iter().next()
        }
    };
    found.ok_or_else(|| {
        perr(PluginError::new(
            ErrorCode::OperationFailed,
            ErrorDomain::Qemu,
            format!(
                "operation failed: no interface with MAC address '{}' in the {which} definition",
                mac_of(wanted).unwrap_or("")
            ),
        ))
    })
}

/// `def` with `iface` appended (without what belongs to a run).
fn with_nic(def: &Domain, iface: &Element) -> Result<Domain> {
    let mac = mac_of(iface).unwrap_or_default();
    if def
        .devices_of("interface")
        .any(|i| mac_of(i).is_some_and(|x| x.eq_ignore_ascii_case(mac)))
    {
        return Err(invalid(format!(
            "an interface with MAC address '{mac}' already exists in the persistent definition"
        )));
    }
    let mut d = def.clone();
    let mut e = iface.clone();
    e.remove_children(|c| matches!(c.name(), "alias" | "address" | "target"));
    if let Some(src) = e.child_mut("source")
        && iface.attr("type") == Some("network")
    {
        src.remove_attr("portid");
        src.remove_attr("bridge");
    }
    d.element_mut().child_or_insert("devices").push(e);
    Ok(d)
}

/// `def` without the interface whose MAC address is `mac`.
fn without_nic(def: &Domain, mac: &str) -> Domain {
    let mut d = def.clone();
    if let Some(devs) = d.element_mut().child_mut("devices") {
        devs.remove_children(|c| {
            c.name() == "interface" && mac_of(c).is_some_and(|x| x.eq_ignore_ascii_case(mac))
        });
    }
    d
}

impl Driver {
    /// virDomainAttachDeviceFlags (disks and interfaces).
    pub fn attach_device(&'static self, uuid: uuid::Uuid, xml: &str, flags: u32) -> Result<()> {
        let op = "virDomainAttachDeviceFlags";
        let dev = parse_device(xml, op)?;
        if dev.name() == "interface" {
            return self.attach_nic(uuid, dev, flags);
        }
        let (disk, _) = disk_target(dev)?;
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (active, persistent, def, live_def) = self.defs(uuid)?;
        let (live, config) = affected(flags, active, persistent)?;
        let new_config = config.then(|| with_disk(&def, &disk)).transpose()?;
        if live {
            let live_def = live_def.expect("an active domain has a live definition");
            let (q, generation) = self.running(uuid)?;
            let known = self
                .lock()
                .doms
                .get(&uuid)
                .and_then(|d| d.run.as_ref())
                .filter(|r| r.generation == generation)
                .map_or(0, |r| r.next_node);
            let node = if known > 0 { known } else { next_node(&q)? };
            let plan = command::hotplug_disk(&live_def, &disk, node)?;
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
            {
                // taken whether the plug succeeds or not: a failed one may have left a
                // node QEMU refused to delete
                let mut st = self.lock();
                if let Some(run) = st
                    .doms
                    .get_mut(&uuid)
                    .and_then(|d| d.run.as_mut())
                    .filter(|r| r.generation == generation)
                {
                    run.next_node = node + 1;
                }
            }
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
        let dev = parse_device(xml, op)?;
        if dev.name() == "interface" {
            return self.detach_nic(uuid, &dev, flags);
        }
        let (_, dev) = disk_target(dev)?;
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
            self.take_deleted(uuid, &alias);
            let gone = deleted_watch(&q, &alias);
            q.execute("device_del", Some(json!({ "id": alias })))?;
            let t0 = Instant::now();
            // QEMU's DEVICE_DELETED ends the wait at once; the block nodes are asked after
            // every 100 ms without it as well, in case the event was lost
            loop {
                match gone.wait(UNPLUG_POLL) {
                    Ok(Some(_)) => break,
                    Ok(None) if nodes_of(&q, &alias)?.is_empty() => break,
                    Ok(None) => {}
                    Err(_) => {
                        return Err(perr(operation_invalid(
                            ErrorDomain::Qemu,
                            "domain is not running",
                        )));
                    }
                }
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
            }
            // (the event thread's record of it is not needed any more)
            self.take_deleted(uuid, &alias);
            // the nodes go once QEMU let go of them (a node the device still held is
            // refused "in use" for a moment after the unplug): left open, its image stays
            // locked and cannot be attached again
            for n in &nodes {
                let mut tries = 0;
                while let Err(e) = q.execute("blockdev-del", Some(json!({ "node-name": n }))) {
                    tries += 1;
                    if tries >= 200 || q.is_closed() {
                        eprintln!("rvirt qemu: blockdev-del {n}: {e}");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            if let Some(dom) = self.replace_live(uuid, generation, new_live) {
                self.emit_device_removed(dom, &alias);
            }
        }
        if let Some(def) = new_config {
            self.store_config(uuid, def)?;
        }
        Ok(())
    }
}

impl Driver {
    /// Attaches the `<interface>` `iface`: a MAC address is made when it has none (the
    /// same one for the live and persistent definitions).
    fn attach_nic(&'static self, uuid: uuid::Uuid, mut iface: Element, flags: u32) -> Result<()> {
        if mac_of(&iface).is_none() {
            iface.remove_children(|c| c.name() == "mac");
            iface.nodes_mut().insert(
                0,
                rvirt_xml::Node::Element(
                    Element::new("mac").with_attr("address", &command::random_mac()),
                ),
            );
        }
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (active, persistent, def, live_def) = self.defs(uuid)?;
        let (live, config) = affected(flags, active, persistent)?;
        let new_config = config.then(|| with_nic(&def, &iface)).transpose()?;
        if live {
            let live_def = live_def.expect("an active domain has a live definition");
            // checked before anything is made
            command::hotplug_nic(
                &live_def,
                &iface,
                Some(&command::TapInfo {
                    fd: -1,
                    dev: "vnet".into(),
                    port: None,
                }),
            )?;
            let (q, generation) = self.running(uuid)?;
            let index = live_def.devices_of("interface").count();
            let made = match (command::tap_interface(&iface, index), iface.attr("type")) {
                (Some(t), _) => self.make_tap(&live_def, &t)?,
                (None, Some(ty @ ("bridge" | "network"))) => {
                    return Err(invalid(format!(
                        "interface of type '{ty}' needs <source {ty}=...>"
                    )));
                }
                (None, _) => None,
            };
            let release = |made: &Option<super::resources::MadeTap>| {
                if let Some((net, portid, _)) = made.as_ref().and_then(|m| m.port.as_ref()) {
                    self.release_port(net, portid);
                }
            };
            let info = made.as_ref().map(|m| command::TapInfo {
                fd: std::os::fd::AsRawFd::as_raw_fd(&m.tap.fd),
                dev: m.tap.name.clone(),
                port: m.port.as_ref().map(|(_, id, br)| (id.clone(), br.clone())),
            });
            let plan = match command::hotplug_nic(&live_def, &iface, info.as_ref()) {
                Ok(p) => p,
                Err(e) => {
                    release(&made);
                    return Err(e.into());
                }
            };
            let netdev_id = plan.netdev["id"].as_str().unwrap_or_default().to_string();
            let mut stage = 0;
            let plugged = (|| -> Result<()> {
                if let (Some(name), Some(m)) = (&plan.fdname, &made) {
                    q.execute_with_fd(
                        "getfd",
                        Some(json!({ "fdname": name })),
                        std::os::fd::AsFd::as_fd(&m.tap.fd),
                    )?;
                    stage = 1;
                }
                q.execute("netdev_add", Some(plan.netdev.clone()))?;
                stage = 2;
                q.execute("device_add", Some(plan.device.clone()))?;
                Ok(())
            })();
            if let Err(e) = plugged {
                if stage >= 2 {
                    let _ = q.execute("netdev_del", Some(json!({ "id": netdev_id })));
                } else if stage == 1
                    && let Some(name) = &plan.fdname
                {
                    let _ = q.execute("closefd", Some(json!({ "fdname": name })));
                }
                release(&made);
                return Err(e);
            }
            // QEMU holds its own descriptor of the TAP now; ours closes with `made`.
            drop(made);
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

    /// Detaches the interface `wanted` names (by MAC address): from the running guest
    /// once QEMU reported it deleted (up to [`UNPLUG_WAIT`]), then its backend, TAP and
    /// network port.
    fn detach_nic(&'static self, uuid: uuid::Uuid, wanted: &Element, flags: u32) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (active, persistent, def, live_def) = self.defs(uuid)?;
        let (live, config) = affected(flags, active, persistent)?;
        let new_config = if config {
            let mac = mac_of(find_nic(&def, wanted, "persistent")?)
                .unwrap_or_default()
                .to_string();
            Some(without_nic(&def, &mac))
        } else {
            None
        };
        if live {
            let live_def = live_def.expect("an active domain has a live definition");
            let elem = find_nic(&live_def, wanted, "running")?.clone();
            let mac = mac_of(&elem).unwrap_or_default().to_string();
            let alias = elem
                .child("alias")
                .and_then(|a| a.attr("name"))
                .unwrap_or_default()
                .to_string();
            let Some(n) = alias.strip_prefix("net").filter(|n| !n.is_empty()) else {
                return Err(perr(PluginError::no_support(&format!(
                    "virDomainDetachDeviceFlags of interface '{mac}' without a device alias in the qemu driver"
                ))));
            };
            let netdev_id = format!("hostnet{n}");
            let (q, generation) = self.running(uuid)?;
            self.take_deleted(uuid, &alias);
            let gone = deleted_watch(&q, &alias);
            q.execute("device_del", Some(json!({ "id": alias })))?;
            let t0 = Instant::now();
            // QEMU's DEVICE_DELETED ends the wait at once; the event thread's record of it
            // is looked at every 100 ms too
            loop {
                match gone.wait(UNPLUG_POLL) {
                    Ok(Some(_)) => break,
                    Ok(None) if self.take_deleted(uuid, &alias) => break,
                    Ok(None) => {}
                    Err(_) => {
                        return Err(perr(operation_invalid(
                            ErrorDomain::Qemu,
                            "domain is not running",
                        )));
                    }
                }
                if t0.elapsed() > UNPLUG_WAIT {
                    return Err(perr(PluginError::new(
                        ErrorCode::OperationTimeout,
                        ErrorDomain::Qemu,
                        format!(
                            "operation timed out: the guest did not release interface '{mac}' within {} s (it is removed when the guest lets it go)",
                            UNPLUG_WAIT.as_secs()
                        ),
                    )));
                }
            }
            self.take_deleted(uuid, &alias);
            if let Err(e) = q.execute("netdev_del", Some(json!({ "id": netdev_id }))) {
                eprintln!("rvirt qemu: netdev_del {netdev_id}: {e}");
            }
            if elem.attr("type") == Some("network")
                && let Some(src) = elem.child("source")
                && let (Some(net), Some(portid)) = (src.attr("network"), src.attr("portid"))
            {
                self.release_port(net, portid);
            }
            let mut st = self.lock();
            if let Some(d) = st.doms.get_mut(&uuid)
                && let Some(run) = d.run.as_mut().filter(|r| r.generation == generation)
            {
                run.live = without_nic(&run.live, &mac);
                let run_ref = d.run.as_ref().expect("just matched");
                let _ = self.write_status_locked(d, run_ref);
                let dom = d.reference();
                drop(st);
                self.emit_device_removed(dom, &alias);
            }
        }
        if let Some(def) = new_config {
            self.store_config(uuid, def)?;
        }
        Ok(())
    }

    /// Whether QEMU reported the device `id` deleted since the last call (which forgets it).
    pub(super) fn take_deleted(&self, uuid: uuid::Uuid, id: &str) -> bool {
        self.lock()
            .doms
            .get_mut(&uuid)
            .and_then(|d| d.run.as_mut())
            .is_some_and(|r| r.deleted.remove(id))
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
        assert!(parse_device("<hostdev/>", "attach").is_err());
        assert!(parse_disk("<disk type='file'/>", "attach").is_err());
        let v = json!([{"node-name": "libvirt-2-format"}, {"node-name": "libvirt-2-storage"}]);
        assert_eq!(names(&v), ["libvirt-2-format", "libvirt-2-storage"]);
    }
}

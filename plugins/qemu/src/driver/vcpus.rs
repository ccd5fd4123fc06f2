//! vCPU hot-plug (`virsh setvcpus --live`): from QEMU's `query-hotpluggable-cpus`, the
//! slots to fill with `device_add` (the CPU model's own type, aliases `vcpuN` with `N` the
//! vCPU's id, libvirt's naming) or to empty with `device_del`, and the live definition's
//! `<vcpu current>` and `<vcpus>` afterwards.
//!
//! Only vCPUs plugged after start can be unplugged: the ones `-smp` made at start are not
//! QEMU devices the monitor can delete (libvirt has the same limit unless it starts them as
//! `-device`s), so asking for fewer is refused naming that.

use super::hotplug::UNPLUG_WAIT;
use super::{Driver, Result, perr};
use rvirt_sdk::abi::{ErrorCode, ErrorDomain, PluginError};
use rvirt_xml::{Domain, Element};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// One slot of `query-hotpluggable-cpus`, in vCPU id order.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    ty: String,
    props: Value,
    /// Where QEMU has the CPU, when one is plugged.
    qom_path: Option<String>,
}

fn topo_key(props: &Value) -> Vec<u64> {
    ["socket-id", "die-id", "cluster-id", "core-id", "thread-id"]
        .iter()
        .map(|k| props[k].as_u64().unwrap_or(0))
        .collect()
}

fn slots(answer: &Value) -> Vec<Slot> {
    let mut v: Vec<Slot> = answer
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Slot {
            ty: e["type"].as_str().unwrap_or_default().to_string(),
            props: e["props"].clone(),
            qom_path: e["qom-path"].as_str().map(str::to_string),
        })
        .collect();
    v.sort_by_key(|s| topo_key(&s.props));
    v
}

/// What to do to reach `n` vCPUs.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct VcpuPlan {
    /// `device_add` arguments, lowest id first.
    pub(super) add: Vec<Value>,
    /// Device ids to delete, highest first.
    pub(super) remove: Vec<String>,
    /// (id, plugged afterwards, hot-pluggable) of every vCPU.
    pub(super) after: Vec<(usize, bool, bool)>,
}

fn refuse(msg: String) -> super::DriverError {
    perr(PluginError::new(
        ErrorCode::OperationUnsupported,
        ErrorDomain::Qemu,
        msg,
    ))
}

/// Plans going to `n` vCPUs from what `query-hotpluggable-cpus` answered.
pub(super) fn plan(answer: &Value, n: u32) -> Result<VcpuPlan> {
    let all = slots(answer);
    let n = n as usize;
    if n > all.len() {
        return Err(perr(PluginError::new(
            ErrorCode::InvalidArg,
            ErrorDomain::Qemu,
            format!(
                "invalid argument: requested vcpus is greater than max allowable vcpus for the live domain: {n} > {}",
                all.len()
            ),
        )));
    }
    let plugged = all.iter().filter(|s| s.qom_path.is_some()).count();
    let mut out = VcpuPlan::default();
    let mut on: Vec<bool> = all.iter().map(|s| s.qom_path.is_some()).collect();
    if n > plugged {
        for (id, s) in all.iter().enumerate() {
            if out.add.len() == n - plugged {
                break;
            }
            if s.qom_path.is_none() {
                let mut dev = json!({"driver": s.ty, "id": format!("vcpu{id}")});
                if let Some(p) = s.props.as_object() {
                    for (k, v) in p {
                        dev[k] = v.clone();
                    }
                }
                out.add.push(dev);
                on[id] = true;
            }
        }
    } else if n < plugged {
        for (id, s) in all.iter().enumerate().rev() {
            if out.remove.len() == plugged - n {
                break;
            }
            let Some(p) = &s.qom_path else { continue };
            match p.strip_prefix("/machine/peripheral/") {
                Some(dev) => {
                    out.remove.push(dev.to_string());
                    on[id] = false;
                }
                None => {
                    return Err(refuse(format!(
                        "unsupported operation: vCPU {id} was started with the domain and QEMU cannot unplug it (only vCPUs plugged while running can be; {} are)",
                        all.iter()
                            .filter(|s| s
                                .qom_path
                                .as_deref()
                                .is_some_and(|p| p.starts_with("/machine/peripheral/")))
                            .count()
                    )));
                }
            }
        }
    }
    out.after = all
        .iter()
        .enumerate()
        .map(|(id, s)| {
            let hot = match &s.qom_path {
                Some(p) => p.starts_with("/machine/peripheral/"),
                None => true,
            };
            (id, on[id], hot)
        })
        .collect();
    Ok(out)
}

/// `live` with `<vcpu current>` and `<vcpus>` as `after` says.
pub(super) fn with_live_vcpus(live: &Domain, after: &[(usize, bool, bool)]) -> Domain {
    let mut d = live.clone();
    let n = after.iter().filter(|(_, on, _)| *on).count();
    let v = d.element_mut().child_or_insert("vcpu");
    v.set_attr("current", &n.to_string());
    let mut vcpus = Element::new("vcpus");
    let mut order = 0;
    for (id, on, hot) in after {
        let mut e = Element::new("vcpu")
            .with_attr("id", &id.to_string())
            .with_attr("enabled", if *on { "yes" } else { "no" })
            .with_attr("hotpluggable", if *hot { "yes" } else { "no" });
        if *on {
            order += 1;
            e = e.with_attr("order", &order.to_string());
        }
        vcpus.push(e);
    }
    let root = d.element_mut();
    root.remove_children(|c| c.name() == "vcpus");
    let at = root
        .nodes()
        .iter()
        .position(|n| matches!(n, rvirt_xml::Node::Element(c) if c.name() == "vcpu"))
        .map_or(root.nodes().len(), |i| i + 1);
    root.nodes_mut().insert(at, rvirt_xml::Node::Element(vcpus));
    d
}

impl Driver {
    /// Plugs or unplugs vCPUs of the running domain until it has `n`; the live
    /// definition follows.
    pub(super) fn set_live_vcpus(&'static self, uuid: uuid::Uuid, n: u32) -> Result<()> {
        let (q, generation) = self.running(uuid)?;
        let answer = q.execute("query-hotpluggable-cpus", None)?;
        let p = plan(&answer, n)?;
        let (tcg, unplugged) = {
            let st = self.lock();
            let d = st.doms.get(&uuid);
            (
                d.is_some_and(|d| d.def.domain_type() == "qemu"),
                d.and_then(|d| d.run.as_ref())
                    .map(|r| r.unplugged_vcpus.clone())
                    .unwrap_or_default(),
            )
        };
        if let Some(id) = p
            .add
            .iter()
            .filter_map(|d| d["id"].as_str())
            .find(|id| tcg && unplugged.contains(*id))
        {
            return Err(refuse(format!(
                "unsupported operation: vCPU '{id}' was unplugged from this TCG guest and QEMU cannot plug the same vCPU again (it exits); it can be plugged after the next start"
            )));
        }
        for dev in &p.add {
            q.execute("device_add", Some(dev.clone()))?;
        }
        for id in &p.remove {
            self.take_deleted(uuid, id);
            q.execute("device_del", Some(json!({ "id": id })))?;
            let t0 = Instant::now();
            let mut polled = Instant::now();
            // QEMU 7.2 reports the deletion of the CPU's `lapic` child, not always of
            // the CPU itself: its slot emptying in `query-hotpluggable-cpus` counts too
            while !self.take_deleted(uuid, id) {
                if polled.elapsed() > Duration::from_millis(250) {
                    polled = Instant::now();
                    let now = q.execute("query-hotpluggable-cpus", None)?;
                    let path = format!("/machine/peripheral/{id}");
                    if !slots(&now)
                        .iter()
                        .any(|s| s.qom_path.as_deref() == Some(path.as_str()))
                    {
                        break;
                    }
                }
                if t0.elapsed() > UNPLUG_WAIT {
                    return Err(perr(PluginError::new(
                        ErrorCode::OperationTimeout,
                        ErrorDomain::Qemu,
                        format!(
                            "operation timed out: the guest did not release vCPU '{id}' within {} s",
                            UNPLUG_WAIT.as_secs()
                        ),
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let mut st = self.lock();
        if let Some(d) = st.doms.get_mut(&uuid)
            && let Some(run) = d.run.as_mut().filter(|r| r.generation == generation)
        {
            run.unplugged_vcpus.extend(p.remove.iter().cloned());
            run.live = with_live_vcpus(&run.live, &p.after);
            let run_ref = d.run.as_ref().expect("just matched");
            let _ = self.write_status_locked(d, run_ref);
            // each vCPU the guest let go is a removed device (its alias, `vcpuN`)
            let dom = d.reference();
            drop(st);
            for id in &p.remove {
                self.emit_device_removed(dom.clone(), id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What QEMU 7.2 answers for `-smp 1,maxcpus=3` on pc (newest slot first), with
    /// vCPU 2 plugged as `vcpu2` earlier.
    fn answer() -> Value {
        json!([
            {"props": {"core-id": 0, "thread-id": 0, "socket-id": 2}, "vcpus-count": 1,
             "qom-path": "/machine/peripheral/vcpu2", "type": "qemu64-x86_64-cpu"},
            {"props": {"core-id": 0, "thread-id": 0, "socket-id": 1}, "vcpus-count": 1,
             "type": "qemu64-x86_64-cpu"},
            {"props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "vcpus-count": 1,
             "qom-path": "/machine/unattached/device[0]", "type": "qemu64-x86_64-cpu"}
        ])
    }

    #[test]
    fn plugging_fills_the_lowest_free_ids_with_the_model_s_type() {
        let p = plan(&answer(), 3).unwrap();
        assert_eq!(
            p.add,
            vec![
                json!({"driver": "qemu64-x86_64-cpu", "id": "vcpu1", "core-id": 0, "thread-id": 0, "socket-id": 1})
            ]
        );
        assert!(p.remove.is_empty());
        assert_eq!(
            p.after,
            vec![(0, true, false), (1, true, true), (2, true, true)]
        );
        assert_eq!(plan(&answer(), 2).unwrap().add, Vec::<Value>::new());
        let e = plan(&answer(), 4).unwrap_err();
        assert!(format!("{e:?}").contains("4 > 3"), "{e:?}");
    }

    #[test]
    fn only_vcpus_plugged_while_running_come_out() {
        let p = plan(&answer(), 1).unwrap();
        assert_eq!(p.remove, vec!["vcpu2".to_string()]);
        assert_eq!(
            p.after,
            vec![(0, true, false), (1, false, true), (2, false, true)]
        );
        let e = plan(&answer(), 0).unwrap_err();
        assert!(format!("{e:?}").contains("QEMU cannot unplug it"), "{e:?}");
    }

    #[test]
    fn the_live_definition_shows_the_count_and_each_vcpu() {
        let d = Domain::parse(
            "<domain type='qemu'><name>v</name><memory>65536</memory>\
             <vcpu placement='static' current='1'>3</vcpu><os><type>hvm</type></os></domain>",
        )
        .unwrap();
        let d = with_live_vcpus(&d, &plan(&answer(), 3).unwrap().after);
        assert_eq!((d.current_vcpus(), d.max_vcpus()), (3, 3));
        let x = d.to_xml(&Default::default());
        assert!(
            x.contains("<vcpu id='1' enabled='yes' hotpluggable='yes' order='2'/>"),
            "{x}"
        );
        assert!(
            x.contains("<vcpu id='0' enabled='yes' hotpluggable='no' order='1'/>"),
            "{x}"
        );
    }
}

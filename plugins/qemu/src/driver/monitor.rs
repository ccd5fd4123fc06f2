//! The QMP side of a running domain: the event loop thread, QMP events turned into
//! state changes and lifecycle events (STOP/RESUME, SHUTDOWN and the `on_poweroff` /
//! `on_reboot` actions, RESET, GUEST_PANICKED), monitor access for lifecycle calls, and
//! pty paths from `query-chardev` into the live XML.
//!
//! Architecture invariant: the driver lock is taken only to update state; events are
//! emitted after it is released and no monitor command runs under it.

use super::domains::Emit;
use super::process::append_log;
use super::{Driver, Result, detail, perr, reason};
use rvirt_qmp::{Event, Qmp};
use rvirt_sdk::abi::{ErrorDomain, event, state};
use rvirt_sdk::util::{no_domain, operation_invalid};
use rvirt_xml::Domain;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long a wait for a QMP event lasts before the waiter asks QEMU itself: a safety net
/// against a missed event (and the refresh of a migration's job statistics), not the
/// way the end is normally noticed.
pub(super) const EVENT_FALLBACK: Duration = Duration::from_millis(50);

/// Whether `e` is a `MIGRATION` event with a final status (QEMU sends them once
/// `migrate-set-capabilities` turned the `events` capability on; see
/// [`migration_events`]).
pub(super) fn migration_ended(e: &Event) -> bool {
    e.name == "MIGRATION"
        && matches!(
            e.data["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        )
}

/// `migrate-set-capabilities` arguments turning QEMU's `MIGRATION` status events on.
pub(super) fn migration_events() -> serde_json::Value {
    serde_json::json!({"capabilities": [{"capability": "events", "state": true}]})
}

impl Driver {
    pub(super) fn spawn_event_loop(
        &'static self,
        uuid: uuid::Uuid,
        generation: u64,
        events: std::sync::mpsc::Receiver<Event>,
        after_start: Option<(PathBuf, String)>,
    ) {
        let _ = std::thread::Builder::new()
            .name("qemu-events".into())
            .spawn(move || {
                if let Some((log, line)) = after_start {
                    // Off the start's path: the status file gains the pty paths, the log
                    // its line.
                    self.refresh_status(uuid, generation);
                    let _ = append_log(&log, &line);
                }
                for ev in events {
                    self.on_event(uuid, generation, ev);
                }
            });
    }

    pub(super) fn transition(
        &self,
        uuid: uuid::Uuid,
        generation: u64,
        to: (i32, i32),
        ev: Option<(i32, i32)>,
    ) -> Emit {
        self.transition_after(uuid, generation, 0, to, ev)
    }

    /// [`Driver::transition`] made by a call once QEMU answered its `stop` or `cont`:
    /// the monitor's events up to `events_read` (taken after that answer) are in the new
    /// state, and the event thread leaves them alone (`Run::events_applied`).
    pub(super) fn transition_after(
        &self,
        uuid: uuid::Uuid,
        generation: u64,
        events_read: u64,
        to: (i32, i32),
        ev: Option<(i32, i32)>,
    ) -> Emit {
        let mut st = self.lock();
        let Some(d) = st.doms.get_mut(&uuid) else {
            return vec![];
        };
        let Some(run) = d.run.as_mut().filter(|r| r.generation == generation) else {
            return vec![];
        };
        run.events_applied = run.events_applied.max(events_read);
        if events_read > 0 {
            // its STOP, if not handled yet, is skipped: the reason is set here
            run.expect_pause = None;
        }
        if d.state == to.0 {
            return vec![];
        }
        d.state = to.0;
        d.reason = to.1;
        if let Some(run) = &d.run {
            let _ = self.write_status_locked(d, run);
        }
        ev.map(|(e, det)| vec![(d.reference(), e, det)])
            .unwrap_or_default()
    }

    pub(super) fn on_event(&self, uuid: uuid::Uuid, generation: u64, ev: Event) {
        match ev.name.as_str() {
            "STOP" => {
                let expect = {
                    let mut st = self.lock();
                    let Some(run) = st
                        .doms
                        .get_mut(&uuid)
                        .and_then(|d| d.run.as_mut())
                        .filter(|r| r.generation == generation)
                    else {
                        return;
                    };
                    if run.shutdown_seen
                        || run.stopping.is_some()
                        || run.panicked
                        || run.resetting
                        || ev.seq <= run.events_applied
                    {
                        return;
                    }
                    run.expect_pause.take().unwrap_or(reason::PAUSED_UNKNOWN)
                };
                let e = self.transition(
                    uuid,
                    generation,
                    (state::PAUSED, expect),
                    Some((event::SUSPENDED, detail::SUSPENDED_PAUSED)),
                );
                self.emit(e);
            }
            "DEVICE_DELETED" => {
                // devices the driver named (not the `/machine/peripheral-anon` ones)
                if let Some(id) = ev.data["device"].as_str() {
                    let mut st = self.lock();
                    if let Some(run) = st
                        .doms
                        .get_mut(&uuid)
                        .and_then(|d| d.run.as_mut())
                        .filter(|r| r.generation == generation)
                    {
                        run.deleted.insert(id.to_string());
                    }
                }
            }
            "RESUME" => {
                {
                    let mut st = self.lock();
                    let Some(run) = st
                        .doms
                        .get_mut(&uuid)
                        .and_then(|d| d.run.as_mut())
                        .filter(|r| r.generation == generation)
                    else {
                        return;
                    };
                    if std::mem::take(&mut run.resetting) || ev.seq <= run.events_applied {
                        return;
                    }
                }
                let e = self.transition(
                    uuid,
                    generation,
                    (state::RUNNING, reason::RUNNING_UNPAUSED),
                    Some((event::RESUMED, detail::RESUMED_UNPAUSED)),
                );
                self.emit(e);
            }
            "SHUTDOWN" => {
                let guest = ev.data["guest"].as_bool().unwrap_or(false);
                let qreason = ev.data["reason"].as_str().unwrap_or("").to_string();
                self.after_shutdown_event(uuid, generation, guest, &qreason);
            }
            "GUEST_PANICKED" => {
                let (action, r, qmp) = {
                    let mut st = self.lock();
                    let Some(d) = st.doms.get_mut(&uuid) else {
                        return;
                    };
                    let action = d
                        .def
                        .element()
                        .child("on_crash")
                        .map(|e| e.text().trim().to_string())
                        .unwrap_or_else(|| "destroy".into());
                    let Some(run) = d.run.as_mut().filter(|r| r.generation == generation) else {
                        return;
                    };
                    run.panicked = true;
                    let q = run.qmp.clone();
                    d.state = state::CRASHED;
                    d.reason = reason::CRASHED_PANICKED;
                    (action, d.reference(), q)
                };
                self.emit(vec![(r, event::CRASHED, detail::CRASHED_PANICKED)]);
                if let Some(q) = qmp {
                    match action.as_str() {
                        "restart" | "restart-rename" => {
                            let _ = q.execute("system_reset", None);
                            let _ = q.execute("cont", None);
                        }
                        "preserve" | "coredump-restart" | "coredump-destroy"
                            if action == "preserve" => {}
                        _ => {
                            let _ = q.execute("quit", None);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    pub(super) fn after_shutdown_event(
        &self,
        uuid: uuid::Uuid,
        generation: u64,
        guest: bool,
        qreason: &str,
    ) {
        let order = self.order();
        let (r, fake) = {
            let mut st = self.lock();
            let Some(d) = st.doms.get_mut(&uuid) else {
                return;
            };
            let Some(run) = d.run.as_mut().filter(|r| r.generation == generation) else {
                return;
            };
            if run.stopping.is_some() {
                return;
            }
            let fake = std::mem::take(&mut run.fake_reboot);
            if fake {
                run.resetting = true;
            } else {
                run.shutdown_seen = true;
            }
            let r = d.reference();
            if !fake && let Some(run) = &d.run {
                // Recorded before QEMU is ended: whoever finds it gone reports a shutdown.
                let _ = self.write_status_locked(d, run);
            }
            (r, fake)
        };
        if fake {
            drop(order);
            // virDomainReboot through ACPI: reset and continue.
            if let Some(q) = self.qmp_of(uuid) {
                let _ = q.execute("system_reset", None);
                let _ = q.execute("cont", None);
            }
            return;
        }
        self.emit(vec![(
            r,
            event::SHUTDOWN,
            if guest {
                detail::SHUTDOWN_GUEST
            } else {
                detail::SHUTDOWN_HOST
            },
        )]);
        // (on_poweroff may end QEMU and wait for it: its exit needs the order lock)
        drop(order);
        self.after_guest_shutdown(uuid, generation, qreason == "guest-reset");
    }

    /// Applies `on_poweroff` (or `on_reboot` for a reset QEMU turned into a stop).
    pub(super) fn after_guest_shutdown(&self, uuid: uuid::Uuid, generation: u64, was_reset: bool) {
        let (action, qmp) = {
            let st = self.lock();
            let Some(d) = st.doms.get(&uuid) else { return };
            let Some(run) = d.run.as_ref().filter(|r| r.generation == generation) else {
                return;
            };
            let key = if was_reset {
                "on_reboot"
            } else {
                "on_poweroff"
            };
            let dflt = if was_reset { "restart" } else { "destroy" };
            let a = run
                .live
                .element()
                .child(key)
                .map(|e| e.text().trim().to_string())
                .unwrap_or_else(|| dflt.into());
            (a, run.qmp.clone())
        };
        match action.as_str() {
            "restart" | "restart-rename" => {
                if let Some(q) = qmp {
                    {
                        let mut st = self.lock();
                        if let Some(d) = st.doms.get_mut(&uuid)
                            && let Some(run) = d.run.as_mut().filter(|r| r.generation == generation)
                        {
                            run.shutdown_seen = false;
                            run.resetting = true;
                            let d = &*d;
                            if let Some(run) = &d.run {
                                let _ = self.write_status_locked(d, run);
                            }
                        }
                    }
                    let _ = q.execute("system_reset", None);
                    let _ = q.execute("cont", None);
                }
            }
            "preserve" => {
                let e = self.transition(
                    uuid,
                    generation,
                    (state::PAUSED, reason::PAUSED_SHUTTING_DOWN),
                    None,
                );
                self.emit(e);
            }
            _ => {
                // destroy: QEMU stays up only because of -no-shutdown; end it.
                let ok = qmp.is_some_and(|q| q.execute("quit", None).is_ok());
                if !ok {
                    let pidfd = self
                        .lock()
                        .doms
                        .get(&uuid)
                        .and_then(|d| d.run.as_ref())
                        .map(|r| r.pidfd.clone());
                    if let Some(fd) = pidfd {
                        let _ =
                            rustix::process::pidfd_send_signal(&*fd, rustix::process::Signal::TERM);
                    }
                }
            }
        }
    }

    pub(super) fn qmp_of(&self, uuid: uuid::Uuid) -> Option<Qmp> {
        self.lock()
            .doms
            .get(&uuid)
            .and_then(|d| d.run.as_ref())
            .and_then(|r| r.qmp.clone())
    }

    pub(super) fn running(&self, uuid: uuid::Uuid) -> Result<(Qmp, u64)> {
        let st = self.lock();
        let d = st
            .doms
            .get(&uuid)
            .ok_or_else(|| perr(no_domain(ErrorDomain::Qemu, &uuid.to_string())))?;
        let run = d.run.as_ref().ok_or_else(|| {
            perr(operation_invalid(
                ErrorDomain::Qemu,
                "domain is not running",
            ))
        })?;
        let q = run.qmp.clone().ok_or_else(|| {
            perr(operation_invalid(
                ErrorDomain::Qemu,
                "the domain's monitor is held by another process",
            ))
        })?;
        Ok((q, run.generation))
    }
}

/// Puts the pty paths QEMU reports (`query-chardev`) into the live XML's serial, console
/// and channel elements of type `pty`.
pub(super) fn fill_pty_paths(live: &mut Domain, chardevs: &serde_json::Value) {
    let mut map = HashMap::new();
    for c in chardevs.as_array().into_iter().flatten() {
        if let (Some(label), Some(f)) = (c["label"].as_str(), c["filename"].as_str())
            && let Some(p) = f.strip_prefix("pty:")
        {
            map.insert(label.to_string(), p.to_string());
        }
    }
    let Some(devs) = live.element_mut().child_mut("devices") else {
        return;
    };
    for e in devs.elements_mut() {
        if !matches!(e.name(), "serial" | "console" | "channel") || e.attr("type") != Some("pty") {
            continue;
        }
        let Some(alias) = e
            .child("alias")
            .and_then(|a| a.attr("name"))
            .map(str::to_string)
        else {
            continue;
        };
        if let Some(p) = map.get(&format!("char{alias}")) {
            if e.name() == "console" {
                e.set_attr("tty", p);
            }
            let s = e.child_or_insert("source");
            s.set_attr("path", p);
            // <source> comes first among the children, as libvirt writes it.
            let idx = e
                .nodes()
                .iter()
                .position(|n| matches!(n, rvirt_xml::Node::Element(c) if c.name() == "source"));
            if let Some(i) = idx {
                let n = e.nodes_mut().remove(i);
                e.nodes_mut().insert(0, n);
            }
        }
    }
}

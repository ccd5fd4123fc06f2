//! Memory and vCPU counts (plugin API 1.7), with libvirt's `VIR_DOMAIN_AFFECT_*` rules:
//! the running domain through QMP (the balloon), the persistent definition through its
//! config file. Every check runs before anything changes; the live change goes first, as
//! in libvirt, so a refused live change leaves the definition alone.

use super::domains::{Durability, write_file};
use super::{Driver, Result, perr};
use rvirt_sdk::abi::{ErrorCode, ErrorDomain, PluginError};
use rvirt_sdk::util::{no_domain, operation_invalid};
use rvirt_xml::{Domain, FormatOptions};

/// `VIR_DOMAIN_AFFECT_LIVE`.
const LIVE: u32 = 1;
/// `VIR_DOMAIN_AFFECT_CONFIG`.
const CONFIG: u32 = 2;
/// `VIR_DOMAIN_MEM_MAXIMUM` / `VIR_DOMAIN_VCPU_MAXIMUM`.
const MAXIMUM: u32 = 4;

fn invalid_arg(msg: String) -> super::DriverError {
    perr(PluginError::new(
        ErrorCode::InvalidArg,
        ErrorDomain::Qemu,
        msg,
    ))
}

/// Which definitions a change with `flags` edits: (live, config). No `AFFECT` bit means
/// the running domain when it runs, else the persistent one (`VIR_DOMAIN_AFFECT_CURRENT`).
pub(super) fn affected(flags: u32, active: bool, persistent: bool) -> Result<(bool, bool)> {
    let (live, config) = match flags & (LIVE | CONFIG) {
        0 => (active, !active),
        f => (f & LIVE != 0, f & CONFIG != 0),
    };
    if live && !active {
        return Err(perr(operation_invalid(
            ErrorDomain::Qemu,
            "domain is not running",
        )));
    }
    if config && !persistent {
        return Err(perr(operation_invalid(
            ErrorDomain::Qemu,
            "transient domains do not have any persistent config",
        )));
    }
    Ok((live, config))
}

/// `<memory>` (with `maximum`) or `<currentMemory>` of `def` set to `kib`, checked.
fn with_memory(def: &Domain, kib: u64, maximum: bool, which: &str) -> Result<Domain> {
    let mut d = def.clone();
    if maximum {
        d.set_memory_kib(kib);
        if d.current_memory_kib() > kib {
            d.set_current_memory_kib(kib);
        }
    } else {
        if kib > d.memory_kib() {
            return Err(invalid_arg(format!(
                "invalid argument: cannot set memory higher than max memory ({kib} KiB > {} KiB in the {which} definition)",
                d.memory_kib()
            )));
        }
        d.set_current_memory_kib(kib);
    }
    Ok(d)
}

/// `def` with its virtio balloon's `<stats period>` set to `seconds` (removed at 0);
/// refused without a virtio balloon, whose statistics these are.
fn with_stats_period(def: &Domain, seconds: u32, which: &str) -> Result<Domain> {
    let mut d = def.clone();
    let balloon = d.element_mut().child_mut("devices").and_then(|devs| {
        devs.children_named_mut("memballoon")
            .find(|c| c.attr("model") == Some("virtio"))
    });
    let Some(balloon) = balloon else {
        return Err(perr(PluginError::new(
            ErrorCode::OperationUnsupported,
            ErrorDomain::Qemu,
            format!(
                "Operation not supported: the {which} definition has no virtio memory balloon to collect statistics"
            ),
        )));
    };
    if seconds == 0 {
        balloon.remove_children(|c| c.name() == "stats");
    } else {
        balloon
            .child_or_insert("stats")
            .set_attr("period", &seconds.to_string());
    }
    Ok(d)
}

/// `<vcpu>` (with `maximum`) or `<vcpu current>` of `def` set to `n`, checked.
fn with_vcpus(def: &Domain, n: u32, maximum: bool) -> Result<Domain> {
    let mut d = def.clone();
    let max = d.max_vcpus();
    let current = d.current_vcpus();
    if !maximum && n > max {
        return Err(invalid_arg(format!(
            "invalid argument: requested vcpus is greater than max allowable vcpus for the persistent domain: {n} > {max}"
        )));
    }
    let v = d.element_mut().child_or_insert("vcpu");
    if maximum {
        v.set_text(&n.to_string());
        if current >= n {
            v.remove_attr("current");
        } else {
            v.set_attr("current", &current.to_string());
        }
    } else if n == max {
        v.remove_attr("current");
    } else {
        v.set_attr("current", &n.to_string());
    }
    Ok(d)
}

impl Driver {
    /// Writes `def` as the persistent definition of `uuid` (atomically, durably) and keeps
    /// it; the caller holds the domain's job.
    pub(super) fn store_config(&self, uuid: uuid::Uuid, def: Domain) -> Result<()> {
        let path = self.paths.config_file(def.name());
        write_file(
            &path,
            def.to_xml(&FormatOptions {
                inactive: true,
                secure: true,
            })
            .as_bytes(),
            Durability::Durable,
        )?;
        let mut st = self.lock();
        if let Some(d) = st.doms.get_mut(&uuid) {
            d.def = def;
            if let Some(run) = &d.run {
                let _ = self.write_status_locked(d, run);
            }
        }
        Ok(())
    }

    /// `(active, persistent, persistent def, live def)` of a domain.
    pub(super) fn defs(&self, uuid: uuid::Uuid) -> Result<(bool, bool, Domain, Option<Domain>)> {
        let st = self.lock();
        let d = st
            .doms
            .get(&uuid)
            .ok_or_else(|| perr(no_domain(ErrorDomain::Qemu, &uuid.to_string())))?;
        Ok((
            d.run.is_some(),
            d.persistent,
            d.def.clone(),
            d.run.as_ref().map(|r| r.live.clone()),
        ))
    }

    /// virDomainSetMemoryFlags: the balloon target of the running domain (`LIVE`), the
    /// persistent `<currentMemory>` or, with `MAXIMUM`, `<memory>` (`CONFIG`).
    pub fn set_memory(&'static self, uuid: uuid::Uuid, kib: u64, flags: u32) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (active, persistent, def, live_def) = self.defs(uuid)?;
        let (live, config) = affected(flags, active, persistent)?;
        let maximum = flags & MAXIMUM != 0;
        if kib == 0 {
            return Err(invalid_arg(
                "invalid argument: memory must be greater than 0 KiB".into(),
            ));
        }
        if maximum && live {
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                "cannot resize the maximum memory on an active domain",
            )));
        }
        let new_config = config
            .then(|| with_memory(&def, kib, maximum, "persistent"))
            .transpose()?;
        if live {
            let live_def = live_def.expect("an active domain has a live definition");
            let balloon = live_def
                .devices_of("memballoon")
                .next()
                .and_then(|b| b.attr("model"))
                .unwrap_or("none");
            if balloon == "none" {
                return Err(perr(operation_invalid(
                    ErrorDomain::Qemu,
                    "Unable to change memory of active domain without the balloon device and guest OS balloon driver",
                )));
            }
            let new_live = with_memory(&live_def, kib, false, "running")?;
            let (q, generation) = self.running(uuid)?;
            q.execute(
                "balloon",
                Some(serde_json::json!({ "value": kib.saturating_mul(1024) })),
            )?;
            let _ = self.replace_live(uuid, generation, new_live);
        }
        if let Some(def) = new_config {
            self.store_config(uuid, def)?;
        }
        Ok(())
    }

    /// virDomainSetMemoryStatsPeriod: `<memballoon><stats period>` of the persistent
    /// definition (`CONFIG`) and, for the running guest (`LIVE`), the balloon's
    /// `guest-stats-polling-interval` (0 stops the collection).
    pub fn set_memory_stats_period(
        &'static self,
        uuid: uuid::Uuid,
        period: i32,
        flags: u32,
    ) -> Result<()> {
        let Ok(seconds) = u32::try_from(period) else {
            return Err(invalid_arg(format!(
                "invalid argument: the memory statistics period must be 0 or more seconds, not {period}"
            )));
        };
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (active, persistent, def, live_def) = self.defs(uuid)?;
        let (live, config) = affected(flags, active, persistent)?;
        let new_config = config
            .then(|| with_stats_period(&def, seconds, "persistent"))
            .transpose()?;
        if live {
            let live_def = live_def.expect("an active domain has a live definition");
            let new_live = with_stats_period(&live_def, seconds, "running")?;
            let (q, generation) = self.running(uuid)?;
            q.execute(
                "qom-set",
                Some(serde_json::json!({"path": "/machine/peripheral/balloon0",
                    "property": "guest-stats-polling-interval", "value": seconds})),
            )?;
            let _ = self.replace_live(uuid, generation, new_live);
        }
        if let Some(def) = new_config {
            self.store_config(uuid, def)?;
        }
        Ok(())
    }

    /// virDomainSetVcpusFlags: the persistent `<vcpu current>` or, with `MAXIMUM`,
    /// `<vcpu>` (`CONFIG`); the running domain's count by vCPU hot-plug (`LIVE`, see
    /// [`super::vcpus`]), whose maximum is fixed while it runs.
    pub fn set_vcpus(&'static self, uuid: uuid::Uuid, n: u32, flags: u32) -> Result<()> {
        let job = self.begin_job(uuid, None)?;
        self.sync_from_disk(&job);
        let (active, persistent, def, _) = self.defs(uuid)?;
        let (live, config) = affected(flags, active, persistent)?;
        if n == 0 {
            return Err(invalid_arg(
                "invalid argument: the vCPU count must be at least 1".into(),
            ));
        }
        if live && flags & MAXIMUM != 0 {
            return Err(perr(operation_invalid(
                ErrorDomain::Qemu,
                "cannot change the maximum vCPU count of a running domain",
            )));
        }
        let new = config
            .then(|| with_vcpus(&def, n, flags & MAXIMUM != 0))
            .transpose()?;
        if live {
            self.set_live_vcpus(uuid, n)?;
        }
        if let Some(new) = new {
            self.store_config(uuid, new)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> Domain {
        Domain::parse(
            "<domain type='qemu'><name>t</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>\
             <memory unit='KiB'>1048576</memory><vcpu>4</vcpu><os><type>hvm</type></os></domain>",
        )
        .unwrap()
    }

    #[test]
    fn affect_flags_follow_libvirt() {
        assert_eq!(affected(0, true, true).unwrap(), (true, false));
        assert_eq!(affected(0, false, true).unwrap(), (false, true));
        assert_eq!(affected(LIVE | CONFIG, true, true).unwrap(), (true, true));
        assert!(affected(LIVE, false, true).is_err());
        assert!(affected(CONFIG, true, false).is_err());
    }

    #[test]
    fn memory_and_vcpu_edits_check_the_maximum() {
        let d = with_memory(&def(), 524_288, false, "persistent").unwrap();
        assert_eq!(
            (d.memory_kib(), d.current_memory_kib()),
            (1_048_576, 524_288)
        );
        assert!(with_memory(&def(), 2_097_152, false, "persistent").is_err());
        let d = with_memory(&d, 262_144, true, "persistent").unwrap();
        assert_eq!((d.memory_kib(), d.current_memory_kib()), (262_144, 262_144));

        let d = with_vcpus(&def(), 2, false).unwrap();
        assert_eq!((d.max_vcpus(), d.current_vcpus()), (4, 2));
        assert!(with_vcpus(&def(), 5, false).is_err());
        let d = with_vcpus(&d, 8, true).unwrap();
        assert_eq!((d.max_vcpus(), d.current_vcpus()), (8, 2));
        let d = with_vcpus(&d, 1, true).unwrap();
        assert_eq!((d.max_vcpus(), d.current_vcpus()), (1, 1));
    }
}

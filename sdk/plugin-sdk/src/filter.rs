//! `VIR_CONNECT_LIST_DOMAINS_*` filtering, shared by every driver.

use crate::abi::state;

/// VIR_CONNECT_LIST_DOMAINS_ACTIVE
pub const ACTIVE: u32 = 1;
/// VIR_CONNECT_LIST_DOMAINS_INACTIVE
pub const INACTIVE: u32 = 2;
/// VIR_CONNECT_LIST_DOMAINS_PERSISTENT
pub const PERSISTENT: u32 = 4;
/// VIR_CONNECT_LIST_DOMAINS_TRANSIENT
pub const TRANSIENT: u32 = 8;
/// VIR_CONNECT_LIST_DOMAINS_RUNNING
pub const RUNNING: u32 = 16;
/// VIR_CONNECT_LIST_DOMAINS_PAUSED
pub const PAUSED: u32 = 32;
/// VIR_CONNECT_LIST_DOMAINS_SHUTOFF
pub const SHUTOFF: u32 = 64;
/// VIR_CONNECT_LIST_DOMAINS_OTHER
pub const OTHER: u32 = 128;
/// VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE
pub const MANAGEDSAVE: u32 = 256;
/// VIR_CONNECT_LIST_DOMAINS_NO_MANAGEDSAVE
pub const NO_MANAGEDSAVE: u32 = 512;
/// VIR_CONNECT_LIST_DOMAINS_AUTOSTART
pub const AUTOSTART: u32 = 1024;
/// VIR_CONNECT_LIST_DOMAINS_NO_AUTOSTART
pub const NO_AUTOSTART: u32 = 2048;
/// VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT
pub const HAS_SNAPSHOT: u32 = 4096;
/// VIR_CONNECT_LIST_DOMAINS_NO_SNAPSHOT
pub const NO_SNAPSHOT: u32 = 8192;

/// Every filter bit [`matches`] applies (`ACTIVE` through `NO_SNAPSHOT`): what a driver
/// using it accepts in `virConnectListAllDomains`. libvirt's checkpoint filters
/// (`HAS_CHECKPOINT` 16384, `NO_CHECKPOINT` 32768) are not among them.
pub const FILTERS: u32 = ACTIVE
    | INACTIVE
    | PERSISTENT
    | TRANSIENT
    | RUNNING
    | PAUSED
    | SHUTOFF
    | OTHER
    | MANAGEDSAVE
    | NO_MANAGEDSAVE
    | AUTOSTART
    | NO_AUTOSTART
    | HAS_SNAPSHOT
    | NO_SNAPSHOT;

/// What the list filter looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct DomainFacts {
    /// `VIR_DOMAIN_*` state.
    pub state: i32,
    /// Has a persistent config.
    pub persistent: bool,
    /// Starts with the driver.
    pub autostart: bool,
    /// Has a managed save image.
    pub managed_save: bool,
    /// Has snapshots.
    pub has_snapshot: bool,
}

impl DomainFacts {
    /// Running, paused or any other state but shut off.
    pub fn is_active(&self) -> bool {
        self.state != state::SHUTOFF && self.state != state::NOSTATE
    }
}

/// Whether a domain passes `flags`: within each group (active, persistent, state,
/// managed save, autostart, snapshot) a domain must match one set bit; an empty group
/// matches everything, as libvirt does.
pub fn matches(flags: u32, d: &DomainFacts) -> bool {
    fn group(flags: u32, yes: u32, no: u32, is: bool) -> bool {
        flags & (yes | no) == 0 || (is && flags & yes != 0) || (!is && flags & no != 0)
    }
    let state_bits = flags & (RUNNING | PAUSED | SHUTOFF | OTHER);
    let state_ok = state_bits == 0
        || match d.state {
            state::RUNNING => state_bits & RUNNING != 0,
            state::PAUSED => state_bits & PAUSED != 0,
            state::SHUTOFF => state_bits & SHUTOFF != 0,
            _ => state_bits & OTHER != 0,
        };
    group(flags, ACTIVE, INACTIVE, d.is_active())
        && group(flags, PERSISTENT, TRANSIENT, d.persistent)
        && state_ok
        && group(flags, MANAGEDSAVE, NO_MANAGEDSAVE, d.managed_save)
        && group(flags, AUTOSTART, NO_AUTOSTART, d.autostart)
        && group(flags, HAS_SNAPSHOT, NO_SNAPSHOT, d.has_snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: i32, persistent: bool) -> DomainFacts {
        DomainFacts {
            state,
            persistent,
            ..Default::default()
        }
    }

    #[test]
    fn groups_combine() {
        let running = facts(state::RUNNING, true);
        let off = facts(state::SHUTOFF, true);
        let transient = facts(state::PAUSED, false);
        assert!(matches(0, &running) && matches(0, &off));
        assert!(matches(ACTIVE, &running) && !matches(ACTIVE, &off));
        assert!(matches(INACTIVE, &off) && !matches(INACTIVE, &running));
        assert!(matches(ACTIVE | INACTIVE, &off));
        assert!(matches(TRANSIENT, &transient) && !matches(TRANSIENT, &running));
        assert!(matches(PAUSED, &transient) && !matches(RUNNING | SHUTOFF, &transient));
        assert!(matches(NO_AUTOSTART, &off) && !matches(AUTOSTART, &off));
        assert_eq!(FILTERS, 0x3fff);
    }
}

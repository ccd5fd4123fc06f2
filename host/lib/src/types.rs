//! Plain host-side values: what the embedder's API hands out. Converted from the ABI
//! types at the edge (`plugin.rs`), never exposing `abi_stable` types.

use rvirt_plugin_api::state as st;
use serde::Serialize;

/// A domain's identity as libvirt's API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainId {
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: uuid::Uuid,
    /// Running id, -1 when not running.
    pub id: i32,
}

/// A domain state (`virDomainState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainState {
    /// VIR_DOMAIN_NOSTATE
    NoState,
    /// VIR_DOMAIN_RUNNING
    Running,
    /// VIR_DOMAIN_BLOCKED
    Blocked,
    /// VIR_DOMAIN_PAUSED
    Paused,
    /// VIR_DOMAIN_SHUTDOWN
    Shutdown,
    /// VIR_DOMAIN_SHUTOFF
    Shutoff,
    /// VIR_DOMAIN_CRASHED
    Crashed,
    /// VIR_DOMAIN_PMSUSPENDED
    PmSuspended,
}

impl DomainState {
    /// From libvirt's number (unknown numbers become `NoState`).
    pub fn from_i32(n: i32) -> Self {
        match n {
            st::RUNNING => Self::Running,
            st::BLOCKED => Self::Blocked,
            st::PAUSED => Self::Paused,
            st::SHUTDOWN => Self::Shutdown,
            st::SHUTOFF => Self::Shutoff,
            st::CRASHED => Self::Crashed,
            st::PMSUSPENDED => Self::PmSuspended,
            _ => Self::NoState,
        }
    }

    /// libvirt's number.
    pub fn as_i32(self) -> i32 {
        match self {
            Self::NoState => st::NOSTATE,
            Self::Running => st::RUNNING,
            Self::Blocked => st::BLOCKED,
            Self::Paused => st::PAUSED,
            Self::Shutdown => st::SHUTDOWN,
            Self::Shutoff => st::SHUTOFF,
            Self::Crashed => st::CRASHED,
            Self::PmSuspended => st::PMSUSPENDED,
        }
    }

    /// The words virsh prints (`running`, `shut off`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoState => "no state",
            Self::Running => "running",
            Self::Blocked => "idle",
            Self::Paused => "paused",
            Self::Shutdown => "in shutdown",
            Self::Shutoff => "shut off",
            Self::Crashed => "crashed",
            Self::PmSuspended => "pmsuspended",
        }
    }

    /// Whether a domain in this state is active (has an id).
    pub fn is_active(self) -> bool {
        !matches!(self, Self::Shutoff | Self::NoState)
    }

    /// The words virsh prints for a state's reason (`booted`, `destroyed`, ...).
    pub fn reason_str(self, reason: i32) -> &'static str {
        let table: &[&str] = match self {
            Self::NoState => &["unknown"],
            Self::Running => &[
                "unknown",
                "booted",
                "migrated",
                "restored",
                "from snapshot",
                "unpaused",
                "migration canceled",
                "save canceled",
                "event wakeup",
                "crashed",
                "post-copy",
                "post-copy failed",
            ],
            Self::Blocked => &["unknown"],
            Self::Paused => &[
                "unknown",
                "user",
                "migrating",
                "saving",
                "dumping",
                "I/O error",
                "watchdog",
                "from snapshot",
                "shutting down",
                "creating snapshot",
                "crashed",
                "starting up",
                "post-copy",
                "post-copy failed",
                "api error",
            ],
            Self::Shutdown => &["unknown", "user"],
            Self::Shutoff => &[
                "unknown",
                "shutdown",
                "destroyed",
                "crashed",
                "migrated",
                "saved",
                "failed",
                "from snapshot",
                "daemon",
            ],
            Self::Crashed => &["unknown", "panicked"],
            Self::PmSuspended => &["unknown"],
        };
        usize::try_from(reason)
            .ok()
            .and_then(|i| table.get(i))
            .copied()
            .unwrap_or("unknown")
    }
}

impl std::fmt::Display for DomainState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `virDomainInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DomainInfo {
    /// State.
    pub state: DomainState,
    /// Maximum memory, KiB.
    pub max_mem_kib: u64,
    /// Current memory, KiB.
    pub memory_kib: u64,
    /// Virtual CPUs.
    pub nr_virt_cpu: u32,
    /// CPU time, ns.
    pub cpu_time_ns: u64,
}

/// `virNodeInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// CPU model.
    pub model: String,
    /// Memory, KiB.
    pub memory_kib: u64,
    /// Active CPUs.
    pub cpus: u32,
    /// MHz.
    pub mhz: u32,
    /// NUMA nodes.
    pub nodes: u32,
    /// Sockets per node.
    pub sockets: u32,
    /// Cores per socket.
    pub cores: u32,
    /// Threads per core.
    pub threads: u32,
}

/// A domain event: a lifecycle event, or (when `removed_device` is set) the guest's
/// release of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainEvent {
    /// The domain.
    pub domain: DomainId,
    /// `VIR_DOMAIN_EVENT_*` of a lifecycle event (-1 for a device removal).
    pub event: i32,
    /// The event's detail code.
    pub detail: i32,
    /// `VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED`: the alias of the device a hot-unplug
    /// removed; `None` for lifecycle events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_device: Option<String>,
}

impl DomainEvent {
    /// A lifecycle event.
    pub fn lifecycle(domain: DomainId, event: i32, detail: i32) -> Self {
        DomainEvent {
            domain,
            event,
            detail,
            removed_device: None,
        }
    }

    /// The guest released device `alias`.
    pub fn device_removed(domain: DomainId, alias: String) -> Self {
        DomainEvent {
            domain,
            event: -1,
            detail: 0,
            removed_device: Some(alias),
        }
    }

    /// libvirt's event id: `VIR_DOMAIN_EVENT_ID_LIFECYCLE` (0) or
    /// `VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED` (15).
    pub fn event_id(&self) -> i32 {
        if self.removed_device.is_some() { 15 } else { 0 }
    }

    /// The event name as virsh prints it (`Started`, `Stopped`, ...).
    pub fn event_str(&self) -> &'static str {
        const NAMES: [&str; 9] = [
            "Defined",
            "Undefined",
            "Started",
            "Suspended",
            "Resumed",
            "Stopped",
            "Shutdown",
            "PMSuspended",
            "Crashed",
        ];
        usize::try_from(self.event)
            .ok()
            .and_then(|i| NAMES.get(i))
            .copied()
            .unwrap_or("Unknown")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_numbers_round_trip() {
        for n in 0..8 {
            assert_eq!(DomainState::from_i32(n).as_i32(), n);
        }
        assert_eq!(DomainState::Shutoff.reason_str(2), "destroyed");
        assert_eq!(DomainState::Running.reason_str(99), "unknown");
    }
}

//! The WMI side of Hyper-V (`root/virtualization/v2`): class resource URIs, WQL quoting,
//! embedded instances, the `EnabledState` of a VM as a libvirt state, and the method
//! results and `Msvm_ConcreteJob`s of asynchronous calls.

use crate::wsman::{Client, Epr, Node, WMI_BASE, WsmanError};
use rvirt_sdk::abi::state;
use std::time::{Duration, Instant};

/// Hyper-V's WMI namespace.
pub const NS_VIRT: &str = "root/virtualization/v2";
/// Windows' own classes (`Win32_ComputerSystem`, `Win32_Processor`...).
pub const NS_CIMV2: &str = "root/cimv2";

/// Errors of method calls and jobs.
#[derive(Debug, thiserror::Error)]
pub enum WmiError {
    #[error(transparent)]
    Wsman(#[from] WsmanError),
    #[error("{call} failed: return value {code} ({meaning})")]
    Returned {
        call: String,
        code: u32,
        meaning: &'static str,
    },
    #[error(
        "{call} failed: job {job} ended in state {state} ({state_name}): error {code}: {description}"
    )]
    Job {
        call: String,
        job: String,
        state: u16,
        state_name: &'static str,
        code: String,
        description: String,
    },
    #[error("{call}: job {job} did not end within {secs} s (last state {state})")]
    JobTimeout {
        call: String,
        job: String,
        secs: u64,
        state: u16,
    },
    #[error("{call}: the answer has no {what}")]
    Missing { call: String, what: &'static str },
}

/// The resource URI of a class in a namespace.
pub fn class_uri(namespace: &str, class: &str) -> String {
    format!("{WMI_BASE}{namespace}/{class}")
}

/// A WQL string literal: double-quoted, `\` and `"` escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// An instance of a class as embedded in a method parameter: CIM-XML's `<INSTANCE>` with
/// one `<PROPERTY>` per `(name, type, value)`.
pub fn embedded_instance(class: &str, props: &[(&str, &str, &str)]) -> String {
    use quick_xml::escape::escape;
    let mut s = format!("<INSTANCE CLASSNAME=\"{}\">", escape(class));
    for (name, ty, value) in props {
        s.push_str(&format!(
            "<PROPERTY NAME=\"{}\" TYPE=\"{}\"><VALUE>{}</VALUE></PROPERTY>",
            escape(*name),
            escape(*ty),
            escape(*value)
        ));
    }
    s.push_str("</INSTANCE>");
    s
}

/// `Msvm_ComputerSystem.EnabledState` values (CIM's and Hyper-V's vendor range).
pub mod enabled {
    pub const ENABLED: u32 = 2;
    pub const DISABLED: u32 = 3;
    pub const SHUTTING_DOWN: u32 = 4;
    /// "Enabled but offline": a saved VM (v2).
    pub const OFFLINE: u32 = 6;
    /// "Quiesce": a paused VM (v2).
    pub const QUIESCE: u32 = 9;
    pub const STARTING_V2: u32 = 10;
    pub const PAUSED: u32 = 32768;
    pub const SUSPENDED: u32 = 32769;
    pub const STARTING: u32 = 32770;
    pub const SNAPSHOTTING: u32 = 32771;
    pub const SAVING: u32 = 32773;
    pub const STOPPING: u32 = 32774;
    pub const PAUSING: u32 = 32776;
    pub const RESUMING: u32 = 32777;
}

/// `RequestStateChange`'s `RequestedState` values for `Msvm_ComputerSystem` (v2).
pub mod requested {
    /// Start, and resume a paused VM.
    pub const ENABLED: u16 = 2;
    /// Turn off.
    pub const DISABLED: u16 = 3;
    /// Save.
    pub const OFFLINE: u16 = 6;
    /// Pause.
    pub const QUIESCE: u16 = 9;
    pub const REBOOT: u16 = 10;
    pub const RESET: u16 = 11;
}

/// A VM's `EnabledState` as a libvirt domain state: running and the transitions out of
/// it that keep the guest's memory (starting, snapshotting, saving, pausing) are running,
/// paused and resuming are paused, stopping is in shutdown, off and saved are shut off.
pub fn domain_state(enabled_state: u32) -> i32 {
    use enabled::*;
    match enabled_state {
        ENABLED | STARTING | STARTING_V2 | SNAPSHOTTING | SAVING | PAUSING => state::RUNNING,
        PAUSED | QUIESCE | RESUMING => state::PAUSED,
        STOPPING | SHUTTING_DOWN => state::SHUTDOWN,
        DISABLED | SUSPENDED | OFFLINE => state::SHUTOFF,
        _ => state::NOSTATE,
    }
}

/// Whether the VM is saved (libvirt's managed save image).
pub fn is_saved(enabled_state: u32) -> bool {
    enabled_state == enabled::SUSPENDED || enabled_state == enabled::OFFLINE
}

/// Whether the VM is neither off nor saved.
pub fn is_active(enabled_state: u32) -> bool {
    !matches!(
        enabled_state,
        enabled::DISABLED | enabled::SUSPENDED | enabled::OFFLINE
    )
}

/// What a method's `ReturnValue` means (the common table of Hyper-V's v2 methods).
pub fn return_meaning(code: u32) -> &'static str {
    match code {
        0 => "completed with no error",
        1 => "not supported",
        2 => "failed",
        3 => "timeout",
        4 => "invalid parameter",
        5 => "invalid state",
        6 => "incompatible parameters",
        4096 => "job started",
        32768 => "failed",
        32769 => "access denied",
        32770 => "not supported",
        32771 => "status is unknown",
        32772 => "timeout",
        32773 => "invalid parameter",
        32774 => "system is in use",
        32775 => "invalid state for this operation",
        32776 => "incorrect data type",
        32777 => "system is not available",
        32778 => "out of memory",
        32779 => "file not found",
        32780 => "the system is not ready",
        32781 => "the machine is locked and cannot be shut down without the force option",
        32782 => "a system shutdown is in progress",
        _ => "unknown",
    }
}

/// `CIM_ConcreteJob.JobState` names.
pub fn job_state_name(s: u16) -> &'static str {
    match s {
        2 => "new",
        3 => "starting",
        4 => "running",
        5 => "suspended",
        6 => "shutting down",
        7 => "completed",
        8 => "terminated",
        9 => "killed",
        10 => "exception",
        11 => "service",
        _ => "unknown",
    }
}

/// How long a job may run, and how often it is polled.
#[derive(Debug, Clone, Copy)]
pub struct JobPolicy {
    pub timeout: Duration,
    pub first_poll: Duration,
    pub max_poll: Duration,
}

impl Default for JobPolicy {
    fn default() -> JobPolicy {
        JobPolicy {
            timeout: Duration::from_secs(300),
            first_poll: Duration::from_millis(20),
            max_poll: Duration::from_millis(500),
        }
    }
}

/// Completes a method call: its `ReturnValue` 0 is done, 4096 is a job that is polled
/// (WS-Transfer `Get` of the `Msvm_ConcreteJob` the output references) until it completes
/// (7) or fails (8 terminated, 9 killed, 10 exception: the error names the job's
/// `ErrorCode` and `ErrorDescription`); any other value is an error naming the call.
pub fn finish(client: &Client, call: &str, out: &Node, policy: &JobPolicy) -> Result<(), WmiError> {
    let rv: u32 = out
        .text_of("ReturnValue")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| WmiError::Missing {
            call: call.into(),
            what: "ReturnValue",
        })?;
    match rv {
        0 => Ok(()),
        4096 => {
            let job =
                out.child("Job")
                    .and_then(Epr::from_node)
                    .ok_or_else(|| WmiError::Missing {
                        call: call.into(),
                        what: "Job reference",
                    })?;
            wait_job(client, call, &job, policy)
        }
        code => Err(WmiError::Returned {
            call: call.into(),
            code,
            meaning: return_meaning(code),
        }),
    }
}

fn wait_job(client: &Client, call: &str, job: &Epr, policy: &JobPolicy) -> Result<(), WmiError> {
    let started = Instant::now();
    let mut pause = policy.first_poll;
    let id = job.selector("InstanceID").unwrap_or("?").to_string();
    loop {
        let j = client.get(job)?;
        let st: u16 = j
            .text_of("JobState")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| WmiError::Missing {
                call: call.into(),
                what: "JobState in the job",
            })?;
        match st {
            7 => return Ok(()),
            8..=10 => {
                return Err(WmiError::Job {
                    call: call.into(),
                    job: id,
                    state: st,
                    state_name: job_state_name(st),
                    code: j.text_of("ErrorCode").unwrap_or("?").to_string(),
                    description: j
                        .text_of("ErrorDescription")
                        .filter(|d| !d.is_empty())
                        .or_else(|| j.text_of("ErrorSummaryDescription"))
                        .unwrap_or("no description")
                        .to_string(),
                });
            }
            _ => {}
        }
        if started.elapsed() >= policy.timeout {
            return Err(WmiError::JobTimeout {
                call: call.into(),
                job: id,
                secs: policy.timeout.as_secs(),
                state: st,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(policy.max_poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_as_libvirt_maps_them() {
        assert_eq!(domain_state(2), state::RUNNING);
        assert_eq!(domain_state(3), state::SHUTOFF);
        assert_eq!(domain_state(32768), state::PAUSED);
        assert_eq!(domain_state(32769), state::SHUTOFF);
        assert_eq!(domain_state(32770), state::RUNNING);
        assert_eq!(domain_state(32774), state::SHUTDOWN);
        assert_eq!(domain_state(32777), state::PAUSED);
        assert_eq!(domain_state(9), state::PAUSED);
        assert_eq!(domain_state(0), state::NOSTATE);
        assert!(is_saved(32769) && !is_active(32769) && is_active(32768));
    }

    #[test]
    fn return_values_other_than_0_and_4096_name_the_call() {
        let c = Client::new("http://127.0.0.1:9/wsman", "u", "p", false);
        let p = JobPolicy::default();
        let out = crate::wsman::parse("<o><ReturnValue>0</ReturnValue></o>").unwrap();
        assert!(finish(&c, "X.M", &out, &p).is_ok());
        let out = crate::wsman::parse("<o><ReturnValue>32775</ReturnValue></o>").unwrap();
        let e = finish(&c, "X.M", &out, &p).unwrap_err().to_string();
        assert_eq!(
            e,
            "X.M failed: return value 32775 (invalid state for this operation)"
        );
        let out = crate::wsman::parse("<o><ReturnValue>4096</ReturnValue></o>").unwrap();
        let e = finish(&c, "X.M", &out, &p).unwrap_err().to_string();
        assert!(e.contains("no Job reference"), "{e}");
        let out = crate::wsman::parse("<o/>").unwrap();
        assert!(finish(&c, "X.M", &out, &p).is_err());
    }

    #[test]
    fn wql_strings_and_embedded_instances_are_escaped() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            embedded_instance(
                "Msvm_VirtualSystemSettingData",
                &[("ElementName", "string", "a<b")]
            ),
            "<INSTANCE CLASSNAME=\"Msvm_VirtualSystemSettingData\"><PROPERTY NAME=\"ElementName\" TYPE=\"string\"><VALUE>a&lt;b</VALUE></PROPERTY></INSTANCE>"
        );
    }
}

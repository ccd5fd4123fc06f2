//! The VirtualBox Main API calls the driver makes, over [`soap`](crate::soap): one
//! websession per connection (`IWebsessionManager_logon`), the `ISession` object of that
//! websession, and typed wrappers of the `IVirtualBox`, `IMachine`, `ISession`, `IConsole`
//! and `IProgress` methods. Every error names the call that failed.

use crate::soap::{Arg, Client, Node, SoapError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An error of one call: the method and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{method}: {source}")]
pub struct ApiError {
    pub method: String,
    #[source]
    pub source: SoapError,
}

impl ApiError {
    /// The COM result code of a fault.
    pub fn code(&self) -> Option<u32> {
        self.source.code()
    }
}

/// `VBOX_E_OBJECT_NOT_FOUND`
pub const E_OBJECT_NOT_FOUND: u32 = 0x80BB_0001;
/// `VBOX_E_INVALID_VM_STATE`
pub const E_INVALID_VM_STATE: u32 = 0x80BB_0002;
/// `VBOX_E_INVALID_OBJECT_STATE`
pub const E_INVALID_OBJECT_STATE: u32 = 0x80BB_0007;
/// `VBOX_E_NOT_SUPPORTED`
pub const E_NOT_SUPPORTED: u32 = 0x80BB_0009;
/// `E_ACCESSDENIED`
pub const E_ACCESSDENIED: u32 = 0x8007_0005;

/// The outcome of a finished `IProgress`: its result code and, on failure, the text of its
/// `errorInfo`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub code: i32,
    pub text: Option<String>,
}

/// The references of one websession.
#[derive(Debug, Clone, Default)]
struct Refs {
    /// The `IVirtualBox` reference `logon` returned.
    vbox: String,
    /// The websession's `ISession` object.
    session: String,
}

/// A logged-on websession, renewed when vboxwebsrv expired it (its `--timeout`, 300 s by
/// default, ends websessions idle that long).
#[derive(Debug)]
pub struct Api {
    client: Client,
    user: String,
    password: String,
    refs: Mutex<Refs>,
    last_call: Mutex<Instant>,
}

/// A text argument.
pub fn arg(name: &'static str, v: impl Into<String>) -> Arg<'static> {
    s(name, v)
}

fn s(name: &'static str, v: impl Into<String>) -> Arg<'static> {
    Arg::Text(name, v.into())
}

fn returnval(method: &str, n: &Node) -> Result<String, ApiError> {
    n.text_of("returnval")
        .map(str::to_string)
        .ok_or_else(|| ApiError {
            method: method.to_string(),
            source: SoapError::Malformed("the response has no <returnval>".into()),
        })
}

impl Api {
    /// Logs on (`IWebsessionManager_logon`) and takes the websession's `ISession`
    /// (`IWebsessionManager_getSessionObject`).
    pub fn logon(endpoint: &str, user: &str, password: &str) -> Result<Api, ApiError> {
        let api = Api {
            client: Client::new(endpoint),
            user: user.to_string(),
            password: password.to_string(),
            refs: Mutex::new(Refs::default()),
            last_call: Mutex::new(Instant::now()),
        };
        api.relogon()?;
        Ok(api)
    }

    /// Opens a new websession in place of the current one.
    pub fn relogon(&self) -> Result<(), ApiError> {
        let m = "IWebsessionManager_logon";
        let n = self.raw(
            m,
            None,
            &[
                s("username", self.user.clone()),
                s("password", self.password.clone()),
            ],
        )?;
        let vbox = returnval(m, &n)?;
        let m = "IWebsessionManager_getSessionObject";
        let n = self.raw(m, None, &[s("refIVirtualBox", vbox.clone())])?;
        let session = returnval(m, &n)?;
        *self.refs.lock().unwrap_or_else(|e| e.into_inner()) = Refs { vbox, session };
        Ok(())
    }

    /// Renews the websession where it sat idle longer than `idle` and the web service no
    /// longer knows it (an `InvalidObjectFault` on the `IVirtualBox` reference).
    pub fn keep_alive(&self, idle: Duration) -> Result<(), ApiError> {
        let last = *self.last_call.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() < idle {
            return Ok(());
        }
        match self.version() {
            Err(ApiError {
                source: SoapError::Fault { kind, .. },
                ..
            }) if kind == "InvalidObjectFault" => self.relogon(),
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        }
    }

    /// The current `IVirtualBox` reference.
    pub fn vbox_ref(&self) -> String {
        self.vbox()
    }

    fn vbox(&self) -> String {
        self.refs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .vbox
            .clone()
    }

    fn session(&self) -> String {
        self.refs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .session
            .clone()
    }

    /// The endpoint's URL.
    pub fn endpoint(&self) -> &str {
        &self.client.url
    }

    /// Ends the websession (`IWebsessionManager_logoff`).
    pub fn logoff(&self) -> Result<(), ApiError> {
        self.raw(
            "IWebsessionManager_logoff",
            None,
            &[s("refIVirtualBox", self.vbox())],
        )
        .map(|_| ())
    }

    fn raw(&self, method: &str, this: Option<&str>, args: &[Arg<'_>]) -> Result<Node, ApiError> {
        *self.last_call.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.client
            .call(method, this, args)
            .map_err(|source| ApiError {
                method: method.to_string(),
                source,
            })
    }

    /// Calls `method` on `this`; returns the response element.
    pub fn call(&self, method: &str, this: &str, args: &[Arg<'_>]) -> Result<Node, ApiError> {
        self.raw(method, Some(this), args)
    }

    /// Calls `method` on `this`; returns its one `returnval`.
    pub fn get(&self, method: &str, this: &str) -> Result<String, ApiError> {
        let n = self.call(method, this, &[])?;
        returnval(method, &n)
    }

    pub fn get_num<T: std::str::FromStr>(&self, method: &str, this: &str) -> Result<T, ApiError> {
        let v = self.get(method, this)?;
        v.parse().map_err(|_| ApiError {
            method: method.into(),
            source: SoapError::Malformed(format!("'{v}' is not a number")),
        })
    }

    /// `IVirtualBox_getVersion` (`7.0.14`, `6.1.50_Ubuntu`).
    pub fn version(&self) -> Result<String, ApiError> {
        self.get("IVirtualBox_getVersion", &self.vbox())
    }

    /// `IVirtualBox_getMachines`: the registered machines.
    pub fn machines(&self) -> Result<Vec<String>, ApiError> {
        let n = self.call("IVirtualBox_getMachines", &self.vbox(), &[])?;
        Ok(n.children_named("returnval")
            .map(|r| r.text.trim().to_string())
            .collect())
    }

    /// `IVirtualBox_findMachine` by name or UUID.
    pub fn find_machine(&self, name_or_id: &str) -> Result<String, ApiError> {
        let m = "IVirtualBox_findMachine";
        let n = self.call(m, &self.vbox(), &[s("nameOrId", name_or_id)])?;
        returnval(m, &n)
    }

    pub fn machine_name(&self, m: &str) -> Result<String, ApiError> {
        self.get("IMachine_getName", m)
    }

    pub fn machine_id(&self, m: &str) -> Result<String, ApiError> {
        self.get("IMachine_getId", m)
    }

    /// `IMachine_getState`: a `MachineState` name (`PoweredOff`, `Running`…).
    pub fn machine_state(&self, m: &str) -> Result<String, ApiError> {
        self.get("IMachine_getState", m)
    }

    /// `IMachine_getMemorySize`, in MiB.
    pub fn memory_mb(&self, m: &str) -> Result<u64, ApiError> {
        self.get_num("IMachine_getMemorySize", m)
    }

    pub fn cpu_count(&self, m: &str) -> Result<u32, ApiError> {
        self.get_num("IMachine_getCPUCount", m)
    }

    pub fn os_type(&self, m: &str) -> Result<String, ApiError> {
        self.get("IMachine_getOSTypeId", m)
    }

    pub fn description(&self, m: &str) -> Result<String, ApiError> {
        self.get("IMachine_getDescription", m)
    }

    /// `IMachine_launchVMProcess` of a `frontend` (`headless`) in the websession's session;
    /// returns the `IProgress`.
    pub fn launch(&self, m: &str, frontend: &str) -> Result<String, ApiError> {
        let method = "IMachine_launchVMProcess";
        let n = self.call(
            method,
            m,
            &[
                s("session", self.session()),
                s("name", frontend),
                Arg::Array("environmentChanges", Vec::new()),
            ],
        )?;
        returnval(method, &n)
    }

    /// `IMachine_lockMachine` with the websession's session (`Shared`, `Write`).
    pub fn lock(&self, m: &str, lock_type: &str) -> Result<(), ApiError> {
        self.call(
            "IMachine_lockMachine",
            m,
            &[s("session", self.session()), s("lockType", lock_type)],
        )
        .map(|_| ())
    }

    /// `ISession_unlockMachine`.
    pub fn unlock(&self) -> Result<(), ApiError> {
        self.call("ISession_unlockMachine", &self.session(), &[])
            .map(|_| ())
    }

    /// `ISession_getMachine` of the locked session: the mutable machine of a `Write` lock.
    pub fn session_machine(&self) -> Result<String, ApiError> {
        self.get("ISession_getMachine", &self.session())
    }

    /// `IVirtualBox_getHost`.
    pub fn host(&self) -> Result<String, ApiError> {
        self.get("IVirtualBox_getHost", &self.vbox())
    }

    /// A numeric `IHost` attribute (`IHost_getMemorySize` in MiB,
    /// `IHost_getProcessorOnlineCount`, `IHost_getProcessorCoreCount`).
    pub fn host_num(&self, host: &str, method: &str) -> Result<u64, ApiError> {
        self.get_num(method, host)
    }

    /// `IHost_getProcessorSpeed` of the first CPU, in MHz.
    pub fn host_cpu_speed(&self, host: &str) -> Result<u32, ApiError> {
        let m = "IHost_getProcessorSpeed";
        let n = self.call(m, host, &[s("cpuId", "0")])?;
        let v = returnval(m, &n)?;
        v.parse().map_err(|_| ApiError {
            method: m.into(),
            source: SoapError::Malformed(format!("'{v}' is not a number")),
        })
    }

    /// `ISession_getConsole` of the locked session.
    pub fn console(&self) -> Result<String, ApiError> {
        self.get("ISession_getConsole", &self.session())
    }

    /// A void `IConsole` method (`IConsole_pause`, `IConsole_resume`,
    /// `IConsole_powerButton`, `IConsole_reset`).
    pub fn console_call(&self, console: &str, method: &str) -> Result<(), ApiError> {
        self.call(method, console, &[]).map(|_| ())
    }

    /// `IConsole_powerDown`: returns the `IProgress`.
    pub fn power_down(&self, console: &str) -> Result<String, ApiError> {
        self.get("IConsole_powerDown", console)
    }

    /// Waits for a progress (`IProgress_waitForCompletion`, no timeout) and reads its
    /// `resultCode` and, on failure, `errorInfo`'s text.
    pub fn wait(&self, progress: &str) -> Result<Outcome, ApiError> {
        self.call(
            "IProgress_waitForCompletion",
            progress,
            &[s("timeout", "-1")],
        )?;
        let code: i64 = self.get_num("IProgress_getResultCode", progress)?;
        let code = code as i32;
        let text = if code != 0 {
            match self.get("IProgress_getErrorInfo", progress) {
                Ok(info) if !info.is_empty() => {
                    self.get("IVirtualBoxErrorInfo_getText", &info).ok()
                }
                _ => None,
            }
        } else {
            None
        };
        Ok(Outcome { code, text })
    }

    /// `IVirtualBox_createMachine` with the parameters of the server's API version: 6.x
    /// (`settingsFile`, `name`, `groups`, `osTypeId`, `flags`), 7.0 (+ `cipher`,
    /// `passwordId`, `password`), 7.1 and later (+ `platform` after `name`).
    pub fn create_machine(
        &self,
        version: (u32, u32),
        name: &str,
        os_type: &str,
        flags: &str,
    ) -> Result<String, ApiError> {
        let method = "IVirtualBox_createMachine";
        let mut args = vec![s("settingsFile", ""), s("name", name)];
        if version >= (7, 1) {
            args.push(s("platform", "x86"));
        }
        args.push(Arg::Array("groups", Vec::new()));
        args.push(s("osTypeId", os_type));
        args.push(s("flags", flags));
        if version >= (7, 0) {
            args.push(s("cipher", ""));
            args.push(s("passwordId", ""));
            args.push(s("password", ""));
        }
        let n = self.call(method, &self.vbox(), &args)?;
        returnval(method, &n)
    }

    /// A setter of a machine attribute (`IMachine_setMemorySize` with `memorySize`).
    pub fn set(
        &self,
        m: &str,
        method: &str,
        param: &'static str,
        value: &str,
    ) -> Result<(), ApiError> {
        self.call(method, m, &[s(param, value)]).map(|_| ())
    }

    pub fn save_settings(&self, m: &str) -> Result<(), ApiError> {
        self.call("IMachine_saveSettings", m, &[]).map(|_| ())
    }

    pub fn register(&self, m: &str) -> Result<(), ApiError> {
        self.call(
            "IVirtualBox_registerMachine",
            &self.vbox(),
            &[s("machine", m)],
        )
        .map(|_| ())
    }

    /// `IMachine_unregister` (`cleanupMode`); returns the detached media.
    pub fn unregister(&self, m: &str, cleanup: &str) -> Result<Vec<String>, ApiError> {
        let n = self.call("IMachine_unregister", m, &[s("cleanupMode", cleanup)])?;
        Ok(n.children_named("returnval")
            .map(|r| r.text.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect())
    }

    /// `IMachine_deleteConfig` of `media`; returns the `IProgress`.
    pub fn delete_config(&self, m: &str, media: Vec<String>) -> Result<String, ApiError> {
        let method = "IMachine_deleteConfig";
        let n = self.call(method, m, &[Arg::Array("media", media)])?;
        returnval(method, &n)
    }
}

/// `major.minor.micro` of a version string (`7.0.14_Ubuntu r161095` → 7, 0, 14).
pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let core: String = v
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut it = core.split('.').map(|p| p.parse::<u32>().ok());
    let major = it.next()??;
    let minor = it.next().flatten().unwrap_or(0);
    let micro = it.next().flatten().unwrap_or(0);
    Some((major, minor, micro))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("7.0.14"), Some((7, 0, 14)));
        assert_eq!(parse_version("6.1.50_Ubuntu r161033"), Some((6, 1, 50)));
        assert_eq!(parse_version("7.1"), Some((7, 1, 0)));
        assert_eq!(parse_version("x"), None);
    }
}

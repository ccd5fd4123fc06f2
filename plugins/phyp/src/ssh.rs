//! The SSH session to the HMC: the system OpenSSH client, one control master per
//! connection, so that every HMC command after the first rides the same authenticated
//! session (no new key exchange per call).
//!
//! Every command runs as `ssh -o BatchMode=yes -o ControlMaster=auto -o ControlPath=DIR/cm
//! -o ControlPersist=30 [-i KEY -o IdentitiesOnly=yes] [host key options] -p PORT -l USER --
//! HOST 'COMMAND'`: the first starts the master (which detaches and serves the later
//! ones), and a master that went away after 30 idle seconds is started again by the next
//! command. Dropping the session sends `ssh -O exit` and removes the directory.

use rvirt_sdk::tool::{ToolError, Tools};
use std::path::PathBuf;

/// How `ssh` is run.
const TOOLS: Tools = Tools {
    hint: " (apt-get install openssh-client)",
    env: &[],
    noise: |_| false,
};

/// An HMC command that could not be run or that failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot make the ssh control directory")]
    ControlDir(#[source] std::io::Error),
    #[error(transparent)]
    Tool(ToolError),
    #[error("ssh to {target} failed: {detail}")]
    Auth { target: String, detail: String },
    #[error("ssh to {target} failed: {detail}")]
    Transport { target: String, detail: String },
    #[error("the HMC command '{command}' failed (exit status {code}): {detail}")]
    Command {
        command: String,
        code: i32,
        /// What the HMC printed (stderr, else stdout), on one line.
        detail: String,
        /// Its full standard output.
        stdout: String,
    },
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub user: String,
    pub host: String,
    pub port: Option<u16>,
    pub keyfile: Option<String>,
    /// Accept any host key (`no_verify=1`).
    pub no_verify: bool,
    /// A known-hosts file instead of the user's (`known_hosts=`).
    pub known_hosts: Option<String>,
}

/// One SSH session (control master) to the HMC.
pub struct Session {
    target: Target,
    dir: PathBuf,
}

impl Session {
    /// Prepares a session; nothing connects until the first command.
    pub fn new(target: Target) -> Result<Session, SshError> {
        let dir = make_private_dir().map_err(SshError::ControlDir)?;
        Ok(Session { target, dir })
    }

    fn control_path(&self) -> String {
        self.dir.join("cm").display().to_string()
    }

    /// The `ssh` options before the destination.
    pub fn options(&self) -> Vec<String> {
        let t = &self.target;
        let mut a: Vec<String> = Vec::new();
        let mut o = |s: String| {
            a.push("-o".into());
            a.push(s);
        };
        o("BatchMode=yes".into());
        o("ControlMaster=auto".into());
        o(format!("ControlPath={}", self.control_path()));
        o("ControlPersist=30".into());
        o("ConnectTimeout=20".into());
        o("LogLevel=ERROR".into());
        if t.no_verify {
            o("StrictHostKeyChecking=no".into());
            o("UserKnownHostsFile=/dev/null".into());
        } else {
            o("StrictHostKeyChecking=yes".into());
            if let Some(k) = &t.known_hosts {
                o(format!("UserKnownHostsFile={k}"));
            }
        }
        if let Some(k) = &t.keyfile {
            o("IdentitiesOnly=yes".into());
            a.push("-i".into());
            a.push(k.clone());
        }
        if let Some(p) = t.port {
            a.push("-p".into());
            a.push(p.to_string());
        }
        a.push("-l".into());
        a.push(t.user.clone());
        a
    }

    fn shown_target(&self) -> String {
        let t = &self.target;
        match t.port {
            Some(p) => format!("{}@{}:{p}", t.user, t.host),
            None => format!("{}@{}", t.user, t.host),
        }
    }

    /// Runs one HMC command; its standard output.
    pub fn run(&self, command: &str) -> Result<String, SshError> {
        let mut args = self.options();
        args.push("--".into());
        args.push(self.target.host.clone());
        args.push(command.to_string());
        let (_, out) = TOOLS.output("ssh", &args).map_err(SshError::Tool)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let one_line = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut detail = one_line(&out.stderr);
        let code = out.status.code().unwrap_or(-1);
        // ssh itself exits 255; the HMC's commands exit with their own codes.
        if code == 255 {
            let target = self.shown_target();
            if detail.contains("Permission denied") || detail.contains("Too many authentication") {
                return Err(SshError::Auth { target, detail });
            }
            if detail.is_empty() {
                detail = "the connection ended with exit status 255".into();
            }
            return Err(SshError::Transport { target, detail });
        }
        if detail.is_empty() {
            detail = one_line(&out.stdout);
        }
        Err(SshError::Command {
            command: command.to_string(),
            code,
            detail,
            stdout,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if std::path::Path::new(&self.control_path()).exists() {
            let args = [
                "-o".to_string(),
                format!("ControlPath={}", self.control_path()),
                "-O".into(),
                "exit".into(),
                "--".into(),
                self.target.host.clone(),
            ];
            let _ = TOOLS.output("ssh", &args);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new owner-only directory under the temporary directory, short enough for a socket
/// path.
fn make_private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for _ in 0..16 {
        let p = base.join(format!("rvirt-phyp-{}", uuid::Uuid::new_v4().simple()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free directory name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_the_uri() {
        let s = Session::new(Target {
            user: "hscroot".into(),
            host: "hmc1".into(),
            port: Some(2222),
            keyfile: Some("/k".into()),
            no_verify: true,
            known_hosts: None,
        })
        .expect("session");
        let o = s.options().join(" ");
        assert!(
            o.starts_with("-o BatchMode=yes -o ControlMaster=auto -o ControlPath="),
            "{o}"
        );
        assert!(
            o.contains("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"),
            "{o}"
        );
        assert!(
            o.ends_with("-o IdentitiesOnly=yes -i /k -p 2222 -l hscroot"),
            "{o}"
        );
        let dir = s.dir.clone();
        assert!(dir.is_dir());
        drop(s);
        assert!(!dir.exists(), "the control directory goes with the session");
    }
}

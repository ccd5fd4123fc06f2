//! `rvirt policy list|reload`: what rvirtd's policy engine has loaded, and reloading it.
//!
//! rvirtd has no admin protocol, so this is a local control: rvirtd publishes its pid
//! (`RUN/rvirtd.pid`) and a status table (`RUN/policy-status`, mode 0600) in its run
//! directory after every (re)load; `reload` sends SIGHUP to that pid, which the kernel only
//! lets root or the daemon's own user do, and waits for a new status table.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Show the policies and hooks rvirtd has loaded (and refused), with their ABI version
    List {
        /// rvirtd's --root (default: /run/rvirt as root, $XDG_RUNTIME_DIR/rvirt otherwise)
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Make rvirtd load its policy directory again (SIGHUP); connections stay open
    Reload {
        /// rvirtd's --root
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
}

fn run_dir(root: Option<&Path>) -> Result<PathBuf> {
    if let Some(r) = root {
        return Ok(r.join("run"));
    }
    if rustix::process::getuid().is_root() {
        return Ok("/run/rvirt".into());
    }
    match std::env::var("XDG_RUNTIME_DIR") {
        Ok(d) if !d.is_empty() => Ok(Path::new(&d).join("rvirt")),
        _ => bail!("XDG_RUNTIME_DIR is not set: pass --root or run as root"),
    }
}

fn read_status(run: &Path) -> Result<String> {
    let path = run.join("policy-status");
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (is rvirtd running there, built with its default `policy` feature, \
             and are you its user?)",
            path.display()
        )
    })
}

/// Whether this build's host library checks embedders' calls (its `policy` feature).
fn host_library_line() -> &'static str {
    if rvirt_host::POLICY_BUILT_IN {
        "host library policy checks for embedders: built in (rvirt-host feature `policy`)"
    } else {
        "host library policy checks for embedders: not built (rvirt-host feature `policy` is off)"
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

pub fn run(command: &PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::List { root } => {
            println!("{}", host_library_line());
            print!("{}", read_status(&run_dir(root.as_deref())?)?);
            Ok(())
        }
        PolicyCommand::Reload { root } => {
            let run = run_dir(root.as_deref())?;
            let pid_file = run.join("rvirtd.pid");
            let pid: i32 = std::fs::read_to_string(&pid_file)
                .with_context(|| format!("cannot read {}", pid_file.display()))?
                .trim()
                .parse()
                .with_context(|| format!("{} holds no pid", pid_file.display()))?;
            let status = run.join("policy-status");
            let before = modified(&status);
            let pid = rustix::process::Pid::from_raw(pid).context("invalid pid")?;
            rustix::process::kill_process(pid, rustix::process::Signal::HUP)
                .with_context(|| format!("cannot signal rvirtd (pid {})", pid.as_raw_nonzero()))?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while modified(&status) == before {
                if Instant::now() > deadline {
                    bail!("rvirtd did not report a reload within 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            print!("{}", read_status(&run)?);
            Ok(())
        }
    }
}

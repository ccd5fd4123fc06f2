//! Running `qemu-img` (`$RVIRT_QEMU_IMG`, default `qemu-img` on `PATH`).

use std::ffi::OsString;
use std::io;
use std::process::{Command, Stdio};

/// Why a `qemu-img` run failed.
#[derive(Debug, thiserror::Error)]
pub enum QemuImgError {
    /// The binary could not be started (missing, not executable).
    #[error("cannot run '{binary}'")]
    Spawn {
        /// The binary looked up.
        binary: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// It ran and failed.
    #[error("'{command}' failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// The exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// It printed something we cannot read.
    #[error("'{command}' printed unexpected output: {detail}")]
    Output {
        /// The command line.
        command: String,
        /// What was wrong.
        detail: String,
    },
}

/// The binary to run.
pub fn binary() -> OsString {
    std::env::var_os("RVIRT_QEMU_IMG").unwrap_or_else(|| "qemu-img".into())
}

/// Runs `qemu-img ARGS` and returns its standard output.
pub fn run(args: &[OsString]) -> Result<Vec<u8>, QemuImgError> {
    let bin = binary();
    let command = std::iter::once(&bin)
        .chain(args)
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| QemuImgError::Spawn {
            binary: bin.to_string_lossy().into_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(QemuImgError::Failed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_stderr() {
        // `qemu-img` itself may be missing here: either error names the cause
        match run(&["info".into(), "/nonexistent/rvirt-x".into()]) {
            Err(QemuImgError::Failed { stderr, .. }) => assert!(stderr.contains("rvirt-x")),
            Err(QemuImgError::Spawn { binary, .. }) => assert!(binary.contains("qemu-img")),
            other => panic!("unexpected {other:?}"),
        }
    }
}

//! Running `mount`, `umount` and `showmount` with their stderr kept for the error.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A tool that could not be run or that failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Not found in `PATH` or the system directories.
    #[error("'{0}' is not installed")]
    Missing(String),
    /// Found but could not be started.
    #[error("cannot run '{}'", program.display())]
    Spawn {
        /// The program's path.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Ran and failed.
    #[error("'{command}' failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// Its stderr (stdout when stderr is empty) on one line.
        stderr: String,
        /// The exit code, when it exited.
        code: Option<i32>,
    },
}

/// Finds `program` in `PATH`, then in the system directories.
pub fn find(program: &str) -> Result<PathBuf, CommandError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| CommandError::Missing(program.to_string()))
}

/// One line of what a tool printed: non-empty lines, trimmed, `; `-joined.
fn one_line(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The printable command line.
pub fn line(program: &str, args: &[OsString]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `program args` (C locale) and answers its stdout; a
/// non-zero exit is an error with its stderr.
pub fn run(program: &str, args: &[OsString]) -> Result<String, CommandError> {
    let exe = find(program)?;
    let out = Command::new(&exe)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CommandError::Spawn {
            program: exe.clone(),
            source,
        })?;
    if !out.status.success() {
        let mut stderr = one_line(&out.stderr);
        if stderr.is_empty() {
            stderr = one_line(&out.stdout);
        }
        return Err(CommandError::Failed {
            command: line(program, args),
            status: out.status.to_string(),
            stderr,
            code: out.status.code(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_stderr() {
        let args: Vec<OsString> = ["-c", "echo ' mount.nfs: No such device' >&2; exit 32"]
            .map(OsString::from)
            .to_vec();
        let e = run("sh", &args).expect_err("fails");
        let m = e.to_string();
        assert!(
            m.ends_with("(exit status: 32): mount.nfs: No such device"),
            "{m}"
        );
        assert!(matches!(e, CommandError::Failed { code: Some(32), .. }));
        assert_eq!(
            find("rvirt-no-such-tool").expect_err("missing").to_string(),
            "'rvirt-no-such-tool' is not installed"
        );
    }
}

//! Running the system's tools (`mkfs`, `mount`, `umount`, `losetup`, `blkid`) with their
//! stderr kept for the error.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A tool that could not be run or failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Not found in `PATH`, `/usr/sbin` or `/sbin`.
    #[error("'{program}' is not installed")]
    Missing {
        /// The program.
        program: &'static str,
    },
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
        /// What it wrote to stderr (or stdout when stderr is empty), on one line.
        stderr: String,
    },
}

/// Finds `program` in `PATH`, then in the system directories (a test's `PATH` may lack
/// them).
pub(crate) fn find(program: &'static str) -> Result<PathBuf, CommandError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(CommandError::Missing { program })
}

/// Runs `program args` with the C locale and returns its output, whatever its status.
pub(crate) fn output<S: AsRef<OsStr>>(
    program: &'static str,
    args: &[S],
) -> Result<(String, Output), CommandError> {
    let exe = find(program)?;
    let mut line = program.to_string();
    for a in args {
        line.push(' ');
        line.push_str(&a.as_ref().to_string_lossy());
    }
    let out = Command::new(&exe)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| CommandError::Spawn {
            program: exe.clone(),
            source,
        })?;
    Ok((line, out))
}

/// Runs `program args`; a non-zero exit is an error carrying its stderr. Returns stdout.
pub(crate) fn run<S: AsRef<OsStr>>(
    program: &'static str,
    args: &[S],
) -> Result<String, CommandError> {
    let (line, out) = output(program, args)?;
    if !out.status.success() {
        return Err(failed(line, &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One line: the non-empty lines of `text`, trimmed, joined with `; `.
fn one_line(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn failed(command: String, out: &Output) -> CommandError {
    let mut stderr = one_line(&out.stderr);
    if stderr.is_empty() {
        stderr = one_line(&out.stdout);
    }
    CommandError::Failed {
        command,
        status: out.status.to_string(),
        stderr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_stderr_and_missing_tools_are_named() {
        let e = run("sh", &["-c", "echo oops >&2; echo '  more ' >&2; exit 3"]).expect_err("fails");
        let m = e.to_string();
        assert!(m.contains("' failed (exit status: 3): "), "{m}");
        assert!(m.ends_with(": oops; more"), "{m}");
        assert_eq!(run("sh", &["-c", "echo hi"]).expect("runs"), "hi\n");
        let e = find("rvirt-no-such-tool").expect_err("missing");
        assert_eq!(e.to_string(), "'rvirt-no-such-tool' is not installed");
    }
}

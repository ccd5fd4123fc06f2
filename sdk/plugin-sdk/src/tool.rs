//! Running a system tool (`mount`, `mkfs`, lvm2's commands...) the way a storage or
//! network plugin needs it: found in `PATH` or the system directories, the C locale, no
//! stdin, and on failure an error carrying the command line, how it ended and its stderr
//! on one line.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A tool that could not be run or that failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Not found in `PATH` or the system directories.
    #[error("'{program}' is not installed{hint}")]
    Missing {
        /// The program.
        program: String,
        /// What to install, as ` (apt-get install PACKAGE)`, or empty.
        hint: &'static str,
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
        /// Its stderr (stdout when stderr is empty) on one line.
        stderr: String,
        /// The exit code, when it exited.
        code: Option<i32>,
    },
}

/// How a plugin runs its tools.
#[derive(Debug, Clone, Copy)]
pub struct Tools {
    /// Appended to the "not installed" error (` (apt-get install lvm2)`), or empty.
    pub hint: &'static str,
    /// More environment for every run (besides `LC_ALL=C`).
    pub env: &'static [(&'static str, &'static str)],
    /// Lines of the tools' output that say nothing about a failure (left out of errors).
    pub noise: fn(&str) -> bool,
}

impl Default for Tools {
    fn default() -> Tools {
        Tools::PLAIN
    }
}

impl Tools {
    /// No hint, no extra environment, every line kept.
    pub const PLAIN: Tools = Tools {
        hint: "",
        env: &[],
        noise: |_| false,
    };

    /// Finds `program` in `PATH`, then in the system directories (a test's `PATH` may lack
    /// them).
    pub fn find(&self, program: &str) -> Result<PathBuf, ToolError> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|d| d.join(program))
            .find(|p| p.is_file())
            .ok_or_else(|| ToolError::Missing {
                program: program.to_string(),
                hint: self.hint,
            })
    }

    /// Runs `program args` and returns its command line and output, whatever its status.
    pub fn output<S: AsRef<OsStr>>(
        &self,
        program: &str,
        args: &[S],
    ) -> Result<(String, Output), ToolError> {
        let exe = self.find(program)?;
        let out = Command::new(&exe)
            .args(args)
            .env("LC_ALL", "C")
            .envs(self.env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ToolError::Spawn {
                program: exe.clone(),
                source,
            })?;
        Ok((line(program, args), out))
    }

    /// Runs `program args` and returns its stdout; a non-zero exit is an error carrying
    /// its stderr.
    pub fn run<S: AsRef<OsStr>>(&self, program: &str, args: &[S]) -> Result<String, ToolError> {
        let (command, out) = self.output(program, args)?;
        if !out.status.success() {
            return Err(self.failed(command, &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The error of a run that ended as `out` says.
    pub fn failed(&self, command: String, out: &Output) -> ToolError {
        let mut stderr = self.one_line(&out.stderr);
        if stderr.is_empty() {
            stderr = self.one_line(&out.stdout);
        }
        ToolError::Failed {
            command,
            status: out.status.to_string(),
            stderr,
            code: out.status.code(),
        }
    }

    /// The non-empty, non-noise lines of `text`, trimmed, joined with `; `.
    fn one_line(&self, text: &[u8]) -> String {
        String::from_utf8_lossy(text)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !(self.noise)(l))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The printable command line.
pub fn line<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_stderr_without_noise_and_missing_tools_are_named() {
        let t = Tools {
            hint: " (apt-get install x)",
            env: &[("RVIRT_TOOL_TEST", "seen")],
            noise: |l| l.starts_with("WARNING:"),
        };
        let e = t
            .run(
                "sh",
                &[
                    "-c",
                    "echo ' WARNING: noise' >&2; echo oops >&2; echo ' more ' >&2; exit 3",
                ],
            )
            .expect_err("fails");
        let m = e.to_string();
        assert!(m.ends_with("' failed (exit status: 3): oops; more"), "{m}");
        assert!(matches!(e, ToolError::Failed { code: Some(3), .. }));
        assert_eq!(
            t.run("sh", &["-c", "echo $LC_ALL $RVIRT_TOOL_TEST"])
                .expect("runs"),
            "C seen\n"
        );
        assert_eq!(
            t.find("rvirt-no-such-tool")
                .expect_err("missing")
                .to_string(),
            "'rvirt-no-such-tool' is not installed (apt-get install x)"
        );
        assert_eq!(
            Tools::PLAIN
                .find("rvirt-no-such-tool")
                .expect_err("missing")
                .to_string(),
            "'rvirt-no-such-tool' is not installed"
        );
    }
}

//! Running the system's tools (`mkfs`, `mount`, `umount`, `losetup`, `blkid`) with their
//! stderr kept for the error ([`rvirt_sdk::tool`]).

pub use rvirt_sdk::tool::ToolError as CommandError;
use rvirt_sdk::tool::Tools;
use std::ffi::OsStr;
use std::process::Output;

/// Runs `program args` with the C locale and returns its output, whatever its status.
pub(crate) fn output<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
) -> Result<(String, Output), CommandError> {
    Tools::PLAIN.output(program, args)
}

/// Runs `program args`; a non-zero exit is an error carrying its stderr. Returns stdout.
pub(crate) fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String, CommandError> {
    Tools::PLAIN.run(program, args)
}

/// The error of a run that ended as `out` says.
pub(crate) fn failed(command: String, out: &Output) -> CommandError {
    Tools::PLAIN.failed(command, out)
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
        let e = Tools::PLAIN
            .find("rvirt-no-such-tool")
            .expect_err("missing");
        assert_eq!(e.to_string(), "'rvirt-no-such-tool' is not installed");
    }
}

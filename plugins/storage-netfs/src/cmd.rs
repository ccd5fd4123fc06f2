//! Running `mount`, `umount` and `showmount` with their stderr kept for the error
//! ([`rvirt_sdk::tool`]).

pub use rvirt_sdk::tool::ToolError as CommandError;
use rvirt_sdk::tool::Tools;
use std::ffi::OsString;

/// Runs `program args` and answers its stdout; a non-zero exit is an error with its
/// stderr.
pub fn run(program: &str, args: &[OsString]) -> Result<String, CommandError> {
    Tools::PLAIN.run(program, args)
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
            Tools::PLAIN
                .find("rvirt-no-such-tool")
                .expect_err("missing")
                .to_string(),
            "'rvirt-no-such-tool' is not installed"
        );
    }
}

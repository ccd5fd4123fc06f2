//! Running lvm2's tools (and `blkid`) with their stderr kept for the error
//! ([`rvirt_sdk::tool`]), lvm's warnings about disabled activation and leaked file
//! descriptors left out.

pub use rvirt_sdk::tool::ToolError as CommandError;
use rvirt_sdk::tool::Tools;
use std::ffi::OsString;

const TOOLS: Tools = Tools {
    hint: " (apt-get install lvm2)",
    env: &[("LVM_SUPPRESS_FD_WARNINGS", "1")],
    noise: |l| l.starts_with("WARNING: Activation disabled") || l.contains("leaked on"),
};

/// Runs `program args` and answers its stdout; a non-zero exit is an error with its
/// stderr.
pub fn run(program: &str, args: &[OsString]) -> Result<String, CommandError> {
    TOOLS.run(program, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_stderr_without_lvm_noise() {
        let args: Vec<OsString> = [
            "-c",
            "echo '  WARNING: Activation disabled. No device-mapper.' >&2; echo '  Volume group \"x\" not found' >&2; exit 5",
        ]
        .map(OsString::from)
        .to_vec();
        let e = run("sh", &args).expect_err("fails");
        let m = e.to_string();
        assert!(
            m.ends_with("(exit status: 5): Volume group \"x\" not found"),
            "{m}"
        );
        assert!(matches!(e, CommandError::Failed { code: Some(5), .. }));
        assert_eq!(
            TOOLS
                .find("rvirt-no-such-tool")
                .expect_err("missing")
                .to_string(),
            "'rvirt-no-such-tool' is not installed (apt-get install lvm2)"
        );
    }
}

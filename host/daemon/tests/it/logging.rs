//! rvirtd's log when stderr is not a terminal (a file, the journal): plain text.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_log_written_to_a_file_has_no_terminal_colour_codes() {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"));
    let root = tempfile::tempdir().unwrap();
    let log_path = root.path().join("rvirtd.log");
    let mut child = Command::new(&bin)
        .arg("--root")
        .arg(root.path())
        .env("RVIRT_PLUGIN_PATH", bin.parent().unwrap())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let sock = root.path().join("run/rvirt-sock");
    let t0 = Instant::now();
    while !sock.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.is_empty(), "rvirtd logged nothing at info level");
    assert!(
        !log.contains('\u{1b}'),
        "escape sequences in the log file:\n{log:?}"
    );
}

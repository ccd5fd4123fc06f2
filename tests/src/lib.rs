//! Test support shared by the integration tests of every crate: where the built binaries,
//! plugins and the shared material are, the test guest, and the rule for tests that
//! cannot run (they say why, loudly, and fail unless `RVIRT_ALLOW_SKIP=1`).
//!
//! The end-to-end tests themselves are in `tests/e2e`.

pub mod vcsim;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The workspace root: the nearest directory above the working directory (cargo runs a
/// test in its package's directory) whose `Cargo.toml` declares the workspace, else the
/// one this crate was compiled in (a target directory reused by another checkout keeps
/// that path).
pub fn workspace_root() -> PathBuf {
    let declares_workspace = |d: &Path| {
        std::fs::read_to_string(d.join("Cargo.toml"))
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
    };
    if let Ok(cwd) = std::env::current_dir()
        && let Some(root) = cwd.ancestors().find(|d| declares_workspace(d))
    {
        return root.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// `shared/` beside the checkout (or `$RVIRT_SHARED`).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("RVIRT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"))
}

/// The directory of the build profile the running test binary belongs to
/// (`target/debug` for `target/debug/deps/it-...`): where `cargo build --workspace` put the
/// binaries and plugin shared objects.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// A built artifact of the workspace (`rvirt`, `librvirt_plugin_test.so`, ...); panics
/// with the remedy when it is missing.
pub fn built(name: &str) -> PathBuf {
    let p = profile_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace` before the tests",
        p.display()
    );
    p
}

/// Whether a test may skip what it cannot run (`RVIRT_ALLOW_SKIP=1`).
pub fn skip_allowed() -> bool {
    std::env::var("RVIRT_ALLOW_SKIP").as_deref() == Ok("1")
}

/// Says loudly that a test cannot run and why; returns (so the test can return) only when
/// skipping is allowed, and panics otherwise.
pub fn cannot_run(test: &str, why: &str) {
    let msg = format!("\n!!!!! {test} DID NOT RUN: {why}\n");
    if skip_allowed() {
        eprintln!("{msg}(RVIRT_ALLOW_SKIP=1)\n");
    } else {
        panic!("{msg}(set RVIRT_ALLOW_SKIP=1 to skip)");
    }
}

/// A directory `TMP/PREFIX-PID[SUFFIX]` for one test process (plugin copies, compiled
/// modules, homes kept in statics, which are never dropped), created empty. Directories
/// of the same prefix left by test processes that are gone are removed first, so repeated
/// runs do not pile up copies of the plugins.
pub fn process_temp_dir(prefix: &str, suffix: &str) -> PathBuf {
    let tmp = std::env::temp_dir();
    let me = std::process::id();
    let lead = format!("{prefix}-");
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&lead)) else {
                continue;
            };
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let Ok(pid) = digits.parse::<u32>() else {
                continue;
            };
            if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = tmp.join(format!("{prefix}-{me}{suffix}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The test guest (`shared/guest/build-guest.sh target/guest`), built or found up to date
/// once per test process; the script itself locks against parallel builds.
pub fn guest() -> PathBuf {
    static G: OnceLock<PathBuf> = OnceLock::new();
    G.get_or_init(|| {
        let out = workspace_root().join("target/guest");
        let st = Command::new(shared_dir().join("guest/build-guest.sh"))
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run shared/guest/build-guest.sh");
        assert!(st.success(), "build-guest.sh failed");
        assert!(
            out.join("vmlinux").is_file(),
            "the guest has no vmlinux (is xz-utils installed?)"
        );
        out
    })
    .clone()
}

/// Runs the calling test again, alone, in a network namespace of its own (`unshare -n`),
/// so that the bridges, TAPs and firewall tables it makes never touch the host. Returns
/// `true` in the outer process once the inner run passed (the caller then returns), and
/// `false` inside the namespace (the caller goes on with the test). Panics when the inner
/// run fails or did not run exactly the test `name` (`module::function`).
pub fn rerun_in_netns(name: &str) -> bool {
    if std::env::var_os("RVIRT_TEST_IN_NETNS").is_some() {
        return false;
    }
    let out = Command::new("unshare")
        .arg("-n")
        .arg(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("RVIRT_TEST_IN_NETNS", "1")
        .output()
        .expect("run unshare -n (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("test result: ok. 1 passed"),
        "{name} in its network namespace:\n{text}"
    );
    true
}

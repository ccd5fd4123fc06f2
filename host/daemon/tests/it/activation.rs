//! systemd socket activation: rvirtd started by `systemd-socket-activate` on its first
//! connection serves the sockets it was passed (mapped by their names), the read-only one
//! refusing mutating calls, and leaves them in place when it stops. The served-plugin
//! report names the plugin that served the connection.

use crate::virsh;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `systemd-socket-activate` and its child (after the exec, the daemon itself).
struct Activator(Child);

impl Drop for Activator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear within 10 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn socket_activated_rvirtd_serves_the_passed_sockets() {
    // No skipping: this is the only test of socket activation, and the tool comes with
    // systemd (.ci/run installs it).
    assert!(
        Command::new("systemd-socket-activate")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "\n\n!!! systemd-socket-activate is missing, so socket activation cannot be tested.\n!!! Install it with: apt-get install -y systemd\n"
    );
    if crate::missing(
        "virsh (libvirt-clients)",
        Command::new("virsh").arg("--version"),
    ) {
        return;
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"));
    let bin_dir = bin.parent().unwrap().to_path_buf();
    let root = tempfile::Builder::new()
        .prefix("rvirtd-act.")
        .tempdir()
        .unwrap();
    // not the daemon's default paths, and the read-only socket first: rvirtd must map them
    // by their names
    let sockets = root.path().join("sockets");
    std::fs::create_dir_all(&sockets).unwrap();
    let (rw, ro) = (sockets.join("rw"), sockets.join("ro"));
    let child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&ro)
        .arg("-l")
        .arg(&rw)
        .arg("--fdname=rvirtd-ro.socket:rvirtd.socket")
        .arg(format!("--setenv=RVIRT_PLUGIN_PATH={}", bin_dir.display()))
        .arg(format!(
            "--setenv=RUST_LOG={}",
            std::env::var("RVIRTD_LOG").unwrap_or_else(|_| "warn".into())
        ))
        .arg(&bin)
        .arg("--root")
        .arg(root.path())
        .stdin(Stdio::null())
        .spawn()
        .expect("cannot start systemd-socket-activate");
    let mut act = Activator(child);
    wait_for(&rw);
    wait_for(&ro);
    assert!(
        !root.path().join("run/plugins.json").exists(),
        "rvirtd ran before the first connection"
    );

    // the first connection starts rvirtd, which serves it on the passed socket
    let uri = format!("test+unix:///default?socket={}", rw.display());
    let o = virsh(&uri, &["list", "--all"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("test"),
        "{}",
        text(&o)
    );
    let domain = root.path().join("d.xml");
    std::fs::write(&domain, crate::domain_xml("act1")).unwrap();
    let o = virsh(&uri, &["define", domain.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "define on the read-write socket: {}",
        text(&o)
    );

    // the read-only socket answers queries and refuses changes
    let uri_ro = format!("test+unix:///default?socket={}", ro.display());
    let o = virsh(&uri_ro, &["list", "--all", "--name"]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("act1"),
        "{}",
        text(&o)
    );
    let o = virsh(&uri_ro, &["start", "act1"]);
    assert!(
        !o.status.success(),
        "start on the read-only socket: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("read only access prevents"),
        "{}",
        text(&o)
    );
    let o = virsh(&uri, &["domstate", "act1"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("shut off"),
        "{}",
        text(&o)
    );

    // rvirtd bound none of its own sockets
    for own in ["run/rvirt-sock", "run/rvirt-sock-ro"] {
        assert!(
            !root.path().join(own).exists(),
            "rvirtd bound {own} although systemd passed its sockets"
        );
    }

    // which plugin served test://: in the report, and through `rvirt plugin served`
    let report = root.path().join("run/plugins.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["format"], 1, "{v}");
    assert_eq!(v["pid"], act.0.id(), "{v}");
    let test = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["schemes"].as_array().unwrap().iter().any(|s| s == "test"))
        .unwrap_or_else(|| panic!("no plugin serving test:// in {v}"));
    assert_eq!(test["name"], "test");
    assert_eq!(test["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(test["api_version"], rvirt_host::PLUGIN_API_VERSION);
    assert_eq!(
        Path::new(test["real_file"].as_str().unwrap()),
        bin_dir
            .join("librvirt_plugin_test.so")
            .canonicalize()
            .unwrap()
    );
    let o = Command::new(rvirt_tests::built("rvirt"))
        .args(["plugin", "served", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("test://")
            && l.contains(" test ")
            && l.contains(env!("CARGO_PKG_VERSION"))),
        "{out}"
    );

    // SIGTERM: a clean exit that leaves systemd's sockets (and removes the report)
    let pid = rustix::process::Pid::from_raw(act.0.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = act.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "rvirtd did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "rvirtd exited with {status}");
    assert!(
        rw.exists() && ro.exists(),
        "rvirtd unlinked a socket systemd passed"
    );
    assert!(!report.exists(), "the plugin report outlived the daemon");
}

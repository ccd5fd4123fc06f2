//! rvirtd reports which plugin version serves each scheme (`RUN_DIR/plugins.json`, `rvirt
//! plugin served`), and an upgraded plugin is served from its next load: a plugin described
//! by a manifest file loads on first use, so switching its link before that use serves the
//! new version; a plugin already loaded keeps its version until the daemon restarts.
//!
//! Two versions of one plugin come from the hypervisor template built twice outside the
//! workspace (as the registry's end-to-end test does, in the same target directory).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const NAME: &str = "srvdemo";

fn ext_target() -> PathBuf {
    std::env::var_os("RVIRT_EXT_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| rvirt_tests::profile_dir().parent().unwrap().join("ext"))
}

/// The template plugin built at `version`, copied to `dir/VERSION/`, with the manifest
/// file `rvirt plugin install` writes beside it.
fn build(src: &Path, dir: &Path, version: &str) -> PathBuf {
    let cargo = std::fs::read_to_string(src.join("Cargo.toml")).unwrap();
    let cargo: Vec<String> = cargo
        .lines()
        .map(|l| {
            if l.starts_with("version = ") {
                format!("version = \"{version}\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(src.join("Cargo.toml"), cargo.join("\n") + "\n").unwrap();
    let so = rvirt_templates::build(src, NAME, &ext_target()).unwrap_or_else(|e| panic!("{e}"));
    let keep = dir.join(version);
    std::fs::create_dir_all(&keep).unwrap();
    let file = so.file_name().unwrap().to_str().unwrap().to_string();
    let dest = keep.join(&file);
    std::fs::copy(&so, &dest).unwrap();
    let manifest = rvirt_host::PluginManifest {
        name: NAME.into(),
        kind: "hypervisor".into(),
        schemes: vec![NAME.into()],
        pool_types: Vec::new(),
        forward_modes: Vec::new(),
        version: version.into(),
        api_version: rvirt_host::PLUGIN_API_VERSION.into(),
        description: "served report demo".into(),
    };
    let size = std::fs::metadata(&dest).unwrap().len();
    std::fs::write(
        keep.join(format!("{file}{}", rvirt_host::plugin::MANIFEST_SUFFIX)),
        rvirt_host::plugin::manifest_file_text(&manifest, &file, size),
    )
    .unwrap();
    dest
}

/// Points `link` at `target` with one rename, as `rvirt plugin upgrade` switches versions.
fn switch(link: &Path, target: &Path) {
    let tmp = link.with_extension("so.new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

struct Daemon {
    child: Child,
    root: PathBuf,
}

impl Daemon {
    fn start(root: &Path, plugins: &Path) -> Daemon {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("rvirtd.log"))
            .unwrap();
        let child = Command::new(&bin)
            .arg("--root")
            .arg(root)
            // the demo plugin first (the workspace's plugins beside rvirtd are found too)
            .env("RVIRT_PLUGIN_PATH", plugins)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start rvirtd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(root.join("run/rvirt-sock")).is_err() {
            assert!(Instant::now() < deadline, "rvirtd did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Daemon {
            child,
            root: root.to_path_buf(),
        }
    }

    /// Opens `srvdemo:///` through the daemon (with the real virsh).
    fn connect(&self) {
        let uri = format!(
            "{NAME}+unix:///?socket={}",
            self.root.join("run/rvirt-sock").display()
        );
        let o = Command::new("virsh")
            .args(["-c", &uri, "uri"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }

    /// The demo plugin's entry in the report, if it is loaded.
    fn served(&self) -> Option<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.root.join("run/plugins.json")).ok()?)
                .unwrap();
        assert_eq!(v["format"], 1, "{v}");
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == NAME)
            .cloned()
    }

    fn served_version(&self) -> String {
        let p = self.served().unwrap_or_else(|| {
            panic!(
                "{NAME} is not in the report ({:?}); rvirtd's log:\n{}",
                std::fs::read_to_string(self.root.join("run/plugins.json")),
                std::fs::read_to_string(self.root.join("rvirtd.log")).unwrap_or_default()
            )
        });
        assert_eq!(p["schemes"][0], NAME, "{p}");
        p["version"].as_str().unwrap().to_string()
    }

    /// Whether the daemon's log has a line saying the demo plugin at `version` loaded.
    fn logged(&self, version: &str) -> bool {
        let log = std::fs::read_to_string(self.root.join("rvirtd.log")).unwrap();
        log.lines().any(|l| {
            l.contains("plugin loaded")
                && l.contains(NAME)
                && l.contains(version)
                && l.contains("api")
        })
    }

    fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(o: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_report_names_the_version_serving_a_scheme_across_an_upgrade() {
    if crate::missing(
        "virsh (libvirt-clients)",
        Command::new("virsh").arg("--version"),
    ) {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("rvirtd-served.")
        .tempdir()
        .unwrap();
    let src = tmp.path().join("src").join(NAME);
    rvirt_templates::generate(
        &src,
        &rvirt_templates::Options {
            name: NAME.into(),
            kind: rvirt_templates::Kind::Hypervisor,
            version: "0.1.0".into(),
            description: Some("served report demo".into()),
            sdk: rvirt_templates::SdkSource::Checkout(rvirt_tests::workspace_root()),
        },
    )
    .unwrap();
    let store = tmp.path().join("store");
    let a = build(&src, &store, "0.1.0");
    let b = build(&src, &store, "0.2.0");
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let link = plugins.join(a.file_name().unwrap());
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc/rvirt")).unwrap();
    std::fs::write(
        root.join("etc/rvirt/rvirtd.toml"),
        format!("uris = [\"{NAME}:///\"]\ndefault_uri = \"{NAME}:///\"\n"),
    )
    .unwrap();

    // A installed; the daemon starts without loading it, and reports it once used
    switch(&link, &a);
    let d = Daemon::start(&root, &plugins);
    assert!(d.served().is_none(), "{NAME} loaded before any use");
    assert!(!d.logged("0.1.0"));
    d.connect();
    assert_eq!(d.served_version(), "0.1.0");
    assert!(
        d.logged("0.1.0"),
        "no log line for the load of {NAME} 0.1.0"
    );
    let p = d.served().unwrap();
    assert_eq!(Path::new(p["file"].as_str().unwrap()), link);
    assert_eq!(Path::new(p["real_file"].as_str().unwrap()), a);
    let o = Command::new(rvirt_tests::built("rvirt"))
        .args(["plugin", "served", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success()
            && out
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{NAME}://"))
                    && l.contains("0.1.0")
                    && l.contains(&a.display().to_string())),
        "{}",
        text(&o)
    );

    // upgraded to B while running: A stays loaded, so A keeps serving until a restart
    switch(&link, &b);
    d.connect();
    assert_eq!(d.served_version(), "0.1.0");
    d.stop();
    let d = Daemon::start(&root, &plugins);
    assert!(d.served().is_none(), "{NAME} loaded before any use");
    d.connect();
    assert_eq!(d.served_version(), "0.2.0");
    assert!(
        d.logged("0.2.0"),
        "no log line for the load of {NAME} 0.2.0"
    );
    assert_eq!(
        Path::new(d.served().unwrap()["real_file"].as_str().unwrap()),
        b
    );

    // switched back to A before its first use in a running daemon: its first load (the
    // next plugin load) serves A
    d.stop();
    let d = Daemon::start(&root, &plugins);
    switch(&link, &a);
    d.connect();
    assert_eq!(d.served_version(), "0.1.0");
    d.stop();
}

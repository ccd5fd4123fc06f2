//! The registry end to end, as a vendor and an operator use it: the hypervisor template
//! built outside the workspace, packaged and signed with `rvirt-registry`, published into
//! an index served over HTTP on 127.0.0.1, installed, upgraded, pinned and removed with
//! `rvirt plugin ...`, and talked to with `rvirt -c SCHEME:///`. Packages with a wrong
//! checksum, a bad signature or an untrusted key are refused with nothing changed on
//! disk; a version built for a newer plugin API is skipped with the reason; an install
//! interrupted before its switch leaves the old version working.
//!
//! Needs `cargo build --workspace` first (the `rvirt` and `rvirt-tck` binaries).

use rvirt_registry::{index::IndexRecord, keys, package};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

const NAME: &str = "regdemo";

fn ext_target() -> PathBuf {
    std::env::var_os("RVIRT_EXT_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| rvirt_tests::profile_dir().parent().unwrap().join("ext"))
}

struct Env {
    tmp: tempfile::TempDir,
    index: PathBuf,
    url: String,
    install: PathBuf,
    config: PathBuf,
}

impl Env {
    fn rvirt(&self, args: &[&str]) -> Output {
        self.rvirt_env(args, &[])
    }

    fn rvirt_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(rvirt_tests::built("rvirt"));
        c.args(args)
            .env("RVIRT_REGISTRY_CONFIG", &self.config)
            .env("RVIRT_PLUGIN_PATH", &self.install)
            .env_remove("RVIRT_DEFAULT_URI")
            .env_remove("LIBVIRT_DEFAULT_URI");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run rvirt")
    }

    fn registry(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_rvirt-registry"))
            .args(args)
            .output()
            .expect("run rvirt-registry");
        let text = text(&out);
        assert!(out.status.success(), "rvirt-registry {args:?}:\n{text}");
        text
    }

    /// Builds a package of `so` with `extra` build options and publishes it.
    fn publish(&self, so: &Path, key: &Path, extra: &[&str]) -> String {
        let out = self.tmp.path().join("dist");
        let mut args = vec![
            "build",
            so.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let pkg = self.registry(&args).trim().to_string();
        self.registry(&["publish", &pkg, "--index", self.index.to_str().unwrap()]);
        pkg
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every path under `dir` with its content (files), link target (links) or nothing.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let v = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                stack.push(p.clone());
                "dir".into()
            } else {
                rvirt_registry::sha256_hex(&std::fs::read(&p).unwrap())
            };
            m.insert(p.strip_prefix(dir).unwrap().to_path_buf(), v);
        }
    }
    m
}

/// Puts a (forged) package into the index as publishing would, bypassing the publisher's
/// checks.
fn inject(index: &Path, record_from: &IndexRecord, version: &str, bytes: &[u8], sha: Option<&str>) {
    let mut r = record_from.clone();
    r.facts.version = version.into();
    r.file = format!("packages/{NAME}/{NAME}-{version}-forged.rvpkg");
    r.sha256 = sha
        .map(str::to_string)
        .unwrap_or_else(|| rvirt_registry::sha256_hex(bytes));
    r.size = bytes.len() as u64;
    std::fs::write(index.join(&r.file), bytes).unwrap();
    let idx = index.join(rvirt_registry::index::name_path(NAME));
    let mut lines = std::fs::read_to_string(&idx).unwrap();
    lines.push_str(&serde_json::to_string(&r).unwrap());
    lines.push('\n');
    std::fs::write(idx, lines).unwrap();
}

fn record(index: &Path, version: &str) -> IndexRecord {
    let idx = index.join(rvirt_registry::index::name_path(NAME));
    let text = std::fs::read_to_string(idx).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<IndexRecord>(l).unwrap())
        .find(|r| r.facts.version == version)
        .unwrap()
}

fn assert_serves(env: &Env, version: &str) {
    let out = env.rvirt(&["-c", &format!("{NAME}:///"), "uri"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{NAME}:///")
    );
    let out = env.rvirt(&["plugin", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == NAME)
        .unwrap_or_else(|| panic!("{NAME} is not loaded: {v}"));
    assert_eq!(p["version"], version, "{v}");
    assert_eq!(p["status"], "loaded");
}

#[test]
fn publish_install_upgrade_refuse_pin_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let index = root.join("index");
    let install = root.join("plugins");
    let key = root.join("publisher.key");
    let url = rvirt_registry::serve::spawn("127.0.0.1:0", index.clone()).unwrap();
    let env = Env {
        index: index.clone(),
        url: url.clone(),
        install: install.clone(),
        config: root.join("registry.toml"),
        tmp,
    };
    env.registry(&["keygen", "--out", key.to_str().unwrap()]);
    let public = std::fs::read_to_string(root.join("publisher.key.pub")).unwrap();
    std::fs::write(
        &env.config,
        format!(
            "index = \"{}\"\ninstall_dir = \"{}\"\ntrusted_keys = [\"{}\"]\n",
            env.url,
            env.install.display(),
            public.trim()
        ),
    )
    .unwrap();

    // The vendor: the template, outside the workspace, at 0.1.0 then 0.2.0.
    let src = root.join("src").join(NAME);
    rvirt_templates::generate(
        &src,
        &rvirt_templates::Options {
            name: NAME.into(),
            kind: rvirt_templates::Kind::Hypervisor,
            version: "0.1.0".into(),
            description: Some("registry demo hypervisor".into()),
            sdk: rvirt_templates::SdkSource::Checkout(rvirt_tests::workspace_root()),
        },
    )
    .unwrap();
    let build = |version: &str| {
        let cargo = std::fs::read_to_string(src.join("Cargo.toml")).unwrap();
        let cargo = cargo
            .lines()
            .map(|l| {
                if l.starts_with("version = ") {
                    format!("version = \"{version}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(src.join("Cargo.toml"), cargo + "\n").unwrap();
        let so =
            rvirt_templates::build(&src, NAME, &ext_target()).unwrap_or_else(|e| panic!("{e}"));
        let keep = root.join(format!("so-{version}"));
        std::fs::create_dir_all(&keep).unwrap();
        let dest = keep.join(so.file_name().unwrap());
        std::fs::copy(&so, &dest).unwrap();
        dest
    };
    let so1 = build("0.1.0");
    let so2 = build("0.2.0");

    // 0.1.0: published, found, installed, served, conformant.
    env.publish(&so1, &key, &[]);
    let out = env.rvirt(&["plugin", "search", "demo"]);
    assert!(
        text(&out).contains(NAME) && text(&out).contains("0.1.0"),
        "{}",
        text(&out)
    );
    let out = env.rvirt(&["plugin", "install", NAME]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("installed {NAME} 0.1.0")),
        "{}",
        text(&out)
    );
    assert_serves(&env, "0.1.0");
    let installed_so = install.join(rvirt_templates::library_file(NAME));
    let tck = Command::new(rvirt_tests::built("rvirt-tck"))
        .arg(&installed_so)
        .output()
        .unwrap();
    assert!(tck.status.success(), "{}", text(&tck));

    // 0.2.0: upgrade moves to it.
    env.publish(&so2, &key, &[]);
    let out = env.rvirt(&["plugin", "upgrade"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("upgraded {NAME} 0.1.0 -> 0.2.0")),
        "{}",
        text(&out)
    );
    assert_serves(&env, "0.2.0");

    // 0.3.0 declares a plugin API this host refuses: skipped, with the reason.
    env.publish(
        &so2,
        &key,
        &[
            "--name",
            NAME,
            "--plugin-version",
            "0.3.0",
            "--plugin-api",
            "1.99.0",
            "--schemes",
            NAME,
        ],
    );
    let out = env.rvirt(&["plugin", "upgrade", NAME]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "note: {NAME} 0.3.0 skipped: built against plugin API 1.99.0; this host loads plugin API 1.0 to {}",
            rvirt_host::PLUGIN_API_VERSION.rsplit_once('.').unwrap().0
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!("{NAME} 0.2.0 is installed and current")),
        "{t}"
    );
    let out = env.rvirt(&["plugin", "list", "--available", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["installable"], "0.2.0", "{v}");
    assert_eq!(v[0]["installed"], "0.2.0", "{v}");
    assert_eq!(v[0]["latest"], "0.3.0", "{v}");

    // Refusals: nothing changes on disk, the old version keeps serving.
    let good = record(&index, "0.2.0");
    let refused = |what: &str, expect: &str| {
        let before = snapshot(&install);
        let out = env.rvirt(&["plugin", "upgrade", NAME]);
        let t = text(&out);
        assert!(!out.status.success(), "{what}: accepted:\n{t}");
        assert!(t.contains(expect), "{what}: {t}");
        assert_eq!(
            snapshot(&install),
            before,
            "{what} changed the install directory"
        );
        assert_serves(&env, "0.2.0");
    };
    // A wrong checksum: the package differs from what the index says.
    let bytes2 = std::fs::read(index.join(&good.file)).unwrap();
    inject(&index, &good, "0.4.0", &bytes2, Some(&"0".repeat(64)));
    refused("a wrong checksum", "checksum mismatch");
    // A bad signature: a manifest changed after signing.
    let pkg = package::read(&bytes2).unwrap();
    let forged_manifest = String::from_utf8(pkg.manifest_bytes.clone())
        .unwrap()
        .replace("registry demo hypervisor", "totally the same plugin");
    let files: Vec<(&str, &[u8])> = pkg
        .files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let forged =
        package::pack(forged_manifest.as_bytes(), pkg.signature.as_bytes(), &files).unwrap();
    inject(&index, &good, "0.5.0", &forged, None);
    refused("a bad signature", "bad signature");
    // An untrusted key: properly signed, by someone the configuration does not trust.
    let other = root.join("other.key");
    env.registry(&["keygen", "--out", other.to_str().unwrap()]);
    env.publish(
        &so2,
        &other,
        &[
            "--name",
            NAME,
            "--plugin-version",
            "0.6.0",
            "--plugin-api",
            rvirt_host::PLUGIN_API_VERSION,
            "--schemes",
            NAME,
        ],
    );
    refused("an untrusted key", "untrusted key");

    // Yanked versions are passed over.
    for v in ["0.4.0", "0.5.0", "0.6.0"] {
        env.registry(&[
            "yank",
            &format!("{NAME}@{v}"),
            "--index",
            index.to_str().unwrap(),
        ]);
    }
    let out = env.rvirt(&["plugin", "upgrade", NAME]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "note: {NAME} 0.6.0 skipped: yanked by its publisher"
        )),
        "{t}"
    );

    // An install interrupted between staging and the switch leaves 0.2.0 serving; the
    // next install completes and clears the staging area.
    env.publish(
        &so2,
        &key,
        &[
            "--name",
            NAME,
            "--plugin-version",
            "0.7.0",
            "--plugin-api",
            rvirt_host::PLUGIN_API_VERSION,
            "--schemes",
            NAME,
        ],
    );
    let out = env.rvirt_env(
        &["plugin", "upgrade", NAME],
        &[("RVIRT_INSTALL_INTERRUPT", "after-stage")],
    );
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert_serves(&env, "0.2.0");
    let out = env.rvirt(&["plugin", "upgrade", NAME]);
    assert!(
        text(&out).contains(&format!("upgraded {NAME} 0.2.0 -> 0.7.0")),
        "{}",
        text(&out)
    );
    // 0.7.0 is the 0.2.0 library under a new package version: the plugin says 0.2.0.
    assert_serves(&env, "0.2.0");
    assert!(!install.join(".staging").exists());
    assert!(
        !install.join(".store").join(NAME).join("0.2.0").exists(),
        "the old version's files are gone"
    );

    // Pinning: install NAME@REQ pins; upgrade stays within the pin.
    let out = env.rvirt(&["plugin", "install", &format!("{NAME}@=0.1.0")]);
    assert!(out.status.success(), "{}", text(&out));
    assert_serves(&env, "0.1.0");
    let out = env.rvirt(&["plugin", "upgrade"]);
    let t = text(&out);
    assert!(
        t.contains(&format!("{NAME} 0.1.0 is installed and current")),
        "{t}"
    );
    assert!(
        t.contains("0.7.0 skipped: does not match the requirement =0.1.0"),
        "{t}"
    );
    let out = env.rvirt(&["plugin", "list", "--available"]);
    assert!(
        text(&out).contains("0.1.0 (pinned =0.1.0)"),
        "{}",
        text(&out)
    );

    // Removal.
    let out = env.rvirt(&["plugin", "remove", NAME]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.rvirt(&["-c", &format!("{NAME}:///"), "uri"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("no installed plugin serves '{NAME}://'")),
        "{}",
        text(&out)
    );
    assert!(!install.join(".store").join(NAME).exists());
}

#[test]
fn a_directory_index_works_as_file_url() {
    let tmp = tempfile::tempdir().unwrap();
    let k = keys::generate();
    let so = tmp.path().join("librvirt_plugin_dirdemo.so");
    std::fs::write(&so, b"\x7fELF not really").unwrap();
    let facts = package::PluginFacts {
        name: "dirdemo".into(),
        version: "1.0.0".into(),
        kind: "hypervisor".into(),
        plugin_api: "1.0.0".into(),
        description: "d".into(),
        schemes: vec!["dirdemo".into()],
        ..Default::default()
    };
    let (_, bytes) = package::build(&so, &facts, rvirt_registry::HOST_TARGET, &k).unwrap();
    let idx = rvirt_registry::index::IndexDir::new(tmp.path().join("index"));
    idx.publish(&bytes).unwrap();
    assert!(matches!(
        idx.publish(&bytes),
        Err(rvirt_registry::index::IndexError::Exists { .. })
    ));
    let src = rvirt_registry::index::Source::parse(&format!(
        "file://{}",
        tmp.path().join("index").display()
    ));
    let inst = rvirt_registry::install::Installer::new(
        tmp.path().join("plugins"),
        vec![keys::public_text(&k.verifying_key())],
        "test",
    );
    let o = inst.install(&src, "dirdemo", None).unwrap();
    assert!(matches!(
        o,
        rvirt_registry::install::Outcome::Installed { .. }
    ));
    let link = tmp.path().join("plugins/librvirt_plugin_dirdemo.so");
    assert_eq!(std::fs::read(&link).unwrap(), b"\x7fELF not really");
    assert_eq!(inst.installed().unwrap()["dirdemo"].version, "1.0.0");
    assert!(matches!(
        inst.install(&src, "dirdemo", None).unwrap(),
        rvirt_registry::install::Outcome::Current { .. }
    ));
    assert!(matches!(
        inst.install(&src, "nosuch", None),
        Err(rvirt_registry::install::InstallError::Unknown { .. })
    ));
    inst.remove("dirdemo").unwrap();
    assert!(!link.exists());
}

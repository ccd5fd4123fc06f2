//! vcsim, govmomi's vSphere API simulator, for the tests of the esx plugin and the
//! conformance kit: built once from `tests/tools/vcsim/main.go` (Debian's golang-go and
//! golang-github-vmware-govmomi-dev, offline in GOPATH mode, as
//! `tests/tools/vcsim/build.sh` does) into `target/vcsim`, started on a free port, stopped
//! by its pid on drop. Where go or govmomi is missing the test cannot run ([`cannot_run`]).

use crate::{cannot_run, profile_dir, workspace_root};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Builds vcsim into the target directory once (again only when main.go is newer); `None`
/// (after `cannot_run`) where go or govmomi's sources are missing.
pub fn vcsim_binary(test: &str) -> Option<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = BIN.get_or_init(|| {
        let src = workspace_root().join("tests/tools/vcsim/main.go");
        let target = profile_dir().join("..").join("vcsim");
        let bin = target.join("vcsim");
        let fresh = |b: &Path| -> bool {
            let (Ok(b), Ok(s)) = (b.metadata(), src.metadata()) else {
                return false;
            };
            matches!((b.modified(), s.modified()), (Ok(b), Ok(s)) if b >= s)
        };
        if fresh(&bin) {
            return Ok(bin);
        }
        let gocode = Path::new("/usr/share/gocode/src/github.com/vmware/govmomi/simulator");
        if !gocode.is_dir() {
            return Err(format!(
                "{} is missing: apt-get install golang-github-vmware-govmomi-dev",
                gocode.display()
            ));
        }
        let gopath = target.join("gopath");
        let pkg = gopath.join("src/rvirt-vcsim");
        std::fs::create_dir_all(&pkg).map_err(|e| e.to_string())?;
        std::fs::copy(&src, pkg.join("main.go")).map_err(|e| e.to_string())?;
        let tmp = target.join(format!("vcsim.tmp.{}", std::process::id()));
        let out = Command::new("go")
            .args(["build", "-o"])
            .arg(&tmp)
            .arg("rvirt-vcsim")
            .env("GO111MODULE", "off")
            .env("GOPATH", format!("{}:/usr/share/gocode", gopath.display()))
            .env("GOCACHE", target.join("gocache"))
            .output()
            .map_err(|e| format!("cannot run go ({e}): apt-get install golang-go"))?;
        if !out.status.success() {
            return Err(format!(
                "go build of vcsim failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::rename(&tmp, &bin).map_err(|e| e.to_string())?;
        Ok(bin)
    });
    match r {
        Ok(b) => Some(b.clone()),
        Err(why) => {
            cannot_run(test, why);
            None
        }
    }
}

/// A running vcsim, stopped (by its pid) on drop.
pub struct Vcsim {
    child: Child,
    /// The port it listens on (127.0.0.1, https, user `user`, password `pass` unless
    /// `-user`/`-pass` were given).
    pub port: u16,
    log: PathBuf,
}

impl Vcsim {
    /// Starts vcsim on a free port of 127.0.0.1: `esx` for a standalone ESX host
    /// (`ha-datacenter`), else vCenter; `extra` are more flags of `main.go`. `None` (after
    /// [`cannot_run`]) where vcsim cannot be built.
    pub fn start(test: &str, esx: bool, extra: &[&str]) -> Option<Vcsim> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let bin = vcsim_binary(test)?;
        let log = std::env::temp_dir().join(format!(
            "rvirt-vcsim-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut cmd = Command::new(bin);
        cmd.args(["-l", "127.0.0.1:0"]).args(extra);
        if esx {
            cmd.arg("-esx");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("create the vcsim log"))
            .spawn()
            .expect("start vcsim");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(u) = l.strip_prefix("VCSIM_URL=") {
                        break u.to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    panic!(
                        "vcsim exited without VCSIM_URL: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        };
        // https://user:pass@127.0.0.1:PORT/sdk
        let port = url
            .rsplit_once(':')
            .and_then(|(_, p)| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        Some(Vcsim { child, port, log })
    }
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

//! `virsh console` through rvirtd (`DOMAIN_OPEN_CONSOLE`, a stream both ways): unmodified
//! virsh, given a terminal (a pty that a small python relay holds), prints what an LXC
//! container's init writes and what a QEMU TCG guest prints on its `<serial type='pty'>`,
//! and what the test types reaches them. One session per console: a second open is
//! refused, a forced one takes the console over (the first virsh ends), and a read-only
//! connection is refused.

use crate::virsh_ok as ok;
use crate::{Daemon, missing, write_file};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs its arguments in a new pty (the child's controlling terminal), copying the pty's
/// output to stdout and stdin to the pty; exits with the child's status.
const PTY_RELAY: &str = r#"
import os, pty, select, sys
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
src = sys.stdin.fileno()
watch = [fd, src]
while True:
    r, _, _ = select.select(watch, [], [])
    if fd in r:
        try:
            d = os.read(fd, 4096)
        except OSError:
            d = b""
        if not d:
            break
        os.write(1, d)
    if src in r:
        d = os.read(src, 4096)
        if d:
            os.write(fd, d)
        else:
            watch.remove(src)
_, st = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(st))
"#;

/// `virsh ARGS` on a terminal of its own: what it printed so far, and its keyboard.
struct Terminal {
    child: Child,
    keys: ChildStdin,
    seen: Arc<Mutex<Vec<u8>>>,
    what: String,
}

impl Terminal {
    fn virsh(args: &[&str]) -> Terminal {
        Terminal::run("virsh", args)
    }

    fn run(program: &str, args: &[&str]) -> Terminal {
        let mut child = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(PTY_RELAY)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run python3 with virsh");
        let keys = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            keys,
            seen,
            what: format!("{program} {}", args.join(" ")),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, needle: &str, timeout: Duration) {
        let t0 = Instant::now();
        while !self.text().contains(needle) {
            assert!(
                t0.elapsed() < timeout,
                "timed out after {timeout:?} waiting for '{needle}' from `{}`; it printed:\n{}",
                self.what,
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_text(&mut self, s: &str) {
        self.keys.write_all(s.as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }

    /// Waits for virsh to end by itself; its exit status.
    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "`{}` did not end within {timeout:?}; it printed:\n{}",
                    self.what,
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types the escape (Ctrl + ]) and waits for virsh to leave.
    fn detach(&mut self) -> std::process::ExitStatus {
        self.type_text("\x1d");
        self.wait_exit(Duration::from_secs(10))
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn virsh(uri: &str, args: &[&str]) -> std::process::Output {
    Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .expect("cannot run virsh")
}

fn tools_missing() -> bool {
    missing(
        "virsh (libvirt-clients)",
        Command::new("virsh").arg("--version"),
    ) || missing(
        "/usr/bin/python3",
        Command::new("/usr/bin/python3").arg("--version"),
    )
}

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn busybox_root(dir: &Path, init: &str) -> PathBuf {
    let r = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", r.join("bin/busybox")).unwrap();
    for a in ["sh", "echo", "sleep", "cat", "id"] {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(a)).unwrap();
    }
    std::fs::write(r.join("init.sh"), init).unwrap();
    r
}

#[test]
fn virsh_console_talks_to_an_lxc_container_one_client_at_a_time() {
    if tools_missing() {
        return;
    }
    if !rustix::process::geteuid().is_root() || !Path::new("/bin/busybox").is_file() {
        rvirt_tests::cannot_run(
            "virsh_console_talks_to_an_lxc_container_one_client_at_a_time",
            "containers need root and busybox-static (/bin/busybox)",
        );
        return;
    }
    for f in ["librvirt_plugin_lxc.so", "rvirt-lxc-controller"] {
        assert!(
            bin_dir().join(f).is_file(),
            "{f} is missing next to rvirtd: run `cargo build --workspace` first"
        );
    }
    let d = Daemon::start_with_config("uris = [\"lxc:///system\"]\n");
    let uri = format!("lxc+unix:///system?socket={}", d.socket().display());
    let root = d.root.path().to_path_buf();
    let fs = busybox_root(
        &root,
        "echo CT-CONSOLE-UP\n\
         (while true; do echo CT-TICK; sleep 1; done) &\n\
         while read line; do echo \"GOT:$line:$(id -u)\"; done\n",
    );
    let name = "rvirtd-it-console";
    let xml = format!(
        "<domain type='lxc'><name>{name}</name><memory unit='KiB'>65536</memory><vcpu>1</vcpu>\
         <os><type>exe</type><init>/bin/sh</init><initarg>/init.sh</initarg></os>\
         <devices><filesystem type='mount'><source dir='{}'/><target dir='/'/></filesystem>\
         <console type='pty'><target type='lxc' port='0'/></console></devices></domain>",
        fs.display()
    );
    let file = write_file(&root, "ct.xml", &xml);
    ok(&uri, &["define", file.to_str().unwrap()]);

    // not running: refused before any stream
    let o = virsh(&uri, &["console", name]);
    assert!(!o.status.success());
    ok(&uri, &["start", name]);
    let live = ok(&uri, &["dumpxml", name]);
    assert!(live.contains("<source path='/dev/pts/"), "{live}");

    let mut first = Terminal::virsh(&["-c", &uri, "console", name]);
    first.wait_for("Escape character is ^]", Duration::from_secs(10));
    // what init prints reaches the terminal
    first.wait_for("CT-TICK", Duration::from_secs(10));
    // (the terminal is raw by now: the tick came through virsh's loop)
    // what is typed reaches init, and its answer comes back
    first.type_text("hello-console\n");
    first.wait_for("GOT:hello-console:0", Duration::from_secs(10));

    // one session per console
    let mut second = Terminal::virsh(&["-c", &uri, "console", name]);
    let st = second.wait_exit(Duration::from_secs(10));
    assert!(!st.success(), "a second session is refused");
    assert!(
        second
            .text()
            .contains("Active console session exists for this domain"),
        "{}",
        second.text()
    );
    // read-only connections may not open consoles
    let ro_uri = format!("lxc+unix:///system?socket={}", d.socket_ro().display());
    let mut ro = Terminal::virsh(&["-c", &ro_uri, "-r", "console", name]);
    assert!(!ro.wait_exit(Duration::from_secs(10)).success());
    assert!(
        ro.text().contains("read only access prevents"),
        "{}",
        ro.text()
    );

    // a forced open takes the console over: the first virsh ends, the new one talks
    let mut forced = Terminal::virsh(&["-c", &uri, "console", "--force", name]);
    forced.wait_for("Escape character is ^]", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    first.wait_exit(Duration::from_secs(10));
    forced.type_text("second-client\n");
    forced.wait_for("GOT:second-client:0", Duration::from_secs(10));
    assert!(
        !first.text().contains("GOT:second-client"),
        "the old session no longer receives: {}",
        first.text()
    );
    assert!(forced.detach().success(), "{}", forced.text());

    // the console is free again after a detach: a plain open works
    let mut again = Terminal::virsh(&["-c", &uri, "console", name]);
    // (virsh drops what was typed before it made the terminal raw)
    again.wait_for("Escape character is ^]", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    again.type_text("third\n");
    again.wait_for("GOT:third:0", Duration::from_secs(10));
    assert!(again.detach().success());

    // the rvirt CLI over the same daemon connection opens the console through it too
    let rvirt = bin_dir().join("rvirt");
    let rvirt = rvirt.to_str().unwrap();
    let mut cli = Terminal::run(rvirt, &["-c", &uri, "console", name]);
    cli.wait_for("Escape character is ^]", Duration::from_secs(10));
    cli.wait_for("CT-TICK", Duration::from_secs(10));
    cli.type_text("from-rvirt\n");
    cli.wait_for("GOT:from-rvirt:0", Duration::from_secs(10));
    // its session is the daemon's: virsh is refused while it lasts
    let mut busy = Terminal::virsh(&["-c", &uri, "console", name]);
    assert!(!busy.wait_exit(Duration::from_secs(10)).success());
    assert!(
        busy.text().contains("Active console session exists"),
        "{}",
        busy.text()
    );
    assert!(cli.detach().success(), "{}", cli.text());

    // the container ending ends the session
    let mut last = Terminal::virsh(&["-c", &uri, "console", name]);
    last.wait_for("CT-TICK", Duration::from_secs(10));
    ok(&uri, &["destroy", name]);
    last.wait_exit(Duration::from_secs(10));
    ok(&uri, &["undefine", name]);
}

#[test]
fn virsh_console_prints_a_qemu_guests_serial_pty_and_types_into_it() {
    if tools_missing()
        || missing(
            "qemu-system-x86_64",
            Command::new("qemu-system-x86_64").arg("--version"),
        )
    {
        return;
    }
    assert!(
        bin_dir().join("librvirt_plugin_qemu.so").is_file(),
        "the qemu plugin is missing next to rvirtd: run `cargo build --workspace` first"
    );
    let g = rvirt_tests::guest();
    let d = Daemon::start();
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let root = d.root.path().to_path_buf();
    let name = "vconsole";
    let xml = format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
         <cmdline>console=ttyS0 quiet panic=-1</cmdline></os><features><acpi/></features>\
         <devices><serial type='pty'><target port='0'/></serial>\
         <console type='pty'><target type='serial' port='0'/></console></devices></domain>",
        k = g.join("vmlinux").display(),
        i = g.join("initrd.img").display(),
    );
    let file = write_file(&root, "g.xml", &xml);
    ok(&uri, &["define", file.to_str().unwrap()]);
    // start and attach at once, so the boot banner is seen
    let mut term = Terminal::virsh(&["-c", &uri, "start", "--console", name]);
    term.wait_for("GUEST-READY", Duration::from_secs(120));
    let live = ok(&uri, &["dumpxml", name]);
    assert!(live.contains("<source path='/dev/pts/"), "{live}");
    term.type_text("echo TYPED-$((6*7))\n");
    term.wait_for("TYPED-42", Duration::from_secs(30));
    assert!(term.detach().success(), "{}", term.text());
    // by alias too
    let mut by_alias = Terminal::virsh(&["-c", &uri, "console", "--devname", "serial0", name]);
    by_alias.wait_for("Escape character is ^]", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    by_alias.type_text("echo ALIAS-$((6*8))\n");
    by_alias.wait_for("ALIAS-48", Duration::from_secs(30));
    assert!(by_alias.detach().success());
    ok(&uri, &["destroy", name]);
    ok(&uri, &["undefine", name]);
}

/// The live XML alone does not make the daemon open a pty: the `test` driver echoes the
/// XML a client defines, so a domain whose console names another session's terminal must
/// not get that terminal opened (nor switched to raw mode) by the daemon. The console is
/// refused as not supported, and the terminal is untouched.
#[test]
fn a_console_path_the_driver_did_not_allocate_is_never_opened() {
    if tools_missing() {
        return;
    }
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use rustix::termios::{LocalModes, tcgetattr};
    // "another session's terminal": a pty this test holds
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let slave_path = ptsname(&master, Vec::new()).unwrap();
    let slave_path = slave_path.to_str().unwrap().to_string();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave_path)
        .unwrap();
    let before = tcgetattr(&slave).unwrap();
    assert!(
        before
            .local_modes
            .contains(LocalModes::ECHO | LocalModes::ICANON)
    );

    let d = Daemon::start();
    let uri = d.uri();
    let name = "rvirtd-it-console-forged";
    let xml = format!(
        "<domain type='test'><name>{name}</name><memory unit='KiB'>65536</memory><vcpu>1</vcpu>\
         <os><type>hvm</type></os><devices>\
         <console type='pty'><source path='{slave_path}'/><target type='serial' port='0'/></console>\
         </devices></domain>"
    );
    let file = write_file(d.root.path(), "forged.xml", &xml);
    ok(&uri, &["define", file.to_str().unwrap()]);
    ok(&uri, &["start", name]);
    assert!(
        ok(&uri, &["dumpxml", name]).contains(&slave_path),
        "the test driver echoes the console path"
    );
    let mut t = Terminal::virsh(&["-c", &uri, "console", "--force", name]);
    let st = t.wait_exit(Duration::from_secs(20));
    let said = t.text();
    assert!(!st.success(), "console opened a forged pty: {said}");
    assert!(
        said.contains("not supported") && said.contains("driver 'test'"),
        "{said}"
    );
    // the daemon never switched the terminal to raw mode
    let after = tcgetattr(&slave).unwrap();
    assert_eq!(after.local_modes, before.local_modes);
    assert_eq!(after.input_modes, before.input_modes);
}

//! The per-container controller (`rvirt-lxc-controller SPEC`): the process that creates
//! the container and stays with it, independent of the driver that started it.
//!
//! It creates the container's cgroup and applies its limits, opens a pty per console,
//! binds the control socket, and clones the container's init into new pid, mount, uts,
//! ipc and net namespaces. Before the init runs it is moved into the cgroup and its
//! veth ends are moved into its network namespace; then, inside, the child makes the
//! mounts private, binds the root and the `<filesystem>` mounts, mounts `/proc`, `/sys`
//! (read-only), a tmpfs `/dev` with the usual nodes, a private `devpts` and the console
//! ptys as `/dev/console` and `/dev/ttyN`, `pivot_root`s into the root, sets the
//! hostname to the domain name and execs `<init>` with `<initarg>`s, `<initenv>`s,
//! `<initdir>` and `LIBVIRT_LXC_UUID`/`LIBVIRT_LXC_NAME` in its environment.
//!
//! Each console is two ptys, as libvirt's LXC controller does: the container's (its slave
//! is the container's `/dev/console` or `/dev/ttyN`) and the host's, whose slave path is
//! the one published (`<console><source path=>`): whoever opens it (rvirtd for `virsh
//! console`) talks to the container through the controller's relay, and never shares a
//! device with the container's init.
//!
//! Protocol with the driver: the controller prints `ready PID PTY...` (the host ptys) on its stdout once
//! init has exec'd (or `error MESSAGE`), and `exit STATUS` when the container has ended
//! and is cleaned up. Meanwhile it serves its unix socket:
//! a client that sends `m\n` is a monitor and is sent `exit STATUS\n` when the container
//! ends (`code=N` or `signal=N`); one that sends `cN\n` is attached to console `N` (bytes
//! both ways). Everything the consoles print is appended to the console log too. When
//! init exits, every process left in the cgroup is killed, the cgroup removed and the
//! socket and status file deleted before monitors are told.

use crate::cgroup::Cgroup;
use crate::def::{SPEC_FORMAT, Spec};
use std::ffi::{CString, OsStr};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors of the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The spec cannot be read.
    #[error("cannot read the launch spec '{}'", path.display())]
    Spec {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The spec is not JSON of the expected format.
    #[error("invalid launch spec: {0}")]
    SpecFormat(String),
    /// A cgroup step failed.
    #[error("cgroup setup failed")]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// A system call of the setup failed.
    #[error("cannot {what}")]
    Sys {
        /// What was done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The child failed before exec'ing init.
    #[error("container setup failed: {0}")]
    Child(String),
}

type Result<T> = std::result::Result<T, ControllerError>;

fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControllerError {
    let what = what.into();
    move |source| ControllerError::Sys { what, source }
}

fn last(what: impl Into<String>) -> ControllerError {
    sys(what)(std::io::Error::last_os_error())
}

fn cstr(p: impl AsRef<OsStr>) -> CString {
    CString::new(p.as_ref().as_bytes()).unwrap_or_default()
}

/// A console pty: the master (kept by the controller), its slave's path, and a slave
/// descriptor the controller keeps open so the master never hangs up.
struct Pty {
    master: OwnedFd,
    slave_path: String,
    _slave: OwnedFd,
}

/// One console: the container's pty and the host's, relayed by [`serve`].
struct ConsolePty {
    inner: Pty,
    host: Pty,
}

fn open_console() -> Result<ConsolePty> {
    Ok(ConsolePty {
        inner: open_pty()?,
        host: open_pty()?,
    })
}

fn open_pty() -> Result<Pty> {
    // SAFETY: posix_openpt returns a new descriptor or -1; no memory is passed.
    let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if m < 0 {
        return Err(last("open a pty master"));
    }
    // SAFETY: m is a descriptor we own from here.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    // SAFETY: grantpt/unlockpt take a valid descriptor.
    if unsafe { libc::grantpt(m) } != 0 || unsafe { libc::unlockpt(m) } != 0 {
        return Err(last("unlock the pty"));
    }
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: buf is writable for its whole length, which we pass.
    if unsafe { libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()) } != 0 {
        return Err(last("name the pty"));
    }
    // SAFETY: ptsname_r wrote a NUL-terminated string into buf.
    let slave_path = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let c = cstr(&slave_path);
    // SAFETY: c is a valid NUL-terminated path.
    let s = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if s < 0 {
        return Err(last(format!("open {slave_path}")));
    }
    // SAFETY: s is a descriptor we own from here.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    // Raw mode on the slave: the console is a byte pipe (no echo of what a client types
    // into the log, no CR insertion).
    // SAFETY: termios is plain data; tcgetattr fills it from a valid descriptor.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(s, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(s, libc::TCSANOW, &t);
        }
    }
    set_nonblock(m);
    Ok(Pty {
        master,
        slave_path,
        _slave: slave,
    })
}

fn set_nonblock(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we hold; F_GETFL/F_SETFL take no pointers.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last("create a pipe"));
    }
    // SAFETY: both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Runs the controller for the spec at `spec_path`; `ready` receives the one-line report.
/// Returns once the container has ended and everything is cleaned up.
pub fn run(spec_path: &Path, ready: &mut dyn Write) -> Result<()> {
    let text = std::fs::read_to_string(spec_path).map_err(|source| ControllerError::Spec {
        path: spec_path.into(),
        source,
    })?;
    let spec: Spec =
        serde_json::from_str(&text).map_err(|e| ControllerError::SpecFormat(e.to_string()))?;
    if spec.format != SPEC_FORMAT {
        return Err(ControllerError::SpecFormat(format!(
            "format {} (this controller reads {SPEC_FORMAT})",
            spec.format
        )));
    }
    let cg = Cgroup::at(&spec.cgroup)?;
    let started = start(&spec, &cg);
    let (child, ptys, listener, pidfd) = match started {
        Ok(s) => s,
        Err(e) => {
            let _ = cg.remove(Duration::from_secs(2));
            let _ = std::fs::remove_file(&spec.socket);
            if let Some(stage) = &spec.host_root {
                let _ = std::fs::remove_dir(stage);
            }
            remove_veths(&spec);
            return Err(e);
        }
    };
    let paths: Vec<&str> = ptys.iter().map(|p| p.host.slave_path.as_str()).collect();
    let _ = writeln!(ready, "ready {child} {}", paths.join(" "));
    let _ = ready.flush();
    let status = serve(&spec, &ptys, &listener, &pidfd, child);
    let _ = cg.remove(Duration::from_secs(5));
    if let Some(stage) = &spec.host_root {
        // empty on the host: the bind lived in the container's mount namespace
        let _ = std::fs::remove_dir(stage);
    }
    // The host ends of the veth pairs go with the network namespace, but the kernel
    // dismantles a namespace later, on a work queue: delete them now, so that nothing of
    // the container is left when its end is reported.
    remove_veths(&spec);
    let _ = std::fs::remove_file(&spec.socket);
    let _ = std::fs::remove_file(&spec.status);
    notify(&status);
    // The driver that started us reads the same notice from our stdout (a write error
    // means it is gone: ignored).
    let _ = writeln!(ready, "exit {status}");
    let _ = ready.flush();
    Ok(())
}

type Started = (i32, Vec<ConsolePty>, UnixListener, OwnedFd);

fn start(spec: &Spec, cg: &Cgroup) -> Result<Started> {
    cg.create()?;
    cg.apply(&spec.limits)?;
    let mut ptys = Vec::new();
    for _ in 0..spec.consoles.max(1) {
        ptys.push(open_console()?);
    }
    if let Some(d) = spec.socket.parent() {
        std::fs::create_dir_all(d).map_err(sys(format!("create {}", d.display())))?;
    }
    let _ = std::fs::remove_file(&spec.socket);
    let listener =
        UnixListener::bind(&spec.socket).map_err(sys(format!("bind {}", spec.socket.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(sys("set the socket non-blocking"))?;
    let (sync_r, sync_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // <idmap>: the user namespace's maps are written before the child goes on
    let (map_r, map_w) = pipe()?;
    let slaves: Vec<String> = ptys.iter().map(|p| p.inner.slave_path.clone()).collect();
    let mut flags = libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET;
    if let Some(m) = &spec.idmap {
        flags |= libc::CLONE_NEWUSER;
        // the container's root owns its consoles (it reopens /dev/console and /dev/ttyN)
        let (uid, gid) = (
            crate::def::IdMap::root_of(&m.uid).unwrap_or(0),
            crate::def::IdMap::root_of(&m.gid).unwrap_or(0),
        );
        for p in &ptys {
            // SAFETY: fchown on a descriptor we own.
            if unsafe { libc::fchown(p.inner._slave.as_raw_fd(), uid, gid) } != 0 {
                return Err(last(format!(
                    "give {} to the container's root",
                    p.inner.slave_path
                )));
            }
        }
    }
    // SAFETY: clone without CLONE_VM and with a null stack behaves like fork(2): the child
    // gets a copy of this (single-threaded) process and returns 0 here.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    } as i32;
    if pid < 0 {
        return Err(last("clone the container's init into new namespaces"));
    }
    if pid == 0 {
        drop(sync_w);
        drop(err_r);
        drop(map_w);
        let e = child(spec, &slaves, sync_r, map_r);
        let mut w = std::fs::File::from(err_w);
        let _ = w.write_all(e.as_bytes());
        // SAFETY: _exit ends the child without running the parent's destructors.
        unsafe { libc::_exit(127) };
    }
    drop(sync_r);
    drop(err_w);
    drop(map_r);
    let err_r = std::fs::File::from(err_r);
    let fail = |e: ControllerError| {
        // SAFETY: pid is our child; kill + waitpid take no pointers but the status.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        // the child's own failure (its setup runs meanwhile) explains more than ours
        let mut msg = String::new();
        let _ = (&err_r).read_to_string(&mut msg);
        if msg.is_empty() {
            e
        } else {
            ControllerError::Child(msg)
        }
    };
    if let Some(m) = &spec.idmap
        && let Err(e) = write_maps(pid, m)
    {
        return Err(fail(e));
    }
    let mut mw = std::fs::File::from(map_w);
    if let Err(e) = mw.write_all(b"m") {
        return Err(fail(sys("release the container's setup")(e)));
    }
    drop(mw);
    if let Err(e) = cg.add(pid) {
        return Err(fail(e.into()));
    }
    if let Err(e) = veths(spec, pid) {
        return Err(fail(e));
    }
    let mut w = std::fs::File::from(sync_w);
    if let Err(e) = w.write_all(b"g") {
        return Err(fail(sys("release the container's init")(e)));
    }
    drop(w);
    let mut msg = String::new();
    let _ = (&err_r).read_to_string(&mut msg);
    if !msg.is_empty() {
        return Err(fail(ControllerError::Child(msg)));
    }
    // SAFETY: pidfd_open on our own child; returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return Err(fail(last("open a pidfd for init")));
    }
    // SAFETY: fd is a new descriptor of ours.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((pid, ptys, listener, pidfd))
}

fn run_tool(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(sys(format!("run {}", args[0])))?;
    if !out.status.success() {
        return Err(ControllerError::Child(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Creates each veth pair with its container end in `pid`'s network namespace, named,
/// addressed and up.
/// Deletes the host ends of the container's veth pairs that still exist. `ip` is asked
/// for each (an end already gone is an error ignored): `/sys/class/net` shows the devices
/// of the namespace sysfs was mounted in, which need not be this process's.
fn remove_veths(spec: &Spec) {
    for v in &spec.veths {
        let _ = run_tool(&["ip", "link", "del", &v.host_dev]);
    }
}

fn veths(spec: &Spec, pid: i32) -> Result<()> {
    let ns = format!("--net=/proc/{pid}/ns/net");
    for v in &spec.veths {
        let pid_s = pid.to_string();
        let mut add = vec![
            "ip",
            "link",
            "add",
            &v.host_dev,
            "type",
            "veth",
            "peer",
            "name",
            &v.guest_dev,
        ];
        if let Some(mac) = &v.mac {
            add.extend(["address", mac.as_str()]);
        }
        add.extend(["netns", pid_s.as_str()]);
        run_tool(&add)?;
        if let Some(br) = &v.bridge {
            run_tool(&["ip", "link", "set", &v.host_dev, "master", br])?;
        }
        run_tool(&["ip", "link", "set", &v.host_dev, "up"])?;
        for a in &v.addrs {
            run_tool(&["nsenter", &ns, "ip", "addr", "add", a, "dev", &v.guest_dev])?;
        }
        run_tool(&["nsenter", &ns, "ip", "link", "set", &v.guest_dev, "up"])?;
    }
    Ok(())
}

/// The container side: runs in the new namespaces; returns only with an error message.
/// The container's side: its mounts and root are set up while the controller moves it
/// into its cgroup and network (the two run at once: a cgroup v1 attach waits for an RCU
/// grace period, the longest step of a start); init is exec'd once released.
fn child(spec: &Spec, slaves: &[String], sync: OwnedFd, maps: OwnedFd) -> String {
    let mut b = [0u8; 1];
    if !matches!(std::fs::File::from(maps).read(&mut b), Ok(1)) {
        return "the controller did not map the container's user namespace".into();
    }
    if let Err(e) = setup(spec, slaves) {
        return rvirt_sdk::util::error_chain(&e);
    }
    let mut f = std::fs::File::from(sync);
    if !matches!(f.read(&mut b), Ok(1)) {
        return "the controller did not release init".into();
    }
    match exec_init(spec) {
        Ok(never) => match never {},
        Err(e) => rvirt_sdk::util::error_chain(&e),
    }
}

enum Never {}

fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let s = src.map(cstr);
    let t = cstr(target);
    let ty = fstype.map(cstr);
    let d = data.map(cstr);
    // SAFETY: every pointer is null or a valid NUL-terminated string alive for the call.
    let r = unsafe {
        libc::mount(
            s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            t.as_ptr(),
            ty.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            d.as_ref().map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        )
    };
    if r != 0 {
        return Err(last(format!(
            "mount {} on {}",
            src.or(fstype).unwrap_or("none"),
            target.display()
        )));
    }
    Ok(())
}

/// Writes the user namespace maps of the container's init `pid`.
fn write_maps(pid: i32, m: &crate::def::IdMap) -> Result<()> {
    for (file, ranges) in [("uid_map", &m.uid), ("gid_map", &m.gid)] {
        let p = format!("/proc/{pid}/{file}");
        std::fs::write(&p, crate::def::IdMap::map_file(ranges))
            .map_err(sys(format!("write {p}")))?;
    }
    Ok(())
}

fn mknod(path: &Path, major: u32, minor: u32) -> Result<()> {
    let c = cstr(path);
    // SAFETY: c is a valid path; makedev/mknod take plain integers.
    let r = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    };
    if r != 0 {
        return Err(last(format!("create the device node {}", path.display())));
    }
    // mknod is subject to the umask: make the mode exact.
    // SAFETY: as above.
    unsafe { libc::chmod(c.as_ptr(), 0o666) };
    Ok(())
}

fn touch(p: &Path) -> Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map(drop)
        .map_err(sys(format!("create {}", p.display())))
}

fn setup(spec: &Spec, slaves: &[String]) -> Result<()> {
    // The console: a new session with the first pty as controlling terminal and stdio.
    let c = cstr(&slaves[0]);
    // SAFETY: setsid/open/ioctl/dup2 on descriptors we own; c is a valid path.
    unsafe {
        libc::setsid();
        let fd = libc::open(c.as_ptr(), libc::O_RDWR);
        if fd < 0 {
            return Err(last(format!("open the console {}", slaves[0])));
        }
        libc::ioctl(fd, libc::TIOCSCTTY, 0);
        for t in 0..3 {
            libc::dup2(fd, t);
        }
        if fd > 2 {
            libc::close(fd);
        }
    }
    if spec.idmap.is_some() {
        // the user namespace's root (the mapped ids on the host), with its capabilities
        // SAFETY: set*id(2) with plain integers; setgroups with an empty list.
        unsafe {
            if libc::setresgid(0, 0, 0) != 0 {
                return Err(last("become the user namespace's root group"));
            }
            if libc::setgroups(0, std::ptr::null()) != 0 {
                return Err(last("drop the supplementary groups"));
            }
            if libc::setresuid(0, 0, 0) != 0 {
                return Err(last("become the user namespace's root"));
            }
        }
    }
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    // The root: the container's directory bound on itself, or the host's `/` bound at the
    // staging directory (a root shared with the host).
    let root = match &spec.host_root {
        Some(stage) => {
            std::fs::create_dir_all(stage).map_err(sys(format!("create {}", stage.display())))?;
            mount(Some("/"), stage, None, libc::MS_BIND | libc::MS_REC, None)?;
            stage
        }
        None => {
            mount(
                Some(&spec.root.to_string_lossy()),
                &spec.root,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?;
            &spec.root
        }
    };
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    for m in &spec.mounts {
        let t = inside(&m.target);
        std::fs::create_dir_all(&t).map_err(sys(format!("create {}", t.display())))?;
        match &m.source {
            Some(s) => {
                mount(
                    Some(&s.to_string_lossy()),
                    &t,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )?;
                if m.readonly {
                    mount(
                        None,
                        &t,
                        None,
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        None,
                    )?;
                }
            }
            None => {
                let data = m.size_kib.map(|k| format!("size={k}k,mode=755"));
                let mut fl = libc::MS_NOSUID | libc::MS_NODEV;
                if m.readonly {
                    fl |= libc::MS_RDONLY;
                }
                mount(Some("tmpfs"), &t, Some("tmpfs"), fl, data.as_deref())?;
            }
        }
    }
    let nse = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let proc_ = root.join("proc");
    std::fs::create_dir_all(&proc_).map_err(sys("create /proc"))?;
    mount(Some("proc"), &proc_, Some("proc"), nse, None)?;
    // /proc/sys read-only, as libvirt's driver leaves it.
    let psys = proc_.join("sys");
    mount(
        Some(&psys.to_string_lossy()),
        &psys,
        None,
        libc::MS_BIND,
        None,
    )?;
    mount(
        None,
        &psys,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | nse,
        None,
    )?;
    let sys_ = root.join("sys");
    std::fs::create_dir_all(&sys_).map_err(sys("create /sys"))?;
    mount(
        Some("sysfs"),
        &sys_,
        Some("sysfs"),
        nse | libc::MS_RDONLY,
        None,
    )?;
    let dev = root.join("dev");
    std::fs::create_dir_all(&dev).map_err(sys("create /dev"))?;
    mount(
        Some("devfs"),
        &dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (n, maj, min) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        if spec.idmap.is_some() {
            // no device nodes can be made in a user namespace: the host's are bound
            let t = dev.join(n);
            touch(&t)?;
            mount(Some(&format!("/dev/{n}")), &t, None, libc::MS_BIND, None)?;
        } else {
            mknod(&dev.join(n), maj, min)?;
        }
    }
    for (l, t) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(t, dev.join(l)).map_err(sys(format!("link /dev/{l}")))?;
    }
    let pts = dev.join("pts");
    std::fs::create_dir_all(&pts).map_err(sys("create /dev/pts"))?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let shm = dev.join("shm");
    std::fs::create_dir_all(&shm).map_err(sys("create /dev/shm"))?;
    mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=1777"),
    )?;
    for (i, s) in slaves.iter().enumerate() {
        let name = if i == 0 {
            "console".to_string()
        } else {
            format!("tty{i}")
        };
        let t = dev.join(&name);
        touch(&t)?;
        mount(Some(s), &t, None, libc::MS_BIND, None)?;
        if i == 0 {
            let t1 = dev.join("tty1");
            touch(&t1)?;
            mount(Some(s), &t1, None, libc::MS_BIND, None)?;
        }
    }
    // Into the root: pivot_root(".", ".") stacks the old root under the new one; the
    // lazy unmount then drops it.
    std::env::set_current_dir(root).map_err(sys(format!("enter {}", root.display())))?;
    let dot = cstr(".");
    // SAFETY: pivot_root/umount2 with a valid NUL-terminated path.
    unsafe {
        if libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) != 0 {
            return Err(last(format!("pivot_root into {}", root.display())));
        }
        if libc::umount2(dot.as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(last("detach the host's root"));
        }
    }
    std::env::set_current_dir("/").map_err(sys("enter /"))?;
    // SAFETY: sethostname with a pointer/length pair of a live byte slice.
    if unsafe { libc::sethostname(spec.name.as_ptr().cast(), spec.name.len()) } != 0 {
        return Err(last("set the hostname"));
    }
    loopback_up();
    Ok(())
}

/// Execs `<init>` with libvirt's environment.
fn exec_init(spec: &Spec) -> Result<Never> {
    // The controller's runtime ignores SIGPIPE; init starts with every signal at its
    // default and none blocked, as after a normal exec.
    // SAFETY: signal(2)/sigprocmask(2) with valid arguments; a zeroed sigset is empty.
    unsafe {
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    let dir = spec.dir.as_deref().unwrap_or("/");
    std::env::set_current_dir(dir).map_err(sys(format!("enter the init directory {dir}")))?;
    let mut env: Vec<CString> = vec![
        cstr("PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/local/bin:/usr/local/sbin"),
        cstr("container=lxc-libvirt"),
        cstr(format!("container_uuid={}", spec.uuid)),
        cstr(format!("LIBVIRT_LXC_UUID={}", spec.uuid)),
        cstr(format!("LIBVIRT_LXC_NAME={}", spec.name)),
    ];
    if !spec.args.is_empty() {
        env.push(cstr(format!("LIBVIRT_LXC_CMDLINE={}", spec.args.join(" "))));
    }
    for (k, v) in &spec.env {
        env.push(cstr(format!("{k}={v}")));
    }
    let init = cstr(&spec.init);
    let mut argv: Vec<CString> = vec![init.clone()];
    argv.extend(spec.args.iter().map(cstr));
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    env_p.push(std::ptr::null());
    // SAFETY: argv_p and env_p are NULL-terminated arrays of valid C strings kept alive
    // (argv, env) for the call.
    unsafe { libc::execve(init.as_ptr(), argv_p.as_ptr(), env_p.as_ptr()) };
    Err(last(format!("exec init {}", spec.init)))
}

/// Brings `lo` up in the container's network namespace.
fn loopback_up() {
    // SAFETY: a datagram socket and SIOCGIFFLAGS/SIOCSIFFLAGS on a zeroed ifreq naming
    // "lo"; the descriptor is closed after.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return;
        }
        let mut r: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            r.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut r) == 0 {
            r.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(s, libc::SIOCSIFFLAGS, &r);
        }
        libc::close(s);
    }
}

enum Role {
    Pending(Vec<u8>),
    Monitor,
    Console(usize),
}

struct Client {
    stream: UnixStream,
    role: Role,
}

static MONITORS: std::sync::Mutex<Vec<UnixStream>> = std::sync::Mutex::new(Vec::new());

fn notify(status: &str) {
    if let Ok(mut m) = MONITORS.lock() {
        for s in m.iter_mut() {
            let _ = s.set_nonblocking(false);
            let _ = writeln!(s, "exit {status}");
        }
        m.clear();
    }
}

/// Relays consoles and serves clients until init exits; returns its exit status.
fn serve(
    spec: &Spec,
    ptys: &[ConsolePty],
    listener: &UnixListener,
    pidfd: &OwnedFd,
    child: i32,
) -> String {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.console_log)
        .ok();
    let mut clients: Vec<Client> = Vec::new();
    let mut buf = vec![0u8; 16384];
    loop {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let pfd = |fd: RawFd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        fds.push(pfd(pidfd.as_raw_fd()));
        fds.push(pfd(listener.as_raw_fd()));
        for p in ptys {
            fds.push(pfd(p.inner.master.as_raw_fd()));
        }
        for p in ptys {
            fds.push(pfd(p.host.master.as_raw_fd()));
        }
        for c in &clients {
            fds.push(pfd(c.stream.as_raw_fd()));
        }
        // SAFETY: fds is a valid array of pollfd of the length passed.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue;
        }
        let base = 2 + 2 * ptys.len();
        for (i, p) in ptys.iter().enumerate() {
            if fds[2 + i].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                relay_out(p, i, &mut buf, &mut log, &mut clients);
            }
            // what the host side's client typed goes to the container
            if fds[2 + ptys.len() + i].revents & libc::POLLIN != 0 {
                relay_in(p, &mut buf);
            }
        }
        let mut dead = Vec::new();
        for (k, c) in clients.iter_mut().enumerate() {
            if fds[base + k].revents == 0 {
                continue;
            }
            match c.stream.read(&mut buf) {
                Ok(0) => dead.push(k),
                Ok(n) => match &mut c.role {
                    Role::Pending(line) => {
                        line.extend_from_slice(&buf[..n]);
                        if let Some(nl) = line.iter().position(|b| *b == b'\n') {
                            let head = String::from_utf8_lossy(&line[..nl]).into_owned();
                            let rest = line[nl + 1..].to_vec();
                            if head == "m" {
                                c.role = Role::Monitor;
                            } else if let Some(i) =
                                head.strip_prefix('c').and_then(|i| i.parse::<usize>().ok())
                                && i < ptys.len()
                            {
                                c.role = Role::Console(i);
                                write_all_fd(ptys[i].inner.master.as_raw_fd(), &rest);
                            } else {
                                dead.push(k);
                            }
                        }
                    }
                    Role::Monitor => {}
                    Role::Console(i) => write_all_fd(ptys[*i].inner.master.as_raw_fd(), &buf[..n]),
                },
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => dead.push(k),
            }
        }
        for k in dead.into_iter().rev() {
            clients.remove(k);
        }
        // Monitors move to the shared list (the exit notice goes to them).
        let mut k = 0;
        while k < clients.len() {
            if matches!(clients[k].role, Role::Monitor) {
                let c = clients.remove(k);
                if let Ok(mut m) = MONITORS.lock() {
                    m.push(c.stream);
                }
            } else {
                k += 1;
            }
        }
        if fds[1].revents & libc::POLLIN != 0 {
            while let Ok((s, _)) = listener.accept() {
                let _ = s.set_nonblocking(true);
                clients.push(Client {
                    stream: s,
                    role: Role::Pending(Vec::new()),
                });
            }
        }
        if fds[0].revents & libc::POLLIN != 0 {
            let mut st = 0;
            // SAFETY: waitpid on our child with a valid status pointer.
            let r = unsafe { libc::waitpid(child, &mut st, libc::WNOHANG) };
            if r == child {
                // What init printed last.
                for (i, p) in ptys.iter().enumerate() {
                    relay_out(p, i, &mut buf, &mut log, &mut clients);
                }
                return if libc::WIFSIGNALED(st) {
                    format!("signal={}", libc::WTERMSIG(st))
                } else {
                    format!("code={}", libc::WEXITSTATUS(st))
                };
            }
        }
    }
}

/// Copies what the host pty's client wrote to the container's pty.
fn relay_in(p: &ConsolePty, buf: &mut [u8]) {
    loop {
        // SAFETY: read into a live buffer of the length passed.
        let n = unsafe {
            libc::read(
                p.host.master.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n <= 0 {
            return;
        }
        write_all_fd(p.inner.master.as_raw_fd(), &buf[..n as usize]);
    }
}

/// Writes to the host pty without stalling the relay: while nobody reads its slave, its
/// queue fills and the rest is dropped (after a short wait for a reader to catch up).
fn write_host(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: write from a live buffer of the length passed.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
            continue;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 2) } <= 0 {
            return;
        }
    }
}

fn relay_out(
    p: &ConsolePty,
    i: usize,
    buf: &mut [u8],
    log: &mut Option<std::fs::File>,
    clients: &mut [Client],
) {
    loop {
        // SAFETY: read into a live buffer of the length passed.
        let n = unsafe {
            libc::read(
                p.inner.master.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n <= 0 {
            return;
        }
        let data = &buf[..n as usize];
        if let Some(l) = log {
            let _ = l.write_all(data);
        }
        write_host(p.host.master.as_raw_fd(), data);
        for c in clients.iter_mut() {
            if matches!(c.role, Role::Console(j) if j == i) {
                let _ = c.stream.write_all(data);
            }
        }
    }
}

fn write_all_fd(fd: RawFd, mut data: &[u8]) {
    let mut tries = 0;
    while !data.is_empty() && tries < 1000 {
        // SAFETY: write from a live buffer of the length passed.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
        } else {
            tries += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

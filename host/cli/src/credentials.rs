//! The interactive credential prompt, as virsh's default authentication callback: when a
//! VMware connection (`esx://`, `gsx://`, `vpx://`) cannot open for want of a password
//! (none in the URI's `authfile=`, `$LIBVIRT_AUTH_FILE` or libvirt's `auth.conf`), `rvirt`
//! asks for the user name (when the URI has none) and the password on the terminal and
//! opens again with them.
//!
//! The plugin API has no credential callback: the answers reach the plugin as a private
//! auth file (mode 0600, in a directory only this user reads) named by the URI's
//! `authfile=` parameter for the one open, then removed. The password is read with echo
//! off when standard input is a terminal; otherwise one line of standard input is read, so
//! a script can pipe it (virsh reads its answers from standard input too).

use anyhow::{Context, Result, bail};
use rustix::termios::{LocalModes, OptionalActions, isatty, tcgetattr, tcsetattr};
use rvirt_host::{Connection, Runtime};
use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

/// The schemes whose plugin reads libvirt's auth file and can be given one.
const PROMPTING_SCHEMES: &[&str] = &["esx", "gsx", "vpx"];

/// Opens `uri`; a VMware URI refused for want of a password is opened again with
/// credentials asked on the terminal.
pub fn open(runtime: &Runtime, uri: &str, read_only: bool) -> Result<Connection> {
    let first = runtime.open(uri, read_only);
    let err = match first {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    let Some(target) = Target::of(uri) else {
        return Err(err).with_context(|| format!("failed to connect to '{uri}'"));
    };
    if !err.to_string().contains("no password for") {
        return Err(err).with_context(|| format!("failed to connect to '{uri}'"));
    }
    let stdin = std::io::stdin();
    let (user, password) = match ask(&target, &mut stdin.lock()) {
        Ok(Some(c)) => c,
        // nothing to read (end of input): the original refusal stands
        Ok(None) => return Err(err).with_context(|| format!("failed to connect to '{uri}'")),
        Err(e) => return Err(e.context(format!("failed to connect to '{uri}'"))),
    };
    let dir = private_dir()?;
    let file = dir.path.join("auth.conf");
    write_auth(&file, &target, &user, &password)?;
    let with_file = with_authfile(uri, &file.to_string_lossy());
    let r = runtime.open(&with_file, read_only);
    drop(dir);
    r.with_context(|| format!("failed to connect to '{uri}'"))
}

/// What the prompt names: the scheme (libvirt's auth service), host and URI user.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    service: &'static str,
    host: String,
    user: Option<String>,
}

impl Target {
    fn of(uri: &str) -> Option<Target> {
        let u = url::Url::parse(uri).ok()?;
        let scheme = u.scheme();
        if !PROMPTING_SCHEMES.contains(&scheme) {
            return None;
        }
        // libvirt's auth services: `esx` for esx:// and gsx://, `vpx` for vCenter
        let service = if scheme == "vpx" { "vpx" } else { "esx" };
        let user = (!u.username().is_empty()).then(|| percent_decode(u.username()));
        Some(Target {
            service,
            host: u.host_str()?.to_string(),
            user,
        })
    }

    fn default_user(&self) -> &'static str {
        if self.service == "vpx" {
            "administrator"
        } else {
            "root"
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Asks for the user (when the URI has none; empty: libvirt's default) and the password,
/// on standard error; `None` at the end of input.
fn ask(t: &Target, input: &mut impl BufRead) -> Result<Option<(String, String)>> {
    let mut err = std::io::stderr();
    let user = match &t.user {
        Some(u) => u.clone(),
        None => {
            write!(
                err,
                "Enter username for {} [{}]: ",
                t.host,
                t.default_user()
            )?;
            err.flush()?;
            let Some(line) = read_line(input)? else {
                return Ok(None);
            };
            if line.is_empty() {
                t.default_user().to_string()
            } else {
                line
            }
        }
    };
    let password = {
        // echo goes off before the prompt shows: what is typed as soon as the prompt is
        // seen must never be echoed
        let _quiet = NoEcho::on_stdin();
        write!(err, "Enter {user}'s password for {}: ", t.host)?;
        err.flush()?;
        read_line(input)?
    };
    // the newline the user typed was not echoed
    writeln!(err)?;
    Ok(password.map(|p| (user, p)))
}

/// One line without its end; `None` at the end of input.
fn read_line(input: &mut impl BufRead) -> Result<Option<String>> {
    let mut line = String::new();
    if input
        .read_line(&mut line)
        .context("cannot read the answer")?
        == 0
    {
        return Ok(None);
    }
    while line.ends_with(['\n', '\r']) {
        line.pop();
    }
    Ok(Some(line))
}

/// Echo turned off on standard input while it lives, when that is a terminal.
struct NoEcho {
    saved: Option<rustix::termios::Termios>,
}

impl NoEcho {
    fn on_stdin() -> NoEcho {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        if !isatty(fd) {
            return NoEcho { saved: None };
        }
        let Ok(saved) = tcgetattr(fd) else {
            return NoEcho { saved: None };
        };
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        quiet.local_modes.insert(LocalModes::ECHONL);
        if tcsetattr(fd, OptionalActions::Now, &quiet).is_err() {
            return NoEcho { saved: None };
        }
        NoEcho { saved: Some(saved) }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, saved);
        }
    }
}

/// A directory only this user can enter, removed with what it holds when dropped.
struct PrivateDir {
    path: std::path::PathBuf,
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn private_dir() -> Result<PrivateDir> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    for n in 0..100u32 {
        let path = base.join(format!("rvirt-auth-{}-{n}", std::process::id()));
        match std::fs::create_dir(&path) {
            Ok(()) => {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("cannot restrict '{}'", path.display()))?;
                return Ok(PrivateDir { path });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create '{}'", path.display()));
            }
        }
    }
    bail!(
        "cannot create a private directory under '{}'",
        base.display()
    )
}

/// libvirt's auth.conf naming the answers for this service and host.
fn auth_conf(t: &Target, user: &str, password: &str) -> String {
    format!(
        "[credentials-rvirt-prompt]\nusername={user}\npassword={password}\n\n[auth-{}-{}]\ncredentials=rvirt-prompt\n",
        t.service, t.host
    )
}

fn write_auth(file: &std::path::Path, t: &Target, user: &str, password: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot create '{}'", file.display()))?;
    f.write_all(auth_conf(t, user, password).as_bytes())
        .with_context(|| format!("cannot write '{}'", file.display()))?;
    Ok(())
}

/// `uri` with `authfile=PATH` (replacing one it had).
fn with_authfile(uri: &str, path: &str) -> String {
    let Ok(mut u) = url::Url::parse(uri) else {
        return uri.to_string();
    };
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != "authfile")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = u.query_pairs_mut();
        q.clear();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        q.append_pair("authfile", path);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmware_uris_are_the_ones_that_prompt() {
        let t = Target::of("esx://root@10.0.0.1/?no_verify=1").unwrap();
        assert_eq!(t.service, "esx");
        assert_eq!(t.host, "10.0.0.1");
        assert_eq!(t.user.as_deref(), Some("root"));
        let v = Target::of("vpx://vc.example/DC/C?no_verify=1").unwrap();
        assert_eq!((v.service, v.user.as_deref()), ("vpx", None));
        assert_eq!(v.default_user(), "administrator");
        assert_eq!(Target::of("gsx://h/").unwrap().service, "esx");
        assert!(Target::of("qemu:///system").is_none());
        assert!(Target::of("test:///default").is_none());
    }

    #[test]
    fn the_answers_are_read_as_typed_and_an_empty_user_is_the_default() {
        let t = Target::of("vpx://vc/DC").unwrap();
        let mut input = std::io::Cursor::new("\nsecret\n");
        assert_eq!(
            ask(&t, &mut input).unwrap(),
            Some(("administrator".into(), "secret".into()))
        );
        let t = Target::of("esx://alice@h/").unwrap();
        let mut input = std::io::Cursor::new("p w\r\n");
        assert_eq!(
            ask(&t, &mut input).unwrap(),
            Some(("alice".into(), "p w".into()))
        );
        let mut input = std::io::Cursor::new("");
        assert_eq!(ask(&t, &mut input).unwrap(), None);
    }

    #[test]
    fn the_auth_file_is_libvirts_format_and_the_uri_names_it() {
        let t = Target::of("esx://h:8443/").unwrap();
        let c = auth_conf(&t, "u", "p");
        assert!(c.contains("[auth-esx-h]\ncredentials=rvirt-prompt"), "{c}");
        assert!(c.contains("username=u\npassword=p"), "{c}");
        let u = with_authfile(
            "esx://h:8443/?no_verify=1&authfile=/old",
            "/run/x/auth.conf",
        );
        assert_eq!(
            u,
            "esx://h:8443/?no_verify=1&authfile=%2Frun%2Fx%2Fauth.conf"
        );
    }
}

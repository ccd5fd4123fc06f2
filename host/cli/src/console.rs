//! `rvirt console NAME`: attach the terminal to the domain's serial console, the pty the
//! live XML shows (`<console type='pty'><source path=...>`). Raw terminal mode; `^]`
//! detaches.

use anyhow::{Context, Result, bail};
use rustix::{
    event::{PollFd, PollFlags, poll},
    fs::{Mode, OFlags, open},
    termios::{OptionalActions, Termios, isatty, tcgetattr, tcsetattr},
};
use std::{
    io::{Read, Write},
    os::fd::{AsFd, OwnedFd},
};

/// The escape byte: Ctrl + ].
const ESCAPE: u8 = 0x1d;

/// The pty path of the console (or first serial port) in a live domain XML.
pub fn console_pty(xml: &str) -> Option<String> {
    let root = rvirt_xml::Element::parse(xml).ok()?;
    let devs = root.child("devices")?;
    devs.children_named("console")
        .chain(devs.children_named("serial"))
        .filter(|e| e.attr("type") == Some("pty"))
        .find_map(|e| {
            e.child("source")
                .and_then(|s| s.attr("path"))
                .or_else(|| e.attr("tty"))
                .map(str::to_string)
        })
}

/// Restores the terminal mode when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !isatty(stdin.as_fd()) {
            return Ok(None);
        }
        let saved = tcgetattr(stdin.as_fd()).context("cannot read the terminal mode")?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)
            .context("cannot put the terminal in raw mode")?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// Runs the console session for `domain` (name as given) with the live XML `xml`.
pub fn run(domain: &str, xml: &str) -> Result<()> {
    let Some(path) = console_pty(xml) else {
        bail!("domain '{domain}' has no pty console (is it running, with <console type='pty'>?)");
    };
    let pty: OwnedFd = open(
        path.as_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open the console '{path}' of domain '{domain}'"))?;
    let mut pty_file = std::fs::File::from(pty);
    println!("Connected to domain '{domain}'\r\nEscape character is ^] (Ctrl + ])\r");
    let _raw = RawMode::enter()?;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 4096];
    loop {
        let (stdin_ready, pty_ready) = {
            let mut fds = [
                PollFd::new(&stdin, PollFlags::IN),
                PollFd::new(&pty_file, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e).context("poll failed"),
            }
            (fds[0].revents(), fds[1].revents())
        };
        if !pty_ready.is_empty() {
            let n = pty_file.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            stdout.write_all(&buf[..n])?;
            stdout.flush()?;
        }
        if !stdin_ready.is_empty() {
            let n = stdin.lock().read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            if let Some(i) = buf[..n].iter().position(|b| *b == ESCAPE) {
                pty_file.write_all(&buf[..i])?;
                break;
            }
            pty_file.write_all(&buf[..n])?;
        }
    }
    drop(_raw);
    println!();
    Ok(())
}

/// Runs the console session `session` opened through the daemon: what the domain prints
/// goes to stdout (from a reader thread), what is typed goes to the session.
pub fn run_remote(domain: &str, mut session: rvirt_host::remote::RemoteConsole) -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    println!("Connected to domain '{domain}'\r\nEscape character is ^] (Ctrl + ])\r");
    let _raw = RawMode::enter()?;
    let writer = session.writer();
    let done = Arc::new(AtomicBool::new(false));
    let reader_done = Arc::clone(&done);
    let reader = std::thread::spawn(move || {
        let mut stdout = std::io::stdout();
        let r = loop {
            match session.recv() {
                Ok(Some(d)) => {
                    let _ = stdout.write_all(&d);
                    let _ = stdout.flush();
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        reader_done.store(true, Ordering::SeqCst);
        r
    });
    let stdin = std::io::stdin();
    let mut buf = [0u8; 4096];
    let mut stdin_open = true;
    while !done.load(Ordering::SeqCst) {
        if !stdin_open {
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        let ready = {
            let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
            let tick = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            match poll(&mut fds, Some(&tick)) {
                Ok(n) => n > 0,
                Err(rustix::io::Errno::INTR) => false,
                Err(e) => return Err(e).context("poll failed"),
            }
        };
        if !ready {
            continue;
        }
        let n = stdin.lock().read(&mut buf).unwrap_or(0);
        if n == 0 {
            // no more input: keep printing until the session ends
            stdin_open = false;
            continue;
        }
        if let Some(i) = buf[..n].iter().position(|b| *b == ESCAPE) {
            writer.send(&buf[..i])?;
            writer.finish()?;
            break;
        }
        writer.send(&buf[..n])?;
    }
    let r = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the console reader panicked"))?;
    drop(_raw);
    println!();
    r.with_context(|| format!("the console session of domain '{domain}' ended"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_console_pty() {
        let xml = "<domain type='qemu'><name>a</name><devices><serial type='pty'><source path='/dev/pts/3'/></serial>\
                   <console type='pty' tty='/dev/pts/3'><source path='/dev/pts/3'/><target type='serial' port='0'/></console></devices></domain>";
        assert_eq!(console_pty(xml).as_deref(), Some("/dev/pts/3"));
        assert_eq!(
            console_pty("<domain><devices><console type='file'/></devices></domain>"),
            None
        );
    }
}

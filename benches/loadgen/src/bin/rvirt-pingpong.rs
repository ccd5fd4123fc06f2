//! The floor under a process-isolated call on this machine: two processes exchange a
//! 100-byte request and a 100-byte reply over a unix socket pair with blocking reads and
//! writes, as the daemon and a plugin host process do for one quick call.
//!
//! usage: rvirt-pingpong [ROUNDS]   (run it under `taskset -c 0` for the same-CPU case;
//! `PINGPONG_SERVER_CPU=1 taskset -c 0 rvirt-pingpong` puts the two ends on different CPUs)
//! Prints one JSON line: the median and the best of 5 runs' mean round trip, in µs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

const SIZE: usize = 100;

fn serve(mut s: UnixStream) {
    let mut buf = [0u8; SIZE];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            break;
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        // the far end: fd 3 is the socket the parent handed over
        use std::os::fd::FromRawFd;
        // SAFETY: the parent passes its end of the pair as fd 3 and nothing else owns it
        let s = unsafe { UnixStream::from_raw_fd(3) };
        serve(s);
        return Ok(());
    }
    let rounds: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(20000);
    let (mut mine, theirs) = UnixStream::pair()?;
    let child = {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = theirs.as_raw_fd();
        // PINGPONG_SERVER_CPU=N: the far end runs on CPU N (taskset), for the cross-CPU case
        let mut cmd = match std::env::var("PINGPONG_SERVER_CPU") {
            Ok(cpu) => {
                let mut c = std::process::Command::new("taskset");
                c.args(["-c", &cpu]).arg(std::env::current_exe()?);
                c
            }
            Err(_) => std::process::Command::new(std::env::current_exe()?),
        };
        cmd.arg("--serve");
        // SAFETY: dup2 is async-signal-safe; it only moves the inherited socket to fd 3
        unsafe {
            cmd.pre_exec(move || {
                if libc_dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn()?
    };
    drop(theirs);
    let req = [7u8; SIZE];
    let mut rep = [0u8; SIZE];
    let mut means = Vec::new();
    for _ in 0..5 {
        // warm up, then time
        for _ in 0..rounds / 10 {
            mine.write_all(&req)?;
            mine.read_exact(&mut rep)?;
        }
        let t = Instant::now();
        for _ in 0..rounds {
            mine.write_all(&req)?;
            mine.read_exact(&mut rep)?;
        }
        means.push(t.elapsed().as_secs_f64() * 1e6 / rounds as f64);
    }
    drop(mine);
    let mut child = child;
    let _ = child.wait();
    means.sort_by(f64::total_cmp);
    println!(
        "{{\"rounds\": {rounds}, \"runs\": 5, \"round_trip_us_median\": {:.1}, \"round_trip_us_best\": {:.1}}}",
        means[2], means[0]
    );
    Ok(())
}

unsafe extern "C" {
    #[link_name = "dup2"]
    fn libc_dup2(old: i32, new: i32) -> i32;
}

//! `rvirt-lxc-controller SPEC.json`: runs one container for the lxc driver plugin and
//! stays with it until its init exits (see `rvirt_plugin_lxc::controller`).

use std::io::Write;

fn main() -> anyhow::Result<()> {
    // A session of its own, away from the driver's: the driver spawns it without a
    // pre-exec hook, so the spawn is a vfork-style posix_spawn, not a fork of the daemon.
    // SAFETY: setsid(2) takes no arguments.
    unsafe { libc::setsid() };
    let spec = std::env::args_os()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: rvirt-lxc-controller SPEC.json"))?;
    let mut out = std::io::stdout();
    if let Err(e) = rvirt_plugin_lxc::controller::run(std::path::Path::new(&spec), &mut out) {
        let msg = rvirt_sdk::util::error_chain(&e);
        let _ = writeln!(out, "error {}", msg.replace('\n', " "));
        let _ = out.flush();
        eprintln!("rvirt-lxc-controller: {msg}");
        std::process::exit(1);
    }
    Ok(())
}

//! How a driver vouches for a domain's console ptys.
//!
//! rvirtd serves `virsh console` itself (`DOMAIN_OPEN_CONSOLE`): it opens the
//! `/dev/pts/N` that the live domain XML names. The XML alone proves nothing (a driver may
//! echo what a client wrote, as the `test` driver does), so the daemon opens a pty only
//! when the pty's master is held by a process, in the daemon's mount namespace, whose
//! environment carries [`OWNER_ENV`]`=`[`owner_tag`]`(driver, uuid)`: the process the
//! driver started for that domain (QEMU, the LXC controller). A driver that starts such
//! a process sets the variable with [`tag_command`]; a driver that starts none gets
//! `VIR_ERR_NO_SUPPORT` for consoles.

use std::process::Command;

/// The environment variable naming the domain a process serves: `DRIVER/UUID`.
pub const OWNER_ENV: &str = "RVIRT_DOMAIN";

/// The value of [`OWNER_ENV`] for domain `uuid` of driver `driver` (the plugin's manifest
/// name, which is what rvirtd calls the driver).
pub fn owner_tag(driver: &str, uuid: &uuid::Uuid) -> String {
    format!("{driver}/{}", uuid.hyphenated())
}

/// Marks `cmd` as the process serving domain `uuid` of driver `driver`.
pub fn tag_command(cmd: &mut Command, driver: &str, uuid: &uuid::Uuid) {
    cmd.env(OWNER_ENV, owner_tag(driver, uuid));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_names_driver_and_uuid() {
        let u = uuid::Uuid::parse_str("c7a5fdbd-edaf-9455-926a-d65c16db1809").unwrap();
        assert_eq!(
            owner_tag("qemu", &u),
            "qemu/c7a5fdbd-edaf-9455-926a-d65c16db1809"
        );
        let mut cmd = Command::new("true");
        tag_command(&mut cmd, "lxc", &u);
        let envs: Vec<_> = cmd.get_envs().collect();
        assert_eq!(envs.len(), 1);
        assert_eq!(envs[0].0, OWNER_ENV);
        assert_eq!(
            envs[0].1.unwrap(),
            "lxc/c7a5fdbd-edaf-9455-926a-d65c16db1809"
        );
    }
}

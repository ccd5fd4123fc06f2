//! Bandwidth limits on a host device with `tc` (iproute2), as libvirt applies a guest
//! interface's `<bandwidth>` to its TAP: inbound (to the guest, the TAP's egress) is an
//! HTB class, outbound (from the guest, the TAP's ingress) a policing filter that drops
//! what exceeds the rate (the kernel's `act_police`; without it outbound limits are
//! refused with that reason). libvirt adds an SFQ leaf under the class; not every kernel
//! has SFQ (this project's CI kernel has not), so the class keeps the default FIFO leaf. Rates are libvirt's kilobytes per second,
//! which is tc's `kbps`; bursts are kilobytes (`kb`).
//!
//! [`apply`] first removes the device's root and ingress qdiscs (one `tc -force -batch`
//! run whose "nothing to delete" answers are expected), then, unless the limits are empty,
//! loads the new ones in a second batch that must succeed entirely.

use rvirt_xml::bandwidth::Bandwidth;
use std::io::Write;
use std::process::{Command, Stdio};

/// What went wrong applying limits; messages name the device.
#[derive(Debug, thiserror::Error)]
pub enum BandwidthError {
    #[error("cannot run tc (package iproute2) for device '{dev}'")]
    Spawn {
        dev: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tc refused the bandwidth limits of device '{dev}': {detail}")]
    Refused { dev: String, detail: String },
    #[error(
        "device '{dev}': outbound limits need the kernel's police action (act_police, CONFIG_NET_ACT_POLICE), which this kernel lacks"
    )]
    NoPolice { dev: String },
    #[error(
        "device '{dev}': inbound floor needs the network's own inbound QoS (a floor is guaranteed against the network's total), which is not provided here"
    )]
    Floor { dev: String },
}

/// The `tc` batch that loads `bw` on `dev` (after its qdiscs were removed).
pub fn batch(dev: &str, bw: &Bandwidth) -> String {
    let mut b = String::new();
    let i = &bw.inbound;
    if i.average != 0 {
        b += &format!("qdisc add dev {dev} root handle 1: htb default 1\n");
        let mut class = format!(
            "class add dev {dev} parent 1: classid 1:1 htb rate {}kbps",
            i.average
        );
        if i.peak != 0 {
            class += &format!(" ceil {}kbps", i.peak);
        }
        if i.burst != 0 {
            class += &format!(" burst {}kb", i.burst);
        }
        b += &class;
        b += "\n";
    }
    let o = &bw.outbound;
    if o.average != 0 {
        let burst = if o.burst != 0 { o.burst } else { o.average };
        b += &format!("qdisc add dev {dev} ingress\n");
        b += &format!(
            "filter add dev {dev} parent ffff: protocol all u32 match u32 0 0 police rate {}kbps burst {burst}kb mtu 64kb drop flowid :1\n",
            o.average
        );
    }
    b
}

fn run_tc(dev: &str, force: bool, input: &str) -> Result<(bool, String), BandwidthError> {
    let mut cmd = Command::new("tc");
    if force {
        cmd.arg("-force");
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BandwidthError::Spawn {
            dev: dev.to_string(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // a tc that exits early closes the pipe; its status tells what happened
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| BandwidthError::Spawn {
            dev: dev.to_string(),
            source,
        })?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

/// Makes `dev`'s limits those of `bw` (no limits when it is empty). When the new limits
/// cannot be loaded the device is left with none; the caller restores the old ones.
pub fn apply(dev: &str, bw: &Bandwidth) -> Result<(), BandwidthError> {
    if bw.inbound.floor != 0 {
        return Err(BandwidthError::Floor {
            dev: dev.to_string(),
        });
    }
    // a device without such qdiscs answers "no such file": expected, ignored
    run_tc(
        dev,
        true,
        &format!("qdisc del dev {dev} root\nqdisc del dev {dev} ingress\n"),
    )?;
    let load = batch(dev, bw);
    if load.is_empty() {
        return Ok(());
    }
    match run_tc(dev, false, &load)? {
        (true, _) => Ok(()),
        (false, detail) => {
            let _ = run_tc(
                dev,
                true,
                &format!("qdisc del dev {dev} root\nqdisc del dev {dev} ingress\n"),
            );
            if detail.contains("Failed to load TC action module") {
                return Err(BandwidthError::NoPolice {
                    dev: dev.to_string(),
                });
            }
            Err(BandwidthError::Refused {
                dev: dev.to_string(),
                detail,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvirt_xml::bandwidth::Rate;

    #[test]
    fn batches() {
        let bw = Bandwidth {
            inbound: Rate {
                average: 1000,
                peak: 2000,
                burst: 512,
                floor: 0,
            },
            outbound: Rate {
                average: 128,
                ..Rate::default()
            },
        };
        assert_eq!(
            batch("vnet3", &bw),
            "qdisc add dev vnet3 root handle 1: htb default 1\n\
             class add dev vnet3 parent 1: classid 1:1 htb rate 1000kbps ceil 2000kbps burst 512kb\n\
             qdisc add dev vnet3 ingress\n\
             filter add dev vnet3 parent ffff: protocol all u32 match u32 0 0 police rate 128kbps burst 128kb mtu 64kb drop flowid :1\n"
        );
        assert_eq!(batch("vnet3", &Bandwidth::default()), "");
    }

    #[test]
    fn a_floor_is_refused_naming_the_device() {
        let mut bw = Bandwidth::default();
        bw.inbound.floor = 10;
        bw.inbound.average = 10;
        let e = apply("vnet9", &bw).unwrap_err().to_string();
        assert!(e.contains("device 'vnet9'") && e.contains("floor"), "{e}");
    }
}

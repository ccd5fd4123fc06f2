//! `prlctl`, Virtuozzo's command-line tool, as this driver runs it: the command lines of
//! every lifecycle call, and the parser of `prlctl list -j -a -i -H --vmtype all`, the
//! JSON description of every virtual environment (VMs and containers).
//!
//! The field names and forms are those of Virtuozzo 7's `prlctl list -i -j`: an array of
//! objects with `ID` (the UUID in braces), `EnvID`, `Name`, `Description`, `Type` (`VM` or
//! `CT`), `State`, `Home`, `Autostart`, `Hardware` (`cpu.cpus`, `memory.size` as `NMb`,
//! `hddN`, `netN`) and `Remote display`.

use rvirt_sdk::abi::state;
use serde_json::Value;

/// A VM or a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Type: VM`, domain XML `<os><type>hvm</type>`.
    Vm,
    /// `Type: CT`, domain XML `<os><type>exe</type>`.
    Ct,
}

impl Kind {
    /// `prlctl create --vmtype` value.
    pub fn vmtype(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Ct => "ct",
        }
    }

    /// The domain XML `<os><type>`.
    pub fn os_type(self) -> &'static str {
        match self {
            Kind::Vm => "hvm",
            Kind::Ct => "exe",
        }
    }
}

/// A disk as `prlctl` lists it (`hddN`, `cdromN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// `hdd0`, `cdrom0`.
    pub key: String,
    /// The image file, or the host device (`real`).
    pub source: String,
    /// Whether the source is a host block device.
    pub block: bool,
    /// `sata`, `ide`, `scsi`, `virtio` (from `port: sata:0`), if given.
    pub bus: Option<String>,
}

/// A network adapter as `prlctl` lists it (`netN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    /// `net0`.
    pub key: String,
    /// `aa:bb:cc:dd:ee:ff`, from `prlctl`'s `AABBCCDDEEFF`.
    pub mac: Option<String>,
    /// A virtual network's name (`network`), or a bridge (`type: bridged`, `iface`).
    pub network: Option<String>,
    /// The host bridge of a bridged adapter.
    pub bridge: Option<String>,
}

/// `Remote display` (VNC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vnc {
    /// `auto` picks a port, `manual` uses `port`.
    pub autoport: bool,
    /// The port (0 when none).
    pub port: u32,
    /// The listen address.
    pub address: Option<String>,
}

/// One virtual environment as `prlctl list -i -j` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Env {
    /// `ID` as `prlctl` prints it (`{uuid}`), the handle every command gets.
    pub id: String,
    /// The UUID.
    pub uuid: uuid::Uuid,
    /// `EnvID`: the domain id while it runs.
    pub env_id: i32,
    pub name: String,
    pub description: String,
    pub kind: Kind,
    /// `State`: `running`, `stopped`, `paused`, `suspended`...
    pub state: String,
    pub autostart: bool,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disks: Vec<Disk>,
    pub nets: Vec<Net>,
    pub vnc: Option<Vnc>,
}

/// A listing `prlctl` printed that this driver cannot read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("prlctl printed invalid JSON")]
    Json(#[source] serde_json::Error),
    #[error("prlctl's listing is not a JSON array")]
    NotArray,
    #[error("prlctl's listing entry {index}: field '{field}' {why}")]
    Field {
        index: usize,
        field: String,
        why: &'static str,
    },
}

fn field<'a>(v: &'a Value, index: usize, name: &str) -> Result<&'a Value, ParseError> {
    v.get(name).ok_or_else(|| ParseError::Field {
        index,
        field: name.to_string(),
        why: "is missing",
    })
}

fn string(v: &Value, index: usize, name: &str) -> Result<String, ParseError> {
    field(v, index, name)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ParseError::Field {
            index,
            field: name.to_string(),
            why: "is not a string",
        })
}

/// A number `prlctl` prints as a JSON number or as a string.
fn number(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// `1024Mb` -> 1024.
fn megabytes(s: &str) -> Option<u64> {
    s.strip_suffix("Mb")
        .or_else(|| s.strip_suffix("MB"))
        .and_then(|n| n.parse().ok())
}

/// `001C42A1B2C3` -> `00:1c:42:a1:b2:c3`.
pub fn mac_from_prl(s: &str) -> Option<String> {
    let s: String = s.chars().filter(|c| *c != ':').collect();
    if s.len() != 12 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    Some(
        (0..6)
            .map(|i| &lower[2 * i..2 * i + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// `00:1c:42:a1:b2:c3` -> `001C42A1B2C3`, as `prlctl set --mac` takes it.
pub fn mac_to_prl(mac: &str) -> Option<String> {
    let hex: String = mac.chars().filter(|c| *c != ':' && *c != '-').collect();
    (hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_uppercase())
}

/// Parses the output of `prlctl list -j -a -i -H --vmtype all`.
pub fn parse_list(text: &str) -> Result<Vec<Env>, ParseError> {
    let v: Value = serde_json::from_str(text).map_err(ParseError::Json)?;
    let items = v.as_array().ok_or(ParseError::NotArray)?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_env(item, i))
        .collect()
}

fn parse_env(v: &Value, i: usize) -> Result<Env, ParseError> {
    let id = string(v, i, "ID")?;
    let uuid =
        uuid::Uuid::parse_str(id.trim_start_matches('{').trim_end_matches('}')).map_err(|_| {
            ParseError::Field {
                index: i,
                field: "ID".into(),
                why: "is not a UUID",
            }
        })?;
    let kind = match string(v, i, "Type")?.as_str() {
        "VM" => Kind::Vm,
        "CT" => Kind::Ct,
        _ => {
            return Err(ParseError::Field {
                index: i,
                field: "Type".into(),
                why: "is neither VM nor CT",
            });
        }
    };
    let hw = field(v, i, "Hardware")?;
    let cpus = hw
        .get("cpu")
        .and_then(|c| c.get("cpus"))
        .and_then(number)
        .ok_or(ParseError::Field {
            index: i,
            field: "Hardware.cpu.cpus".into(),
            why: "is missing or not a number",
        })? as u32;
    let memory_mib = hw
        .get("memory")
        .and_then(|m| m.get("size"))
        .and_then(Value::as_str)
        .and_then(megabytes)
        .ok_or(ParseError::Field {
            index: i,
            field: "Hardware.memory.size".into(),
            why: "is missing or not a size in Mb",
        })?;
    let mut disks = Vec::new();
    let mut nets = Vec::new();
    if let Some(obj) = hw.as_object() {
        for (key, dev) in obj {
            if dev.get("enabled").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            if key.starts_with("hdd") || key.starts_with("cdrom") {
                let (source, block) = match (
                    dev.get("image").and_then(Value::as_str),
                    dev.get("real").and_then(Value::as_str),
                ) {
                    (Some(img), _) => (img.to_string(), false),
                    (None, Some(real)) => (real.to_string(), true),
                    (None, None) => continue,
                };
                let bus = dev
                    .get("port")
                    .and_then(Value::as_str)
                    .and_then(|p| p.split(':').next())
                    .map(str::to_string);
                disks.push(Disk {
                    key: key.clone(),
                    source,
                    block,
                    bus,
                });
            } else if key.starts_with("net") && key[3..].chars().all(|c| c.is_ascii_digit()) {
                let bridged = dev.get("type").and_then(Value::as_str) == Some("bridged");
                nets.push(Net {
                    key: key.clone(),
                    mac: dev
                        .get("mac")
                        .and_then(Value::as_str)
                        .and_then(mac_from_prl),
                    network: if bridged {
                        None
                    } else {
                        dev.get("network")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    },
                    bridge: if bridged {
                        dev.get("iface").and_then(Value::as_str).map(str::to_string)
                    } else {
                        None
                    },
                });
            }
        }
    }
    let vnc = v.get("Remote display").and_then(|rd| {
        let mode = rd.get("mode").and_then(Value::as_str)?;
        if mode == "off" {
            return None;
        }
        Some(Vnc {
            autoport: mode == "auto",
            port: rd.get("port").and_then(number).unwrap_or(0) as u32,
            address: rd
                .get("address")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    });
    Ok(Env {
        id,
        uuid,
        env_id: v.get("EnvID").and_then(number).unwrap_or(0) as i32,
        name: string(v, i, "Name")?,
        description: v
            .get("Description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        kind,
        state: string(v, i, "State")?,
        autostart: v.get("Autostart").and_then(Value::as_str) == Some("on"),
        cpus,
        memory_mib,
        disks,
        nets,
        vnc,
    })
}

impl Env {
    /// The libvirt state and reason of a `prlctl` state.
    pub fn state_reason(&self) -> (i32, i32) {
        match self.state.as_str() {
            // VIR_DOMAIN_RUNNING_BOOTED
            "running" => (state::RUNNING, 1),
            "starting" | "restoring" | "resuming" | "continuing" => (state::RUNNING, 0),
            // VIR_DOMAIN_PAUSED_USER
            "paused" | "pausing" => (state::PAUSED, 1),
            // VIR_DOMAIN_SHUTDOWN_USER
            "stopping" => (state::SHUTDOWN, 1),
            // VIR_DOMAIN_SHUTOFF_SAVED
            "suspended" | "suspending" => (state::SHUTOFF, 5),
            // VIR_DOMAIN_SHUTOFF_UNKNOWN
            "stopped" => (state::SHUTOFF, 0),
            _ => (state::NOSTATE, 0),
        }
    }

    /// Whether the domain is active (has an id).
    pub fn active(&self) -> bool {
        !matches!(self.state_reason().0, state::SHUTOFF | state::NOSTATE)
    }

    /// The domain id: `EnvID` while active, -1 otherwise.
    pub fn domain_id(&self) -> i32 {
        if self.active() { self.env_id } else { -1 }
    }
}

/// `prlctl list -j -a -i -H --vmtype all [NAME]`.
pub fn list_args(name: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = ["list", "-j", "-a", "-i", "-H", "--vmtype", "all"]
        .map(String::from)
        .to_vec();
    a.extend(name.map(String::from));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"[{"ID": "{4a1f3b5c-0000-4000-8000-00000000a001}", "EnvID": "1042",
      "Name": "web", "Description": "front", "Type": "VM", "State": "running",
      "Home": "/vz/vmprivate/web.pvm", "Autostart": "on",
      "Hardware": {"cpu": {"cpus": 2, "VT-x": true}, "memory": {"size": "2048Mb"},
        "video": {"size": "32Mb"},
        "hdd0": {"enabled": true, "port": "sata:0", "image": "/vz/web/harddisk.hdd", "type": "expanded"},
        "hdd1": {"enabled": false, "port": "sata:1", "image": "/vz/web/off.hdd"},
        "cdrom0": {"enabled": true, "port": "ide:0", "image": "/iso/x.iso"},
        "net0": {"enabled": true, "dev": "vme4a1f", "network": "Bridged", "mac": "001C42A1B2C3"},
        "net1": {"enabled": true, "type": "bridged", "iface": "br1", "mac": "001C42000001"}},
      "Remote display": {"mode": "manual", "port": 5901, "address": "0.0.0.0"}},
     {"ID": "{4a1f3b5c-0000-4000-8000-00000000a002}", "EnvID": 0, "Name": "ct1",
      "Description": "", "Type": "CT", "State": "stopped", "Autostart": "off",
      "Hardware": {"cpu": {"cpus": "1"}, "memory": {"size": "512Mb"}},
      "Remote display": {"mode": "off"}}]"#;

    #[test]
    fn parses_vms_and_containers() {
        let envs = parse_list(LIST).expect("parses");
        assert_eq!(envs.len(), 2);
        let w = &envs[0];
        assert_eq!(w.id, "{4a1f3b5c-0000-4000-8000-00000000a001}");
        assert_eq!(w.uuid.to_string(), "4a1f3b5c-0000-4000-8000-00000000a001");
        assert_eq!((w.env_id, w.cpus, w.memory_mib), (1042, 2, 2048));
        assert_eq!(w.kind, Kind::Vm);
        assert!(w.autostart);
        assert_eq!(w.state_reason(), (state::RUNNING, 1));
        assert_eq!(w.domain_id(), 1042);
        assert_eq!(
            w.disks,
            vec![
                Disk {
                    key: "cdrom0".into(),
                    source: "/iso/x.iso".into(),
                    block: false,
                    bus: Some("ide".into())
                },
                Disk {
                    key: "hdd0".into(),
                    source: "/vz/web/harddisk.hdd".into(),
                    block: false,
                    bus: Some("sata".into())
                },
            ]
        );
        assert_eq!(w.nets[0].mac.as_deref(), Some("00:1c:42:a1:b2:c3"));
        assert_eq!(w.nets[0].network.as_deref(), Some("Bridged"));
        assert_eq!(w.nets[1].bridge.as_deref(), Some("br1"));
        assert_eq!(
            w.vnc,
            Some(Vnc {
                autoport: false,
                port: 5901,
                address: Some("0.0.0.0".into())
            })
        );
        let c = &envs[1];
        assert_eq!((c.kind, c.cpus, c.memory_mib), (Kind::Ct, 1, 512));
        assert_eq!(c.state_reason(), (state::SHUTOFF, 0));
        assert_eq!(c.domain_id(), -1);
        assert_eq!(c.vnc, None);
    }

    #[test]
    fn bad_listings_name_the_field() {
        let e = parse_list(r#"[{"ID": "x", "Type": "VM"}]"#).expect_err("bad uuid");
        assert_eq!(
            e.to_string(),
            "prlctl's listing entry 0: field 'ID' is not a UUID"
        );
        let e = parse_list(
            r#"[{"ID": "{4a1f3b5c-0000-4000-8000-00000000a001}", "Type": "VM", "Hardware": {"cpu": {"cpus": 1}}}]"#,
        )
        .expect_err("no memory");
        assert!(e.to_string().contains("Hardware.memory.size"), "{e}");
        assert!(matches!(parse_list("{}"), Err(ParseError::NotArray)));
        assert!(matches!(parse_list("nope"), Err(ParseError::Json(_))));
    }

    #[test]
    fn macs_both_ways() {
        assert_eq!(
            mac_to_prl("00:1c:42:a1:b2:c3").as_deref(),
            Some("001C42A1B2C3")
        );
        assert_eq!(
            mac_from_prl("001C42A1B2C3").as_deref(),
            Some("00:1c:42:a1:b2:c3")
        );
        assert_eq!(mac_to_prl("00:1c"), None);
        assert_eq!(
            list_args(Some("web")).join(" "),
            "list -j -a -i -H --vmtype all web"
        );
    }
}

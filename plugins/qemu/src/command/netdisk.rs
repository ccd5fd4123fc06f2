//! Network disk sources (`<disk type='network'>`, and volume disks whose pool is on the
//! network) as QEMU `-blockdev` storage nodes, in libvirt's member order.
//!
//! The source is read once into a protocol-neutral [`NetSource`] (protocol, name, hosts,
//! snapshot, config file, auth); [`storage_node`] turns it into the node of the
//! protocol's QEMU driver. `rbd` is served; another protocol (`iscsi`, `nfs`, `gluster`)
//! adds one arm there. Authentication never puts a key on the command line: the node
//! names a QEMU `secret` object (`key-secret`, `password-secret`) whose value the driver
//! hands QEMU through an inherited descriptor.

use super::{CommandError, Obj, attr};
use rvirt_xml::Element;

/// `<auth username><secret type usage|uuid/></auth>` of a network disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetAuth {
    /// The user (`admin` for cephx's `client.admin`).
    pub username: String,
    /// `ceph` or `iscsi`.
    pub secret_type: String,
    /// The secret's usage id or, failing that, its UUID.
    pub secret: String,
}

impl NetAuth {
    /// The `VIR_SECRET_USAGE_TYPE_*` of the secret (ceph 2, iscsi 3).
    pub fn usage_type(&self) -> i32 {
        match self.secret_type.as_str() {
            "ceph" => 2,
            "iscsi" => 3,
            _ => 0,
        }
    }
}

/// One `<host name port transport>` of a network source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetHost {
    /// The host name or address.
    pub name: String,
    /// The port, as written.
    pub port: Option<String>,
}

/// A network disk's source, whatever its protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSource {
    /// `rbd`, `iscsi`, `nfs`, `gluster`, ...
    pub protocol: String,
    /// `<source name>`: `pool/image` for rbd.
    pub name: String,
    /// The servers, in order.
    pub hosts: Vec<NetHost>,
    /// `<snapshot name>` (rbd).
    pub snapshot: Option<String>,
    /// `<config file>` (rbd: a ceph.conf).
    pub config: Option<String>,
    /// Authentication.
    pub auth: Option<NetAuth>,
    /// `<initiator><iqn name>` (iscsi): the initiator's own name.
    pub initiator: Option<String>,
}

fn invalid(dev: &str, what: String) -> CommandError {
    CommandError::Invalid(format!("disk '{dev}': {what}"))
}

/// Reads `<auth>` from under `<source>` or, in the older placement, under `<disk>`.
pub fn auth_of(dev: &str, disk: &Element) -> Result<Option<NetAuth>, CommandError> {
    let a = disk
        .child("source")
        .and_then(|s| s.child("auth"))
        .or_else(|| disk.child("auth"));
    let Some(a) = a else { return Ok(None) };
    let username = a
        .attr("username")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| invalid(dev, "<auth> needs a 'username'".into()))?;
    let s = a
        .child("secret")
        .ok_or_else(|| invalid(dev, "<auth> needs a <secret>".into()))?;
    let secret_type = s
        .attr("type")
        .or_else(|| a.attr("type"))
        .unwrap_or("ceph")
        .to_string();
    let secret = s
        .attr("usage")
        .or_else(|| s.attr("uuid"))
        .filter(|x| !x.is_empty())
        .ok_or_else(|| invalid(dev, "<auth><secret> needs a 'usage' or 'uuid'".into()))?;
    Ok(Some(NetAuth {
        username: username.to_string(),
        secret_type,
        secret: secret.to_string(),
    }))
}

impl NetSource {
    /// Reads the `<source>` of a `<disk type='network'>`.
    pub fn from_disk(dev: &str, disk: &Element) -> Result<NetSource, CommandError> {
        let src = disk
            .child("source")
            .ok_or_else(|| invalid(dev, "a network disk needs a <source>".into()))?;
        let protocol = src
            .attr("protocol")
            .ok_or_else(|| invalid(dev, "<source> needs a 'protocol'".into()))?
            .to_string();
        let name = src.attr("name").unwrap_or("").to_string();
        let hosts = src
            .children_named("host")
            .map(|h| {
                Ok(NetHost {
                    name: h
                        .attr("name")
                        .ok_or_else(|| invalid(dev, "<source><host> needs a 'name'".into()))?
                        .to_string(),
                    port: h.attr("port").map(str::to_string),
                })
            })
            .collect::<Result<Vec<_>, CommandError>>()?;
        Ok(NetSource {
            protocol,
            name,
            hosts,
            snapshot: attr(src, &["snapshot"], "name").map(str::to_string),
            config: attr(src, &["config"], "file").map(str::to_string),
            auth: auth_of(dev, disk)?,
            initiator: attr(src, &["initiator", "iqn"], "name").map(str::to_string),
        })
    }
}

impl NetSource {
    /// The source of a `<disk type='volume'>` whose volume is on a network pool: the
    /// pool's definition (`pool_xml`, from the host's `storage_pool_xml`) gives the
    /// servers and the auth, the volume's path the name (`cephpool/image` for rbd).
    pub fn from_pool_volume(
        dev: &str,
        pool_type: &str,
        pool_xml: &str,
        path: &str,
    ) -> Result<NetSource, CommandError> {
        let protocol = match pool_type {
            "rbd" => "rbd",
            "iscsi-direct" => "iscsi",
            other => {
                return Err(CommandError::Unsupported(format!(
                    "disk '{dev}': volumes of '{other}' pools are not supported as network disks (rbd, iscsi-direct)"
                )));
            }
        };
        let pool = Element::parse(pool_xml).map_err(|e| {
            invalid(
                dev,
                format!("the definition of the volume's pool does not parse: {e}"),
            )
        })?;
        let src = pool.child("source");
        let hosts = src
            .into_iter()
            .flat_map(|s| s.children_named("host"))
            .filter_map(|h| {
                Some(NetHost {
                    name: h.attr("name")?.to_string(),
                    port: h.attr("port").map(str::to_string),
                })
            })
            .collect();
        let auth = match src.and_then(|s| s.child("auth")) {
            None => None,
            Some(a) => {
                let s = a.child("secret");
                let secret = s
                    .and_then(|s| s.attr("usage").or_else(|| s.attr("uuid")))
                    .ok_or_else(|| {
                        invalid(dev, "the volume's pool names no secret in <auth>".into())
                    })?;
                Some(NetAuth {
                    username: a.attr("username").unwrap_or("admin").to_string(),
                    // a pool's <auth type='chap'> is an iscsi secret
                    secret_type: match a.attr("type") {
                        Some("chap") => "iscsi".to_string(),
                        Some(t) => t.to_string(),
                        None => "ceph".to_string(),
                    },
                    secret: secret.to_string(),
                })
            }
        };
        // an iscsi-direct volume's path is `ip-HOST:PORT-iscsi-IQN-lun-N`: the target is
        // the pool's <device path>, the LUN the path's last number
        let name = if protocol == "iscsi" {
            let iqn = src
                .and_then(|s| s.child("device"))
                .and_then(|d| d.attr("path"))
                .ok_or_else(|| {
                    invalid(
                        dev,
                        "the volume's pool names no target <device path>".into(),
                    )
                })?;
            let lun = path
                .rsplit_once("-lun-")
                .map(|(_, n)| n)
                .filter(|n| n.parse::<u32>().is_ok())
                .ok_or_else(|| {
                    invalid(
                        dev,
                        format!("iscsi-direct volume path '{path}' names no LUN"),
                    )
                })?;
            format!("{iqn}/{lun}")
        } else {
            path.to_string()
        };
        Ok(NetSource {
            protocol: protocol.to_string(),
            name,
            hosts,
            snapshot: None,
            config: None,
            auth,
            initiator: src
                .and_then(|s| s.child("initiator"))
                .and_then(|i| i.child("iqn"))
                .and_then(|q| q.attr("name"))
                .map(str::to_string),
        })
    }
}

/// The default port of a protocol's servers (QEMU's `server` entries need one).
fn default_port(protocol: &str) -> &'static str {
    match protocol {
        "rbd" => "6789",
        "iscsi" => "3260",
        "gluster" => "24007",
        _ => "0",
    }
}

/// The protocol's storage node, without `node-name` and `read-only` (the caller adds
/// them): `secret_id` names the `secret` object holding the auth's key.
pub(super) fn storage_node(
    dev: &str,
    src: &NetSource,
    secret_id: Option<&str>,
) -> Result<Obj, CommandError> {
    match src.protocol.as_str() {
        "rbd" => rbd(dev, src, secret_id),
        "iscsi" => iscsi(dev, src, secret_id),
        other => Err(CommandError::Unsupported(format!(
            "disk '{dev}': network disk protocol '{other}' is not supported (rbd, iscsi)"
        ))),
    }
}

/// QEMU's userspace initiator (libiscsi): `name` is `IQN/LUN` (LUN 0 when absent), one
/// host (`portal`), CHAP through a `password-secret`.
fn iscsi(dev: &str, src: &NetSource, secret_id: Option<&str>) -> Result<Obj, CommandError> {
    let [host] = src.hosts.as_slice() else {
        return Err(invalid(
            dev,
            format!(
                "an iscsi source needs exactly one <host> ({} given)",
                src.hosts.len()
            ),
        ));
    };
    let (target, lun) = match src.name.rsplit_once('/') {
        Some((t, l)) => (
            t,
            l.parse::<u32>().map_err(|_| {
                invalid(
                    dev,
                    format!(
                        "iscsi source name '{}': LUN '{l}' is not a number",
                        src.name
                    ),
                )
            })?,
        ),
        None => (src.name.as_str(), 0),
    };
    if target.is_empty() {
        return Err(invalid(dev, "an iscsi source needs a target name".into()));
    }
    let port = host
        .port
        .clone()
        .unwrap_or_else(|| default_port("iscsi").to_string());
    let mut o = obj! {
        "driver": "iscsi",
        "portal": format!("{}:{port}", host.name),
        "target": target,
        "lun": lun,
        "transport": "tcp",
    };
    if let (Some(a), Some(id)) = (&src.auth, secret_id) {
        o["user"] = serde_json::json!(a.username);
        o["password-secret"] = serde_json::json!(id);
    }
    if let Some(i) = &src.initiator {
        o["initiator-name"] = serde_json::json!(i);
    }
    Ok(o)
}

fn rbd(dev: &str, src: &NetSource, secret_id: Option<&str>) -> Result<Obj, CommandError> {
    let (pool, image) = src
        .name
        .split_once('/')
        .filter(|(p, i)| !p.is_empty() && !i.is_empty())
        .ok_or_else(|| {
            invalid(
                dev,
                format!("rbd source name '{}' is not 'pool/image'", src.name),
            )
        })?;
    let mut o = obj! {"driver": "rbd", "pool": pool, "image": image};
    if let Some(s) = &src.snapshot {
        o["snapshot"] = serde_json::json!(s);
    }
    if let Some(c) = &src.config {
        o["conf"] = serde_json::json!(c);
    }
    if !src.hosts.is_empty() {
        let servers: Vec<serde_json::Value> = src
            .hosts
            .iter()
            .map(|h| {
                serde_json::json!({
                    "host": h.name,
                    "port": h.port.clone().unwrap_or_else(|| default_port("rbd").to_string()),
                })
            })
            .collect();
        o["server"] = serde_json::Value::Array(servers);
    }
    if let (Some(a), Some(id)) = (&src.auth, secret_id) {
        o["user"] = serde_json::json!(a.username);
        o["auth-client-required"] = serde_json::json!(["cephx", "none"]);
        o["key-secret"] = serde_json::json!(id);
    }
    Ok(o)
}

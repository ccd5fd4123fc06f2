//! The `iscsi-direct` storage pool backend: the LUNs of one iSCSI target, reached with
//! libiscsi's userspace initiator (no kernel session, no `/dev/sd*`), as libvirt's
//! `iscsi-direct` pool type.
//!
//! - the pool names the portal (`<source><host name port>`, port 3260 by default), the
//!   target (`<source><device path='IQN'>`), the initiator (`<initiator><iqn name>`) and,
//!   optionally, CHAP (`<auth type='chap' username><secret usage|uuid/></auth>`, whose
//!   value the host's secret driver answers, `VIR_SECRET_USAGE_TYPE_ISCSI`);
//! - **start** logs in once to check the target is reachable; **refresh** logs in, lists
//!   the LUNs (REPORT LUNS) and sizes each disk (INQUIRY: direct access; READ CAPACITY 16:
//!   blocks times block size, where libvirt 9.0 counts one block less); a LUN that is no
//!   disk (a target's controller) is listed with no size, as libvirt lists it;
//! - a volume is a LUN, as libvirt names it: name `unit:0:0:N`, key and target path
//!   `ip-HOST:PORT-iscsi-IQN-lun-N`, type `network`; a `<disk type='volume'>` on it is an
//!   iSCSI network disk whose source is `IQN/N` on the pool's host and port;
//! - volumes cannot be created, deleted or resized (libvirt's `iscsi-direct` cannot
//!   either): those answer no-support naming the operation and the backend;
//! - upload and download move whole blocks with READ(16)/WRITE(16); wipe writes zeros
//!   (the only algorithm).

pub mod ffi;
pub mod plugin;

use ffi::{IscsiError, Login, Session};
use rvirt_xml::StoragePool;

/// The pool type served.
pub const POOL_TYPE: &str = "iscsi-direct";

/// The iSCSI port when the pool names none.
pub const DEFAULT_PORT: u16 = 3260;

/// The prefix of a volume's name; the LUN follows.
pub const VOL_NAME_PREFIX: &str = "unit:0:0:";

/// `VIR_SECRET_USAGE_TYPE_ISCSI`.
pub const SECRET_USAGE_ISCSI: i32 = 3;

/// Seconds a libiscsi call may take.
pub const TIMEOUT_SECS: i32 = 10;

/// libvirt's error numbers this backend answers.
pub mod code {
    /// VIR_ERR_INTERNAL_ERROR
    pub const INTERNAL_ERROR: i32 = 1;
    /// VIR_ERR_INVALID_ARG
    pub const INVALID_ARG: i32 = 8;
    /// VIR_ERR_XML_ERROR
    pub const XML_ERROR: i32 = 27;
    /// VIR_ERR_NO_STORAGE_VOL
    pub const NO_STORAGE_VOL: i32 = 50;
}

/// Every failure of the backend; [`Error::code`] is libvirt's number.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A definition field is unusable.
    #[error("{object}: {field}: {reason}")]
    InvalidArg {
        /// `pool 'NAME'`.
        object: String,
        /// The field, as an XML path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The document does not parse.
    #[error("{what}: {source}")]
    Xml {
        /// `pool` or `volume`.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: rvirt_xml::XmlError,
    },
    /// No such LUN.
    #[error("{0}")]
    NoVolume(String),
    /// The CHAP secret could not be read.
    #[error("{object}: cannot read the CHAP secret ({secret}) of user '{user}': {reason}")]
    Secret {
        /// `pool 'NAME'`.
        object: String,
        /// `usage 'X'` or `uuid 'U'`.
        secret: String,
        /// The CHAP user.
        user: String,
        /// The secret driver's answer.
        reason: String,
        /// The secret driver's error number.
        code: i32,
    },
    /// libiscsi failed.
    #[error("{object}: {action}")]
    Iscsi {
        /// `pool 'NAME'`.
        object: String,
        /// What was attempted (`log in to 'IQN' at 'PORTAL'`).
        action: String,
        /// libiscsi's error.
        #[source]
        source: IscsiError,
    },
}

impl Error {
    /// libvirt's `virErrorNumber`.
    pub fn code(&self) -> i32 {
        match self {
            Error::InvalidArg { .. } => code::INVALID_ARG,
            Error::Xml { .. } => code::XML_ERROR,
            Error::NoVolume(_) => code::NO_STORAGE_VOL,
            Error::Secret { code, .. } => *code,
            Error::Iscsi { .. } => code::INTERNAL_ERROR,
        }
    }

    /// The message with its causes, `: `-separated.
    pub fn full_message(&self) -> String {
        rvirt_sdk::util::error_chain(self)
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Parses a pool document.
pub fn parse_pool(xml: &str) -> Result<StoragePool> {
    StoragePool::parse(xml).map_err(|source| Error::Xml {
        what: "pool",
        source,
    })
}

/// How the backend reads a secret: by usage type and usage id (or UUID), answering the
/// value or the secret driver's error number and message.
pub type SecretLookup<'a> = dyn Fn(i32, &str) -> std::result::Result<Vec<u8>, (i32, String)> + 'a;

/// A pool's `<auth type='chap'>`: the user and how its secret is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chap {
    /// `username`.
    pub user: String,
    /// `<secret usage>` or, without it, `<secret uuid>` (the host looks up either).
    pub secret_id: String,
    /// `usage 'X'` or `uuid 'U'`, for messages.
    pub secret_desc: String,
}

/// What a pool names: the portal, the target, the initiator, CHAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `pool 'NAME'`.
    pub object: String,
    /// The host.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The target's IQN.
    pub iqn: String,
    /// The initiator's IQN.
    pub initiator: String,
    /// CHAP, when the pool has `<auth type='chap'>`.
    pub chap: Option<Chap>,
}

fn bad(object: &str, field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArg {
        object: object.to_string(),
        field,
        reason: reason.into(),
    }
}

impl Target {
    /// Reads and checks the pool's definition.
    pub fn of(pool: &StoragePool) -> Result<Target> {
        let object = format!("pool '{}'", pool.name());
        if pool.pool_type() != POOL_TYPE {
            return Err(bad(
                &object,
                "pool/@type",
                format!("'{}' is not an iscsi-direct pool", pool.pool_type()),
            ));
        }
        let hosts = pool.source_hosts();
        let (host, port) = match hosts.as_slice() {
            [(h, p)] if !h.is_empty() => (h.to_string(), *p),
            [] => return Err(bad(&object, "pool/source/host", "missing source host")),
            _ => {
                return Err(bad(
                    &object,
                    "pool/source/host",
                    "an iscsi-direct pool takes exactly one source host",
                ));
            }
        };
        let port = match port {
            None | Some("") => DEFAULT_PORT,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                bad(
                    &object,
                    "pool/source/host/@port",
                    format!("'{p}' is not a port"),
                )
            })?,
        };
        let iqn = match pool.source_devices().as_slice() {
            [d] if !d.is_empty() => d.to_string(),
            [] => {
                return Err(bad(
                    &object,
                    "pool/source/device/@path",
                    "missing the target's IQN",
                ));
            }
            _ => {
                return Err(bad(
                    &object,
                    "pool/source/device",
                    "an iscsi-direct pool takes exactly one target (source device)",
                ));
            }
        };
        let source = pool.element().child("source");
        let initiator = source
            .and_then(|s| s.child("initiator"))
            .and_then(|i| i.child("iqn"))
            .and_then(|i| i.attr("name"))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                bad(
                    &object,
                    "pool/source/initiator/iqn/@name",
                    "missing the initiator's IQN",
                )
            })?
            .to_string();
        let chap = match source.and_then(|s| s.child("auth")) {
            None => None,
            Some(a) => {
                let t = a.attr("type").unwrap_or("");
                if t != "chap" {
                    return Err(bad(
                        &object,
                        "pool/source/auth/@type",
                        format!("unsupported authentication type '{t}' (chap)"),
                    ));
                }
                let user = a
                    .attr("username")
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| bad(&object, "pool/source/auth/@username", "missing"))?;
                let s = a
                    .child("secret")
                    .ok_or_else(|| bad(&object, "pool/source/auth/secret", "missing"))?;
                let (secret_id, secret_desc) = match (s.attr("usage"), s.attr("uuid")) {
                    (Some(u), _) if !u.is_empty() => (u.to_string(), format!("usage '{u}'")),
                    (_, Some(u)) if !u.is_empty() => (u.to_string(), format!("uuid '{u}'")),
                    _ => {
                        return Err(bad(
                            &object,
                            "pool/source/auth/secret",
                            "names neither a usage nor a uuid",
                        ));
                    }
                };
                Some(Chap {
                    user: user.to_string(),
                    secret_id,
                    secret_desc,
                })
            }
        };
        Ok(Target {
            object,
            host,
            port,
            iqn,
            initiator,
            chap,
        })
    }

    /// `HOST:PORT`, brackets around an IPv6 address.
    pub fn portal(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A volume's key and target path: `ip-PORTAL-iscsi-IQN-lun-N` (libvirt's form).
    pub fn volume_path(&self, lun: u16) -> String {
        format!("ip-{}-iscsi-{}-lun-{lun}", self.portal(), self.iqn)
    }

    /// Logs in, reading the CHAP secret with `secret` (usage type, usage id or UUID).
    pub fn login(&self, secret: &SecretLookup) -> Result<Session> {
        let value;
        let chap = match &self.chap {
            None => None,
            Some(c) => {
                value = secret(SECRET_USAGE_ISCSI, &c.secret_id).map_err(|(code, reason)| {
                    Error::Secret {
                        object: self.object.clone(),
                        secret: c.secret_desc.clone(),
                        user: c.user.clone(),
                        reason,
                        code,
                    }
                })?;
                Some((c.user.as_str(), value.as_slice()))
            }
        };
        let portal = self.portal();
        Session::login(&Login {
            initiator: &self.initiator,
            portal: &portal,
            target: &self.iqn,
            chap,
            timeout: TIMEOUT_SECS,
        })
        .map_err(|source| Error::Iscsi {
            object: self.object.clone(),
            action: format!("cannot log in to '{}' at '{portal}'", self.iqn),
            source,
        })
    }

    fn iscsi(&self, action: String) -> impl FnOnce(IscsiError) -> Error + '_ {
        move |source| Error::Iscsi {
            object: self.object.clone(),
            action,
            source,
        }
    }
}

/// One LUN (a LUN that is no disk, such as a target's controller, has no blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lun {
    /// Its number.
    pub lun: u16,
    /// Blocks.
    pub blocks: u64,
    /// Bytes per block.
    pub block_size: u32,
}

impl Lun {
    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.blocks.saturating_mul(u64::from(self.block_size))
    }
}

/// The LUNs of the target: disks sized by READ CAPACITY (16), others (INQUIRY: not
/// direct access) listed with no size, as libvirt lists them.
pub fn luns(t: &Target, s: &mut Session) -> Result<Vec<Lun>> {
    let mut all = s
        .report_luns()
        .map_err(t.iscsi(format!("cannot list the LUNs of '{}'", t.iqn)))?;
    all.sort_unstable();
    all.dedup();
    let mut out = Vec::new();
    for lun in all {
        let ty = s
            .device_type(lun)
            .map_err(t.iscsi(format!("cannot inquire LUN {lun} of '{}'", t.iqn)))?;
        if ty != ffi::DEVICE_TYPE_DIRECT_ACCESS {
            // listed with no size, as libvirt lists a target's controller LUN
            out.push(Lun {
                lun,
                blocks: 0,
                block_size: 0,
            });
            continue;
        }
        let (blocks, block_size) = s.read_capacity(lun).map_err(t.iscsi(format!(
            "cannot read the capacity of LUN {lun} of '{}'",
            t.iqn
        )))?;
        out.push(Lun {
            lun,
            blocks,
            block_size,
        });
    }
    Ok(out)
}

/// A LUN's `<volume>` document, as libvirt reports it.
pub fn volume_xml(t: &Target, l: &Lun) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('\'', "&apos;")
    };
    let path = esc(&t.volume_path(l.lun));
    format!(
        "<volume type='network'><name>{VOL_NAME_PREFIX}{}</name><key>{path}</key>\
         <capacity unit='bytes'>{}</capacity><allocation unit='bytes'>{}</allocation>\
         <target><path>{path}</path></target></volume>",
        l.lun,
        l.bytes(),
        l.bytes()
    )
}

/// The LUN a volume name stands for (`unit:0:0:N`).
pub fn lun_of(name: &str) -> Option<u16> {
    name.strip_prefix(VOL_NAME_PREFIX)?.parse().ok()
}

/// A pool's sizes and volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// The sum of the LUNs' sizes.
    pub capacity: u64,
    /// The same (a LUN is allocated whole).
    pub allocation: u64,
    /// Nothing (no volume can be created).
    pub available: u64,
    /// One `<volume>` per LUN.
    pub volumes: Vec<String>,
}

/// Logs in, lists and sizes the LUNs.
pub fn refresh(t: &Target, secret: &SecretLookup) -> Result<Refresh> {
    let mut s = t.login(secret)?;
    let luns = luns(t, &mut s)?;
    let capacity = luns.iter().map(Lun::bytes).sum();
    Ok(Refresh {
        capacity,
        allocation: capacity,
        available: 0,
        volumes: luns.iter().map(|l| volume_xml(t, l)).collect(),
    })
}

/// The LUN of volume `name`, sized, on a logged-in session.
pub fn find_lun(t: &Target, s: &mut Session, name: &str) -> Result<Lun> {
    let missing = || {
        Error::NoVolume(format!(
            "storage vol not found: no LUN '{name}' on target '{}'",
            t.iqn
        ))
    };
    let want = lun_of(name).ok_or_else(missing)?;
    luns(t, s)?
        .into_iter()
        .find(|l| l.lun == want)
        .ok_or_else(missing)
}

/// `virConnectFindStoragePoolSources` for iscsi-direct: a SendTargets discovery session
/// on the spec's portal (`<source><host name port/><initiator><iqn name/></initiator>`,
/// CHAP as a pool's), answering one `<source>` per target: the portal, the target as
/// `<device path>`, and the initiator, ready for a pool definition.
pub fn find_pool_sources(spec: &str, secret: &SecretLookup) -> Result<String> {
    let obj = "iscsi-direct source discovery";
    if spec.trim().is_empty() {
        return Err(bad(
            obj,
            "source",
            "hostname must be specified for iscsi sources",
        ));
    }
    // a pool around the spec reads it with the pool's rules
    let pool = parse_pool(&format!(
        "<pool type='iscsi-direct'><name>discovery</name>{}</pool>",
        spec.trim()
    ))?;
    let object = obj.to_string();
    let source = pool.element().child("source");
    let hosts = pool.source_hosts();
    let (host, port) = match hosts.as_slice() {
        [(h, p)] if !h.is_empty() => (h.to_string(), *p),
        _ => {
            return Err(bad(
                obj,
                "source/host",
                "hostname must be specified for iscsi sources",
            ));
        }
    };
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(obj, "source/host/@port", format!("'{p}' is not a port")))?,
    };
    let initiator = source
        .and_then(|s| s.child("initiator"))
        .and_then(|i| i.child("iqn"))
        .and_then(|i| i.attr("name"))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            bad(
                obj,
                "source/initiator/iqn/@name",
                "missing the initiator's IQN",
            )
        })?
        .to_string();
    // the pool's CHAP reading, with a placeholder target
    let mut with_target = pool.element().clone();
    if let Some(src) = with_target.child_mut("source") {
        src.push(rvirt_xml::Element::new("device").with_attr("path", "discovery"));
    }
    let chap = StoragePool::from_element(with_target)
        .ok()
        .and_then(|p| Target::of(&p).ok())
        .and_then(|t| t.chap);
    let t = Target {
        object,
        host,
        port,
        iqn: String::new(),
        initiator,
        chap,
    };
    let value;
    let chap = match &t.chap {
        None => None,
        Some(c) => {
            value = secret(SECRET_USAGE_ISCSI, &c.secret_id).map_err(|(code, reason)| {
                Error::Secret {
                    object: t.object.clone(),
                    secret: c.secret_desc.clone(),
                    user: c.user.clone(),
                    reason,
                    code,
                }
            })?;
            Some((c.user.as_str(), value.as_slice()))
        }
    };
    let portal = t.portal();
    let found = Session::discover(&Login {
        initiator: &t.initiator,
        portal: &portal,
        target: "",
        chap,
        timeout: TIMEOUT_SECS,
    })
    .map_err(t.iscsi(format!("cannot discover the targets at '{portal}'")))?;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('\'', "&apos;")
    };
    let mut x = String::from("<sources>\n");
    for (name, _portals) in found {
        x.push_str(&format!(
            "  <source>\n    <host name='{}' port='{}'/>\n    <device path='{}'/>\n    <initiator>\n      <iqn name='{}'/>\n    </initiator>\n  </source>\n",
            esc(&t.host),
            t.port,
            esc(&name),
            esc(&t.initiator)
        ));
    }
    x.push_str("</sources>\n");
    Ok(x)
}

/// Writes zeros over the whole LUN (`virStorageVolWipe`, algorithm zero), 1 MiB per
/// WRITE (16).
pub fn zero(t: &Target, s: &mut Session, l: &Lun) -> Result<()> {
    if l.block_size == 0 {
        return Err(bad(
            &t.object,
            "volume",
            format!("LUN {} is no disk: nothing to wipe", l.lun),
        ));
    }
    let bs = u64::from(l.block_size);
    let per = (1u64 << 20) / bs * bs;
    let per = per.max(bs);
    let mut buf = vec![0u8; per as usize];
    let mut lba = 0u64;
    let total = l.bytes();
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(per) as usize;
        s.write(l.lun, lba, l.block_size, &mut buf[..n])
            .map_err(t.iscsi(format!("cannot wipe LUN {} of '{}'", l.lun, t.iqn)))?;
        lba += n as u64 / bs;
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(xml: &str) -> Target {
        Target::of(&parse_pool(xml).expect("pool")).expect("target")
    }

    #[test]
    fn corpus_pools_are_read() {
        let t = target(
            "<pool type='iscsi-direct'><name>iscsi-direct-auth</name><source><host name='iscsi.example.com'/><device path='iqn.2013-06.com.example:iscsi-pool'/><initiator><iqn name='iqn.2013-06.com.example:iscsi-initiator'/></initiator><auth type='chap' username='user'><secret uuid='10ed4ad4-c7b0-4696-b574-b40e04fea84b'/></auth></source></pool>",
        );
        assert_eq!(t.portal(), "iscsi.example.com:3260");
        assert_eq!(t.iqn, "iqn.2013-06.com.example:iscsi-pool");
        assert_eq!(t.initiator, "iqn.2013-06.com.example:iscsi-initiator");
        let c = t.chap.as_ref().unwrap();
        assert_eq!(c.user, "user");
        assert_eq!(c.secret_id, "10ed4ad4-c7b0-4696-b574-b40e04fea84b");
        assert_eq!(
            t.volume_path(2),
            "ip-iscsi.example.com:3260-iscsi-iqn.2013-06.com.example:iscsi-pool-lun-2"
        );
        let v6 = target(
            "<pool type='iscsi-direct'><name>x</name><source><host name='::1' port='3261'/><device path='iqn.x:y'/><initiator><iqn name='iqn.i:j'/></initiator><auth type='chap' username='u'><secret usage='mine'/></auth></source></pool>",
        );
        assert_eq!(v6.portal(), "[::1]:3261");
        assert_eq!(v6.chap.unwrap().secret_desc, "usage 'mine'");
    }

    #[test]
    fn bad_pools_name_the_field() {
        for (xml, field) in [
            (
                "<pool type='iscsi-direct'><name>x</name><source><device path='iqn.x:y'/><initiator><iqn name='iqn.i:j'/></initiator></source></pool>",
                "pool/source/host",
            ),
            (
                "<pool type='iscsi-direct'><name>x</name><source><host name='h'/><initiator><iqn name='iqn.i:j'/></initiator></source></pool>",
                "pool/source/device/@path",
            ),
            (
                "<pool type='iscsi-direct'><name>x</name><source><host name='h'/><device path='iqn.x:y'/></source></pool>",
                "pool/source/initiator/iqn/@name",
            ),
            (
                "<pool type='iscsi-direct'><name>x</name><source><host name='h' port='0'/><device path='iqn.x:y'/><initiator><iqn name='iqn.i:j'/></initiator></source></pool>",
                "pool/source/host/@port",
            ),
        ] {
            let p = parse_pool(xml).expect(field);
            let e = Target::of(&p).expect_err(field);
            assert!(e.to_string().contains(field), "{e}");
            assert_eq!(e.code(), code::INVALID_ARG);
        }
    }

    #[test]
    fn volumes_are_named_as_libvirt_names_them() {
        let t = target(
            "<pool type='iscsi-direct'><name>x</name><source><host name='127.0.0.1' port='3270'/><device path='iqn.2026-12.org.rvirt:t'/><initiator><iqn name='iqn.i:j'/></initiator></source></pool>",
        );
        let x = volume_xml(
            &t,
            &Lun {
                lun: 1,
                blocks: 131072,
                block_size: 512,
            },
        );
        assert_eq!(
            x,
            "<volume type='network'><name>unit:0:0:1</name><key>ip-127.0.0.1:3270-iscsi-iqn.2026-12.org.rvirt:t-lun-1</key>\
             <capacity unit='bytes'>67108864</capacity><allocation unit='bytes'>67108864</allocation>\
             <target><path>ip-127.0.0.1:3270-iscsi-iqn.2026-12.org.rvirt:t-lun-1</path></target></volume>"
        );
        let p = parse_pool("<pool type='iscsi-direct'><name>x</name><source><host name='h'/><device path='iqn.x:y'/></source></pool>").unwrap();
        let v = rvirt_xml::StorageVolume::parse(&x, Some(&p)).expect("parses");
        assert_eq!(v.volume_type(), Some("network"));
        assert_eq!(lun_of("unit:0:0:7"), Some(7));
        assert_eq!(lun_of("unit:0:1:7"), None);
        assert_eq!(lun_of("unit:0:0:x"), None);
    }
}

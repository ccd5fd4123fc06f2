//! The backend-call channel between the daemon and a plugin host process serving a
//! storage and/or network plugin: its frames and its serde types, with their version.
//!
//! The daemon owns every pool and network; for a plugin in a process of its own it
//! registers forwarding backends (`forward.rs`) that send each `PoolBackend` /
//! `NetBackend` call over this channel to the plugin host process, which runs the real
//! backend (`serve.rs`) and answers.
//!
//! Transport: a unix socket of its own beside the plugin host's remote-protocol socket
//! (`RUN_DIR/plugins/NAME.GEN.backends.sock`, 0600 in the 0700 directory). One call in
//! flight per connection; the daemon keeps idle connections for the next calls.
//!
//! Frame: a big-endian `u32` length of what follows (at most [`MAX_FRAME`]), one kind
//! byte, the payload. Kind [`KIND_MESSAGE`]: a JSON [`Request`], [`StreamCall`] or
//! [`Reply`]; kind [`KIND_DATA`]: raw volume bytes of a stream. A longer frame is refused
//! and the connection closed.
//!
//! Exchange: the daemon sends a [`Request`], the plugin host answers one [`Reply`]. An
//! upload or download that opened ([`Answer::Stream`]) keeps the connection for its
//! stream: an upload sends data frames, each answered by a [`Reply`]; a download sends
//! [`StreamCall::Recv`], answered by a data frame (empty at the end) or a failed
//! [`Reply`]; [`StreamCall::Finish`] or [`StreamCall::Abort`] end it (one [`Reply`]). A
//! connection that closes with its stream open aborts the stream.
//!
//! Version: every [`Request`] and [`Reply`] carries [`VERSION`]; a plugin host answers a
//! request of another version with a failure naming both (the daemon and its plugin host
//! processes are the same binary, so this only guards against a stale process).

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// The version of these messages.
pub const VERSION: u32 = 1;

/// Largest frame accepted (kind byte and payload), 16 MiB.
pub const MAX_FRAME: u32 = 16 << 20;

/// Largest data chunk one frame carries.
pub const MAX_DATA: usize = MAX_FRAME as usize - 1;

/// A JSON message.
pub const KIND_MESSAGE: u8 = 0;

/// Stream bytes.
pub const KIND_DATA: u8 = 1;

/// What can go wrong on the channel itself.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer announced a frame past [`MAX_FRAME`].
    #[error("backend-call frame of {len} bytes refused: the limit is {max} bytes")]
    TooLarge { len: u64, max: u32 },
    /// The peer closed the connection.
    #[error("the backend-call connection closed")]
    Closed,
    /// Reading or writing failed.
    #[error("backend-call connection: {0}")]
    Io(#[from] std::io::Error),
    /// A message that is not what this version sends.
    #[error("malformed backend-call message: {0}")]
    Decode(#[from] serde_json::Error),
    /// A frame kind this version does not know.
    #[error("unknown backend-call frame kind {0}")]
    Kind(u8),
    /// A frame of the wrong kind at this point of the exchange.
    #[error("unexpected backend-call frame: expected {0}")]
    Unexpected(&'static str),
}

impl WireError {
    /// Whether the peer did not answer within the socket's receive timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, WireError::Io(e) if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ))
    }
}

/// One frame read.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A JSON message.
    Message(Vec<u8>),
    /// Stream bytes.
    Data(Vec<u8>),
}

impl Frame {
    /// The message decoded; a data frame is unexpected.
    pub fn message<T: for<'de> Deserialize<'de>>(self) -> Result<T, WireError> {
        match self {
            Frame::Message(m) => Ok(serde_json::from_slice(&m)?),
            Frame::Data(_) => Err(WireError::Unexpected("a message")),
        }
    }
}

fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> Result<(), WireError> {
    let len = payload.len() as u64 + 1;
    if len > u64::from(MAX_FRAME) {
        return Err(WireError::TooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&(len as u32).to_be_bytes());
    head[4] = kind;
    if payload.len() <= 64 * 1024 {
        // one write for small frames
        let mut buf = Vec::with_capacity(5 + payload.len());
        buf.extend_from_slice(&head);
        buf.extend_from_slice(payload);
        w.write_all(&buf)?;
    } else {
        w.write_all(&head)?;
        w.write_all(payload)?;
    }
    w.flush()?;
    Ok(())
}

/// Writes a JSON message frame.
pub fn write_message<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), WireError> {
    write_frame(w, KIND_MESSAGE, &serde_json::to_vec(msg)?)
}

/// Writes a data frame (at most [`MAX_DATA`] bytes).
pub fn write_data(w: &mut impl Write, data: &[u8]) -> Result<(), WireError> {
    write_frame(w, KIND_DATA, data)
}

/// Reads one frame; [`WireError::Closed`] when the peer closed between frames.
pub fn read_frame(r: &mut impl Read) -> Result<Frame, WireError> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Err(WireError::Closed),
            Ok(0) => {
                return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if len > MAX_FRAME {
        return Err(WireError::TooLarge {
            len: u64::from(len),
            max: MAX_FRAME,
        });
    }
    if len == 0 {
        return Err(WireError::Kind(head[4]));
    }
    let mut payload = vec![0u8; len as usize - 1];
    r.read_exact(&mut payload)?;
    match head[4] {
        KIND_MESSAGE => Ok(Frame::Message(payload)),
        KIND_DATA => Ok(Frame::Data(payload)),
        k => Err(WireError::Kind(k)),
    }
}

/// A backend call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// [`VERSION`].
    pub version: u32,
    /// What to do.
    pub call: Call,
}

/// The `PoolBackend` and `NetBackend` methods, with the pool type or forward mode whose
/// backend serves them. Pools, volumes, networks and ports cross as libvirt XML.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Call {
    CheckPool {
        pool_type: String,
        pool: String,
    },
    BuildPool {
        pool_type: String,
        pool: String,
        flags: u32,
    },
    StartPool {
        pool_type: String,
        pool: String,
    },
    StopPool {
        pool_type: String,
        pool: String,
    },
    DeletePool {
        pool_type: String,
        pool: String,
        flags: u32,
    },
    RefreshPool {
        pool_type: String,
        pool: String,
    },
    CreateVolume {
        pool_type: String,
        pool: String,
        vol: String,
        flags: u32,
    },
    CreateVolumeFrom {
        pool_type: String,
        pool: String,
        vol: String,
        src_pool: String,
        src_vol: String,
        flags: u32,
    },
    DeleteVolume {
        pool_type: String,
        pool: String,
        vol: String,
        flags: u32,
    },
    ResizeVolume {
        pool_type: String,
        pool: String,
        vol: String,
        capacity: u64,
        flags: u32,
    },
    WipeVolume {
        pool_type: String,
        pool: String,
        vol: String,
        algorithm: u32,
        flags: u32,
    },
    RefreshVolume {
        pool_type: String,
        pool: String,
        vol: String,
    },
    UploadVolume {
        pool_type: String,
        pool: String,
        vol: String,
        offset: u64,
        length: u64,
        flags: u32,
    },
    DownloadVolume {
        pool_type: String,
        pool: String,
        vol: String,
        offset: u64,
        length: u64,
        flags: u32,
    },
    FindPoolSources {
        pool_type: String,
        spec: String,
        flags: u32,
    },
    StartNetwork {
        mode: String,
        net: String,
        state_dir: String,
    },
    StopNetwork {
        mode: String,
        net: String,
        state_dir: String,
    },
    CheckNetwork {
        mode: String,
        net: String,
        state_dir: String,
    },
    PlugPort {
        mode: String,
        net: String,
        port: String,
    },
    UnplugPort {
        mode: String,
        net: String,
        port: String,
    },
    DhcpLeases {
        mode: String,
        net: String,
        mac: String,
    },
    UpdateNetwork {
        mode: String,
        net: String,
        command: u32,
        section: u32,
        parent_index: i32,
        xml: String,
        flags: u32,
    },
}

impl Call {
    /// libvirt's name of the API the call serves (or the backend method's), for errors.
    pub fn api(&self) -> &'static str {
        match self {
            Call::CheckPool { .. } => "the storage pool check",
            Call::BuildPool { .. } => "virStoragePoolBuild",
            Call::StartPool { .. } => "virStoragePoolCreate",
            Call::StopPool { .. } => "virStoragePoolDestroy",
            Call::DeletePool { .. } => "virStoragePoolDelete",
            Call::RefreshPool { .. } => "virStoragePoolRefresh",
            Call::CreateVolume { .. } => "virStorageVolCreateXML",
            Call::CreateVolumeFrom { .. } => "virStorageVolCreateXMLFrom",
            Call::DeleteVolume { .. } => "virStorageVolDelete",
            Call::ResizeVolume { .. } => "virStorageVolResize",
            Call::WipeVolume { .. } => "virStorageVolWipePattern",
            Call::RefreshVolume { .. } => "the storage volume refresh",
            Call::UploadVolume { .. } => "virStorageVolUpload",
            Call::DownloadVolume { .. } => "virStorageVolDownload",
            Call::FindPoolSources { .. } => "virConnectFindStoragePoolSources",
            Call::StartNetwork { .. } => "virNetworkCreate",
            Call::StopNetwork { .. } => "virNetworkDestroy",
            Call::CheckNetwork { .. } => "the network check",
            Call::PlugPort { .. } => "virNetworkPortCreateXML",
            Call::UnplugPort { .. } => "virNetworkPortDelete",
            Call::DhcpLeases { .. } => "virNetworkGetDHCPLeases",
            Call::UpdateNetwork { .. } => "virNetworkUpdate",
        }
    }
}

/// What the daemon sends on a connection whose stream is open (an upload's bytes travel
/// as data frames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StreamCall {
    /// The next bytes of a download, at most `max`.
    Recv { max: u64 },
    /// Ends the stream (an upload is committed).
    Finish,
    /// Abandons the stream.
    Abort,
}

/// The answer to a [`Request`] or a [`StreamCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// [`VERSION`].
    pub version: u32,
    /// The backend's answer or error.
    pub result: Result<Answer, Failure>,
}

impl Reply {
    /// A reply of this version.
    pub fn new(result: Result<Answer, Failure>) -> Reply {
        Reply {
            version: VERSION,
            result,
        }
    }
}

/// A backend's error, with libvirt's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `virErrorNumber`.
    pub code: i32,
    /// `virErrorDomain`.
    pub domain: i32,
    /// The message.
    pub message: String,
}

impl From<&rvirt_host::Error> for Failure {
    fn from(e: &rvirt_host::Error) -> Failure {
        Failure {
            code: e.code(),
            domain: e.domain(),
            message: e.to_string(),
        }
    }
}

impl From<Failure> for rvirt_host::Error {
    fn from(f: Failure) -> rvirt_host::Error {
        rvirt_host::Error::Driver {
            code: f.code,
            domain: f.domain,
            message: f.message,
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Answer {
    /// Done, nothing to say.
    Done,
    /// `check_pool`, `check_network`.
    Bool(bool),
    /// A document (volume XML, live network additions, `<sources>`).
    Text(String),
    /// `refresh_pool`.
    Refresh(Refresh),
    /// `plug_port`.
    Plug(Plug),
    /// `dhcp_leases`.
    Leases(Vec<Lease>),
    /// An upload or download opened: the connection now carries its stream.
    Stream,
}

/// `storage::PoolRefresh`.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refresh {
    pub capacity: u64,
    pub allocation: u64,
    pub available: u64,
    pub volumes: Vec<String>,
}

/// `networks::PortPlug`.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plug {
    pub plug_type: String,
    pub bridge: String,
    pub tap: String,
    pub mtu: u32,
    pub port_xml: String,
}

/// `networks::Lease`.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub iface: String,
    pub expiry_time: i64,
    pub ip_type: i32,
    pub mac: String,
    pub iaid: String,
    pub ipaddr: String,
    pub prefix: u32,
    pub hostname: String,
    pub clientid: String,
}

impl From<rvirt_host::storage::PoolRefresh> for Refresh {
    fn from(r: rvirt_host::storage::PoolRefresh) -> Refresh {
        Refresh {
            capacity: r.capacity,
            allocation: r.allocation,
            available: r.available,
            volumes: r.volumes,
        }
    }
}

impl From<Refresh> for rvirt_host::storage::PoolRefresh {
    fn from(r: Refresh) -> rvirt_host::storage::PoolRefresh {
        rvirt_host::storage::PoolRefresh {
            capacity: r.capacity,
            allocation: r.allocation,
            available: r.available,
            volumes: r.volumes,
        }
    }
}

impl From<rvirt_host::networks::PortPlug> for Plug {
    fn from(p: rvirt_host::networks::PortPlug) -> Plug {
        Plug {
            plug_type: p.plug_type,
            bridge: p.bridge,
            tap: p.tap,
            mtu: p.mtu,
            port_xml: p.port_xml,
        }
    }
}

impl From<Plug> for rvirt_host::networks::PortPlug {
    fn from(p: Plug) -> rvirt_host::networks::PortPlug {
        rvirt_host::networks::PortPlug {
            plug_type: p.plug_type,
            bridge: p.bridge,
            tap: p.tap,
            mtu: p.mtu,
            port_xml: p.port_xml,
        }
    }
}

impl From<rvirt_host::networks::Lease> for Lease {
    fn from(l: rvirt_host::networks::Lease) -> Lease {
        Lease {
            iface: l.iface,
            expiry_time: l.expiry_time,
            ip_type: l.ip_type,
            mac: l.mac,
            iaid: l.iaid,
            ipaddr: l.ipaddr,
            prefix: l.prefix,
            hostname: l.hostname,
            clientid: l.clientid,
        }
    }
}

impl From<Lease> for rvirt_host::networks::Lease {
    fn from(l: Lease) -> rvirt_host::networks::Lease {
        rvirt_host::networks::Lease {
            iface: l.iface,
            expiry_time: l.expiry_time,
            ip_type: l.ip_type,
            mac: l.mac,
            iaid: l.iaid,
            ipaddr: l.ipaddr,
            prefix: l.prefix,
            hostname: l.hostname,
            clientid: l.clientid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        let req = Request {
            version: VERSION,
            call: Call::RefreshPool {
                pool_type: "dir".into(),
                pool: "<pool/>".into(),
            },
        };
        write_message(&mut buf, &req).unwrap();
        write_data(&mut buf, b"bytes").unwrap();
        write_data(&mut buf, b"").unwrap();
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).unwrap().message::<Request>().unwrap(),
            req
        );
        assert_eq!(read_frame(&mut r).unwrap(), Frame::Data(b"bytes".to_vec()));
        assert_eq!(read_frame(&mut r).unwrap(), Frame::Data(Vec::new()));
        assert!(matches!(read_frame(&mut r), Err(WireError::Closed)));
    }

    #[test]
    fn the_json_names_the_operation_and_the_version() {
        let text = serde_json::to_string(&Request {
            version: VERSION,
            call: Call::CheckNetwork {
                mode: "nat".into(),
                net: "<network/>".into(),
                state_dir: "/run/x".into(),
            },
        })
        .unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"call":{"op":"check_network","mode":"nat","net":"<network/>","state_dir":"/run/x"}}"#
        );
        let reply = serde_json::to_string(&Reply::new(Ok(Answer::Bool(true)))).unwrap();
        assert_eq!(
            reply,
            r#"{"version":1,"result":{"Ok":{"kind":"bool","value":true}}}"#
        );
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut head = (MAX_FRAME + 1).to_be_bytes().to_vec();
        head.push(KIND_DATA);
        let err = read_frame(&mut &head[..]).unwrap_err();
        assert!(matches!(err, WireError::TooLarge { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "backend-call frame of {} bytes refused: the limit is {MAX_FRAME} bytes",
                MAX_FRAME + 1
            )
        );
        let big = vec![0u8; MAX_FRAME as usize];
        assert!(matches!(
            write_data(&mut Vec::new(), &big),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_kinds_and_truncated_frames_fail() {
        let mut buf = 2u32.to_be_bytes().to_vec();
        buf.extend_from_slice(&[7, 0]);
        assert!(matches!(read_frame(&mut &buf[..]), Err(WireError::Kind(7))));
        let mut buf = 10u32.to_be_bytes().to_vec();
        buf.extend_from_slice(&[KIND_DATA, 1, 2]);
        assert!(matches!(read_frame(&mut &buf[..]), Err(WireError::Io(_))));
    }
}

//! libvirt's remote wire protocol, written from its public protocol definitions.
//!
//! - [`xdr`]: a serde codec for Sun XDR (RFC 4506).
//! - [`frame`]: the message framing (`[len][header][payload]`), an incremental
//!   decoder for async readers, blocking helpers for `std::io` streams, and the packets
//!   of data streams (volume upload/download).
//! - [`protocol`]: program numbers, keepalive, `remote_error`, object handles and
//!   the libvirt constants (error codes, features, event and state numbers, limits).
//! - [`remote`]: the `REMOTE_PROGRAM` procedures with their argument and return types
//!   (domains and the connection; storage pools, volumes and secrets in `remote/storage.rs`).
//!
//! Architecture invariant: this crate does no I/O of its own beyond the blocking
//! helpers in [`frame`], and knows nothing about drivers or the daemon.

pub mod frame;
pub mod protocol;
pub mod remote;
pub mod xdr;

pub use frame::{Frame, FrameDecoder, Header, MessageType, Status, StreamHole, StreamPacket};
pub use protocol::{NonnullDomain, RemoteError};
pub use remote::{Access, Procedure, RemoteProcedure, procs};

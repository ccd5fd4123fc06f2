//! libvirt's remote wire protocol, written from its public protocol definitions.
//!
//! - [`xdr`]: a serde codec for Sun XDR (RFC 4506).
//! - [`frame`]: the message framing (`[len][header][payload]`), an incremental
//!   decoder for async readers and blocking helpers for `std::io` streams.
//! - [`protocol`]: program numbers, keepalive, `remote_error`, object handles and
//!   the libvirt constants (error codes, features, event and state numbers).
//! - [`remote`]: the `REMOTE_PROGRAM` procedures with their argument and return types.
//!
//! Architecture invariant: this crate does no I/O of its own beyond the blocking
//! helpers in [`frame`], and knows nothing about drivers or the daemon.

pub mod frame;
pub mod protocol;
pub mod remote;
pub mod xdr;

pub use frame::{Frame, FrameDecoder, Header, MessageType, Status};
pub use protocol::{NonnullDomain, RemoteError};
pub use remote::{Access, Procedure, RemoteProcedure, procs};

//! Message framing: `[len u32][header 24 bytes][payload]`.
//!
//! `len` counts the whole message including the length word itself. The header is
//! `prog u32, vers u32, proc i32, type, serial u32, status`, all XDR (big-endian).
//! [`FrameDecoder`] cuts frames out of a byte stream incrementally (for async
//! readers); [`read_frame`] and [`write_frame`] do the same on `std::io` streams.

use crate::protocol::RemoteError;
use crate::xdr;
use serde::Serialize;
use std::io::{self, Read, Write};

/// Largest message accepted, excluding the length word (`VIR_NET_MESSAGE_MAX`).
pub const MESSAGE_MAX: usize = 33_554_432;
/// Size of the header (`VIR_NET_MESSAGE_HEADER_MAX`).
pub const HEADER_LEN: usize = 24;
/// Size of the length word (`VIR_NET_MESSAGE_LEN_MAX`).
pub const LEN_LEN: usize = 4;
/// Largest payload (`VIR_NET_MESSAGE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = MESSAGE_MAX - HEADER_LEN;
/// Smallest valid value of the length word.
pub const FRAME_MIN: usize = LEN_LEN + HEADER_LEN;

/// Errors of framing and header decoding.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("frame of {len} bytes exceeds the maximum {max}", max = MESSAGE_MAX + LEN_LEN)]
    TooLarge { len: usize },
    #[error("frame of {len} bytes is shorter than a header")]
    TooShort { len: usize },
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated { expected: usize, got: usize },
    #[error("unknown message type {0}")]
    UnknownType(u32),
    #[error("unknown message status {0}")]
    UnknownStatus(u32),
    #[error("not a stream packet: {msg_type:?} with status {status:?}")]
    NotStream {
        msg_type: MessageType,
        status: Status,
    },
    #[error("stream packet {msg_type:?} with status {status:?} carries {len} unexpected bytes")]
    StreamPayload {
        msg_type: MessageType,
        status: Status,
        len: usize,
    },
    #[error("payload encoding: {0}")]
    Xdr(#[from] xdr::Error),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// Whether the byte stream is out of sync after this error (the peer must be dropped).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::TooLarge { .. }
                | Error::TooShort { .. }
                | Error::Truncated { .. }
                | Error::Io(_)
        )
    }
}

/// `virNetMessageType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MessageType {
    Call = 0,
    Reply = 1,
    Message = 2,
    Stream = 3,
    CallWithFds = 4,
    ReplyWithFds = 5,
    StreamHole = 6,
}

impl TryFrom<u32> for MessageType {
    type Error = Error;

    fn try_from(v: u32) -> Result<Self, Error> {
        Ok(match v {
            0 => MessageType::Call,
            1 => MessageType::Reply,
            2 => MessageType::Message,
            3 => MessageType::Stream,
            4 => MessageType::CallWithFds,
            5 => MessageType::ReplyWithFds,
            6 => MessageType::StreamHole,
            n => return Err(Error::UnknownType(n)),
        })
    }
}

/// `virNetMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    Error = 1,
    Continue = 2,
}

impl TryFrom<u32> for Status {
    type Error = Error;

    fn try_from(v: u32) -> Result<Self, Error> {
        Ok(match v {
            0 => Status::Ok,
            1 => Status::Error,
            2 => Status::Continue,
            n => return Err(Error::UnknownStatus(n)),
        })
    }
}

/// `virNetMessageHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub prog: u32,
    pub vers: u32,
    pub procedure: i32,
    pub msg_type: MessageType,
    pub serial: u32,
    pub status: Status,
}

impl Header {
    /// A CALL header.
    pub fn call(prog: u32, vers: u32, procedure: i32, serial: u32) -> Header {
        Header {
            prog,
            vers,
            procedure,
            msg_type: MessageType::Call,
            serial,
            status: Status::Ok,
        }
    }

    /// An asynchronous MESSAGE header (events, keepalive): serial 0, status OK.
    pub fn message(prog: u32, vers: u32, procedure: i32) -> Header {
        Header {
            prog,
            vers,
            procedure,
            msg_type: MessageType::Message,
            serial: 0,
            status: Status::Ok,
        }
    }

    /// A STREAM (or STREAM_HOLE) header for the stream opened by the call `serial` of
    /// `procedure`: stream packets repeat the call's program, procedure and serial.
    pub fn stream(
        prog: u32,
        vers: u32,
        procedure: i32,
        serial: u32,
        msg_type: MessageType,
        status: Status,
    ) -> Header {
        Header {
            prog,
            vers,
            procedure,
            msg_type,
            serial,
            status,
        }
    }

    /// The REPLY header answering this call.
    pub fn reply(&self, status: Status) -> Header {
        Header {
            msg_type: MessageType::Reply,
            status,
            ..*self
        }
    }

    /// Appends the 24 header bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for word in [
            self.prog,
            self.vers,
            self.procedure as u32,
            self.msg_type as u32,
            self.serial,
            self.status as u32,
        ] {
            out.extend_from_slice(&word.to_be_bytes());
        }
    }

    /// Decodes the header from the first 24 bytes of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Header, Error> {
        let Some(h) = bytes.get(..HEADER_LEN) else {
            return Err(Error::Truncated {
                expected: HEADER_LEN,
                got: bytes.len(),
            });
        };
        let word =
            |i: usize| u32::from_be_bytes([h[i * 4], h[i * 4 + 1], h[i * 4 + 2], h[i * 4 + 3]]);
        Ok(Header {
            prog: word(0),
            vers: word(1),
            procedure: word(2) as i32,
            msg_type: MessageType::try_from(word(3))?,
            serial: word(4),
            status: Status::try_from(word(5))?,
        })
    }
}

/// A complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub payload: Vec<u8>,
}

impl Frame {
    /// Decodes the payload as a `T`, which must use all of it.
    pub fn body<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, xdr::Error> {
        xdr::from_bytes(&self.payload)
    }
}

/// Encodes a whole message (length word, header, XDR payload).
pub fn encode<T: Serialize + ?Sized>(header: &Header, body: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(128);
    encode_into(&mut out, header, body)?;
    Ok(out)
}

/// Appends a whole message to `out`; on error `out` is left as it was.
pub fn encode_into<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    header: &Header,
    body: &T,
) -> Result<(), Error> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_LEN]);
    header.encode(out);
    if let Err(e) = xdr::to_writer(out, body) {
        out.truncate(start);
        return Err(e.into());
    }
    let len = out.len() - start;
    if len > MESSAGE_MAX + LEN_LEN {
        out.truncate(start);
        return Err(Error::TooLarge { len });
    }
    out[start..start + LEN_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Encodes a message whose payload is already XDR-encoded.
pub fn encode_raw(header: &Header, payload: &[u8]) -> Result<Vec<u8>, Error> {
    let len = FRAME_MIN + payload.len();
    if len > MESSAGE_MAX + LEN_LEN {
        return Err(Error::TooLarge { len });
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    header.encode(&mut out);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Checks a length word; returns the frame length.
fn check_len(word: [u8; 4]) -> Result<usize, Error> {
    let len = u32::from_be_bytes(word) as usize;
    if len > MESSAGE_MAX + LEN_LEN {
        return Err(Error::TooLarge { len });
    }
    if len < FRAME_MIN {
        return Err(Error::TooShort { len });
    }
    Ok(len)
}

/// Cuts frames out of a byte stream that arrives in pieces.
///
/// Feed bytes with [`FrameDecoder::feed`] (or read straight into
/// [`FrameDecoder::read_buffer`]) and take complete frames with
/// [`FrameDecoder::next_frame`]. A length word over [`MESSAGE_MAX`] is refused as soon
/// as its 4 bytes arrive, before the body is buffered. After a fatal error
/// ([`Error::is_fatal`]) the stream cannot be resynchronised.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        FrameDecoder::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// The buffer to read into directly (e.g. with tokio's `read_buf`): bytes
    /// appended to it are fed to the decoder.
    pub fn read_buffer(&mut self) -> &mut Vec<u8> {
        self.compact();
        &mut self.buf
    }

    /// Bytes received but not returned as a frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Call at end of stream: fails if a partial frame is left.
    pub fn finish(&self) -> Result<(), Error> {
        match self.pending() {
            0 => Ok(()),
            got => {
                let expected = self.buf[self.start..].get(..LEN_LEN).map_or(LEN_LEN, |w| {
                    u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize
                });
                Err(Error::Truncated { expected, got })
            }
        }
    }

    /// Bytes still needed before the next frame is complete (at least 1 when unknown).
    pub fn wanted(&self) -> usize {
        let data = &self.buf[self.start..];
        match data.get(..LEN_LEN) {
            None => LEN_LEN - data.len(),
            Some(w) => (u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize)
                .saturating_sub(data.len())
                .max(1),
        }
    }

    /// Returns the next complete frame, `None` if more bytes are needed.
    ///
    /// A frame whose header has an unknown type or status is consumed and reported
    /// as an error that is not fatal.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        let data = &self.buf[self.start..];
        let Some(word) = data.get(..LEN_LEN) else {
            return Ok(None);
        };
        let len = check_len([word[0], word[1], word[2], word[3]])?;
        if data.len() < len {
            // reserve now so that a large frame is read without repeated growth
            self.buf.reserve(len - data.len());
            return Ok(None);
        }
        let header = Header::decode(&data[LEN_LEN..]);
        let payload = data[FRAME_MIN..len].to_vec();
        self.start += len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(Frame {
            header: header?,
            payload,
        }))
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// Reads one frame from a blocking stream. `Ok(None)` means a clean end of stream
/// before the first byte of a frame.
pub fn read_frame<R: Read>(reader: &mut R) -> Result<Option<Frame>, Error> {
    let mut word = [0u8; LEN_LEN];
    let got = read_full(reader, &mut word)?;
    if got == 0 {
        return Ok(None);
    }
    if got < LEN_LEN {
        return Err(Error::Truncated {
            expected: LEN_LEN,
            got,
        });
    }
    let len = check_len(word)?;
    let mut rest = vec![0u8; len - LEN_LEN];
    let got = read_full(reader, &mut rest)?;
    if got < rest.len() {
        return Err(Error::Truncated {
            expected: len,
            got: got + LEN_LEN,
        });
    }
    let header = Header::decode(&rest)?;
    rest.drain(..HEADER_LEN);
    Ok(Some(Frame {
        header,
        payload: rest,
    }))
}

/// Writes one message to a blocking stream.
pub fn write_frame<W: Write, T: Serialize + ?Sized>(
    writer: &mut W,
    header: &Header,
    body: &T,
) -> Result<(), Error> {
    writer.write_all(&encode(header, body)?)?;
    Ok(())
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<usize, io::Error> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// `virNetStreamHole`: the payload of a STREAM_HOLE packet, a run of `length` bytes that
/// reads as zeros (sparse streams, `VIR_STORAGE_VOL_{UP,DOWN}LOAD_SPARSE_STREAM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct StreamHole {
    pub length: i64,
    /// Unused by libvirt; always 0.
    pub flags: u32,
}

/// Most data a libvirt sender puts in one STREAM packet
/// (`VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX`); receivers accept up to [`PAYLOAD_MAX`].
pub const STREAM_CHUNK_MAX: usize = 262_120;

/// One packet of a data stream (volume upload/download, console), as libvirt's
/// `virnetclientstream.c` and the daemon's `stream.c` use them. Every packet repeats the
/// program, procedure and serial of the CALL that opened the stream; the stream exists
/// once that call's REPLY (status OK) has been sent.
///
/// - [`StreamPacket::Data`]: type STREAM, status CONTINUE, the payload is the raw bytes
///   (no XDR length word). An empty one is end-of-file: the daemon sends it when the
///   source of a download is exhausted (`virNetServerProgramSendStreamData` with a
///   zero length).
/// - [`StreamPacket::Hole`]: type STREAM_HOLE, status CONTINUE, payload [`StreamHole`].
/// - [`StreamPacket::End`]: type STREAM, status OK, empty payload: the finish handshake.
///   The client sends it (`virStreamFinish`) after its data or after reading EOF, and
///   the daemon confirms with an `End` of its own once the stream is finished (after an
///   upload, that confirmation means the volume is written).
/// - [`StreamPacket::Abort`]: type STREAM, status ERROR. From the daemon the payload is a
///   `remote_error` (why the stream failed); a client aborting (`virStreamAbort`) sends
///   an empty payload (`None`), which libvirtd confirms with an `End`.
///
/// `tests/libvirtd_storage.rs` checks all of this against libvirtd (volume upload and
/// download, sparse both ways, the finish handshake and a client abort).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamPacket {
    Data(Vec<u8>),
    Hole(StreamHole),
    End,
    Abort(Option<RemoteError>),
}

impl StreamPacket {
    /// The header for this packet in the stream opened by call `serial` of `procedure`.
    pub fn header(&self, prog: u32, vers: u32, procedure: i32, serial: u32) -> Header {
        let (msg_type, status) = match self {
            StreamPacket::Data(_) => (MessageType::Stream, Status::Continue),
            StreamPacket::Hole(_) => (MessageType::StreamHole, Status::Continue),
            StreamPacket::End => (MessageType::Stream, Status::Ok),
            StreamPacket::Abort(_) => (MessageType::Stream, Status::Error),
        };
        Header::stream(prog, vers, procedure, serial, msg_type, status)
    }

    /// Encodes the whole message (length word, header, payload).
    pub fn encode(
        &self,
        prog: u32,
        vers: u32,
        procedure: i32,
        serial: u32,
    ) -> Result<Vec<u8>, Error> {
        let header = self.header(prog, vers, procedure, serial);
        match self {
            StreamPacket::Data(data) => encode_raw(&header, data),
            StreamPacket::Hole(hole) => encode(&header, hole),
            StreamPacket::End | StreamPacket::Abort(None) => encode_raw(&header, &[]),
            StreamPacket::Abort(Some(err)) => encode(&header, err),
        }
    }

    /// Decodes a STREAM or STREAM_HOLE frame; any other frame, or a payload that does
    /// not fit the packet, is an error.
    pub fn decode(frame: &Frame) -> Result<StreamPacket, Error> {
        let Header {
            msg_type, status, ..
        } = frame.header;
        let unexpected = |len| Error::StreamPayload {
            msg_type,
            status,
            len,
        };
        match (msg_type, status) {
            (MessageType::Stream, Status::Continue) => {
                Ok(StreamPacket::Data(frame.payload.clone()))
            }
            (MessageType::StreamHole, Status::Continue) => Ok(StreamPacket::Hole(frame.body()?)),
            (MessageType::Stream, Status::Ok) => match frame.payload.len() {
                0 => Ok(StreamPacket::End),
                n => Err(unexpected(n)),
            },
            (MessageType::Stream, Status::Error) => match frame.payload.len() {
                0 => Ok(StreamPacket::Abort(None)),
                _ => Ok(StreamPacket::Abort(Some(frame.body()?))),
            },
            _ => Err(Error::NotStream { msg_type, status }),
        }
    }
}

/// A STREAM data packet (status CONTINUE) carrying `data` for the stream of call
/// (`procedure`, `serial`).
pub fn stream_data(
    prog: u32,
    vers: u32,
    procedure: i32,
    serial: u32,
    data: &[u8],
) -> Result<Vec<u8>, Error> {
    let header = StreamPacket::Data(Vec::new()).header(prog, vers, procedure, serial);
    encode_raw(&header, data)
}

/// A STREAM_HOLE packet: `length` bytes of zeros for the stream of (`procedure`, `serial`).
pub fn stream_hole(
    prog: u32,
    vers: u32,
    procedure: i32,
    serial: u32,
    length: i64,
) -> Result<Vec<u8>, Error> {
    StreamPacket::Hole(StreamHole { length, flags: 0 }).encode(prog, vers, procedure, serial)
}

/// The end-of-stream packet (STREAM, status OK, no payload), also the receiver's
/// confirmation that it has finished.
pub fn stream_end(prog: u32, vers: u32, procedure: i32, serial: u32) -> Result<Vec<u8>, Error> {
    StreamPacket::End.encode(prog, vers, procedure, serial)
}

/// The daemon's abort packet: STREAM, status ERROR, payload the `remote_error`.
pub fn stream_error(
    prog: u32,
    vers: u32,
    procedure: i32,
    serial: u32,
    err: &RemoteError,
) -> Result<Vec<u8>, Error> {
    encode(
        &StreamPacket::Abort(None).header(prog, vers, procedure, serial),
        err,
    )
}

/// A client's abort packet: STREAM, status ERROR, no payload.
pub fn stream_abort(prog: u32, vers: u32, procedure: i32, serial: u32) -> Result<Vec<u8>, Error> {
    StreamPacket::Abort(None).encode(prog, vers, procedure, serial)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping() -> Vec<u8> {
        // len 28, prog "keep", vers 1, proc 1 (PING), type MESSAGE, serial 0, status OK
        vec![
            0, 0, 0, 28, 0x6b, 0x65, 0x65, 0x70, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0,
            0, 0, 0,
        ]
    }

    #[test]
    fn header_bytes() {
        let h = Header::message(0x6b65_6570, 1, 1);
        assert_eq!(encode(&h, &()).unwrap(), ping());
        let call = Header::call(0x2000_8086, 1, 66, 7);
        let bytes = encode(&call, &()).unwrap();
        assert_eq!(Header::decode(&bytes[4..]).unwrap(), call);
        let reply = call.reply(Status::Error);
        assert_eq!(
            (reply.msg_type, reply.status, reply.serial),
            (MessageType::Reply, Status::Error, 7)
        );
    }

    #[test]
    fn incremental_decoding() {
        let mut stream = ping();
        stream.extend(encode(&Header::call(0x2000_8086, 1, 3, 9), &"abc").unwrap());
        let mut dec = FrameDecoder::new();
        let mut frames = Vec::new();
        for byte in &stream {
            dec.feed(std::slice::from_ref(byte));
            while let Some(f) = dec.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].header.procedure, 1);
        assert!(frames[0].payload.is_empty());
        assert_eq!(frames[1].header.serial, 9);
        assert_eq!(frames[1].body::<String>().unwrap(), "abc");
        assert!(dec.finish().is_ok());
    }

    #[test]
    fn oversized_and_short_frames_refused_early() {
        let mut dec = FrameDecoder::new();
        dec.feed(&((MESSAGE_MAX + 5) as u32).to_be_bytes());
        assert!(matches!(dec.next_frame(), Err(Error::TooLarge { len }) if len == MESSAGE_MAX + 5));
        let mut dec = FrameDecoder::new();
        dec.feed(&[0, 0, 0, 27]);
        let err = dec.next_frame().unwrap_err();
        assert!(matches!(err, Error::TooShort { len: 27 }) && err.is_fatal());
        // exactly the maximum is accepted (waits for the bytes)
        let mut dec = FrameDecoder::new();
        dec.feed(&((MESSAGE_MAX + 4) as u32).to_be_bytes());
        assert!(dec.next_frame().unwrap().is_none());
    }

    #[test]
    fn truncated_frames() {
        let bytes = ping();
        let mut dec = FrameDecoder::new();
        dec.feed(&bytes[..10]);
        assert!(dec.next_frame().unwrap().is_none());
        assert!(matches!(
            dec.finish(),
            Err(Error::Truncated {
                expected: 28,
                got: 10
            })
        ));
        assert!(matches!(
            read_frame(&mut &bytes[..10]),
            Err(Error::Truncated {
                expected: 28,
                got: 10
            })
        ));
        assert!(matches!(
            read_frame(&mut &bytes[..2]),
            Err(Error::Truncated {
                expected: 4,
                got: 2
            })
        ));
        assert!(read_frame(&mut &[][..]).unwrap().is_none());
    }

    #[test]
    fn bad_header_fields_are_not_fatal() {
        let mut bytes = ping();
        bytes[19] = 9; // type 9
        bytes.extend(ping());
        let mut dec = FrameDecoder::new();
        dec.feed(&bytes);
        let err = dec.next_frame().unwrap_err();
        assert!(matches!(err, Error::UnknownType(9)) && !err.is_fatal());
        assert!(dec.next_frame().unwrap().is_some());
        let mut bytes = ping();
        bytes[27] = 3;
        assert!(matches!(
            read_frame(&mut &bytes[..]),
            Err(Error::UnknownStatus(3))
        ));
    }

    #[test]
    fn sync_round_trip() {
        let mut out = Vec::new();
        let h = Header::call(0x2000_8086, 1, 23, 4);
        write_frame(&mut out, &h, &"name").unwrap();
        write_frame(&mut out, &h.reply(Status::Ok), &()).unwrap();
        let mut input = &out[..];
        let f = read_frame(&mut input).unwrap().unwrap();
        assert_eq!(
            (f.header, f.body::<String>().unwrap()),
            (h, "name".to_string())
        );
        assert_eq!(
            read_frame(&mut input).unwrap().unwrap().header.msg_type,
            MessageType::Reply
        );
        assert!(read_frame(&mut input).unwrap().is_none());
    }

    #[test]
    fn oversized_payload_not_encoded() {
        let big = vec![0u8; MESSAGE_MAX];
        let h = Header::call(1, 1, 1, 1);
        assert!(matches!(
            encode(&h, &serde_bytes_like(&big)),
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(encode_raw(&h, &big), Err(Error::TooLarge { .. })));
    }

    const RP: u32 = 0x2000_8086;

    fn decode_one(bytes: &[u8]) -> Frame {
        let mut dec = FrameDecoder::new();
        dec.feed(bytes);
        let f = dec.next_frame().unwrap().unwrap();
        assert_eq!(dec.pending(), 0);
        f
    }

    #[test]
    fn stream_data_bytes() {
        let bytes = stream_data(RP, 1, 209, 5, b"abcde").unwrap();
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 33,                 // 28 + 5: raw payload, no length word, no padding
            0x20, 0x00, 0x80, 0x86,
            0, 0, 0, 1,
            0, 0, 0, 209,                // the procedure that opened the stream
            0, 0, 0, 3,                  // STREAM
            0, 0, 0, 5,                  // the opening call's serial
            0, 0, 0, 2,                  // CONTINUE
            b'a', b'b', b'c', b'd', b'e',
        ];
        assert_eq!(bytes, expected);
        let f = decode_one(&bytes);
        assert_eq!(
            StreamPacket::decode(&f).unwrap(),
            StreamPacket::Data(b"abcde".to_vec())
        );
        assert_eq!(
            StreamPacket::Data(b"abcde".to_vec())
                .encode(RP, 1, 209, 5)
                .unwrap(),
            bytes
        );
        // an empty data packet is the daemon's end-of-file, still CONTINUE
        let eof = stream_data(RP, 1, 209, 5, &[]).unwrap();
        assert_eq!((eof.len(), eof[27]), (28, 2));
        assert_eq!(
            StreamPacket::decode(&decode_one(&eof)).unwrap(),
            StreamPacket::Data(Vec::new())
        );
    }

    #[test]
    fn stream_hole_bytes() {
        let bytes = stream_hole(RP, 1, 208, 7, 0x1_0000_0000).unwrap();
        assert_eq!(bytes.len(), 28 + 12);
        assert_eq!(
            &bytes[12..28],
            [0, 0, 0, 208, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0, 2]
        );
        assert_eq!(&bytes[28..], [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let f = decode_one(&bytes);
        assert_eq!(f.header.msg_type, MessageType::StreamHole);
        assert_eq!(
            StreamPacket::decode(&f).unwrap(),
            StreamPacket::Hole(StreamHole {
                length: 1 << 32,
                flags: 0
            })
        );
        // a hole packet without its 12 bytes is refused
        let mut short = bytes[..32].to_vec();
        short[3] = 32;
        assert!(matches!(
            StreamPacket::decode(&decode_one(&short)),
            Err(Error::Xdr(_))
        ));
    }

    #[test]
    fn stream_end_error_and_abort() {
        let end = stream_end(RP, 1, 209, 5).unwrap();
        assert_eq!(end.len(), 28);
        assert_eq!(&end[16..28], [0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0, 0]);
        assert_eq!(
            StreamPacket::decode(&decode_one(&end)).unwrap(),
            StreamPacket::End
        );

        let err = RemoteError::new(38, 38, "stream broke");
        let bytes = stream_error(RP, 1, 209, 5, &err).unwrap();
        assert_eq!(&bytes[16..28], [0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0, 1]);
        assert_eq!(&bytes[28..], crate::xdr::to_vec(&err).unwrap());
        assert_eq!(
            StreamPacket::decode(&decode_one(&bytes)).unwrap(),
            StreamPacket::Abort(Some(err.clone()))
        );
        assert_eq!(
            StreamPacket::Abort(Some(err))
                .encode(RP, 1, 209, 5)
                .unwrap(),
            bytes
        );

        let abort = stream_abort(RP, 1, 208, 9).unwrap();
        assert_eq!(abort.len(), 28);
        assert_eq!(
            StreamPacket::decode(&decode_one(&abort)).unwrap(),
            StreamPacket::Abort(None)
        );
    }

    #[test]
    fn stream_decode_refuses_other_frames() {
        for header in [
            Header::call(RP, 1, 209, 5),
            Header::call(RP, 1, 209, 5).reply(Status::Ok),
            Header::message(RP, 1, 370),
            Header::stream(RP, 1, 209, 5, MessageType::StreamHole, Status::Ok),
        ] {
            let f = decode_one(&encode(&header, &()).unwrap());
            assert!(
                matches!(StreamPacket::decode(&f), Err(Error::NotStream { .. })),
                "{header:?}"
            );
        }
        // the finish handshake carries nothing
        let h = Header::stream(RP, 1, 209, 5, MessageType::Stream, Status::Ok);
        let f = decode_one(&encode_raw(&h, &[1, 2, 3, 4]).unwrap());
        let err = StreamPacket::decode(&f).unwrap_err();
        assert!(matches!(err, Error::StreamPayload { len: 4, .. }) && !err.is_fatal());
        // a daemon error payload that is not a remote_error
        let h = Header::stream(RP, 1, 209, 5, MessageType::Stream, Status::Error);
        let f = decode_one(&encode_raw(&h, &[0, 0, 0, 1]).unwrap());
        assert!(matches!(StreamPacket::decode(&f), Err(Error::Xdr(_))));
    }

    #[test]
    fn stream_sequence_through_the_decoder() {
        let mut wire = Vec::new();
        wire.extend(stream_data(RP, 1, 209, 3, &[1; 1000]).unwrap());
        wire.extend(stream_hole(RP, 1, 209, 3, 4096).unwrap());
        wire.extend(stream_data(RP, 1, 209, 3, &[]).unwrap());
        wire.extend(stream_end(RP, 1, 209, 3).unwrap());
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(7) {
            dec.feed(chunk);
            while let Some(f) = dec.next_frame().unwrap() {
                assert_eq!((f.header.procedure, f.header.serial), (209, 3));
                got.push(StreamPacket::decode(&f).unwrap());
            }
        }
        assert_eq!(
            got,
            [
                StreamPacket::Data(vec![1; 1000]),
                StreamPacket::Hole(StreamHole {
                    length: 4096,
                    flags: 0
                }),
                StreamPacket::Data(Vec::new()),
                StreamPacket::End,
            ]
        );
        // a data chunk over the message limit is not encoded
        assert!(matches!(
            stream_data(RP, 1, 209, 3, &vec![0; PAYLOAD_MAX + 1]),
            Err(Error::TooLarge { .. })
        ));
        assert!(stream_data(RP, 1, 209, 3, &vec![0; STREAM_CHUNK_MAX]).is_ok());
    }

    fn serde_bytes_like(data: &[u8]) -> crate::protocol::Opaque {
        crate::protocol::Opaque(data.to_vec())
    }
}

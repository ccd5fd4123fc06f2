//! Raw protocol clients: error replies, keepalive, malformed frames, a frame fuzzer
//! and many concurrent connections. Loopback unix sockets only.

use crate::Daemon;
use rvirt_wire::protocol::{self, KEEPALIVE_PROGRAM, REMOTE_PROGRAM, RemoteError, error_code};
use rvirt_wire::remote::{ConnectGetTypeRet, ConnectOpenArgs, DomainLookupByNameArgs, DomainRet};
use rvirt_wire::{Frame, Header, MessageType, RemoteProcedure as P, Status, frame};
use serde::Serialize;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Raw {
    pub stream: UnixStream,
    serial: u32,
}

impl Raw {
    pub fn connect(path: &Path) -> Raw {
        let stream = UnixStream::connect(path).expect("connect to rvirtd");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw { stream, serial: 0 }
    }

    pub fn send_call<T: Serialize>(&mut self, prog: u32, procedure: i32, body: &T) -> u32 {
        self.serial += 1;
        let header = Header::call(prog, protocol::REMOTE_VERSION, procedure, self.serial);
        frame::write_frame(&mut self.stream, &header, body).expect("send call");
        self.serial
    }

    /// Next frame that is not an event or keepalive message.
    pub fn reply(&mut self) -> Frame {
        loop {
            let f = frame::read_frame(&mut self.stream)
                .expect("read reply")
                .expect("connection closed");
            if f.header.msg_type == MessageType::Reply {
                return f;
            }
        }
    }

    pub fn call<T: Serialize>(&mut self, procedure: P, body: &T) -> Frame {
        let serial = self.send_call(REMOTE_PROGRAM, procedure.number(), body);
        let f = self.reply();
        assert_eq!(f.header.serial, serial);
        f
    }

    pub fn open(&mut self) {
        let f = self.call(P::AuthList, &());
        assert_eq!(f.header.status, Status::Ok);
        let f = self.call(
            P::ConnectOpen,
            &ConnectOpenArgs {
                name: Some("test:///default".into()),
                flags: 0,
            },
        );
        assert_eq!(
            f.header.status,
            Status::Ok,
            "open failed: {:?}",
            f.body::<RemoteError>()
        );
    }

    pub fn get_type(&mut self) -> String {
        let f = self.call(P::ConnectGetType, &());
        assert_eq!(f.header.status, Status::Ok);
        f.body::<ConnectGetTypeRet>().unwrap().r#type
    }

    /// True once the daemon closed the connection (EOF or reset) within the timeout.
    fn closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

pub fn error_of(f: &Frame) -> RemoteError {
    assert_eq!(
        (f.header.msg_type, f.header.status),
        (MessageType::Reply, Status::Error)
    );
    f.body::<RemoteError>().expect("remote_error payload")
}

#[test]
fn error_replies_keep_the_connection() {
    let d = Daemon::start();
    let mut c = Raw::connect(&d.socket());
    // before CONNECT_OPEN
    let serial = c.send_call(REMOTE_PROGRAM, P::ConnectGetType.number(), &());
    let f = c.reply();
    assert_eq!(f.header.serial, serial);
    assert!(error_of(&f).message.unwrap().contains("not open"));
    c.open();
    // an unknown procedure: VIR_ERR_NO_SUPPORT naming the number
    c.send_call(REMOTE_PROGRAM, 9999, &());
    let e = error_of(&c.reply());
    assert_eq!(e.code, error_code::NO_SUPPORT);
    assert!(e.message.unwrap().contains("9999"));
    // an unknown program
    c.send_call(0x1234_5678, 1, &());
    let f = c.reply();
    assert_eq!(f.header.prog, 0x1234_5678);
    assert_eq!(error_of(&f).code, error_code::RPC);
    // arguments that do not decode
    let serial = c.send_call(
        REMOTE_PROGRAM,
        P::DomainLookupByName.number(),
        &[0u8, 0, 0, 99],
    );
    let f = c.reply();
    assert_eq!(f.header.serial, serial);
    assert_eq!(error_of(&f).code, error_code::RPC);
    // the driver's own error, code and domain preserved
    let f = c.call(
        P::DomainLookupByName,
        &DomainLookupByNameArgs {
            name: "nope".into(),
        },
    );
    let e = error_of(&f);
    assert_eq!(e.code, error_code::NO_DOMAIN);
    assert!(e.message.unwrap().contains("nope"));
    // still serving
    assert_eq!(c.get_type(), "Test");
    let f = c.call(
        P::DomainLookupByName,
        &DomainLookupByNameArgs {
            name: "test".into(),
        },
    );
    assert_eq!(f.body::<DomainRet>().unwrap().dom.name, "test");
}

#[test]
fn keepalive_ping_gets_pong() {
    let d = Daemon::start();
    let mut c = Raw::connect(&d.socket());
    c.open();
    let ping = Header::message(
        KEEPALIVE_PROGRAM,
        protocol::KEEPALIVE_VERSION,
        protocol::KEEPALIVE_PING,
    );
    frame::write_frame(&mut c.stream, &ping, &()).unwrap();
    let f = frame::read_frame(&mut c.stream).unwrap().unwrap();
    assert_eq!(
        (f.header.prog, f.header.procedure, f.header.msg_type),
        (KEEPALIVE_PROGRAM, 2, MessageType::Message)
    );
}

#[test]
fn oversized_and_truncated_frames() {
    let d = Daemon::start();
    let mut good = Raw::connect(&d.socket());
    good.open();
    // a length word over 32 MiB: refused before any body arrives
    let mut big = Raw::connect(&d.socket());
    big.stream
        .write_all(&((frame::MESSAGE_MAX + 100) as u32).to_be_bytes())
        .unwrap();
    assert!(
        big.closed_by_peer(),
        "oversized frame did not close the connection"
    );
    // a length word under the header size
    let mut short = Raw::connect(&d.socket());
    short.stream.write_all(&[0, 0, 0, 8, 1, 2, 3, 4]).unwrap();
    assert!(short.closed_by_peer());
    // half a frame, then hang up
    let mut half = Raw::connect(&d.socket());
    let bytes = frame::encode(&Header::call(REMOTE_PROGRAM, 1, 66, 1), &[0u8; 32]).unwrap();
    half.stream.write_all(&bytes[..40]).unwrap();
    drop(half);
    // an unknown message type in an otherwise valid frame
    let mut bad_type = Raw::connect(&d.socket());
    let mut bytes = frame::encode(&Header::call(REMOTE_PROGRAM, 1, 66, 1), &()).unwrap();
    bytes[19] = 77;
    bad_type.stream.write_all(&bytes).unwrap();
    assert!(bad_type.closed_by_peer());
    // the well-behaved client never noticed
    assert_eq!(good.get_type(), "Test");
}

/// xorshift64*: deterministic, dependency-free randomness for the fuzzer.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn fuzz_case(rng: &mut Rng, socket: &Path) {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return;
    };
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let procs = P::ALL;
    let open = frame::encode(
        &Header::call(REMOTE_PROGRAM, 1, 1, 1),
        &ConnectOpenArgs {
            name: None,
            flags: 0,
        },
    )
    .unwrap();
    let mut out = Vec::new();
    if rng.below(2) == 0 {
        out.extend_from_slice(&open);
    }
    for _ in 0..1 + rng.below(4) {
        match rng.below(7) {
            // random garbage
            0 => {
                let n = rng.below(200) as usize;
                out.extend(rng.bytes(n));
            }
            // a known procedure with a random payload
            1 | 2 => {
                let p = procs[rng.below(procs.len() as u64) as usize];
                let n = rng.below(64) as usize;
                let payload = rng.bytes(n);
                out.extend(
                    frame::encode_raw(&Header::call(REMOTE_PROGRAM, 1, p.number(), 7), &payload)
                        .unwrap(),
                );
            }
            // a random header: program, version, type and status
            3 => {
                let mut f =
                    frame::encode_raw(&Header::call(REMOTE_PROGRAM, 1, 3, 1), &rng.bytes(8))
                        .unwrap();
                let at = 4 + 4 * rng.below(6) as usize;
                f[at..at + 4].copy_from_slice(&(rng.next() as u32).to_be_bytes());
                out.extend(f);
            }
            // truncated frame
            4 => {
                let f = frame::encode_raw(&Header::call(REMOTE_PROGRAM, 1, 23, 2), &rng.bytes(40))
                    .unwrap();
                out.extend_from_slice(&f[..rng.below(f.len() as u64) as usize]);
            }
            // oversized or tiny length word
            5 => out.extend_from_slice(&(rng.next() as u32 | 0x0200_0000).to_be_bytes()),
            _ => out.extend_from_slice(&(rng.below(28) as u32).to_be_bytes()),
        }
    }
    let _ = s.write_all(&out);
    let mut buf = [0u8; 8192];
    let _ = s.read(&mut buf);
}

#[test]
fn fuzz_frames() {
    let d = Daemon::start();
    let mut rng = Rng(0x5eed_1234_abcd_0001 ^ u64::from(std::process::id()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut cases = 0;
    while cases < 400 && Instant::now() < deadline {
        fuzz_case(&mut rng, &d.socket());
        cases += 1;
    }
    assert!(cases >= 50, "only {cases} fuzz cases in the time budget");
    let mut c = Raw::connect(&d.socket());
    c.open();
    assert_eq!(c.get_type(), "Test");
    crate::virsh::virsh_list_works(&d);
}

#[test]
fn thousands_of_connections() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    let _ = setrlimit(Resource::Nofile, lim);
    let want: usize = match getrlimit(Resource::Nofile).current {
        Some(n) if n < 2300 => (n as usize).saturating_sub(300).max(100),
        _ => 2000,
    };
    let d = Daemon::start();
    let mut conns: Vec<Raw> = (0..want).map(|_| Raw::connect(&d.socket())).collect();
    for c in &mut conns {
        c.send_call(REMOTE_PROGRAM, P::AuthList.number(), &());
    }
    for c in &mut conns {
        let f = c.reply();
        assert_eq!(f.header.status, Status::Ok);
    }
    // all of them still open: the daemon serves a fresh client at the same time
    let mut extra = Raw::connect(&d.socket());
    extra.open();
    assert_eq!(extra.get_type(), "Test");
    for c in conns.iter_mut().step_by(97) {
        c.open();
        assert_eq!(c.get_type(), "Test");
    }
    drop(conns);
    assert_eq!(extra.get_type(), "Test");
}

#[test]
fn pipelined_calls_all_answered() {
    let d = Daemon::start();
    let mut c = Raw::connect(&d.socket());
    c.open();
    // many slow-path calls sent at once: the daemon runs a few at a time and answers all
    let n = 200;
    let mut serials = Vec::new();
    for i in 0..n {
        let xml = crate::domain_xml(&format!("pipe{i}"));
        serials.push(c.send_call(REMOTE_PROGRAM, P::DomainDefineXml.number(), &xml));
    }
    let mut answered = Vec::new();
    for _ in 0..n {
        let f = c.reply();
        assert_eq!(f.header.status, Status::Ok, "{:?}", f.body::<RemoteError>());
        answered.push(f.header.serial);
    }
    answered.sort_unstable();
    assert_eq!(answered, serials);
}

#[test]
fn keepalive_timeout_drops_silent_client() {
    let d = Daemon::start_with_config("keepalive_interval = 1\nkeepalive_count = 1\n");
    let mut c = Raw::connect(&d.socket());
    c.open();
    let f = c.call(
        P::ConnectSupportsFeature,
        &rvirt_wire::remote::ConnectSupportsFeatureArgs {
            feature: protocol::feature::PROGRAM_KEEPALIVE,
        },
    );
    assert_eq!(f.header.status, Status::Ok);
    // never answer: the daemon pings, then gives up
    let start = Instant::now();
    let mut pings = 0;
    loop {
        match frame::read_frame(&mut c.stream) {
            Ok(Some(f)) if f.header.prog == KEEPALIVE_PROGRAM => pings += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
        assert!(
            start.elapsed() < Duration::from_secs(9),
            "not dropped after {pings} pings"
        );
    }
    assert!(pings >= 1, "closed without a ping");
    // a client that answers stays
    let mut alive = Raw::connect(&d.socket());
    alive.open();
    assert_eq!(alive.get_type(), "Test");
}

#[test]
fn legacy_event_registrations() {
    let d = Daemon::start();
    let mut watcher = Raw::connect(&d.socket());
    watcher.open();
    // the oldest API (105) and the per-event-id one (167): both get DOMAIN_EVENT_LIFECYCLE (107)
    let f = watcher.call(P::ConnectDomainEventRegister, &());
    assert_eq!(f.header.status, Status::Ok);
    let mut actor = Raw::connect(&d.socket());
    actor.open();
    let f = actor.call(
        P::DomainDefineXml,
        &rvirt_wire::remote::DomainDefineXmlArgs {
            xml: crate::domain_xml("legacy1"),
        },
    );
    assert_eq!(f.header.status, Status::Ok);
    let ev = frame::read_frame(&mut watcher.stream).unwrap().unwrap();
    assert_eq!(
        (ev.header.msg_type, ev.header.procedure),
        (MessageType::Message, 107)
    );
    let msg: rvirt_wire::remote::DomainEventLifecycleMsg = ev.body().unwrap();
    assert_eq!(
        (msg.dom.name.as_str(), msg.event),
        ("legacy1", protocol::lifecycle::DEFINED)
    );
    let f = watcher.call(P::ConnectDomainEventDeregister, &());
    assert_eq!(f.header.status, Status::Ok);
    // registering a second time by event id is refused only while the first is active
    let args = rvirt_wire::remote::ConnectDomainEventRegisterAnyArgs { event_id: 0 };
    assert_eq!(
        watcher
            .call(P::ConnectDomainEventRegisterAny, &args)
            .header
            .status,
        Status::Ok
    );
    assert_eq!(
        watcher
            .call(P::ConnectDomainEventRegisterAny, &args)
            .header
            .status,
        Status::Error
    );
    assert_eq!(
        watcher
            .call(P::ConnectDomainEventDeregisterAny, &args)
            .header
            .status,
        Status::Ok
    );
}

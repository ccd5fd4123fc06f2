//! The storage, secret and stream layouts against the real implementation: Debian's
//! libvirtd, run privately with `shared/bench/lvd.py`, driven with raw frames built from
//! this crate's types. Every reply is decoded with those types; a decode error or a byte
//! left over fails the test (`Frame::body` uses the whole payload).
//!
//! - `test:///default`: pools and volumes of libvirt's test driver (lookups, info, XML,
//!   lists, volume create/clone/delete, pool define/build/start/stop/delete/undefine and
//!   their lifecycle and refresh event messages);
//! - `secret:///system`: the daemon's secret driver (define, set/get value, lookups,
//!   lists, undefine, the secret event messages);
//! - `storage:///system`: a `dir` pool in a temporary directory, for what the test driver
//!   does not implement: upload and download streams (data, holes, end of file, the
//!   finish handshake), resize, wipe, info flags, lookup by target path;
//! - read-only connections: every storage and secret procedure the table leaves
//!   unmarked is refused by libvirtd with `VIR_ERR_OPERATION_DENIED`, and none it marks
//!   `#[ro]` is; the same for every network and network port procedure (on the test
//!   driver's networks).
//!
//! Needs root and `/usr/sbin/libvirtd`; without them it says so loudly and fails unless
//! `RVIRT_ALLOW_SKIP=1`.

use rvirt_wire::frame::{self, Frame, Header, MessageType, Status, StreamHole, StreamPacket};
use rvirt_wire::protocol::{
    self, NonnullSecret, NonnullStoragePool, NonnullStorageVol, REMOTE_PROGRAM, REMOTE_VERSION,
    RemoteError, error_code, error_domain, secret_event, secret_usage, storage_pool_event,
    storage_pool_state, storage_vol_type,
};
use rvirt_wire::remote::{self, Access, Procedure, RemoteProcedure, procs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const POOL: &str = "default-pool";

// ----- the private libvirtd -----

fn shared_dir() -> PathBuf {
    std::env::var_os("RVIRT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// The rule of `rvirt-tests`: a test that cannot run says why and fails, unless
/// `RVIRT_ALLOW_SKIP=1`.
fn cannot_run(test: &str, why: &str) {
    let msg = format!("\n!!!!! {test} DID NOT RUN: {why}\n");
    if std::env::var("RVIRT_ALLOW_SKIP").as_deref() == Ok("1") {
        eprintln!("{msg}(RVIRT_ALLOW_SKIP=1)\n");
    } else {
        panic!("{msg}(set RVIRT_ALLOW_SKIP=1 to skip)");
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

struct Libvirtd {
    lvd: PathBuf,
    dir: PathBuf,
}

impl Libvirtd {
    fn py(lvd: &Path, args: &[&str]) -> String {
        let o = Command::new("/usr/bin/python3")
            .arg(lvd)
            .args(args)
            .output()
            .expect("run lvd.py");
        assert!(
            o.status.success(),
            "lvd.py {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn start(lvd: PathBuf) -> Libvirtd {
        let dir = std::env::temp_dir().join(format!("rvirt-wire-lvd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.to_str().unwrap().to_string();
        Self::py(&lvd, &["prepare", &d]);
        Self::py(&lvd, &["start", &d, "--no-qemu"]);
        Libvirtd { lvd, dir }
    }

    /// The daemon's read-write socket, from `lvd.py uri DIR test`.
    fn socket(&self) -> PathBuf {
        let uri = Self::py(&self.lvd, &["uri", self.dir.to_str().unwrap(), "test"]);
        let path = uri
            .split_once("socket=")
            .map(|(_, rest)| rest.split('&').next().unwrap())
            .unwrap_or_else(|| panic!("no socket= in {uri}"));
        PathBuf::from(path)
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let _ = Command::new("/usr/bin/python3")
            .arg(&self.lvd)
            .args(["stop", self.dir.to_str().unwrap()])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ----- a raw-frame client -----

struct Client {
    sock: UnixStream,
    serial: u32,
    /// MESSAGE frames (events) received while waiting for replies.
    events: Vec<Frame>,
}

impl Client {
    /// AUTH_LIST then CONNECT_OPEN, as libvirt's remote driver does.
    fn open(socket: &Path, uri: &str, flags: u32) -> Client {
        let sock = UnixStream::connect(socket).expect("connect to libvirtd");
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut c = Client {
            sock,
            serial: 0,
            events: Vec::new(),
        };
        let auth = c.ok::<procs::AuthList>(&());
        assert!(
            auth.types.contains(&protocol::auth::NONE),
            "the private libvirtd asks for authentication: {:?}",
            auth.types
        );
        c.ok::<procs::ConnectOpen>(&remote::ConnectOpenArgs {
            name: Some(uri.into()),
            flags,
        });
        c
    }

    fn read(&mut self) -> Frame {
        frame::read_frame(&mut self.sock)
            .expect("read a frame from libvirtd")
            .expect("libvirtd closed the connection")
    }

    fn send<P: Procedure>(&mut self, args: &P::Args) -> u32 {
        self.serial += 1;
        let header = Header::call(
            REMOTE_PROGRAM,
            REMOTE_VERSION,
            P::PROC.number(),
            self.serial,
        );
        frame::write_frame(&mut self.sock, &header, args).expect("write a call");
        self.serial
    }

    /// Waits for the reply to `serial`, keeping events aside.
    fn reply<P: Procedure>(&mut self, serial: u32) -> Result<P::Ret, Box<RemoteError>> {
        loop {
            let f = self.read();
            if f.header.msg_type == MessageType::Message {
                self.events.push(f);
                continue;
            }
            let h = f.header;
            assert_eq!(
                (h.prog, h.vers, h.procedure, h.msg_type, h.serial),
                (
                    REMOTE_PROGRAM,
                    REMOTE_VERSION,
                    P::PROC.number(),
                    MessageType::Reply,
                    serial
                ),
                "reply header to {}",
                P::PROC.name()
            );
            return match h.status {
                Status::Ok => Ok(f.body::<P::Ret>().unwrap_or_else(|e| {
                    panic!(
                        "{}: the reply does not decode as {}: {e} ({} bytes)",
                        P::PROC.name(),
                        std::any::type_name::<P::Ret>(),
                        f.payload.len()
                    )
                })),
                Status::Error => Err(Box::new(f.body::<RemoteError>().unwrap_or_else(|e| {
                    panic!("{}: the error does not decode: {e}", P::PROC.name())
                }))),
                Status::Continue => panic!("{}: a reply with status CONTINUE", P::PROC.name()),
            };
        }
    }

    fn call<P: Procedure>(&mut self, args: &P::Args) -> Result<P::Ret, Box<RemoteError>> {
        let serial = self.send::<P>(args);
        self.reply::<P>(serial)
    }

    fn ok<P: Procedure>(&mut self, args: &P::Args) -> P::Ret {
        self.call::<P>(args)
            .unwrap_or_else(|e| panic!("{}: {e}", P::PROC.name()))
    }

    /// The error of a call that must fail, checked for its code and domain.
    fn fails<P: Procedure>(&mut self, args: &P::Args, code: i32, domain: i32) -> RemoteError
    where
        P::Ret: std::fmt::Debug,
    {
        match self.call::<P>(args) {
            Ok(ret) => panic!("{} succeeded: {ret:?}", P::PROC.name()),
            Err(e) => {
                assert_eq!(
                    (e.code, e.domain),
                    (code, domain),
                    "{}: {e}",
                    P::PROC.name()
                );
                *e
            }
        }
    }

    /// The next event message of procedure `P`, decoded as `P::Args`.
    fn event<P: Procedure>(&mut self) -> P::Args {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|f| f.header.procedure == P::PROC.number())
            {
                let f = self.events.remove(i);
                // libvirtd's remoteDispatchObjectEventSend puts serial 1 on every event
                // (clients ignore it); keepalive messages carry 0
                assert_eq!(
                    (f.header.prog, f.header.serial, f.header.status),
                    (REMOTE_PROGRAM, 1, Status::Ok)
                );
                return f.body::<P::Args>().unwrap_or_else(|e| {
                    panic!("{}: the event does not decode: {e}", P::PROC.name())
                });
            }
            assert!(
                Instant::now() < deadline,
                "no {} event; got {:?}",
                P::PROC.name(),
                self.events
                    .iter()
                    .map(|f| f.header.procedure)
                    .collect::<Vec<_>>()
            );
            let f = self.read();
            assert_eq!(f.header.msg_type, MessageType::Message, "{:?}", f.header);
            self.events.push(f);
        }
    }

    /// The next frame, which must be a packet of the stream opened by call `serial`.
    fn stream_packet<P: Procedure>(&mut self, serial: u32) -> StreamPacket {
        loop {
            let f = self.read();
            if f.header.msg_type == MessageType::Message {
                self.events.push(f);
                continue;
            }
            assert_eq!(
                (f.header.prog, f.header.procedure, f.header.serial),
                (REMOTE_PROGRAM, P::PROC.number(), serial),
                "{:?}",
                f.header
            );
            return StreamPacket::decode(&f)
                .unwrap_or_else(|e| panic!("{}: stream packet: {e}", P::PROC.name()));
        }
    }

    fn send_packet<P: Procedure>(&mut self, serial: u32, packet: &StreamPacket) {
        use std::io::Write;
        let bytes = packet
            .encode(REMOTE_PROGRAM, REMOTE_VERSION, P::PROC.number(), serial)
            .unwrap();
        self.sock.write_all(&bytes).expect("write a stream packet");
    }
}

fn uuid_string(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[test]
fn wire_types_match_debians_libvirtd() {
    let lvd = shared_dir().join("bench/lvd.py");
    if !(Path::new("/usr/sbin/libvirtd").is_file() && lvd.is_file() && running_as_root()) {
        cannot_run(
            "wire_types_match_debians_libvirtd",
            &format!(
                "needs root, /usr/sbin/libvirtd (apt-get install libvirt-daemon) and {}",
                lvd.display()
            ),
        );
        return;
    }
    let daemon = Libvirtd::start(lvd);
    let socket = daemon.socket();
    test_driver_pools_and_volumes(&socket);
    secrets(&socket);
    dir_pool_streams(&socket, &daemon.dir.join("pool"));
    read_only_classes(&socket);
    network_read_only_classes(&socket);
}

/// Pools and volumes of `test:///default`, and the storage pool event messages.
fn test_driver_pools_and_volumes(socket: &Path) {
    let mut c = Client::open(socket, "test:///default", 0);

    // lists, old and new
    let all = c.ok::<procs::ConnectListAllStoragePools>(&remote::ListAllArgs {
        need_results: 1,
        flags: 0,
    });
    assert_eq!(all.ret as usize, all.pools.len());
    let pool = all
        .pools
        .iter()
        .find(|p| p.name == POOL)
        .unwrap_or_else(|| panic!("{POOL} not in {:?}", all.pools))
        .clone();
    let active = c.ok::<procs::ConnectNumOfStoragePools>(&()).num;
    let names = c.ok::<procs::ConnectListStoragePools>(&remote::MaxNamesArgs { maxnames: 64 });
    assert_eq!(names.names.len(), active as usize);
    assert!(names.names.iter().any(|n| n == POOL));
    let defined = c.ok::<procs::ConnectNumOfDefinedStoragePools>(&()).num;
    let inactive =
        c.ok::<procs::ConnectListDefinedStoragePools>(&remote::MaxNamesArgs { maxnames: 64 });
    assert_eq!(inactive.names.len(), defined as usize);

    // lookups, info, XML
    let by_name = c.ok::<procs::StoragePoolLookupByName>(&remote::NameArgs { name: POOL.into() });
    assert_eq!(by_name.pool, pool);
    let by_uuid = c.ok::<procs::StoragePoolLookupByUuid>(&remote::UuidArgs { uuid: pool.uuid });
    assert_eq!(by_uuid.pool, pool);
    let e = c.fails::<procs::StoragePoolLookupByName>(
        &remote::NameArgs {
            name: "no-such-pool".into(),
        },
        error_code::NO_STORAGE_POOL,
        error_domain::TEST,
    );
    assert!(e.message.unwrap_or_default().contains("no-such-pool"));
    let pool_args = remote::StoragePoolArgs { pool: pool.clone() };
    let info = c.ok::<procs::StoragePoolGetInfo>(&pool_args);
    assert_eq!(info.state, storage_pool_state::RUNNING);
    assert!(
        info.capacity > 0 && info.capacity >= info.allocation,
        "{info:?}"
    );
    let xml = c.ok::<procs::StoragePoolGetXmlDesc>(&remote::StoragePoolFlagsArgs {
        pool: pool.clone(),
        flags: 0,
    });
    assert!(xml.xml.contains("<name>default-pool</name>"), "{}", xml.xml);
    assert_eq!(c.ok::<procs::StoragePoolIsActive>(&pool_args).active, 1);
    assert_eq!(
        c.ok::<procs::StoragePoolIsPersistent>(&pool_args)
            .persistent,
        1
    );
    assert_eq!(
        c.ok::<procs::StoragePoolGetAutostart>(&pool_args).autostart,
        0
    );
    // what the test driver does not implement still answers a decodable error
    c.fails::<procs::StoragePoolLookupByTargetPath>(
        &remote::PathArgs {
            path: "/default-pool".into(),
        },
        error_code::NO_SUPPORT,
        error_domain::STORAGE,
    );
    // the arguments arrive intact: libvirt read the type and found no host in the spec
    let e = c.fails::<procs::ConnectFindStoragePoolSources>(
        &remote::ConnectFindStoragePoolSourcesArgs {
            r#type: "netfs".into(),
            src_spec: None,
            flags: 0,
        },
        error_code::INVALID_ARG,
        error_domain::TEST,
    );
    assert!(e.message.unwrap_or_default().contains("netfs"));

    // events: refresh and lifecycle
    let refresh_cb = c
        .ok::<procs::ConnectStoragePoolEventRegisterAny>(
            &remote::ConnectStoragePoolEventRegisterAnyArgs {
                event_id: storage_pool_event::ID_REFRESH,
                pool: Some(pool.clone()),
            },
        )
        .callback_id;
    let lifecycle_cb = c
        .ok::<procs::ConnectStoragePoolEventRegisterAny>(
            &remote::ConnectStoragePoolEventRegisterAnyArgs {
                event_id: storage_pool_event::ID_LIFECYCLE,
                pool: None,
            },
        )
        .callback_id;
    c.ok::<procs::StoragePoolRefresh>(&remote::StoragePoolFlagsArgs {
        pool: pool.clone(),
        flags: 0,
    });
    let ev = c.event::<procs::StoragePoolEventRefresh>();
    assert_eq!((ev.callback_id, &ev.pool), (refresh_cb, &pool));

    // volumes
    let vol = c
        .ok::<procs::StorageVolCreateXml>(&remote::StorageVolCreateXmlArgs {
            pool: pool.clone(),
            xml: "<volume><name>rvirt-wire.img</name><capacity unit='M'>1</capacity></volume>"
                .into(),
            flags: 0,
        })
        .vol;
    assert_eq!(
        (vol.pool.as_str(), vol.name.as_str()),
        (POOL, "rvirt-wire.img")
    );
    let listed = c.ok::<procs::StoragePoolListAllVolumes>(&remote::StoragePoolListAllVolumesArgs {
        pool: pool.clone(),
        need_results: 1,
        flags: 0,
    });
    assert_eq!(listed.ret as usize, listed.vols.len());
    assert!(listed.vols.contains(&vol), "{:?}", listed.vols);
    let n = c.ok::<procs::StoragePoolNumOfVolumes>(&pool_args).num;
    let names = c.ok::<procs::StoragePoolListVolumes>(&remote::StoragePoolListVolumesArgs {
        pool: pool.clone(),
        maxnames: 64,
    });
    assert_eq!(names.names.len(), n as usize);
    assert!(names.names.contains(&vol.name));
    let vol_args = remote::StorageVolArgs { vol: vol.clone() };
    let info = c.ok::<procs::StorageVolGetInfo>(&vol_args);
    assert_eq!(
        (info.r#type, info.capacity),
        (storage_vol_type::FILE, 1 << 20),
        "{info:?}"
    );
    let path = c.ok::<procs::StorageVolGetPath>(&vol_args).name;
    assert_eq!(path, "/default-pool/rvirt-wire.img");
    let xml = c.ok::<procs::StorageVolGetXmlDesc>(&remote::StorageVolFlagsArgs {
        vol: vol.clone(),
        flags: 0,
    });
    assert!(
        xml.xml.contains("<name>rvirt-wire.img</name>"),
        "{}",
        xml.xml
    );
    let lookups = [
        c.ok::<procs::StorageVolLookupByName>(&remote::StorageVolLookupByNameArgs {
            pool: pool.clone(),
            name: vol.name.clone(),
        }),
        c.ok::<procs::StorageVolLookupByKey>(&remote::StorageVolLookupByKeyArgs {
            key: vol.key.clone(),
        }),
        c.ok::<procs::StorageVolLookupByPath>(&remote::PathArgs { path: path.clone() }),
    ];
    for found in lookups {
        assert_eq!(found.vol, vol);
    }
    assert_eq!(
        c.ok::<procs::StoragePoolLookupByVolume>(&vol_args).pool,
        pool
    );
    let clone = c
        .ok::<procs::StorageVolCreateXmlFrom>(&remote::StorageVolCreateXmlFromArgs {
            pool: pool.clone(),
            xml:
                "<volume><name>rvirt-wire-clone.img</name><capacity unit='M'>1</capacity></volume>"
                    .into(),
            clonevol: vol.clone(),
            flags: 0,
        })
        .vol;
    assert_eq!(clone.name, "rvirt-wire-clone.img");
    for v in [&clone, &vol] {
        c.ok::<procs::StorageVolDelete>(&remote::StorageVolFlagsArgs {
            vol: v.clone(),
            flags: 0,
        });
    }
    c.fails::<procs::StorageVolGetInfo>(&vol_args, error_code::NO_STORAGE_VOL, error_domain::TEST);

    // a pool's whole life, with its lifecycle events
    let xml =
        "<pool type='dir'><name>rvirt-wire</name><target><path>/rvirt-wire</path></target></pool>";
    let p = c
        .ok::<procs::StoragePoolDefineXml>(&remote::XmlFlagsArgs {
            xml: xml.into(),
            flags: 0,
        })
        .pool;
    let flags = |pool: &NonnullStoragePool| remote::StoragePoolFlagsArgs {
        pool: pool.clone(),
        flags: 0,
    };
    let just = |pool: &NonnullStoragePool| remote::StoragePoolArgs { pool: pool.clone() };
    c.ok::<procs::StoragePoolBuild>(&flags(&p));
    c.ok::<procs::StoragePoolCreate>(&flags(&p));
    c.ok::<procs::StoragePoolSetAutostart>(&remote::StoragePoolSetAutostartArgs {
        pool: p.clone(),
        autostart: 1,
    });
    assert_eq!(
        c.ok::<procs::StoragePoolGetAutostart>(&just(&p)).autostart,
        1
    );
    c.ok::<procs::StoragePoolDestroy>(&just(&p));
    c.ok::<procs::StoragePoolDelete>(&flags(&p));
    c.ok::<procs::StoragePoolUndefine>(&just(&p));
    let transient = c
        .ok::<procs::StoragePoolCreateXml>(&remote::XmlFlagsArgs {
            xml: xml.replace("rvirt-wire", "rvirt-wire-t"),
            flags: 0,
        })
        .pool;
    assert_eq!(
        c.ok::<procs::StoragePoolIsPersistent>(&just(&transient))
            .persistent,
        0
    );
    c.ok::<procs::StoragePoolDestroy>(&just(&transient));
    let mut seen = Vec::new();
    for _ in 0..8 {
        let ev = c.event::<procs::StoragePoolEventLifecycle>();
        assert_eq!(ev.callback_id, lifecycle_cb);
        seen.push((ev.pool.name, ev.event));
    }
    use storage_pool_event::{CREATED, DEFINED, DELETED, STARTED, STOPPED, UNDEFINED};
    let w = |s: &str, e| (s.to_string(), e);
    assert_eq!(
        seen,
        [
            w("rvirt-wire", DEFINED),
            w("rvirt-wire", CREATED), // build
            w("rvirt-wire", STARTED),
            w("rvirt-wire", STOPPED),
            w("rvirt-wire", DELETED),
            w("rvirt-wire", UNDEFINED),
            w("rvirt-wire-t", STARTED),
            w("rvirt-wire-t", STOPPED),
        ],
        "lifecycle events"
    );
    for cb in [refresh_cb, lifecycle_cb] {
        c.ok::<procs::ConnectStoragePoolEventDeregisterAny>(&remote::CallbackIdArgs {
            callback_id: cb,
        });
    }
}

/// The daemon's secret driver (`secret:///system`).
fn secrets(socket: &Path) {
    let mut c = Client::open(socket, "secret:///system", 0);
    let before = c.ok::<procs::ConnectListAllSecrets>(&remote::ListAllArgs {
        need_results: 1,
        flags: 0,
    });
    assert_eq!(before.ret as usize, before.secrets.len());
    let lifecycle_cb = c
        .ok::<procs::ConnectSecretEventRegisterAny>(&remote::ConnectSecretEventRegisterAnyArgs {
            event_id: secret_event::ID_LIFECYCLE,
            secret: None,
        })
        .callback_id;
    let value_cb = c
        .ok::<procs::ConnectSecretEventRegisterAny>(&remote::ConnectSecretEventRegisterAnyArgs {
            event_id: secret_event::ID_VALUE_CHANGED,
            secret: None,
        })
        .callback_id;

    let usage = "/var/lib/rvirt-wire/disk.img";
    let secret = c
        .ok::<procs::SecretDefineXml>(&remote::XmlFlagsArgs {
            xml: format!(
                "<secret ephemeral='no' private='no'><usage type='volume'><volume>{usage}</volume></usage></secret>"
            ),
            flags: 0,
        })
        .secret;
    assert_eq!(
        (secret.usage_type, secret.usage_id.as_str()),
        (secret_usage::VOLUME, usage)
    );
    let ev = c.event::<procs::SecretEventLifecycle>();
    assert_eq!(
        (ev.callback_id, &ev.secret, ev.event),
        (lifecycle_cb, &secret, secret_event::DEFINED)
    );

    let by_uuid = c.ok::<procs::SecretLookupByUuid>(&remote::UuidArgs { uuid: secret.uuid });
    assert_eq!(by_uuid.secret, secret);
    let by_usage = c.ok::<procs::SecretLookupByUsage>(&remote::SecretLookupByUsageArgs {
        usage_type: secret_usage::VOLUME,
        usage_id: usage.into(),
    });
    assert_eq!(by_usage.secret, secret);
    let xml = c.ok::<procs::SecretGetXmlDesc>(&remote::SecretFlagsArgs {
        secret: secret.clone(),
        flags: 0,
    });
    assert!(xml.xml.contains(usage), "{}", xml.xml);
    assert!(xml.xml.contains(&uuid_string(&secret.uuid)), "{}", xml.xml);
    let all = c.ok::<procs::ConnectListAllSecrets>(&remote::ListAllArgs {
        need_results: 1,
        flags: 0,
    });
    assert!(all.secrets.contains(&secret));
    let n = c.ok::<procs::ConnectNumOfSecrets>(&()).num;
    let uuids = c.ok::<procs::ConnectListSecrets>(&remote::ConnectListSecretsArgs { maxuuids: 64 });
    assert_eq!(uuids.uuids.len(), n as usize);
    assert!(
        uuids.uuids.contains(&uuid_string(&secret.uuid)),
        "{:?}",
        uuids.uuids
    );

    // no value yet, then an odd-length binary one (opaque padding both ways)
    let get = remote::SecretFlagsArgs {
        secret: secret.clone(),
        flags: 0,
    };
    c.fails::<procs::SecretGetValue>(&get, error_code::NO_SECRET, error_domain::SECRET);
    let value = vec![0, 1, 2, 0xff, 0xfe, b'x', 0];
    c.ok::<procs::SecretSetValue>(&remote::SecretSetValueArgs {
        secret: secret.clone(),
        value: value.clone(),
        flags: 0,
    });
    let ev = c.event::<procs::SecretEventValueChanged>();
    assert_eq!((ev.callback_id, &ev.secret), (value_cb, &secret));
    assert_eq!(c.ok::<procs::SecretGetValue>(&get).value, value);

    c.ok::<procs::SecretUndefine>(&remote::SecretArgs {
        secret: secret.clone(),
    });
    let ev = c.event::<procs::SecretEventLifecycle>();
    assert_eq!(
        (ev.callback_id, ev.event),
        (lifecycle_cb, secret_event::UNDEFINED)
    );
    c.fails::<procs::SecretLookupByUuid>(
        &remote::UuidArgs { uuid: secret.uuid },
        error_code::NO_SECRET,
        error_domain::SECRET,
    );
    for cb in [lifecycle_cb, value_cb] {
        c.ok::<procs::ConnectSecretEventDeregisterAny>(&remote::CallbackIdArgs { callback_id: cb });
    }
}

/// A `dir` pool of the daemon's storage driver: streams and the volume operations the
/// test driver lacks.
fn dir_pool_streams(socket: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut c = Client::open(socket, "storage:///system", 0);
    let target = dir.to_str().unwrap();
    let pool = c
        .ok::<procs::StoragePoolCreateXml>(&remote::XmlFlagsArgs {
            xml: format!(
                "<pool type='dir'><name>rvirt-wire-dir</name><target><path>{target}</path></target></pool>"
            ),
            flags: 0,
        })
        .pool;
    assert_eq!(
        c.ok::<procs::StoragePoolLookupByTargetPath>(&remote::PathArgs {
            path: target.into()
        })
        .pool,
        pool
    );
    let xml = c.ok::<procs::StoragePoolGetXmlDesc>(&remote::StoragePoolFlagsArgs {
        pool: pool.clone(),
        flags: protocol::STORAGE_XML_INACTIVE,
    });
    assert!(xml.xml.contains(target), "{}", xml.xml);
    let caps = c.ok::<procs::ConnectGetStoragePoolCapabilities>(
        &remote::ConnectGetStoragePoolCapabilitiesArgs { flags: 0 },
    );
    assert!(
        caps.capabilities.contains("<storagepoolCapabilities"),
        "{}",
        caps.capabilities
    );

    let vol = c
        .ok::<procs::StorageVolCreateXml>(&remote::StorageVolCreateXmlArgs {
            pool: pool.clone(),
            xml: "<volume><name>s.img</name><capacity unit='K'>64</capacity><allocation>0</allocation><target><format type='raw'/></target></volume>".into(),
            flags: 0,
        })
        .vol;
    let info = c.ok::<procs::StorageVolGetInfoFlags>(&remote::StorageVolFlagsArgs {
        vol: vol.clone(),
        flags: 1, // VIR_STORAGE_VOL_GET_PHYSICAL
    });
    assert_eq!(info.r#type, storage_vol_type::FILE, "{info:?}");
    let transfer = |offset, length, flags| remote::StorageVolTransferArgs {
        vol: vol.clone(),
        offset,
        length,
        flags,
    };

    // upload, sparse: data and holes filling the 64 KiB, then the finish handshake
    let serial = c.send::<procs::StorageVolUpload>(&transfer(0, 0, 1));
    c.reply::<procs::StorageVolUpload>(serial).expect("upload");
    for packet in [
        StreamPacket::Data(b"hello".to_vec()),
        StreamPacket::Hole(StreamHole {
            length: 8192 - 5,
            flags: 0,
        }),
        StreamPacket::Data(b"world".to_vec()),
        StreamPacket::Hole(StreamHole {
            length: (64 << 10) - 8197 - 1,
            flags: 0,
        }),
        StreamPacket::Data(b"!".to_vec()),
        StreamPacket::End,
    ] {
        c.send_packet::<procs::StorageVolUpload>(serial, &packet);
    }
    assert_eq!(
        c.stream_packet::<procs::StorageVolUpload>(serial),
        StreamPacket::End,
        "the daemon confirms the finished upload"
    );

    // download a range: data packets, an empty one for end of file, then the handshake
    let serial = c.send::<procs::StorageVolDownload>(&transfer(8190, 10, 0));
    c.reply::<procs::StorageVolDownload>(serial)
        .expect("download");
    let mut got = Vec::new();
    loop {
        match c.stream_packet::<procs::StorageVolDownload>(serial) {
            StreamPacket::Data(d) if d.is_empty() => break,
            StreamPacket::Data(d) => got.extend(d),
            other => panic!("unexpected {other:?} in a plain download"),
        }
    }
    assert_eq!(got, b"\0\0world\0\0\0");
    c.send_packet::<procs::StorageVolDownload>(serial, &StreamPacket::End);
    assert_eq!(
        c.stream_packet::<procs::StorageVolDownload>(serial),
        StreamPacket::End
    );

    // download the whole volume, sparse: holes come as STREAM_HOLE packets
    let serial = c.send::<procs::StorageVolDownload>(&transfer(0, 0, 1));
    c.reply::<procs::StorageVolDownload>(serial)
        .expect("sparse download");
    let (mut image, mut holes) = (Vec::new(), 0);
    loop {
        match c.stream_packet::<procs::StorageVolDownload>(serial) {
            StreamPacket::Data(d) if d.is_empty() => break,
            StreamPacket::Data(d) => image.extend(d),
            StreamPacket::Hole(h) => {
                holes += 1;
                image.resize(image.len() + usize::try_from(h.length).unwrap(), 0);
            }
            other => panic!("unexpected {other:?} in a download"),
        }
    }
    c.send_packet::<procs::StorageVolDownload>(serial, &StreamPacket::End);
    assert_eq!(
        c.stream_packet::<procs::StorageVolDownload>(serial),
        StreamPacket::End
    );
    let mut expected = vec![0u8; 64 << 10];
    expected[..5].copy_from_slice(b"hello");
    expected[8192..8197].copy_from_slice(b"world");
    expected[(64 << 10) - 1] = b'!';
    assert_eq!(image.len(), expected.len());
    assert!(image == expected, "the sparse download differs");
    eprintln!("sparse download: {holes} hole packet(s)");

    // a client abort (STREAM, ERROR, no payload) is confirmed like a finish
    let serial = c.send::<procs::StorageVolUpload>(&transfer(0, 0, 0));
    c.reply::<procs::StorageVolUpload>(serial).expect("upload");
    c.send_packet::<procs::StorageVolUpload>(serial, &StreamPacket::Data(b"x".to_vec()));
    c.send_packet::<procs::StorageVolUpload>(serial, &StreamPacket::Abort(None));
    assert_eq!(
        c.stream_packet::<procs::StorageVolUpload>(serial),
        StreamPacket::End,
        "the daemon confirms the abort"
    );
    // the connection keeps working afterwards
    let info = c.ok::<procs::StorageVolGetInfo>(&remote::StorageVolArgs { vol: vol.clone() });
    assert_eq!(info.capacity, 64 << 10);

    c.ok::<procs::StorageVolResize>(&remote::StorageVolResizeArgs {
        vol: vol.clone(),
        capacity: 128 << 10,
        flags: 0,
    });
    let info = c.ok::<procs::StorageVolGetInfo>(&remote::StorageVolArgs { vol: vol.clone() });
    assert_eq!(info.capacity, 128 << 10);
    c.ok::<procs::StorageVolWipe>(&remote::StorageVolFlagsArgs {
        vol: vol.clone(),
        flags: 0,
    });
    c.ok::<procs::StorageVolWipePattern>(&remote::StorageVolWipePatternArgs {
        vol: vol.clone(),
        algorithm: 0, // VIR_STORAGE_VOL_WIPE_ALG_ZERO
        flags: 0,
    });
    c.ok::<procs::StorageVolDelete>(&remote::StorageVolFlagsArgs {
        vol: vol.clone(),
        flags: 0,
    });
    c.ok::<procs::StoragePoolDestroy>(&remote::StoragePoolArgs { pool });
}

/// Every storage and secret procedure on read-only connections: libvirtd refuses exactly
/// the ones the table leaves unmarked.
fn read_only_classes(socket: &Path) {
    fn probe<P: Procedure>(
        c: &mut Client,
        args: &P::Args,
    ) -> (RemoteProcedure, Option<Box<RemoteError>>) {
        (P::PROC, c.call::<P>(args).err())
    }
    macro_rules! probes {
        ($c:expr; $($p:ident $(= $args:expr)?),* $(,)?) => {
            vec![$(probe::<procs::$p>($c, &probes!(@args $($args)?))),*]
        };
        (@args) => { Default::default() };
        (@args $args:expr) => { $args };
    }
    let ro = protocol::connect_flags::RO;
    let mut st = Client::open(socket, "test:///default", ro);
    let pool = NonnullStoragePool {
        name: POOL.into(),
        ..Default::default()
    };
    let vol = NonnullStorageVol {
        pool: POOL.into(),
        name: "none.img".into(),
        key: "/default-pool/none.img".into(),
    };
    let vol_flags = remote::StorageVolFlagsArgs {
        vol: vol.clone(),
        flags: 0,
    };
    let mut results = probes![&mut st;
        ConnectNumOfStoragePools, ConnectListStoragePools, ConnectNumOfDefinedStoragePools,
        ConnectListDefinedStoragePools, ConnectFindStoragePoolSources, StoragePoolCreateXml,
        StoragePoolDefineXml, StoragePoolCreate, StoragePoolBuild, StoragePoolDestroy,
        StoragePoolDelete, StoragePoolUndefine, StoragePoolRefresh, StoragePoolLookupByName,
        StoragePoolLookupByUuid, StoragePoolLookupByVolume, StoragePoolGetInfo,
        StoragePoolGetXmlDesc, StoragePoolGetAutostart, StoragePoolSetAutostart,
        StoragePoolNumOfVolumes, StoragePoolListVolumes,
        StorageVolCreateXml = remote::StorageVolCreateXmlArgs {
            pool: pool.clone(), xml: "<volume/>".into(), flags: 0 },
        StorageVolDelete = vol_flags.clone(),
        StorageVolLookupByName, StorageVolLookupByKey, StorageVolLookupByPath,
        StorageVolGetInfo, StorageVolGetXmlDesc, StorageVolGetPath,
        StorageVolCreateXmlFrom = remote::StorageVolCreateXmlFromArgs {
            pool: pool.clone(), xml: "<volume/>".into(), clonevol: vol.clone(), flags: 0 },
        StoragePoolIsActive, StoragePoolIsPersistent,
        StorageVolWipe = vol_flags.clone(),
        StorageVolUpload = remote::StorageVolTransferArgs { vol: vol.clone(), ..Default::default() },
        StorageVolDownload = remote::StorageVolTransferArgs { vol: vol.clone(), ..Default::default() },
        StorageVolWipePattern = remote::StorageVolWipePatternArgs { vol: vol.clone(), ..Default::default() },
        StorageVolResize = remote::StorageVolResizeArgs { vol: vol.clone(), ..Default::default() },
        ConnectListAllStoragePools, StoragePoolListAllVolumes,
        ConnectStoragePoolEventRegisterAny, ConnectStoragePoolEventDeregisterAny,
        StorageVolGetInfoFlags, StoragePoolLookupByTargetPath, ConnectGetStoragePoolCapabilities,
    ];
    let mut sec = Client::open(socket, "secret:///system", ro);
    let secret = NonnullSecret {
        uuid: [7; 16],
        usage_type: secret_usage::VOLUME,
        usage_id: "/none".into(),
    };
    results.extend(probes![&mut sec;
        ConnectNumOfSecrets, ConnectListSecrets, SecretLookupByUuid,
        SecretDefineXml = remote::XmlFlagsArgs { xml: "<secret/>".into(), flags: 0 },
        SecretGetXmlDesc = remote::SecretFlagsArgs { secret: secret.clone(), flags: 0 },
        SecretSetValue = remote::SecretSetValueArgs {
            secret: secret.clone(), value: vec![1], flags: 0 },
        SecretGetValue = remote::SecretFlagsArgs { secret: secret.clone(), flags: 0 },
        SecretUndefine = remote::SecretArgs { secret: secret.clone() },
        SecretLookupByUsage, ConnectListAllSecrets,
        ConnectSecretEventRegisterAny, ConnectSecretEventDeregisterAny,
    ]);
    // every classified procedure except the four event messages was probed
    let messages = 4;
    let classified = RemoteProcedure::ALL
        .iter()
        .filter(|p| p.name().contains("Storage") || p.name().contains("Secret"))
        .count();
    assert_eq!(results.len() + messages, classified);
    let mut wrong = Vec::new();
    for (p, err) in &results {
        let denied = err.as_ref().is_some_and(|e| {
            e.code == error_code::OPERATION_DENIED
                && [error_domain::STORAGE, error_domain::SECRET].contains(&e.domain)
        });
        if denied != (p.access() == Access::ReadWrite) {
            wrong.push(format!(
                "{} ({}): {:?} but libvirtd says {err:?}",
                p.name(),
                p.number(),
                p.access()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "read-only classes differ from libvirtd:\n{}",
        wrong.join("\n")
    );
}

/// The network and network port procedures on a read-only connection to libvirtd's test
/// driver: the ones the table leaves unmarked are refused (`VIR_ERR_OPERATION_DENIED`,
/// network domain), the `#[ro]` ones are not.
fn network_read_only_classes(socket: &Path) {
    fn probe<P: Procedure>(
        c: &mut Client,
        args: &P::Args,
    ) -> (RemoteProcedure, Option<Box<RemoteError>>) {
        (P::PROC, c.call::<P>(args).err())
    }
    macro_rules! probes {
        ($c:expr; $($p:ident $(= $args:expr)?),* $(,)?) => {
            vec![$(probe::<procs::$p>($c, &probes!(@args $($args)?))),*]
        };
        (@args) => { Default::default() };
        (@args $args:expr) => { $args };
    }
    let ro = protocol::connect_flags::RO;
    let mut c = Client::open(socket, "test:///default", ro);
    let net = protocol::NonnullNetwork {
        name: "default".into(),
        ..Default::default()
    };
    let port = protocol::NonnullNetworkPort {
        net: net.clone(),
        uuid: [3; 16],
    };
    let results = probes![&mut c;
        ConnectNumOfNetworks, ConnectListNetworks, ConnectNumOfDefinedNetworks,
        ConnectListDefinedNetworks,
        NetworkLookupByName = remote::NameArgs { name: "default".into() },
        NetworkLookupByUuid,
        NetworkCreateXml = remote::NetworkXmlArgs { xml: "<network/>".into() },
        NetworkCreateXmlFlags = remote::XmlFlagsArgs { xml: "<network/>".into(), flags: 0 },
        NetworkDefineXml = remote::NetworkXmlArgs { xml: "<network/>".into() },
        NetworkDefineXmlFlags = remote::XmlFlagsArgs { xml: "<network/>".into(), flags: 0 },
        NetworkUndefine = remote::NetworkArgs { net: net.clone() },
        NetworkCreate = remote::NetworkArgs { net: net.clone() },
        NetworkDestroy = remote::NetworkArgs { net: net.clone() },
        NetworkGetXmlDesc = remote::NetworkFlagsArgs { net: net.clone(), flags: 0 },
        NetworkGetBridgeName = remote::NetworkArgs { net: net.clone() },
        NetworkGetAutostart = remote::NetworkArgs { net: net.clone() },
        NetworkSetAutostart = remote::NetworkSetAutostartArgs { net: net.clone(), autostart: 0 },
        NetworkIsActive = remote::NetworkArgs { net: net.clone() },
        NetworkIsPersistent = remote::NetworkArgs { net: net.clone() },
        ConnectListAllNetworks,
        NetworkUpdate = remote::NetworkUpdateArgs { net: net.clone(), ..Default::default() },
        NetworkGetDhcpLeases = remote::NetworkGetDhcpLeasesArgs {
            net: net.clone(), mac: None, need_results: 1, flags: 0 },
        NetworkListAllPorts = remote::NetworkListAllPortsArgs {
            network: net.clone(), need_results: 1, flags: 0 },
        NetworkPortLookupByUuid = remote::NetworkPortLookupByUuidArgs {
            network: net.clone(), uuid: [3; 16] },
        NetworkPortCreateXml = remote::NetworkPortCreateXmlArgs {
            network: net.clone(), xml: "<networkport/>".into(), flags: 0 },
        NetworkPortGetParameters = remote::NetworkPortGetParametersArgs {
            port: port.clone(), nparams: 16, flags: 0 },
        NetworkPortSetParameters = remote::NetworkPortSetParametersArgs {
            port: port.clone(), params: Vec::new(), flags: 0 },
        NetworkPortGetXmlDesc = remote::NetworkPortFlagsArgs { port: port.clone(), flags: 0 },
        NetworkPortDelete = remote::NetworkPortFlagsArgs { port: port.clone(), flags: 0 },
        ConnectNetworkEventRegisterAny, ConnectNetworkEventDeregisterAny,
    ];
    // every classified network procedure but the event message was probed
    let classified = RemoteProcedure::ALL
        .iter()
        .filter(|p| p.name().contains("Network"))
        .count();
    assert_eq!(results.len() + 1, classified);
    let mut wrong = Vec::new();
    for (p, err) in &results {
        if err.as_ref().is_some_and(|e| e.code == error_code::RPC) {
            wrong.push(format!(
                "{} ({}): unknown to libvirtd: {err:?}",
                p.name(),
                p.number()
            ));
            continue;
        }
        // denied naming a network API (a wrong number would name another API)
        let denied = err.as_ref().is_some_and(|e| {
            e.code == error_code::OPERATION_DENIED
                && e.domain == error_domain::NETWORK
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains("virNetwork"))
        });
        if denied != (p.access() == Access::ReadWrite) {
            wrong.push(format!(
                "{} ({}): {:?} but libvirtd says {err:?}",
                p.name(),
                p.number(),
                p.access()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "network read-only classes differ from libvirtd:\n{}",
        wrong.join("\n")
    );
}

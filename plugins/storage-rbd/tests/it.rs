//! The rbd backend against a real single-node Ceph with cephx (`tests/ceph-cluster.sh`),
//! started once per test run in a network namespace of its own and stopped by PID when
//! the test binary exits. Every librados connection is made on a thread that entered the
//! namespace (`setns`), so librados' own threads live there too.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use base64::Engine;
use rvirt_storage_rbd::{PoolConfig, Rbd, SecretRef, code, parse_pool};
use rvirt_xml::StorageVolume;

struct Cluster {
    dir: PathBuf,
    ns: String,
    key: Vec<u8>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ceph-cluster.sh")
}

extern "C" fn stop_cluster() {
    if let Some(c) = CLUSTER.get() {
        let _ = Command::new(script())
            .arg("stop")
            .arg(&c.dir)
            .arg(&c.ns)
            .status();
        let _ = std::fs::remove_dir_all(&c.dir);
    }
}

fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("rvirt-rbd-it-{pid}"));
        let ns = format!("rvirt-rbd-it-{pid}");
        let t = Instant::now();
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .arg(&ns)
            .arg("cephx")
            .output()
            .expect("run tests/ceph-cluster.sh (ceph-mon, ceph-osd, ceph-common installed?)");
        if !out.status.success() {
            let _ = Command::new(script())
                .arg("stop")
                .arg(&dir)
                .arg(&ns)
                .status();
            panic!(
                "the test Ceph cluster did not start:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // SAFETY: registers a plain extern "C" function, run once at process exit.
        unsafe { libc::atexit(stop_cluster) };
        eprintln!("ceph cluster up in {:?}", t.elapsed());
        let key_text = std::fs::read_to_string(dir.join("admin.key")).expect("admin.key");
        let key = base64::engine::general_purpose::STANDARD
            .decode(key_text.trim())
            .expect("base64 key");
        Cluster { dir, ns, key }
    })
}

/// Runs `f` on a thread inside the cluster's network namespace.
fn in_ns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let c = cluster();
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(format!("/run/netns/{}", c.ns)).expect("netns file");
            // SAFETY: setns on this thread only, with a descriptor open for the call.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn backend() -> Rbd {
    let key = cluster().key.clone();
    Rbd::new(Box::new(move |s: &SecretRef| match s.id() {
        "ceph-admin" => Ok(key.clone()),
        other => Err((
            43,
            format!("secret not found: no secret with matching usage '{other}'"),
        )),
    }))
}

fn pool_cfg(name: &str, secret: &str) -> (rvirt_xml::StoragePool, PoolConfig) {
    let p = parse_pool(&format!(
        "<pool type='rbd'><name>{name}</name><source><name>rbd</name>\
         <host name='127.0.0.1' port='6789'/>\
         <auth type='ceph' username='admin'><secret usage='{secret}'/></auth></source></pool>"
    ))
    .expect("pool");
    let c = PoolConfig::from_pool(&p).expect("config");
    (p, c)
}

fn vol(p: &rvirt_xml::StoragePool, name: &str, cap: u64) -> StorageVolume {
    StorageVolume::parse(
        &format!("<volume><name>{name}</name><capacity unit='bytes'>{cap}</capacity></volume>"),
        Some(p),
    )
    .expect("volume")
}

const MIB: u64 = 1 << 20;

#[test]
fn volume_life_cycle_on_a_cephx_cluster() {
    in_ns(|| {
        let rbd = backend();
        let (p, c) = pool_cfg("lc", "ceph-admin");
        rbd.start_pool(&c).expect("start");
        assert!(rbd.is_connected(&c));
        let a = vol(&p, "lc-a", 64 * MIB);
        let made = rbd.create_volume(&c, &a).expect("create");
        assert_eq!(made.capacity, 64 * MIB);
        let e = rbd.create_volume(&c, &a).expect_err("exists");
        assert_eq!(e.code(), code::STORAGE_VOL_EXIST, "{e}");
        assert!(
            e.to_string().contains("'lc-a'") && e.to_string().contains("pool 'lc'"),
            "{e}"
        );

        let r = rbd.refresh_pool(&c).expect("refresh");
        let found = r.images.iter().find(|i| i.name == "lc-a").expect("listed");
        assert_eq!(found.capacity, 64 * MIB);
        // a new image has no objects: the object map says 0 bytes
        assert_eq!(found.allocation, 0);

        // resize: grow, refuse a shrink without the flag, shrink with it, delta
        rbd.resize_volume(&c, &a, 128 * MIB, 0).expect("grow");
        let e = rbd
            .resize_volume(&c, &a, 32 * MIB, 0)
            .expect_err("shrink needs flag");
        assert_eq!(e.code(), code::OPERATION_INVALID, "{e}");
        rbd.resize_volume(&c, &a, 32 * MIB, 4).expect("shrink");
        rbd.resize_volume(&c, &a, 32 * MIB, 2).expect("delta");
        assert_eq!(rbd.volume_info(&c, &a).expect("info").capacity, 64 * MIB);

        // write some data: the allocation follows the object map
        {
            let mut up = rbd.upload(&c, "lc-a", 0, 0).expect("upload");
            up.send(&vec![7u8; 5 * MIB as usize]).expect("send");
            up.finish().expect("finish");
        }
        let info = rbd.volume_info(&c, &a).expect("info");
        assert!(
            info.allocation >= 5 * MIB && info.allocation <= 8 * MIB,
            "{info:?}"
        );
        // the refresh reads headers and object maps without opening images: the same
        // figures as the open image's diff over whole objects
        let r = rbd.refresh_pool(&c).expect("refresh");
        let listed = r.images.iter().find(|i| i.name == "lc-a").expect("listed");
        assert_eq!(listed, &info);

        // clone: a protected snapshot and an RBD clone, grown to the asked capacity
        let b = vol(&p, "lc-b", 80 * MIB);
        let cl = rbd.clone_volume(&c, &b, &c, &a).expect("clone");
        assert_eq!(cl.capacity, 80 * MIB);
        {
            let mut d = rbd.download(&c, "lc-b", 0, 4096).expect("download");
            assert_eq!(d.recv(1 << 20).expect("recv"), vec![7u8; 4096]);
            assert!(d.recv(1 << 20).expect("end").is_empty());
        }
        // the source has a snapshot now: plain delete refused, its clone blocks even that
        let e = rbd.delete_volume(&c, &a, 0).expect_err("has snapshots");
        assert_eq!(e.code(), code::OPERATION_INVALID);
        assert!(e.to_string().contains("rvirt-clone-lc-b"), "{e}");
        let e = rbd.delete_volume(&c, &a, 2).expect_err("has a clone");
        assert!(e.to_string().contains("has clones"), "{e}");
        rbd.delete_volume(&c, &b, 0).expect("delete clone");
        rbd.delete_volume(&c, &a, 2).expect("delete with snapshots");

        // wipe zeroes
        let w = vol(&p, "lc-w", 8 * MIB);
        rbd.create_volume(&c, &w).expect("create");
        {
            let mut up = rbd.upload(&c, "lc-w", MIB, MIB).expect("upload");
            up.send(&vec![1u8; MIB as usize]).expect("send");
            up.finish().expect("finish");
        }
        rbd.wipe_volume(&c, &w, 0, 0).expect("wipe");
        let mut d = rbd.download(&c, "lc-w", MIB, MIB).expect("download");
        let mut got = Vec::new();
        loop {
            let chunk = d.recv(256 << 10).expect("recv");
            if chunk.is_empty() {
                break;
            }
            got.extend(chunk);
        }
        assert_eq!(got, vec![0u8; MIB as usize]);
        drop(d);
        let e = rbd.wipe_volume(&c, &w, 1, 0).expect_err("nnsa");
        assert_eq!(e.code(), code::NO_SUPPORT);
        rbd.delete_volume(&c, &w, 0).expect("delete");

        let e = rbd.delete_volume(&c, &w, 0).expect_err("gone");
        assert_eq!(e.code(), code::NO_STORAGE_VOL, "{e}");
        assert!(rbd.volume_info(&c, &w).is_err());
        rbd.stop_pool(&c);
        assert!(!rbd.is_connected(&c));
    })
}

#[test]
fn streams_round_trip_and_refuse_ranges_past_the_end() {
    in_ns(|| {
        let rbd = backend();
        let (p, c) = pool_cfg("st", "ceph-admin");
        rbd.start_pool(&c).expect("start");
        let v = vol(&p, "st-a", 20 * MIB);
        rbd.create_volume(&c, &v).expect("create");
        let data: Vec<u8> = (0..(9 * MIB + 12345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut up = rbd.upload(&c, "st-a", 4096, 0).expect("upload");
        for ch in data.chunks(256 << 10) {
            up.send(ch).expect("send");
        }
        up.finish().expect("finish");
        drop(up);
        let mut d = rbd
            .download(&c, "st-a", 4096, data.len() as u64)
            .expect("download");
        let mut got = Vec::new();
        loop {
            let ch = d.recv(1 << 20).expect("recv");
            if ch.is_empty() {
                break;
            }
            got.extend(ch);
        }
        assert!(got == data, "round trip differs");
        drop(d);
        let e = rbd
            .upload(&c, "st-a", 20 * MIB, 1)
            .expect_err("past the end");
        assert_eq!(e.code(), code::INVALID_ARG);
        assert!(e.to_string().contains("offset/length"), "{e}");
        let mut up = rbd
            .upload(&c, "st-a", 20 * MIB - 10, 0)
            .expect("upload tail");
        assert!(up.send(&[0u8; 11]).is_err());
        drop(up);
        let mut up = rbd.upload(&c, "st-a", 0, 100).expect("upload with length");
        up.send(&[1u8; 50]).expect("send");
        let e = up.finish().expect_err("short");
        assert!(e.to_string().contains("after 50 of 100 bytes"), "{e}");
        drop(up);
        rbd.delete_volume(&c, &v, 0).expect("delete");
    })
}

#[test]
fn auth_errors_name_the_pool_and_the_secret() {
    in_ns(|| {
        let rbd = backend();
        let (_, c) = pool_cfg("au", "nobody");
        let e = rbd.start_pool(&c).expect_err("no secret");
        assert_eq!(e.code(), 43);
        let m = e.to_string();
        assert!(
            m.contains("pool 'au'")
                && m.contains("pool/source/auth/secret")
                && m.contains("'nobody'"),
            "{m}"
        );
        // a wrong key: the cluster refuses the client
        let bad = Rbd::new(Box::new(|_: &SecretRef| Ok(vec![1u8; 16])));
        let (_, c) = pool_cfg("au2", "ceph-admin");
        let t = Instant::now();
        let e = bad.start_pool(&c).expect_err("wrong key");
        eprintln!(
            "wrong key refused in {:?}: {}",
            t.elapsed(),
            e.full_message()
        );
        assert_eq!(e.code(), code::SYSTEM_ERROR);
        assert!(
            e.to_string()
                .contains("cannot connect to the Ceph cluster at '127.0.0.1:6789' as client.admin"),
            "{e}"
        );
        // a Ceph pool that does not exist
        let p = parse_pool(
            "<pool type='rbd'><name>np</name><source><name>nosuch</name><host name='127.0.0.1' port='6789'/>\
             <auth username='admin'><secret usage='ceph-admin'/></auth></source></pool>",
        )
        .expect("pool");
        let e = backend()
            .start_pool(&PoolConfig::from_pool(&p).expect("cfg"))
            .expect_err("no pool");
        assert!(
            e.to_string()
                .contains("pool/source/name: the Ceph cluster has no pool 'nosuch'"),
            "{e}"
        );
    })
}

#[test]
fn refresh_stats_many_images_over_one_connection() {
    in_ns(|| {
        let rbd = backend();
        let (p, c) = pool_cfg("many", "ceph-admin");
        rbd.start_pool(&c).expect("start");
        let n = 200;
        let names: Vec<String> = (0..n).map(|i| format!("many-{i:04}")).collect();
        std::thread::scope(|s| {
            for part in names.chunks(n / 8) {
                let (rbd, p, c) = (&rbd, &p, &c);
                s.spawn(move || {
                    for name in part {
                        rbd.create_volume(c, &vol(p, name, MIB)).expect("create");
                    }
                });
            }
        });
        let t = Instant::now();
        let r = rbd.refresh_pool(&c).expect("refresh");
        let took = t.elapsed();
        let mine = r
            .images
            .iter()
            .filter(|i| i.name.starts_with("many-"))
            .count();
        eprintln!("refresh of {} images: {took:?}", r.images.len());
        assert_eq!(mine, n);
        std::thread::scope(|s| {
            for part in names.chunks(n / 8) {
                let (rbd, p, c) = (&rbd, &p, &c);
                s.spawn(move || {
                    for name in part {
                        rbd.delete_volume(c, &vol(p, name, MIB), 0).expect("delete");
                    }
                });
            }
        });
    })
}

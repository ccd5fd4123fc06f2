//! Volume upload and download streams (procedures 208 and 209) through rvirtd with the
//! real `virsh vol-upload`/`vol-download`, python-libvirt's streams, the host library's
//! remote driver and `rvirt vol-upload`/`vol-download`, on a `dir` pool.

use super::{Daemon, missing};
use crate::{virsh, virsh_ok as ok};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";
const MIB: usize = 1 << 20;

fn fails(uri: &str, args: &[&str]) -> String {
    let o = virsh(uri, args);
    assert!(!o.status.success(), "virsh {args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Deterministic pseudo-random bytes (xorshift), different per seed.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn tools_missing() -> bool {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        bin_dir.join("librvirt_storage_dir.so").is_file(),
        "the storage-dir plugin is missing next to rvirtd: run `cargo build --workspace` first"
    );
    missing("virsh", Command::new("virsh").arg("--version"))
}

fn python_missing() -> bool {
    missing(
        "python3-libvirt",
        Command::new(PYTHON).args(["-c", "import libvirt"]),
    )
}

/// A daemon with an active dir pool `p` under its root; returns it, the read-write URI and
/// the pool's target.
fn daemon_with_pool() -> (Daemon, String, PathBuf) {
    let d = Daemon::start();
    let uri = format!("qemu+unix:///system?socket={}", d.socket().display());
    let target = d.root.path().join("pools/p");
    ok(
        &uri,
        &[
            "pool-define-as",
            "p",
            "dir",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    ok(&uri, &["pool-build", "p"]);
    ok(&uri, &["pool-start", "p"]);
    (d, uri, target)
}

/// The entries of a directory, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn virsh_uploads_and_downloads_byte_for_byte() {
    if tools_missing() {
        return;
    }
    let (d, uri, target) = daemon_with_pool();
    let work = tempfile::tempdir().unwrap();
    ok(&uri, &["vol-create-as", "p", "v.raw", "8M"]);
    let data = random_bytes(5 * MIB + 123, 1);
    let input = work.path().join("in.bin");
    std::fs::write(&input, &data).unwrap();

    // the whole file, then back
    ok(
        &uri,
        &[
            "vol-upload",
            "v.raw",
            input.to_str().unwrap(),
            "--pool",
            "p",
        ],
    );
    let on_disk = std::fs::read(target.join("v.raw")).unwrap();
    assert_eq!(on_disk.len(), 8 * MIB, "the volume keeps its size");
    assert!(on_disk[..data.len()] == data[..], "uploaded bytes differ");
    let output = work.path().join("out.bin");
    ok(
        &uri,
        &[
            "vol-download",
            "v.raw",
            output.to_str().unwrap(),
            "--pool",
            "p",
        ],
    );
    let back = std::fs::read(&output).unwrap();
    assert_eq!(back.len(), 8 * MIB);
    assert!(back == on_disk, "downloaded bytes differ from the volume");

    // a range: 1000 bytes at offset 4096, and only those
    let patch = random_bytes(1000, 2);
    let patch_file = work.path().join("patch.bin");
    std::fs::write(&patch_file, &patch).unwrap();
    ok(
        &uri,
        &[
            "vol-upload",
            "v.raw",
            patch_file.to_str().unwrap(),
            "--pool",
            "p",
            "--offset",
            "4096",
            "--length",
            "1000",
        ],
    );
    let on_disk = std::fs::read(target.join("v.raw")).unwrap();
    assert!(on_disk[4096..5096] == patch[..]);
    assert!(on_disk[..4096] == data[..4096] && on_disk[5096..data.len()] == data[5096..]);
    let part = work.path().join("part.bin");
    ok(
        &uri,
        &[
            "vol-download",
            "v.raw",
            part.to_str().unwrap(),
            "--pool",
            "p",
            "--offset",
            "4000",
            "--length",
            "2000",
        ],
    );
    assert!(std::fs::read(&part).unwrap() == on_disk[4000..6000]);

    // longer than the volume: refused, naming the volume; nothing grows, nothing is
    // written beside it
    let big = work.path().join("big.bin");
    std::fs::write(&big, random_bytes(9 * MIB, 3)).unwrap();
    let e = fails(
        &uri,
        &["vol-upload", "v.raw", big.to_str().unwrap(), "--pool", "p"],
    );
    assert!(
        e.contains("volume 'v.raw'") && e.contains("goes past"),
        "{e}"
    );
    assert_eq!(
        std::fs::metadata(target.join("v.raw")).unwrap().len(),
        8 << 20
    );
    assert_eq!(entries(&target), ["v.raw"]);
    let e = fails(
        &uri,
        &[
            "vol-upload",
            "v.raw",
            patch_file.to_str().unwrap(),
            "--pool",
            "p",
            "--offset",
            "9000000",
        ],
    );
    assert!(
        e.contains("volume 'v.raw'") && e.contains("offset 9000000"),
        "{e}"
    );
    let e = fails(
        &uri,
        &[
            "vol-download",
            "v.raw",
            part.to_str().unwrap(),
            "--pool",
            "p",
            "--offset",
            "8000000",
            "--length",
            "1000000",
        ],
    );
    assert!(e.contains("length 1000000"), "{e}");
    assert_eq!(
        std::fs::metadata(target.join("v.raw")).unwrap().len(),
        8 << 20
    );
    // a length shorter than the data sent is refused too (libvirt: the range is exact)
    let e = fails(
        &uri,
        &[
            "vol-upload",
            "v.raw",
            input.to_str().unwrap(),
            "--pool",
            "p",
            "--length",
            "100",
        ],
    );
    assert!(e.contains("requested length"), "{e}");

    // sparse streams are not implemented: the flag is refused
    let e = fails(
        &uri,
        &[
            "vol-upload",
            "v.raw",
            input.to_str().unwrap(),
            "--pool",
            "p",
            "--sparse",
        ],
    );
    assert!(e.contains("unsupported flags (0x1)"), "{e}");

    // the read-only socket refuses both (neither procedure is read-only in libvirt)
    let ro = format!("qemu+unix:///system?socket={}", d.socket_ro().display());
    let e = fails(
        &ro,
        &[
            "vol-upload",
            "v.raw",
            input.to_str().unwrap(),
            "--pool",
            "p",
        ],
    );
    assert!(e.contains("read only"), "{e}");
    let e = fails(
        &ro,
        &[
            "vol-download",
            "v.raw",
            output.to_str().unwrap(),
            "--pool",
            "p",
        ],
    );
    assert!(e.contains("read only"), "{e}");

    // after all of that the volume is free and the pool usable
    ok(&uri, &["vol-delete", "v.raw", "--pool", "p"]);
    ok(&uri, &["vol-create-as", "p", "w.raw", "1M"]);
    assert_eq!(entries(&target), ["w.raw"]);
}

const PY_STREAMS: &str = r#"
import sys
import libvirt

uri, path_in = sys.argv[1], sys.argv[2]
libvirt.registerErrorHandler(lambda *a: None, None)
conn = libvirt.open(uri)
pool = conn.storagePoolLookupByName("p")
data = open(path_in, "rb").read()
vol = pool.createXML("<volume><name>py.raw</name><capacity unit='bytes'>%d</capacity></volume>" % (8 << 20), 0)

# upload with sendAll, in odd-sized chunks
st = conn.newStream(0)
vol.upload(st, 0, 0, 0)
pos = [0]
def source(stream, nbytes, opaque):
    n = min(nbytes, 100000)
    chunk = data[pos[0]:pos[0] + n]
    pos[0] += len(chunk)
    return chunk
st.sendAll(source, None)
st.finish()
assert vol.info()[1] == 8 << 20

# download with recvAll
got = []
st = conn.newStream(0)
vol.download(st, 0, len(data), 0)
st.recvAll(lambda s, buf, opaque: got.append(buf) or len(buf), None)
st.finish()
back = b"".join(got)
assert back == data, (len(back), len(data))

# two downloads open at once on one connection, read in turns
other = pool.createXML("<volume><name>two.raw</name><capacity unit='bytes'>%d</capacity></volume>" % (1 << 20), 0)
s2 = conn.newStream(0)
other.upload(s2, 0, 0, 0)
s2.send(b"\x07" * (1 << 20))
s2.finish()
a, b = conn.newStream(0), conn.newStream(0)
vol.download(a, 0, 3 << 20, 0)
other.download(b, 0, 0, 0)
ga, gb = [], []
done_a = done_b = False
while not (done_a and done_b):
    if not done_a:
        c = a.recv(65536)
        if c == b"" or c == 0:
            done_a = True
        else:
            ga.append(c)
    if not done_b:
        c = b.recv(65536)
        if c == b"" or c == 0:
            done_b = True
        else:
            gb.append(c)
a.finish(); b.finish()
assert b"".join(ga) == data[:3 << 20]
assert b"".join(gb) == b"\x07" * (1 << 20)

# an aborted upload leaves the volume usable
st = conn.newStream(0)
vol.upload(st, 0, 0, 0)
st.send(b"x" * 4096)
st.abort()
vol.wipe(0)

# errors raise libvirtError with libvirt's code
st = conn.newStream(0)
try:
    vol.upload(st, (8 << 20) + 1, 0, 0)
    raise SystemExit("an upload past the end was accepted")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_INVALID_ARG, e.get_error_code()
vol.delete(0)
other.delete(0)
print("OK")
"#;

#[test]
fn python_libvirt_streams() {
    if tools_missing() || python_missing() {
        return;
    }
    let (_d, uri, _target) = daemon_with_pool();
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in.bin");
    std::fs::write(&input, random_bytes(5 * MIB + 7, 4)).unwrap();
    let out = Command::new(PYTHON)
        .args(["-c", PY_STREAMS, &uri, input.to_str().unwrap()])
        .output()
        .expect("cannot run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "python-libvirt stream script failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Uploads 2 MiB, says so, then waits to be killed.
const PY_STALLED_UPLOAD: &str = r#"
import sys, time
import libvirt
conn = libvirt.open(sys.argv[1])
vol = conn.storagePoolLookupByName("p").storageVolLookupByName("v.raw")
st = conn.newStream(0)
vol.upload(st, 0, 0, 0)
st.send(b"\x01" * (2 << 20))
print("SENT", flush=True)
time.sleep(60)
"#;

#[test]
fn a_client_killed_mid_upload_frees_the_volume() {
    if tools_missing() || python_missing() {
        return;
    }
    let (_d, uri, target) = daemon_with_pool();
    ok(&uri, &["vol-create-as", "p", "v.raw", "8M"]);
    ok(&uri, &["vol-create-as", "p", "other.raw", "1M"]);
    let mut child = Command::new(PYTHON)
        .args(["-c", PY_STALLED_UPLOAD, &uri])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "SENT");

    // while the stream is open: the volume is busy, the rest of the pool is not
    for args in [
        &["vol-delete", "v.raw", "--pool", "p"][..],
        &["vol-resize", "v.raw", "16M", "--pool", "p"][..],
        &["vol-wipe", "v.raw", "--pool", "p"][..],
    ] {
        let e = fails(&uri, args);
        assert!(
            e.contains("volume 'v.raw' in pool 'p' is in use by a stream"),
            "{args:?}: {e}"
        );
    }
    let e = fails(&uri, &["pool-destroy", "p"]);
    assert!(e.contains("in use by streams"), "{e}");
    assert!(ok(&uri, &["vol-info", "v.raw", "--pool", "p"]).contains("8.00 MiB"));
    ok(&uri, &["vol-create-as", "p", "new.raw", "1M"]);
    ok(&uri, &["vol-delete", "other.raw", "--pool", "p"]);

    // the client dies: the stream is aborted and the volume free again
    child.kill().unwrap();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = virsh(&uri, &["vol-delete", "v.raw", "--pool", "p"]);
        if o.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the volume stayed busy: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(entries(&target), ["new.raw"]);
    ok(&uri, &["pool-refresh", "p"]);
    ok(&uri, &["pool-destroy", "p"]);
}

#[test]
fn a_raw_socket_closed_mid_upload_frees_the_volume() {
    use rvirt_wire::protocol::{NonnullStorageVol, REMOTE_PROGRAM, REMOTE_VERSION};
    use rvirt_wire::remote::{ConnectOpenArgs, StorageVolTransferArgs};
    use rvirt_wire::{Header, MessageType, RemoteProcedure, Status, frame};
    if tools_missing() {
        return;
    }
    let (_d, uri, _target) = daemon_with_pool();
    ok(&uri, &["vol-create-as", "p", "v.raw", "4M"]);
    let sock = _d.socket();
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let call = |s: &mut std::os::unix::net::UnixStream,
                procedure: RemoteProcedure,
                serial,
                body: &[u8]| {
        let h = Header::call(REMOTE_PROGRAM, REMOTE_VERSION, procedure.number(), serial);
        std::io::Write::write_all(s, &frame::encode_raw(&h, body).unwrap()).unwrap();
        let f = frame::read_frame(s).unwrap().unwrap();
        assert_eq!(
            (f.header.msg_type, f.header.status),
            (MessageType::Reply, Status::Ok),
            "{procedure:?}"
        );
    };
    let open = rvirt_wire::xdr::to_vec(&ConnectOpenArgs {
        name: Some("qemu:///system".into()),
        flags: 0,
    })
    .unwrap();
    call(&mut s, RemoteProcedure::ConnectOpen, 1, &open);
    let args = rvirt_wire::xdr::to_vec(&StorageVolTransferArgs {
        vol: NonnullStorageVol {
            pool: "p".into(),
            name: "v.raw".into(),
            key: String::new(),
        },
        offset: 0,
        length: 0,
        flags: 0,
    })
    .unwrap();
    call(&mut s, RemoteProcedure::StorageVolUpload, 2, &args);
    let chunk = vec![9u8; 65536];
    for _ in 0..8 {
        let p = frame::stream_data(REMOTE_PROGRAM, REMOTE_VERSION, 208, 2, &chunk).unwrap();
        std::io::Write::write_all(&mut s, &p).unwrap();
    }
    let e = fails(&uri, &["vol-delete", "v.raw", "--pool", "p"]);
    assert!(e.contains("in use by a stream"), "{e}");
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !virsh(&uri, &["vol-delete", "v.raw", "--pool", "p"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the volume stayed busy");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_remote_driver_and_the_cli_stream_through_rvirtd() {
    if tools_missing() {
        return;
    }
    let (_d, uri, target) = daemon_with_pool();
    ok(&uri, &["vol-create-as", "p", "a.raw", "4M"]);
    ok(&uri, &["vol-create-as", "p", "b.raw", "4M"]);
    let plugins = PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    let runtime = rvirt_host::Runtime::with_search_path(vec![plugins]);
    let conn = runtime.open(&uri, false).unwrap();
    let pool = conn.lookup_storage_pool_by_name("p").unwrap();
    let a = pool.lookup_vol_by_name("a.raw").unwrap();
    let b = pool.lookup_vol_by_name("b.raw").unwrap();
    let da = random_bytes(3 * MIB + 5, 5);
    let db = random_bytes(4 * MIB, 6);
    // two uploads at once on one connection, interleaved
    let mut ua = a.upload(0, 0, 0).unwrap();
    let mut ub = b.upload(0, 0, 0).unwrap();
    for (ca, cb) in da.chunks(300_000).zip(db.chunks(300_000)) {
        ua.send(ca).unwrap();
        ub.send(cb).unwrap();
    }
    // b has more chunks than a
    for cb in db.chunks(300_000).skip(da.chunks(300_000).count()) {
        ub.send(cb).unwrap();
    }
    ua.finish().unwrap();
    ub.finish().unwrap();
    assert!(std::fs::read(target.join("a.raw")).unwrap()[..da.len()] == da[..]);
    assert!(std::fs::read(target.join("b.raw")).unwrap() == db);
    // downloads: a range, and the whole volume
    let mut st = a.download(1000, 500_000, 0).unwrap();
    let mut got = Vec::new();
    loop {
        let c = st.recv(70_000).unwrap();
        if c.is_empty() {
            break;
        }
        got.extend_from_slice(&c);
    }
    st.finish().unwrap();
    assert!(got == da[1000..501_000]);
    // an upload past the end fails mid-stream with the daemon's error
    let mut st = b.upload(0, 0, 0).unwrap();
    let big = random_bytes(5 * MIB, 7);
    let err = big
        .chunks(256 * 1024)
        .try_for_each(|c| st.send(c))
        .and_then(|()| st.finish())
        .unwrap_err();
    assert_eq!(err.code(), 8, "{err}");
    assert!(err.to_string().contains("volume 'b.raw'"), "{err}");
    drop(st);
    // a dropped upload is aborted: the volume can be deleted
    let mut st = a.upload(0, 0, 0).unwrap();
    st.send(&[1; 1000]).unwrap();
    let e = a.delete(0).unwrap_err();
    assert!(e.to_string().contains("in use by a stream"), "{e}");
    drop(st);
    a.delete(0).unwrap();

    // the CLI, through the daemon
    let rvirt = rvirt_tests::built("rvirt");
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in.bin");
    let data = random_bytes(3 * MIB + 1, 8);
    std::fs::write(&input, &data).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(&rvirt)
            .arg("-c")
            .arg(&uri)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (okay, err) = run(&[
        "vol-upload",
        "b.raw",
        input.to_str().unwrap(),
        "--pool",
        "p",
    ]);
    assert!(okay, "{err}");
    assert!(
        err.is_empty(),
        "no progress bar when stderr is not a terminal: {err}"
    );
    let out = work.path().join("out.bin");
    let (okay, err) = run(&[
        "vol-download",
        "b.raw",
        out.to_str().unwrap(),
        "--pool",
        "p",
        "--offset",
        "10",
        "--length",
        "2000000",
    ]);
    assert!(okay, "{err}");
    assert!(std::fs::read(&out).unwrap() == data[10..2_000_010]);
    let (okay, err) = run(&[
        "vol-upload",
        "b.raw",
        input.to_str().unwrap(),
        "--pool",
        "p",
        "--offset",
        "2000000",
    ]);
    assert!(!okay);
    assert!(
        err.contains("cannot upload to volume 'b.raw'") && err.contains("goes past"),
        "{err}"
    );
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_download_nobody_reads_is_not_buffered_by_the_daemon() {
    use rvirt_wire::protocol::{NonnullStorageVol, REMOTE_PROGRAM, REMOTE_VERSION};
    use rvirt_wire::remote::{ConnectOpenArgs, StorageVolTransferArgs};
    use rvirt_wire::{Header, MessageType, RemoteProcedure, Status, frame};
    if tools_missing() {
        return;
    }
    let (d, uri, target) = daemon_with_pool();
    ok(&uri, &["vol-create-as", "p", "big.raw", "96M"]);
    std::fs::write(target.join("big.raw"), random_bytes(96 * MIB, 9)).unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    let call = |s: &mut std::os::unix::net::UnixStream,
                procedure: RemoteProcedure,
                serial,
                body: &[u8]| {
        let h = Header::call(REMOTE_PROGRAM, REMOTE_VERSION, procedure.number(), serial);
        std::io::Write::write_all(s, &frame::encode_raw(&h, body).unwrap()).unwrap();
        let f = frame::read_frame(s).unwrap().unwrap();
        assert_eq!(
            (f.header.msg_type, f.header.status),
            (MessageType::Reply, Status::Ok),
            "{procedure:?}"
        );
    };
    let open = rvirt_wire::xdr::to_vec(&ConnectOpenArgs {
        name: Some("qemu:///system".into()),
        flags: 0,
    })
    .unwrap();
    call(&mut s, RemoteProcedure::ConnectOpen, 1, &open);
    let before = rss_kib(d.pid());
    let args = rvirt_wire::xdr::to_vec(&StorageVolTransferArgs {
        vol: NonnullStorageVol {
            pool: "p".into(),
            name: "big.raw".into(),
            key: String::new(),
        },
        offset: 0,
        length: 0,
        flags: 0,
    })
    .unwrap();
    call(&mut s, RemoteProcedure::StorageVolDownload, 2, &args);
    // the client reads nothing for a while: the daemon must wait, not queue 96 MiB
    std::thread::sleep(Duration::from_millis(1500));
    let grown = rss_kib(d.pid()).saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "rvirtd grew by {grown} KiB for a download nobody reads"
    );
    // then everything arrives, in packets of at most libvirt's 256 KiB, and the finish
    // handshake completes
    let mut got = 0usize;
    loop {
        let f = frame::read_frame(&mut s).unwrap().unwrap();
        assert_eq!(
            (f.header.msg_type, f.header.serial, f.header.procedure),
            (MessageType::Stream, 2, 209)
        );
        assert_eq!(f.header.status, Status::Continue);
        assert!(f.payload.len() <= frame::STREAM_CHUNK_MAX);
        if f.payload.is_empty() {
            break;
        }
        got += f.payload.len();
    }
    assert_eq!(got, 96 * MIB);
    let end = frame::stream_end(REMOTE_PROGRAM, REMOTE_VERSION, 209, 2).unwrap();
    std::io::Write::write_all(&mut s, &end).unwrap();
    let f = frame::read_frame(&mut s).unwrap().unwrap();
    assert_eq!(
        (f.header.msg_type, f.header.status, f.payload.len()),
        (MessageType::Stream, Status::Ok, 0)
    );
    ok(&uri, &["vol-delete", "big.raw", "--pool", "p"]);
}

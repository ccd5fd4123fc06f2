//! The `dir` backend against the real file system and `qemu-img`, in temporary directories.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rvirt_storage_files::{self as dir, Error, WipeMethod, flags};
use rvirt_xml::{StoragePool, StorageVolume};

fn have_qemu_img(test: &str) -> bool {
    let ok = Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        rvirt_tests::cannot_run(
            test,
            "qemu-img is not installed (apt-get install qemu-utils)",
        );
    }
    ok
}

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
    pool: StoragePool,
}

fn pool_xml(name: &str, path: &Path, extra: &str) -> String {
    format!(
        "<pool type='dir'><name>{name}</name><target><path>{}</path>{extra}</target></pool>",
        path.display()
    )
}

fn env() -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    let dir = root.join("pool");
    let pool = dir::parse_pool(&pool_xml("p", &dir, "")).expect("pool");
    dir::build_pool(&pool, 0).expect("build");
    dir::start_pool(&pool).expect("start");
    Env {
        _tmp: tmp,
        root,
        dir,
        pool,
    }
}

impl Env {
    fn vol(&self, xml: &str) -> StorageVolume {
        dir::parse_volume(&self.pool, xml, false).expect("volume xml")
    }
    fn named(&self, name: &str) -> StorageVolume {
        self.vol(&format!(
            "<volume><name>{name}</name><capacity>0</capacity></volume>"
        ))
    }
    fn read(&self, name: &str) -> Vec<u8> {
        let mut d = dir::download(&self.pool, &self.named(name), 0, 0).expect("download");
        let mut out = Vec::new();
        d.copy_to(&mut out).expect("copy");
        out
    }
    fn listed(&self) -> Vec<String> {
        dir::refresh_pool(&self.pool)
            .expect("refresh")
            .volumes
            .iter()
            .map(|v| v.name().to_string())
            .collect()
    }
}

/// More bytes than the pool's whole file system holds.
fn more_than_the_fs(e: &Env) -> u64 {
    dir::refresh_pool(&e.pool).expect("refresh").capacity + (1 << 30)
}

fn info(path: &Path) -> serde_json::Value {
    let o = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .expect("qemu-img info");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("json")
}

fn assert_matches_qemu_img(v: &StorageVolume) {
    let path = Path::new(v.target_path().expect("path"));
    let i = info(path);
    // qemu-img rounds a raw file's size up to whole sectors; libvirt reports the size
    let cap = if v.format_type() == Some("raw") {
        v.capacity_bytes().div_ceil(512) * 512
    } else {
        v.capacity_bytes()
    };
    assert_eq!(Some(cap), i["virtual-size"].as_u64(), "{i}");
    assert_eq!(Some(v.allocation_bytes()), i["actual-size"].as_u64(), "{i}");
    assert_eq!(v.format_type(), i["format"].as_str(), "{i}");
    assert_eq!(v.key(), v.target_path());
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn write_into(e: &Env, name: &str, offset: u64, data: &[u8]) -> StorageVolume {
    let mut u = dir::upload(&e.pool, &e.named(name), offset, data.len() as u64).expect("upload");
    u.write_all(data).expect("write");
    u.finish().expect("finish")
}

#[test]
fn pool_build_check_start_refresh_delete() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let target = tmp.path().join("a/b/pool");
    let pool = dir::parse_pool(&pool_xml(
        "p",
        &target,
        "<permissions><mode>0750</mode><owner>0</owner><group>0</group></permissions>",
    ))
    .expect("pool");
    assert!(!dir::check_pool(&pool).expect("check"));
    let e = dir::start_pool(&pool).expect_err("missing target");
    assert_eq!(e.code(), 38, "{}", e.full_message());
    dir::build_pool(&pool, flags::POOL_BUILD_NO_OVERWRITE).expect("build");
    let mode = std::fs::metadata(&target)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o750);
    // again: an existing directory is fine
    dir::build_pool(&pool, flags::POOL_BUILD_OVERWRITE).expect("rebuild");
    let e = dir::build_pool(
        &pool,
        flags::POOL_BUILD_OVERWRITE | flags::POOL_BUILD_NO_OVERWRITE,
    )
    .expect_err("exclusive flags");
    assert_eq!(e.code(), 8);
    let e = dir::build_pool(&pool, 1).expect_err("unknown flag");
    assert_eq!(e.code(), 8);
    assert!(dir::check_pool(&pool).expect("check"));
    dir::start_pool(&pool).expect("start");
    let r = dir::refresh_pool(&pool).expect("refresh");
    assert!(r.volumes.is_empty());
    assert!(r.capacity > 0 && r.available > 0);
    assert_eq!(r.allocation + r.available, r.capacity);
    let shown = dir::with_sizes(&pool, &r);
    assert_eq!(shown.capacity_bytes(), r.capacity);
    std::fs::write(target.join("x.img"), b"x").expect("write");
    let e = dir::delete_pool(&pool, 0).expect_err("not empty");
    assert_eq!(e.code(), 55, "{}", e.full_message());
    assert!(e.to_string().contains("pool 'p'"));
    std::fs::remove_file(target.join("x.img")).expect("rm");
    dir::stop_pool(&pool).expect("stop");
    dir::delete_pool(&pool, 0).expect("delete");
    assert!(!target.exists());
    assert!(!dir::check_pool(&pool).expect("check"));
}

#[test]
fn pool_target_that_is_a_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let target = tmp.path().join("file");
    std::fs::write(&target, b"not a dir").expect("write");
    let pool = dir::parse_pool(&pool_xml("filepool", &target, "")).expect("pool");
    assert!(!dir::check_pool(&pool).expect("check"));
    let e = dir::start_pool(&pool).expect_err("a file");
    let m = e.full_message();
    assert_eq!(e.code(), 8, "{m}");
    assert!(
        m.contains("pool 'filepool'") && m.contains("pool/target/path"),
        "{m}"
    );
    assert!(m.contains("is not a directory"), "{m}");
    assert!(dir::refresh_pool(&pool).is_err());
    let rel = dir::parse_pool(&pool_xml("rel", Path::new("relative/x"), "")).expect("pool");
    let e = dir::start_pool(&rel).expect_err("relative");
    assert!(e.to_string().contains("pool/target/path"), "{e}");
}

#[test]
fn raw_create_sizes_match_qemu_img() {
    if !have_qemu_img("raw_create_sizes_match_qemu_img") {
        return;
    }
    let e = env();
    let sparse = e.vol(
        "<volume><name>sparse.img</name><capacity unit='M'>10</capacity><allocation>0</allocation></volume>",
    );
    let v = dir::create_volume(&e.pool, &sparse, 0).expect("create");
    assert_eq!(v.capacity_bytes(), 10 << 20);
    assert_eq!(v.allocation_bytes(), 0);
    assert_eq!(v.volume_type(), Some("file"));
    assert_matches_qemu_img(&v);
    let mode = std::fs::metadata(e.dir.join("sparse.img"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // allocation defaults to the capacity: fully preallocated
    let full = e.vol(
        "<volume><name>full.img</name><capacity unit='KiB'>512</capacity><target><permissions><mode>0644</mode></permissions></target></volume>",
    );
    let v = dir::create_volume(&e.pool, &full, 0).expect("create");
    assert!(
        v.allocation_bytes() >= 512 << 10,
        "{}",
        v.allocation_bytes()
    );
    assert_eq!(v.format_type(), Some("raw"));
    assert_matches_qemu_img(&v);
    let mode = std::fs::metadata(e.dir.join("full.img"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    let e2 = dir::create_volume(&e.pool, &full, 0).expect_err("exists");
    assert_eq!(e2.code(), 90, "{}", e2.full_message());
    let e3 = dir::create_volume(&e.pool, &sparse, flags::VOL_CREATE_PREALLOC_METADATA)
        .expect_err("raw metadata prealloc");
    assert_eq!(e3.code(), 3);
}

#[test]
fn qcow2_create_and_backing_store() {
    if !have_qemu_img("qcow2_create_and_backing_store") {
        return;
    }
    let e = env();
    let q = e.vol(
        "<volume><name>disk.qcow2</name><capacity unit='G'>1</capacity><target><format type='qcow2'/></target></volume>",
    );
    let v = dir::create_volume(&e.pool, &q, 0).expect("create qcow2");
    assert_eq!(v.format_type(), Some("qcow2"));
    assert_eq!(v.capacity_bytes(), 1 << 30);
    assert_eq!(v.target_compat(), Some("1.1"));
    assert_matches_qemu_img(&v);
    let i = info(&e.dir.join("disk.qcow2"));
    assert_eq!(i["format-specific"]["data"]["compat"], "1.1");
    // odd sizes are rounded up to KiB, as libvirt passes them
    let odd = e.vol(
        "<volume><name>odd.qcow2</name><capacity>1000</capacity><target><format type='qcow2'/><compat>0.10</compat></target></volume>",
    );
    let v = dir::create_volume(&e.pool, &odd, flags::VOL_CREATE_PREALLOC_METADATA).expect("create");
    assert_eq!(v.capacity_bytes(), 1024);
    assert_eq!(v.target_compat(), Some("0.10"));
    assert_matches_qemu_img(&v);
    let clustered = e.vol(
        "<volume><name>c.qcow2</name><capacity unit='M'>1</capacity><target><format type='qcow2'/><clusterSize unit='KiB'>128</clusterSize></target></volume>",
    );
    let v = dir::create_volume(&e.pool, &clustered, 0).expect("cluster size");
    assert_eq!(info(&e.dir.join("c.qcow2"))["cluster-size"], 131072);
    assert!(
        v.to_xml(&Default::default())
            .contains("<clusterSize unit='B'>131072</clusterSize>")
    );
    let enc = e.vol(
        "<volume><name>e.qcow2</name><capacity unit='M'>1</capacity><target><format type='qcow2'/><encryption format='luks'><secret type='passphrase' uuid='f52a81b2-424e-490c-823d-6bd4235bc572'/></encryption></target></volume>",
    );
    let err = dir::create_volume(&e.pool, &enc, 0).expect_err("encryption");
    assert_eq!(err.code(), 3);
    assert!(err.to_string().contains("encryption"), "{err}");
    assert!(!e.dir.join("e.qcow2").exists());
    let lazy = e.vol(
        "<volume><name>lazy.qcow2</name><capacity unit='M'>1</capacity><target><format type='qcow2'/><features><lazy_refcounts/></features></target></volume>",
    );
    let v = dir::create_volume(&e.pool, &lazy, 0).expect("create");
    assert!(v.has_target_feature("lazy_refcounts"));
    assert_eq!(
        info(&e.dir.join("lazy.qcow2"))["format-specific"]["data"]["lazy-refcounts"],
        true
    );

    // backing store: a raw base, an overlay naming its format, one probed
    let base = e.vol("<volume><name>base.img</name><capacity unit='M'>4</capacity><allocation>0</allocation></volume>");
    dir::create_volume(&e.pool, &base, 0).expect("base");
    let base_path = e.dir.join("base.img");
    let overlay = e.vol(&format!(
        "<volume><name>over.qcow2</name><capacity>0</capacity><target><format type='qcow2'/></target><backingStore><path>{}</path><format type='raw'/></backingStore></volume>",
        base_path.display()
    ));
    let v = dir::create_volume(&e.pool, &overlay, 0).expect("overlay");
    let bp = base_path.to_string_lossy().into_owned();
    assert_eq!(v.backing_store(), Some((Some(bp.as_str()), Some("raw"))));
    assert_eq!(
        v.capacity_bytes(),
        4 << 20,
        "capacity from the backing file"
    );
    assert_matches_qemu_img(&v);
    let i = info(&e.dir.join("over.qcow2"));
    assert_eq!(i["backing-filename"].as_str(), Some(bp.as_str()));
    assert_eq!(i["backing-filename-format"], "raw");
    let probed = e.vol(&format!(
        "<volume><name>over2.qcow2</name><capacity unit='M'>8</capacity><target><format type='qcow2'/></target><backingStore><path>{}</path></backingStore></volume>",
        e.dir.join("over.qcow2").display()
    ));
    let v = dir::create_volume(&e.pool, &probed, 0).expect("probed backing");
    assert_eq!(v.backing_store().and_then(|b| b.1), Some("qcow2"));
    assert_eq!(v.capacity_bytes(), 8 << 20);
    // refresh agrees with create
    let r = dir::refresh_pool(&e.pool).expect("refresh");
    let again = r
        .volumes
        .iter()
        .find(|x| x.name() == "over.qcow2")
        .expect("listed");
    assert_eq!(
        again.backing_store(),
        Some((Some(bp.as_str()), Some("raw")))
    );
}

#[test]
fn clone_raw_to_qcow2_and_back() {
    if !have_qemu_img("clone_raw_to_qcow2_and_back") {
        return;
    }
    let e = env();
    let src = e.vol("<volume><name>src.img</name><capacity unit='M'>2</capacity><allocation>0</allocation></volume>");
    dir::create_volume(&e.pool, &src, 0).expect("src");
    let data = pattern(300_000, 7);
    write_into(&e, "src.img", 65536, &data);
    let before = e.read("src.img");
    assert_eq!(&before[65536..65536 + data.len()], &data[..]);

    let to_q = e.vol("<volume><name>c.qcow2</name><capacity>0</capacity><target><format type='qcow2'/></target></volume>");
    let v = dir::create_volume_from(&e.pool, &to_q, &e.pool, &src, 0).expect("raw->qcow2");
    assert_eq!(v.format_type(), Some("qcow2"));
    assert_eq!(v.capacity_bytes(), 2 << 20);
    assert_matches_qemu_img(&v);
    // the document says raw (the default): the header says qcow2, and decides
    let qsrc = e.named("c.qcow2");
    assert_eq!(qsrc.format_type(), Some("raw"));
    let back = e.vol("<volume><name>back.img</name><capacity>0</capacity></volume>");
    let v = dir::create_volume_from(&e.pool, &back, &e.pool, &qsrc, 0).expect("qcow2->raw");
    assert_eq!(v.format_type(), Some("raw"));
    assert_eq!(e.read("back.img"), before);
    // raw -> raw: sparse copy into another pool, larger capacity
    let tmp2 = tempfile::tempdir().expect("tempdir");
    let pool2 = dir::parse_pool(&pool_xml("q", &tmp2.path().join("p2"), "")).expect("pool2");
    dir::build_pool(&pool2, 0).expect("build");
    let big = dir::parse_volume(
        &pool2,
        "<volume><name>copy.img</name><capacity unit='M'>3</capacity></volume>",
        false,
    )
    .expect("vol");
    let v = dir::create_volume_from(&pool2, &big, &e.pool, &src, 0).expect("raw->raw");
    assert_eq!(v.capacity_bytes(), 3 << 20);
    assert!(
        v.allocation_bytes() < 1 << 20,
        "sparse copy: {}",
        v.allocation_bytes()
    );
    let mut d = dir::download(&pool2, &big, 0, 2 << 20).expect("download");
    let mut copied = Vec::new();
    d.read_to_end(&mut copied).expect("read");
    assert_eq!(copied, before);
    // the destination exists
    let err = dir::create_volume_from(&e.pool, &back, &e.pool, &src, 0).expect_err("exists");
    assert_eq!(err.code(), 90);
    // a missing source
    let ghost = e.named("ghost.img");
    let n = e.vol("<volume><name>n.img</name><capacity>0</capacity></volume>");
    let err = dir::create_volume_from(&e.pool, &n, &e.pool, &ghost, 0).expect_err("no source");
    assert_eq!(err.code(), 50, "{}", err.full_message());
    assert!(!e.dir.join("n.img").exists());
}

#[test]
fn resize_rules() {
    if !have_qemu_img("resize_rules") {
        return;
    }
    let e = env();
    let r = e.vol("<volume><name>r.img</name><capacity unit='M'>1</capacity><allocation>0</allocation></volume>");
    dir::create_volume(&e.pool, &r, 0).expect("create");
    let v = dir::resize_volume(&e.pool, &r, 2 << 20, 0).expect("grow");
    assert_eq!(v.capacity_bytes(), 2 << 20);
    let err = dir::resize_volume(&e.pool, &r, 1 << 20, 0).expect_err("shrink without flag");
    assert_eq!(err.code(), 8);
    assert!(err.to_string().contains("SHRINK"), "{err}");
    let v = dir::resize_volume(&e.pool, &r, 1 << 20, flags::VOL_RESIZE_SHRINK).expect("shrink");
    assert_eq!(v.capacity_bytes(), 1 << 20);
    let v = dir::resize_volume(&e.pool, &r, 4096, flags::VOL_RESIZE_DELTA).expect("delta");
    assert_eq!(v.capacity_bytes(), (1 << 20) + 4096);
    let v = dir::resize_volume(
        &e.pool,
        &r,
        4096,
        flags::VOL_RESIZE_DELTA | flags::VOL_RESIZE_SHRINK,
    )
    .expect("delta shrink");
    assert_eq!(v.capacity_bytes(), 1 << 20);
    // as libvirt, a delta shrink stops at zero
    let z = e.vol(
        "<volume><name>z.img</name><capacity>4096</capacity><allocation>0</allocation></volume>",
    );
    dir::create_volume(&e.pool, &z, 0).expect("create");
    let v = dir::resize_volume(
        &e.pool,
        &z,
        1 << 20,
        flags::VOL_RESIZE_DELTA | flags::VOL_RESIZE_SHRINK,
    )
    .expect("to zero");
    assert_eq!(v.capacity_bytes(), 0);
    // never below what is allocated
    let a = e.vol("<volume><name>a.img</name><capacity unit='KiB'>64</capacity></volume>");
    dir::create_volume(&e.pool, &a, 0).expect("create");
    let err = dir::resize_volume(&e.pool, &a, 4096, flags::VOL_RESIZE_SHRINK)
        .expect_err("below allocation");
    assert_eq!(err.code(), 8);
    assert!(err.to_string().contains("allocation"), "{err}");
    let err = dir::resize_volume(
        &e.pool,
        &r,
        more_than_the_fs(&e),
        flags::VOL_RESIZE_ALLOCATE,
    )
    .expect_err("no space");
    assert_eq!(err.code(), 9);
    let err =
        dir::resize_volume(&e.pool, &r, u64::MAX, flags::VOL_RESIZE_DELTA).expect_err("overflow");
    assert_eq!(err.code(), 82);
    let v = dir::resize_volume(&e.pool, &r, 3 << 20, flags::VOL_RESIZE_ALLOCATE).expect("allocate");
    assert!(v.allocation_bytes() >= 2 << 20, "{}", v.allocation_bytes());
    assert_matches_qemu_img(&v);
    let err = dir::resize_volume(&e.pool, &r, 1, 8).expect_err("unknown flag");
    assert_eq!(err.code(), 8);

    let q = e.vol("<volume><name>q.qcow2</name><capacity unit='M'>64</capacity><target><format type='qcow2'/></target></volume>");
    dir::create_volume(&e.pool, &q, 0).expect("create");
    let v = dir::resize_volume(&e.pool, &q, 128 << 20, 0).expect("grow qcow2");
    assert_eq!(v.capacity_bytes(), 128 << 20);
    assert_matches_qemu_img(&v);
    let err = dir::resize_volume(&e.pool, &q, 32 << 20, 0).expect_err("shrink qcow2");
    assert_eq!(err.code(), 8);
    let v =
        dir::resize_volume(&e.pool, &q, 32 << 20, flags::VOL_RESIZE_SHRINK).expect("shrink qcow2");
    assert_eq!(v.capacity_bytes(), 32 << 20);
    assert_matches_qemu_img(&v);
    let err = dir::resize_volume(&e.pool, &q, 64 << 20, flags::VOL_RESIZE_ALLOCATE)
        .expect_err("alloc qcow2");
    assert_eq!(err.code(), 3);
}

#[test]
fn wipe_zero_and_other_algorithms() {
    let e = env();
    let w = e.vol("<volume><name>w.img</name><capacity unit='KiB'>256</capacity></volume>");
    dir::create_volume(&e.pool, &w, 0).expect("create");
    write_into(&e, "w.img", 0, &pattern(256 << 10, 1));
    let how = dir::wipe_volume(&e.pool, &w, flags::WIPE_ALG_ZERO, 0).expect("wipe");
    assert!(matches!(
        how,
        WipeMethod::PunchHole | WipeMethod::WroteZeros
    ));
    let after = e.read("w.img");
    assert_eq!(after.len(), 256 << 10);
    assert!(after.iter().all(|&b| b == 0));
    let err = dir::wipe_volume(&e.pool, &w, 4, 0).expect_err("gutmann");
    assert_eq!(err.code(), 3);
    assert!(err.to_string().contains("gutmann"), "{err}");
    let err = dir::wipe_volume(&e.pool, &w, 99, 0).expect_err("unknown");
    assert_eq!(err.code(), 8);
    assert!(err.to_string().contains("99"), "{err}");
}

#[test]
fn wipe_refuses_qcow2() {
    if !have_qemu_img("wipe_refuses_qcow2") {
        return;
    }
    let e = env();
    let q = e.vol("<volume><name>q.qcow2</name><capacity unit='M'>1</capacity><target><format type='qcow2'/></target></volume>");
    dir::create_volume(&e.pool, &q, 0).expect("create");
    let err = dir::wipe_volume(&e.pool, &q, 0, 0).expect_err("qcow2");
    assert_eq!(err.code(), 3);
    assert_eq!(info(&e.dir.join("q.qcow2"))["format"], "qcow2");
}

#[test]
fn upload_download_ranges() {
    let e = env();
    let v = e.vol("<volume><name>u.img</name><capacity unit='KiB'>64</capacity><allocation>0</allocation></volume>");
    dir::create_volume(&e.pool, &v, 0).expect("create");
    let data = pattern(5000, 3);
    let after = write_into(&e, "u.img", 8192, &data);
    assert_eq!(after.capacity_bytes(), 64 << 10);
    let mut d = dir::download(&e.pool, &v, 8192, 5000).expect("download");
    assert_eq!(d.remaining(), 5000);
    let mut got = Vec::new();
    d.read_to_end(&mut got).expect("read");
    assert_eq!(got, data);
    let all = e.read("u.img");
    assert_eq!(all.len(), 64 << 10);
    assert!(all[..8192].iter().all(|&b| b == 0));
    assert_eq!(&all[8192..13192], &data[..]);
    // to the end: offset with length 0
    let mut d = dir::download(&e.pool, &v, 60 << 10, 0).expect("tail");
    assert_eq!(d.remaining(), 4 << 10);
    let mut sink = Vec::new();
    assert_eq!(d.copy_to(&mut sink).expect("copy"), 4096);
    // past the capacity: refused before writing
    let err = dir::upload(&e.pool, &v, 60 << 10, 8192).expect_err("past capacity");
    assert_eq!(err.code(), 8, "{}", err.full_message());
    let err = dir::upload(&e.pool, &v, 1 << 20, 0).expect_err("offset past capacity");
    assert_eq!(err.code(), 8);
    let mut u = dir::upload(&e.pool, &v, 60 << 10, 0).expect("upload to end");
    assert!(
        u.write_all(&pattern(8192, 9)).is_err(),
        "write past capacity"
    );
    drop(u);
    assert_eq!(
        std::fs::metadata(e.dir.join("u.img")).expect("stat").len(),
        64 << 10
    );
    assert!(e.read("u.img")[60 << 10..].iter().all(|&b| b == 0));
    // a short upload is reported
    let mut u = dir::upload(&e.pool, &v, 0, 100).expect("upload");
    u.write_all(&[1; 50]).expect("write");
    assert_eq!(u.finish().expect_err("short").code(), 55);
    let err = dir::download(&e.pool, &v, 0, 1 << 20).expect_err("past end");
    assert_eq!(err.code(), 8);
    let err = dir::download(&e.pool, &e.named("none.img"), 0, 0).expect_err("missing");
    assert_eq!(err.code(), 50);
}

#[test]
fn refresh_finds_files_created_outside() {
    if !have_qemu_img("refresh_finds_files_created_outside") {
        return;
    }
    let e = env();
    assert!(e.listed().is_empty());
    std::fs::write(e.dir.join("outside.raw"), pattern(10_000, 5)).expect("write");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(e.dir.join("made.qcow2"))
        .arg("3G")
        .status()
        .expect("qemu-img");
    assert!(st.success());
    std::fs::create_dir(e.dir.join("sub")).expect("mkdir");
    let r = dir::refresh_pool(&e.pool).expect("refresh");
    let names: Vec<_> = r.volumes.iter().map(|v| v.name()).collect();
    assert_eq!(names, ["made.qcow2", "outside.raw", "sub"]);
    for v in &r.volumes[..2] {
        assert_matches_qemu_img(v);
    }
    assert_eq!(r.volumes[0].capacity_bytes(), 3 << 30);
    assert_eq!(r.volumes[1].capacity_bytes(), 10_000);
    assert_eq!(r.volumes[2].volume_type(), Some("dir"));
    assert_eq!(r.volumes[2].format_type(), Some("dir"));
    let one = dir::refresh_volume(&e.pool, &e.named("made.qcow2")).expect("refresh one");
    assert_eq!(one, r.volumes[0]);
    let xml = one.to_xml(&Default::default());
    assert!(
        xml.contains("<key>") && xml.contains("<format type='qcow2'/>"),
        "{xml}"
    );
    // an ISO image by its descriptor
    let mut iso = vec![0u8; 0x9000];
    iso[0x8001..0x8006].copy_from_slice(b"CD001");
    std::fs::write(e.dir.join("cd.iso"), &iso).expect("write");
    let v = dir::refresh_volume(&e.pool, &e.named("cd.iso")).expect("iso");
    assert_eq!(v.format_type(), Some("iso"));
    // deleting a directory volume, and a file one
    dir::delete_volume(&e.pool, &e.named("sub"), 0).expect("rmdir");
    dir::delete_volume(&e.pool, &e.named("outside.raw"), 0).expect("rm");
    assert_eq!(e.listed(), ["cd.iso", "made.qcow2"]);
    let err = dir::delete_volume(&e.pool, &e.named("outside.raw"), 0).expect_err("gone");
    assert_eq!(err.code(), 50);
}

#[test]
fn bad_names_and_paths() {
    let e = env();
    let outside = e.root.join("outside.img");
    std::fs::write(&outside, b"precious").expect("write");
    // rejected by the parser: '/' and empty names, sizes overflowing u64
    for xml in [
        "<volume><name>a/b</name><capacity>1</capacity></volume>",
        "<volume><name>/etc/passwd</name><capacity>1</capacity></volume>",
        "<volume><name></name><capacity>1</capacity></volume>",
        "<volume><name>big</name><capacity unit='EiB'>100</capacity></volume>",
    ] {
        let err = dir::parse_volume(&e.pool, xml, false).expect_err(xml);
        assert_eq!(err.code(), 27, "{xml}");
        assert!(
            err.full_message().contains("volume/"),
            "{}",
            err.full_message()
        );
    }
    // '..' and '.' reach the backend, which refuses them for every operation
    for name in ["..", "."] {
        let v = e.vol(&format!(
            "<volume><name>{name}</name><capacity>1</capacity></volume>"
        ));
        let err = dir::create_volume(&e.pool, &v, 0).expect_err(name);
        assert_eq!(err.code(), 8);
        let m = err.to_string();
        assert!(m.contains("volume/name") && m.contains("pool 'p'"), "{m}");
        assert_eq!(
            dir::delete_volume(&e.pool, &v, 0).expect_err(name).code(),
            8
        );
        assert_eq!(dir::upload(&e.pool, &v, 0, 0).expect_err(name).code(), 8);
    }
    // a target path outside the pool
    let v = e.vol(&format!(
        "<volume><name>outside.img</name><capacity>1</capacity><target><path>{}</path></target></volume>",
        outside.display()
    ));
    for err in [
        dir::create_volume(&e.pool, &v, 0).expect_err("outside"),
        dir::delete_volume(&e.pool, &v, 0).expect_err("outside"),
        dir::upload(&e.pool, &v, 0, 0).expect_err("outside"),
        dir::resize_volume(&e.pool, &v, 0, flags::VOL_RESIZE_SHRINK).expect_err("outside"),
        dir::wipe_volume(&e.pool, &v, 0, 0).expect_err("outside"),
    ] {
        assert_eq!(err.code(), 8);
        assert!(err.to_string().contains("volume/target/path"), "{err}");
    }
    let sneaky = e.vol(&format!(
        "<volume><name>x.img</name><capacity>1</capacity><target><path>{}/../outside.img</path></target></volume>",
        e.dir.display()
    ));
    assert_eq!(
        dir::create_volume(&e.pool, &sneaky, 0)
            .expect_err("dotdot")
            .code(),
        8
    );
    assert_eq!(std::fs::read(&outside).expect("read"), b"precious");

    // symbolic links in the target are never followed
    std::os::unix::fs::symlink(&outside, e.dir.join("evil.img")).expect("symlink");
    assert!(e.listed().is_empty(), "links are not volumes");
    let evil = e.named("evil.img");
    assert_eq!(
        dir::upload(&e.pool, &evil, 0, 0).expect_err("link").code(),
        55
    );
    assert_eq!(
        dir::wipe_volume(&e.pool, &evil, 0, 0)
            .expect_err("link")
            .code(),
        55
    );
    assert_eq!(
        dir::resize_volume(&e.pool, &evil, 1 << 20, 0)
            .expect_err("link")
            .code(),
        55
    );
    assert_eq!(
        dir::refresh_volume(&e.pool, &evil)
            .expect_err("link")
            .code(),
        55
    );
    assert_eq!(
        dir::download(&e.pool, &evil, 0, 0)
            .expect_err("link")
            .code(),
        55
    );
    assert_eq!(
        dir::delete_volume(&e.pool, &evil, 0)
            .expect_err("link")
            .code(),
        55
    );
    let again = e.vol("<volume><name>evil.img</name><capacity unit='M'>1</capacity></volume>");
    assert_eq!(
        dir::create_volume(&e.pool, &again, 0)
            .expect_err("exists")
            .code(),
        90
    );
    assert_eq!(std::fs::read(&outside).expect("read"), b"precious");
    assert!(e.dir.join("evil.img").is_symlink());

    // more than the file system has, preallocated: refused; sparse: fine
    let huge = e.vol(&format!(
        "<volume><name>huge.img</name><capacity>{}</capacity></volume>",
        more_than_the_fs(&e)
    ));
    let err = dir::create_volume(&e.pool, &huge, 0).expect_err("no space");
    assert_eq!(err.code(), 9, "{}", err.full_message());
    assert!(err.to_string().contains("huge.img"), "{err}");
    assert!(!e.dir.join("huge.img").exists());
    let sparse = e.vol("<volume><name>sparse.img</name><capacity unit='TiB'>4</capacity><allocation>0</allocation></volume>");
    let v = dir::create_volume(&e.pool, &sparse, 0).expect("sparse");
    assert_eq!(v.capacity_bytes(), 4 << 40);
    // unknown formats are not created
    let vmdk = e.vol("<volume><name>d.vmdk</name><capacity>1</capacity><target><format type='vmdk'/></target></volume>");
    assert_eq!(
        dir::create_volume(&e.pool, &vmdk, 0)
            .expect_err("vmdk")
            .code(),
        3
    );
    // a volume of another pool type is refused
    let other = dir::parse_pool("<pool type='logical'><name>vg</name></pool>").expect("pool");
    assert_eq!(dir::start_pool(&other).expect_err("logical").code(), 8);
}

#[test]
fn qemu_img_failures_carry_stderr() {
    if !have_qemu_img("qemu_img_failures_carry_stderr") {
        return;
    }
    let e = env();
    let v = e.vol(&format!(
        "<volume><name>o.qcow2</name><capacity unit='M'>1</capacity><target><format type='qcow2'/></target><backingStore><path>{}/missing.img</path><format type='raw'/></backingStore></volume>",
        e.root.display()
    ));
    let err = dir::create_volume(&e.pool, &v, 0).expect_err("missing backing");
    assert_eq!(err.code(), 1);
    let m = err.full_message();
    assert!(m.contains("qemu-img") && m.contains("missing.img"), "{m}");
    assert!(
        !e.dir.join("o.qcow2").exists(),
        "no half-made volume is left"
    );
    let rel = e.vol(
        "<volume><name>r.qcow2</name><capacity unit='M'>1</capacity><target><format type='qcow2'/></target><backingStore><path>base.img</path><format type='raw'/></backingStore></volume>",
    );
    let err = dir::create_volume(&e.pool, &rel, 0).expect_err("relative backing");
    assert_eq!(err.code(), 8);
    assert!(
        err.to_string().contains("volume/backingStore/path"),
        "{err}"
    );
    // qemu-img missing: run in a child with RVIRT_QEMU_IMG pointing nowhere
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "qemu_img_missing_child",
            "--ignored",
            "--nocapture",
        ])
        .env("RVIRT_QEMU_IMG", "/nonexistent/qemu-img")
        .output()
        .expect("child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run by qemu_img_failures_carry_stderr with RVIRT_QEMU_IMG set"]
fn qemu_img_missing_child() {
    assert_eq!(
        std::env::var("RVIRT_QEMU_IMG").as_deref(),
        Ok("/nonexistent/qemu-img")
    );
    let e = env();
    let v = e.vol("<volume><name>q.qcow2</name><capacity unit='M'>1</capacity><target><format type='qcow2'/></target></volume>");
    let err: Error = dir::create_volume(&e.pool, &v, 0).expect_err("no qemu-img");
    assert_eq!(err.code(), 1);
    let m = err.full_message();
    assert!(m.contains("cannot run '/nonexistent/qemu-img'"), "{m}");
    assert!(!e.dir.join("q.qcow2").exists());
}

#[test]
fn cached_refresh_reads_again_only_what_changed() {
    use rvirt_storage_files::probe::write_qcow2_header;
    let e = env();
    let cache = dir::RefreshCache::default();
    std::fs::write(e.dir.join("a.raw"), vec![1u8; 4096]).expect("write");
    std::fs::write(e.dir.join("b.raw"), vec![2u8; 4096]).expect("write");
    let first = dir::refresh_pool_xml(&e.pool, &cache).expect("refresh");
    assert_eq!(first.volumes.len(), 2);
    // the same text as the uncached refresh
    let plain = dir::refresh_pool(&e.pool).expect("refresh");
    let opts = rvirt_xml::FormatOptions {
        inactive: false,
        secure: true,
    };
    let texts: Vec<String> = plain.volumes.iter().map(|v| v.to_xml(&opts)).collect();
    assert_eq!(first.volumes, texts);
    // b becomes a qcow2 image in place, same length: its change time tells
    let mut hdr = vec![0u8; 4096];
    write_qcow2_header(&mut hdr, 1 << 30, None);
    std::fs::write(e.dir.join("b.raw"), &hdr).expect("rewrite");
    let second = dir::refresh_pool_xml(&e.pool, &cache).expect("refresh");
    assert_eq!(second.volumes[0], first.volumes[0], "a is unchanged");
    assert!(
        second.volumes[1].contains("<format type='qcow2'/>"),
        "{}",
        second.volumes[1]
    );
    // a file that goes is gone from the report; one that comes is in it
    std::fs::remove_file(e.dir.join("a.raw")).expect("rm");
    std::fs::write(e.dir.join("c.raw"), b"x").expect("write");
    let third = dir::refresh_pool_xml(&e.pool, &cache).expect("refresh");
    let names: Vec<bool> = ["<name>b.raw<", "<name>c.raw<"]
        .iter()
        .zip(&third.volumes)
        .map(|(n, x)| x.contains(n))
        .collect();
    assert_eq!((third.volumes.len(), names), (2, vec![true, true]));
    // a symbolic link is never a volume, cached or not
    std::os::unix::fs::symlink("/etc/passwd", e.dir.join("link")).expect("symlink");
    assert_eq!(
        dir::refresh_pool_xml(&e.pool, &cache)
            .expect("refresh")
            .volumes
            .len(),
        2
    );
}

//! The storage subsystem against an in-memory backend: lifecycle, persistence across a
//! "restart" (a new `Pools` on the same directories), autostart, duplicate and bad input,
//! events, and per-pool locking.

use super::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Pools of type `mem`: a set of "existing" targets, each a map of volume name to
/// capacity. `slow` pools sleep in `create_volume`.
#[derive(Default)]
pub(crate) struct MemBackend {
    targets: Mutex<HashMap<String, BTreeMap<String, u64>>>,
    slow: Mutex<Option<Duration>>,
}

fn target(pool: &str) -> String {
    StoragePool::parse(pool)
        .unwrap()
        .target_path()
        .unwrap()
        .to_string()
}

fn vol_xml(pool_target: &str, name: &str, cap: u64) -> String {
    format!(
        "<volume><name>{name}</name><key>{pool_target}/{name}</key><capacity unit='bytes'>{cap}</capacity><allocation unit='bytes'>0</allocation><target><path>{pool_target}/{name}</path><format type='raw'/></target></volume>"
    )
}

impl PoolBackend for MemBackend {
    fn check_pool(&self, pool: &str) -> Result<bool> {
        Ok(lock(&self.targets).contains_key(&target(pool)))
    }
    fn build_pool(&self, pool: &str, _flags: u32) -> Result<()> {
        lock(&self.targets).entry(target(pool)).or_default();
        Ok(())
    }
    fn start_pool(&self, pool: &str) -> Result<()> {
        let t = target(pool);
        if lock(&self.targets).contains_key(&t) {
            Ok(())
        } else {
            Err(storage_err(
                ErrorCode::OperationInvalid as i32,
                format!("target '{t}' does not exist"),
            ))
        }
    }
    fn stop_pool(&self, _pool: &str) -> Result<()> {
        Ok(())
    }
    fn delete_pool(&self, pool: &str, _flags: u32) -> Result<()> {
        lock(&self.targets).remove(&target(pool));
        Ok(())
    }
    fn refresh_pool(&self, pool: &str) -> Result<PoolRefresh> {
        let t = target(pool);
        let targets = lock(&self.targets);
        let vols = targets.get(&t).cloned().unwrap_or_default();
        Ok(PoolRefresh {
            capacity: 1 << 30,
            allocation: vols.values().sum(),
            available: (1 << 30) - vols.values().sum::<u64>(),
            volumes: vols.iter().map(|(n, c)| vol_xml(&t, n, *c)).collect(),
        })
    }
    fn create_volume(&self, pool: &str, vol: &str, _flags: u32) -> Result<String> {
        if let Some(d) = *lock(&self.slow) {
            std::thread::sleep(d);
        }
        let t = target(pool);
        let v = StorageVolume::parse(vol, None).unwrap();
        lock(&self.targets)
            .get_mut(&t)
            .unwrap()
            .insert(v.name().into(), v.capacity_bytes());
        Ok(vol_xml(&t, v.name(), v.capacity_bytes()))
    }
    fn create_volume_from(
        &self,
        pool: &str,
        vol: &str,
        _src_pool: &str,
        src_vol: &str,
        flags: u32,
    ) -> Result<String> {
        let src = StorageVolume::parse(src_vol, None).unwrap();
        let v = StorageVolume::parse_with(
            vol,
            None,
            &rvirt_xml::VolumeParseOptions {
                allow_missing_capacity: true,
            },
        )
        .unwrap();
        let xml = vol_xml("/x", v.name(), src.capacity_bytes());
        self.create_volume(pool, &xml, flags)
    }
    fn delete_volume(&self, pool: &str, vol: &str, _flags: u32) -> Result<()> {
        let v = StorageVolume::parse(vol, None).unwrap();
        lock(&self.targets)
            .get_mut(&target(pool))
            .unwrap()
            .remove(v.name());
        Ok(())
    }
    fn resize_volume(&self, pool: &str, vol: &str, capacity: u64, _flags: u32) -> Result<()> {
        let v = StorageVolume::parse(vol, None).unwrap();
        lock(&self.targets)
            .get_mut(&target(pool))
            .unwrap()
            .insert(v.name().into(), capacity);
        Ok(())
    }
    fn wipe_volume(&self, _pool: &str, _vol: &str, algorithm: u32, _flags: u32) -> Result<()> {
        if algorithm == 0 {
            Ok(())
        } else {
            Err(storage_err(
                ErrorCode::NoSupport as i32,
                format!("wipe algorithm {algorithm} is not supported"),
            ))
        }
    }
    fn refresh_volume(&self, pool: &str, vol: &str) -> Result<String> {
        let t = target(pool);
        let v = StorageVolume::parse(vol, None).unwrap();
        let cap = lock(&self.targets)[&t][v.name()];
        Ok(vol_xml(&t, v.name(), cap))
    }
}

struct Table(Arc<MemBackend>);

impl BackendResolver for Table {
    fn backend(&self, pool_type: &str) -> Result<Arc<dyn PoolBackend>> {
        match pool_type {
            "dir" => Ok(self.0.clone()),
            other => Err(storage_err(
                ErrorCode::NoSupport as i32,
                format!("no installed plugin serves storage pool type '{other}'"),
            )),
        }
    }
}

fn pool_xml(name: &str, target: &str) -> String {
    format!("<pool type='dir'><name>{name}</name><target><path>{target}</path></target></pool>")
}

fn setup(dirs: Option<StorageDirs>, mem: &Arc<MemBackend>) -> Pools {
    Pools::open(dirs, Arc::new(Table(mem.clone()))).unwrap()
}

fn dirs(root: &Path) -> StorageDirs {
    StorageDirs {
        config: root.join("etc/storage"),
        state: root.join("run/storage"),
    }
}

#[test]
fn pool_and_volume_lifecycle() {
    let mem = Arc::new(MemBackend::default());
    let pools = setup(None, &mem);
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    pools.subscribe(Arc::new(move |e: &PoolEvent| lock(&ev).push(e.event)));
    let id = pools.define(&pool_xml("p", "/t/p"), 0).unwrap();
    assert!(!id.uuid.is_nil(), "a UUID is generated");
    assert_eq!(pools.info("p").unwrap().state, pool_state::INACTIVE);
    // not built yet: start fails and the pool stays inactive
    let e = pools.create("p", 0).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(!pools.is_active("p").unwrap());
    pools.build("p", 0).unwrap();
    pools.create("p", 0).unwrap();
    assert_eq!(pools.info("p").unwrap().state, pool_state::RUNNING);
    assert_eq!(pools.info("p").unwrap().capacity, 1 << 30);
    let v = pools
        .create_volume("p", &vol_xml("/t/p", "a.img", 4096), None, 0)
        .unwrap();
    assert_eq!((v.name.as_str(), v.key.as_str()), ("a.img", "/t/p/a.img"));
    let e = pools
        .create_volume("p", &vol_xml("/t/p", "a.img", 1), None, 0)
        .unwrap_err();
    assert_eq!(e.code(), STORAGE_VOL_EXIST, "{e}");
    assert_eq!(pools.volume_by_path("/t/p/a.img").unwrap(), v);
    assert_eq!(pools.volume_by_key("/t/p/a.img").unwrap(), v);
    let clone = pools
        .create_volume(
            "p",
            "<volume><name>b.img</name></volume>",
            Some(("p", "a.img")),
            0,
        )
        .unwrap();
    assert_eq!(pools.volume_info("p", &clone.name).unwrap().capacity, 4096);
    pools.resize_volume("p", "a.img", 8192, 0).unwrap();
    assert_eq!(pools.volume_info("p", "a.img").unwrap().capacity, 8192);
    assert!(pools.volume_xml("p", "a.img", 0).unwrap().contains("8192"));
    assert_eq!(pools.volume_path("p", "a.img").unwrap(), "/t/p/a.img");
    assert!(
        pools
            .wipe_volume("p", "a.img", 3, 0)
            .unwrap_err()
            .is_no_support()
    );
    // a file that appears behind the host's back is found by a refresh
    lock(&mem.targets)
        .get_mut("/t/p")
        .unwrap()
        .insert("outside.img".into(), 1);
    assert_eq!(pools.list_volumes("p").unwrap().len(), 2);
    pools.refresh("p", 0).unwrap();
    assert_eq!(pools.list_volumes("p").unwrap().len(), 3);
    pools.delete_volume("p", "a.img", 0).unwrap();
    assert_eq!(
        pools.volume_by_name("p", "a.img").unwrap_err().code(),
        NO_STORAGE_VOL
    );
    assert!(
        pools
            .undefine("p")
            .unwrap_err()
            .to_string()
            .contains("still active")
    );
    pools.destroy("p").unwrap();
    assert!(
        pools
            .list_volumes("p")
            .unwrap_err()
            .to_string()
            .contains("not active")
    );
    pools.delete("p", 0).unwrap();
    pools.undefine("p").unwrap();
    assert_eq!(pools.lookup_by_name("p").unwrap_err().code(), 49);
    use pool_event::*;
    assert_eq!(
        *lock(&events),
        [
            Some(DEFINED),
            Some(CREATED),
            Some(STARTED),
            None,
            Some(STOPPED),
            Some(DELETED),
            Some(UNDEFINED)
        ]
    );
}

#[test]
fn transient_pools_vanish_when_stopped() {
    let mem = Arc::new(MemBackend::default());
    let pools = setup(None, &mem);
    pools.create_xml(&pool_xml("t", "/t/t"), 1).unwrap();
    assert!(!pools.is_persistent("t").unwrap());
    assert!(pools.set_autostart("t", true).is_err());
    pools.destroy("t").unwrap();
    assert!(pools.lookup_by_name("t").is_err());
}

#[test]
fn bad_input_is_refused_naming_the_field() {
    let mem = Arc::new(MemBackend::default());
    let pools = setup(None, &mem);
    pools.define(&pool_xml("p", "/t/p"), 0).unwrap();
    for (xml, want) in [
        (pool_xml("../evil", "/t/e"), "pool/name"),
        (pool_xml("a/b", "/t/e"), "pool/name"),
        (pool_xml("q", "/t/p"), "conflict with pool: 'p'"),
        (
            "<pool type='rbd'><name>r</name></pool>".to_string(),
            "pool type 'rbd'",
        ),
        (
            "<pool type='dir'><name>".to_string(),
            "invalid storage pool XML",
        ),
    ] {
        let e = pools.define(&xml, 0).unwrap_err();
        assert!(e.to_string().contains(want), "{xml}: {e}");
    }
    let uuid = pools.lookup_by_name("p").unwrap().uuid;
    let other_uuid = format!(
        "<pool type='dir'><name>p</name><uuid>{}</uuid><target><path>/t/p</path></target></pool>",
        uuid::Uuid::new_v4()
    );
    assert!(
        pools
            .define(&other_uuid, 0)
            .unwrap_err()
            .to_string()
            .contains("already defined with uuid")
    );
    let renamed = format!(
        "<pool type='dir'><name>p2</name><uuid>{uuid}</uuid><target><path>/t/p2</path></target></pool>"
    );
    assert!(
        pools
            .define(&renamed, 0)
            .unwrap_err()
            .to_string()
            .contains("already exists with uuid")
    );
    assert_eq!(pools.list(1 << 25).unwrap_err().code(), 8);
    assert_eq!(pools.refresh("p", 1).unwrap_err().code(), 8);
}

#[test]
fn list_filters() {
    let mem = Arc::new(MemBackend::default());
    let pools = setup(None, &mem);
    pools.define(&pool_xml("a", "/t/a"), 0).unwrap();
    pools.define(&pool_xml("b", "/t/b"), 0).unwrap();
    pools.build("b", 0).unwrap();
    pools.create("b", 0).unwrap();
    pools.create_xml(&pool_xml("c", "/t/c"), 1).unwrap();
    let names = |f| {
        pools
            .list(f)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(0), ["a", "b", "c"]);
    assert_eq!(names(list_flags::ACTIVE), ["b", "c"]);
    assert_eq!(names(list_flags::INACTIVE), ["a"]);
    assert_eq!(names(list_flags::TRANSIENT), ["c"]);
    assert_eq!(names(list_flags::PERSISTENT | list_flags::ACTIVE), ["b"]);
    assert_eq!(names(1 << 7), Vec::<String>::new(), "no fs pools");
    assert_eq!(names(1 << 6).len(), 3);
    assert_eq!(pools.lookup_by_target_path("/t/b").unwrap().name, "b");
    assert!(pools.lookup_by_target_path("/t/a").is_err(), "inactive");
}

#[test]
fn active_pools_stay_active_across_a_restart_and_autostart_runs() {
    let root = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemBackend::default());
    {
        let pools = setup(Some(dirs(root.path())), &mem);
        for n in ["on", "auto", "off", "gone"] {
            pools.define(&pool_xml(n, &format!("/t/{n}")), 0).unwrap();
            pools.build(n, 0).unwrap();
        }
        pools.create("on", 0).unwrap();
        pools.create("gone", 0).unwrap();
        pools.create_xml(&pool_xml("temp", "/t/temp"), 1).unwrap();
        pools
            .create_volume("on", &vol_xml("/t/on", "v", 10), None, 0)
            .unwrap();
        pools.set_autostart("auto", true).unwrap();
        // a redefinition while active applies at the next start
        pools
            .define(
                &format!(
                    "<pool type='dir'><name>on</name><uuid>{}</uuid><target><path>/t/on</path></target><source><dir path='/new'/></source></pool>",
                    pools.lookup_by_name("on").unwrap().uuid
                ),
                0,
            )
            .unwrap();
        assert!(!pools.xml("on", 0).unwrap().contains("/new"));
        assert!(pools.xml("on", XML_INACTIVE).unwrap().contains("/new"));
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
                & 0o777
        };
        assert_eq!(mode(&root.path().join("etc/storage/on.xml")), 0o600);
        assert_eq!(mode(&root.path().join("run/storage/on.xml")), 0o600);
    }
    // the target of 'gone' vanished while no process ran
    lock(&mem.targets).remove("/t/gone");
    // autostart runs once per boot: a second process of the same boot does not run it
    assert!(
        !setup(Some(dirs(root.path())), &mem)
            .is_active("auto")
            .unwrap()
    );
    std::fs::remove_file(root.path().join("run/storage/autostarted")).unwrap();
    let pools = setup(Some(dirs(root.path())), &mem);
    assert!(
        pools.is_active("on").unwrap(),
        "active before, active after"
    );
    assert_eq!(pools.list_volumes("on").unwrap().len(), 1);
    assert!(pools.is_active("temp").unwrap() && !pools.is_persistent("temp").unwrap());
    assert!(pools.is_active("auto").unwrap(), "autostarted");
    assert!(!pools.is_active("off").unwrap());
    assert!(!pools.is_active("gone").unwrap(), "its target is gone");
    assert!(!root.path().join("run/storage/gone.xml").exists());
    assert!(!pools.xml("on", 0).unwrap().contains("/new"));
    pools.destroy("on").unwrap();
    assert!(
        pools.xml("on", 0).unwrap().contains("/new"),
        "applied at stop"
    );
}

#[test]
fn a_slow_volume_operation_blocks_only_its_own_pool() {
    let mem = Arc::new(MemBackend::default());
    let pools = Arc::new(setup(None, &mem));
    for n in ["slow", "fast"] {
        pools.define(&pool_xml(n, &format!("/t/{n}")), 0).unwrap();
        pools.build(n, 0).unwrap();
        pools.create(n, 0).unwrap();
    }
    *lock(&mem.slow) = Some(Duration::from_secs(2));
    let p = pools.clone();
    let t = std::thread::spawn(move || {
        p.create_volume("slow", &vol_xml("/t/slow", "big", 1), None, 0)
            .unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    assert_eq!(pools.list(0).unwrap().len(), 2);
    assert_eq!(pools.info("fast").unwrap().state, pool_state::RUNNING);
    assert!(pools.list_volumes("fast").unwrap().is_empty());
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(50), "{took:?}");
    t.join().unwrap();
}

#[test]
fn a_refresh_reparses_only_volumes_whose_report_changed() {
    let mem = Arc::new(MemBackend::default());
    let pools = setup(None, &mem);
    pools.define(&pool_xml("p", "/t/r"), 0).unwrap();
    pools.build("p", 0).unwrap();
    {
        let mut t = lock(&mem.targets);
        let vols = t.get_mut("/t/r").unwrap();
        vols.insert("a.img".into(), 100);
        vols.insert("b.img".into(), 200);
    }
    pools.create("p", 0).unwrap();
    pools.refresh("p", 0).unwrap();
    let vol = |name: &str| {
        let o = pools.slot("p").unwrap().view();
        Arc::clone(&o.live.as_ref().unwrap().volumes[name])
    };
    let (a1, b1) = (vol("a.img"), vol("b.img"));
    assert!(
        a1.reported.is_some(),
        "the report is kept for the next refresh"
    );
    // b changes outside the pool: only b is parsed again
    lock(&mem.targets)
        .get_mut("/t/r")
        .unwrap()
        .insert("b.img".into(), 300);
    pools.refresh("p", 0).unwrap();
    let (a2, b2) = (vol("a.img"), vol("b.img"));
    assert!(
        Arc::ptr_eq(&a1, &a2),
        "an unchanged volume is kept as it was"
    );
    assert!(!Arc::ptr_eq(&b1, &b2));
    assert_eq!(pools.volume_info("p", "b.img").unwrap().capacity, 300);
    // an operation on a volume forgets its report, so the next refresh parses it again
    pools.resize_volume("p", "a.img", 150, 0).unwrap();
    assert!(vol("a.img").reported.is_none());
    pools.refresh("p", 0).unwrap();
    assert_eq!(pools.volume_info("p", "a.img").unwrap().capacity, 150);
    // a volume gone outside the pool goes from the list
    lock(&mem.targets).get_mut("/t/r").unwrap().remove("a.img");
    pools.refresh("p", 0).unwrap();
    assert_eq!(pools.list_volumes("p").unwrap().len(), 1);
}

#[test]
fn a_large_report_is_parsed_on_several_threads_and_bad_text_fails_the_refresh() {
    let pool = StoragePool::parse(&pool_xml("big", "/t/big")).unwrap();
    let texts: Vec<String> = (0..3000)
        .map(|i| vol_xml("/t/big", &format!("v{i:04}.img"), i))
        .collect();
    let live = live_of(
        &pool,
        PoolRefresh {
            capacity: 1,
            allocation: 0,
            available: 1,
            volumes: texts.clone(),
        },
        None,
    )
    .unwrap();
    assert_eq!(live.volumes.len(), 3000);
    assert_eq!(live.volumes["v2999.img"].capacity_bytes(), 2999);
    // one bad text anywhere fails the whole refresh, naming what was wrong
    let mut bad = texts;
    bad[2500] = "<volume><name>x</name></volume>".into();
    let r = PoolRefresh {
        capacity: 1,
        allocation: 0,
        available: 1,
        volumes: bad,
    };
    let e = live_of(&pool, r, Some(&live)).map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("reported by the backend"), "{e}");
}

/// Serves `dir` from the memory backend only while switched on: a plugin that was
/// removed and put back.
struct Switch(Arc<MemBackend>, std::sync::atomic::AtomicBool);

impl BackendResolver for Switch {
    fn backend(&self, pool_type: &str) -> Result<Arc<dyn PoolBackend>> {
        if pool_type == "dir" && self.1.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(self.0.clone())
        } else {
            Err(crate::storage_bind::no_backend(pool_type))
        }
    }
}

#[test]
fn a_pool_whose_backend_is_missing_stays_listed_and_comes_back_active_with_it() {
    let root = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemBackend::default());
    let open = |on: bool| {
        Pools::open(
            Some(dirs(root.path())),
            Arc::new(Switch(mem.clone(), std::sync::atomic::AtomicBool::new(on))),
        )
        .unwrap()
    };
    {
        let pools = open(true);
        for n in ["p", "q"] {
            pools.define(&pool_xml(n, &format!("/t/{n}")), 0).unwrap();
            pools.build(n, 0).unwrap();
            pools.create(n, 0).unwrap();
        }
        pools
            .create_volume("p", &vol_xml("/t/p", "v", 10), None, 0)
            .unwrap();
    }
    let state = root.path().join("run/storage/p.xml");
    {
        let pools = open(false);
        assert!(
            !pools.is_active("p").unwrap(),
            "inactive while its backend is missing"
        );
        assert!(state.exists(), "its state file is kept");
        let e = pools.create("p", 0).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("storage pool 'p' of type 'dir' cannot be used")
                && m.contains("no storage backend serves pool type 'dir'"),
            "{m}"
        );
        assert_eq!(e.code(), ErrorCode::NoSupport as i32);
    }
    let pools = open(true);
    assert!(
        pools.is_active("p").unwrap(),
        "active again with its backend"
    );
    assert_eq!(pools.list_volumes("p").unwrap().len(), 1);
    drop(pools);
    // undefined meanwhile: the kept state goes with the definition
    let pools = open(false);
    pools.undefine("q").unwrap();
    assert!(!root.path().join("run/storage/q.xml").exists());
    drop(pools);
    assert!(open(true).lookup_by_name("q").is_err());
}

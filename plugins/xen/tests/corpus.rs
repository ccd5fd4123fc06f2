//! libvirt's xlconfig test data (`../shared/corpus/xlconfigdata` or `$RVIRT_CORPUS`), in
//! the direction(s) `cases.tsv` gives each case: `DO_TEST` and `DO_TEST_REPLACE_VARS`
//! both ways, `DO_TEST_PARSE` domain XML → xl.cfg only, `DO_TEST_FORMAT` xl.cfg → domain
//! XML only. Fails when the corpus is absent.
//!
//! * XML → xl.cfg: the written cfg and the expected one are read as key/value sets and
//!   compared with values exact (strings, numbers, lists).
//! * xl.cfg → XML: compared as element trees (attribute order and layout whitespace
//!   aside, as the vmx corpus test compares).
//! * libxlutil: Debian's `libxlutil.so.4.17` (package libxenmisc4.17), loaded through
//!   FFI, reads every cfg the plugin writes; every key must read back as written.
//! * libxl's JSON: every corpus cfg's JSON is checked against `libxl_types.idl`, and
//!   libxlutil's disk, PCI and vif-rate parsers must read every such spec as the JSON
//!   states it.

use rvirt_plugin_xen::convert::{xl_to_xml, xml_to_xl};
use rvirt_plugin_xen::xlcfg::{Cfg, Value};
use rvirt_xml::Element;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    if let Ok(p) = std::env::var("RVIRT_CORPUS") {
        let p = PathBuf::from(p);
        assert!(
            p.is_dir(),
            "RVIRT_CORPUS={} is not a directory",
            p.display()
        );
        return p;
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    assert!(
        p.is_dir(),
        "libvirt's corpus is missing: set RVIRT_CORPUS or provide {}",
        p.display()
    );
    p
}

struct Case {
    name: String,
    xml2cfg: bool,
    cfg2xml: bool,
}

fn cases() -> (PathBuf, Vec<Case>) {
    let dir = corpus().join("xlconfigdata");
    let tsv = std::fs::read_to_string(dir.join("cases.tsv"))
        .unwrap_or_else(|e| panic!("{}/cases.tsv: {e}", dir.display()));
    let mut out = Vec::new();
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 4 {
            continue;
        }
        let (xml2cfg, cfg2xml) = match cols[3] {
            "DO_TEST" | "DO_TEST_REPLACE_VARS" => (true, true),
            "DO_TEST_PARSE" => (true, false),
            "DO_TEST_FORMAT" => (false, true),
            other => panic!("{}: unknown test macro '{other}'", cols[0]),
        };
        out.push(Case {
            name: cols[0].to_string(),
            xml2cfg,
            cfg2xml,
        });
    }
    assert!(!out.is_empty(), "no cases in {}/cases.tsv", dir.display());
    (dir, out)
}

fn as_map(c: &Cfg) -> BTreeMap<String, Value> {
    c.entries().iter().cloned().collect()
}

fn cfg_diff(want: &Cfg, got: &Cfg) -> Vec<String> {
    let (w, g) = (as_map(want), as_map(got));
    let mut d = Vec::new();
    for (k, v) in &w {
        match g.get(k) {
            None => d.push(format!("  missing {k} = {v:?}")),
            Some(x) if x != v => d.push(format!("  {k}: got {x:?}, want {v:?}")),
            _ => {}
        }
    }
    for (k, v) in &g {
        if !w.contains_key(k) {
            d.push(format!("  extra {k} = {v:?}"));
        }
    }
    d
}

#[test]
fn xml_to_cfg() {
    let (dir, cases) = cases();
    let (mut pass, mut total) = (0, 0);
    let mut misses = Vec::new();
    for c in cases.iter().filter(|c| c.xml2cfg) {
        total += 1;
        let xml = std::fs::read_to_string(dir.join(format!("{}.xml", c.name))).unwrap();
        let want =
            Cfg::parse(&std::fs::read_to_string(dir.join(format!("{}.cfg", c.name))).unwrap())
                .unwrap_or_else(|e| panic!("{}.cfg: {e}", c.name));
        match xml_to_xl(&xml) {
            Err(e) => misses.push(format!(
                "{}: {e} ({:?})",
                c.name,
                std::error::Error::source(&e).map(|s| s.to_string())
            )),
            Ok(text) => {
                let got = Cfg::parse(&text).unwrap_or_else(|e| {
                    panic!("{}: written cfg does not parse: {e}\n{text}", c.name)
                });
                let d = cfg_diff(&want, &got);
                if d.is_empty() {
                    pass += 1;
                } else {
                    misses.push(format!("{}:\n{}", c.name, d.join("\n")));
                }
            }
        }
    }
    println!("xml -> xl.cfg: {pass}/{total} pass");
    for m in &misses {
        println!("MISS {m}");
    }
    assert!(pass * 100 >= total * 95, "xml -> xl.cfg: {pass}/{total}");
}

#[test]
fn cfg_to_xml() {
    let (dir, cases) = cases();
    let (mut pass, mut exact, mut total) = (0, 0, 0);
    let mut misses = Vec::new();
    for c in cases.iter().filter(|c| c.cfg2xml) {
        total += 1;
        let cfg = std::fs::read_to_string(dir.join(format!("{}.cfg", c.name))).unwrap();
        let want_text = std::fs::read_to_string(dir.join(format!("{}.xml", c.name))).unwrap();
        let want = Element::parse(&want_text).unwrap();
        match xl_to_xml(&cfg) {
            Err(e) => misses.push(format!(
                "{}: {e} ({:?})",
                c.name,
                std::error::Error::source(&e).map(|s| s.to_string())
            )),
            Ok(got_text) => {
                let got = Element::parse(&got_text).unwrap();
                match rvirt_xml::compat::compare(&got, &want) {
                    Ok(()) => {
                        pass += 1;
                        if got_text.trim_end() == want_text.trim_end() {
                            exact += 1;
                        } else {
                            println!("not byte-exact: {}", c.name);
                        }
                    }
                    Err(d) => misses.push(format!(
                        "{}: {d}\n--- want\n{want_text}--- got\n{got_text}",
                        c.name
                    )),
                }
            }
        }
    }
    println!("xl.cfg -> xml: {pass}/{total} pass ({exact} byte-exact)");
    for m in &misses {
        println!("MISS {m}");
    }
    assert!(pass * 100 >= total * 95, "xl.cfg -> xml: {pass}/{total}");
}

/// The few libxlutil functions the check needs, declared from `libxlutil.h`.
mod xlu {
    use std::ffi::{CStr, CString, c_char, c_int, c_long, c_uint, c_void};

    type Init = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;
    type ReadData = unsafe extern "C" fn(*mut c_void, *const c_char, c_int) -> c_int;
    type Destroy = unsafe extern "C" fn(*mut c_void);
    type GetString =
        unsafe extern "C" fn(*const c_void, *const c_char, *mut *const c_char, c_int) -> c_int;
    type GetLong = unsafe extern "C" fn(*const c_void, *const c_char, *mut c_long, c_int) -> c_int;
    type GetList = unsafe extern "C" fn(
        *const c_void,
        *const c_char,
        *mut *mut c_void,
        *mut c_int,
        c_int,
    ) -> c_int;
    type ListItem = unsafe extern "C" fn(*const c_void, c_int) -> *const c_char;
    type ListItem2 = unsafe extern "C" fn(*const c_void, c_uint) -> *mut c_void;
    type ValueType = unsafe extern "C" fn(*const c_void) -> c_int;
    type ValueGetString =
        unsafe extern "C" fn(*const c_void, *mut c_void, *mut *mut c_char, c_int) -> c_int;
    type DiskParse =
        unsafe extern "C" fn(*mut c_void, c_int, *const *const c_char, *mut c_void) -> c_int;
    type PciParse = unsafe extern "C" fn(*mut c_void, *mut c_void, *const c_char) -> c_int;
    type VifRate = unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_void) -> c_int;
    type DevFn = unsafe extern "C" fn(*mut c_void);
    type ValueGetList =
        unsafe extern "C" fn(*const c_void, *mut c_void, *mut *mut c_void, c_int) -> c_int;

    unsafe extern "C" {
        fn fdopen(fd: c_int, mode: *const c_char) -> *mut c_void;
    }

    /// `XLU_STRING` and `XLU_LIST` of `enum XLU_ConfigValueType`.
    const XLU_STRING: c_int = 0;
    const XLU_LIST: c_int = 1;

    pub struct Lib {
        _lib: libloading::Library,
        init: Init,
        readdata: ReadData,
        destroy: Destroy,
        get_string: GetString,
        get_long: GetLong,
        get_list: GetList,
        listitem: ListItem,
        listitem2: ListItem2,
        value_type: ValueType,
        value_get_string: ValueGetString,
        value_get_list: ValueGetList,
        disk_parse: DiskParse,
        pci_parse: PciParse,
        vif_rate: VifRate,
        disk_init: DevFn,
        disk_dispose: DevFn,
        pci_init: DevFn,
        pci_dispose: DevFn,
        nic_init: DevFn,
        nic_dispose: DevFn,
    }

    /// The leading fields of `libxl_device_disk` (Xen 4.17 `_libxl_types.h`) as read back.
    #[derive(Debug, PartialEq, Eq)]
    pub struct DiskBack {
        pub pdev_path: Option<String>,
        pub vdev: Option<String>,
        pub backend: i32,
        pub format: i32,
        pub readwrite: i32,
        pub is_cdrom: i32,
    }

    /// `libxl_device_pci`'s domain, bus, dev, func, permissive and seize.
    pub type PciBack = (i32, u8, u8, u8, bool, bool);

    /// A zeroed, 8-aligned buffer larger than the libxl device structs used here
    /// (`libxl_device_nic` is the largest, under 1 KiB in 4.17).
    fn device_buffer() -> Vec<u64> {
        vec![0u64; 256]
    }

    /// Reads a C string field at `offset` of a device struct.
    ///
    /// # Safety
    /// `buf` must hold a struct whose field at `offset` is a `char *` that is NULL or a
    /// NUL-terminated string.
    unsafe fn c_string_at(buf: &[u64], offset: usize) -> Option<String> {
        // SAFETY: offset is 8-aligned within buf, as the caller promises a pointer there.
        let p = unsafe {
            *(buf.as_ptr() as *const u8)
                .add(offset)
                .cast::<*const c_char>()
        };
        if p.is_null() {
            None
        } else {
            // SAFETY: the caller promises a NUL-terminated string.
            Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        }
    }

    /// A read-back value: a string, a number, or a list.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Back {
        Str(String),
        Num(i64),
        List(Vec<Back>),
    }

    impl Lib {
        /// Runs `f` with a fresh `XLU_Config`.
        fn with_cfg<T>(&self, f: impl FnOnce(*mut c_void) -> T) -> Result<T, String> {
            // SAFETY: fd 2 stays open; "w" is a valid mode.
            let report = unsafe { fdopen(2, c"w".as_ptr()) };
            if report.is_null() {
                return Err("fdopen(2) failed".into());
            }
            // SAFETY: report is a FILE*, the name a static C string.
            let cfg = unsafe { (self.init)(report, c"rvirt-spec".as_ptr()) };
            if cfg.is_null() {
                return Err("xlu_cfg_init failed".into());
            }
            let out = f(cfg);
            // SAFETY: cfg came from xlu_cfg_init and is not used afterwards.
            unsafe { (self.destroy)(cfg) };
            Ok(out)
        }

        /// libxlutil's reading of one disk spec (`xlu_disk_parse`).
        pub fn disk(&self, spec: &str) -> Result<DiskBack, String> {
            let c = CString::new(spec).map_err(|_| "NUL in spec".to_string())?;
            self.with_cfg(|cfg| {
                let mut buf = device_buffer();
                let p = buf.as_mut_ptr().cast::<c_void>();
                // SAFETY: buf is larger than libxl_device_disk and 8-aligned.
                unsafe { (self.disk_init)(p) };
                let specs = [c.as_ptr()];
                // SAFETY: cfg is live, specs holds one C string, p an initialised disk.
                let rc = unsafe { (self.disk_parse)(cfg, 1, specs.as_ptr(), p) };
                let out = if rc != 0 {
                    Err(format!("xlu_disk_parse('{spec}') failed: error {rc}"))
                } else {
                    let int_at = |off: usize| -> i32 {
                        // SAFETY: off is a 4-aligned int field of libxl_device_disk (4.17 layout).
                        unsafe { *(buf.as_ptr() as *const u8).add(off).cast::<i32>() }
                    };
                    Ok(DiskBack {
                        // SAFETY: pdev_path and vdev are `char *` at 16 and 24.
                        pdev_path: unsafe { c_string_at(&buf, 16) },
                        // SAFETY: as above.
                        vdev: unsafe { c_string_at(&buf, 24) },
                        backend: int_at(32),
                        format: int_at(36),
                        readwrite: int_at(52),
                        is_cdrom: int_at(56),
                    })
                };
                // SAFETY: p is an initialised libxl_device_disk, disposed once.
                unsafe { (self.disk_dispose)(p) };
                out
            })?
        }

        /// libxlutil's reading of one PCI spec (`xlu_pci_parse_spec_string`).
        pub fn pci(&self, spec: &str) -> Result<PciBack, String> {
            let c = CString::new(spec).map_err(|_| "NUL in spec".to_string())?;
            self.with_cfg(|cfg| {
                let mut buf = device_buffer();
                let p = buf.as_mut_ptr().cast::<c_void>();
                // SAFETY: buf is larger than libxl_device_pci and 8-aligned.
                unsafe { (self.pci_init)(p) };
                // SAFETY: cfg is live, p an initialised libxl_device_pci, c a C string.
                let rc = unsafe { (self.pci_parse)(cfg, p, c.as_ptr()) };
                let b = buf.as_ptr() as *const u8;
                let out = if rc != 0 {
                    Err(format!(
                        "xlu_pci_parse_spec_string('{spec}') failed: error {rc}"
                    ))
                } else {
                    // SAFETY: the 4.17 layout: func, dev, bus bytes at 0..3, int domain at
                    // 4, bools permissive and seize at 18 and 19.
                    unsafe {
                        Ok((
                            *b.add(4).cast::<i32>(),
                            *b.add(2),
                            *b.add(1),
                            *b.add(0),
                            *b.add(18) != 0,
                            *b.add(19) != 0,
                        ))
                    }
                };
                // SAFETY: p is an initialised libxl_device_pci, disposed once.
                unsafe { (self.pci_dispose)(p) };
                out
            })?
        }

        /// libxlutil's reading of a vif `rate` (`xlu_vif_parse_rate`): bytes per
        /// interval and the interval in microseconds.
        pub fn rate(&self, rate: &str) -> Result<(u64, u32), String> {
            let c = CString::new(rate).map_err(|_| "NUL in rate".to_string())?;
            self.with_cfg(|cfg| {
                let mut buf = device_buffer();
                let p = buf.as_mut_ptr().cast::<c_void>();
                // SAFETY: buf is larger than libxl_device_nic and 8-aligned.
                unsafe { (self.nic_init)(p) };
                // SAFETY: cfg is live, c a C string, p an initialised libxl_device_nic.
                let rc = unsafe { (self.vif_rate)(cfg, c.as_ptr(), p) };
                let b = buf.as_ptr() as *const u8;
                let out = if rc != 0 {
                    Err(format!("xlu_vif_parse_rate('{rate}') failed: error {rc}"))
                } else {
                    // SAFETY: the 4.17 layout: u64 rate_bytes_per_interval at 80, u32
                    // rate_interval_usecs at 88.
                    unsafe { Ok((*b.add(80).cast::<u64>(), *b.add(88).cast::<u32>())) }
                };
                // SAFETY: p is an initialised libxl_device_nic, disposed once.
                unsafe { (self.nic_dispose)(p) };
                out
            })?
        }

        pub fn load() -> Result<Lib, String> {
            // SAFETY: loading Debian's libxlutil runs only its (and libxenlight's) ELF
            // constructors, which set up nothing beyond their own state.
            let lib = unsafe { libloading::Library::new("libxlutil.so.4.17") }
                .map_err(|e| format!("cannot load libxlutil.so.4.17: {e}"))?;
            macro_rules! sym {
                ($name:literal, $t:ty) => {{
                    // SAFETY: the symbol is declared with the C signature of libxlutil.h
                    // (Xen 4.17); the library outlives the copied function pointer since
                    // both are kept in `Lib`.
                    let s: libloading::Symbol<$t> = unsafe { lib.get($name) }.map_err(|e| {
                        format!("libxlutil lacks {}: {e}", String::from_utf8_lossy($name))
                    })?;
                    *s
                }};
            }
            Ok(Lib {
                init: sym!(b"xlu_cfg_init", Init),
                readdata: sym!(b"xlu_cfg_readdata", ReadData),
                destroy: sym!(b"xlu_cfg_destroy", Destroy),
                get_string: sym!(b"xlu_cfg_get_string", GetString),
                get_long: sym!(b"xlu_cfg_get_long", GetLong),
                get_list: sym!(b"xlu_cfg_get_list", GetList),
                listitem: sym!(b"xlu_cfg_get_listitem", ListItem),
                listitem2: sym!(b"xlu_cfg_get_listitem2", ListItem2),
                value_type: sym!(b"xlu_cfg_value_type", ValueType),
                value_get_string: sym!(b"xlu_cfg_value_get_string", ValueGetString),
                value_get_list: sym!(b"xlu_cfg_value_get_list", ValueGetList),
                disk_parse: sym!(b"xlu_disk_parse", DiskParse),
                pci_parse: sym!(b"xlu_pci_parse_spec_string", PciParse),
                vif_rate: sym!(b"xlu_vif_parse_rate", VifRate),
                disk_init: sym!(b"libxl_device_disk_init", DevFn),
                disk_dispose: sym!(b"libxl_device_disk_dispose", DevFn),
                pci_init: sym!(b"libxl_device_pci_init", DevFn),
                pci_dispose: sym!(b"libxl_device_pci_dispose", DevFn),
                nic_init: sym!(b"libxl_device_nic_init", DevFn),
                nic_dispose: sym!(b"libxl_device_nic_dispose", DevFn),
                _lib: lib,
            })
        }

        /// Reads `text` and answers each `(key, kind)`: kind 's' string, 'n' number,
        /// 'l' list.
        pub fn read_back(&self, text: &str, keys: &[(String, char)]) -> Result<Vec<Back>, String> {
            let name = CString::new("rvirt-written.cfg").unwrap();
            // SAFETY: fd 2 stays open for the process; "w" is a valid mode string.
            let report = unsafe { fdopen(2, c"w".as_ptr()) };
            if report.is_null() {
                return Err("fdopen(2) failed".into());
            }
            // SAFETY: report is a FILE*, name a NUL-terminated string that outlives cfg.
            let cfg = unsafe { (self.init)(report, name.as_ptr()) };
            if cfg.is_null() {
                return Err("xlu_cfg_init failed".into());
            }
            let data = CString::new(text).map_err(|_| "NUL in cfg text".to_string())?;
            // SAFETY: cfg is live; data is NUL-terminated and `len` bytes long.
            let rc = unsafe { (self.readdata)(cfg, data.as_ptr(), text.len() as c_int) };
            let out = if rc != 0 {
                Err(format!("xlu_cfg_readdata failed: error {rc}"))
            } else {
                keys.iter()
                    .map(|(k, kind)| self.get(cfg, k, *kind))
                    .collect()
            };
            // SAFETY: cfg came from xlu_cfg_init and is not used afterwards.
            unsafe { (self.destroy)(cfg) };
            out
        }

        fn get(&self, cfg: *mut c_void, key: &str, kind: char) -> Result<Back, String> {
            let k = CString::new(key).unwrap();
            match kind {
                's' => {
                    let mut p: *const c_char = std::ptr::null();
                    // SAFETY: cfg is live; p receives a string owned by cfg.
                    let rc = unsafe { (self.get_string)(cfg, k.as_ptr(), &mut p, 0) };
                    if rc != 0 || p.is_null() {
                        return Err(format!("{key}: xlu_cfg_get_string failed ({rc})"));
                    }
                    // SAFETY: p is a NUL-terminated string owned by cfg, still live.
                    Ok(Back::Str(
                        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned(),
                    ))
                }
                'n' => {
                    let mut v: c_long = 0;
                    // SAFETY: cfg is live; v is a valid out pointer.
                    let rc = unsafe { (self.get_long)(cfg, k.as_ptr(), &mut v, 0) };
                    if rc != 0 {
                        return Err(format!("{key}: xlu_cfg_get_long failed ({rc})"));
                    }
                    Ok(Back::Num(v as i64))
                }
                _ => {
                    let mut list: *mut c_void = std::ptr::null_mut();
                    let mut n: c_int = 0;
                    // SAFETY: cfg is live; list and n are valid out pointers.
                    let rc = unsafe { (self.get_list)(cfg, k.as_ptr(), &mut list, &mut n, 0) };
                    if rc != 0 {
                        return Err(format!("{key}: xlu_cfg_get_list failed ({rc})"));
                    }
                    self.list_items(cfg, list, n, key)
                }
            }
        }

        fn list_items(
            &self,
            cfg: *mut c_void,
            list: *mut c_void,
            n: c_int,
            key: &str,
        ) -> Result<Back, String> {
            let mut items = Vec::new();
            for i in 0..n {
                // SAFETY: list is a live XLU_ConfigList with n entries.
                let s = unsafe { (self.listitem)(list, i) };
                if !s.is_null() {
                    // SAFETY: a NUL-terminated string owned by the list.
                    items.push(Back::Str(
                        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned(),
                    ));
                    continue;
                }
                // not a string: a nested list (vnuma)
                // SAFETY: as above; entry i exists.
                let v = unsafe { (self.listitem2)(list, i as c_uint) };
                // SAFETY: v is a live XLU_ConfigValue.
                match unsafe { (self.value_type)(v) } {
                    XLU_LIST => {
                        let mut sub: *mut c_void = std::ptr::null_mut();
                        // SAFETY: v is a list value; sub receives the list it holds.
                        let rc = unsafe { (self.value_get_list)(cfg, v, &mut sub, 0) };
                        if rc != 0 {
                            return Err(format!(
                                "{key}[{i}]: xlu_cfg_value_get_list failed ({rc})"
                            ));
                        }
                        // The nested list's length: count until an item is missing.
                        let mut m = 0;
                        // SAFETY: listitem2 returns NULL past the end.
                        while !unsafe { (self.listitem2)(sub, m as c_uint) }.is_null() {
                            m += 1;
                        }
                        items.push(self.list_items(cfg, sub, m, key)?);
                    }
                    XLU_STRING => {
                        let mut p: *mut c_char = std::ptr::null_mut();
                        // SAFETY: v is a string value; p receives a string owned by v.
                        let rc = unsafe { (self.value_get_string)(cfg, v, &mut p, 0) };
                        if rc != 0 || p.is_null() {
                            return Err(format!(
                                "{key}[{i}]: xlu_cfg_value_get_string failed ({rc})"
                            ));
                        }
                        // SAFETY: NUL-terminated, owned by the value.
                        items.push(Back::Str(
                            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned(),
                        ));
                    }
                    t => return Err(format!("{key}[{i}]: unknown value type {t}")),
                }
            }
            Ok(Back::List(items))
        }
    }
}

fn expected_back(v: &Value) -> xlu::Back {
    match v {
        Value::Str(s) => xlu::Back::Str(s.clone()),
        Value::Num(n) => xlu::Back::Num(*n),
        Value::List(items) => xlu::Back::List(items.iter().map(expected_back).collect()),
    }
}

#[test]
fn libxlutil_reads_back_every_written_key() {
    let lib = match xlu::Lib::load() {
        Ok(l) => l,
        Err(e) => {
            rvirt_tests::cannot_run(
                "libxlutil_reads_back_every_written_key",
                &format!("{e} (install Debian's libxenmisc4.17)"),
            );
            return;
        }
    };
    // the check sees what libxlutil decodes: an escaped backslash reads as one backslash
    assert_eq!(
        lib.read_back(
            "k = \"a\\\\b\"\nn = 7\n",
            &[("k".into(), 's'), ("n".into(), 'n')]
        ),
        Ok(vec![xlu::Back::Str("a\\b".into()), xlu::Back::Num(7)])
    );
    assert!(
        lib.read_back("k = [ \"x\"\n", &[]).is_err(),
        "libxlutil accepted a broken list"
    );
    let (dir, cases) = cases();
    let (mut files, mut keys_checked) = (0, 0);
    let mut failures = Vec::new();
    for c in cases.iter().filter(|c| c.xml2cfg) {
        let xml = std::fs::read_to_string(dir.join(format!("{}.xml", c.name))).unwrap();
        let Ok(text) = xml_to_xl(&xml) else {
            continue;
        };
        files += 1;
        let cfg = Cfg::parse(&text).unwrap();
        let keys: Vec<(String, char)> = cfg
            .entries()
            .iter()
            .map(|(k, v)| {
                let kind = match v {
                    Value::Str(_) => 's',
                    Value::Num(_) => 'n',
                    Value::List(_) => 'l',
                };
                (k.clone(), kind)
            })
            .collect();
        match lib.read_back(&text, &keys) {
            Err(e) => failures.push(format!("{}: {e}\n{text}", c.name)),
            Ok(back) => {
                for ((k, v), b) in cfg.entries().iter().zip(back) {
                    keys_checked += 1;
                    if expected_back(v) != b {
                        failures.push(format!(
                            "{}: {k}: libxlutil read {b:?}, the plugin wrote {v:?}",
                            c.name
                        ));
                    }
                }
            }
        }
    }
    println!("libxlutil read {keys_checked} keys of {files} written cfg files");
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(files > 0, "no cfg was written");
    assert!(
        failures.is_empty(),
        "{} keys did not read back as written",
        failures.len()
    );
}

/// Field names of `libxl_types.idl` (Xen 4.17, plus later additions) per JSON object.
fn idl_fields(path: &str) -> Option<&'static [&'static str]> {
    Some(match path {
        "" => &[
            "c_info",
            "b_info",
            "disks",
            "nics",
            "pcidevs",
            "rdms",
            "dtdevs",
            "vfbs",
            "vkbs",
            "virtios",
            "vtpms",
            "p9s",
            "pvcallsifs",
            "vdispls",
            "vsnds",
            "channels",
            "usbctrls",
            "usbdevs",
            "on_poweroff",
            "on_reboot",
            "on_watchdog",
            "on_crash",
            "on_soft_reset",
        ],
        "c_info" => &[
            "type",
            "hap",
            "oos",
            "ssidref",
            "ssid_label",
            "name",
            "domid",
            "uuid",
            "xsdata",
            "platformdata",
            "poolid",
            "pool_name",
            "run_hotplug_scripts",
            "driver_domain",
            "passthrough",
            "xend_suspend_evtchn_compat",
        ],
        "b_info" => &[
            "max_vcpus",
            "avail_vcpus",
            "cpumap",
            "nodemap",
            "vcpu_hard_affinity",
            "vcpu_soft_affinity",
            "numa_placement",
            "tsc_mode",
            "max_memkb",
            "target_memkb",
            "video_memkb",
            "shadow_memkb",
            "iommu_memkb",
            "rtc_timeoffset",
            "exec_ssidref",
            "exec_ssid_label",
            "localtime",
            "disable_migrate",
            "cpuid",
            "blkdev_start",
            "vnuma_nodes",
            "max_grant_frames",
            "max_maptrack_frames",
            "max_grant_version",
            "device_model_version",
            "device_model_stubdomain",
            "stubdomain_memkb",
            "stubdomain_kernel",
            "stubdomain_cmdline",
            "stubdomain_ramdisk",
            "device_model",
            "device_model_ssidref",
            "device_model_ssid_label",
            "device_model_user",
            "extra",
            "extra_pv",
            "extra_hvm",
            "sched_params",
            "ioports",
            "irqs",
            "iomem",
            "claim_mode",
            "event_channels",
            "kernel",
            "cmdline",
            "ramdisk",
            "device_tree",
            "acpi",
            "bootloader",
            "bootloader_args",
            "timer_mode",
            "nested_hvm",
            "apic",
            "dm_restrict",
            "tee",
            "type",
            "type.hvm",
            "type.pv",
            "type.pvh",
            "arch_arm",
            "arch_x86",
            "altp2m",
            "vmtrace_buf_kb",
            "vpmu",
        ],
        "b_info/type.hvm" => &[
            "firmware",
            "bios",
            "pae",
            "apic",
            "acpi",
            "acpi_s3",
            "acpi_s4",
            "acpi_laptop_slate",
            "nx",
            "viridian",
            "viridian_enable",
            "viridian_disable",
            "timeoffset",
            "hpet",
            "vpt_align",
            "mmio_hole_memkb",
            "timer_mode",
            "nested_hvm",
            "altp2m",
            "system_firmware",
            "smbios_firmware",
            "acpi_firmware",
            "hdtype",
            "nographic",
            "vga",
            "vnc",
            "keymap",
            "sdl",
            "spice",
            "gfx_passthru",
            "gfx_passthru_kind",
            "serial",
            "boot",
            "usb",
            "usbversion",
            "usbdevice",
            "vkb_device",
            "soundhw",
            "xen_platform_pci",
            "usbdevice_list",
            "vendor_device",
            "ms_vm_genid",
            "serial_list",
            "rdm",
            "rdm_mem_boundary_memkb",
            "mca_caps",
            "pirq",
        ],
        "b_info/type.pv" => &[
            "kernel",
            "slack_memkb",
            "bootloader",
            "bootloader_args",
            "cmdline",
            "ramdisk",
            "features",
            "e820_host",
        ],
        "b_info/type.pvh" => &["pvshim", "pvshim_path", "pvshim_cmdline", "pvshim_extra"],
        "b_info/type.hvm/vnc" | "vfbs/vnc" => {
            &["enable", "listen", "passwd", "display", "findunused"]
        }
        "b_info/type.hvm/sdl" | "vfbs/sdl" => &["enable", "opengl", "display", "xauthority"],
        "b_info/type.hvm/spice" => &[
            "enable",
            "port",
            "tls_port",
            "host",
            "disable_ticketing",
            "passwd",
            "agent_mouse",
            "vdagent",
            "clipboard_sharing",
            "usbredirection",
            "image_compression",
            "streaming_video",
        ],
        "b_info/type.hvm/vga" => &["kind"],
        "b_info/vnuma_nodes" => &["memkb", "distances", "pnode", "vcpus"],
        "disks" => &[
            "backend_domid",
            "backend_domname",
            "pdev_path",
            "vdev",
            "backend",
            "format",
            "script",
            "removable",
            "readwrite",
            "is_cdrom",
            "direct_io_safe",
            "discard_enable",
            "specification",
            "transport",
            "irq",
            "base",
            "trusted",
        ],
        "nics" => &[
            "backend_domid",
            "backend_domname",
            "devid",
            "mtu",
            "model",
            "mac",
            "ip",
            "bridge",
            "ifname",
            "script",
            "nictype",
            "rate_bytes_per_interval",
            "rate_interval_usecs",
            "gatewaydev",
            "trusted",
        ],
        "pcidevs" => &[
            "func",
            "dev",
            "bus",
            "domain",
            "vdevfn",
            "vfunc_mask",
            "msitranslate",
            "power_mgmt",
            "permissive",
            "seize",
            "rdm_policy",
            "name",
        ],
        "vfbs" => &[
            "backend_domid",
            "backend_domname",
            "devid",
            "vnc",
            "sdl",
            "keymap",
        ],
        "vkbs" => &[
            "backend_domid",
            "backend_domname",
            "devid",
            "backend_type",
            "unique_id",
        ],
        "channels" => &[
            "backend_domid",
            "backend_domname",
            "devid",
            "name",
            "connection",
            "connection.socket",
        ],
        "channels/connection.socket" => &["path"],
        "usbctrls" => &[
            "type",
            "devid",
            "version",
            "ports",
            "backend_domid",
            "backend_domname",
        ],
        "usbdevs" => &["ctrl", "port", "type", "type.hostdev"],
        "usbdevs/type.hostdev" => &["hostbus", "hostaddr"],
        _ => return None,
    })
}

/// Enumeration values and libxl_defbool fields of the IDL.
fn idl_check_value(path: &str, v: &serde_json::Value) -> Result<(), String> {
    const DEFBOOLS: &[&str] = &[
        "hap",
        "localtime",
        "nested_hvm",
        "acpi",
        "apic",
        "pae",
        "viridian",
        "hpet",
        "enable",
        "findunused",
        "disable_ticketing",
        "agent_mouse",
        "vdagent",
        "clipboard_sharing",
        "e820_host",
    ];
    let last = path.rsplit('/').next().unwrap_or(path);
    let enum_of: Option<&[&str]> = match path {
        "c_info/type" | "b_info/type" => Some(&["hvm", "pv", "pvh"]),
        "on_poweroff" | "on_reboot" | "on_crash" | "on_watchdog" | "on_soft_reset" => Some(&[
            "destroy",
            "restart",
            "restart_rename",
            "preserve",
            "coredump_destroy",
            "coredump_restart",
            "soft_reset",
        ]),
        "b_info/tsc_mode" => Some(&["default", "always_emulate", "native", "native_paravirt"]),
        "b_info/type.hvm/bios" => Some(&["rombios", "seabios", "ovmf"]),
        "c_info/passthrough" => Some(&["default", "disabled", "enabled", "sync_pt", "share_pt"]),
        "disks/backend" => Some(&["unknown", "phy", "tap", "qdisk", "standalone"]),
        "disks/format" => Some(&["unknown", "qcow", "qcow2", "vhd", "raw", "empty", "qed"]),
        "nics/nictype" => Some(&["vif_ioemu", "vif"]),
        "channels/connection" => Some(&["unknown", "pty", "socket"]),
        "usbctrls/type" => Some(&["auto", "pv", "devicemodel", "qusb"]),
        "usbdevs/type" => Some(&["hostdev"]),
        "b_info/type.hvm/vga/kind" => Some(&["cirrus", "std", "none", "qxl"]),
        _ => None,
    };
    if let Some(vals) = enum_of {
        let s = v
            .as_str()
            .ok_or_else(|| format!("{path}: enumeration as {v}"))?;
        if !vals.contains(&s) {
            return Err(format!("{path}: '{s}' is not a value of the enumeration"));
        }
    } else if DEFBOOLS.contains(&last)
        && !path.starts_with("pcidevs")
        && !matches!(v.as_str(), Some("True") | Some("False"))
    {
        return Err(format!("{path}: libxl_defbool as {v}"));
    }
    Ok(())
}

fn idl_walk(path: &str, v: &serde_json::Value, errs: &mut Vec<String>) {
    use serde_json::Value as J;
    match v {
        J::Object(m) => {
            let Some(fields) = idl_fields(path) else {
                errs.push(format!("{path}: an object where the IDL has none"));
                return;
            };
            for (k, x) in m {
                if !fields.contains(&k.as_str()) {
                    errs.push(format!("{path}: '{k}' is not a field of the IDL"));
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}/{k}")
                };
                idl_walk(&p, x, errs);
            }
        }
        J::Array(items) if idl_fields(path).is_some() => {
            for it in items {
                idl_walk(path, it, errs);
            }
        }
        other => {
            if let Err(e) = idl_check_value(path, other) {
                errs.push(e);
            }
        }
    }
}

#[test]
fn libxl_json_follows_the_idl() {
    use rvirt_plugin_xen::json::cfg_to_json;
    let (dir, cases) = cases();
    let mut failures = Vec::new();
    let mut n = 0;
    for c in &cases {
        let cfg =
            Cfg::parse(&std::fs::read_to_string(dir.join(format!("{}.cfg", c.name))).unwrap())
                .unwrap();
        let j = match cfg_to_json(&cfg) {
            Ok(j) => j,
            Err(e) => {
                failures.push(format!("{}: {e}", c.name));
                continue;
            }
        };
        n += 1;
        let mut errs = Vec::new();
        idl_walk("", &j, &mut errs);
        // the values that must carry over from the cfg
        let num = |k: &str| match cfg.get(k) {
            Some(Value::Num(x)) => Some(*x),
            _ => None,
        };
        if j["c_info"]["uuid"]
            != serde_json::json!(match cfg.get("uuid") {
                Some(Value::Str(s)) => s.clone(),
                _ => String::new(),
            })
        {
            errs.push("c_info/uuid differs from the cfg".into());
        }
        if let Some(m) = num("maxmem")
            && j["b_info"]["max_memkb"] != serde_json::json!(m * 1024)
        {
            errs.push(format!(
                "b_info/max_memkb {} for maxmem {m}",
                j["b_info"]["max_memkb"]
            ));
        }
        for (key, arr) in [
            ("disk", "disks"),
            ("vif", "nics"),
            ("pci", "pcidevs"),
            ("channel", "channels"),
        ] {
            let want = match cfg.get(key) {
                Some(Value::List(l)) => l.len(),
                _ => 0,
            };
            let got = j[arr].as_array().map_or(0, |a| a.len());
            if want != got {
                errs.push(format!("{arr}: {got} entries for {want} in '{key}'"));
            }
        }
        for e in errs {
            failures.push(format!("{}: {e}", c.name));
        }
    }
    println!("libxl JSON of {n} corpus cfg files checked against the IDL");
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{} problems", failures.len());
}

/// libxl's enumeration numbers (`libxl_disk_backend`, `libxl_disk_format`).
fn disk_enum(what: &str, v: Option<&str>) -> i32 {
    let table: &[&str] = if what == "backend" {
        &["unknown", "phy", "tap", "qdisk", "standalone"]
    } else {
        &["unknown", "qcow", "qcow2", "vhd", "raw", "empty", "qed"]
    };
    v.and_then(|v| table.iter().position(|t| *t == v))
        .unwrap_or(0) as i32
}

/// Every disk, PCI and vif rate spec of every corpus cfg and of every cfg the plugin
/// writes, read by libxlutil's own parsers, must give what the plugin's libxl JSON says.
#[test]
fn libxl_parsers_agree_with_the_plugin() {
    use rvirt_plugin_xen::json::cfg_to_json;
    let lib = match xlu::Lib::load() {
        Ok(l) => l,
        Err(e) => {
            rvirt_tests::cannot_run(
                "libxl_parsers_agree_with_the_plugin",
                &format!("{e} (install Debian's libxenmisc4.17)"),
            );
            return;
        }
    };
    let (dir, cases) = cases();
    let mut texts = Vec::new();
    for c in &cases {
        texts.push((
            format!("{}.cfg", c.name),
            std::fs::read_to_string(dir.join(format!("{}.cfg", c.name))).unwrap(),
        ));
        if c.xml2cfg {
            let xml = std::fs::read_to_string(dir.join(format!("{}.xml", c.name))).unwrap();
            if let Ok(t) = xml_to_xl(&xml) {
                texts.push((format!("{} (written)", c.name), t));
            }
        }
    }
    let list = |cfg: &Cfg, k: &str| -> Vec<String> {
        match cfg.get(k) {
            Some(Value::List(l)) => l
                .iter()
                .filter_map(|v| match v {
                    Value::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    let (mut disks, mut pcis, mut rates) = (0, 0, 0);
    let mut failures = Vec::new();
    for (name, text) in &texts {
        let cfg = Cfg::parse(text).unwrap();
        let j = cfg_to_json(&cfg).unwrap();
        for (i, spec) in list(&cfg, "disk").iter().enumerate() {
            disks += 1;
            let jd = &j["disks"][i];
            let want = xlu::DiskBack {
                pdev_path: jd["pdev_path"].as_str().map(str::to_string),
                vdev: jd["vdev"].as_str().map(str::to_string),
                backend: disk_enum("backend", jd["backend"].as_str()),
                format: disk_enum("format", jd["format"].as_str()),
                readwrite: jd["readwrite"].as_i64().unwrap_or(-1) as i32,
                is_cdrom: jd["is_cdrom"].as_i64().unwrap_or(-1) as i32,
            };
            match lib.disk(spec) {
                Ok(got) if got == want => {}
                Ok(got) => failures.push(format!(
                    "{name}: disk '{spec}': libxl {got:?}, plugin {want:?}"
                )),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        for (i, spec) in list(&cfg, "pci").iter().enumerate() {
            pcis += 1;
            let jp = &j["pcidevs"][i];
            let want: xlu::PciBack = (
                jp["domain"].as_i64().unwrap_or(-1) as i32,
                jp["bus"].as_u64().unwrap_or(0) as u8,
                jp["dev"].as_u64().unwrap_or(0) as u8,
                jp["func"].as_u64().unwrap_or(0) as u8,
                jp["permissive"].as_bool().unwrap_or(false),
                jp["seize"].as_bool().unwrap_or(false),
            );
            match lib.pci(spec) {
                Ok(got) if got == want => {}
                Ok(got) => failures.push(format!(
                    "{name}: pci '{spec}': libxl {got:?}, plugin {want:?}"
                )),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        for (i, spec) in list(&cfg, "vif").iter().enumerate() {
            let Some(rate) = spec.split(',').find_map(|p| p.strip_prefix("rate=")) else {
                continue;
            };
            rates += 1;
            let jn = &j["nics"][i];
            let want = (
                jn["rate_bytes_per_interval"].as_u64().unwrap_or(0),
                jn["rate_interval_usecs"].as_u64().unwrap_or(0) as u32,
            );
            match lib.rate(rate) {
                Ok(got) if got == want => {}
                Ok(got) => failures.push(format!(
                    "{name}: rate '{rate}': libxl {got:?}, plugin {want:?}"
                )),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
    }
    println!(
        "libxlutil parsed {disks} disk specs, {pcis} PCI specs and {rates} vif rates of {} cfg files",
        texts.len()
    );
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(
        disks > 0 && pcis > 0 && rates > 0,
        "the corpus lost its disk, PCI or rate specs"
    );
    assert!(
        failures.is_empty(),
        "{} specs read differently",
        failures.len()
    );
}

//! rvirt's own remote driver (`rvirt_host`, `test+unix://...`) against rvirtd.

use crate::{Daemon, domain_xml};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn host_library_remote_driver() {
    let d = Daemon::start();
    let runtime = rvirt_host::Runtime::with_search_path(Vec::new());
    let conn = runtime.open(&d.uri(), false).expect("open through rvirtd");
    assert_eq!(conn.driver_name(), "remote");
    assert_eq!(conn.get_type().unwrap(), "Test");
    assert!(conn.node_get_info().unwrap().cpus > 0);
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let sub = conn
        .subscribe_events(move |e: &rvirt_host::DomainEvent| {
            let _ = tx.lock().unwrap().send((e.domain.name.clone(), e.event));
        })
        .unwrap();
    let mut dom = conn.define_xml(&domain_xml("remote1"), 0).unwrap();
    dom.create(0).unwrap();
    assert!(dom.id() > 0);
    assert!(dom.is_active().unwrap());
    assert_eq!(dom.get_info().unwrap().memory_kib, 131072);
    assert!(
        dom.get_xml_desc(0)
            .unwrap()
            .contains("<name>remote1</name>")
    );
    dom.suspend().unwrap();
    dom.resume().unwrap();
    dom.destroy(0).unwrap();
    dom.undefine(0).unwrap();
    let err = conn.lookup_domain_by_name("remote1").unwrap_err();
    assert_eq!(err.code(), 42, "{err}");
    let mut seen = Vec::new();
    while let Ok((name, event)) = rx.recv_timeout(Duration::from_secs(5)) {
        if name == "remote1" {
            seen.push(event);
        }
        if seen.len() == 6 {
            break;
        }
    }
    assert_eq!(
        seen,
        [0, 2, 3, 4, 5, 1],
        "defined, started, suspended, resumed, stopped, undefined"
    );
    conn.unsubscribe_events(sub).unwrap();
    // the read-only socket refuses changes through the remote driver too
    let ro = runtime.open(&d.uri_ro(), true).unwrap();
    let err = ro.define_xml(&domain_xml("nope"), 0).unwrap_err();
    assert_eq!(err.code(), 29, "{err}");
}

#[test]
fn secure_xml_is_refused_on_read_only_connections_local_and_remote() {
    let d = Daemon::start();
    let plugins = std::path::PathBuf::from(env!("CARGO_BIN_EXE_rvirtd"))
        .parent()
        .unwrap()
        .to_path_buf();
    let runtime = rvirt_host::Runtime::with_search_path(vec![plugins]);
    for uri in [d.uri_ro(), "test:///default".to_string()] {
        let ro = runtime.open(&uri, true).expect("open read-only");
        let dom = ro.lookup_domain_by_name("test").unwrap();
        assert!(dom.get_xml_desc(0).unwrap().contains("<name>test</name>"));
        let err = dom.get_xml_desc(rvirt_host::XML_SECURE).unwrap_err();
        assert_eq!(err.code(), 29, "{uri}: {err}");
        assert!(err.to_string().contains("secure"), "{err}");
    }
    let rw = runtime.open(&d.uri(), false).unwrap();
    let dom = rw.lookup_domain_by_name("test").unwrap();
    assert!(dom.get_xml_desc(rvirt_host::XML_SECURE).is_ok());
}

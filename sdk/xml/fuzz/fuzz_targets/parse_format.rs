//! Fuzz target: any input must parse or fail cleanly (no panic), and a
//! document that parses must format to something that parses again and
//! formats identically (idempotence).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvirt_xml::{Domain, FormatOptions, Network, StoragePool, StorageVolume};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let opts = FormatOptions { inactive: true, secure: true };
    if let Ok(d) = Domain::parse(text) {
        let once = d.to_xml(&opts);
        let again = Domain::parse(&once).expect("formatted domain must parse");
        assert_eq!(again.to_xml(&opts), once, "domain formatting is not idempotent");
    }
    if let Ok(n) = Network::parse(text) {
        let once = n.to_xml(&opts);
        let again = Network::parse(&once).expect("formatted network must parse");
        assert_eq!(again.to_xml(&opts), once);
    }
    let pool = StoragePool::parse(text).ok();
    if let Some(p) = &pool {
        let once = p.to_xml(&opts);
        let again = StoragePool::parse(&once).expect("formatted pool must parse");
        assert_eq!(again.to_xml(&opts), once);
    }
    if let Ok(v) = StorageVolume::parse(text, pool.as_ref()) {
        let _ = v.to_xml(&opts);
    }
    if let Ok(e) = rvirt_xml::Element::parse(text) {
        let once = e.to_xml_string();
        let again = rvirt_xml::Element::parse(&once).expect("formatted tree must parse");
        assert_eq!(again.to_xml_string(), once);
    }
});

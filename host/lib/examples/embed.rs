//! Hosting the rvirt runtime inside your own process: open a connection, list domains,
//! drive one, and receive its lifecycle events.
//!
//! `cargo build --workspace && cargo run -p rvirt-host --example embed [URI]`

use std::sync::mpsc;

fn main() -> Result<(), rvirt_host::Error> {
    let uri = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "test:///default".into());
    let conn = rvirt_host::Connection::open(&uri)?;
    let (tx, rx) = mpsc::channel();
    conn.subscribe_events(move |e| {
        let _ = tx.send(format!("event: {} {}", e.domain.name, e.event_str()));
    })?;
    for dom in conn.list_all_domains(0)? {
        let (state, reason) = dom.get_state()?;
        println!(
            "{:<12} {} ({})",
            dom.name(),
            state,
            state.reason_str(reason)
        );
    }
    if let Ok(dom) = conn.lookup_domain_by_name("test") {
        dom.suspend()?;
        dom.resume()?;
    }
    for line in rx.try_iter() {
        println!("{line}");
    }
    Ok(())
}

//! python-libvirt (`/usr/bin/python3`) against rvirtd.

use crate::{Daemon, missing};
use std::process::Command;

const PYTHON: &str = "/usr/bin/python3";

const SCRIPT: &str = r#"
import sys, threading, time
import libvirt

uri = sys.argv[1]
libvirt.registerErrorHandler(lambda *a: None, None)
libvirt.virEventRegisterDefaultImpl()

def loop():
    while True:
        libvirt.virEventRunDefaultImpl()

threading.Thread(target=loop, daemon=True).start()

conn = libvirt.open(uri)
events = []
def on_lifecycle(c, dom, event, detail, opaque):
    events.append((dom.name(), event))
cid = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None)

assert conn.getType() == "Test", conn.getType()
assert conn.getVersion() > 0
assert conn.getLibVersion() > 0
assert conn.getHostname()
assert conn.isSecure() == 1
assert "test" in [d.name() for d in conn.listAllDomains()]
assert conn.numOfDomains() == len(conn.listDomainsID())

xml = ("<domain type='test'><name>pyvm</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
       "<os><type arch='x86_64'>hvm</type></os></domain>")
dom = conn.defineXML(xml)
assert "pyvm" in conn.listDefinedDomains()
assert dom.isPersistent() == 1 and dom.isActive() == 0
dom.create()
assert dom.isActive() == 1
state, reason = dom.state()
assert state == libvirt.VIR_DOMAIN_RUNNING, state
info = dom.info()
assert info[0] == libvirt.VIR_DOMAIN_RUNNING and info[1] == 65536, info
assert dom.OSType() == "hvm"
assert dom.maxMemory() == 65536
dom.suspend()
assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
dom.resume()
same = conn.lookupByUUIDString(dom.UUIDString())
assert same.name() == "pyvm"
assert conn.lookupByID(same.ID()).name() == "pyvm"
assert "<name>pyvm</name>" in dom.XMLDesc(0)
dom.destroy()
dom.undefine()
try:
    conn.lookupByName("pyvm")
    raise SystemExit("lookup of an undefined domain succeeded")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN, e.get_error_code()

deadline = time.time() + 5
want = {libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_STARTED,
        libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_RESUMED,
        libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED}
while time.time() < deadline and not want <= {e for n, e in events if n == "pyvm"}:
    time.sleep(0.05)
got = {e for n, e in events if n == "pyvm"}
assert want <= got, events
conn.domainEventDeregisterAny(cid)
conn.close()

ro = libvirt.openReadOnly(uri)
try:
    ro.defineXML(xml)
    raise SystemExit("define succeeded on a read-only connection")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_OPERATION_DENIED, e.get_error_code()
ro.close()
print("OK")
"#;

#[test]
fn python_libvirt_lifecycle_and_events() {
    if missing(
        "python3-libvirt",
        Command::new(PYTHON).args(["-c", "import libvirt"]),
    ) {
        return;
    }
    let d = Daemon::start();
    let out = Command::new(PYTHON)
        .args(["-c", SCRIPT, &d.uri()])
        .output()
        .expect("cannot run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "python-libvirt script failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#!/usr/bin/python3
"""Resolving a <disk type='volume'> through the host services: the QEMU plugin in the
daemon (its pools in the same process) against the QEMU plugin in its plugin host process
(the pools asked of the daemon over its services socket). Run by
benches/isolation_services.sh.

usage: isolation_services.py IN_PROCESS_URI ROOT_A PROCESS_URI ROOT_B
"""
import sys, time
import libvirt

N = 50
ROUNDS = 15
DOMAIN = """<domain type='qemu'><name>svcbench</name><memory unit='MiB'>64</memory>
<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
<disk type='volume' device='disk'><source pool='bpool' volume='v.qcow2'/>
<target dev='vda' bus='virtio'/></disk></devices></domain>"""
FILE = """<domain type='qemu'><name>svcbench</name><memory unit='MiB'>64</memory>
<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{path}'/><target dev='vda' bus='virtio'/></disk></devices></domain>"""


def setup(uri, root):
    c = libvirt.open(uri)
    p = c.storagePoolDefineXML(
        f"<pool type='dir'><name>bpool</name><target><path>{root}/bpool</path></target></pool>")
    p.build(0)
    p.create(0)
    p.createXML("<volume><name>v.qcow2</name><capacity unit='MiB'>16</capacity>"
                "<target><format type='qcow2'/></target></volume>", 0)
    return c


def best(c, xml):
    for _ in range(30):
        c.domainXMLToNative("qemu-argv", xml, 0)
    out = None
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(N):
            c.domainXMLToNative("qemu-argv", xml, 0)
        us = (time.perf_counter() - t0) / N * 1e6
        out = us if out is None else min(out, us)
    return out


a_uri, a_root, b_uri, b_root = sys.argv[1:5]
conns = []
for name, uri, root in (("in-process", a_uri, a_root), ("process", b_uri, b_root)):
    c = setup(uri, root)
    argv = c.domainXMLToNative("qemu-argv", DOMAIN, 0)
    assert f"{root}/bpool/v.qcow2" in argv, argv
    conns.append((name, c, root))
# best of ROUNDS rounds of N calls each (the machine is shared: the minimum is the cost)
rows = []
for name, c, root in conns:
    vol = best(c, DOMAIN)
    plain = best(c, FILE.format(path=f"{root}/bpool/v.qcow2"))
    rows.append((name, vol, plain))
for name, vol, plain in rows:
    print(f"{name:10} domxml-to-native: volume disk {vol:8.1f} us, file disk {plain:8.1f} us, "
          f"volume resolution {vol - plain:7.1f} us")

#!/usr/bin/python3
"""NIC hot-plug latency through a libvirt-protocol daemon (rvirtd or libvirtd, same run).

usage: nic_hotplug_bench.py --guest DIR --bridge BR [--uri NAME=URI ...] [--runs N]
                            [--settle S]

The domain: the shared test guest (256 MiB, 1 vCPU, TCG, no disk, no NIC, serial to a file),
booted until GUEST-READY, then idle. Per URI, each run:
  attach_ms  dom.attachDeviceFlags(<interface type='bridge'> virtio, AFFECT_LIVE) until it
             returns (the daemon made the TAP and QEMU has the device: `virsh
             attach-interface --live`)
  detach_ms  dom.detachDeviceFlags(same, AFFECT_LIVE) until the interface is gone from the
             live XML (libvirt returns after DEVICE_DELETED or its 5 s wait; polled after)
`--settle` seconds (default 1) between the steps, so the guest has probed the new device
before the unplug.
Medians over the runs, one JSON line per URI.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

import libvirt


def quiet(_c, _e):
    pass


libvirt.registerErrorHandler(quiet, None)


def dom_xml(name, guest, serial):
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>"
        f"<os><type arch='x86_64' machine='pc'>hvm</type><kernel>{guest}/vmlinux</kernel>"
        f"<initrd>{guest}/initrd.img</initrd>"
        "<cmdline>console=ttyS0 quiet panic=-1 guest.ip=none</cmdline></os>"
        "<features><acpi/></features><devices>"
        f"<serial type='file'><source path='{serial}'/></serial>"
        "<memballoon model='virtio'/></devices></domain>"
    )


def wait_ready(serial, deadline=180):
    t0 = time.time()
    while time.time() - t0 < deadline:
        try:
            with open(serial, "rb") as f:
                if b"GUEST-READY" in f.read():
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"guest not ready after {deadline}s ({serial})")


def ms(t0):
    return (time.perf_counter() - t0) * 1e3


def bench_uri(label, uri, guest, bridge, runs, tmp, settle):
    conn = libvirt.open(uri)
    name = f"nicbench-{os.getpid()}"
    serial = os.path.join(tmp, f"{label}.serial")
    dom = conn.defineXML(dom_xml(name, guest, serial))
    mac = "52:54:00:6b:00:01"
    nic = (
        f"<interface type='bridge'><mac address='{mac}'/><source bridge='{bridge}'/>"
        "<model type='virtio'/></interface>"
    )
    live = libvirt.VIR_DOMAIN_AFFECT_LIVE
    out = {"label": label, "uri": uri, "runs": runs}
    try:
        dom.create()
        wait_ready(serial)
        time.sleep(1)
        attach, detach = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            dom.attachDeviceFlags(nic, live)
            attach.append(ms(t0))
            if mac not in dom.XMLDesc(0):
                raise SystemExit(f"{label}: the interface is not in the live XML")
            time.sleep(settle)
            t0 = time.perf_counter()
            dom.detachDeviceFlags(nic, live)
            while mac in dom.XMLDesc(0):
                time.sleep(0.005)
            detach.append(ms(t0))
            time.sleep(0.5)
        out.update(
            attach_ms=round(statistics.median(attach), 1),
            detach_ms=round(statistics.median(detach), 1),
            settle_s=settle,
            attach_all=[round(x, 1) for x in attach],
            detach_all=[round(x, 1) for x in detach],
        )
    finally:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            pass
        dom.undefine()
        conn.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--guest", required=True)
    ap.add_argument("--bridge", required=True)
    ap.add_argument("--uri", action="append", default=[])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--settle", type=float, default=1.0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nicbench.") as tmp:
        for u in a.uri:
            label, uri = u.split("=", 1)
            print(json.dumps(bench_uri(label, uri, a.guest, a.bridge, a.runs, tmp, a.settle)), flush=True)


if __name__ == "__main__":
    main()

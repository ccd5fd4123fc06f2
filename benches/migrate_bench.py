#!/usr/bin/python3
"""Live migration of an idle guest between two libvirt-protocol daemons (two rvirtd
roots on this machine), against QEMU's own migrate driven by hand.

usage: migrate_bench.py --guest DIR --src URI --dst URI [--runs N] [--floor]
                        [--libvirt-src URI --libvirt-dst URI]

The domain: the shared test guest (256 MiB, 1 vCPU, TCG, qcow2 copy of disk.raw on storage
both daemons see, serial to a file), booted until GUEST-READY, then idle; persistent on
the source. Each run migrates it there and back (`migrate3` with VIR_MIGRATE_LIVE, the
client-driven v3 flow with typed parameters, as `virsh migrate --live`):
  total_ms          the API call until it returns (begin, prepare: the destination QEMU
                    starts, perform, finish: the guest runs there, confirm: the source
                    QEMU is gone)
  downtime_ms       the guest's pause, from the source QEMU's stop to the destination's
                    resume (the arrived domain's completed job, "downtime")
  qemu_downtime_ms  the source QEMU's own "downtime" (stop to stream end; a -> b only,
                    where the persistent source keeps its completed job)
Floor (--floor): a source QEMU started by hand and a destination with
  -incoming tcp:127.0.0.1:PORT already waiting; migrate + query-migrate until completed
  + cont on the destination (total_ms); the pause from the source's stop (its start plus
  QEMU's total-time less downtime) to the answered cont (downtime_ms), QEMU's own
  downtime (qemu_downtime_ms).
libvirt (--libvirt-src/--libvirt-dst): the same between two private libvirtd (each with its
  own host_uuid, or libvirt refuses a migration to "the same host"), the migration stream
  to tcp://127.0.0.1 (VIR_MIGRATE_PARAM_URI), with VIR_MIGRATE_UNSAFE (the disk is on a
  local file system both daemons see, which libvirt does not take for shared storage).
Medians over the runs (both directions), one JSON line per daemon pair and one for the floor.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import libvirt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from save_bench import Qmp, dom_xml, floor_argv, med, ms, qcow2_copy, quiet, wait_ready  # noqa: E402

libvirt.registerErrorHandler(quiet, None)


def completed_downtime(dom):
    stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    return stats.get("downtime")


def bench_pair(label, src_uri, dst_uri, guest, runs, tmp, params=None, flags=0):
    a = libvirt.open(src_uri)
    b = libvirt.open(dst_uri)
    name = f"migbench-{os.getpid()}"
    disk = os.path.join(tmp, f"{label}.qcow2")
    serial = os.path.join(tmp, f"{label}.serial")
    qcow2_copy(guest, disk)
    dom = a.defineXML(dom_xml(name, guest, disk, serial))
    totals, downs, qdowns = [], [], []
    try:
        dom.create()
        wait_ready(serial)
        time.sleep(1)
        here, there = a, b
        for _ in range(2 * runs):
            d = here.lookupByName(name)
            t0 = time.perf_counter()
            moved = d.migrate3(there, dict(params or {}), libvirt.VIR_MIGRATE_LIVE | flags)
            totals.append(ms(t0))
            if moved.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
                raise SystemExit(f"not running after migration: {moved.state()}")
            dt = completed_downtime(moved)
            if dt is not None:
                downs.append(dt)
            # the source's completed job: a keeps the persistent domain (shut off), the
            # transient copy on b is gone once it left
            if here is a:
                dt = completed_downtime(a.lookupByName(name))
                if dt is not None:
                    qdowns.append(dt)
            here, there = there, here
            time.sleep(0.5)
    finally:
        for c in (a, b):
            try:
                c.lookupByName(name).destroy()
            except libvirt.libvirtError:
                pass
        try:
            a.lookupByName(name).undefine()
        except libvirt.libvirtError:
            pass
        a.close()
        b.close()
    return {
        "label": label,
        "runs": len(totals),
        "total_ms": med(totals),
        "downtime_ms": med(downs) if downs else None,
        "qemu_downtime_ms": med(qdowns) if qdowns else None,
    }


def bench_floor(guest, runs, tmp):
    disk = os.path.join(tmp, "floor.qcow2")
    serial = os.path.join(tmp, "floor.serial")
    qcow2_copy(guest, disk)
    totals, downs, qdowns = [], [], []
    qs = os.path.join(tmp, "src.qmp")
    src = subprocess.Popen(floor_argv(guest, disk, serial, qs), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL)
    q = Qmp(qs)
    wait_ready(serial)
    time.sleep(1)
    for i in range(2 * runs):
        port = 49300 + i
        qd = os.path.join(tmp, f"dst{i}.qmp")
        dst = subprocess.Popen(
            floor_argv(guest, disk, serial + ".dst", qd)
            + ["-S", "-incoming", f"tcp:127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        d = Qmp(qd)
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        t0 = time.perf_counter()
        q.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        while True:
            m = q.cmd("query-migrate")
            if m.get("status") in ("completed", "failed"):
                break
            time.sleep(0.001)
        if m["status"] != "completed":
            raise SystemExit(f"floor migration failed: {m}")
        while d.cmd("query-status")["status"] == "inmigrate":
            time.sleep(0.001)
        d.cmd("cont")
        total = ms(t0)
        totals.append(total)
        qdowns.append(m.get("downtime", 0))
        downs.append(total - (m.get("total-time", 0) - m.get("downtime", 0)))
        q.close()
        src.kill()
        src.wait()
        src, q = dst, d
        time.sleep(0.5)
    q.close()
    src.kill()
    src.wait()
    return {"label": "qemu-floor", "runs": len(totals), "total_ms": med(totals),
            "downtime_ms": med(downs), "qemu_downtime_ms": med(qdowns)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--guest", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--floor", action="store_true")
    ap.add_argument("--libvirt-src")
    ap.add_argument("--libvirt-dst")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="migrate-bench-")
    os.chmod(tmp, 0o755)
    try:
        print(json.dumps(bench_pair("rvirtd", a.src, a.dst, a.guest, a.runs, tmp)), flush=True)
        if a.libvirt_src and a.libvirt_dst:
            params = {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.1"}
            # the disk is in /tmp, which both see, but libvirt takes a local file system
            # for unshared storage ("Migration without shared storage is unsafe")
            try:
                out = bench_pair(
                    "libvirtd-9.0", a.libvirt_src, a.libvirt_dst, a.guest, a.runs, tmp,
                    params, libvirt.VIR_MIGRATE_UNSAFE,
                )
            except libvirt.libvirtError as e:
                out = {"label": "libvirtd-9.0", "error": str(e)}
            print(json.dumps(out), flush=True)
        if a.floor:
            print(json.dumps(bench_floor(a.guest, a.runs, tmp)), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

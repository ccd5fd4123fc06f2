#!/usr/bin/python3
"""Internal snapshot create / revert and live disk hot-plug latency of a running guest
through a libvirt-protocol daemon (rvirtd or libvirtd, in the same run).

usage: snapshot_bench.py --guest DIR [--uri NAME=URI ...] [--runs N] [--floor] [--hotplug-only]

The domain: the shared test guest (256 MiB, 1 vCPU, TCG, qcow2 copy of disk.raw, serial to
a file), booted until GUEST-READY, then idle. Per URI, each run:
  create_ms   dom.snapshotCreateXML(<name>sN</name>) of the running guest (memory + disk,
              internal, in the qcow2 image) until it returns
  revert_ms   dom.revertToSnapshot(sN) of the running guest until it returns (running)
  delete_ms   snapshot.delete()
  attach_ms   dom.attachDeviceFlags(<disk> qcow2 vdb, AFFECT_LIVE) (= virsh attach-disk --live)
  detach_ms   dom.detachDeviceFlags(same, AFFECT_LIVE) until it returns (the guest let go)
With --hotplug-only each run is the attach and detach alone (no snapshots, no floor).
Floor (--floor): QEMU started by hand (save_bench.py's command line) and driven over QMP:
  create_ms  stop + snapshot-save job, query-jobs every ms until concluded + cont
  revert_ms  stop + snapshot-load job, likewise + cont
Medians over the runs, one JSON line per URI (and one for the floor); qemu_pid_kept says whether every revert left
the same QEMU process running the guest (found by its disk path in /proc/PID/cmdline).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import sys

import libvirt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from save_bench import Qmp, floor_argv  # noqa: E402


def quiet(_c, _e):
    pass


libvirt.registerErrorHandler(quiet, None)


def dom_xml(name, guest, disk, serial):
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>"
        f"<os><type arch='x86_64' machine='pc'>hvm</type><kernel>{guest}/vmlinux</kernel>"
        f"<initrd>{guest}/initrd.img</initrd><cmdline>console=ttyS0 quiet panic=-1</cmdline></os>"
        "<features><acpi/></features><devices>"
        f"<serial type='file'><source path='{serial}'/></serial>"
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
        "<target dev='vda' bus='virtio'/></disk><memballoon model='virtio'/>"
        "</devices></domain>"
    )


def disk_xml(path):
    return (
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{path}'/><target dev='vdb' bus='virtio'/></disk>"
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


def med(v):
    return round(statistics.median(v), 1) if v else None


def qemu_pid(disk):
    """The pid of the QEMU process whose command line names `disk`."""
    found = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "qemu-system" in cmd and disk in cmd:
            found.append(int(e))
    return found[0] if len(found) == 1 else None


def attach_detach(dom, extra, label, attaches, detaches):
    live = libvirt.VIR_DOMAIN_AFFECT_LIVE
    t0 = time.perf_counter()
    dom.attachDeviceFlags(disk_xml(extra), live)
    attaches.append(ms(t0))
    time.sleep(1)
    t0 = time.perf_counter()
    dom.detachDeviceFlags(disk_xml(extra), live)
    detaches.append(ms(t0))
    if "vdb" in dom.XMLDesc(0):
        raise SystemExit(f"{label}: vdb still attached after detach")
    time.sleep(0.5)


def bench_uri(label, uri, guest, runs, tmp, snapshots=True):
    conn = libvirt.open(uri)
    name = f"snapbench-{os.getpid()}"
    disk = os.path.join(tmp, f"{label}.qcow2")
    extra = os.path.join(tmp, f"{label}-extra.qcow2")
    serial = os.path.join(tmp, f"{label}.serial")
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", f"{guest}/disk.raw", disk],
        check=True,
    )
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", extra, "16M"], check=True)
    dom = conn.defineXML(dom_xml(name, guest, disk, serial))
    out = {"label": label, "uri": uri, "runs": runs}
    try:
        dom.create()
        wait_ready(serial)
        time.sleep(1)
        creates, reverts, deletes, attaches, detaches = [], [], [], [], []
        kept = True
        for i in range(runs):
            if not snapshots:
                attach_detach(dom, extra, label, attaches, detaches)
                continue
            t0 = time.perf_counter()
            snap = dom.snapshotCreateXML(f"<domainsnapshot><name>s{i}</name></domainsnapshot>", 0)
            creates.append(ms(t0))
            time.sleep(0.3)
            pid = qemu_pid(disk)
            t0 = time.perf_counter()
            dom.revertToSnapshot(snap, 0)
            reverts.append(ms(t0))
            if dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
                raise SystemExit(f"{label}: not running after revert: {dom.state()}")
            kept = kept and pid is not None and qemu_pid(disk) == pid
            time.sleep(0.3)
            t0 = time.perf_counter()
            snap.delete(0)
            deletes.append(ms(t0))
            time.sleep(0.3)
            attach_detach(dom, extra, label, attaches, detaches)
        if snapshots:
            out.update(
                create_ms=med(creates),
                revert_ms=med(reverts),
                delete_ms=med(deletes),
                qemu_pid_kept=kept,
            )
        out.update(
            attach_ms=med(attaches),
            detach_ms=med(detaches),
        )
    finally:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            pass
        try:
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        except libvirt.libvirtError:
            pass
        conn.close()
    return out


def qmp_job(q, command, job_id, **args):
    q.cmd(command, **{"job-id": job_id, **args})
    while True:
        jobs = [j for j in q.cmd("query-jobs") if j["id"] == job_id]
        if not jobs:
            raise RuntimeError(f"{job_id} vanished")
        if jobs[0]["status"] == "concluded":
            q.cmd("job-dismiss", id=job_id)
            if "error" in jobs[0]:
                raise RuntimeError(f"{command}: {jobs[0]['error']}")
            return
        time.sleep(0.001)


def bench_floor(guest, runs, tmp):
    disk = os.path.join(tmp, "floor.qcow2")
    serial = os.path.join(tmp, "floor.serial")
    qsock = os.path.join(tmp, "floor.qmp")
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", f"{guest}/disk.raw", disk],
        check=True,
    )
    p = subprocess.Popen(
        floor_argv(guest, disk, serial, qsock), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    creates, reverts = [], []
    try:
        q = Qmp(qsock)
        wait_ready(serial)
        time.sleep(1)
        for i in range(runs):
            t0 = time.perf_counter()
            q.cmd("stop")
            qmp_job(q, "snapshot-save", f"save{i}", tag=f"s{i}", vmstate="d0", devices=["d0"])
            q.cmd("cont")
            creates.append(ms(t0))
            time.sleep(0.3)
            t0 = time.perf_counter()
            q.cmd("stop")
            qmp_job(q, "snapshot-load", f"load{i}", tag=f"s{i}", vmstate="d0", devices=["d0"])
            q.cmd("cont")
            reverts.append(ms(t0))
            time.sleep(0.3)
            qmp_job(q, "snapshot-delete", f"del{i}", tag=f"s{i}", devices=["d0"])
        q.close()
    finally:
        p.kill()
        p.wait()
    return {"label": "qemu-floor", "runs": runs, "create_ms": med(creates), "revert_ms": med(reverts)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--guest", required=True)
    ap.add_argument("--uri", action="append", default=[], help="NAME=URI")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--floor", action="store_true")
    ap.add_argument(
        "--hotplug-only", action="store_true", help="only attach_ms and detach_ms (no snapshots)"
    )
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="snap-bench-")
    os.chmod(tmp, 0o755)
    try:
        for spec in a.uri:
            label, uri = spec.split("=", 1)
            out = bench_uri(label, uri, a.guest, a.runs, tmp, not a.hotplug_only)
            print(json.dumps(out), flush=True)
        if a.floor and not a.hotplug_only:
            print(json.dumps(bench_floor(a.guest, a.runs, tmp)), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Save, restore and domstats latency through a libvirt-protocol daemon (rvirtd or
libvirtd, in the same run), against QEMU's own migrate-to-file driven by hand.

usage: save_bench.py --guest DIR [--uri NAME=URI ...] [--runs N] [--floor]

The domain: the shared test guest (256 MiB, 1 vCPU, TCG, qcow2 copy of disk.raw, serial to
a file), booted until GUEST-READY, then idle. Per URI, each run:
  save_ms      dom.save(FILE) until it returns (the domain is shut off)
  restore_ms   conn.restore(FILE) until it returns (the guest runs)
  domstats_ms  conn.getAllDomainStats() with every group, one running guest
Floor (--floor): QEMU started by hand with the same kind of command line and a QMP socket;
  floor_save_ms     stop + migrate to "exec:cat > FILE" + query-migrate until completed
  floor_restore_ms  spawn with -incoming "exec:cat FILE" -S, until migration done, + cont
Medians over the runs, one JSON line per URI and one for the floor.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import libvirt

QEMU = os.environ.get("QEMU", "/usr/bin/qemu-system-x86_64")


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
    return round(statistics.median(v), 1)


def qcow2_copy(guest, path):
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", f"{guest}/disk.raw", path],
        check=True,
    )


def bench_uri(label, uri, guest, runs, tmp):
    conn = libvirt.open(uri)
    name = f"savebench-{os.getpid()}"
    disk = os.path.join(tmp, f"{label}.qcow2")
    serial = os.path.join(tmp, f"{label}.serial")
    image = os.path.join(tmp, f"{label}.save")
    qcow2_copy(guest, disk)
    dom = conn.defineXML(dom_xml(name, guest, disk, serial))
    out = {"label": label, "uri": uri, "runs": runs}
    try:
        dom.create()
        wait_ready(serial)
        time.sleep(1)
        saves, restores, stats = [], [], []
        for _ in range(runs):
            for _ in range(5):
                t0 = time.perf_counter()
                conn.getAllDomainStats(0, 0)
                stats.append(ms(t0))
            t0 = time.perf_counter()
            dom.save(image)
            saves.append(ms(t0))
            t0 = time.perf_counter()
            conn.restore(image)
            restores.append(ms(t0))
            dom = conn.lookupByName(name)
            if dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
                raise SystemExit(f"{label}: not running after restore: {dom.state()}")
            time.sleep(0.5)
        out.update(
            save_ms=med(saves),
            restore_ms=med(restores),
            domstats_ms=med(stats),
            image_bytes=os.path.getsize(image),
        )
    finally:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            pass
        dom.undefine()
        conn.close()
    return out


class Qmp:
    def __init__(self, path, deadline=30):
        t0 = time.time()
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                if time.time() - t0 > deadline:
                    raise
                time.sleep(0.01)
        self.f = self.s.makefile("rw")
        json.loads(self.f.readline())
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "return" in r or "error" in r:
                if "error" in r:
                    raise RuntimeError(f"{name}: {r['error']}")
                return r["return"]

    def close(self):
        self.s.close()


def floor_argv(guest, disk, serial, qsock):
    return [
        QEMU, "-machine", "pc,accel=tcg", "-m", "256", "-smp", "1", "-nodefaults",
        "-display", "none", "-no-user-config",
        "-kernel", f"{guest}/vmlinux", "-initrd", f"{guest}/initrd.img",
        "-append", "console=ttyS0 quiet panic=-1",
        "-chardev", f"file,id=s0,path={serial}", "-serial", "chardev:s0",
        "-blockdev", f"driver=file,filename={disk},node-name=f0",
        "-blockdev", "driver=qcow2,file=f0,node-name=d0",
        "-device", "virtio-blk-pci,drive=d0,id=vda",
        "-device", "virtio-balloon-pci,id=balloon0",
        "-qmp", f"unix:{qsock},server=on,wait=off",
    ]


def bench_floor(guest, runs, tmp):
    disk = os.path.join(tmp, "floor.qcow2")
    serial = os.path.join(tmp, "floor.serial")
    image = os.path.join(tmp, "floor.save")
    qsock = os.path.join(tmp, "floor.qmp")
    qcow2_copy(guest, disk)
    argv = floor_argv(guest, disk, serial, qsock)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    q = Qmp(qsock)
    wait_ready(serial)
    time.sleep(1)
    saves, restores = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        q.cmd("stop")
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        q.cmd("migrate", uri=f"exec:cat > {image}")
        while q.cmd("query-migrate").get("status") not in ("completed", "failed"):
            time.sleep(0.001)
        saves.append(ms(t0))
        q.close()
        p.kill()
        p.wait()
        os.unlink(qsock)
        t0 = time.perf_counter()
        p = subprocess.Popen(
            argv + ["-S", "-incoming", f"exec:cat {image}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        q = Qmp(qsock)
        while q.cmd("query-status")["status"] == "inmigrate":
            time.sleep(0.001)
        q.cmd("cont")
        restores.append(ms(t0))
        time.sleep(0.5)
    q.close()
    p.kill()
    p.wait()
    return {"label": "qemu-floor", "runs": runs, "save_ms": med(saves), "restore_ms": med(restores)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--guest", required=True)
    ap.add_argument("--uri", action="append", default=[], help="NAME=URI")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--floor", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="save-bench-")
    os.chmod(tmp, 0o755)
    try:
        for spec in a.uri:
            label, uri = spec.split("=", 1)
            print(json.dumps(bench_uri(label, uri, a.guest, a.runs, tmp)), flush=True)
        if a.floor:
            print(json.dumps(bench_floor(a.guest, a.runs, tmp)), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

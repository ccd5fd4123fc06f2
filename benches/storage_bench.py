#!/usr/bin/python3
"""Storage benchmark through python-libvirt: the same steps against any daemon URI.

usage: storage_bench.py --side LABEL URI POOL_DIR [--side ...] [--volumes 10000]
                        [--creates 30] [--steady 7]

Every daemon named is measured in the same run, in turn, step by step (this machine is
shared and noisy: compare sides of one run). Steps, each printed as JSON lines:
  refresh  define + build + start a `dir` pool at POOL_DIR, write VOLUMES files into it
           from outside the daemon (half raw with 4 KiB of data and a 1 GiB length, half
           qcow2 headers for 10 GiB, one qcow2 in ten with a raw backing file), then
           `pool.refresh()`: "cold" right after the files appear with the page cache
           dropped (sync + drop_caches), "after_write" right after the files appear without
           dropping, and "steady" (median of STEADY warm refreshes).
  create   `pool.createXML` of a 10 GiB qcow2 volume, CREATES times (median and min), each
           deleted again; beside it `qemu-img create -f qcow2` of the same size by hand in
           the same directory, CREATES times.
Run as root (drop_caches). Both daemons must serve the pool directory's file system.
"""
import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time

import libvirt


def qcow2_header(size, backing=None):
    """A minimal qcow2 v3 header of SIZE bytes virtual size (enough for any prober)."""
    hdr = bytearray(4096)
    backing_off = 0
    backing_len = 0
    if backing:
        backing_off = 512
        backing_len = len(backing)
        hdr[backing_off:backing_off + backing_len] = backing.encode()
    struct.pack_into(
        ">4sIQIIQIIQQIIQQQII",
        hdr,
        0,
        b"QFI\xfb",
        3,  # version
        backing_off,
        backing_len,
        16,  # cluster bits
        size,
        0,  # crypt method
        1,  # l1 size
        0x30000,  # l1 table offset
        0x10000,  # refcount table offset
        1,  # refcount table clusters
        0,  # nb snapshots
        0,  # snapshots offset
        0,  # incompatible features
        0,  # compatible features
        0,  # autoclear features
        4,  # refcount order
    )
    struct.pack_into(">I", hdr, 100, 104)  # header length
    return bytes(hdr)


def populate(d, n):
    data = bytes((i * 7 + 3) & 0xFF for i in range(4096))
    plain = qcow2_header(10 << 30)
    backed = qcow2_header(10 << 30, "vm00000.img")
    for i in range(n):
        if i % 2 == 0:
            with open(os.path.join(d, f"vm{i:05}.img"), "wb") as f:
                f.write(data)
                f.truncate(1 << 30)
        else:
            with open(os.path.join(d, f"vm{i:05}.qcow2"), "wb") as f:
                f.write(backed if i % 20 == 1 else plain)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def timed(fn):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000.0


def emit(label, step, **kv):
    print(json.dumps({"label": label, "step": step, **kv}), flush=True)


class Side:
    """One daemon under test: its connection and a fresh `dir` pool at `pool_dir`."""

    def __init__(self, label, uri, pool_dir):
        self.label = label
        self.dir = pool_dir
        self.conn = libvirt.open(uri)
        try:
            old = self.conn.storagePoolLookupByName(POOL)
            if old.isActive():
                old.destroy()
            old.undefine()
        except libvirt.libvirtError:
            pass
        shutil.rmtree(pool_dir, ignore_errors=True)
        self.pool = self.conn.storagePoolDefineXML(
            f"<pool type='dir'><name>{POOL}</name><target><path>{pool_dir}</path></target></pool>"
        )
        self.pool.build(0)
        self.pool.create(0)

    def clear(self):
        for f in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, f))

    def close(self):
        self.pool.destroy()
        self.pool.undefine()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.conn.close()


POOL = "benchpool"
VOL_XML = (
    "<volume><name>{}</name><capacity unit='G'>10</capacity>"
    "<target><format type='qcow2'/></target></volume>"
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", nargs=3, action="append", required=True,
                    metavar=("LABEL", "URI", "POOL_DIR"), help="a daemon to measure (repeat)")
    ap.add_argument("--volumes", type=int, default=10000)
    ap.add_argument("--creates", type=int, default=30)
    ap.add_argument("--steady", type=int, default=7)
    a = ap.parse_args()
    libvirt.registerErrorHandler(lambda *_: None, None)
    sides = [Side(*spec) for spec in a.side]

    # volume create through each API against qemu-img by hand, interleaved
    times = {s.label: [] for s in sides}
    times["qemu-img"] = []
    hand_dir = sides[0].dir
    for i in range(a.creates):
        for s in sides:
            holder = []
            times[s.label].append(
                timed(lambda: holder.append(s.pool.createXML(VOL_XML.format(f"c{i}.qcow2"), 0)))
            )
            holder[0].delete(0)
        p = os.path.join(hand_dir, f"hand{i}.qcow2")
        times["qemu-img"].append(
            timed(lambda: subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", p, "10G"], check=True))
        )
        os.unlink(p)
    hand = statistics.median(times["qemu-img"])
    for label, t in times.items():
        emit(label, "create", median_ms=round(statistics.median(t), 2), min_ms=round(min(t), 2),
             vs_qemu_img=round(statistics.median(t) / hand, 2))

    # refresh right after the files appear (page cache kept), then cold, then steady
    for s in sides:
        populate(s.dir, a.volumes)
        after_write = timed(lambda: s.pool.refresh(0))
        found = s.pool.numOfVolumes()
        s.clear()
        populate(s.dir, a.volumes)
        drop_caches()
        cold = timed(lambda: s.pool.refresh(0))
        emit(s.label, "refresh-first", volumes=found, after_write_ms=round(after_write, 1),
             cold_ms=round(cold, 1))
    steady = {s.label: [] for s in sides}
    for _ in range(a.steady):
        for s in sides:
            steady[s.label].append(timed(lambda: s.pool.refresh(0)))
    for label, t in steady.items():
        emit(label, "refresh-steady", median_ms=round(statistics.median(t), 1),
             min_ms=round(min(t), 1))
    for s in sides:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Storage benchmark through python-libvirt: the same steps against any daemon URI.

usage: storage_bench.py URI POOL_DIR --label NAME [--volumes 10000] [--creates 30] [--steady 7]

Steps, each printed as one JSON line:
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("pool_dir")
    ap.add_argument("--label", required=True)
    ap.add_argument("--volumes", type=int, default=10000)
    ap.add_argument("--creates", type=int, default=30)
    ap.add_argument("--steady", type=int, default=7)
    a = ap.parse_args()

    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open(a.uri)
    name = "benchpool"
    try:
        old = conn.storagePoolLookupByName(name)
        if old.isActive():
            old.destroy()
        old.undefine()
    except libvirt.libvirtError:
        pass
    shutil.rmtree(a.pool_dir, ignore_errors=True)
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{name}</name><target><path>{a.pool_dir}</path></target></pool>"
    )
    pool.build(0)
    pool.create(0)

    # volume create through the API against qemu-img by hand
    vol_xml = (
        "<volume><name>{}</name><capacity unit='G'>10</capacity>"
        "<target><format type='qcow2'/></target></volume>"
    )
    api = []
    for i in range(a.creates):
        vname = f"create{i}.qcow2"
        holder = []
        api.append(timed(lambda: holder.append(pool.createXML(vol_xml.format(vname), 0))))
        holder[0].delete(0)
    hand = []
    for i in range(a.creates):
        p = os.path.join(a.pool_dir, f"hand{i}.qcow2")
        hand.append(
            timed(
                lambda: subprocess.run(
                    ["qemu-img", "create", "-q", "-f", "qcow2", p, "10G"], check=True
                )
            )
        )
        os.unlink(p)
    emit(
        a.label,
        "create",
        api_median_ms=round(statistics.median(api), 2),
        api_min_ms=round(min(api), 2),
        qemu_img_median_ms=round(statistics.median(hand), 2),
        qemu_img_min_ms=round(min(hand), 2),
        ratio=round(statistics.median(api) / statistics.median(hand), 2),
    )

    # refresh: right after the files appear (cache kept), cold (cache dropped), steady
    populate(a.pool_dir, a.volumes)
    after_write = timed(lambda: pool.refresh(0))
    found = pool.numOfVolumes()
    for f in os.listdir(a.pool_dir):
        os.unlink(os.path.join(a.pool_dir, f))
    populate(a.pool_dir, a.volumes)
    drop_caches()
    cold = timed(lambda: pool.refresh(0))
    steady = [timed(lambda: pool.refresh(0)) for _ in range(a.steady)]
    emit(
        a.label,
        "refresh",
        volumes=found,
        after_write_ms=round(after_write, 1),
        cold_ms=round(cold, 1),
        steady_median_ms=round(statistics.median(steady), 1),
        steady_min_ms=round(min(steady), 1),
    )

    pool.destroy()
    pool.undefine()
    shutil.rmtree(a.pool_dir, ignore_errors=True)
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

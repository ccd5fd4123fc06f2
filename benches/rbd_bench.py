#!/usr/bin/python3
"""Ceph RBD pools through python-libvirt / virsh: the same steps against every daemon
named, in turn within each step of one run (the machine is shared and noisy: compare the
sides of one run). Runs inside the test cluster's network namespace (benches/rbd_bench.sh).

usage: rbd_bench.py --conf CEPH_CONF --key KEYFILE [--images 1000] [--creates 20]
                    [--upload-mib 512] --side LABEL URI [--side ...]

Steps, printed as JSON lines:
  create   pool.createXML of a 1 GiB volume and vol.delete(), CREATES times each (median,
           min); beside them an in-process librbd create/remove (python3-rbd, one cluster
           connection kept open), the floor a daemon can reach.
  refresh  IMAGES images made from outside (librbd), then pool.refresh() (median of 3) on
           every side.
  upload   `virsh vol-upload` of UPLOAD_MIB of random data into a volume of that size, and
           `virsh vol-download` back, against `rbd import` / `rbd export` of the same file.
"""
import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import time

import libvirt
import rados
import rbd

POOL = "rbdbench"


def emit(**kw):
    print(json.dumps(kw), flush=True)


def side_setup(uri, key_raw):
    conn = libvirt.open(uri)
    sec = conn.secretDefineXML(
        "<secret ephemeral='no' private='no'><usage type='ceph'><name>bench-admin</name></usage></secret>"
    )
    sec.setValue(key_raw)
    try:
        old = conn.storagePoolLookupByName(POOL)
        if old.isActive():
            old.destroy()
        old.undefine()
    except libvirt.libvirtError:
        pass
    pool = conn.storagePoolDefineXML(
        "<pool type='rbd'><name>%s</name><source><name>rbd</name>"
        "<host name='127.0.0.1' port='6789'/>"
        "<auth type='ceph' username='admin'><secret usage='bench-admin'/></auth>"
        "</source></pool>" % POOL
    )
    pool.create()
    return conn, pool


def med(xs):
    return round(statistics.median(xs) * 1000, 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conf", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--creates", type=int, default=20)
    ap.add_argument("--upload-mib", type=int, default=512)
    ap.add_argument("--side", nargs=2, action="append", metavar=("LABEL", "URI"), required=True)
    a = ap.parse_args()
    libvirt.registerErrorHandler(lambda *x: None, None)
    import base64

    key_b64 = open(a.key).read().strip()
    key_raw = base64.b64decode(key_b64)
    cluster = rados.Rados(conffile=a.conf)
    cluster.connect()
    io = cluster.open_ioctx("rbd")
    r = rbd.RBD()
    sides = [(label, *side_setup(uri, key_raw)) for label, uri in a.side]

    # ---- create / delete 1 GiB
    gib = 1 << 30
    for label, conn, pool in sides:
        cr, de = [], []
        for i in range(a.creates):
            name = "bc-%s-%d" % (label, i)
            t = time.perf_counter()
            vol = pool.createXML(
                "<volume><name>%s</name><capacity unit='bytes'>%d</capacity></volume>" % (name, gib), 0
            )
            cr.append(time.perf_counter() - t)
            t = time.perf_counter()
            vol.delete(0)
            de.append(time.perf_counter() - t)
        emit(step="create", side=label, create_ms=med(cr), create_min_ms=round(min(cr) * 1000, 2),
             delete_ms=med(de), delete_min_ms=round(min(de) * 1000, 2), n=a.creates)
    cr, de = [], []
    for i in range(a.creates):
        name = "bc-librbd-%d" % i
        t = time.perf_counter()
        r.create(io, name, gib, old_format=False)
        cr.append(time.perf_counter() - t)
        t = time.perf_counter()
        r.remove(io, name)
        de.append(time.perf_counter() - t)
    emit(step="create", side="librbd-in-process", create_ms=med(cr), create_min_ms=round(min(cr) * 1000, 2),
         delete_ms=med(de), delete_min_ms=round(min(de) * 1000, 2), n=a.creates)

    # ---- refresh of IMAGES images
    names = ["br-%05d" % i for i in range(a.images)]
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda n: r.create(io, n, 64 << 20, old_format=False), names))
    for label, conn, pool in sides:
        ts = []
        for _ in range(3):
            t = time.perf_counter()
            pool.refresh(0)
            ts.append(time.perf_counter() - t)
        emit(step="refresh", side=label, images=a.images, refresh_ms=med(ts),
             refresh_min_ms=round(min(ts) * 1000, 2), listed=pool.numOfVolumes())
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda n: r.remove(io, n), names))
    for label, conn, pool in sides:
        pool.refresh(0)

    # ---- upload / download
    size = a.upload_mib << 20
    src = "/tmp/rbd-bench-upload.%d" % os.getpid()
    back = src + ".back"
    with open(src, "wb") as f:
        f.write(os.urandom(size))

    def run(cmd):
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        return time.perf_counter() - t, p

    mib = a.upload_mib
    for label, conn, pool in sides:
        uri = conn.getURI() if False else dict(a.side)[label]
        pool.createXML("<volume><name>bup</name><capacity unit='bytes'>%d</capacity></volume>" % size, 0)
        t, p = run(["virsh", "-q", "-c", uri, "vol-upload", "--pool", POOL, "bup", src])
        up = {"upload_s": round(t, 3), "upload_mib_s": round(mib / t, 1)} if p.returncode == 0 else {
            "upload_error": p.stderr.strip()}
        t, p = run(["virsh", "-q", "-c", uri, "vol-download", "--pool", POOL, "bup", back])
        down = {"download_s": round(t, 3), "download_mib_s": round(mib / t, 1)} if p.returncode == 0 else {
            "download_error": p.stderr.strip()}
        same = p.returncode == 0 and "upload_s" in up and open(back, "rb").read() == open(src, "rb").read()
        emit(step="upload", side=label, mib=mib, round_trip_equal=same, **up, **down)
        pool.storageVolLookupByName("bup").delete(0)
        if os.path.exists(back):
            os.remove(back)
    t, p = run(["rbd", "-c", a.conf, "import", "--no-progress", src, "rbd/bimport"])
    assert p.returncode == 0, p.stderr
    t2, p2 = run(["rbd", "-c", a.conf, "export", "--no-progress", "rbd/bimport", back])
    assert p2.returncode == 0, p2.stderr
    emit(step="upload", side="rbd-cli", mib=mib, upload_s=round(t, 3), upload_mib_s=round(mib / t, 1),
         download_s=round(t2, 3), download_mib_s=round(mib / t2, 1))
    r.remove(io, "bimport")
    os.remove(src)
    os.remove(back)
    for label, conn, pool in sides:
        pool.destroy()
        pool.undefine()
    io.close()
    cluster.shutdown()


if __name__ == "__main__":
    main()

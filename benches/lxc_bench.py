#!/usr/bin/python3
"""Container start and destroy through the libvirt API (python-libvirt), for one URI.

Usage: lxc_bench.py URI ROOTFS NAME RUNS
Each run: createXML of a transient busybox container whose init writes /up and then
ignores SIGTERM; "start" is from the call to /up appearing on the host (polled every
0.5 ms); "destroy" is the virDomainDestroy call. Prints one JSON line of medians.
"""
import json
import os
import statistics
import sys
import time

import libvirt

uri, rootfs, name, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
xml = f"""<domain type='lxc'><name>{name}</name><memory unit='KiB'>65536</memory>
<os><type>exe</type><init>/bin/sh</init><initarg>/init.sh</initarg></os>
<devices><filesystem type='mount'><source dir='{rootfs}'/><target dir='/'/></filesystem>
<console type='pty'><target type='lxc' port='0'/></console></devices></domain>"""
conn = libvirt.open(uri)
up = os.path.join(rootfs, "up")
starts, destroys = [], []
for _ in range(runs):
    if os.path.exists(up):
        os.unlink(up)
    t0 = time.perf_counter()
    dom = conn.createXML(xml, 0)
    while not os.path.exists(up):
        if time.perf_counter() - t0 > 30:
            sys.exit("init did not come up within 30 s")
        time.sleep(0.0005)
    t1 = time.perf_counter()
    dom.destroy()
    t2 = time.perf_counter()
    starts.append((t1 - t0) * 1000)
    destroys.append((t2 - t1) * 1000)
    time.sleep(0.05)
print(json.dumps({"uri": uri.split("?")[0], "runs": runs,
                  "start_ms": round(statistics.median(starts), 1),
                  "destroy_ms": round(statistics.median(destroys), 1)}))

#!/usr/bin/python3
"""The by-hand floor of a container start and destroy (root): a memory cgroup, then
`unshare --pid --mount --net --uts --ipc --fork` + `pivot_root` into ROOTFS, init
writing /up (as in ../shared/reference/real-components.md); destroy = SIGKILL to every
process of the group, wait for it to empty, rmdir.

Usage: lxc_floor.py ROOTFS RUNS   (prints one JSON line of medians)
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import time

rootfs, runs = sys.argv[1], int(sys.argv[2])
cg = "/sys/fs/cgroup/memory/rvirt-bench-hand"
up = os.path.join(rootfs, "up")
inner = ("cd %s && mount --bind . . && cd . && pivot_root . old && cd / && "
         "exec /bin/busybox sh -c 'mount -t proc proc /proc && umount -l /old && "
         "exec /bin/sh /init.sh'" % rootfs)
starts, destroys = [], []
for _ in range(runs):
    if os.path.exists(up):
        os.unlink(up)
    t0 = time.perf_counter()
    os.makedirs(cg, exist_ok=True)
    with open(os.path.join(cg, "memory.limit_in_bytes"), "w") as f:
        f.write("67108864")
    p = subprocess.Popen(["sh", "-c", "echo $$ > %s/cgroup.procs; exec unshare --pid --mount "
                          "--net --uts --ipc --fork --propagation private sh -c \"%s\""
                          % (cg, inner)], stdin=subprocess.DEVNULL)
    while not os.path.exists(up):
        if time.perf_counter() - t0 > 10:
            sys.exit("the hand-made container did not come up")
        time.sleep(0.0005)
    t1 = time.perf_counter()
    while True:
        procs = open(os.path.join(cg, "cgroup.procs")).read().split()
        if not procs:
            break
        for pid in procs:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    os.rmdir(cg)
    t2 = time.perf_counter()
    p.wait()
    starts.append((t1 - t0) * 1000)
    destroys.append((t2 - t1) * 1000)
print(json.dumps({"uri": "by hand (unshare + pivot_root)", "runs": runs,
                  "start_ms": round(statistics.median(starts), 1),
                  "destroy_ms": round(statistics.median(destroys), 1)}))

#!/usr/bin/python3
"""Process isolation of plugins (rvirtd `isolation = "process"`), measured with
python-libvirt against two daemons started by benches/isolation_bench.sh: one serving the
test driver in-process, one from a plugin host process.

usage: isolation_bench.py IN_PROCESS_URI PROCESS_URI RVIRT ROOT
"""
import os, subprocess, sys, threading, time
import libvirt

N = 2000
inproc_uri, proc_uri, rvirt, root = sys.argv[1:5]


def per_call(uri):
    c = libvirt.open(uri)
    for _ in range(200):
        c.lookupByName("test").info()
    best = None
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(N):
            c.lookupByName("test").info()
        us = (time.perf_counter() - t0) / N * 1e6
        best = us if best is None else min(best, us)
    c.close()
    return best


a = per_call(inproc_uri)
b = per_call(proc_uri)
print(f"lookup+info in-process: {a:.1f} us/call")
print(f"lookup+info process:    {b:.1f} us/call")
print(f"added by isolation:     {b - a:.1f} us/call (2 calls: lookupByName + info)")
if os.environ.get("PER_CALL_ONLY") == "1":
    sys.exit(0)

# restart to first successful call after a crash (same connection)
c = libvirt.open(proc_uri)
c.lookupByName("test")
crash, recover = [], []
for _ in range(10):
    t0 = time.perf_counter()
    try:
        c.lookupByName("segv")
        raise SystemExit("no crash")
    except libvirt.libvirtError:
        pass
    t1 = time.perf_counter()
    while True:
        try:
            c.lookupByName("test").info()
            break
        except libvirt.libvirtError:
            pass
    t2 = time.perf_counter()
    crash.append((t1 - t0) * 1e3)
    recover.append((t2 - t1) * 1e3)
    time.sleep(11)  # past the backoff's healthy period: each crash is a first one
crash.sort(); recover.sort()
print(f"crashing call returns its error after: median {crash[len(crash)//2]:.1f} ms, max {crash[-1]:.1f} ms")
print(f"error to first successful call:        median {recover[len(recover)//2]:.1f} ms, max {recover[-1]:.1f} ms")
print(f"crash to first successful call:        median {sorted(x+y for x,y in zip(crash,recover))[len(crash)//2]:.1f} ms")

# upgrade switch with 100 paused domains: calls in a loop while `rvirt plugin reload`
xml = "<domain type='test'><name>p%d</name><memory>8192</memory><os><type>hvm</type></os></domain>"
for i in range(100):
    d = c.createXML(xml % i, 0)
    d.suspend()
stop = False
fails, longest, calls = 0, 0.0, 0
def loop():
    global fails, longest, calls
    conn = libvirt.open(proc_uri)
    first_fail = None
    while not stop:
        try:
            conn.lookupByName("test").info()
            calls += 1
            if first_fail is not None:
                longest = max(longest, time.perf_counter() - first_fail)
                first_fail = None
        except libvirt.libvirtError:
            fails += 1
            if first_fail is None:
                first_fail = time.perf_counter()
t = threading.Thread(target=loop)
t.start()
time.sleep(0.5)
switch = []
for _ in range(5):
    t0 = time.perf_counter()
    subprocess.run([rvirt, "plugin", "reload", "test", "--root", root], check=True,
                   stdout=subprocess.DEVNULL)
    switch.append((time.perf_counter() - t0) * 1e3)
    time.sleep(0.5)
stop = True
t.join()
print(f"reload (new process serving) with 100 paused domains: median {sorted(switch)[2]:.0f} ms")
print(f"calls during 5 reloads: {calls} ok, {fails} failed, longest failing span {longest*1e3:.1f} ms")

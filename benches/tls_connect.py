#!/usr/bin/python3
"""Time a TLS connection through python-libvirt: TCP connect, TLS handshake with client
certificates, libvirt's confirmation byte, auth list, connect open, then the first call
(lookupByName of the test driver's domain), then close.

usage: tls_connect.py URI [N]   -> one JSON line: median, p90, min in ms over N runs
"""
import json, statistics, sys, time
import libvirt

uri = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
libvirt.registerErrorHandler(lambda *a: None, None)
# one warm-up connection (page cache, lazy driver loads)
libvirt.open(uri).close()
times = []
for _ in range(n):
    t0 = time.perf_counter()
    c = libvirt.open(uri)
    c.lookupByName("test")
    times.append((time.perf_counter() - t0) * 1000)
    c.close()
times.sort()
print(json.dumps({"uri": uri, "runs": n, "median_ms": round(statistics.median(times), 2),
                  "p90_ms": round(times[int(n * 0.9) - 1], 2), "min_ms": round(times[0], 2)}))

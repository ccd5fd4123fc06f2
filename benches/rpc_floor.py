#!/usr/bin/python3
"""Client-floor probe: how fast python-libvirt can issue calls at all.

usage: rpc_floor.py NAME=URI [NAME=URI ...]

For each connection, alternating over 5 rounds of 3000 calls: isSecure() (rvirtd answers it
without a driver call, so it measures the client + transport + daemon I/O path) and
lookupByName("test"). Prints the median calls/s per (daemon, call).
"""
import statistics
import sys
import time

import libvirt


def bench(fn, n=3000):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t)


def main():
    libvirt.registerErrorHandler(lambda *a: None, None)
    conns = {name: libvirt.open(uri) for name, uri in (a.split("=", 1) for a in sys.argv[1:])}
    res = {}
    for _ in range(5):
        for name, c in conns.items():
            res.setdefault((name, "isSecure"), []).append(bench(c.isSecure))
            res.setdefault((name, "lookupByName"), []).append(bench(lambda: c.lookupByName("test")))
    for (name, call), v in sorted(res.items()):
        print("%-10s %-14s %8.0f calls/s" % (name, call, statistics.median(v)))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Medians of benches/callpath_bench.sh's runs, side by side per daemon.

usage: callpath_summary.py calls.jsonl

One row per (procedure, connections, calls in flight): calls/s and daemon CPU µs per call of
each daemon (median of the runs, min-max), then the ratios against libvirtd when it ran.
The peak calls/s of each daemon (any procedure-independent lookupByName configuration) last.
"""
import collections
import json
import statistics
import sys


def fmt(values, digits=0):
    m = statistics.median(values)
    if len(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main():
    rows = collections.defaultdict(lambda: collections.defaultdict(lambda: {"cps": [], "cpu": []}))
    labels = []
    for line in open(sys.argv[1]):
        r = json.loads(line)
        if r["label"] not in labels:
            labels.append(r["label"])
        cell = rows[(r["proc"], r["conns"], r["inflight"])][r["label"]]
        cell["cps"].append(r["calls_per_s"])
        if "cpu_us_per_call" in r:
            cell["cpu"].append(r["cpu_us_per_call"])
    ours = [l for l in labels if l != "libvirtd"]
    head = "| call | conns x in flight |"
    for l in labels:
        head += f" {l} calls/s | {l} CPU µs/call |"
    for l in ours:
        if "libvirtd" in labels:
            head += f" {l} calls/s ratio | libvirtd/{l} CPU ratio |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for (proc, conns, inflight), cells in rows.items():
        line = f"| {proc} | {conns} x {inflight} |"
        for l in labels:
            c = cells.get(l)
            line += f" {fmt(c['cps'])} | {fmt(c['cpu'], 1) if c and c['cpu'] else '-'} |" if c else " - | - |"
        for l in ours:
            if "libvirtd" in labels and l in cells and "libvirtd" in cells:
                a, b = cells[l], cells["libvirtd"]
                cps = statistics.median(a["cps"]) / statistics.median(b["cps"])
                cpu = (statistics.median(b["cpu"]) / statistics.median(a["cpu"])
                       if a["cpu"] and b["cpu"] else float("nan"))
                line += f" {cps:.2f}x | {cpu:.2f}x |"
        print(line)
    print()
    for l in labels:
        peaks = collections.defaultdict(list)
        for (proc, conns, inflight), cells in rows.items():
            if proc == "lookupByName" and l in cells:
                peaks[(conns, inflight)] = cells[l]["cps"]
        if peaks:
            best = max(peaks.items(), key=lambda kv: statistics.median(kv[1]))
            print(f"peak lookupByName calls/s, {l}: {fmt(best[1])} at {best[0][0]} x {best[0][1]}")


if __name__ == "__main__":
    main()

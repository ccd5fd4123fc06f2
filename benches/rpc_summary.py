#!/usr/bin/python3
"""Summarise rpc_bench.sh output: medians per daemon and the rvirtd/libvirtd ratio.

usage: rpc_summary.py OUTDIR      (reads OUTDIR/*.jsonl, prints a markdown table)
"""
import glob
import json
import os
import statistics
import sys


def load(outdir):
    rows = []
    for path in sorted(glob.glob(os.path.join(outdir, "*.jsonl"))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rows.append(json.loads(line))
    return rows


# (label, bench filter, value function, higher is better)
METRICS = [
    ("lookupByName ops/s", lambda r: r.get("bench") == "lookup_by_name", lambda r: r["ops_per_s"], True),
    ("listAllDomains(1000) calls/s", lambda r: r.get("bench") == "list_all_domains", lambda r: r["calls_per_s"], True),
    ("lookup+info pairs/s, 8 threads", lambda r: r.get("bench") == "lookup_info_loop" and r["threads"] == 8,
     lambda r: r["pairs_per_s"], True),
    ("lookup+info pairs/s, 1 thread", lambda r: r.get("bench") == "lookup_info_loop" and r["threads"] == 1,
     lambda r: r["pairs_per_s"], True),
    ("XMLDesc ops/s", lambda r: r.get("bench") == "xmldesc", lambda r: r["ops_per_s"], True),
    ("define ops/s", lambda r: r.get("bench") == "define", lambda r: r["ops_per_s"], True),
    ("undefine ops/s", lambda r: r.get("bench") == "undefine", lambda r: r["ops_per_s"], True),
    ("connect+close ms (other conn held)",
     lambda r: r.get("bench") == "connect_close" and r["mode"] == "other_conn_held", lambda r: r["median_ms"], False),
    ("connect+close ms (no other conn)",
     lambda r: r.get("bench") == "connect_close" and r["mode"] == "no_other_conn", lambda r: r["median_ms"], False),
]


def daemon_of(r):
    return r.get("label") or r.get("daemon") or "?"


def fmt(v):
    if v is None:
        return "-"
    return "%.0f" % v if v >= 100 else "%.2f" % v


def main():
    outdir = sys.argv[1]
    rows = load(outdir)
    labels = []
    for r in rows:
        d = daemon_of(r)
        if d not in labels and d != "?":
            labels.append(d)
    daemons = [d for d in labels if d != "libvirtd"] + ["libvirtd"]
    table = []
    for label, filt, val, higher in METRICS:
        med = {}
        for d in daemons:
            vals = [val(r) for r in rows if daemon_of(r) == d and filt(r)]
            med[d] = (statistics.median(vals), len(vals)) if vals else (None, 0)
        table.append((label, med, higher))
    # peak RSS over a whole run: the largest per-phase VmHWM
    peaks = {}
    for d in daemons:
        per_run = {}
        for r in rows:
            if daemon_of(r) == d and "daemon_peak_rss_kb" in r:
                key = r.get("run", 0)
                per_run[key] = max(per_run.get(key, 0), r["daemon_peak_rss_kb"])
        peaks[d] = (statistics.median(per_run.values()) / 1024, len(per_run)) if per_run else (None, 0)
    table.append(("peak RSS MiB, 1000 domains", peaks, False))
    def per_daemon(key, scale=1.0, daemon_key=None):
        out = {}
        for d in daemons:
            vals = [r[key] * scale for r in rows if r.get(key) is not None and daemon_of(r) == d
                    and (daemon_key is None or r.get("bench") == daemon_key)]
            out[d] = (statistics.median(vals), len(vals)) if vals else (None, 0)
        return out

    starts = per_daemon("t_virsh_version_ok_ms")
    starts["libvirtd"] = per_daemon("t_ready_test_s", 1000)["libvirtd"]
    table.append(("spawn -> `virsh version` OK, ms", starts, False))
    table.append(("spawn -> first protocol answer, ms", per_daemon("t_first_answer_ms"), False))
    table.append(("RSS MiB after start (idle)", per_daemon("rss_kb_after_start", 1 / 1024), False))

    others = daemons[:-1]
    print("| metric | " + " | ".join(daemons) + " | " + " | ".join("%s / libvirtd" % d for d in others) + " |")
    print("|---" * (1 + len(daemons) + len(others)) + "|")
    for label, med, higher in table:
        cells = ["%s (n=%d)" % (fmt(med[d][0]), med[d][1]) for d in daemons]
        b = med["libvirtd"][0]
        for d in others:
            a = med[d][0]
            if a and b:
                ratio = a / b if higher else b / a
                cells.append("%.2fx %s" % (ratio, "faster" if higher else "better"))
            else:
                cells.append("-")
        print("| %s | %s |" % (label, " | ".join(cells)))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Virtual network start and destroy through python-libvirt, the same steps against each
daemon named, in turn (run inside a network namespace of its own: benches/net_bench.sh).

usage: net_bench.py --side LABEL URI SUBNET [--side ...] [--runs 15]

For each side a NAT network (`SUBNET.0/24`, DHCP range) is defined once; each run times
`create()` until dnsmasq answers a DNS query on `SUBNET.1` (any answer counts), then
`destroy()`. Medians and min/max in milliseconds, one JSON line per side.
"""
import argparse
import json
import random
import socket
import statistics
import struct
import time

import libvirt


def dns_answers(addr, deadline):
    """Sends DNS queries to ADDR:53 until one is answered or DEADLINE passes."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"\x09localhost\x00" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.002)
    try:
        while time.perf_counter() < deadline:
            try:
                s.sendto(q, (addr, 53))
                data, _ = s.recvfrom(512)
                if len(data) >= 2 and struct.unpack(">H", data[:2])[0] == qid:
                    return True
            except OSError:
                pass
        return False
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", nargs=3, action="append", required=True,
                    metavar=("LABEL", "URI", "SUBNET"))
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    libvirt.registerErrorHandler(lambda *_: None, None)
    sides = []
    for label, uri, subnet in a.side:
        conn = libvirt.open(uri)
        name = "bench" + label.replace("-", "")
        try:
            old = conn.networkLookupByName(name)
            if old.isActive():
                old.destroy()
            old.undefine()
        except libvirt.libvirtError:
            pass
        net = conn.networkDefineXML(
            f"<network><name>{name}</name><forward mode='nat'/>"
            f"<ip address='{subnet}.1' netmask='255.255.255.0'>"
            f"<dhcp><range start='{subnet}.100' end='{subnet}.200'/></dhcp></ip></network>"
        )
        sides.append((label, conn, net, subnet, [], []))
    for _ in range(a.runs):
        for label, conn, net, subnet, starts, stops in sides:
            t = time.perf_counter()
            net.create()
            if not dns_answers(subnet + ".1", t + 10):
                raise SystemExit(f"{label}: dnsmasq did not answer within 10 s")
            starts.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            net.destroy()
            stops.append((time.perf_counter() - t) * 1000)
    for label, conn, net, subnet, starts, stops in sides:
        print(json.dumps({
            "label": label, "runs": a.runs,
            "start_to_dns_median_ms": round(statistics.median(starts), 1),
            "start_min_ms": round(min(starts), 1), "start_max_ms": round(max(starts), 1),
            "destroy_median_ms": round(statistics.median(stops), 1),
            "destroy_min_ms": round(min(stops), 1), "destroy_max_ms": round(max(stops), 1),
        }), flush=True)
        net.undefine()
        conn.close()


if __name__ == "__main__":
    main()

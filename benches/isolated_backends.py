#!/usr/bin/python3
"""Storage backend calls through rvirtd: the storage-dir plugin in the daemon against the
storage-dir plugin in its plugin host process (each backend call forwarded over the
backend-call channel): pool info (no backend call), pool refresh, volume create + delete,
64 MiB volume upload and download, and the channel alone (a client on the plugin host's
backend-call socket). Run by benches/isolated_backends.sh.

usage: isolated_backends.py IN_PROCESS_URI ROOT_A PROCESS_URI ROOT_B
"""
import glob, json, socket, struct, sys, time
import libvirt

N = 50
ROUNDS = 15
VOL = ("<volume><name>b{i}.raw</name><capacity unit='KiB'>64</capacity>"
       "<target><format type='raw'/></target></volume>")


def setup(uri, root):
    c = libvirt.open(uri)
    p = c.storagePoolDefineXML(
        f"<pool type='dir'><name>bpool</name><target><path>{root}/bpool</path></target></pool>")
    p.build(0)
    p.create(0)
    # a pool with a few volumes, as a refresh reads each
    for i in range(8):
        p.createXML(VOL.format(i=f"fixed{i}"), 0)
    return c, p


def best(f):
    for _ in range(20):
        f()
    out = None
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(N):
            f()
        us = (time.perf_counter() - t0) / N * 1e6
        out = us if out is None else min(out, us)
    return out


def create_delete(p):
    n = [0]

    def once():
        n[0] += 1
        v = p.createXML(VOL.format(i=n[0]), 0)
        v.delete(0)
    return once


a_uri, a_root, b_uri, b_root = sys.argv[1:5]
sides = []
for name, uri, root in (("in-process", a_uri, a_root), ("process", b_uri, b_root)):
    c, p = setup(uri, root)
    sides.append((name, c, p))
# best of ROUNDS rounds of N calls each (the machine is shared: the minimum is the cost),
# the two sides interleaved
rows = {name: {} for name, _, _ in sides}
for what, make in (("pool info (no backend call)", lambda p: (lambda: p.info())),
                   ("pool refresh (refresh_pool)", lambda p: (lambda: p.refresh(0))),
                   ("vol create + delete", create_delete)):
    for name, c, p in sides:
        rows[name][what] = best(make(p))


def raw_channel(root, pool_xml, op):
    """One backend call straight on the plugin host's backend-call socket (the
    daemon's side of the forwarding left out)."""
    path = glob.glob(f"{root}/run/plugins/storage-dir.*.backends.sock")[0]
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    req = json.dumps({"version": 1, "call": {"op": op, "pool_type": "dir",
                                             "pool": pool_xml}}).encode()
    frame = struct.pack(">I", len(req) + 1) + b"\0" + req

    def once():
        s.sendall(frame)
        head = b""
        while len(head) < 5:
            head += s.recv(5 - len(head))
        n = struct.unpack(">I", head[:4])[0] - 1
        body = b""
        while len(body) < n:
            body += s.recv(n - len(body))
        assert b'"Ok"' in body, body
    return once


# volume streams: 64 MiB up and down, 256 KiB chunks (virsh's)
SIZE = 64 << 20
CHUNK = 256 << 10
data = bytes(range(256)) * (CHUNK // 256)
streams = {}
for name, c, p in sides:
    v = p.createXML("<volume><name>s.raw</name><capacity unit='MiB'>64</capacity>"
                    "<target><format type='raw'/></target></volume>", 0)
    up = down = None
    for _ in range(3):
        st = c.newStream(0)
        t0 = time.perf_counter()
        v.upload(st, 0, SIZE, 0)
        for _ in range(SIZE // CHUNK):
            st.send(data)
        st.finish()
        t = time.perf_counter() - t0
        up = t if up is None else min(up, t)
        st = c.newStream(0)
        t0 = time.perf_counter()
        v.download(st, 0, SIZE, 0)
        got = 0
        while True:
            b = st.recv(CHUNK)
            if not b:
                break
            got += len(b)
        st.finish()
        assert got == SIZE, got
        t = time.perf_counter() - t0
        down = t if down is None else min(down, t)
    streams[name] = (SIZE / up / 2**20, SIZE / down / 2**20)
    v.delete(0)

pool_xml = sides[1][2].XMLDesc(0)
raw = {op: best(raw_channel(b_root, pool_xml, op)) for op in ("check_pool", "refresh_pool")}
whats = list(rows["in-process"].keys())
print("| | " + " | ".join(whats) + " |")
print("| --- |" + " --- |" * len(whats))
for name in ("in-process", "process"):
    print(f"| {name} | " + " | ".join(f"{rows[name][w]:.0f} us" for w in whats) + " |")
print("| forwarding cost | " + " | ".join(
    f"{rows['process'][w] - rows['in-process'][w]:+.0f} us" for w in whats) + " |")
print()
for name in ("in-process", "process"):
    print(f"{name}: upload {streams[name][0]:.0f} MiB/s, download {streams[name][1]:.0f} MiB/s "
          "(64 MiB, best of 3)")
print("backend-call channel alone (python client on the plugin host's socket): "
      + ", ".join(f"{op} {us:.0f} us" for op, us in raw.items()))

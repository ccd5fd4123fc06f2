#!/usr/bin/python3
"""rvirtd start-up probe: time from spawn to socket, to the first protocol answer and to
a successful `virsh version`, plus RSS. JSON line per run on stdout.

usage: rpc_startup.py RVIRTD_BINARY [--runs 8] [--plugin-dir DIR]

"First answer" = a raw client (no libvirt library in the loop) gets the reply to
AUTH_LIST, CONNECT_OPEN("test:///default") and CONNECT_GET_TYPE. `virsh version` is the
same measure lvd.py reports for libvirtd (t_ready_test_s); virsh itself needs ~20 ms.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

PROG, VERS = 0x20008086, 1


def call(sock, proc, serial, payload=b""):
    msg = struct.pack(">IIiIII", PROG, VERS, proc, 0, serial, 0) + payload
    sock.sendall(struct.pack(">I", len(msg) + 4) + msg)
    (length,) = struct.unpack(">I", recv_exact(sock, 4))
    body = recv_exact(sock, length - 4)
    _, _, rproc, rtype, rserial, status = struct.unpack(">IIiIII", body[:24])
    assert (rproc, rtype, rserial) == (proc, 1, serial), (rproc, rtype, rserial)
    return status, body[24:]


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def xdr_string(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b + b"\0" * ((4 - len(b) % 4) % 4)


def first_answer(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        call(s, 66, 1)
        status, _ = call(s, 1, 2, struct.pack(">I", 1) + xdr_string("test:///default") + struct.pack(">I", 0))
        assert status == 0, "CONNECT_OPEN failed"
        status, _ = call(s, 3, 3)
        return status == 0
    finally:
        s.close()


def status_kb(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


def one_run(binary, plugin_dir):
    root = tempfile.mkdtemp(prefix="rvirtd-start.")
    sock = os.path.join(root, "run", "rvirt-sock")
    env = dict(os.environ, RUST_LOG="warn")
    if plugin_dir:
        env["RVIRT_PLUGIN_PATH"] = plugin_dir
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "--root", root], env=env, stdin=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    res = {"daemon": "rvirtd", "pid": p.pid}
    try:
        while not os.path.exists(sock):
            if p.poll() is not None:
                raise RuntimeError("rvirtd exited with %s" % p.returncode)
            time.sleep(0.0002)
        res["t_socket_ms"] = (time.monotonic() - t0) * 1e3
        while True:
            try:
                if first_answer(sock):
                    break
            except OSError:
                time.sleep(0.0002)
        res["t_first_answer_ms"] = (time.monotonic() - t0) * 1e3
        st = status_kb(p.pid)
        res["rss_kb_after_start"] = st.get("VmRSS")
        res["threads"] = st.get("Threads")
        uri = "test+unix:///default?socket=%s" % sock
        t1 = time.monotonic()
        ok = subprocess.run(["virsh", "-c", uri, "version"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode == 0
        res["virsh_version_ms"] = (time.monotonic() - t1) * 1e3
        res["t_virsh_version_ok_ms"] = (time.monotonic() - t0) * 1e3
        res["virsh_ok"] = ok
        t1 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        res["sigterm_exit_ms"] = (time.monotonic() - t1) * 1e3
        res["socket_removed"] = not os.path.exists(sock)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        shutil.rmtree(root, ignore_errors=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--plugin-dir", default="")
    a = ap.parse_args()
    for _ in range(a.runs):
        print(json.dumps(dict(bench="startup", **one_run(a.binary, a.plugin_dir))), flush=True)


if __name__ == "__main__":
    main()

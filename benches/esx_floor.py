#!/usr/bin/env python3
"""The floor of the esx plugin's benchmark: the vSphere calls `list --all` and `dominfo`
need, made by a minimal client (standard library only), each run a new TLS connection
and a new session, as one `rvirt` command makes.

esx_floor.py PORT list [RUNS]        RetrieveServiceContent, Login, CreateContainerView,
                                     RetrievePropertiesEx (name, config.uuid,
                                     runtime.powerState, memoryMB, numCPU, vmPathName),
                                     DestroyView, Logout
esx_floor.py PORT info NAME [RUNS]   the same plus one RetrievePropertiesEx of the VM
esx_floor.py PORT list-session RUNS, esx_floor.py PORT info-session NAME RUNS
                                     one session kept open, only each operation's calls
                                     timed (see Session); a third line lists every
                                     run's time
esx_floor.py PORT serve              one session; runs `list` / `info NAME` read from
                                     stdin one at a time, answering `MS RESULT` (see serve())
Prints the VM count (or the VM's memoryMB), then the median wall time of one run in ms,
measured inside this process (the interpreter's start-up is not counted).
"""
import http.client
import re
import ssl
import statistics
import sys
import time

PORT = int(sys.argv[1])
CTX = ssl._create_unverified_context()
ENV = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
       'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
       'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{}'
       '</soapenv:Body></soapenv:Envelope>')
PATHS = "".join(f"<pathSet>{p}</pathSet>" for p in [
    "name", "config.uuid", "runtime.powerState", "config.hardware.memoryMB",
    "config.hardware.numCPU", "config.files.vmPathName"])


class Client:
    def __init__(self):
        self.conn = http.client.HTTPSConnection("127.0.0.1", PORT, context=CTX)
        self.cookie = None

    def call(self, body):
        headers = {"Content-Type": "text/xml"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        self.conn.request("POST", "/sdk", ENV.format(body).encode(), headers)
        r = self.conn.getresponse()
        c = r.getheader("Set-Cookie")
        if c:
            self.cookie = c.split(";")[0]
        return r.read().decode()


def ref(text, kind):
    return re.search(f'<{kind} type="[^"]+">([^<]+)<', text).group(1).strip()


def run(what, name):
    c = Client()
    sc = c.call('<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">'
                'ServiceInstance</_this></RetrieveServiceContent>')
    pc, sm = ref(sc, "propertyCollector"), ref(sc, "sessionManager")
    root = ref(sc, "rootFolder")
    c.call(f'<Login xmlns="urn:vim25"><_this type="SessionManager">{sm}</_this>'
           '<userName>user</userName><password>pass</password></Login>')
    v = c.call('<CreateContainerView xmlns="urn:vim25"><_this type="ViewManager">ViewManager'
               f'</_this><container type="Folder">{root}</container><type>VirtualMachine</type>'
               '<recursive>true</recursive></CreateContainerView>')
    view = ref(v, "returnval")
    props = c.call(f'<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">'
                   f'{pc}</_this><specSet><propSet><type>VirtualMachine</type>{PATHS}</propSet>'
                   f'<objectSet><obj type="ContainerView">{view}</obj><skip>true</skip>'
                   '<selectSet xsi:type="TraversalSpec"><type>ContainerView</type>'
                   '<path>view</path></selectSet></objectSet></specSet><options></options>'
                   '</RetrievePropertiesEx>')
    c.call(f'<DestroyView xmlns="urn:vim25"><_this type="ContainerView">{view}</_this>'
           '</DestroyView>')
    objs = props.split("<objects>")[1:]
    out = len(objs)
    if what == "info":
        vm = next(ref(o, "obj") for o in objs if f">{name}</val>" in o)
        one = c.call(f'<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">'
                     f'{pc}</_this><specSet><propSet><type>VirtualMachine</type>{PATHS}'
                     f'</propSet><objectSet><obj type="VirtualMachine">{vm}</obj></objectSet>'
                     '</specSet><options></options></RetrievePropertiesEx>')
        out = re.search(r"memoryMB</name><val[^>]*>(\d+)<", one).group(1)
    c.call(f'<Logout xmlns="urn:vim25"><_this type="SessionManager">{sm}</_this></Logout>')
    c.conn.close()
    return out


class Session:
    """One session kept open (as rvirtd or an embedder holds it), with a view of the VMs
    made once. list: RetrievePropertiesEx of the VM properties over the view; info:
    RetrievePropertiesEx of the names over the view (finding NAME), then one of the VM's
    properties."""

    def __init__(self):
        c = self.c = Client()
        sc = c.call('<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">'
                    'ServiceInstance</_this></RetrieveServiceContent>')
        self.pc, self.sm = ref(sc, "propertyCollector"), ref(sc, "sessionManager")
        root = ref(sc, "rootFolder")
        c.call(f'<Login xmlns="urn:vim25"><_this type="SessionManager">{self.sm}</_this>'
               '<userName>user</userName><password>pass</password></Login>')
        self.view = ref(c.call('<CreateContainerView xmlns="urn:vim25"><_this '
                               f'type="ViewManager">ViewManager</_this><container type="Folder">'
                               f'{root}</container><type>VirtualMachine</type><recursive>true'
                               '</recursive></CreateContainerView>'), "returnval")

    def over_view(self, paths):
        return self.c.call(f'<RetrievePropertiesEx xmlns="urn:vim25"><_this '
                           f'type="PropertyCollector">{self.pc}</_this><specSet><propSet><type>'
                           f'VirtualMachine</type>{paths}</propSet><objectSet><obj '
                           f'type="ContainerView">{self.view}</obj><skip>true</skip><selectSet '
                           'xsi:type="TraversalSpec"><type>ContainerView</type><path>view</path>'
                           '</selectSet></objectSet></specSet><options></options>'
                           '</RetrievePropertiesEx>')

    def run(self, what, name):
        """One operation; (its result, its wall time in ms)."""
        t = time.perf_counter()
        if what == "list":
            out = len(self.over_view(PATHS).split("<objects>")[1:])
        else:
            objs = self.over_view("<pathSet>name</pathSet>").split("<objects>")[1:]
            vm = next(ref(o, "obj") for o in objs if f">{name}</val>" in o)
            one = self.c.call(f'<RetrievePropertiesEx xmlns="urn:vim25"><_this '
                              f'type="PropertyCollector">{self.pc}</_this><specSet><propSet>'
                              f'<type>VirtualMachine</type>{PATHS}</propSet><objectSet><obj '
                              f'type="VirtualMachine">{vm}</obj></objectSet></specSet><options>'
                              '</options></RetrievePropertiesEx>')
            out = re.search(r"memoryMB</name><val[^>]*>(\d+)<", one).group(1)
        return out, (time.perf_counter() - t) * 1000

    def close(self):
        self.c.call(f'<Logout xmlns="urn:vim25"><_this type="SessionManager">{self.sm}</_this>'
                    '</Logout>')


def session(what, name, runs):
    """RUNS timed runs on one session, after one untimed run."""
    s = Session()
    s.run(what, name)
    results = [s.run(what, name) for _ in range(runs)]
    s.close()
    times = [t for _, t in results]
    print(results[-1][0])
    print(f"{statistics.median(times):.1f}")
    print(" ".join(f"{t:.3f}" for t in times))


def serve():
    """One session; each line of stdin (`list` or `info NAME`) runs that operation once
    and answers `MS RESULT` (the benchmark alternates its runs with the plugin's, so that
    both sides see the same load)."""
    s = Session()
    for line in sys.stdin:
        words = line.split()
        if not words:
            break
        out, ms = s.run(words[0], words[1] if len(words) > 1 else None)
        print(f"{ms:.3f} {out}", flush=True)
    s.close()


if len(sys.argv) > 2 and sys.argv[2] == "serve":
    serve()
    sys.exit(0)

if len(sys.argv) > 2 and sys.argv[2].endswith("-session"):
    kind = sys.argv[2].removesuffix("-session")
    nm = sys.argv[3] if kind == "info" else None
    n = int(sys.argv[4 if kind == "info" else 3])
    session(kind, nm, n)
    sys.exit(0)

what = sys.argv[2]
name = sys.argv[3] if what == "info" else None
runs = int(sys.argv[4 if what == "info" else 3]) if len(sys.argv) > (4 if what == "info" else 3) else 1
times = []
for _ in range(runs):
    t = time.perf_counter()
    out = run(what, name)
    times.append((time.perf_counter() - t) * 1000)
print(out)
print(f"{statistics.median(times):.1f}")

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
                                     timed (see session())
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


def session(what, name, runs):
    """One session kept open (as rvirtd or an embedder holds it): only the calls of each
    operation are timed. list: RetrievePropertiesEx of the VM properties over a view made
    once; info: RetrievePropertiesEx of the names over that view (finding NAME), then one
    of the VM's properties."""
    c = Client()
    sc = c.call('<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">'
                'ServiceInstance</_this></RetrieveServiceContent>')
    pc, sm = ref(sc, "propertyCollector"), ref(sc, "sessionManager")
    root = ref(sc, "rootFolder")
    c.call(f'<Login xmlns="urn:vim25"><_this type="SessionManager">{sm}</_this>'
           '<userName>user</userName><password>pass</password></Login>')
    view = ref(c.call('<CreateContainerView xmlns="urn:vim25"><_this type="ViewManager">'
                      f'ViewManager</_this><container type="Folder">{root}</container>'
                      '<type>VirtualMachine</type><recursive>true</recursive>'
                      '</CreateContainerView>'), "returnval")

    def over_view(paths):
        return c.call(f'<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">'
                      f'{pc}</_this><specSet><propSet><type>VirtualMachine</type>{paths}'
                      f'</propSet><objectSet><obj type="ContainerView">{view}</obj>'
                      '<skip>true</skip><selectSet xsi:type="TraversalSpec"><type>ContainerView'
                      '</type><path>view</path></selectSet></objectSet></specSet><options>'
                      '</options></RetrievePropertiesEx>')
    times = []
    out = None
    for _ in range(runs):
        t = time.perf_counter()
        if what == "list":
            out = len(over_view(PATHS).split("<objects>")[1:])
        else:
            objs = over_view("<pathSet>name</pathSet>").split("<objects>")[1:]
            vm = next(ref(o, "obj") for o in objs if f">{name}</val>" in o)
            one = c.call(f'<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">'
                         f'{pc}</_this><specSet><propSet><type>VirtualMachine</type>{PATHS}'
                         f'</propSet><objectSet><obj type="VirtualMachine">{vm}</obj></objectSet>'
                         '</specSet><options></options></RetrievePropertiesEx>')
            out = re.search(r"memoryMB</name><val[^>]*>(\d+)<", one).group(1)
        times.append((time.perf_counter() - t) * 1000)
    c.call(f'<Logout xmlns="urn:vim25"><_this type="SessionManager">{sm}</_this></Logout>')
    print(out)
    print(f"{statistics.median(times):.1f}")


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

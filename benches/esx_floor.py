#!/usr/bin/env python3
"""The floor of the esx plugin's benchmark: the vSphere calls of `list --all` made by a
minimal client, one process and one session each time, as `rvirt list` does.

esx_floor.py PORT list   RetrieveServiceContent, Login, CreateContainerView,
                         RetrievePropertiesEx (name, config.uuid, runtime.powerState,
                         memoryMB, numCPU, vmPathName), DestroyView, Logout
esx_floor.py PORT info NAME   the same plus one RetrievePropertiesEx of the VM found
Prints the number of VMs (or the VM's memoryMB). Standard library only.
"""
import re
import ssl
import sys
import urllib.request

PORT = sys.argv[1]
URL = f"https://127.0.0.1:{PORT}/sdk"
CTX = ssl._create_unverified_context()
COOKIE = [None]
ENV = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
       'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
       'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{}'
       '</soapenv:Body></soapenv:Envelope>')


def call(body):
    req = urllib.request.Request(URL, ENV.format(body).encode(),
                                 {"Content-Type": "text/xml"})
    if COOKIE[0]:
        req.add_header("Cookie", COOKIE[0])
    with urllib.request.urlopen(req, context=CTX) as r:
        c = r.headers.get("Set-Cookie")
        if c:
            COOKIE[0] = c.split(";")[0]
        return r.read().decode()


def ref(text, kind):
    return re.search(f'<{kind} type="[^"]+">([^<]+)<', text).group(1).strip()


sc = call('<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">'
          'ServiceInstance</_this></RetrieveServiceContent>')
pc, sm, root = ref(sc, "propertyCollector"), ref(sc, "sessionManager"), ref(sc, "rootFolder")
call(f'<Login xmlns="urn:vim25"><_this type="SessionManager">{sm}</_this>'
     '<userName>user</userName><password>pass</password></Login>')
v = call('<CreateContainerView xmlns="urn:vim25"><_this type="ViewManager">ViewManager</_this>'
         f'<container type="Folder">{root}</container><type>VirtualMachine</type>'
         '<recursive>true</recursive></CreateContainerView>')
view = ref(v, "returnval")
paths = "".join(f"<pathSet>{p}</pathSet>" for p in [
    "name", "config.uuid", "runtime.powerState", "config.hardware.memoryMB",
    "config.hardware.numCPU", "config.files.vmPathName"])
props = call(f'<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">{pc}'
             f'</_this><specSet><propSet><type>VirtualMachine</type>{paths}</propSet>'
             f'<objectSet><obj type="ContainerView">{view}</obj><skip>true</skip>'
             '<selectSet xsi:type="TraversalSpec"><type>ContainerView</type><path>view</path>'
             '</selectSet></objectSet></specSet><options></options></RetrievePropertiesEx>')
call(f'<DestroyView xmlns="urn:vim25"><_this type="ContainerView">{view}</_this></DestroyView>')
objs = props.split("<objects>")[1:]
if sys.argv[2] == "list":
    print(len(objs))
else:
    name = sys.argv[3]
    vm = next(ref(o, "obj") for o in objs if f">{name}</val>" in o)
    one = call(f'<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">{pc}'
               f'</_this><specSet><propSet><type>VirtualMachine</type>{paths}</propSet>'
               f'<objectSet><obj type="VirtualMachine">{vm}</obj></objectSet></specSet>'
               '<options></options></RetrievePropertiesEx>')
    print(re.search(r"memoryMB</name><val[^>]*>(\d+)<", one).group(1))
call(f'<Logout xmlns="urn:vim25"><_this type="SessionManager">{sm}</_this></Logout>')

#!/bin/bash
# A single-node Ceph (one mon, one file-backed BlueStore OSD) in network namespace NETNS,
# for the rbd backend's tests and benchmark (recipe: shared/reference/real-components.md 2e).
#
#   ceph-cluster.sh start DIR NETNS [cephx|none]   # ~15-20 s; prints "ready" when usable
#   ceph-cluster.sh stop DIR NETNS                 # kills the daemons by PID, deletes NETNS
#
# Monitor: 127.0.0.1:6789 (v1) and :3300 (v2) inside NETNS. Ceph pool: rbd.
# DIR/ceph.conf is the cluster's conf; DIR/admin.key the client.admin key (base64);
# DIR/log/*.log the daemons' logs. A start that fails prints the log tails and exits 1.
set -u
cmd=$1 D=$2 NS=$3 AUTH=${4:-none}
export CEPH_CONF=$D/ceph.conf
N="ip netns exec $NS"

fail() {
    echo "ceph-cluster.sh: $*" >&2
    for f in "$D"/log/*.log; do [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 30 "$f" >&2; }; done
    exit 1
}

stop() {
    for n in osd.0 mon.a; do
        p=$(cat "$D/run/$n.pid" 2>/dev/null) || continue
        kill "$p" 2>/dev/null
    done
    for n in osd.0 mon.a; do
        p=$(cat "$D/run/$n.pid" 2>/dev/null) || continue
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
    ip netns del "$NS" 2>/dev/null
    return 0
}

case $cmd in
stop) stop; exit 0 ;;
start) ;;
*) echo "usage: $0 start|stop DIR NETNS [cephx|none]" >&2; exit 2 ;;
esac

mkdir -p "$D"/{mon.a,osd.0,run,log} || exit 1
FSID=$(cat /proc/sys/kernel/random/uuid)
cat > "$D/ceph.conf" <<EOC
[global]
fsid = $FSID
mon host = v2:127.0.0.1:3300,v1:127.0.0.1:6789
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = $AUTH
auth service required = $AUTH
auth client required = $AUTH
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
run dir = $D/run
log file = $D/log/\$name.log
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
keyring = $D/keyring
mon data avail warn = 1
mon data avail crit = 0
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 8589934592
bluestore fsck on mount = false
osd memory target = 939524096
ms bind ipv6 = false
[mon.a]
mon data = $D/mon.a
[osd.0]
osd data = $D/osd.0
bluestore block path = $D/osd0.block
EOC
ip netns add "$NS" || fail "cannot add network namespace $NS"
ip -n "$NS" link set lo up || fail "cannot bring lo up in $NS"
ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null || fail "ceph-authtool"
ceph-authtool "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null || fail "ceph-authtool"
ceph-authtool "$D/keyring" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd' >/dev/null || fail "ceph-authtool"
ceph-authtool "$D/keyring" -n client.admin -p > "$D/admin.key" || fail "ceph-authtool -p"
monmaptool --create --addv a '[v2:127.0.0.1:3300,v1:127.0.0.1:6789]' --fsid "$FSID" "$D/monmap" >/dev/null || fail "monmaptool"
ceph-mon --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring" || fail "ceph-mon --mkfs"
$N ceph-mon -i a || fail "ceph-mon did not start"
U=$(cat /proc/sys/kernel/random/uuid)
id=$($N timeout 30 ceph osd new "$U") || fail "ceph osd new"
[ "$id" = 0 ] || fail "ceph osd new answered '$id'"
$N ceph-osd -i 0 --mkfs --osd-uuid "$U" >"$D/log/osd-mkfs.out" 2>&1 || fail "ceph-osd --mkfs: $(tail -5 "$D/log/osd-mkfs.out")"
$N ceph-osd -i 0 >"$D/log/osd-start.out" 2>&1 || fail "ceph-osd did not start"
for _ in $(seq 120); do
    $N timeout 10 ceph osd stat 2>/dev/null | grep -q '1 up' && break
    sleep 0.5
done
$N timeout 10 ceph osd stat 2>/dev/null | grep -q '1 up' || fail "the OSD did not come up in 60 s"
$N timeout 60 ceph osd pool create rbd 8 >/dev/null 2>&1 || fail "ceph osd pool create"
$N timeout 60 ceph osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null 2>&1 || fail "ceph osd pool set size"
$N timeout 60 rbd pool init rbd || fail "rbd pool init"
echo ready

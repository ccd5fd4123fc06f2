#!/bin/sh
# Ceph RBD side by side: rvirtd (storage-rbd plugin) against Debian's libvirtd with its rbd
# backend (libvirt-daemon-driver-storage-rbd; a private instance, /work/shared/bench/lvd.py),
# (the QEMU plugin too: pools are bound to qemu:///system), both running inside the network namespace of a single-node cephx Ceph started for the run
# (plugins/storage-rbd/tests/ceph-cluster.sh), measured in turn within each step by
# benches/rbd_bench.py: vol-create-as 1 GiB / vol-delete against an in-process librbd
# create/remove, pool-refresh of IMAGES images, stream upload/download against
# `rbd import`/`rbd export`.
#
# usage: benches/rbd_bench.sh   (as root; needs ceph-mon ceph-osd ceph-common python3-rbd
#                                python3-libvirt libvirt-daemon libvirt-daemon-driver-storage-rbd)
# env:   IMAGES=1000 CREATES=20 UPLOAD_MIB=512 OUT=/tmp/rbdbench.XXXX NO_BUILD=1 NO_LIBVIRTD=1
#        BENCH_DIR=/work/shared/bench CARGO_TARGET_DIR=...
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/work/shared/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
PY=/usr/bin/python3
OUT=${OUT:-$(mktemp -d /tmp/rbdbench.XXXXXX)}
NS=rvirt-rbd-bench-$$
mkdir -p "$OUT"

if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT_DIR" && cargo build --release -q -p rvirt-daemon -p rvirt-plugin-qemu -p rvirt-storage-rbd)
fi
RVIRTD="$TARGET/release/rvirtd"
[ -x "$RVIRTD" ] || { echo "no $RVIRTD" >&2; exit 1; }
echo "results in $OUT" >&2

CL="$OUT/ceph"
"$ROOT_DIR/plugins/storage-rbd/tests/ceph-cluster.sh" start "$CL" "$NS" cephx >&2
R="$OUT/rvirtd-root"
D="$OUT/lvd"
cleanup() {
    [ -n "${PID:-}" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    [ -d "$D" ] && $PY "$BENCH_DIR/lvd.py" stop "$D" >/dev/null 2>&1
    "$ROOT_DIR/plugins/storage-rbd/tests/ceph-cluster.sh" stop "$CL" "$NS"
    rm -rf "$R" "$D" "$CL"
}
trap cleanup EXIT
mkdir -p "$R"
RUST_LOG=warn RVIRT_PLUGIN_PATH="$TARGET/release" ip netns exec "$NS" "$RVIRTD" --root "$R" 2>>"$OUT/rvirtd.log" &
PID=$!
while [ ! -S "$R/run/rvirt-sock" ]; do sleep 0.01; done
set -- --side rvirtd "qemu+unix:///system?socket=$R/run/rvirt-sock"
if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
    mkdir -p "$D"
    $PY "$BENCH_DIR/lvd.py" prepare "$D" >/dev/null
    ip netns exec "$NS" $PY "$BENCH_DIR/lvd.py" start "$D" --no-qemu >/dev/null
    set -- "$@" --side libvirtd "$($PY "$BENCH_DIR/lvd.py" uri "$D" qemu)"
fi
ip netns exec "$NS" $PY "$ROOT_DIR/benches/rbd_bench.py" --conf "$CL/ceph.conf" --key "$CL/admin.key" \
    --images "${IMAGES:-1000}" --creates "${CREATES:-20}" --upload-mib "${UPLOAD_MIB:-512}" "$@" |
    tee -a "$OUT/results.jsonl"

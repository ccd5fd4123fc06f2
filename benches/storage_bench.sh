#!/bin/sh
# Storage side by side: rvirtd against Debian's libvirtd (a private instance, see
# /work/shared/bench/lvd.py), both running, measured in turn within each step of one run
# through python-libvirt on qemu:///system (benches/storage_bench.py): qcow2 volume create
# through the API against `qemu-img create` by hand, and `dir` pool refresh of VOLUMES
# files right after they appear, cold and steady.
#
# usage: benches/storage_bench.sh     (as root; needs libvirt-daemon, python3-libvirt, qemu-utils)
# env:   RUNS=2 VOLUMES=10000 CREATES=30 OUT=/tmp/storagebench.XXXX NO_BUILD=1 NO_LIBVIRTD=1
#        BENCH_DIR=/work/shared/bench CARGO_TARGET_DIR=...
# The pool directories live under OUT, which must not be under /etc, /var or /run (the
# private libvirtd sees those through overlays).
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/work/shared/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
RUNS=${RUNS:-2}
VOLUMES=${VOLUMES:-10000}
CREATES=${CREATES:-30}
PY=/usr/bin/python3
OUT=${OUT:-$(mktemp -d /tmp/storagebench.XXXXXX)}
mkdir -p "$OUT"

if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT_DIR" && cargo build --release -q -p rvirt-daemon -p rvirt-plugin-qemu -p rvirt-storage-dir)
fi
RVIRTD="$TARGET/release/rvirtd"
[ -x "$RVIRTD" ] || { echo "no $RVIRTD" >&2; exit 1; }
echo "results in $OUT" >&2

i=1
while [ "$i" -le "$RUNS" ]; do
    echo "run $i/$RUNS" >&2
    R="$OUT/rvirtd-root.$i"
    rm -rf "$R"
    mkdir -p "$R"
    RUST_LOG=warn RVIRT_PLUGIN_PATH="$TARGET/release" "$RVIRTD" --root "$R" 2>>"$OUT/rvirtd.log" &
    PID=$!
    while [ ! -S "$R/run/rvirt-sock" ]; do sleep 0.01; done
    set -- --side rvirtd "qemu+unix:///system?socket=$R/run/rvirt-sock" "$OUT/pool-rvirtd"
    if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
        D="$OUT/lvd.$i"
        rm -rf "$D"
        mkdir -p "$D"
        $PY "$BENCH_DIR/lvd.py" prepare "$D" >/dev/null
        $PY "$BENCH_DIR/lvd.py" start "$D" --no-qemu >/dev/null
        set -- "$@" --side libvirtd "$($PY "$BENCH_DIR/lvd.py" uri "$D" qemu)" "$OUT/pool-libvirtd"
    fi
    $PY "$ROOT_DIR/benches/storage_bench.py" "$@" --volumes "$VOLUMES" --creates "$CREATES" |
        sed "s/^{/{\"run\": $i, /" | tee -a "$OUT/results.jsonl"
    kill -TERM "$PID"
    wait "$PID" || true
    if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
        $PY "$BENCH_DIR/lvd.py" stop "$D" >/dev/null
        rm -rf "$D"
    fi
    rm -rf "$R"
    i=$((i + 1))
done

#!/bin/sh
# The daemon's call path under load: rvirtd against Debian's libvirtd in the same run, both
# serving their test driver, driven by benches/loadgen (the remote protocol spoken directly:
# N connections, M calls in flight on each). Reports calls/s and the daemon's own CPU time
# per call (utime+stime of the daemon process over the run, divided by the calls).
#
# usage: benches/callpath_bench.sh      (as root; libvirtd from libvirt-daemon, python3-libvirt
#                                        for lvd.py; see /work/shared/bench/README.md)
# env:   RUNS=3 DURATION=3 CONNS=1,8 INFLIGHT=1,16 DOMAINS=1000
#        PROCS=lookup,info,xmldesc,define,listall  OUT=/tmp/callpath.XXXX
#        NO_BUILD=1 (use the existing release build)  NO_LIBVIRTD=1 (rvirtd only)
#        RVIRTD_CONFIG=FILE (rvirtd.toml for the rvirtd runs)  LABEL=rvirtd
#        BASELINE_RVIRTD=PATH (another rvirtd binary, e.g. an older build, measured in each
#        run too as BASELINE_LABEL=rvirtd-before: before/after figures in the same run)
#        BENCH_DIR=/work/shared/bench  CARGO_TARGET_DIR=...
# Runs of the two daemons alternate; the machine is shared and noisy: compare ratios.
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/work/shared/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
RUNS=${RUNS:-3}
DURATION=${DURATION:-3}
CONNS=${CONNS:-1,8}
INFLIGHT=${INFLIGHT:-1,16}
DOMAINS=${DOMAINS:-1000}
PROCS=${PROCS:-lookup,info,xmldesc,define,listall}
LABEL=${LABEL:-rvirtd}
PY=/usr/bin/python3
OUT=${OUT:-$(mktemp -d /tmp/callpath.XXXXXX)}
mkdir -p "$OUT"

if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT_DIR" && cargo build --release -p rvirt-daemon -p rvirt-plugin-test -p rvirt-loadgen)
fi
RVIRTD="$TARGET/release/rvirtd"
LOADGEN="$TARGET/release/rvirt-loadgen"
for b in "$RVIRTD" "$LOADGEN"; do [ -x "$b" ] || { echo "no $b" >&2; exit 1; }; done
echo "results in $OUT" >&2

load() {
    # socket label pids...
    sock=$1; label=$2; shift 2
    pids=""
    for p in "$@"; do pids="$pids --pid $p"; done
    # shellcheck disable=SC2086
    "$LOADGEN" --socket "$sock" --label "$label" --conns "$CONNS" --inflight "$INFLIGHT" \
        --procs "$PROCS" --domains "$DOMAINS" --duration "$DURATION" $pids |
        sed "s/^{/{\"run\": $i, /" >>"$OUT/calls.jsonl"
}

run_rvirtd() {
    # [binary label]
    bin=${1:-$RVIRTD}
    label=${2:-$LABEL}
    R="$OUT/rvirtd-root.$i"
    rm -rf "$R"
    mkdir -p "$R/etc/rvirt"
    if [ -n "${RVIRTD_CONFIG:-}" ]; then cp "$RVIRTD_CONFIG" "$R/etc/rvirt/rvirtd.toml"; fi
    RUST_LOG=warn RVIRT_PLUGIN_PATH="${PLUGIN_DIR:-$TARGET/release}" "$bin" --root "$R" 2>>"$OUT/rvirtd.log" &
    PID=$!
    n=0
    while [ ! -S "$R/run/rvirt-sock" ]; do
        sleep 0.01
        n=$((n + 1))
        [ "$n" -lt 1000 ] || { echo "rvirtd did not start (see $OUT/rvirtd.log)" >&2; exit 1; }
    done
    # (the loadgen charges the daemon's children, plugin host processes, to it too)
    load "$R/run/rvirt-sock" "$label" "$PID"
    kill -TERM "$PID"
    wait "$PID" || true
    rm -rf "$R"
}

run_libvirtd() {
    D="$OUT/lvd.$i"
    rm -rf "$D"
    mkdir -p "$D"
    $PY "$BENCH_DIR/lvd.py" prepare "$D" >/dev/null
    $PY "$BENCH_DIR/lvd.py" start "$D" --no-qemu >/dev/null
    PID=$(cut -d' ' -f1 "$D/daemon.pid")
    load "$D/sock/libvirt-sock" libvirtd "$PID"
    $PY "$BENCH_DIR/lvd.py" stop "$D" >/dev/null
    rm -rf "$D"
}

i=1
while [ "$i" -le "$RUNS" ]; do
    echo "run $i/$RUNS: $LABEL" >&2
    run_rvirtd
    if [ -n "${BASELINE_RVIRTD:-}" ]; then
        echo "run $i/$RUNS: ${BASELINE_LABEL:-rvirtd-before}" >&2
        run_rvirtd "$BASELINE_RVIRTD" "${BASELINE_LABEL:-rvirtd-before}"
    fi
    if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
        echo "run $i/$RUNS: libvirtd" >&2
        run_libvirtd
    fi
    i=$((i + 1))
done
$PY "$ROOT_DIR/benches/callpath_summary.py" "$OUT/calls.jsonl"

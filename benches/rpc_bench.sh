#!/bin/sh
# Compare rvirtd with Debian's libvirtd on the python-libvirt RPC benchmark of
# /work/shared/bench (rpc_bench.py) and on start-up time and memory.
#
# usage: benches/rpc_bench.sh            (as root; needs libvirt-daemon, libvirt-clients,
#                                         python3-libvirt; see /work/shared/bench/README.md)
# env:   RUNS=3 N=1000 THREADS=8 DURATION=5 STARTUP_RUNS=8 OUT=/tmp/rpcbench.XXXX
#        NO_BUILD=1 (use the existing release build)  NO_LIBVIRTD=1 (rvirtd only)
#        BENCH_DIR=/work/shared/bench  CARGO_TARGET_DIR=...
#        PLUGIN_DIR=... (where rvirtd finds its driver plugins; default: the release dir)
#        RVIRTD_CONFIG=FILE (rvirtd.toml for the rvirtd runs)
# Runs of the two daemons are interleaved; the machines are noisy, compare ratios.
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/work/shared/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
RUNS=${RUNS:-3}
N=${N:-1000}
THREADS=${THREADS:-8}
DURATION=${DURATION:-5}
STARTUP_RUNS=${STARTUP_RUNS:-8}
PY=/usr/bin/python3
OUT=${OUT:-$(mktemp -d /tmp/rpcbench.XXXXXX)}
mkdir -p "$OUT"

if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT_DIR" && cargo build --release -p rvirt-daemon -p rvirt-plugin-test)
fi
RVIRTD="$TARGET/release/rvirtd"
[ -x "$RVIRTD" ] || { echo "no $RVIRTD" >&2; exit 1; }
echo "results in $OUT" >&2

run_rvirtd() {
    i=$1
    label=${2:-rvirtd}
    R="$OUT/rvirtd-root.$i"
    rm -rf "$R"
    mkdir -p "$R/etc/rvirt"
    if [ -n "${RVIRTD_CONFIG:-}" ]; then cp "$RVIRTD_CONFIG" "$R/etc/rvirt/rvirtd.toml"; fi
    RUST_LOG=warn RVIRT_PLUGIN_PATH="${PLUGIN_DIR:-$TARGET/release}" "$RVIRTD" --root "$R" 2>>"$OUT/rvirtd.log" &
    PID=$!
    while [ ! -S "$R/run/rvirt-sock" ]; do sleep 0.01; done
    $PY "$BENCH_DIR/rpc_bench.py" "test+unix:///default?socket=$R/run/rvirt-sock" \
        --n "$N" --threads "$THREADS" --duration "$DURATION" --pid "$PID" --label "$label" |
        sed "s/^{/{\"run\": $i, /" >>"$OUT/$label.jsonl"
    kill -TERM "$PID"
    wait "$PID" || true
    rm -rf "$R"
}

run_libvirtd() {
    i=$1
    D="$OUT/lvd.$i"
    rm -rf "$D"
    mkdir -p "$D"
    $PY "$BENCH_DIR/lvd.py" prepare "$D" >/dev/null
    $PY "$BENCH_DIR/lvd.py" start "$D" --no-qemu | sed 's/^{/{"daemon": "libvirtd", /' >>"$OUT/libvirtd-start.jsonl"
    PID=$(cut -d' ' -f1 "$D/daemon.pid")
    $PY "$BENCH_DIR/rpc_bench.py" "$($PY "$BENCH_DIR/lvd.py" uri "$D" test)" \
        --n "$N" --threads "$THREADS" --duration "$DURATION" --pid "$PID" --label libvirtd |
        sed "s/^{/{\"run\": $i, /" >>"$OUT/libvirtd.jsonl"
    $PY "$BENCH_DIR/lvd.py" stop "$D" >/dev/null
    rm -rf "$D"
}

i=1
while [ "$i" -le "$RUNS" ]; do
    echo "run $i/$RUNS: rvirtd" >&2
    run_rvirtd "$i"
    if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
        echo "run $i/$RUNS: libvirtd" >&2
        run_libvirtd "$i"
    fi
    i=$((i + 1))
done
echo "start-up probe ($STARTUP_RUNS runs)" >&2
$PY "$ROOT_DIR/benches/rpc_startup.py" "$RVIRTD" --runs "$STARTUP_RUNS" --plugin-dir "$TARGET/release" \
    >"$OUT/rvirtd-start.jsonl"
$PY "$ROOT_DIR/benches/rpc_summary.py" "$OUT"

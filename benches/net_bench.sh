#!/bin/sh
# Virtual network start (until dnsmasq answers DNS) and destroy: rvirtd with the
# network-bridge plugin against Debian's libvirtd (a private instance, see
# /work/shared/bench/lvd.py), both in one network namespace of their own, measured in turn
# through python-libvirt (benches/net_bench.py).
#
# usage: benches/net_bench.sh    (as root; needs libvirt-daemon, python3-libvirt, dnsmasq-base,
#                                 nftables, and iptables for libvirtd's firewall)
# env:   RUNS=15 OUT=/tmp/netbench.XXXX NO_BUILD=1 NO_LIBVIRTD=1 BENCH_DIR=... CARGO_TARGET_DIR=...
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/work/shared/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
OUT=${OUT:-$(mktemp -d /tmp/netbench.XXXXXX)}
if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT_DIR" && cargo build --release -q -p rvirt-daemon -p rvirt-network-bridge -p rvirt-plugin-qemu)
fi
export ROOT_DIR BENCH_DIR TARGET OUT RUNS="${RUNS:-15}" NO_LIBVIRTD="${NO_LIBVIRTD:-0}"
unshare -n sh -eu -c '
    ip link set lo up
    R="$OUT/rvirtd-root"
    mkdir -p "$R"
    RUST_LOG=warn RVIRT_PLUGIN_PATH="$TARGET/release" "$TARGET/release/rvirtd" --root "$R" 2>>"$OUT/rvirtd.log" &
    PID=$!
    while [ ! -S "$R/run/rvirt-sock" ]; do sleep 0.01; done
    set -- --side rvirtd "qemu+unix:///system?socket=$R/run/rvirt-sock" 10.201.0
    if [ "$NO_LIBVIRTD" != 1 ]; then
        D="$OUT/lvd"
        mkdir -p "$D"
        /usr/bin/python3 "$BENCH_DIR/lvd.py" prepare "$D" >/dev/null
        /usr/bin/python3 "$BENCH_DIR/lvd.py" start "$D" --no-qemu >/dev/null
        set -- "$@" --side libvirtd "$(/usr/bin/python3 "$BENCH_DIR/lvd.py" uri "$D" qemu)" 10.202.0
    fi
    /usr/bin/python3 "$ROOT_DIR/benches/net_bench.py" "$@" --runs "$RUNS" || true
    kill -TERM "$PID"; wait "$PID" || true
    if [ "$NO_LIBVIRTD" != 1 ]; then /usr/bin/python3 "$BENCH_DIR/lvd.py" stop "$D" >/dev/null; fi
'
echo "logs in $OUT" >&2

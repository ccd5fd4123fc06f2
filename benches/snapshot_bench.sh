#!/bin/sh
# Internal snapshot create / revert / delete and live disk attach / detach of a running
# idle 256 MiB TCG guest (qcow2 disk): rvirtd's qemu plugin against Debian's libvirtd 9.0
# (private instance, /work/shared/bench/lvd.py) in the same run (benches/snapshot_bench.py).
#
# usage: benches/snapshot_bench.sh (as root; needs libvirt-daemon-driver-qemu, python3-libvirt,
#                                   qemu-system-x86, qemu-utils and the shared test guest)
# env:   RUNS=5 PROFILE=debug|release NO_BUILD=1 NO_LIBVIRTD=1 GUEST=/path/to/guest
#        HOTPLUG_ONLY=1 (the disk attach / detach alone: no snapshots, no floor)
#        ISOLATION=in-process|process (rvirtd's plugin_isolation; its default: process)
#        BENCH_DIR=/work/shared/bench CARGO_TARGET_DIR=...
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/work/shared/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
PROFILE=${PROFILE:-release}
RUNS=${RUNS:-5}
PY=/usr/bin/python3
OUT=$(mktemp -d /tmp/snapbench.XXXXXX)
GUEST=${GUEST:-$OUT/guest}
[ -e "$GUEST/vmlinux" ] || "$ROOT_DIR/../shared/guest/build-guest.sh" "$GUEST" >/dev/null
if [ "${NO_BUILD:-0}" != 1 ]; then
    flag=""
    [ "$PROFILE" = release ] && flag=--release
    # (the policy feature is off: snapshots and hotplug do not touch it)
    (cd "$ROOT_DIR" && cargo build $flag -p rvirt-daemon --no-default-features -p rvirt-plugin-qemu)
fi
BIN="$TARGET/$PROFILE"
R=$OUT/rvirtd-root
mkdir -p "$R"
if [ -n "${ISOLATION:-}" ]; then
    mkdir -p "$R/etc/rvirt"
    echo "plugin_isolation = \"$ISOLATION\"" >"$R/etc/rvirt/rvirtd.toml"
fi
RUST_LOG=warn RVIRT_PLUGIN_PATH="$BIN" "$BIN/rvirtd" --root "$R" 2>"$OUT/rvirtd.log" &
RPID=$!
URIS="--uri rvirtd=qemu+unix:///system?socket=$R/run/rvirt-sock"
if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
    L=$OUT/lvd
    $PY "$BENCH_DIR/lvd.py" prepare "$L" >/dev/null
    $PY "$BENCH_DIR/lvd.py" start "$L" >/dev/null
    URIS="$URIS --uri libvirtd-9.0=$($PY "$BENCH_DIR/lvd.py" uri "$L" qemu)"
fi
for _ in $(seq 300); do [ -S "$R/run/rvirt-sock" ] && break; sleep 0.1; done
WHAT=--floor
[ "${HOTPLUG_ONLY:-0}" = 1 ] && WHAT=--hotplug-only
# shellcheck disable=SC2086
$PY "$ROOT_DIR/benches/snapshot_bench.py" --guest "$GUEST" --runs "$RUNS" $WHAT $URIS || true
kill "$RPID" 2>/dev/null || true
[ "${NO_LIBVIRTD:-0}" != 1 ] && $PY "$BENCH_DIR/lvd.py" stop "$L" >/dev/null || true
rm -rf "$OUT"

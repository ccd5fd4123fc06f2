#!/bin/sh
# NIC hot-plug (`virsh attach-interface --live` / `detach-interface --live`) of a virtio
# bridge interface into an idle 256 MiB TCG guest: rvirtd's qemu plugin against Debian's
# libvirtd 9.0 (private instance, /work/shared/bench/lvd.py) in the same run
# (benches/nic_hotplug_bench.py). Everything runs in a network namespace of its own
# (unshare -n), where the bridge is made.
#
# usage: benches/nic_hotplug_bench.sh     (as root; needs libvirt-daemon-driver-qemu,
#                                          python3-libvirt, qemu-system-x86, util-linux and
#                                          the shared test guest)
# env:   RUNS=7 SETTLE=1 PROFILE=debug|release NO_BUILD=1 NO_LIBVIRTD=1 GUEST=/path/to/guest
#        BENCH_DIR=/work/shared/bench CARGO_TARGET_DIR=...
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${NICBENCH_IN_NETNS:-}" ]; then
    TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
    PROFILE=${PROFILE:-release}
    if [ "${NO_BUILD:-0}" != 1 ]; then
        flag=""
        [ "$PROFILE" = release ] && flag=--release
        (cd "$ROOT_DIR" && cargo build $flag -p rvirt-daemon --no-default-features -p rvirt-plugin-qemu)
    fi
    export CARGO_TARGET_DIR="$TARGET" PROFILE NICBENCH_IN_NETNS=1
    exec unshare -n "$0" "$@"
fi
BENCH_DIR=${BENCH_DIR:-/work/shared/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
RUNS=${RUNS:-7}
PY=/usr/bin/python3
OUT=$(mktemp -d /tmp/nicbench.XXXXXX)
GUEST=${GUEST:-$OUT/guest}
[ -e "$GUEST/vmlinux" ] || "$ROOT_DIR/../shared/guest/build-guest.sh" "$GUEST" >/dev/null
ip link set lo up
ip link add nicbr0 type bridge
ip link set nicbr0 up
BIN="$TARGET/$PROFILE"
R=$OUT/rvirtd-root
mkdir -p "$R"
RUST_LOG=warn RVIRT_PLUGIN_PATH="$BIN" "$BIN/rvirtd" --root "$R" 2>"$OUT/rvirtd.log" &
RPID=$!
URIS="--uri rvirtd=qemu+unix:///system?socket=$R/run/rvirt-sock"
if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
    L=$OUT/lvd
    $PY "$BENCH_DIR/lvd.py" prepare "$L" >/dev/null
    $PY "$BENCH_DIR/lvd.py" start "$L" >/dev/null
    URIS="$URIS --uri libvirtd-9.0=$($PY "$BENCH_DIR/lvd.py" uri "$L" qemu)"
fi
for _ in $(seq 50); do [ -S "$R/run/rvirt-sock" ] && break; sleep 0.1; done
# shellcheck disable=SC2086
$PY "$ROOT_DIR/benches/nic_hotplug_bench.py" --guest "$GUEST" --bridge nicbr0 --runs "$RUNS" --settle "${SETTLE:-1}" $URIS || true
kill "$RPID" 2>/dev/null || true
[ "${NO_LIBVIRTD:-0}" != 1 ] && $PY "$BENCH_DIR/lvd.py" stop "$L" >/dev/null || true
rm -rf "$OUT"

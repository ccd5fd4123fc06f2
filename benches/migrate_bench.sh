#!/bin/sh
# Live migration of an idle 256 MiB TCG guest between two rvirtd roots on this machine
# (the qemu plugin, client-driven v3 flow as `virsh migrate --live`), against QEMU's own
# migrate driven by hand and Debian's libvirt 9.0 between two private libvirtd
# (/work/shared/bench/lvd.py, each given its own host_uuid in libvirtd.conf: libvirt refuses
# a migration between two daemons whose host UUIDs are the same), in the same run
# (benches/migrate_bench.py).
#
# usage: benches/migrate_bench.sh   (needs python3-libvirt, qemu-system-x86, qemu-utils
#                                    and the shared test guest)
# env:   RUNS=5 PROFILE=debug|release NO_BUILD=1 NO_LIBVIRTD=1 GUEST=/path/to/guest
#        ISOLATION=in-process|process (rvirtd's plugin_isolation; its default: process)
#        BENCH_DIR=/work/shared/bench CARGO_TARGET_DIR=...
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/work/shared/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
PROFILE=${PROFILE:-release}
RUNS=${RUNS:-5}
PY=/usr/bin/python3
OUT=$(mktemp -d /tmp/migbench.XXXXXX)
GUEST=${GUEST:-$OUT/guest}
[ -e "$GUEST/vmlinux" ] || "$ROOT_DIR/../shared/guest/build-guest.sh" "$GUEST" >/dev/null
if [ "${NO_BUILD:-0}" != 1 ]; then
    flag=""
    [ "$PROFILE" = release ] && flag=--release
    # (the policy feature is off: migration does not touch it, and wasmtime builds long)
    (cd "$ROOT_DIR" && cargo build $flag -p rvirt-daemon --no-default-features -p rvirt-plugin-qemu)
fi
BIN="$TARGET/$PROFILE"
PIDS=""
for side in a b; do
    mkdir -p "$OUT/$side"
    if [ -n "${ISOLATION:-}" ]; then
        mkdir -p "$OUT/$side/etc/rvirt"
        echo "plugin_isolation = \"$ISOLATION\"" >"$OUT/$side/etc/rvirt/rvirtd.toml"
    fi
    RUST_LOG=warn RVIRT_PLUGIN_PATH="$BIN" "$BIN/rvirtd" --root "$OUT/$side" 2>"$OUT/$side.log" &
    PIDS="$PIDS $!"
done
for side in a b; do
    for _ in $(seq 300); do [ -S "$OUT/$side/run/rvirt-sock" ] && break; sleep 0.1; done
done
LIBVIRT=""
if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
    n=0
    for side in la lb; do
        n=$((n + 1))
        $PY "$BENCH_DIR/lvd.py" prepare "$OUT/$side" >/dev/null
        # a host UUID of its own per private libvirtd (both read the same SMBIOS one)
        echo "host_uuid = \"7a4b0c1e-5d2f-4e8a-9c3b-00000000000$n\"" >>"$OUT/$side/libvirtd.conf"
        $PY "$BENCH_DIR/lvd.py" start "$OUT/$side" >/dev/null
    done
    LIBVIRT="--libvirt-src $($PY "$BENCH_DIR/lvd.py" uri "$OUT/la" qemu) --libvirt-dst $($PY "$BENCH_DIR/lvd.py" uri "$OUT/lb" qemu)"
fi
# shellcheck disable=SC2086
$PY "$ROOT_DIR/benches/migrate_bench.py" --guest "$GUEST" --runs "$RUNS" --floor \
    --src "qemu+unix:///system?socket=$OUT/a/run/rvirt-sock" \
    --dst "qemu+unix:///system?socket=$OUT/b/run/rvirt-sock" $LIBVIRT || true
if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
    for side in la lb; do $PY "$BENCH_DIR/lvd.py" stop "$OUT/$side" >/dev/null || true; done
fi
# shellcheck disable=SC2086
kill $PIDS 2>/dev/null || true
rm -rf "$OUT"

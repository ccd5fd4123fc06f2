#!/bin/sh
# Live migration of an idle 256 MiB TCG guest between two rvirtd roots on this machine
# (the qemu plugin, client-driven v3 flow as `virsh migrate --live`), against QEMU's own
# migrate driven by hand, in the same run (benches/migrate_bench.py). Debian libvirt 9.0's
# figures are the ones of issue 15 (measured on this machine; libvirt refuses a migration
# between two daemons of one host, whose host UUIDs are the same).
#
# usage: benches/migrate_bench.sh   (needs python3-libvirt, qemu-system-x86, qemu-utils
#                                    and the shared test guest)
# env:   RUNS=5 PROFILE=debug|release NO_BUILD=1 GUEST=/path/to/guest CARGO_TARGET_DIR=...
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
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
    RUST_LOG=warn RVIRT_PLUGIN_PATH="$BIN" "$BIN/rvirtd" --root "$OUT/$side" 2>"$OUT/$side.log" &
    PIDS="$PIDS $!"
done
for side in a b; do
    for _ in $(seq 50); do [ -S "$OUT/$side/run/rvirt-sock" ] && break; sleep 0.1; done
done
$PY "$ROOT_DIR/benches/migrate_bench.py" --guest "$GUEST" --runs "$RUNS" --floor \
    --src "qemu+unix:///system?socket=$OUT/a/run/rvirt-sock" \
    --dst "qemu+unix:///system?socket=$OUT/b/run/rvirt-sock" || true
# shellcheck disable=SC2086
kill $PIDS 2>/dev/null || true
rm -rf "$OUT"

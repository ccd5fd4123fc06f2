#!/bin/sh
# Plugin process isolation: per-call overhead against in-process, restart after a crash,
# and the switch of a live upgrade (benches/isolation_bench.py, python-libvirt).
#
# usage: benches/isolation_bench.sh        (needs python3-libvirt)
# env:   PROFILE=release|debug NO_BUILD=1 RVIRT=path/to/rvirt CARGO_TARGET_DIR=...
#        PER_CALL_ONLY=1: the per-call overhead only (no crash or reload runs)
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
PROFILE=${PROFILE:-release}
if [ "${NO_BUILD:-0}" != 1 ]; then
    flag=""
    [ "$PROFILE" = release ] && flag=--release
    # (the policy feature is off: calls do not touch it, and wasmtime builds long)
    (cd "$ROOT_DIR" && cargo build $flag -p rvirt-daemon --no-default-features -p rvirt-plugin-test)
    (cd "$ROOT_DIR" && cargo build -p rvirt-cli)
fi
BIN="$TARGET/$PROFILE"
A=$(mktemp -d /tmp/isobench-a.XXXXXX)
B=$(mktemp -d /tmp/isobench-b.XXXXXX)
mkdir -p "$B/etc/rvirt"
printf 'uris = ["test:///default?faults=crash"]\n[plugins.test]\nisolation = "process"\n' \
    >"$B/etc/rvirt/rvirtd.toml"
mkdir -p "$A/etc/rvirt"
printf 'uris = ["test:///default?faults=crash"]\nplugin_isolation = "in-process"\n' >"$A/etc/rvirt/rvirtd.toml"
RUST_LOG=error RVIRT_PLUGIN_PATH="$BIN" "$BIN/rvirtd" --root "$A" & PA=$!
RUST_LOG=error RVIRT_PLUGIN_PATH="$BIN" "$BIN/rvirtd" --root "$B" & PB=$!
trap 'kill $PA $PB 2>/dev/null; wait; rm -rf "$A" "$B"' EXIT
for r in "$A" "$B"; do
    i=0; while [ ! -S "$r/run/rvirt-sock" ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done
done
/usr/bin/python3 "$ROOT_DIR/benches/isolation_bench.py" \
    "test+unix:///default?faults=crash&socket=$A/run/rvirt-sock" \
    "test+unix:///default?faults=crash&socket=$B/run/rvirt-sock" \
    "${RVIRT:-$TARGET/debug/rvirt}" "$B"

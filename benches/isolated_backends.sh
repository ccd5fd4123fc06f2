#!/bin/sh
# Storage plugins in plugin host processes: what forwarding a backend call over the
# backend-call channel (host/daemon/src/isolate/wire.rs) costs, against the storage-dir
# plugin loaded into the daemon (benches/isolated_backends.py, python-libvirt:
# virStoragePoolRefresh, virStorageVolCreateXML + virStorageVolDelete, and
# virStoragePoolGetInfo, which the daemon answers without the backend; volume upload and
# download throughput).
#
# usage: benches/isolated_backends.sh     (needs python3-libvirt)
# env:   PROFILE=release|debug NO_BUILD=1 CARGO_TARGET_DIR=...
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
PROFILE=${PROFILE:-release}
if [ "${NO_BUILD:-0}" != 1 ]; then
    flag=""
    [ "$PROFILE" = release ] && flag=--release
    (cd "$ROOT_DIR" && cargo build $flag -p rvirt-daemon --no-default-features \
        -p rvirt-plugin-qemu -p rvirt-storage-dir)
fi
BIN="$TARGET/$PROFILE"
A=$(mktemp -d /tmp/isoback-a.XXXXXX)
B=$(mktemp -d /tmp/isoback-b.XXXXXX)
mkdir -p "$A/etc/rvirt" "$B/etc/rvirt"
printf 'uris = ["qemu:///system"]\nplugin_isolation = "in-process"\n' >"$A/etc/rvirt/rvirtd.toml"
printf 'uris = ["qemu:///system"]\n' >"$B/etc/rvirt/rvirtd.toml"
RUST_LOG=error RVIRT_PLUGIN_PATH="$BIN" "$BIN/rvirtd" --root "$A" & PA=$!
RUST_LOG=error RVIRT_PLUGIN_PATH="$BIN" "$BIN/rvirtd" --root "$B" & PB=$!
trap 'kill $PA $PB 2>/dev/null; wait; rm -rf "$A" "$B"' EXIT
for r in "$A" "$B"; do
    i=0; while [ ! -S "$r/run/rvirt-sock" ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done
done
/usr/bin/python3 "$ROOT_DIR/benches/isolated_backends.py" \
    "qemu+unix:///system?socket=$A/run/rvirt-sock" "$A" \
    "qemu+unix:///system?socket=$B/run/rvirt-sock" "$B"

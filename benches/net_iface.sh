#!/bin/sh
# What one bridge interface adds to a domain start through the qemu plugin (the driver
# makes a TAP, attaches it and passes its descriptor): the same domain with and without
# the interface, interleaved, inside a network namespace of its own with a bridge.
# Usage: benches/net_iface.sh [RUNS]   (as root; one JSON line per measurement)
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q -p rvirt-plugin-qemu
cargo bench -q -p rvirt-plugin-qemu --bench qemu_lifecycle --no-run
RUNS="${1:-10}" unshare -n sh -c '
    ip link set lo up
    ip link add rvbench0 type bridge
    ip link set rvbench0 up
    BRIDGE=rvbench0 cargo bench -q -p rvirt-plugin-qemu --bench qemu_lifecycle
'

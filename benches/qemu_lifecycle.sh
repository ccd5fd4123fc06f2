#!/bin/sh
# Start (define -> running) and destroy latency of a no-disk TCG domain through the qemu
# plugin, against the same QEMU command line launched by hand in the same run.
# Usage: benches/qemu_lifecycle.sh [RUNS]   (medians, one JSON line)
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q -p rvirt-plugin-qemu
RUNS="${1:-10}" cargo bench -q -p rvirt-plugin-qemu --bench qemu_lifecycle

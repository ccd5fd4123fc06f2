#!/usr/bin/env bash
# Runs every test of the workspace: builds all binaries and plugin shared objects first
# (the integration tests load the real plugins and run the real binaries), then the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --locked
for fixture in tests/fixtures/*/Cargo.toml; do
    cargo build --locked --quiet --manifest-path "$fixture" --target-dir "${CARGO_TARGET_DIR:-target}/fixtures"
done
cargo test --workspace --locked --no-fail-fast
# The packages installed into this machine with dpkg (as root; removed again after).
tests/dpkg-install.sh

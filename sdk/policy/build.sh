#!/usr/bin/env bash
# Builds the C policy examples (sdk/policy/examples/*.c) into OUTDIR (default
# sdk/policy/build) as freestanding wasm32 modules and copies their .toml settings beside
# them, so OUTDIR can be used as a policy.d directory. (The .wat examples need no build:
# copy them into policy.d as they are.)
#   sdk/policy/build.sh [OUTDIR] [extra clang flags...]
# Needs Debian's clang and lld (apt-get install clang lld); CLANG overrides the compiler.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/build}"
shift || true
clang="${CLANG:-clang}"
if ! command -v "$clang" >/dev/null; then
    echo "build.sh: $clang not found (apt-get install clang lld)" >&2
    exit 1
fi
mkdir -p "$out"
for src in "$here"/examples/*.c; do
    name="$(basename "$src" .c)"
    "$clang" --target=wasm32 -O2 -mbulk-memory -nostdlib \
        -Wl,--no-entry -Wl,--export-dynamic -Wl,--strip-all \
        -Wall -Werror -I "$here" "$@" "$src" -o "$out/$name.wasm"
done
cp "$here"/examples/*.toml "$out"/ 2>/dev/null || true
echo "built $(ls "$out"/*.wasm | wc -l) modules in $out"

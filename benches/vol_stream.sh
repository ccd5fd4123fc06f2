#!/bin/sh
# Volume upload/download throughput: unmodified `virsh vol-upload` / `vol-download` of one
# SIZE_MIB file through rvirtd and through Debian's libvirtd (a private instance started
# with /work/shared/bench/lvd.py), side by side in one run, and `cp` of the same file on the
# same disk (and `cp` followed by `sync FILE`: an rvirtd upload is on disk when it is
# confirmed). Prints MiB/s per run and the medians.
#
# usage: benches/vol_stream.sh SIZE_MIB RUNS      (as root; needs libvirt-daemon,
#                                                 libvirt-clients, python3)
# env:   OUT=/tmp/volbench.XXXX (must be on the disk to measure, not under /etc /var /run;
#        a directory the script made is removed at the end unless KEEP=1)
#        NO_BUILD=1 (use the existing release build)  NO_LIBVIRTD=1 (rvirtd and cp only)
#        BENCH_DIR=/work/shared/bench  CARGO_TARGET_DIR=...
# Each side writes its volume file and its downloaded copy in OUT, on the same disk as
# the source file; page cache is not dropped (no side gets a cold cache the other lacks:
# the source is read once before the runs). Runs are interleaved.
set -eu
SIZE=${1:-1024}
RUNS=${2:-3}
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/work/shared/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
PY=/usr/bin/python3
if [ -z "${OUT:-}" ]; then
    OUT=$(mktemp -d /tmp/volbench.XXXXXX)
    OWN_OUT=1
else
    OWN_OUT=0
fi
mkdir -p "$OUT"
echo "work dir $OUT" >&2

if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT_DIR" && cargo build --release -p rvirt-daemon -p rvirt-storage-dir -p rvirt-plugin-qemu)
fi
RVIRTD="$TARGET/release/rvirtd"
[ -x "$RVIRTD" ] || { echo "no $RVIRTD" >&2; exit 1; }

SRC="$OUT/src.img"
dd if=/dev/urandom of="$SRC" bs=1M count="$SIZE" status=none
cat "$SRC" >/dev/null

now() { date +%s.%N; }
# rate SECONDS -> MiB/s
rate() { awk -v s="$1" -v m="$SIZE" 'BEGIN { printf "%.1f", m / s }'; }

# --- rvirtd
R="$OUT/rvirtd-root"
RUST_LOG=warn RVIRT_PLUGIN_PATH="$TARGET/release" "$RVIRTD" --root "$R" 2>>"$OUT/rvirtd.log" &
RPID=$!
while [ ! -S "$R/run/rvirt-sock" ]; do sleep 0.01; done
RURI="qemu+unix:///system?socket=$R/run/rvirt-sock"

# --- libvirtd
LPID=
if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
    D="$OUT/lvd"
    mkdir -p "$D"
    $PY "$BENCH_DIR/lvd.py" prepare "$D" >/dev/null
    $PY "$BENCH_DIR/lvd.py" start "$D" --no-qemu >/dev/null
    LPID=$(cut -d' ' -f1 "$D/daemon.pid")
    LURI="qemu+unix:///system?socket=$D/sock/libvirt-sock"
fi

cleanup() {
    kill -TERM "$RPID" 2>/dev/null || true
    wait "$RPID" 2>/dev/null || true
    if [ -n "$LPID" ]; then $PY "$BENCH_DIR/lvd.py" stop "$OUT/lvd" >/dev/null 2>&1 || true; fi
    # the volumes are SIZE_MIB each: keep nothing of a work dir this script made
    if [ "$OWN_OUT" = 1 ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT

setup_pool() { # URI DIR
    virsh -q -c "$1" pool-create-as bench dir --target "$2" >/dev/null
    virsh -q -c "$1" vol-create-as bench vol.img "${SIZE}M" --format raw >/dev/null
}
mkdir -p "$OUT/rvirtd-pool" "$OUT/lvd-pool"
setup_pool "$RURI" "$OUT/rvirtd-pool"
SIDES="rvirtd"
if [ -n "$LPID" ]; then
    setup_pool "$LURI" "$OUT/lvd-pool"
    SIDES="rvirtd libvirtd"
fi

uri_of() { if [ "$1" = rvirtd ]; then echo "$RURI"; else echo "$LURI"; fi; }

# an untimed warm-up: every side's volume allocated, both daemons' code paths loaded
for side in $SIDES; do
    virsh -q -c "$(uri_of "$side")" vol-upload vol.img "$SRC" --pool bench
done

RESULTS="$OUT/results.txt"
: >"$RESULTS"
i=1
while [ "$i" -le "$RUNS" ]; do
    for side in $SIDES; do
        u=$(uri_of "$side")
        t0=$(now)
        virsh -q -c "$u" vol-upload vol.img "$SRC" --pool bench
        t1=$(now)
        virsh -q -c "$u" vol-download vol.img "$OUT/dl.img" --pool bench
        t2=$(now)
        if [ "$i" = 1 ]; then
            cmp -s "$SRC" "$OUT/dl.img" || { echo "$side: downloaded bytes differ" >&2; exit 1; }
        fi
        rm -f "$OUT/dl.img"
        up=$(rate "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
        down=$(rate "$(awk -v a="$t1" -v b="$t2" 'BEGIN { print b - a }')")
        echo "$side upload $up" >>"$RESULTS"
        echo "$side download $down" >>"$RESULTS"
        echo "run $i: $side upload $up MiB/s, download $down MiB/s"
    done
    t0=$(now)
    cp "$SRC" "$OUT/cp.img"
    t1=$(now)
    rm -f "$OUT/cp.img"
    c=$(rate "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    echo "cp copy $c" >>"$RESULTS"
    # the same with the data on disk at the end, as a finished rvirtd upload has it
    # (the dir backend fsyncs before it confirms)
    t0=$(now)
    cp "$SRC" "$OUT/cp.img"
    sync "$OUT/cp.img"
    t1=$(now)
    rm -f "$OUT/cp.img"
    cs=$(rate "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    echo "cp+sync copy $cs" >>"$RESULTS"
    echo "run $i: cp $c MiB/s, cp+sync $cs MiB/s"
    i=$((i + 1))
done

echo
echo "medians of $RUNS runs, $SIZE MiB (MiB/s):"
for key in "rvirtd upload" "rvirtd download" "libvirtd upload" "libvirtd download" "cp copy" "cp+sync copy"; do
    grep "^$key " "$RESULTS" | awk '{ print $3 }' | sort -n |
        awk -v k="$key" '{ v[NR] = $1 } END { if (NR) printf "  %-18s %s\n", k, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
done
rm -f "$SRC"

#!/usr/bin/env bash
# The esx plugin against vcsim with many VMs: `rvirt list --all`, `rvirt dominfo` and the
# connection's pools, volumes and networks (`pool-list`, `vol-list`, `net-list`) (a new
# process, plugin load, login, inventory discovery and the calls, each run) against the
# floor of the vSphere calls they need from a minimal client (benches/esx_floor.py: a new
# connection and session per run, timed inside its process). See docs/performance.md.
#
#   VMS=500 RUNS=10 benches/esx_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VMS=${VMS:-500}
RUNS=${RUNS:-10}
MODE=${MODE:-esx}          # esx (standalone host, -vm VMS) or vpx (vCenter, 1 host, 0 clusters)
target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet -p rvirt-cli -p rvirt-plugin-esx
vcsim=$(tests/tools/vcsim/build.sh "$target/vcsim")
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
mkdir -p "$tmp/plugins" "$tmp/config/libvirt"
cp "$target/release/librvirt_plugin_esx.so" "$tmp/plugins/"
printf '[credentials-sim]\nusername=user\npassword=pass\n[auth-esx-default]\ncredentials=sim\n[auth-vpx-default]\ncredentials=sim\n' \
    > "$tmp/config/libvirt/auth.conf"
if [ "$MODE" = esx ]; then
    "$vcsim" -l 127.0.0.1:0 -esx -vm "$VMS" > "$tmp/url" 2> "$tmp/vcsim.log" &
else
    "$vcsim" -l 127.0.0.1:0 -host 1 -cluster 0 -vm "$VMS" > "$tmp/url" 2> "$tmp/vcsim.log" &
fi
pid=$!
for _ in $(seq 600); do grep -q VCSIM_URL "$tmp/url" && break; sleep 0.1; done
port=$(sed -n 's/^VCSIM_URL=.*:\([0-9]*\)\/sdk$/\1/p' "$tmp/url")
[ -n "$port" ] || { cat "$tmp/vcsim.log"; exit 1; }
if [ "$MODE" = esx ]; then uri="esx://user@127.0.0.1:$port/?no_verify=1"; else uri="vpx://user@127.0.0.1:$port/?no_verify=1"; fi
rvirt() {
    env -i PATH=/usr/bin:/bin HOME="$tmp" XDG_CONFIG_HOME="$tmp/config" RVIRT_PLUGIN_PATH="$tmp/plugins" \
        "$target/release/rvirt" -c "$uri" "$@"
}
n=$(rvirt list --all | tail -n +3 | grep -c .)
names=$(rvirt list --all --name)
vm=${names%%$'\n'*}
[ "$n" = "$(benches/esx_floor.py "$port" list | head -n 1)" ] || { echo "plugin and floor disagree on the VM count" >&2; exit 1; }
echo "vcsim $MODE mode, $n VMs, $RUNS runs each, medians (ms):"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
time_ms() {
    local s e
    for _ in $(seq "$RUNS"); do
        s=$(date +%s%N); "$@" > /dev/null; e=$(date +%s%N)
        echo $(( (e - s) / 1000000 ))
    done | median
}
printf '%-42s %8s\n' "rvirt uri (open: login, inventory, logout)" "$(time_ms rvirt uri)"
printf '%-42s %8s\n' "rvirt list --all" "$(time_ms rvirt list --all)"
printf '%-42s %8s\n' "floor: list (esx_floor.py, in-process)" "$(benches/esx_floor.py "$port" list "$RUNS" | tail -n 1)"
printf '%-42s %8s\n' "rvirt dominfo $vm" "$(time_ms rvirt dominfo "$vm")"
printf '%-42s %8s\n' "floor: info (esx_floor.py, in-process)" "$(benches/esx_floor.py "$port" info "$vm" "$RUNS" | tail -n 1)"
# the connection's own storage and networks (plugin API 1.10): datastores, the .vmdk files
# of the first (one SearchDatastoreSubFolders_Task), virtual switches
ds=$(rvirt pool-list --all | awk 'NR==3 {print $1}')
nvols=$(rvirt vol-list "$ds" | tail -n +3 | grep -c .)
printf '%-42s %8s\n' "rvirt pool-list --all" "$(time_ms rvirt pool-list --all)"
printf '%-42s %8s\n' "rvirt vol-list $ds ($nvols volumes)" "$(time_ms rvirt vol-list "$ds")"
printf '%-42s %8s\n' "rvirt net-list --all" "$(time_ms rvirt net-list --all)"
printf '%-42s %8s\n' "python3 -c pass (start-up)" "$(time_ms python3 -c pass)"
printf '%-42s %8s\n' "rvirt --version (start-up)" "$(time_ms "$target/release/rvirt" --version)"

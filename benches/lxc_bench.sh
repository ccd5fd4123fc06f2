#!/bin/sh
# Container start (API call to init running) and destroy (init ignoring SIGTERM), median
# of RUNS, side by side: rvirt's lxc plugin through rvirtd, Debian's libvirt 9.0 LXC driver
# through a private libvirtd (../shared/bench/lvd.py), and the by-hand floor (unshare +
# pivot_root, as in ../shared/reference/real-components.md).
# Usage (root): benches/lxc_bench.sh [RUNS]   (after `cargo build -p rvirt-daemon
# -p rvirt-plugin-lxc`; PROFILE=release for a release build)
set -eu
RUNS=${1:-20}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$HERE/target}/${PROFILE:-debug}
LVD=${LVD:-$HERE/../shared/bench/lvd.py}
W=$(mktemp -d /tmp/lxc-bench.XXXXXX)
trap 'kill $RVIRTD 2>/dev/null || true; /usr/bin/python3 $LVD stop $W/lvd >/dev/null 2>&1 || true; rm -rf $W' EXIT

mk_rootfs() {
    mkdir -p "$1/bin" "$1/proc" "$1/sys" "$1/dev" "$1/tmp" "$1/old"
    cp /bin/busybox "$1/bin/"
    for a in sh sleep echo mount umount; do ln -sf busybox "$1/bin/$a"; done
    # init: say it is up, then ignore SIGTERM (pid 1 without a handler does anyway)
    printf 'trap "" TERM\necho > /up\nexec sleep 100000\n' > "$1/init.sh"
}
mk_rootfs $W/rootfs-rvirt
mk_rootfs $W/rootfs-libvirt
mk_rootfs $W/rootfs-hand

# rvirt: rvirtd serving lxc:///system under its own --root
mkdir -p $W/rvirt/etc/rvirt
echo 'uris = ["lxc:///system"]' > $W/rvirt/etc/rvirt/rvirtd.toml
RVIRT_PLUGIN_PATH=$BIN RUST_LOG=warn $BIN/rvirtd --root $W/rvirt 2>$W/rvirtd.log &
RVIRTD=$!
for _ in $(seq 200); do [ -S $W/rvirt/run/rvirt-sock ] && break; sleep 0.05; done
[ -S $W/rvirt/run/rvirt-sock ] || { cat $W/rvirtd.log; exit 1; }
/usr/bin/python3 $HERE/benches/lxc_bench.py "lxc+unix:///system?socket=$W/rvirt/run/rvirt-sock" \
    $W/rootfs-rvirt bench-rvirt $RUNS

# libvirt 9.0: a private libvirtd with its LXC driver. libvirt_lxc mirrors the host's
# cgroup mounts into the container and fails on this host's hybrid layout (an empty
# cgroup2 at /sys/fs/cgroup/unified beside the v1 controllers: "Unable to create directory
# /sys/fs/cgroup/unified"), so libvirtd runs without that mount, in lvd.py's private
# mount namespace (the host keeps it).
mkdir -p $W/lvd
cat > $W/libvirtd-v1.sh <<'EOF2'
#!/bin/sh
umount /sys/fs/cgroup/unified 2>/dev/null || true
exec /usr/sbin/libvirtd "$@"
EOF2
chmod +x $W/libvirtd-v1.sh
/usr/bin/python3 $LVD prepare $W/lvd --profile min >/dev/null
LIBVIRTD=$W/libvirtd-v1.sh /usr/bin/python3 $LVD start $W/lvd --no-qemu >/dev/null
/usr/bin/python3 $HERE/benches/lxc_bench.py "lxc+unix:///system?socket=$W/lvd/sock/libvirt-sock" \
    $W/rootfs-libvirt bench-libvirt $RUNS 2>$W/libvirt.err ||
    echo "{\"uri\": \"libvirt lxc:///system\", \"error\": \"$(tail -n1 $W/libvirt.err | tr -d '"')\"}"

# the floor: cgroup + unshare + pivot_root by hand, destroy = SIGKILL to the group
/usr/bin/python3 $HERE/benches/lxc_floor.py $W/rootfs-hand $RUNS

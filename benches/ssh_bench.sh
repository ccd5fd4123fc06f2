#!/bin/sh
# SSH connection plus first call: python-libvirt opens test+ssh://root@127.0.0.1:PORT/default
# through a private sshd (key auth), calls lookupByName and closes (benches/tls_connect.py,
# which times any URI), N times per run, runs interleaved:
#   rvirtd-helper   sshd runs `virt-ssh-helper 'test:///default'`, which is rvirt-ssh-helper
#                   (virsh's default proxy=auto snippet), relaying to rvirtd's socket;
#   rvirtd-nc       the netcat form (`netcat=rvirt-ssh-helper&socket=...`) to rvirtd;
#   libvirtd-nc     the same netcat form to a private Debian libvirtd 9.0 (lvd.py).
# The daemon's CPU (utime+stime) per connection is printed too.
#
# usage: benches/ssh_bench.sh      (as root; needs openssh-server, libvirt-daemon, python3-libvirt)
# env:   RUNS=3 N=30 NO_BUILD=1 NO_LIBVIRTD=1 BENCH_DIR=/work/shared/bench CARGO_TARGET_DIR=...
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/work/shared/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
RUNS=${RUNS:-3}
N=${N:-30}
PORT=${PORT:-26622}
PY=/usr/bin/python3
OUT=$(mktemp -d /tmp/sshbench.XXXXXX)
if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT_DIR" && cargo build --release -p rvirt-daemon --no-default-features -p rvirt-plugin-test)
fi
REL=$TARGET/release
HELPER=$REL/rvirt-ssh-helper

# the private sshd: the helper first in the sessions' PATH, rvirtd's socket directory named
R=$OUT/rvirtd-root
mkdir -p "$OUT/bin" "$R"
ln -s "$HELPER" "$OUT/bin/virt-ssh-helper"
ssh-keygen -q -t ed25519 -N '' -f "$OUT/hostkey"
ssh-keygen -q -t ed25519 -N '' -f "$OUT/clientkey"
cp "$OUT/clientkey.pub" "$OUT/authorized_keys"
cat >"$OUT/sshd_config" <<EOS
Port $PORT
ListenAddress 127.0.0.1
HostKey $OUT/hostkey
PidFile $OUT/sshd.pid
AuthorizedKeysFile $OUT/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
SetEnv PATH=$OUT/bin:/usr/bin:/bin RVIRT_SOCKET_DIR=$R/run
EOS
printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cat "$OUT/hostkey.pub")" >"$OUT/known_hosts"
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$OUT/sshd_config" 2>"$OUT/sshd.log" &
SPID=$!

RUST_LOG=warn RVIRT_PLUGIN_PATH="$REL" "$REL/rvirtd" --root "$R" 2>"$OUT/rvirtd.log" &
RPID=$!
if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
    L=$OUT/lvd
    $PY "$BENCH_DIR/lvd.py" prepare "$L" >/dev/null
    $PY "$BENCH_DIR/lvd.py" start "$L" --no-qemu >/dev/null
fi
sleep 1
# libvirt's client gives ssh no known_hosts file: a one-line wrapper (command=) points ssh
# at the bench's own, so the host key is checked and root's ~/.ssh is left alone
printf '#!/bin/sh\nexec ssh -o UserKnownHostsFile=%s "$@"\n' "$OUT/known_hosts" >"$OUT/ssh"
chmod +x "$OUT/ssh"
BASE="test+ssh://root@127.0.0.1:$PORT/default?keyfile=$OUT/clientkey&command=$OUT/ssh"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # NAME URI PID
    before=$(ticks "$3")
    res=$($PY "$ROOT_DIR/benches/tls_connect.py" "$2" "$N")
    after=$(ticks "$3")
    cpu=$(echo "$before $after $N" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($2-$1)*1000/hz/$3}')
    echo "$1 $res daemon_cpu_ms_per_conn=$cpu"
}
i=0
while [ "$i" -lt "$RUNS" ]; do
    run rvirtd-helper "$BASE" "$RPID"
    run rvirtd-nc "$BASE&netcat=$HELPER&socket=$R/run/rvirt-sock" "$RPID"
    if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
        run libvirtd-nc "$BASE&netcat=$HELPER&socket=$L/sock/libvirt-sock" "$(cat "$L/libvirtd.pid")"
    fi
    i=$((i + 1))
done
kill "$RPID" "$SPID"
[ "${NO_LIBVIRTD:-0}" = 1 ] || $PY "$BENCH_DIR/lvd.py" stop "$L" >/dev/null
wait 2>/dev/null || true
rm -rf "$OUT"

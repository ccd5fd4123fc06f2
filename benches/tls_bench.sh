#!/bin/sh
# TLS handshake plus first call: rvirtd against Debian's libvirtd, same PKI, same client
# (python-libvirt, benches/tls_connect.py: open over test+tls with client certificates,
# lookupByName, close), runs interleaved.
#
# usage: benches/tls_bench.sh      (as root; needs openssl, libvirt-daemon, python3-libvirt)
# env:   RUNS=3 N=100 NO_BUILD=1 NO_LIBVIRTD=1 BENCH_DIR=/work/shared/bench CARGO_TARGET_DIR=...
set -eu
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/work/shared/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
RUNS=${RUNS:-3}
N=${N:-100}
PY=/usr/bin/python3
OUT=$(mktemp -d /tmp/tlsbench.XXXXXX)
if [ "${NO_BUILD:-0}" != 1 ]; then
    # (the policy feature is off: the TLS path does not touch it, and wasmtime builds long)
    (cd "$ROOT_DIR" && cargo build --release -p rvirt-daemon --no-default-features -p rvirt-plugin-test)
fi
RVIRTD="$TARGET/release/rvirtd"

# the PKI: CA, server for 127.0.0.1, one client (P-256, as the daemon tests make it)
P=$OUT/pki
mkdir -p "$P/client"
cd "$P"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout cakey.pem -out cacert.pem \
    -days 2 -subj "/CN=bench CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout serverkey.pem -out server.csr \
    -subj "/O=rvirt/CN=localhost" 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n" >s.ext
openssl x509 -req -in server.csr -CA cacert.pem -CAkey cakey.pem -CAcreateserial -out servercert.pem -days 2 -extfile s.ext 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client/clientkey.pem -out client.csr \
    -subj "/C=GB/ST=London/L=London/O=Libvirt Project/CN=client" 2>/dev/null
printf "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n" >c.ext
openssl x509 -req -in client.csr -CA cacert.pem -CAkey cakey.pem -CAcreateserial -out client/clientcert.pem -days 2 -extfile c.ext 2>/dev/null
cp cacert.pem client/
cd "$ROOT_DIR"
TLS_CONF="listen_addr = \"127.0.0.1\"
ca_file = \"$P/cacert.pem\"
cert_file = \"$P/servercert.pem\"
key_file = \"$P/serverkey.pem\"
tls_allowed_dn_list = [\"C=GB,ST=London,L=London,O=Libvirt Project,CN=client\"]"

R=$OUT/rvirtd-root
mkdir -p "$R/etc/rvirt"
printf 'listen_tls = 1\ntls_port = "26614"\n%s\n' "$TLS_CONF" >"$R/etc/rvirt/rvirtd.toml"
RUST_LOG=warn RVIRT_PLUGIN_PATH="$TARGET/release" "$RVIRTD" --root "$R" 2>"$OUT/rvirtd.log" &
RPID=$!

if [ "${NO_LIBVIRTD:-0}" != 1 ]; then
    L=$OUT/lvd
    $PY "$BENCH_DIR/lvd.py" prepare "$L" >/dev/null
    printf 'listen_tls = 1\nlisten_tcp = 0\ntls_port = "26714"\n%s\n' "$TLS_CONF" >>"$L/libvirtd.conf"
    printf '#!/bin/sh\nexec /usr/sbin/libvirtd --listen "$@"\n' >"$OUT/libvirtd-listen"
    chmod +x "$OUT/libvirtd-listen"
    LIBVIRTD="$OUT/libvirtd-listen" $PY "$BENCH_DIR/lvd.py" start "$L" --no-qemu >/dev/null
fi
sleep 1
# the daemon's own CPU time (utime+stime, clock ticks) per connection
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
one() { # label pid port
    t0=$(ticks "$2")
    r=$($PY "$ROOT_DIR/benches/tls_connect.py" "test+tls://127.0.0.1:$3/default?pkipath=$P/client" "$N")
    t1=$(ticks "$2")
    echo "run $i $1 $r daemon_cpu_ms_per_conn=$(echo "($t1 - $t0) * 1000 / $HZ / $N" | bc -l | cut -c1-5)"
}
[ "${NO_LIBVIRTD:-0}" = 1 ] || LPID=$(cat "$L/libvirtd.pid")
for i in $(seq "$RUNS"); do
    one rvirtd "$RPID" 26614
    [ "${NO_LIBVIRTD:-0}" = 1 ] || one libvirtd "$LPID" 26714
done
kill "$RPID"
[ "${NO_LIBVIRTD:-0}" = 1 ] || $PY "$BENCH_DIR/lvd.py" stop "$L" >/dev/null
echo "results and logs in $OUT" >&2

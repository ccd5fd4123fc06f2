#!/usr/bin/env bash
# Builds golibvirt (a client of the remote protocol on DigitalOcean's pure-Go go-libvirt)
# from main.go beside this script into OUT_DIR/golibvirt, offline in GOPATH mode from
# Debian's packages (golang-go, golang-github-digitalocean-go-libvirt-dev); does nothing
# when OUT_DIR/golibvirt is newer than main.go. rvirtd's tests (host/daemon/tests/it/
# golibvirt.rs) build the same way into target/golibvirt.
set -euo pipefail
out=${1:?usage: build.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
if [ -x "$out/golibvirt" ] && [ "$out/golibvirt" -nt "$here/main.go" ]; then
    echo "$out/golibvirt"
    exit 0
fi
[ -d /usr/share/gocode/src/github.com/digitalocean/go-libvirt ] || {
    echo "build.sh: go-libvirt's sources are missing: apt-get install golang-github-digitalocean-go-libvirt-dev" >&2
    exit 1
}
command -v go >/dev/null || { echo "build.sh: go is missing: apt-get install golang-go" >&2; exit 1; }
mkdir -p "$out/gopath/src/rvirt-golibvirt"
cp "$here/main.go" "$out/gopath/src/rvirt-golibvirt/main.go"
GO111MODULE=off GOPATH="$out/gopath:/usr/share/gocode" GOCACHE="$out/gocache" \
    go build -o "$out/golibvirt.tmp.$$" rvirt-golibvirt
mv "$out/golibvirt.tmp.$$" "$out/golibvirt"
echo "$out/golibvirt"

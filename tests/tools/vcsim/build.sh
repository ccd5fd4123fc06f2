#!/usr/bin/env bash
# Builds vcsim (govmomi's vSphere API simulator) from main.go beside this script into
# OUT_DIR/vcsim, offline in GOPATH mode from Debian's packages (golang-go,
# golang-github-vmware-govmomi-dev); does nothing when OUT_DIR/vcsim is newer than main.go.
# The esx plugin's tests (plugins/esx/tests/it.rs) build the same way into target/vcsim.
set -euo pipefail
out=${1:?usage: build.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
if [ -x "$out/vcsim" ] && [ "$out/vcsim" -nt "$here/main.go" ]; then
    echo "$out/vcsim"
    exit 0
fi
[ -d /usr/share/gocode/src/github.com/vmware/govmomi/simulator ] || {
    echo "build.sh: govmomi's sources are missing: apt-get install golang-github-vmware-govmomi-dev" >&2
    exit 1
}
command -v go >/dev/null || { echo "build.sh: go is missing: apt-get install golang-go" >&2; exit 1; }
mkdir -p "$out/gopath/src/rvirt-vcsim"
cp "$here/main.go" "$out/gopath/src/rvirt-vcsim/main.go"
GO111MODULE=off GOPATH="$out/gopath:/usr/share/gocode" GOCACHE="$out/gocache" \
    go build -o "$out/vcsim.tmp.$$" rvirt-vcsim
mv "$out/vcsim.tmp.$$" "$out/vcsim"
echo "$out/vcsim"

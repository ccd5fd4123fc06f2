#!/usr/bin/env bash
# Builds Debian packages per component with dpkg-deb, so an operator installs only what
# they need:
#   rvirt                 the CLI, with bash/zsh completions and man pages
#   rvirtd                the daemon, with its systemd service and socket units
#   rvirt-plugin-NAME     one per plugin (into /usr/lib/rvirt/plugins)
#   rvirt-sdk-tools       rvirt-tck (conformance kit) and rvirt-registry (packages)
#
# usage: packaging/build-debs.sh [OUT_DIR] (default target/debian)
#   PROFILE=debug|release (default release); BUILD=0 uses what is already built.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${1:-target/debian}
profile=${PROFILE:-release}
target=${CARGO_TARGET_DIR:-target}
if [ "${BUILD:-1}" = 1 ]; then
    if [ "$profile" = release ]; then cargo build --release --workspace; else cargo build --workspace; fi
fi
bin=$target/$profile
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
maintainer="rvirt developers <rvirt@example.invalid>"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# pkg NAME DESCRIPTION DEPENDS: builds $work/NAME into $out/NAME_VERSION_ARCH.deb
pkg() {
    local name=$1 desc=$2 depends=$3 dir=$work/$1
    mkdir -p "$dir/DEBIAN"
    {
        echo "Package: $name"
        echo "Version: $version"
        echo "Architecture: $arch"
        echo "Maintainer: $maintainer"
        [ -n "$depends" ] && echo "Depends: $depends"
        echo "Section: admin"
        echo "Priority: optional"
        echo "Description: $desc"
    } > "$dir/DEBIAN/control"
    dpkg-deb --root-owner-group --build "$dir" "$out/${name}_${version}_${arch}.deb" >/dev/null
    echo "$out/${name}_${version}_${arch}.deb"
}

# rvirt: the CLI, completions and man pages generated from its clap definition.
d=$work/rvirt
install -D -m 0755 "$bin/rvirt" "$d/usr/bin/rvirt"
"$bin/rvirt" generate-assets "$work/assets"
install -D -m 0644 "$work/assets/completions/rvirt.bash" "$d/usr/share/bash-completion/completions/rvirt"
install -D -m 0644 "$work/assets/completions/_rvirt" "$d/usr/share/zsh/vendor-completions/_rvirt"
mkdir -p "$d/usr/share/man/man1"
for m in "$work"/assets/man/*.1; do
    case $(basename "$m") in *-help*) continue ;; esac
    gzip -9n < "$m" > "$d/usr/share/man/man1/$(basename "$m").gz"
done
pkg rvirt "rvirt command-line client (virsh-compatible commands)" ""

# rvirtd: the daemon and its unit. Plugins come in their own packages.
d=$work/rvirtd
install -D -m 0755 "$bin/rvirtd" "$d/usr/sbin/rvirtd"
# the far end of qemu+ssh:// (virsh runs `virt-ssh-helper URI` on the host it reaches):
# linked as /usr/bin/virt-ssh-helper only where libvirt's (libvirt-daemon) is absent,
# and unlinked on removal only while it is still our link
install -D -m 0755 "$bin/rvirt-ssh-helper" "$d/usr/bin/rvirt-ssh-helper"
mkdir -p "$d/DEBIAN"
cat > "$d/DEBIAN/postinst" <<'EOS'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ ! -e /usr/bin/virt-ssh-helper ] && [ ! -L /usr/bin/virt-ssh-helper ]; then
    ln -s rvirt-ssh-helper /usr/bin/virt-ssh-helper
fi
EOS
cat > "$d/DEBIAN/prerm" <<'EOS'
#!/bin/sh
set -e
if [ -L /usr/bin/virt-ssh-helper ] && [ "$(readlink /usr/bin/virt-ssh-helper)" = rvirt-ssh-helper ]; then
    rm -f /usr/bin/virt-ssh-helper
fi
EOS
chmod 0755 "$d/DEBIAN/postinst" "$d/DEBIAN/prerm"
for unit in rvirtd.service rvirtd.socket rvirtd-ro.socket; do
    install -D -m 0644 "packaging/systemd/$unit" "$d/lib/systemd/system/$unit"
done
mkdir -p "$d/usr/lib/rvirt/plugins" "$d/var/lib/rvirt/plugins"
pkg rvirtd "rvirt daemon serving libvirt's remote protocol; install the rvirt-plugin-* packages of the backends you need" ""

# One package per plugin.
for so in "$bin"/librvirt_plugin_*.so "$bin"/librvirt_storage_*.so "$bin"/librvirt_network_*.so; do
    [ -f "$so" ] || continue
    file=$(basename "$so")
    short=${file#lib}; short=${short%.so}; short=${short#rvirt_plugin_}; short=${short#rvirt_}
    name=rvirt-plugin-${short//_/-}
    d=$work/$name
    install -D -m 0644 "$so" "$d/usr/lib/rvirt/plugins/$file"
    # The LXC driver runs a controller per container; the plugin finds it next to itself.
    if [ "$short" = lxc ]; then
        install -D -m 0755 "$bin/rvirt-lxc-controller" "$d/usr/lib/rvirt/plugins/rvirt-lxc-controller"
    fi
    pkg "$name" "rvirt plugin $short ($file)" "rvirtd (= $version) | rvirt (= $version)"
done

# Tools for vendors.
d=$work/rvirt-sdk-tools
install -D -m 0755 "$bin/rvirt-tck" "$d/usr/bin/rvirt-tck"
install -D -m 0755 "$bin/rvirt-registry" "$d/usr/bin/rvirt-registry"
pkg rvirt-sdk-tools "rvirt plugin conformance kit (rvirt-tck) and package tool (rvirt-registry)" ""

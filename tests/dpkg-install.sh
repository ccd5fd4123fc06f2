#!/usr/bin/env bash
# Installs rvirt's Debian packages into THIS machine with dpkg and checks them as an
# operator would, then removes every package it installed (always, through a trap):
#
#   1. packaging/build-debs.sh builds the packages from what `cargo build --workspace`
#      already built (BUILD=0; PROFILE=debug unless set);
#   2. `dpkg -i` of rvirtd, rvirt-plugin-qemu and rvirt only (not the test plugin): the
#      units, completions and man pages are in place; /usr/sbin/rvirtd under a temporary
#      --root serves qemu:///system to the real virsh (plugins from /usr/lib/rvirt/plugins)
#      and answers test:///default with "no installed plugin serves 'test://'";
#      `rvirt plugin served` names the qemu plugin;
#   3. `dpkg -r rvirt-plugin-qemu` removes only that backend: rvirtd is still there and
#      qemu:///system now fails the same way;
#   4. everything installed is removed (purged) and nothing is left behind.
#
# It refuses to run (and fails) when any rvirt package or file is already on the machine:
# those belong to someone else. Needs root, dpkg and virsh (libvirt-clients).
# RVIRT_ALLOW_SKIP=1 turns "cannot run" into a loud skip.
set -euo pipefail
cd "$(dirname "$0")/.."

cannot_run() {
    echo "!!!!! tests/dpkg-install.sh DID NOT RUN: $*" >&2
    if [ "${RVIRT_ALLOW_SKIP:-}" = 1 ]; then
        echo "(RVIRT_ALLOW_SKIP=1)" >&2
        exit 0
    fi
    echo "(set RVIRT_ALLOW_SKIP=1 to skip)" >&2
    exit 1
}
fail() {
    echo "!!!!! tests/dpkg-install.sh FAILED: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || cannot_run "it installs packages with dpkg -i and needs root"
for tool in dpkg dpkg-deb virsh; do
    command -v "$tool" >/dev/null || cannot_run "$tool is not installed (apt-get install -y libvirt-clients)"
done

profile=${PROFILE:-debug}
target=${CARGO_TARGET_DIR:-target}
bin=$target/$profile
for f in rvirt rvirtd rvirt-ssh-helper librvirt_plugin_qemu.so; do
    [ -f "$bin/$f" ] || fail "$bin/$f is missing: run \`cargo build --workspace\` first"
done

# Someone else's rvirt: never touch it.
others=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 'rvirt*' 2>/dev/null |
    awk '$1 != "un" { print $2 }' || true)
[ -z "$others" ] || cannot_run "rvirt packages are already installed on this machine ($(echo $others)); this test installs and removes its own and will not touch them"
for p in /usr/sbin/rvirtd /usr/bin/rvirt /usr/lib/rvirt /var/lib/rvirt /lib/systemd/system/rvirtd.service; do
    [ ! -e "$p" ] || cannot_run "$p already exists on this machine (not from a package); this test will not overwrite it"
done

work=$(mktemp -d /tmp/rvirt-dpkg.XXXXXX)
installed=()
daemon=
stop_daemon() {
    if [ -n "$daemon" ]; then
        kill -TERM "$daemon" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
        daemon=
    fi
}
cleanup() {
    local rc=$?
    stop_daemon
    if [ ${#installed[@]} -gt 0 ]; then
        dpkg --purge "${installed[@]}" >/dev/null || {
            echo "!!!!! could not purge ${installed[*]}: remove them by hand" >&2
            rc=1
        }
    fi
    rm -rf "$work"
    for p in /usr/sbin/rvirtd /usr/bin/rvirt /usr/lib/rvirt /var/lib/rvirt /lib/systemd/system/rvirtd.service; do
        if [ -e "$p" ]; then
            echo "!!!!! $p was left behind" >&2
            rc=1
        fi
    done
    [ $rc = 0 ] && echo "tests/dpkg-install.sh: ok" || echo "tests/dpkg-install.sh: FAILED" >&2
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Packages from the existing build.
PROFILE=$profile BUILD=0 packaging/build-debs.sh "$work/debs" >/dev/null
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
deb() { echo "$work/debs/${1}_${version}_${arch}.deb"; }
for p in rvirtd rvirt rvirt-plugin-qemu; do
    [ -f "$(deb $p)" ] || fail "build-debs.sh made no $(basename "$(deb $p)")"
done
deps=$(dpkg-deb -f "$(deb rvirtd)" Depends)
case $deps in *plugin*) fail "the rvirtd package depends on a plugin: $deps" ;; esac

# 2. Install the daemon, one backend and the CLI.
helper_before=$(readlink -f /usr/bin/virt-ssh-helper 2>/dev/null || true)
installed=(rvirtd rvirt-plugin-qemu rvirt)
dpkg -i "$(deb rvirtd)" "$(deb rvirt-plugin-qemu)" "$(deb rvirt)" >/dev/null ||
    fail "dpkg -i failed"
for f in /usr/sbin/rvirtd /usr/bin/rvirt /usr/bin/rvirt-ssh-helper \
    /usr/lib/rvirt/plugins/librvirt_plugin_qemu.so \
    /lib/systemd/system/rvirtd.service /lib/systemd/system/rvirtd.socket \
    /lib/systemd/system/rvirtd-ro.socket \
    /usr/share/bash-completion/completions/rvirt /usr/share/zsh/vendor-completions/_rvirt \
    /usr/share/man/man1/rvirt.1.gz; do
    [ -f "$f" ] || fail "$f is not installed"
done
[ ! -e /usr/lib/rvirt/plugins/librvirt_plugin_test.so ] || fail "the test plugin was installed"
# virt-ssh-helper: libvirt's stays libvirt's; without it, ours is linked in its place
if [ -n "$helper_before" ]; then
    [ "$(readlink -f /usr/bin/virt-ssh-helper)" = "$helper_before" ] ||
        fail "installing rvirtd replaced libvirt's /usr/bin/virt-ssh-helper"
else
    [ "$(readlink /usr/bin/virt-ssh-helper)" = rvirt-ssh-helper ] ||
        fail "/usr/bin/virt-ssh-helper is not linked to rvirt-ssh-helper"
fi
grep -q 'complete' /usr/share/bash-completion/completions/rvirt || fail "the bash completion is empty"
grep -q '#compdef rvirt' /usr/share/zsh/vendor-completions/_rvirt || fail "the zsh completion is not one"

root=$work/root
sock=$root/run/rvirt-sock
start_daemon() {
    # the installed daemon, finding its plugins where the packages put them
    env -u RVIRT_PLUGIN_PATH RUST_LOG=warn /usr/sbin/rvirtd --root "$root" \
        </dev/null 2>>"$work/rvirtd.log" &
    daemon=$!
    for _ in $(seq 100); do [ -S "$sock" ] && return; sleep 0.1; done
    cat "$work/rvirtd.log" >&2
    fail "rvirtd did not create $sock"
}
# expect_no_plugin SCHEME URI: the daemon names the missing backend
expect_no_plugin() {
    local out
    if out=$(virsh -c "$2+unix:///${3}?socket=$sock" list --all 2>&1); then
        fail "$2 was served without its plugin: $out"
    fi
    case $out in
        *"no installed plugin serves '$1://'"*) ;;
        *) fail "unexpected error for $2: $out" ;;
    esac
}

start_daemon
out=$(virsh -c "qemu+unix:///system?socket=$sock" list --all 2>&1) ||
    fail "virsh list --all on qemu:///system failed: $out"
expect_no_plugin test test default
out=$(/usr/bin/rvirt plugin served --root "$root") || fail "rvirt plugin served: $out"
echo "$out" | grep -q '^ *qemu:// .*qemu.*/usr/lib/rvirt/plugins/librvirt_plugin_qemu.so' ||
    fail "rvirt plugin served does not name the installed qemu plugin: $out"

# 3. Remove the backend only.
stop_daemon
dpkg -r rvirt-plugin-qemu >/dev/null || fail "dpkg -r rvirt-plugin-qemu failed"
[ ! -e /usr/lib/rvirt/plugins/librvirt_plugin_qemu.so ] || fail "the qemu plugin is still there"
[ -x /usr/sbin/rvirtd ] || fail "removing the plugin removed rvirtd"
start_daemon
expect_no_plugin qemu qemu system
stop_daemon

# 4. Remove everything (the trap purges and checks nothing is left).
dpkg --purge rvirtd rvirt >/dev/null || fail "dpkg --purge failed"
installed=()
[ "$(readlink -f /usr/bin/virt-ssh-helper 2>/dev/null || true)" = "$helper_before" ] ||
    fail "/usr/bin/virt-ssh-helper changed after the purge"
left=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 'rvirt*' 2>/dev/null |
    awk '$1 != "un" { print $2 }' || true)
[ -z "$left" ] || fail "packages left after purge: $left"

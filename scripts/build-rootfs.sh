#!/usr/bin/env bash
# Build (or reuse) the cached rootfs of a test machine: a booted Debian under systemd-nspawn
# with podman, crun and a venv holding autoupdated's runtime dependencies. Two platforms:
#   bookworm (default)  Debian 12: podman 4.3, systemd 252, Python 3.11
#   trixie              Debian 13: podman 5.4 with Quadlet, systemd 257, Python 3.13
#
# Prints the tarball's path as the last line of stdout. The tarball is keyed by a hash of this
# script, the suite and the project's dependency list, so an unchanged recipe costs well under a
# second and a changed one rebuilds (about 3 minutes). Each suite's tarball is cached beside the
# other's. Run as root.
#
#   scripts/build-rootfs.sh [SUITE]          build if needed, print the path
#   scripts/build-rootfs.sh --path [SUITE]   print the path it would have, build nothing
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO/scripts/build-rootfs.sh"
CACHE=${AUTOUPDATED_TEST_CACHE:-/var/cache/autoupdated-tests}
PATH_ONLY=0
SUITE=bookworm
for arg in "$@"; do
    case $arg in
        --path) PATH_ONLY=1 ;;
        bookworm | trixie) SUITE=$arg ;;
        *) printf '[build-rootfs] unknown argument %s (want --path, bookworm or trixie)\n' "$arg" >&2; exit 2 ;;
    esac
done
# Keep in step with docs/SANDBOX facts: the machine's podman needs exactly this.
MACHINE_CONTAINERS_CONF='[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
default_sysctls = []
cgroups = "disabled"
netns = "host"
keyring = false
[engine]
runtime = "crun"
'

log() { printf '[build-rootfs] %s\n' "$*" >&2; }

pick_python() {
    local py
    for py in "$REPO/.venv/bin/python" python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import tomllib' 2>/dev/null; then
            echo "$py"; return 0
        fi
    done
    log "no python >= 3.11 found"; return 1
}
PY=$(pick_python)

# The runtime dependencies, one a line, sorted: part of the cache key and what the venv gets.
DEPS=$("$PY" - "$REPO/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
print("\n".join(sorted(deps)))
EOF
)
KEY=$({ cat "$SELF"; printf '%s\n' "$SUITE" "$DEPS"; } | sha256sum | cut -c1-16)
TARBALL="$CACHE/rootfs-$SUITE-$KEY.tar.zst"

if ((PATH_ONLY)); then echo "$TARBALL"; exit 0; fi
if [[ -s "$TARBALL" ]]; then echo "$TARBALL"; exit 0; fi
if [[ $(id -u) -ne 0 ]]; then log "must run as root to build $TARBALL"; exit 1; fi

mkdir -p "$CACHE"
exec 9>"$CACHE/build.lock"
flock 9   # another build of the same recipe may be running (parallel runs share the cache)
if [[ -s "$TARBALL" ]]; then echo "$TARBALL"; exit 0; fi

# Partial leftovers of interrupted builds (under the lock, so no build owns them); a build killed
# before its trap ran leaves its chroot mounts: never rm through them.
for dir in "$CACHE"/build.*/; do
    [[ -d "$dir" ]] || continue
    awk -v p="$(realpath "$dir")/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r |
        while read -r mnt; do umount "$mnt" 2>/dev/null || umount -l "$mnt"; done
    if grep -q " $(realpath "$dir")/" /proc/self/mounts; then log "leftover $dir is still mounted"; exit 1; fi
    rm -rf "$dir"
done
rm -f "$CACHE"/*.tar.zst.part
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
ROOT="$WORK/rootfs"
MOUNTS=()

unmount_all() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true
    done
    MOUNTS=()
}
cleanup() {
    unmount_all
    # Never rm through a mount that is still there.
    if ! grep -q " $WORK/" /proc/self/mounts; then rm -rf "$WORK"; fi
    rm -f "$TARBALL.part"
}
trap cleanup EXIT

# The host's Debian mirror (deb822 or one-line sources), not the security archive.
debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$f" |
            grep -E '/debian/?$' | grep -v security | head -n1 || true)
        if [[ -n "$uri" ]]; then echo "$uri"; return; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) {print $i; break}}' "$f" |
            grep -E '/debian/?$' | grep -v security | head -n1 || true)
        if [[ -n "$uri" ]]; then echo "$uri"; return; fi
    done
    echo "http://deb.debian.org/debian"
}
MIRROR=$(debian_mirror)
SECURITY=${MIRROR%/debian}/debian-security
SECURITY=${SECURITY%/}
if ! grep -rqs "debian-security" /etc/apt/sources.list /etc/apt/sources.list.d/; then SECURITY=""; fi

retry() {   # retry once after a pause: the mirror sometimes drops a connection
    "$@" && return 0
    log "failed, retrying once: $*"
    sleep 5
    "$@"
}

# What differs between the suites. Debian 13: podman 5 with Quadlet, passt for rootless networks,
# uidmap and a user D-Bus for rootless units; its Python (3.13) differs from the host's, so pip
# downloads wheels for that version and platform.
INCLUDE=systemd,systemd-sysv,dbus,python3,python3-venv,python3-pip,busybox-static,ca-certificates
case $SUITE in
    bookworm)
        PACKAGES=(podman crun runc containernetworking-plugins catatonit)
        PIP_TARGET=()
        ;;
    trixie)
        INCLUDE+=,curl,procps
        PACKAGES=(podman crun passt uidmap dbus-user-session systemd-container catatonit)
        PIP_TARGET=(--python-version 3.13 --implementation cp --platform manylinux2014_x86_64
            --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
        ;;
esac

START=$(date +%s)
log "debootstrap $SUITE from $MIRROR into $ROOT"
do_debootstrap() {
    rm -rf "$ROOT"
    debootstrap --variant=minbase \
        --include="$INCLUDE" \
        "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
        tail -n 30 "$WORK/debootstrap.log" >&2
        tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2 2>/dev/null || true
        return 1
    }
}
retry do_debootstrap

log "apt sources and chroot mounts"
{
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    if [[ -n "$SECURITY" ]]; then echo "deb $SECURITY $SUITE-security main"; fi
} >"$ROOT/etc/apt/sources.list"
rm -f "$ROOT"/etc/apt/sources.list.d/*
cat >"$ROOT/etc/apt/apt.conf.d/99autoupdated-tests" <<'EOF'
// Snapshot mirrors may serve Release files past their Valid-Until.
Acquire::Check-Valid-Until "false";
Acquire::Retries "3";
APT::Install-Recommends "false";
EOF
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"   # no daemons start in the chroot
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
for m in proc sys dev dev/pts; do
    case $m in
        proc) mount -t proc proc "$ROOT/proc" ;;
        sys) mount -t sysfs sysfs "$ROOT/sys" ;;
        dev) mount --bind /dev "$ROOT/dev" ;;
        dev/pts) mount -t devpts devpts "$ROOT/dev/pts" ;;
    esac
    MOUNTS+=("$ROOT/$m")
done

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

log "apt-get install ${PACKAGES[*]}"
retry in_root apt-get update -q >"$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; exit 1; }
retry in_root apt-get install -y -q "${PACKAGES[@]}" \
    >>"$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; exit 1; }

log "venv /opt/autoupdated with: $(echo "$DEPS" | tr '\n' ' ')"
# Wheels come through the host's pip (its index settings and certificates); the chroot only
# installs them offline (its pip lacks the host's CA settings). Bookworm has the host's CPython
# (3.11); for trixie's 3.13 pip is told the target version and platform.
mapfile -t DEP_ARRAY <<<"$DEPS"
retry "$PY" -m pip download -q --only-binary=:all: "${PIP_TARGET[@]}" -d "$ROOT/tmp/wheels" "${DEP_ARRAY[@]}" \
    >"$WORK/pip.log" 2>&1 || { tail -n 30 "$WORK/pip.log" >&2; exit 1; }
in_root python3 -m venv /opt/autoupdated
in_root /opt/autoupdated/bin/pip install -q --no-index --find-links /tmp/wheels "${DEP_ARRAY[@]}"
in_root /opt/autoupdated/bin/python -c 'import podman, jeepney, httpx, apscheduler, pydantic_settings'
rm -rf "$ROOT/tmp/wheels"

log "machine configuration"
mkdir -p "$ROOT/etc/containers/registries.conf.d" "$ROOT/etc/containers/certs.d"
printf '%s' "$MACHINE_CONTAINERS_CONF" >"$ROOT/etc/containers/containers.conf"
if [[ $SUITE == trixie ]]; then
    # Quadlet's generator passes --cgroups=split, which fails on the machine's read-only
    # cgroups: one type-wide drop-in fixes every .container unit (and rootless ones).
    for d in "$ROOT/etc/containers/systemd/container.d" "$ROOT/etc/containers/systemd/users/container.d"; do
        mkdir -p "$d"
        printf '[Container]\nPodmanArgs=--cgroups=disabled\n' >"$d/10-sandbox.conf"
    done
    # podman 5 warns about cgroups v1 on every call here; the warning pollutes captured stderr.
    echo PODMAN_IGNORE_CGROUPSV1_WARNING=1 >>"$ROOT/etc/environment"
    mkdir -p "$ROOT/etc/systemd/system.conf.d" "$ROOT/etc/systemd/user.conf.d"
    printf '[Manager]\nDefaultEnvironment=PODMAN_IGNORE_CGROUPSV1_WARNING=1\n' \
        | tee "$ROOT/etc/systemd/system.conf.d/10-sandbox.conf" >"$ROOT/etc/systemd/user.conf.d/10-sandbox.conf"
    # Not enabled by default on Debian 13; the Debian 12 package enables it.
    in_root systemctl enable podman.socket >/dev/null 2>&1
fi
echo autoupdated-test >"$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 autoupdated-test\n' >"$ROOT/etc/hosts"
# Empty machine-id: systemd makes a fresh one per boot (nspawn hands it a random UUID).
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
# Journal in /run only: nothing to keep across boots, and it is faster.
mkdir -p "$ROOT/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRateLimitBurst=0\n' >"$ROOT/etc/systemd/journald.conf.d/tests.conf"
rm -rf "$ROOT/var/log/journal"
# Nothing periodic of its own may run during tests; no login prompt on the console.
for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
    podman-auto-update.timer console-getty.service getty@tty1.service systemd-networkd-wait-online.service; do
    ln -sf /dev/null "$ROOT/etc/systemd/system/$u"
done
# Debian enables podman-auto-update.service at boot: tests start podman's own run themselves.
rm -f "$ROOT/etc/systemd/system/default.target.wants/podman-auto-update.service"
rm -f "$ROOT/usr/sbin/policy-rc.d"

unmount_all
in_root_clean() { rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
    "$ROOT/debootstrap" "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/*; }
in_root_clean

log "packing $TARBALL"
tar -C "$ROOT" --numeric-owner --xattrs --xattrs-include='*' -cf - . | zstd -q -T0 -3 -o "$TARBALL.part"
mv "$TARBALL.part" "$TARBALL"
# Older recipes' tarballs of this suite are dead weight; the other suite's stay.
find "$CACHE" -maxdepth 1 -name "rootfs-$SUITE-*.tar.zst" ! -name "$(basename "$TARBALL")" -delete
log "built in $(($(date +%s) - START)) s: $(du -h "$TARBALL" | cut -f1)"
echo "$TARBALL"

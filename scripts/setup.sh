#!/usr/bin/env bash
# Everything the tests need on a fresh Debian 12 machine, idempotent and fast when done:
#   1. Debian packages (podman, registry, debootstrap, systemd-nspawn, ...), as root;
#   2. the venv at $REPO/.venv with the project installed editable with its test and bench extras;
#   3. the machine rootfs tarballs for the nspawn tests, Debian 12 and Debian 13
#      (scripts/build-rootfs.sh bookworm|trixie, cached).
# Run as root. Set AUTOUPDATED_SKIP_ROOTFS=1 to skip step 3.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
log() { printf '[setup] %s\n' "$*" >&2; }
START=$(date +%s)

APT_PACKAGES=(
    podman skopeo buildah runc conmon catatonit docker-registry debootstrap systemd-container
    busybox-static apache2-utils openssl zstd tar util-linux ca-certificates python3-venv
)

missing_packages() {
    local p status
    for p in "${APT_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [[ "$status" == "installed" ]] || echo "$p"
    done
}

apt_install() {
    local policy=/usr/sbin/policy-rc.d created=0
    # Package scripts must not start daemons here (docker-registry's would listen on :5000).
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created=1
    fi
    local rc=0
    {
        apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold "$@"
    } || rc=$?
    if ((created)); then rm -f "$policy"; fi
    return $rc
}

if [[ $(id -u) -eq 0 ]]; then
    mapfile -t MISSING < <(missing_packages)
    if ((${#MISSING[@]})); then
        log "installing: ${MISSING[*]}"
        apt_install "${MISSING[@]}" || { log "apt failed, retrying once"; sleep 10; apt_install "${MISSING[@]}"; }
    fi
else
    log "not root: skipping Debian packages and the machine rootfs (the machine tests will skip)"
fi

pick_python() {
    local py
    for py in python3 python3.11 python3.12 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 &&
            "$py" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$py"; return 0
        fi
    done
    log "no Python >= 3.11 with venv found"; return 1
}

VENV="$REPO/.venv"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    PY=$(pick_python)
    log "creating $VENV with $PY"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi
# Reinstall only when the project's metadata changed or the install is gone.
STAMP="$VENV/.autoupdated-setup"
WANT=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]] ||
    ! "$VENV/bin/python" -c 'import autoupdated, pytest, mypy, ruff, matplotlib' 2>/dev/null; then
    log "pip install -e '.[test,bench]'"
    pip_install() { "$VENV/bin/python" -m pip install -q -e "$REPO[test,bench]"; }
    pip_install || { log "pip failed, retrying once"; sleep 5; pip_install; }
    echo "$WANT" >"$STAMP"
fi

if [[ $(id -u) -eq 0 && "${AUTOUPDATED_SKIP_ROOTFS:-}" != 1 ]]; then
    bash "$REPO/scripts/build-rootfs.sh" bookworm >/dev/null
    bash "$REPO/scripts/build-rootfs.sh" trixie >/dev/null
fi
log "ready in $(($(date +%s) - START)) s"

#!/usr/bin/env bash
# The main job: set everything up (as root, fresh Debian 12), then show one real update cycle of
# the daemon in a booted systemd machine: Debian 13 with a Quadlet web.container (AutoUpdate=registry)
# by default, `--platform bookworm` for Debian 12 with podman 4.3. See scripts/demo.py.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
bash scripts/setup.sh
exec "$REPO/.venv/bin/python" scripts/demo.py "$@"

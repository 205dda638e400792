#!/usr/bin/env bash
# The benchmark: podman auto-update vs autoupdated check in the booted test machine.
# Run as root from anywhere; arguments go to `python -m benchmarks.run` (see --help and
# docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec .venv/bin/python -m benchmarks.run "$@"

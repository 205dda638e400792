#!/usr/bin/env bash
# The one test command (README and CI): setup, then ruff, mypy, import-linter and pytest. Every step runs even
# after an earlier one failed, so one run shows all problems; the exit status is non-zero if any
# failed. Extra arguments go to pytest (e.g. scripts/test.sh -k machine -x).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export PYTHONDONTWRITEBYTECODE=1

bash scripts/setup.sh || { echo "[test] setup failed" >&2; exit 1; }
BIN="$REPO/.venv/bin"
failed=()
# What the Debian 13 lane reruns with `--machine-platform=trixie` (seen passing there).
LANE13_TESTS=(tests/machine/test_engine.py tests/machine/test_restarter.py)

step() {
    local name=$1; shift
    local t0=$SECONDS
    echo "[test] == $name"
    if "$@"; then
        echo "[test] == $name passed ($((SECONDS - t0)) s)"
    else
        local rc=$?
        echo "[test] == $name FAILED with exit status $rc ($((SECONDS - t0)) s)"
        failed+=("$name")
    fi
}

step "ruff" "$BIN/ruff" check
step "mypy" "$BIN/mypy"
# The layer contracts in pyproject.toml (docs/ARCHITECTURE.md): arrows point down, no cycles.
step "import-linter" "$BIN/lint-imports"
# pytest's own status: 5 (no tests collected) fails the run too. The bound is a backstop for a
# hung test, well inside CI's 90 minutes.
step "pytest" timeout --kill-after=60 2700 "$BIN/python" -m pytest -ra -p no:cacheprovider "$@"
# The second platform's lane: the `machine` tests that are podman's own auto-update cases and the
# restarter's, again on Debian 13 (podman 5.4, systemd 257). The Debian 13-only tests (Quadlet,
# rootless: tests/machine/test_quadlet.py, test_rootless.py) already ran above on `machine13`.
# Only in a full run (no pytest arguments): a `-k` selection would leave it nothing to collect.
if (($# == 0)) && [[ "${AUTOUPDATED_SKIP_LANE13:-}" != 1 ]]; then
    step "pytest (Debian 13 lane)" timeout --kill-after=60 1800 "$BIN/python" -m pytest -ra -p no:cacheprovider \
        --machine-platform=trixie "${LANE13_TESTS[@]}"
fi

if ((${#failed[@]})); then
    echo "[test] failed: ${failed[*]}"
    exit 1
fi
echo "[test] all steps passed"

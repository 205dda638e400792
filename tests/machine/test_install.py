"""`autoupdated install` after a real `pip install` of the wheel, in the booted machine: the unit,
the example configuration (an edited one left alone) and the journal catalog, so that
`journalctl -x` explains the daemon's entries."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.machine import Machine

pytestmark = pytest.mark.machine

REPO = Path(__file__).resolve().parents[2]
VENV = "/opt/autoupdated"
PATHS = (
    "/etc/systemd/system/autoupdated.service",
    "/etc/autoupdated.toml",
    "/usr/local/lib/systemd/catalog/autoupdated.catalog",
)


def build_wheel(out: Path) -> Path:
    """The wheel `pip install autoupdated` would install, built from the committed tree."""
    src = out / "src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True).stdout
    with tempfile.TemporaryFile() as tmp:
        tmp.write(archive)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            tar.extractall(src, filter="data")
    pip = Path(shutil.which("pip") or "pip")
    python = REPO / ".venv/bin/python" if (REPO / ".venv/bin/python").exists() else Path("/work/main/.venv/bin/python")
    del pip
    subprocess.run(
        [str(python), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        check=True,
    )
    return next(out.glob("autoupdated-*.whl"))


@pytest.fixture
def pip_installed(machine: Machine, tmp_path: Path) -> Iterator[Machine]:
    wheel = build_wheel(tmp_path)
    inside = f"/root/{wheel.name}"
    shutil.copy(wheel, machine.host_path(inside))
    # Into the machine's venv, which holds the dependencies (offline: no index); removed afterwards.
    machine.run(f"{VENV}/bin/python", "-m", "pip", "install", "-q", "--no-index", "--no-deps", inside)
    try:
        yield machine
    finally:
        machine.systemctl("stop", "autoupdated", check=False, timeout=120)
        machine.systemctl("reset-failed", "autoupdated", check=False)
        machine.run(f"{VENV}/bin/python", "-m", "pip", "uninstall", "-q", "-y", "autoupdated", check=False)
        machine.run("rm", "-rf", inside, *PATHS, "/var/lib/autoupdated")
        machine.run("journalctl", "--update-catalog", check=False)
        machine.systemctl("daemon-reload")


def test_install_puts_unit_config_and_catalog_in_place_and_journalctl_x_explains_entries(
    pip_installed: Machine,
) -> None:
    m = pip_installed
    dry = m.run(f"{VENV}/bin/autoupdated", "install", "--dry-run")
    assert "would write" in dry.stdout and "would run: journalctl --update-catalog" in dry.stdout
    assert m.run("test", "-e", PATHS[0], check=False).returncode == 1, "--dry-run writes nothing"

    first = m.run(f"{VENV}/bin/autoupdated", "install")
    print(first.stdout)
    for path in PATHS:
        assert f"{path} (written)" in first.stdout
    assert "ran: systemctl daemon-reload" in first.stdout
    assert f"ExecStart={VENV}/bin/autoupdated run" in m.read(PATHS[0])

    edited = m.read(PATHS[1]) + '\nschedule = "weekly"\n'
    m.write(PATHS[1], edited)
    again = m.run(f"{VENV}/bin/autoupdated", "install")
    assert f"{PATHS[1]} (exists, left alone)" in again.stdout
    assert m.read(PATHS[1]) == edited, "an edited configuration is never overwritten"

    m.systemctl("start", "autoupdated", timeout=120)
    m.systemctl("reload", "autoupdated", timeout=60)
    explained = m.run("journalctl", "-x", "-u", "autoupdated", "--no-pager", "-o", "short").stdout
    print(explained)
    assert "Subject: autoupdated: configuration reloaded" in explained
    assert 'The configuration file /etc/autoupdated.toml was read: "reloaded".' in explained
    assert "A message of the autoupdated daemon itself" in explained
    listed = m.run("journalctl", "--list-catalog", "--no-pager").stdout
    assert "c4e6a8b0d2f44e1a9c3e5a7b9d1f3a14" in listed

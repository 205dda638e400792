"""The daemon installed in the booted machine: a wheel of the working tree, its unit, its journal.

Shared by the machine tests and scripts/demo.py.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import time
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

from autoupdated.adapters import journal
from tests.harness.images import run_forever
from tests.harness.machine import Machine

REPO = Path(__file__).resolve().parents[2]
UNIT = "autoupdated.service"
CONFIG = "/etc/autoupdated.toml"
STATE = "/var/lib/autoupdated"
DROPIN_DIR = f"/etc/systemd/system/{UNIT}.d"
BASE_CONFIG = 'randomized_delay = 0\ninclude_containers = ["aud-*"]\n'
# A container whose stop takes 3 s, so a unit restart is still under way when we stop the daemon.
SLOW_STOP = run_forever(stop_seconds=3)
counter = itertools.count()


# -- installing ---------------------------------------------------------------------------------


def build_wheel(repo: Path, out_dir: Path) -> Path:
    """A pure-Python wheel of the working tree, made with the standard library only (no network,
    no `wheel` package): what `pip wheel .` would produce for this project."""
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    dist_info = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {}
    for path in sorted((repo / name).rglob("*.py")):
        files[path.relative_to(repo).as_posix()] = path.read_bytes()
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    files[f"{dist_info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: autoupdated-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    scripts = "".join(f"{key} = {value}\n" for key, value in project.get("scripts", {}).items())
    files[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{scripts}".encode()
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def install(m: Machine) -> None:
    """pip-install the package into /opt/autoupdated, link the command, install the unit."""
    wheel = build_wheel(REPO, m.root / "var" / "tmp" / "autoupdated-wheel")
    inside = f"/var/tmp/autoupdated-wheel/{wheel.name}"
    try:
        m.run(
            "/opt/autoupdated/bin/pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--force-reinstall",
            "--disable-pip-version-check",
            inside,
        )
    finally:
        m.run("rm", "-rf", "/var/tmp/autoupdated-wheel")
    m.run("ln", "-sf", "/opt/autoupdated/bin/autoupdated", "/usr/local/bin/autoupdated")
    m.write(f"/etc/systemd/system/{UNIT}", (REPO / "systemd" / "autoupdated.service").read_text())
    m.systemctl("daemon-reload")


def uninstall(m: Machine) -> None:
    m.systemctl("disable", "--now", UNIT, check=False, timeout=180)
    m.systemctl("reset-failed", UNIT, check=False)
    m.run("rm", "-rf", f"/etc/systemd/system/{UNIT}", DROPIN_DIR, CONFIG, STATE, "/usr/local/bin/autoupdated")
    m.run("/opt/autoupdated/bin/pip", "uninstall", "-q", "-y", "autoupdated", check=False)
    m.systemctl("daemon-reload")


class Daemon:
    """The installed service in one machine, and what it wrote to the journal since `since`."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        # The previous test's daemon (stopped before this one is made) may have written its last
        # run record in this same second: entries are kept from this microsecond on.
        self.since = time.time()

    def configure(self, text: str) -> None:
        self.m.write(CONFIG, BASE_CONFIG + text)

    def dropin(self, text: str) -> None:
        self.m.write(f"{DROPIN_DIR}/50-test.conf", text)
        self.m.systemctl("daemon-reload")

    def start(self) -> None:
        self.m.systemctl("enable", "--now", UNIT)
        self.m.wait_active(UNIT)

    def prop(self, name: str) -> str:
        return self.m.unit_property(UNIT, name)

    def entries(self, *match: str) -> list[dict[str, str]]:
        return self.m.journal(*match, unit=UNIT, since=self.since)

    def runs(self) -> list[dict[str, str]]:
        return self.entries(f"MESSAGE_ID={journal.MESSAGE_ID_RUN}")

    def wait(self, what: str, find: Callable[[], object], timeout: float = 60) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = find()
            if found:
                return found
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}\n{self.m.unit_report(UNIT)}")

    def wait_run(self, predicate: Callable[[dict[str, str]], bool], what: str, timeout: float = 60) -> dict[str, str]:
        found = self.wait(what, lambda: [r for r in self.runs() if predicate(r)], timeout)
        assert isinstance(found, list)
        first: dict[str, str] = found[0]
        return first


def labelled_service(m: Machine, push: Callable[[str], str], name: str, **kw: object) -> tuple[str, str]:
    """A container `name` on a freshly pushed image, labelled for registry updates, run by its unit."""
    ref = push(name)
    m.podman("pull", "-q", ref)
    unit = m.create_service(name, ref, policy="registry", **kw)  # type: ignore[arg-type]
    return ref, unit


def image_of(m: Machine, name: str) -> str:
    """The container's image ID, or "" while it does not exist (its unit is restarting)."""
    r = m.podman("inspect", "--format", "{{.Image}}", name, check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def running(m: Machine, name: str) -> bool:
    r = m.podman("inspect", "--format", "{{.State.Status}}", name, check=False)
    return r.returncode == 0 and r.stdout.strip() == "running"

"""pytest fixtures for the real components: the booted machine, test images, host podman.

- `machine` (session): one booted machine for the whole session, of the platform
  `--machine-platform` names: Debian 13 `trixie` (podman 5.4, systemd 257, Python 3.13, the
  default: the platform users have) or Debian 12 `bookworm` (podman 4.3, systemd 252: the
  compatibility lane).
- `machine_platform` (session): that platform's name, for tests that boot machines of their own.
- `machine_services` (function): the same machine; every unit, container, pod and image a
  test made is removed after it.
- `machine13` (session): a Debian 13 machine for the tests that need one (Quadlet, rootless).
  It is `machine` itself when that is Debian 13, so the default run boots one machine; only the
  Debian 12 lane boots a second.
- `image_builder` (session): builds busybox test images offline and pushes them.
- `podman_service` (session): `unix://...` URL of a host `podman system service` over an
  isolated store; `podman_host` (session) is the `PodmanService` object itself.

The machine needs root and systemd-nspawn. Without them it is skipped with the reason, except
under CI (CI=true), where a missing prerequisite is a failure, not a silent skip.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import procs
from tests.harness.images import ImageBuilder
from tests.harness.machine import PLATFORMS, Machine, reap_stale_machines, rootfs_tarball
from tests.harness.podman_host import PodmanService

_SUMMARY: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--machine-platform", choices=PLATFORMS, default="trixie",
        help="the platform the `machine` fixture boots (default trixie; the Debian 13-only tests use"
        " `machine13`, which is that same machine on trixie and a second one otherwise)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # A run ended by SIGTERM (CI's timeout, a developer's kill) still stops what it started.
    procs.install_signal_handlers()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Boot timings at the end of the run, so slow machine setup shows in CI logs."""
    for line in _SUMMARY:
        terminalreporter.write_line(f"[harness] {line}")


def _missing(tools: tuple[str, ...]) -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    absent = [t for t in tools if shutil.which(t) is None]
    if absent:
        return f"needs {', '.join(absent)} (run scripts/setup.sh)"
    return None


def _require(tools: tuple[str, ...], what: str) -> None:
    reason = _missing(tools)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} {reason}; CI must run these tests", pytrace=False)
    pytest.skip(f"{what} {reason}")


def _boot(platform: str) -> Machine:
    _require(("systemd-nspawn", "nsenter", "zstd", "tar"), "the systemd-nspawn machine")
    reaped = reap_stale_machines()
    if reaped:
        _SUMMARY.append(f"reaped machines left by dead test runs: {', '.join(reaped)}")
    t0 = time.monotonic()
    tarball = rootfs_tarball(platform=platform)
    recipe = time.monotonic() - t0
    m = Machine.boot(tarball, platform=platform)
    _SUMMARY.append(
        f"machine {m.name} ({platform}): rootfs ready in {recipe:.1f}s, extracted in "
        f"{m.times.extract:.1f}s, booted in {m.times.boot:.1f}s"
        + (f"; failed units at boot: {', '.join(m.failed_units)}" if m.failed_units else "")
    )
    return m


def _platform(config: pytest.Config) -> str:
    return str(config.getoption("--machine-platform"))


@pytest.fixture(scope="session")
def machine_platform(request: pytest.FixtureRequest) -> str:
    """The platform of this run (`--machine-platform`): what `machine` boots, and what a test
    that boots a machine of its own (reboots, faults) must boot too."""
    return _platform(request.config)


@pytest.fixture(scope="session")
def machine(request: pytest.FixtureRequest) -> Iterator[Machine]:
    """Debian 13 unless `--machine-platform` says otherwise (the Debian 12 lane)."""
    m = _boot(_platform(request.config))
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="session")
def machine13(request: pytest.FixtureRequest) -> Iterator[Machine]:
    """Debian 13: podman 5.4 with Quadlet, systemd 257, Python 3.13.

    The Quadlet and rootless tests need nothing `machine` lacks (no extra capability, the same
    read-only cgroups with the rootfs's `--cgroups=disabled` drop-in), so on a Debian 13 run they
    share it instead of paying for a second boot and a second set of images; each test cleans up
    what it made. `podman kube play` does need more (CAP_NET_ADMIN, writable cgroups), which the
    shared machine deliberately lacks: tests of it boot their own.
    """
    if _platform(request.config) == "trixie":
        yield request.getfixturevalue("machine")
        return
    m = _boot("trixie")
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def machine_services(machine: Machine) -> Iterator[Machine]:
    """The session machine, cleaned of this test's services, containers and images afterwards."""
    try:
        yield machine
    finally:
        machine.cleanup_services()


@pytest.fixture(scope="session")
def image_builder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageBuilder]:
    _require(("podman",), "building test images")
    builder = ImageBuilder(tmp_path_factory.mktemp("images"))
    procs.on_exit(builder.destroy)
    try:
        yield builder
    finally:
        procs.forget_exit(builder.destroy)
        builder.destroy()


@pytest.fixture(scope="session")
def podman_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanService]:
    _require(("podman",), "the host podman service")
    base: Path = tmp_path_factory.mktemp("podman")
    with PodmanService(base) as svc:
        yield svc


@pytest.fixture(scope="session")
def podman_service(podman_host: PodmanService) -> str:
    """URL of the host podman REST API (``unix:///...``)."""
    return podman_host.url

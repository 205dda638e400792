"""Rootless on Debian 13: a lingering user's Quadlet units in ~/.config/containers/systemd/,
`autoupdated check` run as that user (its podman socket, its session bus), side by side with
that user's `podman auto-update`."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator

import pytest

from tests.harness.daemon import REPO, UNIT, install, uninstall
from tests.harness.images import ImageBuilder
from tests.harness.machine import VENV_PYTHON, Machine
from tests.harness.quadlet import Quadlet, User, add_user
from tests.harness.registry import Registry

pytestmark = [pytest.mark.machine, pytest.mark.debian13]

ROW_KEYS = ("Unit", "ContainerName", "Policy", "Updated")
_counter = itertools.count()


def rows(stdout: str) -> list[dict[str, str]]:
    return sorted(({k: str(r[k]) for k in ROW_KEYS} for r in json.loads(stdout or "[]")),
                  key=lambda r: r["ContainerName"])


@pytest.fixture(scope="module")
def user(machine13: Machine) -> Iterator[User]:
    u = add_user(machine13, "alice")
    q = Quadlet(machine13, user=u)
    q.systemctl("enable", "--now", "podman.socket")
    try:
        yield u
    finally:
        machine13.run("loginctl", "disable-linger", u.name, check=False)
        machine13.run("loginctl", "terminate-user", u.name, check=False)
        machine13.run("userdel", "-r", "-f", u.name, check=False, timeout=60)


@pytest.fixture
def rootless(machine13: Machine, user: User, registry: Registry) -> Iterator[Quadlet]:
    machine13.trust_registry(registry.host_port, insecure=True)
    q = Quadlet(machine13, user=user)
    try:
        yield q
    finally:
        q.cleanup()


def push(builder: ImageBuilder, registry: Registry, name: str) -> str:
    ref = f"{registry.host_port}/{name}:latest"
    builder.push(builder.build("good", f"{name}-{next(_counter)}"), ref)
    return ref


def autoupdated(q: Quadlet, *args: str) -> tuple[int, list[dict[str, str]], str]:
    r = q.run(VENV_PYTHON, "-m", "autoupdated", "check", "--format", "json", *args, check=False, timeout=300,
              env={"PYTHONPATH": "/src", "PYTHONDONTWRITEBYTECODE": "1"})
    return r.returncode, rows(r.stdout), r.stderr


def podman_auto_update(q: Quadlet, *args: str) -> tuple[int, list[dict[str, str]], str]:
    r = q.podman("auto-update", "--format", "json", *args, check=False, timeout=300)
    return r.returncode, rows(r.stdout), r.stderr


def test_a_rootless_quadlet_unit_is_checked_and_updated_as_its_user_like_podman(
    rootless: Quadlet, registry: Registry, image_builder: ImageBuilder
) -> None:
    q = rootless
    ref = push(image_builder, registry, "rootless-web")
    q.podman("pull", "-q", ref)
    unit = q.container("rweb", ref, AutoUpdate="registry")
    q.start(unit)
    old = q.podman("inspect", "--format", "{{.Image}}", "systemd-rweb").stdout.strip()
    push(image_builder, registry, "rootless-web")

    p_code, p_rows, p_err = podman_auto_update(q, "--dry-run")
    a_code, a_rows, a_err = autoupdated(q, "--dry-run")
    print("rootless podman :", p_rows)
    print("rootless autoupd:", a_rows)
    assert (p_code, a_code) == (0, 0), (p_err, a_err)
    assert a_rows == p_rows == [{"Unit": "rweb.service", "ContainerName": "systemd-rweb", "Policy": "registry",
                                 "Updated": "pending"}]

    a_code, a_rows, a_err = autoupdated(q)
    assert a_code == 0, a_err
    assert [r["Updated"] for r in a_rows] == ["true"]
    q.wait_active(unit)
    new = q.podman("inspect", "--format", "{{.Image}}", "systemd-rweb").stdout.strip()
    assert new != old
    # The root's podman saw nothing of it: the user's own store and systemd did the work.
    assert q.machine.podman("ps", "-q", "--filter", "name=systemd-rweb").stdout.strip() == ""


def test_the_daemon_as_a_user_service_updates_the_users_quadlet_unit(
    rootless: Quadlet, registry: Registry, image_builder: ImageBuilder
) -> None:
    """systemd/user/autoupdated.service as shipped, in the lingering user's manager (only
    ExecStart= pointed at the machine's install), on a fast schedule."""
    q, m = rootless, rootless.machine
    assert q.user is not None
    home = q.user.home
    ref = push(image_builder, registry, "rootless-daemon")
    q.podman("pull", "-q", ref)
    unit = q.container("rdaemon", ref, AutoUpdate="registry")
    q.start(unit)
    old = q.podman("inspect", "--format", "{{.Image}}", "systemd-rdaemon").stdout.strip()
    push(image_builder, registry, "rootless-daemon")

    install(m)
    user_units = f"{home}/.config/systemd/user"
    files = [f"{user_units}/{UNIT}", f"{user_units}/{UNIT}.d/10-test.conf",
             f"{home}/.config/autoupdated/autoupdated.toml"]
    m.write(files[0], (REPO / "systemd" / "user" / UNIT).read_text())
    m.write(files[1], "[Service]\nExecStart=\nExecStart=/usr/local/bin/autoupdated run\n")
    m.write(files[2], 'randomized_delay = 0\nschedule = "every 3s"\n')
    m.run("chown", "-R", f"{q.user.uid}:{q.user.uid}", f"{home}/.config")
    try:
        q.systemctl("daemon-reload")
        q.systemctl("enable", "--now", UNIT, timeout=60)
        deadline = time.monotonic() + 90
        new = old
        while time.monotonic() < deadline and new == old:
            time.sleep(1)
            r = q.podman("inspect", "--format", "{{.Image}}", "systemd-rdaemon", check=False)
            new = r.stdout.strip() if r.returncode == 0 else old
        assert new != old, q.report(UNIT)
        assert q.systemctl("is-active", UNIT, check=False).stdout.strip() == "active", q.report(UNIT)
        q.wait_active(unit)
    finally:
        q.systemctl("disable", "--now", UNIT, check=False, timeout=120)
        m.run("rm", "-rf", *files, f"{user_units}/{UNIT}.d")
        q.systemctl("daemon-reload", check=False)
        uninstall(m)

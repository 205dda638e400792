"""The errors a user can hit in an auto-update run, side by side with podman 5.4's own texts.

For each broken setup, `podman auto-update` and `autoupdated check` run on the same Quadlet units
in the same Debian 13 machine; the test compares exit status, report rows and the `Error:` lines.
Where our text says more (what to do), it still holds podman's text (the part scripts grep for)
as it is; where it cannot, the test says why and asserts both. (The invalid-policy text, equal in
full, is in test_quadlet.py.)

One conscious difference for every scenario: podman joins several errors into one
`Error: N errors occurred:` block (hashicorp/multierror); autoupdated prints one `Error:` line per
error, so each can be grepped on its own. Each scenario here has one error, so the lines compare
as they are.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.images import RUN_FOREVER, ImageBuilder
from tests.harness.machine import Machine
from tests.harness.quadlet import Quadlet, report_rows
from tests.harness.registry import Registry
from tests.harness.registry_fixtures import AUTH_PASSWORD, AUTH_USER

pytestmark = [pytest.mark.machine, pytest.mark.debian13]

_counter = itertools.count()


@dataclass
class Outcome:
    code: int
    rows: list[dict[str, str]]
    errors: list[str]   # the `Error:` lines, prefix removed
    stderr: str


def _outcome(code: int, stdout: str, stderr: str) -> Outcome:
    rows = report_rows(stdout)
    errors = [ln.removeprefix("Error: ") for ln in stderr.splitlines() if ln.startswith("Error: ")]
    return Outcome(code, rows, errors, stderr)


@dataclass
class Env:
    machine: Machine
    registry: Registry
    builder: ImageBuilder
    quadlet: Quadlet

    def push(self, registry: Registry, name: str, variant: str = "good",
             creds: tuple[str, str] | None = None, **kw: object) -> str:
        ref = f"{registry.host_port}/{name}:latest"
        self.builder.push(self.builder.build(variant, f"{name}-{next(_counter)}"), ref, creds, **kw)  # type: ignore[arg-type]
        return ref

    def unit(self, name: str, ref: str, *, pull: tuple[str, ...] = (), **keys: str) -> tuple[str, str]:
        """A started Quadlet unit for `ref`; returns (unit, container ID)."""
        self.machine.podman("pull", "-q", *pull, ref)
        unit = self.quadlet.container(name, ref, **{"AutoUpdate": "registry", **keys})
        self.quadlet.start(unit)
        return unit, self.machine.container_id(f"systemd-{name}")

    def both(self, *args: str) -> tuple[Outcome, Outcome]:
        m = self.machine
        p = m.podman("auto-update", "--format", "json", *args, check=False, timeout=300)
        a = m.autoupdated("check", "--format", "json", *args)
        podman, ours = _outcome(p.returncode, p.stdout, p.stderr), _outcome(a.returncode, a.stdout, a.stderr)
        print("podman     :", podman.code, podman.errors, podman.rows)
        print("autoupdated:", ours.code, ours.errors, ours.rows)
        return podman, ours


@pytest.fixture(scope="module")
def registry(machine13: Machine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("errtexts") / "registry").start()
    machine13.trust_registry(reg.host_port, insecure=True)
    machine13.systemctl("stop", "podman.service", check=False)
    try:
        yield reg
    finally:
        machine13.untrust_registry(reg.host_port)
        reg.stop()


@pytest.fixture
def env(machine13: Machine, registry: Registry, image_builder: ImageBuilder) -> Iterator[Env]:
    q = Quadlet(machine13)
    try:
        yield Env(machine13, registry, image_builder, q)
    finally:
        q.cleanup()


def _same_report(podman: Outcome, ours: Outcome) -> None:
    assert (podman.code, ours.code) == (125, 125), (podman.stderr, ours.stderr)
    assert ours.rows == podman.rows
    assert len(podman.errors) == len(ours.errors) == 1, (podman.stderr, ours.stderr)


def test_an_image_missing_from_the_registry_manifest_unknown(env: Env) -> None:
    ref = env.push(env.registry, "gone")
    _, cid = env.unit("gone", ref)
    env.registry.delete_tag_target("gone", "latest")
    podman, ours = env.both("--dry-run")
    _same_report(podman, ours)
    expected = (f"checking image updates for container {cid}: reading manifest latest in "
                f"{env.registry.host_port}/gone: manifest unknown")
    assert podman.errors == [expected]
    assert ours.errors[0].startswith(expected), ours.errors


def test_a_registry_that_is_down_connection_refused(env: Env, tmp_path: Path) -> None:
    down = Registry(tmp_path / "down").start()
    env.machine.trust_registry(down.host_port, insecure=True)
    env.machine.systemctl("stop", "podman.service", check=False)
    try:
        host = down.host_port
        ref = env.push(down, "down")
        _, cid = env.unit("down", ref)
        down.stop()
        podman, ours = env.both("--dry-run")
    finally:
        env.machine.untrust_registry(down.host_port)
        down.stop()
    _same_report(podman, ours)
    # Conscious difference: podman's text is Go's `pinging container registry H: Get "http://H/v2/":
    # dial tcp H: connect: connection refused`; we never ping /v2/ (the manifest HEAD is the first
    # request), so ours names that request, keeps "connection refused" and the host, and says what
    # to check.
    prefix = f"checking image updates for container {cid}: "
    assert podman.errors[0].startswith(prefix + f"pinging container registry {host}: ")
    assert podman.errors[0].endswith("connect: connection refused")
    assert ours.errors[0].startswith(prefix + f"connection refused by {host} ")


def test_a_wrong_password_is_refused(env: Env, auth_registry: Registry) -> None:
    m = env.machine
    m.trust_registry(auth_registry.host_port, insecure=True)
    m.systemctl("stop", "podman.service", check=False)
    good = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    bad = base64.b64encode(f"{AUTH_USER}:not-the-password".encode()).decode()
    m.write("/etc/errtexts-auth.json", json.dumps({"auths": {auth_registry.host_port: {"auth": good}}}))
    try:
        ref = env.push(auth_registry, "locked", creds=(AUTH_USER, AUTH_PASSWORD))
        _, cid = env.unit("locked", ref, pull=("--authfile=/etc/errtexts-auth.json",),
                          Label="io.containers.autoupdate.authfile=/etc/errtexts-auth.json")
        m.write("/etc/errtexts-auth.json", json.dumps({"auths": {auth_registry.host_port: {"auth": bad}}}))
        podman, ours = env.both("--dry-run")
    finally:
        m.run("rm", "-f", "/etc/errtexts-auth.json")
        m.untrust_registry(auth_registry.host_port)
    _same_report(podman, ours)
    # podman says the same for refused and for missing credentials; ours starts with it, then
    # says whose credentials were refused and how to log in.
    expected = (f"checking image updates for container {cid}: reading manifest latest in "
                f"{auth_registry.host_port}/locked: authentication required")
    assert podman.errors == [expected]
    assert ours.errors[0].startswith(expected + "; ")
    assert f"refused the credentials of '{AUTH_USER}'" in ours.errors[0]
    assert "not-the-password" not in ours.stderr


def test_an_authfile_label_naming_a_missing_file(env: Env) -> None:
    ref = env.push(env.registry, "noauth")
    env.unit("noauth", ref, Label="io.containers.autoupdate.authfile=/etc/no-such-auth.json")
    podman, ours = env.both("--dry-run")
    # podman (containers/image) reads a missing auth file as empty and checks anonymously,
    # silently; so do we (same rows, same exit status), with a warning that names the file.
    assert (podman.code, ours.code) == (0, 0), (podman.stderr, ours.stderr)
    assert podman.rows == ours.rows == [{"Unit": "noauth.service", "ContainerName": "systemd-noauth",
                                         "Policy": "registry", "Updated": "false"}]
    assert podman.errors == ours.errors == []
    assert podman.stderr.strip() == ""
    warning = [ln for ln in ours.stderr.splitlines() if "/etc/no-such-auth.json" in ln]
    assert len(warning) == 1 and "does not exist" in warning[0] and "as podman does" in warning[0], ours.stderr


def test_a_tls_certificate_the_host_does_not_trust(env: Env, tls_registry: Registry, tmp_path: Path) -> None:
    m = env.machine
    host = tls_registry.host_port
    m.trust_registry(host, insecure=False, ca_pem=tls_registry.ca_pem)
    try:
        ref = env.push(tls_registry, "tls", cert_dir=tls_registry.cert_dir(tmp_path / "certs") / host)
        _, cid = env.unit("tls", ref)
        m.run("rm", "-rf", f"/etc/containers/certs.d/{host}")
        podman, ours = env.both("--dry-run")
    finally:
        m.untrust_registry(host)
    _same_report(podman, ours)
    # Conscious difference: podman's `pinging container registry H: Get "https://H/v2/": tls: failed
    # to verify certificate: x509: certificate signed by unknown authority`. Ours keeps Go's x509
    # text (what people search for) and says where the CA goes.
    prefix = f"checking image updates for container {cid}: "
    assert podman.errors[0].startswith(prefix + f"pinging container registry {host}: ")
    assert podman.errors[0].endswith("x509: certificate signed by unknown authority")
    assert ours.errors[0].startswith(prefix + "x509: certificate signed by unknown authority")
    assert f"/etc/containers/certs.d/{host}/ca.crt" in ours.errors[0]


def test_a_unit_whose_new_image_cannot_start_is_rolled_back_silently_by_both(env: Env) -> None:
    """podman's updateUnit keeps the restart error to itself when the rollback worked: exit 0,
    `rolled back`, no `Error:` line. Ours too."""
    m = env.machine
    ref = env.push(env.registry, "rbt")
    unit, _ = env.unit("rbt", ref)
    outcomes = []
    for run in ("podman", "autoupdated"):
        env.push(env.registry, "rbt", variant="broken")
        if run == "podman":
            p = m.podman("auto-update", "--format", "json", check=False, timeout=300)
        else:
            p = m.autoupdated("check", "--format", "json")
        outcomes.append(_outcome(p.returncode, p.stdout, p.stderr))
        print(f"{run:11}:", outcomes[-1].code, outcomes[-1].errors, outcomes[-1].rows)
        env.quadlet.wait_active(unit)
    podman, ours = outcomes
    assert podman.rows == ours.rows == [{"Unit": unit, "ContainerName": "systemd-rbt", "Policy": "registry",
                                         "Updated": "rolled back"}]
    assert (podman.code, podman.errors) == (ours.code, ours.errors) == (0, [])


def test_a_unit_that_fails_to_restart_without_rollback(env: Env) -> None:
    m = env.machine
    ref = env.push(env.registry, "nrb")
    unit, _ = env.unit("nrb", ref)
    good = m.image_id(ref)
    outcomes = []
    for run in ("podman", "autoupdated"):
        env.push(env.registry, "nrb", variant="broken")
        if run == "podman":
            p = m.podman("auto-update", "--rollback=false", "--format", "json", check=False, timeout=300)
        else:
            p = m.autoupdated("check", "--rollback=false", "--format", "json")
        outcomes.append(_outcome(p.returncode, p.stdout, p.stderr))
        print(f"{run:11}:", outcomes[-1].code, outcomes[-1].errors, outcomes[-1].rows)
        m.podman("tag", good, ref)   # back to the good image for the next run
        env.quadlet.systemctl("reset-failed", unit, check=False)
        env.quadlet.systemctl("restart", unit, check=False)
        env.quadlet.wait_active(unit)
    podman, ours = outcomes
    _same_report(podman, ours)
    expected = (f'restarting unit {unit} during update: error restarting systemd unit "{unit}" expected '
                '"done" but received "failed"')
    assert podman.errors == [expected]
    assert ours.errors[0].startswith(expected), ours.errors


def test_local_policy_whose_image_tag_is_gone(env: Env) -> None:
    m = env.machine
    ref = env.push(env.registry, "loct")
    m.podman("pull", "-q", ref)
    m.podman("tag", ref, "localhost/errtexts-local:latest")
    unit = env.quadlet.container("loct", "localhost/errtexts-local:latest", AutoUpdate="local")
    env.quadlet.start(unit)
    cid = m.container_id("systemd-loct")
    m.podman("untag", "localhost/errtexts-local:latest")
    podman, ours = env.both("--dry-run")
    _same_report(podman, ours)
    expected = f"checking image updates for container {cid}: localhost/errtexts-local:latest: image not known"
    assert podman.errors == [expected]
    # Ours says which lookup failed and relays podman's API answer, which ends in podman's text.
    assert ours.errors[0].startswith(f"checking image updates for container {cid}: ")
    assert ours.errors[0].endswith("localhost/errtexts-local:latest: image not known")


def test_a_container_outside_any_systemd_unit(env: Env) -> None:
    m = env.machine
    ref = env.push(env.registry, "nounit")
    m.podman("run", "-d", "--name", "errtexts-nounit", "--label", "io.containers.autoupdate=registry", ref,
             *RUN_FOREVER)
    try:
        cid = m.container_id("errtexts-nounit")
        podman, ours = env.both("--dry-run")
    finally:
        m.podman("rm", "-f", "-t", "0", "errtexts-nounit", check=False)
    assert (podman.code, ours.code) == (125, 125)
    assert ours.rows == podman.rows == []
    assert podman.errors == [f'auto-updating container "{cid}": no PODMAN_SYSTEMD_UNIT label found']
    assert ours.errors[0].startswith(podman.errors[0] + " "), ours.errors

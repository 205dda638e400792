"""Kubernetes YAML under systemd on Debian 13 (podman 5.4): a Quadlet `.kube` unit and the
`podman-kube@.service` template, checked by `autoupdated check` side by side with podman 5's own
`podman auto-update` in the same machine.

podman turns the pod's annotations into container labels when it plays the YAML (podman 5.4
`pkg/domain/infra/abi/play.go`, `getImageAndLabelInfo`): `io.containers.autoupdate` (pod-wide)
unless `io.containers.autoupdate/<container>` names that container, and the same for
`io.containers.autoupdate.authfile`. Every container of the pod runs in the one unit recorded on
the pod's infra container, so the unit is restarted once for all of them.

`kube play` needs writable cgroup hierarchies and CAP_NET_ADMIN here (SANDBOX.md), so this module
boots its own Debian 13 machine with that capability; pods use `hostNetwork: true`.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness.images import RUN_FOREVER, ImageBuilder
from tests.harness.machine import Machine, MachineError
from tests.harness.quadlet import Quadlet, report_rows, writable_cgroups
from tests.harness.registry import Registry
from tests.harness.registry_fixtures import AUTH_PASSWORD, AUTH_USER

pytestmark = [pytest.mark.machine, pytest.mark.debian13]

AUTHFILE = "/etc/kube-test/auth.json"
_counter = itertools.count()


_rows = report_rows


def _auth_json(user: str, password: str, host: str) -> str:
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": token}}})


@pytest.fixture(scope="module")
def kube_machine() -> Iterator[Machine]:
    """A Debian 13 machine with CAP_NET_ADMIN (crun brings up `lo` in the service container's
    network namespace) and writable cgroups, which `podman kube play` needs here."""
    m = Machine.boot(platform="trixie", capabilities=["CAP_NET_ADMIN"])
    try:
        writable_cgroups(m)
        yield m
    finally:
        m.stop()


@dataclass
class Kube:
    """Four containers in one pod: `web` (pod-wide `registry`), `pinned` (`disabled` for itself),
    `loc` (`local` for itself) and `secret` (pod-wide `registry`, its image on the htpasswd
    registry, with its own authfile annotation)."""

    machine: Machine
    registry: Registry
    auth_registry: Registry
    builder: ImageBuilder
    pod: str
    made: list[str] = field(default_factory=list)

    def ref(self, name: str) -> str:
        host = self.auth_registry.host_port if name == "secret" else self.registry.host_port
        return f"{host}/{self.pod}-{name}:latest"

    def push(self, name: str) -> None:
        creds = (AUTH_USER, AUTH_PASSWORD) if name == "secret" else None
        self.builder.push(self.builder.build("good", f"{self.pod}-{name}-{next(_counter)}"), self.ref(name), creds)

    def pull(self, name: str) -> None:
        extra = [f"--authfile={AUTHFILE}"] if name == "secret" else []
        self.machine.podman("pull", "-q", *extra, self.ref(name))

    def yaml(self) -> str:
        containers = [
            {"name": name, "image": self.ref(name), "imagePullPolicy": "IfNotPresent", "command": RUN_FOREVER}
            for name in ("web", "pinned", "loc", "secret")
        ]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.pod,
                "annotations": {
                    "io.containers.autoupdate": "registry",
                    "io.containers.autoupdate/pinned": "disabled",
                    "io.containers.autoupdate/loc": "local",
                    "io.containers.autoupdate.authfile/secret": AUTHFILE,
                },
            },
            "spec": {"hostNetwork": True, "restartPolicy": "Always", "terminationGracePeriodSeconds": 1,
                     "containers": containers},
        }
        return json.dumps(pod, indent=2)   # JSON is YAML

    def container(self, name: str) -> str:
        return f"{self.pod}-{name}"

    def image_of(self, name: str) -> str:
        return self.machine.podman("inspect", "--format", "{{.Image}}", self.container(name)).stdout.strip()

    def label(self, name: str, key: str) -> str | None:
        r = self.machine.podman("inspect", "--format", "{{json .Config.Labels}}", self.container(name))
        labels: dict[str, str] = json.loads(r.stdout) or {}
        return labels.get(key)

    def wait_running(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        names = [self.container(n) for n in ("web", "pinned", "loc", "secret")]
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            for n in names:
                r = self.machine.podman("inspect", "--format", "{{.State.Status}}", n, check=False)
                states[n] = r.stdout.strip() if r.returncode == 0 else "absent"
            if all(s == "running" for s in states.values()):
                return
            time.sleep(0.3)
        raise AssertionError(f"containers of pod {self.pod} not all running after {timeout} s: {states}")

    def podman_auto_update(self, *args: str) -> tuple[int, list[dict[str, str]], str]:
        r = self.machine.podman("auto-update", "--format", "json", *args, check=False, timeout=300)
        return r.returncode, _rows(r.stdout), r.stderr

    def autoupdated(self, *args: str) -> tuple[int, list[dict[str, str]], str]:
        r = self.machine.autoupdated("check", "--format", "json", *args)
        return r.returncode, _rows(r.stdout), r.stderr


def _start_template(m: Machine, yaml_path: str) -> str:
    """`systemctl start podman-kube@$(systemd-escape PATH).service`; returns the unit's name."""
    escaped = m.run("systemd-escape", yaml_path).stdout.strip()
    unit = f"podman-kube@{escaped}.service"
    r = m.systemctl("start", unit, check=False, timeout=120)
    if r.returncode != 0:
        raise MachineError(f"systemctl start {unit} failed: {r.stderr.strip()}\n{m.unit_report(unit)}")
    m.wait_active(unit, timeout=60)
    return unit


@pytest.fixture(scope="module")
def registries(
    kube_machine: Machine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Registry, Registry]]:
    base: Path = tmp_path_factory.mktemp("kube")
    plain = Registry(base / "plain").start()
    auth = Registry(base / "auth", htpasswd={AUTH_USER: AUTH_PASSWORD}).start()
    m = kube_machine
    for reg in (plain, auth):
        m.trust_registry(reg.host_port, insecure=True)
    m.write(AUTHFILE, _auth_json(AUTH_USER, AUTH_PASSWORD, auth.host_port), mode=0o600)
    m.systemctl("stop", "podman.service", check=False)   # it reads registries.conf once
    try:
        yield plain, auth
    finally:
        for reg in (plain, auth):
            m.untrust_registry(reg.host_port)
            reg.stop()


@pytest.mark.parametrize("how", ["quadlet", "template"])
def test_kube_pod_annotations_pod_wide_per_container_and_authfile_as_podman_5_does_them(
    kube_machine: Machine, registries: tuple[Registry, Registry], image_builder: ImageBuilder, how: str
) -> None:
    m = kube_machine
    plain, auth = registries
    kube = Kube(m, plain, auth, image_builder, pod=f"k{how[:4]}")
    quadlet = Quadlet(m)
    unit = ""
    try:
        for name in ("web", "pinned", "loc", "secret"):
            kube.push(name)
            kube.pull(name)
        if how == "quadlet":
            unit = quadlet.kube(kube.pod, kube.yaml())
            quadlet.start(unit, timeout=120)
        else:
            path = f"/etc/kube-test/{kube.pod}.yaml"
            m.write(path, kube.yaml())
            unit = _start_template(m, path)
        kube.wait_running()
        # podman's mapping of the annotations, as the containers carry it.
        assert [kube.label(n, "io.containers.autoupdate") for n in ("web", "pinned", "loc", "secret")] == [
            "registry", "disabled", "local", "registry"]
        assert kube.label("secret", "io.containers.autoupdate.authfile") == AUTHFILE
        assert kube.label("web", "io.containers.autoupdate.authfile") is None

        for name in ("web", "pinned", "secret"):
            kube.push(name)

        auth.mark()
        p_code, p_rows, p_err = kube.podman_auto_update("--dry-run")
        podman_asked = auth.requests()
        auth.mark()
        a_code, a_rows, a_err = kube.autoupdated("--dry-run")
        ours_asked = auth.requests()
        print(f"{how}: podman  --dry-run:", p_rows)
        print(f"{how}: autoupd --dry-run:", a_rows)
        assert (p_code, a_code) == (0, 0), (p_err, a_err)
        expected = [
            {"Unit": unit, "ContainerName": kube.container("loc"), "Policy": "local", "Updated": "false"},
            {"Unit": unit, "ContainerName": kube.container("secret"), "Policy": "registry", "Updated": "pending"},
            {"Unit": unit, "ContainerName": kube.container("web"), "Policy": "registry", "Updated": "pending"},
        ]
        assert p_rows == expected, p_err
        assert a_rows == p_rows
        # The authfile container was checked with its credentials: the htpasswd registry answered
        # the manifest request with 200, to podman and to us.
        manifest = f"/v2/{kube.pod}-secret/manifests/latest"
        for who, asked in (("podman", podman_asked), ("autoupdated", ours_asked)):
            print(f"{how}: {who} asked the htpasswd registry:", [(r.method, r.path, r.status) for r in asked])
            assert any(r.path == manifest and r.status == 200 for r in asked), (who, asked)

        # Without the credentials in that file, the same check is unauthorized for both.
        m.write(AUTHFILE, json.dumps({"auths": {}}), mode=0o600)
        try:
            p_code, p_rows, p_err = kube.podman_auto_update("--dry-run")
            a_code, a_rows, a_err = kube.autoupdated("--dry-run")
        finally:
            m.write(AUTHFILE, _auth_json(AUTH_USER, AUTH_PASSWORD, auth.host_port), mode=0o600)
        print(f"{how}: podman anonymous:", p_code, p_err.strip())
        print(f"{how}: autoupd anonymous:", a_code, a_err.strip())
        assert (p_code, a_code) == (125, 125)
        # podman: "reading manifest latest in HOST/REPO: authentication required"; ours keeps that
        # text and adds what to do (tests/machine/test_error_texts.py compares them in full).
        podmans = f"reading manifest latest in {auth.host_port}/{kube.pod}-secret: authentication required"
        assert podmans in p_err and podmans in a_err, (p_err, a_err)
        assert a_rows == p_rows
        assert {r["ContainerName"]: r["Updated"] for r in a_rows}[kube.container("secret")] == "failed"
        assert AUTH_PASSWORD not in a_err

        # podman updates first ...
        before = {n: kube.image_of(n) for n in ("web", "pinned", "loc", "secret")}
        p_code, p_rows, p_err = kube.podman_auto_update()
        assert p_code == 0, p_err
        kube.wait_running()
        after = {n: kube.image_of(n) for n in before}
        assert [after[n] != before[n] for n in ("web", "pinned", "loc", "secret")] == [True, False, False, True]

        # ... then, with yet newer images, autoupdated: the same rows, the same containers moved.
        for name in ("web", "pinned", "secret"):
            kube.push(name)
        before = after
        a_code, a_rows, a_err = kube.autoupdated()
        print(f"{how}: podman  update:", p_rows)
        print(f"{how}: autoupd update:", a_rows)
        assert a_code == 0, a_err
        assert a_rows == p_rows
        assert {r["ContainerName"]: r["Updated"] for r in a_rows} == {
            kube.container("web"): "true", kube.container("loc"): "true", kube.container("secret"): "true"}
        kube.wait_running()
        after = {n: kube.image_of(n) for n in before}
        assert [after[n] != before[n] for n in ("web", "pinned", "loc", "secret")] == [True, False, False, True]
        assert m.systemctl("is-active", unit, check=False).stdout.strip() == "active"
    finally:
        if how == "quadlet":
            quadlet.cleanup()
        else:
            if unit:
                m.systemctl("stop", unit, check=False, timeout=120)
                m.systemctl("reset-failed", unit, check=False)
            m.run("rm", "-f", f"/etc/kube-test/{kube.pod}.yaml")
            quadlet.cleanup()

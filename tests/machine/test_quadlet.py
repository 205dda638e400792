"""`autoupdated check` against Quadlet units on Debian 13 (podman 5.4, systemd 257), and side by
side with podman 5's own `podman auto-update` on the same units in the same machine.

Quadlet names: `web.container` → unit `web.service`, container `systemd-web`; `db.pod` → unit
`db-pod.service`, pod `systemd-db`. The images come from a registry on the host's 127.0.0.1.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.images import ImageBuilder
from tests.harness.machine import Machine
from tests.harness.quadlet import Quadlet, report_rows
from tests.harness.registry import Registry
from tests.harness.registry_fixtures import AUTH_PASSWORD, AUTH_USER

pytestmark = [pytest.mark.machine, pytest.mark.debian13]

_counter = itertools.count()


@dataclass
class Env:
    machine: Machine
    registry: Registry
    builder: ImageBuilder

    def ref(self, name: str) -> str:
        return f"{self.registry.host_port}/{name}:latest"

    def push(self, name: str, variant: str = "good", marker: str = "") -> str:
        """A new image (new digest) pushed as REGISTRY/name:latest; returns the reference."""
        local = self.builder.build(variant, f"{marker or name}-{next(_counter)}")
        self.builder.push(local, self.ref(name))
        return self.ref(name)

    def pull(self, name: str) -> None:
        self.machine.podman("pull", "-q", self.ref(name))

    def autoupdated(self, *args: str) -> tuple[int, list[dict[str, str]], str]:
        r = self.machine.autoupdated("check", "--format", "json", *args)
        return r.returncode, _rows(r.stdout), r.stderr

    def podman_auto_update(self, *args: str) -> tuple[int, list[dict[str, str]], str]:
        r = self.machine.podman("auto-update", "--format", "json", *args, check=False, timeout=300)
        return r.returncode, _rows(r.stdout), r.stderr


_rows = report_rows


def image_of(m: Machine, container: str) -> str:
    return m.podman("inspect", "--format", "{{.Image}}", container).stdout.strip()


def started(env: Env, quadlet: Quadlet, name: str) -> tuple[str, str, str]:
    """REGISTRY/name:latest pushed and pulled, `name.container` (AutoUpdate=registry) started:
    (its reference, its unit, the image ID its container runs)."""
    ref = env.push(name)
    env.pull(name)
    unit = quadlet.container(name, ref, AutoUpdate="registry")
    quadlet.start(unit)
    return ref, unit, image_of(env.machine, f"systemd-{name}")


def wait_running(m: Machine, container: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = m.podman("inspect", "--format", "{{.State.Status}}", container, check=False)
        if r.returncode == 0 and r.stdout.strip() == "running":
            return
        time.sleep(0.2)
    raise AssertionError(f"container {container} is not running after {timeout} s")


@pytest.fixture(scope="module")
def env(machine13: Machine, image_builder: ImageBuilder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    registry = Registry(tmp_path_factory.mktemp("quadlet") / "registry").start()
    machine13.trust_registry(registry.host_port, insecure=True)
    machine13.systemctl("stop", "podman.service", check=False)   # it reads registries.conf once
    try:
        yield Env(machine13, registry, image_builder)
    finally:
        machine13.untrust_registry(registry.host_port)
        registry.stop()


@pytest.fixture
def quadlet(env: Env) -> Iterator[Quadlet]:
    q = Quadlet(env.machine)
    try:
        yield q
    finally:
        q.cleanup()


def test_machine_is_debian_13_with_podman_5_and_quadlet(env: Env) -> None:
    m = env.machine
    assert m.podman("version", "--format", "{{.Client.Version}}").stdout.startswith("5.")
    assert m.run("test", "-x", "/usr/libexec/podman/quadlet", check=False).returncode == 0
    assert m.run("/opt/autoupdated/bin/python", "-c", "import sys; print(sys.version_info[:2])").stdout.strip() == (
        "(3, 13)"
    )
    assert m.systemctl("is-enabled", "podman.socket").stdout.strip() == "enabled"


def test_quadlet_container_dry_run_is_pending_then_the_update_is_true(env: Env, quadlet: Quadlet) -> None:
    m = env.machine
    _, _, old = started(env, quadlet, "web")
    env.push("web")

    code, rows, err = env.autoupdated("--dry-run")
    assert code == 0, err
    assert rows == [{"Unit": "web.service", "ContainerName": "systemd-web", "Policy": "registry",
                     "Updated": "pending"}]
    assert image_of(m, "systemd-web") == old

    code, rows, err = env.autoupdated()
    assert code == 0, err
    assert [r["Updated"] for r in rows] == ["true"]
    wait_running(m, "systemd-web")
    assert image_of(m, "systemd-web") != old


def test_quadlet_container_whose_new_image_cannot_start_is_rolled_back(env: Env, quadlet: Quadlet) -> None:
    m = env.machine
    _, unit, old = started(env, quadlet, "rb")
    env.push("rb", variant="broken")

    _, rows, err = env.autoupdated()
    assert [r["Updated"] for r in rows] == ["rolled back"], err
    wait_running(m, "systemd-rb")
    assert image_of(m, "systemd-rb") == old
    assert m.systemctl("is-active", unit, check=False).stdout.strip() == "active"


def test_notify_healthy_with_a_healthcheck_the_new_image_never_passes_is_rolled_back(
    env: Env, quadlet: Quadlet
) -> None:
    m = env.machine
    ref = env.push("hc", marker="healthy")
    env.pull("hc")
    # JSON form: the string form runs through /bin/sh -c (SANDBOX.md).
    unit = quadlet.container(
        "hc", ref, AutoUpdate="registry", Notify="healthy",
        HealthCmd='["/bin/busybox", "grep", "-q", "healthy", "/marker"]',
        HealthInterval="1s", HealthRetries="1", HealthTimeout="2s",
        service={"TimeoutStartSec": "20"},
    )
    quadlet.start(unit, timeout=60)
    old = image_of(m, "systemd-hc")
    env.push("hc", marker="sick")

    _, rows, err = env.autoupdated()
    assert [r["Updated"] for r in rows] == ["rolled back"], err
    wait_running(m, "systemd-hc")
    assert image_of(m, "systemd-hc") == old
    assert m.systemctl("is-active", unit, check=False).stdout.strip() == "active"


def test_invalid_policy_error_is_podmans_own_text(env: Env, quadlet: Quadlet) -> None:
    ref = env.push("badlabel")
    env.pull("badlabel")
    unit = quadlet.container("badlabel", ref, Label="io.containers.autoupdate=fake_x")
    quadlet.start(unit)

    p_code, _, p_err = env.podman_auto_update("--dry-run")
    a_code, _, a_err = env.autoupdated("--dry-run")
    expected = 'Error: invalid auto-update policy "fake_x": valid policies are ["disabled" "image" "local" "registry"]'
    podman_lines = [ln for ln in p_err.splitlines() if ln.startswith("Error:")]
    ours = [ln for ln in a_err.splitlines() if ln.startswith("Error:")]
    assert podman_lines == [expected], p_err
    assert ours == podman_lines, a_err
    assert (a_code, p_code) == (125, 125)


def test_side_by_side_with_podman_5_same_rows_and_same_outcome(env: Env, quadlet: Quadlet) -> None:
    """Three plain `.container` units (registry, local, and an up-to-date one): the same dry-run
    rows from both, then podman updates, then (with yet newer images) autoupdated updates, and
    both report the same rows and leave the units running the new images."""
    m = env.machine
    for name in ("sa", "sb"):
        env.push(name)
        env.pull(name)
    m.podman("tag", env.ref("sa"), "localhost/side-local:latest")
    units = [
        quadlet.container("sa", env.ref("sa"), AutoUpdate="registry"),
        quadlet.container("sb", env.ref("sb"), AutoUpdate="registry"),
        quadlet.container("sl", "localhost/side-local:latest", AutoUpdate="local"),
    ]
    quadlet.start(*units)
    env.push("sa")
    m.podman("pull", "-q", env.ref("sa"))   # a newer image for the local policy as well ...
    m.podman("tag", env.ref("sa"), "localhost/side-local:latest")
    env.push("sa")   # ... and one newer still in the registry

    p_code, p_rows, p_err = env.podman_auto_update("--dry-run")
    a_code, a_rows, a_err = env.autoupdated("--dry-run")
    print("podman  --dry-run:", p_rows)
    print("autoupd --dry-run:", a_rows)
    assert (p_code, a_code) == (0, 0), (p_err, a_err)
    assert a_rows == p_rows
    assert {r["ContainerName"]: r["Updated"] for r in a_rows} == {
        "systemd-sa": "pending", "systemd-sb": "false", "systemd-sl": "pending"}

    before = {c: image_of(m, c) for c in ("systemd-sa", "systemd-sl")}
    p_code, p_rows, p_err = env.podman_auto_update()
    assert p_code == 0, p_err
    for c in before:
        wait_running(m, c)
        assert image_of(m, c) != before[c]

    # The same situation again, for autoupdated this time.
    env.push("sa")
    m.podman("pull", "-q", env.ref("sa"))
    m.podman("tag", env.ref("sa"), "localhost/side-local:latest")
    env.push("sa")
    before = {c: image_of(m, c) for c in ("systemd-sa", "systemd-sl")}
    a_code, a_rows, a_err = env.autoupdated()
    print("podman  update:", p_rows)
    print("autoupd update:", a_rows)
    assert a_code == 0, a_err
    assert a_rows == p_rows
    assert {r["ContainerName"]: r["Updated"] for r in a_rows} == {
        "systemd-sa": "true", "systemd-sb": "false", "systemd-sl": "true"}
    for c in before:
        wait_running(m, c)
        assert image_of(m, c) != before[c]


def test_quadlet_pod_with_two_containers_reports_and_restarts_as_podman_5(env: Env, quadlet: Quadlet) -> None:
    m = env.machine
    for name in ("pa", "pb"):
        env.push(name)
        env.pull(name)
    pod_unit = quadlet.pod("duo")
    a = quadlet.container("pa", env.ref("pa"), AutoUpdate="registry", Pod="duo.pod")
    b = quadlet.container("pb", env.ref("pb"), AutoUpdate="registry", Pod="duo.pod")
    quadlet.start(pod_unit, a, b)
    env.push("pa")

    p_code, p_rows, p_err = env.podman_auto_update("--dry-run")
    a_code, a_rows, a_err = env.autoupdated("--dry-run")
    print("podman  pod --dry-run:", p_rows)
    print("autoupd pod --dry-run:", a_rows)
    assert (p_code, a_code) == (0, 0), (p_err, a_err)
    assert a_rows == p_rows

    def restarts() -> dict[str, str]:
        return {u: m.unit_property(u, "InvocationID") for u in (pod_unit, a, b)}

    before_ids, before = restarts(), image_of(m, "systemd-pa")
    a_code, a_rows, a_err = env.autoupdated()
    assert a_code == 0, a_err
    wait_running(m, "systemd-pa")
    wait_running(m, "systemd-pb")
    assert image_of(m, "systemd-pa") != before
    ours = {u for u, inv in restarts().items() if inv != before_ids[u]}

    env.push("pa")
    before_ids = restarts()
    p_code, p_rows2, p_err = env.podman_auto_update()
    assert p_code == 0, p_err
    wait_running(m, "systemd-pa")
    wait_running(m, "systemd-pb")
    podmans = {u for u, inv in restarts().items() if inv != before_ids[u]}
    print("restarted by autoupdated:", sorted(ours), "by podman:", sorted(podmans))
    assert a_rows == p_rows2
    assert ours == podmans


@pytest.mark.parametrize("dependency", ["Requires", "BindsTo"])
def test_a_dependent_units_restart_cancelled_by_its_dependencys_is_not_a_failed_update(
    env: Env, quadlet: Quadlet, dependency: str
) -> None:
    """`achild` Requires=/BindsTo= `zparent`, both get an update, and their restarts run at once
    (achild's first), so zparent's restart also restarts achild while achild's own job is queued.
    Whether systemd merges achild's job (what systemd 257 was seen to do here) or cancels it
    (parts/restarter.py then joins the replacing job), achild's update is not a failure."""
    m = env.machine
    ref = env.push("dep")
    env.pull("dep")
    parent = quadlet.container("zparent", ref, AutoUpdate="registry", service={"ExecStartPre": "/bin/sleep 1"})
    child = quadlet.container(
        "achild", ref, AutoUpdate="registry",
        unit={dependency: parent, "After": parent}, service={"ExecStartPre": "/bin/sleep 1"},
    )
    quadlet.start(parent, child)
    old = {c: m.container_id(c) for c in ("systemd-zparent", "systemd-achild")}
    env.push("dep")

    code, rows, err = env.autoupdated()
    assert code == 0, err
    assert {r["ContainerName"]: r["Updated"] for r in rows} == {"systemd-achild": "true", "systemd-zparent": "true"}
    for unit, c in ((parent, "systemd-zparent"), (child, "systemd-achild")):
        quadlet.wait_active(unit)
        wait_running(m, c)
        assert m.container_id(c) != old[c]


def test_each_run_is_a_system_auto_update_event_in_podman_events_as_podmans_own(env: Env, quadlet: Quadlet) -> None:
    m = env.machine
    ref = env.push("ev")
    env.pull("ev")
    quadlet.start(quadlet.container("ev", ref, AutoUpdate="registry"))
    since = m.run("date", "+%Y-%m-%dT%H:%M:%S%:z").stdout.strip()
    time.sleep(1)

    def system_events() -> list[dict[str, str]]:
        r = m.podman("events", "--since", since, "--filter", "type=system", "--stream=false", "--format", "json")
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    env.podman_auto_update("--dry-run")
    podmans = system_events()
    assert [(e["Type"], e["Status"]) for e in podmans] == [("system", "auto-update")]
    code, _, err = env.autoupdated("--dry-run")
    assert code == 0, err
    both = system_events()
    print("podman events:", both)
    assert [(e["Type"], e["Status"]) for e in both] == [("system", "auto-update")] * 2
    assert set(both[1]) == set(podmans[0])   # the same keys: podman reads ours as its own


@pytest.fixture
def second_registry(env: Env, tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(tmp_path / "mirror").start()
    env.machine.trust_registry(registry.host_port, insecure=True)
    try:
        yield registry
    finally:
        env.machine.untrust_registry(registry.host_port)
        registry.stop()


def _registries_conf(m: Machine, text: str) -> Iterator[None]:
    path = "/etc/containers/registries.conf.d/60-test-remap.conf"
    m.write(path, text)
    m.systemctl("stop", "podman.service", check=False)   # the service reads registries.conf once
    try:
        yield
    finally:
        m.run("rm", "-f", path)
        m.systemctl("stop", "podman.service", check=False)


def test_a_prefix_remapped_in_registries_conf_is_checked_where_podman_pulls_it_from(
    env: Env, quadlet: Quadlet
) -> None:
    m = env.machine
    conf = (f'[[registry]]\nprefix = "remap.test/team"\nlocation = "{env.registry.host_port}/team"\n'
            "insecure = true\n")
    for _ in _registries_conf(m, conf):
        env.push("team/app")
        m.podman("pull", "-q", "remap.test/team/app:latest")   # remap.test has no address: A serves it
        unit = quadlet.container("remapped", "remap.test/team/app:latest", AutoUpdate="registry")
        quadlet.start(unit)
        old = image_of(m, "systemd-remapped")
        env.push("team/app")

        _, p_rows, p_err = env.podman_auto_update("--dry-run")
        code, a_rows, a_err = env.autoupdated("--dry-run")
        assert code == 0, a_err
        assert a_rows == p_rows == [{"Unit": unit, "ContainerName": "systemd-remapped", "Policy": "registry",
                                     "Updated": "pending"}], (p_err, a_err)
        code, a_rows, a_err = env.autoupdated()
        assert code == 0 and [r["Updated"] for r in a_rows] == ["true"], a_err
        wait_running(m, "systemd-remapped")
        assert image_of(m, "systemd-remapped") != old


def test_a_mirror_is_asked_first_and_its_primary_when_the_mirror_is_down_as_podman_does(
    env: Env, quadlet: Quadlet, second_registry: Registry
) -> None:
    m = env.machine
    primary, mirror = env.registry.host_port, second_registry.host_port
    conf = (f'[[registry]]\nlocation = "{primary}"\ninsecure = true\n'
            f'[[registry.mirror]]\nlocation = "{mirror}"\ninsecure = true\n')
    for _ in _registries_conf(m, conf):
        first = env.builder.build("good", f"mir-{next(_counter)}")
        for host in (primary, mirror):
            env.builder.push(first, f"{host}/mir:latest")
        env.pull("mir")
        unit = quadlet.container("mir", env.ref("mir"), AutoUpdate="registry")
        quadlet.start(unit)
        # A newer image on the mirror only: a pull would get it (the mirror comes first).
        env.builder.push(env.builder.build("good", f"mir-{next(_counter)}"), f"{mirror}/mir:latest")

        _, p_rows, p_err = env.podman_auto_update("--dry-run")
        code, a_rows, a_err = env.autoupdated("--dry-run")
        assert code == 0, a_err
        assert [r["Updated"] for r in p_rows] == ["pending"], p_err
        assert a_rows == p_rows

        second_registry.stop()   # the mirror is down: the primary answers, with the old image
        _, p_rows, p_err = env.podman_auto_update("--dry-run")
        code, a_rows, a_err = env.autoupdated("--dry-run")
        assert code == 0, a_err
        assert [r["Updated"] for r in p_rows] == ["false"], p_err
        assert a_rows == p_rows


def test_credentials_from_a_cred_helper_in_the_auth_file_as_podman_uses_them(
    env: Env, quadlet: Quadlet, auth_registry: Registry
) -> None:
    m = env.machine
    host = auth_registry.host_port
    m.trust_registry(host, insecure=True)
    m.systemctl("stop", "podman.service", check=False)
    # A helper as docker-credential-* helpers are: registry on stdin, JSON on stdout.
    m.write("/usr/local/bin/docker-credential-sbtest",
            "#!/bin/sh\nread -r registry\necho \"$registry\" >> /run/sbtest-asked\n"
            f'printf \'{{"ServerURL": "%s", "Username": "{AUTH_USER}", "Secret": "{AUTH_PASSWORD}"}}\' "$registry"\n',
            mode=0o755)
    m.write("/root/helper-auth.json", json.dumps({"credHelpers": {host: "sbtest"}}))
    ref = f"{host}/helped:latest"
    creds = (AUTH_USER, AUTH_PASSWORD)
    try:
        env.builder.push(env.builder.build("good", f"helped-{next(_counter)}"), ref, creds)
        m.podman("pull", "-q", "--authfile=/root/helper-auth.json", ref)
        unit = quadlet.container("helped", ref, AutoUpdate="registry",
                                 Label="io.containers.autoupdate.authfile=/root/helper-auth.json")
        quadlet.start(unit)
        env.builder.push(env.builder.build("good", f"helped-{next(_counter)}"), ref, creds)

        _, p_rows, p_err = env.podman_auto_update("--dry-run")
        code, a_rows, a_err = env.autoupdated("--dry-run")
        assert code == 0, a_err
        assert [r["Updated"] for r in p_rows] == ["pending"], p_err
        assert a_rows == p_rows
        assert host in m.read("/run/sbtest-asked").split()
        assert AUTH_PASSWORD not in a_err
    finally:
        m.run("rm", "-f", "/usr/local/bin/docker-credential-sbtest", "/root/helper-auth.json", "/run/sbtest-asked")
        m.untrust_registry(host)


def test_credential_helpers_from_registries_conf_as_podman_uses_them_and_creds_store_is_warned_about(
    env: Env, quadlet: Quadlet, auth_registry: Registry
) -> None:
    """registries.conf's `credential-helpers = ["containers-auth.json", "sbconf"]`: the auth files
    have nothing for the registry, so both podman and autoupdated ask the helper, and both are
    let in. root's ~/.docker/config.json names a `credsStore`, which containers/image ignores:
    podman says nothing, autoupdated warns once, naming the file and the key. The helper's answer
    (the password) never shows in our output or the journal."""
    m = env.machine
    host = auth_registry.host_port
    m.trust_registry(host, insecure=True)
    conf = "/etc/containers/registries.conf.d/70-test-helpers.conf"
    m.write("/usr/local/bin/docker-credential-sbconf",
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r registry\necho \"$registry\" >> /run/sbconf-asked\n"
            f'printf \'{{"ServerURL": "%s", "Username": "{AUTH_USER}", "Secret": "{AUTH_PASSWORD}"}}\' "$registry"\n',
            mode=0o755)
    m.write("/root/.docker/config.json", json.dumps({"credsStore": "sbconf", "auths": {}}))
    ref = f"{host}/confhelped:latest"
    creds = (AUTH_USER, AUTH_PASSWORD)
    try:
        env.builder.push(env.builder.build("good", f"confhelped-{next(_counter)}"), ref, creds)
        m.write(conf, 'credential-helpers = ["containers-auth.json", "sbconf"]\n')
        m.systemctl("stop", "podman.service", check=False)   # the service reads registries.conf once
        m.podman("pull", "-q", ref)
        unit = quadlet.container("confhelped", ref, AutoUpdate="registry")
        quadlet.start(unit)
        env.builder.push(env.builder.build("good", f"confhelped-{next(_counter)}"), ref, creds)
        since = m.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
        m.run("rm", "-f", "/run/sbconf-asked")

        auth_registry.mark()
        p_code, p_rows, p_err = env.podman_auto_update("--dry-run")
        podman_asked = auth_registry.requests()
        podman_helper = m.run("cat", "/run/sbconf-asked", check=False).stdout.split()
        m.run("rm", "-f", "/run/sbconf-asked")
        auth_registry.mark()
        a = m.autoupdated("check", "--format", "json", "--dry-run")
        ours_asked = auth_registry.requests()
        ours_helper = m.run("cat", "/run/sbconf-asked", check=False).stdout.split()
        a_rows = _rows(a.stdout)
        print("podman  helper --dry-run:", p_code, p_rows, "helper asked for", podman_helper)
        print("autoupd helper --dry-run:", a.returncode, a_rows, "helper asked for", ours_helper)
        print("autoupd stderr:", a.stderr.strip())
        assert (p_code, a.returncode) == (0, 0), (p_err, a.stderr)
        assert a_rows == p_rows == [{"Unit": unit, "ContainerName": "systemd-confhelped", "Policy": "registry",
                                     "Updated": "pending"}]
        assert podman_helper == ours_helper == [host]
        manifest = "/v2/confhelped/manifests/latest"
        for who, asked in (("podman", podman_asked), ("autoupdated", ours_asked)):
            assert any(r.path == manifest and r.status == 200 for r in asked), (who, asked)
        warnings = [ln for ln in a.stderr.splitlines() if "credsStore" in ln]
        assert len(warnings) == 1 and "/root/.docker/config.json" in warnings[0] and "podman" in warnings[0]
        assert "credsStore" not in p_err
        journal = m.run("journalctl", "--since", since, "--no-pager", "-o", "json").stdout
        for text in (a.stdout, a.stderr, journal):
            assert AUTH_PASSWORD not in text and '"Secret"' not in text

        # Without the helper in registries.conf, both are refused: the helper was what let them in.
        m.run("rm", "-f", conf)
        m.systemctl("stop", "podman.service", check=False)
        p_code, p_rows, p_err = env.podman_auto_update("--dry-run")
        a_code, a_rows, a_err = env.autoupdated("--dry-run")
        assert (p_code, a_code) == (125, 125)
        assert a_rows == p_rows and [r["Updated"] for r in a_rows] == ["failed"]
        assert "authentication required" in p_err and "authentication required" in a_err
    finally:
        m.run("rm", "-f", conf, "/usr/local/bin/docker-credential-sbconf", "/root/.docker/config.json",
              "/run/sbconf-asked")
        m.untrust_registry(host)
        m.systemctl("stop", "podman.service", check=False)


def test_where_autoupdated_deliberately_differs_from_podman_5_a_pinned_digest_and_the_health_gate(
    env: Env, quadlet: Quadlet
) -> None:
    """The two deliberate differences, each tool run on the same units in the same machine.

    A digest-pinned `Image=`: both leave it alone (`false`, nothing pulled); autoupdated also
    says why, once per container, since a pinned image can never follow its tag.

    A new image that starts and crashes a second later (no healthcheck): podman's restart job
    ends `done`, so podman reports `true` and leaves the unit on the crashing image;
    autoupdated's health gate sees the container die within its settle time, rolls back and
    reports `rolled back`, the unit active on the old image."""
    m = env.machine
    # -- a pinned digest -------------------------------------------------------------------
    local = env.builder.build("good", f"pin-{next(_counter)}")
    digest = env.builder.push(local, env.ref("pin"))
    pinned = f"{env.registry.host_port}/pin@{digest}"
    m.podman("pull", "-q", pinned)
    unit = quadlet.container("pin", pinned, AutoUpdate="registry")
    quadlet.start(unit)
    old = image_of(m, "systemd-pin")
    env.push("pin")  # the tag moves on; the pin does not
    p_code, p_rows, p_err = env.podman_auto_update("--dry-run")
    a_code, a_rows, a_err = env.autoupdated("--dry-run")
    assert (p_code, a_code) == (0, 0), (p_err, a_err)
    row = {"Unit": unit, "ContainerName": "systemd-pin", "Policy": "registry", "Updated": "false"}
    assert p_rows == a_rows == [row]
    assert "digest-pinned" not in p_err
    assert a_err.count("digest-pinned") == 1 and pinned in a_err  # the difference: we say why
    assert image_of(m, "systemd-pin") == old
    m.systemctl("stop", unit, check=False)

    # -- a new image that crashes after it started -----------------------------------------
    ref, unit, old = started(env, quadlet, "gate")
    env.push("gate", variant="crash")

    p_code, p_rows, p_err = env.podman_auto_update()
    assert p_code == 0, p_err
    assert [r["Updated"] for r in p_rows] == ["true"], p_err  # podman: the restart job was done
    crashed = m.podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    assert crashed != old

    # back to the old image, as it was before podman's run; the crashing one stays newest
    m.podman("tag", old, ref)
    m.systemctl("reset-failed", unit, check=False)
    m.systemctl("restart", unit, timeout=60)
    wait_running(m, "systemd-gate")
    assert image_of(m, "systemd-gate") == old

    a_code, a_rows, a_err = env.autoupdated()
    assert a_code == 0, a_err
    assert [r["Updated"] for r in a_rows] == ["rolled back"], a_err  # the difference: the gate
    wait_running(m, "systemd-gate")
    assert image_of(m, "systemd-gate") == old
    assert m.systemctl("is-active", unit, check=False).stdout.strip() == "active"

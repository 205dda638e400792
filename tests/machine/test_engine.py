"""`autoupdated check` in a booted systemd machine: podman's 255-auto-update.bats, case by case.

Real systemd (PID 1 in a systemd-nspawn machine), real podman in it, a real
distribution registry on the host's 127.0.0.1, units from `podman generate
systemd --new`.  Each test reads the report the way the bats file does.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.images import ImageBuilder
from tests.harness.machine import Machine
from tests.harness.registry import Registry

pytestmark = pytest.mark.machine

FMT = "{{.Unit}},{{.Image}},{{.Updated}},{{.Policy}}"
USER, PASSWORD = "autoupdater", "Pa55-w0rd-never-logged"
_counter = itertools.count()


class Env:
    """One registry the machine trusts, and the images pushed to it."""

    def __init__(self, machine: Machine, registry: Registry, builder: ImageBuilder) -> None:
        self.machine = machine
        self.registry = registry
        self.builder = builder

    def ref(self, name: str) -> str:
        return f"{self.registry.host_port}/{name}:latest"

    def push(self, name: str, variant: str = "good", creds: tuple[str, str] | None = None) -> str:
        """Build a new image (new digest) and push it as REGISTRY/name:latest."""
        local = self.builder.build(variant, f"{name}-{next(_counter)}")
        return self.builder.push(local, self.ref(name), creds)

    def pull_in_machine(self, name: str, creds: tuple[str, str] | None = None) -> None:
        args = ["pull", "-q"]
        if creds:
            # Through an auth file, not --creds: podman logs its own command line to the journal,
            # and the secret tests search the whole journal.
            _authfile(self.machine, self.registry.host_port, "/root/pull-auth.json", *creds)
            args.append("--authfile=/root/pull-auth.json")
        self.machine.podman(*args, self.ref(name))

    def check(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, list[str], str]:
        proc = self.machine.autoupdated("check", *args, env=env)
        return proc.returncode, proc.stdout.splitlines(), proc.stderr


def wait_for_container(machine: Machine, name: str, timeout: float = 30) -> None:
    """A restarted unit re-creates its container: wait until the new one runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = machine.podman("inspect", "--format", "{{.State.Status}}", name, check=False)
        if r.returncode == 0 and r.stdout.strip() == "running":
            return
        time.sleep(0.2)
    raise AssertionError(f"container {name} is not running after {timeout} s")


def _trusted_env(machine: Machine, builder: ImageBuilder, registry: Registry) -> Iterator[Env]:
    """A started registry the machine's podman trusts (insecure), stopped by PID afterwards."""
    machine.trust_registry(registry.host_port, insecure=True)
    try:
        yield Env(machine, registry, builder)
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def env(machine: Machine, image_builder: ImageBuilder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    registry = Registry(tmp_path_factory.mktemp("engine") / "registry").start()
    yield from _trusted_env(machine, image_builder, registry)


@pytest.fixture(scope="module")
def auth_env(machine: Machine, image_builder: ImageBuilder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    registry = Registry(tmp_path_factory.mktemp("auth") / "registry", htpasswd={USER: PASSWORD}).start()
    yield from _trusted_env(machine, image_builder, registry)


def test_validate_input(env: Env, machine_services: Machine) -> None:
    code, out, err = env.check("extra-arg")
    assert code == 125 and "takes no arguments" in err
    code, out, err = env.check("--authfile=/nonexistent/auth.json")
    assert code == 125
    assert "Error: checking authfile: stat /nonexistent/auth.json: no such file or directory" in err
    # Nothing labelled: no output, exit 0, as podman.
    code, out, err = env.check()
    assert (code, out) == (0, [])


def test_registry_policy_dry_run_update_and_dependent_unit(env: Env, machine_services: Machine) -> None:
    m = machine_services
    env.push("alpine")
    env.pull_in_machine("alpine")
    ref = env.ref("alpine")
    parent = m.create_service("parent", ref, policy="image")
    child = m.create_service("child", ref, policy="image", requires=parent)
    old_image = m.container_image_id("parent")
    old_child = m.container_id("child")

    code, out, _ = env.check("--dry-run", "--format", FMT)
    assert code == 0 and f"{parent},{ref},false,registry" in out

    env.push("alpine")
    code, out, _ = env.check("--dry-run", "--format", FMT)
    assert code == 0 and f"{parent},{ref},pending,registry" in out and f"{child},{ref},pending,registry" in out
    assert m.container_image_id("parent") == old_image

    code, out, err = env.check("--rollback=false", "--format", FMT)
    assert code == 0, err
    assert "Trying to pull" in err
    assert f"{parent},{ref},true,registry" in out and f"{child},{ref},true,registry" in out
    m.wait_active(parent)
    m.wait_active(child)
    assert m.container_image_id("parent") != old_image
    assert m.container_id("child") != old_child, "the unit that Requires= the updated one was not restarted"
    assert m.podman("inspect", "--format", "{{.State.Status}}", "child").stdout.strip() == "running"


def test_rollback_with_broken_image(env: Env, machine_services: Machine) -> None:
    m = machine_services
    env.push("autoupdatebroken")
    env.pull_in_machine("autoupdatebroken")
    ref = env.ref("autoupdatebroken")
    unit = m.create_service("brk", ref, policy="image")
    old_image = m.container_image_id("brk")
    old_id = m.container_id("brk")

    env.push("autoupdatebroken", variant="broken")
    code, out, _ = env.check("--dry-run", "--format", FMT)
    assert f"{unit},{ref},pending,registry" in out

    code, out, err = env.check("--format", FMT)
    assert code == 0, err
    assert f"{unit},{ref},rolled back,registry" in out
    assert "rolling back" in err
    m.wait_active(unit)
    assert m.container_image_id("brk") == old_image, "container not rolled back to the previous image"
    assert m.container_id("brk") != old_id, "container was not re-created during rollback"
    # The raw name points at the old image again, so the next run sees the update as pending, not done.
    code, out, _ = env.check("--dry-run", "--format", FMT)
    assert f"{unit},{ref},pending,registry" in out


def test_disabled_policy_is_ignored(env: Env, machine_services: Machine) -> None:
    m = machine_services
    env.push("disabledimg")
    env.pull_in_machine("disabledimg")
    m.create_service("dis", env.ref("disabledimg"), policy="disabled")
    old = m.container_image_id("dis")
    env.push("disabledimg")
    code, out, _ = env.check()
    assert (code, out) == (0, [])
    assert m.container_image_id("dis") == old


def test_fake_policy_and_multiple_services_with_mixed_policies(env: Env, machine_services: Machine) -> None:
    """bats: 'podman auto-update with multiple services' and '...=fakevalue' in one."""
    m = machine_services
    for name in ("alpine2", "busybox2"):
        env.push(name)
        env.pull_in_machine(name)
    local_ref = "localhost/localtest:latest"
    m.podman("tag", env.ref("alpine2"), local_ref)
    names = {}
    plan = [
        ("image", "alpine2"),
        ("registry", "busybox2"),
        ("", "alpine2"),
        ("disabled", "alpine2"),
        ("fake_x1", "alpine2"),
        ("local", None),
        ("registry", "busybox2"),
    ]
    for i, (policy, image) in enumerate(plan):
        name = f"mix{i}"
        m.create_service(name, env.ref(image) if image else local_ref, policy=policy)
        names[name] = policy
    image_before = {name: m.container_image_id(name) for name in names}

    env.push("alpine2")
    env.push("busybox2")
    m.podman("commit", "-q", "mix5", local_ref)  # a new local image for the local policy
    env.registry.mark()
    code, out, err = env.check("--rollback=false")
    assert code == 125
    assert (
        'Error: invalid auto-update policy "fake_x1": '
        'valid policies are ["disabled" "image" "local" "registry"]'
    ) in err   # podman's bare text (it names no container)
    assert err.count("Trying to pull") == 2, err
    # Exactly one pull per image from the registry, even with two containers on busybox2.
    manifest_gets = [r for r in env.registry.requests() if r.method == "GET" and "/manifests/" in r.path]
    assert sorted({r.path.split("/manifests/")[0] for r in manifest_gets}) == ["/v2/alpine2", "/v2/busybox2"]
    assert len([r for r in manifest_gets if r.path.startswith("/v2/busybox2/manifests/latest")]) == 1
    expect_update = {n for n, p in names.items() if p in ("image", "registry", "local")}
    for name in names:
        wait_for_container(m, name)
        changed = m.container_image_id(name) != image_before[name]
        assert changed == (name in expect_update), name
    assert len([line for line in out[1:] if line.split()]) == len(expect_update)


def test_local_policy_and_local_rollback(env: Env, machine_services: Machine) -> None:
    m = machine_services
    env.push("localsrc")
    env.pull_in_machine("localsrc")
    ref = "localhost/localtest2:latest"
    m.podman("tag", env.ref("localsrc"), ref)
    unit = m.create_service("loc", ref, policy="local")
    old = m.container_image_id("loc")

    code, out, _ = env.check("--dry-run", "--format", FMT)
    assert f"{unit},{ref},false,local" in out
    m.podman("commit", "-q", "loc", ref)
    code, out, _ = env.check("--dry-run", "--format", FMT)
    assert f"{unit},{ref},pending,local" in out
    code, out, err = env.check("--rollback=false", "--format", FMT)
    assert code == 0, err
    assert f"{unit},{ref},true,local" in out
    m.wait_active(unit)
    good = m.container_image_id("loc")
    assert good != old

    # A broken local image: the restart fails, the old image is re-tagged and started again.
    broken_remote = env.push("localbroken", variant="broken")
    assert broken_remote
    env.pull_in_machine("localbroken")
    m.podman("tag", env.ref("localbroken"), ref)
    code, out, err = env.check("--format", FMT)
    assert code == 0, err
    assert f"{unit},{ref},rolled back,local" in out
    m.wait_active(unit)
    assert m.container_image_id("loc") == good


def test_pod_unit_is_reported_and_restarted(env: Env, machine_services: Machine) -> None:
    m = machine_services
    env.push("podimg")
    env.pull_in_machine("podimg")
    ref = "localhost/podimage:latest"
    m.podman("tag", env.ref("podimg"), ref)
    m.create_service("podctr", ref, policy="local", pod="pod1")
    pod_unit = "pod-pod1.service"
    old_ctr = m.container_id("podctr")
    old_pod = m.podman("pod", "inspect", "--format", "{{.ID}}", "pod1").stdout.strip()

    code, out, _ = env.check("--dry-run", "--format", FMT)
    assert f"{pod_unit},{ref},false,local" in out
    m.podman("commit", "-q", "podctr", ref)
    code, out, _ = env.check("--dry-run", "--format", FMT)
    assert f"{pod_unit},{ref},pending,local" in out
    code, out, err = env.check("--format", FMT)
    assert code == 0, err
    assert f"{pod_unit},{ref},true,local" in out
    m.wait_active(pod_unit)
    wait_for_container(m, "podctr")
    assert m.podman("pod", "inspect", "--format", "{{.ID}}", "pod1").stdout.strip() != old_pod
    assert m.container_id("podctr") != old_ctr


def test_nothing_new_sends_one_manifest_head_per_reference_and_no_get(env: Env, machine_services: Machine) -> None:
    m = machine_services
    for name in ("quiet1", "quiet2"):
        env.push(name)
        env.pull_in_machine(name)
    for i in range(3):
        m.create_service(f"q1x{i}", env.ref("quiet1"), policy="registry")
    m.create_service("q2x0", env.ref("quiet2"), policy="registry")
    env.registry.mark()
    code, out, err = env.check("--format", FMT)
    assert code == 0, err
    assert all(line.endswith(",false,registry") for line in out) and len(out) == 4
    manifests = [r for r in env.registry.requests() if "/manifests/" in r.path]
    assert sorted((r.method, r.path) for r in manifests) == [
        ("HEAD", "/v2/quiet1/manifests/latest"),
        ("HEAD", "/v2/quiet2/manifests/latest"),
    ]


def _authfile(machine: Machine, host_port: str, path: str, user: str, password: str) -> None:
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    machine.write(path, json.dumps({"auths": {host_port: {"auth": token}}}), mode=0o600)


def test_authfile_by_flag_env_and_label(auth_env: Env, machine_services: Machine) -> None:
    m = machine_services
    creds = (USER, PASSWORD)
    auth_env.push("private", creds=creds)
    auth_env.pull_in_machine("private", creds=creds)
    ref = auth_env.ref("private")
    _authfile(m, auth_env.registry.host_port, "/root/auth.json", USER, PASSWORD)
    unit = m.create_service("priv", ref, policy="registry")

    code, out, err = auth_env.check("--format", FMT)
    assert code == 125
    # podman's text, as ours starts: "reading manifest TAG in NAME: authentication required"
    assert (f"checking image updates for container {m.container_id('priv')}: reading manifest latest in "
            f"{ref.rsplit(':', 1)[0]}: authentication required") in err

    code, out, err = auth_env.check("--authfile=/root/auth.json", "--dry-run", "--format", FMT)
    assert (code, out) == (0, [f"{unit},{ref},false,registry"]), err
    code, out, err = auth_env.check("--dry-run", "--format", FMT, env={"REGISTRY_AUTH_FILE": "/root/auth.json"})
    assert (code, out) == (0, [f"{unit},{ref},false,registry"]), err

    m.cleanup_services()
    auth_env.pull_in_machine("private", creds=creds)
    unit = m.create_service(
        "priv2", ref, policy="registry", extra_args=["--label", "io.containers.autoupdate.authfile=/root/auth.json"]
    )
    # The label wins over the flag.
    code, out, err = auth_env.check("--authfile=/dev/null", "--dry-run", "--format", FMT)
    assert (code, out) == (0, [f"{unit},{ref},false,registry"]), err

    # And a real update through the authenticated registry, pulled with the label's credentials.
    auth_env.push("private", creds=creds)
    code, out, err = auth_env.check("--format", FMT)
    assert (code, out) == (0, [f"{unit},{ref},true,registry"]), err


def test_bad_password_never_appears_anywhere(auth_env: Env, machine_services: Machine) -> None:
    m = machine_services
    creds = (USER, PASSWORD)
    auth_env.push("secretimg", creds=creds)
    auth_env.pull_in_machine("secretimg", creds=creds)
    bad = "Wr0ng-Secret-Sh0uld-N3ver-Show"
    _authfile(m, auth_env.registry.host_port, "/root/bad.json", USER, bad)
    m.create_service(
        "sec",
        auth_env.ref("secretimg"),
        policy="registry",
        extra_args=["--label", "io.containers.autoupdate.authfile=/root/bad.json"],
    )
    time.sleep(1.1)  # journalctl --since has one-second resolution
    since = m.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    code, out, err = auth_env.check("--log-level", "debug")
    assert code == 125
    assert "authentication required" in err
    journal = m.run("journalctl", "--since", since, "-o", "json", "--no-pager").stdout
    assert '"RESULT":"failed"' in journal.replace(" ", "")
    import base64

    encoded = base64.b64encode(f"{USER}:{bad}".encode()).decode()
    for text in (out and "\n".join(out), err, journal):
        assert bad not in (text or "") and encoded not in (text or "") and PASSWORD not in (text or "")


def test_outcome_lands_in_the_journal_with_structured_fields(env: Env, machine_services: Machine) -> None:
    m = machine_services
    env.push("journaled")
    env.pull_in_machine("journaled")
    unit = m.create_service("jrn", env.ref("journaled"), policy="registry")
    old_digest = m.podman("image", "inspect", "--format", "{{.Digest}}", env.ref("journaled")).stdout.strip()
    new_digest = env.push("journaled")
    code, _, err = env.check()
    assert code == 0, err
    entries = [e for e in m.journal("CONTAINER_NAME=jrn") if e.get("RESULT") == "true"]
    assert entries, "no outcome entry in the journal"
    e = entries[-1]
    assert e["UNIT"] == unit and e["IMAGE"] == env.ref("journaled") and e["POLICY"] == "registry"
    assert e["OLD_DIGEST"] == old_digest and e["NEW_DIGEST"] == new_digest
    assert e["PRIORITY"] == "5" and e["SYSLOG_IDENTIFIER"] == "autoupdated"
    assert len(e["CONTAINER_ID"]) == 64 and e["MESSAGE_ID"]


def test_tls_registry_verified_with_certs_d_and_x509_error_without(
    machine_services: Machine, image_builder: ImageBuilder, tmp_path: Path
) -> None:
    m = machine_services
    registry = Registry(tmp_path / "tls", tls=True).start()
    try:
        builder = image_builder
        certs = tmp_path / "certs"
        certs.mkdir()
        (certs / "ca.crt").write_text(registry.ca_pem)
        ref = f"{registry.host_port}/tlsimg:latest"
        builder.push(builder.build("good", "tls-1"), ref, cert_dir=certs)
        m.trust_registry(registry.host_port, insecure=False, ca_pem=registry.ca_pem)
        m.podman("pull", "-q", ref)
        unit = m.create_service("tls", ref, policy="registry")
        proc = m.autoupdated("check", "--format", FMT)
        assert (proc.returncode, proc.stdout.splitlines()) == (0, [f"{unit},{ref},false,registry"]), proc.stderr
        m.run("rm", "-rf", f"/etc/containers/certs.d/{registry.host_port}")
        proc = m.autoupdated("check", "--format", FMT)
        assert proc.returncode == 125 and "x509" in proc.stderr, proc.stderr
        proc = m.autoupdated("check", "--tls-verify=false", "--format", FMT)
        assert proc.returncode == 0, proc.stderr
    finally:
        registry.stop()


def test_health_gate_rolls_back_images_that_crash_or_are_unhealthy(env: Env, machine_services: Machine) -> None:
    """podman reports `true` for an image that exits a second after start; we roll it back."""
    m = machine_services
    for name in ("crashy", "sickly", "fine"):
        env.push(name, variant="healthy" if name != "crashy" else "good")
        env.pull_in_machine(name)
    crash_unit = m.create_service("crashy", env.ref("crashy"), policy="registry", command=None)
    sick_unit = m.create_service("sickly", env.ref("sickly"), policy="registry", command=None)
    fine_unit = m.create_service("fine", env.ref("fine"), policy="registry", command=None)
    before = {name: m.container_image_id(name) for name in ("crashy", "sickly", "fine")}

    env.push("crashy", variant="crash")
    env.push("sickly", variant="unhealthy")
    env.push("fine", variant="healthy")
    code, out, err = env.check("--format", FMT, "--health-timeout", "8")
    assert code == 0, err
    assert f"{crash_unit},{env.ref('crashy')},rolled back,registry" in out, err
    assert f"{sick_unit},{env.ref('sickly')},rolled back,registry" in out, err
    assert f"{fine_unit},{env.ref('fine')},true,registry" in out, err
    # Seen as gone, or (under load, with the unit's Restart=on-failure) as already re-started.
    assert re.search(
        r"container crashy in unit container-crashy\.service (exited|was restarted after its update)", err
    ), err
    assert "container sickly in unit container-sickly.service did not become healthy within 8 s" in err
    for name, unit in (("crashy", crash_unit), ("sickly", sick_unit), ("fine", fine_unit)):
        m.wait_active(unit)
        wait_for_container(m, name)
    assert m.container_image_id("crashy") == before["crashy"]
    assert m.container_image_id("sickly") == before["sickly"]
    assert m.container_image_id("fine") != before["fine"]

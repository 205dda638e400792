"""Smoke tests of the harness itself: the machine, the images, host podman.

If these fail, every test built on the harness would fail for reasons unrelated to
autoupdated, so they check each piece against a real outcome: systemd's state, podman's view
of containers and images, a registry's stored digest, podman's own auto-update in the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import procs
from tests.harness.images import ImageBuilder
from tests.harness.machine import VENV_PYTHON, Machine, MachineError
from tests.harness.podman_host import PodmanService

pytestmark = pytest.mark.machine


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain-HTTP distribution registry on 127.0.0.1 (the harness's own, for these tests)."""
    if os.environ.get("CI") is None and not Path("/usr/bin/docker-registry").exists():
        pytest.skip("needs docker-registry (run scripts/setup.sh)")
    base = tmp_path_factory.mktemp("smoke-registry")
    port = procs.free_port()
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = procs.spawn(["docker-registry", "serve", str(config)], log=base / "registry.log")
    url = f"http://127.0.0.1:{port}/v2/"
    procs.wait_for(
        lambda: httpx.get(url, timeout=1).status_code == 200,
        timeout=30,
        what="registry /v2/",
        proc=proc,
        log=base / "registry.log",
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        procs.stop(proc)


def test_machine_boots_to_multi_user(machine: Machine) -> None:
    assert machine.systemctl("is-system-running").stdout.strip() in ("running", "degraded")
    assert machine.failed_units == []
    active = machine.systemctl(
        "is-active", "multi-user.target", "systemd-journald.service", "dbus.service", "podman.socket"
    ).stdout.split()
    assert active == ["active"] * 4
    assert Path(f"/proc/{machine.pid}/comm").read_text().strip() == "systemd"
    assert machine.podman_socket.is_socket()
    assert machine.dbus_socket.is_socket()
    # the machine's podman is configured as shared/SANDBOX.md says
    info = json.loads(machine.podman("info", "--format", "json").stdout)
    assert info["host"]["ociRuntime"]["name"] == "crun"
    # a clean environment inside, not the host's
    assert machine.run("env").stdout.splitlines().count("HOME=/root") == 1
    assert "PYTEST_CURRENT_TEST" not in machine.run("env").stdout


def test_machine_sees_repository_read_only_and_has_the_venv(machine: Machine) -> None:
    r = machine.run(
        VENV_PYTHON,
        "-c",
        "import autoupdated, podman, jeepney, httpx, apscheduler, pydantic_settings;print(autoupdated.__file__)",
        env={"PYTHONPATH": "/src"},
    )
    assert r.stdout.strip() == "/src/autoupdated/__init__.py"
    assert machine.run("touch", "/src/x", check=False).returncode != 0
    r = machine.autoupdated("--help")
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout.lower()


def test_write_read_and_journal(machine: Machine) -> None:
    machine.write("/run/harness/hello.txt", "hi\n", mode=0o600)
    assert machine.read("/run/harness/hello.txt") == "hi\n"
    assert machine.run("stat", "-c", "%a", "/run/harness/hello.txt").stdout.strip() == "600"
    tag = f"harness-{time.monotonic_ns()}"
    machine.run("systemd-cat", "-t", tag, "echo", "journal works")
    entries = procs.wait_for(lambda: machine.journal(f"SYSLOG_IDENTIFIER={tag}"), timeout=10, what="journal entry")
    assert entries[0]["MESSAGE"] == "journal works"


def test_run_timeout_kills_the_command_inside(machine: Machine) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        machine.run("sleep", "1000", timeout=1)
    time.sleep(0.2)
    ps = machine.run("busybox", "ps", "-o", "args").stdout
    assert "sleep 1000" not in ps


def test_image_variants_build_with_distinct_ids(image_builder: ImageBuilder) -> None:
    a = image_builder.build("good", "variants-a")
    b = image_builder.build("good", "variants-b")
    assert a == "localhost/autoupdated-test/good:variants-a"
    assert image_builder.image_id(a) != image_builder.image_id(b)
    healthy = image_builder.build("healthy", "variants-h")
    cfg = json.loads(image_builder.store.podman("image", "inspect", healthy).stdout)[0]
    assert cfg["Healthcheck"]["Test"] == ["CMD", "/bin/true"]


def test_local_image_service_in_machine(machine_services: Machine, image_builder: ImageBuilder) -> None:
    m = machine_services
    ref = image_builder.build("good", "local-1")
    image_id = image_builder.import_into(m, ref, tags=["localhost/smoke/local:latest"])
    assert image_id == image_builder.image_id(ref)
    unit = m.create_service("smoke-local", "localhost/smoke/local:latest", policy="local")
    assert unit == "container-smoke-local.service"
    assert m.systemctl("is-active", unit).stdout.strip() == "active"
    unit_text = m.read(f"/etc/systemd/system/{unit}")
    assert "--cgroups=disabled" in unit_text and "no-conmon" not in unit_text
    labels = json.loads(m.podman("inspect", "--format", "{{json .Config.Labels}}", "smoke-local").stdout)
    assert labels["io.containers.autoupdate"] == "local"
    assert labels["PODMAN_SYSTEMD_UNIT"] == unit
    assert m.container_image_id("smoke-local") == image_id
    # the image's trap makes stop immediate (no stop-timeout wait)
    t0 = time.monotonic()
    m.systemctl("restart", unit)
    assert time.monotonic() - t0 < 8
    m.wait_active(unit)


def test_cleanup_services_removes_everything(machine: Machine, image_builder: ImageBuilder) -> None:
    ref = image_builder.build("good", "cleanup")
    image_builder.import_into(machine, ref)
    unit = machine.create_service("smoke-cleanup", ref, policy=None)
    machine.cleanup_services()
    assert machine.systemctl("is-active", unit, check=False).stdout.strip() == "inactive"
    assert machine.run("test", "-e", f"/etc/systemd/system/{unit}", check=False).returncode != 0
    assert machine.podman("ps", "-aq").stdout.strip() == ""
    assert machine.podman("images", "-q").stdout.strip() == ""


def test_broken_and_crash_images_fail_in_machine(machine_services: Machine, image_builder: ImageBuilder) -> None:
    m = machine_services
    broken = image_builder.build("broken", "fail-broken")
    crash = image_builder.build("crash", "fail-crash")
    image_builder.import_into(m, broken)
    image_builder.import_into(m, crash)
    with pytest.raises(MachineError, match=r"container-smoke-broken\.service"):
        m.create_service("smoke-broken", broken, policy="local")
    # crash: the unit starts, the container exits 1, and Restart=on-failure restarts it. Whether the
    # unit then ends "failed" depends on 5 restarts within 10 s (StartLimitBurst), which a loaded
    # host does not reach (seen on Debian 13 at load 12: each cycle took over 2 s), and its Result
    # flips back while a restart runs, so the test waits for what lasts: the restart count and the
    # journal's record of the container's exit status (the same text on systemd 252 and 257).
    unit = m.create_service("smoke-crash", crash, policy="local", extra_args=["--stop-timeout", "1"])
    procs.wait_for(
        lambda: int(m.unit_property(unit, "NRestarts")) >= 1,
        timeout=60,
        what=f"Restart=on-failure to restart {unit}",
    )
    log = m.run("journalctl", "-u", unit, "-o", "cat", "--no-pager").stdout
    assert "code=exited, status=1/FAILURE" in log, log[-2000:]


def test_pod_service(machine_services: Machine, image_builder: ImageBuilder) -> None:
    m = machine_services
    ref = image_builder.build("good", "pod")
    image_builder.import_into(m, ref)
    unit = m.create_service("smoke-in-pod", ref, policy="local", pod="smoke-pod")
    assert unit == "container-smoke-in-pod.service"
    assert m.systemctl("is-active", "pod-smoke-pod.service", unit).stdout.split() == ["active"] * 2
    pod = m.podman("inspect", "--format", "{{.Pod}}", "smoke-in-pod").stdout.strip()
    assert pod == m.podman("pod", "inspect", "--format", "{{.Id}}", "smoke-pod").stdout.strip()


def test_push_pull_and_podman_auto_update_in_machine(
    machine_services: Machine, image_builder: ImageBuilder, plain_registry: str
) -> None:
    """The whole chain a registry-policy test needs, with podman's own auto-update as proof."""
    m = machine_services
    dest = f"{plain_registry}/smoke/app:latest"
    d1 = image_builder.push(image_builder.build("good", "reg-1"), dest)
    r = httpx.head(
        f"http://{plain_registry}/v2/smoke/app/manifests/latest",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.headers["Docker-Content-Digest"] == d1

    m.trust_registry(plain_registry)
    m.podman("pull", "-q", dest)
    digests = m.podman("image", "inspect", "--format", "{{json .RepoDigests}}", dest).stdout
    assert f"{plain_registry}/smoke/app@{d1}" in json.loads(digests)

    unit = m.create_service("smoke-reg", dest, policy="registry")
    before = m.container_image_id("smoke-reg")
    d2 = image_builder.push(image_builder.build("good", "reg-2"), dest)
    assert d2 != d1
    out = m.podman("auto-update", "--format", "{{.Unit}} {{.Updated}}", timeout=180).stdout
    assert f"{unit} true" in out
    m.wait_active(unit)
    after = m.container_image_id("smoke-reg")
    assert after != before
    assert f"{plain_registry}/smoke/app@{d2}" in json.loads(
        m.podman("image", "inspect", "--format", "{{json .RepoDigests}}", after).stdout
    )


def test_host_podman_service_api(podman_host: PodmanService, podman_service: str, image_builder: ImageBuilder) -> None:
    from podman import PodmanClient

    assert podman_service == f"unix://{podman_host.socket}"
    ref = image_builder.build("healthy", "host-svc")
    archive = image_builder.save(ref, image_builder.workdir / "host-svc.tar")
    podman_host.podman("load", "-q", "-i", str(archive))
    podman_host.podman("run", "-d", "--name", "smoke-host", ref)
    try:
        with PodmanClient(base_url=podman_service) as client:
            assert client.version()["Version"].startswith("4.")  # type: ignore[no-untyped-call]
            names = [c.name for c in client.containers.list()]
            assert "smoke-host" in names
        # HEALTHCHECK survived (docker format) and runs for real
        assert podman_host.podman("healthcheck", "run", "smoke-host").returncode == 0
    finally:
        podman_host.podman("rm", "-f", "-t", "0", "smoke-host", check=False)


def test_reboot_keeps_disk_then_stop_leaves_nothing(tmp_path: Path, machine_platform: str) -> None:
    """A second machine: reboot() keeps its disk but not /run; stop() ends nspawn and PID 1 by
    PID and removes the extracted root and the machine's cgroups."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    m = Machine.boot(platform=machine_platform)
    try:
        m.write("/var/lib/harness/kept", "disk\n")
        m.write("/run/harness/gone", "tmpfs\n")
        first = (m.nspawn_pid, m.pid)
        m.reboot()
        assert (m.nspawn_pid, m.pid) != first
        assert procs.starttime(first[0]) is None and procs.starttime(first[1]) is None
        assert m.read("/var/lib/harness/kept") == "disk\n"
        assert m.run("test", "-e", "/run/harness/gone", check=False).returncode != 0
        assert m.systemctl("is-active", "podman.socket").stdout.strip() == "active"
    finally:
        pids, workdir, name = (m.nspawn_pid, m.pid), m.workdir, m.name
        m.stop()
    for pid in pids:
        assert procs.starttime(pid) is None
    assert not workdir.exists()
    assert not Path(f"/sys/fs/cgroup/systemd/autoupdated-test/{name}").exists()
    assert pids[0] not in procs.live_pids()


_OWNER = """
import json, sys, time
from tests.harness import procs
from tests.harness.machine import Machine
procs.install_signal_handlers()
m = Machine.boot(platform=sys.argv[1])
print(json.dumps({"name": m.name, "workdir": str(m.workdir), "pids": [m.nspawn_pid, m.pid]}), flush=True)
time.sleep(600)
"""


def _machine_owner(tmp_path: Path, platform: str) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    """A separate process that boots a machine of `platform` and then waits to be killed."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    log = tmp_path / "owner.log"
    out = tmp_path / "owner.out"
    owner = procs.spawn(
        ["sh", "-c", f'exec "$0" -c "$1" "$2" > {out}', sys.executable, _OWNER, platform],
        log=log,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    line = procs.wait_for(lambda: out.read_text().strip(), timeout=60, what="owner's machine", proc=owner, log=log)
    return owner, json.loads(line)


def _assert_machine_gone(info: dict[str, object]) -> None:
    for pid in info["pids"]:  # type: ignore[attr-defined]
        assert procs.starttime(pid) is None, f"pid {pid} still alive"
    assert not Path(str(info["workdir"])).exists()
    assert not Path(f"/sys/fs/cgroup/systemd/autoupdated-test/{info['name']}").exists()


def test_sigterm_to_the_owner_still_stops_its_machine(tmp_path: Path, machine_platform: str) -> None:
    owner, info = _machine_owner(tmp_path, machine_platform)
    procs.stop(owner, timeout=30)  # SIGTERM → KeyboardInterrupt → atexit → Machine.stop
    _assert_machine_gone(info)


def test_machines_of_a_killed_owner_are_reaped(tmp_path: Path, machine_platform: str) -> None:
    from tests.harness.machine import reap_stale_machines

    owner, info = _machine_owner(tmp_path, machine_platform)
    owner.kill()  # SIGKILL: no cleanup at all in the owner
    owner.wait()
    assert procs.starttime(info["pids"][1]) is not None  # type: ignore[index]
    assert info["name"] in reap_stale_machines()
    _assert_machine_gone(info)
    procs.stop(owner)

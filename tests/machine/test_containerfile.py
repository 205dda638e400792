"""The Containerfile: built with no network from a local base image, then run as the daemon.

The base image is the test machine's rootfs (`podman import` of the cached tarball): Debian 12
with python3 and the /opt/autoupdated venv holding the dependencies, so the build needs neither
a registry nor PyPI (`--network=none --pull=never`, `PIP_ARGS=--no-index`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autoupdated.adapters import journal
from tests.harness import procs
from tests.harness.daemon import image_of, labelled_service, running
from tests.harness.machine import Machine, rootfs_tarball
from tests.harness.podman_host import PodmanStore

REPO = Path(__file__).resolve().parents[2]
BASE = "localhost/autoupdated-base:test"
IMAGE = "localhost/autoupdated:test"


@pytest.fixture(scope="module")
def store() -> Iterator[PodmanStore]:
    s = PodmanStore()  # a short path of its own (podman limits the runroot's length)
    procs.on_exit(s.destroy)
    try:
        yield s
    finally:
        procs.forget_exit(s.destroy)
        s.destroy()


@pytest.fixture(scope="module")
def built(store: PodmanStore) -> str:
    """Import the base image, then build the Containerfile offline; returns the build log."""
    tarball = rootfs_tarball()
    t0 = time.monotonic()
    procs.run(
        [
            "sh",
            "-c",
            'tarball=$1; shift; zstd -dc "$tarball" | "$@"',
            "import",
            str(tarball),
            *store.argv("import", "-q", "-", BASE),
        ],
        env=store.env,
        timeout=600,
    )
    t1 = time.monotonic()
    r = store.podman(
        "build", "--network=none", "--pull=never", "--build-arg", f"BASE={BASE}", "--build-arg",
        "PIP_ARGS=--no-index", "-t", IMAGE, "-f", str(REPO / "Containerfile"), str(REPO),
        timeout=600,
    )  # fmt: skip
    print(f"\n[containerfile] base image imported in {t1 - t0:.1f} s, built in {time.monotonic() - t1:.1f} s")
    return r.stdout + r.stderr


@pytest.mark.podman
def test_build_offline_and_run_the_cli(store: PodmanStore, built: str, tmp_path: Path) -> None:
    assert "autoupdated 0.1.0" in built, "the build's own smoke test ran"
    assert "Requirement already satisfied" in built, "dependencies came from the base image, not the network"
    inspect = json.loads(store.podman("image", "inspect", IMAGE).stdout)[0]
    assert inspect["Config"]["Entrypoint"] == ["python", "-m", "autoupdated"]
    assert inspect["Config"]["Cmd"] == ["run"]
    assert "/var/lib/autoupdated" in inspect["Config"]["Volumes"]

    r = store.podman("run", "--rm", "--network=none", IMAGE, "--version")
    assert r.stdout.strip() == "autoupdated 0.1.0"
    r = store.podman("run", "--rm", "--network=none", IMAGE, "config", "show", "--format", "json")
    shown = json.loads(r.stdout)
    assert shown["path"] == "/etc/autoupdated.toml" and shown["file_found"] is False
    assert shown["settings"]["schedule"] == {"value": "daily", "source": "default"}

    bad = tmp_path / "autoupdated.toml"
    bad.write_text('schedule = "every 5 fortnights"\n')
    r = store.podman(
        "run", "--rm", "--network=none", "-v", f"{bad}:/etc/autoupdated.toml:ro,Z", IMAGE, "run", check=False
    )
    assert r.returncode == 78, r
    assert "/etc/autoupdated.toml: key 'schedule'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.machine
def test_the_daemon_in_a_container_updates_a_unit_of_its_host(
    built: str, store: PodmanStore, machine_services: Machine, images: Callable[[str], str]
) -> None:
    """Run the image in the machine with podman's socket, the system bus and the journal mounted in."""
    m = machine_services
    archive = m.root / "var" / "tmp" / "autoupdated-image.tar"
    store.podman("save", "-q", "--format", "docker-archive", "-o", str(archive), IMAGE, timeout=300)
    try:
        m.podman("load", "-q", "-i", "/var/tmp/autoupdated-image.tar", timeout=300)
    finally:
        archive.unlink(missing_ok=True)

    ref, unit = labelled_service(m, images, "aud-ctr-web")
    old_image = image_of(m, "aud-ctr-web")
    m.write(
        "/root/autoupdated-ctr.toml",
        'schedule = "every 3s"\nrandomized_delay = 0\ninclude_containers = ["aud-ctr-*"]\n',
    )
    since = int(time.time()) - 1
    m.podman(
        "run", "-d", "--name", "autoupdated-daemon", "--network=host", "--security-opt", "label=disable",
        "-v", "/run/podman/podman.sock:/run/podman/podman.sock",
        "-v", "/run/dbus/system_bus_socket:/run/dbus/system_bus_socket",
        "-v", "/run/systemd/journal/socket:/run/systemd/journal/socket",
        "-v", "/etc/containers:/etc/containers:ro",
        "-v", "/root/autoupdated-ctr.toml:/etc/autoupdated.toml:ro",
        IMAGE,
    )  # fmt: skip
    try:
        images("aud-ctr-web")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and image_of(m, "aud-ctr-web") in ("", old_image):
            time.sleep(0.5)
        assert image_of(m, "aud-ctr-web") not in ("", old_image), m.podman("logs", "autoupdated-daemon").stderr
        while time.monotonic() < deadline and not running(m, "aud-ctr-web"):
            time.sleep(0.3)
        assert m.systemctl("is-active", unit).stdout.strip() == "active"
        outcome: list[dict[str, str]] = []
        while time.monotonic() < deadline and not outcome:  # written once the run's restarts are done
            time.sleep(0.3)
            outcome = m.journal(
                "SYSLOG_IDENTIFIER=autoupdated", f"MESSAGE_ID={journal.MESSAGE_ID_OUTCOME}",
                "CONTAINER_NAME=aud-ctr-web", "RESULT=true", since=f"@{since}",
            )  # fmt: skip
        assert outcome and outcome[0]["UNIT"] == unit and outcome[0]["IMAGE"] == ref
        status = json.loads(m.podman("exec", "autoupdated-daemon", "python", "-m", "autoupdated", "status",
                                     "--format", "json").stdout)  # fmt: skip
        assert status["daemon"]["pid"] == 1
        r = m.podman("stop", "-t", "30", "autoupdated-daemon")
        assert r.returncode == 0
        state = m.podman("inspect", "--format", "{{.State.ExitCode}}", "autoupdated-daemon").stdout.strip()
        assert state == "0", "SIGTERM to PID 1 is a clean stop"
    finally:
        m.podman("rm", "-f", "-t", "0", "autoupdated-daemon", check=False)
        m.podman("rmi", "-f", IMAGE, check=False)

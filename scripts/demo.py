"""The demo: one real update cycle of the daemon, start to finish, in a booted systemd machine.

Boots a Debian machine (systemd as PID 1, journald, D-Bus, podman) under systemd-nspawn,
starts a distribution registry on the host's 127.0.0.1, runs a labelled container `web`
under a unit from `podman generate systemd --new`, installs autoupdated and runs
`systemctl enable --now autoupdated`, pushes a new image, and shows what an admin would
see: the unit's STATUS line, the container moving to the new image, `autoupdated status`,
and the structured journal entries.  Everything it starts is stopped by PID at the end.

On Debian 13 (`--platform trixie`, the default: podman 5.4) the container is a Quadlet
`web.container` with `AutoUpdate=registry`; on Debian 12 (`--platform bookworm`: podman 4.3,
no Quadlet) a unit from `podman generate systemd --new`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.daemon import install  # noqa: E402
from tests.harness.images import ImageBuilder  # noqa: E402
from tests.harness.machine import PLATFORMS, Machine  # noqa: E402
from tests.harness.quadlet import Quadlet  # noqa: E402
from tests.harness.registry import Registry  # noqa: E402

CONFIG = """\
# demo: check every 10 seconds, no random delay
schedule = "every 10s"
randomized_delay = 0
run_on_start = true
"""


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(m: Machine, *argv: str) -> str:
    print(f"$ {' '.join(argv)}", flush=True)
    out = m.run(*argv, check=False).stdout
    print(out.rstrip(), flush=True)
    return out


def wait(what: str, predicate, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise SystemExit(f"demo: timed out waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=PLATFORMS, default="trixie")
    platform = parser.parse_args(argv).platform
    work = Path(tempfile.mkdtemp(prefix="au-demo-", dir="/tmp"))
    release = "Debian 13, podman 5.4" if platform == "trixie" else "Debian 12, podman 4.3"
    say(f"booting a {release} machine with systemd under systemd-nspawn")
    machine = Machine.boot(platform=platform)
    registry = Registry(work / "registry").start()
    builder = ImageBuilder(work / "images")
    try:
        print(f"machine PID 1 = {machine.pid}; registry on {registry.host_port}")
        machine.trust_registry(registry.host_port, insecure=True)
        ref = f"{registry.host_port}/demo/web:latest"

        builder.push(builder.build("good", "web-v1"), ref)
        machine.podman("pull", "-q", ref)
        if platform == "trixie":
            say("v1 of the image, and a Quadlet web.container with AutoUpdate=registry running it")
            quadlet = Quadlet(machine)
            unit = quadlet.container("web", ref, AutoUpdate="registry")
            quadlet.start(unit)
            name = "systemd-web"
            show(machine, "cat", "/etc/containers/systemd/web.container")
        else:
            say("v1 of the image, and a container `web` running it under systemd")
            unit = machine.create_service("web", ref, policy="registry")
            name = "web"
        show(machine, "systemctl", "is-active", unit)
        old = machine.container_image_id(name)
        print(f"web runs image {old[:12]}")

        say("installing autoupdated: systemctl enable --now autoupdated")
        install(machine)
        machine.write("/etc/autoupdated.toml", CONFIG)
        machine.systemctl("enable", "--now", "autoupdated.service")
        machine.wait_active("autoupdated.service")
        show(machine, "systemctl", "status", "--no-pager", "-n", "0", "autoupdated.service")

        say("pushing v2 of the image to the registry")
        digest = builder.push(builder.build("good", "web-v2"), ref)
        print(f"registry now has {ref} at {digest}")

        say("waiting for the daemon's next run to update `web`")

        def outcomes() -> list[dict[str, str]]:
            out = machine.run(
                "journalctl", "-u", "autoupdated", f"CONTAINER_NAME={name}", "RESULT=true", "-o", "json", "--no-pager"
            ).stdout
            return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

        # The update is done when the new container has passed the health gate and the outcome
        # is in the journal, not when the unit restarted.
        wait("the update's journal entry", lambda: bool(outcomes()))
        machine.wait_active(unit)
        new = machine.container_image_id(name)
        print(f"web now runs image {new[:12]} (was {old[:12]})")
        show(machine, "autoupdated", "status")
        show(machine, "systemctl", "status", "--no-pager", "-n", "0", "autoupdated.service")

        say(f"the journal: journalctl -u autoupdated CONTAINER_NAME={name} RESULT=true -o json")
        entries = outcomes()
        keys = (
            "MESSAGE",
            "PRIORITY",
            "MESSAGE_ID",
            "CONTAINER_NAME",
            "CONTAINER_ID",
            "UNIT",
            "IMAGE",
            "POLICY",
            "RESULT",
            "OLD_DIGEST",
            "NEW_DIGEST",
        )
        for entry in entries[-1:]:
            print(json.dumps({k: entry.get(k) for k in keys}, indent=2))
        say("journalctl -u autoupdated (last lines)")
        show(machine, "journalctl", "-u", "autoupdated", "--no-pager", "-n", "12", "-o", "short")
        ok = bool(entries) and new != old
        say("demo " + ("succeeded: web was updated by the daemon" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        machine.stop()
        registry.stop()
        builder.destroy()


if __name__ == "__main__":
    raise SystemExit(main())

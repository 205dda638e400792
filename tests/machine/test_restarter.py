"""The unit restarter against real systemd (PID 1 of the booted machine) over the system bus."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.harness.machine import Machine

pytestmark = pytest.mark.machine

SCRIPT = r"""
import asyncio, json, sys, time
from autoupdated.adapters.systemd.bus import SystemdBus
from autoupdated.errors import RestartError
from autoupdated.parts.restarter import UnitRestarter

async def main(units, timeout):
    out = {}
    async with SystemdBus("system") as bus:
        r = UnitRestarter(bus, timeout=timeout)
        async def one(u):
            t = time.monotonic()
            try:
                await r.restart(u)
                out[u] = ["done", ""]
            except RestartError as e:
                out[u] = [e.result or "error", str(e)]
            out[u].append(round(time.monotonic() - t, 2))
        await asyncio.gather(*(one(u) for u in units))
    print(json.dumps(out))

asyncio.run(main(sys.argv[2:], float(sys.argv[1])))
"""

UNITS = {
    "au-ok.service": "[Service]\nExecStart=/bin/sleep 1000\n",
    "au-fail.service": "[Service]\nExecStart=/bin/false\nType=oneshot\nRemainAfterExit=yes\n",
    "au-slow.service": "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sleep 5\n",
}


@pytest.fixture
def units(machine: Machine) -> Iterator[Machine]:
    for name, text in UNITS.items():
        machine.write(f"/etc/systemd/system/{name}", text)
    for i in range(6):
        machine.write(f"/etc/systemd/system/au-par{i}.service", "[Service]\nExecStart=/bin/sleep 1000\n")
    machine.systemctl("daemon-reload")
    try:
        yield machine
    finally:
        names = [*UNITS, *(f"au-par{i}.service" for i in range(6))]
        machine.systemctl("stop", *names, check=False)
        machine.run("rm", "-f", *(f"/etc/systemd/system/{n}" for n in names))
        machine.systemctl("daemon-reload")
        machine.systemctl("reset-failed", check=False)


def restart(machine: Machine, timeout: float, *units: str) -> dict[str, list[object]]:
    r = machine.run(
        "/opt/autoupdated/bin/python",
        "-c",
        SCRIPT,
        str(timeout),
        *units,
        env={"PYTHONPATH": "/src"},
        check=False,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_restart_done_failed_missing_and_timeout(units: Machine) -> None:
    m = units
    m.systemctl("start", "au-ok.service")
    pid_before = m.unit_property("au-ok.service", "MainPID")
    result = restart(m, 2.0, "au-ok.service", "au-fail.service", "au-none.service", "au-slow.service")
    assert result["au-ok.service"][0] == "done"
    assert m.unit_property("au-ok.service", "MainPID") not in ("0", pid_before), "unit was not restarted"
    status, message, _ = result["au-fail.service"]
    assert status == "failed"
    assert message.startswith('error restarting systemd unit "au-fail.service" expected "done" but received "failed"')
    status, message, _ = result["au-none.service"]
    assert "au-none.service" in message and "not found" in message.lower()
    status, message, elapsed = result["au-slow.service"]
    assert status == "timeout" and "no result after 2 s" in message
    assert 1.9 <= float(elapsed) < 4.5  # type: ignore[arg-type]


def test_concurrent_restarts_each_get_their_own_job_result(units: Machine) -> None:
    m = units
    names = [f"au-par{i}.service" for i in range(6)]
    m.systemctl("start", *names)
    result = restart(m, 30.0, *names, "au-fail.service")
    assert {u: result[u][0] for u in names} == dict.fromkeys(names, "done")
    assert result["au-fail.service"][0] == "failed"

"""The podman adapter while podman's API service is killed under it, on the machine's podman.

A killed `podman system service` resets the request it was answering; its socket starts a fresh
service for the next one.  On podman 4.3 this rolled back a started-fine update in CI (one health
poll met the kill).  The adapter tries a lost read again: here four pollers keep asking while the
service is killed three times, and not one call may fail.
"""

from __future__ import annotations

import json

from tests.harness.machine import Machine

POLLERS = r"""
import asyncio, json, sys, time
from autoupdated.adapters.podman import Podman

async def main() -> None:
    api = Podman()
    stop = time.monotonic() + float(sys.argv[1])
    errors: list[str] = []
    async def poll() -> int:
        calls = 0
        while time.monotonic() < stop:
            try:
                await api.ping()
                await api.images()
                calls += 2
            except Exception as err:
                errors.append(f"{type(err).__name__}: {err}")
            await asyncio.sleep(0.005)
        return calls
    calls = await asyncio.gather(*(poll() for _ in range(4)))
    print(json.dumps({"calls": sum(calls), "errors": errors}))

asyncio.run(main())
"""


def test_reads_survive_the_api_service_being_killed_mid_request(installed: Machine) -> None:
    m = installed
    python = m.read("/usr/local/bin/autoupdated").splitlines()[0].removeprefix("#!").strip()
    m.write("/tmp/pollers.py", POLLERS)
    m.systemctl("start", "podman.socket")
    pids = []
    for _ in range(3):
        # The pollers run 4 s; the service is killed 1.5 s in, while they are asking.
        out = m.sh(
            f"{python} /tmp/pollers.py 4 > /tmp/pollers.out 2>&1 & sleep 1.5;"
            " systemctl show -P MainPID podman.service;"
            " systemctl kill --signal=SIGKILL podman.service; wait; cat /tmp/pollers.out",
            timeout=60,
        ).stdout.splitlines()
        pids.append(out[0])
        result = json.loads(out[-1])
        assert result["errors"] == [], result
        assert result["calls"] > 100, result  # they kept asking before and after the kill
    # Each kill hit a running service (socket-activated by the pollers), a new one each time.
    assert "0" not in pids and len(set(pids)) == 3, pids

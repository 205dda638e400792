"""Part 4 of the engine: restart a systemd unit and wait for the job's result.

What a deliberate restart means, with podman's texts: the failed state is reset first (a unit
that crash-looped into its start limit must not refuse an update, a rollback or a repair), the
job runs in mode "replace", and only `done` counts; `failed`, `timeout`, `dependency` or
`skipped` is a RestartError naming the unit.  `canceled` is not an outcome yet: restarts run
concurrently, and a job systemd cancelled was replaced by another one that also (re)starts the
unit — that of a unit it Requires=/BindsTo= being updated at the same time. A start job then
joins whatever job is pending (or finds the unit up) and its result counts instead.  The bus
itself is a port (adapters/systemd/bus.py in production).
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from autoupdated.errors import BusCallError, RestartError


class JobsPort(Protocol):
    async def connect(self) -> None: ...
    async def reset_failed(self, unit: str) -> None: ...
    async def restart(self, unit: str) -> str: ...
    async def start(self, unit: str) -> str: ...
    async def job_result(self, job: str, timeout: float) -> str: ...  # noqa: ASYNC109
    async def close(self) -> None: ...


class UnitRestarter:
    """Restarts units over one bus; restarts may run concurrently."""

    def __init__(self, jobs: JobsPort, timeout: float = 300.0) -> None:
        self.jobs = jobs
        self.timeout = timeout

    async def connect(self) -> None:
        await self.jobs.connect()

    async def close(self) -> None:
        await self.jobs.close()

    async def joined_result(self, unit: str) -> str:
        """After a cancelled restart: the result of the job that replaced it (a start joins it)."""
        try:
            job = await self.jobs.start(unit)
        except BusCallError:
            return "canceled"
        return await self.jobs.job_result(job, self.timeout)

    async def restart(self, unit: str) -> None:
        """Restart `unit`; returns when systemd reports `done`."""
        with contextlib.suppress(BusCallError):  # a lost bus is RestartUnit's to report
            await self.jobs.reset_failed(unit)
        try:
            job = await self.jobs.restart(unit)
        except BusCallError as err:
            raise RestartError(unit, f'restarting systemd unit "{unit}" failed: {err}') from None
        try:
            result = await self.jobs.job_result(job, self.timeout)
            if result == "canceled":
                result = await self.joined_result(unit)
        except TimeoutError:
            raise RestartError(
                unit,
                f'restarting systemd unit "{unit}": no result after {self.timeout:g} s; '
                f"check `systemctl status {unit}` and raise the restart timeout if the service starts slowly",
                result="timeout",
            ) from None
        if result != "done":
            raise RestartError(
                unit,
                f'error restarting systemd unit "{unit}" expected "done" but received "{result}"; '
                f"see `journalctl -u {unit}`",
                result=result,
            )

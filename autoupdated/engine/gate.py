"""The health gate: `done` from systemd is not enough, the new containers must be up.

A container with a healthcheck must report healthy within health_timeout; one without must
still be running, as the same container, after settle_time, counted from when it is first seen
on its new image.  This catches the image that starts and crashes a second later, which podman
never rolls back.  A container without a healthcheck is looked at twice (first sighting, end of
the settle time): a crash in between leaves it gone, exited or re-created under another ID.

`Watch.see` is the pure decision (state and time in, verdict out); `HealthGate` only obeys it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from autoupdated.engine.ports import PodmanPort
from autoupdated.engine.task import Task
from autoupdated.errors import HealthError
from autoupdated.model import ContainerState


@dataclass(frozen=True, slots=True)
class Verdict:
    """After one look: proven, look again at `again_at`, run the healthcheck, or failed."""

    proven: bool = False
    again_at: float | None = None
    check_health: bool = False
    failure: str | None = None


PROVEN = Verdict(proven=True)
CHECK_HEALTH = Verdict(check_health=True)


@dataclass
class Watch:
    """What the gate knows of one container of the unit."""

    name: str
    unit: str
    new_image_id: str
    settle_time: float
    poll_interval: float
    first_id: str | None = None  # the container first seen on the new image
    settle_until: float | None = None

    def see(self, state: ContainerState | None, now: float) -> Verdict:
        if state is None or not state.running:
            if self.first_id is not None:
                code = f" with code {state.exit_code}" if state is not None else ""
                return Verdict(
                    failure=f"container {self.name} in unit {self.unit} exited{code} within "
                    f"{self.settle_time:g} s of its start; see `journalctl -u {self.unit}`"
                )
            return Verdict(again_at=now + self.poll_interval)
        if self.new_image_id and state.image_id != self.new_image_id:
            # the unit still runs the old container: wait for systemd to replace it
            return Verdict(again_at=now + self.poll_interval)
        if self.first_id is None:
            self.first_id = state.id
        elif self.first_id != state.id:
            return Verdict(
                failure=f"container {self.name} in unit {self.unit} was restarted after its update "
                f"(it crashed and systemd started it again); see `journalctl -u {self.unit}`"
            )
        if state.has_healthcheck:
            return CHECK_HEALTH
        if self.settle_until is None:
            self.settle_until = now + self.settle_time
        return PROVEN if now >= self.settle_until else Verdict(again_at=self.settle_until)

    def after_healthcheck(self, status: str, now: float) -> Verdict:
        return PROVEN if status == "healthy" else Verdict(again_at=now + self.poll_interval)


def timeout_message(unit: str, pending: list[Watch], health_timeout: float) -> str:
    names = ", ".join(sorted(watch.name for watch in pending))
    seen = any(watch.first_id is not None for watch in pending)
    return (
        f"container {names} in unit {unit} did not become {'healthy' if seen else 'running'} within "
        f"{health_timeout:g} s; see `podman healthcheck run` and `journalctl -u {unit}`"
    )


class HealthGate:
    def __init__(
        self, podman: PodmanPort, *, settle_time: float, health_timeout: float, poll_interval: float
    ) -> None:
        self.podman = podman
        self.settle_time = settle_time
        self.health_timeout = health_timeout
        self.poll_interval = poll_interval

    async def verify(self, unit: str, members: list[Task]) -> None:
        """Returns when every member's container has proven itself; HealthError otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.health_timeout
        pending = {
            task.container.name: Watch(
                task.container.name, unit, task.new_image_id, self.settle_time, self.poll_interval
            )
            for task in members
        }
        while pending:
            wake = deadline
            for name, watch in list(pending.items()):
                verdict = await self._look(watch)
                if verdict.failure is not None:
                    raise HealthError(verdict.failure)
                if verdict.proven:
                    del pending[name]
                elif verdict.again_at is not None:
                    wake = min(wake, verdict.again_at)
            if not pending:
                return
            if loop.time() >= deadline:
                raise HealthError(timeout_message(unit, list(pending.values()), self.health_timeout))
            await asyncio.sleep(max(0.0, wake - loop.time()))

    async def _look(self, watch: Watch) -> Verdict:
        loop = asyncio.get_running_loop()
        verdict = watch.see(await self.podman.container_state(watch.name), loop.time())
        if verdict.check_health:
            status = await self.podman.run_healthcheck(watch.name)
            verdict = watch.after_healthcheck(status, loop.time())
        return verdict

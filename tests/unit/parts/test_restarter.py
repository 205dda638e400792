"""UnitRestarter over a fake job queue: which job results count as a restart."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from autoupdated.errors import RestartError
from autoupdated.parts.restarter import UnitRestarter


@dataclass
class FakeJobs:
    """Job results in the order systemd would report them, per unit and call."""

    restart_results: dict[str, str]
    start_results: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    _results: dict[str, str] = field(default_factory=dict)

    async def connect(self) -> None: ...
    async def close(self) -> None: ...

    async def reset_failed(self, unit: str) -> None:
        self.calls.append(f"reset {unit}")

    async def restart(self, unit: str) -> str:
        self.calls.append(f"restart {unit}")
        job = f"/job/{len(self.calls)}"
        self._results[job] = self.restart_results[unit]
        return job

    async def start(self, unit: str) -> str:
        self.calls.append(f"start {unit}")
        job = f"/job/{len(self.calls)}"
        self._results[job] = self.start_results[unit]
        return job

    async def job_result(self, job: str, timeout: float) -> str:  # noqa: ASYNC109
        return self._results.pop(job)


async def test_a_restart_systemd_cancelled_for_another_job_counts_as_that_jobs_result() -> None:
    # A unit that Requires= another being restarted at once: that restart replaced our job.
    jobs = FakeJobs({"child.service": "canceled"}, {"child.service": "done"})
    await UnitRestarter(jobs).restart("child.service")   # no RestartError
    assert jobs.calls == ["reset child.service", "restart child.service", "start child.service"]


async def test_a_cancelled_restart_whose_replacement_failed_is_a_failed_restart() -> None:
    jobs = FakeJobs({"child.service": "canceled"}, {"child.service": "dependency"})
    with pytest.raises(RestartError) as caught:
        await UnitRestarter(jobs).restart("child.service")
    assert caught.value.result == "dependency"
    assert 'expected "done" but received "dependency"' in str(caught.value)


@pytest.mark.parametrize("result", ["failed", "dependency", "skipped", "timeout"])
async def test_other_job_results_fail_the_restart_without_a_second_job(result: str) -> None:
    jobs = FakeJobs({"web.service": result})
    with pytest.raises(RestartError):
        await UnitRestarter(jobs).restart("web.service")
    assert jobs.calls == ["reset web.service", "restart web.service"]

"""What the host allows an update run: its floors, the gate's critical path, and efficiency (issue 13).

Pure functions over what a run left behind: the CPU time of the machine, registry and proxies
(the benchmark's cgroup), systemd's own timings of every unit's restart (monotonic timestamps,
the same clock on the host and in the machine: nspawn does not namespace time), and the
configured gate.  No IO here, so every figure can be checked in a unit test.

- **CPU floor**: CPU seconds of the whole run / CPUs: no scheduler can finish sooner.
- **restart floor**: the sum of the units' own restart durations (systemd: a unit's
  `ActiveExitTimestampMonotonic`, when its stop began, to `ActiveEnterTimestampMonotonic`, when
  the new container was up) / the restart bound: restarts that must wait (a service draining
  for a second) cannot overlap more than the bound lets them.  podman's bound is 1.
- **gate path**: the settle waits that must lie in sequence.  With canary order an image is
  proven by its canary's settle time before its followers restart, and the followers must settle
  too before the run calls them updated: one settle time per *wave* (canaries, then followers).
  The waves are counted from what the run did (`waves`: the restart generations seen per image
  in systemd's timings), never from the configuration alone.
- **efficiency** = (max(CPU floor, restart floor) + gate path) / wall time.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Restart:
    """One unit's restart in a run, in seconds on the monotonic clock."""

    unit: str
    image: str  # the repository the unit runs
    stopped: float  # ActiveExitTimestampMonotonic: the old container's stop began
    started: float  # ActiveEnterTimestampMonotonic: the new one is up

    @property
    def seconds(self) -> float:
        return max(0.0, self.started - self.stopped)


def parse_show(text: str) -> dict[str, dict[str, str]]:
    """`systemctl show -p A,B UNIT...` output: unit Id -> properties."""
    units: dict[str, dict[str, str]] = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in props:
            units[props["Id"]] = props
    return units


def restarts(
    before: Mapping[str, str], after: Mapping[str, Mapping[str, str]], image_of: Mapping[str, str]
) -> list[Restart]:
    """The restarts of a run: units whose InvocationID changed (`before`: unit -> InvocationID),
    with systemd's timestamps (microseconds) of the last one."""
    found = []
    for unit, props in after.items():
        if unit not in before or before[unit] == props.get("InvocationID", ""):
            continue
        try:
            stopped = int(props["ActiveExitTimestampMonotonic"]) / 1e6
            started = int(props["ActiveEnterTimestampMonotonic"]) / 1e6
        except (KeyError, ValueError):
            continue
        if stopped and started:
            found.append(Restart(unit, image_of.get(unit, ""), stopped, started))
    return sorted(found, key=lambda r: r.stopped)


@dataclass(frozen=True)
class Waves:
    """The canary order as the run did it, per image: the canary (first to stop), and how long
    the first follower waited after the canary was up (its gate's settle, plus any queueing)."""

    count: int  # restart generations in sequence: 1 (canaries only) or 2 (canaries, then followers)
    follower_waits: dict[str, float] = field(default_factory=dict)  # image -> first follower stop - canary up
    early_followers: int = 0  # followers that stopped before their canary was up (no canary order)


def waves(restarted: Sequence[Restart]) -> Waves:
    by_image: dict[str, list[Restart]] = {}
    for r in restarted:
        by_image.setdefault(r.image, []).append(r)
    if not by_image:
        return Waves(0)
    waits: dict[str, float] = {}
    early = 0
    for image, units in by_image.items():
        canary, *followers = sorted(units, key=lambda r: r.stopped)
        if followers:
            waits[image] = followers[0].stopped - canary.started
            early += sum(1 for f in followers if f.stopped < canary.started)
    return Waves(2 if waits else 1, waits, early)


def gate_path(*, gate: bool, settle: float, run_waves: Waves) -> float:
    """The settle waits in sequence: one settle time per wave the run had, none without the gate."""
    return settle * run_waves.count if gate else 0.0


@dataclass(frozen=True)
class Ceiling:
    """One update run against what the host allows."""

    wall_s: float
    cpu_s: float
    cpus: int
    bound: int
    restart_sum_s: float
    gate_s: float
    own_cpu_s: float | None = None

    @property
    def cpu_floor_s(self) -> float:
        return self.cpu_s / self.cpus

    @property
    def restart_floor_s(self) -> float:
        return self.restart_sum_s / max(1, self.bound)

    @property
    def floor_s(self) -> float:
        return max(self.cpu_floor_s, self.restart_floor_s)

    @property
    def limit(self) -> str:
        """Which floor the run hits: the larger one."""
        return "CPU" if self.cpu_floor_s >= self.restart_floor_s else "restart"

    @property
    def efficiency(self) -> float:
        return (self.floor_s + self.gate_s) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def own_cpu_share(self) -> float | None:
        if self.own_cpu_s is None or self.cpu_s <= 0:
            return None
        return self.own_cpu_s / self.cpu_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 2),
            "cpus": self.cpus,
            "bound": self.bound,
            "restart_sum_s": round(self.restart_sum_s, 2),
            "cpu_floor_s": round(self.cpu_floor_s, 2),
            "restart_floor_s": round(self.restart_floor_s, 2),
            "gate_path_s": round(self.gate_s, 2),
            "limit": self.limit,
            "efficiency": round(self.efficiency, 3),
            "own_cpu_s": None if self.own_cpu_s is None else round(self.own_cpu_s, 3),
            "own_cpu_share": None if self.own_cpu_share is None else round(self.own_cpu_share, 4),
        }


def growth(figures: Mapping[int, float]) -> dict[int, float]:
    """Each size's figure over the smallest size's (1.0 for the smallest)."""
    if not figures:
        return {}
    base = figures[min(figures)]
    return {size: (value / base if base > 0 else 0.0) for size, value in sorted(figures.items())}


def grows_with_references(check_s: Mapping[int, float], containers: Mapping[int, int], refs: Mapping[int, int]) -> bool:
    """The check grows with distinct references, not containers: from the smallest to the largest
    size its time grows by at most the references' factor (+25 % for noise), which must be below
    the containers' factor for the test to tell the two apart."""
    if len(check_s) < 2:
        return False
    small, large = min(check_s), max(check_s)
    by_refs = refs[large] / refs[small]
    by_containers = containers[large] / containers[small]
    if by_containers <= by_refs * 1.25:
        return False  # the sizes cannot tell references from containers
    return check_s[large] / check_s[small] <= by_refs * 1.25


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass(frozen=True)
class Verdict:
    target: str
    met: bool
    measured: str
    why: str = ""  # where not met: which floor the figures show it hits

    def line(self) -> str:
        text = f"{'met    ' if self.met else 'NOT met'}  {self.target}: {self.measured}"
        return text + (f" ({self.why})" if self.why and not self.met else "")

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "met": self.met, "measured": self.measured, "why": self.why}

"""Crash recovery (autoupdated/recovery.py) against a real history database and the engine fakes.

Each test writes the intents a killed daemon would have left (History.intent/step with no
outcome), lays out what podman and systemd show afterwards, runs `recover`, and checks what was
tagged, restarted and recorded.  The same scenarios with real processes are in
tests/machine/test_faults.py.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autoupdated import engine
from autoupdated.adapters.history import History
from autoupdated.engine.failed import FailedUnits
from autoupdated.engine.recovery import recover
from autoupdated.errors import NoSuchObject
from autoupdated.model import ContainerInfo, ContainerState, Status, UnitState
from tests import fakes
from tests.fakes import FakePodman, FakePuller, FakeRestarter, container, image

DIGEST_OLD = "sha256:" + "0" * 64
DIGEST_NEW = "sha256:" + "1" * 64


def ref(n: int) -> str:
    return f"registry.test/app{n}:latest"


class Podman(FakePodman):
    """FakePodman that also knows images by ID and containers that are gone."""

    missing: set[str]

    async def image_id(self, name: str) -> str:
        if name in self.images_by_id:
            return name
        if name not in self.local_names:
            raise NoSuchObject(f"{name}: image not known")
        return self.local_names[name]

    async def container_state(self, name: str) -> ContainerState | None:
        if name in getattr(self, "missing", set()) and name not in self.running:
            return None
        return await super().container_state(name)


@dataclass
class FakeUnits:
    """systemd's view: units in `failed` are failed until the restarter restarts them."""

    restarter: FakeRestarter
    failed: set[str] = field(default_factory=set)
    looping: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    connected: bool = False

    async def connect(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    async def state(self, unit: str) -> UnitState:
        if unit in self.gone:
            return UnitState(unit, "not-found", "inactive", "dead", 0)
        restarted = unit in self.restarter.restarts
        if unit in self.failed and not restarted:
            return UnitState(unit, "loaded", "failed", "failed", 0, "exit-code")
        if unit in self.looping and not restarted:
            return UnitState(unit, "loaded", "activating", "auto-restart", 0, "exit-code", 3)
        return UnitState(unit, "loaded", "active", "running", 0)

    async def settled(self, unit: str, wait: float) -> UnitState:
        return await self.state(unit)


class World:
    """A history with intents left in progress, and fakes for what the machine shows now."""

    def __init__(self, tmp_path: Path, n: int = 1, *, shared: bool = False) -> None:
        refs = [ref(1) if shared else ref(i) for i in range(1, n + 1)]
        self.podman = Podman(
            [container(i, refs[i - 1], image_id=f"old{i}") for i in range(1, n + 1)],
            images_by_id={f"old{i}": image(f"old{i}", DIGEST_OLD) for i in range(1, n + 1)},
        )
        self.podman.missing = set()
        self.podman.local_names = {c.raw_image_name: c.image_id for c in reversed(self.podman.containers)}
        for i in range(1, n + 1):
            self.podman.images_by_id[f"new{i}"] = image(f"new{i}", DIGEST_NEW)
        self.puller = FakePuller({}, podman=self.podman)
        self.restarter = FakeRestarter(podman=self.podman)
        self.units = FakeUnits(self.restarter)
        self.adapters = fakes.adapters(self.podman, puller=self.puller, restarter=self.restarter)
        self.adapters.units = self.units
        self.history = History(tmp_path / "history.db", run_id="killed-run")
        self.options = engine.Options(settle_time=0.05, poll_interval=0.01, health_timeout=0.5)

    def interrupted(self, n: int, *, pulled: bool = True, tag_moved: bool = True) -> None:
        """Unit n's intent (and step, when pulled) recorded, then the daemon died."""
        c = self.podman.containers[n - 1]
        entry = engine.Entry(
            unit=f"container-c{n}.service",
            container_id=c.id,
            container_name=c.name,
            image=c.raw_image_name,
            policy="registry",
            updated=Status.FAILED,
            old_digest=DIGEST_OLD,
            new_digest=DIGEST_NEW,
            old_image_id=c.image_id,
        )
        record = self.history.intent(entry.unit, [entry])
        if pulled:
            entry.new_image_id = f"new{n}"
            self.history.step(record, [entry])
        if tag_moved:
            self.podman.local_names[c.raw_image_name] = f"new{n}"

    def running(self, n: int, image_id: str) -> None:
        """What systemd started before the daemon came back: container n on `image_id`."""
        self.podman.running[f"c{n}"] = ContainerState(f"after{n}", image_id, "running", True, 0, "t", "", False)
        self.podman.started[f"c{n}"] = time.monotonic()

    async def recover(self) -> engine.RunResult:
        return await recover(self.options, self.adapters, self.history)

    def results(self) -> dict[str, tuple[str, str]]:
        return {r.container_name: (r.result, r.error or "") for r in self.history.rows()}


async def test_nothing_pending_touches_nothing(tmp_path: Path) -> None:
    w = World(tmp_path)
    result = await w.recover()
    assert result.entries == [] and not w.units.connected and w.restarter.restarts == []


async def test_unit_on_its_new_image_passes_the_gate_and_counts_as_updated(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.interrupted(1)
    w.running(1, "new1")
    result = await w.recover()
    assert [e.updated for e in result.entries] == [Status.UPDATED]
    assert w.restarter.restarts == [] and w.podman.tags == []
    assert w.results() == {"c1": ("true", "")}
    assert w.history.pending() == [] and w.history.integrity() == "ok"


async def test_unit_on_its_new_image_that_crashes_is_rolled_back(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.interrupted(1)
    w.running(1, "new1")
    w.podman.crashing["new1"] = 0.02
    result = await w.recover()
    assert [e.updated for e in result.entries] == [Status.ROLLED_BACK]
    assert w.podman.tags == [("old1", ref(1))] and w.restarter.restarts == ["container-c1.service"]
    assert w.podman.running["c1"].image_id == "old1"
    result_word, error = w.results()["c1"]
    assert result_word == "rolled back" and "container c1 in unit container-c1.service exited" in error


async def test_unit_never_restarted_gets_its_old_tag_back_and_stays_pending(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.interrupted(1)  # pulled, tag moved, killed before the restart: c1 still runs old1
    result = await w.recover()
    assert [e.updated for e in result.entries] == [Status.PENDING]
    assert w.podman.tags == [("old1", ref(1))] and w.restarter.restarts == []
    word, error = w.results()["c1"]
    assert word == "pending"
    assert "stopped before restarting unit container-c1.service" in error and "the next run updates it" in error
    assert any("container-c1.service" in text for text in result.warnings)


async def test_killed_during_the_pull_the_tag_is_checked_too(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.interrupted(1, pulled=False, tag_moved=True)  # podman finished the pull after the daemon died
    await w.recover()
    assert w.podman.tags == [("old1", ref(1))]
    w2 = World(tmp_path / "2")
    w2.interrupted(1, pulled=False, tag_moved=False)
    await w2.recover()
    assert w2.podman.tags == [] and w2.results()["c1"][0] == "pending"


async def test_failed_unit_is_rolled_back_and_must_come_up(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.interrupted(1)
    w.podman.missing.add("c1")  # --new: the container was removed when the unit failed
    w.units.failed.add("container-c1.service")
    result = await w.recover()
    assert [e.updated for e in result.entries] == [Status.ROLLED_BACK]
    assert w.podman.tags == [("old1", ref(1))] and w.restarter.restarts == ["container-c1.service"]
    word, error = w.results()["c1"]
    assert word == "rolled back"
    assert "unit container-c1.service is failed (failed), result exit-code" in error
    assert "container c1 does not exist" in error


async def test_rolled_back_unit_that_does_not_come_up_is_failed(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.interrupted(1)
    w.podman.missing.add("c1")
    w.units.looping.add("container-c1.service")
    w.podman.crashing["old1"] = 0.01  # the old image crashes too now
    result = await w.recover()
    assert [e.updated for e in result.entries] == [Status.FAILED]
    word, error = w.results()["c1"]
    assert word == "failed" and "was rolled back to its previous image but does not come up" in error
    assert w.history.pending() == []


async def test_pruned_old_image_is_pulled_again_by_digest(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.interrupted(1)
    w.podman.missing.add("c1")
    w.units.failed.add("container-c1.service")
    del w.podman.images_by_id["old1"]
    w.puller.new_ids[f"registry.test/app1@{DIGEST_OLD}"] = "old1"
    await w.recover()
    assert w.puller.pulled == [f"registry.test/app1@{DIGEST_OLD}"]
    assert w.podman.tags == [("old1", ref(1))] and w.results()["c1"][0] == "rolled back"


async def test_old_image_gone_for_good_means_no_restart_onto_the_unproven_one(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.interrupted(1)
    w.podman.missing.add("c1")
    w.units.failed.add("container-c1.service")
    del w.podman.images_by_id["old1"]
    w.puller.errors[f"registry.test/app1@{DIGEST_OLD}"] = RuntimeError("manifest unknown")
    result = await w.recover()
    assert w.restarter.restarts == []
    word, error = w.results()["c1"]
    assert word == "failed" and "manifest unknown" in error
    assert any("rolling back container c1" in text for text in result.errors)


async def test_a_reference_proven_by_one_unit_is_not_untagged_for_another(tmp_path: Path) -> None:
    w = World(tmp_path, 2, shared=True)
    w.interrupted(1)
    w.interrupted(2)
    w.podman.local_names[ref(1)] = "new1"
    w.running(1, "new1")  # unit 1 restarted onto the new image; unit 2 waited for it (canary)
    await w.recover()
    results = w.results()
    assert results["c1"][0] == "true" and results["c2"][0] == "pending"
    assert w.podman.tags == [], "the proven tag stays; unit 2 is updated by the next run"


async def test_unit_file_gone(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.interrupted(1)
    w.units.gone.add("container-c1.service")
    result = await w.recover()
    word, error = w.results()["c1"]
    assert word == "failed" and "not-found" in error and w.restarter.restarts == []
    assert w.podman.tags == [("old1", ref(1))] and result.failed


# -- failed units (update_failed_units) ---------------------------------------------------------


class StoppedPodman(Podman):
    """Answers FailedUnits' list of all labelled containers."""

    stopped: list[ContainerInfo]

    async def stopped_labelled_containers(self) -> list[ContainerInfo]:
        return [c for c in self.stopped if c.state != "running" and not c.pod_id]


async def test_failed_units_come_from_the_history_and_stopped_containers(tmp_path: Path) -> None:
    podman = StoppedPodman([], images_by_id={"img1": image("img1", DIGEST_OLD), "img3": image("img3", DIGEST_OLD)})
    podman.local_names = {ref(1): "img1", ref(3): "img3"}
    podman.stopped = [
        ContainerInfo(
            "3" * 64,
            "c3",
            "img3",
            ref(3),
            {"io.containers.autoupdate": "registry", "PODMAN_SYSTEMD_UNIT": "container-c3.service"},
            state="exited",
        ),
    ]
    history = History(tmp_path / "h.db")
    history.remember(
        [
            ("container-c1.service", container(1, ref(1), labels={"io.containers.autoupdate.authfile": "/a.json"})),
            ("container-c2.service", container(2, ref(2))),  # not failed
            ("container-c4.service", container(4, ref(4))),  # failed, but its image is gone
        ]
    )
    units = FakeUnits(
        FakeRestarter(), failed={"container-c1.service", "container-c4.service"}, looping={"container-c3.service"}
    )
    finder = FailedUnits(podman, history, units)
    found = await finder.find(skip_units=set())
    assert [(c.name, c.image_id, c.labels.get("io.containers.autoupdate.authfile")) for c in found] == [
        ("c1", "img1", "/a.json"),
        ("c3", "img3", None),
    ]
    assert await finder.find(skip_units={"container-c1.service", "container-c3.service"}) == []


async def test_engine_updates_a_failed_unit_only_when_asked(tmp_path: Path) -> None:
    """Opt-in: the failed unit's container joins the run, is pulled, restarted and gated."""
    podman = Podman([], images_by_id={"crashy": image("crashy", DIGEST_OLD), "fixed": image("fixed", DIGEST_NEW)})
    podman.missing = {"c1"}
    podman.local_names = {ref(1): "crashy"}

    class Finder:
        calls = 0

        async def find(self, skip_units: set[str]) -> list[ContainerInfo]:
            Finder.calls += 1
            return [container(1, ref(1), image_id="crashy")]

    restarter = FakeRestarter(podman=podman)
    podman.containers = [container(1, ref(1), image_id="crashy")]
    puller = FakePuller({ref(1): "fixed"}, podman=podman)
    comparer = fakes.FakeComparer({ref(1): DIGEST_NEW})

    async def listed() -> list[ContainerInfo]:
        return []  # podman lists no running container: the unit has failed

    podman.labelled_containers = listed  # type: ignore[method-assign]
    adapters = fakes.adapters(podman, comparer, puller, restarter)
    adapters.failed_units = Finder()
    options = engine.Options(settle_time=0.05, poll_interval=0.01)
    result = await engine.run(options, adapters=adapters)
    assert result.entries == [] and Finder.calls == 0, "off by default"

    result = await engine.run(
        engine.Options(settle_time=0.05, poll_interval=0.01, update_failed_units=True), adapters=adapters
    )
    assert [(e.container_name, e.updated) for e in result.entries] == [("c1", Status.UPDATED)], result.errors
    assert restarter.restarts == ["container-c1.service"] and podman.running["c1"].image_id == "fixed"


# -- the daemon: interrupted updates are finished at start, before any other run -----------------


async def test_daemon_start_runs_recovery_first_when_the_history_has_intents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoupdated import config as config_mod
    from autoupdated.adapters import journal
    from autoupdated.adapters.notify import Notifier
    from autoupdated.daemon import service as daemon_mod
    from tests.harness.sinks import Sink, wait_for

    for name in list(os.environ):
        if name.startswith("AUTOUPDATED_"):
            monkeypatch.delenv(name)
    state = tmp_path / "state"
    with History(state / "history.db") as history:
        history.intent(
            "container-c1.service",
            [engine.Entry("container-c1.service", "1" * 64, "c1", ref(1), "registry", Status.FAILED)],
        )
    calls: list[tuple[str, str | None]] = []

    async def fake_recovery(options: engine.Options, *, stop: object = None) -> engine.RunResult:
        calls.append(("recovery", options.history_path))
        result = engine.RunResult()
        result.entries.append(engine.Entry("container-c1.service", "1" * 64, "c1", ref(1), "registry", Status.UPDATED))
        return result

    async def fake_run(options: engine.Options, *, stop: object = None) -> engine.RunResult:
        calls.append(("run", options.history_path))
        return engine.RunResult()

    monkeypatch.setattr(daemon_mod, "_recovery_run", fake_recovery)
    monkeypatch.setattr(daemon_mod, "_engine_run", fake_run)
    path = tmp_path / "autoupdated.toml"
    path.write_text(
        f'state_dir = "{state}"\ncontrol_socket = "{tmp_path}/c.sock"\nrandomized_delay = 0\n'
        'schedule = "0 0 1 1 *"\nrun_on_start = true\n'
    )
    sink = Sink(tmp_path / "journal.sock")

    def serve() -> tuple[daemon_mod.Daemon, asyncio.Task[int]]:
        d = daemon_mod.Daemon(
            config_mod.load(path),
            notifier=Notifier(None),
            journal=journal.Journal(sink.path),
            install_signals=False,
            manage_logging=False,
        )
        return d, asyncio.create_task(d.serve())

    d, task = serve()
    try:
        await wait_for(lambda: d.runs_completed >= 1, what="the first run")
        db = str(state / "history.db")
        assert calls[0] == ("run", db), "run_on_start's run was already starting: it recovers first itself"
        warned = [e for e in sink.drain() if "interrupted" in e.get("MESSAGE", "")]
        assert warned and "1 unit update(s) were interrupted" in warned[0]["MESSAGE"]
    finally:
        d.stop()
        await asyncio.wait_for(task, 30)

    # Without run_on_start: a run of its own, reason "recovery", only the recovery.
    path.write_text(path.read_text().replace("run_on_start = true\n", ""))
    calls.clear()
    d, task = serve()
    try:
        await wait_for(lambda: d.runs_completed >= 1, what="the recovery run")
        assert calls == [("recovery", str(state / "history.db"))]
        assert d.last_run is not None and d.last_run["reason"] == "recovery"
        assert d.last_run["entries"][0]["updated"] == "true"
    finally:
        d.stop()
        await asyncio.wait_for(task, 30)
        sink.close()


async def test_an_interrupted_manual_rollback_is_finished_as_a_rollback(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.history.action = "rollback"
    w.interrupted(1)  # "new" here is the image the rollback puts back
    w.running(1, "new1")
    await w.recover()
    assert w.results()["c1"][0] == "rolled back"
    assert w.history.held(ref(1), DIGEST_OLD) is not None, "the image rolled back from stays held"

"""Finishing what a dead daemon left half done, and finding units that failed.

Crash recovery (`recover`): the engine records an intent for every unit before its pulls and the
outcome after its restart and health gate (autoupdated/history.py).  An intent still
'in progress' at the next start means the daemon was killed (SIGKILL, OOM, power cut) somewhere
between the pull and a proven restart.  For each such unit, once systemd has no job left for it:

    the unit is active, its containers run the new images   -> the health gate (Engine.verify_unit):
                                                               passed: true; failed: rolled back
    the unit is active, its containers run the old images   -> it was never restarted: the old
                                                               images are tagged again (unless this
                                                               recovery proved the new one in another
                                                               unit); pending, the next run updates it
    anything else (failed, stopped, crash-looping, missing   -> rolled back (Engine.roll_back: re-tag
    or mixed containers)                                       the old images, restart), then checked

so no unit stays stopped or on an image that was never proven.  An old image that is gone from
local storage (pruned) is pulled again by its digest first.

Failed units (`FailedUnits`, opt-in `update_failed_units`, podman issue #28925): a unit whose
container crashed is failed or crash-looping, and with `podman generate systemd --new` its
container is removed, so podman's label scan never sees it and a fixed release never reaches it.
The candidates are the units the engine saw running a labelled container in an earlier run (the
history's `units` table: unit, container name, reference, policy, auth file) plus labelled
containers podman still has in a non-running state; a candidate is taken when systemd says its unit
is loaded and `failed`, or `activating` in `auto-restart` (between crash-loop restarts).  Its
container then joins the run as if it ran the image its reference names locally now.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autoupdated.model import AUTHFILE_LABEL, AUTOUPDATE_LABEL, UNIT_LABEL, ContainerInfo, ImageInfo, Policy, Status

if TYPE_CHECKING:
    from autoupdated.adapters.history import History, Intent, Row
    from autoupdated.adapters.podman import ContainerState, Podman
    from autoupdated.engine import Engine, Options, RunResult, Task

log = logging.getLogger("autoupdated")
progress = logging.getLogger("autoupdated.progress")

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
_TRANSIENT = ("activating", "deactivating", "reloading")


class RecoveryError(Exception):
    """Why an interrupted update had to be rolled back."""


# ---------------------------------------------------------------------------------------------
# systemd: unit states over D-Bus


@dataclass(frozen=True, slots=True)
class UnitState:
    unit: str
    load_state: str
    active_state: str
    sub_state: str
    job: int  # 0: no job queued or running for the unit
    result: str = ""
    n_restarts: int = 0

    @property
    def crash_looping(self) -> bool:
        return self.active_state == "activating" and self.sub_state == "auto-restart"

    @property
    def broken(self) -> bool:
        """Failed, or waiting to be restarted after a crash."""
        return self.active_state == "failed" or self.crash_looping

    def __str__(self) -> str:
        text = f"{self.active_state} ({self.sub_state})"
        if self.result and self.result != "success":
            text += f", result {self.result}"
        return text


class UnitsUnavailable(Exception):
    """The bus cannot be reached."""


class SystemdUnits:
    """Reads unit states from systemd over its own D-Bus connection."""

    def __init__(self, bus: str | None = None) -> None:
        from autoupdated.parts.restarter import default_bus

        self.bus = bus or default_bus()
        self._router: Any = None
        self._connection: Any = None

    async def connect(self) -> None:
        if self._router is not None:
            return
        from jeepney.io.asyncio import DBusRouter, open_dbus_connection

        from autoupdated.parts.restarter import bus_address

        address = bus_address(self.bus)
        try:
            self._connection = await open_dbus_connection(address)
        except (OSError, ValueError, KeyError, TimeoutError) as err:
            raise UnitsUnavailable(
                f"cannot connect to the {self.bus} D-Bus at {address}: {err}; unit states cannot be read "
                "(is dbus running?)"
            ) from None
        self._router = DBusRouter(self._connection)
        await self._router.__aenter__()

    async def close(self) -> None:
        if self._router is not None:
            with contextlib.suppress(Exception):
                await self._router.__aexit__(None, None, None)
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._router = None

    async def aclose(self) -> None:
        await self.close()

    async def _call(self, message: Any) -> Any:
        from jeepney import DBusErrorResponse
        from jeepney.low_level import MessageType

        await self.connect()
        reply = await self._router.send_and_get_reply(message)
        if reply.header.message_type == MessageType.error:
            raise DBusErrorResponse(reply)
        return reply.body

    async def state(self, unit: str) -> UnitState:
        """The unit's state now (LoadUnit: also for units systemd has not loaded)."""
        from jeepney import DBusAddress, Properties, new_method_call

        manager = DBusAddress(SYSTEMD_PATH, bus_name=SYSTEMD, interface=MANAGER)
        (path,) = await self._call(new_method_call(manager, "LoadUnit", "s", (unit,)))
        (props,) = await self._call(Properties(DBusAddress(path, bus_name=SYSTEMD, interface=UNIT_IFACE)).get_all())
        values = {key: value[1] for key, value in props.items()}
        job = values.get("Job") or (0, "/")
        result, restarts = "", 0
        if unit.endswith(".service") and values.get("LoadState") == "loaded":
            with contextlib.suppress(Exception):
                (service,) = await self._call(
                    Properties(DBusAddress(path, bus_name=SYSTEMD, interface=SERVICE_IFACE)).get_all()
                )
                result = str(service.get("Result", ("s", ""))[1])
                restarts = int(service.get("NRestarts", ("u", 0))[1])
        return UnitState(
            unit=unit,
            load_state=str(values.get("LoadState", "")),
            active_state=str(values.get("ActiveState", "")),
            sub_state=str(values.get("SubState", "")),
            job=int(job[0]),
            result=result,
            n_restarts=restarts,
        )

    async def settled(self, unit: str, wait: float, poll: float = 0.5) -> UnitState:
        """The unit's state once no job runs for it and it is not half-way (waiting at most `wait` s).

        A crash-looping unit (activating/auto-restart) counts as settled: it may loop for good.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            state = await self.state(unit)
            busy = state.job != 0 or (state.active_state in _TRANSIENT and not state.crash_looping)
            if not busy or loop.time() >= deadline:
                return state
            await asyncio.sleep(poll)


# ---------------------------------------------------------------------------------------------
# Images: put an old image back, pulling it by digest when it was pruned


async def ensure_image(engine: Engine, task: Task, image_id: str, digest: str) -> None:
    """Make sure `image_id` is in local storage: pull `name@digest` when it is not."""
    from autoupdated.adapters.podman import PodmanError
    from autoupdated.reference import parse_for_autoupdate

    podman: Any = engine.a.podman
    try:
        await podman.image_id(image_id)
        return
    except PodmanError as err:
        if "no such" not in str(err).lower() and "not known" not in str(err).lower():
            raise
    if not digest or task.policy is not Policy.REGISTRY:
        raise RecoveryError(
            f"the previous image {image_id[:12]} of container {task.container.name} is no longer in local "
            "storage and cannot be pulled again (no digest recorded or not a registry image)"
        )
    ref = parse_for_autoupdate(task.raw_image)
    by_digest = f"{ref.name}@{digest}"
    progress.info("Pulling the previous image %s again (it was removed from local storage)", by_digest)
    credentials = engine.a.credentials_for(ref, task.authfile)
    pulled = await engine.a.puller.pull(by_digest, credentials=credentials, tls_verify=engine.options.tls_verify)
    if pulled != image_id:
        log.warning("pulling %s gave image %s, not %s; using it", by_digest, pulled[:12], image_id[:12])


# ---------------------------------------------------------------------------------------------
# Crash recovery


def task_from_row(row: Row, *, authfile: str | None = None) -> Task:
    """The engine's Task for one recorded container: the old image is what the container ran."""
    from autoupdated.engine import Task

    container = ContainerInfo(
        id=row.container_id,
        name=row.container_name,
        image_id=row.old_image_id,
        raw_image_name=row.reference,
        labels={UNIT_LABEL: row.unit, AUTOUPDATE_LABEL: row.policy},
        state="",
    )
    try:
        policy = Policy(row.policy)
    except ValueError:
        policy = Policy.REGISTRY
    task = Task(container, policy, row.unit, authfile)
    task.image = ImageInfo(id=row.old_image_id, digest=row.old_digest)
    task.new_image_id = row.new_image_id
    task.new_digest = row.new_digest
    task.status = Status.FAILED
    return task


@dataclass
class _Plan:
    intent: Intent
    tasks: list[Task]
    state: UnitState
    containers: dict[str, ContainerState | None]

    @property
    def unit(self) -> str:
        return self.intent.unit

    def on(self, which: str) -> bool:
        """Every container runs its old (`which`="old") or new image, in an active unit."""
        if self.state.active_state != "active":
            return False
        for task in self.tasks:
            state = self.containers.get(task.container.name)
            wanted = task.container.image_id if which == "old" else (task.new_image_id or task.container.image_id)
            if state is None or not state.running or state.image_id != wanted:
                return False
        return True

    @property
    def changed(self) -> bool:
        return any(t.new_image_id and t.new_image_id != t.container.image_id for t in self.tasks)

    def describe(self) -> str:
        parts = []
        for task in self.tasks:
            state = self.containers.get(task.container.name)
            if state is None:
                parts.append(f"container {task.container.name} does not exist")
            elif not state.running:
                parts.append(f"container {task.container.name} is {state.status or 'not running'}")
            elif state.image_id == task.new_image_id:
                parts.append(f"container {task.container.name} runs the new image {state.image_id[:12]}")
            elif state.image_id == task.container.image_id:
                parts.append(f"container {task.container.name} runs the previous image {state.image_id[:12]}")
            else:
                parts.append(f"container {task.container.name} runs image {state.image_id[:12]}")
        return f"unit {self.unit} is {self.state}; " + ", ".join(parts)


class Recovery:
    """Finishes every 'in progress' intent of one history database; see the module docstring."""

    def __init__(self, engine: Engine, history: History, units: SystemdUnits) -> None:
        self.engine = engine
        self.history = history
        self.units = units
        self.proven: dict[str, str] = {}  # reference -> image ID proven by a unit in this recovery
        self.authfiles: dict[tuple[str, str], str | None] = {}
        self.plans: list[_Plan] = []

    async def run(self) -> None:
        intents = self.history.pending()
        if not intents:
            return
        for known in self.history.known_units():
            self.authfiles[(known.unit, known.container_name)] = known.authfile
        progress.info("Finishing %d interrupted unit update(s) found in %s", len(intents), self.history.path)
        plans = [await self.inspect(intent) for intent in intents]
        # Units already on their new images first: what they prove decides the others' tags.
        plans.sort(key=lambda p: (not (p.changed and p.on("new")), p.intent.id))
        for plan in plans:
            self.plans.append(plan)
            await self.finish(plan)

    async def inspect(self, intent: Intent) -> _Plan:
        tasks = [
            task_from_row(row, authfile=self.authfiles.get((row.unit, row.container_name)) or None)
            for row in intent.rows
        ]
        state = await self.units.settled(intent.unit, wait=self.engine.options.restart_timeout)
        containers = {t.container.name: await self.engine.a.podman.container_state(t.container.name) for t in tasks}
        return _Plan(intent, tasks, state, containers)

    async def finish(self, plan: _Plan) -> None:
        engine, unit = self.engine, plan.unit
        record = self.history.record_of(plan.intent)
        started = plan.intent.started
        if plan.state.load_state not in ("loaded", ""):
            message = (
                f"unit {unit} is {plan.state.load_state} now (its unit file is gone?): the interrupted update "
                f"of {started} cannot be finished; its previous images are tagged again"
            )
            await self.retag_old(plan, only_unproven=True)
            for task in plan.tasks:
                task.status, task.error = Status.FAILED, message
            engine.error(message)
        elif plan.on("old"):
            retagged = await self.retag_old(plan, only_unproven=True)
            note = f"; its previous image was tagged again ({', '.join(retagged)})" if retagged else ""
            for task in plan.tasks:
                task.status = Status.PENDING
                task.error = (
                    f"autoupdated stopped before restarting unit {unit} (update of {started}): it still runs "
                    f"its previous image{note}; the next run updates it"
                )
            engine.warn(f"unit {unit}: {plan.tasks[0].error}")
        elif plan.changed and plan.on("new"):
            progress.info("Unit %s runs its new image after an interrupted update: checking it", unit)
            try:
                await engine.verify_unit(unit, plan.tasks)
            except Exception as err:
                engine.warn(f"unit {unit}: the interrupted update of {started} fails the health gate: {err}")
                await self.roll_back(plan, err)
            else:
                for task in plan.tasks:
                    task.status, task.error = Status.UPDATED, None
                    if task.new_image_id:
                        self.proven[task.raw_image] = task.new_image_id
        else:
            reason = RecoveryError(
                f"autoupdated was interrupted during the update of {started} and found {plan.describe()}"
            )
            engine.warn(f"{reason}; rolling back to the previous image")
            await self.roll_back(plan, reason)
        if plan.intent.action == "rollback":
            # An interrupted `autoupdated rollback`: its "new" image is the one rolled back to.
            for task in plan.tasks:
                if task.status is Status.UPDATED:
                    task.status = Status.ROLLED_BACK
                elif task.status is Status.ROLLED_BACK:
                    task.status = Status.FAILED
        self.history_outcome(record, plan.tasks)

    def history_outcome(self, record: object, tasks: list[Task]) -> None:
        try:
            self.history.outcome(record, [task.entry() for task in tasks])
        except Exception as err:
            self.engine.error(f"{err}; the next start tries again")

    async def retag_old(self, plan: _Plan, *, only_unproven: bool) -> list[str]:
        """Point each reference back at the old image unless this recovery proved the tag's image."""
        done = []
        for task in plan.tasks:
            ref, old = task.raw_image, task.container.image_id
            if not old:
                continue
            try:
                current = await self.engine.a.podman.image_id(ref)
            except Exception:
                current = ""
            if current == old or (only_unproven and current and self.proven.get(ref) == current):
                continue
            try:
                await ensure_image(self.engine, task, old, task.image.digest if task.image else "")
                await self.engine.a.podman.tag(old, ref)
                done.append(f"{ref} -> {old[:12]}")
            except Exception as err:
                self.engine.error(
                    task.fail(f"tagging the previous image {old[:12]} of container {task.container.name} again: {err}")
                )
        return done

    async def roll_back(self, plan: _Plan, reason: BaseException) -> None:
        """Engine.roll_back (re-tag, restart), then make sure the unit came up on the old images."""
        engine, unit = self.engine, plan.unit
        for task in plan.tasks:
            try:
                await ensure_image(engine, task, task.container.image_id, task.image.digest if task.image else "")
            except Exception as err:
                engine.error(task.fail(f"rolling back container {task.container.name} in unit {unit}: {err}"))
        if any(task.error for task in plan.tasks):
            return  # restarting without the old image would start the unproven one again
        await engine.roll_back(unit, plan.tasks, reason)
        if any(task.status is not Status.ROLLED_BACK for task in plan.tasks):
            return
        back = [dataclasses.replace(task, new_image_id=task.container.image_id) for task in plan.tasks]
        try:
            await engine.verify_unit(unit, back)
        except Exception as err:
            message = f"unit {unit} was rolled back to its previous image but does not come up: {err}"
            engine.error(message)
            for task in plan.tasks:
                task.status, task.error = Status.FAILED, message


async def recover(
    options: Options,
    *,
    history: History | None = None,
    adapters: Any = None,
    units: SystemdUnits | None = None,
) -> RunResult:
    """Finish the interrupted updates recorded in the history; a RunResult like a run's.

    Raises engine.RunError when podman or D-Bus cannot be reached or the history cannot be read
    (the intents stay recorded for the next try).
    """
    from autoupdated import engine as engine_mod
    from autoupdated import wiring
    from autoupdated.adapters.history import History, HistoryError

    if history is None:
        if not options.history_path:
            return _empty(engine_mod.RunResult())
        try:
            history = History(options.history_path, action="recovery")
        except HistoryError as err:
            raise engine_mod.RunError(str(err)) from None
        try:
            return await recover(options, history=history, adapters=adapters, units=units)
        finally:
            history.close()
    try:
        pending = history.pending()
    except HistoryError as err:
        raise engine_mod.RunError(str(err)) from None
    if not pending:
        return _empty(engine_mod.RunResult())
    plain = dataclasses.replace(options, history_path=None, update_failed_units=False, dry_run=False)
    own_adapters, own_units = adapters is None, units is None
    adapters = adapters if adapters is not None else wiring.real_adapters(plain)
    units = units if units is not None else SystemdUnits(options.bus)
    engine = engine_mod.Engine(plain, adapters)
    try:
        await engine.connect_bus()
        try:
            await units.connect()
        except UnitsUnavailable as err:
            raise engine_mod.RunError(str(err)) from None
        recovery = Recovery(engine, history, units)
        await recovery.run()
        for plan in recovery.plans:
            engine.units.setdefault(plan.unit, []).extend(plan.tasks)
        engine.finish()
        return engine.result
    finally:
        if own_units:
            await units.close()
        if own_adapters:
            await adapters.aclose()


def _empty(result: RunResult) -> RunResult:
    result.finished = result.started
    return result


# ---------------------------------------------------------------------------------------------
# Failed and crash-looping units (update_failed_units)


class FailedUnits:
    """The engine's FailedUnitsPort: containers of units that failed or crash-loop; see above."""

    def __init__(self, podman: Podman, history: History | None, bus: str | None = None) -> None:
        self.podman = podman
        self.history = history
        self.units = SystemdUnits(bus)

    async def aclose(self) -> None:
        await self.units.close()

    async def candidates(self) -> dict[str, dict[str, ContainerInfo]]:
        """unit -> container name -> what the container was (labels, reference), from both sources."""
        found: dict[str, dict[str, ContainerInfo]] = {}
        if self.history is not None:
            for known in self.history.known_units():
                labels = {UNIT_LABEL: known.unit, AUTOUPDATE_LABEL: known.policy}
                if known.authfile:
                    labels[AUTHFILE_LABEL] = known.authfile
                found.setdefault(known.unit, {})[known.container_name] = ContainerInfo(
                    id=known.container_id,
                    name=known.container_name,
                    image_id=known.image_id,
                    raw_image_name=known.reference,
                    labels=labels,
                    state="",
                )
        for container in await self.stopped_labelled():
            unit = container.labels.get(UNIT_LABEL)
            if unit:
                found.setdefault(unit, {})[container.name] = container
        return found

    async def stopped_labelled(self) -> list[ContainerInfo]:
        """Labelled containers podman still has that are not running (non-`--new` units)."""
        from autoupdated.adapters.podman import _container_from_list

        filters = json.dumps({"label": [AUTOUPDATE_LABEL]})
        response = await self.podman._run("get", "/containers/json", params={"all": "true", "filters": filters})
        return [
            c for c in (_container_from_list(item) for item in response.json()) if c.state != "running" and not c.pod_id
        ]

    async def find(self, skip_units: set[str]) -> list[ContainerInfo]:
        found = []
        for unit, containers in sorted((await self.candidates()).items()):
            if unit in skip_units:
                continue
            try:
                state = await self.units.state(unit)
            except UnitsUnavailable:
                raise
            except Exception as err:
                log.debug("reading the state of unit %s: %s", unit, err)
                continue
            if state.load_state != "loaded" or not state.broken:
                continue
            for container in containers.values():
                try:
                    image_id = await self.podman.image_id(container.raw_image_name)
                except Exception as err:
                    log.warning(
                        "unit %s is %s but the image %s of its container %s is not in local storage (%s): "
                        "not updating it",
                        unit,
                        state,
                        container.raw_image_name,
                        container.name,
                        err,
                    )
                    continue
                log.info("unit %s is %s: its container %s joins the run", unit, state, container.name)
                found.append(dataclasses.replace(container, image_id=image_id, state=""))
        return found

"""The run's controls step (docs/controls.md): between the check and the pull, each update
found meets the operator's controls (autoupdated/controls/), and around each unit's restart its
hooks run.

    decide      after the check: resolve each container's controls (a bad label fails only it),
                then notify/cooldown drop the update, approval/window let it pull but hold the
                restart.  A unit restarts only when none of its updates is held.
    pre_update  before the pull moves the tag: a failing hook fails the unit's updates, so its
                image is never switched
    hold        after the pull: held updates are reported `pending`, with the reason
    after       post_update after a successful restart, on_rollback after a rollback
    new tags    containers with track_tags: the repository's tags listed (at most once per
                tag_check_interval per repository, remembered in the history), newer ones
                reported as warnings; the unit's image reference is never changed
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from autoupdated.controls.decide import Decision, decide
from autoupdated.controls.model import ControlError, Controls, Hook, HookRun, Mode, Waiting
from autoupdated.controls.resolve import resolve
from autoupdated.controls.tags import announcement, due, newer_tags
from autoupdated.engine.ledger import Notes
from autoupdated.engine.options import Options
from autoupdated.engine.ports import ControlStorePort, HooksPort, ImageAgePort, TagListerPort
from autoupdated.engine.task import Task
from autoupdated.model import Platform, Policy, Status


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


class ControlsStep:
    def __init__(
        self,
        options: Options,
        store: ControlStorePort | None,
        hooks: HooksPort | None,
        notes: Notes,
        tags: TagListerPort | None = None,
        ages: ImageAgePort | None = None,
    ) -> None:
        self.options = options
        self.tags = tags
        self.ages = ages
        self.store = store
        self.hooks = hooks
        self.notes = notes
        self.of: dict[str, Controls] = {}  # container ID -> its controls

    # -- decide ---------------------------------------------------------------------------

    async def decide(
        self, units: dict[str, list[Task]], now: datetime | None = None, platform: Platform | None = None
    ) -> None:
        moment = now or datetime.now(UTC)
        for unit, tasks in sorted(units.items()):
            for task in tasks:
                if task.status is Status.FAILED:
                    continue
                try:
                    controls = resolve(self.options.controls, task.container.name, unit, task.container.labels)
                    self.of[task.container.id] = controls
                    if task.prepared:
                        self._apply(task, controls, await self._decide(task, controls, moment, platform))
                except ControlError as err:
                    self.notes.error(task.fail(f'auto-updating container "{task.container.id}": {err}'))
            held = [task for task in tasks if task.prepared and task.hold]
            if held:
                for task in tasks:
                    if task.prepared and not task.hold:
                        task.hold = f"another container of unit {unit} waits: {held[0].hold}"

    async def _decide(self, task: Task, controls: Controls, now: datetime, platform: Platform | None) -> Decision:
        first_seen = approved = None
        created = await self._created(task, controls, platform)
        needs_store = (controls.min_image_age > 0 and created is None) or controls.mode is Mode.APPROVE
        if needs_store:
            if self.store is None:
                raise ControlError(
                    f"container {task.container.name}: min_image_age and mode approve remember state in the "
                    "history database, and this run has none; run the daemon with history = true, or "
                    "give `check` --history-db"
                )
            if controls.min_image_age > 0 and created is None:
                first_seen = self.store.first_seen(task.raw_image, task.new_digest, now.timestamp())
            approved = self.store.approved(task.container.name)
        return decide(
            controls,
            container=task.container.name,
            new_digest=task.new_digest,
            now=now,
            first_seen=created if created is not None else first_seen,
            approved_digest=approved,
            ignore_windows=self.options.ignore_windows,
            age_from="first seen" if created is None else "created",
        )

    async def _created(self, task: Task, controls: Controls, platform: Platform | None) -> float | None:
        """With image_age_from = "created": the new image's own `created` time; None (the first-seen
        time is used) when it is not wanted or cannot be had, with a warning for the latter."""
        wanted = controls.min_image_age > 0 and self.options.controls.image_age_from == "created"
        if not wanted or task.policy is not Policy.REGISTRY or task.reference is None or self.ages is None:
            return None
        try:
            created = await self.ages.image_created(
                task.reference, task.new_digest, task.credentials, platform or Platform()
            )
        except Exception as err:
            self.notes.warn(f"container {task.container.name}: reading the created time of {task.new_digest}: {err}")
            return None
        if created is None:
            self.notes.warn(
                f"container {task.container.name}: the image config of {task.new_digest} has no created time; "
                "min_image_age counts from when it was first seen"
            )
        return created

    def _apply(self, task: Task, controls: Controls, decision: Decision) -> None:
        if not decision.held:
            return
        task.hold = decision.reason
        if not decision.pull:
            task.prepared = False
            task.status = Status.PENDING
            self.notes.warn(f"container {task.container.name} ({task.container.id[:12]}): {decision.reason}")
        if self.store is not None and not self.options.dry_run:
            self.store.waiting(
                Waiting(
                    container=task.container.name,
                    unit=task.unit,
                    image=task.raw_image,
                    digest=task.new_digest,
                    waits_for=decision.waits_for,
                    reason=decision.reason,
                    eligible_at=_iso(decision.eligible_at),
                    since=_iso(datetime.now(UTC)) or "",
                )
            )

    # -- new tags (notify only) ------------------------------------------------------------------

    async def discover_tags(self, units: dict[str, list[Task]], now: datetime | None = None) -> None:
        moment = now or datetime.now(UTC)
        tracking = [
            task
            for tasks in units.values()
            for task in tasks
            if task.reference is not None
            and task.reference.tag
            and task.reference.digest is None
            and task.container.id in self.of
            and self.of[task.container.id].track_tags
        ]
        lists: dict[str, list[str] | None] = {}
        for task in tracking:
            assert task.reference is not None
            name = task.reference.name
            if name not in lists:
                lists[name] = await self._tag_list(task, moment)
            tags = lists[name]
            if tags is None:
                continue
            current = task.reference.tag or ""
            newer = newer_tags(current, tags, self.of[task.container.id].track_tags)
            if newer:
                self.notes.warn(announcement(task.container.name, current, newer))
            if self.store is not None:
                try:
                    self.store.new_tags(task.container.name, task.raw_image, newer)
                except Exception as err:
                    self.notes.warn(str(err))

    async def _tag_list(self, task: Task, now: datetime) -> list[str] | None:
        """The repository's tags: remembered when listed within the interval, else listed now."""
        assert task.reference is not None
        name = task.reference.name
        known = None
        if self.store is not None:
            try:
                known = self.store.tags_listed(name)
            except Exception as err:
                self.notes.warn(str(err))
        if known is not None and not due(known[0], now, self.options.controls.tag_check_interval):
            return known[1]
        if self.tags is None:
            return None
        try:
            tags = await self.tags.list_tags(task.reference, task.credentials)
        except Exception as err:
            self.notes.warn(f"container {task.container.name}: listing the tags of {name} (track_tags): {err}")
            return known[1] if known is not None else None
        if self.store is not None:
            try:
                self.store.remember_tags(name, tags, now.timestamp())
            except Exception as err:
                self.notes.warn(str(err))
        return tags

    # -- around the pull and the restart ------------------------------------------------------

    async def pre_update(self, unit: str, tasks: list[Task]) -> None:
        """Before the pull: a failing pre_update hook fails the unit's updates (its image is kept)."""
        for task in tasks:
            if not task.prepared or task.hold:
                continue
            hook = self._hook(task, "pre_update")
            if hook is None:
                continue
            failure = await self._run(hook, "pre_update", task)
            if failure is not None:
                message = (
                    f"not updating unit {unit}: pre_update hook {hook.name!r} failed for container "
                    f"{task.container.name}: {failure}; the old image is kept"
                )
                self.notes.error(message)
                for other in tasks:
                    if other.prepared:
                        other.fail(message)
                return

    def hold(self, tasks: list[Task]) -> None:
        """After the pull: what waits (approval, a window) is reported pending with its reason."""
        for task in tasks:
            if task.prepared and task.hold:
                task.prepared = False
                task.status = Status.PENDING
                self.notes.warn(f"container {task.container.name} ({task.container.id[:12]}): {task.hold}")

    async def after(self, unit: str, tasks: list[Task]) -> None:
        for task in tasks:
            key = {Status.UPDATED: "post_update", Status.ROLLED_BACK: "on_rollback"}.get(task.status)
            if task.status in (Status.UPDATED, Status.ROLLED_BACK) and self.store is not None:
                self._done(task)
            if key is None:
                continue
            hook = self._hook(task, key)
            if hook is not None:
                failure = await self._run(hook, key, task)
                if failure is not None:
                    self.notes.warn(
                        f"unit {unit}: {key} hook {hook.name!r} failed for container {task.container.name}: {failure}"
                    )

    # -- helpers ---------------------------------------------------------------------------

    def _done(self, task: Task) -> None:
        assert self.store is not None
        try:
            self.store.done(task.container.name)
        except Exception as err:
            self.notes.warn(str(err))

    def _hook(self, task: Task, key: str) -> Hook | None:
        controls = self.of.get(task.container.id)
        hook: Hook | None = getattr(controls, key) if controls else None
        return hook

    async def _run(self, hook: Hook, key: str, task: Task) -> str | None:
        """Run one hook; its failure as text (exit code and output), None when it succeeded."""
        if self.hooks is None:
            return "this run cannot run hooks"
        env = {
            "AUTOUPDATED_HOOK": key,
            "AUTOUPDATED_CONTAINER": task.container.name,
            "AUTOUPDATED_CONTAINER_ID": task.container.id,
            "AUTOUPDATED_UNIT": task.unit,
            "AUTOUPDATED_IMAGE": task.raw_image,
            "AUTOUPDATED_OLD_DIGEST": task.image.digest if task.image else "",
            "AUTOUPDATED_NEW_DIGEST": task.new_digest,
            "AUTOUPDATED_OLD_IMAGE_ID": task.container.image_id,
            "AUTOUPDATED_NEW_IMAGE_ID": task.new_image_id,
        }
        started = time.monotonic()
        result = await self.hooks.run(hook, env)
        seconds = time.monotonic() - started
        self.notes.progress(
            f"{key} hook {hook.name!r} for container {task.container.name}: {result.describe()} ({seconds:.1f} s)"
        )
        self._record(
            HookRun(
                key,
                hook.name,
                task.container.name,
                task.unit,
                task.raw_image,
                task.new_digest,
                result.exit_code,
                result.output,
                result.error,
                seconds,
            )
        )
        return None if result.ok else result.describe()

    def _record(self, run: HookRun) -> None:
        """The hook's output goes into the history too (the journal has the progress line)."""
        if self.store is None:
            return
        try:
            self.store.hook_ran(run)
        except Exception as err:
            self.notes.warn(f"{run.phase} hook {run.hook!r} for container {run.container}: {err}")

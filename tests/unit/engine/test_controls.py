"""The run's controls step (engine/controls.py), with in-memory adapters."""

from __future__ import annotations

import asyncio
import dataclasses

from autoupdated import engine
from autoupdated.controls.model import ControlsConfig, Hook, HookResult, Layer, Mode
from autoupdated.controls.windows import parse_windows
from tests.fakes import FakeControlStore, FakeHooks, FakeTags, adapters, container
from tests.unit.engine.test_run import FAST, IMG_A, statuses, world

HOOKS = {
    "backup": Hook("backup", ("/bin/backup",)),
    "tell": Hook("tell", ("/bin/tell",)),
    "page": Hook("page", ("/bin/page",)),
}


NO_LAYER = Layer()


def run(*containers, layer=NO_LAYER, store=None, hooks=None, **options):
    podman, comparer, puller, restarter = world(*containers)
    a = adapters(podman, comparer, puller, restarter)
    a.hooks = hooks if hooks is not None else FakeHooks()
    a.control_store = store
    opts = engine.Options(controls=ControlsConfig(defaults=layer, hooks=HOOKS), **FAST, **options)
    result = asyncio.run(engine.run(opts, adapters=a))
    return result, puller, restarter


def test_notify_reports_pending_and_never_pulls_or_restarts():
    notify = {"io.autoupdated.mode": "notify"}
    result, _, restarter = run(container(1, IMG_A, labels=notify), container(2, IMG_A))
    assert statuses(result) == {"c1": "pending", "c2": "true"}
    assert restarter.restarts == ["container-c2.service"]
    assert any("mode notify" in w for w in result.warnings)


def test_notify_alone_pulls_nothing():
    result, puller, restarter = run(container(1, IMG_A), layer=Layer(mode=Mode.NOTIFY))
    assert statuses(result) == {"c1": "pending"} and puller.pulled == [] and restarter.restarts == []


def test_outside_a_window_the_image_is_pulled_and_the_restart_waits():
    store = FakeControlStore()
    closed = Layer(restart_window=parse_windows("Sat 00:00..00:01 UTC"))
    result, puller, restarter = run(container(1, IMG_A), layer=closed, store=store)
    assert statuses(result) == {"c1": "pending"}
    assert puller.pulled == [IMG_A] and restarter.restarts == []
    assert store.held["c1"].waits_for == "window" and store.held["c1"].eligible_at
    assert any("restart waits for the restart window" in w for w in result.warnings)
    result, _, restarter = run(container(1, IMG_A), layer=closed, store=store, ignore_windows=True)
    assert statuses(result) == {"c1": "true"} and "c1" not in store.held


def test_cooldown_holds_a_new_digest_without_pulling_then_releases_it():
    store = FakeControlStore()
    result, puller, _ = run(container(1, IMG_A), layer=Layer(min_image_age=3600), store=store)
    assert statuses(result) == {"c1": "pending"} and puller.pulled == []
    assert "eligible at" in store.held["c1"].reason
    store.seen = {key: seen - 3601 for key, seen in store.seen.items()}  # an hour later
    result, puller, _ = run(container(1, IMG_A), layer=Layer(min_image_age=3600), store=store)
    assert statuses(result) == {"c1": "true"} and puller.pulled == [IMG_A]


def test_cooldown_without_a_history_fails_the_container_and_says_what_to_do():
    result, _, _ = run(container(1, IMG_A), layer=Layer(min_image_age=60))
    assert statuses(result) == {"c1": "failed"} and "history" in result.errors[0]


def test_approve_waits_then_an_approval_of_that_digest_restarts_and_a_stale_one_does_not():
    store = FakeControlStore()
    labels = {"io.autoupdated.mode": "approve"}
    result, puller, restarter = run(container(1, IMG_A, labels=labels), store=store)
    assert statuses(result) == {"c1": "pending"} and puller.pulled == [IMG_A] and restarter.restarts == []
    assert "autoupdated approve c1 --digest sha256:new" in store.held["c1"].reason
    store.approvals["c1"] = "sha256:older"
    result, _, restarter = run(container(1, IMG_A, labels=labels), store=store)
    assert statuses(result) == {"c1": "pending"} and restarter.restarts == []
    store.approvals["c1"] = "sha256:new"
    result, _, restarter = run(container(1, IMG_A, labels=labels), store=store)
    assert statuses(result) == {"c1": "true"} and restarter.restarts == ["container-c1.service"]
    assert store.approvals == {} and store.held == {}, "the approval is used up"


def test_a_failing_pre_update_hook_fails_the_unit_before_the_pull():
    hooks = FakeHooks(results={"backup": HookResult(3, "disk full\n")})
    result, puller, restarter = run(container(1, IMG_A), layer=Layer(pre_update="backup"), hooks=hooks)
    assert statuses(result) == {"c1": "failed"} and puller.pulled == [] and restarter.restarts == []
    (error,) = result.errors
    assert "pre_update hook 'backup' failed for container c1: exit code 3" in error and "disk full" in error


def test_hooks_get_the_container_and_digests_post_update_after_the_restart():
    hooks = FakeHooks()
    result, _, _ = run(container(1, IMG_A), layer=Layer(pre_update="backup", post_update="tell"), hooks=hooks)
    assert statuses(result) == {"c1": "true"}
    assert [name for name, _ in hooks.runs] == ["backup", "tell"]
    env = hooks.runs[1][1]
    assert env["AUTOUPDATED_CONTAINER"] == "c1" and env["AUTOUPDATED_UNIT"] == "container-c1.service"
    assert env["AUTOUPDATED_OLD_DIGEST"] == "sha256:old" and env["AUTOUPDATED_NEW_DIGEST"] == "sha256:new"
    assert env["AUTOUPDATED_IMAGE"] == IMG_A and env["AUTOUPDATED_NEW_IMAGE_ID"] == "newA"


def test_a_label_naming_an_unknown_hook_fails_only_that_container_and_runs_nothing():
    hooks = FakeHooks()
    result, _, _ = run(
        container(1, IMG_A, labels={"io.autoupdated.pre_update": "curl-evil"}), container(2, IMG_A), hooks=hooks
    )
    assert statuses(result) == {"c1": "failed", "c2": "true"}
    assert hooks.runs == [] and "names hook 'curl-evil'" in result.errors[0]


def test_a_held_container_holds_its_whole_unit():
    closed = {"io.autoupdated.restart_window": "Sat 00:00..00:01 UTC"}
    result, _, restarter = run(
        container(1, IMG_A, unit="u.service", labels=closed), container(2, IMG_A, unit="u.service")
    )
    assert statuses(result) == {"c1": "pending", "c2": "pending"} and restarter.restarts == []


def test_on_rollback_runs_after_a_rollback():
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    podman.crashing["newA"] = 0
    a = adapters(podman, comparer, puller, restarter)
    hooks = a.hooks = FakeHooks()
    opts = engine.Options(controls=ControlsConfig(Layer(on_rollback="page", post_update="tell"), hooks=HOOKS), **FAST)
    result = asyncio.run(engine.run(dataclasses.replace(opts), adapters=a))
    assert statuses(result) == {"c1": "rolled back"} and [n for n, _ in hooks.runs] == ["page"]


def test_new_tags_are_reported_once_per_repository_and_only_for_containers_that_opt_in():
    ref = "quay.io/org/a:1.26.3"
    podman, comparer, puller, restarter = world(
        container(1, ref, labels={"io.autoupdated.track_tags": "semver"}),
        container(2, ref, labels={"io.autoupdated.track_tags": "semver"}),
        container(3, "quay.io/org/b:1.0.0"),
        remote={ref: "sha256:old", "quay.io/org/b:1.0.0": "sha256:old"},
    )
    a = adapters(podman, comparer, puller, restarter)
    a.tags = tags = FakeTags({"quay.io/org/a": ["1.26.3", "1.27.1", "latest"], "quay.io/org/b": ["9.9.9"]})
    a.control_store = store = FakeControlStore()
    opts = engine.Options(controls=ControlsConfig(), **FAST)
    result = asyncio.run(engine.run(opts, adapters=a))
    assert statuses(result) == {"c1": "false", "c2": "false", "c3": "false"}
    assert tags.asked == ["quay.io/org/a"], "one listing per repository, none for c3"
    assert sum("1.27.1 available; you run 1.26.3" in w for w in result.warnings) == 2
    assert store.news["c1"] == ["1.27.1"]
    podman.containers = [container(1, ref, labels={"io.autoupdated.track_tags": "semver"})]
    a2 = adapters(podman, comparer, puller, restarter)
    a2.tags, a2.control_store = tags, store
    result = asyncio.run(engine.run(opts, adapters=a2))
    assert tags.asked == ["quay.io/org/a"], "listed at most once per day"
    assert any("1.27.1 available" in w for w in result.warnings)


def test_a_failing_tag_listing_is_a_warning_and_the_update_goes_on():
    podman, comparer, puller, restarter = world(container(1, IMG_A, labels={"io.autoupdated.track_tags": "semver"}))
    a = adapters(podman, comparer, puller, restarter)
    a.tags = FakeTags(error=RuntimeError("too many requests to quay.io"))
    result = asyncio.run(engine.run(engine.Options(controls=ControlsConfig(), **FAST), adapters=a))
    assert statuses(result) == {"c1": "true"}
    assert any("listing the tags of quay.io/org/a (track_tags): too many requests" in w for w in result.warnings)


def test_a_held_restart_writes_no_history_record_and_the_later_restart_does(tmp_path):
    from autoupdated.adapters.history import History

    history = History(tmp_path / "history.db")
    closed = {"io.autoupdated.restart_window": "Sat 00:00..00:01 UTC"}
    podman, comparer, puller, restarter = world(container(1, IMG_A, labels=closed))
    a = adapters(podman, comparer, puller, restarter)
    a.history = history
    result = asyncio.run(engine.run(engine.Options(controls=ControlsConfig(), **FAST), adapters=a))
    assert statuses(result) == {"c1": "pending"} and history.rows() == []
    a = adapters(podman, comparer, puller, restarter)
    a.history = history
    opts = engine.Options(controls=ControlsConfig(), ignore_windows=True, **FAST)
    result = asyncio.run(engine.run(opts, adapters=a))
    assert statuses(result) == {"c1": "true"} and [r.result for r in history.rows()] == ["true"]


@dataclasses.dataclass
class FakeAges:
    created: float | None
    asked: list[str] = dataclasses.field(default_factory=list)

    async def image_created(self, ref, digest, credentials, platform):
        self.asked.append(digest)
        return self.created


def test_cooldown_can_count_from_the_images_created_time():
    import time

    podman, comparer, puller, restarter = world(container(1, IMG_A))
    a = adapters(podman, comparer, puller, restarter)
    a.image_age = ages = FakeAges(created=time.time() - 7200)
    config = ControlsConfig(Layer(min_image_age=3600), image_age_from="created")
    result = asyncio.run(engine.run(engine.Options(controls=config, **FAST), adapters=a))
    assert statuses(result) == {"c1": "true"} and ages.asked == ["sha256:new"], "two hours old: no history needed"
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    a = adapters(podman, comparer, puller, restarter)
    a.image_age = FakeAges(created=time.time() - 60)
    result = asyncio.run(engine.run(engine.Options(controls=config, **FAST), adapters=a))
    assert statuses(result) == {"c1": "pending"} and puller.pulled == []
    assert any("new image sha256:new created " in w and "eligible at" in w for w in result.warnings)


def test_every_hook_run_goes_into_the_history_with_its_exit_code_and_output():
    store = FakeControlStore()
    hooks = FakeHooks(results={"tell": HookResult(1, "webhook down\n")})
    result, _, _ = run(
        container(1, IMG_A), layer=Layer(pre_update="backup", post_update="tell"), store=store, hooks=hooks
    )
    assert statuses(result) == {"c1": "true"}, "a failing post_update hook does not undo the update"
    assert [(r.phase, r.hook, r.container, r.exit_code) for r in store.hook_runs] == [
        ("pre_update", "backup", "c1", 0),
        ("post_update", "tell", "c1", 1),
    ]
    assert store.hook_runs[1].output == "webhook down\n" and store.hook_runs[1].new_digest == "sha256:new"
    assert any("post_update hook 'tell' failed" in w for w in result.warnings)

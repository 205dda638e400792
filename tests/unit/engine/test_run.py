"""The engine's plan, with fault injection through in-memory adapters."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import pytest

from autoupdated import engine
from autoupdated.model import Platform
from tests.fakes import (
    FakeComparer,
    FakePodman,
    FakePuller,
    FakeRestarter,
    adapters,
    cid,
    container,
    image,
)

IMG_A = "quay.io/org/a:latest"
IMG_B = "quay.io/org/b:latest"
IMG_C = "quay.io/org/c:latest"


def statuses(result: engine.RunResult) -> dict[str, str]:
    return {e.container_name: str(e.updated) for e in result.entries}


def world(*containers, remote=None, new_ids=None):
    podman = FakePodman(list(containers), images_by_id={"old": image("old", "sha256:old")})
    comparer = FakeComparer(remote or {IMG_A: "sha256:new", IMG_B: "sha256:old"})
    puller = FakePuller(new_ids or {IMG_A: "newA", IMG_B: "newB"}, podman=podman)
    restarter = FakeRestarter(podman=podman)
    podman.local_names.update({c.raw_image_name: c.image_id for c in containers})
    return podman, comparer, puller, restarter


FAST = {"settle_time": 0.05, "health_timeout": 0.5, "poll_interval": 0.01}


async def test_update_pulls_once_per_reference_and_restarts_each_unit_once():
    podman, comparer, puller, restarter = world(
        container(1, IMG_A),
        container(2, IMG_A),
        container(3, IMG_B),
        container(4, IMG_A, unit="shared.service"),
        container(5, IMG_B, unit="shared.service"),
    )
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "true", "c2": "true", "c3": "false", "c4": "true", "c5": "true"}
    assert puller.pulled == [IMG_A]
    assert sorted(restarter.restarts) == ["container-c1.service", "container-c2.service", "shared.service"]
    assert not result.errors and not result.failed
    # every task of a restarted unit gets the unit's outcome (c5 had no update itself)
    assert {e.container_name: e.unit for e in result.entries}["c5"] == "shared.service"


async def test_dry_run_reports_pending_and_touches_nothing():
    podman, comparer, puller, restarter = world(container(1, IMG_A), container(2, IMG_B))
    result = await engine.run(
        engine.Options(dry_run=True, **FAST), adapters=adapters(podman, comparer, puller, restarter)
    )
    assert statuses(result) == {"c1": "pending", "c2": "false"}
    assert puller.pulled == [] and restarter.restarts == [] and not restarter.connected


async def test_a_run_records_what_each_step_took_and_over_how_many(caplog):
    podman, comparer, puller, restarter = world(container(1, IMG_A), container(2, IMG_A), container(3, IMG_B))
    with caplog.at_level("DEBUG", logger="autoupdated.timings"):
        result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert list(result.phases) == ["list", "images", "check", "update"]
    assert all(seconds >= 0 for seconds in result.phases.values())
    # the check grows with distinct references (2), not with containers (3)
    assert result.sizes == {"containers": 3, "images": 1, "references": 2}
    [line] = [r.getMessage() for r in caplog.records if r.name == "autoupdated.timings"]
    assert re.fullmatch(
        r"run phases: list \d+\.\d{3} s, images \d+\.\d{3} s, check \d+\.\d{3} s, update \d+\.\d{3} s; "
        r"3 containers, 1 images, 2 references",
        line,
    )


async def test_the_registry_is_asked_while_podman_lists_the_images():
    """The check's HEADs need no local digest: they start before the image listing returns,
    once per distinct reference (not per container), and none for a pinned digest."""
    pinned = "quay.io/org/p@sha256:" + "1" * 64
    podman, comparer, puller, restarter = world(
        container(1, IMG_A), container(2, IMG_A), container(3, IMG_B), container(4, pinned)
    )
    listed = asyncio.Event()
    prefetched_before: list[str] = []
    real_images = podman.images

    async def slow_images():
        await asyncio.sleep(0.05)
        prefetched_before.extend(comparer.prefetched)
        listed.set()
        return await real_images()

    podman.images = slow_images
    result = await engine.run(
        engine.Options(dry_run=True, **FAST), adapters=adapters(podman, comparer, puller, restarter)
    )
    assert listed.is_set()
    assert prefetched_before == [IMG_A, IMG_B]
    assert statuses(result) == {"c1": "pending", "c2": "pending", "c3": "false", "c4": "false"}
    assert result.phases["check"] >= result.phases["images"] >= 0.05


async def test_an_image_listing_that_fails_stops_the_run_with_nothing_left_running():
    podman, comparer, puller, restarter = world(container(1, IMG_A), container(2, IMG_B))

    async def broken_images():
        await asyncio.sleep(0.01)
        raise OSError("podman went away")

    podman.images = broken_images
    with pytest.raises(engine.RunError, match="listing local images: podman went away"):
        await engine.run(engine.Options(dry_run=True, **FAST), adapters=adapters(podman, comparer, puller, restarter))
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []


async def test_a_dry_run_has_no_update_step():
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    result = await engine.run(
        engine.Options(dry_run=True, **FAST), adapters=adapters(podman, comparer, puller, restarter)
    )
    assert list(result.phases) == ["list", "images", "check"]


async def test_invalid_policy_is_an_error_and_the_others_still_update():
    podman, comparer, puller, restarter = world(container(1, IMG_A, policy="fake_x"), container(2, IMG_A))
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c2": "true"}
    assert result.failed
    # podman's own text, bare: assembleTasks appends LookupPolicy's error without naming the container.
    assert result.errors == [
        'invalid auto-update policy "fake_x": valid policies are ["disabled" "image" "local" "registry"]'
    ]


@pytest.mark.parametrize(
    "filters",
    [
        {"exclude_containers": ("c1",)},
        {"include_containers": ("c2",)},
        {"exclude_units": ("container-c1.service",)},
        {"include_units": ("container-c2.*",)},
    ],
)
async def test_a_container_the_filters_leave_out_cannot_fail_the_run_with_a_bad_label(filters):
    podman, comparer, puller, restarter = world(container(1, IMG_A, policy="fake_x"), container(2, IMG_A))
    result = await engine.run(engine.Options(**filters, **FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c2": "true"}
    assert not result.errors and not result.failed


async def test_disabled_empty_and_unlabelled_are_skipped_legacy_image_is_registry():
    podman, comparer, puller, restarter = world(
        container(1, IMG_A, policy="disabled"),
        container(2, IMG_A, policy=""),
        container(3, IMG_A, policy=None),
        container(4, IMG_A, policy="image"),
    )
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c4": "true"}
    assert result.entries[0].policy == "registry"


async def test_missing_unit_label_names_container_and_fix():
    podman, comparer, puller, restarter = world(container(1, IMG_A, unit=None), container(2, IMG_A))
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c2": "true"}
    assert len(result.errors) == 1
    assert result.errors[0].startswith(f'auto-updating container "{cid(1)}": no PODMAN_SYSTEMD_UNIT label found')
    assert "podman generate systemd --new" in result.errors[0] and "Quadlet" in result.errors[0]


async def test_pod_containers_restart_the_pods_unit_once():
    podman, comparer, puller, restarter = world(
        container(1, IMG_A, unit="container-c1.service", pod="p1"),
        container(2, IMG_B, unit="container-c2.service", pod="p1"),
    )
    podman.infra["p1"] = {"PODMAN_SYSTEMD_UNIT": "pod-p1.service"}
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert restarter.restarts == ["pod-p1.service"]
    assert {e.unit for e in result.entries} == {"pod-p1.service"}
    assert statuses(result) == {"c1": "true", "c2": "true"}


async def test_failed_restart_rolls_back_by_retagging_and_restarting():
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    restarter.fail["container-c1.service"] = 1
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "rolled back"}
    assert podman.tags == [("old", IMG_A)]
    assert restarter.restarts == ["container-c1.service", "container-c1.service"]
    assert not result.failed  # as podman: a successful rollback is not an error ...
    assert any("rolling back" in w for w in result.warnings)  # ... but it is said


async def test_rollback_that_fails_too_is_failed_with_both_steps_named():
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    restarter.fail["container-c1.service"] = 2
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "failed"}
    assert result.errors == [
        'restarting unit container-c1.service during rollback: error restarting systemd unit "container-c1.service" '
        'expected "done" but received "failed"'
    ]


async def test_rollback_disabled_reports_failed():
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    restarter.fail["container-c1.service"] = 1
    result = await engine.run(
        engine.Options(rollback=False, **FAST), adapters=adapters(podman, comparer, puller, restarter)
    )
    assert statuses(result) == {"c1": "failed"}
    assert podman.tags == []
    assert result.errors[0].startswith("restarting unit container-c1.service during update:")


async def test_image_rolled_back_in_one_unit_is_not_rolled_onto_the_next():
    """podman's quirk: after a rollback, another unit on the same image was restarted onto it."""
    podman, comparer, puller, restarter = world(container(1, IMG_A), container(2, IMG_A), container(3, IMG_B))
    comparer.remote[IMG_B] = "sha256:newB"
    restarter.fail["container-c1.service"] = 1
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "rolled back", "c2": "failed", "c3": "true"}
    assert "container-c2.service" not in restarter.restarts
    assert any("failed in unit container-c1.service and was rolled back" in e for e in result.errors)


async def test_registry_error_fails_only_that_container():
    podman, comparer, puller, restarter = world(container(1, IMG_A), container(2, IMG_B))
    comparer.remote[IMG_B] = "sha256:newB"
    comparer.errors[IMG_A] = RuntimeError("authentication required")
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "failed", "c2": "true"}
    assert result.errors == [f"checking image updates for container {cid(1)}: authentication required"]


async def test_an_authfile_that_gave_no_credentials_is_named_after_podmans_401_text():
    from autoupdated.errors import AuthenticationRequired

    labelled = container(1, IMG_A, labels={"io.containers.autoupdate.authfile": "/gone/auth.json"})
    podman, comparer, puller, restarter = world(labelled, container(2, IMG_B))
    text = "reading manifest latest in quay.io/org/a: authentication required; none were found"
    comparer.errors[IMG_A] = AuthenticationRequired(text)
    comparer.errors[IMG_B] = AuthenticationRequired(text)
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "failed", "c2": "failed"}
    first, second = sorted(result.errors)
    assert first.startswith(f"checking image updates for container {cid(1)}: {text} (the authfile /gone/auth.json ")
    assert second == f"checking image updates for container {cid(2)}: {text}"  # no authfile named: as it is


async def test_pull_failure_keeps_the_unit_untouched():
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    puller.errors[IMG_A] = RuntimeError("manifest unknown")
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "failed"}
    assert restarter.restarts == []
    assert result.errors == [f"updating image for container {cid(1)}: manifest unknown"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("shortname:latest", 'short name: auto updates require fully-qualified image reference: "shortname:latest"'),
        (
            "docker-archive:/x.tar",
            'auto updates require the docker image transport but image is of transport "docker-archive"',
        ),
        ("quay.io/org/notag", 'auto updates require fully-qualified image references (no tag): "quay.io/org/notag"'),
        ("quay.io/Org/x:1", "enforcing fully-qualified docker transport reference for auto updates: invalid reference"),
    ],
)
async def test_bad_references_fail_with_podmans_texts(raw, message):
    podman, comparer, puller, restarter = world(container(1, raw), container(2, IMG_A))
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "failed", "c2": "true"}
    assert result.errors[0].startswith(f"checking image updates for container {cid(1)}: {message}")


async def test_digest_pinned_reference_is_skipped_with_a_warning():
    pinned = "quay.io/org/a:1@sha256:" + "a" * 64
    podman, comparer, puller, restarter = world(container(1, pinned), container(2, IMG_A))
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "false", "c2": "true"}
    assert not result.failed
    assert any("digest-pinned" in w and pinned in w for w in result.warnings)
    assert comparer.calls == [IMG_A]


async def test_local_policy_compares_image_ids():
    podman, comparer, puller, restarter = world(
        container(1, "localhost/app:1", policy="local"), container(2, "localhost/same:1", policy="local")
    )
    podman.local_names = {"localhost/app:1": "newer", "localhost/same:1": "old"}
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "true", "c2": "false"}
    assert puller.pulled == [] and restarter.restarts == ["container-c1.service"]
    assert result.entries[0].new_image_id == "newer"


async def test_unreachable_podman_or_bus_is_a_run_error():
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    podman.fail_list = OSError("no socket")
    with pytest.raises(engine.RunError, match="no socket"):
        await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))

    from autoupdated.errors import BusUnavailable

    podman, comparer, puller, restarter = world(container(1, IMG_A))
    restarter.connect_error = BusUnavailable("cannot connect to the system D-Bus")
    with pytest.raises(engine.RunError, match="D-Bus"):
        await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert puller.pulled == []  # nothing pulled for a run that could never restart


async def test_restarts_run_in_parallel_up_to_the_bound_and_after_their_pulls():
    containers = [container(i, f"quay.io/org/i{i}:1") for i in range(8)]
    podman, comparer, puller, restarter = world(
        *containers,
        remote={c.raw_image_name: "sha256:new" for c in containers},
        new_ids={c.raw_image_name: "n" for c in containers},
    )
    puller.delay = 0.01
    restarter.delay = 0.05
    result = await engine.run(
        engine.Options(restart_concurrency=3, **FAST), adapters=adapters(podman, comparer, puller, restarter)
    )
    assert set(statuses(result).values()) == {"true"}
    assert restarter.max_in_flight == 3
    for c in containers:
        assert restarter.started_at[f"container-{c.name}.service"] >= puller.done_at[c.raw_image_name]


async def test_restart_bound_of_one_behaves_like_podman():
    containers = [container(i, f"quay.io/org/i{i}:1") for i in range(4)]
    podman, comparer, puller, restarter = world(
        *containers,
        remote={c.raw_image_name: "sha256:new" for c in containers},
        new_ids={c.raw_image_name: "n" for c in containers},
    )
    restarter.delay = 0.01
    await engine.run(
        engine.Options(restart_concurrency=1, **FAST), adapters=adapters(podman, comparer, puller, restarter)
    )
    assert restarter.max_in_flight == 1 and len(restarter.restarts) == 4


async def test_stop_requested_leaves_updates_pending_and_starts_no_restart():
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    stop = asyncio.Event()
    stop.set()
    result = await engine.run(engine.Options(**FAST), stop=stop, adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "pending"}
    assert restarter.restarts == [] and puller.pulled == []


async def test_filters_select_containers_and_units():
    podman, comparer, puller, restarter = world(container(1, IMG_A), container(2, IMG_A), container(3, IMG_A))
    opts = engine.Options(include_containers=("c*",), exclude_containers=("c2",), exclude_units=("*c3*",), **FAST)
    result = await engine.run(opts, adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "true"}


async def test_summary_counts():
    podman, comparer, puller, restarter = world(container(1, IMG_A), container(2, IMG_B))
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert re.fullmatch(r"2 containers: 1 updated, 1 unchanged, 0 pending, 0 rolled back, 0 failed", result.summary())


async def test_health_gate_rolls_back_an_image_that_crashes_after_start():
    podman, comparer, puller, restarter = world(container(1, IMG_A), container(2, IMG_B))
    comparer.remote[IMG_B] = "sha256:newB"
    podman.crashing["newA"] = 0.02  # up, then gone within the settle time (a --rm container that exited)
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "rolled back", "c2": "true"}
    assert podman.tags == [("old", IMG_A)]
    assert podman.running["c1"].image_id == "old"  # the rollback restart put the old image back
    assert any("container c1 in unit container-c1.service exited" in w for w in result.warnings)


async def test_health_gate_looks_at_a_container_without_healthcheck_twice_not_every_poll():
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    opts = engine.Options(settle_time=0.2, health_timeout=1.0, poll_interval=0.01)
    result = await engine.run(opts, adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "true"}
    # once up on its new image, then once when the settle time is over (polling: ~20 looks)
    assert podman.polls["c1"] == 2


async def test_restart_bound_is_not_held_while_a_unit_settles():
    podman, comparer, puller, restarter = world(
        container(1, IMG_A),
        container(2, IMG_B),
        container(3, IMG_C),
        remote={IMG_A: "sha256:newA", IMG_B: "sha256:newB", IMG_C: "sha256:newC"},
        new_ids={IMG_A: "newA", IMG_B: "newB", IMG_C: "newC"},
    )
    restarter.delay = 0.01
    opts = engine.Options(restart_concurrency=1, settle_time=0.3, health_timeout=2.0, poll_interval=0.01)
    result = await engine.run(opts, adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "true", "c2": "true", "c3": "true"}
    assert restarter.max_in_flight == 1
    # one restart at a time, but the next starts while the previous unit is still settling
    starts = sorted(restarter.started_at.values())
    assert starts[-1] - starts[0] < 0.3, starts


async def test_health_gate_off_behaves_like_podman():
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    podman.crashing["newA"] = 0.02
    opts = engine.Options(health_gate=False, **FAST)
    result = await engine.run(opts, adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "true"}


async def test_health_gate_waits_for_healthy_and_rolls_back_unhealthy():
    podman, comparer, puller, restarter = world(container(1, IMG_A), container(2, IMG_B))
    comparer.remote[IMG_B] = "sha256:newB"
    podman.health.update({"newA": "healthy", "newB": "unhealthy"})
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "true", "c2": "rolled back"}
    assert any("did not become healthy within 0.5 s" in w for w in result.warnings)


async def test_a_container_that_never_comes_up_is_rolled_back():
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    podman.crashing["newA"] = 0
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "rolled back"}
    assert any("did not become running" in w for w in result.warnings)


async def test_canary_unit_proves_an_image_before_the_others_restart_in_parallel():
    podman, comparer, puller, restarter = world(*(container(i, IMG_A) for i in range(1, 5)))
    restarter.delay = 0.02
    result = await engine.run(engine.Options(**FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert set(statuses(result).values()) == {"true"}
    assert restarter.restarts[0] == "container-c1.service"
    canary_start = restarter.started_at["container-c1.service"]
    followers = [restarter.started_at[f"container-c{i}.service"] for i in (2, 3, 4)]
    # followers start only after the canary's restart and settle time, and together
    assert min(followers) >= canary_start + 0.02 + FAST["settle_time"]
    assert max(followers) - min(followers) < 0.02
    assert restarter.max_in_flight == 3


async def test_a_canary_pulled_late_restarts_ahead_of_the_followers_already_queued():
    # One restart at a time. a's followers queue once c1 has proven a; b is pulled while they
    # wait. b's canary goes next, not after every follower of a: its own followers and its
    # settle time then overlap a's restarts instead of trailing the run.
    a_units = [container(i, IMG_A) for i in range(1, 7)]
    b_units = [container(i, IMG_B) for i in (7, 8)]
    podman, comparer, puller, restarter = world(*a_units, *b_units, remote={IMG_A: "sha256:newA", IMG_B: "sha256:newB"})
    puller.delays = {IMG_B: 0.15}
    restarter.delay = 0.05
    opts = engine.Options(restart_concurrency=1, settle_time=0.05, health_timeout=2.0, poll_interval=0.01)
    result = await engine.run(opts, adapters=adapters(podman, comparer, puller, restarter))
    assert set(statuses(result).values()) == {"true"}
    order = [unit.removeprefix("container-").removesuffix(".service") for unit in restarter.restarts]
    assert order[0] == "c1" and order.index("c7") < order.index("c8")
    # a's followers restart from 0.10 s, one per 0.05 s; b is ready at 0.15 s: in arrival
    # order its canary would wait for all five (index 6), canaries first it goes after two
    assert order.index("c7") <= 3, order
    assert restarter.max_in_flight == 1


async def test_a_rollback_restart_goes_ahead_of_queued_updates():
    images = [f"quay.io/org/r{i}:1" for i in range(1, 6)]
    podman, comparer, puller, restarter = world(
        *(container(i, ref) for i, ref in enumerate(images, 1)),
        remote={ref: "sha256:new" for ref in images},
        new_ids={ref: f"new{i}" for i, ref in enumerate(images, 1)},
    )
    restarter.fail = {"container-c1.service": 1}  # c1's update fails: roll back
    puller.delays = {ref: 0.02 for ref in images[1:]}  # c2..c5 queue while c1 restarts
    restarter.delay = 0.05
    opts = engine.Options(restart_concurrency=1, **FAST)
    result = await engine.run(opts, adapters=adapters(podman, comparer, puller, restarter))
    assert statuses(result) == {"c1": "rolled back", "c2": "true", "c3": "true", "c4": "true", "c5": "true"}
    # the slot c1's failed restart freed went to c2, queued already; the rollback came next,
    # ahead of c3..c5 that had queued before it (in arrival order it would be last)
    assert restarter.restarts.index("container-c1.service", 1) == 2, restarter.restarts


async def test_an_index_is_compared_for_the_platform_of_the_local_image_inspected_once():
    podman, comparer, puller, restarter = world(container(1, IMG_A), container(2, IMG_A), container(3, IMG_B))
    armv7 = Platform("linux", "arm", "v7")
    podman.images_by_id["old"] = replace(podman.images_by_id["old"], platform=armv7)
    comparer.indexes = {IMG_A}
    await engine.run(engine.Options(dry_run=True, **FAST), adapters=adapters(podman, comparer, puller, restarter))
    assert comparer.platforms == {IMG_A: armv7}
    assert podman.inspected == ["old"]  # once for both containers; never for IMG_B (not an index)


async def test_a_configured_platform_wins_and_nothing_is_inspected():
    podman, comparer, puller, restarter = world(container(1, IMG_A))
    comparer.indexes = {IMG_A}
    chosen = Platform("linux", "arm64", "v8")
    await engine.run(
        engine.Options(dry_run=True, platform=chosen, **FAST), adapters=adapters(podman, comparer, puller, restarter)
    )
    assert comparer.platforms == {IMG_A: chosen} and podman.inspected == []


class Events:
    def __init__(self) -> None:
        self.written: list[str] = []

    def system_event(self, status: str) -> None:
        self.written.append(status)


@pytest.mark.parametrize("dry_run", [True, False])
async def test_a_run_with_something_to_do_writes_podmans_auto_update_event_once(dry_run):
    podman, comparer, puller, restarter = world(container(1, IMG_A), container(2, IMG_B))
    events = Events()
    run_adapters = adapters(podman, comparer, puller, restarter)
    run_adapters.events = events
    await engine.run(engine.Options(dry_run=dry_run, **FAST), adapters=run_adapters)
    assert events.written == ["auto-update"]


async def test_a_run_with_nothing_labelled_writes_no_event():
    podman, comparer, puller, restarter = world(container(1, IMG_A, policy=None))
    events = Events()
    run_adapters = adapters(podman, comparer, puller, restarter)
    run_adapters.events = events
    await engine.run(engine.Options(**FAST), adapters=run_adapters)
    assert events.written == []

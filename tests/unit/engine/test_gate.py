"""The health gate's decision (engine/gate.py's Watch.see): state and time in, verdict out."""

from __future__ import annotations

from autoupdated.engine.gate import CHECK_HEALTH, PROVEN, Watch, timeout_message
from autoupdated.model import ContainerState


def state(cid: str = "c1", image: str = "new", *, running: bool = True, code: int = 0, health: bool = False):
    return ContainerState(cid, image, "running" if running else "exited", running, code, "t", "", health)


def watch() -> Watch:
    return Watch("web", "web.service", "new", settle_time=3.0, poll_interval=1.0)


def test_a_container_without_healthcheck_is_looked_at_twice_and_settles() -> None:
    w = watch()
    first = w.see(state(), now=10.0)
    assert first.again_at == 13.0 and not first.proven  # the settle time runs from the first sighting
    assert w.see(state(), now=13.0) is PROVEN


def test_the_old_container_or_none_yet_means_look_again_soon() -> None:
    w = watch()
    assert w.see(None, now=5.0).again_at == 6.0
    assert w.see(state(image="old"), now=5.0).again_at == 6.0
    assert w.first_id is None


def test_gone_or_exited_after_it_was_seen_fails_with_the_exit_code() -> None:
    w = watch()
    w.see(state(), now=0.0)
    exited = w.see(state(running=False, code=3), now=1.0)
    assert exited.failure == (
        "container web in unit web.service exited with code 3 within 3 s of its start; see `journalctl -u web.service`"
    )
    w2 = watch()
    w2.see(state(), now=0.0)
    assert "exited within 3 s" in (w2.see(None, now=1.0).failure or "")


def test_a_new_container_id_after_the_first_sighting_is_a_crash_and_restart() -> None:
    w = watch()
    w.see(state("c1"), now=0.0)
    verdict = w.see(state("c2"), now=1.0)
    assert verdict.failure is not None and "was restarted after its update" in verdict.failure


def test_a_healthcheck_decides_instead_of_the_settle_time() -> None:
    w = watch()
    assert w.see(state(health=True), now=0.0) is CHECK_HEALTH
    assert w.after_healthcheck("starting", now=0.5).again_at == 1.5
    assert w.after_healthcheck("healthy", now=2.0) is PROVEN


def test_the_timeout_says_running_or_healthy_by_what_was_seen() -> None:
    never = watch()
    assert "did not become running within 60 s" in timeout_message("web.service", [never], 60)
    seen = watch()
    seen.see(state(health=True), now=0.0)
    assert "did not become healthy within 60 s" in timeout_message("web.service", [seen], 60)


async def test_canaries_followers_of_one_image_never_wait_for_another_images_canary() -> None:
    import asyncio

    from autoupdated.engine.unit import Canaries

    canaries = Canaries()
    await canaries.wait_turn("a.service", ["img-a"])  # the canary of img-a goes at once
    await asyncio.wait_for(canaries.wait_turn("x.service", ["img-x"]), 0.1)  # another image: no wait
    follower = asyncio.create_task(canaries.wait_turn("b.service", ["img-a"]))
    await asyncio.sleep(0.01)
    assert not follower.done(), "a follower waits for its image's canary"
    canaries.release("a.service")
    await asyncio.wait_for(follower, 0.1)

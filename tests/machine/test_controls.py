"""The operator controls (docs/controls.md) against the real thing: units under the machine's
systemd, its podman, a real registry on the host, `autoupdated check` with a config file, and the
daemon under systemd for what needs it (approval, the restart at a window's start)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from autoupdated.calendar import parse_output
from tests.harness.daemon import Daemon, image_of, labelled_service, running
from tests.harness.images import ImageBuilder
from tests.harness.machine import Machine
from tests.harness.registry import Registry
from tests.machine.test_engine import FMT, Env, _trusted_env

pytestmark = pytest.mark.machine

CONF = "/root/controls.toml"
HOOKS = """
[hooks.fail]
command = ["/bin/sh", "-c", "echo backup failed: disk full; exit 4"]
[hooks.record]
command = ["/bin/sh", "-c", "env | grep ^AUTOUPDATED_ > /root/post-hook.env"]
"""


@pytest.fixture(scope="module")
def env(machine: Machine, image_builder: ImageBuilder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    registry = Registry(tmp_path_factory.mktemp("controls") / "registry").start()
    yield from _trusted_env(machine, image_builder, registry)


def service(env: Env, name: str, *labels: str) -> tuple[str, str, str]:
    """A running unit for container `name` on a freshly pushed image; then a newer image is pushed."""
    env.push(name)
    env.pull_in_machine(name)
    args = [arg for label in labels for arg in ("--label", label)]
    unit = env.machine.create_service(name, env.ref(name), policy="registry", extra_args=args)
    old = env.machine.container_image_id(name)
    env.push(name)
    return env.ref(name), unit, old


def tag_target(m: Machine, ref: str) -> str:
    return m.podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def check(env: Env, config: str, *args: str) -> tuple[int, list[str], str]:
    env.machine.write(CONF, config)
    return env.check("--config", CONF, "--format", FMT, *args)


def test_notify_only_reports_pending_and_never_pulls(env: Env, machine_services: Machine) -> None:
    m = machine_services
    ref, unit, old = service(env, "ctl-notify", "io.autoupdated.mode=notify")
    code, out, err = check(env, "")
    assert code == 0, err
    assert f"{unit},{ref},pending,registry" in out
    assert "mode notify: not pulled, not restarted" in err
    assert tag_target(m, ref) == old, "notify-only pulled the new image"
    assert m.container_image_id("ctl-notify") == old


def test_a_failing_pre_update_hook_keeps_the_old_image(env: Env, machine_services: Machine) -> None:
    m = machine_services
    ref, unit, old = service(env, "ctl-prefail", "io.autoupdated.pre_update=fail")
    code, out, err = check(env, HOOKS)
    assert code == 125
    assert f"{unit},{ref},failed,registry" in out
    assert "pre_update hook 'fail' failed for container ctl-prefail: exit code 4" in err
    assert "backup failed: disk full" in err
    assert tag_target(m, ref) == old, "the tag moved although the pre_update hook failed"
    assert m.container_image_id("ctl-prefail") == old


def test_a_post_update_hook_sees_the_new_digest(env: Env, machine_services: Machine) -> None:
    m = machine_services
    ref, unit, old = service(env, "ctl-post")
    name = ref.split("/", 1)[1].split(":")[0]
    remote = env.registry.digest_of(name, "latest")
    code, out, err = check(env, HOOKS + '\n[[container]]\nmatch = "ctl-post"\npost_update = "record"\n')
    assert code == 0, err
    assert f"{unit},{ref},true,registry" in out
    seen = dict(line.split("=", 1) for line in m.read("/root/post-hook.env").splitlines())
    assert seen["AUTOUPDATED_NEW_DIGEST"] == remote
    assert seen["AUTOUPDATED_CONTAINER"] == "ctl-post" and seen["AUTOUPDATED_UNIT"] == unit
    assert seen["AUTOUPDATED_OLD_DIGEST"] and seen["AUTOUPDATED_OLD_DIGEST"] != remote
    assert m.container_image_id("ctl-post") != old


def test_a_label_naming_a_hook_the_config_lacks_is_refused_and_never_run(env: Env, machine_services: Machine) -> None:
    m = machine_services
    m.run("rm", "-f", "/root/evil-ran")
    ref, _, old = service(env, "ctl-evil", "io.autoupdated.pre_update=touch /root/evil-ran")
    code, _, err = check(env, HOOKS)
    assert code == 125
    assert "container ctl-evil: label io.autoupdated.pre_update='touch /root/evil-ran' names hook" in err
    assert "The hook was not run" in err
    assert m.run("test", "-e", "/root/evil-ran", check=False).returncode == 1
    assert m.container_image_id("ctl-evil") == old and tag_target(m, ref) == old


def test_cooldown_holds_a_new_digest_then_releases_it(env: Env, machine_services: Machine) -> None:
    m = machine_services
    ref, unit, old = service(env, "ctl-cool", "io.autoupdated.min_image_age=6s")
    db = ["--history-db", "/root/controls-history.db"]
    m.run("rm", "-f", "/root/controls-history.db")
    code, out, err = check(env, "", *db)
    assert code == 0, err
    assert f"{unit},{ref},pending,registry" in out and "eligible at" in err
    assert tag_target(m, ref) == old, "a cooling-down image was pulled"
    time.sleep(6.5)
    code, out, err = check(env, "", *db)
    assert code == 0, err
    assert f"{unit},{ref},true,registry" in out
    assert m.container_image_id("ctl-cool") != old


def test_check_holds_the_restart_outside_a_window_and_ignore_windows_overrides(
    env: Env, machine_services: Machine
) -> None:
    m = machine_services
    later = datetime.now(UTC) + timedelta(hours=2)
    window = f"{later:%H:%M}..{later + timedelta(minutes=5):%H:%M} UTC"
    ref, unit, old = service(env, "ctl-win", f"io.autoupdated.restart_window={window}")
    code, out, err = check(env, "")
    assert code == 0, err
    assert f"{unit},{ref},pending,registry" in out and "restart waits for the restart window" in err
    assert tag_target(m, ref) != old, "outside a window the image is pulled at once"
    assert m.container_image_id("ctl-win") == old, "restarted outside its window"
    code, out, err = check(env, "", "--ignore-windows")
    assert code == 0, err
    assert f"{unit},{ref},true,registry" in out
    assert m.container_image_id("ctl-win") != old


# -- the daemon under systemd ----------------------------------------------------------------------


def held(m: Machine, name: str) -> dict[str, str] | None:
    status = json.loads(m.run("autoupdated", "status", "--format", "json").stdout)
    for item in status.get("held") or []:
        if item.get("container") == name:
            return dict(item)
    return None


def test_an_update_outside_the_window_is_pulled_then_restarted_at_the_window_start(
    daemon: Daemon, images: Callable[[str], str]
) -> None:
    m = daemon.m
    ref, unit = labelled_service(m, images, "aud-win")
    old = m.container_image_id("aud-win")
    images("aud-win")
    opens = (datetime.now(UTC) + timedelta(seconds=25)).replace(microsecond=0)
    window = f"{opens:%H:%M:%S}..{opens + timedelta(minutes=10):%H:%M:%S} UTC"
    daemon.configure(f'schedule = "every 1h"\nrun_on_start = true\nrestart_window = "{window}"\n')
    daemon.start()
    first = daemon.wait_run(lambda r: r["CONTAINERS"] == "1", "the first run")
    assert first["PENDING"] == "1" and first["UPDATED"] == "0"
    waiting = daemon.wait("the held update in status", lambda: held(m, "aud-win"))
    assert isinstance(waiting, dict) and waiting["waits_for"] == "window" and window in waiting["reason"]
    assert datetime.fromisoformat(waiting["eligible_at"]) == opens
    assert datetime.now(UTC) < opens and image_of(m, "aud-win") == old, "restarted before the window"
    assert tag_target(m, ref) != old, "not pulled at once"
    text = m.run("autoupdated", "status").stdout
    assert "aud-win" in text and "waits for window" in text
    daemon.wait("the restart at the window's start", lambda: image_of(m, "aud-win") not in ("", old), timeout=90)
    assert datetime.now(UTC) >= opens
    daemon.wait("aud-win running again", lambda: running(m, "aud-win"))
    run = daemon.wait_run(lambda r: r["UPDATED"] == "1", "the window run")
    assert "held update due" in run["REASON"]
    assert m.systemctl("is-active", unit).stdout.strip() == "active"


def test_approve_restarts_the_waiting_digest_and_refuses_a_stale_one(
    daemon: Daemon, images: Callable[[str], str]
) -> None:
    m = daemon.m
    ref, unit = labelled_service(m, images, "aud-appr")
    old = m.container_image_id("aud-appr")
    images("aud-appr")
    daemon.configure('schedule = "every 1h"\nrun_on_start = true\nmode = "approve"\n')
    daemon.start()
    first = daemon.wait("the update waiting for approval", lambda: held(m, "aud-appr"))
    assert isinstance(first, dict) and first["waits_for"] == "approval"
    assert first["approve"] == f"autoupdated approve aud-appr --digest {first['digest']}"
    assert first["approve"] in m.run("autoupdated", "status").stdout
    # The hold is recorded when the update is decided, before the pull: the run's end says it is pulled.
    run = daemon.wait_run(lambda r: r["CONTAINERS"] == "1", "the first run")
    assert run["PENDING"] == "1" and run["FAILED"] == "0", run["MESSAGE"]
    assert image_of(m, "aud-appr") == old and tag_target(m, ref) != old, "pulled, not restarted"

    images("aud-appr")  # the image moves on before the admin approves
    assert m.run("autoupdated", "trigger", "--wait", check=False).returncode == 0
    now = held(m, "aud-appr")
    assert now is not None and now["digest"] != first["digest"]
    r = m.run("autoupdated", "approve", "aud-appr", "--digest", first["digest"], check=False)
    assert r.returncode != 0 and "has moved since" in r.stderr and now["digest"] in r.stderr
    assert image_of(m, "aud-appr") == old

    r = m.run("autoupdated", "approve", unit, "--digest", now["digest"], check=False, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "aud-appr: true" in r.stdout
    assert image_of(m, "aud-appr") not in ("", old) and running(m, "aud-appr")
    assert held(m, "aud-appr") is None


def tag_many(registry: Registry, name: str, source_tag: str, tags: list[str]) -> None:
    """Many tags of one image, by PUTting its manifest under each (what `podman push` would do, fast)."""
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    with registry.http() as client:
        got = client.get(f"/v2/{name}/manifests/{source_tag}", headers={"Accept": accept})
        got.raise_for_status()
        for tag in tags:
            put = client.put(
                f"/v2/{name}/manifests/{tag}",
                content=got.content,
                headers={"Content-Type": got.headers["Content-Type"]},
            )
            put.raise_for_status()


def test_new_tags_are_found_across_pages_of_a_real_registry_once_a_day(env: Env, machine_services: Machine) -> None:
    m = machine_services
    env.push("ctl-tags")
    tags = [f"1.{i}.0" for i in range(250)]
    tag_many(env.registry, "ctl-tags", "latest", tags)
    running_ref = f"{env.registry.host_port}/ctl-tags:1.200.0"
    m.podman("pull", "-q", running_ref)
    m.create_service(
        "ctl-tags", running_ref, policy="registry", extra_args=["--label", "io.autoupdated.track_tags=semver"]
    )
    other = f"{env.registry.host_port}/ctl-tags:1.100.0"
    m.podman("pull", "-q", other)
    m.create_service("ctl-notags", other, policy="registry")
    m.run("rm", "-f", "/root/tags-history.db")
    env.registry.mark()
    code, _, err = check(env, "", "--history-db", "/root/tags-history.db")
    assert code == 0, err
    assert "container ctl-tags: 1.249.0 available; you run 1.200.0" in err
    assert "ctl-notags:" not in err
    listings = [r for r in env.registry.requests() if r.path.startswith("/v2/ctl-tags/tags/list")]
    # distribution 2.8 ignores `n` and sends every tag at once, without a Link (pagination came in
    # v3); the client follows Link pages where there are some (tests/unit/adapters/registry/test_tags.py).
    with env.registry.http() as client:
        page = client.get("/v2/ctl-tags/tags/list?n=100")
    assert len(page.json()["tags"]) == 251 and "Link" not in page.headers
    assert [(r.method, r.status) for r in listings] == [("GET", 200)], listings
    assert m.podman("inspect", "--format", "{{.ImageName}}", "ctl-tags").stdout.strip() == running_ref
    env.registry.mark()
    code, _, err = check(env, "", "--history-db", "/root/tags-history.db")
    assert code == 0 and "1.249.0 available" in err
    assert not [r for r in env.registry.requests() if "/tags/list" in r.path], "listed again within a day"


def test_a_calendar_schedule_fires_when_the_machines_systemd_says(daemon: Daemon) -> None:
    m = daemon.m
    expression = "*-*-* *:*:00/20"
    daemon.configure(f'schedule = "{expression}"\n')
    daemon.start()
    status = json.loads(m.run("autoupdated", "status", "--format", "json").stdout)
    assert status["daemon"]["schedule"] == expression
    said = m.run("systemd-analyze", "calendar", "--iterations=3", expression).stdout
    expected = parse_output(said).times
    next_run = datetime.fromisoformat(status["next_run"])
    assert next_run in expected[:2], (next_run, expected)  # the first, or the second if one just elapsed
    run = daemon.wait_run(lambda r: r["REASON"] == "schedule", "a scheduled run", timeout=45)
    started = datetime.fromtimestamp(int(run["__REALTIME_TIMESTAMP"]) / 1e6, UTC)
    assert started.second % 20 in (0, 1, 2), started
    r = m.run("autoupdated", "config", "check", "/etc/autoupdated.toml", check=False)
    assert r.returncode == 0, r.stderr
    m.write("/root/bad-calendar.toml", 'schedule = "Caturday *-*-* 03:00"\n')
    r = m.run("autoupdated", "config", "check", "/root/bad-calendar.toml", check=False)
    assert r.returncode == 78 and "Failed to parse calendar specification" in r.stderr, r.stderr


def test_cooldown_from_the_images_created_time_reads_the_real_image_config(env: Env, machine_services: Machine) -> None:
    m = machine_services
    ref, unit, old = service(env, "ctl-created", "io.autoupdated.min_image_age=1h")
    env.registry.mark()
    code, out, err = check(env, 'image_age_from = "created"\n')
    assert code == 0, err
    assert f"{unit},{ref},pending,registry" in out
    assert "created " in err and "eligible at" in err, err
    assert any("/blobs/sha256:" in r.path and r.method == "GET" for r in env.registry.requests()), "config not read"
    assert tag_target(m, ref) == old

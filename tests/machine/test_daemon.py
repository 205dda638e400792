"""The daemon as users run it: `systemctl enable --now autoupdated` in a booted systemd machine.

The package is installed into the machine's /opt/autoupdated venv from a wheel built here
(offline), the shipped unit file goes to /etc/systemd/system unchanged, and a config with a
fast schedule goes to /etc/autoupdated.toml.  Everything is then observed the way an admin
would: `systemctl`, `journalctl -o json`, `podman`.  Every test only lets the daemon touch
containers named `aud-*` (include_containers), so it can never disturb other tests' containers.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable

import pytest

from autoupdated.adapters import journal
from tests.harness.daemon import (
    CONFIG,
    SLOW_STOP,
    STATE,
    UNIT,
    Daemon,
    image_of,
    install,
    labelled_service,
    running,
)
from tests.harness.images import ImageBuilder
from tests.harness.machine import Machine
from tests.harness.registry import Registry
from tests.harness.registry_fixtures import AUTH_PASSWORD, AUTH_USER

pytestmark = pytest.mark.machine


# -- the tests ----------------------------------------------------------------------------------


def test_enable_now_updates_a_labelled_container_and_journals_it(daemon: Daemon, images: Callable[[str], str]) -> None:
    m = daemon.m
    ref, unit = labelled_service(m, images, "aud-web")
    old_image = m.container_image_id("aud-web")
    daemon.configure('schedule = "every 3s"\n')
    daemon.dropin("[Service]\nWatchdogSec=3s\n")  # the pings must reach systemd, or it kills us
    daemon.start()
    assert m.systemctl("is-active", UNIT).stdout.strip() == "active"
    first = daemon.wait_run(lambda r: r["CONTAINERS"] == "1", "a first run that sees aud-web")
    assert first["UPDATED"] == "0" and first["PRIORITY"] == str(journal.INFO)
    status = m.systemctl("status", "--no-pager", UNIT, check=False).stdout
    assert re.search(r'Status: "(Idle|Running run \d+ \(schedule\)); next run \d{4}-\d\d-\d\d ', status), status
    assert "last run" in status

    images("aud-web")  # a new image in the registry
    daemon.wait("the unit restarted onto the new image", lambda: image_of(m, "aud-web") not in ("", old_image))
    daemon.wait("aud-web running again", lambda: running(m, "aud-web"))
    assert m.systemctl("is-active", unit).stdout.strip() == "active"
    new_image = m.container_image_id("aud-web")

    outcomes = daemon.wait(
        "the structured journal entry",
        lambda: daemon.entries("CONTAINER_NAME=aud-web", f"MESSAGE_ID={journal.MESSAGE_ID_OUTCOME}", "RESULT=true"),
    )
    assert isinstance(outcomes, list)
    entry = outcomes[0]
    assert entry["_SYSTEMD_UNIT"] == UNIT and entry["SYSLOG_IDENTIFIER"] == "autoupdated"
    assert entry["PRIORITY"] == str(journal.NOTICE)
    assert entry["UNIT"] == unit and entry["IMAGE"] == ref and entry["POLICY"] == "registry"
    assert entry["NEW_IMAGE_ID"].startswith(new_image) or new_image.startswith(entry["NEW_IMAGE_ID"])
    summary = daemon.wait_run(lambda r: r["UPDATED"] == "1", "the run summary of the update")
    assert summary["PRIORITY"] == str(journal.NOTICE) and summary["RESULT"] == "ok"
    # podman's service prunes after an update: the old image was dangling, and is gone.
    daemon.wait("the old image pruned", lambda: m.podman("image", "exists", old_image, check=False).returncode == 1)

    # The admin's view: status from the daemon, a run on demand, watchdog never fired.
    main_pid = daemon.prop("MainPID")
    status_json = json.loads(m.run("autoupdated", "status", "--format", "json").stdout)
    assert str(status_json["daemon"]["pid"]) == main_pid
    assert status_json["last_run"]["entries"][0]["container_name"] == "aud-web"
    r = m.run("autoupdated", "trigger", "--wait", check=False)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"{re.escape(unit)}\s+\w{{12}} \(aud-web\)\s+{re.escape(ref)}\s+registry\s+false", r.stdout)
    assert daemon.prop("NRestarts") == "0" and daemon.prop("MainPID") == main_pid


def test_reload_applies_new_filters_and_schedule_and_rejects_a_broken_file(
    daemon: Daemon, images: Callable[[str], str]
) -> None:
    m = daemon.m
    labelled_service(m, images, "aud-reload")
    daemon.configure('schedule = "every 2s"\n')
    daemon.start()
    main_pid = daemon.prop("MainPID")
    daemon.wait_run(lambda r: r["CONTAINERS"] == "1", "a run that handles aud-reload")

    # New filters: the container is no longer ours.
    m.write(CONFIG, 'randomized_delay = 0\nschedule = "every 2s"\ninclude_containers = ["nomatch-*"]\n')
    m.systemctl("reload", UNIT)
    reloaded = daemon.wait(
        "the reload", lambda: daemon.entries(f"MESSAGE_ID={journal.MESSAGE_ID_CONFIG}", "RESULT=reloaded")
    )
    assert isinstance(reloaded, list) and reloaded[0]["CHANGED"] == "include_containers"
    after = int(reloaded[0]["__REALTIME_TIMESTAMP"])
    daemon.wait_run(
        lambda r: int(r["__REALTIME_TIMESTAMP"]) > after and r["CONTAINERS"] == "0", "a run with the new filter"
    )

    # New schedule: yearly, so the runs stop.
    m.write(CONFIG, 'randomized_delay = 0\nschedule = "0 0 1 1 *"\ninclude_containers = ["nomatch-*"]\n')
    m.systemctl("reload", UNIT)
    daemon.wait(
        "the second reload",
        lambda: len(daemon.entries(f"MESSAGE_ID={journal.MESSAGE_ID_CONFIG}", "RESULT=reloaded")) == 2,
    )
    daemon.wait(
        "the STATUS line to show the new next run",
        lambda: re.search(r"next run \d{4}-01-01 00:00:00", daemon.prop("StatusText")),
    )
    time.sleep(1)  # a run that started before the reload may still finish
    count = len(daemon.runs())
    time.sleep(5)
    assert len(daemon.runs()) == count, "no run on the yearly schedule"

    # A broken file: rejected with an error naming file and key; the old configuration stays.
    m.write(CONFIG, 'randomized_delay = 0\nschedule = "every 1s"\nrestart_timeout = -3\n')
    assert m.systemctl("reload", UNIT, check=False).returncode == 0
    rejected = daemon.wait(
        "the rejected reload", lambda: daemon.entries(f"MESSAGE_ID={journal.MESSAGE_ID_CONFIG}", "RESULT=rejected")
    )
    assert isinstance(rejected, list)
    assert rejected[0]["PRIORITY"] == str(journal.ERR)
    assert f"{CONFIG}: key 'restart_timeout': must be greater than 0" in rejected[0]["MESSAGE"]
    time.sleep(4)
    assert len(daemon.runs()) == count, "the broken file's 'every 1s' schedule never took effect"
    assert m.systemctl("is-active", UNIT).stdout.strip() == "active" and daemon.prop("MainPID") == main_pid
    assert "last reload rejected" in daemon.prop("StatusText")
    # `autoupdated status` still reaches the daemon (with a warning about the file).
    r = m.run("autoupdated", "status", "--format", "json", check=False)
    assert r.returncode == 0 and json.loads(r.stdout)["daemon"]["schedule"] == "0 0 1 1 *"
    assert "restart_timeout" in r.stderr


def test_a_schedule_the_scheduler_cannot_take_is_rejected_by_reload_and_start(daemon: Daemon) -> None:
    """Such values passed validation once, then a reload died with OverflowError after taking the
    new configuration, and a fresh start crash-looped with a traceback (issue 9)."""
    m = daemon.m
    daemon.configure('schedule = "0 0 1 1 *"\n')
    daemon.start()
    main_pid = daemon.prop("MainPID")
    bad_files = {
        "schedule": 'randomized_delay = 0\nschedule = "every 99999999999999999999999w"\n',
        "randomized_delay": 'schedule = "0 0 1 1 *"\nrandomized_delay = 1e300\n',
    }
    for number, (key, text) in enumerate(bad_files.items(), start=1):
        m.write(CONFIG, text)
        m.systemctl("reload", UNIT)
        found = daemon.wait(
            f"the rejected reload of {key}",
            lambda number=number: (
                len(rejected := daemon.entries(f"MESSAGE_ID={journal.MESSAGE_ID_CONFIG}", "RESULT=rejected")) >= number
                and rejected
            ),
        )
        assert isinstance(found, list)
        message = found[number - 1]["MESSAGE"]
        assert f"{CONFIG}: key '{key}'" in message, message
        assert m.systemctl("is-active", UNIT).stdout.strip() == "active" and daemon.prop("MainPID") == main_pid
        assert "last reload rejected" in daemon.prop("StatusText")
        status = json.loads(m.run("autoupdated", "status", "--format", "json").stdout)
        assert status["daemon"]["schedule"] == "0 0 1 1 *"
        assert status["next_run"][5:10] == "01-01", "the yearly trigger in force stays in force"
    everything = "\n".join(e.get("MESSAGE", "") for e in daemon.entries())
    assert "Traceback" not in everything and "OverflowError" not in everything

    # A fresh start with such a file exits 78 (a configuration error), which the unit does not retry.
    m.systemctl("stop", UNIT)
    m.write(CONFIG, bad_files["schedule"])
    assert m.systemctl("start", UNIT, check=False).returncode != 0
    daemon.wait("the failed start", lambda: daemon.prop("ActiveState") == "failed")
    assert daemon.prop("ExecMainStatus") == "78" and daemon.prop("NRestarts") == "0"
    r = m.run("autoupdated", "config", "check", check=False)
    assert r.returncode == 78 and "key 'schedule'" in r.stderr and "Traceback" not in r.stderr


def test_stop_during_a_run_leaves_every_container_running(daemon: Daemon, images: Callable[[str], str]) -> None:
    m = daemon.m
    names = ["aud-stop1", "aud-stop2", "aud-stop3"]
    units = {name: labelled_service(m, images, name, command=SLOW_STOP)[1] for name in names}
    old = {name: m.container_image_id(name) for name in names}
    daemon.configure('schedule = "0 0 1 1 *"\nrestart_concurrency = 1\n')
    daemon.start()
    for name in names:
        images(name)
    assert "started" in m.run("autoupdated", "trigger").stdout

    def restarting() -> list[str]:
        """The units whose restart has begun, in the order they began (pulls finish in any order)."""
        entries = daemon.entries("LOGGER=autoupdated.progress")
        started = [e["MESSAGE"].removeprefix("Restarting unit ") for e in entries]
        return [unit for unit in started if unit in units.values()]

    first = daemon.wait("the first unit restart", restarting)
    assert isinstance(first, list)
    t0 = time.monotonic()
    m.systemctl("stop", UNIT, timeout=180)  # returns once the daemon has exited
    took = time.monotonic() - t0
    assert daemon.prop("ActiveState") == "inactive"
    assert daemon.prop("Result") == "success" and daemon.prop("ExecMainStatus") == "0"
    for name in names:
        assert m.systemctl("is-active", units[name]).stdout.strip() == "active", name
        assert running(m, name), f"{name} is not running after the daemon stopped"
    summary = daemon.wait_run(lambda r: True, "the summary of the interrupted run")
    assert summary["FAILED"] == "0"
    assert int(summary["UPDATED"]) >= 1 and int(summary["PENDING"]) >= 1
    assert int(summary["UPDATED"]) + int(summary["PENDING"]) == 3
    began = restarting()
    for name in names:
        if units[name] in began:
            assert m.container_image_id(name) != old[name], f"{name}: the restart under way was finished"
        else:
            assert m.container_image_id(name) == old[name], f"{name}: no restart started after the stop"
    assert len(began) == int(summary["UPDATED"]), (began, summary)
    notice = daemon.entries(
        "MESSAGE=Stopping during a run: no new pull or restart starts; waiting up to 90 s for restarts already started"
    )
    assert notice, "the stop is explained in the journal"
    print(f"\nsystemctl stop during a unit restart took {took:.1f} s")


def test_unreachable_podman_fails_the_run_and_the_next_run_retries(daemon: Daemon) -> None:
    m = daemon.m
    daemon.configure('schedule = "0 0 1 1 *"\n')
    daemon.start()
    m.systemctl("stop", "podman.socket", "podman.service")
    try:
        r = m.run("autoupdated", "trigger", "--wait", check=False)
        assert r.returncode == 1 and "cannot reach the podman service" in r.stdout
        failed = daemon.entries(f"MESSAGE_ID={journal.MESSAGE_ID_RUN_FAILED}")
        assert len(failed) == 1 and failed[0]["PRIORITY"] == str(journal.ERR)
        assert "/run/podman/podman.sock" in failed[0]["MESSAGE"] and "next run will try again" in failed[0]["MESSAGE"]
        assert m.systemctl("is-active", UNIT).stdout.strip() == "active"
    finally:
        m.systemctl("start", "podman.socket")
    r = m.run("autoupdated", "trigger", "--wait", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_systemd_analyze_security(installed: Machine) -> None:
    r = installed.run("systemd-analyze", "security", "--no-pager", UNIT, check=False)
    match = re.search(r"Overall exposure level for autoupdated\.service: (\d+\.\d+) (\w+)", r.stdout)
    assert match, r.stdout + r.stderr
    score = float(match.group(1))
    print(f"\nsystemd-analyze security {UNIT}: {score} {match.group(2)}")
    assert score <= 2.0, r.stdout


def test_under_its_unit_the_daemon_reads_roots_auth_file_but_no_home_directory(
    daemon: Daemon, auth_registry: Registry, image_builder: ImageBuilder
) -> None:
    """ProtectHome=tmpfs hides /home; BindReadOnlyPaths= brings root's auth files back in."""
    m = daemon.m
    creds = (AUTH_USER, AUTH_PASSWORD)
    m.trust_registry(auth_registry.host_port, insecure=True)
    m.systemctl("stop", "podman.service", check=False)  # the API service reads registries.conf once
    token = base64.b64encode(":".join(creds).encode()).decode()
    auths = json.dumps({"auths": {auth_registry.host_port: {"auth": token}}})
    m.write("/root/.config/containers/auth.json", auths, mode=0o600)
    m.write("/home/alice/auth.json", auths, mode=0o600)
    refs = {}
    try:
        for name in ("aud-rootauth", "aud-homeauth"):
            refs[name] = f"{auth_registry.host_port}/{name}:latest"
            image_builder.push(image_builder.build("good", f"{name}-1"), refs[name], creds)
            m.podman("pull", "-q", "--authfile=/root/.config/containers/auth.json", refs[name])
        m.create_service("aud-rootauth", refs["aud-rootauth"], policy="registry")
        m.create_service(
            "aud-homeauth",
            refs["aud-homeauth"],
            policy="registry",
            extra_args=["--label", "io.containers.autoupdate.authfile=/home/alice/auth.json"],
        )
        old = image_of(m, "aud-rootauth")
        for name in refs:
            image_builder.push(image_builder.build("good", f"{name}-2"), refs[name], creds)
        daemon.configure('schedule = "0 0 1 1 *"\nrun_on_start = true\n')
        daemon.start()
        run = daemon.wait_run(lambda r: r["CONTAINERS"] == "2", "the run over both containers")
        assert run["UPDATED"] == "1" and run["FAILED"] == "1", run["MESSAGE"]
        daemon.wait("aud-rootauth on its new image", lambda: image_of(m, "aud-rootauth") not in ("", old))
        outcome = {
            e["CONTAINER_NAME"]: e for e in daemon.entries(f"MESSAGE_ID={journal.MESSAGE_ID_OUTCOME}")
        }
        assert outcome["aud-rootauth"]["RESULT"] == "true"
        assert outcome["aud-homeauth"]["RESULT"] == "failed"
        # The hidden file reads as empty, as podman reads a missing one: the registry refuses, and
        # the error names the file that gave nothing.
        error = outcome["aud-homeauth"]["ERROR"]
        assert "authentication required" in error and "the authfile /home/alice/auth.json gave no credentials" in error
        everything = json.dumps(daemon.entries())
        assert AUTH_PASSWORD not in everything and token not in everything
    finally:
        m.run("rm", "-rf", "/root/.config/containers/auth.json", "/home/alice")
        m.untrust_registry(auth_registry.host_port)


# -- reboot: a missed run is caught up once ------------------------------------------------------


def test_reboot_with_a_missed_run_catches_up_exactly_once(machine_platform: str) -> None:
    # Its own machine: the session machine is not rebooted under other tests.
    m = Machine.boot(platform=machine_platform)
    try:
        install(m)
        d = Daemon(m)
        # A daily run at the start of the next minute that is at least 20 s away.
        now = int(m.run("date", "+%s").stdout)
        due = (now // 60 + 1) * 60
        if due - now < 20:
            due += 60
        minute, hour = m.run("date", "-d", f"@{due}", "+%M %H").stdout.split()
        d.configure(f'schedule = "{int(minute)} {int(hour)} * * *"\n')
        d.start()
        assert m.run("test", "-f", f"{STATE}/timer.stamp", check=False).returncode == 0, "first start: stamp"
        assert d.runs() == []

        m.power_off()  # the machine is off when the run is due ...
        time.sleep(max(0.0, due + 2 - time.time()))
        m.boot_again()  # ... and comes back after it
        m.wait_active(UNIT)  # enabled: started at boot
        caught_up = d.wait_run(lambda r: r["REASON"] == "catch-up", "the catch-up run after boot", timeout=30)
        assert caught_up["RESULT"] == "ok"
        missed = d.entries("MISSED_RUN=" + _iso_utc(due, m))
        assert len(missed) == 1, d.entries()
        time.sleep(5)
        assert len(d.runs()) == 1, "exactly one run after the reboot"
        # A restart of the daemon does not catch the same run up again.
        m.systemctl("restart", UNIT)
        m.wait_active(UNIT)
        time.sleep(3)
        assert len(d.runs()) == 1
    finally:
        m.stop()


def _iso_utc(epoch: int, m: Machine) -> str:
    """MISSED_RUN as the daemon writes it: ISO 8601 in the machine's local zone."""
    return m.run("date", "-d", f"@{epoch}", "+%Y-%m-%dT%H:%M:%S%:z").stdout.strip()

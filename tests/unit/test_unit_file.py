"""The shipped units: a bounded start loop, home directories hidden but root's auth files
readable, and the writable paths config check warns about kept in step with the unit."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoupdated import config
from autoupdated.daemon.notifications import STOP_GRACE

REPO = Path(__file__).resolve().parents[2]
SYSTEM_UNIT = REPO / "systemd" / "autoupdated.service"
USER_UNIT = REPO / "systemd" / "user" / "autoupdated.service"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: sections, repeatable keys, comments; no continuation lines used here."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path}: continuation lines are not expected: {line}"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {line} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not key=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"{key}: expected exactly one setting, got {values}"
    return values[0]


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_the_start_loop_is_bounded(unit: Path) -> None:
    sections = parse_unit(unit)
    interval = config.parse_duration(one(sections["Unit"], "StartLimitIntervalSec"))
    burst = int(one(sections["Unit"], "StartLimitBurst"))
    restart_sec = config.parse_duration(one(sections["Service"], "RestartSec"))
    assert 1 <= burst <= 10
    assert 60 <= interval <= 3600
    # The limit must be reachable: `burst` restarts, RestartSec apart, fit in the interval.
    assert burst * restart_sec < interval
    assert one(sections["Service"], "Restart") == "on-failure"
    assert one(sections["Service"], "RestartPreventExitStatus") == str(config.EX_CONFIG)
    assert "StartLimitIntervalSec" not in sections["Service"], "systemd reads it from [Unit] only"


def test_home_directories_are_hidden_but_roots_auth_files_are_bound_in() -> None:
    service = parse_unit(SYSTEM_UNIT)["Service"]
    assert one(service, "ProtectHome") == "tmpfs"
    bound = " ".join(service.get("BindReadOnlyPaths", [])).split()
    assert {"-/root/.config/containers", "-/root/.docker"} <= set(bound)
    assert all(path.startswith("-/root/") for path in bound), "only root's files, each optional"
    assert "BindPaths" not in service, "nothing in a home directory is writable"
    # podman's root auth file, /run/containers/0/auth.json, stays reachable.
    assert one(service, "ProtectSystem") == "strict"
    hidden = " ".join(service.get("InaccessiblePaths", []) + service.get("TemporaryFileSystem", [])).split()
    assert not any("/run/containers".startswith(path.lstrip("-+").split(":")[0]) for path in hidden)


def test_writable_paths_match_what_config_check_warns_about() -> None:
    service = parse_unit(SYSTEM_UNIT)["Service"]
    writable = {f"/var/lib/{name}" for name in one(service, "StateDirectory").split()}
    writable |= {f"/run/{name}" for name in one(service, "RuntimeDirectory").split()}
    writable |= {path.lstrip("-") for value in service.get("ReadWritePaths", []) for path in value.split()}
    assert writable == set(config.UNIT_WRITABLE_PATHS)
    assert one(service, "PrivateTmp") == "yes"
    assert set(config.UNIT_PRIVATE_PATHS) == {"/tmp", "/var/tmp"}


def test_stop_and_watchdog_leave_room_for_the_daemon() -> None:
    service = parse_unit(SYSTEM_UNIT)["Service"]
    # a run's restarts (stop_timeout), then the notifications under way (STOP_GRACE), then exit
    stop_budget = config.Settings().stop_timeout + STOP_GRACE
    assert config.parse_duration(one(service, "TimeoutStopSec")) > stop_budget
    assert one(service, "Type") == "notify"
    assert config.parse_duration(one(service, "WatchdogSec")) >= 10


# The daemon's measured peak over a 200-container update run (docs/daemon.md, "Resource limits").
MEASURED_PEAK_MB = 62.3
MEASURED_PEAK_FDS = 64


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_resource_limits_leave_a_generous_multiple_of_the_measured_peak(unit: Path) -> None:
    service = parse_unit(unit)["Service"]
    memory = one(service, "MemoryMax")
    assert memory.endswith("M") and int(memory[:-1]) >= 4 * MEASURED_PEAK_MB, memory
    assert int(one(service, "LimitNOFILE")) >= 16 * MEASURED_PEAK_FDS


def test_the_user_unit_does_not_use_sandboxing_a_user_manager_cannot_apply() -> None:
    service = parse_unit(USER_UNIT)["Service"]
    for key in ("ProtectHome", "ProtectSystem", "BindReadOnlyPaths", "PrivateTmp"):
        assert key not in service

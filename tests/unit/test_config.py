"""Configuration: strict validation with one clear message, env over file, schedules, the example file."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoupdated import config
from autoupdated.config import KEYS, ConfigError, Schedule, Settings, load

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "autoupdated.toml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("AUTOUPDATED_") or name in ("STATE_DIRECTORY", "RUNTIME_DIRECTORY"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "autoupdated.toml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(path)
    return str(info.value)


# -- loading ------------------------------------------------------------------------------


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    loaded = load(tmp_path / "absent.toml")
    assert not loaded.file_found
    assert loaded.settings == Settings()
    assert loaded.settings.schedule == "daily"
    assert loaded.settings.randomized_delay == 900
    assert loaded.settings.persistent is True
    assert set(loaded.sources.values()) == {"default"}


def test_values_from_file_and_env_with_their_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'schedule = "every 6h"\nrandomized_delay = "5m"\ndry_run = true\nrollback = false\n')
    monkeypatch.setenv("AUTOUPDATED_DRY_RUN", "false")
    monkeypatch.setenv("AUTOUPDATED_EXCLUDE_CONTAINERS", "db, cache-*")
    monkeypatch.setenv("AUTOUPDATED_INCLUDE_UNITS", '["container-*.service"]')
    monkeypatch.setenv("AUTOUPDATED_JOURNAL_SOCKET", "/dev/null")  # not a key: ignored, not an error
    loaded = load(path)
    s = loaded.settings
    assert (s.schedule, s.randomized_delay, s.dry_run, s.rollback) == ("every 6h", 300.0, False, False)
    assert s.exclude_containers == ["db", "cache-*"]
    assert s.include_units == ["container-*.service"]
    assert loaded.sources["schedule"] == "file"
    assert loaded.sources["dry_run"] == "env"
    assert loaded.sources["exclude_containers"] == "env"
    assert loaded.sources["prune"] == "default"


def test_config_env_variable_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "run_on_start = true\n")
    monkeypatch.setenv("AUTOUPDATED_CONFIG", str(path))
    assert load().settings.run_on_start is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sheduel = 'daily'\n", r"autoupdated\.toml: unknown key 'sheduel'; did you mean 'schedule'\?"),
        ("[filters]\ninclude = ['x']\n", r"autoupdated\.toml: unknown key 'filters'"),
        ("schedule = '61 * * * *'\n", r"autoupdated\.toml: key 'schedule': '61 \* \* \* \*' is not a valid schedule"),
        ("schedule = '* * *'\n", r"key 'schedule': .*wrong number of fields"),
        ("schedule = 'every fortnight'\n", r"key 'schedule': 'every fortnight' is not an interval"),
        ("schedule = 'every 0s'\n", r"key 'schedule': interval 'every 0s' is shorter than one second"),
        ("schedule = 5\n", r"key 'schedule': must be a valid string \(got 5\)"),
        ("restart_timeout = -5\n", r"key 'restart_timeout': must be greater than 0 \(got -5\)"),
        ("restart_timeout = 'soon'\n", r"key 'restart_timeout': 'soon' is not a duration"),
        ("restart_timeout = true\n", r"key 'restart_timeout': must be a number of seconds"),
        ("randomized_delay = -1\n", r"key 'randomized_delay': must be greater than or equal to 0"),
        ("randomized_delay = nan\n", r"key 'randomized_delay': must be a finite number"),
        ("rollback = 'yes'\n", r"key 'rollback': must be a valid boolean \(got 'yes'\)"),
        ("rollback = 1\n", r"key 'rollback': must be a valid boolean \(got 1\)"),
        ("check_concurrency = 0\n", r"key 'check_concurrency': must be greater than or equal to 1"),
        ("pull_concurrency = 2.5\n", r"key 'pull_concurrency': must be a valid integer"),
        ("include_containers = 'web'\n", r"key 'include_containers': must be a list of strings"),
        ("include_containers = ['web', 3]\n", r"key 'include_containers\[1\]': must be a valid string"),
        ("exclude_units = ['']\n", r"key 'exclude_units': contains an empty pattern"),
        ("bus = 'user'\n", r"key 'bus': must be 'auto', 'system' or 'session' \(got 'user'\)"),
        ("log_level = 'loud'\n", r"key 'log_level': must be 'debug', 'info', 'notice', 'warning' or 'error'"),
        ("authfile = 'auth.json'\n", r"key 'authfile': must be an absolute path"),
        ("podman_url = '/run/podman/podman.sock'\n", r"key 'podman_url': '/run/podman/podman.sock' is not a podman"),
        ("schedule = 'daily'\nrollback = = true\n", r"autoupdated\.toml: not valid TOML: .*line 2"),
    ],
)
def test_one_clear_message_naming_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(write(tmp_path, text))
    assert re.search(expected, message), message
    assert str(tmp_path / "autoupdated.toml") in message
    assert "Traceback" not in message and "pydantic" not in message


def test_every_problem_is_listed_once(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "restart_timeout = -5\nrollback = 'yes'\nfoo = 1\n"))
    lines = message.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(str(tmp_path)) for line in lines)


def test_env_errors_name_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOUPDATED_RESTART_TIMEOUT", "-1")
    message = error_of(write(tmp_path, ""))
    assert message.startswith("environment variable AUTOUPDATED_RESTART_TIMEOUT: key 'restart_timeout'")


def test_unreadable_and_odd_files(tmp_path: Path) -> None:
    assert "is a directory" in error_of(tmp_path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"schedule = '\xe9'\n")
    assert "not UTF-8" in error_of(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "absent.toml", required=True)


# -- schedules ------------------------------------------------------------------------------


def fire_times(text: str, start: datetime, count: int = 3) -> list[datetime]:
    trigger = Schedule.parse(text).trigger(timezone=UTC)
    times: list[datetime] = []
    previous = None
    now = start
    for _ in range(count):
        nxt = trigger.get_next_fire_time(previous, now)
        times.append(nxt)
        previous, now = nxt, nxt
    return times


def test_daily_is_midnight_like_the_podman_timer() -> None:
    start = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    assert fire_times("daily", start, 2) == [datetime(2030, 1, 2, tzinfo=UTC), datetime(2030, 1, 3, tzinfo=UTC)]
    assert fire_times("@daily", start, 1) == fire_times("0 0 * * *", start, 1)


def test_crontab_weekdays_count_from_sunday() -> None:
    # 2030-01-01 is a Tuesday.  APScheduler 3 counts Monday as 0; crontab counts Sunday as 0.
    start = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    assert fire_times("0 3 * * 0", start, 1) == [datetime(2030, 1, 6, 3, tzinfo=UTC)]
    assert fire_times("0 3 * * 7", start, 1) == [datetime(2030, 1, 6, 3, tzinfo=UTC)]
    assert fire_times("0 3 * * 1-5", start, 1) == [datetime(2030, 1, 2, 3, tzinfo=UTC)]
    assert [t.weekday() for t in fire_times("0 3 * * mon-fri/2", start, 3)] == [2, 4, 0]  # wed, fri, mon
    assert fire_times("0 3 * * weekly".replace("weekly", "*"), start, 1) == [datetime(2030, 1, 2, 3, tzinfo=UTC)]


def test_day_of_month_or_weekday_like_vixie_cron() -> None:
    start = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    # "on the 15th, and on Sundays"
    assert fire_times("0 0 15 * 0", start, 3) == [
        datetime(2030, 1, 6, tzinfo=UTC),
        datetime(2030, 1, 13, tzinfo=UTC),
        datetime(2030, 1, 15, tzinfo=UTC),
    ]


def test_intervals_and_durations() -> None:
    assert Schedule.parse("every 6h").interval == 6 * 3600
    assert Schedule.parse("30m").interval == 1800
    assert Schedule.parse("every 1h 30min").interval == 5400
    assert config.parse_duration("90") == 90
    assert config.parse_duration("1.5s") == 1.5
    with pytest.raises(ValueError):
        config.parse_duration("5 parsecs")


def test_next_after_finds_a_missed_time() -> None:
    stamp = datetime(2030, 1, 1, 23, 0, tzinfo=UTC)
    assert Schedule.parse("daily").next_after(stamp, UTC) == datetime(2030, 1, 2, tzinfo=UTC)
    assert Schedule.parse("every 1h").next_after(stamp, UTC) == datetime(2030, 1, 2, tzinfo=UTC)


def test_randomized_delay_becomes_jitter() -> None:
    trigger = Schedule.parse("daily").trigger(jitter=900, timezone=UTC)
    start = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    for _ in range(20):
        fire = trigger.get_next_fire_time(None, start)
        assert datetime(2030, 1, 2, tzinfo=UTC) <= fire <= datetime(2030, 1, 2, 0, 15, tzinfo=UTC)


# -- anything accepted can run (issue 9) ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('schedule = "every 99999999999999999999999w"\n', r"key 'schedule': .* is longer than 366 days"),
        ('schedule = "every 367d"\n', r"key 'schedule': .* is longer than 366 days"),
        ("randomized_delay = 1e300\n", r"key 'randomized_delay': must be at most 7 days \(604800 s\)"),
        ('randomized_delay = "8d"\n', r"key 'randomized_delay': must be at most 7 days"),
        ("restart_timeout = 1e12\n", r"key 'restart_timeout': must be at most 7 days"),
        ("registry_timeout = 1e300\n", r"key 'registry_timeout': must be at most 7 days"),
        ('schedule = "0 0 30 2 *"\n', r"key 'schedule': '0 0 30 2 \*' never fires"),
    ],
)
def test_values_the_scheduler_cannot_take_are_refused_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(write(tmp_path, text))
    assert re.search(expected, message), message
    assert message.startswith(str(tmp_path / "autoupdated.toml"))


def test_a_huge_delay_from_the_environment_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOUPDATED_RANDOMIZED_DELAY", "1e300")
    monkeypatch.setenv("AUTOUPDATED_SCHEDULE", "every 99999999999999999999999w")
    lines = error_of(write(tmp_path, "")).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("environment variable AUTOUPDATED_SCHEDULE: key 'schedule'")
    assert lines[1].startswith("environment variable AUTOUPDATED_RANDOMIZED_DELAY: key 'randomized_delay'")


@pytest.mark.parametrize("schedule", ["every 366d", "every 1s", "0 0 29 2 *", "yearly", "*/5 * * * 0", "0 0 15 * 0"])
def test_the_largest_accepted_values_build_a_trigger_that_fires(tmp_path: Path, schedule: str) -> None:
    from tzlocal import get_localzone

    loaded = load(write(tmp_path, f'schedule = "{schedule}"\nrandomized_delay = "7d"\n'))
    for tz in (UTC, get_localzone()):
        trigger = config.schedule_trigger(loaded.settings, tz)
        assert trigger.get_next_fire_time(None, datetime.now(UTC)) is not None


def test_next_after_near_the_end_of_time_is_none() -> None:
    end = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    assert Schedule.parse("every 366d").next_after(end, UTC) is None


# -- paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["state_dir", "control_socket", "history_db", "authfile"])
def test_a_path_with_a_nul_byte_is_refused(tmp_path: Path, key: str) -> None:
    message = error_of(write(tmp_path, f'{key} = "/var/lib/x\\u0000y"\n'))
    assert message == (
        f"{tmp_path / 'autoupdated.toml'}: key {key!r}: contains a NUL byte ('/var/lib/x\\x00y'); "
        "write the path without it"
    )


@pytest.mark.parametrize("key", ["state_dir", "control_socket", "history_db", "authfile"])
def test_a_relative_path_is_refused_in_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    assert f"key {key!r}: must be an absolute path, got 'rel/x'" in error_of(write(tmp_path, f'{key} = "rel/x"\n'))
    monkeypatch.setenv(f"AUTOUPDATED_{key.upper()}", "rel/x")
    message = error_of(write(tmp_path, ""))
    assert message.startswith(f"environment variable AUTOUPDATED_{key.upper()}: key {key!r}: must be an absolute path")


def test_a_nul_in_the_podman_url_is_refused(tmp_path: Path) -> None:
    assert "key 'podman_url': contains a NUL byte" in error_of(write(tmp_path, 'podman_url = "unix:///r\\u0000"\n'))


def test_a_control_socket_path_too_long_to_bind_is_refused(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, f'control_socket = "/run/{"s" * 120}"\n'))
    assert "key 'control_socket': is 125 bytes long; a unix socket path may have at most 107" in message


def test_paths_the_unit_cannot_write_are_warned_about_when_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "rootless", lambda: False)
    path = write(
        tmp_path, 'state_dir = "/srv/au"\ncontrol_socket = "/tmp/c.sock"\nhistory_db = "/var/lib/autoupdated/h.db"\n'
    )
    monkeypatch.setenv("AUTOUPDATED_HISTORY_DB", "/data/h/history.db")
    warnings = load(path).warnings
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith(f"{path}: key 'state_dir': /srv/au is outside what the shipped unit")
    assert "ReadWritePaths=/srv/au" in warnings[0] and "systemctl edit autoupdated" in warnings[0]
    assert warnings[1].startswith("environment variable AUTOUPDATED_HISTORY_DB: key 'history_db'")
    assert "ReadWritePaths=/data/h" in warnings[1]
    assert warnings[2].startswith(f"{path}: key 'control_socket': /tmp/c.sock is in the unit's private /tmp")
    inside = write(tmp_path, 'state_dir = "/var/lib/autoupdated/sub"\ncontrol_socket = "/run/autoupdated/c"\n')
    monkeypatch.delenv("AUTOUPDATED_HISTORY_DB")
    assert load(inside).warnings == ()
    monkeypatch.setattr(config, "rootless", lambda: True)
    assert load(path).warnings == ()


# -- the environment ------------------------------------------------------------------------


def test_misspelt_variables_are_warned_about_with_the_one_meant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOUPDATED_ROLBACK", "false")
    monkeypatch.setenv("AUTOUPDATED_DRYRUN", "true")
    monkeypatch.setenv("AUTOUPDATED_ZZZZZZZZ", "1")
    loaded = load(write(tmp_path, ""))
    assert loaded.settings.rollback is True and loaded.settings.dry_run is False
    assert loaded.warnings == (
        "environment variable AUTOUPDATED_DRYRUN: not a setting, ignored; did you mean AUTOUPDATED_DRY_RUN?",
        "environment variable AUTOUPDATED_ROLBACK: not a setting, ignored; did you mean AUTOUPDATED_ROLLBACK?",
        "environment variable AUTOUPDATED_ZZZZZZZZ: not a setting, ignored",
    )


def test_variables_the_program_reads_are_not_warned_about(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AUTOUPDATED_CONFIG",
        "AUTOUPDATED_JOURNAL_SOCKET",
        "AUTOUPDATED_TEST_CACHE",
        "AUTOUPDATED_SKIP_ROOTFS",
    ):
        monkeypatch.setenv(name, str(tmp_path / "x"))
    monkeypatch.setenv("AUTOUPDATED_ROLLBACK", "0")
    monkeypatch.setenv("autoupdated_dry_run", "1")  # names are case-insensitive, as pydantic-settings reads them
    loaded = load(write(tmp_path, ""))
    assert loaded.warnings == ()
    assert loaded.settings.rollback is False and loaded.settings.dry_run is True


def test_deeply_nested_json_in_an_env_list_blames_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOUPDATED_INCLUDE_CONTAINERS", "[" * 10000)
    message = error_of(write(tmp_path, 'schedule = "daily"\n'))
    assert message.startswith("environment variable AUTOUPDATED_INCLUDE_CONTAINERS: key 'include_containers'")
    assert "nested more than 16 deep" in message
    assert str(tmp_path) not in message
    monkeypatch.setenv("AUTOUPDATED_INCLUDE_CONTAINERS", '["a[", "b{"]')  # brackets inside strings do not count
    assert load(write(tmp_path, "")).settings.include_containers == ["a[", "b{"]


def test_json_depth_counts_only_brackets_outside_strings() -> None:
    assert config.json_depth('[["x"], {"a": [1]}]') == 3
    assert config.json_depth('["[[[\\"[["]') == 1
    assert config.json_depth("[" * 30000) == 30000


def test_config_check_and_show_print_warnings_on_stderr(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    r = cli("config", "check", str(path), env={"AUTOUPDATED_ROLBACK": "false"})
    assert r.returncode == 0 and r.stdout.strip() == f"{path}: OK"
    assert r.stderr.strip() == (
        "autoupdated: warning: environment variable AUTOUPDATED_ROLBACK: not a setting, ignored; "
        "did you mean AUTOUPDATED_ROLLBACK?"
    )
    r = cli("config", "show", "--config", str(path), "--format", "json", env={"AUTOUPDATED_DRYRUN": "1"})
    assert r.returncode == 0 and "AUTOUPDATED_DRY_RUN?" in r.stderr
    json.loads(r.stdout)


def test_cli_refuses_values_that_would_crash_the_scheduler(tmp_path: Path) -> None:
    for text in ('schedule = "every 99999999999999999999999w"\n', "randomized_delay = 1e300\n"):
        path = write(tmp_path, text)
        for args in (("config", "check", str(path)), ("run", "--config", str(path))):
            r = cli(*args)
            assert r.returncode == 78, (args, r.stderr)
            assert "Traceback" not in r.stderr and str(path) in r.stderr


# -- the example file -----------------------------------------------------------------------


def test_example_documents_every_key_with_its_default(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    documented = re.findall(r"^# (\w+) = ", text, flags=re.M)
    assert sorted(documented) == sorted(KEYS), "every key exactly once"
    assert load(EXAMPLE).settings == Settings(), "all commented out: the file means the defaults"
    uncommented = re.sub(r"^# (\w+ = )", r"\1", text, flags=re.M)
    loaded = load(write(tmp_path, uncommented))
    defaults = Settings()
    for key in KEYS:
        if getattr(defaults, key) is not None:
            assert getattr(loaded.settings, key) == getattr(defaults, key), key


# -- the CLI --------------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOUPDATED_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "autoupdated", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        cwd=REPO,
    )


def test_config_check_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path, 'schedule = "every 5s"\n')
    r = cli("config", "check", str(good))
    assert (r.returncode, r.stdout.strip()) == (0, f"{good}: OK")
    bad = tmp_path / "bad.toml"
    bad.write_text("restart_timeout = -1\n")
    r = cli("config", "check", str(bad))
    assert r.returncode == 78
    assert r.stderr.strip() == f"autoupdated: {bad}: key 'restart_timeout': must be greater than 0 (got -1)"
    assert "Traceback" not in r.stderr
    r = cli("config", "check", str(tmp_path / "absent.toml"))
    assert r.returncode == 78 and "no such file" in r.stderr
    r = cli("run", "--config", str(bad))
    assert r.returncode == 78 and "restart_timeout" in r.stderr and "Traceback" not in r.stderr


def test_config_show_lists_sources(tmp_path: Path) -> None:
    path = write(tmp_path, 'schedule = "every 5s"\n')
    r = cli("config", "show", "--config", str(path), env={"AUTOUPDATED_DRY_RUN": "true"})
    assert r.returncode == 0, r.stderr
    lines = {line.split(" = ")[0]: line for line in r.stdout.splitlines() if " = " in line and line[0] != "#"}
    assert set(lines) == set(KEYS)
    assert re.fullmatch(r'schedule = "every 5s"\s+# file', lines["schedule"])
    assert re.fullmatch(r"dry_run = true\s+# env", lines["dry_run"])
    assert re.fullmatch(r"rollback = true\s+# default", lines["rollback"])
    r = cli("config", "show", "--config", str(path), "--format", "json")
    data = json.loads(r.stdout)
    assert data["settings"]["schedule"] == {"value": "every 5s", "source": "file"}


# -- never a traceback ----------------------------------------------------------------------

toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["daily", "every 5s", "*/5 * * * *", "0 0 31 2 *", "5m", "", "0 0 * * 8", "@yearly", "L"]),
)
toml_values = st.recursive(
    toml_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.sampled_from(["a", "b"]), children)),
    max_leaves=8,
)


def toml_literal(value: object) -> str:
    """A tiny TOML writer for the generated values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + "}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.one_of(st.sampled_from(KEYS), st.from_regex(r"[a-z_]{1,12}", fullmatch=True)), toml_values))
def test_generated_configs_load_or_fail_cleanly(tmp_path: Path, data: dict[str, object]) -> None:
    path = tmp_path / "gen.toml"
    path.write_text("".join(f"{key} = {toml_literal(value)}\n" for key, value in data.items()))
    try:
        loaded = load(path)
    except ConfigError as err:
        assert str(path) in str(err)
        assert str(err).strip()
    else:
        assert set(loaded.sources) == set(KEYS)
        config.render(loaded)
        config.render(loaded, "json")
        config.schedule_trigger(loaded.settings, UTC).get_next_fire_time(None, datetime.now(UTC))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_arbitrary_text_loads_or_fails_cleanly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "text.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load(path)
    except ConfigError as err:
        assert str(path) in str(err)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KEYS), st.text(max_size=40))
def test_arbitrary_env_values_load_or_fail_cleanly(key: str, value: str) -> None:
    import os

    if "\0" in value:
        return
    name = f"AUTOUPDATED_{key.upper()}"
    os.environ[name] = value
    try:
        load("/nonexistent/autoupdated.toml")
    except ConfigError as err:
        assert name in str(err) or "environment" in str(err)
    finally:
        del os.environ[name]


def test_cli_never_prints_a_traceback_for_generated_files(tmp_path: Path) -> None:
    """A handful of nasty files through the real CLI: exit 78 and a message, never a traceback."""
    cases = [
        "x = [1, 'a']\n",
        "schedule = {a = 1}\n",
        "restart_timeout = 1e400\n",
        "check_concurrency = 99999999999999999999\n",
        "\0",
        "a.b.c = 1\n",
        "schedule = '\\ud800'\n",
    ]
    for i, text in enumerate(cases):
        path = tmp_path / f"case{i}.toml"
        path.write_text(text, errors="surrogatepass")
        r = cli("config", "check", str(path))
        assert r.returncode == 78, (text, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and str(path) in r.stderr, (text, r.stderr)

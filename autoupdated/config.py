"""The daemon's configuration: `/etc/autoupdated.toml`, with `AUTOUPDATED_*` variables over it.

Loading is strict on purpose: a typo in a key or a wrong type in the file would otherwise be
silently ignored and the daemon would do something the admin did not ask for.  Every problem
becomes a `ConfigError` whose text names the file (or variable) and the key, and the CLI turns
it into exit status 78 (EX_CONFIG) without a traceback.

Values in the file are checked strictly (`rollback = "yes"` is an error: TOML has booleans);
values from the environment are strings by nature and are converted leniently
(`AUTOUPDATED_ROLLBACK=0`, `AUTOUPDATED_INCLUDE_CONTAINERS=web*,db`).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from autoupdated.calendar import CalendarError, elapses
from autoupdated.controls.model import ControlsConfig, Hook, Layer, Mode, Section
from autoupdated.controls.resolve import HOOK_KEYS
from autoupdated.controls.tags import check_track
from autoupdated.controls.windows import WindowError, parse_windows
from autoupdated.notifyconf import NotifyTarget, check_listen

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger

EX_CONFIG = 78
ENV_PREFIX = "AUTOUPDATED_"
SYSTEM_CONFIG = Path("/etc/autoupdated.toml")
CONFIG_ENV = "AUTOUPDATED_CONFIG"
# AUTOUPDATED_* variables that are not settings but are read by the program, its tests or its
# scripts: an unknown AUTOUPDATED_* variable is warned about, these are not.
OTHER_ENV = frozenset(
    {
        CONFIG_ENV,
        "AUTOUPDATED_JOURNAL_SOCKET",  # adapters/journal.py: the journal socket (tests point it elsewhere)
        "AUTOUPDATED_TEST_CACHE",  # scripts/build-rootfs.sh
        "AUTOUPDATED_SKIP_ROOTFS",  # scripts/setup.sh
    }
)

# Upper bounds, so that every accepted value can be scheduled (APScheduler and datetime overflow
# on huge ones) and handed to socket and D-Bus timeouts.
MAX_INTERVAL = 366 * 86400.0
MAX_RANDOMIZED_DELAY = 7 * 86400.0
MAX_TIMEOUT = 7 * 86400.0
MAX_JSON_DEPTH = 16  # an env list is a flat array; the bound keeps json.loads off the recursion limit
MAX_SOCKET_PATH = 107  # bytes in sockaddr_un.sun_path, less the terminating NUL

# The paths the shipped system unit lets the daemon write (StateDirectory=, RuntimeDirectory=,
# ReadWritePaths=; tests/test_unit_file.py keeps this in step with systemd/autoupdated.service).
UNIT_WRITABLE_PATHS = ("/var/lib/autoupdated", "/run/autoupdated")
UNIT_PRIVATE_PATHS = ("/tmp", "/var/tmp")  # PrivateTmp=yes: writable, but the daemon's own copy


class ConfigError(Exception):
    """A configuration problem, worded for the admin who has to fix it."""


# ---------------------------------------------------------------------------------------------
# Durations and schedules


_UNITS = {
    "ms": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
}  # fmt: skip
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")


def parse_duration(text: str) -> float:
    """Seconds in `"90"`, `"90s"`, `"5m"`, `"1h 30min"` (systemd.time(7)-like spans)."""
    stripped = text.strip().lower()
    if not stripped:
        raise ValueError("empty duration")
    try:
        return _finite(float(stripped))
    except ValueError:
        pass
    total = 0.0
    pos = 0
    while pos < len(stripped):
        match = _DURATION_PART.match(stripped, pos)
        if not match or match.group(2) not in _UNITS:
            raise ValueError(f'{text!r} is not a duration (use seconds, or e.g. "90s", "5m", "1h 30min")')
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return _finite(total)


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number of seconds")
    return value


def _at_most(limit: float, what: str) -> AfterValidator:
    """An upper bound whose message says the bound in words (pydantic's `le` only says the number)."""

    def check(value: float) -> float:
        if value > limit:
            raise ValueError(f"must be at most {what} ({limit:g} s), got {value:g} s")
        return value

    return AfterValidator(check)


def _to_seconds(value: object) -> object:
    """Before-validator for durations: a number of seconds or a duration string."""
    if isinstance(value, bool):
        raise ValueError('must be a number of seconds or a duration like "5m", not a boolean')
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise ValueError("is far too large") from None
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, str):
        return parse_duration(value)
    return value  # let pydantic name the wrong type


# Calendar shorthands of systemd.time(7) (as OnCalendar= in podman-auto-update.timer uses).
_SHORTHANDS = {
    "minutely": "* * * * *",
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * mon",
    "monthly": "0 0 1 * *",
    "quarterly": "0 0 1 1,4,7,10 *",
    "semiannually": "0 0 1 1,7 *",
    "yearly": "0 0 1 1 *",
    "annually": "0 0 1 1 *",
}
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 (and 7) = Sunday


def _cron_weekdays(field: str) -> str:
    """Crontab day-of-week field → APScheduler's, which numbers Monday 0 (its documented 3.x quirk)."""
    days: set[int] = set()
    for token in field.lower().split(","):
        base, _, step_text = token.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"bad step in day-of-week field {field!r}")
            step = int(step_text)
        if base == "*":
            first, last = 0, 6
        else:
            low, _, high = base.partition("-")
            first = _weekday_number(low, field)
            last = _weekday_number(high, field) if high else (6 if step_text else first)
            if last < first:
                raise ValueError(f"day-of-week range {base!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


def _weekday_number(text: str, field: str) -> int:
    if text in _WEEKDAYS:
        return _WEEKDAYS.index(text)
    if text.isdigit() and int(text) <= 7:
        return int(text)
    raise ValueError(f"bad day of week {text!r} in {field!r} (use 0-7 or sun..sat)")


_CRON_FIELD = re.compile(r"^[0-9A-Za-z*,/-]+$")


def _looks_like_cron(text: str) -> bool:
    """Crontab fields use none of systemd calendar syntax's ':' (times), '..' (ranges) or '~'."""
    return all(_CRON_FIELD.match(field) for field in text.split())


@dataclass(frozen=True, slots=True)
class Schedule:
    """When scheduled runs happen: a crontab expression, a fixed interval, or a systemd calendar
    expression (evaluated by systemd-analyze, autoupdated/calendar.py)."""

    text: str
    cron: str | None = None
    interval: float | None = None
    calendar: str | None = None  # systemd's normalized form

    @classmethod
    def parse(cls, text: str) -> Schedule:
        stripped = " ".join(text.split())
        lowered = stripped.lower()
        key = lowered.removeprefix("@")
        if key in _SHORTHANDS:
            return cls(stripped, cron=_SHORTHANDS[key])
        if lowered.startswith("every ") or (lowered and " " not in lowered and lowered[0].isdigit()):
            try:
                seconds = parse_duration(lowered.removeprefix("every "))
            except ValueError:
                if not lowered.startswith("every ") and not lowered.replace(".", "").isdigit():
                    return cls._calendar(stripped)  # "03:00", "2027-01-01": calendar expressions
                raise ValueError(f'{text!r} is not an interval (write e.g. "every 6h" or "30m")') from None
            if seconds < 1:
                raise ValueError(f"interval {text!r} is shorter than one second")
            if seconds > MAX_INTERVAL:
                raise ValueError(
                    f"interval {text!r} is longer than 366 days; for rarer runs use a crontab "
                    'expression, e.g. "0 3 1 1 *" (yearly)'
                )
            return cls(stripped, interval=seconds)
        if not _looks_like_cron(stripped):
            return cls._calendar(stripped)
        schedule = cls(stripped, cron=stripped)
        try:
            trigger = schedule.trigger()
        except Exception as err:  # APScheduler raises ValueError, KeyError, IndexError...
            raise ValueError(
                f"{text!r} is not a valid schedule: {err}; use a crontab expression "
                '("minute hour day month weekday", e.g. "0 3 * * *"), a shorthand '
                '("daily", "hourly", "weekly"), an interval ("every 6h") or a systemd calendar '
                'expression ("Mon..Fri *-*-* 03:00")'
            ) from None
        if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
            raise ValueError(f"{text!r} never fires (a day that no month has?); fix the day and month fields")
        return schedule

    @classmethod
    def _calendar(cls, text: str) -> Schedule:
        try:
            found = elapses(text, iterations=1)
        except CalendarError as err:
            raise ValueError(str(err)) from None
        if not found.times:
            raise ValueError(f"{text!r} never elapses again (systemd-analyze calendar finds no next time)")
        return cls(text, calendar=found.normalized)

    def trigger(self, *, jitter: float = 0.0, timezone: tzinfo | None = None) -> BaseTrigger:
        """The APScheduler trigger; `jitter` adds 0..N s to each run like RandomizedDelaySec."""
        from apscheduler.triggers.combining import OrTrigger
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        jitter_arg = int(jitter) if jitter >= 1 else None
        if self.calendar is not None:
            from autoupdated.calendar_trigger import CalendarTrigger  # systemd's own times, in the host's zone

            return CalendarTrigger(self.calendar, jitter=jitter_arg)
        if self.interval is not None:
            return IntervalTrigger(seconds=self.interval, jitter=jitter_arg, timezone=timezone)
        assert self.cron is not None
        fields = self.cron.split()
        if len(fields) != 5:
            raise ValueError(f"wrong number of fields: got {len(fields)}, expected 5")
        minute, hour, day, month, weekday = fields
        weekday = _cron_weekdays(weekday)

        def cron(day: str, weekday: str) -> CronTrigger:
            return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, timezone=timezone)

        if day != "*" and weekday != "*":
            # Vixie cron: when both are restricted, either one matching is enough.
            return OrTrigger([cron(day, "*"), cron("*", weekday)], jitter=jitter_arg)
        trigger = cron(day, weekday)
        trigger.jitter = jitter_arg
        return trigger

    def next_after(self, moment: datetime, timezone: tzinfo | None = None) -> datetime | None:
        """The first scheduled time after `moment` (timezone-aware), ignoring any randomized delay."""
        try:
            if self.interval is not None:
                return moment + timedelta(seconds=self.interval)
            trigger = self.trigger(timezone=timezone)
            result: datetime | None = trigger.get_next_fire_time(None, moment + timedelta(microseconds=1))
        except OverflowError:  # a moment near year 9999 (a timer stamp with a wild mtime)
            return None
        return result

    def __str__(self) -> str:
        return self.text


def _check_schedule(value: str) -> str:
    Schedule.parse(value)
    return value


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON text, counted without parsing it (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _split_list(value: object) -> object:
    """Env values for lists: a JSON array or a comma-separated list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            if json_depth(text) > MAX_JSON_DEPTH:
                raise ValueError(f"nested more than {MAX_JSON_DEPTH} deep; write a flat JSON array of strings")
            try:
                return json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"not a JSON array: {err}") from None
            except RecursionError:
                raise ValueError("nested too deeply; write a flat JSON array of strings") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _nonempty_globs(value: list[str]) -> list[str]:
    for item in value:
        if not item:
            raise ValueError("contains an empty pattern")
    return value


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


def _absolute_path(value: str | None) -> str | None:
    """A path the daemon can open later: absolute (its working directory is /) and without NUL,
    which no system call accepts."""
    if value is None:
        return value
    if "\0" in value:
        raise ValueError(f"contains a NUL byte ({value!r}); write the path without it")
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path, got {value!r}")
    return value


def _socket_path(value: str | None) -> str | None:
    if value is not None and len(os.fsencode(value)) > MAX_SOCKET_PATH:
        raise ValueError(
            f"is {len(os.fsencode(value))} bytes long; a unix socket path may have at most "
            f"{MAX_SOCKET_PATH}: choose a shorter path"
        )
    return value


_URL_SCHEMES = ("unix://", "http+unix://", "tcp://", "http://", "https://", "ssh://")


def _podman_url(value: str | None) -> str | None:
    if value is not None and "\0" in value:
        raise ValueError(f"contains a NUL byte ({value!r}); write the URL without it")
    if value is not None and not value.startswith(_URL_SCHEMES):
        raise ValueError(f'{value!r} is not a podman service URL (e.g. "unix:///run/podman/podman.sock")')
    return value


Seconds = Annotated[float, BeforeValidator(_to_seconds)]
Timeout = Annotated[Seconds, _at_most(MAX_TIMEOUT, "7 days")]
Globs = Annotated[list[str], NoDecode, BeforeValidator(_split_list), AfterValidator(_nonempty_globs)]
Concurrency = Annotated[int, Field(ge=1, le=1024)]
OptionalPath = Annotated[str | None, BeforeValidator(_empty_is_none), AfterValidator(_absolute_path)]
SocketPath = Annotated[OptionalPath, AfterValidator(_socket_path)]


# ---------------------------------------------------------------------------------------------
# Operator controls (autoupdated/controls/, docs/controls.md)


def _window_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


def _check_windows(value: list[str]) -> list[str]:
    try:
        parse_windows(value)
    except WindowError as err:
        raise ValueError(str(err)) from None
    return value


Windows = Annotated[list[str], NoDecode, BeforeValidator(_window_list), AfterValidator(_check_windows)]
Age = Annotated[Seconds, Field(ge=0), _at_most(MAX_INTERVAL, "366 days")]


def _check_track(value: str) -> str:
    return check_track(value) if value.strip() else ""


Track = Annotated[str, AfterValidator(_check_track)]


class HookSpec(BaseModel):
    """`[hooks.NAME]`: a command (no shell) and its timeout."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    command: Annotated[list[str], Field(min_length=1)]
    timeout: Annotated[Timeout, Field(gt=0)] = 60.0


class ControlSection(BaseModel):
    """`[[container]]` / `[[unit]]`: controls for the containers (units) whose name matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    match: Annotated[str, Field(min_length=1)]
    mode: Literal["auto", "notify", "approve"] | None = None
    restart_window: Windows | None = None
    min_image_age: Age | None = None
    pre_update: str | None = None
    post_update: str | None = None
    on_rollback: str | None = None
    track_tags: Track | None = None


def _layer(values: Any) -> Layer:
    windows = values.restart_window
    return Layer(
        mode=Mode(values.mode) if values.mode is not None else None,
        restart_window=parse_windows(windows) if windows is not None else None,
        min_image_age=values.min_image_age,
        pre_update=values.pre_update,
        post_update=values.post_update,
        on_rollback=values.on_rollback,
        track_tags=values.track_tags,
    )


def controls_config(settings: Any) -> ControlsConfig:
    sections = [Section("unit", s.match, _layer(s)) for s in settings.unit]
    sections += [Section("container", s.match, _layer(s)) for s in settings.container]
    hooks = {name: Hook(name, tuple(spec.command), spec.timeout) for name, spec in settings.hooks.items()}
    return ControlsConfig(
        defaults=_layer(settings),
        sections=tuple(sections),
        hooks=hooks,
        tag_check_interval=settings.tag_check_interval,
        image_age_from=settings.image_age_from,
    )


def hook_name_errors(settings: Any) -> list[tuple[str, str]]:
    """Every hook a key names must be a [hooks.NAME] table of the file: (top-level key, problem)."""
    places: list[tuple[str, Any]] = [("", settings)]
    places += [(f"unit[{i}].", s) for i, s in enumerate(settings.unit)]
    places += [(f"container[{i}].", s) for i, s in enumerate(settings.container)]
    defined = ", ".join(sorted(settings.hooks)) or "none"
    problems = []
    for prefix, values in places:
        for key in HOOK_KEYS:
            name = getattr(values, key)
            if name and name not in settings.hooks:
                problems.append(
                    (
                        prefix.partition("[")[0] or key,
                        f"key {prefix + key!r}: names hook {name!r}, which is not defined (defined: {defined}); "
                        f'add [hooks.{name}] with command = ["..."]',
                    )
                )
    return problems


class Settings(BaseSettings):
    """Every configuration key, its type and its default (config/autoupdated.toml documents them)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True, case_sensitive=False
    )

    # When
    schedule: Annotated[str, AfterValidator(_check_schedule)] = "daily"
    randomized_delay: Annotated[Seconds, Field(ge=0), _at_most(MAX_RANDOMIZED_DELAY, "7 days")] = 900.0
    run_on_start: bool = False
    persistent: bool = True
    # What a run does
    dry_run: bool = False
    rollback: bool = True
    restart_timeout: Annotated[Timeout, Field(gt=0)] = 300.0
    stop_timeout: Annotated[Timeout, Field(gt=0)] = 90.0
    check_concurrency: Concurrency = 16
    pull_concurrency: Concurrency = 4
    restart_concurrency: Concurrency = 4
    health_gate: bool = True
    settle_time: Annotated[Timeout, Field(ge=0)] = 3.0
    health_timeout: Annotated[Timeout, Field(gt=0)] = 60.0
    update_failed_units: bool = False
    registry_timeout: Annotated[Timeout, Field(gt=0)] = 30.0
    prune: bool = True
    include_containers: Globs = Field(default_factory=list)
    exclude_containers: Globs = Field(default_factory=list)
    include_units: Globs = Field(default_factory=list)
    exclude_units: Globs = Field(default_factory=list)
    # Where things are
    authfile: OptionalPath = None
    tls_verify: Annotated[bool | None, BeforeValidator(_empty_is_none)] = None
    podman_url: Annotated[str | None, BeforeValidator(_empty_is_none), AfterValidator(_podman_url)] = None
    bus: Literal["auto", "system", "session"] = "auto"
    state_dir: OptionalPath = None
    history: bool = True
    history_db: OptionalPath = None
    control_socket: SocketPath = None
    # Operator controls (docs/controls.md): defaults for every container; [[container]] and
    # [[unit]] sections override them, io.autoupdated.* labels override those
    mode: Literal["auto", "notify", "approve"] = "auto"
    restart_window: Windows = Field(default_factory=list)
    min_image_age: Age = 0.0
    pre_update: str | None = None
    post_update: str | None = None
    on_rollback: str | None = None
    track_tags: Track = ""
    tag_check_interval: Annotated[Seconds, Field(ge=60), _at_most(MAX_INTERVAL, "366 days")] = 86400.0
    image_age_from: Literal["first_seen", "created"] = "first_seen"
    hooks: dict[str, HookSpec] = Field(default_factory=dict)
    container: list[ControlSection] = Field(default_factory=list)
    unit: list[ControlSection] = Field(default_factory=list)
    # How much it says
    log_level: Literal["debug", "info", "notice", "warning", "error"] = "info"
    # Telling people (docs/notifications.md, docs/metrics.md)
    notify: list[NotifyTarget] = Field(default_factory=list)
    notify_timeout: Annotated[Timeout, Field(gt=0)] = 10.0
    notify_retries: Annotated[int, Field(ge=0, le=10)] = 2
    metrics_listen: Annotated[str | None, BeforeValidator(_empty_is_none), AfterValidator(check_listen)] = None
    metrics_textfile: OptionalPath = None

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: Any, init_settings: Any, env_settings: Any, dotenv_settings: Any, file_secret_settings: Any
    ) -> tuple[Any, ...]:
        # The file's values arrive as init arguments; the environment wins over them.
        return (env_settings, init_settings)

    @property
    def controls_config(self) -> ControlsConfig:
        return controls_config(self)

    @property
    def parsed_schedule(self) -> Schedule:
        return Schedule.parse(self.schedule)


KEYS: tuple[str, ...] = tuple(Settings.model_fields)
Source = Literal["default", "file", "env"]


@dataclass(frozen=True)
class LoadedConfig:
    """Validated settings plus where they came from, for `config show` and error messages."""

    settings: Settings
    path: Path
    file_found: bool
    sources: Mapping[str, Source]
    # Problems that do not stop the daemon but probably are not what the admin meant (a misspelt
    # AUTOUPDATED_* variable, a state_dir the unit cannot write); one line each, for the CLI and
    # the journal.
    warnings: tuple[str, ...] = ()

    def describe(self) -> list[tuple[str, object, Source]]:
        """Every key's value (secrets masked), for showing."""
        return [(key, shown(getattr(self.settings, key)), self.sources[key]) for key in KEYS]

    def where(self, key: str) -> str:
        """Where a key's value came from, as error and warning lines name it."""
        return _where(key, self.sources[key], self.path)


def _where(key: str, source: Source, path: Path) -> str:
    return f"environment variable {ENV_PREFIX}{key.upper()}" if source == "env" else str(path)


def schedule_trigger(settings: Settings, timezone: tzinfo) -> BaseTrigger:
    """The APScheduler trigger for the schedule and randomized delay of loaded settings.

    `load` has built this same trigger and computed its next fire time before accepting the
    settings, so for settings it returned this does not raise.
    """
    return settings.parsed_schedule.trigger(jitter=settings.randomized_delay, timezone=timezone)


# ---------------------------------------------------------------------------------------------
# Where things live


def rootless() -> bool:
    return os.geteuid() != 0


def default_config_path() -> Path:
    """`$AUTOUPDATED_CONFIG`, else /etc/autoupdated.toml, or ~/.config/autoupdated/ when rootless."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    if rootless():
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "autoupdated" / "autoupdated.toml"
    return SYSTEM_CONFIG


def state_dir(settings: Settings) -> Path:
    """The key, else $STATE_DIRECTORY (systemd's StateDirectory=), else the usual place."""
    if settings.state_dir:
        return Path(settings.state_dir)
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if rootless():
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "autoupdated"
    return Path("/var/lib/autoupdated")


def runtime_dir() -> Path:
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0])
    if rootless():
        base = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
        return Path(base) / "autoupdated"
    return Path("/run/autoupdated")


def history_path(settings: Settings) -> Path | None:
    """The history database (autoupdated/history.py): `history_db`, else STATE_DIR/history.db;
    None when `history = false`."""
    if not settings.history:
        return None
    if settings.history_db:
        return Path(settings.history_db)
    return state_dir(settings) / "history.db"


def control_socket(settings: Settings) -> Path:
    return Path(settings.control_socket) if settings.control_socket else runtime_dir() / "control.sock"


# ---------------------------------------------------------------------------------------------
# Loading


def _read_file(path: Path) -> tuple[dict[str, Any], bool]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, False
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a TOML file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); TOML files must be UTF-8") from None
    try:
        return tomllib.loads(text), True
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def _unknown_key(where: str, key: str) -> str:
    hint = difflib.get_close_matches(key, KEYS, n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"{where}: unknown key {key!r}{suggestion} (known keys: {', '.join(KEYS)})"


SECRET_KEYS = frozenset(("notify",))  # Apprise URLs carry tokens: an error never echoes their values


def _describe_error(error: Mapping[str, Any], reveal: bool = True) -> str:
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if error.get("type") == "literal_error":
        message = message.replace("Input should be", "must be")
    else:
        message = message.replace("Input should be", "must be")
    value = error.get("input")
    if reveal and error.get("type") not in ("value_error", "missing") and not isinstance(value, dict | list):
        message += f" (got {value!r})"
    return message


def _key_path(loc: tuple[Any, ...]) -> str:
    key = str(loc[0]) if loc else "?"
    for part in loc[1:]:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key


_ADAPTERS: dict[str, TypeAdapter[Any]] = {}
_LIST_KEYS = frozenset(("include_containers", "exclude_containers", "include_units", "exclude_units"))


def _adapter(key: str) -> TypeAdapter[Any]:
    if key not in _ADAPTERS:
        field = Settings.model_fields[key]
        annotation: Any = field.annotation
        if field.metadata:
            annotation = Annotated[(annotation, *field.metadata)]
        _ADAPTERS[key] = TypeAdapter(annotation)
    return _ADAPTERS[key]


def _check_file_values(path: Path, data: Mapping[str, Any]) -> None:
    """Strict per-key checks of the file's values, so the error names the file and the key."""
    problems = []
    for key, value in data.items():
        if key not in Settings.model_fields:
            problems.append(_unknown_key(str(path), key))
            continue
        if key in _LIST_KEYS and not isinstance(value, list):
            # The environment may say "a,b"; the file has TOML arrays for that.
            problems.append(f'{path}: key {key!r}: must be a list of strings, e.g. ["web*"] (got {value!r})')
            continue
        try:
            _adapter(key).validate_python(value, strict=True)
        except ValidationError as err:
            for error in err.errors():
                loc = (key, *error.get("loc", ()))
                problems.append(f"{path}: key {_key_path(loc)!r}: {_describe_error(error, key not in SECRET_KEYS)}")
    if problems:
        raise ConfigError("\n".join(problems))


def _settings_error(err: SettingsError) -> ConfigError:
    """pydantic-settings names the field in its text; the admin needs the variable."""
    field = re.search(r'field "(\w+)"', str(err))
    if field:
        return ConfigError(f"environment variable {ENV_PREFIX}{field.group(1).upper()}: {err}")
    return ConfigError(f"environment ({ENV_PREFIX}* variables): {err}")


def _env_values() -> dict[str, Any]:
    try:
        return dict(EnvSettingsSource(Settings, env_prefix=ENV_PREFIX, case_sensitive=False)())
    except SettingsError as err:
        raise _settings_error(err) from None


def unknown_env_warnings(environ: Mapping[str, str]) -> list[str]:
    """A misspelt AUTOUPDATED_* variable is otherwise ignored without a word (the setting stays
    at its default): name it, with the variable it probably meant."""
    known_keys = [key.upper() for key in KEYS]
    others = sorted(name.removeprefix(ENV_PREFIX) for name in OTHER_ENV)
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        suffix = upper.removeprefix(ENV_PREFIX)
        if suffix in known_keys or upper in OTHER_ENV:
            continue
        hint = difflib.get_close_matches(suffix, [*known_keys, *others], n=1)
        suggestion = f"; did you mean {ENV_PREFIX}{hint[0]}?" if hint else ""
        warnings.append(f"environment variable {name}: not a setting, ignored{suggestion}")
    return warnings


def _check_trigger(settings: Settings, sources: Mapping[str, Source], path: Path) -> None:
    """Build the trigger the daemon will build and find its next fire time, so nothing accepted
    here fails at start or reload (the per-key bounds should already ensure it)."""
    try:
        trigger = schedule_trigger(settings, UTC)
        trigger.get_next_fire_time(None, datetime.now(UTC))
    except Exception as err:  # APScheduler and datetime raise ValueError, OverflowError...
        places = {_where(key, sources[key], path) for key in ("schedule", "randomized_delay")}
        raise ConfigError(
            f"{' and '.join(sorted(places))}: keys 'schedule' and 'randomized_delay': "
            f"cannot be scheduled together ({type(err).__name__}: {err}); use a shorter interval or delay"
        ) from None


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    normal = os.path.normpath(path)
    return any(normal == root or normal.startswith(root + "/") for root in roots)


def unit_path_warnings(settings: Settings, sources: Mapping[str, Source], path: Path) -> list[str]:
    """Paths the shipped unit (ProtectSystem=strict) would not let a root daemon write."""
    warnings = []
    for key in ("state_dir", "history_db", "control_socket", "metrics_textfile"):
        value = getattr(settings, key)
        if value is None or (key == "history_db" and not settings.history) or _inside(value, UNIT_WRITABLE_PATHS):
            continue
        where = f"{_where(key, sources[key], path)}: key {key!r}"
        if _inside(value, UNIT_PRIVATE_PATHS):
            warnings.append(
                f"{where}: {value} is in the unit's private /tmp (PrivateTmp=yes): other processes do not "
                "see it and it is emptied at each stop; use a path under /var/lib/autoupdated or /run/autoupdated"
            )
            continue
        target = value if key == "state_dir" else os.path.dirname(os.path.normpath(value))
        warnings.append(
            f"{where}: {value} is outside what the shipped unit lets the daemon write "
            f"({', '.join(UNIT_WRITABLE_PATHS)}); add `ReadWritePaths={target}` under [Service] "
            "with `systemctl edit autoupdated` (see docs/daemon.md)"
        )
    return warnings


def load(path: str | os.PathLike[str] | None = None, *, required: bool = False) -> LoadedConfig:
    """Read and validate the configuration; raises ConfigError (never anything else) when it is wrong.

    A missing file means defaults, unless `required` (an explicit `config check PATH`).
    """
    config_path = Path(path) if path is not None else default_config_path()
    try:
        data, found = _read_file(config_path)
        if required and not found:
            raise ConfigError(f"{config_path}: no such file")
        _check_file_values(config_path, data)
    except RecursionError:  # the file's own nesting: env lists are bounded before json.loads
        raise ConfigError(f"{config_path}: nested too deeply") from None
    env = _env_values()
    try:
        settings = Settings(**data)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            loc = tuple(error.get("loc", ()))
            key = str(loc[0]) if loc else "?"
            where = f"environment variable {ENV_PREFIX}{key.upper()}" if key in env else str(config_path)
            if error.get("type") == "extra_forbidden":
                problems.append(_unknown_key(where, key))
            else:
                problems.append(f"{where}: key {_key_path(loc)!r}: {_describe_error(error, key not in SECRET_KEYS)}")
        raise ConfigError("\n".join(problems)) from None
    except SettingsError as err:
        raise _settings_error(err) from None
    except RecursionError:
        raise ConfigError(f"environment ({ENV_PREFIX}* variables): a value is nested too deeply") from None
    sources: dict[str, Source] = {}
    for key in KEYS:
        sources[key] = "env" if key in env else "file" if key in data else "default"
    _check_trigger(settings, sources, config_path)
    hook_problems = hook_name_errors(settings)
    if hook_problems:
        raise ConfigError("\n".join(f"{_where(key, sources[key], config_path)}: {text}" for key, text in hook_problems))
    warnings = unknown_env_warnings(os.environ)
    if not rootless():
        warnings += unit_path_warnings(settings, sources, config_path)
    return LoadedConfig(
        settings=settings, path=config_path, file_found=found, sources=sources, warnings=tuple(warnings)
    )


# ---------------------------------------------------------------------------------------------
# Showing


def shown(value: object) -> object:
    """A value as `config show` may print it: [[notify]] entries with their URLs masked."""
    if isinstance(value, list | tuple) and value and all(isinstance(item, NotifyTarget) for item in value):
        return [item.public() for item in value]
    return value


def toml_value(value: object) -> str:
    """A value written the way it would appear in the TOML file."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + "}"
    if value is None:
        return "<unset>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(str(value))


def render(loaded: LoadedConfig, fmt: str = "toml") -> str:
    """`config show`: every key, its effective value and where it came from."""
    if fmt == "json":
        return json.dumps(
            {
                "path": str(loaded.path),
                "file_found": loaded.file_found,
                "settings": {key: {"value": value, "source": source} for key, value, source in loaded.describe()},
            },
            indent=2,
        )
    state = "" if loaded.file_found else " (not found: defaults apply)"
    lines = [f"# effective configuration; file: {loaded.path}{state}", "# key = value  # source"]
    rows = [(f"{key} = {toml_value(value)}", source) for key, value, source in loaded.describe()]
    width = max(len(text) for text, _ in rows)
    for text, source in rows:
        lines.append(f"{text:<{width}}  # {source}")
    return "\n".join(lines)

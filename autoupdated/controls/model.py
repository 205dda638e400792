"""The controls' plain data: what the config file and the labels can say, and what one
container ends up with after both (controls/resolve.py)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from autoupdated.controls.windows import Window

LABEL_PREFIX = "io.autoupdated."


class Mode(enum.StrEnum):
    AUTO = "auto"  # check, pull, restart (podman's behaviour)
    NOTIFY = "notify"  # check and report only: never pull, never restart
    APPROVE = "approve"  # check and pull, then wait for `autoupdated approve`


class ControlError(ValueError):
    """A container's controls cannot be used (a bad label, an unknown hook): only that container fails."""


@dataclass(frozen=True, slots=True)
class Hook:
    name: str
    command: tuple[str, ...]
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Layer:
    """One set of control values: the top level of the file, one section, or a container's labels.
    None means "not said here"."""

    mode: Mode | None = None
    restart_window: tuple[Window, ...] | None = None
    min_image_age: float | None = None
    pre_update: str | None = None  # hook names ([hooks.NAME] in the config)
    post_update: str | None = None
    on_rollback: str | None = None
    track_tags: str | None = None  # "semver" or a regular expression; "" turns it off

    def over(self, base: Layer) -> Layer:
        """This layer's values where it has them, `base`'s elsewhere."""
        return Layer(
            mode=self.mode if self.mode is not None else base.mode,
            restart_window=self.restart_window if self.restart_window is not None else base.restart_window,
            min_image_age=self.min_image_age if self.min_image_age is not None else base.min_image_age,
            pre_update=self.pre_update if self.pre_update is not None else base.pre_update,
            post_update=self.post_update if self.post_update is not None else base.post_update,
            on_rollback=self.on_rollback if self.on_rollback is not None else base.on_rollback,
            track_tags=self.track_tags if self.track_tags is not None else base.track_tags,
        )


@dataclass(frozen=True, slots=True)
class Section:
    """`[[container]]` (matched against the container's name) or `[[unit]]` (the unit's name)."""

    kind: str  # "container" | "unit"
    match: str  # a name or an fnmatch glob
    layer: Layer


@dataclass(frozen=True, slots=True)
class ControlsConfig:
    defaults: Layer = Layer()
    sections: tuple[Section, ...] = ()
    hooks: dict[str, Hook] = field(default_factory=dict)
    tag_check_interval: float = 86400.0  # list a repository's tags at most this often
    image_age_from: str = "first_seen"  # min_image_age counts from: "first_seen" | "created"


@dataclass(frozen=True, slots=True)
class Controls:
    """What applies to one container."""

    mode: Mode = Mode.AUTO
    restart_window: tuple[Window, ...] = ()
    min_image_age: float = 0.0
    pre_update: Hook | None = None
    post_update: Hook | None = None
    on_rollback: Hook | None = None
    track_tags: str = ""


@dataclass(frozen=True, slots=True)
class HookResult:
    exit_code: int | None  # None: it did not finish (timeout, could not start)
    output: str
    error: str = ""  # why it did not finish

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        status = f"exit code {self.exit_code}" if self.exit_code is not None else self.error
        tail = self.output.strip()[-2000:]
        return f"{status}; output: {tail!r}" if tail else f"{status}; no output"


@dataclass(frozen=True, slots=True)
class HookRun:
    """One hook run, as the history keeps it: which hook, for what, how it ended, what it printed."""

    phase: str  # pre_update, post_update, on_rollback
    hook: str
    container: str
    unit: str
    image: str
    new_digest: str
    exit_code: int | None
    output: str
    error: str = ""
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Waiting:
    """An update found and held (status, `autoupdated approve`, the daemon's wake-up job)."""

    container: str
    unit: str
    image: str
    digest: str
    waits_for: str  # cooldown | approval | window | notify
    reason: str
    eligible_at: str | None = None  # ISO time the wait ends by itself
    since: str = ""

    def as_dict(self) -> dict[str, str | None]:
        return {
            "container": self.container,
            "unit": self.unit,
            "image": self.image,
            "digest": self.digest,
            "waits_for": self.waits_for,
            "reason": self.reason,
            "eligible_at": self.eligible_at,
            "since": self.since,
        }

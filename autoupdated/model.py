"""Plain data passed between the engine and its adapters.

Nothing here does IO.  Adapters (podman, registry, systemd, journal) turn the
outside world into these types, and the engine only ever sees these types.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

AUTOUPDATE_LABEL = "io.containers.autoupdate"
AUTHFILE_LABEL = "io.containers.autoupdate.authfile"
UNIT_LABEL = "PODMAN_SYSTEMD_UNIT"


class Policy(enum.StrEnum):
    DISABLED = "disabled"
    REGISTRY = "registry"
    LOCAL = "local"


class Status(enum.StrEnum):
    """The UPDATED column, with podman's exact words."""

    FAILED = "failed"
    UPDATED = "true"
    NOT_UPDATED = "false"
    PENDING = "pending"
    ROLLED_BACK = "rolled back"


@dataclass(frozen=True, slots=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


# Where the platform to compare an index against comes from when it is only needed then: the
# local image's own os/architecture/variant, looked up (podman inspect) on first use.
PlatformSource = Callable[[], Awaitable[Platform]]


@dataclass(frozen=True, slots=True)
class Credentials:
    """Registry credentials.  Never printed: repr and str hide the secret."""

    username: str = field(default="")
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What podman knows of one local image."""

    id: str
    digest: str
    repo_digests: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    platform: Platform = Platform()
    healthcheck: bool = False

    @property
    def all_digests(self) -> frozenset[str]:
        """Every manifest digest podman recorded for this image; any match means "same image"."""
        digests = {self.digest} if self.digest else set()
        for repo_digest in self.repo_digests:
            _, _, digest = repo_digest.rpartition("@")
            if digest:
                digests.add(digest)
        return frozenset(digests)


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """One running container as the engine needs it."""

    id: str
    name: str
    image_id: str
    raw_image_name: str
    labels: dict[str, str]
    pod_id: str = ""
    state: str = "running"


@dataclass(frozen=True, slots=True)
class ContainerState:
    """One container as podman shows it now (the health gate's and recovery's view)."""

    id: str
    image_id: str
    status: str
    running: bool
    exit_code: int
    started_at: str
    health: str
    has_healthcheck: bool


@dataclass(frozen=True, slots=True)
class UnitState:
    """One systemd unit as systemd shows it now."""

    unit: str
    load_state: str
    active_state: str
    sub_state: str
    job: int  # 0: no job queued or running for the unit
    result: str = ""
    n_restarts: int = 0

    @property
    def crash_looping(self) -> bool:
        return self.active_state == "activating" and self.sub_state == "auto-restart"

    @property
    def broken(self) -> bool:
        """Failed, or waiting to be restarted after a crash."""
        return self.active_state == "failed" or self.crash_looping

    @property
    def busy(self) -> bool:
        """A job runs for it, or it is half-way (a crash loop counts as settled: it may loop for good)."""
        transient = self.active_state in ("activating", "deactivating", "reloading")
        return self.job != 0 or (transient and not self.crash_looping)

    def __str__(self) -> str:
        text = f"{self.active_state} ({self.sub_state})"
        if self.result and self.result != "success":
            text += f", result {self.result}"
        return text


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What the digest comparer found for one reference."""

    update_available: bool
    #: the digest a pull would give for the platform when known (index instance), else the tag's
    remote_digest: str


@dataclass
class Entry:
    """One container's outcome: a report row, a journal entry, a history row and a status record."""

    unit: str
    container_id: str
    container_name: str
    image: str
    policy: str
    updated: Status
    old_digest: str = ""
    new_digest: str = ""
    old_image_id: str = ""
    new_image_id: str = ""
    error: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """Plain JSON data (the status file, the control socket, `trigger --wait`)."""
        return {
            "unit": self.unit,
            "container_id": self.container_id,
            "container_name": self.container_name,
            "image": self.image,
            "policy": self.policy,
            "updated": str(self.updated),
            "old_digest": self.old_digest,
            "new_digest": self.new_digest,
            "old_image_id": self.old_image_id,
            "new_image_id": self.new_image_id,
            "error": self.error,
        }


@dataclass
class RunResult:
    """One run's outcome: entries, errors and warnings (podman-style texts), what it did."""

    entries: list[Entry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    restarted_units: list[str] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)
    # Seconds each step of the run took, in order (list, images, check, update), and what each
    # step went through (containers, images, references): how a run's cost grows with its size.
    phases: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def phase_text(self) -> str:
        """`list 0.012 s, images 0.004 s, check 0.301 s, update 0.000 s; 60 containers, ...`."""
        steps = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in self.phases.items())
        sizes = ", ".join(f"{count} {name}" for name, count in self.sizes.items())
        return f"{steps}; {sizes}" if sizes else steps

    def counts(self) -> dict[str, int]:
        counts = {str(status): 0 for status in Status}
        for entry in self.entries:
            counts[str(entry.updated)] += 1
        return counts

    def summary(self) -> str:
        c = self.counts()
        parts = [
            f"{c['true']} updated",
            f"{c['false']} unchanged",
            f"{c['pending']} pending",
            f"{c['rolled back']} rolled back",
            f"{c['failed']} failed",
        ]
        text = f"{len(self.entries)} containers: " + ", ".join(parts)
        if self.errors:
            text += f"; {len(self.errors)} errors"
        return text


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """A unit restart as the history recorded it: the intent's row ID and each container's."""

    intent: int
    unit: str
    rows: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What pruning dangling images removed."""

    deleted: tuple[str, ...] = ()
    reclaimed: int = 0  # bytes


@dataclass(frozen=True, slots=True)
class Row:
    """One container of one unit restart, as `autoupdated history` shows it."""

    id: int
    intent: int
    time: str
    finished: str | None
    run_id: str
    action: str
    unit: str
    container_id: str
    container_name: str
    reference: str
    policy: str
    old_digest: str
    new_digest: str
    old_image_id: str
    new_image_id: str
    result: str
    error: str | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def entry(self) -> Entry:
        """The recorded container as the engine's record of an outcome."""
        try:
            status = Status(self.result)
        except ValueError:
            status = Status.FAILED  # 'in progress': not finished
        return Entry(
            unit=self.unit,
            container_id=self.container_id,
            container_name=self.container_name,
            image=self.reference,
            policy=self.policy,
            updated=status,
            old_digest=self.old_digest,
            new_digest=self.new_digest,
            old_image_id=self.old_image_id,
            new_image_id=self.new_image_id,
            error=self.error,
        )


@dataclass(frozen=True, slots=True)
class Intent:
    """An unfinished unit restart (the daemon died before its outcome) and its containers."""

    id: int
    run_id: str
    action: str
    unit: str
    started: str
    rows: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class KnownUnit:
    """A container the engine saw running under a unit (the `units` table)."""

    unit: str
    container_name: str
    container_id: str
    reference: str
    policy: str
    authfile: str | None
    image_id: str
    last_seen: str

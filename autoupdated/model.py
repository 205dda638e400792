"""Plain data passed between the engine and its adapters.

Nothing here does IO.  Adapters (podman, registry, systemd, journal) turn the
outside world into these types, and the engine only ever sees these types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

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

"""Docker image references, parsed the way podman's auto-update needs them.

Pure functions only: no IO.  The grammar follows distribution/reference
(domain, path components, tag, digest); the error texts follow podman's
`validateAutoUpdateImageReference` so scripts that match on them keep working.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

# Transports known to containers/image: a raw name starting with "<one of these>:" is not a
# docker reference, and podman refuses to auto-update it.
_TRANSPORTS = frozenset(
    {
        "containers-storage",
        "dir",
        "docker",
        "docker-archive",
        "docker-daemon",
        "oci",
        "oci-archive",
        "ostree",
        "sif",
        "tarball",
    }
)

# distribution/reference's regexp.go, in ASCII classes (Go's \w is [0-9A-Za-z_]; Python's is
# Unicode) and matched with fullmatch (Python's $ also matches before a final newline).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?"
_TAG = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_DOMAIN_RE = re.compile(_DOMAIN, re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)

# go-digest: the algorithms podman can verify, with their hex lengths (lowercase hex only).
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX_RE = re.compile(r"[0-9a-f]+", re.ASCII)

MAX_NAME_LENGTH = 255


class ReferenceError(ValueError):
    """A raw image name that auto-update cannot work with; the text is meant for the user."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A fully-qualified docker reference: `domain/path[:tag][@digest]`."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The repository as the registry API names it (`library/` added on Docker Hub)."""
        if self.domain == DOCKER_HUB and "/" not in self.path:
            return f"library/{self.path}"
        return self.path

    @property
    def api_host(self) -> str:
        """The host[:port] to send /v2/ requests to."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def _looks_like_domain(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or component != component.lower()


def parse(raw: str) -> Reference:
    """Parse any docker reference, short or fully qualified, without transport prefix checks.

    Short names (no domain) get `docker.io`, as docker does; callers that need a
    fully-qualified name use `parse_for_autoupdate`.
    """
    text = raw
    if not text or len(text) > 4096:
        raise ReferenceError(f"invalid reference format: {raw!r}")
    digest: str | None = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise ReferenceError(f"invalid reference format: {raw!r} has a malformed digest")
        _check_digest(digest, raw)
    tag: str | None = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise ReferenceError(f"invalid reference format: {raw!r} has a malformed tag")
    first, sep, rest = text.partition("/")
    if sep and _looks_like_domain(first):
        domain, path = first, rest
        if not _DOMAIN_RE.fullmatch(domain):
            raise ReferenceError(f"invalid reference format: {raw!r} has a malformed registry host")
    else:
        domain, path = DOCKER_HUB, text
    if not _PATH_RE.fullmatch(path):
        if path.lower() != path:
            raise ReferenceError(f"invalid reference format: repository name must be lowercase: {raw!r}")
        raise ReferenceError(f"invalid reference format: {raw!r}")
    if len(domain) + 1 + len(path) > MAX_NAME_LENGTH:
        raise ReferenceError(f"invalid reference format: repository name must not be more than 255 characters: {raw!r}")
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _check_digest(digest: str, raw: str) -> None:
    """go-digest's Validate, with its error texts: a known algorithm needs its exact length."""
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        raise ReferenceError(f"unsupported digest algorithm: {raw!r} (use sha256, sha384 or sha512)")
    if len(encoded) != length:
        raise ReferenceError(f"invalid checksum digest length: {raw!r} ({algorithm} has {length} hex digits)")
    if not _LOWER_HEX_RE.fullmatch(encoded):
        raise ReferenceError(f"invalid checksum digest format: {raw!r} (hex digits must be lowercase)")


def is_short_name(raw: str) -> bool:
    """True when the name has no registry host, as containers/image's shortnames.IsShortName."""
    text = raw.split("@", 1)[0]
    first, sep, _ = text.partition("/")
    return not (sep and _looks_like_domain(first))


def parse_for_autoupdate(raw: str) -> Reference:
    """Validate a container's raw image name for the `registry` policy.

    Raises ReferenceError with podman's texts: another transport, a short name,
    a malformed reference, or no tag.  A digest-pinned reference parses fine;
    the caller decides to skip it (podman issue #21190).
    """
    transport, sep, rest = raw.partition(":")
    if sep and transport in _TRANSPORTS:
        if transport != "docker":
            raise ReferenceError(
                f'auto updates require the docker image transport but image is of transport "{transport}"'
            )
        if not rest.startswith("//"):
            raise ReferenceError(f"invalid reference format: {raw!r}: the docker transport needs docker://")
        raw = rest[2:]
    if is_short_name(raw):
        raise ReferenceError(
            f'short name: auto updates require fully-qualified image reference: "{raw}"; '
            "recreate the container from a name with its registry, e.g. quay.io/org/image:tag"
        )
    try:
        ref = parse(raw)
    except ReferenceError as err:
        raise ReferenceError(f"enforcing fully-qualified docker transport reference for auto updates: {err}") from None
    if ref.tag is None and ref.digest is None:
        raise ReferenceError(
            f'auto updates require fully-qualified image references (no tag): "{raw}"; '
            f'recreate the container from "{raw}:latest" or another tag'
        )
    return ref

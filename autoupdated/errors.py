"""The project's own errors: each adapter maps its system's failures to these, in one place.

    RunError                 the run as a whole cannot happen (podman or D-Bus unreachable)
    RegistryError            a registry-side failure (adapters/registry maps httpx and HTTP here)
      AuthenticationRequired, AccessDenied, ManifestUnknown, TooManyRequests,
      RegistryServerError, RegistryTLSError, RegistryConnectionError > RegistryTimeout,
      RegistryProtocolError > RegistryLies, RegistryConfigError > RegistryBlocked

Every text is meant for the user: it names the container, image, unit or registry it concerns,
says what to do, and never contains a password, a token or auth-file content.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AuthenticationRequired",
    "ManifestUnknown",
    "RegistryBlocked",
    "RegistryConfigError",
    "RegistryConnectionError",
    "RegistryError",
    "RegistryLies",
    "RegistryProtocolError",
    "RegistryServerError",
    "RegistryTLSError",
    "RegistryTimeout",
    "TooManyRequests",
]


class RegistryError(Exception):
    """A registry-side failure; `str(err)` is a complete message for users."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class AuthenticationRequired(RegistryError):
    """401: no credentials, or the registry refused them."""


class AccessDenied(RegistryError):
    """403: authenticated, but not allowed to pull."""


class ManifestUnknown(RegistryError):
    """404: no such tag, digest or repository."""


class TooManyRequests(RegistryError):
    """429: rate limited; `retry_after` is in seconds when the registry said."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class RegistryServerError(RegistryError):
    """5xx or another unexpected HTTP status."""


class RegistryTLSError(RegistryError):
    """Certificate verification or TLS handshake failure."""


class RegistryConnectionError(RegistryError):
    """Connection refused, DNS failure, reset connection."""


class RegistryTimeout(RegistryConnectionError):
    """No answer within the configured timeout."""


class RegistryProtocolError(RegistryError):
    """The registry answered something unusable (malformed manifest, bad headers)."""


class RegistryLies(RegistryProtocolError):
    """The content does not match the digest the registry announced for it."""


class RegistryConfigError(RegistryError):
    """Local configuration (auth file, registries.conf, certs.d) that cannot be used."""


class RegistryBlocked(RegistryConfigError):
    """registries.conf blocks this registry."""

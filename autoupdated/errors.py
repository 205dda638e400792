"""The project's own errors: each adapter maps its system's failures to these, in one place.

    RunError                 the run as a whole cannot happen (podman or D-Bus unreachable)
    PodmanError              a podman API call failed (adapters/podman maps podman-py here)
      PodmanUnavailable        the service cannot be reached at all
      NoSuchObject             no container or image of that name or ID
    BusUnavailable           the D-Bus cannot be reached (adapters/systemd maps jeepney here)
    BusCallError             systemd refused a call, or the connection was lost during it
    RestartError             a restart job did not end in `done`
    HealthError              the unit restarted, but its new container is not up
    HistoryError             the history database cannot be used (adapters/history maps sqlite3)
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


class RunError(Exception):
    """The run as a whole cannot happen (podman or D-Bus unreachable); the text says what to do."""


class PodmanError(Exception):
    """A podman API call failed; the text names what was asked and what podman said."""


class PodmanUnavailable(PodmanError):
    """The podman service cannot be reached at all: the run cannot happen."""


class NoSuchObject(PodmanError):
    """Podman has no container or image of that name or ID (HTTP 404)."""


class BusUnavailable(Exception):
    """The bus cannot be reached: no unit can be restarted or read in this run."""


class BusCallError(Exception):
    """systemd refused a D-Bus call, or the connection was lost during it; the text is the detail."""


class RestartError(Exception):
    """A restart job did not end in `done`, or could not be started or awaited."""

    def __init__(self, unit: str, message: str, result: str = "") -> None:
        super().__init__(message)
        self.unit = unit
        self.result = result


class HealthError(Exception):
    """The unit restarted, but its new container is not up: the update is rolled back."""


class HistoryError(Exception):
    """The history database cannot be opened or written; the text names the file and what to do."""


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

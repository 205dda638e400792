"""Secrets we know of, and their removal from any text on its way to a user (pure, no IO).

Every adapter that is handed a credential remembers it here; every error text leaves an
adapter through `scrub`.  A secret is also recognised in the encodings it travels in: a
password as part of `user:password` in base64 (HTTP Basic) and base64url (podman's
X-Registry-Auth), a token as itself.  Texts are scrubbed *before* they are cut to length, so
a secret straddling the cut cannot survive in part.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from autoupdated.model import Credentials

REDACTED = "<redacted>"
MIN_SECRET = 3  # shorter values would redact ordinary words


class Secrets:
    """The set of secrets one run (or one adapter) has seen."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        if value and len(value) >= MIN_SECRET:
            self._values.add(value)

    def add_credentials(self, credentials: Credentials | None) -> None:
        if credentials is None:
            return
        self.add(credentials.password)
        self.add(credentials.identity_token)
        if credentials.password:
            raw = f"{credentials.username}:{credentials.password}".encode()
            self.add(base64.b64encode(raw).decode())
            self.add(base64.urlsafe_b64encode(raw).decode())
            self.add(base64.b64encode(raw).decode().rstrip("="))

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def __len__(self) -> int:
        return len(self._values)

    def scrub(self, text: str) -> str:
        """`text` with every known secret replaced by <redacted>, longest first."""
        if not self._values:
            return text
        pattern = "|".join(re.escape(v) for v in sorted(self._values, key=len, reverse=True))
        return re.sub(pattern, REDACTED, text)


def clip(text: str, limit: int) -> str:
    """Cut an already scrubbed text to `limit` characters (with an ellipsis)."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"

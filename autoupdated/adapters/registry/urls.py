"""URLs a registry hands us (token realms, redirect targets): checked before use (pure, no IO).

A hostile or broken registry can send anything in `WWW-Authenticate` or `Location`; httpx and
the socket layer would fail on some of it with errors of their own (InvalidURL, ValueError,
OverflowError inside an ExceptionGroup).  `checked_url` turns every such case into one
`BadURL` with a reason, so the caller can name the registry and what it sent.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

import httpx

__all__ = ["BadURL", "Origin", "checked_url", "origin"]

Origin = tuple[str, str, int]  # scheme, lower-cased host, port (the default filled in)
_DEFAULT_PORTS = {"https": 443, "http": 80}


class BadURL(ValueError):
    """The URL cannot be used; the message says why without quoting it."""


def checked_url(text: str) -> SplitResult:
    """`text` split, when it is an absolute http(s) URL that httpx and sockets can use."""
    if not text.isascii() or not text.isprintable() or " " in text:
        raise BadURL("it contains spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises for ports outside 0..65535
    except ValueError:
        raise BadURL("it is malformed (a bad IPv6 literal or port)") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise BadURL("it is not an http or https URL")
    if not parts.hostname:
        raise BadURL("it names no host")
    if port == 0:
        raise BadURL("it names port 0")
    try:
        httpx.URL(text)
    except httpx.InvalidURL:
        raise BadURL("httpx cannot use it") from None
    return parts


def origin(url: str) -> Origin:
    """(scheme, host, port) of an absolute URL already sent or received; same origin, same tuple."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, 0)

"""Parse `WWW-Authenticate` challenges (RFC 7235, RFC 9110 section 11).

Pure: no IO.  A header may carry several challenges, each a scheme followed by either a
token68 or a comma-separated list of `name=value` parameters whose values are tokens or
quoted strings (with backslash escapes, and commas allowed inside the quotes).  Scheme and
parameter names are case-insensitive: they come back lower-cased.

Anything malformed raises `WWWAuthenticateError` (a `ValueError`), never another exception.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Challenge", "WWWAuthenticateError", "parse", "parse_all"]

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"
# Unquoted parameter values: RFC 7235 allows tokens only, but real servers send things like
# realm=https://auth.example/token unquoted; accept any visible character but the delimiters.
_BARE_STOP = frozenset(' \t,"')


class WWWAuthenticateError(ValueError):
    """The header cannot be parsed.  The message says where, without echoing the header."""


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lower-cased, e.g. "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)  # names lower-cased
    token68: str | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name.lower(), default)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def skip_ws_and_commas(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t,":
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR:
            self.pos += 1
        return self.text[start : self.pos]

    def fail(self, what: str) -> WWWAuthenticateError:
        return WWWAuthenticateError(f"malformed WWW-Authenticate header: {what} at offset {self.pos}")

    def quoted(self) -> str:
        assert self.peek() == '"'
        self.pos += 1
        out: list[str] = []
        while True:
            if self.at_end():
                raise self.fail("unterminated quoted string")
            char = self.text[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                if self.at_end():
                    raise self.fail("unterminated escape in quoted string")
                out.append(self.text[self.pos])
                self.pos += 1
            else:
                out.append(char)

    def bare_value(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _BARE_STOP:
            self.pos += 1
        return self.text[start : self.pos]


def _is_param_start(scan: _Scanner) -> bool:
    """True when the scanner is at `name BWS = BWS value` (not a token68, not a new scheme)."""
    save = scan.pos
    try:
        if not scan.token():
            return False
        scan.skip_ws()
        if scan.peek() != "=":
            return False
        scan.pos += 1
        scan.skip_ws()
        # token68 padding looks like "abc==" or "abc=" followed by end or comma
        nxt = scan.peek()
        return nxt not in ("", ",", "=")
    finally:
        scan.pos = save


def _token68(scan: _Scanner) -> str | None:
    save = scan.pos
    start = scan.pos
    while not scan.at_end() and (scan.peek().isalnum() or scan.peek() in "-._~+/"):
        scan.pos += 1
    if scan.pos == start:
        return None
    while scan.peek() == "=":
        scan.pos += 1
    end = scan.pos
    scan.skip_ws()
    if scan.at_end() or scan.peek() == ",":
        return scan.text[start:end]
    scan.pos = save
    return None


def parse(header: str) -> list[Challenge]:
    """Parse one header value into its challenges, in order."""
    if not isinstance(header, str):
        raise WWWAuthenticateError("malformed WWW-Authenticate header: not text")
    scan = _Scanner(header)
    challenges: list[Challenge] = []
    scan.skip_ws_and_commas()
    while not scan.at_end():
        scheme = scan.token()
        if not scheme:
            raise scan.fail("expected an auth scheme")
        params: dict[str, str] = {}
        token68: str | None = None
        if scan.at_end() or scan.peek() == ",":
            challenges.append(Challenge(scheme.lower(), params))
            scan.skip_ws_and_commas()
            continue
        if scan.peek() not in _WS:
            raise scan.fail("expected a space after the auth scheme")
        scan.skip_ws()
        if not _is_param_start(scan):
            token68 = _token68(scan)
            if token68 is None and not (scan.at_end() or scan.peek() == ","):
                raise scan.fail("expected auth parameters or a token68")
        else:
            while True:
                name = scan.token().lower()
                scan.skip_ws()
                scan.pos += 1  # the "=" checked by _is_param_start
                scan.skip_ws()
                value = scan.quoted() if scan.peek() == '"' else scan.bare_value()
                if name in params:
                    raise scan.fail(f"duplicate parameter {name!r}")
                params[name] = value
                scan.skip_ws()
                if scan.at_end():
                    break
                if scan.peek() != ",":
                    raise scan.fail("expected a comma between parameters")
                scan.skip_ws_and_commas()
                if scan.at_end() or not _is_param_start(scan):
                    break
        challenges.append(Challenge(scheme.lower(), params, token68))
        scan.skip_ws_and_commas()
    return challenges


def parse_all(headers: Iterable[str]) -> list[Challenge]:
    """Parse every `WWW-Authenticate` header of a response (they may repeat)."""
    result: list[Challenge] = []
    for header in headers:
        result.extend(parse(header))
    return result

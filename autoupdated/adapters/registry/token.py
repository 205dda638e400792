"""The bearer token flow (Docker registry token auth, OAuth2 refresh): pure steps and a cache.

`token_request` builds the request from the registry's challenge, the scope and the
credentials; `parse_token_answer` turns the token service's answer (status, headers, body)
into a `Token` or a RegistryError.  Neither does IO: auth.py sends what the first says and
hands the answer to the second.  `TokenCache` keeps tokens per (realm, service, scope,
credentials) until `expires_in` minus a margin, and lets concurrent callers share one request.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from autoupdated.adapters.registry import retry, wwwauth
from autoupdated.adapters.registry.status import error_detail, login_hint
from autoupdated.adapters.registry.urls import BadURL, checked_url
from autoupdated.errors import (
    AccessDenied,
    AuthenticationRequired,
    RegistryError,
    RegistryProtocolError,
    RegistryServerError,
    RegistryTLSError,
    TooManyRequests,
)
from autoupdated.model import Credentials
from autoupdated.secrets import Secrets

__all__ = [
    "DEFAULT_TOKEN_LIFETIME",
    "Token",
    "TokenAsk",
    "TokenCache",
    "TokenKey",
    "TokenRequest",
    "parse_token_answer",
    "token_request",
]

DEFAULT_TOKEN_LIFETIME = 60  # seconds; containers/image's minimum too
TokenKey = tuple[str, str, str, Credentials | None]


@dataclass(frozen=True, slots=True)
class TokenAsk:
    """Who wants a token for what, as the messages name it."""

    registry: str  # the registry host the challenge came from (host:port)
    domain: str  # the registry as users name it (for `podman login`)
    what: str
    credentials: Credentials | None
    allow_http: bool  # the registry is insecure: a plain-HTTP realm may get credentials


@dataclass(frozen=True, slots=True)
class TokenRequest:
    method: str
    url: str
    netloc: str
    params: Mapping[str, str]
    data: Mapping[str, str] | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Token:
    value: str = field(repr=False)
    expires_at: float
    refresh: str | None = field(default=None, repr=False)


def basic_authorization(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def token_request(challenge: wwwauth.Challenge, scope: str, ask: TokenAsk) -> TokenRequest:
    """The request for a token, or a RegistryError when the realm cannot (or may not) be used."""
    realm = challenge.realm or ""
    try:
        parts = checked_url(realm)
    except BadURL as err:
        raise RegistryProtocolError(
            f"registry {ask.registry} gave an unusable token realm for {ask.what}: {err}; "
            "the registry's auth configuration is broken, tell its operator"
        ) from None
    credentials = ask.credentials
    has_secret = credentials is not None and bool(credentials.password or credentials.identity_token)
    if parts.scheme == "http" and has_secret and not ask.allow_http:
        raise RegistryTLSError(
            f"registry {ask.registry} wants credentials sent to a plain-HTTP token service "
            f"({parts.scheme}://{parts.netloc}); refusing, since the registry is not marked insecure"
        )
    params: dict[str, str] = {}
    service = challenge.get("service")
    if service:
        params["service"] = service
    if scope:
        params["scope"] = scope
    if credentials is not None and credentials.identity_token:
        form = {**params, "grant_type": "refresh_token", "refresh_token": credentials.identity_token}
        return TokenRequest("POST", realm, parts.netloc, {}, data={**form, "client_id": "autoupdated"})
    if credentials is not None and (credentials.username or credentials.password):
        return TokenRequest(
            "GET", realm, parts.netloc, params, headers={"Authorization": basic_authorization(credentials)}
        )
    return TokenRequest("GET", realm, parts.netloc, params)


def parse_token_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    ask: TokenAsk,
    *,
    netloc: str,
    now: float,
    margin: float,
    secrets: Secrets,
) -> Token:
    """The token in the token service's answer, valid until `now` + lifetime - margin."""
    if status != 200:
        raise _refusal(status, headers, body, ask, netloc, secrets)
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise RegistryProtocolError(f"the token service of {ask.domain} sent no JSON object")
    value = doc.get("token") or doc.get("access_token")
    if not isinstance(value, str) or not value:
        raise RegistryProtocolError(f"the token service of {ask.domain} sent no token")
    if not _header_safe(value):
        raise RegistryProtocolError(
            f"the token service of {ask.domain} ({netloc}) sent a token with non-ASCII, space or control "
            f"characters for {ask.what}; it cannot go in an Authorization header (a broken token service)"
        )
    refresh = doc.get("refresh_token")
    lifetime = doc.get("expires_in")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime < DEFAULT_TOKEN_LIFETIME:
        lifetime = DEFAULT_TOKEN_LIFETIME
    lifetime = min(float(lifetime), 10 * 365 * 86400.0)  # inf or 1e308 would make the clock arithmetic odd
    return Token(value, now + lifetime - min(margin, lifetime / 2), refresh if isinstance(refresh, str) else None)


def _header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable() and " " not in value


def _refusal(
    status: int, headers: Mapping[str, str], body: bytes, ask: TokenAsk, netloc: str, secrets: Secrets
) -> RegistryError:
    detail = error_detail(body, secrets)
    suffix = f" ({detail})" if detail else ""
    if status in (401, 403):
        credentials = ask.credentials
        who = (
            f"the credentials of user {credentials.username!r}"
            if credentials is not None and (credentials.username or credentials.identity_token)
            else "anonymous access"
        )
        cls: type[RegistryError] = AuthenticationRequired if status == 401 else AccessDenied
        prefix = "authentication required" if status == 401 else "access denied"
        return cls(
            f"{prefix}: the token service of {ask.domain} refused {who} for {ask.what}{suffix}; "
            f"{login_hint(ask.domain)}",
            status=status,
        )
    if status == 429:
        after = retry.retry_after(headers.get("Retry-After"))
        return TooManyRequests(
            f"too many requests: the token service of {ask.domain} rate-limits us ({ask.what})"
            f"{f'; retry after {after:.0f} s' if after is not None else ''}",
            retry_after=after,
        )
    return RegistryServerError(
        f"getting a token from {netloc} for {ask.what} failed: HTTP {status}{suffix}", status=status
    )


class TokenCache:
    """Tokens per (realm, service, scope, credentials); one request in flight per key."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[TokenKey, Token | asyncio.Task[Token]] = {}

    @staticmethod
    def key(challenge: wwwauth.Challenge, scope: str, credentials: Credentials | None) -> TokenKey:
        return (challenge.realm or "", challenge.get("service") or "", scope, credentials)

    async def get(self, key: TokenKey, fetch: Callable[[], Awaitable[Token]]) -> str:
        """The cached token for `key`, or the one `fetch` gets (shared by concurrent callers)."""
        entry = self._entries.get(key)
        if isinstance(entry, Token):
            if entry.expires_at > self._clock():
                return entry.value
            del self._entries[key]
            entry = None
        if entry is None:
            entry = asyncio.ensure_future(self._fetch(key, fetch))
            self._entries[key] = entry
        token = await asyncio.shield(entry)
        return token.value

    async def _fetch(self, key: TokenKey, fetch: Callable[[], Awaitable[Token]]) -> Token:
        try:
            token = await fetch()
        except BaseException:
            self._entries.pop(key, None)
            raise
        self._entries[key] = token
        return token

    def forget(self, key: TokenKey, value: str) -> None:
        """Drop that very token (refused by the registry); a newer one for the key stays."""
        entry = self._entries.get(key)
        if isinstance(entry, Token) and entry.value == value:
            del self._entries[key]

    def unexpired(self) -> dict[TokenKey, Token]:
        """The tokens still valid now (a long-lived client keeps them for its next run)."""
        now = self._clock()
        return {k: v for k, v in self._entries.items() if isinstance(v, Token) and v.expires_at > now}

    def seed(self, tokens: Mapping[TokenKey, Token]) -> None:
        """Start with tokens an earlier run got; expired ones are dropped on first use."""
        for key, token in tokens.items():
            self._entries.setdefault(key, token)

    def cancel(self) -> None:
        for task in [t for t in self._entries.values() if isinstance(t, asyncio.Task)]:
            task.cancel()

"""Per registry host state for one run, and the httpx client each (host, TLS settings) owns.

One `httpx.AsyncClient` per (host, TLS settings), so connections are reused; one semaphore per
host bounds the requests in flight to it.  The scheme (https/http) and the auth challenge a
host's first answer told are remembered here, as is its backoff state (retry.py).

A long-lived process (the daemon) may keep what it learned of each host across runs in
`HostFacts`: the scheme and the challenge, facts about the registry, not about the run.  The
next run's first requests then go out at once, authenticated up front, instead of one at a
time after an HTTPS attempt and a 401.  Both heal themselves when the registry changes: a
recalled scheme that no longer gets through is probed afresh (transport.py), and a 401 with
another challenge replaces the recalled one (auth.py).  Bearer tokens that are still valid
when a run ends are kept too (their own expiry, less the margin, still applies; a token the
registry refuses is fetched afresh, auth.py): a daemon on a schedule shorter than the tokens'
life skips the token round trip.  Backoff and connections stay per run.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from autoupdated.adapters.registry import retry, wwwauth
from autoupdated.adapters.registry.tlsconfig import TLSConfig, TLSConfigError, TLSSettings
from autoupdated.errors import RegistryBlocked, RegistryConfigError
from autoupdated.model import Credentials
from autoupdated.reference import Reference

__all__ = ["Ask", "Host", "HostFacts", "Hosts"]


@dataclass(slots=True)
class Host:
    """Per (host, TLS settings) state for the run."""

    host: str
    settings: TLSSettings
    client: httpx.AsyncClient
    semaphore: asyncio.Semaphore
    backoff: retry.HostBackoff
    scheme: str | None = None  # "https" or "http" once a request got through
    challenge: wwwauth.Challenge | None = None  # the auth scheme once the registry's own 401 told it
    probed: bool = False
    probing: asyncio.Event | None = None  # set once the first request learned scheme and challenge
    recalled: bool = False  # scheme and challenge came from an earlier run (HostFacts)
    throttle_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def mark_probed(self) -> None:
        """The host's scheme and auth challenge are known (or its first request ended): let the
        requests waiting for that go."""
        self.probed = True
        if self.probing is not None:
            self.probing.set()


class HostFacts:
    """What runs learned of each (host, TLS settings): its scheme and auth challenge; and the
    bearer tokens still valid when a run ended, which the next run uses until they expire."""

    def __init__(self) -> None:
        self._facts: dict[tuple[str, TLSSettings], tuple[str, wwwauth.Challenge | None]] = {}
        # token.TokenKey -> token.Token, typed loosely: token.py imports this module (via status.py)
        self.tokens: dict[Any, Any] = {}

    def recall(self, state: Host) -> None:
        known = self._facts.get((state.host, state.settings))
        if known is not None:
            state.scheme, state.challenge = known
            state.recalled = True
            state.probed = True  # nothing left to learn first: every request may go at once

    def keep(self, state: Host) -> None:
        if state.scheme is not None:
            self._facts[(state.host, state.settings)] = (state.scheme, state.challenge)

    def __len__(self) -> int:
        return len(self._facts)


@dataclass(frozen=True, slots=True)
class Ask:
    """One manifest request as the auth and token steps see it: where, what, as whom."""

    state: Host
    method: str
    ref: Reference
    reference: str
    credentials: Credentials | None
    what: str  # "manifest TAG in NAME", for messages
    other_path: str = ""  # another API path of the repository (tags/list pages); "" for the manifest

    @property
    def path(self) -> str:
        return self.other_path or f"/v2/{self.ref.repository}/manifests/{self.reference}"

    @property
    def scope(self) -> str:
        return f"repository:{self.ref.repository}:pull"


class Hosts:
    """The `Host`s of one run, created on first use from the TLS configuration."""

    def __init__(
        self,
        *,
        tls: TLSConfig | None,
        tls_verify: bool | None,
        timeout: float,
        per_registry_concurrency: int,
        transport: httpx.AsyncBaseTransport | None,
        user_agent: str,
        backoff: Callable[[str], retry.HostBackoff],
        facts: HostFacts | None = None,
    ) -> None:
        self._facts = facts
        self._tls = tls
        self._tls_verify = tls_verify
        self._timeout = timeout
        self._concurrency = per_registry_concurrency
        self._transport = transport
        self._user_agent = user_agent
        self._new_backoff = backoff
        self._hosts: dict[tuple[str, TLSSettings], Host] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    @property
    def tls(self) -> TLSConfig:
        if self._tls is None:
            try:
                self._tls = TLSConfig(tls_verify=self._tls_verify)
            except TLSConfigError as err:
                raise RegistryConfigError(str(err)) from None
        return self._tls

    def get(self, ref: Reference) -> Host:
        """The state for `ref`'s registry; raises RegistryBlocked or RegistryConfigError."""
        host = ref.api_host
        tls = self.tls
        if tls.is_blocked(ref.name):
            raise RegistryBlocked(
                f"registry {ref.domain} is blocked in registries.conf ({tls.registries_conf} or "
                f"{', '.join(str(d) for d in tls.registries_conf_dirs)}): not checking {ref}"
            )
        try:
            settings = tls.settings_for(ref.name, ref.domain)
        except TLSConfigError as err:
            raise RegistryConfigError(f"{err} (needed for {ref})") from None
        key = (host, settings)
        state = self._hosts.get(key)
        if state is None:
            state = self._hosts[key] = self._new_host(ref, host, settings)
        return state

    def _new_host(self, ref: Reference, host: str, settings: TLSSettings) -> Host:
        try:
            verify: ssl.SSLContext | bool = settings.ssl_context()
        except TLSConfigError as err:
            raise RegistryConfigError(f"{err} (needed for {ref})") from None
        client = httpx.AsyncClient(
            verify=verify,
            transport=self._transport,
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=False,
            # The semaphore bounds requests to the registry; the pool also carries the token
            # service's requests, so it is larger: otherwise each side closes the other's idle
            # connections to make room and nothing is reused.
            limits=httpx.Limits(
                max_connections=2 * self._concurrency,
                max_keepalive_connections=2 * self._concurrency,
            ),
            headers={"User-Agent": self._user_agent},
        )
        semaphore = self._semaphores.get(host)
        if semaphore is None:
            semaphore = self._semaphores[host] = asyncio.Semaphore(self._concurrency)
        state = Host(host=host, settings=settings, client=client, semaphore=semaphore, backoff=self._new_backoff(host))
        if self._facts is not None:
            self._facts.recall(state)
        return state

    async def aclose(self) -> None:
        hosts, self._hosts = list(self._hosts.values()), {}
        for host in hosts:
            if self._facts is not None:
                self._facts.keep(host)
            await host.client.aclose()
